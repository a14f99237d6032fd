//! The AWS edge: API Gateway v2's own REST API (`rest-json`, service model
//! `apigatewayv2/2018-11-29`) for the resources mapreg holds, so the real `aws apigatewayv2`
//! CLI, boto3 and every AWS SDK work against mapreg with `--endpoint-url` /
//! `AWS_ENDPOINT_URL`.
//!
//! It is one more edge, not a second registry: every operation becomes the gRPC request of
//! the same name and runs through [`RegistryService`]'s own handler, as the caller the request
//! authenticated as. Same validation, rules, revisions, change feed and access checks.
//!
//! - [`routes`]: method + path -> operation (the model's URIs); other API Gateway parts
//!   (routes, integrations, ...) are refused as not supported, other paths are not found.
//! - [`sigv4`]: Signature Version 4 verification against `[[access_keys]]`.
//! - [`input`]: members of the JSON body and the query string; unsupported members are
//!   refused by name.
//! - `ops`: one function per operation, one file per resource kind.
//! - [`shapes`]: records as the model's response shapes.
//! - [`error`]: the AWS error shape and the one mapping from gRPC status and SigV4 refusals.
//! - [`time`]: ISO 8601 and `X-Amz-Date`.
//!
//! Every answer carries `x-amzn-RequestId` (also sent to the gRPC handler as `x-request-id`)
//! and, when the revision it reflects is known, `x-mapreg-revision`.

pub mod error;
pub(crate) mod input;
mod ops;
pub mod routes;
pub mod shapes;
pub mod sigv4;
pub mod time;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body as HttpBody;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use http::StatusCode;
use http::header::{AUTHORIZATION, CONTENT_TYPE};

use crate::api::registry::RegistryService;
use crate::auth::{Authenticator, Caller, DEV_ACCOUNT, Role};
use crate::domain::arn::DEFAULT_REGION;
use crate::server::MAX_REQUEST_BYTES;
use error::AwsError;
use ops::{Cx, Reply};
use routes::Route;

/// What the edge serves with.
struct Edge {
    svc: RegistryService,
    auth: Authenticator,
}

/// The REST edge's routes (`/v2/...`), to merge into the server's router.
pub fn router(svc: RegistryService, auth: Authenticator) -> axum::Router {
    let edge = Arc::new(Edge { svc, auth });
    axum::Router::new()
        .route("/v2", any(handle))
        .route("/v2/", any(handle))
        .route("/v2/{*rest}", any(handle))
        .with_state(edge)
}

/// Who a request authenticated as.
struct Authenticated {
    caller: Caller,
    /// The region of the signature's scope (ARNs are answered in it).
    region: String,
    /// The key's or token's name, for the log.
    principal: String,
}

async fn handle(State(edge): State<Arc<Edge>>, req: Request) -> Response {
    let started = Instant::now();
    // UUID-shaped, as AWS's.
    let request_id = crate::audit::new_request_id();
    let (parts, body) = req.into_parts();
    let route = routes::route(&parts.method, parts.uri.path());
    let name = match &route {
        Route::Op(op) => op.name(),
        Route::Unsupported(_) => "Unsupported",
        Route::Unknown => "Unknown",
    };
    let mut who = None;
    let result = async {
        let body = axum::body::to_bytes(body, MAX_REQUEST_BYTES)
            .await
            .map_err(|_| {
                AwsError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "BadRequestException",
                    format!("the request body is larger than the {MAX_REQUEST_BYTES}-byte limit"),
                )
            })?;
        let a = authenticate(&edge.auth, &parts, &body)?;
        who = Some((a.caller.account_id.clone(), a.principal.clone()));
        let op = match route {
            Route::Op(op) => op,
            Route::Unsupported(part) => {
                return Err(AwsError::bad_request(format!(
                    "{} {}: {part} are not supported by mapreg, which holds APIs, stages, custom domain names, API mappings and their tags",
                    parts.method,
                    parts.uri.path()
                )));
            }
            Route::Unknown => {
                return Err(AwsError::not_found(format!(
                    "no API Gateway v2 operation matches {} {}",
                    parts.method,
                    parts.uri.path()
                )));
            }
        };
        let cx = Cx {
            svc: edge.svc.clone(),
            caller: a.caller,
            region: a.region,
            request_id: request_id.clone(),
        };
        ops::run(&cx, op, parts.uri.query(), &body).await
    }
    .await;
    let status = match &result {
        Ok(r) => r.status,
        Err(e) => e.status,
    };
    let (account, principal) = who.unwrap_or_default();
    tracing::info!(
        operation = name,
        status = status.as_u16(),
        error = result.as_ref().err().map(|e| e.code).unwrap_or(""),
        duration_us = started.elapsed().as_micros() as u64,
        account = %account,
        principal = %principal,
        request_id = %request_id,
        "rest"
    );
    respond(result, &request_id)
}

/// The caller of a request: dev mode, a mapreg bearer token, or a SigV4 signature.
fn authenticate(
    auth: &Authenticator,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Authenticated, AwsError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if auth.dev_mode() {
        // As for gRPC: any caller is admin of the dev account (the server is loopback-only).
        let region = header
            .as_deref()
            .and_then(|h| sigv4::parse_authorization(h).ok())
            .map(|a| a.region)
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        return Ok(Authenticated {
            caller: Caller {
                account_id: DEV_ACCOUNT.to_string(),
                role: Role::Admin,
                credential: crate::auth::Credential::Dev,
            },
            region,
            principal: "dev".into(),
        });
    }
    let Some(header) = header else {
        if parts
            .uri
            .query()
            .is_some_and(|q| q.contains("X-Amz-Signature="))
        {
            return Err(sigv4::SigError::Incomplete(
                "presigned URLs (a signature in the query string) are not supported: sign the Authorization header".into(),
            )
            .into());
        }
        return Err(sigv4::SigError::Missing.into());
    };
    if header
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
    {
        // A mapreg token works here too (curl); same hashes and roles as gRPC.
        let caller = auth.authenticate(Some(header.as_bytes()))?;
        return Ok(Authenticated {
            caller,
            region: DEFAULT_REGION.to_string(),
            principal: "token".into(),
        });
    }
    let a = sigv4::parse_authorization(&header)?;
    let key = auth
        .access_key(&a.access_key_id)
        .ok_or_else(error::unknown_access_key)?;
    let received = sigv4::Received {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query(),
        headers: &parts.headers,
        authority: parts.uri.authority().map(|a| a.as_str()),
        body,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    sigv4::verify(&received, &a, &key.secret_access_key, now)?;
    Ok(Authenticated {
        caller: key.caller.clone(),
        region: a.region,
        principal: key.name.clone(),
    })
}

fn respond(result: Result<Reply, AwsError>, request_id: &str) -> Response {
    let mut b = http::Response::builder().header("x-amzn-RequestId", request_id);
    let (status, body) = match result {
        Ok(r) => {
            if let Some(rev) = r.revision {
                b = b.header("x-mapreg-revision", rev);
            }
            (r.status, r.body)
        }
        Err(e) => {
            b = b.header("x-amzn-ErrorType", e.code);
            (e.status, Some(e.body()))
        }
    };
    let body = match body {
        Some(v) => {
            b = b.header(CONTENT_TYPE, "application/json");
            HttpBody::from(v.to_string())
        }
        None => HttpBody::empty(),
    };
    b.status(status).body(body).unwrap_or_else(|_| {
        let mut r = Response::new(HttpBody::empty());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

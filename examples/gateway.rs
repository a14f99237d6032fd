//! A toy API gateway that routes every request by mapreg, the way a real gateway embeds
//! [`mapreg::client::MappingCache`]: the cache follows the registry's change feed and resolves
//! `Host` + path in memory, with no network hop per request.
//!
//! Instead of proxying, it answers with what API Gateway would invoke:
//!
//! - `200` and `{"domainName", "apiMappingId", "apiMappingKey", "apiId", "apiName",
//!   "protocolType", "stage", "remainingPath", "query", "revision"}` for a match
//!   (`remainingPath` is the path the API would see; the query string is not matched on);
//! - `404 {"message":"Not Found"}`: the custom domain exists but no mapping matches the path;
//! - `403 {"message":"Forbidden"}`: no custom domain name matches the host;
//! - `400 {"message":"Bad Request"}`: no usable `Host` header or path;
//! - `503 {"message":"Service Unavailable"}`: the cache has no snapshot yet.
//!
//! Every response carries `x-mapreg-revision`, the registry revision the cache reflects.
//! `GET /__mapreg/status` answers the cache's own state instead:
//! `{"revision", "in_sync", "endpoint", "last_error"}` (`endpoint`: the registry node followed) (`last_error` null until an error happened).
//!
//! The cache reports to the registry as `--gateway-id` (default host name and pid), so
//! `mapreg get-gateways` lists this gateway. Every change of the sync state, and every error
//! (credentials refused, registry unreachable, re-snapshot), is logged (tracing, `RUST_LOG`).
//!
//! Run a registry (`mapreg serve`), then:
//!
//! ```sh
//! cargo run --release --example gateway -- --endpoint http://127.0.0.1:50051
//! curl -i -H 'Host: api.example.com' 'http://127.0.0.1:8080/v1/orders/7?expand=items'
//! ```
//!
//! Flags: `--listen` (default `127.0.0.1:8080`), `--endpoint` (or `MAPREG_ENDPOINT`; several
//! as `a,b,c`, tried in order: the cache fails over to the next and resumes its watch there,
//! see `mapreg::client::failover`), `--token`
//! (or `MAPREG_TOKEN`; a `gateway` token routes for every account), and for an `https://`
//! endpoint `--ca-bundle` (or `MAPREG_CA_BUNDLE`), `--no-verify-ssl`, `--client-cert` and
//! `--client-key` (a certificate listed in the registry's `[[clients]]` needs no token).

use std::convert::Infallible;
use std::sync::Arc;

use clap::Parser;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mapreg::client::cache::ResolveError;
use mapreg::client::{CacheOptions, CacheStatus, MappingCache};
use mapreg::pb::ProtocolType;
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(about = "A toy HTTP gateway that routes by a mapreg registry")]
struct Args {
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The mapreg server(s) to follow: `URL[,URL...]`, tried in order (failover).
    #[arg(
        long,
        env = "MAPREG_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,
    /// Bearer token for the registry.
    #[arg(long, env = "MAPREG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// TLS to the registry (https:// endpoints).
    #[command(flatten)]
    tls: mapreg::client::connect::TlsOptions,
    /// The id this gateway reports its status under (default host name and pid).
    #[arg(long)]
    gateway_id: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut options = CacheOptions::new(args.endpoint);
    options.token = args.token;
    options.tls = args.tls;
    if let Some(id) = args.gateway_id {
        options.gateway_id = id;
    }
    anyhow::ensure!(
        !options.endpoints.is_empty(),
        "--endpoint names no endpoint"
    );
    tracing::info!(gateway_id = %options.gateway_id, endpoints = ?options.endpoints, "gateway starting");
    let cache = Arc::new(MappingCache::start(options));
    tokio::spawn(log_changes(cache.subscribe()));

    let listener = TcpListener::bind(&args.listen).await?;
    println!("gateway listening on http://{}", listener.local_addr()?);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let cache = cache.clone();
        tokio::spawn(async move {
            let service = service_fn(|req| {
                let response = route(&cache, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection: {e}");
            }
        });
    }
}

/// The 200 body: what API Gateway would invoke.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Routed<'a> {
    domain_name: &'a str,
    api_mapping_id: &'a str,
    api_mapping_key: &'a str,
    api_id: &'a str,
    api_name: Option<&'a str>,
    protocol_type: Option<&'a str>,
    stage: &'a str,
    remaining_path: &'a str,
    query: Option<&'a str>,
    revision: u64,
}

/// Logs every change of the cache's sync state and every new error.
async fn log_changes(mut rx: tokio::sync::watch::Receiver<CacheStatus>) {
    let mut last = CacheStatus::default();
    loop {
        let s = rx.borrow_and_update().clone();
        if s.last_error != last.last_error && !s.last_error.is_empty() {
            tracing::warn!(error = %s.last_error, revision = s.revision, "registry error");
        }
        if s.endpoint != last.endpoint && !s.endpoint.is_empty() {
            tracing::info!(endpoint = %s.endpoint, revision = s.revision, "registry endpoint");
        }
        if s.in_sync != last.in_sync {
            tracing::info!(in_sync = s.in_sync, revision = s.revision, store_id = %s.store_id, "sync state changed");
        }
        if s.resnapshots != last.resnapshots {
            tracing::warn!(
                resnapshots = s.resnapshots,
                "re-snapshot: the registry's log no longer holds our revision, or its store changed"
            );
        }
        last = s;
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// `GET /__mapreg/status`: the cache's revision, sync state, endpoint and last error.
fn status_reply(cache: &MappingCache) -> Response<Full<Bytes>> {
    let s = cache.status();
    let body = json!({
        "revision": s.revision,
        "in_sync": s.in_sync,
        "endpoint": s.endpoint,
        "last_error": (!s.last_error.is_empty()).then_some(s.last_error.as_str()),
    });
    reply(StatusCode::OK, s.revision, body.to_string())
}

/// Answers one request from the cache.
fn route(cache: &MappingCache, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() == "/__mapreg/status" {
        return status_reply(cache);
    }
    // Status first: the replica is updated before the status, so what `resolve` sees next is
    // at least as new as `revision`.
    let status = cache.status();
    let revision = status.revision;
    // (An empty registry's snapshot is at revision 0, and then the cache is in sync.)
    if revision == 0 && !status.in_sync {
        return error(StatusCode::SERVICE_UNAVAILABLE, revision);
    }
    // The Host header, or the authority of an absolute-form request line.
    let host = match req.headers().get(HOST) {
        Some(h) => h.to_str().ok(),
        None => req.uri().authority().map(|a| a.as_str()),
    };
    let Some(host) = host else {
        return error(StatusCode::BAD_REQUEST, revision);
    };
    let r = match cache.resolve(host, req.uri().path()) {
        Ok(r) => r,
        Err(ResolveError::NoMapping { .. }) => return error(StatusCode::NOT_FOUND, revision),
        Err(ResolveError::NoDomain(_)) => return error(StatusCode::FORBIDDEN, revision),
        Err(ResolveError::BadRequest(_)) => return error(StatusCode::BAD_REQUEST, revision),
    };
    let api = r.api.as_ref();
    let routed = Routed {
        domain_name: &r.domain_name,
        api_mapping_id: &r.mapping.api_mapping_id,
        api_mapping_key: &r.mapping.api_mapping_key,
        api_id: &r.mapping.api_id,
        api_name: api.map(|a| a.name.as_str()),
        protocol_type: api
            .and_then(|a| ProtocolType::try_from(a.protocol_type).ok())
            .map(|p| p.as_str_name().trim_start_matches("PROTOCOL_TYPE_")),
        stage: &r.mapping.stage,
        remaining_path: &r.remaining_path,
        query: req.uri().query(),
        revision,
    };
    match serde_json::to_string(&routed) {
        Ok(body) => reply(StatusCode::OK, revision, body),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, revision),
    }
}

/// API Gateway's error shape: `{"message":"Forbidden"}`.
fn error(code: StatusCode, revision: u64) -> Response<Full<Bytes>> {
    let body = json!({ "message": code.canonical_reason().unwrap_or_default() });
    reply(code, revision, body.to_string())
}

fn reply(code: StatusCode, revision: u64, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("x-mapreg-revision", revision.into());
    response
}

//! The gRPC edge: generated code, request -> domain conversion, and one file per service.
//!
//! Handlers authenticate (the [`Caller`](crate::auth::Caller) comes from the interceptor),
//! validate input with [`crate::domain::validate`], and hand reads to the [`Db`](crate::store::Db)
//! and writes to the [`Writer`](crate::store::writer::Writer). `tonic::Status` is built only
//! from [`crate::error::Error`], in one place.

pub mod change_feed;
pub mod gateways;
pub mod paging;
pub mod registry;

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};

use crate::auth::{Access, Caller};
use crate::domain::state::State;
use crate::error::Error;
use crate::store::Registry;

/// The longest a read waits for its `min_revision` (SPEC.md 8.2), whatever its deadline.
pub const MAX_REVISION_WAIT: Duration = Duration::from_secs(10);

/// The response metadata that carries the revision a Get* answer reflects (SPEC.md 8.2).
pub const REVISION_METADATA: &str = "mapreg-revision";

/// Runs one RPC: checks the caller's access, runs `body`, logs one line (method, code,
/// duration, account) at info, and turns the domain error into a `Status`.
pub(crate) async fn rpc<Req, Resp, F, Fut>(
    method: &'static str,
    access: Access,
    mut req: Request<Req>,
    body: F,
) -> Result<Response<Resp>, Status>
where
    F: FnOnce(Caller, Req) -> Fut,
    Fut: Future<Output = Result<Resp, Error>>,
{
    let started = Instant::now();
    // Taken, not cloned: nothing after the handler reads it from the request.
    let caller = req.extensions_mut().remove::<Caller>();
    // The log line's fields, made only when the line is written (RUST_LOG may leave it out).
    let logged = tracing::enabled!(tracing::Level::INFO).then(|| {
        let account = caller
            .as_ref()
            .map(|c| c.account_id.clone())
            .unwrap_or_default();
        (account, request_id_of(req.metadata()))
    });
    let result = match caller {
        Some(caller) => match caller.require(access, method) {
            // A write runs with its audit, which the writer records with its revision.
            Ok(()) if access == Access::Write => {
                let audit = crate::audit::Audit {
                    principal: crate::audit::principal(&caller, req.extensions().get()),
                    account_id: caller.account_id.clone(),
                    method: format!("/mapreg.v1.Registry/{method}"),
                    request_id: request_id_of(req.metadata()),
                    commit_time: None,
                };
                crate::audit::scope(audit, body(caller, req.into_inner())).await
            }
            Ok(()) => body(caller, req.into_inner()).await,
            Err(e) => Err(e),
        },
        None => Err(Error::internal(
            "request reached a handler without a caller",
        )),
    };
    let code = match &result {
        Ok(_) => tonic::Code::Ok,
        Err(e) => e.code(),
    };
    if let Some((account, request_id)) = logged {
        tracing::info!(
            method,
            code = ?code,
            duration_us = started.elapsed().as_micros() as u64,
            account = %account,
            request_id = %request_id,
            "rpc"
        );
    }
    result.map(Response::new).map_err(Status::from)
}

/// The request's `x-request-id` (empty when absent or not ASCII).
fn request_id_of(metadata: &MetadataMap) -> String {
    metadata
        .get(crate::audit::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A read request: it may ask for a version at least as new as `min_revision`.
pub(crate) trait ReadRequest {
    /// The request's `min_revision` (0: any version).
    fn min_revision(&self) -> u64;
}

/// Runs one read RPC through [`rpc`]: after the access check, waits for a version of
/// `store` at the request's `min_revision` (up to the call's deadline, at most
/// [`MAX_REVISION_WAIT`]; else UNAVAILABLE `REVISION_NOT_YET_AVAILABLE`), runs `body` on ONE
/// version, and sends that version's revision as the `mapreg-revision` response metadata.
pub(crate) async fn read_rpc<Req, Resp, F>(
    method: &'static str,
    store: &Registry,
    req: Request<Req>,
    body: F,
) -> Result<Response<Resp>, Status>
where
    Req: ReadRequest,
    F: FnOnce(Caller, &State, Req) -> Result<Resp, Error>,
{
    // Every version is at revision 0 or newer: without a `min_revision` there is nothing to
    // wait for (and no need to subscribe to the store's revisions on every read).
    let wait = (req.get_ref().min_revision() > 0).then(|| revision_wait(req.metadata()));
    let answered = rpc(method, Access::Read, req, async |c: Caller, m: Req| {
        let min = m.min_revision();
        if let Some(wait) = wait
            && !store.at_least(min, wait).await
        {
            return Err(Error::Unavailable {
                reason: "REVISION_NOT_YET_AVAILABLE",
                message: format!(
                    "min_revision {min} is not yet available on this node (it is at revision {}); retry later or on another node",
                    store.revision()
                ),
            });
        }
        // One version for the whole answer; revisions only grow, so it is at `min` or newer.
        let state = store.read();
        let resp = body(c, &state, m)?;
        Ok((resp, state.revision()))
    })
    .await?;
    let (resp, revision) = answered.into_inner();
    let mut out = Response::new(resp);
    out.metadata_mut()
        .insert(REVISION_METADATA, MetadataValue::from(revision));
    Ok(out)
}

/// How long a read may wait for its `min_revision`: until shortly before the call's deadline
/// (`grpc-timeout`), so the client gets the answer and not its own deadline's; at most
/// [`MAX_REVISION_WAIT`].
fn revision_wait(metadata: &MetadataMap) -> Duration {
    let Some(timeout) = metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
    else {
        return MAX_REVISION_WAIT;
    };
    // Answer a little early: a tenth of the budget, between 5 and 100 ms.
    let margin = (timeout / 10).clamp(Duration::from_millis(5), Duration::from_millis(100));
    timeout.saturating_sub(margin).min(MAX_REVISION_WAIT)
}

/// A `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_and_bound_the_wait() {
        assert_eq!(parse_grpc_timeout("300m"), Some(Duration::from_millis(300)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("5s"), None);
        let mut md = MetadataMap::new();
        assert_eq!(revision_wait(&md), MAX_REVISION_WAIT);
        md.insert("grpc-timeout", "1S".parse().expect("value"));
        assert_eq!(revision_wait(&md), Duration::from_millis(900));
        md.insert("grpc-timeout", "1M".parse().expect("value"));
        assert_eq!(revision_wait(&md), MAX_REVISION_WAIT);
    }
}

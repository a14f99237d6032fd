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
use std::time::Instant;

use tonic::{Request, Response, Status};

use crate::auth::{Access, Caller};
use crate::error::Error;

/// Runs one RPC: checks the caller's access, runs `body`, logs one line (method, code,
/// duration, account) at info, and turns the domain error into a `Status`.
pub(crate) async fn rpc<Req, Resp, F, Fut>(
    method: &'static str,
    access: Access,
    req: Request<Req>,
    body: F,
) -> Result<Response<Resp>, Status>
where
    F: FnOnce(Caller, Req) -> Fut,
    Fut: Future<Output = Result<Resp, Error>>,
{
    let started = Instant::now();
    let caller = req.extensions().get::<Caller>().cloned();
    let account = caller
        .as_ref()
        .map(|c| c.account_id.clone())
        .unwrap_or_default();
    let request_id = req
        .metadata()
        .get(crate::audit::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let result = match caller {
        Some(caller) => match caller.require(access, method) {
            // A write runs with its audit, which the writer records with its revision.
            Ok(()) if access == Access::Write => {
                let audit = crate::audit::Audit {
                    principal: crate::audit::principal(&caller, req.extensions().get()),
                    account_id: caller.account_id.clone(),
                    method: format!("/mapreg.v1.Registry/{method}"),
                    request_id: request_id.clone(),
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
    tracing::info!(
        method,
        code = ?code,
        duration_us = started.elapsed().as_micros() as u64,
        account = %account,
        request_id = %request_id,
        "rpc"
    );
    result.map(Response::new).map_err(Status::from)
}

//! How a [`MappingCache`](super::MappingCache) tells the registry what it applied
//! (`mapreg.v1.Gateways/ReportStatus`, SPEC.md 8.5), so operators can ask whether a change
//! reached every gateway.
//!
//! A reporter task follows the cache's status: it reports at once when the cache becomes in
//! sync, after new revisions at most once per [`MIN_GAP`], and otherwise every
//! `report_interval` (a heartbeat, so that a quiet but live gateway does not expire). It uses a
//! connection of its own to the cache's endpoints, with the same credentials. A failed report is
//! logged and retried at the next occasion; one that failed with `UNAVAILABLE` or a broken
//! connection is retried on the next endpoint (a report is idempotent: the last one wins,
//! [`super::failover`]); a refused one (the token's role may not report) is logged once at
//! warn.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

use super::cache::{CacheOptions, CacheStatus};
use crate::pb::ReportStatusRequest;
use crate::pb::gateways_client::GatewaysClient;

/// The shortest time between two reports of new revisions.
pub const MIN_GAP: Duration = Duration::from_secs(1);

/// How long one report may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default gateway id: the host name and the process id, `host-1234`.
pub fn default_gateway_id() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let host = if host.is_empty() {
        "gateway".into()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

/// Reports `status` changes of a cache until the cache is dropped (the sender goes away).
pub(crate) async fn run(mut status: watch::Receiver<CacheStatus>, options: CacheOptions) {
    let Some(heartbeat) = options.report_interval else {
        return;
    };
    // One lazily connected channel per endpoint (each checked now); `at` is the one in use.
    let mut clients = Vec::with_capacity(options.endpoints.len());
    for endpoint in &options.endpoints {
        match super::connect::endpoint(endpoint, &options.tls) {
            Ok(e) => clients.push(GatewaysClient::new(
                e.connect_timeout(REPORT_TIMEOUT).connect_lazy(),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "mapping cache cannot report its status");
                return;
            }
        }
    }
    if clients.is_empty() {
        return;
    }
    let mut at = 0usize;
    let auth = match options.token.as_deref() {
        Some(t) => match MetadataValue::try_from(format!("Bearer {t}")) {
            Ok(v) => Some(v),
            Err(_) => return,
        },
        None => None,
    };
    let mut sent: Option<(Instant, CacheStatus)> = None;
    let mut refused_logged = false;
    loop {
        let now_status = status.borrow_and_update().clone();
        let now = Instant::now();
        let (due, wait) = match &sent {
            None => (true, heartbeat),
            Some((at, last)) => {
                let since = now.saturating_duration_since(*at);
                let became_in_sync = now_status.in_sync && !last.in_sync;
                let changed = now_status.revision != last.revision
                    || now_status.in_sync != last.in_sync
                    || now_status.store_id != last.store_id;
                if became_in_sync || (changed && since >= MIN_GAP) || since >= heartbeat {
                    (true, heartbeat)
                } else if changed {
                    (false, MIN_GAP - since)
                } else {
                    (false, heartbeat - since)
                }
            }
        };
        let wait = if due {
            let mut req = Request::new(ReportStatusRequest {
                gateway_id: options.gateway_id.clone(),
                store_id: now_status.store_id.clone(),
                applied_revision: now_status.revision,
                in_sync: now_status.in_sync,
            });
            req.set_timeout(REPORT_TIMEOUT);
            if let Some(v) = &auth {
                req.metadata_mut().insert("authorization", v.clone());
            }
            match clients[at].report_status(req).await {
                Ok(_) => {
                    sent = Some((now, now_status));
                    wait
                }
                Err(s) if s.code() == Code::PermissionDenied && !refused_logged => {
                    refused_logged = true;
                    tracing::warn!(error = %s.message(), "the registry refused this gateway's status report");
                    heartbeat
                }
                Err(s) => {
                    tracing::debug!(code = ?s.code(), error = %s.message(), "status report failed");
                    if s.code() == Code::Unavailable {
                        at = (at + 1) % clients.len();
                    }
                    MIN_GAP
                }
            }
        } else {
            wait
        };
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

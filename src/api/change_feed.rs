//! `mapreg.v1.ChangeFeed`: the Watch stream (see [`crate::feed`] for how it is served).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::rpc;
use crate::auth::{Access, Authenticator};
use crate::error::{Error, Result};
use crate::feed::watch::{self, WatchSpec};
use crate::feed::{Filter, Hub};
use crate::pb::change_feed_server::ChangeFeed;
use crate::pb::{WatchRequest, WatchResponse};

/// Default quiet time before a progress message.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// Longest accepted `progress_interval_seconds`.
pub const MAX_PROGRESS_INTERVAL_SECONDS: u32 = 86_400;

/// The ChangeFeed service over a [`Hub`].
#[derive(Clone)]
pub struct ChangeFeedService {
    hub: Arc<Hub>,
    auth: Option<Authenticator>,
}

impl ChangeFeedService {
    /// A service streaming `hub`'s revisions.
    pub fn new(hub: Arc<Hub>) -> Self {
        ChangeFeedService { hub, auth: None }
    }

    /// Streams end `UNAUTHENTICATED` once a reload of `auth` revokes their caller's credential.
    pub fn with_auth(mut self, auth: Authenticator) -> Self {
        self.auth = Some(auth);
        self
    }
}

/// The stream type of Watch.
pub type WatchStream =
    Pin<Box<dyn Stream<Item = std::result::Result<WatchResponse, Status>> + Send>>;

fn spec(req: &WatchRequest, filter: Filter) -> Result<WatchSpec> {
    let progress_interval = match req.progress_interval_seconds {
        0 => DEFAULT_PROGRESS_INTERVAL,
        s if s > MAX_PROGRESS_INTERVAL_SECONDS => {
            return Err(Error::invalid(
                "progress_interval_seconds",
                format!(
                    "progress_interval_seconds must be at most {MAX_PROGRESS_INTERVAL_SECONDS} \
                     (0 means 10)"
                ),
            ));
        }
        s => Duration::from_secs(u64::from(s)),
    };
    let resume_history_hash = match req.resume_history_hash.len() {
        0 => None,
        _ if req.start_revision == 0 => {
            return Err(Error::invalid(
                "resume_history_hash",
                "resume_history_hash is only for a resume (start_revision > 0): it is the \
                 history_hash you hold for start_revision - 1",
            ));
        }
        32 => {
            let mut h = [0u8; 32];
            h.copy_from_slice(&req.resume_history_hash);
            Some(h)
        }
        n => {
            return Err(Error::invalid(
                "resume_history_hash",
                format!("resume_history_hash must be 32 bytes (a SHA-256), not {n}"),
            ));
        }
    };
    Ok(WatchSpec {
        start_revision: req.start_revision,
        filter,
        progress_interval,
        resume_history_hash,
    })
}

#[tonic::async_trait]
impl ChangeFeed for ChangeFeedService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> std::result::Result<Response<WatchStream>, Status> {
        let hub = self.hub.clone();
        let auth = self.auth.clone();
        rpc("Watch", Access::Watch, request, |caller, req| async move {
            let filter = Filter::new(&req.kinds, &req.domain_names, caller.scope())?;
            let spec = spec(&req, filter)?;
            if hub.is_closed() {
                return Err(watch::shutting_down());
            }
            let db = hub.registry().clone();
            if !req.store_id.is_empty() && req.store_id != db.store_id() {
                let compact_revision = db.compact_revision()?;
                return Err(Error::OutOfRange {
                    reason: "STORE_CHANGED",
                    message: format!(
                        "store_id {:?} is not this store's ({}): the data dir was replaced; \
                         watch again with start_revision 0 and no store_id for a fresh snapshot",
                        req.store_id,
                        db.store_id()
                    ),
                    metadata: vec![("compact_revision".into(), compact_revision.to_string())],
                });
            }
            if spec.start_revision > 0 {
                let compact_revision = db.compact_revision()?;
                if spec.start_revision <= compact_revision {
                    return Err(watch::compacted(spec.start_revision, compact_revision));
                }
            }
            let (tx, rx) = mpsc::channel(watch::CLIENT_QUEUE);
            match auth.map(|a| a.revoked(&caller)) {
                None => drop(tokio::spawn(watch::run(hub, spec, tx))),
                // The watcher stops where it is once the credential is revoked; its last
                // message is the error.
                Some(revoked) => drop(tokio::spawn(async move {
                    tokio::select! {
                        _ = watch::run(hub, spec, tx.clone()) => {}
                        e = revoked => {
                            let _ = tx.send(Box::new(Err(Status::from(e)))).await;
                        }
                    }
                })),
            }
            Ok(Box::pin(ReceiverStream::new(rx).map(|queued| *queued)) as WatchStream)
        })
        .await
    }
}

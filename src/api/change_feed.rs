//! `mapreg.v1.ChangeFeed`: the Watch stream (see [`crate::feed`] for how it is served).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::rpc;
use crate::auth::{Access, Authenticator, Caller, Credential};
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
    buffer_bytes: usize,
    streams: Arc<Streams>,
}

/// Default of `max_watches_per_principal`.
pub const DEFAULT_MAX_WATCHES_PER_PRINCIPAL: usize = 1000;

/// Open Watch streams per credential, bounded (SPEC.md 8.7).
struct Streams {
    max: usize,
    open: std::sync::Mutex<std::collections::HashMap<Credential, usize>>,
}

/// One open stream of a credential; dropping it frees the slot.
struct Slot {
    streams: Arc<Streams>,
    credential: Credential,
}

impl Streams {
    fn take(self: &Arc<Self>, caller: &Caller) -> Result<Slot> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| Error::internal("watch stream counter poisoned"))?;
        let n = open.entry(caller.credential.clone()).or_insert(0);
        if *n >= self.max {
            return Err(Error::ResourceExhausted {
                reason: "TOO_MANY_WATCHES",
                message: format!(
                    "this principal already holds {} Watch streams, the most one may \
                     (max_watches_per_principal); close some, or share one stream",
                    self.max
                ),
            });
        }
        *n += 1;
        Ok(Slot {
            streams: self.clone(),
            credential: caller.credential.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.streams.open.lock()
            && let Some(n) = open.get_mut(&self.credential)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.credential);
            }
        }
    }
}

impl ChangeFeedService {
    /// A service streaming `hub`'s revisions, with the default bounds.
    pub fn new(hub: Arc<Hub>) -> Self {
        ChangeFeedService {
            hub,
            auth: None,
            buffer_bytes: watch::DEFAULT_BUFFER_BYTES,
            streams: Arc::new(Streams {
                max: DEFAULT_MAX_WATCHES_PER_PRINCIPAL,
                open: Default::default(),
            }),
        }
    }

    /// Each watcher holds at most `buffer_bytes` of responses for its client; a principal
    /// holds at most `max_per_principal` streams (more: `RESOURCE_EXHAUSTED`).
    pub fn with_limits(mut self, buffer_bytes: usize, max_per_principal: usize) -> Self {
        self.buffer_bytes = buffer_bytes;
        self.streams = Arc::new(Streams {
            max: max_per_principal,
            open: Default::default(),
        });
        self
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

fn spec(req: &WatchRequest, filter: Filter, buffer_bytes: usize) -> Result<WatchSpec> {
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
        buffer_bytes,
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
        let buffer_bytes = self.buffer_bytes;
        let streams = self.streams.clone();
        rpc("Watch", Access::Watch, request, |caller, req| async move {
            let filter = Filter::new(&req.kinds, &req.domain_names, caller.scope())?;
            let spec = spec(&req, filter, buffer_bytes)?;
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
            let slot = streams.take(&caller)?;
            let (tx, rx) = mpsc::channel(watch::CLIENT_QUEUE);
            match auth.map(|a| a.revoked(&caller)) {
                None => drop(tokio::spawn(async move {
                    watch::run(hub, spec, tx).await;
                    drop(slot);
                })),
                // The watcher stops where it is once the credential is revoked; its last
                // message is the error.
                Some(revoked) => drop(tokio::spawn(async move {
                    let _slot = slot;
                    tokio::select! {
                        _ = watch::run(hub, spec, tx.clone()) => {}
                        e = revoked => {
                            let _ = tx
                                .send(watch::QueuedItem::unbudgeted(Err(Status::from(e))))
                                .await;
                        }
                    }
                })),
            }
            Ok(Box::pin(ReceiverStream::new(rx).map(|queued| queued.into_item())) as WatchStream)
        })
        .await
    }
}

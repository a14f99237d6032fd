//! Several nodes, one writer: how the nodes of a shared store (etcd, SPEC.md 8.2) send their
//! writes to the one node elected to commit them all.
//!
//! Why: every commit is conditioned on mapreg's revision key. When each node commits its own
//! writes, the nodes race for that key and all but one lose each round (they catch up and
//! validate again); three busy nodes together committed less than one alone. With one writer,
//! its groups batch every node's writes and never conflict.
//!
//! How:
//! - the engine elects the writer ([`Engine::elect`](crate::store::Engine::elect)): an etcd key
//!   under a lease, holding the writer's advertised URL (`--advertise-url`, by default the
//!   listen address);
//! - a node that is not the writer validates each write's shape and its caller's rights as
//!   always, then hands the write ([`WriteOp`], with its audit) to the writer over the
//!   internal gRPC service `mapreg.peer.v1.Peer` ([`Forwarder`]); the writer applies it in its
//!   next group, exactly as its own ([`PeerService`]), and answers; the forwarding node waits
//!   until its own version has the revision (so a read on it right after sees the write) and
//!   answers its caller with the writer's answer, errors included, unchanged;
//! - a forwarded write proves it comes from a node of the store with the store's peer secret
//!   (kept in etcd beside the data).
//!
//! What never depends on the election: safety. Commits stay conditional, so when the writer
//! is unknown (being elected, etcd unreachable), unreachable (dead, not yet replaced: up to the
//! lease's TTL) or refuses the connection, a node commits its own writes as before. Only a
//! write whose request may have reached the writer is never committed a second time: if the
//! connection breaks after it was sent, its caller gets `UNAVAILABLE` (`WRITER_UNREACHABLE`),
//! exactly as when a client loses its own connection mid-write (creates are not idempotent).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};
use tonic_types::StatusExt;

use crate::audit::Audit;
use crate::error::{ERROR_DOMAIN, Error, Result};
use crate::store::writer::{Forward, Writer};
use crate::store::{Elected, Registry, WriteOp, WriteResult};

/// Generated code of the internal `mapreg.peer.v1` service.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("mapreg.peer.v1");
}

use pb::forward_response::Result as Answer;

/// The metadata that carries the store's peer secret on a forwarded write.
pub const SECRET_METADATA: &str = "mapreg-peer-secret";

/// The reason the writer refuses a forwarded write that does not carry the store's secret
/// (the forwarding node then commits the write itself).
pub const PEER_REFUSED: &str = "PEER_REFUSED";

/// How long connecting to the writer may take before this node commits the write itself.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a forwarded write may take on the writer (its commit timeout and some conflicts).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the forwarding node waits for its own version to reach the write's revision
/// before answering anyway (the write is committed; only this node is slow to follow).
const VISIBLE_WAIT: Duration = Duration::from_secs(10);

/// The client side: hands this node's writes to the elected writer (see the module
/// documentation).
pub struct Forwarder {
    elected: watch::Receiver<Option<Elected>>,
    registry: Arc<Registry>,
    /// The connection to the current writer, by URL.
    channel: Mutex<Option<(String, Channel)>>,
}

impl Forwarder {
    /// A forwarder following `elected`; `registry` is this node's, for read-your-writes.
    pub fn new(elected: watch::Receiver<Option<Elected>>, registry: Arc<Registry>) -> Forwarder {
        Forwarder {
            elected,
            registry,
            channel: Mutex::new(None),
        }
    }

    /// A connection to `url`, made now if there is none: None if it cannot be made.
    async fn channel(&self, url: &str) -> Option<Channel> {
        if let Ok(guard) = self.channel.lock()
            && let Some((cached, channel)) = guard.as_ref()
            && cached == url
        {
            return Some(channel.clone());
        }
        let endpoint = match Endpoint::from_shared(url.to_string()) {
            Ok(e) => e
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(crate::transport::KEEPALIVE_INTERVAL)
                .keep_alive_timeout(crate::transport::KEEPALIVE_TIMEOUT),
            Err(e) => {
                tracing::warn!(writer = url, error = %e, "the writer node's URL is not usable; committing writes here");
                return None;
            }
        };
        match endpoint.connect().await {
            Ok(channel) => {
                if let Ok(mut guard) = self.channel.lock() {
                    *guard = Some((url.to_string(), channel.clone()));
                }
                Some(channel)
            }
            Err(e) => {
                tracing::info!(writer = url, error = %e, "cannot reach the writer node; committing the write here");
                None
            }
        }
    }

    /// Drops the connection to `url` (the next write connects again).
    fn forget(&self, url: &str) {
        if let Ok(mut guard) = self.channel.lock()
            && guard.as_ref().is_some_and(|(u, _)| u == url)
        {
            *guard = None;
        }
    }

    async fn send(&self, op: &WriteOp, audit: &Audit) -> Option<Result<WriteResult>> {
        let target = self.elected.borrow().clone()?;
        if target.me {
            return None;
        }
        let channel = self.channel(&target.url).await?;
        let mut request = Request::new(pb::ForwardRequest {
            op: op.to_wire(),
            principal: audit.principal.clone(),
            account_id: audit.account_id.clone(),
            method: audit.method.clone(),
            request_id: audit.request_id.clone(),
        });
        request.set_timeout(FORWARD_TIMEOUT);
        let secret = target.secret.parse().ok()?;
        request.metadata_mut().insert(SECRET_METADATA, secret);
        if !audit.request_id.is_empty()
            && let Ok(id) = audit.request_id.parse()
        {
            request.metadata_mut().insert(crate::audit::REQUEST_ID, id);
        }
        let answer = pb::peer_client::PeerClient::new(channel)
            .max_decoding_message_size(crate::server::MAX_REQUEST_BYTES * 4)
            .forward(request)
            .await;
        match answer {
            Ok(response) => {
                let result = match response.into_inner().result {
                    Some(Answer::Api(a)) => WriteResult::Api(a),
                    Some(Answer::Stage(s)) => WriteResult::Stage(s),
                    Some(Answer::DomainName(d)) => WriteResult::DomainName(d),
                    Some(Answer::ApiMapping(m)) => WriteResult::ApiMapping(m),
                    Some(Answer::Deleted(r)) => WriteResult::Deleted(r),
                    None => {
                        return Some(Err(Error::internal(format!(
                            "the writer node {} answered a write with nothing",
                            target.url
                        ))));
                    }
                };
                let revision = result.revision();
                if !self.registry.at_least(revision, VISIBLE_WAIT).await {
                    tracing::warn!(
                        revision,
                        writer = %target.url,
                        "the writer committed a write this node has not caught up with yet"
                    );
                }
                Some(Ok(result))
            }
            Err(status) => self.failed(&target.url, status),
        }
    }

    /// What a failed forward means: the writer's own answer (passed on), a write never sent
    /// (None: commit it here), or one whose outcome is unknown.
    fn failed(&self, url: &str, status: Status) -> Option<Result<WriteResult>> {
        let info = status.get_details_error_info();
        match info {
            Some(info) if info.domain == ERROR_DOMAIN && info.reason == PEER_REFUSED => {
                tracing::warn!(
                    writer = url,
                    message = status.message(),
                    "the writer node refused a forwarded write; committing it here"
                );
                return None;
            }
            Some(info) if info.domain == ERROR_DOMAIN => {
                return Some(Err(Error::Forwarded {
                    code: status.code(),
                    reason: info.reason,
                    message: status.message().to_string(),
                    details: status.details().to_vec(),
                }));
            }
            _ => {}
        }
        self.forget(url);
        if status.code() == tonic::Code::Unimplemented || never_sent(&status) {
            tracing::info!(writer = url, error = %status.message(), "the writer node is unreachable; committing the write here");
            return None;
        }
        Some(Err(Error::Unavailable {
            reason: "WRITER_UNREACHABLE",
            message: format!(
                "this node handed the write to the store's writer node {url}, and the \
                 connection failed before it answered ({}): the write may or may not have been \
                 applied; read the state before writing again",
                status.message()
            ),
        }))
    }
}

/// Whether a transport failure happened before the request left this node (no connection
/// could be made), so the writer cannot have applied it.
fn never_sent(status: &Status) -> bool {
    let mut text = status.message().to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    [
        "error trying to connect",
        "tcp connect error",
        "Connection refused",
    ]
    .iter()
    .any(|s| text.contains(s))
}

impl Forward for Forwarder {
    fn forward<'a>(
        &'a self,
        op: &'a WriteOp,
        audit: &'a Audit,
    ) -> Pin<Box<dyn Future<Output = Option<Result<WriteResult>>> + Send + 'a>> {
        Box::pin(self.send(op, audit))
    }
}

/// The writer side: `mapreg.peer.v1.Peer`, committing the writes other nodes forward.
pub struct PeerService {
    writer: Writer,
    elected: watch::Receiver<Option<Elected>>,
}

impl PeerService {
    /// The service over this node's `writer`; `elected` carries the store's secret.
    pub fn new(writer: Writer, elected: watch::Receiver<Option<Elected>>) -> PeerService {
        PeerService { writer, elected }
    }

    /// The service, ready to be routed.
    pub fn server(self) -> pb::peer_server::PeerServer<PeerService> {
        pb::peer_server::PeerServer::new(self)
            .max_decoding_message_size(crate::server::MAX_REQUEST_BYTES * 4)
    }

    async fn commit(&self, request: Request<pb::ForwardRequest>) -> Result<pb::ForwardResponse> {
        let secret = self.elected.borrow().as_ref().map(|e| e.secret.clone());
        let given = request
            .metadata()
            .get(SECRET_METADATA)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !secret.is_some_and(|s| same(s.as_bytes(), given.as_bytes())) {
            return Err(Error::Unauthenticated {
                reason: PEER_REFUSED,
                message: "a forwarded write must carry this store's peer secret".into(),
            });
        }
        let r = request.into_inner();
        let op = WriteOp::from_wire(&r.op)?;
        let audit = Arc::new(Audit {
            principal: r.principal,
            account_id: r.account_id,
            method: r.method,
            request_id: r.request_id,
            commit_time: None,
        });
        let result = match self.writer.submit_as(op, audit).await? {
            WriteResult::Api(a) => Answer::Api(a),
            WriteResult::Stage(s) => Answer::Stage(s),
            WriteResult::DomainName(d) => Answer::DomainName(d),
            WriteResult::ApiMapping(m) => Answer::ApiMapping(m),
            WriteResult::Deleted(r) => Answer::Deleted(r),
        };
        Ok(pb::ForwardResponse {
            result: Some(result),
        })
    }
}

/// Compares two secrets in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[tonic::async_trait]
impl pb::peer_server::Peer for PeerService {
    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> std::result::Result<Response<pb::ForwardResponse>, Status> {
        self.commit(request)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}

/// The URL other nodes reach this one at: `advertise` if given, else the listen address
/// (`https://` when serving TLS). None when listening on every interface without one: no
/// other node could be told where this one is.
pub fn advertised(
    advertise: Option<&str>,
    listen: std::net::SocketAddr,
    tls: bool,
) -> Option<String> {
    if let Some(url) = advertise {
        return Some(url.trim_end_matches('/').to_string());
    }
    if listen.ip().is_unspecified() {
        return None;
    }
    let scheme = if tls { "https" } else { "http" };
    Some(format!("{scheme}://{listen}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_url_is_given_or_the_listen_address() {
        let local = "127.0.0.1:7000".parse().expect("addr");
        assert_eq!(
            advertised(None, local, false).as_deref(),
            Some("http://127.0.0.1:7000")
        );
        assert_eq!(
            advertised(None, "[::1]:7000".parse().expect("addr"), true).as_deref(),
            Some("https://[::1]:7000")
        );
        assert_eq!(
            advertised(None, "0.0.0.0:7000".parse().expect("addr"), false),
            None
        );
        assert_eq!(
            advertised(Some("http://node-a:7000/"), local, false).as_deref(),
            Some("http://node-a:7000")
        );
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
    }
}

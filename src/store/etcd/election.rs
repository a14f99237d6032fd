//! Choosing the one node that commits every node's writes: the **writer** of the store.
//!
//! Correctness never depends on it: every commit is conditioned on mapreg's revision key, so
//! two nodes that both think they are the writer (or a node that commits while the writer is
//! away) cannot break a rule; they only contend. The election exists for throughput: when
//! every node commits its own writes, each commit races the others' for the revision key and
//! most lose (they catch up and validate again); when one node commits for all, its groups
//! batch every node's writes and never conflict.
//!
//! How (the usual etcd lease pattern, as Kubernetes' leader election does it):
//! - every node holds a lease of [`LEASE_TTL`] seconds, kept alive while the process lives;
//! - a node that advertises a URL puts `P meta/writer` = its URL under its lease, only if the
//!   key is absent (one transaction); the first one wins;
//! - every node reads the key and watches it: a PUT names the writer, a DELETE (the writer's
//!   lease expired: it died or lost etcd, or it stopped and revoked it) starts a new round;
//! - `P meta/peer_secret` (32 random bytes, hex, set once by whichever node got there first)
//!   is what a forwarded write carries to prove it comes from a node of this store: whoever
//!   can read it can read the whole registry anyway.
//!
//! A node that loses etcd stops seeing the writer ([`Elected`] None) and commits its own
//! writes (which then fail `STORE_UNAVAILABLE`, as they must); it never keeps forwarding to a
//! writer it can no longer confirm.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::watch;

use super::{Inner, READ_TIMEOUT};
use crate::store::Elected;

/// Seconds a writer's lease lives without a keep-alive: how long the store may go without a
/// writer after one dies (meanwhile every node commits its own writes).
pub const LEASE_TTL: i64 = 2;

/// Pause before a new round after etcd failed.
const RETRY: Duration = Duration::from_millis(500);

/// Runs the election for as long as `tx` has receivers (see the module documentation).
/// `me`: this node's advertised URL, or None for a node that never becomes the writer.
/// `lease` holds the lease of the current round, for the engine to revoke when it is dropped.
pub(super) async fn run(
    inner: Arc<Inner>,
    me: Option<String>,
    lease: Arc<Mutex<Option<i64>>>,
    tx: watch::Sender<Option<Elected>>,
) {
    while !tx.is_closed() {
        let round = round(&inner, me.as_deref(), &lease, &tx).await;
        let old = lease.lock().map(|mut l| l.take()).unwrap_or_default();
        if let Some(id) = old {
            revoke(&inner, id).await;
        }
        if let Err(e) = round {
            tracing::debug!(error = %e, "etcd: writer election round failed; retrying");
            if tx.send_if_modified(|v| v.take().is_some()) {
                tracing::info!("etcd: lost sight of the store's writer node; electing one");
            }
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// Revokes `lease`, so another node becomes the writer at once instead of after the TTL.
pub(super) async fn revoke(inner: &Inner, lease: i64) {
    let mut c = inner.client.clone();
    let _ = tokio::time::timeout(Duration::from_millis(500), c.lease_revoke(lease)).await;
}

/// One round: a lease (kept alive by a task of its own), the secret, then campaign and watch
/// until the lease or the watch is lost, or the channel closes.
async fn round(
    inner: &Arc<Inner>,
    me: Option<&str>,
    lease: &Mutex<Option<i64>>,
    tx: &watch::Sender<Option<Elected>>,
) -> Result<(), String> {
    let secret = secret(inner).await?;
    let mut client = inner.client.clone();
    let id = match me {
        Some(_) => {
            let grant = tokio::time::timeout(READ_TIMEOUT, client.lease_grant(LEASE_TTL, None))
                .await
                .map_err(|_| "granting a lease timed out".to_string())?
                .map_err(|e| format!("granting a lease: {e}"))?;
            Some(grant.id())
        }
        None => None,
    };
    if let Ok(mut l) = lease.lock() {
        *l = id;
    }
    // Keeps the lease alive; ends (dropping `alive`) when it cannot.
    let (alive_tx, mut alive) = watch::channel(());
    if let Some(id) = id {
        let mut client = inner.client.clone();
        tokio::spawn(async move {
            let Ok(Ok((mut keeper, mut stream))) =
                tokio::time::timeout(READ_TIMEOUT, client.lease_keep_alive(id)).await
            else {
                return;
            };
            let period = Duration::from_millis(LEASE_TTL as u64 * 1000 / 3);
            // A slow answer is not a lost lease: only etcd saying it is gone (TTL 0) or the
            // stream failing ends it. A lease that really expires deletes `meta/writer`,
            // which the watch below sees.
            loop {
                if alive_tx.is_closed() || keeper.keep_alive().await.is_err() {
                    return;
                }
                let wait = Duration::from_secs(LEASE_TTL as u64);
                match tokio::time::timeout(wait, stream.message()).await {
                    Ok(Ok(Some(r))) if r.ttl() > 0 => {}
                    Ok(_) => return,
                    Err(_) => continue,
                }
                tokio::time::sleep(period).await;
            }
        });
    }
    let key = inner.keys.key(b"meta/writer");
    loop {
        // Campaign (if this node may be the writer), and read who is.
        let txn = match (me, id) {
            (Some(url), Some(id)) => Txn::new()
                .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.clone(),
                    url,
                    Some(PutOptions::new().with_lease(id)),
                )])
                .or_else([TxnOp::get(key.clone(), None)]),
            _ => Txn::new()
                .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
                .or_else([TxnOp::get(key.clone(), None)]),
        };
        let r = tokio::time::timeout(READ_TIMEOUT, client.txn(txn))
            .await
            .map_err(|_| "campaigning timed out".to_string())?
            .map_err(|e| format!("campaigning: {e}"))?;
        let at = r.header().map_or(0, |h| h.revision());
        let current = if r.succeeded() {
            me.map(|url| (url.to_string(), true))
        } else {
            r.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                    (
                        String::from_utf8_lossy(kv.value()).into_owned(),
                        id.is_some_and(|id| kv.lease() == id),
                    )
                }),
                _ => None,
            })
        };
        publish(tx, current, &secret);
        let opts = etcd_client::WatchOptions::new().with_start_revision(at + 1);
        let mut stream = tokio::time::timeout(READ_TIMEOUT, client.watch(key.clone(), Some(opts)))
            .await
            .map_err(|_| "watching the writer timed out".to_string())?
            .map_err(|e| format!("watching the writer: {e}"))?;
        // Until the key is deleted (then campaign again), the watch breaks, or the lease dies.
        loop {
            let message = tokio::select! {
                m = stream.message() => m,
                _ = alive.changed(), if id.is_some() => {
                    return Err("the lease could not be kept alive".into());
                }
                _ = tx.closed() => return Ok(()),
            };
            match message {
                Ok(Some(r)) => {
                    if r.canceled() {
                        return Err("the writer watch was cancelled".into());
                    }
                    let mut deleted = false;
                    for event in r.events() {
                        match (event.event_type(), event.kv()) {
                            (EventType::Put, Some(kv)) => publish(
                                tx,
                                Some((
                                    String::from_utf8_lossy(kv.value()).into_owned(),
                                    id.is_some_and(|id| kv.lease() == id),
                                )),
                                &secret,
                            ),
                            (EventType::Delete, _) => deleted = true,
                            _ => {}
                        }
                    }
                    if deleted {
                        publish(tx, None, &secret);
                        break;
                    }
                }
                Ok(None) => return Err("the writer watch ended".into()),
                Err(e) => return Err(format!("the writer watch broke: {e}")),
            }
        }
    }
}

fn publish(
    tx: &watch::Sender<Option<Elected>>,
    current: Option<(String, bool)>,
    secret: &Arc<str>,
) {
    let new = current.map(|(url, me)| Elected {
        url,
        me,
        secret: secret.clone(),
    });
    tx.send_if_modified(|v| {
        if *v == new {
            return false;
        }
        match &new {
            Some(e) => tracing::info!(writer = %e.url, me = e.me, "etcd: the store's writer node"),
            None => tracing::info!("etcd: the store has no writer node; electing one"),
        }
        *v = new;
        true
    });
}

/// The store's peer secret, made by the first node that asks.
async fn secret(inner: &Inner) -> Result<Arc<str>, String> {
    let key = inner.keys.key(b"meta/peer_secret");
    let mine = hex::encode(rand::random::<[u8; 32]>());
    let txn = Txn::new()
        .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), mine.clone(), None)])
        .or_else([TxnOp::get(key, None)]);
    let mut client = inner.client.clone();
    let r = tokio::time::timeout(READ_TIMEOUT, client.txn(txn))
        .await
        .map_err(|_| "reading the peer secret timed out".to_string())?
        .map_err(|e| format!("reading the peer secret: {e}"))?;
    if r.succeeded() {
        return Ok(mine.into());
    }
    r.op_responses()
        .into_iter()
        .find_map(|op| match op {
            TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned().into()),
            _ => None,
        })
        .ok_or_else(|| "meta/peer_secret vanished while being set".to_string())
}

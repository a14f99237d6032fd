//! Who made each revision (SPEC.md 8.5), and the request id every RPC carries.
//!
//! - [`RequestIdLayer`], in front of every service: a request's `x-request-id` metadata (or
//!   header) is kept when it is a short printable value, else one is generated; the request
//!   goes on with it, the response carries it back, and the request runs inside a tracing span
//!   `request{request_id}`, so every log line of the request names it.
//! - [`crate::api`]'s `rpc()` runs each write inside [`scope`] with the caller's [`Audit`]
//!   (principal, account, RPC, request id). The writer reads it with [`current`] when the write
//!   is submitted, stamps the group's commit time on it, and it travels with the revision:
//!   into the change log entry (the `ChangeSet` fields `principal`, `account_id`, `method`,
//!   `request_id`, `commit_time`) and to live watchers. Log entries written before these fields
//!   existed decode with them empty.
//!
//! The principal is the token's `name` from the config (`token:` and the first 12 hex digits
//! of its hash when it has none), the client certificate's subject, the access key's name, or
//! `dev`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderValue;
use prost_types::Timestamp;
use tracing::Instrument;

use crate::auth::{Caller, Credential};
use crate::pb::{ChangeSet, Event};

/// The metadata (HTTP header) that carries a request's id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// [`REQUEST_ID`] as a header name, parsed once (at compile time), not on every request.
static REQUEST_ID_HEADER: http::HeaderName = http::HeaderName::from_static(REQUEST_ID);

/// Longest client-sent request id kept; a longer (or unprintable) one is replaced.
pub const MAX_REQUEST_ID: usize = 128;

/// Who made a revision, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// The token's name, the certificate's subject, the access key's name, or `dev`.
    pub principal: String,
    /// The caller's account.
    pub account_id: String,
    /// The RPC, e.g. `/mapreg.v1.Registry/CreateApiMapping`.
    pub method: String,
    /// The request's `x-request-id`.
    pub request_id: String,
    /// When the revision was committed (set by the writer).
    pub commit_time: Option<Timestamp>,
}

impl Audit {
    /// This audit, committed at `time`.
    pub fn committed_at(&self, time: Timestamp) -> Arc<Audit> {
        Arc::new(Audit {
            commit_time: Some(time),
            ..self.clone()
        })
    }

    /// The change set of a revision made by this audit's request, with `events`.
    pub fn change_set(&self, events: Vec<Event>) -> ChangeSet {
        ChangeSet {
            events,
            principal: self.principal.clone(),
            account_id: self.account_id.clone(),
            method: self.method.clone(),
            request_id: self.request_id.clone(),
            commit_time: self.commit_time,
        }
    }

    /// Splits a change set (from the log) into its events and its audit.
    pub fn split(cs: ChangeSet) -> (Vec<Event>, Audit) {
        let audit = Audit {
            principal: cs.principal,
            account_id: cs.account_id,
            method: cs.method,
            request_id: cs.request_id,
            commit_time: cs.commit_time,
        };
        (cs.events, audit)
    }
}

/// The principal name of a caller, put in the request's extensions by the authenticator next
/// to its [`Caller`]. Absent (a request built in-process, e.g. by the REST edge), the name
/// comes from the credential: see [`principal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub String);

/// The principal of `caller`: `named` when the authenticator found a name, else from the
/// credential.
pub fn principal(caller: &Caller, named: Option<&Principal>) -> String {
    if let Some(Principal(name)) = named {
        return name.clone();
    }
    match &caller.credential {
        Credential::Dev => "dev".to_string(),
        Credential::Token(hash) => token_principal(hash),
        Credential::Certificate(subject) => subject.clone(),
        Credential::AccessKey(id) => id.clone(),
    }
}

/// The principal of a token without a `name`: `token:` and the first 12 hex digits of its
/// SHA-256 (which the config file lists), never the token itself.
pub fn token_principal(hash: &[u8; 32]) -> String {
    format!("token:{}", &hex::encode(hash)[..12])
}

tokio::task_local! {
    static CURRENT: Arc<Audit>;
}

/// Runs `f` with `audit` as the [`current`] audit of its task.
pub async fn scope<F: Future>(audit: Audit, f: F) -> F::Output {
    CURRENT.scope(Arc::new(audit), f).await
}

/// The audit of the request this task serves (empty outside [`scope`]).
pub fn current() -> Arc<Audit> {
    CURRENT.try_with(Arc::clone).unwrap_or_default()
}

/// A new request id: 16 pseudo-random bytes (never repeated by one thread, see
/// `random_16`), UUID-shaped (`8-4-4-4-12` lower-case hex digits).
pub fn new_request_id() -> String {
    let id = request_id_bytes();
    // Hex digits and dashes only: always UTF-8.
    String::from_utf8_lossy(&id).into_owned()
}

thread_local! {
    /// The state of this thread's request-id generator, seeded from the OS-seeded
    /// `rand::thread_rng` when the thread makes its first id.
    static ID_STATE: std::cell::Cell<u64> = std::cell::Cell::new(rand::random());
}

/// 16 bytes from this thread's generator: SplitMix64 (Steele, Lea and Flood), whose outputs
/// are a bijection of a counter, so a thread never repeats an id, and threads start from
/// random points. Request ids are labels, not secrets: they need to be unique and cheap.
fn random_16() -> [u8; 16] {
    fn next(state: &std::cell::Cell<u64>) -> u64 {
        let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let (a, b) = ID_STATE.with(|s| (next(s), next(s)));
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

/// [`new_request_id`] as ASCII bytes, formatted without `format!`: one id is made for every
/// request that arrives without one, so it must cost next to nothing.
fn request_id_bytes() -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let random = random_16();
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, b) in random.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        out[at] = HEX[usize::from(b >> 4)];
        out[at + 1] = HEX[usize::from(b & 0x0f)];
        at += 2;
    }
    out
}

/// A new request id as a header value.
fn new_request_id_value() -> HeaderValue {
    HeaderValue::from_bytes(&request_id_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Whether a client-sent request id is kept as is.
fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_graphic())
}

/// The tower layer that gives every request an id (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestId { inner }
    }
}

/// The service of [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestId<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for RequestId<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let mut id = match req.headers().get(&REQUEST_ID_HEADER) {
            Some(v) if acceptable(v) => v.clone(),
            _ => {
                let v = new_request_id_value();
                req.headers_mut()
                    .insert(REQUEST_ID_HEADER.clone(), v.clone());
                v
            }
        };
        // Unique per request: HPACK must not index it. An indexed value would only evict the
        // useful entries of both sides' dynamic tables (`:status`, `content-type`, ...), and
        // inserting it costs the encoder more than the rest of the response headers.
        id.set_sensitive(true);
        let span = tracing::info_span!("request", request_id = %id.to_str().unwrap_or_default());
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(
            async move {
                let mut resp = fut.await?;
                resp.headers_mut().insert(REQUEST_ID_HEADER.clone(), id);
                Ok(resp)
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn change_sets_without_audit_fields_still_decode() {
        // A log entry written before the audit fields existed: events only.
        let old = ChangeSet {
            events: vec![Event::default()],
            ..Default::default()
        }
        .encode_to_vec();
        let (events, audit) = Audit::split(ChangeSet::decode(old.as_slice()).unwrap());
        assert_eq!(events.len(), 1);
        assert_eq!(audit, Audit::default());
        // And a new one round-trips.
        let a = Audit {
            principal: "ci".into(),
            account_id: "111122223333".into(),
            method: "/mapreg.v1.Registry/CreateApi".into(),
            request_id: "r-1".into(),
            commit_time: None,
        };
        let a = a.committed_at(Timestamp {
            seconds: 5,
            nanos: 0,
        });
        let bytes = a.change_set(vec![]).encode_to_vec();
        let (_, back) = Audit::split(ChangeSet::decode(bytes.as_slice()).unwrap());
        assert_eq!(back, *a);
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        assert!(acceptable(&HeaderValue::from_static("abc-123")));
        assert!(!acceptable(&HeaderValue::from_static("has space")));
        assert!(!acceptable(&HeaderValue::from_static("")));
        let long = "x".repeat(MAX_REQUEST_ID + 1);
        assert!(!acceptable(&HeaderValue::try_from(long).unwrap()));
        let id = new_request_id();
        assert_eq!(id.len(), 36);
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert!(id.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()));
        assert_ne!(id, new_request_id());
    }

    #[tokio::test]
    async fn the_current_audit_is_the_scopes() {
        assert_eq!(*current(), Audit::default());
        let a = Audit {
            principal: "p".into(),
            ..Default::default()
        };
        let seen = scope(a.clone(), async { current() }).await;
        assert_eq!(*seen, a);
    }
}

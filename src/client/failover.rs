//! Several endpoints and when a request may move to the next one: the rules every mapreg
//! client follows (the CLI, [`MappingCache`](super::MappingCache), the gateway example).
//!
//! A client is given a list (`--endpoint a,b,c`, `MAPREG_ENDPOINT=a,b,c`). The nodes may be
//! one server reachable under several names, or several nodes sharing one store (SPEC.md 8.2):
//! any of them answers every request, and a watcher resumes on any of them with the same
//! `store_id`, `start_revision` and `resume_history_hash`. Each endpoint keeps its own scheme
//! rules ([`super::connect`]): an `https://` endpoint is TLS and never falls back, a failed one
//! only moves on to the next endpoint of the list.
//!
//! **Order.** Endpoints are tried in the order given, first to last (not from a random one):
//! list the nearest or preferred node first. A client that has moved on stays on the node that
//! answers until that one fails.
//!
//! **When a request moves on** ([`may_retry`]), as etcd's clientv3 decides for its
//! non-idempotent requests:
//! - a connection that could not be established (refused, unreachable, TLS handshake failed,
//!   timed out): the request was never sent, so ANY request, writes included, is sent to the
//!   next endpoint;
//! - `UNAVAILABLE` (the node is shutting down, lost its store's quorum, is behind the
//!   requested `min_revision`) or a connection broken during the call: only a READ (every
//!   Get*, list, ResolveRoute, Watch, and a write with `validate_only`, which changes nothing)
//!   moves on. A write is not sent again: it may have been applied before the answer was
//!   lost, and creates are not idempotent (a second CreateApi makes a second API). The error
//!   is returned; the caller may read the state and decide (updates and deletes can be made
//!   safe to repeat with `--expected-revision`).
//! - any other answer is the answer (a `NOT_FOUND` from one node is the store's `NOT_FOUND`).

use tonic::Code;

/// Splits an endpoint list `a,b,c` into its endpoints, in order; blanks around commas and
/// empty entries are dropped. The result is empty only when `list` names no endpoint.
pub fn parse_endpoints(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether a request changes the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Changes nothing (Get*, lists, ResolveRoute, Watch, ReportStatus, a `validate_only`
    /// write): sending it twice is harmless.
    Read,
    /// May change the store: sending it twice may apply it twice.
    Write,
}

/// How an attempt on one endpoint failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made: the request was never sent.
    NotConnected,
    /// The call was made (its request may have reached the server) and failed with this code.
    Call(Code),
}

/// Whether a request of `kind` that failed as `failure` may be sent to the next endpoint (see
/// the module documentation): always when it was never sent, a read also on `UNAVAILABLE`,
/// nothing else.
pub fn may_retry(kind: RequestKind, failure: Failure) -> bool {
    match failure {
        Failure::NotConnected => true,
        Failure::Call(Code::Unavailable) => kind == RequestKind::Read,
        Failure::Call(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_lists() {
        assert_eq!(parse_endpoints("a:1"), vec!["a:1"]);
        assert_eq!(
            parse_endpoints(" http://a:1 , https://b:2,,c:3,"),
            vec!["http://a:1", "https://b:2", "c:3"]
        );
        assert!(parse_endpoints(" , ").is_empty());
    }

    #[test]
    fn retry_rules() {
        use Failure::*;
        use RequestKind::*;
        assert!(may_retry(Read, NotConnected));
        assert!(may_retry(Write, NotConnected), "never sent: safe");
        assert!(may_retry(Read, Call(Code::Unavailable)));
        assert!(
            !may_retry(Write, Call(Code::Unavailable)),
            "may have been applied"
        );
        for code in [
            Code::NotFound,
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::DeadlineExceeded,
            Code::Internal,
        ] {
            assert!(!may_retry(Read, Call(code)), "{code:?}");
            assert!(!may_retry(Write, Call(code)), "{code:?}");
        }
    }
}

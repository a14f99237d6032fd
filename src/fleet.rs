//! The fleet: the gateways that follow the change feed, as they last reported (SPEC.md 8.5),
//! to answer "has my change reached every gateway?".
//!
//! Reports are kept in memory only, by `gateway_id` (a restarted server learns the fleet again
//! within one report interval). A gateway not heard from for the expiry (default
//! [`DEFAULT_EXPIRY`]) is dropped: expired entries are removed whenever the fleet is read or
//! written, so a list never shows one. Lag is computed when listed, against the registry's
//! current revision, so a silent but current gateway does not look behind.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::pb::Gateway;

/// How long a gateway stays listed after its last report.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(300);

/// One gateway's last report.
#[derive(Debug, Clone)]
struct Report {
    principal: String,
    store_id: String,
    applied_revision: u64,
    in_sync: bool,
    received: Instant,
    time: SystemTime,
}

/// The gateways heard from within the expiry.
#[derive(Debug)]
pub struct Fleet {
    expiry: Duration,
    reports: Mutex<BTreeMap<String, Report>>,
}

/// What a gateway reports.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Who reported (the principal of its credential).
    pub principal: String,
    /// The store its stream reads.
    pub store_id: String,
    /// The last revision it applied.
    pub applied_revision: u64,
    /// Whether its copy is complete and current as far as it knows.
    pub in_sync: bool,
}

impl Fleet {
    /// An empty fleet whose members expire `expiry` after their last report.
    pub fn new(expiry: Duration) -> Fleet {
        Fleet {
            expiry,
            reports: Mutex::new(BTreeMap::new()),
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Report>> {
        let mut g = match self.reports.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let expiry = self.expiry;
        g.retain(|_, r| r.received.elapsed() <= expiry);
        g
    }

    /// Records `gateway_id`'s report, replacing its previous one.
    pub fn report(&self, gateway_id: &str, status: Status) {
        let report = Report {
            principal: status.principal,
            store_id: status.store_id,
            applied_revision: status.applied_revision,
            in_sync: status.in_sync,
            received: Instant::now(),
            time: SystemTime::now(),
        };
        self.locked().insert(gateway_id.to_string(), report);
    }

    /// Up to `size` gateways by id, after `after` if given, with their lag behind `current`;
    /// and the id to continue after, when more follow.
    pub fn page(
        &self,
        after: Option<&str>,
        size: usize,
        current: u64,
    ) -> (Vec<Gateway>, Option<String>) {
        use std::ops::Bound;
        let g = self.locked();
        let start = match after {
            Some(a) => Bound::Excluded(a.to_string()),
            None => Bound::Unbounded,
        };
        let mut range = g.range((start, Bound::Unbounded));
        let items: Vec<Gateway> = range
            .by_ref()
            .take(size)
            .map(|(id, r)| Gateway {
                gateway_id: id.clone(),
                principal: r.principal.clone(),
                applied_revision: r.applied_revision,
                lag: current.saturating_sub(r.applied_revision),
                in_sync: r.in_sync,
                last_report_time: Some(r.time.into()),
                store_id: r.store_id.clone(),
            })
            .collect();
        let next = match (range.next(), items.last()) {
            (Some(_), Some(last)) => Some(last.gateway_id.clone()),
            _ => None,
        };
        (items, next)
    }

    /// How many gateways are listed, and the largest lag among them behind `current`.
    pub fn summary(&self, current: u64) -> (usize, u64) {
        let g = self.locked();
        let max_lag = g
            .values()
            .map(|r| current.saturating_sub(r.applied_revision))
            .max()
            .unwrap_or(0);
        (g.len(), max_lag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(applied_revision: u64) -> Status {
        Status {
            principal: "gw".into(),
            applied_revision,
            in_sync: true,
            ..Default::default()
        }
    }

    #[test]
    fn pages_by_id_with_lag() {
        let f = Fleet::new(DEFAULT_EXPIRY);
        f.report("b", status(5));
        f.report("a", status(9));
        f.report("c", status(12));
        let (first, next) = f.page(None, 2, 10);
        let ids: Vec<_> = first.iter().map(|g| g.gateway_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!((first[0].lag, first[1].lag), (1, 5));
        assert_eq!(next.as_deref(), Some("b"));
        let (rest, next) = f.page(Some("b"), 2, 10);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].lag, 0, "ahead counts as no lag");
        assert_eq!(next, None);
        assert_eq!(f.summary(10), (3, 5));
    }

    #[test]
    fn silent_gateways_expire() {
        let f = Fleet::new(Duration::ZERO);
        f.report("a", status(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(f.summary(1), (0, 0));
        assert!(f.page(None, 10, 1).0.is_empty());
    }
}

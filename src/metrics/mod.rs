//! Prometheus metrics (SPEC.md 8.8), served by `mapreg serve --metrics-listen ADDR` at
//! `GET /metrics` on a listener of their own (so scrapes never compete with the gRPC port's
//! connection limit, and the port can stay private).
//!
//! - [`grpc`]: one tower layer in front of every gRPC service counts each call under the
//!   grpc-ecosystem names (`grpc_server_started_total`, `grpc_server_handled_total`,
//!   `grpc_server_handling_seconds`).
//! - The registry's own: `mapreg_revision`, `mapreg_compact_revision`, `mapreg_records{kind}`,
//!   `mapreg_watchers`, `mapreg_watch_catchup_total`, `mapreg_gateways`,
//!   `mapreg_gateway_max_lag_revisions` are read when scraped ([`State`]);
//!   `mapreg_write_batch_size` and `mapreg_flush_seconds` are observed by [`Metered`], the
//!   engine adapter that times every flush and counts the writes of every committed batch.
//! - [`process`]: the standard `process_*` metrics, read from `/proc` when scraped.
//!
//! The crate is `prometheus-client` (the Prometheus project's Rust client); it writes the
//! OpenMetrics text format, which Prometheus scrapes natively. It has no process collector;
//! rather than a second metrics crate for that, [`process`] reads the six values from
//! `/proc/self` (Linux; elsewhere they are left out).
//!
//! Every server has its own metrics (tests run several servers in one process).

/// Registers each `"name", "help" => metric;` in the registry `$r`: a clone of the metric,
/// which shares its values with the one the server updates.
macro_rules! register_metrics {
    ($r:expr; $($name:literal, $help:literal => $metric:expr;)+) => {
        $($r.register($name, $help, $metric.clone());)+
    };
}

/// Implements the [`Engine`] methods a wrapper passes through unchanged to its `inner`
/// engine: the required ones but `commit` and `flush`, which a wrapper is for. The caller
/// implements those two, and overrides any provided method it wants to pass through too.
macro_rules! engine_pass_through {
    () => {
        fn store_id(&self, fresh: &dyn Fn() -> String) -> $crate::error::Result<String> {
            self.inner.store_id(fresh)
        }
        fn revision(&self) -> $crate::error::Result<u64> {
            self.inner.revision()
        }
        fn compact_revision(&self) -> $crate::error::Result<u64> {
            self.inner.compact_revision()
        }
        fn read_log(
            &self,
            from: u64,
            to: u64,
            max: usize,
        ) -> $crate::error::Result<Vec<(u64, Vec<u8>)>> {
            self.inner.read_log(from, to, max)
        }
        fn scan_records(&self) -> $crate::store::RecordIter {
            self.inner.scan_records()
        }
        fn compact(
            &self,
            upto: u64,
            hash: &$crate::store::history::Hash,
        ) -> $crate::error::Result<usize> {
            self.inner.compact(upto, hash)
        }
        fn compact_hash(&self) -> $crate::error::Result<$crate::store::history::Hash> {
            self.inner.compact_hash()
        }
    };
}
#[cfg(test)]
pub(crate) use engine_pass_through;

pub mod grpc;
pub mod process;

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry as Prometheus;

use crate::error::Result;
use crate::feed::Hub;
use crate::fleet::Fleet;
use crate::store::{Batch, CommitError, Engine, RecordIter, Registry};

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of one server.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The gRPC call metrics (the layer's).
    pub grpc: Arc<grpc::GrpcMetrics>,
    /// Writes per committed batch (group commit).
    pub write_batch_size: Histogram,
    /// Time of each engine flush (fsync), in seconds.
    pub flush_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh metrics, all zero.
    pub fn new() -> Metrics {
        Metrics {
            grpc: Arc::new(grpc::GrpcMetrics::default()),
            // 1, 2, 4 .. 256 (the writer's largest group).
            write_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            // 100 µs .. ~6.5 s.
            flush_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 17)),
        }
    }

    /// The registry a scrape encodes: these metrics, and `state`'s and the process's read
    /// at scrape time.
    pub fn registry(&self, state: State) -> Prometheus {
        let mut r = Prometheus::default();
        self.grpc.register(&mut r);
        register_metrics!(r;
            "mapreg_write_batch_size", "Writes committed per batch (one flush each)"
                => self.write_batch_size;
            "mapreg_flush_seconds", "Time of each storage flush (fsync)" => self.flush_seconds;
        );
        r.register_collector(Box::new(state));
        r.register_collector(Box::new(process::Process));
        r
    }
}

/// Encodes `registry` in the OpenMetrics text format.
pub fn encode(registry: &Prometheus) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

/// The registry's values read at scrape time.
#[derive(Clone)]
pub struct State {
    /// The store.
    pub registry: Arc<Registry>,
    /// The change feed (watchers, catch-ups).
    pub hub: Arc<Hub>,
    /// The reporting gateways.
    pub fleet: Arc<Fleet>,
    /// The writer's counters.
    pub writer: Arc<crate::store::writer::WriterStats>,
    /// Who the store's writer node is, on a store several nodes share.
    pub elected: Option<tokio::sync::watch::Receiver<Option<crate::store::Elected>>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> std::result::Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    let m = e.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for State {
    fn encode(&self, mut e: DescriptorEncoder) -> std::result::Result<(), std::fmt::Error> {
        let current = self.registry.current();
        let revision = current.revision();
        gauge(
            &mut e,
            "mapreg_revision",
            "The last durable revision",
            clamp(revision),
        )?;
        if let Ok(c) = self.registry.compact_revision() {
            gauge(
                &mut e,
                "mapreg_compact_revision",
                "Change-log entries at or below this revision are compacted away",
                clamp(c),
            )?;
        }
        let (apis, stages, domains, mappings) = current.counts();
        let g = ConstGauge::new(0i64);
        let mut m = e.encode_descriptor(
            "mapreg_records",
            "Records held, by kind",
            None,
            g.metric_type(),
        )?;
        for (kind, n) in [
            ("api", apis),
            ("stage", stages),
            ("domain_name", domains),
            ("api_mapping", mappings),
        ] {
            let labels = [("kind", kind)];
            ConstGauge::new(n as i64).encode(m.encode_family(&labels)?)?;
        }
        gauge(
            &mut e,
            "mapreg_watchers",
            "Open Watch streams",
            self.hub.watchers() as i64,
        )?;
        let c = ConstCounter::new(self.hub.catchups());
        let m = e.encode_descriptor(
            "mapreg_watch_catchup",
            "Times a watcher read revisions from the persisted log (resuming, or after \
             falling behind the live ring)",
            None,
            c.metric_type(),
        )?;
        c.encode(m)?;
        for (name, help, value) in [
            (
                "mapreg_writes_forwarded",
                "Writes this node handed to the store's elected writer node, which answered them",
                &self.writer.forwarded,
            ),
            (
                "mapreg_write_conflicts",
                "Commits that found another node had committed first (then caught up and \
                 validated again)",
                &self.writer.conflicts,
            ),
        ] {
            let c = ConstCounter::new(value.load(std::sync::atomic::Ordering::Relaxed));
            let m = e.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(m)?;
        }
        if let Some(elected) = &self.elected {
            let g = ConstGauge::new(0i64);
            let mut m = e.encode_descriptor(
                "mapreg_writer_elected",
                "The elected writer node of the shared store, by URL: 1 if it is this node, \
                 0 if another (no sample while none is known)",
                None,
                g.metric_type(),
            )?;
            let writer = elected.borrow().clone();
            if let Some(w) = writer {
                let labels = [("writer", w.url.as_str())];
                ConstGauge::new(i64::from(w.me)).encode(m.encode_family(&labels)?)?;
            }
        }
        let (gateways, max_lag) = self.fleet.summary(revision);
        gauge(
            &mut e,
            "mapreg_gateways",
            "Gateways that reported within the expiry",
            gateways as i64,
        )?;
        gauge(
            &mut e,
            "mapreg_gateway_max_lag_revisions",
            "The largest lag among reporting gateways, in revisions behind mapreg_revision",
            clamp(max_lag),
        )?;
        Ok(())
    }
}

/// An engine that observes `mapreg_write_batch_size` on every committed batch and
/// `mapreg_flush_seconds` on every flush; everything else passes through.
pub struct Metered {
    inner: Arc<dyn Engine>,
    metrics: Metrics,
}

impl Metered {
    /// `inner`, observed into `metrics`.
    pub fn new(inner: Arc<dyn Engine>, metrics: Metrics) -> Metered {
        Metered { inner, metrics }
    }
}

impl Engine for Metered {
    engine_pass_through!();
    fn commit(&self, batch: &Batch) -> std::result::Result<(), CommitError> {
        self.inner.commit(batch)?;
        self.metrics
            .write_batch_size
            .observe(batch.log.len() as f64);
        Ok(())
    }
    fn scan_snapshot(&self) -> Result<(u64, RecordIter)> {
        self.inner.scan_snapshot()
    }
    fn flush(&self) -> Result<()> {
        let started = Instant::now();
        let r = self.inner.flush();
        self.metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        r
    }
    fn batch_limits(&self) -> crate::store::BatchLimits {
        self.inner.batch_limits()
    }
    fn follow(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.follow()
    }
    fn elect(
        &self,
        me: Option<String>,
    ) -> Option<tokio::sync::watch::Receiver<Option<crate::store::Elected>>> {
        self.inner.elect(me)
    }
}

/// Serves `GET /metrics` from `registry` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Prometheus,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::result::Result<(), tonic::transport::Error> {
    use axum::routing::get;
    let registry = Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, CONTENT_TYPE)],
                    encode(&registry),
                )
            }
        }),
    );
    tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(tonic::service::Routes::from(app))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
}

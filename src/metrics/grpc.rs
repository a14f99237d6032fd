//! gRPC server metrics under the grpc-ecosystem names (go-grpc-middleware's prometheus
//! provider), as one tower layer in front of every service:
//!
//! - `grpc_server_started_total{grpc_type,grpc_service,grpc_method}`: when the request arrives;
//! - `grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`: when its status
//!   is known, with the code as grpc-go prints it (`OK`, `InvalidArgument`, `NotFound`, ...);
//! - `grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}`: the time from arrival
//!   to that status (for a stream: to its end).
//!
//! Where the status is: a trailers-only response (every error of a unary call, and the
//! refusals of the interceptor) has `grpc-status` in its headers; any other response sends it
//! in the trailers after the body, so the body is wrapped and the status read from the trailer
//! frame. A response body dropped before its trailers (the client cancelled, or a stream was
//! cut) counts as `Canceled`. Requests that are not gRPC (the REST edge) are not counted.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as Prometheus;
use tonic::Code;

/// Distinct method paths counted on their own; further (unknown) ones share one entry, so a
/// client sending random paths cannot grow the label set without bound.
const MAX_METHODS: usize = 256;

/// grpc-ecosystem's default buckets (Prometheus's), in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `grpc_type`, `grpc_service`, `grpc_method`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
}

/// [`MethodLabels`] and `grpc_code`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The gRPC call metrics of one server.
#[derive(Debug)]
pub struct GrpcMetrics {
    started: Family<MethodLabels, Counter>,
    handled: Family<CodeLabels, Counter>,
    handling: Family<MethodLabels, Histogram, fn() -> Histogram>,
    /// By request path: the handles of its metrics, resolved once.
    methods: RwLock<HashMap<String, Arc<Method>>>,
}

impl Default for GrpcMetrics {
    fn default() -> Self {
        GrpcMetrics {
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(histogram as fn() -> Histogram),
            methods: RwLock::new(HashMap::new()),
        }
    }
}

/// One method's metric handles.
#[derive(Debug)]
pub struct Method {
    labels: MethodLabels,
    started: Counter,
    handling: Histogram,
    /// By code number; made on first use.
    handled: [OnceLock<Counter>; 17],
    family: Family<CodeLabels, Counter>,
}

impl Method {
    fn finish(&self, code: Code, started: Instant) {
        self.handling.observe(started.elapsed().as_secs_f64());
        let i = (code as usize).min(16);
        self.handled[i]
            .get_or_init(|| {
                self.family
                    .get_or_create(&CodeLabels {
                        grpc_type: self.labels.grpc_type,
                        grpc_service: self.labels.grpc_service.clone(),
                        grpc_method: self.labels.grpc_method.clone(),
                        grpc_code: code_name(code),
                    })
                    .clone()
            })
            .inc();
    }
}

/// A code as grpc-go's `codes.Code.String()` prints it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The RPC kind of a method path: the streaming methods mapreg serves are known.
fn grpc_type(path: &str) -> &'static str {
    match path {
        "/mapreg.v1.ChangeFeed/Watch" | "/grpc.health.v1.Health/Watch" => "server_stream",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        | "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" => "bidi_stream",
        _ => "unary",
    }
}

impl GrpcMetrics {
    /// Registers the three families in `r`.
    pub fn register(&self, r: &mut Prometheus) {
        register_metrics!(r;
            "grpc_server_started", "Total number of RPCs started on the server" => self.started;
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure"
                => self.handled;
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level \
             handled by the server"
                => self.handling;
        );
    }

    /// The handles of the method at `path` (`/package.Service/Method`).
    fn method(&self, path: &str) -> Arc<Method> {
        if let Ok(m) = self.methods.read()
            && let Some(h) = m.get(path)
        {
            return h.clone();
        }
        let mut m = match self.methods.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let key = if m.len() >= MAX_METHODS {
            "/unknown/unknown"
        } else {
            path
        };
        if let Some(h) = m.get(key) {
            return h.clone();
        }
        let (service, method) = key
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("unknown", "unknown"));
        let labels = MethodLabels {
            grpc_type: grpc_type(key),
            grpc_service: service.to_string(),
            grpc_method: method.to_string(),
        };
        let h = Arc::new(Method {
            started: self.started.get_or_create(&labels).clone(),
            handling: self.handling.get_or_create(&labels).clone(),
            handled: Default::default(),
            family: self.handled.clone(),
            labels,
        });
        m.insert(key.to_string(), h.clone());
        h
    }
}

/// The tower layer; without metrics it only passes requests through.
#[derive(Debug, Clone, Default)]
pub struct GrpcMetricsLayer {
    metrics: Option<Arc<GrpcMetrics>>,
}

impl GrpcMetricsLayer {
    /// A layer counting into `metrics` (None: counting nothing).
    pub fn new(metrics: Option<Arc<GrpcMetrics>>) -> Self {
        GrpcMetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Option<Arc<GrpcMetrics>>,
}

fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The `grpc-status` of a header map, if present.
fn status_of(headers: &http::HeaderMap) -> Option<Code> {
    let v = headers.get("grpc-status")?;
    let n: i32 = std::str::from_utf8(v.as_bytes())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Code::from_i32(n))
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<MeteredBody<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(method) = (match &self.metrics {
            Some(m) if is_grpc(&req) => Some(m.method(req.uri().path())),
            _ => None,
        }) else {
            // Metrics off (or not gRPC): nothing to time or count.
            let fut = self.inner.call(req);
            return Box::pin(async move {
                let resp = fut.await?;
                Ok(resp.map(|inner| MeteredBody { inner, probe: None }))
            });
        };
        let started = Instant::now();
        method.started.inc();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = match fut.await {
                Ok(r) => r,
                Err(e) => {
                    method.finish(Code::Unknown, started);
                    return Err(e);
                }
            };
            let probe = match status_of(resp.headers()) {
                // Trailers-only: the status is already known.
                Some(code) => {
                    method.finish(code, started);
                    None
                }
                None => Some(Probe { method, started }),
            };
            Ok(resp.map(|inner| MeteredBody { inner, probe }))
        })
    }
}

/// What a body still has to report.
struct Probe {
    method: Arc<Method>,
    started: Instant,
}

/// A response body that reports the call's status when its trailers pass (see the module
/// documentation).
pub struct MeteredBody<B> {
    inner: B,
    probe: Option<Probe>,
}

impl<B> MeteredBody<B> {
    fn finish(&mut self, code: Code) {
        if let Some(p) = self.probe.take() {
            p.method.finish(code, p.started);
        }
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if this.probe.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(t) = frame.trailers_ref() {
                        this.finish(status_of(t).unwrap_or(Code::Unknown));
                    }
                }
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => this.finish(Code::Unknown),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_spelled_as_grpc_go_does() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        assert_eq!(code_name(Code::InvalidArgument), "InvalidArgument");
        assert_eq!(code_name(Code::Unauthenticated), "Unauthenticated");
    }

    #[test]
    fn methods_are_resolved_once_and_bounded() {
        let g = GrpcMetrics::default();
        let a = g.method("/mapreg.v1.Registry/GetApi");
        let b = g.method("/mapreg.v1.Registry/GetApi");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.labels.grpc_service, "mapreg.v1.Registry");
        assert_eq!(a.labels.grpc_method, "GetApi");
        assert_eq!(
            g.method("/mapreg.v1.ChangeFeed/Watch").labels.grpc_type,
            "server_stream"
        );
        for i in 0..(2 * MAX_METHODS) {
            g.method(&format!("/x/{i}"));
        }
        assert!(g.methods.read().unwrap().len() <= MAX_METHODS + 1);
    }
}

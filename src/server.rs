//! Assembles and runs a server: storage, the writer thread, the change-feed hub and its
//! compactor, the gRPC services (Registry, ChangeFeed, Gateways, health, reflection v1 and
//! v1alpha), the request-id and gRPC-metrics layers in front of them, `/metrics` when asked,
//! authentication, the transport (TLS, connection limits: [`crate::transport`]), reloads,
//! and graceful shutdown.
//!
//! Reload ([`run_with_reloads`]; `mapreg serve` sends one per SIGHUP): a new configuration
//! replaces the accepted tokens, `[[clients]]` and the TLS certificate, key and client CA,
//! all or nothing; a configuration that does not check, or whose files do not load, is
//! refused with a log line and the running settings stay. Open connections are not touched;
//! Watch streams whose credential is gone end `UNAUTHENTICATED`. Everything else (listen
//! address, data dir, limits, turning TLS on or off, dev mode) needs a restart.
//!
//! Shutdown, when `shutdown` resolves: health turns NOT_SERVING, watch streams end with
//! UNAVAILABLE, the listener stops accepting,
//! in-flight requests finish (bounded by [`SHUTDOWN_GRACE`] so a stream cannot hold the process
//! open), the writer drains its queue, and the store is flushed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

mod fast_path;

use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::api::change_feed::ChangeFeedService;
use crate::api::gateways::GatewaysService;
use crate::api::registry::RegistryService;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::feed::Hub;
use crate::pb::change_feed_server::ChangeFeedServer;
use crate::pb::gateways_server::GatewaysServer;
use crate::pb::registry_server::RegistryServer;
use crate::store::etcd::EtcdEngine;
use crate::store::sled::SledEngine;
use crate::store::writer::Writer;
use crate::store::{Engine, Limits, Registry};
use crate::transport::{self, ServerTls, TlsFiles};

/// The health service name that reports whether writes can be committed (SPEC.md 8.2).
pub const WRITES_SERVICE: &str = "mapreg.v1.Registry.writes";

/// Largest request message accepted; larger ones get RESOURCE_EXHAUSTED.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// How long in-flight requests and streams may run on after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why a server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is unusable (e.g. dev mode on a non-loopback address).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store (the data dir, or the etcd URL) could not be opened.
    #[error("cannot open {dir}: {source}")]
    Store {
        /// `data dir DIR`, or `store etcd://...`.
        dir: String,
        /// What failed.
        source: crate::error::Error,
    },
    /// The TLS certificate, key or client CA could not be loaded.
    #[error(transparent)]
    Tls(#[from] transport::TlsError),
    /// The listener or the transport failed.
    #[error("transport: {0}")]
    Transport(String),
}

/// The first pause between two attempts at loading a store that cannot be reached.
const STORE_RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest pause between two attempts.
const STORE_RETRY_MAX: Duration = Duration::from_secs(5);

/// Loads the registry from a shared store (etcd), waiting for it as Kubernetes' apiserver
/// waits for its etcd: while loading fails `STORE_UNAVAILABLE` (etcd not started yet, no
/// quorum yet), logs the reason at warn and tries again after a pause that doubles from
/// [`STORE_RETRY_FIRST`] to [`STORE_RETRY_MAX`], until `wait` has passed since the first
/// attempt (an attempt still running then is abandoned on its thread); then fails
/// `STORE_UNAVAILABLE` saying how long it waited and why. Any other error (a corrupt store)
/// fails at once. `wait` 0: one attempt, however long it takes.
async fn wait_for_store(
    engine: Arc<dyn Engine>,
    limits: Limits,
    wait: Duration,
) -> crate::error::Result<Registry> {
    use crate::error::Error;
    let started = tokio::time::Instant::now();
    let deadline = started + wait;
    let mut pause = STORE_RETRY_FIRST;
    let mut last: Option<Error> = None;
    let mut attempt = 0u32;
    let gave_up = |why: String| Error::Unavailable {
        reason: "STORE_UNAVAILABLE",
        message: format!(
            "gave up after waiting {:.1}s for the store (store_wait_seconds, \
             --store-wait-seconds, MAPREG_STORE_WAIT_SECONDS: {}s): {why}",
            started.elapsed().as_secs_f64(),
            wait.as_secs()
        ),
    };
    loop {
        attempt += 1;
        // On a thread of its own, not tokio's blocking pool: an abandoned attempt must not
        // hold the runtime (and the process) open when the server gives up.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (engine, limits) = (engine.clone(), limits.clone());
        std::thread::Builder::new()
            .name("mapreg-load".into())
            .spawn(move || {
                let _ = tx.send(crate::store::catch_corruption("loading the store", || {
                    Registry::open(engine, limits)
                }));
            })
            .map_err(|e| Error::internal(format!("cannot start loading the store: {e}")))?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let outcome = if wait.is_zero() {
            Ok(rx.await)
        } else {
            tokio::time::timeout(left, rx).await
        };
        let error = match outcome {
            Ok(Ok(Ok(registry))) => {
                if attempt > 1 {
                    tracing::warn!(
                        attempt,
                        seconds = started.elapsed().as_secs_f64(),
                        "the store is reachable again: loaded"
                    );
                }
                return Ok(registry);
            }
            Ok(Ok(Err(e @ Error::Unavailable { .. }))) => e,
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) => return Err(Error::internal("loading the store stopped unexpectedly")),
            Err(_) => {
                return Err(gave_up(match last {
                    Some(e) => e.to_string(),
                    None => "loading it got no answer (is etcd up, with a quorum?)".into(),
                }));
            }
        };
        if tokio::time::Instant::now() + pause >= deadline {
            return Err(gave_up(error.to_string()));
        }
        tracing::warn!(
            attempt,
            error = %error,
            retry_in_ms = pause.as_millis() as u64,
            waited_s = started.elapsed().as_secs(),
            wait_s = wait.as_secs(),
            "cannot load the store yet; waiting for it"
        );
        last = Some(error);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(STORE_RETRY_MAX);
    }
}

/// Serves `config` on `listener` until `shutdown` resolves, then shuts down gracefully.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    run_with_reloads(config, listener, shutdown, tokio_stream::pending()).await
}

/// [`run`], and each configuration `reloads` yields is applied as a reload (see the module
/// documentation).
pub async fn run_with_reloads(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reloads: impl Stream<Item = Config> + Send + Unpin + 'static,
) -> Result<(), ServeError> {
    run_with_listeners(config, listener, None, shutdown, reloads).await
}

/// [`run_with_reloads`], serving `/metrics` on `metrics` when given (else on
/// `config.metrics_listen`, bound here, if set).
pub async fn run_with_listeners(
    config: Config,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reloads: impl Stream<Item = Config> + Send + Unpin + 'static,
) -> Result<(), ServeError> {
    let metrics_listener = match (metrics, config.metrics_listen) {
        (Some(l), _) => Some(l),
        (None, Some(addr)) => Some(TcpListener::bind(addr).await.map_err(|e| {
            ServeError::Transport(format!("cannot listen on {addr} for metrics: {e}"))
        })?),
        (None, None) => None,
    };
    let metrics = metrics_listener
        .as_ref()
        .map(|_| crate::metrics::Metrics::new());
    let local = listener
        .local_addr()
        .map_err(|e| ServeError::Transport(e.to_string()))?;
    let mut effective = config.clone();
    effective.listen = local;
    effective.check()?;
    effective.check_listen()?;
    // Certificates first: a bad file fails the start before the data dir is opened.
    let tls = TlsFiles::of(&config)
        .map(|files| ServerTls::load(&files))
        .transpose()?;

    let store_err = |source| ServeError::Store {
        dir: match &config.store {
            crate::config::Store::Sled => format!("data dir {}", config.data_dir.display()),
            crate::config::Store::Etcd(url) => format!("store {url}"),
        },
        source,
    };
    let opening = std::time::Instant::now();
    let engine: Arc<dyn Engine> = match &config.store {
        crate::config::Store::Sled => {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| store_err(crate::error::Error::internal(e)))?;
            Arc::new(SledEngine::open(&config.data_dir).map_err(store_err)?)
        }
        // No data dir: etcd is the store, shared with the other nodes.
        crate::config::Store::Etcd(url) => Arc::new(EtcdEngine::open(url).map_err(store_err)?),
    };
    let engine: Arc<dyn Engine> = match &metrics {
        Some(m) => Arc::new(crate::metrics::Metered::new(engine, m.clone())),
        None => engine,
    };
    tracing::info!(seconds = opening.elapsed().as_secs_f64(), "store opened");
    let limits = Limits {
        max_multi_level_mappings_per_domain: config.max_multi_level_mappings_per_domain,
    };
    let registry = match &config.store {
        crate::config::Store::Sled => {
            crate::store::catch_corruption("loading the store", || Registry::open(engine, limits))
        }
        crate::config::Store::Etcd(_) => {
            wait_for_store(
                engine,
                limits,
                Duration::from_secs(config.store_wait_seconds),
            )
            .await
        }
    }
    .map(Arc::new)
    .map_err(store_err)?;
    // The high-water mark guards a data dir against being restored behind what it
    // acknowledged; with etcd, the quorum is the durable truth and no node keeps a file.
    if config.store == crate::config::Store::Sled {
        registry
            .keep_high_water(
                crate::store::highwater::path(&config.data_dir),
                config.accept_rollback,
            )
            .map_err(store_err)?;
    }
    let hub = Hub::new(registry.clone());
    let publish = {
        let hub = hub.clone();
        Box::new(move |committed: &[crate::store::Applied]| hub.publish(committed))
    };
    let (writer, writer_thread) = Writer::spawn(registry.clone(), publish).map_err(store_err)?;
    // Several nodes: elect the one that commits every node's writes; the others forward.
    let me = crate::cluster::advertised(config.advertise_url.as_deref(), local, tls.is_some());
    let elected = registry.engine().elect(me.clone());
    let (writer, peer) = match &elected {
        Some(elected) => {
            if me.is_none() {
                tracing::warn!(
                    "listening on every interface without --advertise-url: this node never \
                     becomes the store's writer node (it forwards its writes to the one that is)"
                );
            }
            let forwarder = crate::cluster::Forwarder::new(elected.clone(), registry.clone());
            let peer = crate::cluster::PeerService::new(writer.clone(), elected.clone());
            (writer.forwarding(Arc::new(forwarder)), Some(peer))
        }
        None => (writer, None),
    };
    let compactor = tokio::spawn(crate::feed::compaction::run(
        hub.clone(),
        config.watch_history,
    ));

    let auth =
        Authenticator::with_access_keys(&config.tokens, &config.clients, &config.access_keys);
    let reloader = tokio::spawn(apply_reloads(
        config.clone(),
        auth.clone(),
        tls.clone(),
        reloads,
    ));
    let registry_service =
        RegistryServer::new(RegistryService::new(registry.clone(), writer.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
    let interceptor = {
        let auth = auth.clone();
        move |req| auth.intercept(req)
    };
    let registry_service = InterceptedService::new(registry_service, interceptor.clone());
    // Registry's calls skip the router (see `fast_path`); the router keeps the service too.
    let registry_fast_path = fast_path::FastPathLayer::new(
        <RegistryServer<RegistryService> as tonic::server::NamedService>::NAME,
        registry_service.clone(),
    );
    let change_feed = ChangeFeedServer::new(
        ChangeFeedService::new(hub.clone())
            .with_auth(auth.clone())
            .with_limits(config.watch_buffer_bytes, config.max_watches_per_principal),
    )
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let change_feed = InterceptedService::new(change_feed, interceptor.clone());
    let fleet = Arc::new(crate::fleet::Fleet::new(Duration::from_secs(
        config.gateway_expiry_seconds,
    )));
    let gateways = InterceptedService::new(
        GatewaysServer::new(GatewaysService::new(fleet.clone(), registry.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES),
        interceptor,
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::Serving).await;
    // Writes alone (SPEC.md 8.2): NOT_SERVING while the store is unreachable (etcd without a
    // quorum); reads and watches keep serving the last version meanwhile.
    {
        let health = health.clone();
        let mut writable = writer.writable();
        tokio::spawn(async move {
            loop {
                let status = if *writable.borrow_and_update() {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                health.set_service_status(WRITES_SERVICE, status).await;
                if writable.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc.ErrorInfo / BadRequest, so grpcurl can print error details.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            // Both reflection versions list both reflection services.
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .include_reflection_service(false)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| ServeError::Transport(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ServeError::Transport(e.to_string()))?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let stop_rx_for_metrics = stop_rx.clone();

    let metrics_addr = match (&metrics, metrics_listener) {
        (Some(m), Some(l)) => {
            let addr = l.local_addr().ok();
            let registry = m.registry(crate::metrics::State {
                registry: registry.clone(),
                hub: hub.clone(),
                fleet: fleet.clone(),
                writer: writer.shared_stats(),
                elected: elected.clone(),
            });
            let mut stopped = stop_rx_for_metrics.clone();
            tokio::spawn(async move {
                let stop = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                if let Err(e) = crate::metrics::serve(l, registry, stop).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            });
            addr
        }
        _ => None,
    };
    // At warn level, so that even RUST_LOG=warn shows where the server listens.
    tracing::warn!(
        listen = %local,
        metrics = %metrics_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
        store = %match &config.store {
            crate::config::Store::Sled => format!("sled:{}", config.data_dir.display()),
            etcd => etcd.to_string(),
        },
        store_id = registry.store_id(),
        revision = registry.revision(),
        dev_mode = auth.dev_mode(),
        tls = tls.is_some(),
        client_certificates = config.tls_client_ca.is_some(),
        max_connections = config.max_connections,
        "mapreg serving"
    );

    let health_on_stop = health.clone();
    let hub_on_stop = hub.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, no new connections, watches end");
        set_health(&health_on_stop, ServingStatus::NotServing).await;
        // Watch streams end with UNAVAILABLE so gateways reconnect elsewhere or later.
        hub_on_stop.close();
        health_on_stop
            .set_service_status(WRITES_SERVICE, ServingStatus::NotServing)
            .await;
        let _ = stop_tx.send(true);
    });
    let mut stopped = stop_rx.clone();
    // Connection limit, first-request timeout, TLS, accept back-off (and TCP_NODELAY: small
    // answers and change sets must not wait for the peer's ACK).
    let tls_on = tls.is_some();
    let incoming = transport::incoming(listener, transport::Settings::of(&config), tls);
    // One listen address, one router: the gRPC services, and the plain-HTTP edges next to
    // them (HTTP/1.1 is accepted for those; gRPC stays HTTP/2).
    let grpc = tonic::service::Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(registry_service)
        .add_service(change_feed)
        .add_service(gateways);
    let grpc = match peer {
        Some(peer) => grpc.add_service(peer.server()),
        None => grpc,
    };
    let rest = crate::rest::router(
        RegistryService::new(registry.clone(), writer.clone()),
        auth.clone(),
    );
    // The web console at `/` (src/console): same handlers, same principals, same TLS.
    let console = crate::console::router(
        RegistryService::new(registry.clone(), writer.clone()),
        hub.clone(),
        auth.clone(),
        tls_on,
    );
    let app: axum::Router = grpc.into_axum_router().merge(rest).merge(console);
    // TLS, when configured, is under all of it: the transport hands over decrypted streams.
    let serve = Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(transport::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(transport::KEEPALIVE_TIMEOUT))
        // Outermost: every request gets its id (and span) before anything else runs.
        .layer(crate::audit::RequestIdLayer)
        .layer(crate::metrics::grpc::GrpcMetricsLayer::new(
            metrics.as_ref().map(|m| m.grpc.clone()),
        ))
        .layer(tower::util::MapRequestLayer::new(
            transport::mark_served::<tonic::body::Body>,
        ))
        .layer(tower::util::MapResponseLayer::new(tonic_statuses_as_mapreg))
        // Innermost: Registry's calls pass every layer above, then go straight to it.
        .layer(registry_fast_path)
        .add_routes(tonic::service::Routes::from(app))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stopped.wait_for(|s| *s).await;
        });
    let mut serve = Box::pin(serve);
    let grace = async {
        let _ = stop_rx.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        r = &mut serve => r.map_err(|e| ServeError::Transport(e.to_string())),
        _ = grace => {
            tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}; closing them");
            Ok(())
        }
    };
    drop(serve);
    reloader.abort();
    hub.close();
    compactor.abort();
    let (writes, flushes) = (
        writer
            .stats()
            .writes
            .load(std::sync::atomic::Ordering::Relaxed),
        writer
            .stats()
            .flushes
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    drop(writer);
    // The writer ends once every handle is gone; a connection task that outlived the grace
    // period may still hold one, so the wait is bounded too. Everything acknowledged is
    // already durable; the final flush only covers writes nobody was told about.
    let joined = tokio::task::spawn_blocking(move || writer_thread.join());
    if tokio::time::timeout(Duration::from_secs(5), joined)
        .await
        .is_err()
    {
        tracing::warn!("writer thread still busy at exit");
    }
    if let Err(e) = registry.flush() {
        tracing::error!(error = %e, "final flush failed");
    }
    registry.sync_high_water();
    tracing::info!(writes, flushes, "mapreg stopped");
    result
}

/// Sets the health of each of the three gRPC services and of the server as a whole ("") to
/// `status`. The writes entry ([`WRITES_SERVICE`]) follows the store on its own.
async fn set_health(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    use tonic::server::NamedService;
    for name in [
        RegistryServer::<RegistryService>::NAME,
        ChangeFeedServer::<ChangeFeedService>::NAME,
        GatewaysServer::<GatewaysService>::NAME,
        "",
    ] {
        health.set_service_status(name, status).await;
    }
}

/// Applies each configuration of `reloads` (see the module documentation), logging the
/// outcome.
async fn apply_reloads(
    started: Config,
    auth: Authenticator,
    tls: Option<ServerTls>,
    mut reloads: impl Stream<Item = Config> + Unpin,
) {
    while let Some(new) = reloads.next().await {
        match reload(&started, &auth, tls.as_ref(), &new) {
            Ok(()) => {
                let (tokens, clients) = auth.counts();
                tracing::info!(
                    tokens,
                    clients,
                    certificate = tls.is_some(),
                    "configuration reloaded"
                );
            }
            Err(e) => tracing::error!(
                error = %e,
                "configuration reload refused; the running credentials and certificates stay"
            ),
        }
    }
}

/// One reload: everything is checked and loaded before anything is replaced.
fn reload(
    started: &Config,
    auth: &Authenticator,
    tls: Option<&ServerTls>,
    new: &Config,
) -> Result<(), String> {
    new.check().map_err(|e| e.to_string())?;
    if new.tls() != started.tls() {
        return Err("turning TLS on or off needs a restart".into());
    }
    let tls_config = match (tls, TlsFiles::of(new)) {
        (Some(_), Some(files)) => {
            Some(transport::tls::server_config(&files).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    auth.reload(&new.tokens, &new.clients, &new.access_keys)
        .map_err(|e| e.to_string())?;
    if let (Some(tls), Some(config)) = (tls, tls_config) {
        tls.install(config);
    }
    Ok(())
}

/// Statuses tonic makes itself, before a handler runs, rewritten into mapreg's (with
/// `ErrorInfo`) in this one place:
///
/// - an oversized request: tonic says OUT_OF_RANGE; SPEC.md section 7 wants
///   RESOURCE_EXHAUSTED `REQUEST_TOO_LARGE`, like grpc-go;
/// - an undecodable request body (invalid UTF-8 in a string, a truncated message or frame,
///   no message at all): tonic says INTERNAL; SPEC.md 8.7 wants INVALID_ARGUMENT
///   `MALFORMED_REQUEST`, naming the field when the decoder names one.
///
/// Only those refusals are rewritten: no handler of a unary RPC answers OUT_OF_RANGE, and no
/// handler's INTERNAL starts with the decoder's words (handlers say "internal error: ...").
fn tonic_statuses_as_mapreg<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let headers = resp.headers_mut();
    // Most responses carry their status in the trailers, and most trailers-only ones are not
    // among the two rewritten: look at the message only when the code is.
    let code = match headers.get("grpc-status").map(|v| v.as_bytes()) {
        Some(b"11") => 11,
        Some(b"13") => 13,
        _ => return resp,
    };
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    let error = match code {
        11 if message.contains("too large") => crate::error::Error::ResourceExhausted {
            reason: "REQUEST_TOO_LARGE",
            message: format!("request message is larger than the {MAX_REQUEST_BYTES}-byte limit"),
        },
        13 => match malformed_request(&message) {
            Some(e) => e,
            None => return resp,
        },
        _ => return resp,
    };
    let status: tonic::Status = error.into();
    headers.remove("grpc-message");
    headers.remove("grpc-status-details-bin");
    let _ = status.add_header(headers);
    resp
}

/// The decoder's words for a request body it could not decode, as tonic and prost put them.
const DECODE_FAILURES: &[&str] = &[
    "failed to decode Protobuf message",
    "Unexpected EOF decoding stream",
    "Missing request message",
    "invalid compression flag",
];

/// The INVALID_ARGUMENT `MALFORMED_REQUEST` for a decoder's INTERNAL `message`, or None when
/// the message is not a decoder's. prost names the field path (`CreateApiRequest.name: invalid
/// string value: ...`); the error names its last field.
fn malformed_request(message: &str) -> Option<crate::error::Error> {
    if !DECODE_FAILURES.iter().any(|d| message.contains(d)) {
        return None;
    }
    let detail = message
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(message);
    // "Msg.field: Inner.field: description": the innermost `Type.field` before the description.
    let field = detail
        .split(": ")
        .take_while(|part| {
            part.split_once('.').is_some_and(|(t, f)| {
                !t.is_empty()
                    && !f.is_empty()
                    && t.chars().all(|c| c.is_ascii_alphanumeric())
                    && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .last()
        .and_then(|p| p.split_once('.'))
        .map(|(_, f)| f.to_string())
        .unwrap_or_default();
    let named = if field.is_empty() {
        String::new()
    } else {
        format!(" (field {field})")
    };
    Some(crate::error::Error::InvalidArgument {
        field,
        reason: "MALFORMED_REQUEST".into(),
        message: format!(
            "the request body is not a valid protobuf message{named}: {detail}; check the client's proto files and that strings are UTF-8"
        ),
    })
}

/// Undoes the percent-encoding of a `grpc-message` header.
fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_failures_become_malformed_request_naming_the_field() {
        let e = malformed_request(
            "failed to decode Protobuf message: CreateApiRequest.name: invalid string value: data is not UTF-8 encoded",
        )
        .expect("a decode failure");
        assert_eq!(e.reason(), "MALFORMED_REQUEST");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        match &e {
            crate::error::Error::InvalidArgument { field, message, .. } => {
                assert_eq!(field, "name");
                assert!(message.contains("(field name)"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let e = malformed_request("Unexpected EOF decoding stream.").expect("truncated");
        assert_eq!(e.reason(), "MALFORMED_REQUEST");
        assert!(malformed_request("internal error: storage: disk on fire").is_none());
        assert_eq!(
            percent_decode("too%20large%3A%20x%"),
            "too large: x%".to_string()
        );
    }
}

//! The harness: start/stop servers, make clients, read error details.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use mapreg::auth::Role;
use mapreg::config::{Config, Store, TokenConfig};
use mapreg::pb::registry_client::RegistryClient;
use mapreg::pb::*;
use mapreg::store::etcd::testkit::{self, EtcdCluster};
use tokio::sync::{Barrier, oneshot};
use tokio::task::JoinHandle;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;

/// Adds `authorization: Bearer <token>` when a token is set.
#[derive(Clone)]
pub struct Bearer(pub Option<String>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.0 {
            let v = MetadataValue::try_from(format!("Bearer {t}"))
                .map_err(|_| Status::internal("bad token"))?;
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    }
}

/// A Registry client, with or without a token.
pub type Client = RegistryClient<InterceptedService<Channel, Bearer>>;

/// A running server on an ephemeral loopback port.
pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), mapreg::server::ServeError>>>,
    _tmp: Option<tempfile::TempDir>,
}

/// True when `MAPREG_TEST_STORE=etcd`: servers started by the harness run on a fresh prefix of
/// a shared 3-member etcd cluster instead of a sled data dir (SPEC.md 8.2). Panics on any other
/// value but `sled`, so a typo does not silently test sled.
pub fn test_store_is_etcd() -> bool {
    match std::env::var("MAPREG_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("sled") => false,
        Ok("etcd") => {
            assert!(
                testkit::etcd_binary().is_some(),
                "MAPREG_TEST_STORE=etcd but {} is missing",
                testkit::ETCD_BIN
            );
            true
        }
        Ok(other) => panic!("MAPREG_TEST_STORE={other}: expected sled or etcd"),
    }
}

/// Skips a test that inspects or edits sled files when the harness runs on etcd: prints why
/// and returns true.
pub fn skip_under_etcd(test: &str, why: &str) -> bool {
    if test_store_is_etcd() {
        eprintln!("skipping {test} under MAPREG_TEST_STORE=etcd: {why}");
        return true;
    }
    false
}

/// Tokens used by auth tests: (token, account, role).
pub const TOKENS: &[(&str, &str, Role)] = &[
    ("admin-a", "111122223333", Role::Admin),
    ("reader-a", "111122223333", Role::Reader),
    ("admin-b", "444455556666", Role::Admin),
    ("gateway", "999999999999", Role::Gateway),
];

/// A config with the [`TOKENS`] above.
pub fn token_config(data_dir: &Path) -> Config {
    Config {
        data_dir: data_dir.to_path_buf(),
        tokens: TOKENS
            .iter()
            .map(|(t, a, r)| TokenConfig {
                sha256: mapreg::auth::token_hash(t),
                account_id: a.to_string(),
                role: *r,
                // The token's text: the principal audit tests see.
                name: Some(t.to_string()),
            })
            .collect(),
        ..Config::default()
    }
}

impl TestServer {
    /// A dev-mode server on a fresh temp data dir.
    pub async fn start() -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: tmp.path().join("data"),
            ..Config::default()
        };
        let mut s = Self::start_with(config).await;
        s._tmp = Some(tmp);
        s
    }

    /// A server with the auth [`TOKENS`] on a fresh temp data dir.
    pub async fn start_with_tokens() -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Self::start_with(token_config(&tmp.path().join("data"))).await;
        s._tmp = Some(tmp);
        s
    }

    /// A server with `config` (its `listen` is replaced by 127.0.0.1:0). Under
    /// `MAPREG_TEST_STORE=etcd` a sled config gets a fresh prefix on the shared 3-member etcd
    /// cluster instead (kept in `config`, so a restart keeps the prefix).
    pub async fn start_with(mut config: Config) -> TestServer {
        if config.store == Store::Sled && test_store_is_etcd() {
            let url =
                tokio::task::spawn_blocking(|| EtcdCluster::shared_three().map(|c| c.fresh_url()))
                    .await
                    .expect("join")
                    .expect("MAPREG_TEST_STORE=etcd: start the shared 3-member etcd cluster");
            config.store = Store::Etcd(url);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::start_on(config, listener)
    }

    /// A server with `config` on `listener` (bound beforehand, so its address can be handed out
    /// before the server runs).
    pub fn start_on(config: Config, listener: tokio::net::TcpListener) -> TestServer {
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let data_dir = config.data_dir.clone();
        let cfg = config.clone();
        let handle = tokio::spawn(mapreg::server::run(cfg, listener, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            data_dir,
            config,
            stop: Some(tx),
            handle: Some(handle),
            _tmp: None,
        }
    }

    /// Stops the server gracefully and waits until it has released its data dir.
    /// Returns the temp dir guard so the data survives for a restart.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), h)
                .await
                .expect("server stops within 30 s")
                .expect("server task")
                .expect("server ran cleanly");
        }
        self._tmp.take()
    }

    /// Restarts on the same data dir (and config) on `listener`.
    pub async fn restart_on(self, listener: tokio::net::TcpListener) -> TestServer {
        let config = self.config.clone();
        let tmp = self.stop().await;
        let mut s = Self::start_on(config, listener);
        s._tmp = tmp;
        s
    }

    /// Restarts on the same data dir (and config); the new server gets a new port.
    pub async fn restart(self) -> TestServer {
        let config = self.config.clone();
        let tmp = self.stop().await;
        let mut s = Self::start_with(config).await;
        s._tmp = tmp;
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.endpoint())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect")
    }

    /// A client without a token (dev mode: admin of 000000000000).
    pub async fn client(&self) -> Client {
        RegistryClient::with_interceptor(self.channel().await, Bearer(None))
    }

    /// A client sending `token`.
    pub async fn client_with(&self, token: &str) -> Client {
        RegistryClient::with_interceptor(self.channel().await, Bearer(Some(token.to_string())))
    }
}

/// The ErrorInfo reason of a status ("" when absent).
pub fn reason(s: &Status) -> String {
    s.get_details_error_info()
        .map(|i| {
            assert_eq!(i.domain, "mapreg", "ErrorInfo domain");
            i.reason
        })
        .unwrap_or_default()
}

/// The BadRequest field violations of a status.
pub fn violated_fields(s: &Status) -> Vec<String> {
    s.get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Asserts the code and reason of a failed call and returns the status.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, Status>,
    code: Code,
    reason_: &str,
) -> Status {
    let s = match r {
        Ok(v) => panic!("expected {code:?}/{reason_}, got OK: {:?}", v.into_inner()),
        Err(s) => s,
    };
    assert_eq!(s.code(), code, "code of {s:?}");
    assert_eq!(reason(&s), reason_, "reason of {s:?}");
    s
}

// ---- fixtures ------------------------------------------------------------------------------

/// The route selection expression a test gives a WEBSOCKET API (which requires one).
pub const WS_ROUTE: &str = "$request.body.action";

/// A create request for an API of `protocol`, with the route selection expression a
/// WEBSOCKET API requires.
pub fn api_req(name: &str, protocol: ProtocolType) -> CreateApiRequest {
    CreateApiRequest {
        name: name.into(),
        protocol_type: protocol as i32,
        route_selection_expression: if protocol == ProtocolType::Websocket {
            WS_ROUTE.into()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

pub async fn create_api(c: &mut Client, name: &str, protocol: ProtocolType) -> Api {
    c.create_api(api_req(name, protocol))
        .await
        .expect("create api")
        .into_inner()
}

pub async fn create_stage(c: &mut Client, api_id: &str, stage: &str) -> Stage {
    c.create_stage(CreateStageRequest {
        api_id: api_id.into(),
        stage_name: stage.into(),
        ..Default::default()
    })
    .await
    .expect("create stage")
    .into_inner()
}

pub async fn create_domain(c: &mut Client, domain: &str) -> DomainName {
    c.create_domain_name(CreateDomainNameRequest {
        domain_name: domain.into(),
        ..Default::default()
    })
    .await
    .expect("create domain")
    .into_inner()
}

pub async fn create_domain_with(
    c: &mut Client,
    domain: &str,
    endpoint: EndpointType,
    policy: SecurityPolicy,
) -> DomainName {
    c.create_domain_name(CreateDomainNameRequest {
        domain_name: domain.into(),
        domain_name_configurations: vec![DomainNameConfiguration {
            endpoint_type: endpoint as i32,
            security_policy: policy as i32,
            ..Default::default()
        }],
        ..Default::default()
    })
    .await
    .expect("create domain")
    .into_inner()
}

pub fn mapping_req(domain: &str, key: &str, api_id: &str, stage: &str) -> CreateApiMappingRequest {
    CreateApiMappingRequest {
        domain_name: domain.into(),
        api_mapping_key: key.into(),
        api_id: api_id.into(),
        stage: stage.into(),
        ..Default::default()
    }
}

pub async fn create_mapping(
    c: &mut Client,
    domain: &str,
    key: &str,
    api_id: &str,
    stage: &str,
) -> ApiMapping {
    c.create_api_mapping(mapping_req(domain, key, api_id, stage))
        .await
        .expect("create mapping")
        .into_inner()
}

/// An API of `protocol` with a stage `test`.
pub async fn api_with_stage(c: &mut Client, protocol: ProtocolType) -> Api {
    let api = create_api(c, "api", protocol).await;
    create_stage(c, &api.api_id, "test").await;
    api
}

/// An API with stage `test`, the domain name `api.example.com` and its mapping `v1` of that
/// stage: on a fresh store, revisions 1 to 4. Returns the API and the mapping.
pub async fn api_domain_and_mapping(c: &mut Client) -> (Api, ApiMapping) {
    let api = api_with_stage(c, ProtocolType::Http).await;
    create_domain(c, "api.example.com").await;
    let m = create_mapping(c, "api.example.com", "v1", &api.api_id, "test").await;
    (api, m)
}

/// GetApiMapping of mapping `id` on `domain`.
pub async fn get_mapping(c: &mut Client, domain: &str, id: &str) -> Result<ApiMapping, Status> {
    c.get_api_mapping(GetApiMappingRequest {
        domain_name: domain.into(),
        api_mapping_id: id.into(),
        ..Default::default()
    })
    .await
    .map(Response::into_inner)
}

/// Every mapping of a domain, all pages.
pub async fn all_mappings(c: &mut Client, domain: &str) -> Vec<ApiMapping> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .get_api_mappings(GetApiMappingsRequest {
                domain_name: domain.into(),
                max_results: 0,
                next_token: token,
                ..Default::default()
            })
            .await
            .expect("list mappings")
            .into_inner();
        out.extend(page.items);
        if page.next_token.is_empty() {
            return out;
        }
        token = page.next_token;
    }
}

// ---- any Registry request, and a snapshot of everything a client sees (bad_input, auth) ----

/// Any Registry request but ResolveRoute, so tests can keep tables of requests of mixed RPCs.
#[derive(Debug, Clone)]
pub enum RegistryCall {
    CreateApi(CreateApiRequest),
    GetApi(GetApiRequest),
    GetApis(GetApisRequest),
    UpdateApi(UpdateApiRequest),
    DeleteApi(DeleteApiRequest),
    CreateStage(CreateStageRequest),
    GetStage(GetStageRequest),
    GetStages(GetStagesRequest),
    UpdateStage(UpdateStageRequest),
    DeleteStage(DeleteStageRequest),
    CreateDomainName(CreateDomainNameRequest),
    GetDomainName(GetDomainNameRequest),
    GetDomainNames(GetDomainNamesRequest),
    UpdateDomainName(UpdateDomainNameRequest),
    DeleteDomainName(DeleteDomainNameRequest),
    CreateApiMapping(CreateApiMappingRequest),
    GetApiMapping(GetApiMappingRequest),
    GetApiMappings(GetApiMappingsRequest),
    UpdateApiMapping(UpdateApiMappingRequest),
    DeleteApiMapping(DeleteApiMappingRequest),
}

impl RegistryCall {
    /// Whether the RPC is a write (Create*, Update*, Delete*).
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            RegistryCall::GetApi(_)
                | RegistryCall::GetApis(_)
                | RegistryCall::GetStage(_)
                | RegistryCall::GetStages(_)
                | RegistryCall::GetDomainName(_)
                | RegistryCall::GetDomainNames(_)
                | RegistryCall::GetApiMapping(_)
                | RegistryCall::GetApiMappings(_)
        )
    }
}

/// Sends `call`; the response is returned as its Debug text.
pub async fn call(c: &mut Client, call: RegistryCall) -> Result<String, Status> {
    fn text<T: std::fmt::Debug>(r: Result<tonic::Response<T>, Status>) -> Result<String, Status> {
        r.map(|r| format!("{:?}", r.into_inner()))
    }
    match call {
        RegistryCall::CreateApi(r) => text(c.create_api(r).await),
        RegistryCall::GetApi(r) => text(c.get_api(r).await),
        RegistryCall::GetApis(r) => text(c.get_apis(r).await),
        RegistryCall::UpdateApi(r) => text(c.update_api(r).await),
        RegistryCall::DeleteApi(r) => text(c.delete_api(r).await),
        RegistryCall::CreateStage(r) => text(c.create_stage(r).await),
        RegistryCall::GetStage(r) => text(c.get_stage(r).await),
        RegistryCall::GetStages(r) => text(c.get_stages(r).await),
        RegistryCall::UpdateStage(r) => text(c.update_stage(r).await),
        RegistryCall::DeleteStage(r) => text(c.delete_stage(r).await),
        RegistryCall::CreateDomainName(r) => text(c.create_domain_name(r).await),
        RegistryCall::GetDomainName(r) => text(c.get_domain_name(r).await),
        RegistryCall::GetDomainNames(r) => text(c.get_domain_names(r).await),
        RegistryCall::UpdateDomainName(r) => text(c.update_domain_name(r).await),
        RegistryCall::DeleteDomainName(r) => text(c.delete_domain_name(r).await),
        RegistryCall::CreateApiMapping(r) => text(c.create_api_mapping(r).await),
        RegistryCall::GetApiMapping(r) => text(c.get_api_mapping(r).await),
        RegistryCall::GetApiMappings(r) => text(c.get_api_mappings(r).await),
        RegistryCall::UpdateApiMapping(r) => text(c.update_api_mapping(r).await),
        RegistryCall::DeleteApiMapping(r) => text(c.delete_api_mapping(r).await),
    }
}

/// Everything one client can list: APIs, their stages, domain names, their mappings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VisibleState {
    pub apis: Vec<Api>,
    pub stages: Vec<Stage>,
    pub domains: Vec<DomainName>,
    pub mappings: Vec<ApiMapping>,
}

/// Lists everything `c` sees, all pages (at most 1000 pages per list).
pub async fn visible_state(c: &mut Client) -> VisibleState {
    let mut s = VisibleState::default();
    let mut token = String::new();
    for _ in 0..1000 {
        let page = c
            .get_apis(GetApisRequest {
                max_results: 0,
                next_token: token,
                ..Default::default()
            })
            .await
            .expect("list apis")
            .into_inner();
        s.apis.extend(page.items);
        token = page.next_token;
        if token.is_empty() {
            break;
        }
    }
    for api in s.apis.clone() {
        let mut token = String::new();
        for _ in 0..1000 {
            let page = c
                .get_stages(GetStagesRequest {
                    api_id: api.api_id.clone(),
                    max_results: 0,
                    next_token: token,
                    ..Default::default()
                })
                .await
                .expect("list stages")
                .into_inner();
            s.stages.extend(page.items);
            token = page.next_token;
            if token.is_empty() {
                break;
            }
        }
    }
    let mut token = String::new();
    for _ in 0..1000 {
        let page = c
            .get_domain_names(GetDomainNamesRequest {
                max_results: 0,
                next_token: token,
                ..Default::default()
            })
            .await
            .expect("list domain names")
            .into_inner();
        s.domains.extend(page.items);
        token = page.next_token;
        if token.is_empty() {
            break;
        }
    }
    for d in s.domains.clone() {
        s.mappings.extend(all_mappings(c, &d.domain_name).await);
    }
    s
}

// ---- races (races, nodes) ------------------------------------------------------------------

/// Runs `a` and `b` on their own tasks, both released by one barrier, and returns both results.
pub async fn race<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: Future<Output = RA> + Send + 'static,
    B: Future<Output = RB> + Send + 'static,
    RA: Send + 'static,
    RB: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let (ba, bb) = (barrier.clone(), barrier);
    let ta = tokio::spawn(async move {
        ba.wait().await;
        a.await
    });
    let tb = tokio::spawn(async move {
        bb.wait().await;
        b.await
    });
    (ta.await.expect("task a"), tb.await.expect("task b"))
}

/// Runs each of `contenders` on its own task, all released by one barrier, and returns their
/// results in order.
pub async fn all_at_once<F>(contenders: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let contenders: Vec<F> = contenders.into_iter().collect();
    let barrier = Arc::new(Barrier::new(contenders.len()));
    let tasks = contenders.into_iter().map(|f| {
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            f.await
        })
    });
    join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect()
}

/// The one winner of creates of mapping key `key` that raced each other; every other create
/// must have lost as AWS says: ALREADY_EXISTS, reason MAPPING_KEY_CONFLICT, AWS's message.
pub fn sole_winner(key: &str, results: Vec<Result<Response<ApiMapping>, Status>>) -> ApiMapping {
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(m) => winners.push(m.into_inner()),
            Err(s) => {
                assert_eq!(s.code(), Code::AlreadyExists, "loser of {key:?}: {s:?}");
                assert_eq!(
                    reason(&s),
                    "MAPPING_KEY_CONFLICT",
                    "loser of {key:?}: {s:?}"
                );
                assert!(
                    s.message()
                        .contains("ApiMapping key already exists for this domain name"),
                    "message: {}",
                    s.message()
                );
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create of key {key:?} wins");
    winners.remove(0)
}

/// The winner of a WEBSOCKET mapping create (`ws`) and an HTTP one (`http`) raced on one
/// domain, and whether it is the WEBSOCKET one: exactly one must win, and the other is refused
/// FAILED_PRECONDITION with reason PROTOCOL_CONFLICT, naming the winner.
pub fn protocol_race_winner(
    round: usize,
    ws: Result<Response<ApiMapping>, Status>,
    http: Result<Response<ApiMapping>, Status>,
) -> (ApiMapping, bool) {
    let (winner, loser, ws_won) = match (ws, http) {
        (Ok(w), Err(s)) => (w.into_inner(), s, true),
        (Err(s), Ok(h)) => (h.into_inner(), s, false),
        (w, h) => panic!(
            "round {round}: exactly one of WEBSOCKET/HTTP must win; ws = {w:?}, http = {h:?}"
        ),
    };
    assert_eq!(
        loser.code(),
        Code::FailedPrecondition,
        "round {round}: {loser:?}"
    );
    assert_eq!(
        reason(&loser),
        "PROTOCOL_CONFLICT",
        "round {round}: {loser:?}"
    );
    assert!(
        loser.message().contains(&winner.api_mapping_id),
        "round {round}: the conflict names the winning mapping {}: {}",
        winner.api_mapping_id,
        loser.message()
    );
    (winner, ws_won)
}

// ---- ChangeFeed (feed, history) -----------------------------------------------------------

/// A ChangeFeed client, with or without a token.
pub type FeedClient =
    mapreg::pb::change_feed_client::ChangeFeedClient<InterceptedService<Channel, Bearer>>;

/// A Registry client for `endpoint` (`http://host:port`), sending `token` if any; fails
/// instead of panicking, for tests that reconnect across restarts.
pub async fn client_at(
    endpoint: &str,
    token: Option<&str>,
) -> Result<Client, tonic::transport::Error> {
    let ch = Endpoint::from_shared(endpoint.to_string())?
        .connect()
        .await?;
    Ok(RegistryClient::with_interceptor(
        ch,
        Bearer(token.map(str::to_string)),
    ))
}

/// A ChangeFeed client for `endpoint`, sending `token` if any; fails instead of panicking.
pub async fn feed_client_at(
    endpoint: &str,
    token: Option<&str>,
) -> Result<FeedClient, tonic::transport::Error> {
    let ch = Endpoint::from_shared(endpoint.to_string())?
        .connect()
        .await?;
    Ok(
        mapreg::pb::change_feed_client::ChangeFeedClient::with_interceptor(
            ch,
            Bearer(token.map(str::to_string)),
        ),
    )
}

impl TestServer {
    /// A ChangeFeed client, sending `token` if any (None: dev mode).
    pub async fn feed_client(&self, token: Option<&str>) -> FeedClient {
        mapreg::pb::change_feed_client::ChangeFeedClient::with_interceptor(
            self.channel().await,
            Bearer(token.map(str::to_string)),
        )
    }

    /// Stops this server, runs `f` on its (released) data dir, and starts it again there.
    pub async fn restart_after(self, f: impl FnOnce(&Path)) -> TestServer {
        let config = self.config.clone();
        let tmp = self.stop().await;
        f(&config.data_dir);
        let mut s = Self::start_with(config).await;
        s._tmp = tmp;
        s
    }

    /// Stops this server and starts one with the same config on a NEW, empty data dir (a new
    /// store_id), as if the data dir had been replaced.
    pub async fn restart_fresh(self) -> TestServer {
        let mut config = self.config.clone();
        let _old = self.stop().await;
        let tmp = tempfile::tempdir().expect("tempdir");
        config.data_dir = tmp.path().join("data");
        // Under MAPREG_TEST_STORE=etcd: a new prefix, the new store.
        config.store = Store::Sled;
        let mut s = Self::start_with(config).await;
        s._tmp = Some(tmp);
        s
    }
}

/// Opens a Watch stream with `req`; the error is the one the call itself failed with.
pub async fn watch(
    c: &mut FeedClient,
    req: WatchRequest,
) -> Result<tonic::Streaming<WatchResponse>, Status> {
    c.watch(req).await.map(|r| r.into_inner())
}

/// The next message of a Watch stream, waiting at most `secs` seconds (a stall panics).
/// `Ok(None)`: the stream ended without an error.
pub async fn next_message(
    s: &mut tonic::Streaming<WatchResponse>,
    secs: u64,
) -> Result<Option<WatchResponse>, Status> {
    tokio::time::timeout(Duration::from_secs(secs), s.message())
        .await
        .unwrap_or_else(|_| panic!("no watch message within {secs} s"))
}

/// An ErrorInfo metadata value of a status.
pub fn error_metadata(s: &Status, key: &str) -> Option<String> {
    s.get_details_error_info()
        .and_then(|i| i.metadata.get(key).cloned())
}

// ---- metrics, the mapreg binary (metrics, gateways, audit) ---------------------------------

impl TestServer {
    /// A server with `config` that also serves `/metrics` on an ephemeral loopback port;
    /// returns it and that port's address.
    pub async fn start_with_metrics(config: Config) -> (TestServer, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind metrics");
        let addr = listener.local_addr().expect("addr");
        let metrics_addr = metrics.local_addr().expect("metrics addr");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(mapreg::server::run_with_listeners(
            config.clone(),
            listener,
            Some(metrics),
            async move {
                let _ = rx.await;
            },
            tokio_stream::pending(),
        ));
        let server = TestServer {
            addr,
            data_dir: config.data_dir.clone(),
            config,
            stop: Some(tx),
            handle: Some(handle),
            _tmp: None,
        };
        (server, metrics_addr)
    }
}

/// What a finished `mapreg` run left.
#[derive(Debug)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// The stdout as JSON, asserting exit 0.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.code, 0, "exit code of {self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("JSON of {self:?}: {e}"))
    }
}

/// Runs the built `mapreg args... --endpoint <server>` (MAPREG_* from the environment
/// removed), within 60 s.
pub async fn mapreg_cli(s: &TestServer, args: &[&str]) -> CliRun {
    let endpoint = s.endpoint();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mapreg"))
            .args(args)
            .args(["--endpoint", endpoint.as_str()])
            .env_remove("MAPREG_ENDPOINT")
            .env_remove("MAPREG_TOKEN")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("mapreg {args:?} did not finish within 60 s"))
    .expect("run mapreg");
    CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Copies the directory tree `from` to `to` (created), file by file: a file-level backup.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

//! Gateway convergence (SPEC.md 8.5): three `MappingCache`s report what they applied, one of
//! them behind a TCP proxy the test cuts; `wait-for-gateways` names the one that cannot have
//! the change, and once it has been silent for the expiry it leaves the list and
//! `wait-for-gateways` succeeds for the two that remain.

use std::net::SocketAddr;
use std::time::Duration;

use mapreg::client::{CacheOptions, MappingCache};
use mapreg::pb::gateways_client::GatewaysClient;
use mapreg::pb::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::common::*;

/// A TCP proxy to `target` that the test can cut: once cut, open connections are closed and
/// new ones refused (accepted and closed at once).
struct Proxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (cut, cut_rx) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if *cut_rx.borrow() {
                    continue; // dropped: closed at once
                }
                let mut cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Proxy { addr, cut }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }
}

type Gateways = GatewaysClient<InterceptedService<Channel, Bearer>>;

async fn gateways_client(s: &TestServer, token: &str) -> Gateways {
    GatewaysClient::with_interceptor(s.channel().await, Bearer(Some(token.to_string())))
}

async fn listed(c: &mut Gateways) -> Vec<Gateway> {
    c.get_gateways(GetGatewaysRequest::default())
        .await
        .expect("get gateways")
        .into_inner()
        .items
}

/// Polls GetGateways (every 100 ms, at most 60 s) until `ok` holds for the list.
async fn until(c: &mut Gateways, what: &str, ok: impl Fn(&[Gateway]) -> bool) -> Vec<Gateway> {
    for _ in 0..600 {
        let items = listed(c).await;
        if ok(&items) {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 60 s; listed: {:?}", listed(c).await);
}

fn cache(endpoint: String, id: &str) -> MappingCache {
    let mut o = CacheOptions::new(endpoint).with_gateway_id(id);
    o.token = Some("gateway".into());
    o.report_interval = Some(Duration::from_millis(300));
    o.progress_interval_seconds = 1;
    MappingCache::start(o)
}

fn applied(items: &[Gateway], id: &str) -> Option<u64> {
    items
        .iter()
        .find(|g| g.gateway_id == id)
        .map(|g| g.applied_revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_gateways_names_the_cut_gateway_until_it_expires() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = token_config(&tmp.path().join("data"));
    // Long enough for the checks on the cut gateway before it expires, short for the test.
    config.gateway_expiry_seconds = 10;
    let server = TestServer::start_with(config).await;
    let proxy = Proxy::start(server.addr).await;
    let direct = server.endpoint();
    let a = cache(direct.clone(), "gw-a");
    let b = cache(direct, "gw-b");
    let c = cache(format!("http://{}", proxy.addr), "gw-c");
    for cache in [&a, &b, &c] {
        assert!(cache.wait_in_sync(Duration::from_secs(30)).await, "in sync");
    }
    let mut gw = gateways_client(&server, "admin-a").await;
    let items = until(&mut gw, "all three listed", |items| items.len() == 3).await;
    for g in &items {
        assert_eq!(g.principal, "gateway", "the token's name: {g:?}");
    }

    // Cut gw-c off, then change something.
    proxy.cut();
    let mut admin = server.client_with("admin-a").await;
    let revision = create_domain(&mut admin, "shop.example.com")
        .await
        .mod_revision;
    let rev = revision.to_string();
    let items = until(&mut gw, "gw-a and gw-b report the change", |items| {
        applied(items, "gw-a") >= Some(revision) && applied(items, "gw-b") >= Some(revision)
    })
    .await;
    let behind = items
        .iter()
        .find(|g| g.gateway_id == "gw-c")
        .expect("gw-c still listed");
    assert!(behind.applied_revision < revision);
    assert_eq!(behind.lag, revision - behind.applied_revision);

    let run = mapreg_cli(
        &server,
        &[
            "wait-for-gateways",
            "--revision",
            &rev,
            "--timeout",
            "1",
            "--token",
            "admin-a",
        ],
    )
    .await;
    assert_eq!(run.code, 254, "{run:?}");
    assert!(run.stderr.contains("gw-c"), "{run:?}");
    assert!(
        !run.stderr.contains("gw-a") && !run.stderr.contains("gw-b"),
        "{run:?}"
    );

    // Silent for longer than the expiry: gw-c leaves the list; the two in sync remain.
    let items = until(&mut gw, "gw-c expires", |items| {
        applied(items, "gw-c").is_none()
    })
    .await;
    let ids: Vec<&str> = items.iter().map(|g| g.gateway_id.as_str()).collect();
    assert_eq!(ids, ["gw-a", "gw-b"]);
    let run = mapreg_cli(
        &server,
        &[
            "wait-for-gateways",
            "--revision",
            &rev,
            "--timeout",
            "30",
            "--token",
            "admin-a",
        ],
    )
    .await;
    let out = run.json();
    let listed: Vec<&str> = out["Items"]
        .as_array()
        .expect("Items")
        .iter()
        .filter_map(|g| g["GatewayId"].as_str())
        .collect();
    assert_eq!(listed, ["gw-a", "gw-b"], "{run:?}");

    let run = mapreg_cli(&server, &["get-gateways", "--token", "reader-a"]).await;
    assert_eq!(run.json()["Items"].as_array().map(Vec::len), Some(2));
    drop((a, b, c));
    server.stop().await;
}

#[tokio::test]
async fn report_status_checks_role_and_input() {
    let server = TestServer::start_with_tokens().await;
    let mut reader = gateways_client(&server, "reader-a").await;
    let r = reader
        .report_status(ReportStatusRequest {
            gateway_id: "x".into(),
            ..Default::default()
        })
        .await;
    expect_err(r, Code::PermissionDenied, "PERMISSION_DENIED");
    let mut admin = gateways_client(&server, "admin-a").await;
    let r = admin.report_status(ReportStatusRequest::default()).await;
    expect_err(r, Code::InvalidArgument, "INVALID_GATEWAY_ID");
    let r = admin
        .report_status(ReportStatusRequest {
            gateway_id: "manual".into(),
            applied_revision: 0,
            in_sync: true,
            ..Default::default()
        })
        .await
        .expect("admin reports");
    assert_eq!(r.into_inner().revision, 0);
    let items = listed(&mut admin).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].principal, "admin-a");
    let r = admin
        .get_gateways(GetGatewaysRequest {
            max_results: 1001,
            ..Default::default()
        })
        .await;
    assert_eq!(r.expect_err("too many").code(), Code::InvalidArgument);
    server.stop().await;
}

//! `examples/gateway.rs` as a real process: it follows a live server through `MappingCache`
//! and answers real HTTP/1.1 requests by Host and path the way API Gateway routes them.
//!
//! The example binary is `target/<profile>/examples/gateway`, next to this test binary (built
//! on first use if needed); requests are written by hand on a `TcpStream`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use mapreg::config::Config;
use mapreg::pb::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};

use crate::common::*;

/// `target/<profile>/examples/gateway`, beside the `deps/` folder this test binary runs from.
///
/// `cargo test` with no target filter builds examples, but `cargo test --test e2e` does not, so
/// the first call runs `cargo build --example gateway` with this binary's profile and target
/// dir (a no-op when it is fresh) and fails with a clear message if that does not work.
async fn example_binary() -> PathBuf {
    static BUILT: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    BUILT.get_or_init(build_example).await.clone()
}

async fn build_example() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary runs from target/<profile>/deps/");
    let target_dir = profile_dir.parent().expect("target dir");
    let bin = profile_dir
        .join("examples")
        .join(format!("gateway{}", std::env::consts::EXE_SUFFIX));
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["build", "--quiet", "--example", "gateway", "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    match profile_dir.file_name().and_then(|p| p.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(other) => {
            cargo.args(["--profile", other]);
        }
        None => {}
    }
    match tokio::time::timeout(Duration::from_secs(600), cargo.output()).await {
        Ok(Ok(out)) => assert!(
            out.status.success(),
            "`cargo build --example gateway` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        // No cargo to run (the test binary was started by hand): use what is there.
        Ok(Err(e)) => eprintln!(
            "warning: cargo could not be run ({e}); using {}",
            bin.display()
        ),
        Err(_) => panic!("`cargo build --example gateway` took more than 600 s"),
    }
    assert!(
        bin.is_file(),
        "the gateway example is not built: {} is missing. Build it with the same profile, \
         e.g. `cargo build --release --example gateway`",
        bin.display()
    );
    bin
}

/// A running `gateway` example; killed on drop.
struct Gateway {
    addr: SocketAddr,
    child: Child,
    /// Held so the child never writes to a closed pipe.
    _stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Gateway {
    /// Starts the example with `--listen 127.0.0.1:0` plus `args` and `envs` (MAPREG_* are
    /// cleared first) and waits (at most 30 s) for its "gateway listening on" line.
    async fn start(args: &[&str], envs: &[(&str, &str)]) -> Gateway {
        let mut child = Command::new(example_binary().await)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("MAPREG_ENDPOINT")
            .env_remove("MAPREG_TOKEN")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the gateway example");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .expect("gateway prints its address within 30 s")
            .expect("read gateway stdout")
            .expect("gateway exited before printing its address");
        let addr = line
            .strip_prefix("gateway listening on http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the gateway: {line:?}"));
        Gateway {
            addr,
            child,
            _stdout: stdout,
        }
    }

    /// `GET path` with `Host: host`.
    async fn get(&self, host: &str, path: &str) -> HttpResponse {
        self.send(&format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ))
        .await
    }

    /// Sends a hand-written request and reads the response (the request must ask the server
    /// to close the connection); at most 10 s.
    async fn send(&self, raw: &str) -> HttpResponse {
        let exchange = async {
            let mut s = TcpStream::connect(self.addr).await?;
            s.write_all(raw.as_bytes()).await?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let buf = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .unwrap_or_else(|_| panic!("no HTTP response within 10 s to {raw:?}"))
            .unwrap_or_else(|e| panic!("HTTP exchange failed for {raw:?}: {e}"));
        HttpResponse::parse(&buf)
    }

    /// Polls `GET path` (at most 30 s) until the gateway's `x-mapreg-revision` is at least
    /// `revision`, and returns that response: it reflects the registry at `revision` or later.
    async fn get_at(&self, revision: u64, host: &str, path: &str) -> HttpResponse {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.get(host, path).await;
            if r.status != 503 && r.revision() >= revision {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway did not reach revision {revision} within 30 s; last answer: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[derive(Debug)]
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn parse(buf: &[u8]) -> HttpResponse {
        let text = String::from_utf8_lossy(buf);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("malformed HTTP response: {text:?}"));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("malformed status line: {status_line:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        HttpResponse {
            status,
            headers,
            body: body.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `x-mapreg-revision` header (every answer has one).
    fn revision(&self) -> u64 {
        self.header("x-mapreg-revision")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no numeric x-mapreg-revision header: {self:?}"))
    }

    fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// Asserts an error answer: `status` and `{"message": message}`.
    #[track_caller]
    fn assert_error(&self, status: u16, message: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.json(), json!({ "message": message }), "{self:?}");
    }
}

/// Asserts a 200 answer routed to `mapping` of `domain` with `remaining` as the API's path.
#[track_caller]
fn assert_routed(r: &HttpResponse, domain: &str, mapping: &ApiMapping, api: &Api, remaining: &str) {
    assert_eq!(r.status, 200, "{r:?}");
    let protocol = match ProtocolType::try_from(api.protocol_type) {
        Ok(ProtocolType::Http) => "HTTP",
        Ok(ProtocolType::Rest) => "REST",
        Ok(ProtocolType::Websocket) => "WEBSOCKET",
        other => panic!("unexpected protocol {other:?}"),
    };
    let body = r.json();
    assert_eq!(body["domainName"], domain, "{r:?}");
    assert_eq!(
        body["apiMappingId"],
        mapping.api_mapping_id.as_str(),
        "{r:?}"
    );
    assert_eq!(
        body["apiMappingKey"],
        mapping.api_mapping_key.as_str(),
        "{r:?}"
    );
    assert_eq!(body["apiId"], api.api_id.as_str(), "{r:?}");
    assert_eq!(body["apiName"], api.name.as_str(), "{r:?}");
    assert_eq!(body["protocolType"], protocol, "{r:?}");
    assert_eq!(body["stage"], mapping.stage.as_str(), "{r:?}");
    assert_eq!(body["remainingPath"], remaining, "{r:?}");
    assert_eq!(
        body["revision"],
        r.revision(),
        "body and header revisions agree: {r:?}"
    );
}

/// The server's ResolveRoute answer: (mapping id, matched domain, remaining path).
async fn resolve_route(c: &mut Client, host: &str, path: &str) -> (String, String, String) {
    let r = c
        .resolve_route(ResolveRouteRequest {
            host: host.into(),
            path: path.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("ResolveRoute {host}{path}: {e:?}"))
        .into_inner();
    (
        r.api_mapping.expect("mapping").api_mapping_id,
        r.matched_domain_name,
        r.remaining_path,
    )
}

async fn api_named(c: &mut Client, name: &str, protocol: ProtocolType, stage: &str) -> Api {
    let api = create_api(c, name, protocol).await;
    create_stage(c, &api.api_id, stage).await;
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_routes_by_host_and_path_like_api_gateway() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let orders = api_named(&mut c, "orders-api", ProtocolType::Http, "test").await;
    let items = api_named(&mut c, "items-api", ProtocolType::Rest, "prod").await;
    // A domain with a multi-level key (raw prefix matching) and a root mapping.
    create_domain(&mut c, "api.example.com").await;
    let root = create_mapping(&mut c, "api.example.com", "", &orders.api_id, "test").await;
    let m_orders =
        create_mapping(&mut c, "api.example.com", "orders", &orders.api_id, "test").await;
    let m_items = create_mapping(
        &mut c,
        "api.example.com",
        "orders/v2/items",
        &items.api_id,
        "prod",
    )
    .await;
    // A wildcard domain.
    create_domain(&mut c, "*.example.com").await;
    let m_shop = create_mapping(&mut c, "*.example.com", "shop", &items.api_id, "prod").await;
    // Single-level keys only (whole segments) and no root mapping.
    create_domain(&mut c, "segments.example.org").await;
    let m_seg = create_mapping(
        &mut c,
        "segments.example.org",
        "orders",
        &orders.api_id,
        "test",
    )
    .await;
    let written = m_seg.create_revision;

    let gw = Gateway::start(&["--endpoint", &s.endpoint()], &[]).await;
    let r = gw
        .get_at(written, "api.example.com", "/orders/v2/items/5?x=1&y=%2F")
        .await;
    assert_routed(&r, "api.example.com", &m_items, &items, "/5");
    assert_eq!(r.json()["query"], "x=1&y=%2F", "query echoed, not matched");

    // (host, path, domain, mapping, api, remaining path)
    let routed = [
        (
            "API.Example.COM:8443",
            "/orders",
            "api.example.com",
            &m_orders,
            &orders,
            "/",
        ),
        (
            "api.example.com",
            "/ordersandmore",
            "api.example.com",
            &m_orders,
            &orders,
            "/andmore",
        ),
        (
            "api.example.com",
            "/orders/v1/items/9",
            "api.example.com",
            &m_orders,
            &orders,
            "/v1/items/9",
        ),
        (
            "api.example.com",
            "/customers/1",
            "api.example.com",
            &root,
            &orders,
            "/customers/1",
        ),
        (
            "api.example.com",
            "/",
            "api.example.com",
            &root,
            &orders,
            "/",
        ),
        (
            "shop.example.com",
            "/shop/cart",
            "*.example.com",
            &m_shop,
            &items,
            "/cart",
        ),
        (
            "segments.example.org",
            "/orders/1",
            "segments.example.org",
            &m_seg,
            &orders,
            "/1",
        ),
    ];
    for (host, path, domain, mapping, api, remaining) in routed {
        let r = gw.get(host, path).await;
        assert_routed(&r, domain, mapping, api, remaining);
        assert_eq!(r.json()["query"], Value::Null, "{r:?}");
        assert_eq!(
            resolve_route(&mut c, host, path).await,
            (
                mapping.api_mapping_id.clone(),
                domain.to_string(),
                remaining.to_string()
            ),
            "ResolveRoute agrees with the gateway for {host}{path}"
        );
    }

    // The domain exists but nothing matches: 404.
    for (host, path) in [
        ("shop.example.com", "/other"),
        ("segments.example.org", "/ordersandmore"),
        ("segments.example.org", "/"),
    ] {
        gw.get(host, path).await.assert_error(404, "Not Found");
    }
    // No custom domain for the host (a wildcard covers one level, not the apex): 403.
    for host in ["a.b.example.com", "example.com", "unknown.test"] {
        let r = gw.get(host, "/shop").await;
        r.assert_error(403, "Forbidden");
        assert!(r.revision() >= written, "{r:?}");
    }
    // Malformed requests: no Host, an empty host, a path that is not a path.
    for raw in [
        "GET /orders HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /orders HTTP/1.1\r\nHost: :8080\r\nConnection: close\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    ] {
        gw.send(raw).await.assert_error(400, "Bad Request");
    }
    // The routed API's method and body do not matter.
    let r = gw
        .send(
            "POST /orders/v2/items HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 2\r\n\
             Connection: close\r\n\r\n{}",
        )
        .await;
    assert_routed(&r, "api.example.com", &m_items, &items, "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_follows_writes_made_after_it_started() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let gw = Gateway::start(&["--endpoint", &s.endpoint()], &[]).await;
    // An empty registry: no domain for any host.
    gw.get_at(0, "api.example.com", "/v1/x")
        .await
        .assert_error(403, "Forbidden");

    let api = api_named(&mut c, "late-api", ProtocolType::Http, "test").await;
    let d = create_domain(&mut c, "api.example.com").await;
    gw.get_at(d.create_revision, "api.example.com", "/v1/x")
        .await
        .assert_error(404, "Not Found");

    let m = create_mapping(&mut c, "api.example.com", "v1", &api.api_id, "test").await;
    let r = gw
        .get_at(m.create_revision, "api.example.com", "/v1/x")
        .await;
    assert_routed(&r, "api.example.com", &m, &api, "/x");

    // Move the mapping to a multi-level key: the old key stops matching.
    let moved = c
        .update_api_mapping(UpdateApiMappingRequest {
            domain_name: "api.example.com".into(),
            api_mapping_id: m.api_mapping_id.clone(),
            api_mapping_key: Some("v2/orders".into()),
            ..Default::default()
        })
        .await
        .expect("update mapping")
        .into_inner();
    gw.get_at(moved.mod_revision, "api.example.com", "/v1/x")
        .await
        .assert_error(404, "Not Found");
    let r = gw
        .get_at(moved.mod_revision, "api.example.com", "/v2/orders/7")
        .await;
    assert_routed(&r, "api.example.com", &moved, &api, "/7");

    // Deleting the domain cascades to its mappings: the host is unknown again.
    let deleted = c
        .delete_domain_name(DeleteDomainNameRequest {
            domain_name: "api.example.com".into(),
            ..Default::default()
        })
        .await
        .expect("delete domain")
        .into_inner();
    gw.get_at(deleted.revision, "api.example.com", "/v2/orders/7")
        .await
        .assert_error(403, "Forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_answers_503_until_its_first_snapshot() {
    // A bound port that nobody serves yet: the gateway's connection waits in the backlog.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", std_listener.local_addr().expect("addr"));
    let gw = Gateway::start(&["--endpoint", &endpoint], &[]).await;
    for path in ["/", "/v1/x"] {
        let r = gw.get("api.example.com", path).await;
        r.assert_error(503, "Service Unavailable");
        assert_eq!(r.revision(), 0, "{r:?}");
    }

    // Now serve on that listener.
    let tmp = tempfile::tempdir().expect("tempdir");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mapreg::server::run(
        Config {
            data_dir: tmp.path().join("data"),
            ..Config::default()
        },
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let mut c = client_at(&endpoint, None).await.expect("connect");
    let api = api_named(&mut c, "api", ProtocolType::Http, "test").await;
    create_domain(&mut c, "api.example.com").await;
    let m = create_mapping(&mut c, "api.example.com", "v1", &api.api_id, "test").await;
    let r = gw
        .get_at(m.create_revision, "api.example.com", "/v1/x")
        .await;
    assert_routed(&r, "api.example.com", &m, &api, "/x");

    drop(gw);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("server stops within 30 s")
        .expect("server task")
        .expect("server ran cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_takes_endpoint_and_token_from_the_environment() {
    let s = TestServer::start_with_tokens().await;
    let mut admin = s.client_with("admin-a").await;
    let api = api_named(&mut admin, "tenant-api", ProtocolType::Http, "test").await;
    create_domain(&mut admin, "tenant.example.com").await;
    let m = create_mapping(&mut admin, "tenant.example.com", "", &api.api_id, "test").await;

    // A gateway token routes for every account.
    let endpoint = s.endpoint();
    let gw = Gateway::start(
        &[],
        &[("MAPREG_ENDPOINT", &endpoint), ("MAPREG_TOKEN", "gateway")],
    )
    .await;
    let r = gw
        .get_at(m.create_revision, "tenant.example.com", "/a/b")
        .await;
    assert_routed(&r, "tenant.example.com", &m, &api, "/a/b");

    // Without a token the server refuses the watch: the gateway never gets a snapshot.
    let anonymous = Gateway::start(&["--endpoint", &endpoint], &[]).await;
    anonymous
        .get("tenant.example.com", "/a/b")
        .await
        .assert_error(503, "Service Unavailable");
}

//! The web console: plain HTTP checks of routing and auth, and the AWS console flow in a real
//! browser (headless Chromium driven by tests/python/console.py through Selenium).
//!
//! The browser tests need `chromium`, `chromium-driver` and Python's `selenium` (`.ci/run`
//! installs them). Without them they are skipped with a message, unless `CI` is set: then
//! they fail.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mapreg::pb::*;
use tonic::Code;

use crate::common::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the browser tools are here; without them: skip (None) or, under CI, fail.
fn browser_tools() -> Option<()> {
    let have = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let chromium = have("chromium", &["--version"]) || have("chromium-browser", &["--version"]);
    let driver = have("chromedriver", &["--version"]);
    let selenium = have("python3", &["-c", "import selenium"]);
    if chromium && driver && selenium {
        return Some(());
    }
    let missing = format!(
        "chromium: {chromium}, chromedriver: {driver}, python3 selenium: {selenium} \
         (.ci/run installs them: apt-get install chromium chromium-driver; pip install selenium)"
    );
    if std::env::var_os("CI").is_some() {
        panic!("browser tools missing under CI: {missing}");
    }
    eprintln!("SKIPPED: browser tools missing: {missing}");
    None
}

/// Runs tests/python/console.py with `args` on a blocking thread (the server keeps serving)
/// and returns its JSON answer.
async fn script(args: Vec<String>) -> serde_json::Value {
    let task = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("tests/python/console.py")
            .args(&args)
            .current_dir(repo())
            .stdin(Stdio::null())
            .output()
    });
    let out = tokio::time::timeout(Duration::from_secs(240), task)
        .await
        .expect("console.py finishes within 240 s")
        .expect("blocking task")
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "console.py failed:\n--- stdout\n{stdout}--- stderr\n{stderr}"
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("console.py printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

/// A plain HTTP/1.1 request to the server; (status, headers, body).
async fn http(
    s: &TestServer,
    method: &str,
    path: &str,
    extra: &str,
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-type: \
         application/x-www-form-urlencoded\r\ncontent-length: {}\r\n{extra}\r\n{body}",
        s.addr,
        body.len()
    );
    conn.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut raw))
        .await
        .expect("answer within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

#[tokio::test]
async fn console_is_served_next_to_grpc() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let (status, _, body) = http(&s, "GET", "/", "", "").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("Custom domain names") && body.contains("create-domain"),
        "{body}"
    );
    let (status, head, _) = http(&s, "GET", "/console/static/console.js", "", "").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("text/javascript"),
        "{head}"
    );
    // gRPC still reaches the services on the same port.
    create_domain(&mut c, "grpc.example.com").await;
    let (_, _, body) = http(&s, "GET", "/", "", "").await;
    assert!(body.contains("grpc.example.com"), "{body}");
    // A POST without the CSRF token is refused, and writes nothing.
    let (status, _, _) = http(
        &s,
        "POST",
        "/console/domains",
        "",
        "domain_name=csrf.example.com",
    )
    .await;
    assert_eq!(status, 403);
    let err = c
        .get_domain_name(GetDomainNameRequest {
            domain_name: "csrf.example.com".into(),
            ..Default::default()
        })
        .await
        .expect_err("not created");
    assert_eq!(err.code(), Code::NotFound);
    s.stop().await;
}

#[tokio::test]
async fn tokens_mode_needs_a_login() {
    let s = TestServer::start_with_tokens().await;
    let (status, head, _) = http(&s, "GET", "/", "", "").await;
    assert_eq!(status, 303, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("location: /console/login"),
        "{head}"
    );
    let (status, _, _) = http(
        &s,
        "POST",
        "/console/domains",
        "",
        "domain_name=x.example.com&csrf=x",
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = http(&s, "GET", "/console/domains/x.example.com/events", "", "").await;
    assert_eq!(status, 401);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_drives_the_aws_console_flow() {
    if browser_tools().is_none() {
        return;
    }
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = create_api(&mut c, "orders", ProtocolType::Http).await;
    create_stage(&mut c, &api.api_id, "test").await;
    let screenshot = repo().join("docs/console.png");
    std::fs::create_dir_all(repo().join("docs")).expect("docs dir");
    let seen = script(vec![
        "dev".into(),
        s.endpoint(),
        env!("CARGO_BIN_EXE_mapreg").into(),
        api.api_id.clone(),
        "test".into(),
        screenshot.to_string_lossy().into_owned(),
    ])
    .await;

    // The console's writes, as gRPC sees them.
    let d = c
        .get_domain_name(GetDomainNameRequest {
            domain_name: "api.example.com".into(),
            ..Default::default()
        })
        .await
        .expect("domain created through the console")
        .into_inner();
    let conf = &d.domain_name_configurations[0];
    assert_eq!(conf.endpoint_type, EndpointType::Regional as i32);
    assert_eq!(conf.security_policy, SecurityPolicy::Tls12 as i32);
    let m = c
        .get_api_mappings(GetApiMappingsRequest {
            domain_name: "api.example.com".into(),
            ..Default::default()
        })
        .await
        .expect("mappings")
        .into_inner()
        .items;
    let v1 = m.iter().find(|m| m.api_mapping_key == "v1").expect("v1");
    assert_eq!(
        (v1.api_id.as_str(), v1.stage.as_str()),
        (api.api_id.as_str(), "test")
    );
    assert_eq!(seen["created"], v1.api_mapping_id.as_str());
    assert_eq!(m.len(), 2, "v1 from the console, v2 from the CLI: {m:?}");

    // The page showed the API's own message for the broken rule.
    let err = c
        .create_api_mapping(mapping_req("api.example.com", "v1", &api.api_id, "test"))
        .await
        .expect_err("duplicate key");
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(seen["error"], err.message(), "{seen}");
    assert_eq!(
        seen["live"], true,
        "the CLI's mapping appeared without a reload: {seen}"
    );
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_reader_sees_no_write_buttons_and_forged_posts_are_refused() {
    if browser_tools().is_none() {
        return;
    }
    let s = TestServer::start_with_tokens().await;
    let mut admin = s.client_with("admin-a").await;
    let api = create_api(&mut admin, "shared", ProtocolType::Http).await;
    create_stage(&mut admin, &api.api_id, "prod").await;
    create_domain(&mut admin, "shared.example.com").await;
    admin
        .create_api_mapping(mapping_req(
            "shared.example.com",
            "seen",
            &api.api_id,
            "prod",
        ))
        .await
        .expect("mapping");
    let seen = script(vec![
        "tokens".into(),
        s.endpoint(),
        "reader-a".into(),
        "admin-a".into(),
    ])
    .await;
    assert_eq!(seen["cookie_http_only"], true, "{seen}");
    assert_eq!(seen["cookie_same_site"], "Strict", "{seen}");
    assert_eq!(seen["reader_write_buttons"], 0, "{seen}");
    assert_eq!(seen["reader_configure_buttons"], 0, "{seen}");
    assert_eq!(seen["reader_sees_mapping"], 1, "the reader reads: {seen}");
    assert_eq!(seen["reader_forged_post"], 403, "{seen}");
    assert_eq!(seen["reader_real_csrf_post"], 403, "{seen}");
    assert_eq!(seen["admin_forged_post"], 403, "{seen}");
    let names: Vec<String> = admin
        .get_domain_names(GetDomainNamesRequest::default())
        .await
        .expect("domains")
        .into_inner()
        .items
        .into_iter()
        .map(|d| d.domain_name)
        .collect();
    assert_eq!(
        names,
        vec!["shared.example.com".to_string()],
        "nothing forged was written"
    );
    s.stop().await;
}

//! `/metrics` (SPEC.md 8.8) scraped over real HTTP after a known sequence of calls: exact
//! gRPC counts by method and code, histogram counts, the mapreg gauges, and a parse of the
//! whole text by Python's `prometheus_client` (skipped with a message when python3 or the
//! module is missing, unless CI is set).

use std::net::SocketAddr;
use std::time::Duration;

use mapreg::config::Config;
use mapreg::pb::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::common::*;

/// `GET /metrics` over HTTP/1.0; returns the status line's code, the content type and body.
pub async fn scrape(addr: SocketAddr) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n")
        .await
        .expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("scrape within 30 s")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head and body");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (code, content_type, body.to_string())
}

/// The value of the sample `name` whose labels include all of `labels` (and, when `exact`,
/// no others).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        let have: Vec<(&str, &str)> = rest
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k, v.trim_matches('"')))
            })
            .collect();
        labels
            .iter()
            .all(|l| have.contains(l))
            .then(|| value.parse().ok())
            .flatten()
    })
}

fn handled(text: &str, method: &str, code: &str) -> f64 {
    sample(
        text,
        "grpc_server_handled_total",
        &[
            ("grpc_type", "unary"),
            ("grpc_service", "mapreg.v1.Registry"),
            ("grpc_method", method),
            ("grpc_code", code),
        ],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_every_call_by_method_and_code() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, metrics) = TestServer::start_with_metrics(Config {
        data_dir: tmp.path().join("data"),
        ..Config::default()
    })
    .await;
    let mut c = server.client().await;

    // The known sequence: 2 CreateApi (1 OK, 1 InvalidArgument), 5 GetApi (2 OK, 3 NotFound).
    let api = create_api(&mut c, "orders", ProtocolType::Http).await;
    let bad = c
        .create_api(CreateApiRequest {
            name: String::new(),
            protocol_type: ProtocolType::Http as i32,
            ..Default::default()
        })
        .await;
    assert_eq!(bad.expect_err("empty name").code(), Code::InvalidArgument);
    for _ in 0..2 {
        c.get_api(GetApiRequest {
            api_id: api.api_id.clone(),
            ..Default::default()
        })
        .await
        .expect("get api");
    }
    for _ in 0..3 {
        let r = c
            .get_api(GetApiRequest {
                api_id: "nope000000".into(),
                ..Default::default()
            })
            .await;
        assert_eq!(r.expect_err("unknown").code(), Code::NotFound);
    }
    // One open watch stream, in sync.
    let mut feed = server.feed_client(None).await;
    let mut stream = watch(&mut feed, WatchRequest::default())
        .await
        .expect("watch");
    loop {
        let m = next_message(&mut stream, 30).await.expect("message");
        if matches!(
            m.and_then(|m| m.kind),
            Some(watch_response::Kind::SnapshotComplete(_))
        ) {
            break;
        }
    }

    let (code, content_type, text) = scrape(metrics).await;
    assert_eq!(code, 200, "{text}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let started = |m: &str| {
        sample(
            &text,
            "grpc_server_started_total",
            &[("grpc_type", "unary"), ("grpc_method", m)],
        )
    };
    assert_eq!(started("CreateApi"), Some(2.0), "{text}");
    assert_eq!(started("GetApi"), Some(5.0), "{text}");
    assert_eq!(handled(&text, "CreateApi", "OK"), 1.0, "{text}");
    assert_eq!(
        handled(&text, "CreateApi", "InvalidArgument"),
        1.0,
        "{text}"
    );
    assert_eq!(handled(&text, "GetApi", "OK"), 2.0, "{text}");
    assert_eq!(handled(&text, "GetApi", "NotFound"), 3.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "grpc_server_handling_seconds_count",
            &[("grpc_method", "GetApi")]
        ),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "grpc_server_handling_seconds_bucket",
            &[("grpc_method", "GetApi"), ("le", "+Inf")]
        ),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "grpc_server_started_total",
            &[("grpc_type", "server_stream"), ("grpc_method", "Watch")]
        ),
        Some(1.0),
        "{text}"
    );
    // The registry's own.
    assert_eq!(sample(&text, "mapreg_revision", &[]), Some(1.0), "{text}");
    assert_eq!(sample(&text, "mapreg_compact_revision", &[]), Some(0.0));
    assert_eq!(
        sample(&text, "mapreg_records", &[("kind", "api")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "mapreg_records", &[("kind", "api_mapping")]),
        Some(0.0)
    );
    assert_eq!(sample(&text, "mapreg_watchers", &[]), Some(1.0), "{text}");
    assert!(sample(&text, "mapreg_watch_catchup_total", &[]).is_some());
    // One accepted write: one batch of one write, flushed.
    assert_eq!(
        sample(&text, "mapreg_write_batch_size_count", &[]),
        Some(1.0)
    );
    assert_eq!(sample(&text, "mapreg_write_batch_size_sum", &[]), Some(1.0));
    assert!(sample(&text, "mapreg_flush_seconds_count", &[]).unwrap_or(0.0) >= 1.0);
    assert_eq!(sample(&text, "mapreg_gateways", &[]), Some(0.0));
    assert_eq!(
        sample(&text, "mapreg_gateway_max_lag_revisions", &[]),
        Some(0.0)
    );
    if cfg!(target_os = "linux") {
        assert!(sample(&text, "process_open_fds", &[]).unwrap_or(0.0) > 0.0);
        assert!(sample(&text, "process_resident_memory_bytes", &[]).unwrap_or(0.0) > 0.0);
        assert!(sample(&text, "process_start_time_seconds", &[]).unwrap_or(0.0) > 1.0e9);
        assert!(sample(&text, "process_cpu_seconds_total", &[]).is_some());
    }

    drop(stream);
    drop(feed);
    prometheus_parses(&text).await;
    server.stop().await;
}

#[tokio::test]
async fn without_metrics_listen_nothing_is_served_and_calls_work() {
    // The layer is in place but counts nothing; the gRPC port answers as always.
    let server = TestServer::start().await;
    let mut c = server.client().await;
    create_api(&mut c, "a", ProtocolType::Http).await;
    server.stop().await;
}

/// The Python check: both of `prometheus_client`'s parsers (OpenMetrics, which the content
/// type announces, and the classic text format) accept the whole scrape and find the families.
const PARSE: &str = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
from prometheus_client.parser import text_string_to_metric_families as classic
text = sys.stdin.read()
names = {f.name: f for f in om(text)}
for want in ["grpc_server_started", "grpc_server_handled", "grpc_server_handling_seconds",
             "mapreg_revision", "mapreg_records", "mapreg_write_batch_size",
             "mapreg_flush_seconds", "process_open_fds"]:
    assert want in names, (want, sorted(names))
assert names["grpc_server_handling_seconds"].type == "histogram"
assert names["grpc_server_handled"].type == "counter"
classic_names = {f.name for f in classic(text)}
assert "grpc_server_handled" in classic_names or "grpc_server_handled_total" in classic_names, classic_names
print("ok", len(names))
"#;

async fn prometheus_parses(text: &str) {
    let ci = std::env::var_os("CI").is_some();
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .output()
        .await;
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        assert!(
            !ci,
            "python3 with prometheus_client is required in CI (.ci/run installs it)"
        );
        eprintln!("skipping the prometheus_client parse: python3 or the module is missing");
        return;
    }
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).await.expect("write");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("python within 60 s")
        .expect("python");
    assert!(
        out.status.success(),
        "prometheus_client refused the scrape:\n{}\n{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

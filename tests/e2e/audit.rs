//! Who changed what (SPEC.md 8.5): every change set records the principal, account, RPC,
//! request id and commit time, from the live feed, from the log after a restart, and in
//! `get-history`; `x-request-id` is returned on every RPC. And the logs: `--log-format json`
//! writes one JSON object per line, the serving line even at `RUST_LOG=warn`.

use std::process::Stdio;
use std::time::Duration;

use mapreg::pb::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::metadata::MetadataValue;

use crate::common::*;

fn request_id<T>(r: &tonic::Response<T>) -> String {
    r.metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn change_sets_record_who_made_them() {
    let server = TestServer::start_with_tokens().await;
    // A live watcher (gateway role: every account) from revision 1.
    let mut feed = server.feed_client(Some("gateway")).await;
    let mut live = watch(
        &mut feed,
        WatchRequest {
            start_revision: 1,
            ..Default::default()
        },
    )
    .await
    .expect("watch");

    // admin-a with its own request id; admin-b without one.
    let mut a = server.client_with("admin-a").await;
    let mut req = tonic::Request::new(CreateApiRequest {
        name: "orders".into(),
        protocol_type: ProtocolType::Http as i32,
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-request-id", MetadataValue::from_static("deploy-42"));
    let created = a.create_api(req).await.expect("create api");
    assert_eq!(
        request_id(&created),
        "deploy-42",
        "the client's id comes back"
    );
    let mut b = server.client_with("admin-b").await;
    let domain = b
        .create_domain_name(CreateDomainNameRequest {
            domain_name: "shop.example.com".into(),
            ..Default::default()
        })
        .await
        .expect("create domain");
    let generated = request_id(&domain);
    assert_eq!(generated.len(), 36, "a generated id: {generated:?}");
    // Reads and errors carry one too.
    let err = a
        .get_api(GetApiRequest {
            api_id: "nope000000".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown");
    assert_eq!(
        err.metadata()
            .get("x-request-id")
            .map(|v| v.len())
            .unwrap_or(0),
        36,
        "{err:?}"
    );

    let expect = [
        (
            1,
            "admin-a",
            "111122223333",
            "CreateApi",
            "deploy-42".to_string(),
        ),
        (
            2,
            "admin-b",
            "444455556666",
            "CreateDomainName",
            generated.clone(),
        ),
    ];
    // Live.
    for (rev, principal, account, method, rid) in &expect {
        let m = loop {
            let m = next_message(&mut live, 30)
                .await
                .expect("message")
                .expect("open");
            if !matches!(m.kind, Some(watch_response::Kind::Progress(_))) {
                break m;
            }
        };
        assert_eq!(m.revision, *rev);
        let Some(watch_response::Kind::ChangeSet(cs)) = m.kind else {
            panic!("change set expected: {m:?}");
        };
        assert_eq!(cs.principal, *principal);
        assert_eq!(cs.account_id, *account);
        assert_eq!(cs.method, format!("/mapreg.v1.Registry/{method}"));
        assert_eq!(&cs.request_id, rid);
        assert!(cs.commit_time.is_some());
    }
    drop(live);
    drop(feed);

    // From the log, after a restart, through the CLI.
    let server = server.restart().await;
    let run = mapreg_cli(&server, &["get-history", "--token", "gateway"]).await;
    let out = run.json();
    let sets = out["ChangeSets"].as_array().expect("ChangeSets");
    assert_eq!(sets.len(), 2, "{run:?}");
    for (set, (rev, principal, account, method, rid)) in sets.iter().zip(&expect) {
        assert_eq!(set["Revision"], *rev);
        assert_eq!(set["Principal"], *principal);
        assert_eq!(set["AccountId"], *account);
        assert_eq!(set["Method"], format!("/mapreg.v1.Registry/{method}"));
        assert_eq!(set["RequestId"], rid.as_str());
        assert!(set["CommitTime"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    // Filters: a domain, a start, a count.
    let run = mapreg_cli(
        &server,
        &[
            "get-history",
            "--token",
            "gateway",
            "--domain-name",
            "shop.example.com",
        ],
    )
    .await;
    let out = run.json();
    let revisions: Vec<&Value> = out["ChangeSets"]
        .as_array()
        .expect("ChangeSets")
        .iter()
        .map(|s| &s["Revision"])
        .collect();
    assert_eq!(revisions, [&Value::from(2)], "{run:?}");
    let run = mapreg_cli(
        &server,
        &["get-history", "--token", "gateway", "--max-items", "1"],
    )
    .await;
    assert_eq!(run.json()["ChangeSets"].as_array().map(Vec::len), Some(1));
    let run = mapreg_cli(
        &server,
        &["get-history", "--token", "admin-b", "--start-revision", "2"],
    )
    .await;
    let out = run.json();
    assert_eq!(out["ChangeSets"][0]["Principal"], "admin-b", "{run:?}");
    server.stop().await;
}

/// Reads `child`'s stderr lines (each must be JSON) until one satisfies `want`.
async fn json_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    want: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("a log line within 30 s")
            .expect("read")
            .expect("the server is still running");
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
        if want(&v) {
            return v;
        }
    }
}

async fn serve_json(rust_log: &str, dir: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_mapreg"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mapreg serve")
}

fn is_serving(v: &Value) -> bool {
    v["fields"]["message"] == "mapreg serving"
}

#[tokio::test]
async fn json_logs_show_the_serving_line_and_request_ids() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // RUST_LOG=warn still shows where the server listens.
    let mut child = serve_json("warn", &tmp.path().join("a")).await;
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let serving = json_line(&mut lines, is_serving).await;
    assert_eq!(serving["level"], "WARN");
    let listen = serving["fields"]["listen"].as_str().expect("listen");
    assert!(
        listen.starts_with("127.0.0.1:") && !listen.ends_with(":0"),
        "{serving}"
    );
    child.kill().await.expect("kill");

    // At info, an RPC's line carries its request id.
    let mut child = serve_json("info", &tmp.path().join("b")).await;
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let serving = json_line(&mut lines, is_serving).await;
    let listen = serving["fields"]["listen"].as_str().expect("listen");
    let mut c = client_at(&format!("http://{listen}"), None)
        .await
        .expect("connect");
    let mut req = tonic::Request::new(GetApisRequest::default());
    req.metadata_mut()
        .insert("x-request-id", MetadataValue::from_static("log-me-7"));
    c.get_apis(req).await.expect("get apis");
    let rpc = json_line(&mut lines, |v| v["fields"]["message"] == "rpc").await;
    assert_eq!(rpc["fields"]["request_id"], "log-me-7", "{rpc}");
    assert_eq!(rpc["span"]["request_id"], "log-me-7", "{rpc}");
    child.kill().await.expect("kill");
}

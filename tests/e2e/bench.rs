//! `mapreg-bench` stays runnable: every scenario, tiny, as the built binary, checked through
//! its `--json` output (which rows exist and that nothing was lost), never through its timings.
//! One run also measures an external server given by `--endpoint`, with a token.

use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::common::*;

async fn bench(args: &[&str]) -> Vec<Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mapreg-bench"));
    cmd.arg("--json")
        .args(args)
        .env_remove("MAPREG_TOKEN")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("mapreg-bench {args:?} took over 240 s"))
        .expect("run mapreg-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mapreg-bench {args:?}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The JSON array is the last line, after the table.
    let last = stdout.lines().last().unwrap_or_default();
    match serde_json::from_str(last) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("last line of {args:?} is not a JSON array: {other:?}\n{stdout}"),
    }
}

fn rows<'a>(rows: &'a [Value], group: &str, target: &str) -> Vec<&'a Value> {
    rows.iter()
        .filter(|r| r["group"] == group && r["target"] == target)
        .collect()
}

fn find<'a>(rows: &'a [Value], scenario_prefix: &str) -> &'a Value {
    rows.iter()
        .find(|r| {
            r["scenario"]
                .as_str()
                .is_some_and(|s| s.starts_with(scenario_prefix))
        })
        .unwrap_or_else(|| panic!("no row {scenario_prefix:?} in {rows:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_rows_for_each_client_count_with_baseline_and_group_commit() {
    let out = bench(&["unary", "--clients", "1,4", "--ops", "200"]).await;
    assert_eq!(rows(&out, "unary", "baseline").len(), 2, "{out:#?}");
    assert_eq!(rows(&out, "unary", "mapreg").len(), 6, "{out:#?}");
    for r in rows(&out, "unary", "mapreg") {
        assert_eq!(r["n"], 200, "{r}");
        assert!(r["ops_per_s"].as_f64().is_some_and(|x| x > 0.0), "{r}");
        assert!(r["vs_baseline"].as_f64().is_some_and(|x| x > 0.0), "{r}");
        assert_eq!(r["vs_baseline_of"], "ops_per_s");
    }
    let creates: Vec<&Value> = out
        .iter()
        .filter(|r| r["scenario"] == "CreateApiMapping (durable)")
        .collect();
    assert_eq!(creates.len(), 2);
    for c in creates {
        let f = c["flushes_per_write"].as_f64().expect("flushes_per_write");
        assert!(f > 0.0 && f <= 1.0, "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_scenarios_deliver_everything() {
    let out = bench(&[
        "fanout",
        "--watchers",
        "20",
        "--rate",
        "50",
        "--seconds",
        "1",
        "--per-connection",
        "7",
    ])
    .await;
    for name in [
        "publish -> delivered",
        "commit -> delivered",
        "write sent -> delivered",
    ] {
        let r = find(&out, name);
        assert_eq!(r["delivered"], r["expected"], "{r}");
        // Every measured write reaches all 20 watchers; a write whose sample the bench dropped
        // under load (seen once: 49 of 50) is not expected, so count whole fan-outs only.
        let expected = r["expected"].as_u64().unwrap_or(0);
        assert!(expected >= 45 * 20 && expected % 20 == 0, "{r}");
    }
    let commit = find(&out, "commit -> last watcher");
    assert_eq!(commit["complete"], 50, "{commit}");
    assert_eq!(commit["vs_baseline_of"], "p99_ms");

    let out = bench(&["idle", "--watchers", "50"]).await;
    let r = rows(&out, "idle", "mapreg")[0];
    assert!(r["kib_per_watcher"].as_f64().is_some(), "{r}");
    assert!(r["rss_after_kib"].as_u64() > Some(0), "{r}");

    let out = bench(&["snapshot", "--mappings", "300"]).await;
    let r = rows(&out, "snapshot", "mapreg")[0];
    // The fixture's API, stage and domain are in the snapshot too.
    assert_eq!(r["n"], 303, "{r}");
    assert!(r["rss_peak_kib"].as_u64() > Some(0), "{r}");
    let base = rows(&out, "snapshot", "baseline")[0];
    assert_eq!(
        base["n"], r["messages"],
        "the baseline streams as many messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_scenario_checks_every_local_resolution() {
    let out = bench(&["resolve", "--ops", "100", "--local", "1000"]).await;
    let r = find(&out, "MappingCache::resolve");
    assert_eq!(r["n"], 1000);
    assert!(r["ns_per_call"].as_f64().is_some_and(|x| x > 0.0), "{r}");
    assert_eq!(find(&out, "ResolveRoute")["n"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_measures_an_external_server_and_cleans_up() {
    let server = TestServer::start_with_tokens().await;
    let endpoint = server.endpoint();
    let out = bench(&[
        "--endpoint",
        &endpoint,
        "--token",
        "admin-a",
        "unary",
        "--clients",
        "2",
        "--ops",
        "100",
    ])
    .await;
    assert_eq!(find(&out, "GetApiMapping")["n"], 100);
    // No child server: no flush counters to report.
    assert!(find(&out, "CreateApiMapping")["flushes_per_write"].is_null());
    // The bench's API, stage, domain and mappings are gone again.
    let mut c = server.client_with("admin-a").await;
    assert_eq!(visible_state(&mut c).await, VisibleState::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_scenario_populates_watches_restarts_and_reuses_its_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    let store = store.to_str().expect("utf-8 temp path");
    let args = [
        "scale",
        "--mappings",
        "200",
        "--per-domain",
        "10",
        "--watchers",
        "5",
        "--per-connection",
        "2",
        "--data-dir",
        store,
    ];
    let out = bench(&args).await;
    let created = find(&out, "populate: CreateApiMapping");
    assert_eq!(created["n"], 200, "{created}");
    assert_eq!(created["domains"], 20, "{created}");
    assert!(
        created["ops_per_s"].as_f64().is_some_and(|x| x > 0.0),
        "{created}"
    );
    assert_eq!(find(&out, "populate: CreateDomainName")["n"], 20);
    let memory = find(&out, "server memory");
    assert!(memory["rss_empty_kib"].as_u64() > Some(0), "{memory}");
    assert!(memory["rss_populated_kib"].as_u64() > Some(0), "{memory}");
    assert!(memory["mib_per_100k_mappings"].is_number(), "{memory}");
    let watch = find(&out, "Watch rev 0");
    assert_eq!(watch["complete"], 5, "{watch}");
    assert_eq!(watch["verified"], 5, "{watch}");
    // Each snapshot: the domain and its 10 mappings.
    assert_eq!(watch["resources"], 5 * 11, "{watch}");
    let restart = find(&out, "restart");
    assert!(
        restart["seconds"].as_f64().is_some_and(|x| x > 0.0),
        "{restart}"
    );
    assert_eq!(restart["verified_domains"], 3, "{restart}");
    assert_eq!(restart["verified_mappings"], 30, "{restart}");
    assert!(
        restart["rss_after_restart_kib"].as_u64() > Some(0),
        "{restart}"
    );

    // The kept store, again without populating.
    let mut reuse = args.to_vec();
    reuse.push("--skip-populate");
    let out = bench(&reuse).await;
    assert!(
        rows(&out, "scale", "mapreg").iter().all(|r| !r["scenario"]
            .as_str()
            .unwrap_or_default()
            .starts_with("populate")),
        "{out:#?}"
    );
    assert_eq!(find(&out, "server memory")["reused_store"], true);
    assert_eq!(find(&out, "Watch rev 0")["complete"], 5);
    assert_eq!(find(&out, "restart")["verified_mappings"], 30);
}

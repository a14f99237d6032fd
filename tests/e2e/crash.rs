//! Crash recovery, in the style of sled's `test_crash_recovery`: the real `mapreg serve` runs as
//! a child process, concurrent writers drive creates, updates, deletes and cascades, the child
//! is killed with SIGKILL at a random moment, and the data dir is checked after a restart:
//!
//! - every acknowledged write is there, and an unacknowledged one is either wholly applied or
//!   not at all (each writer owns one domain and has at most one write in flight, so its domain
//!   must equal its model, or its model with the in-flight write applied);
//! - `mapreg check` finds the data dir consistent;
//! - a watcher that saw revision R before the kill resumes at R + 1 with no gap.
//!
//! `MAPREG_CRASH_ROUNDS` sets the number of rounds (default 20).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mapreg::pb::watch_response::Kind;
use mapreg::pb::*;
use rand::Rng;

use crate::common::*;

const WRITERS: usize = 4;

/// The `mapreg serve` child; SIGKILLed on drop.
struct Child_ {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Child_ {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn_server(data_dir: &Path) -> Child_ {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let child = Command::new(env!("CARGO_BIN_EXE_mapreg"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg(port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mapreg serve");
    let c = Child_ { child, addr: port };
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(c.addr).await.is_ok() {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("mapreg serve did not listen within 5 s");
}

/// A domain's keys, or None when the domain does not exist.
type DomainState = Option<BTreeSet<String>>;

#[derive(Debug, Clone)]
enum Op {
    CreateDomain,
    DeleteDomain,
    CreateMapping(String),
    DeleteMapping(String),
    MoveMapping(String, String),
}

fn apply(state: &DomainState, op: &Op) -> DomainState {
    let mut s = state.clone();
    match op {
        Op::CreateDomain => s = Some(BTreeSet::new()),
        Op::DeleteDomain => s = None,
        Op::CreateMapping(k) => {
            if let Some(keys) = s.as_mut() {
                keys.insert(k.clone());
            }
        }
        Op::DeleteMapping(k) => {
            if let Some(keys) = s.as_mut() {
                keys.remove(k);
            }
        }
        Op::MoveMapping(from, to) => {
            if let Some(keys) = s.as_mut() {
                keys.remove(from);
                keys.insert(to.clone());
            }
        }
    }
    s
}

/// What one writer knows: its acknowledged state and the write in flight, if any.
#[derive(Debug, Default)]
struct Model {
    acked: DomainState,
    in_flight: Option<Op>,
    /// Writes acknowledged so far.
    acked_ops: u64,
    /// In-flight writes found applied after a crash.
    survived_unacked: u64,
    /// key -> mapping id, for the acknowledged mappings.
    ids: std::collections::HashMap<String, String>,
}

async fn writer(endpoint: String, w: usize, api_id: String, model: Arc<Mutex<Model>>) {
    let domain = format!("w{w}.crash.example.com");
    let Ok(mut c) = client_at(&endpoint, None).await else {
        return;
    };
    loop {
        let n: u64 = rand::thread_rng().r#gen();
        let op = {
            let m = model.lock().expect("model");
            let mut rng = rand::thread_rng();
            match &m.acked {
                None => Op::CreateDomain,
                Some(keys) if keys.is_empty() || rng.gen_bool(0.5) => {
                    if keys.len() >= 3 && rng.gen_bool(0.05) {
                        Op::DeleteDomain
                    } else {
                        Op::CreateMapping(format!("k{n:x}"))
                    }
                }
                Some(keys) => {
                    let k = keys
                        .iter()
                        .nth(rng.gen_range(0..keys.len()))
                        .cloned()
                        .unwrap_or_default();
                    if rng.gen_bool(0.5) {
                        Op::DeleteMapping(k)
                    } else {
                        Op::MoveMapping(k, format!("m{n:x}"))
                    }
                }
            }
        };
        let id_of = |k: &str| {
            model
                .lock()
                .expect("model")
                .ids
                .get(k)
                .cloned()
                .unwrap_or_default()
        };
        model.lock().expect("model").in_flight = Some(op.clone());
        let result: Result<Option<String>, tonic::Status> = match &op {
            Op::CreateDomain => c
                .create_domain_name(CreateDomainNameRequest {
                    domain_name: domain.clone(),
                    ..Default::default()
                })
                .await
                .map(|_| None),
            Op::DeleteDomain => c
                .delete_domain_name(DeleteDomainNameRequest {
                    domain_name: domain.clone(),
                    ..Default::default()
                })
                .await
                .map(|_| None),
            Op::CreateMapping(k) => c
                .create_api_mapping(mapping_req(&domain, k, &api_id, "test"))
                .await
                .map(|r| Some(r.into_inner().api_mapping_id)),
            Op::DeleteMapping(k) => c
                .delete_api_mapping(DeleteApiMappingRequest {
                    domain_name: domain.clone(),
                    api_mapping_id: id_of(k),
                    ..Default::default()
                })
                .await
                .map(|_| None),
            Op::MoveMapping(k, to) => c
                .update_api_mapping(UpdateApiMappingRequest {
                    domain_name: domain.clone(),
                    api_mapping_id: id_of(k),
                    api_mapping_key: Some(to.clone()),
                    ..Default::default()
                })
                .await
                .map(|_| None),
        };
        match result {
            Ok(id) => {
                let mut m = model.lock().expect("model");
                m.acked = apply(&m.acked, &op);
                m.acked_ops += 1;
                match &op {
                    Op::CreateMapping(k) => {
                        m.ids.insert(k.clone(), id.unwrap_or_default());
                    }
                    Op::MoveMapping(k, to) => {
                        if let Some(id) = m.ids.remove(k) {
                            m.ids.insert(to.clone(), id);
                        }
                    }
                    Op::DeleteMapping(k) => {
                        m.ids.remove(k);
                    }
                    Op::DeleteDomain => m.ids.clear(),
                    Op::CreateDomain => {}
                }
                m.in_flight = None;
            }
            // The server is gone: the op stays in flight, its outcome unknown.
            Err(e)
                if matches!(
                    e.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::Unknown
                        | tonic::Code::Internal
                        | tonic::Code::Cancelled
                ) =>
            {
                return;
            }
            Err(e) => panic!("writer {w}: {op:?} failed unexpectedly: {e:?}"),
        }
    }
}

/// Follows the stream from a snapshot, recording the last revision seen.
async fn watcher(endpoint: String, last: Arc<Mutex<(u64, String)>>) {
    let Ok(mut f) = feed_client_at(&endpoint, None).await else {
        return;
    };
    let Ok(mut s) = watch(&mut f, WatchRequest::default()).await else {
        return;
    };
    while let Ok(Some(m)) = s.message().await {
        if matches!(
            m.kind,
            Some(Kind::SnapshotComplete(_)) | Some(Kind::ChangeSet(_))
        ) {
            *last.lock().expect("last") = (m.revision, m.store_id);
        }
    }
}

async fn domain_state(c: &mut Client, domain: &str) -> DomainState {
    match c
        .get_domain_name(GetDomainNameRequest {
            domain_name: domain.into(),
            ..Default::default()
        })
        .await
    {
        Err(e) if e.code() == tonic::Code::NotFound => None,
        Err(e) => panic!("GetDomainName {domain}: {e:?}"),
        Ok(_) => Some(
            all_mappings(c, domain)
                .await
                .into_iter()
                .map(|m| m.api_mapping_key)
                .collect(),
        ),
    }
}

fn run_check(data_dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_mapreg"))
        .arg("check")
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run mapreg check");
    assert!(
        out.status.success(),
        "mapreg check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_acknowledged_write() {
    let rounds: usize = std::env::var("MAPREG_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let models: Vec<Arc<Mutex<Model>>> = (0..WRITERS).map(|_| Default::default()).collect();

    // The API and stage every mapping uses, made once.
    let api_id = {
        let server = spawn_server(&data_dir).await;
        let mut c = client_at(&format!("http://{}", server.addr), None)
            .await
            .expect("connect");
        api_with_stage(&mut c, ProtocolType::Http).await.api_id
    };

    let mut resumed_total = 0u64;
    for round in 0..rounds {
        let server = spawn_server(&data_dir).await;
        let endpoint = format!("http://{}", server.addr);
        let seen = Arc::new(Mutex::new((0u64, String::new())));
        let watch_task = tokio::spawn(watcher(endpoint.clone(), seen.clone()));
        let writers: Vec<_> = models
            .iter()
            .enumerate()
            .map(|(w, m)| tokio::spawn(writer(endpoint.clone(), w, api_id.clone(), m.clone())))
            .collect();
        let ms = rand::thread_rng().gen_range(20..300);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        drop(server); // SIGKILL
        for w in writers {
            tokio::time::timeout(Duration::from_secs(30), w)
                .await
                .expect("writer ends once the server is gone")
                .expect("writer task");
        }
        watch_task.abort();
        let (last_seen, store_id) = seen.lock().expect("seen").clone();

        run_check(&data_dir);

        let server = spawn_server(&data_dir).await;
        let endpoint = format!("http://{}", server.addr);
        let mut c = client_at(&endpoint, None).await.expect("connect");
        for (w, model) in models.iter().enumerate() {
            let domain = format!("w{w}.crash.example.com");
            let actual = domain_state(&mut c, &domain).await;
            {
                let mut m = model.lock().expect("model");
                let after = m.in_flight.as_ref().map(|op| apply(&m.acked, op));
                if actual == m.acked {
                    // The in-flight write did not survive (or there was none).
                } else if Some(&actual) == after.as_ref() {
                    m.acked = actual.clone();
                    m.survived_unacked += 1;
                } else {
                    panic!(
                        "round {round}, writer {w}: after the crash {domain} is {actual:?}; \
                         acknowledged {:?}, in flight {:?}",
                        m.acked, m.in_flight
                    );
                }
                m.in_flight = None;
            }
            // Refresh the id map from the server (an in-flight create's id was never seen).
            let ids = if actual.is_some() {
                all_mappings(&mut c, &domain)
                    .await
                    .into_iter()
                    .map(|x| (x.api_mapping_key, x.api_mapping_id))
                    .collect()
            } else {
                Default::default()
            };
            model.lock().expect("model").ids = ids;
        }

        // A watcher resuming after the last revision it saw continues with no gap.
        if last_seen > 0 {
            let mut f = feed_client_at(&endpoint, None).await.expect("feed");
            let mut s = watch(
                &mut f,
                WatchRequest {
                    start_revision: last_seen + 1,
                    store_id,
                    progress_interval_seconds: 1,
                    ..Default::default()
                },
            )
            .await
            .expect("resume");
            let mut next = last_seen + 1;
            loop {
                let m = next_message(&mut s, 10)
                    .await
                    .expect("stream")
                    .expect("message");
                match m.kind {
                    Some(Kind::ChangeSet(_)) => {
                        assert_eq!(m.revision, next, "round {round}: gap or duplicate");
                        next += 1;
                        resumed_total += 1;
                    }
                    Some(Kind::Progress(_)) => {
                        assert_eq!(m.revision, next - 1, "round {round}: progress ahead");
                        break;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        drop(server);
    }
    let acked: u64 = models
        .iter()
        .map(|m| m.lock().expect("model").acked_ops)
        .sum();
    let survived: u64 = models
        .iter()
        .map(|m| m.lock().expect("model").survived_unacked)
        .sum();
    println!(
        "{rounds} crashes: {acked} acknowledged writes, {survived} unacknowledged writes \
         found applied, {resumed_total} change sets replayed on resume"
    );
    assert!(acked > 0, "no write was ever acknowledged");
    assert!(resumed_total > 0 || rounds < 3, "no watcher ever resumed");
    run_check(&data_dir);
}

//! `mapreg::client::MappingCache` against a real server behind a TCP proxy the test can cut
//! and re-point: it converges to the server's state after a restart, after compaction past
//! its revision, and after the data dir is replaced; it resolves like ResolveRoute.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mapreg::client::{CacheOptions, MappingCache};
use mapreg::config::Config;
use mapreg::pb::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::common::*;

/// A loopback TCP proxy with a fixed address that forwards to a backend the test can change,
/// and can cut every connection and refuse new ones.
struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    accept: JoinHandle<()>,
}

struct ProxyState {
    backend: Option<SocketAddr>,
    conns: Vec<JoinHandle<()>>,
}

impl Proxy {
    async fn start(backend: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(ProxyState {
            backend: Some(backend),
            conns: Vec::new(),
        }));
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let backend = st.lock().expect("proxy state").backend;
                let Some(backend) = backend else {
                    drop(inbound); // cut: refuse
                    continue;
                };
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                st.lock().expect("proxy state").conns.push(conn);
            }
        });
        Proxy {
            addr,
            state,
            accept,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every live connection; new ones go to `backend` (None: refused).
    fn cut(&self, backend: Option<SocketAddr>) {
        let mut st = self.state.lock().expect("proxy state");
        st.backend = backend;
        for c in st.conns.drain(..) {
            c.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut(None);
    }
}

/// Waits (at most 20 s) until the cache's status satisfies `f`.
async fn wait_status(cache: &MappingCache, f: impl Fn(&mapreg::client::CacheStatus) -> bool) {
    let mut rx = cache.subscribe();
    let ok = tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| f(s))).await;
    assert!(
        matches!(ok, Ok(Ok(_))),
        "cache status never matched: {:?}",
        cache.status()
    );
}

pub(crate) fn options(endpoint: String) -> CacheOptions {
    let mut o = CacheOptions::new(endpoint);
    o.min_backoff = Duration::from_millis(20);
    o.max_backoff = Duration::from_millis(200);
    o
}

/// The server's current revision, from a fresh write-free read (a Watch's first progress is
/// too slow, so a throwaway API create/delete is used instead and its revision returned).
async fn server_revision(c: &mut Client) -> u64 {
    let api = create_api(c, "rev-probe", ProtocolType::Http).await;
    c.delete_api(DeleteApiRequest {
        api_id: api.api_id,
        ..Default::default()
    })
    .await
    .expect("delete probe")
    .into_inner()
    .revision
}

/// Asserts the cache's replica equals the server's mappings and domains, and resolves alike.
pub(crate) async fn assert_converged(cache: &MappingCache, c: &mut Client) {
    let rev = server_revision(c).await;
    assert!(
        cache.wait_for_revision(rev, Duration::from_secs(20)).await,
        "cache did not reach revision {rev}: {:?}",
        cache.status()
    );
    let replica = cache.replica();
    let domains: Vec<String> = c
        .get_domain_names(GetDomainNamesRequest {
            max_results: 1000,
            ..Default::default()
        })
        .await
        .expect("domains")
        .into_inner()
        .items
        .into_iter()
        .map(|d| d.domain_name)
        .collect();
    assert_eq!(replica.domain_names(), domains);
    for d in &domains {
        let server = all_mappings(c, d).await;
        assert_eq!(replica.mappings_of(d), server, "mappings of {d}");
        for m in &server {
            let path = format!("/{}/x", m.api_mapping_key);
            let local = cache.resolve(d, &path).expect("local resolve");
            let remote = c
                .resolve_route(ResolveRouteRequest {
                    host: d.clone(),
                    path: path.clone(),
                    ..Default::default()
                })
                .await
                .expect("ResolveRoute")
                .into_inner();
            assert_eq!(
                Some(local.mapping),
                remote.api_mapping,
                "{d}{path} resolves alike"
            );
            assert_eq!(local.remaining_path, remote.remaining_path);
        }
    }
}

pub(crate) async fn populate(c: &mut Client, domain: &str, n: usize) -> Api {
    let api = api_with_stage(c, ProtocolType::Http).await;
    create_domain(c, domain).await;
    for i in 0..n {
        create_mapping(c, domain, &format!("k{i}"), &api.api_id, "test").await;
    }
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_snapshots_follows_and_resolves_locally() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = populate(&mut c, "api.example.com", 5).await;
    let cache = MappingCache::start(options(s.endpoint()));
    assert!(cache.wait_in_sync(Duration::from_secs(10)).await);
    assert_converged(&cache, &mut c).await;
    // Live changes, including a cascade.
    create_domain(&mut c, "other.example.com").await;
    create_mapping(&mut c, "other.example.com", "", &api.api_id, "test").await;
    assert_converged(&cache, &mut c).await;
    let r = cache
        .resolve("OTHER.example.com:8443", "/a/b")
        .expect("root");
    assert_eq!(r.remaining_path, "/a/b");
    assert_eq!(r.api.expect("api").api_id, api.api_id);
    c.delete_domain_name(DeleteDomainNameRequest {
        domain_name: "api.example.com".into(),
        ..Default::default()
    })
    .await
    .expect("delete domain");
    assert_converged(&cache, &mut c).await;
    assert!(cache.resolve("api.example.com", "/k1").is_err());
    assert_eq!(cache.status().resnapshots, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_resumes_after_a_server_restart() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = populate(&mut c, "api.example.com", 3).await;
    let proxy = Proxy::start(s.addr).await;
    let cache = MappingCache::start(options(proxy.endpoint()));
    assert_converged(&cache, &mut c).await;
    let before = cache.status();

    proxy.cut(None);
    let s = s.restart().await;
    let mut c = s.client().await;
    // Changes made while the cache is disconnected.
    create_mapping(&mut c, "api.example.com", "late", &api.api_id, "test").await;
    proxy.cut(Some(s.addr));
    assert_converged(&cache, &mut c).await;
    let after = cache.status();
    assert_eq!(after.store_id, before.store_id);
    assert_eq!(
        after.resnapshots, 0,
        "a restart resumes, it does not re-snapshot"
    );
    assert!(after.reconnects >= 1);
    assert!(cache.resolve("api.example.com", "/late").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_resnapshots_after_compaction_past_its_revision() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start_with(Config {
        data_dir: tmp.path().join("data"),
        watch_history: 10,
        ..Config::default()
    })
    .await;
    let mut c = s.client().await;
    let api = populate(&mut c, "api.example.com", 3).await;
    let proxy = Proxy::start(s.addr).await;
    let cache = MappingCache::start(options(proxy.endpoint()));
    assert_converged(&cache, &mut c).await;
    let seen = cache.status().revision;

    proxy.cut(None);
    for i in 0..60 {
        create_mapping(
            &mut c,
            "api.example.com",
            &format!("n{i}"),
            &api.api_id,
            "test",
        )
        .await;
    }
    // Wait (bounded) until the log no longer holds the cache's next revision.
    let mut feed = s.feed_client(None).await;
    let mut compacted = false;
    for _ in 0..200 {
        match watch(
            &mut feed,
            WatchRequest {
                start_revision: seen + 1,
                ..Default::default()
            },
        )
        .await
        {
            Err(e) if e.code() == tonic::Code::OutOfRange => {
                compacted = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    assert!(compacted, "the log was not compacted past {seen}");
    proxy.cut(Some(s.addr));
    wait_status(&cache, |st| st.in_sync && st.resnapshots >= 1).await;
    assert_converged(&cache, &mut c).await;
    assert!(cache.resolve("api.example.com", "/n59").is_ok());
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_resnapshots_when_the_data_dir_is_replaced() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    populate(&mut c, "old.example.com", 3).await;
    let proxy = Proxy::start(s.addr).await;
    let cache = MappingCache::start(options(proxy.endpoint()));
    assert_converged(&cache, &mut c).await;
    let old_store = cache.status().store_id;

    proxy.cut(None);
    let s = s.restart_fresh().await;
    let mut c = s.client().await;
    populate(&mut c, "new.example.com", 2).await;
    proxy.cut(Some(s.addr));
    wait_status(&cache, |st| st.in_sync && st.store_id != old_store).await;
    assert_converged(&cache, &mut c).await;
    let st = cache.status();
    assert_ne!(st.store_id, old_store);
    assert!(st.resnapshots >= 1);
    assert!(cache.resolve("old.example.com", "/k0").is_err());
    assert!(cache.resolve("new.example.com", "/k1").is_ok());
}

/// SPEC.md 8.3: a file-level copy of the data dir, restored later, keeps its `store_id`; the
/// cache's resume carries the history hash it holds, the restored store's differs, so the
/// cache takes a fresh snapshot instead of keeping records that no longer exist.
#[tokio::test]
async fn cache_resnapshots_when_a_restored_copy_replaces_the_data_dir() {
    let backup = tempfile::tempdir().expect("tempdir");
    let backup_dir = backup.path().join("copy");
    let s = TestServer::start().await;
    let mut c = s.client().await;
    populate(&mut c, "old.example.com", 3).await;
    let s = s.restart_after(|d| copy_dir(d, &backup_dir)).await;
    let mut c = s.client().await;
    populate(&mut c, "later.example.com", 3).await;
    let proxy = Proxy::start(s.addr).await;
    let cache = MappingCache::start(options(proxy.endpoint()));
    assert_converged(&cache, &mut c).await;
    let before = cache.status();

    // The copy goes back in place, and the restored store moves on past where the cache was,
    // with other writes: same store_id, a revision the cache could resume from.
    proxy.cut(None);
    let s = s
        .restart_after(|d| {
            std::fs::remove_dir_all(d).expect("remove data dir");
            copy_dir(&backup_dir, d);
        })
        .await;
    let mut c = s.client().await;
    populate(&mut c, "other.example.com", 4).await;
    assert!(server_revision(&mut c).await > before.revision);
    proxy.cut(Some(s.addr));
    wait_status(&cache, |st| {
        st.resnapshots > before.resnapshots && st.in_sync
    })
    .await;
    assert_converged(&cache, &mut c).await;
    assert_eq!(
        cache.status().store_id,
        before.store_id,
        "a copy keeps its store_id"
    );
    assert!(cache.resolve("later.example.com", "/k1").is_err());
    assert!(cache.resolve("old.example.com", "/k1").is_ok());
    assert!(cache.resolve("other.example.com", "/k1").is_ok());
}

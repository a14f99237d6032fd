//! Connection bounds (SPEC.md 8.7): silent sockets cost little and are closed after the
//! first-request timeout, the connection limit holds, and the accept loop backs off when the
//! process is out of file descriptors.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::common::*;
use crate::pki::*;

/// Raises this process's soft open-file limit to at least `n` (up to the hard limit).
fn raise_nofile(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < n as libc::rlim_t {
            lim.rlim_cur = (n as libc::rlim_t).min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// `n` TCP connections to `addr` that never send a byte.
async fn silent(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(TcpStream::connect(addr).await.expect("connect"));
    }
    out
}

/// A health check on a fresh connection, bounded by 10 s.
async fn health(addr: SocketAddr) -> Result<i32, String> {
    let call = async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let mut c = tonic_health::pb::health_client::HealthClient::new(ch);
        c.check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .map(|r| r.into_inner().status)
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap_or_else(|_| Err("no answer within 10 s".into()))
}

/// Whether the server closed `s` (EOF or reset) within 10 s.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn many_silent_sockets_do_not_keep_a_health_check_from_answering() {
    raise_nofile(4096);
    let s = TestServer::start_with_tokens().await;
    let sockets = silent(s.addr, 500).await;
    assert_eq!(health(s.addr).await, Ok(1), "SERVING");
    // And a real request with a token still works.
    let mut c = s.client_with("admin-a").await;
    create_api(
        &mut c,
        "among-silent-sockets",
        mapreg::pb::ProtocolType::Http,
    )
    .await;
    drop(sockets);
    s.stop().await;
}

#[tokio::test]
async fn connections_without_a_request_are_closed_after_the_timeout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = token_config(&tmp.path().join("data"));
    config.first_request_timeout_ms = 300;
    let s = TestServer::start_with(config).await;
    let mut quiet = TcpStream::connect(s.addr).await.expect("connect");
    assert!(
        closed_by_server(&mut quiet).await,
        "a silent socket is closed"
    );

    // A connection that made a request stays open past the timeout: the client's second
    // request, well after it, goes over the same connection (it connected once).
    let connects = Arc::new(AtomicUsize::new(0));
    let counter = connects.clone();
    let addr = s.addr;
    let connector = tower::service_fn(move |_: http::Uri| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            TcpStream::connect(addr)
                .await
                .map(hyper_util::rt::TokioIo::new)
        }
    });
    let ch = tonic::transport::Endpoint::from_shared(s.endpoint())
        .expect("endpoint")
        .connect_with_connector(connector)
        .await
        .expect("connect");
    let mut c = mapreg::pb::registry_client::RegistryClient::with_interceptor(
        ch,
        Bearer(Some("admin-a".into())),
    );
    create_api(&mut c, "first", mapreg::pb::ProtocolType::Http).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    create_api(&mut c, "second", mapreg::pb::ProtocolType::Http).await;
    assert_eq!(
        connects.load(Ordering::SeqCst),
        1,
        "one connection served both"
    );
    s.stop().await;

    // The same for a TLS server: a socket that never starts its handshake.
    let ca = Ca::new(tmp.path(), "ca");
    let cert = ca.server("server");
    let mut config = token_config(&tmp.path().join("data-tls"));
    config.first_request_timeout_ms = 300;
    config.tls_cert = Some(cert.cert);
    config.tls_key = Some(cert.key);
    let s = ReloadableServer::start(config).await;
    let mut quiet = TcpStream::connect(s.addr).await.expect("connect");
    assert!(
        closed_by_server(&mut quiet).await,
        "a silent TLS socket is closed"
    );
    let mut c = https_client(s.addr, &tls_options(&ca.cert, None), Some("admin-a"))
        .await
        .expect("connect");
    create_api(&mut c, "tls", mapreg::pb::ProtocolType::Http).await;
    s.stop().await;
}

#[tokio::test]
async fn the_connection_limit_holds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = token_config(&tmp.path().join("data"));
    config.max_connections = 20;
    config.first_request_timeout_ms = 120_000;
    let s = TestServer::start_with(config).await;
    let mut held = silent(s.addr, 20).await;
    // Over the limit: accepted and closed at once.
    let mut extra = TcpStream::connect(s.addr).await.expect("connect");
    assert!(
        closed_by_server(&mut extra).await,
        "the 21st connection is closed"
    );
    assert!(health(s.addr).await.is_err(), "no room for a health check");
    // One ends: room for one more.
    drop(held.pop());
    let mut answered = None;
    for _ in 0..50 {
        if let Ok(status) = health(s.addr).await {
            answered = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answered, Some(1), "a freed slot serves a health check");
    drop(held);
    s.stop().await;
}

/// CPU seconds (user + system) a process used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

/// The real binary with 64 file descriptors: past them accept fails with EMFILE; the loop
/// must wait instead of spinning, and serve again once descriptors are free.
#[tokio::test]
async fn accept_backs_off_when_out_of_file_descriptors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let bin = env!("CARGO_BIN_EXE_mapreg");
    let data = tmp.path().join("data");
    let mut child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec '{bin}' serve --listen {port} --data-dir '{}' \
             --first-request-timeout-ms 120000",
            data.display()
        ))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let pid = child.id().expect("pid");
    let mut up = false;
    for _ in 0..1000 {
        if health(port).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(up, "server up within 10 s");
    // More connections than descriptors: the kernel queues them, the server cannot accept.
    let sockets = silent(port, 100).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_seconds(pid) - before;
    // A spinning accept loop burns a whole core (3 s here); backing off costs next to nothing.
    assert!(
        used < 1.0,
        "the server used {used:.2} s of CPU in 3 s while out of descriptors"
    );
    drop(sockets);
    let mut answered = false;
    for _ in 0..100 {
        if health(port).await == Ok(1) {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "serves again once descriptors are free");
    let _ = child.kill().await;
}

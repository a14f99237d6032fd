//! `silent`: durable writes and health checks while N connections are open that never send a
//! byte (SPEC.md 8.7). Each silent socket is reopened as soon as the server closes it (after
//! its first-request timeout, 10 s by default), as an attacker would, so N stay open for the
//! whole measurement. The same load runs first with no silent connection, for comparison.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mapreg::pb::registry_client::RegistryClient;
use tokio::io::AsyncReadExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::fixture::Fixture;
use crate::harness::{Mapreg, Opts, Row, gathered};

/// Options of the `silent` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct SilentArgs {
    /// Silent connections held open.
    #[arg(long, default_value_t = 3000)]
    pub connections: usize,
    /// Seconds each phase (without, then with the silent connections) measures.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Concurrent writers (one HTTP/2 connection each).
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
}

impl Default for SilentArgs {
    fn default() -> Self {
        SilentArgs {
            connections: 3000,
            seconds: 15,
            writers: 16,
        }
    }
}

/// Raises the soft open-file limit to `want` (at most the hard limit); returns the new one.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < want as libc::rlim_t {
            lim.rlim_cur = (want as libc::rlim_t).min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    let cur = lim.rlim_cur as u64;
    cur
}

/// Keeps one silent socket to `addr` open until `until`, reconnecting whenever the server
/// closes it; counts the reconnects.
async fn hold_silent(addr: SocketAddr, until: Instant, reopened: Arc<AtomicU64>) {
    let mut buf = [0u8; 16];
    while Instant::now() < until {
        let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(_) => {
                reopened.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => return,
        }
    }
}

/// One phase: `writers` writers and one health checker for `seconds`. `prefix` starts the
/// mapping keys written (a valid, phase-unique key prefix); `label` names the rows.
async fn phase(
    m: &Arc<Mapreg>,
    fx: &Arc<Fixture>,
    args: &SilentArgs,
    prefix: &str,
    label: &str,
) -> Result<(Row, Row)> {
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let mut writers = Vec::new();
    for w in 0..args.writers {
        let ch = m.channel().await?;
        let (m, fx, prefix) = (m.clone(), fx.clone(), prefix.to_string());
        writers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < until {
                let t = Instant::now();
                RegistryClient::new(ch.clone())
                    .create_api_mapping(m.req(fx.mapping(format!("{prefix}{w}-{i}"))))
                    .await?;
                lat.push(t.elapsed());
                i += 1;
            }
            anyhow::Ok(lat)
        }));
    }
    let health_ch = m.channel().await?;
    let health = tokio::spawn(async move {
        let mut lat = Vec::new();
        while Instant::now() < until {
            let t = Instant::now();
            HealthClient::new(health_ch.clone())
                .check(HealthCheckRequest::default())
                .await?;
            lat.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::Ok(lat)
    });
    let started = Instant::now();
    let writes = gathered(writers).await?;
    let wall = started.elapsed();
    let checks = health.await??;
    let checks_wall = started.elapsed();
    Ok((
        Row::latencies(
            "silent",
            format!("CreateApiMapping (durable), {label}"),
            "mapreg",
            args.writers,
            writes,
            wall,
        ),
        Row::latencies(
            "silent",
            format!("Health/Check every 10 ms, {label}"),
            "mapreg",
            1,
            checks,
            checks_wall,
        ),
    ))
}

/// `silent`: see the module documentation.
pub async fn silent(opts: &Opts, args: &SilentArgs) -> Result<Vec<Row>> {
    // The bench holds the silent sockets, and a child server inherits this limit.
    let nofile = raise_nofile(2 * args.connections as u64 + 1024);
    let m = Arc::new(Mapreg::start(opts, false).await?);
    let ch = m.channel().await?;
    let fx = Arc::new(Fixture::create(&m, &ch, "silent").await?);
    let addr: SocketAddr = m
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .context("silent needs an http://host:port endpoint")?;

    let (quiet_writes, quiet_health) = phase(&m, &fx, args, "q", "no silent connections").await?;

    let reopened = Arc::new(AtomicU64::new(0));
    let hold_until = Instant::now() + Duration::from_secs(args.seconds + 30);
    let mut holders = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        holders.push(tokio::spawn(hold_silent(
            addr,
            hold_until,
            reopened.clone(),
        )));
    }
    // Let every socket connect (bounded).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let label = format!("{} silent connections", args.connections);
    let before = m.cpu_secs();
    let (busy_writes, busy_health) = phase(&m, &fx, args, "s", &label).await?;
    let after = m.cpu_secs();
    let rss = m.rss_kib();
    for h in &holders {
        h.abort();
    }
    let busy_writes = busy_writes
        .throughput_vs(&quiet_writes)
        .with("silent_reopened", reopened.load(Ordering::Relaxed))
        .with("nofile_limit", nofile)
        .with_cpu("server_cpu_us_per_op", before, after);
    let busy_writes = match rss {
        Some((now, _)) => busy_writes.with("server_rss_kib", now),
        None => busy_writes,
    };
    let busy_health = busy_health.p99_vs(&quiet_health);
    if let (Ok(fx), Ok(m)) = (Arc::try_unwrap(fx), Arc::try_unwrap(m)) {
        fx.remove(&m, &ch).await?;
    }
    Ok(vec![quiet_writes, quiet_health, busy_writes, busy_health])
}

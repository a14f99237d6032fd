//! `mapreg-bench`: measures a release build of mapreg over real gRPC on loopback.
//!
//! Every scenario starts its own server as a child process (this same binary, hidden `server`
//! subcommand) on 127.0.0.1 with a temporary data dir, so the server's memory can be read from
//! `/proc`, and removes it afterwards. Every loop is bounded in count and time.
//!
//! ```text
//! cargo run --release --bin mapreg-bench -- unary --clients 1,16,64 --ops 20000 --json
//! cargo run --release --bin mapreg-bench -- fanout --watchers 1000 --rate 200 --seconds 10
//! cargo run --release --bin mapreg-bench -- idle --watchers 10000
//! cargo run --release --bin mapreg-bench -- snapshot --mappings 100000
//! cargo run --release --bin mapreg-bench -- resolve --clients 1 --ops 5000
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use mapreg::pb::change_feed_client::ChangeFeedClient;
use mapreg::pb::registry_client::RegistryClient;
use mapreg::pb::watch_response::Kind;
use mapreg::pb::*;
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};

#[derive(Parser)]
#[command(
    name = "mapreg-bench",
    about = "Benchmarks of mapreg over loopback gRPC"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Unary RPCs at each client count: a bare tonic baseline (grpc.health.v1 Check on a
    /// server with nothing else), GetApiMapping, ResolveRoute and CreateApiMapping (durable),
    /// with throughput, p50/p99 and the ratio to the baseline; flushes per write.
    Unary {
        /// Concurrent clients, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        clients: Vec<usize>,
        /// Requests per scenario and client count (split between the clients).
        #[arg(long, default_value_t = 20000)]
        ops: usize,
        /// Print the results as JSON too.
        #[arg(long)]
        json: bool,
    },
    /// N watchers, writes at a fixed rate: write sent -> delivered to every watcher.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        watchers: usize,
        /// Writes per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// N idle watchers: the server's resident memory per watcher.
    Idle {
        #[arg(long, default_value_t = 10000)]
        watchers: usize,
    },
    /// Snapshot of N mappings: time to snapshot_complete and the server's peak RSS meanwhile.
    Snapshot {
        #[arg(long, default_value_t = 100_000)]
        mappings: usize,
    },
    /// ResolveRoute over gRPC, and the same resolution in a local MappingCache (ns per call).
    Resolve {
        /// Concurrent clients for the RPC.
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// RPCs per client.
        #[arg(long, default_value_t = 5000)]
        ops: usize,
        /// Local resolutions.
        #[arg(long, default_value_t = 1_000_000)]
        local: usize,
    },
    /// (internal) Runs a dev-mode server: the child process of every scenario.
    #[command(hide = true)]
    Server {
        data_dir: PathBuf,
        listen: SocketAddr,
    },
    /// (internal) Runs a bare tonic server with only grpc.health.v1: the baseline.
    #[command(hide = true)]
    Echo { listen: SocketAddr },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.scenario {
            Scenario::Server { data_dir, listen } => {
                tracing_subscriber::fmt()
                    .with_env_filter(
                        tracing_subscriber::EnvFilter::try_from_default_env()
                            .unwrap_or_else(|_| "warn".into()),
                    )
                    .with_ansi(false)
                    .with_writer(std::io::stderr)
                    .init();
                let config = mapreg::config::Config {
                    data_dir,
                    listen,
                    ..Default::default()
                };
                let listener = tokio::net::TcpListener::bind(listen).await?;
                let stop = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                mapreg::server::run(config, listener, stop).await?;
                Ok(())
            }
            Scenario::Echo { listen } => {
                let (health, service) = tonic_health::server::health_reporter();
                health
                    .set_service_status("", tonic_health::ServingStatus::Serving)
                    .await;
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_shutdown(listen, async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await?;
                Ok(())
            }
            Scenario::Unary { clients, ops, json } => unary(&clients, ops, json).await,
            Scenario::Fanout {
                watchers,
                rate,
                seconds,
            } => fanout(watchers, rate, seconds).await,
            Scenario::Idle { watchers } => idle(watchers).await,
            Scenario::Snapshot { mappings } => snapshot(mappings).await,
            Scenario::Resolve {
                clients,
                ops,
                local,
            } => resolve_bench(clients, ops, local).await,
        }
    })
}

/// A server child process on a free loopback port and a temp data dir; killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Server {
    async fn start() -> Result<Server> {
        Server::start_kind("server").await
    }

    /// The baseline: a bare tonic server with only the health service.
    async fn start_echo() -> Result<Server> {
        Server::start_kind("echo").await
    }

    async fn start_kind(kind: &str) -> Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let dir = std::env::temp_dir().join(format!(
            "mapreg-bench-{}-{}",
            std::process::id(),
            port.port()
        ));
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.arg(kind);
        if kind == "server" {
            cmd.arg(&dir);
        }
        let child = cmd
            .arg(port.to_string())
            .env("RUST_LOG", "warn,mapreg::server=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start the server child")?;
        let server = Server {
            child,
            addr: port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(server.addr).await.is_err() {
            if Instant::now() > deadline {
                bail!("server did not listen within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    async fn channel(&self) -> Result<Channel> {
        Ok(Endpoint::from_shared(format!("http://{}", self.addr))?
            .connect()
            .await?)
    }

    /// (current RSS, peak RSS) of the server in KiB, from /proc.
    fn rss_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Stops the server with SIGINT and returns its writer counters (writes, flushes) from
    /// its last log line.
    fn stop_for_stats(mut self) -> Option<(u64, u64)> {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        // Drop ANSI colour codes, whatever the logger decided.
        let mut plain = String::with_capacity(err.len());
        let mut chars = err.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        let line = plain.lines().rev().find(|l| l.contains("mapreg stopped"))?;
        let field = |name: &str| -> Option<u64> {
            let at = line.find(&format!("{name}="))? + name.len() + 1;
            line[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        Some((field("writes")?, field("flushes")?))
    }

    /// Resets the peak RSS counter (Linux `clear_refs` 5).
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    println!(
        "{name:<28} n={:<7} {:>9.0} ops/s  p50={:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms",
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64(),
        pct(&lat, 0.50).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

/// An API with stage `test` and a domain; returns (api_id, domain).
async fn fixture(ch: &Channel, domain: &str) -> Result<String> {
    let mut c = RegistryClient::new(ch.clone());
    let api = c
        .create_api(CreateApiRequest {
            name: "bench".into(),
            protocol_type: ProtocolType::Http as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    c.create_stage(CreateStageRequest {
        api_id: api.api_id.clone(),
        stage_name: "test".into(),
        ..Default::default()
    })
    .await?;
    c.create_domain_name(CreateDomainNameRequest {
        domain_name: domain.into(),
        ..Default::default()
    })
    .await?;
    Ok(api.api_id)
}

fn mapping(domain: &str, key: String, api_id: &str) -> CreateApiMappingRequest {
    CreateApiMappingRequest {
        domain_name: domain.into(),
        api_mapping_key: key,
        api_id: api_id.into(),
        stage: "test".into(),
    }
}

/// One measured row of the unary table.
struct Row {
    scenario: &'static str,
    clients: usize,
    ops_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    baseline_ratio: f64,
    flushes_per_write: Option<f64>,
}

/// Runs `per` calls of `call` on each of `clients` connections at once; returns the
/// latencies and the wall time.
async fn drive<F, Fut>(
    server: &Server,
    clients: usize,
    per: usize,
    call: F,
) -> Result<(Vec<Duration>, Duration)>
where
    F: Fn(Channel, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let mut chans = Vec::new();
    for _ in 0..clients {
        chans.push(server.channel().await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (w, ch) in chans.into_iter().enumerate() {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let t = Instant::now();
                call(ch.clone(), w, i).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    Ok((lat, started.elapsed()))
}

fn row(
    scenario: &'static str,
    clients: usize,
    mut lat: Vec<Duration>,
    wall: Duration,
    baseline: f64,
) -> Row {
    lat.sort();
    let ops_per_s = lat.len() as f64 / wall.as_secs_f64();
    Row {
        scenario,
        clients,
        ops_per_s,
        p50_ms: pct(&lat, 0.50).as_secs_f64() * 1e3,
        p99_ms: pct(&lat, 0.99).as_secs_f64() * 1e3,
        baseline_ratio: if baseline > 0.0 {
            ops_per_s / baseline
        } else {
            1.0
        },
        flushes_per_write: None,
    }
}

async fn unary(client_counts: &[usize], ops: usize, json: bool) -> Result<()> {
    let mut rows = Vec::new();
    for &clients in client_counts {
        let clients = clients.max(1);
        let per = ops.div_ceil(clients);

        let echo = Server::start_echo().await?;
        let (lat, wall) = drive(&echo, clients, per, |ch, _, _| async move {
            tonic_health::pb::health_client::HealthClient::new(ch)
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await?;
            Ok(())
        })
        .await?;
        drop(echo);
        let base = row("baseline (bare tonic)", clients, lat, wall, 0.0);
        let baseline = base.ops_per_s;
        rows.push(base);

        let server = Server::start().await?;
        let ch = server.channel().await?;
        const DOMAIN: &str = "bench.example.com";
        let domain = DOMAIN;
        let api_id = Arc::new(fixture(&ch, domain).await?);
        let ids = Arc::new(Mutex::new(Vec::new()));
        let (lat, wall) = {
            let (api_id, ids) = (api_id.clone(), ids.clone());
            drive(&server, clients, per, move |ch, w, i| {
                let (api_id, ids) = (api_id.clone(), ids.clone());
                async move {
                    let m = RegistryClient::new(ch)
                        .create_api_mapping(mapping(domain, format!("k{w}-{i}"), &api_id))
                        .await?
                        .into_inner();
                    ids.lock().await.push(m.api_mapping_id);
                    Ok(())
                }
            })
            .await?
        };
        let create = row("CreateApiMapping (durable)", clients, lat, wall, baseline);

        let ids = Arc::new(ids.lock().await.clone());
        let (lat, wall) = drive(&server, clients, per, move |ch, w, i| {
            let ids = ids.clone();
            async move {
                let id = ids[(w * 7919 + i * 104_729) % ids.len()].clone();
                RegistryClient::new(ch)
                    .get_api_mapping(GetApiMappingRequest {
                        domain_name: domain.into(),
                        api_mapping_id: id,
                    })
                    .await?;
                Ok(())
            }
        })
        .await?;
        rows.push(row("GetApiMapping", clients, lat, wall, baseline));

        let (lat, wall) = drive(&server, clients, per, |ch, w, i| async move {
            RegistryClient::new(ch)
                .resolve_route(ResolveRouteRequest {
                    host: DOMAIN.into(),
                    path: format!("/k{w}-{i}/items/1"),
                })
                .await?;
            Ok(())
        })
        .await?;
        rows.push(row("ResolveRoute", clients, lat, wall, baseline));

        let mut create = create;
        if let Some((writes, flushes)) = server.stop_for_stats()
            && writes > 0
        {
            create.flushes_per_write = Some(flushes as f64 / writes as f64);
        }
        rows.push(create);
    }
    println!(
        "{:<28} {:>7} {:>10} {:>9} {:>9} {:>8} {:>13}",
        "scenario", "clients", "ops/s", "p50 ms", "p99 ms", "x base", "flushes/write"
    );
    for r in &rows {
        println!(
            "{:<28} {:>7} {:>10.0} {:>9.3} {:>9.3} {:>8.2} {:>13}",
            r.scenario,
            r.clients,
            r.ops_per_s,
            r.p50_ms,
            r.p99_ms,
            r.baseline_ratio,
            r.flushes_per_write
                .map(|f| format!("{f:.3}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "scenario": r.scenario,
                    "clients": r.clients,
                    "ops_per_s": r.ops_per_s,
                    "p50_ms": r.p50_ms,
                    "p99_ms": r.p99_ms,
                    "baseline_ratio": r.baseline_ratio,
                    "flushes_per_write": r.flushes_per_write,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
    }
    Ok(())
}

/// Opens `n` watchers from `start_revision` over `n / 100` connections; each sends the
/// receive time of every change_set's revision to `seen`.
async fn open_watchers(
    server: &Server,
    n: usize,
    start_revision: u64,
    seen: Option<tokio::sync::mpsc::UnboundedSender<(u64, Instant)>>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut handles = Vec::new();
    let mut ch = server.channel().await?;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(n.max(1));
    for i in 0..n {
        if i % 100 == 0 && i > 0 {
            ch = server.channel().await?;
        }
        let mut c = ChangeFeedClient::new(ch.clone());
        let seen = seen.clone();
        let ready = ready_tx.clone();
        handles.push(tokio::spawn(async move {
            let Ok(resp) = c
                .watch(WatchRequest {
                    start_revision,
                    progress_interval_seconds: 3600,
                    ..Default::default()
                })
                .await
            else {
                return;
            };
            let _ = ready.send(()).await;
            let mut stream = resp.into_inner();
            while let Ok(Some(m)) = stream.message().await {
                if let (Some(Kind::ChangeSet(_)), Some(seen)) = (&m.kind, &seen) {
                    let _ = seen.send((m.revision, Instant::now()));
                }
            }
        }));
    }
    drop(ready_tx);
    let deadline = Instant::now() + Duration::from_secs(120);
    for _ in 0..n {
        match tokio::time::timeout_at(deadline.into(), ready_rx.recv()).await {
            Ok(Some(())) => {}
            _ => bail!("watchers did not all start within 120 s"),
        }
    }
    Ok(handles)
}

async fn fanout(watchers: usize, rate: u64, seconds: u64) -> Result<()> {
    let server = Server::start().await?;
    let ch = server.channel().await?;
    let domain = "fanout.example.com";
    let api_id = fixture(&ch, domain).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handles = open_watchers(&server, watchers, 4, Some(tx)).await?;
    println!("fanout: {watchers} watchers, {rate} writes/s for {seconds} s");

    let writes = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // Writes are issued on the clock, not one after another, so the rate holds even when a
    // write takes longer than the interval.
    let mut inflight = Vec::with_capacity(writes);
    for i in 0..writes {
        ticker.tick().await;
        let mut c = RegistryClient::new(ch.clone());
        let api_id = api_id.clone();
        inflight.push(tokio::spawn(async move {
            let t = Instant::now();
            let m = c
                .create_api_mapping(mapping(domain, format!("f{i}"), &api_id))
                .await?
                .into_inner();
            anyhow::Ok((m.create_revision, t, t.elapsed()))
        }));
    }
    let mut sent: std::collections::HashMap<u64, Instant> = Default::default();
    let mut rpc_lat = Vec::new();
    for w in inflight {
        let (rev, t, lat) = w.await??;
        sent.insert(rev, t);
        rpc_lat.push(lat);
    }
    let wall = started.elapsed();
    // Collect deliveries: each revision must reach every watcher.
    let mut delivered: std::collections::HashMap<u64, (usize, Instant)> = Default::default();
    let expected = writes * watchers;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = 0;
    while got < expected {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some((rev, at))) => {
                let e = delivered.entry(rev).or_insert((0, at));
                e.0 += 1;
                e.1 = e.1.max(at);
                got += 1;
            }
            _ => break,
        }
    }
    for h in handles {
        h.abort();
    }
    let complete = delivered.values().filter(|(n, _)| *n == watchers).count();
    println!(
        "delivered {got}/{expected} messages; {complete}/{writes} revisions reached every watcher"
    );
    report("write RPC (durable)", rpc_lat, wall);
    let lat: Vec<Duration> = sent
        .iter()
        .filter_map(|(rev, t)| delivered.get(rev).map(|(_, at)| at.duration_since(*t)))
        .collect();
    report("write sent -> all watchers", lat, wall);
    Ok(())
}

async fn idle(watchers: usize) -> Result<()> {
    let server = Server::start().await?;
    let ch = server.channel().await?;
    fixture(&ch, "idle.example.com").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (before, _) = server.rss_kib().context("no /proc: RSS is Linux only")?;
    let started = Instant::now();
    let handles = open_watchers(&server, watchers, 4, None).await?;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after, _) = server.rss_kib().context("no /proc")?;
    println!(
        "idle: {watchers} watchers opened in {:.2} s; server RSS {} KiB -> {} KiB: {:.1} KiB per watcher",
        opened.as_secs_f64(),
        before,
        after,
        (after.saturating_sub(before)) as f64 / watchers as f64
    );
    for h in handles {
        h.abort();
    }
    Ok(())
}

async fn snapshot(mappings: usize) -> Result<()> {
    let server = Server::start().await?;
    let ch = server.channel().await?;
    let domain = "snap.example.com";
    let api_id = fixture(&ch, domain).await?;
    println!("snapshot: loading {mappings} mappings with 32 clients...");
    let started = Instant::now();
    let per = mappings.div_ceil(32);
    let mut tasks = Vec::new();
    for w in 0..32 {
        let mut c = RegistryClient::new(server.channel().await?);
        let api_id = api_id.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                if w * per + i >= mappings {
                    break;
                }
                c.create_api_mapping(mapping(domain, format!("s{w}-{i}"), &api_id))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "loaded in {:.1} s ({:.0} writes/s)",
        started.elapsed().as_secs_f64(),
        mappings as f64 / started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.reset_peak();
    let (rss_before, _) = server.rss_kib().context("no /proc")?;
    let mut c = ChangeFeedClient::new(server.channel().await?);
    let started = Instant::now();
    let mut stream = c.watch(WatchRequest::default()).await?.into_inner();
    let (mut resources, mut messages) = (0usize, 0usize);
    loop {
        let Some(m) = tokio::time::timeout(Duration::from_secs(120), stream.message()).await??
        else {
            bail!("stream ended before snapshot_complete");
        };
        messages += 1;
        match m.kind {
            Some(Kind::Snapshot(s)) => resources += s.resources.len(),
            Some(Kind::SnapshotComplete(_)) => break,
            _ => {}
        }
    }
    let took = started.elapsed();
    let (_, peak) = server.rss_kib().context("no /proc")?;
    println!(
        "snapshot of {resources} resources in {messages} messages: snapshot_complete after {:.3} s; \
         server RSS before {rss_before} KiB, peak during {peak} KiB",
        took.as_secs_f64()
    );
    Ok(())
}

/// Paths resolved by the resolve scenario: hits on several key depths, a raw-prefix hit and a
/// root fallback.
const RESOLVE_PATHS: &[&str] = &[
    "/orders/v1/items/123",
    "/orders/v2/items/categories/5",
    "/k42/x",
    "/ordersandmore",
    "/customers/7",
];

async fn resolve_bench(clients: usize, ops: usize, local: usize) -> Result<()> {
    let server = Server::start().await?;
    let ch = server.channel().await?;
    let domain = "resolve.example.com";
    let api_id = fixture(&ch, domain).await?;
    let mut c = RegistryClient::new(ch.clone());
    let mut keys: Vec<String> = [
        "",
        "orders",
        "orders/v1/items",
        "orders/v2/items",
        "orders/v2/items/categories",
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    keys.extend((0..195).map(|i| format!("k{i}")));
    for k in &keys {
        c.create_api_mapping(mapping(domain, k.clone(), &api_id))
            .await?;
    }
    println!(
        "resolve: domain with {} mappings (multi-level: raw prefix matching), {clients} client(s) x {ops} RPCs",
        keys.len()
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut c = RegistryClient::new(server.channel().await?);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(ops);
            for i in 0..ops {
                let t = Instant::now();
                c.resolve_route(ResolveRouteRequest {
                    host: domain.into(),
                    path: RESOLVE_PATHS[i % RESOLVE_PATHS.len()].into(),
                })
                .await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    report("ResolveRoute (RPC)", lat, started.elapsed());

    let cache = mapreg::client::MappingCache::start(mapreg::client::CacheOptions::new(format!(
        "http://{}",
        server.addr
    )));
    if !cache.wait_in_sync(Duration::from_secs(20)).await {
        bail!("cache did not sync within 20 s");
    }
    let started = Instant::now();
    let mut hits = 0usize;
    for i in 0..local {
        if cache
            .resolve(domain, RESOLVE_PATHS[i % RESOLVE_PATHS.len()])
            .is_ok()
        {
            hits += 1;
        }
    }
    let took = started.elapsed();
    println!(
        "MappingCache::resolve (local)  n={local} hits={hits}  {:.0} ns/call",
        took.as_nanos() as f64 / local as f64
    );
    Ok(())
}

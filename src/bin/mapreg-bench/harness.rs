//! The servers a scenario measures, and how results are reported.
//!
//! A scenario measures mapreg ([`Mapreg`]: a child process with a temporary data dir, or an
//! external server given by `--endpoint`) and, in the same run, the bare tonic baseline
//! ([`Child::echo`]). Children listen on 127.0.0.1 only and are killed on drop.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use tonic::Request;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};

/// Options every scenario shares.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Measure this server instead of starting one.
    pub endpoint: Option<String>,
    /// Bearer token for `endpoint`.
    pub token: Option<String>,
    /// Print the rows as JSON after the table.
    pub json: bool,
}

/// What a child process printed on stderr that the bench reads.
#[derive(Default)]
struct Tap {
    /// revision -> wall-clock publish time (ns since the epoch), from the server's
    /// `mapreg::feed::publish` trace events.
    published: HashMap<u64, u64>,
    /// The "mapreg stopped" line, with the writer's counters.
    stopped: Option<String>,
    /// The last lines, for errors.
    tail: Vec<String>,
}

/// A server child process: this binary's hidden `server` (mapreg, dev mode) or `echo`
/// (the baseline) subcommand.
pub struct Child {
    child: std::process::Child,
    addr: SocketAddr,
    /// Removed on drop.
    dir: Option<PathBuf>,
    tap: Arc<Mutex<Tap>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Child {
    /// The bare tonic baseline.
    pub async fn echo() -> Result<Child> {
        Child::start("echo", "warn").await
    }

    async fn start(kind: &str, log: &str) -> Result<Child> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let dir = (kind == "server").then(|| {
            std::env::temp_dir().join(format!(
                "mapreg-bench-{}-{}",
                std::process::id(),
                addr.port()
            ))
        });
        let mut child = Child::spawn(kind, log, addr, dir.as_deref())?;
        // Removed on drop.
        child.dir = dir;
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(child.addr).await.is_err() {
            if Instant::now() > deadline {
                bail!("{kind} child did not listen within 20 s:\n{}", child.tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(child)
    }

    /// A mapreg server child (dev mode) on `data_dir`, which stays in place when the child is
    /// dropped. Returns once the process is spawned: see [`Child::wait_serving`].
    pub fn server_on(data_dir: &Path) -> Result<Child> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        Child::spawn("server", "warn,mapreg::server=info", addr, Some(data_dir))
    }

    fn spawn(kind: &str, log: &str, addr: SocketAddr, dir: Option<&Path>) -> Result<Child> {
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.arg(kind);
        if let Some(dir) = dir {
            cmd.arg(dir);
        }
        let mut child = cmd
            .arg(addr.to_string())
            .env("RUST_LOG", log)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start a server child process")?;
        // Read stderr as it comes, so a chatty child never blocks on a full pipe.
        let tap = Arc::new(Mutex::new(Tap::default()));
        let reader = child.stderr.take().map(|err| {
            let tap = tap.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    let Ok(mut t) = tap.lock() else { break };
                    if line.contains("published") {
                        if let (Some(rev), Some(ns)) =
                            (field(&line, "revision"), field(&line, "unix_ns"))
                        {
                            t.published.insert(rev, ns);
                        }
                        continue;
                    }
                    if line.contains("mapreg stopped") {
                        t.stopped = Some(line.clone());
                    }
                    if t.tail.len() == 20 {
                        t.tail.remove(0);
                    }
                    t.tail.push(line);
                }
            })
        });
        Ok(Child {
            child,
            addr,
            dir: None,
            tap,
            reader,
        })
    }

    /// The last lines the child printed on stderr.
    fn tail(&self) -> String {
        self.tap
            .lock()
            .map(|t| t.tail.join("\n"))
            .unwrap_or_default()
    }

    /// Polls grpc.health.v1 Health/Check (service "") every 10 ms until it answers SERVING;
    /// returns the time since `since`. Fails when the child exits or at `since + limit`.
    pub async fn wait_serving(&mut self, since: Instant, limit: Duration) -> Result<Duration> {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))?
            .connect_timeout(Duration::from_secs(1));
        let deadline = since + limit;
        loop {
            let attempt = async {
                let ch = endpoint.connect().await?;
                let r = HealthClient::new(ch)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await?
                    .into_inner();
                anyhow::Ok(r.status)
            };
            // A connection the child has not accepted yet (it listens before its store is
            // open) is answered as soon as it serves; a stale one is dropped after 2 s.
            let last = match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(s)) if s == ServingStatus::Serving as i32 => return Ok(since.elapsed()),
                Ok(Ok(s)) => format!("status {s}"),
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => "no answer within 2 s".into(),
            };
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited ({status}) before serving:\n{}",
                    self.tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not answer SERVING within {limit:?} (last: {last}):\n{}",
                    self.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the child with SIGTERM and waits up to `limit` for it to exit; returns how long
    /// it took. Fails unless it exits with success (a graceful stop).
    pub async fn terminate(mut self, limit: Duration) -> Result<Duration> {
        let started = Instant::now();
        let id = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &id])
            .status()
            .context("cannot run kill")?;
        if !sent.success() {
            bail!("kill -TERM {id} failed: {sent}");
        }
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!(
                        "the server exited with {status} on SIGTERM:\n{}",
                        self.tail()
                    );
                }
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                bail!(
                    "the server did not exit within {limit:?} of SIGTERM:\n{}",
                    self.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A new HTTP/2 connection to the child.
    pub async fn channel(&self) -> Result<Channel> {
        connect(&format!("http://{}", self.addr)).await
    }

    /// (current RSS, peak RSS) in KiB, from /proc (Linux).
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
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

    /// CPU time (user + system) the child has used so far.
    pub fn cpu_secs(&self) -> Option<f64> {
        cpu_secs(&self.child.id().to_string())
    }

    /// Resets the peak RSS counter (Linux `clear_refs` 5).
    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// Stops the child with SIGINT, waits for it, and returns the writer's counters
    /// (writes, flushes) from its last log line.
    fn stop_for_stats(mut self) -> Option<(u64, u64)> {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let line = self.tap.lock().ok()?.stopped.clone()?;
        Some((field(&line, "writes")?, field(&line, "flushes")?))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// CPU time (user + system) process `pid` (or `self`) has used so far, from /proc (Linux).
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // utime and stime are the 14th and 15th fields of the line, in clock ticks (USER_HZ, 100
    // on Linux); counting starts after the parenthesised command name, the 2nd field.
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// The number after `name=` in a log line.
fn field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

async fn connect(endpoint: &str) -> Result<Channel> {
    Endpoint::from_shared(endpoint.to_string())?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))
}

/// The mapreg server under test: a child process, or the external one of `--endpoint`.
pub struct Mapreg {
    endpoint: String,
    token: Option<AsciiMetadataValue>,
    child: Option<Child>,
}

impl Mapreg {
    /// Starts a child server (with a fresh data dir), unless `opts.endpoint` names one.
    /// `publish_times`: the child logs each revision's publish time (see [`Mapreg::published`]).
    pub async fn start(opts: &Opts, publish_times: bool) -> Result<Mapreg> {
        let token = match &opts.token {
            Some(t) => Some(
                MetadataValue::try_from(format!("Bearer {t}"))
                    .context("the token is not a valid header value")?,
            ),
            None => None,
        };
        if let Some(endpoint) = &opts.endpoint {
            return Ok(Mapreg {
                endpoint: endpoint.clone(),
                token,
                child: None,
            });
        }
        let log = if publish_times {
            "warn,mapreg::server=info,mapreg::feed::publish=trace"
        } else {
            "warn,mapreg::server=info"
        };
        let child = Child::start("server", log).await?;
        Ok(Mapreg {
            endpoint: format!("http://{}", child.addr),
            token,
            child: Some(child),
        })
    }

    /// Whether the server is a child of this run (so its memory and counters can be read).
    pub fn is_child(&self) -> bool {
        self.child.is_some()
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A new HTTP/2 connection to the server.
    pub async fn channel(&self) -> Result<Channel> {
        connect(&self.endpoint).await
    }

    /// `m` as a request, with the bearer token if one was given.
    pub fn req<T>(&self, m: T) -> Request<T> {
        let mut r = Request::new(m);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        r
    }

    /// The bearer token, if any.
    pub fn token(&self) -> Option<String> {
        self.token
            .as_ref()
            .and_then(|t| t.to_str().ok())
            .and_then(|t| t.strip_prefix("Bearer "))
            .map(str::to_string)
    }

    /// The child's RSS (current, peak) in KiB; `None` for an external server.
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        self.child.as_ref()?.rss_kib()
    }

    /// The child's CPU time so far in seconds; `None` for an external server.
    pub fn cpu_secs(&self) -> Option<f64> {
        self.child.as_ref()?.cpu_secs()
    }

    /// Resets the child's peak RSS.
    pub fn reset_peak(&self) {
        if let Some(c) = &self.child {
            c.reset_peak();
        }
    }

    /// revision -> publish time (ns since the epoch) of every revision the child published,
    /// when started with `publish_times`.
    pub fn published(&self) -> HashMap<u64, u64> {
        self.child
            .as_ref()
            .and_then(|c| c.tap.lock().ok().map(|t| t.published.clone()))
            .unwrap_or_default()
    }

    /// Stops a child server and returns its (writes, flushes) counters.
    pub fn stop_for_stats(self) -> Option<(u64, u64)> {
        self.child?.stop_for_stats()
    }
}

/// Wall-clock time in ns since the epoch: comparable between processes of one machine.
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Every task's samples, in task order; fails as the first task that failed or panicked.
pub async fn gathered<T>(tasks: Vec<tokio::task::JoinHandle<Result<Vec<T>>>>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for t in tasks {
        out.extend(t.await??);
    }
    Ok(out)
}

/// The `p` quantile (0..=1) of sorted samples.
pub fn pct<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One line of a report.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Scenario group: `unary`, `fanout`, ...
    pub group: &'static str,
    /// What was measured.
    pub name: String,
    /// `baseline` (bare tonic) or `mapreg`.
    pub target: &'static str,
    /// Concurrent clients or watchers.
    pub clients: usize,
    /// Samples.
    pub n: usize,
    /// Operations (or messages) per second.
    pub ops_per_s: Option<f64>,
    /// Median latency in ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in ms.
    pub p99_ms: Option<f64>,
    /// This row's figure divided by the baseline's, and which figure (`ops_per_s`, `p99_ms`,
    /// `seconds`, `kib_per_watcher`).
    pub vs_baseline: Option<(f64, &'static str)>,
    /// Scenario-specific figures.
    pub extra: Vec<(&'static str, serde_json::Value)>,
}

impl Row {
    /// A row from latency samples over a wall time.
    pub fn latencies(
        group: &'static str,
        name: impl Into<String>,
        target: &'static str,
        clients: usize,
        mut lat: Vec<Duration>,
        wall: Duration,
    ) -> Row {
        lat.sort();
        Row {
            group,
            name: name.into(),
            target,
            clients,
            n: lat.len(),
            ops_per_s: Some(lat.len() as f64 / wall.as_secs_f64().max(1e-9)),
            p50_ms: Some(pct(&lat, 0.50).as_secs_f64() * 1e3),
            p99_ms: Some(pct(&lat, 0.99).as_secs_f64() * 1e3),
            ..Row::default()
        }
    }

    /// Sets `vs_baseline` to this row's throughput over the baseline's.
    pub fn throughput_vs(mut self, baseline: &Row) -> Row {
        if let (Some(a), Some(b)) = (self.ops_per_s, baseline.ops_per_s)
            && b > 0.0
        {
            self.vs_baseline = Some((a / b, "ops_per_s"));
        }
        self
    }

    /// Sets `vs_baseline` to this row's p99 latency over the baseline's.
    pub fn p99_vs(mut self, baseline: &Row) -> Row {
        if let (Some(a), Some(b)) = (self.p99_ms, baseline.p99_ms)
            && b > 0.0
        {
            self.vs_baseline = Some((a / b, "p99_ms"));
        }
        self
    }

    /// Adds CPU time per operation in µs as `key`, from two [`cpu_secs`] readings around the
    /// measured part (`server_cpu_us_per_op`: the server's; `bench_cpu_us_per_op`: this
    /// process's, the clients').
    pub fn with_cpu(self, key: &'static str, before: Option<f64>, after: Option<f64>) -> Row {
        match (before, after) {
            (Some(b), Some(a)) if self.n > 0 => {
                let us = (a - b) * 1e6 / self.n as f64;
                self.with(key, (us * 100.0).round() / 100.0)
            }
            _ => self,
        }
    }

    /// Adds a scenario-specific figure.
    pub fn with(mut self, key: &'static str, value: impl Into<serde_json::Value>) -> Row {
        self.extra.push((key, value.into()));
        self
    }
}

/// Prints the rows as a table, and as one JSON array if asked.
pub fn print(rows: &[Row], json: bool) {
    println!(
        "{:<40} {:<8} {:>7} {:>8} {:>10} {:>9} {:>9} {:>14}  other",
        "scenario", "target", "clients", "n", "ops/s", "p50 ms", "p99 ms", "vs baseline"
    );
    let opt = |v: Option<f64>, prec: usize| {
        v.map(|v| format!("{v:.prec$}"))
            .unwrap_or_else(|| "-".into())
    };
    for r in rows {
        let vs = r
            .vs_baseline
            .map(|(x, of)| format!("{x:.2}x {}", short(of)))
            .unwrap_or_else(|| "-".into());
        let other: Vec<String> = r
            .extra
            .iter()
            .map(|(k, v)| match v.as_f64() {
                Some(f) if !v.is_u64() && !v.is_i64() => format!("{k}={f:.3}"),
                _ => format!("{k}={v}"),
            })
            .collect();
        println!(
            "{:<40} {:<8} {:>7} {:>8} {:>10} {:>9} {:>9} {:>14}  {}",
            format!("{}: {}", r.group, r.name),
            r.target,
            r.clients,
            r.n,
            opt(r.ops_per_s, 0),
            opt(r.p50_ms, 3),
            opt(r.p99_ms, 3),
            vs,
            other.join(" ")
        );
    }
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut o = serde_json::json!({
                    "group": r.group,
                    "scenario": r.name,
                    "target": r.target,
                    "clients": r.clients,
                    "n": r.n,
                    "ops_per_s": r.ops_per_s,
                    "p50_ms": r.p50_ms,
                    "p99_ms": r.p99_ms,
                    "vs_baseline": r.vs_baseline.map(|(x, _)| x),
                    "vs_baseline_of": r.vs_baseline.map(|(_, of)| of),
                });
                if let Some(map) = o.as_object_mut() {
                    for (k, v) in &r.extra {
                        map.insert((*k).to_string(), v.clone());
                    }
                }
                o
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
    }
}

fn short(of: &str) -> &str {
    match of {
        "ops_per_s" => "thr",
        "p99_ms" => "p99",
        "kib_per_watcher" => "mem",
        "seconds" => "time",
        other => other,
    }
}

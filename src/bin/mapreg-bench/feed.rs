//! Change-feed scenarios: fan-out latency, idle-watcher memory, snapshot time and memory.
//!
//! The baseline of each is the bare tonic server doing the same streaming with nothing else:
//! a broadcast to N subscribers, N idle subscribers, a dump of as many bytes in as many
//! messages as the snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mapreg::pb::change_feed_client::ChangeFeedClient;
use mapreg::pb::registry_client::RegistryClient;
use mapreg::pb::watch_response::Kind;
use mapreg::pb::*;
use prost::Message;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::echo::pb::echo_client::EchoClient;
use crate::echo::pb::{DumpRequest, Payload, SubscribeRequest};
use crate::fixture::Fixture;
use crate::harness::{Child, Mapreg, Opts, Row, cpu_secs, unix_ns};

/// Options of the `fanout` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Watchers.
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// Writes per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Seconds of writes.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Watchers sharing one HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    pub per_connection: usize,
}

impl Default for FanoutArgs {
    fn default() -> Self {
        FanoutArgs {
            watchers: 1000,
            rate: 200,
            seconds: 10,
            per_connection: 100,
        }
    }
}

/// How long watchers may take to receive everything after the last write.
const DRAIN: Duration = Duration::from_secs(60);

/// What one watcher received: (message id, receive time in ns since the epoch).
type Received = Vec<(u64, u64)>;

/// A Subscribe stream of the echo server on `ch`.
async fn subscribe(ch: Channel) -> Result<tonic::Streaming<Payload>> {
    let s = EchoClient::new(ch).subscribe(SubscribeRequest {}).await?;
    Ok(s.into_inner())
}

/// A Watch stream of `m` on `ch` from `start_revision`, with no progress notices in practice.
async fn watch(
    m: &Mapreg,
    ch: Channel,
    start_revision: u64,
) -> Result<tonic::Streaming<WatchResponse>> {
    let request = m.req(WatchRequest {
        start_revision,
        progress_interval_seconds: 3600,
        ..Default::default()
    });
    Ok(ChangeFeedClient::new(ch).watch(request).await?.into_inner())
}

/// Opens `n` streams over connections of `per_connection` streams each. `open` returns once
/// its stream is established; the returned tasks then read until `expected` messages or the
/// shared deadline.
async fn open_streams<O, Fut>(
    n: usize,
    per_connection: usize,
    mut connect: impl AsyncFnMut() -> Result<Channel>,
    open: O,
) -> Result<Vec<JoinHandle<Result<Received>>>>
where
    O: Fn(Channel) -> Fut,
    Fut: Future<Output = Result<JoinHandle<Result<Received>>>>,
{
    let mut handles = Vec::with_capacity(n);
    let mut ch = connect().await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..n {
        if i > 0 && i % per_connection.max(1) == 0 {
            ch = connect().await?;
        }
        handles.push(open(ch.clone()).await?);
        if Instant::now() > deadline {
            bail!("opening {n} streams took over 120 s");
        }
    }
    Ok(handles)
}

/// Opens `n` Watch streams on `m` from `start_revision`, `per_connection` to a connection,
/// each handed to `task`, which owns it from then on.
async fn watch_streams(
    m: &Arc<Mapreg>,
    n: usize,
    per_connection: usize,
    start_revision: u64,
    task: impl Fn(tonic::Streaming<WatchResponse>) -> JoinHandle<Result<Received>>,
) -> Result<Vec<JoinHandle<Result<Received>>>> {
    let task = &task;
    open_streams(
        n,
        per_connection,
        || m.channel(),
        |ch| {
            let m = m.clone();
            async move { Ok(task(watch(&m, ch, start_revision).await?)) }
        },
    )
    .await
}

/// Waits for every stream task; ends those still running at `deadline`.
async fn collect(handles: Vec<JoinHandle<Result<Received>>>, deadline: Instant) -> Vec<Received> {
    let mut out = Vec::with_capacity(handles.len());
    for mut h in handles {
        match tokio::time::timeout_at(deadline.into(), &mut h).await {
            Ok(Ok(Ok(r))) => out.push(r),
            Ok(_) => out.push(Vec::new()),
            Err(_) => {
                h.abort();
                out.push(Vec::new());
            }
        }
    }
    out
}

/// Latency rows from deliveries: per delivery, and per message to its last watcher.
/// `origin`: message id -> the time latency is counted from (ns since the epoch).
fn delivery_rows(
    name: &str,
    target: &'static str,
    watchers: usize,
    received: &[Received],
    origin: &HashMap<u64, u64>,
    wall: Duration,
) -> (Row, Row) {
    let mut each = Vec::new();
    let mut last: HashMap<u64, (usize, u64)> = HashMap::new();
    for r in received {
        for &(id, at) in r {
            if let Some(&from) = origin.get(&id) {
                let lat = at.saturating_sub(from);
                each.push(Duration::from_nanos(lat));
                let e = last.entry(id).or_insert((0, 0));
                e.0 += 1;
                e.1 = e.1.max(lat);
            }
        }
    }
    let expected = origin.len() * watchers;
    let complete = last.values().filter(|(n, _)| *n == watchers).count();
    let to_last: Vec<Duration> = last
        .values()
        .map(|(_, l)| Duration::from_nanos(*l))
        .collect();
    let delivered = each.len();
    let each_row = Row::latencies(
        "fanout",
        format!("{name} -> delivered"),
        target,
        watchers,
        each,
        wall,
    )
    .with("delivered", delivered)
    .with("expected", expected);
    let last_row = Row::latencies(
        "fanout",
        format!("{name} -> last watcher"),
        target,
        watchers,
        to_last,
        wall,
    )
    .with("complete", complete)
    .with("messages", origin.len());
    (each_row, last_row)
}

/// `fanout`: N watchers; writes at `rate` for `seconds`; latency from the server's commit
/// (publish) of each revision to its arrival at each watcher. Baseline: the same through a
/// bare tonic broadcast.
pub async fn fanout(opts: &Opts, a: &FanoutArgs) -> Result<Vec<Row>> {
    let writes = (a.rate * a.seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / a.rate.max(1) as f64);
    let mut rows = Vec::new();

    // Baseline: Publish -> every Subscribe stream, from the broadcast time.
    let echo = Child::echo().await?;
    let handles = open_streams(
        a.watchers,
        a.per_connection,
        || echo.channel(),
        |ch| async move {
            let mut s = subscribe(ch).await?;
            Ok(tokio::spawn(async move {
                let mut got = Vec::with_capacity(writes);
                while got.len() < writes {
                    let Some(p) = s.message().await? else { break };
                    let at = unix_ns();
                    let id = p.data.get(..8).and_then(|b| b.try_into().ok());
                    got.push((u64::from_le_bytes(id.context("short payload")?), at));
                }
                anyhow::Ok(got)
            }))
        },
    )
    .await?;
    let ch = echo.channel().await?;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let cpu_before = (echo.cpu_secs(), cpu_secs("self"));
    let started = Instant::now();
    let mut inflight = Vec::with_capacity(writes);
    for i in 0..writes as u64 {
        ticker.tick().await;
        let mut c = EchoClient::new(ch.clone());
        inflight.push(tokio::spawn(async move {
            // About the size of a one-mapping change set.
            let mut data = i.to_le_bytes().to_vec();
            data.resize(200, b'x');
            let ack = c
                .publish(Payload {
                    data,
                    published_unix_ns: 0,
                })
                .await?
                .into_inner();
            anyhow::Ok((i, ack.published_unix_ns))
        }));
    }
    let mut origin = HashMap::new();
    for w in inflight {
        let (i, at) = w.await??;
        origin.insert(i, at);
    }
    let wall = started.elapsed();
    let received = collect(handles, Instant::now() + DRAIN).await;
    let cpu_after = (echo.cpu_secs(), cpu_secs("self"));
    drop(echo);
    let (base_each, base_last) =
        delivery_rows("publish", "baseline", a.watchers, &received, &origin, wall);
    let base_each = base_each
        .with_cpu("server_cpu_us_per_op", cpu_before.0, cpu_after.0)
        .with_cpu("bench_cpu_us_per_op", cpu_before.1, cpu_after.1);
    rows.push(base_each.clone());
    rows.push(base_last.clone());

    // mapreg: CreateApiMapping -> every Watch stream.
    let m = Arc::new(Mapreg::start(opts, true).await?);
    let ch = m.channel().await?;
    let fx = Arc::new(Fixture::create(&m, &ch, "fanout").await?);
    let start_revision = fx.revision + 1;
    let handles = watch_streams(&m, a.watchers, a.per_connection, start_revision, |mut s| {
        tokio::spawn(async move {
            let mut got = Vec::with_capacity(writes);
            while got.len() < writes {
                let Some(r) = s.message().await? else { break };
                if let Some(Kind::ChangeSet(_)) = r.kind {
                    got.push((r.revision, unix_ns()));
                }
            }
            anyhow::Ok(got)
        })
    })
    .await?;
    // A watch's headers arrive before its watcher task reads the durable revision; give the
    // tasks a moment so the first writes are not measured from a cold start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let cpu_before = (m.cpu_secs(), cpu_secs("self"));
    let started = Instant::now();
    let mut inflight = Vec::with_capacity(writes);
    for i in 0..writes {
        ticker.tick().await;
        let mut c = RegistryClient::new(ch.clone());
        let (m, fx) = (m.clone(), fx.clone());
        inflight.push(tokio::spawn(async move {
            let sent = unix_ns();
            let t = Instant::now();
            let r = c
                .create_api_mapping(m.req(fx.mapping(format!("f{i}"))))
                .await?
                .into_inner();
            anyhow::Ok((r.create_revision, sent, t.elapsed()))
        }));
    }
    let mut sent = HashMap::new();
    let mut rpc = Vec::with_capacity(writes);
    for w in inflight {
        let (rev, at, lat) = w.await??;
        sent.insert(rev, at);
        rpc.push(lat);
    }
    let wall = started.elapsed();
    let received = collect(handles, Instant::now() + DRAIN).await;
    let cpu_after = (m.cpu_secs(), cpu_secs("self"));
    rows.push(Row::latencies(
        "fanout",
        "write RPC (durable)",
        "mapreg",
        a.watchers,
        rpc,
        wall,
    ));
    let published = m.published();
    if m.is_child() && published.len() >= sent.len() {
        let commit: HashMap<u64, u64> = sent
            .keys()
            .filter_map(|r| published.get(r).map(|t| (*r, *t)))
            .collect();
        let (each, last) = delivery_rows("commit", "mapreg", a.watchers, &received, &commit, wall);
        rows.push(
            each.p99_vs(&base_each)
                .with_cpu("server_cpu_us_per_op", cpu_before.0, cpu_after.0)
                .with_cpu("bench_cpu_us_per_op", cpu_before.1, cpu_after.1),
        );
        rows.push(last.p99_vs(&base_last));
    }
    let (each, last) = delivery_rows("write sent", "mapreg", a.watchers, &received, &sent, wall);
    rows.push(each);
    rows.push(last);
    if let (Ok(fx), Ok(m)) = (Arc::try_unwrap(fx), Arc::try_unwrap(m)) {
        fx.remove(&m, &ch).await?;
    }
    Ok(rows)
}

/// Options of the `idle` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct IdleArgs {
    /// Idle watchers.
    #[arg(long, default_value_t = 10_000)]
    pub watchers: usize,
    /// Watchers sharing one HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    pub per_connection: usize,
}

impl Default for IdleArgs {
    fn default() -> Self {
        IdleArgs {
            watchers: 10_000,
            per_connection: 100,
        }
    }
}

/// A stream task that holds its stream open and reads nothing (the server sends nothing).
fn hold<S: Send + 'static>(stream: S) -> JoinHandle<Result<Received>> {
    tokio::spawn(async move {
        let _stream = stream;
        std::future::pending::<()>().await;
        Ok(Vec::new())
    })
}

/// One idle-memory row: RSS before and after opening the streams.
fn idle_row(
    target: &'static str,
    watchers: usize,
    before: Option<(u64, u64)>,
    after: Option<(u64, u64)>,
    opened: Duration,
) -> Row {
    let mut row = Row {
        group: "idle",
        name: "idle watchers: server memory".into(),
        target,
        clients: watchers,
        n: watchers,
        ops_per_s: Some(watchers as f64 / opened.as_secs_f64().max(1e-9)),
        ..Row::default()
    }
    .with("open_seconds", opened.as_secs_f64());
    if let (Some((b, _)), Some((a, _))) = (before, after) {
        row = row.with("rss_before_kib", b).with("rss_after_kib", a).with(
            "kib_per_watcher",
            a.saturating_sub(b) as f64 / watchers.max(1) as f64,
        );
    }
    row
}

fn kib_per_watcher(r: &Row) -> Option<f64> {
    r.extra
        .iter()
        .find(|(k, _)| *k == "kib_per_watcher")
        .and_then(|(_, v)| v.as_f64())
}

/// `idle`: the server's resident memory per idle watcher. Baseline: idle subscribers of a
/// bare tonic server-streaming RPC.
pub async fn idle(opts: &Opts, a: &IdleArgs) -> Result<Vec<Row>> {
    let echo = Child::echo().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = echo.rss_kib();
    let started = Instant::now();
    let handles = open_streams(
        a.watchers,
        a.per_connection,
        || echo.channel(),
        |ch| async move { Ok(hold(subscribe(ch).await?)) },
    )
    .await?;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = idle_row("baseline", a.watchers, before, echo.rss_kib(), opened);
    for h in handles {
        h.abort();
    }
    drop(echo);

    let m = Arc::new(Mapreg::start(opts, false).await?);
    let ch = m.channel().await?;
    let fx = Fixture::create(&m, &ch, "idle").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = m.rss_kib();
    let start_revision = fx.revision + 1;
    let started = Instant::now();
    let handles = watch_streams(&m, a.watchers, a.per_connection, start_revision, hold).await?;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut row = idle_row("mapreg", a.watchers, before, m.rss_kib(), opened);
    if let (Some(x), Some(b)) = (kib_per_watcher(&row), kib_per_watcher(&base))
        && b > 0.0
    {
        row.vs_baseline = Some((x / b, "kib_per_watcher"));
    }
    for h in handles {
        h.abort();
    }
    fx.remove(&m, &ch).await?;
    Ok(vec![base, row])
}

/// Options of the `snapshot` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct SnapshotArgs {
    /// Mappings in the store (loaded by 32 concurrent clients first).
    #[arg(long, default_value_t = 100_000)]
    pub mappings: usize,
}

impl Default for SnapshotArgs {
    fn default() -> Self {
        SnapshotArgs { mappings: 100_000 }
    }
}

/// `snapshot`: Watch from revision 0 over a store of N mappings: time to snapshot_complete,
/// messages, bytes, and the server's peak memory meanwhile. Baseline: a bare tonic stream of as
/// many messages of the same total size.
pub async fn snapshot(opts: &Opts, a: &SnapshotArgs) -> Result<Vec<Row>> {
    let m = Arc::new(Mapreg::start(opts, false).await?);
    let ch = m.channel().await?;
    let fx = Arc::new(Fixture::create(&m, &ch, "snapshot").await?);
    const LOADERS: usize = 32;
    let per = a.mappings.div_ceil(LOADERS);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..LOADERS {
        let mut c = RegistryClient::new(m.channel().await?);
        let (m, fx, total) = (m.clone(), fx.clone(), a.mappings);
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                if w * per + i >= total {
                    break;
                }
                c.create_api_mapping(m.req(fx.mapping(format!("s{w}-{i}"))))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let load = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    m.reset_peak();
    let before = m.rss_kib();
    let mut c = ChangeFeedClient::new(m.channel().await?);
    let started = Instant::now();
    let mut stream = c.watch(m.req(WatchRequest::default())).await?.into_inner();
    let (mut resources, mut messages, mut bytes) = (0usize, 0usize, 0usize);
    loop {
        let Some(r) = tokio::time::timeout(Duration::from_secs(120), stream.message()).await??
        else {
            bail!("the stream ended before snapshot_complete");
        };
        messages += 1;
        bytes += r.encoded_len();
        match r.kind {
            Some(Kind::Snapshot(s)) => resources += s.resources.len(),
            Some(Kind::SnapshotComplete(_)) => break,
            _ => {}
        }
    }
    let took = started.elapsed();
    let peak = m.rss_kib();
    drop(stream);

    // Baseline: the same number of messages and bytes from a bare tonic stream.
    let echo = Child::echo().await?;
    let mut e = EchoClient::new(echo.channel().await?);
    let size = (bytes / messages.max(1)) as u32;
    let started = Instant::now();
    let mut s = e
        .dump(DumpRequest {
            messages: messages as u32,
            bytes: size,
        })
        .await?
        .into_inner();
    let mut got = 0usize;
    while let Some(_p) = tokio::time::timeout(Duration::from_secs(120), s.message()).await?? {
        got += 1;
    }
    let base_took = started.elapsed();
    let base = Row {
        group: "snapshot",
        name: format!("stream {messages} messages, {} KiB", bytes / 1024),
        target: "baseline",
        clients: 1,
        n: got,
        ops_per_s: Some(got as f64 / base_took.as_secs_f64().max(1e-9)),
        ..Row::default()
    }
    .with("seconds", base_took.as_secs_f64());
    let mut row = Row {
        group: "snapshot",
        name: format!("snapshot of {} mappings", a.mappings),
        target: "mapreg",
        clients: 1,
        n: resources,
        ops_per_s: Some(resources as f64 / took.as_secs_f64().max(1e-9)),
        vs_baseline: Some((
            took.as_secs_f64() / base_took.as_secs_f64().max(1e-9),
            "seconds",
        )),
        ..Row::default()
    }
    .with("seconds", took.as_secs_f64())
    .with("messages", messages)
    .with("bytes", bytes)
    .with("load_writes_per_s", a.mappings as f64 / load.as_secs_f64());
    if let (Some((b, _)), Some((_, p))) = (before, peak) {
        row = row.with("rss_before_kib", b).with("rss_peak_kib", p);
    }
    if let (Ok(fx), Ok(m)) = (Arc::try_unwrap(fx), Arc::try_unwrap(m)) {
        fx.remove(&m, &ch).await?;
    }
    Ok(vec![base, row])
}

//! `stalled`: Watch streams whose client never reads (README "Bounds": a Watch stream holds at
//! most `watch_buffer_bytes` of responses queued for its client, snapshot included).
//!
//! The store is loaded with N mappings by 32 concurrent clients. The server's RSS is read, and W
//! Watch streams are opened from revision 0 (a full snapshot each), a few per HTTP/2
//! connection, whose client keeps the stream but never polls it after the response headers:
//! HTTP/2 flow control stops the server once the client's windows are full. The server's RSS
//! is sampled every 500 ms until it has not grown for 3 s (at most 60 s), then durable
//! writes (16 CreateApiMapping clients for a few seconds) run while the stalled streams
//! stay open, then again once they are closed, to show they do not slow writers (the second
//! phase runs on a slightly larger store, and after the first: compare with care).
//! Only a child server's memory is read (not with `--endpoint`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mapreg::pb::WatchRequest;
use mapreg::pb::change_feed_client::ChangeFeedClient;
use mapreg::pb::registry_client::RegistryClient;

use crate::fixture::Fixture;
use crate::harness::{Mapreg, Opts, Row, gathered};

/// Options of the `stalled` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct StalledArgs {
    /// Mappings in the store (loaded by 32 concurrent clients first).
    #[arg(long, default_value_t = 30_000)]
    pub mappings: usize,
    /// Stalled watchers (Watch from revision 0, never read).
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Stalled watchers sharing one HTTP/2 connection.
    #[arg(long, default_value_t = 10)]
    pub per_connection: usize,
    /// Seconds each write phase (without, then with the stalled watchers) measures.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Concurrent writers (one HTTP/2 connection each).
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
}

impl Default for StalledArgs {
    fn default() -> Self {
        StalledArgs {
            mappings: 30_000,
            watchers: 100,
            per_connection: 10,
            seconds: 5,
            writers: 16,
        }
    }
}

/// Loaders of the initial mappings.
const LOADERS: usize = 32;
/// RSS sampling period while waiting for the server to settle.
const SAMPLE: Duration = Duration::from_millis(500);
/// The RSS counts as settled after this long without a new maximum.
const STABLE_FOR: Duration = Duration::from_secs(3);
/// Growth (KiB) below which a sample is not a new maximum (allocator noise).
const NOISE_KIB: u64 = 256;
/// Longest wait for the RSS to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// Loads `total` mappings with [`LOADERS`] concurrent clients; returns the time taken.
async fn load(m: &Arc<Mapreg>, fx: &Arc<Fixture>, total: usize) -> Result<Duration> {
    let per = total.div_ceil(LOADERS);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(LOADERS);
    for w in 0..LOADERS {
        let mut c = RegistryClient::new(m.channel().await?);
        let (m, fx) = (m.clone(), fx.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                if w * per + i >= total {
                    break;
                }
                c.create_api_mapping(m.req(fx.mapping(format!("s{w}-{i}"))))
                    .await
                    .with_context(|| format!("loading mapping s{w}-{i}"))?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

/// `writers` durable writers for `seconds`; a row labelled `label`.
async fn writes(
    m: &Arc<Mapreg>,
    fx: &Arc<Fixture>,
    args: &StalledArgs,
    prefix: &'static str,
    label: &str,
) -> Result<Row> {
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::with_capacity(args.writers);
    for w in 0..args.writers {
        let mut c = RegistryClient::new(m.channel().await?);
        let (m, fx) = (m.clone(), fx.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < until {
                let t = Instant::now();
                c.create_api_mapping(m.req(fx.mapping(format!("{prefix}{w}-{i}"))))
                    .await
                    .with_context(|| format!("write {prefix}{w}-{i}"))?;
                lat.push(t.elapsed());
                i += 1;
            }
            anyhow::Ok(lat)
        }));
    }
    let started = Instant::now();
    let lat = gathered(tasks).await?;
    let wall = started.elapsed();
    Ok(Row::latencies(
        "stalled",
        format!("CreateApiMapping (durable), {label}"),
        "mapreg",
        args.writers,
        lat,
        wall,
    ))
}

/// Samples the child's RSS every [`SAMPLE`] until no new maximum for [`STABLE_FOR`] (or
/// [`SETTLE_LIMIT`]); returns (last RSS KiB, seconds waited, settled).
async fn settle(m: &Mapreg) -> Option<(u64, f64, bool)> {
    let started = Instant::now();
    let mut max = m.rss_kib()?.0;
    let mut since_max = Instant::now();
    loop {
        tokio::time::sleep(SAMPLE).await;
        let now = m.rss_kib()?.0;
        if now > max + NOISE_KIB {
            since_max = Instant::now();
        }
        max = max.max(now);
        if since_max.elapsed() >= STABLE_FOR {
            return Some((now, started.elapsed().as_secs_f64(), true));
        }
        if started.elapsed() >= SETTLE_LIMIT {
            return Some((now, started.elapsed().as_secs_f64(), false));
        }
    }
}

/// `stalled`: see the module documentation.
pub async fn stalled(opts: &Opts, args: &StalledArgs) -> Result<Vec<Row>> {
    let m = Arc::new(Mapreg::start(opts, false).await?);
    let ch = m.channel().await?;
    let fx = Arc::new(Fixture::create(&m, &ch, "stalled").await?);
    let loaded = load(&m, &fx, args.mappings).await?;

    tokio::time::sleep(Duration::from_millis(500)).await;
    m.reset_peak();
    let before = m.rss_kib();

    // Open the stalled streams: each `watch` returns once the response headers are in; the
    // stream is then kept, never polled.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut channels = Vec::new();
    let mut streams = Vec::with_capacity(args.watchers);
    for i in 0..args.watchers {
        if i % args.per_connection.max(1) == 0 {
            channels.push(m.channel().await?);
        }
        let Some(ch) = channels.last() else {
            bail!("no connection to open watcher {i} on");
        };
        let mut client = ChangeFeedClient::new(ch.clone());
        let call = client.watch(m.req(WatchRequest {
            start_revision: 0,
            ..Default::default()
        }));
        let s = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .with_context(|| format!("watcher {i}: no response headers within 10 s"))?
            .with_context(|| format!("watcher {i}: Watch failed"))?
            .into_inner();
        streams.push(s);
        if Instant::now() > deadline {
            bail!("opening {} watchers took over 120 s", args.watchers);
        }
    }
    let opened = started.elapsed();
    let settled = settle(&m).await;
    let peak = m.rss_kib().map(|(_, p)| p);

    let label = format!("{} stalled watchers", args.watchers);
    let busy = writes(&m, &fx, args, "b", &label).await?;
    let after_writes = m.rss_kib();

    // Whether the server still holds the stalled streams open: one message each (the client's
    // buffered data, if any), bounded in time.
    let (mut open, mut ended) = (0usize, 0usize);
    let check_until = Instant::now() + Duration::from_secs(10);
    for s in &mut streams {
        let left = check_until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left.min(Duration::from_millis(500)), s.message()).await {
            Ok(Ok(Some(_))) | Err(_) => open += 1,
            Ok(Ok(None)) | Ok(Err(_)) => ended += 1,
        }
    }
    drop(streams);
    drop(channels);
    // The same writes without watchers, once the server has dropped the stalled ones (after,
    // so that the snapshots above are of exactly `mappings` mappings).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let quiet = writes(&m, &fx, args, "q", "after the watchers closed").await?;
    let busy = busy.throughput_vs(&quiet);

    let mut row = Row {
        group: "stalled",
        name: format!("{label}: server memory"),
        target: "mapreg",
        clients: args.watchers,
        n: args.watchers,
        ops_per_s: Some(args.watchers as f64 / opened.as_secs_f64().max(1e-9)),
        ..Row::default()
    }
    .with("mappings", args.mappings)
    .with(
        "load_writes_per_s",
        args.mappings as f64 / loaded.as_secs_f64().max(1e-9),
    )
    .with("open_seconds", opened.as_secs_f64());
    if m.is_child() {
        // The child runs with the default configuration (main.rs `server`).
        let buffer = mapreg::config::Config::default().watch_buffer_bytes;
        row = row.with("watch_buffer_bytes", buffer as u64);
    }
    if let (Some((b, _)), Some((a, secs, ok))) = (before, settled) {
        let growth = a.saturating_sub(b);
        row = row
            .with("rss_before_kib", b)
            .with("rss_after_kib", a)
            .with("growth_kib", growth)
            .with(
                "kib_per_watcher",
                growth as f64 / args.watchers.max(1) as f64,
            )
            .with("settle_seconds", secs)
            .with("settled", ok);
    }
    if let Some(p) = peak {
        row = row.with("rss_peak_kib", p);
    }
    let mut busy = busy
        .with("stalled_open_after", open)
        .with("stalled_ended_after", ended);
    if let Some((a, _)) = after_writes {
        busy = busy.with("rss_after_writes_kib", a);
    }
    if let (Ok(fx), Ok(m)) = (Arc::try_unwrap(fx), Arc::try_unwrap(m)) {
        fx.remove(&m, &ch).await?;
    }
    Ok(vec![row, quiet, busy])
}

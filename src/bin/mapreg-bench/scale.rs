//! `scale`: a store of N API mappings over many domain names, built and read through the gRPC
//! interface only (`mapreg::pb` clients and grpc.health.v1), so any server build is measured
//! the same way.
//!
//! 1. populate: one API + stage, `mappings / per-domain` domains, `per-domain` mappings each
//!    (keys `k0`, `k1`, ...), created by `--concurrency` requests in flight: creates/s;
//! 2. the server's resident memory before and after, per 100 000 mappings;
//! 3. `--watchers` Watch streams from revision 0, each filtered to one domain (and to domain
//!    names + mappings), opened at once: time until every one has its `snapshot_complete`, and
//!    per watcher; every snapshot must hold exactly its domain and that domain's mappings;
//! 4. restart: SIGTERM, wait, start again on the same data dir: time from spawn until
//!    Health/Check answers SERVING, memory after, and a sample of domains read back.
//!
//! There is no baseline. The server is always a child of this run (its memory is read and it
//! is restarted): `--endpoint` is refused. `--data-dir` keeps the store so that a later run
//! can skip step 1 with `--skip-populate`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mapreg::pb::change_feed_client::ChangeFeedClient;
use mapreg::pb::registry_client::RegistryClient;
use mapreg::pb::watch_response::Kind;
use mapreg::pb::*;
use tonic::transport::Channel;

use crate::harness::{Child, Opts, Row, gathered, pct};

/// Options of the `scale` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct ScaleArgs {
    /// API mappings in the store.
    #[arg(long, default_value_t = 100_000)]
    pub mappings: usize,
    /// Mappings per domain name (keys k0, k1, ...): the store holds mappings / per-domain
    /// domains, rounded up.
    #[arg(long, default_value_t = 10)]
    pub per_domain: usize,
    /// Watch streams, each on one domain (spread over the domains), all opened at once.
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// Watch streams sharing one HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    pub per_connection: usize,
    /// Create requests in flight while populating (16 per HTTP/2 connection).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// The server's data dir, kept after the run (default: a temporary one, removed). Must be
    /// absent or empty unless --skip-populate.
    #[arg(long, alias = "keep-data", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Reuse the store in --data-dir, populated by an earlier run with the same --mappings and
    /// --per-domain.
    #[arg(long, requires = "data_dir")]
    pub skip_populate: bool,
}

impl Default for ScaleArgs {
    fn default() -> Self {
        ScaleArgs {
            mappings: 100_000,
            per_domain: 10,
            watchers: 1000,
            per_connection: 100,
            concurrency: 64,
            data_dir: None,
            skip_populate: false,
        }
    }
}

/// Upper bound of each populating phase.
const POPULATE_LIMIT: Duration = Duration::from_secs(3600);
/// Upper bound from the first Watch until the last snapshot_complete.
const WATCH_LIMIT: Duration = Duration::from_secs(600);
/// Upper bound from SIGTERM until the server has exited.
const STOP_LIMIT: Duration = Duration::from_secs(120);
/// Upper bound from spawn until SERVING.
const START_LIMIT: Duration = Duration::from_secs(600);
/// The stage every mapping points at.
const STAGE: &str = "test";
/// The suffix of every domain the scenario creates.
const DOMAIN_SUFFIX: &str = ".scale.bench.example.com";

/// The store's layout, the same in every run with the same options.
#[derive(Debug, Clone, Copy)]
struct Layout {
    mappings: usize,
    per_domain: usize,
}

impl Layout {
    fn domains(&self) -> usize {
        self.mappings.div_ceil(self.per_domain)
    }

    fn domain(&self, i: usize) -> String {
        format!("d{i}{DOMAIN_SUFFIX}")
    }

    /// The keys of domain `i`: `k0..k<per-domain>`, fewer in the last domain.
    fn keys(&self, i: usize) -> BTreeSet<String> {
        let n = self
            .per_domain
            .min(self.mappings.saturating_sub(i * self.per_domain));
        (0..n).map(|k| format!("k{k}")).collect()
    }
}

/// Removes a temporary data dir on drop.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn is_empty_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// A figure of a report row: its key and a resident size in KiB, if known.
type Rss = (&'static str, Option<u64>);

/// The child's current RSS in KiB.
fn rss(child: &Child) -> Option<u64> {
    child.rss_kib().map(|(now, _peak)| now)
}

/// A server child on `dir`, serving; (child, time from spawn to SERVING).
async fn start_on(dir: &Path) -> Result<(Child, Duration)> {
    let started = Instant::now();
    let mut child = Child::server_on(dir)?;
    let took = child.wait_serving(started, START_LIMIT).await?;
    Ok((child, took))
}

/// `n` connections to the child.
async fn channels(child: &Child, n: usize) -> Result<Vec<Channel>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        v.push(child.channel().await?);
    }
    Ok(v)
}

/// Runs `call(client, i)` for every i in 0..n, `concurrency` at a time over `chans`; returns
/// the latencies and the wall time. Progress of long runs goes to stderr.
async fn concurrently<F, Fut>(
    what: &'static str,
    n: usize,
    concurrency: usize,
    chans: &[Channel],
    call: F,
) -> Result<(Vec<Duration>, Duration)>
where
    F: Fn(RegistryClient<Channel>, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let step = (n / 10).max(1);
    let mut tasks = Vec::new();
    for w in 0..concurrency.clamp(1, n.max(1)) {
        let c = RegistryClient::new(chans[w % chans.len()].clone());
        let (next, call) = (next.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if started.elapsed() > POPULATE_LIMIT {
                    bail!("{what}: {n} calls took over {POPULATE_LIMIT:?}");
                }
                let t = Instant::now();
                call(c.clone(), i).await?;
                lat.push(t.elapsed());
                if n >= 10_000 && i > 0 && i % step == 0 {
                    eprintln!(
                        "scale: {what} {i}/{n} after {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            anyhow::Ok(lat)
        }));
    }
    Ok((gathered(tasks).await?, started.elapsed()))
}

/// Creates the API, its stage, the domains and the mappings; returns the rows of the two
/// timed phases (domains, mappings).
async fn populate(child: &Child, l: Layout, concurrency: usize) -> Result<(Row, Row)> {
    let chans = channels(child, concurrency.div_ceil(16)).await?;
    let mut c = RegistryClient::new(chans[0].clone());
    let api = c
        .create_api(CreateApiRequest {
            name: "bench-scale".into(),
            protocol_type: ProtocolType::Http as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    c.create_stage(CreateStageRequest {
        api_id: api.api_id.clone(),
        stage_name: STAGE.into(),
        ..Default::default()
    })
    .await?;

    let (lat, wall) = concurrently(
        "CreateDomainName",
        l.domains(),
        concurrency,
        &chans,
        move |mut c, i| async move {
            let domain_name = l.domain(i);
            c.create_domain_name(CreateDomainNameRequest {
                domain_name: domain_name.clone(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("CreateDomainName {domain_name}"))?;
            Ok(())
        },
    )
    .await?;
    let domains = Row::latencies(
        "scale",
        "populate: CreateDomainName",
        "mapreg",
        concurrency,
        lat,
        wall,
    )
    .with("seconds", wall.as_secs_f64());

    let api_id = Arc::new(api.api_id);
    let (lat, wall) = concurrently(
        "CreateApiMapping",
        l.mappings,
        concurrency,
        &chans,
        move |mut c, i| {
            let api_id = api_id.clone();
            async move {
                let req = CreateApiMappingRequest {
                    domain_name: l.domain(i / l.per_domain),
                    api_mapping_key: format!("k{}", i % l.per_domain),
                    api_id: api_id.to_string(),
                    stage: STAGE.into(),
                    ..Default::default()
                };
                let what = format!(
                    "CreateApiMapping {} {}",
                    req.domain_name, req.api_mapping_key
                );
                c.create_api_mapping(req).await.context(what)?;
                Ok(())
            }
        },
    )
    .await?;
    let mappings = Row::latencies(
        "scale",
        "populate: CreateApiMapping",
        "mapreg",
        concurrency,
        lat,
        wall,
    )
    .with("seconds", wall.as_secs_f64())
    .with("domains", l.domains())
    .with("per_domain", l.per_domain);
    Ok((domains, mappings))
}

/// The mappings of `domain`, every page.
async fn mappings_of(c: &mut RegistryClient<Channel>, domain: &str) -> Result<Vec<ApiMapping>> {
    let mut out = Vec::new();
    let mut next_token = String::new();
    // Bounded: a domain has at most per-domain mappings, 1000 per page.
    for _ in 0..10_000 {
        let r = c
            .get_api_mappings(GetApiMappingsRequest {
                domain_name: domain.to_string(),
                max_results: 1000,
                next_token,
                ..Default::default()
            })
            .await
            .with_context(|| format!("GetApiMappings {domain}"))?
            .into_inner();
        out.extend(r.items);
        if r.next_token.is_empty() {
            return Ok(out);
        }
        next_token = r.next_token;
    }
    bail!("GetApiMappings {domain}: over 10 000 pages")
}

/// The bench's domains in a reused store, counted over GetDomainNames.
async fn count_domains(c: &mut RegistryClient<Channel>) -> Result<usize> {
    let mut n = 0;
    let mut next_token = String::new();
    for _ in 0..100_000 {
        let r = c
            .get_domain_names(GetDomainNamesRequest {
                max_results: 1000,
                next_token,
                ..Default::default()
            })
            .await
            .context("GetDomainNames")?
            .into_inner();
        n += r
            .items
            .iter()
            .filter(|d| d.domain_name.ends_with(DOMAIN_SUFFIX))
            .count();
        if r.next_token.is_empty() {
            return Ok(n);
        }
        next_token = r.next_token;
    }
    bail!("GetDomainNames: over 100 000 pages")
}

/// Checks that `items` are exactly domain `i`'s mappings (keys, stage, and API if given).
fn check_mappings(l: Layout, i: usize, items: &[ApiMapping], api_id: Option<&str>) -> Result<()> {
    let domain = l.domain(i);
    let keys: BTreeSet<String> = items.iter().map(|m| m.api_mapping_key.clone()).collect();
    if items.len() != keys.len() || keys != l.keys(i) {
        bail!(
            "{domain}: expected the keys {:?}, got {:?} ({} mappings)",
            l.keys(i),
            keys,
            items.len()
        );
    }
    for m in items {
        if m.domain_name != domain || m.stage != STAGE || api_id.is_some_and(|a| a != m.api_id) {
            bail!("{domain}: a mapping that is not the bench's: {m:?}");
        }
    }
    Ok(())
}

/// Checks a watcher's snapshot: domain `i` and its mappings, nothing else.
fn check_snapshot(l: Layout, i: usize, resources: Vec<Resource>, api_id: &str) -> Result<()> {
    let domain = l.domain(i);
    let mut domains = Vec::new();
    let mut mappings = Vec::new();
    for r in resources {
        match r.resource {
            Some(resource::Resource::DomainName(d)) => domains.push(d.domain_name),
            Some(resource::Resource::ApiMapping(m)) => mappings.push(m),
            other => bail!("{domain}: the snapshot holds a resource of another kind: {other:?}"),
        }
    }
    if domains != [domain.clone()] {
        bail!("{domain}: the snapshot holds the domains {domains:?}");
    }
    check_mappings(l, i, &mappings, Some(api_id))
}

/// What one watcher measured: time from its Watch call to snapshot_complete, the same from the
/// first Watch call, resources received, and its stream (held open until all are done).
type Watched = (Duration, Duration, usize, tonic::Streaming<WatchResponse>);

/// Opens `watchers` streams at once, each on domain `i * domains / watchers`; returns the row.
async fn watch_all(child: &Child, l: Layout, a: &ScaleArgs, api_id: &str) -> Result<Row> {
    let chans = channels(child, a.watchers.div_ceil(a.per_connection.max(1))).await?;
    let api_id: Arc<str> = api_id.into();
    let started = Instant::now();
    let deadline = started + WATCH_LIMIT;
    let mut tasks = Vec::with_capacity(a.watchers);
    for w in 0..a.watchers {
        let i = w * l.domains() / a.watchers.max(1);
        let mut c = ChangeFeedClient::new(chans[w / a.per_connection.max(1)].clone());
        let api_id = api_id.clone();
        tasks.push(tokio::spawn(async move {
            let opened = Instant::now();
            let mut s = c
                .watch(WatchRequest {
                    start_revision: 0,
                    kinds: vec![
                        ResourceKind::DomainName as i32,
                        ResourceKind::ApiMapping as i32,
                    ],
                    domain_names: vec![l.domain(i)],
                    progress_interval_seconds: 3600,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("Watch {}", l.domain(i)))?
                .into_inner();
            let mut resources = Vec::new();
            // Bounded by the caller's deadline.
            loop {
                let Some(r) = s.message().await? else {
                    bail!("{}: the stream ended before snapshot_complete", l.domain(i));
                };
                match r.kind {
                    Some(Kind::Snapshot(snap)) => resources.extend(snap.resources),
                    Some(Kind::SnapshotComplete(_)) => break,
                    _ => {}
                }
            }
            let (took, since_first) = (opened.elapsed(), started.elapsed());
            let n = resources.len();
            check_snapshot(l, i, resources, &api_id)?;
            anyhow::Ok((took, since_first, n, s))
        }));
    }
    let mut done: Vec<Watched> = Vec::with_capacity(a.watchers);
    for mut t in tasks {
        match tokio::time::timeout_at(deadline.into(), &mut t).await {
            Ok(r) => done.push(r??),
            Err(_) => t.abort(),
        }
    }
    let rss_open = rss(child);
    let total = done.iter().map(|d| d.1).max().unwrap_or(started.elapsed());
    let resources: usize = done.iter().map(|d| d.2).sum();
    let mut each: Vec<Duration> = done.iter().map(|d| d.0).collect();
    each.sort();
    let complete = done.len();
    drop(done);
    let mut row = Row {
        group: "scale",
        name: "Watch rev 0, 1 domain each".into(),
        target: "mapreg",
        clients: a.watchers,
        n: complete,
        ops_per_s: Some(complete as f64 / total.as_secs_f64().max(1e-9)),
        p50_ms: Some(pct(&each, 0.50).as_secs_f64() * 1e3),
        p99_ms: Some(pct(&each, 0.99).as_secs_f64() * 1e3),
        ..Row::default()
    }
    .with("seconds", total.as_secs_f64())
    .with("complete", complete)
    .with("verified", complete)
    .with("resources", resources);
    if let Some(k) = rss_open {
        row = row.with("rss_with_watchers_kib", k);
    }
    Ok(row)
}

/// `scale`: see the module documentation.
pub async fn scale(opts: &Opts, a: &ScaleArgs) -> Result<Vec<Row>> {
    if opts.endpoint.is_some() {
        bail!(
            "scale does not support --endpoint: it reads its own server child's memory and \
             restarts it"
        );
    }
    if a.mappings == 0 || a.per_domain == 0 {
        bail!("--mappings and --per-domain must be at least 1");
    }
    let l = Layout {
        mappings: a.mappings,
        per_domain: a.per_domain,
    };
    let (dir, _temp) = match &a.data_dir {
        Some(d) => {
            let empty = is_empty_dir(d)?;
            if a.skip_populate && empty {
                bail!("--skip-populate: {} holds no store", d.display());
            }
            if !a.skip_populate && !empty {
                bail!(
                    "{} is not empty: pass --skip-populate to reuse its store, or remove it",
                    d.display()
                );
            }
            (d.clone(), TempDir(None))
        }
        None => {
            let d = std::env::temp_dir().join(format!("mapreg-bench-scale-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            (d.clone(), TempDir(Some(d)))
        }
    };
    let mut rows = Vec::new();

    // 1, 2: populate, memory before and after.
    let settle = Duration::from_millis(500);
    let (child, rss_empty, api_id) = if a.skip_populate {
        // The empty server's memory, from a throwaway one.
        let empty_dir =
            std::env::temp_dir().join(format!("mapreg-bench-scale-empty-{}", std::process::id()));
        let _remove = TempDir(Some(empty_dir.clone()));
        let rss_empty = {
            let (empty, _) = start_on(&empty_dir).await?;
            tokio::time::sleep(settle).await;
            rss(&empty)
        };
        let (child, took) = start_on(&dir).await?;
        eprintln!(
            "scale: the reused store serves after {:.3} s",
            took.as_secs_f64()
        );
        let mut c = RegistryClient::new(child.channel().await?);
        let found = count_domains(&mut c).await?;
        if found != l.domains() {
            bail!(
                "{} holds {found} bench domains; --mappings {} --per-domain {} make {}: pass the \
                 options of the run that populated it",
                dir.display(),
                a.mappings,
                a.per_domain,
                l.domains()
            );
        }
        let last = l.domains() - 1;
        let sample = mappings_of(&mut c, &l.domain(last)).await?;
        check_mappings(l, last, &sample, None)?;
        let api_id = sample
            .first()
            .map(|m| m.api_id.clone())
            .context("the last domain has no mappings")?;
        (child, rss_empty, api_id)
    } else {
        let (child, _) = start_on(&dir).await?;
        tokio::time::sleep(settle).await;
        let rss_empty = rss(&child);
        let (domains, mappings) = populate(&child, l, a.concurrency).await?;
        rows.push(domains);
        rows.push(mappings);
        let mut c = RegistryClient::new(child.channel().await?);
        let api_id = mappings_of(&mut c, &l.domain(0))
            .await?
            .first()
            .map(|m| m.api_id.clone())
            .context("the first domain has no mappings")?;
        (child, rss_empty, api_id)
    };
    tokio::time::sleep(settle).await;
    let rss_full = rss(&child);
    // `row` with two resident sizes (KiB, each under its key), and what the mappings take
    // beyond the empty server's size per 100k mappings at the second, when all are known.
    let with_rss = |row: Row, (k1, r1): Rss, (k2, r2): Rss| match (rss_empty, r1, r2) {
        (Some(e), Some(r1), Some(r2)) => {
            let per_100k = r2.saturating_sub(e) as f64 / 1024.0 / (a.mappings as f64 / 100_000.0);
            row.with(k1, r1)
                .with(k2, r2)
                .with("mib_per_100k_mappings", per_100k)
        }
        _ => row,
    };
    let memory = Row {
        group: "scale",
        name: format!("server memory, {} mappings", a.mappings),
        target: "mapreg",
        n: a.mappings,
        ..Row::default()
    }
    .with("reused_store", a.skip_populate);
    let memory = with_rss(
        memory,
        ("rss_empty_kib", rss_empty),
        ("rss_populated_kib", rss_full),
    );
    rows.push(memory);

    // 3: watchers, one domain each.
    rows.push(watch_all(&child, l, a, &api_id).await?);

    // 4: restart on the same data dir.
    let stopped = child.terminate(STOP_LIMIT).await?;
    let (restarted, took) = start_on(&dir).await?;
    let rss_serving = rss(&restarted);
    let mut c = RegistryClient::new(restarted.channel().await?);
    let sample: BTreeSet<usize> = [0, l.domains() / 2, l.domains() - 1].into();
    let mut verified = 0;
    for &i in &sample {
        let items = mappings_of(&mut c, &l.domain(i)).await?;
        check_mappings(l, i, &items, Some(&api_id))
            .context("after the restart, a domain does not read back")?;
        verified += items.len();
    }
    tokio::time::sleep(settle).await;
    let rss_after = rss(&restarted);
    let restart = Row {
        group: "scale",
        name: "restart: spawn -> Health SERVING".into(),
        target: "mapreg",
        clients: 1,
        n: 1,
        ..Row::default()
    }
    .with("seconds", took.as_secs_f64())
    .with("stop_seconds", stopped.as_secs_f64())
    .with("verified_domains", sample.len())
    .with("verified_mappings", verified);
    let restart = with_rss(
        restart,
        ("rss_at_serving_kib", rss_serving),
        ("rss_after_restart_kib", rss_after),
    );
    rows.push(restart);
    drop(c);
    restarted.terminate(STOP_LIMIT).await?;
    if a.data_dir.is_some() {
        eprintln!("scale: the store stays in {}", dir.display());
    }
    Ok(rows)
}

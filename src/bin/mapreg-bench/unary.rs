//! Unary scenarios: reads and durable writes at 1..N concurrent clients, and route resolution
//! (over gRPC and in a local `MappingCache`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use mapreg::pb::registry_client::RegistryClient;
use mapreg::pb::*;
use tokio::sync::Mutex;
use tonic::transport::Channel;

use crate::echo::pb::Payload;
use crate::echo::pb::echo_client::EchoClient;
use crate::fixture::Fixture;
use crate::harness::{Child, Mapreg, Opts, Row, cpu_secs};

/// Options of the `unary` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct UnaryArgs {
    /// Concurrent clients (one HTTP/2 connection each), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub clients: Vec<usize>,
    /// Measured requests per RPC and client count, split between the clients.
    #[arg(long, default_value_t = 50_000)]
    pub ops: usize,
    /// Rounds the reads are split into, each running the baseline, GetApiMapping and
    /// ResolveRoute in turn; the ratio to the baseline is the median over rounds.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

impl Default for UnaryArgs {
    fn default() -> Self {
        UnaryArgs {
            clients: vec![1, 16, 64],
            ops: 50_000,
            rounds: 5,
        }
    }
}

/// Unmeasured calls per client before a read is measured (connections, caches, allocator).
const WARMUP: usize = 200;

/// Runs `warmup` then `per` calls of `call` on each of `clients` connections at once;
/// returns the measured latencies and the wall time of the measured part.
async fn drive<F, Fut>(
    chans: Vec<Channel>,
    warmup: usize,
    per: usize,
    call: F,
) -> Result<(Vec<Duration>, Duration)>
where
    F: Fn(Channel, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let clients = chans.len();
    let start = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let mut tasks = Vec::new();
    for (w, ch) in chans.into_iter().enumerate() {
        let call = call.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..warmup {
                call(ch.clone(), w, per + i).await?;
            }
            start.wait().await;
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let t = Instant::now();
                call(ch.clone(), w, i).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    start.wait().await;
    let started = Instant::now();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    Ok((lat, started.elapsed()))
}

async fn channels(n: usize, open: impl AsyncFn() -> Result<Channel>) -> Result<Vec<Channel>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(open().await?);
    }
    Ok(v)
}

/// The measurements of one RPC kind over several rounds.
#[derive(Default)]
struct Series {
    lat: Vec<Duration>,
    wall: Duration,
    /// Server CPU seconds over the measured parts, while every reading was available.
    cpu: Option<f64>,
    /// This process's (the clients') CPU seconds over the measured parts.
    bench_cpu: Option<f64>,
    /// Throughput of each round.
    rounds: Vec<f64>,
}

impl Series {
    /// Runs `measure` once and adds its latencies, wall time and the server's CPU time (read
    /// with `cpu` before and after).
    async fn add(
        &mut self,
        cpu: impl Fn() -> Option<f64>,
        measure: impl Future<Output = Result<(Vec<Duration>, Duration)>>,
    ) -> Result<()> {
        let first = self.rounds.is_empty();
        let before = (cpu(), cpu_secs("self"));
        let (lat, wall) = measure.await?;
        let after = (cpu(), cpu_secs("self"));
        let sum = |total: Option<f64>, b: Option<f64>, a: Option<f64>| match (first, total, b, a) {
            (true, _, Some(b), Some(a)) => Some(a - b),
            (false, Some(t), Some(b), Some(a)) => Some(t + a - b),
            _ => None,
        };
        self.cpu = sum(self.cpu, before.0, after.0);
        self.bench_cpu = sum(self.bench_cpu, before.1, after.1);
        self.rounds
            .push(lat.len() as f64 / wall.as_secs_f64().max(1e-9));
        self.wall += wall;
        self.lat.extend(lat);
        Ok(())
    }

    /// The row, with the server's CPU per call, and (given the baseline's series) the median
    /// over rounds of this series' throughput divided by the baseline's in the same round.
    fn row(
        self,
        group: &'static str,
        name: &str,
        target: &'static str,
        clients: usize,
        base: Option<&Series>,
    ) -> Row {
        let n = self.lat.len();
        let mut row = Row::latencies(group, name, target, clients, self.lat, self.wall);
        if n > 0 {
            row = row
                .with_cpu("server_cpu_us_per_op", Some(0.0), self.cpu)
                .with_cpu("bench_cpu_us_per_op", Some(0.0), self.bench_cpu);
        }
        if let Some(base) = base {
            let mut ratios: Vec<f64> = self
                .rounds
                .iter()
                .zip(&base.rounds)
                .filter(|(_, b)| **b > 0.0)
                .map(|(a, b)| a / b)
                .collect();
            ratios.sort_by(f64::total_cmp);
            if !ratios.is_empty() {
                row.vs_baseline = Some((crate::harness::pct(&ratios, 0.5), "ops_per_s"));
            }
        }
        row
    }
}

/// The baseline call: unary echo of a 128-byte payload (about a mapping's size) on bare tonic.
async fn echo_call(ch: Channel) -> Result<()> {
    EchoClient::new(ch)
        .unary(Payload {
            data: vec![b'x'; 128],
            published_unix_ns: 0,
        })
        .await?;
    Ok(())
}

/// `unary`: for each client count, CreateApiMapping (durable) of `ops` new keys, then
/// `rounds` rounds of the baseline, GetApiMapping of those mappings and ResolveRoute onto them,
/// one after the other in each round. Interleaving the rounds spreads a noisy neighbour's
/// slow seconds over all three, so the median per-round ratio to the baseline is stable where
/// one long run of each is not.
pub async fn unary(opts: &Opts, args: &UnaryArgs) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let rounds = args.rounds.max(1);
    for &clients in &args.clients {
        let clients = clients.max(1);
        let per = args.ops.div_ceil(clients);
        let per_round = per.div_ceil(rounds);

        let echo = Child::echo().await?;
        let m = Arc::new(Mapreg::start(opts, false).await?);
        let ch = m.channel().await?;
        let fx = Arc::new(Fixture::create(&m, &ch, "unary").await?);
        let ids = Arc::new(Mutex::new(Vec::new()));
        let mut create = Series::default();
        {
            let (m2, fx, ids) = (m.clone(), fx.clone(), ids.clone());
            let chans = channels(clients, || m.channel()).await?;
            let run = drive(chans, 0, per_round * rounds, move |ch, w, i| {
                let (m, fx, ids) = (m2.clone(), fx.clone(), ids.clone());
                async move {
                    let r = RegistryClient::new(ch)
                        .create_api_mapping(m.req(fx.mapping(format!("k{w}-{i}"))))
                        .await?
                        .into_inner();
                    ids.lock().await.push(r.api_mapping_id);
                    Ok(())
                }
            });
            create.add(|| m.cpu_secs(), run).await?;
        }
        let ids = Arc::new(ids.lock().await.clone());

        let echo_chans = channels(clients, || echo.channel()).await?;
        let get_chans = channels(clients, || m.channel()).await?;
        let resolve_chans = channels(clients, || m.channel()).await?;
        let (mut base, mut get, mut resolve) =
            (Series::default(), Series::default(), Series::default());
        for round in 0..rounds {
            let warmup = if round == 0 { WARMUP } else { 0 };
            let run = drive(echo_chans.clone(), warmup, per_round, |ch, _, _| {
                echo_call(ch)
            });
            base.add(|| echo.cpu_secs(), run).await?;

            let (m2, fx2, ids2) = (m.clone(), fx.clone(), ids.clone());
            let run = drive(get_chans.clone(), warmup, per_round, move |ch, w, i| {
                let (m, fx, ids) = (m2.clone(), fx2.clone(), ids2.clone());
                async move {
                    let id =
                        ids[(w * 7919 + (round * per_round + i) * 104_729) % ids.len()].clone();
                    RegistryClient::new(ch)
                        .get_api_mapping(m.req(GetApiMappingRequest {
                            domain_name: fx.domain.clone(),
                            api_mapping_id: id,
                            ..Default::default()
                        }))
                        .await?;
                    Ok(())
                }
            });
            get.add(|| m.cpu_secs(), run).await?;

            let (m2, fx2) = (m.clone(), fx.clone());
            let keys = per_round * rounds;
            let run = drive(resolve_chans.clone(), warmup, per_round, move |ch, w, i| {
                let (m, fx) = (m2.clone(), fx2.clone());
                async move {
                    RegistryClient::new(ch)
                        .resolve_route(m.req(ResolveRouteRequest {
                            host: fx.domain.clone(),
                            path: format!("/k{w}-{}/items/1", (round * per_round + i) % keys),
                            ..Default::default()
                        }))
                        .await?;
                    Ok(())
                }
            });
            resolve.add(|| m.cpu_secs(), run).await?;
        }
        drop((echo_chans, get_chans, resolve_chans));
        let mut create = create.row(
            "unary",
            "CreateApiMapping (durable)",
            "mapreg",
            clients,
            None,
        );
        if let Some(b) = base.rounds.first() {
            create = create.throughput_vs(&Row {
                ops_per_s: Some(*b),
                ..Row::default()
            });
        }
        let get = get.row("unary", "GetApiMapping", "mapreg", clients, Some(&base));
        let resolve = resolve.row("unary", "ResolveRoute", "mapreg", clients, Some(&base));
        let base = base.row(
            "unary",
            "unary echo (bare tonic)",
            "baseline",
            clients,
            None,
        );

        if let (Ok(fx), Ok(m)) = (Arc::try_unwrap(fx), Arc::try_unwrap(m)) {
            fx.remove(&m, &ch).await?;
            drop(ch);
            if let Some((writes, flushes)) = m.stop_for_stats()
                && writes > 0
            {
                create = create.with("flushes_per_write", flushes as f64 / writes as f64);
            }
        }
        rows.extend([base, get, resolve, create]);
    }
    Ok(rows)
}

/// Options of the `resolve` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct ResolveArgs {
    /// Concurrent clients for the RPC.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Measured RPCs, split between the clients.
    #[arg(long, default_value_t = 5000)]
    pub ops: usize,
    /// Local resolutions in the MappingCache.
    #[arg(long, default_value_t = 1_000_000)]
    pub local: usize,
}

impl Default for ResolveArgs {
    fn default() -> Self {
        ResolveArgs {
            clients: 1,
            ops: 5000,
            local: 1_000_000,
        }
    }
}

/// Paths resolved by the `resolve` scenario: hits on several key depths, a raw-prefix hit and
/// a root fallback.
const RESOLVE_PATHS: &[&str] = &[
    "/orders/v1/items/123",
    "/orders/v2/items/categories/5",
    "/k42/x",
    "/ordersandmore",
    "/customers/7",
];

/// `resolve`: a domain with 200 mappings, some multi-level (so raw-prefix matching); the RPC
/// next to the baseline, then a local MappingCache on the same server.
pub async fn resolve(opts: &Opts, args: &ResolveArgs) -> Result<Vec<Row>> {
    let clients = args.clients.max(1);
    let per = args.ops.div_ceil(clients);
    let echo = Child::echo().await?;
    let mut base = Series::default();
    let chans = channels(clients, || echo.channel()).await?;
    let run = drive(chans, WARMUP, per, |ch, _, _| echo_call(ch));
    base.add(|| echo.cpu_secs(), run).await?;
    drop(echo);
    let base = base.row(
        "resolve",
        "unary echo (bare tonic)",
        "baseline",
        clients,
        None,
    );
    let m = Arc::new(Mapreg::start(opts, false).await?);
    let ch = m.channel().await?;
    let fx = Arc::new(Fixture::create(&m, &ch, "resolve").await?);
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
        c.create_api_mapping(m.req(fx.mapping(k.clone()))).await?;
    }
    let (lat, wall) = {
        let (m, fx) = (m.clone(), fx.clone());
        let chans = channels(clients, || m.channel()).await?;
        drive(chans, WARMUP, per, move |ch, _, i| {
            let (m, fx) = (m.clone(), fx.clone());
            async move {
                RegistryClient::new(ch)
                    .resolve_route(m.req(ResolveRouteRequest {
                        host: fx.domain.clone(),
                        path: RESOLVE_PATHS[i % RESOLVE_PATHS.len()].into(),
                        ..Default::default()
                    }))
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    let rpc = Row::latencies(
        "resolve",
        "ResolveRoute, 200 keys, multi-level",
        "mapreg",
        clients,
        lat,
        wall,
    )
    .throughput_vs(&base);

    let mut options = mapreg::client::CacheOptions::new(m.endpoint());
    options.token = m.token();
    options.domain_names = vec![fx.domain.clone()];
    let cache = mapreg::client::MappingCache::start(options);
    if !cache.wait_in_sync(Duration::from_secs(20)).await {
        bail!("the MappingCache did not sync within 20 s");
    }
    let started = Instant::now();
    let mut hits = 0usize;
    for i in 0..args.local {
        if cache
            .resolve(&fx.domain, RESOLVE_PATHS[i % RESOLVE_PATHS.len()])
            .is_ok()
        {
            hits += 1;
        }
    }
    let took = started.elapsed();
    if hits != args.local {
        bail!("the MappingCache resolved {hits} of {} paths", args.local);
    }
    let ns = took.as_nanos() as f64 / args.local.max(1) as f64;
    let local = Row {
        group: "resolve",
        name: "MappingCache::resolve (local)".into(),
        target: "mapreg",
        clients: 1,
        n: args.local,
        ops_per_s: Some(args.local as f64 / took.as_secs_f64().max(1e-9)),
        ..Row::default()
    }
    .with("ns_per_call", ns);
    drop(cache);
    if let Ok(fx) = Arc::try_unwrap(fx) {
        fx.remove(&m, &ch).await?;
    }
    Ok(vec![base, rpc, local])
}

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
use crate::harness::{Child, Mapreg, Opts, Row};

/// Options of the `unary` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct UnaryArgs {
    /// Concurrent clients (one HTTP/2 connection each), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub clients: Vec<usize>,
    /// Measured requests per RPC and client count, split between the clients.
    #[arg(long, default_value_t = 50_000)]
    pub ops: usize,
}

impl Default for UnaryArgs {
    fn default() -> Self {
        UnaryArgs {
            clients: vec![1, 16, 64],
            ops: 50_000,
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

/// The baseline: unary echo of a 128-byte payload (about a mapping's size) on bare tonic.
async fn echo_row(group: &'static str, clients: usize, per: usize) -> Result<Row> {
    let echo = Child::echo().await?;
    let chans = channels(clients, || echo.channel()).await?;
    let (lat, wall) = drive(chans, WARMUP, per, |ch, _, _| async move {
        EchoClient::new(ch)
            .unary(Payload {
                data: vec![b'x'; 128],
                published_unix_ns: 0,
            })
            .await?;
        Ok(())
    })
    .await?;
    Ok(Row::latencies(
        group,
        "unary echo (bare tonic)",
        "baseline",
        clients,
        lat,
        wall,
    ))
}

/// `unary`: for each client count, the baseline, then CreateApiMapping (durable) of
/// `ops` new keys, GetApiMapping of them, ResolveRoute onto them.
pub async fn unary(opts: &Opts, args: &UnaryArgs) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &clients in &args.clients {
        let clients = clients.max(1);
        let per = args.ops.div_ceil(clients);
        let base = echo_row("unary", clients, per).await?;

        let m = Arc::new(Mapreg::start(opts, false).await?);
        let ch = m.channel().await?;
        let fx = Arc::new(Fixture::create(&m, &ch, "unary").await?);
        let ids = Arc::new(Mutex::new(Vec::new()));
        let (lat, wall) = {
            let (m, fx, ids) = (m.clone(), fx.clone(), ids.clone());
            let chans = channels(clients, || m.channel()).await?;
            drive(chans, 0, per, move |ch, w, i| {
                let (m, fx, ids) = (m.clone(), fx.clone(), ids.clone());
                async move {
                    let r = RegistryClient::new(ch)
                        .create_api_mapping(m.req(fx.mapping(format!("k{w}-{i}"))))
                        .await?
                        .into_inner();
                    ids.lock().await.push(r.api_mapping_id);
                    Ok(())
                }
            })
            .await?
        };
        let mut create = Row::latencies(
            "unary",
            "CreateApiMapping (durable)",
            "mapreg",
            clients,
            lat,
            wall,
        )
        .throughput_vs(&base);

        let ids = Arc::new(ids.lock().await.clone());
        let (lat, wall) = {
            let (m, fx) = (m.clone(), fx.clone());
            let chans = channels(clients, || m.channel()).await?;
            drive(chans, WARMUP, per, move |ch, w, i| {
                let (m, fx, ids) = (m.clone(), fx.clone(), ids.clone());
                async move {
                    let id = ids[(w * 7919 + i * 104_729) % ids.len()].clone();
                    RegistryClient::new(ch)
                        .get_api_mapping(m.req(GetApiMappingRequest {
                            domain_name: fx.domain.clone(),
                            api_mapping_id: id,
                        }))
                        .await?;
                    Ok(())
                }
            })
            .await?
        };
        let get = Row::latencies("unary", "GetApiMapping", "mapreg", clients, lat, wall)
            .throughput_vs(&base);

        let (lat, wall) = {
            let (m, fx) = (m.clone(), fx.clone());
            let chans = channels(clients, || m.channel()).await?;
            drive(chans, WARMUP, per, move |ch, w, i| {
                let (m, fx) = (m.clone(), fx.clone());
                async move {
                    RegistryClient::new(ch)
                        .resolve_route(m.req(ResolveRouteRequest {
                            host: fx.domain.clone(),
                            path: format!("/k{w}-{}/items/1", i % per),
                        }))
                        .await?;
                    Ok(())
                }
            })
            .await?
        };
        let resolve = Row::latencies("unary", "ResolveRoute", "mapreg", clients, lat, wall)
            .throughput_vs(&base);

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
    let base = echo_row("resolve", clients, per).await?;
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

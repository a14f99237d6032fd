//! `mapreg-bench`: measures a release build of mapreg over real gRPC on loopback, next to a
//! bare tonic baseline run in the same invocation.
//!
//! Each scenario starts its own mapreg server as a child process (this binary's hidden `server`
//! subcommand, a temporary data dir, 127.0.0.1) unless `--endpoint` names one, and always starts
//! the baseline (hidden `echo` subcommand: `echo.proto` on a bare tonic server). Every row says
//! how it compares with the baseline. Every loop is bounded in count and time.
//!
//! `scale` is the exception: it has no baseline, uses the gRPC interface only (so it measures any
//! server build alike), needs its own child (it reads its memory and restarts it) and is not
//! part of `all`.
//!
//! ```text
//! cargo run --release --bin mapreg-bench -- unary --clients 1,16,64 --ops 50000
//! cargo run --release --bin mapreg-bench -- fanout --watchers 1000 --rate 200 --seconds 10
//! cargo run --release --bin mapreg-bench -- idle --watchers 10000
//! cargo run --release --bin mapreg-bench -- snapshot --mappings 100000
//! cargo run --release --bin mapreg-bench -- resolve
//! cargo run --release --bin mapreg-bench -- silent --connections 3000 --seconds 15
//! cargo run --release --bin mapreg-bench -- stalled --mappings 30000 --watchers 100
//! cargo run --release --bin mapreg-bench -- scale --mappings 100000 --per-domain 10 --watchers 1000
//! cargo run --release --bin mapreg-bench -- scale --mappings 1000000 --data-dir /tmp/store-1m
//! cargo run --release --bin mapreg-bench -- scale --mappings 1000000 --data-dir /tmp/store-1m --skip-populate
//! cargo run --release --bin mapreg-bench -- --json all
//! cargo run --release --bin mapreg-bench -- --endpoint http://127.0.0.1:50051 unary
//! ```

/// The allocator of the `mapreg` binary, so that the server child's memory and startup time are
/// those of what ships (glibc's allocator holds less when idle and more for a large state).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod echo;
mod feed;
mod fixture;
mod harness;
mod scale;
mod silent;
mod stalled;
mod unary;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use harness::Opts;

#[derive(Parser)]
#[command(
    name = "mapreg-bench",
    about = "Benchmarks of mapreg over loopback gRPC, each next to a bare tonic baseline"
)]
struct Cli {
    /// Print the results as JSON too (one array, after the table).
    #[arg(long, global = true)]
    json: bool,
    /// Measure this mapreg server (e.g. http://127.0.0.1:50051) instead of starting one. The
    /// bench creates its own API, stage and domain there (and deletes them when done); server
    /// memory and flush counters are then not reported.
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// Bearer token for --endpoint (an admin token).
    #[arg(long, global = true, env = "MAPREG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Unary RPCs at each client count: GetApiMapping, ResolveRoute, CreateApiMapping (durable;
    /// flushes per write), each next to the baseline's unary echo.
    Unary(unary::UnaryArgs),
    /// N watchers while writes go on at a fixed rate: commit -> delivered latency.
    Fanout(feed::FanoutArgs),
    /// N idle watchers: the server's resident memory per watcher.
    Idle(feed::IdleArgs),
    /// A snapshot of N mappings: time to snapshot_complete and the server's peak memory.
    Snapshot(feed::SnapshotArgs),
    /// ResolveRoute on a domain with multi-level keys, and the same resolution in a local
    /// MappingCache (ns per call).
    Resolve(unary::ResolveArgs),
    /// A store of N mappings over many domains, over gRPC only: create throughput, memory per
    /// mapping, W single-domain snapshots at once, restart until SERVING. Not part of `all`.
    Scale(scale::ScaleArgs),
    /// Durable writes and health checks while N silent connections are held open (reopened
    /// whenever the server closes them), next to the same load without them. Not part of `all`.
    Silent(silent::SilentArgs),
    /// N Watch streams from revision 0 whose client never reads: the server's memory until it
    /// stops growing (bounded by `watch_buffer_bytes` per stream), and durable writes while
    /// they stay open, next to the same writes without them. Not part of `all`.
    Stalled(stalled::StalledArgs),
    /// Every scenario with its defaults, one table.
    All,
    /// (internal) Runs a dev-mode mapreg server: the child process of every scenario.
    #[command(hide = true)]
    Server {
        data_dir: PathBuf,
        listen: SocketAddr,
    },
    /// (internal) Runs the bare tonic baseline server.
    #[command(hide = true)]
    Echo { listen: SocketAddr },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let opts = Opts {
        endpoint: cli.endpoint,
        token: cli.token,
        json: cli.json,
    };
    rt.block_on(async move {
        let rows = match cli.scenario {
            Scenario::Server { data_dir, listen } => return server(data_dir, listen).await,
            Scenario::Echo { listen } => return echo::serve(listen).await,
            Scenario::Unary(a) => unary::unary(&opts, &a).await?,
            Scenario::Fanout(a) => feed::fanout(&opts, &a).await?,
            Scenario::Idle(a) => feed::idle(&opts, &a).await?,
            Scenario::Snapshot(a) => feed::snapshot(&opts, &a).await?,
            Scenario::Resolve(a) => unary::resolve(&opts, &a).await?,
            Scenario::Scale(a) => scale::scale(&opts, &a).await?,
            Scenario::Silent(a) => silent::silent(&opts, &a).await?,
            Scenario::Stalled(a) => stalled::stalled(&opts, &a).await?,
            Scenario::All => {
                let mut rows = unary::unary(&opts, &Default::default()).await?;
                rows.extend(unary::resolve(&opts, &Default::default()).await?);
                rows.extend(feed::fanout(&opts, &Default::default()).await?);
                rows.extend(feed::idle(&opts, &Default::default()).await?);
                rows.extend(feed::snapshot(&opts, &Default::default()).await?);
                rows
            }
        };
        harness::print(&rows, opts.json);
        Ok(())
    })
}

/// The mapreg child: dev mode, logs on stderr for the parent to read; stops on SIGINT or
/// SIGTERM.
async fn server(data_dir: PathBuf, listen: SocketAddr) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let config = mapreg::config::Config {
        data_dir,
        listen,
        // Every bench client is the one dev-mode principal: the scenarios open 10 000 streams.
        max_watches_per_principal: 1_000_000,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    // Registered now, so that a SIGTERM before the server polls `stop` is not fatal.
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        #[cfg(unix)]
        let term = term.recv();
        #[cfg(not(unix))]
        let term = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    };
    mapreg::server::run(config, listener, stop).await?;
    Ok(())
}

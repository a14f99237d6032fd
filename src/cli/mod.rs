//! The `mapreg` command line: `serve`, operator helpers, and a client that mirrors
//! `aws apigatewayv2`.
//!
//! - [`argv`]: what the AWS CLI does before parsing: global options before the command name,
//!   `file://` values, `--cli-input-json`/`--cli-input-yaml`, `--generate-cli-skeleton`.
//! - [`args`]: the client subcommands and their flags (same names as the AWS CLI).
//! - [`commands`]: connects to a server, runs one client command, maps failures to exit codes.
//! - [`output`]: AWS-shaped JSON for every resource, `--query`, and the `--output` formats
//!   ([`text`], [`yaml`], tables).
//! - [`deploy`]: `deploy`, `delete-stack`, `describe-stack-resources` (CloudFormation).
//! - [`shorthand`]: parsers for the AWS shorthand syntax (`--tags k=v,k2=v2`, ...).
//! - [`snapshot`]: `snapshot save` (from a running server) and `snapshot restore` (offline).
//! - [`error`]: client-side failures, their AWS-style messages and exit codes.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

pub mod args;
pub mod argv;
pub mod commands;
pub mod deploy;
pub mod error;
pub mod fleet;
pub mod output;
pub mod shorthand;
pub mod snapshot;
pub mod text;
pub mod yaml;

pub use args::ClientCommand;
pub use commands::run_client;
pub use error::{EXIT_OTHER, EXIT_SERVICE, EXIT_USAGE};

/// Command-line interface of the `mapreg` binary.
#[derive(Debug, Parser)]
#[command(
    name = "mapreg",
    version,
    about = "Self-hosted registry of API Gateway v2 style API mappings"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server.
    Serve(ServeArgs),
    /// Print the SHA-256 of a token, for the `sha256` field of a `[[tokens]]` entry.
    HashToken {
        /// The bearer token.
        token: String,
    },
    /// Check a data dir offline (the server must be stopped): indexes agree with the records,
    /// every mapping's domain, API and stage exist, no domain mixes WebSocket with HTTP/REST,
    /// the change log has no gap or duplicate. Exit 0 when consistent, 1 with a report if not.
    /// With --store etcd://..., checks that store (best with its writers stopped).
    Check {
        /// The data dir to check.
        #[arg(long, env = "MAPREG_DATA_DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// The store to check: sled (the data dir, default) or etcd://HOST:PORT[,...][/PREFIX].
        #[arg(long, env = "MAPREG_STORE", value_name = "STORE")]
        store: Option<crate::config::Store>,
    },
    /// Print a shell completion script: `source <(mapreg completion bash)`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Save a running server's state into a file, or restore one into a new data dir.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// A client command (create-api, get-api-mappings, watch, ...).
    #[command(flatten)]
    Client(ClientCommand),
    /// get-gateways, wait-for-gateways, get-history.
    #[command(flatten)]
    Fleet(fleet::FleetCommand),
    /// A CloudFormation stack command (deploy, delete-stack, describe-stack-resources).
    #[command(flatten)]
    Stack(deploy::StackCommand),
}

/// Flags of `mapreg serve`; each overrides the config file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Data directory (default ./mapreg-data).
    #[arg(long, env = "MAPREG_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Storage: sled (in --data-dir, the default) or etcd://HOST:PORT[,HOST:PORT...][/PREFIX],
    /// shared by any number of nodes.
    #[arg(long, env = "MAPREG_STORE", value_name = "STORE")]
    pub store: Option<crate::config::Store>,
    /// On etcd: seconds to wait at start for a store that cannot be reached, retrying with
    /// backoff, before exiting (default 60; 0: one try).
    #[arg(long, env = "MAPREG_STORE_WAIT_SECONDS", value_name = "S")]
    pub store_wait_seconds: Option<u64>,
    /// Address to listen on (default 127.0.0.1:50051).
    #[arg(long, env = "MAPREG_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// TOML config file (tokens, limits).
    #[arg(long, env = "MAPREG_CONFIG")]
    pub config: Option<PathBuf>,
    /// Revisions kept in the change log (default 100000).
    #[arg(long)]
    pub watch_history: Option<u64>,
    /// The server's certificate chain (PEM): serve TLS only (needs --tls-key).
    #[arg(long, env = "MAPREG_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "MAPREG_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM): clients must present a certificate one of them signed.
    #[arg(long, env = "MAPREG_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Allow listening on a non-loopback address without TLS.
    #[arg(long)]
    pub insecure_plaintext: bool,
    /// Most connections open at once (default 10000).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Close a connection that sent no request this long after connecting (default 10000).
    #[arg(long, value_name = "MS")]
    pub first_request_timeout_ms: Option<u64>,
    /// Serve a store that is behind its high-water mark (a copy restored on purpose).
    #[arg(long)]
    pub accept_rollback: bool,
    /// Bytes one Watch stream may hold queued for a slow client (default 1048576).
    #[arg(long, value_name = "BYTES")]
    pub watch_buffer_bytes: Option<usize>,
    /// Watch streams one principal may hold open (default 1000).
    #[arg(long, value_name = "N")]
    pub max_watches_per_principal: Option<usize>,
    /// Serve Prometheus metrics on GET /metrics at this address (its own listener).
    #[arg(long, env = "MAPREG_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Drop a gateway from get-gateways after this many seconds without a report (default 300).
    #[arg(long, value_name = "S")]
    pub gateway_expiry_seconds: Option<u64>,
    /// The URL other nodes of a shared store reach this one at (default: the listen address).
    #[arg(long, env = "MAPREG_ADVERTISE_URL", value_name = "URL")]
    pub advertise_url: Option<String>,
    /// Log format on stderr: text (default) or json (one object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How `mapreg serve` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (tracing-subscriber's json format).
    Json,
}

impl ServeArgs {
    /// The effective configuration: defaults, then the file, then flags.
    pub fn config(&self) -> Result<Config, crate::config::ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        // Each flag given replaces the file's value (of a setting of the same name).
        macro_rules! given {
            ($($flag:ident),* $(,)?) => {$(
                if let Some(v) = &self.$flag {
                    config.$flag = v.clone().into();
                }
            )*};
        }
        given!(
            data_dir,
            store,
            store_wait_seconds,
            listen,
            watch_history,
            tls_cert,
            tls_key,
            tls_client_ca,
            watch_buffer_bytes,
            max_watches_per_principal,
            max_connections,
            first_request_timeout_ms,
            metrics_listen,
            gateway_expiry_seconds,
            advertise_url,
        );
        config.insecure_plaintext |= self.insecure_plaintext;
        config.accept_rollback |= self.accept_rollback;
        config.check()?;
        Ok(config)
    }
}

/// `mapreg completion SHELL`: the completion script of every command and flag.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "mapreg", &mut out);
    out
}

/// `mapreg check --store ...`: [`run_check`] for a data dir (sled), or the same checks on an
/// etcd store (no high-water mark there: etcd is the durable truth). Exit codes as
/// [`run_check`]; an etcd prefix with nothing under it, or an etcd that cannot be reached,
/// is 2.
pub fn run_check_store(store: &crate::config::Store, data_dir: &std::path::Path) -> u8 {
    use std::sync::Arc;
    let url = match store {
        crate::config::Store::Sled => return run_check(data_dir),
        crate::config::Store::Etcd(url) => url,
    };
    let opened = crate::store::etcd::EtcdEngine::open(url).and_then(|e| {
        let id = e.existing_store_id()?;
        let engine: Arc<dyn crate::store::Engine> = Arc::new(e);
        Ok((engine, id))
    });
    match opened {
        Ok((engine, Some(store_id))) => report(&url.to_string(), engine, &store_id, None),
        Ok((_, None)) => {
            eprintln!("{url} is not a mapreg store (nothing under its prefix)");
            2
        }
        Err(e) => {
            eprintln!("cannot open {url}: {e}");
            2
        }
    }
}

/// `mapreg check`: prints a report and returns the exit code (0 consistent, 1 violations,
/// 2 the data dir cannot be opened).
pub fn run_check(data_dir: &std::path::Path) -> u8 {
    use std::sync::Arc;
    if !data_dir.join("conf").exists() && !data_dir.join("db").exists() {
        eprintln!("{} is not a mapreg data dir", data_dir.display());
        return 2;
    }
    let opened = crate::store::sled::SledEngine::open(data_dir).and_then(|s| {
        let engine: Arc<dyn crate::store::Engine> = Arc::new(s);
        let store_id = engine.store_id(&String::new)?;
        Ok((engine, store_id))
    });
    let (engine, store_id) = match opened {
        Ok(o) => o,
        Err(e @ crate::error::Error::Corrupt(_)) => {
            eprintln!("{} is corrupt: {e}", data_dir.display());
            return 2;
        }
        Err(e) => {
            eprintln!("cannot open {}: {e}", data_dir.display());
            return 2;
        }
    };
    report(
        &data_dir.display().to_string(),
        engine,
        &store_id,
        Some(data_dir),
    )
}

/// Checks the store `engine` (named `name` in the report) and prints the report; with a data
/// dir, also checks the store is not behind its high-water mark.
fn report(
    name: &str,
    engine: std::sync::Arc<dyn crate::store::Engine>,
    store_id: &str,
    data_dir: Option<&std::path::Path>,
) -> u8 {
    let checked = crate::store::catch_corruption("reading the store", || {
        let mut report = crate::store::check::check(engine.as_ref())?;
        // The high-water mark: the store must not be behind what was acknowledged.
        let mark = match data_dir {
            Some(dir) => crate::store::highwater::read(&crate::store::highwater::path(dir)),
            None => Ok(None),
        };
        match mark {
            Ok(Some(mark)) => {
                let hashes = crate::store::registry::load_history(engine.as_ref(), report.revision);
                let why =
                    crate::store::highwater::refusal(&mark, store_id, report.revision, |r| {
                        Ok(hashes.as_ref().ok().and_then(|h| h.get(r)))
                    })?;
                if let Some(why) = why {
                    report.problems.push(why);
                }
            }
            Ok(None) => {}
            Err(e) => report.problems.push(e.to_string()),
        }
        Ok(report)
    });
    match checked {
        Ok(report) => {
            let [apis, stages, domains, mappings] = report.counts;
            println!(
                "{}: store {} at revision {} (log {} entries after compaction point {}); \
                 {apis} APIs, {stages} stages, {domains} domain names, {mappings} API mappings",
                name, store_id, report.revision, report.log_entries, report.compact_revision
            );
            if report.ok() {
                println!("consistent");
                0
            } else {
                for p in &report.problems {
                    println!("VIOLATION: {p}");
                }
                println!("{} violation(s)", report.problems.len());
                1
            }
        }
        Err(e @ crate::error::Error::Corrupt(_)) => {
            eprintln!("{} is corrupt: {e}", name);
            2
        }
        Err(e) => {
            eprintln!("cannot read {}: {e}", name);
            2
        }
    }
}

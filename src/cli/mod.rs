//! The `mapreg` command line: `serve`, operator helpers, and a client that mirrors
//! `aws apigatewayv2`.
//!
//! - [`args`]: the client subcommands and their flags (same names as the AWS CLI).
//! - [`commands`]: connects to a server, runs one client command, maps failures to exit codes.
//! - [`output`]: AWS-shaped JSON (and a plain table) for every resource.
//! - [`deploy`]: `deploy`, `delete-stack`, `describe-stack-resources` (CloudFormation).
//! - [`shorthand`]: parsers for the AWS shorthand syntax (`--tags k=v,k2=v2`, ...).
//! - [`error`]: client-side failures, their AWS-style messages and exit codes.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

pub mod args;
pub mod commands;
pub mod deploy;
pub mod error;
pub mod output;
pub mod shorthand;

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
    Check {
        /// The data dir to check.
        #[arg(long, env = "MAPREG_DATA_DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// A client command (create-api, get-api-mappings, watch, ...).
    #[command(flatten)]
    Client(ClientCommand),
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
}

impl ServeArgs {
    /// The effective configuration: defaults, then the file, then flags.
    pub fn config(&self) -> Result<Config, crate::config::ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(l) = self.listen {
            config.listen = l;
        }
        if let Some(h) = self.watch_history {
            config.watch_history = h;
        }
        if let Some(f) = &self.tls_cert {
            config.tls_cert = Some(f.clone());
        }
        if let Some(f) = &self.tls_key {
            config.tls_key = Some(f.clone());
        }
        if let Some(f) = &self.tls_client_ca {
            config.tls_client_ca = Some(f.clone());
        }
        config.insecure_plaintext |= self.insecure_plaintext;
        if let Some(n) = self.max_connections {
            config.max_connections = n;
        }
        if let Some(ms) = self.first_request_timeout_ms {
            config.first_request_timeout_ms = ms;
        }
        config.check()?;
        Ok(config)
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
        Err(e) => {
            eprintln!(
                "cannot open {} (is a server still running on it?): {e}",
                data_dir.display()
            );
            return 2;
        }
    };
    match crate::store::check::check(engine.as_ref()) {
        Ok(report) => {
            let [apis, stages, domains, mappings] = report.counts;
            println!(
                "{}: store {} at revision {} (log {} entries after compaction point {}); \
                 {apis} APIs, {stages} stages, {domains} domain names, {mappings} API mappings",
                data_dir.display(),
                store_id,
                report.revision,
                report.log_entries,
                report.compact_revision
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
        Err(e) => {
            eprintln!("cannot read {}: {e}", data_dir.display());
            2
        }
    }
}

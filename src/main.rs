//! The `mapreg` binary: parses flags, sets up logging, and runs the server or a client command.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mapreg::cli::{Cli, Command, LogFormat, ServeArgs};

/// mimalloc: the registry is many small records and index entries in persistent maps; glibc's
/// allocator spent a third of a 1 000 000-mapping startup consolidating and unlinking chunks.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args = match mapreg::cli::argv::prepare(std::env::args_os().collect()) {
        Ok(mapreg::cli::argv::Prepared::Args(args)) => args,
        Ok(mapreg::cli::argv::Prepared::Print(text)) => {
            return match std::io::stdout().write_all(text.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(mapreg::cli::EXIT_OTHER),
            };
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; a bad command line is 252, as
            // in the AWS CLI.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                mapreg::cli::EXIT_USAGE
            } else {
                0
            });
        }
    };
    match cli.command {
        Command::Serve(args) => match serve(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "Error: {e:?}");
                // A damaged or rolled-back data dir: 2, as `mapreg check` says "corrupt".
                let corrupt = matches!(
                    e.downcast_ref::<mapreg::server::ServeError>(),
                    Some(mapreg::server::ServeError::Store {
                        source: mapreg::error::Error::Corrupt(_),
                        ..
                    })
                );
                ExitCode::from(if corrupt { 2 } else { 1 })
            }
        },
        Command::HashToken { token } => {
            match writeln!(std::io::stdout(), "{}", mapreg::auth::token_hash(&token)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(mapreg::cli::EXIT_OTHER),
            }
        }
        Command::Check { data_dir, store } => ExitCode::from(mapreg::cli::run_check_store(
            &store.unwrap_or_default(),
            &data_dir,
        )),
        Command::Completion { shell } => {
            match std::io::stdout().write_all(&mapreg::cli::completion_script(shell)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(mapreg::cli::EXIT_OTHER),
            }
        }
        Command::Snapshot(cmd) => ExitCode::from(mapreg::cli::snapshot::run(cmd).await),
        Command::Client(cmd) => ExitCode::from(mapreg::cli::run_client(cmd).await),
        Command::Fleet(cmd) => ExitCode::from(mapreg::cli::fleet::run(cmd).await),
        Command::Stack(cmd) => ExitCode::from(mapreg::cli::deploy::run_stack(cmd).await),
    }
}

/// `mapreg serve`: logs to stderr (text, colored only on a terminal, or JSON lines with
/// `--log-format json`), runs until SIGINT or SIGTERM; SIGHUP reads the config file (and
/// flags) again and reloads tokens, clients and certificates.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    let config = args.config()?;
    config.check_listen()?;
    // Before the listener exists, so that a SIGHUP never finds the default action (exit).
    let reloads = reload_signal(args)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    mapreg::server::run_with_reloads(config, listener, shutdown_signal(), reloads).await?;
    Ok(())
}

/// The configuration as read again at each SIGHUP; a file that cannot be read or checked is
/// logged and skipped.
fn reload_signal(
    args: ServeArgs,
) -> anyhow::Result<tokio_stream::wrappers::ReceiverStream<mapreg::config::Config>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    #[cfg(unix)]
    {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot handle SIGHUP")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading tokens, clients and certificates");
                match args.config() {
                    Ok(config) => {
                        if tx.send(config).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "configuration reload refused; the running credentials and certificates stay"
                    ),
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop((args, tx));
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

//! `mapreg snapshot save FILE` and `mapreg snapshot restore FILE --data-dir DIR` (SPEC.md 8.3).
//!
//! - `save` is a client command (same `--endpoint-url`, `--token` and TLS flags as the
//!   others): it reads a Watch snapshot (`start_revision` 0) to its `snapshot_complete` and
//!   writes every record with the store's id, the revision and its history hash into FILE
//!   (written to `FILE.tmp`, made durable, then renamed: FILE is whole or absent). It saves
//!   what the caller may watch: a gateway token (or a dev-mode server) saves the whole store,
//!   an account's token that account's records.
//! - `restore` runs offline on a data dir no server uses; see
//!   [`store::snapshot`](crate::store::snapshot) for the format and what it checks.
//!
//! Exit codes of `restore`: 0 restored; 1 refused (DIR is not empty, the records break a
//! rule, a file cannot be read or written); 2 the snapshot file is damaged (truncated,
//! garbled, another format), as `mapreg check` says 2 for a corrupt data dir. `save` exits as
//! the other client commands do (254 the service refused, 255 no connection or cannot write).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;

use super::args::ClientOptions;
use super::commands::channel;
use super::error::CliError;
use crate::pb::change_feed_client::ChangeFeedClient;
use crate::pb::watch_response::Kind;
use crate::store::snapshot::{self, Footer, SnapshotError};

/// `mapreg snapshot ...`.
// Parsed once per process: the size of `Save`'s client options does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotCommand {
    /// Save the state of a running server at one revision into FILE (a Watch snapshot: any
    /// role that may Watch what it saves).
    Save {
        /// The snapshot file to write (replaced whole once complete).
        file: PathBuf,
        /// Endpoint, token, TLS.
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Make a NEW data dir (a new store_id) at the state saved in FILE; offline. Refuses a
    /// damaged file (exit 2), records that break a rule, and a DIR that is not empty (exit 1).
    Restore {
        /// A file written by `mapreg snapshot save`.
        file: PathBuf,
        /// The data dir to create (must not exist, or be empty).
        #[arg(long, env = "MAPREG_DATA_DIR")]
        data_dir: PathBuf,
    },
}

/// Runs `cmd`, prints what it did (or why not, on stderr) and returns the exit code.
pub async fn run(cmd: SnapshotCommand) -> u8 {
    match cmd {
        SnapshotCommand::Save { file, options } => match save(&file, &options).await {
            Ok(()) => 0,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "{e}");
                e.exit_code()
            }
        },
        SnapshotCommand::Restore { file, data_dir } => restore(&file, &data_dir),
    }
}

fn restore(file: &Path, data_dir: &Path) -> u8 {
    match snapshot::restore(file, data_dir) {
        Ok(r) => {
            println!(
                "{}",
                json!({
                    "DataDir": data_dir.display().to_string(),
                    "StoreId": r.store_id,
                    "SavedStoreId": r.old_store_id,
                    "Revision": r.revision,
                    "Records": r.records,
                })
            );
            0
        }
        Err(e) => {
            eprintln!("snapshot restore refused: {e}");
            match e {
                SnapshotError::Damaged { .. } => 2,
                _ => 1,
            }
        }
    }
}

async fn save(file: &Path, options: &ClientOptions) -> Result<(), CliError> {
    let (channel, bearer) = channel(options).await?;
    let mut feed =
        ChangeFeedClient::with_interceptor(channel, bearer).max_decoding_message_size(usize::MAX);
    let mut stream = feed
        .watch(crate::pb::WatchRequest {
            start_revision: 0,
            ..Default::default()
        })
        .await
        .map_err(|s| CliError::service("Watch", s))?
        .into_inner();
    let tmp = tmp_path(file);
    let out = std::fs::File::create(&tmp)?;
    let mut w = snapshot::Writer::new(std::io::BufWriter::new(out))?;
    let written = async {
        loop {
            let m = stream
                .message()
                .await
                .map_err(|s| CliError::service("Watch", s))?
                .ok_or_else(|| CliError::Decode {
                    operation: "Watch",
                    reason: "the stream ended before the snapshot was complete".into(),
                })?;
            match m.kind {
                Some(Kind::Snapshot(s)) => {
                    for r in &s.resources {
                        w.record(r)?;
                    }
                }
                Some(Kind::SnapshotComplete(_)) => {
                    let footer = Footer {
                        store_id: m.store_id,
                        revision: m.revision,
                        history_hash: m.history_hash,
                        records: 0,
                    };
                    let (out, footer) = w.finish(footer)?;
                    let out = out.into_inner().map_err(|e| e.into_error())?;
                    out.sync_all()?;
                    return Ok::<Footer, CliError>(footer);
                }
                _ => {}
            }
        }
    }
    .await;
    let footer = match written {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, file)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{}",
        serde_json::to_string_pretty(&json!({
            "File": file.display().to_string(),
            "StoreId": footer.store_id,
            "Revision": footer.revision,
            "HistoryHash": hex::encode(&footer.history_hash),
            "Records": footer.records,
        }))
        .map_err(std::io::Error::other)?
    )?;
    Ok(())
}

/// `FILE.tmp`, beside FILE.
fn tmp_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

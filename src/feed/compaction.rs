//! Background compaction of the change log: keeps the last `watch_history` revisions.
//!
//! The compaction point is raised (durably) before entries are removed, so a watcher reading
//! the log either finds an entry or learns it is compacted; never a silent gap. Compaction runs
//! in batches (every `history / 16` revisions, at least 1) on a blocking thread, never on the
//! writer thread.

use std::sync::Arc;

use super::Hub;

/// How many revisions past the window the log may grow before a compaction runs.
pub fn slack(history: u64) -> u64 {
    (history / 16).max(1)
}

/// Compacts `hub`'s log whenever it holds more than `history + slack(history)` revisions, until
/// the hub closes. `history` 0 keeps everything.
pub async fn run(hub: Arc<Hub>, history: u64) {
    if history == 0 {
        return;
    }
    let mut durable = hub.durable_updates();
    let mut closed = hub.closed();
    let mut compacted = match hub.registry().compact_revision() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the compaction point; compaction is off");
            return;
        }
    };
    loop {
        let current = *durable.borrow_and_update();
        if current > compacted + history + slack(history) {
            let upto = current - history;
            let registry = hub.registry().clone();
            match tokio::task::spawn_blocking(move || registry.compact(upto)).await {
                Ok(Ok(removed)) => {
                    tracing::debug!(upto, removed, "change log compacted");
                    compacted = upto;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "change log compaction failed; retrying in 1 s");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "change log compaction panicked; retrying in 1 s");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
            continue;
        }
        tokio::select! {
            r = durable.changed() => if r.is_err() { return },
            _ = closed.wait_for(|c| *c) => return,
        }
    }
}

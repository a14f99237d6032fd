//! Storage: a small engine-agnostic key-value + transaction trait ([`Store`]), its sled adapter
//! ([`sled::SledStore`]), the registry's records and indexes on top of it ([`Db`]), and the single
//! writer thread that commits and flushes in groups ([`writer`]).
//!
//! Every write RPC becomes one [`Store::transact`] call that reads what its rules need by exact
//! key, writes the records, the indexes, the revision counter and the change log entry of its
//! revision, and commits all of it atomically. The writer then flushes once for the whole group
//! before any of the group's callers gets an answer.

pub mod check;
pub mod codec;
pub mod db;
pub mod keys;
pub mod sled;
pub mod writer;

use crate::error::{Error, Result};

pub use db::{Committed, Db, Limits, Page, Scope, TouchObserver, WriteOp, WriteResult};

/// The three key spaces of a store: records and indexes, the change log, and metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// Records and the indexes that make every rule check one `get`.
    Data,
    /// The change log: big-endian revision -> that revision's `ChangeSet`.
    Log,
    /// The revision counter, the store id, the compaction point.
    Meta,
}

/// Why a transaction body stopped.
#[derive(Debug)]
pub enum TxError {
    /// A rule refused the write: abort, nothing is applied, the caller sees this error.
    Abort(Error),
    /// The engine saw a conflicting concurrent transaction; the body will be run again.
    Conflict,
    /// The engine failed.
    Io(std::io::Error),
}

impl From<Error> for TxError {
    fn from(e: Error) -> Self {
        TxError::Abort(e)
    }
}

/// Reads and writes inside one transaction. Reads see the transaction's own writes.
pub trait Txn {
    /// The value at `key`, if any.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, TxError>;
    /// Sets `key` to `value`.
    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), TxError>;
    /// Removes `key` (absent is fine).
    fn delete(&self, space: Space, key: &[u8]) -> Result<(), TxError>;
}

/// Ordered key-value pairs from a scan.
pub type KvIter = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + Send>;

/// The storage engine behind the registry. An implementation guarantees that a successful
/// [`transact`](Store::transact) is atomic (all or nothing, also across a crash once flushed),
/// that [`flush`](Store::flush) makes every committed transaction durable, and that a single
/// `get` never sees half of a transaction.
pub trait Store: Send + Sync + 'static {
    /// The value at `key`, if any.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Keys starting with `prefix` and strictly greater than `prefix + after`, in byte order.
    fn scan(&self, space: Space, prefix: &[u8], after: Option<&[u8]>) -> KvIter;
    /// Runs `body` as one atomic transaction; may run it more than once on conflicts.
    fn transact(&self, body: &dyn Fn(&dyn Txn) -> Result<(), TxError>) -> Result<()>;
    /// Makes every committed transaction durable. Returns when the data is on disk.
    fn flush(&self) -> Result<()>;
    /// Removes `key` outside any transaction (compaction of the change log).
    fn remove(&self, space: Space, key: &[u8]) -> Result<()>;
}

/// Runs `body` in one transaction of `store` and returns what it produced.
pub fn transact<R>(store: &dyn Store, body: impl Fn(&dyn Txn) -> Result<R, TxError>) -> Result<R> {
    let out = std::cell::RefCell::new(None);
    store.transact(&|tx| {
        let r = body(tx)?;
        *out.borrow_mut() = Some(r);
        Ok(())
    })?;
    out.into_inner()
        .ok_or_else(|| Error::internal("transaction committed without a result"))
}

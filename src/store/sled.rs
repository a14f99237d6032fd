//! The sled adapter of [`Store`]: three trees (`data`, `log`, `meta`) and sled's multi-tree
//! transactions, which are atomic and, once flushed, durable across a crash.

use std::ops::Bound;
use std::path::Path;

use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

use super::{KvIter, Space, Store, TxError, Txn};
use crate::error::{Error, Result};

/// A [`Store`] in a sled database directory.
pub struct SledStore {
    db: sled::Db,
    data: sled::Tree,
    log: sled::Tree,
    meta: sled::Tree,
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(256 * 1024 * 1024)
            .open()?;
        Ok(SledStore {
            data: db.open_tree("data")?,
            log: db.open_tree("log")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    fn tree(&self, space: Space) -> &sled::Tree {
        match space {
            Space::Data => &self.data,
            Space::Log => &self.log,
            Space::Meta => &self.meta,
        }
    }
}

struct SledTxn<'a> {
    data: &'a TransactionalTree,
    log: &'a TransactionalTree,
    meta: &'a TransactionalTree,
}

impl SledTxn<'_> {
    fn tree(&self, space: Space) -> &TransactionalTree {
        match space {
            Space::Data => self.data,
            Space::Log => self.log,
            Space::Meta => self.meta,
        }
    }
}

fn tx_err(e: UnabortableTransactionError) -> TxError {
    match e {
        UnabortableTransactionError::Conflict => TxError::Conflict,
        UnabortableTransactionError::Storage(e) => TxError::Io(e.into()),
    }
}

impl Txn for SledTxn<'_> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        self.tree(space)
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(tx_err)
    }

    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        self.tree(space)
            .insert(key, value)
            .map(|_| ())
            .map_err(tx_err)
    }

    fn delete(&self, space: Space, key: &[u8]) -> Result<(), TxError> {
        self.tree(space).remove(key).map(|_| ()).map_err(tx_err)
    }
}

impl Store for SledStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree(space).get(key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, space: Space, prefix: &[u8], after: Option<&[u8]>) -> KvIter {
        let prefix = prefix.to_vec();
        let start = match after {
            Some(after) => {
                let mut k = prefix.clone();
                k.extend_from_slice(after);
                Bound::Excluded(k)
            }
            None => Bound::Included(prefix.clone()),
        };
        let iter = self
            .tree(space)
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take_while(move |item| match item {
                Ok((k, _)) => k.starts_with(&prefix),
                Err(_) => true,
            })
            .map(|item| {
                item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(Error::from)
            });
        Box::new(iter)
    }

    fn transact(&self, body: &dyn Fn(&dyn Txn) -> Result<(), TxError>) -> Result<()> {
        let r = (&self.data, &self.log, &self.meta).transaction(|(data, log, meta)| {
            let tx = SledTxn { data, log, meta };
            body(&tx).map_err(|e| match e {
                TxError::Abort(e) => ConflictableTransactionError::Abort(e),
                TxError::Conflict => ConflictableTransactionError::Conflict,
                TxError::Io(e) => ConflictableTransactionError::Storage(sled::Error::Io(e)),
            })
        });
        match r {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn remove(&self, space: Space, key: &[u8]) -> Result<()> {
        self.tree(space).remove(key)?;
        Ok(())
    }
}

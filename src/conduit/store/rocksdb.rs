//! The RocksDB backend: one column family per tree, RocksDB's default bytewise comparator, the
//! same RocksDB release Conduit v0.10.12 links (10.2.1, via rust-rocksdb 0.41.0).
//!
//! Writes collect in an ordered overlay that reads see, and reach the database in one atomic
//! WriteBatch at `commit`, so an interrupted write never leaves data the stored counter does not
//! cover.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rocksdb::{
    ColumnFamilyDescriptor, DBWithThreadMode, IteratorMode, MultiThreaded, Options, WriteBatch,
};

use super::Store;
use crate::conduit::schema::TREES;
use crate::error::{Error, Result};

type Db = DBWithThreadMode<MultiThreaded>;

pub struct RocksStore {
    path: PathBuf,
    db: Db,
    /// Per tree (indexed like [`TREES`]): key → new value, or `None` for a deletion.
    overlay: Vec<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
}

fn options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    // Conduit reads LZ4 and Zstd (and more); Conduit itself uses these two.
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o.set_bottommost_compression_type(rocksdb::DBCompressionType::Zstd);
    // One memory budget for the memtables of all 86 column families (each would otherwise
    // take up to 64 MiB), so the writer's memory stays flat however much it writes.
    o.set_db_write_buffer_size(128 << 20);
    o
}

/// A tree's index in [`TREES`].
fn tree_index(tree: &str) -> Result<usize> {
    static INDEX: std::sync::OnceLock<std::collections::HashMap<&'static str, usize>> =
        std::sync::OnceLock::new();
    INDEX
        .get_or_init(|| TREES.iter().enumerate().map(|(i, t)| (*t, i)).collect())
        .get(tree)
        .copied()
        .ok_or_else(|| Error::Config(format!("unknown Conduit tree {tree}")))
}

impl RocksStore {
    /// Opens (creating if needed) the RocksDB directory with every tree's column family. Fails
    /// clearly when another process holds RocksDB's LOCK (a running Conduit).
    pub fn open(dir: &Path) -> Result<Self> {
        let err = |e: rocksdb::Error| Error::Conduit(format!("{}: {e}", dir.display()));
        let mut names: Vec<String> = Db::list_cf(&Options::default(), dir).unwrap_or_default();
        for t in TREES {
            if !names.iter().any(|n| n == t) {
                names.push(t.to_owned());
            }
        }
        let cfs = names
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(n, options()));
        let db = Db::open_cf_descriptors(&options(), dir, cfs).map_err(err)?;
        Ok(RocksStore {
            path: dir.to_owned(),
            db,
            overlay: TREES.iter().map(|_| BTreeMap::new()).collect(),
        })
    }

    fn err(&self, e: rocksdb::Error) -> Error {
        Error::Conduit(format!("{}: {e}", self.path.display()))
    }
}

impl Store for RocksStore {
    fn get(&mut self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let i = tree_index(tree)?;
        if let Some(v) = self.overlay[i].get(key) {
            return Ok(v.clone());
        }
        let cf = self
            .db
            .cf_handle(TREES[i])
            .expect("every tree's column family is opened");
        self.db.get_cf(&cf, key).map_err(|e| self.err(e))
    }

    fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let i = tree_index(tree)?;
        self.overlay[i].insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, tree: &str, key: &[u8]) -> Result<()> {
        let i = tree_index(tree)?;
        self.overlay[i].insert(key.to_vec(), None);
        Ok(())
    }

    fn scan_prefix(&mut self, tree: &str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let i = tree_index(tree)?;
        let mut out: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        {
            let cf = self
                .db
                .cf_handle(TREES[i])
                .expect("every tree's column family is opened");
            let iter = self
                .db
                .iterator_cf(&cf, IteratorMode::From(prefix, rocksdb::Direction::Forward));
            for item in iter {
                let (k, v) = item.map_err(|e| self.err(e))?;
                if !k.starts_with(prefix) {
                    break;
                }
                out.insert(k.to_vec(), v.to_vec());
            }
        }
        for (k, v) in self.overlay[i]
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        Ok(out.into_iter().collect())
    }

    fn commit(&mut self) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (i, tree) in self.overlay.iter_mut().enumerate() {
            if tree.is_empty() {
                continue;
            }
            let cf = self
                .db
                .cf_handle(TREES[i])
                .expect("every tree's column family is opened");
            for (k, v) in std::mem::take(tree) {
                match v {
                    Some(v) => batch.put_cf(&cf, k, v),
                    None => batch.delete_cf(&cf, k),
                }
            }
        }
        self.db.write(batch).map_err(|e| self.err(e))?;
        self.db.flush_wal(true).map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_reads_atomic_commit_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RocksStore::open(dir.path()).unwrap();
        s.put("roomuserid_joined", b"!r\xff@b:s", b"").unwrap();
        s.commit().unwrap();
        s.put("roomuserid_joined", b"!r\xff@a:s", b"").unwrap();
        s.delete("roomuserid_joined", b"!r\xff@b:s").unwrap();
        let keys: Vec<_> = s
            .scan_prefix("roomuserid_joined", b"!r\xff")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            vec![b"!r\xff@a:s".to_vec()],
            "the overlay is seen by scans"
        );
        // A second opener (another process in real life) is refused by RocksDB's LOCK.
        assert!(RocksStore::open(dir.path()).is_err());
        drop(s);
        let mut s = RocksStore::open(dir.path()).unwrap();
        assert!(
            s.get("roomuserid_joined", b"!r\xff@b:s").unwrap().is_some(),
            "uncommitted delete was not applied"
        );
        assert!(
            s.get("roomuserid_joined", b"!r\xff@a:s").unwrap().is_none(),
            "uncommitted put was not applied"
        );
    }
}

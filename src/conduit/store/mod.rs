//! Conduit's key-value storage, as a writer sees it: named trees of ordered byte keys.
//! One implementation per backend; everything above this module is backend-neutral.

mod batch;
pub mod rocksdb;
pub mod sqlite;

use std::path::Path;

use crate::error::{Error, Result};

/// A Conduit database opened for writing (Conduit must be stopped).
pub trait Store {
    /// A value, if the key exists.
    fn get(&mut self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Inserts or replaces a value. Nothing is durable before [`Store::commit`]; the writer
    /// commits only together with the counter, so a resumed write never reuses a count.
    fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<()>;
    /// Removes a key (no error if absent).
    fn delete(&mut self, tree: &str, key: &[u8]) -> Result<()>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&mut self, tree: &str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Makes every write so far atomic: after a crash the database holds all of it or none
    /// of it (and all earlier commits, or a consistent prefix of them).
    fn commit(&mut self) -> Result<()>;
    /// About how many bytes of writes since the last commit this process holds in memory (0
    /// where the database holds them itself, as SQLite's transaction does).
    fn uncommitted_bytes(&self) -> usize {
        0
    }
    /// Commits and makes every write so far durable on disk (the end of a write).
    fn sync(&mut self) -> Result<()> {
        self.commit()
    }
}

/// Which backend a database uses.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Rocksdb,
    Sqlite,
}

impl Backend {
    /// Opens (creating if needed) the database at `path` with this backend.
    pub fn open(self, path: &Path) -> Result<Box<dyn Store + Send>> {
        Ok(match self {
            Backend::Rocksdb => Box::new(rocksdb::RocksStore::open(path)?),
            Backend::Sqlite => Box::new(sqlite::SqliteStore::open(path)?),
        })
    }
}

/// Refuses a database that a running process (Conduit) has open. Conduit keeps its files open
/// for as long as it runs, so any process holding a file under the database path counts.
pub fn refuse_if_open(database_path: &Path) -> Result<()> {
    let Ok(target) = database_path.canonicalize() else {
        return Ok(());
    };
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Ok(());
    };
    for p in procs.flatten() {
        let name = p.file_name();
        let pid = name.to_string_lossy();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.starts_with(&target)) {
                let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                return Err(Error::Config(format!(
                    "{} is open in process {pid} ({}); stop Conduit before writing",
                    database_path.display(),
                    comm.trim()
                )));
            }
        }
    }
    Ok(())
}

/// A boxed store is a store (so code can pick the backend at run time).
impl<T: Store + ?Sized> Store for Box<T> {
    fn get(&mut self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        (**self).get(tree, key)
    }
    fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        (**self).put(tree, key, value)
    }
    fn delete(&mut self, tree: &str, key: &[u8]) -> Result<()> {
        (**self).delete(tree, key)
    }
    fn scan_prefix(&mut self, tree: &str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        (**self).scan_prefix(tree, prefix)
    }
    fn commit(&mut self) -> Result<()> {
        (**self).commit()
    }
    fn uncommitted_bytes(&self) -> usize {
        (**self).uncommitted_bytes()
    }
    fn sync(&mut self) -> Result<()> {
        (**self).sync()
    }
}

//! The RocksDB backend: one column family per tree, RocksDB's default bytewise comparator, the
//! same RocksDB release Conduit v0.10.12 links (10.2.1, via rust-rocksdb 0.41.0).
//!
//! Writes collect in a [`Batch`] that reads see. At `commit` the batch is handed to a second
//! thread, which sorts each tree's keys, builds one WriteBatch and applies it atomically while
//! the writer fills the next batch; until it is applied, reads see it through the shared
//! batch. Inserting into RocksDB's memtables was a fifth of the writer's time; keys that
//! arrive in order take a fraction of that (the skiplist reuses its last insert position). An
//! interrupted write never leaves data the stored counter does not cover.
//!
//! Why no write-ahead log: a bulk write is redone, not replayed. Batches are written with the
//! WAL off and the database uses *atomic flush*, so whatever of a run reaches disk is every
//! column family as of one commit — a consistent prefix that the counter stored in the same
//! batch covers, with the in-progress guard set. [`Store::sync`] at the end of a write flushes
//! every memtable, so a finished write is on disk before the writer reports it. The WAL's CRCs
//! and `write`s were a tenth of the writer's time.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBWithThreadMode, FlushOptions, IteratorMode,
    Options, SingleThreaded, WriteBatch, WriteBufferManager, WriteOptions,
};

use super::batch::Batch;
use super::Store;
use crate::conduit::schema::TREES;
use crate::error::{Error, Result};

/// Single-threaded only in creating and dropping column families (which a writer never does);
/// reads and writes are safe from any thread, and a column family handle is a plain reference.
type Db = DBWithThreadMode<SingleThreaded>;

/// Trees the writer only ever writes (many small keys per event): they are not indexed. A read
/// of one with writes pending waits until those are applied, so reads stay correct anyway.
const WRITE_ONLY: &[&str] = &["tokenids", "referencedevents", "tofrom_relation"];

/// The memtable budget of all 86 trees together (each would otherwise take up to 64 MiB), so
/// the writer's memory stays flat however much it writes; small in unit tests, so a few writes
/// already reach disk. 64 MiB wrote a 10^6-post import as fast as 128 or 256 did.
const WRITE_BUFFER: usize = if cfg!(test) { 1 << 20 } else { 64 << 20 };

/// The block cache of all trees together, index blocks included (see [`options`]).
const BLOCK_CACHE: usize = 32 << 20;

pub struct RocksStore {
    path: PathBuf,
    db: Arc<Db>,
    /// The writes since the last commit.
    batch: Batch,
    /// The commit the applier thread is writing, if any.
    in_flight: Option<Arc<Batch>>,
    /// An emptied batch, kept for its memory.
    spare: Option<Batch>,
    /// Per tree (indexed like [`TREES`]): not indexed (see [`WRITE_ONLY`]).
    write_only: Vec<bool>,
    /// Per tree: a write-only tree with writes not yet applied.
    pending: Vec<bool>,
    applier: Option<Applier>,
}

/// The thread that applies committed batches, one at a time.
struct Applier {
    batches: SyncSender<Arc<Batch>>,
    done: Receiver<std::result::Result<(), rocksdb::Error>>,
    thread: JoinHandle<()>,
}

fn options(cache: &Cache) -> Options {
    let mut o = Options::default();
    // One block cache for all trees, and the files' index blocks in it. RocksDB's defaults
    // give each tree a cache of its own (86 × 32 MiB at most) and keep every open file's index
    // outside any cache, which grows with the database: 3 MiB after a 250k-post import, 13 MiB
    // after 10^6. The writer rarely reads from disk (1.4 MiB of cached blocks after 10^6).
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    o.set_block_based_table_factory(&table);
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    // LZ4 below level 0, none on it. Conduit writes Zstd to the bottom level, but reads any
    // compression RocksDB has; Zstd made compaction the busiest thread of a bulk write (~60 %
    // of it) for files ~20 % smaller, and Conduit's own compactions turn them into Zstd over
    // time. Flushes write level 0, and a bulk write compacts nearly all of it into level 1
    // soon after, so compressing it is work done for nothing: a 10^6-post import used ~2 % less
    // CPU, for a database ~20 % larger until Conduit compacts the rest of level 0.
    use rocksdb::DBCompressionType::{Lz4, None as Uncompressed};
    o.set_compression_per_level(&[Uncompressed, Lz4, Lz4, Lz4, Lz4, Lz4, Lz4]);
    o.set_bottommost_compression_type(Lz4);
    // Memtables of all column families reach disk together (see the module doc).
    o.set_atomic_flush(true);
    // A bulk write makes an L0 file per tree at every flush; merging them into L1 every 4
    // files (the default) rewrites L1 over and over (tokenids' keys land all over it). Every
    // 12 files cut the write's CPU by ~15 % (1.2M events: 67 → 57 CPU-s, 40 → 37 s) and leaves
    // fewer L0 files than Conduit's own slowdown trigger (20), which it compacts in the background.
    o.set_level_zero_file_num_compaction_trigger(12);
    // A flush of all trees at once takes a while; with RocksDB's default of 2 memtables per
    // tree the apply thread stopped ("Stopping writes because we have 2 immutable memtables")
    // four times per million events until it was done. 4 lets writes go on meanwhile.
    o.set_max_write_buffer_number(4);
    o
}

/// Makes glibc's malloc, which RocksDB allocates through, give freed memtables back to the
/// system. A memtable grows in 1 MiB blocks; glibc serves blocks that big from mmap and unmaps
/// them when freed, but after the first such free it raises that threshold and keeps later
/// blocks in its heap, where they stayed resident: peak RSS of a bulk write was 26–64 MiB
/// higher. Setting the threshold (to glibc's own default) turns that adjustment off.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of the allocator; any value is valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

/// A tree's index in [`TREES`].
fn tree_index(tree: &str) -> Result<usize> {
    static INDEX: std::sync::OnceLock<rustc_hash::FxHashMap<&'static str, usize>> =
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
        let cache = Cache::new_lru_cache(BLOCK_CACHE);
        let cfs = names
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(n, options(&cache)));
        return_freed_memory();
        let mut db_options = options(&cache);
        // The memtable budget is a limit: a write waits while the memtables of all trees hold
        // more than WRITE_BUFFER. Without it (`db_write_buffer_size`, only a flush trigger) a
        // bulk write outran the flushes as compactions grew: up to 213 MiB of memtables in the
        // second half of a 10^6-post import, so peak memory grew with the import's length.
        db_options.set_write_buffer_manager(&WriteBufferManager::new_write_buffer_manager(
            WRITE_BUFFER,
            true,
        ));
        let db = Arc::new(Db::open_cf_descriptors(&db_options, dir, cfs).map_err(err)?);
        Ok(RocksStore {
            path: dir.to_owned(),
            db,
            batch: Batch::new(TREES.len()),
            in_flight: None,
            spare: None,
            write_only: TREES.iter().map(|t| WRITE_ONLY.contains(t)).collect(),
            pending: vec![false; TREES.len()],
            applier: None,
        })
    }

    fn err(&self, e: rocksdb::Error) -> Error {
        Error::Conduit(format!("{}: {e}", self.path.display()))
    }

    fn stopped(&self) -> Error {
        Error::Conduit(format!(
            "{}: the thread applying writes stopped",
            self.path.display()
        ))
    }

    fn cf(&self, i: usize) -> &rocksdb::ColumnFamily {
        cf(&self.db, i)
    }

    fn record(&mut self, i: usize, key: &[u8], value: Option<&[u8]>) {
        self.pending[i] |= self.write_only[i];
        self.batch.record(i, !self.write_only[i], key, value);
    }

    /// Waits until the batch in flight (if any) is applied.
    fn settle(&mut self) -> Result<()> {
        let Some(batch) = self.in_flight.take() else {
            return Ok(());
        };
        let applier = self
            .applier
            .as_ref()
            .expect("a batch in flight has an applier");
        match applier.done.recv() {
            Ok(applied) => applied.map_err(|e| self.err(e))?,
            Err(_) => return Err(self.stopped()),
        }
        // Keep the memory for the next commit (the applier has let go of it by now).
        if let Ok(mut batch) = Arc::try_unwrap(batch) {
            batch.clear();
            self.spare = Some(batch);
        }
        Ok(())
    }

    /// Every write so far applied to the database (nothing pending or in flight).
    fn drain(&mut self) -> Result<()> {
        self.commit()?;
        self.settle()?;
        self.pending.iter_mut().for_each(|p| *p = false);
        Ok(())
    }

    fn applier(&mut self) -> &Applier {
        let db = self.db.clone();
        self.applier.get_or_insert_with(|| {
            let (batches, rx) = sync_channel::<Arc<Batch>>(1);
            let (tx, done) = sync_channel(1);
            let thread = std::thread::Builder::new()
                .name("rocksdb-apply".into())
                .spawn(move || {
                    let mut wo = WriteOptions::default();
                    wo.disable_wal(true);
                    for batch in rx {
                        let applied = db.write_opt(write_batch(&db, &batch), &wo);
                        drop(batch);
                        if tx.send(applied).is_err() {
                            break;
                        }
                    }
                })
                .expect("a thread can be started");
            Applier {
                batches,
                done,
                thread,
            }
        })
    }
}

/// The column family of tree `i` of [`TREES`].
fn cf(db: &Db, i: usize) -> &rocksdb::ColumnFamily {
    db.cf_handle(TREES[i])
        .expect("every tree's column family is opened")
}

/// One WriteBatch of a commit, each tree's keys in order.
fn write_batch(db: &Db, batch: &Batch) -> WriteBatch {
    let mut wb = WriteBatch::with_capacity_bytes(batch.size() + 64);
    for (i, writes) in batch.sorted() {
        let cf = cf(db, i);
        for (k, v) in writes {
            match v {
                Some(v) => wb.put_cf(cf, k, v),
                None => wb.delete_cf(cf, k),
            }
        }
    }
    wb
}

impl Drop for RocksStore {
    /// Lets a batch in flight finish before the database closes.
    fn drop(&mut self) {
        if let Some(a) = self.applier.take() {
            drop(a.batches);
            let _ = a.thread.join();
        }
    }
}

impl Store for RocksStore {
    fn get(&mut self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let i = tree_index(tree)?;
        if self.write_only[i] {
            if self.pending[i] {
                self.drain()?;
            }
        } else {
            let found = self
                .batch
                .get(i, key)
                .or_else(|| self.in_flight.as_ref().and_then(|f| f.get(i, key)));
            if let Some(v) = found {
                return Ok(v.map(<[u8]>::to_vec));
            }
        }
        self.db.get_cf(self.cf(i), key).map_err(|e| self.err(e))
    }

    fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.record(tree_index(tree)?, key, Some(value));
        Ok(())
    }

    fn delete(&mut self, tree: &str, key: &[u8]) -> Result<()> {
        self.record(tree_index(tree)?, key, None);
        Ok(())
    }

    fn scan_prefix(&mut self, tree: &str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let i = tree_index(tree)?;
        if self.write_only[i] && self.pending[i] {
            self.drain()?;
        }
        // Scans are rare (once per room at most): let the batch in flight land first.
        self.settle()?;
        let mut out: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
        let iter = self.db.iterator_cf(
            self.cf(i),
            IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.insert(k.to_vec(), v.to_vec());
        }
        for (k, v) in self.batch.scan(i, prefix) {
            match v {
                Some(v) => out.insert(k.to_vec(), v.to_vec()),
                None => out.remove(k),
            };
        }
        Ok(out.into_iter().collect())
    }

    fn commit(&mut self) -> Result<()> {
        self.settle()?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let next = self.spare.take().unwrap_or_else(|| Batch::new(TREES.len()));
        let batch = Arc::new(std::mem::replace(&mut self.batch, next));
        if self.applier().batches.send(batch.clone()).is_err() {
            return Err(self.stopped());
        }
        self.in_flight = Some(batch);
        Ok(())
    }

    fn uncommitted_bytes(&self) -> usize {
        self.batch.size()
    }

    /// Commits, waits until everything is applied, then flushes every memtable to disk
    /// (atomically): what the write-ahead log would otherwise have kept.
    fn sync(&mut self) -> Result<()> {
        self.drain()?;
        let cfs: Vec<_> = (0..TREES.len()).map(|i| self.cf(i)).collect();
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        self.db.flush_cfs_opt(&cfs, &fo).map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KILLED_CHILD: &str = "TM_TEST_ROCKS_KILLED_WRITER";

    /// Commit `i` writes 200 keys `i ‖ j` and the counter `i`; the child dies (abort, no
    /// clean close) right after its 60th commit, with more writes pending.
    fn killed_writer(dir: &Path) -> ! {
        let mut s = RocksStore::open(dir).unwrap();
        for i in 0u64..=60 {
            for j in 0u64..200 {
                let key = [i.to_be_bytes(), j.to_be_bytes()].concat();
                s.put("pduid_pdu", &key, &[i as u8; 500]).unwrap();
                s.put("tokenids", &key, b"").unwrap();
            }
            s.put("global", b"c", &i.to_be_bytes()).unwrap();
            if i < 60 {
                s.commit().unwrap();
            }
        }
        std::process::abort()
    }

    /// No write-ahead log: what survives a killed writer must be all of the first N commits
    /// and nothing after (atomic flush), with the counter saying N — never a mix.
    #[test]
    fn a_killed_writer_leaves_whole_commits() {
        if let Some(dir) = std::env::var_os(KILLED_CHILD) {
            killed_writer(Path::new(&dir));
        }
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "conduit::store::rocksdb::tests::a_killed_writer_leaves_whole_commits",
                "--test-threads=1",
            ])
            .env(KILLED_CHILD, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child was meant to die");
        let mut s = RocksStore::open(dir.path()).unwrap();
        let c = s
            .get("global", b"c")
            .unwrap()
            .map(|v| u64::from_be_bytes(v.try_into().unwrap()));
        // 30 MB written against a 1 MiB memtable budget: flushes happened.
        let n = c.expect("flushed commits survive the kill");
        for i in 0u64..=60 {
            let present = (0u64..200)
                .filter(|j| {
                    let key = [i.to_be_bytes(), j.to_be_bytes()].concat();
                    let pdu = s.get("pduid_pdu", &key).unwrap().is_some();
                    let token = s.get("tokenids", &key).unwrap().is_some();
                    assert_eq!(pdu, token, "commit {i} split across trees");
                    pdu
                })
                .count();
            let expected = if i <= n { 200 } else { 0 };
            assert_eq!(present, expected, "commit {i} with counter {n}");
        }
    }

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

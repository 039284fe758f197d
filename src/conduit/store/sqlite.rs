//! The SQLite backend: `database_path/conduit.db`, one table per tree with exactly Conduit's
//! schema, keys and values always bound as BLOBs (a TEXT key would never be found).

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::Store;
use crate::conduit::schema::TREES;
use crate::error::{Error, Result};

pub struct SqliteStore {
    path: PathBuf,
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/conduit.db` and every tree's table.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        let path = dir.join("conduit.db");
        let err = |e: rusqlite::Error| Error::Conduit(format!("{}: {e}", path.display()));
        let conn = Connection::open(&path).map_err(err)?;
        // A 256 MiB page cache: event ids are hashes, so most inserts land on a random page of a
        // large B-tree. Connection settings only; Conduit sets its own when it opens the file.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-262144;",
        )
        .map_err(err)?;
        // Three statements per tree; the default cache of 16 would re-prepare them constantly.
        conn.set_prepared_statement_cache_capacity(4 * TREES.len());
        for tree in TREES {
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {tree} ( \"key\" BLOB PRIMARY KEY, \"value\" BLOB NOT NULL )"
            ))
            .map_err(err)?;
        }
        conn.execute_batch("BEGIN").map_err(err)?;
        Ok(SqliteStore { path, conn })
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        Error::Conduit(format!("{}: {e}", self.path.display()))
    }

    fn check_tree(tree: &str) -> Result<()> {
        // Table names cannot be bound; only Conduit's own tree names are ever interpolated.
        if TREES.contains(&tree) {
            Ok(())
        } else {
            Err(Error::Config(format!("unknown Conduit tree {tree}")))
        }
    }
}

impl Store for SqliteStore {
    fn get(&mut self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Self::check_tree(tree)?;
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT value FROM {tree} WHERE key = ?"))
            .map_err(|e| self.err(e))?;
        st.query_row(params![key], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        Self::check_tree(tree)?;
        {
            let mut st = self
                .conn
                .prepare_cached(&format!(
                    "INSERT OR REPLACE INTO {tree} (key, value) VALUES (?, ?)"
                ))
                .map_err(|e| self.err(e))?;
            st.execute(params![key, value]).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn delete(&mut self, tree: &str, key: &[u8]) -> Result<()> {
        Self::check_tree(tree)?;
        let mut st = self
            .conn
            .prepare_cached(&format!("DELETE FROM {tree} WHERE key = ?"))
            .map_err(|e| self.err(e))?;
        st.execute(params![key]).map_err(|e| self.err(e))?;
        Ok(())
    }

    fn scan_prefix(&mut self, tree: &str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Self::check_tree(tree)?;
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT key, value FROM {tree} WHERE key >= ? ORDER BY key ASC"
            ))
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![prefix], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (k, v) = row.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k, v));
        }
        Ok(out)
    }

    fn commit(&mut self) -> Result<()> {
        self.conn
            .execute_batch("COMMIT; BEGIN")
            .map_err(|e| self.err(e))
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Uncommitted writes are rolled back: only `commit` makes anything durable.
        let _ = self.conn.execute_batch("ROLLBACK");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_keys_scan_in_byte_order_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(dir.path()).unwrap();
        s.put("global", b"c", &5u64.to_be_bytes()).unwrap();
        s.put("userid_password", b"@a:s", b"").unwrap();
        s.put("roomuserid_joined", b"!r\xff@b:s", b"").unwrap();
        s.put("roomuserid_joined", b"!r\xff@a:s", b"").unwrap();
        s.put("roomuserid_joined", b"!rx\xff@z:s", b"").unwrap();
        let scan = s.scan_prefix("roomuserid_joined", b"!r\xff").unwrap();
        let keys: Vec<_> = scan.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![b"!r\xff@a:s".to_vec(), b"!r\xff@b:s".to_vec()]);
        assert!(s.put("not_a_tree", b"k", b"v").is_err());
        s.commit().unwrap();
        s.put("global", b"uncommitted", b"x").unwrap();
        drop(s);
        let mut s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(
            s.get("global", b"c").unwrap(),
            Some(5u64.to_be_bytes().to_vec())
        );
        assert_eq!(
            s.get("global", b"uncommitted").unwrap(),
            None,
            "rolled back"
        );
        // Keys are BLOBs, as Conduit binds them.
        let kind: String = s
            .conn
            .query_row("SELECT typeof(key) FROM global LIMIT 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kind, "blob");
    }

    #[test]
    fn an_open_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _s = SqliteStore::open(dir.path()).unwrap();
        // Our own process is exempt; a child holding the file open is not.
        let db = dir.path().join("conduit.db");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::fs::File::open(&db).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let err = super::super::refuse_if_open(dir.path())
            .unwrap_err()
            .to_string();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(err.contains("stop Conduit"), "{err}");
        super::super::refuse_if_open(dir.path()).unwrap();
    }
}

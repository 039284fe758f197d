//! The event writer's core: one counter for every count and short id, the database version
//! guard, the server keypair and the server user. Rooms, users and media build on it.
//!
//! While a write is in progress `global["version"]` holds [`IN_PROGRESS`]: Conduit runs no
//! migration for it and refuses to start because the version is not 18, so it can never start
//! on a half-written database. `@conduit:S` is written first for the same reason (an empty
//! `userid_password` would make Conduit treat the database as new). [`Writer::finish`] stores the
//! counter and version 18 last.

pub mod admin_room;
pub mod aggregations;
pub mod media;
pub mod rooms;
pub mod users;

use crate::conduit::schema::{read_u64be, u64be, DATABASE_VERSION, SEP};
use crate::conduit::store::Store;
use crate::error::{Error, Result};
use crate::matrix::keys::ServerKey;

/// The version stored while writing.
pub const IN_PROGRESS: u64 = u64::MAX;

/// Writes into one Conduit database.
pub struct Writer<S: Store> {
    pub store: S,
    pub server_name: String,
    /// See [`crate::conduit::write::WriteOptions::state_window`].
    pub state_window: usize,
    /// The database was a finished one (version 18) when this write began: Conduit may have
    /// served it since, so what users changed there (passwords, devices) must be kept.
    pub was_complete: bool,
    /// Write only the most recent N timeline events of each room (transition mode).
    pub recent: Option<u64>,
    /// Events older than the `--recent` window of the room being written that an event inside
    /// it redacts or replies to in a thread: kept as outliers marked as full mode marks them
    /// ([`crate::conduit::write::reached_back`], docs/TRANSITION.md).
    pub reached_back: std::collections::HashSet<String>,
    counter: u64,
    /// Events (and rooms) written since the last commit.
    uncommitted: u64,
    /// Thread replies not yet written into their roots.
    threads: aggregations::PendingThreads,
}

impl<S: Store> Writer<S> {
    /// Starts writing: checks the database belongs to `server_name` and is at version 18 (or
    /// new, or an interrupted write of ours), then sets the in-progress guard.
    pub fn begin(mut store: S, server_name: &str) -> Result<Self> {
        let conduit_user = format!("@conduit:{server_name}");
        let existing = !store.scan_prefix("userid_password", b"")?.is_empty();
        let version = store
            .get("global", b"version")?
            .as_deref()
            .and_then(read_u64be);
        if existing {
            if store
                .get("userid_password", conduit_user.as_bytes())?
                .is_none()
            {
                return Err(Error::Config(format!(
                    "this database belongs to another server name (it has no {conduit_user})"
                )));
            }
            match version {
                Some(DATABASE_VERSION) | Some(IN_PROGRESS) => {}
                Some(v) => {
                    return Err(Error::Config(format!(
                        "database version {v}: start Conduit v0.10.12 on it once to migrate it to 18 first"
                    )))
                }
                None => return Err(Error::Config("the database has users but no version".into())),
            }
        }
        let counter = store
            .get("global", b"c")?
            .as_deref()
            .and_then(read_u64be)
            .unwrap_or(0);
        store.put("global", b"version", &u64be(IN_PROGRESS))?;
        if !existing {
            store.put("userid_password", conduit_user.as_bytes(), b"")?;
        }
        store.commit()?;
        Ok(Writer {
            store,
            server_name: server_name.to_owned(),
            state_window: rooms::STATE_WINDOW,
            was_complete: existing && version == Some(DATABASE_VERSION),
            recent: None,
            reached_back: Default::default(),
            counter,
            uncommitted: 0,
            threads: Default::default(),
        })
    }

    /// The next count (never 0; unique across the database).
    pub fn next_count(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Makes everything written so far durable, together with the counter that covers it.
    pub fn commit(&mut self) -> Result<()> {
        self.flush_threads()?;
        self.store.put("global", b"c", &u64be(self.counter))?;
        self.uncommitted = 0;
        self.store.commit()
    }

    /// Counts one more event (or room) written, and commits once enough are waiting: every
    /// [`rooms::COMMIT_EVERY`] events, or sooner when their writes reach
    /// [`rooms::COMMIT_BYTES`]. Counted across rooms, so a commit never holds more than that
    /// however the rooms' sizes fall.
    pub fn commit_if_due(&mut self) -> Result<()> {
        self.uncommitted += 1;
        if self.uncommitted >= rooms::COMMIT_EVERY
            || self.store.uncommitted_bytes() >= rooms::COMMIT_BYTES
        {
            self.commit()?;
        }
        Ok(())
    }

    /// Stores the server signing key as `version ‖ FF ‖ PKCS#8`, keeping Synapse's key id.
    pub fn put_keypair(&mut self, key: &ServerKey) -> Result<()> {
        if !key
            .version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Error::Config(format!(
                "key version {:?} has characters Conduit cannot publish",
                key.version
            )));
        }
        let mut value = key.version.as_bytes().to_vec();
        value.push(SEP);
        value.extend_from_slice(&key.pkcs8_der());
        self.store.put("global", b"keypair", &value)
    }

    /// Ends the write: stores the counter, then version 18, and commits.
    pub fn finish(mut self) -> Result<S> {
        self.commit()?;
        self.store
            .put("global", b"version", &u64be(DATABASE_VERSION))?;
        self.store.sync()?;
        Ok(self.store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conduit::store::rocksdb::RocksStore;
    use crate::conduit::store::sqlite::SqliteStore;

    #[test]
    fn guard_counter_and_server_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::begin(SqliteStore::open(dir.path()).unwrap(), "example.test").unwrap();
        assert_eq!(w.next_count(), 1);
        assert_eq!(w.next_count(), 2);
        // Interrupted here: the version says "in progress".
        drop(w);
        let mut s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(
            s.get("global", b"version").unwrap(),
            Some(u64be(IN_PROGRESS).to_vec())
        );
        assert!(s
            .get("userid_password", b"@conduit:example.test")
            .unwrap()
            .is_some());
        // A wrong server name is refused; the right one resumes and finishes.
        assert!(Writer::begin(SqliteStore::open(dir.path()).unwrap(), "other.test").is_err());
        let mut w = Writer::begin(s, "example.test").unwrap();
        let n = w.next_count();
        let mut s = w.finish().unwrap();
        assert_eq!(
            s.get("global", b"version").unwrap(),
            Some(u64be(18).to_vec())
        );
        assert_eq!(s.get("global", b"c").unwrap(), Some(u64be(n).to_vec()));
    }

    /// A commit comes after COMMIT_EVERY events however they fall into rooms (the count is
    /// the writer's, not a room's), or sooner once the writes held in memory reach
    /// COMMIT_BYTES.
    #[test]
    fn commits_are_bounded_in_events_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::begin(RocksStore::open(dir.path()).unwrap(), "t.test").unwrap();
        for i in 1..rooms::COMMIT_EVERY {
            w.store.put("global", b"x", &i.to_be_bytes()).unwrap();
            w.commit_if_due().unwrap();
        }
        assert!(
            w.store.uncommitted_bytes() > 0,
            "no commit before COMMIT_EVERY"
        );
        w.commit_if_due().unwrap();
        assert_eq!(w.store.uncommitted_bytes(), 0, "a commit at COMMIT_EVERY");
        w.store.put("global", b"x", b"1").unwrap();
        w.commit_if_due().unwrap();
        assert!(w.store.uncommitted_bytes() > 0);
        w.store
            .put("global", b"big", &vec![7; rooms::COMMIT_BYTES])
            .unwrap();
        w.commit_if_due().unwrap();
        assert_eq!(w.store.uncommitted_bytes(), 0, "a commit at COMMIT_BYTES");
        let mut s = w.finish().unwrap();
        assert_eq!(
            s.get("global", b"big").unwrap().map(|v| v.len()),
            Some(rooms::COMMIT_BYTES)
        );
    }
}

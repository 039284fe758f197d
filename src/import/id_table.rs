//! Source key → event id, for the room being forged.
//!
//! Any post of a channel may be the target of a later reply, reaction, edit, deletion or pin,
//! so every id must stay findable until the room ends. Kept whole in memory, the biggest
//! channel set the import's peak memory (about 85 bytes a post, 11 MiB for a channel of
//! 130,000 posts, and two big channels are forged at once). So only the latest entries stay in
//! memory ([`Hot`], packed); older ones move to a private temporary SQLite database on disk
//! ([`Cold`]), and a room's memory is the same for a channel of 30,000 posts or of 3 million.
//! Most lookups stay in memory: replies go to live threads, and reactions, edits and deletions
//! mostly come soon after their post. One that reaches further back costs a SQLite lookup.

use std::borrow::Cow;
use std::hash::BuildHasher;

use hashbrown::HashTable;
use rusqlite::{params, Connection, OptionalExtension};
use rustc_hash::FxBuildHasher;
use serde::ser::{Error as _, Serialize, SerializeMap, Serializer};

use crate::import::scratch;

/// An entry of an [`IdTable`]: a forged event (with or without a source key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ref(u32);

/// Why an entry could not be recorded or read.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    /// More entries than 32-bit refs number: some 4 billion events in one room.
    #[error("more than 4 billion events in one room")]
    TooLarge,
    /// The temporary database of older entries failed (SQLite's temporary directory:
    /// `SQLITE_TMPDIR`, `TMPDIR`, else `/var/tmp` or `/tmp`).
    #[error(
        "the temporary table of older event ids (in SQLite's temporary directory: \
         SQLITE_TMPDIR, TMPDIR, else /var/tmp or /tmp): {0}"
    )]
    Spill(#[from] rusqlite::Error),
}

/// Entries kept in memory before the older half of them moves to disk: at most ~2.7 MiB a
/// room for Mattermost ids (about 85 bytes an entry).
pub const WINDOW: usize = 32_768;

/// Source keys and their event ids, in the order they were forged.
pub struct IdTable {
    /// The latest entries; the first of them is entry `base`.
    hot: Hot,
    base: u32,
    /// Entries before `base`, once there are any.
    cold: Option<Cold>,
    /// How many entries [`IdTable::hot`] holds at most.
    window: usize,
}

impl Default for IdTable {
    fn default() -> Self {
        IdTable::with_window(WINDOW)
    }
}

impl IdTable {
    /// A table that keeps at most `window` entries in memory (at least 2).
    pub fn with_window(window: usize) -> Self {
        IdTable {
            hot: Hot::default(),
            base: 0,
            cold: None,
            window: window.max(2),
        }
    }

    /// Records a forged event; `key`: the source's id of it, when later items may refer to it.
    /// A key recorded again points to the new event from now on.
    pub fn insert(&mut self, key: Option<&str>, event_id: &str) -> Result<Ref, IdError> {
        if self.hot.len() >= self.window {
            self.spill(self.hot.len() / 2)?;
        }
        let at = (self.base as usize)
            .checked_add(self.hot.len())
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n < u32::MAX)
            .ok_or(IdError::TooLarge)?;
        self.hot.push(key.unwrap_or_default(), event_id)?;
        Ok(Ref(at))
    }

    /// The latest event recorded with this key.
    pub fn find(&self, key: &str) -> Result<Option<Ref>, IdError> {
        if let Some(i) = self.hot.find(key) {
            return Ok(Some(Ref(self.base + i)));
        }
        match &self.cold {
            Some(cold) => Ok(cold.find(key)?.map(Ref)),
            None => Ok(None),
        }
    }

    /// The event id of an entry.
    pub fn event_id(&self, r: Ref) -> Result<Cow<'_, str>, IdError> {
        match r.0.checked_sub(self.base) {
            Some(i) => Ok(Cow::Borrowed(self.hot.event_id(i))),
            None => {
                let cold = self.cold.as_ref().expect("entries before base are on disk");
                Ok(Cow::Owned(cold.event_id(r.0)?))
            }
        }
    }

    /// Moves the oldest `n` entries to disk.
    fn spill(&mut self, n: usize) -> Result<(), IdError> {
        let cold = match &mut self.cold {
            Some(c) => c,
            None => self.cold.insert(Cold::open()?),
        };
        let tx = cold.db.transaction()?;
        {
            let mut put = tx.prepare_cached(INSERT)?;
            for i in 0..n as u32 {
                let (key, event_id) = self.hot.entry(i);
                let key = (!key.is_empty()).then_some(key);
                put.execute(params![self.base + i, key, event_id])?;
            }
        }
        tx.commit()?;
        self.hot = self.hot.without_first(n);
        self.base += n as u32;
        Ok(())
    }
}

/// As a JSON object, key → event id (the room's mapping file), in the order of the keys' latest
/// recording, written as it is read.
impl Serialize for IdTable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(cold) = &self.cold {
            let mut latest = (cold.db.prepare_cached(LATEST)).map_err(S::Error::custom)?;
            let mut rows = latest.query([]).map_err(S::Error::custom)?;
            while let Some(row) = rows.next().map_err(S::Error::custom)? {
                let text = |i| scratch::text::<S::Error>(row, i);
                let (key, event_id) = (text(0)?, text(1)?);
                // Recorded again since, in memory: written with the later entries.
                if self.hot.find(key).is_none() {
                    map.serialize_entry(key, event_id)?;
                }
            }
        }
        for (key, event_id) in self.hot.iter() {
            map.serialize_entry(key, event_id)?;
        }
        map.end()
    }
}

const INSERT: &str = "INSERT INTO ids (ref, key, event_id) VALUES (?1, ?2, ?3)";
/// Each key's latest entry, in the order of those entries.
const LATEST: &str = "SELECT key, event_id FROM ids WHERE key IS NOT NULL \
                      AND ref = (SELECT MAX(ref) FROM ids AS later WHERE later.key = ids.key) \
                      ORDER BY ref";

/// The entries that left memory: a private temporary SQLite database ([`scratch::open`]).
struct Cold {
    db: Connection,
}

impl Cold {
    fn open() -> Result<Self, IdError> {
        let db = scratch::open(
            "CREATE TABLE ids (ref INTEGER PRIMARY KEY, key TEXT, event_id TEXT NOT NULL);
             CREATE INDEX ids_key ON ids (key) WHERE key IS NOT NULL;",
        )?;
        Ok(Cold { db })
    }

    /// `key = ?1` excludes NULL keys, so SQLite can use the partial index.
    fn find(&self, key: &str) -> Result<Option<u32>, IdError> {
        let mut q = (self.db)
            .prepare_cached("SELECT ref FROM ids WHERE key = ?1 ORDER BY ref DESC LIMIT 1")?;
        Ok(q.query_row([key], |r| r.get(0)).optional()?)
    }

    fn event_id(&self, r: u32) -> Result<String, IdError> {
        let mut q = self
            .db
            .prepare_cached("SELECT event_id FROM ids WHERE ref = ?1")?;
        Ok(q.query_row([r], |r| r.get(0))?)
    }
}

/// Entries in memory, packed: a `HashMap<String, String>` spends about 150 bytes on a
/// Mattermost post (two string headers and two allocations besides the 70 bytes of text); this
/// keeps the text back to back in one buffer and numbers into it, about 85 bytes a post.
#[derive(Default)]
struct Hot {
    /// Each entry's key, then its event id; entries back to back.
    text: String,
    /// Per entry: where it starts in `text`, and its key's length. Its event id runs up to the
    /// next entry's start.
    entries: Vec<(u32, u32)>,
    /// The latest entry of each key, hashed by key.
    index: HashTable<u32>,
}

fn hash(key: &str) -> u64 {
    FxBuildHasher.hash_one(key)
}

impl Hot {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn push(&mut self, key: &str, event_id: &str) -> Result<(), IdError> {
        if self.text.len() + key.len() + event_id.len() > u32::MAX as usize {
            return Err(IdError::TooLarge);
        }
        let start = self.text.len() as u32;
        let at = self.entries.len() as u32;
        self.text.push_str(key);
        self.text.push_str(event_id);
        self.entries.push((start, key.len() as u32));
        if !key.is_empty() {
            let Hot {
                text,
                entries,
                index,
            } = self;
            let key_of = |i: u32| {
                let (s, n) = entries[i as usize];
                &text[s as usize..(s + n) as usize]
            };
            match index.entry(hash(key), |&i| key_of(i) == key, |&i| hash(key_of(i))) {
                hashbrown::hash_table::Entry::Occupied(mut o) => *o.get_mut() = at,
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert(at);
                }
            }
        }
        Ok(())
    }

    fn find(&self, key: &str) -> Option<u32> {
        (self.index.find(hash(key), |&i| self.entry(i).0 == key)).copied()
    }

    /// Entry `i`'s key (empty: none) and event id.
    fn entry(&self, i: u32) -> (&str, &str) {
        let (start, key_len) = self.entries[i as usize];
        let end = (self.entries.get(i as usize + 1)).map_or(self.text.len(), |e| e.0 as usize);
        let key_end = (start + key_len) as usize;
        (
            &self.text[start as usize..key_end],
            &self.text[key_end..end],
        )
    }

    fn event_id(&self, i: u32) -> &str {
        self.entry(i).1
    }

    /// The entries after the first `n`, in a table of their own.
    fn without_first(&self, n: usize) -> Hot {
        let mut rest = Hot::default();
        for i in n as u32..self.entries.len() as u32 {
            let (key, event_id) = self.entry(i);
            rest.push(key, event_id)
                .expect("a part of a table fits as the table did");
        }
        rest
    }

    /// Every key with its latest event id, in the order of their latest recording.
    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        (0..self.entries.len() as u32)
            .map(|i| (i, self.entry(i)))
            .filter(|(i, (key, _))| !key.is_empty() && self.find(key) == Some(*i))
            .map(|(_, entry)| entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(t: &IdTable, r: Ref) -> String {
        t.event_id(r).unwrap().into_owned()
    }

    #[test]
    fn keys_find_their_latest_event_and_keyless_entries_stay_out_of_the_map() {
        let mut t = IdTable::default();
        let a = t.insert(Some("post-a"), "$aaa").unwrap();
        let none = t.insert(None, "$nokey").unwrap();
        let b = t.insert(Some("post-b"), "$bbb").unwrap();
        assert_eq!(id(&t, a), "$aaa");
        assert_eq!(id(&t, none), "$nokey");
        assert_eq!(id(&t, b), "$bbb");
        assert_eq!(t.find("post-b").unwrap(), Some(b));
        assert_eq!(t.find("post-c").unwrap(), None);
        let a2 = t.insert(Some("post-a"), "$aaa2").unwrap();
        assert_ne!(a, a2);
        assert_eq!(
            t.find("post-a").unwrap().map(|r| id(&t, r)),
            Some("$aaa2".into())
        );
        assert_eq!(id(&t, a), "$aaa", "an older entry keeps its id");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"post-b":"$bbb","post-a":"$aaa2"}"#
        );
    }

    #[test]
    fn many_keys_survive_the_index_growing() {
        let mut t = IdTable::default();
        let refs: Vec<_> = (0..10_000)
            .map(|i| t.insert(Some(&format!("k{i}")), &format!("$e{i}")).unwrap())
            .collect();
        for (i, r) in refs.iter().enumerate() {
            assert_eq!(t.find(&format!("k{i}")).unwrap(), Some(*r));
            assert_eq!(id(&t, *r), format!("$e{i}"));
        }
        assert!(t.cold.is_none(), "10,000 entries fit in the default window");
    }

    /// The same inserts into a table that spills after a few entries and one that never does:
    /// every lookup and the mapping file are the same, re-recorded keys included (one whose
    /// older entry is on disk and newer in memory, one with both on disk).
    #[test]
    fn a_table_that_spills_to_disk_answers_as_one_kept_in_memory() {
        let mut small = IdTable::with_window(8);
        let mut whole = IdTable::with_window(1 << 20);
        let mut refs = Vec::new();
        for i in 0..100 {
            let key = match i {
                _ if i % 7 == 3 => None,
                40 | 95 => Some("k2".to_owned()),
                60 => Some("k50".to_owned()),
                _ => Some(format!("k{i}")),
            };
            let event_id = format!("$e{i}");
            let r = small.insert(key.as_deref(), &event_id).unwrap();
            assert_eq!(r, whole.insert(key.as_deref(), &event_id).unwrap());
            refs.push(r);
        }
        assert!(small.cold.is_some() && small.hot.len() <= 8);
        for (i, r) in refs.iter().enumerate() {
            assert_eq!(id(&small, *r), format!("$e{i}"), "entry {i}");
        }
        for i in 0..110 {
            let key = format!("k{i}");
            assert_eq!(
                small.find(&key).unwrap(),
                whole.find(&key).unwrap(),
                "{key}"
            );
        }
        assert_eq!(
            small.find("k2").unwrap().map(|r| id(&small, r)),
            Some("$e95".into())
        );
        assert_eq!(
            small.find("k50").unwrap().map(|r| id(&small, r)),
            Some("$e60".into())
        );
        let json = serde_json::to_string(&small).unwrap();
        assert_eq!(json, serde_json::to_string(&whole).unwrap());
        assert!(json.contains(r#""k50":"$e60""#) && !json.contains("$e50"));
    }
}

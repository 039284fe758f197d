//! The checkpoint: an append-only JSON-lines log of finished items.
//!
//! Append-only (rather than one rewritten `checkpoint.json`) so recording an item costs one
//! short write whatever the archive's size, and a kill mid-write leaves at worst one torn last
//! line, which is ignored on reading. An item's files are always in place before its line is
//! written, so a line means "done"; anything without a line is redone.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What kind of item a line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    User,
    Room,
    Media,
    Keys,
    /// A step of a multi-step export (`mattermost export assets|memberships|messages`).
    Step,
}

impl ItemKind {
    /// The plural name used in summaries ("users", "rooms", …).
    pub fn plural(self) -> &'static str {
        match self {
            ItemKind::User => "users",
            ItemKind::Room => "rooms",
            ItemKind::Media => "media",
            ItemKind::Keys => "keys",
            ItemKind::Step => "steps",
        }
    }
}

/// One finished item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: ItemKind,
    pub id: String,
    /// sha256 of each file the item wrote, by path relative to the archive root.
    pub files: BTreeMap<String, String>,
    /// Counts worth showing in `status` (events, sessions, bytes, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
    /// Problems found while dumping the item (kept out of the archive, reported here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The checkpoint log, loaded into memory and appended to as items finish.
pub struct Checkpoint {
    path: PathBuf,
    done: Mutex<BTreeMap<(ItemKind, String), Entry>>,
}

impl Checkpoint {
    /// Loads the log (a missing file is an empty checkpoint; a torn last line is ignored).
    pub fn open(path: &Path) -> Result<Self> {
        let mut done = BTreeMap::new();
        match File::open(path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let line = line.map_err(|e| Error::io("cannot read", path, e))?;
                    // A line that does not parse can only be the torn tail of a killed run.
                    if let Ok(entry) = serde_json::from_str::<Entry>(&line) {
                        done.insert((entry.kind, entry.id.clone()), entry);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot read", path, e)),
        }
        Ok(Checkpoint {
            path: path.to_owned(),
            done: Mutex::new(done),
        })
    }

    /// Whether an item is recorded as done.
    pub fn is_done(&self, kind: ItemKind, id: &str) -> bool {
        self.done
            .lock()
            .expect("checkpoint lock")
            .contains_key(&(kind, id.to_owned()))
    }

    /// Records an item as done (after its files are in place).
    pub fn record(&self, entry: Entry) -> Result<()> {
        let mut done = self.done.lock().expect("checkpoint lock");
        let mut line = serde_json::to_string(&entry).expect("entries serialize");
        line.push('\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io("cannot open", &self.path, e))?;
        // A torn line from a killed run must not glue onto ours.
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len > 0 && !ends_with_newline(&self.path)? {
            f.write_all(b"\n")
                .map_err(|e| Error::io("cannot write", &self.path, e))?;
        }
        f.write_all(line.as_bytes())
            .map_err(|e| Error::io("cannot write", &self.path, e))?;
        f.sync_data()
            .map_err(|e| Error::io("cannot sync", &self.path, e))?;
        done.insert((entry.kind, entry.id.clone()), entry);
        Ok(())
    }

    /// Forgets everything (for `--refresh`): the log is truncated.
    pub fn clear(&self) -> Result<()> {
        let mut done = self.done.lock().expect("checkpoint lock");
        if self.path.exists() {
            std::fs::remove_file(&self.path)
                .map_err(|e| Error::io("cannot remove", &self.path, e))?;
        }
        done.clear();
        Ok(())
    }

    /// Every entry of one kind, ordered by id.
    pub fn entries(&self, kind: ItemKind) -> Vec<Entry> {
        self.done
            .lock()
            .expect("checkpoint lock")
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, e)| e.clone())
            .collect()
    }
}

fn ends_with_newline(path: &Path) -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    f.seek(SeekFrom::End(-1))
        .map_err(|e| Error::io("cannot read", path, e))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)
        .map_err(|e| Error::io("cannot read", path, e))?;
    Ok(b[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        Entry {
            kind: ItemKind::Room,
            id: id.into(),
            files: BTreeMap::new(),
            counts: BTreeMap::new(),
            errors: vec![],
        }
    }

    #[test]
    fn survives_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("checkpoint.jsonl");
        let cp = Checkpoint::open(&p).unwrap();
        cp.record(entry("!a")).unwrap();
        // Simulate a kill in the middle of writing the next line.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"kind\":\"room\",\"id\":\"!b").unwrap();
        drop(f);
        let cp = Checkpoint::open(&p).unwrap();
        assert!(cp.is_done(ItemKind::Room, "!a"));
        assert!(!cp.is_done(ItemKind::Room, "!b"));
        cp.record(entry("!c")).unwrap();
        let cp = Checkpoint::open(&p).unwrap();
        assert!(
            cp.is_done(ItemKind::Room, "!c"),
            "a line after a torn one is read"
        );
        assert_eq!(cp.entries(ItemKind::Room).len(), 2);
        cp.clear().unwrap();
        assert!(Checkpoint::open(&p)
            .unwrap()
            .entries(ItemKind::Room)
            .is_empty());
    }
}

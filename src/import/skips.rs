//! What an import left out, and why: the lines of its report (`import-report.json`).
//!
//! A large workspace leaves out tens of thousands of things (a line per deleted post, per
//! edit-history row whose post is gone, …), about 300 bytes each in memory, held until the
//! report is written at the very end: they grew with the workspace (some 17 MiB for 2 million
//! posts) and, turned into a JSON tree to be written, briefly took three times that. So past
//! a few thousand lines they move to a private temporary SQLite database, and the report is
//! written from it sorted, a line at a time.

use std::path::Path;

use rusqlite::{params, Connection};
use serde::ser::{Error as _, Serialize, SerializeSeq, Serializer};

use crate::archive::fsutil;
use crate::error::{Error, Result};
use crate::import::model::Skip;
use crate::import::scratch;

/// Lines kept in memory before they move to disk (about 1 MiB).
const SPILL_AT: usize = 4_096;

/// The lines of an import's report, in memory or on disk.
#[derive(Debug)]
pub struct Skips {
    /// The latest lines.
    recent: Vec<Skip>,
    /// Earlier lines, once there are enough of them.
    disk: Option<Disk>,
    spill_at: usize,
}

impl Default for Skips {
    fn default() -> Self {
        Skips::with_spill_at(SPILL_AT)
    }
}

impl Skips {
    /// Lines move to disk once `spill_at` are in memory (tests use a small number).
    pub fn with_spill_at(spill_at: usize) -> Self {
        Skips {
            recent: Vec::new(),
            disk: None,
            spill_at: spill_at.max(1),
        }
    }

    /// Adds a line in memory: for the few the mapping of users, teams and channels makes.
    /// Lines that come by the thousand (a channel's) go through [`Skips::append`].
    pub fn push(&mut self, skip: Skip) {
        self.recent.push(skip);
    }

    /// Adds lines, moving them to disk once there are enough in memory.
    pub fn append(&mut self, skips: Vec<Skip>) -> Result<()> {
        self.recent.extend(skips);
        if self.recent.len() >= self.spill_at {
            self.spill().map_err(temporary)?;
        }
        Ok(())
    }

    /// How many lines there are.
    pub fn len(&self) -> u64 {
        self.disk.as_ref().map_or(0, |d| d.rows) + self.recent.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lines still in memory, latest last.
    pub fn recent(&self) -> &[Skip] {
        &self.recent
    }

    /// Writes the report to `path`: `{"skipped": [...]}`, sorted by kind, source id and
    /// reason, so it is the same file however the channels' work interleaved.
    pub fn write_report(&mut self, path: &Path) -> Result<()> {
        if self.disk.is_some() {
            self.spill().map_err(temporary)?;
        } else {
            self.recent
                .sort_by(|a, b| (a.kind, &a.id, &a.reason).cmp(&(b.kind, &b.id, &b.reason)));
        }
        fsutil::write_json(
            path,
            &Report {
                skipped: Lines(self),
            },
            false,
        )
    }

    fn spill(&mut self) -> rusqlite::Result<()> {
        let disk = match &mut self.disk {
            Some(d) => d,
            None => self.disk.insert(Disk::open()?),
        };
        let tx = disk.db.transaction()?;
        {
            let mut insert = tx.prepare_cached(INSERT)?;
            for s in &self.recent {
                insert.execute(params![s.kind, s.id, s.reason])?;
            }
        }
        tx.commit()?;
        disk.rows += self.recent.len() as u64;
        self.recent.clear();
        Ok(())
    }
}

/// In memory, like [`Skips::push`].
impl Extend<Skip> for Skips {
    fn extend<I: IntoIterator<Item = Skip>>(&mut self, skips: I) {
        self.recent.extend(skips);
    }
}

fn temporary(e: rusqlite::Error) -> Error {
    Error::Temporary(format!("the import report's list of items left out: {e}"))
}

const INSERT: &str = "INSERT INTO skips (kind, id, reason) VALUES (?1, ?2, ?3)";
/// SQLite compares text byte by byte, as Rust's `str` does: both orders are the same.
const SORTED: &str = "SELECT kind, id, reason FROM skips ORDER BY kind, id, reason";

/// Lines that left memory ([`scratch::open`]).
#[derive(Debug)]
struct Disk {
    db: Connection,
    rows: u64,
}

impl Disk {
    fn open() -> rusqlite::Result<Self> {
        let db = scratch::open(
            "CREATE TABLE skips (kind TEXT NOT NULL, id TEXT NOT NULL, reason TEXT NOT NULL);",
        )?;
        Ok(Disk { db, rows: 0 })
    }
}

#[derive(serde::Serialize)]
struct Report<'a> {
    skipped: Lines<'a>,
}

/// The lines in report order: from disk once any went there ([`Skips::write_report`] moves
/// the rest there first), else from memory, sorted.
struct Lines<'a>(&'a Skips);

impl Serialize for Lines<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len() as usize))?;
        match &self.0.disk {
            None => {
                for skip in &self.0.recent {
                    seq.serialize_element(skip)?;
                }
            }
            Some(disk) => {
                let mut sorted = (disk.db.prepare(SORTED)).map_err(S::Error::custom)?;
                let mut rows = sorted.query([]).map_err(S::Error::custom)?;
                while let Some(row) = rows.next().map_err(S::Error::custom)? {
                    let text = |i| scratch::text::<S::Error>(row, i);
                    seq.serialize_element(&Line {
                        kind: text(0)?,
                        id: text(1)?,
                        reason: text(2)?,
                    })?;
                }
            }
        }
        seq.end()
    }
}

/// A line read back from disk: the fields of [`Skip`].
#[derive(serde::Serialize)]
struct Line<'a> {
    kind: &'a str,
    id: &'a str,
    reason: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(kind: &'static str, id: &str, reason: &str) -> Skip {
        Skip {
            kind,
            id: id.into(),
            reason: reason.into(),
        }
    }

    fn lines() -> Vec<Skip> {
        vec![
            skip("post", "p9", "its author u1 is not a user"),
            skip("deleted-post", "p3", "deleted in Mattermost"),
            skip("post", "p1", "b"),
            skip("post", "p1", "a"),
            skip("file", "f1", "missing from the file store"),
            skip("deleted-post", "p2", "deleted in Mattermost"),
        ]
    }

    fn report(mut skips: Skips) -> serde_json::Value {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("import-report.json");
        skips.write_report(&path).unwrap();
        fsutil::read_json(&path).unwrap()
    }

    #[test]
    fn lines_on_disk_give_the_same_sorted_report_as_lines_in_memory() {
        let mut memory = Skips::default();
        let mut disk = Skips::with_spill_at(2);
        memory.push(skip("user-renamed", "u1", "taken"));
        disk.push(skip("user-renamed", "u1", "taken"));
        for chunk in lines().chunks(3) {
            memory.append(chunk.to_vec()).unwrap();
            disk.append(chunk.to_vec()).unwrap();
        }
        assert!(memory.disk.is_none());
        assert!(
            disk.disk.is_some(),
            "six lines with a spill at two went to disk"
        );
        assert_eq!((memory.len(), disk.len()), (7, 7));
        let (memory, disk) = (report(memory), report(disk));
        assert_eq!(memory, disk);
        let order: Vec<(&str, &str, &str)> = (memory["skipped"].as_array().unwrap().iter())
            .map(|l| {
                let f = |k: &str| l[k].as_str().unwrap();
                (f("kind"), f("id"), f("reason"))
            })
            .collect();
        assert_eq!(
            order,
            [
                ("deleted-post", "p2", "deleted in Mattermost"),
                ("deleted-post", "p3", "deleted in Mattermost"),
                ("file", "f1", "missing from the file store"),
                ("post", "p1", "a"),
                ("post", "p1", "b"),
                ("post", "p9", "its author u1 is not a user"),
                ("user-renamed", "u1", "taken"),
            ]
        );
    }

    #[test]
    fn a_report_without_lines_is_an_empty_list() {
        assert_eq!(
            report(Skips::default()),
            serde_json::json!({ "skipped": [] })
        );
    }
}

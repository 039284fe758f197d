//! Source key → event id, for the room being forged.
//!
//! Any post of a channel may be the target of a later reply, reaction, edit, deletion or pin,
//! so the forge keeps every id until the room ends, and the biggest channel sets the import's
//! peak memory. A `HashMap<String, String>` spends about 150 bytes on a Mattermost post (two
//! string headers and two allocations besides the 70 bytes of text); this table keeps the text
//! back to back in one buffer and numbers into it, about 85 bytes a post.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use serde::ser::{Serialize, Serializer};

/// An entry of an [`IdTable`]: a forged event (with or without a source key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ref(u32);

/// The table outgrew its 32-bit offsets: 4 GiB of ids, some 50 million posts in one room.
#[derive(Debug, thiserror::Error)]
#[error("more than 4 GiB of event ids in one room (about 50 million events)")]
pub struct TooLarge;

/// Source keys and their event ids, in the order they were forged.
#[derive(Default)]
pub struct IdTable {
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

impl IdTable {
    /// Records a forged event; `key`: the source's id of it, when later items may refer to it.
    /// A key recorded again points to the new event from now on.
    pub fn insert(&mut self, key: Option<&str>, event_id: &str) -> Result<Ref, TooLarge> {
        let key = key.unwrap_or_default();
        if self.text.len() + key.len() + event_id.len() > u32::MAX as usize {
            return Err(TooLarge);
        }
        let start = self.text.len() as u32;
        let at = u32::try_from(self.entries.len()).map_err(|_| TooLarge)?;
        self.text.push_str(key);
        self.text.push_str(event_id);
        self.entries.push((start, key.len() as u32));
        if !key.is_empty() {
            let IdTable {
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
        Ok(Ref(at))
    }

    /// The latest event recorded with this key.
    pub fn find(&self, key: &str) -> Option<Ref> {
        (self.index.find(hash(key), |&i| self.key(i) == key)).map(|&i| Ref(i))
    }

    /// The event id of an entry.
    pub fn event_id(&self, r: Ref) -> &str {
        let (start, key_len) = self.entries[r.0 as usize];
        let end = (self.entries.get(r.0 as usize + 1)).map_or(self.text.len(), |e| e.0 as usize);
        &self.text[(start + key_len) as usize..end]
    }

    fn key(&self, i: u32) -> &str {
        let (start, key_len) = self.entries[i as usize];
        &self.text[start as usize..(start + key_len) as usize]
    }

    /// Every key with its latest event id, in the order of their latest recording.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        (0..self.entries.len() as u32)
            .filter(|&i| self.entries[i as usize].1 > 0)
            .map(|i| (self.key(i), Ref(i)))
            .filter(|&(k, r)| self.find(k) == Some(r))
            .map(|(k, r)| (k, self.event_id(r)))
    }
}

/// As a JSON object, key → event id (the room's mapping file), written without copying.
impl Serialize for IdTable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_find_their_latest_event_and_keyless_entries_stay_out_of_the_map() {
        let mut t = IdTable::default();
        let a = t.insert(Some("post-a"), "$aaa").unwrap();
        let none = t.insert(None, "$nokey").unwrap();
        let b = t.insert(Some("post-b"), "$bbb").unwrap();
        assert_eq!(t.event_id(a), "$aaa");
        assert_eq!(t.event_id(none), "$nokey");
        assert_eq!(t.event_id(b), "$bbb");
        assert_eq!(t.find("post-b"), Some(b));
        assert_eq!(t.find("post-c"), None);
        let a2 = t.insert(Some("post-a"), "$aaa2").unwrap();
        assert_ne!(a, a2);
        assert_eq!(t.find("post-a").map(|r| t.event_id(r)), Some("$aaa2"));
        assert_eq!(t.event_id(a), "$aaa", "an older entry keeps its id");
        let all: Vec<_> = t.iter().collect();
        assert_eq!(all, [("post-b", "$bbb"), ("post-a", "$aaa2")]);
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
            assert_eq!(t.find(&format!("k{i}")), Some(*r));
            assert_eq!(t.event_id(*r), format!("$e{i}"));
        }
        assert_eq!(t.iter().count(), 10_000);
    }
}

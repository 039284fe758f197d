//! The writes of one commit, as the RocksDB backend collects them: every key and value in one
//! growing byte arena, per tree the list of writes in order, and a hash table that finds the
//! latest write of a key so reads see what is not in the database yet.
//!
//! Why not a map of owned keys and values: a write was two heap allocations (a fifth of the
//! writer's time went to allocating and freeing them, and to the cache misses of reaching them
//! again when the batch was sorted). Here a write is two copies into the arena; the arena and
//! the lists keep their capacity from one commit to the next.

use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

/// One put or delete. The value follows the key in the arena.
#[derive(Clone, Copy)]
struct Write {
    start: usize,
    key_len: u32,
    value_len: u32,
    deleted: bool,
    /// The key's first 16 bytes, big-endian, zero-padded: orders most keys without a look at
    /// the arena.
    prefix: u128,
}

/// A key and its value (`None`: deleted).
pub type Entry<'a> = (&'a [u8], Option<&'a [u8]>);

/// A tree's index and a write's position in it, packed for the hash table.
fn pack(tree: usize, at: usize) -> u64 {
    ((tree as u64) << 40) | at as u64
}

fn unpack(packed: u64) -> (usize, usize) {
    ((packed >> 40) as usize, (packed & ((1 << 40) - 1)) as usize)
}

fn hash(tree: usize, key: &[u8]) -> u64 {
    let mut h = FxBuildHasher.build_hasher();
    h.write_usize(tree);
    h.write(key);
    h.finish()
}

/// The writes of one commit (see the module doc).
pub struct Batch {
    arena: Vec<u8>,
    /// Per tree, its writes in order.
    writes: Vec<Vec<Write>>,
    /// How many writes all trees have.
    count: usize,
    /// The latest write of each key of an indexed tree.
    latest: HashTable<u64>,
}

impl Batch {
    pub fn new(trees: usize) -> Self {
        Batch {
            arena: Vec::new(),
            writes: vec![Vec::new(); trees],
            count: 0,
            latest: HashTable::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Empties the batch, keeping its memory for the next commit.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.writes.iter_mut().for_each(Vec::clear);
        self.count = 0;
        self.latest.clear();
    }

    /// About the size of these writes in a RocksDB WriteBatch.
    pub fn size(&self) -> usize {
        self.arena.len() + 12 * self.count
    }

    fn key(&self, w: &Write) -> &[u8] {
        &self.arena[w.start..w.start + w.key_len as usize]
    }

    fn value(&self, w: &Write) -> Option<&[u8]> {
        let start = w.start + w.key_len as usize;
        (!w.deleted).then(|| &self.arena[start..start + w.value_len as usize])
    }

    /// Records a put (`Some`) or delete (`None`). `indexed`: reads will look for it.
    pub fn record(&mut self, tree: usize, indexed: bool, key: &[u8], value: Option<&[u8]>) {
        let start = self.arena.len();
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(value.unwrap_or_default());
        let mut p = [0u8; 16];
        let n = key.len().min(16);
        p[..n].copy_from_slice(&key[..n]);
        let at = self.writes[tree].len();
        self.count += 1;
        self.writes[tree].push(Write {
            start,
            key_len: key.len() as u32,
            value_len: value.map_or(0, <[u8]>::len) as u32,
            deleted: value.is_none(),
            prefix: u128::from_be_bytes(p),
        });
        if !indexed {
            return;
        }
        let Batch {
            arena,
            writes,
            latest,
            ..
        } = self;
        let key_of = |packed: u64| {
            let (t, i) = unpack(packed);
            let w = &writes[t][i];
            (t, &arena[w.start..w.start + w.key_len as usize])
        };
        let entry = latest.entry(
            hash(tree, key),
            |&packed| key_of(packed) == (tree, key),
            |&packed| {
                let (t, k) = key_of(packed);
                hash(t, k)
            },
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(mut o) => *o.get_mut() = pack(tree, at),
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(pack(tree, at));
            }
        }
    }

    /// The latest write of a key of an indexed tree: `Some(None)` if it was deleted, `None` if
    /// this batch did not write it.
    pub fn get(&self, tree: usize, key: &[u8]) -> Option<Option<&[u8]>> {
        let packed = self.latest.find(hash(tree, key), |&packed| {
            let (t, i) = unpack(packed);
            t == tree && self.key(&self.writes[t][i]) == key
        })?;
        let (t, i) = unpack(*packed);
        Some(self.value(&self.writes[t][i]))
    }

    /// A tree's writes of keys starting with `prefix`, in the order they were made.
    pub fn scan<'a>(
        &'a self,
        tree: usize,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = Entry<'a>> + 'a {
        self.writes[tree]
            .iter()
            .map(|w| (self.key(w), self.value(w)))
            .filter(move |(k, _)| k.starts_with(prefix))
    }

    /// Per tree that has writes: its writes in key order, writes of the same key in the order
    /// they were made (so the last one wins when they are applied in this order).
    pub fn sorted(&self) -> impl Iterator<Item = (usize, Vec<Entry<'_>>)> + '_ {
        self.writes
            .iter()
            .enumerate()
            .filter(|(_, ws)| !ws.is_empty())
            .map(|(tree, ws)| {
                // By prefix first (no trip to the arena), then each run of tied prefixes by
                // whole key. The second sort is stable and its runs are in write order, so
                // writes of one key keep their order — and runs already in key order (a
                // word's search tokens, appended event by event) cost one pass.
                let mut order: Vec<u32> = (0..ws.len() as u32).collect();
                order.sort_unstable_by_key(|&i| (ws[i as usize].prefix, i));
                let mut start = 0;
                while start < order.len() {
                    let p = ws[order[start] as usize].prefix;
                    let end = start
                        + order[start..]
                            .iter()
                            .take_while(|&&i| ws[i as usize].prefix == p)
                            .count();
                    if end - start > 1 {
                        order[start..end].sort_by(|&a, &b| {
                            self.key(&ws[a as usize]).cmp(self.key(&ws[b as usize]))
                        });
                    }
                    start = end;
                }
                let sorted = order
                    .into_iter()
                    .map(|i| {
                        let w = &ws[i as usize];
                        (self.key(w), self.value(w))
                    })
                    .collect();
                (tree, sorted)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_the_latest_write_and_sorting_keeps_write_order() {
        let mut b = Batch::new(2);
        b.record(0, true, b"b", Some(b"1"));
        b.record(0, true, b"a", Some(b"2"));
        b.record(0, true, b"b", None);
        b.record(0, true, b"b", Some(b"3"));
        b.record(1, false, b"b", Some(b"x"));
        assert_eq!(b.get(0, b"b"), Some(Some(&b"3"[..])));
        assert_eq!(b.get(0, b"a"), Some(Some(&b"2"[..])));
        assert_eq!(b.get(1, b"b"), None, "tree 1 is not indexed");
        assert_eq!(b.get(0, b"c"), None);
        b.record(0, true, b"a", None);
        assert_eq!(b.get(0, b"a"), Some(None));
        let sorted: Vec<_> = b.sorted().collect();
        assert_eq!(sorted.len(), 2);
        assert_eq!(
            sorted[0].1,
            vec![
                (&b"a"[..], Some(&b"2"[..])),
                (&b"a"[..], None),
                (&b"b"[..], Some(&b"1"[..])),
                (&b"b"[..], None),
                (&b"b"[..], Some(&b"3"[..])),
            ]
        );
        // Keys longer than the 16-byte prefix that tie on it are ordered by the whole key.
        let mut b = Batch::new(1);
        b.record(0, true, b"0123456789abcdefZ", Some(b""));
        b.record(0, true, b"0123456789abcdef", Some(b""));
        b.record(0, true, b"0123456789abcdefA", Some(b""));
        let keys: Vec<_> = b.sorted().next().unwrap().1.iter().map(|e| e.0).collect();
        assert_eq!(
            keys,
            vec![
                &b"0123456789abcdef"[..],
                &b"0123456789abcdefA"[..],
                &b"0123456789abcdefZ"[..]
            ]
        );
        b.clear();
        assert!(b.is_empty() && b.get(0, b"0123456789abcdef").is_none());
    }
}

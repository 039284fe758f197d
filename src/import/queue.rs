//! Items waiting for their time: a room's history arrives in pages, and an item of an early
//! page (a reaction, an edit, a deletion) may happen after the next page's first post.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::import::model::Item;

/// Items by time, and those of the same time in the order they were added: the order a stable
/// sort of the whole history by time gives.
#[derive(Default)]
pub struct TimeQueue {
    heap: BinaryHeap<Queued>,
    added: u64,
}

struct Queued {
    ts: i64,
    seq: u64,
    item: Item,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.ts, self.seq) == (other.ts, other.seq)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    /// Reversed: the heap's greatest is the earliest.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.ts, other.seq).cmp(&(self.ts, self.seq))
    }
}

impl TimeQueue {
    pub fn push(&mut self, item: Item) {
        self.heap.push(Queued {
            ts: item.ts,
            seq: self.added,
            item,
        });
        self.added += 1;
    }

    /// The earliest item, if it is before `until` (`None`: any time).
    pub fn pop_before(&mut self, until: Option<i64>) -> Option<Item> {
        let next = self.heap.peek()?;
        if until.is_some_and(|u| next.ts >= u) {
            return None;
        }
        self.heap.pop().map(|q| q.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::model::ItemKind;

    fn item(ts: i64, sender: &str) -> Item {
        Item {
            ts,
            sender: sender.into(),
            key: None,
            kind: ItemKind::Join,
        }
    }

    fn drain(q: &mut TimeQueue, until: Option<i64>) -> Vec<String> {
        std::iter::from_fn(|| q.pop_before(until).map(|i| i.sender)).collect()
    }

    #[test]
    fn items_come_out_as_a_stable_sort_by_time_and_only_before_the_bound() {
        let mut q = TimeQueue::default();
        for (ts, s) in [(5, "a"), (1, "b"), (5, "c"), (3, "d"), (9, "e")] {
            q.push(item(ts, s));
        }
        assert_eq!(drain(&mut q, Some(5)), ["b", "d"]);
        q.push(item(5, "f"));
        q.push(item(7, "g"));
        assert_eq!(drain(&mut q, Some(8)), ["a", "c", "f", "g"]);
        assert_eq!(drain(&mut q, None), ["e"]);
        assert!(q.pop_before(None).is_none());
    }
}

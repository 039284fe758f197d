//! The archive as the proxy reads it: which room holds an event, and — for rooms loaded on
//! demand — the walks federation asks for: `/backfill` (newest first from given events),
//! `/get_missing_events` (between two sets of events), auth chains and the state before an event.
//!
//! Only an index (event id → room) stays in memory for the whole archive; a room's PDUs are
//! loaded when first asked for and kept in a cache bounded by event count, so a proxy over a
//! large archive does not hold all of it.

use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use ruma::CanonicalJsonObject;

use crate::archive::room::{PduReader, RoomMeta, EVENTS, META, OUTLIERS};
use crate::archive::{fsutil, Archive};
use crate::error::{Error, Result};
use crate::matrix::pdu;
use crate::matrix::state::{State, StateEvent, StateTracker};

/// How many events the room cache holds before it forgets the least recently used rooms.
const CACHE_EVENTS: usize = 500_000;

/// One PDU of a loaded room.
pub struct Ev {
    pub id: String,
    pub pdu: CanonicalJsonObject,
    pub depth: i64,
    /// Position in the timeline; outliers come after every timeline event.
    pub pos: usize,
    pub prev: Vec<String>,
    pub auth: Vec<String>,
}

/// A loaded room: every PDU of the archive by id, and the timeline order.
pub struct Room {
    pub meta: RoomMeta,
    pub events: HashMap<String, Arc<Ev>>,
    pub timeline: Vec<String>,
    /// The create event, when the room version makes it an implicit auth event of every other
    /// event (v12: its id is the room id, and `auth_events` leave it out).
    implicit_create: Option<String>,
    /// The state before each timeline event, computed on the first `/state` request.
    states: OnceLock<std::result::Result<Vec<Arc<State>>, String>>,
}

/// The archive's events, indexed.
pub struct ArchiveEvents {
    archive: Archive,
    rooms: Vec<String>,
    room_of: HashMap<String, u32>,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    rooms: HashMap<u32, Arc<Room>>,
    order: VecDeque<u32>,
    events: usize,
}

impl ArchiveEvents {
    /// Reads every room's event ids (not their PDUs) into the index.
    pub fn open(archive: Archive) -> Result<Self> {
        let rooms = archive.room_ids()?;
        let mut room_of = HashMap::new();
        for (i, room_id) in rooms.iter().enumerate() {
            let dir = archive.room_dir(room_id);
            for file in [EVENTS, OUTLIERS] {
                for line in PduReader::open(&dir.join(file))? {
                    room_of.insert(line?.event_id, i as u32);
                }
            }
        }
        Ok(ArchiveEvents {
            archive,
            rooms,
            room_of,
            cache: Mutex::new(Cache::default()),
        })
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    pub fn event_count(&self) -> usize {
        self.room_of.len()
    }

    /// The loaded room holding an event, if the archive has the event.
    pub fn room_of_event(&self, event_id: &str) -> Result<Option<Arc<Room>>> {
        match self.room_of.get(event_id) {
            Some(i) => self.load(*i).map(Some),
            None => Ok(None),
        }
    }

    /// Whether the archive has the room.
    pub fn has_room(&self, room_id: &str) -> bool {
        self.rooms.iter().any(|r| r == room_id)
    }

    /// A loaded room, if the archive has it.
    pub fn room(&self, room_id: &str) -> Result<Option<Arc<Room>>> {
        match self.rooms.iter().position(|r| r == room_id) {
            Some(i) => self.load(i as u32).map(Some),
            None => Ok(None),
        }
    }

    fn load(&self, i: u32) -> Result<Arc<Room>> {
        {
            let mut cache = self.cache.lock().expect("cache lock");
            if let Some(room) = cache.rooms.get(&i).cloned() {
                cache.order.retain(|r| *r != i);
                cache.order.push_back(i);
                return Ok(room);
            }
        }
        let room = Arc::new(self.read_room(&self.rooms[i as usize])?);
        let mut cache = self.cache.lock().expect("cache lock");
        cache.events += room.events.len();
        cache.rooms.insert(i, room.clone());
        cache.order.push_back(i);
        while cache.events > CACHE_EVENTS && cache.order.len() > 1 {
            let Some(old) = cache.order.pop_front() else {
                break;
            };
            if let Some(r) = cache.rooms.remove(&old) {
                cache.events -= r.events.len();
            }
        }
        Ok(room)
    }

    fn read_room(&self, room_id: &str) -> Result<Room> {
        let dir = self.archive.room_dir(room_id);
        let meta: RoomMeta = fsutil::read_json(&dir.join(META))?;
        let mut events = HashMap::new();
        let mut timeline = Vec::new();
        for (file, in_timeline) in [(EVENTS, true), (OUTLIERS, false)] {
            for line in PduReader::open(&dir.join(file))? {
                let line = line?;
                let pos = if in_timeline {
                    timeline.push(line.event_id.clone());
                    timeline.len() - 1
                } else {
                    usize::MAX
                };
                let ev = Ev {
                    depth: pdu::int_field(&line.pdu, "depth").unwrap_or(0),
                    prev: pdu::event_refs(&line.pdu, "prev_events"),
                    auth: pdu::event_refs(&line.pdu, "auth_events"),
                    id: line.event_id.clone(),
                    pdu: line.pdu,
                    pos,
                };
                events.entry(line.event_id).or_insert_with(|| Arc::new(ev));
            }
        }
        let implicit_create = pdu::rules_for(&meta.version)
            .filter(|r| r.authorization.room_create_event_id_as_room_id)
            .and_then(|_| {
                events
                    .values()
                    .find(|e| pdu::str_field(&e.pdu, "type") == Some("m.room.create"))
                    .map(|e| e.id.clone())
            });
        Ok(Room {
            meta,
            events,
            timeline,
            implicit_create,
            states: OnceLock::new(),
        })
    }
}

impl Room {
    /// `/backfill`: the given events and those before them, newest first, at most `limit`.
    /// Also returns the prev events reached that the archive does not have.
    ///
    /// From a timeline event the answer is the timeline itself, read backwards: Conduit gives
    /// backfilled events descending positions in the order they arrive, so this is what makes
    /// its `/messages` page back through exactly Synapse's order, forks included (a walk along
    /// `prev_events` would skip a concurrent branch that merges later). From events outside the
    /// timeline it is Synapse's walk: ancestors by depth, deepest first.
    pub fn backfill(&self, from: &[String], limit: usize) -> (Vec<Arc<Ev>>, Vec<String>) {
        let start = from
            .iter()
            .filter_map(|id| self.events.get(id))
            .filter(|e| e.pos != usize::MAX)
            .map(|e| e.pos)
            .max();
        if let Some(start) = start {
            let out: Vec<Arc<Ev>> = self.timeline[..=start]
                .iter()
                .rev()
                .take(limit)
                .map(|id| self.events[id].clone())
                .collect();
            let missing = out
                .iter()
                .flat_map(|e| &e.prev)
                .filter(|p| !self.events.contains_key(*p))
                .cloned()
                .collect();
            return (out, missing);
        }
        self.walk_back(from, limit)
    }

    fn walk_back(&self, from: &[String], limit: usize) -> (Vec<Arc<Ev>>, Vec<String>) {
        let mut heap = BinaryHeap::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut missing = Vec::new();
        let mut visit = |id: &String, heap: &mut BinaryHeap<(i64, usize, Arc<Ev>)>| {
            if seen.insert(id.clone()) {
                match self.events.get(id) {
                    Some(e) => heap.push((e.depth, e.pos_key(), e.clone())),
                    None => missing.push(id.clone()),
                }
            }
        };
        for id in from {
            visit(id, &mut heap);
        }
        let mut out = Vec::new();
        while let Some((_, _, e)) = heap.pop() {
            if out.len() >= limit {
                break;
            }
            for p in &e.prev {
                visit(p, &mut heap);
            }
            out.push(e);
        }
        (out, missing)
    }

    /// `/get_missing_events`: ancestors of `latest` (excluded), walking back level by level
    /// along `prev_events` as Synapse does, stopping at `earliest`; at most `limit`, none below
    /// `min_depth`, oldest first.
    pub fn missing_events(
        &self,
        earliest: &[String],
        latest: &[String],
        limit: usize,
        min_depth: i64,
    ) -> Vec<Arc<Ev>> {
        let mut seen: HashSet<&str> = earliest.iter().map(String::as_str).collect();
        let mut front: Vec<&str> = latest
            .iter()
            .map(String::as_str)
            .filter(|id| !seen.contains(id))
            .collect();
        let mut out: Vec<Arc<Ev>> = Vec::new();
        while !front.is_empty() && out.len() < limit {
            let mut next = Vec::new();
            for id in front {
                let Some(e) = self.events.get(id) else {
                    continue;
                };
                for p in &e.prev {
                    if out.len() < limit && seen.insert(p) {
                        if let Some(pe) = self.events.get(p) {
                            out.push(pe.clone());
                            next.push(p.as_str());
                        }
                    }
                }
            }
            front = next;
        }
        out.retain(|e| e.depth >= min_depth);
        out.sort_by_key(|e| (e.depth, e.pos));
        out
    }

    /// The auth chain of some events (their transitive `auth_events`, themselves excluded).
    /// `None` if an event of the chain is not in the archive.
    pub fn auth_chain<'a>(&self, of: impl IntoIterator<Item = &'a str>) -> Option<Vec<Arc<Ev>>> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut stack: Vec<String> = Vec::new();
        for id in of {
            stack.extend(self.events.get(id)?.auth.iter().cloned());
            if let Some(create) = self.implicit_create.as_ref().filter(|c| *c != id) {
                stack.push(create.clone());
            }
        }
        let mut out = Vec::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            let e = self.events.get(&id)?;
            stack.extend(e.auth.iter().cloned());
            out.push(e.clone());
        }
        out.sort_by_key(|e| (e.depth, e.pos));
        Some(out)
    }

    /// The state before a timeline event (what `/state` and `/state_ids` return), `None` for an
    /// event that is not in the archive's timeline.
    pub fn state_before(&self, event_id: &str) -> Result<Option<Arc<State>>> {
        let Some(pos) = self.events.get(event_id).map(|e| e.pos) else {
            return Ok(None);
        };
        if pos == usize::MAX {
            return Ok(None);
        }
        let states = self
            .states
            .get_or_init(|| self.compute_states().map_err(|e| e.to_string()));
        match states {
            Ok(s) => Ok(s.get(pos).cloned()),
            Err(e) => Err(Error::malformed(format!("room {}", self.meta.room_id), e)),
        }
    }

    fn compute_states(&self) -> Result<Vec<Arc<State>>> {
        let rules = pdu::rules_for(&self.meta.version).ok_or_else(|| {
            Error::Config(format!("room version {} is unknown", self.meta.version))
        })?;
        let mut tracker = StateTracker::new(rules);
        let bad = |e: &dyn std::fmt::Display| Error::malformed("archived PDU", e.to_string());
        for e in self.events.values().filter(|e| e.pos == usize::MAX) {
            tracker.add_known(StateEvent::from_pdu(&e.id, &e.pdu).map_err(|e| bad(&e))?);
        }
        let mut out = Vec::with_capacity(self.timeline.len());
        for id in &self.timeline {
            let e = &self.events[id];
            let ev = StateEvent::from_pdu(&e.id, &e.pdu).map_err(|e| bad(&e))?;
            out.push(tracker.push(ev).map_err(|e| bad(&e))?);
        }
        Ok(out)
    }
}

impl Ev {
    /// Timeline position for ordering, outliers lowest.
    fn pos_key(&self) -> usize {
        if self.pos == usize::MAX {
            0
        } else {
            self.pos + 1
        }
    }
}

impl PartialEq for Ev {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for Ev {}
impl PartialOrd for Ev {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ev {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id.cmp(&other.id)
    }
}

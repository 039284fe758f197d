//! The room state before every event of a DAG, as Matrix defines it: the state after the single
//! prev event, or — where branches merge — the state resolution (ruma's state-res v2, with the
//! v12 conflicted subgraph) of the states after each prev event. Writers need it for every event;
//! "apply state events in timeline order" is wrong at every fork.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use ruma::{
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    state_res::{self, utils::event_id_set::EventIdSet, Event, StateMap},
    CanonicalJsonObject, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    OwnedUserId, RoomId, UInt, UserId,
};
use serde_json::value::RawValue;

use crate::matrix::pdu::{self, PduError};

/// The fields of a PDU that state resolution reads.
#[derive(Debug, Clone)]
pub struct StateEvent {
    id: OwnedEventId,
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    ts: MilliSecondsSinceUnixEpoch,
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
    prev: Vec<OwnedEventId>,
    auth: Vec<OwnedEventId>,
    redacts: Option<OwnedEventId>,
}

impl StateEvent {
    /// Reads a PDU (with its computed id).
    pub fn from_pdu(id: &str, pdu: &CanonicalJsonObject) -> Result<Self, PduError> {
        let bad = |what: &str| PduError::NotCanonical(format!("{id}: {what}"));
        let ids = |key: &str| -> Result<Vec<OwnedEventId>, PduError> {
            pdu::event_refs(pdu, key)
                .into_iter()
                .map(|e| e.try_into().map_err(|_| bad(key)))
                .collect()
        };
        // State resolution reads the content of state events only; a message's content would
        // be serialized once more for nothing.
        let state_key = pdu::str_field(pdu, "state_key").map(str::to_owned);
        let content = match pdu.get("content") {
            Some(c) if state_key.is_some() => {
                serde_json::value::to_raw_value(c).map_err(|_| bad("content"))?
            }
            Some(_) => empty_content(),
            None => return Err(bad("no content")),
        };
        Ok(StateEvent {
            id: id.try_into().map_err(|_| bad("event id"))?,
            room_id: pdu::str_field(pdu, "room_id")
                .map(|r| r.try_into())
                .transpose()
                .map_err(|_| bad("room_id"))?,
            sender: pdu::str_field(pdu, "sender")
                .ok_or_else(|| bad("sender"))?
                .try_into()
                .map_err(|_| bad("sender"))?,
            ts: MilliSecondsSinceUnixEpoch(
                UInt::new(pdu::int_field(pdu, "origin_server_ts").unwrap_or(0).max(0) as u64)
                    .unwrap_or_default(),
            ),
            kind: pdu::str_field(pdu, "type")
                .ok_or_else(|| bad("type"))?
                .into(),
            content,
            state_key,
            prev: ids("prev_events")?,
            auth: ids("auth_events")?,
            redacts: pdu::str_field(pdu, "redacts").and_then(|r| r.try_into().ok()),
        })
    }

    pub fn id(&self) -> &EventId {
        &self.id
    }

    /// The state key pair, for state events.
    pub fn state_pair(&self) -> Option<(StateEventType, String)> {
        self.state_key
            .as_ref()
            .map(|k| (self.kind.to_string().into(), k.clone()))
    }
}

impl Event for StateEvent {
    type Id = OwnedEventId;
    fn event_id(&self) -> &Self::Id {
        &self.id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        false
    }
}

fn empty_content() -> Box<RawValue> {
    RawValue::from_string("{}".into()).expect("valid JSON")
}

/// A room state: (type, state_key) → event id.
pub type State = StateMap<OwnedEventId>;

/// Why the state at an event could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}: none of its prev events is known, so the state before it is unknown")]
    NoPrevState(OwnedEventId),
    #[error("state resolution at {0} failed: {1}")]
    Resolution(OwnedEventId, String),
    #[error("reading the stored state before {0}: {1}")]
    Load(OwnedEventId, String),
}

/// Walks a room's events in topological order and yields the state before each.
///
/// Memory: state events are kept (state resolution reads them), other events are not. The
/// state after each event is kept for the most recent `window` events only when the tracker is
/// [`StateTracker::bounded`]; an older prev event's state is then asked of a loader (the writer
/// reads it back from the database it wrote), so memory does not grow with the room's length.
pub struct StateTracker {
    rules: RoomVersionRules,
    events: HashMap<OwnedEventId, Arc<StateEvent>>,
    after: HashMap<OwnedEventId, Arc<State>>,
    recent: VecDeque<OwnedEventId>,
    window: usize,
    chains: HashMap<OwnedEventId, Arc<HashSet<OwnedEventId>>>,
    sender: Option<OwnedUserId>,
    /// How many merges needed a real state resolution (for reports).
    pub resolutions: u64,
    /// How many states a bounded tracker had to ask its loader for.
    pub loads: u64,
}

/// Where a bounded tracker finds the state *before* an event it no longer holds.
pub trait StateLoader {
    fn state_before(&mut self, id: &EventId) -> Result<Option<State>, StateError>;
}

/// For unbounded trackers: nothing to load.
pub struct NoLoader;

impl StateLoader for NoLoader {
    fn state_before(&mut self, _: &EventId) -> Result<Option<State>, StateError> {
        Ok(None)
    }
}

impl StateTracker {
    /// A tracker that keeps the state after every event (for a room held in memory anyway).
    pub fn new(rules: RoomVersionRules) -> Self {
        Self::bounded(rules, usize::MAX)
    }

    /// A tracker that keeps the state after the last `window` events only.
    pub fn bounded(rules: RoomVersionRules, window: usize) -> Self {
        StateTracker {
            rules,
            events: HashMap::new(),
            after: HashMap::new(),
            recent: VecDeque::new(),
            window,
            chains: HashMap::new(),
            sender: None,
            resolutions: 0,
            loads: 0,
        }
    }

    /// Makes an event known (an auth or state event outside the timeline) without a state.
    pub fn add_known(&mut self, ev: StateEvent) {
        self.events.insert(ev.id.clone(), Arc::new(ev));
    }

    /// The next timeline event: returns the state before it and records the state after it.
    pub fn push(&mut self, ev: StateEvent) -> Result<Arc<State>, StateError> {
        self.push_with(ev, &mut NoLoader)
    }

    /// [`StateTracker::push`] for a bounded tracker.
    pub fn push_with(
        &mut self,
        ev: StateEvent,
        loader: &mut dyn StateLoader,
    ) -> Result<Arc<State>, StateError> {
        let before = self.state_before(&ev, loader)?;
        let after = match ev.state_pair() {
            Some(pair) => {
                let mut s = (*before).clone();
                s.insert(pair, ev.id.clone());
                Arc::new(s)
            }
            None => before.clone(),
        };
        self.remember(ev.id.clone(), after);
        if self.sender.is_none() {
            self.sender = Some(ev.sender.clone());
        }
        if ev.state_key.is_some() {
            self.events.insert(ev.id.clone(), Arc::new(ev));
        }
        Ok(before)
    }

    fn remember(&mut self, id: OwnedEventId, after: Arc<State>) {
        if self.window != usize::MAX {
            self.recent.push_back(id.clone());
            while self.recent.len() > self.window {
                if let Some(old) = self.recent.pop_front() {
                    self.after.remove(&old);
                }
            }
        }
        self.after.insert(id, after);
    }

    /// The state after `id`: remembered, or the create event's, or loaded.
    fn after_of(
        &mut self,
        id: &EventId,
        loader: &mut dyn StateLoader,
    ) -> Result<Option<Arc<State>>, StateError> {
        if let Some(s) = self.after.get(id) {
            return Ok(Some(s.clone()));
        }
        if self.window == usize::MAX {
            return Ok(None);
        }
        let known = self.events.get(id).cloned();
        let before = match &known {
            Some(e) if e.prev.is_empty() => Some(State::new()),
            _ => loader.state_before(id)?,
        };
        let Some(mut state) = before else {
            return Ok(None);
        };
        self.loads += 1;
        if let Some(pair) = known.as_ref().and_then(|e| e.state_pair()) {
            state.insert(pair, id.to_owned());
        }
        let state = Arc::new(state);
        self.remember(id.to_owned(), state.clone());
        Ok(Some(state))
    }

    /// The room's current state: the resolution of the states after its forward extremities.
    pub fn current_state(
        &mut self,
        extremities: &[OwnedEventId],
    ) -> Result<Arc<State>, StateError> {
        self.current_state_with(extremities, &mut NoLoader)
    }

    /// [`StateTracker::current_state`] for a bounded tracker.
    pub fn current_state_with(
        &mut self,
        extremities: &[OwnedEventId],
        loader: &mut dyn StateLoader,
    ) -> Result<Arc<State>, StateError> {
        let Some(last) = extremities.first() else {
            return Ok(Arc::new(State::new()));
        };
        let merged = StateEvent {
            id: last.clone(),
            room_id: None,
            sender: self
                .sender
                .clone()
                .ok_or_else(|| StateError::NoPrevState(last.clone()))?,
            ts: MilliSecondsSinceUnixEpoch(UInt::default()),
            kind: TimelineEventType::RoomMessage,
            content: empty_content(),
            state_key: None,
            prev: extremities.to_vec(),
            auth: Vec::new(),
            redacts: None,
        };
        self.state_before(&merged, loader)
    }

    fn state_before(
        &mut self,
        ev: &StateEvent,
        loader: &mut dyn StateLoader,
    ) -> Result<Arc<State>, StateError> {
        if ev.prev.is_empty() {
            return Ok(Arc::new(State::new())); // the create event
        }
        let mut maps: Vec<Arc<State>> = Vec::with_capacity(ev.prev.len());
        for p in &ev.prev {
            maps.extend(self.after_of(p, loader)?);
        }
        maps.dedup_by(|a, b| Arc::ptr_eq(a, b) || a == b);
        match maps.len() {
            0 => Err(StateError::NoPrevState(ev.id.clone())),
            1 => Ok(maps.remove(0)),
            _ if maps.windows(2).all(|w| w[0] == w[1]) => Ok(maps.remove(0)),
            _ => {
                self.resolutions += 1;
                self.resolve(&ev.id, &maps).map(Arc::new)
            }
        }
    }

    fn resolve(&mut self, at: &EventId, maps: &[Arc<State>]) -> Result<State, StateError> {
        let fail = |e: String| StateError::Resolution(at.to_owned(), e);
        let mut auth_chains = Vec::with_capacity(maps.len());
        for m in maps {
            let mut set = HashSet::new();
            for id in m.values() {
                set.extend(self.auth_chain(id).iter().cloned());
            }
            auth_chains.push(set.into_iter().collect::<EventIdSet<OwnedEventId>>());
        }
        let v2 = self
            .rules
            .state_res
            .v2_rules()
            .ok_or_else(|| fail("room versions 1 and 2 use state resolution v1".into()))?;
        let events = &self.events;
        let chains = &self.chains;
        state_res::resolve(
            &self.rules.authorization,
            v2,
            maps.iter().map(|m| m.as_ref()),
            auth_chains,
            |id| events.get(id).map(|e| (**e).clone()),
            |conflicted| Some(conflicted_subgraph(conflicted, chains)),
        )
        .map_err(|e| fail(e.to_string()))
    }

    /// The auth chain of an event (transitive `auth_events`, the event excluded), memoised.
    fn auth_chain(&mut self, id: &EventId) -> Arc<HashSet<OwnedEventId>> {
        if let Some(c) = self.chains.get(id) {
            return c.clone();
        }
        // Iterative post-order, so deep chains cannot overflow the stack.
        let mut stack = vec![(id.to_owned(), false)];
        while let Some((cur, expanded)) = stack.pop() {
            if self.chains.contains_key(&cur) {
                continue;
            }
            let auth: Vec<OwnedEventId> = self
                .events
                .get(&cur)
                .map(|e| e.auth.clone())
                .unwrap_or_default();
            if expanded {
                let mut set = HashSet::new();
                for a in &auth {
                    set.insert(a.clone());
                    if let Some(c) = self.chains.get(a) {
                        set.extend(c.iter().cloned());
                    }
                }
                self.chains.insert(cur, Arc::new(set));
            } else {
                stack.push((cur, true));
                stack.extend(
                    auth.into_iter()
                        .filter(|a| !self.chains.contains_key(a))
                        .map(|a| (a, false)),
                );
            }
        }
        self.chains[id].clone()
    }
}

/// MSC4297 (room v12): the events that are both auth-descendants and auth-ancestors of
/// conflicted events, the conflicted events included.
fn conflicted_subgraph(
    conflicted: &StateMap<Vec<OwnedEventId>>,
    chains: &HashMap<OwnedEventId, Arc<HashSet<OwnedEventId>>>,
) -> EventIdSet<OwnedEventId> {
    let set: HashSet<&OwnedEventId> = conflicted.values().flatten().collect();
    let mut candidates: HashSet<OwnedEventId> = set.iter().map(|e| (*e).clone()).collect();
    for c in &set {
        if let Some(chain) = chains.get(*c) {
            candidates.extend(chain.iter().cloned());
        }
    }
    candidates
        .into_iter()
        .filter(|x| {
            set.contains(x)
                || chains
                    .get(x)
                    .is_some_and(|ch| ch.iter().any(|a| set.contains(a)))
        })
        .collect()
}

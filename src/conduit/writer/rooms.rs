//! Rooms: every PDU with its count in timeline order, short ids, the state before each event
//! (state resolution at forks) stored as compressed snapshots, forward extremities, membership
//! caches from the resolved current state, aliases, directory, relations and search tokens.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedEventId};

use super::{aggregations, Writer};
use crate::archive::room::{PduLine, RoomMeta};
use crate::conduit::reader;
use crate::conduit::schema::{
    encode_statediff, joined, pdu_id, read_u64be, state_entry, u64be, StateEntry, SEP,
};
use crate::conduit::store::Store;
use crate::error::{Error, Result};
use crate::matrix::pdu;
use crate::matrix::state::{State, StateError, StateEvent, StateLoader, StateTracker};

/// A snapshot is written as a fresh base layer once its diff against the current base would
/// hold more than this many entries; otherwise as a diff (chains stay two layers deep).
const MAX_DIFF: usize = 64;

/// The largest PDU the Matrix spec allows (65,536 bytes of JSON).
const MAX_PDU_BYTES: usize = 65_536;

/// Events appended between two commits (inside a huge room, and across small ones).
pub const COMMIT_EVERY: u64 = 20_000;

/// The most bytes of writes a commit waits for (where the store holds them in memory, as the
/// RocksDB backend does until it applies a commit). 20,000 Mattermost posts make ~36 MiB, so
/// for them this, not [`COMMIT_EVERY`], ends a commit (~9,000 posts); Synapse events can be far
/// bigger (up to 64 KiB each), and this keeps the writer's memory the same for them. The writer
/// holds about three commits' worth at once (the batch being filled, the batch being applied
/// and RocksDB's copy of it): 32 MiB put peak RSS of a 10^6-post import at ~415 MiB, 16 MiB at
/// ~320 MiB, at the same speed (BENCHMARKS.md, "Mattermost import: peak memory").
pub const COMMIT_BYTES: usize = 16 << 20;

/// How many recent events' states the state tracker holds; older prev events (rare: long-lived
/// forks, history gaps) have their state read back from the database, so memory stays flat
/// however long the room is.
pub const STATE_WINDOW: usize = 512;

/// What writing one room did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoomReport {
    pub events: u64,
    pub skipped_existing: u64,
    pub snapshots: u64,
    pub resolutions: u64,
    /// States read back from the database (older than the in-memory window).
    pub state_loads: u64,
    /// Older events left to the backfill proxy (`--recent`): only their state and ids are kept.
    pub left_to_backfill: u64,
}

/// What is kept of a state event.
struct StateInfo {
    kind: String,
    state_key: String,
    sender: String,
    content: CanonicalJsonValue,
}

impl StateInfo {
    fn of(pdu_json: &CanonicalJsonObject) -> Option<Self> {
        Some(StateInfo {
            kind: pdu::str_field(pdu_json, "type")?.to_owned(),
            state_key: pdu::str_field(pdu_json, "state_key")?.to_owned(),
            sender: pdu::str_field(pdu_json, "sender")
                .unwrap_or_default()
                .to_owned(),
            content: pdu_json
                .get("content")
                .cloned()
                .unwrap_or(CanonicalJsonValue::Object(Default::default())),
        })
    }

    fn membership(&self) -> &str {
        match &self.content {
            CanonicalJsonValue::Object(o) => match o.get("membership") {
                Some(CanonicalJsonValue::String(m)) => m,
                _ => "",
            },
            _ => "",
        }
    }
}

/// Per-room bookkeeping while its events are appended.
struct RoomCtx {
    room_id: String,
    rules: ruma::room_version_rules::RoomVersionRules,
    sroom: u64,
    tracker: StateTracker,
    /// The last snapshot written: its id and its full entries.
    current: Option<(u64, Arc<State>)>,
    /// The latest base layer: its id and entries.
    base: Option<(u64, HashSet<StateEntry>)>,
    /// Every state event seen, for `unsigned.prev_content`, membership and stripped state.
    state_events: HashMap<OwnedEventId, StateInfo>,
    ever_joined: HashSet<String>,
    report: RoomReport,
    /// Timeline events seen so far, and how many leading ones are left to backfill.
    position: u64,
    /// The room was not in the database before this write: none of its timeline events can be
    /// there already, so the writer skips looking (three lookups per event).
    fresh: bool,
    /// This room's outliers: the only events of a fresh room that can have a short id or an
    /// outlier entry before they are appended.
    outlier_ids: HashSet<String>,
    history_until: u64,
}

impl<S: Store> Writer<S> {
    /// Writes one room: its outliers, then its timeline (in the order users saw it).
    pub fn put_room(
        &mut self,
        meta: &RoomMeta,
        outliers: &[PduLine],
        timeline: impl Iterator<Item = Result<PduLine>>,
    ) -> Result<RoomReport> {
        let rules = pdu::rules_for(&meta.version).ok_or_else(|| {
            Error::Config(format!(
                "room {} has unsupported room version {}",
                meta.room_id, meta.version
            ))
        })?;
        if matches!(meta.version.as_str(), "1" | "2") {
            return Err(Error::Config(format!(
                "room {} is a room version {} room, which Conduit cannot store",
                meta.room_id, meta.version
            )));
        }
        let (sroom, fresh) = match self
            .store
            .get("roomid_shortroomid", meta.room_id.as_bytes())?
            .as_deref()
            .and_then(read_u64be)
        {
            Some(s) => (s, false),
            None => {
                let s = self.next_count();
                self.store
                    .put("roomid_shortroomid", meta.room_id.as_bytes(), &u64be(s))?;
                (s, true)
            }
        };
        let mut rc = RoomCtx {
            room_id: meta.room_id.clone(),
            sroom,
            tracker: StateTracker::bounded(rules.clone(), self.state_window.max(1)),
            rules,
            current: None,
            base: None,
            state_events: HashMap::new(),
            ever_joined: HashSet::new(),
            report: RoomReport::default(),
            position: 0,
            fresh,
            outlier_ids: outliers.iter().map(|o| o.event_id.clone()).collect(),
            history_until: self.recent.map_or(0, |n| meta.events.saturating_sub(n)),
        };
        for o in outliers {
            self.short_event_id(&o.event_id)?;
            if self
                .store
                .get("eventid_pduid", o.event_id.as_bytes())?
                .is_none()
            {
                self.store.put(
                    "eventid_outlierpdu",
                    o.event_id.as_bytes(),
                    &stored_json(&o.event_id, &o.pdu),
                )?;
            }
            let ev = StateEvent::from_pdu(&o.event_id, &o.pdu)
                .map_err(|e| Error::malformed("outlier PDU", e))?;
            if let Some(info) = StateInfo::of(&o.pdu) {
                rc.state_events.insert(ev.id().to_owned(), info);
            }
            rc.tracker.add_known(ev);
        }
        let mut appended = false;
        for line in timeline {
            self.append(&mut rc, line?)?;
            appended = true;
            // Bounded memory for huge rooms; a resumed write skips what is already there.
            self.commit_if_due()?;
        }
        if !appended {
            return Ok(rc.report);
        }
        self.finish_room(&mut rc, meta)?;
        rc.report.resolutions = rc.tracker.resolutions;
        rc.report.state_loads = rc.tracker.loads;
        Ok(rc.report)
    }

    fn short_event_id(&mut self, event_id: &str) -> Result<u64> {
        Ok(self.short_event_id_seen(event_id)?.0)
    }

    /// The event's short id, and whether it had one before (an earlier run saw the event).
    fn short_event_id_seen(&mut self, event_id: &str) -> Result<(u64, bool)> {
        if let Some(s) = self
            .store
            .get("eventid_shorteventid", event_id.as_bytes())?
            .as_deref()
            .and_then(read_u64be)
        {
            return Ok((s, true));
        }
        Ok((self.new_short_event_id(event_id)?, false))
    }

    /// A short id for an event that has none yet.
    fn new_short_event_id(&mut self, event_id: &str) -> Result<u64> {
        let s = self.next_count();
        self.store
            .put("eventid_shorteventid", event_id.as_bytes(), &u64be(s))?;
        self.store
            .put("shorteventid_eventid", &u64be(s), event_id.as_bytes())?;
        Ok(s)
    }

    fn short_state_key(&mut self, kind: &str, state_key: &str) -> Result<u64> {
        let k = joined(&[kind.as_bytes(), state_key.as_bytes()]);
        if let Some(s) = self
            .store
            .get("statekey_shortstatekey", &k)?
            .as_deref()
            .and_then(read_u64be)
        {
            return Ok(s);
        }
        let s = self.next_count();
        self.store.put("statekey_shortstatekey", &k, &u64be(s))?;
        self.store.put("shortstatekey_statekey", &u64be(s), &k)?;
        Ok(s)
    }

    /// The shortstatehash of a state, writing a new snapshot if it differs from the last one.
    fn snapshot(&mut self, rc: &mut RoomCtx, state: &Arc<State>) -> Result<u64> {
        if let Some((sh, cur)) = &rc.current {
            if Arc::ptr_eq(cur, state) || **cur == **state {
                return Ok(*sh);
            }
        }
        let mut entries = HashSet::with_capacity(state.len());
        for ((kind, key), eid) in state.iter() {
            let ssk = self.short_state_key(&kind.to_string(), key)?;
            let se = self.short_event_id(eid.as_str())?;
            entries.insert(state_entry(ssk, se));
        }
        let sh = self.next_count();
        let diff = rc.base.as_ref().map(|(b, base)| {
            let added: Vec<StateEntry> = entries.difference(base).copied().collect();
            let removed: Vec<StateEntry> = base.difference(&entries).copied().collect();
            (*b, added, removed)
        });
        match diff {
            Some((b, added, removed)) if added.len() + removed.len() <= MAX_DIFF => {
                self.store.put(
                    "shortstatehash_statediff",
                    &u64be(sh),
                    &encode_statediff(b, &added, &removed),
                )?;
            }
            _ => {
                let mut all: Vec<StateEntry> = entries.iter().copied().collect();
                all.sort();
                self.store.put(
                    "shortstatehash_statediff",
                    &u64be(sh),
                    &encode_statediff(0, &all, &[]),
                )?;
                rc.base = Some((sh, entries));
            }
        }
        rc.current = Some((sh, state.clone()));
        rc.report.snapshots += 1;
        Ok(sh)
    }

    fn append(&mut self, rc: &mut RoomCtx, line: PduLine) -> Result<()> {
        let PduLine {
            event_id,
            pdu: mut pdu_json,
            source,
        } = line;
        let ev =
            StateEvent::from_pdu(&event_id, &pdu_json).map_err(|e| Error::malformed("PDU", e))?;
        let before = rc
            .tracker
            .push_with(ev.clone(), &mut StoredStates(&mut self.store))
            .map_err(|e| Error::malformed(format!("room {}", rc.room_id), e))?;
        let info = StateInfo::of(&pdu_json);
        if let Some(info) = &info {
            if info.kind == "m.room.member" {
                self.member_event(rc, &info.state_key, info.membership())?;
            }
        }
        rc.position += 1;
        if rc.position <= rc.history_until {
            return self.history_event(rc, &event_id, &before, info, pdu_json);
        }
        let prev_state = ev.state_pair().and_then(|pair| before.get(&pair).cloned());
        let known_before = !rc.fresh || rc.outlier_ids.contains(&event_id);
        if known_before
            && self
                .store
                .get("eventid_pduid", event_id.as_bytes())?
                .is_some()
        {
            if rc.report.events > 0 {
                // Events were just appended *before* this one, which Conduit already holds: the
                // database was written with `--recent`, and older history can only arrive as
                // backfill, or counts would put it after newer events.
                return Err(Error::Config(format!(
                    "room {}: the database holds only recent events of this room (written with --recent); \
                     older ones reach Conduit through the backfill proxy. Use the same or a smaller --recent",
                    rc.room_id
                )));
            }
            // Written by an earlier run: keep it, remember what later events need.
            rc.report.skipped_existing += 1;
            if let Some(info) = info {
                rc.state_events.insert(ev.id().to_owned(), info);
            }
            return Ok(());
        }
        let se = if known_before {
            self.short_event_id(&event_id)?
        } else {
            self.new_short_event_id(&event_id)?
        };
        if !(before.is_empty() && info.as_ref().is_some_and(|i| i.kind == "m.room.create")) {
            let sh = self.snapshot(rc, &before)?;
            self.store
                .put("shorteventid_shortstatehash", &u64be(se), &u64be(sh))?;
        }
        let kind = pdu::str_field(&pdu_json, "type").unwrap_or("").to_owned();
        // What we add to the signed PDU does not count against the size limit.
        let mut added = event_id.len() + ",\"event_id\":\"\"".len();
        let prev = prev_state.as_ref().and_then(|p| rc.state_events.get(p));
        // Most events are stored as read: the line's text with the event id put first.
        let as_read = match (prev, source.as_deref()) {
            (None, Some(line)) => stored_as_read(&event_id, line, &mut pdu_json),
            _ => None,
        };
        if let Some(prev) = prev {
            added += serde_json::to_vec(&prev.content).map_or(0, |v| v.len())
                + prev.sender.len()
                + ",\"unsigned\":{\"prev_content\":,\"prev_sender\":\"\"}".len();
            let unsigned = pdu_json
                .entry("unsigned".into())
                .or_insert_with(|| CanonicalJsonValue::Object(Default::default()));
            if let CanonicalJsonValue::Object(u) = unsigned {
                u.insert("prev_content".into(), prev.content.clone());
                u.insert(
                    "prev_sender".into(),
                    CanonicalJsonValue::String(prev.sender.clone()),
                );
            }
        }
        if let Some(info) = info {
            rc.state_events.insert(ev.id().to_owned(), info);
        }
        // The stored form, made in place: no copy of the PDU.
        let stored = match as_read {
            Some(stored) => stored,
            None => into_stored(&event_id, &mut pdu_json),
        };
        // The spec's limit on a PDU; Conduit would serve it, but no server accepts it back.
        if stored.len().saturating_sub(added) > MAX_PDU_BYTES {
            return Err(Error::malformed(
                format!("event {event_id} in room {}", rc.room_id),
                format!(
                    "{} bytes, over the {MAX_PDU_BYTES}-byte limit on events",
                    stored.len() - added
                ),
            ));
        }
        let count = self.next_count();
        let pid = pdu_id(rc.sroom, count);
        self.store.put("pduid_pdu", &pid, &stored)?;
        self.store.put("eventid_pduid", event_id.as_bytes(), &pid)?;
        if known_before {
            self.store
                .delete("eventid_outlierpdu", event_id.as_bytes())?;
        }
        for p in pdu::event_refs(&pdu_json, "prev_events") {
            let mut k = rc.room_id.as_bytes().to_vec();
            k.extend_from_slice(p.as_bytes());
            self.store.put("referencedevents", &k, b"")?;
        }
        let content = match pdu_json.get("content") {
            Some(CanonicalJsonValue::Object(c)) => Some(c),
            _ => None,
        };
        if kind == "m.room.message" {
            if let Some(CanonicalJsonValue::String(body)) = content.and_then(|c| c.get("body")) {
                for word in search_tokens(body) {
                    let mut k = u64be(rc.sroom).to_vec();
                    k.extend_from_slice(word.as_bytes());
                    k.push(SEP);
                    k.extend_from_slice(&pid);
                    self.store.put("tokenids", &k, b"")?;
                }
            }
        }
        if let Some(target) = content.and_then(relation_target) {
            if let Some(target) = self.timeline_count(&target)? {
                let mut k = u64be(target).to_vec();
                k.extend_from_slice(&u64be(count));
                self.store.put("tofrom_relation", &k, b"")?;
            }
        }
        let (root, redacts) = aggregations::earlier_targets(&pdu_json);
        if let Some(root) = root {
            let sender = pdu::str_field(&pdu_json, "sender").unwrap_or_default();
            self.add_to_thread(&root, &pid, sender)?;
        }
        if let Some(target) = redacts {
            let stored: serde_json::Value =
                serde_json::from_slice(&stored).expect("we serialized it");
            self.mark_redacted(&target, &stored, &rc.rules.redaction)?;
        }
        rc.report.events += 1;
        Ok(())
    }

    /// An event older than the `--recent` window: Conduit will fetch it from the backfill proxy
    /// when someone scrolls back. What later events need stays: a state event as an outlier
    /// (snapshots refer to it), and the state before every event (the state tracker reads it
    /// back for events that left its window).
    fn history_event(
        &mut self,
        rc: &mut RoomCtx,
        event_id: &str,
        before: &Arc<State>,
        info: Option<StateInfo>,
        mut pdu_json: CanonicalJsonObject,
    ) -> Result<()> {
        rc.report.left_to_backfill += 1;
        // An earlier run gave it a short id and applied its marks (they are committed together).
        let (se, seen) = self.short_event_id_seen(event_id)?;
        if self
            .store
            .get("shorteventid_shortstatehash", &u64be(se))?
            .is_none()
            && !before.is_empty()
        {
            let sh = self.snapshot(rc, before)?;
            self.store
                .put("shorteventid_shortstatehash", &u64be(se), &u64be(sh))?;
        }
        // A redaction or thread reply that is itself older than the window marks an older
        // event as full mode would (both reach Conduit by backfill, which links nothing).
        if !seen {
            self.mark_from_history(rc, event_id, &pdu_json)?;
        }
        // State events (snapshots refer to them), and what the recent window marks: Conduit
        // moves an outlier into its timeline as stored when the proxy serves it.
        // A marked outlier from an earlier run keeps its marks (the window's events that made
        // them are not written again).
        let marked = self.reached_back.contains(event_id);
        if (info.is_some() || marked)
            && self
                .store
                .get("eventid_pduid", event_id.as_bytes())?
                .is_none()
            && !(marked
                && self
                    .store
                    .get("eventid_outlierpdu", event_id.as_bytes())?
                    .is_some())
        {
            let stored = into_stored(event_id, &mut pdu_json);
            self.store
                .put("eventid_outlierpdu", event_id.as_bytes(), &stored)?;
        }
        if let Some(info) = info {
            rc.state_events
                .insert(OwnedEventId::try_from(event_id).expect("checked"), info);
        }
        Ok(())
    }

    /// What an event older than the window does to older events kept as outliers: a
    /// redaction marks its target, a thread reply updates its root's summary.
    fn mark_from_history(
        &mut self,
        rc: &RoomCtx,
        event_id: &str,
        pdu_json: &CanonicalJsonObject,
    ) -> Result<()> {
        let (root, target) = aggregations::earlier_targets(pdu_json);
        let root = root.filter(|r| self.reached_back.contains(r));
        let target = target.filter(|t| self.reached_back.contains(t));
        if root.is_none() && target.is_none() {
            return Ok(());
        }
        let stored: serde_json::Value =
            serde_json::from_slice(&stored_json(event_id, pdu_json)).expect("we serialized it");
        if let Some(root) = root {
            self.add_to_outlier_thread(&root, &stored)?;
        }
        if let Some(target) = target {
            self.mark_redacted(&target, &stored, &rc.rules.redaction)?;
        }
        Ok(())
    }

    /// The count of a timeline PDU already written.
    fn timeline_count(&mut self, event_id: &str) -> Result<Option<u64>> {
        Ok(self
            .store
            .get("eventid_pduid", event_id.as_bytes())?
            .and_then(|pid| read_u64be(&pid[pid.len().saturating_sub(8)..])))
    }

    fn member_event(&mut self, rc: &mut RoomCtx, target: &str, membership: &str) -> Result<()> {
        if membership == "join" {
            rc.ever_joined.insert(target.to_owned());
        }
        // Users of other servers exist in Conduit as password-less accounts.
        if !target.ends_with(&format!(":{}", self.server_name))
            && self
                .store
                .get("userid_password", target.as_bytes())?
                .is_none()
        {
            self.store.put("userid_password", target.as_bytes(), b"")?;
        }
        Ok(())
    }

    /// Current state, forward extremities, membership caches, counts, servers — only when this
    /// run appended events, so a re-run over a database Conduit has since used keeps Conduit's
    /// newer extremities and caches — then aliases and the directory.
    fn finish_room(&mut self, rc: &mut RoomCtx, meta: &RoomMeta) -> Result<()> {
        let room = meta.room_id.as_bytes();
        if rc.report.events > 0 || self.store.get("roomid_shortstatehash", room)?.is_none() {
            self.put_room_state(rc, meta)?;
        }
        self.put_room_directory(meta)
    }

    fn put_room_state(&mut self, rc: &mut RoomCtx, meta: &RoomMeta) -> Result<()> {
        let room = meta.room_id.as_bytes();
        let ext: Vec<OwnedEventId> = meta
            .forward_extremities
            .iter()
            .filter_map(|e| e.as_str().try_into().ok())
            .collect();
        let current = rc
            .tracker
            .current_state_with(&ext, &mut StoredStates(&mut self.store))
            .map_err(|e| Error::malformed(format!("room {}", meta.room_id), e))?;
        let sh = self.snapshot(rc, &current)?;
        self.store.put("roomid_shortstatehash", room, &u64be(sh))?;
        for (k, _) in self
            .store
            .scan_prefix("roomid_pduleaves", &joined(&[room, b""]))?
        {
            self.store.delete("roomid_pduleaves", &k)?;
        }
        for e in &meta.forward_extremities {
            if self.timeline_count(e)?.is_some() {
                self.store.put(
                    "roomid_pduleaves",
                    &joined(&[room, e.as_bytes()]),
                    e.as_bytes(),
                )?;
            }
        }
        // Membership caches from the resolved current state (right at forks, unlike replaying
        // member events in timeline order).
        let (mut joined_n, mut invited_n) = (0u64, 0u64);
        let mut servers: HashSet<String> = HashSet::new();
        for ((kind, user), eid) in current.iter() {
            if kind.to_string() != "m.room.member" {
                continue;
            }
            let membership = rc
                .state_events
                .get(eid)
                .map(|i| i.membership().to_owned())
                .unwrap_or_default();
            let ur = joined(&[user.as_bytes(), room]);
            let ru = joined(&[room, user.as_bytes()]);
            for (t, k) in [
                ("userroomid_joined", &ur),
                ("roomuserid_joined", &ru),
                ("userroomid_invitestate", &ur),
                ("roomuserid_invitecount", &ru),
                ("userroomid_knockstate", &ur),
                ("roomuserid_knockcount", &ru),
                ("userroomid_leftstate", &ur),
                ("roomuserid_leftcount", &ru),
            ] {
                self.store.delete(t, k)?;
            }
            match membership.as_str() {
                "join" => {
                    self.store.put("userroomid_joined", &ur, b"")?;
                    self.store.put("roomuserid_joined", &ru, b"")?;
                    joined_n += 1;
                    servers.extend(user.split_once(':').map(|(_, s)| s.to_owned()));
                }
                "invite" => {
                    let stripped = self.stripped_state(rc, &current, eid)?;
                    self.store
                        .put("userroomid_invitestate", &ur, stripped.as_bytes())?;
                    let n = self.next_count();
                    self.store.put("roomuserid_invitecount", &ru, &u64be(n))?;
                    invited_n += 1;
                }
                "knock" => {
                    let stripped = self.stripped_state(rc, &current, eid)?;
                    self.store
                        .put("userroomid_knockstate", &ur, stripped.as_bytes())?;
                    let n = self.next_count();
                    self.store.put("roomuserid_knockcount", &ru, &u64be(n))?;
                }
                _ => {
                    self.store.put("userroomid_leftstate", &ur, b"[]")?;
                    let n = self.next_count();
                    self.store.put("roomuserid_leftcount", &ru, &u64be(n))?;
                }
            }
        }
        for user in &rc.ever_joined {
            self.store.put(
                "roomuseroncejoinedids",
                &joined(&[user.as_bytes(), room]),
                b"",
            )?;
        }
        self.store
            .put("roomid_joinedcount", room, &u64be(joined_n))?;
        self.store
            .put("roomid_invitedcount", room, &u64be(invited_n))?;
        for s in &servers {
            self.store
                .put("roomserverids", &joined(&[room, s.as_bytes()]), b"")?;
            self.store
                .put("serverroomids", &joined(&[s.as_bytes(), room]), b"")?;
        }
        Ok(())
    }

    /// Local aliases (never taking one that exists) and the public directory.
    fn put_room_directory(&mut self, meta: &RoomMeta) -> Result<()> {
        let room = meta.room_id.as_bytes();
        let suffix = format!(":{}", self.server_name);
        for alias in meta.aliases.iter().filter(|a| a.ends_with(&suffix)) {
            let local = &alias[1..alias.len() - suffix.len()];
            if self.store.get("alias_roomid", local.as_bytes())?.is_none() {
                self.store.put("alias_roomid", local.as_bytes(), room)?;
                if let Some(creator) = &meta.creator {
                    self.store
                        .put("alias_userid", local.as_bytes(), creator.as_bytes())?;
                }
                let n = self.next_count();
                let mut k = joined(&[room, b""]);
                k.extend_from_slice(&u64be(n));
                self.store.put("aliasid_alias", &k, alias.as_bytes())?;
            }
        }
        if meta.published {
            self.store.put("publicroomids", room, b"")?;
        }
        Ok(())
    }

    /// The stripped state Conduit stores with an invite: create, name, avatar, topic, join
    /// rules, canonical alias, encryption (when present), and the membership event itself.
    fn stripped_state(
        &mut self,
        rc: &RoomCtx,
        state: &State,
        member: &OwnedEventId,
    ) -> Result<String> {
        const KINDS: [&str; 7] = [
            "m.room.create",
            "m.room.name",
            "m.room.avatar",
            "m.room.topic",
            "m.room.join_rules",
            "m.room.canonical_alias",
            "m.room.encryption",
        ];
        let mut ids: Vec<&OwnedEventId> = state
            .iter()
            .filter(|((t, k), _)| k.is_empty() && KINDS.contains(&t.to_string().as_str()))
            .map(|(_, e)| e)
            .collect();
        ids.sort();
        ids.push(member);
        let out: Vec<serde_json::Value> = ids
            .into_iter()
            .filter_map(|id| rc.state_events.get(id))
            .map(|i| serde_json::json!({"content": i.content, "sender": i.sender, "type": i.kind, "state_key": i.state_key}))
            .collect();
        Ok(serde_json::Value::Array(out).to_string())
    }
}

/// Reads the state before an event back from the snapshots already written.
struct StoredStates<'a, S: Store>(&'a mut S);

impl<S: Store> StateLoader for StoredStates<'_, S> {
    fn state_before(
        &mut self,
        id: &ruma::EventId,
    ) -> std::result::Result<Option<State>, StateError> {
        let load = |store: &mut S| -> Result<Option<State>> {
            let Some(se) = store.get("eventid_shorteventid", id.as_bytes())? else {
                return Ok(None);
            };
            let Some(sh) = store
                .get("shorteventid_shortstatehash", &se)?
                .as_deref()
                .and_then(read_u64be)
            else {
                return Ok(None);
            };
            let mut state = State::new();
            for ((kind, key), eid) in reader::state(store, sh)? {
                let eid = OwnedEventId::try_from(eid)
                    .map_err(|e| Error::Conduit(format!("stored state of {id}: {e}")))?;
                state.insert((kind.into(), key), eid);
            }
            Ok(Some(state))
        };
        load(self.0).map_err(|e| StateError::Load(id.to_owned(), e.to_string()))
    }
}

/// The stored form: the PDU as signed plus `event_id`.
fn stored_json(event_id: &str, pdu_json: &CanonicalJsonObject) -> Vec<u8> {
    into_stored(event_id, &mut pdu_json.clone())
}

/// [`stored_json`] for a PDU the caller owns: `event_id` is added to it in place.
fn into_stored(event_id: &str, pdu_json: &mut CanonicalJsonObject) -> Vec<u8> {
    pdu_json.insert(
        "event_id".into(),
        CanonicalJsonValue::String(event_id.to_owned()),
    );
    serde_json::to_vec(pdu_json).expect("canonical JSON serializes")
}

/// The stored form of a PDU from the text it was read from: `{"event_id":"<id>",` and the PDU's
/// members as they are (Conduit reads its stored PDUs as JSON objects, in any key order). Saves
/// serialising every PDU again, the writer's largest single cost after RocksDB. `None` (then
/// [`into_stored`]) for a line of another shape or a PDU that carries an `event_id` of its own.
fn stored_as_read(
    event_id: &str,
    line: &str,
    pdu_json: &mut CanonicalJsonObject,
) -> Option<Vec<u8>> {
    let text = crate::archive::room::pdu_text(event_id, line)?;
    if text.len() <= 2 || pdu_json.contains_key("event_id") {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() + event_id.len() + 16);
    out.extend_from_slice(b"{\"event_id\":");
    serde_json::to_writer(&mut out, event_id).ok()?;
    out.push(b',');
    out.extend_from_slice(&text.as_bytes()[1..]);
    // What later steps see of the PDU, as after [`into_stored`].
    pdu_json.insert(
        "event_id".into(),
        CanonicalJsonValue::String(event_id.to_owned()),
    );
    Some(out)
}

/// Conduit's search tokenizer: split on non-alphanumerics, drop empty and >50-byte pieces,
/// lowercase.
pub fn search_tokens(body: &str) -> Vec<String> {
    // Each word once: a word repeated in a message makes the same key again (a sixth of all
    // keys of a bulk write, which RocksDB would sort, copy and insert only to find it written).
    let mut words: Vec<String> = body
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= 50)
        .map(str::to_lowercase)
        .collect();
    words.sort_unstable();
    words.dedup();
    words
}

/// The event a message relates to (`m.relates_to.event_id`, or a reply's `m.in_reply_to`).
fn relation_target(content: &CanonicalJsonObject) -> Option<String> {
    let CanonicalJsonValue::Object(rel) = content.get("m.relates_to")? else {
        return None;
    };
    if let Some(CanonicalJsonValue::String(id)) = rel.get("event_id") {
        return Some(id.clone());
    }
    match rel.get("m.in_reply_to") {
        Some(CanonicalJsonValue::Object(r)) => match r.get("event_id") {
            Some(CanonicalJsonValue::String(id)) => Some(id.clone()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored form made from a line's text holds exactly what serialising the parsed PDU
    /// gives; lines of another shape, and PDUs with an id of their own, take the slow way.
    #[test]
    fn stored_as_read_is_the_serialised_pdu() {
        let pdu = crate::matrix::pdu::from_value(serde_json::json!({
            "type": "m.room.message", "content": {"body": "a \"q\" é \u{1F600}", "msgtype": "m.text"},
            "depth": 4, "hashes": {"sha256": "x"}, "prev_events": ["$p"], "room_id": "!r:s"
        }))
        .unwrap();
        let line = PduLine::new("$ev".into(), pdu.clone());
        let text = serde_json::to_string(&line).unwrap();
        let mut quick = pdu.clone();
        let stored =
            stored_as_read("$ev", &text, &mut quick).expect("a line as PduWriter writes it");
        let mut slow = pdu.clone();
        let expected = into_stored("$ev", &mut slow);
        let parsed = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();
        assert_eq!(parsed(&stored), parsed(&expected));
        assert_eq!(stored.len(), expected.len());
        assert_eq!(quick, slow, "later steps see the same PDU");
        // Another id, another shape, or a PDU with its own event_id: no quick form.
        assert!(stored_as_read("$other", &text, &mut pdu.clone()).is_none());
        let spaced = text.replacen(":", ": ", 1);
        assert!(stored_as_read("$ev", &spaced, &mut pdu.clone()).is_none());
        let mut with_id = pdu.clone();
        with_id.insert("event_id".into(), CanonicalJsonValue::String("$ev".into()));
        let text = serde_json::to_string(&PduLine::new("$ev".into(), with_id.clone())).unwrap();
        assert!(stored_as_read("$ev", &text, &mut with_id).is_none());
    }

    #[test]
    fn search_tokens_are_conduits_words_each_once() {
        let long = "x".repeat(51);
        let body = format!("The cat, the CAT and the dög_2 {long} über-Café");
        assert_eq!(
            search_tokens(&body),
            vec!["2", "and", "café", "cat", "dög", "the", "über"]
        );
    }
}

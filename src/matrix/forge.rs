//! Building new rooms out of events we sign ourselves, with the server key: the admin room the
//! Conduit writer creates, and every room an import from another chat system (Mattermost)
//! builds. Each event gets the auth events the spec requires, its content hash, our signature
//! and its reference-hash id, so any homeserver accepts it as if it had created it.

use std::collections::BTreeMap;

use ruma::room_version_rules::RoomVersionRules;
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use serde_json::{json, Value};

use crate::archive::room::{PduLine, StateEntry};
use crate::matrix::pdu::{self, PduError};
use crate::matrix::signer::EventSigner;

/// A linear room under construction: every event follows the previous one.
pub struct RoomBuilder<'k> {
    signer: &'k EventSigner,
    rules: RoomVersionRules,
    room_id: String,
    depth: i64,
    prev: Option<String>,
    /// (type, state_key) → (event id, content), the state after the last event.
    state: BTreeMap<(String, String), (String, Value)>,
}

impl<'k> RoomBuilder<'k> {
    /// A room `room_id` of `version` (3–11: ids we choose; v12 ids derive from the create
    /// event and are not supported here). The create event is the first [`RoomBuilder::send`].
    pub fn new(signer: &'k EventSigner, version: &str, room_id: &str) -> Result<Self, PduError> {
        let rules = pdu::rules_for(version)
            .filter(|_| !matches!(version, "1" | "2" | "12"))
            .ok_or_else(|| PduError::EventId(format!("cannot build rooms of version {version}")))?;
        Ok(RoomBuilder {
            signer,
            rules,
            room_id: room_id.to_owned(),
            depth: 0,
            prev: None,
            state: BTreeMap::new(),
        })
    }

    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    /// What a redaction keeps of an event in this room's version.
    pub fn redaction_rules(&self) -> &ruma::room_version_rules::RedactionRules {
        &self.rules.redaction
    }

    /// Appends one event and returns it, signed, with its id and its line's text (`source`).
    pub fn send(
        &mut self,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        origin_server_ts: i64,
    ) -> Result<PduLine, PduError> {
        self.build(sender, kind, state_key, content, origin_server_ts, None)
    }

    /// Appends an `m.room.redaction` of `target`: `redacts` goes in the content from room
    /// version 11 on and at the top level before it (we put it in both places for v1–10, as
    /// Synapse does, so clients of either kind find it).
    pub fn redact(
        &mut self,
        sender: &str,
        target: &str,
        origin_server_ts: i64,
    ) -> Result<PduLine, PduError> {
        let content = json!({ "redacts": target });
        let top = (!self.rules.redaction.content_field_redacts).then_some(target);
        self.build(
            sender,
            "m.room.redaction",
            None,
            content,
            origin_server_ts,
            top,
        )
    }

    fn build(
        &mut self,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        origin_server_ts: i64,
        redacts: Option<&str>,
    ) -> Result<PduLine, PduError> {
        let auth = self.auth_events(sender, kind, state_key, &content);
        self.depth += 1;
        // The event as canonical JSON straight away (only the content comes as a JSON value).
        let string = |s: &str| CanonicalJsonValue::String(s.to_owned());
        let int = |i: i64| {
            ruma::Int::new(i)
                .map(CanonicalJsonValue::Integer)
                .ok_or_else(|| PduError::NotCanonical(format!("{i} is out of range")))
        };
        let ids = |ids: Vec<String>| {
            CanonicalJsonValue::Array(ids.into_iter().map(CanonicalJsonValue::String).collect())
        };
        let content = CanonicalJsonValue::try_from(content)
            .map_err(|e| PduError::NotCanonical(e.to_string()))?;
        let mut obj = CanonicalJsonObject::from([
            ("room_id".to_owned(), string(&self.room_id)),
            ("sender".to_owned(), string(sender)),
            ("type".to_owned(), string(kind)),
            ("content".to_owned(), content),
            ("depth".to_owned(), int(self.depth)?),
            ("origin_server_ts".to_owned(), int(origin_server_ts)?),
            (
                "prev_events".to_owned(),
                ids(self.prev.iter().cloned().collect()),
            ),
            ("auth_events".to_owned(), ids(auth)),
        ]);
        if let Some(k) = state_key {
            obj.insert("state_key".into(), string(k));
        }
        if let Some(target) = redacts {
            obj.insert("redacts".into(), string(target));
        }
        let (event_id, text) = self.signer.hash_sign_and_text(&mut obj, &self.rules)?;
        if let Some(k) = state_key {
            let content = match obj.get("content") {
                Some(c) => serde_json::to_value(c).unwrap_or_default(),
                None => Value::Null,
            };
            self.state
                .insert((kind.to_owned(), k.to_owned()), (event_id.clone(), content));
        }
        self.prev = Some(event_id.clone());
        Ok(PduLine {
            source: Some(crate::archive::room::line_text(&event_id, &text)),
            event_id,
            pdu: obj,
        })
    }

    /// The auth events the spec's auth rules select for an event.
    fn auth_events(
        &self,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: &Value,
    ) -> Vec<String> {
        if kind == "m.room.create" {
            return Vec::new();
        }
        let mut keys = vec![
            ("m.room.create", ""),
            ("m.room.power_levels", ""),
            ("m.room.member", sender),
        ];
        if kind == "m.room.member" {
            let target = state_key.unwrap_or_default();
            keys.push(("m.room.member", target));
            if matches!(
                content["membership"].as_str(),
                Some("join") | Some("invite") | Some("knock")
            ) {
                keys.push(("m.room.join_rules", ""));
            }
        }
        let mut ids: Vec<String> = keys
            .into_iter()
            .filter_map(|(t, k)| self.state.get(&(t.to_owned(), k.to_owned())))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The membership of `user` now, if any.
    pub fn membership(&self, user: &str) -> Option<&str> {
        self.state
            .get(&("m.room.member".to_owned(), user.to_owned()))
            .and_then(|(_, c)| c["membership"].as_str())
    }

    /// The current state, for `room.json`.
    pub fn current_state(&self) -> Vec<StateEntry> {
        self.state
            .iter()
            .map(|((kind, state_key), (event_id, _))| StateEntry {
                kind: kind.clone(),
                state_key: state_key.clone(),
                event_id: event_id.clone(),
            })
            .collect()
    }

    /// The last event (the room's only forward extremity).
    pub fn last_event(&self) -> Option<&str> {
        self.prev.as_deref()
    }

    /// Events so far.
    pub fn depth(&self) -> i64 {
        self.depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::keys::ServerKey;
    use crate::matrix::pdu::{check_signatures, SignatureCheck};
    use crate::matrix::state::{StateEvent, StateTracker};
    use ruma::signatures::{PublicKeyMap, PublicKeySet};

    #[test]
    fn built_events_verify_and_carry_the_auth_events_the_rules_need() {
        let text = format!("ed25519 fg {}\n", crate::matrix::b64_encode(&[9u8; 32]));
        let key = ServerKey::parse_synapse(&text, std::path::Path::new("k"))
            .unwrap()
            .remove(0);
        let signer = EventSigner::new(&key, "s.test");
        let mut b = RoomBuilder::new(&signer, "10", "!r:s.test").unwrap();
        let (a, bob) = ("@a:s.test", "@bob:s.test");
        let mut lines = vec![
            b.send(
                a,
                "m.room.create",
                Some(""),
                json!({"creator": a, "room_version": "10"}),
                1,
            )
            .unwrap(),
            b.send(
                a,
                "m.room.member",
                Some(a),
                json!({"membership": "join"}),
                2,
            )
            .unwrap(),
            b.send(
                a,
                "m.room.power_levels",
                Some(""),
                json!({"users": {a: 100}}),
                3,
            )
            .unwrap(),
            b.send(
                a,
                "m.room.join_rules",
                Some(""),
                json!({"join_rule": "invite"}),
                4,
            )
            .unwrap(),
            b.send(
                a,
                "m.room.member",
                Some(bob),
                json!({"membership": "invite"}),
                5,
            )
            .unwrap(),
        ];
        lines.push(
            b.send(
                bob,
                "m.room.member",
                Some(bob),
                json!({"membership": "join"}),
                6,
            )
            .unwrap(),
        );
        lines.push(
            b.send(
                bob,
                "m.room.message",
                None,
                json!({"body": "hi", "msgtype": "m.text"}),
                7,
            )
            .unwrap(),
        );
        assert_eq!(b.membership(bob), Some("join"));
        assert_eq!(b.current_state().len(), 5);

        let mut keys = PublicKeyMap::new();
        let mut set = PublicKeySet::new();
        set.insert(
            key.key_id(),
            ruma::serde::Base64::parse(key.public_key_b64()).unwrap(),
        );
        keys.insert("s.test".into(), set);
        let rules = pdu::rules_for("10").unwrap();
        let mut tracker = StateTracker::new(rules.clone());
        for l in &lines {
            assert_eq!(pdu::event_id(&l.pdu, &rules).unwrap(), l.event_id);
            assert_eq!(
                check_signatures(&l.pdu, &rules, "s.test", &keys).unwrap(),
                SignatureCheck::Valid
            );
            let ev = StateEvent::from_pdu(&l.event_id, &l.pdu).unwrap();
            let before = tracker.push(ev.clone()).unwrap();
            // Every event passes the spec's authorization rules against the state before it.
            let fetch = |k: &ruma::events::StateEventType, s: &str| {
                before.get(&(k.clone(), s.to_owned())).map(|id| {
                    let line = lines.iter().find(|x| x.event_id == id.as_str()).unwrap();
                    StateEvent::from_pdu(&line.event_id, &line.pdu).unwrap()
                })
            };
            let by_id = |id: &ruma::EventId| {
                let line = lines.iter().find(|x| x.event_id == id.as_str())?;
                Some(StateEvent::from_pdu(&line.event_id, &line.pdu).unwrap())
            };
            ruma::state_res::check_state_independent_auth_rules(&rules.authorization, &ev, by_id)
                .unwrap_or_else(|e| panic!("{}: {e}", l.event_id));
            ruma::state_res::check_state_dependent_auth_rules(&rules.authorization, &ev, fetch)
                .unwrap_or_else(|e| panic!("{}: {e}", l.event_id));
        }
        // The join of bob names the join rules, his invite and the create event.
        let join = pdu::event_refs(&lines[5].pdu, "auth_events");
        for needed in [&lines[0], &lines[3], &lines[4], &lines[2]] {
            assert!(join.contains(&needed.event_id));
        }
    }
}

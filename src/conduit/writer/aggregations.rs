//! What Conduit changes on *earlier* events when a later one arrives (conduit-db.md §6.9): a
//! thread reply updates its root's `unsigned."m.relations"."m.thread"` and the thread's
//! participants; a redaction marks its target `unsigned.redacted_because`. Synapse serves the
//! targets already pruned, so only the marker is added — and only where the content really is
//! pruned, so an unauthorised redaction Synapse ignored is ignored here too.
//!
//! Conduit rewrites the root for every reply; a bulk write would rewrite a busy root thousands
//! of times (each a read, a JSON parse and a full PDU into the memtable). So replies are
//! gathered per root and the root is rewritten once, before every commit ([`Writer::commit`])
//! and before any redaction — what is stored at each commit is what reply-by-reply updates
//! would have stored.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use ruma::canonical_json::redact_content_in_place;
use ruma::room_version_rules::RedactionRules;
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::Writer;
use crate::conduit::store::Store;
use crate::error::{Error, Result};

/// The root of a thread reply (`m.relates_to` with `rel_type: m.thread`).
pub fn thread_root(content: &CanonicalJsonObject) -> Option<String> {
    let CanonicalJsonValue::Object(rel) = content.get("m.relates_to")? else {
        return None;
    };
    match (rel.get("rel_type"), rel.get("event_id")) {
        (Some(CanonicalJsonValue::String(t)), Some(CanonicalJsonValue::String(id)))
            if t == "m.thread" =>
        {
            Some(id.clone())
        }
        _ => None,
    }
}

/// The event a redaction redacts: top-level `redacts`, or `content.redacts` (room v11+).
pub fn redaction_target(pdu: &CanonicalJsonObject) -> Option<String> {
    if let Some(CanonicalJsonValue::String(t)) = pdu.get("redacts") {
        return Some(t.clone());
    }
    match pdu.get("content") {
        Some(CanonicalJsonValue::Object(c)) => match c.get("redacts") {
            Some(CanonicalJsonValue::String(t)) => Some(t.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a stored event's content is already what a redaction leaves of it (Synapse serves a
/// redacted event pruned; one it kept whole was not redacted, whatever the redaction says).
fn is_pruned(json: &Value, rules: &RedactionRules) -> bool {
    let kind = json["type"].as_str().unwrap_or_default();
    let Ok(content) = serde_json::from_value::<CanonicalJsonObject>(json["content"].clone()) else {
        return false;
    };
    let mut pruned = content.clone();
    redact_content_in_place(&mut pruned, rules, kind);
    json.is_object() && pruned == content
}

/// What an event changes on earlier ones: the root of the thread it replies in, and the event
/// it redacts (only a redaction redacts).
pub fn earlier_targets(pdu: &CanonicalJsonObject) -> (Option<String>, Option<String>) {
    let root = match pdu.get("content") {
        Some(CanonicalJsonValue::Object(c)) => thread_root(c),
        _ => None,
    };
    let redacts = match pdu.get("type") {
        Some(CanonicalJsonValue::String(t)) if t == "m.room.redaction" => redaction_target(pdu),
        _ => None,
    };
    (root, redacts)
}

/// Thread replies gathered for one root since the last flush.
#[derive(Debug, Default)]
pub struct PendingThread {
    replies: u64,
    /// The pdu id of the latest reply.
    latest: Vec<u8>,
    /// Reply senders in order of their first reply.
    senders: Vec<String>,
}

/// Gathered thread updates, by the root's pdu id.
pub type PendingThreads = HashMap<Vec<u8>, PendingThread>;

/// A stored PDU's top-level fields, their values as stored (unparsed: a thread update
/// rewrites one field of the root and copies a few of its latest reply, and parsing whole
/// events into values made thread updates a twentieth of a bulk write).
type RawFields<'a> = BTreeMap<Cow<'a, str>, &'a RawValue>;

/// The fields of an event a client sees in a sync timeline (Conduit's
/// `to_sync_message_like_event`).
const SYNC_FIELDS: &[&str] = &[
    "content",
    "type",
    "event_id",
    "sender",
    "origin_server_ts",
    "unsigned",
    "state_key",
    "redacts",
];

fn raw_fields<'a>(raw: &'a [u8], pid: &[u8]) -> Result<RawFields<'a>> {
    serde_json::from_slice(raw)
        .map_err(|e| Error::Conduit(format!("pdu {}: stored JSON: {e}", hex::encode(pid))))
}

/// Fields of a nested object, their values as stored.
type OwnedFields = BTreeMap<String, Box<RawValue>>;

/// The fields of `raw` if it is an object (anything else counts as empty, as it would be
/// replaced).
fn nested(raw: Option<&RawValue>) -> OwnedFields {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or_default()
}

fn to_raw(v: &impl serde::Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).expect("JSON serializes")
}

impl<S: Store> Writer<S> {
    fn stored_pdu(&mut self, event_id: &str) -> Result<Option<(Vec<u8>, Value)>> {
        let Some(pid) = self.store.get("eventid_pduid", event_id.as_bytes())? else {
            return Ok(None);
        };
        let json = self.stored_json(&pid)?;
        Ok(Some((pid, json)))
    }

    fn stored_raw(&mut self, pid: &[u8]) -> Result<Vec<u8>> {
        self.store
            .get("pduid_pdu", pid)?
            .ok_or_else(|| Error::Conduit(format!("pdu id {} points at nothing", hex::encode(pid))))
    }

    fn stored_json(&mut self, pid: &[u8]) -> Result<Value> {
        let raw = self.stored_raw(pid)?;
        serde_json::from_slice(&raw)
            .map_err(|e| Error::Conduit(format!("pdu {}: stored JSON: {e}", hex::encode(pid))))
    }

    /// A reply (`reply_pid`, sent by `sender`) joins the thread of `root`; the root is
    /// rewritten at the next [`Writer::flush_threads`].
    pub(super) fn add_to_thread(
        &mut self,
        root: &str,
        reply_pid: &[u8],
        sender: &str,
    ) -> Result<()> {
        let Some(root_pid) = self.store.get("eventid_pduid", root.as_bytes())? else {
            if !self.reached_back.contains(root) {
                return Ok(()); // a root the database does not hold
            }
            let reply = self.stored_json(reply_pid)?;
            return self.add_to_outlier_thread(root, &reply);
        };
        let t = self.threads.entry(root_pid).or_default();
        t.replies += 1;
        t.latest = reply_pid.to_vec();
        if !t.senders.iter().any(|s| s == sender) {
            t.senders.push(sender.to_owned());
        }
        Ok(())
    }

    /// Writes every gathered thread update into its root and participants.
    pub(crate) fn flush_threads(&mut self) -> Result<()> {
        let mut threads: Vec<_> = std::mem::take(&mut self.threads).into_iter().collect();
        threads.sort_by(|a, b| a.0.cmp(&b.0));
        for (root_pid, t) in threads {
            self.update_thread(&root_pid, t)?;
        }
        Ok(())
    }

    fn update_thread(&mut self, root_pid: &[u8], t: PendingThread) -> Result<()> {
        let root_raw = self.stored_raw(root_pid)?;
        let latest_raw = self.stored_raw(&t.latest)?;
        let mut root = raw_fields(&root_raw, root_pid)?;
        // The latest reply as a sync timeline shows it: a few of its fields, copied as they are.
        let latest: RawFields = raw_fields(&latest_raw, &t.latest)?
            .into_iter()
            .filter(|(k, _)| SYNC_FIELDS.contains(&k.as_ref()))
            .collect();
        // unsigned."m.relations"."m.thread", its neighbours kept as they are.
        let mut unsigned: OwnedFields = nested(root.get("unsigned").copied());
        let mut relations: OwnedFields = nested(unsigned.get("m.relations").map(|r| &**r));
        #[derive(serde::Deserialize)]
        struct Count {
            count: Option<u64>,
        }
        let before = (relations.get("m.thread"))
            .and_then(|t| serde_json::from_str::<Count>(t.get()).ok())
            .and_then(|c| c.count);
        let thread: BTreeMap<&str, Box<RawValue>> = BTreeMap::from([
            ("count", to_raw(&(before.unwrap_or(0) + t.replies))),
            ("current_user_participated", to_raw(&true)),
            ("latest_event", to_raw(&latest)),
        ]);
        relations.insert("m.thread".into(), to_raw(&thread));
        unsigned.insert("m.relations".into(), to_raw(&relations));
        let unsigned = to_raw(&unsigned);
        root.insert(Cow::Borrowed("unsigned"), &unsigned);
        let sender: Option<String> = root
            .get("sender")
            .and_then(|s| serde_json::from_str(s.get()).ok());
        self.store.put(
            "pduid_pdu",
            root_pid,
            &serde_json::to_vec(&root).expect("JSON serializes"),
        )?;
        let mut users: Vec<String> = match self.store.get("threadid_userids", root_pid)? {
            Some(v) => v
                .split(|b| *b == 0xff)
                .map(|u| String::from_utf8_lossy(u).into_owned())
                .collect(),
            None => vec![sender.unwrap_or_default()],
        };
        for sender in t.senders {
            if !users.contains(&sender) {
                users.push(sender);
            }
        }
        // Participants: user ids joined by the byte FF.
        let bytes = users
            .iter()
            .map(|u| u.as_bytes())
            .collect::<Vec<_>>()
            .join(&0xffu8);
        self.store.put("threadid_userids", root_pid, &bytes)
    }

    /// Marks `target` as redacted by `redaction` (as stored), if its content is pruned.
    pub(super) fn mark_redacted(
        &mut self,
        target: &str,
        redaction: &Value,
        rules: &RedactionRules,
    ) -> Result<()> {
        // The target may be a thread root or a latest reply: pending updates first.
        self.flush_threads()?;
        let Some((pid, mut json)) = self.stored_pdu(target)? else {
            return self.mark_outlier_redacted(target, redaction, rules);
        };
        if !is_pruned(&json, rules) {
            return Ok(()); // Synapse kept the content: the redaction was not applied.
        }
        json["unsigned"] = json!({ "redacted_because": redaction });
        self.store.put(
            "pduid_pdu",
            &pid,
            &serde_json::to_vec(&json).expect("JSON serializes"),
        )
    }
}

/// An event older than the `--recent` window, kept as an outlier because the window refers to
/// it: Conduit stores it in its timeline as it is stored here when the proxy serves it, so it
/// gets what full mode would have written into it. Its thread's participants (`threadid_userids`,
/// keyed by a timeline position it does not have yet) and relations (`tofrom_relation`, which
/// Conduit keeps only between timeline counts) are not there (docs/TRANSITION.md).
impl<S: Store> Writer<S> {
    fn outlier(&mut self, event_id: &str) -> Result<Option<Value>> {
        if !self.reached_back.contains(event_id) {
            return Ok(None);
        }
        let Some(raw) = self.store.get("eventid_outlierpdu", event_id.as_bytes())? else {
            return Ok(None);
        };
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| Error::Conduit(format!("outlier {event_id}: stored JSON: {e}")))
    }

    fn put_outlier(&mut self, event_id: &str, json: &Value) -> Result<()> {
        self.store.put(
            "eventid_outlierpdu",
            event_id.as_bytes(),
            &serde_json::to_vec(json).expect("JSON serializes"),
        )
    }

    /// [`Writer::add_to_thread`] for a root kept as an outlier: its summary, at once.
    /// `reply` is the reply as stored.
    pub(super) fn add_to_outlier_thread(&mut self, root: &str, reply: &Value) -> Result<()> {
        let Some(mut json) = self.outlier(root)? else {
            return Ok(());
        };
        let latest: serde_json::Map<String, Value> = reply
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| SYNC_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let Some(fields) = json.as_object_mut() else {
            return Ok(());
        };
        let unsigned = fields.entry("unsigned").or_insert_with(|| json!({}));
        if !unsigned.is_object() {
            *unsigned = json!({});
        }
        let relations = unsigned
            .as_object_mut()
            .expect("an object")
            .entry("m.relations")
            .or_insert_with(|| json!({}));
        if !relations.is_object() {
            *relations = json!({});
        }
        let count = relations["m.thread"]["count"].as_u64().unwrap_or(0);
        relations["m.thread"] = json!({
            "count": count + 1,
            "current_user_participated": true,
            "latest_event": latest,
        });
        self.put_outlier(root, &json)
    }

    /// [`Writer::mark_redacted`] for a target kept as an outlier.
    fn mark_outlier_redacted(
        &mut self,
        target: &str,
        redaction: &Value,
        rules: &RedactionRules,
    ) -> Result<()> {
        let Some(mut json) = self.outlier(target)? else {
            return Ok(());
        };
        if !is_pruned(&json, rules) {
            return Ok(());
        }
        json["unsigned"] = json!({ "redacted_because": redaction });
        self.put_outlier(target, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conduit::store::sqlite::SqliteStore;

    fn put(w: &mut Writer<SqliteStore>, pid: u8, id: &str, sender: &str) {
        let json = json!({ "event_id": id, "sender": sender, "type": "m.room.message",
            "content": { "body": id }, "origin_server_ts": 1 });
        w.store.put("eventid_pduid", id.as_bytes(), &[pid]).unwrap();
        w.store
            .put("pduid_pdu", &[pid], &serde_json::to_vec(&json).unwrap())
            .unwrap();
    }

    fn thread(w: &mut Writer<SqliteStore>) -> (Value, Vec<u8>) {
        let root = w.stored_json(&[1]).unwrap();
        let users = w.store.get("threadid_userids", &[1]).unwrap().unwrap();
        (root["unsigned"]["m.relations"]["m.thread"].clone(), users)
    }

    /// Replies gathered across commits add up to what reply-by-reply updates store: the count
    /// continues from the stored one, participants keep their first-reply order.
    #[test]
    fn gathered_replies_match_one_by_one_updates() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::begin(SqliteStore::open(dir.path()).unwrap(), "t.test").unwrap();
        put(&mut w, 1, "$root", "@a:t.test");
        for (pid, id, sender) in [(2, "$r1", "@b:t.test"), (3, "$r2", "@a:t.test")] {
            put(&mut w, pid, id, sender);
            w.add_to_thread("$root", &[pid], sender).unwrap();
        }
        w.commit().unwrap();
        let (t, users) = thread(&mut w);
        assert_eq!(t["count"], 2);
        assert_eq!(t["latest_event"]["event_id"], "$r2");
        assert_eq!(users, b"@a:t.test\xff@b:t.test");
        for (pid, id, sender) in [(4, "$r3", "@c:t.test"), (5, "$r4", "@b:t.test")] {
            put(&mut w, pid, id, sender);
            w.add_to_thread("$root", &[pid], sender).unwrap();
        }
        // Not written before the commit...
        assert_eq!(thread(&mut w).0["count"], 2);
        w.commit().unwrap();
        let (t, users) = thread(&mut w);
        assert_eq!(t["count"], 4);
        assert_eq!(t["latest_event"]["event_id"], "$r4");
        assert_eq!(t["latest_event"]["content"]["body"], "$r4");
        assert_eq!(users, b"@a:t.test\xff@b:t.test\xff@c:t.test");
        // A reply to an event the database does not hold changes nothing.
        w.add_to_thread("$elsewhere", &[9], "@d:t.test").unwrap();
        assert!(w.threads.is_empty());
    }

    /// A redaction sees the root as reply-by-reply updates would have left it.
    #[test]
    fn redaction_of_a_root_comes_after_its_replies() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::begin(SqliteStore::open(dir.path()).unwrap(), "t.test").unwrap();
        put(&mut w, 1, "$root", "@a:t.test");
        put(&mut w, 2, "$r1", "@b:t.test");
        w.add_to_thread("$root", &[2], "@b:t.test").unwrap();
        let rules = ruma::room_version_rules::RoomVersionRules::V10.redaction;
        let redaction = json!({ "event_id": "$red", "type": "m.room.redaction" });
        w.mark_redacted("$root", &redaction, &rules).unwrap();
        assert!(w.threads.is_empty(), "flushed before the redaction");
        let root = w.stored_json(&[1]).unwrap();
        // The content was not pruned, so the redaction was not applied; the thread stands.
        assert_eq!(root["unsigned"]["m.relations"]["m.thread"]["count"], 1);
    }
}

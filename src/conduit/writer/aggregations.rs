//! What Conduit changes on *earlier* events when a later one arrives (conduit-db.md §6.9): a
//! thread reply updates its root's `unsigned."m.relations"."m.thread"` and the thread's
//! participants; a redaction marks its target `unsigned.redacted_because`. Synapse serves the
//! targets already pruned, so only the marker is added — and only where the content really is
//! pruned, so an unauthorised redaction Synapse ignored is ignored here too.

use ruma::canonical_json::redact_content_in_place;
use ruma::room_version_rules::RedactionRules;
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
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

/// An event as a client sees it in a sync timeline (Conduit's `to_sync_message_like_event`).
fn sync_form(stored: &Value) -> Value {
    let mut out = json!({});
    for k in [
        "content",
        "type",
        "event_id",
        "sender",
        "origin_server_ts",
        "unsigned",
        "state_key",
        "redacts",
    ] {
        if let Some(v) = stored.get(k) {
            out[k] = v.clone();
        }
    }
    out
}

impl<S: Store> Writer<S> {
    fn stored_pdu(&mut self, event_id: &str) -> Result<Option<(Vec<u8>, Value)>> {
        let Some(pid) = self.store.get("eventid_pduid", event_id.as_bytes())? else {
            return Ok(None);
        };
        let raw = self
            .store
            .get("pduid_pdu", &pid)?
            .ok_or_else(|| Error::Conduit(format!("{event_id}: its pdu id points at nothing")))?;
        let json = serde_json::from_slice(&raw)
            .map_err(|e| Error::Conduit(format!("{event_id}: stored JSON: {e}")))?;
        Ok(Some((pid, json)))
    }

    /// A reply `stored` (as stored, with `event_id`) joins the thread of `root`.
    pub(super) fn add_to_thread(&mut self, root: &str, stored: &Value) -> Result<()> {
        let Some((root_pid, mut root_json)) = self.stored_pdu(root)? else {
            return Ok(());
        };
        let thread = &mut root_json["unsigned"]["m.relations"]["m.thread"];
        let count = thread["count"].as_u64().unwrap_or(0) + 1;
        *thread = json!({
            "latest_event": sync_form(stored),
            "count": count,
            "current_user_participated": true,
        });
        self.store.put(
            "pduid_pdu",
            &root_pid,
            &serde_json::to_vec(&root_json).expect("JSON serializes"),
        )?;
        let mut users: Vec<String> = match self.store.get("threadid_userids", &root_pid)? {
            Some(v) => v
                .split(|b| *b == 0xff)
                .map(|u| String::from_utf8_lossy(u).into_owned())
                .collect(),
            None => vec![root_json["sender"].as_str().unwrap_or_default().to_owned()],
        };
        let sender = stored["sender"].as_str().unwrap_or_default().to_owned();
        if !users.contains(&sender) {
            users.push(sender);
        }
        // Participants: user ids joined by the byte FF.
        let bytes = users
            .iter()
            .map(|u| u.as_bytes())
            .collect::<Vec<_>>()
            .join(&0xffu8);
        self.store.put("threadid_userids", &root_pid, &bytes)
    }

    /// Marks `target` as redacted by `redaction` (as stored), if its content is pruned.
    pub(super) fn mark_redacted(
        &mut self,
        target: &str,
        redaction: &Value,
        rules: &RedactionRules,
    ) -> Result<()> {
        let Some((pid, mut json)) = self.stored_pdu(target)? else {
            return Ok(());
        };
        let kind = json["type"].as_str().unwrap_or_default().to_owned();
        let Ok(content) = serde_json::from_value::<CanonicalJsonObject>(json["content"].clone())
        else {
            return Ok(());
        };
        let mut pruned = content.clone();
        redact_content_in_place(&mut pruned, rules, &kind);
        if pruned != content {
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

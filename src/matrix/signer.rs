//! Signing the events we create: content hash, our signature and the reference-hash event id,
//! with one serialisation of the redacted event for both of the last two.
//!
//! Why not `ruma::signatures::hash_and_sign_event` and `reference_hash`: an import signs every
//! event it forges (a million and more), and signing was a quarter of an import's CPU time.
//! Here the signature comes from AWS-LC (about twice as fast as ed25519-dalek; Ed25519 is
//! deterministic, so the bytes are the same), and the redacted form that is signed is the very
//! form the reference hash covers (both drop `signatures` and `unsigned` and redact by the
//! room version's rules), so it is serialised once instead of twice. The test checks every
//! byte against ruma's functions.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use ruma::canonical_json::RedactingSerializer;
use ruma::room_version_rules::{EventIdFormatVersion, RoomVersionRules};
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use sha2::{Digest, Sha256};

use crate::matrix::keys::ServerKey;
use crate::matrix::pdu::PduError;

/// The largest event the content hash is computed for (ruma's limit, which Synapse shares).
const MAX_PDU_BYTES: usize = 65_535;

/// The fields that neither the signature nor the reference hash covers.
const UNSIGNED_FIELDS: &[&str] = &["signatures", "unsigned"];

/// Signs events as one server, with one key.
pub struct EventSigner {
    pair: Ed25519KeyPair,
    server_name: String,
    key_id: String,
}

impl std::fmt::Debug for EventSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSigner")
            .field("server_name", &self.server_name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl EventSigner {
    pub fn new(key: &ServerKey, server_name: &str) -> Self {
        let pair = Ed25519KeyPair::from_seed_unchecked(key.seed())
            .expect("any 32 bytes are an ed25519 seed");
        EventSigner {
            pair,
            server_name: server_name.to_owned(),
            key_id: key.key_id(),
        }
    }

    /// The public key, raw (for checks).
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// Adds the content hash and our signature to a new event (room version 3 or later) and
    /// returns its event id.
    pub fn hash_sign_and_id(
        &self,
        event: &mut CanonicalJsonObject,
        rules: &RoomVersionRules,
    ) -> Result<String, PduError> {
        let failed = |e: ruma::signatures::JsonError| PduError::EventId(format!("signing: {e}"));
        let hash = ruma::signatures::content_hash(event).map_err(failed)?;
        event.insert(
            "hashes".into(),
            CanonicalJsonValue::Object(
                [("sha256".into(), CanonicalJsonValue::String(hash.encode()))].into(),
            ),
        );
        self.sign_and_id(event, rules)
    }

    /// Signs an event that has its content hash, and returns its event id.
    fn sign_and_id(
        &self,
        event: &mut CanonicalJsonObject,
        rules: &RoomVersionRules,
    ) -> Result<String, PduError> {
        let redacted = RedactingSerializer::new()
            .rules(&rules.redaction)
            .custom_redacted_root_fields(UNSIGNED_FIELDS)
            .serialize(event)
            .map_err(|e| PduError::EventId(format!("signing: {e}")))?;
        self.sign_redacted(event, redacted.as_bytes(), rules)
    }

    /// Signs an event given the text of its redacted form (what both the signature and the
    /// reference hash cover), and returns its event id.
    fn sign_redacted(
        &self,
        event: &mut CanonicalJsonObject,
        redacted: &[u8],
        rules: &RoomVersionRules,
    ) -> Result<String, PduError> {
        let signature = self.pair.sign(redacted);
        let signatures = event
            .entry("signatures".into())
            .or_insert_with(|| CanonicalJsonValue::Object(Default::default()));
        let CanonicalJsonValue::Object(signatures) = signatures else {
            return Err(PduError::EventId("signatures is not an object".into()));
        };
        let ours = signatures
            .entry(self.server_name.clone())
            .or_insert_with(|| CanonicalJsonValue::Object(Default::default()));
        let CanonicalJsonValue::Object(ours) = ours else {
            return Err(PduError::EventId("our signatures are not an object".into()));
        };
        ours.insert(
            self.key_id.clone(),
            CanonicalJsonValue::String(crate::matrix::b64_encode(signature.as_ref())),
        );
        let digest = Sha256::digest(redacted);
        let id = match rules.event_id_format {
            EventIdFormatVersion::V1 => {
                return Err(PduError::EventId(
                    "room versions 1 and 2 carry their event ids; we create none of them".into(),
                ))
            }
            EventIdFormatVersion::V2 => crate::matrix::b64_encode(&digest),
            _ => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest),
        };
        Ok(format!("${id}"))
    }

    /// [`EventSigner::hash_sign_and_id`], and the signed event's JSON text — what serialising
    /// the event gives, made from the serialisation the content hash covers (the event's
    /// fields in order, `hashes` and `signatures` put in their places) instead of serialising
    /// the whole event a second time: every forged event is written as text.
    pub fn hash_sign_and_text(
        &self,
        event: &mut CanonicalJsonObject,
        rules: &RoomVersionRules,
    ) -> Result<(String, String), PduError> {
        let not_json = |e: serde_json::Error| PduError::EventId(format!("signing: {e}"));
        if ["hashes", "signatures", "unsigned"]
            .iter()
            .any(|k| event.contains_key(*k))
        {
            let id = self.hash_sign_and_id(event, rules)?;
            return Ok((id, serde_json::to_string(event).map_err(not_json)?));
        }
        // `{"k1":v1,"k2":v2,…}`: canonical JSON, and the text the content hash covers. `cuts`
        // are where each field starts.
        let mut text = Vec::with_capacity(1024);
        let mut cuts = Vec::with_capacity(event.len());
        text.push(b'{');
        for (i, (k, v)) in event.iter().enumerate() {
            if i > 0 {
                text.push(b',');
            }
            cuts.push((k.as_str(), text.len()));
            serde_json::to_writer(&mut text, k).map_err(not_json)?;
            text.push(b':');
            serde_json::to_writer(&mut text, v).map_err(not_json)?;
        }
        text.push(b'}');
        // Where `hashes` and `signatures` go: before the first field that sorts after them
        // (`type` does, and every event has one).
        let at = |name: &str| {
            cuts.iter()
                .find(|(k, _)| *k > name)
                .map(|(_, at)| *at)
                .ok_or_else(|| PduError::EventId("signing: missing field: `type`".into()))
        };
        let (h, s) = (at("hashes")?, at("signatures")?);
        let content_free = redacted_without_content(event, &cuts);
        drop(cuts);
        if text.len() > MAX_PDU_BYTES {
            return Err(PduError::EventId("signing: PDU is too large".into()));
        }
        let hash = crate::matrix::b64_encode(&Sha256::digest(&text));
        let hashes = CanonicalJsonValue::Object(
            [("sha256".into(), CanonicalJsonValue::String(hash))].into(),
        );
        let hashes_text = serde_json::to_vec(&hashes).map_err(not_json)?;
        event.insert("hashes".into(), hashes);
        let id = match content_free {
            // The redacted form: the same fields, the content empty, with the hashes.
            Some((from, to)) => {
                let mut redacted = Vec::with_capacity(text.len() + hashes_text.len() + 16);
                redacted.extend_from_slice(&text[..from]);
                redacted.extend_from_slice(b"\"content\":{}");
                redacted.extend_from_slice(&text[to..h]);
                redacted.extend_from_slice(b"\"hashes\":");
                redacted.extend_from_slice(&hashes_text);
                redacted.push(b',');
                redacted.extend_from_slice(&text[h..]);
                self.sign_redacted(event, &redacted, rules)?
            }
            None => self.sign_and_id(event, rules)?,
        };
        let signatures_text = serde_json::to_vec(&event["signatures"]).map_err(not_json)?;
        let mut out =
            Vec::with_capacity(text.len() + hashes_text.len() + signatures_text.len() + 32);
        // The fields before each inserted one, the inserted one, the rest.
        let mut from = 0;
        for (at, name, value) in [
            (h, "hashes", &hashes_text),
            (s, "signatures", &signatures_text),
        ] {
            out.extend_from_slice(&text[from..at]);
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(value);
            out.push(b',');
            from = at;
        }
        out.extend_from_slice(&text[from..]);
        let out = String::from_utf8(out).map_err(|e| PduError::EventId(format!("signing: {e}")))?;
        Ok((id, out))
    }
}

/// The fields a redaction keeps in every room version we create (3–11), of those a forged
/// event has.
const KEPT_FIELDS: &[&str] = &[
    "auth_events",
    "content",
    "depth",
    "origin_server_ts",
    "prev_events",
    "room_id",
    "sender",
    "type",
];

/// Event types whose content a redaction keeps some of, in some room version.
const CONTENT_KEEPING_TYPES: &[&str] = &[
    "m.room.aliases",
    "m.room.create",
    "m.room.history_visibility",
    "m.room.join_rules",
    "m.room.member",
    "m.room.power_levels",
    "m.room.redaction",
];

/// Where the `content` field is in the event's text (`cuts`: each field's start), when the
/// event's redacted form is the event with its content emptied: a message-like event (not
/// state, of a type whose content a redaction drops whole, content an object) with only fields
/// every redaction keeps. Messages and reactions, nearly every event an import forges, are such events; the
/// rest are redacted by ruma's rules.
fn redacted_without_content(
    event: &CanonicalJsonObject,
    cuts: &[(&str, usize)],
) -> Option<(usize, usize)> {
    let Some(CanonicalJsonValue::String(kind)) = event.get("type") else {
        return None;
    };
    // A redaction prunes only an object's fields; other content stays as it is.
    if CONTENT_KEEPING_TYPES.contains(&kind.as_str())
        || !cuts.iter().all(|(k, _)| KEPT_FIELDS.contains(k))
        || !matches!(event.get("content"), Some(CanonicalJsonValue::Object(_)))
    {
        return None;
    }
    let i = cuts.iter().position(|(k, _)| *k == "content")?;
    // The next field's start, less the comma before it (`content` is never the last field).
    Some((cuts[i].1, cuts.get(i + 1)?.1 - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::pdu;
    use serde_json::json;

    fn key() -> ServerKey {
        let text = format!("ed25519 k1 {}\n", crate::matrix::b64_encode(&[3u8; 32]));
        ServerKey::parse_synapse(&text, std::path::Path::new("k"))
            .unwrap()
            .remove(0)
    }

    /// Our hash, signature and id are byte for byte ruma's, for every room version we create
    /// and for events a redaction would prune to different degrees.
    #[test]
    fn same_bytes_as_ruma() {
        let key = key();
        let signer = EventSigner::new(&key, "s.test");
        let events = [
            // Both inserted fields at one place; a field the text path leaves to the slow one.
            json!({"content": {"x": [1, "\u{0}"]}, "type": "m.custom"}),
            json!({"type": "m.custom", "state_key": "s"}),
            json!({"type": "m.room.message", "content": {}, "unsigned": {"age": 5}}),
            // Redacted by emptying the content (a reaction), and ones that are not: a field
            // room version 11 drops, a type whose content a redaction keeps some of.
            json!({"type": "m.reaction", "room_id": "!r:s.test", "sender": "@a:s.test",
                   "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$t",
                               "key": "👍"}}, "depth": 8, "origin_server_ts": 8,
                   "prev_events": ["$p"], "auth_events": ["$a"]}),
            json!({"type": "m.room.message", "origin": "s.test", "room_id": "!r:s.test",
                   "sender": "@a:s.test", "content": {"body": "x"}, "depth": 3,
                   "origin_server_ts": 3, "prev_events": [], "auth_events": []}),
            json!({"type": "m.room.redaction", "room_id": "!r:s.test", "sender": "@a:s.test",
                   "content": {"redacts": "$t"}, "depth": 4, "origin_server_ts": 4,
                   "prev_events": [], "auth_events": []}),
            json!({"type": "m.room.message", "room_id": "!r:s.test", "sender": "@a:s.test",
                   "content": "not an object", "depth": 5, "origin_server_ts": 5,
                   "prev_events": [], "auth_events": []}),
            json!({"type": "m.room.message", "room_id": "!r:s.test", "sender": "@a:s.test",
                   "content": {"body": "héllo \u{1F600} \"q\"", "msgtype": "m.text",
                               "m.relates_to": {"rel_type": "m.thread", "event_id": "$x"}},
                   "depth": 7, "origin_server_ts": 1_700_000_000_123i64,
                   "prev_events": ["$p"], "auth_events": ["$a", "$b"]}),
            json!({"type": "m.room.member", "state_key": "@a:s.test", "room_id": "!r:s.test",
                   "sender": "@a:s.test", "content": {"membership": "join", "displayname": "A"},
                   "depth": 2, "origin_server_ts": 5, "prev_events": [], "auth_events": []}),
            json!({"type": "m.room.redaction", "redacts": "$t", "room_id": "!r:s.test",
                   "sender": "@a:s.test", "content": {"redacts": "$t", "reason": "x"},
                   "depth": 9, "origin_server_ts": 9, "prev_events": ["$p"], "auth_events": []}),
            json!({"type": "m.room.power_levels", "state_key": "", "room_id": "!r:s.test",
                   "sender": "@a:s.test", "content": {"users": {"@a:s.test": 100}, "ban": 50,
                   "invite": 0}, "depth": 3, "origin_server_ts": 3, "prev_events": [],
                   "auth_events": []}),
        ];
        let pair = key.keypair();
        for version in ["3", "4", "6", "10", "11"] {
            let rules = pdu::rules_for(version).unwrap();
            for ev in &events {
                let mut ours = pdu::from_value(ev.clone()).unwrap();
                let mut theirs = ours.clone();
                let mut with_text = ours.clone();
                let id = signer.hash_sign_and_id(&mut ours, &rules).unwrap();
                let (same_id, text) = signer.hash_sign_and_text(&mut with_text, &rules).unwrap();
                assert_eq!((&same_id, &with_text), (&id, &ours), "v{version} {ev}");
                assert_eq!(
                    text,
                    serde_json::to_string(&ours).unwrap(),
                    "v{version} {ev}"
                );
                ruma::signatures::hash_and_sign_event(
                    "s.test",
                    &pair,
                    &mut theirs,
                    &rules.redaction,
                )
                .unwrap();
                assert_eq!(ours, theirs, "v{version} {ev}");
                assert_eq!(
                    id,
                    pdu::event_id(&theirs, &rules).unwrap(),
                    "v{version} {ev}"
                );
            }
        }
        assert_eq!(
            crate::matrix::b64_encode(signer.public_key()),
            key.public_key_b64()
        );
        assert!(!format!("{signer:?}").contains(&crate::matrix::b64_encode(&[3u8; 32])));
    }
}

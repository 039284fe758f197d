//! PDUs as received: event ids, the strips that turn Synapse's `?raw` client output back into
//! the exact signed PDU, and signature checks against our own server's keys.

use ruma::{
    room_version_rules::{EventIdFormatVersion, RoomIdFormatVersion, RoomVersionRules},
    signatures::{self, PublicKeyMap, Verified},
    CanonicalJsonObject, CanonicalJsonValue, RoomVersionId,
};

/// Why a PDU was refused into the archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("not a JSON object / not canonical JSON: {0}")]
    NotCanonical(String),
    #[error("cannot compute the event id: {0}")]
    EventId(String),
    #[error("event id {claimed} does not match the recomputed {computed}")]
    IdMismatch { claimed: String, computed: String },
    #[error("signature check failed: {0}")]
    Signature(String),
}

/// The rules of a room version, or `None` for a version ruma does not know.
pub fn rules_for(version: &str) -> Option<RoomVersionRules> {
    RoomVersionId::try_from(version).ok()?.rules()
}

/// Parses one PDU from raw JSON text into canonical JSON (rejects floats and huge integers,
/// which no signed PDU of room v6+ can contain).
pub fn parse(raw: &str) -> Result<CanonicalJsonObject, PduError> {
    serde_json::from_str::<CanonicalJsonObject>(raw)
        .map_err(|e| PduError::NotCanonical(e.to_string()))
}

/// Converts a serde_json value into a canonical JSON object.
pub fn from_value(value: serde_json::Value) -> Result<CanonicalJsonObject, PduError> {
    match CanonicalJsonValue::try_from(value) {
        Ok(CanonicalJsonValue::Object(o)) => Ok(o),
        Ok(_) => Err(PduError::NotCanonical("not an object".into())),
        Err(e) => Err(PduError::NotCanonical(e.to_string())),
    }
}

/// A string field of a PDU, if present.
pub fn str_field<'a>(pdu: &'a CanonicalJsonObject, key: &str) -> Option<&'a str> {
    match pdu.get(key) {
        Some(CanonicalJsonValue::String(s)) => Some(s),
        _ => None,
    }
}

/// An integer field of a PDU, if present.
pub fn int_field(pdu: &CanonicalJsonObject, key: &str) -> Option<i64> {
    match pdu.get(key) {
        Some(CanonicalJsonValue::Integer(i)) => Some(i64::from(*i)),
        _ => None,
    }
}

/// The ids listed in `prev_events` or `auth_events` (room v3+ strings, or v1/v2 `[id, hashes]`).
pub fn event_refs(pdu: &CanonicalJsonObject, key: &str) -> Vec<String> {
    let Some(CanonicalJsonValue::Array(items)) = pdu.get(key) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            CanonicalJsonValue::String(s) => Some(s.clone()),
            CanonicalJsonValue::Array(pair) => match pair.first() {
                Some(CanonicalJsonValue::String(s)) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The event id of a PDU: the reference hash for room v3+, the `event_id` field for v1/v2.
pub fn event_id(pdu: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<String, PduError> {
    if rules.event_id_format == EventIdFormatVersion::V1 {
        return str_field(pdu, "event_id")
            .map(str::to_owned)
            .ok_or_else(|| PduError::EventId("a v1/v2 PDU without event_id".into()));
    }
    signatures::reference_hash(pdu, rules)
        .map(|h| format!("${h}"))
        .map_err(|e| PduError::EventId(e.to_string()))
}

/// Turns a PDU from Synapse's `/messages?raw` back into the PDU as signed (synapse.md §3):
/// drop `event_id` (v3+) and `unsigned`, the `room_id` the serializer adds to v12 create events,
/// and the top-level `redacts` copied from `content.redacts` in v11+ redactions.
/// Returns the `event_id` Synapse claimed, for cross-checking.
pub fn strip_client_raw(pdu: &mut CanonicalJsonObject, rules: &RoomVersionRules) -> Option<String> {
    pdu.remove("unsigned");
    let claimed = if rules.event_id_format == EventIdFormatVersion::V1 {
        str_field(pdu, "event_id").map(str::to_owned)
    } else {
        match pdu.remove("event_id") {
            Some(CanonicalJsonValue::String(s)) => Some(s),
            _ => None,
        }
    };
    let kind = str_field(pdu, "type").map(str::to_owned);
    if kind.as_deref() == Some("m.room.create") && rules.room_id_format == RoomIdFormatVersion::V2 {
        pdu.remove("room_id");
    }
    if kind.as_deref() == Some("m.room.redaction") && rules.redaction.keep_room_redaction_redacts {
        pdu.remove("redacts");
    }
    claimed
}

/// What checking a PDU's signatures found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Signatures and content hash are valid.
    Valid,
    /// Signatures are valid, the content hash is not: a redacted (pruned) event.
    Redacted,
    /// A server other than ours must sign it; we hold no key for that server.
    Foreign,
}

/// Checks the signatures that `server_name` must have made on the PDU, with our keys.
pub fn check_signatures(
    pdu: &CanonicalJsonObject,
    rules: &RoomVersionRules,
    server_name: &str,
    keys: &PublicKeyMap,
) -> Result<SignatureCheck, PduError> {
    let required = signatures::required_server_signatures_to_verify_event(pdu, &rules.signatures)
        .map_err(|e| PduError::Signature(e.to_string()))?;
    if required.iter().any(|s| s.as_str() != server_name) {
        return Ok(SignatureCheck::Foreign);
    }
    match signatures::verify_event(keys, pdu, rules) {
        Ok(Verified::All) => Ok(SignatureCheck::Valid),
        Ok(Verified::Signatures) => Ok(SignatureCheck::Redacted),
        Err(e) => Err(PduError::Signature(e.to_string())),
    }
}

/// Checks many PDUs at once. Signatures by `server_name` are checked with ed25519 batch
/// verification (about twice as fast as one by one, and the dominant cost of a dump); if the
/// batch fails, each PDU is checked on its own so the culprits are named.
pub fn check_signatures_batch(
    pdus: &[(String, CanonicalJsonObject)],
    rules: &RoomVersionRules,
    server_name: &str,
    keys: &PublicKeyMap,
) -> Vec<(String, Result<SignatureCheck, PduError>)> {
    let one_by_one = || {
        pdus.iter()
            .map(|(id, p)| (id.clone(), check_signatures(p, rules, server_name, keys)))
            .collect()
    };
    let Some(ours) = keys.get(server_name) else {
        return one_by_one();
    };
    let mut messages = Vec::with_capacity(pdus.len());
    let mut sigs = Vec::with_capacity(pdus.len());
    let mut vks = Vec::with_capacity(pdus.len());
    let mut out = Vec::with_capacity(pdus.len());
    for (id, pdu) in pdus {
        let required =
            match signatures::required_server_signatures_to_verify_event(pdu, &rules.signatures) {
                Ok(r) => r,
                Err(_) => return one_by_one(),
            };
        if required.iter().any(|s| s.as_str() != server_name) {
            out.push((id.clone(), Ok(SignatureCheck::Foreign)));
            continue;
        }
        let Some((msg, sig, vk)) = signing_parts(pdu, rules, server_name, ours) else {
            return one_by_one();
        };
        messages.push(msg);
        sigs.push(sig);
        vks.push(vk);
        let hash_ok = match (pdu.get("hashes"), signatures::content_hash(pdu)) {
            (Some(CanonicalJsonValue::Object(h)), Ok(computed)) => {
                matches!(h.get("sha256"), Some(CanonicalJsonValue::String(s)) if *s == computed.encode())
            }
            _ => false,
        };
        out.push((
            id.clone(),
            Ok(if hash_ok {
                SignatureCheck::Valid
            } else {
                SignatureCheck::Redacted
            }),
        ));
    }
    let refs: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes()).collect();
    match ed25519_dalek::verify_batch(&refs, &sigs, &vks) {
        Ok(()) => out,
        Err(_) => one_by_one(),
    }
}

/// The signed bytes (the redacted canonical form), our signature and the key to check it with.
fn signing_parts(
    pdu: &CanonicalJsonObject,
    rules: &RoomVersionRules,
    server_name: &str,
    ours: &ruma::signatures::PublicKeySet,
) -> Option<(
    String,
    ed25519_dalek::Signature,
    ed25519_dalek::VerifyingKey,
)> {
    let Some(CanonicalJsonValue::Object(all)) = pdu.get("signatures") else {
        return None;
    };
    let Some(CanonicalJsonValue::Object(by_key)) = all.get(server_name) else {
        return None;
    };
    let (key_id, sig) = by_key.iter().find(|(k, _)| ours.contains_key(*k))?;
    let CanonicalJsonValue::String(sig) = sig else {
        return None;
    };
    let sig = crate::matrix::b64_decode(sig).ok()?;
    let sig = ed25519_dalek::Signature::from_slice(&sig).ok()?;
    let vk: [u8; 32] = ours[key_id].as_bytes().try_into().ok()?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&vk).ok()?;
    let redacted = ruma::canonical_json::redact(pdu.clone(), &rules.redaction, None).ok()?;
    let msg = signatures::to_canonical_json_string_for_signing(&redacted).ok()?;
    Some((msg, sig, vk))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::keys::ServerKey;
    use ruma::serde::Base64;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn signed_event(key: &ServerKey) -> CanonicalJsonObject {
        let mut ev = from_value(serde_json::json!({
            "auth_events": [], "prev_events": [], "depth": 3,
            "content": {"body": "hi", "msgtype": "m.text"},
            "origin_server_ts": 1_700_000_000_000u64, "room_id": "!r:example.test",
            "sender": "@alice:example.test", "type": "m.room.message",
        }))
        .unwrap();
        let rules = rules_for("10").unwrap();
        signatures::hash_and_sign_event("example.test", &key.keypair(), &mut ev, &rules.redaction)
            .unwrap();
        ev
    }

    fn keymap(key: &ServerKey) -> PublicKeyMap {
        let mut set = BTreeMap::new();
        set.insert(key.key_id(), Base64::parse(key.public_key_b64()).unwrap());
        BTreeMap::from([("example.test".to_owned(), set)])
    }

    #[test]
    fn verifies_our_signature_and_detects_tampering() {
        let key = ServerKey::parse_synapse(
            &format!("ed25519 a {}", crate::matrix::b64_encode(&[7u8; 32])),
            Path::new("k"),
        )
        .unwrap()
        .remove(0);
        let rules = rules_for("10").unwrap();
        let ev = signed_event(&key);
        assert_eq!(
            check_signatures(&ev, &rules, "example.test", &keymap(&key)).unwrap(),
            SignatureCheck::Valid
        );
        // Content changes break the hash but not the signature (redaction-like).
        let mut pruned = ev.clone();
        pruned.insert(
            "content".into(),
            CanonicalJsonValue::Object(Default::default()),
        );
        assert_eq!(
            check_signatures(&pruned, &rules, "example.test", &keymap(&key)).unwrap(),
            SignatureCheck::Redacted
        );
        // A changed type is covered by the signature.
        let mut forged = ev.clone();
        forged.insert(
            "type".into(),
            CanonicalJsonValue::String("m.room.topic".into()),
        );
        assert!(check_signatures(&forged, &rules, "example.test", &keymap(&key)).is_err());
        // The event id is stable and starts with '$'.
        let id = event_id(&ev, &rules).unwrap();
        assert!(id.starts_with('$') && id.len() == 44, "{id}");
        // The batch check agrees with the one-by-one check, and names the forgery.
        let batch = vec![
            ("a".into(), ev.clone()),
            ("p".into(), pruned.clone()),
            ("f".into(), forged.clone()),
        ];
        let res = check_signatures_batch(&batch, &rules, "example.test", &keymap(&key));
        assert_eq!(res[0].1, Ok(SignatureCheck::Valid));
        assert_eq!(res[1].1, Ok(SignatureCheck::Redacted));
        assert!(res[2].1.is_err());
        let good = check_signatures_batch(&batch[..2], &rules, "example.test", &keymap(&key));
        assert_eq!(good.iter().filter(|(_, r)| r.is_ok()).count(), 2);
        assert_eq!(
            id,
            event_id(&pruned, &rules).unwrap(),
            "ids survive redaction"
        );
    }

    #[test]
    fn strips_client_raw_fields() {
        let rules = rules_for("12").unwrap();
        let mut create = from_value(serde_json::json!({
            "type": "m.room.create", "room_id": "!x", "event_id": "$x", "unsigned": {"age": 1},
            "sender": "@a:s", "content": {}
        }))
        .unwrap();
        assert_eq!(strip_client_raw(&mut create, &rules).as_deref(), Some("$x"));
        assert!(!create.contains_key("room_id") && !create.contains_key("unsigned"));
        let mut red = from_value(serde_json::json!({
            "type": "m.room.redaction", "redacts": "$y", "content": {"redacts": "$y"}, "room_id": "!x"
        }))
        .unwrap();
        strip_client_raw(&mut red, &rules);
        assert!(!red.contains_key("redacts") && red.contains_key("room_id"));
        // In v10 the top-level redacts is part of the PDU and must stay.
        let v10 = rules_for("10").unwrap();
        let mut red10 =
            from_value(serde_json::json!({"type": "m.room.redaction", "redacts": "$y"})).unwrap();
        strip_client_raw(&mut red10, &v10);
        assert!(red10.contains_key("redacts"));
    }
}

//! Reads a Conduit database back, the way Conduit does: the project's own check that what the
//! writer stored means what it should (used by `conduit verify` and the tests).

use std::collections::BTreeMap;

use crate::conduit::schema::{decode_statediff, joined, read_u64be, u64be, SEP};
use crate::conduit::store::Store;
use crate::error::{Error, Result};

fn bad(what: impl Into<String>) -> Error {
    Error::Conduit(what.into())
}

/// The event ids of a room's timeline, in count order.
pub fn timeline<S: Store>(store: &mut S, room_id: &str) -> Result<Vec<String>> {
    timeline_pdus(store, room_id)?
        .iter()
        .map(|json| {
            json["event_id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("a PDU of {room_id} has no event_id")))
        })
        .collect()
}

/// The PDUs of a room's timeline as stored, in count order.
pub fn timeline_pdus<S: Store>(store: &mut S, room_id: &str) -> Result<Vec<serde_json::Value>> {
    let sroom = store
        .get("roomid_shortroomid", room_id.as_bytes())?
        .as_deref()
        .and_then(read_u64be)
        .ok_or_else(|| bad(format!("room {room_id} has no short id")))?;
    let mut out = Vec::new();
    for (_, v) in store.scan_prefix("pduid_pdu", &u64be(sroom))? {
        out.push(serde_json::from_slice(&v).map_err(|e| bad(format!("a PDU of {room_id}: {e}")))?);
    }
    Ok(out)
}

/// The full state of a snapshot: (type, state_key) → event id. Fails on duplicate keys.
pub fn state<S: Store>(
    store: &mut S,
    shortstatehash: u64,
) -> Result<BTreeMap<(String, String), String>> {
    let mut layers = Vec::new();
    let mut cur = shortstatehash;
    loop {
        let raw = store
            .get("shortstatehash_statediff", &u64be(cur))?
            .ok_or_else(|| bad(format!("state snapshot {cur} is missing")))?;
        let diff = decode_statediff(&raw)
            .ok_or_else(|| bad(format!("state snapshot {cur} is malformed")))?;
        let parent = diff.parent;
        layers.push(diff);
        if parent == 0 {
            break;
        }
        if layers.len() > 1000 {
            return Err(bad(format!(
                "state snapshot {shortstatehash}: a parent loop"
            )));
        }
        cur = parent;
    }
    let mut entries: BTreeMap<u64, u64> = BTreeMap::new();
    for layer in layers.iter().rev() {
        for e in &layer.added {
            let (k, ev) = (
                read_u64be(&e[..8]).unwrap_or(0),
                read_u64be(&e[8..]).unwrap_or(0),
            );
            entries.insert(k, ev);
        }
        for e in &layer.removed {
            let (k, ev) = (
                read_u64be(&e[..8]).unwrap_or(0),
                read_u64be(&e[8..]).unwrap_or(0),
            );
            if entries.get(&k) == Some(&ev) {
                entries.remove(&k);
            }
        }
    }
    // Duplicate keys inside one layer would have collapsed above; check the base explicitly.
    let base = layers.last().expect("at least one layer");
    let mut seen = std::collections::HashSet::new();
    for e in &base.added {
        if !seen.insert(&e[..8]) {
            return Err(bad(format!(
                "state snapshot {shortstatehash} has two entries for one key"
            )));
        }
    }
    let mut out = BTreeMap::new();
    for (ssk, se) in entries {
        let key = store
            .get("shortstatekey_statekey", &u64be(ssk))?
            .ok_or_else(|| bad(format!("short state key {ssk} unknown")))?;
        let split = key
            .iter()
            .position(|b| *b == SEP)
            .ok_or_else(|| bad("a state key without FF"))?;
        let ev = store
            .get("shorteventid_eventid", &u64be(se))?
            .ok_or_else(|| bad(format!("short event id {se} unknown")))?;
        out.insert(
            (
                String::from_utf8_lossy(&key[..split]).into_owned(),
                String::from_utf8_lossy(&key[split + 1..]).into_owned(),
            ),
            String::from_utf8_lossy(&ev).into_owned(),
        );
    }
    Ok(out)
}

/// The current state of a room.
pub fn current_state<S: Store>(
    store: &mut S,
    room_id: &str,
) -> Result<BTreeMap<(String, String), String>> {
    let sh = store
        .get("roomid_shortstatehash", room_id.as_bytes())?
        .as_deref()
        .and_then(read_u64be)
        .ok_or_else(|| bad(format!("room {room_id} has no current state")))?;
    state(store, sh)
}

/// What Conduit v0.10.12's `POST /keys/query` answers `viewer` about the local user `target`:
/// `{"device_keys": {device: keys}, "master_key", "self_signing_key", "user_signing_key"}`.
/// Cross-signing keys carry the signatures Conduit shows that viewer: all of them on the
/// viewer's own keys, else the owner's and the viewer's (its `clean_signatures`); the
/// user-signing key only to its owner (docs/CONDUIT.md, "Verified contacts").
pub fn keys_query<S: Store>(
    store: &mut S,
    viewer: &str,
    target: &str,
) -> Result<serde_json::Value> {
    use serde_json::{json, Value};
    let uid = target.as_bytes();
    let mut devices = serde_json::Map::new();
    for (k, meta) in store.scan_prefix("userdeviceid_metadata", &joined(&[uid, b""]))? {
        let device = &k[uid.len() + 1..];
        let Some(keys) = store.get("keyid_key", &joined(&[uid, device]))? else {
            continue;
        };
        let mut keys: Value = serde_json::from_slice(&keys)
            .map_err(|e| bad(format!("device keys of {target}: {e}")))?;
        let meta: Value = serde_json::from_slice(&meta)
            .map_err(|e| bad(format!("device metadata of {target}: {e}")))?;
        if let (Some(name), Some(fields)) = (meta["display_name"].as_str(), keys.as_object_mut()) {
            let unsigned = fields.entry("unsigned").or_insert_with(|| json!({}));
            unsigned["device_display_name"] = Value::String(name.to_owned());
        }
        devices.insert(String::from_utf8_lossy(device).into_owned(), keys);
    }
    let mut out = json!({ "device_keys": devices });
    for (tree, field) in [
        ("userid_masterkeyid", "master_key"),
        ("userid_selfsigningkeyid", "self_signing_key"),
        ("userid_usersigningkeyid", "user_signing_key"),
    ] {
        if field == "user_signing_key" && viewer != target {
            continue;
        }
        let Some(id) = store.get(tree, uid)? else {
            continue;
        };
        let Some(bytes) = store.get("keyid_key", &id)? else {
            continue;
        };
        let mut key: Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("{field} of {target}: {e}")))?;
        if field != "user_signing_key" && viewer != target {
            if let Some(sigs) = key.get_mut("signatures").and_then(Value::as_object_mut) {
                sigs.retain(|signer, _| signer == target || signer == viewer);
            }
        }
        out[field] = key;
    }
    Ok(out)
}

//! `conduit verify`: reads a written database back and checks the invariants Conduit relies on
//! but never checks itself (conduit-db.md §10).

use std::path::Path;

use crate::conduit::reader;
use crate::conduit::schema::{joined, read_u64be, DATABASE_VERSION, SEP};
use crate::conduit::store::Store;
use crate::conduit::writer::media::media_file_path;
use crate::conduit::writer::IN_PROGRESS;
use crate::error::Result;

/// What verification found.
#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    pub rooms: u64,
    pub events: u64,
    pub users: u64,
    pub media: u64,
    /// A write was interrupted: the database carries the writer's in-progress mark, and the
    /// only finding is that (what an unfinished database lacks is no news).
    pub unfinished: bool,
    pub violations: Vec<String>,
}

/// The finding on a database whose write did not finish.
pub const UNFINISHED: &str = "unfinished write: run `conduit write` again (same archive, same \
     options) to finish it; Conduit refuses to start on this database until then";

/// Checks the whole database. `public_key` (base64), when given, must be the stored key's;
/// `media_dir`, when given, must hold every media file the metadata names.
pub fn verify<S: Store>(
    store: &mut S,
    public_key: Option<&str>,
    media_dir: Option<&Path>,
) -> Result<VerifyReport> {
    let mut r = VerifyReport::default();
    let version = store
        .get("global", b"version")?
        .as_deref()
        .and_then(read_u64be);
    if version == Some(IN_PROGRESS) {
        r.unfinished = true;
        r.violations.push(UNFINISHED.into());
        return Ok(r);
    }
    let mut v = |msg: String| r.violations.push(msg);
    if version != Some(DATABASE_VERSION) {
        v(format!(
            "global.version is {version:?}, not {DATABASE_VERSION}"
        ));
    }
    let counter = store
        .get("global", b"c")?
        .as_deref()
        .and_then(read_u64be)
        .unwrap_or(0);
    match store.get("global", b"keypair")? {
        None => v("no server keypair".into()),
        Some(kp) => match kp.iter().position(|b| *b == SEP) {
            None => v("the keypair has no version separator".into()),
            Some(at) => match ruma::signatures::Ed25519KeyPair::from_der(
                &kp[at + 1..],
                String::from_utf8_lossy(&kp[..at]).into(),
            ) {
                Err(e) => v(format!("the keypair does not parse: {e}")),
                Ok(key) => {
                    let public = crate::matrix::b64_encode(&key.public_key());
                    if public_key.is_some_and(|p| p != public) {
                        v("the keypair is not the archive's signing key".into());
                    }
                }
            },
        },
    }
    // Counter above every short id and count.
    let mut max = 0u64;
    for tree in [
        "roomid_shortroomid",
        "eventid_shorteventid",
        "statekey_shortstatekey",
    ] {
        for (_, val) in store.scan_prefix(tree, b"")? {
            max = max.max(read_u64be(&val).unwrap_or(0));
        }
    }
    for (k, _) in store.scan_prefix("shortstatehash_statediff", b"")? {
        max = max.max(read_u64be(&k).unwrap_or(0));
    }
    for (k, _) in store.scan_prefix("pduid_pdu", b"")? {
        max = max.max(
            k.len()
                .checked_sub(8)
                .and_then(|at| read_u64be(&k[at..]))
                .unwrap_or(0),
        );
    }
    if max > counter {
        v(format!("global.c is {counter}, below the id {max} in use"));
    }
    // pdu ↔ event id both ways, every auth event present.
    for (pid, json) in store.scan_prefix("pduid_pdu", b"")? {
        r.events += 1;
        let Ok(pdu) = serde_json::from_slice::<serde_json::Value>(&json) else {
            v(format!("pdu {} is not JSON", hex::encode(&pid)));
            continue;
        };
        let id = pdu["event_id"].as_str().unwrap_or_default();
        if store.get("eventid_pduid", id.as_bytes())?.as_deref() != Some(&pid[..]) {
            v(format!(
                "{id}: eventid_pduid does not point back at its pdu"
            ));
        }
        for a in pdu["auth_events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
        {
            if store.get("eventid_pduid", a.as_bytes())?.is_none()
                && store.get("eventid_outlierpdu", a.as_bytes())?.is_none()
            {
                v(format!("{id}: auth event {a} is missing"));
            }
        }
    }
    // Every room: snapshots resolve; membership caches equal the current state.
    for (room, _) in store.scan_prefix("roomid_shortroomid", b"")? {
        let room_id = String::from_utf8_lossy(&room).into_owned();
        r.rooms += 1;
        let state = match reader::current_state(store, &room_id) {
            Ok(s) => s,
            Err(e) => {
                v(format!("{room_id}: {e}"));
                continue;
            }
        };
        let mut prefix = room.clone();
        prefix.push(SEP);
        let cached: std::collections::BTreeSet<String> = store
            .scan_prefix("roomuserid_joined", &prefix)?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            .collect();
        let mut joined = std::collections::BTreeSet::new();
        for ((kind, user), eid) in &state {
            if kind != "m.room.member" {
                continue;
            }
            let pdu = match store.get("eventid_pduid", eid.as_bytes())? {
                Some(pid) => store.get("pduid_pdu", &pid)?,
                None => store.get("eventid_outlierpdu", eid.as_bytes())?,
            };
            let membership = pdu
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
                .and_then(|p| p["content"]["membership"].as_str().map(str::to_owned));
            if membership.as_deref() == Some("join") {
                joined.insert(user.clone());
            }
        }
        if joined != cached {
            v(format!(
                "{room_id}: joined members cached {cached:?}, current state says {joined:?}"
            ));
        }
    }
    // The admin room exists and the server user is in it (admin commands work).
    let server_user = store
        .scan_prefix("userid_password", b"@conduit:")?
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .next();
    match (server_user, store.get("alias_roomid", b"admins")?) {
        (None, _) => v("there is no @conduit server user".into()),
        (Some(_), None) => v("there is no admin room (#admins)".into()),
        (Some(u), Some(room)) => {
            if store
                .get("userroomid_joined", &joined(&[u.as_bytes(), &room]))?
                .is_none()
            {
                v(format!("{u} is not joined to the admin room"));
            }
        }
    }
    // Media: metadata → file hash entry → local marker → file.
    for (key, meta) in store.scan_prefix("servernamemediaid_metadata", b"")? {
        r.media += 1;
        let name = String::from_utf8_lossy(&key).replace('\u{ff}', "/");
        if meta.len() < 32 {
            v(format!("media {name}: metadata shorter than a sha256"));
            continue;
        }
        let sha = &meta[..32];
        if store.get("filehash_metadata", sha)?.is_none() {
            v(format!("media {name}: no filehash_metadata entry"));
        }
        let mut k = sha.to_vec();
        k.extend_from_slice(&key);
        if store.get("filehash_servername_mediaid", &k)?.is_none() {
            v(format!(
                "media {name}: no filehash_servername_mediaid entry (retention would delete it)"
            ));
        }
        if let Some(dir) = media_dir {
            if !media_file_path(dir, &hex::encode(sha)).is_file() {
                v(format!("media {name}: its file is missing"));
            }
        }
    }
    r.users = store.scan_prefix("userid_password", b"")?.len() as u64;
    Ok(r)
}

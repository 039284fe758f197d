//! Testnet Synapse → dump → `conduit write` (SQLite and RocksDB) → read back with the project's reader:
//! every room has the archive's events in the archive's order and Synapse's current state, the
//! users' tokens work both ways, and a second write adds nothing.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use transition_matrix::archive::media::MediaMeta;
use transition_matrix::archive::room::{PduReader, RoomMeta, EVENTS};
use transition_matrix::archive::{fsutil, Archive};
use transition_matrix::conduit::store::{rocksdb::RocksStore, sqlite::SqliteStore, Backend, Store};
use transition_matrix::conduit::write::{reached_back, write_archive, WriteOptions};
use transition_matrix::conduit::writer::media::media_file_path;
use transition_matrix::conduit::{reader, schema};

fn open(db: &std::path::Path, backend: Backend) -> Box<dyn Store> {
    match backend {
        Backend::Sqlite => Box::new(SqliteStore::open(db).unwrap()),
        Backend::Rocksdb => Box::new(RocksStore::open(db).unwrap()),
    }
}

fn tree_sizes(db: &std::path::Path, backend: Backend) -> Vec<(String, usize)> {
    let mut s = open(db, backend);
    schema::TREES
        .iter()
        .map(|t| (t.to_string(), s.scan_prefix(t, b"").unwrap().len()))
        .collect()
}

#[test]
fn sqlite_database_reads_back_as_the_archive() {
    written_database_reads_back_as_the_archive(Backend::Sqlite);
}

#[test]
fn rocksdb_database_reads_back_as_the_archive() {
    written_database_reads_back_as_the_archive(Backend::Rocksdb);
}

fn written_database_reads_back_as_the_archive(backend: Backend) {
    let (root, _) = common::reference_archive();
    let archive = Archive::open(root).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("conduit");
    let mut options = WriteOptions::new(backend);
    if backend == Backend::Rocksdb {
        // Keep almost no state in memory: every older prev event's state is read back from
        // the (uncommitted) writes, which must give the same result.
        options.state_window = 2;
    }
    let sum = write_archive(&archive, &db, &options).unwrap();
    assert_eq!(sum.events as usize, {
        let m: transition_matrix::archive::Manifest =
            fsutil::read_json(&archive.manifest_path()).unwrap();
        m.counts.events as usize
            - archive
                .room_ids()
                .unwrap()
                .iter()
                .map(|r| {
                    let meta: RoomMeta =
                        fsutil::read_json(&archive.room_dir(r).join("room.json")).unwrap();
                    meta.outliers as usize
                })
                .sum::<usize>()
    });
    assert!(
        sum.state_resolutions > 0,
        "the forked room needs state resolution"
    );
    if backend == Backend::Rocksdb {
        assert!(
            sum.state_loads > 0,
            "the small window must read states back"
        );
    }

    let mut store = open(&db, backend);
    assert_eq!(
        store.get("global", b"version").unwrap(),
        Some(schema::u64be(18).to_vec())
    );
    for room_id in archive.room_ids().unwrap() {
        let rdir = archive.room_dir(&room_id);
        let meta: RoomMeta = fsutil::read_json(&rdir.join("room.json")).unwrap();
        let want: Vec<String> = PduReader::open(&rdir.join(EVENTS))
            .unwrap()
            .map(|l| l.unwrap().event_id)
            .collect();
        assert_eq!(
            reader::timeline(&mut store, &room_id).unwrap(),
            want,
            "timeline of {room_id}"
        );
        let state = reader::current_state(&mut store, &room_id).unwrap();
        let want_state: BTreeMap<(String, String), String> = meta
            .current_state
            .iter()
            .map(|s| ((s.kind.clone(), s.state_key.clone()), s.event_id.clone()))
            .collect();
        assert_eq!(state, want_state, "current state of {room_id}");
    }
    // Thread roots carry their replies' summary; redacted events say what redacted them.
    let (mut threads, mut redactions) = (0, 0);
    for room_id in archive.room_ids().unwrap() {
        let mut replies: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut redacts: Vec<(String, String)> = Vec::new();
        for line in PduReader::open(&archive.room_dir(&room_id).join(EVENTS)).unwrap() {
            let l = line.unwrap();
            let v = serde_json::to_value(&l.pdu).unwrap();
            if v["content"]["m.relates_to"]["rel_type"] == "m.thread" {
                let root = v["content"]["m.relates_to"]["event_id"].as_str().unwrap();
                replies
                    .entry(root.to_owned())
                    .or_default()
                    .push(l.event_id.clone());
            }
            if v["type"] == "m.room.redaction" {
                let target = v["redacts"].as_str().or(v["content"]["redacts"].as_str());
                redacts.push((target.unwrap().to_owned(), l.event_id.clone()));
            }
        }
        let stored = |store: &mut Box<dyn Store>, id: &str| -> serde_json::Value {
            let pid = store.get("eventid_pduid", id.as_bytes()).unwrap().unwrap();
            serde_json::from_slice(&store.get("pduid_pdu", &pid).unwrap().unwrap()).unwrap()
        };
        for (root, ids) in &replies {
            let r = stored(&mut store, root);
            let t = &r["unsigned"]["m.relations"]["m.thread"];
            assert_eq!(t["count"], ids.len(), "thread {root}");
            assert_eq!(t["latest_event"]["event_id"], ids[ids.len() - 1].as_str());
            let pid = store
                .get("eventid_pduid", root.as_bytes())
                .unwrap()
                .unwrap();
            assert!(store.get("threadid_userids", &pid).unwrap().is_some());
            threads += 1;
        }
        for (target, by) in &redacts {
            let t = stored(&mut store, target);
            assert_eq!(
                t["unsigned"]["redacted_because"]["event_id"],
                by.as_str(),
                "{target}"
            );
            assert!(t["content"].get("body").is_none());
            redactions += 1;
        }
    }
    assert!(
        threads > 0 && redactions >= 2,
        "{threads} threads, {redactions} redactions"
    );
    // Logged-in devices keep their tokens.
    let s = common::scenario();
    for (device, token) in &s.users["alice"].devices {
        let mut key = s.users["alice"].user_id.as_bytes().to_vec();
        key.push(0xff);
        key.extend_from_slice(device.as_bytes());
        assert_eq!(
            store.get("token_userdeviceid", token.as_bytes()).unwrap(),
            Some(key)
        );
    }
    keys_query_as_synapse_answers(&mut store);
    erased_users_messages_stay_pruned(&archive, &mut store);
    // The admin room: Synapse's admins are joined to it; the server user too.
    let admin_room = store.get("alias_roomid", b"admins").unwrap().unwrap();
    assert_eq!(
        sum.admin_room.as_deref().map(str::as_bytes),
        Some(&admin_room[..])
    );
    let admin_id = &s.admin.user_id;
    assert_eq!(sum.admins, vec![admin_id.clone()]);
    for member in [admin_id.clone(), format!("@conduit:{}", s.server_name)] {
        let mut k = member.as_bytes().to_vec();
        k.push(0xff);
        k.extend_from_slice(&admin_room);
        assert!(
            store.get("userroomid_joined", &k).unwrap().is_some(),
            "{member}"
        );
    }
    // Media: every item of the archive has its bytes where Conduit looks, and its metadata.
    let media_dir = db.join("media");
    let mut media = 0;
    for entry in std::fs::read_dir(archive.root().join("media/meta")).unwrap() {
        let meta: MediaMeta = fsutil::read_json(&entry.unwrap().path()).unwrap();
        let bytes = std::fs::read(media_file_path(&media_dir, &meta.sha256)).unwrap();
        assert_eq!(
            bytes,
            std::fs::read(archive.media_blob_path(&meta.sha256)).unwrap()
        );
        let mut key = meta.server_name.as_bytes().to_vec();
        key.push(0xff);
        key.extend_from_slice(meta.media_id.as_bytes());
        let stored = store
            .get("servernamemediaid_metadata", &key)
            .unwrap()
            .unwrap();
        assert_eq!(hex::encode(&stored[..32]), meta.sha256);
        media += 1;
    }
    assert!(media > 0, "the testnet uploads media");
    assert_eq!(sum.media, media);
    let report =
        transition_matrix::conduit::verify::verify(&mut store, None, Some(&media_dir)).unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    // The archive's rooms and the admin room.
    assert_eq!(report.rooms as usize, archive.room_ids().unwrap().len() + 1);
    assert_eq!(report.media, media);
    drop(store);

    // A second write of the same archive adds nothing.
    let before = tree_sizes(&db, backend);
    let again = write_archive(&archive, &db, &options).unwrap();
    assert_eq!(again.events, 0);
    assert_eq!(again.admin_room, None);
    assert_eq!((again.users, again.users_kept), (0, sum.users));
    assert_eq!(again.events_already_there, sum.events);
    let after = tree_sizes(&db, backend);
    for ((t, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(b, a, "tree {t} changed size on a second write");
    }
}

/// Synapse's `/keys/query` as each user who can log in, about every user.
fn synapse_keys_query(token: &str) -> serde_json::Value {
    let s = common::scenario();
    let everyone: serde_json::Map<String, serde_json::Value> = s
        .users
        .values()
        .map(|u| (u.user_id.clone(), serde_json::json!([])))
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            reqwest::Client::new()
                .post(format!("{}/_matrix/client/v3/keys/query", s.client_url))
                .bearer_auth(token)
                .json(&serde_json::json!({ "device_keys": everyone }))
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap()
                .json()
                .await
                .unwrap()
        })
}

/// Signatures of a key as (signer, key id, signature) triples.
fn signatures(key: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    if let Some(by) = key["signatures"].as_object() {
        for (signer, sigs) in by {
            for (id, sig) in sigs.as_object().unwrap() {
                out.insert((signer.clone(), id.clone(), sig.as_str().unwrap().to_owned()));
            }
        }
    }
    out
}

/// A verified contact stays verified: what Conduit's `/keys/query` answers each user about
/// every user (the project's reader, Conduit's rules) holds every key and every signature
/// Synapse answered, the verifier's own signature on a contact's master key included; what
/// Conduit shows beyond that is only what its rules add (docs/CONDUIT.md, "Verified contacts"):
/// the owner's signatures to everyone, and every signature on a user's key to that user.
fn keys_query_as_synapse_answers(store: &mut Box<dyn Store>) {
    let s = common::scenario();
    let mut verified = 0;
    for viewer in s.users.values().filter(|u| !u.deactivated) {
        let token = viewer.devices.values().next().unwrap();
        let synapse = synapse_keys_query(token);
        for target in s.users.values() {
            let t = target.user_id.as_str();
            let ours = reader::keys_query(store, &viewer.user_id, t).unwrap();
            let theirs_devices = synapse["device_keys"][t]
                .as_object()
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                ours["device_keys"].as_object().cloned().unwrap_or_default(),
                theirs_devices,
                "device keys of {t} as {} sees them",
                viewer.user_id
            );
            for (field, theirs) in [
                ("master_key", &synapse["master_keys"][t]),
                ("self_signing_key", &synapse["self_signing_keys"][t]),
                ("user_signing_key", &synapse["user_signing_keys"][t]),
            ] {
                let ours = &ours[field];
                let what = format!("{field} of {t} as {} sees it", viewer.user_id);
                assert_eq!(ours.is_null(), theirs.is_null(), "{what}");
                if theirs.is_null() {
                    continue;
                }
                for k in ["user_id", "usage", "keys"] {
                    assert_eq!(ours[k], theirs[k], "{what}: {k}");
                }
                let (o, th) = (signatures(ours), signatures(theirs));
                assert!(th.is_subset(&o), "{what}: Synapse's {th:?}, ours {o:?}");
                for (signer, _, _) in o.difference(&th) {
                    assert!(
                        signer == t || viewer.user_id == t,
                        "{what}: a signature by {signer} shown to someone else"
                    );
                }
                verified += th.iter().filter(|(signer, _, _)| signer != t).count();
            }
        }
    }
    // The scenario: alice verified bob (her user-signing key signed his master key).
    assert!(verified >= 1, "no verified contact in the scenario");
    let bob = &s.users["bob"].user_id;
    let alice = &s.users["alice"].user_id;
    let as_alice = reader::keys_query(store, alice, bob).unwrap();
    assert!(signatures(&as_alice["master_key"])
        .iter()
        .any(|(signer, _, _)| signer == alice));
    let as_carol = reader::keys_query(store, &s.users["carol"].user_id, bob).unwrap();
    assert!(
        !signatures(&as_carol["master_key"])
            .iter()
            .any(|(signer, _, _)| signer == alice),
        "alice's signature is hers to see"
    );
}

/// An erased (GDPR) user's messages reach Conduit as Synapse serves them to other servers:
/// pruned, for every member (docs/CONDUIT.md, "Erased users").
fn erased_users_messages_stay_pruned(archive: &Archive, store: &mut Box<dyn Store>) {
    let erin = &common::scenario().users["erin"];
    assert!(erin.erased);
    let mut pruned = 0;
    for room_id in archive.room_ids().unwrap() {
        for pdu in reader::timeline_pdus(store, &room_id).unwrap() {
            if pdu["sender"] == erin.user_id.as_str() && pdu["type"] == "m.room.message" {
                assert_eq!(pdu["content"], serde_json::json!({}), "{}", pdu["event_id"]);
                pruned += 1;
            }
        }
    }
    assert!(pruned > 0, "erin sent messages in the scenario");
}

/// Transition mode (`--recent N`): each room's timeline is its last N events, the current state
/// is whole, every older state event is there as an outlier, and `verify` finds nothing wrong.
#[test]
fn recent_mode_keeps_the_last_events_and_all_state() {
    let (root, _) = common::reference_archive();
    let archive = Archive::open(root).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("conduit");
    let mut options = WriteOptions::new(Backend::Sqlite);
    options.recent = Some(20);
    options.state_window = 2;
    let sum = write_archive(&archive, &db, &options).unwrap();
    assert!(sum.left_to_backfill > 5_000, "{sum:?}");
    let mut store = open(&db, Backend::Sqlite);
    for room_id in archive.room_ids().unwrap() {
        let rdir = archive.room_dir(&room_id);
        let meta: RoomMeta = fsutil::read_json(&rdir.join("room.json")).unwrap();
        let all: Vec<_> = PduReader::open(&rdir.join(EVENTS))
            .unwrap()
            .map(|l| l.unwrap())
            .collect();
        let keep = all.len().saturating_sub(20);
        let marked = reached_back(&rdir.join(EVENTS), keep as u64).unwrap();
        let want: Vec<String> = all[keep..].iter().map(|l| l.event_id.clone()).collect();
        assert_eq!(
            reader::timeline(&mut store, &room_id).unwrap(),
            want,
            "timeline of {room_id}"
        );
        let state = reader::current_state(&mut store, &room_id).unwrap();
        assert_eq!(state.len(), meta.current_state.len(), "state of {room_id}");
        for l in &all[..keep] {
            let in_outliers = store
                .get("eventid_outlierpdu", l.event_id.as_bytes())
                .unwrap()
                .is_some();
            assert_eq!(
                in_outliers,
                l.pdu.contains_key("state_key") || marked.contains(&l.event_id),
                "{} is an outlier iff it is a state event or the window reaches back to it",
                l.event_id
            );
            assert!(store
                .get("eventid_pduid", l.event_id.as_bytes())
                .unwrap()
                .is_none());
        }
    }
    let report = transition_matrix::conduit::verify::verify(&mut store, None, None).unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    drop(store);
    // A second run adds nothing; a full write over it then fills in the rest in timeline order
    // would be a different database (older events need lower counts): not offered.
    let before = tree_sizes(&db, Backend::Sqlite);
    let again = write_archive(&archive, &db, &options).unwrap();
    assert_eq!(again.events, 0);
    assert_eq!(before, tree_sizes(&db, Backend::Sqlite));
}

/// Transition mode, where the recent window reaches back: a redaction of an event older than
/// the window (and thread replies to an older root) mark that event as full mode marks it, so
/// the event Conduit stores when the proxy serves it (an outlier is moved into the timeline as
/// stored, patches/README.md) equals the full-mode database's, `redacted_because` included.
#[test]
fn recent_mode_marks_old_events_as_full_mode_does() {
    let (root, _) = common::reference_archive();
    let archive = Archive::open(root).unwrap();
    // A window that starts at the last redaction of the public room whose target is older.
    let public = &common::scenario().rooms["public"].room_id;
    let lines: Vec<_> = PduReader::open(&archive.room_dir(public).join(EVENTS))
        .unwrap()
        .map(|l| l.unwrap())
        .collect();
    let at = lines
        .iter()
        .rposition(|l| {
            let v = serde_json::to_value(&l.pdu).unwrap();
            v["type"] == "m.room.redaction"
                && v["redacts"]
                    .as_str()
                    .or(v["content"]["redacts"].as_str())
                    .is_some_and(|t| lines.iter().position(|o| o.event_id == t).is_some())
        })
        .expect("the public room has a redaction");
    let n = (lines.len() - at) as u64;
    let dir = tempfile::tempdir().unwrap();
    let (full, recent) = (dir.path().join("full"), dir.path().join("recent"));
    write_archive(&archive, &full, &WriteOptions::new(Backend::Sqlite)).unwrap();
    let mut options = WriteOptions::new(Backend::Sqlite);
    options.recent = Some(n);
    write_archive(&archive, &recent, &options).unwrap();
    // A second run keeps the marks (the window's events are not written again).
    write_archive(&archive, &recent, &options).unwrap();
    let (mut full, mut recent) = (open(&full, Backend::Sqlite), open(&recent, Backend::Sqlite));
    let (mut redacted, mut threads) = (0, 0);
    for room_id in archive.room_ids().unwrap() {
        let rdir = archive.room_dir(&room_id);
        let meta: RoomMeta = fsutil::read_json(&rdir.join("room.json")).unwrap();
        let marked = reached_back(&rdir.join(EVENTS), meta.events.saturating_sub(n)).unwrap();
        for id in marked {
            let pid = full.get("eventid_pduid", id.as_bytes()).unwrap().unwrap();
            let want: serde_json::Value =
                serde_json::from_slice(&full.get("pduid_pdu", &pid).unwrap().unwrap()).unwrap();
            let got: serde_json::Value = serde_json::from_slice(
                &recent
                    .get("eventid_outlierpdu", id.as_bytes())
                    .unwrap()
                    .unwrap_or_else(|| panic!("{id} is not kept as an outlier")),
            )
            .unwrap();
            assert_eq!(got, want, "{id} in room {room_id}");
            redacted += usize::from(want["unsigned"].get("redacted_because").is_some());
            threads += usize::from(want["unsigned"]["m.relations"].get("m.thread").is_some());
        }
    }
    // The window's first event redacts an old message; the event before it, a redaction older
    // than the window, redacts the one before it (both reach Conduit by backfill).
    assert!(redacted >= 2, "{redacted} old events redacted");
    eprintln!("{redacted} redacted and {threads} thread roots reached back to");
}

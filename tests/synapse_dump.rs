//! `synapse dump all` against the real testnet Synapse: the archive holds exactly what Synapse
//! holds, re-runs change nothing, a killed dump resumes to the same archive, secrets stay secret.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{dump, reference_archive, scenario, secrets, text, tree_checksums};
use sqlx::{sqlite::SqliteConnectOptions, Row, SqlitePool};
use transition_matrix::archive::room::{PduReader, RoomMeta, EVENTS, OUTLIERS};
use transition_matrix::archive::user::UserRecord;
use transition_matrix::archive::{fsutil, Archive, Manifest};
use transition_matrix::matrix::pdu;

fn synapse_db() -> SqlitePool {
    let opts = SqliteConnectOptions::new()
        .filename(&scenario().database)
        .read_only(true);
    SqlitePool::connect_lazy_with(opts)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn admin_get(path: &str) -> serde_json::Value {
    let s = scenario();
    rt().block_on(async {
        reqwest::Client::new()
            .get(format!("{}{}", s.client_url, path))
            .bearer_auth(&s.admin.access_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

fn manifest(root: &Path) -> Manifest {
    fsutil::read_json(&root.join("manifest.json")).unwrap()
}

#[test]
fn archive_holds_every_user_room_event_session_and_media_byte() {
    let (root, out) = reference_archive();
    let m = manifest(root);
    assert_eq!(m.errors, 0, "the dump reported problems: {}", text(out));
    let s = scenario();
    assert_eq!(m.server_name, s.server_name);

    // Users: the admin API's total, deactivated users included.
    let users = admin_get("/_synapse/admin/v2/users?deactivated=true&limit=1");
    assert_eq!(m.counts.users, users["total"].as_u64().unwrap());
    let eve: UserRecord = fsutil::read_json(&root.join("users/eve.json")).unwrap();
    assert!(eve.deactivated && !eve.erased);
    let erin: UserRecord = fsutil::read_json(&root.join("users/erin.json")).unwrap();
    assert!(erin.deactivated && erin.erased);

    // Rooms: every room of the admin list.
    let rooms = admin_get("/_synapse/admin/v1/rooms?limit=1");
    assert_eq!(m.counts.rooms, rooms["total_rooms"].as_u64().unwrap());
    let archive = Archive::open(root).unwrap();
    let lobby: RoomMeta = fsutil::read_json(
        &archive
            .room_dir(&s.rooms["public"].room_id)
            .join("room.json"),
    )
    .unwrap();
    assert!(lobby.published, "the lobby is in the room directory");
    assert_eq!(lobby.aliases, vec!["#lobby:example.test".to_owned()]);
    assert_eq!(
        lobby.canonical_alias.as_deref(),
        Some("#lobby:example.test")
    );
    assert!(
        lobby.pruned_events >= 2,
        "redactions and the erased user's events arrive pruned"
    );
    let abandoned: RoomMeta = fsutil::read_json(
        &archive
            .room_dir(&s.rooms["abandoned"].room_id)
            .join("room.json"),
    )
    .unwrap();
    assert_eq!(
        abandoned.history_source, "admin-messages",
        "no local member: admin API"
    );
    let huge: RoomMeta =
        fsutil::read_json(&archive.room_dir(&s.rooms["huge"].room_id).join("room.json")).unwrap();
    assert!(huge.events >= 5000 && huge.history_source == "federation-backfill");
    let ids: BTreeSet<String> = archive.room_ids().unwrap().into_iter().collect();
    for r in s.rooms.values() {
        assert!(ids.contains(&r.room_id), "room {} missing", r.room_id);
    }

    rt().block_on(async {
        let db = synapse_db();
        for room_id in &ids {
            let dir = archive.room_dir(room_id);
            let meta: RoomMeta = fsutil::read_json(&dir.join("room.json")).unwrap();
            let rules = pdu::rules_for(&meta.version).unwrap();
            // Every event id recomputes from the stored PDU.
            let mut archived = Vec::new();
            for file in [EVENTS, OUTLIERS] {
                for line in PduReader::open(&dir.join(file)).unwrap() {
                    let line = line.unwrap();
                    assert_eq!(pdu::event_id(&line.pdu, &rules).unwrap(), line.event_id);
                    assert!(!line.pdu.contains_key("unsigned"), "Synapse's unsigned must be dropped");
                    archived.push(line.event_id);
                }
            }
            // The same events as Synapse's database, timeline in Synapse's order.
            let rows = sqlx::query(
                "SELECT event_id FROM events WHERE room_id = ? ORDER BY topological_ordering, stream_ordering",
            )
            .bind(room_id)
            .fetch_all(&db)
            .await
            .unwrap();
            let in_db: Vec<String> = rows.iter().map(|r| r.get("event_id")).collect();
            assert_eq!(archived.len(), in_db.len(), "event count of {room_id}");
            assert_eq!(archived[..meta.events as usize], in_db[..], "timeline order of {room_id}");
            // The current state points at archived events.
            let set: BTreeSet<&String> = archived.iter().collect();
            for st in &meta.current_state {
                assert!(set.contains(&st.event_id), "state event {} of {room_id} missing", st.event_id);
            }
        }

        // Key backup sessions per user equal Synapse's.
        for (name, u) in &s.users {
            let rec: UserRecord = fsutil::read_json(&archive.user_path(&u.user_id)).unwrap();
            let n: i64 = sqlx::query("SELECT count(*) AS n FROM e2e_room_keys WHERE user_id = ?")
                .bind(&u.user_id)
                .fetch_one(&db)
                .await
                .unwrap()
                .get("n");
            let got = rec.key_backup.as_ref().map_or(0, |b| b.session_count());
            assert_eq!(got, n as u64, "key backup sessions of {name}");
        }
    });
    assert!(m.counts.key_backup_sessions >= 5);

    // Media: the same bytes as Synapse's media store.
    let mut store = BTreeSet::new();
    for (_, sha) in tree_checksums(&scenario().media_store.join("local_content")) {
        store.insert(sha);
    }
    let blobs: BTreeSet<String> = tree_checksums(&root.join("media/blobs"))
        .into_values()
        .collect();
    assert!(!store.is_empty());
    assert_eq!(
        blobs, store,
        "media bytes differ from Synapse's media store"
    );
}

#[test]
fn user_files_carry_devices_tokens_keys_and_account_data() {
    let (root, _) = reference_archive();
    let s = scenario();
    let alice = &s.users["alice"];
    let rec: UserRecord =
        fsutil::read_json(&Archive::open(root).unwrap().user_path(&alice.user_id)).unwrap();
    let devices: BTreeSet<&str> = rec.devices.iter().map(|d| d.device_id.as_str()).collect();
    for (device, token) in &alice.devices {
        assert!(devices.contains(device.as_str()), "device {device}");
        assert!(
            rec.secrets
                .access_tokens
                .iter()
                .any(|t| &t.token == token && t.device_id.as_deref() == Some(device)),
            "token of {device}"
        );
        assert!(
            rec.e2e.device_keys.contains_key(device),
            "device keys of {device}"
        );
        assert_eq!(
            rec.e2e.one_time_keys.get(device).map(|k| k.len()),
            Some(5),
            "OTKs of {device}"
        );
    }
    assert!(rec
        .secrets
        .password_hash
        .as_deref()
        .is_some_and(|h| h.starts_with("$2")));
    assert!(
        rec.e2e.master_key.is_some()
            && rec.e2e.self_signing_key.is_some()
            && rec.e2e.user_signing_key.is_some()
    );
    assert!(rec.account_data.global.contains_key("org.example.global"));
    assert!(rec.account_data.global.contains_key("m.direct"));
    let public = &s.rooms["public"].room_id;
    assert!(rec.account_data.rooms[public]["m.tag"]["tags"]
        .get("m.favourite")
        .is_some());
    assert_eq!(rec.pushers.len(), 1);
    assert!(rec.threepids.iter().any(|t| t["medium"] == "email"));
    let rules = rec.push_rules.as_ref().unwrap();
    assert!(rules["global"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["rule_id"] == "myrule"));
    // No puppet (login-as) token is ever migrated.
    assert_eq!(rec.secrets.access_tokens.len(), alice.devices.len());
    let bob: UserRecord = fsutil::read_json(
        &Archive::open(root)
            .unwrap()
            .user_path(&s.users["bob"].user_id),
    )
    .unwrap();
    assert!(
        !bob.secrets.to_device.is_empty(),
        "bob's pending to-device message"
    );
}

#[test]
fn secrets_are_0600_and_never_logged() {
    let (root, out) = reference_archive();
    let m = manifest(root);
    assert!(m.secret_files.iter().any(|f| f.starts_with("users/")));
    assert!(m.secret_files.iter().any(|f| f == "keys/signing.key"));
    for f in &m.secret_files {
        let mode = std::fs::metadata(root.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let log = text(out);
    assert!(
        log.contains("connected to Synapse"),
        "the log was captured: {log}"
    );
    for secret in secrets() {
        assert!(!log.contains(&secret), "a secret appears in the log");
    }
    // The signing key in the archive is the one Synapse signs with.
    let key = std::fs::read_to_string(root.join("keys/signing.key")).unwrap();
    assert_eq!(
        key.trim(),
        std::fs::read_to_string(&scenario().signing_key_path)
            .unwrap()
            .trim()
    );
}

#[test]
fn second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a");
    let first = dump(&root, &[]);
    assert!(first.status.success(), "{}", text(&first));
    let before = tree_checksums(&root);
    let second = dump(&root, &[]);
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        text(&second).contains("dumped nothing"),
        "{}",
        text(&second)
    );
    assert_eq!(tree_checksums(&root), before);
}

/// User files hold `last_seen` of devices, which the admin's own requests move; everything
/// else must be identical.
fn comparable(root: &Path) -> BTreeMap<String, String> {
    let mut sums = tree_checksums(root);
    sums.remove("checkpoint.jsonl");
    sums.remove("manifest.json");
    for (path, sum) in sums.iter_mut() {
        if path.starts_with("users/") {
            let mut rec: UserRecord = fsutil::read_json(&root.join(path)).unwrap();
            for d in &mut rec.devices {
                d.last_seen_ts = None;
                d.last_seen_ip = None;
                d.last_seen_user_agent = None;
            }
            *sum = fsutil::sha256_hex(&serde_json::to_vec(&rec).unwrap());
        }
    }
    sums
}

#[test]
fn a_killed_dump_resumes_to_the_same_archive() {
    let (reference, _) = reference_archive();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a");
    let s = scenario();
    let mut args: Vec<String> = vec!["synapse".into(), "dump".into(), "all".into()];
    args.extend(common::synapse_flags());
    args.extend([
        "--archive".into(),
        root.display().to_string(),
        "--concurrency".into(),
        "1".into(),
    ]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_transition-matrix"))
        .args(&args)
        .env("TM_TEST_TOKEN", &s.admin.access_token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has finished the keys, the users and at least one room.
    let checkpoint = root.join("checkpoint.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lines = std::fs::read_to_string(&checkpoint)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        // keys + every user (the admin is not in `s.users`) + one room
        let wanted = 1 + (s.users.len() + 1) + 1;
        if lines >= wanted {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the dump ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "the dump made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !root.join("manifest.json").exists(),
        "killed before the end, so no manifest yet"
    );

    let resumed = dump(&root, &[]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(
        text(&resumed).contains("already done:")
            && !text(&resumed).contains("already done: nothing")
    );
    assert_eq!(comparable(&root), comparable(reference));
    assert_eq!(manifest(&root).counts, manifest(reference).counts);
}

/// A verified contact: alice's user-signing key signed bob's master key. The dump keeps that
/// signature in alice's file — from Synapse's database, and the same from alice's own
/// `/keys/query` when no database is given.
#[test]
fn signatures_on_verified_contacts_are_kept_with_and_without_the_database() {
    let s = scenario();
    let (alice, bob) = (&s.users["alice"].user_id, &s.users["bob"].user_id);
    let (root, _) = reference_archive();
    let with_db: UserRecord =
        fsutil::read_json(&Archive::open(root).unwrap().user_path(alice)).unwrap();
    let bobs: UserRecord = fsutil::read_json(&Archive::open(root).unwrap().user_path(bob)).unwrap();
    let master = bobs.e2e.master_key.unwrap();
    let public = master["keys"].as_object().unwrap().values().next().unwrap();
    let sigs = &with_db.e2e.signatures_on_others[bob][public.as_str().unwrap()];
    let usk = with_db.e2e.user_signing_key.as_ref().unwrap();
    let usk_id = usk["keys"].as_object().unwrap().keys().next().unwrap();
    assert!(sigs.contains_key(usk_id), "{sigs:?}");
    assert!(with_db.e2e.remote_master_keys.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    let flags = common::synapse_flags();
    let no_db: Vec<&str> = flags
        .iter()
        .map(String::as_str)
        .take_while(|f| *f != "--synapse-db")
        .collect();
    for what in ["keys", "users"] {
        let out = common::tm(
            &[
                &["synapse", "dump", what, "--user", alice][..],
                &no_db,
                &["--archive", archive.to_str().unwrap()],
            ]
            .concat(),
            &[("TM_TEST_TOKEN", &s.admin.access_token)],
        );
        assert!(out.status.success(), "{what}: {}", text(&out));
    }
    let from_api: UserRecord =
        fsutil::read_json(&Archive::open(&archive).unwrap().user_path(alice)).unwrap();
    assert!(!from_api.secrets.read_from_db);
    assert_eq!(
        from_api.e2e.signatures_on_others,
        with_db.e2e.signatures_on_others
    );
}

//! Bad input for `conduit write`: a damaged archive, rooms Conduit cannot hold, an oversized
//! event, another server's database, a database in use. Each is a clear error, a non-zero
//! exit, no panic — and never a database Conduit would start on.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use transition_matrix::archive::room::{write_pdus, RoomMeta, EVENTS, OUTLIERS};
use transition_matrix::archive::{fsutil, Archive};
use transition_matrix::conduit::schema::u64be;
use transition_matrix::conduit::store::{sqlite::SqliteStore, Store};
use transition_matrix::conduit::writer::Writer;
use transition_matrix::matrix::forge::RoomBuilder;
use transition_matrix::matrix::keys::ServerKey;
use transition_matrix::matrix::signer::EventSigner;

/// A private copy of the reference archive, to damage.
fn archive_copy(dir: &Path) -> PathBuf {
    let (root, _) = common::reference_archive();
    let copy = dir.join("archive");
    let st = Command::new("cp")
        .arg("-a")
        .arg(root)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    copy
}

/// Runs `conduit write` (SQLite) and returns (exit code, stderr).
fn write(archive: &Path, db: &Path) -> (i32, String) {
    let out = common::tm(
        &[
            "conduit",
            "write",
            "--archive",
            &archive.display().to_string(),
            "--database",
            &db.display().to_string(),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "panic: {}", common::text(&out));
    (out.status.code().unwrap_or(-1), err)
}

/// The stored database version, if there is a database.
fn version(db: &Path) -> Option<Vec<u8>> {
    if !db.join("conduit.db").exists() {
        return None;
    }
    SqliteStore::open(db)
        .unwrap()
        .get("global", b"version")
        .unwrap()
}

fn biggest_room(archive: &Path) -> PathBuf {
    let a = Archive::open(archive).unwrap();
    a.room_ids()
        .unwrap()
        .into_iter()
        .map(|r| a.room_dir(&r))
        .max_by_key(|d| std::fs::metadata(d.join(EVENTS)).unwrap().len())
        .unwrap()
}

#[test]
fn truncated_events_file_stops_unfinished_and_resumes_once_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive_copy(dir.path());
    let db = dir.path().join("db");
    let events = biggest_room(&archive).join(EVENTS);
    let good = std::fs::read(&events).unwrap();
    std::fs::write(&events, &good[..good.len() / 2]).unwrap();

    let (code, err) = write(&archive, &db);
    assert_ne!(code, 0);
    assert!(
        err.contains(&events.display().to_string()) && err.contains("unfinished write"),
        "{err}"
    );
    // Conduit refuses any version but 18, so it cannot start on what was written so far.
    assert_eq!(version(&db), Some(u64be(u64::MAX).to_vec()));
    // verify says that first, and only that (not the violations an unfinished write has).
    let db_arg = db.display().to_string();
    let out = common::tm(
        &[
            "conduit",
            "verify",
            "--backend",
            "sqlite",
            "--database",
            &db_arg,
        ],
        &[],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    let findings: Vec<&str> = said.lines().filter(|l| l.starts_with('✗')).collect();
    assert_eq!(findings.len(), 1, "{said}");
    assert!(
        findings[0].contains("unfinished write: run `conduit write` again"),
        "{said}"
    );

    std::fs::write(&events, &good).unwrap();
    let (code, err) = write(&archive, &db);
    assert_eq!(code, 0, "{err}");
    assert_eq!(version(&db), Some(u64be(18).to_vec()));
    let r = transition_matrix::conduit::verify::verify(
        &mut SqliteStore::open(&db).unwrap(),
        None,
        Some(&db.join("media")),
    )
    .unwrap();
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

#[test]
fn garbled_metadata_and_old_room_versions_are_all_reported_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive_copy(dir.path());
    let db = dir.path().join("db");
    let a = Archive::open(&archive).unwrap();
    let rooms = a.room_ids().unwrap();
    let old = a.room_dir(&rooms[0]).join("room.json");
    let mut meta: RoomMeta = fsutil::read_json(&old).unwrap();
    meta.version = "2".into();
    std::fs::write(&old, serde_json::to_vec(&meta).unwrap()).unwrap();
    std::fs::write(
        a.room_dir(&rooms[1]).join("room.json"),
        b"{\"room_id\": tru",
    )
    .unwrap();

    let (code, err) = write(&archive, &db);
    assert_ne!(code, 0);
    assert!(err.contains("2 problem(s), nothing was written"), "{err}");
    assert!(err.contains(&format!("{} (version 2)", rooms[0])), "{err}");
    assert!(err.contains("room.json"), "{err}");
    assert!(!db.exists(), "no database may be created for a bad archive");

    std::fs::write(a.manifest_path(), b"not json").unwrap();
    let (code, err) = write(&archive, &db);
    assert_ne!(code, 0);
    assert!(err.contains("manifest.json"), "{err}");
    assert!(!db.exists());
}

#[test]
fn an_event_over_64_kib_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive_copy(dir.path());
    let db = dir.path().join("db");
    let a = Archive::open(&archive).unwrap();
    let key = ServerKey::read_synapse(&a.keys_dir().join("signing.key"))
        .unwrap()
        .remove(0);
    let s = common::scenario();
    let signer = EventSigner::new(&key, &s.server_name);
    let room_id = format!("!oversized:{}", s.server_name);
    let alice = &s.users["alice"].user_id;
    let mut b = RoomBuilder::new(&signer, "10", &room_id).unwrap();
    let lines = vec![
        b.send(
            alice,
            "m.room.create",
            Some(""),
            json!({"creator": alice, "room_version": "10"}),
            1,
        )
        .unwrap(),
        b.send(
            alice,
            "m.room.member",
            Some(alice),
            json!({"membership": "join"}),
            2,
        )
        .unwrap(),
        b.send(
            alice,
            "m.room.message",
            None,
            json!({"msgtype": "m.text", "body": "x"}),
            3,
        )
        .unwrap(),
    ];
    // No signer makes an event this large (ruma refuses to), so it is enlarged after signing:
    // what a damaged or hand-made archive could hold.
    let mut lines = lines;
    let body = ruma::CanonicalJsonValue::String("x".repeat(70_000));
    if let Some(ruma::CanonicalJsonValue::Object(c)) = lines[2].pdu.get_mut("content") {
        c.insert("body".into(), body);
    }
    let big = lines[2].event_id.clone();
    let rdir = a.room_dir(&room_id);
    std::fs::create_dir_all(&rdir).unwrap();
    write_pdus(&rdir.join(EVENTS), &lines).unwrap();
    write_pdus(&rdir.join(OUTLIERS), &[]).unwrap();
    let meta = RoomMeta {
        room_id: room_id.clone(),
        version: "10".into(),
        current_state: b.current_state(),
        forward_extremities: vec![big.clone()],
        events: 3,
        ..Default::default()
    };
    fsutil::write_json(&rdir.join("room.json"), &meta, false).unwrap();

    let (code, err) = write(&archive, &db);
    assert_ne!(code, 0);
    assert!(
        err.contains(&big) && err.contains(&room_id) && err.contains("65536-byte limit"),
        "{err}"
    );
    assert_eq!(version(&db), Some(u64be(u64::MAX).to_vec()));
}

#[test]
fn another_servers_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let w = Writer::begin(SqliteStore::open(&db).unwrap(), "other.test").unwrap();
    w.finish().unwrap();
    let (root, _) = common::reference_archive();
    let (code, err) = write(root, &db);
    assert_ne!(code, 0);
    assert!(err.contains("belongs to another server name"), "{err}");
    assert_eq!(version(&db), Some(u64be(18).to_vec()), "left as it was");
}

#[test]
fn a_database_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let w = Writer::begin(
        SqliteStore::open(&db).unwrap(),
        &common::scenario().server_name,
    )
    .unwrap();
    w.finish().unwrap();
    // Any process holding a file of the database counts (Conduit keeps them open).
    let mut holder = Command::new("sleep")
        .arg("30")
        .stdin(std::fs::File::open(db.join("conduit.db")).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (root, _) = common::reference_archive();
    let (code, err) = write(root, &db);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_ne!(code, 0);
    assert!(
        err.contains("is open in process") && err.contains("(sleep)"),
        "{err}"
    );
}

//! Mattermost → a running Synapse through an application service (the testnet's `whitelist`
//! instance carries the registration): every forged message arrives with its sender, original
//! time and order, threads and reactions point at the right events, a re-run sends nothing, and
//! an archive for another server name is refused.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;
use transition_matrix::archive::room::{PduReader, EVENTS};
use transition_matrix::archive::Archive;

const SERVER: &str = "whitelist.test";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test (it starts the testnets)")
    })
}

fn import(archive: &Path, server_name: &str) -> std::process::Output {
    let (dsn, files, url) = (
        env("TM_MM_PG_URL"),
        env("TM_MM_FILES"),
        env("TM_SYNAPSE_WHITELIST_URL"),
    );
    env("TM_SYNAPSE_AS_TOKEN");
    common::tm(
        &[
            "mattermost",
            "import",
            "--driver",
            "postgres",
            "--data-source",
            &dsn,
            "--files",
            &files,
            "--server-name",
            server_name,
            "--archive",
            archive.to_str().unwrap(),
            "--synapse-url",
            &url,
        ],
        &[],
    )
}

fn ok(out: &std::process::Output) -> String {
    common::succeeded(out, "mattermost import --synapse-url")
}

/// A `forged ⇥ synapse` log of the replay.
fn id_log(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (a, b) = l.split_once('\t').unwrap();
            (a.to_owned(), b.to_owned())
        })
        .collect()
}

/// The forged timeline of a room.
fn forged(archive: &Archive, room: &str) -> Vec<Value> {
    PduReader::open(&archive.room_dir(room).join(EVENTS))
        .unwrap()
        .map(|l| {
            let l = l.unwrap();
            let mut v = serde_json::to_value(&l.pdu).unwrap();
            v["event_id"] = Value::String(l.event_id);
            v
        })
        .collect()
}

/// Someone who is a member at the end of the forged timeline (to read the room as).
fn a_member(events: &[Value]) -> String {
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for e in events.iter().filter(|e| e["type"] == "m.room.member") {
        last.insert(
            e["state_key"].as_str().unwrap().to_owned(),
            e["content"]["membership"].as_str().unwrap().to_owned(),
        );
    }
    last.into_iter()
        .find(|(_, m)| m == "join")
        .map(|(u, _)| u)
        .expect("a room with a member")
}

/// The room's whole timeline from Synapse, oldest first, read as `user`.
async fn synapse_timeline(room: &str, user: &str) -> Vec<Value> {
    let (url, token) = (env("TM_SYNAPSE_WHITELIST_URL"), env("TM_SYNAPSE_AS_TOKEN"));
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..100 {
        let mut req = client
            .get(format!("{url}/_matrix/client/v3/rooms/{room}/messages"))
            .bearer_auth(&token)
            .query(&[("dir", "f"), ("limit", "500"), ("user_id", user)]);
        if let Some(f) = &from {
            req = req.query(&[("from", f)]);
        }
        let page: Value = req.send().await.unwrap().json().await.unwrap();
        let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
        if chunk.is_empty() {
            return out;
        }
        out.extend(chunk);
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => return out,
        }
    }
    panic!("more than 100 pages of /messages");
}

#[tokio::test(flavor = "multi_thread")]
async fn posts_arrive_in_synapse_with_their_senders_times_threads_and_reactions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let stdout = ok(&import(&root, SERVER));
    assert!(stdout.contains("sent to Synapse:"), "{stdout}");
    let archive = Archive::open(&root).unwrap();
    let rooms = id_log(&root.join("synapse-replay/rooms.log"));
    assert_eq!(rooms.len(), archive.room_ids().unwrap().len());
    let mut messages_checked = 0;
    let mut threads_checked = 0;
    let mut reactions_checked = 0;
    for (forged_room, synapse_room) in &rooms {
        let events = forged(&archive, forged_room);
        let ids = id_log(
            &root
                .join("synapse-replay/rooms")
                .join(format!("{}.log", urlencoding::encode(forged_room))),
        );
        let timeline = synapse_timeline(synapse_room, &a_member(&events)).await;
        let pick = |evs: &[Value], kind: &str| -> Vec<(String, i64, Value)> {
            evs.iter()
                .filter(|e| e["type"] == kind && e["content"].get("body").is_some())
                .map(|e| {
                    (
                        e["sender"].as_str().unwrap().to_owned(),
                        e["origin_server_ts"].as_i64().unwrap(),
                        e["content"]["body"].clone(),
                    )
                })
                .collect()
        };
        // Every message: same sender, original time, same text, same order.
        let want = pick(&events, "m.room.message");
        assert_eq!(
            pick(&timeline, "m.room.message"),
            want,
            "messages of {forged_room}"
        );
        messages_checked += want.len();
        let by_synapse_id: HashMap<&str, &Value> = timeline
            .iter()
            .map(|e| (e["event_id"].as_str().unwrap(), e))
            .collect();
        for e in &events {
            let rel = &e["content"]["m.relates_to"];
            let Some(target) = rel["event_id"].as_str() else {
                continue;
            };
            let sent = &by_synapse_id[ids[e["event_id"].as_str().unwrap()].as_str()];
            // The relation points at the Synapse event made from the forged target.
            assert_eq!(
                sent["content"]["m.relates_to"]["event_id"].as_str(),
                Some(ids[target].as_str()),
                "relation of {}",
                e["event_id"]
            );
            match rel["rel_type"].as_str() {
                Some("m.thread") => threads_checked += 1,
                Some("m.annotation") => {
                    assert_eq!(sent["content"]["m.relates_to"]["key"], rel["key"]);
                    reactions_checked += 1
                }
                _ => {}
            }
        }
    }
    assert!(
        messages_checked > 20 && threads_checked > 0 && reactions_checked > 0,
        "{messages_checked} messages, {threads_checked} thread replies, {reactions_checked} reactions"
    );

    // A second run resumes from the logs: nothing is sent again.
    let again = ok(&import(&root, SERVER));
    assert!(
        again.contains("0 rooms created, 0 events"),
        "second run: {again}"
    );
}

#[test]
fn an_archive_for_another_server_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = import(&dir.path().join("archive"), "other.test");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("this Synapse serves whitelist.test"),
        "stderr: {err}"
    );
}

#[test]
fn the_registration_is_private_and_fresh_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let read = |name: &str| {
        let path = dir.path().join(name);
        common::succeeded(
            &common::tm(
                &[
                    "mattermost",
                    "registration",
                    "--server-name",
                    "chat.example.org",
                    "--out",
                    path.to_str().unwrap(),
                ],
                &[],
            ),
            "mattermost registration",
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the registration holds tokens");
        let reg: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        reg
    };
    let (a, b) = (read("a.yaml"), read("b.yaml"));
    assert_eq!(
        a["namespaces"]["users"][0]["regex"].as_str(),
        Some("@.*:chat\\.example\\.org")
    );
    assert_eq!(a["rate_limited"].as_bool(), Some(false));
    assert!(a["url"].is_null());
    let token = a["as_token"].as_str().unwrap();
    assert_eq!(token.len(), 48);
    assert_ne!(Some(token), b["as_token"].as_str());
    assert_ne!(a["as_token"], a["hs_token"]);
}

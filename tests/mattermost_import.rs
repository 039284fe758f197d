//! Mattermost → Conduit against the testnet's PostgreSQL and MariaDB (`testnet/mattermost.sh`):
//! the fixture is imported, `conduit verify` passes, and the database read back with the
//! project's reader shows every channel as a room with every post (sender, time, order, thread,
//! reactions, edits, pins, files) as the fixture says. MySQL forges exactly the same events.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use transition_matrix::archive::room::{PduReader, EVENTS};
use transition_matrix::archive::{fsutil, Archive};
use transition_matrix::conduit::reader;
use transition_matrix::conduit::store::sqlite::SqliteStore;
use transition_matrix::mattermost::convert::Converter;

const SERVER: &str = "mm.test";
const MEMBERSHIP_POSTS: [&str; 3] = [
    "system_join_channel",
    "system_leave_channel",
    "system_add_to_channel",
];

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with scripts/test (it starts testnet/mattermost.sh)"
        )
    })
}

fn fixture() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        serde_json::from_str(&std::fs::read_to_string(env("TM_MM_FIXTURE")).unwrap()).unwrap()
    })
}

/// A fixed signing key, so the PostgreSQL and MySQL imports can be compared event by event.
fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("signing.key");
    let seed = transition_matrix::matrix::b64_encode(&[5u8; 32]);
    std::fs::write(&path, format!("ed25519 mm1 {seed}\n")).unwrap();
    path
}

struct Imported {
    _dir: tempfile::TempDir,
    archive: PathBuf,
    db: PathBuf,
    stdout: String,
}

fn import(driver: &str, dsn: &str, conduit: bool, dir: Option<tempfile::TempDir>) -> Imported {
    let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let archive = dir.path().join("archive");
    let db = dir.path().join("conduit");
    let key = key_file(dir.path());
    let mut args = vec![
        "mattermost",
        "import",
        "--driver",
        driver,
        "--data-source",
        dsn,
        "--server-name",
        SERVER,
        "--archive",
        archive.to_str().unwrap(),
        "--signing-key",
        key.to_str().unwrap(),
    ];
    let files = env("TM_MM_FILES");
    args.extend(["--files", files.as_str()]);
    if conduit {
        args.extend(["--conduit-db", db.to_str().unwrap(), "--backend", "sqlite"]);
    }
    let stdout = tm_ok(&args);
    Imported {
        _dir: dir,
        archive,
        db,
        stdout,
    }
}

/// `mattermost <command…>` from the testnet's PostgreSQL (`dsn`) and file store into `archive`.
fn pg_args<'a>(
    command: &[&'a str],
    dsn: &'a str,
    files: &'a str,
    archive: &'a Path,
) -> Vec<&'a str> {
    let mut args = vec!["mattermost"];
    args.extend(command);
    args.extend([
        "--data-source",
        dsn,
        "--files",
        files,
        "--server-name",
        SERVER,
        "--archive",
        archive.to_str().unwrap(),
    ]);
    args
}

/// Runs the binary; it must succeed. Returns its standard output.
fn tm_ok(args: &[&str]) -> String {
    common::succeeded(&common::tm(args, &[]), &format!("{args:?}"))
}

/// Runs the binary; it must stop with exit status 1 (not a panic) and a message naming each of
/// `want`. Returns its standard error.
fn tm_refused(args: &[&str], want: &[&str]) -> String {
    let out = common::tm(args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    for w in want {
        assert!(stderr.contains(w), "{args:?}: expected {w:?} in {stderr}");
    }
    stderr
}

/// `conduit verify` of a written database against its archive must pass.
fn verify(db: &Path, archive: &Path) {
    tm_ok(&[
        "conduit",
        "verify",
        "--database",
        db.to_str().unwrap(),
        "--archive",
        archive.to_str().unwrap(),
    ]);
}

fn postgres() -> &'static Imported {
    static I: OnceLock<Imported> = OnceLock::new();
    I.get_or_init(|| import("postgres", &env("TM_MM_PG_URL"), true, None))
}

/// The reaction keys the fixture's emoji names must become.
fn reaction_key(name: &str) -> String {
    match name {
        "+1" | "thumbsup" => "👍".into(),
        "+1_light_skin_tone" => "👍🏻".into(),
        "heart" => "❤️".into(),
        "smile" => "😄".into(),
        "tada" => "🎉".into(),
        "white_check_mark" => "✅".into(),
        "eyes" => "👀".into(),
        "rocket" => "🚀".into(),
        "thinking_face" => "🤔".into(),
        "partyparrot" | "shipit" | "oldlogo" => format!(":{name}:"),
        other => panic!("the test does not know the emoji {other:?}: add it"),
    }
}

fn uid(username: &str) -> String {
    format!("@{username}:{SERVER}")
}

/// The timeline event ids of a room in an archive.
fn event_ids(a: &Archive, room: &str) -> Vec<String> {
    PduReader::open(&a.room_dir(room).join(EVENTS))
        .unwrap()
        .map(|l| l.unwrap().event_id)
        .collect()
}

/// The fixture channel holding a post, its room's timeline as stored, and the post's event id.
fn post_in_room<'c>(
    channels: &'c [Value],
    store: &mut SqliteStore,
    archive: &Path,
    post: &str,
) -> (&'c Value, Vec<Value>, String) {
    let c = channels
        .iter()
        .find(|c| c["post_ids"].as_array().unwrap().iter().any(|p| p == post))
        .unwrap();
    let room_id = format!("!mm_{}:{SERVER}", c["id"].as_str().unwrap());
    let pdus = reader::timeline_pdus(store, &room_id).unwrap();
    let ev_id = mapping(archive, c["id"].as_str().unwrap())[post].clone();
    (c, pdus, ev_id)
}

fn mapping(archive: &Path, key: &str) -> BTreeMap<String, String> {
    fsutil::read_json(&archive.join("mapping").join(format!("{key}.json"))).unwrap()
}

#[test]
fn postgres_import_verifies_and_reads_back_as_the_fixture() {
    let imp = postgres();
    verify(&imp.db, &imp.archive);

    let f = fixture();
    let missing_users: BTreeSet<&str> = f["anomalies"]["missing_user"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut store = SqliteStore::open(&imp.db).unwrap();
    let channels = f["channels"].as_array().unwrap();
    let (mut threads_checked, mut reactions_seen, mut files_seen) = (0, 0, 0);
    let (mut archived_checked, mut topics_checked) = (0, 0);
    let mut orphans = Vec::new();
    for c in channels {
        let cid = c["id"].as_str().unwrap();
        let room_id = format!("!mm_{cid}:{SERVER}");
        let pdus = reader::timeline_pdus(&mut store, &room_id).unwrap();
        let by_id: HashMap<&str, &Value> = pdus
            .iter()
            .map(|p| (p["event_id"].as_str().unwrap(), p))
            .collect();
        let position: HashMap<&str, usize> = pdus
            .iter()
            .enumerate()
            .map(|(i, p)| (p["event_id"].as_str().unwrap(), i))
            .collect();
        let map = mapping(&imp.archive, cid);

        // Every live post that is a message is in the room, by its author, at its time, in order.
        let mut last_pos = 0;
        let mut expected = 0;
        let mut thread_last: HashMap<String, String> = HashMap::new();
        for p in c["posts"].as_array().unwrap() {
            let id = p["id"].as_str().unwrap();
            let kind = p["type"].as_str().unwrap();
            if missing_users.contains(id) {
                assert!(
                    !map.contains_key(id),
                    "{id}: a post of a missing user is left out"
                );
                continue;
            }
            if MEMBERSHIP_POSTS.contains(&kind) {
                continue;
            }
            let only_missing_files = p["message"].as_str().unwrap().is_empty()
                && !p["file_ids"].as_array().unwrap().is_empty();
            if only_missing_files && !map.contains_key(id) {
                continue;
            }
            expected += 1;
            let ev_id = map
                .get(id)
                .unwrap_or_else(|| panic!("{id} ({kind}) in {}: not imported", c["name"]));
            let ev = by_id
                .get(ev_id.as_str())
                .unwrap_or_else(|| panic!("{ev_id} not in the timeline"));
            assert_eq!(
                ev["sender"],
                uid(p["user"].as_str().unwrap()),
                "sender of {id}"
            );
            assert_eq!(ev["origin_server_ts"], p["create_at"], "time of {id}");
            let pos = position[ev_id.as_str()];
            assert!(pos >= last_pos, "{id} is out of order in {}", c["name"]);
            last_pos = pos;
            let root = p["root"].as_str().unwrap();
            let rel = &ev["content"]["m.relates_to"];
            if let Some(root_ev) = map.get(root) {
                assert_eq!(rel["rel_type"], "m.thread", "{id} is in its thread");
                assert_eq!(rel["event_id"], root_ev.as_str());
                // The reply fallback, for clients without threads: the thread's latest post.
                let latest = thread_last.get(root).unwrap_or(root_ev);
                assert_eq!(rel["is_falling_back"], true, "{id}");
                assert_eq!(
                    rel["m.in_reply_to"]["event_id"],
                    latest.as_str(),
                    "{id} falls back to a reply to its thread's latest post"
                );
                thread_last.insert(root.to_owned(), ev_id.clone());
                threads_checked += 1;
            } else if !root.is_empty() {
                assert!(rel.is_null(), "an orphan reply is a plain message");
                orphans.push(id.to_owned());
            }
            // Reactions: the same (user, key) pairs.
            let want: BTreeSet<(String, String)> = p["reactions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        uid(r[0].as_str().unwrap()),
                        reaction_key(r[1].as_str().unwrap()),
                    )
                })
                .collect();
            let got: BTreeSet<(String, String)> = pdus
                .iter()
                .filter(|e| {
                    e["type"] == "m.reaction"
                        && e["content"]["m.relates_to"]["event_id"] == ev_id.as_str()
                })
                .map(|e| {
                    (
                        e["sender"].as_str().unwrap().to_owned(),
                        e["content"]["m.relates_to"]["key"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                    )
                })
                .collect();
            assert_eq!(got, want, "reactions on {id}");
            reactions_seen += got.len();
        }
        assert_eq!(
            map.keys().filter(|k| !k.contains('/')).count(),
            expected,
            "posts of {}",
            c["name"]
        );

        // Files are media events with an mxc URL.
        files_seen += pdus
            .iter()
            .filter(|e| {
                e["content"]["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("mxc://"))
            })
            .count();

        // Members now, pins, read-only archived channels.
        let state = reader::current_state(&mut store, &room_id).unwrap();
        let mut joined = BTreeSet::new();
        for ((kind, key), ev) in &state {
            if kind == "m.room.member" {
                let pdu = reader::timeline_pdus(&mut store, &room_id).unwrap();
                let e = pdu.iter().find(|p| p["event_id"] == ev.as_str()).unwrap();
                if e["content"]["membership"] == "join" {
                    joined.insert(key.clone());
                }
            }
        }
        let want_members: BTreeSet<String> = c["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| uid(m.as_str().unwrap()))
            .collect();
        assert_eq!(joined, want_members, "members of {}", c["name"]);
        let pinned: Vec<String> = c["pinned_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| map[p.as_str().unwrap()].clone())
            .collect();
        if !pinned.is_empty() {
            let ev = &state[&("m.room.pinned_events".to_owned(), String::new())];
            assert_eq!(
                by_id[ev.as_str()]["content"]["pinned"],
                serde_json::json!(pinned)
            );
        }
        if c["archived"].as_bool().unwrap() {
            let ev = &state[&("m.room.power_levels".to_owned(), String::new())];
            let pl = &by_id[ev.as_str()]["content"];
            assert_eq!(pl["events_default"], 100, "archived is read-only");
            read_only_for_every_member(pl, &joined, &c["name"]);
            archived_checked += 1;
        }
        // The topic: the header, then the purpose (Mattermost shows both; neither is lost).
        if matches!(c["type"].as_str(), Some("O" | "P")) {
            let (header, purpose) = (
                c["header"].as_str().unwrap(),
                c["purpose"].as_str().unwrap(),
            );
            let want = match (header, purpose) {
                ("", p) => p.to_owned(),
                (h, "") => h.to_owned(),
                (h, p) => format!("{h}\n\n{p}"),
            };
            let topic = state
                .get(&("m.room.topic".to_owned(), String::new()))
                .map(|ev| by_id[ev.as_str()]["content"]["topic"].as_str().unwrap());
            assert_eq!(topic.unwrap_or(""), want, "topic of {}", c["name"]);
            if !header.is_empty() && !purpose.is_empty() {
                topics_checked += 1;
            }
            // A purpose change is a topic change, at its time, by whoever made it.
            for p in c["posts"].as_array().unwrap() {
                if p["type"] == "system_purpose_change" {
                    let ev = &by_id[map[p["id"].as_str().unwrap()].as_str()];
                    assert_eq!(ev["type"], "m.room.topic", "{}", p["id"]);
                    assert_eq!(ev["sender"], uid(p["user"].as_str().unwrap()));
                    assert_eq!(ev["origin_server_ts"], p["create_at"]);
                }
            }
        }
        // Who may enter: the channel's own rule, which only moderators may change (members may
        // rename a channel and change its topic, as in Mattermost, but not open it).
        let rules = &state[&("m.room.join_rules".to_owned(), String::new())];
        let want = if c["type"] == "O" { "public" } else { "invite" };
        let rule = &by_id[rules.as_str()]["content"]["join_rule"];
        assert_eq!(rule, want, "join rule of {}", c["name"]);
        let pl = &state[&("m.room.power_levels".to_owned(), String::new())];
        let pl = &by_id[pl.as_str()]["content"];
        let member = pl["users_default"].as_i64().unwrap();
        for kind in [
            "m.room.join_rules",
            "m.room.guest_access",
            "m.room.history_visibility",
            "m.room.power_levels",
            "m.space.parent",
        ] {
            let needed = pl["events"][kind]
                .as_i64()
                .unwrap_or_else(|| pl["state_default"].as_i64().unwrap());
            assert!(
                needed > member,
                "any member may send {kind} in {}",
                c["name"]
            );
        }
    }
    assert!(threads_checked >= 5, "threads checked: {threads_checked}");
    assert!(
        archived_checked >= 1,
        "archived channels checked: {archived_checked}"
    );
    assert!(
        topics_checked >= 2,
        "channels with header and purpose: {topics_checked}"
    );
    // What the forge left out or changed is in the one report, beside what the mapping left out.
    let report = std::fs::read_to_string(imp.archive.join("import-report.json")).unwrap();
    assert!(!orphans.is_empty());
    for id in &orphans {
        assert!(
            report.contains(&format!("{id}: thread root")),
            "{id} not in {report}"
        );
    }
    assert!(reactions_seen >= 8, "reactions seen: {reactions_seen}");
    assert!(files_seen >= 4, "files seen: {files_seen}");

    // Edits: the first version at the post's time, each later one as an m.replace.
    let mut edit_rows_not_edits = 0;
    for e in f["edits"].as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        let (_, pdus, ev_id) = post_in_room(channels, &mut store, &imp.archive, id);
        let versions: Vec<&str> = e["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let orig = pdus
            .iter()
            .find(|p| p["event_id"] == ev_id.as_str())
            .unwrap();
        assert_eq!(orig["content"]["body"], versions[0]);
        let edits: Vec<&Value> = pdus
            .iter()
            .filter(|p| {
                p["content"]["m.relates_to"]["rel_type"] == "m.replace"
                    && p["content"]["m.relates_to"]["event_id"] == ev_id.as_str()
            })
            .collect();
        assert_eq!(edits.len(), versions.len() - 1);
        for (k, ed) in edits.iter().enumerate() {
            assert_eq!(ed["content"]["m.new_content"]["body"], versions[k + 1]);
            assert_eq!(ed["origin_server_ts"], e["times"][k + 1]);
        }
        edit_rows_not_edits += e["history"].as_array().unwrap().len() - versions.len();
    }
    // Pins, unpins and props changes leave history rows with the text unchanged: no m.replace
    // for them, neither on edited posts (above) nor on posts never edited ("(edited)" on a
    // post nobody edited, entries with the wrong times).
    assert!(edit_rows_not_edits >= 2, "{edit_rows_not_edits}");
    let updated = f["updated_not_edited"].as_array().unwrap();
    assert!(updated.len() >= 2, "{updated:?}");
    for id in updated {
        let id = id.as_str().unwrap();
        let (c, pdus, ev_id) = post_in_room(channels, &mut store, &imp.archive, id);
        let replaces: Vec<&Value> = pdus
            .iter()
            .filter(|p| p["content"]["m.relates_to"]["event_id"] == ev_id.as_str())
            .filter(|p| p["content"]["m.relates_to"]["rel_type"] == "m.replace")
            .collect();
        assert!(replaces.is_empty(), "{id} was never edited: {replaces:?}");
        let post = c["posts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap();
        let orig = pdus
            .iter()
            .find(|p| p["event_id"] == ev_id.as_str())
            .unwrap();
        let text = Converter::default().plain(post["message"].as_str().unwrap());
        assert_eq!(
            orig["content"]["body"],
            text.as_str(),
            "{id}: its only text"
        );
    }

    // Spaces: one per team, holding its channels, public and private (the hierarchy shows a
    // private one to its members only), each pointing back to its space.
    let mut private_children = 0;
    for t in f["teams"].as_array().unwrap() {
        let room_id = format!("!mm_{}:{SERVER}", t["id"].as_str().unwrap());
        let state = reader::current_state(&mut store, &room_id).unwrap();
        let children: BTreeSet<String> = state
            .keys()
            .filter(|(k, _)| k == "m.space.child")
            .map(|(_, child)| child.clone())
            .collect();
        let team_channels: BTreeSet<String> = channels
            .iter()
            .filter(|c| c["team_id"] == t["id"] && matches!(c["type"].as_str(), Some("O" | "P")))
            .map(|c| format!("!mm_{}:{SERVER}", c["id"].as_str().unwrap()))
            .collect();
        assert_eq!(children, team_channels, "children of space {}", t["name"]);
        for c in channels.iter().filter(|c| c["team_id"] == t["id"]) {
            let child = format!("!mm_{}:{SERVER}", c["id"].as_str().unwrap());
            let child_state = reader::current_state(&mut store, &child).unwrap();
            let parent = child_state.get(&("m.space.parent".to_owned(), room_id.clone()));
            assert!(parent.is_some(), "{} points to its space", c["name"]);
            private_children += (c["type"] == "P") as usize;
        }
        // Open teams are spaces anyone on the server may join; invite-only teams are not.
        let rules = &state[&("m.room.join_rules".to_owned(), String::new())];
        let pdus = reader::timeline_pdus(&mut store, &room_id).unwrap();
        let rule = &pdus
            .iter()
            .find(|p| p["event_id"] == rules.as_str())
            .unwrap()["content"]["join_rule"];
        let want = if t["type"] == "O" { "public" } else { "invite" };
        assert_eq!(rule, want, "join rule of space {}", t["name"]);
    }
    assert!(
        private_children >= 2,
        "private channels in spaces: {private_children}"
    );

    // Users: deactivated stay deactivated, the bot is marked, DMs are in m.direct.
    let archive = Archive::open(&imp.archive).unwrap();
    for u in f["users"].as_array().unwrap() {
        let user_id = uid(u["username"].as_str().unwrap());
        let rec: transition_matrix::archive::user::UserRecord =
            fsutil::read_json(&archive.user_path(&user_id)).unwrap();
        assert_eq!(
            rec.deactivated,
            u["deactivated"].as_bool().unwrap(),
            "{user_id}"
        );
        assert_eq!(
            rec.user_type.as_deref() == Some("bot"),
            u["bot"].as_bool().unwrap(),
            "{user_id}"
        );
        assert_eq!(
            rec.displayname.as_deref(),
            u["display_name"].as_str(),
            "{user_id}"
        );
    }
    for d in f["direct"].as_array().unwrap() {
        let room_id = format!("!mm_{}:{SERVER}", d["id"].as_str().unwrap());
        for m in d["members"].as_array().unwrap() {
            let rec: transition_matrix::archive::user::UserRecord =
                fsutil::read_json(&archive.user_path(&uid(m.as_str().unwrap()))).unwrap();
            let direct = rec.account_data.global["m.direct"].to_string();
            assert!(direct.contains(&room_id), "m.direct of {m} lists {room_id}");
        }
    }
}

/// An archived channel's power levels: no member may post, react, redact or change state
/// (Mattermost's archive is read-only for everyone, its channel admins included), and someone
/// outside the room keeps 100 so an admin can reopen it.
fn read_only_for_every_member(pl: &Value, members: &BTreeSet<String>, name: &Value) {
    let level = |u: &str| {
        pl["users"][u]
            .as_i64()
            .unwrap_or_else(|| pl["users_default"].as_i64().unwrap())
    };
    let mut needed: Vec<(String, i64)> = ["events_default", "state_default", "redact"]
        .iter()
        .map(|k| (k.to_string(), pl[k].as_i64().unwrap()))
        .collect();
    for (kind, l) in pl["events"].as_object().unwrap() {
        needed.push((kind.clone(), l.as_i64().unwrap()));
    }
    assert!(!members.is_empty());
    for m in members {
        for (what, l) in &needed {
            assert!(
                level(m) < *l,
                "{m} may still send {what} in archived {name}: {pl}"
            );
        }
    }
    let keepers: Vec<&String> = (pl["users"].as_object().unwrap().iter())
        .filter(|(u, l)| l.as_i64() == Some(100) && !members.contains(*u))
        .map(|(u, _)| u)
        .collect();
    assert!(
        !keepers.is_empty(),
        "nobody can reopen archived {name}: {pl}"
    );
}

/// Every event of every forged room passes the spec's authorization rules against the state
/// before it: the archived rooms' power levels too (the creator lowers their own level, the
/// keepers get 100), and each topic change by a member.
#[test]
fn every_forged_event_passes_the_auth_rules() {
    use transition_matrix::matrix::pdu;
    use transition_matrix::matrix::state::{StateEvent, StateTracker};
    let imp = postgres();
    let archive = Archive::open(&imp.archive).unwrap();
    let rules = pdu::rules_for("10").unwrap();
    let mut checked = 0;
    for room in archive.room_ids().unwrap() {
        let lines: Vec<_> = PduReader::open(&archive.room_dir(&room).join(EVENTS))
            .unwrap()
            .map(|l| l.unwrap())
            .collect();
        let by_event: HashMap<&str, StateEvent> = lines
            .iter()
            .map(|l| {
                (
                    l.event_id.as_str(),
                    StateEvent::from_pdu(&l.event_id, &l.pdu).unwrap(),
                )
            })
            .collect();
        let mut tracker = StateTracker::new(rules.clone());
        for l in &lines {
            let ev = by_event[l.event_id.as_str()].clone();
            let before = tracker.push(ev.clone()).unwrap();
            let fetch = |k: &ruma::events::StateEventType, s: &str| {
                before
                    .get(&(k.clone(), s.to_owned()))
                    .map(|id| by_event[id.as_str()].clone())
            };
            let by_id = |id: &ruma::EventId| by_event.get(id.as_str()).cloned();
            ruma::state_res::check_state_independent_auth_rules(&rules.authorization, &ev, by_id)
                .unwrap_or_else(|e| panic!("{room} {}: {e}", l.event_id));
            ruma::state_res::check_state_dependent_auth_rules(&rules.authorization, &ev, fetch)
                .unwrap_or_else(|e| panic!("{room} {}: {e}", l.event_id));
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked} events");
}

/// Membership history (ChannelMemberHistory): each recorded join and leave is a membership
/// event of that user at that time. The room's creator stays (later changes need someone with
/// power), so their history is not checked.
#[test]
fn joins_and_leaves_keep_their_recorded_times() {
    let imp = postgres();
    let mut store = SqliteStore::open(&imp.db).unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for c in fixture()["channels"].as_array().unwrap() {
        let room_id = format!("!mm_{}:{SERVER}", c["id"].as_str().unwrap());
        let pdus = reader::timeline_pdus(&mut store, &room_id).unwrap();
        let has = |user: &str, membership: &str, ts: &Value| {
            pdus.iter().any(|p| {
                p["type"] == "m.room.member"
                    && p["state_key"] == uid(user)
                    && p["content"]["membership"] == membership
                    && p["origin_server_ts"] == *ts
            })
        };
        let creator = c["creator"].as_str().unwrap();
        for h in c["history"].as_array().unwrap() {
            let user = h["user"].as_str().unwrap();
            if user == creator {
                continue;
            }
            for membership in ["join", "leave"] {
                let at = &h[membership];
                if at.is_null() {
                    continue; // still a member
                }
                assert!(
                    has(user, membership, at),
                    "{user}: {membership} {} at {at}",
                    c["name"]
                );
                *counts.entry(membership).or_insert(0) += 1;
            }
        }
    }
    let (joins, leaves) = (counts["join"], counts["leave"]);
    assert!(
        joins >= 20 && leaves >= 2,
        "{joins} joins, {leaves} leaves checked"
    );
}

#[test]
fn mysql_forges_the_same_events_as_postgres() {
    let pg = postgres();
    let my = import("mysql", &env("TM_MM_MYSQL_DSN"), false, None);
    let archive = Archive::open(&pg.archive).unwrap();
    let other = Archive::open(&my.archive).unwrap();
    let rooms = archive.room_ids().unwrap();
    assert_eq!(rooms, other.room_ids().unwrap());
    for r in rooms {
        assert_eq!(
            event_ids(&archive, &r),
            event_ids(&other, &r),
            "events of {r}"
        );
    }
}

#[test]
fn reading_a_post_at_a_time_forges_the_same_events() {
    // Deleted posts redacted: a message and its redaction come in one page, and the message
    // must still be stored pruned; reactions and edits wait for their time across pages. The
    // paged run also keeps only 4 post ids of a room in memory, the rest on disk: threads,
    // reactions, edits, deletions and pins must still find their targets.
    let (dsn, files) = (env("TM_MM_PG_URL"), env("TM_MM_FILES"));
    let forge = |page_posts: &str, ids_in_memory: &str| {
        let dir = tempfile::tempdir().unwrap();
        let (archive, key) = (dir.path().join("archive"), key_file(dir.path()));
        let mut args = pg_args(&["export", "all"], &dsn, &files, &archive);
        let key = key.to_str().unwrap();
        args.extend(["--deleted", "redact", "--page-posts", page_posts]);
        args.extend(["--ids-in-memory", ids_in_memory]);
        args.extend(["--signing-key", key]);
        tm_ok(&args);
        (dir, Archive::open(&archive).unwrap())
    };
    let (_whole_dir, whole) = forge("100000", "100000");
    let (_paged_dir, paged) = forge("1", "4");
    let rooms = whole.room_ids().unwrap();
    assert_eq!(rooms, paged.room_ids().unwrap());
    let mut events = 0;
    for r in rooms {
        let ids = event_ids(&whole, &r);
        events += ids.len();
        assert_eq!(ids, event_ids(&paged, &r), "events of {r}");
    }
    assert!(events > 100, "{events} events");
    // The mapping files (post id → event id) too, byte for byte, from memory or from disk.
    let mappings = |a: &Archive| -> BTreeMap<String, Vec<u8>> {
        (std::fs::read_dir(a.root().join("mapping")).unwrap())
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .map(|(name, p)| (name, std::fs::read(p).unwrap()))
            .collect()
    };
    let (m_whole, m_paged) = (mappings(&whole), mappings(&paged));
    assert!(m_whole.len() > 10, "{:?}", m_whole.keys());
    assert_eq!(m_whole, m_paged);
}

#[test]
fn a_second_import_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = import("postgres", &env("TM_MM_PG_URL"), true, Some(dir));
    assert!(!first.stdout.contains(" 0 events ("), "{}", first.stdout);
    assert!(
        first.stdout.contains("events (0 already there)"),
        "{}",
        first.stdout
    );
    // A resumed run with other choices would mix rooms forged two ways: refused, each named.
    let (dsn, files) = (env("TM_MM_PG_URL"), env("TM_MM_FILES"));
    let mut args = pg_args(&["import"], &dsn, &files, &first.archive);
    args.extend(["--deleted", "redact", "--room-version", "11"]);
    tm_refused(
        &args,
        &[
            "--deleted omit (this run: redact)",
            "--room-version 10 (this run: 11)",
        ],
    );
    let again = import("postgres", &env("TM_MM_PG_URL"), true, Some(first._dir));
    assert!(again.stdout.contains(" 0 events ("), "{}", again.stdout);
    assert!(again.stdout.contains("wrote 0 users"), "{}", again.stdout);
}

/// A database that already has a server (here one an earlier import made; after a Synapse
/// migration, Synapse's key): a new archive written into it without `--signing-key` signs with
/// the key that server publishes, and keeps it for the next run. Before, the import made a key
/// of its own and the writer refused the database.
#[test]
fn an_import_into_an_existing_database_signs_with_its_key() {
    let first = import("postgres", &env("TM_MM_PG_URL"), true, None);
    let (dsn, files) = (env("TM_MM_PG_URL"), env("TM_MM_FILES"));
    let fresh = first._dir.path().join("fresh-archive");
    let mut args = pg_args(&["import"], &dsn, &files, &fresh);
    args.extend([
        "--conduit-db",
        first.db.to_str().unwrap(),
        "--backend",
        "sqlite",
    ]);
    // Every user maps onto an account the database has: the import stops before forging,
    // naming them, until told these are the same people.
    tm_refused(
        &args,
        &[
            "map onto accounts the database already has",
            "--merge-existing-accounts",
            "ed25519:mm1", // the database's key, taken
        ],
    );
    assert!(!fresh.join("rooms").exists(), "nothing forged");
    args.push("--merge-existing-accounts");
    let out = common::tm(&args, &[]);
    let stdout = common::succeeded(&out, "import into an existing database");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kept = std::fs::read_to_string(fresh.join("keys/signing.key")).unwrap();
    let given = std::fs::read_to_string(first._dir.path().join("signing.key")).unwrap();
    assert_eq!(kept, given, "the database's key, kept in the new archive");
    assert!(stdout.contains(" 0 events ("), "the same events: {stdout}");
    verify(&first.db, &fresh);
    // Every user maps onto an account the database had before: each one is reported.
    let users: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(fresh.join("mapping/users.json")).unwrap())
            .unwrap();
    let report = std::fs::read_to_string(fresh.join("import-report.json")).unwrap();
    assert_eq!(
        report.matches("\"user-existing\"").count(),
        users.len(),
        "{report}"
    );
    let first_report = std::fs::read_to_string(first.archive.join("import-report.json")).unwrap();
    assert!(
        !first_report.contains("user-existing"),
        "a fresh database has no accounts"
    );
    assert!(
        stderr.contains(&format!(
            "{} Mattermost users map onto accounts the database already has",
            users.len()
        )),
        "{stderr}"
    );
    // That archive's rooms carry that key: another one for it is refused, not mixed in.
    let other = first._dir.path().join("other.key");
    let seed = transition_matrix::matrix::b64_encode(&[9u8; 32]);
    std::fs::write(&other, format!("ed25519 other {seed}\n")).unwrap();
    let mut args = pg_args(&["import"], &dsn, &files, &fresh);
    args.extend(["--signing-key", other.to_str().unwrap()]);
    tm_refused(&args, &["was forged with ed25519:mm1"]);
    let still = std::fs::read_to_string(fresh.join("keys/signing.key")).unwrap();
    assert_eq!(still, given, "the archive's key is kept");
}

/// Rooms of an archive by what identifies them across sources (alias, or who joined), each
/// with its messages as (sender, time, body), edits left out.
fn messages_by_room(archive: &Path) -> BTreeMap<String, Vec<(String, i64, String)>> {
    let archive = Archive::open(archive).unwrap();
    let mut out = BTreeMap::new();
    for r in archive.room_ids().unwrap() {
        let meta: transition_matrix::archive::room::RoomMeta =
            fsutil::read_json(&archive.room_dir(&r).join("room.json")).unwrap();
        let lines: Vec<_> = PduReader::open(&archive.room_dir(&r).join(EVENTS))
            .unwrap()
            .map(|l| l.unwrap())
            .collect();
        let get = |l: &transition_matrix::archive::room::PduLine, k: &str| {
            serde_json::to_value(&l.pdu[k]).unwrap()
        };
        let signature = meta.canonical_alias.clone().unwrap_or_else(|| {
            let joined: BTreeSet<String> = lines
                .iter()
                .filter(|l| get(l, "type") == "m.room.member")
                .map(|l| get(l, "state_key").as_str().unwrap().to_owned())
                .collect();
            format!("{:?} {:?}", meta.room_type, joined)
        });
        let msgs = lines
            .iter()
            .filter(|l| get(l, "type") == "m.room.message")
            .filter(|l| get(l, "content")["m.relates_to"]["rel_type"] != "m.replace")
            .map(|l| {
                (
                    get(l, "sender").as_str().unwrap().to_owned(),
                    get(l, "origin_server_ts").as_i64().unwrap(),
                    get(l, "content")["body"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect::<Vec<_>>();
        out.insert(signature, msgs);
    }
    out
}

#[test]
fn the_bulk_export_gives_the_same_rooms_and_messages() {
    let pg = postgres();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let key = key_file(dir.path());
    let zip = env("TM_MM_EXPORT");
    tm_ok(&[
        "mattermost",
        "import",
        "--export",
        &zip,
        "--server-name",
        SERVER,
        "--archive",
        archive.to_str().unwrap(),
        "--signing-key",
        key.to_str().unwrap(),
    ]);
    let from_db = messages_by_room(&pg.archive);
    let from_export = messages_by_room(&archive);
    let archived: BTreeSet<String> = fixture()["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["archived"].as_bool().unwrap())
        .map(|c| {
            format!(
                "#{}-{}:{SERVER}",
                c["team"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            )
        })
        .collect();
    // Replies whose root was never stored are not in an export (replies travel inside roots).
    let orphans: BTreeSet<(String, i64)> = fixture()["channels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["posts"].as_array().unwrap().iter())
        .filter(|p| {
            fixture()["anomalies"]["orphan_reply"]
                .as_array()
                .unwrap()
                .contains(&p["id"])
        })
        .map(|p| {
            (
                uid(p["user"].as_str().unwrap()),
                p["create_at"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(!orphans.is_empty());
    for (room, msgs) in &from_db {
        if archived.contains(room) {
            continue; // exported only with --include-archived-channels
        }
        let Some(theirs) = from_export.get(room) else {
            panic!("{room} is not in the export's import")
        };
        // The export has no edit history: its text is the last version, the database's the first.
        let strip = |m: &Vec<(String, i64, String)>| {
            m.iter()
                .map(|(s, t, _)| (s.clone(), *t))
                .collect::<Vec<_>>()
        };
        let ours: Vec<(String, i64)> = strip(msgs)
            .into_iter()
            .filter(|m| !orphans.contains(m))
            .collect();
        assert_eq!(strip(theirs), ours, "messages of {room}");
    }
    assert!(from_export.len() >= from_db.len() - archived.len());
}

/// A bulk export whose import.jsonl has a byte that is not UTF-8 (a line edited by hand, a
/// tool's bug): each bad byte becomes U+FFFD and the report says which line; the rest imports.
#[test]
fn a_line_that_is_not_utf8_costs_a_character_not_the_import() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.zip");
    let mut src = zip::ZipArchive::new(std::fs::File::open(env("TM_MM_EXPORT")).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(&broken).unwrap());
    for i in 0..src.len() {
        let mut entry = src.by_index(i).unwrap();
        let name = entry.name().to_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if name == "import.jsonl" {
            let (good, bad) = (
                b"*is heading to lunch*".as_slice(),
                b"*is heading \xff\xfe to lunch*",
            );
            let at = bytes
                .windows(good.len())
                .position(|w| w == good)
                .expect("the fixture's post");
            bytes.splice(at..at + good.len(), bad.iter().copied());
        }
        if entry.is_dir() {
            out.add_directory(name, zip::write::SimpleFileOptions::default())
                .unwrap();
        } else {
            out.start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            out.write_all(&bytes).unwrap();
        }
    }
    out.finish().unwrap();
    let archive = dir.path().join("archive");
    tm_ok(&[
        "mattermost",
        "import",
        "--export",
        broken.to_str().unwrap(),
        "--server-name",
        SERVER,
        "--archive",
        archive.to_str().unwrap(),
    ]);
    let bodies: Vec<String> = (messages_by_room(&archive).into_values().flatten())
        .map(|(_, _, body)| body)
        .collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("heading \u{FFFD}\u{FFFD} to lunch")),
        "the post kept, the bad bytes replaced: {bodies:?}"
    );
    let report = std::fs::read_to_string(archive.join("import-report.json")).unwrap();
    assert_eq!(report.matches("invalid-utf8").count(), 1, "{report}");
    assert!(report.contains("import.jsonl:"), "{report}");
}

fn ssh_args<'a>(known_hosts: &'a str, key: &'a str, target: &'a str) -> Vec<&'a str> {
    vec![
        "--ssh",
        target,
        "--ssh-key",
        key,
        "--ssh-known-hosts",
        known_hosts,
    ]
}

#[test]
fn over_ssh_the_import_is_the_same_and_a_changed_host_key_stops_it() {
    let pg = postgres();
    let (target, key) = (env("TM_MM_SSH_TARGET"), env("TM_MM_SSH_KEY"));
    let (known, wrong, config) = (
        env("TM_MM_SSH_KNOWN_HOSTS"),
        env("TM_MM_SSH_KNOWN_HOSTS_WRONG"),
        env("TM_MM_CONFIG"),
    );
    let dir = tempfile::tempdir().unwrap();
    let signing = key_file(dir.path());
    let run = |known_hosts: &str, archive: &Path| {
        let mut args = vec![
            "mattermost",
            "import",
            "--mattermost-config",
            &config,
            "--server-name",
            SERVER,
            "--archive",
            archive.to_str().unwrap(),
            "--signing-key",
            signing.to_str().unwrap(),
        ];
        args.extend(ssh_args(known_hosts, &key, &target));
        common::tm(&args, &[])
    };

    // config.json read over SSH, the database through the forward, files copied: same events.
    let archive = dir.path().join("ssh-archive");
    let out = run(&known, &archive);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (a, b) = (
        Archive::open(&pg.archive).unwrap(),
        Archive::open(&archive).unwrap(),
    );
    assert_eq!(a.room_ids().unwrap(), b.room_ids().unwrap());
    for r in a.room_ids().unwrap() {
        assert_eq!(
            event_ids(&a, &r),
            event_ids(&b, &r),
            "events of {r} over SSH"
        );
    }
    let media = |x: &Path| std::fs::read_dir(x.join("media/meta")).unwrap().count();
    assert_eq!(media(&pg.archive), media(&archive), "files copied over SSH");

    // A known_hosts with another key for the host: refused before logging in, nothing written.
    let refused = dir.path().join("refused");
    let out = run(&wrong, &refused);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("HOST KEY MISMATCH"), "{stderr}");
    assert!(!refused.join("manifest.json").exists());
}

#[test]
fn bad_sources_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    let base = [
        "mattermost",
        "import",
        "--server-name",
        SERVER,
        "--archive",
        archive.to_str().unwrap(),
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--mattermost-config", "/nonexistent/config.json"],
            "cannot read Mattermost's config /nonexistent/config.json",
        ),
        (
            vec![
                "--data-source",
                "postgres://mmuser:wrong@127.0.0.1:15432/mattermost?sslmode=disable",
            ],
            "cannot connect",
        ),
        (vec!["--data-source", "not a dsn"], "DataSource"),
        // The go-sql-driver form is MySQL's without --driver.
        (
            vec!["--data-source", "mmuser:wrong@tcp(127.0.0.1:1)/mattermost"],
            "Mysql database",
        ),
        (
            vec![
                "--driver",
                "mysql",
                "--data-source",
                "mmuser:wrong@tcp(127.0.0.1:13306)/mattermost",
            ],
            "cannot connect",
        ),
    ];
    let garbled = dir.path().join("config.json");
    std::fs::write(&garbled, "{ not json").unwrap();
    let garbled = garbled.to_str().unwrap().to_owned();
    let mut cases = cases;
    cases.push((vec!["--mattermost-config", &garbled], "config.json"));
    let zip = dir.path().join("x.zip");
    std::fs::write(&zip, b"PK\x03\x04 truncated").unwrap();
    let zip = zip.to_str().unwrap().to_owned();
    cases.push((vec!["--export", &zip], "bulk export"));
    for (extra, want) in cases {
        let mut args = base.to_vec();
        args.extend(extra.iter());
        let out = common::tm(&args, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(
            stderr.contains(want),
            "{extra:?}: expected {want:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !stderr.contains("wrong"),
            "the password must not be printed: {stderr}"
        );
        assert!(!archive.join("manifest.json").exists());
    }

    // A database that lists files, and no store to take them from: the import stops before it
    // forges anything, unless told to leave the files out, and then it reports each one.
    let dsn = env("TM_MM_PG_URL");
    let mut args = base.to_vec();
    args.extend(["--data-source", dsn.as_str()]);
    tm_refused(&args, &["no file store is known", "--no-files"]);
    assert!(!archive.join("manifest.json").exists());
    assert!(!archive.join("rooms").exists(), "nothing forged");
    args.push("--no-files");
    tm_ok(&args);
    let report = std::fs::read_to_string(archive.join("import-report.json")).unwrap();
    let left_out = report.matches("is not in the file store").count();
    // At least the files of the live posts the full import checks (4), the offsite photo one.
    assert!(
        left_out >= 4,
        "{left_out} files reported left out: {report}"
    );
    assert!(report.contains("offsite.png"), "{report}");
}

#[test]
fn deleted_posts_can_be_imported_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, db) = (dir.path().join("archive"), dir.path().join("conduit"));
    let (dsn, files) = (env("TM_MM_PG_URL"), env("TM_MM_FILES"));
    let mut args = pg_args(&["import"], &dsn, &files, &archive);
    args.extend(["--conduit-db", db.to_str().unwrap(), "--deleted", "redact"]);
    tm_ok(&args);
    verify(&db, &archive);

    // One redaction per deleted post (a deleted root takes its replies along), each target
    // stored pruned, as Conduit keeps redacted events.
    let mut store = SqliteStore::open(&db).unwrap();
    let (mut redactions, mut deleted) = (0, 0);
    for c in fixture()["channels"].as_array().unwrap() {
        deleted += c["counts"]["deleted"].as_u64().unwrap();
        let room_id = format!("!mm_{}:{SERVER}", c["id"].as_str().unwrap());
        let pdus = reader::timeline_pdus(&mut store, &room_id).unwrap();
        for r in pdus.iter().filter(|p| p["type"] == "m.room.redaction") {
            redactions += 1;
            let target = r["redacts"]
                .as_str()
                .or(r["content"]["redacts"].as_str())
                .unwrap();
            let ev = pdus
                .iter()
                .find(|p| p["event_id"] == target)
                .expect("the redacted event is in the room");
            assert!(
                ev["content"].get("body").is_none(),
                "{target} is stored pruned: {}",
                ev["content"]
            );
        }
    }
    assert_eq!(redactions, deleted);
}

#[test]
fn test_mattermost_reports_each_step() {
    let (config, files) = (env("TM_MM_CONFIG"), env("TM_MM_FILES"));
    let stdout = tm_ok(&[
        "test",
        "mattermost",
        "--mattermost-config",
        &config,
        "--files",
        &files,
    ]);
    let totals = &fixture()["totals"];
    for want in [
        "✓ config.json".to_owned(),
        "✓ connected to Postgres".to_owned(),
        format!(
            "✓ {} users, {} teams, {} channels, {} posts",
            totals["users"], totals["teams"], totals["channels"], totals["posts"]
        ),
        "✓ file store".to_owned(),
    ] {
        assert!(stdout.contains(&want), "expected {want:?} in:\n{stdout}");
    }
    let wrong = env("TM_MM_PG_URL").replacen(":mostest@", ":wrong@", 1);
    assert!(wrong.contains(":wrong@"), "{wrong}");
    let out = common::tm(&["test", "mattermost", "--data-source", &wrong], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("✗") && stdout.contains("password authentication failed"),
        "{stdout}"
    );
}

/// The install of a Mattermost whose config.json still holds the default DataSource (as
/// Docker and packaged installs leave it) and, with `amazons3`, keeps files in S3.
fn install_with_default_dsn(dir: &Path, s3: bool) -> PathBuf {
    let install = dir.join("mattermost");
    std::fs::create_dir_all(install.join("config")).unwrap();
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(env("TM_MM_CONFIG")).unwrap()).unwrap();
    config["SqlSettings"]["DataSource"] =
        "postgres://mmuser:mostest@localhost/mattermost_test?sslmode=disable".into();
    if s3 {
        config["FileSettings"]["DriverName"] = "amazons3".into();
        config["FileSettings"]["AmazonS3Bucket"] = "mm-files".into();
    }
    let path = install.join("config/config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    install
}

/// A process named `mattermost` running from `install` with the real DataSource in its
/// environment, as a server started by Docker or systemd has it; killed on drop.
struct FakeServer(std::process::Child);

impl FakeServer {
    fn start(install: &Path) -> Self {
        std::fs::create_dir_all(install.join("bin")).unwrap();
        let exe = install.join("bin/mattermost");
        std::fs::copy("/bin/sleep", &exe).unwrap();
        // `--`: a first argument that is not an option would make it a `mattermost` command
        // (`mattermost export …`), not the server.
        let child = std::process::Command::new(&exe)
            .args(["--", "120"])
            .current_dir(install)
            .env("MM_SQLSETTINGS_DATASOURCE", env("TM_MM_PG_URL"))
            .spawn()
            .unwrap();
        FakeServer(child)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The DataSource in the running server's environment wins over config.json's, locally and
/// over SSH; with no server of that install running, config.json's (wrong) one is used and
/// the connection fails.
#[test]
fn the_running_servers_mm_settings_win_over_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let install = install_with_default_dsn(dir.path(), false);
    let config = install.join("config/config.json");
    let config = config.to_str().unwrap();
    let (target, key, known) = (
        env("TM_MM_SSH_TARGET"),
        env("TM_MM_SSH_KEY"),
        env("TM_MM_SSH_KNOWN_HOSTS"),
    );
    let run = |ssh: bool| {
        let mut args = vec!["test", "mattermost", "--mattermost-config", config];
        if ssh {
            args.extend(ssh_args(&known, &key, &target));
        }
        let out = common::tm(&args, &[]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = run(false);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("mattermost_test"), "{stdout}");
    assert!(stdout.contains("no Mattermost server"), "{stdout}");

    let server = FakeServer::start(&install);
    let pid = format!("(pid {})", server.0.id());
    for ssh in [false, true] {
        let (code, stdout) = run(ssh);
        assert_eq!(code, Some(0), "ssh {ssh}: {stdout}");
        assert!(
            stdout.contains(&pid) && stdout.contains("MM_SQLSETTINGS_DATASOURCE"),
            "ssh {ssh}: {stdout}"
        );
        assert!(stdout.contains("✓ connected to Postgres"), "{stdout}");
        assert!(!stdout.contains("mostest"), "no password: {stdout}");
    }
}

/// Files in S3: the import asks for a copy of the bucket instead of reading a local directory
/// that is not the store; --files takes the copy.
#[test]
fn a_file_store_in_s3_asks_for_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let install = install_with_default_dsn(dir.path(), true);
    let config = install.join("config/config.json");
    let archive = dir.path().join("archive");
    let _server = FakeServer::start(&install);
    let args = [
        "mattermost",
        "import",
        "--mattermost-config",
        config.to_str().unwrap(),
        "--server-name",
        SERVER,
        "--archive",
        archive.to_str().unwrap(),
    ];
    tm_refused(&args, &["s3://mm-files/", "--files"]);
    assert!(!archive.join("manifest.json").exists());
    let files = env("TM_MM_FILES");
    let out = common::tm(
        &[
            "test",
            "mattermost",
            "--mattermost-config",
            config.to_str().unwrap(),
            "--files",
            &files,
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("✓ file store"), "{stdout}");
}

/// A config kept in the database (`MM_CONFIG=postgres://…` or `mysql://…`): read from its
/// active `Configurations` row, for either database.
#[test]
fn a_config_kept_in_the_database_is_read_from_it() {
    let totals = &fixture()["totals"];
    let counts = format!(
        "✓ {} users, {} teams, {} channels, {} posts",
        totals["users"], totals["teams"], totals["channels"], totals["posts"]
    );
    let mysql = format!("mysql://{}", env("TM_MM_MYSQL_DSN"));
    for (dsn, driver) in [(env("TM_MM_PG_URL"), "Postgres"), (mysql, "Mysql")] {
        let stdout = tm_ok(&["test", "mattermost", "--mattermost-config", &dsn]);
        for want in [
            format!("✓ config from its database: {driver} database"),
            format!("✓ connected to {driver}"),
            counts.clone(),
            "✓ file store".to_owned(),
        ] {
            assert!(stdout.contains(&want), "expected {want:?} in:\n{stdout}");
        }
    }
}

/// `mattermost export assets|memberships|messages`: each step needs the ones before it, writes
/// its mapping files and checkpoint line, and the archive they make is the one `import` makes,
/// event for event; `status` lists the steps; `export all` again forges nothing.
#[test]
fn export_steps_make_the_same_archive_as_the_import() {
    let pg = postgres();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let key = key_file(dir.path());
    let (dsn, files) = (env("TM_MM_PG_URL"), env("TM_MM_FILES"));
    let step = |name: &str| {
        let mut args = pg_args(&["export", name], &dsn, &files, &archive);
        args.extend(["--signing-key", key.to_str().unwrap()]);
        common::tm(&args, &[])
    };
    // Refused before it forged anything: its choice (--deleted redact) settles nothing, and the
    // steps below (with the default, omit) go on.
    let mut args = pg_args(&["export", "messages"], &dsn, &files, &archive);
    args.extend([
        "--signing-key",
        key.to_str().unwrap(),
        "--deleted",
        "redact",
    ]);
    let early = common::tm(&args, &[]);
    assert!(!early.status.success());
    let err = String::from_utf8_lossy(&early.stderr);
    assert!(
        err.contains("needs `mattermost export assets` first"),
        "{err}"
    );
    common::succeeded(&step("assets"), "export assets");
    let users = mapping(&archive, "users");
    for u in fixture()["users"].as_array().unwrap() {
        let id = u["id"].as_str().unwrap();
        assert_eq!(
            users.get(id),
            Some(&uid(u["username"].as_str().unwrap())),
            "users.json maps {id}"
        );
    }
    let rooms = mapping(&archive, "rooms");
    let a = Archive::open(&pg.archive).unwrap();
    for room_id in a.room_ids().unwrap() {
        assert!(
            rooms.values().any(|r| *r == room_id),
            "rooms.json has {room_id}"
        );
    }
    assert!(
        step("messages").status.code() == Some(1),
        "memberships first"
    );
    common::succeeded(&step("memberships"), "export memberships");
    let members: Value = serde_json::from_str(
        &std::fs::read_to_string(archive.join("mapping/memberships.json")).unwrap(),
    )
    .unwrap();
    assert!(
        members
            .as_object()
            .unwrap()
            .values()
            .any(|m| !m["now"].as_array().unwrap().is_empty()),
        "{members}"
    );
    let out = common::succeeded(&step("messages"), "export messages");
    assert!(out.contains("archive complete"), "{out}");
    let status = tm_ok(&["status", "--archive", archive.to_str().unwrap()]);
    assert!(
        status.contains("(assets, memberships, messages)"),
        "{status}"
    );
    let b = Archive::open(&archive).unwrap();
    assert_eq!(a.room_ids().unwrap(), b.room_ids().unwrap());
    for r in a.room_ids().unwrap() {
        assert_eq!(event_ids(&a, &r), event_ids(&b, &r), "events of {r}");
    }
    let again = common::succeeded(&step("all"), "export all again");
    assert!(again.contains(" 0 rooms forged"), "{again}");
    assert!(again.contains(", 0 events,"), "{again}");
    // The exported archive written by `conduit write`: it speaks of Mattermost, not Synapse.
    let db = dir.path().join("conduit");
    let out = tm_ok(&[
        "conduit",
        "write",
        "--archive",
        archive.to_str().unwrap(),
        "--database",
        db.to_str().unwrap(),
    ]);
    assert!(
        out.contains("Passwords: Mattermost's bcrypt hashes") && !out.contains("Synapse"),
        "{out}"
    );
    verify(&db, &archive);
}

/// The `--initial-passwords` file: `<user id><TAB><password>` lines (comments skipped).
fn initial_passwords(path: &Path) -> BTreeMap<String, String> {
    (std::fs::read_to_string(path).unwrap().lines())
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (u, p) = l.split_once('\t').unwrap();
            (u.to_owned(), p.to_owned())
        })
        .collect()
}

/// Whether `password` logs in against `hash` as Conduit checks it (argon2's PHC verify).
fn argon2_accepts(hash: &str, password: &str) -> bool {
    use argon2::{Argon2, PasswordHash, PasswordVerifier};
    let parsed = PasswordHash::new(hash).unwrap_or_else(|e| panic!("{hash}: {e}"));
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A bulk export carries no passwords: with `--initial-passwords FILE` every active person gets
/// one (FILE 0600, never printed), stored as an argon2 hash Conduit checks, and a re-run keeps
/// them. Before, every account of such an import was left unable to log in.
#[test]
fn an_export_import_gives_every_account_an_initial_password_that_logs_in() {
    use transition_matrix::conduit::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let (archive, db) = (dir.path().join("archive"), dir.path().join("conduit"));
    let file = dir.path().join("initial-passwords.tsv");
    let key = key_file(dir.path());
    let zip = env("TM_MM_EXPORT");
    let args = [
        "mattermost",
        "import",
        "--export",
        zip.as_str(),
        "--server-name",
        SERVER,
        "--archive",
        archive.to_str().unwrap(),
        "--signing-key",
        key.to_str().unwrap(),
        "--conduit-db",
        db.to_str().unwrap(),
        "--initial-passwords",
        file.to_str().unwrap(),
    ];
    let out = common::tm(&args, &[]);
    let stdout = common::succeeded(&out, "export import with initial passwords");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the passwords file is private");
    }
    let passwords = initial_passwords(&file);
    let people: BTreeSet<String> = (fixture()["users"].as_array().unwrap().iter())
        .filter(|u| !u["deactivated"].as_bool().unwrap() && !u["bot"].as_bool().unwrap())
        .map(|u| uid(u["username"].as_str().unwrap()))
        .collect();
    let listed: BTreeSet<String> = passwords.keys().cloned().collect();
    assert_eq!(
        listed, people,
        "every active person, no bot, no deactivated account"
    );
    assert!(
        stderr.contains(&format!("{} new", people.len())),
        "{stderr}"
    );
    let mut store = SqliteStore::open(&db).unwrap();
    for (user, password) in &passwords {
        assert!(password.len() >= 20, "{user}");
        assert!(
            !stdout.contains(password.as_str()) && !stderr.contains(password.as_str()),
            "a password was printed"
        );
        let hash = store.get("userid_password", user.as_bytes()).unwrap();
        let hash = String::from_utf8(hash.expect("an account")).unwrap();
        assert!(argon2_accepts(&hash, password), "{user} logs in with it");
        assert!(!argon2_accepts(&hash, "wrong"), "{user}");
    }
    drop(store);
    // A re-run keeps every password: the file is read back, nothing regenerated.
    let before = std::fs::read(&file).unwrap();
    let again = common::tm(&args, &[]);
    let again_err = String::from_utf8_lossy(&again.stderr).into_owned();
    common::succeeded(&again, "the same import again");
    assert_eq!(std::fs::read(&file).unwrap(), before, "the same passwords");
    assert!(again_err.contains(&format!("0 new, {} from an earlier run", people.len())));
    let a = Archive::open(&archive).unwrap();
    for (user, password) in &passwords {
        let rec: transition_matrix::archive::user::UserRecord =
            fsutil::read_json(&a.user_path(user)).unwrap();
        let hash = rec.secrets.password_hash.unwrap();
        assert!(argon2_accepts(&hash, password), "{user} after the re-run");
    }

    // From the database only the single sign-on account lacks a password; the others keep
    // their Mattermost (bcrypt) hashes.
    let (dsn, files) = (env("TM_MM_PG_URL"), env("TM_MM_FILES"));
    let db_archive = dir.path().join("db-archive");
    let db_file = dir.path().join("db-passwords.tsv");
    let mut args = pg_args(&["import"], &dsn, &files, &db_archive);
    args.extend(["--initial-passwords", db_file.to_str().unwrap()]);
    tm_ok(&args);
    let sso: BTreeSet<String> = (fixture()["users"].as_array().unwrap().iter())
        .filter(|u| u["auth_service"] != "" && !u["deactivated"].as_bool().unwrap())
        .map(|u| uid(u["username"].as_str().unwrap()))
        .collect();
    assert!(!sso.is_empty());
    let listed: BTreeSet<String> = initial_passwords(&db_file).into_keys().collect();
    assert_eq!(listed, sso);
    let a = Archive::open(&db_archive).unwrap();
    for u in people.difference(&sso) {
        let rec: transition_matrix::archive::user::UserRecord =
            fsutil::read_json(&a.user_path(u)).unwrap();
        let hash = rec.secrets.password_hash.unwrap();
        assert!(hash.starts_with("$2"), "{u} keeps its bcrypt hash");
    }
}

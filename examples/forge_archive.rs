//! Forges a synthetic but valid archive for `scripts/bench`: the Conduit writer needs a
//! million-event input with one huge room to be measured, and no test Synapse holds one (the
//! testnet's largest room has ~5,000 events, and populating a Synapse through its APIs at that
//! scale would take hours). Every PDU is hashed and signed with the archive's own key and has
//! its real event id, auth events follow the spec, and the huge room forks every ~1,000 events
//! (a topic change on one branch) so the writer's state resolution runs. Same arguments, same
//! archive, byte for byte: the signing key's seed is derived from a fixed string.
//!
//! Usage: forge_archive OUT [--events 1000000] [--huge 500000] [--room-size 200] [--users 300]
//!
//! OUT must not exist or be empty. `manifest.json` is written last: an archive without one is
//! incomplete. Prints `{"events", "rooms", "users", "seconds"}`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ruma::room_version_rules::RoomVersionRules;
use ruma::signatures::{hash_and_sign_event, Ed25519KeyPair};
use serde_json::{json, Value};
use sha2::Digest;

use transition_matrix::archive::manifest::{Counts, Source};
use transition_matrix::archive::room::{self, PduLine, RoomMeta, StateEntry};
use transition_matrix::archive::user::UserRecord;
use transition_matrix::archive::{fsutil, Archive, Manifest, FORMAT_VERSION};
use transition_matrix::matrix::{b64_encode, keys::ServerKey, pdu};

const SERVER: &str = "bench.test";
const ROOM_VERSION: &str = "10";
/// Events held in memory per room before they go to the file (as one more zstd frame).
const CHUNK: usize = 10_000;
/// The huge room forks once per this many events.
const FORK_EVERY: u64 = 1_000;
const BASE_TS: i64 = 1_700_000_000_000;
const LOREM: &str = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor";

/// One room to forge: who creates it, who joins, how many timeline events.
struct RoomPlan {
    room_id: String,
    creator: String,
    members: Vec<String>,
    events: u64,
    forks: bool,
}

fn main() -> Result<()> {
    let started = Instant::now();
    let (out, total, huge, room_size, n_users) = parse_args()?;
    if out.exists() && std::fs::read_dir(&out)?.next().is_some() {
        bail!("{} exists and is not empty", out.display());
    }
    let archive = Archive::create(&out)?;
    let user = |i: usize| format!("@user{i:04}:{SERVER}");

    // The signing key, in Synapse's file format, from a fixed seed.
    let seed = sha2::Sha256::digest(b"transition-matrix forge_archive bench.test signing key");
    let key_line = format!("ed25519 a_bench {}\n", b64_encode(&seed));
    let key_path = archive.keys_dir().join("signing.key");
    fsutil::write_atomic(&key_path, key_line.as_bytes(), true)?;
    let key = ServerKey::read_synapse(&key_path)?.remove(0);

    // The rooms: the huge one first (it takes longest), then small ones of `room_size` events.
    let header = 5 + 3; // create, creator join, power levels, join rules, visibility; 3 joins
    if room_size <= header || huge < 30 || huge > total {
        bail!("need --room-size > {header}, --huge >= 30 and --huge <= --events");
    }
    let mut plans = vec![RoomPlan {
        room_id: format!("!huge:{SERVER}"),
        creator: user(0),
        members: (1..25).map(|i| user(i % n_users)).collect(),
        events: huge,
        forks: true,
    }];
    for k in 0..(total - huge) / room_size {
        let u = k as usize;
        plans.push(RoomPlan {
            room_id: format!("!small{k:06}:{SERVER}"),
            creator: user(u % n_users),
            members: (1..4).map(|j| user((u + j) % n_users)).collect(),
            events: room_size,
            forks: false,
        });
    }

    // Forge the rooms on every core.
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let keypair = key.keypair();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(plan) = plans.get(i) else { break };
                    if let Err(e) = forge_room(&archive, &keypair, plan) {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{}: {e:#}", plan.room_id));
                        next.store(plans.len(), Ordering::Relaxed); // stop the others
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = failures.into_inner().unwrap().first() {
        bail!("forging {e}");
    }

    // Users: minimal records with the rooms they joined.
    let mut joined: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &plans {
        for m in std::iter::once(&p.creator).chain(&p.members) {
            joined.entry(m.clone()).or_default().push(p.room_id.clone());
        }
    }
    for i in 0..n_users {
        let user_id = user(i);
        let record = UserRecord {
            admin: i == 0,
            displayname: Some(format!("User {i}")),
            creation_ts: Some(BASE_TS - 86_400_000),
            joined_rooms: joined.remove(&user_id).unwrap_or_default(),
            user_id,
            ..Default::default()
        };
        fsutil::write_json(&archive.user_path(&record.user_id), &record, true)?;
    }

    // report.json, then manifest.json (checksums of everything else) last.
    fsutil::write_json(&archive.report_path(), &json!({"errors": []}), false)?;
    let mut paths = Vec::new();
    list_files(archive.root(), &mut paths)?;
    let mut files = BTreeMap::new();
    for path in paths {
        files.insert(archive.relative(&path), fsutil::sha256_file(&path)?);
    }
    let events: u64 = plans.iter().map(|p| p.events).sum();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        server_name: SERVER.into(),
        source: Source {
            kind: "forge_archive".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        counts: Counts {
            users: n_users as u64,
            rooms: plans.len() as u64,
            events,
            ..Default::default()
        },
        secret_files: files
            .keys()
            .filter(|f| f.starts_with("keys/") || f.starts_with("users/"))
            .cloned()
            .collect(),
        files,
        errors: 0,
    };
    fsutil::write_json(&archive.manifest_path(), &manifest, false)?;
    println!(
        "{}",
        json!({"events": events, "rooms": plans.len(), "users": n_users,
            "seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}

/// Writes one room: `events.jsonl.zst`, an empty `outliers.jsonl.zst`, `room.json`.
fn forge_room(archive: &Archive, keypair: &Ed25519KeyPair, plan: &RoomPlan) -> Result<()> {
    let dir = archive.room_dir(&plan.room_id);
    fsutil::create_dir_all(&dir)?;
    let mut r = RoomWriter {
        keypair,
        rules: pdu::rules_for(ROOM_VERSION).context("room version")?,
        room_id: &plan.room_id,
        events_path: dir.join(room::EVENTS),
        part_path: dir.join("events.part"),
        chunk: Vec::with_capacity(CHUNK),
        frames: 0,
        written: 0,
        ts: BASE_TS,
        head: Vec::new(),
        depth: 0,
        state: BTreeMap::new(),
    };
    let creator = plan.creator.as_str();
    let create = json!({"creator": creator, "room_version": ROOM_VERSION});
    r.append("m.room.create", Some(""), creator, create)?;
    let join = json!({"membership": "join"});
    r.append("m.room.member", Some(creator), creator, join.clone())?;
    let power = json!({"users": {creator: 100}, "users_default": 0, "events_default": 0,
        "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0});
    r.append("m.room.power_levels", Some(""), creator, power)?;
    let rule = json!({"join_rule": "public"});
    r.append("m.room.join_rules", Some(""), creator, rule)?;
    let vis = json!({"history_visibility": "shared"});
    r.append("m.room.history_visibility", Some(""), creator, vis)?;
    for m in &plan.members {
        r.append("m.room.member", Some(m), m, join.clone())?;
    }
    let senders: Vec<&str> = std::iter::once(creator)
        .chain(plan.members.iter().map(String::as_str))
        .collect();
    while r.written < plan.events {
        let n = r.written;
        let sender = senders[n as usize % senders.len()];
        if plan.forks && n % FORK_EVERY == FORK_EVERY / 2 && plan.events - n >= 3 {
            // Two events on the same prev (a topic change and a message); the next one merges.
            let topic = json!({"topic": format!("topic {n}")});
            r.fork([
                ("m.room.topic", Some(""), creator, topic),
                ("m.room.message", None, sender, message(n)),
            ])?;
        } else {
            r.append("m.room.message", None, sender, message(n))?;
        }
    }
    r.flush(true)?;
    room::write_pdus(&dir.join(room::OUTLIERS), std::iter::empty::<&PduLine>())?;
    let meta = RoomMeta {
        room_id: plan.room_id.clone(),
        version: ROOM_VERSION.into(),
        creator: Some(plan.creator.clone()),
        joined_local_members: senders.len() as u64,
        current_state: r
            .state
            .iter()
            .map(|((kind, state_key), event_id)| StateEntry {
                kind: kind.clone(),
                state_key: state_key.clone(),
                event_id: event_id.clone(),
            })
            .collect(),
        current_state_source: "computed".into(),
        forward_extremities: r.head.clone(),
        events: r.written,
        outliers: 0,
        history_source: "forge_archive".into(),
        order_source: "forge_archive".into(),
        ..Default::default()
    };
    fsutil::write_json(&dir.join(room::META), &meta, false)?;
    Ok(())
}

fn message(n: u64) -> Value {
    let words: Vec<&str> = LOREM
        .split(' ')
        .cycle()
        .skip(n as usize % 12)
        .take(8)
        .collect();
    json!({"msgtype": "m.text", "body": format!("message {n}: {}", words.join(" "))})
}

/// Signs events and streams them to `events.jsonl.zst`.
struct RoomWriter<'a> {
    keypair: &'a Ed25519KeyPair,
    rules: RoomVersionRules,
    room_id: &'a str,
    events_path: PathBuf,
    part_path: PathBuf,
    chunk: Vec<PduLine>,
    frames: u64,
    written: u64,
    ts: i64,
    /// The forward extremities and their depth.
    head: Vec<String>,
    depth: u64,
    /// The current state: state events applied in order. Right for these rooms: at a fork only
    /// one branch changes state (the topic), and state resolution keeps the newer topic.
    state: BTreeMap<(String, String), String>,
}

/// An event to forge: type, state key, sender, content.
type Event<'a> = (&'a str, Option<&'a str>, &'a str, Value);

impl RoomWriter<'_> {
    /// Appends one event after the current extremities (merging them if there are several).
    fn append(
        &mut self,
        kind: &str,
        state_key: Option<&str>,
        sender: &str,
        content: Value,
    ) -> Result<()> {
        let prev = std::mem::take(&mut self.head);
        self.depth += 1;
        self.head = vec![self.emit(kind, state_key, sender, content, prev, self.depth)?];
        Ok(())
    }

    /// Appends events that all have the current extremities as prev events: a fork.
    fn fork<const N: usize>(&mut self, events: [Event; N]) -> Result<()> {
        let prev = std::mem::take(&mut self.head);
        self.depth += 1;
        for (kind, state_key, sender, content) in events {
            let id = self.emit(kind, state_key, sender, content, prev.clone(), self.depth)?;
            self.head.push(id);
        }
        Ok(())
    }

    /// Builds, hashes and signs one PDU with spec auth events; returns its event id.
    fn emit(
        &mut self,
        kind: &str,
        state_key: Option<&str>,
        sender: &str,
        content: Value,
        prev_events: Vec<String>,
        depth: u64,
    ) -> Result<String> {
        let get = |t: &str, k: &str| self.state.get(&(t.to_owned(), k.to_owned())).cloned();
        let mut auth = Vec::new();
        if kind != "m.room.create" {
            auth.extend(get("m.room.create", ""));
            auth.extend(get("m.room.power_levels", ""));
            auth.extend(get("m.room.member", sender));
            if kind == "m.room.member" {
                let target = state_key.unwrap_or_default();
                if target != sender {
                    auth.extend(get("m.room.member", target));
                }
                if content["membership"] == "join" || content["membership"] == "invite" {
                    auth.extend(get("m.room.join_rules", ""));
                }
            }
        }
        self.ts += 1_000;
        let mut event = json!({
            "room_id": self.room_id, "sender": sender, "type": kind, "content": content,
            "origin_server_ts": self.ts, "depth": depth,
            "prev_events": prev_events, "auth_events": auth,
        });
        if let Some(k) = state_key {
            event["state_key"] = k.into();
        }
        let mut event = pdu::from_value(event)?;
        hash_and_sign_event(SERVER, self.keypair, &mut event, &self.rules.redaction)?;
        let event_id = pdu::event_id(&event, &self.rules)?;
        if let Some(k) = state_key {
            self.state
                .insert((kind.to_owned(), k.to_owned()), event_id.clone());
        }
        self.chunk.push(PduLine::new(event_id.clone(), event));
        self.written += 1;
        if self.chunk.len() >= CHUNK {
            self.flush(false)?;
        }
        Ok(event_id)
    }

    /// Writes the held events. A room that fits in one chunk is one `write_pdus` call; a bigger
    /// one is several, each appended to the file as one more zstd frame (a zstd stream may hold
    /// any number of frames, and the archive's reader reads through them), so memory stays at
    /// one chunk however big the room.
    fn flush(&mut self, last: bool) -> Result<()> {
        if last && self.frames == 0 {
            room::write_pdus(&self.events_path, &self.chunk)?;
            return Ok(());
        }
        if !self.chunk.is_empty() {
            room::write_pdus(&self.part_path, &self.chunk)?;
            let mut out = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.events_path)?;
            std::io::copy(&mut File::open(&self.part_path)?, &mut out)?;
            std::fs::remove_file(&self.part_path)?;
            self.frames += 1;
            self.chunk.clear();
        }
        if last {
            File::open(&self.events_path)?.sync_all()?;
        }
        Ok(())
    }
}

/// Every file under `dir`, recursively.
fn list_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            list_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn parse_args() -> Result<(PathBuf, u64, u64, u64, usize)> {
    let usage = "usage: forge_archive OUT [--events N] [--huge N] [--room-size N] [--users N]";
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().context(usage)?);
    let (mut events, mut huge, mut room_size, mut users) = (1_000_000, 500_000, 200, 300);
    while let Some(flag) = args.next() {
        let value: u64 = args.next().context(usage)?.parse().context(usage)?;
        match flag.as_str() {
            "--events" => events = value,
            "--huge" => huge = value,
            "--room-size" => room_size = value,
            "--users" => users = value,
            _ => bail!("{usage}"),
        }
    }
    if users < 30 {
        bail!("need --users >= 30 (the huge room has 25 members)");
    }
    Ok((out, events, huge, room_size, users as usize))
}

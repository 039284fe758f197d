//! The import model → an archive of signed PDUs, the same format `synapse dump` writes, so the
//! one event writer (`conduit write`) takes both, with its preflight, resume and `verify`.
//!
//! Each room is a linear DAG in original time order. Events are signed with the target server's
//! key; ed25519 signatures are deterministic and room ids come from the source's ids, so the same
//! workspace forges the same event ids every time, and writing it again adds nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::Arc;

// Fx hashing: these maps take a lookup or two per forged event, and their keys come from the
// workspace being imported, not from the network.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use serde_json::{json, Map, Value};

use crate::archive::media::MediaMeta;
use crate::archive::room::{self, PduLine, PduWriter, RoomMeta};
use crate::archive::user::{AccountData, UserRecord, UserSecrets};
use crate::archive::{fsutil, manifest, Archive, Checkpoint, Entry, ItemKind};
use crate::conduit::write::Archived;
use crate::error::{Error, Result};
use crate::import::id_table::{IdTable, Ref};
use crate::import::model::{Item, ItemKind as Kind, Page, Room, RoomKind, Skip, User};
use crate::import::queue::TimeQueue;
use crate::import::skips::Skips;
use crate::matrix::forge::RoomBuilder;
use crate::matrix::keys::ServerKey;
use crate::matrix::signer::EventSigner;

/// A PDU must stay under 65,536 bytes as JSON; this leaves room for the envelope (ids, hashes,
/// signatures, auth and prev events).
const MAX_CONTENT: usize = 60_000;

/// How to forge.
#[derive(Debug, Clone)]
pub struct ForgeOptions {
    pub server_name: String,
    /// Room version of every new room (Conduit v0.10.12's default is 10).
    pub room_version: String,
    /// Source ids (with their event ids) a room keeps in memory; older ones go to disk.
    pub ids_in_memory: usize,
}

/// What a forge did.
#[derive(Debug, Default, Clone)]
pub struct ForgeSummary {
    pub users: u64,
    pub rooms: u64,
    pub rooms_already_done: u64,
    pub events: u64,
    pub media: u64,
    /// Joins (and invites) the history lacked but a message of the user needed.
    pub joins_added: u64,
    pub skipped: u64,
}

/// Forges rooms one at a time (so a source can hand over one room, then drop it), gathering
/// what the users' records need (joined rooms, `m.direct`) until [`Forger::finish`].
pub struct Forger<'a> {
    archive: &'a Archive,
    checkpoint: Checkpoint,
    shared: Arc<Shared>,
    joined: HashMap<String, Vec<String>>,
    direct: HashMap<String, BTreeMap<String, Vec<String>>>,
    sum: ForgeSummary,
    /// Told of every room as it is recorded, and of the finished archive.
    announce: Option<Sender<Archived>>,
    /// Rooms and media this run has recorded (a multi-step run hands some over twice).
    rooms_seen: HashSet<String>,
    media_seen: HashSet<String>,
}

impl<'a> Forger<'a> {
    /// Starts: stores the key in the archive.
    pub fn new(
        users: &[User],
        key: &ServerKey,
        archive: &'a Archive,
        options: &ForgeOptions,
    ) -> Result<Self> {
        let checkpoint = Checkpoint::open(&archive.checkpoint_path())?;
        // The key, in Synapse's file format (so `conduit write` and the proxy read it as usual).
        let key_path = archive.keys_dir().join("signing.key");
        let key_line = key.synapse_line();
        fsutil::write_atomic(&key_path, key_line.as_bytes(), true)?;
        checkpoint.record(Entry {
            kind: ItemKind::Keys,
            id: "signing.key".into(),
            files: BTreeMap::from([(
                archive.relative(&key_path),
                fsutil::sha256_hex(key_line.as_bytes()),
            )]),
            counts: BTreeMap::new(),
            errors: Vec::new(),
        })?;
        let shared = Shared {
            archive: archive.clone(),
            signer: EventSigner::new(key, &options.server_name),
            options: options.clone(),
            users: users.iter().map(|u| (u.key.clone(), u.clone())).collect(),
            by_user_id: (users.iter())
                .map(|u| (u.user_id.clone(), u.key.clone()))
                .collect(),
        };
        Ok(Forger {
            archive,
            checkpoint,
            shared: Arc::new(shared),
            joined: HashMap::default(),
            direct: HashMap::default(),
            sum: ForgeSummary::default(),
            announce: None,
            rooms_seen: HashSet::default(),
            media_seen: HashSet::default(),
        })
    }

    /// Tells `to` (a database writer, [`crate::conduit::write::write_as_archived`]) of each room
    /// once it is complete in the archive, and when the archive is finished.
    pub fn announce_to(&mut self, to: Sender<Archived>) {
        self.announce = Some(to);
    }

    fn announce(&self, step: Archived) -> Result<()> {
        match &self.announce {
            Some(to) => to.send(step).map_err(|_| Error::Archive {
                path: self.archive.root().to_owned(),
                reason: "the database writer stopped".into(),
            }),
            None => Ok(()),
        }
    }

    /// Whether the room is in the archive already (then [`Forger::room`] only notes members).
    pub fn is_done(&self, room_id: &str) -> bool {
        self.checkpoint.is_done(ItemKind::Room, room_id)
    }

    /// The archive's checkpoint (for steps a caller records).
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Copies one file into the archive's media.
    pub fn media(&mut self, m: &crate::import::model::Media) -> Result<()> {
        if !self.media_seen.insert(m.media_id.clone()) {
            return Ok(());
        }
        if !self.checkpoint.is_done(ItemKind::Media, &m.media_id) {
            let s = &self.shared;
            put_media(
                self.archive,
                &self.checkpoint,
                m,
                &s.users,
                &s.options.server_name,
            )?;
        }
        self.sum.media += 1;
        Ok(())
    }

    /// Forges one room, its whole history in its timeline (unless the archive has it).
    pub fn room(&mut self, room: &Room) -> Result<()> {
        let forged = if self.is_done(&room.room_id) {
            None
        } else {
            let whole = std::iter::once(Page {
                items: room.timeline.clone(),
                ..Default::default()
            });
            Some(self.shared.forge(room, whole)?)
        };
        self.record(room, forged)
    }

    /// The work of forging `room`, to run on another thread; hand its result to
    /// [`Forger::record`], in any order (the users' room lists and the report are sorted when
    /// they are written, so the archive is the same whichever room finished first).
    /// The history is the room's timeline, then the pages `more` brings until it closes.
    pub fn job(&self, room: Room, more: Option<PageReceiver>) -> RoomJob {
        RoomJob {
            done: self.is_done(&room.room_id),
            room,
            more,
            shared: self.shared.clone(),
        }
    }

    /// Records a forged room (`None`: it was in the archive already). A room already recorded
    /// in this run is not recorded again.
    pub fn record(&mut self, room: &Room, forged: Option<Forged>) -> Result<()> {
        if !self.rooms_seen.insert(room.room_id.clone()) {
            return Ok(());
        }
        match forged {
            None => self.sum.rooms_already_done += 1,
            Some(done) => {
                self.sum.events += done.events;
                self.sum.joins_added += done.joins_added;
                self.checkpoint.record(done.entry)?;
                self.sum.rooms += 1;
            }
        }
        let members = &room.members_now;
        for m in members {
            self.joined
                .entry(m.clone())
                .or_default()
                .push(room.room_id.clone());
        }
        if matches!(room.kind, RoomKind::Direct | RoomKind::Group) {
            for m in members {
                let others: Vec<&String> = members.iter().filter(|o| *o != m).collect();
                let targets = if others.is_empty() { vec![m] } else { others };
                for o in targets {
                    let Some(other) = self.shared.users.get(o) else {
                        continue;
                    };
                    (self.direct.entry(m.clone()).or_default())
                        .entry(other.user_id.clone())
                        .or_default()
                        .push(room.room_id.clone());
                }
            }
        }
        self.announce(Archived::Room(room.room_id.clone()))
    }

    /// Writes the users, the report and the manifest.
    pub fn finish(
        mut self,
        users: &[User],
        skipped: &mut Skips,
        source: &str,
        version: &str,
    ) -> Result<ForgeSummary> {
        let archive = self.archive;
        for u in users {
            let mut account_data = AccountData::default();
            if let Some(mut d) = self.direct.remove(&u.key) {
                // Rooms are recorded as they are forged: sorted, the record is the same each run.
                d.values_mut().for_each(|rooms| rooms.sort());
                account_data.global.insert(
                    "m.direct".into(),
                    serde_json::to_value(d).unwrap_or_default(),
                );
            }
            let record = UserRecord {
                user_id: u.user_id.clone(),
                admin: u.admin,
                deactivated: u.deactivated,
                user_type: u.bot.then(|| "bot".to_owned()),
                creation_ts: Some(u.created_ts),
                displayname: u.displayname.clone(),
                avatar_url: mxc(&self.shared.options.server_name, &u.avatar),
                account_data,
                joined_rooms: {
                    let mut rooms = self.joined.remove(&u.key).unwrap_or_default();
                    rooms.sort();
                    rooms
                },
                secrets: UserSecrets {
                    // A hash no password matches: Conduit reads an empty one as "deactivated".
                    password_hash: Some(
                        u.password_hash
                            .clone()
                            .unwrap_or_else(|| NO_PASSWORD.to_owned()),
                    ),
                    ..Default::default()
                },
                ..Default::default()
            };
            let path = archive.user_path(&u.user_id);
            let bytes =
                serde_json::to_vec_pretty(&record).map_err(|e| Error::malformed("user", e))?;
            fsutil::write_atomic(&path, &bytes, true)?;
            self.checkpoint.record(Entry {
                kind: ItemKind::User,
                id: u.user_id.clone(),
                files: BTreeMap::from([(archive.relative(&path), fsutil::sha256_hex(&bytes))]),
                counts: BTreeMap::new(),
                errors: Vec::new(),
            })?;
            self.sum.users += 1;
        }
        // What the forge itself left out (an edit or reaction whose message is gone, a sender
        // who is not a user …), kept per room in the checkpoint so that a resumed run reports
        // the rooms of earlier runs too: in the same report as what the mapping left out.
        for e in self.checkpoint.entries(ItemKind::Room) {
            for reason in e.errors {
                skipped.push(Skip {
                    kind: "room",
                    id: e.id.clone(),
                    reason,
                });
            }
        }
        skipped.write_report(&archive.root().join("import-report.json"))?;
        self.sum.skipped += skipped.len();
        let source = manifest::Source {
            kind: source.to_owned(),
            version: version.to_owned(),
        };
        crate::archive::finalize::finalize(
            archive,
            &self.checkpoint,
            &self.shared.options.server_name,
            source,
        )?;
        self.announce(Archived::Complete)?;
        Ok(self.sum)
    }
}

/// What every room's forging shares (read-only, across threads).
struct Shared {
    archive: Archive,
    signer: EventSigner,
    options: ForgeOptions,
    users: HashMap<String, User>,
    by_user_id: HashMap<String, String>,
}

impl Shared {
    fn forge(&self, room: &Room, pages: impl Iterator<Item = Page>) -> Result<Forged> {
        let ctx = RoomCtx {
            users: &self.users,
            by_user_id: &self.by_user_id,
            server_name: &self.options.server_name,
            ids_in_memory: self.options.ids_in_memory,
        };
        forge_room(
            &self.archive,
            &self.signer,
            room,
            pages,
            &ctx,
            &self.options.room_version,
        )
        .map_err(|e| Error::Archive {
            path: self.archive.room_dir(&room.room_id),
            reason: format!("forging {} ({}): {e}", room.room_id, room.key),
        })
    }
}

/// Where a room's later pages come from, while its source is being read.
pub type PageReceiver = tokio::sync::mpsc::Receiver<Page>;

/// One room to forge on a worker thread.
pub struct RoomJob {
    room: Room,
    more: Option<PageReceiver>,
    done: bool,
    shared: Arc<Shared>,
}

impl RoomJob {
    /// The room to forge.
    pub fn room(&self) -> &Room {
        &self.room
    }

    /// Forges the room (the slow part: signing, hashing, compressing), waiting for its pages
    /// (so call it where blocking is allowed). The room comes back without its timeline, which
    /// is in the archive now.
    pub fn run(mut self) -> Result<(Room, Option<Forged>)> {
        let first = Page {
            items: std::mem::take(&mut self.room.timeline),
            pinned: Vec::new(),
            until: None,
        };
        let mut more = self.more.take();
        let rest = std::iter::from_fn(|| more.as_mut()?.blocking_recv());
        let forged = if self.done {
            rest.for_each(drop);
            None
        } else {
            Some(
                self.shared
                    .forge(&self.room, std::iter::once(first).chain(rest))?,
            )
        };
        Ok((self.room, forged))
    }
}

fn mxc(server_name: &str, media: &Option<String>) -> Option<String> {
    media.as_ref().map(|m| format!("mxc://{server_name}/{m}"))
}

/// The password hash of users who had none at the source (single sign-on accounts): no
/// password matches it, and it is not empty (Conduit's mark of a deactivated account).
pub const NO_PASSWORD: &str = "!no-password-imported";

fn put_media(
    archive: &Archive,
    checkpoint: &Checkpoint,
    m: &crate::import::model::Media,
    users: &HashMap<String, User>,
    server_name: &str,
) -> Result<()> {
    let bytes = std::fs::read(&m.path).map_err(|e| Error::io("cannot read", &m.path, e))?;
    let sha256 = fsutil::sha256_hex(&bytes);
    let blob = archive.media_blob_path(&sha256);
    if !blob.is_file() {
        fsutil::write_atomic(&blob, &bytes, false)?;
    }
    let meta = MediaMeta {
        server_name: server_name.to_owned(),
        media_id: m.media_id.clone(),
        content_type: m.content_type.clone(),
        upload_name: m.name.clone(),
        uploader: m
            .uploader
            .as_ref()
            .and_then(|u| users.get(u))
            .map(|u| u.user_id.clone()),
        created_ts: Some(m.created_ts),
        length: bytes.len() as u64,
        sha256: sha256.clone(),
        quarantined_by: None,
    };
    let meta_path = archive.media_meta_path(&m.media_id);
    let meta_bytes = serde_json::to_vec_pretty(&meta).map_err(|e| Error::malformed("media", e))?;
    fsutil::write_atomic(&meta_path, &meta_bytes, false)?;
    checkpoint.record(Entry {
        kind: ItemKind::Media,
        id: m.media_id.clone(),
        files: BTreeMap::from([
            (
                archive.relative(&meta_path),
                fsutil::sha256_hex(&meta_bytes),
            ),
            (archive.relative(&blob), sha256),
        ]),
        counts: BTreeMap::from([("bytes".into(), meta.length)]),
        errors: Vec::new(),
    })
}

struct RoomCtx<'a> {
    users: &'a HashMap<String, User>,
    /// Matrix user id → source key.
    by_user_id: &'a HashMap<String, String>,
    server_name: &'a str,
    ids_in_memory: usize,
}

/// A room written into the archive.
pub struct Forged {
    entry: Entry,
    events: u64,
    joins_added: u64,
}

/// Forges one room into `rooms/<room>/` and returns its checkpoint entry.
fn forge_room(
    archive: &Archive,
    signer: &EventSigner,
    room: &Room,
    pages: impl Iterator<Item = Page>,
    ctx: &RoomCtx,
    version: &str,
) -> Result<Forged> {
    let dir = archive.room_dir(&room.room_id);
    fsutil::create_dir_all(&dir)?;
    let events_path = dir.join(room::EVENTS);
    let outliers_path = dir.join(room::OUTLIERS);
    let out = PduWriter::create(&events_path)?;
    let mut f = RoomForge::new(signer, room, ctx, version, out)?;
    f.header()?;
    // Items in time order, each written once no later page can hold an earlier one.
    let mut queue = TimeQueue::default();
    for page in pages {
        f.to_redact
            .extend(page.items.iter().filter_map(|i| match &i.kind {
                Kind::Redaction { target } => Some(target.clone()),
                _ => None,
            }));
        f.pinned.extend(page.pinned);
        for item in page.items {
            queue.push(item);
        }
        while let Some(item) = page.until.and_then(|u| queue.pop_before(Some(u))) {
            f.item(&item)?;
        }
    }
    while let Some(item) = queue.pop_before(None) {
        f.item(&item)?;
    }
    f.close()?;
    let events = f.out.finish()?;
    room::write_pdus(&outliers_path, std::iter::empty::<&PduLine>())?;
    let meta = RoomMeta {
        room_id: room.room_id.clone(),
        version: version.to_owned(),
        creator: Some(f.creator.clone()),
        name: room.name.clone(),
        canonical_alias: f.alias.clone(),
        aliases: f.alias.iter().cloned().collect(),
        published: room.open,
        room_type: (room.kind == RoomKind::Space).then(|| "m.space".to_owned()),
        joined_local_members: f.joined.len() as u64,
        current_state: f.b.current_state(),
        current_state_source: "computed".into(),
        forward_extremities: f.b.last_event().map(str::to_owned).into_iter().collect(),
        events,
        outliers: 0,
        history_source: "import".into(),
        order_source: "import".into(),
        ..Default::default()
    };
    let meta_path = dir.join(room::META);
    fsutil::write_json(&meta_path, &meta, false)?;
    // Source id → event id, for later steps and for people looking for a message.
    let map_path = archive.mapping_path(&room.key);
    fsutil::write_json(&map_path, &f.ids, false)?;

    let mut files = BTreeMap::new();
    for p in [&events_path, &outliers_path, &meta_path, &map_path] {
        files.insert(archive.relative(p), fsutil::sha256_file(p)?);
    }
    Ok(Forged {
        events,
        joins_added: f.joins_added,
        entry: Entry {
            kind: ItemKind::Room,
            id: room.room_id.clone(),
            files,
            counts: BTreeMap::from([("events".into(), events)]),
            errors: f.skipped,
        },
    })
}

/// One room being forged: the builder plus what the items refer to.
struct RoomForge<'a> {
    b: RoomBuilder<'a>,
    room: &'a Room,
    ctx: &'a RoomCtx<'a>,
    out: PduWriter,
    creator: String,
    alias: Option<String>,
    joined: HashSet<String>,
    /// Source key → event id, and the events that later items refer to.
    ids: IdTable,
    /// Thread root → the thread's latest event.
    thread_last: HashMap<Ref, Ref>,
    /// (target, sender, key) of reactions already sent; sender and key numbered in `names`.
    reactions: HashSet<(Ref, u32, u32)>,
    /// Senders and reaction keys, numbered (a few hundred strings stand for millions).
    names: HashMap<String, u32>,
    redacted: HashSet<Ref>,
    /// Source keys of messages a later item redacts (a message and its deletion come from the
    /// same post, so from the same page).
    to_redact: HashSet<String>,
    /// Pinned messages (source keys), in order.
    pinned: Vec<String>,
    last_ts: i64,
    joins_added: u64,
    skipped: Vec<String>,
    version: String,
}

impl<'a> RoomForge<'a> {
    fn new(
        signer: &'a EventSigner,
        room: &'a Room,
        ctx: &'a RoomCtx<'a>,
        version: &str,
        out: PduWriter,
    ) -> Result<Self> {
        let b = RoomBuilder::new(signer, version, &room.room_id)
            .map_err(|e| Error::Config(e.to_string()))?;
        let creator = ctx
            .users
            .get(room.creator.as_str())
            .map(|u| u.user_id.clone())
            .ok_or_else(|| Error::Config(format!("creator {} is not a user", room.creator)))?;
        Ok(RoomForge {
            b,
            room,
            ctx,
            out,
            creator,
            alias: room
                .alias
                .as_ref()
                .map(|a| format!("#{a}:{}", ctx.server_name)),
            joined: HashSet::default(),
            ids: IdTable::with_window(ctx.ids_in_memory),
            thread_last: HashMap::default(),
            reactions: HashSet::default(),
            names: HashMap::default(),
            redacted: HashSet::default(),
            to_redact: HashSet::default(),
            pinned: room.pinned.clone(),
            last_ts: room.created_ts,
            joins_added: 0,
            skipped: Vec::new(),
            version: version.to_owned(),
        })
    }

    /// The time of the next event: never before the last one (Mattermost rows can disagree
    /// by a few milliseconds; the timeline must not go backwards).
    fn next_ts(&mut self, ts: i64) -> i64 {
        self.last_ts = ts.max(self.last_ts);
        self.last_ts
    }

    fn send(
        &mut self,
        sender: &str,
        kind: &str,
        sk: Option<&str>,
        c: Value,
        ts: i64,
    ) -> Result<String> {
        self.send_maybe_pruned(sender, kind, sk, c, ts, false)
    }

    /// Sends an event; `pruned`: stores it as a redaction leaves it (a later item redacts it),
    /// which is how Conduit and Synapse keep redacted events. Its id is the same either way:
    /// the reference hash covers only what a redaction keeps.
    fn send_maybe_pruned(
        &mut self,
        sender: &str,
        kind: &str,
        sk: Option<&str>,
        c: Value,
        ts: i64,
        pruned: bool,
    ) -> Result<String> {
        let ts = self.next_ts(ts);
        let mut line = self
            .b
            .send(sender, kind, sk, c, ts)
            .map_err(|e| Error::Config(e.to_string()))?;
        if pruned {
            ruma::canonical_json::redact_in_place(&mut line.pdu, self.b.redaction_rules(), None)
                .map_err(|e| Error::Config(format!("redacting {}: {e}", line.event_id)))?;
            // The text is of the event before the redaction.
            line.source = None;
        }
        self.out.push_line(&line)?;
        Ok(line.event_id)
    }

    fn user_id(&self, key: &str) -> Option<String> {
        self.ctx.users.get(key).map(|u| u.user_id.clone())
    }

    fn member_content(&self, user_id: &str, membership: &str) -> Value {
        let mut c = json!({ "membership": membership });
        if membership == "join" || membership == "invite" {
            if let Some(u) = (self.ctx.by_user_id.get(user_id)).and_then(|k| self.ctx.users.get(k))
            {
                if let Some(d) = &u.displayname {
                    c["displayname"] = json!(d);
                }
                if let Some(a) = mxc(self.ctx.server_name, &u.avatar) {
                    c["avatar_url"] = json!(a);
                }
            }
        }
        if membership == "invite" && matches!(self.room.kind, RoomKind::Direct | RoomKind::Group) {
            c["is_direct"] = json!(true);
        }
        c
    }

    /// The room's first events: create, the creator's join, power levels, rules, name, topic.
    fn header(&mut self) -> Result<()> {
        let (creator, ts, room) = (self.creator.clone(), self.room.created_ts, self.room);
        let mut create = json!({ "creator": creator, "room_version": self.version });
        if room.kind == RoomKind::Space {
            create["type"] = json!("m.space");
        }
        self.send(&creator, "m.room.create", Some(""), create, ts)?;
        let join = self.member_content(&creator, "join");
        self.send(&creator, "m.room.member", Some(&creator), join, ts)?;
        self.joined.insert(creator.clone());
        let power = self.power_levels(false);
        self.send(&creator, "m.room.power_levels", Some(""), power, ts)?;
        let rule = if room.open { "public" } else { "invite" };
        self.send(
            &creator,
            "m.room.join_rules",
            Some(""),
            json!({ "join_rule": rule }),
            ts,
        )?;
        let visibility = json!({ "history_visibility": "shared" });
        self.send(
            &creator,
            "m.room.history_visibility",
            Some(""),
            visibility,
            ts,
        )?;
        if let Some(alias) = self.alias.clone() {
            self.send(
                &creator,
                "m.room.canonical_alias",
                Some(""),
                json!({ "alias": alias }),
                ts,
            )?;
        }
        if let Some(name) = room.name.as_ref().filter(|n| !n.is_empty()) {
            self.send(
                &creator,
                "m.room.name",
                Some(""),
                json!({ "name": name }),
                ts,
            )?;
        }
        if let Some(topic) = room.topic.as_ref().filter(|t| !t.is_empty()) {
            self.send(
                &creator,
                "m.room.topic",
                Some(""),
                json!({ "topic": topic }),
                ts,
            )?;
        }
        let via = json!({ "via": [self.ctx.server_name] });
        if let Some(parent) = self.room.parent.clone() {
            let mut c = via.clone();
            c["canonical"] = json!(true);
            self.send(&creator, "m.space.parent", Some(&parent), c, ts)?;
        }
        for child in self.room.children.clone() {
            self.send(&creator, "m.space.child", Some(&child), via.clone(), ts)?;
        }
        Ok(())
    }

    fn power_levels(&self, read_only: bool) -> Value {
        let mut users = Map::new();
        let direct = matches!(self.room.kind, RoomKind::Direct | RoomKind::Group);
        if direct {
            for m in &self.room.members_now {
                if let Some(id) = self.user_id(m) {
                    users.insert(id, json!(100));
                }
            }
        }
        for m in &self.room.moderators {
            if let Some(id) = self.user_id(m) {
                users.entry(id).or_insert(json!(50));
            }
        }
        users.insert(self.creator.clone(), json!(100));
        if read_only && !direct {
            return self.read_only_levels(users);
        }
        let level = if read_only { 100 } else { 0 };
        json!({
            "users": users, "users_default": 0, "events_default": level,
            "state_default": if self.room.kind == RoomKind::Space { 50 } else { level },
            "invite": 0, "kick": 50, "ban": 50, "redact": 50,
            // Members may rename a channel and change its topic or pins, as in Mattermost
            // (`state_default` 0); who may enter and read it is for moderators alone.
            "events": {
                "m.room.power_levels": 100, "m.room.history_visibility": 100,
                "m.room.tombstone": 100, "m.room.server_acl": 100, "m.room.encryption": 100,
                "m.room.join_rules": 50, "m.room.guest_access": 50,
                "m.room.canonical_alias": 50, "m.space.child": 50, "m.space.parent": 50,
            },
        })
    }

    /// The power levels of an archived room: nobody in it may post, react, redact or change
    /// its state (every event needs 100), so no member keeps 100 — the creator, who sends
    /// this, drops to a moderator's 50 or to 0. The server's admins who are not members keep
    /// 100: one of them can join (or be invited by any member, `invite` stays 0) and lower the
    /// levels again to reopen the room. (A user at 100 can always post, and no one can raise a
    /// level above their own: whoever may reopen a room must be outside it to keep it shut.)
    fn read_only_levels(&self, mut users: Map<String, Value>) -> Value {
        let moderators: HashSet<String> = (self.room.moderators.iter())
            .filter_map(|m| self.user_id(m))
            .collect();
        if !moderators.contains(&self.creator) {
            users.remove(&self.creator);
        }
        for level in users.values_mut() {
            if level.as_i64().is_some_and(|l| l > 50) {
                *level = json!(50);
            }
        }
        let members: HashSet<&str> = self.room.members_now.iter().map(String::as_str).collect();
        let mut keepers: Vec<&User> = (self.ctx.users.iter())
            .filter(|(key, u)| u.admin && !u.deactivated && !members.contains(key.as_str()))
            .map(|(_, u)| u)
            .collect();
        keepers.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        for u in keepers {
            users.insert(u.user_id.clone(), json!(100));
        }
        json!({
            "users": users, "users_default": 0, "events_default": 100, "state_default": 100,
            "invite": 0, "kick": 50, "ban": 50, "redact": 100,
            "events": {
                "m.room.power_levels": 100, "m.room.history_visibility": 100,
                "m.room.tombstone": 100, "m.room.server_acl": 100, "m.room.encryption": 100,
                "m.room.join_rules": 100, "m.room.guest_access": 100,
                "m.room.canonical_alias": 100, "m.space.child": 100, "m.space.parent": 100,
            },
        })
    }

    /// Makes `user_id` a member (an invite by the creator first where the join rule needs one).
    fn join(&mut self, user_id: &str, ts: i64) -> Result<()> {
        if self.joined.contains(user_id) {
            return Ok(());
        }
        if !self.room.open && self.b.membership(user_id) != Some("invite") {
            let creator = self.creator.clone();
            let invite = self.member_content(user_id, "invite");
            self.send(&creator, "m.room.member", Some(user_id), invite, ts)?;
        }
        let join = self.member_content(user_id, "join");
        self.send(user_id, "m.room.member", Some(user_id), join, ts)?;
        self.joined.insert(user_id.to_owned());
        Ok(())
    }

    fn leave(&mut self, user_id: &str, ts: i64) -> Result<()> {
        if self.joined.remove(user_id) {
            self.send(
                user_id,
                "m.room.member",
                Some(user_id),
                json!({"membership": "leave"}),
                ts,
            )?;
        }
        Ok(())
    }

    fn item(&mut self, item: &Item) -> Result<()> {
        let Some(sender) = self.user_id(&item.sender) else {
            self.skipped.push(format!(
                "{}: unknown sender {}",
                item.key.as_deref().unwrap_or("item"),
                item.sender
            ));
            return Ok(());
        };
        match &item.kind {
            Kind::Join => self.join(&sender, item.ts),
            // The creator stays until the end: later invites and changes need someone allowed.
            Kind::Leave if sender == self.creator => Ok(()),
            Kind::Leave => self.leave(&sender, item.ts),
            Kind::Message {
                event_type,
                content,
                thread,
            } => {
                self.ensure_joined(&sender, item.ts)?;
                let mut content = fit(content.clone());
                let root = match thread {
                    Some(t) => self.ids.find(t)?,
                    None => None,
                };
                if let Some(root) = root {
                    let last = *self.thread_last.get(&root).unwrap_or(&root);
                    content["m.relates_to"] = json!({
                        "rel_type": "m.thread", "event_id": self.ids.event_id(root)?,
                        "is_falling_back": true,
                        "m.in_reply_to": { "event_id": self.ids.event_id(last)? },
                    });
                } else if let Some(t) = thread {
                    self.skipped.push(format!(
                        "{}: thread root {t} is not in the room; kept as a plain message",
                        item.key.as_deref().unwrap_or("message")
                    ));
                }
                let pruned = (item.key.as_ref()).is_some_and(|k| self.to_redact.contains(k));
                let id =
                    self.send_maybe_pruned(&sender, event_type, None, content, item.ts, pruned)?;
                if item.key.is_some() || root.is_some() {
                    let r = self.record(item.key.as_deref(), &id)?;
                    if let Some(root) = root {
                        self.thread_last.insert(root, r);
                    }
                }
                Ok(())
            }
            Kind::Reaction { target, key } => {
                let Some(target) = self.ids.find(target)? else {
                    self.skipped.push(format!(
                        "reaction {key} by {sender}: message {target} is not in the room"
                    ));
                    return Ok(());
                };
                let seen = (target, self.name(&sender), self.name(key));
                if !self.reactions.insert(seen) || self.redacted.contains(&target) {
                    return Ok(());
                }
                self.ensure_joined(&sender, item.ts)?;
                let c = json!({ "m.relates_to": {
                    "rel_type": "m.annotation", "event_id": self.ids.event_id(target)?,
                    "key": key } });
                self.send(&sender, "m.reaction", None, c, item.ts)?;
                Ok(())
            }
            Kind::Edit { target, content } => {
                let Some(target) = self.ids.find(target)? else {
                    self.skipped
                        .push(format!("edit of {target}: the message is not in the room"));
                    return Ok(());
                };
                self.ensure_joined(&sender, item.ts)?;
                let c = edit_content(content.clone(), &self.ids.event_id(target)?);
                self.send(&sender, "m.room.message", None, c, item.ts)?;
                Ok(())
            }
            Kind::Redaction { target } => {
                self.to_redact.remove(target);
                let Some(target) = self.ids.find(target)? else {
                    return Ok(());
                };
                self.ensure_joined(&sender, item.ts)?;
                let ts = self.next_ts(item.ts);
                let target_id = self.ids.event_id(target)?;
                let line = (self.b)
                    .redact(&sender, &target_id, ts)
                    .map_err(|e| Error::Config(e.to_string()))?;
                self.out.push_line(&line)?;
                self.redacted.insert(target);
                Ok(())
            }
            Kind::State {
                event_type,
                state_key,
                content,
            } => {
                self.ensure_joined(&sender, item.ts)?;
                let id = self.send(
                    &sender,
                    event_type,
                    Some(state_key),
                    content.clone(),
                    item.ts,
                )?;
                if let Some(k) = &item.key {
                    self.record(Some(k), &id)?;
                }
                Ok(())
            }
        }
    }

    /// Keeps an event's id for the items that refer to it.
    fn record(&mut self, key: Option<&str>, event_id: &str) -> Result<Ref> {
        Ok(self.ids.insert(key, event_id)?)
    }

    /// The number of a sender or reaction key.
    fn name(&mut self, s: &str) -> u32 {
        if let Some(&n) = self.names.get(s) {
            return n;
        }
        let n = self.names.len() as u32;
        self.names.insert(s.to_owned(), n);
        n
    }

    /// A sender must be in the room; where the history lacks their join, add one (counted).
    fn ensure_joined(&mut self, user_id: &str, ts: i64) -> Result<()> {
        if !self.joined.contains(user_id) {
            self.joins_added += 1;
            self.join(user_id, ts)?;
        }
        Ok(())
    }

    /// After the history: pins, members as they are now, read-only for archived rooms, and
    /// the creator's own leave if they are not a member any more.
    fn close(&mut self) -> Result<()> {
        let creator = self.creator.clone();
        let ts = self.last_ts;
        let mut pinned = Vec::new();
        for key in &self.pinned {
            match self.ids.find(key)? {
                Some(r) if !self.redacted.contains(&r) => pinned.push(self.ids.event_id(r)?),
                _ => {}
            }
        }
        if !pinned.is_empty() {
            let c = json!({ "pinned": pinned });
            self.send(&creator, "m.room.pinned_events", Some(""), c, ts)?;
        }
        let now: Vec<String> = (self.room.members_now.iter())
            .filter_map(|k| self.user_id(k))
            .collect();
        for m in &now {
            self.join(m, ts)?;
        }
        let mut gone: Vec<String> = (self.joined.iter())
            .filter(|m| !now.contains(m) && **m != creator)
            .cloned()
            .collect();
        gone.sort();
        for m in gone {
            self.leave(&m, ts)?;
        }
        if let Some(at) = self.room.archived_ts {
            let power = self.power_levels(true);
            let users = power["users"].as_object();
            if !users.is_some_and(|u| u.values().any(|level| *level == json!(100))) {
                self.skipped.push(format!(
                    "{}: archived while every server admin is a member: no one keeps power 100, \
                     so no one can reopen it",
                    self.room.key
                ));
            }
            self.send(&creator, "m.room.power_levels", Some(""), power, at)?;
        }
        if !now.contains(&creator) {
            self.leave(&creator, ts)?;
        }
        Ok(())
    }
}

/// The length of a value's JSON.
fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |v| v.len())
}

/// Keeps content under the PDU size limit: first without its HTML, then with the text cut.
fn fit(content: Value) -> Value {
    fit_within(content, MAX_CONTENT)
}

/// [`fit`] to `limit` bytes of JSON.
fn fit_within(mut content: Value, limit: usize) -> Value {
    if json_len(&content) <= limit {
        return content;
    }
    if let Some(obj) = content.as_object_mut() {
        obj.remove("formatted_body");
        obj.remove("format");
    }
    let Some(body) = content["body"].as_str().map(str::to_owned) else {
        return content;
    };
    // Cut until it fits, in proportion: escapes make a text's JSON up to six times its length,
    // so cutting by the excess in bytes could take nearly all of it.
    let mut keep = body.len();
    let mut len = json_len(&content);
    while len > limit && keep > 0 {
        keep = (keep as u128 * limit as u128 / len as u128) as usize;
        keep = keep.saturating_sub(16);
        let short = cut(&body, keep);
        keep = short.len() - CUT_MARK.len();
        content["body"] = json!(short);
        len = json_len(&content);
    }
    content
}

/// What ends a text [`cut`] short.
const CUT_MARK: &str = " […]";

/// The first `keep` bytes of `text` (fewer, to end on a character) and [`CUT_MARK`].
fn cut(text: &str, keep: usize) -> String {
    let mut keep = keep.min(text.len());
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{CUT_MARK}", &text[..keep])
}

/// An `m.replace` edit's content under the size limit: the edit carries its text twice (the
/// fallback `* …` and `m.new_content`), its HTML too, so each part fitting alone is not enough.
/// What gives way, in order: the fallback's HTML, then the fallback's text (clients that know
/// edits show `m.new_content`), then the new content itself.
fn edit_content(new: Value, target_event_id: &str) -> Value {
    /// How much of the new text a cut fallback keeps.
    const FALLBACK_TEXT: usize = 1000;
    let new = fit(new);
    let body = new["body"].as_str().unwrap_or_default().to_owned();
    let build = |new: &Value, html: bool, body: &str| {
        let mut c = json!({
            "msgtype": new["msgtype"].clone(),
            "body": format!("* {body}"),
            "m.new_content": new.clone(),
            "m.relates_to": { "rel_type": "m.replace", "event_id": target_event_id },
        });
        if let Some(h) = new["formatted_body"].as_str().filter(|_| html) {
            c["format"] = json!("org.matrix.custom.html");
            c["formatted_body"] = json!(format!("* {h}"));
        }
        if let Some(m) = new.get("m.mentions") {
            c["m.mentions"] = m.clone();
        }
        c
    };
    let short = if body.len() > FALLBACK_TEXT {
        cut(&body, FALLBACK_TEXT)
    } else {
        body.clone()
    };
    for c in [build(&new, true, &body), build(&new, false, &body)] {
        if json_len(&c) <= MAX_CONTENT {
            return c;
        }
    }
    let c = build(&new, false, &short);
    let over = json_len(&c).saturating_sub(MAX_CONTENT);
    if over == 0 {
        return c;
    }
    let limit = json_len(&new).saturating_sub(over);
    let new = fit_within(new, limit);
    build(&new, false, &short)
}

/// A fresh server key for a server that has none yet (a new Conduit).
pub fn new_server_key(dir: &Path) -> Result<ServerKey> {
    let mut seed = [0u8; 32];
    getrandom(&mut seed)?;
    let version = format!("a_{}", &fsutil::sha256_hex(&seed)[..4]);
    let line = format!("ed25519 {version} {}\n", crate::matrix::b64_encode(&seed));
    let path = dir.join("signing.key");
    fsutil::write_atomic(&path, line.as_bytes(), true)?;
    Ok(ServerKey::read_synapse(&path)?.remove(0))
}

pub(crate) fn getrandom(buf: &mut [u8]) -> Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| Error::io("cannot read", "/dev/urandom", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str, html: Option<&str>) -> Value {
        let mut c = json!({ "msgtype": "m.text", "body": body, "m.mentions": {} });
        if let Some(h) = html {
            c["format"] = json!("org.matrix.custom.html");
            c["formatted_body"] = json!(h);
        }
        c
    }

    #[test]
    fn content_under_the_limit_is_kept_as_it_is() {
        let c = message("hello", Some("<b>hello</b>"));
        assert_eq!(fit(c.clone()), c);
    }

    #[test]
    fn text_whose_json_is_six_times_longer_is_cut_until_it_fits() {
        // A control character is one byte of text and six of JSON (\u0001).
        let body = "\u{1}".repeat(50_000);
        let c = fit(message(&body, None));
        assert!(json_len(&c) <= MAX_CONTENT, "{} bytes", json_len(&c));
        let cut = c["body"].as_str().unwrap();
        assert!(
            cut.ends_with(" […]") && cut.len() > 9_000,
            "{} bytes kept",
            cut.len()
        );
    }

    #[test]
    fn an_edit_of_the_longest_post_fits_and_keeps_its_new_text() {
        // A post as long as Mattermost allows (16,383 characters), with HTML as long: alone it
        // fits, but an edit carries it twice with its HTML and was over the limit.
        let body = "ab".repeat(8_000) + "\"";
        let html = format!("<p>{}</p>", "<b>x</b>y".repeat(4_000));
        let new = message(&body, Some(&html));
        assert!(json_len(&new) <= MAX_CONTENT);
        let c = edit_content(new, "$target");
        assert!(json_len(&c) <= MAX_CONTENT, "{} bytes", json_len(&c));
        assert_eq!(
            c["m.new_content"]["body"],
            body.as_str(),
            "the new text whole"
        );
        assert_eq!(c["m.relates_to"]["rel_type"], "m.replace");
        assert_eq!(c["m.relates_to"]["event_id"], "$target");
        assert!(c["body"].as_str().unwrap().starts_with("* ab"));
    }

    #[test]
    fn an_edit_at_the_limit_gives_way_fallback_first_then_new_content() {
        let body = "é".repeat(29_000);
        let c = edit_content(message(&body, Some(&format!("<i>{body}</i>"))), "$t");
        assert!(json_len(&c) <= MAX_CONTENT, "{} bytes", json_len(&c));
        assert!(
            c.get("formatted_body").is_none(),
            "the fallback's HTML went first"
        );
        let fallback = c["body"].as_str().unwrap();
        assert!(
            fallback.ends_with(" […]") && fallback.len() < 1_100,
            "{fallback:.20}"
        );
        let new = c["m.new_content"]["body"].as_str().unwrap();
        assert!(
            new.len() > 50_000,
            "the new text keeps most: {} bytes",
            new.len()
        );
    }

    #[test]
    fn a_short_edit_has_the_whole_fallback_with_html() {
        let c = edit_content(message("new", Some("<b>new</b>")), "$t");
        assert_eq!(c["body"], "* new");
        assert_eq!(c["formatted_body"], "* <b>new</b>");
        assert_eq!(c["m.new_content"]["formatted_body"], "<b>new</b>");
        assert_eq!(c["m.mentions"], json!({}));
    }
}

//! `conduit write`: an archive into a Conduit database — keys, users, rooms — resumable and
//! safe to re-run (everything is keyed so a second write adds nothing).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

use crate::archive::media::MediaMeta;
use crate::archive::room::{PduReader, RoomMeta, EVENTS, OUTLIERS};
use crate::archive::user::UserRecord;
use crate::archive::{fsutil, Archive};
use crate::conduit::preflight::{preflight, Plan};
use crate::conduit::schema::SEP;
use crate::conduit::store::{refuse_if_open, Backend, Store};
use crate::conduit::writer::{aggregations, Writer};
use crate::error::{Error, Result};
use crate::matrix::keys::ServerKey;

/// How to write.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub backend: Backend,
    /// Conduit's media directory (`[global.media] path`); `<database>/media` when `None`.
    pub media_dir: Option<PathBuf>,
    /// Recent events whose state the writer keeps in memory (see [`StateTracker`]).
    ///
    /// [`StateTracker`]: crate::matrix::state::StateTracker
    pub state_window: usize,
    /// Transition mode: only the most recent N events of each room go into the timeline; the
    /// backfill proxy serves older ones on demand. State, auth chains and ids are all written.
    pub recent: Option<u64>,
}

impl WriteOptions {
    pub fn new(backend: Backend) -> Self {
        WriteOptions {
            backend,
            media_dir: None,
            state_window: crate::conduit::writer::rooms::STATE_WINDOW,
            recent: None,
        }
    }
}

/// What a write did.
#[derive(Debug, Default, Clone)]
pub struct WriteSummary {
    pub server_name: String,
    pub users: u64,
    /// Users already in a finished database, left as they are.
    pub users_kept: u64,
    pub rooms: u64,
    pub events: u64,
    pub events_already_there: u64,
    pub state_snapshots: u64,
    pub state_resolutions: u64,
    /// States read back from the database because they had left the in-memory window.
    pub state_loads: u64,
    /// Events left to the backfill proxy (`recent`).
    pub left_to_backfill: u64,
    pub media: u64,
    /// Signatures users made on each other's master keys (verified contacts).
    pub signatures: u64,
    /// The admin room, when this write created it.
    pub admin_room: Option<String>,
    /// Synapse's server admins, who are Conduit admins now.
    pub admins: Vec<String>,
    /// Things the user should know (nothing was lost because of them).
    pub warnings: Vec<String>,
}

/// Writes the archive into the database at `database` (created if missing).
pub fn write_archive(
    archive: &Archive,
    database: &Path,
    options: &WriteOptions,
) -> Result<WriteSummary> {
    refuse_if_open(database)?;
    let plan = preflight(archive)?;
    let store = options.backend.open(database)?;
    write_plan(store, archive, &plan, options, database)
}

/// The events before the first `history_until` of a room's timeline that a later event
/// redacts or replies to in a thread: in transition mode (`--recent`) they are kept as outliers
/// and marked as full mode marks them, so the backfill stores them as full mode would have
/// (docs/TRANSITION.md, "What reaches back"). Parses only lines that can be such an event.
pub fn reached_back(events: &Path, history_until: u64) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    if history_until == 0 {
        return Ok(out);
    }
    let mut reader = PduReader::open(events)?;
    let mut window = HashSet::new();
    let mut at = 0u64;
    while let Some(text) = reader.next_text() {
        let text = text?;
        at += 1;
        if at > history_until {
            window.extend(PduReader::event_id_of(&text).map(str::to_owned));
        }
        if !(text.contains("m.room.redaction") || text.contains("m.thread")) {
            continue;
        }
        let (root, redacts) = aggregations::earlier_targets(&reader.parse(text)?.pdu);
        out.extend(root.into_iter().chain(redacts));
    }
    out.retain(|id| !window.contains(id));
    Ok(out)
}

/// What [`write_as_archived`] hears from the import making the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Archived {
    /// This room is complete in the archive (rooms arrive in the order they are to be written).
    Room(String),
    /// The archive is finished: users, media and `manifest.json` are written.
    Complete,
}

/// Writes rooms into the database as the import completes them in the archive, then — when it
/// says the archive is [`Archived::Complete`] — checks the whole archive and writes its users
/// and media: the same [`WriteSession`] as [`write_archive`], overlapping with the import.
/// `admins` (user id, display name) go into the admin room before the first room. If the
/// import stops without completing, so does the write, and the database stays unfinished.
pub fn write_as_archived(
    archive: &Archive,
    database: &Path,
    options: &WriteOptions,
    server_name: &str,
    key: &ServerKey,
    admins: Vec<(String, Option<String>)>,
    steps: Receiver<Archived>,
) -> Result<WriteSummary> {
    refuse_if_open(database)?;
    let store = options.backend.open(database)?;
    let mut s = WriteSession::begin(store, server_name, key, options, database)?;
    let written = (|| {
        s.admin_room(key, admins)?;
        loop {
            match steps.recv() {
                Ok(Archived::Room(room_id)) => {
                    let meta = fsutil::read_json(&archive.room_dir(&room_id).join("room.json"))?;
                    s.room(archive, &meta)?;
                }
                Ok(Archived::Complete) => break,
                Err(_) => {
                    return Err(Error::Archive {
                        path: archive.root().to_owned(),
                        reason: "the import stopped before the archive was complete".into(),
                    })
                }
            }
        }
        let plan = preflight(archive)?;
        s.users_and_media(archive, &plan)
    })();
    written.map_err(|e| Error::Interrupted(Box::new(e)))?;
    s.finish()
}

fn write_plan<S: Store>(
    store: S,
    archive: &Archive,
    plan: &Plan,
    options: &WriteOptions,
    database: &Path,
) -> Result<WriteSummary> {
    let mut s = WriteSession::begin(store, &plan.server_name, &plan.key, options, database)?;
    let written = (|| {
        s.admin_room(&plan.key, plan.admins.clone())?;
        for meta in &plan.rooms {
            s.room(archive, meta)?;
        }
        s.users_and_media(archive, plan)
    })();
    written.map_err(|e| Error::Interrupted(Box::new(e)))?;
    s.finish()
}

/// One write into a database, whatever feeds it, in one order: the key, the admin room (so
/// `#admins:S` is its alias), rooms, users, media.
pub struct WriteSession<S: Store> {
    w: Writer<S>,
    sum: WriteSummary,
    media_dir: PathBuf,
}

impl<S: Store> WriteSession<S> {
    /// Checks the database belongs to this server and key, sets the in-progress guard and
    /// stores the key.
    pub fn begin(
        mut store: S,
        server_name: &str,
        key: &ServerKey,
        options: &WriteOptions,
        database: &Path,
    ) -> Result<Self> {
        // A different server key means a different server: refuse before marking anything.
        if let Some(existing) = store.get("global", b"keypair")? {
            let version = existing.split(|b| *b == SEP).next().unwrap_or_default();
            if version != key.version.as_bytes() {
                return Err(Error::Config(format!(
                    "the database already has server key ed25519:{}, the archive {}: a \
                     database serves one key, so its events must carry it (a new archive of \
                     `mattermost import --conduit-db` takes the database's key; or pass that \
                     key with --signing-key)",
                    String::from_utf8_lossy(version),
                    key.key_id()
                )));
            }
        }
        let mut w = Writer::begin(store, server_name)?;
        w.state_window = options.state_window;
        w.recent = options.recent;
        let sum = WriteSummary {
            server_name: w.server_name.clone(),
            ..Default::default()
        };
        let mut s = WriteSession {
            w,
            sum,
            media_dir: options
                .media_dir
                .clone()
                .unwrap_or_else(|| database.join("media")),
        };
        s.w.put_keypair(key)
            .map_err(|e| Error::Interrupted(Box::new(e)))?;
        Ok(s)
    }

    /// Creates Conduit's admin room (once per database) with `admins` in it.
    pub fn admin_room(
        &mut self,
        key: &ServerKey,
        admins: Vec<(String, Option<String>)>,
    ) -> Result<()> {
        self.sum.admin_room = self.w.put_admin_room(key, &admins)?;
        self.sum.admins = admins.into_iter().map(|(id, _)| id).collect();
        self.w.commit()
    }

    /// Writes one room of the archive.
    pub fn room(&mut self, archive: &Archive, meta: &RoomMeta) -> Result<()> {
        let admins_alias = format!("#admins:{}", self.w.server_name);
        let dir = archive.room_dir(&meta.room_id);
        if meta.aliases.contains(&admins_alias) {
            self.sum.warnings.push(format!(
                "{admins_alias} named room {} on Synapse; Conduit reserves it for its admin room, so that room keeps its other aliases only",
                meta.room_id
            ));
        }
        self.w.reached_back = match self.w.recent {
            Some(n) => reached_back(&dir.join(EVENTS), meta.events.saturating_sub(n))?,
            None => Default::default(),
        };
        let outliers = PduReader::open(&dir.join(OUTLIERS))?.collect::<Result<Vec<_>>>()?;
        let report = self.w.put_room(
            meta,
            &outliers,
            PduReader::open(&dir.join(EVENTS))?.prefetched(),
        )?;
        let sum = &mut self.sum;
        sum.rooms += 1;
        sum.events += report.events;
        sum.events_already_there += report.skipped_existing;
        sum.state_snapshots += report.snapshots;
        sum.state_resolutions += report.resolutions;
        sum.state_loads += report.state_loads;
        sum.left_to_backfill += report.left_to_backfill;
        // Small rooms share a commit (each commit costs a WAL sync and, in SQLite, a walk over
        // its page cache); a crash loses only rooms the counter does not cover yet, which the
        // next run writes again. The room's own writes count as one event.
        self.w.commit_if_due()
    }

    /// Writes the archive's users, then the signatures they made on each other's keys (every
    /// signed key is there by then), then its media.
    pub fn users_and_media(&mut self, archive: &Archive, plan: &Plan) -> Result<()> {
        let mut signers = Vec::new();
        for path in &plan.user_files {
            let user: UserRecord = fsutil::read_json(path)?;
            if self.user(&user)? && !user.e2e.signatures_on_others.is_empty() {
                signers.push(user);
            }
        }
        for signer in &signers {
            self.sum.signatures += self.w.put_signatures_on_others(signer)?;
        }
        for meta in &plan.media {
            self.media(archive, meta)?;
        }
        Ok(())
    }

    /// Writes one user (a user Conduit has served since an earlier write keeps what it has);
    /// whether it was written.
    pub fn user(&mut self, user: &UserRecord) -> Result<bool> {
        if self.w.was_complete
            && self
                .w
                .store
                .get("userid_password", user.user_id.as_bytes())?
                .is_some()
        {
            self.sum.users_kept += 1;
            return Ok(false);
        }
        self.w.put_user(user)?;
        self.sum.users += 1;
        if self.sum.users.is_multiple_of(1000) {
            self.w.commit()?;
        }
        Ok(true)
    }

    /// Copies one media file into Conduit's media directory and records it.
    pub fn media(&mut self, archive: &Archive, meta: &MediaMeta) -> Result<()> {
        self.w.put_media(
            meta,
            &archive.media_blob_path(&meta.sha256),
            &self.media_dir,
        )?;
        self.sum.media += 1;
        if self.sum.media.is_multiple_of(1000) {
            self.w.commit()?;
        }
        Ok(())
    }

    /// Marks the database finished (version 18) and makes it durable.
    pub fn finish(self) -> Result<WriteSummary> {
        self.w
            .finish()
            .map_err(|e| Error::Interrupted(Box::new(e)))?;
        Ok(self.sum)
    }
}

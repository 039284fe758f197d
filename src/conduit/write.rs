//! `conduit write`: an archive into a Conduit database — keys, users, rooms — resumable and
//! safe to re-run (everything is keyed so a second write adds nothing).

use std::path::{Path, PathBuf};

use crate::archive::room::{PduReader, EVENTS, OUTLIERS};
use crate::archive::user::UserRecord;
use crate::archive::{fsutil, Archive};
use crate::conduit::preflight::{preflight, Plan};
use crate::conduit::schema::SEP;
use crate::conduit::store::{
    refuse_if_open, rocksdb::RocksStore, sqlite::SqliteStore, Backend, Store,
};
use crate::conduit::writer::rooms::COMMIT_EVERY;
use crate::conduit::writer::Writer;
use crate::error::{Error, Result};

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
    let media_dir = options
        .media_dir
        .clone()
        .unwrap_or_else(|| database.join("media"));
    match options.backend {
        Backend::Sqlite => run(
            SqliteStore::open(database)?,
            archive,
            &plan,
            options,
            &media_dir,
        ),
        Backend::Rocksdb => run(
            RocksStore::open(database)?,
            archive,
            &plan,
            options,
            &media_dir,
        ),
    }
}

fn run<S: Store>(
    mut store: S,
    archive: &Archive,
    plan: &Plan,
    options: &WriteOptions,
    media_dir: &Path,
) -> Result<WriteSummary> {
    // A different server key means a different server: refuse before marking anything.
    if let Some(existing) = store.get("global", b"keypair")? {
        let version = existing.split(|b| *b == SEP).next().unwrap_or_default();
        if version != plan.key.version.as_bytes() {
            return Err(Error::Config(format!(
                "the database already has server key ed25519:{}, the archive {}",
                String::from_utf8_lossy(version),
                plan.key.key_id()
            )));
        }
    }
    let mut w = Writer::begin(store, &plan.server_name)?;
    w.state_window = options.state_window;
    w.recent = options.recent;
    write_into(w, archive, plan, media_dir).map_err(|e| Error::Interrupted(Box::new(e)))
}

fn write_into<S: Store>(
    mut w: Writer<S>,
    archive: &Archive,
    plan: &Plan,
    media_dir: &Path,
) -> Result<WriteSummary> {
    let mut sum = WriteSummary {
        server_name: w.server_name.clone(),
        ..Default::default()
    };
    w.put_keypair(&plan.key)?;

    let mut admins = Vec::new();
    for path in &plan.user_files {
        let user: UserRecord = fsutil::read_json(path)?;
        if user.admin && !user.deactivated {
            admins.push((user.user_id.clone(), user.displayname.clone()));
        }
        if w.was_complete
            && w.store
                .get("userid_password", user.user_id.as_bytes())?
                .is_some()
        {
            sum.users_kept += 1;
            continue;
        }
        w.put_user(&user)?;
        sum.users += 1;
    }
    w.commit()?;

    // Before the archive's rooms, so `#admins:S` is the admin room's alias.
    sum.admin_room = w.put_admin_room(&plan.key, &admins)?;
    sum.admins = admins.into_iter().map(|(id, _)| id).collect();
    w.commit()?;

    let admins_alias = format!("#admins:{}", w.server_name);
    let mut since_commit = 0;
    for meta in &plan.rooms {
        let dir = archive.room_dir(&meta.room_id);
        if meta.aliases.contains(&admins_alias) {
            sum.warnings.push(format!(
                "{admins_alias} named room {} on Synapse; Conduit reserves it for its admin room, so that room keeps its other aliases only",
                meta.room_id
            ));
        }
        let outliers = PduReader::open(&dir.join(OUTLIERS))?.collect::<Result<Vec<_>>>()?;
        let report = w.put_room(
            meta,
            &outliers,
            PduReader::open(&dir.join(EVENTS))?.prefetched(),
        )?;
        sum.rooms += 1;
        sum.events += report.events;
        sum.events_already_there += report.skipped_existing;
        sum.state_snapshots += report.snapshots;
        sum.state_resolutions += report.resolutions;
        sum.state_loads += report.state_loads;
        sum.left_to_backfill += report.left_to_backfill;
        // Small rooms share a commit (each commit costs a WAL sync and, in SQLite, a walk over
        // its page cache); a crash loses only rooms the counter does not cover yet, which the
        // next run writes again.
        since_commit += report.events + 1;
        if since_commit >= COMMIT_EVERY {
            w.commit()?;
            since_commit = 0;
        }
    }
    w.commit()?;

    for meta in &plan.media {
        w.put_media(meta, &archive.media_blob_path(&meta.sha256), media_dir)?;
        sum.media += 1;
        if sum.media.is_multiple_of(1000) {
            w.commit()?;
        }
    }
    w.finish()?;
    Ok(sum)
}

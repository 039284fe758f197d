//! `conduit write`: an archive into a Conduit database — keys, users, rooms — resumable and
//! safe to re-run (everything is keyed so a second write adds nothing).

use std::path::{Path, PathBuf};

use crate::archive::media::MediaMeta;
use crate::archive::room::{PduReader, RoomMeta, EVENTS, OUTLIERS};
use crate::archive::user::UserRecord;
use crate::archive::{fsutil, Archive, Manifest};
use crate::conduit::schema::SEP;
use crate::conduit::store::{
    refuse_if_open, rocksdb::RocksStore, sqlite::SqliteStore, Backend, Store,
};
use crate::conduit::writer::Writer;
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
}

impl WriteOptions {
    pub fn new(backend: Backend) -> Self {
        WriteOptions {
            backend,
            media_dir: None,
            state_window: crate::conduit::writer::rooms::STATE_WINDOW,
        }
    }
}

/// What a write did.
#[derive(Debug, Default, Clone)]
pub struct WriteSummary {
    pub server_name: String,
    pub users: u64,
    pub rooms: u64,
    pub events: u64,
    pub events_already_there: u64,
    pub state_snapshots: u64,
    pub state_resolutions: u64,
    /// States read back from the database because they had left the in-memory window.
    pub state_loads: u64,
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
    let manifest: Manifest = fsutil::read_json(&archive.manifest_path())?;
    let media_dir = options
        .media_dir
        .clone()
        .unwrap_or_else(|| database.join("media"));
    match options.backend {
        Backend::Sqlite => {
            let mut w = Writer::begin(SqliteStore::open(database)?, &manifest.server_name)?;
            w.state_window = options.state_window;
            write_into(w, archive, &media_dir)
        }
        Backend::Rocksdb => {
            let mut w = Writer::begin(RocksStore::open(database)?, &manifest.server_name)?;
            w.state_window = options.state_window;
            write_into(w, archive, &media_dir)
        }
    }
}

fn write_into<S: Store>(
    mut w: Writer<S>,
    archive: &Archive,
    media_dir: &Path,
) -> Result<WriteSummary> {
    let mut sum = WriteSummary {
        server_name: w.server_name.clone(),
        ..Default::default()
    };
    let key_path = archive.keys_dir().join("signing.key");
    let key = ServerKey::read_synapse(&key_path)?.remove(0);
    if let Some(existing) = w.store.get("global", b"keypair")? {
        let version = existing.split(|b| *b == SEP).next().unwrap_or_default();
        if version != key.version.as_bytes() {
            return Err(Error::Config(format!(
                "the database already has server key ed25519:{}, the archive {}",
                String::from_utf8_lossy(version),
                key.key_id()
            )));
        }
    }
    w.put_keypair(&key)?;

    let users_dir = archive.root().join("users");
    let mut user_files: Vec<_> = std::fs::read_dir(&users_dir)
        .map_err(|e| Error::io("cannot list", &users_dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    user_files.sort();
    let mut admins = Vec::new();
    let server_user = format!("@conduit:{}", w.server_name);
    for path in user_files {
        let user: UserRecord = fsutil::read_json(&path)?;
        if user.user_id == server_user {
            return Err(Error::Config(format!(
                "the archive has a user {server_user}, a name Conduit reserves for its server user; \
                 rename that user on Synapse before migrating"
            )));
        }
        w.put_user(&user)?;
        if user.admin && !user.deactivated {
            admins.push((user.user_id.clone(), user.displayname.clone()));
        }
        sum.users += 1;
    }
    w.commit()?;

    // Before the archive's rooms, so `#admins:S` is the admin room's alias.
    sum.admin_room = w.put_admin_room(&key, &admins)?;
    sum.admins = admins.into_iter().map(|(id, _)| id).collect();
    w.commit()?;

    let admins_alias = format!("#admins:{}", w.server_name);
    for room_id in archive.room_ids()? {
        let dir = archive.room_dir(&room_id);
        let meta: RoomMeta = fsutil::read_json(&dir.join("room.json"))?;
        if meta.aliases.contains(&admins_alias) {
            sum.warnings.push(format!(
                "{admins_alias} named room {room_id} on Synapse; Conduit reserves it for its admin room, so that room keeps its other aliases only"
            ));
        }
        let outliers = PduReader::open(&dir.join(OUTLIERS))?.collect::<Result<Vec<_>>>()?;
        let report = w.put_room(&meta, &outliers, PduReader::open(&dir.join(EVENTS))?)?;
        sum.rooms += 1;
        sum.events += report.events;
        sum.events_already_there += report.skipped_existing;
        sum.state_snapshots += report.snapshots;
        sum.state_resolutions += report.resolutions;
        sum.state_loads += report.state_loads;
        w.commit()?;
    }

    let meta_dir = archive.root().join("media/meta");
    let mut media_files: Vec<PathBuf> = match std::fs::read_dir(&meta_dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(_) => Vec::new(),
    };
    media_files.sort();
    for path in media_files {
        let meta: MediaMeta = fsutil::read_json(&path)?;
        w.put_media(&meta, &archive.media_blob_path(&meta.sha256), media_dir)?;
        sum.media += 1;
        if sum.media % 1000 == 0 {
            w.commit()?;
        }
    }
    w.finish()?;
    Ok(sum)
}

//! `conduit write`: an archive into a Conduit database — keys, users, rooms — resumable and
//! safe to re-run (everything is keyed so a second write adds nothing).

use std::path::Path;

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
}

/// Writes the archive into the database at `database` (created if missing).
pub fn write_archive(archive: &Archive, database: &Path, backend: Backend) -> Result<WriteSummary> {
    refuse_if_open(database)?;
    let manifest: Manifest = fsutil::read_json(&archive.manifest_path())?;
    match backend {
        Backend::Sqlite => write_into(
            Writer::begin(SqliteStore::open(database)?, &manifest.server_name)?,
            archive,
        ),
        Backend::Rocksdb => write_into(
            Writer::begin(RocksStore::open(database)?, &manifest.server_name)?,
            archive,
        ),
    }
}

fn write_into<S: Store>(mut w: Writer<S>, archive: &Archive) -> Result<WriteSummary> {
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
    for path in user_files {
        let user: UserRecord = fsutil::read_json(&path)?;
        w.put_user(&user)?;
        sum.users += 1;
    }
    w.commit()?;

    for room_id in archive.room_ids()? {
        let dir = archive.room_dir(&room_id);
        let meta: RoomMeta = fsutil::read_json(&dir.join("room.json"))?;
        let outliers = PduReader::open(&dir.join(OUTLIERS))?.collect::<Result<Vec<_>>>()?;
        let report = w.put_room(&meta, &outliers, PduReader::open(&dir.join(EVENTS))?)?;
        sum.rooms += 1;
        sum.events += report.events;
        sum.events_already_there += report.skipped_existing;
        sum.state_snapshots += report.snapshots;
        sum.state_resolutions += report.resolutions;
        w.commit()?;
    }
    w.finish()?;
    Ok(sum)
}

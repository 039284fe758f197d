//! Everything about an archive that can be checked before a database is touched: a problem
//! found here costs nothing, the same problem found half-way costs an interrupted write.

use std::path::{Path, PathBuf};

use crate::archive::media::MediaMeta;
use crate::archive::room::{RoomMeta, EVENTS, OUTLIERS};
use crate::archive::user::UserRecord;
use crate::archive::{fsutil, Archive, Manifest};
use crate::error::{Error, Result};
use crate::matrix::keys::ServerKey;
use crate::matrix::pdu;

/// What a write will do, read and checked up front.
pub struct Plan {
    pub server_name: String,
    pub key: ServerKey,
    pub user_files: Vec<PathBuf>,
    /// Users who are Synapse admins and active (user id, display name): Conduit admins.
    pub admins: Vec<(String, Option<String>)>,
    pub rooms: Vec<RoomMeta>,
    pub media: Vec<MediaMeta>,
}

fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("cannot list", dir, e)),
    };
    files.sort();
    Ok(files)
}

/// Reads the archive's metadata and reports every problem at once.
pub fn preflight(archive: &Archive) -> Result<Plan> {
    let manifest: Manifest = fsutil::read_json(&archive.manifest_path())?;
    let server = manifest.server_name.clone();
    let key = ServerKey::read_synapse(&archive.keys_dir().join("signing.key"))?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Archive {
            path: archive.keys_dir(),
            reason: "signing.key holds no key".into(),
        })?;
    let mut problems = Vec::new();

    let user_files = json_files(&archive.root().join("users"))?;
    let mut admins = Vec::new();
    for path in &user_files {
        match fsutil::read_json::<UserRecord>(path) {
            Err(e) => problems.push(e.to_string()),
            Ok(u) if !u.user_id.ends_with(&format!(":{server}")) => problems.push(format!(
                "{}: {} is not a user of {server}",
                path.display(),
                u.user_id
            )),
            Ok(u) if u.user_id == format!("@conduit:{server}") => problems.push(format!(
                "the archive has a user {}, a name Conduit reserves for its server user; \
                 rename that user on Synapse before migrating",
                u.user_id
            )),
            Ok(u) => {
                if u.admin && !u.deactivated {
                    admins.push((u.user_id, u.displayname));
                }
            }
        }
    }

    let mut rooms = Vec::new();
    let mut old_rooms = Vec::new();
    for room_id in archive.room_ids()? {
        let dir = archive.room_dir(&room_id);
        let meta: RoomMeta = match fsutil::read_json(&dir.join("room.json")) {
            Ok(m) => m,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        if matches!(meta.version.as_str(), "1" | "2") {
            old_rooms.push(format!("{room_id} (version {})", meta.version));
        } else if pdu::rules_for(&meta.version).is_none() {
            problems.push(format!(
                "room {room_id} has unknown room version {:?}",
                meta.version
            ));
        }
        for file in [EVENTS, OUTLIERS] {
            if !dir.join(file).is_file() {
                problems.push(format!("{}: missing", dir.join(file).display()));
            }
        }
        rooms.push(meta);
    }
    if !old_rooms.is_empty() {
        problems.push(format!(
            "Conduit cannot store rooms of version 1 or 2: {}. Upgrade them on Synapse \
             (/upgrade in a client) and dump again, or delete their directories from the \
             archive's rooms/ to migrate without them",
            old_rooms.join(", ")
        ));
    }

    let mut media = Vec::new();
    for path in json_files(&archive.root().join("media/meta"))? {
        match fsutil::read_json::<MediaMeta>(&path) {
            Err(e) => problems.push(e.to_string()),
            Ok(m) => {
                if !archive.media_blob_path(&m.sha256).is_file() {
                    problems.push(format!("media {}: its bytes are missing", m.media_id));
                }
                media.push(m);
            }
        }
    }

    if !problems.is_empty() {
        return Err(Error::Archive {
            path: archive.root().to_owned(),
            reason: format!(
                "{} problem(s), nothing was written:\n  - {}",
                problems.len(),
                problems.join("\n  - ")
            ),
        });
    }
    Ok(Plan {
        server_name: server,
        key,
        user_files,
        admins,
        rooms,
        media,
    })
}

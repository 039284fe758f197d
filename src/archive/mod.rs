//! The archive: the on-disk dump of a Matrix server, written by `synapse dump` and read by the
//! sinks. See `docs/ARCHIVE.md` for the layout; this module is the only code that knows it.

pub mod checkpoint;
pub mod finalize;
pub mod fsutil;
pub mod manifest;
pub mod media;
pub mod room;
pub mod user;

use std::path::{Path, PathBuf};

pub use checkpoint::{Checkpoint, Entry, ItemKind};
pub use manifest::Manifest;

use crate::error::Result;

/// The version of the archive layout this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// An archive directory.
#[derive(Debug, Clone)]
pub struct Archive {
    root: PathBuf,
}

impl Archive {
    /// Opens (creating if needed) an archive directory.
    pub fn create(root: &Path) -> Result<Self> {
        fsutil::create_dir_all(root)?;
        Ok(Archive {
            root: root.to_owned(),
        })
    }

    /// An archive directory that must already exist.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.join("manifest.json").is_file() {
            return Err(crate::Error::Archive {
                path: root.to_owned(),
                reason: "no manifest.json: not an archive written by `synapse dump`".into(),
            });
        }
        Ok(Archive {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join("manifest.json")
    }
    pub fn checkpoint_path(&self) -> PathBuf {
        self.root.join("checkpoint.jsonl")
    }
    pub fn report_path(&self) -> PathBuf {
        self.root.join("report.json")
    }
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// Every room id the source server had when its rooms were dumped (`--room` included).
    pub fn source_rooms_path(&self) -> PathBuf {
        self.root.join("source-rooms.json")
    }

    /// The file of one user: `users/<percent-encoded localpart>.json`.
    pub fn user_path(&self, user_id: &str) -> PathBuf {
        let localpart = user_id
            .trim_start_matches('@')
            .split(':')
            .next()
            .unwrap_or(user_id);
        self.root
            .join("users")
            .join(format!("{}.json", urlencoding::encode(localpart)))
    }

    /// The directory of one room: `rooms/<percent-encoded room id>/`.
    pub fn room_dir(&self, room_id: &str) -> PathBuf {
        self.root
            .join("rooms")
            .join(urlencoding::encode(room_id).as_ref())
    }

    /// The metadata file of one media item.
    pub fn media_meta_path(&self, media_id: &str) -> PathBuf {
        self.root
            .join("media/meta")
            .join(format!("{}.json", urlencoding::encode(media_id)))
    }

    /// A mapping file (source id → Matrix id): `mapping/<percent-encoded name>.json`.
    pub fn mapping_path(&self, name: &str) -> PathBuf {
        self.root
            .join("mapping")
            .join(format!("{}.json", urlencoding::encode(name)))
    }

    /// The content-addressed file holding media bytes with this sha256.
    pub fn media_blob_path(&self, sha256: &str) -> PathBuf {
        self.root
            .join("media/blobs")
            .join(sha256.get(..2).unwrap_or_default())
            .join(sha256)
    }

    /// A path relative to the root, as recorded in checksums and the manifest.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Every room directory in the archive, with the room id it holds.
    pub fn room_ids(&self) -> Result<Vec<String>> {
        let dir = self.root.join("rooms");
        let mut ids = Vec::new();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Ok(ids);
        };
        for entry in rd {
            let entry = entry.map_err(|e| crate::Error::io("cannot list", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                continue;
            }
            if let Ok(id) = urlencoding::decode(&name) {
                ids.push(id.into_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }
}

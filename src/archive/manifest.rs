//! `manifest.json`: what the archive holds, where it came from, and a checksum of every file.
//!
//! It has no timestamps on purpose: two dumps of the same server give the same manifest, so
//! comparing manifests compares archives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The archive manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub server_name: String,
    pub source: Source,
    pub counts: Counts,
    /// Files that hold secrets (tokens, password hashes, key backups, signing keys): mode 0600.
    pub secret_files: Vec<String>,
    /// sha256 of every file, by path relative to the archive root.
    pub files: BTreeMap<String, String>,
    /// How many problems the dump reported (details in `report.json`).
    pub errors: u64,
}

/// Where the archive came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub kind: String,
    pub version: String,
}

/// What the archive holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub users: u64,
    pub rooms: u64,
    pub events: u64,
    pub media: u64,
    pub media_bytes: u64,
    pub key_backup_sessions: u64,
}

//! `manifest.json` and `report.json`, written last from the checkpoint: a source (Synapse dump,
//! Mattermost import) records each finished item there, and this turns the log into the
//! archive's table of contents. An archive without a manifest is unfinished.

use std::collections::BTreeMap;

use crate::archive::{fsutil, manifest, Archive, Checkpoint, ItemKind, Manifest, FORMAT_VERSION};
use crate::error::Result;

/// Writes `manifest.json` and `report.json` from the checkpoint (only when they change, so a
/// run that dumped nothing new leaves the archive byte-for-byte as it was).
pub fn finalize(
    archive: &Archive,
    checkpoint: &Checkpoint,
    server_name: &str,
    source: manifest::Source,
) -> Result<Manifest> {
    let mut counts = manifest::Counts::default();
    let mut files = BTreeMap::new();
    let mut secret_files = Vec::new();
    let mut report = Vec::new();
    for kind in [
        ItemKind::Keys,
        ItemKind::User,
        ItemKind::Room,
        ItemKind::Media,
        ItemKind::Step,
    ] {
        for e in checkpoint.entries(kind) {
            match kind {
                ItemKind::User => {
                    counts.users += 1;
                    counts.key_backup_sessions +=
                        e.counts.get("key_backup_sessions").copied().unwrap_or(0);
                }
                ItemKind::Room => {
                    counts.rooms += 1;
                    counts.events += e.counts.get("events").copied().unwrap_or(0);
                }
                ItemKind::Media => {
                    counts.media += 1;
                    counts.media_bytes += e.counts.get("bytes").copied().unwrap_or(0);
                }
                ItemKind::Keys | ItemKind::Step => {}
            }
            if matches!(kind, ItemKind::User | ItemKind::Keys) {
                secret_files.extend(e.files.keys().cloned());
            }
            files.extend(e.files.clone());
            for err in &e.errors {
                report.push(serde_json::json!({"kind": kind, "id": e.id, "error": err}));
            }
        }
    }
    secret_files.sort();
    secret_files.dedup();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        server_name: server_name.to_owned(),
        source,
        counts,
        secret_files,
        files,
        errors: report.len() as u64,
    };
    write_if_changed(&archive.manifest_path(), &manifest)?;
    write_if_changed(
        &archive.report_path(),
        &serde_json::json!({ "errors": report }),
    )?;
    Ok(manifest)
}

fn write_if_changed<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq>(
    path: &std::path::Path,
    value: &T,
) -> Result<()> {
    if path.is_file() {
        if let Ok(old) = fsutil::read_json::<T>(path) {
            if old == *value {
                return Ok(());
            }
        }
    }
    fsutil::write_json(path, value, false)
}

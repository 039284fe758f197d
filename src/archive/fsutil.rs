//! Crash-safe file writes: write a temporary sibling, fsync, rename. A reader (or a resumed run)
//! sees either the old file or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Creates a directory and its parents.
pub fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io("cannot create directory", path, e))
}

/// Opens a new file for writing; `secret` files are created with mode 0600 from the start, so
/// the content is never readable by others even for a moment.
pub fn create_file(path: &Path, secret: bool) -> Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let file = opts
        .open(path)
        .map_err(|e| Error::io("cannot create", path, e))?;
    #[cfg(unix)]
    if secret {
        // An existing file keeps its old mode through `open`; force it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("cannot set mode 0600 on", path, e))?;
    }
    Ok(file)
}

/// The temporary name used while `path` is being written.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    write_atomic_with(path, secret, |out, tmp| {
        out.write_all(bytes)
            .map_err(|e| Error::io("cannot write", tmp, e))
    })
}

/// Writes `path` atomically: `fill` writes the content into the temporary sibling (its path is
/// the second argument), which is then synced and renamed into place.
fn write_atomic_with(
    path: &Path,
    secret: bool,
    fill: impl FnOnce(&mut BufWriter<File>, &Path) -> Result<()>,
) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_dir_all(parent)?;
    }
    let tmp = tmp_path(path);
    let mut out = BufWriter::new(create_file(&tmp, secret)?);
    fill(&mut out, &tmp)?;
    let f = out
        .into_inner()
        .map_err(|e| Error::io("cannot write", &tmp, e.into_error()))?;
    f.sync_all()
        .map_err(|e| Error::io("cannot sync", &tmp, e))?;
    drop(f);
    rename(&tmp, path)
}

/// Renames, with context.
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| Error::io("cannot rename into place", to, e))
}

/// Serializes `value` as pretty JSON and writes it atomically. The JSON goes to the file as it
/// is made, never whole into memory: a big room's mapping file is tens of megabytes.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T, secret: bool) -> Result<()> {
    write_atomic_with(path, secret, |out, tmp| {
        serde_json::to_writer_pretty(&mut *out, value).map_err(|e| {
            if e.is_io() {
                Error::io("cannot write", tmp, e.into())
            } else {
                Error::malformed(path.display().to_string(), e)
            }
        })?;
        out.write_all(b"\n")
            .map_err(|e| Error::io("cannot write", tmp, e))
    })
}

/// Reads and parses a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Archive {
        path: path.to_owned(),
        reason: format!("not valid JSON of the expected shape: {e}"),
    })
}

/// Hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Hex sha256 of a file's content.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut f = File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io("cannot read", path, e))?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_0600_and_writes_are_atomic() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/secret.json");
        write_json(&p, &serde_json::json!({"k": 1}), true).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!tmp_path(&p).exists());
        let v: serde_json::Value = read_json(&p).unwrap();
        assert_eq!(v["k"], 1);
        // Rewriting a public file as secret tightens its mode.
        let q = dir.path().join("q");
        write_atomic(&q, b"x", false).unwrap();
        write_atomic(&q, b"y", true).unwrap();
        assert_eq!(
            fs::metadata(&q).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

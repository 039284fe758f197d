//! Media in Conduit's layout (conduit-db.md §8): the bytes under `<media dir>/<hex[0..2]>/
//! <hex[2..4]>/<hex[4..]>` (Conduit's default "deep" structure), then the metadata trees that
//! make a download succeed. The file is written first, so metadata never points at nothing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Writer;
use crate::archive::fsutil;
use crate::archive::media::MediaMeta;
use crate::conduit::schema::{joined, u64be, SEP};
use crate::conduit::store::Store;
use crate::error::{Error, Result};

/// Where Conduit keeps a file with this sha256 (hex) under `base`.
pub fn media_file_path(base: &Path, sha256_hex: &str) -> PathBuf {
    base.join(&sha256_hex[..2])
        .join(&sha256_hex[2..4])
        .join(&sha256_hex[4..])
}

/// Copies `src` to `dst` (via a temporary name), checking that the bytes hash to `sha256_hex`.
fn copy_checked(src: &Path, dst: &Path, sha256_hex: &str) -> Result<u64> {
    let mut input = std::fs::File::open(src).map_err(|e| Error::io("cannot open", src, e))?;
    if let Some(dir) = dst.parent() {
        fsutil::create_dir_all(dir)?;
    }
    let tmp = fsutil::tmp_path(dst);
    let mut out = fsutil::create_file(&tmp, false)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| Error::io("cannot read", src, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| Error::io("cannot write", &tmp, e))?;
        len += n as u64;
    }
    out.sync_all()
        .map_err(|e| Error::io("cannot write", &tmp, e))?;
    if hex::encode(hasher.finalize()) != sha256_hex {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Archive {
            path: src.to_owned(),
            reason: "the bytes do not hash to the file's name: the archive is damaged".into(),
        });
    }
    fsutil::rename(&tmp, dst)?;
    Ok(len)
}

impl<S: Store> Writer<S> {
    /// Writes one media item: its file under `media_dir` (skipped when present) and its
    /// metadata. `blob` is the archive's copy of the bytes.
    pub fn put_media(&mut self, meta: &MediaMeta, blob: &Path, media_dir: &Path) -> Result<()> {
        let sha = hex::decode(&meta.sha256)
            .ok()
            .filter(|s| s.len() == 32)
            .ok_or_else(|| Error::Archive {
                path: blob.to_owned(),
                reason: format!("media {}: {:?} is not a sha256", meta.media_id, meta.sha256),
            })?;
        let file = media_file_path(media_dir, &meta.sha256);
        let size = match std::fs::metadata(&file) {
            Ok(m) => m.len(),
            Err(_) => copy_checked(blob, &file, &meta.sha256)?,
        };
        let server_media = joined(&[meta.server_name.as_bytes(), meta.media_id.as_bytes()]);
        if self.store.get("filehash_metadata", &sha)?.is_none() {
            // Created and last accessed "now" (seconds): retention counts age from there, and a
            // time in the future would wrap around and delete the file.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mut v = u64be(size).to_vec();
            v.extend_from_slice(&u64be(now));
            v.extend_from_slice(&u64be(now));
            self.store.put("filehash_metadata", &sha, &v)?;
        }
        let mut k = sha.clone();
        k.extend_from_slice(&server_media);
        // This entry is what makes the file count as local media, which retention never deletes.
        self.store.put("filehash_servername_mediaid", &k, b"")?;
        let mut v = sha.clone();
        v.extend_from_slice(meta.upload_name.as_deref().unwrap_or("").as_bytes());
        v.push(SEP);
        v.extend_from_slice(meta.content_type.as_deref().unwrap_or("").as_bytes());
        // The trailing FF: also served on the legacy unauthenticated endpoints, as Synapse did.
        v.push(SEP);
        self.store
            .put("servernamemediaid_metadata", &server_media, &v)?;
        if let Some(local) = meta
            .uploader
            .as_deref()
            .and_then(|u| u.strip_prefix('@'))
            .and_then(|u| u.split(':').next())
        {
            self.store.put(
                "servername_userlocalpart_mediaid",
                &joined(&[
                    meta.server_name.as_bytes(),
                    local.as_bytes(),
                    meta.media_id.as_bytes(),
                ]),
                b"",
            )?;
            self.store.put(
                "servernamemediaid_userlocalpart",
                &server_media,
                local.as_bytes(),
            )?;
        }
        if let Some(by) = &meta.quarantined_by {
            let mut v = u64be(meta.created_ts.unwrap_or(0).max(0) as u64 / 1000).to_vec();
            v.extend_from_slice(format!("quarantined in Synapse by {by}").as_bytes());
            self.store
                .put("blocked_servername_mediaid", &server_media, &v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_layout_splits_the_hash() {
        let p = media_file_path(Path::new("/m"), &"ab12cd".repeat(11)[..64]);
        let s = p.to_string_lossy();
        assert!(s.starts_with("/m/ab/12/cd"), "{s}");
        assert_eq!(p.file_name().unwrap().len(), 60);
    }
}

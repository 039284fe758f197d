//! The server signing key (and old keys, and the password pepper) into `keys/`, mode 0600.

use std::collections::BTreeMap;

use super::{Ctx, DumpSummary};
use crate::archive::{fsutil, Entry, ItemKind};
use crate::error::{Error, Result};

const ID: &str = "signing";

pub(super) async fn dump(ctx: &Ctx<'_>, summary: &mut DumpSummary) -> Result<()> {
    if ctx.skip(ItemKind::Keys, ID) {
        summary.note("keys", true);
        return Ok(());
    }
    let src = ctx.source;
    if src.keys.is_empty() {
        return Err(Error::Config(
            "no signing key to dump: set homeserver_yaml or signing_key".into(),
        ));
    }
    let dir = ctx.archive.keys_dir();
    let mut files = BTreeMap::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = dir.join(name);
        fsutil::write_atomic(&path, bytes, true)?;
        files.insert(ctx.archive.relative(&path), fsutil::sha256_hex(bytes));
        Ok(())
    };
    let text: String = src
        .keys
        .iter()
        .map(|k| k.synapse_line().to_string())
        .collect();
    put("signing.key", text.as_bytes())?;
    let hs = src.homeserver.as_ref();
    let old = hs
        .and_then(|h| h.old_signing_keys.clone())
        .unwrap_or_else(|| serde_json::json!({}));
    put(
        "old_signing_keys.json",
        serde_json::to_string_pretty(&old)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    if let Some(pepper) = hs
        .and_then(|h| h.password_config.as_ref())
        .and_then(|p| p.pepper.as_deref())
    {
        put("password_pepper", pepper.as_bytes())?;
    }
    ctx.checkpoint.record(Entry {
        kind: ItemKind::Keys,
        id: ID.into(),
        files,
        counts: BTreeMap::from([("keys".into(), src.keys.len() as u64)]),
        errors: vec![],
    })?;
    summary.note("keys", false);
    Ok(())
}

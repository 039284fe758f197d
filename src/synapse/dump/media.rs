//! Media: every local item each user uploaded, downloaded through authenticated media, checked
//! against Synapse's own sha256, stored content-addressed with its metadata.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{for_each_item, Ctx, DumpSummary, Item};
use crate::archive::media::MediaMeta;
use crate::archive::{fsutil, Entry, ItemKind};
use crate::error::Result;

pub(super) async fn dump(ctx: &Ctx<'_>, users: &[Value], summary: &mut DumpSummary) -> Result<()> {
    let mut items: Vec<Item<(String, Value)>> = Vec::new();
    for u in users {
        let Some(uid) = u.get("name").and_then(Value::as_str) else {
            continue;
        };
        for m in ctx.source.admin.user_media(uid).await? {
            let id = m["media_id"].as_str().unwrap_or_default().to_owned();
            let weight = m["media_length"].as_u64().unwrap_or(0);
            items.push(Item {
                id,
                weight,
                data: (uid.to_owned(), m),
            });
        }
    }
    let bar = ctx
        .progress
        .bytes("media", items.iter().map(|i| i.weight).sum());
    let work = |_id: String, (uploader, m): (String, Value)| async move {
        dump_one(ctx, &uploader, &m).await
    };
    for_each_item(ctx, ItemKind::Media, items, bar, work, summary).await;
    Ok(())
}

async fn dump_one(ctx: &Ctx<'_>, uploader: &str, m: &Value) -> Result<()> {
    let server = &ctx.source.server_name;
    let media_id = m["media_id"].as_str().unwrap_or_default();
    let body = ctx.source.admin.download_media(server, media_id).await?;
    let sha256 = fsutil::sha256_hex(&body.bytes);
    let mut errors = Vec::new();
    if let Some(expected) = m["sha256"].as_str() {
        if expected != sha256 {
            errors.push(format!(
                "downloaded bytes have sha256 {sha256}, Synapse recorded {expected}"
            ));
        }
    }
    let blob = ctx.archive.media_blob_path(&sha256);
    if !blob.is_file() {
        fsutil::write_atomic(&blob, &body.bytes, false)?;
    }
    let meta = MediaMeta {
        server_name: server.clone(),
        media_id: media_id.to_owned(),
        content_type: m["media_type"]
            .as_str()
            .map(str::to_owned)
            .or(body.content_type),
        upload_name: m["upload_name"].as_str().map(str::to_owned),
        uploader: Some(uploader.to_owned()),
        created_ts: m["created_ts"].as_i64(),
        length: body.bytes.len() as u64,
        sha256: sha256.clone(),
        quarantined_by: m["quarantined_by"].as_str().map(str::to_owned),
    };
    let meta_path = ctx.archive.media_meta_path(media_id);
    let mut bytes = serde_json::to_vec_pretty(&meta).expect("media meta serializes");
    bytes.push(b'\n');
    fsutil::write_atomic(&meta_path, &bytes, false)?;
    ctx.checkpoint.record(Entry {
        kind: ItemKind::Media,
        id: media_id.to_owned(),
        files: BTreeMap::from([
            (ctx.archive.relative(&meta_path), fsutil::sha256_hex(&bytes)),
            (ctx.archive.relative(&blob), sha256),
        ]),
        counts: BTreeMap::from([("bytes".into(), meta.length)]),
        errors,
    })
}

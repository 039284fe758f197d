//! `synapse dump`: a live Synapse → an archive. Each step (keys, users, rooms, media) walks its
//! items with bounded concurrency, writes each item atomically and records it in the checkpoint,
//! so a killed dump resumes where it stopped and a finished one is not redone unless `--refresh`.

mod collect;
mod keys;
mod media;

mod rooms;
mod users;

use std::collections::BTreeMap;

use crate::archive::{manifest, Archive, Checkpoint, ItemKind, Manifest};
use crate::error::Result;
use crate::progress::Progress;
use crate::synapse::Source;

/// What to dump.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    pub users: bool,
    pub rooms: bool,
    pub media: bool,
    pub keys: bool,
    /// Only this user (with `users`).
    pub only_user: Option<String>,
    /// Only this room (with `rooms`).
    pub only_room: Option<String>,
    /// Redo items already done.
    pub refresh: bool,
}

/// What a dump did.
#[derive(Debug, Clone, Default)]
pub struct DumpSummary {
    /// Items dumped in this run (not skipped).
    pub dumped: BTreeMap<&'static str, u64>,
    /// Items skipped because the checkpoint had them.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Items that failed in this run (they are retried on the next run).
    pub failed: Vec<String>,
    /// The manifest after this run.
    pub manifest: Option<Manifest>,
}

impl DumpSummary {
    fn note(&mut self, kind: &'static str, skipped: bool) {
        *if skipped {
            &mut self.skipped
        } else {
            &mut self.dumped
        }
        .entry(kind)
        .or_default() += 1;
    }
}

/// Runs the dump.
pub async fn run(
    source: &mut Source,
    archive: &Archive,
    opts: &DumpOptions,
) -> Result<DumpSummary> {
    let checkpoint = Checkpoint::open(&archive.checkpoint_path())?;
    if opts.refresh && opts.only_user.is_none() && opts.only_room.is_none() {
        checkpoint.clear()?;
    }
    if opts.keys || opts.rooms {
        // Rooms are verified against the published key, so check it first.
        source.check_signing_key().await?;
    }
    let source: &Source = source;
    let progress = Progress::new();
    let mut summary = DumpSummary::default();
    let ctx = Ctx {
        source,
        archive,
        checkpoint: &checkpoint,
        progress: &progress,
        opts,
    };
    if opts.keys {
        keys::dump(&ctx, &mut summary).await?;
    }
    let users = if opts.users || opts.media {
        Some(users::list(&ctx).await?)
    } else {
        None
    };
    if opts.users {
        users::dump(&ctx, users.as_deref().unwrap_or_default(), &mut summary).await?;
    }
    if opts.rooms {
        rooms::dump(&ctx, &mut summary).await?;
    }
    if opts.media {
        media::dump(&ctx, users.as_deref().unwrap_or_default(), &mut summary).await?;
    }
    summary.manifest = Some(finalize(source, archive, &checkpoint)?);
    Ok(summary)
}

/// Everything a step needs.
struct Ctx<'a> {
    source: &'a Source,
    archive: &'a Archive,
    checkpoint: &'a Checkpoint,
    progress: &'a Progress,
    opts: &'a DumpOptions,
}

impl Ctx<'_> {
    /// Whether an item should be skipped (done, and no refresh asked for it).
    fn skip(&self, kind: ItemKind, id: &str) -> bool {
        !self.opts.refresh && self.checkpoint.is_done(kind, id)
    }
}

/// One item to dump: its id, its weight on the progress bar, and what the step needs.
struct Item<T> {
    id: String,
    weight: u64,
    data: T,
}

/// Runs `work` on every item the checkpoint does not have yet, `concurrency` at a time,
/// advancing `bar` by each item's weight, and records the outcomes in the summary. A failed
/// item is reported and left out of the checkpoint, so the next run retries it.
async fn for_each_item<'a, T, Fut>(
    ctx: &'a Ctx<'a>,
    kind: ItemKind,
    items: Vec<Item<T>>,
    bar: indicatif::ProgressBar,
    work: impl Fn(String, T) -> Fut,
    summary: &mut DumpSummary,
) where
    Fut: std::future::Future<Output = Result<()>> + 'a,
{
    use futures::{stream, StreamExt};
    let bar = &bar;
    let results: Vec<(String, Result<bool>)> = stream::iter(items)
        .map(|item| {
            let job = (!ctx.skip(kind, &item.id)).then(|| work(item.id.clone(), item.data));
            async move {
                let res = match job {
                    Some(job) => job.await.map(|()| false),
                    None => Ok(true),
                };
                bar.inc(item.weight);
                (item.id, res)
            }
        })
        .buffer_unordered(ctx.source.concurrency)
        .collect()
        .await;
    bar.finish_and_clear();
    let label = kind.plural();
    for (id, res) in results {
        match res {
            Ok(skipped) => summary.note(label, skipped),
            Err(e) => summary.failed.push(format!("{label} {id}: {e}")),
        }
    }
}

/// Writes `manifest.json` and `report.json` from the checkpoint.
pub fn finalize(source: &Source, archive: &Archive, checkpoint: &Checkpoint) -> Result<Manifest> {
    let kind = manifest::Source {
        kind: "synapse".into(),
        version: source.version.clone(),
    };
    crate::archive::finalize::finalize(archive, checkpoint, &source.server_name, kind)
}

//! One channel read, mapped and forged at once: its rows come from the database a page at a
//! time, each page is mapped and handed to the forge thread, and at most a few pages are in
//! memory however big the channel is.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::sync::OwnedSemaphorePermit;

use transition_matrix::error::Error;
use transition_matrix::import::forge::{Forged, RoomJob};
use transition_matrix::import::model::{Media, Page, Room, RoomKind, Skip};
use transition_matrix::mattermost::db::MattermostDb;
use transition_matrix::mattermost::map::{ChannelRows, PostMapper};
use transition_matrix::mattermost::pages::{PageSink, Strays};
use transition_matrix::ssh::Ssh;

use super::source::{fetch_remote_files, file_paths};

/// Pages mapped ahead of the forge.
const PAGES_AHEAD: usize = 2;

/// The file store on the SSH host, and where its files are copied.
pub struct RemoteFiles {
    pub ssh: Ssh,
    pub remote: PathBuf,
    pub local: PathBuf,
}

/// What a channel's reading shares with the others.
#[derive(Clone)]
pub struct Readers {
    pub db: Arc<MattermostDb>,
    pub posts: Arc<PostMapper>,
    pub remote: Option<Arc<RemoteFiles>>,
    /// Posts a page.
    pub page_posts: usize,
}

/// A channel done: its room (without the timeline), what the forge made of it, the files it
/// refers to and what its posts left out.
pub struct ChannelDone {
    pub room: Room,
    pub forged: Option<Forged>,
    pub media: Vec<Media>,
    pub skipped: Vec<Skip>,
}

/// Reads channel `channel_id` into `job` (`read`: false when the room is in the archive
/// already), holding `permit` until the room is forged. Spawn it: the forge runs on a thread
/// of its own meanwhile.
pub fn run(
    readers: &Readers,
    channel_id: &str,
    read: bool,
    job: impl FnOnce(Option<mpsc::Receiver<Page>>) -> RoomJob,
    permit: OwnedSemaphorePermit,
) -> impl Future<Output = anyhow::Result<ChannelDone>> + Send + 'static {
    let (tx, rx) = mpsc::channel(PAGES_AHEAD);
    let job = job(read.then_some(rx));
    let kind = job.room().kind;
    let mut sink = read.then(|| ToForge {
        posts: readers.posts.clone(),
        remote: readers.remote.clone(),
        kind,
        tx,
        media: Vec::new(),
        skipped: Vec::new(),
    });
    let (db, page_posts) = (readers.db.clone(), readers.page_posts);
    let channel_id = channel_id.to_owned();
    async move {
        let forge = tokio::task::spawn_blocking(move || job.run());
        let read = match &mut sink {
            Some(sink) => db.channel_pages(&channel_id, page_posts, sink).await,
            None => Ok(Strays::default()),
        };
        let (media, mut skipped) = sink.map_or_else(Default::default, |s| (s.media, s.skipped));
        if let Ok(strays) = &read {
            skipped.extend(strays.history.iter().map(|(row, post)| Skip {
                kind: "edit-history",
                id: row.clone(),
                reason: format!(
                    "an edit-history row of post {post} that did not come with its post (another \
                     CreateAt, or the post is not in the channel); not imported"
                ),
            }));
        }
        // The sink (and with it the pages' sender) is gone: the forge finishes the room.
        let forged = forge.await;
        drop(permit);
        // The forge's own error first: a forge that stopped also stops the reading.
        let (room, forged) = forged??;
        read?;
        Ok(ChannelDone {
            room,
            forged,
            media,
            skipped,
        })
    }
}

/// Maps each page and hands it to the forge.
struct ToForge {
    posts: Arc<PostMapper>,
    remote: Option<Arc<RemoteFiles>>,
    kind: RoomKind,
    tx: mpsc::Sender<Page>,
    media: Vec<Media>,
    skipped: Vec<Skip>,
}

impl PageSink for ToForge {
    async fn page(&mut self, rows: ChannelRows) -> transition_matrix::error::Result<()> {
        if let Some(r) = &self.remote {
            fetch_remote_files(&r.ssh, &r.remote, file_paths(&rows.files), &r.local)
                .await
                .map_err(|e| Error::Mattermost(format!("copying files over SSH: {e:#}")))?;
        }
        let mapped = self.posts.page(self.kind, &rows);
        drop(rows);
        self.media.extend(mapped.media);
        self.skipped.extend(mapped.skipped);
        self.tx
            .send(mapped.page)
            .await
            .map_err(|_| Error::Mattermost("the forge stopped".into()))
    }
}

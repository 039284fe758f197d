//! Reading one channel a page at a time, so the posts in memory follow the page size, not the
//! channel.
//!
//! A channel's posts and edit-history rows come from one query, ordered by `(CreateAt, Id)` and
//! read as they arrive (the database sorts, in its own memory or on its disk). Its reactions and
//! files — far fewer and smaller rows — are read first, whole, and handed out with their posts'
//! pages. These are the three queries a channel always took: lookups per page by post id cost
//! the database a scan of the reactions per page, and joins ordered by the posts a sort per
//! table (both measured: twice the database's CPU).
//!
//! An edit-history row keeps its post's `CreateAt` (mattermost.md §2.2), so pages are cut only
//! where `CreateAt` changes and a post's history rows are in its page. A history row that comes
//! before its post waits for it; one that comes after its post's page (a database that broke
//! the rule) is reported, not lost silently.

use std::collections::HashMap;
use std::future::Future;

use futures::StreamExt;
use sqlx::any::AnyRow;

use crate::error::{Error, Result};
use crate::mattermost::db::{db_err, int, text, MattermostDb};
use crate::mattermost::map::ChannelRows;
use crate::mattermost::rows::{MmFile, MmPost, MmReaction};

/// Where [`MattermostDb::channel_pages`] hands each page.
pub trait PageSink {
    /// One page: about the page size of posts (live and deleted, in time order) and their
    /// edit-history rows; their reactions and files.
    fn page(&mut self, rows: ChannelRows) -> impl Future<Output = Result<()>> + Send;
}

/// Edit-history rows whose post never came in its channel's time order.
#[derive(Debug, Default)]
pub struct Strays {
    /// (history row id, the post it belongs to).
    pub history: Vec<(String, String)>,
}

impl MattermostDb {
    /// Reads channel `channel_id` into `sink`, about `page_posts` posts a page.
    pub async fn channel_pages(
        &self,
        channel_id: &str,
        page_posts: usize,
        sink: &mut impl PageSink,
    ) -> Result<Strays> {
        let c = checked_id(channel_id)?;
        let reactions = &mut HashMap::new();
        self.channel_reactions(c, reactions).await?;
        let files = &mut HashMap::new();
        self.channel_files(c, files).await?;
        let sql = format!(
            "SELECT {} FROM Posts WHERE ChannelId = '{c}' ORDER BY CreateAt, Id",
            self.post_columns().join(", ")
        );
        let mut rows = sqlx::query(&sql).fetch(&self.pool);
        let mut pager = Pager::default();
        while let Some(row) = rows.next().await {
            let post = post_row(&row.map_err(db_err("Posts"))?)?;
            let cut = pager.page.posts.len() >= page_posts
                && pager.page.posts.last().map(|p| p.create_at) != Some(post.create_at);
            if cut {
                sink.page(pager.take(reactions, files)).await?;
            }
            pager.add(post);
        }
        if !pager.page.posts.is_empty() {
            sink.page(pager.take(reactions, files)).await?;
        }
        let history = pager.waiting.into_values().flatten();
        Ok(Strays {
            history: history.map(|h| (h.id, h.original_id)).collect(),
        })
    }

    /// The rows of `table` in channel `c` (a checked id): by their own `ChannelId` where every
    /// row has one, else by the channel's posts.
    fn in_channel(&self, table: &str, c: &str) -> String {
        if self.channel_named.contains(table) {
            format!("ChannelId = '{c}'")
        } else {
            format!("PostId IN (SELECT Id FROM Posts WHERE ChannelId = '{c}')")
        }
    }

    /// Channel `c`'s reactions, by post.
    async fn channel_reactions(
        &self,
        c: &str,
        out: &mut HashMap<String, Vec<MmReaction>>,
    ) -> Result<()> {
        let t = "Reactions";
        let cols = [
            self.s(t, "PostId"),
            self.s(t, "UserId"),
            self.s(t, "EmojiName"),
            self.i(t, "CreateAt"),
            self.i(t, "DeleteAt"),
        ];
        let rest = format!(
            "WHERE {} ORDER BY CreateAt, PostId, UserId",
            self.in_channel(t, c)
        );
        self.select_each(t, &cols, &rest, |row| {
            let r = reaction_row(row)?;
            out.entry(r.post_id.clone()).or_default().push(r);
            Ok(())
        })
        .await
    }

    /// Channel `c`'s files, by post.
    async fn channel_files(&self, c: &str, out: &mut HashMap<String, Vec<MmFile>>) -> Result<()> {
        let t = "FileInfo";
        let text_cols = [
            "Id",
            "PostId",
            "CreatorId",
            "Path",
            "PreviewPath",
            "Name",
            "MimeType",
        ];
        let int_cols = ["Size", "Width", "Height", "CreateAt", "DeleteAt"];
        let cols: Vec<String> = (text_cols.iter().map(|c| self.s(t, c)))
            .chain(int_cols.iter().map(|c| self.i(t, c)))
            .collect();
        let rest = format!("WHERE {} ORDER BY CreateAt, Id", self.in_channel(t, c));
        self.select_each(t, &cols, &rest, |row| {
            let f = file_row(row)?;
            out.entry(f.post_id.clone()).or_default().push(f);
            Ok(())
        })
        .await
    }

    /// Every channel's name, header and purpose changes (posts of those system types, by
    /// channel, in time order), for the name and topic each started with and each change of
    /// its topic: one query for the workspace.
    pub async fn channel_changes(&self) -> Result<HashMap<String, Vec<MmPost>>> {
        let rest = "WHERE Type IN ('system_displayname_change', 'system_header_change', \
                    'system_purpose_change') \
                    ORDER BY CreateAt, Id";
        let rows = self.select("Posts", &self.post_columns(), rest).await?;
        let mut out: HashMap<String, Vec<MmPost>> = HashMap::new();
        for r in &rows {
            let p = post_row(r)?;
            if p.original_id.is_empty() {
                out.entry(p.channel_id.clone()).or_default().push(p);
            }
        }
        Ok(out)
    }

    /// The columns [`post_row`] reads.
    fn post_columns(&self) -> Vec<String> {
        (POST_COLUMNS.iter())
            .map(|(kind, col)| match kind {
                'i' => self.i("Posts", col),
                'b' => self.b("Posts", col),
                _ => self.s("Posts", col),
            })
            .collect()
    }
}

/// The page being filled.
#[derive(Default)]
struct Pager {
    page: ChannelRows,
    /// Edit-history rows by the post they belong to, until that post's page goes.
    waiting: HashMap<String, Vec<MmPost>>,
}

impl Pager {
    fn add(&mut self, row: MmPost) {
        if row.original_id.is_empty() {
            self.page.posts.push(row);
        } else {
            let post = row.original_id.clone();
            self.waiting.entry(post).or_default().push(row);
        }
    }

    /// The page, with its posts' history rows, reactions and files.
    fn take(
        &mut self,
        reactions: &mut HashMap<String, Vec<MmReaction>>,
        files: &mut HashMap<String, Vec<MmFile>>,
    ) -> ChannelRows {
        let mut page = std::mem::take(&mut self.page);
        let mut history = Vec::new();
        for p in &page.posts {
            history.extend(self.waiting.remove(&p.id).into_iter().flatten());
            page.reactions
                .extend(reactions.remove(&p.id).into_iter().flatten());
            page.files.extend(files.remove(&p.id).into_iter().flatten());
        }
        page.posts.extend(history);
        page
    }
}

/// Ids go into the SQL text (one query shape for both dialects' placeholders): only
/// Mattermost ids (letters and digits) are let through.
fn checked_id(id: &str) -> Result<&str> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::Mattermost(format!(
            "channel id {id:?} is not a Mattermost id"
        )));
    }
    Ok(id)
}

/// Posts columns: (`s` text, `i` integer, `b` boolean, name).
const POST_COLUMNS: [(char, &str); 13] = [
    ('s', "Id"),
    ('s', "ChannelId"),
    ('s', "UserId"),
    ('s', "RootId"),
    ('s', "OriginalId"),
    ('s', "Message"),
    ('s', "Type"),
    ('s', "Props"),
    ('s', "FileIds"),
    ('i', "CreateAt"),
    ('i', "EditAt"),
    ('i', "DeleteAt"),
    ('b', "IsPinned"),
];

fn post_row(r: &AnyRow) -> Result<MmPost> {
    Ok(MmPost {
        id: text(r, "id")?,
        channel_id: text(r, "channelid")?,
        user_id: text(r, "userid")?,
        root_id: text(r, "rootid")?,
        original_id: text(r, "originalid")?,
        message: text(r, "message")?,
        kind: text(r, "type")?,
        props: text(r, "props")?,
        file_ids: text(r, "fileids")?,
        create_at: int(r, "createat")?,
        edit_at: int(r, "editat")?,
        delete_at: int(r, "deleteat")?,
        pinned: int(r, "ispinned")? != 0,
    })
}

fn reaction_row(r: &AnyRow) -> Result<MmReaction> {
    Ok(MmReaction {
        post_id: text(r, "postid")?,
        user_id: text(r, "userid")?,
        emoji_name: text(r, "emojiname")?,
        create_at: int(r, "createat")?,
        delete_at: int(r, "deleteat")?,
    })
}

fn file_row(r: &AnyRow) -> Result<MmFile> {
    Ok(MmFile {
        id: text(r, "id")?,
        post_id: text(r, "postid")?,
        creator_id: text(r, "creatorid")?,
        path: text(r, "path")?,
        preview_path: text(r, "previewpath")?,
        name: text(r, "name")?,
        mime_type: text(r, "mimetype")?,
        size: int(r, "size")?,
        width: int(r, "width")?,
        height: int(r, "height")?,
        create_at: int(r, "createat")?,
        delete_at: int(r, "deleteat")?,
    })
}

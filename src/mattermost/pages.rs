//! Reading one channel a page at a time, so memory follows the page size, not the channel.
//!
//! A channel's posts, the edit-history rows of each, and the reactions to and files of each
//! come from four queries running at once, each ordered by its post's `(CreateAt, Id)`. The
//! database sorts (in its own memory or on its disk); here the four row streams are merged post
//! by post. The merge matches rows to their post by id only (never by comparing ids in Rust,
//! whose order could differ from the database's collation), which is sound because every
//! stream is sorted by the same expressions in the same database.

use std::future::Future;
use std::pin::Pin;

use futures::stream::{BoxStream, Peekable};
use futures::StreamExt;
use sqlx::any::AnyRow;

use crate::error::{Error, Result};
use crate::mattermost::db::{db_err, int, text, MattermostDb};
use crate::mattermost::map::ChannelRows;
use crate::mattermost::rows::{MmFile, MmPost, MmReaction};

/// Where [`MattermostDb::channel_pages`] hands each page.
pub trait PageSink {
    /// One page: up to the page size of posts (live and deleted, in time order) with their
    /// edit-history rows, reactions and files.
    fn page(&mut self, rows: ChannelRows) -> impl Future<Output = Result<()>> + Send;
}

type Rows<'a> = Peekable<BoxStream<'a, sqlx::Result<AnyRow>>>;

impl MattermostDb {
    /// Reads channel `channel_id` into `sink`, `page_posts` posts a page.
    pub async fn channel_pages(
        &self,
        channel_id: &str,
        page_posts: usize,
        sink: &mut impl PageSink,
    ) -> Result<()> {
        let c = checked_id(channel_id)?;
        // A post, not an edit-history row (older schemas have no OriginalId: all are posts).
        let live = |q: &str| {
            if self.has("Posts", "OriginalId") {
                format!("COALESCE({q}OriginalId, '') = ''")
            } else {
                "1 = 1".to_owned()
            }
        };
        let posts_sql = format!(
            "SELECT {} FROM Posts WHERE ChannelId = '{c}' AND {} ORDER BY CreateAt, Id",
            self.post_columns("").join(", "),
            live("")
        );
        // Rows joined to their post (p), ordered as the posts are.
        let joined = |table: &str, cols: Vec<String>, on: &str, then: &str| {
            format!(
                "SELECT {} FROM {table} x JOIN Posts p ON p.Id = x.{on} \
                 WHERE p.ChannelId = '{c}' AND {} ORDER BY p.CreateAt, p.Id, {then}",
                cols.join(", "),
                live("p.")
            )
        };
        let history_sql = self.has("Posts", "OriginalId").then(|| {
            joined(
                "Posts",
                self.post_columns("x"),
                "OriginalId",
                "x.DeleteAt, x.Id",
            )
        });
        let t = "Reactions";
        let reactions_sql = self.has(t, "PostId").then(|| {
            let cols = vec![
                self.s_of("x", t, "PostId"),
                self.s_of("x", t, "UserId"),
                self.s_of("x", t, "EmojiName"),
                self.i_of("x", t, "CreateAt"),
                self.i_of("x", t, "DeleteAt"),
            ];
            joined(t, cols, "PostId", "x.CreateAt, x.UserId, x.EmojiName")
        });
        let t = "FileInfo";
        let files_sql = self.has(t, "PostId").then(|| {
            let cols = vec![
                self.s_of("x", t, "Id"),
                self.s_of("x", t, "PostId"),
                self.s_of("x", t, "CreatorId"),
                self.s_of("x", t, "Path"),
                self.s_of("x", t, "PreviewPath"),
                self.s_of("x", t, "Name"),
                self.s_of("x", t, "MimeType"),
                self.i_of("x", t, "Size"),
                self.i_of("x", t, "Width"),
                self.i_of("x", t, "Height"),
                self.i_of("x", t, "CreateAt"),
                self.i_of("x", t, "DeleteAt"),
            ];
            joined(t, cols, "PostId", "x.CreateAt, x.Id")
        });
        let mut posts = sqlx::query(&posts_sql).fetch(&self.pool);
        let mut history = self.rows(&history_sql);
        let mut reactions = self.rows(&reactions_sql);
        let mut files = self.rows(&files_sql);

        let mut page = ChannelRows::default();
        let mut in_page = 0;
        while let Some(row) = posts.next().await {
            let post = post_row(&row.map_err(db_err("Posts"))?)?;
            for r in run(&mut history, &post.id, "originalid", "Posts (edit history)").await? {
                page.posts.push(post_row(&r)?);
            }
            for r in run(&mut reactions, &post.id, "postid", "Reactions").await? {
                page.reactions.push(reaction_row(&r)?);
            }
            for r in run(&mut files, &post.id, "postid", "FileInfo").await? {
                page.files.push(file_row(&r)?);
            }
            page.posts.push(post);
            in_page += 1;
            if in_page == page_posts {
                sink.page(std::mem::take(&mut page)).await?;
                in_page = 0;
            }
        }
        for (rows, what) in [
            (&mut history, "edit-history rows"),
            (&mut reactions, "reactions"),
            (&mut files, "files"),
        ] {
            if let Some(rows) = rows {
                if Pin::new(rows).peek().await.is_some() {
                    return Err(Error::Mattermost(format!(
                        "channel {c}: {what} left over after its last post (the database \
                         returned them in another order than the posts)"
                    )));
                }
            }
        }
        if in_page > 0 {
            sink.page(page).await?;
        }
        Ok(())
    }

    /// The channel's name and header changes (posts of those system types, in time order), for
    /// the name and topic it started with.
    pub async fn channel_changes(&self, channel_id: &str) -> Result<Vec<MmPost>> {
        let c = checked_id(channel_id)?;
        let cols = self.post_columns("");
        let sql = format!(
            "SELECT {} FROM Posts WHERE ChannelId = '{c}' AND Type IN \
             ('system_displayname_change', 'system_header_change') ORDER BY CreateAt, Id",
            cols.join(", ")
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("Posts"))?;
        rows.iter()
            .map(post_row)
            .filter(|p| p.as_ref().map_or(true, |p| p.original_id.is_empty()))
            .collect()
    }
}

impl MattermostDb {
    /// The columns [`post_row`] reads, of the Posts table a query names `q`.
    fn post_columns(&self, q: &str) -> Vec<String> {
        (POST_COLUMNS.iter())
            .map(|(kind, col)| match kind {
                'i' => self.i_of(q, "Posts", col),
                'b' => self.b_of(q, "Posts", col),
                _ => self.s_of(q, "Posts", col),
            })
            .collect()
    }

    /// The rows of `sql` as they come (`None`: the schema has no such rows).
    fn rows<'a>(&'a self, sql: &'a Option<String>) -> Option<Rows<'a>> {
        let sql = sql.as_deref()?;
        Some(sqlx::query(sql).fetch(&self.pool).peekable())
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

/// The rows at the front of `rows` that belong to post `parent` (their `key` column).
async fn run(
    rows: &mut Option<Rows<'_>>,
    parent: &str,
    key: &str,
    table: &str,
) -> Result<Vec<AnyRow>> {
    let mut out = Vec::new();
    let Some(rows) = rows else {
        return Ok(out);
    };
    loop {
        match Pin::new(&mut *rows).peek().await {
            None => return Ok(out),
            Some(Ok(r)) if text(r, key)? != parent => return Ok(out),
            Some(_) => {}
        }
        match rows.next().await {
            Some(r) => out.push(r.map_err(db_err(table))?),
            None => return Ok(out),
        }
    }
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

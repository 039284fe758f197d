//! A channel's posts → the import model, a page of rows at a time (mattermost.md §6): every
//! post as Matrix content with its thread, files, edits (from the edit-history rows), reactions,
//! pins and deletion.

use std::collections::HashSet;

use rustc_hash::FxHashMap;
use serde_json::{json, Value};

use crate::import::model::{Item, ItemKind, Media, Page, RoomKind, Skip};
use crate::mattermost::convert::Converter;
use crate::mattermost::map::{store_file, ChannelRows, Deleted, MapOptions};
use crate::mattermost::rows::{MmFile, MmPost, MmReaction};

/// Maps posts; shared by the channels being read at once (it only reads).
#[derive(Debug)]
pub struct PostMapper {
    conv: Converter,
    o: MapOptions,
    /// Mattermost ids of the users.
    known: HashSet<String>,
}

/// One page mapped: its part of the room's history, the files to copy, and what was left out.
#[derive(Debug, Default)]
pub struct Mapped {
    pub page: Page,
    pub media: Vec<Media>,
    pub skipped: Vec<Skip>,
}

impl PostMapper {
    pub(super) fn new(conv: Converter, o: MapOptions, known: HashSet<String>) -> Self {
        PostMapper { conv, o, known }
    }

    /// The history items of a page of a channel's rows (posts in time order, each with its
    /// edit-history rows, reactions and files) in a room of `kind`.
    pub fn page(&self, kind: RoomKind, rows: &ChannelRows) -> Mapped {
        let mut history_rows: FxHashMap<&str, Vec<&MmPost>> = FxHashMap::default();
        for p in rows.posts.iter().filter(|p| !p.original_id.is_empty()) {
            history_rows
                .entry(p.original_id.as_str())
                .or_default()
                .push(p);
        }
        let files: FxHashMap<&str, &MmFile> =
            rows.files.iter().map(|f| (f.id.as_str(), f)).collect();
        let mut reactions: FxHashMap<&str, Vec<&MmReaction>> = FxHashMap::default();
        for r in rows.reactions.iter().filter(|r| r.delete_at == 0) {
            reactions.entry(r.post_id.as_str()).or_default().push(r);
        }
        let ctx = PostCtx {
            conv: &self.conv,
            o: &self.o,
            known: &self.known,
            files: &files,
            reactions: &reactions,
            history_rows: &history_rows,
        };
        let mut out = Mapped::default();
        let posts = rows.posts.iter().filter(|p| p.original_id.is_empty());
        for p in posts.clone() {
            post_items(p, kind, &mut out, &ctx);
        }
        out.page.until = posts.map(|p| p.create_at).max();
        out
    }
}

/// System posts that say who joined or left: the membership events (from
/// ChannelMemberHistory, at the recorded times) say it instead.
const MEMBERSHIP_POSTS: [&str; 12] = [
    "system_join_channel",
    "system_guest_join_channel",
    "system_leave_channel",
    "system_join_leave",
    "system_add_to_channel",
    "system_add_guest_to_chan",
    "system_remove_from_channel",
    "system_add_remove",
    "system_join_team",
    "system_leave_team",
    "system_add_to_team",
    "system_remove_from_team",
];

/// What mapping one post needs besides the post.
struct PostCtx<'a> {
    conv: &'a Converter,
    o: &'a MapOptions,
    known: &'a HashSet<String>,
    files: &'a FxHashMap<&'a str, &'a MmFile>,
    reactions: &'a FxHashMap<&'a str, Vec<&'a MmReaction>>,
    history_rows: &'a FxHashMap<&'a str, Vec<&'a MmPost>>,
}

fn post_items(p: &MmPost, kind: RoomKind, out: &mut Mapped, ctx: &PostCtx) {
    let PostCtx {
        conv,
        o,
        known,
        files,
        reactions,
        history_rows,
    } = *ctx;
    let file = |rel: &str| store_file(&o.files, rel);
    let skip = |out: &mut Mapped, what: &'static str, reason: String| {
        out.skipped.push(Skip {
            kind: what,
            id: p.id.clone(),
            reason,
        });
    };
    // Header and purpose changes are the room's topic changes, which the room's own timeline
    // has (`Mapper::channel`: the topic holds both, so each change needs the other's value).
    let topic_change = matches!(
        p.kind.as_str(),
        "system_header_change" | "system_purpose_change"
    );
    if topic_change && known.contains(p.user_id.as_str()) {
        return;
    }
    if p.delete_at > 0 && o.deleted == Deleted::Omit {
        return skip(out, "deleted-post", "deleted in Mattermost".into());
    }
    if !known.contains(p.user_id.as_str()) {
        return skip(
            out,
            "post",
            format!("its author {} is not a user", p.user_id),
        );
    }
    if p.kind == "burn_on_read" {
        return skip(
            out,
            "post",
            "burn-on-read posts are kept per reader only".into(),
        );
    }
    if MEMBERSHIP_POSTS.contains(&p.kind.as_str()) {
        return skip(
            out,
            "membership-post",
            "shown as the membership event (ChannelMemberHistory)".into(),
        );
    }
    let props: Value = serde_json::from_str(&p.props).unwrap_or(Value::Null);
    let item = |kind: ItemKind| Item {
        ts: p.create_at,
        sender: p.user_id.clone(),
        key: Some(p.id.clone()),
        kind,
    };
    if p.kind == "system_displayname_change" && matches!(kind, RoomKind::Public | RoomKind::Private)
    {
        let name = props["new_displayname"].as_str().unwrap_or_default();
        out.page.items.push(item(ItemKind::State {
            event_type: "m.room.name",
            state_key: String::new(),
            content: json!({ "name": name }),
        }));
        return;
    }
    let msgtype = match p.kind.as_str() {
        "me" => "m.emote",
        k if k.starts_with("system_") => "m.notice",
        _ => "m.text",
    };
    let thread = Some(p.root_id.clone()).filter(|r| !r.is_empty());
    let mut text = p.message.clone();
    if let Some(a) = attachments_text(&props) {
        text = if text.is_empty() {
            a
        } else {
            format!("{text}\n\n{a}")
        };
    }
    // Edits: the oldest version first, each later one as an m.replace at the time it was made.
    let versions = match history_rows.get(p.id.as_str()) {
        Some(rows) if p.edit_at > 0 => {
            let (first, versions) = edits(p, rows);
            text = first.to_owned();
            versions
        }
        // Never edited: its history rows are pins, unpins and other updates of the post.
        _ => Vec::new(),
    };
    let mut has_primary = false;
    let ids: Vec<String> = serde_json::from_str(&p.file_ids).unwrap_or_default();
    if !text.is_empty() || ids.is_empty() {
        out.page.items.push(item(ItemKind::Message {
            event_type: "m.room.message",
            content: conv.message(&text, msgtype),
            thread: thread.clone(),
        }));
        has_primary = true;
    }
    for fid in ids {
        let Some(f) = files.get(fid.as_str()).filter(|f| f.delete_at == 0) else {
            skip(
                out,
                "file",
                format!("file {fid} is not in FileInfo (or was deleted)"),
            );
            continue;
        };
        let Some(path) = file(&f.path) else {
            skip(
                out,
                "file",
                format!("file {fid} ({}) is not in the file store", f.path),
            );
            continue;
        };
        let media_id = format!("mm_file_{}", f.id);
        let mxc = format!("mxc://{}/{media_id}", o.server_name);
        let mime = Some(f.mime_type.clone()).filter(|m| !m.is_empty());
        out.media.push(Media {
            media_id,
            path,
            content_type: mime.clone(),
            name: Some(f.name.clone()),
            uploader: Some(f.creator_id.clone()),
            created_ts: f.create_at,
        });
        let msgtype = match mime.as_deref().and_then(|m| m.split('/').next()) {
            Some("image") => "m.image",
            Some("video") => "m.video",
            Some("audio") => "m.audio",
            _ => "m.file",
        };
        let mut info = json!({ "size": f.size });
        if let Some(m) = &mime {
            info["mimetype"] = json!(m);
        }
        if f.width > 0 && f.height > 0 {
            info["w"] = json!(f.width);
            info["h"] = json!(f.height);
        }
        if let Some(prev) = Some(f.preview_path.as_str())
            .filter(|s| !s.is_empty())
            .and_then(file)
        {
            let thumb_id = format!("mm_preview_{}", f.id);
            info["thumbnail_url"] = json!(format!("mxc://{}/{thumb_id}", o.server_name));
            let thumb_mime = if f.preview_path.ends_with(".png") {
                "image/png"
            } else {
                "image/jpeg"
            };
            info["thumbnail_info"] = json!({ "mimetype": thumb_mime });
            out.media.push(Media {
                media_id: thumb_id,
                path: prev,
                content_type: Some(thumb_mime.into()),
                name: Some(f.name.clone()),
                uploader: Some(f.creator_id.clone()),
                created_ts: f.create_at,
            });
        }
        let content = json!({
            "msgtype": msgtype, "body": f.name, "filename": f.name, "url": mxc,
            "info": info, "m.mentions": {},
        });
        let mut it = item(ItemKind::Message {
            event_type: "m.room.message",
            content,
            thread: thread.clone(),
        });
        if has_primary {
            it.key = Some(format!("{}/{}", p.id, f.id));
        }
        has_primary = true;
        out.page.items.push(it);
    }
    if !has_primary {
        return;
    }
    for (ts, version) in versions {
        out.page.items.push(Item {
            ts,
            sender: p.user_id.clone(),
            key: None,
            kind: ItemKind::Edit {
                target: p.id.clone(),
                content: conv.message(&version, msgtype),
            },
        });
    }
    for r in reactions.get(p.id.as_str()).into_iter().flatten() {
        if !known.contains(r.user_id.as_str()) {
            let reason = format!(":{}: by {}, not a user", r.emoji_name, r.user_id);
            skip(out, "reaction", reason);
            continue;
        }
        out.page.items.push(Item {
            ts: r.create_at,
            sender: r.user_id.clone(),
            key: None,
            kind: ItemKind::Reaction {
                target: p.id.clone(),
                key: conv.reaction_key(&r.emoji_name),
            },
        });
    }
    if p.pinned && p.delete_at == 0 {
        out.page.pinned.push(p.id.clone());
    }
    if p.delete_at > 0 {
        let by = props["deleteBy"]
            .as_str()
            .filter(|u| known.contains(*u))
            .unwrap_or(&p.user_id);
        out.page.items.push(Item {
            ts: p.delete_at,
            sender: by.to_owned(),
            key: None,
            kind: ItemKind::Redaction {
                target: p.id.clone(),
            },
        });
    }
}

/// The first text of an edited post and each later text with the time it replaced the one
/// before. Mattermost keeps a history row (the post as it was, `DeleteAt` = when that stopped
/// being so) for every update of a post, not only edits: pinning, unpinning and changes of its
/// props write one too, with the text unchanged. Only a row whose text the next version changes
/// is an edit.
fn edits<'p>(p: &'p MmPost, rows: &[&'p MmPost]) -> (&'p str, Vec<(i64, String)>) {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| (a.delete_at, &a.id).cmp(&(b.delete_at, &b.id)));
    let texts: Vec<&str> = (rows.iter().map(|r| r.message.as_str()))
        .chain(std::iter::once(p.message.as_str()))
        .collect();
    let versions = (rows.iter().enumerate())
        .filter(|(i, _)| texts[i + 1] != texts[*i])
        .map(|(i, r)| (r.delete_at, texts[i + 1].to_owned()))
        .collect();
    (texts[0], versions)
}

/// Integration attachments (`props.attachments`, Slack style) as Markdown text.
fn attachments_text(props: &Value) -> Option<String> {
    let list = props["attachments"].as_array()?;
    let mut out = Vec::new();
    for a in list {
        let s = |k: &str| a[k].as_str().filter(|s| !s.is_empty());
        if let Some(p) = s("pretext") {
            out.push(p.to_owned());
        }
        match (s("title"), s("title_link")) {
            (Some(t), Some(l)) => out.push(format!("**[{t}]({l})**")),
            (Some(t), None) => out.push(format!("**{t}**")),
            _ => {}
        }
        if let Some(t) = s("text").or(s("fallback")) {
            out.push(t.to_owned());
        }
        for f in a["fields"].as_array().into_iter().flatten() {
            let (t, v) = (
                f["title"].as_str().unwrap_or_default(),
                f["value"].as_str().unwrap_or_default(),
            );
            out.push(format!("**{t}**: {v}"));
        }
        if let Some(f) = s("footer") {
            out.push(format!("_{f}_"));
        }
    }
    (!out.is_empty()).then(|| out.join("\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, original: &str, message: &str, delete_at: i64) -> MmPost {
        MmPost {
            id: id.into(),
            original_id: original.into(),
            user_id: "u".into(),
            message: message.into(),
            file_ids: "[]".into(),
            props: "{}".into(),
            create_at: 100,
            delete_at,
            ..Default::default()
        }
    }

    fn mapper() -> PostMapper {
        let o = MapOptions {
            server_name: "s.test".into(),
            files: None,
            deleted: Deleted::Omit,
            user_map: Default::default(),
            existing_users: Default::default(),
        };
        PostMapper::new(Converter::default(), o, HashSet::from(["u".to_owned()]))
    }

    /// (time, body, whether an m.replace) of a page's items.
    fn mapped(posts: Vec<MmPost>) -> Vec<(i64, String, bool)> {
        let rows = ChannelRows {
            posts,
            ..Default::default()
        };
        let mut out: Vec<(i64, String, bool)> = (mapper().page(RoomKind::Public, &rows).page.items)
            .into_iter()
            .map(|i| match i.kind {
                ItemKind::Message { content, .. } => (i.ts, content["body"].to_string(), false),
                ItemKind::Edit { content, .. } => (i.ts, content["body"].to_string(), true),
                other => panic!("{other:?}"),
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn pins_and_other_updates_are_not_edits() {
        // Never edited, pinned then unpinned: two history rows with the same text.
        let mut post = row("p", "", "hello", 0);
        post.pinned = false;
        let items = mapped(vec![
            row("h1", "p", "hello", 200),
            row("h2", "p", "hello", 300),
            post,
        ]);
        assert_eq!(items, [(100, "\"hello\"".into(), false)]);

        // Edited twice, pinned between the edits and unpinned after: two m.replace, at the times
        // the edits superseded each text.
        let mut post = row("p", "", "v3", 0);
        post.edit_at = 400;
        let items = mapped(vec![
            row("h1", "p", "v1", 200),
            row("h2", "p", "v2", 300),
            row("h3", "p", "v2", 400),
            row("h4", "p", "v3", 500),
            post,
        ]);
        assert_eq!(
            items,
            [
                (100, "\"v1\"".into(), false),
                (200, "\"v2\"".into(), true),
                (400, "\"v3\"".into(), true),
            ]
        );
    }
}

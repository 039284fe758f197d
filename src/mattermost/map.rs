//! A Mattermost [`Snapshot`] → the import model (mattermost.md §6): users, teams as spaces,
//! channels as rooms, memberships with their history, and every post as Matrix content with
//! its thread, reactions, edits, files and pins.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::import::model::{Item, ItemKind, Media, Room, RoomKind, Skip, User, Workspace};
use crate::mattermost::convert::Converter;
use crate::mattermost::rows::*;

/// What to do with deleted posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Deleted {
    /// Leave them out (their text is gone from Mattermost's UI too).
    #[default]
    Omit,
    /// Import them, then redact them at their deletion time: the timeline shows
    /// "message deleted" where they were.
    Redact,
}

/// How to map.
#[derive(Debug, Clone)]
pub struct MapOptions {
    pub server_name: String,
    /// The file store's root (`FileSettings.Directory`).
    pub files: Option<PathBuf>,
    pub deleted: Deleted,
    /// Mattermost username → Matrix localpart (or full user id), where the default (the
    /// username) is not wanted.
    pub user_map: HashMap<String, String>,
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

/// The Matrix room id of a Mattermost channel or team: stable, so a re-run finds its rooms.
pub fn room_id(mm_id: &str, server_name: &str) -> String {
    format!("!mm_{mm_id}:{server_name}")
}

/// A Matrix localpart for a Mattermost username: lower-case, with characters Matrix does not
/// allow (shared-channel users carry `:`) replaced by `=`.
pub fn localpart(username: &str) -> String {
    username
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-=/".contains(c) {
                c
            } else {
                '='
            }
        })
        .collect()
}

/// A file-store path as a relative path that stays inside the store (`None` for absolute
/// paths and `..`). Paths come from the database: nothing outside the store is ever read.
pub fn store_relative(rel: &str) -> Option<&Path> {
    let rel_path = Path::new(rel);
    let escapes = rel_path.is_absolute()
        || (rel_path.components()).any(|c| matches!(c, std::path::Component::ParentDir));
    (!escapes).then_some(rel_path)
}

/// A file of the store, if it is there.
fn store_file(root: &Option<PathBuf>, rel: &str) -> Option<PathBuf> {
    let p = root.as_ref()?.join(store_relative(rel)?);
    p.is_file().then_some(p)
}

/// One channel's posts (with edit-history and deleted rows), reactions and files.
#[derive(Debug, Default)]
pub struct ChannelRows {
    pub posts: Vec<MmPost>,
    pub reactions: Vec<MmReaction>,
    pub files: Vec<MmFile>,
}

/// Maps a workspace channel by channel: users, emoji and spaces when made, then each channel's
/// room from its rows, so only one channel's posts are in memory at a time.
pub struct Mapper {
    /// Users, media and skips so far; `rooms` holds the spaces.
    pub ws: Workspace,
    o: MapOptions,
    conv: Converter,
    known: HashSet<String>,
    sysadmin: Option<String>,
    team_name: HashMap<String, String>,
    spaces: HashSet<String>,
    /// Channel id → its members now / its membership history.
    members: HashMap<String, Vec<MmChannelMember>>,
    history: HashMap<String, Vec<MmHistory>>,
}

/// Maps a whole snapshot (posts included) at once.
pub fn workspace(snap: &Snapshot, o: &MapOptions) -> Workspace {
    let mut m = Mapper::new(snap, o);
    let mut rows: HashMap<&str, ChannelRows> = HashMap::new();
    let post_channel: HashMap<&str, &str> = (snap.posts.iter())
        .map(|p| (p.id.as_str(), p.channel_id.as_str()))
        .collect();
    for p in &snap.posts {
        rows.entry(&p.channel_id).or_default().posts.push(p.clone());
    }
    for r in &snap.reactions {
        if let Some(c) = post_channel.get(r.post_id.as_str()) {
            rows.entry(c).or_default().reactions.push(r.clone());
        }
    }
    for f in &snap.files {
        if let Some(c) = post_channel.get(f.post_id.as_str()) {
            rows.entry(c).or_default().files.push(f.clone());
        }
    }
    for c in &snap.channels {
        let r = rows.remove(c.id.as_str()).unwrap_or_default();
        if let Some(room) = m.channel(c, &r) {
            m.ws.rooms.push(room);
        }
    }
    m.ws
}

impl Mapper {
    /// Users, custom emoji and team spaces; `snap` needs no posts.
    pub fn new(snap: &Snapshot, o: &MapOptions) -> Self {
        let mut ws = Workspace {
            source: "mattermost".into(),
            source_version: snap.version.clone(),
            ..Default::default()
        };
        let file = |rel: &str| store_file(&o.files, rel);

        // Users (collisions get the id's start appended, and are reported).
        let mut taken: HashSet<String> = HashSet::new();
        let mut conv = Converter::default();
        for u in &snap.users {
            let wanted = o.user_map.get(&u.username).map(|m| {
                m.trim_start_matches('@')
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            });
            let mut local = localpart(wanted.as_deref().unwrap_or(&u.username));
            if local.is_empty() || !taken.insert(local.clone()) {
                let other = format!("{local}-{}", &u.id[..u.id.len().min(6)]);
                ws.skipped.push(Skip {
                    kind: "user-renamed",
                    id: u.id.clone(),
                    reason: format!(
                        "username {:?} maps to a taken Matrix name; imported as {other}",
                        u.username
                    ),
                });
                local = other;
                taken.insert(local.clone());
            }
            let user_id = format!("@{local}:{}", o.server_name);
            let full = format!("{} {}", u.first_name, u.last_name)
                .trim()
                .to_owned();
            let displayname = [full, u.nickname.clone(), u.username.clone()]
                .into_iter()
                .find(|s| !s.is_empty());
            let avatar = u.picture.as_deref().and_then(file).map(|path| {
                let media_id = format!("mm_avatar_{}", u.id);
                ws.media.push(Media {
                    media_id: media_id.clone(),
                    path,
                    content_type: Some("image/png".into()),
                    name: Some("profile.png".into()),
                    uploader: Some(u.id.clone()),
                    created_ts: u.create_at,
                });
                media_id
            });
            conv.users.insert(
                u.username.to_lowercase(),
                (user_id.clone(), displayname.clone().unwrap_or_default()),
            );
            ws.users.push(User {
                key: u.id.clone(),
                user_id,
                displayname,
                avatar,
                deactivated: u.delete_at > 0,
                bot: u.bot,
                admin: u.roles.split_whitespace().any(|r| r == "system_admin"),
                created_ts: u.create_at,
                password_hash: u.password.starts_with("$2").then(|| u.password.clone()),
            });
        }
        let known: HashSet<String> = snap.users.iter().map(|u| u.id.clone()).collect();
        let sysadmin = (ws.users.iter())
            .find(|u| u.admin && !u.deactivated)
            .map(|u| u.key.clone());

        // Custom emoji: images in the media repository, used inline and as reaction keys.
        for e in snap.emoji.iter().filter(|e| e.delete_at == 0) {
            match file(&format!("emoji/{}/image", e.id)) {
                Some(path) => {
                    let media_id = format!("mm_emoji_{}", e.id);
                    conv.custom_emoji.insert(
                        e.name.clone(),
                        format!("mxc://{}/{media_id}", o.server_name),
                    );
                    ws.media.push(Media {
                        media_id,
                        path,
                        content_type: None,
                        name: Some(e.name.clone()),
                        uploader: Some(e.creator_id.clone()),
                        created_ts: e.create_at,
                    });
                }
                None => ws.skipped.push(Skip {
                    kind: "emoji",
                    id: e.id.clone(),
                    reason: format!("custom emoji :{}: has no image in the file store", e.name),
                }),
            }
        }

        // Teams → spaces, holding their public channels.
        let team_name: HashMap<String, String> = (snap.teams.iter())
            .map(|t| (t.id.clone(), t.name.clone()))
            .collect();
        for t in snap.teams.iter().filter(|t| t.delete_at == 0) {
            let members: Vec<&MmTeamMember> = (snap.team_members.iter())
                .filter(|m| m.team_id == t.id && m.delete_at == 0 && known.contains(&m.user_id))
                .collect();
            let creator = (members.iter().find(|m| m.admin).or(members.first()))
                .map(|m| m.user_id.clone())
                .or_else(|| sysadmin.clone());
            let Some(creator) = creator else {
                ws.skipped.push(Skip {
                    kind: "team",
                    id: t.id.clone(),
                    reason: "no members".into(),
                });
                continue;
            };
            let children = (snap.channels.iter())
                .filter(|c| c.team_id == t.id && c.kind == "O")
                .map(|c| room_id(&c.id, &o.server_name))
                .collect();
            ws.rooms.push(Room {
                key: t.id.clone(),
                room_id: room_id(&t.id, &o.server_name),
                kind: RoomKind::Space,
                open: t.kind == "O",
                name: Some(t.display_name.clone()),
                topic: Some(t.description.clone()),
                alias: Some(localpart(&t.name)),
                created_ts: t.create_at,
                creator,
                moderators: members
                    .iter()
                    .filter(|m| m.admin)
                    .map(|m| m.user_id.clone())
                    .collect(),
                parent: None,
                children,
                archived_ts: None,
                members_now: members.iter().map(|m| m.user_id.clone()).collect(),
                timeline: Vec::new(),
                pinned: Vec::new(),
            });
        }
        let spaces: HashSet<String> = ws.rooms.iter().map(|r| r.key.clone()).collect();
        let mut members: HashMap<String, Vec<MmChannelMember>> = HashMap::new();
        for m in snap
            .channel_members
            .iter()
            .filter(|m| known.contains(&m.user_id))
        {
            members
                .entry(m.channel_id.clone())
                .or_default()
                .push(m.clone());
        }
        let mut history: HashMap<String, Vec<MmHistory>> = HashMap::new();
        for h in snap.history.iter().filter(|h| known.contains(&h.user_id)) {
            history
                .entry(h.channel_id.clone())
                .or_default()
                .push(h.clone());
        }
        Mapper {
            ws,
            o: o.clone(),
            conv,
            known,
            sysadmin,
            team_name,
            spaces,
            members,
            history,
        }
    }

    /// The room of one channel, from its rows (`None`, with a report line, when it cannot be
    /// made).
    pub fn channel(&mut self, c: &MmChannel, rows: &ChannelRows) -> Option<Room> {
        let o = &self.o;
        let ws = &mut self.ws;
        let kind = match c.kind.as_str() {
            "O" => RoomKind::Public,
            "P" => RoomKind::Private,
            "D" => RoomKind::Direct,
            "G" => RoomKind::Group,
            other => {
                ws.skipped.push(Skip {
                    kind: "channel",
                    id: c.id.clone(),
                    reason: format!("unknown type {other:?}"),
                });
                return None;
            }
        };
        let no_members = Vec::new();
        let members = self.members.get(&c.id).unwrap_or(&no_members);
        let no_history = Vec::new();
        let hist = self.history.get(&c.id).unwrap_or(&no_history);
        let members_now: Vec<String> = members.iter().map(|m| m.user_id.clone()).collect();
        let dm_first = c
            .name
            .split("__")
            .next()
            .filter(|_| kind == RoomKind::Direct);
        let creator = [
            Some(c.creator_id.as_str()),
            dm_first,
            hist.first().map(|h| h.user_id.as_str()),
            members_now.first().map(String::as_str),
        ]
        .into_iter()
        .flatten()
        .find(|u| self.known.contains(*u))
        .map(str::to_owned)
        .or_else(|| self.sysadmin.clone());
        let Some(creator) = creator else {
            ws.skipped.push(Skip {
                kind: "channel",
                id: c.id.clone(),
                reason: "no user to create the room".into(),
            });
            return None;
        };
        let posts: Vec<&MmPost> = rows
            .posts
            .iter()
            .filter(|p| p.original_id.is_empty())
            .collect();
        // The name and topic the channel started with: before its first recorded change.
        let first_prop = |kind: &str, key: &str| -> Option<String> {
            posts.iter().find(|p| p.kind == kind).and_then(|p| {
                let props: Value = serde_json::from_str(&p.props).ok()?;
                props[key].as_str().map(str::to_owned)
            })
        };
        let name = match kind {
            RoomKind::Public | RoomKind::Private => {
                first_prop("system_displayname_change", "old_displayname")
                    .or(Some(c.display_name.clone()))
            }
            _ => None,
        };
        let topic = first_prop("system_header_change", "old_header")
            .or_else(|| Some(c.header.clone()).filter(|h| !h.is_empty()))
            .or_else(|| Some(c.purpose.clone()).filter(|p| !p.is_empty()));
        let parent = Some(c.team_id.clone())
            .filter(|t| self.spaces.contains(t))
            .map(|t| room_id(&t, &o.server_name));
        let alias = match (kind, self.team_name.get(&c.team_id)) {
            (RoomKind::Public | RoomKind::Private, Some(team)) => {
                Some(localpart(&format!("{team}-{}", c.name)))
            }
            _ => None,
        };
        let mut room = Room {
            key: c.id.clone(),
            room_id: room_id(&c.id, &o.server_name),
            kind,
            open: kind == RoomKind::Public,
            name,
            topic,
            alias,
            created_ts: c.create_at,
            creator,
            moderators: members
                .iter()
                .filter(|m| m.admin)
                .map(|m| m.user_id.clone())
                .collect(),
            parent,
            children: Vec::new(),
            archived_ts: (c.delete_at > 0).then_some(c.delete_at),
            members_now,
            timeline: Vec::new(),
            pinned: Vec::new(),
        };
        for h in hist {
            room.timeline.push(Item {
                ts: h.join_time,
                sender: h.user_id.clone(),
                key: None,
                kind: ItemKind::Join,
            });
            if let Some(t) = h.leave_time {
                room.timeline.push(Item {
                    ts: t,
                    sender: h.user_id.clone(),
                    key: None,
                    kind: ItemKind::Leave,
                });
            }
        }
        let mut history_rows: HashMap<&str, Vec<&MmPost>> = HashMap::new();
        for p in rows.posts.iter().filter(|p| !p.original_id.is_empty()) {
            history_rows
                .entry(p.original_id.as_str())
                .or_default()
                .push(p);
        }
        let files: HashMap<&str, &MmFile> = rows.files.iter().map(|f| (f.id.as_str(), f)).collect();
        let mut reactions: HashMap<&str, Vec<&MmReaction>> = HashMap::new();
        for r in rows.reactions.iter().filter(|r| r.delete_at == 0) {
            reactions.entry(r.post_id.as_str()).or_default().push(r);
        }
        let ctx = PostCtx {
            conv: &self.conv,
            o,
            known: &self.known,
            files: &files,
            reactions: &reactions,
            history_rows: &history_rows,
        };
        for p in posts {
            post_items(p, &mut room, ws, &ctx);
        }
        Some(room)
    }
}

/// What mapping one post needs besides the post.
struct PostCtx<'a> {
    conv: &'a Converter,
    o: &'a MapOptions,
    known: &'a HashSet<String>,
    files: &'a HashMap<&'a str, &'a MmFile>,
    reactions: &'a HashMap<&'a str, Vec<&'a MmReaction>>,
    history_rows: &'a HashMap<&'a str, Vec<&'a MmPost>>,
}

fn post_items(p: &MmPost, room: &mut Room, ws: &mut Workspace, ctx: &PostCtx) {
    let PostCtx {
        conv,
        o,
        known,
        files,
        reactions,
        history_rows,
    } = *ctx;
    let file = |rel: &str| store_file(&o.files, rel);
    let skip = |ws: &mut Workspace, kind: &'static str, reason: String| {
        ws.skipped.push(Skip {
            kind,
            id: p.id.clone(),
            reason,
        });
    };
    if p.delete_at > 0 && o.deleted == Deleted::Omit {
        return skip(ws, "deleted-post", "deleted in Mattermost".into());
    }
    if !known.contains(p.user_id.as_str()) {
        return skip(
            ws,
            "post",
            format!("its author {} is not a user", p.user_id),
        );
    }
    if p.kind == "burn_on_read" {
        return skip(
            ws,
            "post",
            "burn-on-read posts are kept per reader only".into(),
        );
    }
    if MEMBERSHIP_POSTS.contains(&p.kind.as_str()) {
        return skip(
            ws,
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
    match p.kind.as_str() {
        "system_header_change" => {
            let topic = props["new_header"].as_str().unwrap_or_default();
            room.timeline.push(item(ItemKind::State {
                event_type: "m.room.topic",
                state_key: String::new(),
                content: json!({ "topic": topic }),
            }));
            return;
        }
        "system_displayname_change"
            if matches!(room.kind, RoomKind::Public | RoomKind::Private) =>
        {
            let name = props["new_displayname"].as_str().unwrap_or_default();
            room.timeline.push(item(ItemKind::State {
                event_type: "m.room.name",
                state_key: String::new(),
                content: json!({ "name": name }),
            }));
            return;
        }
        _ => {}
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
    let mut versions: Vec<(i64, String)> = Vec::new();
    if let Some(rows) = history_rows.get(p.id.as_str()) {
        let mut rows = rows.clone();
        rows.sort_by_key(|r| r.delete_at);
        if let Some(first) = rows.first() {
            text = first.message.clone();
            for (i, r) in rows.iter().enumerate() {
                let next = rows
                    .get(i + 1)
                    .map_or(p.message.clone(), |n| n.message.clone());
                versions.push((r.delete_at, next));
            }
        }
    }
    let mut has_primary = false;
    let ids: Vec<String> = serde_json::from_str(&p.file_ids).unwrap_or_default();
    if !text.is_empty() || ids.is_empty() {
        room.timeline.push(item(ItemKind::Message {
            event_type: "m.room.message",
            content: conv.message(&text, msgtype),
            thread: thread.clone(),
        }));
        has_primary = true;
    }
    for fid in ids {
        let Some(f) = files.get(fid.as_str()).filter(|f| f.delete_at == 0) else {
            skip(
                ws,
                "file",
                format!("file {fid} is not in FileInfo (or was deleted)"),
            );
            continue;
        };
        let Some(path) = file(&f.path) else {
            skip(
                ws,
                "file",
                format!("file {fid} ({}) is not in the file store", f.path),
            );
            continue;
        };
        let media_id = format!("mm_file_{}", f.id);
        let mxc = format!("mxc://{}/{media_id}", o.server_name);
        let mime = Some(f.mime_type.clone()).filter(|m| !m.is_empty());
        ws.media.push(Media {
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
            ws.media.push(Media {
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
        room.timeline.push(it);
    }
    if !has_primary {
        return;
    }
    for (ts, version) in versions {
        room.timeline.push(Item {
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
            continue;
        }
        room.timeline.push(Item {
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
        room.pinned.push(p.id.clone());
    }
    if p.delete_at > 0 {
        let by = props["deleteBy"]
            .as_str()
            .filter(|u| known.contains(*u))
            .unwrap_or(&p.user_id);
        room.timeline.push(Item {
            ts: p.delete_at,
            sender: by.to_owned(),
            key: None,
            kind: ItemKind::Redaction {
                target: p.id.clone(),
            },
        });
    }
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

    fn user(id: &str, username: &str) -> MmUser {
        MmUser {
            id: id.into(),
            username: username.into(),
            ..Default::default()
        }
    }

    #[test]
    fn user_ids_follow_the_map_and_collisions_are_reported() {
        let snap = Snapshot {
            users: vec![
                user("aaaaaaaaaaaaaaaaaaaaaaaaaa", "alice"),
                user("bbbbbbbbbbbbbbbbbbbbbbbbbb", "Bob"),
                user("cccccccccccccccccccccccccc", "bob"),
                user("dddddddddddddddddddddddddd", "remote:other"),
            ],
            ..Default::default()
        };
        let o = MapOptions {
            server_name: "s.test".into(),
            files: None,
            deleted: Deleted::Omit,
            user_map: HashMap::from([("alice".into(), "@alice.a:s.test".into())]),
        };
        let ws = workspace(&snap, &o);
        let ids: Vec<&str> = ws.users.iter().map(|u| u.user_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "@alice.a:s.test",
                "@bob:s.test",
                "@bob-cccccc:s.test",
                "@remote=other:s.test"
            ]
        );
        assert_eq!(ws.skipped.len(), 1);
        assert_eq!(ws.skipped[0].kind, "user-renamed");
    }
}

//! A Mattermost [`Snapshot`] → the import model (mattermost.md §6): users, teams as spaces,
//! channels as rooms, memberships with their history; the posts, a page at a time, through
//! [`crate::mattermost::posts`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::import::model::{Item, ItemKind, Media, Room, RoomKind, Skip, User, Workspace};
use crate::mattermost::convert::Converter;
pub use crate::mattermost::posts::PostMapper;
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
    /// Matrix user ids that had accounts in the target database before this import began
    /// (after a Synapse migration, say): a user mapped onto one is reported, as it may be
    /// someone else.
    pub existing_users: HashSet<String>,
}

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
pub(super) fn store_file(root: &Option<PathBuf>, rel: &str) -> Option<PathBuf> {
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
/// room ([`Mapper::channel`]) and its posts a page at a time ([`PostMapper::page`]), so only a
/// page of posts is in memory at a time.
pub struct Mapper {
    /// Users, media and skips so far; `rooms` holds the spaces.
    pub ws: Workspace,
    o: MapOptions,
    posts: Arc<PostMapper>,
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
        if let Some(mut room) = m.channel(c, &r.posts) {
            let mapped = m.posts.page(room.kind, &r);
            room.timeline.extend(mapped.page.items);
            room.pinned.extend(mapped.page.pinned);
            m.ws.media.extend(mapped.media);
            m.ws.skipped.extend(mapped.skipped);
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
        for (id, reason) in &snap.repaired {
            ws.skipped.push(Skip {
                kind: "invalid-utf8",
                id: id.clone(),
                reason: reason.clone(),
            });
        }
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
            if o.existing_users.contains(&user_id) {
                ws.skipped.push(Skip {
                    kind: "user-existing",
                    id: u.id.clone(),
                    reason: format!(
                        "{user_id} had an account in the Conduit database before this import: {:?}'s \
                         posts are sent as that account, whose password, devices and profile stay \
                         as they were; if it is someone else, map {:?} to another name with --user-map",
                        u.username, u.username
                    ),
                });
            }
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

        // Teams → spaces, holding their channels: public and private ones, as a team lists
        // both (the space hierarchy shows a private one only to its members).
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
                .filter(|c| c.team_id == t.id && matches!(c.kind.as_str(), "O" | "P"))
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
            posts: Arc::new(PostMapper::new(conv, o.clone(), known.clone())),
            known,
            sysadmin,
            team_name,
            spaces,
            members,
            history,
        }
    }

    /// What maps the channels' posts (to share with the threads reading channels).
    pub fn posts(&self) -> Arc<PostMapper> {
        self.posts.clone()
    }

    /// The room of one channel (`None`, with a report line, when it cannot be made), with the
    /// membership history as its timeline; its posts come from [`PostMapper::page`].
    /// `changes`: the channel's posts, or at least its name, header and purpose changes
    /// ([`crate::mattermost::db::MattermostDb::channel_changes`]), for the name and topic it
    /// started with; its topic changes (header and purpose) are in the room's timeline.
    pub fn channel(&mut self, c: &MmChannel, changes: &[MmPost]) -> Option<Room> {
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
        // The name and topic the channel started with: before its first recorded change.
        let first_prop = |kind: &str, key: &str| -> Option<String> {
            let mut posts = changes.iter().filter(|p| p.original_id.is_empty());
            posts.find(|p| p.kind == kind).and_then(|p| {
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
        // The topic holds the header and, after it, the purpose (Mattermost shows the header
        // above the channel and the purpose in its info; Matrix has the topic for both).
        let mut header =
            first_prop("system_header_change", "old_header").unwrap_or_else(|| c.header.clone());
        let mut purpose =
            first_prop("system_purpose_change", "old_purpose").unwrap_or_else(|| c.purpose.clone());
        let topic = Some(topic_text(&header, &purpose)).filter(|t| !t.is_empty());
        // Each later change of either, at its time, by whoever made it.
        let mut topics = Vec::new();
        for p in changes.iter().filter(|p| p.original_id.is_empty()) {
            let props: Value = serde_json::from_str(&p.props).unwrap_or(Value::Null);
            match p.kind.as_str() {
                "system_header_change" => header = props_str(&props, "new_header"),
                "system_purpose_change" => purpose = props_str(&props, "new_purpose"),
                _ => continue,
            }
            if self.known.contains(&p.user_id) {
                topics.push(Item {
                    ts: p.create_at,
                    sender: p.user_id.clone(),
                    key: Some(p.id.clone()),
                    kind: ItemKind::State {
                        event_type: "m.room.topic",
                        state_key: String::new(),
                        content: json!({ "topic": topic_text(&header, &purpose) }),
                    },
                });
            }
        }
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
            // Mattermost may record a member's join before the channel's creation (a
            // channel made by its bulk import): the room begins before its first event.
            created_ts: hist.iter().map(|h| h.join_time).fold(c.create_at, i64::min),
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
        room.timeline.extend(topics);
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
        Some(room)
    }
}

/// A channel's topic: its header, then its purpose (either may be empty).
pub fn topic_text(header: &str, purpose: &str) -> String {
    match (header.trim(), purpose.trim()) {
        ("", p) => p.to_owned(),
        (h, "") => h.to_owned(),
        (h, p) => format!("{h}\n\n{p}"),
    }
}

fn props_str(props: &Value, key: &str) -> String {
    props[key].as_str().unwrap_or_default().to_owned()
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
            existing_users: HashSet::from(["@bob:s.test".into()]),
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
        let kinds: Vec<&str> = ws.skipped.recent().iter().map(|s| s.kind).collect();
        assert_eq!(kinds, ["user-existing", "user-renamed"]);
        assert!(ws.skipped.recent()[0].reason.contains("@bob:s.test"));
    }
}

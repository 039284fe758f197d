//! The import model: chat data from any source (Mattermost now), already in Matrix terms —
//! message content is Matrix content, users have Matrix ids — but with no PDUs, no room ids of
//! events, no signatures. References between items (a reply's thread root, a reaction's target)
//! are the *source's* ids; [`crate::import::forge`] turns them into event ids.

use std::path::PathBuf;

use serde_json::Value;

use crate::import::skips::Skips;

/// Everything one source holds.
#[derive(Debug, Default)]
pub struct Workspace {
    /// Where it came from (`mattermost-postgres`, `mattermost-bulk-export`, …) and its version.
    pub source: String,
    pub source_version: String,
    pub users: Vec<User>,
    /// Spaces come before the rooms they hold.
    pub rooms: Vec<Room>,
    pub media: Vec<Media>,
    /// Things left out, each with the reason (the import report).
    pub skipped: Skips,
}

/// One user.
#[derive(Clone, Default)]
pub struct User {
    /// The source's id (Mattermost user id).
    pub key: String,
    /// The Matrix user id on the target server.
    pub user_id: String,
    pub displayname: Option<String>,
    /// A media id of [`Workspace::media`].
    pub avatar: Option<String>,
    pub deactivated: bool,
    pub bot: bool,
    pub admin: bool,
    pub created_ts: i64,
    /// The source's password hash when Conduit (patched) can check it: bcrypt; or the argon2
    /// hash of an initial password ([`crate::import::passwords`]).
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for User {
    /// Without the password hash: it must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("key", &self.key)
            .field("user_id", &self.user_id)
            .field("displayname", &self.displayname)
            .field("deactivated", &self.deactivated)
            .field("bot", &self.bot)
            .finish_non_exhaustive()
    }
}

/// What kind of room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    /// A space (a Mattermost team).
    Space,
    /// Anyone may join (and it is in the room directory).
    Public,
    /// Invite only.
    Private,
    /// A direct chat of two people (or one: a note to self).
    Direct,
    /// A direct chat of three or more.
    Group,
}

/// One room and its history.
#[derive(Debug, Clone)]
pub struct Room {
    /// The source's id (Mattermost channel or team id).
    pub key: String,
    /// The Matrix room id (chosen by the source, stable across runs).
    pub room_id: String,
    pub kind: RoomKind,
    /// Anyone on the server may join (public channels, open teams): join rule `public` and
    /// listed in the room directory.
    pub open: bool,
    pub name: Option<String>,
    pub topic: Option<String>,
    /// Local part of the room's alias (`#<alias>:S`).
    pub alias: Option<String>,
    pub created_ts: i64,
    /// The user key who creates the room; they stay a member while the history is written so
    /// every later invite and state change has someone allowed to make it.
    pub creator: String,
    /// Room admins now (power 100 besides the creator; 50 for moderators).
    pub moderators: Vec<String>,
    /// The space holding this room (its room id).
    pub parent: Option<String>,
    /// For a space: the room ids it lists as its children.
    pub children: Vec<String>,
    /// Made read-only at this time (Mattermost archived channels).
    pub archived_ts: Option<i64>,
    /// Who is a member now. Anybody the history leaves out is joined at its end; anybody it
    /// leaves in is made to leave.
    pub members_now: Vec<String>,
    /// The history, in any order: the forge sorts it by time (stable).
    pub timeline: Vec<Item>,
    /// Pinned messages (source keys), in order.
    pub pinned: Vec<String>,
}

/// A part of a room's history, handed to the forge while the source is still being read, so a
/// big room is never whole in memory.
#[derive(Debug, Default)]
pub struct Page {
    /// Items, in any order.
    pub items: Vec<Item>,
    /// Pinned messages (source keys) this part adds, in order.
    pub pinned: Vec<String>,
    /// Items of later pages are at or after this time (the time of this page's last post), so
    /// the forge can write every item before it. `None`: no bound is known yet; the items wait
    /// for a later page's bound or the end of the history.
    pub until: Option<i64>,
}

/// One thing that happened in a room.
#[derive(Debug, Clone)]
pub struct Item {
    pub ts: i64,
    /// User key.
    pub sender: String,
    /// The source's id of the item, when later items refer to it (post id).
    pub key: Option<String>,
    pub kind: ItemKind,
}

/// What happened.
#[derive(Debug, Clone)]
pub enum ItemKind {
    /// The sender joined.
    Join,
    /// The sender left.
    Leave,
    /// A message: Matrix content without `m.relates_to` (the forge adds relations).
    Message {
        /// `m.room.message` or `m.sticker`.
        event_type: &'static str,
        content: Value,
        /// Thread root (source key).
        thread: Option<String>,
    },
    /// A reaction to the item with source key `target`.
    Reaction { target: String, key: String },
    /// A new version of `target`'s content (`m.new_content`).
    Edit { target: String, content: Value },
    /// `target` was deleted.
    Redaction { target: String },
    /// A state change (topic, name) made by the sender.
    State {
        event_type: &'static str,
        state_key: String,
        content: Value,
    },
}

/// A file to put in the media repository.
#[derive(Debug, Clone)]
pub struct Media {
    /// The media id on the target server: `mxc://S/<media_id>`.
    pub media_id: String,
    /// Where the bytes are now.
    pub path: PathBuf,
    pub content_type: Option<String>,
    pub name: Option<String>,
    /// User key.
    pub uploader: Option<String>,
    pub created_ts: i64,
}

/// Something not imported, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skip {
    pub kind: &'static str,
    pub id: String,
    pub reason: String,
}

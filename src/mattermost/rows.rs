//! What the importer reads from a Mattermost workspace, whichever way it was read (database,
//! bulk export): Mattermost's own terms, one struct per table, only the columns the mapping
//! needs. Ids are Mattermost's (a bulk export has none; its reader makes them from names).

/// Everything read.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Server version (`Systems.Version`, or the export's generator line).
    pub version: String,
    pub users: Vec<MmUser>,
    pub teams: Vec<MmTeam>,
    pub team_members: Vec<MmTeamMember>,
    pub channels: Vec<MmChannel>,
    pub channel_members: Vec<MmChannelMember>,
    pub history: Vec<MmHistory>,
    /// Live posts, deleted posts and edit-history rows, in (create_at, id) order.
    pub posts: Vec<MmPost>,
    pub reactions: Vec<MmReaction>,
    pub files: Vec<MmFile>,
    pub emoji: Vec<MmEmoji>,
    /// Text that was not UTF-8, read with each bad byte sequence as U+FFFD: where (an id for
    /// the report) and what was done. A wrong byte in years of chat costs that character, not
    /// the import.
    pub repaired: Vec<(String, String)>,
}

#[derive(Clone, Default)]
pub struct MmUser {
    pub id: String,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub nickname: String,
    pub roles: String,
    pub create_at: i64,
    pub delete_at: i64,
    /// bcrypt, or empty (single sign-on accounts have none).
    pub password: String,
    pub bot: bool,
    /// `users/<id>/profile.png` in the file store, when the user uploaded one.
    pub picture: Option<String>,
}

impl std::fmt::Debug for MmUser {
    /// Without the password hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmUser")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("delete_at", &self.delete_at)
            .field("bot", &self.bot)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default)]
pub struct MmTeam {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub description: String,
    /// `O` open, `I` invite only.
    pub kind: String,
    pub create_at: i64,
    pub delete_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct MmTeamMember {
    pub team_id: String,
    pub user_id: String,
    pub admin: bool,
    pub delete_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct MmChannel {
    pub id: String,
    pub team_id: String,
    /// `O` public, `P` private, `D` direct, `G` group.
    pub kind: String,
    pub name: String,
    pub display_name: String,
    pub header: String,
    pub purpose: String,
    pub creator_id: String,
    pub create_at: i64,
    pub delete_at: i64,
    /// Mattermost's count of the channel's posts (`TotalMsgCount`): a hint of its size only.
    pub msg_count: i64,
}

#[derive(Debug, Clone, Default)]
pub struct MmChannelMember {
    pub channel_id: String,
    pub user_id: String,
    pub admin: bool,
}

#[derive(Debug, Clone, Default)]
pub struct MmHistory {
    pub channel_id: String,
    pub user_id: String,
    pub join_time: i64,
    pub leave_time: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct MmPost {
    pub id: String,
    pub channel_id: String,
    pub user_id: String,
    pub root_id: String,
    pub original_id: String,
    pub message: String,
    pub kind: String,
    /// JSON text.
    pub props: String,
    /// JSON array of FileInfo ids.
    pub file_ids: String,
    pub create_at: i64,
    pub edit_at: i64,
    pub delete_at: i64,
    pub pinned: bool,
}

#[derive(Debug, Clone, Default)]
pub struct MmReaction {
    pub post_id: String,
    pub user_id: String,
    pub emoji_name: String,
    pub create_at: i64,
    pub delete_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct MmFile {
    pub id: String,
    pub post_id: String,
    pub creator_id: String,
    pub path: String,
    pub preview_path: String,
    pub name: String,
    pub mime_type: String,
    pub size: i64,
    pub width: i64,
    pub height: i64,
    pub create_at: i64,
    pub delete_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct MmEmoji {
    pub id: String,
    pub name: String,
    pub creator_id: String,
    pub create_at: i64,
    pub delete_at: i64,
}

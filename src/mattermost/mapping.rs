//! Mapping files: which Matrix id each Mattermost id became, and who is in which room now —
//! written into the archive's `mapping/` by `mattermost export assets` and `… memberships`, so
//! an admin can look an id up (the forge adds one per channel: post id → event id).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::archive::{fsutil, Archive};
use crate::error::Result;
use crate::import::model::User;
use crate::mattermost::map::room_id;
use crate::mattermost::rows::Snapshot;

/// Mattermost user id → Matrix user id.
pub fn users(users: &[User]) -> BTreeMap<String, String> {
    (users.iter())
        .map(|u| (u.key.clone(), u.user_id.clone()))
        .collect()
}

/// Mattermost team or channel id → Matrix room id (teams become spaces; channels of a type
/// Mattermost does not document are left out, as the import leaves them out).
pub fn rooms(snap: &Snapshot, server_name: &str) -> BTreeMap<String, String> {
    let teams = snap.teams.iter().map(|t| &t.id);
    let channels = (snap.channels.iter())
        .filter(|c| matches!(c.kind.as_str(), "O" | "P" | "D" | "G"))
        .map(|c| &c.id);
    teams
        .chain(channels)
        .map(|id| (id.clone(), room_id(id, server_name)))
        .collect()
}

/// Who is in one room now, and how many join/leave records Mattermost kept for it.
#[derive(Debug, Default, Serialize)]
pub struct Members {
    pub now: Vec<String>,
    pub history_records: u64,
}

/// Matrix room id → its members now (Matrix user ids). Members whose user is not imported
/// (a row pointing at a missing user) are left out, as the import leaves them out.
pub fn memberships(
    snap: &Snapshot,
    users: &BTreeMap<String, String>,
    server_name: &str,
) -> BTreeMap<String, Members> {
    let mut out: BTreeMap<String, Members> = BTreeMap::new();
    let mut add = |mm_room: &str, mm_user: &str| {
        if let Some(u) = users.get(mm_user) {
            let m = out.entry(room_id(mm_room, server_name)).or_default();
            m.now.push(u.clone());
        }
    };
    for tm in snap.team_members.iter().filter(|m| m.delete_at == 0) {
        add(&tm.team_id, &tm.user_id);
    }
    for cm in &snap.channel_members {
        add(&cm.channel_id, &cm.user_id);
    }
    let mut history: HashMap<&str, u64> = HashMap::new();
    for h in &snap.history {
        *history.entry(h.channel_id.as_str()).or_default() += 1;
    }
    for (channel, n) in history {
        out.entry(room_id(channel, server_name))
            .or_default()
            .history_records = n;
    }
    for m in out.values_mut() {
        m.now.sort();
        m.now.dedup();
    }
    out
}

/// Writes `mapping/<name>.json` and returns its path relative to the archive and its sha256
/// (for the step's checkpoint entry).
pub fn write(archive: &Archive, name: &str, value: &impl Serialize) -> Result<(String, String)> {
    let path = archive.mapping_path(name);
    fsutil::write_json(&path, value, false)?;
    Ok((archive.relative(&path), fsutil::sha256_file(&path)?))
}

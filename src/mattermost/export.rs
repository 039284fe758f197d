//! Reading an `mmctl export` bulk-export zip (mattermost.md §4) into the same [`Snapshot`] the
//! database reader gives, so one mapping serves both.
//!
//! The export names things instead of giving ids; ids are made from the names (a hash in
//! Mattermost's own id alphabet), so a re-run of the same export makes the same rooms. It holds
//! only live content: no edit history, no deleted posts, no membership history. Attachments
//! are unpacked into `files_dir`, which then serves as the file store.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::archive::fsutil;
use crate::error::{Error, Result};
use crate::mattermost::rows::*;

/// A 26-character id for `what` in Mattermost's alphabet.
fn id(what: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
    let hash = Sha256::digest(what.as_bytes());
    let mut bits: u128 = u128::from_be_bytes(hash[..16].try_into().expect("16 bytes"));
    (0..26)
        .map(|_| {
            let c = ALPHABET[(bits & 31) as usize] as char;
            bits >>= 5;
            c
        })
        .collect()
}

fn bad(zip: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Mattermost(format!("bulk export {}: {reason}", zip.display()))
}

/// Reads the export at `zip_path`, unpacking its `data/` files into `files_dir`.
pub fn read(zip_path: &Path, files_dir: &Path) -> Result<Snapshot> {
    let file = File::open(zip_path).map_err(|e| Error::io("cannot read", zip_path, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(zip_path, e))?;
    // The files first (each only once: a re-run finds them in place).
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| bad(zip_path, e))?;
        let Some(name) = entry.enclosed_name() else {
            return Err(bad(
                zip_path,
                format!("entry {:?} points outside the export", entry.name()),
            ));
        };
        let Ok(rel) = name.strip_prefix("data") else {
            continue;
        };
        if entry.is_dir() || rel.as_os_str().is_empty() {
            continue;
        }
        let out = files_dir.join(rel);
        if out.is_file() && out.metadata().map(|m| m.len()).ok() == Some(entry.size()) {
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        std::io::copy(&mut entry, &mut bytes).map_err(|e| bad(zip_path, e))?;
        if let Some(parent) = out.parent() {
            fsutil::create_dir_all(parent)?;
        }
        fsutil::write_atomic(&out, &bytes, false)?;
    }
    let entry = zip
        .by_name("import.jsonl")
        .map_err(|_| bad(zip_path, "no import.jsonl: not a Mattermost bulk export"))?;
    let mut r = Reader::default();
    for (n, line) in BufReader::new(entry).split(b'\n').enumerate() {
        let line = line.map_err(|e| bad(zip_path, format!("import.jsonl line {}: {e}", n + 1)))?;
        let line = match String::from_utf8(line) {
            Ok(line) => line,
            Err(e) => {
                r.snap.repaired.push((
                    format!("import.jsonl:{}", n + 1),
                    "import.jsonl line is not UTF-8: read with U+FFFD for each bad byte sequence"
                        .into(),
                ));
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| bad(zip_path, format!("import.jsonl line {}: {e}", n + 1)))?;
        r.line(n, &v, files_dir);
    }
    Ok(r.finish())
}

#[derive(Default)]
struct Reader {
    snap: Snapshot,
    /// username → user id
    users: HashMap<String, String>,
    /// team name → team id
    teams: HashMap<String, String>,
    members: BTreeSet<(String, String, bool)>,
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_owned()
}

fn n(v: &Value, k: &str) -> i64 {
    v[k].as_i64().unwrap_or_default()
}

impl Reader {
    fn user_id(&self, username: &str) -> String {
        self.users
            .get(username)
            .cloned()
            .unwrap_or_else(|| id(&format!("user/{username}")))
    }

    fn channel_id(team: &str, name: &str) -> String {
        id(&format!("channel/{team}/{name}"))
    }

    fn direct_id(members: &[String]) -> String {
        let mut m = members.to_vec();
        m.sort();
        m.dedup();
        id(&format!("direct/{}", m.join("/")))
    }

    fn line(&mut self, n_line: usize, v: &Value, files_dir: &Path) {
        let kind = v["type"].as_str().unwrap_or_default();
        let body = &v[kind];
        match kind {
            "version" => self.snap.version = s(&body["info"], "version"),
            "team" => {
                let name = s(body, "name");
                let tid = id(&format!("team/{name}"));
                self.teams.insert(name.clone(), tid.clone());
                self.snap.teams.push(MmTeam {
                    id: tid,
                    display_name: s(body, "display_name"),
                    description: s(body, "description"),
                    kind: s(body, "type"),
                    name,
                    ..Default::default()
                });
            }
            "channel" => {
                let team = s(body, "team");
                self.snap.channels.push(MmChannel {
                    id: Self::channel_id(&team, &s(body, "name")),
                    team_id: self.teams.get(&team).cloned().unwrap_or_default(),
                    kind: s(body, "type"),
                    name: s(body, "name"),
                    display_name: s(body, "display_name"),
                    header: s(body, "header"),
                    purpose: s(body, "purpose"),
                    delete_at: n(body, "deleted_at"),
                    ..Default::default()
                });
            }
            "user" | "bot" => {
                let username = s(body, "username");
                let uid = id(&format!("user/{username}"));
                self.users.insert(username.clone(), uid.clone());
                let picture = Some(s(body, "profile_image"))
                    .filter(|p| !p.is_empty())
                    .map(|p| p.trim_start_matches("data/").to_owned())
                    .filter(|p| files_dir.join(p).is_file());
                let first_name = if kind == "bot" {
                    s(body, "display_name")
                } else {
                    s(body, "first_name")
                };
                for t in body["teams"].as_array().into_iter().flatten() {
                    let team = s(t, "name");
                    let tid = self.teams.get(&team).cloned().unwrap_or_default();
                    let admin = s(t, "roles").contains("team_admin");
                    self.snap.team_members.push(MmTeamMember {
                        team_id: tid,
                        user_id: uid.clone(),
                        admin,
                        delete_at: 0,
                    });
                    for c in t["channels"].as_array().into_iter().flatten() {
                        let cid = Self::channel_id(&team, &s(c, "name"));
                        let admin = s(c, "roles").contains("channel_admin");
                        self.members.insert((cid, uid.clone(), admin));
                    }
                }
                self.snap.users.push(MmUser {
                    id: uid,
                    username,
                    first_name,
                    last_name: s(body, "last_name"),
                    nickname: s(body, "nickname"),
                    roles: s(body, "roles"),
                    delete_at: n(body, "delete_at"),
                    password: s(body, "password"),
                    bot: kind == "bot",
                    picture,
                    create_at: 0,
                });
            }
            "emoji" => {
                // `emoji/<id>/image`: keep the id so the image is found where the mapping looks.
                let image = s(body, "image");
                let eid = image
                    .split('/')
                    .nth(1)
                    .map(str::to_owned)
                    .unwrap_or_else(|| id(&image));
                self.snap.emoji.push(MmEmoji {
                    id: eid,
                    name: s(body, "name"),
                    ..Default::default()
                });
            }
            "direct_channel" => {
                let members = direct_members(body, "members");
                let cid = Self::direct_id(&members);
                let distinct: BTreeSet<&String> = members.iter().collect();
                for m in &distinct {
                    let uid = self.user_id(m);
                    self.members.insert((cid.clone(), uid, false));
                }
                if self.snap.channels.iter().all(|c| c.id != cid) {
                    self.snap.channels.push(MmChannel {
                        id: cid,
                        kind: if distinct.len() <= 2 { "D" } else { "G" }.into(),
                        name: members.join("__"),
                        header: s(body, "header"),
                        creator_id: distinct
                            .first()
                            .map(|m| self.user_id(m))
                            .unwrap_or_default(),
                        ..Default::default()
                    });
                }
            }
            "post" | "direct_post" => {
                let channel = if kind == "post" {
                    Self::channel_id(&s(body, "team"), &s(body, "channel"))
                } else {
                    Self::direct_id(&direct_members(body, "channel_members"))
                };
                let root = id(&format!("post/{n_line}"));
                self.post(body, &root, "", &channel, files_dir);
                for (i, reply) in body["replies"].as_array().into_iter().flatten().enumerate() {
                    let rid = id(&format!("post/{n_line}/{i}"));
                    self.post(reply, &rid, &root, &channel, files_dir);
                }
            }
            _ => {}
        }
    }

    fn post(&mut self, v: &Value, post_id: &str, root: &str, channel: &str, files_dir: &Path) {
        let create_at = n(v, "create_at");
        let mut file_ids = Vec::new();
        for a in v["attachments"].as_array().into_iter().flatten() {
            let path = s(a, "path");
            let fid = id(&format!("file/{post_id}/{path}"));
            let size = std::fs::metadata(files_dir.join(&path))
                .map(|m| m.len() as i64)
                .unwrap_or(0);
            let name = path.rsplit('/').next().unwrap_or_default().to_owned();
            self.snap.files.push(MmFile {
                id: fid.clone(),
                post_id: post_id.to_owned(),
                creator_id: self.user_id(&s(v, "user")),
                mime_type: mime_of(&name).into(),
                name,
                path,
                size,
                create_at,
                ..Default::default()
            });
            file_ids.push(fid);
        }
        for r in v["reactions"].as_array().into_iter().flatten() {
            self.snap.reactions.push(MmReaction {
                post_id: post_id.to_owned(),
                user_id: self.user_id(&s(r, "user")),
                emoji_name: s(r, "emoji_name"),
                create_at: n(r, "create_at"),
                delete_at: 0,
            });
        }
        self.snap.posts.push(MmPost {
            id: post_id.to_owned(),
            channel_id: channel.to_owned(),
            user_id: self.user_id(&s(v, "user")),
            root_id: root.to_owned(),
            message: s(v, "message"),
            kind: s(v, "type"),
            props: v["props"].to_string(),
            file_ids: serde_json::to_string(&file_ids).unwrap_or_default(),
            create_at,
            edit_at: n(v, "edit_at"),
            pinned: v["is_pinned"].as_bool().unwrap_or(false),
            ..Default::default()
        });
    }

    fn finish(mut self) -> Snapshot {
        for (channel_id, user_id, admin) in std::mem::take(&mut self.members) {
            self.snap.channel_members.push(MmChannelMember {
                channel_id,
                user_id,
                admin,
            });
        }
        // Posts come in id order (random) in an export: time order, as the database reader gives.
        self.snap
            .posts
            .sort_by(|a, b| (a.create_at, &a.id).cmp(&(b.create_at, &b.id)));
        // An export carries no channel times: a room begins with its first post, not in 1970.
        let mut firsts: HashMap<String, i64> = HashMap::new();
        for p in &self.snap.posts {
            if !firsts.contains_key(&p.channel_id) {
                firsts.insert(p.channel_id.clone(), p.create_at);
            }
        }
        for c in &mut self.snap.channels {
            if let Some(&f) = firsts.get(&c.id) {
                c.create_at = if c.create_at > 0 {
                    c.create_at.min(f)
                } else {
                    f
                };
            }
        }
        self.snap
    }
}

fn direct_members(v: &Value, key: &str) -> Vec<String> {
    let mut m: Vec<String> = v[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect();
    if m.is_empty() {
        m = v["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| s(p, "username"))
            .collect();
    }
    m
}

/// The export carries no file metadata: the type from the name.
fn mime_of(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or_default().to_lowercase();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "txt" | "log" | "md" => "text/plain",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_mattermost_ids_and_are_stable() {
        let a = id("channel/acme/town-square");
        assert_eq!(a.len(), 26);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_eq!(a, id("channel/acme/town-square"));
        assert_ne!(a, id("channel/other/town-square"));
    }
}

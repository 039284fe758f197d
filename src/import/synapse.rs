//! An archive replayed into a running Synapse through an application service — the way other
//! importers reach a homeserver, for servers that stay on Synapse. The same forged archive the
//! Conduit writer takes: users, media, then every room's events in order, each sent as its
//! original sender (`user_id=`) at its original time (`ts=`, which Synapse honours for
//! application services on `/send` and `/state`, memberships included).
//!
//! Synapse makes its own room and event ids, so references are translated as they are sent:
//! relations, replies, pins and redactions (event ids), space children (room ids) and media
//! (`mxc://` URIs). What was sent is logged as it happens in `synapse-replay/` next to the
//! archive, so an interrupted replay resumes where it stopped and a re-run sends nothing twice.
//! Room creation (`createRoom`) carries no timestamp: the creation event and the creator's
//! first join are Synapse's own, at the time of the import; every later event has its time.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::{json, Value};

use crate::archive::media::MediaMeta;
use crate::archive::room::{PduLine, PduReader, RoomMeta, EVENTS};
use crate::archive::user::UserRecord;
use crate::archive::{fsutil, Archive};
use crate::conduit::preflight::preflight;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::synapse::admin::enc;
use crate::synapse::http::{bearer, Http};

/// Rooms replayed at once (Synapse handles rooms in parallel; one room is strictly in order).
const ROOMS_AT_ONCE: usize = 4;

/// Where and as whom to send.
pub struct SynapseTarget {
    http: Http,
    auth: HeaderValue,
}

impl SynapseTarget {
    /// `as_token`: the application service's token (its registration's `as_token`).
    pub fn new(url: &str, as_token: &str) -> Result<Self> {
        Ok(SynapseTarget {
            http: Http::new(url, "Synapse")?,
            auth: bearer(as_token)?,
        })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        self.http.json(method, path, Some(&self.auth), body).await
    }

    /// The server name Synapse serves (from the application service's own user).
    pub async fn server_name(&self) -> Result<String> {
        let me = self
            .call(Method::GET, "/_matrix/client/v3/account/whoami", None)
            .await?;
        let user = me["user_id"].as_str().unwrap_or_default();
        user.split_once(':')
            .map(|(_, s)| s.to_owned())
            .ok_or_else(|| Error::malformed("whoami answer", format!("user_id {user:?}")))
    }
}

/// What a replay did.
#[derive(Debug, Default, Clone)]
pub struct ReplaySummary {
    pub users_registered: u64,
    pub users_existing: u64,
    pub media: u64,
    pub rooms_created: u64,
    pub events_sent: u64,
    pub events_already_sent: u64,
    /// Things Synapse refused that the rest does not depend on (directory listing, m.direct).
    pub warnings: Vec<String>,
}

/// An append-only `forged ⇥ synapse` log: what was already done, and a way to add to it.
struct IdLog {
    path: PathBuf,
    map: HashMap<String, String>,
}

impl IdLog {
    fn open(path: PathBuf) -> Result<Self> {
        let mut map = HashMap::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                // A line cut short by a crash has no tab or no newline: ignored.
                for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
                    if let Some((a, b)) = line.trim_end().split_once('\t') {
                        map.insert(a.to_owned(), b.to_owned());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot read", &path, e)),
        }
        Ok(IdLog { path, map })
    }

    fn get(&self, forged: &str) -> Option<&String> {
        self.map.get(forged)
    }

    fn add(&mut self, forged: &str, synapse: &str) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io("cannot open", &self.path, e))?;
        writeln!(f, "{forged}\t{synapse}").map_err(|e| Error::io("cannot write", &self.path, e))?;
        self.map.insert(forged.to_owned(), synapse.to_owned());
        Ok(())
    }
}

/// Replays `archive` into Synapse. The archive's server name must be Synapse's.
pub async fn replay(
    archive: &Archive,
    target: &SynapseTarget,
    progress: &Progress,
) -> Result<ReplaySummary> {
    let plan = preflight(archive)?;
    let server = target.server_name().await?;
    if server != plan.server_name {
        return Err(Error::Config(format!(
            "the archive was made for {}, but this Synapse serves {server}; import again with --server-name {server}",
            plan.server_name
        )));
    }
    let dir = archive.root().join("synapse-replay");
    fsutil::create_dir_all(&dir.join("rooms"))?;
    let mut sum = ReplaySummary::default();

    let users: Vec<UserRecord> = (plan.user_files.iter())
        .map(|p| fsutil::read_json(p))
        .collect::<Result<_>>()?;
    let bar = progress.bar("users", users.len() as u64);
    for u in &users {
        register(target, u, &mut sum).await?;
        bar.inc(1);
    }
    bar.finish();

    let mut media = IdLog::open(dir.join("media.log"))?;
    let bar = progress.bar("media", plan.media.len() as u64);
    for m in &plan.media {
        let forged = format!("mxc://{}/{}", m.server_name, m.media_id);
        if media.get(&forged).is_none() {
            let uri = upload(target, archive, m).await?;
            media.add(&forged, &uri)?;
            sum.media += 1;
        }
        bar.inc(1);
    }
    bar.finish();
    for u in &users {
        profile(target, u, &media.map).await?;
    }

    // Every room first, so a space's children (room ids) can be translated.
    let mut rooms = IdLog::open(dir.join("rooms.log"))?;
    for meta in &plan.rooms {
        if rooms.get(&meta.room_id).is_none() {
            let id = create_room(target, meta).await?;
            rooms.add(&meta.room_id, &id)?;
            sum.rooms_created += 1;
        }
    }

    let ids = Ids {
        rooms: &rooms.map,
        media: &media.map,
    };
    let bar = progress.bar("events", plan.rooms.iter().map(|r| r.events).sum());
    let jobs = plan.rooms.iter().map(|meta| {
        let (ids, bar, dir) = (&ids, &bar, &dir);
        async move { replay_room(target, archive, meta, ids, bar, dir).await }
    });
    use futures::stream::StreamExt as _;
    let mut results = futures::stream::iter(jobs).buffer_unordered(ROOMS_AT_ONCE);
    while let Some(r) = results.next().await {
        let (sent, already, mut warnings) = r?;
        sum.events_sent += sent;
        sum.events_already_sent += already;
        sum.warnings.append(&mut warnings);
    }
    drop(results);
    bar.finish();

    for u in &users {
        if let Some(direct) = u.account_data.global.get("m.direct") {
            let direct = translate_direct(direct, &rooms.map);
            let path = format!(
                "/_matrix/client/v3/user/{}/account_data/m.direct?user_id={}",
                enc(&u.user_id),
                enc(&u.user_id)
            );
            if let Err(e) = target.call(Method::PUT, &path, Some(&direct)).await {
                sum.warnings.push(format!("m.direct of {}: {e}", u.user_id));
            }
        }
    }
    Ok(sum)
}

/// Registers a user of the application service's namespace (an existing account is used as
/// it is).
async fn register(target: &SynapseTarget, u: &UserRecord, sum: &mut ReplaySummary) -> Result<()> {
    let user_id = <&ruma::UserId>::try_from(u.user_id.as_str())
        .map_err(|e| Error::malformed(format!("user id {}", u.user_id), e))?;
    let localpart = user_id.localpart();
    let body = json!({
        "type": "m.login.application_service",
        "username": localpart,
        "inhibit_login": true,
    });
    match target
        .call(Method::POST, "/_matrix/client/v3/register", Some(&body))
        .await
    {
        Ok(_) => sum.users_registered += 1,
        Err(Error::Api { errcode, .. }) if errcode == "M_USER_IN_USE" => sum.users_existing += 1,
        Err(e) => return Err(e),
    }
    if u.deactivated {
        sum.warnings.push(format!(
            "{} is deactivated in the source; an application service cannot deactivate accounts (an admin can: POST /_synapse/admin/v1/deactivate/{})",
            u.user_id, u.user_id
        ));
    }
    Ok(())
}

/// Display name and avatar, as the user.
async fn profile(
    target: &SynapseTarget,
    u: &UserRecord,
    media: &HashMap<String, String>,
) -> Result<()> {
    let base = format!("/_matrix/client/v3/profile/{}", enc(&u.user_id));
    let as_user = format!("user_id={}", enc(&u.user_id));
    if let Some(name) = &u.displayname {
        let path = format!("{base}/displayname?{as_user}");
        let body = json!({ "displayname": name });
        target.call(Method::PUT, &path, Some(&body)).await?;
    }
    if let Some(uri) = u.avatar_url.as_ref().and_then(|a| media.get(a)) {
        let path = format!("{base}/avatar_url?{as_user}");
        let body = json!({ "avatar_url": uri });
        target.call(Method::PUT, &path, Some(&body)).await?;
    }
    Ok(())
}

async fn upload(target: &SynapseTarget, archive: &Archive, m: &MediaMeta) -> Result<String> {
    let path = archive.media_blob_path(&m.sha256);
    let bytes = std::fs::read(&path).map_err(|e| Error::io("cannot read", &path, e))?;
    let mut url = "/_matrix/media/v3/upload?".to_owned();
    if let Some(name) = &m.upload_name {
        url.push_str(&format!("filename={}&", enc(name)));
    }
    if let Some(uploader) = &m.uploader {
        url.push_str(&format!("user_id={}", enc(uploader)));
    }
    let ct = m
        .content_type
        .as_deref()
        .unwrap_or("application/octet-stream");
    let answer = target
        .http
        .upload(&url, Some(&target.auth), ct, bytes.into())
        .await?;
    answer["content_uri"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::malformed("upload answer", "no content_uri"))
}

/// An empty room of the right version and kind, created by the archive's creator. The forged
/// state (power levels, join rules, name…) follows as events.
async fn create_room(target: &SynapseTarget, meta: &RoomMeta) -> Result<String> {
    let creator = meta
        .creator
        .as_deref()
        .ok_or_else(|| Error::Config(format!("room {} has no creator", meta.room_id)))?;
    let mut body = json!({ "room_version": meta.version, "preset": "private_chat" });
    if let Some(t) = &meta.room_type {
        body["creation_content"] = json!({ "type": t });
    }
    let path = format!("/_matrix/client/v3/createRoom?user_id={}", enc(creator));
    let answer = target.call(Method::POST, &path, Some(&body)).await?;
    answer["room_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::malformed("createRoom answer", "no room_id"))
}

/// Forged → Synapse ids known before a room's events are sent.
struct Ids<'a> {
    rooms: &'a HashMap<String, String>,
    media: &'a HashMap<String, String>,
}

/// Sends one room's events in order; returns (sent, sent before, warnings).
async fn replay_room(
    target: &SynapseTarget,
    archive: &Archive,
    meta: &RoomMeta,
    ids: &Ids<'_>,
    bar: &indicatif::ProgressBar,
    dir: &Path,
) -> Result<(u64, u64, Vec<String>)> {
    let room = ids
        .rooms
        .get(&meta.room_id)
        .expect("every room was created")
        .clone();
    let mut events = IdLog::open(
        dir.join("rooms")
            .join(format!("{}.log", enc(&meta.room_id))),
    )?;
    let lines = PduReader::open(&archive.room_dir(&meta.room_id).join(EVENTS))?;
    let (mut sent, mut already, mut warnings) = (0, 0, Vec::new());
    let creator = meta.creator.clone().unwrap_or_default();
    let mut creator_joined = false;
    for line in lines {
        let PduLine { event_id, pdu, .. } = line?;
        bar.inc(1);
        let pdu: Value = serde_json::to_value(&pdu).map_err(|e| Error::malformed("PDU", e))?;
        let kind = pdu["type"].as_str().unwrap_or_default().to_owned();
        let sender = pdu["sender"].as_str().unwrap_or_default().to_owned();
        let state_key = pdu["state_key"].as_str().map(str::to_owned);
        // createRoom made these two.
        if kind == "m.room.create" {
            continue;
        }
        if kind == "m.room.member" && !creator_joined && state_key.as_deref() == Some(&creator) {
            creator_joined = true;
            continue;
        }
        if events.get(&event_id).is_some() {
            already += 1;
            continue;
        }
        let ts = pdu["origin_server_ts"].as_i64().unwrap_or_default();
        let mut content = pdu["content"].clone();
        translate(&mut content, &events.map, ids);
        let as_user = format!("user_id={}&ts={ts}", enc(&sender));
        let rid = enc(&room);
        let new_id = if kind == "m.room.redaction" {
            let target_id = (pdu["redacts"].as_str())
                .or(pdu["content"]["redacts"].as_str())
                .and_then(|r| events.get(r));
            let Some(target_id) = target_id else {
                warnings.push(format!("{event_id}: redacts an event that was not sent"));
                continue;
            };
            content["redacts"] = json!(target_id);
            let path = format!(
                "/_matrix/client/v3/rooms/{rid}/send/m.room.redaction/{}?{as_user}",
                enc(&txn(&event_id))
            );
            target.call(Method::PUT, &path, Some(&content)).await?
        } else if let Some(sk) = &state_key {
            let sk = match kind.as_str() {
                "m.space.child" | "m.space.parent" => ids.rooms.get(sk).unwrap_or(sk).clone(),
                _ => sk.clone(),
            };
            if kind == "m.room.canonical_alias" {
                if let Some(alias) = content["alias"].as_str() {
                    let path = format!(
                        "/_matrix/client/v3/directory/room/{}?user_id={}",
                        enc(alias),
                        enc(&sender)
                    );
                    let body = json!({ "room_id": room });
                    if let Err(e) = target.call(Method::PUT, &path, Some(&body)).await {
                        // Taken already (a re-created room, or a Synapse room of that name):
                        // the room keeps its name, not the alias.
                        warnings.push(format!("alias {alias}: {e}"));
                        continue;
                    }
                }
            }
            let path = format!(
                "/_matrix/client/v3/rooms/{rid}/state/{}/{}?{as_user}",
                enc(&kind),
                enc(&sk)
            );
            target.call(Method::PUT, &path, Some(&content)).await?
        } else {
            let path = format!(
                "/_matrix/client/v3/rooms/{rid}/send/{}/{}?{as_user}",
                enc(&kind),
                enc(&txn(&event_id))
            );
            target.call(Method::PUT, &path, Some(&content)).await?
        };
        let new_id = new_id["event_id"]
            .as_str()
            .ok_or_else(|| Error::malformed("send answer", "no event_id"))?;
        events.add(&event_id, new_id)?;
        sent += 1;
    }
    if meta.published {
        let path = format!(
            "/_matrix/client/v3/directory/list/room/{}?user_id={}",
            enc(&room),
            enc(&creator)
        );
        let body = json!({ "visibility": "public" });
        if let Err(e) = target.call(Method::PUT, &path, Some(&body)).await {
            warnings.push(format!("publishing {room} in the room directory: {e}"));
        }
    }
    Ok((sent, already, warnings))
}

/// A transaction id from the forged event id: a retried send is the same transaction, which
/// Synapse answers with the event it already made.
fn txn(event_id: &str) -> String {
    format!("tm-{}", event_id.trim_start_matches('$'))
}

/// Rewrites forged ids in content: event ids of relations, replies and pins, `mxc://` URIs.
fn translate(content: &mut Value, events: &HashMap<String, String>, ids: &Ids<'_>) {
    let event = |v: &mut Value| {
        if let Some(new) = v.as_str().and_then(|id| events.get(id)) {
            *v = json!(new);
        }
    };
    if let Some(rel) = content.get_mut("m.relates_to") {
        if let Some(v) = rel.get_mut("event_id") {
            event(v);
        }
        if let Some(v) = rel
            .get_mut("m.in_reply_to")
            .and_then(|r| r.get_mut("event_id"))
        {
            event(v);
        }
    }
    if let Some(Value::Array(pinned)) = content.get_mut("pinned") {
        pinned.iter_mut().for_each(event);
    }
    translate_mxc(content, ids.media);
}

/// Every string that is a known forged `mxc://` URI, anywhere in the content.
fn translate_mxc(v: &mut Value, media: &HashMap<String, String>) {
    match v {
        Value::String(s) if s.starts_with("mxc://") => {
            if let Some(new) = media.get(s.as_str()) {
                *s = new.clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| translate_mxc(x, media)),
        Value::Object(o) => o.values_mut().for_each(|x| translate_mxc(x, media)),
        _ => {}
    }
}

/// `m.direct` with Synapse's room ids.
fn translate_direct(direct: &Value, rooms: &HashMap<String, String>) -> Value {
    let mut out = serde_json::Map::new();
    if let Value::Object(by_user) = direct {
        for (user, list) in by_user {
            let list: Vec<Value> = (list.as_array().into_iter().flatten())
                .filter_map(|r| r.as_str().and_then(|r| rooms.get(r)))
                .map(|r| json!(r))
                .collect();
            out.insert(user.clone(), Value::Array(list));
        }
    }
    Value::Object(out)
}

/// [`registration`] with new random tokens.
pub fn new_registration(server_name: &str) -> Result<String> {
    let token = || -> Result<String> {
        let mut b = [0u8; 24];
        crate::import::forge::getrandom(&mut b)?;
        Ok(hex::encode(b))
    };
    Ok(registration(server_name, &token()?, &token()?))
}

/// A registration file for Synapse's `app_service_config_files`: the importer's namespace is
/// every user of the server (it acts as the users it imports; not exclusive, so existing
/// accounts keep working), not rate-limited, and Synapse sends it nothing (no URL).
pub fn registration(server_name: &str, as_token: &str, hs_token: &str) -> String {
    let users = format!("@.*:{}", regex_escape(server_name));
    format!(
        "# transition-matrix importer: add this file to app_service_config_files in homeserver.yaml\n\
         id: transition-matrix-import\n\
         url: null\n\
         as_token: \"{as_token}\"\n\
         hs_token: \"{hs_token}\"\n\
         sender_localpart: transition-matrix-import\n\
         rate_limited: false\n\
         namespaces:\n  users:\n    - exclusive: false\n      regex: '{users}'\n  aliases:\n    - exclusive: false\n      regex: '#.*:{}'\n  rooms: []\n",
        regex_escape(server_name)
    )
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_translated() {
        let events: HashMap<String, String> =
            [("$a".into(), "$A".into()), ("$b".into(), "$B".into())].into();
        let rooms = HashMap::new();
        let media: HashMap<String, String> = [("mxc://s/1".into(), "mxc://s/new".into())].into();
        let ids = Ids {
            rooms: &rooms,
            media: &media,
        };
        let mut c = json!({
            "body": "x", "url": "mxc://s/1", "info": { "thumbnail_url": "mxc://s/1" },
            "m.relates_to": { "rel_type": "m.thread", "event_id": "$a",
                              "m.in_reply_to": { "event_id": "$b" } },
        });
        translate(&mut c, &events, &ids);
        assert_eq!(c["m.relates_to"]["event_id"], "$A");
        assert_eq!(c["m.relates_to"]["m.in_reply_to"]["event_id"], "$B");
        assert_eq!(c["url"], "mxc://s/new");
        assert_eq!(c["info"]["thumbnail_url"], "mxc://s/new");
        let mut p = json!({ "pinned": ["$a", "$unknown"] });
        translate(&mut p, &events, &ids);
        assert_eq!(p["pinned"], json!(["$A", "$unknown"]));
        let rooms: HashMap<String, String> = [("!f:s".into(), "!S:s".into())].into();
        let d = translate_direct(&json!({ "@u:s": ["!f:s", "!gone:s"] }), &rooms);
        assert_eq!(d, json!({ "@u:s": ["!S:s"] }));
        assert_eq!(regex_escape("chat.example.org"), "chat\\.example\\.org");
    }
}

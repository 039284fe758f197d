//! Users: admin API for the account, devices, pushers and account data; a puppet ("login as")
//! token for what only the user can read (push rules, 3PIDs, E2E keys, key backup, tags); the
//! database, when given, for password hashes, tokens, one-time keys and to-device messages.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{for_each_item, Ctx, DumpSummary, Item};
use crate::archive::user::{
    cross_signing_public, Device, KeyBackup, SignaturesOnOthers, UserRecord,
};
use crate::archive::{fsutil, Entry, ItemKind};
use crate::error::{Error, Result};
use crate::synapse::admin::UserApi;

/// A puppet token lives at most this long, even if we fail to log it out.
const PUPPET_LIFETIME: Duration = Duration::from_secs(3600);

/// Every local user (admin list entries), or just the one asked for.
pub(super) async fn list(ctx: &Ctx<'_>) -> Result<Vec<Value>> {
    let mut users = all_local(ctx).await?;
    if let Some(only) = &ctx.opts.only_user {
        users.retain(|u| u.get("name").and_then(Value::as_str) == Some(only.as_str()));
        if users.is_empty() {
            return Err(Error::Config(format!(
                "no local user {only} on this Synapse"
            )));
        }
    }
    users.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(users)
}

/// Every local user's admin list entry.
async fn all_local(ctx: &Ctx<'_>) -> Result<Vec<Value>> {
    let suffix = format!(":{}", ctx.source.server_name);
    Ok(ctx
        .source
        .admin
        .list_users()
        .await?
        .into_iter()
        .filter(|u| {
            u.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.ends_with(&suffix))
        })
        .collect())
}

fn names(users: &[Value]) -> Vec<String> {
    users
        .iter()
        .filter_map(|u| u.get("name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

pub(super) async fn dump(ctx: &Ctx<'_>, users: &[Value], summary: &mut DumpSummary) -> Result<()> {
    // Whom a user may have verified: every local user (without the database, each verifier's
    // view of their keys is the only place Synapse shows the signatures).
    let everyone = if ctx.opts.only_user.is_some() {
        names(&all_local(ctx).await?)
    } else {
        names(users)
    };
    let everyone = &everyone;
    let items: Vec<Item<()>> = users
        .iter()
        .filter_map(|u| u.get("name").and_then(Value::as_str))
        .map(|id| Item {
            id: id.to_owned(),
            weight: 1,
            data: (),
        })
        .collect();
    let bar = ctx.progress.bar("users", items.len() as u64);
    for_each_item(
        ctx,
        ItemKind::User,
        items,
        bar,
        |id, ()| async move { dump_one(ctx, &id, everyone).await },
        summary,
    )
    .await;
    Ok(())
}

async fn dump_one(ctx: &Ctx<'_>, user_id: &str, everyone: &[String]) -> Result<()> {
    let src = ctx.source;
    let admin = &src.admin;
    let details = admin.user(user_id).await?;
    let mut user = from_details(user_id, &details);
    user.devices = admin
        .devices(user_id)
        .await?
        .iter()
        .filter_map(device)
        .collect();
    user.devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    user.pushers = admin.pushers(user_id).await?;
    let ad = admin.account_data(user_id).await?;
    user.account_data.global = object_map(ad.get("global"));
    if let Some(rooms) = ad.get("rooms").and_then(Value::as_object) {
        for (room, data) in rooms {
            user.account_data
                .rooms
                .insert(room.clone(), object_map(Some(data)));
        }
    }

    // The admin cannot "login as" itself; it reads its own data with its own token.
    let is_self = user_id == src.admin_user_id;
    let token = if is_self {
        None
    } else {
        let until = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            + PUPPET_LIFETIME;
        Some(admin.login_as(user_id, until.as_millis() as u64).await?)
    };
    let api = match &token {
        Some(t) => UserApi::new(admin.http.clone(), t, user_id)?,
        None => admin.as_own_user().await?,
    };
    let client_result = read_as_user(&api, &mut user, everyone, src.db.is_none()).await;
    if token.is_some() {
        if let Err(e) = api.logout().await {
            tracing::warn!(
                user = user_id,
                "could not log the puppet token out (it expires in 1 h): {e}"
            );
        }
    }
    client_result?;

    if let Some(db) = &src.db {
        db.read_user(&mut user).await?;
    }

    let path = ctx.archive.user_path(user_id);
    let mut bytes =
        serde_json::to_vec_pretty(&user).map_err(|e| Error::malformed("user record", e))?;
    bytes.push(b'\n');
    fsutil::write_atomic(&path, &bytes, true)?;
    let sessions = user.key_backup.as_ref().map_or(0, KeyBackup::session_count);
    ctx.checkpoint.record(Entry {
        kind: ItemKind::User,
        id: user_id.to_owned(),
        files: BTreeMap::from([(ctx.archive.relative(&path), fsutil::sha256_hex(&bytes))]),
        counts: BTreeMap::from([
            ("devices".into(), user.devices.len() as u64),
            ("key_backup_sessions".into(), sessions),
        ]),
        errors: vec![],
    })?;
    Ok(())
}

/// What the user's own client API gives. `everyone` (the local users) is whom the user may
/// have verified; their signatures are read here only when the database will not give them.
async fn read_as_user(
    api: &UserApi,
    user: &mut UserRecord,
    everyone: &[String],
    signatures_from_api: bool,
) -> Result<()> {
    user.push_rules = Some(api.push_rules().await?);
    user.threepids = api.threepids().await?;
    let keys = api.keys_query().await?;
    let uid = user.user_id.as_str();
    user.e2e.device_keys = object_map(keys.get("device_keys").and_then(|d| d.get(uid)));
    user.e2e.master_key = keys.get("master_keys").and_then(|m| m.get(uid)).cloned();
    user.e2e.self_signing_key = keys
        .get("self_signing_keys")
        .and_then(|m| m.get(uid))
        .cloned();
    user.e2e.user_signing_key = keys
        .get("user_signing_keys")
        .and_then(|m| m.get(uid))
        .cloned();
    if signatures_from_api && user.e2e.user_signing_key.is_some() {
        user.e2e.signatures_on_others = signatures_seen(api, uid, everyone).await?;
    }
    if let Some(v) = api.key_backup_version().await? {
        let version = v
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let rooms = api.key_backup_sessions(&version).await?;
        user.key_backup = Some(KeyBackup {
            algorithm: v
                .get("algorithm")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            auth_data: v.get("auth_data").cloned().unwrap_or_default(),
            etag: v.get("etag").and_then(Value::as_str).map(str::to_owned),
            count: v.get("count").and_then(Value::as_u64).unwrap_or(0),
            rooms: object_map(Some(&rooms)),
            version,
        });
    }
    // Deactivated users have left every room; they have no tags worth keeping.
    if !user.deactivated {
        user.joined_rooms = api.joined_rooms().await?;
        user.joined_rooms.sort();
        for room in user.joined_rooms.clone() {
            let tags = api.tags(&room).await?;
            if tags
                .get("tags")
                .and_then(Value::as_object)
                .is_some_and(|t| !t.is_empty())
            {
                user.account_data
                    .rooms
                    .entry(room)
                    .or_default()
                    .insert("m.tag".into(), tags);
            }
        }
    }
    Ok(())
}

/// Users asked about in one `/keys/query`.
const KEYS_QUERY_BATCH: usize = 500;

/// The signatures `uid` made on other local users' master keys, as `uid`'s own `/keys/query`
/// shows them (Synapse adds the requester's signatures to the keys it returns).
async fn signatures_seen(
    api: &UserApi,
    uid: &str,
    everyone: &[String],
) -> Result<SignaturesOnOthers> {
    let mut out = SignaturesOnOthers::new();
    let others: Vec<&str> = everyone
        .iter()
        .map(String::as_str)
        .filter(|u| *u != uid)
        .collect();
    for batch in others.chunks(KEYS_QUERY_BATCH) {
        let keys = api.keys_query_of(batch).await?;
        let Some(masters) = keys.get("master_keys").and_then(Value::as_object) else {
            continue;
        };
        for (target, key) in masters {
            let Some(public) = cross_signing_public(key) else {
                continue;
            };
            let Some(sigs) = key["signatures"][uid].as_object() else {
                continue;
            };
            let sigs: BTreeMap<String, String> = sigs
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect();
            if !sigs.is_empty() {
                out.entry(target.clone())
                    .or_default()
                    .insert(public.to_owned(), sigs);
            }
        }
    }
    Ok(out)
}

fn from_details(user_id: &str, d: &Value) -> UserRecord {
    let b = |k: &str| d.get(k).and_then(Value::as_bool).unwrap_or(false);
    let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_owned);
    UserRecord {
        user_id: user_id.to_owned(),
        admin: b("admin"),
        deactivated: b("deactivated"),
        erased: b("erased"),
        locked: b("locked"),
        shadow_banned: b("shadow_banned"),
        is_guest: b("is_guest"),
        user_type: s("user_type"),
        appservice_id: s("appservice_id"),
        // The details API gives seconds (the list API milliseconds).
        creation_ts: d.get("creation_ts").and_then(Value::as_i64).map(|t| {
            if t < 100_000_000_000 {
                t * 1000
            } else {
                t
            }
        }),
        displayname: s("displayname"),
        avatar_url: s("avatar_url"),
        ..Default::default()
    }
}

fn device(d: &Value) -> Option<Device> {
    Some(Device {
        device_id: d.get("device_id")?.as_str()?.to_owned(),
        display_name: d
            .get("display_name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        last_seen_ip: d
            .get("last_seen_ip")
            .and_then(Value::as_str)
            .map(str::to_owned),
        last_seen_ts: d.get("last_seen_ts").and_then(Value::as_i64),
        last_seen_user_agent: d
            .get("last_seen_user_agent")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn object_map(v: Option<&Value>) -> BTreeMap<String, Value> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

//! Read-only access to Synapse's own database, for what no HTTP API gives (synapse.md §4):
//! password hashes, access tokens with their devices, one-time and fallback keys, pending
//! to-device messages, and the exact timeline order (`topological_ordering, stream_ordering`).
//!
//! SQLite is opened with `mode=ro`; PostgreSQL sessions are set `default_transaction_read_only`.
//! Queries name their columns and use `$n` placeholders, which both backends accept.

use serde_json::Value;
use sqlx::{any::AnyPoolOptions, AnyPool, Row};

use crate::archive::user::{
    cross_signing_public, AccessToken, FallbackKey, SignaturesOnOthers, UserRecord,
};
use crate::error::{Error, Result};

/// A read-only connection pool to Synapse's database.
pub struct SynapseDb {
    pool: AnyPool,
    pub backend: &'static str,
}

impl SynapseDb {
    /// Opens a SQLite path or a `postgres://` URL, read-only.
    pub async fn open(location: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (url, backend) =
            if location.starts_with("postgres://") || location.starts_with("postgresql://") {
                (location.to_owned(), "postgresql")
            } else {
                let path = location.strip_prefix("sqlite://").unwrap_or(location);
                if !std::path::Path::new(path).is_file() {
                    return Err(Error::Database(format!("{path}: no such file")));
                }
                (format!("sqlite://{path}?mode=ro"), "sqlite")
            };
        let is_pg = backend == "postgresql";
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if is_pg {
                        sqlx::query("SET default_transaction_read_only = on")
                            .execute(conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| Error::Database(format!("cannot open ({backend}): {e}")))?;
        Ok(SynapseDb { pool, backend })
    }

    /// Number of users (a connectivity check).
    pub async fn user_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT count(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    /// The room's event ids in Synapse's timeline order.
    pub async fn room_event_order(&self, room_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT event_id FROM events WHERE room_id = $1 \
             ORDER BY topological_ordering, stream_ordering",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("event_id").map_err(Error::from))
            .collect()
    }

    /// Local aliases pointing at a room.
    pub async fn room_aliases(&self, room_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT room_alias FROM room_aliases WHERE room_id = $1 ORDER BY room_alias",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("room_alias").map_err(Error::from))
            .collect()
    }

    /// Fills `user.secrets` and the database-only E2E keys of one user.
    pub async fn read_user(&self, user: &mut UserRecord) -> Result<()> {
        let uid = user.user_id.as_str();
        let hash = sqlx::query("SELECT password_hash FROM users WHERE name = $1")
            .bind(uid)
            .fetch_optional(&self.pool)
            .await?;
        user.secrets.password_hash = hash.and_then(|r| {
            r.try_get::<Option<String>, _>("password_hash")
                .ok()
                .flatten()
        });

        // Puppet tokens (login-as, including ours) have puppets_user_id set: never migrate them.
        let rows = sqlx::query(
            "SELECT token, device_id, valid_until_ms FROM access_tokens \
             WHERE user_id = $1 AND puppets_user_id IS NULL ORDER BY id",
        )
        .bind(uid)
        .fetch_all(&self.pool)
        .await?;
        user.secrets.access_tokens = rows
            .iter()
            .map(|r| {
                Ok(AccessToken {
                    token: r.try_get("token")?,
                    device_id: r.try_get("device_id")?,
                    valid_until_ms: r.try_get("valid_until_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;

        let rows = sqlx::query(
            "SELECT device_id, token, expiry_ts, ultimate_session_expiry_ts FROM refresh_tokens \
             WHERE user_id = $1 ORDER BY id",
        )
        .bind(uid)
        .fetch_all(&self.pool)
        .await?;
        user.secrets.refresh_tokens = rows
            .iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "device_id": r.try_get::<Option<String>, _>("device_id")?,
                    "token": r.try_get::<String, _>("token")?,
                    "expiry_ts": r.try_get::<Option<i64>, _>("expiry_ts")?,
                    "ultimate_session_expiry_ts": r.try_get::<Option<i64>, _>("ultimate_session_expiry_ts")?,
                }))
            })
            .collect::<Result<_, sqlx::Error>>()?;

        let rows = sqlx::query(
            "SELECT device_id, stream_id, message_json FROM device_inbox \
             WHERE user_id = $1 ORDER BY stream_id",
        )
        .bind(uid)
        .fetch_all(&self.pool)
        .await?;
        user.secrets.to_device = rows
            .iter()
            .map(|r| {
                let text: String = r.try_get("message_json")?;
                Ok(serde_json::json!({
                    "device_id": r.try_get::<String, _>("device_id")?,
                    "stream_id": r.try_get::<i64, _>("stream_id")?,
                    "message": json_or_string(&text),
                }))
            })
            .collect::<Result<_, sqlx::Error>>()?;

        let rows = sqlx::query(
            "SELECT device_id, algorithm, key_id, key_json FROM e2e_one_time_keys_json \
             WHERE user_id = $1 ORDER BY device_id, algorithm, key_id",
        )
        .bind(uid)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            let (device, id, key) = e2e_key_row(r)?;
            user.e2e
                .one_time_keys
                .entry(device)
                .or_default()
                .insert(id, key);
        }

        let rows = sqlx::query(
            "SELECT device_id, algorithm, key_id, key_json, \
             CASE WHEN used THEN 1 ELSE 0 END AS used FROM e2e_fallback_keys_json \
             WHERE user_id = $1 ORDER BY device_id, algorithm, key_id",
        )
        .bind(uid)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            let (device, id, key) = e2e_key_row(r)?;
            let used: i32 = r.try_get("used")?;
            user.e2e.fallback_keys.entry(device).or_default().insert(
                id,
                FallbackKey {
                    key,
                    used: used != 0,
                },
            );
        }
        self.read_signatures_on_others(user).await?;
        user.secrets.read_from_db = true;
        Ok(())
    }

    /// The signatures the user made on other users' keys (their verified contacts), and the
    /// master keys of the remote users among them. Only signatures on a target's current
    /// master key count: Synapse returns no other.
    async fn read_signatures_on_others(&self, user: &mut UserRecord) -> Result<()> {
        let uid = user.user_id.as_str();
        let rows = sqlx::query(
            "SELECT target_user_id, target_device_id, key_id, signature \
             FROM e2e_cross_signing_signatures WHERE user_id = $1 AND target_user_id <> $1 \
             ORDER BY target_user_id, target_device_id, key_id",
        )
        .bind(uid)
        .fetch_all(&self.pool)
        .await?;
        let mut sigs = SignaturesOnOthers::new();
        for r in &rows {
            let target: String = r.try_get("target_user_id")?;
            let key: String = r.try_get("target_device_id")?;
            sigs.entry(target)
                .or_default()
                .entry(key)
                .or_default()
                .insert(r.try_get("key_id")?, r.try_get("signature")?);
        }
        user.e2e.remote_master_keys.clear();
        let local = <&ruma::UserId>::try_from(uid)
            .ok()
            .map(|u| u.server_name().to_owned());
        for (target, keys) in &mut sigs {
            let Some(master) = self.master_key(target).await? else {
                keys.clear();
                continue;
            };
            let public = cross_signing_public(&master).unwrap_or_default().to_owned();
            keys.retain(|k, _| *k == public);
            let remote = <&ruma::UserId>::try_from(target.as_str())
                .is_ok_and(|t| Some(t.server_name()) != local.as_deref());
            if !keys.is_empty() && remote {
                user.e2e.remote_master_keys.insert(target.clone(), master);
            }
        }
        sigs.retain(|_, keys| !keys.is_empty());
        user.e2e.signatures_on_others = sigs;
        Ok(())
    }

    /// A user's current master key as Synapse stores it (local or cached remote).
    async fn master_key(&self, user_id: &str) -> Result<Option<Value>> {
        let row = sqlx::query(
            "SELECT keydata FROM e2e_cross_signing_keys WHERE user_id = $1 \
             AND keytype = 'master' ORDER BY stream_id DESC LIMIT 1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some(json_or_string(&r.try_get::<String, _>("keydata")?))),
            None => Ok(None),
        }
    }
}

/// `(device_id, "algorithm:key_id", key JSON)` of a one-time or fallback key row.
fn e2e_key_row(r: &sqlx::any::AnyRow) -> Result<(String, String, Value), sqlx::Error> {
    let id = format!(
        "{}:{}",
        r.try_get::<String, _>("algorithm")?,
        r.try_get::<String, _>("key_id")?
    );
    let key: String = r.try_get("key_json")?;
    Ok((r.try_get("device_id")?, id, json_or_string(&key)))
}

fn json_or_string(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

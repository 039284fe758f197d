//! Synapse's admin API (an admin access token) — enumeration of users, rooms and media, and
//! "login as user" tokens for the client API.

use reqwest::{header::HeaderValue, Method};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::synapse::http::{bearer, Http};

/// Percent-encodes one path segment (user, room, event and media ids).
pub fn enc(s: &str) -> String {
    urlencoding::encode(s).into_owned()
}

/// The admin API with an admin's token.
#[derive(Clone)]
pub struct AdminApi {
    pub http: Http,
    auth: HeaderValue,
}

impl AdminApi {
    pub fn new(http: Http, token: &str) -> Result<Self> {
        Ok(AdminApi {
            http,
            auth: bearer(token)?,
        })
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.http
            .json(Method::GET, path, Some(&self.auth), None)
            .await
    }

    /// GET, then the array under `key`.
    async fn get_array(&self, path: &str, key: &str) -> Result<Vec<Value>> {
        Ok(array(&self.get(path).await?, key)?.to_vec())
    }

    /// `whoami` for the admin token.
    pub async fn whoami(&self) -> Result<String> {
        let v = self.get("/_matrix/client/v3/account/whoami").await?;
        field_str(&v, "user_id", "whoami")
    }

    /// Fails unless the token belongs to a server admin.
    pub async fn check_is_admin(&self) -> Result<()> {
        self.get("/_synapse/admin/v2/users?limit=1")
            .await
            .map(|_| ())
    }

    pub async fn server_version(&self) -> Result<String> {
        let v = self.get("/_synapse/admin/v1/server_version").await?;
        field_str(&v, "server_version", "server_version")
    }

    /// Every user, deactivated ones included (v2 leaves them out unless asked).
    pub async fn list_users(&self) -> Result<Vec<Value>> {
        self.paginate(
            "/_synapse/admin/v2/users?deactivated=true&guests=true&limit=500",
            "users",
            "next_token",
        )
        .await
    }

    pub async fn user(&self, user_id: &str) -> Result<Value> {
        self.get(&format!("/_synapse/admin/v2/users/{}", enc(user_id)))
            .await
    }

    pub async fn devices(&self, user_id: &str) -> Result<Vec<Value>> {
        self.get_array(
            &format!("/_synapse/admin/v2/users/{}/devices", enc(user_id)),
            "devices",
        )
        .await
    }

    pub async fn pushers(&self, user_id: &str) -> Result<Vec<Value>> {
        self.get_array(
            &format!("/_synapse/admin/v1/users/{}/pushers", enc(user_id)),
            "pushers",
        )
        .await
    }

    pub async fn account_data(&self, user_id: &str) -> Result<Value> {
        let v = self
            .get(&format!(
                "/_synapse/admin/v1/users/{}/accountdata",
                enc(user_id)
            ))
            .await?;
        Ok(v.get("account_data").cloned().unwrap_or_default())
    }

    /// A puppet token for the user (no device); log it out with [`UserApi::logout`].
    pub async fn login_as(&self, user_id: &str, valid_until_ms: u64) -> Result<String> {
        let v = self
            .http
            .json(
                Method::POST,
                &format!("/_synapse/admin/v1/users/{}/login", enc(user_id)),
                Some(&self.auth),
                Some(&json!({ "valid_until_ms": valid_until_ms })),
            )
            .await?;
        field_str(&v, "access_token", "login as user")
    }

    /// Local media uploaded by a user.
    pub async fn user_media(&self, user_id: &str) -> Result<Vec<Value>> {
        let base = format!(
            "/_synapse/admin/v1/users/{}/media?limit=500&order_by=created_ts&dir=f",
            enc(user_id)
        );
        self.paginate(&base, "media", "next_token").await
    }

    /// Every room the server knows.
    pub async fn list_rooms(&self) -> Result<Vec<Value>> {
        self.paginate("/_synapse/admin/v1/rooms?limit=500", "rooms", "next_batch")
            .await
    }

    /// Follows Synapse's offset pagination (`from=<token>`, the next token as a string or a
    /// number, absent on the last page) and concatenates the pages' `items` arrays.
    async fn paginate(&self, base: &str, items: &str, next: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut from = "0".to_owned();
        loop {
            let v = self.get(&format!("{base}&from={}", enc(&from))).await?;
            let page = array(&v, items)?;
            out.extend(page.iter().cloned());
            from = match v.get(next) {
                Some(Value::String(s)) if !page.is_empty() => s.clone(),
                Some(Value::Number(n)) if !page.is_empty() => n.to_string(),
                _ => return Ok(out),
            };
        }
    }

    pub async fn room(&self, room_id: &str) -> Result<Value> {
        self.get(&format!("/_synapse/admin/v1/rooms/{}", enc(room_id)))
            .await
    }

    /// The current state in client format (each entry has `event_id`).
    pub async fn room_state(&self, room_id: &str) -> Result<Vec<Value>> {
        self.get_array(
            &format!("/_synapse/admin/v1/rooms/{}/state", enc(room_id)),
            "state",
        )
        .await
    }

    pub async fn forward_extremities(&self, room_id: &str) -> Result<Vec<String>> {
        let v = self
            .get(&format!(
                "/_synapse/admin/v1/rooms/{}/forward_extremities",
                enc(room_id)
            ))
            .await?;
        let mut ids: Vec<String> = array(&v, "results")?
            .iter()
            .filter_map(|r| r.get("event_id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// One page of `/messages` in federation format (full PDUs plus `event_id`/`unsigned`),
    /// oldest first. A bare `&raw` is ignored by Synapse 1.163 (it wants a value), so the
    /// explicit `event_format` filter is used.
    pub async fn messages_raw(
        &self,
        room_id: &str,
        from: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let mut path = format!(
            "/_synapse/admin/v1/rooms/{}/messages?dir=f&limit=1000&filter={}",
            enc(room_id),
            enc(r#"{"event_format":"federation"}"#)
        );
        if let Some(from) = from {
            path.push_str(&format!("&from={}", enc(from)));
        }
        let v = self.get(&path).await?;
        let chunk = array(&v, "chunk")?.to_vec();
        let end = v.get("end").and_then(Value::as_str).map(str::to_owned);
        Ok((chunk, end))
    }

    /// One event as Synapse stores it (full PDU, unredacted).
    pub async fn fetch_event(&self, event_id: &str) -> Result<Value> {
        let v = self
            .get(&format!("/_synapse/admin/v1/fetch_event/{}", enc(event_id)))
            .await?;
        v.get("event")
            .cloned()
            .ok_or_else(|| Error::malformed("fetch_event answer", "no `event`"))
    }

    /// Downloads a local media item (authenticated media).
    pub async fn download_media(
        &self,
        server: &str,
        media_id: &str,
    ) -> Result<crate::synapse::http::Body> {
        self.http
            .send(
                Method::GET,
                &format!(
                    "/_matrix/client/v1/media/download/{}/{}",
                    enc(server),
                    enc(media_id)
                ),
                Some(&self.auth),
                None,
            )
            .await
    }

    /// Local aliases of a room (client API; Synapse lets admins read them).
    pub async fn room_aliases(&self, room_id: &str) -> Result<Vec<String>> {
        let v = self
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/aliases",
                enc(room_id)
            ))
            .await?;
        Ok(array(&v, "aliases")?
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect())
    }

    /// The client API as the admin itself (the admin cannot "login as" itself).
    pub async fn as_own_user(&self) -> Result<UserApi> {
        let user_id = self.whoami().await?;
        Ok(UserApi {
            http: self.http.clone(),
            auth: self.auth.clone(),
            user_id,
        })
    }

    /// Logs the admin's own token out (used after a password login).
    pub async fn logout(&self) -> Result<()> {
        self.http
            .json(
                Method::POST,
                "/_matrix/client/v3/logout",
                Some(&self.auth),
                Some(&json!({})),
            )
            .await
            .map(|_| ())
    }
}

/// Logs in with a password; returns the access token. Creates a device that [`AdminApi::logout`]
/// removes again.
pub async fn password_login(http: &Http, user: &str, password: &str) -> Result<String> {
    let body = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        "initial_device_display_name": "transition-matrix (temporary)",
    });
    let v = http
        .json(Method::POST, "/_matrix/client/v3/login", None, Some(&body))
        .await?;
    field_str(&v, "access_token", "login")
}

/// The client API as one user (a puppet token from [`AdminApi::login_as`]).
pub struct UserApi {
    http: Http,
    auth: HeaderValue,
    pub user_id: String,
}

impl UserApi {
    pub fn new(http: Http, token: &str, user_id: &str) -> Result<Self> {
        Ok(UserApi {
            http,
            auth: bearer(token)?,
            user_id: user_id.to_owned(),
        })
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.http
            .json(Method::GET, path, Some(&self.auth), None)
            .await
    }

    /// GET, then the array under `key`.
    async fn get_array(&self, path: &str, key: &str) -> Result<Vec<Value>> {
        Ok(array(&self.get(path).await?, key)?.to_vec())
    }

    pub async fn push_rules(&self) -> Result<Value> {
        self.get("/_matrix/client/v3/pushrules/").await
    }

    pub async fn threepids(&self) -> Result<Vec<Value>> {
        self.get_array("/_matrix/client/v3/account/3pid", "threepids")
            .await
    }

    /// Device and cross-signing keys of this user.
    pub async fn keys_query(&self) -> Result<Value> {
        self.keys_query_of(&[self.user_id.as_str()]).await
    }

    /// Device and cross-signing keys of other users, as this user sees them (with the
    /// signatures this user made on them).
    pub async fn keys_query_of(&self, users: &[&str]) -> Result<Value> {
        let wanted: serde_json::Map<String, Value> =
            users.iter().map(|u| ((*u).to_owned(), json!([]))).collect();
        let body = json!({ "device_keys": wanted });
        self.http
            .json(
                Method::POST,
                "/_matrix/client/v3/keys/query",
                Some(&self.auth),
                Some(&body),
            )
            .await
    }

    /// The latest key backup version, or `None` when the user has none.
    pub async fn key_backup_version(&self) -> Result<Option<Value>> {
        match self.get("/_matrix/client/v3/room_keys/version").await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every backed-up session of a backup version: `{room_id: {"sessions": {..}}}`.
    pub async fn key_backup_sessions(&self, version: &str) -> Result<Value> {
        let v = self
            .get(&format!(
                "/_matrix/client/v3/room_keys/keys?version={}",
                enc(version)
            ))
            .await?;
        Ok(v.get("rooms").cloned().unwrap_or_else(|| json!({})))
    }

    pub async fn joined_rooms(&self) -> Result<Vec<String>> {
        let v = self.get("/_matrix/client/v3/joined_rooms").await?;
        Ok(array(&v, "joined_rooms")?
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect())
    }

    /// Room tags (`m.tag`), which the admin account-data API leaves out.
    pub async fn tags(&self, room_id: &str) -> Result<Value> {
        self.get(&format!(
            "/_matrix/client/v3/user/{}/rooms/{}/tags",
            enc(&self.user_id),
            enc(room_id)
        ))
        .await
    }

    /// Deletes this (puppet) token.
    pub async fn logout(&self) -> Result<()> {
        self.http
            .json(
                Method::POST,
                "/_matrix/client/v3/logout",
                Some(&self.auth),
                Some(&json!({})),
            )
            .await
            .map(|_| ())
    }
}

/// A string field of an API answer.
pub fn field_str(v: &Value, key: &str, what: &str) -> Result<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error::malformed(format!("{what} answer"), format!("no string `{key}`")))
}

/// An array field of an API answer.
pub fn array<'a>(v: &'a Value, key: &str) -> Result<&'a [Value]> {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| Error::malformed("Synapse answer", format!("no array `{key}`")))
}

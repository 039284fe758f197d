//! One user as dumped: `users/<localpart>.json` (mode 0600: it holds tokens and hashes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything known about one local user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub user_id: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub deactivated: bool,
    #[serde(default)]
    pub erased: bool,
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub shadow_banned: bool,
    #[serde(default)]
    pub is_guest: bool,
    pub user_type: Option<String>,
    pub appservice_id: Option<String>,
    /// Account creation time, milliseconds.
    pub creation_ts: Option<i64>,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub threepids: Vec<Value>,
    #[serde(default)]
    pub account_data: AccountData,
    /// `{"global": Ruleset}` as `GET /pushrules/` returns it.
    pub push_rules: Option<Value>,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub pushers: Vec<Value>,
    #[serde(default)]
    pub e2e: E2eKeys,
    pub key_backup: Option<KeyBackup>,
    #[serde(default)]
    pub joined_rooms: Vec<String>,
    /// Only from Synapse's database (`--synapse-db`).
    #[serde(default)]
    pub secrets: UserSecrets,
}

/// Global and per-room account data, by type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountData {
    #[serde(default)]
    pub global: BTreeMap<String, Value>,
    #[serde(default)]
    pub rooms: BTreeMap<String, BTreeMap<String, Value>>,
}

/// One device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_user_agent: Option<String>,
}

/// Public end-to-end keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct E2eKeys {
    /// Device keys by device id, as `/keys/query` returns them.
    #[serde(default)]
    pub device_keys: BTreeMap<String, Value>,
    pub master_key: Option<Value>,
    pub self_signing_key: Option<Value>,
    pub user_signing_key: Option<Value>,
    /// One-time keys by device, then by `algorithm:key_id` (database only).
    #[serde(default)]
    pub one_time_keys: BTreeMap<String, BTreeMap<String, Value>>,
    /// Fallback keys by device, then by `algorithm:key_id` (database only).
    #[serde(default)]
    pub fallback_keys: BTreeMap<String, BTreeMap<String, FallbackKey>>,
    /// Signatures this user made on other users' master keys: a verified contact (their
    /// user-signing key signed the contact's master key). Target user → the signed key's
    /// public key → signing key id (`ed25519:…`) → signature. Synapse shows each only to the
    /// user who made it; see docs/CONDUIT.md, "Verified contacts".
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub signatures_on_others: SignaturesOnOthers,
    /// The master keys of remote users this user signed, as Synapse last had them (database
    /// only): Conduit keeps its users' signatures on a remote key in its own copy of that key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remote_master_keys: BTreeMap<String, Value>,
}

/// Signatures one user made on others' keys, in [`E2eKeys::signatures_on_others`]'s shape.
pub type SignaturesOnOthers = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;

/// The public key of a cross-signing key as `/keys/query` gives it: the value of its one-entry
/// `keys` (Conduit keys its `keyid_key` entry by it; Synapse's signatures name it as the target).
pub fn cross_signing_public(key: &Value) -> Option<&str> {
    key["keys"]
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(Value::as_str)
}

/// A fallback key and whether it was used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FallbackKey {
    pub key: Value,
    pub used: bool,
}

/// The server-side key backup (latest version) with every session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyBackup {
    pub version: String,
    pub algorithm: String,
    pub auth_data: Value,
    pub etag: Option<String>,
    pub count: u64,
    /// `{room_id: {"sessions": {session_id: KeyBackupData}}}` as `GET /room_keys/keys` returns it.
    pub rooms: BTreeMap<String, Value>,
}

impl KeyBackup {
    /// The number of sessions actually held.
    pub fn session_count(&self) -> u64 {
        self.rooms
            .values()
            .map(|r| {
                r.get("sessions")
                    .and_then(Value::as_object)
                    .map_or(0, |s| s.len() as u64)
            })
            .sum()
    }
}

/// What only Synapse's database gives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserSecrets {
    /// Whether the database was read for this user.
    #[serde(default)]
    pub read_from_db: bool,
    pub password_hash: Option<String>,
    #[serde(default)]
    pub access_tokens: Vec<AccessToken>,
    #[serde(default)]
    pub refresh_tokens: Vec<Value>,
    /// Pending to-device messages: `{device_id, stream_id, message}`.
    #[serde(default)]
    pub to_device: Vec<Value>,
}

/// An access token and the device it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessToken {
    pub token: String,
    pub device_id: Option<String>,
    pub valid_until_ms: Option<i64>,
}

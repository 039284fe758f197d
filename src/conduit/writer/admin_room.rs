//! The admin room (conduit-db.md §6.11): Conduit creates it only on an empty database, so a
//! writer that fills the database must create it, or Conduit runs without admins and admin
//! commands (`reset-password` among them). Built like Conduit's own — the same nine events,
//! sent by `@conduit:S` and signed with the server key — and Synapse's server admins are
//! invited and joined with power level 100, which is what makes them Conduit admins.

use serde_json::json;

use super::Writer;
use crate::archive::room::{PduLine, RoomMeta};
use crate::conduit::store::Store;
use crate::error::{Error, Result};
use crate::matrix::forge::RoomBuilder;
use crate::matrix::keys::ServerKey;

/// The version of the admin room (any version Conduit supports works; 10 lets us choose the id).
const VERSION: &str = "10";

impl<S: Store> Writer<S> {
    /// Creates the admin room with `admins` (user id, display name) joined, unless the database
    /// has one. Returns the new room's id.
    pub fn put_admin_room(
        &mut self,
        key: &ServerKey,
        admins: &[(String, Option<String>)],
    ) -> Result<Option<String>> {
        if self.store.get("alias_roomid", b"admins")?.is_some() {
            return Ok(None);
        }
        let server = self.server_name.clone();
        let conduit = format!("@conduit:{server}");
        let alias = format!("#admins:{server}");
        let room_id = ruma::RoomId::new_v1(
            <&ruma::ServerName>::try_from(server.as_str())
                .map_err(|e| Error::Config(format!("server name {server}: {e}")))?,
        )
        .to_string();
        let signer = crate::matrix::signer::EventSigner::new(key, &server);
        let forge = |e: crate::matrix::pdu::PduError| Error::malformed("the admin room", e);
        let mut b = RoomBuilder::new(&signer, VERSION, &room_id).map_err(forge)?;
        let mut ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut users = serde_json::Map::new();
        users.insert(conduit.clone(), json!(100));
        for (a, _) in admins {
            users.insert(a.clone(), json!(100));
        }
        let mut events: Vec<(String, &str, Option<String>, serde_json::Value)> = vec![
            (
                conduit.clone(),
                "m.room.create",
                Some(String::new()),
                json!({"creator": conduit, "room_version": VERSION}),
            ),
            (
                conduit.clone(),
                "m.room.member",
                Some(conduit.clone()),
                json!({"membership": "join", "displayname": "conduit"}),
            ),
            (
                conduit.clone(),
                "m.room.power_levels",
                Some(String::new()),
                json!({
                    "users": users, "users_default": 0, "events_default": 0, "state_default": 50,
                    "ban": 50, "kick": 50, "redact": 50, "invite": 0,
                }),
            ),
            (
                conduit.clone(),
                "m.room.join_rules",
                Some(String::new()),
                json!({"join_rule": "invite"}),
            ),
            (
                conduit.clone(),
                "m.room.history_visibility",
                Some(String::new()),
                json!({"history_visibility": "shared"}),
            ),
            (
                conduit.clone(),
                "m.room.guest_access",
                Some(String::new()),
                json!({"guest_access": "forbidden"}),
            ),
            (
                conduit.clone(),
                "m.room.name",
                Some(String::new()),
                json!({"name": format!("{server} Admin Room")}),
            ),
            (
                conduit.clone(),
                "m.room.topic",
                Some(String::new()),
                json!({"topic": format!("Manage {server}")}),
            ),
            (
                conduit.clone(),
                "m.room.canonical_alias",
                Some(String::new()),
                json!({"alias": alias}),
            ),
        ];
        for (a, name) in admins {
            events.push((
                conduit.clone(),
                "m.room.member",
                Some(a.clone()),
                json!({"membership": "invite"}),
            ));
            let mut join = json!({"membership": "join"});
            if let Some(n) = name {
                join["displayname"] = json!(n);
            }
            events.push((a.clone(), "m.room.member", Some(a.clone()), join));
        }
        let mut lines: Vec<PduLine> = Vec::with_capacity(events.len());
        for (sender, kind, state_key, content) in events {
            ts += 1;
            lines.push(
                b.send(&sender, kind, state_key.as_deref(), content, ts)
                    .map_err(forge)?,
            );
        }
        let meta = RoomMeta {
            room_id: room_id.clone(),
            version: VERSION.to_owned(),
            creator: Some(conduit),
            name: Some(format!("{server} Admin Room")),
            canonical_alias: Some(alias.clone()),
            aliases: vec![alias],
            joined_local_members: 1 + admins.len() as u64,
            current_state: b.current_state(),
            current_state_source: "forged".into(),
            forward_extremities: b.last_event().map(str::to_owned).into_iter().collect(),
            events: lines.len() as u64,
            history_source: "forged".into(),
            order_source: "forged".into(),
            ..Default::default()
        };
        self.put_room(&meta, &[], lines.into_iter().map(Ok))?;
        Ok(Some(room_id))
    }
}

//! Users: account, profile, devices and their access tokens (so logged-in clients stay logged
//! in), E2E keys, key backup, pushers, pending to-device messages and account data — every
//! write keyed so that writing the same user twice leaves one copy.

use serde_json::{json, Value};

use super::Writer;
use crate::archive::user::{cross_signing_public, UserRecord};
use crate::conduit::schema::{joined, u64be};
use crate::conduit::store::Store;
use crate::error::{Error, Result};

impl<S: Store> Writer<S> {
    /// Writes one user from the archive.
    pub fn put_user(&mut self, u: &UserRecord) -> Result<()> {
        let uid = u.user_id.as_bytes();
        if !u.user_id.ends_with(&format!(":{}", self.server_name)) {
            return Err(Error::Config(format!(
                "{} is not a user of {}",
                u.user_id, self.server_name
            )));
        }
        // Deactivated users keep their account but cannot log in ("").
        let hash = if u.deactivated {
            ""
        } else {
            u.secrets.password_hash.as_deref().unwrap_or("")
        };
        self.store.put("userid_password", uid, hash.as_bytes())?;
        self.put_opt("userid_displayname", uid, u.displayname.as_deref())?;
        self.put_opt("userid_avatarurl", uid, u.avatar_url.as_deref())?;

        for d in &u.devices {
            let key = joined(&[uid, d.device_id.as_bytes()]);
            let meta = json!({"device_id": d.device_id, "display_name": d.display_name,
                "last_seen_ip": d.last_seen_ip, "last_seen_ts": d.last_seen_ts});
            self.store
                .put("userdeviceid_metadata", &key, meta.to_string().as_bytes())?;
            // Synapse may hold several tokens per device; Conduit one. The newest wins.
            if let Some(t) = u
                .secrets
                .access_tokens
                .iter()
                .rev()
                .find(|t| t.device_id.as_deref() == Some(&d.device_id))
            {
                if let Some(old) = self.store.get("userdeviceid_token", &key)? {
                    self.store.delete("token_userdeviceid", &old)?;
                }
                self.store
                    .put("userdeviceid_token", &key, t.token.as_bytes())?;
                self.store
                    .put("token_userdeviceid", t.token.as_bytes(), &key)?;
            }
        }
        if !u.devices.is_empty() {
            let n = self.next_count();
            self.store.put("userid_devicelistversion", uid, &u64be(n))?;
        }
        self.put_e2e(u)?;
        self.put_key_backup(u)?;
        for p in &u.pushers {
            let Some(pushkey) = p.get("pushkey").and_then(Value::as_str) else {
                continue;
            };
            let mut pusher = json!({});
            for k in [
                "pushkey",
                "app_id",
                "kind",
                "data",
                "app_display_name",
                "device_display_name",
                "lang",
                "profile_tag",
            ] {
                if let Some(v) = p.get(k).filter(|v| !v.is_null()) {
                    pusher[k] = v.clone();
                }
            }
            self.store.put(
                "senderkey_pusher",
                &joined(&[uid, pushkey.as_bytes()]),
                pusher.to_string().as_bytes(),
            )?;
        }
        for m in &u.secrets.to_device {
            let (Some(device), Some(msg)) = (m["device_id"].as_str(), m.get("message")) else {
                continue;
            };
            let prefix = joined(&[uid, device.as_bytes(), b""]);
            if !self
                .store
                .scan_prefix("todeviceid_events", &prefix)?
                .is_empty()
            {
                continue; // written by an earlier run
            }
            let n = self.next_count();
            let ev =
                json!({"type": msg["type"], "sender": msg["sender"], "content": msg["content"]});
            let mut key = prefix;
            key.extend_from_slice(&u64be(n));
            self.store
                .put("todeviceid_events", &key, ev.to_string().as_bytes())?;
        }
        for (kind, content) in &u.account_data.global {
            self.put_account_data(None, &u.user_id, kind, content)?;
        }
        for (room, data) in &u.account_data.rooms {
            for (kind, content) in data {
                self.put_account_data(Some(room), &u.user_id, kind, content)?;
            }
        }
        if let Some(rules) = &u.push_rules {
            self.put_account_data(None, &u.user_id, "m.push_rules", rules)?;
        }
        Ok(())
    }

    fn put_opt(&mut self, tree: &str, key: &[u8], value: Option<&str>) -> Result<()> {
        match value {
            Some(v) => self.store.put(tree, key, v.as_bytes()),
            None => self.store.delete(tree, key),
        }
    }

    fn put_e2e(&mut self, u: &UserRecord) -> Result<()> {
        let uid = u.user_id.as_bytes();
        for (device, keys) in &u.e2e.device_keys {
            self.store.put(
                "keyid_key",
                &joined(&[uid, device.as_bytes()]),
                keys.to_string().as_bytes(),
            )?;
        }
        for (key, tree) in [
            (&u.e2e.master_key, "userid_masterkeyid"),
            (&u.e2e.self_signing_key, "userid_selfsigningkeyid"),
            (&u.e2e.user_signing_key, "userid_usersigningkeyid"),
        ] {
            let Some(key) = key else { continue };
            // keyid_key is keyed by the public key itself (the value of the one-entry `keys`).
            let Some(public) = cross_signing_public(key) else {
                return Err(Error::malformed(
                    format!("cross-signing key of {}", u.user_id),
                    "no public key",
                ));
            };
            let id = joined(&[uid, public.as_bytes()]);
            self.store
                .put("keyid_key", &id, key.to_string().as_bytes())?;
            self.store.put(tree, uid, &id)?;
        }
        let mut otks = false;
        for (device, keys) in &u.e2e.one_time_keys {
            for (id, key) in keys {
                // The key id is stored as its JSON string, quotes included.
                let quoted = serde_json::to_string(id).expect("strings serialize");
                let k = joined(&[uid, device.as_bytes(), quoted.as_bytes()]);
                self.store
                    .put("onetimekeyid_onetimekeys", &k, key.to_string().as_bytes())?;
                otks = true;
            }
        }
        if otks {
            let n = self.next_count();
            self.store
                .put("userid_lastonetimekeyupdate", uid, &u64be(n))?;
        }
        if !u.e2e.device_keys.is_empty() || u.e2e.master_key.is_some() {
            let n = self.next_count();
            let mut k = joined(&[uid, b""]);
            k.extend_from_slice(&u64be(n));
            self.store.put("keychangeid_userid", &k, uid)?;
        }
        Ok(())
    }

    /// Adds the signatures `u` made on other users' master keys to those keys, as Conduit's
    /// `sign_key` does: the signed key's JSON in `keyid_key` holds every signer's signatures,
    /// and `/keys/query` shows each viewer the owner's and their own (docs/CONDUIT.md,
    /// "Verified contacts"). Run after every user is written, so local targets are there.
    /// Returns the signatures added; one on a key that is no longer the target's master key is
    /// left out (Synapse shows none such either).
    pub fn put_signatures_on_others(&mut self, u: &UserRecord) -> Result<u64> {
        let mut added = 0;
        for (target, keys) in &u.e2e.signatures_on_others {
            let tid = target.as_bytes();
            let remote = u.e2e.remote_master_keys.get(target);
            for (public, sigs) in keys {
                let id = joined(&[tid, public.as_bytes()]);
                let stored = self.store.get("keyid_key", &id)?;
                let mut key: Value = match remote {
                    // A remote user's key: the one Synapse cached, or our copy of it.
                    Some(master) if cross_signing_public(master) == Some(public.as_str()) => {
                        match stored {
                            Some(bytes) => parse_key(&bytes, target)?,
                            None => master.clone(),
                        }
                    }
                    Some(_) => continue,
                    // A local user's key, if it is still their master key.
                    None => match stored {
                        Some(bytes)
                            if self.store.get("userid_masterkeyid", tid)?.as_deref()
                                == Some(&id[..]) =>
                        {
                            parse_key(&bytes, target)?
                        }
                        _ => continue,
                    },
                };
                let Some(fields) = key.as_object_mut() else {
                    continue;
                };
                let mut signatures = fields
                    .get("signatures")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let mut mine = signatures
                    .get(&u.user_id)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                for (key_id, sig) in sigs {
                    mine.insert(key_id.clone(), Value::String(sig.clone()));
                    added += 1;
                }
                signatures.insert(u.user_id.clone(), Value::Object(mine));
                fields.insert("signatures".into(), Value::Object(signatures));
                self.store
                    .put("keyid_key", &id, key.to_string().as_bytes())?;
                if remote.is_some() {
                    self.store.put("userid_masterkeyid", tid, &id)?;
                }
            }
        }
        Ok(added)
    }

    fn put_key_backup(&mut self, u: &UserRecord) -> Result<()> {
        let Some(b) = &u.key_backup else {
            return Ok(());
        };
        let uid = u.user_id.as_bytes();
        // Conduit's versions are decimal counts; reuse the one an earlier run wrote.
        let existing = self
            .store
            .scan_prefix("backupid_algorithm", &joined(&[uid, b""]))?;
        let version = match existing.last() {
            Some((k, _)) => String::from_utf8_lossy(&k[uid.len() + 1..]).into_owned(),
            None => self.next_count().to_string(),
        };
        let vkey = joined(&[uid, version.as_bytes()]);
        let algorithm = json!({"algorithm": b.algorithm, "auth_data": b.auth_data});
        self.store.put(
            "backupid_algorithm",
            &vkey,
            algorithm.to_string().as_bytes(),
        )?;
        let etag = self.next_count();
        self.store.put("backupid_etag", &vkey, &u64be(etag))?;
        for (room, sessions) in &b.rooms {
            let Some(sessions) = sessions["sessions"].as_object() else {
                continue;
            };
            for (session, data) in sessions {
                let k = joined(&[uid, version.as_bytes(), room.as_bytes(), session.as_bytes()]);
                self.store
                    .put("backupkeyid_backup", &k, data.to_string().as_bytes())?;
            }
        }
        Ok(())
    }

    /// Global (`room = None`) or room account data, replacing any earlier row of that type.
    pub fn put_account_data(
        &mut self,
        room: Option<&str>,
        user: &str,
        kind: &str,
        content: &Value,
    ) -> Result<()> {
        let r = room.unwrap_or("").as_bytes();
        let index = joined(&[r, user.as_bytes(), kind.as_bytes()]);
        if let Some(old) = self.store.get("roomusertype_roomuserdataid", &index)? {
            self.store.delete("roomuserdataid_accountdata", &old)?;
        }
        let n = self.next_count();
        let mut key = joined(&[r, user.as_bytes(), b""]);
        key.extend_from_slice(&u64be(n));
        key.push(crate::conduit::schema::SEP);
        key.extend_from_slice(kind.as_bytes());
        let value = json!({"type": kind, "content": content});
        self.store.put(
            "roomuserdataid_accountdata",
            &key,
            value.to_string().as_bytes(),
        )?;
        self.store.put("roomusertype_roomuserdataid", &index, &key)
    }
}

fn parse_key(bytes: &[u8], owner: &str) -> Result<Value> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::malformed(format!("master key of {owner} in the database"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::user::{AccessToken, Device, KeyBackup};
    use crate::conduit::store::sqlite::SqliteStore;
    use std::collections::BTreeMap;

    fn alice() -> UserRecord {
        let mut u = UserRecord {
            user_id: "@alice:example.test".into(),
            displayname: Some("Alice".into()),
            ..Default::default()
        };
        u.secrets.password_hash = Some("$2b$12$abc".into());
        u.devices.push(Device {
            device_id: "PHONE".into(),
            display_name: Some("phone".into()),
            last_seen_ip: None,
            last_seen_ts: Some(5),
            last_seen_user_agent: None,
        });
        u.secrets.access_tokens = vec![
            AccessToken {
                token: "syt_old".into(),
                device_id: Some("PHONE".into()),
                valid_until_ms: None,
            },
            AccessToken {
                token: "syt_new".into(),
                device_id: Some("PHONE".into()),
                valid_until_ms: None,
            },
        ];
        u.account_data
            .global
            .insert("m.direct".into(), json!({"@carol:example.test": ["!dm"]}));
        u.account_data.rooms.insert(
            "!r".into(),
            BTreeMap::from([("m.tag".to_owned(), json!({"tags": {"m.favourite": {}}}))]),
        );
        u.e2e.master_key = Some(
            json!({"user_id": "@alice:example.test", "usage": ["master"], "keys": {"ed25519:PUB": "PUB"}}),
        );
        u.e2e.one_time_keys.insert(
            "PHONE".into(),
            BTreeMap::from([("signed_curve25519:AAAA".to_owned(), json!({"key": "k"}))]),
        );
        u.key_backup = Some(KeyBackup {
            version: "1".into(),
            algorithm: "m.megolm_backup.v1.curve25519-aes-sha2".into(),
            auth_data: json!({"public_key": "x"}),
            etag: None,
            count: 1,
            rooms: BTreeMap::from([(
                "!r".to_owned(),
                json!({"sessions": {"s1": {"first_message_index": 0}}}),
            )]),
        });
        u
    }

    fn tree(s: &mut SqliteStore, t: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        s.scan_prefix(t, b"").unwrap()
    }

    #[test]
    fn a_user_lands_in_conduits_layout_and_a_rewrite_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::begin(SqliteStore::open(dir.path()).unwrap(), "example.test").unwrap();
        w.put_user(&alice()).unwrap();
        let mut s = w.finish().unwrap();
        let dev = b"@alice:example.test\xffPHONE".to_vec();
        assert_eq!(
            s.get("userdeviceid_token", &dev).unwrap(),
            Some(b"syt_new".to_vec())
        );
        assert_eq!(
            s.get("token_userdeviceid", b"syt_new").unwrap(),
            Some(dev.clone())
        );
        assert_eq!(
            s.get("userid_password", b"@alice:example.test").unwrap(),
            Some(b"$2b$12$abc".to_vec())
        );
        assert_eq!(
            s.get("userid_masterkeyid", b"@alice:example.test").unwrap(),
            Some(b"@alice:example.test\xffPUB".to_vec())
        );
        let otk = b"@alice:example.test\xffPHONE\xff\"signed_curve25519:AAAA\"".to_vec();
        assert!(s.get("onetimekeyid_onetimekeys", &otk).unwrap().is_some());
        let global = s
            .get(
                "roomusertype_roomuserdataid",
                b"\xff@alice:example.test\xffm.direct",
            )
            .unwrap()
            .unwrap();
        assert_eq!(global[0], 0xff, "global account data keys start with FF");
        let row: Value = serde_json::from_slice(
            &s.get("roomuserdataid_accountdata", &global)
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(row["type"], "m.direct");

        let before: Vec<_> = crate::conduit::schema::TREES
            .iter()
            .map(|t| tree(&mut s, t).len())
            .collect();
        drop(s);
        let mut w = Writer::begin(SqliteStore::open(dir.path()).unwrap(), "example.test").unwrap();
        w.put_user(&alice()).unwrap();
        let mut s = w.finish().unwrap();
        let after: Vec<_> = crate::conduit::schema::TREES
            .iter()
            .map(|t| tree(&mut s, t).len())
            .collect();
        // Only the key-change log (a stream) may grow.
        for ((t, b), a) in crate::conduit::schema::TREES
            .iter()
            .zip(&before)
            .zip(&after)
        {
            if *t != "keychangeid_userid" {
                assert_eq!(b, a, "tree {t} changed size on a rewrite");
            }
        }
        assert!(s.get("token_userdeviceid", b"syt_old").unwrap().is_none());
    }

    fn stored_key(s: &mut SqliteStore, id: &[u8]) -> Value {
        serde_json::from_slice(&s.get("keyid_key", id).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn a_verified_contacts_signature_joins_their_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::begin(SqliteStore::open(dir.path()).unwrap(), "example.test").unwrap();
        let mut bob = UserRecord {
            user_id: "@bob:example.test".into(),
            ..Default::default()
        };
        bob.e2e.master_key = Some(json!({"user_id": "@bob:example.test", "usage": ["master"],
            "keys": {"ed25519:BOBPUB": "BOBPUB"},
            "signatures": {"@bob:example.test": {"ed25519:BOBPHONE": "self"}}}));
        let mut a = alice();
        a.e2e.signatures_on_others = BTreeMap::from([
            (
                "@bob:example.test".to_owned(),
                BTreeMap::from([
                    (
                        "BOBPUB".to_owned(),
                        BTreeMap::from([("ed25519:USK".to_owned(), "sig".to_owned())]),
                    ),
                    // A key bob no longer has: Synapse shows no signature on it either.
                    (
                        "OLDPUB".to_owned(),
                        BTreeMap::from([("ed25519:USK".to_owned(), "old".to_owned())]),
                    ),
                ]),
            ),
            (
                "@rita:remote.test".to_owned(),
                BTreeMap::from([(
                    "RITAPUB".to_owned(),
                    BTreeMap::from([("ed25519:USK".to_owned(), "rsig".to_owned())]),
                )]),
            ),
        ]);
        a.e2e.remote_master_keys.insert(
            "@rita:remote.test".into(),
            json!({"user_id": "@rita:remote.test", "usage": ["master"],
                "keys": {"ed25519:RITAPUB": "RITAPUB"}}),
        );
        w.put_user(&a).unwrap();
        w.put_user(&bob).unwrap();
        assert_eq!(w.put_signatures_on_others(&a).unwrap(), 2);
        // Twice is the same as once.
        assert_eq!(w.put_signatures_on_others(&a).unwrap(), 2);
        let mut s = w.finish().unwrap();
        let bobs = stored_key(&mut s, b"@bob:example.test\xffBOBPUB");
        assert_eq!(
            bobs["signatures"],
            json!({"@bob:example.test": {"ed25519:BOBPHONE": "self"},
                "@alice:example.test": {"ed25519:USK": "sig"}})
        );
        assert!(s
            .get("keyid_key", b"@bob:example.test\xffOLDPUB")
            .unwrap()
            .is_none());
        let ritas = stored_key(&mut s, b"@rita:remote.test\xffRITAPUB");
        assert_eq!(
            ritas["signatures"],
            json!({"@alice:example.test": {"ed25519:USK": "rsig"}})
        );
        assert_eq!(
            s.get("userid_masterkeyid", b"@rita:remote.test").unwrap(),
            Some(b"@rita:remote.test\xffRITAPUB".to_vec())
        );
        // What Conduit shows: alice sees her signature, carol does not, bob sees all.
        let as_alice =
            crate::conduit::reader::keys_query(&mut s, "@alice:example.test", "@bob:example.test")
                .unwrap();
        assert_eq!(as_alice["master_key"]["signatures"], bobs["signatures"]);
        let as_carol =
            crate::conduit::reader::keys_query(&mut s, "@carol:example.test", "@bob:example.test")
                .unwrap();
        assert_eq!(
            as_carol["master_key"]["signatures"],
            json!({"@bob:example.test": {"ed25519:BOBPHONE": "self"}})
        );
        assert!(as_carol.get("user_signing_key").is_none());
    }

    /// Conduit takes the bytewise-greatest version as the latest backup, and a backup made on
    /// Conduit after the migration gets the next count: it must sort after the migrated one
    /// (Synapse's "2" would sort after it, hiding the new backup; docs/CONDUIT.md).
    #[test]
    fn a_backup_made_after_the_migration_is_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::begin(SqliteStore::open(dir.path()).unwrap(), "example.test").unwrap();
        let mut a = alice();
        a.key_backup.as_mut().unwrap().version = "2".into();
        // Enough counts that Conduit's next version has more digits than "2".
        for _ in 0..20 {
            w.next_count();
        }
        w.put_user(&a).unwrap();
        let later = w.next_count().to_string();
        let mut s = w.finish().unwrap();
        let versions: Vec<Vec<u8>> = tree(&mut s, "backupid_algorithm")
            .into_iter()
            .map(|(k, _)| k[b"@alice:example.test".len() + 1..].to_vec())
            .collect();
        assert_eq!(versions.len(), 1);
        assert_ne!(versions[0], b"2".to_vec(), "Synapse's version kept");
        assert!(later.as_bytes() > &versions[0][..], "{later} sorts first");
    }
}

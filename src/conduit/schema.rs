//! Conduit v0.10.12's trees and the byte layouts of their keys and values.
//!
//! Keys are compared bytewise by both backends, with a shorter prefix first; many reads are
//! prefix or reverse scans, so every layout here must match Conduit's byte for byte.

/// The database version a writer must store (`global["version"]`); anything lower makes Conduit
/// run migrations that corrupt a directly written database.
pub const DATABASE_VERSION: u64 = 18;

/// The separator Conduit puts between the parts of composite keys.
pub const SEP: u8 = 0xff;

/// Every tree Conduit v0.10.12 opens at start-up (one RocksDB column family or SQLite table each).
pub const TREES: [&str; 86] = [
    "global",
    "server_signingkeys",
    "userid_password",
    "userid_displayname",
    "userid_avatarurl",
    "userid_blurhash",
    "userdeviceid_token",
    "userdeviceid_metadata",
    "userid_devicelistversion",
    "token_userdeviceid",
    "onetimekeyid_onetimekeys",
    "userid_lastonetimekeyupdate",
    "keychangeid_userid",
    "keyid_key",
    "userid_masterkeyid",
    "userid_selfsigningkeyid",
    "userid_usersigningkeyid",
    "openidtoken_expiresatuserid",
    "userfilterid_filter",
    "todeviceid_events",
    "userdevicesessionid_uiaainfo",
    "readreceiptid_readreceipt",
    "roomuserid_privateread",
    "roomuserid_lastprivatereadupdate",
    "presenceid_presence",
    "userid_lastpresenceupdate",
    "pduid_pdu",
    "eventid_pduid",
    "roomid_pduleaves",
    "alias_roomid",
    "aliasid_alias",
    "publicroomids",
    "threadid_userids",
    "tokenids",
    "roomserverids",
    "serverroomids",
    "userroomid_joined",
    "roomuserid_joined",
    "roomid_joinedcount",
    "roomid_invitedcount",
    "roomuseroncejoinedids",
    "userroomid_invitestate",
    "roomuserid_invitecount",
    "userroomid_knockstate",
    "roomuserid_knockcount",
    "userroomid_leftstate",
    "roomuserid_leftcount",
    "alias_userid",
    "disabledroomids",
    "lazyloadedids",
    "userroomid_notificationcount",
    "userroomid_highlightcount",
    "roomid_shortstatehash",
    "roomsynctoken_shortstatehash",
    "shorteventid_shortstatehash",
    "statekey_shortstatekey",
    "shortstatekey_statekey",
    "roomid_shortroomid",
    "shorteventid_eventid",
    "eventid_shorteventid",
    "statehash_shortstatehash",
    "shortstatehash_statediff",
    "shorteventid_authchain",
    "eventid_outlierpdu",
    "softfailedeventids",
    "tofrom_relation",
    "referencedevents",
    "roomuserdataid_accountdata",
    "roomusertype_roomuserdataid",
    "servernamemediaid_metadata",
    "filehash_servername_mediaid",
    "filehash_metadata",
    "blocked_servername_mediaid",
    "servername_userlocalpart_mediaid",
    "servernamemediaid_userlocalpart",
    "thumbnailid_metadata",
    "filehash_thumbnailid",
    "backupid_algorithm",
    "backupid_etag",
    "backupkeyid_backup",
    "userdevicetxnid_response",
    "servername_educount",
    "servernameevent_data",
    "servercurrentevent_data",
    "id_appserviceregistrations",
    "senderkey_pusher",
];

/// A count or short id as Conduit stores it: 8 bytes big-endian.
pub fn u64be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Reads an 8-byte big-endian number; `None` unless exactly 8 bytes (Conduit treats anything
/// else as missing).
pub fn read_u64be(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Joins parts with the 0xFF separator.
pub fn joined(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(SEP);
        }
        out.extend_from_slice(p);
    }
    out
}

/// The pdu id of a timeline event: `u64be(shortroomid) ‖ u64be(count)`.
pub fn pdu_id(shortroomid: u64, count: u64) -> [u8; 16] {
    debug_assert!(shortroomid != 0 && count != 0, "0 is reserved in pdu ids");
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&u64be(shortroomid));
    id[8..].copy_from_slice(&u64be(count));
    id
}

/// A compressed state entry: `u64be(shortstatekey) ‖ u64be(shorteventid)`.
pub type StateEntry = [u8; 16];

/// Builds a compressed state entry.
pub fn state_entry(shortstatekey: u64, shorteventid: u64) -> StateEntry {
    let mut e = [0u8; 16];
    e[..8].copy_from_slice(&u64be(shortstatekey));
    e[8..].copy_from_slice(&u64be(shorteventid));
    e
}

/// A `shortstatehash_statediff` value: `u64be(parent or 0) ‖ added ‖ [u64be(0) ‖ removed]`.
/// The zero marker is written only when something is removed.
pub fn encode_statediff(parent: u64, added: &[StateEntry], removed: &[StateEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 16 * (added.len() + removed.len()) + 8);
    out.extend_from_slice(&u64be(parent));
    for e in added {
        out.extend_from_slice(e);
    }
    if !removed.is_empty() {
        out.extend_from_slice(&u64be(0));
        for e in removed {
            out.extend_from_slice(e);
        }
    }
    out
}

/// A decoded state diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDiff {
    pub parent: u64,
    pub added: Vec<StateEntry>,
    pub removed: Vec<StateEntry>,
}

/// Reads a `shortstatehash_statediff` value the way Conduit does: 16-byte chunks after the
/// parent, and the first chunk starting with 8 zero bytes switches to "removed" (that marker is
/// 8 bytes long). `None` if the length does not fit that shape.
pub fn decode_statediff(bytes: &[u8]) -> Option<StateDiff> {
    let parent = read_u64be(bytes.get(..8)?)?;
    let mut diff = StateDiff {
        parent,
        added: Vec::new(),
        removed: Vec::new(),
    };
    let mut rest = &bytes[8..];
    let mut removing = false;
    while !rest.is_empty() {
        if !removing && rest.len() >= 8 && rest[..8] == [0u8; 8] {
            removing = true;
            rest = &rest[8..];
            continue;
        }
        let entry: StateEntry = rest.get(..16)?.try_into().ok()?;
        if removing {
            &mut diff.removed
        } else {
            &mut diff.added
        }
        .push(entry);
        rest = &rest[16..];
    }
    Some(diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_list_is_complete_and_unique() {
        let set: std::collections::BTreeSet<_> = TREES.iter().collect();
        assert_eq!(set.len(), 86);
        for t in [
            "global",
            "pduid_pdu",
            "shortstatehash_statediff",
            "senderkey_pusher",
        ] {
            assert!(set.contains(&t), "{t}");
        }
    }

    #[test]
    fn pdu_ids_sort_by_room_then_count() {
        assert!(pdu_id(1, 2) < pdu_id(1, 10));
        assert!(pdu_id(1, u64::MAX) < pdu_id(2, 1));
        assert_eq!(
            &pdu_id(3, 4)[..],
            &[0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4]
        );
    }

    #[test]
    fn statediffs_round_trip_with_and_without_removals() {
        let a = state_entry(1, 10);
        let b = state_entry(2, 11);
        let b2 = state_entry(2, 12);
        let base = encode_statediff(0, &[a, b], &[]);
        assert_eq!(base.len(), 8 + 32, "no marker without removals");
        assert_eq!(
            decode_statediff(&base).unwrap(),
            StateDiff {
                parent: 0,
                added: vec![a, b],
                removed: vec![]
            }
        );
        let diff = encode_statediff(7, &[b2], &[b]);
        assert_eq!(diff.len(), 8 + 16 + 8 + 16);
        assert_eq!(
            decode_statediff(&diff).unwrap(),
            StateDiff {
                parent: 7,
                added: vec![b2],
                removed: vec![b]
            }
        );
        assert!(
            decode_statediff(&diff[..diff.len() - 3]).is_none(),
            "a torn diff is refused"
        );
    }

    #[test]
    fn joined_keys_use_ff() {
        assert_eq!(joined(&[b"@a:s", b"!r"]), b"@a:s\xff!r".to_vec());
        assert_eq!(read_u64be(&u64be(42)), Some(42));
        assert_eq!(read_u64be(b"short"), None);
    }
}

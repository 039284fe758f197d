//! Collects the PDUs of one room as they arrive: recomputes each event id, checks it belongs to
//! the room, and verifies our server's signatures on a blocking thread while the next page is
//! being fetched. Anything that fails is reported and kept out of the archive.

use std::collections::HashMap;
use std::sync::Arc;

use ruma::{room_version_rules::RoomVersionRules, signatures::PublicKeyMap, CanonicalJsonObject};
use tokio::task::JoinHandle;

use crate::matrix::pdu::{self, SignatureCheck};

/// The results of checking one batch: event id → outcome.
type CheckBatch = Vec<(String, Result<SignatureCheck, pdu::PduError>)>;

/// The PDUs of one room gathered so far.
pub struct Collector {
    room_id: String,
    rules: Arc<RoomVersionRules>,
    server_name: Arc<str>,
    keys: Arc<PublicKeyMap>,
    pub events: HashMap<String, CanonicalJsonObject>,
    pub errors: Vec<String>,
    checks: Vec<JoinHandle<CheckBatch>>,
    pending: Vec<(String, CanonicalJsonObject)>,
}

/// The outcome of the signature checks.
#[derive(Debug, Default)]
pub struct Checked {
    pub pruned: u64,
    pub foreign: u64,
}

impl Collector {
    pub fn new(
        room_id: &str,
        rules: RoomVersionRules,
        server_name: &str,
        keys: PublicKeyMap,
    ) -> Self {
        Collector {
            room_id: room_id.to_owned(),
            rules: Arc::new(rules),
            server_name: server_name.into(),
            keys: Arc::new(keys),
            events: HashMap::new(),
            errors: Vec::new(),
            checks: Vec::new(),
            pending: Vec::new(),
        }
    }

    pub fn rules(&self) -> &RoomVersionRules {
        &self.rules
    }

    pub fn has(&self, id: &str) -> bool {
        self.events.contains_key(id)
    }

    /// Adds one PDU (with `unsigned` already removed). `claimed` is the id the server sent along
    /// (raw `/messages`); it must equal the recomputed one. Returns the id if the PDU is new.
    pub fn add(&mut self, pdu: CanonicalJsonObject, claimed: Option<&str>) -> Option<String> {
        let id = match pdu::event_id(&pdu, &self.rules) {
            Ok(id) => id,
            Err(e) => {
                self.errors
                    .push(format!("{}: {e}", claimed.unwrap_or("(unknown id)")));
                return None;
            }
        };
        if let Some(claimed) = claimed {
            if claimed != id {
                let e = pdu::PduError::IdMismatch {
                    claimed: claimed.into(),
                    computed: id,
                };
                self.errors.push(e.to_string());
                return None;
            }
        }
        if self.events.contains_key(&id) {
            return None;
        }
        let in_room = match pdu::str_field(&pdu, "room_id") {
            Some(r) => r == self.room_id,
            // Room v12 create events carry no room_id: the room id is their reference hash.
            None => {
                pdu::str_field(&pdu, "type") == Some("m.room.create")
                    && self.room_id.get(1..) == id.get(1..)
            }
        };
        if !in_room {
            self.errors
                .push(format!("{id}: does not belong to room {}", self.room_id));
            return None;
        }
        self.pending.push((id.clone(), pdu.clone()));
        self.events.insert(id.clone(), pdu);
        Some(id)
    }

    /// Starts checking the signatures of everything added since the last call, on a blocking
    /// thread, so the check overlaps with the next request.
    pub fn check_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let (rules, server, keys) = (
            self.rules.clone(),
            self.server_name.clone(),
            self.keys.clone(),
        );
        self.checks.push(tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|(id, pdu)| {
                    let res = pdu::check_signatures(&pdu, &rules, &server, &keys);
                    (id, res)
                })
                .collect()
        }));
    }

    /// Waits for every check; removes events that failed and reports them.
    pub async fn finish_checks(&mut self) -> Checked {
        self.check_pending();
        let mut out = Checked::default();
        for handle in std::mem::take(&mut self.checks) {
            let results = match handle.await {
                Ok(r) => r,
                Err(e) => {
                    self.errors
                        .push(format!("signature check task failed: {e}"));
                    continue;
                }
            };
            for (id, res) in results {
                match res {
                    Ok(SignatureCheck::Valid) => {}
                    Ok(SignatureCheck::Redacted) => out.pruned += 1,
                    Ok(SignatureCheck::Foreign) => out.foreign += 1,
                    Err(e) => {
                        self.events.remove(&id);
                        self.errors
                            .push(format!("{id}: {e}; left out of the archive"));
                    }
                }
            }
        }
        out
    }
}

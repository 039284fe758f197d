//! Collects the PDUs of one room as they arrive: recomputes each event id, checks it belongs to
//! the room, and verifies our server's signatures on a blocking thread while the next page is
//! being fetched. Anything that fails is reported and kept out of the archive.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::{room_version_rules::RoomVersionRules, signatures::PublicKeyMap, CanonicalJsonObject};
use tokio::task::JoinHandle;

use crate::matrix::pdu::{self, SignatureCheck};

/// How many PDUs gather before their signatures are checked during the walk.
const DEFERRED_BATCH: usize = 2_000;

/// The results of checking one batch: event id → outcome.
type CheckBatch = Vec<(String, Result<SignatureCheck, pdu::PduError>)>;

/// The PDUs of one room gathered so far.
pub struct Collector {
    room_id: String,
    rules: Arc<RoomVersionRules>,
    server_name: Arc<str>,
    keys: Arc<PublicKeyMap>,
    pub events: HashMap<String, CanonicalJsonObject>,
    /// Events that are not part of the timeline (state and auth events fetched on their own).
    pub outliers: HashSet<String>,
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
            outliers: HashSet::new(),
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

    /// Adds a PDU that is not part of the timeline.
    pub fn add_outlier(&mut self, pdu: CanonicalJsonObject, claimed: Option<&str>) {
        if let Some(id) = self.add(pdu, claimed) {
            self.outliers.insert(id);
        }
    }

    /// Starts checking the signatures of what was added since the last call once enough has
    /// gathered, on a blocking thread. Large batches make ed25519 batch verification pay off,
    /// and checking between requests competes with Synapse for the CPU while it serves the
    /// next page, so most checking happens in [`Collector::finish_checks`], split over cores.
    pub fn check_pending(&mut self) {
        if self.pending.len() >= DEFERRED_BATCH {
            let batch = std::mem::take(&mut self.pending);
            self.spawn_checks(batch);
        }
    }

    fn spawn_checks(&mut self, batch: Vec<(String, CanonicalJsonObject)>) {
        if batch.is_empty() {
            return;
        }
        let (rules, server, keys) = (
            self.rules.clone(),
            self.server_name.clone(),
            self.keys.clone(),
        );
        self.checks.push(tokio::task::spawn_blocking(move || {
            pdu::check_signatures_batch(&batch, &rules, &server, &keys)
        }));
    }

    /// Waits for every check; removes events that failed and reports them.
    pub async fn finish_checks(&mut self) -> Checked {
        let mut rest = std::mem::take(&mut self.pending);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let chunk = rest.len().div_ceil(threads).max(64);
        while rest.len() > chunk {
            let tail = rest.split_off(rest.len() - chunk);
            self.spawn_checks(tail);
        }
        self.spawn_checks(rest);
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

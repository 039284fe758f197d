//! The baseline for `scripts/bench`: the plainest complete `/backfill` walk of one room over
//! self-signed federation — the same requests a dump makes, with nothing else (no signature
//! checks, no ordering, no files). Prints `{"events": N, "seconds": S}`.
//!
//! Usage: bare_backfill <federation url> <server name> <signing key file> <room id> <extremity>...

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use transition_matrix::matrix::{keys::ServerKey, pdu};
use transition_matrix::synapse::{federation::Federation, http::Http};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, server, key, room, extremities @ ..] = &args[..] else {
        return Err("usage: bare_backfill <url> <server> <key file> <room> <extremity>...".into());
    };
    let key = ServerKey::read_synapse(Path::new(key))?.remove(0);
    let fed = Federation::new(Http::new(url, "Synapse")?, server, key.keypair())?;
    let rules =
        pdu::rules_for(&std::env::var("ROOM_VERSION").unwrap_or_else(|_| "12".into())).unwrap();
    let start = Instant::now();
    let mut have: HashSet<String> = HashSet::new();
    let mut wanted: HashMap<String, i64> =
        extremities.iter().map(|e| (e.clone(), i64::MAX)).collect();
    while !wanted.is_empty() {
        let mut batch: Vec<(&String, &i64)> = wanted.iter().collect();
        batch.sort_by(|a, b| b.1.cmp(a.1));
        let batch: Vec<String> = batch
            .into_iter()
            .take(50)
            .map(|(id, _)| id.clone())
            .collect();
        for raw in fed.backfill(room, &batch).await? {
            let obj = pdu::from_value(raw)?;
            let id = pdu::event_id(&obj, &rules)?;
            if have.insert(id.clone()) {
                wanted.remove(&id);
                let depth = pdu::int_field(&obj, "depth").unwrap_or(0);
                for p in pdu::event_refs(&obj, "prev_events") {
                    if !have.contains(&p) {
                        wanted.entry(p).or_insert(depth - 1);
                    }
                }
            }
        }
        for id in batch {
            wanted.remove(&id);
        }
    }
    println!(
        r#"{{"events": {}, "seconds": {:.4}}}"#,
        have.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

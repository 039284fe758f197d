//! `test proxy`: both directions of the backfill proxy, step by step — the proxy can reach
//! Synapse as our own server, and Conduit (played by us, with the same key) can reach the proxy,
//! while a request without our signature is refused.

use reqwest::Method;

use crate::archive::room::{PduReader, EVENTS};
use crate::archive::Archive;
use crate::matrix::keys::ServerKey;
use crate::synapse::federation::Federation;
use crate::synapse::http::Http;

/// What the checks need.
pub struct Target<'a> {
    pub archive: &'a Archive,
    pub server_name: &'a str,
    pub key: &'a ServerKey,
    pub synapse_url: &'a str,
    pub proxy_url: &'a str,
}

/// Runs every check, printing a ✓/✗ line for each; true if all passed.
pub async fn run(t: &Target<'_>, mut print: impl FnMut(String)) -> bool {
    let mut ok = true;
    let mut step = |good: bool, what: String| {
        ok &= good;
        print(format!("{} {what}", if good { "✓" } else { "✗" }));
    };
    let Some(event) = some_event(t.archive) else {
        step(false, "the archive holds no event to ask for".into());
        return false;
    };
    step(
        true,
        format!("archive: server {}, key {}", t.server_name, t.key.key_id()),
    );
    let client = |url: &str, what| -> crate::Result<Federation> {
        Federation::new(Http::new(url, what)?, t.server_name, t.key.keypair())
    };
    let path = format!(
        "/_matrix/federation/v1/event/{}",
        urlencoding::encode(&event)
    );
    // Proxy → Synapse.
    match client(t.synapse_url, "Synapse federation listener") {
        Ok(f) => match f.get(&path).await {
            Ok(_) => step(
                true,
                format!(
                    "Synapse at {} answers requests signed as {}",
                    t.synapse_url, t.server_name
                ),
            ),
            Err(e) => step(false, format!("Synapse at {}: {e}", t.synapse_url)),
        },
        Err(e) => step(false, e.to_string()),
    }
    // Conduit → proxy.
    let proxy = match client(t.proxy_url, "backfill proxy") {
        Ok(p) => p,
        Err(e) => {
            step(false, e.to_string());
            return false;
        }
    };
    match proxy.http.json(Method::GET, "/health", None, None).await {
        Ok(v) => step(
            v["server_name"] == t.server_name,
            format!(
                "proxy at {} is up for {} (archive: {} events; Synapse reachable from it: {})",
                t.proxy_url, v["server_name"], v["archive"]["events"], v["synapse"]["reachable"]
            ),
        ),
        Err(e) => step(false, format!("proxy at {}: {e}", t.proxy_url)),
    }
    match proxy.get(&path).await {
        Ok(v) => step(
            v["pdus"].as_array().is_some_and(|a| a.len() == 1),
            "the proxy answers a request signed with our key (as Conduit sends it)".into(),
        ),
        Err(e) => step(false, format!("signed request to the proxy: {e}")),
    }
    match proxy.http.json(Method::GET, &path, None, None).await {
        Err(e) if e.status() == Some(401) => step(
            true,
            "the proxy refuses a request without our signature".into(),
        ),
        Ok(_) => step(false, "the proxy answered an unsigned request".into()),
        Err(e) => step(false, format!("unsigned request: {e}")),
    }
    ok
}

/// The first timeline event of the first room that has one.
fn some_event(archive: &Archive) -> Option<String> {
    for room in archive.room_ids().ok()? {
        let path = archive.room_dir(&room).join(EVENTS);
        if let Some(Ok(line)) = PduReader::open(&path).ok()?.next() {
            return Some(line.event_id);
        }
    }
    None
}

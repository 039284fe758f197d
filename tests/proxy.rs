//! The backfill proxy against the testnet: every endpoint answered from an archive gives what
//! Synapse itself gives, events the archive lacks are forwarded to Synapse, requests not signed
//! by our key are refused, and a Synapse that is down gives a clear federation error.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use transition_matrix::archive::room::{PduReader, RoomMeta, EVENTS};
use transition_matrix::archive::{fsutil, Archive};
use transition_matrix::matrix::keys::ServerKey;
use transition_matrix::proxy::{self, Proxy, ProxyOptions, SERVED_FROM};
use transition_matrix::synapse::federation::Federation;
use transition_matrix::synapse::http::Http;

/// A running proxy on a free loopback port; stopped when dropped.
struct Running {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn key(archive: &Archive) -> ServerKey {
    ServerKey::read_synapse(&archive.keys_dir().join("signing.key"))
        .unwrap()
        .remove(0)
}

async fn start(archive: &Archive, synapse: &str) -> Running {
    let s = common::scenario();
    let proxy = Proxy::new(ProxyOptions {
        archive: archive.clone(),
        server_name: s.server_name.clone(),
        key: key(archive),
        synapse_federation_url: synapse.to_owned(),
        concurrency: 4,
    })
    .unwrap();
    let listener = proxy::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(Arc::new(proxy).serve(listener, async {
        let _ = rx.await;
    }));
    Running {
        url,
        stop: Some(tx),
    }
}

/// A federation client signing as our server with the archive's key.
fn client(archive: &Archive, url: &str) -> Federation {
    let s = common::scenario();
    Federation::new(
        Http::new(url, "test target").unwrap(),
        &s.server_name,
        key(archive).keypair(),
    )
    .unwrap()
}

/// A signed request: the answer and where the proxy says it came from.
async fn ask(f: &Federation, method: Method, path: &str, body: Option<&Value>) -> (Value, String) {
    let b = f
        .send(method, path, body)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let from = b
        .headers
        .get(SERVED_FROM)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (serde_json::from_slice(&b.bytes).unwrap(), from)
}

fn ids(pdus: &Value, rules_version: &str) -> Vec<String> {
    let rules = transition_matrix::matrix::pdu::rules_for(rules_version).unwrap();
    pdus.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let o = transition_matrix::matrix::pdu::from_value(p.clone()).unwrap();
            transition_matrix::matrix::pdu::event_id(&o, &rules).unwrap()
        })
        .collect()
}

fn enc(s: &str) -> String {
    urlencoding::encode(s).into_owned()
}

fn room(archive: &Archive, name: &str) -> (RoomMeta, Vec<String>) {
    let id = &common::scenario().rooms[name].room_id;
    let dir = archive.room_dir(id);
    let meta: RoomMeta = fsutil::read_json(&dir.join("room.json")).unwrap();
    let timeline = PduReader::open(&dir.join(EVENTS))
        .unwrap()
        .map(|l| l.unwrap().event_id)
        .collect();
    (meta, timeline)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_from_the_archive_equals_synapse() {
    let s = common::scenario();
    let archive = Archive::open(common::reference_archive().0).unwrap();
    let p = start(&archive, &s.federation_url).await;
    let proxy = client(&archive, &p.url);
    let synapse = client(&archive, &s.federation_url);
    let (meta, timeline) = room(&archive, "huge");
    let r = enc(&meta.room_id);
    let v = &meta.version;
    let fed = "/_matrix/federation/v1";

    // /backfill from the middle of the forked room: Synapse's timeline, read backwards.
    let half = timeline.len() / 2;
    let mid = &timeline[half];
    let path = format!("{fed}/backfill/{r}?limit=100&v={}", enc(mid));
    let (ours, from) = ask(&proxy, Method::GET, &path, None).await;
    assert_eq!(from, "archive");
    let want: Vec<String> = timeline[half - 99..=half].iter().rev().cloned().collect();
    assert_eq!(ids(&ours["pdus"], v), want);
    // In a linear room that is exactly what Synapse's own /backfill gives.
    let (big, big_timeline) = room(&archive, "big");
    let at = &big_timeline[big_timeline.len() - 50];
    let path = format!(
        "{fed}/backfill/{}?limit=100&v={}",
        enc(&big.room_id),
        enc(at)
    );
    let (ours, _) = ask(&proxy, Method::GET, &path, None).await;
    let theirs = synapse.get(&path).await.unwrap();
    assert_eq!(
        ids(&ours["pdus"], &big.version)
            .into_iter()
            .collect::<BTreeSet<_>>(),
        ids(&theirs["pdus"], &big.version)
            .into_iter()
            .collect::<BTreeSet<_>>(),
        "backfill from {at}"
    );

    // /event: the exact signed PDU.
    let path = format!("{fed}/event/{}", enc(mid));
    let (ours, from) = ask(&proxy, Method::GET, &path, None).await;
    assert_eq!(from, "archive");
    let theirs = synapse.get(&path).await.unwrap();
    assert_eq!(ids(&ours["pdus"], v), vec![mid.clone()]);
    let strip = |mut p: Value| {
        p.as_object_mut().unwrap().remove("unsigned");
        p
    };
    assert_eq!(
        strip(ours["pdus"][0].clone()),
        strip(theirs["pdus"][0].clone())
    );

    // /event_auth, /state_ids and /state at events across the room (forks included).
    for at in [&timeline[3], mid, timeline.last().unwrap()] {
        let path = format!("{fed}/event_auth/{r}/{}", enc(at));
        let (ours, _) = ask(&proxy, Method::GET, &path, None).await;
        let theirs = synapse.get(&path).await.unwrap();
        let set = |v: &Value, k: &str| {
            ids(&v[k], &meta.version)
                .into_iter()
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(
            set(&ours, "auth_chain"),
            set(&theirs, "auth_chain"),
            "auth of {at}"
        );

        let path = format!("{fed}/state_ids/{r}?event_id={}", enc(at));
        let (ours, from) = ask(&proxy, Method::GET, &path, None).await;
        assert_eq!(from, "archive");
        let theirs = synapse.get(&path).await.unwrap();
        let strs = |v: &Value| -> BTreeSet<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            strs(&ours["pdu_ids"]),
            strs(&theirs["pdu_ids"]),
            "state before {at}"
        );
        assert_eq!(
            strs(&ours["auth_chain_ids"]),
            strs(&theirs["auth_chain_ids"]),
            "state auth chain before {at}"
        );

        let path = format!("{fed}/state/{r}?event_id={}", enc(at));
        let (ours, _) = ask(&proxy, Method::GET, &path, None).await;
        assert_eq!(
            set(&ours, "pdus"),
            strs(&theirs["pdu_ids"]),
            "state PDUs before {at}"
        );
    }

    // /get_missing_events between two points of the linear room: what Synapse gives.
    let (earliest, latest) = (
        &big_timeline[big_timeline.len() - 30],
        big_timeline.last().unwrap(),
    );
    let body = json!({"earliest_events": [earliest], "latest_events": [latest], "limit": 10, "min_depth": 0});
    let path = format!("{fed}/get_missing_events/{}", enc(&big.room_id));
    let (ours, from) = ask(&proxy, Method::POST, &path, Some(&body)).await;
    assert_eq!(from, "archive");
    let theirs = synapse
        .request(Method::POST, &path, Some(&body))
        .await
        .unwrap();
    let (a, b) = (
        ids(&ours["events"], &big.version),
        ids(&theirs["events"], &big.version),
    );
    assert_eq!(a.len(), 10);
    assert_eq!(a, b, "missing events");
    // In the forked room: ancestors of the latest event only, oldest first, within the limit.
    let (earliest, latest) = (&timeline[timeline.len() - 40], timeline.last().unwrap());
    let body = json!({"earliest_events": [earliest], "latest_events": [latest], "limit": 25, "min_depth": 0});
    let path = format!("{fed}/get_missing_events/{r}");
    let (ours, _) = ask(&proxy, Method::POST, &path, Some(&body)).await;
    let got = ids(&ours["events"], v);
    assert_eq!(got.len(), 25);
    assert!(!got.contains(earliest) && !got.contains(latest));
    let depths: Vec<i64> = ours["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["depth"].as_i64().unwrap())
        .collect();
    assert!(depths.windows(2).all(|w| w[0] <= w[1]), "oldest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_archive_lacks_come_from_synapse() {
    let s = common::scenario();
    // An archive of one room: everything else must be forwarded.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial");
    let public = &s.rooms["public"].room_id;
    for what in ["keys", "rooms"] {
        let out = common::tm(
            &[
                &["synapse", "dump", what, "--room", public][..],
                &common::synapse_flags()
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                &["--archive", path.to_str().unwrap()],
            ]
            .concat(),
            &[("TM_TEST_TOKEN", &s.admin.access_token)],
        );
        assert!(out.status.success(), "{}", common::text(&out));
    }
    let partial = Archive::open(&path).unwrap();
    assert_eq!(partial.room_ids().unwrap(), vec![public.clone()]);
    let p = start(&partial, &s.federation_url).await;
    let proxy = client(&partial, &p.url);

    let full = Archive::open(common::reference_archive().0).unwrap();
    let (meta, timeline) = room(&full, "big");
    let r = enc(&meta.room_id);
    let last = timeline.last().unwrap();
    let fed = "/_matrix/federation/v1";
    let (v, from) = ask(
        &proxy,
        Method::GET,
        &format!("{fed}/event/{}", enc(last)),
        None,
    )
    .await;
    assert_eq!(from, "synapse");
    assert_eq!(ids(&v["pdus"], &meta.version), vec![last.clone()]);
    let path = format!("{fed}/backfill/{r}?limit=20&v={}", enc(last));
    let (v, from) = ask(&proxy, Method::GET, &path, None).await;
    assert_eq!(from, "synapse");
    assert_eq!(v["pdus"].as_array().unwrap().len(), 20);
    let path = format!("{fed}/state_ids/{r}?event_id={}", enc(last));
    let (v, from) = ask(&proxy, Method::GET, &path, None).await;
    assert_eq!(from, "synapse");
    assert!(!v["pdu_ids"].as_array().unwrap().is_empty());

    // Health: the archive's size and a reachable Synapse.
    let h = proxy
        .http
        .json(Method::GET, "/health", None, None)
        .await
        .unwrap();
    assert_eq!(h["server_name"], s.server_name.as_str());
    assert_eq!(h["archive"]["rooms"], 1);
    assert_eq!(h["synapse"]["reachable"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_not_signed_by_our_key_are_refused() {
    let s = common::scenario();
    let archive = Archive::open(common::reference_archive().0).unwrap();
    let p = start(&archive, &s.federation_url).await;
    let (_, timeline) = room(&archive, "public");
    let path = format!("/_matrix/federation/v1/event/{}", enc(&timeline[0]));
    let status = |r: Result<Value, transition_matrix::Error>| match r {
        Err(e) => e.status(),
        Ok(_) => Some(200),
    };
    // No signature.
    let http = Http::new(&p.url, "proxy").unwrap();
    assert_eq!(
        status(http.json(Method::GET, &path, None, None).await),
        Some(401)
    );
    // Our server name, another key.
    let other = ruma::signatures::Ed25519KeyPair::from_der(
        &ruma::signatures::Ed25519KeyPair::generate(),
        key(&archive).version.clone(),
    )
    .unwrap();
    let forged =
        Federation::new(Http::new(&p.url, "proxy").unwrap(), &s.server_name, other).unwrap();
    assert_eq!(status(forged.get(&path).await), Some(401));
    // Another server name with our key.
    let stranger = Federation::new(
        Http::new(&p.url, "proxy").unwrap(),
        "other.test",
        key(&archive).keypair(),
    )
    .unwrap();
    assert_eq!(status(stranger.get(&path).await), Some(401));
    // Signed properly: answered.
    assert_eq!(status(client(&archive, &p.url).get(&path).await), Some(200));
    // A public address is refused before anything listens.
    assert!(proxy::bind("0.0.0.0:0".parse().unwrap()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_synapse_gives_a_clear_federation_error() {
    let s = common::scenario();
    let archive = Archive::open(common::reference_archive().0).unwrap();
    // A port nothing listens on stands for a stopped Synapse.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let p = start(&archive, &dead).await;
    let proxy = client(&archive, &p.url);
    let (_, timeline) = room(&archive, "public");
    // What the archive has is still served.
    let path = format!("/_matrix/federation/v1/event/{}", enc(&timeline[1]));
    assert!(proxy.get(&path).await.is_ok());
    // What it lacks: 502 with a federation error body that says why.
    let path = "/_matrix/federation/v1/event/$notinthearchive";
    match proxy.get(path).await {
        Err(transition_matrix::Error::Api {
            status,
            errcode,
            message,
            ..
        }) => {
            assert_eq!(status, 502);
            assert_eq!(errcode, "M_UNKNOWN");
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("expected a 502 federation error, got {other:?}"),
    }
    // A room neither the archive nor Synapse had (Conduit's own): 404 at once, Synapse not
    // asked (asking the stopped one would be a 502).
    let path = "/_matrix/federation/v1/backfill/%21conduitonly%3Aexample.test?limit=10&v=%24x";
    match proxy.get(path).await {
        Err(transition_matrix::Error::Api {
            status, errcode, ..
        }) => {
            assert_eq!((status, errcode.as_str()), (404, "M_NOT_FOUND"));
        }
        other => panic!("expected 404 for a room of Conduit's own, got {other:?}"),
    }
    let h = proxy
        .http
        .json(Method::GET, "/health", None, None)
        .await
        .unwrap();
    assert_eq!(h["synapse"]["reachable"], false);
    assert_eq!(s.server_name, h["server_name"].as_str().unwrap());
}

//! The backfill proxy: a small federation server that feeds the Conduit it serves the history
//! Conduit does not hold yet (`conduit write --recent N`), from the archive where it has the
//! events and otherwise from the still-running Synapse, through a request signed with the same
//! key. Read-only on both sides: only GET requests and `get_missing_events` (a read) are
//! answered or forwarded.
//!
//! Conduit reaches it through `patches/conduit-backfill-proxy.patch`: with the patch, every
//! federation request Conduit would send to its own server name goes here.

pub mod auth;
pub mod diagnose;
pub mod events;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::archive::Archive;
use crate::error::{Error, Result};
use crate::matrix::keys::ServerKey;
use crate::synapse::federation::Federation;
use crate::synapse::http::Http;
use auth::RequestAuth;
use events::{ArchiveEvents, Ev};

/// Response header saying where an answer came from: `archive`, `synapse` or `archive+synapse`.
pub const SERVED_FROM: &str = "x-served-from";

/// The most events one answer carries, whatever the request asks (Synapse's own cap).
const MAX_LIMIT: usize = 100;

/// What the proxy serves from.
pub struct Proxy {
    server_name: String,
    events: ArchiveEvents,
    auth: RequestAuth,
    /// Synapse's federation listener, signed requests as our own server.
    synapse: Federation,
    /// Bounds how many requests are worked on at once.
    permits: Semaphore,
    /// The rooms Synapse had at the dump (`source-rooms.json`), when the archive says.
    source_rooms: Option<std::collections::HashSet<String>>,
}

/// How to start the proxy.
pub struct ProxyOptions {
    pub archive: Archive,
    pub server_name: String,
    pub key: ServerKey,
    /// Base URL of Synapse's federation listener.
    pub synapse_federation_url: String,
    /// Requests worked on at once.
    pub concurrency: usize,
}

impl Proxy {
    /// Indexes the archive (event ids only) and prepares the Synapse client.
    pub fn new(o: ProxyOptions) -> Result<Self> {
        let http = Http::new(&o.synapse_federation_url, "Synapse federation listener")?;
        let rooms_file = o.archive.source_rooms_path();
        let source_rooms = match rooms_file.exists() {
            true => Some(crate::archive::fsutil::read_json::<Vec<String>>(
                &rooms_file,
            )?),
            false => None,
        };
        Ok(Proxy {
            source_rooms: source_rooms.map(|r| r.into_iter().collect()),
            synapse: Federation::new(http, &o.server_name, o.key.keypair())?,
            auth: RequestAuth::new(&o.server_name, &o.key)?,
            events: ArchiveEvents::open(o.archive)?,
            server_name: o.server_name,
            permits: Semaphore::new(o.concurrency.max(1)),
        })
    }

    pub fn archive_events(&self) -> &ArchiveEvents {
        &self.events
    }

    /// Serves on an already bound listener until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let app = axum::Router::new().fallback(handle).with_state(self);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Error::Config(format!("proxy server: {e}")))
    }
}

/// Binds the listen address, refusing anything but loopback and private addresses: the proxy
/// hands out a whole server's history and must never face the internet.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    let ok = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback() || ip.is_private(),
        std::net::IpAddr::V6(ip) => ip.is_loopback() || ip.is_unique_local(),
    };
    if !ok {
        return Err(Error::Config(format!(
            "{addr} is not a loopback or private address; the proxy must not be reachable from the internet"
        )));
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}")))
}

async fn handle(
    State(p): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() == "/health" {
        return p.health().await;
    }
    let Ok(_permit) = p.permits.acquire().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "M_UNKNOWN",
            "shutting down",
        );
    };
    if let Err(e) = p.auth.check(&method, &uri, &headers, &body) {
        tracing::warn!(path = uri.path(), "refused: {e}");
        return error(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", &e.to_string());
    }
    let request = match Request::parse(&method, &uri, &body) {
        Ok(r) => r,
        Err((status, code, msg)) => return error(status, code, &msg),
    };
    if let Some(room) = request.room() {
        if p.unknown_room(room) {
            tracing::info!(path = uri.path(), room, "not Synapse's room: 404");
            return error(
                StatusCode::NOT_FOUND,
                "M_NOT_FOUND",
                &format!("{room} is neither in the archive nor one of Synapse's rooms"),
            );
        }
    }
    match p.answer(&request).await {
        Ok((value, from, n)) => {
            tracing::info!(path = uri.path(), from, events = n, "served");
            ([(SERVED_FROM, from)], Json(value)).into_response()
        }
        Err(e) => {
            tracing::warn!(path = uri.path(), "failed: {e}");
            forward_error(e)
        }
    }
}

/// One federation request the proxy answers.
#[derive(Debug)]
enum Request {
    Backfill {
        room: String,
        from: Vec<String>,
        limit: usize,
    },
    Event {
        event: String,
    },
    EventAuth {
        room: String,
        event: String,
    },
    State {
        room: String,
        event: String,
        ids_only: bool,
    },
    MissingEvents {
        room: String,
        body: Value,
    },
}

type Refusal = (StatusCode, &'static str, String);

impl Request {
    fn parse(method: &Method, uri: &Uri, body: &[u8]) -> std::result::Result<Self, Refusal> {
        let unknown = || {
            (
                StatusCode::NOT_FOUND,
                "M_UNRECOGNIZED",
                format!("the proxy does not answer {method} {}", uri.path()),
            )
        };
        let rest = uri
            .path()
            .strip_prefix("/_matrix/federation/v1/")
            .ok_or_else(unknown)?;
        let seg: Vec<String> = rest
            .split('/')
            .map(|s| urlencoding::decode(s).map(|c| c.into_owned()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| unknown())?;
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let param = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
        let need_event = || {
            param("event_id").ok_or((
                StatusCode::BAD_REQUEST,
                "M_MISSING_PARAM",
                "event_id is required".to_owned(),
            ))
        };
        let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
        Ok(match (method, seg.as_slice()) {
            (&Method::GET, ["backfill", room]) => Request::Backfill {
                room: room.to_string(),
                from: query
                    .iter()
                    .filter(|(k, _)| k == "v")
                    .map(|(_, v)| v.clone())
                    .collect(),
                limit: param("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(MAX_LIMIT)
                    .clamp(1, MAX_LIMIT),
            },
            (&Method::GET, ["event", event]) => Request::Event {
                event: event.to_string(),
            },
            (&Method::GET, ["event_auth", room, event]) => Request::EventAuth {
                room: room.to_string(),
                event: event.to_string(),
            },
            (&Method::GET, ["state", room]) => Request::State {
                room: room.to_string(),
                event: need_event()?,
                ids_only: false,
            },
            (&Method::GET, ["state_ids", room]) => Request::State {
                room: room.to_string(),
                event: need_event()?,
                ids_only: true,
            },
            (&Method::POST, ["get_missing_events", room]) => Request::MissingEvents {
                room: room.to_string(),
                body: serde_json::from_slice(body).map_err(|e| {
                    (
                        StatusCode::BAD_REQUEST,
                        "M_NOT_JSON",
                        format!("body is not JSON: {e}"),
                    )
                })?,
            },
            _ => return Err(unknown()),
        })
    }

    /// The room the request is about, when it names one.
    fn room(&self) -> Option<&str> {
        match self {
            Request::Backfill { room, .. }
            | Request::EventAuth { room, .. }
            | Request::State { room, .. }
            | Request::MissingEvents { room, .. } => Some(room),
            Request::Event { .. } => None,
        }
    }

    /// The request as it is forwarded to Synapse.
    fn path(&self) -> (axum::http::Method, String, Option<&Value>) {
        let enc = |s: &str| urlencoding::encode(s).into_owned();
        let base = "/_matrix/federation/v1";
        match self {
            Request::Backfill { room, from, limit } => {
                let mut p = format!("{base}/backfill/{}?limit={limit}", enc(room));
                for v in from {
                    p.push_str(&format!("&v={}", enc(v)));
                }
                (Method::GET, p, None)
            }
            Request::Event { event } => (Method::GET, format!("{base}/event/{}", enc(event)), None),
            Request::EventAuth { room, event } => (
                Method::GET,
                format!("{base}/event_auth/{}/{}", enc(room), enc(event)),
                None,
            ),
            Request::State {
                room,
                event,
                ids_only,
            } => (
                Method::GET,
                format!(
                    "{base}/{}/{}?event_id={}",
                    if *ids_only { "state_ids" } else { "state" },
                    enc(room),
                    enc(event)
                ),
                None,
            ),
            Request::MissingEvents { room, body } => (
                Method::POST,
                format!("{base}/get_missing_events/{}", enc(room)),
                Some(body),
            ),
        }
    }
}

fn pdus(evs: &[Arc<Ev>]) -> Vec<Value> {
    evs.iter()
        .map(|e| serde_json::to_value(&e.pdu).expect("canonical JSON serializes"))
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Proxy {
    /// A room of Conduit's own (made after the switch, its admin room, joined over federation
    /// since): neither the archive nor Synapse at the dump has it, so Synapse is not asked.
    fn unknown_room(&self, room: &str) -> bool {
        self.source_rooms
            .as_ref()
            .is_some_and(|known| !known.contains(room))
            && !self.events.has_room(room)
    }

    /// The answer, where it came from (`archive`, `synapse` or `archive+synapse`) and how many
    /// events it carries.
    async fn answer(&self, r: &Request) -> Result<(Value, &'static str, usize)> {
        if let Some(found) = self.answer_from_archive(r).await? {
            return Ok(found);
        }
        let (method, path, body) = r.path();
        let v = self.synapse.request(method, &path, body).await?;
        let n = ["pdus", "auth_chain", "events", "pdu_ids"]
            .iter()
            .filter_map(|k| v.get(k).and_then(Value::as_array))
            .map(Vec::len)
            .sum();
        Ok((v, "synapse", n))
    }

    async fn answer_from_archive(
        &self,
        r: &Request,
    ) -> Result<Option<(Value, &'static str, usize)>> {
        let origin = |pdus: Vec<Value>| json!({"origin": self.server_name, "origin_server_ts": now_ms(), "pdus": pdus});
        match r {
            Request::Backfill { room, from, limit } => {
                let Some(rm) = self.events.room(room)? else {
                    return Ok(None);
                };
                let (found, missing) = rm.backfill(from, *limit);
                if found.is_empty() {
                    return Ok(None);
                }
                let mut out = pdus(&found);
                let mut source = "archive";
                // History the archive does not reach (events Synapse had before it joined, or a
                // partial dump): ask Synapse for the rest of the page.
                if out.len() < *limit && !missing.is_empty() {
                    let rest = Request::Backfill {
                        room: room.clone(),
                        from: missing,
                        limit: limit - out.len(),
                    };
                    let (method, path, _) = rest.path();
                    match self.synapse.request(method, &path, None).await {
                        Ok(v) => {
                            let more = v.get("pdus").and_then(Value::as_array).cloned();
                            out.extend(more.unwrap_or_default());
                            source = "archive+synapse";
                        }
                        Err(e) => tracing::warn!(room, "backfill beyond the archive failed: {e}"),
                    }
                }
                let n = out.len();
                Ok(Some((origin(out), source, n)))
            }
            Request::Event { event } => {
                let Some(rm) = self.events.room_of_event(event)? else {
                    return Ok(None);
                };
                Ok(Some((
                    origin(pdus(&[rm.events[event].clone()])),
                    "archive",
                    1,
                )))
            }
            Request::EventAuth { room, event } => {
                let Some(rm) = self.events.room_of_event(event)? else {
                    return Ok(None);
                };
                if rm.meta.room_id != *room {
                    return Ok(None);
                }
                let Some(chain) = rm.auth_chain([event.as_str()]) else {
                    return Ok(None);
                };
                let n = chain.len();
                Ok(Some((json!({"auth_chain": pdus(&chain)}), "archive", n)))
            }
            Request::State {
                room,
                event,
                ids_only,
            } => {
                let Some(rm) = self.events.room_of_event(event)? else {
                    return Ok(None);
                };
                if rm.meta.room_id != *room {
                    return Ok(None);
                }
                let Some(state) = rm.state_before(event)? else {
                    return Ok(None);
                };
                let ids: Vec<&str> = state.values().map(|e| e.as_str()).collect();
                let Some(chain) = rm.auth_chain(ids.iter().copied()) else {
                    return Ok(None);
                };
                let Some(state_evs) = ids
                    .iter()
                    .map(|id| rm.events.get(*id).cloned())
                    .collect::<Option<Vec<_>>>()
                else {
                    return Ok(None);
                };
                let n = ids.len() + chain.len();
                let v = if *ids_only {
                    json!({
                        "pdu_ids": ids,
                        "auth_chain_ids": chain.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
                    })
                } else {
                    json!({"pdus": pdus(&state_evs), "auth_chain": pdus(&chain)})
                };
                Ok(Some((v, "archive", n)))
            }
            Request::MissingEvents { room, body } => {
                let Some(rm) = self.events.room(room)? else {
                    return Ok(None);
                };
                let ids = |k: &str| -> Vec<String> {
                    body.get(k)
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let latest = ids("latest_events");
                if !latest.iter().all(|e| rm.events.contains_key(e)) {
                    return Ok(None);
                }
                let limit = body
                    .get("limit")
                    .and_then(Value::as_u64)
                    .map_or(10, |l| l as usize)
                    .clamp(1, MAX_LIMIT);
                let min_depth = body.get("min_depth").and_then(Value::as_i64).unwrap_or(0);
                let evs = rm.missing_events(&ids("earliest_events"), &latest, limit, min_depth);
                let n = evs.len();
                Ok(Some((json!({"events": pdus(&evs)}), "archive", n)))
            }
        }
    }

    /// `/health`: what the proxy holds and whether Synapse answers (no authentication; it says
    /// nothing about the content).
    async fn health(&self) -> Response {
        let synapse =
            tokio::time::timeout(Duration::from_secs(5), self.synapse.published_keys()).await;
        let (ok, detail) = match synapse {
            Ok(Ok(_)) => (true, "reachable".to_owned()),
            Ok(Err(e)) => (false, e.to_string()),
            Err(_) => (false, "no answer within 5 s".to_owned()),
        };
        Json(json!({
            "status": "ok",
            "server_name": self.server_name,
            "archive": {"rooms": self.events.room_count(), "events": self.events.event_count()},
            "synapse": {"reachable": ok, "detail": detail},
        }))
        .into_response()
    }
}

fn error(status: StatusCode, errcode: &str, message: &str) -> Response {
    (status, Json(json!({"errcode": errcode, "error": message}))).into_response()
}

/// A failure as a federation error: Synapse's own answer passed on, or 502 when Synapse could
/// not be reached (Conduit then keeps serving what it has and may ask again later).
fn forward_error(e: Error) -> Response {
    match &e {
        Error::Api {
            status, errcode, ..
        } => error(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
            errcode,
            &e.to_string(),
        ),
        Error::Unreachable { .. } => error(
            StatusCode::BAD_GATEWAY,
            "M_UNKNOWN",
            &format!("not in the archive, and Synapse is unreachable: {e}"),
        ),
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "M_UNKNOWN",
            &e.to_string(),
        ),
    }
}

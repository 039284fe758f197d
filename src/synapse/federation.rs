//! Federation requests that Synapse's own key signs to Synapse itself (origin = destination =
//! our server name). Synapse checks such requests against its local keys, without any network
//! traffic (synapse.md §2), and answers them with exact signed PDUs.

use std::collections::BTreeMap;

use reqwest::{header::HeaderValue, Method};
use ruma::{
    api::federation::authentication::{XMatrix, XMatrixSigningInput},
    serde::Base64,
    signatures::{Ed25519KeyPair, PublicKeyMap},
    OwnedServerName,
};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::synapse::admin::{array, enc};
use crate::synapse::http::{Body, Http};

/// `/backfill` returns at most this many events per request.
pub const BACKFILL_LIMIT: usize = 100;
/// How many `v=` starting points one `/backfill` request carries.
pub const BACKFILL_STARTS: usize = 50;

/// A client for self-signed federation requests.
pub struct Federation {
    pub http: Http,
    server: OwnedServerName,
    keypair: Ed25519KeyPair,
}

impl Federation {
    pub fn new(http: Http, server_name: &str, keypair: Ed25519KeyPair) -> Result<Self> {
        let server = OwnedServerName::try_from(server_name)
            .map_err(|e| Error::Config(format!("server name {server_name:?}: {e}")))?;
        Ok(Federation {
            http,
            server,
            keypair,
        })
    }

    /// The X-Matrix header for one request.
    fn sign(&self, method: &Method, path: &str, body: Option<&Value>) -> Result<HeaderValue> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let req = http::Request::builder()
            .method(method.as_str())
            .uri(path)
            .body(bytes)
            .map_err(|e| Error::Config(format!("cannot build request for {path}: {e}")))?;
        let input =
            XMatrixSigningInput::new(self.server.clone(), self.server.clone(), &self.keypair);
        let xm = XMatrix::sign_http_request(&req, input)
            .map_err(|e| Error::Config(format!("cannot sign request {path}: {e}")))?;
        let mut value = HeaderValue::from(&xm);
        value.set_sensitive(true);
        Ok(value)
    }

    /// A signed GET returning JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.request(Method::GET, path, None).await
    }

    /// A signed request (path with its query, percent-encoded) returning JSON.
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let auth = self.sign(&method, path, body)?;
        self.http.json(method, path, Some(&auth), body).await
    }

    /// A signed request returning the raw answer (with its headers).
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Body> {
        let auth = self.sign(&method, path, body)?;
        self.http.send(method, path, Some(&auth), body).await
    }

    /// `/backfill` from the given events (which are included), newest first.
    pub async fn backfill(&self, room_id: &str, from: &[String]) -> Result<Vec<Value>> {
        let mut path = format!(
            "/_matrix/federation/v1/backfill/{}?limit={BACKFILL_LIMIT}",
            enc(room_id)
        );
        for id in from {
            path.push_str("&v=");
            path.push_str(&enc(id));
        }
        let v = self.get(&path).await?;
        Ok(array(&v, "pdus")?.to_vec())
    }

    /// `/state` before an event: `(state PDUs, auth chain PDUs)`.
    pub async fn state(&self, room_id: &str, event_id: &str) -> Result<(Vec<Value>, Vec<Value>)> {
        let v = self
            .get(&format!(
                "/_matrix/federation/v1/state/{}?event_id={}",
                enc(room_id),
                enc(event_id)
            ))
            .await?;
        Ok((
            array(&v, "pdus")?.to_vec(),
            array(&v, "auth_chain")?.to_vec(),
        ))
    }

    /// One event.
    pub async fn event(&self, event_id: &str) -> Result<Value> {
        let v = self
            .get(&format!("/_matrix/federation/v1/event/{}", enc(event_id)))
            .await?;
        array(&v, "pdus")?
            .first()
            .cloned()
            .ok_or_else(|| Error::malformed("federation /event answer", "no PDU"))
    }

    /// A harmless self-signed request (a profile query for a local user): succeeds only if
    /// Synapse accepts requests from itself, which a `federation_domain_whitelist` without our
    /// own name refuses.
    pub async fn probe(&self, local_user: &str) -> Result<()> {
        self.get(&format!(
            "/_matrix/federation/v1/query/profile?user_id={}",
            enc(local_user)
        ))
        .await
        .map(|_| ())
    }

    /// The server's published keys (current and old), as a ruma key map.
    pub async fn published_keys(&self) -> Result<PublishedKeys> {
        let v = self
            .http
            .json(Method::GET, "/_matrix/key/v2/server", None, None)
            .await?;
        PublishedKeys::from_json(&v)
    }
}

/// What `/_matrix/key/v2/server` publishes.
#[derive(Debug, Clone)]
pub struct PublishedKeys {
    pub server_name: String,
    /// Current keys: key id → base64 public key.
    pub verify_keys: BTreeMap<String, String>,
    /// Old keys: key id → base64 public key.
    pub old_verify_keys: BTreeMap<String, String>,
}

impl PublishedKeys {
    fn from_json(v: &Value) -> Result<Self> {
        let keys = |field: &str| -> BTreeMap<String, String> {
            v.get(field)
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(id, k)| {
                            Some((id.clone(), k.get("key")?.as_str()?.to_owned()))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let server_name = v
            .get("server_name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::malformed("/_matrix/key/v2/server answer", "no server_name"))?
            .to_owned();
        Ok(PublishedKeys {
            server_name,
            verify_keys: keys("verify_keys"),
            old_verify_keys: keys("old_verify_keys"),
        })
    }

    /// A map ruma's verification functions take: our server → every key, old ones included.
    pub fn key_map(&self) -> PublicKeyMap {
        let set = self
            .verify_keys
            .iter()
            .chain(&self.old_verify_keys)
            .filter_map(|(id, k)| Some((id.clone(), Base64::parse(k).ok()?)))
            .collect();
        BTreeMap::from([(self.server_name.clone(), set)])
    }
}

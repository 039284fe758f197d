//! A small JSON-over-HTTP layer shared by the admin, client and federation APIs: bounded retries
//! on 429 (honouring `retry_after_ms`) and on dropped connections, and errors that say which
//! server, which request and what Synapse answered. Tokens travel only in headers, never in URLs,
//! so logging a path never leaks a secret.

use std::time::Duration;

use reqwest::{header::HeaderValue, Method, StatusCode};
use serde_json::Value;

use crate::error::{Error, Result};

/// How often a request is retried on 429 or a dropped connection before giving up.
const MAX_ATTEMPTS: u32 = 8;
/// Per-request timeout; a large `/backfill` page takes well under a second.
const TIMEOUT: Duration = Duration::from_secs(120);

/// An HTTP endpoint (one base URL).
#[derive(Clone, Debug)]
pub struct Http {
    client: reqwest::Client,
    base: String,
    what: &'static str,
}

/// What a request carries.
enum Payload<'a> {
    Json(&'a Value),
    Bytes(bytes::Bytes, &'a str),
}

/// A response body with its content type.
pub struct Body {
    pub bytes: bytes::Bytes,
    pub content_type: Option<String>,
    pub headers: reqwest::header::HeaderMap,
}

impl Http {
    /// `what` names the server in errors ("Synapse", "Synapse federation listener").
    pub fn new(base: &str, what: &'static str) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        url::Url::parse(&base)
            .map_err(|e| Error::Config(format!("{what} URL {base:?} is not a URL: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("transition-matrix/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot build an HTTP client: {e}")))?;
        Ok(Http { client, base, what })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The full URL of a path (which must start with `/` and be percent-encoded already).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request and parses a JSON answer.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        auth: Option<&HeaderValue>,
        body: Option<&Value>,
    ) -> Result<Value> {
        let body = self.send(method.clone(), path, auth, body).await?;
        self.parse(&method, path, &body)
    }

    /// Sends a request and returns the raw body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<&HeaderValue>,
        body: Option<&Value>,
    ) -> Result<Body> {
        self.send_payload(method, path, auth, body.map(Payload::Json))
            .await
    }

    /// Uploads bytes (`POST`, the given content type) and parses a JSON answer.
    pub async fn upload(
        &self,
        path: &str,
        auth: Option<&HeaderValue>,
        content_type: &str,
        bytes: bytes::Bytes,
    ) -> Result<Value> {
        let payload = Payload::Bytes(bytes, content_type);
        let body = self
            .send_payload(Method::POST, path, auth, Some(payload))
            .await?;
        self.parse(&Method::POST, path, &body)
    }

    /// A JSON answer, or an error naming the server and the request.
    fn parse(&self, method: &Method, path: &str, body: &Body) -> Result<Value> {
        serde_json::from_slice(&body.bytes).map_err(|e| {
            Error::malformed(format!("{} answer to {} {}", self.what, method, path), e)
        })
    }

    async fn send_payload(
        &self,
        method: Method,
        path: &str,
        auth: Option<&HeaderValue>,
        body: Option<Payload<'_>>,
    ) -> Result<Body> {
        let url = self.url(path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.client.request(method.clone(), &url);
            if let Some(auth) = auth {
                req = req.header(reqwest::header::AUTHORIZATION, auth.clone());
            }
            match &body {
                Some(Payload::Json(v)) => req = req.json(v),
                Some(Payload::Bytes(b, ct)) => {
                    req = req
                        .header(reqwest::header::CONTENT_TYPE, *ct)
                        .body(b.clone())
                }
                None => {}
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if attempt < 3 && (e.is_timeout() || e.is_request()) && !e.is_connect() => {
                    tracing::debug!(path, error = %e, "request failed, retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    continue;
                }
                Err(e) => {
                    return Err(Error::Unreachable {
                        what: self.what,
                        url: self.base.clone(),
                        reason: root_cause(&e),
                    })
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let content_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let bytes = resp.bytes().await.map_err(|e| Error::Unreachable {
                what: self.what,
                url: self.base.clone(),
                reason: format!(
                    "connection dropped while reading {path}: {}",
                    root_cause(&e)
                ),
            })?;
            if status.is_success() {
                return Ok(Body {
                    bytes,
                    content_type,
                    headers,
                });
            }
            let (errcode, message, retry_ms) = parse_matrix_error(&bytes);
            if status == StatusCode::TOO_MANY_REQUESTS && attempt < MAX_ATTEMPTS {
                let wait = retry_ms.unwrap_or(500).clamp(50, 30_000) * u64::from(attempt);
                tracing::info!(
                    path,
                    wait_ms = wait,
                    "rate limited by {}, backing off",
                    self.what
                );
                tokio::time::sleep(Duration::from_millis(wait)).await;
                continue;
            }
            return Err(Error::Api {
                what: self.what,
                method: method_name(&method),
                path: redact_query(path),
                status: status.as_u16(),
                errcode,
                message,
            });
        }
    }
}

/// `Bearer <token>` as a header value marked sensitive (never printed by reqwest's Debug).
pub fn bearer(token: &str) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        Error::Config("the access token has characters a header cannot carry".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn parse_matrix_error(bytes: &[u8]) -> (String, String, Option<u64>) {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => (
            v.get("errcode")
                .and_then(Value::as_str)
                .unwrap_or("(no errcode)")
                .to_owned(),
            v.get("error")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            v.get("retry_after_ms").and_then(Value::as_u64),
        ),
        Err(_) => {
            let text = String::from_utf8_lossy(bytes);
            let text: String = text.chars().take(200).collect();
            ("(not JSON)".to_owned(), text.trim().to_owned(), None)
        }
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "request",
    }
}

/// Paths in errors keep their query, except values that could be secrets.
fn redact_query(path: &str) -> String {
    if path.contains("access_token=") {
        path.split('?').next().unwrap_or(path).to_owned() + "?…"
    } else {
        path.to_owned()
    }
}

/// The innermost error message (reqwest wraps hyper wraps io).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_errors_are_parsed() {
        let (code, msg, retry) = parse_matrix_error(
            br#"{"errcode":"M_LIMIT_EXCEEDED","error":"slow","retry_after_ms":100}"#,
        );
        assert_eq!(
            (code.as_str(), msg.as_str(), retry),
            ("M_LIMIT_EXCEEDED", "slow", Some(100))
        );
        let (code, msg, _) = parse_matrix_error(b"<html>bad gateway</html>");
        assert_eq!(code, "(not JSON)");
        assert!(msg.contains("bad gateway"));
    }

    #[test]
    fn bearer_is_sensitive() {
        let h = bearer("syt_secret").unwrap();
        assert!(h.is_sensitive());
        assert!(!format!("{h:?}").contains("syt_secret"));
    }

    #[tokio::test]
    async fn unreachable_server_is_a_clear_error() {
        // Port 9 (discard) on loopback: nothing listens there.
        let http = Http::new("http://127.0.0.1:9", "Synapse").unwrap();
        let err = http
            .json(Method::GET, "/x", None, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot reach Synapse at http://127.0.0.1:9"),
            "{err}"
        );
    }
}

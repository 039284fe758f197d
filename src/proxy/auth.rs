//! Who may ask the proxy: only our own server (the Conduit it serves), proven by an X-Matrix
//! signature from our own server name with the transferred key. Anything else is refused, so a
//! proxy reachable by mistake gives nothing away.

use http::{HeaderMap, Method, Uri};
use ruma::{
    api::federation::authentication::XMatrix, serde::Base64, signatures::PublicKeyMap,
    OwnedServerName,
};

use crate::matrix::keys::ServerKey;

/// Checks X-Matrix requests against our server name and public key.
pub struct RequestAuth {
    server: OwnedServerName,
    keys: PublicKeyMap,
}

/// Why a request was refused (said in the 401 answer and the log).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no valid X-Matrix Authorization header: {0}")]
    Header(String),
    #[error("origin {0} is not this server ({1}); only our own Conduit may ask")]
    Origin(String, String),
    #[error("signature check failed: {0}")]
    Signature(String),
}

impl RequestAuth {
    pub fn new(server_name: &str, key: &ServerKey) -> crate::Result<Self> {
        let server = OwnedServerName::try_from(server_name)
            .map_err(|e| crate::Error::Config(format!("server name {server_name:?}: {e}")))?;
        let public = Base64::parse(key.public_key_b64())
            .map_err(|e| crate::Error::Config(format!("public key: {e}")))?;
        let keys = PublicKeyMap::from([(
            server_name.to_owned(),
            [(key.key_id(), public)].into_iter().collect(),
        )]);
        Ok(RequestAuth { server, keys })
    }

    /// Accepts a request signed by our own server with our key, to our own server.
    pub fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), AuthError> {
        let xm = XMatrix::extract_from_http_headers(headers)
            .map_err(|e| AuthError::Header(e.to_string()))?;
        if xm.origin != self.server {
            return Err(AuthError::Origin(
                xm.origin.to_string(),
                self.server.to_string(),
            ));
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let req = http::Request::builder()
            .method(method.clone())
            .uri(path)
            .body(body)
            .map_err(|e| AuthError::Header(e.to_string()))?;
        xm.verify_http_request(&req, &self.server, &self.keys)
            .map_err(|e| AuthError::Signature(e.to_string()))
    }
}

//! Server signing keys in Synapse's file format (`ed25519 <version> <base64 seed>` per line).
//!
//! The same key must sign our self-federation requests and, later, be written into Conduit as
//! PKCS#8, so the key id (`ed25519:<version>`) stays the one other servers already trust.

use std::path::Path;

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ruma::signatures::Ed25519KeyPair;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::matrix::{b64_decode, b64_encode};

/// One ed25519 server signing key.
pub struct ServerKey {
    /// The key version, e.g. `a_IkfS` (the key id is `ed25519:<version>`).
    pub version: String,
    seed: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the seed.
        f.debug_struct("ServerKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl ServerKey {
    /// Parses Synapse's signing key file text. The first key is the one Synapse signs with.
    pub fn parse_synapse(text: &str, path: &Path) -> Result<Vec<ServerKey>> {
        let bad = |reason: String| Error::SigningKey {
            path: path.to_owned(),
            reason,
        };
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [alg, version, seed_b64] = parts[..] else {
                return Err(bad(format!(
                    "line {} is not `ed25519 <version> <base64 seed>`",
                    n + 1
                )));
            };
            if alg != "ed25519" {
                return Err(bad(format!("line {}: unsupported algorithm {alg}", n + 1)));
            }
            let bytes = b64_decode(seed_b64)
                .map_err(|e| bad(format!("line {}: seed is not base64: {e}", n + 1)))?;
            let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                bad(format!(
                    "line {}: seed has {} bytes, expected 32",
                    n + 1,
                    bytes.len()
                ))
            })?;
            keys.push(ServerKey {
                version: version.to_owned(),
                seed: Zeroizing::new(seed),
            });
        }
        if keys.is_empty() {
            return Err(bad("the file holds no key".into()));
        }
        Ok(keys)
    }

    /// The key Conduit keeps in its database (`global`/`keypair`: the version, the byte FF,
    /// then PKCS#8 DER, v1 as we write it or v2 as Conduit generates it).
    pub fn from_conduit_keypair(value: &[u8]) -> Result<ServerKey> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let bad = |reason: &str| Error::Conduit(format!("the database's server key: {reason}"));
        let at = (value.iter().position(|b| *b == 0xff))
            .ok_or_else(|| bad("no separator after the key version"))?;
        let version =
            std::str::from_utf8(&value[..at]).map_err(|_| bad("the key version is not UTF-8"))?;
        let sk = ed25519_dalek::SigningKey::from_pkcs8_der(&value[at + 1..])
            .map_err(|e| bad(&format!("not an ed25519 PKCS#8 document: {e}")))?;
        Ok(ServerKey {
            version: version.to_owned(),
            seed: Zeroizing::new(sk.to_bytes()),
        })
    }

    /// Reads and parses a Synapse signing key file.
    pub fn read_synapse(path: &Path) -> Result<Vec<ServerKey>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::SigningKey {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::parse_synapse(&text, path)
    }

    /// `ed25519:<version>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.version)
    }

    /// The public key, unpadded base64 (as published at `/_matrix/key/v2/server`).
    pub fn public_key_b64(&self) -> String {
        let sk = ed25519_dalek::SigningKey::from_bytes(&self.seed);
        b64_encode(sk.verifying_key().as_bytes())
    }

    /// The key as a PKCS#8 v1 DER document (what Conduit stores as its keypair).
    pub fn pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let sk = ed25519_dalek::SigningKey::from_bytes(&self.seed);
        let doc = sk
            .to_pkcs8_der()
            .expect("an ed25519 key always encodes as PKCS#8");
        Zeroizing::new(doc.as_bytes().to_vec())
    }

    /// A ruma key pair for signing requests and events.
    pub fn keypair(&self) -> Ed25519KeyPair {
        Ed25519KeyPair::from_der(&self.pkcs8_der(), self.version.clone())
            .expect("a PKCS#8 document we just built parses")
    }

    /// The seed (the private key), for a signer.
    pub(crate) fn seed(&self) -> &[u8] {
        self.seed.as_ref()
    }

    /// The line Synapse would write for this key (for copying into the archive).
    pub fn synapse_line(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "ed25519 {} {}\n",
            self.version,
            b64_encode(self.seed.as_ref())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::signatures::KeyPair;

    /// A synthetic test key (seed = 32 × 0x07), not any server's.
    fn key_text() -> String {
        format!("ed25519 a_test {}\n", b64_encode(&[7u8; 32]))
    }

    #[test]
    fn reads_conduits_stored_keypair_as_we_write_it_and_as_conduit_generates_it() {
        let ours = ServerKey::parse_synapse(&key_text(), Path::new("k"))
            .unwrap()
            .remove(0);
        let mut value = b"a_test\xff".to_vec();
        value.extend_from_slice(&ours.pkcs8_der());
        let back = ServerKey::from_conduit_keypair(&value).unwrap();
        assert_eq!(back.key_id(), "ed25519:a_test");
        assert_eq!(back.public_key_b64(), ours.public_key_b64());
        // Conduit makes its key with ruma's generate (PKCS#8 v2, the public key included).
        let der = Ed25519KeyPair::generate();
        let pair = Ed25519KeyPair::from_der(&der, "abc".into()).unwrap();
        let mut value = b"abc\xff".to_vec();
        value.extend_from_slice(&der);
        let back = ServerKey::from_conduit_keypair(&value).unwrap();
        assert_eq!(back.version, "abc");
        assert_eq!(back.public_key_b64(), b64_encode(&pair.public_key()));
        for garbled in [&b"no separator"[..], b"v\xffnot der"] {
            let e = ServerKey::from_conduit_keypair(garbled)
                .unwrap_err()
                .to_string();
            assert!(e.contains("server key"), "{e}");
        }
    }

    #[test]
    fn parses_synapse_format_and_signs_verifiably() {
        let keys = ServerKey::parse_synapse(&key_text(), Path::new("k")).unwrap();
        assert_eq!(keys.len(), 1);
        let k = &keys[0];
        assert_eq!(k.key_id(), "ed25519:a_test");
        let sig = k.keypair().sign(b"hello");
        let vk = ed25519_dalek::VerifyingKey::from_bytes(
            &b64_decode(&k.public_key_b64()).unwrap().try_into().unwrap(),
        )
        .unwrap();
        let sig = ed25519_dalek::Signature::from_slice(sig.as_bytes()).unwrap();
        vk.verify_strict(b"hello", &sig).unwrap();
        assert_eq!(k.synapse_line().as_str(), key_text());
        assert!(
            !format!("{k:?}").contains(&b64_encode(&[7u8; 32])),
            "Debug must not print the seed"
        );
    }

    #[test]
    fn rejects_garbage_with_line_numbers() {
        let p = Path::new("/x/k");
        let e = ServerKey::parse_synapse("ed25519 v1 !!!notbase64", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("/x/k"), "{e}");
        let e = ServerKey::parse_synapse("ed25519 v1 AAAA", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected 32"), "{e}");
        let e = ServerKey::parse_synapse("", p).unwrap_err().to_string();
        assert!(e.contains("no key"), "{e}");
    }
}

//! The configuration file (TOML; YAML accepted by extension) and how secrets reach it.
//!
//! Secrets never sit in the file itself: a key ending in `_env` names the environment variable
//! that holds the value (`admin_token_env = "SYNAPSE_ADMIN_TOKEN"`). Every value can also be given
//! as a command-line flag, which wins over the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole configuration file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub synapse: SynapseConfig,
    #[serde(default)]
    pub archive: ArchiveConfig,
    #[serde(default)]
    pub proxy: ProxyConfig,
}

/// The backfill proxy (`transition-matrix proxy`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Listen address (loopback or private only).
    pub listen: Option<std::net::SocketAddr>,
    /// Requests worked on at once.
    pub concurrency: Option<usize>,
}

/// How to reach and read the source Synapse.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynapseConfig {
    /// Base URL of a listener serving the client and admin APIs.
    pub url: Option<String>,
    /// Base URL of a listener serving the `federation` resource (defaults to `url`).
    pub federation_url: Option<String>,
    /// The server name; read from `homeserver_yaml` or the published key when absent.
    pub server_name: Option<String>,
    /// Synapse's homeserver.yaml: gives `server_name`, `signing_key_path`, `old_signing_keys`
    /// and the password pepper.
    pub homeserver_yaml: Option<PathBuf>,
    /// Path of the signing key file (overrides `signing_key_path` from homeserver.yaml).
    pub signing_key: Option<PathBuf>,
    /// A server admin's user id, used with a password from `admin_password_env`.
    pub admin_user: Option<String>,
    /// Environment variable holding the admin's password.
    pub admin_password_env: Option<String>,
    /// Environment variable holding an admin access token (preferred over a password login).
    pub admin_token_env: Option<String>,
    /// Synapse's database (read-only): a SQLite path or a `postgres://` URL.
    pub database: Option<String>,
    /// Environment variable holding the database URL (for URLs with a password in them).
    pub database_env: Option<String>,
    /// How many rooms / users are dumped at once.
    pub concurrency: Option<usize>,
}

/// Where the archive lives.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    pub path: Option<PathBuf>,
}

impl Config {
    /// Reads a config file; the format follows the extension (`.yaml`/`.yml` → YAML, else TOML).
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io("cannot read config", path, e))?;
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        );
        let parsed = if is_yaml {
            serde_yaml::from_str(&text).map_err(|e| e.to_string())
        } else {
            toml::from_str(&text).map_err(|e| e.to_string())
        };
        parsed.map_err(|reason| Error::malformed(format!("config file {}", path.display()), reason))
    }
}

/// Reads a secret from the environment variable named by a `*_env` key.
/// `Ok(None)` when no variable is named; an error when it is named but unset or empty.
pub fn secret_from_env(key: &str, var: Option<&str>) -> Result<Option<String>> {
    let Some(var) = var else { return Ok(None) };
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Some(v)),
        _ => Err(Error::Config(format!(
            "{key} names the environment variable {var}, but it is not set"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_yaml_give_the_same_config() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("c.toml");
        std::fs::write(
            &toml_path,
            "[synapse]\nurl = \"http://127.0.0.1:8008\"\nadmin_token_env = \"TOK\"\n",
        )
        .unwrap();
        let yaml_path = dir.path().join("c.yaml");
        std::fs::write(
            &yaml_path,
            "synapse:\n  url: http://127.0.0.1:8008\n  admin_token_env: TOK\n",
        )
        .unwrap();
        let a = Config::load(&toml_path).unwrap();
        let b = Config::load(&yaml_path).unwrap();
        assert_eq!(a.synapse.url.as_deref(), Some("http://127.0.0.1:8008"));
        assert_eq!(a.synapse.url, b.synapse.url);
        assert_eq!(a.synapse.admin_token_env, b.synapse.admin_token_env);
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[synapse]\nadmin_pasword = \"x\"\n").unwrap();
        let err = Config::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("c.toml") && err.contains("admin_pasword"),
            "{err}"
        );
    }

    #[test]
    fn named_but_unset_secret_is_an_error() {
        let err = secret_from_env("admin_token_env", Some("TM_SURELY_UNSET_VAR_123")).unwrap_err();
        assert!(err.to_string().contains("TM_SURELY_UNSET_VAR_123"));
        assert!(secret_from_env("admin_token_env", None).unwrap().is_none());
    }
}

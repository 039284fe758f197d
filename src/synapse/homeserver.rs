//! The parts of Synapse's `homeserver.yaml` a migration needs.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Selected settings from homeserver.yaml.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HomeserverYaml {
    pub server_name: Option<String>,
    pub signing_key_path: Option<PathBuf>,
    /// `{key_id: {key: <b64 public>, expired_ts: ms}}`.
    #[serde(default)]
    pub old_signing_keys: Option<serde_json::Value>,
    #[serde(default)]
    pub password_config: Option<PasswordConfig>,
    pub federation_domain_whitelist: Option<Vec<String>>,
    pub database: Option<DatabaseConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PasswordConfig {
    pub pepper: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DatabaseConfig {
    pub name: Option<String>,
    #[serde(default)]
    pub args: serde_json::Value,
}

impl HomeserverYaml {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
        let mut hs: HomeserverYaml = serde_yaml::from_str(&text)
            .map_err(|e| Error::malformed(format!("homeserver.yaml {}", path.display()), e))?;
        // Relative paths in homeserver.yaml are relative to Synapse's working directory, which
        // is almost always the config's directory.
        if let (Some(p), Some(dir)) = (&hs.signing_key_path, path.parent()) {
            if p.is_relative() {
                hs.signing_key_path = Some(dir.join(p));
            }
        }
        Ok(hs)
    }

    /// The SQLite database path, when Synapse uses SQLite.
    pub fn sqlite_path(&self) -> Option<String> {
        let db = self.database.as_ref()?;
        if db.name.as_deref() != Some("sqlite3") {
            return None;
        }
        db.args
            .get("database")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }
}

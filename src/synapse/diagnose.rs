//! `test synapse`: step-by-step diagnostics, each a ✓/✗ line with the reason, stopping at the
//! first step that later steps depend on.

use reqwest::Method;

use crate::synapse::http::Http;
use crate::synapse::source::explain_federation_error;
use crate::synapse::{Source, SynapseSettings};

/// One diagnostic line.
#[derive(Debug, Clone)]
pub struct Step {
    pub ok: bool,
    pub name: String,
    pub detail: String,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            if self.ok { "✓" } else { "✗" },
            self.name,
            self.detail
        )
    }
}

/// Runs the checks; `emit` is called with each line as soon as it is known.
/// `config` describes where the settings came from (shown as the first line).
pub async fn run(settings: &SynapseSettings, config: &str, mut emit: impl FnMut(&Step)) -> bool {
    let mut all_ok = true;
    let mut step = |ok: bool, name: &str, detail: String| {
        let s = Step {
            ok,
            name: name.into(),
            detail,
        };
        emit(&s);
        all_ok &= ok;
        ok
    };
    step(true, "config", config.to_owned());
    let reachable = match settings.url() {
        Ok(url) => match Http::new(url, "Synapse") {
            Ok(http) => http
                .json(Method::GET, "/_matrix/client/versions", None, None)
                .await
                .map(|_| url),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match reachable {
        Ok(url) => step(
            true,
            "Synapse reachable",
            format!("{url} answers the client API"),
        ),
        Err(e) => return step(false, "Synapse reachable", e.to_string()),
    };
    let source = match Source::connect(settings).await {
        Ok(s) => {
            step(
                true,
                "admin login",
                format!("{} is a server admin", s.admin_user_id),
            );
            step(
                true,
                "server version",
                format!("Synapse {} serving {}", s.version, s.server_name),
            );
            s
        }
        Err(e) => {
            step(false, "connect and authenticate", e.to_string());
            return false;
        }
    };
    match &source.signing_key_path {
        Some(p) => step(
            true,
            "signing key",
            format!("{} ({})", p.display(), source.keys[0].key_id()),
        ),
        None => step(
            false,
            "signing key",
            "none configured (homeserver_yaml or signing_key)".into(),
        ),
    };
    if let Some(fed) = &source.federation {
        match fed.published_keys().await {
            Ok(p)
                if p.verify_keys.get(&source.keys[0].key_id())
                    == Some(&source.keys[0].public_key_b64()) =>
            {
                step(
                    true,
                    "federation listener",
                    format!("{} publishes the key on disk", fed.http.base()),
                )
            }
            Ok(p) => step(
                false,
                "federation listener",
                format!(
                    "Synapse publishes {:?}; the key on disk is {} with another public key",
                    p.verify_keys.keys().collect::<Vec<_>>(),
                    source.keys[0].key_id()
                ),
            ),
            Err(e) => step(
                false,
                "federation listener",
                explain_federation_error(e, fed.http.base()).to_string(),
            ),
        };
        match fed.probe(&source.admin_user_id).await {
            Ok(_) => step(true, "self-signed request", "accepted".into()),
            Err(e) => step(
                false,
                "self-signed request",
                explain_federation_error(e, fed.http.base()).to_string(),
            ),
        };
    }
    if let Some(db) = &source.db {
        match db.user_count().await {
            Ok(n) => step(
                true,
                "database",
                format!("{} readable, {n} users", db.backend),
            ),
            Err(e) => step(false, "database", e.to_string()),
        };
    }
    source.close().await;
    all_ok
}

//! A connected Synapse: admin token, optional federation client with the server's own key,
//! optional read-only database. Built once per command from the resolved settings.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::matrix::keys::ServerKey;
use crate::synapse::{
    admin::{password_login, AdminApi},
    db::SynapseDb,
    federation::{Federation, PublishedKeys},
    homeserver::HomeserverYaml,
    http::Http,
};

/// Settings after merging the config file, flags and environment.
#[derive(Clone, Default)]
pub struct SynapseSettings {
    pub url: Option<String>,
    pub federation_url: Option<String>,
    pub server_name: Option<String>,
    pub homeserver_yaml: Option<PathBuf>,
    pub signing_key: Option<PathBuf>,
    pub admin_user: Option<String>,
    pub admin_password: Option<String>,
    pub admin_token: Option<String>,
    pub database: Option<String>,
    pub concurrency: usize,
}

impl std::fmt::Debug for SynapseSettings {
    // Secrets are shown only as present/absent.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SynapseSettings")
            .field("url", &self.url)
            .field("federation_url", &self.federation_url)
            .field("server_name", &self.server_name)
            .field("homeserver_yaml", &self.homeserver_yaml)
            .field("signing_key", &self.signing_key)
            .field("admin_user", &self.admin_user)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<set>"),
            )
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("database", &self.database.as_ref().map(|_| "<set>"))
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl SynapseSettings {
    pub fn url(&self) -> Result<&str> {
        self.url.as_deref().ok_or_else(|| {
            Error::Config(
                "no Synapse URL: set [synapse] url in the config or pass --synapse-url".into(),
            )
        })
    }

    pub fn homeserver(&self) -> Result<Option<HomeserverYaml>> {
        self.homeserver_yaml
            .as_deref()
            .map(HomeserverYaml::load)
            .transpose()
    }

    /// The signing key path: the flag/config value, else homeserver.yaml's `signing_key_path`.
    pub fn signing_key_path(&self, hs: Option<&HomeserverYaml>) -> Option<PathBuf> {
        self.signing_key
            .clone()
            .or_else(|| hs.and_then(|h| h.signing_key_path.clone()))
    }
}

/// A connected Synapse.
pub struct Source {
    pub admin: AdminApi,
    pub server_name: String,
    pub version: String,
    pub admin_user_id: String,
    pub homeserver: Option<HomeserverYaml>,
    pub signing_key_path: Option<PathBuf>,
    pub keys: Vec<ServerKey>,
    pub federation: Option<Federation>,
    pub published: Option<PublishedKeys>,
    pub db: Option<SynapseDb>,
    pub concurrency: usize,
    /// Set when we logged in with a password: the token is logged out again by [`Source::close`].
    logged_in: bool,
}

impl Source {
    /// Connects and authenticates; fails with a clear message on the first problem.
    pub async fn connect(s: &SynapseSettings) -> Result<Self> {
        let homeserver = s.homeserver()?;
        let http = Http::new(s.url()?, "Synapse")?;
        let (token, logged_in) = match (&s.admin_token, &s.admin_user, &s.admin_password) {
            (Some(t), _, _) => (t.clone(), false),
            (None, Some(user), Some(pw)) => {
                let token = password_login(&http, user, pw).await.map_err(|e| match e {
                    Error::Api {
                        status: 403,
                        errcode,
                        message,
                        ..
                    } => Error::Config(format!(
                        "admin login as {user} failed: {errcode} {message} (wrong password?)"
                    )),
                    other => other,
                })?;
                (token, true)
            }
            _ => return Err(Error::Config(
                "no admin credentials: set admin_token_env, or admin_user and admin_password_env"
                    .into(),
            )),
        };
        let admin = AdminApi::new(http, &token)?;
        let (admin_user_id, is_admin, version) = tokio::join!(
            admin.whoami(),
            admin.check_is_admin(),
            admin.server_version()
        );
        let admin_user_id = admin_user_id?;
        is_admin.map_err(|e| match e {
            Error::Api { status: 403, .. } => Error::Config(format!(
                "{admin_user_id} is not a server admin on this Synapse"
            )),
            other => other,
        })?;
        let version = version?;
        let server_name = s
            .server_name
            .clone()
            .or_else(|| homeserver.as_ref().and_then(|h| h.server_name.clone()))
            .or_else(|| admin_user_id.split_once(':').map(|(_, s)| s.to_owned()))
            .ok_or_else(|| Error::Config("cannot tell the server name".into()))?;

        let signing_key_path = s.signing_key_path(homeserver.as_ref());
        let keys = match &signing_key_path {
            Some(p) => ServerKey::read_synapse(p)?,
            None => Vec::new(),
        };
        let fed_url = s.federation_url.as_deref().unwrap_or(s.url()?);
        let federation = match keys.first() {
            Some(k) => Some(Federation::new(
                Http::new(fed_url, "Synapse federation listener")?,
                &server_name,
                k.keypair(),
            )?),
            None => None,
        };
        let db = match &s.database {
            Some(loc) => Some(SynapseDb::open(loc).await?),
            None => None,
        };
        Ok(Source {
            admin,
            server_name,
            version,
            admin_user_id,
            homeserver,
            signing_key_path,
            keys,
            federation,
            published: None,
            db,
            concurrency: s.concurrency.max(1),
            logged_in,
        })
    }

    /// The federation client, or an error saying why there is none.
    pub fn federation(&self) -> Result<&Federation> {
        self.federation.as_ref().ok_or_else(|| {
            Error::Config(
                "no signing key: set [synapse] homeserver_yaml or signing_key (--signing-key); \
                 it is needed to read rooms over self-signed federation"
                    .into(),
            )
        })
    }

    /// Preflight for self-federation: the published keys include our key file's current key,
    /// and a self-signed request is accepted.
    pub async fn check_signing_key(&mut self) -> Result<&PublishedKeys> {
        let fed = self.federation()?;
        let published = fed
            .published_keys()
            .await
            .map_err(|e| explain_federation_error(e, fed.http.base()))?;
        if published.server_name != self.server_name {
            return Err(Error::Config(format!(
                "the federation listener serves {}, but the server name is {}",
                published.server_name, self.server_name
            )));
        }
        let key = &self.keys[0];
        match published.verify_keys.get(&key.key_id()) {
            Some(pk) if *pk == key.public_key_b64() => {}
            Some(_) => {
                return Err(Error::SigningKey {
                    path: self.signing_key_path.clone().unwrap_or_default(),
                    reason: format!("{} does not match the key Synapse publishes", key.key_id()),
                })
            }
            None => {
                return Err(Error::SigningKey {
                    path: self.signing_key_path.clone().unwrap_or_default(),
                    reason: format!(
                        "Synapse publishes {:?}, not {}",
                        published.verify_keys.keys().collect::<Vec<_>>(),
                        key.key_id()
                    ),
                })
            }
        }
        // One signed request proves Synapse accepts requests from itself (a
        // federation_domain_whitelist without our own name refuses every one of them).
        fed.probe(&self.admin_user_id)
            .await
            .map_err(|e| explain_federation_error(e, fed.http.base()))?;
        self.published = Some(published);
        Ok(self.published.as_ref().expect("just set"))
    }

    /// Logs out a token we created by password login.
    pub async fn close(&self) {
        if self.logged_in {
            if let Err(e) = self.admin.logout().await {
                tracing::warn!("could not log the temporary admin session out: {e}");
            }
        }
    }
}

/// Turns the federation failures admins actually meet into advice.
pub fn explain_federation_error(e: Error, base: &str) -> Error {
    match &e {
        Error::Api {
            status: 404,
            errcode,
            ..
        } if errcode == "M_UNRECOGNIZED" => Error::Config(format!(
            "{base} does not serve federation (404 M_UNRECOGNIZED): point federation_url \
             (--federation-url) at a Synapse listener with the `federation` resource"
        )),
        Error::Api {
            status: 403,
            message,
            ..
        } if message.contains("Federation denied") => Error::Config(format!(
            "Synapse refused a request from itself: {message} Its federation_domain_whitelist \
                 must include its own server name"
        )),
        _ => e,
    }
}

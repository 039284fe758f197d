//! SSH to a source server (a Mattermost host): files read remotely and database ports
//! forwarded to loopback, over one session. The server's key must be in known_hosts — an unknown
//! or changed key stops everything before any credential is sent. Auth: a key file, a password,
//! or the SSH agent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{self, HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Where to connect and how to log in.
#[derive(Clone)]
pub struct SshOptions {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub auth: SshAuth,
    /// known_hosts to check the server's key against (default `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
}

/// How to log in.
#[derive(Clone)]
pub enum SshAuth {
    /// A private key file (OpenSSH format), with its passphrase if it has one.
    Key(PathBuf, Option<Zeroizing<String>>),
    Password(Zeroizing<String>),
    /// The keys the SSH agent at `$SSH_AUTH_SOCK` holds.
    Agent,
}

impl SshOptions {
    /// Parses `user@host[:port]`.
    pub fn parse_target(target: &str, auth: SshAuth) -> Result<Self> {
        let (user, rest) = target
            .split_once('@')
            .ok_or_else(|| Error::Config(format!("--ssh {target}: expected user@host[:port]")))?;
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => (
                h.trim_matches(['[', ']']).to_owned(),
                p.parse()
                    .map_err(|_| Error::Config(format!("--ssh {target}: bad port {p:?}")))?,
            ),
            _ => (rest.trim_matches(['[', ']']).to_owned(), 22),
        };
        Ok(SshOptions {
            user: user.to_owned(),
            host,
            port,
            auth,
            known_hosts: None,
        })
    }

    fn label(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

fn ssh_err(o: &SshOptions, what: &str) -> impl Fn(russh::Error) -> Error {
    let label = format!("SSH {} {what}", o.label());
    move |e| Error::Config(format!("{label}: {e}"))
}

/// Checks the server's key against known_hosts and keeps the verdict for the error message.
struct HostCheck {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    verdict: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.verdict.lock().expect("lock") =
                Some("the server offered a certificate; only plain host keys are checked".into());
            return Ok(false);
        };
        let fp = key.fingerprint(HashAlg::Sha256);
        let kh = self.known_hosts.display();
        let verdict = match keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
            Ok(true) => return Ok(true),
            Ok(false) => format!(
                "the host key of {}:{} ({fp}) is not in {kh}: check the fingerprint with the server's \
                 administrator, then add it (ssh-keyscan -p {} {} >> {kh})",
                self.host, self.port, self.port, self.host
            ),
            Err(keys::Error::KeyChanged { line }) => format!(
                "HOST KEY MISMATCH: {}:{} presents {fp}, which does not match line {line} of {kh}. \
                 Someone may be intercepting the connection; if the key changed on purpose, \
                 remove that line and add the new key",
                self.host, self.port
            ),
            Err(e) => format!("cannot check the host key against {kh}: {e}"),
        };
        *self.verdict.lock().expect("lock") = Some(verdict);
        Ok(false)
    }
}

/// One logged-in SSH session (a clone shares it).
#[derive(Clone)]
pub struct Ssh {
    handle: Arc<Handle<HostCheck>>,
    label: String,
}

impl Ssh {
    /// Connects, checks the host key, logs in.
    pub async fn connect(o: &SshOptions) -> Result<Self> {
        let known_hosts = match &o.known_hosts {
            Some(p) => p.clone(),
            None => std::env::var_os("HOME")
                .map(|h| Path::new(&h).join(".ssh/known_hosts"))
                .ok_or_else(|| {
                    Error::Config("no HOME for ~/.ssh/known_hosts: pass --ssh-known-hosts".into())
                })?,
        };
        let verdict = Arc::new(Mutex::new(None));
        let check = HostCheck {
            host: o.host.clone(),
            port: o.port,
            known_hosts,
            verdict: verdict.clone(),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(300)),
            keepalive_interval: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        let addr = (o.host.as_str(), o.port);
        let connect = tokio::time::timeout(
            Duration::from_secs(20),
            client::connect(config, addr, check),
        );
        let mut handle = match connect.await {
            Err(_) => {
                return Err(Error::Config(format!(
                    "SSH {}: no answer within 20 s",
                    o.label()
                )))
            }
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                let why = verdict.lock().expect("lock").take();
                return Err(Error::Config(format!(
                    "SSH {}: {}",
                    o.label(),
                    why.unwrap_or_else(|| e.to_string())
                )));
            }
        };
        let ok = match &o.auth {
            SshAuth::Password(p) => handle
                .authenticate_password(o.user.clone(), p.as_str())
                .await
                .map_err(ssh_err(o, "password login"))?
                .success(),
            SshAuth::Key(path, passphrase) => {
                let key = keys::load_secret_key(path, passphrase.as_ref().map(|p| p.as_str()))
                    .map_err(|e| Error::Config(format!("SSH key {}: {e}", path.display())))?;
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(ssh_err(o, "key login"))?
                    .flatten();
                handle
                    .authenticate_publickey(
                        o.user.clone(),
                        PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                    )
                    .await
                    .map_err(ssh_err(o, "key login"))?
                    .success()
            }
            SshAuth::Agent => {
                let mut agent = keys::agent::client::AgentClient::connect_env()
                    .await
                    .map_err(|e| Error::Config(format!("SSH agent ($SSH_AUTH_SOCK): {e}")))?;
                let ids = agent
                    .request_identities()
                    .await
                    .map_err(|e| Error::Config(format!("SSH agent: {e}")))?;
                let mut ok = false;
                for id in ids {
                    let keys::agent::AgentIdentity::PublicKey { key, .. } = id else {
                        continue;
                    };
                    let r = handle
                        .authenticate_publickey_with(o.user.clone(), key, None, &mut agent)
                        .await;
                    if r.is_ok_and(|r| r.success()) {
                        ok = true;
                        break;
                    }
                }
                ok
            }
        };
        if !ok {
            return Err(Error::Config(format!("SSH {}: login refused", o.label())));
        }
        Ok(Ssh {
            handle: Arc::new(handle),
            label: o.label(),
        })
    }

    /// The bytes of a remote file (`cat` on the server).
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        let (status, out, err) = self
            .run(&format!("cat -- {}", shell_quote(path)))
            .await
            .map_err(|why| self.fail(&format!("reading {path}"), why))?;
        match status {
            Some(0) => Ok(out),
            _ => Err(self.fail(&format!("reading {path}"), err)),
        }
    }

    /// Runs a shell command on the server: its exit status, standard output, standard error.
    pub async fn run(
        &self,
        command: &str,
    ) -> std::result::Result<(Option<u32>, Vec<u8>, String), String> {
        let mut ch = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| e.to_string())?;
        ch.exec(true, command).await.map_err(|e| e.to_string())?;
        let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), None);
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, .. } => err.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        Ok((status, out, String::from_utf8_lossy(&err).trim().to_owned()))
    }

    fn fail(&self, what: &str, why: String) -> Error {
        Error::Config(format!("SSH {}: {what}: {why}", self.label))
    }

    /// Listens on a loopback port and forwards each connection to `host:port` as seen from the
    /// server. Returns the local address; forwarding lasts as long as this session.
    pub async fn forward(&self, host: &str, port: u16) -> Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("cannot listen on", "127.0.0.1:0", e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("cannot listen on", "127.0.0.1:0", e))?;
        let handle = Arc::downgrade(&self.handle);
        let (host, label) = (host.to_owned(), self.label.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, peer)) = listener.accept().await {
                let Some(handle) = handle.upgrade() else {
                    break;
                };
                let host = host.clone();
                let label = label.clone();
                tokio::spawn(async move {
                    let ch = handle
                        .channel_open_direct_tcpip(
                            host.clone(),
                            port.into(),
                            peer.ip().to_string(),
                            peer.port().into(),
                        )
                        .await;
                    match ch {
                        Ok(ch) => {
                            let mut stream = ch.into_stream();
                            let _ = tokio::io::copy_bidirectional(&mut sock, &mut stream).await;
                        }
                        Err(e) => {
                            tracing::warn!("SSH {label}: cannot forward to {host}:{port}: {e}")
                        }
                    }
                });
            }
        });
        Ok(local)
    }
}

/// Single-quotes a word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_quoting() {
        let o = SshOptions::parse_target("mm@chat.example.org:2222", SshAuth::Agent).unwrap();
        assert_eq!(
            (o.user.as_str(), o.host.as_str(), o.port),
            ("mm", "chat.example.org", 2222)
        );
        let o = SshOptions::parse_target("root@[::1]:22", SshAuth::Agent).unwrap();
        assert_eq!((o.host.as_str(), o.port), ("::1", 22));
        let o = SshOptions::parse_target("root@host", SshAuth::Agent).unwrap();
        assert_eq!(o.port, 22);
        assert!(SshOptions::parse_target("host", SshAuth::Agent).is_err());
        assert_eq!(shell_quote("a b'c"), "'a b'\\''c'");
    }
}

//! Reaching the workspace: config.json (local or over SSH), the database, the file store.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use transition_matrix::archive::fsutil;
use transition_matrix::mattermost::config::{DataSource, MattermostConfig};
use transition_matrix::mattermost::db::MattermostDb;
use transition_matrix::mattermost::export;
use transition_matrix::mattermost::map::store_relative;
use transition_matrix::mattermost::rows::{MmFile, Snapshot};
use transition_matrix::ssh::{Ssh, SshAuth, SshOptions};
use zeroize::Zeroizing;

use super::{DriverArg, SourceArgs};

/// Where the workspace is: the database, and the file store (local, or on the SSH host).
pub struct Source {
    pub ds: DataSource,
    pub files: Option<PathBuf>,
    /// The session the database forward and remote files go through.
    pub ssh: Option<Ssh>,
}

const DEFAULT_REMOTE_CONFIG: &str = "/opt/mattermost/config/config.json";

fn ssh_options(a: &SourceArgs, target: &str) -> Result<SshOptions> {
    let secret = match &a.ssh_password_env {
        Some(var) => {
            Some(Zeroizing::new(std::env::var(var).with_context(|| {
                format!("--ssh-password-env {var}: not set")
            })?))
        }
        None => None,
    };
    let auth = match (&a.ssh_key, secret) {
        (Some(k), passphrase) => SshAuth::Key(k.clone(), passphrase),
        (None, Some(p)) => SshAuth::Password(p),
        (None, None) => SshAuth::Agent,
    };
    let mut o = SshOptions::parse_target(target, auth)?;
    o.known_hosts = a.ssh_known_hosts.clone();
    Ok(o)
}

/// The SSH session to the Mattermost host, when `--ssh` asks for one.
pub async fn connect_ssh(a: &SourceArgs) -> Result<Option<Ssh>> {
    Ok(match &a.ssh {
        Some(target) => Some(Ssh::connect(&ssh_options(a, target)?).await?),
        None => None,
    })
}

/// The database and file store, from config.json (local or over `ssh`) and the flags.
pub async fn open_source(a: &SourceArgs, ssh: Option<Ssh>) -> Result<Source> {
    let config = match (&a.mattermost_config, &ssh) {
        (Some(p), None) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read Mattermost's config {}", p.display()))?;
            let env: Vec<(String, String)> = std::env::vars()
                .filter(|(k, _)| k.starts_with("MM_"))
                .collect();
            Some(MattermostConfig::parse(&text, &env)?)
        }
        (p, Some(ssh)) if a.data_source.is_none() || p.is_some() => {
            let path = p.as_ref().map_or(DEFAULT_REMOTE_CONFIG.to_owned(), |p| {
                p.display().to_string()
            });
            let bytes = ssh.read_file(&path).await?;
            let text = String::from_utf8(bytes).with_context(|| format!("{path} is not UTF-8"))?;
            Some(MattermostConfig::parse(&text, &[])?)
        }
        _ => None,
    };
    let mut ds = match (&a.data_source, &config) {
        (Some(dsn), _) => {
            let driver = match a.driver {
                DriverArg::Postgres => "postgres",
                DriverArg::Mysql => "mysql",
            };
            DataSource::parse(driver, dsn)?
        }
        (None, Some(c)) => c.data_source.clone(),
        (None, None) => bail!("pass --mattermost-config or --data-source"),
    };
    let files = a.files.clone().or_else(|| {
        let c = config.as_ref()?;
        let dir = PathBuf::from(&c.file_directory);
        // A relative Directory is relative to the server's working directory, which is the
        // parent of its config/ directory.
        if dir.is_absolute() {
            return Some(dir);
        }
        let config_path = a
            .mattermost_config
            .clone()
            .unwrap_or_else(|| DEFAULT_REMOTE_CONFIG.into());
        Some(config_path.parent()?.parent()?.join(dir))
    });
    if let Some(ssh) = &ssh {
        if ds.host.starts_with('/') {
            bail!("the database is on a Unix socket ({}); over SSH it needs a TCP address (--data-source)", ds.host);
        }
        let local = ssh.forward(&ds.host, ds.port).await?;
        ds.host = local.ip().to_string();
        ds.port = local.port();
    }
    Ok(Source { ds, files, ssh })
}

/// The store paths of users' pictures and custom emoji.
pub fn meta_paths(snap: &Snapshot) -> Vec<String> {
    let mut paths: Vec<String> = snap
        .users
        .iter()
        .filter_map(|u| u.picture.clone())
        .collect();
    paths.extend(
        (snap.emoji.iter())
            .filter(|e| e.delete_at == 0)
            .map(|e| format!("emoji/{}/image", e.id)),
    );
    paths
}

/// The store paths of a channel's files and their previews.
pub fn file_paths(files: &[MmFile]) -> Vec<String> {
    let mut paths = Vec::new();
    for f in files.iter().filter(|f| f.delete_at == 0) {
        paths.push(f.path.clone());
        if !f.preview_path.is_empty() {
            paths.push(f.preview_path.clone());
        }
    }
    paths
}

/// Copies files from the SSH host's store into `dir` (skipping ones already there); missing
/// ones are left for the mapping to report.
pub async fn fetch_remote_files(
    ssh: &Ssh,
    remote: &Path,
    paths: Vec<String>,
    dir: &Path,
) -> Result<u64> {
    let mut n = 0;
    for rel in &paths {
        let Some(rel_path) = store_relative(rel) else {
            continue;
        };
        let local = dir.join(rel_path);
        if local.is_file() {
            continue;
        }
        if let Ok(bytes) = ssh
            .read_file(&remote.join(rel_path).display().to_string())
            .await
        {
            if let Some(parent) = local.parent() {
                fsutil::create_dir_all(parent)?;
            }
            fsutil::write_atomic(&local, &bytes, false)?;
            n += 1;
        }
    }
    Ok(n)
}

/// `test mattermost`: each step of reaching the workspace, one ✓/✗ line each.
pub async fn diagnose(a: &SourceArgs) -> bool {
    if let Some(zip) = &a.export {
        let dir = std::env::temp_dir().join(format!("tm-export-check-{}", std::process::id()));
        let r = export::read(zip, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        return match r {
            Ok(s) => {
                println!(
                    "✓ bulk export {} read: {} users, {} teams, {} channels, {} posts",
                    zip.display(),
                    s.users.len(),
                    s.teams.len(),
                    s.channels.len(),
                    s.posts.len()
                );
                true
            }
            Err(e) => {
                println!("✗ bulk export: {e}");
                false
            }
        };
    }
    if let (Some(p), None) = (&a.mattermost_config, &a.ssh) {
        match std::fs::read_to_string(p)
            .map_err(anyhow::Error::from)
            .and_then(|t| Ok(MattermostConfig::parse(&t, &[])?))
        {
            Ok(c) => println!(
                "✓ config.json {} parsed: {:?} database at {}:{}, files in {}",
                p.display(),
                c.data_source.driver,
                c.data_source.host,
                c.data_source.port,
                c.file_directory
            ),
            Err(e) => {
                println!("✗ config.json {}: {e:#}", p.display());
                return false;
            }
        }
    }
    // One session: checked here, then used for the config, the forward and the files.
    let ssh = match connect_ssh(a).await {
        Ok(ssh) => {
            if let Some(target) = &a.ssh {
                println!("✓ SSH {target}: host key known, logged in");
            }
            ssh
        }
        Err(e) => {
            println!("✗ {e:#}");
            return false;
        }
    };
    let src = match open_source(a, ssh).await {
        Ok(x) => x,
        Err(e) => {
            println!("✗ {e:#}");
            return false;
        }
    };
    let (ds, files) = (&src.ds, src.files.clone());
    let db = match MattermostDb::connect(ds).await {
        Ok(db) => {
            println!(
                "✓ connected to {:?} {}@{}:{}/{} (read-only)",
                ds.driver, ds.user, ds.host, ds.port, ds.database
            );
            db
        }
        Err(e) => {
            println!("✗ {e}");
            return false;
        }
    };
    let mut ok = true;
    match db.counts().await {
        Ok(counts) => {
            let line: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
            println!("✓ {}", line.join(", "));
        }
        Err(e) => {
            println!("✗ counting: {e}");
            ok = false;
        }
    }
    match files {
        Some(f) if src.ssh.is_some() => {
            println!(
                "· file store {} is on the SSH host (files are copied during the import)",
                f.display()
            )
        }
        Some(f) => match std::fs::read_dir(&f) {
            Ok(entries) => println!(
                "✓ file store {} readable ({} entries at the top)",
                f.display(),
                entries.count()
            ),
            Err(e) => {
                println!("✗ file store {}: {e}", f.display());
                ok = false;
            }
        },
        None if a.no_files => {
            println!("· --no-files: files, avatars and custom emoji will be left out")
        }
        None => match db.file_count().await {
            Ok(0) => println!("· no file store given (--files); the database lists no files"),
            Ok(n) => {
                println!(
                    "✗ no file store given, and the database lists {n} files, avatars and \
                     custom emoji: pass --files DIR, or --no-files to import without them"
                );
                ok = false;
            }
            Err(e) => {
                println!("✗ counting files: {e}");
                ok = false;
            }
        },
    }
    ok
}

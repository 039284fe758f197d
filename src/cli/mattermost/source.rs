//! Reaching the workspace: config.json (local or over SSH), the database, the file store.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use transition_matrix::archive::fsutil;
use transition_matrix::mattermost::config::{
    driver_of, is_config_dsn, DataSource, MattermostConfig,
};
use transition_matrix::mattermost::db::{self, MattermostDb};
use transition_matrix::mattermost::export;
use transition_matrix::mattermost::map::store_relative;
use transition_matrix::mattermost::rows::{MmFile, Snapshot};
use transition_matrix::mattermost::server_env::{self, ServerEnv};
use transition_matrix::ssh::{shell_quote, Ssh, SshAuth, SshOptions};
use zeroize::Zeroizing;

use super::{DriverArg, SourceArgs};

/// Where the workspace is: the database, and the file store (local, or on the SSH host).
pub struct Source {
    pub ds: DataSource,
    pub files: Option<PathBuf>,
    /// The session the database forward and remote files go through.
    pub ssh: Option<Ssh>,
    /// What the config said, when one was read (no secrets).
    pub config: Option<String>,
    /// How the config was found, one line each (no secrets).
    pub notes: Vec<String>,
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

/// Mattermost's config: from config.json (local or over `ssh`) or from the database named by
/// a DSN, with the `MM_*` settings of the install's server applied, then (run locally) this
/// command's own. Each step's outcome is added to `notes` for the admin.
async fn discover_config(
    a: &SourceArgs,
    ssh: Option<&Ssh>,
    notes: &mut Vec<String>,
) -> Result<MattermostConfig> {
    let own: Vec<(String, String)> = match ssh {
        Some(_) => Vec::new(),
        None => std::env::vars()
            .filter(|(k, _)| k.starts_with("MM_"))
            .collect(),
    };
    let given = a
        .mattermost_config
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    if let Some(dsn) = given.as_deref().filter(|g| is_config_dsn(g)) {
        notes.push("config read from the database --mattermost-config names".into());
        let text = config_from_database(dsn, ssh).await?;
        return Ok(MattermostConfig::parse(&text, &own)?);
    }
    let path = given.unwrap_or_else(|| DEFAULT_REMOTE_CONFIG.to_owned());
    let mut text = read_config(&path, ssh).await?;
    // The install directory is the parent of config/; the server runs from it.
    let path = match ssh {
        Some(_) => path,
        None => std::fs::canonicalize(&path).map_or(path, |p| p.display().to_string()),
    };
    let install = Path::new(&path)
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| "/".to_owned(), |p| p.display().to_string());
    let server = server_environment(&install, &path, ssh).await;
    notes.push(server.describe(&install));
    // The server's MM_CONFIG says where its config really is (Mattermost: --config, then
    // MM_CONFIG, then config/config.json).
    match server.config_location() {
        Some(dsn) if is_config_dsn(dsn) => {
            notes.push("config read from the database the server's MM_CONFIG names".into());
            text = config_from_database(dsn, ssh).await?;
        }
        Some(file) => {
            let file = Path::new(&install).join(file).display().to_string();
            if file != path {
                notes.push(format!("config read from {file}, the server's MM_CONFIG"));
                text = read_config(&file, ssh).await?;
            }
        }
        None => {}
    }
    let mut env = server.vars().to_vec();
    env.extend(own);
    Ok(MattermostConfig::parse(&text, &env)?)
}

async fn read_config(path: &str, ssh: Option<&Ssh>) -> Result<String> {
    match ssh {
        None => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read Mattermost's config {path}")),
        Some(ssh) => {
            let bytes = ssh.read_file(path).await?;
            String::from_utf8(bytes).with_context(|| format!("{path} is not UTF-8"))
        }
    }
}

/// The `MM_*` settings of the server installed in `install` (see [`server_env`]). Never fails:
/// a lookup that cannot run finds nothing, and says so.
async fn server_environment(install: &str, config: &str, ssh: Option<&Ssh>) -> ServerEnv {
    let script = server_env::script(install, config);
    let out = match ssh {
        // The login shell may not be a POSIX one (fish, csh): the script gets sh.
        Some(ssh) => (ssh.run(&format!("sh -c {}", shell_quote(&script))).await)
            .map(|(_, out, _)| out)
            .ok(),
        None => std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .ok()
            .map(|o| o.stdout),
    };
    // The output holds the server's whole environment, other secrets too: not kept.
    let out = out.map(Zeroizing::new);
    out.map_or(ServerEnv::Failed, |o| server_env::parse(&o))
}

/// The config Mattermost keeps in a database (`dsn`, as seen from its host).
async fn config_from_database(dsn: &str, ssh: Option<&Ssh>) -> Result<String> {
    let mut ds = DataSource::parse(driver_of(dsn), dsn).context("the config database's DSN")?;
    if let Some(ssh) = ssh {
        forward(ssh, &mut ds).await?;
    }
    Ok(db::config_from_database(&ds).await?)
}

/// Points `ds` at a local port forwarded over `ssh` to the database's address on that host.
async fn forward(ssh: &Ssh, ds: &mut DataSource) -> Result<()> {
    if ds.host.starts_with('/') {
        bail!(
            "the database is on a Unix socket ({}); over SSH it needs a TCP address (--data-source)",
            ds.host
        );
    }
    let local = ssh.forward(&ds.host, ds.port).await?;
    ds.host = local.ip().to_string();
    ds.port = local.port();
    Ok(())
}

/// The database and file store, from Mattermost's config (see [`discover_config`]) and the
/// flags, which override every discovered value.
pub async fn open_source(a: &SourceArgs, ssh: Option<Ssh>) -> Result<Source> {
    let mut notes = Vec::new();
    let read_config = a.mattermost_config.is_some() || (ssh.is_some() && a.data_source.is_none());
    let config = match read_config {
        true => Some(discover_config(a, ssh.as_ref(), &mut notes).await?),
        false => None,
    };
    let mut ds = match (&a.data_source, &config) {
        (Some(dsn), _) => {
            let driver = match a.driver {
                Some(DriverArg::Postgres) => "postgres",
                Some(DriverArg::Mysql) => "mysql",
                None => driver_of(dsn),
            };
            DataSource::parse(driver, dsn)?
        }
        (None, Some(c)) => c.data_source.clone(),
        (None, None) => bail!("pass --mattermost-config or --data-source"),
    };
    if let Some(c) = config.as_ref().filter(|c| c.file_driver == "amazons3") {
        if a.files.is_none() && !a.no_files {
            bail!(
                "Mattermost keeps its files in Amazon S3 ({}); this tool reads a directory: copy \
                 the bucket (e.g. `aws s3 sync s3://BUCKET DIR`, or `mc mirror`) and pass --files \
                 DIR/PREFIX, or --no-files to import without files, avatars and custom emoji",
                c.s3_location
            );
        }
    }
    let files = a.files.clone().or_else(|| {
        let c = config.as_ref().filter(|c| c.file_driver != "amazons3")?;
        let dir = PathBuf::from(&c.file_directory);
        // A relative Directory is relative to the server's working directory, which is the
        // parent of its config/ directory.
        if dir.is_absolute() {
            return Some(dir);
        }
        let config_path = a
            .mattermost_config
            .clone()
            .filter(|p| !is_config_dsn(&p.to_string_lossy()))
            .unwrap_or_else(|| DEFAULT_REMOTE_CONFIG.into());
        Some(config_path.parent()?.parent()?.join(dir))
    });
    let described = config.as_ref().map(|c| {
        let from = match &a.mattermost_config {
            Some(p) if is_config_dsn(&p.to_string_lossy()) => "config from its database".into(),
            p => format!(
                "config.json {} parsed",
                p.as_ref()
                    .map_or(DEFAULT_REMOTE_CONFIG.into(), |p| p.display().to_string())
            ),
        };
        format!(
            "{from}: {:?} database {}@{}:{}/{}, files in {}",
            c.data_source.driver,
            c.data_source.user,
            c.data_source.host,
            c.data_source.port,
            c.data_source.database,
            match c.file_driver.as_str() {
                "amazons3" => c.s3_location.clone(),
                _ => c.file_directory.clone(),
            }
        )
    });
    if let Some(ssh) = &ssh {
        forward(ssh, &mut ds).await?;
    }
    Ok(Source {
        ds,
        files,
        ssh,
        config: described,
        notes,
    })
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
    if let Some(c) = &src.config {
        println!("✓ {c}");
    }
    for note in &src.notes {
        println!("· {note}");
    }
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

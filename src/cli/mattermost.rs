//! `mattermost …` commands.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use transition_matrix::archive::{fsutil, Archive};
use transition_matrix::conduit::store::Backend;
use std::sync::mpsc::Sender;

use transition_matrix::conduit::write::{write_as_archived, Archived, WriteOptions, WriteSummary};
use transition_matrix::import::forge::{forge, new_server_key, ForgeOptions, ForgeSummary, Forger};
use transition_matrix::import::model::User;
use transition_matrix::import::synapse::{self, SynapseTarget};
use transition_matrix::matrix::keys::ServerKey;
use transition_matrix::mattermost::config::{DataSource, MattermostConfig};
use transition_matrix::mattermost::db::MattermostDb;
use transition_matrix::mattermost::export;
use transition_matrix::mattermost::map::{
    room_id, store_relative, workspace, ChannelRows, Deleted, MapOptions, Mapper,
};
use transition_matrix::mattermost::rows::{MmFile, Snapshot};
use transition_matrix::progress::Progress;
use transition_matrix::ssh::{Ssh, SshAuth, SshOptions};
use zeroize::Zeroizing;

#[derive(Debug, Subcommand)]
pub enum MattermostCmd {
    /// Import a Mattermost workspace: read its database, forge signed Matrix rooms into an
    /// archive, and (with --conduit-db) write them into a Conduit database. Safe to re-run.
    #[command(after_help = "Examples:\n  \
        transition-matrix mattermost import --mattermost-config /opt/mattermost/config/config.json \\\n      \
        --server-name example.org --archive ./mm-archive --conduit-db /var/lib/matrix-conduit\n  \
        transition-matrix mattermost import --driver postgres \\\n      \
        --data-source 'postgres://mmuser:secret@127.0.0.1:5432/mattermost?sslmode=disable' \\\n      \
        --files /opt/mattermost/data --server-name example.org --archive ./mm-archive")]
    Import(Box<ImportArgs>),
    /// Print an application-service registration for `import --synapse-url` (new random
    /// tokens). Save it where Synapse can read it, list it under `app_service_config_files` in
    /// homeserver.yaml, restart Synapse, and pass its `as_token` to the import.
    #[command(after_help = "Example:\n  \
        transition-matrix mattermost registration --server-name example.org --out /etc/matrix-synapse/tm-import.yaml")]
    Registration {
        /// Synapse's server name.
        #[arg(long)]
        server_name: String,
        /// Write it to this file (created 0600: it holds the tokens) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Where the Mattermost database is.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Mattermost's config.json (database and file store are read from it; MM_* environment
    /// variables override it as they do for the server).
    #[arg(long, value_name = "PATH")]
    pub mattermost_config: Option<PathBuf>,
    /// The database, in either of Mattermost's DataSource forms (overrides config.json).
    #[arg(
        long,
        value_name = "DSN",
        env = "TM_MM_DATA_SOURCE",
        hide_env_values = true
    )]
    pub data_source: Option<String>,
    /// The database driver of --data-source.
    #[arg(long, value_enum, default_value = "postgres")]
    pub driver: DriverArg,
    /// The file store (`FileSettings.Directory`; overrides config.json).
    #[arg(long, value_name = "DIR")]
    pub files: Option<PathBuf>,
    /// Reach the Mattermost host over SSH (`user@host[:port]`): --mattermost-config and --files
    /// are paths there, the database is reached through a port forward.
    #[arg(long, value_name = "USER@HOST[:PORT]")]
    pub ssh: Option<String>,
    /// SSH private key (default: the SSH agent, unless --ssh-password-env is given).
    #[arg(long, value_name = "PATH", requires = "ssh")]
    pub ssh_key: Option<PathBuf>,
    /// Environment variable holding the SSH password (or the key's passphrase with --ssh-key).
    #[arg(long, value_name = "VAR", requires = "ssh")]
    pub ssh_password_env: Option<String>,
    /// known_hosts file the host key must be in [default: ~/.ssh/known_hosts].
    #[arg(long, value_name = "PATH", requires = "ssh")]
    pub ssh_known_hosts: Option<PathBuf>,
    /// Read an `mmctl export` zip instead of the database (only live content: no edit
    /// history, deleted posts or membership history; its files come from the zip).
    #[arg(long, value_name = "ZIP", conflicts_with_all = ["mattermost_config", "data_source"])]
    pub export: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DriverArg {
    Postgres,
    Mysql,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DeletedArg {
    /// Leave deleted posts out.
    Omit,
    /// Import them and redact them at their deletion time.
    Redact,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The Matrix server name the rooms and users belong to.
    #[arg(long)]
    pub server_name: String,
    /// Where the forged archive goes (also the import's state: a re-run resumes from it).
    #[arg(long)]
    pub archive: PathBuf,
    /// The server's signing key (Synapse's format, e.g. the one a Synapse migration moved).
    /// Default: the archive's key, or a new one.
    #[arg(long, value_name = "PATH")]
    pub signing_key: Option<PathBuf>,
    /// Write the result into this Conduit database (Conduit stopped).
    #[arg(long, value_name = "PATH")]
    pub conduit_db: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: Backend,
    /// Send the result into this running Synapse instead (client API, as an application
    /// service: `mattermost registration` makes its registration).
    #[arg(long, value_name = "URL", conflicts_with = "conduit_db")]
    pub synapse_url: Option<String>,
    /// Environment variable holding the application service's `as_token`.
    #[arg(long, value_name = "VAR", default_value = "TM_SYNAPSE_AS_TOKEN")]
    pub as_token_env: String,
    /// What to do with deleted posts.
    #[arg(long, value_enum, default_value = "omit")]
    pub deleted: DeletedArg,
    /// JSON file mapping Mattermost usernames to Matrix localparts (or user ids), e.g.
    /// {"jdoe": "john.doe"}; everyone else keeps their username.
    #[arg(long, value_name = "FILE")]
    pub user_map: Option<PathBuf>,
    /// Room version of the new rooms.
    #[arg(long, default_value = "10")]
    pub room_version: String,
}

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
fn meta_paths(snap: &Snapshot) -> Vec<String> {
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
fn file_paths(files: &[MmFile]) -> Vec<String> {
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
async fn fetch_remote_files(
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

pub async fn run(cmd: MattermostCmd) -> Result<i32> {
    match cmd {
        MattermostCmd::Import(a) => import(*a).await,
        MattermostCmd::Registration { server_name, out } => {
            let yaml = synapse::new_registration(&server_name)?;
            match out {
                Some(path) => {
                    use std::io::Write as _;
                    fsutil::create_file(&path, true)?
                        .write_all(yaml.as_bytes())
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    println!(
                        "wrote {} (add it to app_service_config_files)",
                        path.display()
                    );
                }
                None => print!("{yaml}"),
            }
            Ok(0)
        }
    }
}

fn server_key(a: &ImportArgs, archive: &Archive) -> Result<ServerKey> {
    let in_archive = archive.keys_dir().join("signing.key");
    if let Some(p) = &a.signing_key {
        return Ok(ServerKey::read_synapse(p)?.remove(0));
    }
    if in_archive.is_file() {
        return Ok(ServerKey::read_synapse(&in_archive)?.remove(0));
    }
    Ok(new_server_key(&archive.keys_dir())?)
}

fn map_options(a: &ImportArgs, files: Option<PathBuf>) -> Result<MapOptions> {
    let user_map = match &a.user_map {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: expected a JSON object of username → localpart",
                    p.display()
                )
            })?
        }
        None => Default::default(),
    };
    Ok(MapOptions {
        user_map,
        server_name: a.server_name.clone(),
        files,
        deleted: match a.deleted {
            DeletedArg::Omit => Deleted::Omit,
            DeletedArg::Redact => Deleted::Redact,
        },
    })
}

async fn import(a: ImportArgs) -> Result<i32> {
    let archive = Archive::create(&a.archive)?;
    let key = server_key(&a, &archive)?;
    let forge_options = ForgeOptions {
        server_name: a.server_name.clone(),
        room_version: a.room_version.clone(),
    };
    let mut writer = None;
    let forged = match &a.source.export {
        // An export is read whole (it is one zip); then mapped and forged at once.
        Some(zip) => (|| {
            let files = a.archive.join("mattermost-files");
            eprintln!("reading the bulk export {} …", zip.display());
            let snap = export::read(zip, &files)?;
            let ws = workspace(&snap, &map_options(&a, Some(files))?);
            drop(snap);
            writer = ConduitWriter::start(&a, &archive, &key, &ws.users)?;
            let announce = writer.as_ref().map(|w| w.to.clone());
            Ok(forge(&ws, &key, &archive, &forge_options, &Progress::new(), announce)?)
        })(),
        None => import_database(&a, &archive, &key, &forge_options, &mut writer).await,
    };
    // The writer's error explains a forge that stopped because the writer did.
    let written = writer.map(ConduitWriter::wait).transpose()?;
    let s = forged?;
    println!(
        "forged {} rooms ({} already in the archive), {} events, {} users, {} media; {} joins added where the history lacked them; {} items left out (import-report.json)",
        s.rooms, s.rooms_already_done, s.events, s.users, s.media, s.joins_added, s.skipped
    );
    if let (Some(w), Some(db_path)) = (written, &a.conduit_db) {
        print_written(&w, db_path);
    } else if let Some(url) = &a.synapse_url {
        replay_into_synapse(&a.archive, url, &a.as_token_env).await?;
    } else {
        println!(
            "next: transition-matrix conduit write --archive {} --database <conduit database_path>",
            a.archive.display()
        );
    }
    Ok(0)
}

/// `--conduit-db`: the event writer on its own thread, writing each room as soon as the forge
/// completes it in the archive (forging and writing overlap; the archive stays the record that
/// `conduit verify` and a resumed run read).
struct ConduitWriter {
    to: Sender<Archived>,
    thread: std::thread::JoinHandle<transition_matrix::error::Result<WriteSummary>>,
}

impl ConduitWriter {
    /// Starts the writer when the import has `--conduit-db`.
    fn start(
        a: &ImportArgs,
        archive: &Archive,
        key: &ServerKey,
        users: &[User],
    ) -> Result<Option<Self>> {
        let Some(database) = a.conduit_db.clone() else {
            return Ok(None);
        };
        let archive = archive.clone();
        let key = ServerKey::parse_synapse(&key.synapse_line(), &archive.keys_dir())?.remove(0);
        let admins = (users.iter())
            .filter(|u| u.admin && !u.deactivated)
            .map(|u| (u.user_id.clone(), u.displayname.clone()))
            .collect();
        let options = WriteOptions::new(a.backend);
        let server_name = a.server_name.clone();
        let (to, steps) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("conduit-writer".into())
            .spawn(move || {
                write_as_archived(&archive, &database, &options, &server_name, &key, admins, steps)
            })
            .context("cannot start the database writer")?;
        Ok(Some(ConduitWriter { to, thread }))
    }

    /// Waits for the writer (it ends when told the archive is complete, or when the import
    /// stops: then the database stays marked unfinished, and a re-run resumes it).
    fn wait(self) -> Result<WriteSummary> {
        drop(self.to);
        let written = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the database writer panicked"))?;
        Ok(written?)
    }
}

/// The database path: users, teams and memberships first, then one channel at a time (its
/// rows read, mapped, forged and dropped), so memory follows the largest channel, not the
/// workspace. Channels already in the archive are not read again.
async fn import_database(
    a: &ImportArgs,
    archive: &Archive,
    key: &ServerKey,
    forge_options: &ForgeOptions,
    writer: &mut Option<ConduitWriter>,
) -> Result<ForgeSummary> {
    let src = open_source(&a.source, connect_ssh(&a.source).await?).await?;
    let ds = &src.ds;
    if let (Some(f), None) = (&src.files, &src.ssh) {
        if !f.is_dir() {
            bail!(
                "the file store {} is not a directory (pass --files)",
                f.display()
            );
        }
    }
    eprintln!(
        "reading Mattermost ({:?} {}@{}:{}/{}) …",
        ds.driver, ds.user, ds.host, ds.port, ds.database
    );
    let db = MattermostDb::connect(ds).await?;
    let meta = db.snapshot().await?;
    eprintln!(
        "{} users, {} teams, {} channels",
        meta.users.len(),
        meta.teams.len(),
        meta.channels.len()
    );
    // Over SSH, files are copied next to the archive as they are needed.
    let remote = match (&src.ssh, &src.files) {
        (Some(ssh), Some(remote)) => {
            Some((ssh, remote.clone(), a.archive.join("mattermost-files")))
        }
        _ => None,
    };
    let files = match &remote {
        Some((ssh, remote, local)) => {
            fetch_remote_files(ssh, remote, meta_paths(&meta), local).await?;
            Some(local.clone())
        }
        None => src.files.clone(),
    };
    let mut mapper = Mapper::new(&meta, &map_options(a, files)?);
    let mut forger = Forger::new(&mapper.ws.users, key, archive, forge_options)?;
    *writer = ConduitWriter::start(a, archive, key, &mapper.ws.users)?;
    if let Some(w) = writer {
        forger.announce_to(w.to.clone());
    }
    for m in std::mem::take(&mut mapper.ws.media) {
        forger.media(&m)?;
    }
    for space in std::mem::take(&mut mapper.ws.rooms) {
        forger.room(&space)?;
    }
    // Reading and mapping the next channel overlaps with forging the previous ones (signing is
    // most of the work), one room per core in flight; results are recorded in channel order.
    let in_flight = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut pending = std::collections::VecDeque::new();
    let bar = Progress::new().bar("channels", meta.channels.len() as u64);
    for c in &meta.channels {
        let rows = if forger.is_done(&room_id(&c.id, &a.server_name)) {
            ChannelRows::default()
        } else {
            db.channel_rows(&c.id).await?
        };
        if let Some((ssh, remote, local)) = &remote {
            fetch_remote_files(ssh, remote, file_paths(&rows.files), local).await?;
        }
        if let Some(room) = mapper.channel(c, &rows) {
            for m in std::mem::take(&mut mapper.ws.media) {
                forger.media(&m)?;
            }
            let job = forger.job(room);
            pending.push_back(tokio::task::spawn_blocking(move || job.run()));
        }
        while pending.len() >= in_flight {
            let (room, forged) = pending.pop_front().expect("not empty").await??;
            forger.record(&room, forged)?;
            bar.inc(1);
        }
    }
    while let Some(job) = pending.pop_front() {
        let (room, forged) = job.await??;
        forger.record(&room, forged)?;
        bar.inc(1);
    }
    bar.finish();
    Ok(forger.finish(
        &mapper.ws.users,
        &mapper.ws.skipped,
        "mattermost",
        &meta.version,
    )?)
}

async fn replay_into_synapse(archive: &Path, url: &str, token_env: &str) -> Result<()> {
    let token = Zeroizing::new(std::env::var(token_env).with_context(|| {
        format!(
            "set {token_env} to the application service's as_token (see `mattermost registration`)"
        )
    })?);
    let archive = Archive::open(archive)?;
    let target = SynapseTarget::new(url, &token)?;
    let t0 = std::time::Instant::now();
    let s = synapse::replay(&archive, &target, &Progress::new()).await?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "sent to Synapse: {} users registered ({} existed), {} media, {} rooms created, {} events in {:.1} s ({:.0} events/s; {} sent before)",
        s.users_registered,
        s.users_existing,
        s.media,
        s.rooms_created,
        s.events_sent,
        secs,
        s.events_sent as f64 / secs.max(1e-9),
        s.events_already_sent
    );
    for w in &s.warnings {
        println!("warning: {w}");
    }
    Ok(())
}

fn print_written(s: &WriteSummary, database: &Path) {
    println!(
        "wrote {} users ({} already there), {} rooms, {} events ({} already there), {} media into {}",
        s.users, s.users_kept, s.rooms, s.events, s.events_already_there, s.media, database.display()
    );
    println!(
        "Passwords: Mattermost's bcrypt hashes were copied; Conduit checks them with \
         patches/conduit-bcrypt-login.patch. Without it, set one per user in the admin room \
         (`@conduit:{}: reset-password <user>`).",
        s.server_name
    );
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
        None => println!("· no file store given (--files): files and avatars will be left out"),
    }
    ok
}

//! `mattermost …` commands.

mod channels;
mod same_run;
mod source;
mod steps;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use transition_matrix::archive::{fsutil, Archive};
use transition_matrix::conduit::store::Backend;
use transition_matrix::conduit::write::{write_as_archived, Archived, WriteOptions, WriteSummary};
use transition_matrix::import::forge::new_server_key;
use transition_matrix::import::model::User;
use transition_matrix::import::synapse::{self, SynapseTarget};
use transition_matrix::matrix::keys::ServerKey;
use transition_matrix::mattermost::map::{Deleted, MapOptions};
use transition_matrix::progress::Progress;
use zeroize::Zeroizing;

pub use source::diagnose;
use steps::{Step, Target};

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
    /// Run the import's export into the archive in steps: `assets` (users, pictures, emoji,
    /// teams as spaces, id mapping files), `memberships` (who is in which room), `messages`
    /// (every channel's history; completes the archive), or `all`. Each step resumes and a
    /// re-run adds nothing; `status --archive` shows the steps done. Then write the archive
    /// with `conduit write` (or run `mattermost import`, which does every step left).
    #[command(after_help = "Examples:\n  \
        transition-matrix mattermost export assets --mattermost-config /opt/mattermost/config/config.json \\\n      \
        --server-name example.org --archive ./mm-archive\n  \
        transition-matrix mattermost export memberships --mattermost-config … --server-name example.org --archive ./mm-archive\n  \
        transition-matrix mattermost export messages --mattermost-config … --server-name example.org --archive ./mm-archive\n  \
        transition-matrix conduit write --archive ./mm-archive --database /var/lib/matrix-conduit")]
    Export(Box<ExportArgs>),
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
    /// Mattermost's config.json (database and file store are read from it), or the database
    /// DSN Mattermost keeps its config in (its MM_CONFIG). The MM_* settings of the running
    /// server of that install (its process environment, or its systemd unit), then this
    /// command's own MM_* variables, override it as they do for the server.
    /// (A DSN with a password is better passed in TM_MATTERMOST_CONFIG than on the command
    /// line, where `ps` shows it.)
    #[arg(
        long,
        value_name = "PATH|DSN",
        env = "TM_MATTERMOST_CONFIG",
        hide_env_values = true
    )]
    pub mattermost_config: Option<PathBuf>,
    /// The database, in either of Mattermost's DataSource forms (overrides config.json).
    #[arg(
        long,
        value_name = "DSN",
        env = "TM_MM_DATA_SOURCE",
        hide_env_values = true
    )]
    pub data_source: Option<String>,
    /// The database driver of --data-source [default: from its form: `user:pass@tcp(host)/db`
    /// is MySQL's, a URL or key=value DSN PostgreSQL's].
    #[arg(long, value_enum)]
    pub driver: Option<DriverArg>,
    /// The file store (`FileSettings.Directory`; overrides config.json).
    #[arg(long, value_name = "DIR")]
    pub files: Option<PathBuf>,
    /// Import without the file store: attachments, avatars and custom emoji are left out (and
    /// reported). Without it, an import whose database lists files but has no store stops.
    #[arg(long, conflicts_with = "files")]
    pub no_files: bool,
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

/// What every import and export step reads and forges with.
#[derive(Debug, Args)]
pub struct ForgeArgs {
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
    /// What to do with deleted posts.
    #[arg(long, value_enum, default_value = "omit")]
    pub deleted: DeletedArg,
    /// JSON file mapping Mattermost usernames to Matrix localparts (or user ids), e.g.
    /// {"jdoe": "john.doe"}; everyone else keeps their username.
    #[arg(long, value_name = "FILE")]
    pub user_map: Option<PathBuf>,
    /// Send the posts of Mattermost users whose Matrix id is an account the Conduit database
    /// (--conduit-db) already has as that account. Without it, such an import stops before it
    /// forges anything and names them: map them elsewhere with --user-map, or pass this.
    #[arg(long)]
    pub merge_existing_accounts: bool,
    /// Give every active account that has no password of its own (all of a bulk export's,
    /// single sign-on accounts of a database) a generated one, listed in FILE (created 0600,
    /// `<user id><TAB><password>` lines, never printed). A re-run reads FILE and keeps the
    /// passwords in it.
    #[arg(long, value_name = "FILE")]
    pub initial_passwords: Option<PathBuf>,
    /// Room version of the new rooms.
    #[arg(long, default_value = "10")]
    pub room_version: String,
    /// Posts read from the database at a time in each channel: the memory a channel takes
    /// follows this, not the channel's size (up to four pages of it are in memory at once).
    #[arg(long, default_value_t = 1_000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub page_posts: u32,
    /// Post ids a room keeps in memory before older ones move to a temporary database on disk
    /// (tests set it low to make rooms spill).
    #[arg(long, hide = true, default_value_t = transition_matrix::import::id_table::WINDOW as u64,
          value_parser = clap::value_parser!(u64).range(2..))]
    pub ids_in_memory: u64,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub forge: ForgeArgs,
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
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Which step: assets, memberships, messages, or all.
    #[arg(value_enum)]
    pub step: Step,
    #[command(flatten)]
    pub forge: ForgeArgs,
}

pub async fn run(cmd: MattermostCmd) -> Result<i32> {
    match cmd {
        MattermostCmd::Import(a) => import(*a).await,
        MattermostCmd::Export(a) => export(*a).await,
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

/// The key to sign with: `--signing-key`; else the archive's (an earlier run's); else the key
/// of the Conduit database written into, as a server already running on it (after a Synapse
/// migration, say) publishes that key and no other; else a new one, kept in the archive.
fn server_key(
    a: &ForgeArgs,
    archive: &Archive,
    target: Option<(&Path, Backend)>,
) -> Result<ServerKey> {
    let in_archive = archive.keys_dir().join("signing.key");
    let earlier = (in_archive.is_file())
        .then(|| ServerKey::read_synapse(&in_archive).map(|mut k| k.remove(0)))
        .transpose()?;
    if let Some(p) = &a.signing_key {
        let key = ServerKey::read_synapse(p)?.remove(0);
        if let Some(earlier) = earlier.filter(|e| e.synapse_line() != key.synapse_line()) {
            // The rooms forged so far carry the archive's key; a second key would leave them
            // signed by a key the server no longer has.
            anyhow::bail!(
                "{} was forged with {}, not the key of --signing-key ({}): use a new --archive \
                 for another key",
                a.archive.display(),
                earlier.key_id(),
                key.key_id()
            );
        }
        return Ok(key);
    }
    if let Some(key) = earlier {
        return Ok(key);
    }
    if let Some(key) = target.map(database_key).transpose()?.flatten() {
        fsutil::write_atomic(&in_archive, key.synapse_line().as_bytes(), true)?;
        eprintln!(
            "signing with the server key of the database written into ({})",
            key.key_id()
        );
        return Ok(key);
    }
    Ok(new_server_key(&archive.keys_dir())?)
}

/// The accounts the target database had before the first run into this archive (see
/// [`MapOptions::existing_users`]), kept in the archive so a resumed run reports the same.
const EXISTING_ACCOUNTS: &str = "existing-accounts.json";

/// Records the accounts of an existing target database before this archive forges anything
/// (later, the database also holds the accounts this import wrote). A record from a run that
/// forged nothing is taken again: --conduit-db may have changed since.
fn record_existing_accounts(
    archive: &Archive,
    target: (&Path, Backend),
    begun: bool,
) -> Result<()> {
    let path = archive.root().join(EXISTING_ACCOUNTS);
    if begun {
        return Ok(());
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => {}
    }
    let Some(mut db) = existing_database(target)? else {
        return Ok(());
    };
    let accounts = db.scan_prefix("userid_password", b"")?;
    let users: Vec<String> = (accounts.into_iter())
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .collect();
    fsutil::write_atomic(&path, serde_json::to_string(&users)?.as_bytes(), false)?;
    Ok(())
}

/// The Conduit database written into, opened when it exists already (and Conduit does not
/// have it open).
fn existing_database(
    (database, backend): (&Path, Backend),
) -> Result<Option<Box<dyn transition_matrix::conduit::store::Store + Send>>> {
    let exists = match backend {
        Backend::Rocksdb => database.join("CURRENT").is_file(),
        Backend::Sqlite => database.join("conduit.db").is_file(),
    };
    if !exists {
        return Ok(None);
    }
    transition_matrix::conduit::store::refuse_if_open(database)?;
    Ok(Some(backend.open(database)?))
}

/// The server key of an existing Conduit database, if it has one.
fn database_key(target: (&Path, Backend)) -> Result<Option<ServerKey>> {
    let Some(mut db) = existing_database(target)? else {
        return Ok(None);
    };
    let stored = db.get("global", b"keypair")?;
    Ok(stored
        .map(|v| ServerKey::from_conduit_keypair(&v))
        .transpose()?)
}

/// The `--user-map` file: Mattermost username → Matrix localpart (or user id).
fn user_map(a: &ForgeArgs) -> Result<HashMap<String, String>> {
    let Some(p) = &a.user_map else {
        return Ok(Default::default());
    };
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON object of username → localpart",
            p.display()
        )
    })
}

fn map_options(a: &ForgeArgs, files: Option<PathBuf>) -> Result<MapOptions> {
    let user_map = user_map(a)?;
    let existing = a.archive.join(EXISTING_ACCOUNTS);
    let existing_users = match existing.is_file() {
        true => fsutil::read_json(&existing)?,
        false => Default::default(),
    };
    Ok(MapOptions {
        user_map,
        existing_users,
        server_name: a.server_name.clone(),
        files,
        deleted: match a.deleted {
            DeletedArg::Omit => Deleted::Omit,
            DeletedArg::Redact => Deleted::Redact,
        },
    })
}

async fn import(a: ImportArgs) -> Result<i32> {
    let archive = Archive::create(&a.forge.archive)?;
    let begun = same_run::begun(&archive)?;
    same_run::check(&a.forge, &archive, begun, true)?;
    let target_db = a.conduit_db.as_deref().map(|d| (d, a.backend));
    if let Some(t) = target_db {
        record_existing_accounts(&archive, t, begun)?;
    }
    let key = server_key(&a.forge, &archive, target_db)?;
    let target = a.conduit_db.clone().map(|database| Target {
        database,
        backend: a.backend,
    });
    let mut writer = None;
    let forged = steps::run(&a.forge, &archive, &key, Step::All, target, &mut writer).await;
    // The writer's error explains a forge that stopped because the writer did.
    let written = writer.map(ConduitWriter::wait).transpose()?;
    let s = forged?.context("the messages step did not run")?;
    println!(
        "forged {} rooms ({} already in the archive), {} events, {} users, {} media; {} joins added where the history lacked them; {} items left out (import-report.json)",
        s.rooms, s.rooms_already_done, s.events, s.users, s.media, s.joins_added, s.skipped
    );
    if let (Some(w), Some(db_path)) = (written, &a.conduit_db) {
        print_written(&w, db_path);
    } else if let Some(url) = &a.synapse_url {
        replay_into_synapse(&a.forge.archive, url, &a.as_token_env).await?;
    } else {
        println!(
            "next: transition-matrix conduit write --archive {} --database <conduit database_path>",
            a.forge.archive.display()
        );
    }
    Ok(0)
}

async fn export(a: ExportArgs) -> Result<i32> {
    let archive = Archive::create(&a.forge.archive)?;
    let begun = same_run::begun(&archive)?;
    same_run::check(&a.forge, &archive, begun, a.step.runs(Step::Messages))?;
    let key = server_key(&a.forge, &archive, None)?;
    if let Some(s) = steps::run(&a.forge, &archive, &key, a.step, None, &mut None).await? {
        println!(
            "archive complete: {} rooms forged ({} already there), {} events, {} users, {} media; {} items left out (import-report.json)",
            s.rooms, s.rooms_already_done, s.events, s.users, s.media, s.skipped
        );
        println!(
            "next: transition-matrix conduit write --archive {} --database <conduit database_path>",
            a.forge.archive.display()
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
    /// Starts the writer into `target`.
    fn start(
        target: Target,
        server_name: &str,
        archive: &Archive,
        key: &ServerKey,
        users: &[User],
    ) -> Result<Self> {
        let Target { database, backend } = target;
        let archive = archive.clone();
        let key = ServerKey::parse_synapse(&key.synapse_line(), &archive.keys_dir())?.remove(0);
        let admins = (users.iter())
            .filter(|u| u.admin && !u.deactivated)
            .map(|u| (u.user_id.clone(), u.displayname.clone()))
            .collect();
        let options = WriteOptions::new(backend);
        let server_name = server_name.to_owned();
        let (to, steps) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("conduit-writer".into())
            .spawn(move || {
                write_as_archived(
                    &archive,
                    &database,
                    &options,
                    &server_name,
                    &key,
                    admins,
                    steps,
                )
            })
            .context("cannot start the database writer")?;
        Ok(ConduitWriter { to, thread })
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
        "{}",
        crate::cli::conduit::passwords_note("mattermost", &s.server_name)
    );
}

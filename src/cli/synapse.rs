//! `synapse …` commands.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use transition_matrix::archive::Archive;
use transition_matrix::config::{secret_from_env, Config};
use transition_matrix::synapse::dump::{self, DumpOptions};
use transition_matrix::synapse::{Source, SynapseSettings};

#[derive(Debug, Subcommand)]
pub enum SynapseCmd {
    /// Dump a live Synapse into an archive (resumable; re-running continues where it stopped).
    #[command(after_help = "Examples:\n  \
        SYNAPSE_ADMIN_TOKEN=syt_… transition-matrix synapse dump all --synapse-url http://127.0.0.1:8008 \\\n      \
        --homeserver-yaml /etc/synapse/homeserver.yaml --admin-token-env SYNAPSE_ADMIN_TOKEN \\\n      \
        --synapse-db /var/lib/synapse/homeserver.db --archive ./archive\n  \
        transition-matrix -c tm.toml synapse dump rooms --room '!abc:example.org'\n  \
        transition-matrix -c tm.toml synapse dump users --user @alice:example.org --refresh")]
    Dump(DumpArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum What {
    Users,
    Rooms,
    Media,
    Keys,
    All,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// What to dump.
    #[arg(value_enum, default_value = "all")]
    pub what: What,
    /// Only this user (with `users`).
    #[arg(long)]
    pub user: Option<String>,
    /// Only this room (with `rooms`).
    #[arg(long)]
    pub room: Option<String>,
    /// Redo items the checkpoint already has.
    #[arg(long)]
    pub refresh: bool,
    /// The archive directory (created if missing).
    #[arg(long)]
    pub archive: Option<PathBuf>,
    #[command(flatten)]
    pub synapse: SynapseArgs,
}

/// How to reach Synapse; every flag overrides the config file's `[synapse]` value.
#[derive(Debug, Clone, Args)]
pub struct SynapseArgs {
    /// Base URL of a listener serving the client and admin APIs.
    #[arg(long)]
    pub synapse_url: Option<String>,
    /// Base URL of a listener with the `federation` resource (default: --synapse-url).
    #[arg(long)]
    pub federation_url: Option<String>,
    /// The server name (default: from homeserver.yaml or the admin's user id).
    #[arg(long)]
    pub server_name: Option<String>,
    /// Synapse's homeserver.yaml (signing key path, old keys, password pepper).
    #[arg(long)]
    pub homeserver_yaml: Option<PathBuf>,
    /// Synapse's signing key file (overrides homeserver.yaml's signing_key_path).
    #[arg(long)]
    pub signing_key: Option<PathBuf>,
    /// Admin user id, for a password login.
    #[arg(long)]
    pub admin_user: Option<String>,
    /// Name of the env var holding the admin password.
    #[arg(long)]
    pub admin_password_env: Option<String>,
    /// Name of the env var holding an admin access token.
    #[arg(long)]
    pub admin_token_env: Option<String>,
    /// Synapse's database, read-only: SQLite path or postgres:// URL.
    #[arg(long)]
    pub synapse_db: Option<String>,
    /// Name of the env var holding the database URL.
    #[arg(long)]
    pub synapse_db_env: Option<String>,
    /// How many rooms / users / media items at once.
    #[arg(long)]
    pub concurrency: Option<usize>,
}

impl SynapseArgs {
    /// Merges flags over the config file and reads secrets from the environment.
    pub fn resolve(&self, config: &Config) -> Result<SynapseSettings> {
        let c = &config.synapse;
        let pick =
            |flag: &Option<String>, file: &Option<String>| flag.clone().or_else(|| file.clone());
        let pw_env = pick(&self.admin_password_env, &c.admin_password_env);
        let tok_env = pick(&self.admin_token_env, &c.admin_token_env);
        let db_env = pick(&self.synapse_db_env, &c.database_env);
        Ok(SynapseSettings {
            url: pick(&self.synapse_url, &c.url),
            federation_url: pick(&self.federation_url, &c.federation_url),
            server_name: pick(&self.server_name, &c.server_name),
            homeserver_yaml: self
                .homeserver_yaml
                .clone()
                .or_else(|| c.homeserver_yaml.clone()),
            signing_key: self.signing_key.clone().or_else(|| c.signing_key.clone()),
            admin_user: pick(&self.admin_user, &c.admin_user),
            admin_password: secret_from_env("admin_password_env", pw_env.as_deref())?,
            admin_token: secret_from_env("admin_token_env", tok_env.as_deref())?,
            database: match secret_from_env("database_env", db_env.as_deref())? {
                Some(url) => Some(url),
                None => pick(&self.synapse_db, &c.database),
            },
            concurrency: self.concurrency.or(c.concurrency).unwrap_or(4),
        })
    }
}

pub async fn run(cmd: SynapseCmd, config: &Config) -> Result<i32> {
    match cmd {
        SynapseCmd::Dump(args) => dump_cmd(args, config).await,
    }
}

async fn dump_cmd(args: DumpArgs, config: &Config) -> Result<i32> {
    let settings = args.synapse.resolve(config)?;
    let archive_path = args
        .archive
        .clone()
        .or_else(|| config.archive.path.clone())
        .context("no archive directory: pass --archive or set [archive] path")?;
    let all = matches!(args.what, What::All);
    let opts = DumpOptions {
        users: all || matches!(args.what, What::Users),
        rooms: all || matches!(args.what, What::Rooms),
        media: all || matches!(args.what, What::Media),
        keys: all || matches!(args.what, What::Keys),
        only_user: args.user.clone(),
        only_room: args.room.clone(),
        refresh: args.refresh,
    };
    let mut source = Source::connect(&settings).await?;
    tracing::info!(server = %source.server_name, version = %source.version, "connected to Synapse");
    let archive = Archive::create(&archive_path)?;
    let result = dump::run(&mut source, &archive, &opts).await;
    source.close().await;
    let summary = result?;
    let m = summary.manifest.as_ref().expect("run sets the manifest");
    let list = |m: &std::collections::BTreeMap<&str, u64>| {
        if m.is_empty() {
            "nothing".to_owned()
        } else {
            m.iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    println!(
        "dumped {}; already done: {}",
        list(&summary.dumped),
        list(&summary.skipped)
    );
    println!(
        "archive {}: {} users, {} rooms, {} events, {} media ({} bytes), {} key backup sessions",
        archive_path.display(),
        m.counts.users,
        m.counts.rooms,
        m.counts.events,
        m.counts.media,
        m.counts.media_bytes,
        m.counts.key_backup_sessions
    );
    if !summary.failed.is_empty() {
        eprintln!(
            "{} items failed (run again to retry them):",
            summary.failed.len()
        );
        for f in &summary.failed {
            eprintln!("  {f}");
        }
        return Ok(2);
    }
    if m.errors > 0 {
        eprintln!(
            "{} problems were found and kept out of the archive: see {}",
            m.errors,
            archive.report_path().display()
        );
        return Ok(3);
    }
    Ok(0)
}

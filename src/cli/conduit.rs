//! `conduit …` commands.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use transition_matrix::archive::{fsutil, Archive, Manifest};
use transition_matrix::conduit::store::{
    refuse_if_open, rocksdb::RocksStore, sqlite::SqliteStore, Backend,
};
use transition_matrix::conduit::verify::verify;
use transition_matrix::conduit::write::{write_archive, WriteOptions};
use transition_matrix::config::Config;
use transition_matrix::matrix::keys::ServerKey;

#[derive(Debug, Subcommand)]
pub enum ConduitCmd {
    /// Write an archive into a Conduit v0.10.12 database (Conduit stopped; safe to re-run).
    #[command(
        after_help = "Example:\n  transition-matrix conduit write --archive ./archive --database /var/lib/matrix-conduit --backend sqlite"
    )]
    Write(WriteArgs),
    /// Check a Conduit database's invariants with the project's own reader.
    #[command(
        after_help = "Example:\n  transition-matrix conduit verify --database /var/lib/matrix-conduit --backend sqlite --archive ./archive"
    )]
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    /// The archive written by `synapse dump`.
    #[arg(long)]
    pub archive: Option<PathBuf>,
    /// Conduit's `database_path`.
    #[arg(long)]
    pub database: PathBuf,
    /// Conduit's `database_backend`.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: Backend,
    /// Conduit's media directory (`[global.media] path`), if not `<database>/media`.
    #[arg(long)]
    pub media_path: Option<PathBuf>,
    /// Transition mode: write only the most recent N events of each room (with all state and
    /// auth chains); `transition-matrix proxy` serves older history when Conduit asks for it.
    #[arg(long, value_name = "N")]
    pub recent: Option<u64>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Conduit's `database_path`.
    #[arg(long)]
    pub database: PathBuf,
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: Backend,
    /// The archive it was written from (to check the server key).
    #[arg(long)]
    pub archive: Option<PathBuf>,
    /// Conduit's media directory, if not `<database>/media`.
    #[arg(long)]
    pub media_path: Option<PathBuf>,
}

pub fn run(cmd: ConduitCmd, config: &Config) -> Result<i32> {
    match cmd {
        ConduitCmd::Write(a) => {
            let path = a
                .archive
                .or_else(|| config.archive.path.clone())
                .context("pass --archive")?;
            let archive = Archive::open(&path)?;
            let options = WriteOptions {
                media_dir: a.media_path.clone(),
                recent: a.recent,
                ..WriteOptions::new(a.backend)
            };
            let manifest: Manifest = fsutil::read_json(&archive.manifest_path())?;
            let s = write_archive(&archive, &a.database, &options)?;
            println!(
                "wrote {} users ({} already there, kept as they are), {} rooms, {} events ({} already there), {} state snapshots, {} state resolutions, {} media",
                s.users, s.users_kept, s.rooms, s.events, s.events_already_there, s.state_snapshots, s.state_resolutions, s.media
            );
            if s.signatures > 0 {
                println!(
                    "{} signatures of verified contacts (users' signatures on each other's keys)",
                    s.signatures
                );
            }
            if s.left_to_backfill > 0 {
                println!(
                    "{} older events left to the backfill proxy: run `transition-matrix proxy` and give Conduit \
                     patches/conduit-backfill-proxy.patch with backfill_proxy = \"http://127.0.0.1:8449\"",
                    s.left_to_backfill
                );
            }
            if let Some(room) = &s.admin_room {
                println!("created the admin room {room} (#admins:{})", s.server_name);
            }
            if !s.admins.is_empty() {
                let whose = match manifest.source.kind.as_str() {
                    "mattermost" => "Mattermost's system admins",
                    _ => "Synapse's server admins",
                };
                println!("admins ({whose}): {}", s.admins.join(", "));
            }
            for w in &s.warnings {
                println!("! {w}");
            }
            println!("\nconduit.toml:\n  server_name = \"{}\"\n  database_backend = \"{}\"\n  database_path = \"{}\"",
                s.server_name, match a.backend { Backend::Sqlite => "sqlite", Backend::Rocksdb => "rocksdb" }, a.database.display());
            if let Some(m) = &a.media_path {
                println!("  [global.media]\n  path = \"{}\"", m.display());
            }
            println!(
                "\n{}",
                passwords_note(&manifest.source.kind, &s.server_name)
            );
            Ok(0)
        }
        ConduitCmd::Verify(a) => {
            refuse_if_open(&a.database)?;
            let public = match &a.archive {
                Some(p) => {
                    let archive = Archive::open(p)?;
                    let _: Manifest = fsutil::read_json(&archive.manifest_path())?;
                    Some(
                        ServerKey::read_synapse(&archive.keys_dir().join("signing.key"))?
                            .remove(0)
                            .public_key_b64(),
                    )
                }
                None => None,
            };
            let media = a
                .media_path
                .clone()
                .unwrap_or_else(|| a.database.join("media"));
            let (public, media) = (public.as_deref(), Some(media.as_path()));
            let r = match a.backend {
                Backend::Sqlite => verify(&mut SqliteStore::open(&a.database)?, public, media)?,
                Backend::Rocksdb => verify(&mut RocksStore::open(&a.database)?, public, media)?,
            };
            if !r.unfinished {
                println!(
                    "{} rooms, {} events, {} users, {} media checked",
                    r.rooms, r.events, r.users, r.media
                );
            }
            for violation in &r.violations {
                println!("✗ {violation}");
            }
            if r.violations.is_empty() {
                println!("✓ no violation");
                Ok(0)
            } else {
                Ok(1)
            }
        }
    }
}

/// What a written database means for passwords, by where the archive came from.
pub fn passwords_note(source: &str, server_name: &str) -> String {
    let reset = format!("`@conduit:{server_name}: reset-password <user>`");
    match source {
        "mattermost" => format!(
            "Passwords: Mattermost's bcrypt hashes were copied; Conduit checks them with \
             patches/conduit-bcrypt-login.patch. Without it, set one per user in the admin room \
             ({reset})."
        ),
        _ => format!(
            "Passwords: Synapse's bcrypt hashes were copied as they are, but stock Conduit only checks \
             argon2, so password logins fail until Conduit carries the bcrypt login patch \
             or a password is set anew (an admin, in the admin room: {reset}). Logged-in \
             clients keep working: their access tokens were migrated."
        ),
    }
}

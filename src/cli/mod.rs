//! Command-line parsing and the glue from flags + config file to the library.

pub mod conduit;
pub mod mattermost;
pub mod proxy;
pub mod status;
pub mod synapse;
pub mod test;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cli::synapse::SynapseCmd;

/// Move whole chat servers into Matrix's Conduit homeserver without losing anything.
#[derive(Debug, Parser)]
#[command(
    name = "transition-matrix",
    version,
    about,
    after_help = "Example:\n  transition-matrix --config tm.toml synapse dump all --archive ./archive\n  transition-matrix --config tm.toml test synapse"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file (TOML; .yaml/.yml read as YAML). Secrets come from env vars it names.
    #[arg(long, short = 'c', global = true, env = "TM_CONFIG")]
    pub config: Option<PathBuf>,
    /// More log output (-v debug, -vv trace).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a live Synapse.
    Synapse {
        #[command(subcommand)]
        command: SynapseCmd,
    },
    /// Write into a Conduit database, and check one.
    Conduit {
        #[command(subcommand)]
        command: crate::cli::conduit::ConduitCmd,
    },
    /// Import a Mattermost workspace.
    Mattermost {
        #[command(subcommand)]
        command: crate::cli::mattermost::MattermostCmd,
    },
    /// Step-by-step connection diagnostics.
    Test {
        #[command(subcommand)]
        command: test::TestCmd,
    },
    /// What an archive holds and what is left to do.
    #[command(after_help = "Example:\n  transition-matrix status --archive ./archive")]
    Status(status::StatusArgs),
    /// Serve Conduit the history it does not hold yet, from the archive and the live Synapse.
    #[command(
        after_help = "Example:\n  transition-matrix proxy --archive ./archive --synapse-url http://127.0.0.1:8008 --listen 127.0.0.1:8449\n\nConduit needs patches/conduit-backfill-proxy.patch and backfill_proxy = \"http://127.0.0.1:8449\" in its config."
    )]
    Proxy(proxy::ProxyArgs),
}

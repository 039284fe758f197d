//! `proxy`: the backfill proxy, and `test proxy`, which checks both of its directions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use transition_matrix::archive::{fsutil, Archive, Manifest};
use transition_matrix::config::Config;
use transition_matrix::matrix::keys::ServerKey;
use transition_matrix::proxy::{self, Proxy, ProxyOptions};

/// The proxy's default listen address (loopback; Conduit runs on the same machine).
const DEFAULT_LISTEN: &str = "127.0.0.1:8449";

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The archive written by `synapse dump` (gives the server name, key and events).
    #[arg(long)]
    pub archive: Option<PathBuf>,
    /// Synapse's federation listener (the still-running source), for events the archive lacks.
    #[arg(long)]
    pub synapse_url: Option<String>,
    /// Where to listen: a loopback or private address only [default: 127.0.0.1:8449].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Requests worked on at once [default: 8].
    #[arg(long)]
    pub concurrency: Option<usize>,
}

impl ProxyArgs {
    /// Flags over the config file (`[proxy]`, `[synapse]`, `[archive]`).
    pub fn options(&self, config: &Config) -> Result<(ProxyOptions, SocketAddr)> {
        let path = self
            .archive
            .clone()
            .or_else(|| config.archive.path.clone())
            .context("pass --archive or set [archive] path")?;
        let archive = Archive::open(&path)?;
        let manifest: Manifest = fsutil::read_json(&archive.manifest_path())?;
        let key = ServerKey::read_synapse(&archive.keys_dir().join("signing.key"))?
            .into_iter()
            .next()
            .context("the archive's signing.key holds no key")?;
        let synapse = self
            .synapse_url
            .clone()
            .or_else(|| config.synapse.federation_url.clone())
            .or_else(|| config.synapse.url.clone())
            .context("pass --synapse-url (Synapse's federation listener) or set [synapse] federation_url")?;
        let listen = match self.listen.or(config.proxy.listen) {
            Some(a) => a,
            None => DEFAULT_LISTEN.parse()?,
        };
        let options = ProxyOptions {
            archive,
            server_name: manifest.server_name,
            key,
            synapse_federation_url: synapse,
            concurrency: self.concurrency.or(config.proxy.concurrency).unwrap_or(8),
        };
        Ok((options, listen))
    }
}

pub async fn run(args: ProxyArgs, config: &Config) -> Result<i32> {
    let (options, listen) = args.options(config)?;
    let server = options.server_name.clone();
    let listener = proxy::bind(listen).await?;
    let proxy = Arc::new(tokio::task::block_in_place(|| Proxy::new(options))?);
    let held = proxy.archive_events();
    eprintln!(
        "backfill proxy for {server} on http://{} ({} rooms, {} events in the archive); set backfill_proxy = \"http://{}\" in conduit.toml",
        listener.local_addr()?,
        held.room_count(),
        held.event_count(),
        listener.local_addr()?
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    proxy.serve(listener, shutdown).await?;
    Ok(0)
}

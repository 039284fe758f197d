//! `test …` diagnostics.

use anyhow::Result;
use clap::Subcommand;

use transition_matrix::config::Config;
use transition_matrix::synapse::diagnose;

use crate::cli::synapse::SynapseArgs;

#[derive(Debug, Subcommand)]
pub enum TestCmd {
    /// Check every step a dump needs: login, admin rights, federation listener, signing key, DB.
    #[command(
        after_help = "Example:\n  SYNAPSE_ADMIN_TOKEN=syt_… transition-matrix test synapse --synapse-url http://127.0.0.1:8008 \\\n      --admin-token-env SYNAPSE_ADMIN_TOKEN --homeserver-yaml /etc/synapse/homeserver.yaml"
    )]
    Synapse(SynapseArgs),
    /// Check both directions of the backfill proxy: proxy → Synapse, Conduit → proxy.
    #[command(
        after_help = "Example:\n  transition-matrix test proxy --archive ./archive --synapse-url http://127.0.0.1:8008 --proxy-url http://127.0.0.1:8449"
    )]
    Proxy(TestProxyArgs),
    /// Check each step of reading a Mattermost workspace: config.json, database, counts, files.
    #[command(
        after_help = "Example:\n  transition-matrix test mattermost --mattermost-config /opt/mattermost/config/config.json"
    )]
    Mattermost(crate::cli::mattermost::SourceArgs),
}

#[derive(Debug, clap::Args)]
pub struct TestProxyArgs {
    #[command(flatten)]
    pub proxy: crate::cli::proxy::ProxyArgs,
    /// Where the running proxy answers [default: http://<listen address>].
    #[arg(long)]
    pub proxy_url: Option<String>,
}

pub async fn run(
    cmd: TestCmd,
    config: &Config,
    config_path: Option<&std::path::Path>,
) -> Result<i32> {
    match cmd {
        TestCmd::Synapse(args) => {
            let settings = args.resolve(config)?;
            let origin = match &config_path {
                Some(p) => format!("{} loaded, flags override it", p.display()),
                None => "no config file; settings from flags and environment".to_owned(),
            };
            let ok = diagnose::run(&settings, &origin, |step| println!("{step}")).await;
            Ok(if ok { 0 } else { 1 })
        }
        TestCmd::Mattermost(args) => {
            let ok = crate::cli::mattermost::diagnose(&args).await;
            Ok(if ok { 0 } else { 1 })
        }
        TestCmd::Proxy(args) => {
            let (o, listen) = args.proxy.options(config)?;
            let proxy_url = args.proxy_url.unwrap_or_else(|| format!("http://{listen}"));
            let target = transition_matrix::proxy::diagnose::Target {
                archive: &o.archive,
                server_name: &o.server_name,
                key: &o.key,
                synapse_url: &o.synapse_federation_url,
                proxy_url: &proxy_url,
            };
            let ok =
                transition_matrix::proxy::diagnose::run(&target, |step| println!("{step}")).await;
            Ok(if ok { 0 } else { 1 })
        }
    }
}

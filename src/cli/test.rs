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
    }
}

//! The `transition-matrix` command: parse, set up logging, call the library.

mod cli;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};
use transition_matrix::config::Config;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    let level = match cli.global.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("TM_LOG")
                .unwrap_or_else(|_| EnvFilter::new(format!("warn,transition_matrix={level}"))),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            1
        }
    };
    std::process::exit(code);
}

/// The error and its causes on one line, each cause once: the library's errors already name
/// their cause (`cannot read X: No such file…`), which the chain would repeat.
fn message(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !msg.contains(&cause) {
            msg.push_str(": ");
            msg.push_str(&cause);
        }
    }
    msg
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let config = match &cli.global.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Synapse { command } => cli::synapse::run(command, &config).await,
            Command::Test { command } => {
                cli::test::run(command, &config, cli.global.config.as_deref()).await
            }
            Command::Status(args) => cli::status::run(args, &config),
            Command::Proxy(args) => cli::proxy::run(args, &config).await,
            Command::Conduit { command } => cli::conduit::run(command, &config),
            Command::Mattermost { command } => cli::mattermost::run(command).await,
        }
    })
}

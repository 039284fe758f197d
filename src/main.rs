//! The `transition-matrix` command: parse, set up logging, call the library.

mod cli;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};
use transition_matrix::config::Config;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's `mi_option_purge_delay`. libmimalloc-sys 0.1.49 names the options around it
/// but not this one; in mimalloc.h it is the entry before `mi_option_use_numa_nodes` (a test
/// checks its default, 1000 ms, which no neighbour has).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t =
    libmimalloc_sys::mi_option_use_numa_nodes - 1;

/// How long freed memory stays resident before mimalloc returns it (ms). Its default, 1 s,
/// kept ~70 MiB of a bulk import's freed buffers resident at any time (peak RSS of a 10^6-post
/// import 484–494 → 415–430 MiB at 10 ms, mimalloc v2's default; 0 gave 394–405 MiB for twice
/// the system CPU). See BENCHMARKS.md, "Mattermost import: peak memory".
const PURGE_DELAY_MS: std::ffi::c_long = 10;

fn main() {
    // SAFETY: sets a tuning option; mimalloc reads it when it next schedules a purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_with_its_default() {
        // SAFETY: reads an option.
        let got = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(
            got, 1000,
            "option {MI_OPTION_PURGE_DELAY} is not the purge delay"
        );
    }
}

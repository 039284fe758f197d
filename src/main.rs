//! The `transition-matrix` command: parse, set up logging, call the library.

mod cli;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};
use transition_matrix::config::Config;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, which it reads at its first allocation (the symbol is its `malloc_conf`
/// under tikv-jemalloc-sys's `_rjem_` prefix). A bulk import frees buffers (commit batches,
/// pages, JSON) by the hundred MiB a second; by default jemalloc returns freed pages to the
/// system over 10 s and only when a thread next allocates. Over 1 s, from a background thread,
/// the peak RSS of a 250k-post import was 228 MiB instead of 244–255 (mimalloc: 267), of a
/// 10^6-post import 250 instead of 269–275 (mimalloc: 308), for no more CPU. See BENCHMARKS.md,
/// "Mattermost import: peak memory".
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
static malloc_conf: Option<&'static std::ffi::c_char> =
    // SAFETY: a pointer to the first byte of a static NUL-terminated string, as C's `const char *`.
    Some(unsafe { &*c"background_thread:true,dirty_decay_ms:1000".as_ptr() });

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
        .with_ansi(colour_on_stderr())
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

/// Colours only for a person at a terminal: never into a file or a pipe, never under
/// `NO_COLOR` (any non-empty value, as no-color.org asks).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
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
    /// jemalloc option `name` as type `T`.
    fn option<T: Default>(name: &std::ffi::CStr) -> T {
        let mut value = T::default();
        let mut len = std::mem::size_of::<T>();
        // SAFETY: `value` is a `T` of `len` bytes, the size jemalloc writes for these options.
        let r = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&mut value as *mut T).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(r, 0, "mallctl {name:?}");
        value
    }

    #[test]
    fn jemalloc_runs_with_our_options() {
        assert!(option::<bool>(c"opt.background_thread"));
        assert_eq!(option::<isize>(c"opt.dirty_decay_ms"), 1000);
    }
}

//! `status`: what an archive holds, from its checkpoint and manifest.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use transition_matrix::archive::{Archive, Checkpoint, ItemKind};
use transition_matrix::config::Config;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The archive directory.
    #[arg(long)]
    pub archive: Option<PathBuf>,
}

pub fn run(args: StatusArgs, config: &Config) -> Result<i32> {
    let Some(path) = args.archive.or_else(|| config.archive.path.clone()) else {
        anyhow::bail!("no archive directory: pass --archive or set [archive] path");
    };
    let archive = Archive::create(&path)?;
    let cp = Checkpoint::open(&archive.checkpoint_path())?;
    println!("archive {}", path.display());
    for (kind, name) in [
        (ItemKind::Keys, "keys"),
        (ItemKind::User, "users"),
        (ItemKind::Room, "rooms"),
        (ItemKind::Media, "media"),
        (ItemKind::Step, "steps"),
    ] {
        let entries = cp.entries(kind);
        let errors: usize = entries.iter().map(|e| e.errors.len()).sum();
        let events: u64 = entries.iter().filter_map(|e| e.counts.get("events")).sum();
        let extra = match kind {
            ItemKind::Room => format!(", {events} events"),
            ItemKind::Step if !entries.is_empty() => {
                let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
                format!(" ({})", ids.join(", "))
            }
            _ => String::new(),
        };
        println!(
            "  {name:<6} {:>6} done{extra}{}",
            entries.len(),
            if errors > 0 {
                format!(", {errors} problems")
            } else {
                String::new()
            }
        );
    }
    Ok(0)
}

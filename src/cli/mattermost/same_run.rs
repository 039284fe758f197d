//! A resumed import must forge with the choices of the run that began the archive: rooms
//! forged on another server name, room version, deleted-post policy, user map or source would
//! sit beside the earlier ones in one archive, and the writer would put both into Conduit.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use transition_matrix::archive::{fsutil, Archive};

use super::{DeletedArg, ForgeArgs};

/// Where the first run's choices are kept.
const FILE: &str = "mattermost-options.json";

/// Whether a run has forged into `archive` yet.
pub fn begun(archive: &Archive) -> bool {
    archive.checkpoint_path().is_file() || archive.root().join("rooms").is_dir()
}

/// The choices of this run that shape what is forged.
fn choices(a: &ForgeArgs) -> Result<Value> {
    let user_map: Value = match &a.user_map {
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("{}: expected a JSON object", p.display()))?,
        None => json!({}),
    };
    Ok(json!({
        "--server-name": a.server_name,
        "--room-version": a.room_version,
        "--deleted": match a.deleted { DeletedArg::Omit => "omit", DeletedArg::Redact => "redact" },
        "--user-map": user_map,
        "--no-files": a.source.no_files,
        "--export": a.source.export.is_some(),
    }))
}

/// Records this run's choices in a new archive; in an archive begun before, refuses choices
/// that differ from that run's, naming each one.
pub fn check(a: &ForgeArgs, archive: &Archive) -> Result<()> {
    let path = archive.root().join(FILE);
    let now = choices(a)?;
    // Until a run has forged something, the choices are not settled yet: a run that stopped
    // on a wrong --data-source may be redone with other ones.
    if !path.is_file() || !begun(archive) {
        fsutil::write_atomic(&path, serde_json::to_string_pretty(&now)?.as_bytes(), false)?;
        return Ok(());
    }
    let before: Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    let differ: Vec<String> = (now.as_object().into_iter().flatten())
        .filter(|(k, v)| before.get(k.as_str()).is_some_and(|b| b != *v))
        .map(|(k, v)| {
            format!(
                "{k} {} (this run: {})",
                short(&before[k.as_str()]),
                short(v)
            )
        })
        .collect();
    if !differ.is_empty() {
        bail!(
            "{} was begun with other choices: {}. Resume it with the same ones, or start a new \
             --archive (and a new database) to import with these",
            a.archive.display(),
            differ.join("; ")
        );
    }
    Ok(())
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) if m.len() > 3 => format!("a map of {} users", m.len()),
        v => v.to_string(),
    }
}

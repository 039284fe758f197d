//! A resumed import must forge with the choices of the run that began the archive: rooms
//! forged on another server name, room version, deleted-post policy, user map, source or
//! initial-password choice would
//! sit beside the earlier ones in one archive, and the writer would put both into Conduit.

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde_json::{json, Map, Value};

use transition_matrix::archive::{fsutil, Archive, Checkpoint, ItemKind};

use super::{user_map, ForgeArgs};

/// Where the choices are kept.
const FILE: &str = "mattermost-options.json";

/// Whether a run has forged into `archive` yet: a step, room, user or media item is recorded.
/// (The key's entry comes first of all, before anything is read: it does not count.)
pub fn begun(archive: &Archive) -> Result<bool> {
    let checkpoint = Checkpoint::open(&archive.checkpoint_path())?;
    Ok([
        ItemKind::Step,
        ItemKind::Room,
        ItemKind::User,
        ItemKind::Media,
    ]
    .into_iter()
    .any(|k| !checkpoint.entries(k).is_empty()))
}

/// The choices of this run that shape what it forges. `--deleted` only matters to the
/// messages step, so only a run that forges messages sets it.
fn choices(a: &ForgeArgs, forges_messages: bool) -> Result<Map<String, Value>> {
    let mut c = Map::new();
    c.insert("--server-name".into(), json!(a.server_name));
    c.insert("--room-version".into(), json!(a.room_version));
    c.insert("--user-map".into(), json!(user_map(a)?));
    c.insert("--no-files".into(), json!(a.source.no_files));
    c.insert("--export".into(), json!(a.source.export.is_some()));
    c.insert(
        "--initial-passwords".into(),
        json!(a.initial_passwords.is_some()),
    );
    if forges_messages {
        let deleted = a
            .deleted
            .to_possible_value()
            .map(|v| v.get_name().to_owned());
        c.insert("--deleted".into(), json!(deleted));
    }
    Ok(c)
}

/// Records this run's choices; in an archive a run has forged into, refuses choices that
/// differ from the recorded ones, naming each.
pub fn check(a: &ForgeArgs, archive: &Archive, begun: bool, forges_messages: bool) -> Result<()> {
    let path = archive.root().join(FILE);
    let now = choices(a, forges_messages)?;
    let mut recorded = Map::new();
    // Until a run has forged something, nothing is settled: a run that stopped on a wrong
    // --data-source, say, may be redone with other choices.
    if path.is_file() && begun {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        recorded = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON object", path.display()))?;
    }
    let differ: Vec<String> = (now.iter())
        .filter_map(|(k, v)| {
            let before = recorded.get(k).filter(|b| *b != v)?;
            Some(format!("{k} {} (this run: {})", short(before), short(v)))
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
    // Choices first made by this run (--deleted at the first messages run) join the record.
    let before = recorded.len();
    for (k, v) in now {
        recorded.entry(k).or_insert(v);
    }
    if recorded.len() != before || !path.is_file() {
        fsutil::write_atomic(
            &path,
            serde_json::to_string_pretty(&recorded)?.as_bytes(),
            false,
        )?;
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

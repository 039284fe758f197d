//! Shared helpers for the integration tests: the testnet scenario, running the binary, and one
//! reference archive dumped once per test process.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Scenario {
    pub server_name: String,
    pub client_url: String,
    pub federation_url: String,
    pub client_only_url: String,
    pub homeserver_yaml: PathBuf,
    pub signing_key_path: PathBuf,
    pub database: PathBuf,
    pub media_store: PathBuf,
    pub admin: Account,
    pub users: BTreeMap<String, User>,
    pub rooms: BTreeMap<String, Room>,
    pub event_counts: BTreeMap<String, u64>,
    pub whitelist: Whitelist,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub user_id: String,
    pub password: String,
    pub access_token: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub user_id: String,
    pub password: String,
    pub deactivated: bool,
    pub erased: bool,
    pub devices: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Room {
    pub room_id: String,
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Whitelist {
    pub server_name: String,
    pub client_url: String,
    pub homeserver_yaml: PathBuf,
    pub admin: Account,
}

/// The testnet scenario; the tests need a running testnet (`scripts/test` starts one).
pub fn scenario() -> &'static Scenario {
    static S: OnceLock<Scenario> = OnceLock::new();
    S.get_or_init(|| {
        let path = std::env::var("TM_TESTNET_SCENARIO").expect(
            "TM_TESTNET_SCENARIO is not set: these tests run against the testnet Synapse; \
             run them with scripts/test, which starts it",
        );
        let text = std::fs::read_to_string(&path).expect("read the scenario file");
        serde_json::from_str(&text).expect("parse the scenario file")
    })
}

/// Every secret of the scenario (tokens, passwords, the signing key seed).
pub fn secrets() -> Vec<String> {
    let s = scenario();
    let mut out = vec![s.admin.access_token.clone(), s.admin.password.clone()];
    for u in s.users.values() {
        out.push(u.password.clone());
        out.extend(u.devices.values().cloned());
    }
    let key = std::fs::read_to_string(&s.signing_key_path).unwrap();
    out.extend(key.split_whitespace().nth(2).map(str::to_owned));
    out
}

/// Runs the binary with the given arguments and environment.
pub fn tm(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_transition-matrix"));
    cmd.args(args).env_remove("TM_CONFIG").env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run transition-matrix")
}

/// A run that must have succeeded: its standard output (else a failure showing both streams).
pub fn succeeded(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The usual connection flags for the main testnet Synapse (token in `TM_TEST_TOKEN`).
pub fn synapse_flags() -> Vec<String> {
    let s = scenario();
    vec![
        "--synapse-url".into(),
        s.client_url.clone(),
        "--homeserver-yaml".into(),
        s.homeserver_yaml.display().to_string(),
        "--admin-token-env".into(),
        "TM_TEST_TOKEN".into(),
        "--synapse-db".into(),
        s.database.display().to_string(),
    ]
}

/// Runs `synapse dump all` into `archive` with the usual flags plus `extra`.
pub fn dump(archive: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<String> = vec!["-v".into(), "synapse".into(), "dump".into(), "all".into()];
    args.extend(synapse_flags());
    args.push("--archive".into());
    args.push(archive.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tm(&args, &[("TM_TEST_TOKEN", &scenario().admin.access_token)])
}

/// One complete dump, made once per test binary and shared by its tests.
pub fn reference_archive() -> (&'static Path, &'static Output) {
    static A: OnceLock<(tempfile::TempDir, PathBuf, Output)> = OnceLock::new();
    let (_dir, path, out) = A.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive");
        let out = dump(&path, &[]);
        assert!(
            out.status.success(),
            "reference dump failed: {}",
            text(&out)
        );
        (dir, path, out)
    });
    (path, out)
}

/// stdout + stderr as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// sha256 of every file under `root`, by relative path.
pub fn tree_checksums(root: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(
                    rel,
                    hex::encode(sha2::Sha256::digest(std::fs::read(&p).unwrap())),
                );
            }
        }
    }
    out
}

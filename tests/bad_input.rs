//! Bad input against the real testnet: each case is one clear line on stderr, a non-zero exit,
//! no panic, and no archive written.

mod common;

use common::{scenario, text, tm};

/// Runs `synapse dump keys` (the quickest dump that needs every connection step) and returns
/// (exit code, stderr).
fn dump_keys(extra: &[&str], env: &[(&str, &str)]) -> (i32, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a").display().to_string();
    let mut args = vec!["synapse", "dump", "keys", "--archive", &archive];
    args.extend_from_slice(extra);
    let out = tm(&args, env);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "panic: {}", text(&out));
    (out.status.code().unwrap_or(-1), err, dir)
}

fn error_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one error line expected in:\n{stderr}"
    );
    lines[0]
}

#[test]
fn wrong_admin_password() {
    let s = scenario();
    let (code, err, _d) = dump_keys(
        &[
            "--synapse-url",
            &s.client_url,
            "--admin-user",
            &s.admin.user_id,
            "--admin-password-env",
            "TM_PW",
        ],
        &[("TM_PW", "definitely-not-the-password")],
    );
    assert_eq!(code, 1);
    let line = error_line(&err);
    assert!(
        line.contains("admin login as @oadmin:example.test failed") && line.contains("M_FORBIDDEN"),
        "{line}"
    );
    assert!(!err.contains("definitely-not-the-password"));
}

#[test]
fn unreachable_synapse() {
    let (code, err, _d) = dump_keys(
        &[
            "--synapse-url",
            "http://127.0.0.1:9",
            "--admin-token-env",
            "TM_T",
        ],
        &[("TM_T", "x")],
    );
    assert_eq!(code, 1);
    let line = error_line(&err);
    assert!(
        line.contains("cannot reach Synapse at http://127.0.0.1:9"),
        "{line}"
    );
}

#[test]
fn client_only_listener_for_federation() {
    let s = scenario();
    let yaml = s.homeserver_yaml.display().to_string();
    let (code, err, d) = dump_keys(
        &[
            "--synapse-url",
            &s.client_url,
            "--federation-url",
            &s.client_only_url,
            "--homeserver-yaml",
            &yaml,
            "--admin-token-env",
            "TM_T",
        ],
        &[("TM_T", &s.admin.access_token)],
    );
    assert_eq!(code, 1);
    let line = error_line(&err);
    assert!(
        line.contains("does not serve federation") && line.contains("federation_url"),
        "{line}"
    );
    assert!(
        !d.path().join("a/keys/signing.key").exists(),
        "nothing may be written"
    );
}

#[test]
fn federation_whitelist_without_our_name() {
    let w = &scenario().whitelist;
    let yaml = w.homeserver_yaml.display().to_string();
    let (code, err, _d) = dump_keys(
        &[
            "--synapse-url",
            &w.client_url,
            "--homeserver-yaml",
            &yaml,
            "--admin-token-env",
            "TM_T",
        ],
        &[("TM_T", &w.admin.access_token)],
    );
    assert_eq!(code, 1);
    let line = error_line(&err);
    assert!(
        line.contains("federation_domain_whitelist must include its own server name"),
        "{line}"
    );
}

#[test]
fn unreadable_or_garbled_signing_key() {
    let s = scenario();
    let (code, err, _d) = dump_keys(
        &[
            "--synapse-url",
            &s.client_url,
            "--signing-key",
            "/nonexistent/signing.key",
            "--admin-token-env",
            "TM_T",
        ],
        &[("TM_T", &s.admin.access_token)],
    );
    assert_eq!(code, 1);
    assert!(
        error_line(&err).contains("signing key /nonexistent/signing.key: No such file"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let garbled = dir.path().join("k");
    std::fs::write(&garbled, "ed25519 a_x not*base64\n").unwrap();
    let g = garbled.display().to_string();
    let (code, err, _d) = dump_keys(
        &[
            "--synapse-url",
            &s.client_url,
            "--signing-key",
            &g,
            "--admin-token-env",
            "TM_T",
        ],
        &[("TM_T", &s.admin.access_token)],
    );
    assert_eq!(code, 1);
    assert!(
        error_line(&err).contains("line 1: seed is not base64"),
        "{err}"
    );
}

#[test]
fn diagnostics_pass_on_a_good_setup_and_explain_a_bad_one() {
    let s = scenario();
    let mut args = vec!["test".to_owned(), "synapse".to_owned()];
    args.extend(common::synapse_flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tm(&args, &[("TM_TEST_TOKEN", &s.admin.access_token)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    for step in [
        "admin login",
        "server version",
        "signing key",
        "federation listener",
        "self-signed request",
        "database",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("✓ ") && l.contains(step)),
            "{step} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains('✗'));

    let w = &s.whitelist;
    let yaml = w.homeserver_yaml.display().to_string();
    let out = tm(
        &[
            "test",
            "synapse",
            "--synapse-url",
            &w.client_url,
            "--homeserver-yaml",
            &yaml,
            "--admin-token-env",
            "TM_T",
        ],
        &[("TM_T", &w.admin.access_token)],
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("✗ self-signed request") && l.contains("whitelist")),
        "{stdout}"
    );
}

/// Logs written to a file carry no colour escapes, even without `NO_COLOR`: colours are for a
/// terminal only (a saved log or CI output with `\e[32m` in it is hard to read).
#[test]
fn logs_to_a_file_carry_no_colour_escapes() {
    let s = scenario();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let archive = dir.path().join("a");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_transition-matrix"))
        .args([
            "-v",
            "synapse",
            "dump",
            "keys",
            "--synapse-url",
            &s.client_url,
        ])
        .args([
            "--homeserver-yaml",
            &s.homeserver_yaml.display().to_string(),
        ])
        .args(["--admin-token-env", "TM_TEST_TOKEN", "--archive"])
        .arg(&archive)
        .env("TM_TEST_TOKEN", &s.admin.access_token)
        .env_remove("NO_COLOR")
        .env_remove("TM_CONFIG")
        .stdout(std::fs::File::create(dir.path().join("out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&log).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("connected to Synapse"), "{text}");
    assert!(
        !bytes.contains(&0x1b),
        "an escape byte in the log: {text:?}"
    );
    let out = std::fs::read(dir.path().join("out")).unwrap();
    assert!(!out.contains(&0x1b), "an escape byte in the output");
}

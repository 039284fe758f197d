//! The `MM_*` settings of the running Mattermost server's environment. They win over
//! config.json (mattermost.md §1.1), and Docker and packaged installs often keep the real
//! DataSource only there, with Mattermost's default `mattermost_test` DSN left in the file: an
//! import that read only the file would connect to the wrong database, or to none.
//!
//! The server is found by what ties it to the config.json being read: a process named
//! `mattermost` whose working directory is the install directory (the parent of `config/`) or
//! whose command line names that config; else the `mattermost` systemd unit with that working
//! directory (its `Environment=` lines, for a server that is stopped). Any other Mattermost on
//! the host is left alone. One shell script finds it, so the same lookup runs locally and over
//! SSH.

use crate::ssh::shell_quote;

/// Where the server's settings came from, and the `MM_*` variables it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEnv {
    /// A running `mattermost` process.
    Process {
        pid: u32,
        vars: Vec<(String, String)>,
    },
    /// The `mattermost` systemd unit's `Environment=` settings.
    Systemd { vars: Vec<(String, String)> },
    /// A running server whose environment this user may not read.
    Unreadable { pid: u32 },
    /// No server of this install was found.
    NotFound,
}

impl ServerEnv {
    /// The `MM_*` variables found (none when nothing was read).
    pub fn vars(&self) -> &[(String, String)] {
        match self {
            ServerEnv::Process { vars, .. } | ServerEnv::Systemd { vars } => vars,
            _ => &[],
        }
    }

    /// One line for the admin: where settings came from and which (names only: values may be
    /// passwords).
    pub fn describe(&self, install: &str) -> String {
        let names = |vars: &[(String, String)]| {
            if vars.is_empty() {
                "no MM_* settings".to_owned()
            } else {
                let n: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
                format!("its {} win over config.json", n.join(", "))
            }
        };
        match self {
            ServerEnv::Process { pid, vars } => {
                format!(
                    "Mattermost server running from {install} (pid {pid}): {}",
                    names(vars)
                )
            }
            ServerEnv::Systemd { vars } => {
                format!("systemd unit mattermost (in {install}): {}", names(vars))
            }
            ServerEnv::Unreadable { pid } => format!(
                "Mattermost server running from {install} (pid {pid}): its environment is not \
                 readable by this user, so MM_* settings there are not applied (run as root or \
                 as the server's user, or pass --data-source)"
            ),
            ServerEnv::NotFound => format!(
                "no Mattermost server of {install} found running or as a systemd unit: only \
                 config.json is read"
            ),
        }
    }
}

/// The shell script that prints the environment of the server installed in `install` (the
/// parent of the config's `config/` directory) with config `config`: a NUL-terminated header
/// (`process PID`, `unreadable PID`, `systemd` or `none`), then the environment.
pub fn script(install: &str, config: &str) -> String {
    format!(
        r#"dir={}; cfg={}
for d in /proc/[0-9]*; do
  [ "$(cat "$d/comm" 2>/dev/null)" = mattermost ] || continue
  if [ "$(readlink "$d/cwd" 2>/dev/null)" = "$dir" ] ||
     tr '\0' '\n' <"$d/cmdline" 2>/dev/null | grep -qxF -e "$cfg" -e "--config=$cfg"; then
    if [ -r "$d/environ" ]; then printf 'process %s\0' "${{d#/proc/}}"; cat "$d/environ"
    else printf 'unreadable %s\0' "${{d#/proc/}}"; fi
    exit 0
  fi
done
if command -v systemctl >/dev/null 2>&1 &&
   [ "$(systemctl show mattermost -p WorkingDirectory --value 2>/dev/null)" = "$dir" ]; then
  printf 'systemd\0'; systemctl show mattermost -p Environment --value
  exit 0
fi
printf 'none\0'
"#,
        shell_quote(install),
        shell_quote(config)
    )
}

/// Reads [`script`]'s output.
pub fn parse(output: &[u8]) -> ServerEnv {
    let mut parts = output.splitn(2, |b| *b == 0);
    let header = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let rest = parts.next().unwrap_or_default();
    let pid = |s: &str| s.trim().parse::<u32>().ok();
    let mm = |(k, v): (String, String)| k.starts_with("MM_").then_some((k, v));
    match header.split_once(' ') {
        Some(("process", p)) if pid(p).is_some() => ServerEnv::Process {
            pid: pid(p).unwrap_or_default(),
            vars: (rest.split(|b| *b == 0))
                .filter_map(|e| {
                    let e = String::from_utf8_lossy(e);
                    let (k, v) = e.split_once('=')?;
                    mm((k.to_owned(), v.to_owned()))
                })
                .collect(),
        },
        Some(("unreadable", p)) if pid(p).is_some() => ServerEnv::Unreadable {
            pid: pid(p).unwrap_or_default(),
        },
        _ if header == "systemd" => ServerEnv::Systemd {
            vars: systemd_words(&String::from_utf8_lossy(rest))
                .into_iter()
                .filter_map(|w| {
                    let (k, v) = w.split_once('=')?;
                    mm((k.to_owned(), v.to_owned()))
                })
                .collect(),
        },
        _ => ServerEnv::NotFound,
    }
}

/// Splits `systemctl show -p Environment --value` output into assignments: separated by
/// spaces, an assignment with spaces in double quotes, `\` escaping the next character.
fn systemd_words(s: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    let mut chars = s.trim_end_matches('\n').chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                word.extend(chars.next());
                any = true;
            }
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_environment_keeps_only_mattermost_settings() {
        let out =
            b"process 4242\0PATH=/usr/bin\0MM_SQLSETTINGS_DATASOURCE=postgres://u:p=w@db/mm\0\
                    MM_CONFIG=postgres://u:p@db/mm\0HOME=/opt\0";
        assert_eq!(
            parse(out),
            ServerEnv::Process {
                pid: 4242,
                vars: vec![
                    (
                        "MM_SQLSETTINGS_DATASOURCE".into(),
                        "postgres://u:p=w@db/mm".into()
                    ),
                    ("MM_CONFIG".into(), "postgres://u:p@db/mm".into()),
                ]
            }
        );
        let line = parse(out).describe("/opt/mattermost");
        assert!(
            line.contains("MM_SQLSETTINGS_DATASOURCE, MM_CONFIG"),
            "{line}"
        );
        assert!(
            !line.contains("p=w"),
            "no values in the description: {line}"
        );
    }

    #[test]
    fn systemd_assignments_with_quotes_and_the_other_answers() {
        let out = b"systemd\0MM_SQLSETTINGS_DRIVERNAME=postgres \"MM_FILESETTINGS_DIRECTORY=/srv/mm files\" LANG=C\n";
        assert_eq!(
            parse(out),
            ServerEnv::Systemd {
                vars: vec![
                    ("MM_SQLSETTINGS_DRIVERNAME".into(), "postgres".into()),
                    ("MM_FILESETTINGS_DIRECTORY".into(), "/srv/mm files".into()),
                ]
            }
        );
        assert_eq!(parse(b"unreadable 17\0"), ServerEnv::Unreadable { pid: 17 });
        assert_eq!(parse(b"none\0"), ServerEnv::NotFound);
        assert_eq!(parse(b""), ServerEnv::NotFound);
        assert_eq!(parse(b"process x\0"), ServerEnv::NotFound);
    }

    /// The script run by a real shell against this machine's /proc: a process named
    /// `mattermost` started in an install directory is found, and its settings read.
    #[test]
    fn the_script_finds_the_server_of_this_install_only() {
        let dir = tempfile::tempdir().unwrap();
        let install = dir.path().join("mattermost");
        std::fs::create_dir_all(install.join("bin")).unwrap();
        let exe = install.join("bin/mattermost");
        std::fs::copy("/bin/sleep", &exe).unwrap();
        let mut server = std::process::Command::new(&exe)
            .arg("30")
            .current_dir(&install)
            .env("MM_SQLSETTINGS_DATASOURCE", "postgres://x:y@db/real")
            .spawn()
            .unwrap();
        let run = |install: &std::path::Path| {
            let config = install.join("config/config.json");
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(script(install.to_str().unwrap(), config.to_str().unwrap()))
                .output()
                .unwrap();
            parse(&out.stdout)
        };
        let found = run(&install);
        let other = run(&dir.path().join("elsewhere"));
        server.kill().unwrap();
        server.wait().unwrap();
        match found {
            ServerEnv::Process { pid, vars } => {
                assert_eq!(pid, server.id());
                assert_eq!(
                    vars,
                    vec![(
                        "MM_SQLSETTINGS_DATASOURCE".into(),
                        "postgres://x:y@db/real".into()
                    )]
                );
            }
            other => panic!("the server was not found: {other:?}"),
        }
        assert_eq!(other, ServerEnv::NotFound, "another install's server");
    }
}

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

/// Where the server's settings came from, and the `MM_*` variables it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEnv {
    /// A running `mattermost` process.
    Process {
        pid: u32,
        /// Started with `-c`/`--config`: then its `MM_CONFIG` does not apply.
        config_flag: bool,
        vars: Vec<(String, String)>,
    },
    /// The `mattermost` systemd unit's `Environment=` settings.
    Systemd { vars: Vec<(String, String)> },
    /// A running server whose environment this user may not read.
    Unreadable { pid: u32 },
    /// No server of this install was found.
    NotFound,
    /// The lookup did not run (no POSIX shell, say).
    Failed,
}

impl ServerEnv {
    /// Where the server takes its config from, if its environment says (`MM_CONFIG`, unless
    /// the server was started with `--config`, which comes first).
    pub fn config_location(&self) -> Option<&str> {
        match self {
            ServerEnv::Process {
                config_flag: true, ..
            } => None,
            _ => (self.vars().iter())
                .rev()
                .find(|(k, _)| k == "MM_CONFIG")
                .map(|(_, v)| v.as_str()),
        }
    }

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
            ServerEnv::Process { pid, vars, .. } => {
                format!(
                    "Mattermost server running from {install} (pid {pid}): {}",
                    names(vars)
                )
            }
            ServerEnv::Systemd { vars } => {
                format!("systemd unit mattermost (in {install}): {}", names(vars))
            }
            ServerEnv::Unreadable { pid } => format!(
                "a Mattermost server (pid {pid}) whose directory or environment this user cannot \
                 read: if it is the one of {install}, its MM_* settings are not applied (run as \
                 root or as the server's user, or pass --data-source)"
            ),
            ServerEnv::NotFound => format!(
                "no Mattermost server of {install} found running or as a systemd unit: only \
                 config.json is read"
            ),
            ServerEnv::Failed => format!(
                "could not look for the Mattermost server of {install} (no POSIX shell?): only \
                 config.json is read"
            ),
        }
    }
}

/// What starts [`script`]'s output, so a login shell's banner before it is skipped.
const MARK: &str = "tm-server-env";

/// The shell script that prints the environment of the server installed in `install` (the
/// parent of the config's `config/` directory) with config `config`: [`MARK`], then a
/// NUL-terminated header (`process PID [config-flag]`, `unreadable PID`, `systemd` or `none`),
/// then the environment.
///
/// A process counts when its working directory is the install (both resolved, so a symlinked
/// `/opt/mattermost` matches) or its command line names the config; `mattermost` commands run
/// beside the server (`mattermost export …`: a first argument that is not an option) do not. A
/// server whose directory or environment cannot be read (another user's, or one with file
/// capabilities) is reported as unreadable rather than missed. `config-flag`: the server was
/// started with `-c`/`--config`, which Mattermost puts before `MM_CONFIG`.
pub fn script(install: &str, config: &str) -> String {
    format!(
        r#"dir={}; cfg={}
real=$(cd -P -- "$dir" 2>/dev/null && pwd -P) || real=$dir
rcfg=$(readlink -f -- "$cfg" 2>/dev/null) || rcfg=$cfg
unread=
printf '{MARK}'
for d in /proc/[0-9]*; do
  [ "$(cat "$d/comm" 2>/dev/null)" = mattermost ] || continue
  args=$(tr '\0' '\n' <"$d/cmdline" 2>/dev/null)
  case "$(printf '%s\n' "$args" | sed -n 2p)" in ""|-*|server) ;; *) continue ;; esac
  cwd=$(readlink "$d/cwd" 2>/dev/null) || cwd=
  [ -n "$cwd" ] || unread=${{d#/proc/}}
  if [ "$cwd" = "$real" ] ||
     printf '%s\n' "$args" | grep -qxF -e "$cfg" -e "--config=$cfg" -e "$rcfg" -e "--config=$rcfg"; then
    if ! cat "$d/environ" >/dev/null 2>&1; then printf 'unreadable %s\0' "${{d#/proc/}}"; exit 0; fi
    flag=; printf '%s\n' "$args" | grep -qE '^(-c|--config)(=|$)' && flag=' config-flag'
    printf 'process %s%s\0' "${{d#/proc/}}" "$flag"; cat "$d/environ"
    exit 0
  fi
done
if [ -n "$unread" ]; then printf 'unreadable %s\0' "$unread"; exit 0; fi
if command -v systemctl >/dev/null 2>&1; then
  w=$(systemctl show mattermost -p WorkingDirectory --value 2>/dev/null)
  if [ -n "$w" ] && [ "$(cd -P -- "$w" 2>/dev/null && pwd -P)" = "$real" ]; then
    printf 'systemd\0'; systemctl show mattermost -p Environment --value
    exit 0
  fi
fi
printf 'none\0'
"#,
        crate::ssh::shell_quote(install),
        crate::ssh::shell_quote(config)
    )
}

/// Reads [`script`]'s output.
pub fn parse(output: &[u8]) -> ServerEnv {
    let mark = MARK.as_bytes();
    let Some(at) = output.windows(mark.len()).position(|w| w == mark) else {
        return ServerEnv::Failed;
    };
    let mut parts = output[at + mark.len()..].splitn(2, |b| *b == 0);
    let header = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let rest = parts.next().unwrap_or_default();
    let pid = |s: &str| s.trim().parse::<u32>().ok();
    let mm = |(k, v): (String, String)| k.starts_with("MM_").then_some((k, v));
    let words: Vec<&str> = header.split(' ').collect();
    match words.as_slice() {
        ["process", p, flag @ ..] if pid(p).is_some() => ServerEnv::Process {
            pid: pid(p).unwrap_or_default(),
            config_flag: flag == ["config-flag"],
            vars: (rest.split(|b| *b == 0))
                .filter_map(|e| {
                    let e = String::from_utf8_lossy(e);
                    let (k, v) = e.split_once('=')?;
                    mm((k.to_owned(), v.to_owned()))
                })
                .collect(),
        },
        ["unreadable", p] if pid(p).is_some() => ServerEnv::Unreadable {
            pid: pid(p).unwrap_or_default(),
        },
        ["systemd"] => ServerEnv::Systemd {
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

    fn marked(body: &[u8]) -> Vec<u8> {
        // A login shell's banner may come first.
        [b"Welcome!\n".as_slice(), MARK.as_bytes(), body].concat()
    }

    #[test]
    fn a_process_environment_keeps_only_mattermost_settings() {
        let out = marked(
            b"process 4242\0PATH=/usr/bin\0MM_SQLSETTINGS_DATASOURCE=postgres://u:p=w@db/mm\0\
                        MM_CONFIG=postgres://u:p@db/mm\0HOME=/opt\0",
        );
        let env = parse(&out);
        assert_eq!(
            env,
            ServerEnv::Process {
                pid: 4242,
                config_flag: false,
                vars: vec![
                    (
                        "MM_SQLSETTINGS_DATASOURCE".into(),
                        "postgres://u:p=w@db/mm".into()
                    ),
                    ("MM_CONFIG".into(), "postgres://u:p@db/mm".into()),
                ]
            }
        );
        assert_eq!(env.config_location(), Some("postgres://u:p@db/mm"));
        let line = env.describe("/opt/mattermost");
        assert!(
            line.contains("MM_SQLSETTINGS_DATASOURCE, MM_CONFIG"),
            "{line}"
        );
        assert!(
            !line.contains("p=w"),
            "no values in the description: {line}"
        );
        // Started with --config: Mattermost takes that, not MM_CONFIG.
        let flagged = parse(&marked(b"process 7 config-flag\0MM_CONFIG=/etc/mm.json\0"));
        assert!(matches!(
            flagged,
            ServerEnv::Process {
                config_flag: true,
                ..
            }
        ));
        assert_eq!(flagged.config_location(), None);
    }

    #[test]
    fn systemd_assignments_with_quotes_and_the_other_answers() {
        let env = parse(&marked(
            b"systemd\0MM_SQLSETTINGS_DRIVERNAME=postgres \"MM_FILESETTINGS_DIRECTORY=/srv/mm files\" LANG=C\n",
        ));
        assert_eq!(
            env,
            ServerEnv::Systemd {
                vars: vec![
                    ("MM_SQLSETTINGS_DRIVERNAME".into(), "postgres".into()),
                    ("MM_FILESETTINGS_DIRECTORY".into(), "/srv/mm files".into()),
                ]
            }
        );
        assert_eq!(
            parse(&marked(b"unreadable 17\0")),
            ServerEnv::Unreadable { pid: 17 }
        );
        assert_eq!(parse(&marked(b"none\0")), ServerEnv::NotFound);
        assert_eq!(parse(&marked(b"process x\0")), ServerEnv::NotFound);
        assert_eq!(
            parse(b"sh: not found"),
            ServerEnv::Failed,
            "no mark: it did not run"
        );
    }

    fn run(install: &std::path::Path, config: &std::path::Path) -> ServerEnv {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(install.to_str().unwrap(), config.to_str().unwrap()))
            .output()
            .unwrap();
        parse(&out.stdout)
    }

    /// The script run by a real shell against this machine's /proc: a process named
    /// `mattermost` started in an install directory is found (also through a symlink to the
    /// install, and by a config named on its command line), and its settings read; another
    /// install's server and a `mattermost` command run beside the server are not.
    #[test]
    fn the_script_finds_the_server_of_this_install_only() {
        let dir = tempfile::tempdir().unwrap();
        let install = dir.path().join("mattermost-10.11");
        std::fs::create_dir_all(install.join("bin")).unwrap();
        let link = dir.path().join("mattermost");
        std::os::unix::fs::symlink(&install, &link).unwrap();
        let exe = install.join("bin/mattermost");
        std::fs::copy("/bin/sleep", &exe).unwrap();
        let start = |args: &[&str], cwd: &std::path::Path, dsn: &str| {
            std::process::Command::new(&exe)
                .args(args)
                .current_dir(cwd)
                .env("MM_SQLSETTINGS_DATASOURCE", dsn)
                .spawn()
                .unwrap()
        };
        // `mattermost export …`-like (a first argument that is not an option): not the server.
        let mut command = start(&["30"], &install, "postgres://x:y@db/command");
        let mut server = start(&["--", "30"], &install, "postgres://x:y@db/real");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let named = elsewhere.join("config/config.json");
        let named_arg = format!("--config={}", named.display());
        // sleep takes no options; Python (copied under the same name) ignores what follows -c.
        let py = dir.path().join("py/bin/mattermost");
        std::fs::create_dir_all(py.parent().unwrap()).unwrap();
        std::fs::copy(std::fs::canonicalize("/usr/bin/python3").unwrap(), &py).unwrap();
        let mut by_flag = std::process::Command::new(&py)
            .args(["-cimport time; time.sleep(30)", &named_arg])
            .current_dir(dir.path())
            .env("MM_SQLSETTINGS_DATASOURCE", "postgres://x:y@db/named")
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let found = run(&link, &link.join("config/config.json"));
        let by_config = run(&elsewhere, &named);
        let other = run(
            &dir.path().join("other"),
            &dir.path().join("other/config/config.json"),
        );
        for child in [&mut command, &mut server, &mut by_flag] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let dsn = |env: &ServerEnv| env.vars().first().map(|(_, v)| v.clone());
        assert!(
            matches!(found, ServerEnv::Process { pid, config_flag: false, .. } if pid == server.id()),
            "{found:?}"
        );
        assert_eq!(dsn(&found).as_deref(), Some("postgres://x:y@db/real"));
        assert!(
            matches!(by_config, ServerEnv::Process { pid, config_flag: true, .. } if pid == by_flag.id()),
            "{by_config:?}"
        );
        assert_eq!(dsn(&by_config).as_deref(), Some("postgres://x:y@db/named"));
        assert_eq!(other, ServerEnv::NotFound, "another install's server");
    }
}

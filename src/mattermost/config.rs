//! Mattermost's `config.json` as the importer needs it: where the database is (both DataSource
//! forms, PostgreSQL and MySQL), where the files are, the site URL — with `MM_*` environment
//! overrides applied the way the server applies them (mattermost.md §1).
//!
//! Passwords never reach `Debug` output or logs: a [`DataSource`] prints without its password.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Which database Mattermost uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Postgres,
    Mysql,
}

/// A parsed DataSource.
#[derive(Clone, PartialEq, Eq)]
pub struct DataSource {
    pub driver: Driver,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Zeroizing<String>,
    pub database: String,
    /// Connection parameters the target driver understands (`sslmode`, `charset`, …).
    pub params: BTreeMap<String, String>,
}

impl fmt::Debug for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {}@{}:{}/{} {:?}",
            self.driver, self.user, self.host, self.port, self.database, self.params
        )
    }
}

/// What the importer reads from `config.json`.
#[derive(Debug, Clone)]
pub struct MattermostConfig {
    pub data_source: DataSource,
    /// `FileSettings.DriverName`: `local` or `amazons3`.
    pub file_driver: String,
    /// `FileSettings.Directory` (relative paths are relative to the server's working directory).
    pub file_directory: String,
    /// Where an `amazons3` store is: `s3://bucket/prefix` at its endpoint (for the message that
    /// asks for a copy of it).
    pub s3_location: String,
    pub site_url: String,
}

/// Whether a config location (`--mattermost-config`, `MM_CONFIG`) is a database DSN: then
/// Mattermost keeps its config in that database's `Configurations` table.
pub fn is_config_dsn(location: &str) -> bool {
    ["postgres://", "postgresql://", "mysql://"]
        .iter()
        .any(|p| location.starts_with(p))
}

/// The driver a DataSource is written for: the go-sql-driver form (`@tcp(`, `@unix(`, or a
/// `mysql://` prefix as in `MM_CONFIG`) is MySQL's, everything else PostgreSQL's.
pub fn driver_of(dsn: &str) -> &'static str {
    if dsn.starts_with("mysql://") || dsn.contains("@tcp(") || dsn.contains("@unix(") {
        "mysql"
    } else {
        "postgres"
    }
}

/// Query parameters sqlx understands; Mattermost's DSNs carry others (`connect_timeout`,
/// `binary_parameters`) that sqlx would log, value and all.
const PG_PARAMS: [&str; 5] = ["sslmode", "sslrootcert", "sslcert", "sslkey", "options"];
const MYSQL_PARAMS: [&str; 2] = ["charset", "tls"];

impl MattermostConfig {
    /// Reads `config.json` text, then applies `MM_*` overrides from `env` (the server process's
    /// environment, when it can be read; later entries win).
    pub fn parse(text: &str, env: &[(String, String)]) -> Result<Self> {
        let json: Value = serde_json::from_str(text)
            .map_err(|e| Error::malformed("Mattermost config.json", e))?;
        let get = |section: &str, key: &str| -> Option<String> {
            let var = format!("MM_{}_{}", section.to_uppercase(), key.to_uppercase());
            env.iter()
                .rev()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| v.clone())
                .or_else(|| json[section][key].as_str().map(str::to_owned))
        };
        let driver = get("SqlSettings", "DriverName").unwrap_or_else(|| "postgres".into());
        let dsn = get("SqlSettings", "DataSource").ok_or_else(|| {
            Error::malformed(
                "Mattermost config.json",
                "SqlSettings.DataSource is missing",
            )
        })?;
        Ok(MattermostConfig {
            data_source: DataSource::parse(&driver, &dsn)?,
            file_driver: get("FileSettings", "DriverName").unwrap_or_else(|| "local".into()),
            file_directory: get("FileSettings", "Directory").unwrap_or_else(|| "./data/".into()),
            s3_location: format!(
                "s3://{}/{} at {}",
                get("FileSettings", "AmazonS3Bucket").unwrap_or_default(),
                get("FileSettings", "AmazonS3PathPrefix").unwrap_or_default(),
                get("FileSettings", "AmazonS3Endpoint")
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "s3.amazonaws.com".into())
            ),
            site_url: get("ServiceSettings", "SiteURL")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "http://localhost:8065".into()),
        })
    }
}

impl DataSource {
    /// Parses a DataSource for `driver` (`postgres` or `mysql`); errors never include it.
    pub fn parse(driver: &str, dsn: &str) -> Result<Self> {
        let bad = |why: &str| Error::malformed("Mattermost SqlSettings.DataSource", why);
        match driver {
            "postgres" => {
                if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
                    Self::pg_url(dsn).ok_or_else(|| bad("not a valid postgres:// URL"))
                } else {
                    Self::pg_key_values(dsn).ok_or_else(|| bad("not a key=value DSN"))
                }
            }
            "mysql" => Self::mysql(dsn.strip_prefix("mysql://").unwrap_or(dsn))
                .ok_or_else(|| bad("not a user:password@tcp(host:port)/db DSN")),
            other => Err(Error::Config(format!(
                "Mattermost SqlSettings.DriverName {other:?}: only postgres and mysql exist"
            ))),
        }
    }

    fn pg_url(dsn: &str) -> Option<Self> {
        // lib/pq accepts an empty host (`u:p@/db?host=/socket`); the URL parser does not.
        let url = url::Url::parse(&dsn.replacen("@/", "@localhost/", 1)).ok()?;
        let decode = |s: &str| urlencoding::decode(s).ok().map(|c| c.into_owned());
        let mut params = BTreeMap::new();
        let mut host = url.host_str().unwrap_or("").to_owned();
        for (k, v) in url.query_pairs() {
            if k == "host" {
                host = v.into_owned(); // a Unix socket directory
            } else if PG_PARAMS.contains(&k.as_ref()) {
                params.insert(k.into_owned(), v.into_owned());
            }
        }
        // lib/pq's default when sslmode is absent.
        params
            .entry("sslmode".into())
            .or_insert_with(|| "require".into());
        Some(DataSource {
            driver: Driver::Postgres,
            host: if host.is_empty() {
                "localhost".into()
            } else {
                host
            },
            port: url.port().unwrap_or(5432),
            user: decode(url.username())?,
            password: Zeroizing::new(decode(url.password().unwrap_or(""))?),
            database: decode(url.path().trim_start_matches('/'))?,
            params,
        })
    }

    fn pg_key_values(dsn: &str) -> Option<Self> {
        let mut kv = BTreeMap::new();
        let mut rest = dsn.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let after = after.trim_start();
            let (value, tail) = if let Some(quoted) = after.strip_prefix('\'') {
                let end = quoted.find('\'')?;
                (quoted[..end].to_owned(), &quoted[end + 1..])
            } else {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (after[..end].to_owned(), &after[end..])
            };
            kv.insert(key.trim().to_owned(), value);
            rest = tail.trim_start();
        }
        let params = kv
            .iter()
            .filter(|(k, _)| PG_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain([("sslmode".to_owned(), "require".to_owned())])
            .fold(BTreeMap::new(), |mut m, (k, v)| {
                m.entry(k).or_insert(v);
                m
            });
        Some(DataSource {
            driver: Driver::Postgres,
            host: kv
                .get("host")
                .cloned()
                .unwrap_or_else(|| "localhost".into()),
            port: kv.get("port").map_or(Some(5432), |p| p.parse().ok())?,
            user: kv.get("user").cloned().unwrap_or_default(),
            password: Zeroizing::new(kv.get("password").cloned().unwrap_or_default()),
            database: kv.get("dbname").cloned().unwrap_or_default(),
            params,
        })
    }

    /// go-sql-driver form: `user:pass@tcp(host:port)/db?params` (the password is not encoded and
    /// may contain `:` and `@`), or `@unix(/path)`.
    fn mysql(dsn: &str) -> Option<Self> {
        let at = dsn
            .rfind("@tcp(")
            .or_else(|| dsn.rfind("@unix("))
            .or_else(|| dsn.rfind("@/"))?;
        let (cred, addr) = (&dsn[..at], &dsn[at + 1..]);
        let (user, password) = cred.split_once(':').unwrap_or((cred, ""));
        let (net, address, path) = match (addr.strip_prefix("tcp("), addr.strip_prefix("unix(")) {
            (Some(r), _) => {
                let (a, p) = r.split_once(')')?;
                ("tcp", a, p)
            }
            (_, Some(r)) => {
                let (a, p) = r.split_once(')')?;
                ("unix", a, p)
            }
            // `user:pass@/db`: the driver's default address.
            _ => ("tcp", "127.0.0.1:3306", addr),
        };
        let (host, port) = if net == "unix" {
            (address.to_owned(), 3306)
        } else {
            match address.rsplit_once(':') {
                Some((h, p)) => (h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?),
                None => (address.to_owned(), 3306),
            }
        };
        let path = path.trim_start_matches('/');
        let (database, query) = path.split_once('?').unwrap_or((path, ""));
        let mut params = BTreeMap::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if MYSQL_PARAMS.contains(&k.as_ref()) {
                // `charset=utf8mb4,utf8`: the first one is what the server is asked for.
                let v = v.split(',').next().unwrap_or_default().to_owned();
                params.insert(k.into_owned(), v);
            }
        }
        Some(DataSource {
            driver: Driver::Mysql,
            host: if host.is_empty() {
                "127.0.0.1".into()
            } else {
                host
            },
            port,
            user: user.to_owned(),
            password: Zeroizing::new(password.to_owned()),
            database: database.to_owned(),
            params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_url_with_mattermost_extras() {
        let d = DataSource::parse(
            "postgres",
            "postgres://mm%40user:p%3Ass@db.example:6432/mattermost?sslmode=disable&connect_timeout=10&binary_parameters=yes",
        )
        .unwrap();
        assert_eq!(
            (
                d.host.as_str(),
                d.port,
                d.user.as_str(),
                d.password.as_str(),
                d.database.as_str()
            ),
            ("db.example", 6432, "mm@user", "p:ss", "mattermost")
        );
        assert_eq!(d.params.len(), 1, "only sslmode survives: {:?}", d.params);
        assert_eq!(d.params["sslmode"], "disable");
        assert!(!format!("{d:?}").contains("p:ss"), "no password in Debug");
        // Defaults: port 5432, lib/pq's sslmode=require, host localhost via socket param.
        let d =
            DataSource::parse("postgres", "postgresql://u:p@/mm?host=/var/run/postgresql").unwrap();
        assert_eq!((d.host.as_str(), d.port), ("/var/run/postgresql", 5432));
        assert_eq!(d.params["sslmode"], "require");
    }

    #[test]
    fn postgres_key_value_form() {
        let d = DataSource::parse(
            "postgres",
            "user=mmuser password='se cret' host=db port=5433 dbname=mattermost sslmode=disable",
        )
        .unwrap();
        assert_eq!(
            (
                d.host.as_str(),
                d.port,
                d.user.as_str(),
                d.password.as_str(),
                d.database.as_str()
            ),
            ("db", 5433, "mmuser", "se cret", "mattermost")
        );
        assert_eq!(d.params["sslmode"], "disable");
        assert!(DataSource::parse("postgres", "user=x port=notaport").is_err());
    }

    #[test]
    fn mysql_go_dsn_forms() {
        let d = DataSource::parse(
            "mysql",
            "mmuser:pa:ss@word@tcp(mysql.local:3307)/mattermost?charset=utf8mb4,utf8&readTimeout=30s",
        )
        .unwrap();
        assert_eq!(
            (
                d.host.as_str(),
                d.port,
                d.user.as_str(),
                d.password.as_str(),
                d.database.as_str()
            ),
            ("mysql.local", 3307, "mmuser", "pa:ss@word", "mattermost")
        );
        assert_eq!(d.params["charset"], "utf8mb4");
        assert!(!d.params.contains_key("readTimeout"));
        let d = DataSource::parse("mysql", "mysql://u:p@tcp([::1]:3306)/mm").unwrap();
        assert_eq!((d.host.as_str(), d.port), ("::1", 3306));
        let d = DataSource::parse("mysql", "u:p@unix(/run/mysqld/mysqld.sock)/mm").unwrap();
        assert_eq!(d.host, "/run/mysqld/mysqld.sock");
        assert!(DataSource::parse("mysql", "not a dsn").is_err());
        assert!(DataSource::parse("sqlite", "x").is_err());
    }

    #[test]
    fn the_driver_follows_the_dsn_form() {
        assert_eq!(driver_of("mmuser:pw@tcp(db:3306)/mattermost"), "mysql");
        assert_eq!(driver_of("u:p@unix(/run/mysqld/mysqld.sock)/mm"), "mysql");
        assert_eq!(driver_of("mysql://u:p@tcp(db)/mm"), "mysql");
        assert_eq!(driver_of("postgres://u:p@db/mm"), "postgres");
        assert_eq!(driver_of("user=u host=db dbname=mm"), "postgres");
        assert!(is_config_dsn("postgres://u:p@db/mm") && is_config_dsn("mysql://u:p@tcp(db)/mm"));
        assert!(!is_config_dsn("/opt/mattermost/config/config.json"));
    }

    #[test]
    fn environment_overrides_win_over_the_file() {
        let text = r#"{"ServiceSettings": {"SiteURL": "https://chat.example"},
            "SqlSettings": {"DriverName": "postgres",
                "DataSource": "postgres://mmuser:mostest@localhost/mattermost_test?sslmode=disable"},
            "FileSettings": {"DriverName": "local", "Directory": "/opt/mattermost/data/"}}"#;
        let c = MattermostConfig::parse(text, &[]).unwrap();
        assert_eq!(c.data_source.database, "mattermost_test");
        assert_eq!(c.site_url, "https://chat.example");
        let env = vec![
            (
                "MM_SQLSETTINGS_DATASOURCE".to_owned(),
                "postgres://real:pw@db:5432/mattermost?sslmode=disable".to_owned(),
            ),
            (
                "MM_FILESETTINGS_DIRECTORY".to_owned(),
                "/mnt/files".to_owned(),
            ),
        ];
        let c = MattermostConfig::parse(text, &env).unwrap();
        assert_eq!(
            (c.data_source.user.as_str(), c.data_source.host.as_str()),
            ("real", "db")
        );
        assert_eq!(c.file_directory, "/mnt/files");
        assert!(MattermostConfig::parse("{", &[]).is_err());
        assert!(MattermostConfig::parse("{}", &[]).is_err(), "no DataSource");
    }
}

//! Reading a Mattermost database (PostgreSQL or MySQL) through sqlx, read-only.
//!
//! One set of queries serves both: tables are named CamelCase and unquoted (PostgreSQL folds
//! them to its lower-case names, MySQL matches them exactly), every column is selected by name
//! with a lower-case alias, and the few things the dialects spell differently (text and integer
//! casts) come from [`Dialect`]. Columns an older schema lacks are read as their default, so
//! older installs import too (mattermost.md §2).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use futures::StreamExt;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::ConnectOptions;
use sqlx::{AnyPool, Executor, Row};

use crate::error::{Error, Result};
use crate::mattermost::config::{DataSource, Driver};
use crate::mattermost::rows::*;

/// A connected, read-only Mattermost database.
pub struct MattermostDb {
    pub(super) pool: AnyPool,
    dialect: Dialect,
    /// (table, column), both lower-case, of the schema.
    columns: HashSet<(String, String)>,
    /// Tables (`Reactions`, `FileInfo`) every row of which names its channel, so a channel's
    /// rows are found by `ChannelId` instead of by its posts (a scan of Posts per channel).
    pub(super) channel_named: HashSet<&'static str>,
}

#[derive(Debug, Clone, Copy)]
struct Dialect(Driver);

impl Dialect {
    fn text(self, expr: &str) -> String {
        match self.0 {
            Driver::Postgres => format!("CAST({expr} AS TEXT)"),
            Driver::Mysql => format!("CAST({expr} AS CHAR)"),
        }
    }
    fn int(self, expr: &str) -> String {
        match self.0 {
            Driver::Postgres => format!("CAST({expr} AS BIGINT)"),
            Driver::Mysql => format!("CAST({expr} AS SIGNED)"),
        }
    }
}

pub(super) fn db_err(what: &str) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| Error::Mattermost(format!("reading {what}: {e}"))
}

/// A text column. MySQL reports long text (and casts of it) as BLOB with a character set,
/// which sqlx's Any driver only decodes as bytes; those must be UTF-8 too.
pub(super) fn text(r: &AnyRow, column: &str) -> Result<String> {
    match r.try_get::<String, _>(column) {
        Ok(s) => Ok(s),
        Err(e) => {
            let bytes = r
                .try_get::<Vec<u8>, _>(column)
                .map_err(|_| Error::Mattermost(format!("column {column}: {e}")))?;
            String::from_utf8(bytes)
                .map_err(|e| Error::Mattermost(format!("column {column} is not UTF-8: {e}")))
        }
    }
}

pub(super) fn int(r: &AnyRow, column: &str) -> Result<i64> {
    r.try_get::<i64, _>(column)
        .map_err(|e| Error::Mattermost(format!("column {column}: {e}")))
}

/// How many channels to read at once: one per core, but at most 8, so the import never takes
/// more than 9 of the database's connections from Mattermost itself.
pub fn channels_at_once() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(8))
}

/// The connection URL sqlx takes (never logged: it holds the password).
fn url(ds: &DataSource) -> String {
    let enc = |s: &str| urlencoding::encode(s).into_owned();
    let scheme = match ds.driver {
        Driver::Postgres => "postgres",
        Driver::Mysql => "mysql",
    };
    let mut params: Vec<String> = Vec::new();
    let mut host = ds.host.clone();
    if host.starts_with('/') {
        // A Unix socket directory (PostgreSQL) or file (MySQL).
        let key = if ds.driver == Driver::Postgres {
            "host"
        } else {
            "socket"
        };
        params.push(format!("{key}={}", enc(&host)));
        host = "localhost".into();
    }
    for (k, v) in &ds.params {
        params.push(format!("{}={}", enc(k), enc(v)));
    }
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let mut url = format!(
        "{scheme}://{}:{}@{host}:{}/{}",
        enc(&ds.user),
        enc(&ds.password),
        ds.port,
        enc(&ds.database)
    );
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    url
}

/// Mattermost's active config where it keeps it in a database (`MM_CONFIG` or `--config` set
/// to a DSN): the `Value` of the `Configurations` row that is `Active` (mattermost.md §1.1).
pub async fn config_from_database(ds: &DataSource) -> Result<String> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let at = format!(
        "Mattermost's config database {:?} {}@{}:{}/{}",
        ds.driver, ds.user, ds.host, ds.port, ds.database
    );
    let mut conn = sqlx::AnyConnection::connect(&url(ds))
        .await
        .map_err(|e| Error::Mattermost(format!("cannot connect to {at}: {e}")))?;
    let sql = format!(
        "SELECT {} AS v FROM Configurations WHERE Active ORDER BY CreateAt DESC",
        Dialect(ds.driver).text("Value")
    );
    let row = sqlx::query(&sql)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| Error::Mattermost(format!("reading the Configurations table of {at}: {e}")))?
        .ok_or_else(|| {
            Error::Mattermost(format!("{at}: no active row in its Configurations table"))
        })?;
    let _ = conn.close().await;
    text(&row, "v")
}

impl MattermostDb {
    /// Connects (read-only sessions) and reads which columns the schema has.
    pub async fn connect(ds: &DataSource) -> Result<Self> {
        sqlx::any::install_default_drivers();
        // Read-only sessions. PostgreSQL also without parallel workers: they make a query
        // return sooner for more CPU in all, and the import keeps every core busy anyway.
        let session: &[&str] = match ds.driver {
            Driver::Postgres => &[
                "SET default_transaction_read_only = on",
                "SET max_parallel_workers_per_gather = 0",
            ],
            Driver::Mysql => &["SET SESSION TRANSACTION READ ONLY"],
        };
        // A channel's query stays open while its pages are forged: "slow" by sqlx's measure,
        // and no news to the admin.
        let cannot = |e: sqlx::Error| {
            Error::Mattermost(format!(
                "cannot connect to Mattermost's {:?} database {}@{}:{}/{}: {e}",
                ds.driver, ds.user, ds.host, ds.port, ds.database
            ))
        };
        let options = AnyConnectOptions::from_str(&url(ds))
            .map_err(cannot)?
            .log_slow_statements(log::LevelFilter::Off, std::time::Duration::ZERO);
        let pool = AnyPoolOptions::new()
            // A channel is read one query at a time (see `pages`); one more for the rest.
            .max_connections(channels_at_once() as u32 + 1)
            .acquire_timeout(std::time::Duration::from_secs(15))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    for sql in session {
                        conn.execute(*sql).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(cannot)?;
        let dialect = Dialect(ds.driver);
        let schema = match ds.driver {
            Driver::Postgres => "current_schema()",
            Driver::Mysql => "DATABASE()",
        };
        let sql = format!(
            "SELECT {} AS t, {} AS c FROM information_schema.columns WHERE table_schema = {schema}",
            dialect.text("LOWER(table_name)"),
            dialect.text("LOWER(column_name)")
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&pool)
            .await
            .map_err(db_err("schema"))?;
        let columns: HashSet<(String, String)> = rows
            .iter()
            .map(|r| Ok((text(r, "t")?, text(r, "c")?)))
            .collect::<Result<_>>()?;
        if !columns.iter().any(|(t, _)| t == "posts") {
            return Err(Error::Mattermost(format!(
                "{}/{} has no Posts table: not a Mattermost database",
                ds.host, ds.database
            )));
        }
        let mut db = MattermostDb {
            pool,
            dialect,
            columns,
            channel_named: HashSet::new(),
        };
        for table in ["Reactions", "FileInfo"] {
            if db.has(table, "ChannelId") && db.has(table, "PostId") {
                let unnamed = "WHERE ChannelId = '' OR ChannelId IS NULL";
                if db.count(table, unnamed).await? == 0 {
                    db.channel_named.insert(table);
                }
            }
        }
        Ok(db)
    }

    pub(super) fn has(&self, table: &str, column: &str) -> bool {
        self.columns
            .contains(&(table.to_lowercase(), column.to_lowercase()))
    }

    /// A text column as `alias` ('' when NULL or missing).
    pub(super) fn s(&self, table: &str, column: &str) -> String {
        let alias = column.to_lowercase();
        if self.has(table, column) {
            format!("COALESCE({}, '') AS {alias}", self.dialect.text(column))
        } else {
            format!("'' AS {alias}")
        }
    }

    /// An integer or boolean column as a 64-bit integer `alias` (0 when NULL or missing).
    pub(super) fn i(&self, table: &str, column: &str) -> String {
        let alias = column.to_lowercase();
        if self.has(table, column) {
            format!(
                "{} AS {alias}",
                self.dialect.int(&format!("COALESCE({column}, 0)"))
            )
        } else {
            format!("0 AS {alias}")
        }
    }

    /// A boolean column as 0/1.
    pub(super) fn b(&self, table: &str, column: &str) -> String {
        let alias = column.to_lowercase();
        if self.has(table, column) {
            let e = format!("CASE WHEN {column} THEN 1 ELSE 0 END");
            format!("{} AS {alias}", self.dialect.int(&e))
        } else {
            format!("0 AS {alias}")
        }
    }

    /// `SELECT cols FROM table rest`, or `None` when the schema has no such table.
    fn select_sql(&self, table: &str, cols: &[String], rest: &str) -> Option<String> {
        let exists = self.columns.iter().any(|(t, _)| *t == table.to_lowercase());
        exists.then(|| format!("SELECT {} FROM {table} {rest}", cols.join(", ")))
    }

    pub(super) async fn select(
        &self,
        table: &str,
        cols: &[String],
        rest: &str,
    ) -> Result<Vec<AnyRow>> {
        let Some(sql) = self.select_sql(table, cols, rest) else {
            return Ok(Vec::new());
        };
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err(table))
    }

    /// Like [`MattermostDb::select`], but hands each row to `each` as it arrives: a big
    /// channel's reactions or files are never all held as driver rows (a row of the `Any`
    /// driver takes four to five times the memory of the values taken from it).
    pub(super) async fn select_each(
        &self,
        table: &str,
        cols: &[String],
        rest: &str,
        mut each: impl FnMut(&AnyRow) -> Result<()>,
    ) -> Result<()> {
        let Some(sql) = self.select_sql(table, cols, rest) else {
            return Ok(());
        };
        let mut rows = sqlx::query(&sql).fetch(&self.pool);
        while let Some(row) = rows.next().await {
            each(&row.map_err(db_err(table))?)?;
        }
        Ok(())
    }

    /// Row counts for `test mattermost`: users, teams, channels, posts.
    pub async fn counts(&self) -> Result<Vec<(&'static str, i64)>> {
        let mut out = Vec::new();
        for (label, table) in [
            ("users", "Users"),
            ("teams", "Teams"),
            ("channels", "Channels"),
            ("posts", "Posts"),
        ] {
            out.push((label, self.count(table, "").await?));
        }
        Ok(out)
    }

    /// How many files of the file store the database lists: attachments (`FileInfo` rows,
    /// deleted ones too), profile pictures and custom emoji, as the import would read them.
    pub async fn file_count(&self) -> Result<i64> {
        let pictures = if self.has("Users", "LastPictureUpdate") {
            self.count("Users", "WHERE LastPictureUpdate > 0").await?
        } else {
            0
        };
        Ok(self.count("FileInfo", "").await? + pictures + self.count("Emoji", "").await?)
    }

    /// How many rows of `table` match `rest` (a `WHERE` clause, or nothing); 0 when the schema
    /// has no such table.
    async fn count(&self, table: &str, rest: &str) -> Result<i64> {
        let n = format!("{} AS n", self.dialect.int("COUNT(*)"));
        let rows = self.select(table, &[n], rest).await?;
        Ok(rows.first().map(|r| int(r, "n")).transpose()?.unwrap_or(0))
    }

    /// Moves each channel's start back to its first post where that is older. Mattermost's own
    /// bulk import (and so every Slack move through mmetl) creates channels at import time and
    /// keeps the posts' times; a room begun at the channel's time would put every older post at
    /// that time, as a timeline cannot go back.
    async fn start_channels_at_first_post(&self, channels: &mut [MmChannel]) -> Result<()> {
        let first = format!("{} AS firstat", self.dialect.int("MIN(CreateAt)"));
        let cols = [self.s("Posts", "ChannelId"), first];
        let mut firsts = HashMap::new();
        for r in self.select("Posts", &cols, "GROUP BY ChannelId").await? {
            firsts.insert(text(&r, "channelid")?, int(&r, "firstat")?);
        }
        for c in channels {
            if let Some(&first) = firsts.get(&c.id) {
                c.create_at = c.create_at.min(first);
            }
        }
        Ok(())
    }

    /// Reads everything the import needs except posts, reactions and files (those come per
    /// channel from [`MattermostDb::channel_pages`]).
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let mut snap = Snapshot::default();

        let rows = self
            .select(
                "Systems",
                &[self.s("Systems", "Value")],
                "WHERE Name = 'Version'",
            )
            .await?;
        snap.version = rows
            .first()
            .map(|r| text(r, "value"))
            .transpose()?
            .unwrap_or_default();

        let bots: HashSet<String> = self
            .select("Bots", &[self.s("Bots", "UserId")], "")
            .await?
            .iter()
            .map(|r| text(r, "userid"))
            .collect::<Result<_>>()?;
        let t = "Users";
        let cols = [
            self.s(t, "Id"),
            self.s(t, "Username"),
            self.s(t, "FirstName"),
            self.s(t, "LastName"),
            self.s(t, "Nickname"),
            self.s(t, "Roles"),
            self.s(t, "Password"),
            self.i(t, "CreateAt"),
            self.i(t, "DeleteAt"),
            self.i(t, "LastPictureUpdate"),
        ];
        for r in self.select(t, &cols, "ORDER BY CreateAt, Id").await? {
            let id = text(&r, "id")?;
            snap.users.push(MmUser {
                bot: bots.contains(&id),
                picture: (int(&r, "lastpictureupdate")? > 0)
                    .then(|| format!("users/{id}/profile.png")),
                id,
                username: text(&r, "username")?,
                first_name: text(&r, "firstname")?,
                last_name: text(&r, "lastname")?,
                nickname: text(&r, "nickname")?,
                roles: text(&r, "roles")?,
                password: text(&r, "password")?,
                create_at: int(&r, "createat")?,
                delete_at: int(&r, "deleteat")?,
            });
        }

        let t = "Teams";
        let cols = [
            self.s(t, "Id"),
            self.s(t, "Name"),
            self.s(t, "DisplayName"),
            self.s(t, "Description"),
            self.s(t, "Type"),
            self.i(t, "CreateAt"),
            self.i(t, "DeleteAt"),
        ];
        for r in self.select(t, &cols, "ORDER BY CreateAt, Id").await? {
            snap.teams.push(MmTeam {
                id: text(&r, "id")?,
                name: text(&r, "name")?,
                display_name: text(&r, "displayname")?,
                description: text(&r, "description")?,
                kind: text(&r, "type")?,
                create_at: int(&r, "createat")?,
                delete_at: int(&r, "deleteat")?,
            });
        }
        let t = "TeamMembers";
        let cols = [
            self.s(t, "TeamId"),
            self.s(t, "UserId"),
            self.b(t, "SchemeAdmin"),
            self.i(t, "DeleteAt"),
        ];
        for r in self.select(t, &cols, "ORDER BY TeamId, UserId").await? {
            snap.team_members.push(MmTeamMember {
                team_id: text(&r, "teamid")?,
                user_id: text(&r, "userid")?,
                admin: int(&r, "schemeadmin")? != 0,
                delete_at: int(&r, "deleteat")?,
            });
        }

        let t = "Channels";
        let cols = [
            self.s(t, "Id"),
            self.s(t, "TeamId"),
            self.s(t, "Type"),
            self.s(t, "Name"),
            self.s(t, "DisplayName"),
            self.s(t, "Header"),
            self.s(t, "Purpose"),
            self.s(t, "CreatorId"),
            self.i(t, "CreateAt"),
            self.i(t, "DeleteAt"),
            self.i(t, "TotalMsgCount"),
        ];
        for r in self.select(t, &cols, "ORDER BY CreateAt, Id").await? {
            snap.channels.push(MmChannel {
                id: text(&r, "id")?,
                team_id: text(&r, "teamid")?,
                kind: text(&r, "type")?,
                name: text(&r, "name")?,
                display_name: text(&r, "displayname")?,
                header: text(&r, "header")?,
                purpose: text(&r, "purpose")?,
                creator_id: text(&r, "creatorid")?,
                create_at: int(&r, "createat")?,
                delete_at: int(&r, "deleteat")?,
                msg_count: int(&r, "totalmsgcount")?,
            });
        }
        self.start_channels_at_first_post(&mut snap.channels)
            .await?;
        let t = "ChannelMembers";
        let cols = [
            self.s(t, "ChannelId"),
            self.s(t, "UserId"),
            self.b(t, "SchemeAdmin"),
        ];
        for r in self.select(t, &cols, "ORDER BY ChannelId, UserId").await? {
            snap.channel_members.push(MmChannelMember {
                channel_id: text(&r, "channelid")?,
                user_id: text(&r, "userid")?,
                admin: int(&r, "schemeadmin")? != 0,
            });
        }
        let t = "ChannelMemberHistory";
        let leave = if self.has(t, "LeaveTime") {
            format!(
                "{} AS leavetime",
                self.dialect.int("COALESCE(LeaveTime, -1)")
            )
        } else {
            "-1 AS leavetime".into()
        };
        let cols = [
            self.s(t, "ChannelId"),
            self.s(t, "UserId"),
            self.i(t, "JoinTime"),
            leave,
        ];
        for r in self.select(t, &cols, "ORDER BY JoinTime, UserId").await? {
            let leave = int(&r, "leavetime")?;
            snap.history.push(MmHistory {
                channel_id: text(&r, "channelid")?,
                user_id: text(&r, "userid")?,
                join_time: int(&r, "jointime")?,
                leave_time: (leave >= 0).then_some(leave),
            });
        }

        let t = "Emoji";
        let cols = [
            self.s(t, "Id"),
            self.s(t, "Name"),
            self.s(t, "CreatorId"),
            self.i(t, "CreateAt"),
            self.i(t, "DeleteAt"),
        ];
        for r in self.select(t, &cols, "ORDER BY CreateAt, Id").await? {
            snap.emoji.push(MmEmoji {
                id: text(&r, "id")?,
                name: text(&r, "name")?,
                creator_id: text(&r, "creatorid")?,
                create_at: int(&r, "createat")?,
                delete_at: int(&r, "deleteat")?,
            });
        }
        Ok(snap)
    }
}

//! Private temporary SQLite databases: where the import keeps what would otherwise grow with
//! the workspace in memory (older event ids of a room, the report's list of items left out).

use rusqlite::{Connection, Row};

/// Opens a private temporary database on disk and creates `schema` in it. An empty name makes
/// it SQLite's own temporary file, removed from the directory as soon as it is created, so
/// nothing is left behind, even by a crash. Nothing in it outlives the process, so it has no
/// journal and no syncs; a small page cache (256 KiB) keeps it out of memory (reads reach the
/// OS's file cache instead): at 2 MiB, the two biggest channels' caches were ~4 MiB of a
/// 10^6-post import's peak, and the spills were no faster. Its directory: `SQLITE_TMPDIR`,
/// `TMPDIR`, else `/var/tmp` or `/tmp`.
pub fn open(schema: &str) -> rusqlite::Result<Connection> {
    let db = Connection::open("")?;
    db.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -256;",
    )?;
    db.execute_batch(schema)?;
    Ok(db)
}

/// Text column `i` of `row`, for a `Serialize` that writes rows as they are read.
pub fn text<'r, E: serde::ser::Error>(row: &'r Row<'_>, i: usize) -> Result<&'r str, E> {
    let v = row.get_ref(i).map_err(E::custom)?;
    v.as_str().map_err(E::custom)
}

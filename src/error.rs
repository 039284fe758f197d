//! The library's error type. Every variant names *what* was being done and *where*, so the CLI
//! can print one clear line without a backtrace.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, with enough context for a one-line message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is missing or malformed.
    #[error("configuration: {0}")]
    Config(String),

    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A server could not be reached at all (DNS, refused, timeout).
    #[error("cannot reach {what} at {url}: {reason}")]
    Unreachable {
        what: &'static str,
        url: String,
        reason: String,
    },

    /// A server answered with an error status.
    #[error("{what}: {method} {path} returned {status} {errcode}: {message}")]
    Api {
        what: &'static str,
        method: &'static str,
        path: String,
        status: u16,
        errcode: String,
        message: String,
    },

    /// JSON (or YAML/TOML) that does not have the expected shape.
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },

    /// A signing key file that cannot be used.
    #[error("signing key {path}: {reason}")]
    SigningKey { path: PathBuf, reason: String },

    /// The Synapse database could not be read.
    #[error("Synapse database: {0}")]
    Database(String),

    /// The Mattermost source could not be read.
    #[error("Mattermost: {0}")]
    Mattermost(String),

    /// Scratch space the work keeps outside the archive and the database (a temporary file).
    #[error("temporary storage: {0}")]
    Temporary(String),

    /// Anything in the archive that contradicts itself.
    #[error("archive {path}: {reason}")]
    Archive { path: PathBuf, reason: String },

    /// The Conduit database could not be read or written.
    #[error("Conduit database: {0}")]
    Conduit(String),

    /// A write into a Conduit database stopped part-way. The database stays marked as an
    /// unfinished write, which Conduit refuses to start on, and the same command resumes it.
    #[error(
        "{0}\n  The database is marked as an unfinished write, so Conduit will not start on it. \
         Fix the cause and run the same command again: it resumes where it stopped."
    )]
    Interrupted(Box<Error>),
}

impl Error {
    /// Shorthand for an I/O error with the action and path that failed.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for a malformed-input error.
    pub fn malformed(what: impl Into<String>, reason: impl ToString) -> Self {
        Error::Malformed {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// The Matrix `errcode` if this is an API error.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            Error::Api { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    /// The HTTP status if this is an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<crate::import::id_table::IdError> for Error {
    fn from(e: crate::import::id_table::IdError) -> Self {
        use crate::import::id_table::IdError;
        match e {
            IdError::TooLarge => Error::Config(e.to_string()),
            IdError::Spill(_) => Error::Temporary(e.to_string()),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Database(e.to_string())
    }
}

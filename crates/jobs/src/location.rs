//! [`StoreLocation`]: which store a location such as `DATABASE_URL` names, parsed in this one
//! place (the server, the SQLite store and the sandbox's off-limits list all read it from here).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::postgres::{PgSettings, PgStore};
use crate::sqlite::{OpenError, SqliteStore};
use crate::store::{JobStore, MemoryStore};

/// Where the job store lives.
///
/// ```
/// use jobs::location::StoreLocation;
///
/// let db = StoreLocation::parse("sqlite://data/jobs.db")?;
/// assert_eq!(db.database_file(), Some(std::path::Path::new("data/jobs.db")));
/// assert_eq!(StoreLocation::parse("memory:")?, StoreLocation::Memory);
/// assert!(matches!(StoreLocation::parse("postgres://db/jobs")?, StoreLocation::Postgres(_)));
/// assert!(StoreLocation::parse("mysql://db/jobs").is_err());
/// # Ok::<(), jobs::sqlite::OpenError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `memory:`: a [`MemoryStore`]; nothing survives a restart.
    Memory,
    /// `sqlite::memory:`: a private SQLite database in memory, gone with the store (tests).
    SqliteMemory,
    /// `sqlite://PATH`, `sqlite:PATH` or a plain path: an SQLite file (relative paths are
    /// relative to the working directory).
    SqliteFile(PathBuf),
    /// `postgres://...` or `postgresql://...`: a [`PgStore`] (cluster mode); the URL as given,
    /// with libpq's parameters.
    Postgres(String),
}

impl StoreLocation {
    /// Parses a location. For SQLite, URL query parameters are refused: the SQLite store sets
    /// its own options. A PostgreSQL URL is checked when opened.
    ///
    /// # Errors
    /// [`OpenError::InvalidUrl`]: empty, another scheme, parameters, or no path.
    pub fn parse(url: &str) -> Result<StoreLocation, OpenError> {
        let invalid = |reason| Err(OpenError::InvalidUrl { url: url.to_owned(), reason });
        if url == "memory:" {
            return Ok(StoreLocation::Memory);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(url.to_owned()));
        }
        let rest = match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            Some(rest) => rest,
            None if url.is_empty() => return invalid("it is empty"),
            None if url.contains("://") => return invalid("only sqlite://, postgres:// and memory: are supported"),
            None => return Ok(StoreLocation::SqliteFile(PathBuf::from(url))),
        };
        if rest.contains('?') {
            return invalid("URL parameters are not supported (the store sets its own options)");
        }
        match rest {
            "" => invalid("no path after `sqlite:`"),
            ":memory:" => Ok(StoreLocation::SqliteMemory),
            path => Ok(StoreLocation::SqliteFile(PathBuf::from(path))),
        }
    }

    /// The database file, if the store is one.
    pub fn database_file(&self) -> Option<&Path> {
        match self {
            StoreLocation::SqliteFile(path) => Some(path),
            StoreLocation::Memory | StoreLocation::SqliteMemory | StoreLocation::Postgres(_) => None,
        }
    }

    /// Whether the store is shared by the nodes of a cluster (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self, StoreLocation::Postgres(_))
    }

    /// Opens the store (creating an SQLite file if missing, and migrating it), a PostgreSQL
    /// store with [`PgSettings::default`].
    ///
    /// # Errors
    /// The errors of [`SqliteStore::open_path`], [`SqliteStore::open_in_memory`] and
    /// [`PgStore::open`].
    pub async fn open(&self) -> Result<Arc<dyn JobStore>, OpenError> {
        self.open_with(PgSettings::default()).await
    }

    /// [`StoreLocation::open`], with `cluster` for a PostgreSQL store (ignored by the others).
    ///
    /// # Errors
    /// As [`StoreLocation::open`].
    pub async fn open_with(&self, cluster: PgSettings) -> Result<Arc<dyn JobStore>, OpenError> {
        Ok(match self {
            StoreLocation::Memory => Arc::new(MemoryStore::new()),
            StoreLocation::SqliteMemory => Arc::new(SqliteStore::open_in_memory().await?),
            StoreLocation::SqliteFile(path) => Arc::new(SqliteStore::open_path(path).await?),
            StoreLocation::Postgres(url) => Arc::new(PgStore::open(url, cluster).await?),
        })
    }
}

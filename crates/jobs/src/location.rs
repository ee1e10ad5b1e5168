//! [`StoreLocation`]: which store a location such as `DATABASE_URL` names, parsed in this one
//! place (the server, the SQLite store and the sandbox's off-limits list all read it from here).

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
/// assert!(StoreLocation::parse("postgres://db/jobs").is_err());
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
}

impl StoreLocation {
    /// Parses a location. URL query parameters are refused: the SQLite store sets its own
    /// options.
    ///
    /// # Errors
    /// [`OpenError::InvalidUrl`]: empty, another scheme, parameters, or no path.
    pub fn parse(url: &str) -> Result<StoreLocation, OpenError> {
        let invalid = |reason| Err(OpenError::InvalidUrl { url: url.to_owned(), reason });
        if url == "memory:" {
            return Ok(StoreLocation::Memory);
        }
        let rest = match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            Some(rest) => rest,
            None if url.is_empty() => return invalid("it is empty"),
            None if url.contains("://") => return invalid("only sqlite:// and memory: are supported"),
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
            StoreLocation::Memory | StoreLocation::SqliteMemory => None,
        }
    }

    /// Opens the store (creating an SQLite file if missing, and migrating it).
    ///
    /// # Errors
    /// The errors of [`SqliteStore::open_path`] and [`SqliteStore::open_in_memory`].
    pub async fn open(&self) -> Result<Arc<dyn JobStore>, OpenError> {
        Ok(match self {
            StoreLocation::Memory => Arc::new(MemoryStore::new()),
            StoreLocation::SqliteMemory => Arc::new(SqliteStore::open_in_memory().await?),
            StoreLocation::SqliteFile(path) => Arc::new(SqliteStore::open_path(path).await?),
        })
    }
}

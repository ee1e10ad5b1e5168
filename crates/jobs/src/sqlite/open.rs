//! Opening a database: the location (URL or path) as [`StoreLocation`] parses it, checks that
//! the file is ours before SQLite writes to it, connection pools, WAL mode, migrations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio_util::sync::CancellationToken;

use super::batch::checkpoint_wal;
use super::{Checkpointer, SqliteOptions, SqliteStore};
use crate::location::StoreLocation;

/// The migrations in `crates/jobs/migrations/`, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a connection waits for SQLite's write lock (held by another connection or process).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reader connections (each is a thread in sqlx's SQLite driver).
const READERS: u32 = 4;
/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";
/// SQLite's primary result code `SQLITE_NOTADB`.
const SQLITE_NOTADB: &str = "26";

/// Why [`SqliteStore::open`] failed. The file is never replaced or repaired.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The location is not `sqlite://PATH`, `sqlite:PATH`, `sqlite::memory:`, `memory:`,
    /// `postgres://...` or a plain path ([`StoreLocation::parse`]).
    #[error("`{url}` is not a job store location: {reason}")]
    InvalidUrl {
        /// The location as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The directory meant to hold the database does not exist (it is not created).
    #[error("cannot create database {}: directory {} does not exist", path.display(), dir.display())]
    MissingDirectory {
        /// The database file.
        path: PathBuf,
        /// Its missing parent directory.
        dir: PathBuf,
    },
    /// The path exists but is not an SQLite database, or is another program's database. It is
    /// left untouched.
    #[error("{} is not an ffmpeg-worker database: {reason}", path.display())]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// The database was migrated by a newer ffmpeg-worker: this build does not know its schema.
    #[error(
        "{} has schema migration {version}, unknown to this build (written by a newer ffmpeg-worker?)",
        path.display()
    )]
    UnknownMigration {
        /// The database file.
        path: PathBuf,
        /// The applied migration this build does not have.
        version: i64,
    },
    /// Reading the file or its directory failed.
    #[error("cannot open {}: {source}", path.display())]
    Io {
        /// The path that could not be read.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Bringing the schema up to date failed.
    #[error("cannot migrate {}: {source}", path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The PostgreSQL URL does not parse, or the database could not be reached or configured.
    #[error("cannot open PostgreSQL database {target}: {source}")]
    Postgres {
        /// The URL, its password masked.
        target: String,
        /// The error.
        #[source]
        source: sqlx::Error,
    },
    /// Bringing the PostgreSQL schema up to date failed, or the database has a migration this
    /// build does not know (written by a newer ffmpeg-worker).
    #[error("cannot migrate PostgreSQL database {target}: {source}")]
    PostgresMigrate {
        /// The URL, its password masked.
        target: String,
        /// The error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// SQLite could not open or configure the database.
    #[error("cannot open {}: {source}", path.display())]
    Database {
        /// The database file (`:memory:` for an in-memory store).
        path: PathBuf,
        /// The error.
        #[source]
        source: sqlx::Error,
    },
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url_or_path`: `sqlite://PATH`,
    /// `sqlite:PATH` or a plain path; `sqlite::memory:` is [`SqliteStore::open_in_memory`].
    /// URL query parameters are not accepted: the store sets its own options. Migrations run
    /// at open.
    ///
    /// # Errors
    /// [`OpenError::InvalidUrl`] for a malformed location, and the errors of
    /// [`SqliteStore::open_path`].
    pub async fn open(url_or_path: &str) -> Result<SqliteStore, OpenError> {
        match StoreLocation::parse(url_or_path)? {
            StoreLocation::SqliteMemory => SqliteStore::open_in_memory().await,
            StoreLocation::SqliteFile(path) => SqliteStore::open_path(&path).await,
            StoreLocation::Memory => Err(OpenError::InvalidUrl {
                url: url_or_path.to_owned(),
                reason: "`memory:` names the in-memory store, not SQLite (use `sqlite::memory:`)",
            }),
            StoreLocation::Postgres(_) => Err(OpenError::InvalidUrl {
                url: url_or_path.to_owned(),
                reason: "a PostgreSQL URL names the PostgreSQL store, not SQLite",
            }),
        }
    }

    /// Opens (creating if missing) the database file at `path` and applies migrations.
    ///
    /// # Errors
    /// - [`OpenError::MissingDirectory`]: `path`'s directory does not exist.
    /// - [`OpenError::NotADatabase`]: `path` is a directory, a file that is not SQLite, or an
    ///   SQLite database with tables but no ffmpeg-worker migration history. Never modified.
    /// - [`OpenError::UnknownMigration`]: a newer ffmpeg-worker migrated the file.
    /// - [`OpenError::Io`], [`OpenError::Database`], [`OpenError::Migrate`]: anything else.
    pub async fn open_path(path: &Path) -> Result<SqliteStore, OpenError> {
        SqliteStore::open_path_with(path, SqliteOptions::default()).await
    }

    /// [`SqliteStore::open_path`] with non-default [`SqliteOptions`].
    ///
    /// # Errors
    /// Those of [`SqliteStore::open_path`].
    pub async fn open_path_with(path: &Path, options: SqliteOptions) -> Result<SqliteStore, OpenError> {
        check_file(path).await?;
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .disable_statement_logging();
        let sql_err = |source: sqlx::Error| classify_open_error(path, source);

        // No `journal_mode` option: switching to WAL writes the file, which must wait until
        // `refuse_foreign` has seen that it is ours. Checkpoints are left to a task of their
        // own, so that no insert waits for the fsync at the end of one.
        let writer = pool_options(1)
            .connect_with(base.clone().create_if_missing(true).pragma("wal_autocheckpoint", "0"))
            .await
            .map_err(sql_err)?;
        refuse_foreign(&writer, path).await?;
        // WAL is recorded in the file: every later connection uses it.
        sqlx::query("PRAGMA journal_mode = WAL").execute(&writer).await.map_err(sql_err)?;
        migrate(&writer, path).await?;
        let reader = pool_options(READERS).connect_with(base.clone().read_only(true)).await.map_err(sql_err)?;
        let checkpoint_conn = base.connect().await.map_err(sql_err)?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(checkpoint_wal(checkpoint_conn, stop.clone()));
        let checkpointer = Checkpointer { stop, task: std::sync::Mutex::new(Some(task)) };
        Ok(SqliteStore::start(writer, reader, Some(path.to_owned()), Some(checkpointer), options))
    }

    /// A private database in memory, gone when the store is dropped: for tests. It has one
    /// connection, shared by readers and the writer.
    ///
    /// # Errors
    /// [`OpenError::Database`] or [`OpenError::Migrate`] if SQLite fails (it should not).
    pub async fn open_in_memory() -> Result<SqliteStore, OpenError> {
        let path = Path::new(":memory:");
        let options = SqliteConnectOptions::new().in_memory(true).foreign_keys(true).disable_statement_logging();
        let pool = pool_options(1)
            .connect_with(options)
            .await
            .map_err(|source| OpenError::Database { path: path.to_owned(), source })?;
        migrate(&pool, path).await?;
        Ok(SqliteStore::start(pool.clone(), pool, None, None, SqliteOptions::default()))
    }
}

/// Pool settings shared by every pool: connections live as long as the store (so their
/// prepared statements stay cached), and are not pinged before each use.
fn pool_options(connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(connections)
        .min_connections(connections)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
}

/// Refuses, before SQLite touches anything, a path that is a directory, a file that is not an
/// SQLite database, or a new file in a directory that does not exist.
async fn check_file(path: &Path) -> Result<(), OpenError> {
    let io = |source| OpenError::Io { path: path.to_owned(), source };
    let not_a_db = |reason: &str| OpenError::NotADatabase { path: path.to_owned(), reason: reason.to_owned() };
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.is_dir() => Err(not_a_db("it is a directory")),
        Ok(_) => {
            use tokio::io::AsyncReadExt as _;
            let mut header = Vec::with_capacity(SQLITE_HEADER.len());
            tokio::fs::File::open(path)
                .await
                .map_err(io)?
                .take(SQLITE_HEADER.len() as u64)
                .read_to_end(&mut header)
                .await
                .map_err(io)?;
            // SQLite treats an empty file as an empty database.
            if header.is_empty() || header == SQLITE_HEADER {
                Ok(())
            } else {
                Err(not_a_db("it does not start with the SQLite 3 header"))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            match tokio::fs::metadata(dir).await {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(OpenError::MissingDirectory { path: path.to_owned(), dir: dir.to_owned() }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(OpenError::MissingDirectory { path: path.to_owned(), dir: dir.to_owned() })
                }
                Err(source) => Err(OpenError::Io { path: dir.to_owned(), source }),
            }
        }
        Err(e) => Err(io(e)),
    }
}

fn classify_open_error(path: &Path, source: sqlx::Error) -> OpenError {
    match &source {
        sqlx::Error::Database(e) if e.code().as_deref() == Some(SQLITE_NOTADB) => {
            OpenError::NotADatabase { path: path.to_owned(), reason: e.message().to_owned() }
        }
        _ => OpenError::Database { path: path.to_owned(), source },
    }
}

/// Refuses another program's database (before anything writes to it).
async fn refuse_foreign(pool: &SqlitePool, path: &Path) -> Result<(), OpenError> {
    let foreign: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'), \
                (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = '_sqlx_migrations')",
    )
    .fetch_one(pool)
    .await
    .map_err(|source| classify_open_error(path, source))?;
    if foreign.0 > 0 && foreign.1 == 0 {
        return Err(OpenError::NotADatabase {
            path: path.to_owned(),
            reason: "it is an SQLite database of another program (tables, but no ffmpeg-worker migrations)".to_owned(),
        });
    }
    Ok(())
}

/// Applies the migrations this build has; refuses a schema from a newer build.
async fn migrate(pool: &SqlitePool, path: &Path) -> Result<(), OpenError> {
    MIGRATOR.run(pool).await.map_err(|source| match source {
        sqlx::migrate::MigrateError::VersionMissing(version) => {
            OpenError::UnknownMigration { path: path.to_owned(), version }
        }
        source => OpenError::Migrate { path: path.to_owned(), source },
    })
}

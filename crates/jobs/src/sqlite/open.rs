//! Opening a database: the location (URL or path) as [`StoreLocation`] parses it, checks that
//! the file is ours before SQLite writes to it, connection pools, WAL mode, migrations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteLockingMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio_util::sync::CancellationToken;

use super::batch::checkpoint_wal;
use super::rows::{SQLITE_FULL, primary_code};
use super::{Checkpointer, SqliteOptions, SqliteStore};
use crate::disk_space::DiskSpace;
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
/// SQLite's primary result code `SQLITE_IOERR`: among others, the shared-memory file of a
/// WAL database could not be created or grown (`SQLITE_IOERR_SHMSIZE`, ...).
const SQLITE_IOERR: i64 = 10;
/// Free space under which a first read failing with [`SQLITE_IOERR`] is taken for a disk too
/// full for the shared-memory file (32 KiB for the first 4,096 WAL frames), and the database
/// is opened without one ([`SqliteStore::open_path_with`]).
const SHM_ROOM: u64 = 1024 * 1024;

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
    /// The disk holding the database is full, and opening it must write: to create it, or to
    /// apply a migration this build has and the file does not. Nothing was changed (a new
    /// database may be left as an empty file, which SQLite takes for an empty database).
    #[error(
        "cannot open {}: {step} needs room, and the disk holding it is full{}; free some space there and start again",
        path.display(),
        space.as_ref().map(|s| format!(" ({s})")).unwrap_or_default()
    )]
    DiskFull {
        /// The database file.
        path: PathBuf,
        /// What needed to write: "creating the database", "applying this build's schema
        /// migrations".
        step: &'static str,
        /// The file system holding the database, as it was then (`None`: unknown).
        space: Option<DiskSpace>,
        /// SQLite's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
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
    /// - [`OpenError::DiskFull`]: the disk holding it is full, and opening must write (a new
    ///   database, a migration this build has and the file does not).
    /// - [`OpenError::Io`], [`OpenError::Database`], [`OpenError::Migrate`]: anything else.
    ///
    /// A database that needs no write opens on a full disk too: reads answer, writes fail
    /// [`StoreError::DiskFull`](crate::StoreError::DiskFull) until space is freed. When the
    /// disk cannot even hold SQLite's shared-memory file (under 1 MiB free, and none left by a
    /// process that had the file open), this process opens it alone (exclusive locking mode,
    /// one connection, checkpointing as it commits) until it restarts.
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
        let writer_options = base.clone().create_if_missing(true).pragma("wal_autocheckpoint", "0");
        // The first read of a WAL database (at connect: a pragma that loads the schema) creates
        // its shared-memory file (`-shm`), which a full disk refuses: SQLite then cannot even
        // read (tester finding K1). Without that file (exclusive locking mode: the index lives
        // in this process's memory) it can read, and writes again once space is freed; but only
        // this one connection may use the file.
        let (writer, exclusive) = match open_writer(writer_options, path).await {
            Ok(writer) => (writer, false),
            Err(OpenError::Database { source, .. }) if primary_code(&source) == Some(SQLITE_IOERR) => {
                let space = disk_space(path).await;
                if space.as_ref().is_none_or(|s| s.free_bytes >= SHM_ROOM) {
                    return Err(OpenError::Database { path: path.to_owned(), source });
                }
                let alone =
                    base.clone().locking_mode(SqliteLockingMode::Exclusive).pragma("wal_autocheckpoint", "1000");
                let writer = open_writer(alone, path).await?;
                tracing::warn!(
                    database = %path.display(),
                    disk = %space.map(|s| s.to_string()).unwrap_or_default(),
                    error = %source,
                    "the disk holding the database is full: SQLite cannot create its shared-memory file, so this \
                     process opened the database alone (exclusive lock, one connection) until it restarts; other \
                     processes cannot open it meanwhile"
                );
                (writer, true)
            }
            Err(e) => return Err(e),
        };
        // WAL is recorded in the file: every later connection uses it.
        if let Err(e) = sqlx::query("PRAGMA journal_mode = WAL").execute(&writer).await {
            return Err(disk_full_or(path, "creating the database", e, sql_err).await);
        }
        migrate(&writer, path).await?;
        if exclusive {
            // One connection reads and writes, and checkpoints as it commits.
            return Ok(SqliteStore::start(writer.clone(), writer, Some(path.to_owned()), None, options));
        }
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

/// The writer's pool (one connection) with `options`, once [`refuse_foreign`] has seen that
/// the file is ours; closed again when it is not.
async fn open_writer(options: SqliteConnectOptions, path: &Path) -> Result<SqlitePool, OpenError> {
    let writer = pool_options(1).connect_with(options).await.map_err(|e| classify_open_error(path, e))?;
    if let Err(e) = refuse_foreign(&writer, path).await {
        writer.close().await;
        return Err(e);
    }
    Ok(writer)
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
    let result = MIGRATOR.run(pool).await;
    let full = match &result {
        Err(sqlx::migrate::MigrateError::Execute(e) | sqlx::migrate::MigrateError::ExecuteMigration(e, _)) => {
            primary_code(e) == Some(SQLITE_FULL)
        }
        _ => false,
    };
    match result {
        Ok(()) => Ok(()),
        Err(source) if full => Err(OpenError::DiskFull {
            path: path.to_owned(),
            step: "applying this build's schema migrations",
            space: disk_space(path).await,
            source: Box::new(source),
        }),
        Err(sqlx::migrate::MigrateError::VersionMissing(version)) => {
            Err(OpenError::UnknownMigration { path: path.to_owned(), version })
        }
        Err(source) => Err(OpenError::Migrate { path: path.to_owned(), source }),
    }
}

/// The file system holding the database at `path` ([`DiskSpace::of`], on a blocking thread).
async fn disk_space(path: &Path) -> Option<DiskSpace> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || DiskSpace::of(&path)).await.ok().flatten()
}

/// [`OpenError::DiskFull`] naming `step` when `e` is SQLite's `SQLITE_FULL`, else `other(e)`.
async fn disk_full_or(
    path: &Path,
    step: &'static str,
    e: sqlx::Error,
    other: impl FnOnce(sqlx::Error) -> OpenError,
) -> OpenError {
    if primary_code(&e) == Some(SQLITE_FULL) {
        OpenError::DiskFull { path: path.to_owned(), step, space: disk_space(path).await, source: Box::new(e) }
    } else {
        other(e)
    }
}

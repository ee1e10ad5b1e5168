//! A real, throw-away PostgreSQL server for tests: Debian's `postgresql` binaries,
//! `initdb` into a temporary directory, listening on 127.0.0.1 on a free port, stopped and
//! removed when the test process ends, however it ends.
//!
//! One server per test process ([`shared`]), a fresh database per test
//! ([`PgServer::fresh_database`]):
//!
//! ```no_run
//! let url = pg_harness::shared().fresh_database();
//! assert!(url.starts_with("postgres://"));
//! ```
//!
//! - **Binaries.** `PG_BIN_DIR` if set, else the newest `/usr/lib/postgresql/*/bin`, else
//!   `initdb` on `PATH`. None found: [`HarnessError::NoBinaries`] (`.ci/run` installs Debian's
//!   `postgresql` package; the tests fail rather than skip without it).
//! - **Root.** `initdb` refuses to run as root: as root, `initdb`, `pg_ctl` and the server run
//!   as the `postgres` user (`runuser`), in a directory handed to that user.
//! - **Stopping.** `pg_ctl` runs the server detached; a watchdog process (`sh`, in its own
//!   process group) holds the read end of a pipe whose write end only this process has. When
//!   this process exits (normally, by a panic, or killed with SIGKILL) the kernel closes the
//!   pipe; the watchdog then stops the server (`pg_ctl stop -m immediate`) and removes the
//!   directory. No `Drop` of a static is needed.
//! - **Speed.** `fsync=off`, `synchronous_commit=off`, `full_page_writes=off`: a test server
//!   loses nothing it needs by a crash of the machine. A benchmark that must measure what a
//!   user's server does starts one with PostgreSQL's own durability settings instead
//!   ([`PgServer::start_durable`]).
//! - **More settings.** `PG_HARNESS_OPTIONS`, when set, is appended to the server's options
//!   (e.g. `-c shared_preload_libraries=pg_stat_statements`, which `bench cluster` uses to count
//!   statements per job).

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Why the server could not be started.
#[derive(Debug)]
pub enum HarnessError {
    /// No PostgreSQL server binaries were found.
    NoBinaries,
    /// A program could not be run or failed.
    Command {
        /// What was run.
        what: String,
        /// Its output or the error.
        detail: String,
    },
    /// A file-system operation failed.
    Io(std::io::Error),
}

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HarnessError::NoBinaries => f.write_str(
                "no PostgreSQL server binaries (install Debian's `postgresql` package, or set PG_BIN_DIR to \
                 the directory holding initdb and pg_ctl)",
            ),
            HarnessError::Command { what, detail } => write!(f, "{what} failed: {detail}"),
            HarnessError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HarnessError {}

impl From<std::io::Error> for HarnessError {
    fn from(e: std::io::Error) -> Self {
        HarnessError::Io(e)
    }
}

/// A running PostgreSQL server (see the [crate docs](crate)).
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    /// The data directory and socket directory live under it.
    root: PathBuf,
    port: u16,
    /// Whether the programs run as the `postgres` user (this process is root).
    as_postgres: bool,
    /// Held open for the process's life: its closing tells the watchdog to stop the server.
    _watchdog: (Child, ChildStdin),
    databases: AtomicU32,
}

/// The server of this test process, started on first use.
///
/// # Panics
/// When the server cannot be started (no binaries, `initdb` failed): the message says why.
pub fn shared() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| PgServer::start().unwrap_or_else(|e| panic!("cannot start a test PostgreSQL server: {e}")))
}

fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    })
}

fn is_root() -> bool {
    // `id -u` rather than a libc call: this crate forbids unsafe code and has no libc binding.
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Runs `cmd`, returning its stdout; an error carries its output.
fn run(mut cmd: Command, what: &str) -> Result<String, HarnessError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::Command { what: what.to_owned(), detail: e.to_string() })?;
    if !out.status.success() {
        let detail =
            format!("{}: {}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        return Err(HarnessError::Command { what: what.to_owned(), detail });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16, HarnessError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl PgServer {
    /// `initdb` into a new temporary directory and start the server (see the [crate docs](crate)).
    ///
    /// # Errors
    /// [`HarnessError`]: no binaries, or a step failed (its output is in the error).
    pub fn start() -> Result<PgServer, HarnessError> {
        PgServer::start_with("-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB")
    }

    /// The same as [`PgServer::start`], with PostgreSQL's default durability and memory
    /// settings (`fsync`, `synchronous_commit` and `full_page_writes` on, `shared_buffers`
    /// 128 MB): a commit is acknowledged once it is on disk, as on a user's server. For
    /// benchmarks.
    ///
    /// # Errors
    /// As [`PgServer::start`].
    pub fn start_durable() -> Result<PgServer, HarnessError> {
        PgServer::start_with("")
    }

    /// Starts a server with `settings` (server options, e.g. `-c fsync=off`) before
    /// `PG_HARNESS_OPTIONS`.
    fn start_with(settings: &str) -> Result<PgServer, HarnessError> {
        let bin = find_bin().ok_or(HarnessError::NoBinaries)?;
        let as_postgres = is_root();
        // Kept: the watchdog removes it once the server has stopped.
        let root = tempfile::Builder::new().prefix("pg-harness-").tempdir()?.keep();
        if as_postgres {
            let mut chown = Command::new("chown");
            chown.arg("postgres:").arg(&root);
            run(chown, "chown postgres")?;
        }
        let data = root.join("data");
        let program = |name: &str| -> Command {
            if as_postgres {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", "postgres", "--"]).arg(bin.join(name));
                cmd
            } else {
                Command::new(bin.join(name))
            }
        };
        let watchdog = spawn_watchdog(&program("pg_ctl"), &data, &root)?;
        let mut initdb = program("initdb");
        initdb.arg("-D").arg(&data).args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"]);
        run(initdb, "initdb")?;
        // The port may be taken between the probe and the server's bind: try a few.
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let extra = std::env::var("PG_HARNESS_OPTIONS").unwrap_or_default();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} {settings} -c max_connections=400 {extra}",
                root.display()
            );
            let mut pg_ctl = program("pg_ctl");
            pg_ctl.arg("-D").arg(&data).args(["-w", "-t", "60", "-o", &options, "-l"]).arg(root.join("server.log"));
            pg_ctl.arg("start").stdout(Stdio::null());
            match run(pg_ctl, "pg_ctl start") {
                Ok(_) => {
                    return Ok(PgServer {
                        bin,
                        root,
                        port,
                        as_postgres,
                        _watchdog: watchdog,
                        databases: AtomicU32::new(0),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        let log = std::fs::read_to_string(root.join("server.log")).unwrap_or_default();
        Err(last.map_or(HarnessError::NoBinaries, |e| match e {
            HarnessError::Command { what, detail } => {
                HarnessError::Command { what, detail: format!("{detail}\n{log}") }
            }
            e => e,
        }))
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` (user `postgres`, no password: the server trusts local connections).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a new, empty database and returns its URL. Blocks for the few milliseconds
    /// `createdb` takes.
    ///
    /// # Panics
    /// When `createdb` fails.
    pub fn fresh_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{n}");
        let mut createdb = Command::new(self.bin.join("createdb"));
        createdb.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", &name]);
        if let Err(e) = run(createdb, "createdb") {
            panic!("{e}");
        }
        self.url(&name)
    }

    /// The temporary directory holding the server's files (its log is `server.log`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The process id of the server's main process (`postmaster.pid`), whose children are its
    /// backends; `None` when it cannot be read.
    pub fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.root.join("data").join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Whether the server's programs run as the `postgres` user.
    pub fn runs_as_postgres(&self) -> bool {
        self.as_postgres
    }
}

/// Starts the watchdog: a shell in its own process group that waits for end-of-file on its
/// standard input (this process's exit), then stops the server and removes `root`.
fn spawn_watchdog(pg_ctl: &Command, data: &Path, root: &Path) -> Result<(Child, ChildStdin), HarnessError> {
    use std::os::unix::process::CommandExt as _;
    let mut stop: Vec<std::ffi::OsString> = vec![pg_ctl.get_program().to_owned()];
    stop.extend(pg_ctl.get_args().map(ToOwned::to_owned));
    stop.extend([
        "-D".into(),
        data.as_os_str().to_owned(),
        "-m".into(),
        "immediate".into(),
        "-w".into(),
        "stop".into(),
    ]);
    let mut child = Command::new("sh")
        .arg("-c")
        // $1: the directory to remove; the rest: the stop command.
        .arg(r#"root="$1"; shift; cat >/dev/null; "$@" >/dev/null 2>&1; rm -rf "$root""#)
        .arg("pg-harness-watchdog")
        .arg(root)
        .args(stop)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Not in the test's process group: Ctrl-C on `cargo test` must not kill it first.
        .process_group(0)
        .spawn()?;
    let stdin = child.stdin.take().ok_or_else(|| HarnessError::Io(std::io::Error::other("no watchdog stdin")))?;
    Ok((child, stdin))
}

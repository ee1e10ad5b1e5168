//! The servers a bench measures: build and start `ffmpeg-worker` or the original Python design
//! on 127.0.0.1, wait until they answer, read their resident memory, and stop them when the
//! guard is dropped (also when the bench fails half-way).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::Client;
use crate::Result;

/// How long a server may take to start answering `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds `ffmpeg-worker` in release mode (unless `build` is false: then the last release build
/// is used as it is) and returns the binary's path.
pub(super) fn release_binary(build: bool) -> Result<PathBuf> {
    if build {
        crate::run("cargo", &["build", "--release", "--package", "ffmpeg-worker-server", "--bin", "ffmpeg-worker"])?;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| crate::root().join("target"), PathBuf::from);
    let bin = target.join("release").join("ffmpeg-worker");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} is missing: build it with `cargo build --release`", bin.display()).into())
    }
}

/// Settings of one `ffmpeg-worker` process under test.
#[derive(Clone, Copy)]
pub(super) struct WorkerConfig<'a> {
    /// The release binary.
    pub(super) bin: &'a Path,
    /// `--data-path`.
    pub(super) data: &'a Path,
    /// `--database-url`, e.g. `sqlite:///tmp/x/jobs.db`.
    pub(super) database_url: &'a str,
    /// `--concurrency` (0: API-only, runs no job).
    pub(super) concurrency: usize,
    /// `RUST_LOG`. It must let the `listening` line of `ffmpeg_worker_server::serve` through.
    pub(super) rust_log: &'a str,
    /// Where the server's stdout and stderr go.
    pub(super) log: &'a Path,
}

impl<'a> WorkerConfig<'a> {
    /// An API-only server (`--concurrency 0`) that logs warnings and its `listening` line: what
    /// the benches that run no job start. Set other fields with struct update syntax.
    pub(super) fn new(bin: &'a Path, data: &'a Path, database_url: &'a str, log: &'a Path) -> Self {
        Self { bin, data, database_url, concurrency: 0, rust_log: "warn,ffmpeg_worker_server::serve=info", log }
    }
}

/// Resident memory of a process, from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy)]
pub(super) struct Memory {
    /// `VmRSS`: resident now.
    pub(super) rss_kib: u64,
    /// `VmHWM`: the peak resident size so far.
    pub(super) peak_kib: u64,
}

/// A running server. Dropping it stops the process: SIGTERM, then SIGKILL after
/// [`STOP_TIMEOUT`], then reaps it.
pub(super) struct Server {
    child: Child,
    name: &'static str,
    base: String,
    log: PathBuf,
    /// Where this process's part of the log starts (a restart appends to the same log).
    log_offset: usize,
}

impl Server {
    /// Starts `ffmpeg-worker` on port 0 and reads the port from its `listening address=...` log line.
    pub(super) fn ffmpeg_worker(config: &WorkerConfig<'_>) -> Result<Self> {
        Self::ffmpeg_worker_with(config, &[])
    }

    /// [`Server::ffmpeg_worker`] with `extra` command-line arguments; the log is appended to
    /// (a restart on the same files keeps the earlier log).
    pub(super) fn ffmpeg_worker_with(config: &WorkerConfig<'_>, extra: &[&str]) -> Result<Self> {
        let log = File::options().create(true).append(true).open(config.log)?;
        let log_offset = usize::try_from(log.metadata()?.len())?;
        let mut cmd = Command::new(config.bin);
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--log-format", "pretty", "--data-path"])
            .arg(config.data)
            .args(["--database-url", config.database_url, "--concurrency", &config.concurrency.to_string()])
            .args(extra)
            .env("RUST_LOG", config.rust_log)
            .env("NO_COLOR", "1");
        // Settings that would change what is measured, should the caller's environment hold them.
        for var in ["API_TOKENS", "API_TOKENS_FILE", "RATE_LIMIT", "RETENTION", "FFMPEG_BIN"] {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", config.bin.display()))?;
        let mut server =
            Self { child, name: "ffmpeg-worker", base: String::new(), log: config.log.to_owned(), log_offset };
        server.base = server.wait_for_log_address()?;
        server.wait_healthy()?;
        Ok(server)
    }

    /// Starts the original Python design with uvicorn from `venv`, in `app_dir`
    /// (`.../reference/original-python`), on a free port, with `DATA_PATH=data` and uvicorn's
    /// log level `warning` (no access log: the same as `RUST_LOG=warn` for ours). `path_first`
    /// goes in front of `PATH`, to put stand-ins for ffprobe and ffmpeg there.
    pub(super) fn original(
        venv: &Path,
        app_dir: &Path,
        data: &Path,
        path_first: Option<&Path>,
        log: &Path,
    ) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log_file = File::create(log)?;
        let uvicorn = venv.join("bin").join("uvicorn");
        let mut cmd = Command::new(&uvicorn);
        cmd.args(["app.main:app", "--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "warning"])
            .current_dir(app_dir)
            .env("DATA_PATH", data);
        if let Some(first) = path_first {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let dirs = std::iter::once(first.to_owned()).chain(std::env::split_paths(&path));
            cmd.env("PATH", std::env::join_paths(dirs)?);
        }
        cmd.stdin(Stdio::null()).stdout(log_file.try_clone()?).stderr(log_file);
        let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", uvicorn.display()))?;
        let mut server = Self {
            child,
            name: "original",
            base: format!("http://127.0.0.1:{port}"),
            log: log.to_owned(),
            log_offset: 0,
        };
        server.wait_healthy()?;
        Ok(server)
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub(super) fn base(&self) -> &str {
        &self.base
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and reaps it.
    pub(super) fn kill_9(mut self) -> Result {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// The process id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now and at its peak.
    pub(super) fn memory(&self) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> Result<u64> {
            let line = status.lines().find_map(|l| l.strip_prefix(name)).ok_or(format!("no {name} in /proc status"))?;
            Ok(line.trim().trim_end_matches("kB").trim().parse()?)
        };
        Ok(Memory { rss_kib: field("VmRSS:")?, peak_kib: field("VmHWM:")? })
    }

    /// The last lines of the server's log, for error messages.
    pub(super) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("{} log ({}):\n{tail}", self.name, self.log.display())
    }

    fn exited(&mut self) -> Result {
        match self.child.try_wait()? {
            Some(status) => Err(format!("{} exited during start-up ({status})\n{}", self.name, self.log_tail()).into()),
            None => Ok(()),
        }
    }

    /// Polls the log for the `listening` line and returns the address in it.
    fn wait_for_log_address(&mut self) -> Result<String> {
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let text = text.get(self.log_offset..).unwrap_or_default();
            let address = text.lines().filter(|l| l.contains("listening")).find_map(|l| {
                let at = l.find("http://")?;
                let url = &l[at..];
                let end = url.find(|c: char| c.is_whitespace() || c == '"' || c == ',').unwrap_or(url.len());
                Some(url[..end].to_owned())
            });
            if let Some(address) = address {
                return Ok(address);
            }
            self.exited()?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("{} logged no `listening address=...` line in {START_TIMEOUT:?}\n{}", self.name, self.log_tail())
            .into())
    }

    /// Polls `GET /health` until it answers 200.
    fn wait_healthy(&mut self) -> Result {
        let client = Client::new(&self.base);
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if client.health() {
                return Ok(());
            }
            self.exited()?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("{} did not answer /health in {START_TIMEOUT:?}\n{}", self.name, self.log_tail()).into())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // std can only SIGKILL; ask politely first so the server shuts down cleanly.
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).stderr(Stdio::null()).status();
        let start = Instant::now();
        while start.elapsed() < STOP_TIMEOUT {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop within {STOP_TIMEOUT:?} of SIGTERM: killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

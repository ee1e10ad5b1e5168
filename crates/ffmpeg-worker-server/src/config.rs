//! Configuration: every setting is a command-line flag and an environment variable (clap
//! `long, env`), with defaults that run on a laptop. Parsed once in `main`, passed explicitly.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Settings of `ffmpeg-worker serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Data directory: every input and output path is relative to it, and no job can reach outside it.
    /// Created if missing.
    #[arg(long, env = "DATA_PATH", default_value = "./data")]
    pub data_path: PathBuf,

    /// Address to listen on. Use 0.0.0.0 to accept connections from other machines.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// TCP port to listen on; 0 picks a free port (logged at start-up).
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,

    /// Longest a job may run, in seconds (0: no limit). A job's own `timeout_seconds` is capped by it.
    #[arg(long, env = "FFMPEG_TIMEOUT", default_value_t = 3600)]
    pub ffmpeg_timeout: u64,

    /// The ffmpeg binary: a path, or a name looked up on PATH.
    #[arg(long, env = "FFMPEG_BIN", default_value = "ffmpeg")]
    pub ffmpeg_bin: PathBuf,

    /// Jobs run at once by this process. 0 runs none: an API-only node that queues jobs for
    /// other nodes sharing its database.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub concurrency: u16,

    /// Where jobs are stored: `sqlite://PATH` (created if missing, kept outside the data directory),
    /// or `memory:` (nothing survives a restart).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://ffmpeg-worker.db")]
    pub database_url: String,

    /// Starts a job may have: a job interrupted by a crash is re-queued until it has been started
    /// this many times, then it fails with error "interrupted".
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,

    /// Delete finished job records older than this (e.g. `7d`, `12h`). Off by default.
    #[arg(long, env = "RETENTION", value_parser = humantime::parse_duration)]
    pub retention: Option<Duration>,

    /// On SIGTERM/SIGINT, how long running jobs may continue before they are stopped and re-queued.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Log format on stderr.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
}

impl ServeConfig {
    /// The server-wide job time limit, `None` when `ffmpeg_timeout` is 0.
    pub fn max_timeout(&self) -> Option<Duration> {
        (self.ffmpeg_timeout > 0).then(|| Duration::from_secs(self.ffmpeg_timeout))
    }
}

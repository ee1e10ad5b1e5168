//! Fixtures shared by the integration tests: the stores under test with the `conformance!`
//! macro that runs a behaviour against each of them, media made with ffmpeg's lavfi sources,
//! commands run as jobs through the real ffmpeg, and shell scripts standing in for ffmpeg with
//! the processes they start.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ffmpeg_core::sandbox::Sandbox;
use jobs::{
    FfmpegConfig, FfmpegRunner, Job, JobStore, Jobs, JobsConfig, MemoryStore, Runner, Shutdown, SqliteStore,
    SubmitOptions,
};
use tempfile::TempDir;

/// The store under test.
pub(crate) type Store = Arc<dyn JobStore>;

/// A store under test, and the directory holding its file (if any).
pub(crate) struct Fixture {
    pub(crate) store: Store,
    _dir: Option<TempDir>,
}

pub(crate) async fn memory() -> Fixture {
    Fixture { store: Arc::new(MemoryStore::new()), _dir: None }
}

pub(crate) async fn sqlite_memory() -> Fixture {
    Fixture { store: Arc::new(SqliteStore::open_in_memory().await.unwrap()), _dir: None }
}

/// A [`PgStore`](jobs::postgres::PgStore) on a fresh database of this test process's
/// PostgreSQL server (`pg_harness`).
pub(crate) async fn postgres_store() -> jobs::postgres::PgStore {
    let url = tokio::task::spawn_blocking(|| pg_harness::shared().fresh_database()).await.unwrap();
    jobs::postgres::PgStore::open(&url, jobs::postgres::PgSettings::default()).await.unwrap()
}

pub(crate) async fn postgres() -> Fixture {
    Fixture { store: Arc::new(postgres_store().await), _dir: None }
}

pub(crate) async fn sqlite_file() -> Fixture {
    let dir = TempDir::new().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    Fixture { store: Arc::new(SqliteStore::open(&url).await.unwrap()), _dir: Some(dir) }
}

/// Runs each behaviour (an `async fn(&Store)` of the calling module) against every store: a
/// module of tests per store.
macro_rules! conformance {
    ($($behaviour:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                super::$behaviour(&$crate::fixture::memory().await.store).await;
            })*
        }
        mod sqlite_memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                super::$behaviour(&$crate::fixture::sqlite_memory().await.store).await;
            })*
        }
        mod sqlite_file {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                let fixture = $crate::fixture::sqlite_file().await;
                super::$behaviour(&fixture.store).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                super::$behaviour(&$crate::fixture::postgres().await.store).await;
            })*
        }
    };
}
pub(crate) use conformance;

/// `path`: `seconds` of 160x120 testsrc at 25 fps (H.264, `-preset ultrafast`) and a 44.1 kHz
/// mono sine (AAC), made with ffmpeg's lavfi sources.
pub(crate) fn lavfi_clip(path: &Path, seconds: u32) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=duration={seconds}:size=160x120:rate=25"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=duration={seconds}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg could not make {}", path.display());
}

/// Runs each command as a job through the real ffmpeg (one worker, a [`MemoryStore`], data
/// directory `root`), one at a time in order, and returns the finished jobs in that order.
pub(crate) async fn run_jobs(root: &Path, sandbox: Sandbox, commands: &[&str]) -> Vec<Job> {
    let store: Store = Arc::new(MemoryStore::new());
    let runner: Arc<dyn Runner> = Arc::new(FfmpegRunner::new(FfmpegConfig::new("ffmpeg", root)));
    let config = JobsConfig { concurrency: 1, idle_wait: Duration::from_millis(100), ..JobsConfig::default() };
    let jobs = Jobs::new(Arc::clone(&store), runner, sandbox, config);
    let shutdown = Shutdown::default();
    let _workers = jobs.spawn_workers(&shutdown);
    let mut ids = Vec::new();
    for command in commands {
        ids.push(jobs.submit(command, SubmitOptions::default()).await.unwrap().id);
    }
    // A bound for a test that hangs, not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut done = Vec::new();
    for id in ids {
        done.push(finished_by(&store, &id, deadline).await);
    }
    shutdown.stop_claiming.cancel();
    done
}

/// Job `id` of `store` once it is finished, polled every 20 ms; panics (the test hangs
/// otherwise) when it is not by `deadline`.
pub(crate) async fn finished_by(store: &Store, id: &jobs::JobId, deadline: Instant) -> Job {
    loop {
        let job = store.get(id).await.unwrap().unwrap();
        if job.status.is_finished() {
            return job;
        }
        assert!(Instant::now() < deadline, "the job never finished: {job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 20 ms until it holds; panics, naming `what`, after a minute.
pub(crate) async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`run_jobs`] with one command: the finished job.
pub(crate) async fn run_job(root: &Path, sandbox: Sandbox, command: &str) -> Job {
    run_jobs(root, sandbox, &[command]).await.remove(0)
}

/// An executable shell script `dir/name` that runs `body`: a stand-in for ffmpeg or ffprobe.
pub(crate) fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// [`script`] named `fake-ffmpeg`.
pub(crate) fn fake_ffmpeg(dir: &Path, body: &str) -> PathBuf {
    script(dir, "fake-ffmpeg", body)
}

/// Whether process `pid` exists and is not a zombie (a zombie has ended: it only waits to be
/// reaped). The state is the third field of `/proc/PID/stat`, after the `(name)`.
pub(crate) fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Waits, polling every 20 ms, until none of `pids` is [`alive`]; panics naming one that still
/// is after `within`. A signal is delivered, not waited for: a process killed with SIGKILL
/// that already closed its pipes can still be on its way out for a moment on a loaded machine.
pub(crate) async fn wait_gone(pids: impl IntoIterator<Item = i32>, within: Duration) {
    let deadline = Instant::now() + within;
    for pid in pids {
        while alive(pid) {
            assert!(Instant::now() < deadline, "process {pid} still runs after {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The process ids written one per line (or separated by spaces) in `text`.
pub(crate) fn pids(text: &str) -> Vec<i32> {
    text.split_whitespace().map(|pid| pid.parse().unwrap()).collect()
}

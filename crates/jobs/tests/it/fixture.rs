//! Fixtures shared by the integration tests: the stores under test with the `conformance!`
//! macro that runs a behaviour against each of them, media made with ffmpeg's lavfi sources,
//! commands run as jobs through the real ffmpeg, and shell scripts standing in for ffmpeg with
//! the processes they start, and a storage that forwards every call but those a test changes
//! ([`Intercepted`]).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ffmpeg_core::sandbox::Sandbox;
use jobs::storage::{
    ByteStream, FileMeta, ListPage, NameLimits, OpenUpload, Preconditions, PutOptions, StagedPut, Storage,
    StorageError, StoredFile,
};
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

/// Real ffmpeg jobs in the data directory `root`: `concurrency` workers (idle wait 100 ms) on
/// a [`MemoryStore`]. They claim until `shutdown.stop_claiming` is cancelled, and stop when
/// `workers` is dropped.
pub(crate) struct Workers {
    pub(crate) jobs: Arc<Jobs>,
    pub(crate) store: Store,
    pub(crate) shutdown: Shutdown,
    pub(crate) workers: tokio::task::JoinSet<()>,
}

impl Workers {
    pub(crate) fn start(root: &Path, sandbox: Sandbox, concurrency: usize) -> Workers {
        let store: Store = Arc::new(MemoryStore::new());
        let runner: Arc<dyn Runner> = Arc::new(FfmpegRunner::new(FfmpegConfig::new("ffmpeg", root)));
        let config = JobsConfig { concurrency, idle_wait: Duration::from_millis(100), ..JobsConfig::default() };
        let jobs = Jobs::new(Arc::clone(&store), runner, sandbox, config);
        let shutdown = Shutdown::default();
        let workers = jobs.spawn_workers(&shutdown);
        Workers { jobs, store, shutdown, workers }
    }
}

/// Runs each command as a job through the real ffmpeg (one worker, a [`MemoryStore`], data
/// directory `root`), one at a time in order, and returns the finished jobs in that order.
pub(crate) async fn run_jobs(root: &Path, sandbox: Sandbox, commands: &[&str]) -> Vec<Job> {
    let Workers { jobs, store, shutdown, workers: _workers } = Workers::start(root, sandbox, 1);
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

/// The calls of a [`Storage`] a test's [`Intercepted`] storage may change: each is given the
/// storage it wraps, and by default forwards the call to it.
#[async_trait::async_trait]
pub(crate) trait Intercept: std::fmt::Debug + Send + Sync + 'static {
    /// [`Storage::put`].
    async fn put(
        &self,
        inner: &dyn Storage,
        path: &str,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<Box<dyn StagedPut>, StorageError> {
        inner.put(path, body, options).await
    }

    /// [`Storage::open`].
    async fn open(&self, inner: &dyn Storage, path: &str) -> Result<Box<dyn StoredFile>, StorageError> {
        inner.open(path).await
    }

    /// [`Storage::put_temp`].
    async fn put_temp(&self, inner: &dyn Storage, temp: &str, body: ByteStream) -> Result<u64, StorageError> {
        inner.put_temp(temp, body).await
    }

    /// [`Storage::publish_temp`].
    async fn publish_temp(
        &self,
        inner: &dyn Storage,
        temp: &str,
        path: &str,
        create_only: bool,
    ) -> Result<(), StorageError> {
        inner.publish_temp(temp, path, create_only).await
    }

    /// [`Storage::ping`].
    async fn ping(&self, inner: &dyn Storage) -> Result<(), StorageError> {
        inner.ping().await
    }
}

/// A storage that forwards every call to `inner`, the calls of [`Intercept`] through
/// `intercept` (a storage that fails, waits or runs a hook at one step).
#[derive(Debug)]
pub(crate) struct Intercepted<I> {
    pub(crate) inner: Arc<dyn Storage>,
    pub(crate) intercept: I,
}

impl<I: Intercept> Intercepted<I> {
    /// `inner` with its calls through `intercept`, as a storage.
    pub(crate) fn wrap(inner: Arc<dyn Storage>, intercept: I) -> Arc<dyn Storage> {
        Arc::new(Intercepted { inner, intercept })
    }
}

#[async_trait::async_trait]
impl<I: Intercept> Storage for Intercepted<I> {
    fn name_limits(&self) -> NameLimits {
        self.inner.name_limits()
    }
    fn display_name(&self) -> String {
        self.inner.display_name()
    }
    async fn check_path(&self, path: &str) -> Result<String, StorageError> {
        self.inner.check_path(path).await
    }
    async fn put(&self, path: &str, body: ByteStream, options: PutOptions) -> Result<Box<dyn StagedPut>, StorageError> {
        self.intercept.put(&*self.inner, path, body, options).await
    }
    async fn open(&self, path: &str) -> Result<Box<dyn StoredFile>, StorageError> {
        self.intercept.open(&*self.inner, path).await
    }
    async fn head(&self, path: &str) -> Result<FileMeta, StorageError> {
        self.inner.head(path).await
    }
    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, StorageError> {
        self.inner.list(prefix, after, limit).await
    }
    async fn is_directory(&self, path: &str) -> Result<bool, StorageError> {
        self.inner.is_directory(path).await
    }
    async fn delete(&self, path: &str, recursive: bool) -> Result<(), StorageError> {
        self.inner.delete(path, recursive).await
    }
    async fn check_writable_paths(&self, files: &[String], dirs: &[String]) -> Result<(), StorageError> {
        self.inner.check_writable_paths(files, dirs).await
    }
    async fn ping(&self) -> Result<(), StorageError> {
        self.intercept.ping(&*self.inner).await
    }
    async fn delete_if(&self, path: &str, recursive: bool, preconditions: &Preconditions) -> Result<(), StorageError> {
        self.inner.delete_if(path, recursive, preconditions).await
    }
    fn has_temp_area(&self) -> bool {
        self.inner.has_temp_area()
    }
    async fn put_temp(&self, temp: &str, body: ByteStream) -> Result<u64, StorageError> {
        self.intercept.put_temp(&*self.inner, temp, body).await
    }
    async fn publish_temp(&self, temp: &str, path: &str, create_only: bool) -> Result<(), StorageError> {
        self.intercept.publish_temp(&*self.inner, temp, path, create_only).await
    }
    async fn copy_to_temp(&self, path: &str, temp: &str) -> Result<(), StorageError> {
        self.inner.copy_to_temp(path, temp).await
    }
    async fn list_temps(&self, prefix: &str) -> Result<Vec<FileMeta>, StorageError> {
        self.inner.list_temps(prefix).await
    }
    async fn delete_temp(&self, temp: &str) -> Result<(), StorageError> {
        self.inner.delete_temp(temp).await
    }
    async fn open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StorageError> {
        self.inner.open_uploads(prefix).await
    }
    async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StorageError> {
        self.inner.abort_upload(upload).await
    }
}

//! `jobs::files::Files`: which uploads and deletions a queued job blocks.

use std::sync::Arc;

use ffmpeg_core::sandbox::Sandbox;
use jobs::files::{Files, FilesError};
use jobs::storage::{ByteStream, LocalStorage, PutOptions, PutOutcome, StagedPut, Storage, StorageError};
use jobs::{JobStore, SqliteStore, SubmitOptions};

use crate::fixture::{Intercept, Intercepted};

fn body(text: &'static str) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(bytes::Bytes::from_static(text.as_bytes())) }))
}

/// A job stored before footprints were recorded (its footprint is NULL) blocks the files its
/// command uses, as its worker will resolve them, and no others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stored_without_a_footprint_blocks_only_the_files_its_command_uses() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("in")).unwrap();
    let db = dir.path().join("jobs.db");
    let store: Arc<dyn JobStore> = Arc::new(SqliteStore::open(&format!("sqlite://{}", db.display())).await.unwrap());
    let job = store
        .insert("-i in/a.mp4 -f lavfi -i sine -map 0 -map 1 out/b.mp4".to_owned(), SubmitOptions::default())
        .await
        .unwrap();
    {
        use sqlx::{ConnectOptions as _, Connection as _};
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).connect().await.unwrap();
        sqlx::query("UPDATE jobs SET footprint = NULL").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
    assert_eq!(store.active_footprints().await.unwrap()[0].footprint, None);
    let sandbox = Arc::new(Sandbox::new(&data).unwrap());
    let files = Files::new(Arc::new(LocalStorage::new(Arc::clone(&sandbox))), Arc::clone(&store), sandbox, 1 << 20);
    for used in ["in/a.mp4", "out/b.mp4"] {
        match files.put(used, body("x"), false).await {
            Err(FilesError::InUse { path, job: by, .. }) => assert_eq!((path.as_str(), &by), (used, &job.id)),
            other => panic!("{used}: {other:?}"),
        }
    }
    for free in ["in/other.mp4", "out/c.mp4", "b.mp4"] {
        files.put(free, body("x"), false).await.unwrap_or_else(|e| panic!("{free}: {e}"));
    }
    files.delete("in/other.mp4", false).await.unwrap();
    // A command that no longer resolves may touch anything: everything stays blocked.
    store.insert("-i in/x.mp4 ../escape.mp4".to_owned(), SubmitOptions::default()).await.unwrap();
    {
        use sqlx::{ConnectOptions as _, Connection as _};
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).connect().await.unwrap();
        sqlx::query("UPDATE jobs SET footprint = NULL").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
    assert!(matches!(files.put("free.txt", body("x"), false).await, Err(FilesError::InUse { .. })));
}

/// A recursive delete of a directory that a queued or running job writes into is refused,
/// though its outputs do not exist yet (on a bucket they appear only when it succeeded):
/// before, only the files already under it were checked (tester F12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_a_job_will_write_into_cannot_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Arc::new(Sandbox::new(dir.path()).unwrap());
    let store: Arc<dyn JobStore> = Arc::new(jobs::MemoryStore::new());
    let command = "-f lavfi -i sine -t 1 chain/q1.mp4";
    let resolved = sandbox.resolve_command(&ffmpeg_core::command::Command::parse(command).unwrap()).unwrap();
    let options =
        SubmitOptions { footprint: ffmpeg_core::footprint::Footprint::of(&resolved), ..SubmitOptions::default() };
    let job = store.insert(command.to_owned(), options).await.unwrap();
    let files = Files::new(Arc::new(LocalStorage::new(Arc::clone(&sandbox))), Arc::clone(&store), sandbox, 1 << 20);
    for path in ["chain/old.txt", "other/old.txt"] {
        files.put(path, body("x"), false).await.unwrap();
    }
    match files.delete("chain", true).await {
        Err(FilesError::InUse { path, job: by, .. }) => assert_eq!((path.as_str(), &by), ("chain", &job.id)),
        other => panic!("{other:?}"),
    }
    assert!(dir.path().join("chain/old.txt").exists());
    files.delete("other", true).await.unwrap();
    // The job's own file is protected as before; a file beside it may go.
    files.delete("chain/old.txt", false).await.unwrap();
}

fn footprint_of(sandbox: &Sandbox, command: &str) -> ffmpeg_core::footprint::Footprint {
    let resolved = sandbox.resolve_command(&ffmpeg_core::command::Command::parse(command).unwrap()).unwrap();
    ffmpeg_core::footprint::Footprint::of(&resolved)
}

/// An upload where a queued or running job may write a directory, or below a file it may
/// write, is refused (tester H6: a bucket would keep the job's file and the upload's
/// "directory" of one name); beside them it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_above_or_below_what_a_job_writes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Arc::new(Sandbox::new(dir.path()).unwrap());
    let store: Arc<dyn JobStore> = Arc::new(jobs::MemoryStore::new());
    let mut ids = Vec::new();
    for command in ["-f lavfi -i sine -t 1 -f mp4 race/a", "-f lavfi -i sine -t 1 -f hls live/i.m3u8"] {
        let options = SubmitOptions { footprint: footprint_of(&sandbox, command), ..SubmitOptions::default() };
        ids.push(store.insert(command.to_owned(), options).await.unwrap().id);
    }
    let files = Files::new(Arc::new(LocalStorage::new(Arc::clone(&sandbox))), Arc::clone(&store), sandbox, 1 << 20);
    for (path, job) in
        [("race/a/x", &ids[0]), ("race/a/b/c.mp4", &ids[0]), ("race", &ids[0]), ("live/i7.ts/x", &ids[1])]
    {
        match files.put(path, body("x"), false).await {
            Err(FilesError::InUse { path: p, job: by, .. }) => assert_eq!((p.as_str(), &by), (path, job)),
            other => panic!("{path}: {other:?}"),
        }
        assert!(!dir.path().join(path).exists(), "{path}");
    }
    for free in ["race/ab/x", "race/b", "live/j7.ts/x", "other/race/a/x"] {
        files.put(free, body("x"), false).await.unwrap_or_else(|e| panic!("{free}: {e}"));
    }
}

/// A hook run once when an upload commits, before it does (what another writer does between
/// the upload's last check and its commit).
#[derive(Debug)]
pub(crate) struct HookAtCommit(std::sync::Mutex<Option<HookDebug>>);

impl HookAtCommit {
    /// `inner`, running `hook` when the next upload commits, before it does.
    pub(crate) fn wrap(inner: Arc<dyn Storage>, hook: Hook) -> Arc<dyn Storage> {
        Intercepted::wrap(inner, HookAtCommit(std::sync::Mutex::new(Some(HookDebug(hook)))))
    }
}

pub(crate) type Hook = Box<dyn FnOnce() -> futures_util::future::BoxFuture<'static, ()> + Send>;

#[derive(Debug)]
struct Hooked {
    inner: Box<dyn StagedPut>,
    hook: Option<HookDebug>,
}

struct HookDebug(Hook);

impl std::fmt::Debug for HookDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hook")
    }
}

#[async_trait::async_trait]
impl StagedPut for Hooked {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    async fn commit(mut self: Box<Self>) -> Result<PutOutcome, StorageError> {
        if let Some(HookDebug(hook)) = self.hook.take() {
            hook().await;
        }
        self.inner.commit().await
    }
}

#[async_trait::async_trait]
impl Intercept for HookAtCommit {
    async fn put(
        &self,
        inner: &dyn Storage,
        path: &str,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<Box<dyn StagedPut>, StorageError> {
        let inner = inner.put(path, body, options).await?;
        Ok(Box::new(Hooked { inner, hook: self.0.lock().unwrap().take() }))
    }
}

/// A job queued after an upload's last check, before its commit, that writes a file above the
/// upload: the upload's new file is deleted again and the upload refused (the job's output
/// reaches a bucket only at its end, when its own check would no longer see the upload
/// coming). An upload replacing a file needs no such check, and keeps its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_queued_while_an_upload_commits_takes_its_place_back() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Arc::new(Sandbox::new(dir.path()).unwrap());
    let store: Arc<dyn JobStore> = Arc::new(jobs::MemoryStore::new());
    let command = "-f lavfi -i sine -t 1 -f mp4 race/a";
    let options = SubmitOptions { footprint: footprint_of(&sandbox, command), ..SubmitOptions::default() };
    let queue: Hook = {
        let store = Arc::clone(&store);
        Box::new(move || {
            Box::pin(async move {
                store.insert(command.to_owned(), options).await.unwrap();
            })
        })
    };
    let storage = HookAtCommit::wrap(Arc::new(LocalStorage::new(Arc::clone(&sandbox))), queue);
    let files = Files::new(storage, Arc::clone(&store), sandbox, 1 << 20);
    match files.put("race/a/x", body("new"), false).await {
        Err(FilesError::InUse { path, .. }) => assert_eq!(path, "race/a/x"),
        other => panic!("{other:?}"),
    }
    assert!(!dir.path().join("race/a/x").exists(), "the new file is gone again");
    assert_eq!(store.active_footprints().await.unwrap().len(), 1, "the job stays queued");
}

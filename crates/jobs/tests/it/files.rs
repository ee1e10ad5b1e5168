//! `jobs::files::Files`: which uploads and deletions a queued job blocks.

use std::sync::Arc;

use ffmpeg_core::sandbox::Sandbox;
use jobs::files::{Files, FilesError};
use jobs::storage::{ByteStream, LocalStorage};
use jobs::{JobStore, SqliteStore, SubmitOptions};

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

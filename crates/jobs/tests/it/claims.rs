//! Claiming with footprints, in every store: a queued job whose files may overlap a running
//! job's waits (and the next one that does not starts), across two stores sharing one SQLite
//! file too; run records for crash recovery.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ffmpeg_core::command::Command;
use ffmpeg_core::footprint::Footprint;
use ffmpeg_core::sandbox::Sandbox;
use jobs::outputs::Snapshot;
use jobs::store::{InterruptedRun, RunRecord};
use jobs::{JobId, JobStatus, MemoryStore, Outcome, SqliteStore, StoreError, SubmitOptions};
use tempfile::TempDir;

use crate::fixture::Store;

fn footprint(command: &str) -> Footprint {
    let dir = TempDir::new().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    Footprint::of(&sandbox.resolve_command(&Command::parse(command).unwrap()).unwrap())
}

async fn insert(store: &Store, command: &str) -> JobId {
    let options = SubmitOptions { footprint: footprint(command), ..SubmitOptions::default() };
    store.insert(command.to_owned(), options).await.unwrap().id
}

async fn stores(dir: &TempDir) -> Vec<(&'static str, Store)> {
    let file = format!("sqlite://{}", dir.path().join("jobs.db").display());
    vec![
        ("memory", Arc::new(MemoryStore::new()) as Store),
        ("sqlite in memory", Arc::new(SqliteStore::open_in_memory().await.unwrap())),
        ("sqlite file", Arc::new(SqliteStore::open(&file).await.unwrap())),
        ("postgres", Arc::new(crate::fixture::postgres_store().await)),
    ]
}

async fn claim(store: &Store) -> Option<JobId> {
    store.claim_next(&[]).await.unwrap().map(|j| j.id)
}

#[tokio::test]
async fn claiming_skips_jobs_that_conflict_with_running_ones() {
    let dir = TempDir::new().unwrap();
    for (name, store) in stores(&dir).await {
        let a = insert(&store, "-i in.mp4 out/o.mp4").await;
        let b = insert(&store, "-i in.mp4 -c copy out/o.mp4").await;
        let c = insert(&store, "-i out/o.mp4 p.mp4").await;
        let d = insert(&store, "-i in.mp4 q.mp4").await;
        assert_eq!(claim(&store).await, Some(a.clone()), "{name}");
        assert_eq!(claim(&store).await, Some(d.clone()), "{name}: b writes and c reads what a writes");
        assert_eq!(claim(&store).await, None, "{name}");
        store.finish(&a, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
        assert_eq!(claim(&store).await, Some(b.clone()), "{name}: in order once a is done");
        assert_eq!(claim(&store).await, None, "{name}: c reads what b writes");
        store.finish(&b, Outcome::Failed { error: "x".to_owned() }, "").await.unwrap();
        assert_eq!(claim(&store).await, Some(c), "{name}");
        store.finish(&d, Outcome::Cancelled, "").await.unwrap();
    }
}

#[tokio::test]
async fn run_records_belong_to_the_running_attempt() {
    let dir = TempDir::new().unwrap();
    for (name, store) in stores(&dir).await {
        let a = insert(&store, "-i in.mp4 a.mp4").await;
        let b = insert(&store, "-i in.mp4 b.mp4").await;
        let record = |attempt| RunRecord {
            attempt,
            footprint: footprint("-i in.mp4 a.mp4"),
            snapshot: Snapshot::default(),
            temp_area: false,
        };
        let refused = store.record_run(&a, &record(1)).await;
        assert!(matches!(refused, Err(StoreError::Conflict { .. })), "{name}: queued: {refused:?}");
        assert_eq!(claim(&store).await, Some(a.clone()));
        assert_eq!(claim(&store).await, Some(b.clone()));
        let refused = store.record_run(&a, &record(2)).await;
        assert!(matches!(refused, Err(StoreError::Conflict { .. })), "{name}: wrong attempt: {refused:?}");
        store.record_run(&a, &record(1)).await.unwrap();
        store.record_run(&a, &record(1)).await.unwrap();
        let expected =
            vec![InterruptedRun { id: a.clone(), run: Some(record(1)) }, InterruptedRun { id: b.clone(), run: None }];
        assert_eq!(store.interrupted_runs().await.unwrap(), expected, "{name}");
        assert_eq!(store.previous_run(&a).await.unwrap(), None, "{name}: the current attempt's own record");
        // Requeued and claimed again: the old attempt's record is not the new attempt's, but
        // is what the new attempt must clear first.
        let recovery = store.recover(5).await.unwrap();
        assert_eq!(recovery.requeued.len(), 2);
        assert_eq!(store.interrupted_runs().await.unwrap(), vec![], "{name}");
        assert_eq!(store.previous_run(&a).await.unwrap(), None, "{name}: queued again, no later attempt yet");
        assert_eq!(claim(&store).await, Some(a.clone()));
        let runs = store.interrupted_runs().await.unwrap();
        assert_eq!(runs, vec![InterruptedRun { id: a.clone(), run: None }], "{name}");
        assert_eq!(store.previous_run(&a).await.unwrap(), Some(record(1)), "{name}: attempt 1's leftovers");
        assert_eq!(store.previous_run(&b).await.unwrap(), None, "{name}: b recorded no run");
        store.record_run(&a, &record(2)).await.unwrap();
        assert_eq!(store.previous_run(&a).await.unwrap(), None, "{name}: replaced by attempt 2's record");
        let unknown = JobId::parse("job_0000000000000000").unwrap();
        assert_eq!(store.previous_run(&unknown).await.unwrap(), None, "{name}");
        store.delete(&a).await.unwrap_err();
        store.finish(&a, Outcome::Cancelled, "").await.unwrap();
        store.delete(&a).await.unwrap();
    }
}

/// Two stores on one file, as two processes would use it: workers of both claim concurrently
/// from a queue where every job writes one file; never two of them run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sqlite_stores_never_run_conflicting_jobs_together() {
    let dir = TempDir::new().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let a: Store = Arc::new(SqliteStore::open(&url).await.unwrap());
    let b: Store = Arc::new(SqliteStore::open(&url).await.unwrap());
    for i in 0..20 {
        // Every job writes `same.mp4`; half also write a file of their own.
        let command =
            if i % 2 == 0 { format!("-i in.mp4 same.mp4 own{i}.mp4") } else { "-i x.mp4 same.mp4".to_owned() };
        insert(&a, &command).await;
    }
    let running = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for store in [&a, &b, &a, &b] {
        let (store, running, done) = (Arc::clone(store), Arc::clone(&running), Arc::clone(&done));
        workers.spawn(async move {
            while done.load(Ordering::SeqCst) < 20 {
                let Some(job) = store.claim_next(&[]).await.unwrap() else {
                    tokio::task::yield_now().await;
                    continue;
                };
                assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "two conflicting jobs ran at once");
                tokio::task::yield_now().await;
                running.fetch_sub(1, Ordering::SeqCst);
                store
                    .finish(&job.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "")
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    workers.join_all().await;
    let counts = a.counts().await.unwrap();
    assert_eq!(counts.get(&JobStatus::Completed), Some(&20), "{counts:?}");
}

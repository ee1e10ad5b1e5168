//! Idempotent submission ([`jobs::idempotency`]) on every store: the store keeps a key with its
//! job, unique (one job per key, also when inserts race), for as long as the job's record; the
//! service answers a repeat with that job and refuses the key for another request.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ffmpeg_core::sandbox::Sandbox;
use jobs::idempotency::{Idempotency, IdempotencyKey, Submitted};
use jobs::{
    FfmpegConfig, FfmpegRunner, Job, JobId, JobStatus, Jobs, JobsConfig, ListQuery, Outcome, StoreError, SubmitError,
    SubmitOptions,
};
use tempfile::TempDir;

use crate::fixture::{Store, conformance};

conformance!(
    a_taken_key_inserts_nothing_and_answers_its_job,
    jobs_without_a_key_never_conflict,
    concurrent_inserts_with_one_key_make_one_job,
    a_key_lives_as_long_as_its_job,
    a_repeated_submission_answers_its_job_as_it_is_now,
    a_key_sent_with_another_request_is_refused_naming_its_job,
    concurrent_submissions_with_one_key_make_one_job,
);

fn keyed(key: &str, fingerprint: &str) -> SubmitOptions {
    let idempotency = Idempotency { key: IdempotencyKey::parse(key).unwrap(), fingerprint: fingerprint.to_owned() };
    SubmitOptions { idempotency: Some(idempotency), ..SubmitOptions::default() }
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::parse(k).unwrap()
}

/// The job a refused insert names, or a panic saying what came instead.
fn taken(result: Result<Job, StoreError>) -> Job {
    match result {
        Err(StoreError::IdempotencyKeyTaken(job)) => *job,
        other => panic!("expected IdempotencyKeyTaken, got {other:?}"),
    }
}

async fn all_jobs(store: &Store) -> Vec<Job> {
    store.list(&ListQuery { statuses: Vec::new(), after_seq: None, limit: 1000 }).await.unwrap()
}

/// A second insert with a key, whatever its fingerprint, inserts nothing and answers the job
/// that has the key as it is now (with the fingerprint it was stored with, which the service
/// compares); the key and fingerprint round-trip through every read.
async fn a_taken_key_inserts_nothing_and_answers_its_job(store: &Store) {
    let first = store.insert("-i a.mp4 b.mp4".to_owned(), keyed("k-1", "sha256:aa")).await.unwrap();
    let stored = Idempotency { key: key("k-1"), fingerprint: "sha256:aa".to_owned() };
    assert_eq!(first.idempotency.as_ref(), Some(&stored));
    assert_eq!(store.get(&first.id).await.unwrap().unwrap().idempotency.as_ref(), Some(&stored));
    assert_eq!(store.get_by_idempotency_key(&key("k-1")).await.unwrap().map(|j| j.id), Some(first.id.clone()));
    assert_eq!(store.get_by_idempotency_key(&key("k-2")).await.unwrap(), None);
    assert_eq!(store.get_by_idempotency_key(&key("K-1")).await.unwrap(), None, "keys are compared exactly");

    let same = taken(store.insert("-i a.mp4 b.mp4".to_owned(), keyed("k-1", "sha256:aa")).await);
    assert_eq!((same.id.clone(), same.idempotency.clone()), (first.id.clone(), Some(stored.clone())));
    // Another request under the key: the store answers the same job (its fingerprint tells).
    let other = taken(store.insert("-i c.mp4 d.mp4".to_owned(), keyed("k-1", "sha256:bb")).await);
    assert_eq!((other.id.clone(), other.command.as_str()), (first.id.clone(), "-i a.mp4 b.mp4"));
    assert_eq!(other.idempotency, Some(stored));
    assert_eq!(all_jobs(store).await.len(), 1, "nothing was inserted");

    // The job as it is now: running once claimed.
    let claimed = store.claim_next(&[]).await.unwrap().unwrap();
    assert_eq!(claimed.id, first.id);
    let now = taken(store.insert("-i a.mp4 b.mp4".to_owned(), keyed("k-1", "sha256:aa")).await);
    assert_eq!((now.status, now.attempts), (JobStatus::Running, 1));
    let read = store.get_by_idempotency_key(&key("k-1")).await.unwrap().unwrap();
    assert_eq!(read.status, JobStatus::Running);
    let listed = all_jobs(store).await;
    assert_eq!(
        listed.iter().map(|j| j.idempotency.as_ref().map(|i| i.key.as_str())).collect::<Vec<_>>(),
        [Some("k-1")]
    );
}

/// Jobs without a key are never held to one; distinct keys are distinct jobs.
async fn jobs_without_a_key_never_conflict(store: &Store) {
    for _ in 0..3 {
        let job = store.insert("-i a.mp4 b.mp4".to_owned(), SubmitOptions::default()).await.unwrap();
        assert_eq!(job.idempotency, None);
        assert_eq!(store.get(&job.id).await.unwrap().unwrap().idempotency, None);
    }
    let a = store.insert("x".to_owned(), keyed("a", "f")).await.unwrap();
    let b = store.insert("x".to_owned(), keyed("b", "f")).await.unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(all_jobs(store).await.len(), 5);
}

/// Inserts racing with one key make one job: 24 inserts over 4 keys, all at once (the SQLite
/// store commits them in batches, where two of one key can meet in one statement), give 4
/// jobs, and every refused insert names the job of its key.
async fn concurrent_inserts_with_one_key_make_one_job(store: &Store) {
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                let k = format!("race-{}", i % 4);
                let result = store.insert(format!("-i in{i}.mp4 out{i}.mp4"), keyed(&k, "same")).await;
                (k, result)
            })
        })
        .collect();
    let mut created: HashMap<String, JobId> = HashMap::new();
    let mut refused: Vec<(String, JobId)> = Vec::new();
    for task in tasks {
        let (k, result) = task.await.unwrap();
        match result {
            Ok(job) => assert!(created.insert(k.clone(), job.id).is_none(), "two jobs with key {k}"),
            Err(e) => refused.push((k, taken(Err(e)).id)),
        }
    }
    assert_eq!(created.len(), 4, "one job per key: {created:?}");
    assert_eq!(refused.len(), 20);
    for (k, id) in refused {
        assert_eq!(created.get(&k), Some(&id), "a refused insert with {k} names its job");
    }
    let stored = all_jobs(store).await;
    assert_eq!(stored.len(), 4);
    for job in stored {
        let k = job.idempotency.as_ref().unwrap().key.as_str().to_owned();
        assert_eq!(created.get(&k), Some(&job.id));
    }
}

/// A key is kept as long as its job's record: deleting or purging the job frees it.
async fn a_key_lives_as_long_as_its_job(store: &Store) {
    let first = store.insert("x".to_owned(), keyed("kept", "f")).await.unwrap();
    let purged = store.insert("x".to_owned(), keyed("purged", "f")).await.unwrap();
    for id in [&first.id, &purged.id] {
        let claimed = store.claim_next(&[]).await.unwrap().unwrap();
        assert_eq!(&claimed.id, id);
        store.finish(id, Outcome::Failed { error: "x".to_owned() }, "").await.unwrap();
    }
    // Finished, the key still names the job.
    assert_eq!(taken(store.insert("x".to_owned(), keyed("kept", "f")).await).id, first.id);
    store.delete(&first.id).await.unwrap();
    assert_eq!(store.get_by_idempotency_key(&key("kept")).await.unwrap(), None);
    let again = store.insert("x".to_owned(), keyed("kept", "f")).await.unwrap();
    assert_ne!(again.id, first.id);

    let cutoff = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
    // `again` is queued: only `purged` goes.
    assert_eq!(store.purge_finished_before(cutoff).await.unwrap(), 1);
    assert_eq!(store.get_by_idempotency_key(&key("purged")).await.unwrap(), None);
    assert_ne!(store.insert("x".to_owned(), keyed("purged", "f")).await.unwrap().id, purged.id);
    assert_eq!(store.get_by_idempotency_key(&key("kept")).await.unwrap().map(|j| j.id), Some(again.id));
}

/// The job service over `store` (no workers: jobs stay queued), in a data directory of its own.
fn service(store: &Store) -> (TempDir, Arc<Jobs>) {
    let dir = TempDir::new().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let runner = Arc::new(FfmpegRunner::new(FfmpegConfig::new("ffmpeg", dir.path())));
    let config = JobsConfig { concurrency: 0, idle_wait: Duration::from_millis(100), ..JobsConfig::default() };
    let jobs = Jobs::new(Arc::clone(store), runner, sandbox, config);
    (dir, jobs)
}

/// A repeat (same key, same fingerprint) answers the first submission's job as it is now,
/// without checking the command again or queueing anything: even when the command would be
/// refused now.
async fn a_repeated_submission_answers_its_job_as_it_is_now(store: &Store) {
    let (dir, jobs) = service(store);
    let metadata = BTreeMap::from([("asset".to_owned(), "a-42".to_owned())]);
    let options = || SubmitOptions { metadata: metadata.clone(), ..keyed("retry-me", "sha256:1") };
    let first = jobs.submit_idempotent("-i in.mp4 out/b.mp4", options()).await.unwrap();
    assert!(!first.replayed);
    assert_eq!(first.job.status, JobStatus::Queued);
    let again = jobs.submit_idempotent("-i in.mp4 out/b.mp4", options()).await.unwrap();
    assert_eq!((again.job.id.clone(), again.replayed), (first.job.id.clone(), true));
    assert_eq!(again.job.metadata, metadata);
    assert_eq!(all_jobs(store).await.len(), 1);

    // Now a file `out` is where the command writes a directory: a new submission is refused,
    // a repeat of the first still answers its job, as it is now (cancelled).
    std::fs::write(dir.path().join("out"), b"x").unwrap();
    let refused = jobs.submit_idempotent("-i in.mp4 out/b.mp4", keyed("new-key", "sha256:1")).await;
    assert!(matches!(refused, Err(SubmitError::OutputConflict { .. })), "{refused:?}");
    jobs.cancel(&first.job.id).await.unwrap();
    let Submitted { job, replayed } = jobs.submit_idempotent("-i in.mp4 out/b.mp4", options()).await.unwrap();
    assert_eq!((job.id, job.status, replayed), (first.job.id, JobStatus::Cancelled, true));
    assert_eq!(all_jobs(store).await.len(), 1);
    // `submit` (the plain form) answers the same job.
    assert_eq!(jobs.submit("-i in.mp4 out/b.mp4", options()).await.unwrap().status, JobStatus::Cancelled);
}

/// The same key with another fingerprint: refused, naming the key's job; nothing queued.
async fn a_key_sent_with_another_request_is_refused_naming_its_job(store: &Store) {
    let (_dir, jobs) = service(store);
    let first = jobs.submit_idempotent("-i a.mp4 b.mp4", keyed("once", "sha256:1")).await.unwrap().job;
    let refused = jobs.submit_idempotent("-i a.mp4 c.mp4", keyed("once", "sha256:2")).await;
    match refused {
        Err(SubmitError::IdempotencyKeyReused { key, job }) => {
            assert_eq!((key.as_str(), job), ("once", first.id.clone()));
        }
        other => panic!("expected IdempotencyKeyReused, got {other:?}"),
    }
    let message = jobs.submit("-i a.mp4 c.mp4", keyed("once", "sha256:2")).await.unwrap_err().to_string();
    assert!(message.contains("`once`") && message.contains(first.id.as_str()), "{message}");
    assert_eq!(all_jobs(store).await.len(), 1);
}

/// Submissions racing with one key (all checked before any is stored, so each tries its
/// insert): one job, one new answer, every other a repeat of it.
async fn concurrent_submissions_with_one_key_make_one_job(store: &Store) {
    let (_dir, jobs) = service(store);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let jobs = Arc::clone(&jobs);
            tokio::spawn(async move { jobs.submit_idempotent("-i a.mp4 b.mp4", keyed("twice", "sha256:1")).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().unwrap());
    }
    let new: Vec<&Submitted> = answers.iter().filter(|a| !a.replayed).collect();
    assert_eq!(new.len(), 1, "one new job: {answers:?}");
    assert!(answers.iter().all(|a| a.job.id == new[0].job.id));
    assert_eq!(all_jobs(store).await.len(), 1);
}

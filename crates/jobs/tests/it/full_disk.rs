//! The SQLite store on a real, full filesystem: a 2 MB tmpfs that the test mounts (as root, as
//! in CI) and fills. Every write either answers an error or is durable; none is acknowledged
//! and then lost; once space is freed the same store writes again, and a reopened store holds
//! exactly the last acknowledged state of every job. Skipped, with a message on stderr, where
//! mounting is refused.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use jobs::store::{CancelOutcome, Recovery};
use jobs::{Job, JobId, JobStatus, JobStore, ListQuery, Outcome, Progress, SqliteStore, StoreError, SubmitOptions};

use crate::tmpfs::Tmpfs;

/// Writes `path` until the filesystem is full; the file's size.
pub(crate) fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 16 * 1024];
    let mut written = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Smaller writes take the last partial pages.
    while let Ok(n @ 1..) = file.write(&chunk[..512]) {
        written += n as u64;
    }
    written
}

/// What a job must look like, as far as acknowledged writes tell.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    status: JobStatus,
    attempts: u32,
    progress: Option<Progress>,
    output_files: Vec<String>,
    error: Option<String>,
    /// Its log, once finished (`None`: not checked).
    log: Option<String>,
    /// A cancel was acknowledged while it ran.
    cancel_requested: bool,
}

impl Expected {
    fn of(job: &Job) -> Expected {
        Expected {
            status: job.status,
            attempts: job.attempts,
            progress: job.progress.clone(),
            output_files: job.output_files.clone(),
            error: job.error.clone(),
            log: None,
            cancel_requested: false,
        }
    }
}

/// The acknowledged state of every job, and counts of what the store answered.
#[derive(Default)]
struct Model {
    jobs: BTreeMap<JobId, Expected>,
    acknowledged: usize,
    refused: usize,
    /// Of the refused, those answered [`StoreError::DiskFull`].
    disk_full: usize,
}

impl Model {
    /// Records a write's answer: `Ok` updates the model; an error must be the store's
    /// "cannot write now" or "the disk is full", and changes nothing.
    fn answer<T>(&mut self, what: &str, result: Result<T, StoreError>) -> Option<T> {
        match result {
            Ok(value) => {
                self.acknowledged += 1;
                Some(value)
            }
            Err(StoreError::Unavailable(_)) => {
                self.refused += 1;
                None
            }
            Err(StoreError::DiskFull(_)) => {
                self.refused += 1;
                self.disk_full += 1;
                None
            }
            Err(other) => panic!("{what}: expected success, Unavailable or DiskFull, got {other:?}"),
        }
    }

    /// A claim's job. A cancel still pending from an earlier attempt stays pending: a requeue
    /// keeps it (every store does), and the claimed job does not show it.
    fn claimed(&mut self, job: &Job) {
        let pending = self.jobs.get(&job.id).is_some_and(|e| e.cancel_requested);
        let mut expected = Expected::of(job);
        expected.cancel_requested = pending;
        self.jobs.insert(job.id.clone(), expected);
    }

    /// A recovery's changes: every job the model has running is in one of its lists.
    fn recovered(&mut self, recovery: &Recovery) {
        for id in &recovery.requeued {
            let expected = self.jobs.get_mut(id).unwrap();
            expected.status = JobStatus::Queued;
            expected.progress = None;
        }
        for id in &recovery.failed {
            let expected = self.jobs.get_mut(id).unwrap();
            expected.status = JobStatus::Failed;
            expected.error = Some("interrupted".to_owned());
            expected.cancel_requested = false;
        }
        // A job whose cancel was pending ends cancelled, whatever its attempts.
        for id in &recovery.cancelled {
            let expected = self.jobs.get_mut(id).unwrap();
            assert!(expected.cancel_requested, "recover cancelled {id}, whose cancel no write asked for");
            expected.status = JobStatus::Cancelled;
            expected.cancel_requested = false;
        }
        let running_now = self.in_status(JobStatus::Running);
        assert!(running_now.is_empty(), "recover left {running_now:?} running");
    }

    fn in_status(&self, status: JobStatus) -> Vec<JobId> {
        self.jobs.iter().filter(|(_, e)| e.status == status).map(|(id, _)| id.clone()).collect()
    }
}

/// One round of every kind of write, each answered Ok (the model follows), Unavailable or
/// DiskFull.
async fn write_round(store: &SqliteStore, model: &mut Model, round: usize, metadata_bytes: usize) -> Vec<bool> {
    let mut ok = Vec::new();
    let metadata = BTreeMap::from([("blob".to_owned(), "m".repeat(metadata_bytes))]);
    let options = SubmitOptions { metadata, ..SubmitOptions::default() };
    for n in 0..2 {
        let inserted = store.insert(format!("-i in{round}.{n}.mp4 out.mp4"), options.clone()).await;
        ok.push(inserted.is_ok());
        if let Some(job) = model.answer("insert", inserted) {
            model.jobs.insert(job.id.clone(), Expected::of(&job));
        }
    }
    let claimed = store.claim_next(&[]).await;
    ok.push(claimed.is_ok());
    if let Some(Some(job)) = model.answer("claim", claimed) {
        assert_eq!(model.jobs[&job.id].status, JobStatus::Queued, "claimed a job that was not queued");
        model.claimed(&job);
    }
    let running = model.in_status(JobStatus::Running);
    // Progress is the smallest write: a few of them take the last free pages.
    for (n, id) in running.iter().cycle().take(6).enumerate() {
        let progress = Progress { frame: Some((round * 10 + n) as u64), percent: Some(1.0), ..Progress::default() };
        let updated = store.update_progress(id, &progress).await;
        ok.push(updated.is_ok());
        if model.answer("progress", updated).is_some() {
            model.jobs.get_mut(id).unwrap().progress = Some(progress);
        }
    }
    if let Some(id) = running.get(1) {
        let cancelled = store.cancel(id).await;
        ok.push(cancelled.is_ok());
        if let Some(outcome) = model.answer("cancel running", cancelled) {
            assert!(matches!(outcome, CancelOutcome::Requested(_)));
            model.jobs.get_mut(id).unwrap().cancel_requested = true;
        }
    }
    if let Some(id) = model.in_status(JobStatus::Queued).last() {
        let cancelled = store.cancel(id).await;
        ok.push(cancelled.is_ok());
        if let Some(outcome) = model.answer("cancel queued", cancelled) {
            let CancelOutcome::Cancelled(job) = outcome else { panic!("a queued job was not cancelled") };
            model.jobs.insert(job.id.clone(), Expected::of(&job));
        }
    }
    if let Some(id) = running.last() {
        // A log of 8 KiB: the finish needs new pages.
        let log = format!("round {round:4}\n").repeat(800);
        let outcome = Outcome::Completed { output_files: vec![format!("out{round}.mp4")], outputs: Vec::new() };
        let finished = store.finish(id, outcome, &log).await;
        ok.push(finished.is_ok());
        if let Some(job) = model.answer("finish", finished) {
            let mut expected = Expected::of(&job);
            expected.log = Some(log);
            model.jobs.insert(job.id.clone(), expected);
        }
    }
    if running.len() > 2 {
        let id = &running[1];
        let requeued = store.requeue(id).await;
        ok.push(requeued.is_ok());
        if model.answer("requeue", requeued).is_some() {
            let expected = model.jobs.get_mut(id).unwrap();
            expected.status = JobStatus::Queued;
            expected.progress = None;
            expected.attempts = expected.attempts.saturating_sub(1);
        }
    }
    if let Some(id) = model.in_status(JobStatus::Completed).first() {
        let deleted = store.delete(id).await;
        ok.push(deleted.is_ok());
        if model.answer("delete", deleted).is_some() {
            model.jobs.remove(id);
        }
    }
    if round % 4 == 3 {
        let recovered = store.recover(3).await;
        ok.push(recovered.is_ok());
        if let Some(recovery) = model.answer("recover", recovered) {
            model.recovered(&recovery);
        }
        // Nothing finished that long ago: deletes nothing, but is a write all the same.
        let purged = store.purge_finished_before(time::OffsetDateTime::UNIX_EPOCH).await;
        ok.push(purged.is_ok());
        if let Some(n) = model.answer("purge", purged) {
            assert_eq!(n, 0);
        }
    }
    ok
}

/// Checks that `store` holds exactly the model's jobs, in their acknowledged state.
/// A pending cancel is asked through `update_progress`, a write: only when `writable`.
async fn assert_matches(store: &SqliteStore, model: &Model, when: &str, writable: bool) {
    let stored = store.list(&ListQuery { limit: 10_000, ..ListQuery::default() }).await.unwrap();
    let stored_ids: Vec<&JobId> = stored.iter().map(|j| &j.id).collect();
    let expected_ids: Vec<&JobId> = model.jobs.keys().collect();
    let mut sorted = stored_ids.clone();
    sorted.sort();
    assert_eq!(sorted, expected_ids, "{when}: the stored jobs are the acknowledged ones");
    for job in &stored {
        let expected = &model.jobs[&job.id];
        let mut got = Expected::of(job);
        got.log = expected.log.as_ref().and(store.log(&job.id).await.unwrap());
        got.cancel_requested = expected.cancel_requested;
        assert_eq!(&got, expected, "{when}: job {}", job.id);
        if writable && job.status == JobStatus::Running {
            // Writes the same progress again; answers whether a cancel is pending.
            let progress = job.progress.clone().unwrap_or_default();
            let pending = store.update_progress(&job.id, &progress).await.unwrap();
            assert_eq!(pending, expected.cancel_requested, "{when}: job {}'s cancel request", job.id);
        }
    }
}

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_loses_no_acknowledged_write() {
    let Some(fs) = Tmpfs::mount("4m", "sqlite_on_a_full_disk_loses_no_acknowledged_write") else { return };
    let db: PathBuf = fs.path().join("jobs.db");
    let store = SqliteStore::open(&url(&db)).await.unwrap();
    let mut model = Model::default();
    for round in 0..3 {
        assert!(write_round(&store, &mut model, round, 64).await.iter().all(|ok| *ok), "room to spare");
    }
    // Jobs waiting, for the full store to claim, update, cancel and finish.
    for n in 0..40 {
        let job = store.insert(format!("-i queued{n}.mp4 out.mp4"), SubmitOptions::default()).await.unwrap();
        model.jobs.insert(job.id.clone(), Expected::of(&job));
    }
    let claim = async |model: &mut Model, n: usize| {
        for _ in 0..n {
            let job = store.claim_next(&[]).await.unwrap().unwrap();
            model.claimed(&job);
        }
    };
    claim(&mut model, 8).await;
    // What the full store meets when a write fails between two others (the requeue after a
    // cancel, say), here on purpose: a cancel pending for a running job survives its requeue
    // and its next claim, and recovery ends that job cancelled.
    let asked = model.in_status(JobStatus::Running)[1].clone();
    assert!(matches!(store.cancel(&asked).await.unwrap(), CancelOutcome::Requested(_)));
    model.jobs.get_mut(&asked).unwrap().cancel_requested = true;
    store.requeue(&asked).await.unwrap();
    let again = store.claim_next(&[]).await.unwrap().unwrap();
    assert_eq!(again.id, asked, "the requeued job keeps its place in the queue");
    model.claimed(&again);
    let progress = Progress { frame: Some(1), ..Progress::default() };
    assert!(store.update_progress(&asked, &progress).await.unwrap(), "the cancel is still pending");
    model.jobs.get_mut(&asked).unwrap().progress = Some(progress);
    let recovery = store.recover(3).await.unwrap();
    assert_eq!(recovery.cancelled, [asked]);
    model.recovered(&recovery);
    claim(&mut model, 8).await;
    store.check_writable().await.unwrap();

    // Full: the rest of the filesystem goes to a file; then writes of every size take what
    // the database files have spare, and fail once it is gone.
    // A reader in a long transaction (a backup, say) keeps checkpoints from recycling the
    // WAL: every write must then grow it.
    let mut reader = {
        use sqlx::{ConnectOptions as _, Connection as _};
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).connect().await.unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs").fetch_one(&mut conn).await.unwrap();
        assert!(n > 0);
        let _ = conn.ping().await;
        conn
    };
    let filler = fs.path().join("filler");
    fill(&filler);
    let mut full_seen = false;
    let mut round = 3;
    let mut failed_writes = 0;
    while round < 200 && failed_writes < 40 {
        let answers = write_round(&store, &mut model, round, if round % 3 == 0 { 32 * 1024 } else { 256 }).await;
        failed_writes += answers.iter().filter(|ok| !**ok).count();
        if answers.iter().any(|ok| !ok) {
            full_seen |= store.check_writable().await.is_err_and(|e| e.is_disk_full());
        }
        round += 1;
    }
    assert!(failed_writes >= 40, "the full filesystem refused {failed_writes} writes in {round} rounds");
    assert!(full_seen, "check_writable never reported the full disk");
    assert!(model.refused >= failed_writes);
    assert!(model.disk_full > 0, "no write was refused as DiskFull");
    assert_matches(&store, &model, "while full", false).await;

    // Space again: the same store writes, with no restart.
    sqlx::query("ROLLBACK").execute(&mut reader).await.unwrap();
    sqlx::Connection::close(reader).await.unwrap();
    std::fs::remove_file(&filler).unwrap();
    // Not ready until no write has failed for a few seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Err(e) = store.check_writable().await {
        assert!(std::time::Instant::now() < deadline, "still not writable after space was freed: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for _ in 0..3 {
        let answers = write_round(&store, &mut model, round, 1024).await;
        assert!(answers.iter().all(|ok| *ok), "a write failed after space was freed: {answers:?}");
        round += 1;
    }
    assert_matches(&store, &model, "after the space came back", true).await;

    // And what was acknowledged is what a new process finds.
    store.close().await;
    drop(store);
    let reopened = SqliteStore::open(&url(&db)).await.unwrap();
    assert_matches(&reopened, &model, "reopened", true).await;
    reopened.close().await;
    eprintln!("acknowledged {} writes, refused {}", model.acknowledged, model.refused);
}

/// Tester finding K1: a database closed cleanly (its `-wal` and `-shm` files removed) on a disk
/// that then filled up. SQLite could not create the shared-memory file, so the store did not
/// even open ("disk I/O error"). Now it opens, reads everything, refuses writes as
/// [`StoreError::DiskFull`] (readiness says so too), and writes again, with no restart, once
/// space is freed; a later open finds every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_opens_on_a_full_disk_and_writes_once_space_is_freed() {
    let Some(fs) = Tmpfs::mount("2m", "sqlite_opens_on_a_full_disk_and_writes_once_space_is_freed") else { return };
    let db = fs.path().join("jobs.db");
    let store = SqliteStore::open(&url(&db)).await.unwrap();
    let done = store.insert("-i a.mp4 done.mp4".to_owned(), SubmitOptions::default()).await.unwrap();
    store.claim_next(&[]).await.unwrap().unwrap();
    let outcome = Outcome::Completed { output_files: vec!["done.mp4".to_owned()], outputs: Vec::new() };
    let done = store.finish(&done.id, outcome, "the log").await.unwrap();
    store.insert("-i b.mp4 running.mp4".to_owned(), SubmitOptions::default()).await.unwrap();
    let running = store.claim_next(&[]).await.unwrap().unwrap();
    assert_eq!(running.status, JobStatus::Running);
    let queued = store.insert("-i c.mp4 queued.mp4".to_owned(), SubmitOptions::default()).await.unwrap();
    store.close().await;
    drop(store);
    let shm = fs.path().join("jobs.db-shm");
    assert!(!shm.exists(), "a clean close removes the shared-memory file");

    let filler = fs.path().join("filler");
    fill(&filler);
    let store = SqliteStore::open(&url(&db)).await.expect("the store opens on a full disk");
    let all = store.list(&ListQuery { limit: 100, ..ListQuery::default() }).await.unwrap();
    let ids: Vec<&JobId> = all.iter().map(|j| &j.id).collect();
    assert_eq!(ids, [&done.id, &running.id, &queued.id], "every job reads, oldest first");
    assert_eq!(store.get(&done.id).await.unwrap().as_ref(), Some(&done));
    assert_eq!(store.log(&done.id).await.unwrap().as_deref(), Some("the log"));
    let refused = store.insert("-i d.mp4 new.mp4".to_owned(), SubmitOptions::default()).await;
    assert!(matches!(refused, Err(StoreError::DiskFull(_))), "{refused:?}");
    let refused = store.recover(3).await;
    assert!(matches!(refused, Err(StoreError::DiskFull(_))), "{refused:?}");
    let writable = store.check_writable().await;
    assert!(writable.as_ref().is_err_and(StoreError::is_disk_full), "{writable:?}");

    std::fs::remove_file(&filler).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Err(e) = store.check_writable().await {
        assert!(std::time::Instant::now() < deadline, "still not writable after space was freed: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let recovery = store.recover(3).await.unwrap();
    assert_eq!(recovery.requeued, std::slice::from_ref(&running.id));
    let new = store.insert("-i d.mp4 new.mp4".to_owned(), SubmitOptions::default()).await.unwrap();
    store.close().await;
    drop(store);

    let reopened = SqliteStore::open(&url(&db)).await.unwrap();
    let all = reopened.list(&ListQuery { limit: 100, ..ListQuery::default() }).await.unwrap();
    let statuses: Vec<(&JobId, JobStatus)> = all.iter().map(|j| (&j.id, j.status)).collect();
    assert_eq!(
        statuses,
        [
            (&done.id, JobStatus::Completed),
            (&running.id, JobStatus::Queued),
            (&queued.id, JobStatus::Queued),
            (&new.id, JobStatus::Queued)
        ]
    );
    reopened.close().await;
}

/// A database that must be written to open (a new one: every migration to apply) on a full
/// disk: the open fails with [`OpenError::DiskFull`](jobs::sqlite::OpenError::DiskFull), whose
/// message names the file system and its free space, not SQLite's error chain.
#[tokio::test]
async fn sqlite_that_must_migrate_on_a_full_disk_says_so() {
    let Some(fs) = Tmpfs::mount("1m", "sqlite_that_must_migrate_on_a_full_disk_says_so") else { return };
    fill(&fs.path().join("filler"));
    let db = fs.path().join("jobs.db");
    let error = SqliteStore::open(&url(&db)).await.expect_err("no room for the schema");
    assert!(matches!(error, jobs::sqlite::OpenError::DiskFull { .. }), "{error:?}");
    let message = error.to_string();
    let mount = format!("the file system mounted at `{}`", fs.path().canonicalize().unwrap().display());
    assert!(message.contains(&mount) && message.contains(" free") && message.contains("free some space"), "{message}");
    assert!(!message.contains("code: 13") && !message.contains('\n'), "{message}");
}

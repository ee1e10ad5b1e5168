//! The worker pool when the store fails: a store that refuses writes on demand (a
//! [`MemoryStore`] behind a switch, failing the way a full disk makes the SQLite store fail:
//! [`StoreError::Unavailable`], nothing changed).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ffmpeg_core::sandbox::{OutputTarget, Sandbox};
use jobs::store::{Attempt, CancelOutcome, InterruptedRun, Recovery, RunRecord, StatusCounts};
use jobs::{
    Job, JobId, JobStatus, JobStore, Jobs, JobsConfig, ListQuery, MemoryStore, Outcome, Progress, RunReport, RunSpec,
    Runner, Shutdown, StoreError, SubmitOptions,
};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A [`MemoryStore`] whose `claim_next` and `finish` fail while switched to, counting calls,
/// and whose `held_back` answers late while switched to.
#[derive(Default)]
pub(crate) struct FaultyStore {
    pub(crate) inner: MemoryStore,
    fail_claims: AtomicBool,
    fail_finishes: AtomicBool,
    claims: AtomicUsize,
    finishes: AtomicUsize,
    /// `update_progress` calls, each with the time it was made.
    pub(crate) progress_writes: Mutex<Vec<(Instant, Progress)>>,
    /// While set, `held_back` answers only once it is cleared (a slow read of the store).
    hold_held_back: watch::Sender<bool>,
    /// `held_back` calls made while held.
    held: AtomicUsize,
}

fn full() -> StoreError {
    StoreError::Unavailable(std::io::Error::from_raw_os_error(28).into())
}

#[async_trait]
impl JobStore for FaultyStore {
    async fn insert(&self, command: String, options: SubmitOptions) -> Result<Job, StoreError> {
        self.inner.insert(command, options).await
    }
    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        self.inner.get(id).await
    }
    async fn get_by_idempotency_key(&self, key: &jobs::idempotency::IdempotencyKey) -> Result<Option<Job>, StoreError> {
        self.inner.get_by_idempotency_key(key).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Vec<Job>, StoreError> {
        self.inner.list(query).await
    }
    async fn claim_next(&self, labels: &[String]) -> Result<Option<Job>, StoreError> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        if self.fail_claims.load(Ordering::SeqCst) {
            return Err(full());
        }
        self.inner.claim_next(labels).await
    }
    async fn record_run(&self, id: &JobId, run: &RunRecord) -> Result<(), StoreError> {
        self.inner.record_run(id, run).await
    }
    async fn interrupted_runs(&self) -> Result<Vec<InterruptedRun>, StoreError> {
        self.inner.interrupted_runs().await
    }
    async fn previous_run(&self, id: &JobId) -> Result<Option<RunRecord>, StoreError> {
        self.inner.previous_run(id).await
    }
    async fn wait_for_work(&self, timeout: Duration) {
        self.inner.wait_for_work(timeout).await;
    }
    async fn update_progress(&self, id: &JobId, progress: &Progress) -> Result<bool, StoreError> {
        self.progress_writes.lock().unwrap().push((Instant::now(), progress.clone()));
        self.inner.update_progress(id, progress).await
    }
    async fn finish(&self, id: &JobId, outcome: Outcome, log: &str) -> Result<Job, StoreError> {
        self.finishes.fetch_add(1, Ordering::SeqCst);
        if self.fail_finishes.load(Ordering::SeqCst) {
            return Err(full());
        }
        self.inner.finish(id, outcome, log).await
    }
    async fn log(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        self.inner.log(id).await
    }
    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome, StoreError> {
        self.inner.cancel(id).await
    }
    async fn requeue(&self, id: &JobId) -> Result<(), StoreError> {
        self.inner.requeue(id).await
    }
    async fn retry(
        &self,
        id: &JobId,
        reason: &str,
        wait: std::time::Duration,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        self.inner.retry(id, reason, wait, attempt).await
    }
    async fn delete(&self, id: &JobId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
    async fn recover(&self, max_attempts: u32) -> Result<Recovery, StoreError> {
        self.inner.recover(max_attempts).await
    }
    async fn purge_finished_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.purge_finished_before(cutoff).await
    }
    async fn counts(&self) -> Result<StatusCounts, StoreError> {
        self.inner.counts().await
    }
    async fn active_footprints(&self) -> Result<Vec<jobs::store::ActiveFootprint>, StoreError> {
        self.inner.active_footprints().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn held_back(&self, jobs: &[Job]) -> Result<Vec<Option<jobs::store::HeldBack>>, StoreError> {
        let mut hold = self.hold_held_back.subscribe();
        if *hold.borrow_and_update() {
            self.held.fetch_add(1, Ordering::SeqCst);
            let _ = hold.wait_for(|held| !held).await;
        }
        self.inner.held_back(jobs).await
    }
    async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
        skip_urls: &[String],
    ) -> Result<Vec<jobs::webhook::Delivery>, StoreError> {
        self.inner.claim_deliveries(now, lease, limit, skip_urls).await
    }
    async fn record_delivery_attempt(
        &self,
        id: &jobs::webhook::DeliveryId,
        attempt: &jobs::webhook::DeliveryAttempt,
        next: jobs::webhook::NextStep,
    ) -> Result<bool, StoreError> {
        self.inner.record_delivery_attempt(id, attempt, next).await
    }
    async fn deliveries(&self, id: &JobId) -> Result<Vec<jobs::webhook::Delivery>, StoreError> {
        self.inner.deliveries(id).await
    }
    async fn register_node(
        &self,
        node: &jobs::nodes::NodeRegistration,
        lost_after: Duration,
        replaces: Option<time::OffsetDateTime>,
    ) -> Result<bool, StoreError> {
        self.inner.register_node(node, lost_after, replaces).await
    }
    async fn heartbeat_node(
        &self,
        node: &jobs::nodes::NodeRegistration,
        beat: &jobs::nodes::Heartbeat,
    ) -> Result<bool, StoreError> {
        self.inner.heartbeat_node(node, beat).await
    }
    async fn nodes(&self, lost_after: Duration) -> Result<Vec<jobs::nodes::Node>, StoreError> {
        self.inner.nodes(lost_after).await
    }
    async fn node_capabilities(&self, id: &str) -> Result<Option<ffmpeg_core::capabilities::Capabilities>, StoreError> {
        self.inner.node_capabilities(id).await
    }
    async fn remove_node(&self, node: &jobs::nodes::NodeRegistration) -> Result<(), StoreError> {
        self.inner.remove_node(node).await
    }
    async fn prune_nodes(&self, older_than: Duration) -> Result<u64, StoreError> {
        self.inner.prune_nodes(older_than).await
    }
    async fn check_writable(&self) -> Result<(), StoreError> {
        if self.fail_finishes.load(Ordering::SeqCst) || self.fail_claims.load(Ordering::SeqCst) {
            return Err(full());
        }
        Ok(())
    }
}

/// A runner that writes each output file at once and succeeds, recording what it ran.
#[derive(Default)]
struct InstantRunner {
    ran: Mutex<Vec<String>>,
}

#[async_trait]
impl Runner for InstantRunner {
    async fn run(&self, spec: RunSpec<'_>, _: &watch::Sender<Option<Progress>>, _: &CancellationToken) -> RunReport {
        let command = spec.command.command().to_string();
        self.ran.lock().unwrap().push(command.clone());
        // Stand-ins for a bug in the worker and for a run that never ends on its own.
        assert!(!command.contains("panic.mp4"), "a bug while running the job");
        if command.contains("hang.mp4") {
            std::future::pending::<()>().await;
        }
        for target in spec.command.outputs() {
            if let OutputTarget::File(p) = target {
                std::fs::write(p.as_path(), b"encoded").unwrap();
            }
        }
        RunReport { result: Ok(()), log_tail: "done".to_owned(), outputs: Vec::new() }
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<FaultyStore>,
    runner: Arc<InstantRunner>,
    jobs: Arc<Jobs>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let store = Arc::new(FaultyStore::default());
    let runner = Arc::new(InstantRunner::default());
    let config = JobsConfig { concurrency: 1, idle_wait: Duration::from_millis(50), ..JobsConfig::default() };
    let jobs =
        Jobs::new(Arc::clone(&store) as Arc<dyn JobStore>, Arc::clone(&runner) as Arc<dyn Runner>, sandbox, config);
    Fixture { dir, store, runner, jobs }
}

/// Polls `cond` until it holds, failing after 20 s.
async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_saved_once_the_store_can_write_again() {
    let f = fixture();
    f.store.fail_finishes.store(true, Ordering::SeqCst);
    let shutdown = Shutdown::default();
    let mut workers = f.jobs.spawn_workers(&shutdown);
    let job = f.jobs.submit("-f lavfi -i testsrc out.mp4", SubmitOptions::default()).await.unwrap();

    // The run ends while the store cannot write: the worker keeps trying.
    until("the outcome was refused twice", async || f.store.finishes.load(Ordering::SeqCst) >= 2).await;
    let stuck = f.store.get(&job.id).await.unwrap().unwrap();
    assert_eq!(stuck.status, JobStatus::Running);
    assert!(f.dir.path().join("out.mp4").exists(), "the output is kept while the outcome waits");

    f.store.fail_finishes.store(false, Ordering::SeqCst);
    until("the job completed", async || f.store.get(&job.id).await.unwrap().unwrap().status.is_finished()).await;
    let done = f.store.get(&job.id).await.unwrap().unwrap();
    assert_eq!((done.status, done.output_files.as_slice()), (JobStatus::Completed, ["out.mp4".to_owned()].as_slice()));
    assert_eq!(f.store.log(&job.id).await.unwrap().as_deref(), Some("done"));
    assert!(f.dir.path().join("out.mp4").exists());
    assert_eq!(f.runner.ran.lock().unwrap().len(), 1, "saving the outcome does not run the job again");

    shutdown.stop_claiming.cancel();
    while workers.join_next().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_claim_runs_nothing() {
    let f = fixture();
    f.store.fail_claims.store(true, Ordering::SeqCst);
    let job = f.jobs.submit("-f lavfi -i testsrc out.mp4", SubmitOptions::default()).await.unwrap();
    let shutdown = Shutdown::default();
    let mut workers = f.jobs.spawn_workers(&shutdown);

    until("a claim was tried", async || f.store.claims.load(Ordering::SeqCst) >= 1).await;
    assert!(f.runner.ran.lock().unwrap().is_empty(), "a failed claim ran the job");
    assert_eq!(f.store.get(&job.id).await.unwrap().unwrap().status, JobStatus::Queued);

    f.store.fail_claims.store(false, Ordering::SeqCst);
    until("the job completed", async || f.store.get(&job.id).await.unwrap().unwrap().status.is_finished()).await;
    assert_eq!(f.runner.ran.lock().unwrap().len(), 1);

    shutdown.stop_claiming.cancel();
    while workers.join_next().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_up_by_an_outcome_that_cannot_be_saved() {
    let f = fixture();
    f.store.fail_finishes.store(true, Ordering::SeqCst);
    let shutdown = Shutdown::default();
    let mut workers = f.jobs.spawn_workers(&shutdown);
    let job = f.jobs.submit("-f lavfi -i testsrc out.mp4", SubmitOptions::default()).await.unwrap();
    until("the outcome was refused", async || f.store.finishes.load(Ordering::SeqCst) >= 1).await;

    shutdown.stop_claiming.cancel();
    shutdown.abort_running.cancel();
    while workers.join_next().await.is_some() {}
    // Still running in the store: recovery at the next start takes it up.
    assert_eq!(f.store.get(&job.id).await.unwrap().unwrap().status, JobStatus::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_run_fails_its_job_and_the_worker_goes_on() {
    let f = fixture();
    let shutdown = Shutdown::default();
    let mut workers = f.jobs.spawn_workers(&shutdown);
    let bad = f.jobs.submit("-f lavfi -i testsrc panic.mp4", SubmitOptions::default()).await.unwrap();
    let good = f.jobs.submit("-f lavfi -i testsrc out.mp4", SubmitOptions::default()).await.unwrap();

    until("both jobs finished", async || {
        let bad = f.store.get(&bad.id).await.unwrap().unwrap();
        let good = f.store.get(&good.id).await.unwrap().unwrap();
        bad.status.is_finished() && good.status.is_finished()
    })
    .await;
    let bad = f.store.get(&bad.id).await.unwrap().unwrap();
    assert_eq!(bad.status, JobStatus::Failed);
    assert!(bad.error.as_deref().unwrap_or_default().contains("internal error"), "{:?}", bad.error);
    assert_eq!(f.store.get(&good.id).await.unwrap().unwrap().status, JobStatus::Completed);
    // The panicked run unregistered while unwinding, before its job failed; the good run
    // unregisters just after its outcome is saved, so it may still be registered for a moment.
    until("no run is registered as running (the panicked one included)", async || f.jobs.running_here() == 0).await;

    shutdown.stop_claiming.cancel();
    while workers.join_next().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_run_is_no_longer_registered_as_running() {
    let f = fixture();
    let shutdown = Shutdown::default();
    let workers = f.jobs.spawn_workers(&shutdown);
    f.jobs.submit("-f lavfi -i testsrc hang.mp4", SubmitOptions::default()).await.unwrap();
    until("the job runs", async || f.jobs.running_here() == 1).await;

    // Dropping the set aborts the worker tasks, dropping the run's future mid-run.
    drop(workers);
    until("the dropped run is unregistered", async || f.jobs.running_here() == 0).await;
}

/// Once a run's ffmpeg has ended, the worker starts the next job while the ended one's outcome
/// is still being saved (here: the store refuses it for a while); a job whose footprint
/// conflicts with the ended one waits until that outcome is saved, and a worker never has more
/// than one run ending so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_job_starts_while_an_ended_run_saves_its_outcome_unless_it_conflicts() {
    let f = fixture();
    f.store.fail_finishes.store(true, Ordering::SeqCst);
    let first = f.jobs.submit("-f lavfi -i testsrc first.mp4", SubmitOptions::default()).await.unwrap();
    // Reads what `first` writes: it waits for `first`'s outcome.
    let reads = f.jobs.submit("-i first.mp4 -c copy reads.mp4", SubmitOptions::default()).await.unwrap();
    let free = f.jobs.submit("-f lavfi -i testsrc free.mp4", SubmitOptions::default()).await.unwrap();
    let last = f.jobs.submit("-f lavfi -i testsrc last.mp4", SubmitOptions::default()).await.unwrap();
    let shutdown = Shutdown::default();
    let mut workers = f.jobs.spawn_workers(&shutdown);
    let ran = |name: &str| f.runner.ran.lock().unwrap().iter().any(|command| command.contains(name));

    // `first` ended and cannot save its outcome: `free` runs meanwhile (and cannot save its
    // own either).
    until("free ran while first's outcome was refused", async || ran("free.mp4")).await;
    let status = async |id: &JobId| f.store.get(id).await.unwrap().unwrap().status;
    assert_eq!(status(&first.id).await, JobStatus::Running, "first's outcome was not saved yet");
    // Two runs ending: the worker waits for the older before it claims again. Each further
    // refusal is a retry of one of them, so by the time there were several, a worker that did
    // not wait would have claimed `last`.
    let refused = f.store.finishes.load(Ordering::SeqCst);
    until("both outcomes were retried", async || f.store.finishes.load(Ordering::SeqCst) >= refused + 4).await;
    assert!(!ran("reads.mp4"), "a job that reads first's output ran before first's outcome was saved");
    assert!(!ran("last.mp4"), "a third job started while two runs were ending");
    assert_eq!(status(&reads.id).await, JobStatus::Queued);

    f.store.fail_finishes.store(false, Ordering::SeqCst);
    until("every job finished", async || {
        let mut all = true;
        for id in [&first.id, &reads.id, &free.id, &last.id] {
            all &= status(id).await.is_finished();
        }
        all
    })
    .await;
    let job = async |id: &JobId| f.store.get(id).await.unwrap().unwrap();
    let (first, reads) = (job(&first.id).await, job(&reads.id).await);
    assert_eq!(first.status, JobStatus::Completed);
    assert!(reads.started_at.unwrap() >= first.completed_at.unwrap(), "{first:?} {reads:?}");
    assert_eq!(f.runner.ran.lock().unwrap().len(), 4, "each job ran once");

    shutdown.stop_claiming.cancel();
    while workers.join_next().await.is_some() {}
}

/// A job's status events reach the bus in the order of its transitions, however long working
/// out the `waiting_reason` of its `queued` takes (here `held_back` answers only after the job
/// was claimed): the submit's `queued` is not overtaken by the worker's `running` and then
/// dropped as older (it was, with `held_back` reading the store: an all-jobs stream missed it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_waiting_reason_does_not_reorder_or_lose_status_events() {
    let f = fixture();
    let mut all = f.jobs.events().subscribe_all();
    f.store.hold_held_back.send_replace(true);
    let shutdown = Shutdown::default();
    let mut workers = f.jobs.spawn_workers(&shutdown);
    let submit = {
        let jobs = Arc::clone(&f.jobs);
        tokio::spawn(async move { jobs.submit("-f lavfi -i testsrc out.mp4", SubmitOptions::default()).await })
    };
    until("the submit works out its waiting reason", async || f.store.held.load(Ordering::SeqCst) >= 1).await;
    let id = f.store.list(&ListQuery { statuses: Vec::new(), after_seq: None, limit: 1 }).await.unwrap()[0].id.clone();
    until("the job ran", async || f.store.get(&id).await.unwrap().unwrap().status.is_finished()).await;
    f.store.hold_held_back.send_replace(false);
    let job = submit.await.unwrap().unwrap();

    let mut statuses = Vec::new();
    while statuses.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(20), all.recv()).await.expect("a status event").unwrap();
        if let jobs::events::Event::Status(j) = event.event() {
            assert_eq!(j.id, job.id);
            statuses.push((j.event_seq, j.status));
        }
    }
    let expected = [(1, JobStatus::Queued), (2, JobStatus::Running), (3, JobStatus::Completed)];
    assert_eq!(statuses, expected, "every status, in order");

    shutdown.stop_claiming.cancel();
    while workers.join_next().await.is_some() {}
}

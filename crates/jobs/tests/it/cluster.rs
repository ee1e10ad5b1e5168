//! Nodes of a cluster on one PostgreSQL database (a real server, `pg_harness`), each a `Jobs`
//! service over its own `PgStore`: what `LISTEN/NOTIFY` carries between them. An idle node
//! claims a job submitted elsewhere without waiting for its next look at the store; a cancel
//! reaches the node running the job; another node's streams see the job's statuses and every
//! progress block; a node whose listener was cut off catches up from the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ffmpeg_core::sandbox::{OutputTarget, Sandbox};
use jobs::events::{AllEvents, AllFilter, AllItem, Event, JobEvents, Resume};
use jobs::postgres::{PgSettings, PgStore};
use jobs::{
    Job, JobId, JobStatus, JobStore, Jobs, JobsConfig, Outcome, Progress, RunError, RunReport, RunSpec, Runner,
    Shutdown, SubmitOptions,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::fixture::eventually;

/// Longer than any test: a node that claimed a job only after this would never have heard of it.
const NEVER: Duration = Duration::from_secs(3600);

async fn fresh_url() -> String {
    tokio::task::spawn_blocking(|| pg_harness::shared().fresh_database()).await.unwrap()
}

/// One node: a service with `concurrency` workers over its own store on `url`, sharing `dir`
/// as the data directory, looking at the store unprompted only every [`NEVER`].
struct Node {
    jobs: Arc<Jobs>,
    store: Arc<dyn JobStore>,
    shutdown: Shutdown,
    _workers: tokio::task::JoinSet<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.stop_claiming.cancel();
        self.shutdown.abort_running.cancel();
    }
}

async fn node(url: &str, name: &str, dir: &std::path::Path, concurrency: usize, runner: Arc<dyn Runner>) -> Node {
    let settings = PgSettings { node_id: name.to_owned(), ..PgSettings::default() };
    let store: Arc<dyn JobStore> = Arc::new(PgStore::open(url, settings).await.unwrap());
    let config = JobsConfig { concurrency, idle_wait: NEVER, ..JobsConfig::default() };
    let jobs = Jobs::new(Arc::clone(&store), runner, Sandbox::new(dir).unwrap(), config);
    let shutdown = Shutdown::default();
    let workers = jobs.spawn_workers(&shutdown);
    Node { jobs, store, shutdown, _workers: workers }
}

async fn status(store: &Arc<dyn JobStore>, id: &JobId) -> JobStatus {
    store.get(id).await.unwrap().unwrap().status
}

fn write_outputs(spec: &RunSpec<'_>) {
    for target in spec.command.outputs() {
        if let OutputTarget::File(p) = target {
            std::fs::write(p.as_path(), b"encoded").unwrap();
        }
    }
}

/// Runs each job at once, writing its outputs.
struct AtOnce;

#[async_trait]
impl Runner for AtOnce {
    async fn run(&self, spec: RunSpec<'_>, _: &watch::Sender<Option<Progress>>, _: &CancellationToken) -> RunReport {
        write_outputs(&spec);
        RunReport { result: Ok(()), log_tail: String::new(), outputs: Vec::new() }
    }
}

/// Reports no progress at all and runs until cancelled (so the store's progress writes, which
/// also read a cancel, never happen); tells `started` and `stopped`.
struct UntilCancelled {
    started: mpsc::UnboundedSender<()>,
    stopped: mpsc::UnboundedSender<()>,
}

/// An [`UntilCancelled`] runner, with the receivers of its `started` and `stopped`.
fn until_cancelled() -> (Arc<UntilCancelled>, mpsc::UnboundedReceiver<()>, mpsc::UnboundedReceiver<()>) {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (stopped_tx, stopped) = mpsc::unbounded_channel();
    (Arc::new(UntilCancelled { started: started_tx, stopped: stopped_tx }), started, stopped)
}

#[async_trait]
impl Runner for UntilCancelled {
    async fn run(&self, _: RunSpec<'_>, _: &watch::Sender<Option<Progress>>, cancel: &CancellationToken) -> RunReport {
        let _ = self.started.send(());
        cancel.cancelled().await;
        let _ = self.stopped.send(());
        RunReport { result: Err(RunError::Cancelled), log_tail: String::new(), outputs: Vec::new() }
    }
}

/// Reports progress frame 1, 2, ... `blocks`, each only once the test says it was seen
/// (`seen`), then succeeds: every block must get through, whatever the store's pace.
struct Lockstep {
    blocks: u64,
    seen: tokio::sync::Mutex<mpsc::UnboundedReceiver<u64>>,
}

#[async_trait]
impl Runner for Lockstep {
    async fn run(
        &self,
        spec: RunSpec<'_>,
        progress: &watch::Sender<Option<Progress>>,
        _: &CancellationToken,
    ) -> RunReport {
        let mut seen = self.seen.lock().await;
        for frame in 1..=self.blocks {
            progress.send_replace(Some(Progress { frame: Some(frame), ..Progress::default() }));
            while seen.recv().await.is_some_and(|f| f < frame) {}
        }
        write_outputs(&spec);
        RunReport { result: Ok(()), log_tail: String::new(), outputs: Vec::new() }
    }
}

/// An idle node starts jobs submitted on another node although it looks at the store
/// unprompted only once an hour: the submit's notification wakes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_node_claims_what_another_node_queued_without_polling() {
    let (url, dir) = (fresh_url().await, tempfile::tempdir().unwrap());
    let api = node(&url, "api", dir.path(), 0, Arc::new(AtOnce)).await;
    let worker = node(&url, "worker", dir.path(), 1, Arc::new(AtOnce)).await;
    for n in 0..2 {
        let job = api.jobs.submit(&format!("-f lavfi -i testsrc out{n}.mkv"), SubmitOptions::default()).await.unwrap();
        eventually("the idle node running the job", async || status(&api.store, &job.id).await == JobStatus::Completed)
            .await;
        // Not a synchronisation (the claim must happen however long the worker waited): the
        // pause lets the worker go idle, so that without the notification the second job
        // would wait for the worker's next look at the store, in an hour.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(worker);
}

/// A cancel asked on one node stops the job on the node running it, which hears of it without
/// a progress write (the runner reports none); the cancelling node answers with the final
/// status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_one_node_stops_the_job_on_the_node_running_it() {
    let (url, dir) = (fresh_url().await, tempfile::tempdir().unwrap());
    let (runner, mut started, mut stopped) = until_cancelled();
    let api = node(&url, "api", dir.path(), 0, Arc::new(AtOnce)).await;
    let _worker = node(&url, "worker", dir.path(), 1, runner).await;
    let job = api.jobs.submit("-f lavfi -i testsrc out.mkv", SubmitOptions::default()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), started.recv()).await.expect("the job never started").unwrap();

    let answered = api.jobs.cancel(&job.id).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), stopped.recv()).await.expect("the runner was never stopped").unwrap();
    eventually("the job ending cancelled", async || status(&api.store, &job.id).await == JobStatus::Cancelled).await;
    // Within `cancel_wait` the cancelling node answers with the other node's final status.
    assert!(matches!(answered.status, JobStatus::Running | JobStatus::Cancelled), "{answered:?}");
}

/// Another node's event streams see a job's statuses (running, completed) and every progress
/// block of its run, at ffmpeg's rate rather than the store's (one write a second), with the
/// ids the running node gave them (tester finding F4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_another_node_sees_every_progress_block_and_the_end() {
    let (url, dir) = (fresh_url().await, tempfile::tempdir().unwrap());
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let blocks = 20;
    let runner = Arc::new(Lockstep { blocks, seen: tokio::sync::Mutex::new(seen_rx) });
    let api = node(&url, "api", dir.path(), 0, Arc::new(AtOnce)).await;
    let mut all = api.jobs.all_events(AllFilter { statuses: vec![], progress: true });
    let job = api.jobs.submit("-f lavfi -i testsrc out.mkv", SubmitOptions::default()).await.unwrap();
    let Resume::Events(mut events) = api.jobs.events_of(&job.id, None).await.unwrap() else { panic!("finished") };
    let worker = node(&url, "worker", dir.path(), 1, runner).await;

    let mut seen = Vec::new();
    while let Some(event) = next(&mut events).await {
        if let Event::Progress(p) = &event {
            seen_tx.send(p.progress.frame.unwrap()).unwrap();
        }
        seen.push(event);
    }
    let ids: Vec<String> = seen.iter().map(|e| e.id().to_string()).collect();
    let statuses: Vec<JobStatus> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Status(j) => Some(j.status),
            Event::Progress(_) => None,
        })
        .collect();
    assert_eq!(statuses, [JobStatus::Queued, JobStatus::Running, JobStatus::Completed], "{ids:?}");
    let frames: Vec<u64> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Progress(p) => p.progress.frame,
            Event::Status(_) => None,
        })
        .collect();
    assert_eq!(frames, (1..=blocks).collect::<Vec<_>>(), "{ids:?}");
    let progress_ids: Vec<String> = (1..=blocks).map(|k| format!("2.{k}")).collect();
    assert_eq!(ids[2..ids.len() - 1], progress_ids[..], "ids as the running node numbered them");

    // The all-jobs stream of the api node saw the same, each event naming the job.
    let mut all_seen = Vec::new();
    while all_seen.last().is_none_or(|e: &Event| !e.is_final()) {
        match tokio::time::timeout(Duration::from_secs(60), all.next()).await.expect("no event within 60 s") {
            Some(AllItem::Event(event)) => all_seen.push(event),
            other => panic!("{other:?}"),
        }
    }
    assert!(all_seen.iter().all(|e| e.job_id() == &job.id));
    assert_eq!(all_seen.iter().filter(|e| matches!(e, Event::Progress(_))).count() as u64, blocks);
    drop(worker);
}

async fn next(events: &mut JobEvents) -> Option<Event> {
    tokio::time::timeout(Duration::from_secs(60), events.next()).await.expect("no event within 60 s")
}

/// Nodes cut off from the database miss the notifications sent meanwhile; once they listen
/// again they catch up from the store: the node running a job cancelled meanwhile stops it
/// (its runner reports no progress, so no progress write reads the cancel either), and a
/// stream on another node gets the final status of a job cancelled meanwhile, and an all-jobs
/// stream there is told it may have missed events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_whose_listeners_were_cut_off_catch_up_from_the_store() {
    let (url, dir) = (fresh_url().await, tempfile::tempdir().unwrap());
    let (runner, mut started, mut stopped) = until_cancelled();
    let api = node(&url, "api", dir.path(), 0, Arc::new(AtOnce)).await;
    let worker = node(&url, "worker", dir.path(), 1, runner).await;
    let watcher = node(&url, "watcher", dir.path(), 0, Arc::new(AtOnce)).await;
    let running = api.jobs.submit("-f lavfi -i testsrc a.mkv", SubmitOptions::default()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), started.recv()).await.expect("the job never started").unwrap();
    let queued = api.jobs.submit("-f lavfi -i testsrc b.mkv", SubmitOptions::default()).await.unwrap();
    let Resume::Events(mut events) = watcher.jobs.events_of(&queued.id, None).await.unwrap() else { panic!() };
    let mut all = watcher.jobs.all_events(AllFilter::default());
    assert_eq!(next(&mut events).await.map(|e| e.id().to_string()).as_deref(), Some("1"));

    // The worker's and the watcher's connections are cut and refused; the api node's stay.
    let admin = sqlx::PgPool::connect(&pg_harness::shared().url("postgres")).await.unwrap();
    let db = url.rsplit('/').next().unwrap().to_owned();
    sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false")).execute(&admin).await.unwrap();
    let cut = ["ffmpeg-worker worker", "ffmpeg-worker watcher"].map(str::to_owned);
    let connected = async || -> i64 {
        sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = ANY($2)",
        )
        .bind(&db)
        .bind(&cut[..])
        .fetch_one(&admin)
        .await
        .unwrap()
    };
    eventually("the cut nodes' connections gone", async || connected().await == 0).await;
    api.jobs.cancel(&running.id).await.unwrap();
    assert_eq!(api.jobs.cancel(&queued.id).await.unwrap().status, JobStatus::Cancelled);
    sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true")).execute(&admin).await.unwrap();

    tokio::time::timeout(Duration::from_secs(60), stopped.recv()).await.expect("the job was never stopped").unwrap();
    eventually("the job ending cancelled", async || status(&api.store, &running.id).await == JobStatus::Cancelled)
        .await;
    let last = next(&mut events).await.expect("the stream ended without its final status");
    assert!(matches!(&last, Event::Status(job) if job.status == JobStatus::Cancelled), "{last:?}");
    // The all-jobs stream cannot be replayed: it is told that it may have missed events.
    loop {
        match tokio::time::timeout(Duration::from_secs(60), all.next()).await.expect("no notice within 60 s") {
            Some(AllItem::Missed) => break,
            Some(AllItem::Event(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    drop((worker, watcher));
}

/// Reports progress frame 1, 2, ... every `every` until cancelled.
struct Ticking {
    every: Duration,
}

#[async_trait]
impl Runner for Ticking {
    async fn run(
        &self,
        _: RunSpec<'_>,
        progress: &watch::Sender<Option<Progress>>,
        cancel: &CancellationToken,
    ) -> RunReport {
        let mut frame = 0;
        loop {
            frame += 1;
            progress.send_replace(Some(Progress { frame: Some(frame), ..Progress::default() }));
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.every) => {}
            }
        }
        RunReport { result: Err(RunError::Cancelled), log_tail: String::new(), outputs: Vec::new() }
    }
}

/// Counts the progress notifications on the cluster's channel, heard by a connection of its own.
async fn count_progress_notifications(url: &str) -> Arc<std::sync::atomic::AtomicU64> {
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut listener = sqlx::postgres::PgListener::connect(url).await.unwrap();
    listener.listen(jobs::postgres::notify::CHANNEL).await.unwrap();
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok(notification) = listener.recv().await {
            if notification.payload().contains(r#""k":"progress""#) {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    count
}

/// The progress notifications counted over `window`.
async fn notifications_in(count: &std::sync::atomic::AtomicU64, window: Duration) -> u64 {
    let before = count.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(window).await;
    count.load(std::sync::atomic::Ordering::Relaxed) - before
}

/// The node running a job notifies its progress only while another node watches the job (an
/// event stream of it there): none while nobody does, every snapshot from the moment a stream
/// opens (the stream gets progress within the runner's progress interval, not the next ping),
/// none again once the stream is gone, and every snapshot again for an all-jobs stream with
/// progress (one without progress does not count). (What is measured is printed: notifications per
/// second unwatched and watched, and how long the first progress event took to reach the new
/// stream.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_notified_only_while_another_node_watches_the_job() {
    let (url, dir) = (fresh_url().await, tempfile::tempdir().unwrap());
    let every = Duration::from_millis(50);
    let api = node(&url, "api", dir.path(), 0, Arc::new(AtOnce)).await;
    let worker = node(&url, "worker", dir.path(), 1, Arc::new(Ticking { every })).await;
    let count = count_progress_notifications(&url).await;
    let job = api.jobs.submit("-f lavfi -i testsrc out.mkv", SubmitOptions::default()).await.unwrap();
    eventually("the job running", async || status(&api.store, &job.id).await == JobStatus::Running).await;

    // Nobody watches (once the nodes' first exchange of what they watch is over): an all-jobs
    // stream without progress does not count.
    let _statuses_only = api.jobs.all_events(AllFilter::default());
    let window = Duration::from_secs(1);
    eventually("no progress notified while nobody watches", async || {
        notifications_in(&count, Duration::from_millis(500)).await == 0
    })
    .await;
    let unwatched = notifications_in(&count, window).await;

    // A stream opens on the api node: progress reaches it, from the next snapshot on.
    let opened = Instant::now();
    let Resume::Events(mut events) = api.jobs.events_of(&job.id, None).await.unwrap() else { panic!("finished") };
    while !matches!(next(&mut events).await, Some(Event::Progress(_))) {}
    let first_progress = opened.elapsed();
    let watched = notifications_in(&count, window).await;

    // The stream closes: the worker hears of it at the api node's next ping at the latest.
    drop(events);
    eventually("no progress notified once the stream closed", async || {
        notifications_in(&count, Duration::from_millis(500)).await == 0
    })
    .await;
    // An all-jobs stream with progress watches every job.
    let mut all = api.jobs.all_events(AllFilter { statuses: vec![], progress: true });
    loop {
        match tokio::time::timeout(Duration::from_secs(60), all.next()).await.expect("no event within 60 s") {
            Some(AllItem::Event(Event::Progress(p))) if p.job == job.id => break,
            Some(_) => {}
            None => panic!("the all-jobs stream ended"),
        }
    }
    let per_second = |n: u64| n as f64 / window.as_secs_f64();
    eprintln!(
        "progress every {every:?}: {:.1} notifications/s unwatched, {:.1}/s watched; first progress on a new stream \
         after {first_progress:?}",
        per_second(unwatched),
        per_second(watched)
    );
    assert_eq!(unwatched, 0, "progress notified while nobody watched");
    assert!(watched > 0, "no progress notified while watched");
    api.jobs.cancel(&job.id).await.unwrap();
    drop(worker);
}

/// A job submitted on node "api" (of a fresh database, `dir` its data directory), with its
/// events stream and an all-jobs stream there, claimed by node "lost", whose store is then
/// closed (so it never renews its lease, nor ends the job).
async fn claimed_by_a_lost_node() -> (String, tempfile::TempDir, Node, Job, JobEvents, AllEvents) {
    let (url, dir) = (fresh_url().await, tempfile::tempdir().unwrap());
    let api = node(&url, "api", dir.path(), 0, Arc::new(AtOnce)).await;
    let job = api.jobs.submit("-f lavfi -i testsrc out.mkv", SubmitOptions::default()).await.unwrap();
    let Resume::Events(events) = api.jobs.events_of(&job.id, None).await.unwrap() else { panic!("finished") };
    let all = api.jobs.all_events(AllFilter::default());
    let lost = PgStore::open(&url, PgSettings { node_id: "lost".to_owned(), ..PgSettings::default() }).await.unwrap();
    let claimed = lost.claim_next(&[]).await.unwrap().expect("the lost node claims the job");
    assert_eq!(claimed.id, job.id);
    lost.close().await;
    (url, dir, api, job, events, all)
}

/// A job re-queued by the reaper (its node's lease expired) shows its `queued` status on the
/// streams of the node that reaped it, between the lost run's `running` and whatever comes next
/// (tester finding F10: the reaper's notification names its own node, which therefore never
/// heard it, so its streams went from `running` to the next run's `running`). The lost node's
/// store is closed, so this node is the only reaper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_that_reaps_a_lost_job_streams_its_requeue() {
    let (url, _dir, _api, job, mut events, mut all) = claimed_by_a_lost_node().await;
    crate::postgres::expire_lease(&url, &job.id).await;

    let mut statuses = Vec::new();
    while statuses.len() < 3 {
        match next(&mut events).await.expect("the stream ended") {
            Event::Status(job) => statuses.push((job.event_seq, job.status)),
            Event::Progress(_) => {}
        }
    }
    assert_eq!(statuses, [(1, JobStatus::Queued), (2, JobStatus::Running), (3, JobStatus::Queued)]);
    let mut on_all = Vec::new();
    while on_all.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(60), all.next()).await.expect("no event within 60 s") {
            Some(AllItem::Event(Event::Status(job))) => on_all.push((job.event_seq, job.status)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(on_all, [(2, JobStatus::Running), (3, JobStatus::Queued)], "the all-jobs stream too, once each");
}

/// A job re-queued by another node's reaper and claimed again at once (the reaping node wakes
/// its own workers) shows its `queued` status on this node's streams too, between the lost
/// run's `running` and the new run's (tester finding F10, seen from another node: the
/// notification named `queued`, but by the time this node read the job it was running again,
/// and only that was published). Here the other node's re-queue and claim are one transaction,
/// so this node always reads the job after both; both notifications arrive at its commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_streams_a_requeue_that_was_claimed_again_before_it_read_the_job() {
    let (url, _dir, _api, job, mut events, mut all) = claimed_by_a_lost_node().await;

    // Node "other": its reaper puts the job back (as `sql::REAP` does), its worker claims it.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('ffmpeg_worker.node', 'other', true)").execute(&mut *tx).await.unwrap();
    for statement in [
        "UPDATE jobs SET status = 'queued', started_at = NULL, progress = NULL, worker_id = NULL, \
         lease_expires_at = NULL, event_seq = event_seq + 1 WHERE id = $1 AND status = 'running'",
        "UPDATE jobs SET status = 'running', started_at = (extract(epoch FROM now()) * 1000000)::bigint, attempts = attempts + 1, worker_id = 'other', \
         lease_expires_at = now() + interval '1 hour', event_seq = event_seq + 1 WHERE id = $1 AND status = 'queued'",
    ] {
        let changed = sqlx::query(statement).bind(job.id.as_str()).execute(&mut *tx).await.unwrap();
        assert_eq!(changed.rows_affected(), 1, "{statement}");
    }
    tx.commit().await.unwrap();

    let mut statuses = Vec::new();
    while statuses.len() < 4 {
        match next(&mut events).await.expect("the stream ended") {
            Event::Status(job) => statuses.push((job.event_seq, job.status, job.attempts)),
            Event::Progress(_) => {}
        }
    }
    let (queued, running) = (JobStatus::Queued, JobStatus::Running);
    assert_eq!(statuses, [(1, queued, 0), (2, running, 1), (3, queued, 1), (4, running, 2)]);
    let mut on_all = Vec::new();
    while on_all.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(60), all.next()).await.expect("no event within 60 s") {
            Some(AllItem::Event(Event::Status(job))) => on_all.push((job.event_seq, job.status)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(on_all, [(2, running), (3, queued), (4, running)], "the all-jobs stream too, once each");
    pool.close().await;
}

/// The status notifications on the cluster's channel, heard by a connection of its own (no
/// node: it tells nobody what it watches), as `(job, status)`.
async fn heard_statuses(url: &str) -> Arc<std::sync::Mutex<Vec<(String, String)>>> {
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut listener = sqlx::postgres::PgListener::connect(url).await.unwrap();
    listener.listen(jobs::postgres::notify::CHANNEL).await.unwrap();
    let kept = Arc::clone(&heard);
    tokio::spawn(async move {
        while let Ok(notification) = listener.recv().await {
            let payload: serde_json::Value = serde_json::from_str(notification.payload()).unwrap();
            if payload["k"] == "status" {
                let (job, status) = (payload["job"].as_str().unwrap(), payload["status"].as_str().unwrap());
                kept.lock().unwrap().push((job.to_owned(), status.to_owned()));
            }
        }
    });
    heard
}

/// Issue 11, capacity: a claim announces its job's start only while some other node's streams
/// watch anything (one notification a job, its end, instead of two, while none does); a
/// queued and an ended job are always announced (they wake the other nodes' idle workers).
/// Once another node opens an all-jobs stream, starts are announced again (its stream shows
/// them: `a_stream_on_another_node_sees_every_progress_block_and_the_end`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_start_is_announced_only_while_another_node_watches() {
    let (url, dir) = (fresh_url().await, tempfile::tempdir().unwrap());
    let heard = heard_statuses(&url).await;
    let worker = node(&url, "worker", dir.path(), 1, Arc::new(AtOnce)).await;
    // Runs one job through the worker; the statuses heard for it.
    let n = std::sync::atomic::AtomicUsize::new(0);
    let run_one = async || -> Vec<String> {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let job =
            worker.jobs.submit(&format!("-f lavfi -i testsrc out{i}.mkv"), SubmitOptions::default()).await.unwrap();
        let id = job.id.as_str().to_owned();
        let mut statuses = Vec::new();
        eventually("the job's end announced", async || {
            statuses = heard.lock().unwrap().iter().filter(|(j, _)| *j == id).map(|(_, s)| s.clone()).collect();
            statuses.last().is_some_and(|s| s == "completed")
        })
        .await;
        statuses
    };
    // Nobody else watches (once the worker's first second, while it learns what the others
    // watch, is over): queued and completed only.
    let mut quiet = Vec::new();
    eventually("a start left unannounced", async || {
        quiet = run_one().await;
        !quiet.iter().any(|s| s == "running")
    })
    .await;
    assert_eq!(quiet, ["queued", "completed"]);

    // Another node opens an all-jobs stream: starts are announced again.
    let api = node(&url, "api", dir.path(), 0, Arc::new(AtOnce)).await;
    let _all = api.jobs.all_events(AllFilter::default());
    let mut loud = Vec::new();
    eventually("a start announced once another node watches", async || {
        loud = run_one().await;
        loud.iter().any(|s| s == "running")
    })
    .await;
    assert_eq!(loud, ["queued", "running", "completed"]);
}

/// A write of node "worker" about job `id`, as its store makes it: its node id, and the quiet
/// start setting (`on`: a claim's start left unannounced, migration 0011), on the transaction.
async fn as_worker(pool: &sqlx::PgPool, id: &JobId, quiet: &str, statement: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "SELECT set_config('ffmpeg_worker.node', 'worker', true), set_config('ffmpeg_worker.quiet_start', $1, true)",
    )
    .bind(quiet)
    .execute(&mut *tx)
    .await
    .unwrap();
    let changed = sqlx::query(statement).bind(id.as_str()).execute(&mut *tx).await.unwrap();
    assert_eq!(changed.rows_affected(), 1, "{statement}");
    tx.commit().await.unwrap();
}

/// Node "worker"'s claim of a job (`sql::CLAIM_CHOSEN`).
const WORKER_CLAIMS: &str = "UPDATE jobs SET status = 'running', \
     started_at = (extract(epoch FROM now()) * 1000000)::bigint, attempts = attempts + 1, worker_id = 'worker', \
     lease_expires_at = now() + interval '1 hour', event_seq = event_seq + 1 WHERE id = $1 AND status = 'queued'";
/// Node "worker"'s end of the run: failed.
const WORKER_FAILS: &str = "UPDATE jobs SET status = 'failed', \
     completed_at = (extract(epoch FROM now()) * 1000000)::bigint, error = 'exit status 1', worker_id = NULL, \
     lease_expires_at = NULL, event_seq = event_seq + 1 WHERE id = $1 AND status = 'running'";

/// A job stream's statuses as `(event_seq, status, started)`, up to its first progress event
/// (with its id) or its end (`None`).
async fn statuses_until_progress(events: &mut JobEvents) -> (Vec<(u64, JobStatus, bool)>, Option<String>) {
    let mut statuses = Vec::new();
    while let Some(event) = next(events).await {
        match event {
            Event::Status(job) => statuses.push((job.event_seq, job.status, job.started_at.is_some())),
            Event::Progress(p) => return (statuses, Some(p.id.to_string())),
        }
    }
    (statuses, None)
}

/// Issue 11: a stream opened on one node at the very moment a job starts on another, before
/// the running node heard of the stream (its claim then leaves the start unannounced:
/// migration 0011's quiet starts), still shows the job's `running`, before the run's progress
/// and its end: the streaming node rebuilds the statuses between the last one it published and
/// the one a later notification implies (`cluster::passed`), with the event ids the store gave
/// them. The other node's claim and end are made as its store makes them, and its progress
/// notified as it notifies it, so the race is the same every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_as_another_node_starts_the_job_unannounced_still_sees_it_running() {
    let (url, dir) = (fresh_url().await, tempfile::tempdir().unwrap());
    let heard = heard_statuses(&url).await;
    let api = node(&url, "api", dir.path(), 0, Arc::new(AtOnce)).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (queued, running, failed) = (JobStatus::Queued, JobStatus::Running, JobStatus::Failed);

    // Node "worker", not yet told of the stream, claims the job, then notifies its first
    // progress (the stream's watch has reached it meanwhile).
    let job = api.jobs.submit("-f lavfi -i testsrc out.mkv", SubmitOptions::default()).await.unwrap();
    let Resume::Events(mut events) = api.jobs.events_of(&job.id, None).await.unwrap() else { panic!("finished") };
    as_worker(&pool, &job.id, "on", WORKER_CLAIMS).await;
    let progress = serde_json::json!({
        "k": "progress", "node": "worker", "job": job.id.as_str(), "id": "2.1",
        "progress": Progress { frame: Some(7), ..Progress::default() },
    });
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(jobs::postgres::notify::CHANNEL)
        .bind(progress.to_string())
        .execute(&pool)
        .await
        .unwrap();
    let seen = statuses_until_progress(&mut events).await;
    assert_eq!(seen, (vec![(1, queued, false), (2, running, true)], Some("2.1".to_owned())));
    as_worker(&pool, &job.id, "off", WORKER_FAILS).await;
    assert_eq!(statuses_until_progress(&mut events).await, (vec![(3, failed, true)], None));
    // The start was never announced: the stream's `running` was rebuilt.
    let id = job.id.as_str().to_owned();
    let mut announced = Vec::new();
    eventually("the job's end heard", async || {
        announced = heard.lock().unwrap().iter().filter(|(j, _)| *j == id).map(|(_, s)| s.clone()).collect();
        announced.last().is_some_and(|s| s == "failed")
    })
    .await;
    assert_eq!(announced, ["queued", "failed"]);

    // No progress (the run ended first): the end brings the `running` before it.
    let job = api.jobs.submit("-f lavfi -i testsrc out2.mkv", SubmitOptions::default()).await.unwrap();
    let Resume::Events(mut events) = api.jobs.events_of(&job.id, None).await.unwrap() else { panic!("finished") };
    as_worker(&pool, &job.id, "on", WORKER_CLAIMS).await;
    as_worker(&pool, &job.id, "off", WORKER_FAILS).await;
    let seen = statuses_until_progress(&mut events).await;
    assert_eq!(seen, (vec![(1, queued, false), (2, running, true), (3, failed, true)], None));
    pool.close().await;
}

/// Tester finding K10, issue 11: a node that stops between an end's commit and its
/// announcement (its statement wrote the announcement to the outbox, migration 0015; the
/// store's fault point skips sending it, and the node is then closed, as one that died there)
/// still has its end reach the other nodes' streams: the sweep of another node's reaper round
/// announces what the outbox kept ([`jobs::postgres::SWEEP_AGE`] plus a round, about 3 s). An
/// end announced twice (a crash that lost the sweep's delete after its notification went out,
/// simulated by putting the row back) is harmless: the streams go by the job's event number,
/// so the all-jobs stream shows the end once, then the next change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_whose_node_stopped_before_announcing_it_reaches_the_other_nodes_once() {
    let (url, dir) = (fresh_url().await, tempfile::tempdir().unwrap());
    let api = node(&url, "api", dir.path(), 0, Arc::new(AtOnce)).await;
    let job = api.jobs.submit("-f lavfi -i testsrc out.mkv", SubmitOptions::default()).await.unwrap();
    let Resume::Events(mut events) = api.jobs.events_of(&job.id, None).await.unwrap() else { panic!("finished") };
    let mut all = api.jobs.all_events(AllFilter::default());
    let dying = PgStore::open(&url, PgSettings { node_id: "dying".to_owned(), ..PgSettings::default() }).await.unwrap();
    dying.stop_before_announcing_ends();
    let claimed = dying.claim_next(&[]).await.unwrap().expect("the dying node claims the job");
    assert_eq!(claimed.id, job.id);
    let ended =
        dying.finish(&job.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
    dying.close().await;
    assert_eq!((ended.status, ended.event_seq), (JobStatus::Completed, 3));

    let mut statuses = Vec::new();
    while let Some(event) = next(&mut events).await {
        if let Event::Status(job) = event {
            statuses.push((job.event_seq, job.status));
        }
    }
    assert_eq!(statuses, [(1, JobStatus::Queued), (2, JobStatus::Running), (3, JobStatus::Completed)]);
    let next_on_all = async |all: &mut AllEvents| loop {
        match tokio::time::timeout(Duration::from_secs(60), all.next()).await.expect("no event within 60 s") {
            Some(AllItem::Event(Event::Status(job))) => return (job.id.clone(), job.event_seq, job.status),
            Some(AllItem::Event(Event::Progress(_))) => {}
            other => panic!("{other:?}"),
        }
    };
    while next_on_all(&mut all).await != (job.id.clone(), 3, JobStatus::Completed) {}

    // The end announced again: the row put back, old enough for the sweep. The job's own
    // stream is closed (its channel gone): the all-jobs stream goes by what it last sent.
    drop(events);
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO announcements (job, seq, payload, made_at) VALUES ($1, 3, json_build_object('k', 'status', \
         'node', 'dying', 'job', $1::text, 'seq', 3, 'status', 'completed')::text, now() - interval '1 hour')",
    )
    .bind(job.id.as_str())
    .execute(&admin)
    .await
    .unwrap();
    eventually("the repeated end swept", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM announcements").fetch_one(&admin).await.unwrap() == 0
    })
    .await;
    // A change made on another node after it, heard in commit order: the next on the stream.
    let other = PgStore::open(&url, PgSettings { node_id: "other".to_owned(), ..PgSettings::default() }).await.unwrap();
    let marker = other.insert("-f lavfi -i testsrc marker.mkv".to_owned(), SubmitOptions::default()).await.unwrap();
    assert_eq!(next_on_all(&mut all).await, (marker.id.clone(), 1, JobStatus::Queued), "the repeated end shown again");
    other.close().await;
}

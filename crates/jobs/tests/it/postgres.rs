//! What only the PostgreSQL store promises (the conformance suite in `store.rs` runs on it
//! too): many nodes claiming at once, each job once and never two conflicting jobs together;
//! fencing by node, attempt and lease; lease renewal; recovery of a node's own leftovers only;
//! migrations of nodes starting together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ffmpeg_core::command::Command;
use ffmpeg_core::footprint::Footprint;
use ffmpeg_core::sandbox::Sandbox;
use jobs::postgres::{PgSettings, PgStore};
use jobs::store::Attempt;
use jobs::{JobId, JobStatus, JobStore, Outcome, Progress, StoreError, SubmitOptions};
use proptest::prelude::*;
use tempfile::TempDir;

use crate::fixture::eventually;

type Store = Arc<dyn JobStore>;

async fn fresh_url() -> String {
    tokio::task::spawn_blocking(|| pg_harness::shared().fresh_database()).await.unwrap()
}

fn settings(node: &str, lease: Duration) -> PgSettings {
    PgSettings { node_id: node.to_owned(), lease, ..PgSettings::default() }
}

async fn node(url: &str, name: &str) -> Store {
    Arc::new(PgStore::open(url, settings(name, Duration::from_secs(30))).await.unwrap())
}

fn footprint(command: &str) -> Footprint {
    let dir = TempDir::new().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    Footprint::of(&sandbox.resolve_command(&Command::parse(command).unwrap()).unwrap())
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, expected: JobStatus) {
    match result {
        Err(StoreError::Conflict { status, .. }) => assert_eq!(status, expected),
        other => panic!("expected a conflict ({expected}), got {other:?}"),
    }
}

/// The shared file a job of [`claim_everything`] writes, from its command (`None`: its own).
fn shared_file(command: &str) -> Option<u8> {
    let name = command.rsplit(' ').next()?;
    name.strip_prefix("shared")?.strip_suffix(".mp4")?.parse().ok()
}

/// One run of the property: `nodes` stores on one database, `claimers` workers each, `jobs`
/// jobs with random priorities, each writing one of `files` files (`None`: writing a file of
/// its own). The first `upfront` jobs are submitted before the workers start, the others (on
/// every node in turn) while they claim: jobs submitted side by side with claims must not let a
/// later job start before an earlier conflicting one it cannot see yet. Workers claim until
/// every job is done, holding each job for a moment.
async fn claim_everything(nodes: usize, claimers: usize, jobs: &[(i32, Option<u8>)], upfront: usize) {
    let url = fresh_url().await;
    let mut stores = Vec::new();
    for n in 0..nodes {
        stores.push(node(&url, &format!("node-{n}")).await);
    }
    let submissions: Vec<(String, SubmitOptions)> = jobs
        .iter()
        .enumerate()
        .map(|(i, (priority, file))| {
            let command = match file {
                Some(f) => format!("-i in.mp4 shared{f}.mp4"),
                None => format!("-i in.mp4 own{i}.mp4"),
            };
            let options =
                SubmitOptions { priority: *priority, footprint: footprint(&command), ..SubmitOptions::default() };
            (command, options)
        })
        .collect();
    let upfront = upfront.min(submissions.len());
    for (i, (command, options)) in submissions[..upfront].iter().enumerate() {
        stores[i % nodes].insert(command.clone(), options.clone()).await.unwrap();
    }
    // The shared files being written now, and every claim made.
    let writing: Arc<Mutex<HashMap<u8, JobId>>> = Arc::default();
    let claims: Arc<Mutex<Vec<JobId>>> = Arc::default();
    let total = jobs.len();
    let mut workers = tokio::task::JoinSet::new();
    for (n, store) in stores.iter().enumerate() {
        let later: Vec<(String, SubmitOptions)> =
            submissions[upfront..].iter().skip(n).step_by(nodes).cloned().collect();
        let submitter = Arc::clone(store);
        workers.spawn(async move {
            for (command, options) in later {
                submitter.insert(command, options).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        for _ in 0..claimers {
            let (store, writing, claims) = (Arc::clone(store), Arc::clone(&writing), Arc::clone(&claims));
            workers.spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(120);
                while claims.lock().unwrap().len() < total || !writing.lock().unwrap().is_empty() {
                    assert!(Instant::now() < deadline, "the queue was not drained");
                    let Some(job) = store.claim_next(&[]).await.unwrap() else {
                        store.wait_for_work(Duration::from_millis(20)).await;
                        continue;
                    };
                    claims.lock().unwrap().push(job.id.clone());
                    let file = shared_file(&job.command);
                    if let Some(file) = file {
                        let other = writing.lock().unwrap().insert(file, job.id.clone());
                        assert_eq!(other, None, "two jobs writing shared{file}.mp4 ran at once");
                    }
                    tokio::task::yield_now().await;
                    if let Some(file) = file {
                        // Before the finish commits: a claim that follows it may take the file.
                        writing.lock().unwrap().remove(&file);
                    }
                    store
                        .finish(&job.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "")
                        .await
                        .unwrap();
                }
            });
        }
    }
    workers.join_all().await;
    let claims = claims.lock().unwrap().clone();
    let distinct: std::collections::HashSet<&JobId> = claims.iter().collect();
    assert_eq!(distinct.len(), claims.len(), "a job was handed out twice");
    assert_eq!(claims.len(), total, "a job was never handed out");
    let counts = stores[0].counts().await.unwrap();
    assert_eq!(counts.get(&JobStatus::Completed).copied(), Some(total as u64), "{counts:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Many claimers on several nodes never get one job twice, and never run two jobs that
    /// write one file at once, whether the jobs were all queued first or keep coming while
    /// they claim.
    #[test]
    fn concurrent_claimers_on_many_nodes_take_each_job_once(
        nodes in 2usize..=4,
        claimers in 1usize..=4,
        jobs in proptest::collection::vec((-2i32..=2, proptest::option::weighted(0.5, 0u8..3)), 10..60),
        upfront in proptest::sample::select(vec![0usize, 5, 1000]),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(claim_everything(nodes, claimers, &jobs, upfront));
    }
}

/// The first key of the queue's advisory lock (`postgres/sql.rs`, `queue_lock!`).
const QUEUE_LOCK: &str = "1717988720";

/// Claims run side by side, so the footprint rule needs new jobs to become visible in
/// submission order: a claim waits for an insert in flight (which took its seq before a later,
/// committed job), then starts the earlier of the two conflicting jobs, not the later one; and
/// the store's own insert waits while a claim reads the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_see_new_jobs_in_submission_order() {
    let url = fresh_url().await;
    let store = node(&url, "claimer").await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let writes = serde_json::to_string(&footprint("-f lavfi -i testsrc shared.mp4")).unwrap();
    let insert = "INSERT INTO jobs (id, status, command, priority, metadata, created_at, footprint) \
                  VALUES ($1, 'queued', $2, 0, '{}', 0, $3) RETURNING seq";
    // An insert in flight, as the store makes one: its stripe of the queue lock, then its seq.
    let mut early = pool.begin().await.unwrap();
    sqlx::query(&format!("SELECT pg_advisory_xact_lock({QUEUE_LOCK}, pg_backend_pid() % 8)"))
        .execute(&mut *early)
        .await
        .unwrap();
    let early_seq: i64 = sqlx::query_scalar(insert)
        .bind(JobId::generate().as_str())
        .bind("early")
        .bind(&writes)
        .fetch_one(&mut *early)
        .await
        .unwrap();
    // A later job writing the same file, committed first.
    let late_seq: i64 = sqlx::query_scalar(insert)
        .bind(JobId::generate().as_str())
        .bind("late")
        .bind(&writes)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(early_seq < late_seq);
    let claimer = Arc::clone(&store);
    let claim = tokio::spawn(async move { claimer.claim_next(&[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!claim.is_finished(), "the claim read the queue while an earlier job was still being inserted");
    early.commit().await.unwrap();
    let claimed = claim.await.unwrap().unwrap().expect("a job may start");
    assert_eq!(claimed.command, "early", "the later job started before the earlier one it conflicts with");
    assert_eq!(store.claim_next(&[]).await.unwrap(), None, "the later job waits for the running earlier one");

    // A claim reading the queue (every stripe held shared): the store's insert waits for it.
    let mut reading = pool.begin().await.unwrap();
    sqlx::query(&format!("SELECT pg_advisory_xact_lock_shared({QUEUE_LOCK}, s) FROM generate_series(0, 7) AS s"))
        .execute(&mut *reading)
        .await
        .unwrap();
    let inserter = Arc::clone(&store);
    let inserted = tokio::spawn(async move { inserter.insert("third".to_owned(), SubmitOptions::default()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!inserted.is_finished(), "an insert took its seq while a claim was reading the queue");
    reading.commit().await.unwrap();
    let third = inserted.await.unwrap().unwrap();
    assert!(third.seq > late_seq);
}

/// The claims of one node's workers that ask at once are served together: a round reads the
/// queue once and claims a job for every worker waiting (here the first claim's round serves
/// its own worker, the next round the seven that asked meanwhile), each job once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_waiting_claims_are_served_by_one_read_of_the_queue() {
    let url = fresh_url().await;
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&admin).await.unwrap();
    // Every later connection counts the calls of the claim's read (a function, migration 0010).
    sqlx::query(&format!("ALTER DATABASE {database} SET track_functions = 'pl'")).execute(&admin).await.unwrap();
    let store = PgStore::open(&url, settings("batch", Duration::from_secs(30))).await.unwrap();
    let mut queued = Vec::new();
    for i in 0..8 {
        queued.push(store.insert(format!("-i in.mp4 out{i}.mp4"), SubmitOptions::default()).await.unwrap().id);
    }
    let claims = futures_util::future::join_all((0..8).map(|_| store.claim_next(&[]))).await;
    let mut claimed: Vec<JobId> = claims.into_iter().map(|c| c.unwrap().expect("a job for every worker").id).collect();
    claimed.sort();
    queued.sort();
    assert_eq!(claimed, queued, "each queued job once");
    // The store's connections end: their statistics are written.
    store.close().await;
    let mut reads = 0;
    eventually("the function statistics", async || {
        reads = sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE(SUM(calls), 0)::BIGINT FROM pg_stat_user_functions WHERE funcname = 'ffmpeg_worker_claim_view'",
        )
        .fetch_one(&admin)
        .await
        .unwrap();
        reads > 0
    })
    .await;
    assert!(reads <= 3, "8 claims read the queue {reads} times");
}

/// Sets a job's lease into the past, as if its node had stopped renewing it.
pub(crate) async fn expire_lease(url: &str, id: &JobId) {
    expire_lease_by(url, id, "1 second").await;
}

/// Every node's reaper hands an expired job back (or ends it) within a second, which would
/// change the job under the assertions below; but a lost job that must end (here: its cancel
/// was asked for) and that recorded a run is left to a node that takes it over to clean up, for
/// one more lease (the store's `REAP` statement): with a long lease the reaper leaves it alone for
/// the whole test, whatever the load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_node_holding_a_live_lease_writes_to_a_running_job() {
    use jobs::store::RunRecord;
    let url = fresh_url().await;
    let lease = Duration::from_secs(600);
    let a: Store = Arc::new(PgStore::open(&url, settings("a", lease)).await.unwrap());
    let b: Store = Arc::new(PgStore::open(&url, settings("b", lease)).await.unwrap());
    let job = a.insert("x".to_owned(), SubmitOptions::default()).await.unwrap();
    let claimed = a.claim_next(&[]).await.unwrap().unwrap();
    assert_eq!(claimed.id, job.id);
    // As a worker does before ffmpeg starts.
    let run = RunRecord {
        attempt: 1,
        footprint: Footprint::default(),
        snapshot: jobs::outputs::Snapshot::default(),
        temp_area: false,
    };
    a.record_run(&job.id, &run).await.unwrap();
    let progress = Progress { frame: Some(3), ..Progress::default() };

    // Another node can neither report for it, finish it, nor put it back, nor recover it.
    assert_conflict(b.update_progress(&job.id, &progress).await, JobStatus::Running);
    assert_conflict(
        b.finish(&job.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await,
        JobStatus::Running,
    );
    assert_conflict(b.requeue(&job.id).await, JobStatus::Running);
    assert_eq!(b.interrupted_runs().await.unwrap(), vec![]);
    assert_eq!(b.recover(1).await.unwrap(), jobs::store::Recovery::default());
    // Anyone may ask for a cancel; the holder learns of it.
    assert!(matches!(b.cancel(&job.id).await, Ok(jobs::store::CancelOutcome::Requested(_))));
    assert!(a.update_progress(&job.id, &progress).await.unwrap());
    let before = a.get(&job.id).await.unwrap();

    // Once its lease has expired, the holder cannot write either: the reaper may hand the
    // job to another node at any moment.
    expire_lease(&url, &job.id).await;
    assert_conflict(a.update_progress(&job.id, &Progress::default()).await, JobStatus::Running);
    assert_conflict(
        a.finish(&job.id, Outcome::Completed { output_files: vec!["x".into()], outputs: Vec::new() }, "").await,
        JobStatus::Running,
    );
    assert_conflict(a.requeue(&job.id).await, JobStatus::Running);
    assert_eq!(a.get(&job.id).await.unwrap(), before, "refused writes changed nothing");
}

/// A job one node retried (the bucket failed) is taken up by an idle worker of another node
/// when its `retry_at` comes: the retry's notification wakes that worker, whose claim reads the
/// wait (by the database's clock) and then sleeps until it ends, not until its own timeout. Only
/// the node holding the job may retry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_idle_worker_takes_a_retried_job_when_its_time_comes() {
    let url = fresh_url().await;
    let a = node(&url, "a").await;
    let b = node(&url, "b").await;
    let job = a.insert("x".to_owned(), SubmitOptions::default()).await.unwrap();
    assert_eq!(a.claim_next(&[]).await.unwrap().map(|j| j.id), Some(job.id.clone()));
    assert_conflict(b.retry(&job.id, "not b's", Duration::ZERO, Attempt::Counted).await, JobStatus::Running);
    // b's worker found nothing and waits (its insert's wake-up used up first).
    assert_eq!(b.claim_next(&[]).await.unwrap(), None);
    b.wait_for_work(Duration::ZERO).await;
    let worker = {
        let b = Arc::clone(&b);
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                assert!(Instant::now() < deadline, "node b never took the retried job");
                // An hour: only a wake-up (the retry's notification, then its time) ends it.
                let woke =
                    tokio::time::timeout(Duration::from_secs(30), b.wait_for_work(Duration::from_secs(3600))).await;
                assert!(woke.is_ok(), "node b's worker slept past the retry time");
                if let Some(job) = b.claim_next(&[]).await.unwrap() {
                    return job;
                }
            }
        })
    };
    a.retry(&job.id, "the storage `s3://b` is unavailable", Duration::from_millis(1500), Attempt::Counted)
        .await
        .unwrap();
    assert_eq!(a.claim_next(&[]).await.unwrap(), None, "not before its time, on the node that retried it either");
    let taken = worker.await.unwrap();
    assert_eq!((taken.id, taken.attempts, taken.status), (job.id.clone(), 2, JobStatus::Running));
    let read = a.get(&job.id).await.unwrap().unwrap();
    assert_eq!(read.retry_reason.as_deref(), Some("the storage `s3://b` is unavailable"));
    assert!(read.retry_at.is_some_and(|at| at > read.created_at), "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_touches_only_the_nodes_own_leftovers() {
    let url = fresh_url().await;
    let (a, b) = (node(&url, "a").await, node(&url, "b").await);
    let ja = a.insert("a".to_owned(), SubmitOptions::default()).await.unwrap();
    let jb = a.insert("b".to_owned(), SubmitOptions::default()).await.unwrap();
    assert_eq!(a.claim_next(&[]).await.unwrap().unwrap().id, ja.id);
    assert_eq!(b.claim_next(&[]).await.unwrap().unwrap().id, jb.id);
    drop(a);
    // Node a restarts with the same NODE_ID: only its own job is its leftover.
    let a = node(&url, "a").await;
    let runs = a.interrupted_runs().await.unwrap();
    assert_eq!(runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), std::slice::from_ref(&ja.id));
    let recovery = a.recover(5).await.unwrap();
    assert_eq!(recovery.requeued, std::slice::from_ref(&ja.id));
    assert_eq!(a.get(&jb.id).await.unwrap().unwrap().status, JobStatus::Running, "b's job is left alone");
    b.finish(&jb.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_renewed_while_the_job_is_held() {
    let url = fresh_url().await;
    let store = PgStore::open(&url, settings("renewer", Duration::from_millis(1500))).await.unwrap();
    let job = store.insert("x".to_owned(), SubmitOptions::default()).await.unwrap();
    store.claim_next(&[]).await.unwrap().unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let expiry = || {
        sqlx::query_scalar::<_, f64>("SELECT extract(epoch FROM lease_expires_at)::float8 FROM jobs WHERE id = $1")
            .bind(job.id.as_str())
            .fetch_one(&pool)
    };
    let first = expiry().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while expiry().await.unwrap() <= first {
        assert!(Instant::now() < deadline, "the lease was never renewed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.finish(&job.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
    let lease: Option<f64> =
        sqlx::query_scalar("SELECT extract(epoch FROM lease_expires_at)::float8 FROM jobs WHERE id = $1")
            .bind(job.id.as_str())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(lease, None, "a finished job holds no lease");
}

/// A progress write renews the job's lease in the same statement (so a job that reports
/// progress needs no separate renewal): with a 10-minute lease the renewal task would not
/// renew it for minutes, yet after a progress write the lease runs 10 minutes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_write_renews_the_lease() {
    let url = fresh_url().await;
    let store = PgStore::open(&url, settings("reporter", Duration::from_secs(600))).await.unwrap();
    let job = store.insert("x".to_owned(), SubmitOptions::default()).await.unwrap();
    store.claim_next(&[]).await.unwrap().unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let left = || {
        sqlx::query_scalar::<_, f64>(
            "SELECT extract(epoch FROM lease_expires_at - now())::float8 FROM jobs WHERE id = $1",
        )
        .bind(job.id.as_str())
        .fetch_one(&pool)
    };
    sqlx::query("UPDATE jobs SET lease_expires_at = now() + interval '30 seconds' WHERE id = $1")
        .bind(job.id.as_str())
        .execute(&pool)
        .await
        .unwrap();
    assert!(left().await.unwrap() <= 30.0);
    let cancel = store.update_progress(&job.id, &Progress { frame: Some(1), ..Progress::default() }).await.unwrap();
    assert!(!cancel);
    let now_left = left().await.unwrap();
    assert!(now_left > 500.0, "the progress write did not renew the lease: {now_left} s left");
}

/// Nodes starting together on an empty database: the migrations run once (sqlx's advisory
/// lock), every node opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let url = fresh_url().await;
    let mut opens = tokio::task::JoinSet::new();
    for n in 0..6 {
        let url = url.clone();
        opens.spawn(async move { PgStore::open(&url, settings(&format!("n{n}"), Duration::from_secs(30))).await });
    }
    for store in opens.join_all().await {
        store.unwrap();
    }
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&pool).await.unwrap();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations-postgres"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sql"))
        .count();
    assert_eq!(applied, i64::try_from(migrations).unwrap(), "each migration once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_and_unreachable_servers_are_open_errors() {
    let err =
        PgStore::open("postgres://u:secret@127.0.0.1:1/x?sslmode=nonsense", PgSettings::default()).await.unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
    let err = PgStore::open("postgres://u:secret@127.0.0.1:1/x", PgSettings::default()).await.unwrap_err();
    assert!(matches!(err, jobs::sqlite::OpenError::Postgres { .. }), "{err:?}");
    assert!(!err.to_string().contains("secret"), "{err}");
}

/// A node whose lease expires (it died, or was cut off) loses the job: a reaper on another
/// node puts it back in the queue counting the attempt, the old node's worker is told to stop
/// it and its writes are refused; past the attempt limit the job fails with "worker lost".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_are_reaped_and_their_holder_stops() {
    let url = fresh_url().await;
    let (a, b) = (node(&url, "a").await, node(&url, "b").await);
    let job = a.insert("x".to_owned(), SubmitOptions::default()).await.unwrap();
    assert_eq!(a.claim_next(&[]).await.unwrap().unwrap().attempts, 1);
    let lost = a.lease_lost(&job.id).expect("a PostgreSQL claim can be lost");
    assert!(!lost.is_cancelled());
    assert!(b.lease_lost(&job.id).is_none(), "b holds nothing");

    expire_lease(&url, &job.id).await;
    eventually("the reaper's requeue", async || a.get(&job.id).await.unwrap().unwrap().status == JobStatus::Queued)
        .await;
    let requeued = a.get(&job.id).await.unwrap().unwrap();
    assert_eq!((requeued.attempts, requeued.started_at), (1, None), "the lost attempt stays counted");
    eventually("a's worker told to stop", async || lost.is_cancelled()).await;
    assert!(a.finish(&job.id, Outcome::Completed { output_files: vec![], outputs: vec![] }, "").await.is_err());

    let again = b.claim_next(&[]).await.unwrap().unwrap();
    assert_eq!((again.id.clone(), again.attempts), (job.id.clone(), 2));
    expire_lease(&url, &job.id).await;
    eventually("the reaper's verdict", async || a.get(&job.id).await.unwrap().unwrap().status == JobStatus::Failed)
        .await;
    let failed = a.get(&job.id).await.unwrap().unwrap();
    assert_eq!(failed.error.as_deref(), Some("worker lost"));
    assert!(failed.completed_at.is_some());
}

/// A job whose cancel was asked for while its node was dying ends cancelled, not re-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_job_with_a_cancel_pending_ends_cancelled() {
    let url = fresh_url().await;
    let (a, b) = (node(&url, "a").await, node(&url, "b").await);
    let job = a.insert("x".to_owned(), SubmitOptions::default()).await.unwrap();
    a.claim_next(&[]).await.unwrap().unwrap();
    b.cancel(&job.id).await.unwrap();
    expire_lease(&url, &job.id).await;
    eventually("the reaper", async || b.get(&job.id).await.unwrap().unwrap().status == JobStatus::Cancelled).await;
    assert_eq!(b.claim_next(&[]).await.unwrap(), None);
}

/// A node cut off from the database (it cannot renew) stops its jobs by its own clock (a lease
/// after its last renewal was sent, less one round): a partitioned node does not keep running
/// a job that another node may take over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_stops_its_jobs_itself() {
    let url = fresh_url().await;
    let store = PgStore::open(&url, settings("cut-off", Duration::from_secs(3))).await.unwrap();
    let job = store.insert("x".to_owned(), SubmitOptions::default()).await.unwrap();
    store.claim_next(&[]).await.unwrap().unwrap();
    let lost = store.lease_lost(&job.id).unwrap();
    // The database refuses this node from now on: its connections are cut, new ones refused.
    let admin = sqlx::PgPool::connect(&pg_harness::shared().url("postgres")).await.unwrap();
    let db = url.rsplit('/').next().unwrap().to_owned();
    sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false")).execute(&admin).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&db)
        .execute(&admin)
        .await
        .unwrap();
    eventually("the node stopping its job", async || lost.is_cancelled()).await;
    sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true")).execute(&admin).await.unwrap();
    // Back in touch: the job's lease was not renewed, and the node writes nothing more about it.
    assert!(store.finish(&job.id, Outcome::Completed { output_files: vec![], outputs: vec![] }, "").await.is_err());
}

/// A worker node's service on the database at `url` (node `b`, `settings`): its own data
/// directory and scratch root, real ffmpeg, one slot.
struct WorkerNode {
    _data: TempDir,
    scratch: TempDir,
    root: std::path::PathBuf,
    sandbox: Sandbox,
    store: Store,
    jobs: Arc<jobs::Jobs>,
}

async fn worker_node(url: &str, settings: PgSettings) -> WorkerNode {
    use jobs::{FfmpegConfig, FfmpegRunner, Jobs, JobsConfig};
    let data = TempDir::new().unwrap();
    let scratch = TempDir::new().unwrap();
    let root = std::fs::canonicalize(data.path()).unwrap();
    let sandbox = Sandbox::new(&root).unwrap();
    let store: Store = Arc::new(PgStore::open(url, settings).await.unwrap());
    let mut ffmpeg = FfmpegConfig::new("ffmpeg", &root);
    ffmpeg.scratch_root = scratch.path().to_owned();
    let config = JobsConfig { concurrency: 1, idle_wait: Duration::from_millis(100), ..JobsConfig::default() };
    let jobs = Jobs::new(Arc::clone(&store), Arc::new(FfmpegRunner::new(ffmpeg)), sandbox.clone(), config);
    WorkerNode { _data: data, scratch, root, sandbox, store, jobs }
}

/// What a dead node's attempt of job `id` leaves running on this host: an ffmpeg started in a
/// scratch directory named after the job (as the runner does), writing `out/a.mp4` for a
/// minute. Returns once it has written something, with the process and its scratch directory.
async fn orphaned_ffmpeg(node: &WorkerNode, id: &JobId) -> (std::process::Child, std::path::PathBuf) {
    use std::os::unix::process::CommandExt as _;
    let dead_scratch = node.scratch.path().join(format!("{}dead", jobs::orphans::ScratchDir::prefix(id)));
    std::fs::create_dir(&dead_scratch).unwrap();
    let orphan = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=duration=60:size=64x64:rate=10"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-y"])
        .arg(format!("file:{}", node.root.join("out/a.mp4").display()))
        .current_dir(&dead_scratch)
        .process_group(0)
        .spawn()
        .unwrap();
    eventually("the dead attempt's partial output", async || {
        std::fs::metadata(node.root.join("out/a.mp4")).is_ok_and(|m| m.len() > 0)
    })
    .await;
    (orphan, dead_scratch)
}

/// A job whose node died mid-run runs again on another node of the same host and data
/// directory: the new attempt first stops the dead attempt's ffmpeg (orphaned, still writing),
/// removes its partial output and its scratch directory, then runs. So `-n` (never overwrite)
/// does not take the partial file for one that existed before, the output is the new run's
/// whole file, and nothing of the dead attempt is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_partial_output_is_cleared_before_the_job_runs_again() {
    use jobs::Shutdown;
    use jobs::outputs::Snapshot;
    use jobs::store::RunRecord;
    use std::os::unix::process::ExitStatusExt as _;

    let url = fresh_url().await;
    let node_b = worker_node(&url, settings("b", Duration::from_secs(30))).await;
    let (root, b_store, b) = (&node_b.root, &node_b.store, &node_b.jobs);
    let command = "-f lavfi -i testsrc=duration=1:size=64x64:rate=10 -c:v libx264 -preset ultrafast -n out/a.mp4";
    let job = b.submit(command, SubmitOptions::default()).await.unwrap();

    // Node a claims the job, records its run as a worker does, and starts ffmpeg; then a dies:
    // its ffmpeg lives on, writing `out/a.mp4`, and its lease is not renewed any more.
    let a = PgStore::open(&url, settings("a", Duration::from_secs(30))).await.unwrap();
    let claimed = a.claim_next(&[]).await.unwrap().unwrap();
    assert_eq!((claimed.id.clone(), claimed.attempts), (job.id.clone(), 1));
    let fp = Footprint::of(&node_b.sandbox.resolve_command(&Command::parse(command).unwrap()).unwrap());
    std::fs::create_dir_all(root.join("out")).unwrap();
    a.record_run(
        &job.id,
        &RunRecord { attempt: 1, footprint: fp.clone(), snapshot: Snapshot::take(root, &fp), temp_area: false },
    )
    .await
    .unwrap();
    let (mut orphan, dead_scratch) = orphaned_ffmpeg(&node_b, &job.id).await;
    std::fs::write(dead_scratch.join("ffmpeg2pass-0.log"), "left by the dead attempt").unwrap();
    a.close().await;
    expire_lease(&url, &job.id).await;

    // Node b's reaper puts the job back in the queue, and b runs it.
    let shutdown = Shutdown::default();
    let _workers = b.spawn_workers(&shutdown);
    let mut done = None;
    eventually("the job finished on b", async || {
        done = Some(b_store.get(&job.id).await.unwrap().unwrap());
        done.as_ref().unwrap().status.is_finished()
    })
    .await;
    shutdown.stop_claiming.cancel();
    let done = done.unwrap();
    let still_running = orphan.try_wait().unwrap().is_none();
    if still_running {
        let _ = orphan.kill();
    }
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    assert!(!still_running, "the dead attempt's ffmpeg was stopped");
    assert_eq!(orphan.wait().unwrap().signal(), Some(9), "stopped by SIGKILL");
    assert_eq!(done.attempts, 2);
    assert_eq!(done.output_files, vec!["out/a.mp4".to_owned()]);
    assert!(!dead_scratch.exists(), "the dead attempt's scratch directory is removed");
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(root.join("out/a.mp4"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "10", "the new run's whole output");
}

/// Sets a job's lease `ago` (a PostgreSQL interval) into the past.
async fn expire_lease_by(url: &str, id: &JobId, ago: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let expired = sqlx::query("UPDATE jobs SET lease_expires_at = now() - $2::interval WHERE id = $1")
        .bind(id.as_str())
        .bind(ago)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(expired.rows_affected(), 1);
}

/// A lost job that must end (out of attempts, or a cancel pending) and that recorded a run is
/// not ended by the reaper at once: a node takes it over (still running, so its footprint
/// still holds back conflicting jobs), under its own lease, to remove what the lost attempt
/// wrote, then ends it through the fenced `finish`. One no node takes over within a further
/// lease is ended by the reaper all the same. A lost job that must run again is not taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_jobs_that_must_end_are_taken_over_to_clean_up_first() {
    use jobs::store::{CancelOutcome, LostRun, RunRecord};
    let url = fresh_url().await;
    let once = |node: &str| PgSettings { max_attempts: 1, ..settings(node, Duration::from_secs(30)) };
    let a: Store = Arc::new(PgStore::open(&url, once("a")).await.unwrap());
    let b: Store = Arc::new(PgStore::open(&url, once("b")).await.unwrap());
    let mut ids = Vec::new();
    for n in 0..3 {
        let command = format!("-i in.mp4 out{n}.mp4");
        let options = SubmitOptions { footprint: footprint(&command), ..SubmitOptions::default() };
        let job = a.insert(command.clone(), options).await.unwrap();
        assert_eq!(a.claim_next(&[]).await.unwrap().unwrap().id, job.id);
        ids.push(job.id);
    }
    let record = |command: &str| RunRecord {
        attempt: 1,
        footprint: footprint(command),
        snapshot: jobs::outputs::Snapshot::default(),
        temp_area: false,
    };
    // Jobs 0 and 1 recorded runs; job 1's cancel was asked for; job 2 recorded none.
    a.record_run(&ids[0], &record("-i in.mp4 out0.mp4")).await.unwrap();
    a.record_run(&ids[1], &record("-i in.mp4 out1.mp4")).await.unwrap();
    assert!(matches!(b.cancel(&ids[1]).await.unwrap(), CancelOutcome::Requested(_)));
    assert_eq!(b.claim_lost_run().await.unwrap(), None, "no lease has expired");
    for id in &ids {
        expire_lease_by(&url, id, "1 second").await;
    }

    // The reaper ends job 2 (nothing to clean) and leaves the other two for a taker.
    eventually("job 2 ended by the reaper", async || {
        b.get(&ids[2]).await.unwrap().unwrap().status == JobStatus::Failed
    })
    .await;
    let taken = b.claim_lost_run().await.unwrap().expect("job 0 is taken over");
    assert_eq!(
        taken,
        LostRun {
            id: ids[0].clone(),
            run: record("-i in.mp4 out0.mp4"),
            outcome: Outcome::Failed { error: jobs::store::WORKER_LOST.to_owned() }
        }
    );
    let cancelled = b.claim_lost_run().await.unwrap().expect("job 1 is taken over");
    assert_eq!((cancelled.id.clone(), cancelled.outcome.clone()), (ids[1].clone(), Outcome::Cancelled));
    assert_eq!(a.claim_lost_run().await.unwrap(), None, "each is taken once");
    for id in &ids[..2] {
        let job = a.get(id).await.unwrap().unwrap();
        assert_eq!((job.status, job.attempts), (JobStatus::Running, 1), "taken over, not ended: {job:?}");
    }
    // The old holder cannot write any more; the taker ends them.
    assert_conflict(a.finish(&ids[0], Outcome::Cancelled, "").await, JobStatus::Running);
    let failed = b.finish(&taken.id, taken.outcome, "").await.unwrap();
    assert_eq!((failed.status, failed.error.as_deref()), (JobStatus::Failed, Some("worker lost")));
    assert_eq!(b.finish(&cancelled.id, cancelled.outcome, "").await.unwrap().status, JobStatus::Cancelled);

    // A taker that dies too: its lease runs out, and another node takes the job over again.
    let job = a.insert("-i in.mp4 out3.mp4".to_owned(), SubmitOptions::default()).await.unwrap();
    a.claim_next(&[]).await.unwrap().unwrap();
    a.record_run(&job.id, &record("-i in.mp4 out3.mp4")).await.unwrap();
    expire_lease_by(&url, &job.id, "1 second").await;
    assert_eq!(b.claim_lost_run().await.unwrap().unwrap().id, job.id);
    expire_lease_by(&url, &job.id, "1 second").await;
    assert_eq!(a.claim_lost_run().await.unwrap().unwrap().id, job.id, "taken over again");
    // One nobody takes over within a further lease: the reaper ends it.
    expire_lease_by(&url, &job.id, "1 hour").await;
    eventually("the reaper's fallback", async || b.get(&job.id).await.unwrap().unwrap().status == JobStatus::Failed)
        .await;
    assert_eq!(b.get(&job.id).await.unwrap().unwrap().error.as_deref(), Some("worker lost"));
}

/// A job whose node died mid-run and that has used its attempts ends failed ("worker lost"),
/// and one whose cancel was asked for while its node was dead ends cancelled, not re-run; in
/// both cases a node of the cluster first stops the dead attempt's ffmpeg (orphaned on this
/// host, still writing), removes the partial output and the scratch directory it left, and
/// leaves every other file alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_job_that_ends_has_its_partial_outputs_removed_first() {
    use jobs::Shutdown;
    use jobs::outputs::Snapshot;
    use jobs::store::RunRecord;
    use std::os::unix::process::ExitStatusExt as _;

    let url = fresh_url().await;
    let once = |node: &str| PgSettings { max_attempts: 1, ..settings(node, Duration::from_secs(30)) };
    let node_b = worker_node(&url, once("b")).await;
    let (root, b_store, b) = (&node_b.root, &node_b.store, &node_b.jobs);
    std::fs::create_dir_all(root.join("out")).unwrap();
    std::fs::write(root.join("out/kept.txt"), "not the job's").unwrap();
    let lost_command = "-f lavfi -i testsrc=duration=1:size=64x64:rate=10 -c:v libx264 -preset ultrafast out/a.mp4";
    let cancel_command = "-f lavfi -i testsrc=duration=1:size=64x64:rate=10 -c:v mpeg4 out/b.mp4";
    let lost = b.submit(lost_command, SubmitOptions::default()).await.unwrap();
    let cancelled = b.submit(cancel_command, SubmitOptions::default()).await.unwrap();

    // Node a claims both jobs, records their runs as a worker does, starts the first one's
    // ffmpeg and writes the second one's partial output; then a dies: its ffmpeg lives on,
    // writing `out/a.mp4`.
    let a = PgStore::open(&url, once("a")).await.unwrap();
    for (job, command) in [(&lost, lost_command), (&cancelled, cancel_command)] {
        assert_eq!(a.claim_next(&[]).await.unwrap().unwrap().id, job.id);
        let fp = Footprint::of(&node_b.sandbox.resolve_command(&Command::parse(command).unwrap()).unwrap());
        let snapshot = Snapshot::take(root, &fp);
        a.record_run(&job.id, &RunRecord { attempt: 1, footprint: fp, snapshot, temp_area: false }).await.unwrap();
    }
    std::fs::write(root.join("out/b.mp4"), "partial").unwrap();
    // What a staged run (files in a bucket) of the cancelled job left on the shared disk.
    let stage = jobs::staging::stages_root(root).join(format!("{}-1", cancelled.id));
    std::fs::create_dir_all(stage.join("out")).unwrap();
    std::fs::write(stage.join("out/b.mp4"), "partial, staged").unwrap();
    let (mut orphan, dead_scratch) = orphaned_ffmpeg(&node_b, &lost.id).await;
    a.close().await;
    // The cancel is asked for while the job's node is dead.
    b_store.cancel(&cancelled.id).await.unwrap();
    expire_lease(&url, &lost.id).await;
    expire_lease(&url, &cancelled.id).await;

    // Node b (a worker node) takes both over and ends them.
    let shutdown = Shutdown::default();
    let _workers = b.spawn_workers(&shutdown);
    let mut ended = Vec::new();
    eventually("both jobs ended on b", async || {
        ended = vec![b_store.get(&lost.id).await.unwrap().unwrap(), b_store.get(&cancelled.id).await.unwrap().unwrap()];
        ended.iter().all(|j| j.status.is_finished())
    })
    .await;
    shutdown.stop_claiming.cancel();
    let still_running = orphan.try_wait().unwrap().is_none();
    if still_running {
        let _ = orphan.kill();
    }
    assert_eq!((ended[0].status, ended[0].error.as_deref()), (JobStatus::Failed, Some("worker lost")), "{ended:?}");
    assert_eq!(ended[1].status, JobStatus::Cancelled, "{ended:?}");
    assert_eq!((ended[0].attempts, ended[1].attempts), (1, 1), "neither ran again");
    assert!(!still_running, "the dead attempt's ffmpeg was stopped");
    assert_eq!(orphan.wait().unwrap().signal(), Some(9), "stopped by SIGKILL");
    assert!(!dead_scratch.exists(), "the dead attempt's scratch directory is removed");
    assert!(!root.join("out/a.mp4").exists(), "the lost run's partial output is removed");
    assert!(!root.join("out/b.mp4").exists(), "the cancelled run's partial output is removed");
    assert!(!stage.exists(), "the cancelled run's stage is removed");
    assert_eq!(std::fs::read_to_string(root.join("out/kept.txt")).unwrap(), "not the job's");
}

/// Issue 11, rows written per running job: a node that holds an unexpired lease on a running
/// job writes no heartbeat row while nothing about it changes (its lease renewals, and the
/// progress writes that renew them, already say it lives: one row per job and progress save,
/// no more), and those leases keep it alive in the registry however old its last heartbeat
/// row is: active, not pruned, its id not taken over by another start. Once its leases have
/// expired, nothing says it lives: it is lost, and its next heartbeat writes again. A beat
/// that changes something (the running jobs) is written whatever the leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_holding_live_leases_writes_no_heartbeat_rows_and_stays_alive() {
    use jobs::nodes::{Heartbeat, NodeRegistration, NodeRole, NodeState};
    const LOST_AFTER: Duration = Duration::from_secs(30);
    let url = fresh_url().await;
    let store = PgStore::open(&url, settings("busy", LOST_AFTER)).await.unwrap();
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let me = NodeRegistration {
        id: "busy".to_owned(),
        role: NodeRole::Worker,
        labels: Vec::new(),
        host: "test".to_owned(),
        version: "0".to_owned(),
        ffmpeg_version: None,
        capabilities: None,
        slots: 1,
        started_at: time::OffsetDateTime::now_utc(),
        process: None,
    };
    assert!(store.register_node(&me, LOST_AFTER, None).await.unwrap());
    store.insert("x".to_owned(), SubmitOptions::default()).await.unwrap();
    let claimed = store.claim_next(&[]).await.unwrap().unwrap();
    let beat = Heartbeat { draining: false, running_jobs: vec![claimed.id.clone()] };
    // How old the node's heartbeat row is, in seconds.
    let age = async || -> f64 {
        sqlx::query_scalar("SELECT extract(epoch FROM now() - heartbeat_at)::float8 FROM nodes WHERE id = 'busy'")
            .fetch_one(&admin)
            .await
            .unwrap()
    };
    let state = async || store.nodes(LOST_AFTER).await.unwrap().into_iter().find(|n| n.id == "busy").unwrap();

    // The running jobs changed: written.
    assert!(store.heartbeat_node(&me, &beat).await.unwrap());
    assert!(age().await < 60.0);
    // Its heartbeat row an hour old: the same beat again is not written.
    sqlx::query("UPDATE nodes SET heartbeat_at = now() - interval '1 hour'").execute(&admin).await.unwrap();
    assert!(store.heartbeat_node(&me, &beat).await.unwrap(), "still registered");
    assert!(age().await > 3000.0, "a beat that changes nothing is not written while the node holds a lease");
    let node = state().await;
    assert_eq!(node.state, NodeState::Active, "{node:?}");
    let since = (time::OffsetDateTime::now_utc() - node.last_heartbeat_at).as_seconds_f64();
    assert!(since < 60.0, "its last sign of life is its lease's renewal: {since} s ago");
    assert_eq!(store.prune_nodes(Duration::from_secs(60)).await.unwrap(), 0, "not pruned");
    let other = NodeRegistration { started_at: me.started_at + time::Duration::seconds(1), ..me.clone() };
    assert!(!store.register_node(&other, LOST_AFTER, None).await.unwrap(), "its id is not free");

    // Its lease expired: lost, and the next beat is written.
    expire_lease(&url, &claimed.id).await;
    assert_eq!(state().await.state, NodeState::Lost);
    assert!(store.heartbeat_node(&me, &beat).await.unwrap());
    assert!(age().await < 60.0, "written once no lease says the node lives");
    assert_eq!(state().await.state, NodeState::Active);
}

/// Counts, per statement that changes `table` (a row trigger would count rows), the rows it
/// changed that `matching` selects (a condition on `new_rows`), in `per_statement_<table>`.
async fn count_rows_per_statement(admin: &sqlx::PgPool, table: &str, events: &str, matching: &str) {
    sqlx::raw_sql(&format!(
        "CREATE TABLE per_statement_{table} (n BIGINT NOT NULL); \
         CREATE FUNCTION count_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           INSERT INTO per_statement_{table} SELECT count(*) FROM new_rows WHERE {matching} HAVING count(*) > 0; \
           RETURN NULL; END $$;"
    ))
    .execute(admin)
    .await
    .unwrap();
    for event in events.split(',') {
        sqlx::raw_sql(&format!(
            "CREATE TRIGGER count_{table}_{event} AFTER {event} ON {table} REFERENCING NEW TABLE AS new_rows \
             FOR EACH STATEMENT EXECUTE FUNCTION count_{table}();"
        ))
        .execute(admin)
        .await
        .unwrap();
    }
}

/// The rows each counted statement changed ([`count_rows_per_statement`]).
async fn rows_per_statement(admin: &sqlx::PgPool, table: &str) -> Vec<i64> {
    sqlx::query_scalar(&format!("SELECT n FROM per_statement_{table}")).fetch_all(admin).await.unwrap()
}

/// A connection of the test listening on the cluster's channel, as a node's listener does.
async fn listen(url: &str) -> sqlx::postgres::PgListener {
    let mut listener = sqlx::postgres::PgListener::connect(url).await.unwrap();
    listener.listen(jobs::postgres::notify::CHANNEL).await.unwrap();
    listener
}

/// The status notifications `listener` hears, `(job, status, seq, node)` in the order heard,
/// until each of `ended` was heard with a final status. A node announces its ends after their
/// commit (migration 0015), while the notify trigger announces inside the commit: a second
/// notification of an end, from the trigger, would come first, so it is among those returned.
async fn statuses_until_ended(
    listener: &mut sqlx::postgres::PgListener,
    ended: &[&JobId],
) -> Vec<(String, String, u64, Option<String>)> {
    let mut heard: Vec<(String, String, u64, Option<String>)> = Vec::new();
    let is_end = |status: &str| matches!(status, "completed" | "failed" | "cancelled");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ended.iter().all(|id| heard.iter().any(|(job, status, ..)| job == id.as_str() && is_end(status))) {
        let left = deadline.saturating_duration_since(Instant::now());
        let notification = tokio::time::timeout(left, listener.recv())
            .await
            .unwrap_or_else(|_| panic!("ends never announced; heard {heard:?}"))
            .unwrap();
        let payload: serde_json::Value = serde_json::from_str(notification.payload()).unwrap();
        if payload["k"] == "status" {
            heard.push((
                payload["job"].as_str().unwrap().to_owned(),
                payload["status"].as_str().unwrap().to_owned(),
                payload["seq"].as_u64().unwrap(),
                payload["node"].as_str().map(str::to_owned),
            ));
        }
    }
    heard
}

/// The ends of a node's runs that come while one is being written are written together, in one
/// statement (one commit: PostgreSQL writes commits that notify one at a time, see
/// `postgres/rounds.rs`), each end with its last progress and log; a job in the batch whose end
/// is refused (its lease expired) is left as it was, and does not hold back the others. Run
/// records are written one statement each, none waiting for another's commit; one refused
/// holds back none either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_ends_are_written_together_and_a_refused_one_holds_back_none() {
    use jobs::store::RunRecord;
    let url = fresh_url().await;
    // A long lease: the reaper leaves the expired job below alone for the whole test (a lost
    // job with a cancel pending and a recorded run waits a further lease for a node to take it
    // over).
    let store: Store = Arc::new(PgStore::open(&url, settings("ends", Duration::from_secs(600))).await.unwrap());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    count_rows_per_statement(&admin, "jobs", "UPDATE", "status IN ('completed', 'failed', 'cancelled')").await;
    count_rows_per_statement(&admin, "job_runs", "INSERT,UPDATE", "TRUE").await;
    for i in 0..8 {
        store.insert(format!("-i in.mp4 out{i}.mp4"), SubmitOptions::default()).await.unwrap();
    }
    let mut claimed = Vec::new();
    while let Some(job) = store.claim_next(&[]).await.unwrap() {
        claimed.push(job.id);
    }
    assert_eq!(claimed.len(), 8);
    let refused = claimed[3].clone();
    let run = |i: usize| RunRecord {
        attempt: 1,
        footprint: footprint(&format!("-i in.mp4 out{i}.mp4")),
        snapshot: jobs::outputs::Snapshot::default(),
        temp_area: false,
    };
    store.record_run(&refused, &run(3)).await.unwrap();
    store.cancel(&refused).await.unwrap();
    expire_lease(&url, &refused).await;
    let before = store.get(&refused).await.unwrap();

    // Run records, side by side.
    let records = claimed.iter().enumerate().map(|(i, id)| {
        let store = Arc::clone(&store);
        async move { store.record_run(id, &run(i)).await }
    });
    let results = futures_util::future::join_all(records).await;
    for (i, (id, result)) in claimed.iter().zip(results).enumerate() {
        if *id == refused {
            assert_conflict(result, JobStatus::Running);
        } else {
            result.unwrap_or_else(|e| panic!("job {i}: {e}"));
        }
    }
    let counted = rows_per_statement(&admin, "job_runs").await;
    assert_eq!(counted, vec![1; 1 + 7], "one statement per run record written (the refused one wrote none)");
    // Each one is the record of its job: what a node that takes the job over would clean.
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT j.id, r.run FROM job_runs r JOIN jobs j ON j.seq = r.job_seq")
            .fetch_all(&admin)
            .await
            .unwrap();
    for (i, id) in claimed.iter().enumerate() {
        let (_, text) = stored.iter().find(|(j, _)| j == id.as_str()).unwrap();
        assert_eq!(serde_json::from_str::<RunRecord>(text).unwrap(), run(i), "job {i}");
    }

    // Ends, side by side.
    let progress = |i: u64| Progress { frame: Some(i * 10), percent: Some(90.0), ..Progress::default() };
    let ends = claimed.iter().enumerate().map(|(i, id)| {
        let store = Arc::clone(&store);
        async move {
            let outcome = Outcome::Completed { output_files: vec![format!("out{i}.mp4")], outputs: Vec::new() };
            store.finish_with_progress(id, Some(&progress(i as u64)), outcome, &format!("log {i}")).await
        }
    });
    let mut listener = listen(&url).await;
    let results = futures_util::future::join_all(ends).await;
    let announced: Vec<&JobId> = claimed.iter().filter(|id| **id != refused).collect();
    let heard = statuses_until_ended(&mut listener, &announced).await;
    for (i, (id, result)) in claimed.iter().zip(results).enumerate() {
        if *id == refused {
            assert_conflict(result, JobStatus::Running);
            continue;
        }
        let job = result.unwrap_or_else(|e| panic!("job {i}: {e}"));
        let of_job: Vec<_> = heard.iter().filter(|(j, ..)| j == id.as_str()).collect();
        assert_eq!(
            of_job,
            [&(id.to_string(), "completed".to_owned(), job.event_seq, Some("ends".to_owned()))],
            "job {i}: its end announced once, by its node, with the end's event number"
        );
        assert_eq!((job.status, job.output_files.clone()), (JobStatus::Completed, vec![format!("out{i}.mp4")]));
        let p = job.progress.clone().unwrap();
        assert_eq!((p.frame, p.percent), (Some(i as u64 * 10), Some(100.0)), "job {i}: its last progress, at 100 %");
        assert_eq!(store.get(id).await.unwrap(), Some(job));
        assert_eq!(store.log(id).await.unwrap(), Some(format!("log {i}")));
    }
    assert_eq!(store.get(&refused).await.unwrap(), before, "the refused writes changed nothing");
    assert!(!heard.iter().any(|(j, ..)| j == refused.as_str()), "the refused end announced nothing: {heard:?}");
    assert_eq!(outbox(&admin).await, Vec::<(String, i64)>::new(), "the node announced the ends and took them out");
    let counted = rows_per_statement(&admin, "jobs").await;
    assert_eq!(counted.iter().sum::<i64>(), 7, "{counted:?}");
    assert!(counted.len() < 7, "7 ends in {} statements: {counted:?}", counted.len());
}

/// An end of a node's run that comes while one of its claims reads the queue rides with that
/// claim: one statement (one commit) ends it and claims the next job. Each end is still fenced
/// as on its own: one whose lease expired is refused, changes nothing, and holds back neither
/// the claim nor the other end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ends_that_come_while_a_claim_reads_the_queue_ride_with_it_each_still_fenced() {
    use jobs::store::RunRecord;
    let url = fresh_url().await;
    // A long lease: the reaper leaves the expired job below alone for the whole test (a lost
    // job with a cancel pending and a recorded run waits a further lease for a node to take it
    // over).
    // A long deadline too: the claim below waits for a lock while the test goes on.
    let settings =
        PgSettings { acquire_timeout: Duration::from_secs(20), ..settings("rides", Duration::from_secs(600)) };
    let store = Arc::new(PgStore::open(&url, settings).await.unwrap());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(store.insert(format!("-i in.mp4 out{i}.mp4"), SubmitOptions::default()).await.unwrap().id);
    }
    let (ending, refused) =
        (store.claim_next(&[]).await.unwrap().unwrap(), store.claim_next(&[]).await.unwrap().unwrap());
    assert_eq!((&ending.id, &refused.id), (&ids[0], &ids[1]));
    let run = RunRecord {
        attempt: 1,
        footprint: footprint("-i in.mp4 out1.mp4"),
        snapshot: Default::default(),
        temp_area: false,
    };
    store.record_run(&refused.id, &run).await.unwrap();
    store.cancel(&refused.id).await.unwrap();
    expire_lease(&url, &refused.id).await;
    let before = store.get(&refused.id).await.unwrap();
    count_rows_per_statement(&admin, "jobs", "UPDATE", "TRUE").await;

    // The queue's lock held by an insert (stripe 0 of `queue_lock!()`, postgres/sql.rs): the
    // next claim's read waits for it.
    let mut insert = admin.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(1717988720, 0)").execute(&mut *insert).await.unwrap();
    let claim = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.claim_next(&[]).await }
    });
    eventually("the claim waits for the queue's lock", async || {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                .fetch_one(&admin)
                .await
                .unwrap();
        waiting > 0
    })
    .await;
    let end = |id: JobId, i: usize| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let outcome = Outcome::Completed { output_files: vec![format!("out{i}.mp4")], outputs: Vec::new() };
            store.finish(&id, outcome, "log").await
        })
    };
    let ends = [end(ending.id.clone(), 0), end(refused.id.clone(), 1)];
    // Both wait for the claim (the store's rounds say so in its debug output).
    eventually("the ends wait for the claim", async || format!("{store:?}").contains("boarding: 1, waiting: 2")).await;
    assert_eq!(rows_per_statement(&admin, "jobs").await, Vec::<i64>::new(), "nothing written yet");
    let mut listener = listen(&url).await;
    insert.commit().await.unwrap();

    let claimed = claim.await.unwrap().unwrap().unwrap();
    assert_eq!(claimed.id, ids[2]);
    let [ended, refusal] = ends;
    let ended = ended.await.unwrap().unwrap();
    let heard = statuses_until_ended(&mut listener, &[&ending.id]).await;
    assert_eq!(
        heard.iter().filter(|(j, ..)| j != ids[2].as_str()).collect::<Vec<_>>(),
        [&(ending.id.to_string(), "completed".to_owned(), ended.event_seq, Some("rides".to_owned()))],
        "the end that rode with the claim announced once, by its node; the refused one not at all"
    );
    assert_eq!(outbox(&admin).await, Vec::<(String, i64)>::new(), "the node announced the end and took it out");
    assert_eq!((ended.status, ended.output_files.clone()), (JobStatus::Completed, vec!["out0.mp4".to_owned()]));
    assert_eq!(store.get(&ending.id).await.unwrap(), Some(ended));
    assert_eq!(store.log(&ending.id).await.unwrap(), Some("log".to_owned()));
    assert_conflict(refusal.await.unwrap(), JobStatus::Running);
    assert_eq!(store.get(&refused.id).await.unwrap(), before, "the refused end changed nothing");
    assert_eq!(store.get(&ids[2]).await.unwrap().unwrap().status, JobStatus::Running);
    assert_eq!(rows_per_statement(&admin, "jobs").await, vec![2], "one statement ended one job and claimed one");
}

/// The announcements waiting in the outbox (migration 0015): (job, event number), in order.
async fn outbox(admin: &sqlx::PgPool) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT job, seq FROM announcements ORDER BY job, seq").fetch_all(admin).await.unwrap()
}

/// The notify trigger (migrations 0008, 0011, 0015) announces every status change inside the
/// transaction that makes it, except the final statuses written by a statement that set
/// `ffmpeg_worker.quiet_end` (the statements ending a node's runs: a notifying commit holds
/// PostgreSQL's notification lock until it is on disk, so notifying commits are written one at
/// a time), which it writes to the outbox in the same transaction for the node to announce
/// after the commit, and the starts of one that set `ffmpeg_worker.quiet_start`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notify_trigger_leaves_to_the_outbox_only_the_ends_it_is_told_to() {
    let url = fresh_url().await;
    let store = PgStore::open(&url, settings("trigger", Duration::from_secs(30))).await.unwrap();
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(store.insert(format!("-i in.mp4 out{i}.mp4"), SubmitOptions::default()).await.unwrap().id);
    }
    // No node runs, so no sweep announces what the outbox holds.
    store.close().await;
    let mut listener = listen(&url).await;
    // One transaction per change, with the settings given: (job, statement, quiet_end).
    let change = async |id: &JobId, set: &str, quiet_end: &str| {
        let mut tx = admin.begin().await.unwrap();
        sqlx::query("SELECT set_config('ffmpeg_worker.quiet_end', $1, true)")
            .bind(quiet_end)
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query(&format!("UPDATE jobs SET {set}, event_seq = event_seq + 1 WHERE id = $1"))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    };
    change(&ids[0], "status = 'running'", "on").await;
    change(&ids[0], "status = 'failed'", "on").await;
    change(&ids[1], "status = 'cancelled'", "on").await;
    change(&ids[2], "status = 'completed'", "off").await;
    // A change rolled back leaves nothing in the outbox.
    let mut tx = admin.begin().await.unwrap();
    sqlx::query("SELECT set_config('ffmpeg_worker.quiet_end', 'on', true)").execute(&mut *tx).await.unwrap();
    sqlx::query("UPDATE jobs SET status = 'failed', event_seq = event_seq + 1 WHERE id = $1")
        .bind(ids[3].as_str())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    // The last one heard: everything before it was delivered first (commit order).
    change(&ids[3], "status = 'cancelled'", "").await;
    let heard = statuses_until_ended(&mut listener, &[&ids[3]]).await;
    let heard: Vec<(&str, &str)> = heard.iter().map(|(j, status, ..)| (j.as_str(), status.as_str())).collect();
    assert_eq!(
        heard,
        [(ids[0].as_str(), "running"), (ids[2].as_str(), "completed"), (ids[3].as_str(), "cancelled"),],
        "ends written with quiet_end on are left to the outbox; a start, and ends without it, are announced"
    );
    let mut waiting = vec![(ids[0].to_string(), 3), (ids[1].to_string(), 2)];
    waiting.sort();
    assert_eq!(outbox(&admin).await, waiting, "the quiet ends wait in the outbox, with their event numbers");
    let payload: String = sqlx::query_scalar("SELECT payload FROM announcements WHERE job = $1")
        .bind(ids[0].as_str())
        .fetch_one(&admin)
        .await
        .unwrap();
    let payload: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({"k": "status", "node": null, "job": ids[0].as_str(), "seq": 3, "status": "failed"}),
        "the payload the trigger would have notified"
    );
}

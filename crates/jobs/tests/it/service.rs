//! The job service and worker pool with a scripted runner standing in for ffmpeg.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ffmpeg_core::sandbox::Sandbox;
use jobs::store::JobStore;
use jobs::{
    Job, JobId, JobStatus, Jobs, JobsConfig, MemoryStore, Progress, RunError, RunReport, RunSpec, Runner, Shutdown,
    SubmitOptions,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A runner that records what it ran and how many ran at once, and finishes each run after
/// `hold` (or when cancelled), writing the command's outputs like ffmpeg would.
#[derive(Default)]
struct ScriptedRunner {
    hold: Duration,
    current: AtomicUsize,
    peak: AtomicUsize,
    ran: Mutex<Vec<String>>,
}

#[async_trait]
impl Runner for ScriptedRunner {
    async fn run(
        &self,
        spec: RunSpec<'_>,
        progress: &watch::Sender<Option<Progress>>,
        cancel: &CancellationToken,
    ) -> RunReport {
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.ran.lock().unwrap().push(spec.command.command().to_string());
        for target in spec.command.outputs() {
            if let ffmpeg_core::sandbox::OutputTarget::File(p) = target {
                std::fs::write(p.as_path(), b"partial").unwrap();
            }
        }
        progress.send_replace(Some(Progress { frame: Some(1), percent: Some(10.0), ..Progress::default() }));
        let result = tokio::select! {
            () = tokio::time::sleep(self.hold) => Ok(()),
            () = cancel.cancelled() => Err(RunError::Cancelled),
        };
        self.current.fetch_sub(1, Ordering::SeqCst);
        RunReport { result, log_tail: "scripted log".to_owned(), outputs: Vec::new() }
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    jobs: Arc<Jobs>,
    runner: Arc<ScriptedRunner>,
    store: Arc<dyn JobStore>,
}

fn fixture(concurrency: usize, hold: Duration) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let runner = Arc::new(ScriptedRunner { hold, ..ScriptedRunner::default() });
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let config = JobsConfig { concurrency, idle_wait: Duration::from_millis(200), ..JobsConfig::default() };
    let jobs = Jobs::new(Arc::clone(&store), Arc::clone(&runner) as Arc<dyn Runner>, sandbox, config);
    Fixture { _dir: dir, jobs, runner, store }
}

async fn wait_for(store: &Arc<dyn JobStore>, id: &JobId, pred: impl Fn(&Job) -> bool) -> Job {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let job = store.get(id).await.unwrap().unwrap();
        if pred(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "timed out waiting on {job:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_runs_at_most_concurrency_jobs_and_all_complete() {
    let f = fixture(2, Duration::from_millis(100));
    let shutdown = Shutdown::default();
    let _workers = f.jobs.spawn_workers(&shutdown);
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(f.jobs.submit(&format!("-i in.mp4 out{i}.mp4"), SubmitOptions::default()).await.unwrap().id);
    }
    for id in &ids {
        let job = wait_for(&f.store, id, |j| j.status.is_finished()).await;
        assert_eq!(job.status, JobStatus::Completed);
        assert_eq!(job.output_files.len(), 1);
        assert_eq!(f.store.log(id).await.unwrap().as_deref(), Some("scripted log"));
    }
    assert_eq!(f.runner.peak.load(Ordering::SeqCst), 2);
    shutdown.stop_claiming.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_runs_first_then_fifo() {
    let f = fixture(1, Duration::from_millis(1));
    let opts = |priority| SubmitOptions { priority, ..SubmitOptions::default() };
    for (name, p) in [("a", 0), ("b", 5), ("c", 0), ("d", 5)] {
        f.jobs.submit(&format!("-i in.mp4 {name}.mp4"), opts(p)).await.unwrap();
    }
    let shutdown = Shutdown::default();
    let _workers = f.jobs.spawn_workers(&shutdown);
    let counts = loop {
        let c = f.store.counts().await.unwrap();
        if c.get(&JobStatus::Completed) == Some(&4) {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(counts.len(), 1);
    let ran: Vec<String> =
        f.runner.ran.lock().unwrap().iter().map(|c| c.rsplit(' ').next().unwrap().to_owned()).collect();
    assert_eq!(ran, ["b.mp4", "d.mp4", "a.mp4", "c.mp4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_it_and_removes_partial_outputs() {
    let f = fixture(1, Duration::from_secs(600));
    let shutdown = Shutdown::default();
    let _workers = f.jobs.spawn_workers(&shutdown);
    let job = f.jobs.submit("-i in.mp4 out/partial.mp4", SubmitOptions::default()).await.unwrap();
    wait_for(&f.store, &job.id, |j| j.progress.is_some()).await;
    let partial = f.jobs.sandbox().root().join("out/partial.mp4");
    assert!(partial.exists());
    let start = Instant::now();
    let cancelled = f.jobs.cancel(&job.id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled, "cancel answers once the job is cancelled");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(!partial.exists(), "partial output removed");
    let again = f.jobs.cancel(&job.id).await;
    assert!(matches!(again, Err(jobs::StoreError::Conflict { .. })), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_requeues_running_jobs_instead_of_failing_them() {
    let f = fixture(1, Duration::from_secs(600));
    let shutdown = Shutdown::default();
    let mut workers = f.jobs.spawn_workers(&shutdown);
    let job = f.jobs.submit("-i in.mp4 out.mp4", SubmitOptions::default()).await.unwrap();
    wait_for(&f.store, &job.id, |j| j.status == JobStatus::Running).await;
    shutdown.stop_claiming.cancel();
    shutdown.abort_running.cancel();
    while workers.join_next().await.is_some() {}
    let job = f.store.get(&job.id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempts, 0, "a graceful stop does not use up an attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_planted_after_submit_cannot_redirect_the_job() {
    let f = fixture(1, Duration::from_millis(1));
    let outside = tempfile::tempdir().unwrap();
    let job = f.jobs.submit("-i in.mp4 link/out.mp4", SubmitOptions::default()).await.unwrap();
    std::os::unix::fs::symlink(outside.path(), f.jobs.sandbox().root().join("link")).unwrap();
    let shutdown = Shutdown::default();
    let _workers = f.jobs.spawn_workers(&shutdown);
    let job = wait_for(&f.store, &job.id, |j| j.status.is_finished()).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.error.unwrap().contains("escapes the data directory"));
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    assert!(f.runner.ran.lock().unwrap().is_empty(), "the runner was never called");
}

/// With one slot, the next job starts once ffmpeg reported its end (`progress=end`, its
/// outputs' trailers written), while that ffmpeg still exits: here the first job's stand-in
/// exits only once the second one has started, so before the change the first job waited for
/// its time limit and failed. Through the SQLite store, whose ended run waits for the next
/// run's record (`JobStore::serializes_writes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_job_starts_once_ffmpeg_reported_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.mp4"), b"input").unwrap();
    let flag = dir.path().join("second-started");
    // Writes the output it is given, reports its end; the first waits for the second.
    let body = format!(
        "for a in \"$@\"; do case \"$a\" in file:*.mp4) out=\"${{a#file:}}\";; esac; done\n\
         echo data > \"$out\"\n\
         case \"$out\" in\n\
         */first.mp4) echo frame=1; echo progress=end; while [ ! -e {flag} ]; do /usr/bin/sleep 0.01; done;;\n\
         *) : > {flag}; echo frame=1; echo progress=end;;\n\
         esac",
        flag = flag.display()
    );
    let bin = crate::fixture::fake_ffmpeg(dir.path(), &body);
    let sandbox = Sandbox::new(&data).unwrap();
    let runner = Arc::new(jobs::FfmpegRunner::new(jobs::FfmpegConfig::new(&bin, sandbox.root())));
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let store: Arc<dyn JobStore> = Arc::new(jobs::SqliteStore::open(&url).await.unwrap());
    let config = JobsConfig { concurrency: 1, idle_wait: Duration::from_millis(200), ..JobsConfig::default() };
    let jobs = Jobs::new(Arc::clone(&store), runner, sandbox, config);
    let shutdown = Shutdown::default();
    let _workers = jobs.spawn_workers(&shutdown);
    let limit = SubmitOptions { timeout_seconds: Some(30), ..SubmitOptions::default() };
    let first = jobs.submit("-i in.mp4 first.mp4", limit.clone()).await.unwrap();
    let second = jobs.submit("-i in.mp4 second.mp4", limit).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = crate::fixture::finished_by(&store, &first.id, deadline).await;
    let second = crate::fixture::finished_by(&store, &second.id, deadline).await;
    assert_eq!(first.status, JobStatus::Completed, "{first:?}");
    assert_eq!(second.status, JobStatus::Completed, "{second:?}");
    assert!(second.started_at < first.completed_at, "{second:?} {first:?}");
    shutdown.stop_claiming.cancel();
}

/// The fake ffmpeg of the `progress=end` tests: writes the last `file:*.mp4` argument (its
/// output), touches `FLAGS/NAME-started` (`NAME`: the output's file name without `.mp4`),
/// reports its end, then runs `after` (what it does while it "exits").
fn ending_ffmpeg(dir: &std::path::Path, flags: &std::path::Path, after: &str) -> std::path::PathBuf {
    let body = format!(
        "for a in \"$@\"; do case \"$a\" in file:*.mp4) out=\"${{a#file:}}\";; esac; done\n\
         name=$(/usr/bin/basename \"$out\" .mp4)\n\
         : > {flags}/$name-started\n\
         echo data > \"$out\"\n\
         echo frame=1; echo progress=end\n\
         {after}",
        flags = flags.display()
    );
    crate::fixture::fake_ffmpeg(dir, &body)
}

/// A service over a SQLite file running `bin` as ffmpeg with one slot, its data directory
/// holding `in.mp4`.
async fn one_slot_over_sqlite(
    dir: &std::path::Path,
    bin: &std::path::Path,
) -> (Arc<Jobs>, Arc<dyn JobStore>, Shutdown) {
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.mp4"), b"input").unwrap();
    let sandbox = Sandbox::new(&data).unwrap();
    let runner = Arc::new(jobs::FfmpegRunner::new(jobs::FfmpegConfig::new(bin, sandbox.root())));
    let url = format!("sqlite://{}", dir.join("jobs.db").display());
    let store: Arc<dyn JobStore> = Arc::new(jobs::SqliteStore::open(&url).await.unwrap());
    let config = JobsConfig { concurrency: 1, idle_wait: Duration::from_millis(200), ..JobsConfig::default() };
    let jobs = Jobs::new(Arc::clone(&store), runner, sandbox, config);
    let shutdown = Shutdown::default();
    (jobs, store, shutdown)
}

/// The slot is free at `progress=end`, the job's reservation is not: until its ffmpeg exited and
/// its outputs were listed, the job stays `running`, so a job reading its output (or writing the
/// same file) does not start, while a job that conflicts with nothing takes the slot. Here the
/// first job's ffmpeg, after its end block, waits until a later job starts and tells which one
/// it was: the third (independent) one must be, never the second (which reads `first.mp4`). Fails
/// if the store let go of the first job's footprint at its end block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_reading_an_output_waits_for_its_writer_to_exit_not_for_its_end_block() {
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags");
    std::fs::create_dir(&flags).unwrap();
    let seen = dir.path().join("seen-while-exiting");
    // The first one, after its end: waits (at most 20 s) for the second or third to start,
    // then writes which had started, and exits.
    let after = format!(
        "case \"$name\" in first)\n\
           i=0; while [ ! -e {flags}/second-started ] && [ ! -e {flags}/third-started ] && [ $i -lt 2000 ]; do \
             /usr/bin/sleep 0.01; i=$((i+1)); done\n\
           /usr/bin/ls {flags} > {seen};;\n\
         esac",
        flags = flags.display(),
        seen = seen.display()
    );
    let bin = ending_ffmpeg(dir.path(), &flags, &after);
    let (jobs, store, shutdown) = one_slot_over_sqlite(dir.path(), &bin).await;
    let limit = SubmitOptions { timeout_seconds: Some(60), ..SubmitOptions::default() };
    let first = jobs.submit("-i in.mp4 first.mp4", limit.clone()).await.unwrap();
    let second = jobs.submit("-i first.mp4 second.mp4", limit.clone()).await.unwrap();
    let third = jobs.submit("-i in.mp4 third.mp4", limit).await.unwrap();
    let _workers = jobs.spawn_workers(&shutdown);
    let deadline = Instant::now() + Duration::from_secs(120);
    let first = crate::fixture::finished_by(&store, &first.id, deadline).await;
    let second = crate::fixture::finished_by(&store, &second.id, deadline).await;
    let third = crate::fixture::finished_by(&store, &third.id, deadline).await;
    for job in [&first, &second, &third] {
        assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    }
    let seen = std::fs::read_to_string(&seen).unwrap();
    assert!(!seen.contains("second-started"), "the reader of first.mp4 started while its writer was exiting: {seen}");
    assert!(seen.contains("third-started"), "the slot was not free at the end block: {seen}");
    assert!(second.started_at >= first.completed_at, "{second:?} {first:?}");
    assert!(third.started_at < first.completed_at, "{third:?} {first:?}");
    shutdown.stop_claiming.cancel();
}

/// After its end block, a run is still its job's: a time limit or a cancel that comes while
/// ffmpeg exits still stops the process and fails (cancels) the job, whose output is removed
/// as any failed run's is; the exit status, not the end block, decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_limit_and_cancel_still_cover_an_ffmpeg_exiting_after_its_end_block() {
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags");
    std::fs::create_dir(&flags).unwrap();
    // Never exits by itself after its end block.
    let bin = ending_ffmpeg(dir.path(), &flags, "echo $$ > \"$out.pid\"; exec /usr/bin/sleep 1000");
    let (jobs, store, shutdown) = one_slot_over_sqlite(dir.path(), &bin).await;
    let _workers = jobs.spawn_workers(&shutdown);
    let data = jobs.sandbox().root().to_owned();
    let timed = jobs
        .submit("-i in.mp4 timed.mp4", SubmitOptions { timeout_seconds: Some(1), ..SubmitOptions::default() })
        .await
        .unwrap();
    let cancelled = jobs.submit("-i in.mp4 cancelled.mp4", SubmitOptions::default()).await.unwrap();
    // The second starts while the first one exits (the slot is free), and is cancelled then.
    let pid_file = data.join("cancelled.mp4.pid");
    crate::fixture::eventually("the second job's end block", async || pid_file.exists()).await;
    let job = jobs.get(&cancelled.id).await.unwrap();
    assert_eq!(job.status, JobStatus::Running, "{job:?}");
    jobs.cancel(&cancelled.id).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let timed = crate::fixture::finished_by(&store, &timed.id, deadline).await;
    let cancelled = crate::fixture::finished_by(&store, &cancelled.id, deadline).await;
    assert_eq!(timed.status, JobStatus::Failed, "{timed:?}");
    assert!(timed.error.as_deref().unwrap_or_default().contains("timed out"), "{timed:?}");
    assert_eq!(cancelled.status, JobStatus::Cancelled, "{cancelled:?}");
    assert!(
        !data.join("timed.mp4").exists() && !data.join("cancelled.mp4").exists(),
        "outputs of stopped runs are removed"
    );
    let pids = ["timed", "cancelled"]
        .map(|n| std::fs::read_to_string(data.join(format!("{n}.mp4.pid"))).unwrap().trim().parse::<i32>().unwrap());
    crate::fixture::wait_gone(pids, Duration::from_secs(10)).await;
    shutdown.stop_claiming.cancel();
}

#[tokio::test]
async fn refused_commands_are_never_queued() {
    let f = fixture(1, Duration::from_millis(1));
    for bad in ["-i ../x.mp4 out.mp4", "-i in.mp4", "-i a.mp4 /tmp/out.mp4", "-i pipe:0 out.mp4"] {
        assert!(f.jobs.submit(bad, SubmitOptions::default()).await.is_err(), "{bad}");
    }
    assert!(f.store.counts().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_whose_files_overlap_run_one_after_the_other() {
    let f = fixture(3, Duration::from_secs(600));
    let shutdown = Shutdown::default();
    let _workers = f.jobs.spawn_workers(&shutdown);
    let first = f.jobs.submit("-i a.mp4 same.mp4", SubmitOptions::default()).await.unwrap();
    wait_for(&f.store, &first.id, |j| j.progress.is_some()).await;
    // Writes what the first writes; reads what the first writes; a pattern that can name it.
    let same = f.jobs.submit("-i b.mp4 -c copy same.mp4", SubmitOptions::default()).await.unwrap();
    let reads = f.jobs.submit("-i same.mp4 -c copy other.mp4", SubmitOptions::default()).await.unwrap();
    let free = f.jobs.submit("-i b.mp4 -c copy free.mp4", SubmitOptions::default()).await.unwrap();
    // The job that conflicts with nothing starts beside the first, past the two held back.
    wait_for(&f.store, &free.id, |j| j.progress.is_some()).await;
    for held in [&same, &reads] {
        assert_eq!(f.store.get(&held.id).await.unwrap().unwrap().status, JobStatus::Queued);
    }
    assert_eq!(f.runner.ran.lock().unwrap().len(), 2, "only the first and the free job ran");
    // Once the first job is gone, one of the held jobs starts (they conflict with each other
    // too: `same` writes what `reads` reads), never both.
    f.jobs.cancel(&first.id).await.unwrap();
    wait_for(&f.store, &same.id, |j| j.status == JobStatus::Running).await;
    assert_eq!(f.store.get(&reads.id).await.unwrap().unwrap().status, JobStatus::Queued);
    f.jobs.cancel(&same.id).await.unwrap();
    wait_for(&f.store, &reads.id, |j| j.status == JobStatus::Running).await;
    shutdown.stop_claiming.cancel();
    shutdown.abort_running.cancel();
}

#[tokio::test]
async fn the_service_holds_every_front_end_to_the_request_limits() {
    use jobs::model::{MAX_METADATA_ENTRIES, MAX_METADATA_KEY_CHARS, MAX_METADATA_VALUE_CHARS, MAX_PAGE_SIZE};
    use jobs::{InvalidRequest, ListError, ListQuery, SubmitError};
    let f = fixture(0, Duration::from_millis(1));
    let with = |pairs: &[(String, String)], timeout: Option<u64>| SubmitOptions {
        timeout_seconds: timeout,
        metadata: pairs.iter().cloned().collect(),
        ..SubmitOptions::default()
    };
    let long = |n: usize| "é".repeat(n);
    let many: Vec<_> = (0..=MAX_METADATA_ENTRIES).map(|i| (format!("k{i}"), String::new())).collect();
    let refused = [
        (with(&many, None), InvalidRequest::TooManyMetadataEntries(MAX_METADATA_ENTRIES + 1)),
        (with(&[(String::new(), String::new())], None), InvalidRequest::MetadataKey(String::new())),
        (with(&[(long(MAX_METADATA_KEY_CHARS + 1), "v".into())], None), InvalidRequest::MetadataKey(long(65))),
        (with(&[("k".into(), long(MAX_METADATA_VALUE_CHARS + 1))], None), InvalidRequest::MetadataValue("k".into())),
        (with(&[], Some(0)), InvalidRequest::Timeout(0)),
        (with(&[], Some(u64::MAX)), InvalidRequest::Timeout(u64::MAX)),
    ];
    for (options, expected) in refused {
        match f.jobs.submit("-i a.mp4 b.mp4", options).await {
            Err(SubmitError::Invalid(e)) => assert_eq!(e, expected),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }
    assert!(f.store.counts().await.unwrap().is_empty(), "nothing was queued");
    // The limits count characters, not bytes: the longest key and value are accepted.
    let edge = with(&[(long(MAX_METADATA_KEY_CHARS), long(MAX_METADATA_VALUE_CHARS))], Some(i64::MAX as u64));
    f.jobs.submit("-i a.mp4 b.mp4", edge).await.unwrap();

    for limit in [0, MAX_PAGE_SIZE + 1] {
        let query = ListQuery { statuses: Vec::new(), after_seq: None, limit };
        assert!(
            matches!(f.jobs.list(&query).await, Err(ListError::Invalid(InvalidRequest::PageSize(l))) if l == limit)
        );
    }
}

#[tokio::test]
async fn pages_say_where_the_next_one_starts_and_the_last_says_nothing() {
    use jobs::ListQuery;
    let f = fixture(0, Duration::from_millis(1));
    for i in 0..5 {
        f.jobs.submit(&format!("-i a.mp4 out{i}.mp4"), SubmitOptions::default()).await.unwrap();
    }
    let mut after_seq = None;
    let mut seen = Vec::new();
    loop {
        let page = f.jobs.list(&ListQuery { statuses: Vec::new(), after_seq, limit: 2 }).await.unwrap();
        seen.extend(page.jobs.iter().map(|j| j.command.clone()));
        match page.next_after_seq {
            Some(next) => after_seq = Some(next),
            None => break,
        }
    }
    let expected: Vec<_> = (0..5).map(|i| format!("-i a.mp4 out{i}.mp4")).collect();
    assert_eq!(seen, expected);
}

//! The event bus: event ids, what a job's stream carries (every status change, live progress,
//! the end), resumption, slow subscribers, and progress written to the store at most once a
//! second while the bus gets every block.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ffmpeg_core::sandbox::Sandbox;
use jobs::events::{AllFilter, AllItem, Event, EventBus, EventId, JobEvents, Resume};
use jobs::store::Attempt;
use jobs::{Job, JobStatus, JobStore, Jobs, JobsConfig, Progress, RunReport, RunSpec, Runner, Shutdown, SubmitOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store_faults::FaultyStore;

#[test]
fn event_ids_round_trip_and_refuse_anything_else() {
    for (text, id) in [("1", (1, 0)), ("17.3", (17, 3)), ("18446744073709551615.1", (u64::MAX, 1))] {
        let parsed: EventId = text.parse().unwrap();
        assert_eq!((parsed.status, parsed.progress), id);
        assert_eq!(parsed.to_string(), text);
    }
    for bad in ["", ".", "1.", ".1", "1.0", "a", "-1", "+1", "1.2.3", " 1", "18446744073709551616"] {
        assert!(bad.parse::<EventId>().is_err(), "{bad:?} was accepted");
    }
    let order: Vec<EventId> = ["1", "2", "2.1", "2.2", "2.10", "3"].iter().map(|t| t.parse().unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "ids order by status, then progress: {order:?}");
}

/// A runner that reports `updates` progress blocks (frame 1, 2, ...) `gap` apart, then succeeds.
struct ProgressRunner {
    updates: u64,
    gap: Duration,
}

#[async_trait]
impl Runner for ProgressRunner {
    async fn run(
        &self,
        spec: RunSpec<'_>,
        progress: &watch::Sender<Option<Progress>>,
        _: &CancellationToken,
    ) -> RunReport {
        for frame in 1..=self.updates {
            progress.send_replace(Some(Progress { frame: Some(frame), ..Progress::default() }));
            tokio::time::sleep(self.gap).await;
        }
        for target in spec.command.outputs() {
            if let ffmpeg_core::sandbox::OutputTarget::File(p) = target {
                std::fs::write(p.as_path(), b"encoded").unwrap();
            }
        }
        RunReport { result: Ok(()), log_tail: String::new(), outputs: Vec::new() }
    }
}

fn service(runner: ProgressRunner) -> (tempfile::TempDir, Arc<FaultyStore>, Arc<Jobs>) {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let store = Arc::new(FaultyStore::default());
    let config = JobsConfig { concurrency: 1, idle_wait: Duration::from_millis(50), ..JobsConfig::default() };
    let jobs = Jobs::new(Arc::clone(&store) as Arc<dyn JobStore>, Arc::new(runner), sandbox, config);
    (dir, store, jobs)
}

async fn next(events: &mut JobEvents) -> Option<Event> {
    tokio::time::timeout(Duration::from_secs(30), events.next()).await.expect("no event within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_carries_every_status_and_live_progress_while_the_store_is_written_at_most_once_a_second() {
    let (_dir, store, jobs) = service(ProgressRunner { updates: 150, gap: Duration::from_millis(10) });
    let job = jobs.submit("-f lavfi -i testsrc out.mkv", SubmitOptions::default()).await.unwrap();
    let Resume::Events(mut events) = jobs.events_of(&job.id, None).await.unwrap() else { panic!("not finished") };
    let mut all = jobs.all_events(AllFilter { statuses: vec![], progress: true });
    let shutdown = Shutdown::default();
    let _workers = jobs.spawn_workers(&shutdown);

    let mut seen = Vec::new();
    while let Some(event) = next(&mut events).await {
        seen.push(event);
    }
    let ids: Vec<String> = seen.iter().map(|e| e.id().to_string()).collect();
    assert!(seen.windows(2).all(|w| w[0].id() < w[1].id()), "ids grow: {ids:?}");
    let statuses: Vec<(JobStatus, String)> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Status(j) => Some((j.status, e.id().to_string())),
            Event::Progress(_) => None,
        })
        .collect();
    let expected = [(JobStatus::Queued, "1"), (JobStatus::Running, "2"), (JobStatus::Completed, "3")];
    assert_eq!(statuses, expected.map(|(s, id)| (s, id.to_owned())), "{ids:?}");
    let progress: Vec<&Event> = seen.iter().filter(|e| matches!(e, Event::Progress(_))).collect();
    assert!(!progress.is_empty(), "{ids:?}");
    assert!(progress.iter().all(|e| e.id().status == 2 && e.job_id() == &job.id));

    // The store: at most one write a second, except the last snapshot, saved when the run ended.
    let writes = store.progress_writes.lock().unwrap().clone();
    assert!(writes.len() < 150, "the store got every block ({} writes)", writes.len());
    let (last_at, last) = writes.last().unwrap();
    assert_eq!(last.frame, Some(150), "the final progress is saved");
    for pair in writes.windows(2) {
        if pair[1].0 != *last_at {
            let gap = pair[1].0 - pair[0].0;
            assert!(gap >= Duration::from_millis(999), "two progress writes {gap:?} apart");
        }
    }
    let stored = jobs.get(&job.id).await.unwrap();
    assert_eq!(stored.progress.and_then(|p| p.frame), Some(150));

    // The all-jobs stream saw the same job's events, each naming the job.
    let mut all_ids = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(200), all.next()).await {
        let AllItem::Event(event) = item else { panic!("skipped events with one slow-free subscriber") };
        assert_eq!(event.job_id(), &job.id);
        all_ids.push(event.id());
    }
    assert_eq!(all_ids.first().map(ToString::to_string).as_deref(), Some("2"), "subscribed after the submit");
    assert_eq!(all_ids.last().map(ToString::to_string).as_deref(), Some("3"));
    shutdown.stop_claiming.cancel();
}

/// The next event of an all-jobs stream that is an event of `job`, skipping others'.
async fn next_of(all: &mut jobs::events::AllEvents, job: &jobs::JobId) -> Event {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), all.next()).await.expect("no event within 30 s") {
            Some(AllItem::Event(event)) if event.job_id() == job => return event,
            Some(AllItem::Event(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}

fn status_of(event: &Event) -> Option<(u64, JobStatus)> {
    match event {
        Event::Status(job) => Some((job.event_seq, job.status)),
        Event::Progress(_) => None,
    }
}

/// Two processes on one SQLite file (here two stores and two services in one test process):
/// the one that runs no job (an `api` node) streams the job the other one runs, its statuses,
/// the progress the store holds and its end, on the job's stream and the all-jobs stream
/// (tester finding F26: it saw only the submit, so `submit --wait` waited for ever). Each
/// status reaches each all-jobs stream once, also on the running side, which hears its own
/// changes back from the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_sharing_the_sqlite_file_streams_the_jobs_another_one_runs() {
    let (db, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let path = db.path().join("jobs.db");
    let open = async || Arc::new(jobs::SqliteStore::open_path(&path).await.unwrap()) as Arc<dyn JobStore>;
    let runner = || Arc::new(ProgressRunner { updates: 25, gap: Duration::from_millis(100) });
    let sandbox = || Sandbox::new(data.path()).unwrap();
    let api = Jobs::new(open().await, runner(), sandbox(), JobsConfig { concurrency: 0, ..JobsConfig::default() });
    let config = JobsConfig { concurrency: 1, idle_wait: Duration::from_millis(50), ..JobsConfig::default() };
    let worker = Jobs::new(open().await, runner(), sandbox(), config);
    let mut all = api.all_events(AllFilter { statuses: vec![], progress: true });
    let mut all_there = worker.all_events(AllFilter::default());
    let job = api.submit("-f lavfi -i testsrc out.mkv", SubmitOptions::default()).await.unwrap();
    let Resume::Events(mut events) = api.events_of(&job.id, None).await.unwrap() else { panic!("not finished") };
    let shutdown = Shutdown::default();
    let _workers = worker.spawn_workers(&shutdown);

    let mut seen = Vec::new();
    while let Some(event) = next(&mut events).await {
        seen.push(event);
    }
    let ids: Vec<String> = seen.iter().map(|e| e.id().to_string()).collect();
    assert!(seen.windows(2).all(|w| w[0].id() < w[1].id()), "ids grow: {ids:?}");
    let statuses: Vec<(u64, JobStatus)> = seen.iter().filter_map(status_of).collect();
    assert_eq!(statuses, [(1, JobStatus::Queued), (2, JobStatus::Running), (3, JobStatus::Completed)], "{ids:?}");
    // 2.5 s of run, stored once a second.
    assert!(seen.iter().any(|e| matches!(e, Event::Progress(p) if p.id.status == 2)), "{ids:?}");

    // The running side's stream may have begun following the file after the submit (what was
    // there when it began is not news).
    for (stream, may_miss_the_submit) in [(&mut all, false), (&mut all_there, true)] {
        let mut statuses = Vec::new();
        while statuses.last().is_none_or(|(_, s): &(u64, JobStatus)| !s.is_finished()) {
            statuses.extend(status_of(&next_of(stream, &job.id).await));
        }
        if may_miss_the_submit && statuses.first() == Some(&(2, JobStatus::Running)) {
            statuses.insert(0, (1, JobStatus::Queued));
        }
        assert_eq!(statuses, [(1, JobStatus::Queued), (2, JobStatus::Running), (3, JobStatus::Completed)]);
        // Nothing more of the job: no status twice.
        if let Ok(Some(item)) = tokio::time::timeout(2 * jobs::sqlite::FOLLOW_INTERVAL, stream.next()).await {
            panic!("after the final status: {item:?}");
        }
    }
    shutdown.stop_claiming.cancel();
}

/// Statuses a job passed between two reads of the shared SQLite file (every 250 ms) still reach
/// the other process's streams, each once, in order, with its own event id: here the other
/// process (the store alone) submits a job, claims it, re-queues it for a retry, claims it
/// again and ends it within a millisecond or two. On the old code the streams showed only the
/// latest status of each read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_passed_between_two_reads_of_a_shared_sqlite_file_all_reach_the_streams() {
    let (db, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let path = db.path().join("jobs.db");
    let api_store = Arc::new(jobs::SqliteStore::open_path(&path).await.unwrap()) as Arc<dyn JobStore>;
    let other = jobs::SqliteStore::open_path(&path).await.unwrap();
    let runner = Arc::new(ProgressRunner { updates: 0, gap: Duration::ZERO });
    let config = JobsConfig { concurrency: 0, ..JobsConfig::default() };
    let api = Jobs::new(api_store, runner, Sandbox::new(data.path()).unwrap(), config);
    let mut all = api.all_events(AllFilter::default());
    // Probe jobs until one shows on the all-jobs stream: the follower's first read (a
    // baseline: what it finds is not news) is then behind us. Each probe is cancelled, so
    // that the claims below take the jobs under test.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no probe job ever reached the all-jobs stream");
        let probe = other.insert("-i p.mp4 p.mkv".to_owned(), SubmitOptions::default()).await.unwrap();
        let seen = tokio::time::timeout(4 * jobs::sqlite::FOLLOW_INTERVAL, next_of(&mut all, &probe.id)).await;
        assert!(matches!(other.cancel(&probe.id).await.unwrap(), jobs::store::CancelOutcome::Cancelled(_)));
        if seen.is_ok() {
            break;
        }
    }

    let fast = |job: Job| {
        let other = &other;
        async move {
            let claimed = other.claim_next(&[]).await.unwrap().unwrap();
            assert_eq!(claimed.id, job.id);
            other.retry(&job.id, "the bucket did not answer", Duration::ZERO, Attempt::Counted).await.unwrap();
            assert_eq!(other.claim_next(&[]).await.unwrap().map(|j| j.id), Some(job.id.clone()));
            let done = jobs::Outcome::Completed { output_files: Vec::new(), outputs: Vec::new() };
            assert_eq!(other.finish(&job.id, done, "").await.unwrap().event_seq, 5);
        }
    };
    let expected = [
        (1, JobStatus::Queued),
        (2, JobStatus::Running),
        (3, JobStatus::Queued),
        (4, JobStatus::Running),
        (5, JobStatus::Completed),
    ];
    // A job submitted and run between two reads: the all-jobs stream.
    let job = other.insert("-i a.mp4 b.mkv".to_owned(), SubmitOptions::default()).await.unwrap();
    fast(job.clone()).await;
    let mut statuses = Vec::new();
    while statuses.last().is_none_or(|(_, s): &(u64, JobStatus)| !s.is_finished()) {
        let event = next_of(&mut all, &job.id).await;
        if let Event::Status(passed) = &event {
            let running = passed.status == JobStatus::Running;
            assert_eq!(passed.started_at.is_some(), running || passed.status.is_finished(), "{passed:?}");
            assert_eq!(passed.completed_at.is_some(), passed.status.is_finished(), "{passed:?}");
            assert_eq!(passed.attempts, [0, 1, 1, 2, 2][passed.event_seq as usize - 1], "{passed:?}");
        }
        statuses.extend(status_of(&event));
    }
    assert_eq!(statuses, expected);

    // A job a stream watches, run between two reads: its stream. (Once the all-jobs stream
    // showed it queued, the follower has read it so; its stream starts from there.)
    let job = other.insert("-i c.mp4 d.mkv".to_owned(), SubmitOptions::default()).await.unwrap();
    assert_eq!(status_of(&next_of(&mut all, &job.id).await), Some((1, JobStatus::Queued)));
    let Resume::Events(mut events) = api.events_of(&job.id, None).await.unwrap() else { panic!("not finished") };
    assert_eq!(status_of(&next(&mut events).await.unwrap()), Some((1, JobStatus::Queued)));
    fast(job.clone()).await;
    let mut statuses = vec![(1, JobStatus::Queued)];
    while let Some(event) = next(&mut events).await {
        statuses.extend(status_of(&event));
    }
    assert_eq!(statuses, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_answers_its_final_status_or_finished_for_a_client_that_saw_it() {
    let (_dir, _store, jobs) = service(ProgressRunner { updates: 3, gap: Duration::ZERO });
    let job = jobs.submit("-f lavfi -i testsrc out.mkv", SubmitOptions::default()).await.unwrap();
    let shutdown = Shutdown::default();
    let _workers = jobs.spawn_workers(&shutdown);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !jobs.get(&job.id).await.unwrap().status.is_finished() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for last_seen in [None, Some("1"), Some("2.3"), Some("2")] {
        let last_seen = last_seen.map(|t| t.parse().unwrap());
        let Resume::Events(mut events) = jobs.events_of(&job.id, last_seen).await.unwrap() else {
            panic!("{last_seen:?} was not the final event")
        };
        let Some(Event::Status(status)) = next(&mut events).await else { panic!("no status") };
        assert_eq!((status.status, status.event_seq), (JobStatus::Completed, 3));
        assert!(next(&mut events).await.is_none(), "the stream ends after the final status");
    }
    for last_seen in ["3", "4", "3.1"] {
        let resume = jobs.events_of(&job.id, Some(last_seen.parse().unwrap())).await.unwrap();
        assert!(matches!(resume, Resume::Finished), "{last_seen}");
    }
    assert_eq!(jobs.events().channels(), 0, "finished streams hold no channel");
    shutdown.stop_claiming.cancel();
}

fn job(status: JobStatus, event_seq: u64) -> Job {
    let mut job =
        Job::new_queued("-i a.mp4 b.mkv".to_owned(), SubmitOptions::default(), 1, time::OffsetDateTime::now_utc());
    job.status = status;
    job.event_seq = event_seq;
    job
}

#[tokio::test]
async fn a_slow_subscriber_skips_to_the_latest_state_instead_of_a_backlog() {
    let bus = EventBus::new();
    let running = job(JobStatus::Running, 2);
    let mut events = JobEvents::start(bus.subscribe(&running.id), running.clone());
    bus.publish_status(&running);
    let mut publisher = bus.publisher(&running);
    let blocks = EventBus::JOB_CAPACITY as u64 * 3;
    for frame in 1..=blocks {
        publisher.publish(Progress { frame: Some(frame), ..Progress::default() });
    }
    // Not read meanwhile: the subscriber is behind by more than its channel holds.
    let first = next(&mut events).await.unwrap();
    assert_eq!(first.id().to_string(), "2");
    let Some(Event::Progress(latest)) = next(&mut events).await else { panic!("no progress") };
    assert_eq!((latest.id.to_string(), latest.progress.frame), (format!("2.{blocks}"), Some(blocks)));
    let mut done = running.clone();
    done.status = JobStatus::Completed;
    done.event_seq = 3;
    bus.publish_status(&done);
    let last = next(&mut events).await.unwrap();
    assert!(last.is_final() && last.id().to_string() == "3", "{last:?}");
    assert!(next(&mut events).await.is_none());

    // A stream started from an older read takes the bus's newer status.
    drop(events);
    let mut events = JobEvents::start(bus.subscribe(&running.id), running.clone());
    assert_eq!(next(&mut events).await.unwrap().id().to_string(), "3");
    assert!(next(&mut events).await.is_none());
    drop((events, publisher));

    // A stale publish (a reader that saw an older status) never moves subscribers back.
    let other = job(JobStatus::Running, 2);
    let mut events = JobEvents::start(bus.subscribe(&other.id), other.clone());
    let mut other_done = other.clone();
    other_done.status = JobStatus::Failed;
    other_done.event_seq = 3;
    bus.publish_status(&other_done);
    bus.publish_status(&other);
    assert_eq!(next(&mut events).await.unwrap().id().to_string(), "2");
    assert_eq!(next(&mut events).await.unwrap().id().to_string(), "3");
    assert!(next(&mut events).await.is_none());
    drop(events);
    assert_eq!(bus.channels(), 0, "a channel lives only while used");
}

/// Every subscriber of an event gets the same shared event: a job's streams and the all-jobs
/// streams alike, so the first one to encode it encodes it for all of them.
#[tokio::test]
async fn every_subscriber_shares_one_copy_and_one_encoding_of_an_event() {
    let bus = EventBus::new();
    let running = job(JobStatus::Running, 2);
    let mut streams: Vec<JobEvents> =
        (0..3).map(|_| JobEvents::start(bus.subscribe(&running.id), running.clone())).collect();
    let mut all = jobs::events::AllEvents::new(&bus, AllFilter { statuses: Vec::new(), progress: true });
    let mut publisher = bus.publisher(&running);
    publisher.publish(Progress { frame: Some(7), ..Progress::default() });

    let encodings = std::sync::atomic::AtomicUsize::new(0);
    let encode = |event: &Event| {
        encodings.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        bytes::Bytes::from(event.id().to_string())
    };
    let mut buffers = Vec::new();
    for stream in &mut streams {
        let current = stream.next_published().await.unwrap();
        assert_eq!(current.event().id().to_string(), "2", "the status read at the start");
        let progress = stream.next_published().await.unwrap();
        buffers.push(progress.encoded(encode));
    }
    let Some(AllItem::Event(progress)) = all.next_published().await else { panic!("no progress on /events") };
    buffers.push(progress.encoded(encode));
    assert_eq!(encodings.load(std::sync::atomic::Ordering::SeqCst), 1, "encoded once for four subscribers");
    assert!(buffers.iter().all(|b| b == "2.1" && b.as_ptr() == buffers[0].as_ptr()), "one shared buffer");
}

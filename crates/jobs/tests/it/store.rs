//! The [`JobStore`] conformance suite, run against [`MemoryStore`] (the reference semantics),
//! [`SqliteStore`] in memory and [`SqliteStore`] on a file; then what only the SQLite store
//! promises: durability, refusing files that are not its database, and claims that are
//! exclusive across tasks and processes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jobs::SubmitOptions;
use jobs::sqlite::OpenError;
use jobs::store::{Attempt, CancelOutcome, Recovery};
use jobs::{Job, JobId, JobStatus, JobStore, ListQuery, Outcome, Progress, SqliteStore, StoreError};
use tempfile::TempDir;

use crate::fixture::{Store, conformance};

conformance!(
    insert_then_get,
    list_in_submission_order,
    list_by_status,
    list_pages_with_cursor,
    claim_by_priority_then_fifo,
    claim_waits_for_earlier_conflicting_jobs,
    held_back_names_the_earlier_job_a_queued_one_waits_for,
    claim_looks_past_a_long_run_of_waiting_jobs,
    claim_on_empty_queue,
    finish_only_from_running,
    finish_records_each_outcome,
    finish_with_progress_keeps_both,
    progress_only_while_running,
    cancel_queued,
    cancel_running_is_requested,
    cancel_finished_conflicts,
    requeue_keeps_order,
    retry_counts_the_attempt_and_records_the_reason,
    a_retry_that_waited_on_the_storage_takes_its_attempt_back,
    a_retried_job_waits_for_its_time_and_holds_back_later_conflicting_jobs,
    wait_for_work_wakes_when_a_retry_time_comes,
    delete_finished_only,
    recover_requeues_or_fails,
    recover_cancels_a_job_whose_cancel_was_pending,
    no_lost_run_to_take_over_while_its_node_holds_it,
    purge_finished_before,
    counts_by_status,
    log_kept_by_finish,
    wait_for_work_wakes_after_insert,
    odd_text_round_trips,
    concurrent_inserts_get_distinct_seqs,
    concurrent_gets_each_get_their_job,
    concurrent_gets_of_one_job_all_find_it,
    concurrent_claims_are_exclusive,
    refused_transition_changes_nothing,
    active_footprints_are_queued_and_running_jobs,
    event_seq_counts_status_changes,
    claim_only_jobs_the_labels_cover,
    node_registry_round_trips,
    a_node_id_belongs_to_one_live_start,
);

/// The footprints the files API checks: queued and running jobs only, in submission order,
/// each with the footprint it was submitted with.
async fn active_footprints_are_queued_and_running_jobs(store: &Store) {
    use ffmpeg_core::command::Command;
    use ffmpeg_core::footprint::Footprint;
    use ffmpeg_core::sandbox::Sandbox;
    let dir = TempDir::new().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let footprint = |command: &str| Footprint::of(&sandbox.resolve_command(&Command::parse(command).unwrap()).unwrap());
    let with = |command: &str| SubmitOptions { footprint: footprint(command), ..SubmitOptions::default() };
    assert!(store.active_footprints().await.unwrap().is_empty());

    let done = store.insert("-i a.mp4 done.mp4".to_owned(), with("-i a.mp4 done.mp4")).await.unwrap();
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().id, done.id);
    store.finish(&done.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
    let run = store.insert("-i in/b.mp4 out/b.mkv".to_owned(), with("-i in/b.mp4 out/b.mkv")).await.unwrap();
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().id, run.id);
    let queued = store.insert("-i c.wav c.mp3".to_owned(), with("-i c.wav c.mp3")).await.unwrap();
    let cancelled = store.insert("-i d.wav d.mp3".to_owned(), with("-i d.wav d.mp3")).await.unwrap();
    store.cancel(&cancelled.id).await.unwrap();

    let active = store.active_footprints().await.unwrap();
    let summary: Vec<(JobId, JobStatus)> = active.iter().map(|a| (a.id.clone(), a.status)).collect();
    assert_eq!(summary, vec![(run.id, JobStatus::Running), (queued.id, JobStatus::Queued)]);
    assert_eq!(active[0].footprint.as_ref(), Some(&footprint("-i in/b.mp4 out/b.mkv")));
    let touches = |i: usize, path: &str| active[i].footprint.as_ref().unwrap().touches_file(std::path::Path::new(path));
    assert!(touches(0, "in/b.mp4") && touches(0, "out/b.mkv") && !touches(0, "a.mp4"));
    assert!(touches(1, "c.wav") && touches(1, "c.mp3") && !touches(1, "done.mp4"));
}

/// A job's event sequence starts at 1 and grows by one with every status change, in the
/// transition's own write (what every transition returns and what a later read sees agree);
/// progress, a cancel request on a running job and refused transitions leave it alone.
async fn event_seq_counts_status_changes(store: &Store) {
    async fn seq(store: &Store, id: &JobId) -> u64 {
        store.get(id).await.unwrap().unwrap().event_seq
    }
    let job = submit(store, "-i a.mp4 a.mkv").await;
    assert_eq!(job.event_seq, 1);
    assert_eq!(seq(store, &job.id).await, 1);

    let claimed = store.claim_next(&[]).await.unwrap().unwrap();
    assert_eq!(claimed.event_seq, 2);
    store.update_progress(&job.id, &Progress { frame: Some(1), ..Progress::default() }).await.unwrap();
    assert_eq!(seq(store, &job.id).await, 2, "progress is not a status change");

    store.requeue(&job.id).await.unwrap();
    assert_eq!(seq(store, &job.id).await, 3);
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().event_seq, 4);
    assert_eq!(store.recover(10).await.unwrap().requeued, vec![job.id.clone()]);
    assert_eq!(seq(store, &job.id).await, 5);
    store.claim_next(&[]).await.unwrap().unwrap();
    assert_eq!(store.recover(1).await.unwrap().failed, vec![job.id.clone()]);
    assert_eq!(seq(store, &job.id).await, 7, "claim 6, failed by recovery 7");
    assert_conflict(store.cancel(&job.id).await, JobStatus::Failed, "cancel");
    assert_eq!(seq(store, &job.id).await, 7, "a refused transition changes nothing");

    let done = running(store, "-i b.mp4 b.mkv").await;
    let finished =
        store.finish(&done.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
    assert_eq!((finished.event_seq, seq(store, &done.id).await), (3, 3));

    let queued = submit(store, "-i c.mp4 c.mkv").await;
    let CancelOutcome::Cancelled(cancelled) = store.cancel(&queued.id).await.unwrap() else {
        panic!("a queued job is cancelled at once")
    };
    assert_eq!((cancelled.event_seq, seq(store, &queued.id).await), (2, 2));

    let asked = running(store, "-i d.mp4 d.mkv").await;
    assert!(matches!(store.cancel(&asked.id).await.unwrap(), CancelOutcome::Requested(_)));
    assert_eq!(seq(store, &asked.id).await, 2, "a cancel request is not a status change");
}

/// A job left running with a cancel pending (asked for while it ran; the process died before
/// its run stopped) ends cancelled at recovery, whatever its attempts: it never runs again.
async fn recover_cancels_a_job_whose_cancel_was_pending(store: &Store) {
    let asked = submit_with_footprint(store, "-i a.mp4 a.mkv", 0).await;
    let other = submit_with_footprint(store, "-i b.mp4 b.mkv", 0).await;
    for id in [&asked, &other] {
        assert_eq!(store.claim_next(&[]).await.unwrap().map(|j| j.id).as_ref(), Some(id));
    }
    assert!(matches!(store.cancel(&asked).await.unwrap(), CancelOutcome::Requested(_)));
    let recovery = store.recover(5).await.unwrap();
    assert_eq!(recovery, Recovery { requeued: vec![other.clone()], failed: vec![], cancelled: vec![asked.clone()] });
    let ended = store.get(&asked).await.unwrap().unwrap();
    assert_eq!((ended.status, ended.error.as_deref(), ended.attempts), (JobStatus::Cancelled, None, 1));
    assert!(ended.completed_at.is_some());
    assert_eq!(ended.event_seq, 3, "claimed 2, cancelled by recovery 3");
    assert_eq!(store.claim_next(&[]).await.unwrap().map(|j| j.id), Some(other), "only the other runs again");
    assert_eq!(store.claim_next(&[]).await.unwrap(), None);
}

/// Many clients polling the same job at once (the batched reads of the SQLite store once
/// answered only the first of them).
async fn concurrent_gets_of_one_job_all_find_it(store: &Store) {
    let job = submit(store, "-i a.mp4 b.mp4").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (store, id) = (Arc::clone(store), job.id.clone());
        tasks.spawn(async move { store.get(&id).await.unwrap() });
    }
    while let Some(found) = tasks.join_next().await {
        assert_eq!(found.unwrap().map(|j| j.id), Some(job.id.clone()));
    }
}

/// Every job, its log, and whether a cancel is pending for it (`update_progress` says so; it
/// is only asked of running jobs, and rewrites their progress with the same value).
async fn everything(store: &Store) -> Vec<(Job, Option<String>, Option<bool>)> {
    let mut out = Vec::new();
    for job in store.list(&all()).await.unwrap() {
        let log = store.log(&job.id).await.unwrap();
        let cancel = match (&job.status, &job.progress) {
            (JobStatus::Running, Some(progress)) => Some(store.update_progress(&job.id, progress).await.unwrap()),
            _ => None,
        };
        out.push((job, log, cancel));
    }
    out
}

/// Every operation refused (wrong status or unknown job) leaves every job exactly as it was:
/// status, times, progress, outputs, error, attempts, log, a pending cancel and run records
/// (`finish`, `finish_with_progress`, `update_progress`, `requeue`, `retry`, `record_run`,
/// `cancel`, `delete`).
async fn refused_transition_changes_nothing(store: &Store) {
    let progress = Progress { frame: Some(7), percent: Some(10.0), ..Progress::default() };
    let completed = running(store, "completed").await;
    store
        .finish(
            &completed.id,
            Outcome::Completed { output_files: vec!["c.mp4".to_owned()], outputs: Vec::new() },
            "c log",
        )
        .await
        .unwrap();
    let failed = running(store, "failed").await;
    store.finish(&failed.id, Outcome::Failed { error: "boom".to_owned() }, "f log").await.unwrap();
    let cancelled = submit(store, "cancelled").await;
    store.cancel(&cancelled.id).await.unwrap();
    let live = running(store, "running").await;
    assert!(!store.update_progress(&live.id, &progress).await.unwrap());
    let Ok(CancelOutcome::Requested(_)) = store.cancel(&live.id).await else { panic!("cancel of a running job") };
    let queued = submit(store, "queued").await;
    let before = everything(store).await;
    let runs_before = store.interrupted_runs().await.unwrap();
    let cancel_pending = before.iter().find(|(j, ..)| j.id == live.id).and_then(|(.., c)| *c);
    assert_eq!(cancel_pending, Some(true));

    let unknown = unknown_id();
    let finished = [&completed.id, &failed.id, &cancelled.id];
    let outcomes = || {
        [
            Outcome::Completed { output_files: vec!["other.mp4".to_owned()], outputs: Vec::new() },
            Outcome::Failed { error: "other".to_owned() },
            Outcome::Cancelled,
        ]
    };
    for id in finished.into_iter().chain([&queued.id, &unknown]) {
        for outcome in outcomes() {
            assert!(store.finish(id, outcome, "overwritten log").await.is_err(), "finish {id}");
        }
        for outcome in outcomes() {
            let result = store.finish_with_progress(id, Some(&progress), outcome, "overwritten log").await;
            assert!(result.is_err(), "finish with progress {id}");
        }
        assert!(store.update_progress(id, &Progress::default()).await.is_err(), "progress {id}");
        assert!(store.requeue(id).await.is_err(), "requeue {id}");
    }
    for id in finished.into_iter().chain([&queued.id, &unknown]) {
        assert!(store.retry(id, "other", Duration::ZERO, Attempt::Counted).await.is_err(), "retry {id}");
        let run = jobs::store::RunRecord {
            attempt: 1,
            footprint: ffmpeg_core::footprint::Footprint::default(),
            snapshot: jobs::outputs::Snapshot::default(),
            temp_area: false,
        };
        assert!(store.record_run(id, &run).await.is_err(), "record run {id}");
    }
    // A run record of another attempt than the running one's.
    let other_attempt = jobs::store::RunRecord {
        attempt: live.attempts + 1,
        footprint: ffmpeg_core::footprint::Footprint::default(),
        snapshot: jobs::outputs::Snapshot::default(),
        temp_area: false,
    };
    assert!(store.record_run(&live.id, &other_attempt).await.is_err(), "record run of another attempt");
    for id in finished.into_iter().chain([&unknown]) {
        assert!(store.cancel(id).await.is_err(), "cancel {id}");
    }
    for id in [&queued.id, &live.id, &unknown] {
        assert!(store.delete(id).await.is_err(), "delete {id}");
    }
    assert_eq!(everything(store).await, before);
    assert_eq!(store.interrupted_runs().await.unwrap(), runs_before, "run records");
    for (job, ..) in &before {
        assert_eq!(store.previous_run(&job.id).await.unwrap(), None, "previous run of {}", job.id);
    }
}

// ------------------------------------------------------------------------------------------
// Helpers.

fn opts(priority: i32) -> SubmitOptions {
    SubmitOptions { priority, ..SubmitOptions::default() }
}

async fn submit(store: &Store, command: &str) -> Job {
    store.insert(command.to_owned(), SubmitOptions::default()).await.unwrap()
}

/// Submits a job and claims it (the queue must be otherwise empty).
async fn running(store: &Store, command: &str) -> Job {
    let job = submit(store, command).await;
    let claimed = store.claim_next(&[]).await.unwrap().unwrap();
    assert_eq!(claimed.id, job.id);
    claimed
}

fn all() -> ListQuery {
    ListQuery { limit: 1000, ..ListQuery::default() }
}

fn ids(jobs: &[Job]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id.clone()).collect()
}

fn unknown_id() -> JobId {
    JobId::parse("job_00000000deadbeef").unwrap()
}

#[track_caller]
fn assert_conflict(result: Result<impl std::fmt::Debug, StoreError>, expected: JobStatus, expected_action: &str) {
    match result {
        Err(StoreError::Conflict { status, action, .. }) => {
            assert_eq!(status, expected);
            assert_eq!(action, expected_action);
        }
        other => panic!("expected Conflict({expected}, {expected_action}), got {other:?}"),
    }
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::NotFound(id)) => assert_eq!(id, unknown_id()),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

async fn status(store: &Store, id: &JobId) -> JobStatus {
    store.get(id).await.unwrap().unwrap().status
}

// ------------------------------------------------------------------------------------------
// Behaviours every store shares.

async fn insert_then_get(store: &Store) {
    let options = SubmitOptions {
        priority: -3,
        timeout_seconds: Some(90),
        metadata: BTreeMap::from([("client".to_owned(), "ci \"quoted\"".to_owned()), ("n".to_owned(), "1".to_owned())]),
        ..SubmitOptions::default()
    };
    let job = store.insert("-i in.mp4 -c:v libx264 out.mp4".to_owned(), options.clone()).await.unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.command, "-i in.mp4 -c:v libx264 out.mp4");
    assert_eq!((job.priority, job.timeout_seconds, &job.metadata), (-3, Some(90), &options.metadata));
    assert_eq!((job.attempts, job.started_at, job.completed_at), (0, None, None));
    assert_eq!((&job.progress, &job.output_files, &job.error), (&None, &Vec::new(), &None));
    assert_eq!(store.get(&job.id).await.unwrap(), Some(job.clone()), "get returns what insert returned");

    let second = submit(store, "-i b.wav b.flac").await;
    assert!(second.seq > job.seq);
    assert_ne!(second.id, job.id);
    assert!(second.created_at >= job.created_at);
    assert_eq!(store.get(&unknown_id()).await.unwrap(), None);
}

async fn list_in_submission_order(store: &Store) {
    assert!(store.list(&all()).await.unwrap().is_empty());
    let mut submitted = Vec::new();
    for (i, priority) in [0, 9, -1, 9, 0].into_iter().enumerate() {
        submitted.push(store.insert(format!("-i {i}.mp4 {i}.mkv"), opts(priority)).await.unwrap());
    }
    // Priority orders the queue, never the listing.
    assert_eq!(store.list(&all()).await.unwrap(), submitted);
    assert!(store.list(&ListQuery { limit: 0, ..all() }).await.unwrap().is_empty());
}

async fn list_by_status(store: &Store) {
    let a = running(store, "a").await;
    let b = submit(store, "b").await;
    let c = submit(store, "c").await;
    store.cancel(&c.id).await.unwrap();
    let d = submit(store, "d").await;
    let by = |status| ListQuery { statuses: vec![status], ..all() };
    assert_eq!(ids(&store.list(&by(JobStatus::Queued)).await.unwrap()), [b.id.clone(), d.id.clone()]);
    assert_eq!(ids(&store.list(&by(JobStatus::Running)).await.unwrap()), std::slice::from_ref(&a.id));
    assert_eq!(ids(&store.list(&by(JobStatus::Cancelled)).await.unwrap()), std::slice::from_ref(&c.id));
    assert!(store.list(&by(JobStatus::Completed)).await.unwrap().is_empty());
    // Several statuses: every job with one of them, in submission order, each once (a status
    // named twice changes nothing), pages cut at the limit and resumed after the cursor.
    let of = |statuses: &[JobStatus], after_seq, limit| ListQuery { statuses: statuses.to_vec(), after_seq, limit };
    let (queued, running, cancelled) = (JobStatus::Queued, JobStatus::Running, JobStatus::Cancelled);
    let both = store.list(&of(&[cancelled, queued], None, 100)).await.unwrap();
    assert_eq!(ids(&both), [b.id.clone(), c.id.clone(), d.id.clone()]);
    let active = store.list(&of(&[queued, running, queued], None, 100)).await.unwrap();
    assert_eq!(ids(&active), [a.id.clone(), b.id.clone(), d.id.clone()]);
    let first = store.list(&of(&[queued, running, cancelled], None, 2)).await.unwrap();
    assert_eq!(ids(&first), [a.id.clone(), b.id.clone()]);
    let rest = store.list(&of(&[queued, running, cancelled], Some(first[1].seq), 2)).await.unwrap();
    assert_eq!(ids(&rest), [c.id, d.id]);
    assert!(store.list(&of(&[JobStatus::Completed, JobStatus::Failed], None, 100)).await.unwrap().is_empty());
}

async fn list_pages_with_cursor(store: &Store) {
    let mut submitted = Vec::new();
    for i in 0..7 {
        submitted.push(submit(store, &format!("{i}")).await);
    }
    store.cancel(&submitted[1].id).await.unwrap();
    store.cancel(&submitted[4].id).await.unwrap();
    let mut pages = Vec::new();
    let mut query = ListQuery { statuses: vec![JobStatus::Queued], after_seq: None, limit: 2 };
    loop {
        let page = store.list(&query).await.unwrap();
        let Some(last) = page.last() else { break };
        query.after_seq = Some(last.seq);
        pages.push(ids(&page));
    }
    let id = |i: usize| submitted[i].id.clone();
    assert_eq!(pages, [vec![id(0), id(2)], vec![id(3), id(5)], vec![id(6)]]);

    let after_third = ListQuery { after_seq: Some(submitted[2].seq), limit: 3, statuses: Vec::new() };
    assert_eq!(ids(&store.list(&after_third).await.unwrap()), [id(3), id(4), id(5)]);
}

async fn claim_by_priority_then_fifo(store: &Store) {
    let a = store.insert("a".to_owned(), opts(0)).await.unwrap();
    let b = store.insert("b".to_owned(), opts(5)).await.unwrap();
    let c = store.insert("c".to_owned(), opts(0)).await.unwrap();
    let d = store.insert("d".to_owned(), opts(5)).await.unwrap();
    let e = store.insert("e".to_owned(), opts(-2)).await.unwrap();
    let mut order = Vec::new();
    while let Some(job) = store.claim_next(&[]).await.unwrap() {
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!(job.attempts, 1);
        let started = job.started_at.unwrap();
        assert!(started >= job.created_at);
        assert_eq!(store.get(&job.id).await.unwrap(), Some(job.clone()), "get agrees with claim");
        order.push(job.id);
    }
    assert_eq!(order, [b.id, d.id, a.id, c.id, e.id]);
}

/// A job with this command's footprint (resolved in a scratch data directory) and priority.
async fn submit_with_footprint(store: &Store, command: &str, priority: i32) -> JobId {
    use ffmpeg_core::{command::Command, footprint::Footprint, sandbox::Sandbox};
    let dir = TempDir::new().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let footprint = Footprint::of(&sandbox.resolve_command(&Command::parse(command).unwrap()).unwrap());
    let options = SubmitOptions { priority, footprint, ..SubmitOptions::default() };
    store.insert(command.to_owned(), options).await.unwrap().id
}

async fn claim_id(store: &Store) -> Option<JobId> {
    store.claim_next(&[]).await.unwrap().map(|j| j.id)
}

/// Between jobs whose files overlap, submission order decides, not priority: pass 2 (higher
/// priority, submitted later) waits for pass 1, queued or running; jobs that conflict with no
/// earlier one go by priority. Both with something running and with nothing running.
async fn claim_waits_for_earlier_conflicting_jobs(store: &Store) {
    const PASS1: &str = "-i in.mp4 -c:v libx264 -b:v 200k -pass 1 -an -f null -";
    const PASS2: &str = "-i in.mp4 -c:v libx264 -b:v 200k -pass 2 out/2pass.mp4";
    let other = submit_with_footprint(store, "-i in.mp4 other.mp4", 20).await;
    assert_eq!(claim_id(store).await, Some(other.clone()));
    let pass1 = submit_with_footprint(store, PASS1, 0).await;
    let pass2 = submit_with_footprint(store, PASS2, 10).await;
    let unrelated = submit_with_footprint(store, "-i in.mp4 c.mp4", 5).await;
    assert_eq!(claim_id(store).await, Some(unrelated.clone()), "pass 2 waits for the queued pass 1");
    assert_eq!(claim_id(store).await, Some(pass1.clone()));
    assert_eq!(claim_id(store).await, None, "pass 2 waits for the running pass 1");
    store.finish(&pass1, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
    assert_eq!(claim_id(store).await, Some(pass2.clone()));
    for id in [&other, &unrelated, &pass2] {
        store.finish(id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
    }

    // Nothing running: the first job in claim order waits for an earlier one of lower priority.
    let pass1 = submit_with_footprint(store, PASS1, -1).await;
    let pass2 = submit_with_footprint(store, PASS2, 3).await;
    let reader = submit_with_footprint(store, "-i out/2pass.mp4 -c copy copy.mp4", 9).await;
    assert_eq!(claim_id(store).await, Some(pass1.clone()), "the oldest of the conflicting jobs starts");
    assert_eq!(claim_id(store).await, None, "pass 2 waits for pass 1, the reader for pass 2");
    store.finish(&pass1, Outcome::Failed { error: "x".to_owned() }, "").await.unwrap();
    assert_eq!(claim_id(store).await, Some(pass2.clone()));
    assert_eq!(claim_id(store).await, None, "the reader waits for the running pass 2");
    store.finish(&pass2, Outcome::Cancelled, "").await.unwrap();
    assert_eq!(claim_id(store).await, Some(reader));
}

/// J3: `held_back` names the job a queued one waits for: a running one (that writes what it
/// reads, or reads what it writes), or an earlier queued one (here a job no node may take, so
/// the wait is forever), with the file. Nothing for a job that is not queued, or that nothing
/// holds back (one waiting for labels only). K9: the same before any claim looked at the jobs
/// (what a node that runs no jobs, or whose slots are all busy, answers) as after. When the
/// blocker ends, nothing holds the job back, before any claim looks again.
async fn held_back_names_the_earlier_job_a_queued_one_waits_for(store: &Store) {
    use ffmpeg_core::{command::Command, footprint::Footprint, sandbox::Sandbox};
    use jobs::store::HeldBack;
    let dir = TempDir::new().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let submit = async |command: &str, requires: &[&str]| {
        let footprint = Footprint::of(&sandbox.resolve_command(&Command::parse(command).unwrap()).unwrap());
        let requires = requires.iter().map(|l| (*l).to_owned()).collect();
        let options = SubmitOptions { footprint, requires, ..SubmitOptions::default() };
        store.insert(command.to_owned(), options).await.unwrap().id
    };
    let writer = submit("-f lavfi -i testsrc -t 9 w/big.mp4", &[]).await;
    assert_eq!(claim_id(store).await, Some(writer.clone()));
    let reader = submit("-i src/a.mp4 k.mp4", &[]).await;
    assert_eq!(claim_id(store).await, Some(reader.clone()));
    let unlabelled = submit("-i in/a.mp4 -t 1 ord1/g.mp4", &["nolabel"]).await;
    let reads_big = submit("-i w/big.mp4 -t 1 r/o.mp4", &[]).await;
    let reads_g = submit("-i ord1/g.mp4 -c copy ord1/g2.mp4", &[]).await;
    let writes_src = submit("-f lavfi -i testsrc -t 1 src/a.mp4", &[]).await;

    let ids = [&writer, &unlabelled, &reads_big, &reads_g, &writes_src];
    let held = async || {
        let mut jobs = Vec::new();
        for id in ids {
            jobs.push(store.get(id).await.unwrap().unwrap());
        }
        store.held_back(&jobs).await.unwrap()
    };
    let file = |name: &str, written| Some((name.to_owned(), written));
    let expected = vec![
        None,
        None,
        Some(HeldBack { by: writer.clone(), status: JobStatus::Running, file: file("w/big.mp4", true) }),
        Some(HeldBack { by: unlabelled.clone(), status: JobStatus::Queued, file: file("ord1/g.mp4", true) }),
        Some(HeldBack { by: reader.clone(), status: JobStatus::Running, file: file("src/a.mp4", false) }),
    ];
    assert_eq!(held().await, expected, "before a claim looked at them");
    assert_eq!(claim_id(store).await, None, "every queued job waits");
    assert_eq!(held().await, expected, "after");
    assert_eq!(
        expected[3].as_ref().unwrap().reason(),
        format!("waits for {unlabelled} (submitted earlier; it writes `ord1/g.mp4`)")
    );
    assert_eq!(
        expected[4].as_ref().unwrap().reason(),
        format!("waits for {reader} (running; it reads `src/a.mp4`, which this job writes)")
    );

    // The blockers end: nothing holds those jobs back any more, before a claim looks again.
    store.finish(&writer, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
    store.cancel(&unlabelled).await.unwrap();
    let now = held().await;
    assert_eq!(now[2..4], [None, None]);
    assert_eq!(now[4], expected[4]);
    assert_eq!(claim_id(store).await, Some(reads_big));
}

/// The jobs a claim must look at are not cut off at some page of the queue: 69 jobs wait for
/// a running writer of `shared.mp4`, the 70th (free) is found behind them; and a job of higher
/// priority, first in claim order, waits for that 70th job (submitted earlier, writing the same
/// file), however far down the queue it is.
async fn claim_looks_past_a_long_run_of_waiting_jobs(store: &Store) {
    let running = submit_with_footprint(store, "-f lavfi -i testsrc shared.mp4", 0).await;
    assert_eq!(claim_id(store).await, Some(running.clone()));
    for _ in 0..69 {
        submit_with_footprint(store, "-f lavfi -i testsrc shared.mp4", 0).await;
    }
    let free = submit_with_footprint(store, "-f lavfi -i testsrc h.mp4", 0).await;
    let urgent = submit_with_footprint(store, "-f lavfi -i testsrc h.mp4", 10).await;
    assert_eq!(claim_id(store).await, Some(free.clone()), "the urgent job waits for the earlier free one");
    assert_eq!(claim_id(store).await, None, "the urgent job waits for it running, the others for the writer");
    store.finish(&free, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
    assert_eq!(claim_id(store).await, Some(urgent));
}

async fn claim_on_empty_queue(store: &Store) {
    assert_eq!(store.claim_next(&[]).await.unwrap(), None);
    let job = submit(store, "x").await;
    store.cancel(&job.id).await.unwrap();
    assert_eq!(store.claim_next(&[]).await.unwrap(), None, "cancelled jobs are not in the queue");
}

async fn finish_only_from_running(store: &Store) {
    let queued = submit(store, "q").await;
    assert_conflict(store.finish(&queued.id, Outcome::Cancelled, "").await, JobStatus::Queued, "finish");
    assert_not_found(store.finish(&unknown_id(), Outcome::Cancelled, "").await);

    let job = store.claim_next(&[]).await.unwrap().unwrap();
    let done = store
        .finish(&job.id, Outcome::Completed { output_files: vec!["out.mp4".to_owned()], outputs: Vec::new() }, "")
        .await;
    assert_eq!(done.unwrap().status, JobStatus::Completed);
    assert_conflict(
        store.finish(&job.id, Outcome::Failed { error: "again".to_owned() }, "").await,
        JobStatus::Completed,
        "finish",
    );
    let after = store.get(&job.id).await.unwrap().unwrap();
    assert_eq!((after.status, after.error), (JobStatus::Completed, None), "a refused finish changes nothing");
}

/// An `outputs` entry per file: the first a listed output with a video and an audio stream
/// (odd values: a fractional frame rate, no bit rate), the others unknown files.
fn described_outputs(files: &[String]) -> Vec<jobs::model::OutputFile> {
    use ffmpeg_core::stream::{StreamInfo, StreamKind};
    let mut video = StreamInfo::new(0, StreamKind::Video);
    video.codec = Some("h264".to_owned());
    video.profile = Some("High 4:4:4 Predictive".to_owned());
    (video.width, video.height, video.frame_rate) = (Some(1280), Some(720), Some(29.97));
    video.pixel_format = Some("yuv420p".to_owned());
    let mut audio = StreamInfo::new(1, StreamKind::Audio);
    audio.codec = Some("aac".to_owned());
    (audio.sample_rate, audio.channels, audio.bit_rate) = (Some(48000), Some(6), Some(128_000));
    audio.channel_layout = Some("5.1(side)".to_owned());
    audio.language = Some("eng".to_owned());
    files
        .iter()
        .enumerate()
        .map(|(i, path)| jobs::model::OutputFile {
            path: path.clone(),
            size_bytes: 1000 + i as u64,
            duration_seconds: (i == 0).then_some(10.01),
            format: (i == 0).then(|| "mp4".to_owned()),
            streams: if i == 0 { vec![video.clone(), audio.clone()] } else { Vec::new() },
        })
        .collect()
}

async fn finish_records_each_outcome(store: &Store) {
    let progress = Progress { frame: Some(120), percent: Some(40.0), eta_seconds: Some(3.5), ..Progress::default() };

    let job = running(store, "ok").await;
    store.update_progress(&job.id, &progress).await.unwrap();
    let outputs = vec!["out/a.mp4".to_owned(), "out/b b.mp4".to_owned()];
    let described = described_outputs(&outputs);
    let outcome = Outcome::Completed { output_files: outputs.clone(), outputs: described.clone() };
    let done = store.finish(&job.id, outcome, "log").await.unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.output_files, outputs);
    assert_eq!(done.outputs, described, "what is known of each file is kept");
    assert_eq!(done.error, None);
    assert!(done.completed_at.unwrap() >= done.started_at.unwrap());
    let p = done.progress.clone().unwrap();
    assert_eq!((p.frame, p.percent, p.eta_seconds), (Some(120), Some(100.0), Some(0.0)), "completed is 100%");
    assert_eq!(store.get(&job.id).await.unwrap(), Some(done));

    let job = running(store, "bad").await;
    store.update_progress(&job.id, &progress).await.unwrap();
    let failed = store.finish(&job.id, Outcome::Failed { error: "exit status 1".to_owned() }, "").await.unwrap();
    assert_eq!((failed.status, failed.error.as_deref()), (JobStatus::Failed, Some("exit status 1")));
    assert_eq!(failed.progress, Some(progress.clone()), "a failed job keeps its last progress");
    assert!(failed.output_files.is_empty());
    assert_eq!(store.get(&job.id).await.unwrap(), Some(failed));

    let job = running(store, "stop").await;
    let cancelled = store.finish(&job.id, Outcome::Cancelled, "").await.unwrap();
    assert_eq!((cancelled.status, &cancelled.error), (JobStatus::Cancelled, &None));
    assert!(cancelled.completed_at.is_some());
    assert_eq!(store.get(&job.id).await.unwrap(), Some(cancelled));
}

/// The last progress and the outcome in one call: both kept (a completed job's progress at
/// 100 %, a failed job's as given); without a progress, the stored one stays. Refusals change
/// nothing (`refused_transition_changes_nothing`).
async fn finish_with_progress_keeps_both(store: &Store) {
    let earlier = Progress { frame: Some(3), percent: Some(10.0), ..Progress::default() };
    let last = Progress { frame: Some(12), percent: Some(90.0), eta_seconds: Some(0.1), ..Progress::default() };

    let job = running(store, "ok").await;
    store.update_progress(&job.id, &earlier).await.unwrap();
    let outcome = Outcome::Completed { output_files: vec!["a.mp4".to_owned()], outputs: Vec::new() };
    let done = store.finish_with_progress(&job.id, Some(&last), outcome, "log").await.unwrap();
    assert_eq!((done.status, done.output_files.as_slice()), (JobStatus::Completed, ["a.mp4".to_owned()].as_slice()));
    let p = done.progress.clone().unwrap();
    assert_eq!((p.frame, p.percent, p.eta_seconds), (Some(12), Some(100.0), Some(0.0)), "the last progress, at 100%");
    assert_eq!(store.get(&job.id).await.unwrap(), Some(done));
    assert_eq!(store.log(&job.id).await.unwrap().as_deref(), Some("log"));

    let job = running(store, "bad").await;
    let outcome = Outcome::Failed { error: "exit status 1".to_owned() };
    let failed = store.finish_with_progress(&job.id, Some(&last), outcome, "").await.unwrap();
    assert_eq!((failed.status, failed.progress.as_ref()), (JobStatus::Failed, Some(&last)));

    let job = running(store, "stop").await;
    store.update_progress(&job.id, &earlier).await.unwrap();
    let cancelled = store.finish_with_progress(&job.id, None, Outcome::Cancelled, "").await.unwrap();
    assert_eq!((cancelled.status, cancelled.progress.as_ref()), (JobStatus::Cancelled, Some(&earlier)));
    assert_eq!(store.get(&job.id).await.unwrap(), Some(cancelled));
}

async fn progress_only_while_running(store: &Store) {
    let progress = Progress {
        frame: Some(1),
        fps: Some(29.97),
        out_time_us: Some(1_000_000),
        bitrate_kbits_per_s: Some(1250.5),
        total_size_bytes: Some(4096),
        speed: Some(1.32e3),
        percent: None,
        eta_seconds: None,
        dup_frames: Some(0),
        drop_frames: Some(2),
        // A staged job's phase is stored with the rest.
        phase: Some(jobs::model::Phase::Uploading),
    };
    let queued = submit(store, "q").await;
    assert_conflict(store.update_progress(&queued.id, &progress).await, JobStatus::Queued, "update progress");
    assert_not_found(store.update_progress(&unknown_id(), &progress).await);

    let job = store.claim_next(&[]).await.unwrap().unwrap();
    assert!(!store.update_progress(&job.id, &progress).await.unwrap());
    assert_eq!(store.get(&job.id).await.unwrap().unwrap().progress, Some(progress.clone()));
    store.finish(&job.id, Outcome::Cancelled, "").await.unwrap();
    assert_conflict(store.update_progress(&job.id, &progress).await, JobStatus::Cancelled, "update progress");
}

async fn cancel_queued(store: &Store) {
    let job = submit(store, "x").await;
    let Ok(CancelOutcome::Cancelled(cancelled)) = store.cancel(&job.id).await else { panic!("not cancelled") };
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert!(cancelled.completed_at.is_some());
    assert_eq!(cancelled.started_at, None);
    assert_eq!(store.get(&job.id).await.unwrap(), Some(cancelled));
    assert_eq!(store.claim_next(&[]).await.unwrap(), None);
    assert_not_found(store.cancel(&unknown_id()).await);
}

async fn cancel_running_is_requested(store: &Store) {
    let job = running(store, "x").await;
    let Ok(CancelOutcome::Requested(requested)) = store.cancel(&job.id).await else { panic!("not requested") };
    assert_eq!(requested.status, JobStatus::Running, "its worker must stop it");
    assert_eq!(status(store, &job.id).await, JobStatus::Running);
    assert!(store.update_progress(&job.id, &Progress::default()).await.unwrap(), "the worker learns of it");
    assert!(matches!(store.cancel(&job.id).await, Ok(CancelOutcome::Requested(_))), "asking twice is fine");
    let done = store.finish(&job.id, Outcome::Cancelled, "stopped").await.unwrap();
    assert_eq!(done.status, JobStatus::Cancelled);
}

async fn cancel_finished_conflicts(store: &Store) {
    let job = running(store, "x").await;
    store.finish(&job.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
    assert_conflict(store.cancel(&job.id).await, JobStatus::Completed, "cancel");
    let queued = submit(store, "y").await;
    store.cancel(&queued.id).await.unwrap();
    assert_conflict(store.cancel(&queued.id).await, JobStatus::Cancelled, "cancel");
}

async fn requeue_keeps_order(store: &Store) {
    let a = submit(store, "a").await;
    let b = submit(store, "b").await;
    let claimed = store.claim_next(&[]).await.unwrap().unwrap();
    assert_eq!(claimed.id, a.id);
    store.update_progress(&a.id, &Progress { frame: Some(5), ..Progress::default() }).await.unwrap();
    store.requeue(&a.id).await.unwrap();
    let back = store.get(&a.id).await.unwrap().unwrap();
    assert_eq!((back.status, back.started_at, back.progress, back.seq), (JobStatus::Queued, None, None, a.seq));

    let again = store.claim_next(&[]).await.unwrap().unwrap();
    assert_eq!(
        (again.id.clone(), again.attempts),
        (a.id.clone(), 1),
        "a keeps its place ahead of b; the stopped start is not counted"
    );
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().id, b.id);

    let c = submit(store, "c").await;
    assert_conflict(store.requeue(&c.id).await, JobStatus::Queued, "requeue");
    assert_not_found(store.requeue(&unknown_id()).await);
}

/// A retry (the storage was unavailable) puts the job back in its place, counts the attempt,
/// and keeps why as its retry reason, not as an error; a job that fails later says its own
/// error.
async fn retry_counts_the_attempt_and_records_the_reason(store: &Store) {
    let a = submit(store, "a").await;
    let b = submit(store, "b").await;
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().id, a.id);
    store.update_progress(&a.id, &Progress { frame: Some(5), ..Progress::default() }).await.unwrap();
    let before = time::OffsetDateTime::now_utc() - Duration::from_secs(60);
    store.retry(&a.id, "the storage is unavailable", Duration::ZERO, Attempt::Counted).await.unwrap();
    let back = store.get(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (back.status, back.started_at, back.progress, back.seq, back.error.as_deref(), back.retry_reason.as_deref()),
        (JobStatus::Queued, None, None, a.seq, None, Some("the storage is unavailable"))
    );
    // By the store's clock (PostgreSQL's may differ a little from this process's).
    assert!(back.retry_at.is_some_and(|at| at > before), "{:?}", back.retry_at);
    assert!(back.event_seq > a.event_seq, "a status change");
    let again = store.claim_next(&[]).await.unwrap().unwrap();
    assert_eq!((again.id.clone(), again.attempts), (a.id.clone(), 2), "a keeps its place; both attempts count");
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().id, b.id);
    let done = store.finish(&a.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
    assert_eq!(done.error, None);
    assert_eq!(store.get(&a.id).await.unwrap().unwrap().error, None);
    // Failing after a retry says the last attempt's reason.
    let c = running(store, "c").await;
    store.retry(&c.id, "first", Duration::ZERO, Attempt::Counted).await.unwrap();
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().id, c.id);
    let failed = store.finish(&c.id, Outcome::Failed { error: "second".to_owned() }, "").await.unwrap();
    assert_eq!(failed.error.as_deref(), Some("second"));

    let q = submit(store, "q").await;
    assert_conflict(store.retry(&q.id, "x", Duration::ZERO, Attempt::Counted).await, JobStatus::Queued, "retry");
    assert_not_found(store.retry(&unknown_id(), "x", Duration::ZERO, Attempt::Counted).await);
}

/// A retry whose attempt does not count (the storage was known not to answer, tester finding
/// K11) takes the attempt back, however often, and still waits for its `retry_at` with its
/// reason; the next counted retry counts again.
async fn a_retry_that_waited_on_the_storage_takes_its_attempt_back(store: &Store) {
    let a = running(store, "a").await;
    assert_eq!(a.attempts, 1);
    for _ in 0..3 {
        store.retry(&a.id, "the storage `s3://b` does not answer", Duration::ZERO, Attempt::NotCounted).await.unwrap();
        let back = store.get(&a.id).await.unwrap().unwrap();
        assert_eq!(
            (back.status, back.attempts, back.retry_reason.as_deref()),
            (JobStatus::Queued, 0, Some("the storage `s3://b` does not answer"))
        );
        let again = store.claim_next(&[]).await.unwrap().unwrap();
        assert_eq!((again.id.clone(), again.attempts), (a.id.clone(), 1), "the same attempt again");
    }
    store.retry(&a.id, "the storage answered 500", Duration::ZERO, Attempt::Counted).await.unwrap();
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().attempts, 2, "a counted retry counts");
    store.retry(&a.id, "waits", Duration::from_secs(3600), Attempt::NotCounted).await.unwrap();
    assert_eq!(store.claim_next(&[]).await.unwrap(), None, "not before its time");
    assert_eq!(store.get(&a.id).await.unwrap().unwrap().attempts, 1);
}

/// A job retried with a wait is not claimed before its `retry_at`, but still holds back a later
/// job whose files conflict with its own (submission order between them stands); a job that
/// conflicts with nothing runs meanwhile (the slot is free). Cancelled while it waits, it ends
/// like any queued job.
async fn a_retried_job_waits_for_its_time_and_holds_back_later_conflicting_jobs(store: &Store) {
    let y = submit_with_footprint(store, "-i a.mp4 out/y.mp4", 0).await;
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().id, y);
    let hour = Duration::from_secs(3600);
    store.retry(&y, "the storage `s3://b` is unavailable", hour, Attempt::Counted).await.unwrap();
    let waiting = store.get(&y).await.unwrap().unwrap();
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(waiting.status, JobStatus::Queued);
    assert!(waiting.retry_pending(now).is_some_and(|at| at > now + Duration::from_secs(1800)), "{waiting:?}");
    let reason = waiting.retry_wait(now).unwrap();
    assert!(reason.starts_with("the storage `s3://b` is unavailable; next attempt at "), "{reason}");
    assert_eq!(waiting.error, None);

    // Higher priority than anything: still no claim takes it, nor the job that reads its output.
    let reads_y = submit_with_footprint(store, "-i out/y.mp4 z.mp4", 5).await;
    let free = submit_with_footprint(store, "-i b.mp4 w.mp4", 0).await;
    assert_eq!(store.claim_next(&[]).await.unwrap().map(|j| j.id), Some(free.clone()), "the unrelated job runs");
    assert_eq!(store.claim_next(&[]).await.unwrap().map(|j| j.id), None, "y waits, and z waits for y");
    assert_eq!(store.get(&y).await.unwrap().unwrap().attempts, 1, "no claim counted");

    assert!(matches!(store.cancel(&y).await.unwrap(), CancelOutcome::Cancelled(_)));
    assert_eq!(store.claim_next(&[]).await.unwrap().map(|j| j.id), Some(reads_y));
}

/// Once a claim has passed over a job waiting for its `retry_at`, an idle worker's
/// `wait_for_work` ends when that time comes (not at its timeout), and the job is claimed
/// then, on its next attempt.
async fn wait_for_work_wakes_when_a_retry_time_comes(store: &Store) {
    let job = running(store, "x").await;
    store.retry(&job.id, "the storage is unavailable", Duration::from_millis(800), Attempt::Counted).await.unwrap();
    assert_eq!(store.claim_next(&[]).await.unwrap(), None, "not before its time");
    // The retry's own wake-up, used up.
    store.wait_for_work(Duration::ZERO).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let claimed = loop {
        assert!(std::time::Instant::now() < deadline, "the retried job was never claimed");
        let woke = tokio::time::timeout(Duration::from_secs(20), store.wait_for_work(Duration::from_secs(3600))).await;
        assert!(woke.is_ok(), "wait_for_work slept past the retry time");
        if let Some(claimed) = store.claim_next(&[]).await.unwrap() {
            break claimed;
        }
    };
    assert_eq!((claimed.id, claimed.attempts), (job.id, 2));
}

async fn delete_finished_only(store: &Store) {
    let job = running(store, "run").await;
    assert_conflict(store.delete(&job.id).await, JobStatus::Running, "delete");
    let queued = submit(store, "q").await;
    assert_conflict(store.delete(&queued.id).await, JobStatus::Queued, "delete");
    assert_not_found(store.delete(&unknown_id()).await);

    store.finish(&job.id, Outcome::Failed { error: "boom".to_owned() }, "stderr tail").await.unwrap();
    store.delete(&job.id).await.unwrap();
    assert_eq!(store.get(&job.id).await.unwrap(), None);
    assert_eq!(store.log(&job.id).await.unwrap(), None, "the log goes with its job");
    assert_eq!(ids(&store.list(&all()).await.unwrap()), [queued.id]);
    assert!(matches!(store.delete(&job.id).await, Err(StoreError::NotFound(_))));
}

async fn recover_requeues_or_fails(store: &Store) {
    let twice = submit(store, "twice").await;
    let once = submit(store, "once").await;
    let waiting = submit(store, "waiting").await;
    let done = submit(store, "done").await;
    // `twice` runs, a crash puts it back in the queue, and it runs again: two attempts.
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().id, twice.id);
    assert_eq!(store.recover(5).await.unwrap(), Recovery { requeued: vec![twice.id.clone()], ..Recovery::default() });
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().id, twice.id);
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().id, once.id);
    store.cancel(&waiting.id).await.unwrap();
    let waiting = submit(store, "still waiting").await;
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().id, done.id);
    store.finish(&done.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
    // A crash: `once` and `twice` were left running.

    let recovery = store.recover(2).await.unwrap();
    assert_eq!(
        recovery,
        Recovery { requeued: vec![once.id.clone()], failed: vec![twice.id.clone()], cancelled: vec![] }
    );
    let failed = store.get(&twice.id).await.unwrap().unwrap();
    assert_eq!((failed.status, failed.error.as_deref(), failed.attempts), (JobStatus::Failed, Some("interrupted"), 2));
    assert!(failed.completed_at.is_some());
    let requeued = store.get(&once.id).await.unwrap().unwrap();
    assert_eq!((requeued.status, requeued.started_at, requeued.attempts), (JobStatus::Queued, None, 1));
    assert_eq!(status(store, &done.id).await, JobStatus::Completed, "finished jobs are left alone");

    let retried = store.claim_next(&[]).await.unwrap().unwrap();
    assert_eq!((retried.id, retried.attempts), (once.id, 2), "the attempt is counted again");
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().id, waiting.id);
    assert_eq!(store.recover(5).await.unwrap().requeued.len(), 2);
    assert_eq!(store.recover(5).await.unwrap(), Recovery::default(), "nothing left running");
}

async fn purge_finished_before(store: &Store) {
    let old = running(store, "old").await;
    let old =
        store.finish(&old.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "log").await.unwrap();
    let cancelled = submit(store, "cancelled").await;
    let Ok(CancelOutcome::Cancelled(cancelled)) = store.cancel(&cancelled.id).await else { panic!() };
    let live = running(store, "live").await;
    let queued = submit(store, "queued").await;
    let (t_old, t_cancelled) = (old.completed_at.unwrap(), cancelled.completed_at.unwrap());
    let latest = t_old.max(t_cancelled);

    assert_eq!(store.purge_finished_before(t_old.min(t_cancelled)).await.unwrap(), 0, "the cutoff is exclusive");
    assert_eq!(store.purge_finished_before(latest + Duration::from_micros(1)).await.unwrap(), 2);
    assert_eq!(store.get(&old.id).await.unwrap(), None);
    assert_eq!(store.log(&old.id).await.unwrap(), None);
    assert_eq!(store.get(&cancelled.id).await.unwrap(), None);
    let far_future = latest + Duration::from_secs(86_400 * 365);
    assert_eq!(store.purge_finished_before(far_future).await.unwrap(), 0, "unfinished jobs stay");
    assert_eq!(ids(&store.list(&all()).await.unwrap()), [live.id, queued.id]);
}

async fn counts_by_status(store: &Store) {
    let count = |counts: &BTreeMap<JobStatus, u64>, s| counts.get(&s).copied().unwrap_or(0);
    let empty = store.counts().await.unwrap();
    assert!(JobStatus::ALL.iter().all(|s| count(&empty, *s) == 0));

    let a = running(store, "a").await;
    store.finish(&a.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
    let b = running(store, "b").await;
    store.finish(&b.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
    let c = running(store, "c").await;
    store.finish(&c.id, Outcome::Failed { error: "x".to_owned() }, "").await.unwrap();
    running(store, "d").await;
    for i in 0..3 {
        submit(store, &format!("q{i}")).await;
    }
    let counts = store.counts().await.unwrap();
    let got: Vec<u64> = JobStatus::ALL.iter().map(|s| count(&counts, *s)).collect();
    assert_eq!(got, [3, 1, 2, 1, 0], "queued, running, completed, failed, cancelled");
    store.ping().await.unwrap();
}

async fn log_kept_by_finish(store: &Store) {
    assert_eq!(store.log(&unknown_id()).await.unwrap(), None);
    let job = running(store, "x").await;
    assert_eq!(store.log(&job.id).await.unwrap().as_deref(), Some(""), "empty before it finished");
    let log = "frame=1 fps=0.0\n".repeat(4096); // 64 KiB
    store.finish(&job.id, Outcome::Failed { error: "exit 1".to_owned() }, &log).await.unwrap();
    assert_eq!(store.log(&job.id).await.unwrap(), Some(log));

    let quiet = running(store, "quiet").await;
    store.finish(&quiet.id, Outcome::Completed { output_files: vec![], outputs: Vec::new() }, "").await.unwrap();
    assert_eq!(store.log(&quiet.id).await.unwrap().as_deref(), Some(""));
}

async fn wait_for_work_wakes_after_insert(store: &Store) {
    // The insert leaves a permit: a worker that checked the queue just before still wakes.
    submit(store, "x").await;
    let woke = tokio::time::timeout(Duration::from_secs(20), store.wait_for_work(Duration::from_secs(3600))).await;
    assert!(woke.is_ok(), "wait_for_work missed an insert");

    // And a worker already waiting is woken by the insert.
    let job = store.claim_next(&[]).await.unwrap().unwrap();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let wait = async {
        let _ = ready_tx.send(());
        store.wait_for_work(Duration::from_secs(3600)).await;
    };
    let requeue = async {
        ready_rx.await.unwrap();
        store.requeue(&job.id).await.unwrap();
    };
    let both = async { tokio::join!(wait, requeue) };
    assert!(tokio::time::timeout(Duration::from_secs(20), both).await.is_ok(), "wait_for_work missed a requeue");
}

async fn concurrent_inserts_get_distinct_seqs(store: &Store) {
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..32 {
        let store = Arc::clone(store);
        tasks.spawn(async move {
            let mut jobs = Vec::new();
            for i in 0..25 {
                jobs.push(store.insert(format!("-i {t}-{i}.mp4 out.mkv"), opts(t % 3)).await.unwrap());
            }
            jobs
        });
    }
    let inserted: Vec<Job> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(inserted.len(), 800);
    let seqs: HashSet<i64> = inserted.iter().map(|j| j.seq).collect();
    assert_eq!(seqs.len(), 800, "every job has its own seq");
    let listed = store.list(&all()).await.unwrap();
    assert_eq!(listed.len(), 800);
    assert!(listed.windows(2).all(|w| w[0].seq < w[1].seq));
    for job in &inserted {
        assert_eq!(store.get(&job.id).await.unwrap().as_ref(), Some(job));
    }
}

async fn odd_text_round_trips(store: &Store) {
    let command = "-i \"my file\\x.mp4\" -metadata title='été 🎬\n\ttab' -vf \"drawtext=text='a\\:b'\" out.mkv";
    let metadata = BTreeMap::from([
        ("".to_owned(), "empty key".to_owned()),
        ("quote\"".to_owned(), "back\\slash\u{1}\u{7f}".to_owned()),
        ("json".to_owned(), "{\"not\": [\"parsed\"]}".to_owned()),
    ]);
    let options = SubmitOptions { priority: i32::MIN, timeout_seconds: Some(0), metadata, ..SubmitOptions::default() };
    let job = store.insert(command.to_owned(), options.clone()).await.unwrap();
    assert_eq!((job.command.as_str(), job.priority, &job.metadata), (command, i32::MIN, &options.metadata));
    assert_eq!(store.get(&job.id).await.unwrap(), Some(job.clone()));
    let claimed = store.claim_next(&[]).await.unwrap().unwrap();
    let outputs = vec!["out dir/é 🎬.mkv".to_owned(), "a\"b\\c.mp4".to_owned()];
    let outcome = Outcome::Completed { output_files: outputs.clone(), outputs: described_outputs(&outputs) };
    let done = store.finish(&claimed.id, outcome, "\u{0}log\n").await.unwrap();
    assert_eq!(done.output_files, outputs);
    assert_eq!(done.outputs, described_outputs(&outputs));
    assert_eq!(store.get(&job.id).await.unwrap(), Some(done));
    assert_eq!(store.log(&job.id).await.unwrap().as_deref(), Some("\u{0}log\n"));
}

async fn concurrent_gets_each_get_their_job(store: &Store) {
    let mut jobs = Vec::new();
    for i in 0..50 {
        jobs.push(store.insert(format!("{i}"), opts(i % 2)).await.unwrap());
    }
    let jobs = Arc::new(jobs);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..32 {
        let (store, jobs) = (Arc::clone(store), Arc::clone(&jobs));
        tasks.spawn(async move {
            for i in 0..40 {
                // Known ids (often the same one from several tasks at once) and unknown ones.
                if (t + i) % 5 == 0 {
                    assert_eq!(store.get(&unknown_id()).await.unwrap(), None);
                } else {
                    let job = &jobs[(t * 7 + i) % jobs.len()];
                    assert_eq!(store.get(&job.id).await.unwrap().as_ref(), Some(job));
                }
            }
        });
    }
    tasks.join_all().await;
}

async fn concurrent_claims_are_exclusive(store: &Store) {
    for i in 0..300 {
        submit(store, &format!("{i}")).await;
    }
    assert_claimed_once(claim_all(&[Arc::clone(store)], 16, &Arc::default()).await, 300);
    assert_eq!(store.claim_next(&[]).await.unwrap(), None);
}

/// Evaluates `$op` (an awaited store call) again while it fails [`StoreError::Unavailable`]
/// ("cannot write now, try later", as a worker does: e.g. SQLite's write lock held past its
/// busy timeout by another store on the same file), counting each such failure in
/// `$unavailable` (an [`AtomicUsize`]), for at most a minute; any other error fails the test.
macro_rules! retry_unavailable {
    ($unavailable:expr, $op:expr) => {{
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match $op {
                Ok(found) => break found,
                Err(StoreError::Unavailable(e)) if std::time::Instant::now() < deadline => {
                    $unavailable.fetch_add(1, Ordering::SeqCst);
                    eprintln!("store unavailable, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }};
}

/// Runs `per_store` claimers on each of `stores` until the queue is empty; the ids each got.
/// Calls that fail [`StoreError::Unavailable`] are retried, and counted in `unavailable`.
async fn claim_all(stores: &[Store], per_store: usize, unavailable: &Arc<AtomicUsize>) -> Vec<Vec<JobId>> {
    let mut tasks = tokio::task::JoinSet::new();
    for store in stores {
        for _ in 0..per_store {
            let (store, unavailable) = (Arc::clone(store), Arc::clone(unavailable));
            tasks.spawn(async move {
                let mut mine = Vec::new();
                while let Some(job) = retry_unavailable!(unavailable, store.claim_next(&[]).await) {
                    mine.push(job.id);
                }
                mine
            });
        }
    }
    tasks.join_all().await
}

/// Every one of `expected` jobs was claimed, by exactly one claimer.
#[track_caller]
fn assert_claimed_once(per_claimer: Vec<Vec<JobId>>, expected: usize) {
    let all: Vec<JobId> = per_claimer.into_iter().flatten().collect();
    let distinct: HashSet<&JobId> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "a job was claimed twice");
    assert_eq!(all.len(), expected, "a job was never claimed");
}

// ------------------------------------------------------------------------------------------
// What only the SQLite store promises.

fn db_url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("jobs.db").display())
}

/// Names of the entries of `dir`, sorted.
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reopened_file_has_every_job() {
    let dir = TempDir::new().unwrap();
    let store: Store = Arc::new(SqliteStore::open(&db_url(&dir)).await.unwrap());
    let mut before = Vec::new();
    for i in 0..20 {
        before.push(store.insert(format!("-i {i}.mp4 {i}.mkv"), opts(i % 4)).await.unwrap());
    }
    let done = store.claim_next(&[]).await.unwrap().unwrap();
    store
        .finish(&done.id, Outcome::Completed { output_files: vec!["x.mkv".to_owned()], outputs: Vec::new() }, "the log")
        .await
        .unwrap();
    let live = store.claim_next(&[]).await.unwrap().unwrap();
    store.update_progress(&live.id, &Progress { frame: Some(7), ..Progress::default() }).await.unwrap();
    let listed = store.list(&all()).await.unwrap();
    // Dropped without `close`, as a crashed process would leave it (the WAL is not checkpointed).
    drop(store);

    let store: Store = Arc::new(SqliteStore::open(&db_url(&dir)).await.unwrap());
    assert_eq!(store.list(&all()).await.unwrap(), listed);
    assert_eq!(store.log(&done.id).await.unwrap().as_deref(), Some("the log"));
    assert_eq!(store.recover(3).await.unwrap().requeued, std::slice::from_ref(&live.id));
    assert_eq!(store.claim_next(&[]).await.unwrap().unwrap().id, live.id, "recovered job first: priority 3");
    let next = store.insert("new".to_owned(), SubmitOptions::default()).await.unwrap();
    assert!(next.seq > before.iter().map(|j| j.seq).max().unwrap(), "seq keeps growing after reopen");
}

#[tokio::test]
async fn sqlite_refuses_files_that_are_not_databases_and_leaves_them_untouched() {
    let dir = TempDir::new().unwrap();
    // Pseudo-random bytes (xorshift), a text file, and a file that merely starts like SQLite.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let random: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut truncated = b"SQLite format 3\0".to_vec();
    truncated.extend_from_slice(&[0xff; 84]);
    let cases: [(&str, &[u8]); 3] =
        [("random.db", &random), ("notes.txt", b"id,status\n1,queued\n"), ("truncated.db", &truncated)];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        for url in [format!("sqlite://{}", path.display()), path.display().to_string()] {
            let err = SqliteStore::open(&url).await.unwrap_err();
            assert!(matches!(err, OpenError::NotADatabase { ref path, .. } if path.ends_with(name)), "{name}: {err:?}");
            assert!(err.to_string().contains(name), "the message names the file: {err}");
            assert!(std::fs::read(&path).unwrap() == bytes, "{name} was modified");
        }
    }
    assert_eq!(entries(dir.path()), ["notes.txt", "random.db", "truncated.db"], "no -wal or -shm left behind");

    let err = SqliteStore::open_path(dir.path()).await.unwrap_err();
    assert!(matches!(err, OpenError::NotADatabase { .. }), "a directory: {err:?}");
}

#[tokio::test]
async fn sqlite_refuses_another_programs_database() {
    use sqlx::ConnectOptions as _;
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("other.db");
    let mut conn =
        sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true).connect().await.unwrap();
    sqlx::query("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)").execute(&mut conn).await.unwrap();
    sqlx::Connection::close(conn).await.unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let err = SqliteStore::open_path(&path).await.unwrap_err();
    assert!(matches!(err, OpenError::NotADatabase { .. }), "{err:?}");
    assert!(std::fs::read(&path).unwrap() == bytes, "the database was modified");
}

#[tokio::test]
async fn sqlite_does_not_create_missing_directories() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("no/such/dir/jobs.db");
    let err = SqliteStore::open(&format!("sqlite:{}", path.display())).await.unwrap_err();
    let OpenError::MissingDirectory { dir: missing, .. } = &err else { panic!("{err:?}") };
    assert_eq!(missing, &dir.path().join("no/such/dir"));
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(entries(dir.path()).is_empty());
}

#[tokio::test]
async fn sqlite_refuses_a_schema_from_a_newer_build() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::open(&db_url(&dir)).await.unwrap();
    store.insert("x".to_owned(), SubmitOptions::default()).await.unwrap();
    store.close().await;
    drop(store);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db_url(&dir)).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', TRUE, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::Connection::close(conn).await.unwrap();

    let err = SqliteStore::open(&db_url(&dir)).await.unwrap_err();
    assert!(matches!(err, OpenError::UnknownMigration { version: 99990101000000, .. }), "{err:?}");
}

#[tokio::test]
async fn sqlite_locations() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("jobs.db");
    let job = {
        let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await.unwrap();
        assert_eq!(store.path(), Some(path.as_path()));
        store.insert("x".to_owned(), SubmitOptions::default()).await.unwrap()
    };
    for url in [format!("sqlite:{}", path.display()), path.display().to_string()] {
        let store = SqliteStore::open(&url).await.unwrap();
        assert_eq!(store.get(&job.id).await.unwrap().as_ref(), Some(&job), "{url}");
    }
    let memory = SqliteStore::open("sqlite::memory:").await.unwrap();
    assert_eq!(memory.path(), None);
    assert_eq!(memory.get(&job.id).await.unwrap(), None);
    for bad in ["", "sqlite:", "sqlite://", "postgres://localhost/jobs", "sqlite://jobs.db?mode=rwc", "memory:"] {
        let err = SqliteStore::open(bad).await.unwrap_err();
        assert!(matches!(err, OpenError::InvalidUrl { .. }), "{bad:?}: {err:?}");
    }
}

/// Every location is read by `StoreLocation::parse`, and opens the store it names.
#[tokio::test]
async fn store_locations() {
    use jobs::location::StoreLocation;
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("jobs.db");
    let check = |url: &str, expected: StoreLocation| assert_eq!(StoreLocation::parse(url).unwrap(), expected, "{url}");
    check("memory:", StoreLocation::Memory);
    check("sqlite::memory:", StoreLocation::SqliteMemory);
    check("sqlite://data/jobs.db", StoreLocation::SqliteFile("data/jobs.db".into()));
    check("sqlite:///var/lib/jobs.db", StoreLocation::SqliteFile("/var/lib/jobs.db".into()));
    check("sqlite:jobs.db", StoreLocation::SqliteFile("jobs.db".into()));
    check("jobs.db", StoreLocation::SqliteFile("jobs.db".into()));
    assert_eq!(StoreLocation::parse("memory:").unwrap().database_file(), None);
    check("postgres://localhost/jobs", StoreLocation::Postgres("postgres://localhost/jobs".into()));
    check(
        "postgresql://u:p@db:5433/jobs?sslmode=disable",
        StoreLocation::Postgres("postgresql://u:p@db:5433/jobs?sslmode=disable".into()),
    );
    assert!(StoreLocation::parse("postgres://localhost/jobs").unwrap().is_shared());
    assert_eq!(StoreLocation::parse("postgres://localhost/jobs").unwrap().database_file(), None);
    for bad in ["", "sqlite:", "mysql://localhost/jobs", "sqlite://jobs.db?mode=rwc", "memory://x"] {
        assert!(matches!(StoreLocation::parse(bad), Err(OpenError::InvalidUrl { .. })), "{bad:?}");
    }
    let file = StoreLocation::parse(&format!("sqlite://{}", path.display())).unwrap();
    assert_eq!(file.database_file(), Some(path.as_path()));
    let job = file.open().await.unwrap().insert("x".to_owned(), SubmitOptions::default()).await.unwrap();
    let reopened = SqliteStore::open_path(&path).await.unwrap();
    assert_eq!(reopened.get(&job.id).await.unwrap().map(|j| j.id), Some(job.id));
    let memory = StoreLocation::Memory.open().await.unwrap();
    assert!(memory.list(&all()).await.unwrap().is_empty());
    let url = tokio::task::spawn_blocking(|| pg_harness::shared().fresh_database()).await.unwrap();
    let pg = StoreLocation::parse(&url).unwrap().open().await.unwrap();
    let job = pg.insert("x".to_owned(), SubmitOptions::default()).await.unwrap();
    assert_eq!(pg.get(&job.id).await.unwrap().map(|j| j.id), Some(job.id));
}

/// Two stores on one file (as two processes) insert and claim 800 jobs at once: each job is
/// claimed once, and each store sees the other's jobs.
///
/// A writer that holds SQLite's write lock past the busy timeout (5 s) makes the other
/// stores' writes fail [`StoreError::Unavailable`] ("database is locked"), which callers
/// retry: on a machine at load 25 a descheduled process, or a WAL checkpoint waiting on a
/// saturated disk, holds it that long, and this test failed now and then on a store call it
/// did not retry. Here a third connection takes the lock while the stores claim and holds it
/// until a claim has failed so; every store call of the test is retried, and the stall may
/// make claims fail, never count twice or go missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_stores_on_one_file_never_claim_the_same_job() {
    let dir = TempDir::new().unwrap();
    let a: Store = Arc::new(SqliteStore::open(&db_url(&dir)).await.unwrap());
    let b: Store = Arc::new(SqliteStore::open(&db_url(&dir)).await.unwrap());
    let unavailable = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for store in [&a, &b] {
        for t in 0..4 {
            let (store, unavailable) = (Arc::clone(store), Arc::clone(&unavailable));
            tasks.spawn(async move {
                for i in 0..100 {
                    retry_unavailable!(unavailable, store.insert(format!("{t}-{i}"), opts(i % 5)).await);
                }
            });
        }
    }
    tasks.join_all().await;
    assert_eq!(retry_unavailable!(unavailable, b.list(&all()).await).len(), 800, "each sees the other's jobs");

    // The stall: the lock taken before the claims start, released once one of them failed.
    let mut stalling = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db_url(&dir)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut stalling).await {
        assert!(std::time::Instant::now() < deadline, "{e}");
    }
    let before = unavailable.load(Ordering::SeqCst);
    let stall = {
        let unavailable = Arc::clone(&unavailable);
        tokio::spawn(async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while unavailable.load(Ordering::SeqCst) == before {
                assert!(std::time::Instant::now() < deadline, "no claim failed while the lock was held");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sqlx::query("COMMIT").execute(&mut stalling).await.unwrap();
        })
    };
    assert_claimed_once(claim_all(&[Arc::clone(&a), Arc::clone(&b)], 8, &unavailable).await, 800);
    stall.await.unwrap();
    assert_eq!(retry_unavailable!(unavailable, a.claim_next(&[]).await), None);
    assert_eq!(retry_unavailable!(unavailable, b.claim_next(&[]).await), None);
}

#[tokio::test]
async fn sqlite_cancel_through_one_store_reaches_the_worker_of_another() {
    let dir = TempDir::new().unwrap();
    let server = SqliteStore::open(&db_url(&dir)).await.unwrap();
    let worker = SqliteStore::open(&db_url(&dir)).await.unwrap();
    let job = server.insert("x".to_owned(), SubmitOptions::default()).await.unwrap();
    assert_eq!(worker.claim_next(&[]).await.unwrap().unwrap().id, job.id);
    assert!(!worker.update_progress(&job.id, &Progress::default()).await.unwrap());
    assert!(matches!(server.cancel(&job.id).await, Ok(CancelOutcome::Requested(_))));
    assert!(worker.update_progress(&job.id, &Progress::default()).await.unwrap());
    worker.finish(&job.id, Outcome::Cancelled, "").await.unwrap();
    assert_eq!(server.get(&job.id).await.unwrap().unwrap().status, JobStatus::Cancelled);
}

#[tokio::test]
async fn sqlite_file_is_in_wal_mode_and_close_checkpoints_it() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::open(&db_url(&dir)).await.unwrap();
    let job = store.insert("x".to_owned(), SubmitOptions::default()).await.unwrap();
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db_url(&dir)).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    assert_eq!(mode, "wal");
    sqlx::Connection::close(conn).await.unwrap();
    assert!(entries(dir.path()).contains(&"jobs.db-wal".to_owned()));

    store.close().await;
    assert_eq!(entries(dir.path()), ["jobs.db"], "the last connection checkpointed and removed the WAL");
    assert!(matches!(store.get(&job.id).await, Err(StoreError::Database(_))));
    assert!(matches!(store.claim_next(&[]).await, Err(StoreError::Database(_))));
    assert!(matches!(store.insert("y".to_owned(), SubmitOptions::default()).await, Err(StoreError::Database(_))));
}

/// Group commit off (`bench store`'s baseline; `0` counts as `1`): concurrent inserts are each
/// stored once, with their own `seq`, as with the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_without_group_commit_stores_every_concurrent_insert() {
    let dir = TempDir::new().unwrap();
    let options = jobs::SqliteOptions::default().max_insert_batch(0);
    assert_eq!(options.insert_batch_limit(), 1);
    let store: Store = Arc::new(SqliteStore::open_path_with(&dir.path().join("jobs.db"), options).await.unwrap());
    concurrent_inserts_get_distinct_seqs(&store).await;
}

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Routing: a node claims only jobs whose `requires` its labels cover; the requirement is
/// stored and read back; a job no node here may take still holds back a later job that
/// conflicts with it (submission order between conflicting jobs stays).
async fn claim_only_jobs_the_labels_cover(store: &Store) {
    let with = |requires: &[&str]| SubmitOptions { requires: labels(requires), ..SubmitOptions::default() };
    let gpu = store.insert("-i a.mp4 gpu.mp4".to_owned(), with(&["gpu"])).await.unwrap();
    let both = store.insert("-i a.mp4 both.mp4".to_owned(), with(&["gpu", "nvenc"])).await.unwrap();
    let any = store.insert("-i a.mp4 any.mp4".to_owned(), with(&[])).await.unwrap();
    assert_eq!(store.get(&both.id).await.unwrap().unwrap().requires, labels(&["gpu", "nvenc"]));
    let listed = store.list(&all()).await.unwrap();
    assert_eq!(listed.iter().map(|j| j.requires.len()).collect::<Vec<_>>(), [1, 2, 0]);

    assert_eq!(store.claim_next(&[]).await.unwrap().map(|j| j.id), Some(any.id.clone()), "no labels: plain jobs");
    assert_eq!(store.claim_next(&[]).await.unwrap(), None);
    assert_eq!(store.claim_next(&labels(&["cpu"])).await.unwrap(), None);
    let claimed = store.claim_next(&labels(&["gpu"])).await.unwrap().unwrap();
    assert_eq!((claimed.id, claimed.requires), (gpu.id.clone(), labels(&["gpu"])));
    assert_eq!(store.claim_next(&labels(&["gpu"])).await.unwrap(), None, "nvenc is missing");
    let claimed = store.claim_next(&labels(&["arm", "gpu", "nvenc"])).await.unwrap().unwrap();
    assert_eq!(claimed.id, both.id);
    for id in [&gpu.id, &both.id, &any.id] {
        store.finish(id, Outcome::Cancelled, "").await.unwrap();
    }

    // Nothing runs: the gpu job writing w.mp4 (first in claim order) holds back the later job
    // reading it, on a node that may take only the reader.
    use ffmpeg_core::{command::Command, footprint::Footprint, sandbox::Sandbox};
    let dir = TempDir::new().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let footprint = |c: &str| Footprint::of(&sandbox.resolve_command(&Command::parse(c).unwrap()).unwrap());
    let writer = "-f lavfi -i testsrc w.mp4";
    let options = SubmitOptions { footprint: footprint(writer), ..with(&["gpu"]) };
    let writer = store.insert(writer.to_owned(), options).await.unwrap();
    let reader = "-i w.mp4 r.mp4";
    let options = SubmitOptions { footprint: footprint(reader), priority: 5, ..with(&[]) };
    let reader = store.insert(reader.to_owned(), options).await.unwrap();
    assert_eq!(store.claim_next(&[]).await.unwrap(), None, "the reader waits for the earlier gpu writer");
    assert_eq!(store.claim_next(&labels(&["gpu"])).await.unwrap().map(|j| j.id), Some(writer.id.clone()));
    assert_eq!(store.claim_next(&labels(&["gpu"])).await.unwrap(), None, "the reader waits for the running writer");
    store.finish(&writer.id, Outcome::Failed { error: "x".to_owned() }, "").await.unwrap();
    assert_eq!(store.claim_next(&[]).await.unwrap().map(|j| j.id), Some(reader.id));
}

/// The node registry: registration, heartbeats (draining, running jobs), capabilities, the
/// lost state, pruning and removal.
async fn node_registry_round_trips(store: &Store) {
    use ffmpeg_core::capabilities::{Capabilities, CapabilityOutputs, NameKind};
    use jobs::nodes::{Heartbeat, NodeRegistration, NodeRole, NodeState};
    let capabilities = Capabilities::from_outputs(CapabilityOutputs {
        encoders: " V....D h264_nvenc NVIDIA NVENC H.264 encoder (codec h264)\n V....D libx264 x264 (codec h264)\n",
        version: "ffmpeg version 5.1.9-0+deb12u1 Copyright",
        ..CapabilityOutputs::default()
    });
    let gpu = NodeRegistration {
        id: "gpu-1".to_owned(),
        role: NodeRole::Worker,
        labels: labels(&["gpu", "nvenc"]),
        host: "encoder-1".to_owned(),
        version: "0.1.0".to_owned(),
        ffmpeg_version: Some("5.1.9-0+deb12u1".to_owned()),
        capabilities: Some(Arc::new(capabilities.clone())),
        slots: 4,
        started_at: time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
        process: Some("boot pid:[1] 7".to_owned()),
    };
    let api = NodeRegistration {
        id: "api-1".to_owned(),
        role: NodeRole::Api,
        labels: Vec::new(),
        host: "front".to_owned(),
        version: "0.1.0".to_owned(),
        ffmpeg_version: None,
        capabilities: None,
        slots: 0,
        started_at: time::OffsetDateTime::now_utc(),
        process: None,
    };
    let minute = Duration::from_secs(60);
    assert!(store.nodes(minute).await.unwrap().is_empty());
    let before = time::OffsetDateTime::now_utc() - Duration::from_secs(1);
    assert!(store.register_node(&gpu, minute, None).await.unwrap());
    assert!(store.register_node(&api, minute, None).await.unwrap());
    let nodes = store.nodes(Duration::from_secs(60)).await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["api-1", "gpu-1"], "by id");
    let node = &nodes[1];
    assert_eq!(
        (node.role, &node.labels, node.host.as_str(), node.version.as_str(), node.slots),
        (NodeRole::Worker, &labels(&["gpu", "nvenc"]), "encoder-1", "0.1.0", 4)
    );
    assert_eq!(node.ffmpeg_version.as_deref(), Some("5.1.9-0+deb12u1"));
    assert_eq!((node.state, node.running_jobs.len()), (NodeState::Active, 0));
    // The start is the one registered (a whole second: not necessarily after `before`).
    assert!(node.last_heartbeat_at >= before, "{node:?}");
    assert_eq!((node.started_at, node.process.as_deref()), (gpu.started_at, Some("boot pid:[1] 7")));
    assert!(gpu.is_this_start(node));
    assert_eq!(nodes[0].role, NodeRole::Api);
    assert_eq!(nodes[0].ffmpeg_version, None);

    let back = store.node_capabilities("gpu-1").await.unwrap().unwrap();
    assert_eq!(back, capabilities);
    assert!(back.knows(NameKind::Encoder, "h264_nvenc") && !back.knows(NameKind::Encoder, "libx265"));
    assert_eq!(store.node_capabilities("api-1").await.unwrap(), None);
    assert_eq!(store.node_capabilities("nobody").await.unwrap(), None);

    let job = submit(store, "-i a.mp4 b.mp4").await;
    let beat = Heartbeat { draining: true, running_jobs: vec![job.id.clone()] };
    assert!(store.heartbeat_node(&gpu, &beat).await.unwrap());
    let nobody = NodeRegistration { id: "nobody".to_owned(), ..api.clone() };
    assert!(!store.heartbeat_node(&nobody, &beat).await.unwrap(), "an unknown node must register");
    let node = store.nodes(Duration::from_secs(60)).await.unwrap().remove(1);
    assert_eq!((node.state, node.running_jobs), (NodeState::Draining, vec![job.id.clone()]));

    // Registering again (the same start, after a prune) starts over: active, running nothing.
    assert!(store.register_node(&gpu, minute, None).await.unwrap());
    // gpu-1's last sign of life was before this.
    let gpu_written = std::time::Instant::now();
    let node = store.nodes(Duration::from_secs(60)).await.unwrap().remove(1);
    assert_eq!((node.state, node.running_jobs.len()), (NodeState::Active, 0));

    // Lost once silent for `lost_after` (zero: at once), and pruned once silent for longer.
    // (A wait for the clock to move on, not for anything to happen.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let states: Vec<NodeState> = store.nodes(Duration::ZERO).await.unwrap().iter().map(|n| n.state).collect();
    assert_eq!(states, [NodeState::Lost, NodeState::Lost]);
    assert_eq!(store.prune_nodes(Duration::from_secs(3600)).await.unwrap(), 0);
    let api_written = std::time::Instant::now();
    assert!(store.heartbeat_node(&api, &Heartbeat::default()).await.unwrap());
    // Silent for longer than that (measured, not assumed: a store call can take a second on a
    // loaded machine): gpu-1 was, api-1 has not been unless its heartbeat and the prune
    // took that long (at least 1.5 s).
    let silence = api_written - gpu_written;
    assert_eq!(store.prune_nodes(silence).await.unwrap(), 1, "gpu-1 was silent for {silence:?}");
    let nodes = store.nodes(Duration::from_secs(60)).await.unwrap();
    assert_eq!(nodes.iter().map(|n| (n.id.as_str(), n.state)).collect::<Vec<_>>(), [("api-1", NodeState::Active)]);
    store.remove_node(&api).await.unwrap();
    store.remove_node(&api).await.unwrap();
    assert!(store.nodes(Duration::from_secs(60)).await.unwrap().is_empty());
}

/// A node id belongs to one start at a time: a second start of the id is refused while the
/// first is alive, unless the first is lost (no heartbeat for the lease) or named as gone; a
/// start's heartbeats and removal touch only its own row, so the start that was replaced
/// learns it (its heartbeat is refused) and cannot remove its successor.
async fn a_node_id_belongs_to_one_live_start(store: &Store) {
    use jobs::nodes::{Heartbeat, NodeRegistration, NodeRole};
    let minute = Duration::from_secs(60);
    let first = NodeRegistration {
        id: "w2".to_owned(),
        role: NodeRole::Worker,
        labels: Vec::new(),
        host: "a".to_owned(),
        version: "0".to_owned(),
        ffmpeg_version: None,
        capabilities: None,
        slots: 1,
        started_at: time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
        process: None,
    };
    let second = NodeRegistration {
        host: "b".to_owned(),
        started_at: first.started_at + Duration::from_millis(1),
        ..first.clone()
    };
    let host_of = async || store.nodes(minute).await.unwrap().iter().map(|n| n.host.clone()).collect::<Vec<_>>();
    assert!(store.register_node(&first, minute, None).await.unwrap());
    assert!(store.heartbeat_node(&first, &Heartbeat::default()).await.unwrap());
    assert!(!store.register_node(&second, minute, None).await.unwrap(), "the first start is alive");
    assert!(!store.heartbeat_node(&second, &Heartbeat::default()).await.unwrap());
    store.remove_node(&second).await.unwrap();
    assert_eq!(host_of().await, ["a"], "nothing of the first start changed");
    assert!(store.register_node(&first, minute, None).await.unwrap(), "the same start registers again");

    // Named as gone (its process is known to have died): replaced at once.
    assert!(store.register_node(&second, minute, Some(first.started_at)).await.unwrap());
    assert_eq!(host_of().await, ["b"]);
    assert!(!store.heartbeat_node(&first, &Heartbeat::default()).await.unwrap(), "the first start was replaced");
    assert!(!store.register_node(&first, minute, None).await.unwrap(), "and cannot take the id back");
    store.remove_node(&first).await.unwrap();
    assert_eq!(host_of().await, ["b"], "the replaced start cannot remove its successor");

    // Lost (silent for the lease, here a millisecond; a wait for the clock to move on).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let third = NodeRegistration { host: "c".to_owned(), started_at: second.started_at + minute, ..first.clone() };
    assert!(store.register_node(&third, Duration::from_millis(1), None).await.unwrap(), "the second start is lost");
    assert_eq!(host_of().await, ["c"]);
    store.remove_node(&third).await.unwrap();
    assert!(host_of().await.is_empty());
}

/// A running job that recorded a run is not a lost run while its node holds it: nothing to
/// take over (a single-node store never has one: its recovery at start-up cleans up instead).
async fn no_lost_run_to_take_over_while_its_node_holds_it(store: &Store) {
    let job = running(store, "-i a.mp4 a.mkv").await;
    let run = jobs::store::RunRecord {
        attempt: job.attempts,
        footprint: ffmpeg_core::footprint::Footprint::default(),
        snapshot: jobs::outputs::Snapshot::default(),
        temp_area: false,
    };
    store.record_run(&job.id, &run).await.unwrap();
    assert!(matches!(store.cancel(&job.id).await.unwrap(), CancelOutcome::Requested(_)));
    assert_eq!(store.claim_lost_run().await.unwrap(), None);
    assert_eq!(status(store, &job.id).await, JobStatus::Running);
}

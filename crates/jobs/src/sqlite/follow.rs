//! Processes sharing one SQLite file follow each other ([`crate::cluster`]): an `api` node beside
//! the node that runs the jobs must see the jobs run and end (tester finding F26). SQLite has no
//! notifications, so while this process's event streams watch something
//! ([`JobStore::set_watched`](crate::JobStore::set_watched)) a task reads what they watch every
//! [`FOLLOW_INTERVAL`] and turns what changed into [`ClusterSignal`]s, which the service applies
//! as it applies another PostgreSQL node's (`service/bridge.rs`: a status change is read back
//! and published; progress is published):
//!
//! - the jobs someone subscribes to: their status (`event_seq`) and stored progress;
//! - while an all-jobs stream is open ([`Watched::every_status`]): the queued and running jobs,
//!   the jobs submitted since the last read, and those that left the queued and running ones
//!   since (ended); with [`Watched::all`], the running jobs' progress too. The first read is a
//!   baseline: what was already there is not news.
//!
//! A job that changed status more than once between two reads (queued -> running -> completed
//! within 250 ms) is signalled from the first change not seen yet, the status it had then told
//! by the transitions ([`crate::cluster::passed_statuses`]; a job submitted since the last
//! read, from its `queued`), and the service publishes every status in between
//! ([`crate::cluster::passed`]): the streams miss none of them.
//!
//! What it cannot do: progress is what the store holds (written once a second by the running
//! process, not at ffmpeg's rate), numbered `S.k` by this process in the order it read it. A
//! change this process made itself is heard back too: the bus publishes each status once
//! ([`EventBus::publish_status`](crate::events::EventBus::publish_status)), and the service
//! drops progress read back of a job it runs. Nothing is read while nothing is watched.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use tokio::sync::{broadcast, watch};

use super::rows::{db, json};
use super::sql::{FOLLOW_ACTIVE, FOLLOW_JOBS, MAX_SEQ};
use crate::cluster::{ClusterSignal, Watched, passed_statuses};
use crate::events::{EventId, ProgressEvent};
use crate::model::{JobId, JobStatus, Progress};
use crate::store::StoreError;

/// How often a process reads the jobs its streams watch, while they watch any: the longest a
/// status change made by another process on the same file takes to reach them (plus the read).
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(250);

/// Signals held for a receiver that is behind; further behind, it gets `Lagged` (a resync).
const SIGNAL_CAPACITY: usize = 4096;

/// The follower of a file store: its signals and what to follow.
#[derive(Debug)]
pub(super) struct Follower {
    signals: broadcast::Sender<ClusterSignal>,
    watched: watch::Sender<Watched>,
}

impl Follower {
    /// Starts the reading task on `reader`; it ends when the follower is dropped.
    pub(super) fn start(reader: SqlitePool) -> Follower {
        let signals = broadcast::Sender::new(SIGNAL_CAPACITY);
        let watched = watch::Sender::new(Watched::default());
        tokio::spawn(follow(reader, signals.clone(), watched.subscribe()));
        Follower { signals, watched }
    }

    /// A receiver of the signals from now on.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<ClusterSignal> {
        self.signals.subscribe()
    }

    /// Follows what `watched` names from now on.
    pub(super) fn set_watched(&self, watched: &Watched) {
        self.watched.send_if_modified(|current| {
            let changed = current != watched;
            if changed {
                current.clone_from(watched);
            }
            changed
        });
    }
}

/// Reads what `watched` names every [`FOLLOW_INTERVAL`] while it names anything, until the
/// follower is dropped.
async fn follow(reader: SqlitePool, signals: broadcast::Sender<ClusterSignal>, mut watched: watch::Receiver<Watched>) {
    let mut state = State::default();
    loop {
        let now = watched.borrow_and_update().clone();
        if now.jobs.is_empty() && !now.every_status {
            state = State::default();
            if watched.changed().await.is_err() {
                return;
            }
            continue;
        }
        if reader.is_closed() {
            return;
        }
        if let Err(e) = state.read(&reader, &now, &signals).await {
            tracing::debug!(error = %e, "reading the changes of the other processes on the file failed; retrying");
        }
        tokio::select! {
            changed = watched.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
        }
    }
}

/// A job as a read sees it: `(seq, id, status, event_seq, progress)`.
type Row = (i64, String, String, i64, Option<String>);

/// What the reads saw so far.
#[derive(Debug, Default)]
struct State {
    /// Per job followed: what the last read saw.
    seen: HashMap<JobId, Seen>,
    /// Following every job's status: `None` until the baseline read.
    every: Option<Every>,
}

#[derive(Debug, Default)]
struct Seen {
    event_seq: u64,
    /// The status at `event_seq` (`None` before the first read).
    status: Option<JobStatus>,
    /// The stored progress (JSON text) of the run `event_seq` started.
    progress: Option<String>,
    /// Progress events numbered for that run.
    count: u64,
}

#[derive(Debug)]
struct Every {
    /// The highest submission seq read.
    max_seq: i64,
    /// The queued and running jobs at the last read.
    active: HashSet<JobId>,
}

impl State {
    async fn read(
        &mut self,
        reader: &SqlitePool,
        watched: &Watched,
        signals: &broadcast::Sender<ClusterSignal>,
    ) -> Result<(), StoreError> {
        let send = |signal| {
            // No receiver: nobody here follows anything any more.
            let _ = signals.send(signal);
        };
        if !watched.jobs.is_empty() {
            for row in rows_of(reader, watched.jobs.iter()).await? {
                self.observe(row, Read::Change { new: false }, true, send);
            }
        }
        if !watched.every_status {
            self.every = None;
        } else if let Some(every) = &mut self.every {
            let rows: Vec<Row> =
                sqlx::query_as(FOLLOW_ACTIVE).bind(every.max_seq).fetch_all(reader).await.map_err(db)?;
            let mut active = HashSet::with_capacity(every.active.len());
            let (mut max_seq, submitted_after) = (every.max_seq, every.max_seq);
            let mut read = Vec::with_capacity(rows.len());
            for row in rows {
                max_seq = max_seq.max(row.0);
                if is_active(&row.2)
                    && let Ok(id) = JobId::parse(&row.1)
                {
                    active.insert(id);
                }
                read.push(row);
            }
            // Those no longer queued or running ended meanwhile (or were ended and deleted).
            let ended: Vec<JobId> = every.active.difference(&active).cloned().collect();
            (every.max_seq, every.active) = (max_seq, active);
            for row in read {
                let new = row.0 > submitted_after;
                self.observe(row, Read::Change { new }, watched.all, send);
            }
            if !ended.is_empty() {
                for row in rows_of(reader, ended.iter()).await? {
                    self.observe(row, Read::Change { new: false }, false, send);
                }
            }
        } else {
            let max_seq: i64 = sqlx::query_scalar(MAX_SEQ).fetch_one(reader).await.map_err(db)?;
            let rows: Vec<Row> = sqlx::query_as(FOLLOW_ACTIVE).bind(max_seq).fetch_all(reader).await.map_err(db)?;
            let mut active = HashSet::with_capacity(rows.len());
            for row in rows {
                if let Ok(id) = JobId::parse(&row.1) {
                    active.insert(id);
                }
                self.observe(row, Read::Baseline, true, send);
            }
            self.every = Some(Every { max_seq, active });
        }
        let watched_jobs: HashSet<&JobId> = watched.jobs.iter().collect();
        let every = self.every.as_ref();
        self.seen.retain(|id, _| watched_jobs.contains(id) || every.is_some_and(|e| e.active.contains(id)));
        Ok(())
    }

    /// Notes what `row` says; unless it is the [`Read::Baseline`], sends a status signal when
    /// its status changed since the last read (naming the first change not seen), and with
    /// `progress` a progress event when its stored progress changed while it runs.
    fn observe(&mut self, row: Row, read: Read, progress: bool, send: impl Fn(ClusterSignal)) {
        let (_, id, status, event_seq, stored) = row;
        let (Ok(job), Ok(status), Ok(event_seq)) =
            (JobId::parse(&id), status.parse::<JobStatus>(), u64::try_from(event_seq))
        else {
            return;
        };
        let emit = matches!(read, Read::Change { .. });
        let seen = self.seen.entry(job.clone()).or_default();
        if seen.event_seq != event_seq {
            // A job submitted since the last read (and not read as a watched job already) was
            // first `queued` (event 1), unseen too.
            let last = match (read, seen.status) {
                (_, Some(status)) => Some((seen.event_seq, status)),
                (Read::Change { new: true }, None) => Some((0, JobStatus::Queued)),
                (_, None) => None,
            };
            *seen = Seen { event_seq, status: Some(status), progress: None, count: 0 };
            if emit {
                let (seq, status) = first_unseen(last, (event_seq, status));
                send(ClusterSignal::Status { job: job.clone(), seq, status });
            }
        }
        if !progress || status != JobStatus::Running || stored == seen.progress {
            return;
        }
        seen.progress = stored;
        let Some(text) = seen.progress.as_deref() else { return };
        if !emit {
            return;
        }
        match serde_json::from_str::<Progress>(text) {
            Ok(snapshot) => {
                seen.count += 1;
                let id = EventId { status: event_seq, progress: seen.count };
                send(ClusterSignal::Progress(ProgressEvent { job, id, progress: Arc::new(snapshot) }));
            }
            Err(e) => tracing::debug!(job = %job, error = %e, "unreadable stored progress"),
        }
    }
}

/// How a read's rows are taken ([`State::observe`]).
#[derive(Debug, Clone, Copy)]
enum Read {
    /// The first read of every job: what is there is not news.
    Baseline,
    /// A later read: what changed since is signalled; `new` for a job submitted since the last
    /// read.
    Change { new: bool },
}

/// The first status change after `last` (event, status; `(0, queued)` for a job never seen
/// that was submitted since: its `queued` is event 1) that leads to `now`, with the status the
/// job had then ([`passed_statuses`]); `now` itself when `last` is unknown or nothing leads
/// from it to `now`.
fn first_unseen(last: Option<(u64, JobStatus)>, now: (u64, JobStatus)) -> (u64, JobStatus) {
    let Some(last) = last else { return now };
    if last.0 == 0 {
        // Submitted since the last read: queued at event 1, then what followed.
        let first = (1, JobStatus::Queued);
        return if now.0 == 1 || passed_statuses(first, now).is_some() { first } else { now };
    }
    match passed_statuses(last, now) {
        Some(statuses) if statuses.len() > 1 => (last.0 + 1, statuses[1]),
        _ => now,
    }
}

fn is_active(status: &str) -> bool {
    status == JobStatus::Queued.as_str() || status == JobStatus::Running.as_str()
}

/// The rows of the jobs `ids` (those that exist).
async fn rows_of(reader: &SqlitePool, ids: impl Iterator<Item = &JobId>) -> Result<Vec<Row>, StoreError> {
    let ids = json(&ids.map(JobId::as_str).collect::<Vec<_>>())?;
    sqlx::query_as(FOLLOW_JOBS).bind(ids).fetch_all(reader).await.map_err(db)
}

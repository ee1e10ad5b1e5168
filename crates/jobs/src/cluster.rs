//! What the nodes of a cluster tell each other: [`ClusterSignal`]s, heard by a store shared by
//! several nodes ([`JobStore::cluster_signals`](crate::JobStore::cluster_signals); PostgreSQL's
//! `LISTEN/NOTIFY`, see [`crate::postgres`]) and applied by [`Jobs`](crate::Jobs):
//!
//! - a job queued (submitted, re-queued) or ended on any node wakes this node's idle workers at
//!   once, rather than at their next look at the store ([`JobsConfig::idle_wait`](crate::JobsConfig));
//! - a cancel asked on any node stops the job's ffmpeg on the node running it;
//! - status changes and live progress of jobs run elsewhere reach this node's event bus, and so
//!   its event streams, as if the jobs ran here (progress at ffmpeg's rate: the store keeps only
//!   one snapshot a second; sent only for the jobs some node's streams watch, [`Watched`]).
//!
//! SQLite has no notifications: processes sharing one SQLite file (an `api` node beside the node
//! that runs the jobs) follow each other by reading the store while their streams watch
//! something (`crate::sqlite`'s follower): status changes within a quarter of a second,
//! progress as often as the store holds it (once a second), numbered by the node that reads it.
//!
//! # Statuses passed between two reads
//!
//! A signalled status may be gone by the time the job is read (queued -> running -> completed
//! within one follower read; a re-queue that a worker claimed again at once). The store keeps
//! no history, but it numbers every status change (`event_seq`), and the transitions allowed
//! leave exactly one way from one status to another in a given number of changes (queued and
//! running alternate until a final status, [`passed_statuses`]). So every status is still
//! published, in order, each with its own event id ([`passed`]): the job as read, with the
//! status it had then and what that status implies (no end time or outputs before the end,
//! no start time or progress while queued, one attempt less before each start). Its other
//! fields are those of the read (e.g. the latest run's start time).
//!
//! A status may also never be signalled: on PostgreSQL a claim leaves its job's start
//! unannounced while no other node watches (migration 0011), and a stream opened elsewhere at
//! that very moment is known to the claiming node only a moment later. A node therefore rebuilds
//! from the latest status its own streams showed (a stream that starts from the store leaves
//! that status on the bus, [`EventBus::note_status`](crate::events::EventBus::note_status)):
//! the job's next signalled status, or a progress event of a run whose start it never
//! published, brings the statuses in between first.
//!
//! Signals are hints, never the state: each one is checked against the store (a status signal
//! is followed by a read of the job), and when signals may have been missed
//! ([`ClusterSignal::Resync`]: the store lost its connection for a while) what depends on them
//! is read again from the store.

use crate::events::ProgressEvent;
use crate::model::{Job, JobId, JobStatus};

/// One signal from the other nodes of a cluster (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterSignal {
    /// Another node changed the status of `job` (submitted, claimed, finished, re-queued, ...).
    Status {
        /// The job.
        job: JobId,
        /// Its [`Job::event_seq`](crate::Job::event_seq) after the change.
        seq: u64,
        /// Its status after the change.
        status: JobStatus,
    },
    /// This node's store changed the status of a job on its own, outside any call of the
    /// service (PostgreSQL's reaper re-queued or ended a job whose node's lease expired): the
    /// job as the change left it. The other nodes hear of it as [`ClusterSignal::Status`].
    Changed(std::sync::Arc<crate::Job>),
    /// A client asked (on any node) to cancel `job` while it runs.
    Cancel {
        /// The job.
        job: JobId,
    },
    /// A progress event of a job that another node runs, numbered by that node (`S.k`).
    Progress(ProgressEvent),
    /// Signals may have been missed (the store's connection was lost and is back, or this
    /// node fell behind): re-read from the store what depends on them.
    Resync,
}

/// What a node's event streams watch ([`EventBus::watched`](crate::events::EventBus::watched)),
/// told to the other nodes ([`JobStore::set_watched`](crate::JobStore::set_watched)) so that a
/// node running a job sends its live progress only when some other node watches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watched {
    /// An all-jobs stream passes every job's progress on.
    pub all: bool,
    /// An all-jobs stream is open: it takes every job's status changes. (PostgreSQL's nodes
    /// announce every status change anyway; a store that must look for them, SQLite shared
    /// by several processes, looks at every job only while this holds.)
    pub every_status: bool,
    /// The jobs someone subscribes to, by id.
    pub jobs: Vec<JobId>,
}

/// Whether the store makes `from -> to` in one status change: a claim (queued -> running), a
/// cancel of a queued job, a re-queue (running -> queued), or the end of a run.
fn is_transition(from: JobStatus, to: JobStatus) -> bool {
    use JobStatus::{Cancelled, Queued, Running};
    matches!((from, to), (Queued, Running | Cancelled) | (Running, Queued)) || (from == Running && to.is_finished())
}

/// The statuses a job had from event `from` to just before event `to` (`(event_seq, status)`
/// each): `from`'s status first, one per change, when the store's transitions allow exactly
/// one such sequence, which they do whenever they allow any (the statuses before a final one
/// alternate between queued and running); `None` when none leads there (`to` is not after
/// `from`, a final status changed, or the last change is not a transition).
pub fn passed_statuses(from: (u64, JobStatus), to: (u64, JobStatus)) -> Option<Vec<JobStatus>> {
    let steps = to.0.checked_sub(from.0).filter(|&n| n > 0)?;
    let mut statuses = Vec::with_capacity(usize::try_from(steps).ok()?);
    let mut status = from.1;
    for left in (1..=steps).rev() {
        statuses.push(status);
        if left == 1 {
            return is_transition(status, to.1).then_some(statuses);
        }
        status = match status {
            JobStatus::Queued => JobStatus::Running,
            JobStatus::Running => JobStatus::Queued,
            _ => return None,
        };
    }
    None
}

/// The job as it was at each status it passed from event `seq` (status `status`, as a signal
/// named it) up to `job` (as read since, a later event), oldest first (see the [module
/// docs](self#statuses-passed-between-two-reads)); empty when `job` is not later. When no
/// sequence of transitions leads from one to the other, only `seq` itself.
pub fn passed(job: &Job, seq: u64, status: JobStatus) -> Vec<Job> {
    if job.event_seq <= seq {
        return Vec::new();
    }
    let statuses = passed_statuses((seq, status), (job.event_seq, job.status)).unwrap_or_else(|| vec![status]);
    // Attempts before each status: one less before every start that followed it.
    let mut attempts = job.attempts;
    let mut next = job.status;
    let mut snapshots: Vec<Job> = Vec::with_capacity(statuses.len());
    for (offset, &status) in statuses.iter().enumerate().rev() {
        if next == JobStatus::Running && status != JobStatus::Running {
            attempts = attempts.saturating_sub(1);
        }
        next = status;
        let running = status == JobStatus::Running;
        snapshots.push(Job {
            status,
            event_seq: seq + offset as u64,
            attempts,
            started_at: job.started_at.filter(|_| running || status.is_finished()),
            completed_at: job.completed_at.filter(|_| status.is_finished()),
            progress: job.progress.clone().filter(|_| status.is_finished()),
            output_files: if status.is_finished() { job.output_files.clone() } else { Vec::new() },
            outputs: if status.is_finished() { job.outputs.clone() } else { Vec::new() },
            error: job.error.clone().filter(|_| status.is_finished()),
            waiting_reason: None,
            ..job.clone()
        });
    }
    snapshots.reverse();
    snapshots
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobStatus::{Cancelled, Completed, Failed, Queued, Running};

    #[test]
    fn the_statuses_between_two_events_follow_from_the_transitions() {
        for (from, to, expected) in [
            ((1, Queued), (2, Running), Some(vec![Queued])),
            ((1, Queued), (3, Completed), Some(vec![Queued, Running])),
            ((1, Queued), (3, Queued), Some(vec![Queued, Running])),
            ((1, Queued), (2, Cancelled), Some(vec![Queued])),
            ((1, Queued), (3, Cancelled), Some(vec![Queued, Running])),
            ((1, Queued), (4, Cancelled), Some(vec![Queued, Running, Queued])),
            ((2, Running), (5, Failed), Some(vec![Running, Queued, Running])),
            ((2, Running), (4, Running), Some(vec![Running, Queued])),
            // No way there: a final status changed, queued never completes directly, nothing
            // happened, or time ran backwards.
            ((3, Completed), (4, Queued), None),
            ((1, Queued), (2, Completed), None),
            ((1, Queued), (4, Completed), None),
            ((2, Running), (2, Running), None),
            ((3, Running), (2, Queued), None),
        ] {
            assert_eq!(passed_statuses(from, to), expected, "{from:?} -> {to:?}");
        }
    }

    #[test]
    fn a_passed_status_shows_the_job_as_it_was_then() {
        let at = time::OffsetDateTime::UNIX_EPOCH;
        let mut done = Job::new_queued("-i a.mp4 b.mkv".to_owned(), crate::SubmitOptions::default(), 7, at);
        (done.status, done.event_seq, done.attempts) = (Completed, 5, 2);
        (done.started_at, done.completed_at) =
            (Some(at + time::Duration::seconds(3)), Some(at + time::Duration::seconds(9)));
        done.progress = Some(crate::Progress { frame: Some(250), ..crate::Progress::default() });
        done.output_files = vec!["b.mkv".to_owned()];
        let passed = passed(&done, 2, Running);
        let shown: Vec<(u64, JobStatus, u32, bool)> =
            passed.iter().map(|j| (j.event_seq, j.status, j.attempts, j.started_at.is_some())).collect();
        assert_eq!(shown, [(2, Running, 1, true), (3, Queued, 1, false), (4, Running, 2, true)]);
        for job in &passed {
            assert_eq!((job.id.clone(), job.seq, &job.command), (done.id.clone(), 7, &done.command));
            assert!(job.completed_at.is_none() && job.progress.is_none() && job.output_files.is_empty(), "{job:?}");
        }
        assert!(super::passed(&done, 5, Completed).is_empty(), "nothing passed: the job is at that event");
        // No way from the signalled status: only that status is shown.
        assert_eq!(
            super::passed(&done, 4, Queued).iter().map(|j| (j.event_seq, j.status)).collect::<Vec<_>>(),
            [(4, Queued)]
        );
    }
}

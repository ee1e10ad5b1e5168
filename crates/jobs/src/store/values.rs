//! The values a [`JobStore`](super::JobStore) takes and returns, beside [`Job`](crate::Job)
//! itself: how a run ended ([`Outcome`]), what a cancel did ([`CancelOutcome`]), a page's
//! filter ([`ListQuery`]), what recovery did ([`Recovery`]), what a run recorded before ffmpeg
//! started ([`RunRecord`], [`InterruptedRun`]), the footprints of the active jobs
//! ([`ActiveFootprint`], [`footprints_conflict`]), whether a retried attempt counts
//! ([`Attempt`]) and the counts per status.

use std::collections::BTreeMap;

use ffmpeg_core::footprint::Footprint;
use serde::{Deserialize, Serialize};

use crate::model::{Job, JobId, JobStatus};
use crate::outputs::Snapshot;

/// How a run ended, as recorded by [`JobStore::finish`](super::JobStore::finish).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// ffmpeg exited 0; the files it produced, relative to the data directory.
    Completed {
        /// Produced files.
        output_files: Vec<String>,
        /// What is known of each produced file (see [`crate::model::OutputFile`]).
        outputs: Vec<crate::model::OutputFile>,
    },
    /// ffmpeg failed or timed out; a short, human-readable reason.
    Failed {
        /// The reason.
        error: String,
    },
    /// Stopped because a client cancelled it.
    Cancelled,
}

/// Whether the attempt that [`JobStore::retry`](super::JobStore::retry) ends counts against
/// the job's attempt limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// It counts: the attempt failed for a reason that may pass (a storage that answered with
    /// an error, a failure a check of the storage did not confirm as an outage).
    Counted,
    /// It does not: the job waited on a storage known not to answer (tester finding K11: an
    /// outage longer than the attempts' waits failed jobs that never ran). As for
    /// [`JobStore::requeue`](super::JobStore::requeue), the next start gets the same attempt
    /// number.
    NotCounted,
}

/// Result of [`JobStore::cancel`](super::JobStore::cancel).
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The job was queued and is now cancelled.
    Cancelled(Job),
    /// The job is running; it is marked and its worker must stop it and call
    /// [`JobStore::finish`](super::JobStore::finish) with [`Outcome::Cancelled`].
    Requested(Job),
}

/// Which jobs [`JobStore::list`](super::JobStore::list) returns: submission order (oldest first),
/// after a cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only jobs with one of these statuses; empty: every status.
    pub statuses: Vec<JobStatus>,
    /// Only jobs submitted after the job with this sequence number.
    pub after_seq: Option<i64>,
    /// At most this many jobs.
    pub limit: u32,
}

/// What [`JobStore::recover`](super::JobStore::recover) did with jobs left `running` by a previous
/// process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Jobs put back in the queue.
    pub requeued: Vec<JobId>,
    /// Jobs that had used all their attempts and are now failed ("interrupted").
    pub failed: Vec<JobId>,
    /// Jobs whose cancel was pending (asked for while they ran) and are now cancelled: they
    /// never run again, whatever their attempts.
    pub cancelled: Vec<JobId>,
}

/// What one attempt of a job recorded before ffmpeg started
/// ([`JobStore::record_run`](super::JobStore::record_run)): the footprint it ran with (resolved at
/// run time) and the files its written directories held. With it, recovery after a crash removes
/// what the attempt wrote by the rule failures use (see [`outputs`](crate::outputs)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The attempt (the job's `attempts` when it was claimed).
    pub attempt: u32,
    /// What the attempt's command may read and write.
    pub footprint: Footprint,
    /// The covered files that existed before ffmpeg started.
    pub snapshot: Snapshot,
    /// Files in a bucket: whether this attempt may have written into the storage's temporary
    /// area (a staged run whose command writes files uploads them there first), or left in
    /// place an earlier attempt's names that it could not undo. The next attempt undoes them
    /// before it starts only then (tester finding I2: an attempt that failed while
    /// downloading made the next one list an empty area, one request timeout each in an
    /// outage). `false` for a run in place. A record written before this existed reads as
    /// `true`.
    #[serde(default = "may_have_written")]
    pub temp_area: bool,
}

/// [`RunRecord::temp_area`] of a record that does not say.
fn may_have_written() -> bool {
    true
}

/// The error a job gets when the node running it was lost and it has used all its attempts.
pub const WORKER_LOST: &str = "worker lost";

/// A running job whose node was lost and that must end rather than run again (a cancel was
/// asked for, or it has used all its attempts), taken over by this node
/// ([`JobStore::claim_lost_run`](super::JobStore::claim_lost_run)) to remove what the lost
/// attempt wrote before it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct LostRun {
    /// The job, still `running`, now held by this node (for its current attempt).
    pub id: JobId,
    /// The latest run the job recorded ([`JobStore::record_run`](super::JobStore::record_run)):
    /// what the lost attempt (or an earlier one never cleaned) may have left.
    pub run: RunRecord,
    /// How it ends: [`Outcome::Cancelled`] when a cancel was asked for, else
    /// [`Outcome::Failed`] with [`WORKER_LOST`].
    pub outcome: Outcome,
}

/// A job left `running` by a process that is gone
/// ([`JobStore::interrupted_runs`](super::JobStore::interrupted_runs)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptedRun {
    /// The job.
    pub id: JobId,
    /// Its current attempt's record; `None` when the attempt stopped before ffmpeg could start
    /// (nothing of it can be in the data directory).
    pub run: Option<RunRecord>,
}

/// Whether two jobs with these footprints must not run at once: either may write what the
/// other reads or writes, or either footprint is unknown (`None`: such a job runs alone).
pub fn footprints_conflict(a: Option<&Footprint>, b: Option<&Footprint>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.conflicts_with(b),
        _ => true,
    }
}

/// Which of `active` (the queued and running jobs, `(seq, status)` in submission order) holds
/// back queued job `seq` whose footprint is `mine`, by the rule of
/// [`JobStore::claim_next`](super::JobStore::claim_next), as a claim compares them: the first
/// running job, else the first earlier-submitted queued job, whose footprint (`footprint` of
/// its index) conflicts with `mine` ([`footprints_conflict`]). Its index, `None` when nothing
/// holds the job back. What [`JobStore::held_back`](super::JobStore::held_back) answers on
/// every store.
pub(crate) fn blocker_of<'f>(
    seq: i64,
    mine: Option<&Footprint>,
    active: &[(i64, JobStatus)],
    footprint: impl Fn(usize) -> Option<&'f Footprint>,
) -> Option<usize> {
    let running = (0..active.len()).filter(|&i| active[i].1 == JobStatus::Running);
    let earlier = (0..active.len()).take_while(|&i| active[i].0 < seq).filter(|&i| active[i].1 == JobStatus::Queued);
    running.chain(earlier).find(|&i| footprints_conflict(mine, footprint(i)))
}

/// A queued or running job and what it may read and write
/// ([`JobStore::active_footprints`](super::JobStore::active_footprints)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveFootprint {
    /// The job.
    pub id: JobId,
    /// Its status (queued or running).
    pub status: JobStatus,
    /// What it may read and write; `None`: unknown (it may touch any file).
    pub footprint: Option<Footprint>,
}

/// Number of jobs in each status.
pub type StatusCounts = BTreeMap<JobStatus, u64>;

/// What holds a queued job back ([`JobStore::held_back`](super::JobStore::held_back)): a
/// running job, or an earlier-submitted queued one, whose files conflict with its own
/// ([`footprints_conflict`]), so the job may not start before that one has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// The job it waits for.
    pub by: JobId,
    /// That job's status: [`JobStatus::Running`], or [`JobStatus::Queued`] (submitted earlier).
    pub status: JobStatus,
    /// A file set of that job's that the waiting job's files could meet, as a path relative to
    /// the data directory ([`FileSet`](ffmpeg_core::footprint::FileSet)'s `Display`), and
    /// whether that job writes it (else it reads it and the waiting job writes it); `None`
    /// when either job's footprint is unknown (a job stored before footprints existed).
    pub file: Option<(String, bool)>,
}

impl HeldBack {
    /// What holds `mine` back when it waits for a job with footprint `theirs`.
    pub fn of(by: JobId, status: JobStatus, mine: Option<&Footprint>, theirs: Option<&Footprint>) -> HeldBack {
        let file = match (mine, theirs) {
            (Some(mine), Some(theirs)) => mine.conflict_with(theirs).map(|c| (c.set.to_string(), c.written)),
            _ => None,
        };
        HeldBack { by, status, file }
    }

    /// The job's `waiting_reason`: ``waits for job_... (submitted earlier; it writes `ord1/g.mp4`)``,
    /// ``waits for job_... (running; it reads `a.mp4`)``.
    pub fn reason(&self) -> String {
        let when = if self.status == JobStatus::Running { "running" } else { "submitted earlier" };
        let what = match &self.file {
            Some((file, true)) => format!("it writes `{file}`"),
            Some((file, false)) => format!("it reads `{file}`, which this job writes"),
            None => "the files of one of the two are unknown".to_owned(),
        };
        format!("waits for {} ({when}; {what})", self.by)
    }
}

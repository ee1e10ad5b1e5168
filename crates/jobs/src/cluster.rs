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
//! progress as often as the store holds it (once a second), numbered by the node that reads it;
//! a job's statuses passed within one read's interval reach the streams as the latest of them.
//!
//! Signals are hints, never the state: each one is checked against the store (a status signal
//! is followed by a read of the job), and when signals may have been missed
//! ([`ClusterSignal::Resync`]: the store lost its connection for a while) what depends on them
//! is read again from the store.

use crate::events::ProgressEvent;
use crate::model::{JobId, JobStatus};

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

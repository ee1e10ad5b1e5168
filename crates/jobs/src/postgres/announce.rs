//! The announcement outbox (migration `0015_announcement_outbox.sql`): how the ends of a
//! node's runs reach the other nodes without a notification inside their durable commit.
//!
//! A commit that notifies holds PostgreSQL's notification lock until it is on disk, so ends
//! notified by the trigger inside their commit were written one `fsync` at a time, cluster-wide.
//! The statements that end runs (`FINISH_BATCH`, `CLAIM_CARRYING_ENDS`) therefore have the
//! trigger write each end's notification as a row of table `announcements`, in the end's own
//! transaction. Once the commit is acknowledged, the node deletes those rows and notifies their
//! payloads in one statement ([`PgStore::announce_ends`], [`ANNOUNCE_ENDS`]) that commits
//! without waiting for the disk. A node that dies or loses its connection in between leaves its
//! rows behind, and every node's reaper round announces the rows older than [`SWEEP_AGE`]
//! ([`sweep`]): an end is announced at the latest about `SWEEP_AGE` plus a reaper round (1 s)
//! after its commit, while some node runs.
//!
//! A row is deleted by the statement that notifies it, so it is sent once, unless a crash loses
//! that statement's commit (it does not wait for the disk) after the notification went out; a
//! repeated end is harmless: the nodes go by the job's event number (a stream publishes a
//! status only when newer than the one it has; a woken idle worker finds nothing new to claim).

use std::time::Duration;

use sqlx::PgConnection;
use sqlx::postgres::PgPool;

use super::conn::Conn;
use super::notify::CHANNEL;
use super::sql::{ANNOUNCE_ENDS, SWEEP_ANNOUNCEMENTS};
use super::{PgStore, db};
use crate::model::Job;
use crate::store::StoreError;

/// Announcement rows at least this old are taken to be left behind by their node (it died or
/// lost its connection between the end's commit and its announcement) and are announced by
/// whichever node's reaper round comes first. A node announces its own a moment after the
/// commit; one that takes longer (a loaded machine) races the sweep harmlessly: a row is sent by
/// the statement that deletes it.
pub const SWEEP_AGE: Duration = Duration::from_secs(2);
/// Most rows one sweep announces (the rest go at the next round).
const SWEEP_BATCH: i64 = 1000;

/// The ends a statement of this node wrote whose announcements wait in the outbox: each job's
/// id and its end's event number (the rows' key).
#[derive(Debug, Default)]
pub(super) struct Unannounced {
    jobs: Vec<String>,
    seqs: Vec<i64>,
}

impl Unannounced {
    /// The announcements of `ended`, jobs that a statement ending runs just ended.
    pub(super) fn of(ended: &[Job]) -> Unannounced {
        let jobs = ended.iter().map(|job| job.id.as_str().to_owned()).collect();
        let seqs = ended.iter().map(|job| i64::try_from(job.event_seq).unwrap_or(i64::MAX)).collect();
        Unannounced { jobs, seqs }
    }

    /// Adds the announcements of `other`.
    pub(super) fn add(&mut self, other: Unannounced) {
        self.jobs.extend(other.jobs);
        self.seqs.extend(other.seqs);
    }
}

impl PgStore {
    /// Announces on `conn`, to the other nodes, the ends `told` whose statement committed
    /// ([`ANNOUNCE_ENDS`]). A failure is logged and returned for the connection's release; the
    /// ends stand and their rows stay, for the sweep of some node ([`SWEEP_AGE`]).
    pub(super) async fn announce_ends(&self, conn: &mut PgConnection, told: &Unannounced) -> Result<(), StoreError> {
        if told.jobs.is_empty() {
            return Ok(());
        }
        #[cfg(feature = "fault-points")]
        if self.faults.stop_before_announcing.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let sent = sqlx::query(ANNOUNCE_ENDS).bind(CHANNEL).bind(&told.jobs).bind(&told.seqs).execute(conn).await;
        sent.map(drop).map_err(|e| {
            tracing::warn!(error = %e, ends = told.jobs.len(), "announcing ends of runs failed; the sweep will");
            db(e)
        })
    }
}

/// Gives `conn` back after a call that ended with `result` and then announced what it did
/// (`told`): a failed announcement may have broken the connection even when the call went well.
pub(super) fn release_after<T>(conn: Conn<'_>, result: &Result<T, StoreError>, told: &Result<(), StoreError>) {
    match (result, told) {
        (Ok(_), Err(_)) => conn.release(told),
        _ => conn.release(result),
    }
}

/// Announces and deletes the outbox rows older than [`SWEEP_AGE`] that no other node is sending
/// ([`SWEEP_ANNOUNCEMENTS`]): the number announced.
///
/// # Errors
/// The statement failed (the rows stay for the next round).
pub(super) async fn sweep(pool: &PgPool) -> Result<usize, StoreError> {
    let sent: Vec<String> = sqlx::query_scalar(SWEEP_ANNOUNCEMENTS)
        .bind(CHANNEL)
        .bind(SWEEP_AGE.as_secs_f64())
        .bind(SWEEP_BATCH)
        .fetch_all(pool)
        .await
        .map_err(db)?;
    Ok(sent.len())
}

/// Test-only faults of a store (feature `fault-points`).
#[cfg(feature = "fault-points")]
#[derive(Debug, Default)]
pub(super) struct Faults {
    /// The store stops before announcing the ends its statements commit, as a node that dies
    /// right after their commit.
    pub(super) stop_before_announcing: std::sync::atomic::AtomicBool,
}

#[cfg(feature = "fault-points")]
impl PgStore {
    /// Test-only (feature `fault-points`): from now on this store announces none of the ends
    /// it commits, as a node that dies between each end's commit and its announcement; their
    /// rows stay in the outbox for the other nodes' sweep.
    pub fn stop_before_announcing_ends(&self) {
        self.faults.stop_before_announcing.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

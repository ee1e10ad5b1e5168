//! `LISTEN/NOTIFY` between the nodes sharing a [`PgStore`](super::PgStore): the
//! [`ClusterSignal`]s of [`crate::cluster`].
//!
//! - **Status and cancel** notifications are sent by the database itself: a trigger on `jobs`
//!   (migration `0008_notify.sql`) notifies channel [`CHANNEL`] whenever a statement adds one to
//!   a job's `event_seq` (every status change) or asks to cancel a running job, with the node
//!   whose session made the change (each connection of a node sets `ffmpeg_worker.node`). They
//!   are delivered once the change commits, in commit order.
//! - **Progress** is sent by the node that runs the job ([`Cluster::announce`]), from a
//!   background task, at ffmpeg's rate (a snapshot is small: well under PostgreSQL's 8,000-byte
//!   payload limit, [`MAX_PAYLOAD`]); a newer snapshot of a job replaces one not yet sent.
//! - **Pings**: every [`PING_INTERVAL`] each node notifies the channel itself, so its listener
//!   hears something at least that often; one that hears nothing for [`SILENCE`] (a connection
//!   that died without closing) is replaced.
//!
//! One connection per node listens ([`sqlx::postgres::PgListener`], taken from the store's
//! pool and listening before [`PgStore::open`](super::PgStore::open) returns, so no change
//! committed after the store opened goes unheard). Notifications of this node's own changes
//! are dropped: its own service publishes and wakes for them. Others become signals: a job
//! queued or ended wakes the waiting workers ([`JobStore::wait_for_work`](crate::JobStore)),
//! the rest goes to [`JobStore::cluster_signals`](crate::JobStore::cluster_signals).
//!
//! When the listening connection is lost (the database restarted, the connection was
//! terminated), notifications sent meanwhile are gone: once a new connection listens again,
//! the node catches up from the store. The waiting workers are woken (they claim from the
//! store), a cancel asked meanwhile for a job this node runs is read back, and
//! [`ClusterSignal::Resync`] tells the service to read its watched jobs again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Held, lock, wake};
use crate::cluster::ClusterSignal;
use crate::events::{EventId, ProgressEvent};
use crate::model::{JobId, JobStatus, Progress};

/// The channel every node listens on and notifies.
pub const CHANNEL: &str = "ffmpeg_worker";
/// Longest payload sent, in bytes: PostgreSQL refuses 8,000 or more (its default build).
pub const MAX_PAYLOAD: usize = 7_999;
/// How often a node pings the channel.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// How long a listener may hear nothing (not even the pings) before its connection is
/// replaced.
pub const SILENCE: Duration = Duration::from_secs(16);
/// Signals held for a receiver that is behind; further behind, it gets `Lagged` (a resync).
const SIGNAL_CAPACITY: usize = 4096;
/// The setting each connection of a node sets to its node id; the trigger reads it.
pub(super) const NODE_SETTING: &str = "ffmpeg_worker.node";

/// A notification's payload (JSON, tagged by `k`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "lowercase")]
enum Payload {
    /// From the trigger: a status change.
    Status { node: Option<String>, job: String, seq: u64, status: String },
    /// From the trigger: a cancel asked for a running job.
    Cancel { node: Option<String>, job: String },
    /// From a node: a progress event of a job it runs.
    Progress { node: String, job: String, id: String, progress: Progress },
    /// From a node: it is alive, and so is its listener if it hears this.
    Ping { node: String },
}

/// A node's side of the channel: the signals heard, and the progress waiting to be sent.
#[derive(Debug)]
pub(super) struct Cluster {
    node: String,
    signals: broadcast::Sender<ClusterSignal>,
    /// Per job, the latest progress payload not yet sent.
    outgoing: Mutex<HashMap<JobId, String>>,
    /// Wakes the sending task.
    send: Notify,
}

impl Cluster {
    /// A receiver of the signals heard from now on.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<ClusterSignal> {
        self.signals.subscribe()
    }

    /// Queues `event` for the other nodes (replacing an older snapshot of the job not yet sent).
    pub(super) fn announce(&self, event: &ProgressEvent) {
        let payload = Payload::Progress {
            node: self.node.clone(),
            job: event.job.as_str().to_owned(),
            id: event.id.to_string(),
            progress: (*event.progress).clone(),
        };
        let Ok(text) = serde_json::to_string(&payload) else { return };
        if text.len() > MAX_PAYLOAD {
            // Cannot happen with today's `Progress` (a dozen numbers); the store still gets it.
            tracing::debug!(job = %event.job, bytes = text.len(), "a progress snapshot too large to notify");
            return;
        }
        self.outgoing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(event.job.clone(), text);
        self.send.notify_one();
    }
}

/// What the listening task needs of the store.
struct Listening {
    pool: PgPool,
    cluster: Arc<Cluster>,
    /// The store's wake-up of waiting workers.
    work: Arc<Notify>,
    held: Arc<Mutex<HashMap<JobId, Held>>>,
    stop: CancellationToken,
}

/// Starts listening on [`CHANNEL`] with a connection of `pool` (listening when this returns),
/// and the tasks that turn notifications into signals and send this node's progress and pings,
/// until `stop`.
///
/// # Errors
/// No connection could be made, or `LISTEN` failed.
pub(super) async fn start(
    pool: &PgPool,
    node: &str,
    work: Arc<Notify>,
    held: Arc<Mutex<HashMap<JobId, Held>>>,
    stop: CancellationToken,
) -> Result<Arc<Cluster>, sqlx::Error> {
    let listener = connect(pool).await?;
    let cluster = Arc::new(Cluster {
        node: node.to_owned(),
        signals: broadcast::channel(SIGNAL_CAPACITY).0,
        outgoing: Mutex::default(),
        send: Notify::new(),
    });
    let listening = Listening { pool: pool.clone(), cluster: Arc::clone(&cluster), work, held, stop: stop.clone() };
    tokio::spawn(listening.run(listener));
    tokio::spawn(send(pool.clone(), Arc::clone(&cluster), stop));
    Ok(cluster)
}

/// A connection of `pool` listening on [`CHANNEL`].
async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

impl Listening {
    async fn run(self, mut listener: PgListener) {
        let mut heard = Instant::now();
        loop {
            let received = tokio::select! {
                biased;
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep_until(heard + SILENCE) => Err(None),
                received = listener.try_recv() => received.map_err(Some),
            };
            match received {
                Ok(Some(notification)) => {
                    heard = Instant::now();
                    self.handle(notification.payload());
                }
                // The connection was lost; sqlx made a new one, listening again.
                Ok(None) => {
                    tracing::warn!("the NOTIFY listener's connection was lost and made again; catching up");
                    heard = Instant::now();
                    self.resync().await;
                }
                Err(error) => {
                    if self.stop.is_cancelled() || self.pool.is_closed() {
                        return;
                    }
                    match error {
                        Some(e) => tracing::warn!(error = %e, "the NOTIFY listener failed; reconnecting"),
                        None => tracing::warn!(silence = ?SILENCE, "the NOTIFY listener heard nothing; reconnecting"),
                    }
                    drop(listener);
                    listener = match self.reconnect().await {
                        Some(listener) => listener,
                        None => return,
                    };
                    heard = Instant::now();
                    self.resync().await;
                }
            }
        }
    }

    /// A new listening connection, retried with backoff; `None` once stopped.
    async fn reconnect(&self) -> Option<PgListener> {
        let mut wait = Duration::from_millis(100);
        loop {
            match connect(&self.pool).await {
                Ok(listener) => {
                    tracing::info!("the NOTIFY listener listens again");
                    return Some(listener);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis(), "reconnecting the NOTIFY listener failed");
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Acts on one notification (a payload it cannot read is ignored: another version's).
    fn handle(&self, payload: &str) {
        let payload = match serde_json::from_str::<Payload>(payload) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::debug!(error = %e, payload, "ignored a notification");
                return;
            }
        };
        let own = |node: Option<&str>| node == Some(self.cluster.node.as_str());
        let signal = match payload {
            Payload::Status { node, job, seq, status } => {
                let (Ok(job), Ok(status)) = (JobId::parse(&job), status.parse::<JobStatus>()) else { return };
                if own(node.as_deref()) {
                    return;
                }
                // New work, or a job that may have held others back ended.
                if status == JobStatus::Queued || status.is_finished() {
                    wake(&self.work);
                }
                ClusterSignal::Status { job, seq, status }
            }
            Payload::Cancel { node, job } => {
                let Ok(job) = JobId::parse(&job) else { return };
                if own(node.as_deref()) {
                    return;
                }
                ClusterSignal::Cancel { job }
            }
            Payload::Progress { node, job, id, progress } => {
                let (Ok(job), Ok(id)) = (JobId::parse(&job), id.parse::<EventId>()) else { return };
                if own(Some(&node)) {
                    return;
                }
                ClusterSignal::Progress(ProgressEvent { job, id, progress: Arc::new(progress) })
            }
            Payload::Ping { .. } => return,
        };
        // No receiver: nobody here needs it.
        let _ = self.cluster.signals.send(signal);
    }

    /// After notifications may have been missed: wakes the waiting workers, reads back the
    /// cancels asked for jobs this node runs, and tells the service to read again.
    async fn resync(&self) {
        wake(&self.work);
        let ids: Vec<String> = lock(&self.held).keys().map(|id| id.as_str().to_owned()).collect();
        if !ids.is_empty() {
            let cancelled: Result<Vec<String>, _> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE id = ANY($1) AND status = 'running' AND cancel_requested",
            )
            .bind(&ids)
            .fetch_all(&self.pool)
            .await;
            match cancelled {
                Ok(cancelled) => {
                    for job in cancelled.iter().filter_map(|id| JobId::parse(id).ok()) {
                        let _ = self.cluster.signals.send(ClusterSignal::Cancel { job });
                    }
                }
                // The next progress write reads the cancel too (`update_progress`).
                Err(e) => tracing::warn!(error = %e, "reading back cancels after a reconnect failed"),
            }
        }
        let _ = self.cluster.signals.send(ClusterSignal::Resync);
    }
}

/// Sends the queued progress payloads (all pending ones in one statement) and a ping every
/// [`PING_INTERVAL`], until `stop`. A failed send is dropped: progress is transient, and the
/// store keeps a snapshot a second.
async fn send(pool: PgPool, cluster: Arc<Cluster>, stop: CancellationToken) {
    let ping = serde_json::to_string(&Payload::Ping { node: cluster.node.clone() }).unwrap_or_default();
    let mut pings = tokio::time::interval(PING_INTERVAL);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            () = stop.cancelled() => return,
            () = cluster.send.notified() => {}
            _ = pings.tick() => batch.push(ping.clone()),
        }
        let outgoing = std::mem::take(&mut *cluster.outgoing.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        batch.extend(outgoing.into_values());
        if batch.is_empty() {
            continue;
        }
        let sent = sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
            .bind(CHANNEL)
            .bind(&batch)
            .execute(&pool)
            .await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, notifications = batch.len(), "notifying the other nodes failed");
        }
    }
}

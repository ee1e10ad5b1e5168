//! `LISTEN/NOTIFY` between the nodes sharing a [`PgStore`](super::PgStore): the
//! [`ClusterSignal`]s of [`crate::cluster`].
//!
//! - **Status and cancel** notifications are sent by the database itself: a trigger on `jobs`
//!   (migration `0008_notify.sql`) notifies channel [`CHANNEL`] whenever a statement adds one to
//!   a job's `event_seq` (every status change) or asks to cancel a running job, with the node
//!   whose session made the change (each connection of a node sets `ffmpeg_worker.node`). They
//!   are delivered once the change commits, in commit order. A job's start (`running`) is
//!   announced only while some other node's streams watch anything
//!   ([`Cluster::starts_watched_elsewhere`]; migration `0011_quiet_starts.sql`): queued and
//!   ended jobs are always announced (they wake the other nodes' idle workers).
//! - **Progress** is sent by the node that runs the job ([`Cluster::announce`]), from a
//!   background task, at ffmpeg's rate (a snapshot is small: well under PostgreSQL's 8,000-byte
//!   payload limit, [`MAX_PAYLOAD`]); a newer snapshot of a job replaces one not yet sent. Only
//!   the progress of a job some other node watches is sent (an event stream of that job, or an
//!   all-jobs stream with progress): each node tells the others what its streams watch in its
//!   pings, and at once when it starts watching a job ([`Cluster::set_watched`]); a watch not
//!   repeated for [`SILENCE`] (its node is gone) lapses. A node whose listener (re)connects
//!   says `hello`, every other node answers with a ping at once, and until the answers are in
//!   ([`WATCH_CATCH_UP`]) it sends all its progress.
//! - **Pings**: every [`PING_INTERVAL`] each node notifies the channel itself, so its listener
//!   hears something at least that often; one that hears nothing for [`SILENCE`] (a connection
//!   that died without closing) is replaced.
//!
//! One connection per node listens ([`sqlx::postgres::PgListener`], taken from the store's
//! pool and listening before [`PgStore::open`](super::PgStore::open) returns, so no change
//! committed after the store opened goes unheard). Notifications of this node's own changes
//! are dropped: its own service publishes and wakes for them, except the changes the store
//! makes on its own, the reaper's, which it signals to its service itself
//! ([`ClusterSignal::Changed`]). Others become signals: a job
//! queued or ended wakes the waiting workers ([`JobStore::wait_for_work`](crate::JobStore)),
//! the rest goes to [`JobStore::cluster_signals`](crate::JobStore::cluster_signals).
//!
//! When the listening connection is lost (the database restarted, the connection was
//! terminated), notifications sent meanwhile are gone: once a new connection listens again,
//! the node catches up from the store. The waiting workers are woken (they claim from the
//! store), a cancel asked meanwhile for a job this node runs is read back, and
//! [`ClusterSignal::Resync`] tells the service to read its watched jobs again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Held, lock, wake};
use crate::cluster::{ClusterSignal, Watched};
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
/// After this node's listener (re)connected, how long it sends every progress snapshot while
/// the other nodes answer its `hello` with what they watch.
pub const WATCH_CATCH_UP: Duration = Duration::from_secs(1);
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
    /// From a node: it is alive, and so is its listener if it hears this; and what its streams
    /// watch (absent, from a node that does not say: everything).
    Ping {
        node: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        watching: Option<Watching>,
    },
    /// From a node whose listener just (re)connected: the others answer with a ping at once.
    Hello { node: String },
}

/// What a node's streams watch, as its pings say.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Watching {
    /// Every job's progress.
    #[serde(default)]
    all: bool,
    /// Every job's status changes (an all-jobs stream is open; absent, from a node that does
    /// not say: yes).
    #[serde(default = "yes")]
    statuses: bool,
    /// These jobs' progress and status changes.
    #[serde(default)]
    jobs: Vec<String>,
}

fn yes() -> bool {
    true
}

/// What another node's streams watch, as its latest ping said, and when it was heard.
#[derive(Debug)]
struct Remote {
    /// The jobs whose progress it watches (`None`: every job's).
    jobs: Option<HashSet<JobId>>,
    /// Whether it watches every job's status changes.
    statuses: bool,
    heard: Instant,
}

impl Remote {
    /// Heard within [`SILENCE`].
    fn live(&self) -> bool {
        self.heard.elapsed() < SILENCE
    }
}

/// What the nodes of the cluster watch, as this node knows it.
#[derive(Debug, Default)]
struct Watches {
    /// This node's streams.
    local: Watched,
    /// A ping goes out at the next send round (this node started watching a job, or another
    /// node said hello).
    ping_now: bool,
    /// A hello goes out at the next send round (the listener just connected).
    hello_now: bool,
    /// Until then every progress snapshot is sent (the answers to the hello are on their way).
    catch_up_until: Option<Instant>,
    /// The other nodes: what each watches (`None`: everything), and when it said so.
    remote: HashMap<String, Remote>,
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
    /// What this node and the others watch.
    watches: Mutex<Watches>,
}

impl Cluster {
    /// A receiver of the signals heard from now on.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<ClusterSignal> {
        self.signals.subscribe()
    }

    /// Signals a status change that this node's store made on its own, outside any service
    /// call (the reaper): the trigger's notification names this node, so it is not heard
    /// back, and nothing else would publish it here (tester finding F10).
    pub(super) fn changed_here(&self, job: &crate::Job) {
        let _ = self.signals.send(ClusterSignal::Changed(Arc::new(job.clone())));
    }

    /// Queues `event` for the other nodes (replacing an older snapshot of the job not yet
    /// sent), when one of them watches its job.
    pub(super) fn announce(&self, event: &ProgressEvent) {
        if !self.watched_elsewhere(&event.job) {
            return;
        }
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

    fn watches(&self) -> std::sync::MutexGuard<'_, Watches> {
        self.watches.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether another node watches `job` (or this node is catching up on what they watch).
    fn watched_elsewhere(&self, job: &JobId) -> bool {
        let watches = self.watches();
        if watches.catch_up_until.is_some_and(|until| Instant::now() < until) {
            return true;
        }
        watches.remote.values().any(|r| r.live() && r.jobs.as_ref().is_none_or(|jobs| jobs.contains(job)))
    }

    /// Whether another node's streams may want to hear that a job started: one watches every
    /// job's statuses or any job at all (which job a claim takes is known only once it is
    /// made), or said nothing of what it watches, or this node is catching up on what they
    /// watch. When none does, this node's claims leave their jobs' start unannounced (migration
    /// `0011_quiet_starts.sql`): one notification a job instead of two. A stream opened on
    /// another node at the very moment a job starts here (before its ping arrives) is then not
    /// told of the start; that node rebuilds the `running` status from the job's progress or
    /// end ([`crate::cluster`], "Statuses passed between two reads").
    pub(super) fn starts_watched_elsewhere(&self) -> bool {
        let watches = self.watches();
        if watches.catch_up_until.is_some_and(|until| Instant::now() < until) {
            return true;
        }
        watches.remote.values().any(|r| r.live() && (r.statuses || r.jobs.as_ref().is_none_or(|jobs| !jobs.is_empty())))
    }

    /// Records what this node's streams watch now; when that grew, the others are told at once.
    pub(super) fn set_watched(&self, watched: &Watched) {
        let mut watches = self.watches();
        let grew = (watched.all && !watches.local.all)
            || (watched.every_status && !watches.local.every_status)
            || watched.jobs.iter().any(|j| !watches.local.jobs.contains(j));
        watches.local = watched.clone();
        if grew {
            watches.ping_now = true;
            drop(watches);
            self.send.notify_one();
        }
    }

    /// After the listener (re)connected: says hello and what this node watches at the next
    /// send round (the others may have let its watches lapse while it was cut off), and sends
    /// every progress snapshot until the answers are in.
    fn catch_up(&self) {
        let mut watches = self.watches();
        watches.hello_now = true;
        watches.ping_now = true;
        watches.catch_up_until = Some(Instant::now() + WATCH_CATCH_UP);
        drop(watches);
        self.send.notify_one();
    }

    /// This node's ping: what its streams watch (everything, when the list would not fit).
    fn ping(&self) -> String {
        let local = self.watches().local.clone();
        let jobs = local.jobs.iter().map(|j| j.as_str().to_owned()).collect();
        let watching = Watching { all: local.all, statuses: local.every_status, jobs };
        let ping = Payload::Ping { node: self.node.clone(), watching: Some(watching) };
        match serde_json::to_string(&ping) {
            Ok(text) if text.len() <= MAX_PAYLOAD => text,
            _ => {
                let watching = Some(Watching { all: true, statuses: true, jobs: Vec::new() });
                serde_json::to_string(&Payload::Ping { node: self.node.clone(), watching }).unwrap_or_default()
            }
        }
    }

    /// Records what node `node` watches, as its ping says (`None`: everything).
    fn heard_watching(&self, node: String, watching: Option<Watching>) {
        let (jobs, statuses) = match watching {
            Some(Watching { all: false, statuses, jobs }) => {
                (Some(jobs.iter().filter_map(|j| JobId::parse(j).ok()).collect()), statuses)
            }
            Some(Watching { statuses, .. }) => (None, statuses),
            None => (None, true),
        };
        let mut watches = self.watches();
        watches.remote.retain(|_, remote| remote.live());
        watches.remote.insert(node, Remote { jobs, statuses, heard: Instant::now() });
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
        watches: Mutex::default(),
    });
    cluster.catch_up();
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
            Payload::Ping { node, watching } => {
                if !own(Some(&node)) {
                    self.cluster.heard_watching(node, watching);
                }
                return;
            }
            Payload::Hello { node } => {
                if !own(Some(&node)) {
                    self.cluster.watches().ping_now = true;
                    self.cluster.send.notify_one();
                }
                return;
            }
        };
        // No receiver: nobody here needs it.
        let _ = self.cluster.signals.send(signal);
    }

    /// After notifications may have been missed: wakes the waiting workers, reads back the
    /// cancels asked for jobs this node runs, and tells the service to read again.
    async fn resync(&self) {
        wake(&self.work);
        self.cluster.catch_up();
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

/// Sends the queued progress payloads (all pending ones in one statement), a ping every
/// [`PING_INTERVAL`] and when one is due sooner, and a hello when one is due, until `stop`. A
/// failed send is dropped: progress is transient, and the store keeps a snapshot a second.
async fn send(pool: PgPool, cluster: Arc<Cluster>, stop: CancellationToken) {
    let hello = serde_json::to_string(&Payload::Hello { node: cluster.node.clone() }).unwrap_or_default();
    let mut pings = tokio::time::interval(PING_INTERVAL);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut batch = Vec::new();
        let mut ping = tokio::select! {
            () = stop.cancelled() => return,
            () = cluster.send.notified() => false,
            _ = pings.tick() => true,
        };
        {
            let mut watches = cluster.watches();
            ping |= std::mem::take(&mut watches.ping_now);
            if std::mem::take(&mut watches.hello_now) {
                batch.push(hello.clone());
            }
        }
        if ping {
            batch.push(cluster.ping());
        }
        let outgoing = std::mem::take(&mut *cluster.outgoing.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        batch.extend(outgoing.into_values());
        if batch.is_empty() {
            continue;
        }
        let sent = sqlx::query(super::sql::ANNOUNCE).bind(CHANNEL).bind(&batch).execute(&pool).await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, notifications = batch.len(), "notifying the other nodes failed");
        }
    }
}

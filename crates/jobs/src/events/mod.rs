//! The in-process event bus: status changes and live progress, pushed to whoever listens
//! (server-sent event streams, webhook delivery).
//!
//! A status change is first committed by the store (which adds one to the job's
//! [`Job::event_seq`] in the same write), then [`Jobs`](crate::Jobs) publishes the job here
//! ([`EventBus::publish_status`]). Live progress flows from the runner to the bus at ffmpeg's
//! rate ([`ProgressPublisher`]), while the store is written at most once a second per job
//! (the database is not a pub/sub bus).
//!
//! # Event ids
//!
//! Every event has an [`EventId`], written `S` for a status event (S = the job's
//! `event_seq` after the change, kept in the store) and `S.k` for the k-th progress event
//! (k = 1, 2, ...) of the run that status `S` started. Ids of one job only grow, and are never
//! reused across restarts: progress numbers live in memory only, but a restart always changes
//! the status of a job that was running (recovery), so its next run has a new `S`.
//!
//! # Slow subscribers
//!
//! Each job has a bounded broadcast channel ([`EventBus::JOB_CAPACITY`] events) and a `watch`
//! of its latest state. A subscriber that falls further behind than the channel holds skips to
//! the latest state (the current status and the latest progress) instead of a backlog:
//! publishing never waits for a subscriber, and memory does not grow with a slow one.
//! Per-job channels exist only while someone subscribes or a run of the job in this process
//! publishes progress; jobs nobody watches cost nothing here.
//!
//! # One event, many subscribers
//!
//! Every subscriber of an event receives the same [`Published`] (a shared pointer): a thousand
//! streams of one job cost one copy of the event, and [`Published::encoded`] lets the first
//! subscriber that turns it into bytes (the server's `text/event-stream` form) do so for all
//! of them.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::{broadcast, watch};

use crate::model::{Job, JobId, JobStatus, Progress};

mod streams;

pub use streams::{AllEvents, AllFilter, AllItem, Doorbell, JobEvents, Resume, TryNext};

/// The id of an event of one job: `status` is the job's [`Job::event_seq`] when the event was
/// published, `progress` 0 for a status event and k >= 1 for the k-th progress event of the
/// run that status started. Ordered by `(status, progress)`; written `S` or `S.k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId {
    /// The job's event sequence.
    pub status: u64,
    /// 0 for a status event; k for the k-th progress event since that status.
    pub progress: u64,
}

impl EventId {
    /// The id of the status event that `job` is.
    pub fn of_status(job: &Job) -> EventId {
        EventId { status: job.event_seq, progress: 0 }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.progress == 0 { write!(f, "{}", self.status) } else { write!(f, "{}.{}", self.status, self.progress) }
    }
}

/// The text is not an event id (`S` or `S.k`, decimal digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an event id (expected `N` or `N.K`, decimal)")]
pub struct InvalidEventId(pub String);

impl FromStr for EventId {
    type Err = InvalidEventId;

    fn from_str(s: &str) -> Result<EventId, InvalidEventId> {
        let invalid = || InvalidEventId(s.to_owned());
        let number = |t: &str| {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            t.parse::<u64>().map_err(|_| invalid())
        };
        match s.split_once('.') {
            None => Ok(EventId { status: number(s)?, progress: 0 }),
            Some((status, progress)) => {
                let progress = number(progress)?;
                if progress == 0 {
                    return Err(invalid());
                }
                Ok(EventId { status: number(status)?, progress })
            }
        }
    }
}

/// A progress event: the latest snapshot of a running job.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressEvent {
    /// The job.
    pub job: JobId,
    /// The event's id (`S.k`).
    pub id: EventId,
    /// The snapshot.
    pub progress: Arc<Progress>,
}

/// One event on the bus.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The job changed status (the whole job after the change).
    Status(Arc<Job>),
    /// A running job reported progress.
    Progress(ProgressEvent),
}

impl Event {
    /// The event's id.
    pub fn id(&self) -> EventId {
        match self {
            Event::Status(job) => EventId::of_status(job),
            Event::Progress(p) => p.id,
        }
    }

    /// The job it is about.
    pub fn job_id(&self) -> &JobId {
        match self {
            Event::Status(job) => &job.id,
            Event::Progress(p) => &p.job,
        }
    }

    /// Whether this is a status event with a final status (no event of the job follows).
    pub fn is_final(&self) -> bool {
        matches!(self, Event::Status(job) if job.status.is_finished())
    }
}

/// An event as the bus hands it out: one shared copy for every subscriber, with room for one
/// encoding of it ([`Published::encoded`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Published(Arc<PublishedInner>);

#[derive(Debug)]
struct PublishedInner {
    event: Event,
    encoded: OnceLock<Bytes>,
}

impl Published {
    /// Wraps `event` (not encoded yet).
    pub fn new(event: Event) -> Published {
        Published(Arc::new(PublishedInner { event, encoded: OnceLock::new() }))
    }

    /// The event.
    pub fn event(&self) -> &Event {
        &self.0.event
    }

    /// The event's bytes as `encode` makes them, computed by the first caller only: every
    /// subscriber that passes the same `encode` gets the same bytes (a shared buffer) without
    /// encoding the event again. One encoding per event: callers must all encode alike.
    pub fn encoded(&self, encode: impl FnOnce(&Event) -> Bytes) -> Bytes {
        self.0.encoded.get_or_init(|| encode(&self.0.event)).clone()
    }
}

/// The latest known state of one job on the bus.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latest {
    /// The latest status event published while the job's channel existed.
    pub status: Option<Arc<Job>>,
    /// The latest progress event of the current run (cleared by a newer status).
    pub progress: Option<ProgressEvent>,
}

/// The bus (see the [module docs](self)). Cheap to clone; clones share the bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    channels: Mutex<HashMap<JobId, Channel>>,
    all: broadcast::Sender<Published>,
    /// How many times events may have been missed ([`EventBus::mark_gap`]).
    gaps: watch::Sender<u64>,
    /// All-jobs streams open, and those among them that pass progress on
    /// ([`AllFilter::progress`]).
    all_streams: Mutex<AllStreams>,
    /// The latest status sent to the all-jobs channel of recently changed jobs, so that a
    /// status reaching the bus twice (the change made here, and the same change heard back
    /// from the store, [`crate::cluster`]) is sent once, and never after a newer one.
    recent: Mutex<Recent>,
    /// Counts the changes of what this bus's subscribers watch ([`EventBus::watched`]).
    watching: watch::Sender<u64>,
}

/// Counts of open all-jobs streams ([`AllEvents`]).
#[derive(Debug, Default, Clone, Copy)]
struct AllStreams {
    all: usize,
    progress: usize,
}

/// The latest status event seq sent to the all-jobs channel, per job, for the last
/// [`Recent::CAPACITY`] jobs whose status was published (oldest forgotten first).
#[derive(Debug, Default)]
struct Recent {
    seqs: HashMap<JobId, u64>,
    order: VecDeque<JobId>,
}

impl Recent {
    /// As many jobs as the all-jobs channel holds events: a job forgotten here had its
    /// status sent longer ago than any subscriber can lag.
    const CAPACITY: usize = EventBus::ALL_CAPACITY;

    /// Whether status `seq` of `job` is newer than the latest one sent; if so it is noted as
    /// sent.
    fn newer(&mut self, job: &JobId, seq: u64) -> bool {
        if let Some(latest) = self.seqs.get_mut(job) {
            if *latest >= seq {
                return false;
            }
            *latest = seq;
            return true;
        }
        if self.order.len() >= Self::CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.seqs.remove(&oldest);
        }
        self.seqs.insert(job.clone(), seq);
        self.order.push_back(job.clone());
        true
    }
}

#[derive(Debug)]
struct Channel {
    latest: watch::Sender<Latest>,
    events: broadcast::Sender<Published>,
    /// Subscriptions and publishers holding the channel; removed at 0.
    users: usize,
    /// Subscriptions among them (someone watches the job).
    subscribers: usize,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    /// Events a job's channel holds for a subscriber that is behind; further behind, it skips
    /// to the latest state.
    pub const JOB_CAPACITY: usize = 64;
    /// Events the all-jobs channel ([`EventBus::subscribe_all`]) holds for a subscriber that is
    /// behind; further behind, it is told how many it missed ([`AllEvents::next`]).
    pub const ALL_CAPACITY: usize = 4096;

    /// An empty bus.
    pub fn new() -> EventBus {
        let (all, _) = broadcast::channel(Self::ALL_CAPACITY);
        let (gaps, watching) = (watch::Sender::new(0), watch::Sender::new(0));
        let channels = Mutex::new(HashMap::new());
        let (all_streams, recent) = (Mutex::default(), Mutex::default());
        EventBus { inner: Arc::new(Inner { channels, all, gaps, all_streams, recent, watching }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Channel>> {
        // Each method leaves the map consistent between statements: recover the guard.
        self.inner.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes a status change that the store has committed. An event older than (or as
    /// old as) the job's latest known status is dropped, so racing publishers never move a
    /// subscriber's view backwards, and a change published twice (made here, then heard back
    /// from a store shared with other processes) reaches each subscriber once. Never waits.
    pub fn publish_status(&self, job: &Job) {
        let mut channels = self.lock();
        let job = Arc::new(job.clone());
        let event = Published::new(Event::Status(Arc::clone(&job)));
        if let Some(channel) = channels.get_mut(&job.id) {
            let newer = channel.latest.borrow().status.as_ref().is_none_or(|s| s.event_seq < job.event_seq);
            if !newer {
                return;
            }
            channel.latest.send_modify(|latest| {
                if latest.progress.as_ref().is_some_and(|p| p.id.status != job.event_seq) {
                    latest.progress = None;
                }
                latest.status = Some(Arc::clone(&job));
            });
            let _ = channel.events.send(event.clone());
        }
        let newer =
            self.inner.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).newer(&job.id, job.event_seq);
        // Sent under the lock: every subscriber sees one job's events in publishing order.
        if newer {
            let _ = self.inner.all.send(event);
        }
    }

    /// Records `job` (as read from the store) as the latest status of its channel, if it has
    /// one and knows none as new, without sending it: a stream that started from the store
    /// (the bus had no channel when the job last changed) leaves what it showed, so that a
    /// status change of another node whose notification never came (a start left
    /// unannounced, see [`crate::cluster`]) is rebuilt from there when a later one comes.
    pub fn note_status(&self, job: &Job) {
        if let Some(channel) = self.lock().get_mut(&job.id)
            && channel.latest.borrow().status.as_ref().is_none_or(|s| s.event_seq < job.event_seq)
        {
            channel.latest.send_modify(|latest| latest.status = Some(Arc::new(job.clone())));
        }
    }

    /// A publisher of the progress of `job`'s current run (`job` as its claim returned it):
    /// keeps the job's channel, numbers its events `S.1`, `S.2`, ... Drop it when the run ends.
    pub fn publisher(&self, job: &Job) -> ProgressPublisher {
        self.acquire(&job.id, false);
        ProgressPublisher { bus: self.clone(), job: job.id.clone(), status: job.event_seq, count: 0 }
    }

    /// Subscribes to one job's events. Subscribe *before* reading the job from the store:
    /// then every change committed after that read reaches the subscription.
    pub fn subscribe(&self, id: &JobId) -> JobSubscription {
        let (latest, events) = self.acquire(id, true);
        JobSubscription { bus: self.clone(), job: id.clone(), latest, events }
    }

    /// Subscribes to every job's events (status changes and progress, in publishing order).
    pub fn subscribe_all(&self) -> broadcast::Receiver<Published> {
        self.inner.all.subscribe()
    }

    /// The latest state of every job the bus holds a channel for (jobs running in this process
    /// and jobs someone watches).
    pub fn latest_all(&self) -> Vec<Latest> {
        self.lock().values().map(|c| c.latest.borrow().clone()).collect()
    }

    /// Number of per-job channels (jobs running here or watched), for tests and metrics.
    pub fn channels(&self) -> usize {
        self.lock().len()
    }

    /// Publishes a progress event of a job that another node runs (numbered there), to the
    /// job's subscribers and the all-jobs stream here. Never waits.
    pub fn publish_progress(&self, event: &ProgressEvent) {
        self.send_progress(event);
    }

    /// Sends a progress event to the job's channel (if it has one) and the all-jobs channel,
    /// unless a newer status of the job is known (the run was cancelled or re-queued
    /// meanwhile, and the event is stale).
    fn send_progress(&self, event: &ProgressEvent) {
        let mut channels = self.lock();
        let published = Published::new(Event::Progress(event.clone()));
        if let Some(channel) = channels.get_mut(&event.job) {
            if channel.latest.borrow().status.as_ref().is_some_and(|s| s.event_seq > event.id.status) {
                return;
            }
            channel.latest.send_modify(|latest| latest.progress = Some(event.clone()));
            let _ = channel.events.send(published.clone());
        }
        let _ = self.inner.all.send(published);
    }

    /// The [`Job::event_seq`] of the latest status of job `id` published here, while the job
    /// has a channel (someone subscribes, or it runs here).
    pub fn latest_seq(&self, id: &JobId) -> Option<u64> {
        self.latest_status(id).map(|(seq, _)| seq)
    }

    /// The [`Job::event_seq`] and status of the latest status of job `id` published here, while
    /// the job has a channel (as [`EventBus::latest_seq`]).
    pub fn latest_status(&self, id: &JobId) -> Option<(u64, JobStatus)> {
        self.lock().get(id).and_then(|c| c.latest.borrow().status.as_ref().map(|s| (s.event_seq, s.status)))
    }

    /// Whether anyone here would receive an event of job `id`: it has a channel, or someone
    /// subscribes to every job's events.
    pub fn is_watched(&self, id: &JobId) -> bool {
        self.inner.all.receiver_count() > 0 || self.lock().contains_key(id)
    }

    /// Tells every all-jobs stream that events may be missing from the bus (this node lost
    /// touch with the other nodes of its cluster for a while): each yields
    /// [`AllItem::Missed`]. One job's streams need no such notice: their jobs are read again
    /// from the store and published (see [`crate::cluster`]).
    pub fn mark_gap(&self) {
        self.inner.gaps.send_modify(|gaps| *gaps += 1);
    }

    /// The jobs that have a channel (subscribed to, or running here).
    pub fn watched_jobs(&self) -> Vec<JobId> {
        self.lock().keys().cloned().collect()
    }

    /// What this bus's subscribers watch: the jobs someone subscribes to, and whether an
    /// all-jobs stream passes every job's progress on. In a cluster the other nodes send the
    /// live progress of a job only to nodes that watch it
    /// ([`JobStore::set_watched`](crate::JobStore::set_watched)).
    pub fn watched(&self) -> crate::cluster::Watched {
        let mut jobs: Vec<JobId> =
            self.lock().iter().filter(|(_, c)| c.subscribers > 0).map(|(id, _)| id.clone()).collect();
        jobs.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        let streams = *self.inner.all_streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        crate::cluster::Watched { all: streams.progress > 0, every_status: streams.all > 0, jobs }
    }

    /// Changes each time [`EventBus::watched`] may have changed (a job's first subscriber came
    /// or its last one left; the first all-jobs stream, or all-jobs progress stream, came or
    /// the last one left).
    pub fn watched_changes(&self) -> watch::Receiver<u64> {
        self.inner.watching.subscribe()
    }

    fn watched_changed(&self) {
        self.inner.watching.send_modify(|n| *n += 1);
    }

    fn acquire(&self, id: &JobId, subscriber: bool) -> (watch::Receiver<Latest>, broadcast::Receiver<Published>) {
        let mut channels = self.lock();
        let channel = channels.entry(id.clone()).or_insert_with(|| Channel {
            latest: watch::Sender::new(Latest::default()),
            events: broadcast::Sender::new(Self::JOB_CAPACITY),
            users: 0,
            subscribers: 0,
        });
        channel.users += 1;
        channel.subscribers += usize::from(subscriber);
        let first = subscriber && channel.subscribers == 1;
        let receivers = (channel.latest.subscribe(), channel.events.subscribe());
        drop(channels);
        if first {
            self.watched_changed();
        }
        receivers
    }

    fn release(&self, id: &JobId, subscriber: bool) {
        let mut channels = self.lock();
        let mut last = false;
        if let Some(channel) = channels.get_mut(id) {
            channel.users -= 1;
            channel.subscribers -= usize::from(subscriber);
            last = subscriber && channel.subscribers == 0;
            if channel.users == 0 {
                channels.remove(id);
            }
        }
        drop(channels);
        if last {
            self.watched_changed();
        }
    }

    /// Counts an all-jobs stream that opens (`starts`) or ends, and whether it passes progress
    /// on.
    fn all_stream(&self, starts: bool, progress: bool) {
        let mut count = self.inner.all_streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = *count;
        let step = |n: usize| if starts { n + 1 } else { n.saturating_sub(1) };
        count.all = step(count.all);
        if progress {
            count.progress = step(count.progress);
        }
        let changed = (before.all == 0) != (count.all == 0) || (before.progress == 0) != (count.progress == 0);
        drop(count);
        if changed {
            self.watched_changed();
        }
    }
}

/// Publishes one run's progress ([`EventBus::publisher`]).
#[derive(Debug)]
pub struct ProgressPublisher {
    bus: EventBus,
    job: JobId,
    status: u64,
    count: u64,
}

impl ProgressPublisher {
    /// Publishes the next progress snapshot of the run, and returns it as the event it
    /// became (for [`JobStore::announce_progress`](crate::JobStore::announce_progress)). Never
    /// waits.
    pub fn publish(&mut self, progress: Progress) -> ProgressEvent {
        self.count += 1;
        let event = ProgressEvent {
            job: self.job.clone(),
            id: EventId { status: self.status, progress: self.count },
            progress: Arc::new(progress),
        };
        self.bus.send_progress(&event);
        event
    }
}

impl Drop for ProgressPublisher {
    fn drop(&mut self) {
        self.bus.release(&self.job, false);
    }
}

/// A subscription to one job's events ([`EventBus::subscribe`]); most callers use
/// [`JobEvents`], which adds the store's view and resumption.
#[derive(Debug)]
pub struct JobSubscription {
    bus: EventBus,
    job: JobId,
    latest: watch::Receiver<Latest>,
    events: broadcast::Receiver<Published>,
}

impl JobSubscription {
    /// The latest state the bus knows of the job.
    pub fn latest(&self) -> Latest {
        self.latest.borrow().clone()
    }
}

impl Drop for JobSubscription {
    fn drop(&mut self) {
        self.bus.release(&self.job, true);
    }
}

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

/// What a job's event stream starts with, given the id of the last event a client saw.
#[derive(Debug)]
pub enum Resume {
    /// The client saw the job's final event: nothing follows (HTTP: 204).
    Finished,
    /// The stream: first the current status and latest progress, then live events, ending
    /// after the final status.
    Events(JobEvents),
}

/// One job's events for a client ([`crate::Jobs::events_of`]): the current status, the latest
/// progress, then every newer event; it ends after the final status. A client too slow for
/// the channel skips to the latest state.
#[derive(Debug)]
pub struct JobEvents {
    subscription: JobSubscription,
    pending: VecDeque<Published>,
    /// The newest event handed out.
    last: EventId,
    done: bool,
}

impl JobEvents {
    /// Starts from `stored` (the job as read from the store after `subscription` was taken).
    pub fn start(subscription: JobSubscription, stored: Job) -> JobEvents {
        let mut events = JobEvents { subscription, pending: VecDeque::new(), last: EventId::default(), done: false };
        // The store may be behind the bus (a change published between our read and now) or
        // ahead of it (the bus had no channel for the job when it changed): take the newer.
        let latest = events.subscription.latest();
        let status = match latest.status {
            Some(bus) if bus.event_seq > stored.event_seq => bus,
            _ => {
                events.subscription.bus.note_status(&stored);
                Arc::new(stored)
            }
        };
        let progress = latest.progress.filter(|p| p.id.status == status.event_seq && !status.status.is_finished());
        events.pending.push_back(Published::new(Event::Status(status)));
        events.pending.extend(progress.map(|p| Published::new(Event::Progress(p))));
        events
    }

    /// The next event; `None` once the final status was handed out.
    pub async fn next(&mut self) -> Option<Event> {
        self.next_published().await.map(|published| published.event().clone())
    }

    /// [`JobEvents::next`] as the bus shares it with the job's other subscribers.
    pub async fn next_published(&mut self) -> Option<Published> {
        loop {
            match self.try_next_published() {
                TryNext::Event(event) => return Some(event),
                TryNext::Ended => return None,
                TryNext::Empty => {}
            }
            let received = match self.subscription.events.recv().await {
                Ok(event) => Ok(event),
                Err(broadcast::error::RecvError::Lagged(n)) => Err(broadcast::error::TryRecvError::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => Err(broadcast::error::TryRecvError::Closed),
            };
            if let Some(next) = self.received(received) {
                return next;
            }
        }
    }

    /// The next event if one is ready, without waiting: what [`JobEvents::next_published`]
    /// would return at once ([`TryNext::Empty`]: it would wait). For a writer that serves many
    /// streams from one task and learns of new events from a [`Doorbell`].
    pub fn try_next_published(&mut self) -> TryNext<Published> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if let Some(event) = self.accept(event) {
                    return TryNext::Event(event);
                }
                continue;
            }
            if self.done {
                return TryNext::Ended;
            }
            let received = self.subscription.events.try_recv();
            if matches!(received, Err(broadcast::error::TryRecvError::Empty)) {
                return TryNext::Empty;
            }
            if let Some(next) = self.received(received) {
                return next.map_or(TryNext::Ended, TryNext::Event);
            }
        }
    }

    /// Takes what the channel gave: `Some` answer for the caller, or `None` to look again (an
    /// event already handed out, or a lag, after which the latest state is pending).
    fn received(&mut self, received: Result<Published, broadcast::error::TryRecvError>) -> Option<Option<Published>> {
        match received {
            Ok(event) => self.accept(event).map(Some),
            Err(broadcast::error::TryRecvError::Lagged(_)) => {
                let latest = self.subscription.latest();
                self.pending.extend(latest.status.map(|s| Published::new(Event::Status(s))));
                self.pending.extend(latest.progress.map(|p| Published::new(Event::Progress(p))));
                None
            }
            // Empty is answered by the caller. The subscription keeps its channel (and so its
            // sender) alive: closed does not happen while it lives.
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => Some(None),
        }
    }

    /// A [`Doorbell`] that rings after each event published to this job's channel from now on.
    pub fn doorbell(&self) -> Doorbell {
        Doorbell { events: self.subscription.events.resubscribe(), gaps: None }
    }

    /// `event` if it is newer than what was handed out (and notes it), else `None`.
    fn accept(&mut self, published: Published) -> Option<Published> {
        let event = published.event();
        if self.done || event.id() <= self.last {
            return None;
        }
        self.last = event.id();
        self.done = event.is_final();
        Some(published)
    }
}

/// Which events [`AllEvents`] passes on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllFilter {
    /// Status events only of jobs entering one of these statuses; empty: every status.
    pub statuses: Vec<JobStatus>,
    /// Whether progress events are passed on too.
    pub progress: bool,
}

/// What [`AllEvents::next`] yields (and, with `E` = [`Published`],
/// [`AllEvents::next_published`]).
#[derive(Debug, Clone, PartialEq)]
pub enum AllItem<E = Event> {
    /// An event.
    Event(E),
    /// The subscriber fell behind and this many events were skipped (status changes among
    /// them are lost to this stream: re-read the jobs to catch up). The latest state of the
    /// jobs the bus holds follows.
    Skipped(u64),
    /// An unknown number of events may be missing: this node lost touch with the other nodes
    /// of its cluster for a while ([`EventBus::mark_gap`]). Re-read the jobs to catch up.
    Missed,
}

/// Every job's events, filtered ([`crate::Jobs::all_events`]).
#[derive(Debug)]
pub struct AllEvents {
    bus: EventBus,
    receiver: broadcast::Receiver<Published>,
    gaps: watch::Receiver<u64>,
    filter: AllFilter,
    pending: VecDeque<AllItem<Published>>,
}

impl AllEvents {
    /// Every event of `bus` from now on that passes `filter` ([`crate::Jobs::all_events`] is
    /// this on the service's bus).
    pub fn new(bus: &EventBus, filter: AllFilter) -> AllEvents {
        let gaps = bus.inner.gaps.subscribe();
        bus.all_stream(true, filter.progress);
        AllEvents { bus: bus.clone(), receiver: bus.subscribe_all(), gaps, filter, pending: VecDeque::new() }
    }

    fn passes(&self, event: &Event) -> bool {
        match event {
            Event::Status(job) => self.filter.statuses.is_empty() || self.filter.statuses.contains(&job.status),
            Event::Progress(_) => self.filter.progress,
        }
    }

    /// The next event that passes the filter; never ends while the bus lives.
    pub async fn next(&mut self) -> Option<AllItem> {
        self.next_published().await.map(|item| match item {
            AllItem::Event(published) => AllItem::Event(published.event().clone()),
            AllItem::Skipped(n) => AllItem::Skipped(n),
            AllItem::Missed => AllItem::Missed,
        })
    }

    /// [`AllEvents::next`] as the bus shares the events with every subscriber.
    pub async fn next_published(&mut self) -> Option<AllItem<Published>> {
        loop {
            match self.try_next_published() {
                TryNext::Event(item) => return Some(item),
                TryNext::Ended => return None,
                TryNext::Empty => {}
            }
            let received = tokio::select! {
                biased;
                Ok(()) = self.gaps.changed() => {
                    self.gaps.borrow_and_update();
                    return Some(AllItem::Missed);
                }
                received = self.receiver.recv() => received,
            };
            let received = match received {
                Ok(published) => Ok(published),
                Err(broadcast::error::RecvError::Lagged(n)) => Err(broadcast::error::TryRecvError::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => Err(broadcast::error::TryRecvError::Closed),
            };
            if let Some(item) = self.received(received) {
                return item;
            }
        }
    }

    /// The next item if one is ready, without waiting (as [`JobEvents::try_next_published`]).
    pub fn try_next_published(&mut self) -> TryNext<AllItem<Published>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return TryNext::Event(item);
            }
            // A gap first, as `next_published` takes it first.
            if self.gaps.has_changed().unwrap_or(false) {
                self.gaps.borrow_and_update();
                return TryNext::Event(AllItem::Missed);
            }
            let received = self.receiver.try_recv();
            if matches!(received, Err(broadcast::error::TryRecvError::Empty)) {
                return TryNext::Empty;
            }
            if let Some(item) = self.received(received) {
                return item.map_or(TryNext::Ended, TryNext::Event);
            }
        }
    }

    /// Takes what the channel gave: `Some` answer for the caller, or `None` to look again (an
    /// event the filter drops, or a lag, after which the notice and the latest state are
    /// pending).
    fn received(
        &mut self,
        received: Result<Published, broadcast::error::TryRecvError>,
    ) -> Option<Option<AllItem<Published>>> {
        match received {
            Ok(published) if self.passes(published.event()) => Some(Some(AllItem::Event(published))),
            Ok(_) => None,
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                self.pending.push_back(AllItem::Skipped(n));
                for latest in self.bus.latest_all() {
                    let events = latest.status.map(Event::Status).into_iter();
                    for event in events.chain(latest.progress.map(Event::Progress)) {
                        if self.passes(&event) {
                            self.pending.push_back(AllItem::Event(Published::new(event)));
                        }
                    }
                }
                None
            }
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => Some(None),
        }
    }

    /// A [`Doorbell`] that rings after each event on the bus from now on, and after each gap
    /// ([`EventBus::mark_gap`]).
    pub fn doorbell(&self) -> Doorbell {
        Doorbell { events: self.receiver.resubscribe(), gaps: Some(self.gaps.clone()) }
    }
}

/// What a non-waiting read of a stream found ([`JobEvents::try_next_published`],
/// [`AllEvents::try_next_published`]).
#[derive(Debug, Clone, PartialEq)]
pub enum TryNext<T> {
    /// The next item.
    Event(T),
    /// Nothing now: the stream's [`Doorbell`] rings when something may have come.
    Empty,
    /// The stream ended (after a job's final status).
    Ended,
}

/// Wakes a writer that serves many streams of the same events from one task: it rings after
/// each event published where those streams read, so the writer waits on one doorbell
/// instead of one wait per stream, then reads each stream with `try_next_published`. A ring
/// comes after the event is readable by every stream.
#[derive(Debug)]
pub struct Doorbell {
    events: broadcast::Receiver<Published>,
    gaps: Option<watch::Receiver<u64>>,
}

impl Doorbell {
    /// Waits for the next ring: `true` once events (or a gap) came since the last ring, every
    /// one of them taken; `false` when no more can come (the channel closed).
    pub async fn rung(&mut self) -> bool {
        let received = match &mut self.gaps {
            Some(gaps) => tokio::select! {
                Ok(()) = gaps.changed() => {
                    gaps.borrow_and_update();
                    return true;
                }
                received = self.events.recv() => received,
            },
            None => self.events.recv().await,
        };
        if matches!(received, Err(broadcast::error::RecvError::Closed)) {
            return false;
        }
        // One ring for every event that came meanwhile.
        while !matches!(
            self.events.try_recv(),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
        ) {}
        true
    }
}

impl Drop for AllEvents {
    fn drop(&mut self) {
        self.bus.all_stream(false, self.filter.progress);
    }
}

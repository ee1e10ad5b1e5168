//! The subscriber side of the bus: a job's event stream ([`JobEvents`], resumed by
//! [`Resume`]) and every job's ([`AllEvents`]), read waiting or not ([`TryNext`]), and the
//! [`Doorbell`] of a writer that serves many streams from one task.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::{Event, EventBus, EventId, JobSubscription, Published};
use crate::model::{Job, JobStatus};

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

//! The order in which this service's status events reach the [`EventBus`]: a job's statuses
//! in the order its transitions reached the service, however long each event takes to prepare.
//!
//! A status change is published after the store committed it and after the job's
//! `waiting_reason` was worked out ([`Jobs::status_changed`](super::Jobs::status_changed)),
//! which for a queued job reads the store (the node registry, what holds it back). A worker
//! may claim the job meanwhile and publish `running` first; the bus then drops the late
//! `queued` as older than what it published (it never moves a subscriber backwards), and a
//! stream misses it. So each status event takes its place here as soon as its transition
//! returns ([`StatusOrder::reserve`]), and an event ready while an earlier one of its job is
//! still being prepared waits for it ([`Slot::publish`]). Publishing never waits: the event
//! that completes the order publishes those held behind it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::events::EventBus;
use crate::model::{Job, JobId};

/// The status events of this service being prepared, per job ([module docs](self)).
#[derive(Debug, Default)]
pub(super) struct StatusOrder(Mutex<HashMap<JobId, Pending>>);

/// One job's status events being prepared, and those ready behind them.
#[derive(Debug, Default)]
struct Pending {
    /// The `event_seq` of each reserved event neither published nor given up yet.
    reserved: Vec<u64>,
    /// Events ready, held until no earlier reserved one remains.
    ready: Vec<Job>,
}

/// The place of one status event in its job's order ([`StatusOrder::reserve`]). Dropped
/// without [`Slot::publish`] (its task was cancelled), it gives the place up: the events held
/// behind it go on.
#[derive(Debug)]
pub(super) struct Slot<'a> {
    order: &'a StatusOrder,
    bus: &'a EventBus,
    job: JobId,
    seq: u64,
    settled: bool,
}

impl StatusOrder {
    fn lock(&self) -> MutexGuard<'_, HashMap<JobId, Pending>> {
        // Each method leaves the map consistent between statements: recover the guard.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the place of `job`'s status event (its [`Job::event_seq`]), to be published on
    /// `bus` through the slot. Call it right after the transition returned, before any await.
    pub(super) fn reserve<'a>(&'a self, bus: &'a EventBus, job: &Job) -> Slot<'a> {
        self.lock().entry(job.id.clone()).or_default().reserved.push(job.event_seq);
        Slot { order: self, bus, job: job.id.clone(), seq: job.event_seq, settled: false }
    }

    /// Ends the reservation `seq` of job `id` (with its event `ready`, or given up), then
    /// publishes on `bus`, in `event_seq` order, every ready event of the job that no earlier
    /// reserved one precedes (under the lock: two settlements never interleave their events).
    fn settle(&self, bus: &EventBus, id: &JobId, seq: u64, ready: Option<&Job>) {
        let mut jobs = self.lock();
        let pending = jobs.entry(id.clone()).or_default();
        if let Some(i) = pending.reserved.iter().position(|&s| s == seq) {
            pending.reserved.swap_remove(i);
        }
        pending.ready.extend(ready.cloned());
        pending.ready.sort_by_key(|job| job.event_seq);
        let first_reserved = pending.reserved.iter().min().copied();
        // An event as new as a reserved one may go: that one is the same change, published
        // twice (made here, then heard back from the store), and the bus sends it once.
        let go = pending.ready.iter().take_while(|job| first_reserved.is_none_or(|r| job.event_seq <= r)).count();
        for job in pending.ready.drain(..go) {
            bus.publish_status(&job);
        }
        if pending.reserved.is_empty() && pending.ready.is_empty() {
            jobs.remove(id);
        }
    }
}

impl Slot<'_> {
    /// Publishes `job` (the job of the reservation, its `waiting_reason` filled in) once every
    /// earlier status event of the job reserved before it is published or given up; at once
    /// when there is none. Never waits: an event held back is published by the settlement of
    /// the last event before it.
    pub(super) fn publish(mut self, job: &Job) {
        self.settled = true;
        self.order.settle(self.bus, &self.job, self.seq, Some(job));
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.order.settle(self.bus, &self.job, self.seq, None);
        }
    }
}

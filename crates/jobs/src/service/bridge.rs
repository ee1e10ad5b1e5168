//! The cluster bridge: what [`Jobs`] does with the [`ClusterSignal`]s of a store shared by
//! several nodes ([`crate::cluster`]). One task per service, applying signals in the order the
//! store heard them (so a job's status reaches the bus before that run's progress), and
//! telling the store what this node's streams watch
//! ([`JobStore::set_watched`](crate::JobStore::set_watched)).

use std::sync::{Arc, Weak};

use tokio::sync::broadcast::error::RecvError;

use super::Jobs;
use crate::cluster::{self, ClusterSignal};
use crate::model::{Job, JobId, JobStatus};

/// Starts applying the store's cluster signals to `jobs`, when the store has any and a tokio
/// runtime runs (the task ends with the service or the store).
pub(super) fn start(jobs: &Arc<Jobs>) {
    let Some(mut signals) = jobs.store.cluster_signals() else { return };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no async runtime: the other nodes' events are not followed");
        return;
    };
    // What this node's streams watch goes to the other nodes, which send progress only where
    // it is watched: now, and at every change.
    let mut watched = jobs.events.watched_changes();
    jobs.store.set_watched(&jobs.events.watched());
    let jobs: Weak<Jobs> = Arc::downgrade(jobs);
    runtime.spawn(async move {
        loop {
            let signal = tokio::select! {
                biased;
                changed = watched.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    watched.borrow_and_update();
                    let Some(jobs) = jobs.upgrade() else { return };
                    jobs.store.set_watched(&jobs.events.watched());
                    continue;
                }
                received = signals.recv() => match received {
                    Ok(signal) => signal,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "fell behind the other nodes' signals; catching up from the store");
                        ClusterSignal::Resync
                    }
                    Err(RecvError::Closed) => return,
                },
            };
            let Some(jobs) = jobs.upgrade() else { return };
            jobs.apply(signal).await;
        }
    });
}

impl Jobs {
    /// Applies one signal from the other nodes.
    async fn apply(&self, signal: ClusterSignal) {
        match signal {
            ClusterSignal::Status { job, seq, status } => {
                let latest = self.events.latest_status(&job);
                let known = latest.is_some_and(|(latest, _)| latest >= seq);
                if !known && self.events.is_watched(&job) {
                    // From the latest status published here when there is one: a change no
                    // notification named (a start the running node left unannounced while
                    // this node's new stream was not known there yet) is rebuilt too.
                    let (from, from_status) = latest.unwrap_or((seq, status));
                    self.publish_stored_since(&job, from, from_status).await;
                }
            }
            ClusterSignal::Changed(job) => {
                let mut job = Job::clone(&job);
                self.status_changed(&mut job).await;
            }
            ClusterSignal::Cancel { job } => {
                if let Some(running) = self.lock_running().get(&job) {
                    tracing::info!(job = %job, "cancel asked on another node");
                    running.cancel.cancel();
                }
            }
            // A store that reads changes back (SQLite shared by processes) hears of this
            // node's own runs too: their live progress is published here already.
            ClusterSignal::Progress(event) => {
                if !self.lock_running().contains_key(&event.job) {
                    // A run whose start was not published here (left unannounced while this
                    // node's new stream was not known there yet): its status first.
                    if self.events.latest_seq(&event.job).is_some_and(|seq| seq < event.id.status) {
                        self.publish_stored(&event.job).await;
                    }
                    self.events.publish_progress(&event);
                }
            }
            ClusterSignal::Resync => {
                self.events.mark_gap();
                for job in self.events.watched_jobs() {
                    self.publish_stored(&job).await;
                }
            }
        }
    }

    /// Publishes job `id` as the store has it now (the bus drops it unless it is newer than
    /// what was published), after the statuses it passed since the latest one published here,
    /// when the bus knows that one.
    async fn publish_stored(&self, id: &JobId) {
        match self.events.latest_status(id) {
            Some((seq, status)) => self.publish_stored_since(id, seq, status).await,
            None => self.status_changed_of(id).await,
        }
    }

    /// Publishes job `id` as the store has it now, after the statuses it passed since the
    /// change a signal named (event `seq`, `status`): a job read after it moved on (a re-queue
    /// claimed again at once on another node, queued -> running -> completed between two reads
    /// of a shared SQLite file) still shows every status, in order ([`cluster::passed`]).
    async fn publish_stored_since(&self, id: &JobId, seq: u64, status: JobStatus) {
        let mut job = match self.store.get(id).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "reading a job back to publish its status failed");
                return;
            }
        };
        for mut passed in cluster::passed(&job, seq, status) {
            self.status_changed(&mut passed).await;
        }
        self.status_changed(&mut job).await;
    }
}

//! The service's side of the node registry ([`crate::nodes`]): registering this node, its
//! heartbeats, the labels its workers claim with, and `waiting_reason` for queued jobs (with
//! a job's wait for its `retry_at`).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Jobs;
use crate::model::{Job, JobId, JobStatus};
use crate::nodes::{Node, NodeDirectory, NodeLife, RegisterError};
use crate::store::StoreError;

impl Jobs {
    /// Fills in the `waiting_reason` of queued jobs, the first that applies: a job that waits
    /// for its `retry_at` says why and until when ([`Job::retry_wait`]); else, from the node
    /// registry (none without one), why no live node may take it; else which earlier job
    /// holds it back ([`JobStore::held_back`](crate::JobStore::held_back), as this node's
    /// claims found it; a store that fails to answer is logged and leaves it unset); else,
    /// while this node knows its remote storage does not answer, that no job starts until it
    /// does (workers claim nothing meanwhile, tester finding K11).
    pub(super) async fn explain(&self, jobs: &mut [Job]) {
        let held = if jobs.iter().any(|j| j.status == JobStatus::Queued) {
            self.store.held_back(jobs).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading what holds queued jobs back failed");
                Vec::new()
            })
        } else {
            Vec::new()
        };
        if let Some(directory) = &self.directory {
            directory.explain(jobs).await;
        }
        let now = time::OffsetDateTime::now_utc();
        let outage = self.config.remote_storage.as_ref().and(self.availability.outage()).map(|outage| {
            format!(
                "the storage `{}` has not answered since {}; jobs start once it answers",
                outage.storage,
                outage.since_utc()
            )
        });
        for (i, job) in jobs.iter_mut().enumerate() {
            if let Some(wait) = job.retry_wait(now) {
                job.waiting_reason = Some(wait);
            } else if job.waiting_reason.is_none()
                && let Some(Some(held)) = held.get(i)
            {
                job.waiting_reason = Some(held.reason());
            } else if job.waiting_reason.is_none()
                && job.status == JobStatus::Queued
                && let Some(outage) = &outage
            {
                job.waiting_reason = Some(outage.clone());
            }
        }
    }

    /// This node's labels: its workers claim only jobs whose `requires` they cover.
    pub(super) fn labels(&self) -> &[String] {
        self.config.node.as_ref().map_or(&[], |n| n.registration.labels.as_slice())
    }

    /// This node's view of the registry, if it has one.
    pub fn directory(&self) -> Option<&Arc<NodeDirectory>> {
        self.directory.as_ref()
    }

    /// Every node in the registry, read now (empty without a registry).
    ///
    /// # Errors
    /// The store failed.
    pub async fn nodes(&self) -> Result<Vec<Node>, StoreError> {
        match &self.directory {
            Some(directory) => directory.nodes().await,
            None => Ok(Vec::new()),
        }
    }

    /// Registers this node in the registry ([`NodeDirectory::register`]: at start-up, before
    /// [`Jobs::recover`] and [`Jobs::run_node`]); nothing without a registry.
    ///
    /// # Errors
    /// [`RegisterError::InUse`]: another live process uses this node id;
    /// [`RegisterError::Store`]: the store failed.
    pub async fn register_node(&self) -> Result<(), RegisterError> {
        match &self.directory {
            Some(directory) => directory.register().await,
            None => Ok(()),
        }
    }

    /// This node's life in the registry ([`NodeDirectory::run`]), once registered: heartbeats
    /// with the jobs it runs, draining once `draining` fires, removal at `stop`; or
    /// [`NodeLife::Superseded`] when another start took the node id over. Waits for `stop`
    /// without a registry.
    pub async fn run_node(self: &Arc<Self>, draining: CancellationToken, stop: CancellationToken) -> NodeLife {
        let Some(directory) = self.directory.clone() else {
            stop.cancelled().await;
            return NodeLife::Stopped;
        };
        let jobs = Arc::clone(self);
        let running = move || {
            let mut ids: Vec<JobId> = jobs.lock_running().keys().cloned().collect();
            ids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
            ids
        };
        directory.run(running, draining, stop).await
    }
}

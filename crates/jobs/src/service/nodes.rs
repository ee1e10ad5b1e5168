//! The service's side of the node registry ([`crate::nodes`]): registering this node, its
//! heartbeats, the labels its workers claim with, and `waiting_reason` for queued jobs (a
//! job's wait for its `retry_at`, for a node that may take it, for an earlier job, for its
//! remote storage, or for a free slot).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Jobs;
use crate::model::{Job, JobId, JobStatus};
use crate::nodes::{Node, NodeDirectory, NodeLife, RegisterError, busy_reason, slots_busy, waiting_reason};
use crate::store::StoreError;

impl Jobs {
    /// Fills in the `waiting_reason` of queued jobs, the first that applies: a job that waits
    /// for its `retry_at` says why and until when ([`Job::retry_wait`]); else, from the node
    /// registry (none without one), why no live node may take it ([`waiting_reason`]); else
    /// which earlier job holds it back ([`JobStore::held_back`](crate::JobStore::held_back),
    /// from the store, the same on every node); else, while this node knows its remote
    /// storage does not answer, that no job starts until it does (workers claim nothing
    /// meanwhile, tester finding K11); else that every slot of the live nodes that may take it
    /// is busy ([`busy_reason`]: their heartbeats, this node's own running jobs for itself;
    /// without a registry, this node's slots). A registry or store that fails to answer is
    /// logged and leaves its reasons unset.
    pub(super) async fn explain(&self, jobs: &mut [Job]) {
        if !jobs.iter().any(|j| j.status == JobStatus::Queued) {
            return;
        }
        let nodes = match &self.directory {
            Some(directory) => match directory.live().await {
                Ok(nodes) => Some(nodes),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the node registry failed");
                    None
                }
            },
            None => None,
        };
        let now = time::OffsetDateTime::now_utc();
        let mut open = Vec::new();
        for (i, job) in jobs.iter_mut().enumerate().filter(|(_, j)| j.status == JobStatus::Queued) {
            job.waiting_reason =
                job.retry_wait(now).or_else(|| nodes.as_ref().and_then(|nodes| waiting_reason(&job.requires, nodes)));
            if job.waiting_reason.is_none() {
                open.push(i);
            }
        }
        if open.is_empty() {
            return;
        }
        let asked: Vec<Job> = open.iter().map(|&i| jobs[i].clone()).collect();
        match self.store.held_back(&asked).await {
            Ok(held) => {
                for (&i, held) in open.iter().zip(held) {
                    jobs[i].waiting_reason = held.map(|h| h.reason());
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading what holds queued jobs back failed"),
        }
        let outage = self.config.remote_storage.as_ref().and(self.availability.outage()).map(|outage| {
            format!(
                "the storage `{}` has not answered since {}; jobs start once it answers",
                outage.storage,
                outage.since_utc()
            )
        });
        let me = self.config.node.as_ref().map(|n| n.registration.id.as_str());
        let running =
            |node: &Node| if Some(node.id.as_str()) == me { self.running_here() } else { node.running_jobs.len() };
        for &i in &open {
            let job = &mut jobs[i];
            if job.waiting_reason.is_some() {
                continue;
            }
            if let Some(outage) = &outage {
                job.waiting_reason = Some(outage.clone());
                continue;
            }
            job.waiting_reason = match &nodes {
                Some(nodes) => busy_reason(&job.requires, nodes, running),
                None => {
                    let slots = self.config.concurrency;
                    (slots > 0 && self.running_here() >= slots).then(|| slots_busy(slots, 1))
                }
            };
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

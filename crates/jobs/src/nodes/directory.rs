//! [`NodeDirectory`]: this node's view of the registry, for [`Jobs`](crate::Jobs): the live
//! nodes (read at most once per [`LIVE_NODES_TTL`]), the ffmpeg capabilities a job's submit
//! checks use, and this node's own heartbeats ([`NodeDirectory::run`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ffmpeg_core::capabilities::Capabilities;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Heartbeat, Node, NodeRegistration, NodeState, heartbeat_interval};
use crate::model::JobId;
use crate::store::{JobStore, StoreError};

/// How long a read of the live nodes is reused, by submit checks and waiting reasons.
pub const LIVE_NODES_TTL: Duration = Duration::from_secs(1);
/// Shortest time between two heartbeats, however often the running jobs change.
const MIN_BEAT_GAP: Duration = Duration::from_millis(250);
/// How often silent nodes are looked for and pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Capability intersections kept (one per set of candidate nodes).
const MAX_CACHED_INTERSECTIONS: usize = 64;

/// Settings of this node in the registry.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// What this node publishes about itself.
    pub registration: NodeRegistration,
    /// A node whose latest heartbeat is this old is lost (the lease, `LEASE_SECONDS`); this
    /// node beats every third of it ([`heartbeat_interval`]).
    pub lost_after: Duration,
    /// Nodes silent for this long are deleted from the registry (`NODE_RETENTION`).
    pub retention: Duration,
}

/// A candidate node's capabilities, as the cache keys them: the node's id and start.
type CapabilityKey = (String, OffsetDateTime);

/// This node's view of the registry (see the [module docs](self)).
pub struct NodeDirectory {
    store: Arc<dyn JobStore>,
    settings: NodeSettings,
    /// What this node's own ffmpeg knows (used for it without a read).
    local: Option<Arc<Capabilities>>,
    live: tokio::sync::Mutex<Option<(Instant, Arc<Vec<Node>>)>>,
    capabilities: Mutex<HashMap<CapabilityKey, Option<Arc<Capabilities>>>>,
    intersections: Mutex<HashMap<Vec<CapabilityKey>, Arc<Capabilities>>>,
    /// Woken when the jobs this node runs change: the next heartbeat goes out early.
    changed: Notify,
}

impl std::fmt::Debug for NodeDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeDirectory").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl NodeDirectory {
    /// A directory over `store` for the node `settings` describes.
    pub fn new(store: Arc<dyn JobStore>, settings: NodeSettings) -> NodeDirectory {
        let mut settings = settings;
        // The registry keeps microseconds: this start is recognised by what it stored.
        let start = settings.registration.started_at;
        settings.registration.started_at = start.replace_nanosecond(start.nanosecond() / 1000 * 1000).unwrap_or(start);
        let local = settings.registration.capabilities.clone();
        NodeDirectory {
            store,
            settings,
            local,
            live: tokio::sync::Mutex::new(None),
            capabilities: Mutex::new(HashMap::new()),
            intersections: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        }
    }

    /// This node's settings.
    pub fn settings(&self) -> &NodeSettings {
        &self.settings
    }

    /// Every registered node, read now (`GET /workers`).
    ///
    /// # Errors
    /// The store failed.
    pub async fn nodes(&self) -> Result<Vec<Node>, StoreError> {
        self.store.nodes(self.settings.lost_after).await
    }

    /// The registered nodes, as read at most [`LIVE_NODES_TTL`] ago.
    ///
    /// # Errors
    /// The store failed.
    pub async fn live(&self) -> Result<Arc<Vec<Node>>, StoreError> {
        let mut live = self.live.lock().await;
        if let Some((at, nodes)) = live.as_ref()
            && at.elapsed() < LIVE_NODES_TTL
        {
            return Ok(Arc::clone(nodes));
        }
        let nodes = Arc::new(self.store.nodes(self.settings.lost_after).await?);
        *live = Some((Instant::now(), Arc::clone(&nodes)));
        Ok(nodes)
    }

    /// What the installed ffmpeg of the nodes that could take a job requiring `requires`
    /// knows, for its submit checks: the names every live, active node that runs jobs and has
    /// those labels knows ([`Capabilities::intersection`]). With no such node: this node's own
    /// ffmpeg for a job that requires nothing, and `None` (no name check: the job waits, and
    /// its `waiting_reason` says why) for one that requires labels.
    ///
    /// # Errors
    /// The store failed.
    pub async fn capabilities_for(&self, requires: &[String]) -> Result<Option<Arc<Capabilities>>, StoreError> {
        let nodes = self.live().await?;
        let mut keys: Vec<CapabilityKey> =
            nodes.iter().filter(|n| n.may_take(requires)).map(|n| (n.id.clone(), n.started_at)).collect();
        if keys.is_empty() {
            return Ok(if requires.is_empty() { self.local.clone() } else { None });
        }
        keys.sort();
        if let Some(found) = lock(&self.intersections).get(&keys) {
            return Ok(Some(Arc::clone(found)));
        }
        let mut all = Capabilities::default();
        for key in &keys {
            if let Some(capabilities) = self.capabilities_of(key).await? {
                all = all.intersection(&capabilities);
            }
        }
        let all = Arc::new(all);
        let mut cache = lock(&self.intersections);
        if cache.len() >= MAX_CACHED_INTERSECTIONS {
            cache.clear();
        }
        cache.insert(keys, Arc::clone(&all));
        Ok(Some(all))
    }

    /// Node `key`'s capabilities: this node's own, or read once per node start.
    async fn capabilities_of(&self, key: &CapabilityKey) -> Result<Option<Arc<Capabilities>>, StoreError> {
        if key.0 == self.settings.registration.id {
            return Ok(self.local.clone());
        }
        if let Some(found) = lock(&self.capabilities).get(key) {
            return Ok(found.clone());
        }
        let read = self.store.node_capabilities(&key.0).await?.map(Arc::new);
        let mut cache = lock(&self.capabilities);
        // Entries of nodes that restarted or left go: only the latest start of each is read.
        cache.retain(|(id, _), _| *id != key.0);
        cache.insert(key.clone(), read.clone());
        Ok(read)
    }

    /// Tells the heartbeat task that the jobs this node runs changed.
    pub fn running_changed(&self) {
        self.changed.notify_one();
    }

    /// Registers this start of the node ([`JobStore::register_node`]): at start-up, before it
    /// recovers anything and before [`run`](Self::run), which must follow at once (its
    /// heartbeats tell a process starting later with the same id that this one is alive).
    ///
    /// The id may be in the registry already:
    /// - the row of a start that is lost (no heartbeat for the lease), or whose process was on
    ///   this machine and is gone (a crash, then a restart): replaced at once;
    /// - otherwise it may be a live process (another replica given the same `NODE_ID`) or a
    ///   start that died elsewhere a moment ago: this start watches the row, polling, until its
    ///   heartbeat moves (a live process: [`RegisterError::InUse`], nothing changed, nothing
    ///   recovered) or it is lost (replaced), at most the lease.
    ///
    /// # Errors
    /// [`RegisterError::InUse`], or [`RegisterError::Store`].
    pub async fn register(&self) -> Result<(), RegisterError> {
        let me = &self.settings.registration;
        let lost_after = self.settings.lost_after;
        let poll = (heartbeat_interval(lost_after) / 8).min(Duration::from_millis(500));
        // The other start's (start, heartbeat) as first seen.
        let mut seen: Option<(OffsetDateTime, OffsetDateTime)> = None;
        let mut replaces = None;
        loop {
            if self.store.register_node(me, lost_after, replaces).await? {
                if seen.is_some() {
                    tracing::info!(node = %me.id, "the earlier start of this node id is gone; registered");
                }
                return Ok(());
            }
            let nodes = self.store.nodes(lost_after).await?;
            let Some(other) = nodes.iter().find(|n| n.id == me.id) else { continue };
            if other.state == NodeState::Lost {
                tokio::time::sleep(poll).await;
                continue;
            }
            if other.process.as_deref().is_some_and(super::process_is_gone) {
                // A crash of this machine's earlier start: its process is gone.
                replaces = Some(other.started_at);
                continue;
            }
            let now = (other.started_at, other.last_heartbeat_at);
            match seen {
                None => {
                    tracing::warn!(
                        node = %me.id,
                        host = %other.host,
                        wait_at_most = ?lost_after,
                        "this node id is registered by a start whose heartbeat is recent: waiting to see whether \
                         that process is alive (its heartbeat moves: this one stops) or gone (it is lost)"
                    );
                    seen = Some(now);
                }
                Some(first) if first != now => {
                    return Err(RegisterError::InUse {
                        id: me.id.clone(),
                        host: other.host.clone(),
                        started_at: other.started_at,
                    });
                }
                Some(_) => {}
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// This node's life in the registry once [registered](Self::register), until `stop`: sends a heartbeat every
    /// [`heartbeat_interval`] and soon after the jobs it runs change (`running()` lists them),
    /// marked draining once `draining` fires, registers again if it was pruned meanwhile,
    /// prunes nodes silent for the retention, and at `stop` removes this node. Store failures
    /// are logged and retried at the next beat.
    ///
    /// Returns [`NodeLife::Superseded`] (without removing anything) when another start took
    /// this node id over (this one was silent for a whole lease, e.g. cut off from the
    /// database, and a process started with the same id meanwhile): the caller must stop this
    /// process, whose jobs that start recovered.
    pub async fn run(
        &self,
        running: impl Fn() -> Vec<JobId> + Send,
        draining: CancellationToken,
        stop: CancellationToken,
    ) -> NodeLife {
        let me = &self.settings.registration;
        let every = heartbeat_interval(self.settings.lost_after);
        let mut registered = true;
        let mut last_prune: Option<Instant> = None;
        let mut was_draining = false;
        loop {
            if !registered {
                match self.store.register_node(me, self.settings.lost_after, None).await {
                    Ok(true) => registered = true,
                    Ok(false) => {
                        tracing::error!(
                            node = %me.id,
                            "another process started with this node id while this one could not reach the \
                             database for a whole lease; it recovered this node's jobs: stopping this process"
                        );
                        return NodeLife::Superseded;
                    }
                    Err(e) => tracing::warn!(error = %e, "registering this node failed; retrying"),
                }
            }
            if registered {
                let beat = Heartbeat { draining: draining.is_cancelled(), running_jobs: running() };
                match self.store.heartbeat_node(me, &beat).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(
                            "this node's start was missing from the registry (pruned while silent, or taken over); \
                             registering again"
                        );
                        registered = false;
                        continue;
                    }
                    Err(e) => tracing::warn!(error = %e, "sending this node's heartbeat failed; retrying"),
                }
            }
            if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                match self.store.prune_nodes(self.settings.retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(nodes = n, "removed nodes silent for longer than the retention"),
                    Err(e) => tracing::warn!(error = %e, "pruning silent nodes failed"),
                }
            }
            let next = tokio::time::sleep(every);
            tokio::select! {
                () = next => {}
                () = self.changed.notified() => tokio::time::sleep(MIN_BEAT_GAP).await,
                () = draining.cancelled(), if !was_draining => was_draining = true,
                () = stop.cancelled() => break,
            }
        }
        if let Err(e) = self.store.remove_node(me).await {
            tracing::warn!(error = %e, "removing this node from the registry failed; it shows as lost until pruned");
        }
        NodeLife::Stopped
    }
}

/// How [`NodeDirectory::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeLife {
    /// `stop` fired: this node left the registry.
    Stopped,
    /// Another start took this node id over (see [`NodeDirectory::run`]).
    Superseded,
}

/// Why [`NodeDirectory::register`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Another live process uses this node id: its heartbeat moved while this start watched.
    #[error(
        "node id `{id}` is in use by another live process (on host {host}, started {started}): each process \
         needs its own NODE_ID (leave NODE_ID unset for a generated one), or stop the other process first",
        started = rfc3339(started_at)
    )]
    InUse {
        /// The node id.
        id: String,
        /// The host the other process registered.
        host: String,
        /// When the other process registered.
        started_at: OffsetDateTime,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `time` as RFC 3339 (`2026-12-01T04:10:14.776728Z`), as the API and the logs show times.
fn rfc3339(time: &OffsetDateTime) -> String {
    let utc = time.to_offset(time::UtcOffset::UTC);
    utc.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| utc.to_string())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

//! The node registry: the processes (nodes) that share one store, what each one is for
//! ([`NodeRole`]), which jobs it may take ([labels](normalize_labels) a job's `requires` must be
//! covered by), what its ffmpeg knows, and whether it is still alive.
//!
//! Every node publishes a [`NodeRegistration`] when it starts ([`JobStore::register_node`]) and
//! a [`Heartbeat`] every [`heartbeat_interval`] and whenever the jobs it runs change
//! ([`JobStore::heartbeat_node`]); a node that has sent none for the lease (`LEASE_SECONDS`) is
//! [`NodeState::Lost`] (on PostgreSQL, unless it holds an unexpired lease on a running job:
//! its lease renewals are signs of life too, and it writes a heartbeat that changes nothing
//! only when it holds none), and is deleted once it has been silent for the retention
//! ([`JobStore::prune_nodes`]). A node that stops gracefully says it is draining, then removes
//! itself ([`JobStore::remove_node`]).
//!
//! Routing: a job may require labels (`"requires": ["gpu"]`); a node claims it only when its
//! own labels include every one of them ([`labels_cover`], applied by
//! [`JobStore::claim_next`]). [`waiting_reason`] says why a queued job cannot start when no
//! live node could take it.
//!
//! [`JobStore::register_node`]: crate::JobStore::register_node
//! [`JobStore::heartbeat_node`]: crate::JobStore::heartbeat_node
//! [`JobStore::prune_nodes`]: crate::JobStore::prune_nodes
//! [`JobStore::remove_node`]: crate::JobStore::remove_node
//! [`JobStore::claim_next`]: crate::JobStore::claim_next

pub mod directory;

use std::sync::Arc;
use std::time::Duration;

use ffmpeg_core::capabilities::Capabilities;
use time::OffsetDateTime;

use crate::model::JobId;

pub use directory::{NodeDirectory, NodeLife, NodeSettings, RegisterError};

/// Most labels a node or a job may have.
pub const MAX_LABELS: usize = 16;
/// Longest label, in bytes.
pub const MAX_LABEL_LEN: usize = 64;

/// What a node does: serve the API, run jobs, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NodeRole {
    /// Serves the HTTP API and runs jobs (a single node, or any node of a cluster).
    #[default]
    All,
    /// Serves the HTTP API and runs no job.
    Api,
    /// Runs jobs; its HTTP listener serves only `/health`, `/ready` and `/metrics`.
    Worker,
}

impl NodeRole {
    /// `all`, `api` or `worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::All => "all",
            NodeRole::Api => "api",
            NodeRole::Worker => "worker",
        }
    }

    /// Whether nodes of this role claim and run jobs.
    pub fn runs_jobs(self) -> bool {
        matches!(self, NodeRole::All | NodeRole::Worker)
    }

    /// Whether nodes of this role serve the job API.
    pub fn serves_api(self) -> bool {
        matches!(self, NodeRole::All | NodeRole::Api)
    }
}

impl std::fmt::Display for NodeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name other than `all`, `api` and `worker`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown node role `{0}`; expected all, api or worker")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for NodeRole {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<NodeRole, UnknownRole> {
        match s {
            "all" => Ok(NodeRole::All),
            "api" => Ok(NodeRole::Api),
            "worker" => Ok(NodeRole::Worker),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// A label list refused: of a node (`NODE_LABELS`) or of a job's `requires`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidLabel {
    /// A label that is empty, too long, or has characters other than ASCII lowercase letters,
    /// digits, `-`, `_` and `.` (or does not start with a letter or digit).
    #[error(
        "label `{0}` is not valid: 1 to {MAX_LABEL_LEN} of a-z, 0-9, `-`, `_`, `.`, starting with a letter or digit"
    )]
    Syntax(String),
    /// More than [`MAX_LABELS`] labels.
    #[error("{0} labels; at most {MAX_LABELS} are allowed")]
    TooMany(usize),
}

/// Checks `labels` and returns them sorted, without duplicates.
///
/// ```
/// use jobs::nodes::normalize_labels;
///
/// let labels = normalize_labels(["nvenc", "gpu", "gpu"].map(String::from))?;
/// assert_eq!(labels, ["gpu", "nvenc"]);
/// assert!(normalize_labels(["GPU".to_owned()]).is_err());
/// # Ok::<(), jobs::nodes::InvalidLabel>(())
/// ```
///
/// # Errors
/// [`InvalidLabel`] for the first label that is not valid, or for too many.
pub fn normalize_labels(labels: impl IntoIterator<Item = String>) -> Result<Vec<String>, InvalidLabel> {
    let mut labels: Vec<String> = labels.into_iter().collect();
    for label in &labels {
        let valid = !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(InvalidLabel::Syntax(label.clone()));
        }
    }
    labels.sort_unstable();
    labels.dedup();
    if labels.len() > MAX_LABELS {
        return Err(InvalidLabel::TooMany(labels.len()));
    }
    Ok(labels)
}

/// Parses a comma-separated label list (`NODE_LABELS=gpu,nvenc`; blanks around names and
/// empty items are ignored), checked and sorted as [`normalize_labels`] does.
///
/// # Errors
/// As [`normalize_labels`].
pub fn parse_labels(list: &str) -> Result<Vec<String>, InvalidLabel> {
    normalize_labels(list.split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned))
}

/// Whether a node with `labels` may take a job that requires `requires`: it has every one.
pub fn labels_cover(labels: &[String], requires: &[String]) -> bool {
    requires.iter().all(|r| labels.contains(r))
}

/// What a node publishes about itself when it starts ([`crate::JobStore::register_node`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRegistration {
    /// Its id (`NODE_ID`), unique in the cluster.
    pub id: String,
    /// What it does.
    pub role: NodeRole,
    /// Its labels (`NODE_LABELS`), sorted.
    pub labels: Vec<String>,
    /// Its host name.
    pub host: String,
    /// The ffmpeg-worker version it runs.
    pub version: String,
    /// Its ffmpeg's version (`5.1.9-0+deb12u1`), if known.
    pub ffmpeg_version: Option<String>,
    /// What its ffmpeg knows, for submit-time checks on other nodes; `None`: unknown.
    pub capabilities: Option<Arc<Capabilities>>,
    /// Jobs it runs at once (0 for an API node).
    pub slots: u32,
    /// This start of the node (microsecond precision is kept): the registry row belongs to the
    /// start that registered it, and heartbeats and the removal of another start change nothing.
    pub started_at: OffsetDateTime,
    /// The process that runs it ([`this_process`]), to tell a crashed earlier start on the
    /// same machine from a live process; `None`: unknown (such a start is never taken for gone
    /// before the lease).
    pub process: Option<String>,
}

impl NodeRegistration {
    /// Whether `node` (a row of the registry) is this very start's.
    pub fn is_this_start(&self, node: &Node) -> bool {
        node.id == self.id && micros(node.started_at) == micros(self.started_at)
    }
}

/// `at` in whole microseconds since the epoch, as the registry stores start times.
pub(crate) fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// This process, as the registry records it: `BOOT_ID PID_NAMESPACE PID` (the kernel's boot
/// id, the pid namespace `/proc/self/ns/pid` names, the process id); `None` when `/proc` does
/// not say.
pub fn this_process() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{} {} {}", boot.trim(), namespace.to_str()?, std::process::id()))
}

/// Whether the process a registry row names ([`this_process`]'s form) is certainly gone: it
/// ran on this machine since its last boot, in this pid namespace, and its pid is free, a
/// zombie, or this process's own. Anything else (another machine, another container, a pid
/// in use, possibly reused) is not known to be gone.
pub fn process_is_gone(process: &str) -> bool {
    let Some(me) = this_process() else { return false };
    let (Some((machine, pid)), Some((my_machine, my_pid))) = (process.rsplit_once(' '), me.rsplit_once(' ')) else {
        return false;
    };
    if machine != my_machine {
        return false;
    }
    if pid == my_pid {
        return true;
    }
    let Ok(pid) = pid.parse::<u32>() else { return false };
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name's closing parenthesis.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// What a node publishes with every heartbeat ([`crate::JobStore::heartbeat_node`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// It is shutting down: it claims no new job and lets its running jobs finish.
    pub draining: bool,
    /// The jobs it runs now.
    pub running_jobs: Vec<JobId>,
}

/// Whether a node is alive, as [`crate::JobStore::nodes`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Alive, and claiming jobs (if its role runs any).
    Active,
    /// Alive and shutting down: it claims no new job; its running jobs finish or go back to
    /// the queue.
    Draining,
    /// No heartbeat for the lease: presumed dead (its jobs are re-queued once their leases
    /// expire).
    Lost,
}

impl NodeState {
    /// `active`, `draining` or `lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Draining => "draining",
            NodeState::Lost => "lost",
        }
    }
}

/// A node of the registry, as [`crate::JobStore::nodes`] returns it (without its
/// capabilities: [`crate::JobStore::node_capabilities`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Its id.
    pub id: String,
    /// What it does.
    pub role: NodeRole,
    /// Its labels, sorted.
    pub labels: Vec<String>,
    /// Its host name.
    pub host: String,
    /// The ffmpeg-worker version it runs.
    pub version: String,
    /// Its ffmpeg's version, if known.
    pub ffmpeg_version: Option<String>,
    /// Jobs it runs at once.
    pub slots: u32,
    /// The jobs it ran at its latest heartbeat.
    pub running_jobs: Vec<JobId>,
    /// When it registered (its start).
    pub started_at: OffsetDateTime,
    /// The process that registered it ([`this_process`]), if known.
    pub process: Option<String>,
    /// Its latest heartbeat.
    pub last_heartbeat_at: OffsetDateTime,
    /// Alive, draining or lost.
    pub state: NodeState,
}

impl Node {
    /// Whether the node may claim a job that requires `requires` now: it is active (not
    /// draining, not lost), runs jobs (its role, and at least one slot), and has every required
    /// label.
    pub fn may_take(&self, requires: &[String]) -> bool {
        self.state == NodeState::Active
            && self.role.runs_jobs()
            && self.slots > 0
            && labels_cover(&self.labels, requires)
    }
}

/// Why a queued job that requires `requires` cannot start, when no node in `nodes` may take
/// it ([`Node::may_take`]); `None` when one may.
///
/// ```
/// use jobs::nodes::waiting_reason;
///
/// let gpu = ["gpu".to_owned()];
/// assert_eq!(waiting_reason(&gpu, &[]).as_deref(), Some("no live node has labels [gpu]"));
/// assert_eq!(waiting_reason(&[], &[]).as_deref(), Some("no live worker node"));
/// ```
pub fn waiting_reason(requires: &[String], nodes: &[Node]) -> Option<String> {
    if nodes.iter().any(|n| n.may_take(requires)) {
        return None;
    }
    Some(if requires.is_empty() {
        "no live worker node".to_owned()
    } else {
        format!("no live node has labels [{}]", requires.join(", "))
    })
}

/// Why a queued job that requires `requires`, which a live node may take and nothing else holds
/// back, has not started: every slot of the nodes in `nodes` that may take it
/// ([`Node::may_take`]) is busy, by `running` (how many jobs a node runs: its latest heartbeat,
/// or the node's own count for itself). `None` when one of those slots is free (the job starts
/// as soon as a worker claims it) or no node may take it ([`waiting_reason`] says so).
///
/// ```
/// use jobs::nodes::busy_reason;
/// # use jobs::nodes::{Node, NodeRole, NodeState};
/// # let node = |id: &str, slots| Node {
/// #     id: id.to_owned(), role: NodeRole::Worker, labels: Vec::new(), host: "h".to_owned(),
/// #     version: "0".to_owned(), ffmpeg_version: None, slots, running_jobs: Vec::new(),
/// #     started_at: time::OffsetDateTime::UNIX_EPOCH, process: None,
/// #     last_heartbeat_at: time::OffsetDateTime::UNIX_EPOCH, state: NodeState::Active,
/// # };
/// let (one, two) = (node("a", 1), node("b", 2));
/// let all_busy = |n: &Node| n.slots as usize;
/// assert_eq!(busy_reason(&[], &[one.clone()], all_busy).as_deref(), Some("the one slot of the live node that can take it is busy"));
/// assert_eq!(busy_reason(&[], &[two.clone()], all_busy).as_deref(), Some("all 2 slots of the live node that can take it are busy"));
/// assert_eq!(busy_reason(&[], &[one.clone(), two], all_busy).as_deref(), Some("all 3 slots of the 2 live nodes that can take it are busy"));
/// assert_eq!(busy_reason(&[], &[one], |_| 0), None);
/// ```
pub fn busy_reason(requires: &[String], nodes: &[Node], running: impl Fn(&Node) -> usize) -> Option<String> {
    let takers: Vec<&Node> = nodes.iter().filter(|n| n.may_take(requires)).collect();
    let slots: usize = takers.iter().map(|n| n.slots as usize).sum();
    if takers.is_empty() || takers.iter().any(|n| running(n) < n.slots as usize) {
        return None;
    }
    Some(slots_busy(slots, takers.len()))
}

/// The `waiting_reason` of a job waiting for one of `slots` slots of `nodes` live nodes that
/// can take it ([`busy_reason`]).
pub(crate) fn slots_busy(slots: usize, nodes: usize) -> String {
    match (slots, nodes) {
        (1, _) => "the one slot of the live node that can take it is busy".to_owned(),
        (slots, 1) => format!("all {slots} slots of the live node that can take it are busy"),
        (slots, nodes) => format!("all {slots} slots of the {nodes} live nodes that can take it are busy"),
    }
}

/// How often a node sends its heartbeat: a third of the time after which it counts as lost
/// (`lost_after`, the lease), at least once a second.
pub fn heartbeat_interval(lost_after: Duration) -> Duration {
    (lost_after / 3).max(Duration::from_secs(1))
}

/// The node's host name (`/proc/sys/kernel/hostname`), or `node` when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(role: NodeRole, labels: &[&str], state: NodeState) -> Node {
        Node {
            id: "n".to_owned(),
            role,
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            host: "h".to_owned(),
            version: "0".to_owned(),
            ffmpeg_version: None,
            slots: 1,
            running_jobs: Vec::new(),
            started_at: OffsetDateTime::UNIX_EPOCH,
            process: None,
            last_heartbeat_at: OffsetDateTime::UNIX_EPOCH,
            state,
        }
    }

    #[test]
    fn labels_are_checked_sorted_and_deduplicated() {
        assert_eq!(parse_labels(" gpu, nvenc,,gpu "), Ok(vec!["gpu".to_owned(), "nvenc".to_owned()]));
        assert_eq!(parse_labels(""), Ok(Vec::new()));
        for bad in ["GPU", "-gpu", "g pu", "gpu/1", &"a".repeat(65), "é"] {
            assert_eq!(parse_labels(bad), Err(InvalidLabel::Syntax(bad.to_owned())), "{bad}");
        }
        let many = (0..17).map(|i| format!("l{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(parse_labels(&many), Err(InvalidLabel::TooMany(17)));
        assert!(parse_labels("a.b_c-9,0x").is_ok());
    }

    #[test]
    fn only_active_job_running_nodes_with_every_label_may_take_a_job() {
        let gpu = ["gpu".to_owned()];
        let gpu_nvenc = ["gpu".to_owned(), "nvenc".to_owned()];
        assert!(node(NodeRole::Worker, &["gpu", "nvenc"], NodeState::Active).may_take(&gpu));
        assert!(node(NodeRole::All, &["gpu"], NodeState::Active).may_take(&gpu));
        assert!(node(NodeRole::All, &[], NodeState::Active).may_take(&[]));
        assert!(!node(NodeRole::Worker, &["gpu"], NodeState::Active).may_take(&gpu_nvenc));
        assert!(!node(NodeRole::Api, &["gpu"], NodeState::Active).may_take(&gpu));
        assert!(!node(NodeRole::Worker, &["gpu"], NodeState::Draining).may_take(&gpu));
        assert!(!node(NodeRole::Worker, &["gpu"], NodeState::Lost).may_take(&gpu));
        let no_slot = Node { slots: 0, ..node(NodeRole::All, &["gpu"], NodeState::Active) };
        assert!(!no_slot.may_take(&gpu), "WORKER_CONCURRENCY=0 runs nothing");
        let nodes = [node(NodeRole::Worker, &["gpu"], NodeState::Active)];
        assert_eq!(waiting_reason(&gpu, &nodes), None);
        assert_eq!(waiting_reason(&gpu_nvenc, &nodes).as_deref(), Some("no live node has labels [gpu, nvenc]"));
    }

    #[test]
    fn only_a_process_of_this_machine_whose_pid_is_free_is_gone() {
        let me = this_process().expect("/proc says who this process is");
        let (machine, pid) = me.rsplit_once(' ').unwrap();
        assert_eq!(pid, std::process::id().to_string());
        // This process's own pid: an earlier start that had it is gone.
        assert!(process_is_gone(&me));
        // The parent (cargo's test harness, or a shell) is alive.
        let parent = std::os::unix::process::parent_id();
        assert!(!process_is_gone(&format!("{machine} {parent}")));
        // A pid above the kernel's maximum is free.
        assert!(process_is_gone(&format!("{machine} 4294967295")));
        // Another machine or pid namespace: not known.
        assert!(!process_is_gone("another-boot pid:[1] 4294967295"));
        assert!(!process_is_gone(""));
    }

    #[test]
    fn roles_parse_and_print() {
        for role in [NodeRole::All, NodeRole::Api, NodeRole::Worker] {
            assert_eq!(role.as_str().parse::<NodeRole>(), Ok(role));
        }
        assert_eq!("both".parse::<NodeRole>(), Err(UnknownRole("both".to_owned())));
    }
}

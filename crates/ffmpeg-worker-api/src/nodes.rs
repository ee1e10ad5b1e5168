//! The service itself: the nodes sharing the job store (`GET /workers`), liveness and
//! readiness.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// What a node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeRoleWire {
    /// Serves the API and runs jobs.
    All,
    /// Serves the API, runs no job.
    Api,
    /// Runs jobs; serves only `/health`, `/ready` and `/metrics`.
    Worker,
}

/// Whether a node is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeStateWire {
    /// Alive, claiming jobs (if its role runs any).
    Active,
    /// Shutting down: claims no new job, lets its running jobs finish (what is left when its
    /// grace ends goes back to the queue at once).
    Draining,
    /// No heartbeat for the lease (`LEASE_SECONDS`): presumed dead. Its jobs go back to the
    /// queue when their leases expire; it is removed after `NODE_RETENTION`.
    Lost,
}

/// A node (a server process) sharing the job store, as it published itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkerResponse {
    /// The node's id (`NODE_ID`).
    #[schema(example = "encoder-1-5f2a9c")]
    pub id: String,
    /// What it does (`NODE_ROLE`).
    pub role: NodeRoleWire,
    /// Its labels (`NODE_LABELS`), sorted.
    #[schema(example = json!(["gpu", "nvenc"]))]
    pub labels: Vec<String>,
    /// Its host name.
    #[schema(example = "encoder-1")]
    pub host: String,
    /// The ffmpeg-worker version it runs.
    #[schema(example = "0.1.0")]
    pub version: String,
    /// Its ffmpeg's version; null when unknown.
    #[schema(example = "5.1.9-0+deb12u1")]
    pub ffmpeg_version: Option<String>,
    /// Jobs it runs at once (`WORKER_CONCURRENCY`; 0 for an API node).
    pub slots: u32,
    /// The jobs it ran at its latest heartbeat.
    #[schema(example = json!(["job_3f9a0c1d2e4b5a69"]))]
    pub running_jobs: Vec<String>,
    /// When it started (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    /// Its latest heartbeat (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_heartbeat_at: OffsetDateTime,
    /// Alive, draining or lost.
    pub state: NodeStateWire,
}

/// Liveness answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// Always `ok` while the process serves requests.
    #[schema(example = "ok")]
    pub status: String,
}

/// Readiness answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadyResponse {
    /// `ready`.
    #[schema(example = "ready")]
    pub status: String,
    /// The version of the configured ffmpeg, as read at start-up.
    #[schema(example = "ffmpeg version 5.1.9-0+deb12u1")]
    pub ffmpeg: String,
}

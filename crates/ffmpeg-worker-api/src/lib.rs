//! The JSON shapes of ffmpeg-worker's HTTP API, defined once: the server serializes them and
//! generates its OpenAPI schemas from them (utoipa `ToSchema`), the Rust client
//! (`ffmpeg-worker-client`) deserializes them. This crate has no HTTP stack, no runtime and no
//! job logic; the server converts its domain types (`jobs::Job`, ...) into these.
//!
//! Field names stay compatible with the original design (`id`, `status`, `command`,
//! `created_at`, `started_at`, `completed_at`, `progress{frame,fps,time,bitrate,percent}`,
//! `output_files`, `error`); later fields are additions, and a reader accepts a job without them
//! (they default), so the client also reads a server that predates them.
//!
//! ```
//! use ffmpeg_worker_api::{JobResponse, JobStatusWire};
//!
//! let job: JobResponse = serde_json::from_str(
//!     r#"{"id": "job_3f9a0c1d2e4b5a69", "status": "running", "command": "-i in.mp4 out.webm",
//!         "created_at": "2026-11-30T02:00:00Z", "started_at": null, "completed_at": null,
//!         "progress": null, "output_files": [], "error": null}"#,
//! )?;
//! assert_eq!(job.status, JobStatusWire::Running);
//! assert!(!job.status.is_finished());
//! # Ok::<(), serde_json::Error>(())
//! ```

// One module per part of the API, every type re-exported at the crate root (its one public
// path): `job` (a submission, a job, its status and progress), `events` (server-sent progress
// events and webhooks), `media` (what is known of a media file), `files` (the files API),
// `nodes` (the nodes, liveness, readiness), `problem` (the error body), `client` (the client
// subcommands).
mod client;
mod events;
mod files;
mod job;
mod media;
mod nodes;
mod problem;

pub use client::{CLIENT_SUBCOMMANDS, ClientSubcommand};
pub use events::{
    DeliveryStateWire, ProgressEvent, WebhookAttemptResponse, WebhookDeliveryResponse, WebhookEventWire, WebhookPayload,
};
pub use files::{FileEntry, FileResponse};
pub use job::{
    CreateJobRequest, JobResponse, JobStatusWire, MAX_METADATA_ENTRIES, MAX_METADATA_KEY_CHARS,
    MAX_METADATA_VALUE_CHARS, PhaseWire, ProgressResponse, UnknownStatus,
};
pub use media::{MediaInfoResponse, MediaStreamResponse, OutputFileResponse};
pub use nodes::{HealthResponse, NodeRoleWire, NodeStateWire, ReadyResponse, WorkerResponse};
pub use problem::Problem;

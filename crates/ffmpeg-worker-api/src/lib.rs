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

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

// Sent by a client with `priority`, `timeout_seconds` and `metadata` only when they differ from
// their defaults, and with exactly one of `command` and `args`. (The doc comment is the OpenAPI
// description.)
/// A job submission: the ffmpeg arguments as one `command` string or as an `args` list (exactly
/// one of the two). Unknown fields are refused (422) so a typo is not silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"command": "-i input.mp4 -c:v libx264 -crf 23 -c:a aac output.mp4"}))]
pub struct CreateJobRequest {
    /// The ffmpeg command line without the word `ffmpeg`. Paths are relative to the data
    /// directory; quoting follows POSIX shell rules (no expansion). Exactly one of `command`
    /// and `args`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "-i input.mp4 -c:v libx264 -crf 23 -c:a aac output.mp4")]
    pub command: Option<String>,
    /// The ffmpeg arguments as a list, without the word `ffmpeg`: each element is one
    /// argument, taken as it is (no quoting rules, so `my clip.mp4` or a backslash needs no
    /// escaping). Exactly one of `command` and `args`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["-i", "my clip.mp4", "-c:v", "libx264", "out/clip.mp4"]))]
    pub args: Option<Vec<String>>,
    /// Scheduling priority: higher runs first, equal priorities in submission order.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schema(example = 0)]
    pub priority: i32,
    /// Wall-clock limit for one attempt of this job in seconds (1 to 2^63 - 1, a signed 64-bit
    /// integer), capped by the server's `FFMPEG_TIMEOUT`. With the files in a bucket it covers
    /// downloading the inputs, running ffmpeg and uploading the outputs together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 600, minimum = 1, format = Int64)]
    pub timeout_seconds: Option<u64>,
    /// Your own labels (at most 32 entries; keys 1 to 64 characters, values up to 1024
    /// characters), echoed back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = metadata_schema, example = json!({"asset_id": "a-42"}))]
    pub metadata: BTreeMap<String, String>,
    /// A URL told about this job's events: each event is POSTed to it as a signed
    /// `WebhookPayload` (Standard Webhooks headers `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`; see docs/api.md), retried until it answers 2xx. `http` or `https`
    /// only, at most 2048 bytes, and its host must be public (not loopback, private, link-local
    /// or metadata addresses) unless the server allows private ones. Refused (422) when the
    /// server has no `WEBHOOK_SECRET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "https://example.com/hooks/ffmpeg", max_length = 2048)]
    pub webhook_url: Option<String>,
    /// The events sent to `webhook_url` (needs it); default: `job.started`, `job.completed`,
    /// `job.failed`, `job.cancelled`. `job.progress` is sent only when listed, at most once a
    /// second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1)]
    pub webhook_events: Option<Vec<WebhookEventWire>>,
    /// Labels a node must have to run the job (`NODE_LABELS` of the worker nodes, e.g.
    /// `["gpu"]`): only a node having every one claims it. At most 16, each 1 to 64 of `a-z`,
    /// `0-9`, `-`, `_`, `.` starting with a letter or digit. Default: any node. The command's
    /// codec, format and filter names are checked against the ffmpeg of the live nodes that
    /// could take it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["gpu"]), max_items = 16)]
    pub requires: Vec<String>,
}

/// What happened to a job, as a webhook's `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum WebhookEventWire {
    /// A worker started the job.
    #[serde(rename = "job.started")]
    Started,
    /// The job completed.
    #[serde(rename = "job.completed")]
    Completed,
    /// The job failed.
    #[serde(rename = "job.failed")]
    Failed,
    /// The job was cancelled.
    #[serde(rename = "job.cancelled")]
    Cancelled,
    /// The running job reported progress (only when listed; at most once a second).
    #[serde(rename = "job.progress")]
    Progress,
}

/// Where a webhook delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStateWire {
    /// Not delivered yet; retried at `next_attempt_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed (the server's `WEBHOOK_MAX_ATTEMPTS`).
    Failed,
    /// The receiver answered `410 Gone`: no more attempts.
    Gone,
}

/// One attempt to deliver a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookAttemptResponse {
    /// When the request was sent (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// The receiver's HTTP status; null when no answer came.
    #[schema(example = 500)]
    pub status_code: Option<u16>,
    /// Why no answer came (timeout, network error, refused address); null otherwise.
    #[schema(example = json!(null))]
    pub error: Option<String>,
}

/// One webhook delivery: one event of a job for one URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDeliveryResponse {
    /// The `webhook-id` header: `msg_` + 32 hex digits, the same on every attempt.
    #[schema(example = "msg_6c1f0e9d4b2a4f7e8d3c2b1a09f8e7d6")]
    pub id: String,
    /// Where it goes: the job's `webhook_url`; null for the server's own `WEBHOOK_URL`
    /// (not disclosed).
    #[schema(example = "https://example.com/hooks/ffmpeg")]
    pub url: Option<String>,
    /// The event.
    #[serde(rename = "type")]
    pub type_: WebhookEventWire,
    /// When the event happened (RFC 3339, UTC): the payload's `timestamp`.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Where the delivery is.
    pub state: DeliveryStateWire,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<WebhookAttemptResponse>,
    /// When the next attempt is due (RFC 3339, UTC); null once delivered, failed or gone.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// The body of every webhook call (`POST` to the URL, `Content-Type: application/json`),
/// signed per the Standard Webhooks specification: `webhook-signature: v1,<base64 HMAC-SHA256
/// of "{webhook-id}.{webhook-timestamp}.{body}">` with the server's `WEBHOOK_SECRET`. The body
/// is the same on every attempt; dedupe on `webhook-id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookPayload {
    /// The event.
    #[serde(rename = "type")]
    pub type_: WebhookEventWire,
    /// When the event happened (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: OffsetDateTime,
    /// The job as the event left it, as `GET /jobs/{id}` shows it.
    pub data: JobResponse,
}

impl CreateJobRequest {
    /// A submission of the command line `command` (POSIX shell quoting), other fields default.
    pub fn command(command: impl Into<String>) -> CreateJobRequest {
        CreateJobRequest { command: Some(command.into()), ..CreateJobRequest::default() }
    }

    /// A submission of the argument list `args` (each element one argument), other fields
    /// default.
    pub fn args<I, S>(args: I) -> CreateJobRequest
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CreateJobRequest { args: Some(args.into_iter().map(Into::into).collect()), ..CreateJobRequest::default() }
    }
}

/// Most metadata entries a job may carry (the server's `jobs::model::MAX_METADATA_ENTRIES`;
/// a server test keeps the two equal).
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Longest metadata key, in characters.
pub const MAX_METADATA_KEY_CHARS: usize = 64;
/// Longest metadata value, in characters.
pub const MAX_METADATA_VALUE_CHARS: usize = 1024;

/// The schema of `metadata`: the limits the server checks, so the document and the server agree.
fn metadata_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Type};
    let string = |min: Option<usize>, max: usize| {
        ObjectBuilder::new().schema_type(Type::String).min_length(min).max_length(Some(max))
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(MAX_METADATA_ENTRIES))
        .property_names(Some(string(Some(1), MAX_METADATA_KEY_CHARS)))
        .additional_properties(Some(string(None, MAX_METADATA_VALUE_CHARS)))
        .build()
}

/// serde's `skip_serializing_if` passes a reference.
fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// A job's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatusWire {
    /// Waiting for a worker.
    Queued,
    /// ffmpeg is running.
    Running,
    /// ffmpeg exited successfully.
    Completed,
    /// ffmpeg failed, timed out, or the job was interrupted too often.
    Failed,
    /// Cancelled by a client.
    Cancelled,
}

impl JobStatusWire {
    /// Every status, in the order of a job's life.
    pub const ALL: [JobStatusWire; 5] = [
        JobStatusWire::Queued,
        JobStatusWire::Running,
        JobStatusWire::Completed,
        JobStatusWire::Failed,
        JobStatusWire::Cancelled,
    ];

    /// The status as it appears on the wire: `queued`, `running`, `completed`, `failed` or
    /// `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatusWire::Queued => "queued",
            JobStatusWire::Running => "running",
            JobStatusWire::Completed => "completed",
            JobStatusWire::Failed => "failed",
            JobStatusWire::Cancelled => "cancelled",
        }
    }

    /// Whether the status is final (completed, failed or cancelled): the job will not change again.
    pub fn is_finished(self) -> bool {
        !matches!(self, JobStatusWire::Queued | JobStatusWire::Running)
    }
}

impl fmt::Display for JobStatusWire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the five job statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status `{0}`: expected queued, running, completed, failed or cancelled")]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatusWire {
    type Err = UnknownStatus;

    /// Parses the wire form (`queued`, ...), exactly as [`JobStatusWire::as_str`] writes it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatusWire::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Live progress, from ffmpeg's `-progress` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressResponse {
    /// Frames written so far (0 for audio-only outputs).
    #[schema(example = 1234)]
    pub frame: u64,
    /// Frames encoded per second.
    #[schema(example = 30.24)]
    pub fps: f64,
    /// Output time reached, `HH:MM:SS.cc`.
    #[schema(example = "00:01:23.45")]
    pub time: String,
    /// Average output bitrate so far, e.g. `1250.5kbits/s` (`N/A` when unknown).
    #[schema(example = "1250.5kbits/s")]
    pub bitrate: String,
    /// Percent complete, 0 to 100; null when the expected output duration is unknown.
    #[schema(example = 69.54)]
    pub percent: Option<f64>,
    /// Encoding speed as a multiple of real time.
    #[schema(example = 2.5)]
    pub speed: Option<f64>,
    /// Output time reached, in seconds.
    #[schema(example = 83.45)]
    pub out_time_seconds: Option<f64>,
    /// Average output bitrate so far, in kbit/s.
    #[schema(example = 1250.5)]
    pub bitrate_kbits_per_s: Option<f64>,
    /// Bytes written so far.
    #[schema(example = 13_045_760)]
    pub total_size_bytes: Option<u64>,
    /// Estimated seconds until completion; null when unknown.
    #[schema(example = 14.6)]
    pub eta_seconds: Option<f64>,
    /// With files in a bucket (`STORAGE_URL=s3://...`): the step under way, `downloading` the
    /// inputs into the worker, `running` ffmpeg, `uploading` the outputs. Null (absent) when
    /// ffmpeg works on the data directory in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PhaseWire>,
}

/// The step of a job whose files are in a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseWire {
    /// The inputs are being downloaded from the bucket into the worker's staging directory.
    Downloading,
    /// ffmpeg runs.
    Running,
    /// The outputs are being uploaded into the bucket.
    Uploading,
}

/// The data of a `progress` server-sent event (`GET /jobs/{id}/events`, `GET /events`): the
/// progress JSON of [`ProgressResponse`], plus the id of the job it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressEvent {
    /// The job reporting progress.
    #[schema(example = "job_3f9a0c1d2e4b5a69")]
    pub job_id: String,
    /// The progress snapshot (its fields appear at the top level).
    #[serde(flatten)]
    pub progress: ProgressResponse,
}

/// A job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobResponse {
    /// `job_` followed by 16 lowercase hex digits.
    #[schema(example = "job_3f9a0c1d2e4b5a69")]
    pub id: String,
    /// Where the job is in its life.
    pub status: JobStatusWire,
    /// The command as one line: as submitted, or for a job submitted as `args`, those
    /// arguments joined with POSIX shell quoting (so that splitting it gives them back).
    #[schema(example = "-i input.mp4 -c:v libx264 -crf 23 -c:a aac output.mp4")]
    pub command: String,
    /// The command as an argument list: as submitted, or for a job submitted as `command`,
    /// that line split with POSIX shell rules, as the server read it.
    #[serde(default)]
    #[schema(example = json!(["-i", "input.mp4", "-c:v", "libx264", "-crf", "23", "-c:a", "aac", "output.mp4"]))]
    pub args: Vec<String>,
    /// Submission time (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Start of the latest run (RFC 3339, UTC).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<OffsetDateTime>,
    /// When the job reached its final status (RFC 3339, UTC).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<OffsetDateTime>,
    /// Latest progress; null until ffmpeg reports any.
    pub progress: Option<ProgressResponse>,
    /// Files the command produced, relative to the data directory (after completion).
    #[schema(example = json!(["output.mp4"]))]
    pub output_files: Vec<String>,
    /// What is known of each file in `output_files` (same order) once completed: size, format
    /// and streams from ffmpeg's own output listing, duration from its final progress (no
    /// ffprobe runs). Empty until completed, and for jobs completed by an older server.
    #[serde(default)]
    #[schema(required = true)]
    pub outputs: Vec<OutputFileResponse>,
    /// Why the job failed: the meaningful last lines of ffmpeg's log.
    #[schema(example = json!(null))]
    pub error: Option<String>,
    /// Scheduling priority.
    #[serde(default)]
    #[schema(required = true)]
    pub priority: i32,
    /// Wall-clock limit in seconds, if one was asked for.
    pub timeout_seconds: Option<u64>,
    /// Your labels, as submitted.
    #[serde(default)]
    #[schema(required = true)]
    pub metadata: BTreeMap<String, String>,
    /// How many times a worker has started this job.
    #[serde(default)]
    #[schema(required = true)]
    pub attempts: u32,
    /// The job's webhook URL, if it has one.
    #[serde(default)]
    #[schema(required = true, example = json!(null))]
    pub webhook_url: Option<String>,
    /// The events sent to `webhook_url`; null without one.
    #[serde(default)]
    #[schema(required = true, example = json!(null))]
    pub webhook_events: Option<Vec<WebhookEventWire>>,
    /// Labels a node must have to run the job, sorted; empty: any node.
    #[serde(default)]
    #[schema(required = true, example = json!([]))]
    pub requires: Vec<String>,
    /// Why a queued job cannot start now: it went back in the queue after an attempt failed
    /// for a reason that may pass (e.g. ``the storage `s3://media/jobs` is unavailable
    /// (attempt 1 of 3 failed: ...); next attempt at 20:31:07Z``: see `retry_at`), or no live
    /// node may take it (e.g. `no live node has labels [gpu]` or `no live worker node`). Null
    /// otherwise.
    #[serde(default)]
    #[schema(required = true, example = json!(null))]
    pub waiting_reason: Option<String>,
    /// For a queued job that went back in the queue after an attempt failed for a reason that
    /// may pass (the storage unavailable; the attempt counts towards `MAX_ATTEMPTS`): when its
    /// next attempt may start (RFC 3339, UTC, by the job store's clock). No worker takes it
    /// before; `waiting_reason` says why. Null when the job may start now, or is not queued.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(required = true, value_type = Option<String>, format = DateTime, example = json!(null))]
    pub retry_at: Option<OffsetDateTime>,
}

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

/// One file a completed job wrote. Values that ffmpeg's output listing, its final progress
/// and the file system do not tell are null: a file the listing does not name (an HLS
/// segment) has no `format` and no streams; `duration_seconds` is known only for the file of
/// a command's only output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"path": "output.mp4", "size_bytes": 1_504_315, "duration_seconds": 10.0, "format": "mp4",
    "streams": [{"index": 0, "type": "video", "codec": "h264", "profile": null, "width": 1280, "height": 720,
                 "frame_rate": 30.0, "pixel_format": "yuv420p", "sample_rate": null, "channels": null,
                 "channel_layout": null, "language": null, "duration_seconds": null, "bit_rate": null},
                {"index": 1, "type": "audio", "codec": "aac", "profile": "LC", "width": null, "height": null,
                 "frame_rate": null, "pixel_format": null, "sample_rate": 48000, "channels": 2,
                 "channel_layout": "stereo", "language": "eng", "duration_seconds": null, "bit_rate": 128_000}]}))]
pub struct OutputFileResponse {
    /// The file, relative to the data directory.
    pub path: String,
    /// Size in bytes after the run.
    pub size_bytes: u64,
    /// Duration in seconds (ffmpeg's final output time), for the file of a command's only output.
    pub duration_seconds: Option<f64>,
    /// The muxer that wrote it, e.g. `mp4`, `hls`, `image2`.
    pub format: Option<String>,
    /// Its streams as ffmpeg listed them before writing (`Stream #0:1(eng): Audio: aac (LC),
    /// 48000 Hz, stereo, ...`): `duration_seconds` is never known, and
    /// `bit_rate` is the encoder's target (for a stream copy, the input's) when ffmpeg printed
    /// one.
    pub streams: Vec<MediaStreamResponse>,
}

/// What ffprobe says about a media file of the data directory (`GET /probe/{path}`). Values
/// ffprobe does not report are null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"path": "in/a.mp4", "container": "mov,mp4,m4a,3gp,3g2,mj2",
    "container_long_name": "QuickTime / MOV", "duration_seconds": 10.01, "bit_rate": 2_557_442, "size_bytes": 3_200_000,
    "streams": [{"index": 0, "type": "video", "codec": "h264", "profile": "High", "width": 1280, "height": 720,
                 "frame_rate": 29.97, "pixel_format": "yuv420p", "sample_rate": null, "channels": null,
                 "channel_layout": null, "language": null, "duration_seconds": 10.01, "bit_rate": 2_400_000}]}))]
pub struct MediaInfoResponse {
    /// The path, relative to the data directory.
    pub path: String,
    /// The container format: ffprobe's `format_name`, e.g. `mov,mp4,m4a,3gp,3g2,mj2`,
    /// `matroska,webm`.
    pub container: String,
    /// The container's long name, e.g. `QuickTime / MOV`.
    pub container_long_name: Option<String>,
    /// Duration in seconds.
    pub duration_seconds: Option<f64>,
    /// Overall bit rate in bit/s.
    pub bit_rate: Option<u64>,
    /// File size in bytes.
    pub size_bytes: u64,
    /// The streams, in file order.
    pub streams: Vec<MediaStreamResponse>,
}

/// One stream of a media file: of a probed file (`GET /probe/{path}`, from ffprobe's
/// `-show_streams`), or of a file a job wrote (a job's `outputs`, from ffmpeg's own listing of
/// its outputs). Both say the same thing in the same names; what the source does not tell is
/// null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MediaStreamResponse {
    /// Index in the file (0-based), as in ffmpeg's `-map 0:N`.
    pub index: u32,
    /// `video`, `audio`, `subtitle`, `data` or `attachment`; null when ffmpeg does not know
    /// the type.
    #[serde(rename = "type")]
    #[schema(example = "video")]
    pub type_: Option<String>,
    /// Codec name, e.g. `h264`, `aac`.
    pub codec: Option<String>,
    /// Codec profile, e.g. `High`, `LC`.
    pub profile: Option<String>,
    /// Width in pixels (video).
    pub width: Option<u32>,
    /// Height in pixels (video).
    pub height: Option<u32>,
    /// Frames per second (video): ffprobe's exact average rate; ffmpeg's listing rounds to
    /// two decimals.
    pub frame_rate: Option<f64>,
    /// Pixel format, e.g. `yuv420p` (video).
    pub pixel_format: Option<String>,
    /// Samples per second, in Hz (audio).
    pub sample_rate: Option<u32>,
    /// Channel count (audio).
    pub channels: Option<u32>,
    /// Channel layout, e.g. `stereo` (audio).
    pub channel_layout: Option<String>,
    /// Language tag, e.g. `eng`; null when absent or `und`.
    pub language: Option<String>,
    /// Duration in seconds (probed files only).
    pub duration_seconds: Option<f64>,
    /// Bit rate in bit/s: a probed file's as ffprobe reports it; a written file's target
    /// bit rate, when ffmpeg printed one.
    pub bit_rate: Option<u64>,
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

/// A file just stored by `PUT /files/{path}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileResponse {
    /// Path relative to the data directory, in normal form.
    #[schema(example = "in/clip.mp4")]
    pub path: String,
    /// Size in bytes.
    #[schema(example = 1048576, format = Int64)]
    pub size_bytes: u64,
    /// SHA-256 of the content, lowercase hex.
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub sha256: String,
    /// Last modification (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub modified_at: OffsetDateTime,
    /// Content type from the extension (`application/octet-stream` when unknown).
    #[schema(example = "video/mp4")]
    pub content_type: String,
}

/// One file of `GET /files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileEntry {
    /// Path relative to the data directory.
    #[schema(example = "out/clip.webm")]
    pub path: String,
    /// Size in bytes.
    #[schema(example = 1048576, format = Int64)]
    pub size_bytes: u64,
    /// Last modification (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub modified_at: OffsetDateTime,
}

/// An RFC 9457 problem detail (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A stable identifier of the problem kind, e.g. `/problems/policy-violation`.
    #[serde(rename = "type")]
    #[schema(example = "/problems/policy-violation")]
    pub type_: String,
    /// Short summary of the problem kind.
    #[schema(example = "Refused by the security policy")]
    pub title: String,
    /// The HTTP status code.
    #[schema(example = 422)]
    pub status: u16,
    /// What exactly was wrong.
    #[schema(example = "argument 2 `../secret.mp4`: path escapes the data directory")]
    pub detail: String,
    /// For command errors: the 1-based position of the offending argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 2)]
    pub argument_position: Option<usize>,
    /// For command errors: the offending argument as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "../secret.mp4")]
    pub argument: Option<String>,
    /// For commands refused by the security policy, and file paths refused by the files API:
    /// the rule's stable id (`path-escapes`, `protocol`, `forbidden-option`,
    /// `forbidden-filter`, `forbidden-format`, `name-too-long`, ...; see docs/security.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "path-escapes")]
    pub rule: Option<String>,
}

/// One subcommand of the `ffmpeg-worker` command that the `ffmpeg-worker-client` program runs
/// ([`CLIENT_SUBCOMMANDS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubcommand {
    /// Its name: `ffmpeg-worker <name> ...`.
    pub name: &'static str,
    /// Its one-line help, as `ffmpeg-worker --help` and `ffmpeg-worker-client --help` show it.
    pub about: &'static str,
}

/// The client subcommands, defined once: the server binary hands each of them on to the
/// `ffmpeg-worker-client` program (which implements them) and lists them in its `--help`; the
/// client's own definitions are checked against this list by its tests.
pub const CLIENT_SUBCOMMANDS: &[ClientSubcommand] = &[
    ClientSubcommand { name: "submit", about: "Submit a job: `submit [--wait] -- -i in.mp4 out.webm`" },
    ClientSubcommand { name: "status", about: "Show a job: status, progress, outputs or error" },
    ClientSubcommand { name: "list", about: "List jobs, oldest first" },
    ClientSubcommand { name: "cancel", about: "Cancel a queued or running job" },
    ClientSubcommand { name: "delete", about: "Delete a finished job's record (its output files stay)" },
    ClientSubcommand { name: "logs", about: "Print a job's log (the tail of ffmpeg's stderr)" },
    ClientSubcommand {
        name: "wait",
        about: "Wait for a job to finish, showing its progress; exit 0 if it completed, 1 if not",
    },
    ClientSubcommand {
        name: "put",
        about: "Upload a local file to the server's data directory (REMOTE defaults to its file name)",
    },
    ClientSubcommand {
        name: "get",
        about: "Download a file from the server's data directory (LOCAL defaults to its file name)",
    },
    ClientSubcommand {
        name: "ls",
        about: "List files whose path starts with PREFIX (recursive; all files without PREFIX)",
    },
    ClientSubcommand { name: "rm", about: "Delete a file (a directory with --recursive)" },
    ClientSubcommand {
        name: "probe",
        about: "Describe a media file of the server's data directory (ffprobe on the server)",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_wire_names() {
        for status in JobStatusWire::ALL {
            let json = serde_json::to_string(&status).expect("serializes");
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(status.as_str().parse::<JobStatusWire>(), Ok(status));
        }
        assert_eq!("Queued".parse::<JobStatusWire>(), Err(UnknownStatus("Queued".to_owned())));
        let finished: Vec<_> = JobStatusWire::ALL.into_iter().filter(|s| s.is_finished()).collect();
        assert_eq!(finished, [JobStatusWire::Completed, JobStatusWire::Failed, JobStatusWire::Cancelled]);
    }

    #[test]
    fn a_submission_sends_only_what_differs_from_the_defaults() {
        let plain = CreateJobRequest::command("-i a.mp4 b.mp4");
        assert_eq!(serde_json::to_value(&plain).expect("json"), serde_json::json!({"command": "-i a.mp4 b.mp4"}));
        let argv = CreateJobRequest::args(["-i", "my clip.mp4", "b.mp4"]);
        assert_eq!(
            serde_json::to_value(&argv).expect("json"),
            serde_json::json!({"args": ["-i", "my clip.mp4", "b.mp4"]})
        );
        let full = CreateJobRequest {
            command: Some("-i a.mp4 b.mp4".to_owned()),
            args: None,
            priority: -3,
            timeout_seconds: Some(60),
            metadata: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
            webhook_url: Some("https://example.com/h".to_owned()),
            webhook_events: Some(vec![WebhookEventWire::Completed, WebhookEventWire::Progress]),
            requires: vec!["gpu".to_owned()],
        };
        let json = serde_json::to_string(&full).expect("json");
        assert_eq!(serde_json::from_str::<CreateJobRequest>(&json).expect("reads back"), full);
        let typo = serde_json::from_str::<CreateJobRequest>(r#"{"command": "x", "priorty": 1}"#);
        assert!(typo.is_err_and(|e| e.to_string().contains("unknown field `priorty`")));
    }

    #[test]
    fn a_job_without_the_later_fields_reads_with_defaults() {
        let job: JobResponse = serde_json::from_str(
            r#"{"id": "job_0123456789abcdef", "status": "completed", "command": "-i a.mp4 b.mp4",
                "created_at": "2026-11-30T02:00:00.5Z", "progress": {"frame": 25, "fps": 0.0,
                "time": "00:00:01.00", "bitrate": "N/A", "percent": 100.0},
                "output_files": ["b.mp4"], "error": null}"#,
        )
        .expect("reads");
        assert_eq!((job.priority, job.attempts, job.timeout_seconds), (0, 0, None));
        assert!(job.metadata.is_empty() && job.started_at.is_none() && job.completed_at.is_none());
        assert!(job.requires.is_empty() && job.waiting_reason.is_none());
        let progress = job.progress.as_ref().expect("progress");
        assert_eq!((progress.percent, progress.speed), (Some(100.0), None));
        let again: JobResponse = serde_json::from_str(&serde_json::to_string(&job).expect("json")).expect("reads");
        assert_eq!(again, job);
    }

    #[test]
    fn problems_round_trip_and_omit_absent_argument_fields() {
        let problem = Problem {
            type_: "/problems/not-found".to_owned(),
            title: "Not found".to_owned(),
            status: 404,
            detail: "job job_0000000000000000 not found".to_owned(),
            argument_position: None,
            argument: None,
            rule: None,
        };
        let json = serde_json::to_value(&problem).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"type": "/problems/not-found", "title": "Not found", "status": 404,
                               "detail": "job job_0000000000000000 not found"})
        );
        assert_eq!(serde_json::from_value::<Problem>(json).expect("reads"), problem);
    }
}

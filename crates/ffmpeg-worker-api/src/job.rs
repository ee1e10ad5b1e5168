//! A job on the wire: its submission ([`CreateJobRequest`]), the job as the server shows it
//! ([`JobResponse`]), its status and its live progress.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{OutputFileResponse, WebhookEventWire};

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
    /// node may take it (e.g. `no live node has labels [gpu]` or `no live worker node`), or
    /// an earlier job whose files conflict with its own holds it back (e.g. ``waits for
    /// job_3f9a0c1d2e4b5a69 (submitted earlier; it writes `ord1/g.mp4`)``), or every slot of
    /// the live nodes that may take it is busy (e.g. `the one slot of the live node that can
    /// take it is busy`), the first of these that applies. Null otherwise.
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
    /// The `Idempotency-Key` the job was submitted with (kept as long as the job's record);
    /// null when it was submitted without one.
    #[serde(default)]
    #[schema(required = true, example = json!(null))]
    pub idempotency_key: Option<String>,
}

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
}

//! Wire types: the JSON shapes of requests and responses, with their OpenAPI schemas.
//!
//! Field names stay compatible with the original design (`id`, `status`, `command`,
//! `created_at`, `started_at`, `completed_at`, `progress{frame,fps,time,bitrate,percent}`,
//! `output_files`, `error`); later fields are additions.

use std::collections::BTreeMap;

use jobs::{Job, JobStatus, Progress};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Most metadata entries a job may carry.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Longest metadata key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 64;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 1024;

/// A job submission. Unknown fields are refused (422) so a typo is not silently ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"command": "-i input.mp4 -c:v libx264 -crf 23 -c:a aac output.mp4"}))]
pub struct CreateJobRequest {
    /// The ffmpeg command line without the word `ffmpeg`. Paths are relative to the data
    /// directory; quoting follows POSIX shell rules (no expansion).
    #[schema(example = "-i input.mp4 -c:v libx264 -crf 23 -c:a aac output.mp4")]
    pub command: String,
    /// Scheduling priority: higher runs first, equal priorities in submission order.
    #[serde(default)]
    #[schema(example = 0)]
    pub priority: i32,
    /// Wall-clock limit for this job in seconds, capped by the server's `FFMPEG_TIMEOUT`.
    #[serde(default)]
    #[schema(example = 600, minimum = 1)]
    pub timeout_seconds: Option<u64>,
    /// Your own labels (at most 32 entries; keys up to 64 bytes, values up to 1024), echoed back.
    #[serde(default)]
    #[schema(example = json!({"asset_id": "a-42"}))]
    pub metadata: BTreeMap<String, String>,
}

/// A job's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

impl From<JobStatus> for JobStatusWire {
    fn from(s: JobStatus) -> Self {
        match s {
            JobStatus::Queued => JobStatusWire::Queued,
            JobStatus::Running => JobStatusWire::Running,
            JobStatus::Completed => JobStatusWire::Completed,
            JobStatus::Failed => JobStatusWire::Failed,
            JobStatus::Cancelled => JobStatusWire::Cancelled,
        }
    }
}

/// Live progress, from ffmpeg's `-progress` output.
#[derive(Debug, Clone, Serialize, ToSchema)]
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
}

/// `HH:MM:SS.cc` for a time in microseconds (negative clamps to 0).
pub fn format_time(us: i64) -> String {
    let centis = us.max(0) / 10_000;
    let (h, rest) = (centis / 360_000, centis % 360_000);
    let (m, rest) = (rest / 6_000, rest % 6_000);
    format!("{h:02}:{m:02}:{:02}.{:02}", rest / 100, rest % 100)
}

impl From<&Progress> for ProgressResponse {
    fn from(p: &Progress) -> Self {
        ProgressResponse {
            frame: p.frame.unwrap_or(0),
            fps: p.fps.unwrap_or(0.0),
            time: format_time(p.out_time_us.unwrap_or(0)),
            bitrate: p.bitrate_kbits_per_s.map_or_else(|| "N/A".to_owned(), |b| format!("{b:.1}kbits/s")),
            percent: p.percent,
            speed: p.speed,
            out_time_seconds: p.out_time_us.map(|us| us.max(0) as f64 / 1e6),
            bitrate_kbits_per_s: p.bitrate_kbits_per_s,
            total_size_bytes: p.total_size_bytes,
            eta_seconds: p.eta_seconds,
        }
    }
}

/// A job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobResponse {
    /// `job_` followed by 16 lowercase hex digits.
    #[schema(example = "job_3f9a0c1d2e4b5a69")]
    pub id: String,
    /// Where the job is in its life.
    pub status: JobStatusWire,
    /// The command as submitted.
    #[schema(example = "-i input.mp4 -c:v libx264 -crf 23 -c:a aac output.mp4")]
    pub command: String,
    /// Submission time (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Start of the latest run (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<OffsetDateTime>,
    /// When the job reached its final status (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<OffsetDateTime>,
    /// Latest progress; null until ffmpeg reports any.
    pub progress: Option<ProgressResponse>,
    /// Files the command produced, relative to the data directory (after completion).
    #[schema(example = json!(["output.mp4"]))]
    pub output_files: Vec<String>,
    /// Why the job failed: the meaningful last lines of ffmpeg's log.
    #[schema(example = json!(null))]
    pub error: Option<String>,
    /// Scheduling priority.
    pub priority: i32,
    /// Wall-clock limit in seconds, if one was asked for.
    pub timeout_seconds: Option<u64>,
    /// Your labels, as submitted.
    pub metadata: BTreeMap<String, String>,
    /// How many times a worker has started this job.
    pub attempts: u32,
}

impl From<Job> for JobResponse {
    fn from(j: Job) -> Self {
        JobResponse {
            id: j.id.to_string(),
            status: j.status.into(),
            command: j.command,
            created_at: j.created_at,
            started_at: j.started_at,
            completed_at: j.completed_at,
            progress: j.progress.as_ref().map(ProgressResponse::from),
            output_files: j.output_files,
            error: j.error,
            priority: j.priority,
            timeout_seconds: j.timeout_seconds,
            metadata: j.metadata,
            attempts: j.attempts,
        }
    }
}

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// Always `ok` while the process serves requests.
    #[schema(example = "ok")]
    pub status: String,
}

/// Readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyResponse {
    /// `ready`.
    #[schema(example = "ready")]
    pub status: String,
    /// The ffmpeg version line of the configured binary.
    #[schema(example = "ffmpeg version 5.1.9-0+deb12u1")]
    pub ffmpeg: String,
}

/// An RFC 9457 problem detail (`application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 2)]
    pub argument_position: Option<usize>,
    /// For command errors: the offending argument as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "../secret.mp4")]
    pub argument: Option<String>,
    /// For commands refused by the security policy: the rule's stable id (`path-escapes`,
    /// `protocol`, `forbidden-option`, `forbidden-filter`, `forbidden-format`, ...; see
    /// docs/security.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "path-escapes")]
    pub rule: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn time_format() {
        for (us, expected) in [
            (0, "00:00:00.00"),
            (-5_000_000, "00:00:00.00"),
            (83_450_000, "00:01:23.45"),
            (3_600_000_000, "01:00:00.00"),
            (359_999_990_000, "99:59:59.99"),
            (1_999, "00:00:00.00"),
            (10_000, "00:00:00.01"),
        ] {
            assert_eq!(format_time(us), expected, "{us}");
        }
    }
}

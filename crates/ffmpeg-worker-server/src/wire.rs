//! Wire types: the JSON shapes of requests and responses are defined once, with their
//! OpenAPI schemas, in the `ffmpeg-worker-api` crate (re-exported here), which the Rust client
//! shares. This module converts the domain types of `jobs` into them.

pub use ffmpeg_worker_api::{
    CreateJobRequest, HealthResponse, JobResponse, JobStatusWire, Problem, ProgressResponse, ReadyResponse,
};
use jobs::{Job, JobStatus, Progress};

/// The wire form of a job status.
pub fn status_wire(s: JobStatus) -> JobStatusWire {
    match s {
        JobStatus::Queued => JobStatusWire::Queued,
        JobStatus::Running => JobStatusWire::Running,
        JobStatus::Completed => JobStatusWire::Completed,
        JobStatus::Failed => JobStatusWire::Failed,
        JobStatus::Cancelled => JobStatusWire::Cancelled,
    }
}

/// `HH:MM:SS.cc` for a time in microseconds (negative clamps to 0).
pub fn format_time(us: i64) -> String {
    let centis = us.max(0) / 10_000;
    let (h, rest) = (centis / 360_000, centis % 360_000);
    let (m, rest) = (rest / 6_000, rest % 6_000);
    format!("{h:02}:{m:02}:{:02}.{:02}", rest / 100, rest % 100)
}

/// The wire form of a progress snapshot.
pub fn progress_response(p: &Progress) -> ProgressResponse {
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

/// The wire form of a job.
pub fn job_response(j: Job) -> JobResponse {
    JobResponse {
        id: j.id.to_string(),
        status: status_wire(j.status),
        command: j.command,
        created_at: j.created_at,
        started_at: j.started_at,
        completed_at: j.completed_at,
        progress: j.progress.as_ref().map(progress_response),
        output_files: j.output_files,
        error: j.error,
        priority: j.priority,
        timeout_seconds: j.timeout_seconds,
        metadata: j.metadata,
        attempts: j.attempts,
    }
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

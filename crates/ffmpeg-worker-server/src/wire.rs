//! Wire types: the JSON shapes of requests and responses are defined once, with their
//! OpenAPI schemas, in the `ffmpeg-worker-api` crate (re-exported here), which the Rust client
//! shares. This module converts the domain types of `jobs` into them.

use ffmpeg_core::stream::{StreamInfo, StreamKind};
pub use ffmpeg_worker_api::{
    CreateJobRequest, DeliveryStateWire, FileEntry, FileResponse, HealthResponse, JobResponse, JobStatusWire,
    MediaInfoResponse, MediaStreamResponse, NodeRoleWire, NodeStateWire, OutputFileResponse, PhaseWire, Problem,
    ProgressEvent, ProgressResponse, ReadyResponse, WebhookAttemptResponse, WebhookDeliveryResponse, WebhookEventWire,
    WebhookPayload, WorkerResponse,
};
use jobs::media::MediaInfo;
use jobs::model::{OutputFile, Phase};
use jobs::nodes::{Node, NodeRole, NodeState};
use jobs::webhook::{Delivery, DeliveryState, SubscriptionSource, WebhookEvent};
use jobs::{Job, JobId, JobStatus, Progress};

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

/// The data of a `progress` server-sent event: `job`'s snapshot `p`.
pub fn progress_event(job: &JobId, p: &Progress) -> ProgressEvent {
    ProgressEvent { job_id: job.to_string(), progress: progress_response(p) }
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
        phase: p.phase.map(|phase| match phase {
            Phase::Downloading => PhaseWire::Downloading,
            Phase::Running => PhaseWire::Running,
            Phase::Uploading => PhaseWire::Uploading,
        }),
    }
}

/// The wire form of a webhook event.
pub fn event_wire(e: WebhookEvent) -> WebhookEventWire {
    match e {
        WebhookEvent::Started => WebhookEventWire::Started,
        WebhookEvent::Completed => WebhookEventWire::Completed,
        WebhookEvent::Failed => WebhookEventWire::Failed,
        WebhookEvent::Cancelled => WebhookEventWire::Cancelled,
        WebhookEvent::Progress => WebhookEventWire::Progress,
    }
}

/// The domain form of a webhook event.
pub fn event_domain(e: WebhookEventWire) -> WebhookEvent {
    match e {
        WebhookEventWire::Started => WebhookEvent::Started,
        WebhookEventWire::Completed => WebhookEvent::Completed,
        WebhookEventWire::Failed => WebhookEvent::Failed,
        WebhookEventWire::Cancelled => WebhookEvent::Cancelled,
        WebhookEventWire::Progress => WebhookEvent::Progress,
    }
}

/// The wire form of a webhook delivery (the server's own `WEBHOOK_URL` is not disclosed).
pub fn delivery_response(d: Delivery) -> WebhookDeliveryResponse {
    WebhookDeliveryResponse {
        id: d.id.to_string(),
        url: (d.source == SubscriptionSource::Job).then_some(d.url),
        type_: event_wire(d.event),
        created_at: d.created_at,
        state: match d.state {
            DeliveryState::Pending => DeliveryStateWire::Pending,
            DeliveryState::Delivered => DeliveryStateWire::Delivered,
            DeliveryState::Failed => DeliveryStateWire::Failed,
            DeliveryState::Gone => DeliveryStateWire::Gone,
        },
        attempts: d
            .attempts
            .into_iter()
            .map(|a| WebhookAttemptResponse { at: a.at, status_code: a.status_code, error: a.error })
            .collect(),
        next_attempt_at: d.next_attempt_at,
    }
}

/// The body of a webhook call: `{"type", "timestamp", "data": <job>}`, the same bytes on every
/// attempt of a delivery (the job is the one stored with it).
pub fn webhook_body(d: &Delivery) -> Vec<u8> {
    let payload =
        WebhookPayload { type_: event_wire(d.event), timestamp: d.created_at, data: job_response(d.job.clone()) };
    // Serializing plain data with string keys cannot fail.
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// The wire form of a job.
pub fn job_response(j: Job) -> JobResponse {
    let own = j.own_webhook().cloned();
    // No `phase` once the job ended: what was under way is over.
    let progress = j.shown_progress();
    let retry_at = j.retry_pending(time::OffsetDateTime::now_utc());
    JobResponse {
        id: j.id.to_string(),
        status: status_wire(j.status),
        args: j.args(),
        command: j.command,
        created_at: j.created_at,
        started_at: j.started_at,
        completed_at: j.completed_at,
        progress: progress.as_ref().map(progress_response),
        output_files: j.output_files,
        outputs: j.outputs.iter().map(output_file_response).collect(),
        error: j.error,
        priority: j.priority,
        timeout_seconds: j.timeout_seconds,
        metadata: j.metadata,
        attempts: j.attempts,
        webhook_url: own.as_ref().map(|s| s.url.clone()),
        webhook_events: own.map(|s| s.events.into_iter().map(event_wire).collect()),
        requires: j.requires,
        waiting_reason: j.waiting_reason,
        retry_at,
        idempotency_key: j.idempotency.map(|i| i.key.into()),
    }
}

/// The wire form of a node of the registry.
pub fn worker_response(n: Node) -> WorkerResponse {
    WorkerResponse {
        id: n.id,
        role: match n.role {
            NodeRole::All => NodeRoleWire::All,
            NodeRole::Api => NodeRoleWire::Api,
            NodeRole::Worker => NodeRoleWire::Worker,
        },
        labels: n.labels,
        host: n.host,
        version: n.version,
        ffmpeg_version: n.ffmpeg_version,
        slots: n.slots,
        running_jobs: n.running_jobs.iter().map(ToString::to_string).collect(),
        started_at: n.started_at,
        last_heartbeat_at: n.last_heartbeat_at,
        state: match n.state {
            NodeState::Active => NodeStateWire::Active,
            NodeState::Draining => NodeStateWire::Draining,
            NodeState::Lost => NodeStateWire::Lost,
        },
    }
}

/// The wire form of what is known of one written file.
pub fn output_file_response(o: &OutputFile) -> OutputFileResponse {
    OutputFileResponse {
        path: o.path.clone(),
        size_bytes: o.size_bytes,
        duration_seconds: o.duration_seconds,
        format: o.format.clone(),
        streams: o.streams.iter().map(stream_response).collect(),
    }
}

/// The wire form of a media description.
pub fn media_info_response(m: &MediaInfo) -> MediaInfoResponse {
    MediaInfoResponse {
        path: m.path.clone(),
        container: m.format_name.clone(),
        container_long_name: m.format_long_name.clone(),
        duration_seconds: m.duration_seconds,
        bit_rate: m.bit_rate,
        size_bytes: m.size_bytes,
        streams: m.streams.iter().map(stream_response).collect(),
    }
}

/// The wire form of one stream, probed or written: the same fields under the same names.
pub fn stream_response(s: &StreamInfo) -> MediaStreamResponse {
    MediaStreamResponse {
        index: s.index,
        type_: (s.kind != StreamKind::Unknown).then(|| s.kind.as_str().to_owned()),
        codec: s.codec.clone(),
        profile: s.profile.clone(),
        width: s.width,
        height: s.height,
        frame_rate: s.frame_rate,
        pixel_format: s.pixel_format.clone(),
        sample_rate: s.sample_rate,
        channels: s.channels,
        channel_layout: s.channel_layout.clone(),
        language: s.language.clone(),
        duration_seconds: s.duration_seconds,
        bit_rate: s.bit_rate,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{format_time, job_response};
    use jobs::model::Phase;
    use jobs::{Job, JobStatus, Progress};

    /// A staged job's step is shown while it runs, and never once it ended or went back to
    /// the queue, whatever step the store's last snapshot was taken in (tester finding F7).
    #[test]
    fn a_phase_is_shown_only_while_the_job_runs() {
        let mut job = Job::new_queued(
            "-i a.mp4 b.mp4".to_owned(),
            jobs::SubmitOptions::default(),
            1,
            time::OffsetDateTime::UNIX_EPOCH,
        );
        for phase in [Phase::Downloading, Phase::Running, Phase::Uploading] {
            job.progress = Some(Progress { frame: Some(3), phase: Some(phase), ..Progress::default() });
            for status in
                [JobStatus::Queued, JobStatus::Running, JobStatus::Completed, JobStatus::Failed, JobStatus::Cancelled]
            {
                job.status = status;
                let wire = serde_json::to_value(job_response(job.clone())).unwrap();
                let shown = &wire["progress"]["phase"];
                if status == JobStatus::Running {
                    assert_eq!(shown, &serde_json::to_value(phase).unwrap(), "{status}");
                } else {
                    assert!(shown.is_null(), "{status} {phase:?}: {wire}");
                    assert_eq!(wire["progress"]["frame"], 3, "the rest of the snapshot stays");
                }
            }
        }
    }

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

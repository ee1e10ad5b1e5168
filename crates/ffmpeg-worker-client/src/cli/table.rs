//! Jobs as text: the fields of one job (`status`) and the table of many (`list`).

use ffmpeg_worker_client::api::{JobResponse, JobStatusWire, MediaInfoResponse, PhaseWire, ProgressResponse};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::progress::{human_duration, staged_step};

/// The progress summary of `status`: `42.0% frame 151 fps 75.0 time ... speed 2.5x eta 2s`
/// (frame and fps left out while no frame was written, as for audio; bitrate when known).
fn progress_summary(p: &ProgressResponse) -> String {
    let mut parts = Vec::new();
    if let Some(percent) = p.percent.filter(|p| p.is_finite()) {
        parts.push(format!("{percent:.1}%"));
    }
    if p.frame > 0 {
        parts.push(format!("frame {} fps {:.1}", p.frame, p.fps));
    }
    parts.push(format!("time {}", p.time));
    if p.bitrate != "N/A" {
        parts.push(format!("bitrate {}", p.bitrate));
    }
    if let Some(speed) = p.speed.filter(|s| s.is_finite()) {
        parts.push(format!("speed {speed:.1}x"));
    }
    if let Some(eta) = p.eta_seconds.filter(|e| e.is_finite() && *e >= 0.0) {
        parts.push(format!("eta {}", human_duration(eta)));
    }
    parts.join(" ")
}

/// The fields `status` shows, in order; the optional ones only when set.
fn job_fields(job: &JobResponse) -> Vec<(&'static str, String)> {
    let mut fields =
        vec![("id", job.id.clone()), ("status", job.status.as_str().to_owned()), ("command", name(&job.command))];
    if job.priority != 0 {
        fields.push(("priority", job.priority.to_string()));
    }
    if let Some(t) = job.timeout_seconds {
        fields.push(("timeout", format!("{t}s")));
    }
    fields.push(("created", whole_seconds(job.created_at)));
    for (name, value) in [("started", job.started_at), ("finished", job.completed_at)] {
        if let Some(v) = value {
            fields.push((name, whole_seconds(v)));
        }
    }
    if !job.requires.is_empty() {
        fields.push(("requires", job.requires.join(", ")));
    }
    if let Some(reason) = &job.waiting_reason {
        fields.push(("waiting", reason.clone()));
    }
    if job.attempts > 1 {
        fields.push(("attempts", job.attempts.to_string()));
    }
    if let Some(p) = &job.progress {
        // A staged job's step first: ffmpeg's figures stay at their last values meanwhile.
        let summary = match staged_step(job) {
            Some(step) => format!("{step} (ffmpeg: {})", progress_summary(p)),
            None => progress_summary(p),
        };
        fields.push(("progress", summary));
    }
    if !job.output_files.is_empty() {
        // One line each, whatever a name holds.
        let names: Vec<String> = job.output_files.iter().map(|file| name(file)).collect();
        fields.push(("outputs", names.join("\n")));
    }
    if !job.metadata.is_empty() {
        let labels: Vec<String> = job.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
        fields.push(("metadata", labels.join("\n")));
    }
    if let Some(e) = &job.error {
        fields.push(("error", e.trim_end().to_owned()));
    }
    fields
}

/// `name      value`, continuation lines of a value indented under it.
fn format_fields(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(n, _)| n.len()).max().unwrap_or(0) + 2;
    let mut text = String::new();
    for (name, value) in fields {
        let mut lines = value.lines();
        text.push_str(&format!("{name:<width$}{}\n", lines.next().unwrap_or_default()));
        for line in lines {
            text.push_str(&format!("{:width$}{line}\n", ""));
        }
    }
    text
}

/// One job, as `status` prints it.
pub(crate) fn job_text(job: &JobResponse) -> String {
    format_fields(&job_fields(job))
}

/// A media description, as `probe` prints it: a line for the file, one per stream.
///
/// ```text
/// in/clip.mp4: mov,mp4,m4a,3gp,3g2,mj2 (QuickTime / MOV), 10.01 s, 2557 kbit/s, 3200000 bytes
///   #0 video: h264 (High), 1280x720, 29.97 fps, yuv420p, 2400 kbit/s
///   #1 audio: aac (LC), 48000 Hz, stereo, 2 channels, eng, 128 kbit/s
/// ```
pub(crate) fn media_text(media: &MediaInfoResponse) -> String {
    let kbits = |b: u64| format!("{} kbit/s", (b as f64 / 1000.0).round());
    let mut head = vec![match &media.container_long_name {
        Some(long) => format!("{} ({long})", media.container),
        None => media.container.clone(),
    }];
    if let Some(d) = media.duration_seconds {
        head.push(format!("{d:.2} s"));
    }
    if let Some(b) = media.bit_rate {
        head.push(kbits(b));
    }
    head.push(format!("{} bytes", media.size_bytes));
    let mut text = format!("{}: {}\n", name(&media.path), head.join(", "));
    for s in &media.streams {
        let mut parts = Vec::new();
        let codec = s.codec.clone().unwrap_or_else(|| "unknown codec".to_owned());
        parts.push(match &s.profile {
            Some(profile) => format!("{codec} ({profile})"),
            None => codec,
        });
        if let (Some(w), Some(h)) = (s.width, s.height) {
            parts.push(format!("{w}x{h}"));
        }
        if let Some(fps) = s.frame_rate {
            parts.push(format!("{} fps", (fps * 100.0).round() / 100.0));
        }
        parts.extend(s.pixel_format.clone());
        if let Some(rate) = s.sample_rate {
            parts.push(format!("{rate} Hz"));
        }
        parts.extend(s.channel_layout.clone());
        if let Some(n) = s.channels {
            parts.push(format!("{n} channel{}", if n == 1 { "" } else { "s" }));
        }
        parts.extend(s.language.clone());
        if let Some(d) = s.duration_seconds.filter(|_| media.streams.len() > 1) {
            parts.push(format!("{d:.2} s"));
        }
        if let Some(b) = s.bit_rate {
            parts.push(kbits(b));
        }
        let kind = s.type_.as_deref().unwrap_or("stream");
        text.push_str(&format!("  #{} {kind}: {}\n", s.index, parts.join(", ")));
    }
    text
}

/// A time in UTC to the second: `2024-05-01T10:00:00Z`.
pub(crate) fn whole_seconds(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// The `list` table: a header and one row per job; `no jobs` when there are none.
pub(crate) fn jobs_table(jobs: &[JobResponse]) -> String {
    if jobs.is_empty() {
        return "no jobs\n".to_owned();
    }
    let mut text = format!("{:<20}  {:<9}  {:>8}  {:<20}  {}\n", "ID", "STATUS", "PROGRESS", "CREATED", "COMMAND");
    for job in jobs {
        let progress = match (job.status, job.progress.as_ref().and_then(|p| p.percent)) {
            // A staged job's step ([`staged_step`]), in a word that fits the column.
            (JobStatusWire::Running, _) if staged_step(job).is_some() => {
                let downloading = job.progress.as_ref().and_then(|p| p.phase) == Some(PhaseWire::Downloading);
                (if downloading { "download" } else { "upload" }).to_owned()
            }
            (JobStatusWire::Running, Some(p)) if p.is_finite() => format!("{p:.1}%"),
            (JobStatusWire::Running, _) => "?".to_owned(),
            _ => String::new(),
        };
        text.push_str(&format!(
            "{:<20}  {:<9}  {:>8}  {:<20}  {}\n",
            job.id,
            job.status.as_str(),
            progress,
            whole_seconds(job.created_at),
            name(&job.command)
        ));
    }
    text
}

/// `text` on one line, control characters escaped ([`crate::shown::name`]).
fn name(text: &str) -> String {
    crate::shown::name(text).into_owned()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::progress::tests::{job, progress};

    #[test]
    fn a_media_description_reads_as_one_line_per_stream() {
        use ffmpeg_worker_client::api::MediaStreamResponse;
        let stream = |index, type_: &str| MediaStreamResponse {
            index,
            type_: Some(type_.to_owned()),
            codec: None,
            profile: None,
            width: None,
            height: None,
            frame_rate: None,
            pixel_format: None,
            sample_rate: None,
            channels: None,
            channel_layout: None,
            language: None,
            duration_seconds: None,
            bit_rate: None,
        };
        let media = MediaInfoResponse {
            path: "in/clip.mp4".to_owned(),
            container: "mov,mp4,m4a,3gp,3g2,mj2".to_owned(),
            container_long_name: Some("QuickTime / MOV".to_owned()),
            duration_seconds: Some(10.01),
            bit_rate: Some(2_557_442),
            size_bytes: 3_200_000,
            streams: vec![
                MediaStreamResponse {
                    codec: Some("h264".to_owned()),
                    profile: Some("High".to_owned()),
                    width: Some(1280),
                    height: Some(720),
                    frame_rate: Some(30000.0 / 1001.0),
                    pixel_format: Some("yuv420p".to_owned()),
                    duration_seconds: Some(10.01),
                    bit_rate: Some(2_400_000),
                    ..stream(0, "video")
                },
                MediaStreamResponse {
                    codec: Some("aac".to_owned()),
                    sample_rate: Some(48000),
                    channels: Some(1),
                    channel_layout: Some("mono".to_owned()),
                    language: Some("eng".to_owned()),
                    ..stream(1, "audio")
                },
                MediaStreamResponse { type_: None, ..stream(2, "") },
            ],
        };
        assert_eq!(
            media_text(&media),
            "in/clip.mp4: mov,mp4,m4a,3gp,3g2,mj2 (QuickTime / MOV), 10.01 s, 2557 kbit/s, 3200000 bytes\n  \
             #0 video: h264 (High), 1280x720, 29.97 fps, yuv420p, 10.01 s, 2400 kbit/s\n  \
             #1 audio: aac, 48000 Hz, mono, 1 channel, eng\n  \
             #2 stream: unknown codec\n"
        );
    }

    #[test]
    fn times_are_shown_to_the_second_in_utc() {
        for (given, shown) in [
            (datetime!(2026-11-29 12:03:53.462646466 UTC), "2026-11-29T12:03:53Z"),
            (datetime!(2026-11-29 13:03:53 +01:00), "2026-11-29T12:03:53Z"),
        ] {
            assert_eq!(whole_seconds(given), shown);
        }
    }

    #[test]
    fn status_text() {
        let mut j = job(JobStatusWire::Failed, Some(progress(Some(12.5), None, None)));
        j.error = Some("missing.mp4: No such file or directory\nsecond line\n".to_owned());
        j.metadata.insert("asset".to_owned(), "a-42".to_owned());
        assert_eq!(
            job_text(&j),
            "id        job_0123456789abcdef\n\
             status    failed\n\
             command   -i in.mp4 out.mp4\n\
             created   1970-01-01T00:00:00Z\n\
             progress  12.5% time 00:00:05.03\n\
             metadata  asset=a-42\n\
             error     missing.mp4: No such file or directory\n\
             \x20         second line\n"
        );
        let mut full = progress(Some(100.0), Some(2.5), Some(0.0));
        (full.frame, full.fps, full.bitrate) = (25, 75.0, "412.3kbits/s".to_owned());
        assert_eq!(
            progress_summary(&full),
            "100.0% frame 25 fps 75.0 time 00:00:05.03 bitrate 412.3kbits/s speed 2.5x eta 0s"
        );
    }

    #[test]
    fn status_text_says_which_step_a_staged_job_is_at() {
        let mut p = progress(Some(99.9), Some(103.0), None);
        p.phase = Some(PhaseWire::Uploading);
        let j = job(JobStatusWire::Running, Some(p));
        assert!(
            job_text(&j).contains("progress  uploading the outputs (ffmpeg: 99.9% time 00:00:05.03 speed 103.0x)\n"),
            "{}",
            job_text(&j)
        );
    }

    #[test]
    fn status_text_says_what_a_job_requires_and_why_it_waits() {
        let mut j = job(JobStatusWire::Queued, None);
        j.requires = vec!["gpu".to_owned(), "nvenc".to_owned()];
        j.waiting_reason = Some("no live node has labels [gpu, nvenc]".to_owned());
        assert_eq!(
            job_text(&j),
            "id        job_0123456789abcdef\n\
             status    queued\n\
             command   -i in.mp4 out.mp4\n\
             created   1970-01-01T00:00:00Z\n\
             requires  gpu, nvenc\n\
             waiting   no live node has labels [gpu, nvenc]\n"
        );
    }

    #[test]
    fn names_from_the_server_are_shown_on_one_line_with_control_characters_escaped() {
        let mut j = job(JobStatusWire::Completed, None);
        j.command = "-i in.mp4 'a\u{1b}]0;x\u{7}.mp4'".to_owned();
        j.output_files = vec!["a\u{1b}]0;x\u{7}.mp4".to_owned(), "b\nstatus    failed.mp4".to_owned()];
        let text = job_text(&j);
        assert!(text.contains(" -i in.mp4 'a\\u{1b}]0;x\\u{7}.mp4'\n"), "{text}");
        assert!(text.contains(" a\\u{1b}]0;x\\u{7}.mp4\n"), "{text}");
        assert!(text.contains(" b\\nstatus    failed.mp4\n"), "{text}");
        assert!(!text.contains('\u{1b}') && !text.contains("\nstatus    failed"), "{text}");
        let table = jobs_table(&[j]);
        assert!(
            table.lines().nth(1).is_some_and(|line| line.ends_with("-i in.mp4 'a\\u{1b}]0;x\\u{7}.mp4'")),
            "{table}"
        );
    }

    #[test]
    fn table_text() {
        assert_eq!(jobs_table(&[]), "no jobs\n");
        let table = jobs_table(&[
            job(JobStatusWire::Running, Some(progress(Some(42.0), None, None))),
            job(JobStatusWire::Running, None),
            job(JobStatusWire::Queued, None),
            job(
                JobStatusWire::Running,
                Some(ProgressResponse { phase: Some(PhaseWire::Uploading), ..progress(Some(99.9), None, None) }),
            ),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "ID                    STATUS     PROGRESS  CREATED               COMMAND");
        assert_eq!(lines[1], "job_0123456789abcdef  running       42.0%  1970-01-01T00:00:00Z  -i in.mp4 out.mp4");
        assert_eq!(lines[2], "job_0123456789abcdef  running           ?  1970-01-01T00:00:00Z  -i in.mp4 out.mp4");
        assert_eq!(lines[3], "job_0123456789abcdef  queued               1970-01-01T00:00:00Z  -i in.mp4 out.mp4");
        assert_eq!(lines[4], "job_0123456789abcdef  running      upload  1970-01-01T00:00:00Z  -i in.mp4 out.mp4");
    }
}

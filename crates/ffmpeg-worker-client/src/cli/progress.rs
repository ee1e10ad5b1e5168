//! Live progress of an awaited job: an indicatif bar (or a spinner while the percent is
//! unknown) on a terminal; otherwise plain lines, `job_x running 42.0% speed 2.1x eta 12s`, one
//! per status change, per new tenth of the percent, and at least every 10 s while running. A
//! queued job that no node can take says why (`job_x queued (waiting: no live node has labels
//! [gpu])`), again whenever the reason changes. A job whose files are in a bucket says when it
//! downloads its inputs or uploads its outputs (`job_x running: uploading the outputs`), as
//! its progress's `phase` tells, instead of ffmpeg's last figures (tester finding G19).

use std::io::{self, IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use ffmpeg_worker_client::api::{JobResponse, JobStatusWire, PhaseWire};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// While running, a plain progress line is printed at least this often.
const LINE_HEARTBEAT: Duration = Duration::from_secs(10);
/// Bar positions per percent (the bar counts tenths of a percent).
const BAR_SCALE: f64 = 10.0;

/// Where progress goes: stdout, or stderr when stdout carries JSON.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn is_terminal(self) -> bool {
        let tty = match self {
            Stream::Stdout => io::stdout().is_terminal(),
            Stream::Stderr => io::stderr().is_terminal(),
        };
        tty && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
    }

    fn line(self, text: &str) -> io::Result<()> {
        let text = crate::shown::text(text);
        match self {
            Stream::Stdout => writeln!(io::stdout().lock(), "{text}"),
            Stream::Stderr => writeln!(io::stderr().lock(), "{text}"),
        }
    }
}

/// Live progress of a job: a bar on a terminal, plain lines otherwise.
pub(crate) enum Reporter {
    Bar(BarReporter),
    Lines(LineReporter),
}

impl Reporter {
    pub(crate) fn new(stream: Stream, id: &str) -> Reporter {
        if stream.is_terminal() {
            let target = match stream {
                Stream::Stdout => ProgressDrawTarget::stdout(),
                Stream::Stderr => ProgressDrawTarget::stderr(),
            };
            let bar =
                ProgressBar::with_draw_target(None, target).with_style(bar_style(false)).with_prefix(id.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            Reporter::Bar(BarReporter { bar, determinate: false })
        } else {
            Reporter::Lines(LineReporter { stream, last: None, failing: false })
        }
    }

    /// Shows a new snapshot of the job.
    pub(crate) fn update(&mut self, job: &JobResponse) -> io::Result<()> {
        match self {
            Reporter::Bar(bar) => {
                bar.update(job);
                Ok(())
            }
            Reporter::Lines(lines) => lines.update(job, Instant::now()),
        }
    }

    /// A passing condition (e.g. the server is unreachable and polling retries).
    pub(crate) fn note(&mut self, id: &str, text: &str) -> io::Result<()> {
        match self {
            Reporter::Bar(bar) => {
                bar.bar.set_message(text.to_owned());
                Ok(())
            }
            Reporter::Lines(lines) if !lines.failing => {
                lines.failing = true;
                lines.stream.line(&format!("{id} {text}"))
            }
            Reporter::Lines(_) => Ok(()),
        }
    }

    /// Clears the bar (plain lines stay).
    pub(crate) fn finish(&mut self) {
        if let Reporter::Bar(bar) = self {
            bar.bar.finish_and_clear();
        }
    }
}

pub(crate) struct BarReporter {
    bar: ProgressBar,
    /// Whether a bar (percent known) is shown rather than a spinner.
    determinate: bool,
}

impl BarReporter {
    fn update(&mut self, job: &JobResponse) {
        if job.status.is_finished() {
            // The bar is cleared and the caller prints how the job ended.
            return;
        }
        let percent = running_percent(job).filter(|_| staged_step(job).is_none());
        let want_bar = percent.is_some();
        if self.determinate != want_bar {
            self.determinate = want_bar;
            if want_bar {
                self.bar.set_length(100 * BAR_SCALE as u64);
            } else {
                self.bar.unset_length();
            }
            self.bar.set_style(bar_style(want_bar));
        }
        if let Some(p) = percent {
            self.bar.set_position((p.clamp(0.0, 100.0) * BAR_SCALE).round() as u64);
        }
        // The bar itself says "running": show only the measures next to it.
        self.bar.set_message(if want_bar { measures(job).join(" ") } else { details(job) });
    }
}

/// A spinner (`bar` false: the percent is unknown) or a bar, after the job id.
fn bar_style(bar: bool) -> ProgressStyle {
    let template =
        if bar { "{spinner:.cyan} {prefix} [{bar:24.cyan/blue}] {msg}" } else { "{spinner:.cyan} {prefix} {msg}" };
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()).progress_chars("=> ")
}

/// What the last plain line showed.
#[derive(Debug, Clone, PartialEq)]
struct Printed {
    status: JobStatusWire,
    /// Tenths reached (0 to 10) when the percent was known.
    decile: Option<u32>,
    /// The step besides ffmpeg a staged job was at ([`staged_step`]).
    step: Option<&'static str>,
    /// Why the job waited (`waiting_reason`).
    waiting: Option<String>,
    at: Instant,
}

pub(crate) struct LineReporter {
    stream: Stream,
    last: Option<Printed>,
    /// Whether a "retrying" note was printed since the last successful poll.
    failing: bool,
}

impl LineReporter {
    fn update(&mut self, job: &JobResponse, now: Instant) -> io::Result<()> {
        self.failing = false;
        if job.status.is_finished() {
            // The caller prints the final line.
            return Ok(());
        }
        let decile = running_percent(job).map(decile);
        let waiting = job.waiting_reason.as_deref();
        let step = staged_step(job);
        if line_due(self.last.as_ref(), Shown { status: job.status, decile, step, waiting }, now) {
            let waiting = waiting.map(str::to_owned);
            self.last = Some(Printed { status: job.status, decile, step, waiting, at: now });
            self.stream.line(&progress_line(job))?;
        }
        Ok(())
    }
}

fn decile(percent: f64) -> u32 {
    (percent.clamp(0.0, 100.0) / 10.0).floor() as u32
}

/// What a plain line would show of a job now (see [`Printed`]).
#[derive(Debug, Clone, Copy)]
struct Shown<'a> {
    status: JobStatusWire,
    decile: Option<u32>,
    step: Option<&'static str>,
    waiting: Option<&'a str>,
}

/// Whether a plain progress line is due: on every status change, when why the job waits
/// (`waiting`) or the step of a staged job (`step`) changes, when the percent reaches a new
/// tenth, and at least every [`LINE_HEARTBEAT`] while running.
fn line_due(last: Option<&Printed>, Shown { status, decile, step, waiting }: Shown<'_>, now: Instant) -> bool {
    let Some(last) = last else { return true };
    if last.status != status || last.waiting.as_deref() != waiting || last.step != step {
        return true;
    }
    if status != JobStatusWire::Running {
        return false;
    }
    let new_tenth = match (decile, last.decile) {
        (Some(d), Some(l)) => d > l,
        (Some(_), None) => true,
        (None, _) => false,
    };
    new_tenth || now.duration_since(last.at) >= LINE_HEARTBEAT
}

/// What a running job whose files are in a bucket is doing besides running ffmpeg, as its
/// progress's `phase` says: `downloading the inputs` or `uploading the outputs`; `None` while
/// ffmpeg runs, and for a job that works on the data directory in place (no `phase`).
pub(crate) fn staged_step(job: &JobResponse) -> Option<&'static str> {
    if job.status != JobStatusWire::Running {
        return None;
    }
    match job.progress.as_ref()?.phase? {
        PhaseWire::Downloading => Some("downloading the inputs"),
        PhaseWire::Uploading => Some("uploading the outputs"),
        PhaseWire::Running => None,
    }
}

fn running_percent(job: &JobResponse) -> Option<f64> {
    if job.status == JobStatusWire::Running {
        job.progress.as_ref().and_then(|p| p.percent).filter(|p| p.is_finite())
    } else {
        None
    }
}

/// What a running job's progress says: `42.0% speed 2.1x eta 12s`, or, when the percent is
/// unknown, the output time reached: `00:00:05.03 speed 2.1x`. Empty when not running.
fn measures(job: &JobResponse) -> Vec<String> {
    let mut parts = Vec::new();
    let Some(p) = job.progress.as_ref().filter(|_| job.status == JobStatusWire::Running) else {
        return parts;
    };
    match running_percent(job) {
        Some(percent) => parts.push(format!("{percent:.1}%")),
        None => parts.push(p.time.clone()),
    }
    if let Some(speed) = p.speed.filter(|s| s.is_finite()) {
        parts.push(format!("speed {speed:.1}x"));
    }
    if let Some(eta) = p.eta_seconds.filter(|e| e.is_finite() && *e >= 0.0) {
        parts.push(format!("eta {}", human_duration(eta)));
    }
    parts
}

/// `running 42.0% speed 2.1x eta 12s`, `running 00:00:05.03 speed 2.1x`, `running: uploading
/// the outputs`, `queued`, or `queued (waiting: REASON)` when the server says why the job waits.
fn details(job: &JobResponse) -> String {
    if let Some(step) = staged_step(job) {
        // ffmpeg's last figures (99.9 % after it ended) say nothing about this step.
        return format!("{}: {step}", job.status.as_str());
    }
    let mut parts = vec![job.status.as_str().to_owned()];
    parts.extend(measures(job));
    if let Some(reason) = job.waiting_reason.as_deref().map(str::trim).filter(|r| !r.is_empty())
        && !job.status.is_finished()
    {
        parts.push(format!("(waiting: {reason})"));
    }
    parts.join(" ")
}

/// `job_x running 42.0% speed 2.1x eta 12s`.
fn progress_line(job: &JobResponse) -> String {
    format!("{} {}", job.id, details(job))
}

/// `12s`, `3m05s`, `1h02m`, rounded up to whole seconds.
pub(crate) fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).ceil() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use ffmpeg_worker_client::api::ProgressResponse;

    use super::*;

    pub(crate) fn job(status: JobStatusWire, progress: Option<ProgressResponse>) -> JobResponse {
        JobResponse {
            id: "job_0123456789abcdef".to_owned(),
            status,
            command: "-i in.mp4 out.mp4".to_owned(),
            args: ["-i", "in.mp4", "out.mp4"].map(str::to_owned).to_vec(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            started_at: None,
            completed_at: None,
            progress,
            output_files: Vec::new(),
            outputs: Vec::new(),
            error: None,
            priority: 0,
            timeout_seconds: None,
            metadata: BTreeMap::new(),
            attempts: 0,
            webhook_url: None,
            webhook_events: None,
            requires: Vec::new(),
            waiting_reason: None,
            retry_at: None,
            idempotency_key: None,
        }
    }

    pub(crate) fn progress(percent: Option<f64>, speed: Option<f64>, eta: Option<f64>) -> ProgressResponse {
        ProgressResponse {
            frame: 0,
            fps: 0.0,
            time: "00:00:05.03".to_owned(),
            bitrate: "N/A".to_owned(),
            percent,
            speed,
            out_time_seconds: Some(5.03),
            bitrate_kbits_per_s: None,
            total_size_bytes: None,
            eta_seconds: eta,
            phase: None,
        }
    }

    #[test]
    fn progress_lines() {
        use JobStatusWire::*;
        for (status, p, expected) in [
            (Queued, None, "job_0123456789abcdef queued"),
            (Running, None, "job_0123456789abcdef running"),
            (
                Running,
                Some(progress(Some(42.0), Some(2.13), Some(11.2))),
                "job_0123456789abcdef running 42.0% speed 2.1x eta 12s",
            ),
            (Running, Some(progress(None, Some(2.1), None)), "job_0123456789abcdef running 00:00:05.03 speed 2.1x"),
            (Running, Some(progress(Some(0.0), None, None)), "job_0123456789abcdef running 0.0%"),
            (
                Running,
                Some(progress(Some(99.95), Some(1.0), Some(0.0))),
                "job_0123456789abcdef running 100.0% speed 1.0x eta 0s",
            ),
            (
                Running,
                Some(progress(Some(f64::NAN), None, Some(f64::INFINITY))),
                "job_0123456789abcdef running 00:00:05.03",
            ),
        ] {
            assert_eq!(progress_line(&job(status, p)), expected);
        }
        let mut waiting = job(Queued, None);
        waiting.waiting_reason = Some("no live node has labels [gpu]".to_owned());
        assert_eq!(progress_line(&waiting), "job_0123456789abcdef queued (waiting: no live node has labels [gpu])");
        // A job whose files are in a bucket says which step it is at, not ffmpeg's last figures
        // (99.9 % for the whole upload: tester finding G19).
        let staged = |status, phase| {
            job(status, Some(ProgressResponse { phase, ..progress(Some(99.9), Some(103.0), Some(0.1)) }))
        };
        for (status, phase, expected) in [
            (Running, Some(PhaseWire::Uploading), "job_0123456789abcdef running: uploading the outputs"),
            (Running, Some(PhaseWire::Downloading), "job_0123456789abcdef running: downloading the inputs"),
            (Running, Some(PhaseWire::Running), "job_0123456789abcdef running 99.9% speed 103.0x eta 1s"),
            (Running, None, "job_0123456789abcdef running 99.9% speed 103.0x eta 1s"),
            (Queued, Some(PhaseWire::Uploading), "job_0123456789abcdef queued"),
        ] {
            assert_eq!(progress_line(&staged(status, phase)), expected, "{phase:?}");
        }
    }

    #[test]
    fn durations() {
        for (seconds, expected) in [
            (0.0, "0s"),
            (0.2, "1s"),
            (12.0, "12s"),
            (59.5, "1m00s"),
            (60.0, "1m00s"),
            (185.0, "3m05s"),
            (3720.0, "1h02m"),
            (-3.0, "0s"),
        ] {
            assert_eq!(human_duration(seconds), expected, "{seconds}");
        }
    }

    #[test]
    fn plain_lines_on_status_change_new_tenth_or_heartbeat() {
        use JobStatusWire::*;
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let running = |decile| Printed { status: Running, decile, step: None, waiting: None, at: t0 };
        let queued = |waiting: Option<&str>| Printed {
            status: Queued,
            decile: None,
            step: None,
            waiting: waiting.map(str::to_owned),
            at: t0,
        };
        let (no_gpu, no_node) = (Some("no live node has labels [gpu]"), Some("no live node runs jobs"));
        for (last, status, decile, waiting, now, due) in [
            (None, Queued, None, None, at(0), true),
            (Some(queued(None)), Queued, None, None, at(60), false),
            (Some(queued(None)), Running, None, None, at(0), true),
            (Some(queued(None)), Queued, None, no_gpu, at(1), true),
            (Some(queued(no_gpu)), Queued, None, no_gpu, at(60), false),
            (Some(queued(no_gpu)), Queued, None, no_node, at(1), true),
            (Some(queued(no_gpu)), Queued, None, None, at(1), true),
            (Some(running(Some(4))), Running, Some(4), None, at(1), false),
            (Some(running(Some(4))), Running, Some(5), None, at(1), true),
            (Some(running(Some(4))), Running, Some(4), None, at(10), true),
            (Some(running(None)), Running, None, None, at(9), false),
            (Some(running(None)), Running, None, None, at(10), true),
            (Some(running(None)), Running, Some(0), None, at(1), true),
            (Some(running(Some(9))), Running, None, None, at(1), false),
        ] {
            let shown = Shown { status, decile, step: None, waiting };
            assert_eq!(
                line_due(last.as_ref(), shown, now),
                due,
                "{last:?} -> {status:?} {decile:?} {waiting:?} at {now:?}"
            );
        }
        // A staged job's step (G19): a line when it starts uploading at the same 99.9 %, none
        // more while it uploads (until the heartbeat), one when the job ends.
        let (upload, download) = (Some("uploading the outputs"), Some("downloading the inputs"));
        let step = |step| Printed { step, ..running(Some(9)) };
        let shown = |status, step| Shown { status, decile: Some(9), step, waiting: None };
        assert!(line_due(Some(&running(Some(9))), shown(Running, upload), at(1)));
        assert!(!line_due(Some(&step(upload)), shown(Running, upload), at(5)));
        assert!(line_due(Some(&step(upload)), shown(Running, upload), at(10)));
        assert!(line_due(Some(&step(download)), Shown { decile: None, ..shown(Running, None) }, at(1)));
        assert!(line_due(Some(&step(upload)), Shown { decile: None, ..shown(Completed, None) }, at(1)));
        assert_eq!([decile(0.0), decile(9.99), decile(10.0), decile(100.0), decile(250.0)], [0, 0, 1, 10, 10]);
    }
}

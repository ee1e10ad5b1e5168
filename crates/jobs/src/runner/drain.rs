//! Draining ffmpeg's two pipes: progress blocks from stdout become snapshots (percent below
//! 100 while running, an ETA only once the speed settled); stderr feeds the input banner
//! scanner (expected length), the output banner scanner ([`super::RunReport::outputs`]) and
//! the log router, whose lines are kept in bounded tails.

use std::collections::VecDeque;
use std::time::Duration;

use ffmpeg_core::command::Command;
use ffmpeg_core::duration::{BannerScanner, ExpectedLength, InputInfo};
use ffmpeg_core::log::{Level, LogRouter, RoutedLine};
use ffmpeg_core::output_banner::{OutputBanner, OutputBannerScanner};
use ffmpeg_core::progress::{ProgressParser, ProgressState, ProgressUpdate};
use tokio::sync::watch;
use tokio::time::Instant;

use super::args::RunLog;
use super::error::{MemorySign, memory_sign, received_signal, unfinished_output};
use crate::model::Progress;

/// What a run's two pipes have shown so far, and where progress snapshots go.
#[derive(Debug)]
pub(super) struct Drain<'a> {
    command: &'a Command,
    progress: &'a watch::Sender<Option<Progress>>,
    parser: ProgressParser,
    last_update: Option<ProgressUpdate>,
    banner: BannerScanner,
    /// Input durations learned besides the banner ([`super::RunSpec::input_lengths`]).
    input_lengths: Option<&'a watch::Receiver<Vec<Option<f64>>>>,
    output_banner: OutputBannerScanner,
    router: LogRouter,
    /// What the client's log level shows (the job log), and what ffmpeg's default level
    /// shows (job errors are built from it, whatever the client's level).
    tails: Tails,
    started: Instant,
    blocks: u32,
    /// Fired at ffmpeg's end block ([`super::RunSpec::ended`]).
    ended: Option<&'a tokio_util::sync::CancellationToken>,
}

/// What the pipes showed by the end of a run ([`Drain::finish`]).
#[derive(Debug)]
pub(super) struct Drained {
    /// The job log's tail, as ffmpeg wrote it (paths not yet made relative).
    pub log: String,
    /// What a job error is built from: the errors ffmpeg reported if it reported any, else
    /// its last words at its default level.
    pub messages: String,
    /// ffmpeg's `Output #N` listing.
    pub outputs: Vec<OutputBanner>,
    /// The output time of ffmpeg's last `-progress` block, in microseconds, as ffmpeg wrote
    /// it (negative when every packet lies before the start; snapshots show it as 0).
    pub final_out_time_us: Option<i64>,
    /// The signal ffmpeg said it stopped for ([`received_signal`]), whatever the levels.
    pub received_signal: Option<i32>,
    /// What the lines said of memory ([`memory_sign`]), whatever the levels.
    pub memory: Option<MemorySign>,
    /// ffmpeg's lines saying an output could not be finished ([`unfinished_output`]), in
    /// order, whatever the levels and however long the log (at most [`MAX_UNFINISHED`]).
    pub unfinished: Vec<String>,
}

/// Most "output could not be finished" lines kept ([`Drained::unfinished`]).
const MAX_UNFINISHED: usize = 16;

impl<'a> Drain<'a> {
    /// A drain for a run of `command` that started at `started`, keeping at most `tail_cap`
    /// bytes of each stderr tail and publishing snapshots on `progress`.
    pub(super) fn new(
        command: &'a Command,
        progress: &'a watch::Sender<Option<Progress>>,
        tail_cap: usize,
        started: Instant,
    ) -> Drain<'a> {
        Drain {
            command,
            progress,
            parser: ProgressParser::new(),
            last_update: None,
            banner: BannerScanner::new(),
            input_lengths: None,
            output_banner: OutputBannerScanner::new(),
            router: LogRouter::new(RunLog::of(command).client),
            tails: Tails::new(tail_cap),
            started,
            blocks: 0,
            ended: None,
        }
    }

    /// Fired at ffmpeg's end block ([`super::RunSpec::ended`]).
    pub(super) fn set_ended(&mut self, ended: Option<&'a tokio_util::sync::CancellationToken>) {
        self.ended = ended;
    }

    /// The run's output URLs, as ffmpeg is given them (`file:/...`): the lines that say one of
    /// them could not be finished must name one ([`unfinished_output`]).
    pub(super) fn set_output_urls(&mut self, urls: Vec<String>) {
        self.tails.output_urls = urls;
    }

    /// Input durations the banner does not give, learned while the run goes on.
    pub(super) fn set_input_lengths(&mut self, lengths: Option<&'a watch::Receiver<Vec<Option<f64>>>>) {
        self.input_lengths = lengths;
    }

    /// What is known of the inputs: the banner's, with the durations it lacks (`N/A`) taken
    /// from [`Drain::set_input_lengths`].
    fn inputs(&self) -> Vec<InputInfo> {
        let mut inputs = self.banner.inputs();
        if let Some(lengths) = self.input_lengths {
            for (input, length) in inputs.iter_mut().zip(lengths.borrow().iter()) {
                if input.duration.is_none() {
                    input.duration = *length;
                }
            }
        }
        inputs
    }

    /// Feeds a chunk of stdout (`-progress` blocks): each complete block is published.
    pub(super) fn stdout(&mut self, chunk: &[u8]) {
        for update in self.parser.feed(chunk) {
            let expected = ExpectedLength::for_output_with(self.command, 0, &self.inputs());
            self.blocks = self.blocks.saturating_add(1);
            let clock = RunClock { blocks: self.blocks, elapsed: self.started.elapsed() };
            self.progress.send_replace(Some(snapshot(&update, &expected, clock)));
            if update.state == ProgressState::End
                && let Some(ended) = self.ended
            {
                ended.cancel();
            }
            self.last_update = Some(update);
        }
    }

    /// Feeds a chunk of stderr to the banner scanners and the log tails.
    pub(super) fn stderr(&mut self, chunk: &[u8]) {
        self.banner.feed(chunk);
        for line in self.router.feed(chunk) {
            self.tails.keep(&line);
        }
        self.output_banner.feed(chunk);
    }

    /// Ends the run's streams: keeps stderr's unterminated last line, publishes the last
    /// snapshot once more, and returns what the pipes showed.
    pub(super) fn finish(mut self) -> Drained {
        if let Some(line) = self.router.finish() {
            self.tails.keep(&line);
        }
        // The two pipes are read concurrently, so a block may have been read before the banner
        // line it needs; with all of stderr seen, the last snapshot is computed once more.
        if let Some(update) = &self.last_update {
            let expected = ExpectedLength::for_output_with(self.command, 0, &self.inputs());
            let clock = RunClock { blocks: self.blocks, elapsed: self.started.elapsed() };
            self.progress.send_replace(Some(snapshot(update, &expected, clock)));
        }
        let errors = if self.tails.errors.bytes.is_empty() { &self.tails.messages } else { &self.tails.errors };
        Drained {
            log: self.tails.log.text(),
            messages: errors.text(),
            outputs: self.output_banner.finish(),
            final_out_time_us: self.last_update.as_ref().and_then(|update| update.out_time_us),
            received_signal: self.tails.received_signal,
            memory: self.tails.memory,
            unfinished: self.tails.unfinished,
        }
    }
}

/// The bounded tails of a run's stderr, each routed by [`LogRouter`].
#[derive(Debug)]
struct Tails {
    /// What the client's log level shows: the job log.
    log: Tail,
    /// What ffmpeg's default level (`info`) shows.
    messages: Tail,
    /// The lines logged as errors (`error`, `fatal`, `panic`).
    errors: Tail,
    /// The signal ffmpeg reported stopping for, from its `info` line, which the errors tail
    /// that job errors prefer does not hold.
    received_signal: Option<i32>,
    /// What the lines said of memory (one a library wrote without a level too), a thread's
    /// failure over an allocation's.
    memory: Option<MemorySign>,
    /// The lines saying an output could not be finished, which a long log could push out of
    /// the errors tail.
    unfinished: Vec<String>,
    /// The run's output URLs as ffmpeg was given them ([`Drain::set_output_urls`]).
    output_urls: Vec<String>,
}

impl Tails {
    fn new(cap: usize) -> Tails {
        let tail = || Tail { bytes: VecDeque::new(), cap };
        Tails {
            log: tail(),
            messages: tail(),
            errors: tail(),
            received_signal: None,
            memory: None,
            unfinished: Vec::new(),
            output_urls: Vec::new(),
        }
    }

    /// Appends a routed stderr line to the tails that keep it.
    fn keep(&mut self, line: &RoutedLine) {
        let push = |tail: &mut Tail, text: &str| {
            tail.push(text.as_bytes());
            tail.push(b"\n");
        };
        if line.for_client {
            push(&mut self.log, &line.text);
        }
        if line.at_default_level {
            push(&mut self.messages, &line.plain);
        }
        if line.level.is_some_and(|l| l <= Level::ERROR) {
            push(&mut self.errors, &line.plain);
        }
        if let Some(signal) = received_signal(&line.plain) {
            self.received_signal = Some(signal);
        }
        if self.unfinished.len() < MAX_UNFINISHED && unfinished_output(line, &self.output_urls) {
            self.unfinished.push(line.plain.trim().to_owned());
        }
        self.memory = self.memory.max(memory_sign(&line.plain));
    }
}

/// A bounded tail of a byte stream.
#[derive(Debug)]
struct Tail {
    bytes: VecDeque<u8>,
    cap: usize,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        let chunk = &chunk[chunk.len().saturating_sub(self.cap)..];
        let overflow = (self.bytes.len() + chunk.len()).saturating_sub(self.cap);
        self.bytes.drain(..overflow);
        self.bytes.extend(chunk);
    }
    fn text(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }
}

/// Highest percent a running job reports: 100 % belongs to a completed job alone (the store
/// records it when the job completes), whatever the estimate says.
pub const RUNNING_PERCENT_MAX: f64 = 99.9;

/// When ffmpeg's speed has settled enough for an ETA: at least this many progress blocks...
pub const ETA_MIN_BLOCKS: u32 = 3;
/// ...and this much run time. Before that, ffmpeg's speed (output time over wall time since it
/// started) is dominated by start-up and an ETA would be wild (hours for a seconds-long job).
pub const ETA_MIN_RUN: Duration = Duration::from_secs(2);

/// How far a run has got, for [`snapshot`]: progress blocks seen (this one included) and
/// time since ffmpeg started.
#[derive(Debug, Clone, Copy)]
struct RunClock {
    blocks: u32,
    elapsed: Duration,
}

/// Builds a progress snapshot from one `-progress` block.
///
/// ffmpeg writes a final `progress=end` block whenever it exits, also when it was stopped or
/// failed half-way, so the end block does not mean 100 %: percent comes from how far the output
/// got, and is at most [`RUNNING_PERCENT_MAX`] (the store records 100 % when the job
/// completes). The ETA is `None` until the speed has settled ([`ETA_MIN_BLOCKS`],
/// [`ETA_MIN_RUN`]), in the end block, and when the output has reached or passed the
/// expected length (the estimate was wrong, so the time left is unknown); it is never 0.
fn snapshot(update: &ProgressUpdate, expected: &ExpectedLength, clock: RunClock) -> Progress {
    let mut as_continue = update.clone();
    as_continue.state = ProgressState::Continue;
    let percent = expected.percent(&as_continue).map(|p| ((p * 100.0).round() / 100.0).min(RUNNING_PERCENT_MAX));
    let out_time_us = update.out_time_us.map(|t| t.max(0));
    let settled = clock.blocks >= ETA_MIN_BLOCKS && clock.elapsed >= ETA_MIN_RUN;
    let eta_seconds = match (expected.seconds, expected.frames) {
        _ if update.state == ProgressState::End || !settled => None,
        (Some(total), _) => match (out_time_us, update.speed) {
            (Some(t), Some(speed)) if speed > 0.0 => Some((total - t as f64 / 1e6) / speed),
            _ => None,
        },
        (None, Some(frames)) => match (update.frame, update.fps) {
            (Some(frame), Some(fps)) if fps > 0.0 => Some((frames as f64 - frame as f64) / fps),
            _ => None,
        },
        (None, None) => None,
    };
    // Rounded to 0.1 s, but never 0 while running: a job at or past its estimate has an
    // unknown time left.
    let eta_seconds = eta_seconds.filter(|e| e.is_finite() && *e > 0.0).map(|e| ((e * 10.0).round() / 10.0).max(0.1));
    Progress {
        frame: update.frame,
        fps: update.fps,
        out_time_us,
        bitrate_kbits_per_s: update.bitrate_kbits_per_s,
        total_size_bytes: update.total_size_bytes,
        speed: update.speed,
        percent,
        eta_seconds,
        dup_frames: update.dup_frames,
        drop_frames: update.drop_frames,
        phase: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block at `out_time` seconds (and `frame`), ffmpeg's `speed`, `fps`, continue or end.
    fn block(out_time: f64, frame: u64, speed: f64, fps: f64, end: bool) -> ProgressUpdate {
        let mut update = ProgressUpdate::default();
        update.out_time_us = Some((out_time * 1e6) as i64);
        update.frame = Some(frame);
        update.speed = Some(speed);
        update.fps = Some(fps);
        update.state = if end { ProgressState::End } else { ProgressState::Continue };
        update
    }

    #[test]
    fn a_running_job_is_never_done_and_its_eta_waits_for_a_settled_speed() {
        let ten_seconds = ExpectedLength { seconds: Some(10.0), frames: None };
        let hundred_frames = ExpectedLength { seconds: None, frames: Some(100) };
        let unknown = ExpectedLength::default();
        let settled = RunClock { blocks: 3, elapsed: Duration::from_secs(2) };
        let check =
            |expected: ExpectedLength, update: ProgressUpdate, clock: RunClock, want: (Option<f64>, Option<f64>)| {
                let progress = snapshot(&update, &expected, clock);
                assert_eq!((progress.percent, progress.eta_seconds), want, "{expected:?} {update:?} {clock:?}");
            };
        let ms = Duration::from_millis;
        // Settled: 4 s of 10 at 2x leaves 3 s.
        check(ten_seconds, block(4.0, 100, 2.0, 50.0, false), settled, (Some(40.0), Some(3.0)));
        // Not yet settled: too few blocks, or too little time (a start-up speed of 0.001x would
        // give an ETA of hours).
        check(
            ten_seconds,
            block(0.01, 1, 0.001, 1.0, false),
            RunClock { blocks: 1, elapsed: ms(500) },
            (Some(0.1), None),
        );
        check(
            ten_seconds,
            block(4.0, 100, 2.0, 50.0, false),
            RunClock { blocks: 2, elapsed: ms(5000) },
            (Some(40.0), None),
        );
        check(
            ten_seconds,
            block(4.0, 100, 2.0, 50.0, false),
            RunClock { blocks: 30, elapsed: ms(1999) },
            (Some(40.0), None),
        );
        // At or past the estimate while running: below 100 %, and the time left is unknown.
        check(ten_seconds, block(10.0, 250, 2.0, 50.0, false), settled, (Some(RUNNING_PERCENT_MAX), None));
        check(ten_seconds, block(12.0, 300, 2.0, 50.0, false), settled, (Some(RUNNING_PERCENT_MAX), None));
        check(ten_seconds, block(9.9999, 250, 2.0, 50.0, false), settled, (Some(RUNNING_PERCENT_MAX), Some(0.1)));
        // Almost there: never an ETA of 0.
        check(ten_seconds, block(9.99, 250, 2.0, 50.0, false), settled, (Some(99.9), Some(0.1)));
        // The end block (also written when ffmpeg stops half-way) says how far the output got.
        check(ten_seconds, block(4.0, 100, 2.0, 50.0, true), settled, (Some(40.0), None));
        check(ten_seconds, block(10.0, 250, 2.0, 50.0, true), settled, (Some(RUNNING_PERCENT_MAX), None));
        // By frames: 40 of 100 at 20 fps leaves 3 s.
        check(hundred_frames, block(1.6, 40, 0.8, 20.0, false), settled, (Some(40.0), Some(3.0)));
        check(hundred_frames, block(4.0, 100, 0.8, 20.0, false), settled, (Some(RUNNING_PERCENT_MAX), None));
        check(hundred_frames, block(1.6, 40, 0.8, 0.0, false), settled, (Some(40.0), None));
        // Unknown length: no percent, no ETA.
        check(unknown, block(4.0, 100, 2.0, 50.0, false), settled, (None, None));
        // No speed yet.
        check(ten_seconds, block(4.0, 100, 0.0, 50.0, false), settled, (Some(40.0), None));
    }
}

//! Running one resolved ffmpeg command: the [`Runner`] trait and [`FfmpegRunner`], which spawns
//! the real ffmpeg.
//!
//! [`FfmpegRunner`] spawns ffmpeg directly (no shell) with
//! `-nostdin -y -hide_banner -progress pipe:1 -nostats`, `-protocol_whitelist file` before each
//! input (added by [`ResolvedCommand::to_ffmpeg_args`]), in its own process group, with an
//! empty environment and stdin. It drains stdout (progress) and stderr (log) concurrently in one
//! loop, so a job that prints megabytes of warnings never stalls on a full pipe; it keeps a
//! bounded tail of stderr. Timeout and cancellation stop the whole process group: SIGTERM (ffmpeg
//! then finishes its outputs' trailers), a grace period, SIGKILL, and once ffmpeg has closed its
//! pipes a last SIGKILL to the group, then the child is reaped. A group is only ever signalled
//! before its leader is reaped (until then the group id cannot be reused), and only on the stop
//! path. Each run works in a locked scratch directory ([`crate::orphans::ScratchDir`]).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ffmpeg_core::command::Command;
use ffmpeg_core::duration::{BannerScanner, ExpectedLength, parse_time_duration};
use ffmpeg_core::log::{Level, LogRouter, LogSettings, RoutedLine};
use ffmpeg_core::output_banner::{OutputBanner, OutputBannerScanner};
use ffmpeg_core::progress::{ProgressParser, ProgressState, ProgressUpdate};
use ffmpeg_core::sandbox::ResolvedCommand;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::exec_limits::{ExecLimitError, ExecLimits};
use crate::model::{JobId, Progress};

/// What to run and under which limits.
#[derive(Debug, Clone, Copy)]
pub struct RunSpec<'a> {
    /// The job the run belongs to: it names the run's scratch directory, so that recovery can
    /// find what a run killed with its server left ([`Runner::remove_leftovers`]).
    pub job: &'a JobId,
    /// The command, every path resolved by the sandbox.
    pub command: &'a ResolvedCommand,
    /// Wall-clock limit; `None` for none.
    pub timeout: Option<Duration>,
}

/// Why a run did not succeed. The messages are what a job's `error` says.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    /// ffmpeg could not be started (binary missing, not executable, argument list too long).
    #[error("ffmpeg could not be started ({}): {source}", binary.display())]
    Spawn {
        /// The binary as configured.
        binary: PathBuf,
        /// What the operating system reported.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The run's scratch directory could not be created or locked (the server log names it).
    #[error("cannot prepare a scratch directory for ffmpeg: {source}")]
    Scratch {
        /// What the operating system reported.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The resource limits could not be applied to the started ffmpeg, which was then killed.
    #[error("cannot apply resource limits to ffmpeg: {source}")]
    Limits {
        /// What the operating system reported.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Waiting for ffmpeg to exit failed.
    #[error("waiting for ffmpeg failed: {source}")]
    Wait {
        /// What the operating system reported.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// ffmpeg exited unsuccessfully; `message` holds the meaningful last lines of its stderr,
    /// or what is known of the signal that killed it.
    #[error("{message}")]
    Exit {
        /// Exit code, `None` when killed by a signal.
        code: Option<i32>,
        /// The signal that killed it, `None` when it exited.
        signal: Option<i32>,
        /// The last meaningful stderr lines, data-directory paths made relative; for a limit
        /// or a signal, which one and what is known of who sent it.
        message: String,
    },
    /// ffmpeg exited 0 but an output got nothing (see [`crate::encoded`]); `message` says
    /// which output and why.
    #[error("{message}")]
    NothingEncoded {
        /// What got nothing, and what to check.
        message: String,
    },
    /// The run took longer than its timeout and was stopped.
    #[error("timed out after {} s", .0.as_secs())]
    TimedOut(Duration),
    /// The run was stopped through its cancellation token.
    #[error("cancelled")]
    Cancelled,
}

/// The end of a run: its result and the tail of ffmpeg's log.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// `Ok` when ffmpeg exited 0.
    pub result: Result<(), RunError>,
    /// The last bytes of stderr (at most the runner's configured tail size), lossily decoded.
    pub log_tail: String,
    /// ffmpeg's `Output #N` listing (each output's format and streams), read from all of
    /// stderr as it came (not only the tail); empty when ffmpeg printed none.
    pub outputs: Vec<OutputBanner>,
}

/// Runs commands. Usable as `Arc<dyn Runner>`; tests substitute their own.
#[async_trait]
pub trait Runner: Send + Sync + 'static {
    /// Runs `spec` to completion, publishing progress snapshots on `progress`, stopping early
    /// when `cancel` fires (result [`RunError::Cancelled`]) or the timeout passes.
    async fn run(
        &self,
        spec: RunSpec<'_>,
        progress: &watch::Sender<Option<Progress>>,
        cancel: &CancellationToken,
    ) -> RunReport;

    /// Checks, before a job is queued, that the operating system will start `command` at all
    /// (argument-list size, file-name and path lengths). Called by [`crate::Jobs::check`] on
    /// a blocking thread. The default accepts everything.
    ///
    /// # Errors
    /// [`ExecLimitError`] naming the limit and what to change.
    fn check_startable(&self, command: &ResolvedCommand) -> Result<(), ExecLimitError> {
        let _ = command;
        Ok(())
    }

    /// Removes what runs of `job` left outside the data directory when the process running
    /// them died (a `kill -9` of the server): their scratch directories. Called at start-up
    /// for interrupted jobs only, on a blocking thread; returns what was removed. The default
    /// has nothing to remove.
    fn remove_leftovers(&self, job: &JobId) -> Vec<PathBuf> {
        let _ = job;
        Vec::new()
    }
}

/// Operating-system limits applied to each ffmpeg process (`prlimit(2)` on Linux, right after
/// the process starts and before it has opened its outputs). `None` leaves a limit unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Largest file the process may write, in bytes (`RLIMIT_FSIZE`): a job whose output grows
    /// past it is killed (SIGXFSZ) and fails.
    pub max_file_bytes: Option<u64>,
    /// CPU time the process may use, in seconds (`RLIMIT_CPU`), summed over its threads.
    pub cpu_seconds: Option<u64>,
    /// Virtual address space, in bytes (`RLIMIT_AS`): allocations past it fail.
    pub address_space_bytes: Option<u64>,
}

impl ResourceLimits {
    /// Applies the limits to the running process `pid`.
    #[cfg(target_os = "linux")]
    fn apply(&self, pid: u32) -> std::io::Result<()> {
        use rustix::process::{Pid, Resource, Rlimit, prlimit};
        let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else { return Ok(()) };
        let limits = [
            (Resource::Fsize, self.max_file_bytes, 0),
            // The soft CPU limit sends SIGXCPU (ffmpeg stops cleanly); the hard one, 5 s later, SIGKILL.
            (Resource::Cpu, self.cpu_seconds, 5),
            (Resource::As, self.address_space_bytes, 0),
        ];
        for (resource, value, slack) in limits {
            if let Some(v) = value {
                prlimit(Some(pid), resource, Rlimit { current: Some(v), maximum: Some(v.saturating_add(slack)) })?;
            }
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn apply(&self, _pid: u32) -> std::io::Result<()> {
        Ok(())
    }
}

/// Settings of [`FfmpegRunner`].
#[derive(Debug, Clone)]
pub struct FfmpegConfig {
    /// The ffmpeg binary: a path, or a name looked up on `PATH`.
    pub binary: PathBuf,
    /// The data directory: its paths are made relative in error messages.
    pub data_dir: PathBuf,
    /// Where each run gets its own scratch working directory (created, then removed after the
    /// run): side files ffmpeg writes by relative default names (e.g. `ffmpeg2pass-0.log`) land
    /// there, not in the data directory or the server's working directory.
    pub scratch_root: PathBuf,
    /// Operating-system limits for each ffmpeg process.
    pub limits: ResourceLimits,
    /// Time between SIGTERM and SIGKILL when a run is stopped.
    pub kill_grace: Duration,
    /// How many bytes of stderr to keep (the job log and error message come from this tail).
    pub log_tail_bytes: usize,
    /// What the operating system refuses at start: commands past them are refused at submit.
    pub exec_limits: ExecLimits,
}

impl FfmpegConfig {
    /// Defaults: scratch directories under the system temporary directory, no resource limits,
    /// 1 s kill grace, 64 KiB log tail, the exec limits of this process
    /// ([`ExecLimits::of_this_process`]).
    pub fn new(binary: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> FfmpegConfig {
        FfmpegConfig {
            binary: binary.into(),
            data_dir: data_dir.into(),
            scratch_root: std::env::temp_dir(),
            limits: ResourceLimits::default(),
            kill_grace: Duration::from_secs(1),
            log_tail_bytes: 64 * 1024,
            exec_limits: ExecLimits::of_this_process(),
        }
    }
}

/// Runs the real ffmpeg binary.
#[derive(Debug, Clone)]
pub struct FfmpegRunner {
    config: FfmpegConfig,
}

/// Arguments the runner puts before the command's own: no stdin, no program banner,
/// machine-readable progress on stdout, no interactive stats on stderr. `-y` (overwrite)
/// follows unless the command says `-n`, and the runner's `-loglevel` comes first and last
/// ([`FfmpegRunner::args`]).
pub const RUNNER_ARGS: [&str; 5] = ["-nostdin", "-hide_banner", "-progress", "pipe:1", "-nostats"];

/// The range of `-stats_period` (seconds between progress blocks) the runner honours: a
/// longer period would leave a job without progress for that long, a shorter one floods
/// progress subscribers; a value outside is replaced by the nearest bound.
pub const STATS_PERIOD_RANGE: (f64, f64) = (0.1, 5.0);

/// How ffmpeg's log is set for a run: the client's own settings ([`LogSettings::of_command`])
/// decide what the job log keeps; ffmpeg runs at least at `info` (its input banner, which
/// percent needs, and every line a job error is built from) with each line's level printed,
/// so that the runner can tell the lines apart ([`LogRouter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLog {
    /// What the client asked for (ffmpeg's defaults when it asked nothing, or gave a value
    /// ffmpeg refuses: ffmpeg then fails the run with its own message).
    pub client: LogSettings,
    /// What ffmpeg runs with.
    pub run: LogSettings,
}

impl RunLog {
    /// The log settings for `command`.
    pub fn of(command: &Command) -> RunLog {
        let client = LogSettings::of_command(command).unwrap_or_default();
        let run = LogSettings {
            level: client.level.max(Level::INFO),
            print_level: true,
            skip_repeated: client.skip_repeated,
        };
        RunLog { client, run }
    }
}

impl FfmpegRunner {
    /// A runner with `config`.
    pub fn new(config: FfmpegConfig) -> FfmpegRunner {
        FfmpegRunner { config }
    }

    /// The full argument list (after the program name) for `command`: `-loglevel` with the
    /// runner's setting ([`RunLog`]), [`RUNNER_ARGS`], `-y` unless the command has `-n`, the
    /// command's own arguments ([`ResolvedCommand::to_ffmpeg_args`]), and last the runner's
    /// `-loglevel` again and, when the command's `-stats_period` is outside
    /// [`STATS_PERIOD_RANGE`], the nearest bound. ffmpeg applies global options in order (the
    /// last value wins) wherever they stand, and reads the first `-loglevel` before the rest
    /// (for its messages about the options themselves).
    pub fn args(command: &ResolvedCommand) -> Vec<String> {
        let parsed = command.command();
        let log = RunLog::of(parsed).run.to_value();
        let mut args: Vec<String> = vec!["-loglevel".to_owned(), log.clone()];
        args.extend(RUNNER_ARGS.iter().map(|s| (*s).to_owned()));
        let no_overwrite = parsed.global_options().iter().any(|o| o.name() == "n");
        if !no_overwrite {
            args.push("-y".to_owned());
        }
        args.extend(command.to_ffmpeg_args());
        args.push("-loglevel".to_owned());
        args.push(log);
        let period = parsed
            .global_options()
            .iter()
            .rev()
            .find(|o| o.name() == "stats_period")
            .and_then(|o| o.value())
            .and_then(parse_time_duration);
        let (low, high) = STATS_PERIOD_RANGE;
        if let Some(period) = period.filter(|p| *p > 0.0 && !(low..=high).contains(p)) {
            args.push("-stats_period".to_owned());
            args.push(period.clamp(low, high).to_string());
        }
        args
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
}

impl Tails {
    fn new(cap: usize) -> Tails {
        let tail = || Tail { bytes: VecDeque::new(), cap };
        Tails { log: tail(), messages: tail(), errors: tail() }
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
    }
}

/// The meaningful last lines of ffmpeg's stderr: up to 5 non-empty lines, without the
/// generic "Conversion failed!" when something more specific precedes it, with `file:` URLs
/// and data-directory paths made relative so server paths do not leak to clients.
///
/// A line longer than 300 characters (a "Format not on whitelist" line lists hundreds of
/// formats; a long file name) keeps its first 100 and last 200 characters with ` ... ` between
/// them: ffmpeg writes `NAME: REASON`, so the reason at the end always survives.
pub fn error_summary(log_tail: &str, data_dir: &Path) -> String {
    let relative = relative_paths(log_tail, data_dir);
    let mut lines: Vec<&str> = relative.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    if lines.len() > 1 && lines.last().is_some_and(|l| l.trim() == "Conversion failed!") {
        lines.pop();
    }
    let start = lines.len().saturating_sub(5);
    let text = lines[start..].iter().map(|l| shorten_line(l)).collect::<Vec<_>>().join("\n");
    if text.is_empty() { "ffmpeg failed without a message".to_owned() } else { text }
}

/// `line` cut in the middle to at most 300 characters plus ` ... `, keeping its end.
fn shorten_line(line: &str) -> String {
    const HEAD: usize = 100;
    const TAIL: usize = 200;
    let chars = line.chars().count();
    if chars <= HEAD + TAIL {
        return line.to_owned();
    }
    let head: String = line.chars().take(HEAD).collect();
    let tail: String = line.chars().skip(chars - TAIL).collect();
    format!("{head} ... {tail}")
}

/// `text` with the data directory's absolute paths (and their `file:` URLs) made relative, so
/// job errors and logs do not show clients where the server keeps its files.
pub fn relative_paths(text: &str, data_dir: &Path) -> String {
    let root = data_dir.display().to_string();
    text.replace(&format!("file:{root}/"), "").replace(&format!("{root}/"), "")
}

/// The error of an unsuccessful exit: the limit that stopped ffmpeg, what is known of the
/// signal that killed it, or the stderr summary.
///
/// The soft CPU limit (`RLIMIT_CPU`) sends SIGXCPU, which ffmpeg treats like SIGTERM (it
/// finishes its outputs, logs "received signal 24" and exits 255); the hard limit, 5 s of CPU
/// later, sends SIGKILL. A SIGKILL can also come from the out-of-memory killer or an operator,
/// so it is blamed on the CPU limit only when ffmpeg had used at least that much CPU time
/// (`cpu_used`, read from `/proc` before it was reaped).
fn exit_message(
    status: std::process::ExitStatus,
    log_tail: &str,
    config: &FfmpegConfig,
    cpu_used: Option<f64>,
) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    let signal = status.signal();
    if signal == Some(Signal::SIGXFSZ as i32) {
        return format!(
            "output file size limit exceeded ({} bytes); ffmpeg was stopped",
            config.limits.max_file_bytes.unwrap_or_default()
        );
    }
    let killed = signal == Some(Signal::SIGKILL as i32);
    if let Some(limit) = config.limits.cpu_seconds {
        let sigxcpu = signal == Some(Signal::SIGXCPU as i32)
            || log_tail.contains(&format!("received signal {}", Signal::SIGXCPU as i32));
        #[allow(clippy::cast_precision_loss, reason = "CPU seconds far below 2^52")]
        let reached = cpu_used.is_some_and(|used| used >= limit as f64);
        if sigxcpu || (killed && reached) {
            return format!("CPU time limit exceeded ({limit} s); ffmpeg was stopped");
        }
        if killed && cpu_used.is_none() {
            return format!(
                "ffmpeg was killed (SIGKILL): by the CPU time limit ({limit} s) if it used that much, else by \
                 something outside this server such as the out-of-memory killer or an operator (its CPU time could \
                 not be read)"
            );
        }
    }
    match signal {
        Some(s) if s == Signal::SIGKILL as i32 => {
            let cpu = cpu_used.map(|used| format!(" after {used:.1} s of CPU time")).unwrap_or_default();
            format!(
                "ffmpeg was killed (SIGKILL){cpu} by something outside this server, such as the out-of-memory \
                 killer or an operator"
            )
        }
        Some(s) => {
            let name = Signal::try_from(s).map_or_else(|_| format!("signal {s}"), |sig| sig.as_str().to_owned());
            let summary = error_summary(log_tail, &config.data_dir);
            format!("ffmpeg was killed by {name}; its last messages: {summary}")
        }
        None => error_summary(log_tail, &config.data_dir),
    }
}

/// CPU time (user + system, all threads) that process `pid` has used, in seconds, from
/// `/proc/<pid>/stat`; `None` when it cannot be read. Valid until the process is reaped.
fn cpu_seconds_used(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after `(comm)`: state is field 3; utime and stime are fields 14 and 15, in clock
    // ticks of USER_HZ, which Linux fixes at 100 for this interface.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    #[allow(clippy::cast_precision_loss, reason = "tick counts far below 2^52")]
    Some((utime + stime) as f64 / 100.0)
}

/// The one place ffmpeg and ffprobe processes are built (the runner's jobs, the start-up
/// capability probe, [`crate::media`]'s ffprobe): run directly (no shell), with an empty
/// environment, an empty stdin, stdout and stderr piped, in a process group of its own (its pid
/// is the group id, see [`signal_group`]), and killed when the handle is dropped. With the
/// environment cleared, a bare name is looked up in the C library's default search path
/// (`/bin:/usr/bin`). Callers drain both pipes at once and bound the run's time.
pub(crate) fn ffmpeg_command(binary: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// Sends `signal` to the process group led by `pid`. Only call it before the leader is
/// reaped: until then its pid, the group id, cannot belong to anyone else.
pub(crate) fn signal_group(pid: Option<u32>, signal: Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // The child is its own process-group leader (process_group(0)), so its pid is the group id.
        // ESRCH (already gone) is fine.
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    TimedOut,
    Cancelled,
}

#[async_trait]
impl Runner for FfmpegRunner {
    /// Measures the argument list this runner would start ffmpeg with ([`FfmpegRunner::args`],
    /// an empty environment) and the command's paths against [`FfmpegConfig::exec_limits`].
    fn check_startable(&self, command: &ResolvedCommand) -> Result<(), ExecLimitError> {
        let args = FfmpegRunner::args(command);
        self.config.exec_limits.check_command(&self.config.binary, &args, command, &self.config.data_dir)
    }

    /// Removes `scratch_root/ffmpeg-worker-run-JOBID-*` (with what ffmpeg wrote there, such as
    /// default pass logs): directories only runs of this job can have made, and only those
    /// whose lock no live run holds.
    fn remove_leftovers(&self, job: &JobId) -> Vec<PathBuf> {
        let prefix = crate::orphans::ScratchDir::prefix(job);
        let Ok(entries) = std::fs::read_dir(&self.config.scratch_root) else { return Vec::new() };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let ours = entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix));
            // `file_type` does not follow symlinks: a planted link is not a directory here.
            if !ours || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            // A lock someone holds is a live run (`orphans::ScratchDir`): never removed.
            let free = std::fs::File::open(entry.path()).is_ok_and(|dir| dir.try_lock().is_ok());
            if !free {
                continue;
            }
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(dir = %entry.path().display(), error = %e, "removing a scratch directory failed");
            } else {
                removed.push(entry.path());
            }
        }
        removed
    }

    async fn run(
        &self,
        spec: RunSpec<'_>,
        progress: &watch::Sender<Option<Progress>>,
        cancel: &CancellationToken,
    ) -> RunReport {
        let cap = self.config.log_tail_bytes.max(1024);
        // What the client's log level shows (the job log), and what ffmpeg's default level
        // shows (job errors are built from it, whatever the client's level).
        let mut tails = Tails::new(cap);
        let failed = |e: RunError| RunReport { result: Err(e), log_tail: String::new(), outputs: Vec::new() };
        // A fresh directory with a random name and mode 0700 (mkdtemp): never shared with
        // another process, never an existing directory or a planted symlink. It is locked for
        // the whole run: ffmpeg's working directory marks it as ours, and a free lock marks it
        // an orphan after a crash (see `orphans`).
        let scratch = match crate::orphans::ScratchDir::create(&self.config.scratch_root, spec.job) {
            Ok(dir) => dir,
            Err(e) => {
                tracing::error!(dir = %self.config.scratch_root.display(), error = %e, "cannot create a scratch directory");
                return failed(RunError::Scratch { source: Arc::new(e) });
            }
        };
        let mut cmd = ffmpeg_command(&self.config.binary);
        cmd.args(FfmpegRunner::args(spec.command)).current_dir(scratch.path());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return failed(RunError::Spawn { binary: self.config.binary.clone(), source: Arc::new(e) }),
        };
        let pid = child.id();
        if let Some(p) = pid
            && let Err(e) = self.config.limits.apply(p)
        {
            signal_group(pid, Signal::SIGKILL);
            let _ = child.wait().await;
            return failed(RunError::Limits { source: Arc::new(e) });
        }
        let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            signal_group(pid, Signal::SIGKILL);
            let _ = child.wait().await;
            let source = Arc::new(std::io::Error::other("ffmpeg's stdout or stderr pipe is missing"));
            return failed(RunError::Spawn { binary: self.config.binary.clone(), source });
        };

        let mut parser = ProgressParser::new();
        let mut last_update: Option<ProgressUpdate> = None;
        let mut banner = BannerScanner::new();
        let mut output_banner = OutputBannerScanner::new();
        let command = spec.command.command();
        let mut router = LogRouter::new(RunLog::of(command).client);
        let started = Instant::now();
        let mut blocks: u32 = 0;
        // A timeout too far in the future to represent is no timeout.
        let deadline = spec.timeout.and_then(|t| Instant::now().checked_add(t));
        let mut stop: Option<Stop> = None;
        let mut kill_at: Option<Instant> = None;
        let (mut out_open, mut err_open) = (true, true);
        let mut out_buf = vec![0u8; 16 * 1024];
        let mut err_buf = vec![0u8; 16 * 1024];
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let mut cpu_used = None;
        let mut ready_to_reap = false;

        // One loop drains both pipes (never one after the other: a full stderr pipe would stall
        // ffmpeg while we wait on stdout), and reaps the child once both are closed.
        let status = loop {
            if !out_open && !err_open && !ready_to_reap {
                // ffmpeg closes its pipes when it exits; until it is reaped, its pid (which is
                // also its process-group id) cannot be reused, so this is the last moment to
                // read its CPU time and, on the stop path only, to kill what is left of its
                // group without hitting another process group.
                if self.config.limits.cpu_seconds.is_some() {
                    cpu_used = pid.and_then(cpu_seconds_used);
                }
                if stop.is_some() {
                    signal_group(pid, Signal::SIGKILL);
                    kill_at = None;
                }
                ready_to_reap = true;
            }
            tokio::select! {
                r = stdout.read(&mut out_buf), if out_open => match r {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(n) => {
                        for update in parser.feed(&out_buf[..n]) {
                            let expected = ExpectedLength::for_output_with(command, 0, &banner.inputs());
                            blocks = blocks.saturating_add(1);
                            let clock = RunClock { blocks, elapsed: started.elapsed() };
                            progress.send_replace(Some(snapshot(&update, &expected, clock)));
                            last_update = Some(update);
                        }
                    }
                },
                r = stderr.read(&mut err_buf), if err_open => match r {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => {
                        banner.feed(&err_buf[..n]);
                        for line in router.feed(&err_buf[..n]) {
                            tails.keep(&line);
                        }
                        output_banner.feed(&err_buf[..n]);
                    }
                },
                s = child.wait(), if ready_to_reap => break s,
                () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && stop.is_none() => {
                    stop = Some(Stop::TimedOut);
                    signal_group(pid, Signal::SIGTERM);
                    kill_at = Some(Instant::now() + self.config.kill_grace);
                },
                () = cancel.cancelled(), if stop.is_none() => {
                    stop = Some(Stop::Cancelled);
                    signal_group(pid, Signal::SIGTERM);
                    kill_at = Some(Instant::now() + self.config.kill_grace);
                },
                () = tokio::time::sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                    signal_group(pid, Signal::SIGKILL);
                    kill_at = None;
                },
            }
        };
        drop(scratch);
        if let Some(line) = router.finish() {
            tails.keep(&line);
        }
        // The two pipes are read concurrently, so a block may have been read before the banner
        // line it needs; with all of stderr seen, the last snapshot is computed once more.
        if let Some(update) = &last_update {
            let expected = ExpectedLength::for_output_with(command, 0, &banner.inputs());
            let clock = RunClock { blocks, elapsed: started.elapsed() };
            progress.send_replace(Some(snapshot(update, &expected, clock)));
        }
        let log_tail = relative_paths(&tails.log.text(), &self.config.data_dir);
        // The error says why: the errors ffmpeg reported if it reported any, else its last words.
        let errors = if tails.errors.bytes.is_empty() { &tails.messages } else { &tails.errors };
        let messages = relative_paths(&errors.text(), &self.config.data_dir);
        let result = match (stop, status) {
            (Some(Stop::Cancelled), _) => Err(RunError::Cancelled),
            (Some(Stop::TimedOut), _) => Err(RunError::TimedOut(spec.timeout.unwrap_or_default())),
            (None, Ok(s)) if s.success() => Ok(()),
            (None, Ok(s)) => {
                use std::os::unix::process::ExitStatusExt as _;
                let message = exit_message(s, &messages, &self.config, cpu_used);
                Err(RunError::Exit { code: s.code(), signal: s.signal(), message })
            }
            (None, Err(e)) => Err(RunError::Wait { source: Arc::new(e) }),
        };
        RunReport { result, log_tail, outputs: output_banner.finish() }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;

    use super::*;

    fn config(cpu_seconds: Option<u64>) -> FfmpegConfig {
        let mut config = FfmpegConfig::new("ffmpeg", "/srv/data");
        config.limits.cpu_seconds = cpu_seconds;
        config
    }

    #[test]
    fn a_sigkill_is_blamed_on_the_cpu_limit_only_when_that_much_cpu_was_used() {
        let killed = std::process::ExitStatus::from_raw(9);
        let check = |cpu_seconds, cpu_used, expected: &str| {
            let message = exit_message(killed, "", &config(cpu_seconds), cpu_used);
            assert!(message.starts_with(expected), "{message}");
        };
        check(Some(10), Some(15.2), "CPU time limit exceeded (10 s)");
        check(Some(10), Some(3.0), "ffmpeg was killed (SIGKILL) after 3.0 s of CPU time by something outside");
        check(Some(10), None, "ffmpeg was killed (SIGKILL): by the CPU time limit (10 s) if it used that much");
        check(None, None, "ffmpeg was killed (SIGKILL) by something outside this server");
        // ffmpeg's own report of SIGXCPU (it exits 255 after finishing its outputs).
        let exited = std::process::ExitStatus::from_raw(255 << 8);
        let log = "Exiting normally, received signal 24.\n";
        assert_eq!(
            exit_message(exited, log, &config(Some(10)), Some(10.1)),
            "CPU time limit exceeded (10 s); ffmpeg was stopped"
        );
        let terminated = std::process::ExitStatus::from_raw(15);
        assert_eq!(
            exit_message(terminated, "a\nb\n", &config(None), None),
            "ffmpeg was killed by SIGTERM; its last messages: a\nb"
        );
    }

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

//! Running one resolved ffmpeg command: the [`Runner`] trait and [`FfmpegRunner`], which spawns
//! the real ffmpeg.
//!
//! [`FfmpegRunner`] spawns ffmpeg directly (no shell) with
//! `-nostdin -y -hide_banner -progress pipe:1 -nostats`, `-protocol_whitelist file` before each
//! input (added by [`ResolvedCommand::to_ffmpeg_args`]), in its own process group, with an
//! empty environment (but `MALLOC_ARENA_MAX=1` under a memory limit) and stdin. It drains
//! stdout (progress) and stderr (log) concurrently in one loop, so a job that prints megabytes
//! of warnings never stalls on a full pipe (stderr rests between reads only while it fills
//! slowly); it keeps a bounded tail of stderr. Timeout and cancellation stop the whole process group: SIGTERM (ffmpeg
//! then finishes its outputs' trailers), a grace period, SIGKILL, and once ffmpeg has closed its
//! pipes a last SIGKILL to the group, then the child is reaped. A group is only ever signalled
//! before its leader is reaped (until then the group id cannot be reused), and only on the stop
//! path. Each run works in a locked scratch directory ([`crate::orphans::ScratchDir`]).
//!
//! The seams: `args` (the argument list and log settings), `process` (spawning, limits,
//! stopping, the process group), `drain` (the two pipes: progress snapshots, banner and output
//! scanners, log tails) and `error` ([`RunError`], [`error_summary`]).

mod args;
mod drain;
mod error;
mod process;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ffmpeg_core::output_banner::OutputBanner;
use ffmpeg_core::sandbox::{OutputTarget, ResolvedCommand};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use self::args::{RUNNER_ARGS, RunLog, STATS_PERIOD_RANGE};
use self::drain::Drain;
pub use self::drain::{ETA_MIN_BLOCKS, ETA_MIN_RUN, RUNNING_PERCENT_MAX};
use self::error::{ExitFacts, exit_message};
pub use self::error::{RunError, error_summary, relative_paths};
use self::process::Stop;
pub use self::process::{ResourceLimits, program_path};
pub(crate) use self::process::{ffmpeg_command, signal_group};
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
    /// Input durations in seconds that ffmpeg's banner does not give, by input index, as the
    /// caller learns them (possibly while the run goes on): a concat list's entries summed
    /// ([`ffmpeg_core::duration::concat`]). Used where the banner says `N/A`; `None`: none.
    pub input_lengths: Option<&'a watch::Receiver<Vec<Option<f64>>>>,
    /// Fired when ffmpeg reports the end of its work: its last `-progress` block
    /// (`progress=end`), which ffmpeg 5.1 writes once every output's trailer is written
    /// (`transcode()` in `fftools/ffmpeg.c`); what is left is its clean-up and exit (a few
    /// milliseconds, longer under load), whose status still decides the run's result. Not
    /// fired when ffmpeg writes no end block (it was killed). `None`: nobody asks.
    pub ended: Option<&'a CancellationToken>,
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
    /// them died (a `kill -9` of the server): their scratch directories, after stopping an
    /// ffmpeg of theirs that still runs on this host. Called for interrupted jobs at start-up,
    /// and before a job runs again after an attempt that did not end by itself (its node
    /// died), on a blocking thread; returns the directories removed. The default has nothing
    /// to remove.
    fn remove_leftovers(&self, job: &JobId) -> Vec<PathBuf> {
        let _ = job;
        Vec::new()
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
    /// [`FfmpegConfig::binary`] as [`program_path`] found it when the runner was made: every
    /// run starts that file (no search of `PATH` per run).
    program: PathBuf,
}

impl FfmpegRunner {
    /// A runner with `config`. A bare binary name is looked up on `PATH` now, once
    /// ([`program_path`]).
    pub fn new(config: FfmpegConfig) -> FfmpegRunner {
        let program = program_path(&config.binary);
        FfmpegRunner { config, program }
    }
}

#[async_trait]
impl Runner for FfmpegRunner {
    /// Measures the argument list this runner would start ffmpeg with ([`FfmpegRunner::args`],
    /// and its environment, [`ResourceLimits::environment`], which takes room as arguments do)
    /// and the command's paths against [`FfmpegConfig::exec_limits`].
    fn check_startable(&self, command: &ResolvedCommand) -> Result<(), ExecLimitError> {
        let mut args = FfmpegRunner::args(command);
        args.extend(self.config.limits.environment().iter().map(|(name, value)| format!("{name}={value}")));
        self.config.exec_limits.check_command(&self.config.binary, &args, command, &self.config.data_dir)
    }

    /// Stops the job's orphaned ffmpeg on this host, if any ([`crate::orphans::stop_orphans_of`]:
    /// a process whose server died, which would keep writing the job's outputs), then removes
    /// `scratch_root/ffmpeg-worker-run-JOBID-*` (with what ffmpeg wrote there, such as default
    /// pass logs): directories only runs of this job can have made, and only those whose lock
    /// no live run holds.
    fn remove_leftovers(&self, job: &JobId) -> Vec<PathBuf> {
        for orphan in crate::orphans::stop_orphans_of(&self.config.data_dir, &self.config.scratch_root, job) {
            tracing::warn!(
                job = %job, pid = orphan.pid, command = %orphan.command_line,
                "stopped an ffmpeg left running by an earlier attempt whose server died"
            );
        }
        let prefix = crate::orphans::ScratchDir::prefix(job);
        let Ok(entries) = std::fs::read_dir(&self.config.scratch_root) else { return Vec::new() };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let ours = entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix));
            if !ours {
                continue;
            }
            // A lock someone holds is a live run (`orphans::ScratchDir`): never removed; a
            // planted symlink is not followed.
            match crate::locked_dir::remove_if_free(&entry.path()) {
                Ok(true) => removed.push(entry.path()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "removing a scratch directory failed");
                }
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
        let args = FfmpegRunner::args(spec.command);
        let started = match process::start(&self.config, &self.program, args, scratch.path()).await {
            Ok(started) => started,
            Err(e) => return failed(e),
        };
        let cap = self.config.log_tail_bytes.max(1024);
        let mut drain = Drain::new(spec.command.command(), progress, cap, Instant::now());
        drain.set_input_lengths(spec.input_lengths);
        // As ffmpeg is given them: a `file:` URL, or the plain absolute path of an HLS playlist
        // (`ResolvedCommand::to_ffmpeg_args`).
        drain.set_output_urls(
            spec.command
                .outputs()
                .iter()
                .filter_map(|target| match target {
                    OutputTarget::File(path) => Some([path.to_file_url(), path.as_str().to_owned()]),
                    _ => None,
                })
                .flatten()
                .collect(),
        );
        drain.set_ended(spec.ended);
        // A timeout too far in the future to represent is no timeout.
        let deadline = spec.timeout.and_then(|t| Instant::now().checked_add(t));
        let ended = process::supervise(started, &mut drain, deadline, cancel, &self.config).await;
        // Removing the directory (and what ffmpeg left in it) is not on the job's way to its
        // outcome: a blocking thread does it. Its lock holds until then, so it is never taken
        // for a crashed run's; a crash before then leaves it to recovery (`orphans`).
        tokio::task::spawn_blocking(move || drop(scratch));
        let drained = drain.finish();
        let log_tail = relative_paths(&drained.log, &self.config.data_dir);
        let messages = relative_paths(&drained.messages, &self.config.data_dir);
        let result = match (ended.stop, ended.status) {
            (Some(Stop::Cancelled), _) => Err(RunError::Cancelled),
            (Some(Stop::TimedOut), _) => Err(RunError::TimedOut(spec.timeout.unwrap_or_default())),
            (None, Ok(s)) if s.success() && !drained.unfinished.is_empty() => {
                let lines = relative_paths(&drained.unfinished.join("\n"), &self.config.data_dir);
                let message = format!(
                    "ffmpeg exited normally but could not finish an output, which is incomplete: {}",
                    lines.lines().collect::<Vec<_>>().join("; ")
                );
                Err(RunError::Unfinished { message })
            }
            (None, Ok(s)) if s.success() => match crate::encoded::before_the_start(drained.final_out_time_us) {
                Some(message) => Err(RunError::NothingEncoded { message }),
                None => Ok(()),
            },
            (None, Ok(s)) => {
                use std::os::unix::process::ExitStatusExt as _;
                let facts = ExitFacts {
                    status: s,
                    messages: &messages,
                    received_signal: drained.received_signal,
                    memory: drained.memory,
                    cpu_used: ended.cpu_used,
                };
                let message = exit_message(facts, &self.config);
                Err(RunError::Exit { code: s.code(), signal: s.signal(), message })
            }
            (None, Err(e)) => Err(RunError::Wait { source: Arc::new(e) }),
        };
        RunReport { result, log_tail, outputs: drained.outputs }
    }
}

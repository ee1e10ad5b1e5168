//! The argument list ffmpeg is started with: the runner's own options around the command's,
//! and the log settings ([`RunLog`]) they carry.

use ffmpeg_core::command::Command;
use ffmpeg_core::duration::parse_time_duration;
use ffmpeg_core::log::{Level, LogSettings};
use ffmpeg_core::sandbox::ResolvedCommand;

use super::FfmpegRunner;

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
/// so that the runner can tell the lines apart ([`ffmpeg_core::log::LogRouter`]).
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

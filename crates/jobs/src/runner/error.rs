//! Why a run failed: [`RunError`], and the messages a job's `error` shows ([`error_summary`],
//! what is known of a signal or limit that stopped ffmpeg).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::FfmpegConfig;

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
pub(super) fn exit_message(
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
}

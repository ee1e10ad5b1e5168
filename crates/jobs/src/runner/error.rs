//! Why a run failed: [`RunError`], and the messages a job's `error` shows ([`error_summary`],
//! what is known of a signal or limit that stopped ffmpeg).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ffmpeg_core::log::{Level, RoutedLine};
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
    /// ffmpeg exited 0 but said it could not finish an output: writing its trailer or closing
    /// its file failed (a full disk: "Error writing trailer of out/a.mp4: No space left on
    /// device"), or nothing was ever written into it. The file is
    /// incomplete or empty, so the run failed; `message` quotes ffmpeg's lines.
    #[error("{message}")]
    Unfinished {
        /// ffmpeg's lines naming each output and the reason, data-directory paths relative.
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

/// The signal in ffmpeg's own report of stopping for one: `Exiting normally, received signal
/// N.`, logged at `info` when a signal it handles (SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGXCPU)
/// ended the run (`ffmpeg_cleanup()` in `fftools/ffmpeg.c`, ffmpeg 5.1).
pub(super) fn received_signal(line: &str) -> Option<i32> {
    line.trim().strip_prefix("Exiting normally, received signal ")?.strip_suffix('.')?.parse().ok()
}

/// Whether ffmpeg's stderr `line` says an output could not be finished: ffmpeg 5.1 logs these
/// at `error` and still exits 0 (unless `-xerror`), leaving a truncated or empty file
/// (`of_write_trailer()` in `fftools/ffmpeg_mux.c`, `transcode()` in `fftools/ffmpeg.c`,
/// `segment_end()` in `libavformat/segment.c`):
/// - "Error writing trailer of URL: REASON" (an mp4 without its `moov` index on a full disk);
/// - "Error closing file URL: REASON" (the last buffered bytes not written);
/// - "Nothing was written into output file N (URL), because at least one of its streams
///   received no packets." (one output of several got nothing: no header, no file content);
/// - "[segment @ 0x...] Failure occurred when ending segment 'URL'" (a segment's trailer or
///   the segment list not written: the `segment` muxer goes on, and ffmpeg exits 0);
/// - any error ending in "No space left on device" or "Disk quota exceeded" (a write that
///   failed for lack of space: `av_interleaved_write_frame(): No space left on device`).
///
/// Only lines ffmpeg leveled itself count ([`RoutedLine::prefixed`], at `error` or worse), and
/// the first three only for one of this run's own output URLs (`output_urls`, as ffmpeg was
/// given them): data that ffmpeg prints (a metadata value with a newline, an output name)
/// can start a line of the log with any words (tester finding L3).
pub(super) fn unfinished_output(line: &RoutedLine, output_urls: &[String]) -> bool {
    if !line.prefixed || line.level.is_none_or(|level| level > Level::ERROR) {
        return false;
    }
    let text = line.plain.trim_start();
    let names_an_output = |rest: Option<&str>, after: &str| {
        rest.is_some_and(|rest| {
            output_urls.iter().any(|url| rest.strip_prefix(url.as_str()).is_some_and(|r| r.starts_with(after)))
        })
    };
    names_an_output(text.strip_prefix("Error writing trailer of "), ": ")
        || names_an_output(text.strip_prefix("Error closing file "), ": ")
        || names_an_output(
            text.strip_prefix("Nothing was written into output file ")
                .and_then(|rest| rest.trim_start_matches(|c: char| c.is_ascii_digit()).strip_prefix(" (")),
            "), because",
        )
        || (text.starts_with("[segment @ 0x") && text.contains("] Failure occurred when ending segment '"))
        || text.ends_with("No space left on device")
        || text.ends_with("Disk quota exceeded")
}

/// How an unsuccessful run ended, as [`exit_message`] needs it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ExitFacts<'a> {
    /// The reaped process's status.
    pub status: std::process::ExitStatus,
    /// What job errors are built from (`Drained::messages`), paths made relative.
    pub messages: &'a str,
    /// The signal ffmpeg reported stopping for ([`received_signal`]): ffmpeg catches some
    /// signals, finishes its outputs and exits 255, so the status does not show them.
    pub received_signal: Option<i32>,
    /// What any line of its stderr said of memory ([`memory_sign`]), a thread's failure first.
    pub memory: Option<MemorySign>,
    /// Its CPU time in seconds, read before it was reaped.
    pub cpu_used: Option<f64>,
}

/// The error of an unsuccessful exit: the limit that stopped ffmpeg, what is known of the
/// signal that stopped it, or the stderr summary.
///
/// The soft CPU limit (`RLIMIT_CPU`) sends SIGXCPU, and again every further second of CPU,
/// which ffmpeg treats like SIGTERM: it finishes its outputs, logs "received signal 24" at
/// `info` and exits 255; a second signal while it does interrupts its I/O, so that its errors
/// are only what that caused ("Error closing progress log ... Immediate exit requested"); a
/// fourth makes it exit 123 at once ("Received > 3 system signals, hard exiting"); the hard
/// limit, 5 s of CPU after the soft one, sends SIGKILL. A run that failed having used at least
/// the limit's CPU time was stopped by it, whichever way it ended; a SIGKILL can also come from
/// the out-of-memory killer or an operator, so it is blamed on the CPU limit only then. The
/// output size limit (`RLIMIT_FSIZE`) kills with SIGXFSZ, which ffmpeg does not catch. The
/// address-space limit (`RLIMIT_AS`) makes allocations fail, and thread starts too (each
/// thread's stack is mapped against it): when one is set and any line said so (not
/// necessarily among the lines the summary keeps), the message names the limit.
pub(super) fn exit_message(facts: ExitFacts<'_>, config: &FfmpegConfig) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    let ExitFacts { status, messages, received_signal, memory, cpu_used } = facts;
    let signal = status.signal();
    if signal == Some(Signal::SIGXFSZ as i32) {
        return format!(
            "output file size limit exceeded ({} bytes); ffmpeg was stopped",
            config.limits.max_file_bytes.unwrap_or_default()
        );
    }
    let killed = signal == Some(Signal::SIGKILL as i32);
    if let Some(limit) = config.limits.cpu_seconds {
        let sigxcpu = signal == Some(Signal::SIGXCPU as i32) || received_signal == Some(Signal::SIGXCPU as i32);
        #[allow(clippy::cast_precision_loss, reason = "CPU seconds far below 2^52")]
        let reached = cpu_used.is_some_and(|used| used >= limit as f64);
        if sigxcpu || reached {
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
    let summary = || error_summary(messages, &config.data_dir);
    let name = |s: i32| Signal::try_from(s).map_or_else(|_| format!("signal {s}"), |sig| sig.as_str().to_owned());
    match (signal, received_signal) {
        (Some(s), _) if s == Signal::SIGKILL as i32 => {
            let cpu = cpu_used.map(|used| format!(" after {used:.1} s of CPU time")).unwrap_or_default();
            format!(
                "ffmpeg was killed (SIGKILL){cpu} by something outside this server, such as the out-of-memory \
                 killer or an operator"
            )
        }
        (Some(s), _) => format!("ffmpeg was killed by {}; its last messages: {}", name(s), summary()),
        // Not sent by the runner (its stops are reported as such): from outside this server.
        (None, Some(s)) => format!(
            "ffmpeg was stopped by {} from outside this server (such as an operator); its last messages: {}",
            name(s),
            summary()
        ),
        (None, None) => match (config.limits.address_space_bytes, memory) {
            (Some(limit), Some(sign)) => {
                let reached =
                    format!("the memory limit, {limit} bytes of address space for ffmpeg, was probably reached");
                match sign {
                    MemorySign::Allocation => format!("{}\n({reached})", summary()),
                    MemorySign::Thread => format!("{}\n({reached}: {THREAD_STACKS})", summary()),
                }
            }
            _ => summary(),
        },
    }
}

/// What a failed thread start adds to the memory limit's message.
const THREAD_STACKS: &str = "every thread ffmpeg starts maps its stack (8 MiB by default) against it, so more \
                             threads need more; fewer threads (`-threads 2`) or a higher limit helps";

/// What a line of ffmpeg's stderr says of memory ([`memory_sign`]); the later kind says more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum MemorySign {
    /// An allocation failed.
    Allocation,
    /// A thread could not be started: its stack could not be mapped.
    Thread,
}

/// What a line of ffmpeg's stderr says of memory: an allocation failed (`AVERROR(ENOMEM)`'s
/// text; a library's own report: x264 writes "x264 [error]: malloc of size N failed" straight
/// to stderr, without ffmpeg's level; a decoder's "get_buffer() failed"; the dynamic loader's,
/// when the limit is too low for ffmpeg to start at all: "error while loading shared
/// libraries: ...: failed to map segment from shared object"), or a thread could not be
/// started (`pthread_create`'s `EAGAIN`, which ffmpeg reports as `AVERROR(EAGAIN)`'s text,
/// "Resource temporarily unavailable", as in "Error while opening decoder for input stream
/// #0:0 : Resource temporarily unavailable").
pub(super) fn memory_sign(line: &str) -> Option<MemorySign> {
    const ALLOCATION: [&str; 6] = [
        "Cannot allocate memory",
        "malloc of size",
        "Out of memory",
        "out of memory",
        "failed to map segment",
        // A decoder's frame buffer (seen at 300 MB decoding 720p H.264).
        "get_buffer() failed",
    ];
    if line.contains("Resource temporarily unavailable") {
        Some(MemorySign::Thread)
    } else if ALLOCATION.iter().any(|sign| line.contains(sign)) {
        Some(MemorySign::Allocation)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;

    use ffmpeg_core::log::{LogRouter, LogSettings};

    use super::*;

    fn config(cpu_seconds: Option<u64>) -> FfmpegConfig {
        let mut config = FfmpegConfig::new("ffmpeg", "/srv/data");
        config.limits.cpu_seconds = cpu_seconds;
        config
    }

    fn facts(status: std::process::ExitStatus, messages: &str, cpu_used: Option<f64>) -> ExitFacts<'_> {
        ExitFacts { status, messages, received_signal: None, memory: memory_sign(messages), cpu_used }
    }

    #[test]
    fn lines_saying_an_output_was_not_finished_are_told_from_others() {
        let urls = ["file:/srv/data/out/o.mp4".to_owned(), "file:/srv/data/out/b.mp4".to_owned()];
        let check = |stderr: &str, expected: bool| {
            let mut router = LogRouter::new(LogSettings::default());
            let lines = router.feed(format!("{stderr}\n").as_bytes());
            let line = lines.last().expect(stderr);
            assert_eq!(unfinished_output(line, &urls), expected, "{stderr}");
        };
        for line in [
            "[error] Error writing trailer of file:/srv/data/out/o.mp4: No space left on device",
            "[error] Error closing file file:/srv/data/out/o.mp4: Input/output error",
            "[error] Nothing was written into output file 1 (file:/srv/data/out/b.mp4), because at least one of its streams received no packets.",
            "[segment @ 0x55ecef4a5780] [error] Failure occurred when ending segment 'file:/srv/data/seg/s000.ts'",
            "[error] av_interleaved_write_frame(): No space left on device",
            "[hls @ 0x5a] [error] Disk quota exceeded",
        ] {
            check(line, true);
        }
        for line in [
            // Not an output of this run (a name ffmpeg printed from data, or another URL).
            "[error] Error writing trailer of x: Invalid argument",
            "[error] Error writing trailer of file:/srv/data/out/o.mp4.part: Invalid argument",
            "[error] Nothing was written into output file 1 (file:/srv/data/out/c.mp4), because at least one of its streams received no packets.",
            // Not at error level.
            "[info] Error writing trailer of file:/srv/data/out/o.mp4: No space left on device",
            "[warning] av_interleaved_write_frame(): No space left on device",
            // Others.
            "[warning] Output file is empty, nothing was encoded",
            "[error] Error while decoding stream #0:0: Invalid data found when processing input",
            "[mp4 @ 0x55] [info] Starting second pass: moving the moov atom to the beginning of the file",
        ] {
            check(line, false);
        }
        // A continuation of a message (a metadata value with a newline `metadata=mode=print`
        // printed) is data, whatever words start it (tester finding L3).
        check("[Parsed_metadata_1 @ 0x5a] [info] k=a\nError writing trailer of file:/srv/data/out/o.mp4: x", false);
        check("[error] Output #0, mp4, to 'e/x\nError closing file file:/srv/data/out/o.mp4: x", false);
        check("[info] k=a\nav_interleaved_write_frame(): No space left on device", false);
    }

    #[test]
    fn a_sigkill_is_blamed_on_the_cpu_limit_only_when_that_much_cpu_was_used() {
        let killed = std::process::ExitStatus::from_raw(9);
        let check = |cpu_seconds, cpu_used, expected: &str| {
            let message = exit_message(facts(killed, "", cpu_used), &config(cpu_seconds));
            assert!(message.starts_with(expected), "{message}");
        };
        check(Some(10), Some(15.2), "CPU time limit exceeded (10 s)");
        check(Some(10), Some(3.0), "ffmpeg was killed (SIGKILL) after 3.0 s of CPU time by something outside");
        check(Some(10), None, "ffmpeg was killed (SIGKILL): by the CPU time limit (10 s) if it used that much");
        check(None, None, "ffmpeg was killed (SIGKILL) by something outside this server");
        // A fourth SIGXCPU while ffmpeg finished its outputs: it exits 123 at once, saying
        // nothing of which signal.
        let hard_exit = std::process::ExitStatus::from_raw(123 << 8);
        let said = "Received > 3 system signals, hard exiting\n";
        assert_eq!(
            exit_message(facts(hard_exit, said, Some(4.3)), &config(Some(2))),
            "CPU time limit exceeded (2 s); ffmpeg was stopped"
        );
        assert_eq!(exit_message(facts(hard_exit, said, Some(0.3)), &config(Some(2))), said.trim_end());
        let terminated = std::process::ExitStatus::from_raw(15);
        assert_eq!(
            exit_message(facts(terminated, "a\nb\n", None), &config(None)),
            "ffmpeg was killed by SIGTERM; its last messages: a\nb"
        );
    }

    /// ffmpeg catches SIGXCPU, finishes its outputs and exits 255; its errors are then only
    /// what the interruption caused (tester finding G22), and its report of the signal is an
    /// `info` line.
    #[test]
    fn a_signal_ffmpeg_caught_is_named_from_its_own_report() {
        let exited = std::process::ExitStatus::from_raw(255 << 8);
        let errors = "Error closing progress log, loss of information possible: Immediate exit requested\n";
        let caught = |signal, cpu| ExitFacts { received_signal: Some(signal), ..facts(exited, errors, Some(cpu)) };
        assert_eq!(
            exit_message(caught(24, 2.1), &config(Some(2))),
            "CPU time limit exceeded (2 s); ffmpeg was stopped"
        );
        assert_eq!(
            exit_message(caught(15, 0.5), &config(Some(2))),
            "ffmpeg was stopped by SIGTERM from outside this server (such as an operator); its last messages: \
             Error closing progress log, loss of information possible: Immediate exit requested"
        );
        assert_eq!(exit_message(facts(exited, errors, None), &config(None)), errors.trim_end());
        assert_eq!(received_signal("Exiting normally, received signal 24."), Some(24));
        assert_eq!(received_signal("Exiting normally, received signal 2.\r"), Some(2));
        assert_eq!(
            received_signal("[info] Exiting normally, received signal 24."),
            None,
            "the level is not part of it"
        );
        assert_eq!(received_signal("Exiting normally, received signal x."), None);
    }

    #[test]
    fn an_allocation_failure_under_a_memory_limit_names_the_limit() {
        // What ffmpeg 5.1 says at `RLIMIT_AS` 400 MB encoding 2160p with x264: the malloc
        // failure is x264's own line, not among the error lines the summary keeps.
        let exited = std::process::ExitStatus::from_raw(1 << 8);
        let errors = "Error initializing output stream 0:0 -- Error while opening encoder for output stream #0:0\n";
        let mut limited = config(None);
        limited.limits.address_space_bytes = Some(400_000_000);
        let x264 = ExitFacts { memory: Some(MemorySign::Allocation), ..facts(exited, errors, None) };
        let message = exit_message(x264, &limited);
        assert!(message.starts_with(errors.trim_end()), "{message}");
        assert!(
            message.ends_with("(the memory limit, 400000000 bytes of address space for ffmpeg, was probably reached)")
        );
        assert_eq!(exit_message(x264, &config(None)), errors.trim_end(), "no limit set");
        assert_eq!(exit_message(facts(exited, errors, None), &limited), errors.trim_end(), "no allocation failed");
        assert_eq!(memory_sign("x264 [error]: malloc of size 15639168 failed"), Some(MemorySign::Allocation));
        assert_eq!(memory_sign("Error while filtering: Cannot allocate memory"), Some(MemorySign::Allocation));
        assert_eq!(memory_sign("Error while opening encoder for output stream #0:0"), None);
        // Too low for ffmpeg's libraries to load (seen at 250 MB).
        let loader =
            "ffmpeg: error while loading shared libraries: libshine.so.3: failed to map segment from shared object";
        let message = exit_message(facts(std::process::ExitStatus::from_raw(127 << 8), loader, None), &limited);
        assert!(message.starts_with(loader) && message.contains("memory limit"), "{message}");
    }

    /// With a tight limit, ffmpeg's threads cannot map their stacks: `pthread_create` fails
    /// with `EAGAIN`, which ffmpeg reports as its text (tester finding H10, at 300 MB on 2 cores).
    #[test]
    fn a_thread_that_could_not_start_under_a_memory_limit_names_the_limit_and_the_stacks() {
        let exited = std::process::ExitStatus::from_raw(1 << 8);
        let said = "Error while opening decoder for input stream #0:0 : Resource temporarily unavailable\n";
        let mut limited = config(None);
        limited.limits.address_space_bytes = Some(300_000_000);
        let message = exit_message(facts(exited, said, None), &limited);
        assert_eq!(
            message,
            format!(
                "{}\n(the memory limit, 300000000 bytes of address space for ffmpeg, was probably reached: {THREAD_STACKS})",
                said.trim_end()
            )
        );
        assert!(message.contains("-threads 2"), "{message}");
        assert_eq!(exit_message(facts(exited, said, None), &config(None)), said.trim_end(), "no limit set");
        assert_eq!(memory_sign(said), Some(MemorySign::Thread));
    }
}

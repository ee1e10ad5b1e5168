//! Reading what the configured ffmpeg knows: [`probe_capabilities`] runs the binary's help
//! commands and hands their text to [`Capabilities::from_outputs`].
//!
//! Run once at start-up; the server then rejects commands with unknown options, codecs,
//! formats or filters at submit time ([`Capabilities::check`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ffmpeg_core::capabilities::{Capabilities, CapabilityOutputs};
use tokio::io::{AsyncRead, AsyncReadExt};

/// How long [`probe_capabilities`] waits for all the commands together.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The most stdout one command may print (`-h full` prints about 1.1 MB with ffmpeg 5.1).
const MAX_OUTPUT_BYTES: usize = 32 * 1024 * 1024;

/// The most stderr kept: the banner (about 3 KB) or an error message.
const MAX_STDERR_BYTES: usize = 16 * 1024;

/// Why the capabilities could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The binary could not be started (missing, not executable).
    #[error("cannot run `{}`: {source}", binary.display())]
    Spawn {
        /// The binary as configured.
        binary: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// Reading a command's output or waiting for it failed.
    #[error("`{command}`: {source}")]
    Io {
        /// The command, e.g. `/usr/bin/ffmpeg -hide_banner -encoders`.
        command: String,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// A command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command, e.g. `/usr/bin/ffmpeg -hide_banner -encoders`.
        command: String,
        /// How it exited, e.g. "exit status: 1".
        status: String,
        /// The start of its stderr (at most 16 KiB), lossily decoded and trimmed.
        stderr: String,
    },
    /// A command printed more than 32 MiB: not the help output of an ffmpeg.
    #[error("`{command}` printed more than {} MiB", MAX_OUTPUT_BYTES / (1024 * 1024))]
    TooLarge {
        /// The command.
        command: String,
    },
    /// The commands did not all finish in time; they were killed.
    #[error("`{}` did not answer within {} s", binary.display(), timeout.as_secs_f64())]
    TimedOut {
        /// The binary as configured.
        binary: PathBuf,
        /// The limit that passed.
        timeout: Duration,
    },
    /// The binary is an ffmpeg older than 5.0 (the oldest whose option table this server knows).
    #[error("`{}` is ffmpeg {version}, not ffmpeg >= 5.0", binary.display())]
    TooOld {
        /// The binary as configured.
        binary: PathBuf,
        /// The version its banner names, e.g. `4.4.2-0ubuntu0.22.04.1`.
        version: String,
    },
    /// Everything ran, but no option, codec, format or filter name could be read: the binary
    /// is not an ffmpeg whose help output [`Capabilities::from_outputs`] understands.
    #[error("`{}` listed no option, codec, format or filter name: is it ffmpeg?", binary.display())]
    NothingKnown {
        /// The binary as configured.
        binary: PathBuf,
    },
}

/// Runs `ffmpeg -hide_banner` with `-muxers`, `-demuxers`, `-encoders`, `-decoders` and
/// `-filters`, and `ffmpeg -h full`, concurrently, and reads their stdout into
/// [`Capabilities`], the version from the banner `-h full` prints on stderr; within
/// [`DEFAULT_PROBE_TIMEOUT`] (20 s) for all of them.
///
/// Each ffmpeg start costs about 0.15 s of CPU (it loads every codec, device and filter
/// library), about 1 s for the six with Debian 12's ffmpeg 5.1: half a second on two idle
/// cores, 1 to 2 s on two busy ones. Parsing the outputs takes about 2 ms (release build).
///
/// Each command runs like a job does: directly (no shell), with a cleared environment and an
/// empty stdin, and is killed if the probe is dropped or times out. `ffmpeg` is a path or a
/// bare name, found as for the runner ([`crate::runner::program_path`]).
///
/// ```no_run
/// # async fn f() -> Result<(), jobs::probe::ProbeError> {
/// use ffmpeg_core::command::Command;
///
/// let caps = jobs::probe::probe_capabilities("ffmpeg".as_ref()).await?;
/// let command = Command::parse("-i in.mp4 -crff 23 out.mp4").expect("parses");
/// assert!(caps.check(&command).is_err());
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`ProbeError::Spawn`] when the binary cannot be started, [`ProbeError::Failed`] when a
/// command exits unsuccessfully, [`ProbeError::TimedOut`], [`ProbeError::TooLarge`],
/// [`ProbeError::Io`], [`ProbeError::TooOld`] when the banner names a version before 5.0
/// ([`is_supported_version`]), and [`ProbeError::NothingKnown`] when nothing could be read.
pub async fn probe_capabilities(ffmpeg: &Path) -> Result<Capabilities, ProbeError> {
    probe_capabilities_within(ffmpeg, DEFAULT_PROBE_TIMEOUT).await
}

/// [`probe_capabilities`] with another time limit for all the commands together.
///
/// # Errors
/// As [`probe_capabilities`].
pub async fn probe_capabilities_within(ffmpeg: &Path, timeout: Duration) -> Result<Capabilities, ProbeError> {
    let started = Instant::now();
    let all = async {
        tokio::try_join!(
            // Without -hide_banner: the banner on stderr holds the version.
            run(ffmpeg, &["-h", "full"]),
            run(ffmpeg, &["-hide_banner", "-muxers"]),
            run(ffmpeg, &["-hide_banner", "-demuxers"]),
            run(ffmpeg, &["-hide_banner", "-encoders"]),
            run(ffmpeg, &["-hide_banner", "-decoders"]),
            run(ffmpeg, &["-hide_banner", "-filters"]),
        )
    };
    let ((help_full, banner), (muxers, _), (demuxers, _), (encoders, _), (decoders, _), (filters, _)) =
        match tokio::time::timeout(timeout, all).await {
            Ok(outputs) => outputs?,
            // Dropping the futures dropped the children, which kill_on_drop kills.
            Err(_) => {
                return Err(ProbeError::TimedOut { binary: ffmpeg.to_owned(), timeout });
            }
        };
    let caps = Capabilities::from_outputs(CapabilityOutputs {
        help_full: &help_full,
        muxers: &muxers,
        demuxers: &demuxers,
        encoders: &encoders,
        decoders: &decoders,
        filters: &filters,
        version: &banner,
    });
    if let Some(version) = caps.version()
        && !is_supported_version(version)
    {
        return Err(ProbeError::TooOld { binary: ffmpeg.to_owned(), version: version.to_owned() });
    }
    if caps.is_empty() {
        return Err(ProbeError::NothingKnown { binary: ffmpeg.to_owned() });
    }
    tracing::debug!(
        ffmpeg = %ffmpeg.display(),
        elapsed_ms = started.elapsed().as_millis(),
        capabilities = ?caps,
        "probed ffmpeg"
    );
    Ok(caps)
}

/// Whether `version` (as [`Capabilities::version`] reads it from the banner) is 5.0 or newer.
/// Release builds print `5.1.9-0+deb12u1` or `n6.0`; git builds print `N-112345-g...` with no
/// release number, and are accepted.
pub fn is_supported_version(version: &str) -> bool {
    if version.starts_with('N') {
        return true;
    }
    let major = version.trim_start_matches(|c: char| !c.is_ascii_digit()).split(['.', '-']).next();
    major.and_then(|m| m.parse::<u32>().ok()).is_some_and(|m| m >= 5)
}

/// Runs `ffmpeg ARGS` and returns its stdout and the start of its stderr, lossily decoded.
async fn run(ffmpeg: &Path, args: &[&str]) -> Result<(String, String), ProbeError> {
    let command = format!("{} {}", ffmpeg.display(), args.join(" "));
    let io = |source| ProbeError::Io { command: command.clone(), source };
    let mut child = crate::runner::ffmpeg_command(ffmpeg)
        .args(args)
        .spawn()
        .map_err(|source| ProbeError::Spawn { binary: ffmpeg.to_owned(), source })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(io(std::io::Error::other("no pipes")));
    };
    // Both pipes at once (a child blocked on a full pipe would never exit); stdout up to its
    // limit, stderr drained but only its start kept.
    let read_out = async {
        match read_capped(stdout, MAX_OUTPUT_BYTES, Overflow::Stop).await.map_err(io)? {
            (_, true) => Err(ProbeError::TooLarge { command: command.clone() }),
            (out, false) => Ok(out),
        }
    };
    let read_err = async {
        let (err, _) = read_capped(stderr, MAX_STDERR_BYTES, Overflow::Drain).await.map_err(io)?;
        Ok(err)
    };
    let (out, err) = tokio::try_join!(read_out, read_err)?;
    let status = child.wait().await.map_err(io)?;
    if !status.success() {
        return Err(ProbeError::Failed {
            command,
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&err).trim().to_owned(),
        });
    }
    Ok((String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned()))
}

/// What [`read_capped`] does with bytes past its cap.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Stop reading.
    Stop,
    /// Read on to the end, discarding them.
    Drain,
}

/// Reads `reader` to its end keeping the first `cap` bytes, or stops early past them
/// ([`Overflow::Stop`]); `true` if there were more than `cap`.
pub(crate) async fn read_capped(
    mut reader: impl AsyncRead + Unpin,
    cap: usize,
    overflow: Overflow,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut over = false;
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Ok((kept, over));
        }
        let room = cap - kept.len();
        kept.extend_from_slice(&chunk[..n.min(room)]);
        if n > room {
            over = true;
            if overflow == Overflow::Stop {
                return Ok((kept, over));
            }
        }
    }
}

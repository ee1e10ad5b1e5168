//! Did a run that ffmpeg ended with exit status 0 encode anything? ffmpeg 5.1 exits 0 when
//! `-ss` lies past the end of the input, or `-t`/`-frames` select nothing: it writes a
//! container header with no streams (`out.mp4`, a few hundred bytes), or no file at all (an
//! image2 output such as `t.jpg`), and warns "Output file is empty, nothing was encoded" only
//! when *every* output is empty. Such a job fails here, with an error that says so.
//!
//! "Nothing encoded", per output:
//! - **The whole run.** ffmpeg's final `-progress` block shows no video frame (`frame=0` or no
//!   `frame` key) and no output time (`out_time_us` 0, negative or `N/A`; it is the largest
//!   position over all streams of all outputs, so an audio-only or subtitle-only output that
//!   got packets has one), or ffmpeg itself warned "Output file is empty", or the final
//!   output time is negative: every packet written lies before the start (`-ss` past the end
//!   with `-c copy`, which copies the input's packets with timestamps before 0: a file with
//!   all the frames that lasts 0 s; [`before_the_start`], applied by the runner).
//! - **A named output.** A file output whose name is not a pattern (`%03d`, `%v`, strftime)
//!   and whose muxer writes a file is missing after the run, was not written by it (an image2
//!   output that got no packet leaves an older file of that name as it was), or is empty.
//!
//! Not counted as nothing: `-f null` outputs (they write nothing by design), and the
//! `ffmetadata` muxer (`-f ffmetadata`, `.ffmeta`), which writes the input's metadata and
//! chapters and takes no streams (`AVFMT_NOSTREAMS` in `libavformat/ffmetaenc.c`): for a
//! command whose only outputs are of that kind, ffmpeg's final progress shows no frame and no
//! time, and it warns "Output file is empty", yet the file is what was asked for.
//!
//! What this does not see: an output of a several-output command that got no packets while
//! another output did, if its muxer still wrote a non-empty file (an `.mp4` header). ffmpeg
//! reports packets per output only at `-loglevel verbose`.
//!
//! Each verdict adds that the file system has almost no space left when so (some muxers drop
//! their write errors). An output ffmpeg says it could not finish ("Error writing trailer of
//! ...", a full disk) fails the run in the runner already ([`crate::runner::RunError::Unfinished`]);
//! one whose output directories' file system was nearly full at some point of the run, though
//! ffmpeg said nothing, fails by [`filled_disk`] (watched by [`lowest_free_space`]).
//!
//! [`nothing_encoded`] reads file metadata: it blocks; call it from `spawn_blocking`.

use std::fs;
use std::path::{Path, PathBuf};

use ffmpeg_core::command::Output;
use ffmpeg_core::pattern;
use ffmpeg_core::sandbox::{OutputTarget, ResolvedCommand};

use crate::disk_space::free_bytes;
use crate::model::Progress;

/// The warning `print_final_stats()` in ffmpeg 5.1's `fftools/ffmpeg.c` logs when the
/// outputs together received no bytes of any stream.
const EMPTY_WARNING: &str = "Output file is empty, nothing was encoded";

/// What the client can change, appended to every verdict.
const HINT: &str = "check -ss, -t, -to and -frames against the input's length";

/// Why a run that exited 0 counts as failed, or `None` when every output got something.
///
/// `root` is the data directory; `written` the files the run wrote, relative to `root`
/// ([`crate::outputs::run_files`]); `last` the run's final progress snapshot, if ffmpeg wrote
/// one; `log` the tail of its stderr. See the [module docs](self) for the rules. Blocking.
///
/// The text reads as a job's `error`, e.g. "output `out/t.jpg` was not written: ffmpeg
/// exited normally but encoded nothing into it (check -ss, -t, -to and -frames against the
/// input's length)".
pub fn nothing_encoded(
    root: &Path,
    command: &ResolvedCommand,
    written: &[PathBuf],
    last: Option<&Progress>,
    log: &str,
) -> Option<String> {
    let outputs: Vec<(&Output, &OutputTarget)> = command.command().outputs().iter().zip(command.outputs()).collect();
    // Outputs that legitimately carry no packets: nothing to judge by the global signals.
    if outputs.iter().all(|(output, _)| takes_no_streams(output)) {
        return None;
    }
    for (output, target) in &outputs {
        let OutputTarget::File(path) = target else { continue };
        let relative = path.relative();
        let is_null = output.format().is_some_and(|f| f.eq_ignore_ascii_case("null"));
        if is_null || takes_no_streams(output) || pattern::is_pattern(&relative.to_string_lossy()) {
            continue;
        }
        let size = fs::metadata(root.join(relative)).map(|meta| meta.len()).ok();
        let problem = match size {
            None => "was not written",
            Some(_) if !written.iter().any(|w| w == relative) => "was not written (the file there is older)",
            Some(0) => "is empty",
            Some(_) => continue,
        };
        let directory = root.join(relative).parent().map_or_else(|| root.to_owned(), Path::to_owned);
        return Some(format!(
            "output `{}` {problem}: ffmpeg exited normally but encoded nothing into it ({}){}",
            relative.display(),
            HINT,
            low_space(&directory)
        ));
    }
    if log.contains(EMPTY_WARNING) {
        return Some(format!("nothing was encoded: ffmpeg warned \"{EMPTY_WARNING}\" ({HINT}){}", low_space(root)));
    }
    // Subtitle and data streams move neither `frame` nor `out_time` (checked with ffmpeg
    // 5.1: an `.srt` to `.vtt` run ends with `out_time_us=0`), so the progress only speaks
    // for outputs known to hold nothing but video and audio.
    if let Some(progress) = last
        && progress.frame.unwrap_or(0) == 0
        && progress.out_time_us.unwrap_or(0) <= 0
        && only_video_and_audio(log)
    {
        return Some(format!(
            "nothing was encoded: ffmpeg exited normally, but its final progress shows no frame \
             and no output time ({HINT}){}",
            low_space(root)
        ));
    }
    None
}

/// How often [`lowest_free_space`] looks at the free space of a run's output directories.
const FREE_SPACE_PERIOD: std::time::Duration = std::time::Duration::from_millis(250);

/// The least free space seen on the file systems holding `dirs` (a run's output directories,
/// absolute) from now until `until` fires, looked at every 250 ms and once more at the end:
/// the directory and its free bytes, or `None` when none could be read. Each look runs on a
/// blocking thread (`statvfs`).
pub async fn lowest_free_space(
    dirs: Vec<PathBuf>,
    until: &tokio_util::sync::CancellationToken,
) -> Option<(PathBuf, u64)> {
    let dirs = std::sync::Arc::new(dirs);
    let look = || {
        let dirs = std::sync::Arc::clone(&dirs);
        tokio::task::spawn_blocking(move || {
            dirs.iter().filter_map(|dir| Some((dir.clone(), free_bytes(dir)?))).min_by_key(|(_, free)| *free)
        })
    };
    let mut lowest: Option<(PathBuf, u64)> = None;
    loop {
        let ended = until.is_cancelled();
        if let Ok(Some(seen)) = look().await
            && lowest.as_ref().is_none_or(|(_, free)| seen.1 < *free)
        {
            lowest = Some(seen);
        }
        if ended {
            return lowest;
        }
        tokio::select! {
            () = until.cancelled() => {}
            () = tokio::time::sleep(FREE_SPACE_PERIOD) => {}
        }
    }
}

/// Why a run that exited 0 counts as unfinished for lack of space, or `None`: while it ran,
/// the file system holding one of its output directories had less than [`FULL_BYTES`] free
/// at some point (a write ffmpeg buffers is 32 KiB: less than two of them is a disk that
/// refused writes; a disk that is merely low, with room for the run's files, fails nothing:
/// tester finding L18) (`lowest`, from [`lowest_free_space`]; `root` the data directory, to
/// name the directory relative to it). Muxers that write their own files drop some write
/// errors and ffmpeg 5.1 exits 0 without a word: on a full disk the `segment` muxer leaves a
/// truncated segment, an empty one and an empty list, the `hls` muxer an empty playlist, or,
/// with `-hls_flags delete_segments` (deleting old segments frees the room the last playlist
/// needs), a complete-looking playlist of truncated segments (tester findings L4, L16). Such
/// outputs cannot be told from good ones afterwards, so the run fails.
///
/// The text reads as a job's `error`, e.g. "the disk filled up during the run: the file
/// system holding `h` had only 12 KiB free; ffmpeg exited normally, but its outputs may be
/// incomplete (free some space and submit the job again)".
pub fn filled_disk(root: &Path, lowest: Option<&(PathBuf, u64)>) -> Option<String> {
    let (dir, free) = lowest.filter(|(_, free)| *free < FULL_BYTES)?;
    let shown = dir.strip_prefix(root).ok().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Some(format!(
        "the disk filled up during the run: the file system holding `{}` had only {} KiB free; ffmpeg exited \
         normally, but its outputs may be incomplete (free some space and submit the job again)",
        shown.display(),
        free / 1024
    ))
}

/// Free space under which a run's disk counts as full ([`filled_disk`]).
const FULL_BYTES: u64 = 64 * 1024;

/// Free space under which a missing or empty output is said to be possibly for lack of space.
const LOW_SPACE_BYTES: u64 = 1024 * 1024;

/// A note for a verdict when the file system holding `directory` has less than
/// [`LOW_SPACE_BYTES`] available to ffmpeg (`statvfs`'s `f_bavail`): some muxers drop their
/// write errors (the `hls` muxer of ffmpeg 5.1 logs nothing when a segment or playlist write
/// fails), so an output that is missing or empty may be one that did not fit (tester finding
/// K6). Empty when there is space, or when it cannot be read. Blocking.
fn low_space(directory: &Path) -> String {
    let Some(free) = free_bytes(directory).filter(|free| *free < LOW_SPACE_BYTES) else { return String::new() };
    format!(
        "; the file system holding it has only {} KiB free, so writing may have failed for lack of space",
        free / 1024
    )
}

/// Why a run that exited 0 counts as failed because of its final output time, or `None`:
/// `out_time_us` is the output time of ffmpeg's last `-progress` block (microseconds, as
/// ffmpeg wrote it). It is the largest position over the outputs' streams, so it is negative
/// only when every packet written lies before the start: `-ss` past the end of the input with
/// the streams copied (`-c copy` keeps the packets, with timestamps before 0, so the file
/// holds frames and lasts 0 s; plain ffmpeg 5.1 exits 0 with `time=-00:00:07.97`). The
/// runner applies it, whatever the client's log level.
pub fn before_the_start(out_time_us: Option<i64>) -> Option<String> {
    // ffmpeg writes `AV_NOPTS_VALUE` (about -9.2e18) when no stream has a position at all
    // (an `ffmetadata` output): that is no time, not a time before the start.
    let time = out_time_us.filter(|t| *t < 0 && *t > i64::MIN / 2)?;
    Some(format!(
        "nothing was encoded: ffmpeg exited normally, but every packet it wrote lies before the \
         output's start (final output time {:.2} s) ({HINT})",
        time as f64 / 1e6
    ))
}

/// Is the output's muxer one that takes no streams (`ffmetadata`, forced with `-f` or chosen
/// by ffmpeg for the `.ffmeta` extension)?
fn takes_no_streams(output: &Output) -> bool {
    match output.format() {
        Some(format) => format.eq_ignore_ascii_case("ffmetadata"),
        None => Path::new(output.url()).extension().is_some_and(|ext| ext.eq_ignore_ascii_case("ffmeta")),
    }
}

/// Does ffmpeg's stream listing in `log` show outputs (`Output #0, mp4, to '...':`) whose
/// streams (`    Stream #0:0: Video: ...`) are all video or audio? `false` when any is a
/// subtitle, data or attachment stream, or when the listing is not in `log`.
fn only_video_and_audio(log: &str) -> bool {
    let Some(start) = log.find("Output #") else { return false };
    let mut streams = 0;
    for line in log[start..].lines() {
        // Found anywhere in the line: `-loglevel level+...` puts `[info] ` before it.
        let Some((_, kind)) = line.split_once("Stream #").and_then(|(_, rest)| rest.split_once(": ")) else {
            continue;
        };
        if !(kind.starts_with("Video:") || kind.starts_with("Audio:")) {
            return false;
        }
        streams += 1;
    }
    streams > 0
}

//! What a completed job's `outputs` say about each file it wrote, from what the run already
//! has: ffmpeg's `Output #N` listing ([`ffmpeg_core::output_banner`], read by the runner from
//! all of stderr), its final progress and the file system. No ffprobe runs, so a job costs no
//! more than before.
//!
//! Per written file:
//! - the file an output names (`out.mp4`, `hls/index.m3u8`) gets that output's muxer and
//!   streams; its duration is ffmpeg's final `out_time` when the command has one output (with
//!   several, `out_time` is the furthest of all, so it is `None`);
//! - a file of an output's name pattern (`thumbs/t%03d.png`: `thumbs/t001.png`, ...) gets the
//!   output's muxer and streams, no duration; for an HLS `%v` name, the muxer only (the
//!   streams are split between the variants);
//! - any other file (HLS segments, a DASH set's segments, pass logs) gets neither: `None`,
//!   no streams.
//!
//! [`describe`] reads file sizes: it blocks.

use std::path::{Path, PathBuf};

use ffmpeg_core::output_banner::OutputBanner;
use ffmpeg_core::pattern;
use ffmpeg_core::sandbox::{OutputTarget, ResolvedCommand};

use crate::model::{OutputFile, Progress};

/// One [`OutputFile`] per entry of `written` (relative to `root`), in the same order. See the
/// [module docs](self). Blocking.
pub fn describe(
    root: &Path,
    command: &ResolvedCommand,
    written: &[PathBuf],
    banner: &[OutputBanner],
    last: Option<&Progress>,
) -> Vec<OutputFile> {
    let files: Vec<(usize, String)> = command
        .outputs()
        .iter()
        .enumerate()
        .filter_map(|(i, target)| match target {
            OutputTarget::File(path) => Some((i, path.relative().to_string_lossy().into_owned())),
            _ => None,
        })
        .collect();
    let only_output = command.outputs().len() == 1;
    let duration = last.and_then(|p| p.out_time_us).filter(|us| *us > 0).map(|us| us as f64 / 1e6);
    written
        .iter()
        .map(|file| {
            let path = file.to_string_lossy().into_owned();
            let size_bytes = std::fs::metadata(root.join(file)).map(|m| m.len()).unwrap_or(0);
            let named = files.iter().find(|(_, name)| *name == path);
            let patterned =
                || files.iter().find(|(_, name)| pattern::is_pattern(name) && pattern::matches(name, &path));
            let (index, exact) = match named {
                Some((i, _)) => (Some(*i), true),
                None => (patterned().map(|(i, _)| *i), false),
            };
            let listed = index.and_then(|i| banner.iter().find(|b| b.index == i));
            let variant =
                index.is_some_and(|i| files.iter().any(|(j, name)| *j == i && pattern::has_hls_variant(name)));
            OutputFile {
                path,
                size_bytes,
                duration_seconds: if exact && only_output { duration } else { None },
                format: listed.map(|b| b.format.clone()),
                streams: match listed {
                    Some(b) if !variant => b.streams.clone(),
                    _ => Vec::new(),
                },
            }
        })
        .collect()
}

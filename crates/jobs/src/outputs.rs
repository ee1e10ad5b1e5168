//! Which files a command really produced.
//!
//! A plain output is the file itself. A pattern output (`thumbs/t%03d.png`, image2 and segment
//! muxers expand printf-style `%d` sequences) is every file in its directory whose name matches
//! the pattern and was modified since the run started. A segmenting muxer (`hls`, `dash`;
//! chosen with `-f` or by the `.m3u8`/`.mpd` extension) also writes files the command does not
//! name: the names it derives by default (`index0.ts` for `index.m3u8`, DASH's
//! `chunk-stream*`) are listed. Files written because of options and filters
//! (`-hls_segment_filename`, `-passlogfile`, `psnr=stats_file=`) are listed too, by their
//! pattern or prefix. Nothing else in the directory is ever listed, or removed when a run is
//! cancelled: other files beside the outputs belong to someone else. Paths are relative to the
//! data directory.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ffmpeg_core::command::Output;
use ffmpeg_core::pattern;
use ffmpeg_core::policy::{Access, Naming};
use ffmpeg_core::sandbox::{OptionFile, OutputTarget, ResolvedCommand};

/// Muxers that write files besides the one named on the command line.
const SEGMENTING_MUXERS: [&str; 5] = ["hls", "dash", "segment", "ssegment", "stream_segment"];

fn is_segmenting(output: &Output, path: &Path) -> bool {
    if let Some(format) = output.option("f").and_then(|o| o.value()) {
        return SEGMENTING_MUXERS.contains(&format);
    }
    matches!(path.extension().and_then(|e| e.to_str()), Some("m3u8" | "mpd"))
}

/// Names a segmenting muxer derives from its output `name` when the command names no pattern:
/// the output itself, `STEM<digits>.<ext>` (HLS segments `index0.ts`, `index1.m4s`), HLS fmp4's
/// `init.mp4`, and DASH's `init-stream*`/`chunk-stream*` files.
fn is_derived_segment(output_name: &str, name: &str) -> bool {
    if name == output_name || name == "init.mp4" || name.starts_with("init-stream") || name.starts_with("chunk-stream")
    {
        return true;
    }
    let stem = Path::new(output_name).file_stem().and_then(|s| s.to_str()).unwrap_or(output_name);
    name.strip_prefix(stem).and_then(|rest| rest.split_once('.')).is_some_and(|(digits, ext)| {
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && !ext.is_empty()
    })
}

fn modified_since(meta: &fs::Metadata, since: SystemTime) -> bool {
    meta.modified().is_ok_and(|m| m >= since)
}

/// Files in `dir` (not recursive) accepted by `keep`.
fn scan(dir: &Path, mut keep: impl FnMut(&str, &fs::Metadata) -> bool, found: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str()
            && keep(name, &meta)
        {
            found.insert(entry.path());
        }
    }
}

/// Files matching one resolved path written by a run: the file itself, the files of a `%d`
/// pattern, or the files named by a prefix (`-passlogfile logs/x` writes `logs/x-0.log`).
fn scan_path(abs: &Path, naming: Naming, started: SystemTime, found: &mut BTreeSet<PathBuf>) {
    let dir = abs.parent().unwrap_or(abs);
    let name = abs.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match naming {
        Naming::Prefix => scan(dir, |n, meta| n.starts_with(name) && modified_since(meta, started), found),
        _ if name.contains('%') => {
            scan(dir, |n, meta| pattern::matches(name, n) && modified_since(meta, started), found);
        }
        // Other templates (DASH `$Number$`).
        Naming::Pattern => scan(dir, |n, meta| pattern::matches(name, n) && modified_since(meta, started), found),
        // A file the command names: listed when it exists (ffmpeg was told to write it).
        _ => {
            if abs.is_file() {
                found.insert(abs.to_path_buf());
            }
        }
    }
}

/// Option files a run writes (`-hls_segment_filename`, `-passlogfile`, `psnr=stats_file=`, ...).
fn written_option_files(command: &ResolvedCommand) -> impl Iterator<Item = &OptionFile> {
    command.option_files().iter().filter(|f| matches!(f.file_use().access, Access::Write | Access::ReadWrite))
}

/// The files `command` produced, as absolute paths, for a run that started at `started`:
/// its outputs and the files its options and filters wrote.
pub fn produced_files(command: &ResolvedCommand, started: SystemTime) -> Vec<PathBuf> {
    // File times come from the kernel's coarse clock (one tick, up to 10 ms, behind the precise
    // clock `started` was read from): allow for it.
    let started = started.checked_sub(std::time::Duration::from_millis(100)).unwrap_or(started);
    let mut found = BTreeSet::new();
    for file in written_option_files(command) {
        let abs = file.path().as_path();
        scan_path(abs, file.file_use().naming, started, &mut found);
    }
    for (output, target) in command.command().outputs().iter().zip(command.outputs()) {
        let OutputTarget::File(path) = target else { continue };
        let abs = path.as_path();
        if is_segmenting(output, abs) && !abs.to_string_lossy().contains('%') {
            let name = abs.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let dir = abs.parent().unwrap_or(abs);
            scan(dir, |n, meta| is_derived_segment(name, n) && modified_since(meta, started), &mut found);
        } else {
            scan_path(abs, Naming::Exact, started, &mut found);
        }
    }
    found.into_iter().collect()
}

/// `paths` relative to the data directory `root`, as strings (non-UTF-8 names lossily).
pub fn relative_to(root: &Path, paths: &[PathBuf]) -> Vec<String> {
    paths.iter().filter_map(|p| p.strip_prefix(root).ok()).map(|p| p.to_string_lossy().into_owned()).collect()
}

/// The paths a command writes: its file outputs and written option files (patterns and
/// prefixes as written), as absolute paths.
pub fn written_paths(command: &ResolvedCommand) -> Vec<PathBuf> {
    let outputs = command.outputs().iter().filter_map(|t| match t {
        OutputTarget::File(p) => Some(p.as_path().to_path_buf()),
        _ => None,
    });
    outputs.chain(written_option_files(command).map(|f| f.path().as_path().to_path_buf())).collect()
}

/// Creates the parent directories of every file output and written option file
/// (`thumbs/t%03d.png` needs `thumbs/`, `-hls_segment_filename hls/s_%03d.ts` needs `hls/`).
///
/// # Errors
/// The first directory that cannot be created.
pub fn create_output_dirs(command: &ResolvedCommand) -> std::io::Result<()> {
    for path in written_paths(command) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ffmpeg_core::pattern;

    #[test]
    fn printf_patterns() {
        let cases = [
            ("t%03d.png", "t001.png", true),
            ("t%03d.png", "t1234.png", true),
            ("t%03d.png", "t.png", false),
            ("t%03d.png", "tabc.png", false),
            ("t%d.png", "t7.png", true),
            ("t%d.png", "t7.jpg", false),
            ("100%%_%d.png", "100%_3.png", true),
            ("seg-%Y.ts", "seg-2024.ts", true),
            ("plain.png", "plain.png", true),
            ("chunk-$RepresentationID$-$Number%05d$.m4s", "chunk-0-00001.m4s", true),
            ("chunk-$RepresentationID$-$Number%05d$.m4s", "other.m4s", false),
            ("%s%s%s%s%s%s%s%s%s%s%sx", &"a".repeat(250), false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(pattern::matches(pattern, name), expected, "{pattern} vs {name}");
        }
    }

    #[test]
    fn derived_segment_names() {
        use super::is_derived_segment;
        for (output, name, expected) in [
            ("index.m3u8", "index.m3u8", true),
            ("index.m3u8", "index0.ts", true),
            ("index.m3u8", "index12.m4s", true),
            ("top.m3u8", "upload.txt", false),
            ("top.m3u8", "victim_b.mp4", false),
            ("top.m3u8", "top_notes.txt", false),
            ("top.m3u8", "top2.m3u8", true),
            ("manifest.mpd", "chunk-stream0-00001.m4s", true),
            ("manifest.mpd", "init-stream1.m4s", true),
        ] {
            assert_eq!(is_derived_segment(output, name), expected, "{output} -> {name}");
        }
    }
}

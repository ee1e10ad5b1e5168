//! Which files a command really produced.
//!
//! A plain output is the file itself. A pattern output (`thumbs/t%03d.png`, image2 and segment
//! muxers expand printf-style `%d` sequences) is every file in its directory whose name matches
//! the pattern. A segmenting muxer (`hls`, `dash`, `segment`; chosen with `-f` or by the
//! `.m3u8`/`.mpd` extension) also writes files the command does not name, so for those every
//! file in the output's directory that
//! was modified since the run started is listed. Files written because of options and filters
//! (`-hls_segment_filename`, `-passlogfile`, `psnr=stats_file=`) are listed too. Paths are
//! relative to the data directory.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ffmpeg_core::command::Output;
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

/// Does `name` match the printf-style `pattern` (`%d`, `%03d`, `%%`; other `%x` match anything)?
fn matches_pattern(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p {
            [] => n.is_empty(),
            [b'%', b'%', rest @ ..] => n.first() == Some(&b'%') && go(rest, &n[1..]),
            [b'%', rest @ ..] => {
                // Skip flags and width digits, then one conversion character.
                let spec_len = rest.iter().take_while(|c| c.is_ascii_digit()).count();
                let Some(&conv) = rest.get(spec_len) else { return n == b"%" };
                let rest = &rest[spec_len + 1..];
                if conv == b'd' {
                    let digits = n.iter().take_while(|c| c.is_ascii_digit()).count();
                    (1..=digits).any(|k| go(rest, &n[k..]))
                } else {
                    (0..=n.len()).any(|k| go(rest, &n[k..]))
                }
            }
            [c, rest @ ..] => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
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
            scan(dir, |n, meta| matches_pattern(name, n) && modified_since(meta, started), found);
        }
        // Other templates (DASH `$Number$`): every new file beside it.
        Naming::Pattern => scan(dir, |_, meta| modified_since(meta, started), found),
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
        if file.output().is_some_and(|i| command.command().outputs().get(i).is_some_and(|o| is_segmenting(o, abs))) {
            // Segment names the muxer derives from this pattern: everything new beside it.
            scan(abs.parent().unwrap_or(abs), |_, meta| modified_since(meta, started), &mut found);
        }
    }
    for (output, target) in command.command().outputs().iter().zip(command.outputs()) {
        let OutputTarget::File(path) = target else { continue };
        let abs = path.as_path();
        if is_segmenting(output, abs) {
            scan(abs.parent().unwrap_or(abs), |_, meta| modified_since(meta, started), &mut found);
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
    use super::matches_pattern;

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
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(matches_pattern(pattern, name), expected, "{pattern} vs {name}");
        }
    }
}

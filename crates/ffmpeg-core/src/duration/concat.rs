//! The concat demuxer's list (`-f concat -i list.txt`), read for its entries' lengths and
//! names (which [`Sandbox::concat_entries`](crate::sandbox::Sandbox::concat_entries) checks).
//!
//! ffmpeg's banner gives a concat input a duration only when every entry has a `duration`
//! line (`Duration: N/A` otherwise), so the expected length of its output needs the entries'
//! lengths learned another way: from the list and from the listed files (probed by the
//! caller). The syntax follows `concat_parse_script()` in `libavformat/concatdec.c` (ffmpeg
//! 5.1): one directive per line, a keyword and its arguments separated by spaces or tabs, `#`
//! starting a comment line; `file PATH` (PATH read by `av_get_token()`: `'...'` quotes, `\`
//! escapes) starts an entry; `duration`, `inpoint` and `outpoint` (times as
//! [`parse_time_duration`] reads them) apply to the last entry. Other directives (`ffconcat`,
//! `option`, `stream`, `file_packet_meta`, ...) do not change lengths and are skipped.
//!
//! ```
//! use ffmpeg_core::duration::concat::{ConcatEntry, parse_concat_list};
//!
//! let list = "ffconcat version 1.0\nfile 'a b.mp4'\nduration 2.5\nfile c.mp4\ninpoint 1\n";
//! let entries = parse_concat_list(list);
//! assert_eq!(entries[0].file, "a b.mp4");
//! assert_eq!(entries[0].length(None), Some(2.5));
//! assert_eq!(entries[1].length(Some(4.0)), Some(3.0)); // probed 4 s, from 1 s on
//! assert_eq!(entries[1].length(None), None);
//! ```

use super::parse_time_duration;

/// What a list starts with for ffmpeg to take it as a concat list without `-f concat`
/// (`concat_probe()` in `concatdec.c`: the first 20 bytes, exactly).
pub const FFCONCAT_HEADER: &[u8] = b"ffconcat version 1.0";

/// Whether a file beginning with `head` (at least its first 20 bytes, when it has them) is a
/// concat list that ffmpeg's probing recognises ([`FFCONCAT_HEADER`]).
///
/// ```
/// use ffmpeg_core::duration::concat::is_ffconcat;
///
/// assert!(is_ffconcat(b"ffconcat version 1.0\nfile a.mp4\n"));
/// assert!(!is_ffconcat(b"file a.mp4\n"));
/// assert!(!is_ffconcat(b" ffconcat version 1.0"));
/// ```
pub fn is_ffconcat(head: &[u8]) -> bool {
    head.starts_with(FFCONCAT_HEADER)
}

/// Whether the concat demuxer's safe mode (its default, the only mode the policy allows)
/// accepts `name` as a `file` entry: `safe_filename()` in `concatdec.c` (ffmpeg 5.1), which
/// allows `[A-Za-z0-9_-]` anywhere, `.` anywhere but first in a component, and `/` between
/// components; anything else (an absolute path, `..`, a dot-file, a space, a protocol's `:`)
/// is "Unsafe file name" and the list fails to open.
///
/// ```
/// use ffmpeg_core::duration::concat::is_safe_file_name;
///
/// assert!(is_safe_file_name("parts/a-1.mp4"));
/// for unsafe_name in ["/abs.mp4", "../a.mp4", "sub/.hidden", "a b.mp4", "file:a.mp4", ""] {
///     assert!(!is_safe_file_name(unsafe_name), "{unsafe_name}");
/// }
/// ```
pub fn is_safe_file_name(name: &str) -> bool {
    let mut start = true;
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            start = false;
        } else if start {
            return false;
        } else if byte == b'/' {
            start = true;
        } else if byte != b'.' {
            return false;
        }
    }
    // An empty entry is refused by the parser itself ("string required").
    !name.is_empty()
}

/// Spaces as the concat demuxer skips them (`SPACE_CHARS` in `concatdec.c`).
const SPACE: &[char] = &[' ', '\t', '\r', '\n'];

/// One `file` entry of a concat list.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ConcatEntry {
    /// The path as written (unquoted, unescaped); relative paths are relative to the list's
    /// directory.
    pub file: String,
    /// Its `duration` line, in seconds.
    pub duration: Option<f64>,
    /// Its `inpoint` line, in seconds.
    pub inpoint: Option<f64>,
    /// Its `outpoint` line, in seconds.
    pub outpoint: Option<f64>,
}

impl ConcatEntry {
    /// How much of the output this entry makes, in seconds, given the listed file's own
    /// duration (`None`: not known): the `duration` line if any (the demuxer takes it as the
    /// entry's length); else `outpoint - inpoint`; else the file's duration minus `inpoint`.
    /// `None` when that needs the file's duration and it is not known.
    pub fn length(&self, file_duration: Option<f64>) -> Option<f64> {
        let inpoint = self.inpoint.unwrap_or(0.0);
        let length = match (self.duration, self.outpoint) {
            (Some(duration), _) => duration,
            (None, Some(outpoint)) => outpoint - inpoint,
            (None, None) => file_duration? - inpoint,
        };
        Some(length.max(0.0))
    }

    /// Does [`ConcatEntry::length`] need the listed file's duration?
    pub fn needs_file_duration(&self) -> bool {
        self.duration.is_none() && self.outpoint.is_none()
    }
}

/// The `file` entries of a concat list, in order. Lines that do not parse are skipped (the
/// demuxer would refuse the list, and the run fail before it reports progress).
pub fn parse_concat_list(text: &str) -> Vec<ConcatEntry> {
    let mut entries: Vec<ConcatEntry> = Vec::new();
    for line in text.lines() {
        let line = line.trim_start_matches(SPACE);
        let (keyword, rest) = line.split_once(SPACE).unwrap_or((line, ""));
        let rest = rest.trim_start_matches(SPACE);
        let time = || parse_time_duration(rest.split(SPACE).next().unwrap_or_default());
        match keyword {
            "file" => {
                let mut cursor = rest;
                let file = crate::policy::get_token(&mut cursor, " \t\r\n");
                entries.push(ConcatEntry { file, ..ConcatEntry::default() });
            }
            "duration" => {
                if let Some(entry) = entries.last_mut() {
                    entry.duration = time();
                }
            }
            "inpoint" => {
                if let Some(entry) = entries.last_mut() {
                    entry.inpoint = time();
                }
            }
            "outpoint" => {
                if let Some(entry) = entries.last_mut() {
                    entry.outpoint = time();
                }
            }
            _ => {}
        }
    }
    entries
}

//! The concat demuxer's list (`-f concat -i list.txt`), read for its entries' lengths.
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

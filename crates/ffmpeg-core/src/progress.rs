//! Incremental parser for `ffmpeg -progress pipe:1 -nostats` output.
//!
//! With `-progress URL`, ffmpeg writes a block of `key=value` lines every `-stats_period`
//! (0.5 s by default) and once more at the end. Each block ends with `progress=continue`, the
//! last one with `progress=end`. The format follows `print_report()` in `fftools/ffmpeg.c`
//! (ffmpeg 5.1); a block from a video encode looks like this:
//!
//! ```text
//! frame=50
//! fps=0.00
//! stream_0_0_q=-1.0
//! bitrate= 116.2kbits/s
//! total_size=29352
//! out_time_us=2020136
//! out_time_ms=2020136
//! out_time=00:00:02.020136
//! dup_frames=0
//! drop_frames=0
//! speed=14.1x
//! progress=end
//! ```
//!
//! Audio-only outputs have no `frame`, `fps` or `stream_*_q` lines. Any value may be `N/A`.
//! Values can be padded (`speed=   0x`), negative at the start (`out_time=-00:00:00.079000`
//! when stream-copying B-frames), or in scientific notation (`speed=1.32e+03x`), and
//! `out_time_ms` holds microseconds, like `out_time_us` (a long-standing ffmpeg quirk).
//!
//! [`ProgressParser`] is fed byte chunks exactly as they arrive from the pipe, split anywhere
//! (mid-line, mid-UTF-8 sequence), and returns one [`ProgressUpdate`] per completed block.
//! Malformed input never panics: a line without `=` is ignored, a value that does not parse
//! (or overflows) becomes `None`, invalid UTF-8 is replaced, and memory stays bounded.
//!
//! ```
//! use ffmpeg_core::progress::{ProgressParser, ProgressState};
//!
//! let mut parser = ProgressParser::new();
//! // A chunk may end anywhere; the partial line waits for the next chunk.
//! assert!(parser.feed(b"frame=50\nout_time_us=2020136\nspeed=14.1x\nprogr").is_empty());
//! let updates = parser.feed(b"ess=end\n");
//! assert_eq!(updates.len(), 1);
//! assert_eq!(updates[0].frame, Some(50));
//! assert_eq!(updates[0].out_time_us, Some(2_020_136));
//! assert_eq!(updates[0].speed, Some(14.1));
//! assert_eq!(updates[0].state, ProgressState::End);
//! ```

use nom::{
    IResult, Parser,
    bytes::complete::{tag, take_till, take_while, take_while_m_n},
    character::complete::{char, space0},
    combinator::{all_consuming, map_opt, opt, rest, verify},
    number::complete::double,
    sequence::{preceded, separated_pair, terminated},
};

/// Longest line kept, in bytes (without the newline). A longer line is discarded up to its
/// newline, so a hostile stream cannot grow the partial-line buffer without limit.
/// ffmpeg's own lines are well under 100 bytes.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Most bytes (keys plus values) kept in [`ProgressUpdate::other`] per block; further unknown
/// keys are dropped.
const MAX_OTHER_BYTES: usize = 64 * 1024;

/// Most entries kept in [`ProgressUpdate::other`] per block; further unknown keys are dropped.
const MAX_OTHER_ENTRIES: usize = 256;

/// Incremental parser for ffmpeg's `-progress` output: bytes in, one [`ProgressUpdate`] per
/// block out.
///
/// The parser keeps the partial line and the partial block across [`feed`](Self::feed) calls,
/// so the result does not depend on how the stream is chunked. Memory is bounded: at most
/// 64 KiB of partial line (longer lines are discarded up to their newline) and 64 KiB /
/// 256 entries of unknown keys per block.
///
/// Format: `print_report()` in `fftools/ffmpeg.c` (ffmpeg 5.1), see the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct ProgressParser {
    /// Bytes of the current line received so far (without the newline).
    line: Vec<u8>,
    /// The current line grew past [`MAX_LINE_BYTES`]; drop everything up to its newline.
    discarding: bool,
    /// Fields of the block being read.
    block: Block,
}

/// One block of `-progress` output, typed.
///
/// Every field is `None` when its key was absent, `N/A`, or did not parse (including numbers
/// that overflow their type). Units are in the field docs.
///
/// Format: `print_report()` in `fftools/ffmpeg.c` (ffmpeg 5.1).
///
/// `#[non_exhaustive]`: ffmpeg adds keys, and fields for them may be added; start from
/// [`ProgressUpdate::default`] to build one by hand.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ProgressUpdate {
    /// Video frames written so far (`frame=`), counted on the first video output stream.
    /// Absent for audio-only outputs.
    pub frame: Option<u64>,
    /// Encoding speed in frames per second (`fps=`), non-negative.
    pub fps: Option<f64>,
    /// Output bitrate so far in kbit/s (`bitrate=1250.5kbits/s` gives `1250.5`), non-negative.
    pub bitrate_kbits_per_s: Option<f64>,
    /// Size of output 0 written so far, in bytes (`total_size=`).
    pub total_size_bytes: Option<u64>,
    /// Output position in microseconds: from `out_time_us`, else `out_time_ms` (which also
    /// holds microseconds), else the parsed `out_time` (`[-]HH:MM:SS.ffffff`). Kept as ffmpeg
    /// wrote it, so it can be negative at the start of a stream copy; see
    /// [`ProgressUpdate::out_time_seconds`] for a clamped value. It is the largest position
    /// over all output streams of all outputs.
    pub out_time_us: Option<i64>,
    /// Frames duplicated so far to keep a constant frame rate (`dup_frames=`).
    pub dup_frames: Option<u64>,
    /// Frames dropped so far (`drop_frames=`).
    pub drop_frames: Option<u64>,
    /// Processing speed as a multiple of real time (`speed=1.5x` gives `1.5`), non-negative.
    pub speed: Option<f64>,
    /// Whether more blocks follow (`progress=continue`) or this is the last (`progress=end`).
    pub state: ProgressState,
    /// Keys this parser does not model (`stream_0_0_q`, keys of future ffmpeg versions), in
    /// order, with the key and value trimmed of whitespace. Bounded to 256 entries and 64 KiB
    /// per block; later unknown keys are dropped.
    pub other: Vec<(String, String)>,
}

/// The `progress=` line that ends a block. Exhaustive on purpose: ffmpeg writes only `continue`
/// and `end` (`print_report()` in `fftools/ffmpeg.c`), and any other value reads as `Continue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ProgressState {
    /// `progress=continue`: more blocks follow. Also used for any value other than `end`.
    #[default]
    Continue,
    /// `progress=end`: the last block; ffmpeg has finished writing outputs.
    End,
}

impl ProgressUpdate {
    /// [`out_time_us`](Self::out_time_us) in seconds, with negative values (the start of a
    /// stream copy) clamped to `0.0`; `None` when unknown.
    ///
    /// ```
    /// use ffmpeg_core::progress::ProgressUpdate;
    ///
    /// let mut update = ProgressUpdate::default();
    /// update.out_time_us = Some(1_500_000);
    /// assert_eq!(update.out_time_seconds(), Some(1.5));
    /// update.out_time_us = Some(-79_000); // the start of a stream copy
    /// assert_eq!(update.out_time_seconds(), Some(0.0));
    /// ```
    pub fn out_time_seconds(&self) -> Option<f64> {
        self.out_time_us.map(|us| us.max(0) as f64 / 1_000_000.0)
    }
}

impl ProgressParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk of bytes, split anywhere (even mid-line or mid-UTF-8 sequence), and
    /// returns the updates completed by it, in order: one per `progress=` line.
    ///
    /// Never panics. Lines may end in `\n` or `\r\n`; a line without `=` is ignored; invalid
    /// UTF-8 is replaced with U+FFFD; a line longer than 64 KiB is discarded.
    ///
    /// ```
    /// use ffmpeg_core::progress::ProgressParser;
    ///
    /// let mut parser = ProgressParser::new();
    /// let updates = parser.feed(b"bitrate= 123.6kbits/s\r\nspeed=   0x\r\nprogress=continue\r\n");
    /// assert_eq!(updates[0].bitrate_kbits_per_s, Some(123.6));
    /// assert_eq!(updates[0].speed, Some(0.0));
    /// ```
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<ProgressUpdate> {
        let mut updates = Vec::new();
        let mut remaining = chunk;
        while let Some(newline) = remaining.iter().position(|&b| b == b'\n') {
            let (head, tail) = remaining.split_at(newline);
            self.buffer(head);
            let line = std::mem::take(&mut self.line);
            if !std::mem::take(&mut self.discarding)
                && let Some(update) = self.block.line(&String::from_utf8_lossy(&line))
            {
                updates.push(update);
            }
            // Reuse the allocation (at most MAX_LINE_BYTES) for the next line.
            self.line = line;
            self.line.clear();
            remaining = tail.get(1..).unwrap_or_default();
        }
        self.buffer(remaining);
        updates
    }

    /// Appends bytes of the current line, or starts discarding it once it is too long.
    fn buffer(&mut self, bytes: &[u8]) {
        if self.discarding {
            return;
        }
        if self.line.len().saturating_add(bytes.len()) > MAX_LINE_BYTES {
            self.discarding = true;
            self.line.clear();
        } else {
            self.line.extend_from_slice(bytes);
        }
    }
}

/// The block being read: typed fields so far and the three `out_time` sources.
#[derive(Debug, Clone, Default)]
struct Block {
    update: ProgressUpdate,
    out_time_us: Option<i64>,
    out_time_ms: Option<i64>,
    out_time: Option<i64>,
    other_bytes: usize,
}

impl Block {
    /// Applies one line (without its newline); returns the finished update on `progress=`.
    fn line(&mut self, line: &str) -> Option<ProgressUpdate> {
        let (key, value) = key_value(line).ok()?.1;
        let (key, value) = (key.trim(), value.trim());
        let update = &mut self.update;
        match key {
            "" => {}
            "frame" => update.frame = number(value, nom::character::complete::u64),
            "fps" => update.fps = non_negative(number(value, double)),
            "bitrate" => update.bitrate_kbits_per_s = non_negative(number(value, kbits_per_s)),
            "total_size" => update.total_size_bytes = number(value, nom::character::complete::u64),
            "out_time_us" => self.out_time_us = number(value, nom::character::complete::i64),
            "out_time_ms" => self.out_time_ms = number(value, nom::character::complete::i64),
            "out_time" => self.out_time = parse_clock_us(value),
            "dup_frames" => update.dup_frames = number(value, nom::character::complete::u64),
            "drop_frames" => update.drop_frames = number(value, nom::character::complete::u64),
            "speed" => update.speed = non_negative(number(value, times_real_time)),
            "progress" => return Some(self.finish(value)),
            _ => {
                let size = key.len() + value.len();
                if update.other.len() < MAX_OTHER_ENTRIES && self.other_bytes + size <= MAX_OTHER_BYTES {
                    self.other_bytes += size;
                    update.other.push((key.to_owned(), value.to_owned()));
                }
            }
        }
        None
    }

    /// Ends the block with the value of its `progress=` line and resets for the next one.
    fn finish(&mut self, progress: &str) -> ProgressUpdate {
        let block = std::mem::take(self);
        ProgressUpdate {
            out_time_us: block.out_time_us.or(block.out_time_ms).or(block.out_time),
            state: if progress == "end" { ProgressState::End } else { ProgressState::Continue },
            ..block.update
        }
    }
}

/// `key=value`: the key is everything up to the first `=`, the value everything after it.
fn key_value(line: &str) -> IResult<&str, (&str, &str)> {
    separated_pair(take_till(|c| c == '='), char('='), rest).parse(line)
}

/// Runs `parser` over the whole (trimmed) value; `N/A` and anything that does not parse
/// completely give `None`.
fn number<'a, T>(
    value: &'a str,
    parser: impl Parser<&'a str, Output = T, Error = nom::error::Error<&'a str>>,
) -> Option<T> {
    if value == "N/A" {
        return None;
    }
    all_consuming(parser).parse(value).ok().map(|(_, v)| v)
}

/// Keeps finite, non-negative values (rates and sizes); `inf`, `nan` and negatives give `None`.
fn non_negative(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite() && *v >= 0.0)
}

/// `1250.5kbits/s`, as printed by `"%6.1fkbits/s"`.
fn kbits_per_s(input: &str) -> IResult<&str, f64> {
    terminated(double, (space0, tag("kbits/s"))).parse(input)
}

/// `1.5x`, `0x`, `1.32e+03x`, as printed by `"%4.3gx"`.
fn times_real_time(input: &str) -> IResult<&str, f64> {
    terminated(double, (space0, char('x'))).parse(input)
}

/// Parses a clock time `[-]H+:MM:SS[.f+]` into microseconds, as ffmpeg prints `out_time=`
/// (`"%s%02d:%02d:%02d.%06d"`, `fftools/ffmpeg.c`) and the banner's `Duration:`
/// (`"%02d:%02d:%02d.%02d"`, `libavformat/dump.c`). Hours may have any number of digits
/// (`-577014:32:22.775808` may appear at the start of a run); fraction digits past the
/// sixth are ignored. `None` on malformed input or `i64` overflow.
pub(crate) fn parse_clock_us(input: &str) -> Option<i64> {
    let clock = (
        opt(char('-')),
        terminated(digits_up_to(usize::MAX, i64::MAX), char(':')),
        terminated(digits_up_to(2, 99), char(':')),
        digits_up_to(2, 99),
        opt(preceded(char('.'), take_while(|c: char| c.is_ascii_digit()))),
    );
    let (_, (minus, hours, minutes, seconds, fraction)) = all_consuming(clock).parse(input).ok()?;
    let total = hours
        .checked_mul(3600)?
        .checked_add(minutes * 60 + seconds)?
        .checked_mul(1_000_000)?
        .checked_add(fraction.map_or(0, fraction_micros))?;
    Some(if minus.is_some() { -total } else { total })
}

/// 1 to `max_digits` ASCII digits with a value of at most `max` (`None` past `i64::MAX`).
pub(crate) fn digits_up_to<'a>(
    max_digits: usize,
    max: i64,
) -> impl Parser<&'a str, Output = i64, Error = nom::error::Error<&'a str>> {
    verify(
        map_opt(take_while_m_n(1, max_digits, |c: char| c.is_ascii_digit()), |d: &str| d.parse::<i64>().ok()),
        move |v| *v <= max,
    )
}

/// The first six digits of a decimal fraction as microseconds (`"5"` is 500000); later
/// digits are ignored, as `av_parse_time()` does.
pub(crate) fn fraction_micros(digits: &str) -> i64 {
    digits
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(6)
        .fold(0, |acc, b| acc * 10 + i64::from(b.wrapping_sub(b'0').min(9)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_line_is_discarded_and_buffer_stays_bounded() {
        let mut parser = ProgressParser::new();
        let long = vec![b'a'; 3 * MAX_LINE_BYTES];
        for chunk in long.chunks(1000) {
            assert!(parser.feed(chunk).is_empty());
            assert!(parser.line.len() <= MAX_LINE_BYTES);
            assert!(parser.line.capacity() <= 2 * MAX_LINE_BYTES);
        }
        let updates = parser.feed(b"=x\nframe=3\nprogress=end\n");
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].frame, Some(3));
        assert!(updates[0].other.is_empty());
    }

    #[test]
    fn line_of_exactly_the_limit_is_kept() {
        let mut parser = ProgressParser::new();
        let mut line = b"k=".to_vec();
        line.resize(MAX_LINE_BYTES, b'v');
        line.push(b'\n');
        parser.feed(&line);
        let updates = parser.feed(b"progress=continue\n");
        assert_eq!(updates[0].other.len(), 1);
        assert_eq!(updates[0].other[0].1.len(), MAX_LINE_BYTES - 2);
    }

    #[test]
    fn other_is_bounded() {
        let mut parser = ProgressParser::new();
        let mut input = Vec::new();
        for i in 0..1000 {
            input.extend_from_slice(format!("k{i}=v\n").as_bytes());
        }
        input.extend_from_slice(b"progress=continue\n");
        let updates = parser.feed(&input);
        assert_eq!(updates[0].other.len(), MAX_OTHER_ENTRIES);
    }

    #[test]
    fn fraction() {
        assert_eq!(fraction_micros(""), 0);
        assert_eq!(fraction_micros("5"), 500_000);
        assert_eq!(fraction_micros("00"), 0);
        assert_eq!(fraction_micros("1234567"), 123_456);
    }
}

//! Input durations from ffmpeg's stderr banner, the expected length of an output, and percent
//! complete.
//!
//! ffmpeg prints each input as it opens it (`av_dump_format()` in `libavformat/dump.c`,
//! ffmpeg 5.1), with the container duration on the first indented line after the header:
//!
//! ```text
//! Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/data/in.mp4':
//!   Metadata:
//!     major_brand     : isom
//!   Duration: 00:00:03.00, start: 0.000000, bitrate: 241 kb/s
//! ```
//!
//! The duration is `N/A` for sources that do not know it (`lavfi` graphs, live streams).
//! Output sections (`Output #0, mp4, to '...':`) never carry a `Duration:` line; stream
//! metadata may carry a `DURATION` tag (Matroska), which is indented deeper and ignored.
//!
//! [`BannerScanner`] collects those durations (and each input's stream kinds and audio
//! sample rate) while stderr streams by; [`ExpectedLength`] combines them with the command's
//! `-ss`, `-t`, `-to`, `-sseof`, `-stream_loop`, `-itsoffset`, `-map`, `-shortest` and
//! `-frames` options and its filters into the expected length of one output; and
//! [`ExpectedLength::percent`] turns a [`ProgressUpdate`] into percent complete.
//!
//! ```
//! use ffmpeg_core::command::Command;
//! use ffmpeg_core::duration::{BannerScanner, ExpectedLength};
//! use ffmpeg_core::progress::ProgressParser;
//!
//! let command = Command::parse("-ss 1 -i in.mp4 -t 10 out.mp4")?;
//! let mut banner = BannerScanner::new();
//! banner.feed(b"Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:in.mp4':\n  Dura");
//! banner.feed(b"tion: 00:01:00.00, start: 0.000000, bitrate: 372 kb/s\n");
//! let expected = ExpectedLength::for_output(&command, 0, &banner.input_durations());
//! assert_eq!(expected.seconds, Some(10.0));
//!
//! let updates = ProgressParser::new().feed(b"out_time_us=2500000\nprogress=continue\n");
//! assert_eq!(expected.percent(&updates[0]), Some(25.0));
//! # Ok::<(), ffmpeg_core::command::CommandError>(())
//! ```

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while},
    character::complete::{char, digit1, multispace0, one_of},
    combinator::{all_consuming, eof, map, map_opt, opt, value},
    sequence::{preceded, terminated},
};

pub mod concat;
mod timeline;

use timeline::{Flow, GraphFlows, Span};

use crate::command::{Command, Input, Opt, Output};
use crate::progress::{ProgressState, ProgressUpdate, digits_up_to, fraction_micros, parse_clock_us};
/// The kind of an input stream, from the banner: the one [`crate::stream::StreamKind`].
pub use crate::stream::StreamKind;

/// Highest input index [`BannerScanner`] records (ffmpeg numbers inputs from 0). A header
/// naming a higher index is ignored, so a garbled line cannot make the scanner allocate.
const MAX_INPUTS: usize = 4096;

/// Collects input durations from ffmpeg's stderr while it streams by.
///
/// Feed it stderr as it arrives, in byte chunks split anywhere (mid-line, mid-UTF-8 sequence),
/// like [`ProgressParser::feed`](crate::progress::ProgressParser::feed); it remembers, for each
/// `Input #N, ...` header, the `Duration:` line that follows it in the same indented section.
/// Output sections and every other line are ignored. Durations are in seconds, with the
/// banner's precision (1/100 s).
///
/// Format: `av_dump_format()` in `libavformat/dump.c` (ffmpeg 5.1), printed by ffmpeg as it
/// opens each input (also with `-hide_banner`; not with `-loglevel` below `info`). Lines may
/// carry the prefixes ffmpeg puts before a log line ([`LogLine`](crate::log::LogLine): the
/// `[info] ` of the `level` flag, a context's `[name @ 0x...] `); they are skipped.
///
/// ```
/// use ffmpeg_core::duration::BannerScanner;
///
/// let mut banner = BannerScanner::new();
/// let stderr = b"Input #0, lavfi, from 'testsrc=duration=2':\n  Duration: N/A, start: 0.000000, \
///     bitrate: N/A\nInput #1, mp3, from 'file:a.mp3':\n  Duration: 00:00:05.04, start: 0.025057, \
///     bitrate: 64 kb/s\n";
/// for chunk in stderr.chunks(7) {
///     banner.feed(chunk);
/// }
/// assert_eq!(banner.input_durations(), vec![None, Some(5.04)]);
/// ```
#[derive(Debug, Default, Clone)]
pub struct BannerScanner {
    /// Duration in seconds of each input seen so far, by index; `None` for `N/A` or not seen.
    durations: Vec<Option<f64>>,
    /// The kinds of each input's streams, in stream order, by input index.
    streams: Vec<Vec<StreamKind>>,
    /// The sample rate of each input's first audio stream, by input index.
    rates: Vec<Option<u32>>,
    /// The input whose section is being read and whose `Duration:` line has not come yet.
    current: Option<usize>,
    /// The input whose section (header and indented lines) is being read.
    section: Option<usize>,
    /// The start of the line being received (at most [`BANNER_LINE_BYTES`]).
    line: Vec<u8>,
}

/// How much of each stderr line [`BannerScanner`] keeps: the lines it reads are recognised by
/// their first bytes (`Input #N, `, `  Duration: HH:MM:SS.cc,`); the rest of a longer line (a
/// long URL in a header, a long log message) is dropped, so memory stays bounded.
const BANNER_LINE_BYTES: usize = 256;

impl BannerScanner {
    /// A scanner that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next chunk of ffmpeg's stderr as raw bytes, split anywhere. A line counts once
    /// its end (`\n`, or the `\r` with which ffmpeg's stats line rewrites itself) arrives;
    /// invalid UTF-8 is replaced. Memory is bounded (256 bytes of a partial line). Never panics.
    pub fn feed(&mut self, chunk: &[u8]) {
        for piece in chunk.split_inclusive(|&b| b == b'\n' || b == b'\r') {
            let (body, complete) = match piece.split_last() {
                Some((&(b'\n' | b'\r'), body)) => (body, true),
                _ => (piece, false),
            };
            let room = BANNER_LINE_BYTES.saturating_sub(self.line.len());
            self.line.extend_from_slice(&body[..body.len().min(room)]);
            if complete {
                let line = std::mem::take(&mut self.line);
                if !line.is_empty() {
                    self.segment(&String::from_utf8_lossy(&line));
                }
                // Reuse the allocation for the next line.
                self.line = line;
                self.line.clear();
            }
        }
    }

    fn segment(&mut self, line: &str) {
        // Whatever ffmpeg put before the line (`[info] ` with the `level` flag, a context's
        // `[mov,mp4,... @ 0x...] `) is not part of it.
        let line = crate::log::LogLine::parse(line).message;
        if let Ok((_, index)) = input_header(line) {
            self.current = None;
            self.section = None;
            if index < MAX_INPUTS {
                if self.durations.len() <= index {
                    self.durations.resize(index + 1, None);
                    self.streams.resize(index + 1, Vec::new());
                    self.rates.resize(index + 1, None);
                }
                self.current = Some(index);
                self.section = Some(index);
            }
        } else if let Ok((_, duration)) = duration_line(line) {
            if let Some(slot) = self.current.take().and_then(|i| self.durations.get_mut(i)) {
                *slot = duration;
            }
        } else if let Ok((_, (input, stream, kind, rate))) = stream_line(line) {
            if let Some(index) = self.section.filter(|i| *i == input) {
                let streams = &mut self.streams[index];
                if stream == streams.len() && stream < MAX_INPUTS {
                    streams.push(kind);
                    if kind == StreamKind::Audio && self.rates[index].is_none() {
                        self.rates[index] = rate;
                    }
                }
            }
        } else if !line.starts_with(' ') {
            // Any unindented line (`Output #0`, `Stream mapping:`, a log line) ends the section.
            self.current = None;
            self.section = None;
        }
    }

    /// What the banner said about each input so far, by input index (see
    /// [`BannerScanner::input_durations`]); ready for [`ExpectedLength::for_output_with`].
    pub fn inputs(&self) -> Vec<InputInfo> {
        (0..self.durations.len())
            .map(|i| InputInfo {
                duration: self.durations[i],
                streams: self.streams[i].clone(),
                sample_rate: self.rates[i],
            })
            .collect()
    }

    /// Duration of input `input_index` (0-based, as in `Input #0`) in seconds; `None` when it
    /// is `N/A` or its banner has not been seen.
    pub fn input_duration(&self, input_index: usize) -> Option<f64> {
        self.durations.get(input_index).copied().flatten()
    }

    /// The durations of inputs `0..=n` in seconds, where `n` is the highest input index seen;
    /// `None` for `N/A` or not seen. Ready to pass to [`ExpectedLength::for_output`].
    pub fn input_durations(&self) -> Vec<Option<f64>> {
        self.durations.clone()
    }
}

/// `Input #N, <format>, from '<url>':` gives `N`.
fn input_header(line: &str) -> IResult<&str, usize> {
    terminated(preceded(tag("Input #"), nom::character::complete::usize), tag(", ")).parse(line)
}

/// `  Duration: HH:MM:SS.cc, start: ...` or `  Duration: N/A, ...` gives the seconds.
fn duration_line(line: &str) -> IResult<&str, Option<f64>> {
    let clock = map_opt(take_while(|c: char| c != ','), |s: &str| {
        parse_clock_us(s).map(|us| us as f64 / 1_000_000.0).filter(|s| *s >= 0.0)
    });
    preceded(tag("  Duration: "), terminated(alt((value(None, tag("N/A")), map(clock, Some))), alt((tag(","), eof))))
        .parse(line)
}

/// `  Stream #I:S[...]: Kind: ..., 44100 Hz, ...` gives the input and stream index, the kind
/// and, for audio, the sample rate (`dump_stream_format()` in `libavformat/dump.c`).
fn stream_line(line: &str) -> IResult<&str, (usize, usize, StreamKind, Option<u32>)> {
    let (rest, (input, stream)) = preceded(
        tag("  Stream #"),
        (terminated(nom::character::complete::usize, char(':')), nom::character::complete::usize),
    )
    .parse(line)?;
    let kind = [
        (": Video: ", StreamKind::Video),
        (": Audio: ", StreamKind::Audio),
        (": Subtitle: ", StreamKind::Subtitle),
        (": Data: ", StreamKind::Data),
        (": Attachment: ", StreamKind::Attachment),
    ]
    .iter()
    .filter_map(|(marker, kind)| rest.find(marker).map(|at| (at, *kind)))
    .min_by_key(|(at, _)| *at)
    .map_or(StreamKind::Unknown, |(_, kind)| kind);
    let rate = rest.split(", ").find_map(|part| part.strip_suffix(" Hz")?.parse().ok());
    Ok((rest, (input, stream, kind, rate)))
}

/// What is known of one input: what [`BannerScanner::inputs`] read, or what a caller learned
/// otherwise (e.g. the entries of a concat list). A plain value callers build, so it is not
/// `#[non_exhaustive]`.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct InputInfo {
    /// The container duration in seconds; `None` for `N/A` or not known.
    pub duration: Option<f64>,
    /// The kinds of its streams, in order; empty when not known (then it may have any).
    pub streams: Vec<StreamKind>,
    /// The sample rate of its first audio stream in Hz (for `asetrate`), if known.
    pub sample_rate: Option<u32>,
}

/// How long an output will be: the target that percent complete is measured against.
///
/// `seconds` is the expected duration of the output in seconds (compared with
/// [`ProgressUpdate::out_time_us`]); `frames` is the video frame limit set by `-frames:v` /
/// `-vframes` / `-frames` (compared with [`ProgressUpdate::frame`]). Either is `None` when
/// it cannot be known from the command and the input durations.
///
/// A plain value that callers may also build themselves (from a duration they know), so it is
/// not `#[non_exhaustive]`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ExpectedLength {
    /// Expected output duration in seconds, `>= 0`.
    pub seconds: Option<f64>,
    /// Expected number of video frames (a `-frames:v N` limit).
    pub frames: Option<u64>,
}

impl ExpectedLength {
    /// The expected length of output `output_index` (0-based) of `command`, given each input's
    /// duration in seconds (`None` = unknown, e.g. from [`BannerScanner::input_durations`]).
    ///
    /// The rules follow `fftools/ffmpeg_opt.c` (`open_input_file`, `open_output_file`,
    /// ffmpeg 5.1), all times parsed with [`parse_time_duration`]:
    ///
    /// 1. The inputs the output reads: those its `-map` options name (`-map 1:a` reads input 1;
    ///    negative maps are skipped); every input when it has no `-map` or maps a filter graph
    ///    label (`-map [out]`).
    /// 2. Each input's length: its duration, times `N + 1` with `-stream_loop N` (unknown for
    ///    `-stream_loop -1`), minus `-ss` (or the last `-sseof` seconds), capped at `-t`, else
    ///    at `-to` minus `-ss`. An unknown duration with `-t` / `-to` counts as that cap: lavfi
    ///    sources report `N/A` and are bounded this way.
    /// 3. The base: the longest known input length, or with `-shortest` on the output the
    ///    shortest known one. Unknown lengths are skipped; none known gives no base.
    /// 4. The output: the base minus output `-ss` (output seeking decodes and discards), capped
    ///    at output `-t`, else at `-to` minus `-ss`. With no base, the output `-t` / `-to` cap
    ///    alone is taken as the guess.
    ///
    /// `frames` comes from the last of `-frames` (no stream specifier), `-frames:v...` or
    /// `-vframes` on the output. With durations alone the input's stream kinds and sample
    /// rates are unknown; filters and `-itsoffset` are modelled as in
    /// [`ExpectedLength::for_output_with`], which takes them. An `output_index` out of range
    /// gives the default (both `None`).
    ///
    /// ```
    /// use ffmpeg_core::command::Command;
    /// use ffmpeg_core::duration::ExpectedLength;
    ///
    /// let command = Command::parse("-i a.mp4 -i b.mp3 -map 0:v -map 1:a -shortest out.mp4")?;
    /// let expected = ExpectedLength::for_output(&command, 0, &[Some(3.0), Some(5.0)]);
    /// assert_eq!(expected, ExpectedLength { seconds: Some(3.0), frames: None });
    ///
    /// let command = Command::parse("-f lavfi -i testsrc -frames:v 50 out.mp4")?;
    /// let expected = ExpectedLength::for_output(&command, 0, &[None]);
    /// assert_eq!(expected, ExpectedLength { seconds: None, frames: Some(50) });
    /// # Ok::<(), ffmpeg_core::command::CommandError>(())
    /// ```
    pub fn for_output(command: &Command, output_index: usize, input_durations: &[Option<f64>]) -> ExpectedLength {
        let inputs: Vec<InputInfo> =
            input_durations.iter().map(|d| InputInfo { duration: *d, ..InputInfo::default() }).collect();
        ExpectedLength::for_output_with(command, output_index, &inputs)
    }

    /// [`ExpectedLength::for_output`] knowing more of each input: its stream kinds (which of
    /// an output's `-vf` and `-af` apply, what `-map 0:1` is) and audio sample rate (for
    /// `asetrate`), as [`BannerScanner::inputs`] reads them.
    ///
    /// Besides the rules of [`ExpectedLength::for_output`], each stream's timeline goes
    /// through `-itsoffset` (it moves the input's end) and the filters: the output's `-vf` /
    /// `-af` / `-filter[:v|:a]` for the streams it takes from inputs, `-filter_complex` /
    /// `-lavfi` for what it maps from a graph (`-map [v]`, or the unlabelled outputs of a graph
    /// when it maps nothing). The filters modelled and how are listed in the private
    /// `timeline` module's docs: constant-factor `setpts`, `atempo`, `asetrate`, `trim`,
    /// `atrim`, `concat` (the sum of its segments), mixers, sources with a duration. A stream
    /// whose timeline a filter makes unknown (`setpts=N/FRAME_RATE/TB`, `apad`, `loop`, a graph
    /// that does not parse) makes the whole length unknown (`None`), unless an output `-t` /
    /// `-to` bounds it.
    ///
    /// ```
    /// use ffmpeg_core::command::Command;
    /// use ffmpeg_core::duration::{ExpectedLength, InputInfo, StreamKind};
    ///
    /// let clip = InputInfo { duration: Some(20.0), streams: vec![StreamKind::Video], sample_rate: None };
    /// let command = Command::parse("-i a.mp4 -vf setpts=PTS/5 out.mp4")?;
    /// let expected = ExpectedLength::for_output_with(&command, 0, &[clip.clone()]);
    /// assert_eq!(expected.seconds, Some(4.0));
    ///
    /// let command = Command::parse("-i a.mp4 -i b.mp4 -filter_complex [0:v][1:v]concat=n=2:v=1:a=0[v] -map [v] out.mp4")?;
    /// let expected = ExpectedLength::for_output_with(&command, 0, &[clip.clone(), clip]);
    /// assert_eq!(expected.seconds, Some(40.0));
    /// # Ok::<(), ffmpeg_core::command::CommandError>(())
    /// ```
    pub fn for_output_with(command: &Command, output_index: usize, inputs: &[InputInfo]) -> ExpectedLength {
        let Some(output) = command.outputs().get(output_index) else {
            return ExpectedLength::default();
        };
        let base = Streams { command, output, output_index, inputs }.base();
        ExpectedLength { seconds: trim(base, output.options()), frames: frame_limit(output) }
    }

    /// Percent complete of `update`, in `0.0..=100.0`, against this expected length.
    ///
    /// - [`ProgressState::End`] gives `Some(100.0)` whatever is known: the job has finished.
    /// - Otherwise each known measure gives a percent: `frame / frames * 100` when both are
    ///   known and `frames > 0`; `out_time / seconds * 100` when both are known and
    ///   `seconds > 0` (negative `out_time` counts as 0). The larger one is returned, since the
    ///   output ends at whichever limit it reaches first, clamped to `0.0..=100.0`.
    /// - `None` when neither measure is available: unknown is not 0 and not 100.
    ///
    /// Never returns NaN.
    ///
    /// ```
    /// use ffmpeg_core::duration::ExpectedLength;
    /// use ffmpeg_core::progress::ProgressParser;
    ///
    /// let expected = ExpectedLength { seconds: Some(4.0), frames: None };
    /// let update = ProgressParser::new().feed(b"out_time_us=1000000\nprogress=continue\n").remove(0);
    /// assert_eq!(expected.percent(&update), Some(25.0));
    /// assert_eq!(ExpectedLength::default().percent(&update), None);
    /// ```
    pub fn percent(&self, update: &ProgressUpdate) -> Option<f64> {
        if update.state == ProgressState::End {
            return Some(100.0);
        }
        let by_frames = match (self.frames, update.frame) {
            (Some(total), Some(frame)) if total > 0 => Some(frame as f64 / total as f64 * 100.0),
            _ => None,
        };
        let by_time = match (self.seconds, update.out_time_seconds()) {
            (Some(total), Some(time)) if total.is_finite() && total > 0.0 => Some(time / total * 100.0),
            _ => None,
        };
        let percent = match (by_frames, by_time) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b)?,
        };
        percent.is_finite().then(|| percent.clamp(0.0, 100.0))
    }
}

/// One stream's contribution to an output's length.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Part {
    /// Ends at this output time, in seconds.
    Ends(f64),
    /// Its input's duration is unknown (`N/A`): skipped, as the other inputs bound the output
    /// (a lavfi source beside a file) or an output `-t` does.
    NoDuration,
    /// A filter or option makes its timeline unknown: the output's length is unknown.
    Unknown,
}

/// What one output is made of: its streams and their timelines.
struct Streams<'a> {
    command: &'a Command,
    output: &'a Output,
    output_index: usize,
    inputs: &'a [InputInfo],
}

impl Streams<'_> {
    /// The output's length before its own `-ss`/`-t`/`-to`: the longest part, or with
    /// `-shortest` the shortest; `None` when a part is unknown or none is known.
    fn base(&self) -> Option<f64> {
        let parts = self.parts();
        if parts.contains(&Part::Unknown) {
            return None;
        }
        let ends = parts.iter().filter_map(|p| match p {
            Part::Ends(end) => Some(end.max(0.0)),
            _ => None,
        });
        if shortest(self.output) { ends.reduce(f64::min) } else { ends.reduce(f64::max) }
    }

    fn parts(&self) -> Vec<Part> {
        let graphs = self.graphs();
        let mut parts = Vec::new();
        let maps: Vec<&str> = self
            .output
            .options()
            .iter()
            .filter(|o| o.name() == "map")
            .filter_map(Opt::value)
            .filter(|m| !m.starts_with('-'))
            .collect();
        if maps.is_empty() {
            let unlabeled: Vec<Flow> = graphs.iter().flat_map(|g| g.unlabeled.iter().copied()).collect();
            if self.output_index == 0 && !unlabeled.is_empty() {
                parts.extend(unlabeled.into_iter().map(Part::from));
            } else {
                for index in 0..self.command.inputs().len() {
                    self.input_parts(index, None, &mut parts);
                }
            }
        }
        for map in maps {
            let map = map.split(',').next().unwrap_or_default().trim_end_matches('?');
            if let Some(label) = map.strip_prefix('[').and_then(|m| m.strip_suffix(']')) {
                let flow = graphs.iter().flat_map(|g| &g.labeled).find(|(l, _)| l == label).map(|(_, f)| *f);
                parts.push(flow.map_or(Part::Unknown, Part::from));
                continue;
            }
            let digits = map.bytes().take_while(u8::is_ascii_digit).count();
            let Some(index) = map.get(..digits).and_then(|d| d.parse::<usize>().ok()) else {
                parts.push(Part::Unknown);
                continue;
            };
            if index >= self.command.inputs().len() {
                continue;
            }
            let spec = map[digits..].strip_prefix(':').unwrap_or_default();
            self.input_parts(index, Some(spec), &mut parts);
        }
        if parts.is_empty() {
            // Nothing recognised (a map to a missing input): every input, as before filters.
            for index in 0..self.command.inputs().len() {
                self.input_parts(index, None, &mut parts);
            }
        }
        parts
    }

    /// The parts of input `index`'s streams that `spec` (the part of `-map` after `I:`;
    /// `None` without `-map`) selects, through the output's own filters.
    fn input_parts(&self, index: usize, spec: Option<&str>, parts: &mut Vec<Part>) {
        let Some(input) = self.command.inputs().get(index) else { return };
        let info = self.inputs.get(index).cloned().unwrap_or_default();
        let duration = info.duration.filter(|d| d.is_finite() && *d >= 0.0);
        let Some(length) = input_length(input, duration) else {
            parts.push(Part::NoDuration);
            return;
        };
        let offset = time_option(input.options(), "itsoffset").unwrap_or(0.0);
        let span = Span { start: offset.max(0.0), end: length + offset };
        let (video, audio) = self.kinds(&info, spec);
        for (wanted, kind) in [(video, StreamKind::Video), (audio, StreamKind::Audio)] {
            if wanted {
                let rate = info.sample_rate.map(f64::from);
                let flow = self.output_filter(kind, Flow { span: Some(span), rate });
                parts.push(Part::from(flow));
            }
        }
        if !video && !audio && spec.is_none_or(|s| !s.starts_with(['s', 'd', 't'])) {
            // Streams of other kinds (or none known to be selected): the input's own length.
            parts.push(Part::Ends(span.end));
        }
    }

    /// Whether the output takes video and audio from an input with `info`, given the map spec.
    fn kinds(&self, info: &InputInfo, spec: Option<&str>) -> (bool, bool) {
        let has = |kind| info.streams.is_empty() || info.streams.contains(&kind);
        let (mut video, mut audio) = match spec.map(|s| s.split(':').next().unwrap_or_default()) {
            None | Some("" | "p" | "m" | "u") => (has(StreamKind::Video), has(StreamKind::Audio)),
            Some("v" | "V") => (has(StreamKind::Video), false),
            Some("a") => (false, has(StreamKind::Audio)),
            Some("s" | "d" | "t") => (false, false),
            Some(n) => match n.parse::<usize>().ok().and_then(|i| info.streams.get(i)) {
                Some(StreamKind::Video) => (true, false),
                Some(StreamKind::Audio) => (false, true),
                Some(_) => (false, false),
                None => (true, true),
            },
        };
        let disabled = |name: &str| self.output.options().iter().rev().any(|o| o.name() == name);
        if disabled("vn") {
            video = false;
        }
        if disabled("an") {
            audio = false;
        }
        (video, audio)
    }

    /// `flow` through the output's own filter for streams of `kind`: the last of `-vf` /
    /// `-filter:v` (`-af` / `-filter:a`) or `-filter` without a stream type.
    fn output_filter(&self, kind: StreamKind, flow: Flow) -> Flow {
        let (short, letter) = if kind == StreamKind::Video { ("vf", 'v') } else { ("af", 'a') };
        let graph = self.output.options().iter().rev().find(|o| match (o.name(), o.stream_specifier()) {
            (name, _) if name == short => true,
            ("filter", None) => true,
            ("filter", Some(spec)) => spec.starts_with(letter) || (letter == 'v' && spec.starts_with('V')),
            _ => false,
        });
        let Some(text) = graph.and_then(Opt::value) else { return flow };
        let Ok(graph) = crate::filtergraph::parse(text) else { return Flow::UNKNOWN };
        let flows = timeline::evaluate(&graph, &|_| Flow::UNKNOWN, flow);
        match flows.unlabeled.as_slice() {
            [one] => *one,
            _ => Flow::UNKNOWN,
        }
    }

    /// The command's global filter graphs (`-filter_complex`, `-lavfi`), evaluated; a graph
    /// that does not parse gives nothing (its labels are then unknown).
    fn graphs(&self) -> Vec<GraphFlows> {
        let texts = self
            .command
            .global_options()
            .iter()
            .filter(|o| matches!(o.name(), "filter_complex" | "lavfi"))
            .filter_map(Opt::value);
        let only_input = (self.command.inputs().len() == 1).then(|| self.stream_flow("0"));
        texts
            .filter_map(|text| crate::filtergraph::parse(text).ok())
            .map(|graph| {
                timeline::evaluate(&graph, &|label| self.stream_flow(label), only_input.unwrap_or(Flow::UNKNOWN))
            })
            .collect()
    }

    /// The flow of an input stream named in a graph (`0:v`, `1:a:0`, `2`): its input's
    /// timeline (input options, `-itsoffset`); unknown for an unknown input or duration.
    fn stream_flow(&self, label: &str) -> Flow {
        let digits = label.bytes().take_while(u8::is_ascii_digit).count();
        let Some(index) = label.get(..digits).and_then(|d| d.parse::<usize>().ok()) else { return Flow::UNKNOWN };
        let (Some(input), Some(info)) = (self.command.inputs().get(index), self.inputs.get(index)) else {
            return Flow::UNKNOWN;
        };
        let duration = info.duration.filter(|d| d.is_finite() && *d >= 0.0);
        let Some(length) = input_length(input, duration) else { return Flow::UNKNOWN };
        let offset = time_option(input.options(), "itsoffset").unwrap_or(0.0);
        Flow {
            span: Some(Span { start: offset.max(0.0), end: length + offset }),
            rate: info.sample_rate.map(f64::from),
        }
    }
}

impl From<Flow> for Part {
    fn from(flow: Flow) -> Part {
        match flow.span {
            Some(span) => Part::Ends(span.end),
            None => Part::Unknown,
        }
    }
}

/// Whether `-shortest` is in force on `output` (the last of `-shortest` / `-noshortest`).
fn shortest(output: &Output) -> bool {
    output
        .options()
        .iter()
        .rev()
        .find_map(|o| match o.name() {
            "shortest" => Some(o.value().is_none_or(|v| v != "0")),
            "noshortest" => Some(false),
            _ => None,
        })
        .unwrap_or(false)
}

/// The length in seconds that `input` contributes, given its container duration.
fn input_length(input: &Input, duration: Option<f64>) -> Option<f64> {
    let looped = match input.option("stream_loop").and_then(Opt::value) {
        None => duration,
        Some(count) => match count.trim().parse::<i64>() {
            Ok(n) if n < 0 => None,
            Ok(n) => duration.map(|d| d * (n as f64 + 1.0)),
            Err(_) => duration,
        },
    };
    let start = time_option(input.options(), "ss").or_else(|| {
        let from_end = time_option(input.options(), "sseof")?;
        looped.map(|d| (d + from_end.min(0.0)).max(0.0))
    });
    let remaining = looped.map(|d| (d - start.unwrap_or(0.0).max(0.0)).max(0.0));
    cap(remaining, input.options())
}

/// Applies the output's `-ss`, `-t` and `-to` to the base length.
fn trim(base: Option<f64>, options: &[Opt]) -> Option<f64> {
    let start = time_option(options, "ss").unwrap_or(0.0).max(0.0);
    cap(base.map(|b| (b - start).max(0.0)), options)
}

/// Caps `length` at `-t`, else at `-to` minus `-ss` (`-t` wins when both are given, as in
/// ffmpeg). An unknown length with a cap becomes the cap.
fn cap(length: Option<f64>, options: &[Opt]) -> Option<f64> {
    let limit = time_option(options, "t").or_else(|| {
        let to = time_option(options, "to")?;
        Some(to - time_option(options, "ss").unwrap_or(0.0))
    });
    match (length, limit.map(|l| l.max(0.0))) {
        (Some(length), Some(limit)) => Some(length.min(limit)),
        (length, limit) => length.or(limit),
    }
}

/// The last `-name` option without stream specifier, parsed as a time duration.
fn time_option(options: &[Opt], name: &str) -> Option<f64> {
    options
        .iter()
        .rev()
        .find(|o| o.name() == name && o.stream_specifier().is_none())
        .and_then(Opt::value)
        .and_then(parse_time_duration)
}

/// The video frame limit: the last of `-frames N`, `-frames:v... N` and `-vframes N`.
fn frame_limit(output: &Output) -> Option<u64> {
    output
        .options()
        .iter()
        .rev()
        .find(|o| match (o.name(), o.stream_specifier()) {
            ("frames", None) | ("vframes", None) => true,
            ("frames", Some(spec)) => spec.starts_with(['v', 'V']),
            _ => false,
        })
        .and_then(Opt::value)
        .and_then(|v| v.trim().parse().ok())
}

/// Parses an ffmpeg time duration into seconds: `[-][HH:]MM:SS[.m...]` or `[-]S+[.m...]`,
/// optionally followed by `s`, `ms` or `us`.
///
/// This is ffmpeg's "Time duration" syntax (ffmpeg-utils(1)), as `av_parse_time()` with
/// `duration=1` in `libavutil/parseutils.c` (ffmpeg 5.1) accepts it for `-t`, `-ss`, `-to`:
/// hours have 1 to 4 digits, minutes and seconds 1 or 2 digits and at most 59, the fraction
/// is read to the microsecond (later digits ignored), `ms` and `us` scale the number (with
/// `us` the fraction is dropped). A bare number of seconds may have leading whitespace and
/// a `+` sign. Returns `None` for anything ffmpeg rejects, such as `.5`, `90:00`, `1e3`,
/// `5S`, or a value past `i64::MAX` microseconds. The result can be negative (`-0.5`).
///
/// ```
/// use ffmpeg_core::duration::parse_time_duration;
///
/// assert_eq!(parse_time_duration("55"), Some(55.0));
/// assert_eq!(parse_time_duration("0.2"), Some(0.2));
/// assert_eq!(parse_time_duration("200ms"), Some(0.2));
/// assert_eq!(parse_time_duration("12:03:45"), Some(43425.0));
/// assert_eq!(parse_time_duration("23.189"), Some(23.189));
/// assert_eq!(parse_time_duration("-1:30"), Some(-90.0));
/// assert_eq!(parse_time_duration("90:00"), None);
/// ```
pub fn parse_time_duration(s: &str) -> Option<f64> {
    parse_time_duration_us(s).map(|us| us as f64 / 1_000_000.0)
}

/// [`parse_time_duration`] in microseconds, exactly as `av_parse_time()` computes it.
fn parse_time_duration_us(s: &str) -> Option<i64> {
    let (_, (minus, whole, fraction, unit)) = all_consuming((
        opt(char('-')),
        alt((hours_minutes_seconds, minutes_seconds, plain_seconds)),
        opt(preceded(char('.'), take_while(|c: char| c.is_ascii_digit()))),
        opt(alt((tag("ms"), tag("us"), tag("s")))),
    ))
    .parse(s)
    .ok()?;
    let micros = fraction.map_or(0, fraction_micros);
    let (scale, micros) = match unit {
        Some("ms") => (1_000, micros / 1_000),
        Some("us") => (1, 0),
        _ => (1_000_000, micros),
    };
    let total = whole.checked_mul(scale)?.checked_add(micros)?;
    Some(if minus.is_some() { -total } else { total })
}

/// `%J:%M:%S` of `av_small_strptime()`: 1-4 digit hours, then minutes and seconds.
fn hours_minutes_seconds(input: &str) -> IResult<&str, i64> {
    map(
        (
            terminated(digits_up_to(4, i64::MAX), char(':')),
            terminated(digits_up_to(2, 59), char(':')),
            digits_up_to(2, 59),
        ),
        |(h, m, s)| h * 3600 + m * 60 + s,
    )
    .parse(input)
}

/// `%M:%S` of `av_small_strptime()`.
fn minutes_seconds(input: &str) -> IResult<&str, i64> {
    map((terminated(digits_up_to(2, 59), char(':')), digits_up_to(2, 59)), |(m, s)| m * 60 + s).parse(input)
}

/// `strtoll()`: optional whitespace and sign, then digits; a negative number is out of range
/// (`-0` is 0).
fn plain_seconds(input: &str) -> IResult<&str, i64> {
    map_opt(preceded(multispace0, (opt(one_of("+-")), digit1)), |(sign, digits): (Option<char>, &str)| {
        let value = digits.parse::<i64>().ok()?;
        (sign != Some('-') || value == 0).then_some(value)
    })
    .parse(input)
}

//! What ffmpeg says about its outputs before it writes them: the `Output #N` listing on
//! stderr (info level), read into [`OutputBanner`]s. This is how a finished job learns the
//! format and streams of what it wrote without running ffprobe afterwards.
//!
//! ffmpeg 5.1 prints, for each output as its muxer starts (`dump_format()` in
//! `libavformat/dump.c`):
//!
//! ```text
//! Output #0, mp4, to 'file:/data/out.mp4':
//!   Metadata:
//!     encoder         : Lavf59.27.100
//!   Stream #0:0: Video: h264 (avc1 / 0x31637661), yuv420p(tv, progressive), 1280x720 [SAR 1:1 DAR 16:9], q=2-31, 2000 kb/s, 30 fps, 15360 tbn
//!   Stream #0:1(eng): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 128 kb/s (default)
//! ```
//!
//! Lines may carry log prefixes (`[info] ` with `-loglevel level+...`); `Input #N` sections
//! and the `Stream mapping:` lines (`Stream #0:0 -> #0:0 (copy)`) are not outputs and are
//! skipped. Every field that a line does not show is `None`: `fps` is only printed when the
//! stream has a frame rate, `kb/s` only when the encoder has a target bit rate, and the
//! channel count is derived from the layout name (`stereo`, `5.1(side)`, `3 channels`).
//!
//! ```
//! use ffmpeg_core::output_banner::OutputBannerScanner;
//!
//! let mut scanner = OutputBannerScanner::new();
//! scanner.feed(b"[info] Output #0, mp4, to 'out.mp4':\n[info]   Stream #0:0: Video: h264 (avc1 / 0x31637661), yuv420p(progressive), 1280x720, q=2-31, 30 fps, 15360 tbn\n");
//! let outputs = scanner.finish();
//! assert_eq!((outputs[0].index, outputs[0].format.as_str(), outputs[0].url.as_str()), (0, "mp4", "out.mp4"));
//! let video = &outputs[0].streams[0];
//! assert_eq!((video.width, video.height, video.frame_rate), (Some(1280), Some(720), Some(30.0)));
//! ```

use crate::stream::{StreamInfo, StreamKind};

/// The most outputs a scanner keeps (ffmpeg has no limit; a command with more is unusual).
pub const MAX_OUTPUTS: usize = 1024;
/// The most streams a scanner keeps per output.
pub const MAX_STREAMS: usize = 1024;
/// The longest line a scanner looks at; longer lines are cut there.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// One `Output #N, FORMAT, to 'URL':` section.
///
/// `#[non_exhaustive]`: fields may be added (only the scanner builds one).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct OutputBanner {
    /// The output's index `N` (the command's outputs, in order, from 0).
    pub index: usize,
    /// The muxer's name, e.g. `mp4`, `hls`, `image2`.
    pub format: String,
    /// The URL as ffmpeg printed it (for a sandboxed command `file:/data/out.mp4`).
    pub url: String,
    /// The output's streams, in order, one per `Stream #N:M` line: what the line shows (see
    /// [`StreamInfo`] for which part gives each field; `duration_seconds` is never known here).
    pub streams: Vec<StreamInfo>,
}

/// Reads stderr chunk by chunk (a line may be split across chunks) and collects the output
/// sections. Bounded: at most [`MAX_OUTPUTS`] outputs of [`MAX_STREAMS`] streams, lines cut at
/// 64 KiB.
#[derive(Debug, Default)]
pub struct OutputBannerScanner {
    partial: Vec<u8>,
    outputs: Vec<OutputBanner>,
    /// The output whose section is being read, if any.
    current: Option<usize>,
}

impl OutputBannerScanner {
    /// An empty scanner.
    pub fn new() -> OutputBannerScanner {
        OutputBannerScanner::default()
    }

    /// Feeds the next bytes of stderr. Lines end at `\n` or `\r`.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                let line = std::mem::take(&mut self.partial);
                self.line(&String::from_utf8_lossy(&line));
            } else if self.partial.len() < MAX_LINE_BYTES {
                self.partial.push(b);
            }
        }
    }

    /// The outputs seen so far (the last line need not have ended).
    pub fn finish(mut self) -> Vec<OutputBanner> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&String::from_utf8_lossy(&line));
        }
        self.outputs
    }

    /// The outputs whose sections were read so far.
    pub fn outputs(&self) -> &[OutputBanner] {
        &self.outputs
    }

    fn line(&mut self, line: &str) {
        let text = strip_log_prefixes(line);
        if let Some(output) = parse_output_line(text) {
            self.current = None;
            if self.outputs.len() < MAX_OUTPUTS && !self.outputs.iter().any(|o| o.index == output.index) {
                self.current = Some(self.outputs.len());
                self.outputs.push(output);
            }
            return;
        }
        if text.starts_with("Input #") || text.starts_with("Stream mapping:") || !text.starts_with(' ') {
            self.current = None;
            return;
        }
        let Some(current) = self.current else { return };
        let output = &mut self.outputs[current];
        if let Some((file, stream)) = parse_stream_line(text)
            && file == output.index
            && output.streams.len() < MAX_STREAMS
        {
            output.streams.push(stream);
        }
    }
}

/// Reads all of `log` (ffmpeg's stderr) at once: [`OutputBannerScanner`] fed the whole text.
pub fn scan(log: &str) -> Vec<OutputBanner> {
    let mut scanner = OutputBannerScanner::new();
    scanner.feed(log.as_bytes());
    scanner.finish()
}

/// Removes the `[info] ` style prefixes `-loglevel level` adds (one per line, possibly after a
/// `[component @ 0x...] ` prefix, which output sections do not have).
fn strip_log_prefixes(line: &str) -> &str {
    const LEVELS: [&str; 8] = ["quiet", "panic", "fatal", "error", "warning", "info", "verbose", "debug"];
    let mut rest = line;
    loop {
        let Some(after) = rest.strip_prefix('[') else { return rest };
        let Some((tag, tail)) = after.split_once("] ") else { return rest };
        if LEVELS.contains(&tag) || tag == "trace" {
            rest = tail;
        } else {
            return rest;
        }
    }
}

/// `Output #0, mp4, to 'out.mp4':` as an output without streams.
fn parse_output_line(text: &str) -> Option<OutputBanner> {
    let rest = text.strip_prefix("Output #")?;
    let (index, rest) = rest.split_once(", ")?;
    let index: usize = index.parse().ok()?;
    let (format, rest) = rest.split_once(", to '")?;
    let url = rest.strip_suffix("':")?;
    Some(OutputBanner { index, format: format.to_owned(), url: url.to_owned(), streams: Vec::new() })
}

/// `  Stream #0:1(eng): Audio: aac (LC), 48000 Hz, stereo, fltp, 128 kb/s (default)` as the
/// file index and the stream; `None` for other lines (including the mapping's
/// `Stream #0:0 -> #0:0 (copy)`).
fn parse_stream_line(text: &str) -> Option<(usize, StreamInfo)> {
    let rest = text.trim_start().strip_prefix("Stream #")?;
    let (id, rest) = rest.split_once(": ")?;
    let (file, rest_id) = id.split_once(':')?;
    let file: usize = file.parse().ok()?;
    let digits = rest_id.bytes().take_while(u8::is_ascii_digit).count();
    let index: u32 = rest_id[..digits].parse().ok()?;
    let mut tail = &rest_id[digits..];
    // `[0x1]`: the stream's id in the container.
    if let Some(after) = tail.strip_prefix('[') {
        tail = after.split_once(']').map_or("", |(_, t)| t);
    }
    let language = tail
        .strip_prefix('(')
        .and_then(|t| t.split_once(')'))
        .map(|(lang, _)| lang)
        .filter(|l| !l.is_empty() && *l != "und")
        .map(str::to_owned);
    let (kind, details) = rest.split_once(": ")?;
    // `avcodec_string()` prints the media type with its first letter in upper case.
    let kind = match kind {
        "Video" => StreamKind::Video,
        "Audio" => StreamKind::Audio,
        "Subtitle" => StreamKind::Subtitle,
        "Data" => StreamKind::Data,
        "Attachment" => StreamKind::Attachment,
        "Unknown" => StreamKind::Unknown,
        _ => return None,
    };
    let mut stream = StreamInfo { index, kind, language, ..StreamInfo::default() };
    let fields = split_top_level(details);
    let codec = fields.first().copied().unwrap_or("");
    stream.codec = codec.split_whitespace().next().filter(|c| *c != "none").map(str::to_owned);
    stream.profile = profile(codec);
    for (i, field) in fields.iter().enumerate().skip(1) {
        // The last field may end with dispositions: `96 kb/s (default)`, `25 fps (attached pic)`.
        let field = field.split(" (").next().unwrap_or(field).trim();
        if let Some(rate) = field.strip_suffix(" kb/s") {
            stream.bit_rate = rate.trim().parse::<f64>().ok().filter(|r| r.is_finite() && *r >= 0.0).map(|r| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "finite, >= 0, rounded")]
                let bits = (r * 1000.0).round() as u64;
                bits
            });
        } else if let Some(fps) = field.strip_suffix(" fps") {
            stream.frame_rate = number_with_k(fps.trim()).filter(|f| *f > 0.0);
        } else if let Some(hz) = field.strip_suffix(" Hz") {
            stream.sample_rate = hz.trim().parse().ok().filter(|r| *r > 0);
            // The layout comes right after the sample rate.
            if let Some(layout) = fields.get(i + 1).map(|f| f.trim()).filter(|l| !l.is_empty()) {
                stream.channels = channel_count(layout);
                stream.channel_layout = Some(layout.to_owned());
            }
        } else if kind == StreamKind::Video {
            if let Some((w, h)) = frame_size(field) {
                stream.width = Some(w);
                stream.height = Some(h);
            } else if i == 1 && stream.pixel_format.is_none() {
                // `yuv420p(tv, progressive)`: the format before its parenthesised details.
                let name = field.split('(').next().unwrap_or("").trim();
                if !name.is_empty() && name != "none" && !name.contains(' ') {
                    stream.pixel_format = Some(name.to_owned());
                }
            }
        }
    }
    Some((file, stream))
}

/// The profile in the codec field `h264 (High 4:4:4 Predictive) (avc1 / 0x31637661)`: the last
/// parenthesised group after the codec name that is not the codec tag (`(FOURCC / 0xHEX)`).
/// ffmpeg's `avcodec_string()` prints the name, then the decoder's own name when it differs
/// (never for an output: its listing has no decoder), then the profile, then the tag.
fn profile(field: &str) -> Option<String> {
    let mut rest = field.split_once(' ').map_or("", |(_, rest)| rest);
    let mut found = None;
    while let Some(after) = rest.trim_start().strip_prefix('(') {
        let mut depth = 1usize;
        let end = after.char_indices().find_map(|(i, c)| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        })?;
        let group = &after[..end];
        if !group.contains(" / 0x") && !group.is_empty() {
            found = Some(group);
        }
        rest = &after[end + 1..];
    }
    found.map(str::to_owned)
}

/// Splits at `, ` outside parentheses and brackets: `yuv420p(tv, bt709, progressive)` is one
/// field.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 0 && bytes.get(i + 1) == Some(&b' ') => {
                fields.push(&text[start..i]);
                start = i + 2;
            }
            _ => {}
        }
    }
    if start <= text.len() {
        fields.push(&text[start..]);
    }
    fields
}

/// `1280x720` or `1280x720 [SAR 1:1 DAR 16:9]` as (width, height).
fn frame_size(field: &str) -> Option<(u32, u32)> {
    let size = field.split_whitespace().next()?;
    let (w, h) = size.split_once('x')?;
    if w.is_empty() || h.is_empty() || !w.bytes().chain(h.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// `29.97`, `30`, `1k` (ffmpeg prints rates of 1000 and more with a `k`).
fn number_with_k(text: &str) -> Option<f64> {
    let (digits, scale) = match text.strip_suffix('k') {
        Some(d) => (d, 1000.0),
        None => (text, 1.0),
    };
    digits.parse::<f64>().ok().map(|n| n * scale).filter(|n| n.is_finite())
}

/// The channel count of a layout name as ffmpeg 5.1 prints it (`av_channel_layout_describe`):
/// a named layout (`mono`, `stereo`, `5.1(side)`, ...) or `N channels`; `None` otherwise.
pub fn channel_count(layout: &str) -> Option<u32> {
    if let Some(n) = layout.strip_suffix(" channels") {
        return n.trim().parse().ok();
    }
    let count = match layout {
        "mono" => 1,
        "stereo" | "downmix" => 2,
        "2.1" | "3.0" | "3.0(back)" => 3,
        "4.0" | "quad" | "quad(side)" | "3.1" => 4,
        "5.0" | "5.0(side)" | "4.1" => 5,
        "5.1" | "5.1(side)" | "6.0" | "6.0(front)" | "hexagonal" => 6,
        "6.1" | "6.1(back)" | "6.1(front)" | "7.0" | "7.0(front)" => 7,
        "7.1" | "7.1(wide)" | "7.1(wide-side)" | "7.1(top)" | "octagonal" | "cube" => 8,
        "hexadecagonal" => 16,
        "22.2" => 24,
        _ => return None,
    };
    Some(count)
}

//! One description of a media stream, whichever tool described it: [`StreamInfo`].
//!
//! Two sources describe streams, and both fill the same type:
//! - ffprobe's `-show_streams` JSON, for a file that exists (what it holds). ffmpeg-worker
//!   reads it in its `jobs::media` module; the JSON key each field comes from is named below
//!   as *ffprobe*.
//! - ffmpeg's own `Output #N` listing on stderr, for what a command is writing, read by
//!   [`crate::output_banner`] (`Stream #0:1(eng): Audio: aac (LC), 48000 Hz, stereo, fltp,
//!   128 kb/s`); the part of the line each field comes from is named below as *banner*.
//!
//! A field its source does not give is `None`. Both print names the same way (ffmpeg's
//! `avcodec_get_name`, `avcodec_profile_name`, `av_get_pix_fmt_name`,
//! `av_channel_layout_describe`), so a codec, profile, pixel format or layout reads the same
//! from either. Numbers differ in precision: the banner rounds frame rates to two decimals
//! and prints bit rates in kb/s, where ffprobe gives the exact rational and bit/s.
//!
//! ```
//! use ffmpeg_core::stream::{StreamInfo, StreamKind};
//!
//! let mut audio = StreamInfo::new(1, StreamKind::Audio);
//! audio.codec = Some("aac".to_owned());
//! audio.sample_rate = Some(48_000);
//! assert_eq!(audio.kind.as_str(), "audio");
//! assert_eq!(StreamKind::from_name("Video"), StreamKind::Video);
//! assert_eq!(StreamKind::from_name("teletext"), StreamKind::Unknown);
//! ```

use std::fmt;

/// What a stream carries: ffmpeg's media types (`AVMediaType`, named by
/// `av_get_media_type_string` in `libavutil/utils.c`). Used by both the output listing
/// ([`StreamInfo::kind`]) and the input banner ([`crate::duration::InputInfo::streams`]).
///
/// `#[non_exhaustive]`: ffmpeg may add a media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum StreamKind {
    /// `video`.
    Video,
    /// `audio`.
    Audio,
    /// `subtitle`.
    Subtitle,
    /// `data` (timed metadata, timecode tracks, ...).
    Data,
    /// `attachment` (fonts in a Matroska file, ...).
    Attachment,
    /// A type ffmpeg does not know (`AVMEDIA_TYPE_UNKNOWN`: `Unknown:` on stderr, no
    /// `codec_type` from ffprobe), or a name this crate does not know.
    #[default]
    Unknown,
}

impl StreamKind {
    /// Every kind, in ffmpeg's order.
    pub const ALL: [StreamKind; 6] = [
        StreamKind::Unknown,
        StreamKind::Video,
        StreamKind::Audio,
        StreamKind::Data,
        StreamKind::Subtitle,
        StreamKind::Attachment,
    ];

    /// The lower-case name: `video`, `audio`, `subtitle`, `data`, `attachment` (ffprobe's
    /// `codec_type`), or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Video => "video",
            StreamKind::Audio => "audio",
            StreamKind::Subtitle => "subtitle",
            StreamKind::Data => "data",
            StreamKind::Attachment => "attachment",
            StreamKind::Unknown => "unknown",
        }
    }

    /// The kind named `name` in any case: ffprobe's `codec_type` (`video`) or the banner's
    /// (`Video`); [`StreamKind::Unknown`] for anything else.
    pub fn from_name(name: &str) -> StreamKind {
        StreamKind::ALL.into_iter().find(|kind| kind.as_str().eq_ignore_ascii_case(name)).unwrap_or_default()
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stream of a media file, as ffprobe or ffmpeg's output listing describes it (see the
/// [module docs](self) for the two sources). Every field a source does not give is `None`.
///
/// `#[non_exhaustive]`: fields may be added; build one with [`StreamInfo::new`] and set the
/// fields. With the `serde` feature, a missing field reads as its default, so a description
/// stored by an older version still reads.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(default))]
#[non_exhaustive]
pub struct StreamInfo {
    /// The stream's index in its file, from 0, as `-map FILE:INDEX` names it. ffprobe:
    /// `index`; banner: `M` of `Stream #N:M`.
    pub index: u32,
    /// What it carries. ffprobe: `codec_type` (absent for a type ffmpeg does not know:
    /// [`StreamKind::Unknown`]); banner: the word before the codec (`Video:`).
    pub kind: StreamKind,
    /// Codec name, e.g. `h264`, `aac`, `png`. ffprobe: `codec_name`; banner: the first word
    /// after the kind (`none` reads as `None`).
    pub codec: Option<String>,
    /// Codec profile, e.g. `High`, `LC`. ffprobe: `profile` (`unknown` reads as `None`);
    /// banner: the parenthesised name after the codec (`aac (LC)`), printed only when the
    /// stream's parameters carry one (a stream copy does; ffmpeg 5.1's libx264 output does
    /// not).
    pub profile: Option<String>,
    /// Language, e.g. `eng`; `None` when absent or `und`. ffprobe: tag `language`; banner:
    /// `(eng)` after the stream id.
    pub language: Option<String>,
    /// Width in pixels (video). ffprobe: `width`; banner: `1280x720`.
    pub width: Option<u32>,
    /// Height in pixels (video). ffprobe: `height`; banner: `1280x720`.
    pub height: Option<u32>,
    /// Frames per second (video). ffprobe: `avg_frame_rate`, else `r_frame_rate` (exact
    /// rationals; `0/0` reads as `None`); banner: `29.97 fps` (two decimals; `1k fps` is
    /// 1000).
    pub frame_rate: Option<f64>,
    /// Pixel format, e.g. `yuv420p` (video). ffprobe: `pix_fmt`; banner: the field after the
    /// codec, without its parenthesised details (`yuv420p(tv, progressive)`).
    pub pixel_format: Option<String>,
    /// Samples per second, in Hz (audio). ffprobe: `sample_rate`; banner: `48000 Hz`.
    pub sample_rate: Option<u32>,
    /// Channel count (audio). ffprobe: `channels`; banner: from the layout's name
    /// (`stereo`: 2, `5.1(side)`: 6, `3 channels`: 3; see
    /// [`channel_count`](crate::output_banner::channel_count)).
    pub channels: Option<u32>,
    /// Channel layout, e.g. `stereo`, `5.1(side)` (audio). ffprobe: `channel_layout`;
    /// banner: the field after the sample rate.
    pub channel_layout: Option<String>,
    /// Duration in seconds. ffprobe: the stream's `duration`; banner: never (ffmpeg has not
    /// written the stream yet when it prints the listing).
    pub duration_seconds: Option<f64>,
    /// Bit rate in bit/s. ffprobe: `bit_rate` (as the container declares or ffprobe
    /// measures it); banner: `128 kb/s` times 1000, the encoder's target bit rate (for a
    /// stream copy, the input's), printed only when there is one.
    pub bit_rate: Option<u64>,
}

impl StreamInfo {
    /// Stream `index` of kind `kind`, every other field `None`.
    pub fn new(index: u32, kind: StreamKind) -> StreamInfo {
        StreamInfo { index, kind, ..StreamInfo::default() }
    }
}

//! What is known of a media file: a file a job wrote (a job's `outputs`), a probed file
//! (`GET /probe/{path}`), and their streams.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One file a completed job wrote. Values that ffmpeg's output listing, its final progress
/// and the file system do not tell are null: a file the listing does not name (an HLS
/// segment) has no `format` and no streams; `duration_seconds` is known only for the file of
/// a command's only output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"path": "output.mp4", "size_bytes": 1_504_315, "duration_seconds": 10.0, "format": "mp4",
    "streams": [{"index": 0, "type": "video", "codec": "h264", "profile": null, "width": 1280, "height": 720,
                 "frame_rate": 30.0, "pixel_format": "yuv420p", "sample_rate": null, "channels": null,
                 "channel_layout": null, "language": null, "duration_seconds": null, "bit_rate": null},
                {"index": 1, "type": "audio", "codec": "aac", "profile": "LC", "width": null, "height": null,
                 "frame_rate": null, "pixel_format": null, "sample_rate": 48000, "channels": 2,
                 "channel_layout": "stereo", "language": "eng", "duration_seconds": null, "bit_rate": 128_000}]}))]
pub struct OutputFileResponse {
    /// The file, relative to the data directory.
    pub path: String,
    /// Size in bytes after the run.
    pub size_bytes: u64,
    /// Duration in seconds (ffmpeg's final output time), for the file of a command's only output.
    pub duration_seconds: Option<f64>,
    /// The muxer that wrote it, e.g. `mp4`, `hls`, `image2`.
    pub format: Option<String>,
    /// Its streams as ffmpeg listed them before writing (`Stream #0:1(eng): Audio: aac (LC),
    /// 48000 Hz, stereo, ...`): `duration_seconds` is never known, and
    /// `bit_rate` is the encoder's target (for a stream copy, the input's) when ffmpeg printed
    /// one.
    pub streams: Vec<MediaStreamResponse>,
}

/// What ffprobe says about a media file of the data directory (`GET /probe/{path}`). Values
/// ffprobe does not report are null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"path": "in/a.mp4", "container": "mov,mp4,m4a,3gp,3g2,mj2",
    "container_long_name": "QuickTime / MOV", "duration_seconds": 10.01, "bit_rate": 2_557_442, "size_bytes": 3_200_000,
    "streams": [{"index": 0, "type": "video", "codec": "h264", "profile": "High", "width": 1280, "height": 720,
                 "frame_rate": 29.97, "pixel_format": "yuv420p", "sample_rate": null, "channels": null,
                 "channel_layout": null, "language": null, "duration_seconds": 10.01, "bit_rate": 2_400_000}]}))]
pub struct MediaInfoResponse {
    /// The path, relative to the data directory.
    pub path: String,
    /// The container format: ffprobe's `format_name`, e.g. `mov,mp4,m4a,3gp,3g2,mj2`,
    /// `matroska,webm`.
    pub container: String,
    /// The container's long name, e.g. `QuickTime / MOV`.
    pub container_long_name: Option<String>,
    /// Duration in seconds.
    pub duration_seconds: Option<f64>,
    /// Overall bit rate in bit/s.
    pub bit_rate: Option<u64>,
    /// File size in bytes.
    pub size_bytes: u64,
    /// The streams, in file order.
    pub streams: Vec<MediaStreamResponse>,
}

/// One stream of a media file: of a probed file (`GET /probe/{path}`, from ffprobe's
/// `-show_streams`), or of a file a job wrote (a job's `outputs`, from ffmpeg's own listing of
/// its outputs). Both say the same thing in the same names; what the source does not tell is
/// null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MediaStreamResponse {
    /// Index in the file (0-based), as in ffmpeg's `-map 0:N`.
    pub index: u32,
    /// `video`, `audio`, `subtitle`, `data` or `attachment`; null when ffmpeg does not know
    /// the type.
    #[serde(rename = "type")]
    #[schema(example = "video")]
    pub type_: Option<String>,
    /// Codec name, e.g. `h264`, `aac`.
    pub codec: Option<String>,
    /// Codec profile, e.g. `High`, `LC`.
    pub profile: Option<String>,
    /// Width in pixels (video).
    pub width: Option<u32>,
    /// Height in pixels (video).
    pub height: Option<u32>,
    /// Frames per second (video): ffprobe's exact average rate; ffmpeg's listing rounds to
    /// two decimals.
    pub frame_rate: Option<f64>,
    /// Pixel format, e.g. `yuv420p` (video).
    pub pixel_format: Option<String>,
    /// Samples per second, in Hz (audio).
    pub sample_rate: Option<u32>,
    /// Channel count (audio).
    pub channels: Option<u32>,
    /// Channel layout, e.g. `stereo` (audio).
    pub channel_layout: Option<String>,
    /// Language tag, e.g. `eng`; null when absent or `und`.
    pub language: Option<String>,
    /// Duration in seconds (probed files only).
    pub duration_seconds: Option<f64>,
    /// Bit rate in bit/s: a probed file's as ffprobe reports it; a written file's target
    /// bit rate, when ffmpeg printed one.
    pub bit_rate: Option<u64>,
}

//! Describing a media file of the data directory with ffprobe: [`MediaProber`] runs
//! `ffprobe -show_format -show_streams -of json` under the rules ffmpeg runs under, reads its
//! JSON into [`MediaInfo`], and caches the answer by (path, size, modification time, inode, status-change time).
//!
//! ffprobe is built by the same function as every ffmpeg process
//! ([`crate::runner`]'s `ffmpeg_command`): run directly (no shell), with an empty environment
//! and stdin, in its own process group, killed when dropped. Both pipes are drained at once
//! (bounded), the run has a time limit after which its whole process group is killed. The path
//! is resolved by the sandbox ([`Sandbox::resolve_input`], as a command's `-i`) and handed to
//! ffprobe as a `file:` URL after `-protocol_whitelist file` and the policy's
//! `-format_whitelist`, so a playlist or concat list inside the data directory cannot make it
//! open anything else.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ffmpeg_core::sandbox::{ResolvedPath, Sandbox, SandboxError};
use ffmpeg_core::stream::{StreamInfo, StreamKind};
use nix::sys::signal::Signal;
use serde::Deserialize;

use crate::storage::StorageError;

/// Most bytes of ffprobe's JSON read (a file with thousands of streams or huge tags is refused).
const MAX_JSON_BYTES: usize = 4 * 1024 * 1024;
/// Most bytes of ffprobe's stderr kept (its error message).
const MAX_STDERR_BYTES: usize = 16 * 1024;

/// Settings of [`MediaProber`].
#[derive(Debug, Clone)]
pub struct MediaProbeConfig {
    /// The ffprobe binary: a path, or a name looked up on `PATH`
    /// ([`crate::runner::program_path`]).
    pub binary: PathBuf,
    /// How long one ffprobe run may take before its process group is killed.
    pub timeout: Duration,
    /// How many answers the cache keeps (one per path; the oldest is dropped first).
    pub cache_entries: usize,
}

impl Default for MediaProbeConfig {
    /// `ffprobe`, 30 s, 1024 cached answers.
    fn default() -> Self {
        MediaProbeConfig { binary: PathBuf::from("ffprobe"), timeout: Duration::from_secs(30), cache_entries: 1024 }
    }
}

/// What ffprobe says about a media file. Values ffprobe does not report are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    /// The path, relative to the data directory.
    pub path: String,
    /// The container: ffprobe's `format_name`, e.g. `mov,mp4,m4a,3gp,3g2,mj2` or `matroska,webm`.
    pub format_name: String,
    /// The container's long name, e.g. `QuickTime / MOV`.
    pub format_long_name: Option<String>,
    /// Duration in seconds.
    pub duration_seconds: Option<f64>,
    /// Overall bit rate in bit/s.
    pub bit_rate: Option<u64>,
    /// File size in bytes.
    pub size_bytes: u64,
    /// The streams, in file order, each read from ffprobe's `-show_streams` keys (which key
    /// gives which field: [`StreamInfo`]).
    pub streams: Vec<StreamInfo>,
}

/// Why a file could not be described.
#[derive(Debug, thiserror::Error)]
pub enum MediaProbeError {
    /// The path is refused by the sandbox (escapes the data directory, a protocol, a glob, a
    /// directory, ...).
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// No file at this path.
    #[error("no file `{0}`")]
    NotFound(String),
    /// ffprobe cannot read the file as media; `reason` is its message, e.g. "Invalid data
    /// found when processing input".
    #[error("`{path}` is not a media file ffprobe can read: {reason}")]
    NotMedia {
        /// The path as asked for.
        path: String,
        /// ffprobe's last message, data-directory paths made relative.
        reason: String,
    },
    /// ffprobe could not be run, did not finish in time, or printed what is not its JSON; the
    /// message says which (a server problem, not the client's).
    #[error("ffprobe failed: {0}")]
    Unavailable(String),
    /// With the files in a bucket: the file (or a concat list's entry) could not be read from
    /// the storage: it does not answer or is known not to ([`StorageError::Unavailable`],
    /// [`StorageError::Unreachable`]), its bucket does not exist ([`StorageError::NoBucket`]),
    /// it refused access, ... The files API's answer for the same read (tester finding L9:
    /// not an ffprobe failure).
    #[error(transparent)]
    Storage(StorageError),
}

/// Runs ffprobe on files of the data directory and caches the answers.
#[derive(Debug)]
pub struct MediaProber {
    config: MediaProbeConfig,
    cache: Mutex<Cache>,
}

/// Cache key beside the path: the file's size and modification time, and its inode and
/// status-change time. A file replaced by a rename (`rsync -a`, `cp -p` then `mv`) can keep
/// the size and the modification time of the one it replaced, never its inode and `ctime`
/// (tester finding L14: the old file's answer was given for the new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Stamp {
    size: u64,
    modified: Option<SystemTime>,
    device: u64,
    inode: u64,
    /// `st_ctime` in nanoseconds since the epoch.
    changed_ns: i128,
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<PathBuf, (Stamp, Arc<MediaInfo>)>,
    order: VecDeque<PathBuf>,
}

impl Cache {
    fn get(&self, path: &Path, stamp: Stamp) -> Option<Arc<MediaInfo>> {
        self.entries.get(path).filter(|(s, _)| *s == stamp).map(|(_, info)| Arc::clone(info))
    }

    fn put(&mut self, path: PathBuf, stamp: Stamp, info: Arc<MediaInfo>, cap: usize) {
        if cap == 0 {
            return;
        }
        if self.entries.insert(path.clone(), (stamp, info)).is_none() {
            self.order.push_back(path);
        }
        while self.entries.len() > cap {
            let Some(oldest) = self.order.pop_front() else { break };
            self.entries.remove(&oldest);
        }
    }
}

impl MediaProber {
    /// A prober with `config` and an empty cache.
    pub fn new(config: MediaProbeConfig) -> MediaProber {
        MediaProber { config, cache: Mutex::new(Cache::default()) }
    }

    /// Describes the file at `path` (relative to the data directory of `sandbox`), read as
    /// ffmpeg reads an `-i` without `-f` (so a `.m3u8` or `.mpd` name is refused as a command's
    /// input is while the policy refuses `hls` or `dash`). A repeated
    /// call for the same file with its size and modification time unchanged answers from the cache
    /// without running ffprobe.
    ///
    /// # Errors
    /// [`MediaProbeError::Sandbox`] for a path the sandbox refuses, [`MediaProbeError::NotFound`],
    /// [`MediaProbeError::NotMedia`] with ffprobe's reason, [`MediaProbeError::Unavailable`].
    pub async fn probe(&self, sandbox: &Arc<Sandbox>, path: &str) -> Result<Arc<MediaInfo>, MediaProbeError> {
        let (resolved, stamp) = {
            let (sandbox, path) = (Arc::clone(sandbox), path.to_owned());
            tokio::task::spawn_blocking(move || resolve(&sandbox, &path))
                .await
                .map_err(|e| MediaProbeError::Unavailable(format!("resolving the path failed: {e}")))??
        };
        let key = resolved.as_path().to_owned();
        if let Some(hit) = self.lock().get(&key, stamp) {
            return Ok(hit);
        }
        let json = self.run(sandbox, &resolved).await.map_err(|e| match e {
            MediaProbeError::NotMedia { reason, .. } => MediaProbeError::NotMedia { path: path.to_owned(), reason },
            other => other,
        })?;
        let info = Arc::new(parse_ffprobe_json(&json, &resolved.relative().to_string_lossy())?);
        // Cached only when the file did not change while ffprobe read it.
        let again = tokio::fs::metadata(&key).await.ok().map(|m| stamp_of(&m));
        if again == Some(stamp) {
            self.lock().put(key, stamp, Arc::clone(&info), self.config.cache_entries);
        }
        Ok(info)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The arguments ffprobe gets for `path`.
    fn args(sandbox: &Sandbox, path: &ResolvedPath) -> Vec<String> {
        let whitelist = sandbox.policy().input_format_whitelist();
        [
            "-hide_banner",
            "-loglevel",
            "error",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
            "-protocol_whitelist",
            "file",
            "-format_whitelist",
            &whitelist,
            "-i",
            &path.to_file_url(),
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Runs ffprobe on `path`; its stdout on success.
    async fn run(&self, sandbox: &Sandbox, path: &ResolvedPath) -> Result<Vec<u8>, MediaProbeError> {
        let binary = &self.config.binary;
        let mut child = crate::runner::ffmpeg_command(binary)
            .args(MediaProber::args(sandbox, path))
            .spawn()
            .map_err(|e| MediaProbeError::Unavailable(format!("cannot run `{}`: {e}", binary.display())))?;
        let pid = child.id();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(MediaProbeError::Unavailable("ffprobe's pipes are missing".to_owned()));
        };
        let io = |e: std::io::Error| MediaProbeError::Unavailable(format!("reading ffprobe's output failed: {e}"));
        let all = async {
            let read_out = crate::probe::read_capped(stdout, MAX_JSON_BYTES, crate::probe::Overflow::Stop);
            let read_err = crate::probe::read_capped(stderr, MAX_STDERR_BYTES, crate::probe::Overflow::Drain);
            let ((out, too_large), (err, _)) = tokio::try_join!(read_out, read_err).map_err(io)?;
            if too_large {
                return Err(MediaProbeError::Unavailable(format!(
                    "ffprobe printed more than {} MiB of JSON",
                    MAX_JSON_BYTES / (1024 * 1024)
                )));
            }
            let status = child.wait().await.map_err(io)?;
            Ok((status, out, err))
        };
        let (status, out, err) = match tokio::time::timeout(self.config.timeout, all).await {
            Ok(result) => result?,
            Err(_) => {
                // The child is not reaped yet (its wait is what timed out), so its pid still
                // names its process group.
                crate::runner::signal_group(pid, Signal::SIGKILL);
                return Err(MediaProbeError::Unavailable(format!(
                    "ffprobe did not finish within {} s",
                    self.config.timeout.as_secs_f64()
                )));
            }
        };
        if status.success() {
            return Ok(out);
        }
        let text = String::from_utf8_lossy(&err);
        let relative = path.relative().to_string_lossy();
        if let Some(refused) = text.lines().find_map(|line| {
            let demuxer = not_on_whitelist(line)?;
            sandbox.refused_input_format(&relative, 1, demuxer)
        }) {
            return Err(MediaProbeError::Sandbox(refused));
        }
        let text = text.replace(&path.to_file_url(), &relative);
        let reason = text.lines().map(str::trim).rev().find(|l| !l.is_empty()).unwrap_or("").to_owned();
        let reason = reason.strip_prefix(&format!("{}: ", path.relative().display())).unwrap_or(&reason).to_owned();
        let reason = if reason.is_empty() { format!("ffprobe exited with {status}") } else { reason };
        Err(MediaProbeError::NotMedia { path: path.relative().display().to_string(), reason })
    }
}

/// The demuxer named by a "Format not on whitelist" line of ffprobe's stderr:
/// `[hls @ 0x55d0c8a3b2c0] Format not on whitelist 'mov,mp4,...'` gives `hls`.
fn not_on_whitelist(line: &str) -> Option<&str> {
    let (context, message) = line.strip_prefix('[')?.split_once("] ")?;
    let (demuxer, _address) = context.split_once(" @ 0x")?;
    message.starts_with("Format not on whitelist").then_some(demuxer)
}

/// The [`Stamp`] of a file with metadata `meta`.
fn stamp_of(meta: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt as _;
    Stamp {
        size: meta.len(),
        modified: meta.modified().ok(),
        device: meta.dev(),
        inode: meta.ino(),
        changed_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
    }
}

/// Resolves `path` like a command's input and reads its stamp. Blocking.
fn resolve(sandbox: &Sandbox, path: &str) -> Result<(ResolvedPath, Stamp), MediaProbeError> {
    sandbox.check_input_by_name(path, 1)?;
    let resolved = sandbox.resolve_input(path, 1)?;
    match std::fs::metadata(resolved.as_path()) {
        Ok(meta) => Ok((resolved, stamp_of(&meta))),
        Err(_) => Err(MediaProbeError::NotFound(path.to_owned())),
    }
}

#[derive(Deserialize)]
struct ProbeJson {
    #[serde(default)]
    streams: Vec<StreamJson>,
    format: Option<FormatJson>,
}

#[derive(Deserialize)]
struct FormatJson {
    format_name: Option<String>,
    format_long_name: Option<String>,
    duration: Option<String>,
    size: Option<String>,
    bit_rate: Option<String>,
}

#[derive(Deserialize)]
struct StreamJson {
    index: u32,
    codec_type: Option<String>,
    codec_name: Option<String>,
    profile: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    pix_fmt: Option<String>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    sample_rate: Option<String>,
    channels: Option<u32>,
    channel_layout: Option<String>,
    duration: Option<String>,
    bit_rate: Option<String>,
    #[serde(default)]
    tags: HashMap<String, serde_json::Value>,
}

/// Reads ffprobe's `-show_format -show_streams -of json` output for the file at `path`
/// (relative, as reported). Numbers ffprobe prints as strings (`"duration": "1.000000"`,
/// `"bit_rate": "110480"`) are parsed; `N/A`, `0/0` frame rates and absent keys are `None`.
///
/// # Errors
/// [`MediaProbeError::Unavailable`] when the text is not such JSON.
pub fn parse_ffprobe_json(json: &[u8], path: &str) -> Result<MediaInfo, MediaProbeError> {
    let parsed: ProbeJson = serde_json::from_slice(json)
        .map_err(|e| MediaProbeError::Unavailable(format!("ffprobe's JSON does not read: {e}")))?;
    let Some(format) = parsed.format else {
        return Err(MediaProbeError::NotMedia {
            path: path.to_owned(),
            reason: "ffprobe found no container".to_owned(),
        });
    };
    let streams = parsed
        .streams
        .into_iter()
        .map(|s| {
            let language = s
                .tags
                .get("language")
                .and_then(serde_json::Value::as_str)
                .filter(|l| !l.is_empty() && *l != "und")
                .map(str::to_owned);
            let kind = s.codec_type.as_deref().map_or(StreamKind::Unknown, StreamKind::from_name);
            let frame_rate =
                s.avg_frame_rate.as_deref().and_then(rational).or_else(|| s.r_frame_rate.as_deref().and_then(rational));
            let mut stream = StreamInfo::new(s.index, kind);
            stream.codec = s.codec_name;
            stream.profile = s.profile.filter(|p| p != "unknown");
            stream.language = language;
            stream.width = s.width.filter(|w| *w > 0);
            stream.height = s.height.filter(|h| *h > 0);
            stream.frame_rate = frame_rate.filter(|_| kind == StreamKind::Video);
            stream.pixel_format = s.pix_fmt;
            stream.sample_rate = s.sample_rate.as_deref().and_then(|r| r.parse().ok()).filter(|r| *r > 0);
            stream.channels = s.channels.filter(|c| *c > 0);
            stream.channel_layout = s.channel_layout;
            stream.duration_seconds = s.duration.as_deref().and_then(seconds);
            stream.bit_rate = s.bit_rate.as_deref().and_then(|b| b.parse().ok());
            stream
        })
        .collect();
    Ok(MediaInfo {
        path: path.to_owned(),
        format_name: format.format_name.unwrap_or_default(),
        format_long_name: format.format_long_name,
        duration_seconds: format.duration.as_deref().and_then(seconds),
        bit_rate: format.bit_rate.as_deref().and_then(|b| b.parse().ok()),
        size_bytes: format.size.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0),
        streams,
    })
}

/// `"1.000000"` as seconds; `None` for `N/A`, negative or non-finite values.
fn seconds(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0)
}

/// `"30000/1001"` as a number; `None` for `0/0` and anything not positive.
fn rational(text: &str) -> Option<f64> {
    let (num, den) = text.split_once('/')?;
    let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
    let value = num / den;
    (value.is_finite() && value > 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffprobe_json_reads_into_typed_fields() {
        let json = br#"{"streams": [
            {"index": 0, "codec_name": "h264", "profile": "High", "codec_type": "video", "width": 1280,
             "height": 720, "pix_fmt": "yuv420p", "r_frame_rate": "30000/1001", "avg_frame_rate": "30000/1001",
             "duration": "10.010000", "bit_rate": "2500000", "tags": {"language": "und"}},
            {"index": 1, "codec_name": "aac", "profile": "LC", "codec_type": "audio", "sample_rate": "48000",
             "channels": 2, "channel_layout": "stereo", "r_frame_rate": "0/0", "avg_frame_rate": "0/0",
             "duration": "N/A", "tags": {"language": "eng"}},
            {"index": 2, "codec_type": "data", "profile": "unknown"}],
          "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "format_long_name": "QuickTime / MOV",
                     "duration": "10.010000", "size": "3200000", "bit_rate": "2557442"}}"#;
        let info = parse_ffprobe_json(json, "in/a.mp4").expect("reads");
        assert_eq!(info.format_name, "mov,mp4,m4a,3gp,3g2,mj2");
        assert_eq!((info.duration_seconds, info.bit_rate, info.size_bytes), (Some(10.01), Some(2_557_442), 3_200_000));
        let video = &info.streams[0];
        assert_eq!((video.width, video.height, video.language.as_deref()), (Some(1280), Some(720), None));
        assert!((video.frame_rate.expect("rate") - 29.97).abs() < 0.01);
        let audio = &info.streams[1];
        assert_eq!((audio.sample_rate, audio.channels, audio.frame_rate), (Some(48000), Some(2), None));
        assert_eq!((audio.language.as_deref(), audio.duration_seconds), (Some("eng"), None));
        assert_eq!((info.streams[2].kind, info.streams[2].profile.as_deref()), (StreamKind::Data, None));
    }

    #[test]
    fn json_that_is_not_ffprobes_is_an_error_not_a_panic() {
        assert!(matches!(parse_ffprobe_json(b"{", "a"), Err(MediaProbeError::Unavailable(_))));
        assert!(matches!(parse_ffprobe_json(b"{}", "a"), Err(MediaProbeError::NotMedia { .. })));
    }

    #[test]
    fn the_cache_keeps_at_most_its_capacity_and_checks_the_stamp() {
        let mut cache = Cache::default();
        let info = |p: &str| {
            Arc::new(MediaInfo {
                path: p.to_owned(),
                format_name: String::new(),
                format_long_name: None,
                duration_seconds: None,
                bit_rate: None,
                size_bytes: 0,
                streams: Vec::new(),
            })
        };
        let size = |size: u64| Stamp { size, ..Stamp::default() };
        for (i, p) in ["a", "b", "c"].into_iter().enumerate() {
            cache.put(PathBuf::from(p), size(i as u64), info(p), 2);
        }
        assert!(cache.get(Path::new("a"), size(0)).is_none(), "the oldest is dropped");
        assert!(cache.get(Path::new("c"), size(2)).is_some());
        assert!(cache.get(Path::new("c"), size(3)).is_none(), "another size is another file");
        let renamed = Stamp { inode: 9, ..size(2) };
        assert!(cache.get(Path::new("c"), renamed).is_none(), "another inode is another file");
        cache.put(PathBuf::from("c"), size(3), info("c"), 2);
        assert_eq!((cache.entries.len(), cache.order.len()), (2, 2));
    }
}

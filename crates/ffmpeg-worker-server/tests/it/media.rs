//! Test media generated with ffmpeg's own lavfi sources, and its duration read back with
//! ffprobe. Shared by the server's and the client's integration tests (the client's include
//! this file by path).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Generates a clip with testsrc (video) + sine (audio) of `seconds` seconds at 25 fps.
pub fn make_clip(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", &format!("testsrc=duration={seconds}:size=160x120:rate=25")])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:duration={seconds}")])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "generating {name} failed");
    path
}

/// The duration of a media file in seconds, as ffprobe reads it.
pub fn ffprobe_duration(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe cannot read {}", path.display());
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

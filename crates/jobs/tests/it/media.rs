//! `jobs::media`: ffprobe on files of a data directory, against lavfi-generated media and
//! stand-ins that count their runs or hang.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ffmpeg_core::sandbox::Sandbox;
use jobs::media::{MediaProbeConfig, MediaProbeError, MediaProber};

use crate::fixture::{self, script, wait_gone};

fn ffmpeg(args: &[&str]) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg {args:?}");
}

/// One second of 160x120 testsrc at 25 fps (H.264) with a 44.1 kHz stereo sine (AAC) tagged
/// `eng`, in `dir/name`.
fn make_clip(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=1:size=160x120:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=duration=1:sample_rate=44100",
        "-ac",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-metadata:s:a:0",
        "language=eng",
        "-shortest",
        path.to_str().unwrap(),
    ]);
    path
}

/// A shell script standing in for ffprobe: appends a line to `dir/runs` per run, then `body`.
fn stand_in(dir: &Path, body: &str) -> PathBuf {
    script(dir, "fake-ffprobe", &format!("echo $$ >> {}\n{body}", dir.join("runs").display()))
}

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs")).map(|s| s.lines().count()).unwrap_or(0)
}

fn prober(binary: impl Into<PathBuf>) -> MediaProber {
    MediaProber::new(MediaProbeConfig { binary: binary.into(), ..MediaProbeConfig::default() })
}

#[tokio::test]
async fn a_clip_is_described_stream_by_stream() {
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("in")).unwrap();
    make_clip(&data.path().join("in"), "a b.mp4");
    let sandbox = Arc::new(Sandbox::new(data.path()).unwrap());
    let info = prober("ffprobe").probe(&sandbox, "in/a b.mp4").await.unwrap();
    assert_eq!(info.path, "in/a b.mp4");
    assert_eq!(info.format_name, "mov,mp4,m4a,3gp,3g2,mj2");
    assert_eq!(info.size_bytes, std::fs::metadata(data.path().join("in/a b.mp4")).unwrap().len());
    let duration = info.duration_seconds.unwrap();
    assert!((0.9..1.2).contains(&duration), "{duration}");
    assert!(info.bit_rate.unwrap() > 0);
    assert_eq!(info.streams.len(), 2);
    let video = &info.streams[0];
    assert_eq!((video.index, video.kind.as_str(), video.codec.as_deref()), (0, "video", Some("h264")));
    assert_eq!((video.width, video.height, video.pixel_format.as_deref()), (Some(160), Some(120), Some("yuv420p")));
    assert_eq!(video.frame_rate, Some(25.0));
    assert!(video.profile.is_some() && video.sample_rate.is_none() && video.language.is_none());
    let audio = &info.streams[1];
    assert_eq!((audio.index, audio.kind.as_str(), audio.codec.as_deref()), (1, "audio", Some("aac")));
    assert_eq!(
        (audio.sample_rate, audio.channels, audio.channel_layout.as_deref()),
        (Some(44100), Some(2), Some("stereo"))
    );
    assert_eq!(
        (audio.language.as_deref(), audio.profile.as_deref(), audio.frame_rate),
        (Some("eng"), Some("LC"), None)
    );
    assert!(audio.width.is_none() && audio.duration_seconds.is_some());
}

#[tokio::test]
async fn bad_paths_are_refused_before_ffprobe_runs() {
    let data = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    make_clip(outside.path(), "secret.mp4");
    std::os::unix::fs::symlink(outside.path().join("secret.mp4"), data.path().join("link.mp4")).unwrap();
    std::fs::create_dir(data.path().join("dir")).unwrap();
    let bin = tempfile::tempdir().unwrap();
    let prober = prober(stand_in(bin.path(), "exec /usr/bin/ffprobe \"$@\""));
    let sandbox = Arc::new(Sandbox::new(data.path()).unwrap());
    for (path, rule) in [
        ("../x.mp4", "path-escapes"),
        ("link.mp4", "path-escapes"),
        ("/etc/passwd", "absolute-path"),
        ("http://example.com/a.mp4", "protocol"),
        ("img%*.png", ""),
        ("dir", ""),
    ] {
        let err = prober.probe(&sandbox, path).await.unwrap_err();
        let MediaProbeError::Sandbox(e) = &err else { panic!("{path}: {err}") };
        assert!(rule.is_empty() || e.rule().as_str() == rule, "{path}: {} ({err})", e.rule().as_str());
    }
    let missing = prober.probe(&sandbox, "nope/a.mp4").await.unwrap_err();
    assert!(matches!(missing, MediaProbeError::NotFound(ref p) if p == "nope/a.mp4"), "{missing}");
    assert_eq!(runs(bin.path()), 0, "ffprobe never ran");
}

#[tokio::test]
async fn a_file_that_is_not_media_is_refused_with_ffprobes_reason() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("notes.txt"), "hello\n").unwrap();
    std::fs::write(data.path().join("empty.mp4"), "").unwrap();
    let sandbox = Arc::new(Sandbox::new(data.path()).unwrap());
    let prober = prober("ffprobe");
    for (path, reason) in [
        ("notes.txt", "Invalid data found when processing input"),
        ("empty.mp4", "Invalid data found when processing input"),
    ] {
        let err = prober.probe(&sandbox, path).await.unwrap_err();
        let MediaProbeError::NotMedia { path: p, reason: r } = &err else { panic!("{path}: {err}") };
        assert_eq!((p.as_str(), r.as_str()), (path, reason), "{err}");
        assert!(!err.to_string().contains(data.path().to_str().unwrap()), "no absolute path: {err}");
    }
}

#[tokio::test]
async fn answers_are_cached_until_the_file_changes() {
    let data = tempfile::tempdir().unwrap();
    let clip = make_clip(data.path(), "a.mp4");
    let bin = tempfile::tempdir().unwrap();
    let prober = prober(stand_in(bin.path(), "exec /usr/bin/ffprobe \"$@\""));
    let sandbox = Arc::new(Sandbox::new(data.path()).unwrap());
    let first = prober.probe(&sandbox, "a.mp4").await.unwrap();
    let again = prober.probe(&sandbox, "./a.mp4").await.unwrap();
    assert_eq!(runs(bin.path()), 1, "the second answer came from the cache");
    assert_eq!(first, again);

    // Another file under the same name (another size and time): probed again.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=2:size=320x240:rate=10",
        "-c:v",
        "mpeg4",
        "-f",
        "matroska",
        clip.to_str().unwrap(),
    ]);
    let changed = prober.probe(&sandbox, "a.mp4").await.unwrap();
    assert_eq!(runs(bin.path()), 2);
    assert_eq!(changed.format_name, "matroska,webm");
    assert_eq!((changed.streams.len(), changed.streams[0].width), (1, Some(320)));

    // Another file put in its place by a rename with the same size and modification time (as
    // `rsync -a` does; tester finding L14): probed again, not the old answer.
    let other = make_clip(data.path(), "b.mp4");
    let size = std::fs::metadata(&clip).unwrap().len().max(std::fs::metadata(&other).unwrap().len());
    let mtime = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    for file in [&clip, &other] {
        let handle = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        handle.set_len(size).unwrap();
        handle.set_modified(mtime).unwrap();
    }
    let before = prober.probe(&sandbox, "a.mp4").await.unwrap();
    assert_eq!(before.format_name, "matroska,webm");
    std::fs::rename(&other, &clip).unwrap();
    let replaced = prober.probe(&sandbox, "a.mp4").await.unwrap();
    assert_eq!(runs(bin.path()), 4, "the renamed file is probed again");
    assert_eq!(replaced.format_name, "mov,mp4,m4a,3gp,3g2,mj2", "{replaced:?}");
}

#[tokio::test]
async fn ffprobe_runs_with_an_empty_environment_and_the_whitelists() {
    let data = tempfile::tempdir().unwrap();
    make_clip(data.path(), "-part1.mp4");
    let bin = tempfile::tempdir().unwrap();
    let seen = bin.path().join("seen");
    let body =
        format!("env > {s}.env; printf '%s\\n' \"$@\" > {s}.args; exec /usr/bin/ffprobe \"$@\"", s = seen.display());
    let prober = prober(stand_in(bin.path(), &body));
    let sandbox = Arc::new(Sandbox::new(data.path()).unwrap());
    let info = prober.probe(&sandbox, "-part1.mp4").await.unwrap();
    assert_eq!(info.streams.len(), 2);
    let env = std::fs::read_to_string(seen.with_extension("env")).unwrap();
    assert!(!env.contains("HOME=") && !env.contains("CARGO"), "{env}");
    let args: Vec<String> =
        std::fs::read_to_string(seen.with_extension("args")).unwrap().lines().map(str::to_owned).collect();
    let root = sandbox.root().to_str().unwrap();
    let at = |flag: &str| args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} in {args:?}"));
    assert_eq!(args[at("-protocol_whitelist") + 1], "file");
    assert_eq!(args[at("-format_whitelist") + 1], sandbox.policy().input_format_whitelist());
    assert_eq!(args.last().unwrap(), &format!("file:{root}/-part1.mp4"));
    assert!(at("-protocol_whitelist") < at("-i") && at("-format_whitelist") < at("-i"));
}

#[tokio::test]
async fn a_hanging_ffprobe_is_killed_with_its_process_group() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("a.mp4"), "x").unwrap();
    let bin = tempfile::tempdir().unwrap();
    let child_pids = bin.path().join("children");
    // A child of the stand-in in its group: only a group kill stops it.
    let body = format!("/usr/bin/sleep 1000 & echo $! >> {}; exec /usr/bin/sleep 1000", child_pids.display());
    let prober = MediaProber::new(MediaProbeConfig {
        binary: stand_in(bin.path(), &body),
        timeout: Duration::from_millis(500),
        ..MediaProbeConfig::default()
    });
    let sandbox = Arc::new(Sandbox::new(data.path()).unwrap());
    let err = prober.probe(&sandbox, "a.mp4").await.unwrap_err();
    assert!(matches!(&err, MediaProbeError::Unavailable(m) if m.contains("did not finish within 0.5 s")), "{err}");
    let pids =
        std::fs::read_to_string(bin.path().join("runs")).unwrap() + &std::fs::read_to_string(&child_pids).unwrap();
    wait_gone(fixture::pids(&pids), Duration::from_secs(10)).await;
}

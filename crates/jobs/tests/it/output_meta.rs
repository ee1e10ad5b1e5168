//! Completed jobs describe each file they wrote (`Job::outputs`) from ffmpeg's own `Output #N`
//! listing, its final progress and the file system. Real ffmpeg, media from lavfi.

use std::path::Path;

use ffmpeg_core::sandbox::Sandbox;
use jobs::{Job, JobStatus};

use crate::fixture::{lavfi_clip, run_job};

/// `in.mp4`: 2 s of 160x120 testsrc at 25 fps (H.264) and a 44.1 kHz mono sine (AAC).
fn make_input(root: &Path) {
    lavfi_clip(&root.join("in.mp4"), 2);
}

/// Runs `command` as a job, which must complete with `outputs` naming its `output_files`.
async fn run(root: &Path, sandbox: Sandbox, command: &str) -> Job {
    let job = run_job(root, sandbox, command).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(job.outputs.iter().map(|o| o.path.clone()).collect::<Vec<_>>(), job.output_files);
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_output_gets_format_streams_size_and_duration() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let root = sandbox.root().to_owned();
    make_input(&root);
    let job = run(
        &root,
        sandbox,
        "-i in.mp4 -t 1 -c:v libx264 -preset ultrafast -r 10 -c:a aac -b:a 64k -ac 2 'out/a b.mkv'",
    )
    .await;
    let [out] = job.outputs.as_slice() else { panic!("{:?}", job.outputs) };
    assert_eq!(out.path, "out/a b.mkv");
    assert_eq!(out.size_bytes, std::fs::metadata(root.join("out/a b.mkv")).unwrap().len());
    assert_eq!(out.format.as_deref(), Some("matroska"));
    let duration = out.duration_seconds.unwrap();
    assert!((0.9..1.2).contains(&duration), "{duration}");
    let [video, audio] = out.streams.as_slice() else { panic!("{:?}", out.streams) };
    assert_eq!((video.kind.as_str(), video.codec.as_deref()), ("video", Some("h264")));
    assert_eq!((video.width, video.height, video.frame_rate), (Some(160), Some(120), Some(10.0)));
    assert_eq!(video.pixel_format.as_deref(), Some("yuv444p"));
    assert_eq!((audio.kind.as_str(), audio.codec.as_deref()), ("audio", Some("aac")));
    assert_eq!((audio.sample_rate, audio.channels, audio.bit_rate), (Some(44100), Some(2), Some(64_000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_outputs_image_sequences_and_hls_segments() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let root = sandbox.root().to_owned();
    make_input(&root);
    let job = run(
        &root,
        sandbox,
        "-i in.mp4 -map 0:a -c:a libmp3lame -b:a 96k out/a.mp3 -map 0:v -vf fps=1 -frames:v 2 out/t%02d.png \
         -map 0 -c:v libx264 -preset ultrafast -c:a aac -f hls -hls_time 1 -hls_list_size 0 out/hls/index.m3u8",
    )
    .await;
    let by_path =
        |p: &str| job.outputs.iter().find(|o| o.path == p).unwrap_or_else(|| panic!("{p}: {:?}", job.outputs));
    let mp3 = by_path("out/a.mp3");
    assert_eq!((mp3.format.as_deref(), mp3.duration_seconds), (Some("mp3"), None), "several outputs: no duration");
    assert_eq!(mp3.streams.len(), 1);
    assert_eq!((mp3.streams[0].codec.as_deref(), mp3.streams[0].bit_rate), (Some("mp3"), Some(96_000)));
    for frame in ["out/t01.png", "out/t02.png"] {
        let png = by_path(frame);
        assert_eq!(png.format.as_deref(), Some("image2"));
        assert_eq!((png.streams[0].codec.as_deref(), png.streams[0].width), (Some("png"), Some(160)));
        assert!(png.size_bytes > 0);
    }
    let playlist = by_path("out/hls/index.m3u8");
    assert_eq!(playlist.format.as_deref(), Some("hls"));
    assert_eq!(playlist.streams.iter().map(|s| s.kind.as_str()).collect::<Vec<_>>(), ["video", "audio"]);
    let segments: Vec<_> = job.outputs.iter().filter(|o| o.path.ends_with(".ts")).collect();
    assert!(!segments.is_empty(), "{:?}", job.outputs);
    for segment in segments {
        assert!(segment.format.is_none() && segment.streams.is_empty() && segment.duration_seconds.is_none());
        assert_eq!(segment.size_bytes, std::fs::metadata(root.join(&segment.path)).unwrap().len());
    }
}

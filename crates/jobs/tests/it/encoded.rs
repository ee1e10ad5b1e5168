//! Runs that ffmpeg ends with exit status 0 having encoded nothing fail, with an error that
//! says so; legitimate outputs without video (audio only, subtitles, `ffmetadata`) complete.
//! Real ffmpeg, media from lavfi.

use std::path::Path;

use ffmpeg_core::sandbox::Sandbox;
use jobs::JobStatus;

use crate::fixture::{lavfi_clip, run_jobs};
use crate::full_disk::fill;
use crate::tmpfs::Tmpfs;

/// `two.mp4` (2 s, 160x120 testsrc at 25 fps, H.264, with a sine AAC track) and `subs.srt`
/// in `root`.
fn make_inputs(root: &Path) {
    lavfi_clip(&root.join("two.mp4"), 2);
    std::fs::write(root.join("subs.srt"), "1\n00:00:00,000 --> 00:00:01,000\nhello\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_encodes_nothing_fails_and_leaves_no_empty_output() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let root = sandbox.root().to_owned();
    make_inputs(&root);
    std::fs::create_dir(root.join("old")).unwrap();
    std::fs::write(root.join("old/t.jpg"), "an older thumbnail").unwrap();
    let commands = [
        // No file at all (image2 writes on the first packet).
        "-ss 10 -i two.mp4 -frames:v 1 out/t.jpg",
        // A 262-byte mp4 holding no streams; audio is encoded too, so ffmpeg does not warn.
        "-ss 10 -i two.mp4 -c:v libx264 -preset ultrafast out/e.mp4",
        // Audio only, nothing of it.
        "-ss 10 -i two.mp4 -vn -c:a aac out/a.m4a",
        // Discarded output: the final progress still shows that nothing went through.
        "-ss 10 -i two.mp4 -f null -",
        // Two outputs; the second gets nothing (output-side -ss past the end).
        "-i two.mp4 -frames:v 1 out/first.jpg -ss 10 -frames:v 1 out/second.jpg",
        // An older file of that name is not a result of this run, and stays.
        "-ss 10 -i two.mp4 -frames:v 1 old/t.jpg",
        // Streams copied: ffmpeg copies every packet with a timestamp before 0 (a file with
        // 50 frames that lasts 0 s); its final report shows a negative time.
        "-ss 10 -i two.mp4 -c copy out/c.mp4",
        "-ss 10 -i two.mp4 -an -c:v copy out/c.mkv",
        "-ss 10 -i two.mp4 -vn -c:a copy out/c.m4a",
        "-loglevel repeat+level+error -stats -ss 10 -i two.mp4 -c copy out/q.mp4",
    ];
    let jobs = run_jobs(&root, sandbox, &commands).await;
    for (job, command) in jobs.iter().zip(commands) {
        assert_eq!(job.status, JobStatus::Failed, "{command}: {job:?}");
        let error = job.error.as_deref().unwrap();
        assert!(error.contains("nothing") && error.contains("-ss"), "{command}: {error}");
        assert!(job.output_files.is_empty(), "{command}: {job:?}");
    }
    assert!(jobs[0].error.as_deref().unwrap().starts_with("output `out/t.jpg` was not written"), "{jobs:?}");
    assert!(jobs[4].error.as_deref().unwrap().starts_with("output `out/second.jpg` was not written"), "{jobs:?}");
    for gone in [
        "out/t.jpg",
        "out/e.mp4",
        "out/a.m4a",
        "out/first.jpg",
        "out/second.jpg",
        "out/c.mp4",
        "out/c.mkv",
        "out/c.m4a",
        "out/q.mp4",
    ] {
        assert!(!root.join(gone).exists(), "{gone} is removed");
    }
    assert_eq!(std::fs::read_to_string(root.join("old/t.jpg")).unwrap(), "an older thumbnail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_without_video_frames_that_got_packets_complete() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let root = sandbox.root().to_owned();
    make_inputs(&root);
    let commands = [
        ("-i two.mp4 -vn -c:a aac out/a.m4a", vec!["out/a.m4a"]),
        ("-i two.mp4 -vn -c:a copy out/copy.m4a", vec!["out/copy.m4a"]),
        ("-i subs.srt out/subs.vtt", vec!["out/subs.vtt"]),
        // No streams at all by design: the input's metadata.
        ("-i two.mp4 -f ffmetadata out/meta.txt", vec!["out/meta.txt"]),
        ("-i two.mp4 out/meta.ffmeta", vec!["out/meta.ffmeta"]),
        ("-i two.mp4 -frames:v 1 out/one.jpg", vec!["out/one.jpg"]),
        ("-ss 1 -i two.mp4 -an -f null -", vec![]),
        // Copied from a point inside the input: the packets before it (back to the key frame)
        // lie before 0, the rest after.
        ("-ss 1 -i two.mp4 -c copy out/c1.mp4", vec!["out/c1.mp4"]),
        ("-ss 1.9 -i two.mp4 -vn -c:a copy out/c19.m4a", vec!["out/c19.m4a"]),
    ];
    let list: Vec<&str> = commands.iter().map(|(c, _)| *c).collect();
    let jobs = run_jobs(&root, sandbox, &list).await;
    for (job, (command, files)) in jobs.iter().zip(&commands) {
        assert_eq!(job.status, JobStatus::Completed, "{command}: {job:?}");
        assert_eq!(&job.output_files, files, "{command}");
    }
}

/// ffmpeg 5.1 exits 0 when the disk fills before it has written an output's trailer ("Error
/// writing trailer of X: No space left on device"): an mp4 without its index. Such a run
/// fails naming the output and the reason, and its file is removed (tester finding K6: the job
/// was `completed`, listing the broken file). Muxers that drop their write errors (`hls`,
/// `segment`) fail the run too: the disk was seen nearly full while it ran.
/// On a 2 MB tmpfs (as root, as in CI), filled to 2 free pages before each job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_left_unfinished_on_a_full_disk_fails_its_job() {
    let Some(fs) = Tmpfs::mount("2m", "an_output_left_unfinished_on_a_full_disk_fails_its_job") else { return };
    let sandbox = Sandbox::new(fs.path()).unwrap();
    let root = sandbox.root().to_owned();
    lavfi_clip(&root.join("four.mp4"), 4);
    std::fs::create_dir_all(root.join("out/h")).unwrap();
    let leave_two_pages = || {
        let filler = root.join("filler");
        let _ = std::fs::remove_file(&filler);
        let size = fill(&filler);
        std::fs::OpenOptions::new().write(true).open(&filler).unwrap().set_len(size - 8192).unwrap();
    };
    leave_two_pages();
    let copy = run_jobs(&root, sandbox.clone(), &["-i four.mp4 -c copy out/o.mp4"]).await.remove(0);
    assert_eq!(copy.status, JobStatus::Failed, "{copy:?}");
    let error = copy.error.clone().unwrap();
    assert!(error.contains("could not finish an output"), "{error}");
    assert!(error.contains("Error writing trailer of out/o.mp4: No space left on device"), "{error}");
    assert!(copy.output_files.is_empty(), "{copy:?}");
    assert!(!root.join("out/o.mp4").exists(), "the unfinished file is removed");

    leave_two_pages();
    let hls = "-i four.mp4 -c copy -f hls -hls_time 1 -hls_list_size 0 out/h/i.m3u8";
    let hls = run_jobs(&root, sandbox.clone(), &[hls]).await.remove(0);
    assert_eq!(hls.status, JobStatus::Failed, "{hls:?}");
    let error = hls.error.clone().unwrap();
    assert!(
        error.starts_with("the disk filled up during the run: the file system holding `out/h` had only"),
        "{error}"
    );
    assert!(error.contains("KiB free; ffmpeg exited normally, but its outputs may be incomplete"), "{error}");
    assert!(hls.output_files.is_empty() && !root.join("out/h/i0.ts").exists(), "{hls:?}");

    // A disk that is low but has room for the run's files fails nothing (tester finding L18:
    // a 30 KB output with 464 KiB free was failed as "the disk filled up").
    let filler = root.join("filler");
    std::fs::remove_file(&filler).unwrap();
    let size = fill(&filler);
    std::fs::OpenOptions::new().write(true).open(&filler).unwrap().set_len(size - 512 * 1024).unwrap();
    let small = run_jobs(&root, sandbox.clone(), &["-i four.mp4 -t 0.5 -c copy out/small.mp4"]).await.remove(0);
    assert_eq!(small.status, JobStatus::Completed, "{small:?}");

    // Deleting old segments frees the room the last playlist needs: a complete-looking
    // playlist of truncated segments, and ffmpeg says nothing (tester finding L16: completed).
    leave_two_pages();
    let deleting = "-i four.mp4 -c copy -f hls -hls_time 1 -hls_list_size 2 -hls_flags delete_segments out/d/p.m3u8";
    let deleting = run_jobs(&root, sandbox.clone(), &[deleting]).await.remove(0);
    assert_eq!(deleting.status, JobStatus::Failed, "{deleting:?}");
    assert!(deleting.error.as_deref().unwrap().starts_with("the disk filled up during the run"), "{deleting:?}");
    assert!(!root.join("out/d/p.m3u8").exists(), "{deleting:?}");

    // The segment muxer goes on after a segment it could not end, and ffmpeg exits 0 with a
    // truncated segment, an empty one and an empty list (tester finding L4: `completed`).
    leave_two_pages();
    let segment = "-i four.mp4 -c copy -f segment -segment_time 1 -segment_list out/s/list.m3u8 out/s/s%03d.ts";
    let segment = run_jobs(&root, sandbox, &[segment]).await.remove(0);
    assert_eq!(segment.status, JobStatus::Failed, "{segment:?}");
    let error = segment.error.clone().unwrap();
    assert!(error.contains("could not finish an output") || error.contains("the disk filled up"), "{error}");
    assert!(segment.output_files.is_empty(), "{segment:?}");
    let left: Vec<_> =
        std::fs::read_dir(root.join("out/s")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "the run's files are removed: {left:?}");
}

/// Lines that ffmpeg prints from data (here a frame metadata value with a newline, which
/// `metadata=mode=print` logs at `info`, its continuation line without a prefix) never fail a
/// job, even when they read exactly like ffmpeg's own "could not finish" errors for this very
/// output (tester finding L3: the job was failed and its complete output removed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_that_reads_like_an_unfinished_output_does_not_fail_a_job() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let root = sandbox.root().to_owned();
    make_inputs(&root);
    // ffmpeg unescapes a filter's option value twice (the graph, then the option): `\\:`.
    let url = format!("file\\\\:{}/out/m.mp4", root.display());
    let lines = [
        format!("Error writing trailer of {url}\\\\: No space left on device"),
        format!("Error closing file {url}\\\\: Input/output error"),
        "av_interleaved_write_frame()\\\\: No space left on device".to_owned(),
        "Error writing trailer of x".to_owned(),
    ];
    let filters: Vec<String> =
        lines.iter().map(|line| format!("metadata=mode=add:key=k:value=a\n{line},metadata=mode=print")).collect();
    let command = format!("-i two.mp4 -t 0.2 -an -vf '{}' out/m.mp4", filters.join(","));
    let job = run_jobs(&root, sandbox, &[&command]).await.remove(0);
    assert_eq!(job.status, JobStatus::Completed, "{command}: {job:?}");
    assert_eq!(job.output_files, ["out/m.mp4"], "{job:?}");
    assert!(root.join("out/m.mp4").metadata().unwrap().len() > 0);
}

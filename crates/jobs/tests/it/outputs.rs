//! Which files a run owns: the snapshot rule on a real directory, and real ffmpeg runs that
//! fail beside other writers' files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ffmpeg_core::command::Command;
use ffmpeg_core::footprint::Footprint;
use ffmpeg_core::sandbox::Sandbox;
use jobs::outputs::{self, Snapshot};
use jobs::{JobStatus, SubmitOptions};

use crate::fixture::{Workers, finished_by};

fn write(root: &Path, path: &str, content: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn exists(root: &Path, path: &str) -> bool {
    root.join(path).exists()
}

#[test]
fn a_run_owns_what_it_named_or_ffmpeg_derives_and_it_created_or_changed() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let root = sandbox.root().to_owned();
    let command = "-i in.mp4 -c:v libx264 -pass 1 -passlogfile logs/x -f hls -hls_segment_filename hls/s%03d.ts \
                   hls/top.m3u8 -map 0 out/a.mp4 -map 0 out/kept.mp4 \
                   -map 0 -c:v libx265 -x265-params csv=logs/old.csv out/h.mp4 \
                   -map 0 -c:v libx265 -x265-params csv=logs/new.csv out/h2.mp4 -f hls -map 0 seg/p.m3u8";
    let resolved = sandbox.resolve_command(&Command::parse(command).unwrap()).unwrap();
    let footprint = Footprint::of(&resolved);

    // Before the run: an earlier pass's logs, segments of an earlier run, outputs, a csv the
    // run appends to, other files.
    for path in [
        "logs/x-0.log",
        "logs/x-2.log",
        "logs/x-notes.txt",
        "logs/old.csv",
        "hls/s001.ts",
        "hls/s002.ts",
        "hls/top0.ts",
        "seg/p0.ts",
        "seg/p1.ts",
        "seg/p2.ts",
        "out/a.mp4",
        "out/kept.mp4",
        "out/a.mp4.bak",
    ] {
        write(&root, path, "before");
    }
    let before = Snapshot::take(&root, &footprint);
    // The snapshot keeps only what the footprint covers.
    assert!(before.stamp(Path::new("logs"), "x-0.log").is_some());
    assert!(before.stamp(Path::new("logs"), "x-notes.txt").is_none());

    // The run, and other writers beside it.
    write(&root, "logs/x-0.log", "rewritten by the run: derived, and changed, so the run's");
    write(&root, "logs/x-1.log", "new pass log");
    write(&root, "logs/x-1.log.mbtree.temp", "new x264 temp file");
    write(&root, "logs/x2.mp4", "another writer's file (issue 12)");
    write(&root, "logs/old.csv", "before, and what the run appended: not the run's");
    write(&root, "logs/new.csv", "a csv the run created");
    write(&root, "hls/s002.ts", "overwritten segment, named by the command's pattern");
    write(&root, "hls/s003.ts", "new segment");
    write(&root, "hls/top.m3u8", "new playlist");
    write(&root, "hls/notes.txt", "another writer's file");
    // A second run of an HLS command rewrites the segments it reaches under the same names
    // (tester finding L19: only the playlist was listed); an earlier run's later one stays.
    write(&root, "seg/p0.ts", "rewritten segment, named by the muxer");
    write(&root, "seg/p1.ts", "rewritten segment, named by the muxer");
    write(&root, "seg/p.m3u8", "new playlist");
    write(&root, "out/a.mp4", "overwritten output");
    write(&root, "out/a.mp4.tmp", "new temp file");

    let ours: Vec<PathBuf> = [
        "hls/s002.ts",
        "hls/s003.ts",
        "hls/top.m3u8",
        "logs/new.csv",
        "logs/x-0.log",
        "logs/x-1.log",
        "logs/x-1.log.mbtree.temp",
        "out/a.mp4",
        "out/a.mp4.tmp",
        "seg/p.m3u8",
        "seg/p0.ts",
        "seg/p1.ts",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(outputs::run_files(&root, &footprint, &before), ours);

    // Failure removes exactly those, and nothing else.
    assert_eq!(outputs::remove_run_files(&root, &footprint, &before), ours);
    for path in &ours {
        assert!(!root.join(path).exists(), "{} removed", path.display());
    }
    for path in [
        "logs/x-2.log",
        "logs/x-notes.txt",
        "logs/x2.mp4",
        "logs/old.csv",
        "hls/s001.ts",
        "hls/top0.ts",
        "hls/notes.txt",
        "seg/p2.ts",
        "out/kept.mp4",
        "out/a.mp4.bak",
    ] {
        assert!(exists(&root, path), "{path} kept");
    }
}

#[test]
fn snapshots_survive_serialisation() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    write(sandbox.root(), "o/a.mp4", "x");
    let resolved = sandbox.resolve_command(&Command::parse("-i in.mp4 o/a.mp4").unwrap()).unwrap();
    let before = Snapshot::take(sandbox.root(), &Footprint::of(&resolved));
    let text = serde_json::to_string(&before).unwrap();
    assert_eq!(serde_json::from_str::<Snapshot>(&text).unwrap(), before);
}

/// A real two-pass run that times out while another writer adds files sharing its prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pass_log_job_removes_its_own_files_and_no_one_elses() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let root = sandbox.root().to_owned();
    write(&root, "out/a.mp4", "an older result, overwritten by the job");
    write(&root, "logs/x-notes.txt", "someone's notes");
    let Workers { jobs, store, shutdown, workers: _workers } = Workers::start(&root, sandbox, 1);

    let command = "-re -f lavfi -i testsrc=duration=60:size=160x120:rate=25 -c:v libx264 -preset ultrafast \
                   -pass 1 -passlogfile logs/x -f mp4 out/a.mp4";
    let options = SubmitOptions { timeout_seconds: Some(3), ..SubmitOptions::default() };
    let job = jobs.submit(command, options).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.get(&job.id).await.unwrap().unwrap().progress.is_none() {
        assert!(Instant::now() < deadline, "the job never reported progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // x264 writes its statistics as `x-0.log.temp` (and `.mbtree.temp`) while it runs.
    let pass_log_written = || {
        std::fs::read_dir(root.join("logs"))
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with("x-0.log"))
    };
    while !pass_log_written() {
        assert!(Instant::now() < deadline, "the job never wrote its pass log");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write(&root, "logs/x2.mp4", "another writer's file, written while the job runs");
    let job = finished_by(&store, &job.id, deadline).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert!(!exists(&root, "out/a.mp4"), "the overwritten output is removed");
    let left: Vec<String> =
        std::fs::read_dir(root.join("logs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["x-notes.txt", "x2.mp4"], "pass logs removed, other files kept");
    shutdown.stop_claiming.cancel();
}

/// A link in `root` at `link` leading to `target` (parents created).
fn link(root: &Path, link: &str, target: &Path) {
    let link = root.join(link);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[test]
fn a_link_where_the_run_may_write_is_refused_whatever_writes_there() {
    let outside = tempfile::tempdir().unwrap();
    // (command, link made before the run, what the link must be reported as)
    let cases = [
        ("-i in.mp4 out/img_%03d.png", "out/img_001.png", "an image sequence's frame"),
        ("-i in.mp4 -f hls -hls_segment_filename hls/seg%03d.ts hls/i.m3u8", "hls/seg000.ts", "a named segment"),
        ("-i in.mp4 -f hls hls/i.m3u8", "hls/i3.ts", "a segment named by the muxer"),
        ("-i in.mp4 -f hls hls/i.m3u8", "hls/i.m3u8.tmp", "a playlist's temporary file"),
        ("-i in.mp4 -f dash dash/m.mpd", "dash/chunk-stream0-00001.m4s", "a DASH chunk"),
        ("-i in.mp4 -f segment -segment_list out/l.csv out/s%02d.ts", "out/s07.ts", "a segment muxer's file"),
        ("-i in.mp4 -c:v libx264 -pass 1 -passlogfile logs/x -f null -", "logs/x-0.log.temp", "a pass log"),
        (
            "-i in.mp4 -map 0:v -map 0:v -f hls -var_stream_map 'v:0 v:1' hls/%v/i.m3u8",
            "hls/1",
            "a variant stream's directory",
        ),
    ];
    for (command, at, what) in cases {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(dir.path()).unwrap();
        let root = sandbox.root().to_owned();
        let footprint = Footprint::of(&sandbox.resolve_command(&Command::parse(command).unwrap()).unwrap());
        assert_eq!(outputs::refuse_links(&root, &footprint), Ok(()), "{what}: nothing in the way yet");
        // Leading out, or leading to another place inside: both are refused.
        for target in [outside.path().join("x"), root.join("elsewhere")] {
            link(&root, at, &target);
            let refused = outputs::refuse_links(&root, &footprint).expect_err(what);
            assert_eq!(refused.path, PathBuf::from(at), "{what}");
            assert_eq!(refused.target, target, "{what}");
            assert!(refused.to_string().contains(&format!("`{at}` is a symbolic link")), "{refused}");
            assert!(!refused.to_string().contains(&target.display().to_string()), "{refused}");
            std::fs::remove_file(root.join(at)).unwrap();
        }
        // A link the run does not write through is none of its business.
        let beside = Path::new(at).parent().unwrap().join("notes.txt");
        link(&root, beside.to_str().unwrap(), &outside.path().join("notes.txt"));
        assert_eq!(outputs::refuse_links(&root, &footprint), Ok(()), "{what}: a link beside the outputs");
    }
}

/// Real runs: an image sequence and HLS segments with an operator-made link among the names
/// ffmpeg would write fail before ffmpeg starts, writing nothing through the link (they used to
/// write the file the link leads to, out of the data directory, and leave it out of
/// `output_files`); the same commands without the link complete (tester finding F6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_never_write_through_a_link_out_of_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let root = sandbox.root().to_owned();
    let Workers { jobs, store, shutdown, workers: _workers } = Workers::start(&root, sandbox, 2);

    let source = "-f lavfi -i testsrc=duration=1:size=64x48:rate=5";
    let images = format!("{source} out/img_%03d.png");
    let hls = format!(
        "{source} -c:v libx264 -preset ultrafast -g 5 -f hls -hls_time 1 -hls_segment_filename hlsx/seg%03d.ts \
         hlsx/i.m3u8"
    );
    link(&root, "out/img_001.png", &outside.path().join("img.png"));
    link(&root, "hlsx/seg000.ts", &outside.path().join("seg.ts"));

    let run = |command: String| {
        let jobs = Arc::clone(&jobs);
        let store = Arc::clone(&store);
        async move {
            let id = jobs.submit(&command, SubmitOptions::default()).await.unwrap().id;
            let deadline = Instant::now() + Duration::from_secs(60);
            finished_by(&store, &id, deadline).await
        }
    };
    for (command, at) in [(&images, "out/img_001.png"), (&hls, "hlsx/seg000.ts")] {
        let job = run(command.clone()).await;
        assert_eq!(job.status, JobStatus::Failed, "{job:?}");
        let error = job.error.unwrap_or_default();
        assert!(error.contains(&format!("`{at}` is a symbolic link")), "{error}");
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written out of the data directory");

    // Without the links the same commands complete, and list what they wrote.
    for at in ["out/img_001.png", "hlsx/seg000.ts"] {
        std::fs::remove_file(root.join(at)).unwrap();
    }
    for (command, listed) in [(&images, "out/img_001.png"), (&hls, "hlsx/seg000.ts")] {
        let job = run(command.clone()).await;
        assert_eq!(job.status, JobStatus::Completed, "{job:?}");
        assert!(job.output_files.iter().any(|f| f == listed), "{listed} in {:?}", job.output_files);
    }
    shutdown.stop_claiming.cancel();
}

/// Real runs in a data directory: the same HLS command run again (`-y`, its outputs there)
/// lists every file it wrote, its segments included, as the first run did, in `output_files`
/// and in `outputs` (tester finding L19: the second run listed only its playlist). A shorter
/// run over the same names lists only what it rewrote, not the longer run's later segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_lists_the_segments_it_rewrote_as_the_first_did() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let root = sandbox.root().to_owned();
    let Workers { jobs, store, shutdown, workers: _workers } = Workers::start(&root, sandbox, 1);
    let run = |seconds: u32| {
        let (jobs, store) = (Arc::clone(&jobs), Arc::clone(&store));
        async move {
            let command = format!(
                "-y -f lavfi -i testsrc=duration={seconds}:size=64x48:rate=10 -c:v libx264 -preset ultrafast -g 5 \
                 -f hls -hls_time 0.5 -hls_list_size 0 hls/p.m3u8"
            );
            let id = jobs.submit(&command, SubmitOptions::default()).await.unwrap().id;
            let job = finished_by(&store, &id, Instant::now() + Duration::from_secs(60)).await;
            assert_eq!(job.status, JobStatus::Completed, "{job:?}");
            let described: Vec<String> = job.outputs.iter().map(|o| o.path.clone()).collect();
            assert_eq!(described, job.output_files, "`outputs` describes the files listed");
            job.output_files
        }
    };
    let on_disk = || {
        let mut names: Vec<String> = std::fs::read_dir(root.join("hls"))
            .unwrap()
            .map(|e| format!("hls/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        names.sort();
        names
    };
    let first = run(2).await;
    assert!(first.len() > 2, "a playlist and its segments: {first:?}");
    assert_eq!(first, on_disk());
    let second = run(2).await;
    assert_eq!(second, first, "the second run rewrote every file the first wrote");
    // Half as long: the segments it rewrote and its playlist; the longer runs' later segments
    // stay on disk, not listed (a first run would not list them either).
    let shorter = run(1).await;
    assert!(shorter.len() > 1 && shorter.len() < first.len(), "{shorter:?} against {first:?}");
    assert!(shorter.iter().all(|f| first.contains(f)), "{shorter:?}");
    let playlist = std::fs::read_to_string(root.join("hls/p.m3u8")).unwrap();
    for segment in &shorter {
        if segment.ends_with(".ts") {
            let name = segment.strip_prefix("hls/").unwrap();
            assert!(playlist.contains(name), "{name} listed and in the playlist: {playlist}");
        }
    }
    assert_eq!(on_disk(), first, "nothing removed");
    shutdown.stop_claiming.cancel();
}

/// In a data directory, a pass-log prefix that names a directory (tester finding L13: refused
/// at submit): both passes run, the logs are written beside the directory and listed, and the
/// directory's files stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_logs_go_beside_a_directory_named_like_their_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let root = sandbox.root().to_owned();
    write(&root, "logs/two/notes.txt", "a file below the prefix");
    let Workers { jobs, store, shutdown, workers: _workers } = Workers::start(&root, sandbox, 1);
    let source = "-f lavfi -i testsrc=duration=1:size=64x48:rate=10 -c:v libx264 -preset ultrafast -b:v 100k";
    for (pass, output, listed) in [
        // `-preset ultrafast` turns x264's macroblock tree off: no `.mbtree`.
        (1, "-f null -", vec!["logs/two-0.log"]),
        (2, "o.mp4", vec!["o.mp4"]),
    ] {
        let command = format!("{source} -pass {pass} -passlogfile logs/two {output}");
        let id = jobs.submit(&command, SubmitOptions::default()).await.unwrap().id;
        let job = finished_by(&store, &id, Instant::now() + Duration::from_secs(60)).await;
        assert_eq!(job.status, JobStatus::Completed, "pass {pass}: {job:?}");
        assert_eq!(job.output_files, listed, "pass {pass}");
    }
    assert_eq!(std::fs::read_to_string(root.join("logs/two/notes.txt")).unwrap(), "a file below the prefix");
    shutdown.stop_claiming.cancel();
}

/// Runs `command` as a job; `stop` is called once `ready` holds (to cancel it), then waits for
/// the job to finish.
async fn run_until_finished(
    root: &Path,
    sandbox: Sandbox,
    command: &str,
    ready: impl Fn() -> bool,
    cancel: bool,
) -> jobs::Job {
    let Workers { jobs, store, shutdown, workers: _workers } = Workers::start(root, sandbox, 1);
    let job = jobs.submit(command, SubmitOptions::default()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    if cancel {
        while !ready() {
            assert!(Instant::now() < deadline, "{command}: never ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        jobs.cancel(&job.id).await.unwrap();
    }
    let job = finished_by(&store, &job.id, deadline).await;
    shutdown.stop_claiming.cancel();
    job
}

/// A cancelled HLS job with variant streams (`%v`) leaves none of the directories it created
/// (the playlist's parent, created before the run, and the muxer's `hls/0`, `hls/1`); a failed
/// job leaves none of the output directories created for it, but a directory that existed
/// before, or that holds another writer's file, stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_cancelled_jobs_remove_the_empty_directories_they_created() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let root = sandbox.root().to_owned();
    write(&root, "kept/.placeholder", "");
    std::fs::remove_file(root.join("kept/.placeholder")).unwrap();

    let hls = "-re -f lavfi -i testsrc=duration=60:size=160x120:rate=25 -map 0:v -map 0:v -c:v libx264 \
               -preset ultrafast -b:v:0 300k -b:v:1 100k -f hls -var_stream_map 'v:0 v:1' \
               -master_pl_name master.m3u8 -hls_segment_filename new/hls/%v/seg%03d.ts new/hls/%v/index.m3u8";
    let variant_dir = root.join("new/hls/1");
    let job = run_until_finished(&root, sandbox.clone(), hls, || variant_dir.is_dir(), true).await;
    assert_eq!(job.status, JobStatus::Cancelled, "{job:?}");
    assert!(!exists(&root, "new"), "every directory the job created is removed");

    let failed = "-i missing.mp4 -c copy new/deep/out.mp4 kept/k.mp4 other/o.mp4";
    write(&root, "other/.keep", "");
    std::fs::remove_file(root.join("other/.keep")).unwrap();
    let job = run_until_finished(&root, sandbox.clone(), failed, || true, false).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert!(!exists(&root, "new"), "created for the job, empty: removed");
    assert!(exists(&root, "kept") && exists(&root, "other"), "existed before: kept");

    // Another writer's file in a directory created for the job keeps it.
    let slow = "-re -f lavfi -i testsrc=duration=60:size=160x120:rate=25 -c:v libx264 -preset ultrafast \
                -f hls -hls_segment_filename shared/seg%03d.ts shared/index.m3u8";
    let segment = root.join("shared/seg000.ts");
    let root2 = root.clone();
    let job = run_until_finished(
        &root,
        sandbox,
        slow,
        || {
            let ready = segment.is_file();
            if ready {
                std::fs::write(root2.join("shared/notes.txt"), "another writer").unwrap();
            }
            ready
        },
        true,
    )
    .await;
    assert_eq!(job.status, JobStatus::Cancelled, "{job:?}");
    let left: Vec<String> = std::fs::read_dir(root.join("shared"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["notes.txt"]);
}

/// Tester finding G18 (addendum): a failed `-strftime 1` image job whose name holds a dated
/// directory (`snap/%Y/...`, which image2 does not create) leaves no literal `snap/%Y/` nor
/// `snap/`; a directory named with `%` where it means nothing (an MP4 output `lit%d/`, which
/// the job does need) is removed with the job's other directories when it fails; a directory
/// that existed before stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_leave_no_directory_named_after_a_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let root = sandbox.root().to_owned();
    std::fs::create_dir(root.join("pre")).unwrap();

    let snap = "-f lavfi -i testsrc=duration=1:size=64x48:rate=1 -strftime 1 snap/%Y/%H%M%S.jpg pre/%Y/%H%M%S.jpg";
    let job = run_until_finished(&root, sandbox.clone(), snap, || true, false).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert!(job.error.as_deref().is_some_and(|e| e.contains("Could not open file")), "{job:?}");
    assert!(!exists(&root, "snap"), "no `snap/%Y/` made for the job, nor left");
    assert!(exists(&root, "pre") && !exists(&root, "pre/%Y"), "existed before: kept, and nothing made inside");

    let literal = "-i missing.mp4 -c copy lit%d/deep/out.mp4";
    let job = run_until_finished(&root, sandbox, literal, || true, false).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert!(!exists(&root, "lit%d"), "created for the job (under its literal name), empty: removed");
}

#[test]
fn directories_in_use_are_those_another_job_writes_into() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let footprint = |line: &str| Footprint::of(&sandbox.resolve_command(&Command::parse(line).unwrap()).unwrap());
    let out = footprint("-i in.mp4 a/b/out.mp4");
    assert!(outputs::writes_into(Some(&out), Path::new("a")));
    assert!(outputs::writes_into(Some(&out), Path::new("a/b")));
    assert!(!outputs::writes_into(Some(&out), Path::new("a/c")));
    assert!(!outputs::writes_into(Some(&out), Path::new("b")));
    assert!(outputs::writes_into(None, Path::new("b")), "unknown footprint: anywhere");
    let hls = footprint("-i in.mp4 -map 0:v -map 0:v -f hls -var_stream_map 'v:0 v:1' h/%v/i.m3u8");
    assert!(outputs::writes_into(Some(&hls), Path::new("h/1")));
    assert!(outputs::writes_into(Some(&hls), Path::new("h")));
    assert!(!outputs::writes_into(Some(&hls), Path::new("h/2/x")));
}

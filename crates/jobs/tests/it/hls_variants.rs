//! HLS variant streams (`%v` in directory and file names) run as jobs write what a plain
//! ffmpeg 5.1 run in an ordinary directory writes, list every file, create no literal `%v`
//! directory, and a failed run removes exactly its own files (issue 8 point 6); a rolling
//! window deletes its old segments as plain ffmpeg does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ffmpeg_core::command::Command;
use ffmpeg_core::sandbox::Sandbox;
use jobs::store::JobStore;
use jobs::{Job, JobStatus, Jobs, Shutdown, SubmitOptions};

use crate::fixture::{Workers, finished_by};

/// `in.mp4` in `dir`: `seconds` of 160x120 testsrc at 25 fps (keyframe every second) with a
/// sine track.
fn make_input(dir: &Path, seconds: u32) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=duration={seconds}:size=160x120:rate=25"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=duration={seconds}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac"])
        .arg(dir.join("in.mp4"))
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every file below `dir` (relative, sorted), `in.mp4` and `skip` left out.
fn tree(dir: &Path, skip: &[&str]) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.retain(|p| p != "in.mp4" && !skip.contains(&p.as_str()));
    out.sort();
    out
}

/// Digits masked (strftime names differ between two runs).
fn masked(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = names
        .iter()
        .map(|n| {
            let mut s = String::new();
            for c in n.chars() {
                if c.is_ascii_digit() {
                    if !s.ends_with('#') {
                        s.push('#');
                    }
                } else {
                    s.push(c);
                }
            }
            s
        })
        .collect();
    out.sort();
    out
}

/// Runs `command` with plain ffmpeg in `dir`, as a user would in a shell.
fn plain_ffmpeg(dir: &Path, command: &str) {
    let args = Command::parse(command).unwrap().to_args();
    let output = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-y", "-v", "error"])
        .args(&args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

struct Service {
    _dir: tempfile::TempDir,
    root: PathBuf,
    jobs: Arc<Jobs>,
    store: Arc<dyn JobStore>,
    shutdown: Shutdown,
    _workers: tokio::task::JoinSet<()>,
}

fn service(seconds: u32) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let root = sandbox.root().to_owned();
    make_input(&root, seconds);
    let Workers { jobs, store, shutdown, workers } = Workers::start(&root, sandbox, 1);
    Service { _dir: dir, root, jobs, store, shutdown, _workers: workers }
}

impl Service {
    async fn run(&self, command: &str, options: SubmitOptions) -> Job {
        let id = self.jobs.submit(command, options).await.unwrap().id;
        let deadline = Instant::now() + Duration::from_secs(120);
        finished_by(&self.store, &id, deadline).await
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown.stop_claiming.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variant_streams_write_and_list_what_plain_ffmpeg_writes() {
    let commands = [
        // The command: `%v` directories, a master playlist above them.
        "-i in.mp4 -map 0:v -map 0:v -c:v libx264 -preset ultrafast -b:v:0 500k -b:v:1 200k -f hls \
         -var_stream_map 'v:0 v:1' -master_pl_name master.m3u8 -hls_segment_filename hls/%v/seg%03d.ts \
         hls/%v/index.m3u8",
        // Named variants, fMP4 segments named by strftime and numbered within the second
        // (several segments a second would otherwise share one name).
        "-i in.mp4 -map 0:v -map 0:a -c:v libx264 -preset ultrafast -c:a aac -f hls -hls_time 1 \
         -var_stream_map 'v:0,name:video a:0,name:audio' -hls_segment_type fmp4 -strftime 1 \
         -hls_flags second_level_segment_index -hls_segment_filename 'named/%v/s-%Y%m%d-%%04d.m4s' \
         -master_pl_name m.m3u8 named/%v/index.m3u8",
        // `%v` in file names, default segment names beside the playlists.
        "-i in.mp4 -map 0:v -map 0:v -c:v libx264 -preset ultrafast -f hls -var_stream_map 'v:0 v:1' \
         -master_pl_name m.m3u8 out_%v.m3u8",
        // One variant without a map; the playlist directory is created by ffmpeg too.
        "-i in.mp4 -c:v libx264 -preset ultrafast -c:a aac -f hls deep/a/%v/i.m3u8",
    ];
    for command in commands {
        let plain = tempfile::tempdir().unwrap();
        make_input(plain.path(), 2);
        plain_ffmpeg(plain.path(), command);
        let expected = tree(plain.path(), &[]);
        assert!(!expected.is_empty() && expected.iter().all(|p| !p.contains("%v")), "{command}: {expected:?}");

        let s = service(2);
        std::fs::create_dir_all(s.root.join("hls")).unwrap();
        std::fs::write(s.root.join("hls/notes.txt"), "someone else's").unwrap();
        let job = s.run(command, SubmitOptions::default()).await;
        assert_eq!(job.status, JobStatus::Completed, "{command}: {job:?}");
        let written = tree(&s.root, &["hls/notes.txt"]);
        assert_eq!(masked(&written), masked(&expected), "{command}: same files as plain ffmpeg");
        assert_eq!(job.output_files, written, "{command}: every file listed");
        for (dir, _, _) in walkdirs(&s.root) {
            assert!(!dir.contains("%v"), "{command}: a literal placeholder directory {dir}");
        }
    }
}

/// Every directory below `root`, relative.
fn walkdirs(root: &Path) -> Vec<(String, (), ())> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.push((path.strip_prefix(root).unwrap().display().to_string(), (), ()));
                stack.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_variant_stream_run_removes_exactly_its_files() {
    let s = service(30);
    for (path, text) in [("hls/notes.txt", "a"), ("hls/0/keep.txt", "b"), ("hls/1/seg900.txt", "c")] {
        std::fs::create_dir_all(s.root.join(path).parent().unwrap()).unwrap();
        std::fs::write(s.root.join(path), text).unwrap();
    }
    let before = tree(&s.root, &[]);
    // Real time, stopped by its timeout after it has written segments of both variants.
    let command = "-re -i in.mp4 -map 0:v -map 0:v -c:v libx264 -preset ultrafast -g 25 -f hls -hls_time 1 \
                   -var_stream_map 'v:0 v:1' -master_pl_name master.m3u8 \
                   -hls_segment_filename hls/%v/seg%03d.ts hls/%v/index.m3u8";
    let options = SubmitOptions { timeout_seconds: Some(6), ..SubmitOptions::default() };
    let id = s.jobs.submit(command, options).await.unwrap().id;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(s.root.join("hls/0/seg000.ts").exists() && s.root.join("hls/1/seg000.ts").exists()) {
        assert!(
            Instant::now() < deadline,
            "the job never wrote segments of both variants: {:?}",
            s.store.get(&id).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let job = finished_by(&s.store, &id, deadline).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert_eq!(tree(&s.root, &[]), before, "the run's files are gone, no one else's");
}

/// A rolling window (`-hls_list_size N -hls_flags delete_segments`) deletes the segments that
/// leave the playlist, as plain ffmpeg does (tester G17: given the playlist as a `file:` URL the
/// muxer unlinked `file:/...` names, deleted nothing and the job kept every segment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_window_deletes_old_segments_as_plain_ffmpeg_does() {
    let commands = [
        // Segment names derived from the playlist's.
        "-i in.mp4 -c:v libx264 -preset ultrafast -g 25 -c:a aac -f hls -hls_time 1 -hls_list_size 2 \
         -hls_flags delete_segments live/p.m3u8",
        // Named segments in another directory.
        "-i in.mp4 -c:v libx264 -preset ultrafast -g 25 -c:a aac -f hls -hls_time 1 -hls_list_size 2 \
         -hls_flags delete_segments -hls_segment_filename seg/s%03d.ts live/q.m3u8",
    ];
    for command in commands {
        let plain = tempfile::tempdir().unwrap();
        make_input(plain.path(), 6);
        std::fs::create_dir_all(plain.path().join("live")).unwrap();
        std::fs::create_dir_all(plain.path().join("seg")).unwrap();
        plain_ffmpeg(plain.path(), command);
        let expected = tree(plain.path(), &[]);
        assert!(expected.len() < 6, "{command}: plain ffmpeg kept a window only: {expected:?}");

        let s = service(6);
        let job = s.run(command, SubmitOptions::default()).await;
        assert_eq!(job.status, JobStatus::Completed, "{command}: {job:?}");
        let written = tree(&s.root, &[]);
        assert_eq!(written, expected, "{command}: the same files as plain ffmpeg");
        assert_eq!(job.output_files, written, "{command}: every file left listed, no deleted one");
    }
}

/// A muxer that takes its segment name literally writes and lists the file plain ffmpeg writes
/// (tester H1: with `-hls_flags single_file` the HLS muxer writes `-hls_segment_filename`
/// `h_%03d.ts` as that very name; the job listed only the playlist, so on S3 the media file was
/// never uploaded and the published playlist pointed at nothing). DASH's `single_file_name`
/// expands only `$...$` templates, so a `%d` in it is literal too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_literal_segment_name_is_listed_as_plain_ffmpeg_writes_it() {
    let commands = [
        "-i in.mp4 -c:v libx264 -preset ultrafast -c:a aac -f hls -hls_time 1 \
         -hls_segment_filename out/h_%03d.ts -hls_flags single_file out/single.m3u8",
        "-i in.mp4 -c:v libx264 -preset ultrafast -c:a aac -f dash -single_file 1 \
         -single_file_name seg%d.mp4 dash/m.mpd",
    ];
    for command in commands {
        let plain = tempfile::tempdir().unwrap();
        make_input(plain.path(), 2);
        std::fs::create_dir_all(plain.path().join("out")).unwrap();
        std::fs::create_dir_all(plain.path().join("dash")).unwrap();
        plain_ffmpeg(plain.path(), command);
        let expected = tree(plain.path(), &[]);
        assert!(expected.iter().any(|p| p.contains('%')), "{command}: plain ffmpeg wrote a literal name: {expected:?}");

        let s = service(2);
        let job = s.run(command, SubmitOptions::default()).await;
        assert_eq!(job.status, JobStatus::Completed, "{command}: {job:?}");
        let written = tree(&s.root, &[]);
        assert_eq!(written, expected, "{command}: the same files as plain ffmpeg");
        assert_eq!(job.output_files, written, "{command}: every file written is listed");
    }
}

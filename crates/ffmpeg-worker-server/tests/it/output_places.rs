//! Where a job's outputs may go, the same on a data directory and on a bucket (moto's server,
//! `s3-harness`), with the real binary and two workers:
//! - two jobs of which one writes a file where the other writes a directory (`race/a` and
//!   `race/a/x.mp4`) never run together, and the later one fails naming its argument, leaving
//!   one of the two (tester H6; a bucket used to keep both);
//! - an output onto a directory or below a file is refused at submit with 409 `file-conflict`,
//!   the same detail on both backends (a data directory answered 422 `not-a-file` or failed the
//!   job);
//! - an upload below a file a running job will write, or above it, is refused;
//! - the literal segment file of HLS `single_file` is the run's on every run (tester H1).

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::e2e_s3::s3_server_with;
use crate::support::{Server, client, make_clip, submit, wait_finished};

const WAIT: Duration = Duration::from_secs(120);
/// The end of every detail about an output in the way.
const RULE: &str = "a job cannot write a file where the storage holds a directory, nor below a file";

/// A job that runs until it is cancelled (ten minutes of a small test picture in real time),
/// but for its output.
const LONG: &str = "-re -f lavfi -i testsrc=size=64x48:rate=5 -t 600";

/// Cancels `job` and waits until it is.
async fn cancel(client: &reqwest::Client, server: &Server, job: &Value) {
    let id = job["id"].as_str().unwrap();
    let r = client.post(server.url(&format!("/jobs/{id}/cancel"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(finished(client, server, job).await["status"], "cancelled");
}

async fn finished(client: &reqwest::Client, server: &Server, job: &Value) -> Value {
    let id = job["id"].as_str().unwrap_or_else(|| panic!("{job}"));
    wait_finished(client, server, id, WAIT).await.pop().unwrap()
}

fn time(job: &Value, field: &str) -> OffsetDateTime {
    OffsetDateTime::parse(job[field].as_str().unwrap_or_else(|| panic!("{field}: {job}")), &Rfc3339).unwrap()
}

async fn listed(client: &reqwest::Client, server: &Server, prefix: &str) -> Vec<String> {
    let listed: Value =
        client.get(server.url(&format!("/files?prefix={prefix}"))).send().await.unwrap().json().await.unwrap();
    listed.as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_owned()).collect()
}

/// The whole scenario, on `server` (two workers).
async fn outputs_in_the_way(server: &Server) {
    let client = client();
    let local = tempfile::tempdir().unwrap();
    let clip = std::fs::read(make_clip(local.path(), "clip.mp4", 1)).unwrap();
    let r = client.put(server.url("/files/in/clip.mp4")).body(clip).send().await.unwrap();
    assert_eq!(r.status(), 201);

    // A file and a file below it, in either order, both queued before either starts: the
    // first is held behind a job that writes its other output (`hold/N.mp4`) until that one
    // is cancelled. Two workers are free for them then.
    let pairs = [
        (
            "-i in/clip.mp4 -c copy -f mp4 race/a -c copy hold/1.mp4",
            "-i in/clip.mp4 -c copy race/a/x.mp4",
            "argument 5 `race/a/x.mp4`: `race/a` is a file in the storage, not a directory",
            "hold/1.mp4",
        ),
        (
            "-i in/clip.mp4 -c copy race/b/x.mp4 -c copy hold/2.mp4",
            "-i in/clip.mp4 -c copy -f mp4 race/b",
            "argument 7 `race/b`: `race/b` is a directory in the storage (files lie below it)",
            "hold/2.mp4",
        ),
    ];
    for (first, second, named, hold) in pairs {
        let (status, blocker) = submit(&client, server, &format!("{LONG} {hold}")).await;
        assert_eq!(status, 201, "{blocker}");
        let (s1, j1) = submit(&client, server, first).await;
        let (s2, j2) = submit(&client, server, second).await;
        assert_eq!((s1, s2), (201, 201), "{j1} {j2}");
        cancel(&client, server, &blocker).await;
        let (one, two) = (finished(&client, server, &j1).await, finished(&client, server, &j2).await);
        assert_eq!(one["status"], "completed", "{one}");
        assert_eq!(two["status"], "failed", "{two}");
        assert!(time(&two, "started_at") >= time(&one, "completed_at"), "one after the other: {one} {two}");
        let error = two["error"].as_str().unwrap();
        assert!(error.contains(&format!("{named}; {RULE}")), "{error}");
        assert!(error.contains("no file in the storage was changed"), "{error}");
    }
    assert_eq!(listed(&client, server, "race/").await, ["race/a", "race/b/x.mp4"]);

    // At submit: 409 `file-conflict` naming the argument.
    for (command, position, argument, problem) in [
        ("-i in/clip.mp4 -f mp4 race/b", 5, "race/b", "`race/b` is a directory in the storage (files lie below it)"),
        ("-i in/clip.mp4 race/a/y.mp4", 3, "race/a/y.mp4", "`race/a` is a file in the storage, not a directory"),
        ("-i in/clip.mp4 race/a/deeper/y.mp4", 3, "race/a/deeper/y.mp4", "`race/a` is a file in the storage"),
        ("-i in/clip.mp4 -f mp4 race/b/../b", 5, "race/b/../b", "`race/b` is a directory in the storage"),
    ] {
        let (status, answer) = submit(&client, server, command).await;
        assert_eq!(status, 409, "{command}: {answer}");
        assert_eq!(answer["type"], "/problems/file-conflict", "{answer}");
        assert_eq!(answer["argument_position"], position, "{answer}");
        assert_eq!(answer["argument"], argument, "{answer}");
        let detail = answer["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!("argument {position} `{argument}`: {problem}")) && detail.ends_with(RULE),
            "{command}: {detail}"
        );
    }

    // While a job writes `race/dir/c`: no upload below it, nor a file where its directory is.
    let (status, job) = submit(&client, server, &format!("{LONG} -f mp4 race/dir/c")).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now: Value = client.get(server.url(&format!("/jobs/{id}"))).send().await.unwrap().json().await.unwrap();
        if now["status"] == "running" {
            break;
        }
        assert!(now["status"] == "queued" && std::time::Instant::now() < deadline, "{now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for path in ["race/dir/c/x.mp4", "race/dir/c/deeper/x.mp4", "race/dir"] {
        let r = client.put(server.url(&format!("/files/{path}"))).body("x").send().await.unwrap();
        assert_eq!(r.status(), 409, "{path}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["type"], "/problems/file-in-use", "{path}: {answer}");
        assert!(answer["detail"].as_str().unwrap().contains(id), "{answer}");
    }
    let r = client.put(server.url("/files/race/dir/cx/x.mp4")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 201, "beside it");
    cancel(&client, server, &job).await;
    assert_eq!(listed(&client, server, "race/dir/").await, ["race/dir/cx/x.mp4"]);
}

/// Runs the same HLS `single_file` job twice: the second run rewrites the literal segment
/// file, which existed before it; both runs list it (and on a bucket upload it), as plain
/// ffmpeg writes it (tester H1's remainder: the disk's second run left it out).
async fn single_file_twice(server: &Server) {
    let client = client();
    let local = tempfile::tempdir().unwrap();
    let clip = std::fs::read(make_clip(local.path(), "long.mp4", 3)).unwrap();
    let r = client.put(server.url("/files/in/long.mp4")).body(clip).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let mut sizes = Vec::new();
    for seconds in [1, 3] {
        let command = format!(
            "-i in/long.mp4 -t {seconds} -c copy -f hls -hls_segment_filename h1r/h_%03d.ts -hls_flags single_file \
             h1r/single.m3u8"
        );
        let (status, job) = submit(&client, server, &command).await;
        assert_eq!(status, 201, "{job}");
        let done = finished(&client, server, &job).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["output_files"], serde_json::json!(["h1r/h_%03d.ts", "h1r/single.m3u8"]), "run {seconds}");
        let segment = client.get(server.url("/files/h1r/h_%2503d.ts")).send().await.unwrap();
        assert_eq!(segment.status(), 200);
        let size = segment.bytes().await.unwrap().len() as u64;
        let listed = done["outputs"].as_array().unwrap().iter().find(|o| o["path"] == "h1r/h_%03d.ts").cloned();
        assert_eq!(listed.map(|o| o["size_bytes"].clone()), Some(size.into()), "{done}");
        sizes.push(size);
    }
    assert!(sizes[1] > sizes[0], "the second run wrote the longer segment file: {sizes:?}");
}

#[tokio::test]
async fn outputs_in_the_way_on_a_data_directory() {
    let server = Server::start(&["--concurrency", "2"]);
    outputs_in_the_way(&server).await;
}

#[tokio::test]
async fn outputs_in_the_way_on_a_bucket() {
    let bucket = s3_harness::shared().bucket();
    let server = s3_server_with(&bucket, "media", &["--concurrency", "2"]);
    outputs_in_the_way(&server).await;
    // Nothing else reached the bucket: no temporary names left.
    let keys = s3_harness::shared().keys(&bucket);
    let left: Vec<&String> = keys.iter().filter(|k| k.contains(".ffmpeg-worker")).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn single_file_segments_are_every_runs_on_a_data_directory() {
    single_file_twice(&Server::start(&[])).await;
}

#[tokio::test]
async fn single_file_segments_are_every_runs_on_a_bucket() {
    let bucket = s3_harness::shared().bucket();
    single_file_twice(&s3_server_with(&bucket, "media", &[])).await;
}

//! Process life cycle with the real binary: crash recovery, graceful shutdown, bad databases.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    Server, Store, client, ffprobe_duration, files_under, make_clip, on_each_store, submit, wait_finished,
};

/// Pids of ffmpeg processes whose command line names `needle`.
fn ffmpeg_pids_with(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains("-progress pipe:1") && cmd.contains(needle) {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if !state.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z') {
                pids.push(pid);
            }
        }
    }
    pids
}

async fn wait_until(what: &str, mut pred: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pred().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(http: &reqwest::Client, server: &Server, id: &str) -> Value {
    http.get(server.url(&format!("/jobs/{id}"))).send().await.unwrap().json().await.unwrap()
}

fn id(job: &Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

async fn sigkill_mid_encode_then_restart_resumes_every_job_once(store: Store) {
    let server = Server::start_on(store, &["--concurrency", "1"]);
    make_clip(server.data.path(), "in.mp4", 4);
    let http = client();
    // -re reads the input at its native rate: the encode lasts about 4 s.
    let (_, long) = submit(&http, &server, "-re -i in.mp4 -c:v libx264 -preset ultrafast -c:a aac long.mp4").await;
    let (_, b) = submit(&http, &server, "-i in.mp4 -t 1 -c:v libx264 -preset ultrafast b.mp4").await;
    let (_, c) = submit(&http, &server, "-i in.mp4 -t 1 -vn -c:a aac c.m4a").await;
    let long_id = id(&long);
    wait_until("the long job to report progress", async || {
        get(&http, &server, &long_id).await["progress"]["frame"].as_u64().unwrap_or(0) > 0
    })
    .await;

    let marker = format!("{}/long.mp4", server.data.path().canonicalize().unwrap().display());
    let orphans = ffmpeg_pids_with(&marker);
    assert_eq!(orphans.len(), 1, "one ffmpeg encodes long.mp4");
    let (data, db) = server.kill();
    assert!(Path::new(&format!("/proc/{}", orphans[0])).exists(), "ffmpeg outlives a SIGKILLed server");

    let server = Server::start_in(data, db, &["--concurrency", "1"]);
    let done = wait_finished(&http, &server, &long_id, Duration::from_secs(60)).await;
    assert!(!ffmpeg_pids_with(&marker).contains(&orphans[0]), "the orphan was stopped at start-up");
    let long = done.last().unwrap();
    assert_eq!(long["status"], "completed", "{long}");
    assert_eq!(long["attempts"], 2, "re-queued once after the crash: {long}");
    let duration = ffprobe_duration(&server.data.path().join("long.mp4"));
    assert!((duration - 4.0).abs() < 0.3, "a whole, readable output: {duration} s");
    for job in [b, c] {
        let done = wait_finished(&http, &server, &id(&job), Duration::from_secs(60)).await;
        let last = done.last().unwrap();
        assert_eq!(last["status"], "completed", "{last}");
        assert_eq!(last["attempts"], 1, "{last}");
    }
    // The orphan either died of SIGPIPE at its next progress write (its stdout reader is gone)
    // or was stopped at start-up ("stopped an ffmpeg left running by a previous crash"): which
    // one happens first is timing; jobs::orphans has its own test.
}
on_each_store!(sigkill_mid_encode_then_restart_resumes_every_job_once);

async fn a_job_interrupted_past_max_attempts_fails_as_interrupted(store: Store) {
    let server = Server::start_on(store, &["--concurrency", "1", "--max-attempts", "1"]);
    make_clip(server.data.path(), "in.mp4", 3);
    let http = client();
    let (_, long) = submit(&http, &server, "-re -i in.mp4 -c:v libx264 -preset ultrafast long.mp4").await;
    let (_, queued) = submit(&http, &server, "-i in.mp4 -t 1 -c:v libx264 -preset ultrafast q.mp4").await;
    let long_id = id(&long);
    wait_until("the job to run", async || get(&http, &server, &long_id).await["status"] == "running").await;
    let (data, db) = server.kill();
    let server = Server::start_in(data, db, &["--concurrency", "1", "--max-attempts", "1"]);
    let long = get(&http, &server, &long_id).await;
    assert_eq!(long["status"], "failed", "{long}");
    assert_eq!(long["error"], "interrupted");
    let q = wait_finished(&http, &server, &id(&queued), Duration::from_secs(60)).await;
    assert_eq!(q.last().unwrap()["status"], "completed", "queued jobs survive the crash");
}
on_each_store!(a_job_interrupted_past_max_attempts_fails_as_interrupted);

/// Entries of `dir` whose names start with `prefix`.
fn entries_starting(dir: &Path, prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.starts_with(prefix)).collect()
}

/// Issue 13 §4: `kill -9` twice during one job with max attempts 2. The job ends failed
/// "interrupted", and what its attempts left (partial outputs, HLS segments, scratch
/// directories) is gone, while files it did not write (a segment-like name that existed
/// before, a file beside its outputs, another job's output) are kept.
async fn sigkill_twice_leaves_no_partial_output_and_no_scratch_directory(store: Store) {
    let scratch = tempfile::tempdir().unwrap();
    let scratch_arg = scratch.path().display().to_string();
    let args = ["--concurrency", "1", "--max-attempts", "2", "--scratch-dir", &scratch_arg];
    let server = Server::start_on(store, &args);
    let data = server.data.path().to_owned();
    make_clip(&data, "in.mp4", 60);
    std::fs::create_dir_all(data.join("out")).unwrap();
    for kept in ["out/long9.ts", "out/notes.txt", "out/other.mp4"] {
        std::fs::write(data.join(kept), "not the job's").unwrap();
    }
    let http = client();
    let command = "-re -i in.mp4 -map 0:v -c:v libx264 -preset ultrafast -g 25 -f hls -hls_time 1 out/long.m3u8 \
                   -map 0 -c:v libx264 -preset ultrafast -c:a aac out/long.mp4";
    let (status, job) = submit(&http, &server, command).await;
    assert_eq!(status, 201, "{job}");
    let job_id = id(&job);
    let scratch_prefix = format!("ffmpeg-worker-run-{job_id}-");

    let mut server = server;
    for attempt in 1..=2 {
        wait_until("the attempt to write segments", async || {
            let job = get(&http, &server, &job_id).await;
            job["attempts"] == attempt && !entries_starting(&data.join("out"), "long0.ts").is_empty()
        })
        .await;
        assert_eq!(entries_starting(scratch.path(), &scratch_prefix).len(), 1, "the run's scratch directory");
        let (data_dir, db) = server.kill();
        server = Server::start_in(data_dir, db, &args);
    }
    let job = get(&http, &server, &job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"], "interrupted");
    assert_eq!(files_under(&data.join("out")), ["long9.ts", "notes.txt", "other.mp4"], "only others' files are left");
    assert_eq!(
        entries_starting(scratch.path(), "ffmpeg-worker-run-"),
        Vec::<String>::new(),
        "no scratch directory left"
    );
}
on_each_store!(sigkill_twice_leaves_no_partial_output_and_no_scratch_directory);

fn sigterm(server: &Server) {
    let status = std::process::Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

async fn sigterm_refuses_new_jobs_requeues_running_ones_and_exits_0(store: Store) {
    let mut server = Server::start_on(store, &["--concurrency", "1", "--shutdown-grace", "1s"]);
    make_clip(server.data.path(), "in.mp4", 4);
    let http = client();
    let (_, long) = submit(&http, &server, "-re -i in.mp4 -c:v libx264 -preset ultrafast long.mp4").await;
    let long_id = id(&long);
    wait_until("the job to run", async || get(&http, &server, &long_id).await["status"] == "running").await;
    sigterm(&server);
    // During the grace period the API still answers, but takes no new job.
    let mut saw_503 = false;
    for _ in 0..40 {
        match http.post(server.url("/jobs")).json(&serde_json::json!({"command": "-i in.mp4 x.mp4"})).send().await {
            Ok(r) if r.status() == 503 => {
                assert!(r.headers().contains_key("retry-after"));
                saw_503 = true;
                break;
            }
            Ok(r) => assert_eq!(r.status(), 201, "before the signal lands"),
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_503, "POST /jobs answers 503 while shutting down");
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
    let marker = format!("{}/long.mp4", server.data.path().canonicalize().unwrap().display());
    assert!(ffmpeg_pids_with(&marker).is_empty(), "the running ffmpeg was stopped");

    let (data, db) = server.kill();
    let server = Server::start_in(data, db, &["--concurrency", "1"]);
    let done = wait_finished(&http, &server, &long_id, Duration::from_secs(60)).await;
    let last = done.last().unwrap();
    assert_eq!(last["status"], "completed", "resumed after restart: {last}");
    assert_eq!(last["attempts"], 1, "a graceful stop does not use up an attempt");
}
on_each_store!(sigterm_refuses_new_jobs_requeues_running_ones_and_exits_0);

async fn sigterm_lets_a_short_job_finish_within_the_grace_period(store: Store) {
    let mut server = Server::start_on(store, &["--concurrency", "1", "--shutdown-grace", "30s"]);
    make_clip(server.data.path(), "in.mp4", 2);
    let http = client();
    let (_, job) = submit(&http, &server, "-re -i in.mp4 -c:v libx264 -preset ultrafast out.mp4").await;
    let job_id = id(&job);
    wait_until("the job to run", async || get(&http, &server, &job_id).await["status"] == "running").await;
    sigterm(&server);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
    let (data, db) = server.kill();
    let server = Server::start_in(data, db, &["--concurrency", "0"]);
    let job = get(&http, &server, &job_id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert!((ffprobe_duration(&server.data.path().join("out.mp4")) - 2.0).abs() < 0.3);
}
on_each_store!(sigterm_lets_a_short_job_finish_within_the_grace_period);

#[test]
fn a_corrupt_database_is_a_clear_start_up_error_and_is_left_alone() {
    let data = tempfile::tempdir().unwrap();
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("jobs.db");
    std::fs::write(&db, b"this is not a database, but somebody's notes\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ffmpeg-worker"))
        .args(["--port", "0", "--data-path"])
        .arg(data.path())
        .args(["--database-url", &format!("sqlite://{}", db.display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not an ffmpeg-worker database"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), b"this is not a database, but somebody's notes\n");

    let missing_dir = db_dir.path().join("no/such/dir/jobs.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ffmpeg-worker"))
        .args(["--port", "0", "--data-path"])
        .arg(data.path())
        .args(["--database-url", &format!("sqlite://{}", missing_dir.display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

fn start_expecting_failure(args: &[&str]) -> (Option<i32>, String) {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ffmpeg-worker"))
        .args(["--port", "0", "--database-url", "memory:", "--data-path"])
        .arg(data.path())
        .args(args)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_missing_or_old_ffmpeg_is_refused_at_start_up() {
    let (code, stderr) = start_expecting_failure(&["--ffmpeg-bin", "/nonexistent/ffmpeg"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("/nonexistent/ffmpeg") && stderr.contains("install ffmpeg"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("ffmpeg");
    // Like ffmpeg, it prints its banner on stderr (the start-up probe reads it from `-h full`).
    std::fs::write(&old, "#!/bin/sh\necho 'ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c) 2000-2021' >&2\n")
        .unwrap();
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code, stderr) = start_expecting_failure(&["--ffmpeg-bin", old.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not ffmpeg >= 5.0") && stderr.contains("4.4.2"), "{stderr}");
}

#[test]
fn an_unusable_rate_limit_stops_start_up() {
    // It used to switch the limiter off silently.
    let (code, stderr) = start_expecting_failure(&["--rate-limit", "2000000000"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--rate-limit") && stderr.contains("2000000000"), "{stderr}");
}

async fn retention_deletes_old_finished_jobs_but_keeps_queued_ones(store: Store) {
    let server = Server::start_on(store, &["--concurrency", "1"]);
    let http = client();
    let (_, failed) = submit(&http, &server, "-i missing.mp4 out.mp4").await;
    wait_finished(&http, &server, &id(&failed), Duration::from_secs(30)).await;
    let (data, db) = server.kill();
    // API-only node, so the queued job stays queued; retention runs at start-up.
    let server = Server::start_in(data, db, &["--concurrency", "0"]);
    let (_, queued) = submit(&http, &server, "-i in.mp4 out.mp4").await;
    let (data, db) = server.kill();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let server = Server::start_in(data, db, &["--concurrency", "0", "--retention", "10ms"]);
    wait_until("the purge", async || {
        http.get(server.url(&format!("/jobs/{}", id(&failed)))).send().await.unwrap().status() == 404
    })
    .await;
    assert_eq!(get(&http, &server, &id(&queued)).await["status"], "queued", "unfinished jobs are never purged");
}
on_each_store!(retention_deletes_old_finished_jobs_but_keeps_queued_ones);

/// Start-up errors keep what caused them as their `source`, not as text.
#[tokio::test]
async fn start_errors_keep_their_sources() {
    use ffmpeg_worker_server::serve::{StartError, open_store};
    use std::error::Error as _;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("missing/dir/jobs.db").display());
    let Err(e) = open_store(&url).await else { panic!("a database in a missing directory opened") };
    assert!(matches!(e, StartError::OpenDatabase { .. }), "{e:?}");
    let source = e.source().expect("the store's error is kept");
    assert!(source.downcast_ref::<jobs::sqlite::OpenError>().is_some(), "{source:?}");
    let Err(e) = open_store("mysql://x").await else { panic!("an unknown scheme opened") };
    assert!(matches!(e, StartError::UnsupportedDatabase { .. }), "{e:?}");
    // A PostgreSQL server that cannot be reached: the driver's error is kept.
    let Err(e) = open_store("postgres://nobody@127.0.0.1:1/x?connect_timeout=5").await else {
        panic!("an unreachable PostgreSQL server opened")
    };
    assert!(matches!(e, StartError::OpenDatabase { .. }), "{e:?}");
    let source = e.source().and_then(|s| s.downcast_ref::<jobs::sqlite::OpenError>());
    assert!(matches!(source, Some(jobs::sqlite::OpenError::Postgres { .. })), "{source:?}");
}

/// An upload cut by a crash leaves its temporary file; the next start removes it, but not the
/// temporary file of an upload still under way in another process (locked, as a live upload's
/// is), nor other files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_upload_files_left_by_a_crash_are_removed_at_start_up() {
    use std::io::Write as _;
    let server = Server::start(&["--concurrency", "0"]);
    let temp_files = |data: &Path| -> Vec<String> {
        files_under(data).into_iter().filter(|p| p.contains(".ffmpeg-worker-upload-")).collect()
    };
    // An upload of 8 MB whose client sent 3 MiB (more than one batch of the writer) and then waits.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut upload = std::net::TcpStream::connect(&addr).unwrap();
    write!(upload, "PUT /files/up/big.bin HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 8000000\r\n\r\n").unwrap();
    upload.write_all(&vec![7u8; 3 * 1024 * 1024]).unwrap();
    let data = server.data.path().to_owned();
    // Written to (an empty one an instant old may be another process's, not yet locked).
    wait_until("the upload's temporary file", async || {
        temp_files(&data).first().is_some_and(|t| std::fs::metadata(data.join(t)).is_ok_and(|m| m.len() > 0))
    })
    .await;
    let (data, db) = server.kill();
    drop(upload);
    let left = temp_files(data.path());
    assert_eq!(left.len(), 1, "the crash left the temporary file: {left:?}");
    // Another node's upload under way in the same data directory: it holds its lock.
    std::fs::write(data.path().join("up/.ffmpeg-worker-upload-live"), vec![1u8; 1000]).unwrap();
    let live = std::fs::File::open(data.path().join("up/.ffmpeg-worker-upload-live")).unwrap();
    live.lock().unwrap();
    std::fs::write(data.path().join("up/kept.mp4"), b"x").unwrap();

    let server = Server::start_in(data, db, &["--concurrency", "0"]);
    let data = server.data.path().to_owned();
    wait_until("the leftover to be removed", async || temp_files(&data) == ["up/.ffmpeg-worker-upload-live"]).await;
    assert!(data.join("up/kept.mp4").exists());
    let logged = server.stderr.lock().unwrap().iter().any(|l| l.contains("removed a temporary upload file"));
    assert!(logged, "the removal is logged");
    // Nothing was listed meanwhile, and the lock's owner still has its file.
    let files: Value = client().get(server.url("/files")).send().await.unwrap().json().await.unwrap();
    assert_eq!(files.as_array().unwrap().len(), 1, "{files}");
    drop(live);
}

//! Nodes end to end, with the real binary: an API node and worker nodes sharing one database
//! and data directory (PostgreSQL, and one SQLite file): what each role serves, routing by
//! labels, `waiting_reason`, `GET /workers`, graceful drain, and submit checks against the
//! worker nodes' ffmpeg.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::events;
use crate::support::{DataDir, Db, Server, Store, client, ffprobe_duration, make_clip, on_each_store, wait_finished};

/// Polls `f` until it gives `Some`, for at most `limit`.
async fn eventually<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = f().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(client: &reqwest::Client, server: &Server, path: &str) -> (u16, Value) {
    let resp = client.get(server.url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn post_job(client: &reqwest::Client, server: &Server, body: Value) -> (u16, Value) {
    let resp = client.post(server.url("/jobs")).json(&body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The node `id` of `GET /workers`, once its state is `state`.
async fn node_in_state(client: &reqwest::Client, api: &Server, id: &str, state: &str) -> Value {
    eventually(&format!("node {id} {state}"), Duration::from_secs(20), async || {
        let (_, nodes) = get(client, api, "/workers").await;
        nodes.as_array()?.iter().find(|n| n["id"] == id && n["state"] == state).cloned()
    })
    .await
}

/// One API node, a worker without labels and later a `gpu` worker: the worker answers only
/// its probes and metrics; `/workers` lists every node; a job requiring `gpu` waits, saying
/// why, while the plain worker runs a later plain job, and runs once a gpu node joins; a
/// worker told to stop shows `draining`, puts the job it could not finish back in the queue at
/// once (not when its lease ends) and leaves the registry.
async fn roles_labels_workers_and_drain(store: Store) {
    let client = client();
    let api = Server::start_on(store, &["--role", "api"]);
    make_clip(api.data.path(), "in.mp4", 1);
    let plain = api.join("w-plain", &["--role", "worker"]);

    for (path, expected) in
        [("/health", 200), ("/metrics", 200), ("/jobs", 404), ("/workers", 404), ("/openapi.json", 404)]
    {
        let (status, body) = get(&client, &plain, path).await;
        assert_eq!(status, expected, "a worker node's {path}: {body}");
    }
    let (status, problem) = get(&client, &plain, "/jobs").await;
    assert_eq!((status, problem["type"].as_str()), (404, Some("/problems/not-found")));

    let worker = node_in_state(&client, &api, "w-plain", "active").await;
    assert_eq!((worker["role"].as_str(), worker["slots"].as_u64()), (Some("worker"), Some(1)));
    assert_eq!(worker["labels"], json!([]));
    assert!(worker["ffmpeg_version"].as_str().is_some_and(|v| !v.is_empty()), "{worker}");
    assert!(worker["host"].as_str().is_some_and(|h| !h.is_empty()) && worker["version"].is_string(), "{worker}");
    let (_, nodes) = get(&client, &api, "/workers").await;
    let api_node = nodes.as_array().unwrap().iter().find(|n| n["role"] == "api").expect("the api node is listed");
    assert_eq!((api_node["slots"].as_u64(), api_node["state"].as_str()), (Some(0), Some("active")));

    // Every representation of the waiting job says why it waits: the answer to the submit,
    // the status event on `/events` and on the job's own stream, `GET /jobs/{id}`, the list.
    let (_, all) = events::open(&api, "/events", None).await;
    let mut all = all.expect("an /events stream");
    let gpu_job = json!({"command": "-i in.mp4 -c:v libx264 -t 1 gpu.mp4", "requires": ["gpu"]});
    let (status, job) = post_job(&client, &api, gpu_job).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(
        (job["requires"].clone(), job["waiting_reason"].as_str()),
        (json!(["gpu"]), Some("no live node has labels [gpu]"))
    );
    let gpu_id = job["id"].as_str().unwrap().to_owned();
    let queued = events::next(&mut all).await.expect("the queued status on /events");
    let published = events::data(&queued);
    assert_eq!(
        (queued.event.as_str(), published["id"].as_str(), published["waiting_reason"].as_str()),
        ("status", Some(gpu_id.as_str()), Some("no live node has labels [gpu]")),
        "{published}"
    );
    let (_, mut own) = events::open(&api, &format!("/jobs/{gpu_id}/events"), None).await;
    let current = events::next(own.as_mut().expect("the job's stream")).await.expect("its current status");
    assert_eq!(events::data(&current)["waiting_reason"], "no live node has labels [gpu]");
    drop((all, own));
    let (status, job) = post_job(&client, &api, json!({"command": "-i in.mp4 -t 1 plain.mp4"})).await;
    assert_eq!((status, job["waiting_reason"].clone()), (201, Value::Null), "{job}");
    let done = wait_finished(&client, &api, job["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(done.last().unwrap()["status"], "completed");
    let (_, waiting) = get(&client, &api, &format!("/jobs/{gpu_id}")).await;
    assert_eq!(
        (waiting["status"].as_str(), waiting["waiting_reason"].as_str()),
        (Some("queued"), Some("no live node has labels [gpu]"))
    );
    let (_, listed) = get(&client, &api, "/jobs?status=queued").await;
    assert_eq!(listed[0]["waiting_reason"], "no live node has labels [gpu]");

    let gpu = api.join("w-gpu", &["--role", "worker", "--node-labels", "nvenc, gpu", "--shutdown-grace", "3s"]);
    let done = wait_finished(&client, &api, &gpu_id, Duration::from_secs(60)).await;
    let last = done.last().unwrap();
    assert_eq!((last["status"].as_str(), last["waiting_reason"].clone()), (Some("completed"), Value::Null), "{last}");
    assert_eq!(node_in_state(&client, &api, "w-gpu", "active").await["labels"], json!(["gpu", "nvenc"]));

    // Drain: a job that cannot finish within the grace goes back to the queue at once.
    let long = json!({"command": "-re -f lavfi -i testsrc=d=300:s=160x120 -c:v libx264 long.mp4", "requires": ["gpu"]});
    let (status, job) = post_job(&client, &api, long).await;
    assert_eq!(status, 201, "{job}");
    let long_id = job["id"].as_str().unwrap().to_owned();
    eventually("the long job running on w-gpu", Duration::from_secs(30), async || {
        let (_, nodes) = get(&client, &api, "/workers").await;
        nodes.as_array()?.iter().any(|n| n["id"] == "w-gpu" && n["running_jobs"] == json!([long_id])).then_some(())
    })
    .await;
    let stopped_at = Instant::now();
    let pid = gpu.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let draining = node_in_state(&client, &api, "w-gpu", "draining").await;
    assert_eq!(draining["running_jobs"], json!([long_id]), "{draining}");
    let requeued = eventually("the long job back in the queue", Duration::from_secs(20), async || {
        let (_, job) = get(&client, &api, &format!("/jobs/{long_id}")).await;
        (job["status"] == "queued").then_some(job)
    })
    .await;
    // Well within the 30 s lease: re-queued by the draining node, not by a reaper.
    assert!(stopped_at.elapsed() < Duration::from_secs(20));
    assert_eq!(requeued["attempts"], 0, "a drained start is not counted as an attempt: {requeued}");
    eventually("w-gpu gone from /workers", Duration::from_secs(20), async || {
        let (_, nodes) = get(&client, &api, "/workers").await;
        (!nodes.as_array()?.iter().any(|n| n["id"] == "w-gpu")).then_some(())
    })
    .await;
    let (_, job) = get(&client, &api, &format!("/jobs/{long_id}")).await;
    assert_eq!(job["waiting_reason"], "no live node has labels [gpu]");
    let mut gpu = gpu;
    assert!(gpu.child.wait().unwrap().success(), "the drained node exits 0");
}
on_each_store!(roles_labels_workers_and_drain);

/// An API node whose own ffmpeg lacks libx265 refuses a libx265 job while no worker is alive
/// (its own ffmpeg is all it knows of), and accepts it once a worker whose ffmpeg has libx265
/// is: submit checks use the ffmpeg of the nodes that could run the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_checks_use_the_workers_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("ffmpeg-without-x265");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncase \" $* \" in *\" -encoders \"*) ffmpeg \"$@\" | grep -v libx265 ;; *) exec ffmpeg \"$@\" ;; esac\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let client = client();
    let api = Server::start(&["--role", "api", "--ffmpeg-bin", fake.to_str().unwrap()]);
    let x265 = || json!({"command": "-i in.mp4 -c:v libx265 out.mp4"});
    let (status, problem) = post_job(&client, &api, x265()).await;
    assert_eq!((status, problem["type"].as_str()), (422, Some("/problems/unknown-name")), "{problem}");

    let _worker = api.join("w-1", &["--role", "worker"]);
    node_in_state(&client, &api, "w-1", "active").await;
    let job = eventually("libx265 accepted", Duration::from_secs(10), async || {
        let (status, job) = post_job(&client, &api, x265()).await;
        (status == 201).then_some(job)
    })
    .await;
    assert_eq!(job["waiting_reason"], Value::Null);
}

/// Tester F18: a second process started with the `NODE_ID` of a live node (a `--scale`d
/// service with a fixed id, a start-first rolling update) used to take that node's running job
/// for a crash leftover: it deleted its output, stopped its ffmpeg and ran it again. Now it
/// sees the node's heartbeat move and refuses to start, naming the problem; the job runs on,
/// once, and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_a_live_nodes_id_refuses_to_start_and_takes_nothing() {
    const LEASE: u64 = 3;
    const SECONDS: u32 = 15;
    let client = client();
    let db = tokio::task::block_in_place(Db::postgres);
    let url = db.url();
    let data = tempfile::tempdir().unwrap();
    let lease = LEASE.to_string();
    let w2 = Server::start_in(DataDir::Shared(data.path().to_owned()), db.node("w2"), &["--lease-seconds", &lease]);
    let command = format!("-re -f lavfi -i testsrc=duration={SECONDS}:size=64x64:rate=10 -c:v mpeg4 out/dup.mp4");
    let (status, job) = post_job(&client, &w2, json!({ "command": command })).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    eventually("the job encoding on w2", Duration::from_secs(60), async || {
        let (_, job) = get(&client, &w2, &format!("/jobs/{id}")).await;
        (job["status"] == "running" && job["progress"]["out_time_seconds"].as_f64() > Some(0.0)).then_some(())
    })
    .await;

    let second = std::process::Command::new(env!("CARGO_BIN_EXE_ffmpeg-worker"))
        .args(["--port", "0", "--host", "127.0.0.1", "--lease-seconds", &lease, "--node-id", "w2"])
        .arg("--data-path")
        .arg(data.path())
        .args(["--database-url", &url])
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It watches w2's heartbeat for at most the lease; its start-up takes a few seconds more.
    let mut second = KillOnDrop(second);
    let exit = eventually("the second process to exit", Duration::from_secs(LEASE * 4 + 30), async || {
        second.0.try_wait().unwrap()
    })
    .await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!exit.success(), "{stderr}");
    assert!(stderr.contains("node id `w2` is in use by another live process"), "{stderr}");
    // Its start time in RFC 3339, as everywhere else (tester finding L15: `2026-12-01 4:10:14.7 +00:00:00`).
    let started = stderr.split(", started ").nth(1).unwrap_or_default();
    assert!(started.get(10..11) == Some("T") && started.contains("Z):"), "{stderr}");
    assert!(!stderr.contains("recovered jobs interrupted"), "{stderr}");
    let (_, running) = get(&client, &w2, &format!("/jobs/{id}")).await;
    assert_eq!((running["status"].as_str(), running["attempts"].as_u64()), (Some("running"), Some(1)), "{running}");
    let (_, nodes) = get(&client, &w2, "/workers").await;
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
    assert_eq!((nodes[0]["id"].as_str(), nodes[0]["running_jobs"].clone()), (Some("w2"), json!([id])), "{nodes}");

    let done = wait_finished(&client, &w2, &id, Duration::from_secs(120)).await;
    let last = done.last().unwrap();
    assert_eq!((last["status"].as_str(), last["attempts"].as_u64()), (Some("completed"), Some(1)), "{last}");
    let duration = ffprobe_duration(&data.path().join("out/dup.mp4"));
    assert!((duration - f64::from(SECONDS)).abs() < 0.5, "the output is the one run's whole file: {duration} s");
}

/// A child process killed (and reaped) when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

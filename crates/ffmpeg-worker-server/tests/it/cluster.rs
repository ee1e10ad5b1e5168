//! Cluster mode with real processes: one API node and three worker nodes (the real binary) on
//! one PostgreSQL database and one data directory, a few hundred short jobs, and one worker
//! killed with SIGKILL in the middle of an encode.
//!
//! Each worker node runs ffmpeg through a wrapper of its own that, before it `exec`s the real
//! ffmpeg, takes an exclusive `flock` on a lock file named after the job's output and logs
//! `NODE start OUTPUT` (or `NODE OVERLAP OUTPUT` when another process still holds that lock).
//! ffmpeg inherits the locked descriptor, so the lock is held exactly as long as an ffmpeg
//! writes that output, whichever node started it, even once its node is dead. The log says
//! which nodes ran each job, and whether any two runs of one job ever overlapped.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{DataDir, Db, Server, client, ffprobe_duration};

/// Short jobs (a few frames each).
const SHORT_JOBS: usize = 200;
/// Long jobs (real-time, several seconds): at least one is mid-encode on the killed node.
const LONG_JOBS: usize = 3;
const LONG_SECONDS: u32 = 12;
const LEASE_SECONDS: u64 = 3;

/// The ffmpeg wrapper of node `node` (see the module docs).
fn wrapper(dir: &Path, node: &str, locks: &Path, log: &Path) -> std::path::PathBuf {
    let real =
        String::from_utf8(std::process::Command::new("sh").args(["-c", "command -v ffmpeg"]).output().unwrap().stdout)
            .unwrap();
    let script = format!(
        r#"#!/bin/sh
out=""
for a in "$@"; do
  case "$a" in file:*/out/*) out="${{a##*/}}" ;; esac
done
if [ -n "$out" ]; then
  exec 9>"{locks}/$out.lock"
  if /usr/bin/flock -n 9; then
    echo "{node} start $out" >> "{log}"
  else
    echo "{node} OVERLAP $out" >> "{log}"
  fi
fi
exec {real} "$@"
"#,
        locks = locks.display(),
        log = log.display(),
        real = real.trim(),
    );
    let path = dir.join(format!("ffmpeg-{node}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn post(http: &reqwest::Client, api: &Server, command: &str) -> String {
    let response = http.post(api.url("/jobs")).json(&json!({ "command": command })).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn get(http: &reqwest::Client, api: &Server, id: &str) -> Value {
    http.get(api.url(&format!("/jobs/{id}"))).send().await.unwrap().json().await.unwrap()
}

/// The wrapper log's lines, as (node, event, output).
fn log_lines(log: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            Some((parts.next()?.to_owned(), parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_killed_mid_encode_every_job_completes_once_at_a_time() {
    let db = tokio::task::block_in_place(Db::postgres);
    let data = tempfile::tempdir().unwrap();
    let tools = tempfile::tempdir().unwrap();
    let locks = tools.path().join("locks");
    std::fs::create_dir(&locks).unwrap();
    let log = tools.path().join("runs.log");
    let http = client();

    let lease = LEASE_SECONDS.to_string();
    let shared = || DataDir::Shared(data.path().to_owned());
    // The API node runs no jobs.
    let api = Server::start_in(shared(), db.node("api"), &["--concurrency", "0", "--lease-seconds", &lease]);
    let mut workers: BTreeMap<String, Server> = BTreeMap::new();
    for n in 1..=3 {
        let node = format!("worker-{n}");
        let ffmpeg = wrapper(tools.path(), &node, &locks, &log);
        let args = ["--concurrency", "2", "--lease-seconds", &lease, "--ffmpeg-bin", ffmpeg.to_str().unwrap()];
        workers.insert(node.clone(), Server::start_in(shared(), db.node(&node), &args));
    }

    let started = Instant::now();
    let mut long = Vec::new();
    for i in 0..LONG_JOBS {
        let command =
            format!("-re -f lavfi -i testsrc=duration={LONG_SECONDS}:size=64x64:rate=10 -c:v mpeg4 out/long{i}.mp4");
        long.push(post(&http, &api, &command).await);
    }
    let mut short = Vec::new();
    for i in 0..SHORT_JOBS {
        let command = format!("-f lavfi -i testsrc=duration=0.3:size=32x32:rate=10 -c:v mpeg4 out/short{i}.mp4");
        short.push(post(&http, &api, &command).await);
    }

    // Kill (SIGKILL, the node alone: its ffmpeg lives on, orphaned) a node that is running a
    // long job, once that job's ffmpeg has started, while it has most of its encode left.
    // (Idle nodes claim at once, so the long jobs may have started well before the last short
    // job was submitted: a long job too close to its end could finish before the kill.)
    let deadline = Instant::now() + Duration::from_secs(120);
    let (victim, victim_output, victim_job) = 'found: loop {
        let started: Vec<_> =
            log_lines(&log).into_iter().filter(|(_, event, out)| event == "start" && out.starts_with("long")).collect();
        for (node, _, out) in started {
            let job = long[out.trim_start_matches("long").trim_end_matches(".mp4").parse::<usize>().unwrap()].clone();
            let state = get(&http, &api, &job).await;
            let done = state["progress"]["out_time_seconds"].as_f64().unwrap_or(0.0);
            if state["status"] == "running" && state["attempts"] == 1 && done < f64::from(LONG_SECONDS) / 2.0 {
                break 'found (node, out, job);
            }
        }
        assert!(Instant::now() < deadline, "no long job mid-encode: {:?}", log_lines(&log));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let killed = workers.remove(&victim).unwrap();
    let killed_at = Instant::now();
    drop(killed.kill());

    // Its job goes back to the queue once its lease expires (the reaper of any node).
    let requeued_after = loop {
        let job = get(&http, &api, &victim_job).await;
        if job["status"] != "running" || job["attempts"].as_u64() > Some(1) {
            break killed_at.elapsed();
        }
        assert!(killed_at.elapsed() < Duration::from_secs(60), "the dead node's job was never re-queued: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("the killed node's job went back to the queue {requeued_after:?} after the kill");
    assert!(
        requeued_after < Duration::from_secs(LEASE_SECONDS + 5) * 3,
        "re-queued {requeued_after:?} after the kill (lease {LEASE_SECONDS} s)"
    );

    // Every job completes.
    let all: HashSet<&String> = long.iter().chain(&short).collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    let jobs: Vec<Value> = loop {
        let page: Vec<Value> = http.get(api.url("/jobs?limit=1000")).send().await.unwrap().json().await.unwrap();
        let ours: Vec<Value> =
            page.into_iter().filter(|j| all.contains(&j["id"].as_str().unwrap().to_owned())).collect();
        assert_eq!(ours.len(), all.len());
        if ours.iter().all(|j| matches!(j["status"].as_str(), Some("completed" | "failed" | "cancelled"))) {
            break ours;
        }
        assert!(Instant::now() < deadline, "not all jobs finished");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("{} jobs on 3 worker nodes (one killed) in {:?}", jobs.len(), started.elapsed());
    for job in &jobs {
        assert_eq!(job["status"], "completed", "{job}");
    }

    // The runs, from the wrappers' log: no two runs of one job ever overlapped; each job ran
    // once per attempt; only the killed node's jobs ran twice, first there.
    let lines = log_lines(&log);
    let overlaps: Vec<_> = lines.iter().filter(|(_, event, _)| event == "OVERLAP").collect();
    assert!(overlaps.is_empty(), "runs of one job overlapped: {overlaps:?}");
    let mut runs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (node, _, out) in &lines {
        runs.entry(out.clone()).or_default().push(node.clone());
    }
    let mut twice = 0;
    // A job the killed node had claimed but whose ffmpeg it had not started yet (no wrapper
    // line) was attempted once more than it ran: at most one per slot of the killed node.
    let mut claimed_not_started = 0;
    for job in &jobs {
        let output = job["output_files"][0].as_str().unwrap().trim_start_matches("out/").to_owned();
        let nodes = &runs[&output];
        let attempts = job["attempts"].as_u64().unwrap();
        if attempts == nodes.len() as u64 + 1 && !nodes.contains(&victim) {
            claimed_not_started += 1;
        } else {
            assert_eq!(nodes.len() as u64, attempts, "{output}: {nodes:?} {job}");
        }
        if nodes.len() > 1 {
            twice += 1;
            assert_eq!(nodes.len(), 2, "{output}: {nodes:?}");
            assert_eq!(nodes[0], victim, "{output}: only the killed node's jobs run again");
            assert_ne!(nodes[1], victim);
        }
    }
    assert!(twice >= 1, "the killed node's job ran again");
    assert!(claimed_not_started <= 2, "{claimed_not_started} jobs attempted more than they ran");
    assert_eq!(runs[&victim_output].len(), 2, "{victim_output}: {:?}", runs[&victim_output]);
    // The output is the second run's whole file, not the dead run's partial one.
    let duration = ffprobe_duration(&data.path().join("out").join(&victim_output));
    assert!((duration - f64::from(LONG_SECONDS)).abs() < 0.5, "{victim_output} lasts {duration} s");
    let survivors: HashSet<&String> = workers.keys().collect();
    assert!(runs.values().flatten().all(|n| *n == victim || survivors.contains(n)));
    drop(workers);
    drop(api);
}

//! Cluster mode with real processes: one API node (`--role api`) and three worker nodes
//! (`--role worker`; the real binary) on one PostgreSQL database and one data directory, a few
//! hundred short jobs, one worker killed with SIGKILL in the middle of two encodes (one of them
//! cancelled while its node is dead), and one worker stopped gracefully while it runs a job;
//! `GET /workers` is followed throughout.
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
const LONG_SECONDS: u32 = 20;
/// The job of the node stopped gracefully (real-time): it finishes within the node's grace.
const DRAIN_SECONDS: u32 = 20;
const LEASE_SECONDS: u64 = 5;

/// The ffmpeg wrapper of node `node` (see the module docs).
pub(crate) fn wrapper(dir: &Path, node: &str, locks: &Path, log: &Path) -> std::path::PathBuf {
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

async fn post(http: &reqwest::Client, api: &Server, command: &str, requires: &[&str], priority: i32) -> String {
    let body = json!({ "command": command, "requires": requires, "priority": priority });
    let response = http.post(api.url("/jobs")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

/// `GET /workers`, by node id.
async fn workers_of(http: &reqwest::Client, api: &Server) -> BTreeMap<String, Value> {
    let nodes: Vec<Value> = http.get(api.url("/workers")).send().await.unwrap().json().await.unwrap();
    nodes.into_iter().map(|n| (n["id"].as_str().unwrap().to_owned(), n)).collect()
}

/// Polls `GET /workers` until `check` holds for it, for at most `limit`.
async fn workers_until(
    http: &reqwest::Client,
    api: &Server,
    what: &str,
    limit: Duration,
    check: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + limit;
    loop {
        let nodes = workers_of(http, api).await;
        if check(&nodes) {
            return nodes;
        }
        assert!(Instant::now() < deadline, "{what}: never seen in {nodes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether node `id` is listed in `state`, running every job of `jobs` (and maybe more).
fn node_is(nodes: &BTreeMap<String, Value>, id: &str, state: &str, jobs: &[&str]) -> bool {
    nodes.get(id).is_some_and(|n| {
        n["state"] == state
            && jobs.iter().all(|j| n["running_jobs"].as_array().is_some_and(|running| running.iter().any(|r| r == j)))
    })
}

/// Whether no process holds the wrapper's lock of `output` (no ffmpeg writes it any more):
/// `flock -n` takes it only then.
pub(crate) fn unlocked(locks: &Path, output: &str) -> bool {
    let lock = locks.join(format!("{output}.lock"));
    std::process::Command::new("/usr/bin/flock").arg("-n").arg(&lock).arg("true").status().unwrap().success()
}

async fn get(http: &reqwest::Client, api: &Server, id: &str) -> Value {
    http.get(api.url(&format!("/jobs/{id}"))).send().await.unwrap().json().await.unwrap()
}

/// The wrapper log's lines, as (node, event, output).
pub(crate) fn log_lines(log: &Path) -> Vec<(String, String, String)> {
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
async fn three_workers_one_killed_mid_encode_one_drained_every_job_ends_once_at_a_time() {
    let db = tokio::task::block_in_place(Db::postgres);
    let data = tempfile::tempdir().unwrap();
    let tools = tempfile::tempdir().unwrap();
    let locks = tools.path().join("locks");
    std::fs::create_dir(&locks).unwrap();
    let log = tools.path().join("runs.log");
    let http = client();

    let lease = LEASE_SECONDS.to_string();
    let shared = || DataDir::Shared(data.path().to_owned());
    // The API node runs no jobs. Worker 1 (the one killed) alone takes the `victim` job, workers
    // 1 and 2 the long jobs, worker 3 (the one drained) alone the `drain` job.
    let api = Server::start_in(shared(), db.node("api"), &["--role", "api", "--lease-seconds", &lease]);
    let mut workers: BTreeMap<String, Server> = BTreeMap::new();
    for (n, labels) in [(1, "long,victim"), (2, "long"), (3, "drain")] {
        let node = format!("worker-{n}");
        let ffmpeg = wrapper(tools.path(), &node, &locks, &log);
        let args = [
            "--role",
            "worker",
            "--node-labels",
            labels,
            "--concurrency",
            "2",
            "--lease-seconds",
            &lease,
            "--shutdown-grace",
            "60s",
            "--ffmpeg-bin",
            ffmpeg.to_str().unwrap(),
        ];
        workers.insert(node.clone(), Server::start_in(shared(), db.node(&node), &args));
    }
    let nodes = workers_until(&http, &api, "four active nodes", Duration::from_secs(30), |nodes| {
        ["api", "worker-1", "worker-2", "worker-3"].iter().all(|id| node_is(nodes, id, "active", &[]))
    })
    .await;
    assert_eq!((nodes["api"]["role"].as_str(), nodes["api"]["slots"].as_u64()), (Some("api"), Some(0)));
    assert_eq!((nodes["worker-1"]["role"].as_str(), nodes["worker-1"]["slots"].as_u64()), (Some("worker"), Some(2)));

    let started = Instant::now();
    let real_time = |seconds: u32, name: &str| {
        format!("-re -f lavfi -i testsrc=duration={seconds}:size=64x64:rate=10 -c:v mpeg4 out/{name}.mp4")
    };
    // The short jobs first: posting them takes seconds on a loaded machine, and the real-time
    // jobs start the moment they are posted, so posted before they could be past the half (the
    // kill below wants them mid-encode: beyond it, the wait for that ran out). Workers start
    // short jobs meanwhile; the real-time jobs, posted next with a higher priority, come before
    // every short job left in the queue, and each takes a slot as soon as one frees.
    let mut short = Vec::new();
    for i in 0..SHORT_JOBS {
        let command = format!("-f lavfi -i testsrc=duration=0.3:size=32x32:rate=10 -c:v mpeg4 out/short{i}.mp4");
        short.push(post(&http, &api, &command, &[], 0).await);
    }
    // Posted first of them, so that worker 1 claims it at its first free slot (the only node it
    // may run on).
    let victim_job = post(&http, &api, &real_time(LONG_SECONDS, "victim"), &["victim"], 1).await;
    let mut long = Vec::new();
    for i in 0..LONG_JOBS {
        long.push(post(&http, &api, &real_time(LONG_SECONDS, &format!("long{i}")), &["long"], 1).await);
    }
    let drain_job = post(&http, &api, &real_time(DRAIN_SECONDS, "drain"), &["drain"], 1).await;

    // Worker 1 runs the victim job and a long job (worker 2 has two slots for three of them),
    // each in its ffmpeg, both with most of their encode left; worker 3 runs the drain job;
    // `/workers` shows it all. All of that is checked in one round, right before the kill: on
    // a loaded machine the rounds take seconds, and a long job chosen earlier could be over by
    // the time of the kill.
    let deadline = Instant::now() + Duration::from_secs(120);
    let long_job = 'found: loop {
        let lines = log_lines(&log);
        let started_on_1 =
            |out: &str| lines.iter().any(|(node, event, o)| node == "worker-1" && event == "start" && o == out);
        if started_on_1("victim.mp4") {
            let nodes = workers_of(&http, &api).await;
            let victim = get(&http, &api, &victim_job).await;
            for (i, job) in long.iter().enumerate() {
                if !started_on_1(&format!("long{i}.mp4")) {
                    continue;
                }
                let state = get(&http, &api, job).await;
                let done = state["progress"]["out_time_seconds"].as_f64().unwrap_or(0.0);
                let victim_done = victim["progress"]["out_time_seconds"].as_f64().unwrap_or(0.0);
                if state["status"] == "running"
                    && state["attempts"] == 1
                    && done < f64::from(LONG_SECONDS) / 2.0
                    && victim["status"] == "running"
                    && victim["attempts"] == 1
                    && victim_done < f64::from(LONG_SECONDS) / 2.0
                    && node_is(&nodes, "worker-1", "active", &[victim_job.as_str(), job.as_str()])
                    && node_is(&nodes, "worker-3", "active", &[drain_job.as_str()])
                {
                    assert_eq!(nodes["worker-1"]["labels"], json!(["long", "victim"]));
                    break 'found job.clone();
                }
            }
        }
        assert!(Instant::now() < deadline, "worker-1 never ran the victim and a long job: {lines:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Kill worker 1 (SIGKILL, the node alone: its ffmpegs live on, orphaned), then cancel the
    // victim job while its node is dead; and stop worker 3 gracefully while it runs the drain job.
    let killed = workers.remove("worker-1").unwrap();
    let killed_at = Instant::now();
    drop(killed.kill());
    let response = http.post(api.url(&format!("/jobs/{victim_job}/cancel"))).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
    let mut drained = workers.remove("worker-3").unwrap();
    let pid = drained.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    workers_until(&http, &api, "worker-3 draining its job", Duration::from_secs(30), |nodes| {
        node_is(nodes, "worker-3", "draining", &[drain_job.as_str()])
    })
    .await;

    // The killed node's long job goes back to the queue once its lease expires (the reaper of
    // any node), and the node is shown lost.
    let requeued_after = loop {
        let job = get(&http, &api, &long_job).await;
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
    let nodes = workers_until(&http, &api, "worker-1 lost", Duration::from_secs(30), |nodes| {
        node_is(nodes, "worker-1", "lost", &[])
    })
    .await;
    assert_eq!(nodes["worker-2"]["state"], "active");

    // The cancelled job ends cancelled without running again; its orphaned ffmpeg was stopped
    // and its partial output removed (by a worker node that took it over).
    let deadline = Instant::now() + Duration::from_secs(60);
    let cancelled = loop {
        let job = get(&http, &api, &victim_job).await;
        if job["status"] != "running" {
            break job;
        }
        assert!(Instant::now() < deadline, "the cancelled job never ended: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (cancelled["status"].as_str(), cancelled["attempts"].as_u64()),
        (Some("cancelled"), Some(1)),
        "{cancelled}"
    );
    assert!(unlocked(&locks, "victim.mp4"), "an ffmpeg still writes the cancelled job's output");
    assert!(!data.path().join("out/victim.mp4").exists(), "the cancelled job's partial output is left");

    // The drained node finished its job within its grace, then left the registry and exited 0.
    let exit = tokio::task::block_in_place(|| drained.child.wait()).unwrap();
    assert!(exit.success(), "the drained node exits 0: {exit:?}");
    let drained_job = get(&http, &api, &drain_job).await;
    assert_eq!((drained_job["status"].as_str(), drained_job["attempts"].as_u64()), (Some("completed"), Some(1)));
    workers_until(&http, &api, "worker-3 gone", Duration::from_secs(30), |nodes| !nodes.contains_key("worker-3")).await;

    // Every other job completes.
    let all: HashSet<&String> = long.iter().chain(&short).chain([&drain_job]).collect();
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
    eprintln!("{} jobs on 3 worker nodes (one killed, one drained) in {:?}", jobs.len() + 1, started.elapsed());
    for job in &jobs {
        assert_eq!(job["status"], "completed", "{job}");
    }

    // The runs, from the wrappers' log: no two runs of one job ever overlapped; each job ran
    // once per attempt; only the killed node's jobs ran twice, first there.
    let victim = "worker-1".to_owned();
    let lines = log_lines(&log);
    let overlaps: Vec<_> = lines.iter().filter(|(_, event, _)| event == "OVERLAP").collect();
    assert!(overlaps.is_empty(), "runs of one job overlapped: {overlaps:?}");
    let mut runs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (node, _, out) in &lines {
        runs.entry(out.clone()).or_default().push(node.clone());
    }
    assert_eq!(runs["victim.mp4"], ["worker-1"], "the cancelled job ran once, on the killed node");
    assert_eq!(runs["drain.mp4"], ["worker-3"], "the drained node's job ran once, there");
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
    let long_output = format!("long{}.mp4", long.iter().position(|j| *j == long_job).unwrap());
    assert_eq!(runs[&long_output].len(), 2, "{long_output}: {:?}", runs[&long_output]);
    // The output is the second run's whole file, not the dead run's partial one.
    let duration = ffprobe_duration(&data.path().join("out").join(&long_output));
    assert!((duration - f64::from(LONG_SECONDS)).abs() < 0.5, "{long_output} lasts {duration} s");
    assert!(runs.values().flatten().all(|n| ["worker-1", "worker-2", "worker-3"].contains(&n.as_str())));
    drop(workers);
    drop(api);
}

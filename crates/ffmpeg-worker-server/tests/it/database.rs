//! The database going away under a running node (PostgreSQL, through a [`DbProxy`]): calls
//! fail fast with 503 while it is down, and the node works again once it is back.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Db, DbProxy, Link, Server, client, wait_finished};

/// Asserts that `GET path` answers 503 `store-unavailable` within 8 s, far less than the
/// waits these tests guard against (`what` names the call in a failure).
async fn unavailable_at_once(client: &reqwest::Client, server: &Server, what: &str, path: &str) {
    let started = Instant::now();
    let response = client.get(server.url(path)).send().await.unwrap();
    let took = started.elapsed();
    let status = response.status().as_u16();
    let problem: Value = response.json().await.unwrap();
    assert_eq!((status, problem["type"].as_str()), (503, Some("/problems/store-unavailable")), "{what}: {problem}");
    assert!(took < Duration::from_secs(8), "{what} answered after {took:?}");
}

/// Tester F16: with PostgreSQL down, every API call and `/ready` waited 10 s (the pool's fixed
/// acquire timeout) before its 503, longer than any readiness probe waits. Now they answer 503
/// `store-unavailable` within `DATABASE_TIMEOUT` (default 2 s; 10 s is the old wait), `/health`
/// answers at once, and once the database is back the node serves and runs jobs again without
/// a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_calls_answer_503_within_the_database_timeout_and_recover() {
    let client = client();
    let db = tokio::task::block_in_place(Db::postgres);
    let proxy = DbProxy::start(&db.url()).await;
    let proxied = Db::Postgres { url: proxy.url(&db.url()), node_id: "f16".to_owned() };
    let server = Server::start_in(tempfile::tempdir().unwrap(), proxied, &[]);
    let submit = async |name: &str| {
        let command = format!("-f lavfi -i testsrc=duration=0.2:size=32x32:rate=10 -c:v mpeg4 {name}.mp4");
        let body = json!({ "command": command });
        client.post(server.url("/jobs")).json(&body).send().await.unwrap()
    };
    let created: Value = submit("before").await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        wait_finished(&client, &server, &id, Duration::from_secs(60)).await.last().unwrap()["status"],
        "completed"
    );

    proxy.set(Link::Down);
    for (what, path) in
        [("ready", "/ready"), ("get", &*format!("/jobs/{id}")), ("list", "/jobs"), ("workers", "/workers")]
    {
        unavailable_at_once(&client, &server, what, path).await;
    }
    // Each of these 503s is logged at WARN, not ERROR (tester finding L17: a readiness probe
    // during an outage raised an ERROR every few seconds).
    let logged = server.stderr.lock().unwrap().clone();
    let failed: Vec<&String> = logged.iter().filter(|line| line.contains("response failed")).collect();
    assert!(
        !failed.is_empty() && failed.iter().all(|line| line.contains("WARN") && !line.contains("ERROR")),
        "{failed:#?}"
    );
    let started = Instant::now();
    let response = submit("while-down").await;
    let took = started.elapsed();
    assert_eq!(response.status().as_u16(), 503, "{}", response.text().await.unwrap());
    assert!(took < Duration::from_secs(8), "submit answered after {took:?}");
    let started = Instant::now();
    assert_eq!(client.get(server.url("/health")).send().await.unwrap().status().as_u16(), 200);
    assert!(started.elapsed() < Duration::from_secs(8));

    proxy.set(Link::Up);
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(server.url("/ready")).send().await.unwrap().status().as_u16() != 200 {
        assert!(Instant::now() < deadline, "never ready again once the database was back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let created: Value = loop {
        let response = submit("after").await;
        if response.status().as_u16() == 201 {
            break response.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "submits never worked again: {}", response.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        wait_finished(&client, &server, id, Duration::from_secs(60)).await.last().unwrap()["status"],
        "completed"
    );
}

/// Issue 11, fencing: a node cut off from the database (a network partition: its connections
/// stay open and nothing passes, so no statement fails, they hang) stops its job's ffmpeg by
/// its own clock within the lease, before the database sees the lease expire and another node
/// runs the job again. The two runs never overlap (each node's ffmpeg holds a lock on the
/// output while it runs: see `cluster.rs`); the job completes once, on the other node, with
/// the other run's whole output; once the partition ends, the cut-off node is alive again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_stops_its_ffmpeg_before_another_node_runs_the_job() {
    use crate::cluster::{log_lines, unlocked, wrapper};
    const LEASE: u64 = 5;
    const SECONDS: u32 = 20;
    let client = client();
    let db = tokio::task::block_in_place(Db::postgres);
    let proxy = DbProxy::start(&db.url()).await;
    let data = tempfile::tempdir().unwrap();
    let tools = tempfile::tempdir().unwrap();
    let locks = tools.path().join("locks");
    std::fs::create_dir(&locks).unwrap();
    let log = tools.path().join("runs.log");
    let shared = || crate::support::DataDir::Shared(data.path().to_owned());
    let lease = LEASE.to_string();
    let args = |ffmpeg: &std::path::Path| {
        ["--lease-seconds", &lease, "--ffmpeg-bin", ffmpeg.to_str().unwrap()].map(str::to_owned).to_vec()
    };
    let cut_ffmpeg = args(&wrapper(tools.path(), "cut", &locks, &log));
    let cut_db = Db::Postgres { url: proxy.url(&db.url()), node_id: "cut".to_owned() };
    let cut = Server::start_in(shared(), cut_db, &cut_ffmpeg.iter().map(String::as_str).collect::<Vec<_>>());
    let command = format!("-re -f lavfi -i testsrc=duration={SECONDS}:size=64x64:rate=10 -c:v mpeg4 out/cut.mp4");
    let created: Value =
        client.post(cut.url("/jobs")).json(&json!({ "command": command })).send().await.unwrap().json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job: Value = client.get(cut.url(&format!("/jobs/{id}"))).send().await.unwrap().json().await.unwrap();
        let started = log_lines(&log).iter().any(|(node, event, _)| node == "cut" && event == "start");
        if started && job["progress"]["out_time_seconds"].as_f64() > Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "the job never ran on the first node: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The other node joins (straight to the database) once the job runs on the first.
    let other_ffmpeg = args(&wrapper(tools.path(), "other", &locks, &log));
    let other =
        Server::start_in(shared(), db.node("other"), &other_ffmpeg.iter().map(String::as_str).collect::<Vec<_>>());

    proxy.set(Link::Cut);
    let cut_at = Instant::now();
    // Its ffmpeg stops within the lease (by its own clock); the other node's reaper sees the
    // lease expire a moment later, by the database's clock, and runs the job again.
    let deadline = cut_at + Duration::from_secs(LEASE * 4 + 30);
    while !unlocked(&locks, "cut.mp4") {
        assert!(Instant::now() < deadline, "the cut-off node's ffmpeg never stopped: {:?}", log_lines(&log));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("the cut-off node's ffmpeg stopped {:?} after the cut (lease {LEASE} s)", cut_at.elapsed());
    while log_lines(&log).iter().all(|(node, _, _)| node != "other") {
        assert!(Instant::now() < deadline, "no second run: {:?}", log_lines(&log));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("the other node ran the job {:?} after the cut", cut_at.elapsed());
    let done = wait_finished(&client, &other, &id, Duration::from_secs(120)).await;
    let last = done.last().unwrap();
    assert_eq!((last["status"].as_str(), last["attempts"].as_u64()), (Some("completed"), Some(2)), "{last}");
    let lines = log_lines(&log);
    let runs: Vec<(&str, &str)> = lines.iter().map(|(node, event, _)| (node.as_str(), event.as_str())).collect();
    assert_eq!(runs, [("cut", "start"), ("other", "start")], "one run on each node, never at once");
    let duration = crate::support::ffprobe_duration(&data.path().join("out/cut.mp4"));
    assert!((duration - f64::from(SECONDS)).abs() < 0.5, "the output is the second run's whole file: {duration} s");

    // The partition ends: the first node is alive again (its late writes about the job were
    // refused: the job stayed completed).
    proxy.set(Link::Up);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes: Vec<Value> = client.get(other.url("/workers")).send().await.unwrap().json().await.unwrap();
        if nodes.iter().any(|n| n["id"] == "cut" && n["state"] == "active") {
            break;
        }
        assert!(Instant::now() < deadline, "the first node never came back: {nodes:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let job: Value = client.get(other.url(&format!("/jobs/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!((job["status"].as_str(), job["attempts"].as_u64()), (Some("completed"), Some(2)), "{job}");
}

/// Issue 11: during a network partition (connections stay open, no byte passes) an API call
/// on a pooled connection used a moment ago (not checked before use) waited for as long as
/// TCP retransmits, many minutes. Every store call now ends within three times
/// `DATABASE_TIMEOUT` (1 s here): reads
/// and a submit answer 503 `store-unavailable`, the connections they hung on are closed, not
/// reused, and once the partition ends the node serves again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_partition_calls_on_connections_used_a_moment_ago_answer_503_within_the_database_timeout() {
    let client = client();
    let db = tokio::task::block_in_place(Db::postgres);
    let proxy = DbProxy::start(&db.url()).await;
    let proxied = Db::Postgres { url: proxy.url(&db.url()), node_id: "partition".to_owned() };
    let server = Server::start_in(tempfile::tempdir().unwrap(), proxied, &["--database-timeout", "1s"]);
    let command = "-f lavfi -i testsrc=duration=0.2:size=32x32:rate=10 -c:v mpeg4 before.mp4";
    let created: Value = client
        .post(server.url("/jobs"))
        .json(&json!({ "command": command }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        wait_finished(&client, &server, &id, Duration::from_secs(60)).await.last().unwrap()["status"],
        "completed"
    );

    // Calls in quick succession (more than the pool has connections): every connection the
    // node holds was used well within the last second, so none is checked before its next use.
    let job = format!("/jobs/{id}");
    for _ in 0..40 {
        assert_eq!(client.get(server.url(&job)).send().await.unwrap().status().as_u16(), 200);
    }
    proxy.set(Link::Cut);
    for (what, path) in [("get", job.as_str()), ("list", "/jobs"), ("get again", job.as_str())] {
        unavailable_at_once(&client, &server, what, path).await;
    }
    let started = Instant::now();
    let body = json!({ "command": "-f lavfi -i testsrc=duration=0.2 -c:v mpeg4 during.mp4" });
    let response = client.post(server.url("/jobs")).json(&body).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503, "{}", response.text().await.unwrap());
    assert!(started.elapsed() < Duration::from_secs(8), "submit answered after {:?}", started.elapsed());

    proxy.set(Link::Up);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = client.get(server.url(&job)).send().await.unwrap();
        if response.status().as_u16() == 200 {
            let job: Value = response.json().await.unwrap();
            assert_eq!(job["status"], "completed", "{job}");
            break;
        }
        assert!(Instant::now() < deadline, "never answered again once the partition ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

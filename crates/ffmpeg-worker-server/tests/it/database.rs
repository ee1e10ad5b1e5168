//! The database going away under a running node (PostgreSQL, through a [`DbProxy`]): calls
//! fail fast with 503 while it is down, and the node works again once it is back.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Db, DbProxy, Link, Server, client, wait_finished};

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
        let started = Instant::now();
        let response = client.get(server.url(path)).send().await.unwrap();
        let took = started.elapsed();
        let status = response.status().as_u16();
        let problem: Value = response.json().await.unwrap();
        assert_eq!((status, problem["type"].as_str()), (503, Some("/problems/store-unavailable")), "{what}: {problem}");
        assert!(took < Duration::from_secs(8), "{what} answered after {took:?}");
    }
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


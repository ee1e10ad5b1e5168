//! Server-sent event streams of the real binary, read by a real SSE client (reqwest's byte
//! stream parsed by `eventsource-stream`): a job's status and progress, a reconnect with
//! `Last-Event-ID`, 204 after the final event, every job's events, and `access_token`.

use std::time::{Duration, Instant};

use eventsource_stream::{Event, EventStream, Eventsource as _};
use futures_util::{Stream, StreamExt as _};
use serde_json::Value;

use crate::support::{Server, Store, on_each_store, submit};

/// A client without a total timeout (streams last); each read is bounded instead.
fn stream_client() -> reqwest::Client {
    reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build().unwrap()
}

pub(crate) type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

/// Opens `path` as an event stream (optionally resuming after `last_event_id`); the answer's
/// status, and its events when it is 200.
pub(crate) async fn open(server: &Server, path: &str, last_event_id: Option<&str>) -> (u16, Option<Events>) {
    let mut request = stream_client().get(server.url(path)).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events: EventStream<_> = response.bytes_stream().eventsource();
    (status, Some(Box::pin(events.map(|e| e.map_err(|e| e.to_string())))))
}

/// The next event, or `None` when the server ended the stream; fails after 60 s.
pub(crate) async fn next(events: &mut Events) -> Option<Event> {
    tokio::time::timeout(Duration::from_secs(60), events.next())
        .await
        .expect("no event within 60 s")
        .map(|e| e.expect("the stream breaks no rule of the format"))
}

pub(crate) fn data(event: &Event) -> Value {
    serde_json::from_str(&event.data).unwrap()
}

/// What [`submit_and_follow`] saw of a job.
struct Followed {
    id: String,
    /// The statuses its stream carried, in order.
    statuses: Vec<String>,
    /// The ids of the progress events its stream carried, in order.
    progress: Vec<String>,
}

/// Submits `command` to `server` (201) and reads its job's stream to the end.
async fn submit_and_follow(server: &Server, command: &str) -> Followed {
    let (status, created) = submit(&crate::support::client(), server, command).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, events) = open(server, &format!("/jobs/{id}/events"), None).await;
    let mut events = events.unwrap();
    let (mut statuses, mut progress) = (Vec::new(), Vec::new());
    while let Some(event) = next(&mut events).await {
        match event.event.as_str() {
            "status" => statuses.push(data(&event)["status"].as_str().unwrap().to_owned()),
            "progress" => progress.push(event.id.clone()),
            other => panic!("unexpected event {other}"),
        }
    }
    Followed { id, statuses, progress }
}

/// A job that reports progress for a few seconds (progress every 0.1 s).
const SLOW_JOB: &str = "-f lavfi -i testsrc=duration=6:size=320x240:rate=25 -c:v libx264 -preset medium \
                        -stats_period 0.1 out/slow.mp4";

async fn a_job_stream_carries_status_and_progress_resumes_with_last_event_id_and_ends_with_204(store: Store) {
    let server = Server::start_on(store, &[]);
    let http = reqwest::Client::new();
    let (status, job) = submit(&http, &server, SLOW_JOB).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap();
    let path = format!("/jobs/{id}/events");

    // First connection: the current status, then live events; cut after the first progress.
    let (status, events) = open(&server, &path, None).await;
    assert_eq!(status, 200);
    let mut events = events.unwrap();
    let first = next(&mut events).await.unwrap();
    assert_eq!(first.event, "status");
    assert_eq!(data(&first)["id"], id, "a status event's data is the job");
    let mut last_id = first.id.clone();
    let progress = loop {
        let event = next(&mut events).await.expect("the job reported progress before it ended");
        assert_ne!(event.id, last_id);
        last_id = event.id.clone();
        if event.event == "progress" {
            break event;
        }
        assert_eq!(event.event, "status");
    };
    let p = data(&progress);
    assert_eq!(p["job_id"], id, "{p}");
    assert!(p["frame"].is_u64() && p["time"].is_string(), "progress JSON: {p}");
    assert!(progress.id.starts_with("2."), "progress of the run that status 2 started: {}", progress.id);
    drop(events);

    // Reconnect after that progress event: the current status first, then the rest, to the end.
    let (status, events) = open(&server, &path, Some(&progress.id)).await;
    assert_eq!(status, 200);
    let mut events = events.unwrap();
    let resumed = next(&mut events).await.unwrap();
    assert_eq!(resumed.event, "status", "a resumed stream starts with the current status");
    let mut seen = vec![resumed];
    while let Some(event) = next(&mut events).await {
        seen.push(event);
    }
    let last = seen.last().unwrap();
    assert_eq!((last.event.as_str(), data(last)["status"].as_str()), ("status", Some("completed")), "{seen:?}");
    assert_eq!(last.id, "3", "queued 1, running 2, completed 3");
    let progress_seen = seen.iter().filter(|e| e.event == "progress").count();
    let running = seen.iter().any(|e| e.event == "status" && data(e)["status"] == "running");
    assert!(!running || progress_seen > 0, "a running job's latest progress is re-sent: {seen:?}");

    // The final event seen: nothing follows (204, an EventSource stops). Another id: the final
    // status, then the end.
    assert_eq!(open(&server, &path, Some("3")).await.0, 204);
    for last_event_id in [None, Some("2.1"), Some("not-an-id")] {
        let (status, events) = open(&server, &path, last_event_id).await;
        assert_eq!(status, 200);
        let mut events = events.unwrap();
        let only = next(&mut events).await.unwrap();
        assert_eq!((only.event.as_str(), only.id.as_str()), ("status", "3"));
        assert_eq!(data(&only)["status"], "completed");
        assert!(next(&mut events).await.is_none(), "a finished job's stream ends after its final status");
    }

    // The store kept the final progress.
    let stored: Value = http.get(server.url(&format!("/jobs/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(stored["progress"]["frame"], 150, "{stored}");

    let unknown = http.get(server.url("/jobs/job_00000000deadbeef/events")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers()["content-type"], "application/problem+json");
}
on_each_store!(a_job_stream_carries_status_and_progress_resumes_with_last_event_id_and_ends_with_204);

async fn the_all_jobs_stream_names_each_job_and_filters_by_status_and_progress(store: Store) {
    let server = Server::start_on(store, &[]);
    let http = reqwest::Client::new();
    let (_, mut finals) = open(&server, "/events?status=completed,failed", None).await;
    let (_, mut everything) = open(&server, "/events?progress=true", None).await;
    let (finals, everything) = (finals.as_mut().unwrap(), everything.as_mut().unwrap());
    assert_eq!(open(&server, "/events?status=done", None).await.0, 422);
    // Streams are open once their headers arrived; the jobs come after.
    let (_, ok) = submit(&http, &server, "-f lavfi -i testsrc=duration=1:size=160x120:rate=25 ok.mp4").await;
    let (_, bad) = submit(&http, &server, "-i missing.mp4 bad.mp4").await;
    let (ok, bad) = (ok["id"].as_str().unwrap(), bad["id"].as_str().unwrap());

    let mut ended = Vec::new();
    while ended.len() < 2 {
        let event = next(finals).await.unwrap();
        assert_eq!(event.event, "status");
        let job = data(&event);
        ended.push((job["id"].as_str().unwrap().to_owned(), job["status"].as_str().unwrap().to_owned()));
    }
    ended.sort();
    let mut expected = vec![(ok.to_owned(), "completed".to_owned()), (bad.to_owned(), "failed".to_owned())];
    expected.sort();
    assert_eq!(ended, expected);

    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut statuses, mut progress) = (Vec::new(), 0);
    while statuses.len() < 6 {
        assert!(Instant::now() < deadline, "{statuses:?}");
        let event = next(everything).await.unwrap();
        let value = data(&event);
        match event.event.as_str() {
            "status" => statuses.push((value["id"].as_str().unwrap().to_owned(), event.id.clone())),
            "progress" => {
                assert_eq!(value["job_id"], ok, "only the encoding job reports progress: {value}");
                progress += 1;
            }
            other => panic!("unexpected event {other}"),
        }
    }
    assert!(progress > 0);
    for job in [ok, bad] {
        let ids: Vec<&str> = statuses.iter().filter(|(j, _)| j == job).map(|(_, id)| id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3"], "each job's queued, running and final status, in order");
    }
}
on_each_store!(the_all_jobs_stream_names_each_job_and_filters_by_status_and_progress);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_served_by_threads_below_the_servers_priority_carry_the_whole_job_and_every_jobs_events() {
    let server = Server::start(&["--stream-nice", "10"]);
    let (_, all) = open(&server, "/events?progress=true", None).await;
    let mut all = all.unwrap();
    let followed =
        submit_and_follow(&server, "-f lavfi -i testsrc=duration=2:size=160x120:rate=25 -stats_period 0.1 out/n.mp4")
            .await;
    assert_eq!(followed.statuses.last().map(String::as_str), Some("completed"), "{:?}", followed.statuses);
    assert!(!followed.progress.is_empty(), "no progress event");
    // The all-jobs stream, also on those threads, saw the same job end.
    loop {
        let event = next(&mut all).await.expect("the all-jobs stream ended");
        if event.event == "status"
            && data(&event)["id"] == followed.id.as_str()
            && data(&event)["status"] == "completed"
        {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_take_the_token_as_access_token_which_is_never_logged() {
    let token = "sse-test-token-9f3a";
    let server = Server::start_logging(&["--api-token", token], "debug");
    let http = reqwest::Client::new();
    let (status, job) = {
        let request = http.post(server.url("/jobs")).bearer_auth(token);
        let resp = request.json(&serde_json::json!({"command": "-i missing.mp4 x.mp4"})).send().await.unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap();

    assert_eq!(open(&server, &format!("/jobs/{id}/events"), None).await.0, 401);
    assert_eq!(open(&server, &format!("/jobs/{id}/events?access_token=wrong"), None).await.0, 401);
    let (status, events) = open(&server, &format!("/jobs/{id}/events?access_token={token}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(next(&mut events.unwrap()).await.unwrap().event, "status");
    assert_eq!(open(&server, &format!("/events?access_token={token}"), None).await.0, 200);
    let other = http.get(server.url(&format!("/jobs/{id}?access_token={token}"))).send().await.unwrap();
    assert_eq!(other.status(), 401, "only the stream endpoints take a token in the query");

    let deadline = Instant::now() + Duration::from_secs(10);
    let logged = loop {
        let lines = server.stderr.lock().unwrap().clone();
        if lines.iter().any(|l| l.contains("access_token=REDACTED")) || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(logged.iter().any(|l| l.contains("access_token=REDACTED")), "requests are logged with their URI");
    let leaks: Vec<&String> = logged.iter().filter(|l| l.contains(token)).collect();
    assert!(leaks.is_empty(), "the token reached the log: {leaks:?}");
}

async fn at_shutdown_a_stream_carries_the_requeue_then_ends_cleanly(store: Store) {
    let mut server = Server::start_on(store, &["--concurrency", "1", "--shutdown-grace", "1s"]);
    crate::support::make_clip(server.data.path(), "in.mp4", 4);
    let http = reqwest::Client::new();
    let (_, job) = submit(&http, &server, "-re -i in.mp4 -c:v libx264 -preset ultrafast long.mp4").await;
    let id = job["id"].as_str().unwrap();
    let (_, events) = open(&server, &format!("/jobs/{id}/events"), None).await;
    let mut events = events.unwrap();
    loop {
        let event = next(&mut events).await.expect("the job runs");
        if event.event == "status" && data(&event)["status"] == "running" {
            break;
        }
    }
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut statuses = Vec::new();
    while let Some(event) = next(&mut events).await {
        if event.event == "status" {
            statuses.push((data(&event)["status"].as_str().unwrap().to_owned(), event.id));
        }
    }
    assert_eq!(statuses, [("queued".to_owned(), "3".to_owned())], "the requeue, then a clean end of the stream");
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the server exits once its streams ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
on_each_store!(at_shutdown_a_stream_carries_the_requeue_then_ends_cleanly);

/// Cluster mode, two real nodes on one PostgreSQL database (their own data directories: the
/// jobs read lavfi and write nothing): an API-only node and a worker node. A stream on the API
/// node follows a job the worker node runs (its running status, its progress, with the worker
/// node's event ids, and its end: tester finding F4), `/events` there too; and a cancel sent to
/// the API node stops ffmpeg on the worker node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_one_node_follows_a_job_run_on_another_and_a_cancel_there_stops_it() {
    use crate::support::Db;

    let url = tokio::task::block_in_place(|| pg_harness::shared().fresh_database());
    let db = |node: &str| Db::Postgres { url: url.clone(), node_id: node.to_owned() };
    let api = Server::start_in(tempfile::tempdir().unwrap(), db("api"), &["--concurrency", "0"]);
    let _worker = Server::start_in(tempfile::tempdir().unwrap(), db("worker"), &["--concurrency", "1"]);
    let (_, all) = open(&api, "/events?progress=true", None).await;
    let mut all = all.unwrap();

    let job = "-re -f lavfi -i testsrc=duration=4:size=160x120:rate=25 -stats_period 0.1 -f null -";
    let Followed { id, statuses, progress } = submit_and_follow(&api, job).await;
    let id = id.as_str();
    assert_eq!(statuses.last().map(String::as_str), Some("completed"), "{statuses:?}");
    assert!(statuses.iter().any(|s| s == "running"), "{statuses:?}");
    // A progress block every 0.1 s for 4 s: far more than the store's one a second.
    assert!(progress.len() >= 10, "{progress:?}");
    assert!(progress.iter().all(|p| p.starts_with("2.")), "ids as the worker node numbered them: {progress:?}");
    let mut seen_on_all = 0;
    loop {
        let event = next(&mut all).await.expect("the all-jobs stream ended");
        let body = data(&event);
        assert_eq!(body["id"].as_str().or(body["job_id"].as_str()), Some(id), "{body}");
        seen_on_all += 1;
        if event.event == "status" && body["status"] == "completed" {
            break;
        }
    }
    assert!(seen_on_all > 10, "the all-jobs stream carried the progress too");

    let long = "-re -f lavfi -i testsrc=duration=600:size=160x120:rate=25 -f null -";
    let http = crate::support::client();
    let (_, created) = submit(&http, &api, long).await;
    let id = created["id"].as_str().unwrap();
    let (_, events) = open(&api, &format!("/jobs/{id}/events"), None).await;
    let mut events = events.unwrap();
    while let Some(event) = next(&mut events).await {
        if event.event == "progress" {
            break;
        }
    }
    let cancelled = http.post(api.url(&format!("/jobs/{id}/cancel"))).send().await.unwrap();
    assert_eq!(cancelled.status(), 200);
    let mut last = None;
    while let Some(event) = next(&mut events).await {
        last = Some(event);
    }
    let last = last.expect("the stream ended without a final status");
    assert_eq!((last.event.as_str(), data(&last)["status"].as_str()), ("status", Some("cancelled")), "{last:?}");
}

/// An API node (`--role api`) and a worker node on one SQLite file, as docs/deployment.md
/// allows: the API node's job stream sees the job the worker runs, `running`, its progress and
/// its end, and its all-jobs stream each of its statuses once (tester finding F26: the API node
/// saw only the submit, and `submit --wait` waited for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_node_on_a_shared_sqlite_file_streams_what_a_worker_node_runs() {
    let api = Server::start(&["--role", "api"]);
    let _worker = api.join("worker", &["--role", "worker"]);
    let (_, all) = open(&api, "/events", None).await;
    let mut all = all.unwrap();
    let job = "-re -f lavfi -i testsrc=duration=3:size=160x120:rate=25 -f null -";
    let Followed { id, statuses, progress } = submit_and_follow(&api, job).await;
    let id = id.as_str();
    assert_eq!(statuses, ["queued", "running", "completed"], "{progress:?}");
    // 3 s of run; the worker stores its progress once a second.
    assert!(!progress.is_empty() && progress.iter().all(|p| p.starts_with("2.")), "{progress:?}");

    let mut on_all = Vec::new();
    while on_all.last().is_none_or(|s| s != "completed") {
        let event = next(&mut all).await.expect("the all-jobs stream ended");
        assert_eq!(event.event, "status", "{event:?}");
        let body = data(&event);
        assert_eq!(body["id"].as_str(), Some(id), "{body}");
        on_all.push(body["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(on_all, ["queued", "running", "completed"]);
}

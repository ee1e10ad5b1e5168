//! The typed client ([`Client`]) against the real server (in-process, see `support`).

use std::net::TcpListener;
use std::time::Duration;

use ffmpeg_worker_client::api::{CreateJobRequest, JobStatusWire};
use ffmpeg_worker_client::{Client, ClientError, JobEvent, ListQuery, WaitEvent, WaitOptions};

use crate::media::make_clip;
use crate::support::{Options, Server};

fn request(command: &str) -> CreateJobRequest {
    CreateJobRequest::command(command)
}

fn status_of(e: &ClientError) -> Option<(u16, &str)> {
    e.problem().map(|p| (p.status, p.type_.as_str()))
}

#[tokio::test]
async fn submit_wait_log_and_delete_a_real_transcode() {
    let server = Server::start();
    make_clip(server.data.path(), "input.mp4", 1);
    let client = Client::new(&server.base, None).unwrap();
    assert_eq!(client.health().await.unwrap().status, "ok");
    let nodes = client.workers().await.unwrap();
    let ids: Vec<(&str, u32)> = nodes.iter().map(|n| (n.id.as_str(), n.slots)).collect();
    assert_eq!(ids, [("client-test", 1)], "{nodes:?}");

    let mut submit = request("-i input.mp4 -c:v libx264 -preset ultrafast out.mp4");
    submit.priority = 2;
    submit.metadata.insert("asset".to_owned(), "a-42".to_owned());
    let job = client.submit(&submit).await.unwrap();
    assert_eq!((job.status, job.priority), (JobStatusWire::Queued, 2));
    assert_eq!(job.metadata["asset"], "a-42");

    let mut seen = Vec::new();
    let options = WaitOptions { poll_interval: Duration::from_millis(50), ..WaitOptions::default() };
    let done = client
        .wait_with(&job.id, &options, |event| {
            if let WaitEvent::Job(j) = event {
                seen.push(j.status);
            }
        })
        .await
        .unwrap();
    assert_eq!(done.status, JobStatusWire::Completed, "{done:?}");
    assert_eq!(done.output_files, ["out.mp4"]);
    assert_eq!(seen.last(), Some(&JobStatusWire::Completed), "every snapshot is reported, the last one final");
    let progress = done.progress.as_ref().expect("progress");
    assert_eq!((progress.frame, progress.percent), (25, Some(100.0)));
    assert!(done.started_at.is_some() && done.completed_at >= done.started_at, "{done:?}");
    assert_eq!(client.get(&job.id).await.unwrap(), done);

    assert!(client.log(&job.id).await.unwrap().contains("Duration: 00:00:01"));
    let cancel = client.cancel(&job.id).await.unwrap_err();
    assert_eq!(status_of(&cancel), Some((409, "/problems/job-state-conflict")), "{cancel:?}");

    client.delete(&job.id).await.unwrap();
    let gone = client.get(&job.id).await.unwrap_err();
    assert_eq!(status_of(&gone), Some((404, "/problems/job-not-found")), "{gone:?}");
    assert!(!gone.is_transient());
    assert!(server.path("out.mp4").is_file());
}

#[tokio::test]
async fn a_refused_command_is_a_problem_naming_the_argument_and_rule() {
    let server = Server::start_with(Options::default());
    let client = Client::new(&server.base, None).unwrap();
    let err = client.submit(&request("-i ../x.mp4 out.mp4")).await.unwrap_err();
    let problem = err.problem().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!((problem.status, problem.type_.as_str()), (422, "/problems/policy-violation"));
    assert_eq!(problem.detail, "argument 2 `../x.mp4`: path escapes the data directory");
    assert_eq!(
        (problem.argument_position, problem.argument.as_deref(), problem.rule.as_deref()),
        (Some(2), Some("../x.mp4"), Some("path-escapes"))
    );
    assert_eq!(
        err.to_string(),
        "argument 2 `../x.mp4`: path escapes the data directory (422 Refused by the security policy)"
    );
    assert!(client.list(&ListQuery::default()).await.unwrap().jobs.is_empty(), "nothing was queued");
}

#[tokio::test]
async fn list_pages_follow_next_links_and_filter_by_status() {
    let server = Server::start_with(Options::default());
    let client = Client::new(&server.base, None).unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(client.submit(&request(&format!("-i input.mp4 out{i}.mp4"))).await.unwrap().id);
    }
    let cancelled = client.cancel(&ids[1]).await.unwrap();
    assert_eq!(cancelled.status, JobStatusWire::Cancelled);
    let ids_of =
        |jobs: &[ffmpeg_worker_client::api::JobResponse]| jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>();

    let query = ListQuery { statuses: vec![], limit: Some(2) };
    let first = client.list(&query).await.unwrap();
    assert_eq!(ids_of(&first.jobs), ids[..2]);
    let second = client.next_page(first.next.as_ref().expect("a next page")).await.unwrap();
    assert_eq!(ids_of(&second.jobs), ids[2..4]);
    let third = client.next_page(second.next.as_ref().expect("a next page")).await.unwrap();
    assert_eq!((ids_of(&third.jobs), third.next), (ids[4..].to_vec(), None));
    assert_eq!(ids_of(&client.list_all(&query).await.unwrap()), ids);

    let queued = client.list_all(&ListQuery { statuses: vec![JobStatusWire::Queued], limit: Some(1) }).await.unwrap();
    let expected: Vec<String> = ids.iter().filter(|id| **id != ids[1]).cloned().collect();
    assert_eq!(ids_of(&queued), expected);
    let only = client.list(&ListQuery { statuses: vec![JobStatusWire::Cancelled], limit: None }).await.unwrap();
    assert_eq!((ids_of(&only.jobs), only.next), (vec![ids[1].clone()], None));
    let statuses = vec![JobStatusWire::Cancelled, JobStatusWire::Failed, JobStatusWire::Queued];
    let several = client.list_all(&ListQuery { statuses, limit: Some(2) }).await.unwrap();
    assert_eq!(ids_of(&several), ids, "any of several statuses, every page");

    let too_big = client.list(&ListQuery { statuses: vec![], limit: Some(5000) }).await.unwrap_err();
    assert_eq!(too_big.status(), Some(422), "{too_big:?}");
    // Waiting on a finished job answers at once.
    assert_eq!(client.wait(&ids[1]).await.unwrap().status, JobStatusWire::Cancelled);
}

#[tokio::test]
async fn the_token_is_sent_as_a_bearer_token() {
    let server = Server::start_with(Options { concurrency: 0, tokens: vec!["s3cret".to_owned()] });
    let without = Client::new(&server.base, None).unwrap().list(&ListQuery::default()).await.unwrap_err();
    assert_eq!(status_of(&without), Some((401, "/problems/unauthorized")), "{without:?}");
    let wrong = Client::new(&server.base, Some("nope")).unwrap().list(&ListQuery::default()).await.unwrap_err();
    assert_eq!(wrong.status(), Some(401));
    let right = Client::new(&server.base, Some("s3cret")).unwrap();
    assert!(right.list(&ListQuery::default()).await.unwrap().jobs.is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_transient_and_waiting_gives_up_after_its_budget() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = Client::new(&format!("http://127.0.0.1:{port}/"), None).unwrap();
    let err = client.get("job_0123456789abcdef").await.unwrap_err();
    assert!(matches!(&err, ClientError::Unreachable { url, .. } if url.path() == "/jobs/job_0123456789abcdef"));
    assert!(err.is_transient() && err.status().is_none());
    assert!(std::error::Error::source(&err).is_some(), "the transport error is kept as the source");

    let options = WaitOptions {
        poll_interval: Duration::from_millis(10),
        transient_budget: Duration::from_millis(100),
        ..WaitOptions::default()
    };
    let mut retries = 0;
    let waited = client
        .wait_with("job_0123456789abcdef", &options, |event| {
            if let WaitEvent::Retrying { error, retry_in } = event {
                assert!(error.is_transient() && retry_in >= options.poll_interval);
                retries += 1;
            }
        })
        .await
        .unwrap_err();
    assert!(matches!(waited, ClientError::Unreachable { .. }), "{waited:?}");
    assert!(retries >= 1, "transient failures are retried before giving up");
}

#[test]
fn invalid_base_urls_are_refused_up_front() {
    for bad in ["localhost:8000", "ftp://h/", "not a url"] {
        let err = Client::new(bad, None).unwrap_err();
        assert!(matches!(err, ClientError::InvalidUrl { .. }), "{bad}: {err:?}");
    }
}

/// Waiting follows the event stream: every progress report arrives, and it ends with the final
/// status without a single poll (the poll interval is an hour).
#[tokio::test]
async fn waiting_follows_the_event_stream() {
    let server = Server::start();
    make_clip(server.data.path(), "input.mp4", 2);
    let client = Client::new(&server.base, None).unwrap();
    let job = client
        .submit(&request("-i input.mp4 -c:v libx264 -preset ultrafast -stats_period 0.05 out.mp4"))
        .await
        .unwrap();
    let options = WaitOptions { poll_interval: Duration::from_secs(3600), ..WaitOptions::default() };
    let mut seen = Vec::new();
    let waited = client.wait_with(&job.id, &options, |event| {
        if let WaitEvent::Job(j) = event {
            seen.push((j.status, j.progress.as_ref().map(|p| p.frame)));
        }
    });
    let done = tokio::time::timeout(Duration::from_secs(60), waited).await.expect("no polling needed").unwrap();
    assert_eq!(done.status, JobStatusWire::Completed, "{done:?}");
    assert_eq!(seen.last().map(|s| s.0), Some(JobStatusWire::Completed));
    let frames: Vec<u64> = seen.iter().filter(|(s, _)| *s == JobStatusWire::Running).filter_map(|(_, f)| *f).collect();
    assert!(!frames.is_empty() && frames.windows(2).all(|w| w[0] <= w[1]), "live progress while running: {seen:?}");

    // The stream itself: 204 once the final event was seen.
    let mut events = client.events(&job.id, None).await.unwrap().expect("a stream");
    assert!(matches!(events.next().await, Some(JobEvent::Status(j)) if j.status == JobStatusWire::Completed));
    assert!(events.next().await.is_none());
    let last = events.last_event_id().expect("an id").to_owned();
    assert!(client.events(&job.id, Some(&last)).await.unwrap().is_none(), "204 after the final event");
}

/// A stream cut before the job ended (here: a server whose stream stops after one event) falls
/// back to polling, which finds the job finished.
#[tokio::test]
async fn waiting_falls_back_to_polling_when_the_stream_is_cut() {
    use axum::routing::get;
    let job = |status: &str| {
        serde_json::json!({"id": "job_0123456789abcdef", "status": status, "command": "-i a.mp4 b.mp4",
            "created_at": "2026-11-30T05:00:00Z", "started_at": null, "completed_at": null,
            "progress": null, "output_files": [], "error": null})
    };
    let running = format!("id: 2\nevent: status\ndata: {}\n\n", job("running"));
    let completed = job("completed");
    let router = axum::Router::new()
        .route(
            "/jobs/{id}/events",
            get(move || async move { ([("content-type", "text/event-stream")], running.clone()) }),
        )
        .route("/jobs/{id}", get(move || async move { axum::Json(completed.clone()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let client = Client::new(&base, None).unwrap();
    let options = WaitOptions { poll_interval: Duration::from_millis(10), ..WaitOptions::default() };
    let mut seen = Vec::new();
    let done = client
        .wait_with("job_0123456789abcdef", &options, |event| {
            if let WaitEvent::Job(j) = event {
                seen.push(j.status);
            }
        })
        .await
        .unwrap();
    assert_eq!(done.status, JobStatusWire::Completed);
    assert_eq!(seen, [JobStatusWire::Running, JobStatusWire::Completed], "the stream's status, then the poll's");
}

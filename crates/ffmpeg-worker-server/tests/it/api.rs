//! The router in-process (`tower::ServiceExt::oneshot`), without workers: jobs stay queued.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ffmpeg_core::sandbox::Sandbox;
use ffmpeg_worker_server::{AppState, app};
use http_body_util::BodyExt;
use jobs::{FfmpegConfig, FfmpegRunner, Jobs, JobsConfig, MemoryStore};
use serde_json::{Value, json};
use tower::ServiceExt;

pub(crate) struct TestApp {
    pub(crate) state: AppState,
    pub(crate) data: tempfile::TempDir,
}

/// Held by the tests that send made-up methods and paths: the metrics test counts the series
/// such requests create in the process-wide recorder, so the two must not overlap.
static MADE_UP_REQUESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) fn test_app() -> TestApp {
    let data = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(data.path()).unwrap();
    let runner = FfmpegRunner::new(FfmpegConfig::new("ffmpeg", data.path()));
    let jobs = Jobs::new(Arc::new(MemoryStore::new()), Arc::new(runner), sandbox, JobsConfig::default());
    TestApp { state: AppState::new(jobs), data }
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) body: Value,
}

impl TestApp {
    pub(crate) async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let resp = app(self.state.clone()).oneshot(req.body(body).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Reply { status, headers, body }
    }

    pub(crate) async fn submit(&self, command: &str) -> Reply {
        self.call("POST", "/jobs", Some(json!({ "command": command }))).await
    }
}

#[tokio::test]
async fn health_is_ok() {
    let app = test_app();
    let r = app.call("GET", "/health", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"status": "ok"}));
}

#[tokio::test]
async fn submit_returns_201_with_location_and_the_original_fields() {
    let app = test_app();
    let r = app.submit("-i input.mp4 -c:v libx264 -crf 23 output.mp4").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.body["id"].as_str().unwrap();
    assert!(id.starts_with("job_") && id.len() == 20, "{id}");
    assert_eq!(r.headers[header::LOCATION], format!("/jobs/{id}"));
    assert_eq!(r.body["status"], "queued");
    assert_eq!(r.body["command"], "-i input.mp4 -c:v libx264 -crf 23 output.mp4");
    assert_eq!(r.body["output_files"], json!([]));
    for field in ["started_at", "completed_at", "progress", "error"] {
        assert!(r.body[field].is_null(), "{field} should be null: {}", r.body);
    }
    let got = app.call("GET", &format!("/jobs/{id}"), None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["id"], id);
}

/// `args` is an argument list taken as it is; the job shows it and the command line it stands
/// for (shell-quoted), and a `command` job shows the list its line splits into.
#[tokio::test]
async fn submit_takes_an_argument_list_and_shows_both_forms() {
    let app = test_app();
    let args = json!(["-i", "my clip.mp4", "-metadata", "title=it's \"ok\" $HOME", "out/C:\\x.mp4"]);
    let r = app.call("POST", "/jobs", Some(json!({ "args": args, "priority": 3 }))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["args"], args);
    let line = r.body["command"].as_str().unwrap();
    assert_eq!(json!(shell_words::split(line).unwrap()), args, "the line splits back into the list: {line}");
    assert_eq!(r.body["priority"], 3);
    let got = app.call("GET", &format!("/jobs/{}", r.body["id"].as_str().unwrap()), None).await;
    assert_eq!((&got.body["args"], &got.body["command"]), (&args, &r.body["command"]));

    let r = app.submit("-i 'my clip.mp4' -c:v libx264 out/a.mp4").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["args"], json!(["-i", "my clip.mp4", "-c:v", "libx264", "out/a.mp4"]));
    assert_eq!(r.body["command"], "-i 'my clip.mp4' -c:v libx264 out/a.mp4");
}

/// Exactly one of `command` and `args`; an argument list is checked like a command line.
#[tokio::test]
async fn submit_needs_exactly_one_of_command_and_args() {
    let app = test_app();
    for (body, type_, position) in [
        (json!({"command": "-i a.mp4 b.mp4", "args": ["-i", "a.mp4", "b.mp4"]}), "/problems/invalid-request", None),
        (json!({"priority": 1}), "/problems/invalid-request", None),
        (json!({}), "/problems/invalid-request", None),
        (json!({"args": []}), "/problems/invalid-command", None),
        (json!({"args": ["-i", "../x.mp4", "b.mp4"]}), "/problems/policy-violation", Some(2)),
        (json!({"args": ["-i", "a.mp4", "-c:v"]}), "/problems/invalid-command", Some(3)),
        (json!({"args": ["-i", "a\u{0}.mp4", "b.mp4"]}), "/problems/invalid-command", Some(2)),
        (json!({"args": "-i a.mp4 b.mp4"}), "/problems/invalid-request", None),
        // serde's array form of a struct (fields by position) is not the API (tester J1).
        (json!(["-i a.mp4 b.mp4", null, 5]), "/problems/invalid-request", None),
        (json!([]), "/problems/invalid-request", None),
    ] {
        let r = app.call("POST", "/jobs", Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.body);
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json", "{body}");
        assert_eq!(r.body["type"], type_, "{body}: {}", r.body);
        assert_eq!(r.body["argument_position"].as_u64(), position, "{body}: {}", r.body);
    }
    let r = app.call("POST", "/jobs", Some(json!({"command": "-i a.mp4 b.mp4", "args": ["x"]}))).await;
    assert!(r.body["detail"].as_str().unwrap().contains("exactly one of `command`"), "{}", r.body);
    let r = app.call("POST", "/jobs", Some(json!(["-i a.mp4 b.mp4"]))).await;
    assert!(r.body["detail"].as_str().unwrap().contains("must be a JSON object"), "{}", r.body);
    assert_eq!(app.call("GET", "/jobs", None).await.body, json!([]), "nothing may be queued");
}

#[tokio::test]
async fn refused_commands_are_422_problems_naming_the_argument_and_never_queued() {
    let app = test_app();
    let cases = [
        ("-i ../secret.mp4 out.mp4", "/problems/policy-violation", Some(2)),
        ("-i /etc/passwd out.mp4", "/problems/policy-violation", Some(2)),
        ("-i http://example.com/a.mp4 out.mp4", "/problems/policy-violation", Some(2)),
        ("-i in.mp4 -vf subtitles=/etc/passwd out.mp4", "/problems/policy-violation", Some(3)),
        ("-i in.mp4 -dump_attachment:t:0 x.ttf out.mp4", "/problems/policy-violation", Some(3)),
        ("-i in.mp4 -c:v", "/problems/invalid-command", Some(3)),
        ("-i in.mp4", "/problems/invalid-command", None),
        ("in.mp4 out.mp4", "/problems/invalid-command", None),
        ("-i \"unbalanced out.mp4", "/problems/invalid-command", None),
        ("-i in.mp4 -metadata title=a\u{0}b out.mp4", "/problems/invalid-command", Some(4)),
        ("-i in1.png -vf negate -start_number 1 in%d.png", "/problems/policy-violation", Some(7)),
        ("-i in%d.png -start_number 1 -frames:v 1 in1.png", "/problems/policy-violation", Some(7)),
        ("", "/problems/invalid-command", None),
    ];
    for (command, type_, position) in cases {
        let r = app.submit(command).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{command}: {}", r.body);
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json", "{command}");
        assert_eq!(r.body["type"], type_, "{command}: {}", r.body);
        assert_eq!(r.body["status"], 422);
        assert!(!r.body["detail"].as_str().unwrap().is_empty());
        assert_eq!(r.body["argument_position"].as_u64(), position.map(|p: u64| p), "{command}: {}", r.body);
        if type_ == "/problems/policy-violation" {
            assert!(r.body["rule"].is_string(), "{command}: the rule is named: {}", r.body);
        }
    }
    let list = app.call("GET", "/jobs", None).await;
    assert_eq!(list.body, json!([]), "nothing may be queued");
    assert!(std::fs::read_dir(app.data.path()).unwrap().next().is_none(), "nothing may be written");
}

#[tokio::test]
async fn log_levels_ffmpeg_refuses_are_422_naming_the_value() {
    let app = test_app();
    // ffmpeg 5.1 exits with "Invalid loglevel" for each of these (`opt_loglevel()`).
    let refused = [
        ("-loglevel loud -i in.mp4 out.mp4", 1, "loud"),
        ("-v errors -i in.mp4 out.mp4", 1, "errors"),
        ("-loglevel level+loud -i in.mp4 out.mp4", 1, "level+loud"),
        ("-loglevel repeat+nope -i in.mp4 out.mp4", 1, "repeat+nope"),
        ("-loglevel error -v 12x -i in.mp4 out.mp4", 3, "12x"),
    ];
    for (command, position, value) in refused {
        let r = app.submit(command).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{command}: {}", r.body);
        assert_eq!(r.body["type"], "/problems/policy-violation", "{command}: {}", r.body);
        assert_eq!(r.body["rule"], "invalid-value", "{command}: {}", r.body);
        assert_eq!(r.body["argument_position"], position, "{command}: {}", r.body);
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(&format!("invalid log level `{value}`")), "{command}: {detail}");
    }
    assert_eq!(app.call("GET", "/jobs", None).await.body, json!([]), "nothing may be queued");
    for command in [
        "-loglevel repeat+level+error -i in.mp4 out.mp4",
        "-v 24 -i in.mp4 out.mp4",
        "-v -repeat -i in.mp4 o.mp4",
        "-v level+ -i in.mp4 p.mp4",
    ] {
        let r = app.submit(command).await;
        assert_eq!(r.status, StatusCode::CREATED, "{command}: {}", r.body);
    }
}

#[tokio::test]
async fn commands_the_os_would_refuse_to_start_are_422_problems_never_queued() {
    let app = test_app();
    let long_name = format!("{}.mp4", "n".repeat(296));
    // About 2 KB of format whitelist per input: 1,500 inputs pass the 2 MiB argument limit
    // while the request body stays far below its 64 KiB limit.
    let many_inputs = format!("{}-filter_complex concat=n=1500 out.mp4", "-i a.mp4 ".repeat(1500));
    for (command, expected) in [
        (
            format!("-i in.mp4 {long_name}"),
            format!("`{long_name}`: a file name of 300 bytes; file names are at most 255"),
        ),
        (many_inputs, "the operating system starts a program with at most".to_owned()),
    ] {
        let r = app.submit(&command).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(r.body["type"], "/problems/invalid-request", "{}", r.body);
        assert!(r.body["detail"].as_str().unwrap().contains(&expected), "{}", r.body);
    }
    let list = app.call("GET", "/jobs", None).await;
    assert_eq!(list.body, json!([]), "nothing may be queued");
}

#[tokio::test]
async fn unknown_fields_and_bad_bodies_are_problems_not_500() {
    let app = test_app();
    let r = app.call("POST", "/jobs", Some(json!({"command": "-i a.mp4 b.mp4", "priorty": 3}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body["detail"].as_str().unwrap().contains("priorty"), "{}", r.body);
    let r = app.call("POST", "/jobs", Some(json!({"cmd": "x"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app.call("POST", "/jobs", Some(json!({"command": "-i a.mp4 b.mp4", "timeout_seconds": 0}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let many: serde_json::Map<String, Value> = (0..40).map(|i| (format!("k{i}"), json!("v"))).collect();
    let r = app.call("POST", "/jobs", Some(json!({"command": "-i a.mp4 b.mp4", "metadata": many}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let raw =
        Request::post("/jobs").header(header::CONTENT_TYPE, "application/json").body(Body::from("{not json")).unwrap();
    let resp = ffmpeg_worker_server::app(app_state(&app)).oneshot(raw).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/problem+json");
}

fn app_state(app: &TestApp) -> AppState {
    app.state.clone()
}

#[tokio::test]
async fn submit_fields_are_echoed_and_timeout_is_capped() {
    let app = test_app();
    let body =
        json!({"command": "-i a.mp4 b.mp4", "priority": 5, "timeout_seconds": 999_999, "metadata": {"asset": "a-42"}});
    let r = app.call("POST", "/jobs", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["priority"], 5);
    assert_eq!(r.body["timeout_seconds"], 3600, "capped by the server's limit");
    assert_eq!(r.body["metadata"], json!({"asset": "a-42"}));
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404() {
    let app = test_app();
    for uri in ["/jobs/nonexistent", "/jobs/job_0000000000000000", "/jobs/job_0000000000000000/cancel"] {
        let method = if uri.ends_with("cancel") { "POST" } else { "GET" };
        let r = app.call(method, uri, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(r.body["type"], "/problems/job-not-found");
    }
}

#[tokio::test]
async fn list_filters_pages_and_rejects_bad_parameters() {
    let app = test_app();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.submit(&format!("-i in{i}.mp4 out{i}.mp4")).await.body["id"].as_str().unwrap().to_owned());
    }
    let cancelled = app.call("POST", &format!("/jobs/{}/cancel", ids[1]), None).await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.body["status"], "cancelled");

    let all = app.call("GET", "/jobs", None).await;
    let got: Vec<&str> = all.body.as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>(), "oldest first");

    let queued = app.call("GET", "/jobs?status=queued", None).await;
    assert_eq!(queued.body.as_array().unwrap().len(), 4);
    let c = app.call("GET", "/jobs?status=cancelled", None).await;
    assert_eq!(c.body.as_array().unwrap().len(), 1);
    // Several statuses, as `/events` takes them (tester finding G21): a comma list, or the
    // parameter repeated; oldest first either way, and the next page keeps the filter.
    let listed = |r: &Reply| -> Vec<String> {
        r.body.as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect()
    };
    for uri in [
        "/jobs?status=cancelled,queued",
        "/jobs?status=queued&status=cancelled",
        "/jobs?status=queued,cancelled,queued",
    ] {
        let r = app.call("GET", uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
        assert_eq!(listed(&r), ids, "{uri}");
    }
    let r = app.call("GET", "/jobs?status=running,cancelled", None).await;
    assert_eq!(listed(&r), [ids[1].clone()]);
    let first = app.call("GET", "/jobs?status=queued&status=cancelled&limit=2", None).await;
    assert_eq!(listed(&first), ids[..2]);
    let link = first.headers[header::LINK].to_str().unwrap();
    let next = &link[1..link.find('>').unwrap()];
    assert!(next.contains("status=queued,cancelled"), "{next}");
    assert_eq!(listed(&app.call("GET", next, None).await), ids[2..4]);

    // Paging with Link headers walks every job exactly once.
    let mut uri = "/jobs?limit=2".to_owned();
    let mut walked = Vec::new();
    loop {
        let page = app.call("GET", &uri, None).await;
        assert_eq!(page.status, StatusCode::OK);
        walked.extend(page.body.as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        let Some(link) = page.headers.get(header::LINK) else { break };
        let link = link.to_str().unwrap();
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        uri = link[1..link.find('>').unwrap()].to_owned();
    }
    assert_eq!(walked, ids);

    for bad in [
        "/jobs?status=done",
        "/jobs?status=",
        "/jobs?status=queued,",
        "/jobs?status=queued,done",
        "/jobs?status=queued&status=done",
        "/jobs?limit=2&limit=3",
        "/jobs?limit=0",
        "/jobs?limit=1001",
        "/jobs?limit=abc",
        "/jobs?limit=",
        "/jobs?cursor=zz",
        "/jobs?cursor=",
        "/jobs?cursor=-1",
        "/jobs?cursor=9223372036854775807",
    ] {
        let r = app.call("GET", bad, None).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {}", r.body);
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
    }
}

#[tokio::test]
async fn cancel_and_delete_follow_the_state_rules() {
    let app = test_app();
    let id = app.submit("-i a.mp4 b.mp4").await.body["id"].as_str().unwrap().to_owned();
    let del = app.call("DELETE", &format!("/jobs/{id}"), None).await;
    assert_eq!(del.status, StatusCode::CONFLICT, "a queued job cannot be deleted");
    assert_eq!(del.body["type"], "/problems/job-state-conflict");
    assert_eq!(app.call("POST", &format!("/jobs/{id}/cancel"), None).await.status, StatusCode::OK);
    let again = app.call("POST", &format!("/jobs/{id}/cancel"), None).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "a finished job cannot be cancelled");
    assert_eq!(app.call("DELETE", &format!("/jobs/{id}"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.call("GET", &format!("/jobs/{id}"), None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn shutting_down_refuses_new_jobs_with_503_and_retry_after() {
    let app = test_app();
    app.state.stop_accepting();
    let r = app.submit("-i a.mp4 b.mp4").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    assert_eq!(r.body["type"], "/problems/shutting-down");
}

#[tokio::test]
async fn docs_and_openapi_are_served() {
    let app = test_app();
    let spec = app.call("GET", "/openapi.json", None).await;
    assert_eq!(spec.status, StatusCode::OK);
    assert!(spec.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let docs = app.call("GET", "/docs/", None).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.body.as_str().unwrap().contains("swagger"), "Swagger UI page");
}

pub(crate) fn app_with(settings: ffmpeg_worker_server::AppSettings) -> TestApp {
    let t = test_app();
    let state = AppState::with_settings(std::sync::Arc::clone(&t.state.jobs), settings);
    TestApp { state, data: t.data }
}

pub(crate) async fn raw(app: &TestApp, req: Request<Body>) -> axum::response::Response {
    ffmpeg_worker_server::app(app.state.clone()).oneshot(req).await.unwrap()
}

#[tokio::test]
async fn tokens_guard_everything_but_health_docs_and_spec() {
    let settings = ffmpeg_worker_server::AppSettings {
        api_tokens: vec!["s3cret".to_owned(), "other-token".to_owned()],
        ..Default::default()
    };
    let app = app_with(settings);
    for open in ["/health", "/openapi.json", "/docs/"] {
        let r = raw(&app, Request::get(open).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status(), StatusCode::OK, "{open}");
    }
    for (auth, expected) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("Bearer wrong"), StatusCode::UNAUTHORIZED),
        (Some("Bearer s3cre"), StatusCode::UNAUTHORIZED),
        (Some("Basic czNjcmV0"), StatusCode::UNAUTHORIZED),
        (Some("Bearer s3cret"), StatusCode::OK),
        (Some("Bearer other-token"), StatusCode::OK),
    ] {
        for path in ["/jobs", "/metrics"] {
            let mut req = Request::get(path);
            if let Some(a) = auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            let r = raw(&app, req.body(Body::empty()).unwrap()).await;
            assert_eq!(r.status(), expected, "{path} with {auth:?}");
            if expected == StatusCode::UNAUTHORIZED {
                assert!(r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"));
                assert_eq!(r.headers()[header::CONTENT_TYPE], "application/problem+json");
            }
        }
    }
    let post = Request::post("/jobs")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"command": "-i a.mp4 b.mp4"}).to_string()))
        .unwrap();
    assert_eq!(raw(&app, post).await.status(), StatusCode::UNAUTHORIZED, "nothing queued without a token");
    assert!(app.state.jobs.store().counts().await.unwrap().is_empty());
}

#[tokio::test]
async fn spec_declares_the_bearer_scheme_and_health_is_open() {
    let spec: Value = serde_json::from_str(&ffmpeg_worker_server::openapi_json()).unwrap();
    assert_eq!(spec["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(spec["security"], json!([{"bearer": []}]));
    assert_eq!(spec["paths"]["/health"]["get"]["security"], json!([{}]));
}

#[tokio::test]
async fn a_declared_oversized_body_is_413_before_it_is_read() {
    let app = test_app();
    // The declared length alone decides: the body sent is small (a client that would then
    // stall was held until the body idle timeout and answered 400).
    let req = Request::post("/jobs")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "100000000")
        .body(Body::from(json!({"command": "-i a.mp4 b.mp4"}).to_string()))
        .unwrap();
    let r = raw(&app, req).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/problem+json");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = test_app();
    let big = "x".repeat(70 * 1024);
    let req = Request::post("/jobs")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"command": format!("-i a.mp4 {big}.mp4")}).to_string()))
        .unwrap();
    let r = raw(&app, req).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/problem+json");
}

#[tokio::test]
async fn unknown_routes_are_problem_404s() {
    let app = test_app();
    let r = app.call("GET", "/no/such/endpoint", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["type"], "/problems/not-found");
    assert!(r.body["detail"].as_str().unwrap().contains("/no/such/endpoint"), "{}", r.body);
}

#[tokio::test]
async fn ready_is_503_while_shutting_down() {
    let app = test_app();
    app.state.stop_accepting();
    let r = app.call("GET", "/ready", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["type"], "/problems/shutting-down");
}

#[tokio::test]
async fn request_ids_are_generated_or_echoed() {
    let app = test_app();
    let r = raw(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let r = raw(&app, Request::get("/health").header("x-request-id", "abc-123").body(Body::empty()).unwrap()).await;
    assert_eq!(r.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_job_and_http_series() {
    let app = test_app();
    app.submit("-i a.mp4 b.mp4").await;
    app.call("GET", "/jobs/job_0000000000000000", None).await;
    let r = raw(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.contains("ffmpeg_worker_jobs_submitted_total"), "{text}");
    assert!(text.contains("ffmpeg_worker_queue_depth 1"), "this app has one queued job: {text}");
    assert!(text.contains("ffmpeg_worker_jobs{status=\"queued\"} 1"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("http_requests_total{")
            && l.contains("route=\"/jobs/{id}\"")
            && l.contains("status=\"4xx\"")),
        "HTTP requests by route template and status: {text}"
    );
}

/// Servers sharing one process (the tests do; so does any program embedding two) each scrape
/// their own store's gauges, however their scrapes interleave. They used to be set in the
/// process-wide recorder and then rendered: another server's scrape in between showed its
/// counts instead (how the test above failed under load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_scrapes_of_two_servers_each_show_their_own_job_gauges() {
    let busy = Arc::new(test_app());
    for _ in 0..3 {
        assert_eq!(busy.submit("-i a.mp4 b.mp4").await.status, StatusCode::CREATED);
    }
    let idle = Arc::new(test_app());
    let scrape_many = |app: Arc<TestApp>, queued: usize| {
        tokio::spawn(async move {
            for _ in 0..200 {
                let text = metrics_text(&app).await;
                let depth = text.lines().find(|l| l.starts_with("ffmpeg_worker_queue_depth ")).unwrap_or_default();
                assert_eq!(depth, format!("ffmpeg_worker_queue_depth {queued}"), "{text}");
                assert!(text.contains(&format!("ffmpeg_worker_jobs{{status=\"queued\"}} {queued}\n")), "{text}");
                assert_eq!(text.matches("# TYPE ffmpeg_worker_queue_depth ").count(), 1, "one family: {text}");
            }
        })
    };
    let (a, b) = tokio::join!(scrape_many(busy, 3), scrape_many(idle, 0));
    a.unwrap();
    b.unwrap();
}

#[tokio::test]
async fn ready_reports_the_ffmpeg_start_up_found_or_503_when_none_was_checked() {
    // /ready runs nothing: it reports what start-up learned (a version the probe read).
    let version = "ffmpeg version 5.1.9-test".to_owned();
    let app =
        app_with(ffmpeg_worker_server::AppSettings { ffmpeg_version: Some(version.clone()), ..Default::default() });
    let r = app.call("GET", "/ready", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["ffmpeg"], version.as_str());
    let unchecked = test_app();
    let r = unchecked.call("GET", "/ready", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["type"], "/problems/not-ready");
    assert!(r.body["detail"].as_str().unwrap().contains("no ffmpeg was checked"), "{}", r.body);
}

#[test]
fn a_rate_limit_that_cannot_be_applied_is_an_error_not_no_limit() {
    use ffmpeg_worker_server::RateLimit;
    assert_eq!(RateLimit::per_second(10).unwrap().requests_per_second(), 10);
    assert_eq!(RateLimit::per_second(1_000_000_000).unwrap().requests_per_second(), 1_000_000_000);
    for refused in [0, 1_000_000_001, u32::MAX] {
        let e = RateLimit::per_second(refused).unwrap_err();
        assert!(e.to_string().contains(&format!("{refused}/s")), "{e}");
    }
}

/// Every route of the OpenAPI document (plus the docs, the spec and unknown paths), asked with
/// every method, malformed path segments, malformed queries, wrong content types and bad
/// bodies, with and without the token a guarded server needs: each answer that is not a
/// success or redirect is a problem+json document whose `status` is the response's.
#[tokio::test]
async fn every_error_any_route_answers_is_problem_json() {
    let _serial = MADE_UP_REQUESTS.lock().await;
    let spec = ffmpeg_worker_server::openapi();
    let mut templates: Vec<String> = spec.paths.paths.keys().cloned().collect();
    assert!(templates.iter().any(|t| t.contains("{id}")), "the walk covers the job routes");
    templates.extend(
        ["/docs", "/docs/", "/docs/no-such-file.js", "/openapi.json", "/no/such", "/jobs/x/y/z"].map(str::to_owned),
    );
    let ids = ["job_0000000000000000", "nonexistent", "%FF", "%2e%2e", &"a".repeat(3000), "job_%00"];
    let mut uris = Vec::new();
    for t in &templates {
        if t.contains("{id}") {
            uris.extend(ids.iter().map(|id| t.replace("{id}", id)));
        } else {
            uris.push(t.clone());
        }
    }
    let queries = ["", "?limit=abc&cursor=%FF", "?status=done", "?limit=0", "?limit=", "?cursor=abc", "?a[b]=1&&="];
    let methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "XXXX1"];
    let big = format!("{{\"command\": \"{}\"}}", "x".repeat(70 * 1024));
    let bodies: [(Option<&str>, &str); 7] = [
        (None, ""),
        (Some("application/json"), "{"),
        (Some("application/json"), "{\"command\": 5}"),
        (Some("application/json"), "{\"command\": \"-i a.mp4 b.mp4\", \"metadata\": {\"\": \"\"}}"),
        (Some("text/plain"), "{\"command\": \"-i a.mp4 b.mp4\"}"),
        (Some("application/json; charset=latin1"), "\u{ff}"),
        (Some("application/json"), big.as_str()),
    ];
    let open = test_app();
    let guarded =
        app_with(ffmpeg_worker_server::AppSettings { api_tokens: vec!["t".to_owned()], ..Default::default() });
    // Each kind of malformation is tried on every route and method, not their full product.
    let mut requests = Vec::new();
    for uri in &uris {
        for method in methods {
            requests.push((method, format!("{uri}{}", queries[1]), bodies[0]));
            for query in queries {
                requests.push((method, format!("{uri}{query}"), bodies[2]));
            }
        }
        for method in ["GET", "POST", "PUT", "DELETE"] {
            for body in &bodies {
                requests.push((method, uri.clone(), *body));
            }
        }
    }
    let mut checked = 0;
    for app in [&open, &guarded] {
        let router = ffmpeg_worker_server::app(app.state.clone());
        for (method, uri, (content_type, body)) in &requests {
            let mut req = Request::builder().method(*method).uri(uri);
            if let Some(ct) = content_type {
                req = req.header(header::CONTENT_TYPE, *ct);
            }
            let r = router.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
            let status = r.status();
            if status.is_success() || status.is_redirection() {
                continue;
            }
            let what = format!("{method} {uri} ({content_type:?}) -> {status}");
            assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{what}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/problem+json", "{what}");
            let bytes = r.into_body().collect().await.unwrap().to_bytes();
            if *method != "HEAD" {
                let problem: Value = serde_json::from_slice(&bytes).expect(&what);
                assert_eq!(problem["status"], status.as_u16(), "{what}");
                assert!(problem["type"].as_str().is_some_and(|t| t.starts_with("/problems/")), "{what}");
            }
            checked += 1;
        }
    }
    assert!(checked > 1000, "the walk reached the error paths ({checked} answers)");
}

#[tokio::test]
async fn wrong_methods_are_405_problems_with_allow() {
    let app = test_app();
    let r = raw(&app, Request::put("/jobs").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/problem+json");
    let allow = r.headers()[header::ALLOW].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let r = app.call("GET", "/jobs/%FF", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(r.body["type"], "/problems/invalid-request");
}

/// The `http_*` series of a metrics page: (name, method, route, status) per line.
fn http_series(text: &str) -> Vec<(String, String, String, String)> {
    let label = |l: &str, k: &str| {
        l.split_once(&format!("{k}=\"")).map(|(_, rest)| rest.split('"').next().unwrap_or_default().to_owned())
    };
    text.lines()
        .filter(|l| l.starts_with("http_"))
        .map(|l| {
            let name = l.split(['{', ' ']).next().unwrap_or_default().to_owned();
            let get = |k| label(l, k).unwrap_or_default();
            (name, get("method"), get("route"), get("status"))
        })
        .collect()
}

async fn metrics_text(app: &TestApp) -> String {
    let r =
        raw(app, Request::get("/metrics").header(header::AUTHORIZATION, "Bearer t").body(Body::empty()).unwrap()).await;
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn made_up_methods_and_paths_do_not_grow_the_metrics() {
    let _serial = MADE_UP_REQUESTS.lock().await;
    let app = app_with(ffmpeg_worker_server::AppSettings { api_tokens: vec!["t".to_owned()], ..Default::default() });
    let router = ffmpeg_worker_server::app(app.state.clone());
    let send = |method: String, uri: String, token: bool| {
        let router = router.clone();
        async move {
            let mut req = Request::builder().method(method.as_str()).uri(uri);
            if token {
                req = req.header(header::AUTHORIZATION, "Bearer t");
            }
            router.oneshot(req.body(Body::empty()).unwrap()).await.unwrap().status()
        }
    };
    let burst = |prefix: &'static str, n: usize| {
        let send = &send;
        async move {
            for i in 0..n {
                let method = format!("{prefix}{i}");
                for token in [false, true] {
                    send(method.clone(), "/health".to_owned(), token).await;
                    send(method.clone(), format!("/jobs/job_{i:016x}"), token).await;
                    send(method.clone(), format!("/made/up/{prefix}/{i}"), token).await;
                    send("GET".to_owned(), format!("/made/up/{prefix}/{i}"), token).await;
                    send("GET".to_owned(), format!("/jobs/job_{i:016x}"), token).await;
                }
            }
        }
    };
    // One of each kind first, so every series this test can create exists.
    burst("A", 1).await;
    let before = http_series(&metrics_text(&app).await);
    assert!(before.iter().any(|s| s.1 == "other"), "made-up methods are counted as `other`: {before:?}");
    assert!(before.iter().any(|s| s.2 == "unmatched"), "unknown paths are counted as `unmatched`");
    let ours = |series: &[(String, String, String, String)]| {
        series.iter().filter(|s| s.1 == "other" || s.2 == "unmatched").count()
    };
    burst("B", 300).await;
    let after = http_series(&metrics_text(&app).await);
    // Other tests share the process-wide recorder, so check the label sets, not a total.
    let routes: Vec<String> = ffmpeg_worker_server::openapi().paths.paths.keys().cloned().collect();
    for (name, method, route, status) in &after {
        if name.ends_with("_bucket")
            || name.ends_with("_sum")
            || name.ends_with("_count")
            || name == "http_requests_total"
        {
            let known = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "other"];
            assert!(known.contains(&method.as_str()), "{name} method {method}");
            assert!(
                route == "unmatched"
                    || route.starts_with("/docs")
                    || route == "/openapi.json"
                    || routes.contains(route),
                "{name} route {route}"
            );
            assert!(
                status.is_empty() || ["1xx", "2xx", "3xx", "4xx", "5xx"].contains(&status.as_str()),
                "{name} status {status}"
            );
        }
    }
    assert_eq!(ours(&after), ours(&before), "3,000 made-up requests added no series");
}

/// Tester finding K5: a misspelt query parameter name (`?stauts=failed`) is a 422 problem
/// naming it and the names the endpoint knows, on every endpoint that takes a query, rather
/// than the unfiltered answer (every job, every file, every job's events) or a delete that
/// ignores its options. `access_token` stays accepted on the two stream endpoints.
#[tokio::test]
async fn unknown_query_parameters_are_422_naming_them() {
    let app = test_app();
    let id = app.submit("-i in.mp4 out.mp4").await.body["id"].as_str().unwrap().to_owned();
    std::fs::create_dir(app.data.path().join("in")).unwrap();
    std::fs::write(app.data.path().join("in/a.mp4"), b"x").unwrap();
    for (method, uri, unknown, known) in [
        ("GET", "/jobs?stauts=failed".to_owned(), "stauts", "`status`, `limit`, `cursor`"),
        ("GET", "/jobs?status=failed&metadata.asset_id=a-42".to_owned(), "metadata.asset_id", "`status`"),
        ("GET", "/jobs?limit=2&access_token=t".to_owned(), "access_token", "`cursor`"),
        ("GET", "/files?prefx=in/".to_owned(), "prefx", "`prefix`, `limit`, `cursor`"),
        ("DELETE", "/files/in?recursve=true".to_owned(), "recursve", "`recursive`"),
        ("GET", "/events?stauts=failed".to_owned(), "stauts", "`status`, `progress`"),
        ("GET", "/events?status=failed&progres=true".to_owned(), "progres", "`progress`"),
        ("GET", format!("/jobs/{id}/events?status=failed"), "status", "`access_token`"),
    ] {
        let r = app.call(method, &uri, None).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{method} {uri}: {}", r.body);
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json", "{method} {uri}");
        assert_eq!(r.body["type"], "/problems/invalid-request", "{method} {uri}: {}", r.body);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("unknown field `{unknown}`")), "{method} {uri}: {detail}");
        assert!(detail.contains(known), "{method} {uri}: {detail}");
    }
    assert!(app.data.path().join("in/a.mp4").exists(), "the refused delete removed nothing");

    // The known names still work, and `access_token` passes on the stream endpoints, with and
    // without API tokens configured (a stream answers 200 and stays open: only its status is read).
    for app in
        [app, app_with(ffmpeg_worker_server::AppSettings { api_tokens: vec!["t".to_owned()], ..Default::default() })]
    {
        let post = Request::post("/jobs")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, "Bearer t")
            .body(Body::from(json!({"command": "-i in.mp4 out2.mp4"}).to_string()))
            .unwrap();
        let created = raw(&app, post).await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let job: Value = serde_json::from_slice(&created.into_body().collect().await.unwrap().to_bytes()).unwrap();
        let id = job["id"].as_str().unwrap();
        for uri in [
            "/events?status=failed&progress=true&access_token=t".to_owned(),
            "/events?access_token=t".to_owned(),
            format!("/jobs/{id}/events?access_token=t"),
        ] {
            let r = raw(&app, Request::get(uri.as_str()).body(Body::empty()).unwrap()).await;
            assert_eq!(r.status(), StatusCode::OK, "{uri}");
        }
    }
    let app = test_app();
    for uri in
        ["/jobs?status=queued&limit=1&cursor=1", "/files?prefix=in/&limit=1", "/jobs?status=queued&status=failed"]
    {
        assert_eq!(app.call("GET", uri, None).await.status, StatusCode::OK, "{uri}");
    }
}

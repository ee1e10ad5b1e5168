//! `POST /jobs` with an `Idempotency-Key`: through the router (`app(state)` + `oneshot`), and
//! end to end against the real binary on both stores, across a restart.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::api::{TestApp, raw, test_app};
use crate::support::{Server, Store, client, on_each_store};

/// `POST /jobs` with `key` (when given) and the raw JSON `body`: status, headers, body.
async fn post(app: &TestApp, key: Option<&str>, body: &str) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::post("/jobs").header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let response = raw(app, req.body(Body::from(body.to_owned())).unwrap()).await;
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn job_count(app: &TestApp) -> usize {
    app.call("GET", "/jobs", None).await.body.as_array().unwrap().len()
}

/// The first submission with a key is 201; a repeat with the same body (spelled otherwise:
/// spacing, key order, a default written out, the draft's quoted key) is 200 with the same
/// job, `Idempotent-Replayed: true` and its `Location`, and queues nothing. The job shows its
/// key. A submission without a key is never a repeat.
#[tokio::test]
async fn a_repeat_with_its_key_is_200_with_the_same_job() {
    let app = test_app();
    let body = r#"{"command": "-i in.mp4 out.mp4", "metadata": {"a": "1", "b": "2"}}"#;
    let (status, headers, first) = post(&app, Some("order-42"), body).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(!headers.contains_key("idempotent-replayed"), "a new job is no replay");
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(headers[header::LOCATION], format!("/jobs/{id}"));
    assert_eq!(first["idempotency_key"], "order-42");

    for (key, same) in [
        ("order-42", body),
        ("order-42", r#"{"metadata":{"b":"2","a":"1"},"priority":0,"command":"-i in.mp4 out.mp4"}"#),
        ("\"order-42\"", "  {\"command\": \"-i in.mp4 out\\u002emp4\", \"metadata\": {\"a\": \"1\", \"b\": \"2\"}}\n"),
    ] {
        let (status, headers, again) = post(&app, Some(key), same).await;
        assert_eq!(status, StatusCode::OK, "{key} {same}: {again}");
        assert_eq!(headers["idempotent-replayed"], "true");
        assert_eq!(headers[header::LOCATION], format!("/jobs/{id}"));
        assert_eq!(again["id"], id.as_str());
        assert_eq!(again["status"], "queued");
    }
    assert_eq!(job_count(&app).await, 1);

    // The job as it is now: a repeat after a cancel shows it cancelled.
    assert_eq!(app.call("POST", &format!("/jobs/{id}/cancel"), None).await.status, StatusCode::OK);
    let (status, _, again) = post(&app, Some("order-42"), body).await;
    assert_eq!((status, again["status"].as_str()), (StatusCode::OK, Some("cancelled")));
    let shown = app.call("GET", &format!("/jobs/{id}"), None).await.body;
    assert_eq!(shown["idempotency_key"], "order-42");

    // Without a key: two jobs; their key is null.
    for _ in 0..2 {
        let (status, _, job) = post(&app, None, body).await;
        assert_eq!((status, &job["idempotency_key"]), (StatusCode::CREATED, &Value::Null));
    }
    assert_eq!(job_count(&app).await, 3);
}

/// The same key with another body is a 422 `idempotency-key-reused` naming the job the key
/// belongs to (`job_id`, and in the detail); nothing is queued.
#[tokio::test]
async fn a_key_sent_with_another_body_is_422_naming_its_job() {
    let app = test_app();
    let (_, _, first) = post(&app, Some("k-1"), r#"{"command": "-i in.mp4 out.mp4"}"#).await;
    let id = first["id"].as_str().unwrap();
    for other in [
        r#"{"command": "-i in.mp4 other.mp4"}"#,
        r#"{"args": ["-i", "in.mp4", "out.mp4"]}"#,
        r#"{"command": "-i in.mp4 out.mp4", "priority": 5}"#,
    ] {
        let (status, headers, problem) = post(&app, Some("k-1"), other).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{other}: {problem}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(problem["type"], "/problems/idempotency-key-reused");
        assert_eq!(problem["job_id"], id);
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("`k-1`") && detail.contains(id), "{detail}");
    }
    assert_eq!(job_count(&app).await, 1);
}

/// A header that is not a key is a 422 naming the header, and nothing is queued.
#[tokio::test]
async fn an_idempotency_key_that_is_not_one_is_422_naming_the_header() {
    let app = test_app();
    let long = "k".repeat(256);
    let cases: [&[&[u8]]; 6] =
        [&[b""], &[b"two words"], &[long.as_bytes()], &[b"cl\xc3\xa9"], &[b"tab\there"], &[b"a", b"b"]];
    for values in cases {
        let mut req = Request::post("/jobs").header(header::CONTENT_TYPE, "application/json");
        for value in values {
            req = req.header("idempotency-key", header::HeaderValue::from_bytes(value).unwrap());
        }
        let body = Body::from(json!({"command": "-i in.mp4 out.mp4"}).to_string());
        let response = raw(&app, req.body(body).unwrap()).await;
        let status = response.status();
        let problem: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{values:?}: {problem}");
        assert_eq!(problem["type"], "/problems/invalid-request");
        assert!(problem["detail"].as_str().unwrap().starts_with("the Idempotency-Key header: "), "{problem}");
    }
    assert_eq!(job_count(&app).await, 0);
    // 255 visible characters are a key.
    assert_eq!(post(&app, Some(&"k".repeat(255)), r#"{"command": "-i a.mp4 b.mp4"}"#).await.0, StatusCode::CREATED);
}

/// Ten submissions with one key at once: one job, one 201, nine 200 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_with_one_key_make_one_job() {
    let app = std::sync::Arc::new(test_app());
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move { post(&app, Some("burst"), r#"{"command": "-i in.mp4 out.mp4"}"#).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        let (status, _, job) = task.await.unwrap();
        answers.push((status, job["id"].as_str().unwrap().to_owned()));
    }
    let created: Vec<_> = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    assert!(answers.iter().all(|(s, id)| (*s == StatusCode::CREATED || *s == StatusCode::OK) && *id == created[0].1));
    assert_eq!(job_count(&app).await, 1);
}

/// End to end, on each store: the real binary answers a repeat with the job, refuses the key
/// for another body, and still knows the key after a restart (SIGKILL), as a script retrying
/// across a server restart needs.
async fn a_key_survives_a_restart(store: Store) {
    let server = Server::start_on(store, &["--concurrency", "0"]);
    let http = client();
    let send = |base: String, key: &'static str, body: &'static str| {
        let http = http.clone();
        async move {
            let response = http
                .post(format!("{base}/jobs"))
                .header("content-type", "application/json")
                .header("Idempotency-Key", key)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let replayed = response.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap().to_owned());
            (status, replayed, response.json::<Value>().await.unwrap())
        }
    };
    let body = r#"{"command": "-i in.mp4 out.mp4"}"#;
    let (status, replayed, job) = send(server.base.clone(), "e2e-key", body).await;
    assert_eq!((status, replayed), (201, None), "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let (status, replayed, again) = send(server.base.clone(), "e2e-key", r#"{ "command":"-i in.mp4 out.mp4" }"#).await;
    assert_eq!((status, replayed.as_deref(), again["id"].as_str()), (200, Some("true"), Some(id.as_str())));
    let (status, _, problem) = send(server.base.clone(), "e2e-key", r#"{"command": "-i in.mp4 x.mp4"}"#).await;
    assert_eq!((status, problem["job_id"].as_str()), (422, Some(id.as_str())), "{problem}");

    let (data, db) = server.kill();
    let server = Server::start_in(data, db, &["--concurrency", "0"]);
    let (status, replayed, again) = send(server.base.clone(), "e2e-key", body).await;
    assert_eq!((status, replayed.as_deref(), again["id"].as_str()), (200, Some("true"), Some(id.as_str())));
    assert_eq!(again["idempotency_key"], "e2e-key");
    let listed: Value = http.get(server.url("/jobs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}
on_each_store!(a_key_survives_a_restart);

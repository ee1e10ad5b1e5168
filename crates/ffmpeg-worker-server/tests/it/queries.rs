//! Tester finding K5's rest: an endpoint that takes no query parameter refuses any (422 naming
//! it) instead of ignoring it, every route of the router (read from the OpenAPI document, so a
//! new route is checked too), with nothing done: `POST /jobs?dryrun=1` queues nothing,
//! `PUT /files/x?overwrite=false` replaces nothing.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::api::{TestApp, app_with, raw, test_app};

async fn send(app: &TestApp, method: &Method, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method.clone()).uri(uri);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if *method == Method::POST || *method == Method::PUT {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let body = if *method == Method::POST { r#"{"command": "-i in/a.mp4 out.mp4"}"# } else { "new" };
    let response = raw(app, req.body(Body::from(body)).unwrap()).await;
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Every operation of the OpenAPI document that has no query parameter, as (method, path).
fn operations_without_a_query() -> Vec<(Method, String)> {
    let doc: Value = serde_json::from_str(&ffmpeg_worker_server::openapi_json()).unwrap();
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
            let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
            if !parameters.iter().any(|p| p["in"] == "query") {
                found.push((method, path.clone()));
            }
        }
    }
    found
}

#[tokio::test]
async fn endpoints_without_a_query_refuse_any_parameter_and_do_nothing() {
    let app = test_app();
    std::fs::create_dir(app.data.path().join("in")).unwrap();
    std::fs::write(app.data.path().join("in/a.mp4"), b"old").unwrap();
    let created = app.submit("-i in/a.mp4 out.mp4").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let operations = operations_without_a_query();
    // The routes K5 named, and the kinds: probes, jobs, files, probe, workers.
    for expected in ["/health", "/ready", "/metrics", "/jobs", "/jobs/{id}", "/jobs/{id}/cancel", "/files/{path}"] {
        assert!(operations.iter().any(|(_, path)| path == expected), "{expected} in {operations:?}");
    }
    assert!(operations.len() >= 14, "{operations:?}");
    for (method, path) in &operations {
        let uri = path.replace("{id}", &id).replace("{path}", "in/a.mp4");
        for query in ["dryrun=1", "overwrite=false&x=2", "access_token=t"] {
            let (status, problem) = send(&app, method, &format!("{uri}?{query}"), None).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{method} {uri}?{query}: {problem}");
            if *method == Method::HEAD {
                continue;
            }
            assert_eq!(problem["type"], "/problems/invalid-request", "{method} {uri}?{query}");
            let name = query.split('=').next().unwrap();
            let detail = problem["detail"].as_str().unwrap();
            assert!(
                detail.starts_with(&format!(
                    "unknown query parameter `{name}`: {method} {path} takes no query parameters"
                )),
                "{method} {uri}?{query}: {detail}"
            );
            if name == "access_token" {
                assert!(detail.contains("event streams only"), "{detail}");
            }
        }
    }
    // Nothing was done: one job (still queued), the file as it was.
    let jobs = app.call("GET", "/jobs", None).await.body;
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
    assert_eq!(jobs[0]["status"], "queued");
    assert_eq!(std::fs::read(app.data.path().join("in/a.mp4")).unwrap(), b"old");

    // An empty query is no parameter.
    assert_eq!(send(&app, &Method::GET, &format!("/jobs/{id}?"), None).await.0, StatusCode::OK);
    assert_eq!(send(&app, &Method::GET, "/health?", None).await.0, StatusCode::OK);
    assert_eq!(send(&app, &Method::PUT, "/files/in/b.mp4?", None).await.0, StatusCode::CREATED);
}

/// With API tokens, the token is checked first (401 without it); with it, a query parameter is
/// still refused, `access_token` included, on a worker node's endpoints too.
#[tokio::test]
async fn with_tokens_and_on_a_worker_node_the_query_is_refused_too() {
    let settings = || ffmpeg_worker_server::AppSettings { api_tokens: vec!["t".to_owned()], ..Default::default() };
    let app = app_with(settings());
    let (status, _) = send(&app, &Method::GET, "/workers?access_token=t", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the token is the streams' only");
    let (status, problem) = send(&app, &Method::GET, "/workers?access_token=t", Some("t")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(send(&app, &Method::GET, "/workers", Some("t")).await.0, StatusCode::OK);

    let worker = app_with(ffmpeg_worker_server::AppSettings { role: jobs::nodes::NodeRole::Worker, ..settings() });
    for uri in ["/metrics?format=json", "/health?verbose=1", "/ready?x"] {
        let (status, problem) = send(&worker, &Method::GET, uri, Some("t")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {problem}");
    }
    assert_eq!(send(&worker, &Method::GET, "/metrics", Some("t")).await.0, StatusCode::OK);
}

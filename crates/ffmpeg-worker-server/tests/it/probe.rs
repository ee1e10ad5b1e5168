//! `GET /probe/{path}` through the router in-process (`tower::ServiceExt::oneshot`), with the
//! installed ffprobe on lavfi-generated media.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ffmpeg_core::sandbox::Sandbox;
use ffmpeg_worker_server::{AppState, app};
use http_body_util::BodyExt;
use jobs::{FfmpegConfig, FfmpegRunner, Jobs, JobsConfig, MemoryStore};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::media::make_clip;

async fn get(state: &AppState, uri: &str) -> (StatusCode, String, Value) {
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let content_type =
        resp.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn state(data: &std::path::Path) -> AppState {
    let sandbox = Sandbox::new(data).unwrap();
    let runner = FfmpegRunner::new(FfmpegConfig::new("ffmpeg", data));
    AppState::new(Jobs::new(Arc::new(MemoryStore::new()), Arc::new(runner), sandbox, JobsConfig::default()))
}

#[tokio::test]
async fn a_clip_in_a_subdirectory_is_described() {
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("in")).unwrap();
    make_clip(&data.path().join("in"), "take#2 x.mp4", 1);
    let state = state(data.path());
    for uri in ["/probe/in/take%232%20x.mp4", "/probe/in%2Ftake%232%20x.mp4"] {
        let (status, content_type, body) = get(&state, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_eq!(content_type, "application/json");
        assert_eq!(body["path"], "in/take#2 x.mp4");
        assert_eq!(body["container"], "mov,mp4,m4a,3gp,3g2,mj2");
        assert!(body["duration_seconds"].as_f64().unwrap() > 0.9, "{body}");
        assert!(body["bit_rate"].as_u64().unwrap() > 0 && body["size_bytes"].as_u64().unwrap() > 0);
        let streams = body["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 2);
        let video = &streams[0];
        assert_eq!(
            [
                &video["index"],
                &video["type"],
                &video["codec"],
                &video["width"],
                &video["height"],
                &video["frame_rate"],
                &video["pixel_format"]
            ],
            [&json!(0), &json!("video"), &json!("h264"), &json!(160), &json!(120), &json!(25.0), &json!("yuv420p")]
        );
        assert!(video["sample_rate"].is_null() && video["channels"].is_null());
        let audio = &streams[1];
        assert_eq!(
            [&audio["type"], &audio["codec"], &audio["sample_rate"], &audio["channels"]],
            [&json!("audio"), &json!("aac"), &json!(44100), &json!(1)]
        );
        assert_eq!(audio["channel_layout"], "mono");
        assert!(audio["width"].is_null() && audio["frame_rate"].is_null());
    }
}

#[tokio::test]
async fn unknown_escaping_and_non_media_paths_are_problems() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("notes.txt"), "hello").unwrap();
    let state = state(data.path());
    for (uri, status, type_, detail) in [
        ("/probe/missing.mp4", 404, "/problems/file-not-found", "no file `missing.mp4`"),
        ("/probe/..%2Fetc%2Fpasswd", 422, "/problems/policy-violation", "path escapes the data directory"),
        ("/probe/a/../../x.mp4", 422, "/problems/policy-violation", "path escapes the data directory"),
        (
            "/probe/notes.txt",
            422,
            "/problems/not-media",
            "`notes.txt` is not a media file ffprobe can read: Invalid data found when processing input",
        ),
        ("/probe/%FF.mp4", 400, "/problems/invalid-request", ""),
    ] {
        let (got, content_type, body) = get(&state, uri).await;
        assert_eq!(got.as_u16(), status, "{uri}: {body}");
        assert_eq!(content_type, "application/problem+json", "{uri}");
        assert_eq!(body["type"], type_, "{uri}: {body}");
        assert!(body["detail"].as_str().unwrap().contains(detail), "{uri}: {body}");
        assert!(!body.to_string().contains(data.path().to_str().unwrap()), "{uri}: no absolute path in {body}");
    }
}

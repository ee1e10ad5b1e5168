//! The files API on the S3 backend, in-process (`oneshot`, no workers), against a real
//! S3-compatible server in its own process on 127.0.0.1 (moto's, `s3-harness`): a fresh bucket
//! per test, files under a key prefix. What is in the bucket is checked with raw S3 requests,
//! not through the code under test.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use ffmpeg_core::sandbox::Sandbox;
use ffmpeg_worker_server::{AppSettings, AppState, app};
use http_body_util::BodyExt;
use jobs::storage::{S3Config, S3Storage, Storage};
use jobs::{FfmpegConfig, FfmpegRunner, Jobs, JobsConfig, MemoryStore};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Key prefix the tests' files live under.
const PREFIX: &str = "media/files";

pub(crate) fn s3_config(bucket: &str, prefix: &str) -> S3Config {
    let server = s3_harness::shared();
    S3Config {
        endpoint: Some(server.endpoint().to_owned()),
        access_key_id: Some(s3_harness::ACCESS_KEY_ID.to_owned()),
        secret_access_key: Some(s3_harness::SECRET_ACCESS_KEY.to_owned()),
        region: s3_harness::REGION.to_owned(),
        allow_http: true,
        ..S3Config::from_url(&format!("s3://{bucket}/{prefix}")).unwrap()
    }
}

struct S3App {
    state: AppState,
    bucket: String,
    _data: tempfile::TempDir,
}

fn s3_app_with(settings: AppSettings) -> S3App {
    let bucket = s3_harness::shared().bucket();
    let storage = S3Storage::new(&s3_config(&bucket, PREFIX)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(data.path()).unwrap();
    let runner = FfmpegRunner::new(FfmpegConfig::new("ffmpeg", data.path()));
    let config = JobsConfig { remote_storage: Some(Arc::new(storage)), ..JobsConfig::default() };
    let jobs = Jobs::new(Arc::new(MemoryStore::new()), Arc::new(runner), sandbox, config);
    S3App { state: AppState::with_settings(jobs, settings), bucket, _data: data }
}

fn s3_app() -> S3App {
    s3_app_with(AppSettings::default())
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
    #[track_caller]
    fn problem(&self, status: StatusCode, type_: &str) -> Value {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.bytes));
        assert_eq!(self.headers[header::CONTENT_TYPE], "application/problem+json");
        let body = self.json();
        assert_eq!(body["type"], type_, "{body}");
        body
    }
}

impl S3App {
    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply { status, headers, bytes }
    }

    async fn put(&self, path: &str, content: &[u8]) -> Reply {
        self.send(Request::put(format!("/files/{path}")).body(Body::from(content.to_vec())).unwrap()).await
    }

    async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::get(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn delete(&self, uri: &str) -> Reply {
        self.send(Request::delete(uri).body(Body::empty()).unwrap()).await
    }

    /// Every key in the bucket, the prefix removed (keys outside it kept whole).
    fn keys(&self) -> Vec<String> {
        let prefix = format!("{PREFIX}/");
        s3_harness::shared()
            .keys(&self.bucket)
            .into_iter()
            .map(|k| k.strip_prefix(&prefix).map(str::to_owned).unwrap_or(k))
            .collect()
    }

    /// The stored bytes of `path`, read from the bucket directly.
    fn object(&self, path: &str) -> Option<Vec<u8>> {
        s3_harness::shared().object(&self.bucket, &format!("{PREFIX}/{path}"))
    }

    fn unfinished_uploads(&self) -> Vec<String> {
        s3_harness::shared().unfinished_uploads(&self.bucket)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn streamed(content: &[u8], chunk: usize) -> Body {
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        content.chunks(chunk).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn put_creates_then_replaces_and_get_returns_the_bytes() {
    let app = s3_app();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let r = app.put("in/clips/a.mp4", &content).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.bytes));
    assert_eq!(r.headers[header::LOCATION], "/files/in/clips/a.mp4");
    let body = r.json();
    assert_eq!(body["path"], "in/clips/a.mp4");
    assert_eq!(body["size_bytes"], 200_000);
    assert_eq!(body["sha256"], sha256_hex(&content));
    assert_eq!(body["content_type"], "video/mp4");
    assert!(body["modified_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(app.object("in/clips/a.mp4").unwrap(), content);

    let r = app.put("in/clips/a.mp4", b"short").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["size_bytes"], 5);

    let r = app.get("/files/in/clips/a.mp4", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, b"short");
    assert_eq!(r.headers[header::CONTENT_TYPE], "video/mp4");
    assert_eq!(r.headers[header::CONTENT_LENGTH], "5");
    assert_eq!(r.headers[header::ACCEPT_RANGES], "bytes");
    assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(r.headers.contains_key(header::ETAG) && r.headers.contains_key(header::LAST_MODIFIED));
    let r = app.get("/files/in%2Fclips%2Fa.mp4", &[]).await;
    assert_eq!(r.bytes, b"short");
    // Names the local backend accepts are keys as written (no percent-encoding in the bucket).
    assert_eq!(app.put("take%232%20%5Bfinal%5D.mp4", b"t").await.status, StatusCode::CREATED);
    assert_eq!(app.get("/files/take%232%20%5Bfinal%5D.mp4", &[]).await.bytes, b"t");
    assert_eq!(app.keys(), ["in/clips/a.mp4", "take#2 [final].mp4"]);
    assert!(app.unfinished_uploads().is_empty());
}

/// Bodies larger than a part go up as a multipart upload while they arrive, and read back
/// whole, in ranges across part boundaries.
#[tokio::test]
async fn large_uploads_are_multipart_and_read_back_whole() {
    let app = s3_app();
    let size = jobs::storage::PART_BYTES * 2 + 12_345;
    let content: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    let r = app.send(Request::put("/files/big/a.mkv").body(streamed(&content, 64 * 1024)).unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.bytes));
    assert_eq!(r.json()["sha256"], sha256_hex(&content));
    assert_eq!(r.json()["size_bytes"], size);
    let r = app.get("/files/big/a.mkv", &[]).await;
    assert_eq!(r.bytes.len(), size);
    assert!(r.bytes == content, "the whole file reads back");
    let part = jobs::storage::PART_BYTES;
    let range = format!("bytes={}-{}", part - 10, part + 9);
    let r = app.get("/files/big/a.mkv", &[("range", &range)]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes, &content[part - 10..part + 10]);
    // S3 marks a multipart object's entity tag with its part count.
    assert!(r.headers[header::ETAG].to_str().unwrap().ends_with("-3\""), "{:?}", r.headers[header::ETAG]);
    assert!(app.unfinished_uploads().is_empty());
}

#[tokio::test]
async fn ranges_and_conditional_requests() {
    let app = s3_app();
    let content: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    app.put("v.mp4", &content).await;
    let r = app.get("/files/v.mp4", &[("range", "bytes=10-19")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes, &content[10..20]);
    assert_eq!(r.headers[header::CONTENT_RANGE], "bytes 10-19/1000");
    let r = app.get("/files/v.mp4", &[("range", "bytes=-100")]).await;
    assert_eq!(r.bytes, &content[900..]);
    let r = app.get("/files/v.mp4", &[("range", "bytes=1000-")]).await;
    r.problem(StatusCode::RANGE_NOT_SATISFIABLE, "/problems/invalid-request");

    let full = app.get("/files/v.mp4", &[]).await;
    let etag = full.headers[header::ETAG].to_str().unwrap().to_owned();
    let modified = full.headers[header::LAST_MODIFIED].to_str().unwrap().to_owned();
    assert_eq!(app.get("/files/v.mp4", &[("if-none-match", &etag)]).await.status, StatusCode::NOT_MODIFIED);
    assert_eq!(app.get("/files/v.mp4", &[("if-modified-since", &modified)]).await.status, StatusCode::NOT_MODIFIED);
    let r = app.get("/files/v.mp4", &[("range", "bytes=0-9"), ("if-range", &etag)]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    // Other content, other entity tag.
    app.put("v.mp4", b"other content").await;
    assert_eq!(app.get("/files/v.mp4", &[("if-none-match", &etag)]).await.status, StatusCode::OK);
    let head = app.send(Request::head("/files/v.mp4").body(Body::empty()).unwrap()).await;
    assert_eq!((head.status, head.headers[header::CONTENT_LENGTH].to_str().unwrap()), (StatusCode::OK, "13"));
    assert!(head.bytes.is_empty());
}

#[tokio::test]
async fn if_none_match_star_never_replaces_small_or_large() {
    let app = s3_app();
    let large = vec![9u8; jobs::storage::PART_BYTES + 1];
    for (path, first, second) in
        [("a.wav", b"first".to_vec(), b"second".to_vec()), ("b.mkv", large.clone(), vec![1u8; large.len()])]
    {
        let create_only = |content: Vec<u8>| {
            Request::put(format!("/files/{path}")).header("if-none-match", "*").body(Body::from(content)).unwrap()
        };
        assert_eq!(app.send(create_only(first.clone())).await.status, StatusCode::CREATED, "{path}");
        app.send(create_only(second)).await.problem(StatusCode::PRECONDITION_FAILED, "/problems/file-exists");
        assert!(app.object(path).unwrap() == first, "{path} kept");
    }
    assert_eq!(app.keys(), ["a.wav", "b.mkv"]);
    // The refused multipart upload was aborted (in the background).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !app.unfinished_uploads().is_empty() {
        assert!(std::time::Instant::now() < deadline, "uploads left: {:?}", app.unfinished_uploads());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn bad_paths_are_problems_naming_the_rule_and_nothing_is_written() {
    let app = s3_app();
    let long = "n".repeat(256);
    for (path, rule) in [
        ("..%2Fescape.mp4", "path-escapes"),
        ("a/../../escape.mp4", "path-escapes"),
        ("%2Fetc%2Fpasswd", "absolute-path"),
        ("a%00b.mp4", "not-a-file"),
        ("http:x.mp4", "protocol"),
        (long.as_str(), "name-too-long"),
        ("a%01b.mp4", "control-character"),
    ] {
        let r = app.put(path, b"x").await;
        let body = r.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-path");
        assert_eq!(body["rule"], rule, "{path}: {body}");
        let r = app.get(&format!("/files/{path}"), &[]).await;
        assert_eq!(r.json()["rule"], rule, "GET {path}");
        let r = app.delete(&format!("/files/{path}")).await;
        assert_eq!(r.json()["rule"], rule, "DELETE {path}");
    }
    // `.` and `//` are normalised: the key is the normal form.
    assert_eq!(app.put("./x//y.mp4", b"y").await.json()["path"], "x/y.mp4");
    assert_eq!(app.keys(), ["x/y.mp4"]);
}

#[tokio::test]
async fn directories_where_files_are_expected_conflict() {
    let app = s3_app();
    for path in ["d/a.mp4", "f.mp4", "d/e.mp4", "d/sub/x.mp4", "d-e.mp4"] {
        assert_eq!(app.put(path, b"x").await.status, StatusCode::CREATED);
    }
    app.put("d", b"x").await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
    app.put("f.mp4/x.mp4", b"x").await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
    app.get("/files/d", &[]).await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
    app.get("/files/nothing.mp4", &[]).await.problem(StatusCode::NOT_FOUND, "/problems/file-not-found");
    app.delete("/files/d").await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
    app.delete("/files/nothing.mp4").await.problem(StatusCode::NOT_FOUND, "/problems/file-not-found");
    assert_eq!(app.delete("/files/f.mp4").await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.delete("/files/d?recursive=true").await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.keys(), ["d-e.mp4"]);
    // The root is never deleted.
    app.delete("/files/.?recursive=true").await.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-path");
    assert_eq!(app.keys(), ["d-e.mp4"]);
}

#[tokio::test]
async fn list_is_recursive_in_path_order_by_string_prefix_and_paged() {
    let app = s3_app();
    for path in ["b/2.mp4", "a-1.mp4", "a/x/1.mp4", "a/0.mp4", "ab.mp4", "c.mp4"] {
        assert_eq!(app.put(path, path.as_bytes()).await.status, StatusCode::CREATED);
    }
    // A key beside the prefix (`media/files2/...`) is not under it.
    let outside = S3Storage::new(&s3_config(&app.bucket, "media/files2")).unwrap();
    let body: jobs::storage::ByteStream = Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"o"))]));
    let options = jobs::storage::PutOptions { create_only: false, max_bytes: 10 };
    outside.put("a.mp4", body, options).await.unwrap().commit().await.unwrap();

    let paths = |r: &Reply| -> Vec<String> {
        r.json().as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_owned()).collect()
    };
    let r = app.get("/files", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(paths(&r), ["a-1.mp4", "a/0.mp4", "a/x/1.mp4", "ab.mp4", "b/2.mp4", "c.mp4"]);
    assert_eq!(r.json()[0]["size_bytes"], 7);
    assert_eq!(paths(&app.get("/files?prefix=a", &[]).await), ["a-1.mp4", "a/0.mp4", "a/x/1.mp4", "ab.mp4"]);
    assert_eq!(paths(&app.get("/files?prefix=a/", &[]).await), ["a/0.mp4", "a/x/1.mp4"]);
    assert_eq!(paths(&app.get("/files?prefix=a/x/1", &[]).await), ["a/x/1.mp4"]);
    assert!(paths(&app.get("/files?prefix=zzz/", &[]).await).is_empty());
    app.get("/files?prefix=../", &[]).await.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-path");

    let mut uri = "/files?limit=2".to_owned();
    let mut seen = Vec::new();
    loop {
        let r = app.get(&uri, &[]).await;
        seen.extend(paths(&r));
        let Some(link) = r.headers.get(header::LINK) else { break };
        uri = link.to_str().unwrap().strip_prefix('<').unwrap().split_once('>').unwrap().0.to_owned();
    }
    assert_eq!(seen, ["a-1.mp4", "a/0.mp4", "a/x/1.mp4", "ab.mp4", "b/2.mp4", "c.mp4"]);
    let first = app.get("/files?limit=1&prefix=a/", &[]).await;
    assert_eq!(first.headers[header::LINK], "</files?limit=1&cursor=a/0.mp4&prefix=a/>; rel=\"next\"");
    let second = app.get("/files?limit=1&cursor=a/0.mp4&prefix=a/", &[]).await;
    assert_eq!(paths(&second), ["a/x/1.mp4"]);
    assert!(!second.headers.contains_key(header::LINK));
}

#[tokio::test]
async fn files_of_queued_jobs_cannot_be_replaced_or_deleted() {
    let app = s3_app();
    app.put("in/a.mp4", b"input").await;
    let req = Request::post("/jobs")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({ "command": "-i in/a.mp4 -c copy out/a.mkv" }).to_string()))
        .unwrap();
    let job = app.send(req).await;
    assert_eq!(job.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&job.bytes));
    for r in
        [app.put("in/a.mp4", b"other").await, app.put("out/a.mkv", b"x").await, app.delete("/files/in/a.mp4").await]
    {
        r.problem(StatusCode::CONFLICT, "/problems/file-in-use");
    }
    app.delete("/files/in?recursive=true").await.problem(StatusCode::CONFLICT, "/problems/file-in-use");
    assert_eq!(app.object("in/a.mp4").unwrap(), b"input");
    assert_eq!(app.put("in/b.mp4", b"b").await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn uploads_over_the_limit_and_failed_bodies_leave_nothing() {
    let app = s3_app_with(AppSettings { max_upload_bytes: 20_000_000, ..AppSettings::default() });
    app.put("keep.mp4", b"old").await;
    // Past the limit after two parts went up: the multipart upload is aborted.
    let big = vec![5u8; 20_000_001];
    let r = app.send(Request::put("/files/keep.mp4").body(streamed(&big, 1024 * 1024)).unwrap()).await;
    r.problem(StatusCode::PAYLOAD_TOO_LARGE, "/problems/file-too-large");
    for (path, first) in [("keep.mp4", 100_000), ("new/dir/a.mp4", jobs::storage::PART_BYTES + 100)] {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
            Ok(bytes::Bytes::from(vec![1u8; first])),
            Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "client went away")),
        ];
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let r = app.send(Request::put(format!("/files/{path}")).body(body).unwrap()).await;
        r.problem(StatusCode::BAD_REQUEST, "/problems/upload-aborted");
    }
    assert_eq!(app.keys(), ["keep.mp4"]);
    assert_eq!(app.object("keep.mp4").unwrap(), b"old");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !app.unfinished_uploads().is_empty() {
        assert!(std::time::Instant::now() < deadline, "uploads left: {:?}", app.unfinished_uploads());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn concurrent_puts_of_one_path_never_mix() {
    let app = s3_app();
    let contents: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 256 * 1024 + usize::from(i)]).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for content in contents.clone() {
        let state = app.state.clone();
        tasks.spawn(async move {
            let req = Request::put("/files/same.mp4").body(streamed(&content, 4096)).unwrap();
            ffmpeg_worker_server::app(state).oneshot(req).await.unwrap().status()
        });
    }
    while let Some(status) = tasks.join_next().await {
        let status = status.unwrap();
        assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{status}");
    }
    assert!(contents.contains(&app.object("same.mp4").unwrap()), "the stored file is one upload, whole");
    assert_eq!(app.keys(), ["same.mp4"]);
}

/// A bucket that does not answer: 503 problems, quickly, for every operation.
#[tokio::test]
async fn an_unreachable_bucket_is_503() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = S3Config { endpoint: Some(format!("http://127.0.0.1:{port}")), ..s3_config("nowhere", "") };
    let storage = S3Storage::new(&config).unwrap();
    assert!(storage.check().await.is_err());
    let data = tempfile::tempdir().unwrap();
    let runner = FfmpegRunner::new(FfmpegConfig::new("ffmpeg", data.path()));
    let config = JobsConfig { remote_storage: Some(Arc::new(storage)), ..JobsConfig::default() };
    let jobs = Jobs::new(Arc::new(MemoryStore::new()), Arc::new(runner), Sandbox::new(data.path()).unwrap(), config);
    let app = S3App { state: AppState::new(jobs), bucket: "nowhere".to_owned(), _data: data };
    let started = std::time::Instant::now();
    for r in [app.put("a.mp4", b"x").await, app.get("/files/a.mp4", &[]).await, app.get("/files", &[]).await] {
        let body = r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable");
        assert!(r.headers.contains_key(header::RETRY_AFTER), "{body}");
    }
    // Bounded retries: seconds, not object_store's default minutes.
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());
}

//! The files API's cases of the S3 backend alone (multipart uploads, the key prefix, an
//! unreachable bucket), with the harness of `files_app`; what both backends share is tested on
//! each in `files`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ffmpeg_core::sandbox::Sandbox;
use ffmpeg_worker_server::{AppSettings, AppState};
use jobs::storage::{S3Config, S3Storage, Storage};
use jobs::{FfmpegConfig, FfmpegRunner, Jobs, JobsConfig, MemoryStore};
use tower::ServiceExt as _;

use crate::files_app::Backend::S3;
use crate::files_app::{FilesApp, s3_config, sha256_hex, streamed};

/// Bodies larger than a part go up as a multipart upload while they arrive, and read back
/// whole, in ranges across part boundaries.
#[tokio::test]
async fn large_uploads_are_multipart_and_read_back_whole() {
    let app = FilesApp::new(S3);
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

/// A key beside the prefix (`media/files2/...`) is not under it.
#[tokio::test]
async fn list_leaves_out_keys_beside_the_prefix() {
    let app = FilesApp::new(S3);
    assert_eq!(app.put("a/0.mp4", b"a").await.status, StatusCode::CREATED);
    let outside = S3Storage::new(&s3_config(app.bucket(), "media/files2")).unwrap();
    let body: jobs::storage::ByteStream = Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"o"))]));
    let options = jobs::storage::PutOptions { create_only: false, max_bytes: 10, conditional: false };
    outside.put("a.mp4", body, options).await.unwrap().commit().await.unwrap();
    assert_eq!(app.files(), ["a/0.mp4", "media/files2/a.mp4"]);
    assert_eq!(app.get("/files", &[]).await.paths(), ["a/0.mp4"]);
    assert_eq!(app.get("/files?prefix=a", &[]).await.paths(), ["a/0.mp4"]);
}

/// Past the limit after two parts went up: the multipart upload is aborted, the old file kept.
#[tokio::test]
async fn an_upload_past_the_limit_after_parts_went_up_is_aborted() {
    let app = FilesApp::with(S3, AppSettings { max_upload_bytes: 20_000_000, ..AppSettings::default() });
    app.put("keep.mp4", b"old").await;
    let big = vec![5u8; 20_000_001];
    let r = app.send(Request::put("/files/keep.mp4").body(streamed(&big, 1024 * 1024)).unwrap()).await;
    r.problem(StatusCode::PAYLOAD_TOO_LARGE, "/problems/file-too-large");
    assert_eq!(app.files(), ["keep.mp4"]);
    assert_eq!(app.stored("keep.mp4").unwrap(), b"old");
    app.no_unfinished_uploads().await;
}

/// The files API over `config`'s bucket (`bucket`), ffmpeg checked (so `/ready` looks at
/// the storage).
fn ready_app(config: &S3Config, bucket: &str) -> FilesApp {
    let storage = S3Storage::new(config).unwrap();
    let data = tempfile::tempdir().unwrap();
    let runner = FfmpegRunner::new(FfmpegConfig::new("ffmpeg", data.path()));
    let config = JobsConfig { remote_storage: Some(Arc::new(storage)), ..JobsConfig::default() };
    let jobs = Jobs::new(Arc::new(MemoryStore::new()), Arc::new(runner), Sandbox::new(data.path()).unwrap(), config);
    let settings = AppSettings { ffmpeg_version: Some("ffmpeg version test".to_owned()), ..AppSettings::default() };
    FilesApp::of(AppState::with_settings(jobs, settings), data, Some(bucket.to_owned()))
}

/// [`ready_app`] on a fresh bucket of `server` (prefix `media`), reached through a proxy that
/// a test can make silent, with a 1 s request timeout: the proxy, the bucket and the app.
fn proxied_app(server: &s3_harness::S3Server) -> (s3_harness::Proxy, String, FilesApp) {
    let proxy = s3_harness::Proxy::start(server.port());
    let bucket = server.bucket();
    let timeouts = jobs::storage::S3Timeouts { request: std::time::Duration::from_secs(1), ..Default::default() };
    let config = S3Config { endpoint: Some(proxy.endpoint()), timeouts, ..s3_config(&bucket, "media") };
    let app = ready_app(&config, &bucket);
    (proxy, bucket, app)
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
    let app = FilesApp::of(AppState::new(jobs), data, Some("nowhere".to_owned()));
    let started = std::time::Instant::now();
    for r in [app.put("a.mp4", b"x").await, app.get("/files/a.mp4", &[]).await, app.get("/files", &[]).await] {
        let body = r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable");
        assert!(r.headers.contains_key(header::RETRY_AFTER), "{body}");
    }
    // Bounded retries: seconds, not object_store's default minutes.
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());
}

/// A bucket that stops answering (tester F8: a stopped process, whose kernel still accepts
/// connections): every files request is a 503 problem within about the request timeout (it was
/// 30 s each), and `/ready` is 503 naming the file storage, while it is 200 with a live bucket.
#[tokio::test]
async fn a_bucket_that_stops_answering_is_503_within_the_request_timeout_and_not_ready() {
    // Bound, never accepting: connections complete in the kernel's backlog, nothing answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let timeouts = jobs::storage::S3Timeouts { request: std::time::Duration::from_secs(1), ..Default::default() };
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let config = S3Config { endpoint: Some(endpoint), timeouts, ..s3_config("stopped", "") };
    let app = ready_app(&config, "stopped");
    // Each request waits about 1 s (the old client: 30 s, so these three took 90 s).
    let requests = async {
        for r in [app.put("a.mp4", b"x").await, app.get("/files/a.mp4", &[]).await, app.get("/files", &[]).await] {
            r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable");
        }
        let r = app.get("/ready", &[]).await;
        let body = r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/not-ready");
        assert!(body["detail"].as_str().unwrap().contains("file storage does not answer"), "{body}");
    };
    tokio::time::timeout(std::time::Duration::from_secs(45), requests).await.expect("answered within seconds");
    drop(silent);

    let live = FilesApp::with(
        S3,
        AppSettings { ffmpeg_version: Some("ffmpeg version test".to_owned()), ..AppSettings::default() },
    );
    let r = live.get("/ready", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.bytes));
}

/// The bucket's temporary area (runs' outputs waiting to be published, create-only uploads
/// waiting to be copied into place) and names like the local backend's temporary files are
/// the server's own: refused like on a disk.
#[tokio::test]
async fn the_temporary_area_and_temporary_names_are_refused() {
    let app = FilesApp::new(S3);
    for path in [".ffmpeg-worker-upload-temp/publish/x.mp4", "a/.ffmpeg-worker-upload-x.mp4"] {
        app.assert_path_refused(path, "reserved-path").await;
    }
}

/// Two create-only uploads of one large (multipart) path: the second one's body was all
/// sent before the first was created, and ends only after it: it is refused (412) by the
/// bucket's conditional copy into place (no check of the server's own precedes it), never
/// replacing the first, and leaves nothing behind (no temporary object, no unfinished upload).
///
/// The bucket decides alone (one conditional request), so really racing uploads get one 201
/// and one 412 on S3. They are not raced here: moto's server checks `If-None-Match` before it
/// assembles a multipart object, not atomically with it, so two large conditional completes
/// that overlap there both succeed whatever the client does.
#[tokio::test]
async fn a_create_only_upload_finishing_after_another_created_the_file_is_refused_whole() {
    let app = FilesApp::new(S3);
    let size = jobs::storage::PART_BYTES + 64 * 1024;
    let body = |fill: u8| -> Vec<Result<bytes::Bytes, std::io::Error>> {
        vec![fill; size].chunks(256 * 1024).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect()
    };
    let create_only = |body: Body| Request::put("/files/race/big.mkv").header("if-none-match", "*").body(body).unwrap();
    // The second upload: everything but the end of its body, now.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (sent_tx, sent) = tokio::sync::oneshot::channel::<()>();
    let end = futures_util::stream::once(async move {
        let _ = sent_tx.send(());
        let _ = released.await;
        Ok::<_, std::io::Error>(bytes::Bytes::new())
    });
    let second = Body::from_stream(futures_util::StreamExt::chain(futures_util::stream::iter(body(2)), end));
    let state = app.state.clone();
    let second = tokio::spawn(async move { ffmpeg_worker_server::app(state).oneshot(create_only(second)).await });
    sent.await.unwrap();
    // The first upload, whole.
    let first = app.send(create_only(Body::from_stream(futures_util::stream::iter(body(1))))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&first.bytes));
    release.send(()).unwrap();
    let second = second.await.unwrap().unwrap();
    assert_eq!(second.status(), StatusCode::PRECONDITION_FAILED);
    assert!(app.stored("race/big.mkv").unwrap() == vec![1u8; size], "the first upload's file, whole");
    // No temporary object is left (the area's keys would show here), no unfinished upload.
    assert_eq!(app.files(), ["race/big.mkv"]);
    app.no_unfinished_uploads().await;
}

/// A job whose output is where the bucket holds a directory, or below a file (tester G14), is
/// refused at submit as an upload there is: 409 `file-conflict`, naming the argument.
#[tokio::test]
async fn a_job_writing_where_the_bucket_has_a_directory_or_below_a_file_is_409() {
    let app = FilesApp::new(S3);
    assert_eq!(app.put("dirc/d/inner.txt", b"inner").await.status, StatusCode::CREATED);
    assert_eq!(app.put("filec/f", b"a file").await.status, StatusCode::CREATED);
    for (command, position, argument, detail) in [
        ("-f lavfi -i testsrc -t 1 -f mp4 dirc/d", 9, "dirc/d", "`dirc/d` is a directory"),
        (
            "-f lavfi -i testsrc -t 1 filec/f/x.mp4",
            7,
            "filec/f/x.mp4",
            "`filec/f` is a file in the storage, not a directory",
        ),
    ] {
        let body = app.submit(command).await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
        assert_eq!((body["argument_position"].as_u64(), body["argument"].as_str()), (Some(position), Some(argument)));
        assert!(body["detail"].as_str().unwrap().contains(detail), "{body}");
    }
    // The same upload is the files API's 409 too; nothing else was stored.
    app.put("dirc/d", b"x").await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
    assert_eq!(app.files(), ["dirc/d/inner.txt", "filec/f"]);
}

/// A bucket that stops answering (tester G6): the first files call waits for it (the request
/// timeout), a check in the background confirms it, and from then on every files call (PUT,
/// GET, HEAD, DELETE, list, probe) is refused at once, saying which bucket has not answered
/// since when, with `Retry-After`; `/ready` shares that state. Once the bucket answers again
/// the calls work again by themselves.
#[tokio::test]
async fn files_calls_fail_at_once_while_the_bucket_is_known_unreachable_and_recover_by_themselves() {
    use std::time::{Duration, Instant};
    let server = s3_harness::shared();
    let (proxy, bucket, app) = proxied_app(server);
    assert_eq!(app.put("in/a.txt", b"kept").await.status, StatusCode::CREATED);
    assert_eq!(app.get("/ready", &[]).await.status, StatusCode::OK);

    proxy.set(s3_harness::ProxyMode::Silent);
    let named = format!("s3://{bucket}/media");
    let known = |body: &serde_json::Value| {
        let detail = body["detail"].as_str().unwrap_or_default().to_owned();
        detail.contains(&format!("the file storage `{named}` has not answered since")).then_some(detail)
    };
    // The first call waits for the bucket; the calls after the background check are refused
    // at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (detail, retry_after) = loop {
        let r = app.get("/files/in/a.txt", &[]).await;
        let body = r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable");
        if let Some(detail) = known(&body) {
            break (detail, r.headers[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap());
        }
        assert!(Instant::now() < deadline, "never known unreachable: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(detail.contains("`in/a.txt` was not asked"), "{detail}");
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    // Every kind of files call takes the same path.
    let r = app.put("in/b.txt", b"new").await;
    assert!(known(&r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable")).is_some());
    let r = app.get("/files?prefix=in/", &[]).await;
    assert!(known(&r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable")).is_some());
    let r = app.delete("/files/in/a.txt").await;
    assert!(known(&r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable")).is_some());
    // `/probe` reads the file as the files API does, and answers as it does (tester L9: it
    // said `probe-unavailable`, as if ffprobe had failed).
    let r = app.get("/probe/in/a.txt", &[]).await;
    assert!(known(&r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable")).is_some());
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    // The root's listing names the bucket, not an empty path (tester L9: "`` was not asked").
    let r = app.get("/files", &[]).await;
    let detail = known(&r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable")).unwrap();
    assert!(detail.contains(&format!("`{named}` was not asked")) && !detail.contains("``"), "{detail}");
    let r = app.send(axum::http::Request::head("/files/in/a.txt").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    let r = app.get("/ready", &[]).await;
    let body = r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/not-ready");
    assert!(body["detail"].as_str().unwrap().contains(&named), "{body}");

    // The bucket answers again: the calls work again, with no one doing anything.
    proxy.set(s3_harness::ProxyMode::Pass);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = app.get("/files/in/a.txt", &[]).await;
        if r.status == StatusCode::OK {
            assert_eq!(r.bytes, b"kept");
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {}", String::from_utf8_lossy(&r.bytes));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.put("in/b.txt", b"new").await.status, StatusCode::CREATED);
    assert_eq!(app.get("/ready", &[]).await.status, StatusCode::OK);
}

/// A bucket deleted while the server runs (tester H8: a job failed "no file", `/ready` said
/// the storage "does not answer"): every files call is a 503 naming the bucket as missing,
/// `/ready` says the same; once the bucket exists again, the calls work by themselves.
#[tokio::test]
async fn a_bucket_deleted_while_the_server_runs_is_named_missing_and_recovers() {
    use std::time::{Duration, Instant};
    let server = s3_harness::shared();
    let bucket = server.bucket();
    let config = s3_config(&bucket, "media");
    let app = ready_app(&config, &bucket);
    assert_eq!(app.put("in/a.txt", b"kept").await.status, StatusCode::CREATED);
    assert_eq!(app.get("/ready", &[]).await.status, StatusCode::OK);

    server.delete_bucket(&bucket);
    let missing = format!("bucket `{bucket}` does not exist");
    let named = |body: &serde_json::Value| body["detail"].as_str().unwrap_or_default().contains(&missing);
    for r in [
        app.get("/files/in/a.txt", &[]).await,
        app.put("in/b.txt", b"new").await,
        app.get("/files?prefix=in/", &[]).await,
        app.delete("/files/in/a.txt").await,
    ] {
        let body = r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable");
        assert!(named(&body), "{body}");
    }
    // `/ready` shares what the calls found (a check confirms it in the background).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = app.get("/ready", &[]).await;
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            let body = r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/not-ready");
            if named(&body) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "/ready never named the bucket: {}", String::from_utf8_lossy(&r.bytes));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Known missing now: the root's listing names what it asked about (tester L9: "asked
    // about ``"), `/probe` answers as the files API (it was `probe-unavailable`), and a
    // submission is refused, nothing queued (tester L8: it was queued).
    let r = app.get("/files", &[]).await;
    let body = r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable");
    let detail = body["detail"].as_str().unwrap();
    assert!(named(&body) && detail.contains(&format!("asked about `s3://{bucket}/media`")), "{body}");
    assert!(!detail.contains("``"), "{body}");
    let r = app.get("/probe/in/a.txt", &[]).await;
    assert!(named(&r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable")));
    let r = app.submit("-i in/a.txt -c copy out/a.mkv").await;
    let body = r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable");
    assert!(named(&body) && body["detail"].as_str().unwrap().contains("not queued"), "{body}");
    assert_eq!(app.get("/jobs", &[]).await.json().as_array().map(Vec::len), Some(0));

    // The bucket exists again (empty): the calls work again, with no one doing anything.
    server.create_bucket(&bucket);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = app.get("/files/in/a.txt", &[]).await;
        if r.status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {}", String::from_utf8_lossy(&r.bytes));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.put("in/b.txt", b"new").await.status, StatusCode::CREATED);
    assert_eq!(app.get("/ready", &[]).await.status, StatusCode::OK);
}

/// Submissions while the bucket does not answer (tester L8: each waited for its checks, about
/// 10 s, then queued the job, and the outage stayed unknown to the rest of the service). A
/// submission that finds the bucket silent is refused, 503 `storage-unavailable` naming the
/// bucket and since when, with `Retry-After`, nothing queued; and it made the outage known as
/// a worker would: the very next files call is refused as known down, without asking the
/// bucket, and so is every next submission, until the bucket answers again.
#[tokio::test]
async fn a_submission_while_the_bucket_does_not_answer_is_503_and_makes_the_outage_known() {
    use std::time::{Duration, Instant};
    let server = s3_harness::shared();
    let (proxy, bucket, app) = proxied_app(server);
    assert_eq!(app.put("in/a.mp4", b"x").await.status, StatusCode::CREATED);
    // Checked and queued while the bucket answers.
    assert_eq!(app.submit("-i in/a.mp4 -c copy out/a.mkv").await.status, StatusCode::CREATED);

    proxy.set(s3_harness::ProxyMode::Silent);
    let named = format!("the file storage `s3://{bucket}/media` has not answered since");
    let refused = |r: &crate::files_app::Reply| {
        let body = r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable");
        let detail = body["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains("the job was not queued") && detail.contains(&named), "{detail}");
        let retry_after = r.headers[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap();
        assert!((1..=10).contains(&retry_after), "{retry_after}");
        detail
    };
    // The first submission finds the bucket silent itself.
    let detail = refused(&app.submit("-i in/a.mp4 -c copy out/b.mkv").await);
    assert!(detail.contains("`in/a.mp4` was not asked"), "{detail}");
    // Known to the whole service now: the files API refuses at once, naming the outage.
    let r = app.get("/files/in/a.mp4", &[]).await;
    let body = r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable");
    assert!(body["detail"].as_str().unwrap().contains(&named), "{body}");
    let r = app.get("/ready", &[]).await;
    r.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/not-ready");
    // A submission with no bucket file to read is refused as well: its outputs go there.
    refused(&app.submit("-f lavfi -i testsrc -t 1 out/c.mp4").await);
    // Only the job of the live bucket was queued.
    assert_eq!(app.get("/jobs", &[]).await.json().as_array().map(Vec::len), Some(1));

    // The bucket answers again: submissions are checked and queued again, by themselves.
    proxy.set(s3_harness::ProxyMode::Pass);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = app.submit("-i in/a.mp4 -c copy out/d.mkv").await;
        if r.status == StatusCode::CREATED {
            break;
        }
        refused(&r);
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.get("/jobs", &[]).await.json().as_array().map(Vec::len), Some(2));
}

//! The files API in-process (`oneshot`), without workers: jobs stay queued, which is what the
//! in-use checks need. The behaviour both storage backends share runs on each
//! (`on_each_backend!`: `NAME::local`, `NAME::s3`); the data directory's own cases (links,
//! permissions, a full disk) follow. The bucket's own cases are in `files_s3`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ffmpeg_core::sandbox::Sandbox;
use ffmpeg_worker_server::{AppSettings, AppState, app};
use http_body_util::BodyExt;
use jobs::{FfmpegConfig, FfmpegRunner, Jobs, JobsConfig, MemoryStore};
use serde_json::Value;
use tower::ServiceExt;

use crate::files_app::Backend::{self, Local, S3};
use crate::files_app::{FilesApp, failing_after, on_each_backend, sha256_hex, streamed, walk};
use crate::tmpfs::Tmpfs;

on_each_backend!(put_creates_then_replaces_and_get_returns_the_bytes);
async fn put_creates_then_replaces_and_get_returns_the_bytes(backend: Backend) {
    let app = FilesApp::new(backend);
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
    assert_eq!(app.stored("in/clips/a.mp4").unwrap(), content);

    let r = app.put("in/clips/a.mp4", b"short").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["size_bytes"], 5);
    assert!(!r.headers.contains_key(header::LOCATION));

    let r = app.get("/files/in/clips/a.mp4", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, b"short");
    assert_eq!(r.headers[header::CONTENT_TYPE], "video/mp4");
    assert_eq!(r.headers[header::CONTENT_LENGTH], "5");
    assert_eq!(r.headers[header::ACCEPT_RANGES], "bytes");
    assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(r.headers.contains_key(header::ETAG) && r.headers.contains_key(header::LAST_MODIFIED));
    assert!(!r.headers.contains_key(header::CONTENT_DISPOSITION), "media is served inline");
    // `/` sent as `%2F` (what Swagger UI sends) names the same file.
    let r = app.get("/files/in%2Fclips%2Fa.mp4", &[]).await;
    assert_eq!(r.bytes, b"short");
    // Names are stored as written (no percent-encoding in the bucket).
    assert_eq!(app.put("take%232%20%5Bfinal%5D.mp4", b"t").await.status, StatusCode::CREATED);
    assert_eq!(app.get("/files/take%232%20%5Bfinal%5D.mp4", &[]).await.bytes, b"t");
    // No temporary file, no unfinished upload is left.
    assert_eq!(app.files(), ["in/clips/a.mp4", "take#2 [final].mp4"]);
    match backend {
        Local => assert_eq!(app.tree(), ["in", "in/clips", "in/clips/a.mp4", "take#2 [final].mp4"]),
        S3 => assert!(app.unfinished_uploads().is_empty()),
    }
}

on_each_backend!(ranges_and_conditional_requests);
async fn ranges_and_conditional_requests(backend: Backend) {
    let app = FilesApp::new(backend);
    let content: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    app.put("v.mp4", &content).await;
    let r = app.get("/files/v.mp4", &[("range", "bytes=10-19")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes, &content[10..20]);
    assert_eq!(r.headers[header::CONTENT_RANGE], "bytes 10-19/1000");
    assert_eq!(r.headers[header::CONTENT_LENGTH], "10");
    let r = app.get("/files/v.mp4", &[("range", "bytes=-100")]).await;
    assert_eq!(r.bytes, &content[900..]);
    let r = app.get("/files/v.mp4", &[("range", "bytes=990-")]).await;
    assert_eq!((r.status, r.bytes.as_slice()), (StatusCode::PARTIAL_CONTENT, &content[990..]));
    let r = app.get("/files/v.mp4", &[("range", "bytes=1000-")]).await;
    r.problem(StatusCode::RANGE_NOT_SATISFIABLE, "/problems/invalid-request");
    assert_eq!(r.headers[header::CONTENT_RANGE], "bytes */1000");

    let full = app.get("/files/v.mp4", &[]).await;
    let etag = full.headers[header::ETAG].to_str().unwrap().to_owned();
    let modified = full.headers[header::LAST_MODIFIED].to_str().unwrap().to_owned();
    let r = app.get("/files/v.mp4", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.bytes.is_empty());
    let r = app.get("/files/v.mp4", &[("if-modified-since", &modified)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = app.get("/files/v.mp4", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(r.status, StatusCode::OK);
    // A range for another version of the file: the whole (new) file.
    let r = app.get("/files/v.mp4", &[("range", "bytes=0-9"), ("if-range", "\"old\"")]).await;
    assert_eq!((r.status, r.bytes.len()), (StatusCode::OK, 1000));
    let r = app.get("/files/v.mp4", &[("range", "bytes=0-9"), ("if-range", &etag)]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    // Other content of the same length: another entity tag.
    let other: Vec<u8> = content.iter().rev().copied().collect();
    app.put("v.mp4", &other).await;
    let r = app.get("/files/v.mp4", &[("if-none-match", &etag)]).await;
    assert_eq!((r.status, r.bytes), (StatusCode::OK, other));

    let head = app.send(Request::head("/files/v.mp4").body(Body::empty()).unwrap()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers[header::CONTENT_LENGTH], "1000");
    assert!(head.bytes.is_empty());
}

on_each_backend!(if_none_match_star_never_replaces_small_or_large);
/// Create-only uploads (`If-None-Match: *`), within one part and larger (S3: a multipart
/// upload, refused at completion and aborted).
async fn if_none_match_star_never_replaces_small_or_large(backend: Backend) {
    let app = FilesApp::new(backend);
    let large = vec![9u8; jobs::storage::PART_BYTES + 1];
    for (path, first, second) in
        [("a.wav", b"first".to_vec(), b"second".to_vec()), ("b.mkv", large.clone(), vec![1u8; large.len()])]
    {
        let create_only = |content: Vec<u8>| {
            Request::put(format!("/files/{path}")).header("if-none-match", "*").body(Body::from(content)).unwrap()
        };
        assert_eq!(app.send(create_only(first.clone())).await.status, StatusCode::CREATED, "{path}");
        app.send(create_only(second)).await.problem(StatusCode::PRECONDITION_FAILED, "/problems/file-exists");
        assert!(app.stored(path).unwrap() == first, "{path} kept");
    }
    assert_eq!(app.files(), ["a.wav", "b.mkv"]);
    if backend == S3 {
        app.no_unfinished_uploads().await;
    }
}

on_each_backend!(bad_paths_are_problems_naming_the_rule_and_nothing_is_written);
async fn bad_paths_are_problems_naming_the_rule_and_nothing_is_written(backend: Backend) {
    let app = FilesApp::new(backend);
    let long = "n".repeat(256);
    for (path, rule) in [
        ("..%2Fescape.mp4", "path-escapes"),
        ("a/../../escape.mp4", "path-escapes"),
        ("%2Fetc%2Fpasswd", "absolute-path"),
        ("a%00b.mp4", "not-a-file"),
        ("http:x.mp4", "protocol"),
        (long.as_str(), "name-too-long"),
        // No name holds a control character, on either backend (tester finding K7: a bucket
        // key cannot, and a newline or an escape breaks playlists, logs and terminals).
        ("a%01b.mp4", "control-character"),
        ("d%0A/b.mp4", "control-character"),
        ("a%1B%5B31mb.mp4", "control-character"),
        ("a%C2%9Bb.mp4", "control-character"),
    ] {
        app.assert_path_refused(path, rule).await;
    }
    assert!(app.files().is_empty(), "{:?}", app.files());
    // `.` and `//` are normalised: the file is stored under the normal form.
    assert_eq!(app.put("./x//y.mp4", b"y").await.json()["path"], "x/y.mp4");
    assert_eq!(app.files(), ["x/y.mp4"]);
}

on_each_backend!(directories_where_files_are_expected_conflict);
async fn directories_where_files_are_expected_conflict(backend: Backend) {
    let app = FilesApp::new(backend);
    for path in ["d/a.mp4", "f.mp4", "d/e.mp4", "d/sub/x.mp4", "d-e.mp4"] {
        assert_eq!(app.put(path, b"x").await.status, StatusCode::CREATED);
    }
    // Upload to a directory's name; a file as a parent directory.
    app.put("d", b"x").await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
    app.put("f.mp4/x.mp4", b"x").await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
    app.get("/files/d", &[]).await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
    app.get("/files/nothing.mp4", &[]).await.problem(StatusCode::NOT_FOUND, "/problems/file-not-found");
    app.delete("/files/d").await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
    app.delete("/files/nothing.mp4").await.problem(StatusCode::NOT_FOUND, "/problems/file-not-found");
    assert_eq!(app.delete("/files/f.mp4").await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.delete("/files/d?recursive=true").await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.files(), ["d-e.mp4"]);
    if backend == Local {
        assert_eq!(app.tree(), ["d-e.mp4"], "the directories went too");
    }
    // The root is never deleted.
    app.delete("/files/.?recursive=true").await.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-path");
    assert_eq!(app.files(), ["d-e.mp4"]);
}

on_each_backend!(list_is_recursive_in_path_order_by_string_prefix_and_paged);
async fn list_is_recursive_in_path_order_by_string_prefix_and_paged(backend: Backend) {
    let app = FilesApp::new(backend);
    for path in ["b/2.mp4", "a-1.mp4", "a/x/1.mp4", "a/0.mp4", "ab.mp4", "c.mp4"] {
        assert_eq!(app.put(path, path.as_bytes()).await.status, StatusCode::CREATED);
    }
    let r = app.get("/files", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    // Byte order of the paths.
    assert_eq!(r.paths(), ["a-1.mp4", "a/0.mp4", "a/x/1.mp4", "ab.mp4", "b/2.mp4", "c.mp4"]);
    assert_eq!(r.json()[0]["size_bytes"], 7);
    assert!(!r.headers.contains_key(header::LINK));
    assert_eq!(app.get("/files?prefix=a", &[]).await.paths(), ["a-1.mp4", "a/0.mp4", "a/x/1.mp4", "ab.mp4"]);
    assert_eq!(app.get("/files?prefix=a/", &[]).await.paths(), ["a/0.mp4", "a/x/1.mp4"]);
    assert_eq!(app.get("/files?prefix=a/x/1", &[]).await.paths(), ["a/x/1.mp4"]);
    assert!(app.get("/files?prefix=zzz/", &[]).await.paths().is_empty());
    assert!(app.get("/files?prefix=c.mp4/", &[]).await.paths().is_empty());
    // A prefix is refused by the rules a path is refused by.
    for (prefix, rule) in [
        ("../", "path-escapes"),
        ("a/../../x", "path-escapes"),
        ("/etc", "absolute-path"),
        ("/", "absolute-path"),
        ("a%00", "not-a-file"),
    ] {
        let r = app.get(&format!("/files?prefix={prefix}"), &[]).await;
        assert_eq!(r.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-path")["rule"], rule, "{prefix}");
    }
    app.get("/files?cursor=", &[]).await.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-request");
    app.get("/files?limit=0", &[]).await.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-request");
    app.get("/files?limit=1001", &[]).await.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-request");

    // Pages of two, following `Link`.
    let mut uri = "/files?limit=2".to_owned();
    let mut seen = Vec::new();
    loop {
        let r = app.get(&uri, &[]).await;
        seen.extend(r.paths());
        let Some(link) = r.headers.get(header::LINK) else { break };
        let link = link.to_str().unwrap();
        uri = link.strip_prefix('<').unwrap().split_once('>').unwrap().0.to_owned();
        assert!(link.ends_with("rel=\"next\""));
    }
    assert_eq!(seen, ["a-1.mp4", "a/0.mp4", "a/x/1.mp4", "ab.mp4", "b/2.mp4", "c.mp4"]);
    let first = app.get("/files?limit=1&prefix=a/", &[]).await;
    assert_eq!(first.headers[header::LINK], "</files?limit=1&cursor=a/0.mp4&prefix=a/>; rel=\"next\"");
    let second = app.get("/files?limit=1&cursor=a/0.mp4&prefix=a/", &[]).await;
    assert_eq!(second.paths(), ["a/x/1.mp4"]);
    assert!(!second.headers.contains_key(header::LINK));
}

on_each_backend!(files_of_queued_jobs_cannot_be_replaced_or_deleted);
async fn files_of_queued_jobs_cannot_be_replaced_or_deleted(backend: Backend) {
    let app = FilesApp::new(backend);
    app.put("in/a.mp4", b"input").await;
    app.put("out/old.mkv", b"old").await;
    let job = app.submit("-i in/a.mp4 -c copy out/a.mkv").await;
    assert_eq!(job.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&job.bytes));
    let id = job.json()["id"].as_str().unwrap().to_owned();
    for r in
        [app.put("in/a.mp4", b"other").await, app.put("out/a.mkv", b"x").await, app.delete("/files/in/a.mp4").await]
    {
        let body = r.problem(StatusCode::CONFLICT, "/problems/file-in-use");
        assert!(body["detail"].as_str().unwrap().contains(&id), "{body}");
    }
    app.delete("/files/in?recursive=true").await.problem(StatusCode::CONFLICT, "/problems/file-in-use");
    assert_eq!(app.stored("in/a.mp4").unwrap(), b"input");
    // Files the job does not touch are free.
    assert_eq!(app.put("in/b.mp4", b"b").await.status, StatusCode::CREATED);
    assert_eq!(app.delete("/files/out/old.mkv").await.status, StatusCode::NO_CONTENT);
    // Once it is cancelled, its files are free again.
    app.send(Request::post(format!("/jobs/{id}/cancel")).body(Body::empty()).unwrap()).await;
    assert_eq!(app.put("in/a.mp4", b"other").await.status, StatusCode::OK);
    assert_eq!(app.delete("/files/in?recursive=true").await.status, StatusCode::NO_CONTENT);
    assert!(app.files().is_empty(), "{:?}", app.files());
}

on_each_backend!(uploads_over_the_limit_are_413_and_leave_nothing);
async fn uploads_over_the_limit_are_413_and_leave_nothing(backend: Backend) {
    let app = FilesApp::with(backend, AppSettings { max_upload_bytes: 1000, ..AppSettings::default() });
    // Declared length: refused before the body is read.
    let r = app.put("big/a.bin", &[0u8; 1001]).await;
    r.problem(StatusCode::PAYLOAD_TOO_LARGE, "/problems/file-too-large");
    // Streamed without a length: refused once past the limit.
    let r = app.send(Request::put("/files/big/a.bin").body(streamed(&[1u8; 1500], 300)).unwrap()).await;
    r.problem(StatusCode::PAYLOAD_TOO_LARGE, "/problems/file-too-large");
    assert!(app.files().is_empty(), "{:?}", app.files());
    if backend == Local {
        assert!(app.tree().is_empty(), "{:?}", app.tree());
    }
    // At the limit: stored. The JSON body limit (64 KiB) does not apply to uploads.
    assert_eq!(app.put("a.bin", &[0u8; 1000]).await.status, StatusCode::CREATED);
    let app = FilesApp::new(backend);
    assert_eq!(app.put("b.bin", &vec![7u8; 300_000]).await.status, StatusCode::CREATED);
}

on_each_backend!(a_body_that_fails_half_way_leaves_nothing);
/// A body that fails half-way, within one part and past it (S3: a multipart upload begun,
/// then aborted), replacing a file or creating one in new directories.
async fn a_body_that_fails_half_way_leaves_nothing(backend: Backend) {
    let app = FilesApp::new(backend);
    app.put("keep.mp4", b"old").await;
    for (path, first) in [("keep.mp4", 100_000), ("new/dir/a.mp4", jobs::storage::PART_BYTES + 100)] {
        let r = app.send(Request::put(format!("/files/{path}")).body(failing_after(first)).unwrap()).await;
        r.problem(StatusCode::BAD_REQUEST, "/problems/upload-aborted");
    }
    assert_eq!(app.files(), ["keep.mp4"]);
    assert_eq!(app.stored("keep.mp4").unwrap(), b"old");
    match backend {
        Local => assert_eq!(app.tree(), ["keep.mp4"]),
        S3 => app.no_unfinished_uploads().await,
    }
}

on_each_backend!(concurrent_puts_of_one_path_never_mix);
async fn concurrent_puts_of_one_path_never_mix(backend: Backend) {
    let app = FilesApp::new(backend);
    let contents: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 256 * 1024 + usize::from(i)]).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for content in contents.clone() {
        let state = app.state.clone();
        tasks.spawn(async move {
            // Many small chunks, so the uploads interleave.
            let req = Request::put("/files/same.mp4").body(streamed(&content, 4096)).unwrap();
            ffmpeg_worker_server::app(state).oneshot(req).await.unwrap().status()
        });
    }
    while let Some(status) = tasks.join_next().await {
        let status = status.unwrap();
        assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{status}");
    }
    assert!(contents.contains(&app.stored("same.mp4").unwrap()), "the stored file is one upload, whole");
    assert_eq!(app.files(), ["same.mp4"]);
}

/// The parts of a `multipart/byteranges` answer (`headers`, `body`): each part's
/// `Content-Range` and bytes; every part's type is `video/mp4`.
fn byteranges(headers: &axum::http::HeaderMap, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let content_type = headers[header::CONTENT_TYPE].to_str().unwrap();
    let boundary = content_type.strip_prefix("multipart/byteranges; boundary=").expect(content_type);
    assert_eq!(headers[header::CONTENT_LENGTH], body.len().to_string().as_str());
    let delimiter = format!("\r\n--{boundary}");
    let find =
        |from: usize, needle: &[u8]| body[from..].windows(needle.len()).position(|w| w == needle).map(|i| i + from);
    let mut parts = Vec::new();
    let mut at = find(0, delimiter.as_bytes()).expect("a first boundary");
    assert_eq!(at, 0, "nothing before the first boundary");
    loop {
        at += delimiter.len();
        if body[at..].starts_with(b"--\r\n") {
            assert_eq!(at + 4, body.len(), "nothing after the last boundary");
            return parts;
        }
        let head_end = find(at, b"\r\n\r\n").unwrap();
        let head = String::from_utf8(body[at + 2..head_end].to_vec()).unwrap();
        let range = head.lines().find_map(|l| l.strip_prefix("Content-Range: ")).unwrap().to_owned();
        assert!(head.lines().any(|l| l == "Content-Type: video/mp4"), "{head}");
        let next = find(head_end, delimiter.as_bytes()).unwrap();
        parts.push((range, body[head_end + 4..next].to_vec()));
        at = next;
    }
}

on_each_backend!(several_ranges_are_a_multipart_answer);
/// Several ranges in one request: `multipart/byteranges` (RFC 9110 §14.6), ascending,
/// overlapping ones merged, unsatisfiable ones dropped; more than 16 ranges or a malformed one:
/// the whole file, as for one. From a bucket each part is a ranged read of the version opened.
async fn several_ranges_are_a_multipart_answer(backend: Backend) {
    let app = FilesApp::new(backend);
    let content: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    app.put("v.mp4", &content).await;
    let r = app.get("/files/v.mp4", &[("range", "bytes=500-509, 0-9,5-14,-10,2000-")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert!(r.headers.get(header::CONTENT_RANGE).is_none());
    assert_eq!(r.headers[header::ACCEPT_RANGES], "bytes");
    assert_eq!(
        byteranges(&r.headers, &r.bytes),
        [
            ("bytes 0-14/1000".to_owned(), content[0..15].to_vec()),
            ("bytes 500-509/1000".to_owned(), content[500..510].to_vec()),
            ("bytes 990-999/1000".to_owned(), content[990..].to_vec()),
        ]
    );
    // Every boundary is new.
    let again = app.get("/files/v.mp4", &[("range", "bytes=0-0,2-2")]).await;
    assert_ne!(again.headers[header::CONTENT_TYPE], r.headers[header::CONTENT_TYPE]);
    assert_eq!(byteranges(&again.headers, &again.bytes).len(), 2);
    // HEAD: the same headers, no body.
    let head =
        app.send(Request::head("/files/v.mp4").header("range", "bytes=0-0,2-2").body(Body::empty()).unwrap()).await;
    assert_eq!(head.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(head.headers[header::CONTENT_LENGTH], again.bytes.len().to_string().as_str());
    assert!(head.bytes.is_empty());
    // One satisfiable range left: a plain 206.
    let r = app.get("/files/v.mp4", &[("range", "bytes=10-19,5000-")]).await;
    assert_eq!((r.status, r.bytes.as_slice()), (StatusCode::PARTIAL_CONTENT, &content[10..20]));
    assert_eq!(r.headers[header::CONTENT_RANGE], "bytes 10-19/1000");
    let r = app.get("/files/v.mp4", &[("range", "bytes=1000-,2000-")]).await;
    r.problem(StatusCode::RANGE_NOT_SATISFIABLE, "/problems/invalid-request");
    let many: Vec<String> = (0..17).map(|n| format!("{0}-{0}", n * 10)).collect();
    let r = app.get("/files/v.mp4", &[("range", &format!("bytes={}", many.join(",")))]).await;
    assert_eq!((r.status, r.bytes.len()), (StatusCode::OK, 1000));
    let r = app.get("/files/v.mp4", &[("range", "bytes=0-9,x-1")]).await;
    assert_eq!((r.status, r.bytes.len()), (StatusCode::OK, 1000));
}

/// A link inside the data directory that leads nowhere: the file is not there (404, naming
/// the link), nothing escapes.
#[tokio::test]
async fn a_path_through_a_dangling_link_inside_is_not_found() {
    let app = FilesApp::new(Local);
    std::os::unix::fs::symlink("gone", app.data.path().join("nd")).unwrap();
    std::os::unix::fs::symlink("missing.mp4", app.data.path().join("clip.mp4")).unwrap();
    for path in ["nd/a/x.mp4", "clip.mp4"] {
        let link = path.split('/').next().unwrap();
        let body =
            app.get(&format!("/files/{path}"), &[]).await.problem(StatusCode::NOT_FOUND, "/problems/file-not-found");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("`{link}` is a symbolic link")), "{detail}");
        let head = app.send(Request::head(format!("/files/{path}")).body(Body::empty()).unwrap()).await;
        assert_eq!(head.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn types_outside_the_media_allowlist_are_attachments_in_a_sandbox() {
    let app = FilesApp::new(Local);
    for (path, content_type) in
        [("x.html", "text/html"), ("x.svg", "image/svg+xml"), ("x.bin", "application/octet-stream")]
    {
        app.put(path, b"<script>alert(1)</script>").await;
        let r = app.get(&format!("/files/{path}"), &[]).await;
        assert_eq!(r.headers[header::CONTENT_TYPE], content_type, "{path}");
        let disposition = r.headers[header::CONTENT_DISPOSITION].to_str().unwrap();
        assert!(disposition.starts_with("attachment;") && disposition.contains(path), "{disposition}");
        assert_eq!(r.headers[header::CONTENT_SECURITY_POLICY], "sandbox");
        assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}

/// What HLS and DASH players, CDNs and the media type registry expect (tester finding F8).
#[tokio::test]
async fn media_types_are_the_ones_players_expect() {
    let app = FilesApp::new(Local);
    for (path, content_type, inline) in [
        ("hls/seg000.ts", "video/mp2t", true),
        ("a.m2ts", "video/mp2t", true),
        ("hls/i.m3u8", "application/vnd.apple.mpegurl", true),
        ("hls/I.M3U8", "application/vnd.apple.mpegurl", true),
        ("hls/init.mp4", "video/mp4", true),
        ("hls/s1.m4s", "video/iso.segment", true),
        ("a.m4a", "audio/mp4", true),
        ("a.m4v", "video/mp4", true),
        ("a.mkv", "video/x-matroska", true),
        ("a.webm", "video/webm", true),
        ("a.mp3", "audio/mpeg", true),
        ("a.aac", "audio/aac", true),
        ("a.flac", "audio/flac", true),
        ("a.ogg", "audio/ogg", true),
        ("sub.vtt", "text/vtt", true),
        ("a.jpg", "image/jpeg", true),
        // XML: a browser would run script in it. Players fetch it all the same.
        ("dash/m.mpd", "application/dash+xml", false),
    ] {
        assert_eq!(app.put(path, b"x").await.status, StatusCode::CREATED, "{path}");
        let r = app.get(&format!("/files/{path}"), &[]).await;
        assert_eq!(r.headers[header::CONTENT_TYPE], content_type, "{path}");
        assert_eq!(r.headers.contains_key(header::CONTENT_DISPOSITION), !inline, "{path}");
        assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}

/// Every answer is a problem document, a path that is not UTF-8 too (tester finding F8).
#[tokio::test]
async fn a_path_that_is_not_utf8_is_a_problem() {
    let app = FilesApp::new(Local);
    for method in ["GET", "HEAD", "PUT", "DELETE"] {
        for uri in ["/files/%FF.txt", "/files/%C0%AE%C0%AE/x"] {
            let r = app.send(Request::builder().method(method).uri(uri).body(Body::empty()).unwrap()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {uri}");
            assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json", "{method} {uri}");
            if method != "HEAD" {
                assert!(r.json()["detail"].as_str().unwrap().contains("UTF-8"), "{}", r.json());
            }
        }
    }
    assert!(app.tree().is_empty());
}

/// The data directory's own refusals: the database's name, the uploads' temporary names, and
/// links leading out of it (which can be deleted themselves, as a refused job's error says).
#[tokio::test]
async fn reserved_names_and_links_out_of_the_data_directory_are_refused() {
    let app = FilesApp::new(Local);
    for (path, rule) in [
        ("jobs.db", "reserved-path"),
        // The uploads' temporary names: a file by such a name would be hidden and removed.
        (".ffmpeg-worker-upload-x", "reserved-path"),
        ("a/.ffmpeg-worker-upload-x/b.mp4", "reserved-path"),
    ] {
        app.assert_path_refused(path, rule).await;
    }
    // A symlink leading out of the data directory.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"s").unwrap();
    std::os::unix::fs::symlink(outside.path(), app.data.path().join("link")).unwrap();
    let r = app.get("/files/link/secret", &[]).await;
    assert_eq!(r.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-path")["rule"], "path-escapes");
    let r = app.put("link/new", b"x").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!outside.path().join("new").exists());
    assert_eq!(app.tree(), ["link"]);
    // Such a link (to a file, to a directory, or dangling) can be deleted: the link itself.
    std::os::unix::fs::symlink(outside.path().join("secret"), app.data.path().join("to-file")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("gone"), app.data.path().join("dangling")).unwrap();
    let r = app.put("to-file", b"x").await;
    assert_eq!(r.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-path")["rule"], "path-escapes");
    for link in ["link", "to-file", "dangling"] {
        let r = app.delete(&format!("/files/{link}")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "DELETE {link}: {}", String::from_utf8_lossy(&r.bytes));
    }
    assert_eq!(app.tree(), Vec::<String>::new());
    assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"s");
    // A path through such a link is still refused, and deletes nothing behind it.
    std::os::unix::fs::symlink(outside.path(), app.data.path().join("link")).unwrap();
    let r = app.delete("/files/link/secret").await;
    assert_eq!(r.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-path")["rule"], "path-escapes");
    assert!(outside.path().join("secret").exists());
}

/// Directories and the reserved database are not entries of a listing.
#[tokio::test]
async fn list_leaves_out_directories_and_the_database() {
    let app = FilesApp::new(Local);
    for path in ["a/0.mp4", "c.mp4", "jobs.db"] {
        std::fs::create_dir_all(app.data.path().join(path).parent().unwrap()).unwrap();
        std::fs::write(app.data.path().join(path), path).unwrap();
    }
    std::fs::create_dir(app.data.path().join("empty")).unwrap();
    assert_eq!(app.get("/files", &[]).await.paths(), ["a/0.mp4", "c.mp4"]);
}

/// A symlink (inside the data directory) is a name of its own: deleting or uploading to it
/// acts on the link, never on the file or tree it points to; uploads are readable like
/// ffmpeg's outputs.
#[tokio::test]
async fn symlinks_are_deleted_and_replaced_themselves_never_their_targets() {
    use std::os::unix::fs::{PermissionsExt as _, symlink};
    let app = FilesApp::new(Local);
    app.put("keep.txt", b"keep").await;
    app.put("tree/a.mp4", b"a").await;
    std::fs::create_dir(app.data.path().join("sub")).unwrap();
    symlink("../keep.txt", app.data.path().join("sub/alias.txt")).unwrap();
    symlink("tree", app.data.path().join("treelink")).unwrap();
    symlink("keep.txt", app.data.path().join("over.txt")).unwrap();

    assert_eq!(app.delete("/files/sub/alias.txt").await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.delete("/files/treelink?recursive=true").await.status, StatusCode::NO_CONTENT);
    let put = app.put("over.txt", b"new").await;
    assert_eq!(put.status, StatusCode::OK, "{}", String::from_utf8_lossy(&put.bytes));

    assert_eq!(std::fs::read(app.data.path().join("keep.txt")).unwrap(), b"keep");
    assert_eq!(std::fs::read(app.data.path().join("tree/a.mp4")).unwrap(), b"a");
    assert_eq!(std::fs::read(app.data.path().join("over.txt")).unwrap(), b"new");
    assert!(!std::fs::symlink_metadata(app.data.path().join("over.txt")).unwrap().file_type().is_symlink());
    assert_eq!(app.tree(), ["keep.txt", "over.txt", "sub", "tree", "tree/a.mp4"]);
    // 0644 under the umask, as ffmpeg's outputs (0666 under the umask, as a plain file here).
    let mode = |name: &str| std::fs::metadata(app.data.path().join(name)).unwrap().permissions().mode() & 0o777;
    std::fs::write(app.data.path().join("plain.txt"), b"").unwrap();
    assert_eq!(mode("keep.txt"), 0o644 & mode("plain.txt"), "an upload is readable like other files");
}

#[tokio::test]
async fn a_full_disk_is_507_and_keeps_the_old_file() {
    let Some(tmpfs) = Tmpfs::mount("1m", "a_full_disk_is_507_and_keeps_the_old_file") else { return };
    let sandbox = Sandbox::new(tmpfs.path()).unwrap();
    let runner = FfmpegRunner::new(FfmpegConfig::new("ffmpeg", tmpfs.path()));
    let jobs = Jobs::new(Arc::new(MemoryStore::new()), Arc::new(runner), sandbox, JobsConfig::default());
    let state = AppState::new(jobs);
    let send = |req: Request<Body>| {
        let state = state.clone();
        async move {
            let resp = app(state).oneshot(req).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null))
        }
    };
    let (status, _) = send(Request::put("/files/keep.mp4").body(Body::from(vec![1u8; 100_000])).unwrap()).await;
    assert_eq!(status, StatusCode::CREATED);
    for path in ["keep.mp4", "new/dir/big.mp4"] {
        let (status, body) =
            send(Request::put(format!("/files/{path}")).body(Body::from(vec![2u8; 2_000_000])).unwrap()).await;
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
        assert_eq!(body["type"], "/problems/insufficient-storage");
        assert!(body["detail"].as_str().unwrap().contains(path), "{body}");
    }
    assert_eq!(std::fs::read(tmpfs.path().join("keep.mp4")).unwrap(), vec![1u8; 100_000]);
    let left: Vec<String> = walk(tmpfs.path()).iter().map(|p| p.display().to_string()).collect();
    assert_eq!(left, [tmpfs.path().join("keep.mp4").display().to_string()]);
    // Space again: uploads work.
    let (status, _) = send(Request::put("/files/small.mp4").body(Body::from(vec![3u8; 1000])).unwrap()).await;
    assert_eq!(status, StatusCode::CREATED);
}

on_each_backend!(commands_reading_or_writing_a_directory_get_one_answer);
/// A command that reads a directory, or writes a file onto one (or below a file), whichever
/// argument names it, gets one answer on both backends (in a bucket a directory is a key
/// prefix with no object of its own): reading, the sandbox's 422 `not-a-file` naming the
/// argument; writing, 409 `file-conflict` naming the argument (a data directory answered 422
/// for a written option file, and a bucket took an input directory until the run).
async fn commands_reading_or_writing_a_directory_get_one_answer(backend: Backend) {
    let app = FilesApp::new(backend);
    for path in ["d/a.mp4", "d/sub/b.srt", "f.mp4"] {
        assert_eq!(app.put(path, b"x").await.status, StatusCode::CREATED);
    }
    const SRC: &str = "-f lavfi -i testsrc=size=64x48:rate=5 -t 1";
    const RULE: &str = "a job cannot write a file where the storage holds a directory, nor below a file";
    let dir = "`d` is a directory in the storage (files lie below it)";
    let file = "`f.mp4` is a file in the storage, not a directory";
    let cases = [
        ("-i d -f null -".to_owned(), 2, "d", "not a file path".to_owned()),
        ("-i d/sub -f null -".to_owned(), 2, "d/sub", "not a file path".to_owned()),
        (format!("{SRC} -i d -map 0 out.mp4"), 8, "d", "not a file path".to_owned()),
        (
            format!("{SRC} -vf subtitles=d -f null -"),
            7,
            "-vf subtitles=d",
            "filter `subtitles` option `filename`: not a file path".to_owned(),
        ),
        (format!("{SRC} -f mp4 d"), 9, "d", format!("{dir}; {RULE}")),
        (format!("{SRC} -f segment -segment_list d s%d.ts"), 9, "-segment_list d", format!("{dir}; {RULE}")),
        (
            format!("{SRC} -f segment -segment_list f.mp4/l.csv s%d.ts"),
            9,
            "-segment_list f.mp4/l.csv",
            format!("{file}; {RULE}"),
        ),
        (
            format!("{SRC} -f hls -hls_segment_filename d o.m3u8"),
            9,
            "-hls_segment_filename d",
            format!("{dir}; {RULE}"),
        ),
        (
            format!("{SRC} -c:v libx264 -pass 1 -passlogfile f.mp4/p -f null -"),
            11,
            "-passlogfile f.mp4/p",
            format!("{file}; {RULE}"),
        ),
        (format!("{SRC} -vf psnr=stats_file=d -f null -"), 7, "-vf psnr=stats_file=d", format!("{dir}; {RULE}")),
        // Not here: `-passlogfile d` onto a directory `d`, taken below (ffmpeg writes `d-0.log`).
    ];
    for (command, position, argument, detail) in cases {
        let r = app.submit(&command).await;
        let body = if detail.ends_with(RULE) {
            r.problem(StatusCode::CONFLICT, "/problems/file-conflict")
        } else {
            let body = r.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/policy-violation");
            assert_eq!(body["rule"], "not-a-file", "{command}: {body}");
            body
        };
        assert_eq!(body["argument_position"], position, "{command}: {body}");
        assert_eq!(body["argument"], argument, "{command}: {body}");
        assert_eq!(body["detail"], format!("argument {position} `{argument}`: {detail}"), "{command}");
    }
    // Nothing was queued.
    let listed = app.get("/jobs", &[]).await.json();
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    // A prefix is no file: ffmpeg writes `d-0.log` (and `d-0.log.mbtree`) beside the directory
    // `d`, never `d` itself (`"%s-%d.log"`, `fftools/ffmpeg_mux_init.c`), for either pass; so
    // does a prefix below the directory (tester finding L13: a data directory refused both).
    for command in [
        format!("{SRC} -c:v libx264 -pass 1 -passlogfile d -f null -"),
        format!("{SRC} -c:v libx264 -pass 2 -passlogfile d -f null -"),
        format!("{SRC} -c:v libx264 -pass 1 -passlogfile d/sub -f null -"),
        format!("{SRC} -c:v libx264 -pass 1 -passlogfile:v d -f null -"),
    ] {
        let r = app.submit(&command).await;
        assert_eq!(r.status, StatusCode::CREATED, "{command}: {}", String::from_utf8_lossy(&r.bytes));
    }
}

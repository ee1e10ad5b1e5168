//! Keys that other tools put in the bucket (tester findings H3, H4, H5): ones no file path
//! names (`a//b`, `a/./b`, `a/../b`, a control character), the server's reserved names, and
//! folder markers (`dir/`). They are put with raw requests (`s3_harness::S3Server::put_object`),
//! as another tool would, never through the code under test.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ffmpeg_worker_server::AppSettings;
use jobs::storage::{S3Storage, Storage as _};

use crate::files_app::Backend::{Local, S3};
use crate::files_app::{Backend, FilesApp, PREFIX, on_each_backend, s3_config};

/// Keys no file path names, each below `weird/` or `f/`, and what a client would try them as.
const UNNAMEABLE: [&str; 6] = [
    "weird//dbl.txt",
    "weird/./dot.txt",
    "weird/../esc.txt",
    "weird/sub/../../up.txt",
    "f/ctl\u{1}.txt",
    "f/\u{7f}/del.txt",
];

/// Puts `key` (below the app's prefix) into its bucket as another tool would.
fn put_foreign(app: &FilesApp, key: &str, body: &[u8]) {
    s3_harness::shared().put_object(app.bucket(), &format!("{PREFIX}/{key}"), body);
}

/// The app on S3 with `/ready` answerable (it needs an ffmpeg version).
fn ready_app() -> FilesApp {
    FilesApp::with(S3, AppSettings { ffmpeg_version: Some("ffmpeg version test".to_owned()), ..AppSettings::default() })
}

/// One key that no path names (`weird//dbl.txt`, `weird/../esc.txt`, a control character, ...,
/// and one right under the prefix, `media//lead.txt`) made every listing above it, `/ready`,
/// start-up and a recursive DELETE fail with 503 (tester H3). They are skipped: listings,
/// paging, directory checks, `/ready` and start-up answer as if they were not there, while a
/// recursive DELETE of their directory removes them, by their exact text: `weird/../esc.txt`
/// goes, and the file `esc.txt` it would resolve to stays.
#[tokio::test]
async fn keys_no_path_names_are_skipped_and_removed_with_their_directory() {
    let app = ready_app();
    for path in ["esc.txt", "in/a.txt", "up.txt", "weird/ok.txt", "weird/z.txt", "f/ok.txt"] {
        assert_eq!(app.put(path, path.as_bytes()).await.status, StatusCode::CREATED, "{path}");
    }
    for key in UNNAMEABLE {
        put_foreign(&app, key, b"foreign");
    }
    put_foreign(&app, "/lead.txt", b"foreign");
    let ours = ["esc.txt", "f/ok.txt", "in/a.txt", "up.txt", "weird/ok.txt", "weird/z.txt"];

    for (query, listed) in [
        ("", &ours[..]),
        ("?prefix=in", &["in/a.txt"][..]),
        ("?prefix=weird/", &["weird/ok.txt", "weird/z.txt"][..]),
        ("?prefix=f", &["f/ok.txt"][..]),
    ] {
        let r = app.get(&format!("/files{query}"), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", String::from_utf8_lossy(&r.bytes));
        assert_eq!(r.paths(), listed, "{query}");
    }
    // Paged one file at a time across them: every file once, in order.
    let mut paged = Vec::new();
    let mut uri = "/files?limit=1".to_owned();
    loop {
        let r = app.get(&uri, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        paged.extend(r.paths());
        let Some(link) = r.headers.get("link") else { break };
        let link = link.to_str().unwrap();
        uri = link[link.find("/files").unwrap()..link.find('>').unwrap()].to_owned();
    }
    assert_eq!(paged, ours);
    assert_eq!(app.get("/ready", &[]).await.status, StatusCode::OK);
    // Start-up's check of the bucket, and the check behind `/ready`.
    let storage = S3Storage::new(&s3_config(app.bucket(), PREFIX)).unwrap();
    storage.check().await.unwrap();
    storage.ping().await.unwrap();
    // Directories holding only such keys are directories, as on S3.
    assert!(storage.is_directory("f").await.unwrap());
    app.get("/files/weird", &[]).await.problem(StatusCode::CONFLICT, "/problems/file-conflict");

    for dir in ["weird", "f"] {
        let r = app.delete(&format!("/files/{dir}?recursive=true")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{dir}: {}", String::from_utf8_lossy(&r.bytes));
    }
    // Only the key right under the prefix is left of the foreign ones; `esc.txt` and `up.txt`
    // (what `weird/../esc.txt` and `weird/sub/../../up.txt` resolve to) are untouched.
    assert_eq!(app.files(), ["/lead.txt", "esc.txt", "in/a.txt", "up.txt"]);
    assert_eq!(app.stored("esc.txt").unwrap(), b"esc.txt");
    assert_eq!(app.get("/files", &[]).await.paths(), ["esc.txt", "in/a.txt", "up.txt"]);
    assert_eq!(app.put("weird/new.txt", b"new").await.status, StatusCode::CREATED);
}

/// The temporary area's sweep lists it: a key there that is no temporary name of ours is
/// skipped, never failing the sweep.
#[tokio::test]
async fn the_temporary_area_lists_around_keys_of_other_tools() {
    let app = FilesApp::new(S3);
    let storage = S3Storage::new(&s3_config(app.bucket(), PREFIX)).unwrap();
    let body: jobs::storage::ByteStream = Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"t"))]));
    storage.put_temp("publish/j1/out.mp4", body).await.unwrap();
    put_foreign(&app, ".ffmpeg-worker-upload-temp/publish//x.mp4", b"foreign");
    put_foreign(&app, ".ffmpeg-worker-upload-temp/publish/j1/../y.mp4", b"foreign");
    let names: Vec<String> = storage.list_temps("").await.unwrap().into_iter().map(|meta| meta.path).collect();
    assert_eq!(names, ["publish/j1/out.mp4"]);
    let names: Vec<String> =
        storage.list_temps("publish/j1/").await.unwrap().into_iter().map(|meta| meta.path).collect();
    assert_eq!(names, ["publish/j1/out.mp4"]);
}

/// A name reserved for the server's temporary files, put by another tool, is left out of
/// listings as it is on a disk (tester H4): a listed file can always be read.
#[tokio::test]
async fn reserved_names_of_other_tools_are_not_listed() {
    let app = FilesApp::new(S3);
    assert_eq!(app.put("f/a.txt", b"a").await.status, StatusCode::CREATED);
    put_foreign(&app, "f/.ffmpeg-worker-upload-x", b"foreign");
    put_foreign(&app, ".ffmpeg-worker-upload-y/z.txt", b"foreign");
    assert_eq!(app.get("/files?prefix=f/", &[]).await.paths(), ["f/a.txt"]);
    assert_eq!(app.get("/files", &[]).await.paths(), ["f/a.txt"]);
    app.assert_path_refused("f/.ffmpeg-worker-upload-x", "reserved-path").await;
}

/// Folder markers (zero-byte `dir/` keys: the S3 console's "Create folder", rclone, Cyberduck)
/// are directories, not files (tester H5): never listed; their directory cannot be read or
/// deleted as a file; a recursive DELETE removes them with everything else below it.
#[tokio::test]
async fn folder_markers_are_directories_removed_with_them() {
    let app = FilesApp::new(S3);
    put_foreign(&app, "emptydir/", b"");
    put_foreign(&app, "fold2/", b"");
    put_foreign(&app, "fold2/sub/", b"");
    assert_eq!(app.put("fold2/a.txt", b"a").await.status, StatusCode::CREATED);
    assert_eq!(app.get("/files", &[]).await.paths(), ["fold2/a.txt"]);
    assert!(app.get("/files?prefix=emptydir", &[]).await.paths().is_empty());
    assert!(app.get("/files?prefix=fold2/sub", &[]).await.paths().is_empty());
    app.get("/files/emptydir", &[]).await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
    app.delete("/files/emptydir").await.problem(StatusCode::CONFLICT, "/problems/file-conflict");

    for dir in ["emptydir", "fold2"] {
        let r = app.delete(&format!("/files/{dir}?recursive=true")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{dir}: {}", String::from_utf8_lossy(&r.bytes));
    }
    assert!(app.files().is_empty(), "{:?}", app.files());
    // The names are free again.
    assert_eq!(app.put("emptydir", b"now a file").await.status, StatusCode::CREATED);
    assert_eq!(app.get("/files", &[]).await.paths(), ["emptydir"]);
}

/// An empty directory (on S3: a folder marker alone) blocks a file of its name on both
/// backends alike: 409, saying how to remove it; once removed, the PUT works.
async fn an_empty_directory_blocks_a_file_of_its_name_until_removed(backend: Backend) {
    let app = FilesApp::new(backend);
    match backend {
        Local => std::fs::create_dir(app.data.path().join("emptydir")).unwrap(),
        S3 => put_foreign(&app, "emptydir/", b""),
    }
    let body = app.put("emptydir", b"x").await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
    assert_eq!(
        body["detail"],
        "`emptydir` is a directory (`DELETE /files/emptydir?recursive=true` removes it and everything under it)"
    );
    assert!(app.get("/files", &[]).await.paths().is_empty());
    assert_eq!(app.delete("/files/emptydir?recursive=true").await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.put("emptydir", b"x").await.status, StatusCode::CREATED);
}
on_each_backend!(an_empty_directory_blocks_a_file_of_its_name_until_removed);

/// A file and a directory of one name, which a bucket holds and a disk cannot (tester L5): an
/// object `x` beside keys below it (`x/y`), or beside a folder marker (`m/`). The file is a
/// file: listed, read (GET, HEAD) and deleted by its name; the directory is a directory: its
/// marker is never listed nor served as an empty file, and no file may be written at the name
/// nor below the file (409, as on a disk); a recursive DELETE leaves nothing at the name (it
/// deleted the file alone, so the PUT its 409 advised it for was refused again). Never a 500.
#[tokio::test]
async fn a_file_and_a_directory_of_one_name_in_the_files_api() {
    let app = FilesApp::new(S3);
    put_foreign(&app, "x", b"file x");
    put_foreign(&app, "x/y", b"file x/y");
    put_foreign(&app, "m", b"file m");
    put_foreign(&app, "m/", b"");

    assert_eq!(app.get("/files", &[]).await.paths(), ["m", "x", "x/y"]);
    assert_eq!(app.get("/files?prefix=m", &[]).await.paths(), ["m"]);
    for (path, content) in [("x", "file x"), ("x/y", "file x/y"), ("m", "file m")] {
        let r = app.get(&format!("/files/{path}"), &[]).await;
        assert_eq!((r.status, r.bytes.as_slice()), (StatusCode::OK, content.as_bytes()), "GET {path}");
        let r = app.send(Request::head(format!("/files/{path}")).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::OK, "HEAD {path}");
        assert_eq!(r.headers[header::CONTENT_LENGTH], content.len().to_string(), "HEAD {path}");
    }
    // The folder marker is no (empty) file.
    app.get("/files/m/", &[]).await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
    let r = app.send(Request::head("/files/m/").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // No file where a directory is, nor below a file.
    for path in ["x", "m", "x/y/z", "m/z"] {
        app.put(path, b"new").await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
    }
    assert_eq!(app.stored("x").unwrap(), b"file x");

    // By its name, the file alone goes; the directory stays.
    assert_eq!(app.delete("/files/x").await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.files(), ["m", "m/", "x/y"]);
    // Recursively: the file and everything below, so that the name is free.
    assert_eq!(app.delete("/files/m?recursive=true").await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.files(), ["x/y"]);
    put_foreign(&app, "x", b"file x");
    assert_eq!(app.delete("/files/x?recursive=true").await.status, StatusCode::NO_CONTENT);
    assert!(app.files().is_empty(), "{:?}", app.files());
    for path in ["x", "m"] {
        assert_eq!(app.put(path, b"new").await.status, StatusCode::CREATED, "{path}");
    }
}

/// A job and a file and a directory of one name (tester L5): a job reads the file, as the files
/// API serves it (it was refused `not-a-file`: the bucket's directory of that name counted,
/// its file did not), and a folder marker alone is a directory it cannot read; a job cannot
/// write where a directory is, nor below a file (409 naming the argument), as an upload cannot.
#[tokio::test]
async fn a_file_and_a_directory_of_one_name_for_jobs() {
    let app = FilesApp::new(S3);
    put_foreign(&app, "x", b"file x");
    put_foreign(&app, "x/y", b"file x/y");
    put_foreign(&app, "m", b"file m");
    put_foreign(&app, "m/", b"");
    put_foreign(&app, "emptydir/", b"");
    for command in ["-i x -c copy out/1.mkv", "-i x/y -c copy out/2.mkv", "-i m -c copy out/3.mkv"] {
        let r = app.submit(command).await;
        assert_eq!(r.status, StatusCode::CREATED, "{command}: {}", String::from_utf8_lossy(&r.bytes));
    }
    let body = app.submit("-i emptydir -c copy out/4.mkv").await;
    let body = body.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/policy-violation");
    assert_eq!((body["rule"].as_str(), body["argument"].as_str()), (Some("not-a-file"), Some("emptydir")), "{body}");
    for (output, detail) in [
        ("x", "`x` is a directory in the storage"),
        ("m", "`m` is a directory in the storage"),
        ("emptydir", "`emptydir` is a directory in the storage"),
        ("x/y/z.mp4", "`x` is a file in the storage, not a directory"),
        ("m/z.mp4", "`m` is a file in the storage, not a directory"),
    ] {
        let command = format!("-f lavfi -i testsrc -t 1 -f mp4 {output}");
        let body = app.submit(&command).await.problem(StatusCode::CONFLICT, "/problems/file-conflict");
        assert_eq!(body["argument"], output, "{command}: {body}");
        assert!(body["detail"].as_str().unwrap().contains(detail), "{command}: {body}");
    }
    // A job writing into the folder marker's directory writes a file there.
    let r = app.submit("-f lavfi -i testsrc -t 1 emptydir/out.mp4").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.bytes));
    assert_eq!(app.get("/jobs", &[]).await.json().as_array().map(Vec::len), Some(4));
}

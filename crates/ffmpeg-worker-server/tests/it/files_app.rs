//! The files API's test harness, on either storage backend: the router in-process
//! (`oneshot`) without workers, so jobs stay queued (what the in-use checks need). The files
//! live in the data directory ([`Backend::Local`]) or under [`PREFIX`] in a fresh bucket of a
//! real S3-compatible server in its own process on 127.0.0.1 ([`Backend::S3`]: moto's,
//! `s3-harness`). What is stored is read without the code under test: from the file system, or
//! with raw S3 requests.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use ffmpeg_core::sandbox::Sandbox;
use ffmpeg_worker_server::{AppSettings, AppState, app};
use http_body_util::BodyExt;
use jobs::storage::{S3Config, S3Storage};
use jobs::{FfmpegConfig, FfmpegRunner, Jobs, JobsConfig, MemoryStore};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Key prefix the files of [`Backend::S3`] live under.
pub(crate) const PREFIX: &str = "media/files";

/// Where the files API keeps its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// The data directory (the database name `jobs.db` reserved in it, as the server does).
    Local,
    /// A fresh bucket, files under [`PREFIX`].
    S3,
}

/// Runs `async fn $name(backend: Backend)` once per backend, as `$name::local` and `$name::s3`.
macro_rules! on_each_backend {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn local() {
                super::$name($crate::files_app::Backend::Local).await
            }

            #[tokio::test]
            async fn s3() {
                super::$name($crate::files_app::Backend::S3).await
            }
        }
    };
}
pub(crate) use on_each_backend;

/// The settings of a client of the test S3 server, for the bucket `bucket`, files under `prefix`.
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

/// The app under test and where its files are.
pub(crate) struct FilesApp {
    pub(crate) state: AppState,
    /// The data directory (with S3: only the jobs' sandbox root).
    pub(crate) data: tempfile::TempDir,
    /// With S3: the bucket.
    bucket: Option<String>,
}

/// One answer, read whole.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) bytes: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`null` when it is not).
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    /// Asserts a problem+json answer of `status` and `type_`; returns its body.
    #[track_caller]
    pub(crate) fn problem(&self, status: StatusCode, type_: &str) -> Value {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.bytes));
        assert_eq!(self.headers[header::CONTENT_TYPE], "application/problem+json");
        let body = self.json();
        assert_eq!(body["type"], type_, "{body}");
        body
    }

    /// The `path` of each file of a listing.
    pub(crate) fn paths(&self) -> Vec<String> {
        self.json().as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_owned()).collect()
    }
}

impl FilesApp {
    /// The app on `backend`, with default settings.
    pub(crate) fn new(backend: Backend) -> FilesApp {
        FilesApp::with(backend, AppSettings::default())
    }

    /// The app on `backend`, with `settings`.
    pub(crate) fn with(backend: Backend, settings: AppSettings) -> FilesApp {
        let data = tempfile::tempdir().unwrap();
        let mut sandbox = Sandbox::new(data.path()).unwrap();
        let (config, bucket) = match backend {
            Backend::Local => {
                sandbox.deny("jobs.db");
                (JobsConfig::default(), None)
            }
            Backend::S3 => {
                let bucket = s3_harness::shared().bucket();
                let storage = S3Storage::new(&s3_config(&bucket, PREFIX)).unwrap();
                (JobsConfig { remote_storage: Some(Arc::new(storage)), ..JobsConfig::default() }, Some(bucket))
            }
        };
        let runner = FfmpegRunner::new(FfmpegConfig::new("ffmpeg", data.path()));
        let jobs = Jobs::new(Arc::new(MemoryStore::new()), Arc::new(runner), sandbox, config);
        FilesApp::of(AppState::with_settings(jobs, settings), data, bucket)
    }

    /// The app with `state`, whose data directory is `data` and, with S3, bucket `bucket`.
    pub(crate) fn of(state: AppState, data: tempfile::TempDir, bucket: Option<String>) -> FilesApp {
        FilesApp { state, data, bucket }
    }

    pub(crate) async fn send(&self, req: Request<Body>) -> Reply {
        let resp = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply { status, headers, bytes }
    }

    /// `PUT /files/{path}` with `content`.
    pub(crate) async fn put(&self, path: &str, content: &[u8]) -> Reply {
        self.send(Request::put(format!("/files/{path}")).body(Body::from(content.to_vec())).unwrap()).await
    }

    /// `GET uri` with `headers`.
    pub(crate) async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::get(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// `DELETE uri`.
    pub(crate) async fn delete(&self, uri: &str) -> Reply {
        self.send(Request::delete(uri).body(Body::empty()).unwrap()).await
    }

    /// `POST /jobs` with `command`.
    pub(crate) async fn submit(&self, command: &str) -> Reply {
        let req = Request::post("/jobs")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "command": command }).to_string()))
            .unwrap();
        self.send(req).await
    }

    /// Asserts that a PUT, a GET and a DELETE of `path` (as written in a URL) are each refused
    /// as an invalid path by `rule`.
    pub(crate) async fn assert_path_refused(&self, path: &str, rule: &str) {
        let r = self.put(path, b"x").await;
        let body = r.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-path");
        assert_eq!(body["rule"], rule, "PUT {path}: {body}");
        let r = self.get(&format!("/files/{path}"), &[]).await;
        assert_eq!(r.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-path")["rule"], rule, "GET {path}");
        let r = self.delete(&format!("/files/{path}")).await;
        assert_eq!(
            r.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-path")["rule"],
            rule,
            "DELETE {path}"
        );
    }

    /// The stored files, by path, sorted: the data directory's files (temporary ones included;
    /// not directories), or the bucket's keys (the prefix removed; keys outside it whole).
    pub(crate) fn files(&self) -> Vec<String> {
        match &self.bucket {
            None => {
                let mut files: Vec<String> = walk(self.data.path())
                    .into_iter()
                    .filter(|p| !std::fs::symlink_metadata(p).unwrap().is_dir())
                    .map(|p| p.strip_prefix(self.data.path()).unwrap().to_string_lossy().into_owned())
                    .collect();
                files.sort();
                files
            }
            Some(bucket) => {
                let prefix = format!("{PREFIX}/");
                let mut keys: Vec<String> = s3_harness::shared()
                    .keys(bucket)
                    .into_iter()
                    .map(|k| k.strip_prefix(&prefix).map(str::to_owned).unwrap_or(k))
                    .collect();
                keys.sort();
                keys
            }
        }
    }

    /// The stored bytes of `path`, read from the data directory or the bucket directly.
    pub(crate) fn stored(&self, path: &str) -> Option<Vec<u8>> {
        match &self.bucket {
            None => std::fs::read(self.data.path().join(path)).ok(),
            Some(bucket) => s3_harness::shared().object(bucket, &format!("{PREFIX}/{path}")),
        }
    }

    /// Every entry of the data directory, recursively (directories and temporary files
    /// included), sorted.
    pub(crate) fn tree(&self) -> Vec<String> {
        let mut all: Vec<String> = walk(self.data.path())
            .into_iter()
            .map(|p| p.strip_prefix(self.data.path()).unwrap().to_string_lossy().into_owned())
            .collect();
        all.sort();
        all
    }

    /// With S3: the bucket.
    pub(crate) fn bucket(&self) -> &str {
        self.bucket.as_deref().expect("an app on S3")
    }

    /// With S3: the multipart uploads begun and neither completed nor aborted.
    pub(crate) fn unfinished_uploads(&self) -> Vec<String> {
        s3_harness::shared().unfinished_uploads(self.bucket())
    }

    /// With S3: waits (20 s at most) until no multipart upload is left unfinished (refused
    /// ones are aborted in the background).
    pub(crate) async fn no_unfinished_uploads(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.unfinished_uploads().is_empty() {
            assert!(std::time::Instant::now() < deadline, "uploads left: {:?}", self.unfinished_uploads());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Every entry below `dir`, recursively (a link is not followed).
pub(crate) fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A body of `content` sent in chunks of `chunk` bytes, with no declared length.
pub(crate) fn streamed(content: &[u8], chunk: usize) -> Body {
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        content.chunks(chunk).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

/// A body that sends `first` bytes, then fails (the client went away).
pub(crate) fn failing_after(first: usize) -> Body {
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
        Ok(bytes::Bytes::from(vec![1u8; first])),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "client went away")),
    ];
    Body::from_stream(futures_util::stream::iter(chunks))
}

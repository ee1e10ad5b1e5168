//! [`S3Storage`]: files in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, Garage, ...),
//! through the `object_store` crate.
//!
//! - **Keys.** A file's path (relative, `/`-separated, in the normal form the sandbox's
//!   lexical rules give: no `.`, `..`, `//`) is its key under the configured prefix
//!   (`s3://bucket/prefix` -> `prefix/PATH`), byte for byte: other tools see the same names.
//!   Paths are checked by a [`Sandbox`] rooted at an empty private directory, so exactly the
//!   local backend's rules apply (escapes, absolute paths, NUL, protocols, name lengths) and
//!   nothing on the local disk changes the answer. A control character in a name is refused
//!   (`object_store` cannot address it).
//! - **Puts** stream: a body that fits in one part ([`PART_BYTES`]) is sent with one `PUT` at
//!   commit (`If-None-Match: *` for a create-only put, so it never replaces a file that
//!   appeared meanwhile); a larger one becomes a multipart upload whose parts go up while the
//!   body arrives (at most [`PARTS_IN_FLIGHT`] at once: memory stays bounded by about three
//!   parts whatever the file's size), completed at commit. Until then no reader sees anything;
//!   a failed, too large, aborted or dropped upload is aborted on the server. A create-only
//!   upload of many parts is completed under a temporary key of its own (nothing visible),
//!   then copied into place by one conditional request (a one-part `UploadPartCopy` completed
//!   with `If-None-Match: *`, `object_store`'s `S3CopyIfNotExists::Multipart`; its conditional
//!   complete is not reachable through `object_store`'s multipart API): the bucket alone
//!   decides, so of two racing create-only uploads one is created and the other gets
//!   [`StorageError::Exists`]. (AWS copies at most 5 GiB in one part: a create-only upload
//!   over [`COPY_MAX_BYTES`] fails there. moto's server checks the condition before it
//!   assembles the object, not atomically with it.)
//! - **Reads** are ranged `GET`s conditioned on the entity tag seen at [`Storage::open`]
//!   (`If-Match`): a file replaced meanwhile ends the stream with an error instead of mixing
//!   two versions.
//! - **Directories** do not exist in a bucket: `dir` is a directory when some key starts with
//!   `dir/`. A file under a path whose parent is a file is refused like on a disk.
//! - **Errors**: a bucket that does not answer is [`StorageError::Io`] (503 at the API) after
//!   a few quick retries, never a hang of minutes.

use std::fmt;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use ffmpeg_core::sandbox::{PathProblem, Sandbox};
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3Builder, S3CopyIfNotExists};
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, CopyMode, CopyOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt as _, PutMode,
    PutMultipartOptions, PutOptions as StorePutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use sha2::{Digest as _, Sha256};

use super::{
    ByteStream, FileMeta, ListPage, PutOptions, PutOutcome, StagedPut, Storage, StorageError, StoredFile, TEMP_AREA,
    check_prefix, invalid,
};
use crate::service::blocking;

/// Bytes per part of a multipart upload (S3's minimum part size is 5 MiB; 10,000 parts of
/// 8 MiB reach 78 GiB, past the 20 GiB default upload limit).
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts of one upload sent at once.
pub const PARTS_IN_FLIGHT: usize = 2;
/// The largest object one server-side copy can make (S3's limit for `CopyObject` and for one
/// `UploadPartCopy`): 5 GiB.
pub const COPY_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Directory of the temporary area ([`TEMP_AREA`]) holding create-only uploads of many parts
/// until they are copied into place.
const UPLOADS_TEMP: &str = "uploads";
/// Longest file name (one path component), in bytes, as on a local disk.
const NAME_MAX: usize = 255;
/// Longest S3 key, in bytes.
const KEY_MAX: usize = 1024;

/// Where the bucket is and how to reach it: `STORAGE_URL=s3://bucket/prefix` and the usual
/// `AWS_*` settings.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket's name.
    pub bucket: String,
    /// Key prefix under which the files live (no leading or trailing `/`; empty: the whole
    /// bucket).
    pub prefix: String,
    /// The service's URL (`http://127.0.0.1:9000` for MinIO, an R2 account URL, ...); `None`:
    /// AWS S3 of [`S3Config::region`].
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when the server ignores regions).
    pub region: String,
    /// Access key id; `None` with no secret: the instance's or container's credentials (IMDS,
    /// ECS, web identity), as the AWS SDKs find them.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Allow a plain `http://` endpoint.
    pub allow_http: bool,
    /// Address the bucket as `https://BUCKET.endpoint/KEY` (virtual-hosted style) instead of
    /// `https://endpoint/BUCKET/KEY` (path style, what most self-hosted servers expect).
    pub virtual_hosted_style: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret or the token.
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish_non_exhaustive()
    }
}

/// A `STORAGE_URL` that is not `s3://BUCKET[/PREFIX]`, or a client that cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("storage URL `{url}`: {problem}")]
pub struct S3ConfigError {
    /// The URL or setting as given.
    pub url: String,
    /// What is wrong with it.
    pub problem: String,
}

impl S3Config {
    /// Bucket and prefix from `s3://BUCKET[/PREFIX]`, every other setting at its default
    /// (region `us-east-1`).
    ///
    /// # Errors
    /// [`S3ConfigError`] for another scheme, no bucket, or a prefix with `.`/`..`/empty
    /// components.
    pub fn from_url(url: &str) -> Result<S3Config, S3ConfigError> {
        let error = |problem: &str| S3ConfigError { url: url.to_owned(), problem: problem.to_owned() };
        let rest = url.strip_prefix("s3://").ok_or_else(|| error("only s3://BUCKET[/PREFIX] is supported"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(error("no bucket name"));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && prefix.split('/').any(|part| matches!(part, "" | "." | "..")) {
            return Err(error("the prefix has an empty, `.` or `..` component"));
        }
        Ok(S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            region: "us-east-1".to_owned(),
            ..S3Config::default()
        })
    }

    /// `s3://bucket/prefix`, for logs.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// A bucket as a [`Storage`]. Cheap to clone.
#[derive(Clone)]
pub struct S3Storage {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
    /// Path rules: a sandbox over an empty directory that lives as long as this storage.
    paths: Arc<(Sandbox, tempfile::TempDir)>,
}

impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Storage").field("url", &self.url).finish_non_exhaustive()
    }
}

impl S3Storage {
    /// A client for `config`'s bucket. No request is made yet (see [`S3Storage::check`]).
    ///
    /// # Errors
    /// [`S3ConfigError`] when the client cannot be built (a malformed endpoint, ...), or the
    /// private empty directory for path checks cannot be created.
    pub fn new(config: &S3Config) -> Result<S3Storage, S3ConfigError> {
        let error = |problem: String| S3ConfigError { url: config.url(), problem };
        let mut builder = AmazonS3Builder::new()
            // First: the client options hold `allow_http` too.
            .with_client_options(ClientOptions::new().with_connect_timeout(Duration::from_secs(5)))
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_allow_http(config.allow_http)
            .with_virtual_hosted_style_request(config.virtual_hosted_style)
            // A create-only copy (a large `If-None-Match: *` upload, a `-n` job's output) is a
            // one-part multipart copy completed with `If-None-Match: *`: atomic on AWS S3 and
            // on servers with conditional writes.
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
            // A bucket that does not answer fails a request in seconds (503 at the API), not
            // after object_store's default 3 minutes of retries.
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        let store = builder.build().map_err(|e| error(e.to_string()))?;
        let empty = tempfile::Builder::new()
            .prefix("ffmpeg-worker-s3-paths-")
            .tempdir()
            .map_err(|e| error(format!("cannot create a directory for path checks: {e}")))?;
        let sandbox = Sandbox::new(empty.path()).map_err(|e| error(e.to_string()))?;
        Ok(S3Storage {
            store: Arc::new(store),
            prefix: config.prefix.clone(),
            url: config.url(),
            paths: Arc::new((sandbox, empty)),
        })
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Lists one key under the prefix: the bucket exists and the credentials may read it.
    ///
    /// # Errors
    /// [`StorageError::Io`] with the server's reason.
    pub async fn check(&self) -> Result<(), StorageError> {
        let prefix = (!self.prefix.is_empty()).then(|| Key::from_iter(self.prefix.split('/')));
        let mut list = self.store.list(prefix.as_ref());
        match list.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(store_error(&self.url, e)),
        }
    }

    /// The normal form of `path` as a file (or directory, `want_dir`) path; blocking (the
    /// sandbox looks at its own empty directory).
    fn normal(&self, path: &str, want_dir: bool) -> Result<String, StorageError> {
        // The temporary area and names like the local backend's temporary files are the
        // server's own.
        super::local::check_not_temp(path)?;
        if let Some(name) = path.split('/').find(|name| name.len() > NAME_MAX) {
            return Err(StorageError::InvalidPath {
                path: path.to_owned(),
                problem: format!("a file name is {} bytes; at most {NAME_MAX} are possible", name.len()),
                rule: "name-too-long",
            });
        }
        let sandbox = &self.paths.0;
        let resolved = if want_dir {
            sandbox.resolve_directory_path(path)
        } else {
            match sandbox.resolve_file_path(path) {
                // `dir/`: a directory's name, checked as one.
                Err(PathProblem::NotAFile) if path.ends_with('/') && !path.contains('\0') => {
                    sandbox.resolve_directory_path(path)
                }
                other => other,
            }
        };
        let resolved = resolved.map_err(|problem| invalid(path, &problem))?;
        let normal = resolved.relative().to_string_lossy().into_owned();
        if let Some(c) = normal.chars().find(char::is_ascii_control) {
            return Err(StorageError::InvalidPath {
                path: path.to_owned(),
                problem: format!("control character {:?} in a name; a bucket key cannot hold it", c),
                rule: "control-character",
            });
        }
        let key_len = self.prefix.len() + 1 + normal.len();
        if key_len > KEY_MAX {
            return Err(StorageError::InvalidPath {
                path: path.to_owned(),
                problem: format!("the key is {key_len} bytes with the prefix; at most {KEY_MAX} are possible"),
                rule: "name-too-long",
            });
        }
        Ok(normal)
    }

    async fn normal_async(&self, path: &str, want_dir: bool) -> Result<String, StorageError> {
        let (this, owned) = (self.clone(), path.to_owned());
        blocking(move || this.normal(&owned, want_dir)).await
    }

    /// The text of the key of the file at `normal` (a normal path; empty: the prefix itself).
    fn key_text(&self, normal: &str) -> String {
        match (self.prefix.is_empty(), normal.is_empty()) {
            (true, _) => normal.to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{normal}", self.prefix),
        }
    }

    /// The key of the file at `normal`.
    fn key(&self, normal: &str) -> Key {
        let full = self.key_text(normal);
        // Every component was checked (no `.`, `..`, empty or control characters).
        Key::parse(&full).unwrap_or_else(|_| Key::from_iter(full.split('/')))
    }

    /// The path of `key` relative to the prefix; `None` for a key outside it.
    fn relative<'k>(&self, key: &'k str) -> Option<&'k str> {
        if self.prefix.is_empty() {
            return Some(key);
        }
        key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
    }

    fn file_meta(&self, path: String, meta: &ObjectMeta) -> FileMeta {
        let modified = SystemTime::from(meta.last_modified);
        let etag = match &meta.e_tag {
            Some(tag) if tag.starts_with('"') || tag.starts_with("W/") => tag.clone(),
            Some(tag) => format!("\"{tag}\""),
            None => format!("\"{:x}-{:x}\"", meta.size, meta.last_modified.timestamp_nanos_opt().unwrap_or(0)),
        };
        FileMeta { path, size: meta.size, modified, etag }
    }

    /// Whether some key starts with `normal/` (a directory, in a bucket).
    async fn has_children(&self, normal: &str) -> Result<bool, StorageError> {
        let dir = self.key(normal);
        let prefix = (!dir.as_ref().is_empty()).then_some(&dir);
        let mut list = self.store.list(prefix);
        match list.next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(store_error(normal, e)),
        }
    }

    /// `HEAD` of `normal`: `None` when no such object.
    async fn head_key(&self, normal: &str) -> Result<Option<ObjectMeta>, StorageError> {
        match self.store.head(&self.key(normal)).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(normal, e)),
        }
    }

    /// Refuses a put to `normal` when it names a directory or one of its parents is a file.
    async fn check_writable(&self, normal: &str) -> Result<(), StorageError> {
        if self.has_children(normal).await? {
            return Err(StorageError::IsADirectory(normal.to_owned()));
        }
        let mut parent = normal;
        while let Some((up, _)) = parent.rsplit_once('/') {
            if self.head_key(up).await?.is_some() {
                return Err(StorageError::NotADirectory { path: normal.to_owned(), parent: up.to_owned() });
            }
            parent = up;
        }
        Ok(())
    }

    /// Receives `body` for `key` (`shown`: the path in messages): kept whole while it fits in
    /// one part, else streamed into a multipart upload of `key` that is left uncompleted.
    /// More than `max_bytes` is [`StorageError::TooLarge`]; on any error nothing is kept.
    async fn receive(
        &self,
        key: &Key,
        shown: &str,
        mut body: ByteStream,
        max_bytes: u64,
    ) -> Result<Received, StorageError> {
        let too_large = || StorageError::TooLarge { max_bytes };
        let aborted = |source: io::Error| StorageError::Aborted { path: shown.to_owned(), source };
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        // The first part is kept: a body that ends within it is sent whole at commit.
        let mut first = BytesMut::new();
        let mut upload: Option<WriteMultipart> = None;
        let result = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(aborted)?;
                size += chunk.len() as u64;
                if size > max_bytes {
                    return Err(too_large());
                }
                hasher.update(&chunk);
                match &mut upload {
                    Some(writer) => {
                        writer.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(|e| store_error(shown, e))?;
                        writer.put(chunk);
                    }
                    None if first.len() + chunk.len() <= PART_BYTES => first.extend_from_slice(&chunk),
                    None => {
                        let started = self
                            .store
                            .put_multipart_opts(key, PutMultipartOptions::default())
                            .await
                            .map_err(|e| store_error(shown, e))?;
                        let mut writer = WriteMultipart::new_with_chunk_size(started, PART_BYTES);
                        writer.put(std::mem::take(&mut first).freeze());
                        writer.put(chunk);
                        upload = Some(writer);
                    }
                }
            }
            if let Some(writer) = &mut upload {
                // Every full part is on the server (or failed) before commit is offered.
                writer.wait_for_capacity(1).await.map_err(|e| store_error(shown, e))?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            if let Some(writer) = upload {
                abort_later(writer);
            }
            return Err(e);
        }
        let pending = match upload {
            Some(writer) => Pending::Multipart(writer),
            None => Pending::Single(first.freeze()),
        };
        Ok(Received { pending, sha256: hex::encode(hasher.finalize()), size })
    }

    /// The key of `temp`, a name in the temporary area ([`TEMP_AREA`]).
    fn temp_key(&self, temp: &str) -> Key {
        self.key(&format!("{TEMP_AREA}/{temp}"))
    }

    /// Refuses a temporary name that is not a relative `/`-separated path of plain names.
    fn check_temp(temp: &str) -> Result<(), StorageError> {
        let bad = temp.is_empty()
            || temp.split('/').any(|name| name.is_empty() || name == "." || name == ".." || name.len() > NAME_MAX)
            || temp.chars().any(|c| c.is_control());
        if bad {
            return Err(StorageError::InvalidPath {
                path: temp.to_owned(),
                problem: "not a temporary name".to_owned(),
                rule: "temp-name",
            });
        }
        Ok(())
    }

    /// Copies the object at `from` to `to` (keys), whole; with `create_only`, only when no
    /// object is at `to` (one conditional request, [`S3CopyIfNotExists::Multipart`]).
    async fn copy_key(&self, from: &Key, to: &Key, shown: &str, create_only: bool) -> Result<(), StorageError> {
        let mode = if create_only { CopyMode::Create } else { CopyMode::Overwrite };
        let options = CopyOptions { mode, ..CopyOptions::default() };
        self.store.copy_opts(from, to, options).await.map_err(|e| match e {
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } if create_only => {
                StorageError::Exists(shown.to_owned())
            }
            e => store_error(shown, e),
        })
    }

    /// Deletes the object at `key`; one already gone is no error.
    async fn delete_key(&self, key: &Key, shown: &str) -> Result<(), StorageError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(shown, e)),
        }
    }

    fn list_page(&self, files: Vec<FileMeta>, limit: usize) -> ListPage {
        let mut files = files;
        let next_after = (files.len() > limit).then(|| files[limit - 1].path.clone());
        files.truncate(limit);
        ListPage { files, next_after }
    }
}

/// An `object_store` error on `path` as a storage error: missing, existing, denied (401/403),
/// unavailable (the network, a timeout, a 5xx or 408/429 answer, a read whose object changed:
/// worth retrying), or any other failure (a 4xx answer: not).
fn store_error(path: &str, e: object_store::Error) -> StorageError {
    use object_store::Error as E;
    let path = path.to_owned();
    match e {
        E::NotFound { .. } => StorageError::NotFound(path),
        E::AlreadyExists { .. } => StorageError::Exists(path),
        e @ (E::PermissionDenied { .. } | E::Unauthenticated { .. }) => {
            StorageError::Denied { path, source: io::Error::other(e) }
        }
        e @ (E::Generic { .. } | E::JoinError { .. } | E::Precondition { .. }) if !client_error(&e.to_string()) => {
            StorageError::Unavailable { path, source: io::Error::other(e) }
        }
        e => StorageError::Io { path, source: io::Error::other(e) },
    }
}

/// Whether an `object_store` error's text reports a 4xx answer other than 408 (timeout) and
/// 429 (slow down): the request itself was refused, and sending it again will not help.
/// (`object_store` keeps the status in an error type it does not export; its text reads
/// `... status code: 400 Bad Request ...`.)
fn client_error(text: &str) -> bool {
    let Some((_, after)) = text.split_once("status code: ") else { return false };
    let status: String = after.chars().take(3).collect();
    status.starts_with('4') && status != "408" && status != "429"
}

/// A body received by [`S3Storage::receive`].
struct Received {
    pending: Pending,
    sha256: String,
    size: u64,
}

/// 8 random bytes in hex: a temporary name nobody else uses.
fn random_name() -> Result<String, StorageError> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random)
        .map_err(|e| StorageError::Io { path: TEMP_AREA.to_owned(), source: io::Error::other(e.to_string()) })?;
    Ok(hex::encode(random))
}

/// An upload received in full: one body, or a multipart upload with every part sent but the
/// last buffered.
enum Pending {
    Single(Bytes),
    Multipart(WriteMultipart),
}

/// An upload waiting for [`StagedPut::commit`]; dropped, it is aborted on the server.
struct S3Staged {
    storage: S3Storage,
    path: String,
    pending: Option<Pending>,
    sha256: String,
    size: u64,
    create_only: bool,
    /// A create-only multipart upload's temporary name: completed there, then copied into
    /// place on condition.
    temp: Option<String>,
}

impl fmt::Debug for S3Staged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Staged").field("path", &self.path).field("size", &self.size).finish_non_exhaustive()
    }
}

impl Drop for S3Staged {
    fn drop(&mut self) {
        if let Some(Pending::Multipart(upload)) = self.pending.take() {
            abort_later(upload);
        }
    }
}

/// Aborts a multipart upload in the background (from a `Drop`).
fn abort_later(upload: WriteMultipart) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Err(e) = upload.abort().await {
                tracing::warn!(error = %e, "aborting an unfinished multipart upload failed; \
                                            a bucket lifecycle rule removes its parts");
            }
        });
    }
}

#[async_trait]
impl StagedPut for S3Staged {
    fn size(&self) -> u64 {
        self.size
    }

    async fn commit(mut self: Box<Self>) -> Result<PutOutcome, StorageError> {
        let key = self.storage.key(&self.path);
        let path = self.path.clone();
        // A create-only put is decided by the bucket alone (a conditional request): no check
        // of ours could see a file that appears right after it. It creates, or fails.
        let existed = !self.create_only && self.storage.head_key(&path).await?.is_some();
        let pending = self.pending.take();
        match pending {
            Some(Pending::Single(body)) => {
                let mode = if self.create_only { PutMode::Create } else { PutMode::Overwrite };
                let options = StorePutOptions { mode, ..StorePutOptions::default() };
                self.storage.store.put_opts(&key, PutPayload::from(body), options).await.map_err(|e| match e {
                    object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
                        StorageError::Exists(path.clone())
                    }
                    e => store_error(&path, e),
                })?;
            }
            Some(Pending::Multipart(upload)) => match self.temp.take() {
                None => {
                    upload.finish().await.map_err(|e| store_error(&path, e))?;
                }
                Some(temp) => {
                    let temp_key = self.storage.temp_key(&temp);
                    let published = async {
                        upload.finish().await.map_err(|e| store_error(&path, e))?;
                        self.storage.copy_key(&temp_key, &key, &path, true).await
                    }
                    .await;
                    if let Err(e) = self.storage.delete_key(&temp_key, &path).await {
                        tracing::warn!(temp = %temp_key, error = %e, "deleting an upload's temporary object failed; \
                                                                       start-up removes it");
                    }
                    published?;
                }
            },
            None => return Err(StorageError::Io { path, source: io::Error::other("upload already committed") }),
        }
        let meta = self.storage.store.head(&key).await.map_err(|e| store_error(&path, e))?;
        let meta = self.storage.file_meta(path, &meta);
        Ok(PutOutcome { meta, created: !existed, sha256: self.sha256.clone() })
    }
}

/// An object opened by [`S3Storage::open`]: reads are conditioned on its entity tag.
struct S3File {
    store: Arc<dyn ObjectStore>,
    key: Key,
    etag: Option<String>,
    meta: FileMeta,
}

impl fmt::Debug for S3File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3File").field("key", &self.key).field("meta", &self.meta).finish_non_exhaustive()
    }
}

impl StoredFile for S3File {
    fn meta(&self) -> &FileMeta {
        &self.meta
    }

    fn try_clone(&self) -> io::Result<Box<dyn StoredFile>> {
        let S3File { store, key, etag, meta } = self;
        Ok(Box::new(S3File { store: Arc::clone(store), key: key.clone(), etag: etag.clone(), meta: meta.clone() }))
    }

    fn read(self: Box<Self>, range: Range<u64>) -> ByteStream {
        if range.start >= range.end {
            return Box::pin(futures_util::stream::empty());
        }
        let S3File { store, key, etag, .. } = *self;
        let stream = futures_util::stream::once(async move {
            let options = GetOptions { range: Some(GetRange::Bounded(range)), if_match: etag, ..GetOptions::default() };
            store.get_opts(&key, options).await
        })
        .map_ok(|result| result.into_stream())
        .try_flatten()
        .map_err(|e| io::Error::other(e.to_string()));
        Box::pin(stream)
    }
}

#[async_trait]
impl Storage for S3Storage {
    async fn check_path(&self, path: &str) -> Result<String, StorageError> {
        self.normal_async(path, false).await
    }

    async fn put(&self, path: &str, body: ByteStream, options: PutOptions) -> Result<Box<dyn StagedPut>, StorageError> {
        let normal = self.normal_async(path, false).await?;
        if path.ends_with('/') {
            return Err(StorageError::IsADirectory(path.to_owned()));
        }
        self.check_writable(&normal).await?;
        // A create-only upload of many parts goes to a temporary key of its own: completing
        // it there replaces nothing, and commit copies it into place only if no file is there
        // (one conditional request: of two racing uploads, one wins).
        let temp = match options.create_only {
            true => Some(format!("{UPLOADS_TEMP}/{}", random_name()?)),
            false => None,
        };
        let key = match &temp {
            Some(temp) => self.temp_key(temp),
            None => self.key(&normal),
        };
        let received = self.receive(&key, path, body, options.max_bytes).await?;
        let (pending, temp) = match received.pending {
            // One part: sent at commit with `If-None-Match: *`, already atomic.
            Pending::Single(body) => (Pending::Single(body), None),
            multipart => (multipart, temp),
        };
        Ok(Box::new(S3Staged {
            storage: self.clone(),
            path: normal,
            pending: Some(pending),
            sha256: received.sha256,
            size: received.size,
            create_only: options.create_only,
            temp,
        }))
    }

    async fn open(&self, path: &str) -> Result<Box<dyn StoredFile>, StorageError> {
        let normal = self.normal_async(path, false).await?;
        if path.ends_with('/') || normal.is_empty() {
            return Err(StorageError::IsADirectory(path.to_owned()));
        }
        match self.head_key(&normal).await? {
            Some(meta) => {
                let etag = meta.e_tag.clone();
                let key = self.key(&normal);
                let meta = self.file_meta(normal, &meta);
                Ok(Box::new(S3File { store: Arc::clone(&self.store), key, etag, meta }))
            }
            None if self.has_children(&normal).await? => Err(StorageError::IsADirectory(path.to_owned())),
            None => Err(StorageError::NotFound(path.to_owned())),
        }
    }

    async fn head(&self, path: &str) -> Result<FileMeta, StorageError> {
        Ok(self.open(path).await?.meta().clone())
    }

    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, StorageError> {
        let limit = limit.max(1);
        // Refused by the rules a path is refused by, as on the local backend.
        check_prefix(prefix)?;
        // The directory holding every match: the prefix up to its last `/`.
        let base = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let base = if base.is_empty() { String::new() } else { self.normal_async(base, true).await? };
        let dir = self.key(&base);
        let dir = (!dir.as_ref().is_empty()).then_some(dir);
        // S3 lists keys after `start-after` itself: a later page starts there.
        let offset = after.filter(|after| !after.is_empty()).and_then(|after| Key::parse(self.key_text(after)).ok());
        let mut stream = match &offset {
            Some(offset) => self.store.list_with_offset(dir.as_ref(), offset),
            None => self.store.list(dir.as_ref()),
        };
        let mut files = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| store_error(prefix, e))?;
            let Some(relative) = self.relative(meta.location.as_ref()) else { continue };
            if relative.starts_with(TEMP_AREA) && relative[TEMP_AREA.len()..].starts_with('/') {
                continue;
            }
            if after.is_some_and(|after| relative <= after) {
                continue;
            }
            if !relative.starts_with(prefix) {
                // Keys come in byte order: past the prefix's range nothing more matches.
                if relative > prefix {
                    break;
                }
                continue;
            }
            let relative = relative.to_owned();
            files.push(self.file_meta(relative, &meta));
            if files.len() > limit {
                break;
            }
        }
        Ok(self.list_page(files, limit))
    }

    async fn is_directory(&self, path: &str) -> Result<bool, StorageError> {
        let normal = self.normal_async(path, true).await?;
        self.has_children(&normal).await
    }

    async fn delete(&self, path: &str, recursive: bool) -> Result<(), StorageError> {
        let normal = self.normal_async(path, path.ends_with('/')).await?;
        if normal.is_empty() {
            return Err(StorageError::Reserved(path.to_owned()));
        }
        if !path.ends_with('/') && self.head_key(&normal).await?.is_some() {
            return self.store.delete(&self.key(&normal)).await.map_err(|e| store_error(path, e));
        }
        if !self.has_children(&normal).await? {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        if !recursive {
            return Err(StorageError::IsADirectory(path.to_owned()));
        }
        let dir = self.key(&normal);
        let keys = self.store.list(Some(&dir)).map_ok(|meta| meta.location).boxed();
        let mut deleted = self.store.delete_stream(keys);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(path, e)),
            }
        }
        Ok(())
    }

    fn has_temp_area(&self) -> bool {
        true
    }

    async fn put_temp(&self, temp: &str, body: ByteStream) -> Result<u64, StorageError> {
        S3Storage::check_temp(temp)?;
        let key = self.temp_key(temp);
        let received = self.receive(&key, temp, body, u64::MAX).await?;
        match received.pending {
            Pending::Single(body) => {
                self.store.put(&key, PutPayload::from(body)).await.map_err(|e| store_error(temp, e))?;
            }
            Pending::Multipart(upload) => {
                upload.finish().await.map_err(|e| store_error(temp, e))?;
            }
        }
        Ok(received.size)
    }

    async fn publish_temp(&self, temp: &str, path: &str, create_only: bool) -> Result<(), StorageError> {
        S3Storage::check_temp(temp)?;
        let normal = self.normal_async(path, false).await?;
        let temp_key = self.temp_key(temp);
        self.copy_key(&temp_key, &self.key(&normal), &normal, create_only).await?;
        self.delete_key(&temp_key, temp).await
    }

    async fn copy_to_temp(&self, path: &str, temp: &str) -> Result<(), StorageError> {
        S3Storage::check_temp(temp)?;
        let normal = self.normal_async(path, false).await?;
        self.copy_key(&self.key(&normal), &self.temp_key(temp), &normal, false).await
    }

    async fn list_temps(&self, prefix: &str) -> Result<Vec<FileMeta>, StorageError> {
        let area = self.key(TEMP_AREA);
        // Listing under the prefix's directory, then by plain string prefix.
        let dir = match prefix.rsplit_once('/') {
            Some((dir, _)) if !dir.is_empty() => {
                S3Storage::check_temp(dir)?;
                self.temp_key(dir)
            }
            _ => area.clone(),
        };
        let mut listed = self.store.list(Some(&dir));
        let mut found = Vec::new();
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(|e| store_error(prefix, e))?;
            let Some(name) = meta.location.as_ref().strip_prefix(area.as_ref()).and_then(|n| n.strip_prefix('/'))
            else {
                continue;
            };
            if name.starts_with(prefix) {
                found.push(self.file_meta(name.to_owned(), &meta));
            }
        }
        Ok(found)
    }

    async fn delete_temp(&self, temp: &str) -> Result<(), StorageError> {
        S3Storage::check_temp(temp)?;
        self.delete_key(&self.temp_key(temp), temp).await
    }
}

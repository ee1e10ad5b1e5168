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
//!   or conditional ([`PutOptions::conditional`]) upload of many parts is completed under a
//!   temporary key of its own (nothing visible), then copied into place by a multipart copy
//!   whose completion carries the condition (`If-None-Match: *`, or `If-Match` the entity tag
//!   checked): the bucket alone decides, so of two racing create-only uploads one is created
//!   and the other gets [`StorageError::Exists`], and a file replaced after the check fails
//!   the write (412). (moto's server checks `If-None-Match` on completion but ignores
//!   `If-Match` there: against it an `If-Match` upload of many parts is checked one request
//!   before it completes.)
//! - **Copies** (publishing a job's outputs, backups, the create-only uploads above) are one
//!   `CopyObject` up to [`COPY_MAX_BYTES`] (S3's limit for one copy), else, and whenever a
//!   condition is attached, `UploadPartCopy` of ranges of at most that size (`raw.rs`).
//! - **Deletes** with preconditions check them against the object there, then delete it on
//!   the condition that it is still that one (`If-Match`, a conditional `DeleteObject`).
//! - **Reads** are ranged `GET`s conditioned on the entity tag seen at [`Storage::open`]
//!   (`If-Match`): a file replaced meanwhile ends the stream with an error instead of mixing
//!   two versions.
//! - **Directories** do not exist in a bucket: `dir` is a directory when some key starts with
//!   `dir/` (a folder marker, the key `dir/` itself, included). A file under a path whose
//!   parent is a file is refused like on a disk.
//! - **Keys of other tools** that no path names (`a//b`, `a/./b`, `a/../b`, a control
//!   character), folder markers and the server's reserved names are never listed as files,
//!   and never fail a listing, a directory check, `/ready` or start-up; a recursive delete of
//!   a directory removes every key below it by its exact text (`keys.rs`).
//! - **Errors**: a bucket that does not exist (S3's `NoSuchBucket`: deleted while the server
//!   runs) is [`StorageError::NoBucket`], whichever request found it; a bucket that does not
//!   answer is [`StorageError::Unavailable`] (503 at the
//!   API) within about the request timeout ([`S3Timeouts`], `http.rs`), never a hang of
//!   minutes; a refused connection or a 5xx answer is retried a few times quickly first.
//!
//! The module's files follow its seams: `client.rs` (the settings and building the client),
//! `http.rs` (the HTTP client's timeouts and TLS), `keys.rs` (listing and deleting keys by their
//! exact text, and what each key is to the files API), `raw.rs` (the one sender of the signed
//! requests `object_store` cannot make, keys as their exact text: listings, deletes, ranged
//! part copies, conditional completions and deletes, open multipart uploads),
//! `read.rs` (opening, heads, listing, ranged reads), `write.rs` (puts, multipart uploads,
//! server-side copies, deletes), `temp.rs` (the temporary area), `writable.rs` (a disk's
//! rule for where files may be written: none where a directory is, none below a file),
//! `multipart.rs` (multipart uploads left open: listed and aborted, through `raw.rs`) and
//! `tests.rs` (unit tests against moto). This file holds the type, the path and key rules,
//! the error mapping, and the [`Storage`] impl, which calls into them.

mod client;
mod http;
mod keys;
mod multipart;
mod raw;
mod read;
mod temp;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
mod writable;
mod write;

use std::fmt;
use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use ffmpeg_core::sandbox::{PathProblem, Sandbox};
use object_store::ObjectStore;
use object_store::path::Path as Key;

use super::{
    ByteStream, FileMeta, ListPage, NameLimits, OpenUpload, Preconditions, PutOptions, StagedPut, Storage,
    StorageError, StoredFile, invalid, too_long,
};
use crate::service::blocking;
use crate::storage::NAME_MAX;

pub use client::{S3Config, S3ConfigError};
pub use http::{S3Timeouts, UPLOAD_MIN_BYTES_PER_SECOND};
pub(crate) use http::{is_unknown_host, is_untrusted};

/// Bytes per part of a multipart upload (S3's minimum part size is 5 MiB; 10,000 parts of
/// 8 MiB reach 78 GiB, past the 20 GiB default upload limit).
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts of one upload sent at once.
pub const PARTS_IN_FLIGHT: usize = 2;
/// The largest object one server-side copy can make (S3's limit for `CopyObject` and for one
/// `UploadPartCopy`): 5 GiB.
pub const COPY_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// A bucket as a [`Storage`]. Cheap to clone.
#[derive(Clone)]
pub struct S3Storage {
    store: Arc<dyn ObjectStore>,
    /// The one sender of the requests `object_store` cannot make (`raw.rs`): listings and
    /// deletes of keys by their exact text, ranged part copies, conditional completes and
    /// deletes, listing and aborting open multipart uploads.
    raw: raw::Raw,
    /// The largest part of a server-side copy ([`COPY_MAX_BYTES`]; lowered in tests).
    copy_part_bytes: u64,
    /// Tests: a racing writer, run once between a precondition's check and its write.
    #[cfg(test)]
    after_check: Arc<std::sync::Mutex<Option<futures_util::future::BoxFuture<'static, ()>>>>,
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
    /// The normal form of `path` as a file (or directory, `want_dir`) path; blocking (the
    /// sandbox looks at its own empty directory).
    fn normal(&self, path: &str, want_dir: bool) -> Result<String, StorageError> {
        // The temporary area and names like the local backend's temporary files are the
        // server's own.
        crate::storage::local::check_not_temp(path)?;
        let limits = self.name_limits();
        limits.check_names(path).map_err(|problem| too_long(path, &problem))?;
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
        let resolved = resolved.map_err(|problem| match problem {
            // The jobs' staging area: reserved as for a job naming it.
            PathProblem::Denied => StorageError::Reserved(path.to_owned()),
            problem => invalid(path, &problem),
        })?;
        let normal = resolved.relative().to_string_lossy().into_owned();
        if let Some(c) = normal.chars().find(char::is_ascii_control) {
            return Err(StorageError::InvalidPath {
                path: path.to_owned(),
                problem: format!("control character {:?} in a name; a bucket key cannot hold it", c),
                rule: "control-character",
            });
        }
        limits.check_whole(&normal).map_err(|problem| too_long(path, &problem))?;
        Ok(normal)
    }

    /// Between a precondition's check and its write: nothing, but in tests the racing writer
    /// set there.
    async fn after_check(&self) {
        #[cfg(test)]
        {
            let racer = self.after_check.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            if let Some(racer) = racer {
                racer.await;
            }
        }
    }

    /// Whether the file at `relative` is in an area no request may name (the jobs' staging
    /// area): never listed.
    fn reserved(&self, relative: &str) -> bool {
        let sandbox = &self.paths.0;
        let mut denied = sandbox.denied().iter().filter_map(|denied| denied.strip_prefix(sandbox.root()).ok());
        denied.any(|denied| std::path::Path::new(relative).starts_with(denied))
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
}

impl S3Storage {
    /// An `object_store` error on `path` as a storage error: missing, existing, denied
    /// (401/403), no such bucket (an answer whose S3 error code is `NoSuchBucket`),
    /// unavailable (the network, a timeout, a 5xx or 408/429 answer, a read whose object
    /// changed: worth retrying), or any other failure (a 4xx answer: not). (`HEAD` answers
    /// carry no body: a `HEAD` of a deleted bucket reads as a missing object; the listing
    /// that follows a missing object names the bucket.)
    fn store_error(&self, path: &str, e: object_store::Error) -> StorageError {
        use object_store::Error as E;
        let path = path.to_owned();
        if no_such_bucket(&e) {
            return StorageError::NoBucket { path, bucket: self.raw.bucket().to_owned(), source: io::Error::other(e) };
        }
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
}

/// Whether an `object_store` error is the bucket's `NoSuchBucket` answer: its text, or that of
/// an error it wraps, holds the answer's body (`<Code>NoSuchBucket</Code>`).
fn no_such_bucket(e: &object_store::Error) -> bool {
    let mut error: Option<&dyn std::error::Error> = Some(e);
    while let Some(e) = error {
        if e.to_string().contains("<Code>NoSuchBucket</Code>") {
            return true;
        }
        error = e.source();
    }
    false
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

#[async_trait]
impl Storage for S3Storage {
    fn name_limits(&self) -> NameLimits {
        NameLimits::bucket(&self.prefix)
    }

    fn display_name(&self) -> String {
        self.url.clone()
    }

    async fn check_path(&self, path: &str) -> Result<String, StorageError> {
        self.normal_async(path, false).await
    }

    async fn put(&self, path: &str, body: ByteStream, options: PutOptions) -> Result<Box<dyn StagedPut>, StorageError> {
        self.put_object(path, body, options).await
    }

    async fn open(&self, path: &str) -> Result<Box<dyn StoredFile>, StorageError> {
        self.open_object(path).await
    }

    async fn head(&self, path: &str) -> Result<FileMeta, StorageError> {
        Ok(self.open(path).await?.meta().clone())
    }

    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, StorageError> {
        self.list_objects(prefix, after, limit).await
    }

    async fn is_directory(&self, path: &str) -> Result<bool, StorageError> {
        let normal = self.normal_async(path, true).await?;
        self.has_children(&normal).await
    }

    async fn delete(&self, path: &str, recursive: bool) -> Result<(), StorageError> {
        self.delete_objects(path, recursive).await
    }

    async fn check_writable_paths(&self, files: &[String], dirs: &[String]) -> Result<(), StorageError> {
        self.writable_paths(files, dirs).await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.check().await
    }

    async fn delete_if(&self, path: &str, recursive: bool, preconditions: &Preconditions) -> Result<(), StorageError> {
        self.delete_objects_if(path, recursive, preconditions).await
    }

    fn has_temp_area(&self) -> bool {
        true
    }

    async fn put_temp(&self, temp: &str, body: ByteStream) -> Result<u64, StorageError> {
        self.temp_put(temp, body).await
    }

    async fn publish_temp(&self, temp: &str, path: &str, create_only: bool) -> Result<(), StorageError> {
        self.temp_publish(temp, path, create_only).await
    }

    async fn copy_to_temp(&self, path: &str, temp: &str) -> Result<(), StorageError> {
        self.temp_copy_from(path, temp).await
    }

    async fn list_temps(&self, prefix: &str) -> Result<Vec<FileMeta>, StorageError> {
        self.temp_list(prefix).await
    }

    async fn delete_temp(&self, temp: &str) -> Result<(), StorageError> {
        self.temp_delete(temp).await
    }

    async fn open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StorageError> {
        self.list_open_uploads(prefix).await
    }

    async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StorageError> {
        self.abort_open_upload(upload).await
    }
}

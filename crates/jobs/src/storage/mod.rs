//! Where the files of the files API live: the [`Storage`] trait, its local backend,
//! [`LocalStorage`] (the data directory, through the [`Sandbox`](ffmpeg_core::sandbox::Sandbox)),
//! and [`S3Storage`] (an S3-compatible bucket, through `object_store`).
//!
//! The trait is shaped so that an object store (S3 through the `object_store` crate) fits it:
//! a put streams its body and becomes visible only when committed ([`StagedPut::commit`]: a
//! rename, or a multipart upload completed), a get streams any byte range of a file opened
//! once ([`Storage::open`], [`StoredFile::read`]), listing is by plain string prefix in path
//! order with a cursor, and every file has [`FileMeta`] (size, modification time, an entity
//! tag). Paths are always relative to the storage's root, `/`-separated, and checked by the
//! backend (the local one resolves them through the sandbox).
//!
//! Business rules (files in use by jobs, upload limits, page sizes) are not here but in
//! [`Files`](crate::files::Files).

mod availability;
mod guarded;
mod local;
mod names;
mod s3;

pub(crate) use local::check_writable_in;

use std::fmt;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ffmpeg_core::sandbox::PathProblem;
use futures_util::Stream;

pub use availability::{Availability, PROBE_INTERVAL, READY_CACHE, READY_TIMEOUT, StorageUnavailable};
pub use guarded::Guarded;
pub use local::{LocalStorage, UPLOAD_TEMP_PREFIX};
pub use names::{KEY_MAX, NAME_MAX, NameLimits, NameTooLong, PATH_MAX, WrittenNameTooLong, check_written};
pub use s3::{
    COPY_MAX_BYTES, PART_BYTES, PARTS_IN_FLIGHT, S3Config, S3ConfigError, S3Storage, S3Timeouts,
    UPLOAD_MIN_BYTES_PER_SECOND,
};

/// A stream of bytes: an upload's body, or a file's content.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// What is known of a stored file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Path relative to the storage root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification.
    pub modified: SystemTime,
    /// Entity tag, quoted as HTTP sends it (`"…"`): changes whenever the content may have.
    pub etag: String,
}

/// What is in the way of a file a job would write ([`StorageError::IsADirectory`],
/// [`StorageError::NotADirectory`]), in words: the one wording of a submission refused
/// (`SubmitError::OutputConflict`) and of a run whose outputs cannot be stored.
pub(crate) fn in_the_way(problem: &StorageError) -> String {
    match problem {
        StorageError::IsADirectory(path) => format!("`{path}` is a directory in the storage (files lie below it)"),
        StorageError::NotADirectory { parent, .. } => format!("`{parent}` is a file in the storage, not a directory"),
        other => other.to_string(),
    }
}

/// How [`Storage::put`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOptions {
    /// Refuse to replace an existing file ([`StorageError::Exists`] at commit, atomically).
    pub create_only: bool,
    /// Largest body accepted, in bytes; more is [`StorageError::TooLarge`] and nothing is kept.
    pub max_bytes: u64,
    /// The upload will be committed with [`StagedPut::commit_if`] and preconditions: a backend
    /// that can make a large body's precondition one step with its write only by staging the
    /// body elsewhere first does so (S3: a body over one part goes to a temporary key, then is
    /// copied into place by a conditional request).
    pub conditional: bool,
}

/// An entity-tag condition of `If-Match` or `If-None-Match` (RFC 9110 §13.1.1, §13.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagCondition {
    /// `*`: any file.
    Any,
    /// These entity tags, as sent (`"…"` or `W/"…"`).
    Tags(Vec<String>),
}

impl TagCondition {
    /// Parses a header's value: `*`, or a comma-separated list of entity tags.
    pub fn parse(value: &str) -> TagCondition {
        if value.split(',').any(|tag| tag.trim() == "*") {
            return TagCondition::Any;
        }
        TagCondition::Tags(value.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect())
    }

    /// Whether `etag` is one of the tags: by the strong comparison (§8.8.3.2: both tags
    /// strong and equal) or the weak one (the opaque parts equal).
    fn names(&self, etag: &str, strong: bool) -> bool {
        let weak = |tag: &str| tag.starts_with("W/");
        let opaque = |tag: &str| tag.trim_start_matches("W/").to_owned();
        match self {
            TagCondition::Any => true,
            TagCondition::Tags(tags) => tags
                .iter()
                .any(|tag| if strong { !weak(tag) && !weak(etag) && tag == etag } else { opaque(tag) == opaque(etag) }),
        }
    }
}

/// The preconditions of a request that changes a file (RFC 9110 §13.1), checked against the
/// file at the path as it is when the change is made ([`StagedPut::commit_if`],
/// [`Storage::delete_if`]); the change happens only if they hold. Empty (the default): none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// `If-Match`: a file must be there (`*`), with one of these entity tags (strong
    /// comparison).
    pub if_match: Option<TagCondition>,
    /// `If-None-Match`: no file may be there (`*`), or not with one of these entity tags
    /// (weak comparison).
    pub if_none_match: Option<TagCondition>,
    /// `If-Unmodified-Since` (ignored beside `If-Match`): the file, if there is one, must not
    /// have been modified after this time (at the one-second resolution of HTTP dates).
    pub if_unmodified_since: Option<SystemTime>,
}

impl Preconditions {
    /// No precondition at all.
    pub fn is_empty(&self) -> bool {
        *self == Preconditions::default()
    }

    /// Evaluates the preconditions on `current`, the file at the path (`None`: no file), in the
    /// order of RFC 9110 §13.2.2. `Err`: which one failed, in words.
    ///
    /// # Errors
    /// The failed precondition, for [`StorageError::PreconditionFailed`].
    pub fn check(&self, current: Option<&FileMeta>) -> Result<(), &'static str> {
        match (&self.if_match, current) {
            (Some(_), None) => return Err("If-Match: there is no file"),
            (Some(tags), Some(file)) if !tags.names(&file.etag, true) => {
                return Err("If-Match: the file's entity tag is none of those given");
            }
            (Some(_), Some(_)) => {}
            (None, _) => {
                if let (Some(since), Some(file)) = (self.if_unmodified_since, current)
                    && http_seconds(file.modified) > http_seconds(since)
                {
                    return Err("If-Unmodified-Since: the file was modified after that time");
                }
            }
        }
        match (&self.if_none_match, current) {
            (Some(TagCondition::Any), Some(_)) => Err("If-None-Match: *: the file exists"),
            (Some(tags), Some(file)) if tags.names(&file.etag, false) => {
                Err("If-None-Match: the file's entity tag is one of those given")
            }
            _ => Ok(()),
        }
    }

    /// [`Preconditions::check`] as a [`StorageError::PreconditionFailed`] for `path`.
    ///
    /// # Errors
    /// [`StorageError::PreconditionFailed`].
    pub fn check_for(&self, path: &str, current: Option<&FileMeta>) -> Result<(), StorageError> {
        self.check(current).map_err(|reason| StorageError::PreconditionFailed { path: path.to_owned(), reason })
    }
}

/// Whole seconds since the epoch: the resolution of HTTP dates.
fn http_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What a committed put wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// The file as stored now.
    pub meta: FileMeta,
    /// `true`: no file had this path before; `false`: one was replaced.
    pub created: bool,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// A multipart upload the storage holds open ([`Storage::open_uploads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    /// Its path relative to the storage's root (in the temporary area: [`TEMP_AREA`]`/NAME`).
    pub path: String,
    /// The storage's id of the upload.
    pub id: String,
    /// When it was started.
    pub initiated: SystemTime,
}

/// One page of [`Storage::list`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// Files in path order (byte order of their paths).
    pub files: Vec<FileMeta>,
    /// When more files follow: the path to pass as `after` for the next page.
    pub next_after: Option<String>,
}

/// Why a storage operation failed. Each names what was wrong; a failed put left nothing.
/// Not `#[non_exhaustive]`: the workspace matches it (the server's problem types), and a new
/// variant must be placed there by the compiler, not fall into a catch-all arm.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The path is not acceptable: it escapes the root, is absolute, holds NUL, a name is too
    /// long, ... `rule` is a stable id (the sandbox's rule ids, or `name-too-long`).
    #[error("path `{path}`: {problem}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        problem: String,
        /// Stable id of the broken rule.
        rule: &'static str,
    },
    /// No file has this path.
    #[error("no file `{0}`")]
    NotFound(String),
    /// No file has this path: it leads through a symbolic link (inside the data directory)
    /// whose target does not exist.
    #[error("no file `{path}`: `{link}` is a symbolic link to a file that does not exist")]
    DanglingLink {
        /// The path as given.
        path: String,
        /// The link, relative to the storage's root.
        link: String,
    },
    /// The path names a directory where a file is expected (or a directory without
    /// `recursive` on delete).
    #[error("`{0}` is a directory")]
    IsADirectory(String),
    /// A component of the path's directories is a file.
    #[error("`{path}`: `{parent}` is a file, not a directory")]
    NotADirectory {
        /// The path as given.
        path: String,
        /// The component that is a file.
        parent: String,
    },
    /// A precondition of the request ([`Preconditions`]) does not hold for the file at the
    /// path; nothing was changed.
    #[error("`{path}`: the request's precondition failed ({reason}); nothing was changed")]
    PreconditionFailed {
        /// The path as given.
        path: String,
        /// Which precondition, in words.
        reason: &'static str,
    },
    /// A create-only put found a file at the path; nothing was replaced.
    #[error("`{0}` exists and the request asked not to replace it (If-None-Match: *)")]
    Exists(String),
    /// The body is larger than allowed; nothing was kept.
    #[error("the file is larger than the limit of {max_bytes} bytes")]
    TooLarge {
        /// The limit.
        max_bytes: u64,
    },
    /// The storage is full (no space or quota left); nothing was kept.
    #[error("no space left in the storage for `{path}`")]
    InsufficientStorage {
        /// The path being written.
        path: String,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// The body could not be read to its end (the client went away); nothing was kept.
    #[error("the upload of `{path}` did not complete: {source}")]
    Aborted {
        /// The path being written.
        path: String,
        /// The body stream's error.
        #[source]
        source: io::Error,
    },
    /// The path, or something under a directory, is off limits to the files API (the job
    /// database, the data directory itself).
    #[error("`{0}` is reserved")]
    Reserved(String),
    /// The storage failed otherwise (an I/O error, a request the bucket refused as malformed).
    #[error("storage failed on `{path}`: {source}")]
    Io {
        /// The path being worked on.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The storage could not be reached or failed on its side (a network error, a timeout, a
    /// 5xx answer, a read cut short): the same request may succeed later
    /// ([`StorageError::is_transient`]).
    #[error("the storage is unavailable for `{path}`: {source}")]
    Unavailable {
        /// The path being worked on.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The storage is known not to answer ([`Availability`]: a check found it unreachable,
    /// and none has found it answering since): the request was not sent. Calls fail so at
    /// once, instead of each waiting for the storage, until a check in the background finds
    /// it answering again ([`StorageError::is_transient`]).
    #[error(
        "the file storage `{}` has not answered since {} (last checked {}); `{path}` was not asked \
         (checked again in the background: retry in {} s)",
        .outage.storage,
        utc_seconds(&.outage.since),
        utc_seconds(&.outage.checked),
        .outage.retry_after.as_secs()
    )]
    Unreachable {
        /// The path being worked on.
        path: String,
        /// The outage.
        outage: Arc<Outage>,
    },
    /// The bucket does not exist (S3's `NoSuchBucket`: deleted while the server runs, or
    /// never created): nothing was done. A configuration or operations error that waiting
    /// alone does not fix (not [`StorageError::is_transient`]): 503 at the API, naming the
    /// bucket; a job fails saying so.
    #[error(
        "bucket `{bucket}` does not exist (asked about `{path}`): create it, or set STORAGE_URL to one that exists"
    )]
    NoBucket {
        /// The path being worked on.
        path: String,
        /// The bucket's name.
        bucket: String,
        /// What the bucket's server answered.
        #[source]
        source: io::Error,
    },
    /// The storage refused the server's credentials or this access (401/403): a
    /// configuration error that waiting does not fix.
    #[error("the storage refused access to `{path}` (check the credentials and the bucket's policy): {source}")]
    Denied {
        /// The path being worked on.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    /// Whether the same operation may succeed later without anything else changing (the
    /// storage was [`StorageError::Unavailable`]): a job that failed on it is retried.
    pub fn is_transient(&self) -> bool {
        matches!(self, StorageError::Unavailable { .. } | StorageError::Unreachable { .. })
    }

    /// Whether the storage as a whole failed rather than answered about the file: it did not
    /// answer, or is known not to ([`StorageError::is_transient`]), or its bucket does not
    /// exist ([`StorageError::NoBucket`]). Nothing about the file itself was learnt; waiting,
    /// or a check of the storage ([`Availability`]), tells more.
    pub fn is_no_answer(&self) -> bool {
        self.is_transient() || matches!(self, StorageError::NoBucket { .. })
    }

    /// Whether waiting alone may fix this, as the server's start decides it: the storage did
    /// not answer or failed on its side ([`StorageError::is_transient`]: no answer, a refused
    /// connection, a resolver that did not answer, a 5xx answer), and not because of a
    /// configuration error: the TLS handshake with it failed (a certificate nothing trusted
    /// vouches for), or the endpoint's host name does not exist (NXDOMAIN: a name that never
    /// resolved is a typo far more often than a host not made yet). `false` for a bucket that
    /// does not exist, credentials refused, and any other refusal.
    ///
    /// A refused connection may pass: a bucket's server restarting refuses connections on its
    /// port, and from here that cannot be told from a wrong port (the node starts degraded:
    /// `/ready` answers 503, the log has the error).
    pub fn may_pass(&self) -> bool {
        self.is_transient() && !s3::is_untrusted(self) && !s3::is_unknown_host(self)
    }
}

/// An outage of the storage as its checks saw it ([`StorageError::Unreachable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// The storage, as messages name it (`s3://bucket/prefix`).
    pub storage: String,
    /// The first failed check of this outage.
    pub since: SystemTime,
    /// The latest failed check.
    pub checked: SystemTime,
    /// When a retry may find it answering: a check ends by then.
    pub retry_after: std::time::Duration,
}

impl Outage {
    /// [`Outage::since`] in UTC to the second, RFC 3339 (`2026-11-30T17:40:12Z`).
    pub fn since_utc(&self) -> String {
        utc_seconds(&self.since)
    }
}

/// `time` in UTC to the second, RFC 3339 (`2026-11-30T17:40:12Z`).
fn utc_seconds(time: &SystemTime) -> String {
    let time = time::OffsetDateTime::from(*time);
    let time = time.replace_nanosecond(0).unwrap_or(time);
    time.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| time.to_string())
}

/// [`StorageError::InvalidPath`] for `path`, refused by the sandbox's `problem`.
pub(crate) fn invalid(path: &str, problem: &PathProblem) -> StorageError {
    StorageError::InvalidPath { path: path.to_owned(), problem: problem.to_string(), rule: problem.rule().as_str() }
}

/// [`StorageError::InvalidPath`] (rule `name-too-long`) for `path`, too long by `problem`.
pub(crate) fn too_long(path: &str, problem: &NameTooLong) -> StorageError {
    StorageError::InvalidPath { path: path.to_owned(), problem: problem.to_string(), rule: "name-too-long" }
}

/// Refuses a [`Storage::list`] prefix by the rules a path is refused by that a text prefix can
/// break before its directory part is resolved: absolute (`/etc`, `/`) or holding a NUL byte.
/// Every backend lists through this, so a prefix means the same whatever stores the files.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), StorageError> {
    if prefix.starts_with('/') {
        return Err(invalid(prefix, &PathProblem::Absolute));
    }
    if prefix.contains('\0') {
        let problem = "a prefix cannot hold a NUL byte".to_owned();
        return Err(StorageError::InvalidPath {
            path: prefix.to_owned(),
            problem,
            rule: PathProblem::NotAFile.rule().as_str(),
        });
    }
    Ok(())
}

/// A file opened by [`Storage::open`]: its metadata, and its bytes on demand. The bytes read
/// are those of the file that was opened, even if the path is replaced meanwhile (a local
/// file stays open; an object store reads the version with this entity tag).
pub trait StoredFile: Send + fmt::Debug {
    /// The file's metadata.
    fn meta(&self) -> &FileMeta;
    /// Streams bytes `range` (`range.end <= meta().size`, not empty unless the file is).
    fn read(self: Box<Self>, range: Range<u64>) -> ByteStream;
    /// Another handle on the same opened file (the same content, whatever happened to its path
    /// since), for reading several ranges one after another: a multipart range answer. Reads
    /// through two handles must not overlap in time (a local file's handles share one offset).
    ///
    /// # Errors
    /// What the system says when it cannot duplicate a descriptor.
    fn try_clone(&self) -> io::Result<Box<dyn StoredFile>>;
}

/// An upload written in full but not yet visible at its path: [`StagedPut::commit`] makes it
/// visible atomically (readers see the old file or the new one, never a mix); dropping it
/// instead discards it, leaving nothing behind.
#[async_trait]
pub trait StagedPut: Send + fmt::Debug {
    /// Bytes received.
    fn size(&self) -> u64;
    /// Makes the upload the file at its path.
    ///
    /// # Errors
    /// [`StorageError::Exists`] for a create-only put whose path now holds a file,
    /// [`StorageError::IsADirectory`], [`StorageError::Io`]. The staged data is then gone.
    async fn commit(self: Box<Self>) -> Result<PutOutcome, StorageError>;

    /// [`StagedPut::commit`] if `preconditions` hold for the file at the path when the upload
    /// is put in place, checked as one step with it where the backend allows (see each
    /// backend). The default: a commit when there are none, else an error.
    ///
    /// # Errors
    /// [`StorageError::PreconditionFailed`] (the staged data is then gone), and as
    /// [`StagedPut::commit`].
    async fn commit_if(self: Box<Self>, preconditions: &Preconditions) -> Result<PutOutcome, StorageError> {
        if preconditions.is_empty() {
            return self.commit().await;
        }
        Err(StorageError::Io {
            path: String::new(),
            source: io::Error::other("this storage cannot make a put conditional"),
        })
    }
}

/// Files under one root, addressed by relative `/`-separated paths. See the [module docs](self).
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// The longest names this storage holds ([`NameLimits`]): its paths are checked against
    /// them, and so is every name a job may write, at submit. The default: file names of
    /// [`NAME_MAX`] bytes, paths of any length.
    fn name_limits(&self) -> NameLimits {
        NameLimits { whole_bytes: usize::MAX, ..NameLimits::bucket("") }
    }

    /// How messages name this storage: `s3://bucket/prefix` for a bucket. The default: `the
    /// data directory`.
    fn display_name(&self) -> String {
        "the data directory".to_owned()
    }

    /// Checks `path` as a file (or directory) path before anything else is done with it, and
    /// returns its normal form (no `.`, `..`, `//`; for the local backend symlinks inside the
    /// root resolved), the form jobs' footprints name files in.
    ///
    /// # Errors
    /// [`StorageError::InvalidPath`], [`StorageError::Reserved`].
    async fn check_path(&self, path: &str) -> Result<String, StorageError>;

    /// Streams `body` into a staged upload for `path` (parent directories are created).
    ///
    /// # Errors
    /// [`StorageError::InvalidPath`], [`StorageError::IsADirectory`],
    /// [`StorageError::NotADirectory`], [`StorageError::TooLarge`],
    /// [`StorageError::InsufficientStorage`], [`StorageError::Aborted`], [`StorageError::Io`];
    /// nothing is left behind.
    async fn put(&self, path: &str, body: ByteStream, options: PutOptions) -> Result<Box<dyn StagedPut>, StorageError>;

    /// Opens the file at `path`.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] ([`StorageError::DanglingLink`] through a link leading
    /// nowhere), [`StorageError::IsADirectory`], [`StorageError::InvalidPath`].
    async fn open(&self, path: &str) -> Result<Box<dyn StoredFile>, StorageError>;

    /// The metadata of the file at `path`.
    ///
    /// # Errors
    /// As [`Storage::open`].
    async fn head(&self, path: &str) -> Result<FileMeta, StorageError>;

    /// Files whose path starts with `prefix` (a plain string prefix; directories are not
    /// entries), in path order, after the path `after`, at most `limit`.
    ///
    /// # Errors
    /// [`StorageError::InvalidPath`] for a prefix whose directory part escapes the root.
    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, StorageError>;

    /// Whether `path` names a directory (a prefix `path/` with files under it, for an object
    /// store).
    ///
    /// # Errors
    /// [`StorageError::InvalidPath`].
    async fn is_directory(&self, path: &str) -> Result<bool, StorageError>;

    /// Deletes the file at `path`; with `recursive`, a directory and everything under it.
    ///
    /// # Errors
    /// [`StorageError::NotFound`], [`StorageError::IsADirectory`] (a directory without
    /// `recursive`), [`StorageError::Reserved`], [`StorageError::InvalidPath`].
    async fn delete(&self, path: &str, recursive: bool) -> Result<(), StorageError>;

    /// Refuses what a disk could not hold, before files are written at `files` (normal paths)
    /// and into the directories `dirs` (normal paths; the empty path, the root, is always
    /// one): a file's path that is a directory (files lie below it), or a path below a file.
    /// A bucket has no directories to refuse this itself, so jobs and uploads apply a disk's
    /// rule through this (tester finding G14). The data directory answers the same (its file
    /// system would refuse such a write too, but only when a job runs, in words that name no
    /// argument). The default checks nothing.
    ///
    /// # Errors
    /// [`StorageError::IsADirectory`] (a path of `files`), [`StorageError::NotADirectory`]
    /// (its `path` is the path of `files` or `dirs` that lies below the file `parent`), or
    /// why the storage could not be asked ([`StorageError::Unavailable`], ...).
    async fn check_writable_paths(&self, files: &[String], dirs: &[String]) -> Result<(), StorageError> {
        let _ = (files, dirs);
        Ok(())
    }

    /// One cheap request that shows the storage answers (for `GET /ready`,
    /// [`Availability`]): a bucket lists one key. The default (the data directory) has
    /// nothing to ask.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`], [`StorageError::Denied`], [`StorageError::Io`].
    async fn ping(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// [`Storage::delete`] if `preconditions` hold for the file at `path` (a directory is no
    /// file: `If-Match` fails on it). The default checks the file's metadata right before the
    /// delete (one request apart); a backend that can make the two one step does.
    ///
    /// # Errors
    /// [`StorageError::PreconditionFailed`], and as [`Storage::delete`].
    async fn delete_if(&self, path: &str, recursive: bool, preconditions: &Preconditions) -> Result<(), StorageError> {
        if !preconditions.is_empty() {
            let current = match self.head(path).await {
                Ok(meta) => Some(meta),
                Err(StorageError::IsADirectory(_)) => None,
                Err(e) => return Err(e),
            };
            preconditions.check_for(path, current.as_ref())?;
        }
        self.delete(path, recursive).await
    }

    /// Whether this storage has a temporary area ([`Storage::put_temp`] and the rest): the
    /// backends that jobs stage their files for (S3). `false` (the default): the local data
    /// directory, where ffmpeg writes in place.
    fn has_temp_area(&self) -> bool {
        false
    }

    /// Streams `body` to `temp`, a name in the storage's temporary area: a place no files
    /// API request, listing or job can see ([`TEMP_AREA`]), replacing what is there. Returns
    /// the bytes written. `temp` is `/`-separated, its components checked like a file path's.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`], [`StorageError::Denied`], [`StorageError::Io`] (also
    /// when the backend has no temporary area); nothing is left at `temp`.
    async fn put_temp(&self, temp: &str, body: ByteStream) -> Result<u64, StorageError> {
        let _ = body;
        Err(no_temp_area(temp))
    }

    /// Makes `temp` the file at `path`, whole (a server-side copy: readers see the old file or
    /// the new one), then deletes `temp`. With `create_only` it never replaces a file: a
    /// file at `path` is [`StorageError::Exists`] and `temp` is kept.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] (no `temp`), [`StorageError::Exists`],
    /// [`StorageError::Unavailable`], [`StorageError::Denied`], [`StorageError::Io`].
    async fn publish_temp(&self, temp: &str, path: &str, create_only: bool) -> Result<(), StorageError> {
        let _ = (path, create_only);
        Err(no_temp_area(temp))
    }

    /// Copies the file at `path` to `temp` in the temporary area (a server-side copy, whole):
    /// a backup that [`Storage::publish_temp`] can put back.
    ///
    /// # Errors
    /// [`StorageError::NotFound`], [`StorageError::Unavailable`], [`StorageError::Denied`],
    /// [`StorageError::Io`].
    async fn copy_to_temp(&self, path: &str, temp: &str) -> Result<(), StorageError> {
        let _ = path;
        Err(no_temp_area(temp))
    }

    /// Every name in the temporary area that starts with `prefix` (a plain string prefix),
    /// with its metadata ([`FileMeta::path`] is the temporary name).
    ///
    /// # Errors
    /// [`StorageError::Unavailable`], [`StorageError::Denied`], [`StorageError::Io`].
    async fn list_temps(&self, prefix: &str) -> Result<Vec<FileMeta>, StorageError> {
        Err(no_temp_area(prefix))
    }

    /// Deletes `temp` from the temporary area; a name already gone is no error.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`], [`StorageError::Denied`], [`StorageError::Io`].
    async fn delete_temp(&self, temp: &str) -> Result<(), StorageError> {
        Err(no_temp_area(temp))
    }

    /// The multipart uploads started under the storage's root and neither completed nor
    /// aborted whose path (relative to the root; a temporary area's name starts with
    /// [`TEMP_AREA`]`/`) starts with `prefix`: what an upload that was stopped without its
    /// abort left (a job cancelled or timed out mid-upload, a crash). The default (no
    /// multipart uploads): none.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`], [`StorageError::Denied`], [`StorageError::Io`].
    async fn open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StorageError> {
        let _ = prefix;
        Ok(Vec::new())
    }

    /// Aborts `upload` (from [`Storage::open_uploads`]): its parts are deleted. One already
    /// gone is no error.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`], [`StorageError::Denied`], [`StorageError::Io`].
    async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StorageError> {
        let _ = upload;
        Ok(())
    }
}

/// The directory of the storage that holds its temporary area ([`Storage::put_temp`]): a name
/// that starts with [`UPLOAD_TEMP_PREFIX`], so no files API request can reach it.
pub const TEMP_AREA: &str = ".ffmpeg-worker-upload-temp";

fn no_temp_area(name: &str) -> StorageError {
    StorageError::Io { path: name.to_owned(), source: io::Error::other("this storage has no temporary area") }
}

//! Publishing a staged run's outputs into a bucket as one set ([`publish`]), so that a failed or
//! interrupted upload never destroys a file that was there before the job, and readers see a
//! half-published set only where a bucket cannot avoid it.
//!
//! 1. **Upload.** Every output goes to a name of the run's own in the storage's temporary area
//!    ([`RunTemp`]: `publish/JOBID-ATTEMPT-RANDOM/PATH` under
//!    [`TEMP_AREA`](crate::storage::TEMP_AREA), which no files API request, listing or job can
//!    see), [`UPLOADS_AT_ONCE`] at a time. An output larger than one server-side copy can make
//!    ([`COPY_MAX_BYTES`]; its copy into place would be a multipart copy in ranges) is instead
//!    sent as a multipart upload of its final key left uncompleted (invisible until completed,
//!    [`StagedPut`]), which saves the bucket copying it again. Nothing visible has changed yet:
//!    a failure here deletes the run's temporary names (and aborts the multipart uploads), and
//!    every file in the bucket is as it was. A failure because the storage did not answer
//!    leaves the names for later instead of waiting for it again here: the job's next attempt
//!    undoes them first, the temporary area's sweep removes those of runs that are over.
//! 2. **Back up**, once every upload succeeded (and only if the caller still owns the job: a
//!    node that lost its lease publishes nothing; and only if no output's path is a directory
//!    in the bucket or lies below a file, a disk's rule checked again now, as the bucket may
//!    have changed since the submission: [`PublishError::Conflict`]): each file in the storage
//!    that an output will replace is copied by the server to the run's backup name
//!    ([`RunTemp::backup`]; a file over [`COPY_MAX_BYTES`] in ranges). Still nothing visible
//!    has changed.
//! 3. **Publish**: each output's temporary name is copied into place by the server (readers
//!    see the old file or the new one, whole), then deleted; a large output's multipart upload
//!    is completed. Media first ([`COPIES_AT_ONCE`] at a time), playlists and manifests last,
//!    one by one, so that a player never reads one that names a missing segment. A failure
//!    here stops the publish and undoes it: each file an output replaced is put back from its
//!    backup, each output that was new is deleted, the temporary names are deleted. On
//!    success the backups are deleted, by name.
//!
//! A run that wrote nothing into the temporary area (no outputs, or none reached an upload)
//! sends no clean-up request at all: no listing of its names, none of its multipart uploads.
//!
//! **A crash** (or a node that stops for good) during step 1 or 2 leaves temporary names only,
//! which no reader sees; during step 3 some outputs in place, each whole, and the backups of
//! the files they replaced. The temporary names carry the job and the attempt. While the job
//! is still active (recovery at the node's next start finds the run interrupted; or the job
//! runs again, on any node) no one else may write its paths, so the backups are put back
//! ([`restore_or_discard`]) and the names deleted before anything else happens;
//! [`crate::Jobs::sweep_temp_area`] deletes the names of runs whose job ended otherwise.
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt as _;

use crate::model::JobId;
use crate::storage::{ByteStream, COPY_MAX_BYTES, PutOptions, StagedPut, Storage, StorageError, TEMP_AREA, in_the_way};

/// Directory of the temporary area that holds runs' outputs until they are published.
pub const PUBLISH_TEMP: &str = "publish";
/// Directory of a run's temporary area holding its outputs.
const OUTPUTS: &str = "out";
/// Directory of a run's temporary area holding the backups of the files its outputs replace.
const BACKUPS: &str = "old";
/// Outputs of one run uploaded at once.
pub const UPLOADS_AT_ONCE: usize = 4;
/// Media outputs of one run copied into place at once.
pub const COPIES_AT_ONCE: usize = 8;

/// One run's directory in the temporary area: `publish/JOBID-ATTEMPT-RANDOM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTemp {
    dir: String,
}

impl RunTemp {
    /// A new directory for attempt `attempt` of job `id` (its random part makes it the
    /// run's own, even when an attempt number is used twice: a run stopped by shutdown is not
    /// counted).
    pub fn new(id: &JobId, attempt: u32) -> RunTemp {
        let mut random = [0u8; 4];
        // Without randomness the directory is still the attempt's; collisions only merge
        // leftovers, which the sweep removes.
        let _ = getrandom::fill(&mut random);
        RunTemp { dir: format!("{PUBLISH_TEMP}/{id}-{attempt}-{}", hex::encode(random)) }
    }

    /// The temporary name of output `path` (relative, `/`-separated).
    pub fn name(&self, path: &str) -> String {
        format!("{}/{OUTPUTS}/{path}", self.dir)
    }

    /// The temporary name of the backup of the file at `path` that output `path` replaces.
    pub fn backup(&self, path: &str) -> String {
        format!("{}/{BACKUPS}/{path}", self.dir)
    }

    /// The prefix of every temporary name of this run.
    pub fn prefix(&self) -> String {
        format!("{}/", self.dir)
    }

    /// The path whose older file the temporary name `temp` backs up (a run's
    /// [`RunTemp::backup`]); `None` for any other name.
    pub fn backed_up(temp: &str) -> Option<&str> {
        let rest = temp.strip_prefix(PUBLISH_TEMP)?.strip_prefix('/')?;
        let (_, rest) = rest.split_once('/')?;
        rest.strip_prefix(BACKUPS)?.strip_prefix('/').filter(|path| !path.is_empty())
    }

    /// The prefix of every temporary name of job `id`'s runs (any attempt).
    pub fn prefix_of(id: &JobId) -> String {
        format!("{PUBLISH_TEMP}/{id}-")
    }

    /// The job and attempt whose run owns the temporary name `temp`; `None` for a name that
    /// is not a run's.
    pub fn owner(temp: &str) -> Option<(JobId, u32)> {
        let dir = temp.strip_prefix(PUBLISH_TEMP)?.strip_prefix('/')?.split('/').next()?;
        let mut parts = dir.split('-');
        let (id, attempt) = (parts.next()?, parts.next()?);
        Some((JobId::parse(id).ok()?, attempt.parse().ok()?))
    }
}

/// One output of a run, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Its path in the storage (relative, `/`-separated).
    pub path: String,
    /// The file on the local disk.
    pub local: PathBuf,
    /// Never replace a file in the storage (`-n`): one there makes the publish fail with
    /// [`StorageError::Exists`].
    pub create_only: bool,
}

/// Why [`publish`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// An output could not be uploaded: nothing visible changed in the storage.
    #[error("{0}")]
    Upload(#[source] StorageError),
    /// The outputs were uploaded, but putting one in place failed part-way; what was put in
    /// place was undone. `kept`: outputs in place that replaced a file which could not be put
    /// back (the restore failed): they keep the job's new, whole content.
    #[error("{source}{}", kept_note(kept))]
    Publish {
        /// The failure.
        #[source]
        source: StorageError,
        /// Paths that now hold the job's output in place of an older file.
        kept: Vec<String>,
    },
    /// An output's path is a directory in the storage, or lies below a file (a disk's rule,
    /// [`Storage::check_writable_paths`]): nothing was published. Worded as a submission
    /// refused for the same reason, naming `argument` once the caller knows it
    /// ([`PublishError::naming`]).
    #[error(
        "{}{}; a job cannot write a file where the storage holds a directory, nor below a file",
        argument.as_ref().map(|a| format!("{a}: ")).unwrap_or_default(),
        in_the_way(problem)
    )]
    Conflict {
        /// [`StorageError::IsADirectory`] or [`StorageError::NotADirectory`].
        #[source]
        problem: StorageError,
        /// The argument that writes the output ("argument 4 `race/a/x.mp4`").
        argument: Option<String>,
    },
    /// The caller no longer owns the job (its lease was lost): nothing was published.
    #[error("the job was taken over by another node; nothing was published")]
    NotOurs,
    /// The job was cancelled while its outputs were uploaded or put in place: the publish was
    /// stopped and undone as after a crash ([`restore_or_discard`]: the files it had replaced
    /// are back).
    #[error("the job was cancelled while its outputs were uploaded; they were not kept")]
    Cancelled,
    /// The node shut down (its `SHUTDOWN_GRACE` over) while the job's outputs were uploaded or
    /// put in place: stopped and undone as [`PublishError::Cancelled`] is; the job goes back
    /// to the queue with its attempt given back, as a job stopped while ffmpeg runs.
    #[error("the node shut down while the job's outputs were uploaded; they were not kept")]
    Stopped,
}

impl PublishError {
    /// The storage failure, if any.
    pub fn storage_error(&self) -> Option<&StorageError> {
        match self {
            PublishError::Upload(e)
            | PublishError::Conflict { problem: e, .. }
            | PublishError::Publish { source: e, .. } => Some(e),
            PublishError::NotOurs | PublishError::Cancelled | PublishError::Stopped => None,
        }
    }

    /// This error, a [`PublishError::Conflict`] naming the argument that `argument` gives for
    /// the output in the way (its path, relative); any other unchanged.
    pub fn naming(self, argument: impl FnOnce(&str) -> Option<String>) -> PublishError {
        match self {
            PublishError::Conflict { problem, argument: None } => {
                let named = match &problem {
                    StorageError::IsADirectory(path) | StorageError::NotADirectory { path, .. } => argument(path),
                    _ => None,
                };
                PublishError::Conflict { problem, argument: named }
            }
            e => e,
        }
    }
}

fn kept_note(kept: &[String]) -> String {
    match kept.len() {
        0 => String::new(),
        _ => format!(" (these could not be put back and hold the job's output, whole: {})", kept.join(", ")),
    }
}

/// What [`publish`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Files published.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Step 1's outcome for one output: uploaded (and its size), or why not.
type UploadResult = Result<(Uploaded, u64), StorageError>;

/// An output uploaded and waiting to be put in place.
enum Uploaded {
    /// In the temporary area under this name.
    Temp(String),
    /// A multipart upload of its final key, not completed.
    Staged(Box<dyn StagedPut>),
}

/// Uploads `outputs` (see the [module docs](self)) into the temporary area of `run`, then, if
/// `still_ours()` holds, puts them in place, playlists and manifests last.
///
/// # Errors
/// [`PublishError::Upload`] and [`PublishError::Conflict`] (nothing visible changed),
/// [`PublishError::Publish`] (part-way: see its `kept`), [`PublishError::NotOurs`].
pub async fn publish(
    storage: &dyn Storage,
    run: &RunTemp,
    outputs: &[Output],
    still_ours: &(dyn Fn() -> bool + Sync),
) -> Result<Published, PublishError> {
    // What the run started in the temporary area: nothing there, nothing to clean up.
    let touched = AtomicBool::new(false);
    // 1. Upload, all or nothing; after a failure no other upload starts.
    let failed = AtomicBool::new(false);
    let results: Vec<(usize, Option<UploadResult>)> = futures_util::stream::iter(0..outputs.len())
        .map(|n| {
            let (failed, output, touched) = (&failed, &outputs[n], &touched);
            async move {
                if failed.load(Ordering::Relaxed) {
                    return (n, None);
                }
                let result = upload_one(storage, run, output, touched).await;
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                (n, Some(result))
            }
        })
        .buffer_unordered(UPLOADS_AT_ONCE)
        .collect()
        .await;
    let mut uploaded: Vec<Option<(Uploaded, u64)>> = outputs.iter().map(|_| None).collect();
    let mut first_error: Option<StorageError> = None;
    for (n, result) in results {
        match result {
            Some(Ok(done)) => uploaded[n] = Some(done),
            Some(Err(e)) => first_error = first_error.or(Some(e)),
            None => {}
        }
    }
    if let Some(e) = first_error {
        clean_up_failed(storage, run, &touched, &e).await;
        return Err(PublishError::Upload(e));
    }
    if !still_ours() {
        discard(storage, run, &touched).await;
        return Err(PublishError::NotOurs);
    }
    // A disk's rule, checked again now that the bucket may have changed since the submission
    // (and for the names only the run knew: segments, numbered images): no output where a
    // directory is, none below a file. Nothing is in place yet.
    let paths: Vec<String> = outputs.iter().map(|output| output.path.clone()).collect();
    if let Err(e) = storage.check_writable_paths(&paths, &[]).await {
        clean_up_failed(storage, run, &touched, &e).await;
        return Err(match e {
            e @ (StorageError::IsADirectory(_) | StorageError::NotADirectory { .. }) => {
                PublishError::Conflict { problem: e, argument: None }
            }
            e => PublishError::Upload(e),
        });
    }

    // 2. Back up the files the outputs replace (a server-side copy each), so that a failure
    // (or a crash: see `restore_or_discard`) can put them back.
    let mut backed_up: BTreeSet<String> = BTreeSet::new();
    let touched_by_backups = &touched;
    let heads = futures_util::stream::iter(0..outputs.len())
        .map(|n| async move {
            let output = &outputs[n];
            touched_by_backups.store(true, Ordering::Relaxed);
            // Any size: over `COPY_MAX_BYTES` the storage copies in ranges.
            let backup = storage.copy_to_temp(&output.path, &run.backup(&output.path)).await;
            (output.path.clone(), backup)
        })
        .buffer_unordered(COPIES_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    for (path, backup) in heads {
        match backup {
            Ok(()) => {
                backed_up.insert(path);
            }
            // No file, or a directory's name (the copy into place will fail on it).
            Err(StorageError::NotFound(_) | StorageError::IsADirectory(_)) => {}
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    if let Some(e) = first_error {
        clean_up_failed(storage, run, &touched, &e).await;
        return Err(PublishError::Upload(e));
    }

    // 3. Put every output in place: media first, then what names them.
    // (index in `outputs`, upload, size)
    let mut items: Vec<(usize, Uploaded, u64)> =
        uploaded.into_iter().enumerate().filter_map(|(n, uploaded)| uploaded.map(|(u, size)| (n, u, size))).collect();
    items.sort_by_key(|(n, _, _)| is_index(&outputs[*n].path));
    let split = items.iter().position(|(n, _, _)| is_index(&outputs[*n].path)).unwrap_or(items.len());
    let indexes = items.split_off(split);
    let failed = AtomicBool::new(false);
    let mut done = Published::default();
    let mut published: Vec<String> = Vec::new();
    let media = futures_util::stream::iter(items)
        .map(|(n, uploaded, size)| {
            let (failed, output) = (&failed, &outputs[n]);
            async move {
                if failed.load(Ordering::Relaxed) {
                    return (output, size, None);
                }
                let result = put_in_place(storage, output, uploaded).await;
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                (output, size, Some(result))
            }
        })
        .buffer_unordered(COPIES_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    for (output, size, result) in media {
        match result {
            Some(Ok(())) => {
                published.push(output.path.clone());
                done.files += 1;
                done.bytes += size;
            }
            Some(Err(e)) => first_error = first_error.or(Some(e)),
            None => {}
        }
    }
    if first_error.is_none() {
        for (n, uploaded, size) in indexes {
            let output = &outputs[n];
            match put_in_place(storage, output, uploaded).await {
                Ok(()) => {
                    published.push(output.path.clone());
                    done.files += 1;
                    done.bytes += size;
                }
                Err(e) => {
                    first_error = Some(e);
                    break;
                }
            }
        }
    }
    let Some(source) = first_error else {
        // Each output's temporary name went with its copy into place (a multipart upload
        // was completed): the backups are all that is left, and no longer needed. Deleted by
        // name, without listing the run's names (tester finding I2: two listings per job).
        let backups: Vec<String> = backed_up.iter().map(|path| run.backup(path)).collect();
        delete_temps(storage, backups).await;
        return Ok(done);
    };
    // Undo: the older files back, the new ones gone.
    let mut kept = Vec::new();
    for path in published {
        let undone = if backed_up.contains(&path) {
            storage.publish_temp(&run.backup(&path), &path, false).await
        } else {
            storage.delete(&path, false).await
        };
        if let Err(e) = undone {
            tracing::warn!(path, error = %e, "undoing a failed publish's output failed");
            kept.push(path);
        }
    }
    clean_up_failed(storage, run, &touched, &source).await;
    Err(PublishError::Publish { source, kept })
}

/// Step 1 for one output; `touched` is set once it starts writing into the temporary area.
async fn upload_one(
    storage: &dyn Storage,
    run: &RunTemp,
    output: &Output,
    touched: &AtomicBool,
) -> Result<(Uploaded, u64), StorageError> {
    let io_error = |source: std::io::Error| StorageError::Io { path: output.path.clone(), source };
    let file = tokio::fs::File::open(&output.local).await.map_err(io_error)?;
    let size = file.metadata().await.map_err(io_error)?.len();
    let body: ByteStream = Box::pin(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024));
    if size > COPY_MAX_BYTES {
        let options = PutOptions { create_only: output.create_only, max_bytes: u64::MAX, conditional: false };
        let staged = storage.put(&output.path, body, options).await?;
        return Ok((Uploaded::Staged(staged), size));
    }
    touched.store(true, Ordering::Relaxed);
    // Errors name the output as the client does, not its temporary name.
    let sent = storage.put_temp(&run.name(&output.path), body).await.map_err(|e| named(e, &output.path))?;
    Ok((Uploaded::Temp(run.name(&output.path)), sent))
}

/// `e` about `path` instead of the temporary name it was about.
fn named(e: StorageError, path: &str) -> StorageError {
    let path = path.to_owned();
    match e {
        StorageError::Io { source, .. } => StorageError::Io { path, source },
        StorageError::Unavailable { source, .. } => StorageError::Unavailable { path, source },
        StorageError::Denied { source, .. } => StorageError::Denied { path, source },
        StorageError::NoBucket { bucket, source, .. } => StorageError::NoBucket { path, bucket, source },
        StorageError::NotFound(_) => StorageError::NotFound(path),
        e => e,
    }
}

/// Step 2 for one output.
async fn put_in_place(storage: &dyn Storage, output: &Output, uploaded: Uploaded) -> Result<(), StorageError> {
    match uploaded {
        Uploaded::Temp(temp) => {
            storage.publish_temp(&temp, &output.path, output.create_only).await.map_err(|e| named(e, &output.path))
        }
        Uploaded::Staged(staged) => staged.commit().await.map(|_| ()),
    }
}

/// After a publish failed with `error`: [`discard`], unless the storage did not answer
/// ([`StorageError::is_transient`]). Then the run's names are left for later, not waited for
/// here one request timeout per listing while the worker's slot is held (tester finding I2):
/// the next attempt of the job undoes them first (its run record says this attempt wrote
/// there: [`crate::store::RunRecord::temp_area`]), and the temporary area's sweep
/// ([`crate::Jobs::sweep_temp_area`]) removes those of runs that are over.
async fn clean_up_failed(storage: &dyn Storage, run: &RunTemp, touched: &AtomicBool, error: &StorageError) {
    if error.is_transient() && touched.load(Ordering::Relaxed) {
        tracing::info!(
            run = run.prefix(),
            "the storage did not answer: the run's temporary names are left to the sweep"
        );
        return;
    }
    discard(storage, run, touched).await;
}

/// Deletes every temporary name of `run` (outputs and backups), and aborts its multipart
/// uploads still open; one already gone is no error. Nothing at all (no request) when the run
/// wrote nothing there (`touched` unset).
async fn discard(storage: &dyn Storage, run: &RunTemp, touched: &AtomicBool) {
    if !touched.load(Ordering::Relaxed) {
        return;
    }
    abort_open_uploads(storage, &run.prefix()).await;
    let temps = match storage.list_temps(&run.prefix()).await {
        Ok(temps) => temps,
        Err(e) => {
            tracing::warn!(run = run.prefix(), error = %e, "listing a run's temporary names failed; the sweep removes them");
            return;
        }
    };
    delete_temps(storage, temps.into_iter().map(|temp| temp.path).collect()).await;
}

/// Deletes the temporary names `temps`, [`COPIES_AT_ONCE`] at a time; one already gone is no
/// error, a failure is logged (the sweep removes it).
async fn delete_temps(storage: &dyn Storage, temps: Vec<String>) {
    let deletes = futures_util::stream::iter(temps)
        .map(|temp| async move {
            if let Err(e) = storage.delete_temp(&temp).await {
                tracing::warn!(temp, error = %e, "deleting a temporary name failed; the sweep removes it");
            }
        })
        .buffer_unordered(COPIES_AT_ONCE);
    deletes.collect::<()>().await;
}

/// Aborts the multipart uploads still open under the temporary names that start with `prefix`
/// (a run's, [`RunTemp::prefix`], or a job's, [`RunTemp::prefix_of`]): what uploads stopped
/// mid-way (a cancel, the time limit, a failure) left in the bucket, invisible and billed
/// (tester finding G11). Returns how many were aborted; a failure is logged (the sweep tries
/// again).
pub async fn abort_open_uploads(storage: &dyn Storage, prefix: &str) -> usize {
    let uploads = match storage.open_uploads(&format!("{TEMP_AREA}/{prefix}")).await {
        Ok(uploads) => uploads,
        Err(e) => {
            tracing::warn!(prefix, error = %e, "listing a run's open multipart uploads failed; the sweep aborts them");
            return 0;
        }
    };
    let mut aborted = 0;
    for upload in uploads {
        match storage.abort_upload(&upload).await {
            Ok(()) => aborted += 1,
            Err(e) => {
                tracing::warn!(path = upload.path, error = %e, "aborting a multipart upload failed; the sweep tries again");
            }
        }
    }
    aborted
}

/// What a run that did not end by itself (a crash, a lost node) left in the temporary area:
/// the files its outputs had replaced are put back from their backups (when `restore`), and
/// every name in `temps` is deleted. Restore only while no one else may write those paths: the
/// job is still active (running again, or being recovered), so the files API refuses them and
/// no other job writes them. Returns (files put back, names deleted).
pub async fn restore_or_discard(storage: &dyn Storage, temps: &[String], restore: bool) -> (usize, usize) {
    let (mut restored, mut deleted) = (0, 0);
    for temp in temps {
        if restore && let Some(path) = RunTemp::backed_up(temp) {
            match storage.publish_temp(temp, path, false).await {
                Ok(()) => {
                    restored += 1;
                    continue;
                }
                Err(StorageError::NotFound(_)) => continue,
                Err(e) => tracing::warn!(temp, path, error = %e, "putting a file back from its backup failed"),
            }
        }
        match storage.delete_temp(temp).await {
            Ok(()) => deleted += 1,
            Err(e) => tracing::warn!(temp, error = %e, "deleting a temporary name failed"),
        }
    }
    (restored, deleted)
}

/// Whether `path` names others (a playlist or manifest), to be published after them.
pub fn is_index(path: &str) -> bool {
    std::path::Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "m3u8" | "mpd" | "m3u" | "ism" | "f4m"))
}

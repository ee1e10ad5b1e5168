//! Staging: with the files in a bucket ([`crate::JobsConfig::remote_storage`]), ffmpeg still
//! reads and writes local files. A worker gives each run a [`Stage`]: a scratch directory
//! under the data directory (`.ffmpeg-worker-staging/JOBID-ATTEMPT/`) that is the run's
//! sandbox root, so the command resolves there exactly as it would in the data directory (the
//! same relative paths, which are the bucket's keys).
//!
//! 1. **Downloading** ([`Stage::download`]): every file the command may read — its
//!    [`Footprint`]'s read sets: inputs, glob and image-sequence matches, side files named in
//!    options (subtitles, fonts directories, ...), two-pass logs of an earlier pass — is listed
//!    in the storage and copied into the stage at its relative path. A missing input is not an
//!    error here: ffmpeg then reports it by name, as it would locally. Then the files that the
//!    inputs' concat lists name, checked by the stage's sandbox as on a disk
//!    ([`crate::concat_lists::check`], called by the worker with the resolved command).
//! 2. **Running**: ffmpeg runs on the stage as on the data directory.
//! 3. **Uploading** ([`Stage::upload`]), after success only: every file the run wrote (the
//!    same rule as locally, [`crate::outputs::run_files`]: outputs, HLS/DASH segments and
//!    playlists, pass logs, ...) is put into the storage at its relative path, playlists and
//!    manifests last so that a player never finds one naming a missing segment, as one set
//!    ([`crate::publish`]): every file is uploaded to a temporary name of the run first, and
//!    put in place only once all are uploaded (and the files they replace backed up). A failed
//!    upload changes nothing in the bucket; a failed publish is undone.
//!
//! A failed or cancelled run uploads nothing. The stage is removed when the run ends, however
//! it ends ([`Stage`]'s `Drop`). The run holds a lock on its stage while it lasts
//! ([`crate::locked_dir`], as on its scratch directory), so a stage whose lock is free is a
//! leftover of a process that is gone (`kill -9`, a crash): [`sweep_stages`] removes every
//! such stage, whoever ran its job since, at start-up and periodically; recovery and the
//! next run of a job remove its own ([`remove_stages_of`]). A stage another live process
//! uses (nodes sharing one data directory) is never removed.
//!
//! Bytes and seconds of each direction go to /metrics ([`METRIC_BYTES`], [`METRIC_SECONDS`],
//! [`METRIC_FILES`], [`METRIC_FAILURES`], labelled `direction`).

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ffmpeg_core::footprint::{FileSet, Footprint, Names};
use ffmpeg_core::pattern;
use ffmpeg_core::policy::Access;
use ffmpeg_core::sandbox::{OutputTarget, ResolvedCommand, Sandbox};
use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use crate::model::{JobId, Phase};
use crate::publish::{self, Output, PublishError, RunTemp};
use crate::storage::{Storage, StorageError};

/// The directory under the data directory that holds the jobs' stages; no job may name it.
pub const STAGING_DIR: &str = ".ffmpeg-worker-staging";

/// Counter of bytes copied between the storage and stages, labelled `direction`
/// (`download`, `upload`).
pub const METRIC_BYTES: &str = "ffmpeg_worker_staging_bytes_total";
/// Counter of files copied, labelled `direction`.
pub const METRIC_FILES: &str = "ffmpeg_worker_staging_files_total";
/// Histogram of the seconds one job's downloads or uploads took, labelled `direction`.
pub const METRIC_SECONDS: &str = "ffmpeg_worker_staging_seconds";
/// Counter of jobs whose downloads or uploads failed, labelled `direction`.
pub const METRIC_FAILURES: &str = "ffmpeg_worker_staging_failures_total";

/// Files listed per storage request while looking for a read set's matches.
const LIST_PAGE: usize = 1000;

/// Why staging failed; the message is what the job's `error` says.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The stage directory could not be made.
    #[error("cannot prepare the job's staging directory: {0}")]
    Prepare(#[source] io::Error),
    /// An input could not be listed or downloaded.
    #[error("downloading the job's inputs from the storage failed: {0}")]
    Download(#[source] StorageError),
    /// Before a later attempt: what earlier attempts left in the storage's temporary area
    /// (to be undone first) could not be listed.
    #[error("undoing what an earlier attempt of the job left in the storage failed: {0}")]
    Undo(#[source] StorageError),
    /// A downloaded input could not be written into the stage (disk full, ...).
    #[error("writing input `{path}` into the staging directory failed: {source}")]
    Write {
        /// The input's path.
        path: String,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// An output could not be uploaded; nothing in the storage changed (the outputs
    /// uploaded before it were only in the run's temporary names, now deleted).
    #[error("uploading the job's outputs to the storage failed; no file in the storage was changed: {0}")]
    Upload(#[source] StorageError),
    /// An output's path is a directory in the storage, or lies below a file
    /// ([`PublishError::Conflict`]); nothing in the storage changed.
    #[error("the job's outputs cannot be stored; no file in the storage was changed: {0}")]
    Conflict(#[source] PublishError),
    /// The outputs were uploaded, but putting them in place failed part-way (or the job was
    /// no longer this node's: [`PublishError::NotOurs`]).
    #[error("putting the job's uploaded outputs in place failed, and what was done was undone: {0}")]
    Publish(#[source] PublishError),
    /// A concat list's entries were refused or could not be staged
    /// ([`crate::concat_lists::check`]).
    #[error(transparent)]
    Concat(Box<crate::concat_lists::ConcatListError>),
    /// The job's time limit ([`Deadline`]) ran out while its files were downloaded or
    /// uploaded (`phase`). An upload stopped so is undone: no file in the storage changed.
    #[error(
        "timed out after {} s while {} (the job's time limit covers downloading its inputs, running ffmpeg \
         and uploading its outputs)",
        .limit.as_secs(),
        timed_out_in(.phase)
    )]
    TimedOut {
        /// The step the limit ran out in: [`Phase::Downloading`] or [`Phase::Uploading`].
        phase: Phase,
        /// The job's time limit.
        limit: Duration,
    },
}

/// What a job was doing when its time limit ran out in `phase`, for [`StagingError::TimedOut`].
fn timed_out_in(phase: &Phase) -> &'static str {
    match phase {
        Phase::Uploading => "uploading its outputs; no file in the storage was changed",
        Phase::Downloading => "downloading its inputs",
        Phase::Running => "running ffmpeg",
    }
}

impl StagingError {
    /// Whether the job may succeed if run again without anything else changing: the storage
    /// was unavailable ([`StorageError::is_transient`]).
    pub fn is_transient(&self) -> bool {
        match self {
            StagingError::Download(e) | StagingError::Upload(e) | StagingError::Undo(e) => e.is_transient(),
            StagingError::Publish(e) => e.storage_error().is_some_and(StorageError::is_transient),
            StagingError::Concat(e) => match e.as_ref() {
                crate::concat_lists::ConcatListError::Staging(e) => e.is_transient(),
                _ => false,
            },
            StagingError::Prepare(_)
            | StagingError::Write { .. }
            | StagingError::TimedOut { .. }
            | StagingError::Conflict(_) => false,
        }
    }
}

/// A job's time limit (`timeout_seconds`, capped by the server's) over one whole attempt of a
/// staged job: downloading its inputs, running ffmpeg and uploading its outputs share it, so a
/// job never stays longer than its limit in any step ([`StagingError::TimedOut`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    limit: Duration,
    at: tokio::time::Instant,
}

impl Deadline {
    /// A deadline `limit` from now; `None` without a limit.
    pub fn start(limit: Option<Duration>) -> Option<Deadline> {
        limit.map(|limit| Deadline { limit, at: tokio::time::Instant::now() + limit })
    }

    /// The whole limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// What is left of the limit (zero once it ran out).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(tokio::time::Instant::now())
    }

    /// Resolves when `deadline` is reached; never without one.
    pub async fn reached(deadline: Option<Deadline>) {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline.at).await,
            None => std::future::pending().await,
        }
    }
}

/// What one direction of staging moved.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Transfer {
    /// Files copied.
    pub files: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// One run's scratch directory, the root of its sandbox, locked while the stage lives
/// ([`crate::locked_dir`]). Removed on drop, then unlocked.
#[derive(Debug)]
pub struct Stage {
    root: PathBuf,
    /// `root` relative to the data directory, with a trailing `/` (for messages).
    shown: String,
    sandbox: Sandbox,
    /// The lock on `root` (taken when it was made); `None` once `Drop` took it.
    lock: Option<File>,
}

/// The stages directory of the data directory `data_root`.
pub fn stages_root(data_root: &Path) -> PathBuf {
    data_root.join(STAGING_DIR)
}

/// Removes the stages of job `id` (any attempt) under the data directory `data_root` that no
/// live run uses (their lock is free: [`crate::locked_dir::remove_if_free`]): what runs a
/// crash interrupted left. Returns how many were removed. Blocking.
pub fn remove_stages_of(data_root: &Path, id: &JobId) -> usize {
    let prefix = format!("{id}-");
    remove_free_stages(data_root, |name| name.starts_with(&prefix)).len()
}

/// Removes every stage under the data directory `data_root` that no live run of any process
/// uses (its lock is free): what processes that are gone left (a `kill -9`, a crash), whoever
/// ran their jobs since and whatever the store says. A stage of a live run, this process's or
/// another's sharing the data directory, stays. Returns the names of the stages removed.
/// Blocking; cheap (one lock attempt per stage).
pub fn sweep_stages(data_root: &Path) -> Vec<String> {
    remove_free_stages(data_root, |_| true)
}

/// Removes the stages under `data_root` whose name `wanted` accepts and whose lock is free;
/// returns their names.
fn remove_free_stages(data_root: &Path, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(stages_root(data_root)) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if !wanted(&name) {
            continue;
        }
        match crate::locked_dir::remove_if_free(&entry.path()) {
            Ok(true) => removed.push(name),
            Ok(false) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(stage = %entry.path().display(), error = %e, "removing a left staging directory failed");
            }
        }
    }
    removed
}

impl Stage {
    /// Creates the stage of attempt `attempt` of job `id` under the data directory of
    /// `sandbox` (empty: stages of the job left by an earlier process are removed first), with
    /// `sandbox`'s policy. Blocking.
    ///
    /// # Errors
    /// [`StagingError::Prepare`].
    pub fn create(sandbox: &Sandbox, id: &JobId, attempt: u32) -> Result<Stage, StagingError> {
        // A job runs once at a time on a node: any stage of it is an earlier process's.
        remove_stages_of(sandbox.root(), id);
        Stage::named(sandbox, &format!("{id}-{attempt}"))
    }

    /// A stage of its own for one `GET /probe` (`probe-RANDOM`). Blocking.
    ///
    /// # Errors
    /// [`StagingError::Prepare`].
    pub fn for_probe(sandbox: &Sandbox) -> Result<Stage, StagingError> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| StagingError::Prepare(io::Error::other(e.to_string())))?;
        Stage::named(sandbox, &format!("probe-{}", hex::encode(random)))
    }

    fn named(sandbox: &Sandbox, name: &str) -> Result<Stage, StagingError> {
        let stages = stages_root(sandbox.root());
        std::fs::create_dir_all(&stages).map_err(StagingError::Prepare)?;
        let (name, lock) = claim(&stages, name).map_err(StagingError::Prepare)?;
        let root = stages.join(&name);
        let stage_sandbox = match Sandbox::new(&root) {
            Ok(stage_sandbox) => stage_sandbox.with_policy(sandbox.policy().clone()),
            Err(e) => {
                remove_stage(&root);
                return Err(StagingError::Prepare(io::Error::other(e.to_string())));
            }
        };
        Ok(Stage {
            shown: format!("{STAGING_DIR}/{name}/"),
            root: stage_sandbox.root().to_owned(),
            sandbox: stage_sandbox,
            lock: Some(lock),
        })
    }

    /// The stage's directory (absolute, canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The sandbox rooted at the stage, with the server's policy.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// `text` (a log, an error) without the stage's place in the data directory, so that it
    /// names files as the client does (`in.mp4`, not `.ffmpeg-worker-staging/job_..-1/in.mp4`).
    pub fn unstaged(&self, text: &str) -> String {
        let absolute = format!("{}/", self.root.display());
        text.replace(&format!("file:{absolute}"), "").replace(&absolute, "").replace(&self.shown, "")
    }

    /// Downloads every file of `storage` that `footprint` may read into the stage.
    ///
    /// # Errors
    /// [`StagingError::Download`] when the storage fails (not for a missing file),
    /// [`StagingError::Write`] when the stage cannot hold a file.
    pub async fn download(&self, storage: &dyn Storage, footprint: &Footprint) -> Result<Transfer, StagingError> {
        let started = Instant::now();
        let result = async {
            let mut paths = BTreeSet::new();
            for set in footprint.reads() {
                paths.extend(matches(storage, set).await?);
            }
            let mut transfer = Transfer::default();
            for path in paths {
                match self.download_file(storage, &path).await {
                    Ok(bytes) => {
                        transfer.files += 1;
                        transfer.bytes += bytes;
                    }
                    // Gone between the listing and the read, or a directory: like a missing input.
                    Err(StagingError::Download(StorageError::NotFound(_) | StorageError::IsADirectory(_))) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(transfer)
        }
        .await;
        record("download", started, result)
    }

    /// Copies `path` of `storage` to the same relative path in the stage; returns its size.
    ///
    /// # Errors
    /// [`StagingError::Download`] ([`StorageError::NotFound`] for no such file),
    /// [`StagingError::Write`].
    pub async fn download_file(&self, storage: &dyn Storage, path: &str) -> Result<u64, StagingError> {
        let file = storage.open(path).await.map_err(StagingError::Download)?;
        let size = file.meta().size;
        let resolved = self.sandbox.resolve_file_path(path).map_err(|problem| StagingError::Write {
            path: path.to_owned(),
            source: io::Error::other(problem.to_string()),
        })?;
        let target = resolved.as_path().to_owned();
        let write_error = |source: io::Error| StagingError::Write { path: path.to_owned(), source };
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(write_error)?;
        }
        let mut out = tokio::fs::File::create(&target).await.map_err(write_error)?;
        let mut stream = file.read(0..size);
        let mut written: u64 = 0;
        while let Some(chunk) = stream.next().await {
            // A read cut short (the network, the object replaced meanwhile) may pass.
            let chunk = chunk.map_err(|source| {
                StagingError::Download(StorageError::Unavailable { path: path.to_owned(), source })
            })?;
            written += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(write_error)?;
        }
        out.flush().await.map_err(write_error)?;
        Ok(written)
    }

    /// For a command that must not overwrite its outputs (`-n`): puts an empty file in the
    /// stage at each of `paths` (relative) that exists in `storage`, so that ffmpeg finds it
    /// and refuses as it does in a data directory ("File '…' already exists. Exiting.").
    /// Returns the paths held. Called before anything is downloaded: a run that holds one
    /// downloads nothing ([`crate::Jobs`] fails it before ffmpeg starts).
    ///
    /// # Errors
    /// [`StagingError::Download`] when the storage fails, [`StagingError::Write`].
    pub async fn hold_existing(&self, storage: &dyn Storage, paths: &[String]) -> Result<Vec<String>, StagingError> {
        let mut held = Vec::new();
        for path in paths {
            match storage.head(path).await {
                Ok(_) | Err(StorageError::IsADirectory(_)) => {}
                Err(StorageError::NotFound(_)) => continue,
                Err(e) => return Err(StagingError::Download(e)),
            }
            let write_error = |source: io::Error| StagingError::Write { path: path.clone(), source };
            let target = self.root.join(path);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(write_error)?;
            }
            // An input of the same name, if staged already, is the file itself.
            if tokio::fs::symlink_metadata(&target).await.is_err() {
                tokio::fs::File::create(&target).await.map_err(write_error)?;
            }
            held.push(path.clone());
        }
        Ok(held)
    }

    /// Publishes `files` (paths relative to the stage, as [`crate::outputs::run_files`] lists
    /// them) into `storage` at the same paths, as one set ([`crate::publish`]: all uploaded
    /// to `run`'s temporary names first, then put in place, playlists and manifests last)
    /// if `still_ours()` holds once they are uploaded. The files in `create_only` never
    /// replace one in the storage (`-n`).
    ///
    /// # Errors
    /// [`StagingError::Upload`] (nothing in the storage changed), [`StagingError::Publish`].
    pub async fn upload(
        &self,
        storage: &dyn Storage,
        run: &RunTemp,
        files: &[PathBuf],
        create_only: &BTreeSet<PathBuf>,
        still_ours: &(dyn Fn() -> bool + Sync),
    ) -> Result<Transfer, StagingError> {
        let started = Instant::now();
        let outputs: Vec<Output> = files
            .iter()
            .map(|path| Output {
                path: path.to_string_lossy().into_owned(),
                local: self.root.join(path),
                create_only: create_only.contains(path),
            })
            .collect();
        let result = match publish::publish(storage, run, &outputs, still_ours).await {
            Ok(done) => Ok(Transfer { files: done.files, bytes: done.bytes, elapsed: Duration::ZERO }),
            Err(PublishError::Upload(e)) => Err(StagingError::Upload(e)),
            Err(e @ PublishError::Conflict { .. }) => Err(StagingError::Conflict(e)),
            Err(e) => Err(StagingError::Publish(e)),
        };
        record("upload", started, result)
    }
}

/// Makes and locks the stage directory `name` under `stages` ([`crate::locked_dir::create_locked`]);
/// returns its name and lock. One left by a process that is gone is removed first; one a live
/// run of another process holds (nodes sharing the data directory) is left alone, and the
/// stage gets a name of its own, `name-RANDOM`.
fn claim(stages: &Path, name: &str) -> io::Result<(String, File)> {
    let mut chosen = name.to_owned();
    // Each turn but a sweep racing this one ends it; a few are plenty.
    for _ in 0..8 {
        let path = stages.join(&chosen);
        match crate::locked_dir::create_locked(&path) {
            Ok(lock) => return Ok((chosen, lock)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let removed = crate::locked_dir::remove_if_free(&path);
                if !matches!(removed, Ok(true)) && !removed.is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
                    let mut random = [0u8; 4];
                    getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
                    chosen = format!("{name}-{}", hex::encode(random));
                }
            }
            // A sweep took it for a leftover before it was locked: made again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "`{STAGING_DIR}/{name}` was removed or taken by other processes each time it was made"
    )))
}

impl Drop for Stage {
    fn drop(&mut self) {
        let root = self.root.clone();
        // Unlocked once removed: a sweep never takes a stage being removed for a leftover.
        let lock = self.lock.take();
        let remove = move || {
            remove_stage(&root);
            drop(lock);
        };
        // Off the async threads when there is a runtime; a large stage takes a while.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

fn remove_stage(root: &Path) {
    if let Err(e) = std::fs::remove_dir_all(root)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(stage = %root.display(), error = %e, "removing a staging directory failed");
    }
}

/// Adds the downloads made besides [`Stage::download`] (the entries of concat lists,
/// [`crate::concat_lists::check`]) to the download metrics: `Ok` what they moved, `Err(true)`
/// a failed download, `Err(false)` none (refused before anything failed to move).
pub(crate) fn count_download(outcome: Result<&Transfer, bool>) {
    match outcome {
        Ok(transfer) => {
            metrics::counter!(METRIC_BYTES, "direction" => "download").increment(transfer.bytes);
            metrics::counter!(METRIC_FILES, "direction" => "download").increment(transfer.files as u64);
        }
        Err(true) => metrics::counter!(METRIC_FAILURES, "direction" => "download").increment(1),
        Err(false) => {}
    }
}

/// Records the metrics of one direction's transfer and passes `result` through.
fn record(
    direction: &'static str,
    started: Instant,
    result: Result<Transfer, StagingError>,
) -> Result<Transfer, StagingError> {
    let elapsed = started.elapsed();
    metrics::histogram!(METRIC_SECONDS, "direction" => direction).record(elapsed.as_secs_f64());
    match result {
        Ok(transfer) => {
            metrics::counter!(METRIC_BYTES, "direction" => direction).increment(transfer.bytes);
            metrics::counter!(METRIC_FILES, "direction" => direction).increment(transfer.files as u64);
            Ok(Transfer { elapsed, ..transfer })
        }
        Err(e) => {
            metrics::counter!(METRIC_FAILURES, "direction" => direction).increment(1);
            Err(e)
        }
    }
}

/// The paths in `storage` that the read set `set` covers.
async fn matches(storage: &dyn Storage, set: &FileSet) -> Result<Vec<String>, StagingError> {
    let dir = set.dir().to_string_lossy().into_owned();
    let dir_prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
    if let Names::Exact(name) = set.names()
        && !has_placeholder(&dir)
    {
        return Ok(vec![format!("{dir_prefix}{name}")]);
    }
    // A directory with a placeholder (`%v`) may be any directory: look everywhere.
    let prefix = if has_placeholder(&dir) { String::new() } else { dir_prefix };
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = storage.list(&prefix, after.as_deref(), LIST_PAGE).await.map_err(StagingError::Download)?;
        for file in page.files {
            let path = Path::new(&file.path);
            let parent = path.parent().unwrap_or(Path::new(""));
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if set.matches(parent, name) {
                found.push(file.path.clone());
            }
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(found),
        }
    }
}

fn has_placeholder(dir: &str) -> bool {
    dir.contains('%') || dir.contains('$')
}

/// The HLS muxer's `append_list` flag (`HLS_APPEND_LIST` in `libavformat/hlsenc.c`).
const HLS_APPEND_LIST: u64 = 1 << 6;

/// The outputs of `resolved` that ffmpeg reads before it writes them, as paths relative to the
/// data directory. With the files in a bucket each is downloaded into the stage first when it
/// exists ([`Stage::download_existing`]); otherwise ffmpeg would start it anew and its upload
/// would replace what was there:
/// - the playlist of an HLS output with `-hls_flags append_list` (in any spelling: `+append_list`,
///   `delete_segments+append_list`, a number with its bit), one per variant stream when the
///   name holds `%v`: `hlsenc.c` reads it back, keeps its entries and continues its segment
///   numbers (the segments it names stay in the storage);
/// - a file an option appends to (x265's `csv`, [`Access::Append`]).
///
/// No other muxer of ffmpeg reads its own output back (the segment and DASH muxers rewrite
/// their lists whole).
pub fn read_before_written(resolved: &ResolvedCommand) -> Vec<String> {
    let mut paths = BTreeSet::new();
    let command = resolved.command();
    for (index, (output, target)) in command.outputs().iter().zip(resolved.outputs()).enumerate() {
        let OutputTarget::File(path) = target else { continue };
        let Some(variants) = resolved.hls_variants(index) else { continue };
        let appends = output
            .option("hls_flags")
            .and_then(|o| o.value())
            .is_some_and(|v| flag_set(v, "append_list", HLS_APPEND_LIST));
        if !appends {
            continue;
        }
        let relative = path.relative().to_string_lossy().into_owned();
        if pattern::has_hls_variant(&relative) {
            paths.extend(variants.iter().map(|variant| pattern::expand_hls_variant(&relative, variant)));
        } else {
            paths.insert(relative);
        }
    }
    for file in resolved.option_files() {
        if file.file_use().access == Access::Append {
            paths.insert(file.path().relative().to_string_lossy().into_owned());
        }
    }
    paths.into_iter().collect()
}

/// Whether the flags option value `value` sets the flag `name` (bit `bit`), as `av_opt_set`
/// reads a flags value: `a+b-c` (a first name without a sign replaces the default, `+` adds,
/// `-` removes), a name being a flag's or a number.
fn flag_set(value: &str, name: &str, bit: u64) -> bool {
    let mut set = false;
    let mut rest = value;
    loop {
        let sign = rest.chars().next().filter(|c| matches!(c, '+' | '-'));
        if sign.is_some() {
            rest = &rest[1..];
        }
        let end = rest.find(['+', '-']).unwrap_or(rest.len());
        let token = rest[..end].trim();
        let has = token == name || token.parse::<u64>().is_ok_and(|n| n & bit != 0);
        match sign {
            None => set = has,
            Some('+') => set |= has,
            Some(_) => set &= !has,
        }
        rest = &rest[end..];
        if end == 0 || rest.is_empty() {
            return set;
        }
    }
}

/// A file [`Stage::download_existing`] put into the stage, as it was then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedBack {
    /// Its path, relative.
    pub path: String,
    /// Its size and modification time in the stage right after the download.
    stamp: Option<(u64, std::time::SystemTime)>,
}

impl Stage {
    /// Downloads each of `paths` (outputs that ffmpeg reads before it writes them,
    /// [`read_before_written`]) that exists in `storage` into the stage; a missing one is
    /// skipped (ffmpeg starts it).
    ///
    /// # Errors
    /// [`StagingError::Download`] when the storage fails, [`StagingError::Write`].
    pub async fn download_existing(
        &self,
        storage: &dyn Storage,
        paths: &[String],
    ) -> Result<(Vec<StagedBack>, Transfer), StagingError> {
        let mut staged = Vec::new();
        let mut transfer = Transfer::default();
        for path in paths {
            match self.download_file(storage, path).await {
                Ok(bytes) => {
                    transfer.files += 1;
                    transfer.bytes += bytes;
                    let stamp = self.stamp(path).await;
                    staged.push(StagedBack { path: path.clone(), stamp });
                }
                Err(StagingError::Download(StorageError::NotFound(_) | StorageError::IsADirectory(_))) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((staged, transfer))
    }

    /// The files of `staged` that the run changed (an appended `csv`; a playlist is one of
    /// the run's outputs anyway): to be uploaded with its outputs.
    pub async fn changed(&self, staged: &[StagedBack]) -> Vec<PathBuf> {
        let mut changed = Vec::new();
        for file in staged {
            let now = self.stamp(&file.path).await;
            if now.is_some() && now != file.stamp {
                changed.push(PathBuf::from(&file.path));
            }
        }
        changed
    }

    /// Size and modification time of the stage's file at `path` (relative).
    async fn stamp(&self, path: &str) -> Option<(u64, std::time::SystemTime)> {
        let meta = tokio::fs::metadata(self.root.join(path)).await.ok()?;
        Some((meta.len(), meta.modified().ok()?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_flags_value_sets_append_list_as_av_opt_set_reads_it() {
        let set = |value| flag_set(value, "append_list", HLS_APPEND_LIST);
        for yes in
            ["append_list", "+append_list", "delete_segments+append_list", "append_list+omit_endlist", "64", "+65"]
        {
            assert!(set(yes), "{yes}");
        }
        for no in
            ["", "delete_segments", "append_list-append_list", "+append_list-64", "append_listx", "2", "-append_list"]
        {
            assert!(!set(no), "{no}");
        }
    }

    #[test]
    fn outputs_read_before_written_are_hls_playlists_appended_to_and_appended_files() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(dir.path()).unwrap();
        let read_back = |line: &str| {
            let resolved = sandbox.resolve_command(&ffmpeg_core::command::Command::parse(line).unwrap()).unwrap();
            read_before_written(&resolved)
        };
        assert_eq!(read_back("-i a.mp4 -f hls -hls_flags +append_list hls/p.m3u8"), ["hls/p.m3u8"]);
        assert_eq!(read_back("-i a.mp4 -hls_flags delete_segments+append_list live.m3u8"), ["live.m3u8"]);
        assert!(read_back("-i a.mp4 -f hls -hls_flags delete_segments hls/p.m3u8").is_empty());
        assert!(read_back("-i a.mp4 -hls_flags append_list out.mp4").is_empty(), "not an HLS output");
        let variants = read_back(
            "-i a.mp4 -map 0:v -map 0:v -f hls -var_stream_map 'v:0 v:1' -hls_flags append_list hls/v%v/p.m3u8",
        );
        assert_eq!(variants, ["hls/v0/p.m3u8", "hls/v1/p.m3u8"]);
        assert_eq!(read_back("-i a.mp4 -c:v libx265 -x265-params csv=logs/x.csv out.mp4"), ["logs/x.csv"]);
    }
}

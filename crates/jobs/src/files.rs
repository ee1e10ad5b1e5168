//! [`Files`]: the rules of the files API, over a [`Storage`] and the job store.
//!
//! - A file that a queued or running job reads or writes cannot be replaced or deleted
//!   ([`FilesError::InUse`]): a job's inputs cannot change under it, nor its outputs vanish.
//!   The check runs before an upload starts and again right before it becomes visible.
//! - No upload may put a file where a queued or running job may write a directory, nor below
//!   a file such a job may write ([`Footprint::writes_above_or_below`]): the job's outputs
//!   reach a bucket only when it ends, and a bucket would keep both (tester finding H6). As
//!   the job's publish and the upload's commit cannot be one step, a new file is checked once
//!   more after it became visible, against the jobs and against the storage
//!   ([`Storage::check_writable_paths`]), and deleted again on a conflict
//!   ([`FilesError::Raced`]): of an upload and a job's publish (or two uploads) that race, the
//!   one that checks last sees the other. Two uploads through one process that could conflict
//!   commit and re-check one after the other (a lock per first path component), so the later
//!   one finds the earlier and exactly one is kept; through two nodes, both may lose.
//! - An upload is at most [`Files::max_upload_bytes`] bytes (`MAX_UPLOAD_BYTES`, default
//!   [`DEFAULT_MAX_UPLOAD_BYTES`]), independent of the JSON body limit.
//! - A listing page holds 1 to [`MAX_PAGE_SIZE`] files, like `/jobs`.
//! - A file's content type comes from its extension ([`content_type`]).

use std::path::Path;
use std::sync::Arc;

use ffmpeg_core::command::Command;
use ffmpeg_core::footprint::Footprint;
use ffmpeg_core::sandbox::Sandbox;

use crate::model::{InvalidRequest, JobId, JobStatus, MAX_PAGE_SIZE};
use crate::storage::{
    ByteStream, FileMeta, ListPage, Preconditions, PutOptions, PutOutcome, Storage, StorageError, StoredFile,
    TagCondition, in_the_way,
};
use crate::store::{JobStore, StoreError};

/// Default largest upload: 20 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 20 * 1024 * 1024 * 1024;

/// Why a files operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// What the storage refused or failed at.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A queued or running job reads or writes the file.
    #[error("`{path}` is used by job {job} ({status}); wait for it to finish or cancel it")]
    InUse {
        /// The file (normal form).
        path: String,
        /// The first job found using it.
        job: JobId,
        /// That job's status.
        status: JobStatus,
    },
    /// The new file was in place, but a file above it or files below it were put there
    /// meanwhile, by another upload (through another node: one node keeps one of two) or a
    /// job's outputs: it was deleted again. The storage holds the other now; nothing of this
    /// upload is left.
    #[error(
        "`{path}` was not kept: {}, put there while this upload was stored (by another upload or a job); \
         nothing of this upload is left; retry to get the storage's answer now",
        in_the_way(problem)
    )]
    Raced {
        /// The upload's path (normal form).
        path: String,
        /// [`StorageError::IsADirectory`] or [`StorageError::NotADirectory`].
        problem: StorageError,
    },
    /// A parameter outside the service's limits (page size).
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The job store failed (the in-use check could not be made; nothing was changed).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Media types that players, CDNs and the specifications expect where `mime_guess` has
/// another: MPEG-TS segments are `video/mp2t` (RFC 3555; HLS players and CDNs, not DLNA's
/// `video/vnd.dlna.mpeg-tts`), HLS playlists `application/vnd.apple.mpegurl` (RFC 8216 §4),
/// fMP4/CMAF segments `video/iso.segment` (IANA) and `.cmfv`/`.cmfa`/`.m4v`/`.m4a` the MP4
/// types (RFC 4337), the extension compared without case.
const MEDIA_TYPES: &[(&str, &str)] = &[
    ("ts", "video/mp2t"),
    ("m2ts", "video/mp2t"),
    ("mts", "video/mp2t"),
    ("m3u8", "application/vnd.apple.mpegurl"),
    ("m4s", "video/iso.segment"),
    ("cmfv", "video/mp4"),
    ("m4v", "video/mp4"),
    ("cmfa", "audio/mp4"),
    ("m4a", "audio/mp4"),
];

/// The content type of a file named `path`, from its extension ([`MEDIA_TYPES`] first, then
/// `mime_guess`; `application/octet-stream` when unknown).
pub fn content_type(path: &str) -> String {
    let extension = Path::new(path).extension().and_then(|e| e.to_str()).unwrap_or_default();
    if let Some((_, known)) = MEDIA_TYPES.iter().find(|(e, _)| e.eq_ignore_ascii_case(extension)) {
        return (*known).to_owned();
    }
    mime_guess::from_path(path).first_or_octet_stream().essence_str().to_owned()
}

/// A file just stored by [`Files::put`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInfo {
    /// What the storage reports.
    pub outcome: PutOutcome,
    /// Its content type ([`content_type`]).
    pub content_type: String,
}

/// The files service. Cheap to share (`Arc`).
pub struct Files {
    storage: Arc<dyn Storage>,
    store: Arc<dyn JobStore>,
    sandbox: Arc<Sandbox>,
    max_upload_bytes: u64,
    /// [`PLACE_STRIPES`] locks, one taken by the file's first path component: an upload's last
    /// check, its commit and a new file's re-check are one step among this process's uploads
    /// that could conflict (a path and one below it share their first component).
    placing: Box<[tokio::sync::Mutex<()>]>,
}

/// Stripes of [`Files`]' placing lock.
const PLACE_STRIPES: usize = 64;

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("storage", &self.storage)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .finish_non_exhaustive()
    }
}

impl Files {
    /// Files in `storage`, checked against the jobs in `store` (whose commands `sandbox`
    /// resolves when a job was stored without its footprint), uploads up to
    /// `max_upload_bytes`.
    pub fn new(
        storage: Arc<dyn Storage>,
        store: Arc<dyn JobStore>,
        sandbox: Arc<Sandbox>,
        max_upload_bytes: u64,
    ) -> Files {
        let placing = (0..PLACE_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect();
        Files { storage, store, sandbox, max_upload_bytes, placing }
    }

    /// Largest upload accepted, in bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes
    }

    /// The storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// [`FilesError::InUse`] if a queued or running job may read or write any of `paths`
    /// (normal form). A job stored without its footprint (before footprints were recorded)
    /// gets the one its command has now ([`Files::derived_footprint`]); only when that cannot
    /// be known may it touch anything.
    async fn check_not_in_use(&self, paths: &[String]) -> Result<(), FilesError> {
        self.check_jobs(paths, Footprint::touches_file).await
    }

    /// [`FilesError::InUse`] if a queued or running job may write a file above `path`, or
    /// below it ([`Footprint::writes_above_or_below`]): an upload there would leave a file
    /// and a directory of one name (refused by a disk, kept by a bucket).
    async fn check_not_written_around(&self, path: &str) -> Result<(), FilesError> {
        self.check_jobs(&[path.to_owned()], Footprint::writes_above_or_below).await
    }

    /// The placing lock's stripe of `path` (normal form).
    fn placing(&self, path: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        path.split('/').next().unwrap_or_default().hash(&mut hasher);
        &self.placing[(hasher.finish() % PLACE_STRIPES as u64) as usize]
    }

    /// Where an upload may not go: [`Files::check_not_in_use`] and
    /// [`Files::check_not_written_around`] in one reading of the jobs.
    async fn check_upload(&self, path: &str) -> Result<(), FilesError> {
        let blocks =
            |footprint: &Footprint, path: &Path| footprint.touches_file(path) || footprint.writes_above_or_below(path);
        self.check_jobs(&[path.to_owned()], blocks).await
    }

    /// [`FilesError::InUse`] for the first of `paths` that `uses` says a queued or running
    /// job's footprint covers (a job of unknown footprint covers everything).
    async fn check_jobs(&self, paths: &[String], uses: fn(&Footprint, &Path) -> bool) -> Result<(), FilesError> {
        for active in self.store.active_footprints().await? {
            let footprint = match active.footprint {
                Some(footprint) => Some(footprint),
                None => self.derived_footprint(&active.id).await,
            };
            let used = paths
                .iter()
                .find(|path| footprint.as_ref().is_none_or(|footprint| uses(footprint, Path::new(path.as_str()))));
            if let Some(path) = used {
                return Err(FilesError::InUse { path: path.clone(), job: active.id, status: active.status });
            }
        }
        Ok(())
    }

    /// [`FilesError::InUse`] (naming `dir`) if a queued or running job may write into the
    /// directory `dir` or below it ([`crate::outputs::writes_into`]): its outputs need not
    /// exist yet (with the files in a bucket they appear only once the job succeeded), and a
    /// recursive delete must not empty the directory under it.
    async fn check_not_written_into(&self, dir: &str) -> Result<(), FilesError> {
        for active in self.store.active_footprints().await? {
            let footprint = match active.footprint {
                Some(footprint) => Some(footprint),
                None => self.derived_footprint(&active.id).await,
            };
            if crate::outputs::writes_into(footprint.as_ref(), Path::new(dir)) {
                return Err(FilesError::InUse { path: dir.to_owned(), job: active.id, status: active.status });
            }
        }
        Ok(())
    }

    /// The footprint of job `id`'s command as the sandbox resolves it now (as a worker would
    /// before running it); `None` when the job is gone or its command no longer resolves.
    async fn derived_footprint(&self, id: &JobId) -> Option<Footprint> {
        let job = self.store.get(id).await.ok()??;
        let sandbox = Arc::clone(&self.sandbox);
        let derive = move || Some(Footprint::of(&sandbox.resolve_command(&Command::parse(&job.command).ok()?).ok()?));
        tokio::task::spawn_blocking(derive).await.ok()?
    }

    /// Stores `body` at `path` (parent directories created), atomically: readers and jobs see
    /// the old file or the new one. `create_only`: refuse to replace an existing file.
    ///
    /// # Errors
    /// [`FilesError::InUse`] (checked before the upload and before it becomes visible; for a
    /// new file, a job writing above or below it also after, see the [module docs](self)),
    /// [`FilesError::Storage`] ([`StorageError::TooLarge`] over the limit,
    /// [`StorageError::Exists`] for `create_only`, [`StorageError::NotADirectory`] and
    /// [`StorageError::IsADirectory`], ...), [`FilesError::Raced`], [`FilesError::Store`].
    /// Nothing is left behind on error.
    pub async fn put(&self, path: &str, body: ByteStream, create_only: bool) -> Result<StoredInfo, FilesError> {
        self.put_if(path, body, create_only, &Preconditions::default()).await
    }

    /// [`Files::put`] only if `preconditions` (`If-Match`, `If-Unmodified-Since`,
    /// `If-None-Match`) hold for the file at `path` when the upload is put in place
    /// ([`StagedPut::commit_if`](crate::storage::StagedPut::commit_if)).
    ///
    /// # Errors
    /// As [`Files::put`], and [`StorageError::PreconditionFailed`] (nothing is left behind).
    pub async fn put_if(
        &self,
        path: &str,
        body: ByteStream,
        create_only: bool,
        preconditions: &Preconditions,
    ) -> Result<StoredInfo, FilesError> {
        let normal = self.storage.check_path(path).await?;
        self.check_upload(&normal).await?;
        if !preconditions.is_empty() {
            // Early, before the body is read (412 at once); the commit checks again, as one
            // step with the write.
            let current = match self.storage.head(path).await {
                Ok(meta) => Some(meta),
                Err(StorageError::NotFound(_) | StorageError::DanglingLink { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            preconditions.check_for(path, current.as_ref())?;
        }
        let options =
            PutOptions { create_only, max_bytes: self.max_upload_bytes, conditional: !preconditions.is_empty() };
        let staged = self.storage.put(path, body, options).await?;
        // Of two uploads here that could conflict, the second commits once the first is in
        // place and re-checked, and so finds it: one of the two is kept.
        let placing = self.placing(&normal).lock().await;
        // A job may have been queued during the upload.
        self.check_upload(&normal).await?;
        let outcome = staged.commit_if(preconditions).await?;
        if outcome.created {
            self.check_placed(&outcome).await?;
        }
        drop(placing);
        let content_type = content_type(&outcome.meta.path);
        Ok(StoredInfo { outcome, content_type })
    }

    /// The check after a new file became visible (see the [module docs](self)): a job queued
    /// since the last check that writes above or below it, or a file or directory put in the
    /// way meanwhile (a job's publish, another upload: [`FilesError::Raced`]), and the new
    /// file is deleted again (if it is still the one stored) and the conflict returned. A file that replaced another
    /// needs none: its path was a file all along, which every other writer's check sees.
    async fn check_placed(&self, outcome: &PutOutcome) -> Result<(), FilesError> {
        let path = &outcome.meta.path;
        let conflict = match self.check_not_written_around(path).await {
            Err(e @ FilesError::InUse { .. }) => e,
            Err(e) => return Err(e),
            Ok(()) => match self.storage.check_writable_paths(std::slice::from_ref(path), &[]).await {
                Err(problem @ (StorageError::IsADirectory(_) | StorageError::NotADirectory { .. })) => {
                    FilesError::Raced { path: path.clone(), problem }
                }
                // Not known to conflict: the file stays (the other writer's check sees it).
                Err(e) => {
                    tracing::warn!(path, error = %e, "checking a new file's place after the upload failed");
                    return Ok(());
                }
                Ok(()) => return Ok(()),
            },
        };
        let only_ours = Preconditions {
            if_match: Some(TagCondition::Tags(vec![outcome.meta.etag.clone()])),
            ..Preconditions::default()
        };
        match self.storage.delete_if(path, false, &only_ours).await {
            Ok(()) | Err(StorageError::NotFound(_) | StorageError::PreconditionFailed { .. }) => {}
            Err(e) => tracing::warn!(path, error = %e, "deleting an upload that conflicts with a job failed"),
        }
        Err(conflict)
    }

    /// Opens the file at `path` for reading.
    ///
    /// # Errors
    /// [`FilesError::Storage`]: not found, a directory, a bad path.
    pub async fn open(&self, path: &str) -> Result<Box<dyn StoredFile>, FilesError> {
        Ok(self.storage.open(path).await?)
    }

    /// The metadata of the file at `path`.
    ///
    /// # Errors
    /// As [`Files::open`].
    pub async fn head(&self, path: &str) -> Result<FileMeta, FilesError> {
        Ok(self.storage.head(path).await?)
    }

    /// Files whose path starts with `prefix`, in path order, after `after`, `limit` per page.
    ///
    /// # Errors
    /// [`InvalidRequest::PageSize`] for a limit outside 1..=[`MAX_PAGE_SIZE`]; a prefix whose
    /// directory part is not a valid path.
    pub async fn list(&self, prefix: &str, after: Option<&str>, limit: u32) -> Result<ListPage, FilesError> {
        if limit == 0 || limit > MAX_PAGE_SIZE {
            return Err(InvalidRequest::PageSize(limit).into());
        }
        Ok(self.storage.list(prefix, after, limit as usize).await?)
    }

    /// Deletes the file at `path`, or with `recursive` the directory and everything under it.
    /// A name that is both (a bucket's object `x` beside keys `x/...`): the file alone, or with
    /// `recursive` the file and everything under the directory.
    ///
    /// # Errors
    /// [`FilesError::InUse`] when a queued or running job uses the file (or, for a directory,
    /// any file under it, or may write into it); [`StorageError::IsADirectory`] for a directory without
    /// `recursive`; [`StorageError::NotFound`].
    pub async fn delete(&self, path: &str, recursive: bool) -> Result<(), FilesError> {
        self.delete_if(path, recursive, &Preconditions::default()).await
    }

    /// [`Files::delete`] only if `preconditions` hold for the file at `path`
    /// ([`Storage::delete_if`]).
    ///
    /// # Errors
    /// As [`Files::delete`], and [`StorageError::PreconditionFailed`].
    pub async fn delete_if(
        &self,
        path: &str,
        recursive: bool,
        preconditions: &Preconditions,
    ) -> Result<(), FilesError> {
        let normal = self.storage.check_path(path).await?;
        // A bucket may hold a file of a directory's name (`x` beside `x/y`): without
        // `recursive` that file alone is deleted, as it is listed and served; with it, the
        // file and everything below (tester finding L5).
        let directory = self.storage.is_directory(path).await?;
        let file_too = directory && !path.ends_with('/') && self.storage.head(path).await.is_ok();
        if directory && (recursive || !file_too) {
            if !recursive {
                return Err(StorageError::IsADirectory(path.to_owned()).into());
            }
            let prefix = format!("{normal}/");
            let mut paths = if file_too { vec![normal.clone()] } else { Vec::new() };
            let mut after = None;
            loop {
                let page = self.storage.list(&prefix, after.as_deref(), MAX_PAGE_SIZE as usize).await?;
                paths.extend(page.files.into_iter().map(|f| f.path));
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            self.check_not_in_use(&paths).await?;
            self.check_not_written_into(&normal).await?;
        } else {
            self.check_not_in_use(&[normal]).await?;
        }
        Ok(self.storage.delete_if(path, recursive, preconditions).await?)
    }
}

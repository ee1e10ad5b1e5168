//! Writing a bucket: puts (one `PUT`, or a multipart upload whose parts go up while the body
//! arrives, [`S3Staged`] until committed), server-side copies (one `CopyObject` up to
//! [`COPY_MAX_BYTES`](super::COPY_MAX_BYTES), else and on a condition a multipart copy in
//! ranges, `raw.rs`), deletes (on a condition: a conditional `DeleteObject`).

use std::fmt;
use std::io;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use ffmpeg_core::sandbox::PathProblem;
use futures_util::StreamExt as _;
use object_store::path::Path as Key;
use object_store::{
    ObjectStore as _, ObjectStoreExt as _, PutMode, PutMultipartOptions, PutOptions as StorePutOptions, PutPayload,
    UpdateVersion, WriteMultipart,
};
use sha2::{Digest as _, Sha256};

use super::raw::{CopySource, RawError, WriteIf};
use super::temp::{UPLOADS_TEMP, random_name};
use super::{PART_BYTES, PARTS_IN_FLIGHT, S3Storage};
use crate::storage::{ByteStream, Preconditions, PutOptions, PutOutcome, StagedPut, StorageError};

impl S3Storage {
    /// [`Storage::put`](crate::storage::Storage::put).
    pub(super) async fn put_object(
        &self,
        path: &str,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<Box<dyn StagedPut>, StorageError> {
        let normal = self.normal_async(path, false).await?;
        if path.ends_with('/') {
            return Err(StorageError::IsADirectory(path.to_owned()));
        }
        self.check_writable(&normal).await?;
        // A create-only or conditional upload of many parts goes to a temporary key of its
        // own: completing it there replaces nothing, and commit copies it into place only if
        // the file there is still the one checked (one conditional request: of two racing
        // uploads, one wins).
        let temp = match options.create_only || options.conditional {
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

    /// [`Storage::delete`](crate::storage::Storage::delete).
    pub(super) async fn delete_objects(&self, path: &str, recursive: bool) -> Result<(), StorageError> {
        let normal = self.normal_async(path, path.ends_with('/')).await?;
        if normal.is_empty() {
            return Err(StorageError::Reserved(path.to_owned()));
        }
        let file = !path.ends_with('/') && self.head_key(&normal).await?.is_some();
        // A file is deleted by its name alone, also when keys lie below it (a bucket holds
        // both `x` and `x/y`); with `recursive` they go too, so that nothing is left at the
        // name (tester finding L5: only the file went, and the PUT the 409 had advised the
        // recursive DELETE for was refused again).
        if file && !recursive {
            return self.delete_file(&normal, path).await;
        }
        if !self.has_children(&normal).await? {
            return match file {
                true => self.delete_file(&normal, path).await,
                false => Err(nothing_below(path)),
            };
        }
        if !recursive {
            return Err(StorageError::IsADirectory(path.to_owned()));
        }
        self.delete_below(&normal, path).await?;
        if file {
            self.delete_file(&normal, path).await?;
        }
        Ok(())
    }

    /// Deletes the object of the file at `normal` (`path` as asked, for errors).
    async fn delete_file(&self, normal: &str, path: &str) -> Result<(), StorageError> {
        self.store.delete(&self.key(normal)).await.map_err(|e| self.store_error(path, e))
    }

    /// Deletes every key below the directory `normal` (`path` as asked, for errors), by its
    /// exact text: folder markers (`dir/`, `dir/sub/`) and keys of other tools that no path
    /// names (`dir//a`, `dir/a/../b`) too, so the directory is gone afterwards (`keys.rs`). A
    /// page is deleted before the next one is asked for: S3 lists keys after the last one it
    /// gave.
    async fn delete_below(&self, normal: &str, path: &str) -> Result<(), StorageError> {
        let mut pages = self.list_keys(self.dir_prefix(normal), None, path);
        while let Some(page) = pages.next_page().await? {
            let keys: Vec<String> = page.into_iter().map(|listed| listed.key).collect();
            self.delete_keys(&keys, path).await?;
        }
        Ok(())
    }

    /// [`Storage::delete_if`](crate::storage::Storage::delete_if): the preconditions are
    /// checked against the object there now, then it is deleted on the condition that it is
    /// still that one (`If-Match` its entity tag): the bucket makes the check and the delete
    /// one step, and a change in between is [`StorageError::PreconditionFailed`]. A server
    /// that answers 501 to the conditional delete gets a plain one (the check one request
    /// before). A directory is deleted as by [`Storage::delete`](crate::storage::Storage::delete)
    /// once the preconditions hold for "no file".
    pub(super) async fn delete_objects_if(
        &self,
        path: &str,
        recursive: bool,
        preconditions: &Preconditions,
    ) -> Result<(), StorageError> {
        if preconditions.is_empty() {
            return self.delete_objects(path, recursive).await;
        }
        let normal = self.normal_async(path, path.ends_with('/')).await?;
        let current = match path.ends_with('/') || normal.is_empty() {
            true => None,
            false => self.head_key(&normal).await?,
        };
        // No file and no directory: 404 whatever the conditions, as for `DELETE` without them.
        if current.is_none() && !normal.is_empty() && !self.has_children(&normal).await? {
            return Err(nothing_below(path));
        }
        let meta = current.as_ref().map(|object| self.file_meta(normal.clone(), object));
        preconditions.check_for(path, meta.as_ref())?;
        self.after_check().await;
        let Some(tag) = current.and_then(|object| object.e_tag) else {
            return self.delete_objects(path, recursive).await;
        };
        let key = self.key(&normal);
        match self.raw.delete_if_tag(key.as_ref(), &tag, path).await {
            Ok(()) => {}
            // Replaced or deleted since the check: the precondition no longer holds.
            Err(RawError::Precondition | RawError::NotFound) => {
                return Err(StorageError::PreconditionFailed {
                    path: path.to_owned(),
                    reason: "the file changed while the request was checked",
                });
            }
            Err(RawError::NotImplemented(words)) => {
                tracing::debug!(%words, "the bucket has no conditional delete; deleting after the check");
                self.store.delete(&key).await.map_err(|e| self.store_error(path, e))?;
            }
            Err(e) => return Err(e.into_storage(path)),
        }
        // The file's name may be a directory too (keys below it): with `recursive`, as
        // `delete_objects`, nothing is left at the name.
        if recursive && self.has_children(&normal).await? {
            self.delete_below(&normal, path).await?;
        }
        Ok(())
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
    pub(super) async fn receive(
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
        // Aborted on the server if this future is dropped before the upload is handed on (a
        // job cancelled or timed out while its outputs upload, tester finding G11).
        let mut unfinished = Unfinished(None);
        let upload = &mut unfinished.0;
        let result = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(aborted)?;
                size += chunk.len() as u64;
                if size > max_bytes {
                    return Err(too_large());
                }
                hasher.update(&chunk);
                match upload {
                    Some(writer) => {
                        writer.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(|e| self.store_error(shown, e))?;
                        writer.put(chunk);
                    }
                    None if first.len() + chunk.len() <= PART_BYTES => first.extend_from_slice(&chunk),
                    None => {
                        let started = self
                            .store
                            .put_multipart_opts(key, PutMultipartOptions::default())
                            .await
                            .map_err(|e| self.store_error(shown, e))?;
                        let mut writer = WriteMultipart::new_with_chunk_size(started, PART_BYTES);
                        writer.put(std::mem::take(&mut first).freeze());
                        writer.put(chunk);
                        *upload = Some(writer);
                    }
                }
            }
            if let Some(writer) = upload.as_mut() {
                // Every full part is on the server (or failed) before commit is offered.
                writer.wait_for_capacity(1).await.map_err(|e| self.store_error(shown, e))?;
            }
            Ok(())
        }
        .await;
        // On an error `unfinished` aborts the upload as it is dropped.
        result?;
        let pending = match unfinished.0.take() {
            Some(writer) => Pending::Multipart(writer),
            None => Pending::Single(first.freeze()),
        };
        Ok(Received { pending, sha256: hex::encode(hasher.finalize()), size })
    }

    /// Copies the object at `from` to `to` (keys), whole; with `create_only`, only when no
    /// object is at `to` ([`S3Storage::copy_if`]: one conditional request).
    pub(super) async fn copy_key(
        &self,
        from: &Key,
        to: &Key,
        shown: &str,
        create_only: bool,
    ) -> Result<(), StorageError> {
        let condition = if create_only { WriteIf::Absent } else { WriteIf::Any };
        self.copy_if(from, to, shown, &condition).await.map_err(|e| match e {
            RawError::Precondition if create_only => StorageError::Exists(shown.to_owned()),
            e => e.into_storage(shown),
        })
    }

    /// Copies the object at `from` to `to` (keys), whole, on `condition` about the object at
    /// `to` (`shown`: the path in messages).
    ///
    /// Without a condition, an object up to [`COPY_MAX_BYTES`](super::COPY_MAX_BYTES) is one
    /// `CopyObject`. A larger one (S3 copies at most 5 GiB in one request), or any with a
    /// condition, is a multipart copy: `UploadPartCopy` of consecutive ranges of at most that
    /// size (`copy_part_bytes`), each pinned to the source's entity tag (a source replaced during
    /// the copy fails it instead of mixing two versions), then a `CompleteMultipartUpload` that
    /// carries the condition (`If-None-Match: *` or `If-Match`), so the bucket checks it and
    /// puts the object in one step. A server that answers 501 to a conditional `If-Match`
    /// completion gets a plain one (the caller's check one request before stands). A failed
    /// copy is aborted.
    ///
    /// # Errors
    /// [`RawError::Precondition`] when the condition does not hold; otherwise as a storage
    /// error.
    pub(super) async fn copy_if(&self, from: &Key, to: &Key, shown: &str, condition: &WriteIf) -> Result<(), RawError> {
        let source = match self.store.head(from).await {
            Ok(source) => source,
            Err(e) => return Err(RawError::Storage(self.store_error(shown, e))),
        };
        if *condition == WriteIf::Any && source.size <= self.copy_part_bytes {
            return self.store.copy(from, to).await.map_err(|e| RawError::Storage(self.store_error(shown, e)));
        }
        let upload = self.raw.create_upload(to.as_ref(), shown).await?;
        let result = async {
            let copy_source = CopySource { key: from.as_ref(), tag: source.e_tag.as_deref() };
            let part_bytes = self.copy_part_bytes.max(1);
            let whole = source.size <= part_bytes;
            let mut parts = Vec::new();
            let mut start = 0;
            loop {
                let end = (start + part_bytes).min(source.size);
                let range = (!whole).then_some(start..end);
                let number = parts.len() + 1;
                let tag = self.raw.copy_part(to.as_ref(), &upload, number, &copy_source, range, shown).await;
                parts.push(tag.map_err(|e| match e {
                    // `x-amz-copy-source-if-match`: the source changed under the copy.
                    RawError::Precondition => RawError::Storage(StorageError::Unavailable {
                        path: shown.to_owned(),
                        source: io::Error::other("the object changed while it was copied"),
                    }),
                    e => e,
                })?);
                start = end;
                if start >= source.size {
                    break;
                }
            }
            match self.raw.complete(to.as_ref(), &upload, &parts, condition, shown).await {
                Err(RawError::NotImplemented(words)) if matches!(condition, WriteIf::Is(_)) => {
                    tracing::debug!(%words, "the bucket has no conditional completion; completing after the check");
                    self.raw.complete(to.as_ref(), &upload, &parts, &WriteIf::Any, shown).await
                }
                other => other,
            }
        }
        .await;
        if result.is_err()
            && let Err(e) = self.raw.abort(to.as_ref(), &upload, shown).await
        {
            tracing::warn!(key = %to, error = ?e, "aborting a failed multipart copy failed; \
                                                   a bucket lifecycle rule removes its parts");
        }
        result
    }

    /// Deletes the object at `key`; one already gone is no error.
    pub(super) async fn delete_key(&self, key: &Key, shown: &str) -> Result<(), StorageError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_error(shown, e)),
        }
    }
}

/// A body received by [`S3Storage::receive`].
pub(super) struct Received {
    pub(super) pending: Pending,
    pub(super) sha256: String,
    pub(super) size: u64,
}

/// An upload received in full: one body, or a multipart upload with every part sent but the
/// last buffered.
pub(super) enum Pending {
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

/// A multipart upload being written: aborted in the background when dropped before it is
/// taken out.
struct Unfinished(Option<WriteMultipart>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(upload) = self.0.take() {
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

    async fn commit(self: Box<Self>) -> Result<PutOutcome, StorageError> {
        self.commit_if(&Preconditions::default()).await
    }

    /// The preconditions are checked against the object there now; the body is then put on
    /// the condition that the object is still that one (`If-Match` its entity tag, or
    /// `If-None-Match: *` when there was none): the bucket makes the check and the write one
    /// step, and a change in between fails the request (412). A body of one part is a
    /// conditional `PUT`; one of several parts (received under a temporary key, as
    /// [`PutOptions::conditional`] asked) is copied into place by a multipart copy completed on
    /// that condition ([`S3Storage::copy_if`]).
    async fn commit_if(mut self: Box<Self>, preconditions: &Preconditions) -> Result<PutOutcome, StorageError> {
        let key = self.storage.key(&self.path);
        let path = self.path.clone();
        // A create-only put is decided by the bucket alone (a conditional request): no check
        // of ours could see a file that appears right after it. It creates, or fails.
        let conditional = !preconditions.is_empty();
        let current = if self.create_only && !conditional { None } else { self.storage.head_key(&path).await? };
        let existed = !self.create_only && current.is_some();
        if conditional {
            let meta = current.as_ref().map(|meta| self.storage.file_meta(path.clone(), meta));
            preconditions.check_for(&path, meta.as_ref())?;
        }
        self.storage.after_check().await;
        let pending = self.pending.take();
        match pending {
            Some(Pending::Single(body)) => {
                let mode = match &current {
                    _ if self.create_only => PutMode::Create,
                    Some(meta) if conditional && meta.e_tag.is_some() => {
                        PutMode::Update(UpdateVersion { e_tag: meta.e_tag.clone(), version: meta.version.clone() })
                    }
                    None if conditional => PutMode::Create,
                    _ => PutMode::Overwrite,
                };
                let options = StorePutOptions { mode, ..StorePutOptions::default() };
                let create_only = self.create_only;
                self.storage.store.put_opts(&key, PutPayload::from(body), options).await.map_err(|e| match e {
                    object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
                        if create_only =>
                    {
                        StorageError::Exists(path.clone())
                    }
                    object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
                        StorageError::PreconditionFailed {
                            path: path.clone(),
                            reason: "the file changed while the request was checked",
                        }
                    }
                    e => self.storage.store_error(&path, e),
                })?;
            }
            Some(Pending::Multipart(upload)) => match self.temp.take() {
                None => {
                    upload.finish().await.map_err(|e| self.storage.store_error(&path, e))?;
                }
                Some(temp) => {
                    let temp_key = self.storage.temp_key(&temp);
                    let condition = match &current {
                        _ if self.create_only => WriteIf::Absent,
                        Some(meta) => match &meta.e_tag {
                            Some(tag) => WriteIf::Is(tag.clone()),
                            // No entity tag to hold it to: the check above stands alone.
                            None => WriteIf::Any,
                        },
                        None => WriteIf::Absent,
                    };
                    let create_only = self.create_only;
                    let published = async {
                        upload.finish().await.map_err(|e| self.storage.store_error(&path, e))?;
                        self.storage.copy_if(&temp_key, &key, &path, &condition).await.map_err(|e| match e {
                            RawError::Precondition if create_only => StorageError::Exists(path.clone()),
                            e => e.into_storage(&path),
                        })
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
        let meta = self.storage.store.head(&key).await.map_err(|e| self.storage.store_error(&path, e))?;
        let meta = self.storage.file_meta(path, &meta);
        Ok(PutOutcome { meta, created: !existed, sha256: self.sha256.clone() })
    }
}

/// What a `DELETE` of `path` answers when no file is there and nothing lies below it: a name
/// ending in `/` asks for a directory, and is no file path (422 `not-a-file`, as on a disk,
/// tester finding K4: a bucket answered 404, a disk 422); any other name is not found.
fn nothing_below(path: &str) -> StorageError {
    if path.ends_with('/') {
        crate::storage::invalid(path, &PathProblem::NotAFile)
    } else {
        StorageError::NotFound(path.to_owned())
    }
}

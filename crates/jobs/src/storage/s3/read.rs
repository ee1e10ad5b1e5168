//! Reading a bucket: heads, opening a file ([`S3File`], its ranged reads conditioned on the
//! entity tag seen at open), listing by prefix, and whether a path is a directory.

use std::fmt;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt as _};

use super::{S3Storage, store_error};
use crate::storage::{ByteStream, FileMeta, ListPage, StorageError, StoredFile, TEMP_AREA, check_prefix};

impl S3Storage {
    /// The metadata of the object `meta`, as the file at `path`.
    pub(super) fn file_meta(&self, path: String, meta: &ObjectMeta) -> FileMeta {
        let modified = SystemTime::from(meta.last_modified);
        let etag = match &meta.e_tag {
            Some(tag) if tag.starts_with('"') || tag.starts_with("W/") => tag.clone(),
            Some(tag) => format!("\"{tag}\""),
            None => format!("\"{:x}-{:x}\"", meta.size, meta.last_modified.timestamp_nanos_opt().unwrap_or(0)),
        };
        FileMeta { path, size: meta.size, modified, etag }
    }

    /// Whether some key starts with `normal/` (a directory, in a bucket).
    pub(super) async fn has_children(&self, normal: &str) -> Result<bool, StorageError> {
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
    pub(super) async fn head_key(&self, normal: &str) -> Result<Option<ObjectMeta>, StorageError> {
        match self.store.head(&self.key(normal)).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(normal, e)),
        }
    }

    /// [`Storage::open`](crate::storage::Storage::open).
    pub(super) async fn open_object(&self, path: &str) -> Result<Box<dyn StoredFile>, StorageError> {
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

    /// [`Storage::list`](crate::storage::Storage::list).
    pub(super) async fn list_objects(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StorageError> {
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
            if self.reserved(relative) {
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

    fn list_page(&self, files: Vec<FileMeta>, limit: usize) -> ListPage {
        let mut files = files;
        let next_after = (files.len() > limit).then(|| files[limit - 1].path.clone());
        files.truncate(limit);
        ListPage { files, next_after }
    }
}

/// An object opened by [`Storage::open`](crate::storage::Storage::open): reads are conditioned on its entity tag.
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

//! Reading a bucket: heads, opening a file ([`S3File`], its ranged reads conditioned on the
//! entity tag seen at open), listing by prefix, and whether a path is a directory.

use std::fmt;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use ffmpeg_core::sandbox::PathProblem;
use futures_util::TryStreamExt as _;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt as _};

use super::S3Storage;
use super::keys::{Entry, warn_skipped};
use crate::storage::{ByteStream, FileMeta, ListPage, StorageError, StoredFile, check_prefix};

impl S3Storage {
    /// The metadata of the object `meta`, as the file at `path`.
    pub(super) fn file_meta(&self, path: String, meta: &ObjectMeta) -> FileMeta {
        meta_of(path, meta.size, SystemTime::from(meta.last_modified), meta.e_tag.as_deref())
    }

    /// Whether some key starts with `normal/` (a directory, in a bucket: files, a folder
    /// marker, or keys of other tools below it).
    pub(super) async fn has_children(&self, normal: &str) -> Result<bool, StorageError> {
        self.any_key(self.dir_prefix(normal), normal).await
    }

    /// `HEAD` of `normal`: `None` when no such object.
    pub(super) async fn head_key(&self, normal: &str) -> Result<Option<ObjectMeta>, StorageError> {
        match self.store.head(&self.key(normal)).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.store_error(normal, e)),
        }
    }

    /// [`Storage::open`](crate::storage::Storage::open).
    pub(super) async fn open_object(&self, path: &str) -> Result<Box<dyn StoredFile>, StorageError> {
        let normal = self.normal_async(path, false).await?;
        // A name ending in `/` asks for a directory: it is one only when keys lie below it;
        // else it is no file path (a file, or nothing), as on a disk (tester finding K4: the
        // answer said "a directory" for any path and suggested a recursive delete).
        if normal.is_empty() {
            return Err(StorageError::IsADirectory(path.to_owned()));
        }
        if path.ends_with('/') {
            return Err(match self.has_children(&normal).await? {
                true => StorageError::IsADirectory(path.to_owned()),
                false => crate::storage::invalid(path, &PathProblem::NotAFile),
            });
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
        // S3 lists keys after `start-after` itself: a later page starts there. Every key is
        // read as the bucket holds it; one that no path names is skipped (`keys.rs`).
        let start_after = after.filter(|after| !after.is_empty()).map(|after| self.key_text(after));
        let mut pages = self.list_keys(self.dir_prefix(&base), start_after, prefix);
        let mut files = Vec::new();
        'pages: while let Some(page) = pages.next_page().await? {
            for listed in page {
                let Some(relative) = self.relative(&listed.key) else { continue };
                if after.is_some_and(|after| relative <= after) {
                    continue;
                }
                if !relative.starts_with(prefix) {
                    // Keys come in byte order: past the prefix's range nothing more matches.
                    if relative > prefix {
                        break 'pages;
                    }
                    continue;
                }
                match self.entry(&listed.key) {
                    Entry::File(path) => {
                        files.push(meta_of(path.to_owned(), listed.size, listed.modified, listed.e_tag.as_deref()));
                    }
                    Entry::Foreign(_, why) => warn_skipped(&listed.key, why),
                    Entry::Marker(_) | Entry::Reserved | Entry::Outside => {}
                }
                if files.len() > limit {
                    break 'pages;
                }
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

/// The metadata of an object of `size` bytes modified at `modified` with the entity tag
/// `e_tag`, as the file at `path`.
pub(super) fn meta_of(path: String, size: u64, modified: SystemTime, e_tag: Option<&str>) -> FileMeta {
    let etag = match e_tag {
        Some(tag) if tag.starts_with('"') || tag.starts_with("W/") => tag.to_owned(),
        Some(tag) => format!("\"{tag}\""),
        None => {
            let nanos = modified.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            format!("\"{size:x}-{nanos:x}\"")
        }
    };
    FileMeta { path, size, modified, etag }
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

//! [`LocalStorage`]: files in the data directory, every path resolved by the sandbox.
//!
//! Uploads go to a temporary file in the target's own directory (`.ffmpeg-worker-upload-*`,
//! never listed), are hashed and written on one blocking thread fed through a bounded channel
//! (memory stays bounded whatever the file's size), `fsync`ed, and renamed over the target
//! at commit (`renameat2(RENAME_NOREPLACE)` or `link` for a create-only put, so a file that
//! appeared meanwhile is never replaced). A failed, aborted or dropped upload removes its
//! temporary file and the directories it created. An upload holds a lock (`flock`) on its
//! temporary file until then, so that [`LocalStorage::remove_stale_uploads`] (at start-up)
//! removes only a crash's leftovers. Names starting with the temporary prefix are refused as
//! paths. Every other file-system call runs on tokio's blocking pool.

use std::fs;
use std::io::{self, Seek as _, SeekFrom, Write as _};
use std::ops::Range;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use ffmpeg_core::sandbox::{PathProblem, ResolvedPath, Sandbox};
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

use super::{
    ByteStream, FileMeta, ListPage, NameLimits, Preconditions, PutOptions, StagedPut, Storage, StorageError,
    StoredFile, check_prefix, invalid, too_long,
};
use crate::service::blocking;

mod upload;

use upload::{EarlyFlush, LocalStaged, create_parents, lock_dir};

/// Prefix of the temporary files uploads are written to before their rename; never listed.
pub const UPLOAD_TEMP_PREFIX: &str = ".ffmpeg-worker-upload-";
/// Bytes per chunk when streaming a file out.
const READ_CHUNK: usize = 256 * 1024;
/// Batches buffered between the request and the writing (and hashing) thread: with 1 MiB
/// batches, 8 let a 1 GiB upload grow the server by 13-20 MiB (`cargo xtask bench files`).
const WRITE_QUEUE: usize = 2;
/// Bytes of body gathered into one batch for the writing thread.
const BATCH: usize = 1024 * 1024;
/// Most chunks in one batch, however small they are (a chunked body of tiny chunks would
/// otherwise hold a `Bytes` handle per few bytes received).
const BATCH_CHUNKS: usize = 1024;
/// Bytes an upload writes between two early flushes to disk ([`EarlyFlush`]).
const FLUSH_EVERY: usize = 32 * 1024 * 1024;

/// The data directory as a [`Storage`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    sandbox: Arc<Sandbox>,
}

impl LocalStorage {
    /// Files under `sandbox`'s data directory, with its rules (and its denied paths).
    pub fn new(sandbox: Arc<Sandbox>) -> LocalStorage {
        LocalStorage { sandbox }
    }

    /// Resolves `path` as a file path (blocking).
    fn resolve_file(&self, path: &str) -> Result<ResolvedPath, StorageError> {
        check_lengths(self.sandbox.root(), path)?;
        check_not_temp(path)?;
        match self.sandbox.resolve_file_path(path) {
            Ok(resolved) => Ok(resolved),
            Err(PathProblem::NotAFile) if self.is_dir(path) => Err(StorageError::IsADirectory(path.to_owned())),
            Err(PathProblem::Denied) => Err(StorageError::Reserved(path.to_owned())),
            Err(problem) => Err(invalid(path, &problem)),
        }
    }

    /// The directory entry that `path` names, which `resolved` (the sandbox's resolution of
    /// `path`, through every symlink) may not be: when `path`'s last component is a symlink,
    /// that link in its (resolved) parent directory. Deleting or replacing a file acts on the
    /// link itself, never on what it points to (blocking).
    fn entry(&self, path: &str, resolved: &Path) -> PathBuf {
        self.symlink_entry(path).unwrap_or_else(|| resolved.to_path_buf())
    }

    /// `path`'s last component in its (resolved) parent directory, when that entry is a
    /// symbolic link (blocking).
    fn symlink_entry(&self, path: &str) -> Option<PathBuf> {
        let path = path.trim_end_matches('/');
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        if matches!(name, "" | "." | "..") {
            return None;
        }
        let entry = self.sandbox.resolve_directory_path(parent).ok()?.as_path().join(name);
        is_symlink(&entry).then_some(entry)
    }

    /// `path`'s last component when it is a symbolic link in a directory of the data
    /// directory, whatever the link leads to (out of the data directory, or nowhere): a
    /// DELETE removes such a link itself, as the error of a job refused because of one tells
    /// the user to. Never a reserved path or a temporary upload name (blocking).
    fn link_entry(&self, path: &str) -> Option<PathBuf> {
        check_lengths(self.sandbox.root(), path).ok()?;
        check_not_temp(path).ok()?;
        if path.contains('\0') {
            return None;
        }
        self.symlink_entry(path).filter(|entry| !self.reserved(entry))
    }

    /// Where an upload to `path` goes (blocking): the path in normal form (no `.`, `..` or
    /// `//`, as listings and reads report it), and the directory entry the upload is renamed
    /// to. When the path's last name is a symbolic link, that is the link itself: the upload
    /// replaces the link, never the file it points to. So it does for a link that leads
    /// nowhere inside the data directory (as `DELETE` removes such a link): the link goes,
    /// and nothing is created where it pointed. A path that leads through such a link to a
    /// directory is [`StorageError::DanglingLink`], as for a read.
    fn put_target(&self, path: &str) -> Result<(String, PathBuf), StorageError> {
        let escapes = PathProblem::Escapes.rule().as_str();
        match self.resolve_file(path) {
            Ok(resolved) => {
                Ok((resolved.relative().to_string_lossy().into_owned(), self.entry(path, resolved.as_path())))
            }
            Err(e) if matches!(&e, StorageError::InvalidPath { rule, .. } if *rule == escapes) => {
                let Some(link) = self.sandbox.dangling_link_inside(path) else { return Err(e) };
                match self.symlink_entry(path) {
                    Some(entry) if entry.strip_prefix(self.sandbox.root()).is_ok_and(|own| own == link.as_path()) => {
                        Ok((link.to_string_lossy().into_owned(), entry))
                    }
                    _ => Err(StorageError::DanglingLink { path: path.to_owned(), link: link.display().to_string() }),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Whether `path` resolves to an existing directory (blocking).
    fn is_dir(&self, path: &str) -> bool {
        self.sandbox.resolve_directory_path(path).is_ok_and(|dir| dir.as_path().is_dir())
    }

    fn reserved(&self, path: &Path) -> bool {
        self.sandbox.denied().iter().any(|denied| denied.starts_with(path) || path.starts_with(denied))
    }
}

/// [`Storage::check_writable_paths`] in the directory `root` (a data directory, or a run's
/// root), blocking: the same answers a bucket gives, before anything is written (the file
/// system would refuse such a write too, but later, and in words that name no argument). The
/// directories above `files` and `dirs` (and `dirs` themselves) must not be files, nearest
/// the root first; then no path of `files` may be a directory. What cannot be looked at (a
/// directory not there yet) is no conflict.
///
/// # Errors
/// [`StorageError::NotADirectory`], [`StorageError::IsADirectory`].
pub(crate) fn check_writable_in(root: &Path, files: &[String], dirs: &[String]) -> Result<(), StorageError> {
    let above = |path: &str| {
        let mut rest = path.to_owned();
        std::iter::from_fn(move || {
            let (up, _) = rest.rsplit_once('/')?;
            rest = up.to_owned();
            Some(rest.clone())
        })
        .collect::<Vec<_>>()
    };
    // Each directory that must not be a file, with the first path that needs it.
    let mut needed: std::collections::BTreeMap<String, &str> = std::collections::BTreeMap::new();
    for file in files {
        for dir in above(file) {
            needed.entry(dir).or_insert(file);
        }
    }
    for dir in dirs.iter().filter(|dir| !dir.is_empty()) {
        needed.entry(dir.clone()).or_insert(dir);
        for up in above(dir) {
            needed.entry(up).or_insert(dir);
        }
    }
    for (dir, path) in needed {
        if fs::metadata(root.join(&dir)).is_ok_and(|meta| !meta.is_dir()) {
            return Err(StorageError::NotADirectory { path: path.to_owned(), parent: dir });
        }
    }
    for file in files {
        if fs::metadata(root.join(file)).is_ok_and(|meta| meta.is_dir()) {
            return Err(StorageError::IsADirectory(file.clone()));
        }
    }
    Ok(())
}

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink())
}

/// Refuses a path the kernel would refuse ([`NameLimits::data_directory`]): a name over
/// `NAME_MAX` bytes, a path (under the data directory) over `PATH_MAX`.
fn check_lengths(root: &Path, path: &str) -> Result<(), StorageError> {
    NameLimits::data_directory(root).check(path).map_err(|problem| too_long(path, &problem))
}

/// Refuses a path with a name that starts with [`UPLOAD_TEMP_PREFIX`]: such names are the
/// uploads' temporary files, never listed, and removed at start-up when left by a crash
/// ([`LocalStorage::remove_stale_uploads`]); a client's file by that name would vanish.
pub(super) fn check_not_temp(path: &str) -> Result<(), StorageError> {
    if path.split('/').any(|name| name.starts_with(UPLOAD_TEMP_PREFIX)) {
        return Err(StorageError::InvalidPath {
            path: path.to_owned(),
            problem: format!(
                "names starting with `{UPLOAD_TEMP_PREFIX}` are reserved for the server's temporary upload files"
            ),
            rule: PathProblem::Denied.rule().as_str(),
        });
    }
    Ok(())
}

/// The metadata of an open file or a path, as the files API reports it.
fn file_meta(path: String, meta: &fs::Metadata) -> FileMeta {
    let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
    let nanos = modified.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    // A replaced file is a new inode (uploads rename), an overwritten one a new mtime.
    let etag = format!("\"{:x}-{:x}-{nanos:x}\"", meta.ino(), meta.len());
    FileMeta { path, size: meta.len(), modified, etag }
}

fn is_no_space(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// Maps an I/O error while writing `path` to the storage error it is.
fn write_error(path: &str, source: io::Error) -> StorageError {
    if is_no_space(&source) {
        StorageError::InsufficientStorage { path: path.to_owned(), source }
    } else {
        StorageError::Io { path: path.to_owned(), source }
    }
}

/// Re-raises the panic of a blocking task (there is no error to turn it into).
fn resume(e: tokio::task::JoinError) -> ! {
    std::panic::resume_unwind(e.try_into_panic().unwrap_or_else(|e| Box::new(e.to_string())))
}

/// The relative form of `absolute` for messages (the data directory is not shown).
fn shown(root: &Path, absolute: &Path) -> String {
    absolute.strip_prefix(root).unwrap_or(absolute).to_string_lossy().into_owned()
}

/// An open file of [`LocalStorage::open`].
#[derive(Debug)]
struct LocalFile {
    file: fs::File,
    meta: FileMeta,
}

impl StoredFile for LocalFile {
    fn meta(&self) -> &FileMeta {
        &self.meta
    }

    fn try_clone(&self) -> io::Result<Box<dyn StoredFile>> {
        Ok(Box::new(LocalFile { file: self.file.try_clone()?, meta: self.meta.clone() }))
    }

    fn read(self: Box<Self>, range: Range<u64>) -> ByteStream {
        let LocalFile { mut file, .. } = *self;
        // `lseek` does not block on I/O.
        if let Err(e) = file.seek(SeekFrom::Start(range.start)) {
            return Box::pin(futures_util::stream::once(async move { Err(e) }));
        }
        let len = range.end.saturating_sub(range.start);
        let reader = tokio::fs::File::from_std(file).take(len);
        Box::pin(tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK))
    }
}

#[async_trait]
impl Storage for LocalStorage {
    fn name_limits(&self) -> NameLimits {
        NameLimits::data_directory(self.sandbox.root())
    }

    async fn check_path(&self, path: &str) -> Result<String, StorageError> {
        let this = self.clone();
        let path = path.to_owned();
        blocking(move || {
            let resolved = match this.resolve_file(&path) {
                Ok(resolved) => resolved,
                Err(StorageError::IsADirectory(_)) => {
                    this.sandbox.resolve_directory_path(&path).map_err(|problem| invalid(&path, &problem))?
                }
                // A link leading out of the data directory, or nowhere, is named by its own
                // path: no job can use what it points to, and only a DELETE acts on it (the link).
                Err(e @ StorageError::InvalidPath { .. }) => {
                    let Some(link) = this.link_entry(&path) else {
                        // Through a link that leads nowhere inside the data directory: named.
                        return Err(match this.sandbox.dangling_link_inside(&path) {
                            Some(link) => StorageError::DanglingLink { path, link: link.display().to_string() },
                            None => e,
                        });
                    };
                    let relative = link.strip_prefix(this.sandbox.root()).unwrap_or(&link);
                    return Ok(relative.to_string_lossy().into_owned());
                }
                Err(e) => return Err(e),
            };
            Ok(resolved.relative().to_string_lossy().into_owned())
        })
        .await
    }

    async fn put(
        &self,
        path: &str,
        mut body: ByteStream,
        options: PutOptions,
    ) -> Result<Box<dyn StagedPut>, StorageError> {
        let this = self.clone();
        let owned = path.to_owned();
        let (normal, target, dirs, temp) = blocking(move || {
            let (normal, target) = this.put_target(&owned)?;
            let dirs = create_parents(this.sandbox.root(), &owned, &target)?;
            let dir = target.parent().unwrap_or(this.sandbox.root());
            // Readable like the files ffmpeg writes (0644 before the umask), not tempfile's 0600.
            let temp = tempfile::Builder::new()
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .prefix(UPLOAD_TEMP_PREFIX)
                .tempfile_in(dir)
                .map_err(|e| write_error(&owned, e))?;
            // Held until the upload is committed or dropped: a live upload's temporary file is
            // never taken for a crash's leftover (`remove_stale_uploads`, by another process
            // sharing the data directory too).
            temp.as_file().try_lock().map_err(|e| StorageError::Io { path: owned.clone(), source: e.into() })?;
            Ok::<_, StorageError>((normal, target, dirs, temp))
        })
        .await?;

        // One blocking task beside the request hashes and writes the body: each chunk is
        // hashed (SHA-256) and then written to the temporary file while it is still in the
        // CPU's cache, so the write's copy into the page cache reads it from there (a second
        // thread hashing beside the writer read every byte from memory once more: 9 % more
        // server CPU per upload, `docs/benchmarks.md`). It has what it wrote flushed to disk as
        // it goes, so that the final `fsync` finds little left. The request sends it batches of
        // about `BATCH` bytes (fewer wake-ups than one per network read). The task owns the
        // temporary file (and the created directories, dropped after it): if this future is
        // dropped half-way, the channel closes, the task ends, and both are removed.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(WRITE_QUEUE);
        let writer = tokio::task::spawn_blocking(move || {
            let mut temp = temp;
            let mut hasher = Sha256::new();
            let result = (|| {
                let mut flush = EarlyFlush::default();
                let mut unflushed = 0usize;
                while let Some(batch) = rx.blocking_recv() {
                    for chunk in &batch {
                        hasher.update(chunk);
                        temp.as_file_mut().write_all(chunk)?;
                        unflushed += chunk.len();
                    }
                    if unflushed >= FLUSH_EVERY {
                        flush.start(temp.as_file())?;
                        unflushed = 0;
                    }
                }
                flush.wait()?;
                // Durable before it is renamed into place: a crash after the answer never
                // leaves the new name holding a part of the file (ext4 may commit the rename
                // before the data).
                temp.as_file().sync_all()
            })();
            (result, temp, dirs, hex::encode(hasher.finalize()))
        });
        let mut size: u64 = 0;
        let mut failure = None;
        let mut batch = Vec::new();
        let mut batched = 0usize;
        // A closed channel: the writer failed (its error is below).
        let send = async |batch: Vec<Bytes>| tx.send(batch).await.is_ok();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    size += chunk.len() as u64;
                    if size > options.max_bytes {
                        failure = Some(StorageError::TooLarge { max_bytes: options.max_bytes });
                        break;
                    }
                    batched += chunk.len();
                    batch.push(chunk);
                    if batched >= BATCH || batch.len() >= BATCH_CHUNKS {
                        batched = 0;
                        if !send(std::mem::take(&mut batch)).await {
                            break;
                        }
                    }
                }
                Err(source) => {
                    failure = Some(StorageError::Aborted { path: path.to_owned(), source });
                    break;
                }
            }
        }
        if failure.is_none() && !batch.is_empty() {
            send(batch).await;
        }
        drop(tx);
        let (result, temp, dirs, sha256) = writer.await.unwrap_or_else(|e| resume(e));
        if let Some(failure) = failure {
            drop(temp);
            drop(dirs);
            return Err(failure);
        }
        if let Err(e) = result {
            drop(temp);
            drop(dirs);
            return Err(write_error(path, e));
        }
        Ok(Box::new(LocalStaged {
            path: path.to_owned(),
            normal,
            target,
            temp,
            dirs,
            sha256,
            size,
            create_only: options.create_only,
        }))
    }

    async fn open(&self, path: &str) -> Result<Box<dyn StoredFile>, StorageError> {
        let this = self.clone();
        let path = path.to_owned();
        blocking(move || {
            let resolved = this.resolve_file(&path).map_err(|e| match e {
                // Through a link that leads nowhere inside the data directory: nothing is
                // there to read, and nothing escapes.
                StorageError::InvalidPath { rule, .. } if rule == PathProblem::Escapes.rule().as_str() => {
                    match this.sandbox.dangling_link_inside(&path) {
                        Some(link) => {
                            StorageError::DanglingLink { path: path.clone(), link: link.display().to_string() }
                        }
                        None => e,
                    }
                }
                e => e,
            })?;
            let file = fs::File::open(resolved.as_path()).map_err(|source| match source.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => StorageError::NotFound(path.clone()),
                _ => StorageError::Io { path: path.clone(), source },
            })?;
            let meta = file.metadata().map_err(|source| StorageError::Io { path: path.clone(), source })?;
            if meta.is_dir() {
                return Err(StorageError::IsADirectory(path));
            }
            if !meta.is_file() {
                return Err(StorageError::NotFound(path));
            }
            let relative = resolved.relative().to_string_lossy().into_owned();
            Ok(Box::new(LocalFile { file, meta: file_meta(relative, &meta) }) as Box<dyn StoredFile>)
        })
        .await
    }

    async fn head(&self, path: &str) -> Result<FileMeta, StorageError> {
        Ok(self.open(path).await?.meta().clone())
    }

    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, StorageError> {
        let this = self.clone();
        let prefix = prefix.to_owned();
        let after = after.map(str::to_owned);
        blocking(move || this.list_blocking(&prefix, after.as_deref(), limit)).await
    }

    async fn check_writable_paths(&self, files: &[String], dirs: &[String]) -> Result<(), StorageError> {
        let (root, files, dirs) = (self.sandbox.root().to_owned(), files.to_vec(), dirs.to_vec());
        blocking(move || check_writable_in(&root, &files, &dirs)).await
    }

    async fn is_directory(&self, path: &str) -> Result<bool, StorageError> {
        let this = self.clone();
        let path = path.to_owned();
        blocking(move || {
            check_lengths(this.sandbox.root(), &path)?;
            check_not_temp(&path)?;
            Ok(this.is_dir(&path))
        })
        .await
    }

    async fn delete(&self, path: &str, recursive: bool) -> Result<(), StorageError> {
        let this = self.clone();
        let path = path.to_owned();
        blocking(move || {
            let remove = |file: &Path| {
                fs::remove_file(file).map_err(|source| match source.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => StorageError::NotFound(path.clone()),
                    _ => StorageError::Io { path: path.clone(), source },
                })
            };
            match this.resolve_file(&path) {
                // A symlink is removed itself, never the file it points to.
                Ok(resolved) => return remove(&this.entry(&path, resolved.as_path())),
                Err(StorageError::IsADirectory(_)) => {
                    // A symlink to a directory too: the link goes, never the tree behind it.
                    if let Ok(dir) = this.sandbox.resolve_directory_path(&path) {
                        let entry = this.entry(&path, dir.as_path());
                        if entry != dir.as_path() {
                            return remove(&entry);
                        }
                    }
                    if !recursive {
                        return Err(StorageError::IsADirectory(path));
                    }
                }
                // A link leading out of the data directory, or nowhere: the link goes, and
                // nothing it points to is touched.
                Err(e @ StorageError::InvalidPath { .. }) => {
                    return this.link_entry(&path).map_or(Err(e), |link| remove(&link));
                }
                Err(e) => return Err(e),
            }
            let dir = this.sandbox.resolve_directory_path(&path).map_err(|problem| invalid(&path, &problem))?;
            if dir.as_path() == this.sandbox.root() || this.reserved(dir.as_path()) {
                return Err(StorageError::Reserved(path));
            }
            fs::remove_dir_all(dir.as_path()).map_err(|source| StorageError::Io { path, source })
        })
        .await
    }

    /// A file is checked and removed as one step, under the lock on its directory that uploads
    /// take to rename ([`lock_dir`]); anything else (a directory, a link leading out) is no
    /// file for the preconditions, then deleted as without them.
    async fn delete_if(&self, path: &str, recursive: bool, preconditions: &Preconditions) -> Result<(), StorageError> {
        if preconditions.is_empty() {
            return self.delete(path, recursive).await;
        }
        let (this, owned, preconditions) = (self.clone(), path.to_owned(), preconditions.clone());
        let done = blocking(move || {
            let path = owned;
            let Ok(resolved) = this.resolve_file(&path) else {
                preconditions.check_for(&path, None)?;
                return Ok(false);
            };
            let entry = this.entry(&path, resolved.as_path());
            let _locked = lock_dir(entry.parent().unwrap_or(this.sandbox.root()))
                .map_err(|source| StorageError::Io { path: path.clone(), source })?;
            let current = match fs::metadata(&entry) {
                Ok(meta) if meta.is_file() => file_meta(resolved.relative().to_string_lossy().into_owned(), &meta),
                Ok(_) => {
                    preconditions.check_for(&path, None)?;
                    return Ok(false);
                }
                Err(_) => return Err(StorageError::NotFound(path)),
            };
            preconditions.check_for(&path, Some(&current))?;
            fs::remove_file(&entry).map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => StorageError::NotFound(path.clone()),
                _ => StorageError::Io { path: path.clone(), source },
            })?;
            Ok(true)
        })
        .await?;
        if done { Ok(()) } else { self.delete(path, recursive).await }
    }
}

impl LocalStorage {
    fn list_blocking(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, StorageError> {
        let root = self.sandbox.root();
        // A prefix is refused by the rules a path is refused by: absolute (`/etc`), escaping
        // (`../`), NUL. Otherwise it is a plain text prefix: one that names nothing matches
        // nothing.
        check_prefix(prefix)?;
        // The directory holding every match: the prefix up to its last `/`.
        let base = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        if !base.is_empty() {
            check_lengths(root, base)?;
        }
        let dir = match self.sandbox.resolve_directory_path(base) {
            Ok(dir) => dir,
            // A prefix whose directory part is a file, or is reserved, matches nothing.
            Err(PathProblem::NotADirectory | PathProblem::Denied) => return Ok(ListPage::default()),
            Err(problem) => return Err(invalid(prefix, &problem)),
        };
        if !dir.as_path().is_dir() {
            return Ok(ListPage::default());
        }
        // Paths are listed in normal form (no `.`, `..` or `//`): a prefix matches as written.
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(dir.as_path()).follow_links(false) {
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_file() {
                continue;
            }
            if entry.file_name().to_str().is_some_and(|n| n.starts_with(UPLOAD_TEMP_PREFIX)) {
                continue;
            }
            let Some(relative) = entry.path().strip_prefix(root).ok().and_then(Path::to_str) else { continue };
            if !relative.starts_with(prefix) || after.is_some_and(|after| relative <= after) {
                continue;
            }
            if self.reserved(entry.path()) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            files.push(file_meta(relative.to_owned(), &meta));
        }
        files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let limit = limit.max(1);
        let next_after = (files.len() > limit).then(|| files[limit - 1].path.clone());
        files.truncate(limit);
        Ok(ListPage { files, next_after })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn set_age(path: &Path, seconds: u64) {
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(seconds);
        fs::File::options().write(true).open(path).unwrap().set_modified(old).unwrap();
    }

    /// A body of many batches, in chunks of every size (a run of tiny ones longer than a
    /// batch's chunk limit, others larger than a batch), is stored and hashed whole, in order;
    /// replacing it leaves the old file readable to whoever had it open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_of_many_batches_is_stored_and_hashed_in_order_and_replaces_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(Arc::new(Sandbox::new(dir.path()).unwrap()));
        let content: Vec<u8> = (0..5 * BATCH + 12_345).map(|i| (i * 7 % 251) as u8).collect();
        let mut sizes = vec![1; BATCH_CHUNKS + 500];
        sizes.extend([3 * BATCH / 2, 100, 64 * 1024]);
        let mut chunks = Vec::new();
        let mut at = 0;
        for size in sizes.iter().cycle() {
            if at == content.len() {
                break;
            }
            let end = (at + size).min(content.len());
            chunks.push(Ok(Bytes::copy_from_slice(&content[at..end])));
            at = end;
        }
        let options = PutOptions { create_only: false, max_bytes: u64::MAX, conditional: false };
        let put = async |body: Vec<io::Result<Bytes>>| {
            let body: ByteStream = Box::pin(futures_util::stream::iter(body));
            storage.put("a/b.bin", body, options).await.unwrap().commit().await.unwrap()
        };
        let first = put(vec![Ok(Bytes::from_static(b"the old file"))]).await;
        assert!(first.created);
        let mut old = fs::File::open(dir.path().join("a/b.bin")).unwrap();

        let stored = put(chunks).await;
        assert!(!stored.created);
        assert_eq!(stored.meta.size, content.len() as u64);
        assert_eq!(stored.sha256, hex::encode(Sha256::digest(&content)));
        assert_eq!(fs::read(dir.path().join("a/b.bin")).unwrap(), content);
        let mut was = String::new();
        std::io::Read::read_to_string(&mut old, &mut was).unwrap();
        assert_eq!(was, "the old file");
        let names: Vec<_> = fs::read_dir(dir.path().join("a")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["b.bin"]);
    }

    /// A crash's leftovers go; live uploads (locked, or an instant old), other files, links
    /// and reserved paths stay.
    #[test]
    fn stale_uploads_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let mut sandbox = Sandbox::new(dir.path()).unwrap();
        sandbox.deny("db");
        let root = sandbox.root().to_owned();
        let storage = LocalStorage::new(Arc::new(sandbox));
        let temp = |path: &str| root.join(path);
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(root.join("db")).unwrap();
        let stale = [".ffmpeg-worker-upload-1", "a/b/.ffmpeg-worker-upload-2", "a/.ffmpeg-worker-upload-empty"];
        for path in stale {
            fs::write(temp(path), if path.ends_with("empty") { "" } else { "half an upload" }).unwrap();
            set_age(&temp(path), 60);
        }
        // A live upload of another process: locked.
        fs::write(temp("a/.ffmpeg-worker-upload-live"), "being written").unwrap();
        let live = fs::File::open(temp("a/.ffmpeg-worker-upload-live")).unwrap();
        live.lock().unwrap();
        // Created an instant ago, not locked yet.
        fs::write(temp("a/b/.ffmpeg-worker-upload-new"), "").unwrap();
        // Not temporary files, or not to be touched.
        fs::write(temp("a/clip.mp4"), "x").unwrap();
        fs::write(temp("db/.ffmpeg-worker-upload-9"), "x").unwrap();
        fs::write(outside.path().join("target"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("target"), temp("a/.ffmpeg-worker-upload-link")).unwrap();

        let mut removed = storage.remove_stale_uploads();
        removed.sort();
        let mut expected = stale.map(str::to_owned).to_vec();
        expected.sort();
        assert_eq!(removed, expected);
        for path in stale {
            assert!(!temp(path).exists(), "{path}");
        }
        for kept in [
            "a/.ffmpeg-worker-upload-live",
            "a/b/.ffmpeg-worker-upload-new",
            "a/clip.mp4",
            "db/.ffmpeg-worker-upload-9",
            "a/.ffmpeg-worker-upload-link",
        ] {
            assert!(fs::symlink_metadata(temp(kept)).is_ok(), "{kept} kept");
        }
        assert!(outside.path().join("target").exists());
        drop(live);
        // Unlocked, it is a leftover too.
        assert_eq!(storage.remove_stale_uploads(), ["a/.ffmpeg-worker-upload-live"]);
    }
}

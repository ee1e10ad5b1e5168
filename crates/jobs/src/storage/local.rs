//! [`LocalStorage`]: files in the data directory, every path resolved by the sandbox.
//!
//! Uploads go to a temporary file in the target's own directory (`.ffmpeg-worker-upload-*`,
//! never listed), are written and hashed on a blocking thread fed through a bounded channel
//! (memory stays bounded whatever the file's size), `fsync`ed, and renamed over the target
//! at commit (`renameat2(RENAME_NOREPLACE)` or `link` for a create-only put, so a file that
//! appeared meanwhile is never replaced). A failed, aborted or dropped upload removes its
//! temporary file and the directories it created. Every other file-system call runs on
//! tokio's blocking pool.

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

use super::{ByteStream, FileMeta, ListPage, PutOptions, PutOutcome, StagedPut, Storage, StorageError, StoredFile};
use crate::service::blocking;

/// Prefix of the temporary files uploads are written to before their rename; never listed.
pub const UPLOAD_TEMP_PREFIX: &str = ".ffmpeg-worker-upload-";
/// Longest file name (one path component), in bytes (`NAME_MAX`).
const NAME_MAX: usize = 255;
/// Longest absolute path, in bytes, without the terminating NUL (`PATH_MAX` - 1).
const PATH_MAX: usize = 4095;
/// Bytes per chunk when streaming a file out.
const READ_CHUNK: usize = 256 * 1024;
/// Body chunks buffered between the request and the writing thread.
const WRITE_QUEUE: usize = 16;

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
        let path = path.trim_end_matches('/');
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        if matches!(name, "" | "." | "..") {
            return resolved.to_path_buf();
        }
        match self.sandbox.resolve_directory_path(parent) {
            Ok(dir) if is_symlink(&dir.as_path().join(name)) => dir.as_path().join(name),
            _ => resolved.to_path_buf(),
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

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink())
}

fn invalid(path: &str, problem: &PathProblem) -> StorageError {
    StorageError::InvalidPath { path: path.to_owned(), problem: problem.to_string(), rule: problem.rule().as_str() }
}

/// Refuses a path the kernel would refuse: a name over `NAME_MAX` bytes, a path (under the
/// data directory) over `PATH_MAX`.
fn check_lengths(root: &Path, path: &str) -> Result<(), StorageError> {
    let too_long =
        |problem: String| StorageError::InvalidPath { path: path.to_owned(), problem, rule: "name-too-long" };
    if let Some(name) = path.split('/').find(|name| name.len() > NAME_MAX) {
        return Err(too_long(format!("a file name is {} bytes; at most {NAME_MAX} are possible", name.len())));
    }
    let total = root.as_os_str().len() + 1 + path.len();
    if total > PATH_MAX {
        return Err(too_long(format!(
            "the path is {total} bytes with the data directory; at most {PATH_MAX} are possible"
        )));
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

/// Directories an upload created, removed again (when empty) unless the upload commits.
#[derive(Debug, Default)]
struct CreatedDirs(Vec<PathBuf>);

impl CreatedDirs {
    fn disarm(&mut self) {
        self.0.clear();
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        // Deepest first; a directory another upload has put a file in meanwhile stays.
        for dir in self.0.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Creates the missing directories above `target` (blocking), recording which.
fn create_parents(root: &Path, path: &str, target: &Path) -> Result<CreatedDirs, StorageError> {
    let mut created = CreatedDirs::default();
    let Some(parent) = target.parent() else { return Ok(created) };
    let mut missing = Vec::new();
    let mut dir = parent;
    loop {
        match fs::symlink_metadata(dir) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                let parent = shown(root, dir);
                return Err(StorageError::NotADirectory { path: path.to_owned(), parent });
            }
            Err(_) => missing.push(dir.to_path_buf()),
        }
        match dir.parent() {
            Some(up) => dir = up,
            None => break,
        }
    }
    for dir in missing.into_iter().rev() {
        match fs::create_dir(&dir) {
            Ok(()) => created.0.push(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists || e.kind() == io::ErrorKind::NotADirectory => {
                let parent = shown(root, &dir);
                return Err(StorageError::NotADirectory { path: path.to_owned(), parent });
            }
            Err(e) => return Err(write_error(path, e)),
        }
    }
    Ok(created)
}

/// The relative form of `absolute` for messages (the data directory is not shown).
fn shown(root: &Path, absolute: &Path) -> String {
    absolute.strip_prefix(root).unwrap_or(absolute).to_string_lossy().into_owned()
}

/// An upload written to its temporary file, waiting for [`StagedPut::commit`].
#[derive(Debug)]
struct LocalStaged {
    path: String,
    target: PathBuf,
    temp: tempfile::NamedTempFile,
    dirs: CreatedDirs,
    sha256: String,
    size: u64,
    create_only: bool,
}

#[async_trait]
impl StagedPut for LocalStaged {
    fn size(&self) -> u64 {
        self.size
    }

    async fn commit(self: Box<Self>) -> Result<PutOutcome, StorageError> {
        blocking(move || {
            let LocalStaged { path, target, temp, mut dirs, sha256, create_only, .. } = *self;
            let created = if create_only {
                match temp.persist_noclobber(&target) {
                    Ok(_) => true,
                    Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(StorageError::Exists(path));
                    }
                    Err(e) => return Err(write_error(&path, e.error)),
                }
            } else {
                let existed = match fs::symlink_metadata(&target) {
                    Ok(meta) if meta.is_dir() => return Err(StorageError::IsADirectory(path)),
                    Ok(_) => true,
                    Err(_) => false,
                };
                match temp.persist(&target) {
                    Ok(_) => !existed,
                    Err(e) if e.error.kind() == io::ErrorKind::IsADirectory => {
                        return Err(StorageError::IsADirectory(path));
                    }
                    Err(e) => return Err(write_error(&path, e.error)),
                }
            };
            dirs.disarm();
            // The rename is durable once the directory is.
            if let Some(parent) = target.parent()
                && let Ok(dir) = fs::File::open(parent)
            {
                let _ = dir.sync_all();
            }
            let meta = fs::metadata(&target).map_err(|source| StorageError::Io { path: path.clone(), source })?;
            Ok(PutOutcome { meta: file_meta(path, &meta), created, sha256 })
        })
        .await
    }
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
    async fn check_path(&self, path: &str) -> Result<String, StorageError> {
        let this = self.clone();
        let path = path.to_owned();
        blocking(move || {
            let resolved = match this.resolve_file(&path) {
                Ok(resolved) => resolved,
                Err(StorageError::IsADirectory(_)) => {
                    this.sandbox.resolve_directory_path(&path).map_err(|problem| invalid(&path, &problem))?
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
        let (target, dirs, temp) = blocking(move || {
            let resolved = this.resolve_file(&owned)?;
            // Renamed over a symlink, the upload replaces the link, not the file it points to.
            let target = this.entry(&owned, resolved.as_path());
            let dirs = create_parents(this.sandbox.root(), &owned, &target)?;
            let dir = target.parent().unwrap_or(this.sandbox.root());
            // Readable like the files ffmpeg writes (0644 before the umask), not tempfile's 0600.
            let temp = tempfile::Builder::new()
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .prefix(UPLOAD_TEMP_PREFIX)
                .tempfile_in(dir)
                .map_err(|e| write_error(&owned, e))?;
            Ok::<_, StorageError>((target, dirs, temp))
        })
        .await?;

        // The writing thread owns the temporary file (and the created directories, dropped
        // after it): if this future is dropped half-way, the channel closes, the thread ends,
        // and both are removed.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(WRITE_QUEUE);
        let writer = tokio::task::spawn_blocking(move || {
            let mut temp = temp;
            let mut hasher = Sha256::new();
            let result = (|| {
                while let Some(chunk) = rx.blocking_recv() {
                    temp.as_file_mut().write_all(&chunk)?;
                    hasher.update(&chunk);
                }
                temp.as_file().sync_all()
            })();
            (result, temp, dirs, hex::encode(hasher.finalize()))
        });
        let mut size: u64 = 0;
        let mut failure = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    size += chunk.len() as u64;
                    if size > options.max_bytes {
                        failure = Some(StorageError::TooLarge { max_bytes: options.max_bytes });
                        break;
                    }
                    if tx.send(chunk).await.is_err() {
                        break; // The writer failed; its error is below.
                    }
                }
                Err(source) => {
                    failure = Some(StorageError::Aborted { path: path.to_owned(), source });
                    break;
                }
            }
        }
        drop(tx);
        let joined = writer.await;
        let (result, temp, dirs, sha256) = joined.unwrap_or_else(|e| {
            std::panic::resume_unwind(e.try_into_panic().unwrap_or_else(|e| Box::new(e.to_string())))
        });
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
            let resolved = this.resolve_file(&path)?;
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

    async fn is_directory(&self, path: &str) -> Result<bool, StorageError> {
        let this = self.clone();
        let path = path.to_owned();
        blocking(move || {
            check_lengths(this.sandbox.root(), &path)?;
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
}

impl LocalStorage {
    fn list_blocking(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, StorageError> {
        let root = self.sandbox.root();
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

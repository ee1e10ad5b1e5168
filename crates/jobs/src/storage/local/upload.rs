//! The parts of an upload into the data directory: its early flushes to disk
//! ([`EarlyFlush`]), the directories it creates and removes again ([`CreatedDirs`]), its
//! temporary file and the commit that renames it into place ([`LocalStaged`]), the directory
//! lock that makes a conditional request one step ([`lock_dir`]), and the start-up removal of
//! a crash's temporary files ([`LocalStorage::remove_stale_uploads`]).

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rustix::fs::{Mode, OFlags};

use super::{LocalStorage, UPLOAD_TEMP_PREFIX, file_meta, shown, write_error};
use crate::service::blocking;
use crate::storage::{Preconditions, PutOutcome, StagedPut, StorageError};

/// Flushes an upload's file to disk (`fdatasync`) on a thread of its own while the upload goes
/// on writing: the disk works while the network does, and the final `fsync` finds little left
/// to write. One flush at a time; a request while one runs is skipped (the next one covers it).
#[derive(Debug, Default)]
pub(super) struct EarlyFlush(Option<std::thread::JoinHandle<io::Result<()>>>);

impl EarlyFlush {
    /// Starts a flush of `file` unless one is running.
    pub(super) fn start(&mut self, file: &fs::File) -> io::Result<()> {
        if self.0.as_ref().is_some_and(|running| !running.is_finished()) {
            return Ok(());
        }
        self.wait()?;
        let file = file.try_clone()?;
        self.0 = Some(std::thread::Builder::new().name("upload-flush".to_owned()).spawn(move || file.sync_data())?);
        Ok(())
    }

    /// Waits for the running flush, if any; its error.
    pub(super) fn wait(&mut self) -> io::Result<()> {
        match self.0.take() {
            Some(running) => running.join().unwrap_or_else(|_| Err(io::Error::other("an upload flush panicked"))),
            None => Ok(()),
        }
    }
}

/// The file `target` names, held open (`O_PATH`; a symbolic link itself, not followed) so that
/// renaming an upload over it does not free it there and then: its last close, where the
/// kernel drops its cached pages and frees its blocks (tens of milliseconds for a file of a
/// GiB), then runs after the answer, on a blocking thread ([`release_later`]). `None` when it
/// cannot be opened (gone meanwhile): the rename frees it, as without this.
pub(super) fn hold(target: &Path) -> Option<OwnedFd> {
    rustix::fs::open(target, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()).ok()
}

/// Closes `replaced` (from [`hold`]) on tokio's blocking pool, off the request's path.
pub(super) fn release_later(replaced: OwnedFd) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(replaced))),
        Err(_) => drop(replaced),
    }
}

/// Directories an upload created, removed again (when empty) unless the upload commits.
#[derive(Debug, Default)]
pub(super) struct CreatedDirs(Vec<PathBuf>);

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
pub(super) fn create_parents(root: &Path, path: &str, target: &Path) -> Result<CreatedDirs, StorageError> {
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

/// An upload written to its temporary file, waiting for [`StagedPut::commit`].
#[derive(Debug)]
pub(super) struct LocalStaged {
    /// The path as given (for messages).
    pub(super) path: String,
    /// Its normal form (what the stored file is reported as).
    pub(super) normal: String,
    pub(super) target: PathBuf,
    pub(super) temp: tempfile::NamedTempFile,
    pub(super) dirs: CreatedDirs,
    pub(super) sha256: String,
    pub(super) size: u64,
    pub(super) create_only: bool,
}

#[async_trait]
impl StagedPut for LocalStaged {
    fn size(&self) -> u64 {
        self.size
    }

    async fn commit(self: Box<Self>) -> Result<PutOutcome, StorageError> {
        self.commit_if(&Preconditions::default()).await
    }

    /// Checks `preconditions` against the file at the path and renames the upload over it as
    /// one step: under the lock on the directory ([`lock_dir`]) that every upload's rename and
    /// every conditional delete take.
    async fn commit_if(self: Box<Self>, preconditions: &Preconditions) -> Result<PutOutcome, StorageError> {
        let preconditions = preconditions.clone();
        blocking(move || {
            let LocalStaged { path, normal, target, temp, mut dirs, sha256, create_only, .. } = *self;
            let parent = target.parent().map(Path::to_path_buf);
            let locked = match &parent {
                Some(parent) => {
                    Some(lock_dir(parent).map_err(|source| StorageError::Io { path: path.clone(), source })?)
                }
                None => None,
            };
            if !preconditions.is_empty() {
                let current = match fs::metadata(&target) {
                    Ok(meta) if meta.is_file() => Some(file_meta(normal.clone(), &meta)),
                    _ => None,
                };
                preconditions.check_for(&path, current.as_ref())?;
            }
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
                    // A link that leads nowhere: no file was there.
                    Ok(meta) if meta.is_symlink() => fs::metadata(&target).is_ok(),
                    Ok(_) => true,
                    Err(_) => false,
                };
                let replaced = existed.then(|| hold(&target)).flatten();
                let persisted = temp.persist(&target);
                if let Some(replaced) = replaced {
                    release_later(replaced);
                }
                match persisted {
                    Ok(_) => !existed,
                    Err(e) if e.error.kind() == io::ErrorKind::IsADirectory => {
                        return Err(StorageError::IsADirectory(path));
                    }
                    Err(e) => return Err(write_error(&path, e.error)),
                }
            };
            dirs.disarm();
            let meta = fs::metadata(&target).map_err(|source| StorageError::Io { path: path.clone(), source });
            drop(locked);
            // The rename is durable once the directory is.
            if let Some(parent) = parent
                && let Ok(dir) = fs::File::open(parent)
            {
                let _ = dir.sync_all();
            }
            Ok(PutOutcome { meta: file_meta(normal, &meta?), created, sha256 })
        })
        .await
    }
}

/// Takes an exclusive lock (`flock`) on the directory `dir`, held until the returned handle is
/// dropped (blocking). Every upload's rename into `dir` and every conditional delete in it take
/// it, so the check of a conditional request and the change it guards are one step for
/// every request of every process sharing the data directory.
pub(super) fn lock_dir(dir: &Path) -> io::Result<fs::File> {
    let handle = fs::File::open(dir)?;
    handle.lock()?;
    Ok(handle)
}

/// How long an unlocked, empty temporary upload file is left alone by
/// [`LocalStorage::remove_stale_uploads`]: it may have been created by another process an
/// instant before that process locks it.
pub(super) const FRESH_TEMP: std::time::Duration = std::time::Duration::from_secs(10);

impl LocalStorage {
    /// Removes the temporary upload files (`.ffmpeg-worker-upload-*`) that a crash left in the
    /// data directory, and returns their paths (relative). A temporary file is a live upload's
    /// while its writer holds a lock on it (`flock`, taken right after it is created, held
    /// until the upload is committed or dropped), so a file nobody holds is a leftover, unless
    /// it is empty and younger than a few seconds (its writer may not have locked it yet). Safe
    /// to run while other processes upload into the same data directory. Symlinks are not
    /// followed; reserved paths (the job database) are skipped. Blocking: run it on a blocking
    /// thread, e.g. in the background at start-up.
    pub fn remove_stale_uploads(&self) -> Vec<String> {
        let root = self.sandbox.root();
        let mut removed = Vec::new();
        let walk = walkdir::WalkDir::new(root).follow_links(false).into_iter();
        let denied = |path: &Path| self.sandbox.denied().iter().any(|denied| path.starts_with(denied));
        for entry in walk.filter_entry(|e| !denied(e.path())).flatten() {
            if !entry.file_type().is_file()
                || !entry.file_name().to_str().is_some_and(|n| n.starts_with(UPLOAD_TEMP_PREFIX))
            {
                continue;
            }
            let Ok(file) = fs::File::open(entry.path()) else { continue };
            // Locked: a live upload.
            if file.try_lock().is_err() {
                continue;
            }
            let Ok(meta) = file.metadata() else { continue };
            let age = meta.modified().ok().and_then(|m| m.elapsed().ok()).unwrap_or_default();
            if meta.len() == 0 && age < FRESH_TEMP {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => removed.push(shown(root, entry.path())),
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "removing a temporary upload file failed");
                }
            }
        }
        removed
    }
}

//! Directories that a live run marks as its own with a lock, as [`crate::orphans::ScratchDir`]
//! does: the run holds an exclusive `flock(2)` on the directory for as long as it uses it. The
//! kernel releases the lock when the process ends, however it ends (`kill -9` included), so a
//! directory whose lock is free belongs to no live run of any process on this host: it is a
//! leftover, whoever made it and whatever the job store says.
//!
//! The rule that makes removing safe while other processes (several nodes sharing one data
//! directory) make and remove such directories: a directory is removed only by the process
//! that holds its lock, and only once it checked that the path still names the directory it
//! locked ([`remove_if_free`], and the owner's own removal before it unlocks). [`create_locked`]
//! makes a directory, locks it and checks the same, so a sweep that took the new directory for
//! a leftover before it was locked is noticed ([`std::io::ErrorKind::WouldBlock`]) rather than
//! used.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// Makes the directory `path` (not an existing one) and locks it exclusively; the lock lasts
/// as long as the returned file is open. Remove the directory before dropping the file.
/// Blocking.
///
/// # Errors
/// What the file system reports ([`io::ErrorKind::AlreadyExists`]: `path` exists), and
/// [`io::ErrorKind::WouldBlock`] when a sweep ([`remove_if_free`]) took the new directory for a
/// leftover before it was locked (it is being removed, or is gone): try again.
pub fn create_locked(path: &Path) -> io::Result<File> {
    std::fs::create_dir(path)?;
    let lost = || io::Error::new(io::ErrorKind::WouldBlock, "the new directory was swept before it was locked");
    let dir = File::open(path).map_err(|e| if e.kind() == io::ErrorKind::NotFound { lost() } else { e })?;
    if dir.try_lock().is_err() || !still_at(&dir, path) {
        return Err(lost());
    }
    Ok(dir)
}

/// Removes the directory `path` with what it holds if no live run uses it (its lock is free),
/// holding its lock while it removes it. Returns whether it was removed: `false` when the
/// directory is locked (a live run's), was replaced meanwhile, or is not a directory (a
/// symlink is not followed). Blocking.
///
/// # Errors
/// What the file system reports ([`io::ErrorKind::NotFound`]: no such path).
pub fn remove_if_free(path: &Path) -> io::Result<bool> {
    if !std::fs::symlink_metadata(path)?.is_dir() {
        return Ok(false);
    }
    let dir = File::open(path)?;
    match dir.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    // Locked a directory its owner removed meanwhile (and maybe made again, under a new lock).
    if !still_at(&dir, path) {
        return Ok(false);
    }
    std::fs::remove_dir_all(path)?;
    Ok(true)
}

/// Whether `path` (not followed) is the directory `dir` is open on.
fn still_at(dir: &File, path: &Path) -> bool {
    match (dir.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => named.is_dir() && (open.dev(), open.ino()) == (named.dev(), named.ino()),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_directory_stays_and_a_free_one_goes() {
        let root = tempfile::tempdir().unwrap();
        let live = root.path().join("live");
        let lock = create_locked(&live).unwrap();
        std::fs::write(live.join("f"), b"x").unwrap();
        assert!(!remove_if_free(&live).unwrap(), "a held lock keeps the directory");
        assert!(live.join("f").exists());
        assert_eq!(create_locked(&live).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        drop(lock);
        assert!(remove_if_free(&live).unwrap(), "a free lock is a leftover");
        assert!(!live.exists());
        assert_eq!(remove_if_free(&live).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_directory_made_again_under_a_new_lock_is_not_removed_by_a_stale_open() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("d");
        std::fs::create_dir(&path).unwrap();
        // A sweep opened the old directory; its owner removed it and made it again, locked.
        let old = File::open(&path).unwrap();
        std::fs::remove_dir(&path).unwrap();
        let _new = create_locked(&path).unwrap();
        old.try_lock().unwrap();
        assert!(!still_at(&old, &path), "the path names another directory now");
    }

    #[test]
    fn a_symlink_is_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(!remove_if_free(&link).unwrap());
        assert!(target.exists() && link.exists());
    }
}

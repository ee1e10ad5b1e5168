//! A disk's rule in a bucket: no file where a directory is, none below a file
//! ([`Storage::check_writable_paths`](crate::storage::Storage::check_writable_paths)). A
//! bucket would hold both `a` and `a/x`; the files API could then neither list nor delete them
//! as files (tester finding G14).

use std::collections::BTreeMap;

use futures_util::StreamExt as _;

use super::S3Storage;
use crate::storage::StorageError;

/// Requests of one check sent at once.
const CHECKS_AT_ONCE: usize = 8;

/// The directories above `path` (`a/b/c` -> `a/b`, `a`), nearest first.
fn parents(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = path;
    std::iter::from_fn(move || {
        let (up, _) = rest.rsplit_once('/')?;
        rest = up;
        Some(up)
    })
}

impl S3Storage {
    /// [`Storage::check_writable_paths`](crate::storage::Storage::check_writable_paths): one
    /// `HEAD` per distinct directory above the paths (and per directory of `dirs`), then one
    /// listing of one key per file of `files`, a few at a time.
    pub(super) async fn writable_paths(&self, files: &[String], dirs: &[String]) -> Result<(), StorageError> {
        // Each directory that must not be a file, with the first path that needs it.
        let mut needed: BTreeMap<&str, &str> = BTreeMap::new();
        for file in files {
            for dir in parents(file) {
                needed.entry(dir).or_insert(file);
            }
        }
        for dir in dirs.iter().filter(|dir| !dir.is_empty()) {
            needed.entry(dir).or_insert(dir);
            for up in parents(dir) {
                needed.entry(up).or_insert(dir);
            }
        }
        let heads: Vec<_> =
            needed.into_iter().map(|(dir, path)| async move { (self.head_key(dir).await, dir, path) }).collect();
        let heads = futures_util::stream::iter(heads).buffered(CHECKS_AT_ONCE).collect::<Vec<_>>().await;
        // Nearest the root first: the message names the top file.
        for (head, dir, path) in heads {
            if head?.is_some() {
                return Err(StorageError::NotADirectory { path: path.to_owned(), parent: dir.to_owned() });
            }
        }
        let listed: Vec<_> = files.iter().map(|file| async move { (self.has_children(file).await, file) }).collect();
        let listed = futures_util::stream::iter(listed).buffered(CHECKS_AT_ONCE).collect::<Vec<_>>().await;
        for (below, file) in listed {
            if below? {
                return Err(StorageError::IsADirectory(file.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parents;

    #[test]
    fn parents_are_every_directory_above_a_path_nearest_first() {
        assert_eq!(parents("a/b/c.mp4").collect::<Vec<_>>(), ["a/b", "a"]);
        assert!(parents("c.mp4").next().is_none());
    }
}

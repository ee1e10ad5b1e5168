//! A disk's rule in a bucket: no file where a directory is, none below a file
//! ([`Storage::check_writable_paths`](crate::storage::Storage::check_writable_paths)). A
//! bucket would hold both `a` and `a/x`; the files API could then neither list nor delete them
//! as files (tester finding G14).
//!
//! The check costs requests by directory, not by file (tester finding H7: a job of 1000 images
//! sent 1000 listings and took 35 % longer on moto): one `HEAD` per distinct directory above
//! the paths, and one listing per directory holding them: of one key below the file for a
//! directory of one file, else of the directory itself by subdirectory (`delimiter=/`), over
//! the range of its files' names only (`start-after` the first; stopped past the last).

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

/// The directory of `path` (`a/b/c` -> `a/b`; the root: empty).
fn directory_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

impl S3Storage {
    /// [`Storage::check_writable_paths`](crate::storage::Storage::check_writable_paths): one
    /// `HEAD` per distinct directory above the paths (and per directory of `dirs`), then one
    /// listing per directory of `files` ([module docs](self)), a few at a time.
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
        let mut by_directory: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
        for file in files {
            by_directory.entry(directory_of(file)).or_default().push(file);
        }
        let listed: Vec<_> = by_directory
            .into_iter()
            .map(|(dir, files)| async move { self.directory_among(dir, files).await })
            .collect();
        let listed = futures_util::stream::iter(listed).buffered(CHECKS_AT_ONCE).collect::<Vec<_>>().await;
        let mut found = Vec::new();
        for directory in listed {
            found.extend(directory?);
        }
        // The first in the caller's order.
        match files.iter().find(|file| found.contains(file)) {
            Some(file) => Err(StorageError::IsADirectory(file.clone())),
            None => Ok(()),
        }
    }

    /// One of `files` (paths in the directory `dir`) that is a directory in the bucket (some
    /// key starts with `file/`), if any: for one file, a listing of one key below it; for
    /// more, a listing of `dir` by subdirectory from the first file's key to past the last's.
    async fn directory_among<'f>(&self, dir: &str, files: Vec<&'f String>) -> Result<Option<&'f String>, StorageError> {
        if let [file] = files[..] {
            return Ok(self.has_children(file).await?.then_some(file));
        }
        // `prefix/dir/name/` (what the listing gives for a subdirectory) -> the file.
        let below: BTreeMap<String, &String> = files.iter().map(|file| (self.dir_prefix(file), *file)).collect();
        let (Some(first), Some((last, _))) =
            (files.iter().map(|file| self.key_text(file)).min(), below.last_key_value())
        else {
            return Ok(None);
        };
        let mut pages = self.list_directory(self.dir_prefix(dir), Some(first), dir);
        while let Some(page) = pages.next_listing().await? {
            if let Some(file) = page.dirs.iter().find_map(|listed| below.get(listed)) {
                return Ok(Some(*file));
            }
            // Keys and subdirectories come in byte order: past the last file's, nothing more counts.
            let past = |text: &String| text > last;
            if page.dirs.last().is_some_and(past) || page.keys.last().is_some_and(|listed| past(&listed.key)) {
                break;
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::parents;

    #[test]
    fn parents_are_every_directory_above_a_path_nearest_first() {
        assert_eq!(parents("a/b/c.mp4").collect::<Vec<_>>(), ["a/b", "a"]);
        assert!(parents("c.mp4").next().is_none());
        assert_eq!(super::directory_of("a/b/c.mp4"), "a/b");
        assert_eq!(super::directory_of("c.mp4"), "");
    }
}

//! How full the file system holding a path is ([`DiskSpace`]): what messages about a full disk
//! name (the store's, a node's start-up, a run's). Every function here blocks (`statvfs`,
//! `stat`).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// The file system holding a path: where it is mounted and what it has free.
///
/// Its `Display` reads "the file system mounted at `/srv`, 12 KiB free".
///
/// ```
/// let space = jobs::disk_space::DiskSpace::of(std::path::Path::new("/")).unwrap();
/// assert_eq!(space.mount_point, std::path::Path::new("/"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpace {
    /// Where the file system is mounted (the highest ancestor of the path on the same
    /// device).
    pub mount_point: PathBuf,
    /// Bytes this process may still write there ([`free_bytes`]).
    pub free_bytes: u64,
}

impl DiskSpace {
    /// The file system holding `path` (a file or a directory; a path that does not exist: its
    /// nearest existing ancestor), or `None` when it cannot be read. Blocking.
    pub fn of(path: &Path) -> Option<DiskSpace> {
        let absolute = std::path::absolute(path).ok()?;
        let existing = absolute.ancestors().find(|p| p.exists())?;
        let existing = existing.canonicalize().unwrap_or_else(|_| existing.to_owned());
        let device = std::fs::metadata(&existing).ok()?.dev();
        let mut mount_point = existing.clone();
        for ancestor in existing.ancestors().skip(1) {
            match std::fs::metadata(ancestor) {
                Ok(meta) if meta.dev() == device => mount_point = ancestor.to_owned(),
                _ => break,
            }
        }
        Some(DiskSpace { mount_point, free_bytes: free_bytes(&existing)? })
    }
}

impl std::fmt::Display for DiskSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the file system mounted at `{}`, {} free", self.mount_point.display(), human_bytes(self.free_bytes))
    }
}

/// The bytes this process may still write on the file system holding `path` (`statvfs`'s
/// `f_bavail`, or `f_bfree` when it runs as root, which may use the blocks reserved for root),
/// or `None` when it cannot be read. Blocking.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    // Any other user gets `ENOSPC` once `f_bavail` is used up.
    let blocks = if nix::unistd::geteuid().is_root() { stat.blocks_free() } else { stat.blocks_available() };
    Some(blocks.saturating_mul(stat.fragment_size()))
}

/// `bytes` for a person: "512 bytes", "12 KiB", "3.4 MiB", "1.2 GiB" (rounded down).
pub fn human_bytes(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    match bytes {
        ..KIB => format!("{bytes} bytes"),
        KIB..MIB => format!("{} KiB", bytes / KIB),
        MIB..GIB => format!("{}.{} MiB", bytes / MIB, bytes % MIB * 10 / MIB),
        _ => format!("{}.{} GiB", bytes / GIB, bytes % GIB * 10 / GIB),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_rounds_down_in_the_largest_unit() {
        let check = |bytes: u64, expected: &str| assert_eq!(human_bytes(bytes), expected, "{bytes}");
        check(0, "0 bytes");
        check(1023, "1023 bytes");
        check(1024, "1 KiB");
        check(12 * 1024 + 1023, "12 KiB");
        check(1024 * 1024, "1.0 MiB");
        // 3.9 MiB is 4,089,446.4 bytes: one byte under it is still 3.8.
        check(4_089_446, "3.8 MiB");
        check(4_089_447, "3.9 MiB");
        check(5 * 1024 * 1024 * 1024, "5.0 GiB");
    }

    #[test]
    fn a_missing_path_is_looked_up_by_its_nearest_existing_ancestor() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let missing = dir.path().join("not/yet/here.db");
        let space = DiskSpace::of(&missing).expect("the temporary directory's file system");
        let of_dir = DiskSpace::of(dir.path()).expect("the temporary directory's file system");
        assert_eq!(space.mount_point, of_dir.mount_point, "the same file system");
        assert!(dir.path().starts_with(&space.mount_point), "{space}");
    }
}

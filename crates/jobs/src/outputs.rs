//! Which files a run wrote, and so which ones it lists and removes.
//!
//! A command's [`Footprint`] says which names it may write, in which directories: its outputs
//! and written option files (named by the command) and the names ffmpeg derives from them
//! (pass logs, segments, temporary files). Before ffmpeg starts, a [`Snapshot`] records the
//! files of those directories that the footprint covers, with their identity (inode, size,
//! modification and change times). After the run, a file in those directories is the run's
//! when the footprint covers it and:
//! - the command names it ([`Claim::Named`]: an output, `-segment_list`, an
//!   `-hls_segment_filename` or `%03d` pattern) or ffmpeg derives its name ([`Claim::Derived`]:
//!   pass logs, HLS segments, DASH chunks), and it did not exist before the run or changed
//!   during it (ffmpeg overwrote it: a second run of the same HLS command lists every segment
//!   it rewrote, as the first run did, tester finding L19), or
//! - the run appends to it ([`Claim::Appended`]: x265's `csv`) and it did not exist before the
//!   run.
//!
//! Nothing else is ever listed or removed: a file that existed before the run and that the
//! run did not overwrite is left alone (an older run's later segments that this one did not
//! reach), and so are files beside the outputs that merely share a prefix with them. Two runs whose footprints overlap never run at once (the store claims
//! jobs that way), so a new file matching a run's footprint is that run's.
//!
//! The snapshot is stored with the job's attempt before ffmpeg starts, so that recovery after
//! a crash removes what the interrupted attempt wrote by the same rule.
//!
//! Every function here does blocking file-system work: call it from `spawn_blocking`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use ffmpeg_core::footprint::{Claim, Footprint};
use ffmpeg_core::pattern;
use ffmpeg_core::sandbox::{OutputTarget, ResolvedCommand};
use serde::{Deserialize, Serialize};

/// The identity of a file when a [`Snapshot`] was taken: a file with another stamp afterwards
/// was replaced or written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Inode number.
    pub inode: u64,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, nanoseconds since the Unix epoch.
    pub modified_ns: i128,
    /// Last status change (not settable by programs), nanoseconds since the Unix epoch.
    pub changed_ns: i128,
}

impl FileStamp {
    fn of(meta: &fs::Metadata) -> FileStamp {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        FileStamp {
            inode: meta.ino(),
            size: meta.size(),
            modified_ns: ns(meta.mtime(), meta.mtime_nsec()),
            changed_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The files a run's footprint covers that existed before the run, by directory (relative to
/// the data directory) and name. Taken by [`Snapshot::take`] before ffmpeg starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Directory -> name -> identity.
    pub dirs: BTreeMap<PathBuf, BTreeMap<String, FileStamp>>,
    /// The directories (relative to the data directory) the run may write into, and their
    /// ancestors, that did not exist before the run ([`missing_dirs`], taken before the output
    /// directories are created): those that exist afterwards were created for the run (by
    /// [`create_output_dirs`] or by a muxer, such as HLS variant directories), and a failed,
    /// cancelled or interrupted run removes them when they are empty ([`remove_created_dirs`]).
    #[serde(default)]
    pub created_dirs: Vec<PathBuf>,
}

impl Snapshot {
    /// Records the regular files in the directories `footprint` writes (under the data
    /// directory `root`) that its write sets cover. Directories that do not exist yet hold
    /// nothing. Blocking.
    pub fn take(root: &Path, footprint: &Footprint) -> Snapshot {
        let mut dirs = BTreeMap::new();
        for dir in footprint.written_dirs() {
            let mut files = BTreeMap::new();
            for (name, _, meta) in files_in(&root.join(dir), |name| footprint.claim_on(&dir.join(name))) {
                files.insert(name, FileStamp::of(&meta));
            }
            dirs.insert(dir.to_owned(), files);
        }
        Snapshot { dirs, created_dirs: Vec::new() }
    }

    /// The file's identity before the run, if it existed then.
    pub fn stamp(&self, dir: &Path, name: &str) -> Option<&FileStamp> {
        self.dirs.get(dir)?.get(name)
    }
}

/// A symbolic link where a run may write: ffmpeg would open it by name and write through it
/// (to wherever it leads, possibly out of the data directory), and the file written would not
/// be the run's (not listed in `output_files`, not removed on failure). Only whoever owns the
/// data directory can make such a link; the files API cannot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{}` is a symbolic link where the job may write: a job never writes through a link; remove the link \
     or choose other output names",
    path.display()
)]
pub struct LinkInTheWay {
    /// The link, relative to the data directory.
    pub path: PathBuf,
    /// Where it leads, as the link says (not in the message: clients are not shown paths
    /// outside the data directory).
    pub target: PathBuf,
}

/// Refuses a run that would write through a symbolic link ([`LinkInTheWay`]): a directory the
/// footprint writes in that is (or lies under) a link, or a link in such a directory whose name
/// the footprint covers (an image sequence's `img_001.png`, an HLS segment, a DASH chunk, a
/// pass log, a muxer's `.tmp` file). The outputs the command names, and the files options
/// write under their own names, are checked by the sandbox already (a link there is refused at
/// submission and again when the command is resolved before the run: rule `symbolic-link`, or
/// `path-escapes` for one leading out); this covers the names ffmpeg makes up itself. A directory
/// part holding a pattern (`hls/%v` without a known variant list) is checked up to that part.
/// Blocking.
///
/// # Errors
/// The first link found.
pub fn refuse_links(root: &Path, footprint: &Footprint) -> Result<(), LinkInTheWay> {
    let link = |relative: PathBuf| {
        let target = fs::read_link(root.join(&relative)).unwrap_or_default();
        LinkInTheWay { path: relative, target }
    };
    for dir in footprint.written_dirs() {
        let mut walked = PathBuf::new();
        let mut whole = true;
        for part in dir.components() {
            if pattern::is_pattern(&part.as_os_str().to_string_lossy()) {
                whole = false;
                break;
            }
            walked.push(part);
            match fs::symlink_metadata(root.join(&walked)) {
                Ok(meta) if meta.file_type().is_symlink() => return Err(link(walked)),
                Ok(_) => {}
                Err(_) => {
                    whole = false;
                    break;
                }
            }
        }
        if !whole {
            continue;
        }
        let Ok(entries) = fs::read_dir(root.join(dir)) else { continue };
        for entry in entries.flatten() {
            // `DirEntry::file_type` does not follow links.
            if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            let path = dir.join(entry.file_name());
            if footprint.claim_on(&path).is_some() {
                return Err(link(path));
            }
        }
    }
    Ok(())
}

/// Regular files (not symlinks) directly in `dir` with UTF-8 names that `wanted` answers
/// for (`Some`), with that answer and their metadata. The name is looked at first: only the
/// files wanted cost a `stat` (a directory may hold thousands of others).
fn files_in<T>(dir: &Path, mut wanted: impl FnMut(&str) -> Option<T>) -> Vec<(String, T, fs::Metadata)> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let answer = wanted(&name)?;
            let meta = entry.metadata().ok().filter(fs::Metadata::is_file)?;
            Some((name, answer, meta))
        })
        .collect()
}

/// The files the run wrote (see the [module docs](self)), as paths relative to the data
/// directory `root`, sorted. Blocking.
pub fn run_files(root: &Path, footprint: &Footprint, before: &Snapshot) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in footprint.written_dirs() {
        for (name, claim, meta) in files_in(&root.join(dir), |name| footprint.claim_on(&dir.join(name))) {
            let path = dir.join(&name);
            let ours = match (before.stamp(dir, &name), claim) {
                (None, _) => true,
                (Some(stamp), Claim::Named | Claim::Derived) => *stamp != FileStamp::of(&meta),
                (Some(_), _) => false,
            };
            if ours {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Removes the files the run wrote ([`run_files`]): what a failed, cancelled or interrupted
/// run leaves is unusable (truncated, or a playlist naming missing segments). Returns the
/// paths removed, relative to `root`; failures are logged. Blocking.
pub fn remove_run_files(root: &Path, footprint: &Footprint, before: &Snapshot) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for path in run_files(root, footprint, before) {
        match fs::remove_file(root.join(&path)) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "removing a partial output failed"),
        }
    }
    removed
}

/// The directories `footprint` writes into, and their ancestors below the data directory
/// `root`, that do not exist now (nothing at that path, not even a symlink), deepest first.
/// A directory named with a pattern counts under its literal name too: [`create_output_dirs`]
/// creates `a%d/` for an MP4 output `a%d/x.mp4`, where `%d` means nothing; under its literal
/// name `hls/%v` (which stands for `hls/0`, ..., listed themselves) never exists after the run
/// either, and is passed over when the run's directories are removed. Call it before
/// [`create_output_dirs`]. Blocking.
pub fn missing_dirs(root: &Path, footprint: &Footprint) -> Vec<PathBuf> {
    let mut missing = std::collections::BTreeSet::new();
    for dir in footprint.written_dirs() {
        for ancestor in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            if fs::symlink_metadata(root.join(ancestor)).is_ok() {
                break;
            }
            missing.insert(ancestor.to_owned());
        }
    }
    let mut missing: Vec<PathBuf> = missing.into_iter().collect();
    missing.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
    missing
}

/// Removes the directories a failed, cancelled or interrupted run created (`created`: its
/// [`Snapshot::created_dirs`], deepest first) that are empty now (after [`remove_run_files`]), deepest
/// first, except those `in_use` says another job may still write into (its output directories
/// were created when it started, and an empty one must stay for it). A directory holding
/// anything stays. Returns the directories removed, relative to `root`. Blocking.
pub fn remove_created_dirs(root: &Path, created: &[PathBuf], in_use: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for dir in created {
        if in_use(dir) {
            continue;
        }
        let path = root.join(dir);
        // A symlink (or file) put there since is not a directory the run created.
        if !fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir()) {
            continue;
        }
        match fs::remove_dir(&path) {
            Ok(()) => removed.push(dir.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "removing a directory the run created failed"),
        }
    }
    removed
}

/// May a job with `footprint` (`None`: unknown, it may write anywhere) write into `dir` or
/// below it? A written directory holding a pattern (`hls/%v`) counts from its first pattern
/// component up: `hls/%v` may be any directory below `hls`.
pub fn writes_into(footprint: Option<&Footprint>, dir: &Path) -> bool {
    let Some(footprint) = footprint else { return true };
    footprint.written_dirs().iter().any(|written| {
        let fixed: PathBuf =
            written.components().take_while(|c| !pattern::is_pattern(&c.as_os_str().to_string_lossy())).collect();
        if fixed.as_os_str().len() == written.as_os_str().len() {
            written.starts_with(dir)
        } else {
            fixed.starts_with(dir) || dir.starts_with(&fixed)
        }
    })
}

/// `paths` (relative to the data directory) as strings, for job records.
pub fn to_strings(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.to_string_lossy().into_owned()).collect()
}

/// Creates the parent directories of every file output and written option file
/// (`thumbs/t%03d.png` needs `thumbs/`, `-hls_segment_filename hls/s_%03d.ts` needs `hls/`),
/// except those ffmpeg never writes into under their literal name:
/// - a directory named with `%v` (`hls/%v/`) of an HLS output, which stands for one directory
///   per variant stream (`hls/0/`, `hls/1/`), and which the muxer creates with its parents
///   (`format_name()` in `libavformat/hlsenc.c`);
/// - with `-strftime 1`, a directory holding a `%` conversion in a name that strftime expands
///   (an image2 or segment output's own name, an HLS segment name: `snap/%Y/%H%M%S.jpg` is
///   written into `snap/2026/`), which these muxers do not create (plain ffmpeg fails, naming
///   the file it could not open, and so does the job, leaving no `snap/%Y/` behind).
///
/// Blocking.
///
/// # Errors
/// The first directory that cannot be created.
pub fn create_output_dirs(command: &ResolvedCommand) -> std::io::Result<()> {
    use ffmpeg_core::policy::{Access, Naming};
    let strftime = |output: Option<usize>| {
        output.and_then(|index| command.command().outputs().get(index)).is_some_and(|o| o.strftime())
    };
    let outputs = command.outputs().iter().enumerate().filter_map(|(index, t)| match t {
        // The HLS muxer expands its segment names, not the playlist's.
        OutputTarget::File(p) => Some((Some(index), p, strftime(Some(index)) && command.hls_variants(index).is_none())),
        _ => None,
    });
    let written = command
        .option_files()
        .iter()
        .filter(|f| matches!(f.file_use().access, Access::Write | Access::ReadWrite | Access::Append))
        .map(|f| (f.output(), f.path(), strftime(f.output()) && f.file_use().naming == Naming::Pattern));
    for (output, path, expanded) in outputs.chain(written) {
        let Some(parent) = path.relative().parent() else { continue };
        let parent_text = parent.to_string_lossy();
        let variant_dir =
            output.and_then(|index| command.hls_variants(index)).is_some() && pattern::has_hls_variant(&parent_text);
        let strftime_dir = expanded && parent_text.contains('%');
        if !variant_dir
            && !strftime_dir
            && let Some(parent) = path.as_path().parent()
        {
            fs::create_dir_all(parent)?;
        }
    }
    Ok(())
}

//! Where a submitted command reads and writes, against what the storage holds there: the
//! same answer on both backends.
//!
//! A disk and a bucket differ in what they can hold (a bucket keeps both `a` and `a/x`; a key
//! prefix `dir/` is a directory without an object of its own), yet a command gets one answer:
//! - a file a job would write where the storage holds a directory, or below a file, is
//!   [`SubmitError::OutputConflict`] (409 `file-conflict`), whichever argument names it (an
//!   output URL, `-segment_list`, `-hls_segment_filename`, a pass log, a filter's stats file):
//!   [`WrittenPlaces`] over [`Storage::check_writable_paths`] in a bucket, [`check_writable_in`]
//!   in a data directory, where the sandbox refuses such a path first ([`directory_output`]
//!   turns that refusal into the same conflict);
//! - a file a job would read that is a directory in the bucket (or lies below a file) gets the
//!   sandbox's answer for that place on a disk (422 `not-a-file`, naming the argument):
//!   [`check_places_in_bucket`] finds such places, lays them out in an empty private directory
//!   and resolves the command there with the same rules, so the answer is the disk's by
//!   construction; unless the bucket holds an object of that very name too (`x` beside
//!   `x/y`, which no disk can hold): the files API lists and serves that file, and a job reads
//!   it likewise.

use std::path::Path;

use ffmpeg_core::command::Command;
use ffmpeg_core::footprint::{Footprint, Names};
use ffmpeg_core::pattern;
use ffmpeg_core::policy::{Access, Naming};
use ffmpeg_core::sandbox::{InputSource, PathProblem, ResolvedCommand, Sandbox, SandboxError};

use super::SubmitError;
use crate::storage::{Storage, StorageError, check_writable_in};

/// Where a command writes, as [`Storage::check_writable_paths`] takes it: every name the job
/// may write ([`Footprint::written_by_argument`]: outputs, segments, playlists, sequences, pass
/// logs), a named file whole, a numbered or templated one by its directory (its own names are
/// checked at upload, once they exist); and the argument that writes each.
#[derive(Debug, Default)]
pub(crate) struct WrittenPlaces {
    /// Files, normal paths.
    pub(crate) files: Vec<String>,
    /// Directories written into, normal paths.
    pub(crate) dirs: Vec<String>,
    /// (path of `files` or `dirs`, 1-based position of the argument, the argument).
    by_path: Vec<(String, usize, String)>,
}

impl WrittenPlaces {
    /// The places `resolved` writes.
    pub(crate) fn of(resolved: &ResolvedCommand) -> WrittenPlaces {
        let mut places = WrittenPlaces::default();
        for written in Footprint::written_by_argument(resolved) {
            let set = &written.set;
            // The directory up to its first placeholder (`hls/v%v` -> `hls`).
            let dir: Vec<String> = set
                .dir()
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .take_while(|part| !pattern::is_pattern(part))
                .collect();
            let whole_dir = dir.len() == set.dir().iter().count();
            let dir = dir.join("/");
            // A pattern without a placeholder (`-hls_segment_filename seg.ts`) names one file.
            let exact = match set.names() {
                Names::Exact(name) => Some(name),
                Names::Pattern(name) if !name.contains(['%', '$']) => Some(name),
                _ => None,
            };
            let path = match exact {
                Some(name) if whole_dir && dir.is_empty() => name.clone(),
                Some(name) if whole_dir => format!("{dir}/{name}"),
                _ if dir.is_empty() => continue,
                _ => {
                    places.dirs.push(dir.clone());
                    places.by_path.push((dir, written.position, written.argument.clone()));
                    continue;
                }
            };
            places.files.push(path.clone());
            places.by_path.push((path, written.position, written.argument.clone()));
        }
        places
    }

    /// Only the places the argument at `position` writes.
    fn of_argument(mut self, position: usize) -> WrittenPlaces {
        self.by_path.retain(|(_, at, _)| *at == position);
        let kept = |path: &String| self.by_path.iter().any(|(kept, _, _)| kept == path);
        self.files.retain(kept);
        self.dirs.retain(kept);
        self
    }

    /// `problem` ([`StorageError::IsADirectory`] or [`StorageError::NotADirectory`], about
    /// one of these places) as [`SubmitError::OutputConflict`], naming the argument.
    pub(crate) fn conflict(self, problem: StorageError) -> SubmitError {
        let path = match &problem {
            StorageError::IsADirectory(path) | StorageError::NotADirectory { path, .. } => path.clone(),
            _ => String::new(),
        };
        let (position, argument) = self
            .by_path
            .into_iter()
            .find(|(written, _, _)| *written == path)
            .map(|(_, position, argument)| (position, argument))
            .unwrap_or_default();
        SubmitError::OutputConflict { position, argument, problem: Box::new(problem) }
    }
}

/// The argument of `resolved` that makes ffmpeg write the file `path` (relative, normal form):
/// "argument 4 `race/a/x.mp4`", for messages about a file a run wrote; `None` when no
/// argument's names cover it.
pub(crate) fn argument_writing(resolved: &ResolvedCommand, path: &str) -> Option<String> {
    let path = Path::new(path);
    let dir = path.parent().unwrap_or(Path::new(""));
    let name = path.file_name()?.to_str()?;
    Footprint::written_by_argument(resolved)
        .into_iter()
        .find(|written| written.set.matches(dir, name))
        .map(|written| format!("argument {} `{}`", written.position, written.argument))
}

/// The files `resolved` reads by name (each file input, each option or filter value naming
/// one file it reads), normal paths: where a bucket may hold a directory instead.
fn read_files(resolved: &ResolvedCommand) -> Vec<String> {
    let inputs = resolved.inputs().iter().filter_map(InputSource::file);
    let options = resolved
        .option_files()
        .iter()
        .filter(|file| file.file_use().access == Access::Read && file.file_use().naming == Naming::Exact)
        .map(|file| file.path());
    let mut files: Vec<String> =
        inputs.chain(options).map(|path| path.relative().to_string_lossy().into_owned()).collect();
    files.sort();
    files.dedup();
    files
}

/// The first place `resolved` reads or writes (normal path), to name in a message about the
/// storage as a whole (a submission refused while it does not answer); empty when it names
/// none (the storage then names itself).
pub(super) fn first_place(resolved: &ResolvedCommand) -> String {
    let writes = WrittenPlaces::of(resolved);
    let mut places = read_files(resolved).into_iter().chain(writes.files).chain(writes.dirs);
    places.next().unwrap_or_default()
}

/// With the files in a bucket, at submit: a file `resolved` reads that is a directory in the
/// bucket (or lies below a file) gets the data directory's answer (the sandbox's 422
/// `not-a-file`, naming the argument), unless the bucket holds a file of that very name too
/// (a bucket keeps both `x` and `x/y`; `GET /files` serves that file, and so may a job:
/// tester finding L5); a file it writes there, [`SubmitError::OutputConflict`] (as on a disk).
///
/// Returns `Some(error)` when the storage did not answer a check ([`StorageError::is_no_answer`]; the caller
/// bounds the whole in time): those places are not known, and the run checks again. A failure
/// of any other kind (a refusal) is logged and left to the run too.
///
/// # Errors
/// [`SubmitError::Sandbox`] or [`SubmitError::OutputConflict`], the first in the command's
/// order, as a data directory would answer.
pub(super) async fn check_places_in_bucket(
    sandbox: &Sandbox,
    storage: &dyn Storage,
    resolved: &ResolvedCommand,
) -> Result<Option<StorageError>, SubmitError> {
    let reads = read_files(resolved);
    let writes = WrittenPlaces::of(resolved);
    let (read, written) = tokio::join!(
        read_in_the_way(storage, &reads),
        found_in_the_way(storage, "outputs", &writes.files, &writes.dirs)
    );
    let (read, written) = match (read, written) {
        (InTheWay::NoAnswer(e), InTheWay::Nothing | InTheWay::NoAnswer(_))
        | (InTheWay::Nothing, InTheWay::NoAnswer(e)) => return Ok(Some(e)),
        (read, written) => (read.found(), written.found()),
    };
    if read.is_none() && written.is_none() {
        return Ok(None);
    }
    let layout: Vec<Place> = read.iter().chain(&written).filter_map(Place::of).collect();
    let (sandbox, command) = (sandbox.clone(), resolved.command().clone());
    let on_disk = super::blocking(move || answer_on_disk(&sandbox, &command, &layout)).await;
    match (on_disk, written) {
        (Some(answer), _) => Err(answer),
        // The disk would take it (a layout that cannot be laid out): the bucket's own answer.
        (None, Some(problem)) => Err(writes.conflict(problem)),
        (None, None) => Ok(None),
    }
}

/// What a check of places found.
enum InTheWay {
    /// Nothing in the way (or a failure that is not the storage's silence, logged).
    Nothing,
    /// [`StorageError::IsADirectory`] or [`StorageError::NotADirectory`].
    Found(StorageError),
    /// The storage did not answer ([`StorageError::is_no_answer`]).
    NoAnswer(StorageError),
}

impl InTheWay {
    fn found(self) -> Option<StorageError> {
        match self {
            InTheWay::Found(problem) => Some(problem),
            InTheWay::Nothing | InTheWay::NoAnswer(_) => None,
        }
    }
}

/// [`found_in_the_way`] for the files a command reads: a place in the way that holds a file of
/// its very name too (an object at `x` beside keys `x/...`, or an object at `x/y` below a file
/// `x`) is read as that file, as the files API reads it, and the others are checked again.
async fn read_in_the_way(storage: &dyn Storage, reads: &[String]) -> InTheWay {
    let mut reads = reads.to_vec();
    loop {
        let problem = match found_in_the_way(storage, "inputs", &reads, &[]).await {
            InTheWay::Found(problem) => problem,
            other => return other,
        };
        let path = match &problem {
            StorageError::IsADirectory(path) | StorageError::NotADirectory { path, .. } => path.clone(),
            _ => return InTheWay::Found(problem),
        };
        if !reads.contains(&path) {
            return InTheWay::Found(problem);
        }
        match storage.head(&path).await {
            Ok(_) => reads.retain(|read| *read != path),
            Err(e) if e.is_no_answer() => return InTheWay::NoAnswer(e),
            Err(_) => return InTheWay::Found(problem),
        }
    }
}

/// What [`Storage::check_writable_paths`] finds in the way of `files` and `dirs` (`what`, for
/// a warning): a directory where a file is, a file where a directory is.
async fn found_in_the_way(storage: &dyn Storage, what: &str, files: &[String], dirs: &[String]) -> InTheWay {
    if files.is_empty() && dirs.is_empty() {
        return InTheWay::Nothing;
    }
    match storage.check_writable_paths(files, dirs).await {
        Ok(()) => InTheWay::Nothing,
        Err(problem @ (StorageError::IsADirectory(_) | StorageError::NotADirectory { .. })) => InTheWay::Found(problem),
        Err(e) if e.is_no_answer() => InTheWay::NoAnswer(e),
        Err(e) => {
            tracing::warn!(error = %e, "checking the {what}' places in the storage failed; the run checks again");
            InTheWay::Nothing
        }
    }
}

/// What a data directory holding `layout` (directories where files are expected, files where
/// directories are) answers to `command`: the command resolved by `sandbox`'s rules over an
/// empty private directory where `layout` is laid out, then its written places checked there,
/// as [`check_places_in_place`] does. `None` when that directory takes it, or cannot be made.
/// Blocking.
fn answer_on_disk(sandbox: &Sandbox, command: &Command, layout: &[Place]) -> Option<SubmitError> {
    let dir = private_dir().ok()?;
    for place in layout {
        let made = match place {
            Place::Directory(path) => std::fs::create_dir_all(dir.path().join(path)),
            Place::File(path) => {
                let file = dir.path().join(path);
                file.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&file, b""))
            }
        };
        made.ok()?;
    }
    let there = same_rules_over(sandbox, dir.path()).ok()?;
    check_places_in_place(&there, command).err()
}

/// What a bucket holds where a disk could not ([`answer_on_disk`] lays it out).
enum Place {
    /// A directory (keys below it) where a file is expected.
    Directory(String),
    /// A file where a directory is expected.
    File(String),
}

impl Place {
    fn of(problem: &StorageError) -> Option<Place> {
        match problem {
            StorageError::IsADirectory(path) => Some(Place::Directory(path.clone())),
            StorageError::NotADirectory { parent, .. } => Some(Place::File(parent.clone())),
            _ => None,
        }
    }
}

/// An empty directory of this process's own, removed on drop.
fn private_dir() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix("ffmpeg-worker-places-").tempdir()
}

/// A sandbox with `sandbox`'s rules (policy, reserved name prefixes, paths put off limits)
/// over `root`.
fn same_rules_over(sandbox: &Sandbox, root: &Path) -> Result<Sandbox, SandboxError> {
    let mut over = Sandbox::new(root)?.with_policy(sandbox.policy().clone());
    for prefix in sandbox.denied_name_prefixes() {
        over.deny_names_starting_with(prefix);
    }
    for denied in sandbox.denied() {
        if let Ok(relative) = denied.strip_prefix(sandbox.root()) {
            over.deny(relative);
        }
    }
    Ok(over)
}

/// `command` resolved in place (the files in `sandbox`'s data directory), then where it writes
/// checked there: an output or written option file onto a directory or below a file is
/// [`SubmitError::OutputConflict`] (a bucket's answer), any other refusal the sandbox's.
/// Blocking.
pub(super) fn check_places_in_place(sandbox: &Sandbox, command: &Command) -> Result<ResolvedCommand, SubmitError> {
    let resolved = sandbox.resolve_command(command).map_err(|e| directory_output(sandbox, command, e))?;
    let places = WrittenPlaces::of(&resolved);
    match check_writable_in(sandbox.root(), &places.files, &places.dirs) {
        Ok(()) => Ok(resolved),
        Err(problem) => Err(places.conflict(problem)),
    }
}

/// `error`, the sandbox's refusal of `command` in place, as [`SubmitError::OutputConflict`]
/// when it refused a file the argument writes (an output URL, or an option naming a written
/// file: `-segment_list`, `-hls_segment_filename`, `-passlogfile`, ...) because the data
/// directory holds a directory there, or a file above it: a bucket's answer for the same
/// command. As itself otherwise (an input that is a directory, the data directory itself, a
/// FIFO, a device: 422). Blocking.
///
/// Where the argument writes comes from the command resolved by the same rules over an empty
/// directory (the sandbox stopped at the refusal), checked against the data directory.
pub(crate) fn directory_output(sandbox: &Sandbox, command: &Command, error: SandboxError) -> SubmitError {
    let position = match &error {
        SandboxError::NotAFile { position, .. }
        | SandboxError::Path { position, problem: PathProblem::NotAFile | PathProblem::NotADirectory, .. } => *position,
        _ => return error.into(),
    };
    let written = || {
        let empty = private_dir().ok()?;
        let resolved = same_rules_over(sandbox, empty.path()).ok()?.resolve_command(command).ok()?;
        let places = WrittenPlaces::of(&resolved).of_argument(position);
        check_writable_in(sandbox.root(), &places.files, &places.dirs).err().map(|problem| places.conflict(problem))
    };
    written().unwrap_or_else(|| error.into())
}

//! Glob inputs (`-pattern_type glob -i 'seq/*.png'`) expanded right before a run: the
//! directory is listed here, every match is checked by the sandbox
//! ([`Sandbox::glob_matches`]: symlinks leading out, non-regular files, reserved paths;
//! dot-files never match), and ffmpeg reads a numbered sequence of the matches, in glob's
//! order, from a private directory of this run ([`ResolvedCommand::set_glob_sequence`]).
//!
//! Each entry of that sequence is a hard link to the checked file, made without following
//! symlinks and verified to be a regular file afterwards; where the data directory is on
//! another file system than the temporary directory, a copy, read through a descriptor opened
//! with `O_NOFOLLOW`. Either way ffmpeg opens names in a directory only this process can
//! write (mode 0700), so a symlink swapped into the data directory after the check is never
//! followed: there is no check-then-use gap. What ffmpeg sees is what `glob()` would have
//! given it (the same files, sorted by bytes as in the C locale ffmpeg runs in), so
//! `-framerate`, `-start_number`-free numbering and durations behave as in a plain run.
//!
//! Everything here does blocking file-system work: call it from `spawn_blocking`.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use ffmpeg_core::sandbox::{ResolvedCommand, ResolvedPath, Sandbox, SandboxError};

use crate::model::JobId;
use crate::orphans::ScratchDir;

/// Why a glob input could not be prepared. The message is what the job's `error` says.
#[derive(Debug, thiserror::Error)]
pub enum GlobError {
    /// No file matches the pattern (ffmpeg would fail to open the pattern as a name).
    #[error("input `{pattern}`: the glob pattern matches no file")]
    NoMatch {
        /// The pattern, relative to the data directory.
        pattern: String,
    },
    /// A match the sandbox refuses.
    #[error(transparent)]
    Refused(#[from] SandboxError),
    /// A match changed into something other than a regular file while it was being linked.
    #[error("input `{pattern}`: the match `{path}` changed while the job started; submit it again")]
    Changed {
        /// The pattern, relative to the data directory.
        pattern: String,
        /// The match, relative to the data directory.
        path: String,
    },
    /// The directory could not be listed or the sequence not be made.
    #[error("input `{pattern}`: cannot prepare the glob's files: {source}")]
    Io {
        /// The pattern, relative to the data directory.
        pattern: String,
        /// What the file system reported.
        #[source]
        source: io::Error,
    },
}

/// Expands every glob input of `command`: lists its directory, checks the matches with
/// `sandbox`, links (or copies) them into a fresh private directory under `scratch_root`
/// (named after `job`, like the runner's scratch directories, so recovery removes it after a
/// crash) and points the command at it. Returns that directory, which must live until ffmpeg
/// has finished; `None` when the command has no glob input. Blocking.
///
/// # Errors
/// [`GlobError`]: no match, a refused match, a match that changed, an I/O failure.
pub fn expand(
    sandbox: &Sandbox,
    command: &mut ResolvedCommand,
    job: &JobId,
    scratch_root: &Path,
) -> Result<Option<ScratchDir>, GlobError> {
    let globs: Vec<_> = command.glob_inputs().map(|(index, glob)| (index, glob.clone())).collect();
    if globs.is_empty() {
        return Ok(None);
    }
    let io_error = |pattern: &str| {
        let pattern = pattern.to_owned();
        move |source| GlobError::Io { pattern: pattern.clone(), source }
    };
    let first = globs[0].1.relative().display().to_string();
    let scratch = ScratchDir::create(scratch_root, job).map_err(io_error(&first))?;
    // ffmpeg gets the sequence's path as text (`file:DIR/%06d.EXT`): a directory whose path is
    // not UTF-8 would reach it mangled.
    if scratch.path().to_str().is_none() {
        let message = format!(
            "the temporary directory `{}` is not valid UTF-8, so ffmpeg cannot be given the \
             matches' path; set TMPDIR to a UTF-8 path",
            scratch_root.display()
        );
        return Err(io_error(&first)(io::Error::new(io::ErrorKind::InvalidInput, message)));
    }
    for (index, glob) in globs {
        let pattern = glob.relative().display().to_string();
        let position = command.command().inputs()[index].position();
        let names: Vec<String> = match fs::read_dir(glob.dir().as_path()) {
            Ok(entries) => entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error(&pattern)(e)),
        };
        let matches = sandbox.glob_matches(&glob, names, position)?;
        let Some(first_match) = matches.first() else { return Err(GlobError::NoMatch { pattern }) };
        let extension = glob.extension_for(first_match);
        let dir = scratch.path().join(format!("glob-{index}"));
        fs::create_dir(&dir).map_err(io_error(&pattern))?;
        for (n, matched) in matches.iter().enumerate() {
            let dot = if extension.is_empty() { "" } else { "." };
            let entry = dir.join(format!("{n:06}{dot}{extension}"));
            link_or_copy(matched, &entry).map_err(|e| match e {
                LinkError::Changed => GlobError::Changed { pattern: pattern.clone(), path: relative(matched) },
                LinkError::Io(source) => GlobError::Io { pattern: pattern.clone(), source },
            })?;
        }
        command.set_glob_sequence(index, dir, extension);
    }
    Ok(Some(scratch))
}

fn relative(path: &ResolvedPath) -> String {
    path.relative().display().to_string()
}

enum LinkError {
    Changed,
    Io(io::Error),
}

/// `entry` becomes the regular file at `matched`: a hard link (`linkat` without
/// `AT_SYMLINK_FOLLOW`, so a symlink swapped in is linked as a symlink, and refused), else a
/// copy read through `O_NOFOLLOW`.
fn link_or_copy(matched: &ResolvedPath, entry: &Path) -> Result<(), LinkError> {
    match fs::hard_link(matched.as_path(), entry) {
        Ok(()) => {
            let meta = fs::symlink_metadata(entry).map_err(LinkError::Io)?;
            if meta.is_file() {
                Ok(())
            } else {
                let _ = fs::remove_file(entry);
                Err(LinkError::Changed)
            }
        }
        Err(_) => {
            let nofollow = i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0);
            let mut source = match fs::OpenOptions::new().read(true).custom_flags(nofollow).open(matched.as_path()) {
                Ok(file) => file,
                // ELOOP: the last component is a symlink now.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                    return Err(LinkError::Changed);
                }
                Err(e) => return Err(LinkError::Io(e)),
            };
            if !source.metadata().map_err(LinkError::Io)?.is_file() {
                return Err(LinkError::Changed);
            }
            let mut target = fs::OpenOptions::new().write(true).create_new(true).open(entry).map_err(LinkError::Io)?;
            io::copy(&mut source, &mut target).map_err(LinkError::Io)?;
            Ok(())
        }
    }
}

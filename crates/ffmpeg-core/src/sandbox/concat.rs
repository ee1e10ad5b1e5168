//! The files a concat list names (`-f concat -i list.txt`, or a list ffmpeg recognises by its
//! `ffconcat version 1.0` header), checked by the sandbox like the command's own inputs.
//!
//! ffmpeg's concat demuxer opens each `file` entry itself, relative to the list's directory,
//! long after the command was checked; its safe mode (the only one the policy allows) refuses
//! names with anything but `[A-Za-z0-9_-]`, `.` (not first in a component) and `/` between
//! components, but it follows symlinks wherever they lead. [`Sandbox::concat_entries`] resolves
//! every entry as an input path, so an entry that leaves the data directory (`..`, a symlink
//! leading out), names a protocol or a reserved path is refused with the rule it breaks, before
//! ffmpeg starts; the caller reads the list (this crate does no I/O) and, for a list whose
//! entries are lists themselves, calls it again for them.

use std::path::Path;

use super::path::{Want, protocol_prefix};
use super::{PathProblem, ResolvedPath, Sandbox, SandboxError};
use crate::duration::concat::{is_safe_file_name, parse_concat_list};

impl Sandbox {
    /// The entries of the concat list `list` (its text is `text`), each resolved like an
    /// input relative to the list's directory, in list order, without repeats. Entries whose
    /// names ffmpeg's safe mode refuses (`Unsafe file name`: spaces, a leading `.`, `..`, an
    /// absolute path, ...) but the sandbox accepts are left out: ffmpeg never opens them, it
    /// fails the run naming them. Checks the file system (symlinks, file types): blocking.
    ///
    /// # Errors
    /// The first entry the sandbox refuses (escaping the data directory, a protocol, an
    /// absolute path, a directory or other non-regular file, a reserved path), as
    /// [`SandboxError::Path`] naming the entry and the list; `position` and `argument` are
    /// those of the command's input that leads to the list.
    ///
    /// ```
    /// use ffmpeg_core::sandbox::Sandbox;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// # std::fs::create_dir(dir.path().join("lists"))?;
    /// let sandbox = Sandbox::new(dir.path())?;
    /// let list = sandbox.resolve_input("lists/all.txt", 4)?;
    /// let entries = sandbox.concat_entries(&list, "file a.mp4\nfile 'sub/b.mp4'\n", 4, "lists/all.txt")?;
    /// assert_eq!(entries[1].relative(), std::path::Path::new("lists/sub/b.mp4"));
    ///
    /// let refused = sandbox.concat_entries(&list, "file ../../x.mp4\n", 4, "lists/all.txt").unwrap_err();
    /// assert_eq!(
    ///     refused.to_string(),
    ///     "argument 4 `lists/all.txt`: entry `../../x.mp4` of concat list `lists/all.txt`: \
    ///      path escapes the data directory"
    /// );
    /// assert_eq!(refused.rule().as_str(), "path-escapes");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn concat_entries(
        &self,
        list: &ResolvedPath,
        text: &str,
        position: usize,
        argument: &str,
    ) -> Result<Vec<ResolvedPath>, SandboxError> {
        // ffmpeg makes each entry absolute against the list's URL (`ff_make_absolute_url`).
        let dir = list.relative().parent().unwrap_or(Path::new(""));
        let mut entries: Vec<ResolvedPath> = Vec::new();
        for entry in parse_concat_list(text) {
            let name = entry.file;
            let joined = if name.starts_with('/') || dir.as_os_str().is_empty() {
                name.clone()
            } else {
                format!("{}/{name}", dir.display())
            };
            let resolved = match protocol_prefix(&name) {
                Some(scheme) => Err(PathProblem::Protocol(scheme.to_owned())),
                None => self.resolve_path(&joined, Want::File),
            };
            let resolved = resolved.map_err(|problem| SandboxError::Path {
                position,
                argument: argument.to_owned(),
                context: format!("entry `{name}` of concat list `{}`", list.relative().display()),
                problem,
            })?;
            if is_safe_file_name(&name) && !entries.contains(&resolved) {
                entries.push(resolved);
            }
        }
        Ok(entries)
    }
}

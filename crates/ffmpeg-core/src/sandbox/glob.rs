//! Glob inputs (`-pattern_type glob -i 'seq/*.png'`): the pattern is checked at submit, its
//! matches are listed by the caller right before the run and checked here one by one, and
//! ffmpeg gets them as a numbered sequence the caller made ([`ResolvedCommand::set_glob_sequence`]),
//! never the pattern: it cannot match a name the sandbox did not check.
//!
//! ffmpeg 5.1's image2 demuxer runs glibc `glob()` on the URL with `GLOB_BRACE` (so
//! `seq/{../../x,y}.png` names files two levels up), through every symlink, at run time; on a
//! `file:` URL it matches nothing. Here only `*`, `?` and `[...]` in the last path component
//! are accepted ([`pattern::glob_matches`]); braces, backslashes and wildcards in directory
//! components are refused, and so is a pattern whose name starts with `.` (dot-files never
//! match).

use std::path::{Path, PathBuf};

use super::path::Want;
use super::{PathProblem, ResolvedPath, Sandbox, SandboxError};
use crate::pattern;

/// A glob input: a directory inside the data directory and a wildcard pattern for names in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobInput {
    pub(super) dir: ResolvedPath,
    pub(super) pattern: String,
    pub(super) sequence: Option<GlobSequence>,
}

/// Where the caller put the matches of a glob input for ffmpeg to read, as
/// `DIR/000000.EXT`, `DIR/000001.EXT`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GlobSequence {
    pub(super) dir: PathBuf,
    pub(super) extension: String,
}

impl GlobInput {
    /// The directory searched (a directory path, which need not exist at submit).
    pub fn dir(&self) -> &ResolvedPath {
        &self.dir
    }
    /// The wildcard pattern for names in [`GlobInput::dir`], e.g. `*.png`.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
    /// The pattern as written, relative to the data directory (`seq/*.png`).
    pub fn relative(&self) -> PathBuf {
        self.dir.relative().join(&self.pattern)
    }
    /// The extension the numbered sequence keeps (from the pattern, else from the first
    /// match), so that ffmpeg picks the same image decoder; empty when neither has one.
    pub fn extension_for(&self, first_match: &ResolvedPath) -> String {
        let of = |name: &str| {
            Path::new(name)
                .extension()
                .and_then(|e| e.to_str())
                .filter(|e| !e.contains(['*', '?', '[', ']']))
                .map(str::to_owned)
        };
        of(&self.pattern).or_else(|| of(&first_match.relative().to_string_lossy())).unwrap_or_default()
    }
}

impl Sandbox {
    /// Checks a glob input's URL: only the last component may hold wildcards, no braces or
    /// backslashes, not a dot-file pattern; the directory is resolved like any path.
    pub(super) fn resolve_glob(&self, url: &str, position: usize) -> Result<GlobInput, SandboxError> {
        let problem = |reason: &str| PathProblem::GlobSyntax(reason.to_owned()).at(position, url);
        if url.contains(['{', '}']) {
            return Err(problem(
                "braces are not allowed (ffmpeg's glob expands `{a,b}` to several paths, `..` included)",
            ));
        }
        if url.contains('\\') {
            return Err(problem("backslashes are not allowed"));
        }
        let (dir, name) = url.rsplit_once('/').unwrap_or(("", url));
        if dir.contains(['*', '?', '[']) {
            return Err(problem("wildcards are only allowed in the file name, not in directories"));
        }
        if name.is_empty() || name == "." || name == ".." {
            return Err(PathProblem::NotAFile.at(position, url));
        }
        if name.starts_with('.') {
            return Err(problem("a pattern may not match dot-files"));
        }
        // Protocols, absolute paths and escapes are refused as for any path.
        if let Err(problem) = self.resolve_path(url, Want::File).map(drop).or_else(|problem| match problem {
            // The pattern itself is not a file; only its syntax and prefix matter here.
            PathProblem::NotAFile | PathProblem::Denied => Ok(()),
            problem => Err(problem),
        }) {
            return Err(problem.at(position, url));
        }
        let dir = self
            .resolve_path(if dir.is_empty() { "." } else { dir }, Want::Directory)
            .map_err(|p| p.at(position, url))?;
        Ok(GlobInput { dir, pattern: name.to_owned(), sequence: None })
    }

    /// The matches of `glob` among `names` (the entries of its directory, as listed by the
    /// caller right before the run), each resolved like an input path, sorted by bytes as
    /// glibc's `glob()` sorts them in the C locale ffmpeg runs in. Names starting with `.`
    /// never match. Checks the file system (symlinks, file types): blocking.
    ///
    /// # Errors
    /// The first match the sandbox refuses (a symlink leading out of the data directory, a
    /// directory or other non-regular file, a reserved path), as [`SandboxError::Path`]
    /// naming the match; `position` is the input URL's.
    pub fn glob_matches(
        &self,
        glob: &GlobInput,
        names: impl IntoIterator<Item = String>,
        position: usize,
    ) -> Result<Vec<ResolvedPath>, SandboxError> {
        let mut matched: Vec<String> = names.into_iter().filter(|n| pattern::glob_matches(&glob.pattern, n)).collect();
        matched.sort_unstable();
        matched.dedup();
        let argument = glob.relative().to_string_lossy().into_owned();
        matched
            .into_iter()
            .map(|name| {
                let relative = glob.dir.relative().join(&name);
                let relative = relative.to_string_lossy();
                self.resolve_path(&relative, Want::File).map_err(|problem| SandboxError::Path {
                    position,
                    argument: argument.clone(),
                    context: format!("match `{relative}`"),
                    problem,
                })
            })
            .collect()
    }
}

//! Path containment and the security policy: every input and output of a command, and every
//! file named inside its options and filter graphs, is resolved against a data directory, and
//! every option, filter and format is checked against a [`Policy`].
//!
//! Only relative paths are accepted. Absolute paths, `..` that escapes, symlinks that lead outside,
//! `-`, `pipe:`, `fd:` and every other URL scheme (`http:`, `concat:`, `subfile:`, `data:`, ...)
//! are refused. The one exception is the `-f null -` idiom (output discarded). Paths need not
//! exist: an earlier job may produce an input. Resolved paths reach ffmpeg as `file:` URLs, so a
//! file named `-part6.mp4` or `http:x` cannot read as an option or a protocol.
//!
//! Resolution is lexical first, then checked against the file system: `..` is applied to the
//! text (and may not climb above the data directory), then every existing component is looked
//! at with `symlink_metadata`, and a symlink must lead (after full canonicalisation) to a place
//! inside the data directory. The path that reaches ffmpeg is the one the sandbox computed, not
//! the text the client wrote.
//!
//! [`Sandbox::resolve_command`] also applies the sandbox's [`Policy`] (by default
//! [`Policy::default`]): forbidden options, filters and formats are refused; file-valued
//! options (`-attach`, `-passlogfile`, `-hls_segment_filename`, ...) and filter options
//! (`subtitles=subs.srt`, `drawtext=textfile=t.txt`, ...) are resolved like inputs and outputs
//! and handed to ffmpeg as absolute paths; `lavfi` inputs are filter graphs, checked like
//! `-filter_complex`. What ffmpeg opens by itself is bound by whitelists that
//! [`ResolvedCommand::to_ffmpeg_args`] adds: `-protocol_whitelist file` (no network, no
//! `pipe:`) and `-format_whitelist` of the allowed demuxers (no HLS or DASH playlists, which
//! read any file they name: checked with ffmpeg 5.1, an HLS playlist in the data directory
//! naming `/abs/seg.ts` is read, even when named `x.txt` and only probed). `docs/security.md`
//! has the threat model, the policy table and what stays possible.
//!
//! Invariant: [`ResolvedPath`] has no public constructor; only [`Sandbox`] builds one.
//!
//! ```
//! use ffmpeg_core::command::Command;
//! use ffmpeg_core::sandbox::{InputSource, Sandbox};
//!
//! # let dir = tempfile::tempdir()?;
//! let sandbox = Sandbox::new(dir.path())?;
//! let command = Command::parse("-i in/a.mp4 -vf subtitles=subs/a.srt -c:v libx264 out/b.mp4")?;
//! let resolved = sandbox.resolve_command(&command)?;
//! let InputSource::File(input) = &resolved.inputs()[0] else { unreachable!() };
//! assert_eq!(input.relative(), std::path::Path::new("in/a.mp4"));
//!
//! let escape = sandbox.resolve("../etc/passwd", 2).unwrap_err();
//! assert_eq!(escape.to_string(), "argument 2 `../etc/passwd`: path escapes the data directory");
//!
//! let command = Command::parse("-i in.mp4 -vf subtitles=/etc/passwd out.mp4")?;
//! let refused = sandbox.resolve_command(&command).unwrap_err();
//! assert_eq!(
//!     refused.to_string(),
//!     "argument 3 `-vf subtitles=/etc/passwd`: filter `subtitles` option `filename`: \
//!      absolute paths are not allowed"
//! );
//! assert_eq!(refused.rule(), "absolute-path");
//! assert_eq!(refused.argument(), Some((3, "-vf subtitles=/etc/passwd")));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::command::{Command, Opt};
use crate::filtergraph::{self, FilterArg, FilterGraphError};
use crate::policy::{
    self, Access, FileUse, FilterOptionCheck, FilterTreatment, OptionTreatment, PathBase, Policy, rule,
};

/// A data directory that paths are resolved against, with the policy commands must follow.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Canonical absolute path of the data directory.
    root: PathBuf,
    /// Canonical absolute paths inside `root` that no job may read or write (e.g. a database file).
    denied: Vec<PathBuf>,
    /// Which options, filters and formats commands may use.
    policy: Policy,
}

/// A path inside the sandbox's data directory. Only [`Sandbox::resolve`] builds one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResolvedPath {
    absolute: PathBuf,
    relative: PathBuf,
}

/// Where an input comes from once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputSource {
    /// A file inside the data directory.
    File(ResolvedPath),
    /// A `-f lavfi` input: its "URL" is a filter graph, checked against the policy.
    Lavfi {
        /// The graph as handed to ffmpeg: the client's, or rewritten with resolved paths
        /// (`movie=logo.png` becomes `movie=/data/logo.png:format_opts=...`).
        graph: String,
    },
}

/// Where an output goes once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputTarget {
    /// A file inside the data directory.
    File(ResolvedPath),
    /// `-f null -`: output discarded.
    Null,
}

/// A file named inside an option value or a filter option, resolved by the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionFile {
    position: usize,
    context: String,
    path: ResolvedPath,
    file_use: FileUse,
    output: Option<usize>,
}

/// A command whose every input, output, file-valued option and filter graph has been checked
/// and resolved by a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct ResolvedCommand {
    command: Command,
    inputs: Vec<InputSource>,
    outputs: Vec<OutputTarget>,
    /// New values of options, by the option's position.
    values: BTreeMap<usize, String>,
    files: Vec<OptionFile>,
    format_whitelist: String,
}

/// What is wrong with a path found inside an option or a filter graph, or with an input path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathProblem {
    /// An absolute path.
    Absolute,
    /// `..` leads outside the data directory, or a symlink points outside it.
    Escapes,
    /// A protocol or special name (`http:`, `pipe:`, `-`, ...) instead of a plain path; the
    /// protocol name or special form, e.g. `http:` or `-`.
    Protocol(String),
    /// Empty, NUL bytes, a trailing `/`, the data directory itself, or an existing directory
    /// or other non-regular file.
    NotAFile,
    /// Where a directory is needed: an existing file that is not a directory.
    NotADirectory,
    /// A path the operator has put off limits.
    Denied,
    /// A glob pattern in an input path (`%*`, `%?`, `%[`, ...): the image2 demuxer expands it
    /// (5.1's default pattern type is `glob_sequence`) to names the sandbox never saw.
    Glob,
    /// `..` in a value relative to the output's directory.
    Parent,
}

/// Why a command or path was refused. Messages name the argument: "argument 4 `../x.mp4`: path
/// escapes the data directory"; [`SandboxError::rule`] gives a stable id of the broken rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The data directory itself cannot be used (missing, not a directory, unreadable).
    #[error("data directory `{path}` cannot be used: {reason}")]
    Root {
        /// The data directory as given.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// An absolute path.
    #[error(
        "argument {position} `{argument}`: absolute paths are not allowed; use a path relative to the data directory"
    )]
    Absolute {
        /// 1-based position of the argument.
        position: usize,
        /// The argument as written.
        argument: String,
    },
    /// `..` leads outside the data directory, or a symlink points outside it.
    #[error("argument {position} `{argument}`: path escapes the data directory")]
    Escapes {
        /// 1-based position of the argument.
        position: usize,
        /// The argument as written.
        argument: String,
    },
    /// A protocol or special name (`http:`, `pipe:`, `-`, ...) instead of a plain file path.
    #[error("argument {position} `{argument}`: only plain file paths are allowed, not `{scheme}`")]
    Protocol {
        /// 1-based position of the argument.
        position: usize,
        /// The argument as written.
        argument: String,
        /// The protocol name or special form, e.g. `http:` or `-`.
        scheme: String,
    },
    /// An empty path, a path ending in `/`, one containing a NUL byte, the data directory
    /// itself, or an existing directory or other non-regular file (FIFO, socket, device).
    #[error("argument {position} `{argument}`: not a file path")]
    NotAFile {
        /// 1-based position of the argument.
        position: usize,
        /// The argument as written.
        argument: String,
    },
    /// A path the operator has put off limits (e.g. the job database).
    #[error("argument {position} `{argument}`: this path is reserved")]
    Denied {
        /// 1-based position of the argument.
        position: usize,
        /// The argument as written.
        argument: String,
    },
    /// A path inside an option value or filter graph (or a glob pattern in an input) was
    /// refused: "argument 5 `-vf subtitles=/etc/passwd`: filter `subtitles` option
    /// `filename`: absolute paths are not allowed".
    #[error("argument {position} `{argument}`: {}", with_context(.context, .problem))]
    Path {
        /// 1-based position of the option (or input URL).
        position: usize,
        /// The option as written with its value (`-vf subtitles=/etc/passwd`), or the URL.
        argument: String,
        /// Where in the argument, e.g. "filter `subtitles` option `filename`"; may be empty.
        context: String,
        /// What is wrong with the path.
        problem: PathProblem,
    },
    /// An option, option value, filter or format that the policy forbids.
    #[error("argument {position} `{argument}`: {reason}")]
    Forbidden {
        /// 1-based position of the option (or input URL, for a lavfi graph).
        position: usize,
        /// The option as written with its value (`-vstats_file x`).
        argument: String,
        /// The rule id: one of [`rule::FORBIDDEN_OPTION`], [`rule::FORBIDDEN_VALUE`],
        /// [`rule::FORBIDDEN_FILTER`], [`rule::FORBIDDEN_FORMAT`].
        rule: &'static str,
        /// What is refused and why, e.g. "option `-report` is not allowed: writes a log file
        /// ...".
        reason: String,
    },
    /// A filter graph that does not parse.
    #[error("argument {position} `{argument}`: invalid filter graph: {error}")]
    FilterGraph {
        /// 1-based position of the option (or lavfi input URL).
        position: usize,
        /// The option as written with its value, or the URL.
        argument: String,
        /// What the filtergraph parser reported (byte offsets into the graph).
        error: FilterGraphError,
    },
    /// An output, or a file an option writes, is one of the command's own inputs (or a file
    /// an option reads).
    #[error(
        "argument {position} `{argument}`: a job's outputs may not overwrite its own inputs \
         (argument {input_position} `{input}`)"
    )]
    OutputOverwritesInput {
        /// 1-based position of the output URL (or of the writing option).
        position: usize,
        /// The output URL or option as written.
        argument: String,
        /// 1-based position of the input URL (or of the reading option).
        input_position: usize,
        /// The input URL or option as written.
        input: String,
    },
}

fn with_context(context: &str, problem: &PathProblem) -> String {
    if context.is_empty() { problem.to_string() } else { format!("{context}: {problem}") }
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathProblem::Absolute => f.write_str("absolute paths are not allowed"),
            PathProblem::Escapes => f.write_str("path escapes the data directory"),
            PathProblem::Protocol(scheme) => {
                write!(f, "only plain file paths are allowed, not `{scheme}`")
            }
            PathProblem::NotAFile => f.write_str("not a file path"),
            PathProblem::NotADirectory => f.write_str("not a directory path"),
            PathProblem::Denied => f.write_str("this path is reserved"),
            PathProblem::Glob => f.write_str(
                "glob patterns (`%*`, `%?`, `%[`, `%{`) are not allowed: they expand to names \
                 the sandbox never checked",
            ),
            PathProblem::Parent => {
                f.write_str("`..` is not allowed here: the value is relative to the output's directory")
            }
        }
    }
}

impl PathProblem {
    /// The stable rule id ([`rule`]) of the problem.
    pub fn rule(&self) -> &'static str {
        match self {
            PathProblem::Absolute => rule::ABSOLUTE_PATH,
            PathProblem::Escapes => rule::PATH_ESCAPES,
            PathProblem::Protocol(_) => rule::PROTOCOL,
            PathProblem::NotAFile | PathProblem::NotADirectory => rule::NOT_A_FILE,
            PathProblem::Denied => rule::RESERVED_PATH,
            PathProblem::Glob => rule::GLOB_PATTERN,
            PathProblem::Parent => rule::PARENT_DIRECTORY,
        }
    }

    /// The error for this problem at a plain path argument (an input or output URL).
    fn at(self, position: usize, argument: &str) -> SandboxError {
        let argument = argument.to_owned();
        match self {
            PathProblem::Absolute => SandboxError::Absolute { position, argument },
            PathProblem::Escapes => SandboxError::Escapes { position, argument },
            PathProblem::Protocol(scheme) => SandboxError::Protocol { position, argument, scheme },
            PathProblem::NotAFile | PathProblem::NotADirectory => SandboxError::NotAFile { position, argument },
            PathProblem::Denied => SandboxError::Denied { position, argument },
            problem @ (PathProblem::Glob | PathProblem::Parent) => {
                SandboxError::Path { position, argument, context: String::new(), problem }
            }
        }
    }
}

impl SandboxError {
    /// The offending argument: its 1-based position in the split command line and its text
    /// (for an option, the option with its value as in [`Opt`]'s `Display`). `None` for
    /// [`SandboxError::Root`].
    pub fn argument(&self) -> Option<(usize, &str)> {
        match self {
            SandboxError::Root { .. } => None,
            SandboxError::Absolute { position, argument }
            | SandboxError::Escapes { position, argument }
            | SandboxError::Protocol { position, argument, .. }
            | SandboxError::NotAFile { position, argument }
            | SandboxError::Denied { position, argument }
            | SandboxError::Path { position, argument, .. }
            | SandboxError::Forbidden { position, argument, .. }
            | SandboxError::FilterGraph { position, argument, .. }
            | SandboxError::OutputOverwritesInput { position, argument, .. } => Some((*position, argument)),
        }
    }

    /// The stable id of the rule the command broke, one of the constants in [`rule`]:
    /// `data-directory`, `absolute-path`, `path-escapes`, `protocol`, `not-a-file`,
    /// `reserved-path`, `glob-pattern`, `parent-directory`, `forbidden-option`,
    /// `forbidden-value`, `forbidden-filter`, `forbidden-format`, `filtergraph-syntax`,
    /// `output-overwrites-input`.
    pub fn rule(&self) -> &'static str {
        match self {
            SandboxError::Root { .. } => rule::DATA_DIRECTORY,
            SandboxError::Absolute { .. } => rule::ABSOLUTE_PATH,
            SandboxError::Escapes { .. } => rule::PATH_ESCAPES,
            SandboxError::Protocol { .. } => rule::PROTOCOL,
            SandboxError::NotAFile { .. } => rule::NOT_A_FILE,
            SandboxError::Denied { .. } => rule::RESERVED_PATH,
            SandboxError::Path { problem, .. } => problem.rule(),
            SandboxError::Forbidden { rule, .. } => rule,
            SandboxError::FilterGraph { .. } => rule::FILTERGRAPH_SYNTAX,
            SandboxError::OutputOverwritesInput { .. } => rule::OUTPUT_OVERWRITES_INPUT,
        }
    }
}

impl ResolvedPath {
    /// The absolute path inside the data directory.
    pub fn as_path(&self) -> &Path {
        &self.absolute
    }
    /// The path relative to the data directory, as jobs report it.
    pub fn relative(&self) -> &Path {
        &self.relative
    }
    /// The `file:` URL handed to ffmpeg, e.g. `file:/data/out/a.mp4`. The `file:` prefix makes
    /// ffmpeg's protocol lookup (`url_find_protocol()` in `libavformat/avio.c`) choose the
    /// file protocol whatever the name contains (`-part6.mp4`, `x:y`), and printf-style
    /// patterns still work: the image2 and segment muxers expand `%03d` in the whole URL
    /// (checked with ffmpeg 5.1: `file:/d/t%03d.png` writes `/d/t001.png`, ...; an HLS
    /// playlist `file:/d/index.m3u8` gets its segments `/d/index0.ts`, ... beside it).
    pub fn to_file_url(&self) -> String {
        format!("file:{}", self.absolute.display())
    }
}

impl InputSource {
    /// The file, for a file input.
    pub fn file(&self) -> Option<&ResolvedPath> {
        match self {
            InputSource::File(path) => Some(path),
            InputSource::Lavfi { .. } => None,
        }
    }
}

impl OptionFile {
    /// 1-based position of the option that names the file (`-vf`, `-hls_segment_filename`).
    pub fn position(&self) -> usize {
        self.position
    }
    /// Where the file is named: "option `-passlogfile`", "filter `psnr` option `stats_file`".
    pub fn context(&self) -> &str {
        &self.context
    }
    /// The resolved file; a pattern or a prefix of files for
    /// [`Naming::Pattern`](crate::policy::Naming::Pattern) and
    /// [`Naming::Prefix`](crate::policy::Naming::Prefix) (see [`OptionFile::file_use`]).
    pub fn path(&self) -> &ResolvedPath {
        &self.path
    }
    /// How ffmpeg uses the file.
    pub fn file_use(&self) -> FileUse {
        self.file_use
    }
    /// The index of the output the file belongs to: set for output options and per-output
    /// filters (`-vf`, `-af`, `-filter`); `None` for global graphs (`-filter_complex`),
    /// lavfi inputs and input options.
    pub fn output(&self) -> Option<usize> {
        self.output
    }
}

/// What a path argument must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    File,
    Directory,
}

/// Where an option appears.
#[derive(Debug, Clone, Copy)]
enum Side<'a> {
    Global,
    Input,
    /// An output: its index and its directory relative to the data directory (empty for
    /// `-f null -`).
    Output(usize, &'a Path),
}

impl Side<'_> {
    fn output(self) -> Option<usize> {
        match self {
            Side::Output(index, _) => Some(index),
            Side::Global | Side::Input => None,
        }
    }
}

/// What checking a command collects.
#[derive(Debug, Default)]
struct Checked {
    values: BTreeMap<usize, String>,
    files: Vec<OptionFile>,
}

impl Sandbox {
    /// A sandbox rooted at `root`, which must be an existing directory (it is canonicalised),
    /// with [`Policy::default`].
    ///
    /// # Errors
    /// [`SandboxError::Root`] when `root` does not exist or is not a directory.
    pub fn new(root: impl AsRef<Path>) -> Result<Sandbox, SandboxError> {
        let given = root.as_ref();
        let error = |reason: String| SandboxError::Root { path: given.to_path_buf(), reason };
        let root = fs::canonicalize(given).map_err(|e| error(e.to_string()))?;
        let meta = fs::metadata(&root).map_err(|e| error(e.to_string()))?;
        if !meta.is_dir() {
            return Err(error("not a directory".to_owned()));
        }
        Ok(Sandbox { root, denied: Vec::new(), policy: Policy::default() })
    }

    /// The same sandbox with `policy` instead of its current one.
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> Sandbox {
        self.policy = policy;
        self
    }

    /// Replaces the policy.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// The policy commands are checked against.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Puts `path` off limits: no input or output may resolve to it (or, for a directory, below it).
    /// A path outside the data directory is already off limits and is ignored.
    ///
    /// A relative `path` is taken relative to the data directory. The path need not exist yet:
    /// its longest existing ancestor is canonicalised and the rest appended. Deny a database's
    /// companion files too (SQLite's `-wal`, `-shm`, `-journal`), or deny a directory.
    pub fn deny(&mut self, path: impl AsRef<Path>) {
        let path = self.root.join(path.as_ref());
        if let Some(path) = canonicalize_existing_prefix(&path)
            && path.starts_with(&self.root)
            && !self.denied.contains(&path)
        {
            self.denied.push(path);
        }
    }

    /// The canonical data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves one path argument found at 1-based `position`.
    ///
    /// # Errors
    /// [`SandboxError::Absolute`], [`SandboxError::Escapes`], [`SandboxError::Protocol`],
    /// [`SandboxError::NotAFile`], [`SandboxError::Denied`].
    ///
    /// In order: empty, NUL bytes -> `NotAFile`; `-` -> `Protocol`; a `:` before the first
    /// `/` (`http:`, `concat:`, `pipe:`, `fd:`, `file:`, `c:`) or a `subfile,` prefix ->
    /// `Protocol` (a stricter form of ffmpeg's scheme detection; write `./a:b.mp4` for a file
    /// named `a:b.mp4`); a leading `/` -> `Absolute`; a trailing `/` -> `NotAFile`; `..` above
    /// the data directory, or a symlink (dangling or leading outside) -> `Escapes`; the data
    /// directory itself or an existing non-regular file -> `NotAFile`; a denied path ->
    /// `Denied`. Printf-style patterns (`thumbs/t%03d.png`) are ordinary names here.
    pub fn resolve(&self, argument: &str, position: usize) -> Result<ResolvedPath, SandboxError> {
        self.resolve_path(argument, Want::File).map_err(|problem| problem.at(position, argument))
    }

    /// [`Sandbox::resolve`] without the position; for [`Want::Directory`], directories
    /// (and the data directory itself, and a trailing `/`) are what is wanted.
    fn resolve_path(&self, argument: &str, want: Want) -> Result<ResolvedPath, PathProblem> {
        if argument.is_empty() || argument.contains('\0') {
            return Err(PathProblem::NotAFile);
        }
        if let Some(scheme) = protocol_prefix(argument) {
            return Err(PathProblem::Protocol(scheme.to_owned()));
        }
        if argument.starts_with('/') {
            return Err(PathProblem::Absolute);
        }
        if argument.ends_with('/') && want == Want::File {
            return Err(PathProblem::NotAFile);
        }

        // Lexical normalisation: drop `.` and empty components, apply `..`.
        let mut parts: Vec<&str> = Vec::new();
        for part in argument.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(PathProblem::Escapes);
                    }
                }
                part => parts.push(part),
            }
        }
        if parts.is_empty() && want == Want::File {
            return Err(PathProblem::NotAFile);
        }

        // Walk from the root; `current` stays canonical while its components exist.
        let mut current = self.root.clone();
        let mut exists = true;
        for part in parts {
            current.push(part);
            if !exists {
                continue;
            }
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.file_type().is_symlink() => match fs::canonicalize(&current) {
                    Ok(target) if target.starts_with(&self.root) => current = target,
                    // Leads outside, or dangles (writing through it would create the target).
                    _ => return Err(PathProblem::Escapes),
                },
                Ok(_) => {}
                // Not there (or not searchable: ffmpeg, running as the same user, fails too);
                // nothing below it can be a symlink.
                Err(_) => exists = false,
            }
        }

        match want {
            Want::File => {
                if current == self.root {
                    return Err(PathProblem::NotAFile);
                }
                if exists && fs::metadata(&current).is_ok_and(|meta| !meta.is_file()) {
                    return Err(PathProblem::NotAFile);
                }
            }
            Want::Directory => {
                if exists && fs::metadata(&current).is_ok_and(|meta| !meta.is_dir()) {
                    return Err(PathProblem::NotADirectory);
                }
            }
        }
        if self.denied.iter().any(|denied| current.starts_with(denied)) {
            return Err(PathProblem::Denied);
        }
        let relative = match current.strip_prefix(&self.root) {
            Ok(relative) => relative.to_path_buf(),
            Err(_) => return Err(PathProblem::Escapes),
        };
        Ok(ResolvedPath { absolute: current, relative })
    }

    /// Checks `command` against the policy and resolves every input, output and file named in
    /// an option or filter graph.
    ///
    /// In order: global options; each input's options, then its URL (a file path, or for a
    /// `-f lavfi` input a filter graph); each output's options, then its URL; last, no output
    /// (or file an option writes) may be an input (or a file an option reads). The first
    /// problem is returned.
    ///
    /// # Errors
    /// - A path that [`Sandbox::resolve`] refuses; `-` is accepted only as the output of
    ///   `-f null`. An input path with a glob pattern (`%*`) is [`SandboxError::Path`].
    /// - [`SandboxError::Forbidden`] for an option, value, filter or format the policy
    ///   forbids (also for an input `-f` the policy does not know).
    /// - [`SandboxError::Path`] for a path inside an option or filter graph.
    /// - [`SandboxError::FilterGraph`] for a graph that does not parse.
    /// - [`SandboxError::OutputOverwritesInput`].
    ///
    /// An output whose format is `tee` is refused as [`SandboxError::Protocol`] with scheme
    /// `tee` even when the policy allows the muxer: its URL is a `|`-separated list of further
    /// URLs, which the tee muxer opens without regard to `-protocol_whitelist` (checked with
    /// ffmpeg 5.1: a `tcp:` slave still connects).
    pub fn resolve_command(&self, command: &Command) -> Result<ResolvedCommand, SandboxError> {
        let mut checked = Checked::default();
        for opt in command.global_options() {
            self.check_option(opt, Side::Global, &mut checked)?;
        }

        let mut inputs = Vec::with_capacity(command.inputs().len());
        for input in command.inputs() {
            for opt in input.options() {
                self.check_option(opt, Side::Input, &mut checked)?;
            }
            let lavfi = input.format().is_some_and(|format| format.eq_ignore_ascii_case("lavfi"));
            if lavfi {
                let graph = self
                    .check_graph(input.url(), input.position(), input.url(), None, &mut checked)?
                    .unwrap_or_else(|| input.url().to_owned());
                inputs.push(InputSource::Lavfi { graph });
            } else {
                if has_glob(input.url()) {
                    return Err(PathProblem::Glob.at(input.position(), input.url()));
                }
                inputs.push(InputSource::File(self.resolve(input.url(), input.position())?));
            }
        }

        let mut outputs = Vec::with_capacity(command.outputs().len());
        for (index, output) in command.outputs().iter().enumerate() {
            let target = match (output.url(), output.format()) {
                ("-", Some(format)) if format.eq_ignore_ascii_case("null") => Ok(OutputTarget::Null),
                (url, Some(format)) if format.eq_ignore_ascii_case("tee") => Err(SandboxError::Protocol {
                    position: output.position(),
                    argument: url.to_owned(),
                    scheme: "tee".to_owned(),
                }),
                (url, _) => self.resolve(url, output.position()).map(OutputTarget::File),
            };
            // Options come before their URL on the command line, so their errors come first;
            // options relative to the output's directory need the resolved URL.
            let dir = match &target {
                Ok(OutputTarget::File(path)) => path.relative().parent().unwrap_or(Path::new("")),
                _ => Path::new(""),
            };
            for opt in output.options() {
                self.check_option(opt, Side::Output(index, dir), &mut checked)?;
            }
            outputs.push(target?);
        }

        let resolved = ResolvedCommand {
            command: command.clone(),
            inputs,
            outputs,
            values: checked.values,
            files: checked.files,
            format_whitelist: self.policy.input_format_whitelist(),
        };
        resolved.check_overwrites()?;
        Ok(resolved)
    }

    /// Checks one option against the policy, recording rewritten values and resolved files.
    fn check_option(&self, opt: &Opt, side: Side<'_>, checked: &mut Checked) -> Result<(), SandboxError> {
        let rule = self.policy.option_rule(opt.name());
        let treatment = *rule.treatment();
        let forbidden = |rule_id: &'static str, reason: String| SandboxError::Forbidden {
            position: opt.position(),
            argument: opt.to_string(),
            rule: rule_id,
            reason,
        };
        if treatment == OptionTreatment::Forbidden {
            return Err(forbidden(
                rule::FORBIDDEN_OPTION,
                format!("option `{}` is not allowed: {}", opt.flag(), rule.reason()),
            ));
        }
        let Some(value) = opt.value() else {
            return Ok(());
        };
        match treatment {
            OptionTreatment::Allowed | OptionTreatment::Forbidden => Ok(()),
            OptionTreatment::OnlyValues(_)
            | OptionTreatment::PresetName
            | OptionTreatment::StreamMap
            | OptionTreatment::EncoderParams(_) => policy::check_value(treatment, value).map_err(|why| {
                forbidden(rule::FORBIDDEN_VALUE, format!("option `{}`: {why}; {}", opt.flag(), rule.reason()))
            }),
            OptionTreatment::File(file_use) => {
                let context = format!("option `{}`", opt.flag());
                let path = self.resolve_file(value, file_use, side).map_err(|problem| SandboxError::Path {
                    position: opt.position(),
                    argument: opt.to_string(),
                    context: context.clone(),
                    problem,
                })?;
                if file_use.base == PathBase::DataDirectory {
                    checked.values.insert(opt.position(), path.as_path().display().to_string());
                }
                checked.files.push(OptionFile {
                    position: opt.position(),
                    context,
                    path,
                    file_use,
                    output: side.output(),
                });
                Ok(())
            }
            OptionTreatment::FilterGraph => {
                let argument = opt.to_string();
                if let Some(graph) = self.check_graph(value, opt.position(), &argument, side.output(), checked)? {
                    checked.values.insert(opt.position(), graph);
                }
                Ok(())
            }
            OptionTreatment::Format => match side {
                Side::Input => self.check_input_format(value, opt.position(), &opt.to_string()),
                Side::Output(..) => self.check_output_format(value, opt.position(), &opt.to_string()),
                Side::Global => Ok(()),
            },
            OptionTreatment::NestedOptions => self.check_nested_options(opt, value, side),
        }
    }

    /// Resolves a file-valued option's value for `file_use`.
    fn resolve_file(&self, value: &str, file_use: FileUse, side: Side<'_>) -> Result<ResolvedPath, PathProblem> {
        let want = if file_use.access == Access::ReadDirectory { Want::Directory } else { Want::File };
        match file_use.base {
            PathBase::DataDirectory => self.resolve_path(value, want),
            PathBase::OutputDirectory => {
                // ffmpeg joins the value to the output's directory as text: refuse what could
                // leave it lexically, then resolve the joined path (symlinks included).
                if value.is_empty() || value.contains('\0') {
                    return Err(PathProblem::NotAFile);
                }
                if let Some(scheme) = protocol_prefix(value) {
                    return Err(PathProblem::Protocol(scheme.to_owned()));
                }
                if value.starts_with('/') {
                    return Err(PathProblem::Absolute);
                }
                if value.split('/').any(|part| part == "..") {
                    return Err(PathProblem::Parent);
                }
                let dir = match side {
                    Side::Output(_, dir) => dir,
                    Side::Global | Side::Input => Path::new(""),
                };
                let joined =
                    if dir.as_os_str().is_empty() { value.to_owned() } else { format!("{}/{value}", dir.display()) };
                self.resolve_path(&joined, want)
            }
        }
    }

    /// `-f NAME` on an input (or `movie`'s `format_name`).
    fn check_input_format(&self, name: &str, position: usize, argument: &str) -> Result<(), SandboxError> {
        let reason = match self.policy.input_format_rule(name) {
            Some(rule) if rule.is_allowed() => return Ok(()),
            Some(rule) => format!("input format `{name}` is not allowed: {}", rule.reason()),
            None => format!("`{name}` is not an input format (demuxer) that jobs may use"),
        };
        Err(SandboxError::Forbidden { position, argument: argument.to_owned(), rule: rule::FORBIDDEN_FORMAT, reason })
    }

    /// `-f NAME` on an output, or `-segment_format NAME`.
    fn check_output_format(&self, name: &str, position: usize, argument: &str) -> Result<(), SandboxError> {
        match self.policy.output_format_rule(name) {
            Some(rule) if !rule.is_allowed() => Err(SandboxError::Forbidden {
                position,
                argument: argument.to_owned(),
                rule: rule::FORBIDDEN_FORMAT,
                reason: format!("output format `{name}` is not allowed: {}", rule.reason()),
            }),
            _ => Ok(()),
        }
    }

    /// `-segment_format_options k=v:k=v` and the like: each key checked like an option.
    fn check_nested_options(&self, opt: &Opt, value: &str, side: Side<'_>) -> Result<(), SandboxError> {
        let forbidden = |rule_id: &'static str, reason: String| SandboxError::Forbidden {
            position: opt.position(),
            argument: opt.to_string(),
            rule: rule_id,
            reason,
        };
        let pairs = policy::parse_dictionary(value).map_err(|why| {
            forbidden(
                rule::FORBIDDEN_VALUE,
                format!("option `{}`: not a `key=value:key=value` list ({why})", opt.flag()),
            )
        })?;
        for (key, nested) in pairs {
            let rule = self.policy.option_rule(&key);
            let treatment = *rule.treatment();
            match treatment {
                OptionTreatment::Allowed => {}
                OptionTreatment::Forbidden => {
                    return Err(forbidden(
                        rule::FORBIDDEN_OPTION,
                        format!("option `{}`: `{key}` is not allowed: {}", opt.flag(), rule.reason()),
                    ));
                }
                OptionTreatment::OnlyValues(_)
                | OptionTreatment::PresetName
                | OptionTreatment::StreamMap
                | OptionTreatment::EncoderParams(_) => {
                    policy::check_value(treatment, &nested).map_err(|why| {
                        forbidden(rule::FORBIDDEN_VALUE, format!("option `{}`: `{key}`: {why}", opt.flag()))
                    })?;
                }
                OptionTreatment::Format => {
                    if matches!(side, Side::Output(..)) {
                        self.check_output_format(&nested, opt.position(), &opt.to_string())?;
                    }
                }
                OptionTreatment::File(_) | OptionTreatment::FilterGraph | OptionTreatment::NestedOptions => {
                    return Err(forbidden(
                        rule::FORBIDDEN_OPTION,
                        format!(
                            "option `{}`: `{key}` names a file or further options, which the \
                             sandbox does not resolve inside nested options; give it as `-{key}` \
                             where ffmpeg allows",
                            opt.flag()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Parses and checks a filter graph found at `position` (`argument` as written); returns
    /// the graph rewritten with resolved paths, or `None` when it needs no change.
    fn check_graph(
        &self,
        text: &str,
        position: usize,
        argument: &str,
        output: Option<usize>,
        checked: &mut Checked,
    ) -> Result<Option<String>, SandboxError> {
        let mut graph = filtergraph::parse(text).map_err(|error| SandboxError::FilterGraph {
            position,
            argument: argument.to_owned(),
            error,
        })?;
        let forbidden = |reason: String| SandboxError::Forbidden {
            position,
            argument: argument.to_owned(),
            rule: rule::FORBIDDEN_FILTER,
            reason,
        };
        let mut changed = false;
        for filter in graph.filters_mut() {
            let name = filter.name.clone();
            let rule = self.policy.filter_rule(&name);
            let checks = match *rule.treatment() {
                FilterTreatment::Checked(checks) => checks,
                FilterTreatment::Forbidden => {
                    return Err(forbidden(format!("filter `{name}` is not allowed: {}", rule.reason())));
                }
                _ => continue,
            };
            let mut positional = 0;
            for arg in &mut filter.args {
                let (key, value, index) = match arg {
                    FilterArg::Positional(value) => {
                        positional += 1;
                        (None, value, positional - 1)
                    }
                    FilterArg::Named { key, value } => (Some(key.as_str()), value, usize::MAX),
                };
                let Some(check) = checks.iter().find(|check| check.matches(key, index)) else {
                    continue;
                };
                // An empty value names no file (`drawtext=::t.txt` leaves `fontfile` empty).
                if value.is_empty() && check.check != FilterOptionCheck::SandboxWhitelists {
                    continue;
                }
                let option = key.unwrap_or(check.option);
                let context = format!("filter `{name}` option `{option}`");
                let path_error = |problem: PathProblem| SandboxError::Path {
                    position,
                    argument: argument.to_owned(),
                    context: context.clone(),
                    problem,
                };
                match check.check {
                    FilterOptionCheck::File(file_use) => {
                        let path = self.resolve_file(value, file_use, Side::Global).map_err(path_error)?;
                        *value = path.as_path().display().to_string();
                        checked.files.push(OptionFile { position, context: context.clone(), path, file_use, output });
                        changed = true;
                    }
                    FilterOptionCheck::SubtitlesFile => {
                        let file_use = FileUse {
                            access: Access::Read,
                            base: PathBase::DataDirectory,
                            naming: policy::Naming::Exact,
                        };
                        let path = self.resolve_path(value, Want::File).map_err(path_error)?;
                        *value = format!("{SUBFILE_PREFIX}{}", path.as_path().display());
                        checked.files.push(OptionFile { position, context: context.clone(), path, file_use, output });
                        changed = true;
                    }
                    FilterOptionCheck::InputFormat => {
                        self.check_input_format(value, position, argument)?;
                    }
                    FilterOptionCheck::SandboxWhitelists => {
                        return Err(forbidden(format!(
                            "{context} is not allowed: the sandbox sets it to the inputs' \
                             whitelists"
                        )));
                    }
                    FilterOptionCheck::Forbidden(reason) => {
                        return Err(forbidden(format!("{context} is not allowed: {reason}")));
                    }
                }
            }
            for check in checks {
                if check.check == FilterOptionCheck::SandboxWhitelists {
                    filter.args.push(FilterArg::Named {
                        key: check.option.to_owned(),
                        value: format!(
                            "protocol_whitelist=file:format_whitelist={}",
                            self.policy.input_format_whitelist()
                        ),
                    });
                    changed = true;
                }
            }
        }
        Ok(changed.then(|| graph.to_string()))
    }
}

/// The `subtitles` filter's files go through the `subfile` protocol, whose default protocol
/// whitelist (`file`) then binds the demuxer's own opens; `start 0, end 0` is the whole file.
const SUBFILE_PREFIX: &str = "subfile,,start,0,end,0,,:";

impl ResolvedCommand {
    /// The parsed command.
    pub fn command(&self) -> &Command {
        &self.command
    }
    /// Resolved inputs, in input order: files, or checked `lavfi` graphs.
    pub fn inputs(&self) -> &[InputSource] {
        &self.inputs
    }
    /// Resolved outputs, in output order.
    pub fn outputs(&self) -> &[OutputTarget] {
        &self.outputs
    }
    /// Every file named inside an option value or filter graph, in command order: read
    /// (`-attach`, `subtitles=...`) and written (`-hls_segment_filename`, `psnr=stats_file=...`).
    pub fn option_files(&self) -> &[OptionFile] {
        &self.files
    }
    /// The files written because of output `output_index`'s own options and filters, besides
    /// the output itself: the `-hls_segment_filename` pattern, `-segment_list`, the
    /// `-passlogfile` prefix, `-vf psnr=stats_file=...`, ... (see [`OptionFile::path`] for
    /// patterns and prefixes). Files written by global graphs (`-filter_complex`) belong to
    /// no output: see [`ResolvedCommand::option_files`]. Empty for an index out of range.
    pub fn output_side_files(&self, output_index: usize) -> Vec<&ResolvedPath> {
        self.files
            .iter()
            .filter(|file| {
                file.output == Some(output_index) && matches!(file.file_use.access, Access::Write | Access::ReadWrite)
            })
            .map(|file| &file.path)
            .collect()
    }

    /// The argument list for ffmpeg (without the program name): global options, then for each
    /// input its options, `-protocol_whitelist file`, `-format_whitelist LIST` and
    /// `-i file:/abs/path` (or `-i GRAPH` for a lavfi input), then for each output its options,
    /// `-protocol_whitelist file` and `file:/abs/path` (or just `-` for `-f null -`). Option
    /// values the sandbox resolved are replaced: file paths by absolute paths, filter graphs
    /// by their rewritten form.
    ///
    /// The whitelists come after the client's own options because the last value of an
    /// AVOption wins (and the policy refuses clients' whitelists anyway). On an output,
    /// `-protocol_whitelist file` binds the muxer's own opens (HLS and DASH segments and
    /// playlists, `segment` lists) to local files too. `LIST` is
    /// [`Policy::input_format_whitelist`]. An `OPT_EXIT` option written last without its
    /// argument (`-h`) stays last, as in [`Command::to_args`].
    ///
    /// ```
    /// use ffmpeg_core::command::Command;
    /// use ffmpeg_core::sandbox::Sandbox;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let sandbox = Sandbox::new(dir.path())?;
    /// let root = sandbox.root().display().to_string();
    /// let formats = sandbox.policy().input_format_whitelist();
    /// let command = Command::parse("-y -ss 1 -i a.mp4 -an -passlogfile logs/x b.mp4")?;
    /// let resolved = sandbox.resolve_command(&command)?;
    /// assert_eq!(resolved.to_ffmpeg_args(), [
    ///     "-y".to_owned(),
    ///     "-ss".to_owned(), "1".to_owned(),
    ///     "-protocol_whitelist".to_owned(), "file".to_owned(),
    ///     "-format_whitelist".to_owned(), formats,
    ///     "-i".to_owned(), format!("file:{root}/a.mp4"),
    ///     "-an".to_owned(),
    ///     "-passlogfile".to_owned(), format!("{root}/logs/x"),
    ///     "-protocol_whitelist".to_owned(), "file".to_owned(),
    ///     format!("file:{root}/b.mp4"),
    /// ]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_ffmpeg_args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(self.command.arg_count() + 6 * self.inputs.len() + 3 * self.outputs.len());
        let (trailing, leading): (Vec<&Opt>, Vec<&Opt>) = self
            .command
            .global_options()
            .iter()
            .partition(|opt| opt.value().is_none() && !Command::is_value_less(opt.name()));
        for opt in leading {
            self.push_option(opt, &mut args);
        }
        for (input, source) in self.command.inputs().iter().zip(&self.inputs) {
            for opt in input.options() {
                self.push_option(opt, &mut args);
            }
            args.extend(PROTOCOL_WHITELIST.map(str::to_owned));
            args.push("-format_whitelist".to_owned());
            args.push(self.format_whitelist.clone());
            args.push("-i".to_owned());
            match source {
                InputSource::File(path) => args.push(path.to_file_url()),
                InputSource::Lavfi { graph } => args.push(graph.clone()),
            }
        }
        for (output, target) in self.command.outputs().iter().zip(&self.outputs) {
            for opt in output.options() {
                self.push_option(opt, &mut args);
            }
            match target {
                OutputTarget::File(path) => {
                    args.extend(PROTOCOL_WHITELIST.map(str::to_owned));
                    args.push(path.to_file_url());
                }
                OutputTarget::Null => args.push("-".to_owned()),
            }
        }
        for opt in trailing {
            self.push_option(opt, &mut args);
        }
        args
    }

    /// Pushes `-flag` and the option's value, as resolved.
    fn push_option(&self, opt: &Opt, args: &mut Vec<String>) {
        args.push(opt.flag());
        if let Some(value) = self.values.get(&opt.position()) {
            args.push(value.clone());
        } else if let Some(value) = opt.value() {
            args.push(value.to_owned());
        }
    }

    /// Refuses an output (or written option file) that is an input (or read option file).
    fn check_overwrites(&self) -> Result<(), SandboxError> {
        let mut reads: Vec<(usize, String, &Path)> = Vec::new();
        for (input, source) in self.command.inputs().iter().zip(&self.inputs) {
            if let InputSource::File(path) = source {
                reads.push((input.position(), input.url().to_owned(), path.as_path()));
            }
        }
        let mut writes: Vec<(usize, String, &Path)> = Vec::new();
        for (output, target) in self.command.outputs().iter().zip(&self.outputs) {
            if let OutputTarget::File(path) = target {
                writes.push((output.position(), output.url().to_owned(), path.as_path()));
            }
        }
        for file in &self.files {
            let entry = (file.position, self.option_text(file.position), file.path.as_path());
            match file.file_use.access {
                Access::Read | Access::ReadDirectory => reads.push(entry),
                Access::Write => writes.push(entry),
                Access::ReadWrite => {}
            }
        }
        for (position, argument, path) in &writes {
            // A pattern on either side (`-i in1.png ... in%d.png`) collides when it can name the
            // other file.
            let collides =
                |r: &Path| r == *path || crate::pattern::may_overlap(&r.to_string_lossy(), &path.to_string_lossy());
            if let Some((input_position, input, _)) = reads.iter().find(|(_, _, r)| collides(r)) {
                return Err(SandboxError::OutputOverwritesInput {
                    position: *position,
                    argument: argument.clone(),
                    input_position: *input_position,
                    input: input.clone(),
                });
            }
        }
        Ok(())
    }

    /// The option at `position` as written, for messages.
    fn option_text(&self, position: usize) -> String {
        let command = &self.command;
        command
            .global_options()
            .iter()
            .chain(command.inputs().iter().flat_map(|i| i.options()))
            .chain(command.outputs().iter().flat_map(|o| o.options()))
            .find(|opt| opt.position() == position)
            .map(ToString::to_string)
            .or_else(|| {
                let input = command.inputs().iter().find(|i| i.position() == position)?;
                Some(input.url().to_owned())
            })
            .unwrap_or_default()
    }
}

/// Restricts an input's or output's I/O to local files (`protocol_whitelist` AVOption of
/// `AVFormatContext`, `libavformat/options_table.h`).
const PROTOCOL_WHITELIST: [&str; 2] = ["-protocol_whitelist", "file"];

/// Does an input path hold a glob pattern as the image2 demuxer sees one (`is_glob()` in
/// `libavformat/img2dec.c`: a `%` followed by one of `*?[]{}`)? Checked with ffmpeg 5.1:
/// `-i 'dir/ln%*/img%*.png'` globs (through symlinks) with the default `glob_sequence`.
fn has_glob(path: &str) -> bool {
    path.as_bytes().windows(2).any(|w| w[0] == b'%' && b"*?[]{}".contains(&w[1]))
}

/// The protocol (`http:`) or pseudo-protocol prefix of `argument`, if it has one: `-`, a `:`
/// before the first `/`, or `subfile,` (ffmpeg's `subfile,,start,N,end,M,:URL` form).
fn protocol_prefix(argument: &str) -> Option<&str> {
    if argument == "-" {
        return Some("-");
    }
    let first_segment = argument.split('/').next().unwrap_or(argument);
    if let Some(colon) = first_segment.find(':') {
        return Some(&argument[..=colon]);
    }
    argument.starts_with("subfile,").then_some("subfile,")
}

/// `path` with its longest existing ancestor canonicalised and the rest appended; `None` if a
/// missing component is `..` or nothing of it exists.
fn canonicalize_existing_prefix(path: &Path) -> Option<PathBuf> {
    let mut rest = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(mut canonical) = fs::canonicalize(existing) {
            for part in rest.iter().rev() {
                canonical.push(part);
            }
            return Some(canonical);
        }
        match existing.components().next_back()? {
            Component::Normal(name) => rest.push(name.to_owned()),
            Component::CurDir => {}
            _ => return None,
        }
        existing = existing.parent()?;
    }
}

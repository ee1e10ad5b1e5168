//! Why a command or path was refused: [`SandboxError`] (one variant per refusal, each naming
//! the argument) and [`PathProblem`] (what is wrong with a path found inside an argument).

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::filtergraph::FilterGraphError;
use crate::policy::RuleId;

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
    /// A `glob_sequence` pattern in an input path (`%*`, `%?`, `%[`, ...): the image2 demuxer
    /// expands it (5.1's default pattern type) to names the sandbox never saw. Use
    /// `-pattern_type glob`, whose matches the sandbox checks.
    Glob,
    /// A `-pattern_type glob` input pattern the sandbox does not expand: braces, backslashes,
    /// wildcards in a directory component, a dot-file pattern; the reason.
    GlobSyntax(String),
    /// `..` in a value relative to the output's directory.
    Parent,
    /// The path leads through a symlink to a name that is not valid UTF-8. ffmpeg gets paths
    /// as text (`file:` URLs, option values); a lossy copy would name another file.
    NotUtf8,
    /// A file the job writes (an output, or a file an option writes under its own name) is a
    /// symbolic link: ffmpeg would write through it, to the file it leads to, choosing the
    /// format from that file's name.
    WrittenLink,
    /// A control character (C0, DEL or C1: `\n`, `\r`, `\t`, `\x1b`, ...) in the path: a
    /// newline splits an HLS playlist's or a concat list's entry, an escape sequence drives the
    /// terminal that shows a log or a listing, and a bucket key cannot hold one (tester
    /// finding K7). The first such character.
    ControlCharacter(char),
}

/// Why a command or path was refused. Messages name the argument: "argument 4 `../x.mp4`: path
/// escapes the data directory"; [`SandboxError::rule`] gives a stable id of the broken rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The data directory itself cannot be used: missing, unreadable, or not a directory
    /// (`source` is then of kind [`io::ErrorKind::NotADirectory`]). The message includes the
    /// source's, since start-up errors are often shown without their chain.
    #[error("data directory `{path}` cannot be used: {source}")]
    Root {
        /// The data directory as given.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// The data directory's canonical path is not valid UTF-8. ffmpeg gets every path as text
    /// (`file:` URLs, option values, job records); rather than hand it a lossy copy that names
    /// another file, the sandbox refuses such a directory.
    #[error(
        "data directory `{path}` cannot be used: its canonical path is not valid UTF-8; \
         use a directory whose path is"
    )]
    RootNotUtf8 {
        /// The data directory as given.
        path: PathBuf,
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
        /// The rule id: one of [`RuleId::ForbiddenOption`], [`RuleId::ForbiddenValue`],
        /// [`RuleId::InvalidValue`],
        /// [`RuleId::ForbiddenFilter`], [`RuleId::ForbiddenFormat`].
        rule: RuleId,
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
        #[source]
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
                "`glob_sequence` patterns (`%*`, `%?`, `%[`, `%{`) are not allowed: they expand to \
                 names the sandbox never checked; use `-pattern_type glob` with `*`, `?` or `[...]`",
            ),
            PathProblem::GlobSyntax(reason) => {
                write!(f, "glob patterns may use `*`, `?` and `[...]` in the file name only: {reason}")
            }
            PathProblem::Parent => {
                f.write_str("`..` is not allowed here: the value is relative to the output's directory")
            }
            PathProblem::NotUtf8 => f.write_str(
                "the path leads through a symlink to a name that is not valid UTF-8, which cannot \
                 be handed to ffmpeg unchanged",
            ),
            PathProblem::WrittenLink => f.write_str(
                "a symbolic link where the job writes: a job never writes through a link (ffmpeg would \
                 write the file it leads to, in the format its name says); remove the link or choose \
                 another name",
            ),
            PathProblem::ControlCharacter(c) => write!(
                f,
                "a file name cannot hold a control character ({}, U+{:04X}): it would break playlists, \
                 logs and bucket keys",
                c.escape_default(),
                u32::from(*c)
            ),
        }
    }
}

impl PathProblem {
    /// The stable rule id of the problem.
    pub fn rule(&self) -> RuleId {
        match self {
            PathProblem::Absolute => RuleId::AbsolutePath,
            PathProblem::Escapes => RuleId::PathEscapes,
            PathProblem::Protocol(_) => RuleId::Protocol,
            PathProblem::NotAFile | PathProblem::NotADirectory => RuleId::NotAFile,
            PathProblem::Denied => RuleId::ReservedPath,
            PathProblem::Glob | PathProblem::GlobSyntax(_) => RuleId::GlobPattern,
            PathProblem::Parent => RuleId::ParentDirectory,
            PathProblem::NotUtf8 => RuleId::NonUtf8Path,
            PathProblem::WrittenLink => RuleId::SymbolicLink,
            PathProblem::ControlCharacter(_) => RuleId::ControlCharacter,
        }
    }

    /// The error for this problem at a plain path argument (an input or output URL).
    pub(super) fn at(self, position: usize, argument: &str) -> SandboxError {
        let argument = argument.to_owned();
        match self {
            PathProblem::Absolute => SandboxError::Absolute { position, argument },
            PathProblem::Escapes => SandboxError::Escapes { position, argument },
            PathProblem::Protocol(scheme) => SandboxError::Protocol { position, argument, scheme },
            PathProblem::NotAFile | PathProblem::NotADirectory => SandboxError::NotAFile { position, argument },
            PathProblem::Denied => SandboxError::Denied { position, argument },
            problem @ (PathProblem::Glob
            | PathProblem::GlobSyntax(_)
            | PathProblem::Parent
            | PathProblem::NotUtf8
            | PathProblem::WrittenLink
            | PathProblem::ControlCharacter(_)) => {
                SandboxError::Path { position, argument, context: String::new(), problem }
            }
        }
    }
}

impl SandboxError {
    /// The offending argument: its 1-based position in the split command line and its text
    /// (for an option, the option with its value as in [`Opt`](crate::command::Opt)'s `Display`).
    /// `None` for [`SandboxError::Root`] and [`SandboxError::RootNotUtf8`].
    pub fn argument(&self) -> Option<(usize, &str)> {
        match self {
            SandboxError::Root { .. } | SandboxError::RootNotUtf8 { .. } => None,
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

    /// The id of the rule the command broke; [`RuleId::as_str`] gives its stable text
    /// (`data-directory`, `absolute-path`, `path-escapes`, `protocol`, `not-a-file`,
    /// `reserved-path`, `glob-pattern`, `parent-directory`, `non-utf8-path`, `symbolic-link`, `control-character`,
    /// `forbidden-option`, `forbidden-value`, `forbidden-filter`, `forbidden-format`,
    /// `filtergraph-syntax`, `output-overwrites-input`).
    pub fn rule(&self) -> RuleId {
        match self {
            SandboxError::Root { .. } | SandboxError::RootNotUtf8 { .. } => RuleId::DataDirectory,
            SandboxError::Absolute { .. } => RuleId::AbsolutePath,
            SandboxError::Escapes { .. } => RuleId::PathEscapes,
            SandboxError::Protocol { .. } => RuleId::Protocol,
            SandboxError::NotAFile { .. } => RuleId::NotAFile,
            SandboxError::Denied { .. } => RuleId::ReservedPath,
            SandboxError::Path { problem, .. } => problem.rule(),
            SandboxError::Forbidden { rule, .. } => *rule,
            SandboxError::FilterGraph { .. } => RuleId::FiltergraphSyntax,
            SandboxError::OutputOverwritesInput { .. } => RuleId::OutputOverwritesInput,
        }
    }
}

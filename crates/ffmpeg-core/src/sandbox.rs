//! Path containment: every input and output of a command is resolved against a data directory.
//!
//! Only relative paths are accepted. Absolute paths, `..` that escapes, symlinks that lead outside,
//! `-`, `pipe:`, `fd:` and every other URL scheme (`http:`, `concat:`, `subfile:`, `data:`, ...)
//! are refused. The one exception is the `-f null -` idiom (output discarded). Paths need not
//! exist: an earlier job may produce an input. Resolved paths reach ffmpeg as `file:` URLs, so a
//! file named `-part6.mp4` or `http:x` cannot read as an option or a protocol.
//!
//! Invariant: [`ResolvedPath`] has no public constructor; only [`Sandbox`] builds one.

use std::path::{Path, PathBuf};

use crate::command::Command;

/// A data directory that paths are resolved against.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Canonical absolute path of the data directory.
    root: PathBuf,
    /// Canonical absolute paths inside `root` that no job may read or write (e.g. a database file).
    denied: Vec<PathBuf>,
}

/// A path inside the sandbox's data directory. Only [`Sandbox::resolve`] builds one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResolvedPath {
    absolute: PathBuf,
    relative: PathBuf,
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

/// A command whose every input and output has been resolved by a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct ResolvedCommand {
    command: Command,
    inputs: Vec<ResolvedPath>,
    outputs: Vec<OutputTarget>,
}

/// Why a path was refused. Messages name the argument: "argument 4 `../x.mp4`: path escapes the data directory".
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
    #[error("argument {position} `{argument}`: absolute paths are not allowed; use a path relative to the data directory")]
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
    /// An empty path, or a path naming the data directory itself.
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
    /// The `file:` URL handed to ffmpeg, e.g. `file:/data/out/a.mp4`.
    pub fn to_file_url(&self) -> String {
        format!("file:{}", self.absolute.display())
    }
}

impl Sandbox {
    /// A sandbox rooted at `root`, which must be an existing directory (it is canonicalised).
    ///
    /// # Errors
    /// [`SandboxError::Root`] when `root` does not exist or is not a directory.
    pub fn new(root: impl AsRef<Path>) -> Result<Sandbox, SandboxError> {
        let _ = root;
        todo!("helper")
    }

    /// Puts `path` off limits: no input or output may resolve to it (or, for a directory, below it).
    /// A path outside the data directory is already off limits and is ignored.
    pub fn deny(&mut self, path: impl AsRef<Path>) {
        let _ = path;
        todo!("helper")
    }

    /// The canonical data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves one path argument found at 1-based `position`.
    ///
    /// # Errors
    /// Every [`SandboxError`] variant except `Root`.
    pub fn resolve(&self, argument: &str, position: usize) -> Result<ResolvedPath, SandboxError> {
        let _ = (argument, position, &self.denied);
        todo!("helper")
    }

    /// Resolves every input and output of `command`.
    ///
    /// # Errors
    /// The first path that [`Sandbox::resolve`] refuses. `-` is accepted only as the output of
    /// `-f null`.
    pub fn resolve_command(&self, command: &Command) -> Result<ResolvedCommand, SandboxError> {
        let _ = command;
        todo!("helper")
    }
}

impl ResolvedCommand {
    /// The parsed command.
    pub fn command(&self) -> &Command {
        &self.command
    }
    /// Resolved inputs, in input order.
    pub fn inputs(&self) -> &[ResolvedPath] {
        &self.inputs
    }
    /// Resolved outputs, in output order.
    pub fn outputs(&self) -> &[OutputTarget] {
        &self.outputs
    }
    /// The argument list for ffmpeg (without the program name): global options, then for each
    /// input `-protocol_whitelist file`, its options and `-i file:/abs/path`, then each output's
    /// options and `file:/abs/path` (or `-` for `-f null -`).
    pub fn to_ffmpeg_args(&self) -> Vec<String> {
        todo!("helper")
    }
}

//! Path containment: every input and output of a command is resolved against a data directory.
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
//! What a path sandbox cannot see: files that a demuxer, muxer or filter opens by itself (`hls`,
//! `dash` and `concat` playlists naming other files, the `movie` and `subtitles` filters) and
//! options whose value is a file (`-filter_complex_script`, `-attach`, `-passlogfile`,
//! `-progress`, `-sdp_file`, `-vstats_file`, ...). The `-protocol_whitelist file` that
//! [`ResolvedCommand::to_ffmpeg_args`] adds keeps what formats open on local files, but not
//! inside the data directory (checked with ffmpeg 5.1: an HLS playlist naming `/abs/seg.ts` is
//! read), and `tee` slaves ignore it, so [`Sandbox::resolve_command`] refuses `-f tee`. Which
//! formats, filters and options a job may use is a policy question above this module.
//!
//! Invariant: [`ResolvedPath`] has no public constructor; only [`Sandbox`] builds one.
//!
//! ```
//! use ffmpeg_core::command::Command;
//! use ffmpeg_core::sandbox::Sandbox;
//!
//! # let dir = tempfile::tempdir()?;
//! let sandbox = Sandbox::new(dir.path())?;
//! let command = Command::parse("-i in/a.mp4 -c:v libx264 out/b.mp4")?;
//! let resolved = sandbox.resolve_command(&command)?;
//! assert_eq!(resolved.inputs()[0].relative(), std::path::Path::new("in/a.mp4"));
//!
//! let escape = sandbox.resolve("../etc/passwd", 2).unwrap_err();
//! assert_eq!(escape.to_string(), "argument 2 `../etc/passwd`: path escapes the data directory");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs;
use std::path::{Component, Path, PathBuf};

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

impl Sandbox {
    /// A sandbox rooted at `root`, which must be an existing directory (it is canonicalised).
    ///
    /// # Errors
    /// [`SandboxError::Root`] when `root` does not exist or is not a directory.
    pub fn new(root: impl AsRef<Path>) -> Result<Sandbox, SandboxError> {
        let given = root.as_ref();
        let error = |reason: String| SandboxError::Root {
            path: given.to_path_buf(),
            reason,
        };
        let root = fs::canonicalize(given).map_err(|e| error(e.to_string()))?;
        let meta = fs::metadata(&root).map_err(|e| error(e.to_string()))?;
        if !meta.is_dir() {
            return Err(error("not a directory".to_owned()));
        }
        Ok(Sandbox {
            root,
            denied: Vec::new(),
        })
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
    /// Every [`SandboxError`] variant except `Root`.
    ///
    /// In order: empty, NUL bytes -> `NotAFile`; `-` -> `Protocol`; a `:` before the first
    /// `/` (`http:`, `concat:`, `pipe:`, `fd:`, `file:`, `c:`) or a `subfile,` prefix ->
    /// `Protocol` (a stricter form of ffmpeg's scheme detection; write `./a:b.mp4` for a file
    /// named `a:b.mp4`); a leading `/` -> `Absolute`; a trailing `/` -> `NotAFile`; `..` above
    /// the data directory, or a symlink (dangling or leading outside) -> `Escapes`; the data
    /// directory itself or an existing non-regular file -> `NotAFile`; a denied path ->
    /// `Denied`. Printf-style patterns (`thumbs/t%03d.png`) are ordinary names here.
    pub fn resolve(&self, argument: &str, position: usize) -> Result<ResolvedPath, SandboxError> {
        let argument_owned = || argument.to_owned();
        let not_a_file = || SandboxError::NotAFile {
            position,
            argument: argument_owned(),
        };
        let escapes = || SandboxError::Escapes {
            position,
            argument: argument_owned(),
        };

        if argument.is_empty() || argument.contains('\0') {
            return Err(not_a_file());
        }
        if let Some(scheme) = protocol_prefix(argument) {
            return Err(SandboxError::Protocol {
                position,
                argument: argument_owned(),
                scheme: scheme.to_owned(),
            });
        }
        if argument.starts_with('/') {
            return Err(SandboxError::Absolute {
                position,
                argument: argument_owned(),
            });
        }
        if argument.ends_with('/') {
            return Err(not_a_file());
        }

        // Lexical normalisation: drop `.` and empty components, apply `..`.
        let mut parts: Vec<&str> = Vec::new();
        for part in argument.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(escapes());
                    }
                }
                part => parts.push(part),
            }
        }
        if parts.is_empty() {
            return Err(not_a_file());
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
                    _ => return Err(escapes()),
                },
                Ok(_) => {}
                // Not there (or not searchable: ffmpeg, running as the same user, fails too);
                // nothing below it can be a symlink.
                Err(_) => exists = false,
            }
        }

        if current == self.root {
            return Err(not_a_file());
        }
        if exists && fs::metadata(&current).is_ok_and(|meta| !meta.is_file()) {
            return Err(not_a_file());
        }
        if self.denied.iter().any(|denied| current.starts_with(denied)) {
            return Err(SandboxError::Denied {
                position,
                argument: argument_owned(),
            });
        }
        let relative = match current.strip_prefix(&self.root) {
            Ok(relative) => relative.to_path_buf(),
            Err(_) => return Err(escapes()),
        };
        Ok(ResolvedPath {
            absolute: current,
            relative,
        })
    }

    /// Resolves every input and output of `command`.
    ///
    /// # Errors
    /// The first path that [`Sandbox::resolve`] refuses. `-` is accepted only as the output of
    /// `-f null`.
    ///
    /// An output whose format is `tee` is refused as [`SandboxError::Protocol`] with scheme
    /// `tee`: its URL is a `|`-separated list of further URLs, which the tee muxer opens
    /// without regard to `-protocol_whitelist` (checked with ffmpeg 5.1: a `tcp:` slave still
    /// connects).
    pub fn resolve_command(&self, command: &Command) -> Result<ResolvedCommand, SandboxError> {
        let inputs = command
            .inputs()
            .iter()
            .map(|input| self.resolve(input.url(), input.position()))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = command
            .outputs()
            .iter()
            .map(|output| match (output.url(), output.format()) {
                ("-", Some("null")) => Ok(OutputTarget::Null),
                (url, Some("tee")) => Err(SandboxError::Protocol {
                    position: output.position(),
                    argument: url.to_owned(),
                    scheme: "tee".to_owned(),
                }),
                (url, _) => self.resolve(url, output.position()).map(OutputTarget::File),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ResolvedCommand {
            command: command.clone(),
            inputs,
            outputs,
        })
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
    /// input its options, `-protocol_whitelist file` and `-i file:/abs/path`, then for each
    /// output its options, `-protocol_whitelist file` and `file:/abs/path` (or just `-` for
    /// `-f null -`).
    ///
    /// The whitelist comes after the client's own options because the last value of an
    /// AVOption wins: a client's `-protocol_whitelist file,http` before it has no effect
    /// (checked with ffmpeg 5.1). On an output it binds the muxer's own opens (HLS and DASH
    /// segments and playlists, `segment` lists) to local files too. An `OPT_EXIT` option
    /// written last without its argument (`-h`) stays last, as in [`Command::to_args`].
    ///
    /// ```
    /// use ffmpeg_core::command::Command;
    /// use ffmpeg_core::sandbox::Sandbox;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let sandbox = Sandbox::new(dir.path())?;
    /// let root = sandbox.root().display().to_string();
    /// let resolved = sandbox.resolve_command(&Command::parse("-y -ss 1 -i a.mp4 -an b.mp4")?)?;
    /// assert_eq!(resolved.to_ffmpeg_args(), [
    ///     "-y".to_owned(),
    ///     "-ss".to_owned(), "1".to_owned(),
    ///     "-protocol_whitelist".to_owned(), "file".to_owned(),
    ///     "-i".to_owned(), format!("file:{root}/a.mp4"),
    ///     "-an".to_owned(),
    ///     "-protocol_whitelist".to_owned(), "file".to_owned(),
    ///     format!("file:{root}/b.mp4"),
    /// ]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_ffmpeg_args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(
            self.command.arg_count() + 4 * self.inputs.len() + 3 * self.outputs.len(),
        );
        self.command.push_global_args(&mut args);
        for (input, path) in self.command.inputs().iter().zip(&self.inputs) {
            for opt in input.options() {
                opt.push_args(&mut args);
            }
            args.extend(PROTOCOL_WHITELIST.map(str::to_owned));
            args.push("-i".to_owned());
            args.push(path.to_file_url());
        }
        for (output, target) in self.command.outputs().iter().zip(&self.outputs) {
            for opt in output.options() {
                opt.push_args(&mut args);
            }
            match target {
                OutputTarget::File(path) => {
                    args.extend(PROTOCOL_WHITELIST.map(str::to_owned));
                    args.push(path.to_file_url());
                }
                OutputTarget::Null => args.push("-".to_owned()),
            }
        }
        self.command.push_trailing_args(&mut args);
        args
    }
}

/// Restricts an input's or output's I/O to local files (`protocol_whitelist` AVOption of
/// `AVFormatContext`, `libavformat/options_table.h`).
const PROTOCOL_WHITELIST: [&str; 2] = ["-protocol_whitelist", "file"];

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

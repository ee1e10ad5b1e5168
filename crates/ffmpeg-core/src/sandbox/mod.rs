//! Path containment and the security policy: every input and output of a command, and every
//! file named inside its options and filter graphs, is resolved against a data directory, and
//! every option, filter and format is checked against a [`Policy`].
//!
//! Only relative paths are accepted. Absolute paths, `..` that escapes, symlinks that lead outside,
//! `-`, `pipe:`, `fd:` and every other URL scheme (`http:`, `concat:`, `subfile:`, `data:`, ...)
//! are refused. The one exception is the output of `-f null` (discarded): `-`, `/dev/null` or
//! `NUL`, handed to ffmpeg as `-`. Paths need not
//! exist: an earlier job may produce an input. Resolved paths reach ffmpeg as `file:` URLs, so a
//! file named `-part6.mp4` or `http:x` cannot read as an option or a protocol. (One exception:
//! an HLS output whose name holds the variant placeholder `%v` is an absolute path, because the
//! muxer creates the `%v` directories from the URL's text; a leading `/` is never a URL scheme.
//! Each variant's names are resolved too, see [`ResolvedCommand::hls_variants`].)
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
//! assert_eq!(refused.rule().as_str(), "absolute-path");
//! assert_eq!(refused.argument(), Some((3, "-vf subtitles=/etc/passwd")));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod concat;
mod error;
mod glob;
mod graph;
mod options;
mod params;
mod path;
mod resolved;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::command::{Command, Opt, Output};
use crate::pattern;
use crate::policy::{Access, OptionTreatment, Policy};

pub use error::{PathProblem, SandboxError};
pub use glob::GlobInput;
pub use path::ResolvedPath;
pub use resolved::{InputSource, OptionFile, OutputTarget, ResolvedCommand};

use options::{Checked, Side};
use path::canonicalize_existing_prefix;

/// A data directory that paths are resolved against, with the policy commands must follow.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Canonical absolute path of the data directory.
    root: PathBuf,
    /// Canonical absolute paths inside `root` that no job may read or write (e.g. a database file).
    denied: Vec<PathBuf>,
    /// Name prefixes no component of a job's path may start with (e.g. a server's temporary
    /// upload names).
    denied_name_prefixes: Vec<String>,
    /// Which options, filters and formats commands may use.
    policy: Policy,
}

impl Sandbox {
    /// A sandbox rooted at `root`, which must be an existing directory (it is canonicalised),
    /// with [`Policy::default`].
    ///
    /// # Errors
    /// [`SandboxError::Root`] when `root` does not exist, cannot be read or is not a directory;
    /// [`SandboxError::RootNotUtf8`] when its canonical path is not valid UTF-8.
    pub fn new(root: impl AsRef<Path>) -> Result<Sandbox, SandboxError> {
        let given = root.as_ref();
        let error = |source: io::Error| SandboxError::Root { path: given.to_path_buf(), source };
        let root = fs::canonicalize(given).map_err(error)?;
        let meta = fs::metadata(&root).map_err(error)?;
        if !meta.is_dir() {
            return Err(error(io::ErrorKind::NotADirectory.into()));
        }
        if root.to_str().is_none() {
            return Err(SandboxError::RootNotUtf8 { path: given.to_path_buf() });
        }
        Ok(Sandbox { root, denied: Vec::new(), denied_name_prefixes: Vec::new(), policy: Policy::default() })
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

    /// Puts every name starting with `prefix` off limits, in any directory: no input or output
    /// may resolve to a path of which a component (a directory or the file's own name) starts
    /// with it, as written or after following symbolic links. Such a path is refused as
    /// [`SandboxError::Denied`] (rule `reserved-path`). An empty prefix is ignored.
    ///
    /// For names a program beside the jobs owns in every directory, such as temporary files it
    /// sweeps away after a crash: a job must not write one, or its output would be swept too.
    ///
    /// ```
    /// use ffmpeg_core::{command::Command, sandbox::{Sandbox, SandboxError}};
    /// # let dir = tempfile::tempdir()?;
    /// let mut sandbox = Sandbox::new(dir.path())?;
    /// sandbox.deny_names_starting_with(".upload-");
    /// let command = Command::parse("-i in.mp4 out/.upload-1.mp4")?;
    /// assert!(matches!(sandbox.resolve_command(&command), Err(SandboxError::Denied { position: 3, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn deny_names_starting_with(&mut self, prefix: &str) {
        if !prefix.is_empty() && !self.denied_name_prefixes.iter().any(|known| known == prefix) {
            self.denied_name_prefixes.push(prefix.to_owned());
        }
    }

    /// The name prefixes put off limits with [`Sandbox::deny_names_starting_with`].
    pub fn denied_name_prefixes(&self) -> &[String] {
        &self.denied_name_prefixes
    }

    /// The canonical data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The canonical paths put off limits with [`Sandbox::deny`].
    pub fn denied(&self) -> &[PathBuf] {
        &self.denied
    }

    /// Checks `command` against the policy and resolves every input, output and file named in
    /// an option or filter graph.
    ///
    /// In order: global options; each input's options, then its URL (a file path, or for a
    /// `-f lavfi` input a filter graph); each output's options, then its URL; last, no output
    /// (or file an option writes) may be an input (or a file an option reads). The first
    /// problem is returned.
    ///
    /// An output that uses `-pass` without a `-passlogfile` for its video streams gets one:
    /// `-passlogfile DATA/ffmpeg2pass` ([`DEFAULT_PASS_LOG_PREFIX`]) before its own options, so
    /// that pass 1 and pass 2 run as two jobs find the log where ffmpeg would put it in a plain
    /// directory (ffmpeg runs in a per-run scratch directory). It is listed among the
    /// [`ResolvedCommand::option_files`] like a `-passlogfile` the client wrote.
    ///
    /// # Errors
    /// - A path that [`Sandbox::resolve`] refuses; `-`, `/dev/null` and `NUL` are accepted
    ///   only as the output of `-f null` (discarded). An input path with a `glob_sequence`
    ///   pattern (`%*`) is [`SandboxError::Path`]; a `-pattern_type glob` input becomes
    ///   [`InputSource::Glob`] (wildcards in the file name only; braces, backslashes, wildcards
    ///   in directories and dot-file patterns are [`SandboxError::Path`], rule `glob-pattern`).
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
            } else if input.option("pattern_type").and_then(Opt::value).is_some_and(|t| t.eq_ignore_ascii_case("glob"))
            {
                inputs.push(InputSource::Glob(self.resolve_glob(input.url(), input.position())?));
            } else {
                if input.format().is_none() {
                    self.check_input_by_name(input.url(), input.position())?;
                }
                inputs.push(InputSource::File(self.resolve_input(input.url(), input.position())?));
            }
        }

        let mut outputs = Vec::with_capacity(command.outputs().len());
        let mut injected = BTreeMap::new();
        for (index, output) in command.outputs().iter().enumerate() {
            let target = match (output.url(), output.format()) {
                (url, Some(format)) if format.eq_ignore_ascii_case("null") && is_discard(url) => Ok(OutputTarget::Null),
                (url, Some(format)) if format.eq_ignore_ascii_case("tee") => Err(SandboxError::Protocol {
                    position: output.position(),
                    argument: url.to_owned(),
                    scheme: "tee".to_owned(),
                }),
                (url, _) => self.resolve_output(url, output.position()).map(OutputTarget::File),
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
            let target = target?;
            if let OutputTarget::File(path) = &target {
                self.check_hls_variants(output, index, path, &checked)?;
            }
            outputs.push(target);
            self.default_param_files(output, index, &mut checked)?;
            if let Some(args) = self.default_pass_log(output, index, &mut checked)? {
                injected.insert(index, args);
            }
        }

        let resolved = ResolvedCommand {
            command: command.clone(),
            inputs,
            outputs,
            values: checked.values,
            files: checked.files,
            injected,
            format_whitelist: self.policy.input_format_whitelist(),
        };
        resolved.check_overwrites()?;
        Ok(resolved)
    }

    /// For an HLS output whose names hold `%v`: resolves the output and each of its written
    /// option files once per variant stream (`-var_stream_map`), with `%v` replaced as the
    /// muxer will ([`pattern::expand_hls_variant`]), so that a symlink `hls/0` leading out of
    /// the data directory is refused like any other path. The per-variant names are not kept:
    /// the footprint derives them again from the command.
    fn check_hls_variants(
        &self,
        output: &Output,
        index: usize,
        path: &ResolvedPath,
        checked: &Checked,
    ) -> Result<(), SandboxError> {
        if !crate::footprint::is_hls_output(output) {
            return Ok(());
        }
        let variants = pattern::hls_variants(output.option("var_stream_map").and_then(Opt::value));
        let own = checked.files.iter().filter(|file| {
            file.output == Some(index)
                && matches!(file.file_use.access, Access::Write | Access::ReadWrite | Access::Append)
        });
        let paths =
            std::iter::once((output.position(), output.url().to_owned(), String::new(), path, path::Want::Written))
                .chain(own.map(|file| {
                    let text = resolved_option_text(output, file.position);
                    (file.position, text, file.context.clone(), &file.path, path::Want::for_use(file.file_use))
                }));
        for (position, argument, context, path, want) in paths {
            let relative = path.relative().to_string_lossy();
            if !pattern::has_hls_variant(&relative) {
                continue;
            }
            for variant in &variants {
                let expanded = pattern::expand_hls_variant(&relative, variant);
                if let Err(problem) = self.resolve_path(&expanded, want) {
                    let context = if context.is_empty() {
                        format!("variant stream `{expanded}`")
                    } else {
                        format!("{context}: variant stream `{expanded}`")
                    };
                    return Err(SandboxError::Path { position, argument: argument.clone(), context, problem });
                }
            }
        }
        Ok(())
    }
}

/// The option of `output` at `position`, as written.
fn resolved_option_text(output: &Output, position: usize) -> String {
    output.options().iter().find(|opt| opt.position() == position).map(ToString::to_string).unwrap_or_default()
}

/// The name ffmpeg writes two-pass logs under when no `-passlogfile` is given
/// (`DEFAULT_PASS_LOGFILENAME_PREFIX`, `fftools/ffmpeg.h`): `ffmpeg2pass-N.log`.
pub const DEFAULT_PASS_LOG_PREFIX: &str = "ffmpeg2pass";

/// Does the URL of a `-f null` output mean "discard"? `-`, and what tutorials write instead:
/// `/dev/null`, and Windows' `NUL` (any case). The null muxer opens no file (`AVFMT_NOFILE`),
/// so the name is never used; the sandbox hands ffmpeg `-`.
fn is_discard(url: &str) -> bool {
    url == "-" || url == "/dev/null" || url.eq_ignore_ascii_case("nul")
}

impl Sandbox {
    /// For an output that uses `-pass` without a `-passlogfile` that covers its video streams
    /// (none, or only ones with narrower stream specifiers), the `-passlogfile` to add before
    /// its options: the data directory's `ffmpeg2pass`, where ffmpeg would write
    /// `ffmpeg2pass-N.log` (and libx264 its `.mbtree`) in a plain directory. Records the file
    /// like a `-passlogfile` the client wrote. `None` when nothing is to be added, or when the
    /// policy does not resolve `-passlogfile` as a file.
    fn default_pass_log(
        &self,
        output: &Output,
        index: usize,
        checked: &mut options::Checked,
    ) -> Result<Option<Vec<String>>, SandboxError> {
        let Some(pass) = output.options().iter().find(|o| o.name() == "pass" && o.value().is_some()) else {
            return Ok(None);
        };
        // `-passlogfile` and `-passlogfile:v` name the log of every video stream (ffmpeg sets
        // pass logs only for video streams); the last matching option wins per stream.
        let covered = output.options().iter().any(|o| {
            o.name() == "passlogfile" && o.value().is_some() && matches!(o.stream_specifier(), None | Some("v" | "V"))
        });
        let OptionTreatment::File(file_use) = *self.policy.option_rule("passlogfile").treatment() else {
            return Ok(None);
        };
        if covered {
            return Ok(None);
        }
        let context = format!("option `{}` (default pass log `{DEFAULT_PASS_LOG_PREFIX}`)", pass.flag());
        let path = self
            .resolve_file(DEFAULT_PASS_LOG_PREFIX, file_use, options::Side::Output(index, Path::new("")))
            .map_err(|problem| SandboxError::Path {
                position: pass.position(),
                argument: pass.to_string(),
                context: context.clone(),
                problem,
            })?;
        let args = vec!["-passlogfile".to_owned(), path.as_str().to_owned()];
        checked.files.push(OptionFile { position: pass.position(), context, path, file_use, output: Some(index) });
        Ok(Some(args))
    }
}

//! The resolved command: what the sandbox hands on ([`ResolvedCommand`], its inputs, outputs
//! and option files) and the one way its arguments reach ffmpeg
//! ([`ResolvedCommand::to_ffmpeg_args`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::glob::{GlobInput, GlobSequence};
use super::{ResolvedPath, SandboxError};
use crate::command::{Command, Opt};
use crate::policy::{Access, FileUse};

/// Where an input comes from once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputSource {
    /// A file inside the data directory.
    File(ResolvedPath),
    /// A `-pattern_type glob` input: a wildcard pattern for file names in one directory. Its
    /// matches are checked right before the run ([`Sandbox::glob_matches`](super::Sandbox::glob_matches))
    /// and handed to ffmpeg as a numbered sequence ([`ResolvedCommand::set_glob_sequence`]).
    Glob(GlobInput),
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
    pub(super) position: usize,
    pub(super) context: String,
    pub(super) path: ResolvedPath,
    pub(super) file_use: FileUse,
    pub(super) output: Option<usize>,
}

/// A command whose every input, output, file-valued option and filter graph has been checked
/// and resolved by a [`Sandbox`](super::Sandbox).
#[derive(Debug, Clone)]
pub struct ResolvedCommand {
    pub(super) command: Command,
    pub(super) inputs: Vec<InputSource>,
    pub(super) outputs: Vec<OutputTarget>,
    /// New values of options, by the option's position.
    pub(super) values: BTreeMap<usize, String>,
    pub(super) files: Vec<OptionFile>,
    /// Arguments the sandbox adds before an output's own options, by output index (the
    /// default `-passlogfile` of an output that uses `-pass` without one).
    pub(super) injected: BTreeMap<usize, Vec<String>>,
    pub(super) format_whitelist: String,
}

impl InputSource {
    /// The file, for a file input.
    pub fn file(&self) -> Option<&ResolvedPath> {
        match self {
            InputSource::File(path) => Some(path),
            InputSource::Glob(_) | InputSource::Lavfi { .. } => None,
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
    /// The variant streams of output `output_index` when it is an HLS output (`-f hls`, or a
    /// `.m3u8` URL) whose names may hold `%v` (from its `-var_stream_map`; one variant, index
    /// 0, without it); `None` for other outputs. The muxer replaces `%v` in the playlist name,
    /// `-hls_segment_filename` and the fMP4 init name by each variant's name or index
    /// ([`pattern::expand_hls_variant`](crate::pattern::expand_hls_variant)) and creates the
    /// directories those name itself.
    pub fn hls_variants(&self, output_index: usize) -> Option<Vec<crate::pattern::HlsVariant>> {
        let output = self.command.outputs().get(output_index)?;
        if !crate::footprint::is_hls_output(output) {
            return None;
        }
        Some(crate::pattern::hls_variants(output.option("var_stream_map").and_then(Opt::value)))
    }

    /// The glob inputs (`-pattern_type glob`), with their input index.
    pub fn glob_inputs(&self) -> impl Iterator<Item = (usize, &GlobInput)> {
        self.inputs.iter().enumerate().filter_map(|(index, source)| match source {
            InputSource::Glob(glob) => Some((index, glob)),
            _ => None,
        })
    }

    /// Hands glob input `input_index` to ffmpeg as the numbered sequence `dir/000000.EXT`,
    /// `dir/000001.EXT`, ... (`-pattern_type sequence -start_number 0`), which the caller
    /// made of its checked matches ([`Sandbox::glob_matches`](super::Sandbox::glob_matches)),
    /// in their order, e.g. as hard links or copies in a directory no one else can write;
    /// `extension` without the dot ([`GlobInput::extension_for`]). Without this call the glob
    /// reaches ffmpeg as a `file:` URL, which matches nothing. Ignored for other inputs.
    pub fn set_glob_sequence(&mut self, input_index: usize, dir: PathBuf, extension: String) {
        if let Some(InputSource::Glob(glob)) = self.inputs.get_mut(input_index) {
            glob.sequence = Some(GlobSequence { dir, extension });
        }
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
                file.output == Some(output_index)
                    && matches!(file.file_use.access, Access::Write | Access::ReadWrite | Access::Append)
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
    /// [`Policy::input_format_whitelist`](crate::policy::Policy::input_format_whitelist). An `OPT_EXIT` option written last without its
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
            if let InputSource::Glob(GlobInput { sequence: Some(_), .. }) = source {
                // After the client's `-pattern_type glob`: the last value wins.
                args.extend(["-pattern_type", "sequence", "-start_number", "0"].map(str::to_owned));
            }
            args.push("-i".to_owned());
            match source {
                InputSource::File(path) => args.push(path.to_file_url()),
                InputSource::Glob(glob) => args.push(match &glob.sequence {
                    Some(sequence) => {
                        let dot = if sequence.extension.is_empty() { "" } else { "." };
                        format!("file:{}/%06d{dot}{}", sequence.dir.display(), sequence.extension)
                    }
                    // Not expanded (at submit, to measure the arguments): matches nothing.
                    None => format!("file:{}", glob.dir.as_path().join(&glob.pattern).display()),
                }),
                InputSource::Lavfi { graph } => args.push(graph.clone()),
            }
        }
        for (index, (output, target)) in self.command.outputs().iter().zip(&self.outputs).enumerate() {
            if let Some(injected) = self.injected.get(&index) {
                args.extend(injected.iter().cloned());
            }
            for opt in output.options() {
                self.push_option(opt, &mut args);
            }
            match target {
                OutputTarget::File(path) => {
                    args.extend(PROTOCOL_WHITELIST.map(str::to_owned));
                    // An HLS playlist goes as a plain absolute path: the HLS muxer builds the
                    // names of the files beside it from the playlist's URL text and hands them
                    // to POSIX calls, which know no `file:` prefix (`libavformat/hlsenc.c`,
                    // checked with ffmpeg 5.1): `-hls_flags delete_segments` unlinks
                    // `file:/d/live/p0.ts` and deletes nothing ("failed to delete old
                    // segment"), and for `%v` names it creates `./file:/d/hls/0` in its
                    // working directory (`format_name()`) and fails to write. An absolute path
                    // starts with `/`, which no URL scheme does, so ffmpeg still picks the file
                    // protocol, and no `-` can start it.
                    let plain = crate::footprint::is_hls_output(output);
                    args.push(if plain { path.as_str().to_owned() } else { path.to_file_url() });
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
    pub(super) fn check_overwrites(&self) -> Result<(), SandboxError> {
        let mut reads: Vec<(usize, String, std::borrow::Cow<'_, Path>)> = Vec::new();
        for (input, source) in self.command.inputs().iter().zip(&self.inputs) {
            match source {
                InputSource::File(path) => {
                    reads.push((input.position(), input.url().to_owned(), path.as_path().into()));
                }
                InputSource::Glob(glob) => {
                    let names = crate::pattern::glob_to_pattern(&glob.pattern);
                    let pattern = glob.dir.as_path().join(names);
                    reads.push((input.position(), input.url().to_owned(), pattern.into()));
                }
                InputSource::Lavfi { .. } => {}
            }
        }
        for file in &self.files {
            if matches!(file.file_use.access, Access::Read | Access::ReadDirectory) {
                reads.push((file.position, self.option_text(file.position), file.path.as_path().into()));
            }
        }
        for (position, argument, path) in self.writes() {
            // A pattern on either side (`-i in1.png ... in%d.png`) collides when it can name the
            // other file.
            let collides =
                |r: &Path| r == path || crate::pattern::may_overlap(&r.to_string_lossy(), &path.to_string_lossy());
            if let Some((input_position, input, _)) = reads.iter().find(|(_, _, r)| collides(r)) {
                return Err(SandboxError::OutputOverwritesInput {
                    position,
                    argument,
                    input_position: *input_position,
                    input: input.clone(),
                });
            }
        }
        Ok(())
    }

    /// Refuses `entry`, a file named by a concat list that this command reads, when an output
    /// of the command (or a file an option writes) may be that file: ffmpeg would overwrite
    /// what it is reading (`-f concat -i list.txt -c copy a.mp4` with `file 'a.mp4'` in the
    /// list). `position` is that of the command's input that leads to the list, `list` the
    /// list's path as shown to the client (the message names both the list and the entry).
    /// Checks only paths, no I/O.
    ///
    /// # Errors
    /// [`SandboxError::OutputOverwritesInput`] for the first output that may be `entry`.
    pub fn check_concat_entry(&self, entry: &ResolvedPath, position: usize, list: &str) -> Result<(), SandboxError> {
        let read = entry.as_path();
        for (written_at, argument, path) in self.writes() {
            if read == path || crate::pattern::may_overlap(&path.to_string_lossy(), entry.as_str()) {
                return Err(SandboxError::OutputOverwritesInput {
                    position: written_at,
                    argument,
                    input_position: position,
                    input: format!("{list}` entry `{}", entry.relative().display()),
                });
            }
        }
        Ok(())
    }

    /// What the command writes: (1-based position, the argument as written, the path) of each
    /// file output and each file an option writes or appends to.
    fn writes(&self) -> Vec<(usize, String, &Path)> {
        let outputs = self.command.outputs().iter().zip(&self.outputs).filter_map(|(output, target)| match target {
            OutputTarget::File(path) => Some((output.position(), output.url().to_owned(), path.as_path())),
            OutputTarget::Null => None,
        });
        let options = self
            .files
            .iter()
            .filter(|file| matches!(file.file_use.access, Access::Write | Access::Append))
            .map(|file| (file.position, self.option_text(file.position), file.path.as_path()));
        outputs.chain(options).collect()
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

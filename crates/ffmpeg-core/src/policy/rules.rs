//! The rule types: what the policy says about one option, filter or format, and how a
//! file-valued option or filter option uses its file.

use std::borrow::Cow;

/// The rule for one option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionRule {
    pub(super) name: Cow<'static, str>,
    pub(super) treatment: OptionTreatment,
    pub(super) reason: Cow<'static, str>,
}

/// What the sandbox does with an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionTreatment {
    /// Passed to ffmpeg as written.
    Allowed,
    /// Refused ([`RuleId::ForbiddenOption`](super::RuleId::ForbiddenOption)).
    Forbidden,
    /// Allowed with one of these values only (compared ignoring ASCII case), else refused
    /// ([`RuleId::ForbiddenValue`](super::RuleId::ForbiddenValue)): `-safe 1`, `-pattern_type sequence`.
    OnlyValues(&'static [&'static str]),
    /// The value is a file path: resolved by the sandbox and handed to ffmpeg as an absolute
    /// path inside the data directory (or checked, for [`PathBase::OutputDirectory`]).
    File(FileUse),
    /// The value is a filter graph, checked against the filter rules.
    FilterGraph,
    /// The value is a format name: a demuxer on an input, a muxer on an output (and for
    /// `-segment_format`), checked against the format rules.
    Format,
    /// The value is a `key=value:key=value` list of further options for a nested muxer
    /// (`av_dict_parse_string()`), each checked like a command-line option; file-valued,
    /// graph-valued and nested ones are refused.
    NestedOptions,
    /// Encoder settings (`-x264-params`, `-x265-params`, ...): `key=value` pairs. Keys that
    /// name files the sandbox can check ([`EncoderParams::files`]) are resolved like a
    /// file-valued option and handed over as absolute paths; the other keys that name files
    /// are refused, and so is any other path-like value (absolute, `~`, or with `..`).
    EncoderParams(&'static EncoderParams),
    /// The HLS muxer's `-var_stream_map`: its `name:` values become part of file names (`%v`)
    /// and may only hold ASCII letters, digits, `_` and `-`.
    StreamMap,
    /// A `-loglevel`/`-v` value: refused ([`RuleId::InvalidValue`](super::RuleId::InvalidValue))
    /// when ffmpeg would refuse it ("Invalid loglevel"), as
    /// [`LogSettings::apply`](crate::log::LogSettings::apply) reads it.
    LogLevel,
    /// A preset name (`-vpre`): looked up among the presets installed with ffmpeg; a name
    /// with `/`, `\` or `..` is refused.
    PresetName,
}

/// An encoder library's settings option (`-x264-params`, `-x264opts`, `-x265-params`): how
/// ffmpeg splits its value into `key=value` pairs, how the library spells its keys, and which
/// keys name files. Built by the policy's tables, read by callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncoderParams {
    /// The library, as messages name it (`x264`).
    pub library: &'static str,
    /// How ffmpeg splits the option's value.
    pub syntax: ParamSyntax,
    /// How the library reads a key before comparing it with its own names.
    pub spelling: KeySpelling,
    /// Keys whose values name files the sandbox resolves in the data directory.
    pub files: &'static [ParamFile],
    /// Keys that name files the sandbox does not resolve, each with why: refused.
    pub refused: &'static [(&'static str, &'static str)],
    /// Files the library names by itself when a key asks for one and none is given
    /// (`x264_2pass.log`): the sandbox adds the key with the file in the data directory, where
    /// ffmpeg would write it in a plain directory.
    pub defaults: &'static [ParamDefault],
}

/// How ffmpeg splits an encoder settings option into `key=value` pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParamSyntax {
    /// An `AV_OPT_TYPE_DICT` option, read by `av_dict_parse_string(value, "=", ":", 0)`
    /// (`\` escapes, `'...'` quotes, surrounding whitespace dropped; the last value of a key
    /// wins): `-x264-params`, `-x265-params`.
    Dictionary,
    /// libx264's `-x264opts`: split at every `:`, each piece read by
    /// `sscanf("%[^:=]=%[^:]")` (a piece without a value means `1`); no escapes.
    ColonList,
}

/// How an encoder library reads a key before comparing it (`x264_param_parse()`,
/// `x265_param_parse()`): case-sensitive, `_` read as `-`, a `no` prefix negates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySpelling {
    /// x264: `no` or `no-` negates (the value becomes `true`/`false`).
    X264,
    /// x265: a leading `--` is dropped, then `no-` or `no` negates.
    X265,
    /// Other libraries (libaom, SVT-AV1, rav1e): compared ignoring case, `_` as `-`, without
    /// a `no-` or `no` prefix, which finds every spelling the library could read as a key.
    Loose,
}

/// A key of an encoder settings option whose value names a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParamFile {
    /// The key as the library spells it (`stats`).
    pub key: &'static str,
    /// How the library uses the file.
    pub file_use: FileUse,
    /// Values that are not file names (`scaling-list=default`).
    pub unless: NotAFile,
}

/// Which values of a file key are not file names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotAFile {
    /// Every value is a file name.
    Never,
    /// These values exactly (x265's `scaling-list=off`, `default`).
    Equals(&'static [&'static str]),
    /// Values containing one of these (x264's `cqm`, read with `strstr`: `flat`, `jvt`).
    Contains(&'static [&'static str]),
}

impl NotAFile {
    /// Is `value` a keyword rather than a file name?
    pub fn is_keyword(self, value: &str) -> bool {
        match self {
            NotAFile::Never => false,
            NotAFile::Equals(words) => words.contains(&value),
            NotAFile::Contains(words) => words.iter().any(|w| value.contains(w)),
        }
    }
}

/// A file an encoder library names by itself (see [`EncoderParams::defaults`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParamDefault {
    /// Any of these keys makes the library use the file (`pass`).
    pub when: &'static [&'static str],
    /// The key that names the file instead (`stats`); one of [`EncoderParams::files`].
    pub key: &'static str,
    /// The name the library uses, relative to its working directory (`x264_2pass.log`).
    pub name: &'static str,
    /// Not added when the output has ffmpeg's own `-pass` (libx264: ffmpeg then names the
    /// file after `-passlogfile`).
    pub unless_pass_option: bool,
}

/// How a file-valued option or filter option uses its file. Built by the policy's tables, read
/// by callers; `#[non_exhaustive]` so that it can say more later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct FileUse {
    /// Read, written, or both.
    pub access: Access,
    /// What a relative value is relative to.
    pub base: PathBase,
    /// Whether the value names one file, a pattern of files or a prefix of files.
    pub naming: Naming,
}

/// Whether ffmpeg reads or writes a file named in an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Access {
    /// Read (`-attach`, `drawtext` `textfile`).
    Read,
    /// Written (`-hls_segment_filename`, `psnr` `stats_file`).
    Write,
    /// Written by one run and read by another (`-passlogfile`).
    ReadWrite,
    /// Appended to when it exists, else created (x265's `csv`): a file that existed before
    /// a run is never the run's, so it is neither listed nor removed.
    Append,
    /// A directory that is read (`subtitles` `fontsdir`).
    ReadDirectory,
}

/// What a relative file value is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PathBase {
    /// The data directory. ffmpeg opens these relative to its working directory, so the
    /// sandbox hands them over as absolute paths.
    DataDirectory,
    /// The directory of the output the option belongs to (the HLS muxer's `-master_pl_name`,
    /// the DASH muxer's `-init_seg_name`): ffmpeg joins the value to that directory itself, so
    /// the sandbox checks `OUTPUT_DIR/value` and passes the value unchanged, refusing `..`.
    OutputDirectory,
}

/// Whether a file value names one file or several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Naming {
    /// One file.
    Exact,
    /// A pattern that ffmpeg expands (`%03d`, `%v`, strftime, DASH `$Number$` templates).
    Pattern,
    /// A prefix of the files ffmpeg names (`-passlogfile PREFIX` gives `PREFIX-0.log`).
    Prefix,
    /// One file, and the files named by appending these suffixes to it (x264's `stats=F`:
    /// `F.temp`, `F.mbtree`, `F.mbtree.temp`), derived by the library.
    Suffixed(&'static [&'static str]),
}

/// The rule for one filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    pub(super) name: Cow<'static, str>,
    pub(super) treatment: FilterTreatment,
    pub(super) reason: Cow<'static, str>,
}

/// What the sandbox does with a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FilterTreatment {
    /// Passed to ffmpeg as written.
    Allowed,
    /// Refused ([`RuleId::ForbiddenFilter`](super::RuleId::ForbiddenFilter)).
    Forbidden,
    /// Allowed; these options are checked (files resolved, some refused).
    Checked(&'static [FilterOptionRule]),
}

/// A filter option that the sandbox checks. Built by the policy's tables, read by callers;
/// `#[non_exhaustive]` so that it can say more later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FilterOptionRule {
    /// The option's name, e.g. `filename`.
    pub option: &'static str,
    /// Other names of the same option, e.g. `f`.
    pub aliases: &'static [&'static str],
    /// The option's 0-based index among the filter's positional (shorthand) options, if a
    /// positional value can set it (`subtitles=subs.srt` sets `filename`).
    pub position: Option<usize>,
    /// What is checked.
    pub check: FilterOptionCheck,
}

/// What the sandbox does with a filter option's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FilterOptionCheck {
    /// A file path, resolved in the data directory and replaced by the absolute path.
    File(FileUse),
    /// The `subtitles` filter's file: resolved, then handed over as
    /// `subfile,,start,0,end,0,,:/abs/path`. The filter opens it with a demuxer chosen by the
    /// content (`avformat_open_input()` without options, `vf_subtitles.c`), so a planted HLS or
    /// DASH playlist is demuxed as one; through the `subfile` protocol, whose default whitelist
    /// is `file` (`libavformat/subfile.c`), the playlist's own opens are limited to local files
    /// whatever the build (Debian's 5.1.9 already refuses network protocols for a local
    /// playlist, allowing `file,crypto,data`; verified). Local files outside the data
    /// directory stay reachable this way: see `docs/security.md`, residual risks.
    SubtitlesFile,
    /// A demuxer name (`movie`'s `format_name`), checked as the `-f` of an input.
    InputFormat,
    /// The `movie` filter's `format_opts`: the sandbox sets it to the inputs' whitelists
    /// (`protocol_whitelist=file:format_whitelist=...`), so a client's value is refused.
    SandboxWhitelists,
    /// Refused, with this reason.
    Forbidden(&'static str),
}

/// The rule for one demuxer or muxer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatRule {
    pub(super) names: Cow<'static, str>,
    pub(super) allowed: bool,
    pub(super) reason: Cow<'static, str>,
}

impl OptionRule {
    /// The option's name, without `-` (`*` for the rule of options without one).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// What the sandbox does with the option.
    pub fn treatment(&self) -> &OptionTreatment {
        &self.treatment
    }
    /// Why, as shown in refusals and in `docs/security.md`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl FilterRule {
    /// The filter's name (`*` for the rule of filters without one).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// What the sandbox does with the filter.
    pub fn treatment(&self) -> &FilterTreatment {
        &self.treatment
    }
    /// Why, as shown in refusals and in `docs/security.md`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
    /// Is the filter refused?
    pub fn is_forbidden(&self) -> bool {
        self.treatment == FilterTreatment::Forbidden
    }
}

impl FilterOptionRule {
    /// Does an option written as `key` (named) or as the `position`-th positional value set
    /// this option?
    pub fn matches(&self, key: Option<&str>, position: usize) -> bool {
        match key {
            Some(key) => self.option == key || self.aliases.contains(&key),
            None => self.position == Some(position),
        }
    }
}

impl FormatRule {
    /// The format's names as `ffmpeg -demuxers`/`-muxers` print them, comma-separated
    /// (`mov,mp4,m4a,3gp,3g2,mj2`).
    pub fn names(&self) -> &str {
        &self.names
    }
    /// Is the format allowed?
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }
    /// Why it is refused, or the conditions under which it is allowed (may be empty).
    pub fn reason(&self) -> &str {
        &self.reason
    }
    pub(super) fn matches(&self, name: &str) -> bool {
        self.names.split(',').any(|alias| alias.eq_ignore_ascii_case(name))
    }
}

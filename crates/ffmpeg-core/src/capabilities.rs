//! What the installed ffmpeg knows: the option, codec, format and filter names read from its
//! own help output, and a check of a parsed [`Command`] against them.
//!
//! A command with a misspelt option (`-crff 23`), encoder (`-c:v libx265x`), muxer (`-f mp5`)
//! or filter (`-vf scal=100:100`) parses fine ([`Command::parse`] cannot tell an unknown
//! option from a codec's private one), and ffmpeg rejects it only when the job runs. With
//! [`Capabilities`] read once at start-up, [`Capabilities::check`] rejects it at submit time
//! with a "did you mean" hint.
//!
//! This module only parses text: the caller runs ffmpeg (with `std::process::Command`, or its
//! async runtime's equivalent) and hands over what it printed, in [`CapabilityOutputs`]. The formats are those of ffmpeg 5.1's `fftools/cmdutils.c` and
//! `fftools/opt_common.c`:
//!
//! | output | printed by | lines read |
//! |---|---|---|
//! | `ffmpeg -hide_banner -h full` | `show_help_default` | `-name ...` (ffmpeg's own options), `  -name <type> FLAGS ...` (AVOptions) |
//! | `-muxers`, `-demuxers` | `show_formats_devices` | ` DE name[,name...] description` |
//! | `-encoders`, `-decoders` | `print_codecs` | ` V....D name description (codec id)` |
//! | `-filters` | `show_filters` | ` TSC name A->A description` |
//! | `-version`, or the banner on stderr | `show_version`, `show_banner` | `ffmpeg version 5.1.9-0+deb12u1 ...` |
//!
//! Which names a command may use follows `split_commandline()` and `opt_default()` in
//! `fftools/cmdutils.c` and `find_codec_or_die()` in `fftools/ffmpeg_opt.c`:
//!
//! - An option is known if ffmpeg defines it itself ([`Command::is_known_option`] or the
//!   options listed at the top of `-h full`), or if it is an AVOption of `AVCodecContext`, of a
//!   codec, of `AVFormatContext`, of a muxer, demuxer or protocol, of `SWScaler` or of
//!   `SWResampler`, or a `v`/`a`/`s`-prefixed `AVCodecContext` option (`-vb 1M`). Filter and
//!   bitstream-filter options, which `-h full` prints too, are not command-line options.
//! - The value of `-c`, `-codec`, `-vcodec`, `-acodec`, `-scodec`, `-dcodec` names an encoder
//!   (on an output) or a decoder (on an input), either by its own name (`libx264`) or by its
//!   codec's (`h264`); `copy` is also valid on an output.
//! - `-f` names a muxer on an output and a demuxer on an input; `-demuxers` lists some
//!   demuxers under several comma-separated names (`mov,mp4,m4a,3gp,3g2,mj2`): each counts.
//! - The filters of `-vf`, `-af`, `-filter`, `-filter_complex`, `-lavfi` and of lavfi inputs
//!   (`-f lavfi -i GRAPH`) are filters of `-filters`. A graph that does not parse is skipped
//!   here: [`crate::filtergraph`] reports it.
//!
//! ```
//! use ffmpeg_core::capabilities::{Capabilities, CapabilityOutputs, NameKind};
//! use ffmpeg_core::command::Command;
//!
//! let caps = Capabilities::from_outputs(CapabilityOutputs {
//!     help_full: "AVCodecContext AVOptions:\n  -g  <int>  E..V....... set the GOP size\n\n\
//!                 libx264 AVOptions:\n  -crf  <float>  E..V....... Select the quality\n",
//!     encoders: "Encoders:\n V..... = Video\n ------\n V....D libx264  libx264 H.264 (codec h264)\n",
//!     ..CapabilityOutputs::default()
//! });
//! assert!(caps.check(&Command::parse("-i in.mp4 -c:v libx264 -crf 23 -g 50 out.mp4")?).is_ok());
//!
//! let err = caps.check(&Command::parse("-i in.mp4 -crff 23 out.mp4")?).unwrap_err();
//! assert_eq!(err.kind, NameKind::Option);
//! assert_eq!(err.to_string(), "argument 3 `-crff`: unknown option `crff`; did you mean `-crf`?");
//! # Ok::<(), ffmpeg_core::command::CommandError>(())
//! ```

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

use crate::command::{Command, Opt};
use crate::filtergraph;

/// The text ffmpeg printed for each of the commands [`Capabilities`] reads (stdout, lossily
/// decoded). An empty string stands for an output that is not available: the names it would
/// list are then not checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct CapabilityOutputs<'a> {
    /// `ffmpeg -hide_banner -h full`: ffmpeg's own options, then the AVOptions of every codec,
    /// format, protocol, filter and bitstream filter.
    pub help_full: &'a str,
    /// `ffmpeg -hide_banner -muxers`.
    pub muxers: &'a str,
    /// `ffmpeg -hide_banner -demuxers`.
    pub demuxers: &'a str,
    /// `ffmpeg -hide_banner -encoders`.
    pub encoders: &'a str,
    /// `ffmpeg -hide_banner -decoders`.
    pub decoders: &'a str,
    /// `ffmpeg -hide_banner -filters`.
    pub filters: &'a str,
    /// `ffmpeg -version`, or the banner ffmpeg prints on stderr unless `-hide_banner` is given:
    /// only the line `ffmpeg version VERSION ...` is read.
    pub version: &'a str,
}

/// The names the installed ffmpeg knows, read from its help output by
/// [`Capabilities::from_outputs`]. Cheap to share (`Arc`) and to query; immutable.
///
/// [`Capabilities::default`] knows nothing and therefore checks nothing.
///
/// With the `serde` feature it serializes (and deserializes) as its name sets, so that a
/// process can publish what its ffmpeg knows for another to check commands against.
#[derive(Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Capabilities {
    /// Options listed at the top of `-h full` (ffmpeg's own) and the AVOptions usable on the
    /// command line (codec, format, protocol, sws, swr), without `-`.
    options: BTreeSet<String>,
    /// Whether any AVOption was read: options are only checked then.
    has_av_options: bool,
    /// The `AVCodecContext` AVOptions, which also take a `v`/`a`/`s` prefix.
    codec_context_options: BTreeSet<String>,
    /// Encoder names and the names of the codecs they encode.
    encoders: BTreeSet<String>,
    /// Decoder names and the names of the codecs they decode.
    decoders: BTreeSet<String>,
    muxers: BTreeSet<String>,
    demuxers: BTreeSet<String>,
    filters: BTreeSet<String>,
    /// `5.1.9-0+deb12u1` from `ffmpeg version 5.1.9-0+deb12u1 Copyright ...`.
    version: Option<String>,
}

/// What kind of name a command used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum NameKind {
    /// An option name (`crf` in `-crf 23`), without `-` and stream specifier.
    Option,
    /// An encoder, or a codec that has one: the value of `-c`/`-codec`/`-vcodec`/... on an output.
    Encoder,
    /// A decoder, or a codec that has one: the value of `-c`/`-codec`/`-vcodec`/... on an input.
    Decoder,
    /// A muxer: the value of `-f` on an output.
    Muxer,
    /// A demuxer: the value of `-f` on an input.
    Demuxer,
    /// A filter in a filter graph.
    Filter,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Option => "option",
            NameKind::Encoder => "encoder",
            NameKind::Decoder => "decoder",
            NameKind::Muxer => "muxer",
            NameKind::Demuxer => "demuxer",
            NameKind::Filter => "filter",
        })
    }
}

/// A name in a command that the installed ffmpeg does not know.
///
/// Displays as "argument 3 `-crff`: unknown option `crff`; did you mean `-crf`?" or, without a
/// close candidate, "argument 3 `-qwertyuiop`: unknown option `qwertyuiop`".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[error("argument {position} `{argument}`: unknown {kind} `{name}`{}", DidYouMean(*.kind, .suggestion.as_deref()))]
#[non_exhaustive]
pub struct UnknownName {
    /// 1-based position of the argument in the split command line: the option itself for an
    /// option (`-crff`), its value for a codec, format or filter graph (`libx265x`,
    /// `scal=1:1`), the URL for a lavfi input graph.
    pub position: usize,
    /// That argument as written: `-crff:v`, `libx265x`, `scal=1:1,format=yuv420p`.
    pub argument: String,
    /// What kind of name it is.
    pub kind: NameKind,
    /// The unknown name: `crff` (no `-`, no stream specifier), `libx265x`, `scal`.
    pub name: String,
    /// The closest known name of the same kind, in the same form as `name` (`crf`), if one
    /// is close enough.
    pub suggestion: Option<String>,
}

impl UnknownName {
    /// Without a suggestion, which [`Capabilities::unknown_names`] adds once sorted.
    fn new(position: usize, argument: String, kind: NameKind, name: &str) -> UnknownName {
        UnknownName { position, argument, kind, name: name.to_owned(), suggestion: None }
    }
}

/// The "; did you mean ..." tail of [`UnknownName`]'s message.
struct DidYouMean<'a>(NameKind, Option<&'a str>);

impl fmt::Display for DidYouMean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DidYouMean(_, None) => Ok(()),
            DidYouMean(NameKind::Option, Some(s)) => write!(f, "; did you mean `-{s}`?"),
            DidYouMean(_, Some(s)) => write!(f, "; did you mean `{s}`?"),
        }
    }
}

/// Options whose value names an encoder (output) or decoder (input): `OPT_SPEC` codec options
/// of `fftools/ffmpeg_opt.c`.
const CODEC_OPTIONS: &[&str] = &["c", "codec", "vcodec", "acodec", "scodec", "dcodec"];

/// Options whose value is a filter graph.
const FILTER_OPTIONS: &[&str] = &["vf", "af", "filter", "filter_complex", "lavfi"];

/// How many of [`Capabilities::unknown_names`] get a suggestion.
const MAX_SUGGESTIONS: usize = 16;

impl Capabilities {
    /// Reads the names from ffmpeg's outputs. Never fails: lines that are not entries (titles,
    /// legends, separators, blank lines, constants of enum options) are skipped, and an output
    /// that lists nothing leaves its kinds unchecked (see [`Capabilities::check`]).
    ///
    /// From `help_full`, the options before the first `... AVOptions:` header are ffmpeg's own
    /// (`-name ...` at the start of a line); after it, lines `  -name <type> FLAGS ...` are
    /// AVOptions, up to the `AVFilter AVOptions:` header that starts the filter and
    /// bitstream-filter classes (`show_help_default()` in `fftools/ffmpeg_opt.c` prints those
    /// last). AVOptions flagged `B` (bitstream filter) are skipped wherever they appear.
    pub fn from_outputs(outputs: CapabilityOutputs<'_>) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.read_help_full(outputs.help_full);
        for text in [outputs.muxers, outputs.demuxers] {
            caps.read_formats(text);
        }
        read_codecs(outputs.encoders, &mut caps.encoders);
        read_codecs(outputs.decoders, &mut caps.decoders);
        read_filters(outputs.filters, &mut caps.filters);
        caps.version = read_version(outputs.version);
        caps
    }

    /// The ffmpeg version from `-version` or the banner (`5.1.9-0+deb12u1`), if it was given.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// What both `self` and `other` know: a command passes the result's
    /// [`check`](Capabilities::check) only if it passes both. A kind that one side leaves
    /// unchecked (its output listed nothing) takes the other side's names; the version is kept
    /// when both have the same. (Names of a kind that both list but none in common leave that
    /// kind unchecked, as an empty listing does; ffmpeg builds always share many.)
    ///
    /// ```
    /// use ffmpeg_core::capabilities::{Capabilities, CapabilityOutputs, NameKind};
    ///
    /// let encoders = |list: &str| Capabilities::from_outputs(CapabilityOutputs {
    ///     encoders: list,
    ///     ..CapabilityOutputs::default()
    /// });
    /// let gpu = encoders(" V....D h264_nvenc NVIDIA NVENC H.264 encoder (codec h264)\n V....D libx264 H.264\n");
    /// let cpu = encoders(" V....D libx264 H.264\n");
    /// let both = gpu.intersection(&cpu);
    /// assert!(both.knows(NameKind::Encoder, "libx264"));
    /// assert!(!both.knows(NameKind::Encoder, "h264_nvenc"));
    /// assert!(both.knows(NameKind::Filter, "scale"), "neither listed filters: unchecked");
    /// ```
    #[must_use]
    pub fn intersection(&self, other: &Capabilities) -> Capabilities {
        let both = |kind: NameKind, a: &BTreeSet<String>, b: &BTreeSet<String>| match (
            self.is_unchecked(kind),
            other.is_unchecked(kind),
        ) {
            (true, _) => b.clone(),
            (false, true) => a.clone(),
            (false, false) => a.intersection(b).cloned().collect(),
        };
        let options = both(NameKind::Option, &self.options, &other.options);
        let codec_context_options = match (self.has_av_options, other.has_av_options) {
            (false, _) => other.codec_context_options.clone(),
            (true, false) => self.codec_context_options.clone(),
            (true, true) => self.codec_context_options.intersection(&other.codec_context_options).cloned().collect(),
        };
        Capabilities {
            options,
            has_av_options: self.has_av_options || other.has_av_options,
            codec_context_options,
            encoders: both(NameKind::Encoder, &self.encoders, &other.encoders),
            decoders: both(NameKind::Decoder, &self.decoders, &other.decoders),
            muxers: both(NameKind::Muxer, &self.muxers, &other.muxers),
            demuxers: both(NameKind::Demuxer, &self.demuxers, &other.demuxers),
            filters: both(NameKind::Filter, &self.filters, &other.filters),
            version: if self.version == other.version { self.version.clone() } else { None },
        }
    }

    /// True when no name at all was read: [`Capabilities::check`] then accepts everything.
    pub fn is_empty(&self) -> bool {
        NameKind::ALL.iter().all(|&kind| self.is_unchecked(kind))
    }

    /// The names of `kind` read from ffmpeg, sorted. For [`NameKind::Option`]: ffmpeg's own
    /// options as listed by `-h full` and the command-line AVOptions, without `-` (the
    /// built-in table of [`Command::known_option_names`] and the `no`/`v`/`a`/`s`-prefixed
    /// forms are not listed). For encoders and decoders: their names and those of their codecs
    /// (`libx264`, `h264`). For demuxers: each comma-separated name (`mov`, `mp4`, ...).
    pub fn names(&self, kind: NameKind) -> impl Iterator<Item = &str> {
        match kind {
            NameKind::Option => &self.options,
            NameKind::Encoder => &self.encoders,
            NameKind::Decoder => &self.decoders,
            NameKind::Muxer => &self.muxers,
            NameKind::Demuxer => &self.demuxers,
            NameKind::Filter => &self.filters,
        }
        .iter()
        .map(String::as_str)
    }

    /// Does the installed ffmpeg know `name` as a `kind`? Options are named without `-` and
    /// stream specifier (`crf`, `nostdin`, `vb`). Always true for a kind whose output listed
    /// nothing, since it cannot be checked; `copy` is a known encoder.
    ///
    /// ```
    /// use ffmpeg_core::capabilities::{Capabilities, CapabilityOutputs, NameKind};
    ///
    /// let caps = Capabilities::from_outputs(CapabilityOutputs {
    ///     muxers: "File formats:\n D. = Demuxing supported\n .E = Muxing supported\n --\n  E mp4  MP4 (MPEG-4 Part 14)\n",
    ///     ..CapabilityOutputs::default()
    /// });
    /// assert!(caps.knows(NameKind::Muxer, "mp4"));
    /// assert!(!caps.knows(NameKind::Muxer, "mp5"));
    /// assert!(caps.knows(NameKind::Filter, "anything"), "no -filters output: not checked");
    /// ```
    pub fn knows(&self, kind: NameKind, name: &str) -> bool {
        if self.is_unchecked(kind) {
            return true;
        }
        match kind {
            NameKind::Option => {
                Command::is_known_option(name)
                    || self.options.contains(name)
                    || name.strip_prefix(['v', 'a', 's']).is_some_and(|rest| {
                        // `opt_default()`: `-vb` is `-b` for video streams.
                        self.codec_context_options.contains(rest)
                    })
            }
            NameKind::Encoder => name == "copy" || self.encoders.contains(name),
            NameKind::Decoder => self.decoders.contains(name),
            NameKind::Muxer => self.muxers.contains(name),
            NameKind::Demuxer => self.demuxers.contains(name),
            NameKind::Filter => self.filters.contains(name),
        }
    }

    /// The known name of `kind` closest to `name`, if one is close enough to be a likely
    /// typo: Damerau-Levenshtein distance (case-insensitive) at most 1 for names of up to 5
    /// characters, 2 up to 10, 3 beyond; names of 1 or 2 characters only match when they
    /// differ in case. Ties go to the substitution of a nearer key on a QWERTY keyboard
    /// (`mp5` -> `mp4`, not `mp2`), then to the higher Jaro-Winkler similarity, then to the
    /// alphabetically first. Only names of the same kind are candidates.
    ///
    /// ```
    /// use ffmpeg_core::capabilities::{Capabilities, CapabilityOutputs, NameKind};
    ///
    /// let caps = Capabilities::from_outputs(CapabilityOutputs {
    ///     filters: "Filters:\n  T.. = Timeline support\n TSC scale  V->V  Scale the input video size.\n",
    ///     ..CapabilityOutputs::default()
    /// });
    /// assert_eq!(caps.suggestion(NameKind::Filter, "scal"), Some("scale"));
    /// assert_eq!(caps.suggestion(NameKind::Filter, "blur"), None);
    /// ```
    pub fn suggestion(&self, kind: NameKind, name: &str) -> Option<&str> {
        let builtin: Vec<&str> = match kind {
            NameKind::Option => Command::known_option_names().collect(),
            _ => Vec::new(),
        };
        let candidates = self.names(kind).chain(builtin).chain((kind == NameKind::Encoder).then_some("copy"));
        closest(name, candidates)
    }

    /// Checks every option name, codec, format and filter name in `command` against what the
    /// installed ffmpeg knows ([`Capabilities::knows`]) and returns the first unknown one, by
    /// position. Kinds whose output listed nothing are not checked.
    ///
    /// # Errors
    /// [`UnknownName`] for the first unknown name, with a suggestion when one is close.
    pub fn check(&self, command: &Command) -> Result<(), UnknownName> {
        match self.unknown_names_with_suggestions(command, 1).into_iter().next() {
            Some(unknown) => Err(unknown),
            None => Ok(()),
        }
    }

    /// Every unknown name in `command`, ordered by position (several filters of one graph in
    /// graph order). Empty when [`Capabilities::check`] succeeds. Only the first 16 carry a
    /// suggestion, which bounds the work a hostile command can cause.
    pub fn unknown_names(&self, command: &Command) -> Vec<UnknownName> {
        self.unknown_names_with_suggestions(command, MAX_SUGGESTIONS)
    }

    /// Every unknown name, the first `suggested` with their suggestion.
    fn unknown_names_with_suggestions(&self, command: &Command, suggested: usize) -> Vec<UnknownName> {
        let mut unknown = Vec::new();
        for opt in command.global_options() {
            self.check_opt(opt, None, &mut unknown);
        }
        for input in command.inputs() {
            for opt in input.options() {
                self.check_opt(opt, Some(Side::Input), &mut unknown);
            }
            if input.format() == Some("lavfi") {
                self.check_graph(input.url(), input.position(), &mut unknown);
            }
        }
        for output in command.outputs() {
            for opt in output.options() {
                self.check_opt(opt, Some(Side::Output), &mut unknown);
            }
        }
        unknown.sort_by_key(|u| u.position);
        for u in unknown.iter_mut().take(suggested) {
            u.suggestion = self.suggestion(u.kind, &u.name).map(str::to_owned);
        }
        unknown
    }

    /// Checks one option's name and, for codec, format and filter options, its value. `side`
    /// is `None` for global options.
    fn check_opt(&self, opt: &Opt, side: Option<Side>, unknown: &mut Vec<UnknownName>) {
        let name = opt.name();
        if !self.knows(NameKind::Option, name) {
            unknown.push(UnknownName::new(opt.position(), opt.flag(), NameKind::Option, name));
            // An unknown option's value means nothing.
            return;
        }
        let Some(value) = opt.value() else { return };
        let value_position = opt.position() + 1;
        let kind = match side {
            Some(Side::Input) if CODEC_OPTIONS.contains(&name) => Some(NameKind::Decoder),
            Some(Side::Output) if CODEC_OPTIONS.contains(&name) => Some(NameKind::Encoder),
            Some(Side::Input) if name == "f" => Some(NameKind::Demuxer),
            Some(Side::Output) if name == "f" => Some(NameKind::Muxer),
            _ => None,
        };
        if let Some(kind) = kind {
            if !self.knows(kind, value) {
                unknown.push(UnknownName::new(value_position, value.to_owned(), kind, value));
            }
        } else if FILTER_OPTIONS.contains(&name) {
            self.check_graph(value, value_position, unknown);
        }
    }

    /// Checks the filter names of `graph`, the argument at `position`; a graph that does not
    /// parse is left to the filter-graph check.
    fn check_graph(&self, graph: &str, position: usize, unknown: &mut Vec<UnknownName>) {
        if self.is_unchecked(NameKind::Filter) {
            return;
        }
        let Ok(parsed) = filtergraph::parse(graph) else {
            return;
        };
        for filter in parsed.filters() {
            // `Filter::name` is without the `@instance` suffix.
            if !self.knows(NameKind::Filter, &filter.name) {
                unknown.push(UnknownName::new(position, graph.to_owned(), NameKind::Filter, &filter.name));
            }
        }
    }

    /// A kind is checked only if its output listed at least one name.
    fn is_unchecked(&self, kind: NameKind) -> bool {
        match kind {
            NameKind::Option => !self.has_av_options,
            NameKind::Encoder => self.encoders.is_empty(),
            NameKind::Decoder => self.decoders.is_empty(),
            NameKind::Muxer => self.muxers.is_empty(),
            NameKind::Demuxer => self.demuxers.is_empty(),
            NameKind::Filter => self.filters.is_empty(),
        }
    }

    /// Reads `ffmpeg -h full`; see [`Capabilities::from_outputs`].
    fn read_help_full(&mut self, text: &str) {
        // The section being read: `None` before the first AVOptions header.
        let mut section: Option<&str> = None;
        for line in text.lines() {
            if let Some(class) = line.strip_suffix(" AVOptions:")
                && !line.starts_with([' ', '-'])
            {
                if class == "AVFilter" {
                    // Filter, then bitstream-filter classes: not command-line options.
                    break;
                }
                section = Some(class);
                continue;
            }
            match section {
                None => {
                    // `-crf`-style own options: `-name ARG  description` at column 0;
                    // `--help` is the option `-help`.
                    if let Some(name) = line.strip_prefix('-').and_then(|rest| rest.split_whitespace().next()) {
                        self.options.insert(name.to_owned());
                    }
                }
                Some(class) => {
                    if let Some(name) = av_option_name(line) {
                        if class == "AVCodecContext" {
                            self.codec_context_options.insert(name.to_owned());
                        }
                        self.options.insert(name.to_owned());
                        self.has_av_options = true;
                    }
                }
            }
        }
    }

    /// Reads `ffmpeg -muxers`, `-demuxers` or `-formats`:
    ///
    /// ```text
    /// File formats:
    ///  D. = Demuxing supported
    ///  .E = Muxing supported
    ///  --
    ///  D  mov,mp4,m4a,3gp,3g2,mj2 QuickTime / MOV
    ///   E mp4             MP4 (MPEG-4 Part 14)
    /// ```
    ///
    /// The flags are a fixed-width column (blank for a missing flag), as wide as the legend's
    /// `D.` (versions after 5.1 add a third, device, column: `D..`); entries follow the `--`
    /// line.
    fn read_formats(&mut self, text: &str) {
        let mut width = 2;
        let mut entries = false;
        for line in text.lines() {
            if !entries {
                let mut tokens = line.split_whitespace();
                match (tokens.next(), tokens.next()) {
                    (Some(flags), Some("=")) => width = flags.chars().count(),
                    (Some(sep), None) if sep.chars().all(|c| c == '-') => entries = true,
                    _ => {}
                }
                continue;
            }
            let Some((flags, rest)) =
                line.strip_prefix(' ').and_then(|l| l.char_indices().nth(width).map(|(i, _)| l.split_at(i)))
            else {
                continue;
            };
            let Some(names) = rest.split_whitespace().next() else {
                continue;
            };
            for name in names.split(',').filter(|n| !n.is_empty()) {
                if flags.contains('D') {
                    self.demuxers.insert(name.to_owned());
                }
                if flags.contains('E') {
                    self.muxers.insert(name.to_owned());
                }
            }
        }
    }
}

impl fmt::Debug for Capabilities {
    /// The version and how many names of each kind, not the names themselves.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capabilities")
            .field("version", &self.version)
            .field("options", &self.options.len())
            .field("encoders", &self.encoders.len())
            .field("decoders", &self.decoders.len())
            .field("muxers", &self.muxers.len())
            .field("demuxers", &self.demuxers.len())
            .field("filters", &self.filters.len())
            .finish()
    }
}

impl NameKind {
    const ALL: [NameKind; 6] =
        [NameKind::Option, NameKind::Encoder, NameKind::Decoder, NameKind::Muxer, NameKind::Demuxer, NameKind::Filter];
}

/// Whether a per-file option belongs to an input or an output.
#[derive(Clone, Copy)]
enum Side {
    Input,
    Output,
}

/// The name in an AVOption line of `-h full` (`opt_list()` in `libavutil/opt.c`):
/// `  -crf               <float>      E..V....... Select the quality ...`. Named constants
/// (`     unaligned  .D.V....... ...`) and filter options (`   w  <string>  ..FV....... ...`,
/// printed without `-`) are not AVOption lines; options flagged `B` belong to a bitstream
/// filter and are skipped.
fn av_option_name(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("  -")?;
    let mut tokens = rest.split_whitespace();
    let name = tokens.next().filter(|_| !rest.starts_with(' '))?;
    let ty = tokens.next()?;
    let flags = tokens.next().unwrap_or_default();
    (ty.starts_with('<') && ty.ends_with('>') && !flags.contains('B')).then_some(name)
}

/// Reads `ffmpeg -encoders` or `-decoders` into `names`: the codec names and, from a trailing
/// `(codec NAME)`, the name of the codec they implement (`print_codecs()` prints it when it
/// differs), which `find_codec_or_die()` also accepts.
///
/// ```text
/// Encoders:
///  V..... = Video
///  ------
///  V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC (codec h264)
/// ```
fn read_codecs(text: &str, names: &mut BTreeSet<String>) {
    for line in text.lines().filter(|l| l.starts_with(' ')) {
        let mut tokens = line.split_whitespace();
        let (Some(flags), Some(name)) = (tokens.next(), tokens.next()) else {
            continue;
        };
        if name == "=" || !flags.chars().all(|c| c.is_ascii_alphabetic() || c == '.') {
            continue;
        }
        names.insert(name.to_owned());
        if let Some(codec) = line
            .trim_end()
            .strip_suffix(')')
            .and_then(|l| l.rsplit_once("(codec "))
            .map(|(_, codec)| codec)
            .filter(|c| !c.is_empty() && !c.contains(char::is_whitespace))
        {
            names.insert(codec.to_owned());
        }
    }
}

/// Reads `ffmpeg -filters` into `names`. There is no separator after the legend; an entry is
/// a line whose third token is the pads (`A->A`, `|->V`, `N->N`).
///
/// ```text
/// Filters:
///   T.. = Timeline support
///   A = Audio input/output
///  ..C acompressor       A->A       Audio compressor.
/// ```
fn read_filters(text: &str, names: &mut BTreeSet<String>) {
    for line in text.lines().filter(|l| l.starts_with(' ')) {
        let mut tokens = line.split_whitespace();
        if let (Some(_flags), Some(name), Some(pads)) = (tokens.next(), tokens.next(), tokens.next())
            && name != "="
            && pads.contains("->")
        {
            names.insert(name.to_owned());
        }
    }
}

/// `5.1.9-0+deb12u1` from `ffmpeg version 5.1.9-0+deb12u1 Copyright (c) ...`.
fn read_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("ffmpeg version "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}

/// The candidate closest to `name`; see [`Capabilities::suggestion`].
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let len = lower.chars().count();
    let max = match len {
        0..=2 => 0,
        3..=5 => 1,
        6..=10 => 2,
        _ => 3,
    };
    let mut best: Option<(Score, &str)> = None;
    for candidate in candidates {
        // Cheap bound first: the distance is at least the difference in length.
        if candidate.chars().count().abs_diff(len) > max {
            continue;
        }
        let other = candidate.to_lowercase();
        let distance = strsim::damerau_levenshtein(&lower, &other);
        if distance > max || candidate == name {
            continue;
        }
        let score =
            Score { distance, keys: key_distance(&lower, &other), similarity: strsim::jaro_winkler(&lower, &other) };
        let better = match &best {
            None => true,
            Some((b, b_name)) => match score.cmp(b) {
                Ordering::Less => true,
                Ordering::Equal => candidate < *b_name,
                Ordering::Greater => false,
            },
        };
        if better {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, name)| name)
}

/// How far a candidate is from the name typed; smaller is closer.
#[derive(Debug, Clone, Copy)]
struct Score {
    distance: usize,
    /// See [`key_distance`].
    keys: u32,
    similarity: f64,
}

impl Score {
    fn cmp(&self, other: &Score) -> Ordering {
        self.distance
            .cmp(&other.distance)
            .then(self.keys.cmp(&other.keys))
            .then(other.similarity.total_cmp(&self.similarity))
    }
}

/// For two names that differ in exactly one substituted character, the squared distance
/// between the two keys on a QWERTY keyboard in quarter-key units (16 for neighbours in a row:
/// `5`/`4`); 16 for every other difference (insertion, deletion, transposition), so that a
/// near-key substitution ties with them and a far-key one ranks after.
fn key_distance(a: &str, b: &str) -> u32 {
    const NEIGHBOUR: u32 = 16;
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() != b.len() {
        return NEIGHBOUR;
    }
    let mut diffs = a.iter().zip(&b).filter(|(x, y)| x != y);
    match (diffs.next(), diffs.next()) {
        (Some((&x, &y)), None) => match (key_position(x), key_position(y)) {
            (Some((x1, y1)), Some((x2, y2))) => {
                let (dx, dy) = (x1.abs_diff(x2), y1.abs_diff(y2));
                dx * dx + dy * dy
            }
            // A character off the letter and digit rows: as far as it gets.
            _ => u32::MAX,
        },
        _ => NEIGHBOUR,
    }
}

/// A key's position on a QWERTY keyboard in quarter-key units: (column, row), rows staggered.
fn key_position(c: char) -> Option<(u32, u32)> {
    const ROWS: [(&str, u32); 4] = [("1234567890-", 0), ("qwertyuiop", 2), ("asdfghjkl", 3), ("zxcvbnm", 5)];
    let c = if c == '_' { '-' } else { c };
    ROWS.iter().zip(0u32..).find_map(|((row, offset), y)| {
        row.chars().position(|k| k == c).and_then(|x| u32::try_from(x).ok()).map(|x| (x * 4 + offset, y * 4))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyboard_ties() {
        assert!(key_distance("mp5", "mp4") < key_distance("mp5", "mp3"));
        assert!(key_distance("mp5", "mp3") < key_distance("mp5", "mp2"));
        assert_eq!(key_distance("crff", "crf"), 16);
        assert_eq!(key_distance("sacle", "scale"), 16);
        assert_eq!(key_position('_'), key_position('-'));
        assert_eq!(closest("mp5", ["mp2", "mp3", "mp4", "mpeg"].into_iter()), Some("mp4"));
        assert_eq!(closest("X", ["x", "y"].into_iter()), Some("x"));
        assert_eq!(closest("xy", ["x", "y"].into_iter()), None);
        assert_eq!(closest("", ["x"].into_iter()), None);
    }

    #[test]
    fn version_line() {
        assert_eq!(
            read_version("ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026\n").as_deref(),
            Some("5.1.9-0+deb12u1")
        );
        assert_eq!(read_version("garbage"), None);
    }
}

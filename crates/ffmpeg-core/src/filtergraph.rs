//! ffmpeg's filtergraph syntax, as given to `-vf`, `-af`, `-filter_complex`, `-lavfi` or a
//! `lavfi` input: parse it into chains, filters, link labels and unescaped option values, and
//! write it back with correct escaping.
//!
//! The grammar is ffmpeg 5.1's own code, not its (looser) documentation:
//!
//! - The graph: `avfilter_graph_parse2()` in `libavfilter/graphparser.c`. An optional leading
//!   `sws_flags=FLAGS;`, then chains separated by `;`, each a list of filters separated by `,`.
//!   Whitespace (` `, `\t`, `\n`, `\r`) around filters and labels is skipped.
//! - A filter: `[in1][in2]name@id=args[out1][out2]`. Each label, the name and the args are one
//!   token read by `av_get_token()` (`libavutil/avstring.c`): leading and trailing whitespace is
//!   dropped, `'...'` quotes anything, `\` escapes the next character, and the token ends at an
//!   unescaped terminator: `]` for a label, one of `=,;[` for the name, one of `[],;` for the
//!   args. This is the *second* escaping level of the ffmpeg-filters manual ("Notes on
//!   filtergraph escaping").
//! - The name: `create_filter()` splits `name@id` at the first `@` that has something after it;
//!   every ffmpeg filter name is made of ASCII letters, digits and `_`.
//! - The args: `process_options()` in `libavfilter/avfilter.c` with `av_opt_get_key_value()` in
//!   `libavutil/opt.c`, the manual's *first* escaping level. Options are separated by `:`; an
//!   option is `key=value` when it starts with a key (ASCII letters, digits, `-_./`) followed by
//!   `=`, otherwise it is a positional (shorthand) value; each value is again read by
//!   `av_get_token()`, so `\` and `'...'` work once more.
//!
//! A `lavfi` input (`-f lavfi -i GRAPH`) goes through `avfilter_graph_parse_ptr()`, which
//! differs in one point: it does not skip whitespace before `sws_flags=`, so there
//! ` sws_flags=...;` names a filter `sws_flags` and ffmpeg fails.
//!
//! Where ffmpeg 5.1 silently accepts something ambiguous, [`parse`] rejects it (checked
//! against the `ffmpeg` 5.1 binary): an unterminated quote (ffmpeg quotes to the end of the
//! graph), a `\` with nothing after it (ffmpeg keeps it), a NUL character (ffmpeg would stop
//! reading there), and a positional value after a `key=value` option (ffmpeg 5.1 assigns it to
//! an unrelated option: `drawtext=text=x:/etc/hostname` sets `textfile`).
//!
//! Parsing takes time and memory linear in the length of the graph.
//!
//! The parse shows what each filter is given in the graph text, not everything it will do:
//! `sendcmd`, `asendcmd`, `zmq` and `azmq` change other filters' options while running
//! (`drawtext`'s `reinit` command re-reads `textfile`), and `sws_flags` reaches every `scale`.
//!
//! ```
//! use ffmpeg_core::filtergraph::{self, FilterArg};
//!
//! let mut graph = filtergraph::parse("[0:v]drawtext=text='Hello\\, World':fontsize=24[v]")?;
//! let drawtext = &graph.chains[0].filters[0];
//! assert_eq!(drawtext.inputs, ["0:v"]);
//! assert_eq!(drawtext.name, "drawtext");
//! assert_eq!(drawtext.arg("text", Some(1)), Some("Hello, World"));
//! assert_eq!(drawtext.outputs, ["v"]);
//!
//! // Rewrite a value; Display escapes it again.
//! for filter in graph.filters_mut() {
//!     filter.set_arg("text", Some(1), "It's 10:30".to_owned());
//! }
//! assert_eq!(graph.to_string(), r"[0:v]drawtext=text=It\\\'s 10\\:30:fontsize=24[v]");
//! assert_eq!(filtergraph::parse(&graph.to_string())?, graph);
//! # Ok::<(), ffmpeg_core::filtergraph::FilterGraphError>(())
//! ```

mod parse;
mod write;

/// A parsed filtergraph: `[sws_flags=FLAGS;]CHAIN[;CHAIN]...`.
///
/// Built by [`parse`] (or by hand); [`Display`](std::fmt::Display) writes it back as a
/// filtergraph that [`parse`] reads to an equal value (see [`Filter`] for what equality
/// ignores and [`Display`](#impl-Display-for-FilterGraph) for what cannot be written).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FilterGraph {
    /// The chains, in order; never empty after [`parse`].
    pub chains: Vec<FilterChain>,
    /// The text between a leading `sws_flags=` and the first `;`, exactly as written (ffmpeg
    /// does not unescape it here). ffmpeg applies it as the option string `flags=FLAGS` to
    /// every `scale` filter of the graph (so it may set other swscale options after a `:`).
    pub sws_flags: Option<String>,
}

/// A chain of filters separated by `,`: each filter's unlabelled outputs feed the next
/// filter's unlabelled inputs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FilterChain {
    /// The filters, in order; never empty after [`parse`].
    pub filters: Vec<Filter>,
}

/// One filter: `[in1][in2]name@id=args[out1][out2]`.
///
/// Every string is unescaped (both escaping levels): what ffmpeg itself sees.
///
/// Equality (`==`) ignores [`offset`](Filter::offset), so a graph equals the parse of its
/// [`Display`](std::fmt::Display) form and graphs that differ only in whitespace are equal.
#[derive(Debug, Clone, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Filter {
    /// Input link labels, without brackets: `["0:v", "wm"]` for `[0:v][wm]overlay`. Never
    /// empty strings after [`parse`].
    pub inputs: Vec<String>,
    /// The filter name, e.g. `scale`, `drawtext`: ASCII letters, digits and `_` after [`parse`].
    pub name: String,
    /// The instance id of `name@id` (for `sendcmd`, `zmq`), never empty after [`parse`].
    pub instance: Option<String>,
    /// The options, in order, values fully unescaped. Positional (shorthand) options come
    /// first; after [`parse`] none follows a named one.
    pub args: Vec<FilterArg>,
    /// Output link labels, without brackets.
    pub outputs: Vec<String>,
    /// Byte offset in the parsed text where the filter starts (its first input label, else
    /// its name), for messages. Not part of equality; `0` for filters built by hand.
    pub offset: usize,
}

/// One option of a filter. Exhaustive on purpose: ffmpeg's grammar has only these two forms.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum FilterArg {
    /// A value without a key: ffmpeg gives the n-th of these to the filter's n-th option in
    /// declaration order (constants and aliases skipped), e.g. `scale=1280:-2` sets `w` and
    /// `h`, and `subtitles=subs.srt` sets `filename`.
    Positional(String),
    /// `key=value`. The key is made of ASCII letters, digits and `-_./` (ffmpeg's
    /// `is_key_char()`); the key is never escaped. Option names are matched exactly, and
    /// aliases are separate keys (`subtitles` takes `filename` and `f`).
    Named {
        /// The option name, e.g. `w`, `fontfile`.
        key: String,
        /// The unescaped value.
        value: String,
    },
}

/// Why a filtergraph could not be parsed. `offset` is a byte offset into the text given to
/// [`parse`], shown in messages as "byte N".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterGraphError {
    /// The graph is empty or only whitespace.
    #[error("the filtergraph is empty")]
    Empty,
    /// A NUL character: ffmpeg (C strings) would stop reading the graph there.
    #[error("byte {offset}: NUL character in the filtergraph")]
    NulCharacter {
        /// Where the NUL is.
        offset: usize,
    },
    /// `sws_flags=` without a `;` after it.
    #[error("byte {offset}: `sws_flags=` is not terminated with `;`")]
    UnterminatedSwsFlags {
        /// Where `sws_flags=` starts.
        offset: usize,
    },
    /// A `[` without its `]`.
    #[error("byte {offset}: link label `[` is not closed with `]`")]
    UnterminatedLabel {
        /// Where the `[` is.
        offset: usize,
    },
    /// A label with nothing (or only whitespace) between `[` and `]`.
    #[error("byte {offset}: empty link label")]
    EmptyLabel {
        /// Where the `[` is.
        offset: usize,
    },
    /// No filter name where one is needed: an empty graph after `sws_flags=...;`, labels alone,
    /// `,,`, a trailing `,` or `;`, `=args` without a name.
    #[error("byte {offset}: missing filter name")]
    MissingFilterName {
        /// Where the name should be.
        offset: usize,
    },
    /// A name that no ffmpeg filter has: not ASCII letters, digits and `_` (`sc ale`,
    /// `scale@` with nothing after the `@`).
    #[error("byte {offset}: invalid filter name `{name:.64}`")]
    InvalidFilterName {
        /// Where the name starts.
        offset: usize,
        /// The name as read (unescaped, with any `@id`).
        name: String,
    },
    /// A `'` without its closing `'` (ffmpeg would quote to the end of the graph).
    #[error("byte {offset}: quote `'` is not closed")]
    UnterminatedQuote {
        /// Where the opening `'` is.
        offset: usize,
    },
    /// A `\` at the end of the graph or of an option string, escaping nothing (ffmpeg keeps it
    /// as a literal `\`; write `\\` for that).
    #[error("byte {offset}: `\\` at the end escapes nothing")]
    TrailingBackslash {
        /// Where the `\` is.
        offset: usize,
    },
    /// An option `=value` with an empty key.
    #[error("byte {offset}: option without a name before `=`")]
    EmptyOptionKey {
        /// Where the option starts.
        offset: usize,
    },
    /// A positional value after a `key=value` option. ffmpeg 5.1 accepts some of these and
    /// assigns them to an unrelated option (`drawtext=text=x:/etc/hostname` sets `textfile`),
    /// so they are rejected.
    #[error(
        "byte {offset}: option `{value:.64}` has no `key=` but follows a `key=value` option; \
         write it as `key=value` too"
    )]
    PositionalAfterNamed {
        /// Where the value starts.
        offset: usize,
        /// The value (unescaped).
        value: String,
    },
    /// Something other than `,`, `;` or the end after a filter (e.g. an unescaped `]` in
    /// the args, or text after the output labels).
    #[error("byte {offset}: unexpected `{found}` after a filter, expected `,`, `;` or the end")]
    UnexpectedCharacter {
        /// Where the character is.
        offset: usize,
        /// The character.
        found: char,
    },
}

impl FilterGraphError {
    /// Byte offset of the problem in the parsed text (`0` for [`FilterGraphError::Empty`]).
    pub fn offset(&self) -> usize {
        match self {
            FilterGraphError::Empty => 0,
            FilterGraphError::NulCharacter { offset }
            | FilterGraphError::UnterminatedSwsFlags { offset }
            | FilterGraphError::UnterminatedLabel { offset }
            | FilterGraphError::EmptyLabel { offset }
            | FilterGraphError::MissingFilterName { offset }
            | FilterGraphError::InvalidFilterName { offset, .. }
            | FilterGraphError::UnterminatedQuote { offset }
            | FilterGraphError::TrailingBackslash { offset }
            | FilterGraphError::EmptyOptionKey { offset }
            | FilterGraphError::PositionalAfterNamed { offset, .. }
            | FilterGraphError::UnexpectedCharacter { offset, .. } => *offset,
        }
    }
}

/// Parses a filtergraph as given to `-vf`, `-af`, `-filter_complex`, `-lavfi` or a `lavfi`
/// input, following ffmpeg 5.1's `avfilter_graph_parse2()` (see the [module docs](self)).
///
/// Only the syntax is checked: whether a filter exists, how many pads it has, whether labels
/// connect, and whether an option exists or its value is valid are ffmpeg's business.
///
/// # Errors
/// A [`FilterGraphError`] naming the byte offset of the first problem.
///
/// ```
/// use ffmpeg_core::filtergraph::{self, FilterArg};
///
/// let graph = filtergraph::parse("split=2[a][b]; [a]scale=w=640:h=-2[a1]")?;
/// assert_eq!(graph.chains.len(), 2);
/// let scale = &graph.chains[1].filters[0];
/// assert_eq!(scale.args[0], FilterArg::Named { key: "w".into(), value: "640".into() });
/// assert_eq!(scale.offset, 15);
/// assert!(filtergraph::parse("scale=1:2[").is_err());
/// # Ok::<(), ffmpeg_core::filtergraph::FilterGraphError>(())
/// ```
pub fn parse(graph: &str) -> Result<FilterGraph, FilterGraphError> {
    parse::graph(graph)
}

impl FilterGraph {
    /// Every filter of the graph, chain by chain, in order.
    pub fn filters(&self) -> impl Iterator<Item = &Filter> {
        self.chains.iter().flat_map(|chain| chain.filters.iter())
    }

    /// Every filter of the graph, chain by chain, in order, for rewriting.
    pub fn filters_mut(&mut self) -> impl Iterator<Item = &mut Filter> {
        self.chains.iter_mut().flat_map(|chain| chain.filters.iter_mut())
    }
}

impl Filter {
    /// The value of option `key`: the last `key=value` (ffmpeg applies options in order, so
    /// the last one wins), else the `position`-th positional value (0-based), e.g.
    /// `arg("filename", Some(0))` for `subtitles`, whose first option is `filename`.
    ///
    /// `position` is the option's index among the filter's shorthand options, which only
    /// ffmpeg's option table knows (`ffmpeg -h filter=NAME` lists them in order; constants and
    /// aliases do not count). Aliases are separate keys: ask for each (`filename` and `f`).
    pub fn arg(&self, key: &str, position: Option<usize>) -> Option<&str> {
        let named = self.args.iter().rev().find_map(|arg| match arg {
            FilterArg::Named { key: k, value } if k == key => Some(value.as_str()),
            _ => None,
        });
        named.or_else(|| self.positional_index(position?).map(|i| self.value_at(i)))
    }

    /// Sets option `key` to `value`, so that [`arg`](Self::arg)`(key, position)` returns it and
    /// ffmpeg sees exactly one setting of it, in the place of the old one:
    ///
    /// - if there is a `position`-th positional value, it is replaced in place and every
    ///   `key=...` is removed;
    /// - else the last `key=...` gets the value and any earlier ones are removed;
    /// - else `key=value` is appended.
    ///
    /// A positional value is replaced rather than removed because removing it would shift the
    /// positional values after it onto other options. `key` should be an option name (ASCII
    /// letters, digits, `-_./`); [`Display`](std::fmt::Display) writes keys as they are.
    pub fn set_arg(&mut self, key: &str, position: Option<usize>, value: String) {
        let is_key = |arg: &FilterArg| matches!(arg, FilterArg::Named { key: k, .. } if k == key);
        let keep = match position.and_then(|p| self.positional_index(p)) {
            Some(i) => Some(i),
            None => self.args.iter().rposition(is_key),
        };
        let Some(keep) = keep else {
            self.args.push(FilterArg::Named { key: key.to_owned(), value });
            return;
        };
        match self.args.get_mut(keep) {
            Some(FilterArg::Positional(old) | FilterArg::Named { value: old, .. }) => *old = value,
            None => {}
        }
        let mut i = 0;
        self.args.retain(|arg| {
            let remove = i != keep && is_key(arg);
            i += 1;
            !remove
        });
    }

    /// Index in `args` of the `position`-th positional value, if there is one.
    fn positional_index(&self, position: usize) -> Option<usize> {
        self.args
            .iter()
            .enumerate()
            .filter(|(_, arg)| matches!(arg, FilterArg::Positional(_)))
            .nth(position)
            .map(|(i, _)| i)
    }

    /// The value of `args[i]` (empty if out of range).
    fn value_at(&self, i: usize) -> &str {
        match self.args.get(i) {
            Some(FilterArg::Positional(value) | FilterArg::Named { value, .. }) => value,
            None => "",
        }
    }
}

/// Equality of everything but [`Filter::offset`].
impl PartialEq for Filter {
    fn eq(&self, other: &Filter) -> bool {
        let Filter { inputs, name, instance, args, outputs, offset: _ } = self;
        *inputs == other.inputs
            && *name == other.name
            && *instance == other.instance
            && *args == other.args
            && *outputs == other.outputs
    }
}

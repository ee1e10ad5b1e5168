//! The filtergraph parser (nom): ffmpeg 5.1's `avfilter_graph_parse2()`, `parse_link_name()`,
//! `parse_filter()` and `create_filter()` (`libavfilter/graphparser.c`), `av_get_token()`
//! (`libavutil/avstring.c`), and `process_options()` (`libavfilter/avfilter.c`) with
//! `av_opt_get_key_value()` (`libavutil/opt.c`) for the options.
//!
//! Every step moves forward through the text; nothing is re-read more than twice (an option
//! is tried as `key=` before being read as a value), so time and memory are linear.
//! Errors carry the suffix of the graph where they happened; [`graph`] turns that into a
//! byte offset.

use nom::{
    IResult, Parser,
    bytes::complete::take_while,
    character::complete::{char, multispace0},
    combinator::{map, opt},
    error::{ErrorKind, ParseError},
    multi::{many0, separated_list1},
    sequence::{delimited, preceded, terminated},
};

use super::{Filter, FilterArg, FilterChain, FilterGraph, FilterGraphError};

/// Whitespace skipped around filters, labels and tokens: `WHITESPACES` of `graphparser.c`
/// and `avstring.c` (the same set as nom's `multispace0`).
pub(super) const WHITESPACE: &[char] = &[' ', '\n', '\t', '\r'];
/// Whitespace around an option key: `WHITESPACES` of `opt.c`, without `\r`.
const KEY_WHITESPACE: &[char] = &[' ', '\n', '\t'];
/// Characters that end a link label token (`parse_link_name()`).
pub(super) const LABEL_TERMINATORS: &str = "]";
/// Characters that end the filter name token (`parse_filter()`).
pub(super) const NAME_TERMINATORS: &str = "=,;[";
/// Characters that end the args token (`parse_filter()`).
pub(super) const ARGS_TERMINATORS: &str = "[],;";
/// Characters that end an option value (`process_options()`).
const VALUE_TERMINATORS: &str = ":";
/// `create_filter()` looks for the `@` of `name@id` in a copy truncated to 29 bytes
/// (`char name2[30]`).
const INSTANCE_SEARCH_BYTES: usize = 29;

/// What went wrong, without the position.
#[derive(Debug)]
enum Problem {
    /// A combinator did not match where the grammar has no better name for it.
    Unexpected,
    UnterminatedSwsFlags,
    UnterminatedLabel,
    EmptyLabel,
    MissingFilterName,
    InvalidFilterName(String),
    UnterminatedQuote,
    TrailingBackslash,
    EmptyOptionKey,
    PositionalAfterNamed(String),
}

/// A parse error: the problem and the rest of the input where it is.
#[derive(Debug)]
struct PError<'a> {
    at: &'a str,
    problem: Problem,
}

impl<'a> ParseError<&'a str> for PError<'a> {
    fn from_error_kind(at: &'a str, _kind: ErrorKind) -> Self {
        PError { at, problem: Problem::Unexpected }
    }

    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }
}

type PResult<'a, T> = IResult<&'a str, T, PError<'a>>;

/// A definite error (no backtracking) at `at`.
fn failure(at: &str, problem: Problem) -> nom::Err<PError<'_>> {
    nom::Err::Failure(PError { at, problem })
}

/// `s[at..]`, or `""` past the end or off a character boundary (never happens: every index
/// used here is at an ASCII byte or the end).
fn suffix(s: &str, at: usize) -> &str {
    s.get(at..).unwrap_or_default()
}

/// Parses a whole filtergraph; see [`super::parse`].
pub(super) fn graph(graph: &str) -> Result<FilterGraph, FilterGraphError> {
    if let Some(offset) = graph.find('\0') {
        return Err(FilterGraphError::NulCharacter { offset });
    }
    if graph.trim_matches(WHITESPACE).is_empty() {
        return Err(FilterGraphError::Empty);
    }
    let chain = map(separated_list1(char(','), filter(graph)), |filters| FilterChain { filters });
    let result = (sws_flags, separated_list1(char(';'), chain)).parse(graph);
    let error = match result {
        Ok(("", (sws_flags, chains))) => return Ok(FilterGraph { chains, sws_flags }),
        Ok((rest, _)) => PError { at: rest, problem: Problem::Unexpected },
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => e,
        Err(nom::Err::Incomplete(_)) => PError { at: "", problem: Problem::Unexpected },
    };
    let offset = graph.len().saturating_sub(error.at.len());
    Err(match error.problem {
        Problem::Unexpected => match error.at.chars().next() {
            Some(found) => FilterGraphError::UnexpectedCharacter { offset, found },
            None => FilterGraphError::MissingFilterName { offset },
        },
        Problem::UnterminatedSwsFlags => FilterGraphError::UnterminatedSwsFlags { offset },
        Problem::UnterminatedLabel => FilterGraphError::UnterminatedLabel { offset },
        Problem::EmptyLabel => FilterGraphError::EmptyLabel { offset },
        Problem::MissingFilterName => FilterGraphError::MissingFilterName { offset },
        Problem::InvalidFilterName(name) => FilterGraphError::InvalidFilterName { offset, name },
        Problem::UnterminatedQuote => FilterGraphError::UnterminatedQuote { offset },
        Problem::TrailingBackslash => FilterGraphError::TrailingBackslash { offset },
        Problem::EmptyOptionKey => FilterGraphError::EmptyOptionKey { offset },
        Problem::PositionalAfterNamed(value) => FilterGraphError::PositionalAfterNamed { offset, value },
    })
}

/// The optional leading `sws_flags=FLAGS;` (`parse_sws_flags()`): after leading whitespace,
/// the raw text up to the first `;`, not unescaped.
fn sws_flags(input: &str) -> PResult<'_, Option<String>> {
    let (input, _) = multispace0(input)?;
    let Some(flags) = input.strip_prefix("sws_flags=") else {
        return Ok((input, None));
    };
    match flags.split_once(';') {
        Some((flags, rest)) => Ok((rest, Some(flags.to_owned()))),
        None => Err(failure(input, Problem::UnterminatedSwsFlags)),
    }
}

/// One filter with its labels and the whitespace around it; `graph` is the whole text, for
/// [`Filter::offset`].
fn filter<'a>(graph: &'a str) -> impl Fn(&'a str) -> PResult<'a, Filter> {
    move |input| {
        let (input, _) = multispace0(input)?;
        let start = input;
        let (input, inputs) = labels(input)?;
        let (input, name) = token(NAME_TERMINATORS)(input)?;
        let (input, args) = opt(preceded(char('='), token(ARGS_TERMINATORS))).parse(input)?;
        // `parse_outputs()` looks for `[` right where the name or args token stopped.
        let (input, outputs) = labels(input)?;
        let (input, _) = multispace0(input)?;
        let (name, instance) = filter_name(&name)?;
        let args = match args {
            Some(args) => options(&args)?,
            None => Vec::new(),
        };
        let filter = Filter { inputs, name, instance, args, outputs, offset: graph.len().saturating_sub(start.len()) };
        Ok((input, filter))
    }
}

/// Link labels, each followed by optional whitespace (`parse_inputs()`, `parse_outputs()`).
fn labels(input: &str) -> PResult<'_, Vec<String>> {
    many0(terminated(label, multispace0)).parse(input)
}

/// `[label]` (`parse_link_name()`): the label is a token ending at `]`, and not empty.
/// A plain error (to stop [`labels`]) when `input` does not start with `[`.
fn label(input: &str) -> PResult<'_, String> {
    let (rest, _) = char('[').parse(input)?;
    let (rest, label) = token(LABEL_TERMINATORS)(rest)?;
    let Ok((rest, _)) = char::<_, PError<'_>>(']').parse(rest) else {
        return Err(failure(input, Problem::UnterminatedLabel));
    };
    if label.text.is_empty() {
        return Err(failure(input, Problem::EmptyLabel));
    }
    Ok((rest, label.text))
}

/// Splits the name token into name and instance id like `create_filter()`: at the first `@`
/// among the first 29 bytes that has something after it. The name must be ASCII letters,
/// digits and `_`, like every filter ffmpeg has.
fn filter_name<'a>(token: &Token<'a>) -> Result<(String, Option<String>), nom::Err<PError<'a>>> {
    let full = token.text.as_str();
    let at = token.source_at(0);
    if full.is_empty() {
        return Err(failure(at, Problem::MissingFilterName));
    }
    let searched = full.as_bytes().get(..INSTANCE_SEARCH_BYTES).unwrap_or(full.as_bytes());
    let split = searched.iter().position(|&b| b == b'@').filter(|&i| i + 1 < full.len());
    let (name, instance) = match split {
        Some(i) => (full.get(..i).unwrap_or_default(), Some(suffix(full, i + 1).to_owned())),
        None => (full, None),
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(failure(at, Problem::InvalidFilterName(full.to_owned())));
    }
    Ok((name.to_owned(), instance))
}

/// The options of the args token (`process_options()`): items separated by `:`, each
/// `key=value` or a positional value, positional ones first. The loop runs while text is
/// left, so a final `:` adds nothing (`1:2:` is two values) but `1::2` has an empty middle
/// value.
fn options<'a>(args: &Token<'a>) -> Result<Vec<FilterArg>, nom::Err<PError<'a>>> {
    option_list(&args.text).map_err(|error| match error {
        nom::Err::Error(e) | nom::Err::Failure(e) => {
            // Positions in the unescaped args text back to the graph.
            let pos = args.text.len().saturating_sub(e.at.len());
            failure(args.source_at(pos), e.problem)
        }
        nom::Err::Incomplete(_) => failure(args.source_at(0), Problem::Unexpected),
    })
}

/// [`options`] over the unescaped args text; errors point into `text`.
fn option_list(text: &str) -> Result<Vec<FilterArg>, nom::Err<PError<'_>>> {
    let mut args = Vec::new();
    let mut rest = text;
    let mut named = false;
    while !rest.is_empty() {
        let item = rest;
        let (after, arg) = match option_key(item) {
            Ok((after, key)) => {
                if key.is_empty() {
                    return Err(failure(item.trim_start_matches(KEY_WHITESPACE), Problem::EmptyOptionKey));
                }
                let (after, value) = token(VALUE_TERMINATORS)(after)?;
                named = true;
                let arg = FilterArg::Named { key: key.to_owned(), value: value.text };
                (after, arg)
            }
            Err(_) => {
                let (after, value) = token(VALUE_TERMINATORS)(item)?;
                if named {
                    let at = item.trim_start_matches(WHITESPACE);
                    return Err(failure(at, Problem::PositionalAfterNamed(value.text)));
                }
                (after, FilterArg::Positional(value.text))
            }
        };
        args.push(arg);
        rest = after.strip_prefix(':').unwrap_or(after);
    }
    Ok(args)
}

/// `get_key()` of `opt.c`: optional whitespace, key characters (possibly none), optional
/// whitespace, `=`. Anything else makes the item a positional value.
fn option_key(input: &str) -> PResult<'_, &str> {
    let space = || take_while(|c| KEY_WHITESPACE.contains(&c));
    let key = take_while(|c: char| c.is_ascii_alphanumeric() || "-_/.".contains(c));
    delimited(space(), key, (space(), char('='))).parse(input)
}

/// A token read like `av_get_token()`: the unescaped text, and how to find where each of its
/// bytes came from.
#[derive(Debug)]
struct Token<'a> {
    /// The input the token was read from, including skipped leading whitespace.
    source: &'a str,
    /// Where the token starts in `source`, after the leading whitespace.
    start: usize,
    /// The unescaped text.
    text: String,
    /// After each escape or quote, a `(text position, source position)` pair, ascending:
    /// from `(0, start)` and from each pair to the next, text bytes are copied one to one from
    /// the source.
    map: Vec<(usize, usize)>,
}

impl<'a> Token<'a> {
    /// The source from the character that gave text position `pos` on.
    fn source_at(&self, pos: usize) -> &'a str {
        let after = self.map.partition_point(|&(text, _)| text <= pos);
        let (text, source) = after.checked_sub(1).and_then(|i| self.map.get(i)).copied().unwrap_or((0, self.start));
        self.source.get(source + pos.saturating_sub(text)..).unwrap_or(self.source)
    }
}

/// `av_get_token(buf, terminators)`: skips leading whitespace; then up to an unescaped
/// terminator or the end, `\` copies the next character, `'` copies everything up to the
/// next `'`, and other characters are copied; finally trailing whitespace that was neither
/// escaped nor quoted is dropped. Stops before the terminator.
///
/// Stricter than ffmpeg: an unterminated quote and a `\` at the very end are errors.
fn token<'a>(terminators: &'static str) -> impl Fn(&'a str) -> PResult<'a, Token<'a>> {
    move |source: &'a str| {
        let terminators = terminators.as_bytes();
        let bytes = source.as_bytes();
        let start = source.len() - source.trim_start_matches(WHITESPACE).len();
        let mut p = start;
        let mut text = String::new();
        let mut map = Vec::new();
        // Text up to here was escaped or quoted: trailing whitespace before it stays.
        let mut kept = 0;
        while let Some(&b) = bytes.get(p) {
            if terminators.contains(&b) {
                break;
            }
            match b {
                b'\\' => {
                    let Some(c) = suffix(source, p + 1).chars().next() else {
                        return Err(failure(suffix(source, p), Problem::TrailingBackslash));
                    };
                    map.push((text.len(), p + 1));
                    text.push(c);
                    p += 1 + c.len_utf8();
                    kept = text.len();
                }
                b'\'' => {
                    let quoted = suffix(source, p + 1);
                    let Some(len) = quoted.find('\'') else {
                        return Err(failure(suffix(source, p), Problem::UnterminatedQuote));
                    };
                    map.push((text.len(), p + 1));
                    text.push_str(quoted.get(..len).unwrap_or_default());
                    p += len + 2;
                    map.push((text.len(), p));
                    kept = text.len();
                }
                _ => {
                    let run = suffix(source, p);
                    let len = run
                        .bytes()
                        .position(|b| b == b'\\' || b == b'\'' || terminators.contains(&b))
                        .unwrap_or(run.len());
                    text.push_str(run.get(..len).unwrap_or_default());
                    // `len >= 1`: `b` itself is none of those.
                    p += len.max(1);
                }
            }
        }
        while text.len() > kept && text.ends_with(WHITESPACE) {
            text.pop();
        }
        let token = Token { source, start, text, map };
        Ok((suffix(source, p), token))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `av_get_token()` cases, on unescaping alone.
    #[test]
    fn av_get_token() {
        let check = |input: &str, terms: &'static str, text: &str, rest: &str| {
            let (r, t) = token(terms)(input).unwrap();
            assert_eq!((t.text.as_str(), r), (text, rest), "{input:?}");
        };
        check("  a b  ,c", ",", "a b", ",c");
        check("a\\ \\ ,c", ",", "a  ", ",c");
        check("' a '  ", ",", " a ", "");
        check("a'b,c'd,e", ",", "ab,cd", ",e");
        check("\\'x", ",", "'x", "");
        check("é\\éx", ",", "ééx", "");
        check("", ",", "", "");
        check("  ", ",", "", "");
    }

    #[test]
    fn source_positions() {
        let (_, t) = token(",")("  a\\,b'cd'e").unwrap();
        assert_eq!(t.text, "a,bcde");
        let at: Vec<&str> = (0..=t.text.len()).map(|i| t.source_at(i)).collect();
        assert_eq!(at, ["a\\,b'cd'e", ",b'cd'e", "b'cd'e", "cd'e", "d'e", "e", ""]);
    }
}

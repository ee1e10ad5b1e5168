//! Writing a filtergraph back as text, escaped so that ffmpeg (and [`super::parse`]) reads
//! back the same values: option values are escaped for `process_options()` (first level),
//! then labels, the name and the whole option string for `av_get_token()` in
//! `graphparser.c` (second level).

use std::fmt::{self, Write as _};

use super::parse::{ARGS_TERMINATORS, LABEL_TERMINATORS, NAME_TERMINATORS, WHITESPACE};
use super::{Filter, FilterArg, FilterChain, FilterGraph};

/// Writes the graph as a filtergraph: `sws_flags=FLAGS;` if set, chains joined by `;`,
/// filters by `,`, no added whitespace.
///
/// [`parse`](super::parse) reads the result back to an equal graph (offsets aside) when the
/// graph is one `parse` could have returned: at least one chain and one filter per chain,
/// non-empty labels, names of ASCII letters, digits and `_` (shorter than 29 bytes when an
/// instance id follows), option keys of ASCII letters, digits and `-_./`, no NUL character
/// anywhere, and no `;` in `sws_flags` (written as is). Values, labels and instance ids may
/// hold any other character, `:=,;[]'\` and whitespace included. An empty instance id is
/// written as none. ffmpeg 5.1 reads the same values back (checked with its debug log for
/// values full of special characters).
impl fmt::Display for FilterGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chains = self.chains.iter().map(ToString::to_string).collect::<Vec<_>>().join(";");
        match &self.sws_flags {
            Some(flags) => write!(f, "sws_flags={flags};")?,
            // A first filter named `sws_flags` with options would read as the flags: escape
            // a letter of its name (`\s` reads as `s`).
            None if chains.starts_with("sws_flags=") => f.write_char('\\')?,
            None => {}
        }
        f.write_str(&chains)
    }
}

/// Writes the chain's filters joined by `,`, escaped as for [`FilterGraph`].
impl fmt::Display for FilterChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, filter) in self.filters.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write!(f, "{filter}")?;
        }
        Ok(())
    }
}

/// Writes `[in]...name@id=args[out]...`, escaped as for [`FilterGraph`]; `=args` only when
/// there are options.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_labels(f, &self.inputs)?;
        match self.instance.as_deref() {
            Some(id) if !id.is_empty() => {
                write_token(f, &format!("{}@{id}", self.name), NAME_TERMINATORS)?;
            }
            _ => write_token(f, &self.name, NAME_TERMINATORS)?,
        }
        if !self.args.is_empty() {
            f.write_char('=')?;
            write_token(f, &option_string(&self.args), ARGS_TERMINATORS)?;
        }
        write_labels(f, &self.outputs)
    }
}

fn write_labels(f: &mut fmt::Formatter<'_>, labels: &[String]) -> fmt::Result {
    for label in labels {
        f.write_char('[')?;
        write_token(f, label, LABEL_TERMINATORS)?;
        f.write_char(']')?;
    }
    Ok(())
}

/// The first escaping level: options joined by `:`, each value escaped so that
/// `av_opt_get_key_value()` reads it back. `\`, `'` and `:` get a `\`, and so does
/// whitespace at either end of a value (which would be trimmed). A positional value also has
/// its `=` escaped (else `a=b` would read as a key), and an empty last one is written `''`
/// (a final `:` adds no value).
fn option_string(args: &[FilterArg]) -> String {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        match arg {
            // `a::b` has an empty middle value, but `a:` has no second one.
            FilterArg::Positional(value) if value.is_empty() && i + 1 == args.len() => {
                out.push_str("''");
            }
            FilterArg::Positional(value) => escape_value(&mut out, value, true),
            FilterArg::Named { key, value } => {
                out.push_str(key);
                out.push('=');
                escape_value(&mut out, value, false);
            }
        }
    }
    out
}

fn escape_value(out: &mut String, value: &str, positional: bool) {
    let (lead, trail) = edges(value);
    for (i, c) in value.char_indices() {
        if matches!(c, '\\' | '\'' | ':')
            || (positional && c == '=')
            || (WHITESPACE.contains(&c) && (i < lead || i >= trail))
        {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The second escaping level: writes `token` so that `av_get_token(terminators)` reads it
/// back. As is when nothing needs protecting; else quoted `'...'` when it holds no `'`;
/// else with a `\` before each `\`, `'`, terminator and whitespace at either end.
fn write_token(f: &mut fmt::Formatter<'_>, token: &str, terminators: &str) -> fmt::Result {
    let special = |c: char| c == '\\' || c == '\'' || terminators.contains(c);
    let (lead, trail) = edges(token);
    if lead == 0 && trail == token.len() && !token.contains(special) {
        return f.write_str(token);
    }
    if !token.contains('\'') {
        return write!(f, "'{token}'");
    }
    for (i, c) in token.char_indices() {
        if special(c) || (WHITESPACE.contains(&c) && (i < lead || i >= trail)) {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    Ok(())
}

/// Where the leading whitespace of `s` ends and the trailing whitespace starts, in bytes
/// (`(len, 0)` when `s` is all whitespace).
fn edges(s: &str) -> (usize, usize) {
    let lead = s.len() - s.trim_start_matches(WHITESPACE).len();
    let trail = s.trim_end_matches(WHITESPACE).len();
    (lead, trail)
}

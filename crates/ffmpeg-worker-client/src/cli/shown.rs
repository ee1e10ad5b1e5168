//! How the CLI shows text it got from the server (file names, commands, errors, logs) on a
//! terminal: control characters escaped, so that no name can move the cursor, recolour or
//! retitle the terminal, or forge a line of a listing (tester finding K7: names were printed
//! raw). JSON output (`--json`) needs none of this: JSON escapes them itself.

use std::borrow::Cow;

/// `text` (a file name, a command) with every control character written as its Rust escape
/// (`\n`, `\u{1b}`), so that it shows on one line.
pub(crate) fn name(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// `text` (a message, a log) with every control character escaped but line breaks and tabs,
/// whose lines are its own.
pub(crate) fn text(text: &str) -> Cow<'_, str> {
    escape(text, |c| matches!(c, '\n' | '\t'))
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && !keep(c) {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let cases = [
            ("out.mp4", "out.mp4", "out.mp4"),
            ("a\nb.mp4", "a\\nb.mp4", "a\nb.mp4"),
            ("\u{1b}]0;pwned\u{7}x.mp4", "\\u{1b}]0;pwned\\u{7}x.mp4", "\\u{1b}]0;pwned\\u{7}x.mp4"),
            ("c\u{9b}31m\r\tü.mp4", "c\\u{9b}31m\\r\\tü.mp4", "c\\u{9b}31m\\r\tü.mp4"),
            ("it's \"x\"\\y", "it's \"x\"\\y", "it's \"x\"\\y"),
        ];
        for (raw, as_name, as_text) in cases {
            assert_eq!((name(raw).as_ref(), text(raw).as_ref()), (as_name, as_text), "{raw:?}");
        }
    }
}

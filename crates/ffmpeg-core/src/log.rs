//! ffmpeg's log: the `-loglevel` / `-v` setting, and the prefixes ffmpeg puts before a line.
//!
//! The setting follows `opt_loglevel()` in `fftools/cmdutils.c` (ffmpeg 5.1): a value is an
//! optional list of flags, each `repeat` or `level` with an optional `+` (set) or `-` (unset)
//! sign, then a level, a name (`quiet`, `panic`, `fatal`, `error`, `warning`, `info`,
//! `verbose`, `debug`, `trace`) or a number, joined by `+`: `error`, `level+info`,
//! `repeat+level+verbose`, `+level`, `-repeat+24`. A first flag without a sign starts from no
//! flags; a signed one changes the current flags; a level alone keeps them. ffmpeg starts with
//! level `info` and repeated lines collapsed (`Last message repeated N times`); each
//! `-loglevel`/`-v` is applied in command-line order, so the last level given wins.
//!
//! Each line ffmpeg logs (`av_log_default_callback()` / `format_line()` in `libavutil/log.c`)
//! starts with up to two context prefixes, `[parent @ 0x55d0c8a3b2c0] [name @ 0x55d0c8a3c000] `
//! (the logging object's class name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`, `libx264`,
//! `graph 0 input from stream 0:0`, and its address), then with the `level` flag the level in
//! brackets, `[info] `, `[error] `. A message logged in pieces gets the prefixes only before
//! its first piece; a message with embedded newlines only before its first line; and ffmpeg's
//! `Last message repeated N times` line and the few things `fftools` writes with `fprintf`
//! have none. [`LogLine::parse`] splits a line into these parts.
//!
//! ```
//! use ffmpeg_core::log::{Level, LogLine, LogSettings};
//!
//! let mut settings = LogSettings::default();
//! settings.apply("repeat+level+error")?;
//! assert_eq!(settings, LogSettings { level: Level::ERROR, print_level: true, skip_repeated: false });
//!
//! let line = LogLine::parse("[libx264 @ 0x5581f3a0c040] [warning] VBV buffer size not set");
//! assert_eq!(line.contexts, "[libx264 @ 0x5581f3a0c040] ");
//! assert_eq!(line.level, Some(Level::WARNING));
//! assert_eq!(line.message, "VBV buffer size not set");
//! # Ok::<(), ffmpeg_core::log::LogLevelError>(())
//! ```

use crate::command::Command;

/// A log level: ffmpeg's `AV_LOG_*` number (`libavutil/log.h`); lower is more severe. A line is
/// printed when its level is at most the configured one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Level(pub i32);

impl Level {
    /// `quiet` (-8): nothing is printed.
    pub const QUIET: Level = Level(-8);
    /// `panic` (0).
    pub const PANIC: Level = Level(0);
    /// `fatal` (8).
    pub const FATAL: Level = Level(8);
    /// `error` (16).
    pub const ERROR: Level = Level(16);
    /// `warning` (24).
    pub const WARNING: Level = Level(24);
    /// `info` (32): ffmpeg's default; the input banner is printed at this level.
    pub const INFO: Level = Level(32);
    /// `verbose` (40).
    pub const VERBOSE: Level = Level(40);
    /// `debug` (48).
    pub const DEBUG: Level = Level(48);
    /// `trace` (56).
    pub const TRACE: Level = Level(56);

    /// The names `-loglevel` accepts and `[name] ` prefixes use, by level.
    const NAMES: [(&'static str, Level); 9] = [
        ("quiet", Level::QUIET),
        ("panic", Level::PANIC),
        ("fatal", Level::FATAL),
        ("error", Level::ERROR),
        ("warning", Level::WARNING),
        ("info", Level::INFO),
        ("verbose", Level::VERBOSE),
        ("debug", Level::DEBUG),
        ("trace", Level::TRACE),
    ];

    /// The level named `name` (`"error"`), as `-loglevel` and the `[error] ` prefix spell it.
    pub fn from_name(name: &str) -> Option<Level> {
        Level::NAMES.iter().find(|(n, _)| *n == name).map(|(_, level)| *level)
    }

    /// The name of this level, `None` for a number between the named ones.
    pub fn name(self) -> Option<&'static str> {
        Level::NAMES.iter().find(|(_, l)| *l == self).map(|(n, _)| *n)
    }
}

/// ffmpeg's log setting: what `-loglevel` / `-v` values build (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LogSettings {
    /// Lines of this level or more severe are printed.
    pub level: Level,
    /// The `level` flag: each line carries its level, `[info] `.
    pub print_level: bool,
    /// Repeated identical lines are collapsed into `Last message repeated N times` (ffmpeg's
    /// default; the `repeat` flag turns it off).
    pub skip_repeated: bool,
}

impl Default for LogSettings {
    /// ffmpeg's own start: `info`, no level prefix, repeated lines collapsed.
    fn default() -> Self {
        LogSettings { level: Level::INFO, print_level: false, skip_repeated: true }
    }
}

/// A `-loglevel` / `-v` value ffmpeg refuses ("Invalid loglevel").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid log level `{value}`: use quiet, panic, fatal, error, warning, info, verbose, debug, trace or a \
     number, optionally after the flags `repeat+` and `level+`"
)]
#[non_exhaustive]
pub struct LogLevelError {
    /// The value as given.
    pub value: String,
}

impl LogSettings {
    /// Applies one `-loglevel` value to these settings, exactly as `opt_loglevel()` does.
    ///
    /// # Errors
    /// [`LogLevelError`] for a value ffmpeg refuses (it would exit with "Invalid loglevel");
    /// the settings are unchanged then.
    ///
    /// ```
    /// use ffmpeg_core::log::{Level, LogSettings};
    ///
    /// let mut settings = LogSettings::default();
    /// settings.apply("level+warning")?;
    /// settings.apply("+repeat")?; // flags only: the level stays
    /// assert_eq!(settings, LogSettings { level: Level::WARNING, print_level: true, skip_repeated: false });
    /// settings.apply("24")?;
    /// assert!(settings.apply("loud").is_err());
    /// # Ok::<(), ffmpeg_core::log::LogLevelError>(())
    /// ```
    pub fn apply(&mut self, value: &str) -> Result<(), LogLevelError> {
        let error = || LogLevelError { value: value.to_owned() };
        let (mut print_level, mut skip_repeated) = (self.print_level, self.skip_repeated);
        let mut rest = value;
        let mut flags_seen = 0;
        loop {
            if rest.is_empty() {
                break;
            }
            let (sign, token) = match rest.as_bytes()[0] {
                b'+' | b'-' => (Some(rest.as_bytes()[0]), &rest[1..]),
                _ => (None, rest),
            };
            if flags_seen == 0 && sign.is_none() {
                // "missing relative prefix, build absolute value"
                (print_level, skip_repeated) = (false, false);
            }
            if let Some(after) = token.strip_prefix("repeat") {
                skip_repeated = sign == Some(b'-');
                rest = after;
            } else if let Some(after) = token.strip_prefix("level") {
                print_level = sign != Some(b'-');
                rest = after;
            } else {
                break;
            }
            flags_seen += 1;
        }
        let level = if rest.is_empty() {
            None
        } else {
            let name = if let Some(after) = rest.strip_prefix('+') {
                after
            } else {
                if flags_seen == 0 {
                    // "level value without prefix, reset flags"
                    (print_level, skip_repeated) = (self.print_level, self.skip_repeated);
                }
                rest
            };
            Some(match Level::from_name(name) {
                Some(level) => level,
                None => Level(strtol(name).ok_or_else(error)?),
            })
        };
        self.print_level = print_level;
        self.skip_repeated = skip_repeated;
        if let Some(level) = level {
            self.level = level;
        }
        Ok(())
    }

    /// The settings ffmpeg ends up with for `command`: its global `-loglevel` and `-v`
    /// options applied in order over [`LogSettings::default`].
    ///
    /// # Errors
    /// The first value ffmpeg would refuse.
    pub fn of_command(command: &Command) -> Result<LogSettings, LogLevelError> {
        let mut settings = LogSettings::default();
        for opt in command.global_options().iter().filter(|o| matches!(o.name(), "loglevel" | "v")) {
            settings.apply(opt.value().unwrap_or_default())?;
        }
        Ok(settings)
    }

    /// A `-loglevel` value that sets exactly these settings whatever came before:
    /// `level-repeat+32`, `repeat+32`, ... ([`LogSettings::apply`] reads it back).
    ///
    /// ```
    /// use ffmpeg_core::log::{Level, LogSettings};
    ///
    /// let settings = LogSettings { level: Level::INFO, print_level: true, skip_repeated: true };
    /// assert_eq!(settings.to_value(), "level-repeat+32");
    /// let mut again = LogSettings { level: Level::QUIET, print_level: false, skip_repeated: false };
    /// again.apply(&settings.to_value()).unwrap();
    /// assert_eq!(again, settings);
    /// ```
    pub fn to_value(&self) -> String {
        // A first flag without a sign clears both flags; `repeat` clears "skip repeated".
        let first = if self.print_level { "level" } else { "repeat" };
        let repeat = if self.skip_repeated { "-repeat" } else { "+repeat" };
        format!("{first}{repeat}+{}", self.level.0)
    }
}

/// `strtol(s, &tail, 10)` with an empty `tail`: optional whitespace and sign, decimal digits,
/// clamped to `i32` as ffmpeg's `int` assignment of a `long` would wrap (ffmpeg keeps any number).
fn strtol(s: &str) -> Option<i32> {
    if s.is_empty() {
        // strtol("") converts nothing and leaves the tail empty: ffmpeg takes level 0.
        return Some(0);
    }
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i64 = digits.parse::<i64>().unwrap_or(i64::MAX).min(i64::from(i32::MAX) + 1);
    let value = if negative { -value } else { value };
    Some(value.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
}

/// One line of ffmpeg's stderr split into its prefixes and its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// The context prefixes as written, each `[name @ 0x...] ` with its trailing space; empty
    /// when there are none.
    pub contexts: &'a str,
    /// The level from a `[level] ` prefix; `None` without one. An empty `[] ` (a level between
    /// the named ones) reads as [`Level::INFO`].
    pub level: Option<Level>,
    /// The rest of the line: the message.
    pub message: &'a str,
}

impl<'a> LogLine<'a> {
    /// Splits `line` (without its line end) into context prefixes, level prefix and message.
    /// Never fails: a line without prefixes is all message.
    ///
    /// ```
    /// use ffmpeg_core::log::{Level, LogLine};
    ///
    /// let line = LogLine::parse("[info]   Duration: 00:00:02.00, start: 0.000000, bitrate: 117 kb/s");
    /// assert_eq!((line.contexts, line.level), ("", Some(Level::INFO)));
    /// assert_eq!(line.message, "  Duration: 00:00:02.00, start: 0.000000, bitrate: 117 kb/s");
    ///
    /// let line = LogLine::parse("[mp3 @ 0x55d0] Estimating duration from bitrate");
    /// assert_eq!((line.contexts, line.level), ("[mp3 @ 0x55d0] ", None));
    /// ```
    pub fn parse(line: &'a str) -> LogLine<'a> {
        let mut end = 0;
        // At most two contexts: the parent's and the object's own.
        for _ in 0..2 {
            match context_len(&line[end..]) {
                Some(len) => end += len,
                None => break,
            }
        }
        let contexts = &line[..end];
        let rest = &line[end..];
        match level_prefix(rest) {
            Some((level, len)) => LogLine { contexts, level: Some(level), message: &rest[len..] },
            None => LogLine { contexts, level: None, message: rest },
        }
    }
}

/// The length of a `[name @ 0xHEX] ` prefix at the start of `s`.
fn context_len(s: &str) -> Option<usize> {
    if !s.starts_with('[') {
        return None;
    }
    let at = s.find(" @ 0x")?;
    let hex = s[at + 5..].bytes().take_while(u8::is_ascii_hexdigit).count();
    let close = at + 5 + hex;
    (hex > 0 && s[close..].starts_with("] ")).then_some(close + 2)
}

/// The level and length of a `[level] ` prefix at the start of `s`.
fn level_prefix(s: &str) -> Option<(Level, usize)> {
    let inner = s.strip_prefix('[')?;
    let close = inner.find("] ")?;
    let name = &inner[..close];
    let level = if name.is_empty() { Level::INFO } else { Level::from_name(name)? };
    Some((level, close + 3))
}

/// The longest line [`LogRouter`] keeps, in bytes; the rest of a longer line is dropped.
const MAX_LINE_BYTES: usize = 16 * 1024;

/// One complete line of ffmpeg's stderr, routed by [`LogRouter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedLine {
    /// The line as ffmpeg would have written it with the client's own settings: context
    /// prefixes, the `[level] ` prefix only if the client asked for it, the message.
    pub text: String,
    /// The line as ffmpeg writes it by default: without the `[level] ` prefix.
    pub plain: String,
    /// The line's level: its prefix's, or for a line without one (a continuation, `Last
    /// message repeated N times`) the level of the line before; `None` for lines that
    /// `fprintf` wrote before any leveled line.
    pub level: Option<Level>,
    /// Whether the line began with ffmpeg's own `[level] ` prefix: the first line of a
    /// message `av_log` printed, not the continuation of a message with embedded newlines
    /// (which can carry data: a filename, a metadata value `metadata=mode=print` logs), not
    /// `Last message repeated N times`, not `fprintf` output.
    pub prefixed: bool,
    /// Whether the client's level shows this line (`level <= client level`; lines of unknown
    /// level always show, as ffmpeg's `fprintf` output does).
    pub for_client: bool,
    /// Whether ffmpeg at its default level (`info`) shows this line: what errors are built from.
    pub at_default_level: bool,
}

/// Routes the stderr of an ffmpeg run with the `level` flag (and a level at least as verbose
/// as the client's and as `info`) into what the client's own `-loglevel` would have shown and
/// what ffmpeg's default level shows.
///
/// Feed it stderr in byte chunks split anywhere; a line ends at `\n` or at the `\r` with which
/// a stats line rewrites itself (empty lines are skipped). Memory is bounded: 16 KiB of a
/// partial line. Invalid UTF-8 is replaced. Never panics.
///
/// ```
/// use ffmpeg_core::log::{Level, LogRouter, LogSettings};
///
/// let mut client = LogSettings::default();
/// client.apply("error")?;
/// let mut router = LogRouter::new(client);
/// let lines = router.feed(b"[info] Input #0, lavfi, from 'testsrc':\n[h264 @ 0x5a] [error] bad\n");
/// assert_eq!(lines[0].text, "Input #0, lavfi, from 'testsrc':");
/// assert!(!lines[0].for_client && lines[0].at_default_level);
/// assert_eq!(lines[1].text, "[h264 @ 0x5a] bad");
/// assert!(lines[1].for_client && lines[1].at_default_level);
/// # Ok::<(), ffmpeg_core::log::LogLevelError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LogRouter {
    client: LogSettings,
    line: Vec<u8>,
    previous: Option<Level>,
}

impl LogRouter {
    /// A router for a client whose own log settings are `client` (e.g. from
    /// [`LogSettings::of_command`]).
    pub fn new(client: LogSettings) -> LogRouter {
        LogRouter { client, line: Vec::new(), previous: None }
    }

    /// Takes the next chunk of stderr and returns the lines it completes, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<RoutedLine> {
        let mut lines = Vec::new();
        for piece in chunk.split_inclusive(|&b| b == b'\n' || b == b'\r') {
            let (body, complete) = match piece.split_last() {
                Some((&(b'\n' | b'\r'), body)) => (body, true),
                _ => (piece, false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(self.line.len());
            self.line.extend_from_slice(&body[..body.len().min(room)]);
            if complete {
                lines.extend(self.complete());
            }
        }
        lines
    }

    /// The last line, when stderr ended without a line end.
    pub fn finish(&mut self) -> Option<RoutedLine> {
        self.complete()
    }

    fn complete(&mut self) -> Option<RoutedLine> {
        if self.line.is_empty() {
            return None;
        }
        let raw = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        let parsed = LogLine::parse(&raw);
        let level = parsed.level.or(self.previous);
        self.previous = level;
        let plain = match parsed.level {
            Some(_) => format!("{}{}", parsed.contexts, parsed.message),
            None => raw.clone(),
        };
        let text = if self.client.print_level { raw.clone() } else { plain.clone() };
        Some(RoutedLine {
            text,
            plain,
            level,
            prefixed: parsed.level.is_some(),
            for_client: level.is_none_or(|l| l <= self.client.level),
            at_default_level: level.is_none_or(|l| l <= Level::INFO),
        })
    }
}

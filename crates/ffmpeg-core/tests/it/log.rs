//! `ffmpeg_core::log`: `-loglevel` values as `opt_loglevel()` reads them, line prefixes, and
//! the router that keeps what the client's level shows.

use ffmpeg_core::command::Command;
use ffmpeg_core::duration::BannerScanner;
use ffmpeg_core::log::{Level, LogLine, LogRouter, LogSettings};

/// ffmpeg's settings after applying `values` in order from its defaults (`None`: refused).
fn check_settings(values: &[&str], expected: Option<(i32, bool, bool)>) {
    let mut settings = LogSettings::default();
    let got = values.iter().try_for_each(|v| settings.apply(v)).map(|()| settings);
    let expected = expected.map(|(level, print_level, skip_repeated)| LogSettings {
        level: Level(level),
        print_level,
        skip_repeated,
    });
    assert_eq!(got.ok(), expected, "{values:?}");
}

#[test]
fn loglevel_values() {
    // (level, print_level, skip_repeated); ffmpeg starts at (32, false, true).
    for (values, expected) in [
        (&["error"][..], Some((16, false, true))),
        (&["quiet"], Some((-8, false, true))),
        (&["panic"], Some((0, false, true))),
        (&["fatal"], Some((8, false, true))),
        (&["warning"], Some((24, false, true))),
        (&["verbose"], Some((40, false, true))),
        (&["trace"], Some((56, false, true))),
        (&["24"], Some((24, false, true))),
        (&["-8"], Some((-8, false, true))),
        (&["31"], Some((31, false, true))),
        (&[" 16"], Some((16, false, true))),
        // A first flag without a sign starts from no flags: `level` alone drops "skip repeated".
        (&["level+error"], Some((16, true, false))),
        (&["level"], Some((32, true, false))),
        (&["repeat+error"], Some((16, false, false))),
        (&["repeat+level+error"], Some((16, true, false))),
        (&["level+repeat+warning"], Some((24, true, false))),
        (&["repeat+level+24"], Some((24, true, false))),
        // Signed flags change the current flags.
        (&["+level+error"], Some((16, true, true))),
        (&["+level"], Some((32, true, true))),
        (&["-repeat"], Some((32, false, true))),
        (&["+repeat"], Some((32, false, false))),
        (&["+repeat+level+fatal"], Some((8, true, false))),
        (&["level-repeat+32"], Some((32, true, true))),
        (&["+error"], Some((16, false, true))),
        // Given twice: the last level wins, flags accumulate as ffmpeg applies them in order.
        (&["error", "warning"], Some((24, false, true))),
        (&["level+error", "info"], Some((32, true, false))),
        (&["level+error", "-level"], Some((16, false, false))),
        (&["verbose", "+level"], Some((40, true, true))),
        // An empty level after `+` is strtol("") = 0; an empty value changes nothing.
        (&["repeat+"], Some((0, false, false))),
        (&[""], Some((32, false, true))),
        // Refused by ffmpeg ("Invalid loglevel").
        (&["loud"], None),
        (&["Error"], None),
        (&["info+"], None),
        (&["level+loud"], None),
        (&["16x"], None),
        (&["time+info"], None),
        (&["error", "nope"], None),
    ] {
        check_settings(values, expected);
    }
}

#[test]
fn loglevel_of_a_command() {
    let check = |command: &str, expected: Option<LogSettings>| {
        let command = Command::parse(command).unwrap();
        assert_eq!(LogSettings::of_command(&command).ok(), expected, "{command}");
    };
    let settings = |level, print_level, skip_repeated| Some(LogSettings { level, print_level, skip_repeated });
    check("-i a.mp4 b.mp4", settings(Level::INFO, false, true));
    check("-loglevel error -i a.mp4 b.mp4", settings(Level::ERROR, false, true));
    check("-v quiet -i a.mp4 b.mp4", settings(Level::QUIET, false, true));
    // -v and -loglevel are one setting; the last wins, wherever it stands.
    check("-v error -i a.mp4 -loglevel warning b.mp4", settings(Level::WARNING, false, true));
    check("-i a.mp4 b.mp4 -v repeat+level+debug", settings(Level::DEBUG, true, false));
    check("-v bogus -i a.mp4 b.mp4", None);
}

#[test]
fn to_value_round_trips() {
    for level in [-8, 0, 8, 16, 24, 31, 32, 40, 48, 56] {
        for print_level in [false, true] {
            for skip_repeated in [false, true] {
                let settings = LogSettings { level: Level(level), print_level, skip_repeated };
                // Whatever came before, the value sets exactly these settings.
                for before in ["quiet", "repeat+level+trace", "level", "-repeat+error"] {
                    let mut again = LogSettings::default();
                    again.apply(before).unwrap();
                    again.apply(&settings.to_value()).unwrap();
                    assert_eq!(again, settings, "{} after {before}", settings.to_value());
                }
            }
        }
    }
}

fn check_line(line: &str, contexts: &str, level: Option<Level>, message: &str) {
    assert_eq!(LogLine::parse(line), LogLine { contexts, level, message }, "{line:?}");
}

#[test]
fn line_prefixes() {
    check_line("plain message", "", None, "plain message");
    check_line("", "", None, "");
    check_line("[info] Input #0, lavfi, from 'x':", "", Some(Level::INFO), "Input #0, lavfi, from 'x':");
    check_line("[info]   Duration: N/A", "", Some(Level::INFO), "  Duration: N/A");
    check_line("[error] a.mp4: No such file", "", Some(Level::ERROR), "a.mp4: No such file");
    check_line("[] odd level", "", Some(Level::INFO), "odd level");
    check_line("[libx264 @ 0x55e2] [info] using SAR=1/1", "[libx264 @ 0x55e2] ", Some(Level::INFO), "using SAR=1/1");
    check_line(
        "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55c9e673c7c0] [warning] stream 0, timescale not set",
        "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55c9e673c7c0] ",
        Some(Level::WARNING),
        "stream 0, timescale not set",
    );
    check_line(
        "[graph 0 input from stream 0:0 @ 0x55c9e6bb1000] [verbose] w:320",
        "[graph 0 input from stream 0:0 @ 0x55c9e6bb1000] ",
        Some(Level::VERBOSE),
        "w:320",
    );
    // A parent's context, then the object's own.
    check_line(
        "[matroska @ 0xa1] [AVIOContext @ 0xb2] [debug] Statistics: 1 seeks",
        "[matroska @ 0xa1] [AVIOContext @ 0xb2] ",
        Some(Level::DEBUG),
        "Statistics: 1 seeks",
    );
    check_line("[mp3 @ 0x55] Estimating duration", "[mp3 @ 0x55] ", None, "Estimating duration");
    // Brackets that are not prefixes stay in the message.
    check_line("[0][0][0][0]", "", None, "[0][0][0][0]");
    check_line("[loud] x", "", None, "[loud] x");
    check_line("[x @ 0xzz] y", "", None, "[x @ 0xzz] y");
    check_line("[info]x", "", None, "[info]x");
    check_line("    Last message repeated 3 times", "", None, "    Last message repeated 3 times");
}

/// A real ffmpeg 5.1 banner with `-loglevel level+verbose`: every line carries a prefix.
#[test]
fn banner_with_prefixes() {
    let text = include_str!("../data/banner_levels.txt");
    for size in [1, 7, 64, text.len()] {
        let mut scanner = BannerScanner::new();
        for chunk in text.as_bytes().chunks(size) {
            scanner.feed(chunk);
        }
        assert_eq!(scanner.input_durations(), [Some(3.0), Some(5.04)], "chunks of {size}");
    }
    let prefixed = |prefix: &str| {
        let mut scanner = BannerScanner::new();
        scanner.feed(
            format!("{prefix}Input #0, mov,mp4, from 'a':\n{prefix}  Duration: 00:00:04.00, start: 0\n").as_bytes(),
        );
        scanner.input_durations()
    };
    for prefix in ["", "[info] ", "[] ", "[x @ 0x1] [info] ", "[p @ 0x1] [x @ 0x2] "] {
        assert_eq!(prefixed(prefix), [Some(4.0)], "{prefix:?}");
    }
}

/// Routes `stderr` for a client whose own `-loglevel` values are `client`; returns the job
/// log (what the client's level shows) and the lines errors are built from.
fn route(client: &[&str], stderr: &str) -> (String, String) {
    let mut settings = LogSettings::default();
    for value in client {
        settings.apply(value).unwrap();
    }
    let mut router = LogRouter::new(settings);
    let mut lines = router.feed(stderr.as_bytes());
    lines.extend(router.finish());
    let log = lines.iter().filter(|l| l.for_client).map(|l| format!("{}\n", l.text)).collect();
    let messages = lines.iter().filter(|l| l.at_default_level).map(|l| format!("{}\n", l.plain)).collect();
    (log, messages)
}

const RUN: &str = "[h264 @ 0xa] [verbose] Reinit context\n\
    [info] Input #0, mov, from 'a.mp4':\n\
    [info]   Duration: 00:00:03.00, start: 0.0\n\
    [libx264 @ 0xb] [warning] VBV not set\n\
    [libx264 @ 0xb] [error] broken\n\
    continued line\n\
    [info] frame=1 fps=0\r[info] frame=2 fps=0\r\n\
    [fatal] Conversion failed!";

#[test]
fn router_keeps_what_the_clients_level_shows() {
    let check = |client: &[&str], log: &str| {
        let (got, messages) = route(client, RUN);
        assert_eq!(got, log, "{client:?}");
        // Errors are built from what ffmpeg says at its default level, whatever the client's.
        assert_eq!(
            messages,
            "Input #0, mov, from 'a.mp4':\n  Duration: 00:00:03.00, start: 0.0\n[libx264 @ 0xb] VBV not set\n\
             [libx264 @ 0xb] broken\ncontinued line\nframe=1 fps=0\nframe=2 fps=0\nConversion failed!\n",
            "{client:?}"
        );
    };
    let info = "Input #0, mov, from 'a.mp4':\n  Duration: 00:00:03.00, start: 0.0\n[libx264 @ 0xb] VBV not set\n\
                [libx264 @ 0xb] broken\ncontinued line\nframe=1 fps=0\nframe=2 fps=0\nConversion failed!\n";
    check(&[], info);
    check(&["info"], info);
    check(&["error"], "[libx264 @ 0xb] broken\ncontinued line\nConversion failed!\n");
    check(&["16"], "[libx264 @ 0xb] broken\ncontinued line\nConversion failed!\n");
    check(&["warning"], "[libx264 @ 0xb] VBV not set\n[libx264 @ 0xb] broken\ncontinued line\nConversion failed!\n");
    check(&["fatal"], "Conversion failed!\n");
    check(&["panic"], "");
    check(&["quiet"], "");
    check(&["warning", "error"], "[libx264 @ 0xb] broken\ncontinued line\nConversion failed!\n");
    check(&["level+error"], "[libx264 @ 0xb] [error] broken\ncontinued line\n[fatal] Conversion failed!\n");
    check(
        &["repeat+level+verbose"],
        "[h264 @ 0xa] [verbose] Reinit context\n[info] Input #0, mov, from 'a.mp4':\n\
         [info]   Duration: 00:00:03.00, start: 0.0\n[libx264 @ 0xb] [warning] VBV not set\n\
         [libx264 @ 0xb] [error] broken\ncontinued line\n[info] frame=1 fps=0\n[info] frame=2 fps=0\n\
         [fatal] Conversion failed!\n",
    );
}

#[test]
fn router_lines_without_a_level() {
    // `fprintf` output before any leveled line shows at every level; a line without a
    // prefix after a leveled one continues it (a multi-line message, `Last message repeated`).
    let stderr = "Error, both -y and -n supplied. Exiting.\n[info] a\n    Last message repeated 2 times\n[error] b\n    Last message repeated 1 times\n";
    assert_eq!(
        route(&["error"], stderr).0,
        "Error, both -y and -n supplied. Exiting.\n[error] b\n    Last message repeated 1 times\n"
            .replace("[error] ", "")
    );
    // Only the first line of a message carries ffmpeg's level prefix: a continuation that
    // holds data (a metadata value with a newline) is not a line ffmpeg leveled itself, even
    // when it looks like one after its first word.
    let mut router = LogRouter::new(LogSettings::default());
    let lines = router.feed(b"[info] title=a\nError writing trailer of x\n[segment @ 0x5a] [error] Failure\n    Last message repeated 1 times\n");
    let prefixed: Vec<(bool, Option<Level>)> = lines.iter().map(|l| (l.prefixed, l.level)).collect();
    assert_eq!(
        prefixed,
        [
            (true, Some(Level::INFO)),
            (false, Some(Level::INFO)),
            (true, Some(Level::ERROR)),
            (false, Some(Level::ERROR))
        ]
    );
    // Chunked anywhere, the same lines; a partial last line comes out at the end.
    let whole = route(&["warning"], RUN);
    for size in [1, 2, 5, 13] {
        let mut settings = LogSettings::default();
        settings.apply("warning").unwrap();
        let mut router = LogRouter::new(settings);
        let mut log = String::new();
        for chunk in RUN.as_bytes().chunks(size) {
            for line in router.feed(chunk) {
                if line.for_client {
                    log.push_str(&line.text);
                    log.push('\n');
                }
            }
        }
        if let Some(line) = router.finish().filter(|l| l.for_client) {
            log.push_str(&line.text);
            log.push('\n');
        }
        assert_eq!(log, whole.0, "chunks of {size}");
    }
    // Memory stays bounded on a line without end, and bytes that are not UTF-8 are replaced.
    let mut router = LogRouter::new(LogSettings::default());
    for _ in 0..1000 {
        assert!(router.feed(&[b'x'; 1024]).is_empty());
    }
    let line = router.feed(b"\xff\n").remove(0);
    assert!(line.text.len() <= 16 * 1024 + 3, "{}", line.text.len());
}

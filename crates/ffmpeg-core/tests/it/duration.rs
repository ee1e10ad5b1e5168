//! `ffmpeg_core::duration`: time-duration syntax, the stderr banner scanner (on real ffmpeg 5.1
//! stderr captured in `tests/data/`), expected output length and percent complete.

use ffmpeg_core::command::Command;
use ffmpeg_core::duration::{BannerScanner, ExpectedLength, InputInfo, StreamKind, parse_time_duration};
use ffmpeg_core::progress::{ProgressState, ProgressUpdate};
use proptest::prelude::*;

use crate::progress::{PROGRESS_CAPTURES, parse_all};

// ---------------------------------------------------------------------------------------------
// parse_time_duration

fn check_time(input: &str, expected: Option<f64>) {
    assert_eq!(parse_time_duration(input), expected, "{input:?}");
}

#[test]
fn time_duration_accepted() {
    // Values checked against `ffmpeg -t VALUE` (5.1): every one of these is accepted.
    for (input, seconds) in [
        ("55", 55.0),
        ("0", 0.0),
        ("0.2", 0.2),
        ("1.", 1.0),
        ("200ms", 0.2),
        ("1.5ms", 0.0015),
        ("200000us", 0.2),
        ("1.5us", 0.000_001),
        ("5s", 5.0),
        ("2.5s", 2.5),
        ("12:03:45", 43425.0),
        ("23.189", 23.189),
        ("1:2:3", 3723.0),
        ("1:2.5", 62.5),
        ("59:59", 3599.0),
        ("00:00:01.1234567", 1.123_456),
        ("0:0:0.000001", 0.000_001),
        ("100:00:00", 360_000.0),
        ("9999:00:00", 35_996_400.0),
        ("-0.5", -0.5),
        ("-1:30", -90.0),
        ("--0", 0.0),
        ("- 5", -5.0),
        (" 5", 5.0),
        ("+5", 5.0),
        ("9223372036", 9_223_372_036.0),
        ("1000000us", 1.0),
    ] {
        check_time(input, Some(seconds));
    }
}

#[test]
fn time_duration_rejected() {
    // Values `ffmpeg -t VALUE` (5.1) rejects with "Invalid duration specification".
    for input in [
        "",
        "-",
        ".5",
        "90:00",
        "1:60",
        "10000:00:00",
        "01:02:03:04",
        "1 :2",
        "5S",
        "5 ",
        "1e3",
        "0x10",
        "abc",
        "9223372036854775807",
        "9223372036855",
        "99999999999999999999999",
        "1.5 s",
        "5m",
        "--5",
        "1:2:3.4.5",
        "\u{0663}",
    ] {
        check_time(input, None);
    }
}

proptest! {
    #[test]
    fn time_duration_never_panics(input in "\\PC{0,24}") {
        if let Some(seconds) = parse_time_duration(&input) {
            prop_assert!(seconds.is_finite());
        }
    }

    #[test]
    fn time_duration_clock_round_trip(
        hours in 0i64..10_000, minutes in 0i64..60, seconds in 0i64..60, micros in 0i64..1_000_000,
    ) {
        let text = format!("{hours}:{minutes:02}:{seconds:02}.{micros:06}");
        let expected = ((hours * 3600 + minutes * 60 + seconds) * 1_000_000 + micros) as f64 / 1e6;
        prop_assert_eq!(parse_time_duration(&text), Some(expected));
    }
}

// ---------------------------------------------------------------------------------------------
// BannerScanner

/// Real ffmpeg 5.1 stderr, by capture name, with the input durations it announces.
const BANNER_CAPTURES: &[(&str, &str, &[Option<f64>])] = &[
    ("x264", include_str!("../data/banner_x264.txt"), &[None, None]),
    ("file", include_str!("../data/banner_file.txt"), &[Some(3.0)]),
    ("null", include_str!("../data/banner_null.txt"), &[Some(3.02)]),
    ("two_inputs", include_str!("../data/banner_two_inputs.txt"), &[Some(3.0), Some(5.04)]),
    ("audio_copy", include_str!("../data/banner_audio_copy.txt"), &[Some(5.04)]),
    ("copy_negative", include_str!("../data/banner_copy_negative.txt"), &[Some(3.0)]),
];

fn scan(lines: &[&str]) -> Vec<Option<f64>> {
    let mut scanner = BannerScanner::new();
    for line in lines {
        scanner.feed(line.as_bytes());
        scanner.feed(b"\n");
    }
    scanner.input_durations()
}

#[test]
fn banner_captures() {
    for (name, text, expected) in BANNER_CAPTURES {
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(scan(&lines), *expected, "{name}");

        // As stderr arrives: in chunks of any size, split mid-line, with LF and with CRLF.
        let crlf = text.replace('\n', "\r\n");
        for bytes in [text.as_bytes(), crlf.as_bytes()] {
            for size in [1, 2, 3, 5, 7, 16, 64, 4096, bytes.len()] {
                let mut scanner = BannerScanner::new();
                for chunk in bytes.chunks(size) {
                    scanner.feed(chunk);
                }
                assert_eq!(scanner.input_durations(), *expected, "{name} in chunks of {size}");
                for (i, duration) in expected.iter().enumerate() {
                    assert_eq!(scanner.input_duration(i), *duration, "{name} input {i}");
                }
                assert_eq!(scanner.input_duration(expected.len()), None, "{name}");
            }
        }
    }
}

/// A line counts once its end arrives, however the chunks cut it; a header longer than the
/// scanner keeps (a long URL) still opens its section; a multi-byte character split between
/// chunks is no problem.
#[test]
fn banner_chunk_boundaries() {
    let mut scanner = BannerScanner::new();
    scanner.feed(b"Input #0, mov,mp4, from 'file:/data/");
    scanner.feed("é".repeat(400).as_bytes());
    scanner.feed(b"/\xc3");
    scanner.feed(b"\xa9.mp4':\n  Dur");
    assert_eq!(scanner.input_durations(), [None]);
    scanner.feed(b"ation: 00:00:07.25, start: 0.000000, bitrate: 1 kb/s");
    assert_eq!(scanner.input_durations(), [None], "the line has not ended yet");
    scanner.feed(b"\r\n");
    assert_eq!(scanner.input_durations(), [Some(7.25)]);

    // A very long log line between the header and its duration neither ends the section
    // (it is indented) nor grows memory.
    let mut scanner = BannerScanner::new();
    scanner.feed(b"Input #0, mov, from 'a':\n  Metadata:\n    comment         : ");
    for _ in 0..1000 {
        scanner.feed(&[b'x'; 1024]);
    }
    scanner.feed(b"\n  Duration: 00:00:01.50, start: 0.0\n");
    assert_eq!(scanner.input_durations(), [Some(1.5)]);
}

#[test]
fn banner_duration_forms() {
    let one = |duration_line: &str| scan(&["Input #0, mp4, from 'a':", duration_line]);
    assert_eq!(one("  Duration: 00:00:02.00, start: 0.000000, bitrate: 372 kb/s"), [Some(2.0)]);
    assert_eq!(one("  Duration: 01:23:45.67, start: 0.000000, bitrate: 1 kb/s"), [Some(5025.67)]);
    assert_eq!(one("  Duration: 123:00:00.00, start: 0.0"), [Some(442_800.0)]);
    assert_eq!(one("  Duration: 00:00:02.00"), [Some(2.0)]);
    assert_eq!(one("  Duration: N/A, start: 0.000000, bitrate: N/A"), [None]);
    assert_eq!(one("  Duration: N/A, bitrate: N/A"), [None]);
    assert_eq!(one("  Duration: garbage, start: 0.000000"), [None]);
    assert_eq!(one("  Duration: -00:00:01.00, start: 0.0"), [None]);
    assert_eq!(one("  Duration: 00:00:02.00x, start: 0.0"), [None]);
}

#[test]
fn banner_ignores_what_is_not_an_input_duration() {
    // A Duration line with no Input header before it.
    assert_eq!(scan(&["  Duration: 00:00:02.00, start: 0.0"]), []);
    // Output sections, and Duration lines after the section has ended.
    assert_eq!(
        scan(&[
            "Input #0, lavfi, from 'x':",
            "  Duration: N/A, start: 0.000000, bitrate: N/A",
            "  Duration: 00:00:09.00, start: 0.0",
            "Output #0, mp4, to 'out.mp4':",
            "  Duration: 00:00:07.00, start: 0.0",
        ]),
        [None]
    );
    assert_eq!(
        scan(&[
            "Input #0, lavfi, from 'x':",
            "[mp3 @ 0x55] Estimating duration from bitrate, this may be inaccurate",
            "  Duration: 00:00:09.00, start: 0.0",
        ]),
        [None]
    );
    // Matroska DURATION tags and metadata named Duration are indented deeper.
    assert_eq!(
        scan(&[
            "Input #0, matroska,webm, from 'a.mkv':",
            "  Metadata:",
            "    Duration        : 00:00:09.00",
            "  Stream #0:0: Video: h264",
            "      DURATION        : 00:00:03.023000000",
        ]),
        [None]
    );
    // Only the first Duration line of a section counts.
    assert_eq!(
        scan(&[
            "Input #0, mp4, from 'a':",
            "  Duration: 00:00:01.00, start: 0.0",
            "  Duration: 00:00:09.00, start: 0.0",
        ]),
        [Some(1.0)]
    );
}

#[test]
fn banner_input_indexes() {
    assert_eq!(scan(&["Input #2, mp4, from 'c':", "  Duration: 00:00:04.00, start: 0.0"]), [None, None, Some(4.0)]);
    // An absurd index is ignored rather than allocated.
    assert_eq!(scan(&["Input #18446744073709551615, x, from 'y':", "  Duration: 00:00:04.00"]), []);
    assert_eq!(scan(&["Input #99999999, x, from 'y':", "  Duration: 00:00:04.00"]), []);
    assert_eq!(scan(&["Input #, x, from 'y':", "  Duration: 00:00:04.00"]), []);
    assert_eq!(scan(&["Input #0 from 'y':", "  Duration: 00:00:04.00"]), []);
}

#[test]
fn banner_bytes_and_carriage_returns() {
    let mut scanner = BannerScanner::new();
    scanner.feed(b"Input #0, mov, from '\xff\xfe':\n");
    scanner.feed(b"\xff\xfe\n");
    assert_eq!(scanner.input_durations(), [None]);

    let mut scanner = BannerScanner::new();
    scanner.feed(b"Input #0, mov, from 'a':\n");
    scanner.feed(b"  Duration: 00:00:02.00\xff, start: 0.0\n");
    assert_eq!(scanner.input_durations(), [None]);

    // A stats line rewritten with `\r` followed by the next header.
    let mut scanner = BannerScanner::new();
    scanner.feed(b"frame=1 fps=0.0\rInput #0, mov, from 'a':\r\n");
    scanner.feed(b"  Duration: 00:00:02.50, start: 0.0\r\n");
    assert_eq!(scanner.input_durations(), [Some(2.5)]);
}

proptest! {
    #[test]
    fn banner_never_panics(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..20)) {
        let mut scanner = BannerScanner::new();
        scanner.feed(b"Input #0, x, from 'y':\n");
        for chunk in &chunks {
            scanner.feed(chunk);
        }
        for d in scanner.input_durations().into_iter().flatten() {
            prop_assert!(d.is_finite() && d >= 0.0);
        }
    }

    /// Wherever the chunk boundaries fall, a real capture gives the same durations.
    #[test]
    fn banner_any_chunking(capture in 0..BANNER_CAPTURES.len(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40)) {
        let (name, text, expected) = BANNER_CAPTURES[capture];
        let bytes = text.as_bytes();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut scanner = BannerScanner::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            scanner.feed(&bytes[start..cut]);
            start = cut;
        }
        prop_assert_eq!(scanner.input_durations(), expected.to_vec(), "{}", name);
    }
}

// ---------------------------------------------------------------------------------------------
// ExpectedLength::for_output

fn expected_for(command: &str, output: usize, durations: &[Option<f64>]) -> ExpectedLength {
    let command = Command::parse(command).unwrap();
    ExpectedLength::for_output(&command, output, durations)
}

/// Output 0 of `command`, whose inputs last `durations`, is expected to last `seconds` and have
/// `frames` frames.
fn check_expected(command: &str, durations: &[Option<f64>], seconds: Option<f64>, frames: Option<u64>) {
    let got = expected_for(command, 0, durations);
    let close = match (got.seconds, seconds) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        (a, b) => a == b,
    };
    assert!(close && got.frames == frames, "{command:?} {durations:?}: got {got:?}, want {seconds:?} / {frames:?}");
}

const MINUTE: &[Option<f64>] = &[Some(60.0)];

#[test]
fn expected_plain() {
    check_expected("-i in.mp4 out.mp4", MINUTE, Some(60.0), None);
    check_expected("-i in.mp4 -c:v libx264 -crf 23 out.mp4", MINUTE, Some(60.0), None);
    check_expected("-i in.mp4 out.mp4", &[Some(0.0)], Some(0.0), None);
}

#[test]
fn expected_input_options() {
    check_expected("-ss 10 -i in.mp4 out.mp4", MINUTE, Some(50.0), None);
    check_expected("-ss 00:00:10.5 -i in.mp4 out.mp4", MINUTE, Some(49.5), None);
    check_expected("-ss 70 -i in.mp4 out.mp4", MINUTE, Some(0.0), None);
    check_expected("-t 5 -i in.mp4 out.mp4", MINUTE, Some(5.0), None);
    check_expected("-t 500ms -i in.mp4 out.mp4", MINUTE, Some(0.5), None);
    check_expected("-t 100 -i in.mp4 out.mp4", MINUTE, Some(60.0), None);
    check_expected("-ss 10 -t 5 -i in.mp4 out.mp4", MINUTE, Some(5.0), None);
    check_expected("-ss 58 -t 5 -i in.mp4 out.mp4", MINUTE, Some(2.0), None);
    check_expected("-to 40 -i in.mp4 out.mp4", MINUTE, Some(40.0), None);
    check_expected("-to 100 -i in.mp4 out.mp4", MINUTE, Some(60.0), None);
    check_expected("-ss 10 -to 40 -i in.mp4 out.mp4", MINUTE, Some(30.0), None);
    check_expected("-ss 50 -to 40 -i in.mp4 out.mp4", MINUTE, Some(0.0), None);
    // -t wins over -to, as in ffmpeg.
    check_expected("-ss 10 -t 5 -to 40 -i in.mp4 out.mp4", MINUTE, Some(5.0), None);
    check_expected("-to 40 -t 5 -i in.mp4 out.mp4", MINUTE, Some(5.0), None);
    // The last occurrence wins.
    check_expected("-t 5 -t 7 -i in.mp4 out.mp4", MINUTE, Some(7.0), None);
    // An invalid time is ignored (ffmpeg would refuse to run).
    check_expected("-t abc -i in.mp4 out.mp4", MINUTE, Some(60.0), None);
    check_expected("-sseof -10 -i in.mp4 out.mp4", MINUTE, Some(10.0), None);
    check_expected("-sseof -100 -i in.mp4 out.mp4", MINUTE, Some(60.0), None);
    check_expected("-ss 55 -sseof -10 -i in.mp4 out.mp4", MINUTE, Some(5.0), None);
    check_expected("-stream_loop 1 -i in.mp4 out.mp4", MINUTE, Some(120.0), None);
    check_expected("-stream_loop 2 -t 100 -i in.mp4 out.mp4", MINUTE, Some(100.0), None);
    check_expected("-stream_loop -1 -i in.mp4 out.mp4", MINUTE, None, None);
    check_expected("-stream_loop -1 -t 300 -i in.mp4 out.mp4", MINUTE, Some(300.0), None);
}

#[test]
fn expected_output_options() {
    check_expected("-i in.mp4 -ss 10 out.mp4", MINUTE, Some(50.0), None);
    check_expected("-i in.mp4 -t 5 out.mp4", MINUTE, Some(5.0), None);
    check_expected("-i in.mp4 -t 100 out.mp4", MINUTE, Some(60.0), None);
    check_expected("-i in.mp4 -to 5 out.mp4", MINUTE, Some(5.0), None);
    check_expected("-i in.mp4 -ss 10 -to 40 out.mp4", MINUTE, Some(30.0), None);
    check_expected("-i in.mp4 -ss 10 -t 100 out.mp4", MINUTE, Some(50.0), None);
    check_expected("-i in.mp4 -ss 10 -t 5 -to 40 out.mp4", MINUTE, Some(5.0), None);
    check_expected("-ss 10 -i in.mp4 -ss 5 -t 100 out.mp4", MINUTE, Some(45.0), None);
    check_expected("-ss 10 -t 30 -i in.mp4 -t 20 out.mp4", MINUTE, Some(20.0), None);
    check_expected("-ss 10 -t 30 -i in.mp4 -t 40 out.mp4", MINUTE, Some(30.0), None);
}

#[test]
fn expected_frames() {
    check_expected("-i in.mp4 -frames:v 100 out.mp4", MINUTE, Some(60.0), Some(100));
    check_expected("-i in.mp4 -vframes 10 out.mp4", MINUTE, Some(60.0), Some(10));
    check_expected("-i in.mp4 -frames 10 out.mp4", MINUTE, Some(60.0), Some(10));
    check_expected("-i in.mp4 -frames:v:0 7 out.mp4", MINUTE, Some(60.0), Some(7));
    check_expected("-i in.mp4 -frames:a 10 out.mp4", MINUTE, Some(60.0), None);
    check_expected("-i in.mp4 -frames:v 5 -frames:a 9 out.mp4", MINUTE, Some(60.0), Some(5));
    check_expected("-i in.mp4 -frames:v 5 -vframes 6 out.mp4", MINUTE, Some(60.0), Some(6));
    check_expected("-i in.mp4 -frames:v many out.mp4", MINUTE, Some(60.0), None);
    check_expected("-f lavfi -i testsrc -frames:v 50 out.mp4", &[None], None, Some(50));
    // Input frame options do not limit the output.
    check_expected("-frames:v 5 -i in.mp4 out.mp4", MINUTE, Some(60.0), None);
}

#[test]
fn expected_unknown_durations() {
    check_expected("-f lavfi -i testsrc out.mp4", &[None], None, None);
    check_expected("-f lavfi -i testsrc out.mp4", &[], None, None);
    check_expected("-f lavfi -i testsrc -ss 1 out.mp4", &[None], None, None);
    // A -t or -to bounds a source of unknown duration (lavfi reports N/A).
    check_expected("-f lavfi -i testsrc -t 5 out.mp4", &[None], Some(5.0), None);
    check_expected("-f lavfi -i testsrc -to 5 out.mp4", &[None], Some(5.0), None);
    check_expected("-f lavfi -i testsrc -ss 1 -to 5 out.mp4", &[None], Some(4.0), None);
    check_expected("-f lavfi -t 4 -i testsrc out.mp4", &[None], Some(4.0), None);
    check_expected("-f lavfi -ss 1 -to 4 -i testsrc out.mp4", &[None], Some(3.0), None);
    // Durations that are not durations count as unknown.
    check_expected("-i in.mp4 out.mp4", &[Some(f64::NAN)], None, None);
    check_expected("-i in.mp4 out.mp4", &[Some(f64::INFINITY)], None, None);
    check_expected("-i in.mp4 out.mp4", &[Some(-1.0)], None, None);
}

#[test]
fn expected_several_inputs() {
    let both: &[Option<f64>] = &[Some(3.0), Some(5.0)];
    check_expected("-i a.mp4 -i b.mp3 out.mp4", both, Some(5.0), None);
    check_expected("-i a.mp4 -i b.mp3 -shortest out.mp4", both, Some(3.0), None);
    check_expected("-i a.mp4 -i b.mp3 -map 0:v -map 1:a out.mp4", both, Some(5.0), None);
    check_expected("-i a.mp4 -i b.mp3 -map 0:v -map 1:a -shortest out.mp4", both, Some(3.0), None);
    check_expected("-i a.mp4 -i b.mp3 -map 1:a out.mp3", both, Some(5.0), None);
    check_expected("-i a.mp4 -i b.mp3 -map 0:v:0 out.mp4", both, Some(3.0), None);
    check_expected("-i a.mp4 -i b.mp3 -map 0 -map -0:a out.mp4", both, Some(3.0), None);
    check_expected("-i a.mp4 -i b.mp3 -map 0:a? out.mp4", both, Some(3.0), None);
    check_expected("-i a.mp4 -i b.mp3 -map 7 out.mp4", both, Some(5.0), None);
    check_expected(
        "-i a.mp4 -i b.mp3 -filter_complex [0:v][1:a]concat=n=1:v=1:a=1[v][a] -map [v] out.mp4",
        both,
        Some(5.0),
        None,
    );
    check_expected("-i a.mp4 -ss 1 -i b.mp3 -map 1 out.mp4", both, Some(4.0), None);
    // Unknown durations are skipped, whether longest or shortest.
    check_expected("-i a.mp4 -f lavfi -i anullsrc out.mp4", &[Some(3.0), None], Some(3.0), None);
    check_expected("-i a.mp4 -f lavfi -i anullsrc -shortest out.mp4", &[Some(3.0), None], Some(3.0), None);
    check_expected("-i a.mp4 -i b.mp3 out.mp4", &[Some(3.0)], Some(3.0), None);
}

#[test]
fn expected_per_output() {
    let command = "-i a.mp4 -i b.mp3 -map 0 -t 2 o1.mp4 -map 1 o2.mp3 -frames:v 9 o3.mp4";
    let durations = [Some(3.0), Some(5.0)];
    assert_eq!(expected_for(command, 0, &durations), ExpectedLength { seconds: Some(2.0), frames: None });
    assert_eq!(expected_for(command, 1, &durations), ExpectedLength { seconds: Some(5.0), frames: None });
    assert_eq!(expected_for(command, 2, &durations), ExpectedLength { seconds: Some(5.0), frames: Some(9) });
    assert_eq!(expected_for(command, 3, &durations), ExpectedLength::default());
}

// ---------------------------------------------------------------------------------------------
// ExpectedLength::percent

fn at(frame: Option<u64>, out_time_us: Option<i64>) -> ProgressUpdate {
    let mut update = ProgressUpdate::default();
    update.frame = frame;
    update.out_time_us = out_time_us;
    update
}

fn check_percent(expected: ExpectedLength, update: &ProgressUpdate, percent: Option<f64>) {
    assert_eq!(expected.percent(update), percent, "{expected:?} {update:?}");
}

fn length(seconds: Option<f64>, frames: Option<u64>) -> ExpectedLength {
    ExpectedLength { seconds, frames }
}

#[test]
fn percent_by_time() {
    let ten = length(Some(10.0), None);
    check_percent(ten, &at(None, Some(2_500_000)), Some(25.0));
    check_percent(ten, &at(Some(5), Some(0)), Some(0.0));
    check_percent(ten, &at(None, Some(10_000_000)), Some(100.0));
    check_percent(ten, &at(None, None), None);
    // Clamped: negative at the start of a stream copy, past the end with -shortest slack.
    check_percent(ten, &at(None, Some(-79_000)), Some(0.0));
    check_percent(ten, &at(None, Some(-2_077_252_342_775_808)), Some(0.0));
    check_percent(ten, &at(None, Some(10_100_000)), Some(100.0));
    check_percent(ten, &at(None, Some(i64::MAX)), Some(100.0));
    // A zero or meaningless length measures nothing.
    check_percent(length(Some(0.0), None), &at(None, Some(1)), None);
    check_percent(length(Some(-1.0), None), &at(None, Some(1)), None);
    check_percent(length(Some(f64::NAN), None), &at(None, Some(1)), None);
    check_percent(length(Some(f64::INFINITY), None), &at(None, Some(1)), None);
}

#[test]
fn percent_by_frames() {
    let hundred = length(None, Some(100));
    check_percent(hundred, &at(Some(50), None), Some(50.0));
    check_percent(hundred, &at(Some(0), Some(1_000_000)), Some(0.0));
    check_percent(hundred, &at(Some(150), None), Some(100.0));
    check_percent(hundred, &at(None, Some(1_000_000)), None);
    check_percent(length(None, Some(0)), &at(Some(5), None), None);
    check_percent(length(None, Some(u64::MAX)), &at(Some(u64::MAX), None), Some(100.0));
}

#[test]
fn percent_takes_the_limit_reached_first() {
    let both = length(Some(10.0), Some(100));
    check_percent(both, &at(Some(50), Some(8_000_000)), Some(80.0));
    check_percent(both, &at(Some(90), Some(2_000_000)), Some(90.0));
    check_percent(both, &at(None, Some(2_000_000)), Some(20.0));
    check_percent(both, &at(Some(30), None), Some(30.0));
    // Audio-only outputs have no frame count: time still measures.
    check_percent(length(Some(10.0), Some(0)), &at(None, Some(5_000_000)), Some(50.0));
}

#[test]
fn percent_unknown_is_none() {
    check_percent(ExpectedLength::default(), &at(Some(10), Some(1_000_000)), None);
    check_percent(ExpectedLength::default(), &ProgressUpdate::default(), None);
}

#[test]
fn percent_end_is_100() {
    let mut end = ProgressUpdate::default();
    end.state = ProgressState::End;
    check_percent(ExpectedLength::default(), &end, Some(100.0));
    check_percent(length(Some(10.0), None), &end, Some(100.0));
    let mut early_end = end.clone();
    early_end.out_time_us = Some(1);
    check_percent(length(Some(10.0), Some(100)), &early_end, Some(100.0));
}

proptest! {
    #[test]
    fn percent_is_always_in_range(
        seconds in prop::option::of(prop_oneof![any::<f64>(), 0.0f64..1e6]),
        frames in prop::option::of(any::<u64>()),
        frame in prop::option::of(any::<u64>()),
        out_time_us in prop::option::of(any::<i64>()),
    ) {
        let percent = length(seconds, frames).percent(&at(frame, out_time_us));
        if let Some(p) = percent {
            prop_assert!((0.0..=100.0).contains(&p), "{}", p);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Real runs: banner + command + progress, end to end.

/// Percent of each progress block of a captured run, rounded to 0.1.
fn percents(banner: &str, command: &str, progress: &[u8]) -> (ExpectedLength, Vec<Option<f64>>) {
    let mut scanner = BannerScanner::new();
    scanner.feed(banner.as_bytes());
    let command = Command::parse(command).unwrap();
    let expected = ExpectedLength::for_output(&command, 0, &scanner.input_durations());
    let percents = parse_all(progress).iter().map(|u| expected.percent(u).map(|p| (p * 10.0).round() / 10.0)).collect();
    (expected, percents)
}

fn capture(name: &str) -> (&'static str, &'static [u8]) {
    let banner = BANNER_CAPTURES.iter().find(|c| c.0 == name).unwrap().1;
    let progress = PROGRESS_CAPTURES.iter().find(|c| c.0 == name).unwrap().1;
    (banner, progress)
}

#[test]
fn real_runs_percent() {
    let runs = [
        (
            "x264",
            "-f lavfi -i testsrc=duration=2:size=160x120:rate=25 -f lavfi -i sine=duration=2 \
             -c:v libx264 -c:a aac -y o.mp4",
        ),
        ("file", "-ss 0.5 -i file:in.mp4 -t 2 -c:v libx264 -preset veryslow -c:a aac -y file:o2.mp4"),
        ("null", "-i file:in.mkv -f null -"),
        (
            "two_inputs",
            "-i file:in.mp4 -i file:long.mp3 -map 0:v -map 1:a -shortest -c:v libx264 \
             -preset medium -c:a aac -y file:o3.mp4 -map 1:a -c:a libmp3lame -frames:a 50 \
             -y file:o4.mp3",
        ),
        ("audio_copy", "-i file:long.mp3 -c copy -y file:c.mp3"),
        ("copy_negative", "-i file:inb.mp4 -c copy -y file:c.mkv"),
    ];
    let mut results = Vec::new();
    for (name, command) in runs {
        let (banner, progress) = capture(name);
        let (expected, percents) = percents(banner, command, progress);
        assert_eq!(percents.last(), Some(&Some(100.0)), "{name}");
        let known: Vec<f64> = percents.iter().flatten().copied().collect();
        assert!(known.windows(2).all(|w| w[0] <= w[1]), "{name}: {percents:?}");
        results.push((name, expected, percents));
    }
    insta::assert_debug_snapshot!("real_runs_percent", results);
}

// ---------------------------------------------------------------------------------------------
// Filters and -itsoffset: ExpectedLength::for_output_with.

/// 20 s of video and audio at 44.1 kHz; 20 s of video only; 10 s of audio only at 48 kHz.
fn av(seconds: f64) -> InputInfo {
    InputInfo { duration: Some(seconds), streams: vec![StreamKind::Video, StreamKind::Audio], sample_rate: Some(44100) }
}
fn video(seconds: f64) -> InputInfo {
    InputInfo { duration: Some(seconds), streams: vec![StreamKind::Video], sample_rate: None }
}
fn audio(seconds: f64) -> InputInfo {
    InputInfo { duration: Some(seconds), streams: vec![StreamKind::Audio], sample_rate: Some(48000) }
}

fn check_with(command: &str, inputs: &[InputInfo], seconds: Option<f64>) {
    let got = ExpectedLength::for_output_with(&Command::parse(command).unwrap(), 0, inputs).seconds;
    let close = match (got, seconds) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        (a, b) => a == b,
    };
    assert!(close, "{command:?}: got {got:?}, want {seconds:?}");
}

#[test]
fn expected_through_filters() {
    let v20: &[InputInfo] = &[video(20.0)];
    let av20: &[InputInfo] = &[av(20.0)];
    let a10: &[InputInfo] = &[audio(10.0)];
    for (command, inputs, seconds) in [
        // Constant-factor setpts, in every spelling.
        ("-i a.mp4 -vf setpts=PTS/5 o.mp4", v20, Some(4.0)),
        ("-i a.mp4 -vf setpts=0.5*PTS o.mp4", v20, Some(10.0)),
        ("-i a.mp4 -vf 'setpts=PTS * 2' o.mp4", v20, Some(40.0)),
        ("-i a.mp4 -vf setpts=2.0*PTS/4 o.mp4", v20, Some(10.0)),
        ("-i a.mp4 -vf setpts=expr=PTS/4 o.mp4", v20, Some(5.0)),
        ("-i a.mp4 -vf setpts=(PTS-STARTPTS)/2 o.mp4", v20, Some(10.0)),
        ("-i a.mp4 -vf setpts=PTS-STARTPTS o.mp4", v20, Some(20.0)),
        ("-i a.mp4 -filter:v setpts=PTS/5 o.mp4", v20, Some(4.0)),
        ("-i a.mp4 -filter setpts=PTS/5 o.mp4", v20, Some(4.0)),
        ("-i a.mp4 -vf scale=80:-2,setpts=PTS/5,format=yuv420p o.mp4", v20, Some(4.0)),
        // Other setpts expressions: unknown, not a wrong number.
        ("-i a.mp4 -vf setpts=N/FRAME_RATE/TB o.mp4", v20, None),
        ("-i a.mp4 -vf setpts=PTS+1/TB o.mp4", v20, None),
        ("-i a.mp4 -vf setpts=PTS/0 o.mp4", v20, None),
        ("-i a.mp4 -vf setpts=PTS*PTS o.mp4", v20, None),
        ("-i a.mp4 -vf setpts=5/PTS o.mp4", v20, None),
        // ... unless -t bounds it.
        ("-i a.mp4 -vf setpts=N/FRAME_RATE/TB -t 3 o.mp4", v20, Some(3.0)),
        // The video filter changes the video only: the audio still lasts 20 s.
        ("-i a.mp4 -vf setpts=PTS/5 o.mp4", av20, Some(20.0)),
        ("-i a.mp4 -vf setpts=PTS/5 -an o.mp4", av20, Some(4.0)),
        ("-i a.mp4 -vf setpts=PTS/5 -af atempo=5 o.mp4", av20, Some(4.0)),
        ("-i a.mp4 -vf setpts=PTS/5 -shortest o.mp4", av20, Some(4.0)),
        ("-i a.mp4 -map 0:v -vf setpts=PTS/5 o.mp4", av20, Some(4.0)),
        ("-i a.mp4 -map 0:0 -vf setpts=PTS/5 o.mp4", av20, Some(4.0)),
        ("-i a.mp4 -map 0:1 -vf setpts=PTS/5 o.mp4", av20, Some(20.0)),
        // atempo, asetrate (from the banner's sample rate, or one set earlier in the chain).
        ("-i a.mp3 -af atempo=2 o.mp3", a10, Some(5.0)),
        ("-i a.mp3 -af atempo=0.5,atempo=0.5 o.mp3", a10, Some(40.0)),
        ("-i a.mp3 -af atempo=tempo=2 o.mp3", a10, Some(5.0)),
        ("-i a.mp3 -af asetrate=96000 o.mp3", a10, Some(5.0)),
        ("-i a.mp3 -af asetrate=r=24000 o.mp3", a10, Some(20.0)),
        ("-i a.mp3 -af aresample=44100,asetrate=88200 o.mp3", a10, Some(5.0)),
        ("-i a.mp3 -af asetrate=96000,aresample=48000 o.mp3", a10, Some(5.0)),
        ("-i a.mp3 -af asetrate=96000 o.mp3", &[InputInfo { sample_rate: None, ..audio(10.0) }], None),
        // trim keeps timestamps: the output ends at the end of the kept part.
        ("-i a.mp4 -vf trim=5:8 o.mp4", v20, Some(8.0)),
        ("-i a.mp4 -vf trim=start=5:end=8,setpts=PTS-STARTPTS o.mp4", v20, Some(3.0)),
        ("-i a.mp4 -vf trim=start=5:duration=2 o.mp4", v20, Some(7.0)),
        ("-i a.mp4 -vf trim=duration=2 o.mp4", v20, Some(2.0)),
        ("-i a.mp4 -vf trim=end=30 o.mp4", v20, Some(20.0)),
        ("-i a.mp4 -vf trim=start=5.5:end=1 o.mp4", v20, Some(5.5)),
        ("-i a.mp4 -vf trim=end_frame=10 o.mp4", v20, None),
        ("-i a.mp3 -af atrim=0:2 o.mp3", a10, Some(2.0)),
        ("-i a.mp3 -af atrim=start=4,asetpts=PTS-STARTPTS o.mp3", a10, Some(6.0)),
        // Filters that add time without a stated bound.
        ("-i a.mp3 -af apad o.mp3", a10, None),
        ("-i a.mp4 -vf loop=loop=-1:size=10 o.mp4", v20, None),
        ("-i a.mp4 -vf select=eq(pict_type\\,I) o.mp4", v20, None),
        ("-i a.mp4 -af apad -shortest o.mp4", av20, None),
        ("-i a.mp4 -af apad -t 25 o.mp4", av20, Some(25.0)),
        // A graph that does not parse.
        ("-i a.mp4 -vf 'scale=[' o.mp4", v20, None),
        // -itsoffset moves the input's end.
        ("-itsoffset 2 -i a.mp4 o.mp4", v20, Some(22.0)),
        ("-itsoffset -5 -i a.mp4 o.mp4", v20, Some(15.0)),
        ("-itsoffset 2 -ss 5 -i a.mp4 o.mp4", v20, Some(17.0)),
        ("-itsoffset 3 -i a.mp4 -vf setpts=PTS/2 o.mp4", v20, Some(11.5)),
    ] {
        check_with(command, inputs, seconds);
    }
}

#[test]
fn expected_through_filter_complex() {
    let two: &[InputInfo] = &[video(20.0), video(10.0)];
    let two_av: &[InputInfo] = &[av(20.0), av(10.0)];
    for (command, inputs, seconds) in [
        // The concat filter: the sum of its segments.
        ("-i a.mp4 -i b.mp4 -filter_complex [0:v][1:v]concat=n=2:v=1:a=0[v] -map [v] o.mp4", two, Some(30.0)),
        ("-i a.mp4 -i b.mp4 -filter_complex [0:v][1:v]concat[v] -map [v] o.mp4", two, Some(30.0)),
        (
            "-i a.mp4 -i b.mp4 -filter_complex [0:v][0:a][1:v][1:a]concat=n=2:v=1:a=1[v][a] -map [v] -map [a] o.mp4",
            two_av,
            Some(30.0),
        ),
        ("-i a.mp4 -i b.mp4 -filter_complex [0:v][1:v]concat=n=3[v] -map [v] o.mp4", two, None),
        ("-i a.mp4 -i b.mp4 -lavfi [0:v][1:v]concat=n=2:v=1:a=0[v] -map [v] o.mp4", two, Some(30.0)),
        ("-i a.mp4 -i b.mp4 -filter_complex [0:v]setpts=PTS/2[x];[x][1:v]concat[v] -map [v] o.mp4", two, Some(20.0)),
        // Labels used before they are defined.
        ("-i a.mp4 -i b.mp4 -filter_complex [x][1:v]concat[v];[0:v]trim=0:5[x] -map [v] o.mp4", two, Some(15.0)),
        // Unlabelled outputs go to the first output.
        ("-i a.mp4 -i b.mp4 -filter_complex [0:v][1:v]concat o.mp4", two, Some(30.0)),
        ("-i a.mp4 -filter_complex setpts=PTS/4 o.mp4", &[video(20.0)], Some(5.0)),
        // Mixers: the longest input, or the shortest when told.
        ("-i a.mp4 -i b.mp4 -filter_complex [0:v][1:v]overlay[v] -map [v] o.mp4", two, Some(20.0)),
        ("-i a.mp4 -i b.mp4 -filter_complex [0:v][1:v]overlay=shortest=1[v] -map [v] o.mp4", two, Some(10.0)),
        ("-i a.mp4 -i b.mp4 -filter_complex [0:a][1:a]amix=duration=shortest[a] -map [a] o.mp4", two_av, Some(10.0)),
        ("-i a.mp4 -i b.mp4 -filter_complex [1:a][0:a]amix=duration=first[a] -map [a] o.mp4", two_av, Some(10.0)),
        // Sources: their duration, else unknown.
        ("-i a.mp4 -filter_complex color=c=red:d=3[bg];[bg][0:v]overlay[v] -map [v] o.mp4", two, Some(20.0)),
        ("-i a.mp4 -filter_complex color=c=red:d=3[bg];[bg][0:v]overlay=shortest=1[v] -map [v] o.mp4", two, Some(3.0)),
        ("-i a.mp4 -filter_complex color=c=red[bg];[bg][0:v]overlay[v] -map [v] o.mp4", two, None),
        // A label no graph defines, a graph that does not parse.
        ("-i a.mp4 -map [nowhere] o.mp4", two, None),
        ("-i a.mp4 -filter_complex '[0:v]scale=[' -map [v] o.mp4", two, None),
        // Graph outputs beside input streams, -shortest, output -t.
        ("-i a.mp4 -i b.mp4 -filter_complex [1:v]setpts=PTS*3[v] -map [v] -map 0:v o.mp4", two, Some(30.0)),
        ("-i a.mp4 -i b.mp4 -filter_complex [1:v]setpts=PTS*3[v] -map [v] -map 0:v -shortest o.mp4", two, Some(20.0)),
        ("-i a.mp4 -i b.mp4 -filter_complex [0:v][1:v]concat[v] -map [v] -t 12 o.mp4", two, Some(12.0)),
    ] {
        check_with(command, inputs, seconds);
    }
}

/// A graph that refers to its labels many times over gives up rather than taking
/// exponential time.
#[test]
fn expected_through_a_hostile_graph_is_bounded() {
    let mut graph = String::from("[0:v]split[l0]");
    for i in 0..40 {
        graph.push_str(&format!(";[l{i}][l{i}]overlay[l{}]", i + 1));
    }
    let command = format!("-i a.mp4 -filter_complex {graph} -map [l40] o.mp4");
    let started = std::time::Instant::now();
    check_with(&command, &[video(20.0)], None);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn banner_streams_and_sample_rates() {
    let mut scanner = BannerScanner::new();
    scanner.feed(include_str!("../data/banner_levels.txt").as_bytes());
    let inputs = scanner.inputs();
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[0].streams, [StreamKind::Video, StreamKind::Audio]);
    assert_eq!(inputs[0].sample_rate, Some(44100));
    assert_eq!(
        inputs[1],
        InputInfo { duration: Some(5.04), streams: vec![StreamKind::Audio], sample_rate: Some(44100) }
    );
    // Output sections' streams are not the inputs'.
    let mut scanner = BannerScanner::new();
    scanner.feed(b"Input #0, mp3, from 'a':\n  Duration: 00:00:02.00\n  Stream #0:0: Audio: mp3, 22050 Hz, mono\nOutput #0, mp4, to 'o':\n  Stream #0:0: Video: h264\n  Stream #0:1: Audio: aac, 8000 Hz\n");
    assert_eq!(
        scanner.inputs(),
        [InputInfo { duration: Some(2.0), streams: vec![StreamKind::Audio], sample_rate: Some(22050) }]
    );
}

/// Runs ffmpeg on `args` (in `dir`) with progress on stdout; returns stderr and the last
/// `out_time` in seconds.
fn real_run(dir: &std::path::Path, args: &str) -> (String, f64) {
    let output = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-y", "-progress", "pipe:1", "-nostats"])
        .args(shell_words::split(args).unwrap())
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ffmpeg is installed (CI installs it)");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{args}: {stderr}");
    let last = parse_all(&output.stdout).last().and_then(ProgressUpdate::out_time_seconds).unwrap();
    (stderr, last)
}

/// The expected length against what real ffmpeg 5.1 does: for each command, the length
/// computed from its banner is within 0.15 s of the run's final `out_time`.
#[test]
fn expected_length_matches_real_ffmpeg() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (name, seconds) in [("a.mp4", 4), ("b.mp4", 2)] {
        real_run(
            dir,
            &format!(
                "-f lavfi -i testsrc=duration={seconds}:size=64x48:rate=25 -f lavfi -i sine=duration={seconds} \
                 -c:v libx264 -preset ultrafast -c:a aac -shortest -f mp4 {name}"
            ),
        );
    }
    for command in [
        "-i a.mp4 -vf setpts=PTS/4 -an -f null -",
        "-i a.mp4 -vf setpts=PTS/4 -f null -",
        "-i a.mp4 -vf setpts=2*PTS -an -f null -",
        "-i a.mp4 -af atempo=2 -vn -f null -",
        "-i a.mp4 -af asetrate=88200 -vn -f null -",
        "-i a.mp4 -vf trim=1:3 -an -f null -",
        "-i a.mp4 -vf trim=start=1,setpts=PTS-STARTPTS -an -f null -",
        "-i a.mp4 -af atrim=0.5:2.5,asetpts=PTS-STARTPTS -vn -f null -",
        "-itsoffset 2 -i a.mp4 -f null -",
        "-itsoffset -1 -i a.mp4 -f null -",
        "-i a.mp4 -i b.mp4 -filter_complex [0:v][1:v]concat=n=2:v=1:a=0[v] -map [v] -f null -",
        "-i a.mp4 -i b.mp4 -filter_complex [0:v][0:a][1:v][1:a]concat=n=2:v=1:a=1[v][a] -map [v] -map [a] -f null -",
        "-i a.mp4 -i b.mp4 -filter_complex [0:v][1:v]overlay=shortest=1[v] -map [v] -f null -",
        "-i a.mp4 -i b.mp4 -filter_complex [1:v]setpts=PTS*3[v] -map [v] -map 0:a -f null -",
    ] {
        let (stderr, out_time) = real_run(dir, command);
        let mut scanner = BannerScanner::new();
        scanner.feed(stderr.as_bytes());
        let expected = ExpectedLength::for_output_with(&Command::parse(command).unwrap(), 0, &scanner.inputs());
        let seconds = expected.seconds.unwrap_or_else(|| panic!("{command}: unknown"));
        assert!((seconds - out_time).abs() <= 0.15, "{command}: expected {seconds} s, ffmpeg ended at {out_time} s");
    }
}

/// Concat lists (issue 8 point 9): the entries' lengths summed, from `duration`, `inpoint` and
/// `outpoint` lines and the listed files' own durations, against real ffmpeg's final
/// `out_time` for the list; the banner alone says `N/A` for lists without `duration` lines.
#[test]
fn concat_list_lengths_match_real_ffmpeg() {
    use ffmpeg_core::duration::concat::parse_concat_list;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (name, seconds) in [("a.mp4", 3), ("b.mp4", 2)] {
        real_run(
            dir,
            &format!(
                "-f lavfi -i testsrc=duration={seconds}:size=64x48:rate=25 -c:v libx264 -preset ultrafast \
                 -g 5 -f mp4 {name}"
            ),
        );
    }
    let probed = |name: &str| match name {
        "a.mp4" => Some(3.0),
        "b.mp4" => Some(2.0),
        _ => None,
    };
    for list in [
        "file a.mp4\nfile 'b.mp4'\n",
        "ffconcat version 1.0\n# a comment\nfile a.mp4\nfile b\\.mp4\ninpoint 1\n",
        "file a.mp4\noutpoint 2\nfile 'b.mp4'\n",
        "file a.mp4\nduration 3\nfile 'b.mp4'\nduration 2\n",
    ] {
        std::fs::write(dir.join("list.txt"), list).unwrap();
        let command = "-f concat -i list.txt -f null -";
        let (stderr, out_time) = real_run(dir, command);
        let entries = parse_concat_list(list);
        let total: f64 = entries.iter().map(|entry| entry.length(probed(&entry.file)).unwrap()).sum();
        let mut scanner = BannerScanner::new();
        scanner.feed(stderr.as_bytes());
        let mut inputs = scanner.inputs();
        if !list.contains("duration") {
            assert_eq!(inputs[0].duration, None, "{list}: the banner says N/A");
        }
        inputs[0].duration = Some(total);
        let expected = ExpectedLength::for_output_with(&Command::parse(command).unwrap(), 0, &inputs);
        let seconds = expected.seconds.unwrap();
        assert!((seconds - out_time).abs() <= 0.15, "{list:?}: expected {seconds} s, ffmpeg ended at {out_time} s");
    }
}

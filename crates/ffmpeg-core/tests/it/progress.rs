//! `ffmpeg_core::progress`: the `-progress` parser, on hand-written cases, on real ffmpeg 5.1
//! output captured in `tests/data/` (see `tests/data/capture.sh`), and on arbitrary bytes.

use ffmpeg_core::progress::{ProgressParser, ProgressState, ProgressUpdate};
use proptest::prelude::*;

/// Real `-progress pipe:1` output of ffmpeg 5.1, by capture name.
pub(crate) const PROGRESS_CAPTURES: &[(&str, &[u8])] = &[
    ("x264", include_bytes!("../data/progress_x264.txt")),
    ("file", include_bytes!("../data/progress_file.txt")),
    ("null", include_bytes!("../data/progress_null.txt")),
    ("two_inputs", include_bytes!("../data/progress_two_inputs.txt")),
    ("audio_copy", include_bytes!("../data/progress_audio_copy.txt")),
    ("copy_negative", include_bytes!("../data/progress_copy_negative.txt")),
];

/// The whole input in one chunk.
pub(crate) fn parse_all(input: &[u8]) -> Vec<ProgressUpdate> {
    ProgressParser::new().feed(input)
}

/// The input cut into chunks of the given sizes (cycled; a size of 0 feeds an empty chunk).
fn parse_chunked(input: &[u8], sizes: &[usize]) -> Vec<ProgressUpdate> {
    let sizes = if sizes.iter().any(|&s| s > 0) { sizes } else { &[1] };
    let mut parser = ProgressParser::new();
    let mut updates = Vec::new();
    let mut rest = input;
    for &size in sizes.iter().cycle() {
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        updates.extend(parser.feed(chunk));
        rest = tail;
        if rest.is_empty() {
            break;
        }
    }
    updates
}

/// Chunk sizes from a small deterministic generator (xorshift), 1 to 40 bytes.
fn pseudo_random_sizes(seed: u64) -> Vec<usize> {
    let mut state = seed | 1;
    (0..97)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 40) as usize + 1
        })
        .collect()
}

/// Parses `input` whole, byte by byte and in pseudo-random chunks; all must give `expected`.
fn check(input: &str, expected: &[ProgressUpdate]) {
    check_bytes(input.as_bytes(), expected);
}

fn check_bytes(input: &[u8], expected: &[ProgressUpdate]) {
    assert_eq!(parse_all(input), expected, "whole input {input:?}");
    assert_eq!(parse_chunked(input, &[1]), expected, "1-byte chunks of {input:?}");
    for seed in 1..8 {
        let sizes = pseudo_random_sizes(seed);
        assert_eq!(parse_chunked(input, &sizes), expected, "chunks {sizes:?} of {input:?}");
    }
}

/// One block: `lines` followed by `progress=continue`.
fn check_block(lines: &str, expected: ProgressUpdate) {
    check(&format!("{lines}progress=continue\n"), &[expected]);
}

fn update() -> ProgressUpdate {
    ProgressUpdate::default()
}

/// An empty update changed by `f` (`ProgressUpdate` is `#[non_exhaustive]`: no struct literals
/// outside the crate).
fn with(f: impl FnOnce(&mut ProgressUpdate)) -> ProgressUpdate {
    let mut update = update();
    f(&mut update);
    update
}

#[test]
fn empty_and_unfinished_input_gives_nothing() {
    check("", &[]);
    check("\n\n\n", &[]);
    check("frame=1\nfps=2.0\n", &[]);
    check("frame=1\nprogress=end", &[]);
}

#[test]
fn frame_and_counters() {
    check_block("frame=50\n", with(|u| u.frame = Some(50)));
    check_block("frame=   75\n", with(|u| u.frame = Some(75)));
    check_block("frame=N/A\n", update());
    check_block("frame=-1\n", update());
    check_block("frame=1.5\n", update());
    check_block("frame=\n", update());
    check_block("frame=99999999999999999999999\n", update());
    check_block("frame=18446744073709551615\n", with(|u| u.frame = Some(u64::MAX)));
    check_block("dup_frames=3\n", with(|u| u.dup_frames = Some(3)));
    check_block("drop_frames=7\n", with(|u| u.drop_frames = Some(7)));
    check_block("drop_frames=N/A\n", update());
}

#[test]
fn fps() {
    check_block("fps=0.00\n", with(|u| u.fps = Some(0.0)));
    check_block("fps=29.97\n", with(|u| u.fps = Some(29.97)));
    check_block("fps= 25\n", with(|u| u.fps = Some(25.0)));
    check_block("fps=N/A\n", update());
    check_block("fps=nan\n", update());
    check_block("fps=inf\n", update());
    check_block("fps=-1.0\n", update());
    check_block("fps=1e999\n", update());
}

#[test]
fn bitrate() {
    let kbits = |v| with(|u| u.bitrate_kbits_per_s = Some(v));
    check_block("bitrate=1250.5kbits/s\n", kbits(1250.5));
    check_block("bitrate= 123.6kbits/s\n", kbits(123.6));
    check_block("bitrate=   0.0kbits/s\n", kbits(0.0));
    check_block("bitrate=3462.9kbits/s\n", kbits(3462.9));
    check_block("bitrate=1.2e+03kbits/s\n", kbits(1200.0));
    check_block("bitrate=12 kbits/s\n", kbits(12.0));
    check_block("bitrate=N/A\n", update());
    check_block("bitrate=123.6\n", update());
    check_block("bitrate=123.6kbits/sec\n", update());
    check_block("bitrate=-5.0kbits/s\n", update());
    check_block("bitrate=infkbits/s\n", update());
}

#[test]
fn total_size() {
    check_block("total_size=29352\n", with(|u| u.total_size_bytes = Some(29352)));
    check_block("total_size=N/A\n", update());
    check_block("total_size=-1\n", update());
    check_block("total_size=1e3\n", update());
}

#[test]
fn speed() {
    let speed = |v| with(|u| u.speed = Some(v));
    check_block("speed=1.5x\n", speed(1.5));
    check_block("speed=   0x\n", speed(0.0));
    check_block("speed=14.1x\n", speed(14.1));
    check_block("speed=1.32e+03x\n", speed(1320.0));
    check_block("speed=3.95e+03x\n", speed(3950.0));
    check_block("speed=1e-05x\n", speed(0.00001));
    check_block("speed=2 x\n", speed(2.0));
    check_block("speed=N/A\n", update());
    check_block("speed= infx\n", update());
    check_block("speed=nanx\n", update());
    check_block("speed=-1x\n", update());
    check_block("speed=1.5\n", update());
    check_block("speed=x\n", update());
}

#[test]
fn out_time_sources_in_order_of_preference() {
    let time = |us| with(|u| u.out_time_us = Some(us));
    check_block("out_time_us=2020136\n", time(2_020_136));
    // out_time_ms holds microseconds too (ffmpeg quirk).
    check_block("out_time_ms=2020136\n", time(2_020_136));
    check_block("out_time=00:00:02.020136\n", time(2_020_136));
    check_block("out_time_us=1\nout_time_ms=2\nout_time=00:00:00.000003\n", time(1));
    check_block("out_time=00:00:00.000003\nout_time_ms=2\nout_time_us=1\n", time(1));
    check_block("out_time_us=N/A\nout_time_ms=2\nout_time=00:00:00.000003\n", time(2));
    check_block("out_time_us=N/A\nout_time_ms=N/A\nout_time=00:00:00.000003\n", time(3));
    check_block("out_time_us=N/A\nout_time_ms=N/A\nout_time=N/A\n", update());
    // An overflowing out_time_us falls back to the next source.
    check_block("out_time_us=9223372036854775808\nout_time=00:00:01.000000\n", time(1_000_000));
}

#[test]
fn out_time_negative_and_huge() {
    let time = |us| with(|u| u.out_time_us = Some(us));
    check_block("out_time_us=-79000\n", time(-79_000));
    check_block("out_time=-00:00:00.079000\n", time(-79_000));
    check_block("out_time=-577014:32:22.775808\n", time(-2_077_252_342_775_808));
    check_block("out_time_us=-9223372036854775808\n", time(i64::MIN));
    check_block("out_time=01:02:03.5\n", time(3_723_500_000));
    check_block("out_time=1:02:03\n", time(3_723_000_000));
    check_block("out_time=00:00:01.1234567\n", time(1_123_456));
    check_block("out_time=99999999999999:00:00.000000\n", update());
    check_block("out_time=00:00\n", update());
    check_block("out_time=00:00:01.0x\n", update());
    check_block("out_time=garbage\n", update());
}

#[test]
fn out_time_seconds_clamps_negative() {
    let at = |us| with(|u| u.out_time_us = us).out_time_seconds();
    assert_eq!(at(Some(2_500_000)), Some(2.5));
    assert_eq!(at(Some(-79_000)), Some(0.0));
    assert_eq!(at(Some(i64::MIN)), Some(0.0));
    assert_eq!(at(None), None);
}

#[test]
fn progress_state() {
    check("progress=continue\n", &[update()]);
    check("progress=end\n", &[with(|u| u.state = ProgressState::End)]);
    check("progress= end \n", &[with(|u| u.state = ProgressState::End)]);
    check("progress=bogus\n", &[update()]);
    check("progress=\n", &[update()]);
}

#[test]
fn unknown_keys_are_kept_trimmed() {
    let other = |pairs: &[(&str, &str)]| {
        with(|u| u.other = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    };
    check_block("stream_0_0_q=28.0\n", other(&[("stream_0_0_q", "28.0")]));
    check_block("stream_0_0_q=-1.0\nstream_1_0_q=0.0\n", other(&[("stream_0_0_q", "-1.0"), ("stream_1_0_q", "0.0")]));
    check_block("  future_key  =  some value  \n", other(&[("future_key", "some value")]));
    check_block("key=a=b\n", other(&[("key", "a=b")]));
    check_block("key=\n", other(&[("key", "")]));
    check_block("key=é ü\n", other(&[("key", "é ü")]));
}

#[test]
fn lines_without_key_are_ignored() {
    check_block("no equals sign\n", update());
    check_block("=value\n", update());
    check_block("   =value\n", update());
    check_block("\n\r\n \n", update());
    check_block("frame\n", update());
}

#[test]
fn crlf_line_endings() {
    check(
        "frame=5\r\nbitrate= 1.0kbits/s\r\nspeed=2x\r\nprogress=end\r\n",
        &[with(|u| {
            u.frame = Some(5);
            u.bitrate_kbits_per_s = Some(1.0);
            u.speed = Some(2.0);
            u.state = ProgressState::End;
        })],
    );
}

#[test]
fn invalid_utf8_is_replaced() {
    check_bytes(b"frame=1\xff\nprogress=continue\n", &[update()]);
    check_bytes(
        b"k\xfe\xff=v\xc3\nframe=2\nprogress=continue\n",
        &[with(|u| {
            u.frame = Some(2);
            u.other = vec![("k\u{fffd}\u{fffd}".to_owned(), "v\u{fffd}".to_owned())];
        })],
    );
}

#[test]
fn blocks_do_not_leak_into_each_other() {
    check(
        "frame=1\nspeed=1x\nq=1\nprogress=continue\nframe=2\nprogress=continue\nprogress=end\n",
        &[
            with(|u| {
                u.frame = Some(1);
                u.speed = Some(1.0);
                u.other = vec![("q".to_owned(), "1".to_owned())];
            }),
            with(|u| u.frame = Some(2)),
            with(|u| u.state = ProgressState::End),
        ],
    );
}

#[test]
fn a_later_value_of_a_key_wins() {
    check_block("frame=1\nframe=2\n", with(|u| u.frame = Some(2)));
    check_block("frame=1\nframe=N/A\n", update());
}

#[test]
fn overlong_line_is_discarded_up_to_its_newline() {
    let mut input = b"frame=1\n".to_vec();
    input.extend_from_slice(b"junk=");
    input.extend(std::iter::repeat_n(b'x', 100_000));
    input.extend_from_slice(b"\nspeed=2x\nprogress=continue\n");
    let expected = [with(|u| {
        u.frame = Some(1);
        u.speed = Some(2.0);
    })];
    assert_eq!(parse_all(&input), expected);
    assert_eq!(parse_chunked(&input, &[1]), expected);
    assert_eq!(parse_chunked(&input, &[4096, 7, 65536]), expected);
}

#[test]
fn a_full_ffmpeg_block() {
    check(
        "frame=50\nfps=0.00\nstream_0_0_q=-1.0\nbitrate= 116.2kbits/s\ntotal_size=29352\n\
         out_time_us=2020136\nout_time_ms=2020136\nout_time=00:00:02.020136\ndup_frames=0\n\
         drop_frames=0\nspeed=14.1x\nprogress=end\n",
        &[with(|u| {
            u.frame = Some(50);
            u.fps = Some(0.0);
            u.bitrate_kbits_per_s = Some(116.2);
            u.total_size_bytes = Some(29352);
            u.out_time_us = Some(2_020_136);
            u.dup_frames = Some(0);
            u.drop_frames = Some(0);
            u.speed = Some(14.1);
            u.state = ProgressState::End;
            u.other = vec![("stream_0_0_q".to_owned(), "-1.0".to_owned())];
        })],
    );
}

#[test]
fn real_captures_snapshot() {
    for (name, bytes) in PROGRESS_CAPTURES {
        insta::assert_debug_snapshot!(format!("capture_{name}"), parse_all(bytes));
    }
}

#[test]
fn real_captures_do_not_depend_on_chunking() {
    for (name, bytes) in PROGRESS_CAPTURES {
        let whole = parse_all(bytes);
        assert!(!whole.is_empty(), "{name}");
        assert_eq!(whole.last().map(|u| u.state), Some(ProgressState::End), "{name}");
        assert_eq!(whole.iter().filter(|u| u.state == ProgressState::End).count(), 1, "{name}");
        assert_eq!(parse_chunked(bytes, &[1]), whole, "{name}: 1-byte chunks");
        for seed in 1..32 {
            assert_eq!(parse_chunked(bytes, &pseudo_random_sizes(seed)), whole, "{name}: {seed}");
        }
        // Also with CRLF line endings.
        let crlf: Vec<u8> = bytes.iter().flat_map(|&b| if b == b'\n' { vec![b'\r', b'\n'] } else { vec![b] }).collect();
        assert_eq!(parse_chunked(&crlf, &pseudo_random_sizes(99)), whole, "{name}: CRLF");
    }
}

#[test]
fn real_captures_have_every_known_key() {
    // The video captures carry every 5.1 key; the parser must type each one.
    for (name, bytes) in PROGRESS_CAPTURES.iter().filter(|(n, _)| *n != "audio_copy") {
        for u in parse_all(bytes) {
            assert!(u.frame.is_some() && u.fps.is_some(), "{name}: {u:?}");
            assert!(u.out_time_us.is_some() && u.dup_frames.is_some(), "{name}: {u:?}");
            assert!(u.other.iter().all(|(k, _)| k.starts_with("stream_")), "{name}: {u:?}");
        }
    }
}

/// Lines that look like ffmpeg's, with values chosen to hit every parse path.
fn ffmpeg_like_input() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("frame"),
        Just("fps"),
        Just("bitrate"),
        Just("total_size"),
        Just("out_time_us"),
        Just("out_time_ms"),
        Just("out_time"),
        Just("dup_frames"),
        Just("drop_frames"),
        Just("speed"),
        Just("progress"),
        Just("stream_0_0_q"),
        Just(""),
    ];
    let value = prop_oneof![
        Just("N/A".to_owned()),
        Just("end".to_owned()),
        Just("continue".to_owned()),
        "-?[0-9]{1,25}",
        " *[0-9]{1,4}\\.[0-9]{1,3}(e[+-][0-9]{2})?(x|kbits/s)?",
        "-?[0-9]{1,7}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}",
        "[ -~]{0,12}",
    ];
    let line = (key, value, prop_oneof![Just("\n"), Just("\r\n")]).prop_map(|(k, v, end)| format!("{k}={v}{end}"));
    prop::collection::vec(line, 0..60).prop_map(|lines| lines.concat())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_chunking_does_not_matter(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        sizes in prop::collection::vec(1usize..64, 1..16),
    ) {
        let whole = parse_all(&bytes);
        prop_assert_eq!(parse_chunked(&bytes, &sizes), whole);
    }

    #[test]
    fn ffmpeg_like_lines_parse_the_same_in_any_chunking(
        input in ffmpeg_like_input(),
        sizes in prop::collection::vec(0usize..32, 1..16),
    ) {
        let whole = parse_all(input.as_bytes());
        let blocks = input.lines().filter(|l| l.starts_with("progress=")).count();
        prop_assert_eq!(whole.len(), blocks);
        for u in &whole {
            for v in [u.fps, u.bitrate_kbits_per_s, u.speed].into_iter().flatten() {
                prop_assert!(v.is_finite() && v >= 0.0);
            }
        }
        prop_assert_eq!(parse_chunked(input.as_bytes(), &sizes), whole);
    }
}

#[cfg(feature = "serde")]
#[test]
fn serializes_with_lowercase_state() {
    let updates = parse_all(include_bytes!("../data/progress_copy_negative.txt"));
    insta::assert_json_snapshot!("serde_copy_negative", updates);
}

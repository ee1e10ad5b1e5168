//! `ffmpeg_core::output_banner` against stderr captured from ffmpeg 5.1 (`tests/data/outputs_*.txt`:
//! several outputs, HLS, image2, stream copy, subtitles, audio layouts, raw video, with and
//! without `[info] ` prefixes), and odd single lines.

use ffmpeg_core::output_banner::{OutputBanner, OutputBannerScanner, channel_count, scan};
use ffmpeg_core::stream::{StreamInfo, StreamKind};
use proptest::prelude::*;

/// (kind, codec, width, height, fps, pixel format, sample rate, channels, bit rate, language)
type Row = (
    &'static str,
    &'static str,
    Option<u32>,
    Option<u32>,
    Option<f64>,
    Option<&'static str>,
    Option<u32>,
    Option<u32>,
    Option<u64>,
    Option<&'static str>,
);

fn row(s: &StreamInfo) -> Row {
    (
        s.kind.as_str(),
        Box::leak(s.codec.clone().unwrap_or_default().into_boxed_str()),
        s.width,
        s.height,
        s.frame_rate,
        s.pixel_format.clone().map(|p| &*Box::leak(p.into_boxed_str())),
        s.sample_rate,
        s.channels,
        s.bit_rate,
        s.language.clone().map(|l| &*Box::leak(l.into_boxed_str())),
    )
}

/// (output index, format, URL, streams)
type Output = (usize, &'static str, &'static str, &'static [Row]);

const CASES: &[(&str, &str, &[Output])] = &[
    (
        "two outputs: copy + subtitles into mp4, png sequence",
        include_str!("../data/outputs_two_outputs.txt"),
        &[
            (
                0,
                "mp4",
                "out5.mp4",
                &[
                    (
                        "video",
                        "h264",
                        Some(320),
                        Some(240),
                        Some(29.97),
                        Some("yuv444p"),
                        None,
                        None,
                        Some(208_000),
                        None,
                    ),
                    ("audio", "aac", None, None, None, None, Some(44100), Some(2), Some(96_000), None),
                    ("subtitle", "mov_text", None, None, None, None, None, None, None, None),
                ],
            ),
            (
                1,
                "image2",
                "t%02d.png",
                &[("video", "png", Some(320), Some(240), Some(2.0), Some("rgb24"), None, None, Some(200_000), None)],
            ),
        ],
    ),
    (
        "hls with a file: URL",
        include_str!("../data/outputs_hls.txt"),
        &[(
            0,
            "hls",
            "file:/data/hls/index.m3u8",
            &[
                ("video", "h264", Some(320), Some(240), Some(29.97), Some("yuv444p"), None, None, None, None),
                ("audio", "aac", None, None, None, None, Some(44100), Some(2), Some(128_000), None),
            ],
        )],
    ),
    (
        "webm without prefixes, a language",
        include_str!("../data/outputs_webm_plain.txt"),
        &[(
            0,
            "webm",
            "o2.webm",
            &[
                ("video", "vp9", Some(320), Some(240), Some(29.97), Some("yuv444p"), None, None, Some(200_000), None),
                ("audio", "opus", None, None, None, None, Some(48000), Some(2), Some(96_000), Some("fre")),
            ],
        )],
    ),
    (
        "audio layouts: 5.1 ac3, 2.1 wav, null",
        include_str!("../data/outputs_audio_layouts.txt"),
        &[
            (
                0,
                "ac3",
                "o6.ac3",
                &[("audio", "ac3", None, None, None, None, Some(44100), Some(6), Some(448_000), None)],
            ),
            (
                1,
                "wav",
                "o7.wav",
                &[("audio", "pcm_s16le", None, None, None, None, Some(44100), Some(3), Some(2_116_000), None)],
            ),
            (
                2,
                "null",
                "pipe:",
                &[("audio", "pcm_s16le", None, None, None, None, Some(44100), Some(1), Some(705_000), None)],
            ),
        ],
    ),
    (
        "raw gray video, a quote in the name",
        include_str!("../data/outputs_rawvideo.txt"),
        &[(
            0,
            "nut",
            "o8 it's.nut",
            &[(
                "video",
                "rawvideo",
                Some(320),
                Some(240),
                Some(25.0),
                Some("gray"),
                None,
                None,
                Some(15_360_000),
                None,
            )],
        )],
    ),
    (
        "stream copy into matroska (fps and tbr)",
        include_str!("../data/outputs_copy_mkv.txt"),
        &[(
            0,
            "matroska",
            "o4.mkv",
            &[
                ("video", "h264", Some(320), Some(240), Some(29.97), Some("yuv444p"), None, None, Some(208_000), None),
                ("audio", "aac", None, None, None, None, Some(44100), Some(2), Some(96_000), None),
            ],
        )],
    ),
];

fn summary(outputs: &[OutputBanner]) -> Vec<(usize, String, String, Vec<Row>)> {
    outputs.iter().map(|o| (o.index, o.format.clone(), o.url.clone(), o.streams.iter().map(row).collect())).collect()
}

#[test]
fn captured_banners_read_into_outputs_and_streams() {
    for (name, log, expected) in CASES {
        let got = summary(&scan(log));
        let want: Vec<_> =
            expected.iter().map(|(i, f, u, rows)| (*i, (*f).to_owned(), (*u).to_owned(), rows.to_vec())).collect();
        assert_eq!(got, want, "{name}");
    }
}

/// The profile each output stream's line shows, per case of [`CASES`]: printed when the
/// stream's parameters carry one (stream copies; ffmpeg's aac encoder), never the codec tag.
#[test]
fn profiles_are_the_parenthesised_name_after_the_codec_not_the_tag() {
    let expected: [&[Option<&str>]; 6] = [
        &[Some("High 4:4:4 Predictive"), Some("LC"), None, None],
        &[None, Some("LC")],
        &[None, None],
        &[None, None, None],
        &[None],
        &[Some("High 4:4:4 Predictive"), Some("LC")],
    ];
    assert_eq!(expected.len(), CASES.len());
    for ((name, log, _), want) in CASES.iter().zip(expected) {
        let got: Vec<Option<String>> = scan(log).iter().flat_map(|o| &o.streams).map(|s| s.profile.clone()).collect();
        let want: Vec<Option<String>> = want.iter().map(|p| p.map(str::to_owned)).collect();
        assert_eq!(got, want, "{name}");
    }
    let one = |line: &str| scan(&format!("Output #0, mp4, to 'a.mp4':\n  Stream #0:0: {line}\n"))[0].streams[0].clone();
    for (line, profile) in [
        ("Video: h264 (Main), yuv420p, 10x10", Some("Main")),
        ("Video: h264 (libx264) (High) (avc1 / 0x31637661), yuv420p, 10x10", Some("High")),
        ("Video: rawvideo (RGB[24] / 0x18424752), rgb24, 10x10", None),
        ("Audio: aac (HE-AACv2 (PS)) (mp4a / 0x6134706D), 48000 Hz, stereo", Some("HE-AACv2 (PS)")),
        ("Audio: aac (LC, 48000 Hz, stereo", None),
        ("Video: h264 (), yuv420p", None),
    ] {
        assert_eq!(one(line).profile.as_deref(), profile, "{line}");
    }
    assert_eq!(one("Data: none (tmcd / 0x64636D74)").kind, StreamKind::Data);
    assert_eq!(one("Attachment: ttf").kind.as_str(), "attachment");
    assert_eq!((one("Unknown: none").kind, one("Unknown: none").codec), (StreamKind::Unknown, None));
    assert!(scan("Output #0, mp4, to 'a.mp4':\n  Stream #0:0: VIDEO: h264\n")[0].streams.is_empty());
}

#[test]
fn chunks_of_any_size_read_the_same() {
    for (name, log, _) in CASES {
        let whole = scan(log);
        for size in [1, 7, 64] {
            let mut scanner = OutputBannerScanner::new();
            for chunk in log.as_bytes().chunks(size) {
                scanner.feed(chunk);
            }
            assert_eq!(scanner.finish(), whole, "{name} in chunks of {size}");
        }
    }
}

#[test]
fn odd_lines() {
    let one = |text: &str| scan(text).into_iter().next();
    // Input sections and the mapping are not outputs; a stream line outside a section is ignored.
    assert!(
        one("Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'a.mp4':\n  Stream #0:0: Video: h264, yuv420p, 10x10\n").is_none()
    );
    let o = one(
        "Output #0, mp4, to 'a.mp4':\n  Stream #0:0 -> #0:0 (copy)\n  Stream #0:0: Video: h264, none, 10x10, 1k fps\n",
    )
    .unwrap();
    assert_eq!(o.streams.len(), 1);
    assert_eq!((o.streams[0].pixel_format.as_deref(), o.streams[0].frame_rate), (None, Some(1000.0)));
    // A stream line numbered for another output is not this output's.
    assert!(one("Output #1, mp4, to 'b.mp4':\n  Stream #0:0: Video: h264\n").unwrap().streams.is_empty());
    // Both log prefixes; `\r` line ends; a data stream; `N channels`; colour details with commas.
    let o = one("[info] [info] Output #3, mov, to 'x y.mov':\r[info]   Stream #3:0[0x1](eng): Video: prores (HQ) (apch / 0x68637061), yuv422p10le(tv, bt709, progressive), 1920x1080, q=2-31, 25 fps, 12800 tbn\r[info]   Stream #3:1: Audio: pcm_s24le, 96000 Hz, 3 channels, s32 (24 bit), 6912 kb/s\r[info]   Stream #3:2: Data: none (tmcd / 0x64636D74)\n").unwrap();
    assert_eq!((o.index, o.url.as_str()), (3, "x y.mov"));
    assert_eq!(o.streams[0].pixel_format.as_deref(), Some("yuv422p10le"));
    assert_eq!((o.streams[0].width, o.streams[0].language.as_deref()), (Some(1920), Some("eng")));
    assert_eq!((o.streams[1].channels, o.streams[1].channel_layout.as_deref()), (Some(3), Some("3 channels")));
    assert_eq!((o.streams[2].kind, o.streams[2].codec.as_deref()), (StreamKind::Data, None));
    assert_eq!((o.streams[0].profile.as_deref(), o.streams[2].profile.as_deref()), (Some("HQ"), None));
    // Metadata lines between streams are skipped; a later top-level line ends the section.
    let all = scan(
        "Output #0, mp4, to 'a.mp4':\n  Metadata:\n    title : Stream #0:9: Video: h264\n  Stream #0:0: Audio: aac, 8000 Hz, mono\nframe=1\n  Stream #0:1: Audio: aac\n",
    );
    assert_eq!(all[0].streams.len(), 1);
    // Not an output line.
    for text in ["Output #x, mp4, to 'a':", "Output #0, mp4, to 'a'", "Output #0 mp4", "Output #"] {
        assert!(scan(text).is_empty(), "{text}");
    }
    assert_eq!(
        (channel_count("5.1(side)"), channel_count("7.1(wide)"), channel_count("ambisonic 1")),
        (Some(6), Some(8), None)
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut scanner = OutputBannerScanner::new();
        scanner.feed(b"Output #0, mp4, to 'a.mp4':\n  Stream #0:0: ");
        scanner.feed(&bytes);
        let _ = scanner.finish();
    }
}

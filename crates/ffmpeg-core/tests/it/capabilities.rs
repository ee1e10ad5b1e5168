//! `ffmpeg_core::capabilities`: the names read from Debian 12's ffmpeg 5.1.9
//! (`tests/data/capabilities`, captured and trimmed by `capture.sh` there), and real-world and
//! misspelt commands checked against them (`check`).
//!
//! Every command of `real_world_commands_pass` ran successfully with that ffmpeg (on 1 s
//! inputs generated from lavfi sources), and every command of
//! `unknown_names_fail_with_a_suggestion` failed there with the matching message
//! ("Unrecognized option 'crff'", "Unknown encoder 'libx265x'", "No such filter: 'scal'", ...).

use std::sync::LazyLock;

use ffmpeg_core::capabilities::{Capabilities, CapabilityOutputs, NameKind, UnknownName};
use ffmpeg_core::command::Command;

macro_rules! data {
    ($file:literal) => {
        include_str!(concat!("../data/capabilities/", $file))
    };
}

static CAPS: LazyLock<Capabilities> = LazyLock::new(|| {
    Capabilities::from_outputs(CapabilityOutputs {
        help_full: data!("help_full.txt"),
        muxers: data!("muxers.txt"),
        demuxers: data!("demuxers.txt"),
        encoders: data!("encoders.txt"),
        decoders: data!("decoders.txt"),
        filters: data!("filters.txt"),
        version: data!("version.txt"),
    })
});

/// `ok`, or the first unknown name's message.
#[track_caller]
fn check(line: &str, expected: &str) {
    let command = Command::parse(line).unwrap();
    let got = match CAPS.check(&command) {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.to_string(),
    };
    assert_eq!(got, expected, "checking {line:?}");
}

#[test]
fn real_world_commands_pass() {
    for line in [
        // x264 / x265 with their private options and rate control.
        "-i in.mp4 -c:v libx264 -preset veryfast -crf 23 -tune film -profile:v high -level 4.1 -pix_fmt yuv420p -c:a aac -b:a 128k -movflags +faststart out.mp4",
        "-i in.mp4 -c:v libx264 -x264-params keyint=48:min-keyint=48:scenecut=0 -b:v 2500k -maxrate 2675k -bufsize 3750k out.mp4",
        "-i in.mp4 -c:v libx265 -crf 28 -preset medium -x265-params log-level=error -tag:v hvc1 -c:a copy out.mp4",
        "-i in.mp4 -c:v h264 -g 48 -keyint_min 48 -sc_threshold 0 -bf 2 -refs 3 -pix_fmt yuv420p out.mp4",
        "-y -hide_banner -nostdin -loglevel error -i in.mp4 -vf scale=1280:-2 -c:v libx264 -crf 20 -c:a copy out.mkv",
        // HLS, DASH and segment packaging.
        "-i in.mp4 -c:v libx264 -c:a aac -f hls -hls_time 6 -hls_playlist_type vod -hls_list_size 0 -hls_flags independent_segments -hls_segment_filename hls/seg_%03d.ts hls/index.m3u8",
        "-i in.mp4 -map 0:v -map 0:a -c copy -f hls -hls_segment_type fmp4 -master_pl_name master.m3u8 -var_stream_map v:0,a:0 out_%v.m3u8",
        "-i in.mp4 -c copy -f dash -seg_duration 4 -use_template 1 -adaptation_sets 'id=0,streams=v id=1,streams=a' out.mpd",
        "-i in.mp4 -c copy -map 0 -f segment -segment_time 10 -reset_timestamps 1 -segment_format mp4 seg%03d.mp4",
        // Thumbnails, GIFs, images.
        "-ss 00:00:05 -i in.mp4 -frames:v 1 -q:v 2 thumb.jpg",
        "-i in.mp4 -vf fps=1,scale=320:-1 -update 1 thumb.png",
        "-i in.mp4 -vf 'fps=10,scale=320:-1:flags=lanczos,split[s0][s1];[s0]palettegen[p];[s1][p]paletteuse' -loop 0 out.gif",
        "-framerate 25 -pattern_type glob -i 'img/*.png' -c:v libx264 -pix_fmt yuv420p out.mp4",
        "-loop 1 -i cover.jpg -i audio.mp3 -c:v libx264 -tune stillimage -c:a copy -shortest out.mp4",
        // Audio.
        "-i in.mp4 -vn -c:a libmp3lame -q:a 2 -id3v2_version 3 -write_xing 0 out.mp3",
        "-i in.wav -ar 48000 -ac 2 -c:a libopus -b:a 96k -vbr on -application audio -compression_level 10 out.opus",
        "-i in.mp4 -af loudnorm=I=-16:TP=-1.5:LRA=11:print_format=json -f null -",
        "-i in.mp4 -filter_complex '[0:a]volume=0.5,aresample=48000[a]' -map '[a]' -c:a aac out.m4a",
        // VP9, AV1, ProRes.
        "-i in.mp4 -c:v libvpx-vp9 -b:v 0 -crf 31 -deadline good -cpu-used 2 -row-mt 1 -c:a libopus out.webm",
        "-i in.mp4 -c:v libsvtav1 -preset 8 -crf 35 -svtav1-params tune=0 out.mkv",
        "-i in.mov -c:v prores_ks -profile:v 3 -vendor apl0 -c:a pcm_s16le out.mov",
        // Overlays, metadata, mapping, timing.
        "-i in.mp4 -i logo.png -filter_complex '[0:v][1:v]overlay=W-w-10:H-h-10' -c:a copy out.mp4",
        "-i in.mp4 -map 0 -map_metadata -1 -metadata title=Demo -metadata:s:a:0 language=eng -disposition:a:0 default -c copy out.mkv",
        "-fflags +genpts -analyzeduration 10M -probesize 10M -i in.ts -avoid_negative_ts make_zero -c copy out.mp4",
        "-i in.mp4 -ss 10 -t 5 -c:v libx264 -threads 2 -strict experimental -sws_flags bicubic -s 640x360 out.mp4",
        "-i in.mp4 -vsync cfr -r 30 -async 1 -map 0:v:0 -map 0:a:0? out.mp4",
        // Inputs: lavfi sources, forced demuxers and decoders.
        "-f lavfi -i testsrc -t 1 -f null -",
        "-f lavfi -i testsrc=duration=2:size=160x120:rate=25 -f lavfi -i sine=duration=2 -c:v libx264 -c:a aac out.mp4",
        "-f mp4 -i in.m4v -f m4a -i in.audio -c copy out.mkv",
        "-c:v h264 -i in.mp4 -c:v libdav1d -i in.ivf -f matroska out.mkv",
        "-f image2 -framerate 10 -start_number 5 -i img%03d.png out.mp4",
        "-f rawvideo -video_size 320x240 -pix_fmt rgb24 -i in.raw out.mp4",
        // The less common forms: `-no` booleans, `v`/`s`-prefixed AVCodecContext options, an
        // SWResampler option, `-vcodec`, a named filter instance, `-filter:v`.
        "-noautorotate -noaccurate_seek -i in.mp4 -vb 1M -sflags +bitexact -in_sample_rate 44100 -vcodec mpeg4 -acodec mp2 out.avi",
        "-i in.mp4 -filter:v 'scale@main=640:-2' -c:a copy -f null -",
    ] {
        check(line, "ok");
    }
}

#[test]
fn unknown_names_fail_with_a_suggestion() {
    for (line, expected) in [
        ("-i in.mp4 -crff 23 out.mp4", "argument 3 `-crff`: unknown option `crff`; did you mean `-crf`?"),
        (
            "-i in.mp4 -c:v libx264 -presett fast out.mp4",
            "argument 5 `-presett`: unknown option `presett`; did you mean `-preset`?",
        ),
        (
            "-i in.mp4 -c:v libx265x out.mp4",
            "argument 4 `libx265x`: unknown encoder `libx265x`; did you mean `libx265`?",
        ),
        ("-i in.mp4 -c:a aacc out.mp4", "argument 4 `aacc`: unknown encoder `aacc`; did you mean `aac`?"),
        ("-i in.mp4 -f mp5 out.mp4", "argument 4 `mp5`: unknown muxer `mp5`; did you mean `mp4`?"),
        ("-i in.mp4 -vf scal=1:1 out.mp4", "argument 4 `scal=1:1`: unknown filter `scal`; did you mean `scale`?"),
        ("-i in.mp4 -qwertyuiop 1 out.mp4", "argument 3 `-qwertyuiop`: unknown option `qwertyuiop`"),
        // Stream specifiers stay in the argument, not in the name.
        (
            "-i in.mp4 -movflag:v +faststart out.mp4",
            "argument 3 `-movflag:v`: unknown option `movflag`; did you mean `-movflags`?",
        ),
        (
            "-i in.mp4 -f hls -hls_segment_filenam seg_%03d.ts out.m3u8",
            "argument 5 `-hls_segment_filenam`: unknown option `hls_segment_filenam`; did you mean `-hls_segment_filename`?",
        ),
        (
            "-i in.mp4 -x264params keyint=48 out.mp4",
            "argument 3 `-x264params`: unknown option `x264params`; did you mean `-x264-params`?",
        ),
        // Case matters to ffmpeg, not to the suggestion.
        ("-i in.mp4 -c:v LIBX264 out.mp4", "argument 4 `LIBX264`: unknown encoder `LIBX264`; did you mean `libx264`?"),
        // Global options and filter_complex graphs, several filters deep.
        (
            "-y -lavfi '[0:v]split[a][b];[a]hflip[l];[b]vflipp[r];[l][r]hstack' -i in.mp4 out.mp4",
            "argument 3 `[0:v]split[a][b];[a]hflip[l];[b]vflipp[r];[l][r]hstack`: unknown filter `vflipp`; did you mean `vflip`?",
        ),
        // Inputs: demuxers, decoders and lavfi graphs.
        (
            "-f lavfi -i testsrcc=d=1 out.mp4",
            "argument 4 `testsrcc=d=1`: unknown filter `testsrcc`; did you mean `testsrc`?",
        ),
        ("-f movv -i in.mov out.mp4", "argument 2 `movv`: unknown demuxer `movv`; did you mean `mov`?"),
        (
            "-c:v libdav1dd -i in.ivf out.mp4",
            "argument 2 `libdav1dd`: unknown decoder `libdav1dd`; did you mean `libdav1d`?",
        ),
        // ffmpeg 5.1.9: "Unknown decoder 'copy'".
        ("-c copy -i in.mp4 out.mp4", "argument 2 `copy`: unknown decoder `copy`"),
        // ffmpeg 5.1.9: a muxer is not a demuxer and an encoder is not a decoder.
        ("-f segment -i in.m3u8 out.mp4", "argument 2 `segment`: unknown demuxer `segment`"),
        ("-i in.mp4 -f mpegts2 out.ts", "argument 4 `mpegts2`: unknown muxer `mpegts2`; did you mean `mpegts`?"),
        ("-c:v libx264 -i in.mp4 out.mp4", "argument 2 `libx264`: unknown decoder `libx264`"),
        // ffmpeg 5.1.9 "Option not found": a filter's option (`acompressor`), a bitstream
        // filter's option (`h264_metadata`), a codec-private option with a `v` prefix (only
        // AVCodecContext options take one), a `no` form of an AVOption (only ffmpeg's own
        // booleans have one), a named constant of an enum option.
        ("-i in.mp4 -makeup 2 out.mp4", "argument 3 `-makeup`: unknown option `makeup`"),
        ("-i in.mp4 -sei_user_data x out.mp4", "argument 3 `-sei_user_data`: unknown option `sei_user_data`"),
        ("-i in.mp4 -vcrf 23 out.mp4", "argument 3 `-vcrf`: unknown option `vcrf`; did you mean `-crf`?"),
        ("-i in.mp4 -nofaststart 1 out.mp4", "argument 3 `-nofaststart`: unknown option `nofaststart`"),
        ("-i in.mp4 -unaligned 1 out.mp4", "argument 3 `-unaligned`: unknown option `unaligned`"),
    ] {
        check(line, expected);
    }
}

#[test]
fn every_unknown_name_in_position_order() {
    let command = Command::parse(
        "-f lavfi -i 'testsrc,hfilp' -c:v libx264 -crff 23 -vf 'scale=2:2,fromat=gray' -f mp5 out.mp4 -c:a acc out2.m4a",
    )
    .unwrap();
    let unknown = CAPS.unknown_names(&command);
    let summary: Vec<(usize, NameKind, &str, Option<&str>)> =
        unknown.iter().map(|u| (u.position, u.kind, u.name.as_str(), u.suggestion.as_deref())).collect();
    assert_eq!(
        summary,
        [
            (4, NameKind::Filter, "hfilp", Some("hflip")),
            (7, NameKind::Option, "crff", Some("crf")),
            (10, NameKind::Filter, "fromat", Some("format")),
            (12, NameKind::Muxer, "mp5", Some("mp4")),
            (15, NameKind::Encoder, "acc", Some("aac")),
        ]
    );
    assert_eq!(unknown[0].argument, "testsrc,hfilp");
    assert_eq!(CAPS.check(&command), Err(unknown[0].clone()));
}

/// Suggestions cost a distance computation per candidate: a huge name skips them (no candidate
/// is within reach of its length) and only the first 16 unknown names get one.
#[test]
fn hostile_commands_stay_cheap() {
    let long = format!("-i in.mp4 -{} 1 out.mp4", "a".repeat(100_000));
    let err = CAPS.check(&Command::parse(&long).unwrap()).unwrap_err();
    assert_eq!((err.position, err.suggestion), (3, None));

    let many = "-x264-param 1 ".repeat(5000);
    let command = Command::parse(&format!("-i in.mp4 {many}out.mp4")).unwrap();
    let unknown = CAPS.unknown_names(&command);
    assert_eq!(unknown.len(), 5000);
    assert!(unknown[..16].iter().all(|u| u.suggestion.as_deref() == Some("x264-params")));
    assert!(unknown[16..].iter().all(|u| u.suggestion.is_none()));
}

#[test]
fn graphs_that_do_not_parse_are_left_to_the_filter_graph_check() {
    check("-i in.mp4 -vf 'scale=1:1[' out.mp4", "ok");
}

#[test]
fn names_read_from_each_output() {
    let caps = &*CAPS;
    assert_eq!(caps.version(), Some("5.1.9-0+deb12u1"));
    assert!(!caps.is_empty());
    let knows = |kind, names: &[&str]| {
        for name in names {
            assert!(caps.knows(kind, name), "{kind} {name}");
        }
    };
    let unknown = |kind, names: &[&str]| {
        for name in names {
            assert!(!caps.knows(kind, name), "{kind} {name}");
        }
    };
    // Own options (the top of -h full), AVCodecContext, a codec's, AVFormatContext, a
    // muxer's, a demuxer's, a protocol's, SWScaler, SWResampler.
    knows(
        NameKind::Option,
        &[
            "map",
            "filter_complex",
            "nostdin",
            "b",
            "g",
            "flags",
            "crf",
            "x264-params",
            "fflags",
            "movflags",
            "hls_time",
            "framerate",
            "protocol_whitelist",
            "sws_flags",
            "in_sample_rate",
            "vb",
            "ab",
            "sflags",
        ],
    );
    // Filter and bitstream-filter options, named constants, words from descriptions.
    unknown(
        NameKind::Option,
        &["makeup", "sei_user_data", "crop_left", "td", "level_in", "unaligned", "faststart", "set", "vcrf"],
    );
    knows(NameKind::Encoder, &["libx264", "h264", "aac", "libopus", "opus", "copy", "mov_text"]);
    unknown(NameKind::Encoder, &["h264_cuvid", "libdav1d", "x264"]);
    knows(NameKind::Decoder, &["h264", "libdav1d", "av1", "hevc", "aac"]);
    unknown(NameKind::Decoder, &["copy", "libx264"]);
    knows(NameKind::Muxer, &["mp4", "mov", "matroska", "webm", "hls", "dash", "segment", "null", "image2"]);
    unknown(NameKind::Muxer, &["lavfi", "mkv", "matroska,webm"]);
    knows(NameKind::Demuxer, &["mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "lavfi", "concat", "hls"]);
    unknown(NameKind::Demuxer, &["mov,mp4,m4a,3gp,3g2,mj2", "segment", "null"]);
    knows(NameKind::Filter, &["scale", "overlay", "loudnorm", "testsrc", "anullsrc", "abench"]);
    unknown(NameKind::Filter, &["T..", "A", "|", "Filters:"]);

    // Counts from the captures, as counted by awk on the files: options 183 own + 1175
    // AVOptions, 15 in both; codec names with their `(codec NAME)`; muxers and demuxers with
    // each comma-separated name.
    let count = |kind| caps.names(kind).count();
    assert_eq!(count(NameKind::Option), 1343);
    assert_eq!(count(NameKind::Encoder), 243);
    assert_eq!(count(NameKind::Decoder), 556);
    assert_eq!(count(NameKind::Muxer), 186);
    assert_eq!(count(NameKind::Demuxer), 358);
    assert_eq!(count(NameKind::Filter), 527);
    assert_eq!(format!("{caps:?}").lines().count(), 1, "Debug prints counts, not thousands of names");
}

#[test]
fn empty_outputs_check_nothing() {
    let caps = Capabilities::default();
    assert!(caps.is_empty());
    assert_eq!(caps.version(), None);
    let command = Command::parse("-f mp5 -i x -crff 1 -vf scal -c:v libx265x out.mp4").unwrap();
    assert_eq!(caps.check(&command), Ok(()));

    // Only filters read: only filters checked.
    let caps =
        Capabilities::from_outputs(CapabilityOutputs { filters: data!("filters.txt"), ..CapabilityOutputs::default() });
    assert!(!caps.is_empty());
    let err: UnknownName = caps.check(&command).unwrap_err();
    assert_eq!((err.position, err.kind, err.name.as_str()), (8, NameKind::Filter, "scal"));
}

/// The tables of ffmpeg versions after 5.1, written from their format strings in
/// `fftools/opt_common.c` (not captured here): `-muxers`/`-demuxers` with a third, device,
/// flag column (`show_formats_devices()`), and `-filters` with a `------` line under the legend
/// and two flag characters per row (`show_filters()`).
#[test]
fn later_table_layouts() {
    let caps = Capabilities::from_outputs(CapabilityOutputs {
        demuxers: "Formats:\n D.. = Demuxing supported\n .E. = Muxing supported\n ..d = Is a device\n ---\n D d lavfi           Libavfilter virtual input device\n D   mov,mp4,m4a,3gp,3g2,mj2 QuickTime / MOV\n",
        muxers: "Formats:\n D.. = Demuxing supported\n .E. = Muxing supported\n ..d = Is a device\n ---\n  E  mp4             MP4 (MPEG-4 Part 14)\n DE  wav             WAV / WAVE (Waveform Audio)\n",
        filters: "Filters:\n  T.. = Timeline support\n  .S. = Slice threading\n  A = Audio input/output\n  | = Source or sink filter\n  ------\n TS scale             V->V       Scale the input video size and/or convert the image format.\n .. nullsrc           |->V       Null video source, return unprocessed video frames.\n",
        ..CapabilityOutputs::default()
    });
    let names = |kind| caps.names(kind).collect::<Vec<_>>();
    assert_eq!(names(NameKind::Demuxer), ["3g2", "3gp", "lavfi", "m4a", "mj2", "mov", "mp4", "wav"]);
    assert_eq!(names(NameKind::Muxer), ["mp4", "wav"]);
    assert_eq!(names(NameKind::Filter), ["nullsrc", "scale"]);
}

#[test]
fn suggestions_stay_within_their_kind() {
    assert_eq!(CAPS.suggestion(NameKind::Muxer, "matroska2"), Some("matroska"));
    assert_eq!(CAPS.suggestion(NameKind::Demuxer, "matroska2"), Some("matroska"));
    assert_eq!(CAPS.suggestion(NameKind::Encoder, "libx26"), Some("libx264"));
    assert_eq!(CAPS.suggestion(NameKind::Filter, "xyzzy"), None);
    assert_eq!(CAPS.suggestion(NameKind::Option, "q"), None);
    assert_eq!(CAPS.suggestion(NameKind::Option, "Y"), Some("y"));
}

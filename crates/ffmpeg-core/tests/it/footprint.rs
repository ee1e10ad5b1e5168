//! `ffmpeg_core::footprint` and `pattern::may_overlap`: which files a command may write, which
//! commands conflict, and (proptest) that the overlap test never misses a shared name.

use std::path::Path;

use ffmpeg_core::command::Command;
use ffmpeg_core::footprint::{Claim, Footprint};
use ffmpeg_core::pattern;
use ffmpeg_core::sandbox::Sandbox;
use proptest::prelude::*;

fn footprint(sandbox: &Sandbox, command: &str) -> Footprint {
    let parsed = Command::parse(command).unwrap();
    Footprint::of(&sandbox.resolve_command(&parsed).unwrap())
}

/// `command` may write `path` with `claim` (`None`: may not write it).
fn check_claim(command: &str, cases: &[(&str, Option<Claim>)]) {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let fp = footprint(&sandbox, command);
    for (path, expected) in cases {
        assert_eq!(fp.claim_on(Path::new(path)), *expected, "{command}: {path}\n{fp:#?}");
    }
}

#[test]
fn pass_logs_are_the_real_derived_names_only() {
    let derived = Some(Claim::Derived);
    check_claim(
        "-i a.mp4 -c:v libx264 -pass 1 -passlogfile logs/x -f null -",
        &[
            ("logs/x-0.log", derived),
            ("logs/x-12.log", derived),
            ("logs/x-0.log.mbtree", derived),
            ("logs/x-0.log.temp", derived),
            ("logs/x-0.log.mbtree.temp", derived),
            // The bug of issue 12: a prefix claimed everything that began with it.
            ("logs/x2.mp4", None),
            ("logs/x-notes.txt", None),
            ("logs/x.log", None),
            ("logs/x-0.logx", None),
            ("x-0.log", None),
            ("a.mp4", None),
        ],
    );
    // The prefix is literal in ffmpeg (`"%s-%d.log"`): a `%` in it is not a pattern.
    check_claim("-i a.mp4 -pass 1 -passlogfile p%d -f null -", &[("p%d-0.log", derived), ("p1-0.log", None)]);
}

#[test]
fn outputs_and_muxer_names() {
    let (named, derived) = (Some(Claim::Named), Some(Claim::Derived));
    check_claim(
        "-i a.mp4 out/b.mp4",
        &[("out/b.mp4", named), ("out/b.mp4.tmp", derived), ("out/b2.mp4", None), ("b.mp4", None)],
    );
    check_claim(
        "-i a.mp4 -vf fps=1 thumbs/t%03d.png",
        &[("thumbs/t001.png", named), ("thumbs/t1234.png", named), ("thumbs/t%03d.png", named), ("thumbs/t.png", None)],
    );
    check_claim(
        "-i a.mp4 -f hls -hls_time 1 hls/index.m3u8",
        &[
            ("hls/index.m3u8", named),
            ("hls/index.m3u8.tmp", derived),
            ("hls/index0.ts", derived),
            ("hls/index17.m4s", derived),
            ("hls/index0.ts.tmp", derived),
            ("hls/index.ts", derived),
            ("hls/index-20240101120000.ts", derived),
            ("hls/index_vtt.m3u8", derived),
            ("hls/init.mp4", derived),
            ("hls/init_1.mp4", derived),
            ("hls/index.m3u8.key", derived),
            ("hls/upload.txt", None),
            ("hls/other0.ts", None),
            ("index0.ts", None),
        ],
    );
    check_claim(
        "-i a.mp4 -f hls -hls_segment_filename hls/s_%03d.ts hls/top.m3u8",
        &[("hls/s_001.ts", named), ("hls/s_001.ts.tmp", derived), ("hls/s_.ts", None), ("hls/victim.mp4", None)],
    );
    // Tester H1: with `single_file` the HLS muxer writes the segment name literally, and the
    // DASH muxer expands only `$...$` templates in `single_file_name`: the literal name is
    // named by the command, like an output (a second run that rewrites it lists it too).
    for flags in ["single_file", "delete_segments+single_file", "+single_file", "single_file+temp_file"] {
        check_claim(
            &format!("-i a.mp4 -f hls -hls_segment_filename hls/h_%03d.ts -hls_flags {flags} hls/one.m3u8"),
            &[("hls/h_%03d.ts", named), ("hls/h_001.ts", named), ("hls/h_%03d.txt", None)],
        );
    }
    // Without `single_file` the muxer numbers the names: the literal name is only derived.
    for flags in ["delete_segments", "single_file-single_file", "+single_file-single_file"] {
        check_claim(
            &format!("-i a.mp4 -f hls -hls_segment_filename hls/h_%03d.ts -hls_flags {flags} hls/one.m3u8"),
            &[("hls/h_%03d.ts", derived), ("hls/h_001.ts", named)],
        );
    }
    check_claim(
        "-i a.mp4 -f hls -hls_segment_filename hls/h_%03d.ts hls/one.m3u8",
        &[("hls/h_%03d.ts", derived), ("hls/h_001.ts", named)],
    );
    check_claim(
        "-i a.mp4 -f dash -single_file 1 -single_file_name seg%d.mp4 dash/m.mpd",
        &[("dash/seg%d.mp4", named), ("dash/seg1.mp4", named)],
    );
    // `single_file_name` alone turns `single_file` on (`dash_init()`).
    check_claim("-i a.mp4 -f dash -single_file_name seg%d.mp4 dash/m.mpd", &[("dash/seg%d.mp4", named)]);
    check_claim(
        "-i a.mp4 -f dash dash/manifest.mpd",
        &[
            ("dash/manifest.mpd", named),
            ("dash/manifest.mpd.tmp", derived),
            ("dash/chunk-stream0-00001.m4s", derived),
            ("dash/init-stream1.m4s", derived),
            ("dash/manifest-stream0.mp4", derived),
            ("dash/media_0.m3u8", derived),
            ("dash/notes.txt", None),
        ],
    );
    check_claim(
        "-i a.mp4 -f segment -segment_time 1 -segment_list seg/list.csv seg/out%03d.ts",
        &[
            ("seg/out000.ts", named),
            ("seg/list.csv", named),
            ("seg/list.csv.tmp", derived),
            ("seg/out.ts", None),
            ("seg/list.txt", None),
        ],
    );
    check_claim("-i a.mp4 -vf psnr=stats_file=q/psnr.log q/o.mp4", &[("q/psnr.log", named), ("q/psnr.log2", None)]);
    check_claim("-i a.mp4 -f null -", &[("a.mp4", None), ("-", None)]);
}

#[test]
fn conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let cases = [
        // Same output, or one's output is the other's input.
        ("-i a.mp4 o.mp4", "-i b.mp4 o.mp4", true),
        ("-i a.mp4 o.mp4", "-i o.mp4 p.mp4", true),
        ("-i a.mp4 o.mp4", "-i a.mp4 p.mp4", false),
        ("-i a.mp4 o.mp4", "-i b.mp4 sub/o.mp4", false),
        // Patterns that can name one file.
        ("-i a.mp4 t%03d.png", "-i b.mp4 t5.png", true),
        ("-i a.mp4 t%03d.png", "-i b.mp4 t%d.png", true),
        ("-i a.mp4 t%03d.png", "-i b.mp4 t%03d.jpg", false),
        ("-i a.mp4 t%03d.png", "-i tx.png b.mp4", false),
        // A pass-log prefix and a file of the same prefix (issue 12's example).
        ("-i a.mp4 -pass 1 -passlogfile logs/x -f null -", "-i b.mp4 logs/x2.mp4", false),
        ("-i a.mp4 -pass 1 -passlogfile logs/x -f null -", "-i b.mp4 -pass 2 -passlogfile logs/x c.mp4", true),
        ("-i a.mp4 -pass 1 -passlogfile logs/x -f null -", "-i b.mp4 -pass 1 -passlogfile logs/y -f null -", false),
        // HLS sets.
        ("-i a.mp4 -f hls h/index.m3u8", "-i b.mp4 -f hls h/index.m3u8", true),
        ("-i a.mp4 -f hls h/index.m3u8", "-i b.mp4 h/index3.ts", true),
        ("-i a.mp4 -f hls h/index.m3u8", "-i b.mp4 h/other.mp4", false),
        ("-i a.mp4 -f hls h/a.m3u8", "-i b.mp4 -f hls h/b.m3u8", true), // both may write init.mp4
        ("-i a.mp4 -f hls h/a.m3u8", "-i b.mp4 -f hls g/b.m3u8", false),
        // A pattern directory may be any directory.
        ("-i a.mp4 -f hls -var_stream_map v:0 h/%v/i.m3u8", "-i b.mp4 h/0/i.m3u8", true),
        // A directory read whole.
        ("-i a.mp4 -vf subtitles=s.ass:fontsdir=fonts o.mp4", "-i b.mp4 fonts/x/f.ttf", true),
        ("-i a.mp4 -vf subtitles=s.ass:fontsdir=fonts o.mp4", "-i b.mp4 fontsx.ttf", false),
        // Temporary names: `o.mp4.tmp` of one is not the other's `o.mp4`.
        ("-i a.mp4 o.mp4", "-i b.mp4 o.mp4.tmp", true),
        // A file where the other writes a directory (tester H6): run together, both would pass
        // the storage's check before either wrote, and a bucket would keep both.
        ("-i a.mp4 -f mp4 race/a", "-i b.mp4 race/a/x.mp4", true),
        ("-i a.mp4 -f mp4 race/a", "-i b.mp4 race/a/b/x.mp4", true),
        ("-i a.mp4 -f mp4 race/a", "-i b.mp4 race/ab/x.mp4", false),
        ("-i a.mp4 -f mp4 race/a", "-i b.mp4 race/x.mp4", false),
        ("-i a.mp4 -f mp4 a", "-i b.mp4 -f mp4 race/a", false),
        // ... a numbered file, a segment, a pass log, a `.tmp` twin, a variant directory.
        ("-i a.mp4 -f image2 t%03d", "-i b.mp4 t007/x.mp4", true),
        ("-i a.mp4 -f image2 t%03d", "-i b.mp4 tx/x.mp4", false),
        ("-i a.mp4 -f hls h/i.m3u8", "-i b.mp4 h/i0.ts/x.mp4", true),
        ("-i a.mp4 -f segment -segment_list l/s.m3u8 l/s%d.ts", "-i b.mp4 -f mp4 l", true),
        ("-i a.mp4 -pass 1 -passlogfile logs/x -f null -", "-i b.mp4 logs/x-0.log/y.mp4", true),
        ("-i a.mp4 -pass 1 -passlogfile logs/x -f null -", "-i b.mp4 -f mp4 logs", true),
        ("-i a.mp4 o.mp4", "-i b.mp4 o.mp4.tmp/x.mp4", true),
        ("-i a.mp4 -f hls -var_stream_map v:0 h/%v/i.m3u8", "-i b.mp4 -f mp4 h/0", true),
        ("-i a.mp4 -f hls -var_stream_map v:0 h/%v/i.m3u8", "-i b.mp4 -f mp4 g/0", false),
        ("-i a.mp4 -strftime 1 -f image2 s/%Y/x.jpg", "-i b.mp4 -f mp4 s/2026", true),
        // Reading below a file another job writes: the read fails, nothing is left inconsistent.
        ("-i race/a/x.mp4 o.mp4", "-i b.mp4 -f mp4 race/a", false),
    ];
    for (a, b, expected) in cases {
        let (fa, fb) = (footprint(&sandbox, a), footprint(&sandbox, b));
        assert_eq!(fa.conflicts_with(&fb), expected, "{a} | {b}");
        assert_eq!(fb.conflicts_with(&fa), expected, "symmetric: {b} | {a}");
    }
}

/// What `conflict_with` names (J3: a queued job's `waiting_reason`): the other command's file
/// set, as a path, and whether the other command writes it; the same verdict as
/// `conflicts_with`.
#[test]
fn a_conflict_names_the_other_commands_file() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let cases = [
        // (this command, the other, the other's set, written by the other)
        ("-i a.mp4 o.mp4", "-i b.mp4 o.mp4", Some(("o.mp4", true))),
        ("-i o.mp4 p.mp4", "-i b.mp4 o.mp4", Some(("o.mp4", true))),
        ("-i b.mp4 o.mp4", "-i o.mp4 p.mp4", Some(("o.mp4", false))),
        ("-i a.mp4 t5.png", "-i b.mp4 t%03d.png", Some(("t%03d.png", true))),
        ("-i a.mp4 -f mp4 race/a", "-i b.mp4 race/a/x.mp4", Some(("race/a/x.mp4", true))),
        ("-i b.mp4 race/a/x.mp4", "-i a.mp4 -f mp4 race/a", Some(("race/a", true))),
        ("-i b.mp4 fonts/x/f.ttf", "-i a.mp4 -vf subtitles=s.ass:fontsdir=fonts o.mp4", Some(("fonts/", false))),
        ("-i a.mp4 o.mp4", "-i a.mp4 p.mp4", None),
    ];
    for (mine, theirs, expected) in cases {
        let (a, b) = (footprint(&sandbox, mine), footprint(&sandbox, theirs));
        let found = a.conflict_with(&b).map(|c| (c.set.to_string(), c.written));
        assert_eq!(found, expected.map(|(set, written)| (set.to_owned(), written)), "{mine} | {theirs}");
        assert_eq!(a.conflicts_with(&b), expected.is_some(), "{mine} | {theirs}");
    }
}

/// HLS variant streams: `%v` names one directory (or file) per `-var_stream_map` entry, by
/// its `name:` or index, and the master playlist lands above a `%v` directory; nothing is a
/// literal `%v` path (issue 8 point 6).
#[test]
fn hls_variant_streams_are_expanded_per_variant() {
    let (named, derived) = (Some(Claim::Named), Some(Claim::Derived));
    let command = "-i a.mp4 -map 0:v -map 0:v -c:v libx264 -f hls -var_stream_map 'v:0 v:1' \
                   -master_pl_name master.m3u8 -hls_segment_filename hls/%v/seg%03d.ts hls/%v/index.m3u8";
    check_claim(
        command,
        &[
            ("hls/0/index.m3u8", named),
            ("hls/1/index.m3u8", named),
            ("hls/0/seg000.ts", named),
            ("hls/1/seg123.ts", named),
            ("hls/1/index.m3u8.tmp", derived),
            ("hls/master.m3u8", named),
            ("hls/2/index.m3u8", None),
            ("hls/%v/index.m3u8", None),
            ("hls/0/master.m3u8", None),
            ("hls/0/notes.txt", None),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let dirs: Vec<String> =
        footprint(&sandbox, command).written_dirs().iter().map(|d| d.display().to_string()).collect();
    assert_eq!(dirs, ["hls", "hls/0", "hls/1"]);
    // Names from the map, strftime segments, fMP4 init segments per variant.
    check_claim(
        "-i a.mp4 -map 0:v -map 0:v -f hls -var_stream_map 'v:0,name:hi v:1,name:lo' -hls_segment_type fmp4 \
         -strftime 1 -hls_segment_filename 'hls/%v/s-%Y%m%d-%s.m4s' -master_pl_name m.m3u8 hls/%v/index.m3u8",
        &[
            ("hls/hi/index.m3u8", named),
            ("hls/lo/s-20261130-1796014967.m4s", named),
            ("hls/hi/init_0.mp4", derived),
            ("hls/m.m3u8", named),
            ("hls/0/index.m3u8", None),
        ],
    );
    // strftime names numbered within a second (`%%04d` becomes `%04d`, then the index).
    check_claim(
        "-i a.mp4 -f hls -var_stream_map 'v:0,name:video' -strftime 1 -hls_flags second_level_segment_index \
         -hls_segment_filename 'named/%v/s-%Y%m%d-%%04d.m4s' named/%v/index.m3u8",
        &[("named/video/s-20261130-0003.m4s", named), ("named/video/s-20261130-%04d.m4s", named)],
    );
    // `%v` in the file name only; without `-var_stream_map`, one variant, 0.
    check_claim(
        "-i a.mp4 -map 0:v -map 0:a -f hls -var_stream_map v:0,a:0 -master_pl_name m.m3u8 out_%v.m3u8",
        &[("out_0.m3u8", named), ("out_00.ts", derived), ("m.m3u8", named), ("out_1.m3u8", None)],
    );
    check_claim("-i a.mp4 -f hls hls/%v/i.m3u8", &[("hls/0/i.m3u8", named), ("hls/0/i0.ts", derived)]);
    // Not the HLS muxer: `%v` is literal (and a pattern character for the image2 muxer).
    check_claim("-i a.mp4 -f mp4 x/%v/o.mp4", &[("x/%v/o.mp4", named), ("x/0/o.mp4", named)]);
}

#[test]
fn overlap_of_patterns() {
    for (a, b, expected) in [
        ("%sfoo", "bar%s", true),
        ("a%dx", "a1%d", false),
        ("a%dx", "a1%dx", true),
        ("seg%03d.ts", "seg1%d.ts", true),
        ("seg%03d.ts", "seg%03d.m4s", false),
        ("x-%d.log", "x2.mp4", false),
        ("x%s", "x2.mp4", true),
        ("100%%.png", "100%.png", true),
        ("100%%.png", "1001.png", false),
        ("$Number$.m4s", "7.m4s", true),
        ("%d", "", false),
        ("%s", "", true),
    ] {
        assert_eq!(pattern::may_overlap(a, b), expected, "{a} vs {b}");
        assert_eq!(pattern::may_overlap(b, a), expected, "{b} vs {a}");
    }
}

/// Short patterns over a small alphabet, so that shared names are common.
fn small_pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "1", "2", "%d", "%s", "%%", "$N$"]), 0..6)
        .prop_map(|p| p.concat())
}

#[test]
fn files_above_or_below_what_a_command_writes() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let out = footprint(&sandbox, "-i a.mp4 -f mp4 race/a");
    let hls = footprint(&sandbox, "-i a.mp4 -f hls h/i.m3u8");
    for (fp, path, expected) in [
        (&out, "race/a/x", true),
        (&out, "race/a/b/c", true),
        (&out, "race", true),
        (&out, "race/a", false),
        (&out, "race/ab", false),
        (&out, "race/b/x", false),
        (&hls, "h/i3.ts/x", true),
        (&hls, "h", true),
        (&hls, "h/j3.ts/x", false),
        (&hls, "g", false),
    ] {
        assert_eq!(fp.writes_above_or_below(Path::new(path)), expected, "{path}");
    }
}

/// Short output paths of 1-3 components, some numbered (`%d`).
fn small_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "1", "a%d"]), 1..4).prop_map(|p| p.join("/"))
}

proptest! {
    /// Two jobs one of which may write a file where the other writes a directory (tester H6)
    /// conflict: `%d` stands for any number, so the concrete names below are some each may
    /// write. Without patterns the rule is exact: same file, or one above the other.
    #[test]
    fn a_file_above_another_jobs_file_conflicts(a in small_path(), b in small_path(), n in 0u32..120) {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(dir.path()).unwrap();
        let (fa, fb) = (footprint(&sandbox, &format!("-i in.mp4 -f mp4 {a}")), footprint(&sandbox, &format!("-i in.mp4 -f mp4 {b}")));
        let (ca, cb) = (a.replace("%d", &n.to_string()), b.replace("%d", &n.to_string()));
        let above = |x: &str, y: &str| y.starts_with(&format!("{x}/"));
        let related = ca == cb || above(&ca, &cb) || above(&cb, &ca);
        if related {
            prop_assert!(fa.conflicts_with(&fb), "{a} | {b}: {ca} and {cb}");
        }
        if !a.contains('%') && !b.contains('%') {
            prop_assert_eq!(fa.conflicts_with(&fb), related, "{} | {}", a, b);
        }
        prop_assert_eq!(fa.conflicts_with(&fb), fb.conflicts_with(&fa), "symmetric");
    }
}

proptest! {
    /// Never a false "no overlap": a name that both patterns match proves they overlap.
    #[test]
    fn may_overlap_misses_no_shared_name(a in small_pattern(), b in small_pattern(), name in prop::collection::vec(prop::sample::select(vec!["a", "b", "1", "2", "%", "$"]), 0..8).prop_map(|n| n.concat())) {
        if pattern::matches(&a, &name) && pattern::matches(&b, &name) {
            prop_assert!(pattern::may_overlap(&a, &b), "{a} and {b} both match {name}");
        }
    }
}

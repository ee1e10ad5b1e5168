//! `ffmpeg_core::filtergraph`: ffmpeg 5.1's filtergraph syntax on real-world graphs and
//! escaping cases (`check`), errors with their byte offsets, the written form (`check_display`),
//! full parsed structures (insta snapshots), and arbitrary graphs and strings (proptest).
//!
//! Unless marked otherwise, every accepted graph here was also accepted by `ffmpeg` 5.1
//! (`-f lavfi -i GRAPH` or `-filter_complex`) with the same option values (its `-v debug`
//! "Setting 'key' to value '...'" lines), and every rejected one was rejected by it.

use std::time::{Duration, Instant};

use ffmpeg_core::filtergraph::{self, Filter, FilterArg, FilterChain, FilterGraph, FilterGraphError};
use proptest::prelude::*;

/// One line per filter: `CHAIN.INDEX @OFFSET: ["in"] name@"id"(positional, key=value) ["out"]`
/// (strings in Rust debug form, empty label lists left out), after a `sws_flags "..."` line if
/// any; or `error: MESSAGE`.
fn render(graph: &str) -> String {
    let parsed = match filtergraph::parse(graph) {
        Ok(parsed) => parsed,
        Err(e) => {
            assert!(e.offset() <= graph.len(), "{e:?} past the end of {graph:?}");
            return format!("error: {e}");
        }
    };
    assert_round_trip(&parsed);
    let mut lines = Vec::new();
    if let Some(flags) = &parsed.sws_flags {
        lines.push(format!("sws_flags {flags:?}"));
    }
    for (c, chain) in parsed.chains.iter().enumerate() {
        for (i, filter) in chain.filters.iter().enumerate() {
            let mut line = format!("{c}.{i} @{}:", filter.offset);
            if !filter.inputs.is_empty() {
                line += &format!(" {:?}", filter.inputs);
            }
            line += &format!(" {}", filter.name);
            if let Some(id) = &filter.instance {
                line += &format!("@{id:?}");
            }
            let args: Vec<String> = filter
                .args
                .iter()
                .map(|arg| match arg {
                    FilterArg::Positional(value) => format!("{value:?}"),
                    FilterArg::Named { key, value } => format!("{key}={value:?}"),
                })
                .collect();
            line += &format!("({})", args.join(", "));
            if !filter.outputs.is_empty() {
                line += &format!(" {:?}", filter.outputs);
            }
            lines.push(line);
        }
    }
    lines.join("\n")
}

/// The written form parses back to an equal graph, and writing that again changes nothing.
#[track_caller]
fn assert_round_trip(graph: &FilterGraph) {
    let written = graph.to_string();
    let reparsed = filtergraph::parse(&written)
        .unwrap_or_else(|e| panic!("{written:?} (written from {graph:?}) does not parse: {e}"));
    assert_eq!(&reparsed, graph, "round trip through {written:?}");
    assert_eq!(reparsed.to_string(), written, "writing is not stable");
}

#[track_caller]
fn check(graph: &str, expected: &str) {
    let expected: Vec<&str> = expected.trim().lines().map(str::trim).collect();
    assert_eq!(render(graph), expected.join("\n"), "parsing {graph:?}");
}

/// How `graph` is written back after parsing.
#[track_caller]
fn check_display(graph: &str, expected: &str) {
    let parsed = filtergraph::parse(graph).unwrap();
    assert_eq!(parsed.to_string(), expected, "writing {graph:?}");
    assert_round_trip(&parsed);
}

#[test]
fn real_world_graphs() {
    check("scale=1280:-2", r#"0.0 @0: scale("1280", "-2")"#);
    check("scale=w=1280:h=-2:flags=lanczos", r#"0.0 @0: scale(w="1280", h="-2", flags="lanczos")"#);
    check(
        "fps=1,scale=320:-1",
        r#"
        0.0 @0: fps("1")
        0.1 @6: scale("320", "-1")
        "#,
    );
    check("[0:v][1:v]overlay=W-w-10:H-h-10[v]", r#"0.0 @0: ["0:v", "1:v"] overlay("W-w-10", "H-h-10") ["v"]"#);
    check(
        "[0:a]loudnorm=I=-16:TP=-1.5:LRA=11:print_format=json",
        r#"0.0 @0: ["0:a"] loudnorm(I="-16", TP="-1.5", LRA="11", print_format="json")"#,
    );
    check(
        "split=2[a][b];[a]scale=640:-2[a1];[b]scale=1280:-2[b1]",
        r#"
        0.0 @0: split("2") ["a", "b"]
        1.0 @14: ["a"] scale("640", "-2") ["a1"]
        2.0 @34: ["b"] scale("1280", "-2") ["b1"]
        "#,
    );
    check(
        "drawtext=text='Hello\\, World':fontsize=24:x=(w-text_w)/2",
        r#"0.0 @0: drawtext(text="Hello, World", fontsize="24", x="(w-text_w)/2")"#,
    );
    check(
        "drawtext=textfile=overlay.txt:fontfile=fonts/DejaVuSans.ttf",
        r#"0.0 @0: drawtext(textfile="overlay.txt", fontfile="fonts/DejaVuSans.ttf")"#,
    );
    check("subtitles=subs.srt", r#"0.0 @0: subtitles("subs.srt")"#);
    check(
        "subtitles=filename='my subs.srt':force_style='FontSize=24'",
        r#"0.0 @0: subtitles(filename="my subs.srt", force_style="FontSize=24")"#,
    );
    check("subtitles=subs.srt:si=0", r#"0.0 @0: subtitles("subs.srt", si="0")"#);
    check(
        "movie=logo.png[wm];[in][wm]overlay=10:10[out]",
        r#"
        0.0 @0: movie("logo.png") ["wm"]
        1.0 @19: ["in", "wm"] overlay("10", "10") ["out"]
        "#,
    );
    check("amovie=a.wav", r#"0.0 @0: amovie("a.wav")"#);
    check(
        "sws_flags=bicubic;[in]scale=100:100[out]",
        r#"
        sws_flags "bicubic"
        0.0 @18: ["in"] scale("100", "100") ["out"]
        "#,
    );
    check("testsrc=duration=2:size=320x240:rate=25", r#"0.0 @0: testsrc(duration="2", size="320x240", rate="25")"#);
    check("sine=frequency=440:duration=2", r#"0.0 @0: sine(frequency="440", duration="2")"#);
    check("color=c=black:s=1280x720:d=5", r#"0.0 @0: color(c="black", s="1280x720", d="5")"#);
    check("ebur128", "0.0 @0: ebur128()");
    check("null", "0.0 @0: null()");
    check("anullsrc", "0.0 @0: anullsrc()");
    check("crop=in_w/2:in_h/2", r#"0.0 @0: crop("in_w/2", "in_h/2")"#);
    check("setpts=PTS-STARTPTS", r#"0.0 @0: setpts("PTS-STARTPTS")"#);
    check("volume=0.5", r#"0.0 @0: volume("0.5")"#);
    check("aresample=async=1", r#"0.0 @0: aresample(async="1")"#);
    check("select='eq(pict_type\\,I)'", r#"0.0 @0: select("eq(pict_type,I)")"#);
    check("select=eq(pict_type\\,I)", r#"0.0 @0: select("eq(pict_type,I)")"#);
    check("zmq", "0.0 @0: zmq()");
    check("ladspa=file=cmt:plugin=delay_5s", r#"0.0 @0: ladspa(file="cmt", plugin="delay_5s")"#);
    check("lut3d=file=lut.cube", r#"0.0 @0: lut3d(file="lut.cube")"#);
    check("sendcmd=f=cmds.txt", r#"0.0 @0: sendcmd(f="cmds.txt")"#);
    check(
        "anullsrc=r=48000:cl=stereo,asplit=2[a][b];[a][b]amix=inputs=2",
        r#"
        0.0 @0: anullsrc(r="48000", cl="stereo")
        0.1 @27: asplit("2") ["a", "b"]
        1.0 @42: ["a", "b"] amix(inputs="2")
        "#,
    );
    // The ffmpeg-filters manual's own example (whitespace around filters and labels).
    check(
        "split [main][tmp]; [tmp] crop=iw:ih/2:0:0, vflip [flip]; [main][flip] overlay=0:H/2",
        r#"
        0.0 @0: split() ["main", "tmp"]
        1.0 @19: ["tmp"] crop("iw", "ih/2", "0", "0")
        1.1 @43: vflip() ["flip"]
        2.0 @57: ["main", "flip"] overlay("0", "H/2")
        "#,
    );
}

/// The "Notes on filtergraph escaping" section of ffmpeg-filters and more, each value checked
/// against ffmpeg 5.1's debug log.
#[test]
fn escaping() {
    // The manual's example, escaped for both levels: `\\\'` is `\'` after the graph level,
    // then `'` after the option level.
    check(
        r"drawtext=text=this is a \\\'string\\\'\\: may contain one\, or more\, special characters",
        r#"0.0 @0: drawtext(text="this is a 'string': may contain one, or more, special characters")"#,
    );
    // Escaped for the option level only: the graph level eats the escapes, `'string'` becomes
    // a quote and `:` splits the value; the rest has no key (ffmpeg 5.1 rejects it too).
    check(
        r"drawtext=text=this is a \'string\'\: may contain one\, or more\, special characters",
        "error: byte 37: option `may contain one, or more, special characters` has no `key=` \
         but follows a `key=value` option; write it as `key=value` too",
    );
    // A quote closed, an escaped quote, a quote reopened (shell style) at the option level.
    check(r"drawtext=text='it'\\\''s'", r#"0.0 @0: drawtext(text="it's")"#);
    // Backslashes: `\\\\` is `\\` after the graph level and `\` after the option level.
    check(r"drawtext=text=a\\\\b", r#"0.0 @0: drawtext(text="a\\b")"#);
    check(r"drawtext=text=a\\b", r#"0.0 @0: drawtext(text="ab")"#);
    check(r"drawtext=text=\'a\\\\b\'", r#"0.0 @0: drawtext(text="a\\\\b")"#);
    // Quoted at the graph level, the option level still unescapes.
    check(r"subtitles='C\:\\subs\\my.srt'", r#"0.0 @0: subtitles("C:\\subs\\my.srt")"#);
    check(r"subtitles=C\\:\\\\subs\\\\my.srt", r#"0.0 @0: subtitles("C:\\subs\\my.srt")"#);
    // Whitespace at either end of a value is dropped unless escaped or quoted.
    check("drawtext=text=   padded   :fontsize=10", r#"0.0 @0: drawtext(text="padded", fontsize="10")"#);
    check(r"drawtext=text=\   padded \ :fontsize=10", r#"0.0 @0: drawtext(text="padded", fontsize="10")"#);
    check(r"drawtext=text='\   padded \ ':fontsize=10", r#"0.0 @0: drawtext(text="   padded  ", fontsize="10")"#);
    check(r"drawtext=text=\\\   padded \\\ :fontsize=10", r#"0.0 @0: drawtext(text="   padded  ", fontsize="10")"#);
    // `=` inside a value, an empty value, the graph's special characters quoted or escaped.
    check("drawtext=text=a=b=c:fontsize=10", r#"0.0 @0: drawtext(text="a=b=c", fontsize="10")"#);
    check("drawtext=text=:fontsize=10", r#"0.0 @0: drawtext(text="", fontsize="10")"#);
    check("drawtext=text='[x]; y, z':fontsize=10", r#"0.0 @0: drawtext(text="[x]; y, z", fontsize="10")"#);
    check(r"drawtext=text=\[x\]\; y\, z:fontsize=10", r#"0.0 @0: drawtext(text="[x]; y, z", fontsize="10")"#);
    check(r"drawtext=text=é\\:ü:fontsize=10", r#"0.0 @0: drawtext(text="é:ü", fontsize="10")"#);
    // Escapes and quotes in the name and in labels.
    check(r"sc\ale=32:48", r#"0.0 @0: scale("32", "48")"#);
    check("'scale'=32:48", r#"0.0 @0: scale("32", "48")"#);
    check(
        "null['a]b'];['a]b']null",
        r#"
        0.0 @0: null() ["a]b"]
        1.0 @12: ["a]b"] null()
        "#,
    );
    check(
        r"null[a\]b];[a\]b]null",
        r#"
        0.0 @0: null() ["a]b"]
        1.0 @11: ["a]b"] null()
        "#,
    );
    check(
        "null[a,b];[a,b]null",
        r#"
        0.0 @0: null() ["a,b"]
        1.0 @10: ["a,b"] null()
        "#,
    );
    // Escaping or quoting `key=value` at the graph level leaves a key at the option level;
    // escaping the `=` at the option level makes it one positional value.
    check(r"scale=w\=32", r#"0.0 @0: scale(w="32")"#);
    check("scale='w=32'", r#"0.0 @0: scale(w="32")"#);
    check(r"scale=w\\=32", r#"0.0 @0: scale("w=32")"#);
    check(r"scale='w\=32'", r#"0.0 @0: scale("w=32")"#);
    // Quoting the value keeps the key.
    check("scale=w ='32'", r#"0.0 @0: scale(w="32")"#);
}

#[test]
fn whitespace() {
    check(
        " scale = w = 32 : h = 48 , null ",
        r#"
        0.0 @1: scale(w="32", h="48")
        0.1 @27: null()
        "#,
    );
    check("scale=  32  :  48  ", r#"0.0 @0: scale("32", "48")"#);
    check(
        "\t[in] \n scale=1:2 \r [out] ;\n[out]null",
        r#"
        0.0 @1: ["in"] scale("1", "2") ["out"]
        1.0 @28: ["out"] null()
        "#,
    );
    check(
        "null [a] ; [a] null",
        r#"
        0.0 @0: null() ["a"]
        1.0 @11: ["a"] null()
        "#,
    );
    check(
        "null[ a b ];[a b]null",
        r#"
        0.0 @0: null() ["a b"]
        1.0 @12: ["a b"] null()
        "#,
    );
    check("null[' a ']", r#"0.0 @0: null() [" a "]"#);
    // A newline is whitespace, not a separator: it stays inside a value.
    check("color=c=red\n:s=2x2", r#"0.0 @0: color(c="red", s="2x2")"#);
    check("color=s=2x2\rscale", r#"0.0 @0: color(s="2x2\rscale")"#);
    // ffmpeg's -vf and -filter_complex skip whitespace before `sws_flags=`.
    check(
        " sws_flags=bicubic;scale=32:32",
        r#"
        sws_flags "bicubic"
        0.0 @19: scale("32", "32")
        "#,
    );
}

#[test]
fn names_and_instances() {
    check("scale@my=32:48", r#"0.0 @0: scale@"my"("32", "48")"#);
    check("scale@@=32:48", r#"0.0 @0: scale@"@"("32", "48")"#);
    check("scale@my id=32", r#"0.0 @0: scale@"my id"("32")"#);
    check("sendcmd@a@b=f=cmds.txt", r#"0.0 @0: sendcmd@"a@b"(f="cmds.txt")"#);
    check("scale@=32:48", "error: byte 0: invalid filter name `scale@`");
    check("@x=1", "error: byte 0: invalid filter name `@x`");
    check("sc ale=32:48", "error: byte 0: invalid filter name `sc ale`");
    check("Scale_2", "0.0 @0: Scale_2()");
    check("null]", "error: byte 0: invalid filter name `null]`");
    // `create_filter()` looks for the `@` in the first 29 bytes only.
    check("abcdefghijklmnopqrstuvwxyz012@x", "error: byte 0: invalid filter name `abcdefghijklmnopqrstuvwxyz012@x`");
    check("abcdefghijklmnopqrstuvwxyz01@x", r#"0.0 @0: abcdefghijklmnopqrstuvwxyz01@"x"()"#);
}

#[test]
fn option_lists() {
    // A final `:` adds nothing; empty values in the middle count.
    check("scale=32:h=48:", r#"0.0 @0: scale("32", h="48")"#);
    check("scale=32::", r#"0.0 @0: scale("32", "")"#);
    check("scale=:", r#"0.0 @0: scale("")"#);
    check("scale=1::2", r#"0.0 @0: scale("1", "", "2")"#);
    check("scale=1:\\ ", r#"0.0 @0: scale("1", "")"#);
    // Empty args are no args; `''` is one empty value.
    check("null=", "0.0 @0: null()");
    check("null=''", "0.0 @0: null()");
    check("null=\\'\\'", r#"0.0 @0: null("")"#);
    // Keys: letters, digits and `-_./`; whitespace around the key.
    check("f=a-b_c/d.e=1:0=2: k \n= v", r#"0.0 @0: f(a-b_c/d.e="1", 0="2", k="v")"#);
    // Repeated keys stay, in order (the last one wins in ffmpeg).
    check("scale=w=32:h=48:w=16", r#"0.0 @0: scale(w="32", h="48", w="16")"#);
}

#[test]
fn errors() {
    check("", "error: the filtergraph is empty");
    check(" \t\r\n", "error: the filtergraph is empty");
    check("scale=1:2\0", "error: byte 9: NUL character in the filtergraph");
    check("sws_flags=bicubic", "error: byte 0: `sws_flags=` is not terminated with `;`");
    check("sws_flags=bicubic;", "error: byte 18: missing filter name");
    check("[a", "error: byte 0: link label `[` is not closed with `]`");
    check("scale=1:2[", "error: byte 9: link label `[` is not closed with `]`");
    check("null[out0", "error: byte 4: link label `[` is not closed with `]`");
    check("null[]", "error: byte 4: empty link label");
    check("null[ ]", "error: byte 4: empty link label");
    check("[a]", "error: byte 3: missing filter name");
    check("null,,null", "error: byte 5: missing filter name");
    check("null,", "error: byte 5: missing filter name");
    check("null;", "error: byte 5: missing filter name");
    check(",null", "error: byte 0: missing filter name");
    check("=32:48", "error: byte 0: missing filter name");
    check("scale='32:48", "error: byte 6: quote `'` is not closed");
    check("null['a]", "error: byte 5: quote `'` is not closed");
    check("scale=32:48\\", "error: byte 11: `\\` at the end escapes nothing");
    // The second level's trailing `\` points at its source (`\\` at offsets 9-10).
    check("scale=32\\\\", "error: byte 9: `\\` at the end escapes nothing");
    check("scale='32\\'", "error: byte 9: `\\` at the end escapes nothing");
    check("scale=32:=48", "error: byte 9: option without a name before `=`");
    check(
        "scale=w=32:48",
        "error: byte 11: option `48` has no `key=` but follows a `key=value` option; \
         write it as `key=value` too",
    );
    // ffmpeg 5.1 sets `textfile` from this one.
    check(
        "drawtext=text=x:/etc/hostname",
        "error: byte 16: option `/etc/hostname` has no `key=` but follows a `key=value` option; \
         write it as `key=value` too",
    );
    check("scale=32:48]", "error: byte 11: unexpected `]` after a filter, expected `,`, `;` or the end");
    check(
        "drawtext=text=[x]:fontsize=10",
        "error: byte 17: unexpected `:` after a filter, expected `,`, `;` or the end",
    );
    check("scale [out0] x", "error: byte 13: unexpected `x` after a filter, expected `,`, `;` or the end");
    // Offsets are bytes: `é` is two.
    check("null[é", "error: byte 4: link label `[` is not closed with `]`");
    check("é", "error: byte 0: invalid filter name `é`");
}

/// Graphs `ffmpeg` 5.1 accepts that [`filtergraph::parse`] rejects, each for a reason.
#[test]
fn stricter_than_ffmpeg() {
    for (graph, why) in [
        // ffmpeg quotes to the end of the graph: `c` is `red:s=2x2`.
        ("color=c='red:s=2x2", "error: byte 8: quote `'` is not closed"),
        // ffmpeg keeps the `\`: the size is `2x2\`.
        ("color=s=2x2\\", "error: byte 11: `\\` at the end escapes nothing"),
        // ffmpeg gives `48` to `h` after wrapping around its option list; for `drawtext` the
        // same wrap-around gives a path to `textfile`.
        (
            "scale=w=32:48",
            "error: byte 11: option `48` has no `key=` but follows a `key=value` option; \
             write it as `key=value` too",
        ),
    ] {
        check(graph, why);
    }
}

#[test]
fn arg_lookup() {
    let graph =
        filtergraph::parse("subtitles=subs.srt:si=0,subtitles=filename=a.srt:f=b.srt,subtitles=x.srt:filename=y.srt")
            .unwrap();
    let filters: Vec<&Filter> = graph.filters().collect();
    assert_eq!(filters[0].arg("filename", Some(0)), Some("subs.srt"));
    assert_eq!(filters[0].arg("si", Some(3)), Some("0"));
    assert_eq!(filters[0].arg("filename", None), None);
    assert_eq!(filters[0].arg("original_size", Some(1)), None);
    // Aliases are separate keys.
    assert_eq!(filters[1].arg("filename", Some(0)), Some("a.srt"));
    assert_eq!(filters[1].arg("f", Some(0)), Some("b.srt"));
    // A later key=value wins over a positional value, like in ffmpeg.
    assert_eq!(filters[2].arg("filename", Some(0)), Some("y.srt"));
    // The last of repeated keys wins.
    let scale = filtergraph::parse("scale=w=1:w=2").unwrap();
    assert_eq!(scale.chains[0].filters[0].arg("w", Some(0)), Some("2"));
}

#[test]
fn set_arg() {
    #[track_caller]
    fn check_set(graph: &str, key: &str, position: Option<usize>, expected: &str) {
        let mut parsed = filtergraph::parse(graph).unwrap();
        for filter in parsed.filters_mut() {
            filter.set_arg(key, position, "/data/new file.srt".to_owned());
            assert_eq!(filter.arg(key, position), Some("/data/new file.srt"));
        }
        assert_eq!(parsed.to_string(), expected, "{graph:?}");
        assert_round_trip(&parsed);
    }
    // The positional value is replaced in place (removing it would shift `640x480` onto
    // `filename`), and the key=value form is removed.
    check_set("subtitles=a.srt:640x480:filename=b.srt", "filename", Some(0), "subtitles=/data/new file.srt:640x480");
    // The last key=value is replaced in place, earlier ones removed.
    check_set(
        "subtitles=filename=a.srt:si=0:filename=b.srt:fontsdir=f",
        "filename",
        Some(0),
        "subtitles=si=0:filename=/data/new file.srt:fontsdir=f",
    );
    // Neither: appended.
    check_set("subtitles=si=0", "filename", Some(0), "subtitles=si=0:filename=/data/new file.srt");
    check_set("movie", "filename", None, "movie=filename=/data/new file.srt");
    // Without a position, a positional value is left alone and the key is added after it.
    check_set("lut3d=a.cube", "file", None, "lut3d=a.cube:file=/data/new file.srt");
}

#[test]
fn written_form() {
    // Nothing to protect: written as is.
    check_display("[0:v][1:v]overlay=W-w-10:H-h-10[v]", "[0:v][1:v]overlay=W-w-10:H-h-10[v]");
    // Canonical spacing and escaping.
    check_display(
        " split [main][tmp]; [tmp] crop=iw:ih/2:0:0, vflip [flip]; [main][flip] overlay=0:H/2",
        "split[main][tmp];[tmp]crop=iw:ih/2:0:0,vflip[flip];[main][flip]overlay=0:H/2",
    );
    // The graph level quotes when it can ...
    check_display(r"drawtext=text=Hello\, World:fontsize=24", "drawtext='text=Hello, World:fontsize=24'");
    check_display(r"subtitles=C\\:\\\\my.srt", r"subtitles='C\:\\my.srt'");
    // ... and escapes when the option level holds a `'`.
    check_display(r"drawtext=text='it'\\\''s, ok'", r"drawtext=text=it\\\'s\, ok");
    // Positional values escape `=`; an empty last one is `''`.
    check_display(r"setpts='w\=3'", r"setpts='w\=3'");
    check_display("scale=32::", r"scale=32:\'\'");
    check_display("scale=1::2", "scale=1::2");
    // Whitespace at the ends of a value or label is protected.
    check_display(r"drawtext=text=\\\ x\\\ ", r"drawtext='text=\ x\ '");
    check_display("null[' a ']", "null[' a ']");
    // sws_flags is written as it was read; a first filter named `sws_flags` is escaped.
    check_display("sws_flags=a:b ;scale=1:1", "sws_flags=a:b ;scale=1:1");
    let graph = FilterGraph {
        chains: vec![FilterChain {
            filters: vec![Filter {
                name: "sws_flags".to_owned(),
                args: vec![FilterArg::Positional("x".to_owned())],
                ..Filter::default()
            }],
        }],
        sws_flags: None,
    };
    assert_eq!(graph.to_string(), r"\sws_flags=x");
    assert_round_trip(&graph);
}

#[test]
fn equality_ignores_offsets() {
    let a = filtergraph::parse("scale=1:2,null").unwrap();
    let b = filtergraph::parse("  scale = 1 : 2 ,  null").unwrap();
    assert_ne!(a.chains[0].filters[1].offset, b.chains[0].filters[1].offset);
    assert_eq!(a, b);
    assert_ne!(a, filtergraph::parse("scale=1:3,null").unwrap());
}

#[test]
fn error_offsets() {
    for (graph, offset) in [("", 0), ("null,[a", 5), ("scale=w=1:\\ 2", 12), ("null;\0", 5)] {
        let error: FilterGraphError = filtergraph::parse(graph).unwrap_err();
        assert_eq!(error.offset(), offset, "{graph:?}: {error}");
    }
}

/// Hostile 1 MB graphs parse in linear time (a quadratic step would take hours here).
#[test]
fn large_graphs_are_linear() {
    const MB: usize = 1 << 20;
    let cases = [
        "[".repeat(MB),
        format!("{}null", "[a]".repeat(MB / 3)),
        format!("{}null", "null,".repeat(MB / 5)),
        format!("null={}", "a:".repeat(MB / 2)),
        format!("null=x=1:{}", "y".repeat(MB)),
        format!("null={}", "'".repeat(MB)),
        format!("null={}", "\\\\".repeat(MB / 2)),
        format!("null={}", "\\'".repeat(MB / 2)),
        format!("null={}x", " ".repeat(MB)),
        format!("null={}", "k=v:".repeat(MB / 4)),
        format!("null=x=1:{}", " :".repeat(MB / 2)),
        format!("sws_flags={}", "x".repeat(MB)),
        "\\".repeat(MB),
    ];
    let start = Instant::now();
    for graph in &cases {
        let _ = filtergraph::parse(graph);
    }
    assert!(start.elapsed() < Duration::from_secs(60), "took {:?}", start.elapsed());
    let parsed = filtergraph::parse(&cases[2]).unwrap();
    assert_eq!(parsed.chains[0].filters.len(), MB / 5 + 1);
}

#[test]
fn snapshots() {
    for (name, graph) in [
        ("scale", "scale=w=1280:h=-2:flags=lanczos"),
        ("overlay", "[0:v][1:v]overlay=W-w-10:H-h-10[v]"),
        ("split", "split=2[a][b];[a]scale=640:-2[a1];[b]scale=1280:-2[b1]"),
        ("movie", "movie=logo.png[wm];[in][wm]overlay=10:10[out]"),
        ("sws_flags", "sws_flags=bicubic;[in]scale=100:100[out]"),
        ("drawtext", "drawtext=text='Hello\\, World':fontsize=24:x=(w-text_w)/2"),
        (
            "drawtext_manual",
            r"drawtext=text=this is a \\\'string\\\'\\: may contain one\, or more\, special characters",
        ),
        ("subtitles", "subtitles=filename='my subs.srt':force_style='FontSize=24'"),
        ("select", "select='eq(pict_type\\,I)'"),
        ("instance", "sendcmd@cmd=f=cmds.txt,zmq@z"),
        ("whitespace", " split [main][tmp]; [tmp] crop=iw:ih/2:0:0, vflip [flip]; [main][flip] overlay=0:H/2"),
        ("audio", "[0:a]loudnorm=I=-16:TP=-1.5:LRA=11:print_format=json,aresample=async=1[a]"),
        ("error_positional", "drawtext=text=x:/etc/hostname"),
    ] {
        insta::with_settings!({ description => graph, omit_expression => true }, {
            insta::assert_debug_snapshot!(name, filtergraph::parse(graph));
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests

/// Text rich in the characters both escaping levels treat specially, or anything (no NUL).
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[ :=,;\\[\\]'\\\\@a-c\t\r\né]{0,8}", any::<String>().prop_map(|s| s.replace('\0', "")),]
}

fn non_empty_text() -> impl Strategy<Value = String> {
    text().prop_filter("labels and ids are not empty", |s| !s.is_empty())
}

fn filter() -> impl Strategy<Value = Filter> {
    let positional = prop::collection::vec(text().prop_map(FilterArg::Positional), 0..3);
    let named = prop::collection::vec(
        ("[A-Za-z0-9_./-]{1,8}", text()).prop_map(|(key, value)| FilterArg::Named { key, value }),
        0..3,
    );
    (
        prop::collection::vec(non_empty_text(), 0..3),
        "[A-Za-z0-9_]{1,20}",
        prop::option::of(non_empty_text()),
        positional,
        named,
        prop::collection::vec(non_empty_text(), 0..3),
    )
        .prop_map(|(inputs, name, instance, mut args, named, outputs)| {
            args.extend(named);
            Filter { inputs, name, instance, args, outputs, offset: 0 }
        })
}

fn graph() -> impl Strategy<Value = FilterGraph> {
    (
        prop::collection::vec(prop::collection::vec(filter(), 1..4).prop_map(|filters| FilterChain { filters }), 1..4),
        prop::option::of("[^;\\x00]{0,10}"),
    )
        .prop_map(|(chains, sws_flags)| FilterGraph { chains, sws_flags })
}

/// Strings made of the grammar's special characters, and anything at all.
fn graph_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[\\[\\]=,;:'\\\\@ \t\r\na-cé\\x00]{0,40}",
        "(sws_flags=[a-z;]{0,4})?([\\[\\]a-c]{0,4}[a-z@ ]{0,4}(=[a-c:=',\\\\ ]{0,10})?[\\[\\]a-c ]{0,4}[,;]?){0,4}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn written_graphs_parse_back(graph in graph()) {
        let written = graph.to_string();
        let parsed = filtergraph::parse(&written);
        prop_assert_eq!(parsed.as_ref(), Ok(&graph), "written as {:?}", written);
    }

    #[test]
    fn any_text_never_panics(text in graph_text()) {
        match filtergraph::parse(&text) {
            Ok(graph) => {
                for filter in graph.filters() {
                    prop_assert!(text.is_char_boundary(filter.offset) && filter.offset < text.len());
                }
                let written = graph.to_string();
                let again = filtergraph::parse(&written);
                prop_assert_eq!(again.as_ref(), Ok(&graph), "written as {:?}", written);
                prop_assert_eq!(again.map(|g| g.to_string()).ok(), Some(written));
            }
            Err(e) => prop_assert!(text.is_char_boundary(e.offset()), "{:?}", e),
        }
    }
}

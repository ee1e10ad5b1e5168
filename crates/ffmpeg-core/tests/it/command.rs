//! `ffmpeg_core::command`: ffmpeg 5.1's command-line grammar on hand-written cases (`check`),
//! full parsed structures (insta snapshots) and arbitrary argument lists (proptest).

use ffmpeg_core::command::{Command, CommandError, Opt};
use proptest::prelude::*;

/// One line per group: `global: ...`, `input POS "URL": ...`, `output POS "URL": ...`, options
/// as `-flag "value"`; or `error: MESSAGE`.
fn render(line: &str) -> String {
    let command = match Command::parse(line) {
        Ok(command) => command,
        Err(e) => return format!("error: {e}"),
    };
    // Whatever parses prints back (Display) to a line that parses to the same command.
    let reparsed = Command::parse(&command.to_string()).unwrap();
    assert_eq!(reparsed.to_args(), command.to_args(), "round trip of {line:?}");
    assert_eq!(command.arg_count(), shell_words::split(line).unwrap().len());

    // ` -flag "value", -flag` (with a leading space), or nothing.
    let opts = |options: &[Opt]| {
        let rendered: Vec<String> = options
            .iter()
            .map(|o| match o.value() {
                Some(v) => format!(" {} {v:?}", o.flag()),
                None => format!(" {}", o.flag()),
            })
            .collect();
        rendered.join(",")
    };
    let mut out = Vec::new();
    if !command.global_options().is_empty() {
        out.push(format!("global:{}", opts(command.global_options())));
    }
    for input in command.inputs() {
        out.push(format!("input {} {:?}:{}", input.position(), input.url(), opts(input.options())));
    }
    for output in command.outputs() {
        out.push(format!("output {} {:?}:{}", output.position(), output.url(), opts(output.options())));
    }
    out.join("\n")
}

#[track_caller]
fn check(line: &str, expected: &str) {
    let expected: Vec<&str> = expected.trim().lines().map(str::trim).collect();
    assert_eq!(render(line), expected.join("\n"), "parsing {line:?}");
}

#[test]
fn design_doc_examples() {
    check(
        "-y -i in.mp4 -c:v libx264 -crf 23 -movflags +faststart out.mp4",
        r#"
        global: -y
        input 3 "in.mp4":
        output 10 "out.mp4": -c:v "libx264", -crf "23", -movflags "+faststart"
        "#,
    );
    check(
        "-i in.mp4 -c:v:0 libx264 -b:a:1 128k -metadata:s:a:0 language=eng out.mkv",
        r#"
        input 2 "in.mp4":
        output 9 "out.mkv": -c:v:0 "libx264", -b:a:1 "128k", -metadata:s:a:0 "language=eng"
        "#,
    );
    check(
        "-re -copyts -nostdin -hide_banner -nostats -i in.mp4 -shortest -an -vn -sn -dn out.mp4",
        r#"
        global: -copyts, -nostdin, -hide_banner, -nostats
        input 7 "in.mp4": -re
        output 13 "out.mp4": -shortest, -an, -vn, -sn, -dn
        "#,
    );
    check(
        "-i in.mp4 -preset fast -x264-params keyint=60:min-keyint=60 out.mp4",
        r#"
        input 2 "in.mp4":
        output 7 "out.mp4": -preset "fast", -x264-params "keyint=60:min-keyint=60"
        "#,
    );
}

#[test]
fn global_options_apply_wherever_they_appear() {
    check(
        r#"-i a.mp4 -i b.mp4 -filter_complex "[0:v][1:v]overlay" -map 0:a out.mp4"#,
        r#"
        global: -filter_complex "[0:v][1:v]overlay"
        input 2 "a.mp4":
        input 4 "b.mp4":
        output 9 "out.mp4": -map "0:a"
        "#,
    );
    // After the last output, global options are still fine.
    check(
        "-i in.mp4 out.mp4 -y -loglevel error -stats_period 0.5",
        r#"
        global: -y, -loglevel "error", -stats_period "0.5"
        input 2 "in.mp4":
        output 3 "out.mp4":
        "#,
    );
    check(
        "-i in.mp4 -vsync 0 -progress pipe:1 -lavfi nullsink -vol 256 out.mp4",
        r#"
        global: -vsync "0", -progress "pipe:1", -lavfi "nullsink", -vol "256"
        input 2 "in.mp4":
        output 11 "out.mp4":
        "#,
    );
}

#[test]
fn per_file_options_attach_to_the_next_input_or_output() {
    check(
        "-ss 5 -i in.mp4 -t 3 -an out.mp4",
        r#"
        input 4 "in.mp4": -ss "5"
        output 8 "out.mp4": -t "3", -an
        "#,
    );
    check(
        "-i in -c:v copy a.mp4 -vn b.m4a",
        r#"
        input 2 "in":
        output 5 "a.mp4": -c:v "copy"
        output 7 "b.m4a": -vn
        "#,
    );
    check(
        "-f lavfi -i testsrc -f lavfi -i sine -map 0 -map 1 out.mkv",
        r#"
        input 4 "testsrc": -f "lavfi"
        input 8 "sine": -f "lavfi"
        output 13 "out.mkv": -map "0", -map "1"
        "#,
    );
    // An output before an input is allowed (ffmpeg keeps inputs and outputs apart).
    check(
        "-c:v libx264 out.mp4 -i in.mp4",
        r#"
        input 5 "in.mp4":
        output 3 "out.mp4": -c:v "libx264"
        "#,
    );
}

#[test]
fn values_may_look_like_options() {
    check(
        "-itsoffset -2 -i in.mp4 out.mp4",
        r#"
        input 4 "in.mp4": -itsoffset "-2"
        output 5 "out.mp4":
        "#,
    );
    check(
        "-sseof -1 -i in.mp4 -map -0:s -vf scale=1280:-2 out.mp4",
        r#"
        input 4 "in.mp4": -sseof "-1"
        output 9 "out.mp4": -map "-0:s", -vf "scale=1280:-2"
        "#,
    );
    check(
        r#"-i in.mp4 -vf "scale=1280:-2" out.mp4"#,
        r#"
        input 2 "in.mp4":
        output 5 "out.mp4": -vf "scale=1280:-2"
        "#,
    );
    // `-i` takes the next argument even when it starts with `-`.
    check(
        "-i -part6.mp4 ./-out.mp4",
        r#"
        input 2 "-part6.mp4":
        output 3 "./-out.mp4":
        "#,
    );
    // The value of an unknown option (AVOption) is taken whatever it is.
    check(
        "-i in.mp4 -hls_time -i out.m3u8",
        r#"
        input 2 "in.mp4":
        output 5 "out.m3u8": -hls_time "-i"
        "#,
    );
}

#[test]
fn null_output_and_bare_dash() {
    check(
        "-i in.mp4 -f null -",
        r#"
        input 2 "in.mp4":
        output 5 "-": -f "null"
        "#,
    );
    let command = Command::parse("-i in.mp4 -f null -").unwrap();
    assert_eq!(command.outputs()[0].format(), Some("null"));
    assert_eq!(command.inputs()[0].format(), None);
    let command = Command::parse("-f mp4 -f mov -i in.mp4 out.mp4").unwrap();
    assert_eq!(command.inputs()[0].format(), Some("mov"), "the last -f wins");
}

#[test]
fn boolean_no_forms() {
    check(
        "-noautorotate -i in.mp4 out.mp4",
        r#"
        input 3 "in.mp4": -noautorotate
        output 4 "out.mp4":
        "#,
    );
    check(
        "-noaccurate_seek -ss 10 -i in.mp4 -noautoscale -nocopyinkf:v out.mp4",
        r#"
        input 5 "in.mp4": -noaccurate_seek, -ss "10"
        output 8 "out.mp4": -noautoscale, -nocopyinkf:v
        "#,
    );
    // `autorotate` and `autoscale` are OPT_BOOL | HAS_ARG: the plain form takes a value.
    check(
        "-autorotate 0 -i in.mp4 -autoscale 0 out.mp4",
        r#"
        input 4 "in.mp4": -autorotate "0"
        output 7 "out.mp4": -autoscale "0"
        "#,
    );
    // `-report` and `-vstats` take no value but have no `-no` form: `-noreport` is an
    // (unknown) AVOption, which takes a value.
    check(
        "-report -vstats -noreport x -i in.mp4 out.mp4",
        r#"
        global: -report, -vstats
        input 6 "in.mp4": -noreport "x"
        output 7 "out.mp4":
        "#,
    );
}

#[test]
fn exit_options_take_the_next_argument_if_any() {
    check(
        "-i in.mp4 out.mp4 -h",
        r#"
        global: -h
        input 2 "in.mp4":
        output 3 "out.mp4":
        "#,
    );
    check(
        "-version -i in.mp4 out.mp4",
        r#"
        error: command has no input (`-i URL`)
        "#,
    );
    check(
        "-h full -i in.mp4 out.mp4",
        r#"
        global: -h "full"
        input 4 "in.mp4":
        output 5 "out.mp4":
        "#,
    );
}

#[test]
fn quoting() {
    check(
        r#"-i "my file.mp4" "out file.mp4""#,
        r#"
        input 2 "my file.mp4":
        output 3 "out file.mp4":
        "#,
    );
    check(
        r#"-i 'in.mp4' -metadata title="It's \"quoted\"" 'o'\''k.mp4'"#,
        r#"
        input 2 "in.mp4":
        output 5 "o'k.mp4": -metadata "title=It's \"quoted\""
        "#,
    );
    let command = Command::parse(r#"-i "my file.mp4" -vf "scale=1280:-2" "out file.mp4""#).unwrap();
    assert_eq!(command.to_string(), "-i 'my file.mp4' -vf 'scale=1280:-2' 'out file.mp4'");
}

#[test]
fn errors() {
    check("", "error: command is empty");
    check("   ", "error: command is empty");
    check("-i", "error: argument 1 `-i`: option needs a value");
    check("-i in.mp4 -c:v", "error: argument 3 `-c:v`: option needs a value");
    check("-i in.mp4 out.mp4 -crf", "error: argument 4 `-crf`: option needs a value");
    check("in.mp4", "error: command has no input (`-i URL`)");
    check("-y", "error: command has no input (`-i URL`)");
    check("-i in.mp4", "error: command has no output");
    check("-i in.mp4 -c:v libx264", "error: command has no output");
    check(
        "-i in.mp4 out.mp4 -c:v libx264",
        "error: argument 4 `-c:v`: option after the last output applies to no output",
    );
    check("-i in.mp4 out.mp4 -y -an", "error: argument 5 `-an`: option after the last output applies to no output");
    check("-i in.mp4 -- out.mp4", "error: argument 3 `--`: not a valid option");
    check("-i in.mp4 -:v x out.mp4", "error: argument 3 `-:v`: not a valid option");
    check("-i in.mp4 -c: x out.mp4", "error: argument 3 `-c:`: not a valid option");
    check("-i:v in.mp4 out.mp4", "error: argument 1 `-i:v`: not a valid option");
    check("-i in.mp4 -2 out.mp4", "error: argument 3 `-2`: not a valid option");
    check("-i in.mp4 ---x 1 out.mp4", "error: argument 3 `---x`: not a valid option");
    check(r#"-i "unbalanced"#, "error: command line cannot be split into arguments: missing closing quote");
    assert_eq!(Command::parse(r#"-i "unbalanced"#), Err(CommandError::Split { source: shell_words::ParseError }));
    // shell-words' error is kept as the source.
    let e = Command::parse(r#"-i "unbalanced"#).unwrap_err();
    assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<shell_words::ParseError>()));
    assert_eq!(
        Command::parse("-i in.mp4 out.mp4 -c:v libx264"),
        Err(CommandError::TrailingOption { position: 4, argument: "-c:v".to_owned() })
    );
}

#[test]
fn help_options_spelled_oddly_are_options() {
    check(
        "-i in.mp4 out.mp4 -? x --help y",
        r#"
        global: -? "x", --help "y"
        input 2 "in.mp4":
        output 3 "out.mp4":
        "#,
    );
}

#[test]
fn option_table_helpers() {
    for name in [
        "y",
        "n",
        "an",
        "vn",
        "sn",
        "dn",
        "re",
        "shortest",
        "copyts",
        "stats",
        "nostats",
        "stdin",
        "nostdin",
        "hide_banner",
        "report",
        "vstats",
        "noautorotate",
        "noautoscale",
        "accurate_seek",
        "noaccurate_seek",
        "benchmark",
        "xerror",
        "find_stream_info",
    ] {
        assert!(Command::is_value_less(name), "{name} is value-less");
    }
    for name in [
        "c",
        "crf",
        "preset",
        "movflags",
        "x264-params",
        "hls_time",
        "autorotate",
        "autoscale",
        "itsoffset",
        "filter_complex",
        "h",
        "version",
        "noreport",
        "novstats",
        "i",
        "no",
    ] {
        assert!(!Command::is_value_less(name), "{name} takes a value");
    }
    for name in ["y", "filter_complex", "lavfi", "loglevel", "v", "nostdin", "progress", "vsync", "sdp_file"] {
        assert!(Command::is_global_option(name), "{name} is global");
    }
    for name in ["c", "map", "an", "ss", "f", "crf", "shortest", "noautorotate", "find_stream_info"] {
        assert!(!Command::is_global_option(name), "{name} is per-file");
    }
}

#[test]
fn snapshot_overlay() {
    let command = Command::parse(
        r#"-y -ss 2 -i a.mp4 -i b.png -filter_complex "[0:v][1:v]overlay=10:10" -c:v libx264 -crf 23 -c:a copy -metadata:s:a:0 language=eng out.mp4"#,
    )
    .unwrap();
    insta::assert_debug_snapshot!(command);
}

#[test]
fn snapshot_multi_output() {
    let command = Command::parse("-itsoffset -2 -i in.mp4 -c:v copy a.mp4 -vn -nostats b.m4a -f null -").unwrap();
    insta::assert_debug_snapshot!(command);
}

#[test]
fn snapshot_errors() {
    let errors: Vec<CommandError> = [
        "",
        "-i",
        "-i in.mp4 -c:v",
        "in.mp4",
        "-i in.mp4",
        "-i in.mp4 out.mp4 -c:v libx264",
        "-i in.mp4 -- out.mp4",
        r#"-i "unbalanced"#,
    ]
    .into_iter()
    .map(|line| Command::parse(line).unwrap_err())
    .collect();
    insta::assert_debug_snapshot!(errors);
}

/// Arguments drawn from pieces that exercise every branch of the grammar.
fn arg() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-i".to_owned()),
        Just("-".to_owned()),
        Just("--".to_owned()),
        Just("-y".to_owned()),
        Just("-an".to_owned()),
        Just("-nostdin".to_owned()),
        Just("-h".to_owned()),
        Just("-c:v".to_owned()),
        Just("-filter_complex".to_owned()),
        Just("-crf".to_owned()),
        Just("-autorotate".to_owned()),
        "-?[a-z:_ ]{0,6}",
        "[a-z./%-]{1,8}",
    ]
}

proptest! {
    #[test]
    fn never_panics_and_round_trips(args in prop::collection::vec(arg(), 0..12)) {
        if let Ok(command) = Command::from_args(args.clone()) {
            prop_assert_eq!(command.arg_count(), args.len());
            prop_assert!(!command.inputs().is_empty());
            prop_assert!(!command.outputs().is_empty());
            // The canonical form has the same number of arguments and parses to itself.
            let canonical = command.to_args();
            prop_assert_eq!(canonical.len(), args.len());
            let again = Command::from_args(canonical.clone()).unwrap();
            prop_assert_eq!(again.to_args(), canonical);
            let displayed = Command::parse(&command.to_string()).unwrap();
            prop_assert_eq!(displayed.to_args(), command.to_args());
        }
    }
}

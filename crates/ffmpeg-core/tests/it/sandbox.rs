//! `ffmpeg_core::sandbox`: path containment on a temporary data directory with real files,
//! directories and symlinks; the argument list handed to ffmpeg, run through the installed
//! ffmpeg; and arbitrary path-ish strings (proptest).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use ffmpeg_core::command::Command;
use ffmpeg_core::policy::{Policy, RuleId};
use ffmpeg_core::sandbox::{OutputTarget, PathProblem, Sandbox, SandboxError};
use proptest::prelude::*;
use tempfile::TempDir;

/// A data directory inside a temporary directory (so that `outside/` is a sibling of it):
///
/// ```text
/// tmp/outside/secret.txt
/// tmp/outside/dir/
/// tmp/data/in.mp4
/// tmp/data/sub/clip.mp4
/// tmp/data/thumbs/
/// tmp/data/jobs.db
/// tmp/data/private/key
/// tmp/data/fifo                 (a FIFO)
/// tmp/data/to_secret   -> ../outside/secret.txt
/// tmp/data/to_outside  -> ../outside/dir            (directory symlink escaping)
/// tmp/data/to_clip     -> sub/clip.mp4
/// tmp/data/to_sub      -> sub                       (directory symlink inside)
/// tmp/data/to_root     -> .
/// tmp/data/to_db       -> jobs.db
/// tmp/data/dangling    -> nowhere.mp4
/// tmp/data/abs_inside  -> tmp/data/sub/clip.mp4     (absolute target, inside)
/// ```
struct Fixture {
    _tmp: TempDir,
    data: PathBuf,
    sandbox: Sandbox,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    let data = tmp.path().join("data");
    fs::create_dir_all(outside.join("dir")).unwrap();
    fs::write(outside.join("secret.txt"), "secret").unwrap();
    for dir in ["sub", "thumbs", "private"] {
        fs::create_dir_all(data.join(dir)).unwrap();
    }
    for file in ["in.mp4", "sub/clip.mp4", "jobs.db", "private/key"] {
        fs::write(data.join(file), "x").unwrap();
    }
    let fifo = Process::new("mkfifo").arg(data.join("fifo")).status().unwrap();
    assert!(fifo.success());
    symlink("../outside/secret.txt", data.join("to_secret")).unwrap();
    symlink("../outside/dir", data.join("to_outside")).unwrap();
    symlink("sub/clip.mp4", data.join("to_clip")).unwrap();
    symlink("sub", data.join("to_sub")).unwrap();
    symlink(".", data.join("to_root")).unwrap();
    symlink("jobs.db", data.join("to_db")).unwrap();
    symlink("nowhere.mp4", data.join("dangling")).unwrap();
    symlink(data.join("sub/clip.mp4"), data.join("abs_inside")).unwrap();

    let mut sandbox = Sandbox::new(&data).unwrap();
    sandbox.deny("jobs.db");
    sandbox.deny(data.join("private"));
    sandbox.deny("later.db"); // does not exist yet
    sandbox.deny(outside.join("secret.txt")); // outside: ignored
    Fixture { _tmp: tmp, data, sandbox }
}

/// `ok RELATIVE` or `error: MESSAGE`.
fn render(sandbox: &Sandbox, argument: &str) -> String {
    match sandbox.resolve(argument, 7) {
        Ok(path) => {
            assert!(path.as_path().starts_with(sandbox.root()));
            assert_eq!(path.as_path(), sandbox.root().join(path.relative()));
            assert_eq!(path.to_file_url(), format!("file:{}", path.as_path().display()));
            format!("ok {}", path.relative().display())
        }
        Err(e) => format!("error: {e}"),
    }
}

#[track_caller]
fn check(fixture: &Fixture, argument: &str, expected: &str) {
    assert_eq!(render(&fixture.sandbox, argument), expected, "resolving {argument:?}");
}

#[test]
fn plain_relative_paths() {
    let f = fixture();
    check(&f, "in.mp4", "ok in.mp4");
    check(&f, "./in.mp4", "ok in.mp4");
    check(&f, "sub//clip.mp4", "ok sub/clip.mp4");
    check(&f, "a/../b.mp4", "ok b.mp4");
    check(&f, "sub/./x/../clip.mp4", "ok sub/clip.mp4");
    check(&f, "new/dir/out.mp4", "ok new/dir/out.mp4");
    check(&f, "./-part6.mp4", "ok -part6.mp4");
    check(&f, "-part6.mp4", "ok -part6.mp4");
    check(&f, "thumbs/t%03d.png", "ok thumbs/t%03d.png");
    check(&f, "sub/12:30.mp4", "ok sub/12:30.mp4");
    check(&f, "./a:b.mp4", "ok a:b.mp4");
    check(&f, "my file.mp4", "ok my file.mp4");
}

#[test]
fn absolute_and_escaping_paths() {
    let f = fixture();
    check(
        &f,
        "/etc/passwd",
        "error: argument 7 `/etc/passwd`: absolute paths are not allowed; use a path relative to the data directory",
    );
    let inside = f.data.join("in.mp4").display().to_string();
    assert!(matches!(f.sandbox.resolve(&inside, 1), Err(SandboxError::Absolute { .. })));
    check(&f, "../x", "error: argument 7 `../x`: path escapes the data directory");
    check(&f, "a/../../x", "error: argument 7 `a/../../x`: path escapes the data directory");
    check(&f, "../data/in.mp4", "error: argument 7 `../data/in.mp4`: path escapes the data directory");
    check(&f, "..", "error: argument 7 `..`: path escapes the data directory");
}

#[test]
fn protocols_and_special_names() {
    let f = fixture();
    for (argument, scheme) in [
        ("http://example.com/a.mp4", "http:"),
        ("concat:a.mp4|b.mp4", "concat:"),
        ("subfile,,start,0,end,100,:in.mp4", "subfile,,start,0,end,100,:"),
        ("subfile,sub/x:in.mp4", "subfile,"),
        ("data:text/plain;base64,aGk=", "data:"),
        ("pipe:1", "pipe:"),
        ("pipe:", "pipe:"),
        ("fd:3", "fd:"),
        ("file:x", "file:"),
        ("file:/etc/passwd", "file:"),
        ("c:foo", "c:"),
        ("tcp://127.0.0.1:9", "tcp:"),
        ("-", "-"),
    ] {
        check(
            &f,
            argument,
            &format!("error: argument 7 `{argument}`: only plain file paths are allowed, not `{scheme}`"),
        );
    }
}

#[test]
fn not_files() {
    let f = fixture();
    for argument in ["", ".", "./", "a/..", "sub/", "sub", "thumbs", "to_root", "to_sub", "fifo", "in\0.mp4"] {
        check(&f, argument, &format!("error: argument 7 `{argument}`: not a file path"));
    }
}

/// Tester finding K7: no path holds a control character (C0, DEL, C1), wherever it is
/// named; the message shows the character escaped, and the rule is `control-character`.
#[test]
fn control_characters_are_refused_in_every_path() {
    let f = fixture();
    for (argument, shown) in [
        ("out\n.mp4", "\\n, U+000A"),
        ("sub/a\u{1b}[31m.mp4", "\\u{1b}, U+001B"),
        ("a\rb.mp4", "\\r, U+000D"),
        ("tab\t.mp4", "\\t, U+0009"),
        ("del\u{7f}.mp4", "\\u{7f}, U+007F"),
        ("csi\u{9b}.mp4", "\\u{9b}, U+009B"),
    ] {
        check(
            &f,
            argument,
            &format!(
                "error: argument 7 `{argument}`: a file name cannot hold a control character ({shown}): it would \
                 break playlists, logs and bucket keys"
            ),
        );
        assert_eq!(f.sandbox.resolve(argument, 7).unwrap_err().rule(), RuleId::ControlCharacter);
        assert_eq!(f.sandbox.resolve_file_path(argument).unwrap_err().rule().as_str(), "control-character");
    }
    // Inside an option's value, and in a filter graph.
    let e = f.sandbox.resolve_command(&Command::parse("-i in.mp4 -vf 'subtitles=a\nb.srt' out.mp4").unwrap());
    let e = e.unwrap_err();
    assert_eq!((e.rule(), e.argument().map(|(at, _)| at)), (RuleId::ControlCharacter, Some(3)), "{e}");
    // Other characters outside ASCII are names like any.
    check(&f, "café ☕.mp4", "ok café ☕.mp4");
}

#[test]
fn symlinks() {
    let f = fixture();
    check(&f, "to_secret", "error: argument 7 `to_secret`: path escapes the data directory");
    check(&f, "to_outside/x.mp4", "error: argument 7 `to_outside/x.mp4`: path escapes the data directory");
    check(
        &f,
        "sub/../to_outside/new.mp4",
        "error: argument 7 `sub/../to_outside/new.mp4`: path escapes the data directory",
    );
    check(&f, "dangling", "error: argument 7 `dangling`: path escapes the data directory");
    // Inside to inside: the path that reaches ffmpeg is the link's target.
    check(&f, "to_clip", "ok sub/clip.mp4");
    check(&f, "abs_inside", "ok sub/clip.mp4");
    check(&f, "to_sub/new.mp4", "ok sub/new.mp4");
    check(&f, "to_root/in.mp4", "ok in.mp4");
    check(&f, "to_root/to_root/sub/clip.mp4", "ok sub/clip.mp4");
    // `..` is applied to the text, never through a link: this is `in.mp4` in the data directory.
    check(&f, "to_outside/../in.mp4", "ok in.mp4");
}

/// A file the job writes whose own name is a symbolic link inside the data directory is refused
/// at submission, rule `symbolic-link`, naming the argument (tester finding L10: `link.mp4 ->
/// pl.M3U8` was handed to ffmpeg as `pl.M3U8`, which wrote an HLS playlist and `pl0.ts`). The
/// same link may be read; links to directories on the way are still followed; a link leading
/// out stays `path-escapes`.
#[test]
fn a_written_file_may_not_be_a_symbolic_link() {
    let f = fixture();
    fs::write(f.data.join("pl.M3U8"), "#EXTM3U\n").unwrap();
    symlink("pl.M3U8", f.data.join("link.mp4")).unwrap();
    symlink("../pl.M3U8", f.data.join("sub/list.csv")).unwrap();
    let resolved = |line: &str| f.sandbox.resolve_command(&Command::parse(line).unwrap());
    let refused = |line: &str| resolved(line).unwrap_err();

    for (line, position, argument) in [
        ("-i in.mp4 -t 1 link.mp4", 5, "link.mp4"),
        ("-i in.mp4 -t 1 to_clip", 5, "to_clip"),
        ("-i in.mp4 sub/../abs_inside", 3, "sub/../abs_inside"),
        ("-i in.mp4 to_sub/list.csv", 3, "to_sub/list.csv"),
        ("-i in.mp4 -f hls -hls_time 1 to_root/link.mp4", 7, "to_root/link.mp4"),
    ] {
        let e = refused(line);
        assert_eq!((e.rule(), e.argument()), (RuleId::SymbolicLink, Some((position, argument))), "{line}: {e}");
        assert_eq!(e.rule().as_str(), "symbolic-link");
        assert_eq!(
            e.to_string(),
            format!(
                "argument {position} `{argument}`: a symbolic link where the job writes: a job never writes \
                 through a link (ffmpeg would write the file it leads to, in the format its name says); remove \
                 the link or choose another name"
            )
        );
        assert!(!e.to_string().contains("pl.M3U8"), "where the link leads is not shown: {e}");
    }
    // A file an option writes under its own name (the segment list's type comes from its name).
    let e = refused("-i in.mp4 -f segment -segment_list sub/list.csv seg%03d.ts");
    assert_eq!((e.rule(), e.argument()), (RuleId::SymbolicLink, Some((5, "-segment_list sub/list.csv"))), "{e}");
    // An HLS `%v` output whose expansion for a variant is a link.
    fs::create_dir(f.data.join("v0")).unwrap();
    symlink("../pl.M3U8", f.data.join("v0/index.m3u8")).unwrap();
    let e = refused("-i in.mp4 -map 0:v -f hls -var_stream_map v:0 v%v/index.m3u8");
    assert_eq!(e.rule(), RuleId::SymbolicLink, "{e}");

    // Reading through the same links is fine, and so is writing into a linked directory.
    let ok = resolved("-i link.mp4 -i sub/list.csv -map 0 out.mp4").unwrap();
    assert_eq!(ok.outputs().len(), 1);
    let ok = resolved("-i in.mp4 to_sub/new.mp4").unwrap();
    let OutputTarget::File(path) = &ok.outputs()[0] else { panic!("{ok:?}") };
    assert_eq!(path.relative(), Path::new("sub/new.mp4"));
    // A link leading out of the data directory, or nowhere, is refused as before.
    assert_eq!(refused("-i in.mp4 to_secret").rule(), RuleId::PathEscapes);
    assert_eq!(refused("-i in.mp4 dangling").rule(), RuleId::PathEscapes);
    // `Sandbox::resolve` (no side) follows the link, as the files API and inputs need.
    assert_eq!(f.sandbox.resolve("link.mp4", 1).unwrap().relative(), Path::new("pl.M3U8"));
    assert!(f.sandbox.resolve_output("link.mp4", 1).is_err());
}

#[test]
fn denied_paths() {
    let f = fixture();
    for argument in ["jobs.db", "./jobs.db", "sub/../jobs.db", "to_db", "private/key", "private/new.txt", "later.db"] {
        check(&f, argument, &format!("error: argument 7 `{argument}`: this path is reserved"));
    }
    check(&f, "jobs.db-wal", "ok jobs.db-wal");
    check(&f, "privately.txt", "ok privately.txt");
}

#[test]
fn names_starting_with_a_denied_prefix_are_reserved_in_every_directory() {
    let mut f = fixture();
    f.sandbox.deny_names_starting_with(".upload-");
    f.sandbox.deny_names_starting_with(".upload-"); // twice: kept once
    f.sandbox.deny_names_starting_with(""); // ignored
    assert_eq!(f.sandbox.denied_name_prefixes(), [".upload-".to_owned()]);
    fs::write(f.data.join("sub/.upload-7"), "x").unwrap();
    symlink("sub/.upload-7", f.data.join("to_upload")).unwrap();
    symlink("sub", f.data.join(".upload-dir")).unwrap();
    for argument in [
        ".upload-1.mp4",
        "new/.upload-1.mp4",
        "sub/.upload-7",
        "./sub/x/../.upload-7",
        ".upload-dir/clip.mp4",
        "to_upload",            // a link whose target has the name
        "sub/.upload-%03d.png", // a pattern
    ] {
        check(&f, argument, &format!("error: argument 7 `{argument}`: this path is reserved"));
    }
    for argument in ["upload-1.mp4", "sub/x.upload-1.mp4", "sub/.upload", ".uploads/a.mp4"] {
        check(&f, argument, &format!("ok {}", argument));
    }
    assert_eq!(
        show(
            f.sandbox.root(),
            resolve_line(&f.sandbox, "-i in.mp4 -f hls -hls_segment_filename .upload-%d.ts sub/x.m3u8")
        ),
        "error: argument 5 `-hls_segment_filename .upload-%d.ts`: option `-hls_segment_filename`: this path is reserved"
    );
    // Without the prefix denied, the same names are ordinary.
    check(&fixture(), "new/.upload-1.mp4", "ok new/.upload-1.mp4");
}

#[test]
fn sandbox_root_must_be_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, "x").unwrap();
    let e = Sandbox::new(&file).unwrap_err();
    assert!(
        matches!(&e, SandboxError::Root { path, source } if path == &file && source.kind() == io::ErrorKind::NotADirectory),
        "{e:?}"
    );
    assert_eq!(e.to_string(), format!("data directory `{}` cannot be used: not a directory", file.display()));
    let missing = tmp.path().join("missing");
    let e = Sandbox::new(&missing).unwrap_err();
    assert!(matches!(&e, SandboxError::Root { path, .. } if path == &missing), "{e:?}");
    // The I/O error is kept as the source, not flattened into a string.
    let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<io::Error>());
    assert_eq!(source.map(io::Error::kind), Some(io::ErrorKind::NotFound), "{e:?}");
    assert!(e.to_string().starts_with(&format!("data directory `{}` cannot be used: ", missing.display())));

    // The root is canonicalised: a symlinked or dotted root resolves to the real directory.
    let real = tmp.path().join("real");
    fs::create_dir(&real).unwrap();
    symlink(&real, tmp.path().join("link")).unwrap();
    let sandbox = Sandbox::new(tmp.path().join("link/./")).unwrap();
    assert_eq!(sandbox.root(), fs::canonicalize(&real).unwrap());
}

/// A data directory whose canonical path is not UTF-8 is refused, whether it is named directly
/// or through a symlink with a UTF-8 name: every path handed to ffmpeg would hold it, and a
/// lossy copy (`\u{FFFD}`) names another directory.
#[test]
fn a_data_directory_that_is_not_utf8_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join(OsStr::from_bytes(b"data-\xff\xfe"));
    fs::create_dir(&bad).unwrap();
    let e = Sandbox::new(&bad).unwrap_err();
    assert!(matches!(&e, SandboxError::RootNotUtf8 { path } if path == &bad), "{e:?}");
    assert_eq!(e.rule(), RuleId::DataDirectory);
    assert_eq!(e.argument(), None);
    assert!(
        e.to_string().ends_with("cannot be used: its canonical path is not valid UTF-8; use a directory whose path is")
    );

    let link = tmp.path().join("data");
    symlink(&bad, &link).unwrap();
    let e = Sandbox::new(&link).unwrap_err();
    assert!(matches!(&e, SandboxError::RootNotUtf8 { path } if path == &link), "{e:?}");

    // A UTF-8 directory below it is no way round: its canonical path holds the bad name.
    fs::create_dir(bad.join("inner")).unwrap();
    assert!(matches!(Sandbox::new(bad.join("inner")), Err(SandboxError::RootNotUtf8 { .. })));
}

/// A symlink inside the data directory whose target's name is not UTF-8 (a file, or a
/// directory on the way) is refused with its own rule, in plain arguments, option values and
/// filter options alike; before, the target was handed to ffmpeg with `\u{FFFD}` in place of
/// the bytes, naming another file.
#[test]
fn paths_leading_to_names_that_are_not_utf8_are_refused() {
    let f = fixture();
    fs::write(f.data.join(OsStr::from_bytes(b"\xff.mp4")), "x").unwrap();
    fs::create_dir(f.data.join(OsStr::from_bytes(b"dir-\xe9"))).unwrap();
    symlink(OsStr::from_bytes(b"\xff.mp4"), f.data.join("to_bad.mp4")).unwrap();
    symlink(OsStr::from_bytes(b"dir-\xe9"), f.data.join("to_bad_dir")).unwrap();
    symlink(OsStr::from_bytes(b"\xff.mp4"), f.data.join("to_bad.srt")).unwrap();

    for (argument, position) in [("to_bad.mp4", 2), ("to_bad_dir/out.mp4", 5), ("sub/../to_bad_dir/x/y.mp4", 1)] {
        let e = f.sandbox.resolve(argument, position).unwrap_err();
        assert!(
            matches!(&e, SandboxError::Path { problem: PathProblem::NotUtf8, context, .. } if context.is_empty()),
            "{argument}: {e:?}"
        );
        assert_eq!(e.rule(), RuleId::NonUtf8Path);
        assert_eq!(e.rule().as_str(), "non-utf8-path");
        assert_eq!(e.argument(), Some((position, argument)));
        assert!(e.to_string().contains("not valid UTF-8"), "{e}");
    }

    let refused = |line: &str| {
        let command = Command::parse(line).unwrap();
        f.sandbox.resolve_command(&command).unwrap_err()
    };
    let e = refused("-i to_bad.mp4 out.mp4");
    assert_eq!((e.rule(), e.argument()), (RuleId::NonUtf8Path, Some((2, "to_bad.mp4"))));
    let e = refused("-i in.mp4 -c copy to_bad_dir/out.mp4");
    assert_eq!((e.rule(), e.argument()), (RuleId::NonUtf8Path, Some((5, "to_bad_dir/out.mp4"))));
    let e = refused("-i in.mp4 -passlogfile to_bad_dir/pass out.mp4");
    assert_eq!(e.rule(), RuleId::NonUtf8Path);
    assert!(e.to_string().starts_with("argument 3 `-passlogfile to_bad_dir/pass`: option `-passlogfile`: "), "{e}");
    let e = refused("-i in.mp4 -vf subtitles=to_bad.srt out.mp4");
    assert_eq!(e.rule(), RuleId::NonUtf8Path);
    assert!(e.to_string().contains("filter `subtitles` option `filename`"), "{e}");

    // UTF-8 names that are not ASCII are fine, and reach ffmpeg unchanged.
    fs::write(f.data.join("café.mp4"), "x").unwrap();
    symlink("café.mp4", f.data.join("to_café.mp4")).unwrap();
    let path = f.sandbox.resolve("to_café.mp4", 2).unwrap();
    assert_eq!(path.relative(), Path::new("café.mp4"));
    assert_eq!(path.to_file_url(), format!("file:{}/café.mp4", f.sandbox.root().display()));
    assert_eq!(path.as_str(), path.as_path().to_str().unwrap());
}

fn resolve_line(sandbox: &Sandbox, line: &str) -> Result<Vec<String>, String> {
    let command = Command::parse(line).map_err(|e| e.to_string())?;
    let resolved = sandbox.resolve_command(&command).map_err(|e| e.to_string())?;
    Ok(resolved.to_ffmpeg_args())
}

/// `args` with the data directory replaced by `$DATA` and the format whitelist by `$FORMATS`.
fn show(root: &Path, args: Result<Vec<String>, String>) -> String {
    let root = root.display().to_string();
    let formats = Policy::default().input_format_whitelist();
    match args {
        Ok(args) => args.join(" ").replace(&root, "$DATA").replace(&formats, "$FORMATS"),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn resolve_command_and_ffmpeg_args() {
    let f = fixture();
    let s = &f.sandbox;
    let root = s.root();
    assert_eq!(
        show(root, resolve_line(s, "-y -ss 5 -i in.mp4 -c:v libx264 -crf 23 -filter_complex null out/a.mp4")),
        "-y -filter_complex null -ss 5 -protocol_whitelist file -format_whitelist $FORMATS \
         -i file:$DATA/in.mp4 -c:v libx264 -crf 23 -protocol_whitelist file file:$DATA/out/a.mp4"
    );
    assert_eq!(
        show(root, resolve_line(s, "-i -part6.mp4 -f null -")),
        "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/-part6.mp4 -f null -"
    );
    assert_eq!(
        show(root, resolve_line(s, "-i in.mp4 -c copy a.mp4 -vn ./-b.m4a")),
        "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4 -c copy \
         -protocol_whitelist file file:$DATA/a.mp4 -vn -protocol_whitelist file file:$DATA/-b.m4a"
    );
    // A client's own whitelist is refused (ours would win anyway: it comes last).
    assert_eq!(
        show(root, resolve_line(s, "-protocol_whitelist file,http -i in.m3u8 out.mp4")),
        "error: argument 1 `-protocol_whitelist file,http`: option `-protocol_whitelist` is not \
         allowed: the sandbox sets the whitelists itself (`-protocol_whitelist file`, \
         `-format_whitelist` of the allowed input formats)"
    );
    // An OPT_EXIT option without its argument stays last (when a policy allows it at all).
    let allow_h = Sandbox::new(s.root()).unwrap().with_policy(Policy::default().allow_option("h"));
    assert_eq!(
        show(root, resolve_line(&allow_h, "-i in.mp4 out.mp4 -h")),
        "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4 \
         -protocol_whitelist file file:$DATA/out.mp4 -h"
    );

    let command = Command::parse("-i in.mp4 -f null - -an sub/x.m4a").unwrap();
    let resolved = s.resolve_command(&command).unwrap();
    assert_eq!(resolved.command(), &command);
    assert_eq!(resolved.inputs()[0].file().unwrap().relative(), Path::new("in.mp4"));
    assert_eq!(resolved.outputs()[0], OutputTarget::Null);
    assert!(matches!(&resolved.outputs()[1], OutputTarget::File(p) if p.relative() == Path::new("sub/x.m4a")));
}

#[test]
fn resolve_command_errors() {
    let f = fixture();
    let s = &f.sandbox;
    for (line, expected) in [
        ("-i in.mp4 -f mp4 -", "argument 5 `-`: only plain file paths are allowed, not `-`"),
        ("-i in.mp4 -", "argument 3 `-`: only plain file paths are allowed, not `-`"),
        ("-i - -f null -", "argument 2 `-`: only plain file paths are allowed, not `-`"),
        ("-y -i in.mp4 -c:v libx264 ../x.mp4", "argument 6 `../x.mp4`: path escapes the data directory"),
        ("-i http://x/a.mp4 out.mp4", "argument 2 `http://x/a.mp4`: only plain file paths are allowed, not `http:`"),
        (
            "-i in.mp4 -i /etc/passwd out.mp4",
            "argument 4 `/etc/passwd`: absolute paths are not allowed; use a path relative to the data directory",
        ),
        ("-i in.mp4 jobs.db", "argument 3 `jobs.db`: this path is reserved"),
        ("-i to_secret out.mp4", "argument 2 `to_secret`: path escapes the data directory"),
        (
            "-i in.mp4 -f tee x/a.mp4|[f=nut]tcp://127.0.0.1:9",
            "argument 3 `-f tee`: output format `tee` is not allowed: opens each `|`-separated \
             slave URL without the protocol whitelist (a `tcp:` slave still connects: verified)",
        ),
    ] {
        assert_eq!(show(s.root(), resolve_line(s, line)), format!("error: {expected}"), "{line}");
    }
}

/// Runs the installed ffmpeg with `args` in `dir`; returns stderr.
fn ffmpeg(dir: &Path, args: &[String]) -> (bool, String) {
    let output = Process::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg is installed (CI installs it)");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The `file:` URLs that the sandbox produces work with real ffmpeg: for a name starting with
/// `-`, for printf-style patterns (image2) and for HLS, whose segments land beside the playlist.
#[test]
fn ffmpeg_accepts_the_resolved_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    // Source media, made directly (lavfi inputs cannot pass the sandbox: they are not files).
    let (ok, err) = ffmpeg(
        data,
        &["-f", "lavfi", "-i", "testsrc=d=2:s=160x120:r=25", "-g", "25", "-pix_fmt", "yuv420p", "./-part6.mp4"]
            .map(str::to_owned),
    );
    assert!(ok, "{err}");
    fs::create_dir(data.join("thumbs")).unwrap();
    fs::create_dir(data.join("hls")).unwrap();
    let sandbox = Sandbox::new(data).unwrap();

    let line = "-i -part6.mp4 -vf fps=2 thumbs/t%03d.png -c copy -f hls -hls_time 1 hls/index.m3u8";
    let args = sandbox.resolve_command(&Command::parse(line).unwrap()).unwrap().to_ffmpeg_args();
    let (ok, err) = ffmpeg(data, &args);
    assert!(ok, "{args:?}: {err}");

    let mut thumbs: Vec<String> =
        fs::read_dir(data.join("thumbs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    thumbs.sort();
    assert_eq!(thumbs, ["t001.png", "t002.png", "t003.png", "t004.png"]);
    let playlist = fs::read_to_string(data.join("hls/index.m3u8")).unwrap();
    assert!(playlist.contains("\nindex0.ts\n") && playlist.contains("\nindex1.ts\n"), "{playlist}");
    assert!(data.join("hls/index0.ts").is_file() && data.join("hls/index1.ts").is_file());

    // An HLS playlist in the data directory is not demuxed at all (format whitelist), so the
    // http segment it names is never requested.
    // Named `.txt`: a `.m3u8` name is refused before ffmpeg runs; ffmpeg probes the content.
    fs::write(
        data.join("remote.txt"),
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n",
    )
    .unwrap();
    let line = "-i remote.txt -f null -";
    let args = sandbox.resolve_command(&Command::parse(line).unwrap()).unwrap().to_ffmpeg_args();
    let (ok, err) = ffmpeg(data, &args);
    assert!(!ok && err.contains("Format not on whitelist"), "{err}");
}

/// Path-ish strings made of the pieces that matter.
fn pathish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("a"),
            Just("b"),
            Just("."),
            Just(".."),
            Just("/"),
            Just(":"),
            Just("%"),
            Just("-"),
            Just("to_secret"),
            Just("to_outside"),
            Just("to_root"),
            Just("to_sub"),
            Just("sub"),
            Just("private"),
        ],
        0..10,
    )
    .prop_map(|pieces| pieces.concat())
}

/// One fixture for all cases (building it per case would dominate the run time).
#[test]
fn never_resolves_outside_the_root() {
    let f = fixture();
    let root = f.sandbox.root();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(1024));
    let result = runner.run(&pathish(), |argument| {
        if let Ok(path) = f.sandbox.resolve(&argument, 1) {
            prop_assert!(path.as_path().starts_with(root));
            prop_assert!(path.as_path() != root);
            prop_assert!(!path.as_path().starts_with(root.join("private")));
            prop_assert!(!argument.starts_with('/'));
            // Whatever exists of it, canonicalised, is still inside.
            let mut existing = path.as_path();
            while !existing.exists() {
                existing = existing.parent().unwrap();
            }
            prop_assert!(fs::canonicalize(existing).unwrap().starts_with(root));
            prop_assert_eq!(path.as_path(), root.join(path.relative()));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// `-f null /dev/null` and `-f null NUL` (tutorials, Windows) discard like `-f null -`; other
/// formats still may not write to them.
#[test]
fn null_output_spellings_discard() {
    let f = fixture();
    let s = &f.sandbox;
    for url in ["-", "/dev/null", "NUL", "nul"] {
        let line = format!("-i in.mp4 -an -f null {url}");
        assert_eq!(
            show(s.root(), resolve_line(s, &line)),
            "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4 -an -f null -",
            "{line}"
        );
        let resolved = s.resolve_command(&Command::parse(&line).unwrap()).unwrap();
        assert_eq!(resolved.outputs(), [OutputTarget::Null]);
    }
    assert_eq!(
        show(s.root(), resolve_line(s, "-i in.mp4 -f mp4 /dev/null")),
        "error: argument 5 `/dev/null`: absolute paths are not allowed; use a path relative to the data directory"
    );
    assert_eq!(
        show(s.root(), resolve_line(s, "-i in.mp4 /dev/null")),
        "error: argument 3 `/dev/null`: absolute paths are not allowed; use a path relative to the data directory"
    );
}

/// An output with `-pass` and no `-passlogfile` for its video streams gets the data
/// directory's `ffmpeg2pass` prefix, before its own options; a client's own prefix stays.
#[test]
fn default_pass_log_lives_in_the_data_directory() {
    let f = fixture();
    let s = &f.sandbox;
    let root = s.root();
    assert_eq!(
        show(root, resolve_line(s, "-i in.mp4 -c:v libx264 -b:v 200k -pass 1 -an -f null /dev/null")),
        "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4 \
         -passlogfile $DATA/ffmpeg2pass -c:v libx264 -b:v 200k -pass 1 -an -f null -"
    );
    // Per stream: a narrower `-passlogfile:v:0` leaves other video streams on the default.
    assert_eq!(
        show(root, resolve_line(s, "-i in.mp4 -pass:v 2 -passlogfile:v:0 logs/x out.mp4")),
        "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4 \
         -passlogfile $DATA/ffmpeg2pass -pass:v 2 -passlogfile:v:0 $DATA/logs/x \
         -protocol_whitelist file file:$DATA/out.mp4"
    );
    for line in [
        "-i in.mp4 -pass 1 -passlogfile logs/x -f null -",
        "-i in.mp4 -pass:v 1 -passlogfile:v logs/x -f null -",
        "-i in.mp4 -c:v libx264 out.mp4",
    ] {
        let args = resolve_line(s, line).unwrap();
        assert!(!args.iter().any(|a| a.ends_with("/ffmpeg2pass")), "{line}: {args:?}");
    }
    // Only the output that uses `-pass` gets one.
    assert_eq!(
        show(root, resolve_line(s, "-i in.mp4 -c copy a.mp4 -pass 2 b.mp4")),
        "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4 -c copy \
         -protocol_whitelist file file:$DATA/a.mp4 -passlogfile $DATA/ffmpeg2pass -pass 2 \
         -protocol_whitelist file file:$DATA/b.mp4"
    );
    let resolved = s.resolve_command(&Command::parse("-i in.mp4 -c copy a.mp4 -pass 2 b.mp4").unwrap()).unwrap();
    let logs = resolved.output_side_files(1);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].relative(), Path::new("ffmpeg2pass"));
    assert!(resolved.output_side_files(0).is_empty());
    assert_eq!(resolved.option_files()[0].context(), "option `-pass` (default pass log `ffmpeg2pass`)");
    let footprint = ffmpeg_core::footprint::Footprint::of(&resolved);
    assert!(footprint.writes_file(Path::new("ffmpeg2pass-1.log")));
    assert!(footprint.writes_file(Path::new("ffmpeg2pass-1.log.mbtree")));
    // A policy that does not resolve `-passlogfile` as a file gets nothing added.
    let plain = Sandbox::new(root).unwrap().with_policy(Policy::default().allow_option("passlogfile"));
    let args = resolve_line(&plain, "-i in.mp4 -pass 1 -f null -").unwrap();
    assert!(!args.iter().any(|a| a == "-passlogfile"), "{args:?}");
}

/// The tutorial's two passes, each run by the installed ffmpeg in a scratch directory of its
/// own (as the runner does): pass 2 finds pass 1's default log (and x264's `.mbtree`) in the
/// data directory. With a plain `ffmpeg2pass` in the scratch directory it would fail with
/// "can't open stats file".
#[test]
fn two_passes_in_separate_working_directories_share_the_default_log() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (scratch1, scratch2) = (tmp.path().join("run1"), tmp.path().join("run2"));
    for dir in [&data, &scratch1, &scratch2] {
        fs::create_dir(dir).unwrap();
    }
    let (ok, err) = ffmpeg(
        &data,
        &["-f", "lavfi", "-i", "testsrc=d=1:s=128x96:r=10", "-f", "lavfi", "-i", "sine=d=1", "-shortest", "in.mp4"]
            .map(str::to_owned),
    );
    assert!(ok, "{err}");
    fs::create_dir(data.join("out")).unwrap();
    let sandbox = Sandbox::new(&data).unwrap();
    let pass1 = "-i in.mp4 -c:v libx264 -b:v 200k -pass 1 -an -f null /dev/null";
    let pass2 = "-i in.mp4 -c:v libx264 -b:v 200k -pass 2 -c:a aac out/2pass.mp4";
    let args = sandbox.resolve_command(&Command::parse(pass1).unwrap()).unwrap().to_ffmpeg_args();
    let (ok, err) = ffmpeg(&scratch1, &args);
    assert!(ok, "{args:?}: {err}");
    assert!(data.join("ffmpeg2pass-0.log").is_file() && data.join("ffmpeg2pass-0.log.mbtree").is_file());
    assert_eq!(fs::read_dir(&scratch1).unwrap().count(), 0, "nothing left in the working directory");
    let args = sandbox.resolve_command(&Command::parse(pass2).unwrap()).unwrap().to_ffmpeg_args();
    let (ok, err) = ffmpeg(&scratch2, &args);
    assert!(ok, "{args:?}: {err}");
    assert!(fs::metadata(data.join("out/2pass.mp4")).unwrap().len() > 0);
}

/// Two-pass encoding spelled in the encoder libraries' own settings (issue 8 point 2), each
/// pass run by the installed ffmpeg in a scratch directory of its own (as the runner does),
/// against plain ffmpeg running both passes in one plain directory: the statistics files land
/// in the data directory under the names plain ffmpeg gives them (x264's and x265's defaults,
/// or `stats=`), nothing is left in the scratch directories, and pass 2 finds them.
#[test]
fn encoder_two_pass_settings_keep_their_statistics_in_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let plain = tmp.path().join("plain");
    fs::create_dir(&data).unwrap();
    let (ok, err) = ffmpeg(&data, &["-f", "lavfi", "-i", "testsrc=d=1:s=128x96:r=10", "in.mp4"].map(str::to_owned));
    assert!(ok, "{err}");
    let sandbox = Sandbox::new(&data).unwrap();
    let cases = [
        ("-c:v libx264 -x264-params pass={N}", vec!["x264_2pass.log", "x264_2pass.log.mbtree"]),
        ("-c:v libx264 -x264opts pass={N}:stats=st/a.log", vec!["st/a.log", "st/a.log.mbtree"]),
        // `stats=` wins over the log ffmpeg's `-pass` names (libx264 applies its settings last).
        ("-c:v libx264 -pass {N} -x264-params stats=st/b.log", vec!["st/b.log", "st/b.log.mbtree"]),
        ("-c:v libx265 -x265-params pass={N}", vec!["x265_2pass.log", "x265_2pass.log.cutree"]),
        ("-c:v libx265 -x265-params pass={N}:stats=st/c.log", vec!["st/c.log", "st/c.log.cutree"]),
    ];
    for (i, (options, expected)) in cases.iter().enumerate() {
        let _ = fs::remove_dir_all(&plain);
        fs::create_dir_all(plain.join("st")).unwrap();
        fs::create_dir_all(data.join("st")).unwrap();
        fs::copy(data.join("in.mp4"), plain.join("in.mp4")).unwrap();
        for pass in [1, 2] {
            let options = options.replace("{N}", &pass.to_string());
            let output = if pass == 1 { "-f null -".to_owned() } else { format!("out{i}.mp4") };
            let line = format!("-i in.mp4 -b:v 100k {options} -an {output}");
            // Plain ffmpeg in a plain directory: the reference.
            let args = Command::parse(&line).unwrap().to_args();
            let (ok, err) = ffmpeg(&plain, &args);
            assert!(ok, "plain: {line}: {err}");
            let scratch = tmp.path().join(format!("run{i}-{pass}"));
            fs::create_dir(&scratch).unwrap();
            let args = sandbox.resolve_command(&Command::parse(&line).unwrap()).unwrap().to_ffmpeg_args();
            let (ok, err) = ffmpeg(&scratch, &args);
            assert!(ok, "{line}: {args:?}: {err}");
            let left: Vec<_> = fs::read_dir(&scratch).unwrap().flatten().map(|e| e.file_name()).collect();
            assert!(left.is_empty(), "{line}: left in the working directory: {left:?}");
        }
        for name in expected {
            assert!(plain.join(name).is_file(), "{options}: plain ffmpeg writes {name}");
            assert!(data.join(name).is_file(), "{options}: {name} is in the data directory");
        }
        assert!(fs::metadata(data.join(format!("out{i}.mp4"))).unwrap().len() > 0);
    }
}

/// What the sandbox makes of encoder settings that name files: the value handed to ffmpeg,
/// the files recorded, and the footprint (pass 2 reads what pass 1 writes, so they conflict).
#[test]
fn encoder_settings_files_are_resolved_recorded_and_in_the_footprint() {
    use ffmpeg_core::footprint::Footprint;
    let f = fixture();
    let s = &f.sandbox;
    let root = s.root();
    let check = |line: &str, expected: &str| assert_eq!(show(root, resolve_line(s, line)), expected, "{line}");
    check(
        "-i in.mp4 -c:v libx265 -x265-params pass=1:stats=st/x.log -f null -",
        "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4 -c:v libx265 \
         -x265-params pass=1:stats=$DATA/st/x.log -f null -",
    );
    check(
        "-i in.mp4 -c:v libx265 -x265-params crf=20:pass=2 out.mp4",
        "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4 -c:v libx265 \
         -x265-params crf=20:pass=2:stats=$DATA/x265_2pass.log -protocol_whitelist file file:$DATA/out.mp4",
    );
    check(
        "-i in.mp4 -c:v libx264 -x264opts pass=1 -f null -",
        "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4 -c:v libx264 \
         -x264opts pass=1:stats=$DATA/x264_2pass.log -f null -",
    );
    // With ffmpeg's `-pass`, libx264 takes its log from `-passlogfile`: no x264 default.
    check(
        "-i in.mp4 -c:v libx264 -pass 1 -x264-params pass=1 -f null -",
        "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4 \
         -passlogfile $DATA/ffmpeg2pass -c:v libx264 -pass 1 -x264-params pass=1 -f null -",
    );
    // `stats` in one spelling is not overridden by a default in the other.
    check(
        "-i in.mp4 -c:v libx264 -x264opts stats=s.log -x264-params pass=1 -f null -",
        "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4 -c:v libx264 \
         -x264opts stats=$DATA/s.log -x264-params pass=1 -f null -",
    );
    // Keywords are not files; other settings pass unchanged.
    check(
        "-i in.mp4 -c:v libx265 -x265-params scaling-list=default:keyint=50 out.mp4",
        "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4 -c:v libx265 \
         -x265-params scaling-list=default:keyint=50 -protocol_whitelist file file:$DATA/out.mp4",
    );
    check(
        "-i in.mp4 -c:v libx264 -x264-params cqm=flat:cqmfile=m.cfg out.mp4",
        "-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4 -c:v libx264 \
         -x264-params cqm=flat:cqmfile=$DATA/m.cfg -protocol_whitelist file file:$DATA/out.mp4",
    );
    // A rewritten dictionary is escaped so that ffmpeg reads the same pairs back.
    check(
        r"-i in.mp4 -c:v libx264 -x264-params 'stats=a\ b.log:zones=0,10,b=2' -f null -",
        r"-protocol_whitelist file -format_whitelist $FORMATS -i file:$DATA/in.mp4 -c:v libx264 -x264-params stats=$DATA/a\ b.log:zones=0,10,b\=2 -f null -",
    );

    let resolve = |line: &str| s.resolve_command(&Command::parse(line).unwrap()).unwrap();
    let pass1 = resolve("-i in.mp4 -c:v libx265 -x265-params pass=1:csv=logs/c.csv -f null -");
    let files: Vec<(&str, &Path)> = pass1.option_files().iter().map(|f| (f.context(), f.path().relative())).collect();
    assert_eq!(
        files,
        [
            ("option `-x265-params` key `csv`", Path::new("logs/c.csv")),
            ("option `-x265-params` (default `stats` file `x265_2pass.log`)", Path::new("x265_2pass.log")),
        ]
    );
    let fp1 = Footprint::of(&pass1);
    for name in ["x265_2pass.log", "x265_2pass.log.temp", "x265_2pass.log.cutree", "x265_2pass.log.cutree.temp"] {
        assert!(fp1.writes_file(Path::new(name)), "{name}");
    }
    assert!(fp1.writes_file(Path::new("logs/c.csv")));
    let pass2 = Footprint::of(&resolve("-i in.mp4 -c:v libx265 -x265-params pass=2 out.mp4"));
    assert!(pass2.touches_file(Path::new("x265_2pass.log.cutree")));
    assert!(pass1.command().outputs().len() == 1 && fp1.conflicts_with(&pass2), "pass 2 waits for pass 1");
    let other = Footprint::of(&resolve("-i in.mp4 -c:v libx265 -x265-params pass=1:stats=b.log -f null -"));
    assert!(!other.conflicts_with(&pass2), "another stats file does not conflict");
}

/// `ok ENTRY, ENTRY` (relative to the data directory) or `error RULE: MESSAGE`.
fn entries(sandbox: &Sandbox, list: &str, text: &str) -> String {
    let resolved = sandbox.resolve_input(list, 3).unwrap();
    match sandbox.concat_entries(&resolved, text, 3, list) {
        Ok(entries) => {
            let shown: Vec<String> = entries.iter().map(|e| e.relative().display().to_string()).collect();
            format!("ok {}", shown.join(", "))
        }
        Err(e) => format!("error {}: {e}", e.rule()),
    }
}

#[test]
fn concat_list_entries_are_resolved_from_the_lists_directory_and_checked() {
    let f = fixture();
    let s = &f.sandbox;
    // Relative to the list's directory, through links inside, in order, without repeats.
    assert_eq!(entries(s, "list.txt", "file in.mp4\nfile 'sub/clip.mp4'\nfile in.mp4\n"), "ok in.mp4, sub/clip.mp4");
    assert_eq!(
        entries(s, "sub/list.txt", "ffconcat version 1.0\nfile clip.mp4\nfile later.mp4\n"),
        "ok sub/clip.mp4, sub/later.mp4"
    );
    assert_eq!(entries(s, "list.txt", "file to_clip\nfile to_sub/clip.mp4\n"), "ok sub/clip.mp4");
    // What leaves the data directory, or is reserved, is refused with its rule, naming the entry.
    assert_eq!(
        entries(s, "list.txt", "file in.mp4\nfile to_secret\n"),
        "error path-escapes: argument 3 `list.txt`: entry `to_secret` of concat list `list.txt`: path escapes the \
         data directory"
    );
    assert_eq!(
        entries(s, "sub/list.txt", "file ../../outside/secret.txt\n"),
        "error path-escapes: argument 3 `sub/list.txt`: entry `../../outside/secret.txt` of concat list \
         `sub/list.txt`: path escapes the data directory"
    );
    for (text, rule) in [
        ("file to_outside/x.mp4\n", "path-escapes"),
        ("file dangling\n", "path-escapes"),
        ("file /etc/passwd\n", "absolute-path"),
        ("file 'http://example.com/a.mp4'\n", "protocol"),
        ("file pipe:0\n", "protocol"),
        ("file jobs.db\n", "reserved-path"),
        ("file to_db\n", "reserved-path"),
        ("file private/key\n", "reserved-path"),
        ("file sub\n", "not-a-file"),
        ("file fifo\n", "not-a-file"),
    ] {
        let shown = entries(s, "list.txt", text);
        assert!(shown.starts_with(&format!("error {rule}: ")), "{text:?}: {shown}");
    }
    // Names ffmpeg's safe mode refuses by itself ("Unsafe file name") are never opened: not
    // listed, nothing to stage; ffmpeg fails the run naming them.
    assert_eq!(entries(s, "list.txt", "file 'a b.mp4'\nfile sub/../in.mp4\nfile ./in.mp4\n"), "ok ");
}

#[test]
fn a_dangling_link_inside_the_data_directory_is_told_apart() {
    let f = fixture();
    let s = &f.sandbox;
    symlink("missing_dir", f.data.join("nd")).unwrap();
    symlink(f.data.join("sub/missing.mp4"), f.data.join("abs_missing")).unwrap();
    symlink("to_nowhere_out", f.data.join("chain")).unwrap();
    symlink("../outside/missing", f.data.join("to_nowhere_out")).unwrap();
    for (path, link) in [
        ("dangling", Some("dangling")),
        ("nd/a/x.txt", Some("nd")),
        ("sub/../nd/x.txt", Some("nd")),
        ("to_sub/../abs_missing", Some("abs_missing")),
        ("to_root/nd/x", Some("nd")),
        // Leading out, or through another dangling link: not told apart (it escapes).
        ("to_nowhere_out", None),
        ("chain", None),
        ("to_outside/x.mp4", None),
        // Not dangling at all.
        ("in.mp4", None),
        ("missing.mp4", None),
        ("../x", None),
    ] {
        assert_eq!(s.dangling_link_inside(path), link.map(PathBuf::from), "{path}");
    }
}

/// `-passlogfile PREFIX` names no file: ffmpeg writes and reads `PREFIX-N.log` (and libx264
/// `PREFIX-N.log.mbtree`), never `PREFIX` (`"%s-%d.log"`, `fftools/ffmpeg_mux_init.c`). So what
/// is at `PREFIX` (a directory, a FIFO, a link, nothing) does not matter, and its name is kept
/// as written, a link there not followed (ffmpeg appends to the text: `to_clip` gives
/// `to_clip-0.log`, not `sub/clip.mp4-0.log`). The directories above it are resolved as for any
/// path, and the data directory itself, a trailing `/`, `..` above the data directory or a
/// reserved name stay refused (tester finding L13: a directory there was refused).
#[test]
fn a_pass_log_prefix_is_a_name_not_a_file() {
    let f = fixture();
    let prefix = |value: &str| {
        let line = format!("-i in.mp4 -c:v libx264 -pass 1 -passlogfile {value} -f null -");
        match f.sandbox.resolve_command(&Command::parse(&line).unwrap()) {
            Ok(resolved) => {
                let files = resolved.option_files();
                assert_eq!(files.len(), 1, "{value}: {files:?}");
                format!("ok {}", files[0].path().relative().display())
            }
            Err(e) => format!("error: {e}"),
        }
    };
    for (value, expected) in [
        // Existing directories, a FIFO, links (inside, out, dangling), nothing.
        ("sub", "ok sub"),
        ("thumbs", "ok thumbs"),
        ("sub/logs", "ok sub/logs"),
        ("fifo", "ok fifo"),
        ("to_clip", "ok to_clip"),
        ("to_sub", "ok to_sub"),
        ("to_outside", "ok to_outside"),
        ("dangling", "ok dangling"),
        ("new/x", "ok new/x"),
        // The directories above it resolve as always.
        ("to_sub/x", "ok sub/x"),
        (
            "to_outside/x",
            "error: argument 7 `-passlogfile to_outside/x`: option `-passlogfile`: path escapes the data directory",
        ),
        (".", "error: argument 7 `-passlogfile .`: option `-passlogfile`: not a file path"),
        ("sub/", "error: argument 7 `-passlogfile sub/`: option `-passlogfile`: not a file path"),
        ("../x", "error: argument 7 `-passlogfile ../x`: option `-passlogfile`: path escapes the data directory"),
    ] {
        assert_eq!(prefix(value), expected, "-passlogfile {value}");
    }
    // Denied names stay denied.
    assert!(prefix("private").starts_with("error: "), "{}", prefix("private"));
    assert!(prefix("jobs.db").starts_with("error: "), "{}", prefix("jobs.db"));
}

//! `ffmpeg-worker submit | status | list | ...` runs the `ffmpeg-worker-client` program found
//! beside the binary (else on PATH), with the arguments verbatim, and exits with its status.
//!
//! A stand-in client: a symlink named `ffmpeg-worker-client` to `/bin/sh`, so `ffmpeg-worker
//! submit ARGS` runs `sh submit ARGS`, which reads the script `submit` from the working
//! directory (nothing freshly written is executed, so no "text file busy" under parallel tests).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A directory holding a hard link to the real `ffmpeg-worker` (so `current_exe()` is there).
fn install_server() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let exe = dir.path().join("ffmpeg-worker");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_ffmpeg-worker"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_ffmpeg-worker"), &exe).unwrap();
    }
    (dir, exe)
}

/// Puts the stand-in client in `dir`, with scripts for `subcommands` that print each argument
/// in angle brackets and exit 7.
fn install_client(dir: &Path, subcommands: &[&str]) {
    std::os::unix::fs::symlink("/bin/sh", dir.join("ffmpeg-worker-client")).unwrap();
    for name in subcommands {
        std::fs::write(dir.join(name), "printf '<%s>\\n' \"$@\"\nexit 7\n").unwrap();
    }
}

/// Runs `exe args` in `cwd` with `PATH=path`.
fn run(exe: &Path, args: &[&str], cwd: &Path, path: &Path) -> Output {
    Command::new(exe)
        .args(args)
        .current_dir(cwd)
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg-worker runs")
}

#[test]
fn client_subcommands_run_the_client_beside_the_binary_with_the_arguments_verbatim() {
    let (dir, exe) = install_server();
    install_client(dir.path(), &["submit", "status", "put"]);
    let empty = tempfile::tempdir().unwrap();
    let out = run(&exe, &["submit", "--wait", "--", "-i", "my clip.mp4", "--url", "out.mp4"], dir.path(), empty.path());
    assert_eq!(out.status.code(), Some(7), "the client's exit status: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "<--wait>\n<-->\n<-i>\n<my clip.mp4>\n<--url>\n<out.mp4>\n",
        "every argument, `--` included, reaches the client unchanged"
    );
    // The file commands too (they were "unrecognized subcommand" through this binary).
    let out = run(&exe, &["put", "clip.mp4", "in/clip.mp4"], dir.path(), empty.path());
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()),
        (Some(7), "<clip.mp4>\n<in/clip.mp4>\n")
    );
    // After server options, a client subcommand is a mistake that says so.
    let out = run(&exe, &["--port", "1", "status", "job_0123456789abcdef"], dir.path(), empty.path());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("'status' cannot be used with '--port"), "{out:?}");
    let help = run(&exe, &["help", "status"], dir.path(), empty.path());
    assert_eq!((help.status.code(), String::from_utf8_lossy(&help.stdout).as_ref()), (Some(7), "<--help>\n"));

    let listed = run(&exe, &["--help"], dir.path(), empty.path());
    let text = String::from_utf8_lossy(&listed.stdout);
    let names =
        ["serve", "submit", "status", "list", "cancel", "delete", "logs", "wait", "put", "get", "ls", "rm", "probe"];
    for name in names {
        assert!(text.lines().any(|l| l.trim_start().starts_with(&format!("{name} "))), "--help lists {name}: {text}");
    }
}

#[test]
fn the_client_is_found_on_path_when_not_beside_the_binary() {
    let (dir, exe) = install_server();
    let elsewhere = tempfile::tempdir().unwrap();
    install_client(elsewhere.path(), &["list"]);
    let out = run(&exe, &["list", "--all"], elsewhere.path(), elsewhere.path());
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "<--all>\n");
    drop(dir);
}

#[test]
fn a_missing_client_exits_2_saying_what_to_install() {
    let (dir, exe) = install_server();
    let empty = tempfile::tempdir().unwrap();
    let out = run(&exe, &["status", "job_0123456789abcdef"], dir.path(), empty.path());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`status` is a client command"), "{stderr}");
    assert!(stderr.contains("`ffmpeg-worker-client` program"), "{stderr}");
    assert!(stderr.contains("cargo build --release"), "{stderr}");
    assert!(out.stdout.is_empty());
}

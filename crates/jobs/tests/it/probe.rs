//! `jobs::probe` against the installed ffmpeg, and against stand-ins that fail, hang or are not
//! ffmpeg at all.

use std::path::Path;
use std::time::Duration;

use ffmpeg_core::capabilities::NameKind;
use ffmpeg_core::command::Command;
use jobs::probe::{ProbeError, probe_capabilities, probe_capabilities_within};

use crate::fixture::{self, fake_ffmpeg, wait_gone};

#[tokio::test]
async fn the_installed_ffmpeg() {
    let caps = probe_capabilities(Path::new("ffmpeg")).await.unwrap();
    assert!(caps.version().is_some_and(|v| !v.is_empty()), "{caps:?}");
    // Names every ffmpeg build this service supports has.
    for (kind, name) in [
        (NameKind::Option, "crf"),
        (NameKind::Option, "movflags"),
        (NameKind::Option, "hls_time"),
        (NameKind::Encoder, "libx264"),
        (NameKind::Encoder, "aac"),
        (NameKind::Decoder, "h264"),
        (NameKind::Muxer, "mp4"),
        (NameKind::Muxer, "hls"),
        (NameKind::Demuxer, "mp4"),
        (NameKind::Demuxer, "lavfi"),
        (NameKind::Filter, "scale"),
    ] {
        assert!(caps.knows(kind, name), "{kind} {name}: {caps:?}");
    }

    let check = |line: &str| caps.check(&Command::parse(line).unwrap()).map_err(|e| e.to_string());
    assert_eq!(
        check("-i in.mp4 -c:v libx264 -preset fast -crf 23 -movflags +faststart -vf scale=640:-2 out.mp4"),
        Ok(())
    );
    assert_eq!(
        check("-i in.mp4 -crff 23 out.mp4"),
        Err("argument 3 `-crff`: unknown option `crff`; did you mean `-crf`?".to_owned())
    );
    assert_eq!(
        check("-f lavfi -i testsrc -vf scal=1:1 -f mp5 out.mp4"),
        Err("argument 6 `scal=1:1`: unknown filter `scal`; did you mean `scale`?".to_owned())
    );
}

#[tokio::test]
async fn a_missing_binary() {
    let dir = tempfile::tempdir().unwrap();
    let err = probe_capabilities(&dir.path().join("no-such-ffmpeg")).await.unwrap_err();
    assert!(matches!(err, ProbeError::Spawn { .. }), "{err}");
}

#[tokio::test]
async fn a_failing_binary() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_ffmpeg(dir.path(), "echo 'Unrecognized option' >&2; exit 1");
    let err = probe_capabilities(&bin).await.unwrap_err();
    let ProbeError::Failed { stderr, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(stderr, "Unrecognized option");
}

#[tokio::test]
async fn a_binary_that_is_not_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_ffmpeg(dir.path(), "echo hello");
    let err = probe_capabilities(&bin).await.unwrap_err();
    assert!(matches!(err, ProbeError::NothingKnown { .. }), "{err}");
}

#[tokio::test]
async fn a_hanging_binary_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let bin = fake_ffmpeg(dir.path(), &format!("echo $$ >> {}; exec /usr/bin/sleep 1000", pids.display()));
    let err = probe_capabilities_within(&bin, Duration::from_millis(500)).await.unwrap_err();
    assert!(matches!(err, ProbeError::TimedOut { .. }), "{err}");

    // kill_on_drop: every stand-in is gone (killed and reaped by tokio) soon after.
    wait_gone(fixture::pids(&std::fs::read_to_string(&pids).unwrap()), Duration::from_secs(10)).await;
}

#[tokio::test]
async fn an_ffmpeg_older_than_5_is_refused_with_its_version() {
    let dir = tempfile::tempdir().unwrap();
    // ffmpeg prints its banner on stderr.
    let bin = fake_ffmpeg(dir.path(), "echo 'ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c) 2000-2021' >&2");
    let err = probe_capabilities(&bin).await.unwrap_err();
    assert!(matches!(&err, ProbeError::TooOld { version, .. } if version == "4.4.2-0ubuntu0.22.04.1"), "{err}");
    assert!(err.to_string().contains("not ffmpeg >= 5.0"), "{err}");
}

#[test]
fn supported_versions() {
    use jobs::probe::is_supported_version;
    for (version, ok) in [
        ("5.1.9-0+deb12u1", true),
        ("6.0", true),
        ("n7.1", true),
        ("N-112345-gabcdef", true),
        ("4.4.2-0ubuntu0.22.04.1", false),
        ("n4.3", false),
        ("garbage", false),
    ] {
        assert_eq!(is_supported_version(version), ok, "{version}");
    }
}

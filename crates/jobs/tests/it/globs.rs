//! `-pattern_type glob` inputs run as jobs read what a plain ffmpeg 5.1 run in an ordinary
//! directory reads (same files, same order, same timestamps), and a match that leads out of
//! the data directory fails the job (issue 8 point 5).

use std::path::Path;

use ffmpeg_core::command::Command;
use ffmpeg_core::sandbox::Sandbox;
use jobs::JobStatus;

use crate::fixture::run_job;

/// Images in `dir/seq`, each a different colour, in an order that differs from creation
/// order, plus a dot-file and a file of another extension that the patterns below skip.
fn make_images(dir: &Path) {
    std::fs::create_dir_all(dir.join("seq")).unwrap();
    for (name, colour) in [
        ("img10.png", "red"),
        ("img9.png", "green"),
        ("img1.png", "blue"),
        ("Img2.png", "white"),
        (".img0.png", "black"),
        ("img3.jpg", "yellow"),
    ] {
        let status = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
            .arg(format!("color={colour}:s=32x32"))
            .args(["-frames:v", "1"])
            .arg(dir.join("seq").join(name))
            .status()
            .unwrap();
        assert!(status.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_inputs_read_what_plain_ffmpeg_reads() {
    for pattern in ["seq/*.png", "seq/img?.png", "seq/[iI]mg[0-9]*.png", "seq/img1*.png"] {
        // Frame checksums with timestamps: order, frame rate and content in one file.
        let command = format!("-framerate 30 -pattern_type glob -i '{pattern}' -f framemd5 out/frames.md5");
        let plain = tempfile::tempdir().unwrap();
        make_images(plain.path());
        std::fs::create_dir(plain.path().join("out")).unwrap();
        let output = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-y", "-v", "error"])
            .args(Command::parse(&command).unwrap().to_args())
            .current_dir(plain.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let expected = std::fs::read_to_string(plain.path().join("out/frames.md5")).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(dir.path()).unwrap();
        let root = sandbox.root().to_owned();
        make_images(&root);
        let job = run_job(&root, sandbox, &command).await;
        assert_eq!(job.status, JobStatus::Completed, "{command}: {job:?}");
        let got = std::fs::read_to_string(root.join("out/frames.md5")).unwrap();
        assert_eq!(got, expected, "{command}");
        assert!(got.lines().filter(|l| !l.starts_with('#')).count() >= 2, "{got}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glob_match_leading_out_fails_the_job_and_none_fails_it_too() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.png"), "not for jobs").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let root = sandbox.root().to_owned();
    make_images(&root);
    // Planted after submission would be the same: matches are listed right before the run.
    std::os::unix::fs::symlink(outside.path().join("secret.png"), root.join("seq/img5.png")).unwrap();
    let job = run_job(&root, sandbox.clone(), "-pattern_type glob -i 'seq/*.png' -c:v libx264 out/a.mp4").await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert_eq!(
        job.error.as_deref(),
        Some("argument 4 `seq/*.png`: match `seq/img5.png`: path escapes the data directory")
    );
    assert!(!root.join("out/a.mp4").exists());

    let job = run_job(&root, sandbox, "-pattern_type glob -i 'seq/*.gif' -c:v libx264 out/b.mp4").await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert_eq!(job.error.as_deref(), Some("input `seq/*.gif`: the glob pattern matches no file"));
}

/// A temporary directory whose path is not UTF-8 cannot hold a glob's sequence: ffmpeg gets
/// that path as text. The job fails naming it, rather than ffmpeg reading a mangled path.
#[test]
fn a_temporary_directory_that_is_not_utf8_is_named_not_mangled() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_images(&data);
    let scratch_root = dir.path().join(std::ffi::OsStr::from_bytes(b"tmp-\xff"));
    std::fs::create_dir(&scratch_root).unwrap();
    let sandbox = Sandbox::new(&data).unwrap();
    let command = Command::parse("-pattern_type glob -i 'seq/*.png' out.mkv").unwrap();
    let mut resolved = sandbox.resolve_command(&command).unwrap();
    let job = jobs::JobId::generate();
    let error = jobs::globs::expand(&sandbox, &mut resolved, &job, &scratch_root).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("not valid UTF-8") && text.contains("TMPDIR"), "{text}");
}

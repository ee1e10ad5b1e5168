//! Concat lists run in place (the data directory on a disk): what a list names is checked by
//! the sandbox before ffmpeg starts, as the command's own inputs are; real ffmpeg, lavfi media.

use std::fs;
use std::os::unix::fs::symlink;

use ffmpeg_core::sandbox::Sandbox;
use jobs::JobStatus;

use crate::fixture::{lavfi_clip, run_jobs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concat_entry_leading_out_of_the_data_directory_fails_the_job_before_ffmpeg_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, outside) = (tmp.path().join("data"), tmp.path().join("outside"));
    fs::create_dir_all(data.join("parts")).unwrap();
    fs::create_dir_all(data.join("lists")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    lavfi_clip(&data.join("parts/a.mp4"), 1);
    lavfi_clip(&outside.join("private.mp4"), 1);
    // Safe names all (ffmpeg's safe mode accepts them), one a link leading out.
    symlink("../../outside/private.mp4", data.join("parts/b.mp4")).unwrap();
    symlink("a.mp4", data.join("parts/inside.mp4")).unwrap();
    fs::write(data.join("lists/out.txt"), "file ../parts/a.mp4\n").unwrap();
    fs::write(data.join("parts/leak.txt"), "file a.mp4\nfile b.mp4\n").unwrap();
    fs::write(data.join("parts/ok.txt"), "file a.mp4\nfile inside.mp4\nfile nested.ffconcat\n").unwrap();
    fs::write(data.join("parts/nested.ffconcat"), "ffconcat version 1.0\nfile a.mp4\n").unwrap();
    fs::write(data.join("parts/nested_leak.txt"), "file a.mp4\nfile leak.ffconcat\n").unwrap();
    fs::write(data.join("parts/leak.ffconcat"), "ffconcat version 1.0\nfile b.mp4\n").unwrap();

    // Plain ffmpeg, in safe mode, reads the private file through the link.
    let plain = std::process::Command::new("ffmpeg")
        .current_dir(&data)
        .args(["-nostdin", "-v", "error", "-f", "concat", "-i", "parts/leak.txt", "-c", "copy", "-f", "null", "-"])
        .status()
        .unwrap();
    assert!(plain.success());

    let jobs = run_jobs(
        &data,
        Sandbox::new(&data).unwrap(),
        &[
            "-f concat -i parts/leak.txt -c copy out/leak.mp4",
            "-f concat -i parts/nested_leak.txt -c copy out/nested_leak.mp4",
            "-f concat -i parts/ok.txt -c copy out/ok.mp4",
            "-f concat -i lists/out.txt -c copy out/unsafe.mp4",
        ],
    )
    .await;
    for (job, list) in [(&jobs[0], "parts/leak.txt"), (&jobs[1], "parts/leak.ffconcat")] {
        assert_eq!(job.status, JobStatus::Failed, "{job:?}");
        let error = job.error.as_deref().unwrap();
        assert!(
            error.contains(&format!("entry `b.mp4` of concat list `{list}`: path escapes the data directory")),
            "{error}"
        );
    }
    assert!(!data.join("out/leak.mp4").exists() && !data.join("out/nested_leak.mp4").exists());
    // Links inside and nested lists are fine: a, a (through the link), a (nested).
    assert_eq!(jobs[2].status, JobStatus::Completed, "{:?}", jobs[2].error);
    assert!(data.join("out/ok.mp4").exists());
    // `..` that stays inside passes the sandbox; ffmpeg's safe mode refuses it by itself.
    assert_eq!(jobs[3].status, JobStatus::Failed, "{:?}", jobs[3]);
    let error = jobs[3].error.as_deref().unwrap();
    assert!(error.contains("Unsafe file name '../parts/a.mp4'"), "{error}");
}

/// A job whose output is one of its own concat list's entries fails before ffmpeg starts and
/// leaves the entry as it was (tester G20: `-c copy self/a.mp4` from a list naming `a.mp4`
/// completed and cut the 10 s input down to 2 s). Outputs that are not entries run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_is_an_entry_of_its_own_concat_list_fails_the_job_and_keeps_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(data.join("self/sub")).unwrap();
    lavfi_clip(&data.join("self/a.mp4"), 1);
    lavfi_clip(&data.join("self/sub/b.mp4"), 1);
    fs::write(data.join("self/list.txt"), "file 'a.mp4'\nfile 'a.mp4'\n").unwrap();
    fs::write(data.join("self/outer.txt"), "file 'a.mp4'\nfile 'sub/inner.ffconcat'\n").unwrap();
    fs::write(data.join("self/sub/inner.ffconcat"), "ffconcat version 1.0\nfile 'b.mp4'\n").unwrap();
    let before = (fs::read(data.join("self/a.mp4")).unwrap(), fs::read(data.join("self/sub/b.mp4")).unwrap());

    let jobs = run_jobs(
        &data,
        Sandbox::new(&data).unwrap(),
        &[
            "-f concat -i self/list.txt -c copy self/a.mp4",
            // An entry of a nested list, named by another path to it.
            "-f concat -i self/outer.txt -c copy self/sub/../sub/b.mp4",
            "-f concat -i self/list.txt -c copy self/joined.mp4",
        ],
    )
    .await;
    for (job, list, entry) in
        [(&jobs[0], "self/list.txt", "self/a.mp4"), (&jobs[1], "self/sub/inner.ffconcat", "self/sub/b.mp4")]
    {
        assert_eq!(job.status, JobStatus::Failed, "{job:?}");
        let error = job.error.as_deref().unwrap();
        assert!(error.contains("a job's outputs may not overwrite its own inputs"), "{error}");
        assert!(error.contains(&format!("`{list}` entry `{entry}`")), "{error}");
    }
    assert_eq!(
        (fs::read(data.join("self/a.mp4")).unwrap(), fs::read(data.join("self/sub/b.mp4")).unwrap()),
        before,
        "the entries are untouched"
    );
    assert_eq!(jobs[2].status, JobStatus::Completed, "{:?}", jobs[2].error);
}

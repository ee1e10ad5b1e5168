//! Orphaned ffmpeg processes are found and stopped; others are left alone.

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use jobs::orphans::{find_orphans, stop_orphans};

fn spawn_lookalike(args: &[&str]) -> std::process::Child {
    // `sh -c 'sleep 60' ARGS...`: the extra arguments are sh's positional parameters, so the
    // process's command line carries them like an ffmpeg started by the runner would.
    std::process::Command::new("sh").arg("-c").arg("exec sleep 60").args(args).process_group(0).spawn().unwrap()
}

#[test]
fn orphans_under_the_data_dir_are_stopped_and_others_are_not() {
    let data = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let url = format!("file:{}/out.mp4", data.path().display());
    let other_url = format!("file:{}/out.mp4", other.path().display());
    let mut ours = std::process::Command::new("sh")
        .arg("-c")
        .arg("sleep 60; true")
        .args(["-progress", "pipe:1", &url])
        .process_group(0)
        .spawn()
        .unwrap();
    let mut elsewhere = spawn_lookalike(&["-progress", "pipe:1", &other_url]);
    let mut no_progress = spawn_lookalike(&[&url]);

    // Right after spawn, /proc may still show the pre-exec command line: poll with a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        let found = find_orphans(data.path());
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(found.iter().map(|o| o.pid).collect::<Vec<_>>(), [ours.id() as i32], "{found:?}");
    let stopped = stop_orphans(data.path());
    assert_eq!(stopped.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ours.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the orphan was not stopped");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(elsewhere.try_wait().unwrap().is_none(), "another data dir's process is left alone");
    assert!(no_progress.try_wait().unwrap().is_none(), "a process that is not the runner's is left alone");
    let _ = elsewhere.kill();
    let _ = no_progress.kill();
    let _ = elsewhere.wait();
    let _ = no_progress.wait();
}

//! Orphaned ffmpeg processes are recognised by their scratch directory's free lock, not by
//! names: they are found and stopped; a live run's processes and others are left alone.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use jobs::orphans::{SCRATCH_PREFIX, ScratchDir, find_orphans, stop_orphans};

/// `sh -c 'sleep 60; true' ARGS...` in `cwd`, its own process-group leader: the extra
/// arguments are sh's positional parameters, so its command line carries them like a runner's
/// ffmpeg (the `; true` keeps sh from replacing itself with sleep).
fn spawn_in(cwd: &Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new("sh")
        .arg("-c")
        .arg("sleep 60; true")
        .args(args)
        .current_dir(cwd)
        .process_group(0)
        .spawn()
        .unwrap()
}

fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn only_processes_in_an_unlocked_scratch_directory_of_this_data_dir_are_stopped() {
    let data = tempfile::tempdir().unwrap();
    let other_data = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let url = format!("file:{}/out.mp4", data.path().canonicalize().unwrap().display());
    let other_url = format!("file:{}/out.mp4", other_data.path().canonicalize().unwrap().display());

    // A crashed server's run: its scratch directory is left, nobody holds its lock.
    let crashed = scratch.path().join(format!("{SCRATCH_PREFIX}crashed"));
    std::fs::create_dir(&crashed).unwrap();
    let mut orphan = spawn_in(&crashed, &["-progress", "pipe:1", &url]);
    // A live run (this test process holds the lock, like a running server); its parent is
    // not called ffmpeg-worker either, which the old name-based check took for an orphan.
    let live = ScratchDir::create(scratch.path(), &jobs::JobId::generate()).unwrap();
    let mut running = spawn_in(live.path(), &["-progress", "pipe:1", &url]);
    // Another data directory's run, and a process elsewhere naming our data directory.
    let mut elsewhere = spawn_in(&crashed, &["-progress", "pipe:1", &other_url]);
    let mut not_a_run = spawn_in(data.path(), &["-progress", "pipe:1", &url]);

    // Right after spawn, /proc may still show the pre-exec command line: poll with a deadline.
    let found = poll("the orphan is found", || {
        let found = find_orphans(data.path(), scratch.path());
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(found.iter().map(|o| o.pid).collect::<Vec<_>>(), [orphan.id() as i32], "{found:?}");
    assert_eq!(found[0].pgid, found[0].pid);
    assert_eq!(found[0].scratch_dir, crashed.canonicalize().unwrap());

    let stopped = stop_orphans(data.path(), scratch.path());
    assert_eq!(stopped.len(), 1);
    poll("the orphan is stopped", || orphan.try_wait().unwrap());
    for child in [&mut running, &mut elsewhere, &mut not_a_run] {
        assert!(child.try_wait().unwrap().is_none(), "left alone: {}", child.id());
        // Stop what this test started: the whole group (sh and its sleep).
        let _ =
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
    }
    drop(live);
}

#[test]
fn a_scratch_directory_is_locked_while_it_exists_and_removed_after() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = ScratchDir::create(&scratch.path().join("nested"), &jobs::JobId::generate()).unwrap();
    let path = dir.path().to_owned();
    let other = std::fs::File::open(&path).unwrap();
    assert!(other.try_lock().is_err(), "locked while the run lasts");
    drop(other);
    drop(dir);
    assert!(!path.exists());
}

#[test]
fn a_scratch_directory_is_private_to_the_server_user() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = tempfile::tempdir().unwrap();
    let dir = ScratchDir::create(scratch.path(), &jobs::JobId::generate()).unwrap();
    let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "scratch directory mode {mode:o}");
}

//! Stages left by processes that are gone (tester finding L12): a stage is locked while its
//! run lasts, so the sweep removes every stage whose lock is free, whoever ran its job since,
//! and never one a live run uses, this process's or another process's sharing the data
//! directory (a real second process holds the lock here: util-linux `flock(1)`).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ffmpeg_core::sandbox::Sandbox;
use jobs::JobId;
use jobs::staging::{STAGING_DIR, Stage, remove_stages_of, sweep_stages};

/// Another live process holding the lock on `dir` (as a run of another node sharing the data
/// directory does), once it holds it; in a process group of its own (`flock(1)` holding the
/// lock while the `sleep` it runs lasts), which [`kill_9`] ends.
fn held_by_another_process(dir: &Path) -> Child {
    // `--close`: the lock is flock(1)'s own, not also its `sleep`'s (which inherits the
    // descriptor otherwise): once `kill_9` has reaped flock(1), the lock is gone, however long
    // the killed `sleep` takes to exit.
    let child = Command::new("flock")
        .arg("--close")
        .arg(dir)
        .args(["sleep", "600"])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flock(1) runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::File::open(dir).unwrap().try_lock().is_ok() {
        assert!(Instant::now() < deadline, "flock(1) did not take the lock on {}", dir.display());
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// Kills (SIGKILL) the process group of `child` (from [`held_by_another_process`]) and reaps it.
fn kill_9(mut child: Child) {
    let group = format!("-{}", child.id());
    let status = Command::new("kill").args(["-KILL", "--", &group]).status().unwrap();
    assert!(status.success(), "kill -KILL -- {group}");
    child.wait().unwrap();
}

/// A stage as a process killed mid-job leaves it: its inputs and outputs, no lock.
fn left_by_a_dead_process(data: &Path, name: &str) -> PathBuf {
    let stage = data.join(STAGING_DIR).join(name);
    std::fs::create_dir_all(stage.join("in")).unwrap();
    std::fs::create_dir_all(stage.join("out")).unwrap();
    std::fs::write(stage.join("in/long.mp4"), vec![1u8; 4096]).unwrap();
    std::fs::write(stage.join("out/big.nut"), vec![2u8; 4096]).unwrap();
    stage
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn the_sweep_removes_every_stage_no_live_process_uses_and_only_those() {
    let data = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(data.path()).unwrap();
    let stages = data.path().join(STAGING_DIR);
    // A run of this process, one of another live process, and two left by dead ones (a job
    // another node ran since, and a probe's stage).
    let ours = Stage::create(&sandbox, &JobId::parse("job_00000000000000a1").unwrap(), 1).unwrap();
    std::fs::write(ours.root().join("in.mp4"), b"x").unwrap();
    let theirs = left_by_a_dead_process(data.path(), "job_00000000000000b2-2");
    let other = held_by_another_process(&theirs);
    left_by_a_dead_process(data.path(), "job_c3a34c60ded565cb-1");
    left_by_a_dead_process(data.path(), "probe-0011223344556677");

    let mut removed = sweep_stages(data.path());
    removed.sort();
    assert_eq!(removed, ["job_c3a34c60ded565cb-1", "probe-0011223344556677"]);
    assert_eq!(names_in(&stages), ["job_00000000000000a1-1", "job_00000000000000b2-2"]);
    assert!(ours.root().join("in.mp4").exists() && theirs.join("out/big.nut").exists(), "live stages keep their files");
    // Recovery's removal of a job's stages spares a live one too.
    assert_eq!(remove_stages_of(data.path(), &JobId::parse("job_00000000000000b2").unwrap()), 0);
    assert!(theirs.join("in/long.mp4").exists());

    // The other process dies (kill -9): its stage is a leftover now.
    kill_9(other);
    assert_eq!(sweep_stages(data.path()), ["job_00000000000000b2-2"]);
    assert_eq!(names_in(&stages), ["job_00000000000000a1-1"]);
    // This process's run ends: its stage goes with it (no runtime here: at once).
    drop(ours);
    assert!(names_in(&stages).is_empty());
    assert!(sweep_stages(data.path()).is_empty());
}

#[test]
fn a_new_run_replaces_its_jobs_leftover_stage_but_never_a_live_one() {
    let data = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(data.path()).unwrap();
    let stages = data.path().join(STAGING_DIR);
    let id = JobId::parse("job_00000000000000c3").unwrap();

    // Left by a dead process: removed, the new run gets a fresh stage of the same name.
    let left = left_by_a_dead_process(data.path(), "job_00000000000000c3-1");
    let stage = Stage::create(&sandbox, &id, 1).unwrap();
    assert_eq!(stage.root(), std::fs::canonicalize(&left).unwrap());
    assert!(names_in(stage.root()).is_empty(), "the dead run's files are gone: {:?}", names_in(stage.root()));
    drop(stage);

    // Held by a live process (a node sharing the data directory still running that attempt):
    // left alone; the new run gets a stage of its own beside it.
    let held = left_by_a_dead_process(data.path(), "job_00000000000000c3-1");
    let other = held_by_another_process(&held);
    let stage = Stage::create(&sandbox, &id, 1).unwrap();
    let name = stage.root().file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("job_00000000000000c3-1-") && name.len() > "job_00000000000000c3-1-".len(), "{name}");
    assert!(held.join("out/big.nut").exists(), "the live stage keeps its files");
    assert_eq!(names_in(&stages).len(), 2);
    // The run's own stage is locked: a sweep spares it as well.
    assert!(sweep_stages(data.path()).is_empty());
    drop(stage);
    kill_9(other);
    assert_eq!(sweep_stages(data.path()), ["job_00000000000000c3-1"]);
    assert!(names_in(&stages).is_empty());
}

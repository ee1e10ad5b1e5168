//! Stopping ffmpeg processes orphaned by a crash of a previous server process.
//!
//! ffmpeg runs in its own process group, so when the server is killed (SIGKILL, OOM killer,
//! power-cycled container runtime) its ffmpeg children live on, re-parented to init or a
//! subreaper. Crash recovery re-queues their jobs; if the orphans kept running, two ffmpeg
//! processes would write the same outputs at once.
//!
//! The marker is the run's scratch directory, not a process name: the runner starts each
//! ffmpeg in a fresh directory `<scratch root>/ffmpeg-worker-run-JOBID-XXXXXX` ([`ScratchDir`]) and
//! holds an exclusive `flock(2)` on it for the whole run. The kernel releases the lock when
//! the server's process ends, however it ends, and never hands it to ffmpeg (the descriptor
//! is close-on-exec). So at start-up, before recovery, [`stop_orphans`] finds through `/proc`
//! the processes whose working directory is such a directory with a free lock, and that
//! were given a `file:` URL under this server's data directory (so another data directory's
//! runs are never touched), and kills their process groups. This holds whatever the server's
//! binary is called, whoever its parent is now, and with several servers on one host.
//! Linux only; elsewhere it finds nothing.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::model::JobId;

/// Name prefix of the runner's scratch directories.
pub const SCRATCH_PREFIX: &str = "ffmpeg-worker-run-";

/// A run's private scratch directory, ffmpeg's working directory, locked while it exists.
/// Dropping it unlocks and removes it.
#[derive(Debug)]
pub struct ScratchDir {
    // Field order is drop order: the directory is removed, then the lock released.
    dir: tempfile::TempDir,
    _lock: File,
}

impl ScratchDir {
    /// Creates `root` if needed, then a fresh directory in it for a run of `job` (named
    /// [`ScratchDir::prefix`] and a random suffix, mode 0700: never an existing directory or a
    /// planted symlink), and locks it exclusively.
    ///
    /// # Errors
    /// What the file system reports.
    pub fn create(root: &Path, job: &JobId) -> std::io::Result<ScratchDir> {
        std::fs::create_dir_all(root)?;
        // tempfile's default mode is 0777 less the umask (0755 usually): readable by all.
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o700);
        let dir = tempfile::Builder::new().prefix(&ScratchDir::prefix(job)).permissions(private).tempdir_in(root)?;
        let lock = File::open(dir.path())?;
        lock.try_lock().map_err(std::io::Error::from)?;
        Ok(ScratchDir { dir, _lock: lock })
    }

    /// The name prefix of `job`'s scratch directories, `ffmpeg-worker-run-JOBID-`: recovery
    /// finds what runs of an interrupted job left by it.
    pub fn prefix(job: &JobId) -> String {
        format!("{SCRATCH_PREFIX}{job}-")
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A process found by [`find_orphans`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Its process id.
    pub pid: i32,
    /// Its process-group id (its own pid for the runner's ffmpeg, a group leader).
    pub pgid: i32,
    /// Its working directory: the scratch directory of the run it belonged to.
    pub scratch_dir: PathBuf,
    /// Its command line, arguments joined with spaces.
    pub command_line: String,
}

fn read_cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
}

fn process_group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`: state ppid pgrp ...
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}

/// Whether `dir` is a scratch directory whose lock nobody holds.
fn unlocked_scratch_dir(dir: &Path, scratch_root: &Path) -> bool {
    let ours = dir.parent() == Some(scratch_root)
        && dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with(SCRATCH_PREFIX));
    // The lock is released again when `file` is dropped.
    ours && File::open(dir).is_ok_and(|file| file.try_lock().is_ok())
}

/// Processes left by runs of a server that is gone: their working directory is one of
/// `scratch_root`'s scratch directories whose lock is free, and one of their arguments is a
/// `file:` URL under `data_dir`. Reads `/proc` (blocking).
pub fn find_orphans(data_dir: &Path, scratch_root: &Path) -> Vec<Orphan> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    // /proc shows canonical paths.
    let root = std::fs::canonicalize(scratch_root).unwrap_or_else(|_| scratch_root.to_owned());
    let data = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let marker = format!("file:{}/", data.display());
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        // Other users' processes cannot be read: they are not ours.
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else { continue };
        if !unlocked_scratch_dir(&cwd, &root) {
            continue;
        }
        let Some(args) = read_cmdline(pid) else { continue };
        if !args.iter().any(|a| a.starts_with(&marker)) {
            continue;
        }
        let Some(pgid) = process_group_of(pid) else { continue };
        found.push(Orphan { pid, pgid, scratch_dir: cwd, command_line: args.join(" ") });
    }
    found
}

/// Kills (SIGKILL) what [`find_orphans`] finds: the whole process group of a group leader,
/// else the process itself. Returns what was stopped. Reads `/proc` (blocking).
pub fn stop_orphans(data_dir: &Path, scratch_root: &Path) -> Vec<Orphan> {
    kill_orphans(find_orphans(data_dir, scratch_root))
}

/// [`stop_orphans`] for the runs of `job` only (their scratch directories' names start with
/// [`ScratchDir::prefix`]), then waits (at most 5 s) until every thread of theirs has exited, so that
/// nothing of theirs writes any more when this returns: before `job` runs again after an
/// attempt whose server died, on any node of the same host. Reads `/proc` (blocking).
pub fn stop_orphans_of(data_dir: &Path, scratch_root: &Path, job: &JobId) -> Vec<Orphan> {
    let prefix = ScratchDir::prefix(job);
    let orphans = find_orphans(data_dir, scratch_root)
        .into_iter()
        .filter(|o| o.scratch_dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
        .collect();
    let stopped = kill_orphans(orphans);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while stopped.iter().any(|o| is_alive(o.pid)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    stopped
}

/// Whether any thread of process `pid` still runs. A multi-threaded process's leader shows as
/// a zombie as soon as it exited while its other threads, which share its open files (and so
/// its file locks and its outputs), may still be exiting: every thread is checked.
fn is_alive(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()))
            .is_some_and(|state| !matches!(state, 'Z' | 'X'))
    })
}

fn kill_orphans(orphans: Vec<Orphan>) -> Vec<Orphan> {
    for orphan in &orphans {
        let _ = if orphan.pgid == orphan.pid {
            killpg(Pid::from_raw(orphan.pgid), Signal::SIGKILL)
        } else {
            kill(Pid::from_raw(orphan.pid), Signal::SIGKILL)
        };
    }
    orphans
}

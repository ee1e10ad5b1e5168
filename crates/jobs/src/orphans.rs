//! Stopping ffmpeg processes orphaned by a crash of a previous server process.
//!
//! ffmpeg runs in its own process group, so when the server is killed (SIGKILL, OOM killer,
//! power-cycled container runtime) its ffmpeg children live on, re-parented to init. Crash
//! recovery re-queues their jobs; if the orphans kept running, two ffmpeg processes would write
//! the same outputs at once. At start-up, before recovery, [`stop_orphans`] finds them through
//! `/proc` — processes started with this runner's `-progress pipe:1` argument and a `file:` URL
//! under the data directory, whose parent is not a running `ffmpeg-worker` — and kills their
//! process groups. Linux only; elsewhere it does nothing.

use std::path::Path;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A process found by [`find_orphans`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Its process id (also its process-group id: the runner makes each ffmpeg a group leader).
    pub pid: i32,
    /// Its command line, arguments joined with spaces.
    pub command_line: String,
}

fn read_cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`: state ppid ...
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn is_worker(pid: i32) -> bool {
    read_cmdline(pid).and_then(|args| args.first().cloned()).is_some_and(|exe| {
        Path::new(&exe).file_name().is_some_and(|n| n.to_string_lossy().starts_with("ffmpeg-worker"))
    })
}

/// ffmpeg processes writing under `data_dir` that no running `ffmpeg-worker` owns.
pub fn find_orphans(data_dir: &Path) -> Vec<Orphan> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let marker = format!("file:{}/", data_dir.display());
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Some(args) = read_cmdline(pid) else { continue };
        let ours = args.windows(2).any(|w| w[0] == "-progress" && w[1] == "pipe:1")
            && args.iter().any(|a| a.starts_with(&marker));
        if !ours {
            continue;
        }
        if parent_of(pid).is_some_and(is_worker) {
            continue;
        }
        found.push(Orphan { pid, command_line: args.join(" ") });
    }
    found
}

/// Kills (SIGKILL) the process groups of [`find_orphans`]; returns what was stopped.
pub fn stop_orphans(data_dir: &Path) -> Vec<Orphan> {
    let orphans = find_orphans(data_dir);
    for orphan in &orphans {
        let _ = killpg(Pid::from_raw(orphan.pid), Signal::SIGKILL);
    }
    orphans
}

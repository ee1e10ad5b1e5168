//! ffmpeg's process: built in one place ([`ffmpeg_command`]), started under the resource
//! limits, supervised until it exits (timeout and cancellation stop its whole process group:
//! SIGTERM, a grace period, SIGKILL), and reaped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, ChildStdout};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::drain::Drain;
use super::{FfmpegConfig, RunError};

/// Operating-system limits applied to each ffmpeg process (`prlimit(2)` on Linux, right after
/// the process starts and before it has opened its outputs). `None` leaves a limit unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Largest file the process may write, in bytes (`RLIMIT_FSIZE`): a job whose output grows
    /// past it is killed (SIGXFSZ) and fails.
    pub max_file_bytes: Option<u64>,
    /// CPU time the process may use, in seconds (`RLIMIT_CPU`), summed over its threads.
    pub cpu_seconds: Option<u64>,
    /// Virtual address space, in bytes (`RLIMIT_AS`): allocations past it fail, and so do
    /// thread starts (each thread maps its stack, 8 MiB by default, against it). With it set,
    /// ffmpeg runs with `MALLOC_ARENA_MAX=1` ([`ResourceLimits::environment`]).
    pub address_space_bytes: Option<u64>,
}

impl ResourceLimits {
    /// Applies the limits to the running process `pid`.
    #[cfg(target_os = "linux")]
    pub(super) fn apply(&self, pid: u32) -> std::io::Result<()> {
        use rustix::process::{Pid, Resource, Rlimit, prlimit};
        let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else { return Ok(()) };
        let limits = [
            (Resource::Fsize, self.max_file_bytes, 0),
            // The soft CPU limit sends SIGXCPU (ffmpeg stops cleanly); the hard one, 5 s later, SIGKILL.
            (Resource::Cpu, self.cpu_seconds, 5),
            (Resource::As, self.address_space_bytes, 0),
        ];
        for (resource, value, slack) in limits {
            if let Some(v) = value {
                prlimit(Some(pid), resource, Rlimit { current: Some(v), maximum: Some(v.saturating_add(slack)) })?;
            }
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn apply(&self, _pid: u32) -> std::io::Result<()> {
        Ok(())
    }

    /// The environment ffmpeg runs with under these limits (else none at all). With an
    /// address-space limit, `MALLOC_ARENA_MAX=1`: glibc gives every thread that allocates an
    /// arena of its own (up to 8 per core), and each arena reserves 64 MiB of address space, so
    /// a 720p x264 encode with 6 threads needed a limit of 600 MB, and 450 MB with one arena
    /// (with no measurable change in its speed on 2 cores). Thread
    /// stacks are left alone: glibc sizes them from `RLIMIT_STACK` when the process starts,
    /// which `prlimit(2)` after the start cannot reliably precede (an operator can lower the
    /// server's own, which ffmpeg inherits).
    pub fn environment(&self) -> &'static [(&'static str, &'static str)] {
        if self.address_space_bytes.is_some() { &[("MALLOC_ARENA_MAX", "1")] } else { &[] }
    }
}

/// CPU time (user + system, all threads) that process `pid` has used, in seconds, from
/// `/proc/<pid>/stat`; `None` when it cannot be read. Valid until the process is reaped.
fn cpu_seconds_used(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after `(comm)`: state is field 3; utime and stime are fields 14 and 15, in clock
    // ticks of USER_HZ, which Linux fixes at 100 for this interface.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    #[allow(clippy::cast_precision_loss, reason = "tick counts far below 2^52")]
    Some((utime + stime) as f64 / 100.0)
}

/// The one place ffmpeg and ffprobe processes are built (the runner's jobs, the start-up
/// capability probe, [`crate::media`]'s ffprobe): run directly (no shell), with an empty
/// environment, an empty stdin, stdout and stderr piped, in a process group of its own (its pid
/// is the group id, see [`signal_group`]), and killed when the handle is dropped. `binary` is
/// started as [`program_path`] finds it. Callers drain both pipes at once and bound the run's
/// time.
pub(crate) fn ffmpeg_command(binary: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program_path(binary));
    cmd.env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// The file started for `binary` (the `FFMPEG_BIN` / `FFPROBE_BIN` setting): a bare name
/// (no `/`) is looked up on this process's `PATH`, as a shell would, then in `/bin:/usr/bin`
/// (the C library's default search path) when `PATH` has none; a relative path is taken from
/// this process's working directory (not from the run's scratch directory, where the process
/// starts). A name found nowhere is returned as given, and starting it fails with "not found"
/// ([`RunError::Spawn`]).
///
/// Starting a full path also lets the standard library use `posix_spawn` (a vfork) rather than
/// a fork of the whole server, which copies its page tables (a cost that grows with the
/// server's memory): with the environment cleared, a bare name would need the fork path's own
/// search.
pub fn program_path(binary: &Path) -> PathBuf {
    find_program(binary, std::env::var_os("PATH"))
}

/// [`program_path`] with `search` as the `PATH`.
fn find_program(binary: &Path, search: Option<std::ffi::OsString>) -> PathBuf {
    let bare = !binary.as_os_str().as_encoded_bytes().contains(&b'/');
    if !bare {
        return std::path::absolute(binary).unwrap_or_else(|_| binary.to_owned());
    }
    let name = binary.as_os_str();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    search
        .and_then(|path| which::which_in(name, Some(path), &cwd).ok())
        .or_else(|| which::which_in(name, Some("/bin:/usr/bin"), &cwd).ok())
        .unwrap_or_else(|| binary.to_owned())
}

/// Sends `signal` to the process group led by `pid`. Only call it before the leader is
/// reaped: until then its pid, the group id, cannot belong to anyone else.
pub(crate) fn signal_group(pid: Option<u32>, signal: Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // The child is its own process-group leader (process_group(0)), so its pid is the group id.
        // ESRCH (already gone) is fine.
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// Why the runner stopped a run (rather than ffmpeg ending it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    TimedOut,
    Cancelled,
}

/// A started ffmpeg with both of its output pipes.
pub(super) struct Started {
    pub child: Child,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

/// Starts `program` (`config.binary` as [`program_path`] found it) with `args` in `cwd` and
/// applies the resource limits; a process that could not be limited, or lacks a pipe, is
/// killed and reaped.
///
/// # Errors
/// [`RunError::Spawn`] or [`RunError::Limits`].
pub(super) async fn start(
    config: &FfmpegConfig,
    program: &Path,
    args: Vec<String>,
    cwd: &Path,
) -> Result<Started, RunError> {
    let mut cmd = ffmpeg_command(program);
    cmd.args(args).current_dir(cwd).envs(config.limits.environment().iter().copied());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Err(RunError::Spawn { binary: config.binary.clone(), source: Arc::new(e) }),
    };
    let pid = child.id();
    if let Some(p) = pid
        && let Err(e) = config.limits.apply(p)
    {
        signal_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
        return Err(RunError::Limits { source: Arc::new(e) });
    }
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        signal_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
        let source = Arc::new(std::io::Error::other("ffmpeg's stdout or stderr pipe is missing"));
        return Err(RunError::Spawn { binary: config.binary.clone(), source });
    };
    Ok(Started { child, stdout, stderr })
}

/// The longest the runner leaves ffmpeg's stderr unread after a read, while ffmpeg runs and
/// writes little. ffmpeg logs a line in up to four writes (context, level, message), and
/// reading each as it comes would wake the server (and take a CPU from ffmpeg) for every one of
/// them; resting, they gather in the pipe. What it holds is read before each progress block is
/// taken in (the input banner, which percent needs, comes before the first one) and once stdout
/// closes. A job that writes fast rests less ([`stderr_rest`]), so its writes never wait for a
/// full pipe.
pub(super) const STDERR_REST: Duration = Duration::from_millis(10);

/// A rest shorter than this is not taken: stderr is read as it comes (tokio's timers tick in
/// milliseconds).
const STDERR_REST_MIN: Duration = Duration::from_millis(1);

/// How long stderr rests after a wake-up that took in `gathered` bytes, written in the `since`
/// since the pipe (of `capacity` bytes) was last emptied: long enough for ffmpeg to fill a
/// quarter of the pipe at that rate, at most [`STDERR_REST`]; `None` (read as it comes) below
/// [`STDERR_REST_MIN`], and after a wake-up that found the pipe full (ffmpeg may have waited to
/// write, and its rate is unknown: it may be far above `capacity / since`). A quiet job (a few
/// lines a second) rests the whole [`STDERR_REST`]; one that writes megabytes a second is read
/// as it writes, and never waits on a full pipe again.
pub(super) fn stderr_rest(gathered: usize, since: Duration, capacity: usize) -> Option<Duration> {
    if gathered >= capacity {
        return None;
    }
    let quarter = u128::try_from(capacity / 4).unwrap_or(u128::MAX);
    let rest = match u128::try_from(gathered) {
        Ok(0) | Err(_) => STDERR_REST,
        // The time the rate just seen takes to write a quarter of the pipe.
        Ok(gathered) => {
            let nanos = since.as_nanos().saturating_mul(quarter) / gathered;
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)).min(STDERR_REST)
        }
    };
    (rest >= STDERR_REST_MIN).then_some(rest)
}

/// The capacity of the pipe `stderr` reads, in bytes (Linux's default, 64 KiB, where it cannot
/// be asked: a user past `pipe-user-pages-soft` gets smaller pipes).
fn pipe_capacity(stderr: &ChildStderr) -> usize {
    const DEFAULT: usize = 64 * 1024;
    #[cfg(target_os = "linux")]
    {
        rustix::pipe::fcntl_getpipe_size(stderr).unwrap_or(DEFAULT)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stderr;
        DEFAULT
    }
}

/// Reads what `stderr` holds now into `drain`, without waiting (the pipe is non-blocking), at
/// most four buffers (a writer faster than the drain would keep it here, away from the
/// deadline and cancellation); returns whether it is still open, and how many bytes it read.
fn read_stderr_now(stderr: &ChildStderr, buf: &mut [u8], drain: &mut Drain<'_>) -> (bool, usize) {
    let mut read = 0;
    while read < 4 * buf.len() {
        match rustix::io::read(stderr, &mut *buf) {
            Ok(0) => return (false, read),
            Ok(n) => {
                drain.stderr(&buf[..n]);
                read += n;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => return (true, read),
            Err(_) => return (false, read),
        }
    }
    (true, read)
}

/// How a supervised process ended ([`supervise`]).
pub(super) struct Ended {
    /// The reaped child's status.
    pub status: std::io::Result<std::process::ExitStatus>,
    /// Why the runner stopped it, `None` when ffmpeg ended by itself.
    pub stop: Option<Stop>,
    /// Its CPU time in seconds, read before reaping when a CPU limit is set (`None` otherwise
    /// or when it could not be read).
    pub cpu_used: Option<f64>,
}

/// Drains both pipes of `started` into `drain` until ffmpeg closes them, stopping its process
/// group when `deadline` passes or `cancel` fires, and reaps it.
pub(super) async fn supervise(
    started: Started,
    drain: &mut Drain<'_>,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
    config: &FfmpegConfig,
) -> Ended {
    let Started { mut child, mut stdout, mut stderr } = started;
    let pid = child.id();
    let mut stop: Option<Stop> = None;
    let mut kill_at: Option<Instant> = None;
    let (mut out_open, mut err_open) = (true, true);
    let mut out_buf = vec![0u8; 16 * 1024];
    // A read as large as the pipe empties it (a pipe's read returns all it holds, up to the size asked).
    let err_capacity = pipe_capacity(&stderr);
    let mut err_buf = vec![0u8; err_capacity.clamp(16 * 1024, 1024 * 1024)];
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let mut cpu_used = None;
    let mut ready_to_reap = false;
    // Until when stderr rests unread ([`stderr_rest`]), and when the pipe was last emptied.
    let mut err_rest: Option<Instant> = None;
    let mut err_emptied = Instant::now();

    // One loop drains both pipes (never one after the other: a full stderr pipe would stall
    // ffmpeg while we wait on stdout), and reaps the child once both are closed.
    let status = loop {
        if !out_open && !err_open && !ready_to_reap {
            // ffmpeg closes its pipes when it exits; until it is reaped, its pid (which is
            // also its process-group id) cannot be reused, so this is the last moment to
            // read its CPU time and, on the stop path only, to kill what is left of its
            // group without hitting another process group.
            if config.limits.cpu_seconds.is_some() {
                cpu_used = pid.and_then(cpu_seconds_used);
            }
            if stop.is_some() {
                signal_group(pid, Signal::SIGKILL);
                kill_at = None;
            }
            ready_to_reap = true;
        }
        tokio::select! {
            r = stdout.read(&mut out_buf), if out_open => match r {
                Ok(0) | Err(_) => {
                    // ffmpeg is ending: its last lines are read as they come.
                    out_open = false;
                    err_rest = None;
                }
                Ok(n) => {
                    // What stderr holds was written before this progress: taken in first.
                    if err_open {
                        err_open = read_stderr_now(&stderr, &mut err_buf, drain).0;
                        err_emptied = Instant::now();
                    }
                    drain.stdout(&out_buf[..n]);
                }
            },
            r = stderr.read(&mut err_buf), if err_open && err_rest.is_none() => match r {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => {
                    drain.stderr(&err_buf[..n]);
                    // All the pipe holds (a full buffer: more may wait), then a rest fitted to how
                    // fast it filled, while ffmpeg runs.
                    let more = if n == err_buf.len() {
                        let (open, more) = read_stderr_now(&stderr, &mut err_buf, drain);
                        err_open = open;
                        more
                    } else {
                        0
                    };
                    let now = Instant::now();
                    if out_open && stop.is_none() {
                        err_rest = stderr_rest(n + more, now - err_emptied, err_capacity).map(|rest| now + rest);
                    }
                    err_emptied = now;
                }
            },
            () = tokio::time::sleep_until(err_rest.unwrap_or(far)), if err_rest.is_some() => err_rest = None,
            s = child.wait(), if ready_to_reap => break s,
            () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && stop.is_none() => {
                err_rest = None;
                stop = Some(Stop::TimedOut);
                signal_group(pid, Signal::SIGTERM);
                kill_at = Some(Instant::now() + config.kill_grace);
            },
            () = cancel.cancelled(), if stop.is_none() => {
                err_rest = None;
                stop = Some(Stop::Cancelled);
                signal_group(pid, Signal::SIGTERM);
                kill_at = Some(Instant::now() + config.kill_grace);
            },
            () = tokio::time::sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                signal_group(pid, Signal::SIGKILL);
                kill_at = None;
            },
        }
    };
    Ended { status, stop, cpu_used }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::{Path, PathBuf};

    use std::time::Duration;

    use super::{STDERR_REST, find_program, stderr_rest};

    #[test]
    fn a_bare_name_is_found_on_the_search_path_and_a_path_is_made_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("ffmpeg-worker-test-program");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let search = std::env::join_paths(["/nonexistent", dir.path().to_str().unwrap()]).unwrap();
        let name = Path::new("ffmpeg-worker-test-program");
        assert_eq!(find_program(name, Some(search.clone())), program);
        // Not on the search path, nor in /bin:/usr/bin: started as given, so it fails as "not found".
        assert_eq!(find_program(name, Some("/nonexistent".into())), PathBuf::from(name));
        // Without a search path, the C library's default one.
        let sh = find_program(Path::new("sh"), None);
        assert!(sh == Path::new("/bin/sh") || sh == Path::new("/usr/bin/sh"), "{}", sh.display());
        // A path (with a `/`) is never searched; a relative one is taken from the working directory.
        assert_eq!(find_program(&program, Some(search)), program);
        let relative = find_program(Path::new("bin/ffmpeg"), None);
        assert_eq!(relative, std::env::current_dir().unwrap().join("bin/ffmpeg"));
    }

    #[test]
    fn stderr_rests_its_whole_time_for_a_quiet_job_and_less_for_a_busy_one() {
        let pipe = 64 * 1024;
        let ms = Duration::from_millis;
        // Quiet: a few lines in the rest, or a line after seconds of silence; nothing at all.
        assert_eq!(stderr_rest(400, ms(10), pipe), Some(STDERR_REST));
        assert_eq!(stderr_rest(120, Duration::from_secs(30), pipe), Some(STDERR_REST));
        assert_eq!(stderr_rest(0, ms(10), pipe), Some(STDERR_REST));
        // 4 MB/s (40 KB in 10 ms): a quarter of the pipe, 16 KiB, takes 4.096 ms.
        assert_eq!(stderr_rest(40_000, ms(10), pipe), Some(Duration::from_micros(4096)));
        // Half the pipe in 10 ms: a quarter in 5 ms.
        assert_eq!(stderr_rest(pipe / 2, ms(10), pipe), Some(ms(5)));
        // The pipe filled during the rest (ffmpeg may have waited): read as it comes.
        assert_eq!(stderr_rest(pipe, ms(10), pipe), None);
        assert_eq!(stderr_rest(3 * pipe, ms(10), pipe), None);
        // A quarter of the pipe per millisecond or more: read as it comes.
        assert_eq!(stderr_rest(pipe / 2, ms(1), pipe), None);
        assert_eq!(stderr_rest(100, Duration::from_micros(5), pipe), None);
        // A smaller pipe (a user past `pipe-user-pages-soft`) rests less.
        assert_eq!(stderr_rest(8_000, ms(10), 16 * 1024), Some(Duration::from_micros(5120)));
    }

    /// A model of a job writing stderr at a steady rate into a 64 KiB pipe, read with the rest
    /// [`stderr_rest`] chooses (each wake-up 50 µs late): after the first rest, the pipe never
    /// fills, at any rate (ffmpeg never waits to write); a fixed 10 ms rest fills it at every
    /// rate above 6.5 MB/s. A quiet job keeps resting the whole 10 ms.
    #[test]
    fn a_job_writing_stderr_fast_never_finds_the_pipe_full_after_the_first_rest() {
        let pipe = 64 * 1024;
        let late = Duration::from_micros(50);
        for rate in [1e3, 1e5, 1e6, 4e6, 6e6, 1e7, 3e7, 1e8, 1e9] {
            let mut rest = Some(STDERR_REST);
            let mut full_after_first = 0;
            for round in 0..1000 {
                let since = rest.unwrap_or_default() + late;
                // What ffmpeg wrote meanwhile, up to what the pipe holds.
                let written = (rate * since.as_secs_f64()) as usize;
                let gathered = written.min(pipe);
                if written >= pipe && round > 0 {
                    full_after_first += 1;
                }
                rest = stderr_rest(gathered, since, pipe);
            }
            assert_eq!(full_after_first, 0, "{rate} bytes/s");
            if rate <= 1e6 {
                assert_eq!(rest, Some(STDERR_REST), "{rate} bytes/s: a quiet job rests the whole time");
            }
            let fixed = (rate * (STDERR_REST + late).as_secs_f64()) as usize;
            assert_eq!(fixed >= pipe, rate >= 1e7, "{rate} bytes/s: what a fixed rest does");
        }
    }
}

//! `FfmpegRunner` against stand-in ffmpeg scripts (to force pathological behaviour) and the
//! real ffmpeg.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ffmpeg_core::command::Command;
use ffmpeg_core::sandbox::{ResolvedCommand, Sandbox};
use jobs::runner::error_summary;
use jobs::{FfmpegConfig, FfmpegRunner, Progress, RunError, RunSpec, Runner};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::fixture::{self, alive, fake_ffmpeg, wait_gone};

/// Writes an executable shell script standing in for ffmpeg.
fn resolved(sandbox: &Sandbox, command: &str) -> ResolvedCommand {
    sandbox.resolve_command(&Command::parse(command).unwrap()).unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    data: PathBuf,
    sandbox: Sandbox,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let sandbox = Sandbox::new(&data).unwrap();
    let data = sandbox.root().to_path_buf();
    Setup { _dir: dir, data, sandbox }
}

/// `in.mp4` in `dir`: 3 s of 160x120 testsrc at 25 fps, H.264.
fn make_input(dir: &Path) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=3:size=160x120:rate=25"])
        .args(["-c:v", "libx264", "-preset", "ultrafast"])
        .arg(dir.join("in.mp4"))
        .status()
        .unwrap();
    assert!(status.success());
}

async fn run(
    runner: &FfmpegRunner,
    cmd: &ResolvedCommand,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
) -> (jobs::RunReport, Option<Progress>) {
    let (tx, rx) = watch::channel(None);
    let report = runner
        .run(
            RunSpec { job: &jobs::JobId::generate(), command: cmd, timeout, input_lengths: None, ended: None },
            &tx,
            cancel,
        )
        .await;
    let last = rx.borrow().clone();
    (report, last)
}

#[tokio::test]
async fn megabytes_of_stderr_do_not_stall_the_run() {
    let s = setup();
    // 8 MiB of warnings on stderr (lines of 100 bytes), interleaved with progress on stdout,
    // then success.
    let bin = fake_ffmpeg(
        &s.data,
        "i=0; while [ $i -lt 64 ]; do /usr/bin/head -c 131072 /dev/zero | /usr/bin/tr '\\0' 'w' | /usr/bin/fold -w 100 >&2; echo \"frame=$i\"; echo progress=continue; i=$((i+1)); done; echo frame=64; echo progress=end; exit 0",
    );
    let runner = FfmpegRunner::new(FfmpegConfig::new(&bin, &s.data));
    let cmd = resolved(&s.sandbox, "-i in.mp4 out.mp4");
    let (report, last) = run(&runner, &cmd, Some(Duration::from_secs(60)), &CancellationToken::new()).await;
    assert!(report.result.is_ok(), "{:?} {}", report.result, report.log_tail);
    assert_eq!(last.unwrap().frame, Some(64));
    assert!(report.log_tail.len() <= 64 * 1024, "the log tail is bounded: {}", report.log_tail.len());
    assert!(report.log_tail.len() >= 60 * 1024);
}

/// A job that writes its log fast, one line a write (as ffmpeg does at `-loglevel debug`), is
/// read as fast as the same lines written in large blocks. Before, the runner rested 10 ms
/// after every read that found less than its buffer while ffmpeg ran, so one-line writes went
/// through the 64 KiB pipe at 6.5 MB/s at most (these 9.3 MB: at least 1.4 s, waiting on a
/// full pipe), while large blocks were read at once. The rest's own rule is tested exactly in
/// `runner::process` (a model of a writer at every rate); here the bound is generous, as a
/// loaded machine slows both runs, and the drain's own CPU (unoptimized, in tests) can then
/// be the slower part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_writing_its_log_fast_line_by_line_is_read_as_fast_as_in_blocks() {
    let s = setup();
    const LINES: u32 = 100_000;
    let line = "[debug] a line of a log written fast, one write a line, as ffmpeg writes its own lines";
    let lines: String = (0..LINES).map(|i| format!("{i} {line}\n")).collect();
    std::fs::write(s.data.join("lines.txt"), &lines).unwrap();
    let timed = async |body: &str| {
        let bin = fake_ffmpeg(&s.data, &format!("{body}; echo progress=end; exit 0"));
        let runner = FfmpegRunner::new(FfmpegConfig::new(&bin, &s.data));
        let cmd = resolved(&s.sandbox, "-i in.mp4 out.mp4");
        let started = Instant::now();
        let (report, _) = run(&runner, &cmd, Some(Duration::from_secs(300)), &CancellationToken::new()).await;
        let took = started.elapsed();
        assert!(report.result.is_ok(), "{:?}", report.result);
        assert!(report.log_tail.trim_end().ends_with(&format!("{} {line}", LINES - 1)), "every line was read");
        took
    };
    let blocks = timed(&format!("/usr/bin/cat {} >&2", s.data.join("lines.txt").display())).await;
    let one_by_one =
        timed(&format!("i=0; while [ $i -lt {LINES} ]; do echo \"$i {line}\"; i=$((i+1)); done >&2")).await;
    eprintln!("{} bytes of stderr: {blocks:?} in blocks, {one_by_one:?} a line a write", lines.len());
    assert!(one_by_one < blocks * 2 + Duration::from_secs(1), "{one_by_one:?} a line a write, {blocks:?} in blocks");
}

/// Tester finding H10: a 720p x264 encode with fixed thread counts needs an address space of
/// about 600 MB when every thread that allocates gets a malloc arena of its own (64 MiB
/// reserved each), and 450 MB with one arena, which the runner asks for under a memory limit:
/// at 520 MB it runs. Far below, it fails, saying the limit was probably reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encode_fits_a_memory_limit_that_per_thread_malloc_arenas_would_exceed() {
    let s = setup();
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=2:size=1280x720:rate=25"])
        .args(["-c:v", "libx264", "-preset", "ultrafast"])
        .arg(s.data.join("720p.mp4"))
        .status()
        .unwrap();
    assert!(status.success());
    // Thread counts fixed, so that the test does not depend on the machine's cores.
    let command = "-threads 2 -i 720p.mp4 -c:v libx264 -threads 4 -preset ultrafast -filter_threads 1 -f null -";
    let cmd = resolved(&s.sandbox, command);
    let limited = |bytes: u64| {
        let mut config = FfmpegConfig::new("ffmpeg", &s.data);
        config.limits.address_space_bytes = Some(bytes);
        FfmpegRunner::new(config)
    };
    let no_cancel = CancellationToken::new();
    let (report, _) = run(&limited(520_000_000), &cmd, Some(Duration::from_secs(120)), &no_cancel).await;
    assert!(report.result.is_ok(), "{:?}\n{}", report.result, report.log_tail);
    // The same command without the runner's environment, for comparison: it fails here (ffmpeg
    // 5.1 of Debian 12); where it does not, the limit has room for the arenas and this test
    // shows less.
    let alone = std::process::Command::new("prlimit")
        .arg("--as=520000000")
        .arg("ffmpeg")
        .args(["-nostdin", "-v", "error"])
        .args(cmd.to_ffmpeg_args())
        .current_dir(&s.data)
        .env_clear()
        .output()
        .unwrap();
    if alone.status.success() {
        eprintln!("NOTE: this ffmpeg also fits 520 MB with a malloc arena per thread");
    }
    let (report, _) = run(&limited(300_000_000), &cmd, Some(Duration::from_secs(120)), &no_cancel).await;
    let Err(RunError::Exit { message, .. }) = report.result else { panic!("{:?}", report.result) };
    assert!(
        message.contains("(the memory limit, 300000000 bytes of address space for ffmpeg, was probably reached"),
        "{message}"
    );
}

#[tokio::test]
async fn timeout_stops_the_whole_process_group_even_when_sigterm_is_ignored() {
    let s = setup();
    let pids = s.data.join("pids");
    let bin =
        fake_ffmpeg(&s.data, &format!("trap '' TERM; /usr/bin/sleep 1000 & echo $$ $! > {}; wait", pids.display()));
    let mut config = FfmpegConfig::new(&bin, &s.data);
    config.kill_grace = Duration::from_millis(300);
    let runner = FfmpegRunner::new(config);
    let cmd = resolved(&s.sandbox, "-i in.mp4 out.mp4");
    let start = Instant::now();
    let (report, _) = run(&runner, &cmd, Some(Duration::from_millis(500)), &CancellationToken::new()).await;
    assert!(
        matches!(report.result, Err(RunError::TimedOut(t)) if t == Duration::from_millis(500)),
        "{:?}",
        report.result
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    // Every process of the group ends (one that ignored the signals would live for 1000 s).
    wait_gone(fixture::pids(&std::fs::read_to_string(&pids).unwrap()), Duration::from_secs(10)).await;
}

#[tokio::test]
async fn cancel_stops_a_run_and_reports_cancelled() {
    let s = setup();
    let bin = fake_ffmpeg(&s.data, "echo frame=1; echo progress=continue; exec /usr/bin/sleep 1000");
    let runner = FfmpegRunner::new(FfmpegConfig::new(&bin, &s.data));
    let cmd = resolved(&s.sandbox, "-i in.mp4 out.mp4");
    let cancel = CancellationToken::new();
    let (tx, mut rx) = watch::channel(None);
    let job = jobs::JobId::generate();
    let spec = RunSpec { job: &job, command: &cmd, timeout: None, input_lengths: None, ended: None };
    let run = runner.run(spec, &tx, &cancel);
    tokio::pin!(run);
    // Cancel once the first progress block arrived (the process is surely running then).
    let report = loop {
        tokio::select! {
            report = &mut run => break report,
            Ok(()) = rx.changed() => cancel.cancel(),
        }
    };
    assert!(matches!(report.result, Err(RunError::Cancelled)), "{:?}", report.result);
}

#[tokio::test]
async fn the_end_block_is_told_before_ffmpeg_exits() {
    let s = setup();
    // Reports its end, then stays (as ffmpeg does while it cleans up, only longer).
    let bin = fake_ffmpeg(
        &s.data,
        "echo frame=1; echo progress=continue; echo frame=2; echo progress=end; exec /usr/bin/sleep 1000",
    );
    let runner = FfmpegRunner::new(FfmpegConfig::new(&bin, &s.data));
    let cmd = resolved(&s.sandbox, "-i in.mp4 out.mp4");
    let (cancel, ended) = (CancellationToken::new(), CancellationToken::new());
    let (tx, _rx) = watch::channel(None);
    let job = jobs::JobId::generate();
    let spec = RunSpec { job: &job, command: &cmd, timeout: None, input_lengths: None, ended: Some(&ended) };
    let run = runner.run(spec, &tx, &cancel);
    tokio::pin!(run);
    let report = tokio::select! {
        biased;
        report = &mut run => panic!("the run ended before its end block was told: {:?}", report.result),
        () = ended.cancelled() => {
            // The process still runs: the run goes on until it exits (here: is stopped).
            cancel.cancel();
            run.await
        }
    };
    assert!(matches!(report.result, Err(RunError::Cancelled)), "{:?}", report.result);
    // A run without an end block (killed) never tells it.
    let bin = fake_ffmpeg(&s.data, "echo frame=1; echo progress=continue; exit 1");
    let runner = FfmpegRunner::new(FfmpegConfig::new(&bin, &s.data));
    let ended = CancellationToken::new();
    let spec = RunSpec { job: &job, command: &cmd, timeout: None, input_lengths: None, ended: Some(&ended) };
    let report = runner.run(spec, &tx, &CancellationToken::new()).await;
    assert!(matches!(report.result, Err(RunError::Exit { .. })), "{:?}", report.result);
    assert!(!ended.is_cancelled());
}

#[tokio::test]
async fn a_missing_binary_is_a_spawn_error() {
    let s = setup();
    let runner = FfmpegRunner::new(FfmpegConfig::new(s.data.join("no-such-ffmpeg"), &s.data));
    let cmd = resolved(&s.sandbox, "-i in.mp4 out.mp4");
    let (report, _) = run(&runner, &cmd, None, &CancellationToken::new()).await;
    assert!(matches!(report.result, Err(RunError::Spawn { .. })), "{:?}", report.result);
}

#[tokio::test]
async fn the_environment_is_cleared_and_arguments_are_exact() {
    let s = setup();
    let out = s.data.join("seen");
    let bin = fake_ffmpeg(
        &s.data,
        &format!("/usr/bin/env > {0}.env; for a in \"$@\"; do echo \"$a\"; done > {0}.args", out.display()),
    );
    let runner = FfmpegRunner::new(FfmpegConfig::new(&bin, &s.data));
    let cmd = resolved(&s.sandbox, "-ss 1 -i \"my clip.mp4\" -c:v libx264 out/a.mp4");
    let (report, _) = run(&runner, &cmd, None, &CancellationToken::new()).await;
    assert!(report.result.is_ok(), "{:?} {}", report.result, report.log_tail);
    let env = std::fs::read_to_string(s.data.join("seen.env")).unwrap();
    assert!(!env.contains("HOME=") && !env.contains("CARGO"), "environment leaked: {env}");
    let args = std::fs::read_to_string(s.data.join("seen.args")).unwrap();
    let root = s.data.display();
    let formats = s.sandbox.policy().input_format_whitelist();
    let expected = format!(
        "-loglevel\nlevel-repeat+32\n-nostdin\n-hide_banner\n-progress\npipe:1\n-nostats\n-y\n-ss\n1\n-protocol_whitelist\nfile\n-format_whitelist\n{formats}\n-i\nfile:{root}/my clip.mp4\n-c:v\nlibx264\n-protocol_whitelist\nfile\nfile:{root}/out/a.mp4\n-loglevel\nlevel-repeat+32\n"
    );
    assert_eq!(args, expected);
}

#[tokio::test]
async fn real_ffmpeg_reports_progress_with_percent() {
    let s = setup();
    make_input(&s.data);
    let runner = FfmpegRunner::new(FfmpegConfig::new("ffmpeg", &s.data));
    let cmd = resolved(&s.sandbox, "-i in.mp4 -t 2 -c:v libx264 -preset ultrafast out.mp4");
    let (report, last) = run(&runner, &cmd, Some(Duration::from_secs(60)), &CancellationToken::new()).await;
    assert!(report.result.is_ok(), "{:?} {}", report.result, report.log_tail);
    let last = last.unwrap();
    // The last block reports the last frame's timestamp (1.96 s of 2 s); the store records
    // 100 % when the job completes.
    let percent = last.percent.unwrap();
    assert!((95.0..=100.0).contains(&percent), "{percent}");
    assert_eq!(last.frame, Some(50), "-t 2 at 25 fps");
    assert!(report.log_tail.contains("Duration: 00:00:03.00"), "{}", report.log_tail);
}

#[test]
fn error_summary_keeps_the_meaningful_last_lines_without_server_paths() {
    let root = Path::new("/srv/data");
    let check = |log: &str, expected: &str| assert_eq!(error_summary(log, root), expected, "{log}");
    check("file:/srv/data/missing.mp4: No such file or directory\n", "missing.mp4: No such file or directory");
    check(
        "Input #0 ...\n  Duration: 00:00:02.00\n[libx264 @ 0x1] width not divisible by 2 (161x120)\nError initializing output stream 0:0 -- Error while opening encoder\nConversion failed!\n",
        "Input #0 ...\n  Duration: 00:00:02.00\n[libx264 @ 0x1] width not divisible by 2 (161x120)\nError initializing output stream 0:0 -- Error while opening encoder",
    );
    check("a\nb\nc\nd\ne\nf\ng\n", "c\nd\ne\nf\ng");
    check("\n\n", "ffmpeg failed without a message");
    check("Conversion failed!\n", "Conversion failed!");
    let long = format!("Format not on whitelist '{}'\n", "x,".repeat(400));
    let summary = error_summary(&long, root);
    assert!(summary.len() < 320 && summary.starts_with("Format not on whitelist 'x,") && summary.ends_with(",'"));
    // A long line keeps its end, where ffmpeg writes the reason, and loses no server path.
    let name = "n".repeat(296);
    let summary = error_summary(&format!("file:/srv/data/sub/{name}.mp4: File name too long\n"), root);
    assert!(summary.starts_with("sub/nnn") && summary.ends_with(".mp4: File name too long"), "{summary}");
    assert!(summary.contains(" ... ") && summary.chars().count() <= 305, "{summary}");
    check(
        "/srv/data/sub/x.mp4: Invalid data found when processing input\n",
        "sub/x.mp4: Invalid data found when processing input",
    );
}

#[tokio::test]
async fn each_run_gets_a_private_scratch_directory_that_is_removed() {
    let s = setup();
    let record = s.data.join("cwd");
    let bin = fake_ffmpeg(&s.data, &format!("pwd > {}; touch ffmpeg2pass-0.log", record.display()));
    let scratch = tempfile::tempdir().unwrap();
    let mut config = FfmpegConfig::new(&bin, &s.data);
    config.scratch_root = scratch.path().to_path_buf();
    let runner = FfmpegRunner::new(config);
    let cmd = resolved(&s.sandbox, "-i in.mp4 out.mp4");
    let (report, _) = run(&runner, &cmd, None, &CancellationToken::new()).await;
    assert!(report.result.is_ok(), "{:?} {}", report.result, report.log_tail);
    let cwd = std::fs::read_to_string(&record).unwrap();
    let cwd = Path::new(cwd.trim());
    assert!(cwd.starts_with(scratch.path().canonicalize().unwrap()), "{}", cwd.display());
    // Removed beside the job's outcome, not before it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while cwd.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!cwd.exists(), "the scratch directory is removed after the run");
    assert!(!s.data.join("ffmpeg2pass-0.log").exists(), "side files do not land in the data directory");
}

#[tokio::test]
async fn the_output_size_limit_stops_ffmpeg_with_a_clear_error() {
    let s = setup();
    make_input(&s.data);
    let mut config = FfmpegConfig::new("ffmpeg", &s.data);
    config.limits.max_file_bytes = Some(300_000);
    let runner = FfmpegRunner::new(config);
    // Raw video: 160x120 yuv420p is 28.8 kB a frame, 75 frames = 2.1 MB.
    let cmd = resolved(&s.sandbox, "-i in.mp4 -c:v rawvideo -f avi raw.avi");
    let (report, _) = run(&runner, &cmd, Some(Duration::from_secs(60)), &CancellationToken::new()).await;
    let Err(RunError::Exit { message, .. }) = report.result else { panic!("expected a failure: {:?}", report.result) };
    assert!(message.contains("size limit"), "{message}");
    assert!(std::fs::metadata(s.data.join("raw.avi")).unwrap().len() <= 300_000);
}

#[tokio::test]
async fn a_run_stopped_half_way_does_not_report_100_percent() {
    let s = setup();
    // A 10 s input; ffmpeg stops at 1 s and, as it always does, writes a final `progress=end`.
    let bin = fake_ffmpeg(
        &s.data,
        "echo \"Input #0, mov,mp4, from 'x':\" >&2; echo '  Duration: 00:00:10.00, start: 0.000000, bitrate: 1 kb/s' >&2; \
         echo out_time_us=1000000; echo progress=continue; echo out_time_us=1000000; echo progress=end; exit 1",
    );
    let runner = FfmpegRunner::new(FfmpegConfig::new(&bin, &s.data));
    let cmd = resolved(&s.sandbox, "-i in.mp4 out.mp4");
    let (report, last) = run(&runner, &cmd, None, &CancellationToken::new()).await;
    assert!(matches!(report.result, Err(RunError::Exit { .. })));
    assert_eq!(last.unwrap().percent, Some(10.0));
}

#[tokio::test]
async fn an_unrepresentably_long_timeout_is_no_timeout() {
    let s = setup();
    let bin = fake_ffmpeg(&s.data, "exit 0");
    let runner = FfmpegRunner::new(FfmpegConfig::new(&bin, &s.data));
    let cmd = resolved(&s.sandbox, "-i in.mp4 out.mp4");
    let (report, _) = run(&runner, &cmd, Some(Duration::from_secs(u64::MAX)), &CancellationToken::new()).await;
    assert!(report.result.is_ok(), "{:?} {}", report.result, report.log_tail);
}

fn limited_runner(s: &Setup, body: &str, cpu_seconds: u64) -> FfmpegRunner {
    let bin = fake_ffmpeg(&s.data, body);
    let mut config = FfmpegConfig::new(&bin, &s.data);
    config.limits.cpu_seconds = Some(cpu_seconds);
    FfmpegRunner::new(config)
}

#[tokio::test]
async fn a_sigkill_from_outside_is_not_blamed_on_the_cpu_limit() {
    let s = setup();
    // The stand-in is killed by SIGKILL (as by the OOM killer or an operator) long before it
    // could have used 100 s of CPU.
    let runner = limited_runner(&s, "echo working >&2; kill -KILL $$", 100);
    let cmd = resolved(&s.sandbox, "-i in.mp4 out.mp4");
    let (report, _) = run(&runner, &cmd, None, &CancellationToken::new()).await;
    let Err(RunError::Exit { code, signal, message }) = report.result else { panic!("{:?}", report.result) };
    assert_eq!((code, signal), (None, Some(9)));
    assert!(!message.contains("CPU time limit exceeded"), "{message}");
    assert!(message.contains("SIGKILL") && message.contains("after 0."), "{message}");
    assert!(message.contains("outside this server"), "{message}");
}

#[tokio::test]
async fn sigxcpu_is_reported_as_the_cpu_limit() {
    let s = setup();
    let runner = limited_runner(&s, "kill -XCPU $$", 100);
    let cmd = resolved(&s.sandbox, "-i in.mp4 out.mp4");
    let (report, _) = run(&runner, &cmd, None, &CancellationToken::new()).await;
    let Err(RunError::Exit { message, .. }) = report.result else { panic!("{:?}", report.result) };
    assert_eq!(message, "CPU time limit exceeded (100 s); ffmpeg was stopped");
}

/// The real ffmpeg catches SIGXCPU and finishes its outputs; x264's slowest preset then has a
/// lookahead to flush, taking more than a further second of CPU, so that the next SIGXCPU
/// interrupts its I/O and its only error is what that caused ("Error closing progress log ...
/// Immediate exit requested"), or a fourth signal or the hard limit ends it: whichever way,
/// the job error names the limit (tester finding G22).
#[tokio::test]
async fn a_cpu_limit_that_ffmpeg_catches_is_named() {
    let s = setup();
    let mut config = FfmpegConfig::new("ffmpeg", &s.data);
    config.limits.cpu_seconds = Some(1);
    let runner = FfmpegRunner::new(config);
    let cmd = resolved(
        &s.sandbox,
        "-f lavfi -i testsrc2=duration=600:size=640x480:rate=25 -c:v libx264 -preset veryslow -f null -",
    );
    let (report, _) = run(&runner, &cmd, Some(Duration::from_secs(600)), &CancellationToken::new()).await;
    let Err(RunError::Exit { message, .. }) = report.result else { panic!("{:?}", report.result) };
    assert_eq!(message, "CPU time limit exceeded (1 s); ffmpeg was stopped", "{}", report.log_tail);
}

#[tokio::test]
async fn after_a_normal_exit_the_process_group_is_not_signalled() {
    let s = setup();
    // Once ffmpeg is reaped its process-group id may belong to someone else: the runner only
    // signals a group before reaping its leader, on the stop path. A process left in the
    // group by a normal run shows that no signal was sent after the exit.
    let pid_file = s.data.join("straggler");
    let bin = fake_ffmpeg(
        &s.data,
        &format!("/usr/bin/sleep 30 </dev/null >/dev/null 2>&1 & echo $! > {}; exit 0", pid_file.display()),
    );
    let runner = FfmpegRunner::new(FfmpegConfig::new(&bin, &s.data));
    let cmd = resolved(&s.sandbox, "-i in.mp4 out.mp4");
    let (report, _) = run(&runner, &cmd, None, &CancellationToken::new()).await;
    assert!(report.result.is_ok(), "{:?}", report.result);
    let straggler: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let still_alive = alive(straggler);
    // Clean up what this test started.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(straggler), nix::sys::signal::Signal::SIGKILL);
    assert!(still_alive, "the group was signalled after its leader was reaped");
}

/// The client's `-loglevel`/`-v` governs what the job log keeps; percent, which needs the
/// input banner printed at `info`, works with every value, and a job error is built from what
/// ffmpeg says at its default level.
#[tokio::test]
async fn the_clients_log_level_filters_the_log_but_not_percent() {
    let s = setup();
    make_input(&s.data);
    let runner = FfmpegRunner::new(FfmpegConfig::new("ffmpeg", &s.data));
    // (log options, whether the log shows info lines, whether it shows `[level] ` prefixes)
    let cases = [
        ("", true, false),
        ("-loglevel error", false, false),
        ("-v quiet", false, false),
        ("-v panic", false, false),
        ("-loglevel fatal", false, false),
        ("-loglevel warning", false, false),
        ("-v 24", false, false),
        ("-loglevel level+error", false, true),
        ("-loglevel repeat+level+warning", false, true),
        ("-loglevel +repeat+error", false, false),
        ("-v info -loglevel error", false, false),
        ("-loglevel error -v info", true, false),
        ("-loglevel level+info", true, true),
        ("-v verbose", true, false),
    ];
    for (i, (options, info, levels)) in cases.into_iter().enumerate() {
        let cmd = resolved(&s.sandbox, &format!("{options} -i in.mp4 -t 2 -c:v libx264 -preset ultrafast out{i}.mp4"));
        let (report, last) = run(&runner, &cmd, Some(Duration::from_secs(60)), &CancellationToken::new()).await;
        assert!(report.result.is_ok(), "{options}: {:?} {}", report.result, report.log_tail);
        let percent = last.unwrap().percent;
        assert!(percent.is_some_and(|p| (95.0..100.0).contains(&p)), "{options}: percent {percent:?}");
        let log = &report.log_tail;
        assert_eq!(log.contains("Duration: 00:00:03.00"), info, "{options}: {log}");
        assert_eq!(log.contains("[info] "), info && levels, "{options}: {log}");
        assert!(!log.contains("[info] ") || levels, "{options}: {log}");
    }
    // A failing run at `quiet`: the log is empty, the error still says why.
    let cmd = resolved(&s.sandbox, "-v quiet -i missing.mp4 out.mp4");
    let (report, _) = run(&runner, &cmd, Some(Duration::from_secs(60)), &CancellationToken::new()).await;
    let Err(RunError::Exit { message, .. }) = report.result else { panic!("{:?}", report.result) };
    assert!(message.contains("missing.mp4: No such file or directory"), "{message}");
    assert!(!message.contains("[error]"), "{message}");
    assert_eq!(report.log_tail, "");
    // At `error`, the log keeps the error line too.
    let cmd = resolved(&s.sandbox, "-loglevel error -i missing.mp4 out.mp4");
    let (report, _) = run(&runner, &cmd, Some(Duration::from_secs(60)), &CancellationToken::new()).await;
    assert_eq!(report.log_tail.trim(), "missing.mp4: No such file or directory");
}

/// `-n` is the client's: the runner does not add `-y` then, and an existing output makes
/// ffmpeg fail with its own reason, leaving the file alone.
#[tokio::test]
async fn no_overwrite_is_the_clients_choice() {
    let s = setup();
    make_input(&s.data);
    std::fs::write(s.data.join("taken.mp4"), "someone's file").unwrap();
    let runner = FfmpegRunner::new(FfmpegConfig::new("ffmpeg", &s.data));
    let cmd = resolved(&s.sandbox, "-n -i in.mp4 -c copy taken.mp4");
    assert!(!FfmpegRunner::args(&cmd).contains(&"-y".to_owned()));
    let (report, _) = run(&runner, &cmd, Some(Duration::from_secs(60)), &CancellationToken::new()).await;
    let Err(RunError::Exit { message, .. }) = report.result else { panic!("{:?}", report.result) };
    assert_eq!(message, "File 'taken.mp4' already exists. Exiting.");
    assert_eq!(std::fs::read_to_string(s.data.join("taken.mp4")).unwrap(), "someone's file");
    let cmd = resolved(&s.sandbox, "-i in.mp4 -n -c copy fresh.mp4");
    let (report, _) = run(&runner, &cmd, Some(Duration::from_secs(60)), &CancellationToken::new()).await;
    assert!(report.result.is_ok(), "{:?} {}", report.result, report.log_tail);
    // Without -n, the runner overwrites as before.
    let cmd = resolved(&s.sandbox, "-i in.mp4 -c copy taken.mp4");
    let (report, _) = run(&runner, &cmd, Some(Duration::from_secs(60)), &CancellationToken::new()).await;
    assert!(report.result.is_ok(), "{:?} {}", report.result, report.log_tail);
    assert!(std::fs::metadata(s.data.join("taken.mp4")).unwrap().len() > 1000);
}

/// The rest of the runner's own options: the client's win where they leave the runner able
/// to see (`-stats`, `-hide_banner`, `-stdin` with an empty stdin, `-stats_period` within
/// bounds); a `-stats_period` that would starve progress is bounded.
#[tokio::test]
async fn the_clients_copies_of_the_runners_options() {
    let s = setup();
    make_input(&s.data);
    let runner = FfmpegRunner::new(FfmpegConfig::new("ffmpeg", &s.data));
    for options in ["-stats", "-hide_banner", "-nostats", "-stdin", "-stats_period 0.2", "-y", "-stats -loglevel error"]
    {
        let cmd = resolved(&s.sandbox, &format!("{options} -i in.mp4 -t 2 -c:v libx264 -preset ultrafast o.mp4"));
        let (report, last) = run(&runner, &cmd, Some(Duration::from_secs(60)), &CancellationToken::new()).await;
        assert!(report.result.is_ok(), "{options}: {:?} {}", report.result, report.log_tail);
        assert!(last.unwrap().percent.is_some(), "{options}");
        assert!(!report.log_tail.contains('\r'), "{options}: stats lines become log lines");
    }
    let bounded = |options: &str| {
        let args = FfmpegRunner::args(&resolved(&s.sandbox, &format!("{options} -i in.mp4 o.mp4")));
        let at = args.iter().rposition(|a| a == "-stats_period")?;
        Some(args[at + 1].clone())
    };
    assert_eq!(bounded("-stats_period 60"), Some("60".to_owned()).filter(|_| false).or(Some("5".to_owned())));
    assert_eq!(bounded("-stats_period 0.01"), Some("0.1".to_owned()));
    assert_eq!(bounded("-stats_period 2"), Some("2".to_owned()), "in bounds: the client's own, unchanged");
    assert_eq!(bounded("-stats_period 1 -stats_period 30"), Some("5".to_owned()), "the last one counts");
}

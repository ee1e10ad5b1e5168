//! `bench sse [--subscribers N=1000] [--all M=100] [--rounds R=5] [--video-seconds S=120]
//! [--stats-period P,...=0.05,0.5] [--client-nice N=0] [--client-idle] [--client-pause-ms MS=1] [--ffmpeg-nice N=0] [--server-bin PATH]`: N server-sent event subscribers on one running job plus M on
//! `/events?progress=true`, against the same job with no subscriber, rounds interleaved, at
//! each `-stats_period` (seconds between two progress reports: 0.5 is ffmpeg's default, what
//! users get; 0.05 is ten times that rate, the fan-out's stress case).
//!
//! Whether the run time with subscribers is "within noise" of the run time alone is a measured
//! statement: per stats period the report gives the spread of the runs alone (min, median, max)
//! and says whether the median run with subscribers stays within it.
//!
//! Measured per round: whether every subscriber saw the job's final status; the server's
//! resident memory growth (its RSS sampled every 50 ms while the job runs with its
//! subscribers, minus its RSS before they connected); the job's run time (`started_at` to
//! `completed_at`) with and without subscribers; the CPU time of the server process, of ffmpeg
//! and of the subscribers' client during the run; and the progress fan-out latency: ffmpeg
//! runs behind a small wrapper (`--ffmpeg-bin`) that notes the wall-clock time at which it
//! hands each `-progress` block to the server, and each subscriber notes when the `progress`
//! event of that block reached its socket (the kernel's receive time) and when it read it
//! (matched by frame number; the first block of each frame). The subscribers are one thread
//! of this process reading every stream over non-blocking sockets with epoll
//! ([`subscribers`]), on the same machine as the server: the arrival time is the server's part
//! of the latency, the read time adds the thread's own scheduling delay; their CPU time is
//! reported beside the server's.
//! With `--client-nice N` that thread runs at nice N (19: it takes only CPU time that ffmpeg
//! and the server leave, about what subscribers on other machines would cost the job);
//! `--client-idle` runs it under `SCHED_IDLE`, below every nice value. After a poll that read
//! bytes the thread pauses `--client-pause-ms` (default 1 ms) before it polls again, so that a
//! fan-out's events are read in batches (one wake-up of the thread per pause instead of one
//! per write); the read times include that pause, the arrival times do not. Every other round
//! runs the job with subscribers first, so that neither run always follows the other.
//!
//! Where the run time with subscribers goes is split three ways: the wrapper notes when it
//! starts ffmpeg and when ffmpeg exited, so the report shows `started_at` -> ffmpeg's start
//! (the server's claim, checks and spawn), ffmpeg's own run, and ffmpeg's exit ->
//! `completed_at` (the server's reaping, listing and saving), alone and with subscribers, and
//! the CPU the server and the client spent while the job ran.
//!
//! Each job waits in the queue behind a "gate" job (an hour of lavfi into the null muxer) until
//! every subscriber is connected; the gate is then cancelled and the measured job starts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::client::Client;
use super::server::{Server, WorkerConfig, release_binary};
use super::subscribers::{self, Counters, Stream, process_cpu_seconds, thread_cpu_seconds};
use super::{Args, load_average, machine, median, print};
use crate::Result;

struct Options {
    subscribers: usize,
    all: usize,
    rounds: usize,
    video_seconds: u32,
    stats_periods: Vec<f64>,
    build: bool,
    server_bin: Option<String>,
    /// The subscriber thread's nice value (`--client-nice`; 0: as the bench).
    client_nice: i32,
    /// The measured job's ffmpeg's nice value (`--ffmpeg-nice`; 0: as the server).
    ffmpeg_nice: i32,
    /// Whether the subscriber thread runs under `SCHED_IDLE` (`--client-idle`): it gets a core
    /// only when nothing else at all wants it.
    client_idle: bool,
    /// The subscriber thread's pause after a poll that found bytes (`--client-pause-ms`, default
    /// 1 ms; 0: it polls again at once), see [`subscribers::start`].
    client_pause: Duration,
}

pub(super) fn main(args: &[&str]) -> Result {
    let mut a = Args::new(args);
    let opts = Options {
        subscribers: a.value("--subscribers", 1000)?,
        all: a.value("--all", 100)?,
        rounds: a.value("--rounds", 5)?,
        video_seconds: a.value("--video-seconds", 120)?,
        stats_periods: a
            .value("--stats-period", "0.05,0.5".to_owned())?
            .split(',')
            .map(|p| p.trim().parse::<f64>().map_err(|e| format!("--stats-period {p}: {e}")))
            .collect::<std::result::Result<Vec<_>, _>>()?,
        build: !a.switch("--no-build"),
        server_bin: Some(a.value("--server-bin", String::new())?).filter(|path| !path.is_empty()),
        client_nice: a.value("--client-nice", 0)?,
        ffmpeg_nice: a.value("--ffmpeg-nice", 0)?,
        client_idle: a.switch("--client-idle"),
        client_pause: Duration::from_secs_f64(a.value("--client-pause-ms", 1.0_f64)?.max(0.0) / 1e3),
    };
    a.finish()?;
    eprintln!("bench sse: {}\nload average (1, 5, 15 min) at the start: {}", machine(), load_average());
    // Another build of the server (`--server-bin`), e.g. to compare two versions on one machine.
    let bin = match &opts.server_bin {
        Some(path) => std::path::PathBuf::from(path),
        None => release_binary(opts.build)?,
    };
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("out"))?;
    let blocks = dir.path().join("blocks.log");
    let wrapper = dir.path().join("ffmpeg-tap");
    std::fs::write(&wrapper, wrapper_script(&blocks, opts.ffmpeg_nice))?;
    std::process::Command::new("chmod").args(["+x"]).arg(&wrapper).status()?;
    let database_url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let log = dir.path().join("server.log");
    let wrapper_arg = wrapper.display().to_string();
    let extra = ["--ffmpeg-bin", wrapper_arg.as_str(), "--max-connections", "5000"];
    let config = WorkerConfig {
        bin: &bin,
        data: &data,
        database_url: &database_url,
        concurrency: 1,
        rust_log: "warn,ffmpeg_worker_server::serve=info",
        log: &log,
    };
    let server = Server::ffmpeg_worker_with(&config, &extra)?;
    let addr: SocketAddr = server.base().trim_start_matches("http://").parse()?;
    let api = Client::new(server.base());
    let mut rows: Vec<Vec<(Run, Run)>> = opts.stats_periods.iter().map(|_| Vec::new()).collect();
    let mut n = 0;
    for round in 0..opts.rounds {
        for (period, rows) in opts.stats_periods.iter().zip(&mut rows) {
            let job = |n, subscribe| Measured { stats_period: *period, n, subscribe };
            let run = |n, subscribe| {
                run_job(&api, &server, addr, &opts, &blocks, job(n, subscribe))
                    .map_err(|e| format!("{e}\n{}", server.log_tail()))
            };
            // Every other round runs the job with subscribers first: neither run always follows
            // the other (the streams' teardown, the allocator's state, the machine's drift).
            let (quiet, busy) = if round % 2 == 0 {
                let quiet = run(n, false)?;
                (quiet, run(n + 1, true)?)
            } else {
                let busy = run(n, true)?;
                (run(n + 1, false)?, busy)
            };
            n += 2;
            eprintln!(
                "round {} (-stats_period {period}): run {:.2} s alone, {:.2} s with subscribers; final seen {}/{}; RSS {:.1} MiB before, +{:.1} MiB; arrival p50 {:.1} ms, p99 {:.1} ms; read p50 {:.1} ms, p99 {:.1} ms ({} receipts); CPU s server {:.2} -> {:.2}, ffmpeg {:.2} -> {:.2}, client {:.2}; {} blocks, {} deliveries",
                round + 1,
                quiet.run_seconds,
                busy.run_seconds,
                busy.saw_final,
                busy.subscribers,
                busy.rss_before_mib,
                busy.rss_growth_mib,
                busy.p50_ms,
                busy.p99_ms,
                busy.read_p50_ms,
                busy.read_p99_ms,
                busy.receipts,
                quiet.cpu.server,
                busy.cpu.server,
                quiet.cpu.ffmpeg,
                busy.cpu.ffmpeg,
                busy.cpu.client,
                busy.blocks,
                busy.deliveries,
            );
            eprintln!(
                "  where the run went (start ms / ffmpeg s / end ms): alone {:.0} / {:.3} / {:.0}, with subscribers {:.0} / {:.3} / {:.0}; CPU s during the run: server {:.3} -> {:.3}, client {:.3}",
                quiet.start_ms,
                quiet.ffmpeg_seconds,
                quiet.end_ms,
                busy.start_ms,
                busy.ffmpeg_seconds,
                busy.end_ms,
                quiet.cpu_run.server,
                busy.cpu_run.server,
                busy.cpu_run.client,
            );
            rows.push((quiet, busy));
        }
    }
    drop(server);
    let mut out = String::new();
    for (period, rows) in opts.stats_periods.iter().zip(&rows) {
        out.push_str(&report(&opts, *period, rows));
    }
    print(&out)
}

/// What one job run measured.
struct Run {
    run_seconds: f64,
    subscribers: usize,
    saw_final: usize,
    /// The server's RSS before the subscribers connected (what earlier rounds left allocated).
    rss_before_mib: f64,
    rss_growth_mib: f64,
    /// Fan-out latency to the bytes reaching the subscribers' sockets (the server's part).
    p50_ms: f64,
    p99_ms: f64,
    /// Fan-out latency to this bench's subscriber thread reading them (its own delay added).
    read_p50_ms: f64,
    read_p99_ms: f64,
    receipts: usize,
    /// Progress blocks the wrapper handed on.
    blocks: usize,
    /// Progress events read by all subscribers.
    deliveries: usize,
    /// How many times the subscriber thread blocked over its life (connecting included).
    client_sleeps: u64,
    cpu: CpuSpent,
    /// CPU from the gate's cancel to the moment the bench saw the job final (the streams'
    /// endings and the connections' teardown not included).
    cpu_run: CpuSpent,
    /// Where the run time went: from `started_at` to the wrapper starting ffmpeg (ms), ffmpeg's
    /// own run (its start to its exit, s), from its exit to `completed_at` (ms).
    start_ms: f64,
    ffmpeg_seconds: f64,
    end_ms: f64,
}

/// One measured run: its job's `-stats_period`, its number (output `out/sse-N.mp4`), and
/// whether the subscribers follow it.
#[derive(Clone, Copy)]
struct Measured {
    stats_period: f64,
    n: usize,
    subscribe: bool,
}

fn run_job(
    api: &Client,
    server: &Server,
    addr: SocketAddr,
    opts: &Options,
    blocks: &std::path::Path,
    Measured { stats_period, n, subscribe }: Measured,
) -> Result<Run> {
    let _ = std::fs::remove_file(blocks);
    let gate = api.submit("-re -f lavfi -i testsrc=duration=3600:size=32x32:rate=1 -f null /dev/null")?;
    let command = format!(
        "-f lavfi -i testsrc=duration={}:size=320x240:rate=25 -c:v libx264 -preset veryfast -stats_period {} out/sse-{n}.mp4",
        opts.video_seconds, stats_period
    );
    let job = api.submit(&command)?;
    wait_until(api, &gate, |s| s == "running")?;
    let before = server.memory()?.rss_kib;
    let counters = Arc::new(Counters::default());
    let client = if subscribe {
        let streams = std::iter::repeat_n(format!("/jobs/{job}/events"), opts.subscribers)
            .map(|path| Stream { path, per_job: true })
            .chain(
                std::iter::repeat_n("/events?progress=true".to_owned(), opts.all)
                    .map(|path| Stream { path, per_job: false }),
            )
            .collect::<Vec<_>>();
        let total = streams.len();
        let client = subscribers::start(
            addr,
            job.clone(),
            streams,
            Arc::clone(&counters),
            Duration::from_secs(1200),
            opts.client_pause,
        )?;
        let start = Instant::now();
        while counters.connected.load(Ordering::SeqCst) < total {
            if counters.failed.load(Ordering::SeqCst) > 0 || client.is_finished() {
                let error = client.join().map_err(|_| "the subscriber thread panicked")?.err();
                return Err(error.unwrap_or_else(|| "the subscribers ended before the job started".to_owned()).into());
            }
            if start.elapsed() > Duration::from_secs(120) {
                return Err(format!(
                    "only {} of {total} subscribers connected",
                    counters.connected.load(Ordering::SeqCst)
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(client)
    } else {
        None
    };
    let tid = counters.tid.load(Ordering::SeqCst);
    if subscribe && opts.client_idle && tid > 0 {
        // `SCHED_IDLE` (priority 0): below every nice value.
        let status = std::process::Command::new("chrt")
            .args(["--idle", "-p", "0", &tid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("chrt --idle of the subscriber thread {tid} failed: {status}").into());
        }
    }
    if subscribe && opts.client_nice != 0 && tid > 0 {
        // A thread is a task of its own for the scheduler: `renice -p TID` sets its nice value.
        let status = std::process::Command::new("renice")
            .args(["-n", &opts.client_nice.to_string(), "-p", &tid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("renice of the subscriber thread {tid} failed: {status}").into());
        }
    }
    // The client's time is read here while it runs (`None` once it ended), and by the thread
    // itself at its end.
    let cpu = || Cpu {
        server: process_cpu_seconds(server.pid(), false),
        ffmpeg: process_cpu_seconds(server.pid(), true),
        client: if tid > 0 { thread_cpu_seconds(tid) } else { Some(0.0) },
    };
    let cpu_before = cpu();
    api.cancel(&gate)?;
    let mut peak = before;
    let start = Instant::now();
    let state = loop {
        peak = peak.max(server.memory()?.rss_kib);
        let state = api.job(&job)?;
        if state.is_final() {
            break state;
        }
        if start.elapsed() > Duration::from_secs(900) {
            return Err(format!("job {job} did not finish in 15 min").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let cpu_run = cpu();
    if state.status != "completed" {
        return Err(format!("job {job} {}: {:?}", state.status, state.error).into());
    }
    let [_, Some(started), Some(completed)] = state.times else {
        return Err(format!("job {job} has no start or end time").into());
    };
    let run_seconds = completed - started;
    let (ffmpeg_start, ffmpeg_exit) = match read_span(blocks) {
        (Some(start), Some(exit)) => (start as f64 / 1e9, exit as f64 / 1e9),
        _ => {
            return Err(
                format!("the wrapper did not note when ffmpeg started and exited ({})", blocks.display()).into()
            );
        }
    };
    let (seen, client_cpu_after, client_sleeps) = match client {
        Some(client) => {
            let ended = client.join().map_err(|_| "the subscriber thread panicked")??;
            (ended.seen, ended.cpu_seconds, ended.sleeps)
        }
        None => (Vec::new(), 0.0, 0),
    };
    let cpu_after = Cpu { client: Some(client_cpu_after), ..cpu() };
    // A client that read every stream's end before the bench saw the job final spent all its
    // CPU of the run by its end.
    let cpu_run = Cpu { client: cpu_run.client.or(cpu_after.client), ..cpu_run };
    let written = read_blocks(blocks);
    // From the wrapper's hand-off to the bytes reaching the subscriber's socket (the server's
    // part), and to this bench's thread reading them (its own delay added).
    let (mut arrived, mut read) = (Vec::new(), Vec::new());
    let mut by_frame: HashMap<u64, Vec<f64>> = HashMap::new();
    let mut saw_final = 0;
    let mut deliveries = 0;
    for seen in &seen {
        saw_final += usize::from(seen.saw_final);
        deliveries += seen.events;
        for receipt in &seen.progress {
            if let Some(written) = written.get(&receipt.frame) {
                let ms = |at: u128| at.saturating_sub(*written) as f64 / 1e6;
                arrived.push(ms(receipt.arrived));
                read.push(ms(receipt.read));
                by_frame.entry(receipt.frame).or_default().push(ms(receipt.arrived));
            }
        }
    }
    arrived.sort_by(f64::total_cmp);
    read.sort_by(f64::total_cmp);
    if subscribe {
        // Where the slowest receipts were: the blocks whose last subscriber read them latest.
        let mut worst: Vec<(u64, f64, f64, f64, usize)> = by_frame
            .into_iter()
            .map(|(frame, ms)| {
                let first = ms.iter().copied().fold(f64::INFINITY, f64::min);
                (frame, first, median(&ms), ms.iter().copied().fold(0.0, f64::max), ms.len())
            })
            .collect();
        worst.sort_by(|a, b| b.3.total_cmp(&a.3));
        let mut frames: Vec<u64> = written.keys().copied().collect();
        frames.sort_unstable();
        for (frame, first, p50, max, n) in worst.iter().take(3) {
            let block = frames.iter().position(|f| f == frame).map_or(0, |i| i + 1);
            eprintln!(
                "  slowest block (arrival): frame {frame} (block {block} of {}): {n} receipts, first {first:.1} ms, median {p50:.1} ms, last {max:.1} ms",
                frames.len()
            );
        }
    }
    let pct = |latencies: &[f64], p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Ok(Run {
        run_seconds,
        subscribers: if subscribe { opts.subscribers + opts.all } else { 0 },
        saw_final,
        rss_before_mib: before as f64 / 1024.0,
        rss_growth_mib: peak.saturating_sub(before) as f64 / 1024.0,
        p50_ms: pct(&arrived, 0.50),
        p99_ms: pct(&arrived, 0.99),
        read_p50_ms: pct(&read, 0.50),
        read_p99_ms: pct(&read, 0.99),
        receipts: arrived.len(),
        blocks: written.len(),
        deliveries,
        client_sleeps,
        cpu: cpu_after.minus(cpu_before),
        cpu_run: cpu_run.minus(cpu_before),
        start_ms: (ffmpeg_start - started) * 1e3,
        ffmpeg_seconds: ffmpeg_exit - ffmpeg_start,
        end_ms: (completed - ffmpeg_exit) * 1e3,
    })
}

/// CPU seconds (user + system) spent by the server process, by ffmpeg (with its wrapper: the
/// server's reaped children) and by the subscriber thread, from the moment the gate job is
/// cancelled until the measured job ended (and every subscriber read its end).
/// `client` is `None` when the subscriber thread had already ended when it was read.
#[derive(Clone, Copy, Default)]
struct Cpu {
    server: f64,
    ffmpeg: f64,
    client: Option<f64>,
}

impl Cpu {
    fn minus(self, before: Cpu) -> CpuSpent {
        CpuSpent {
            server: self.server - before.server,
            ffmpeg: self.ffmpeg - before.ffmpeg,
            client: self.client.unwrap_or(0.0) - before.client.unwrap_or(0.0),
        }
    }
}

/// CPU seconds spent between two [`Cpu`] readings.
#[derive(Clone, Copy, Default)]
struct CpuSpent {
    server: f64,
    ffmpeg: f64,
    client: f64,
}

fn wait_until(api: &Client, id: &str, status: impl Fn(&str) -> bool) -> Result {
    let start = Instant::now();
    while !status(&api.job(id)?.status) {
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!("job {id} did not reach the expected status in 2 min").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The wrapper's notes of the measured job's ffmpeg: when it started it (`start NS`, right
/// before spawning it) and when ffmpeg exited (`exit NS`, once reaped), ns since the Unix epoch.
fn read_span(path: &std::path::Path) -> (Option<u128>, Option<u128>) {
    let (mut start, mut exit) = (None, None);
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        match line.split_once(' ') {
            Some(("start", at)) => start = at.trim().parse().ok(),
            Some(("exit", at)) => exit = at.trim().parse().ok(),
            _ => {}
        }
    }
    (start, exit)
}

/// The wrapper's notes: for each frame, when the first block reporting it was handed on.
fn read_blocks(path: &std::path::Path) -> HashMap<u64, u128> {
    let mut written = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let mut parts = line.split_whitespace();
        if let (Some(Ok(frame)), Some(Ok(at))) = (parts.next().map(str::parse), parts.next().map(str::parse)) {
            written.entry(frame).or_insert(at);
        }
    }
    written
}

/// A Python wrapper around ffmpeg that passes everything through and notes, for each
/// `-progress` block on its stdout, its frame and the wall-clock time just before handing the
/// block's last line on. Only the measured job (output `out/sse-N.mp4`) is noted: the gate
/// job's blocks (frames 1, 2, ... a second apart) would otherwise stand for the measured job's
/// first frames and add up to a second to their latency; the gate runs ffmpeg itself (`exec`).
/// With `nice` other than 0 the measured job's ffmpeg runs at that nice value (`--ffmpeg-nice`).
/// (The server runs ffmpeg with an empty environment, so the log path is written into the
/// script.)
fn wrapper_script(log: &std::path::Path, nice: i32) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let ffmpeg = std::env::split_paths(&path)
        .map(|d| d.join("ffmpeg"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| "/usr/bin/ffmpeg".into());
    format!(
        r#"#!/usr/bin/python3
import os, subprocess, sys, time
if not any("/sse-" in arg for arg in sys.argv[1:]):
    os.execv({ffmpeg:?}, [{ffmpeg:?}] + sys.argv[1:])
log = open({log:?}, "a")
log.write("start " + str(time.time_ns()) + "\n")
log.flush()
if {nice} != 0:
    os.nice({nice})
proc = subprocess.Popen([{ffmpeg:?}] + sys.argv[1:], stdout=subprocess.PIPE)
out = sys.stdout.buffer
frame = b"0"
with log:
    for line in iter(proc.stdout.readline, b""):
        if line.startswith(b"frame="):
            frame = line[6:].strip()
        if line.startswith(b"progress="):
            log.write(frame.decode() + " " + str(time.time_ns()) + "\n")
            log.flush()
        out.write(line)
        out.flush()
    code = proc.wait()
    log.write("exit " + str(time.time_ns()) + "\n")
sys.exit(code)
"#
    )
}

fn report(opts: &Options, stats_period: f64, rows: &[(Run, Run)]) -> String {
    let quiet: Vec<f64> = rows.iter().map(|(q, _)| q.run_seconds).collect();
    let busy: Vec<f64> = rows.iter().map(|(_, b)| b.run_seconds).collect();
    let ratios: Vec<f64> = rows.iter().map(|(q, b)| b.run_seconds / q.run_seconds).collect();
    let growth: Vec<f64> = rows.iter().map(|(_, b)| b.rss_growth_mib).collect();
    let p50: Vec<f64> = rows.iter().map(|(_, b)| b.p50_ms).collect();
    let p99: Vec<f64> = rows.iter().map(|(_, b)| b.p99_ms).collect();
    let finals: Vec<String> = rows.iter().map(|(_, b)| format!("{}/{}", b.saw_final, b.subscribers)).collect();
    let mut out = format!(
        "\n## bench sse: {} subscribers on one job + {} on /events?progress=true, {} rounds, {} s of video, -stats_period {}, subscriber thread at nice {} pausing {} ms after a poll that read bytes, ffmpeg at nice {}\n\nserver: {}\n{}\nload average at the end: {}\n\n",
        opts.subscribers,
        opts.all,
        rows.len(),
        opts.video_seconds,
        stats_period,
        opts.client_nice,
        opts.client_pause.as_secs_f64() * 1e3,
        opts.ffmpeg_nice,
        opts.server_bin.as_deref().unwrap_or("release build of this tree"),
        machine(),
        load_average()
    );
    out.push_str("| round | run alone | run with subscribers | ratio | saw the final status | server RSS before | RSS growth | fan-out p50 | fan-out p99 | read p50 | read p99 |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (i, (q, b)) in rows.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {:.2} s | {:.2} s | {:.2} | {}/{} | {:.1} MiB | {:.1} MiB | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |\n",
            i + 1,
            q.run_seconds,
            b.run_seconds,
            b.run_seconds / q.run_seconds,
            b.saw_final,
            b.subscribers,
            b.rss_before_mib,
            b.rss_growth_mib,
            b.p50_ms,
            b.p99_ms,
            b.read_p50_ms,
            b.read_p99_ms
        ));
    }
    let read_p50: Vec<f64> = rows.iter().map(|(_, b)| b.read_p50_ms).collect();
    let read_p99: Vec<f64> = rows.iter().map(|(_, b)| b.read_p99_ms).collect();
    out.push_str(&format!(
        "| median | {:.2} s | {:.2} s | {:.2} | {} | | {:.1} MiB | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |\n",
        median(&quiet),
        median(&busy),
        median(&ratios),
        finals.join(", "),
        median(&growth),
        median(&p50),
        median(&p99),
        median(&read_p50),
        median(&read_p99)
    ));
    out.push_str(
        "\nFan-out: from the wrapper handing a progress block on to the event's bytes reaching each \
         subscriber's socket (the kernel's receive time: the server's part, what a subscriber on \
         another machine sees less the network); read: to this bench's one subscriber thread reading \
         them (its own turn on the shared cores added).\n",
    );
    out.push_str(&noise(&quiet, &busy));
    out.push_str(&split(rows));
    out.push_str("\nCPU time from the gate's cancel to the end of the job (and of every stream), user + system:\n\n");
    out.push_str("| round | server alone | server with subscribers | server's extra per event delivered | ffmpeg alone | ffmpeg with subscribers | subscriber client | client per event delivered | client sleeps | progress blocks | events delivered |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    let per_event = |q: &Run, b: &Run| (b.cpu.server - q.cpu.server) / b.deliveries.max(1) as f64 * 1e6;
    let client_per_event = |b: &Run| b.cpu.client / b.deliveries.max(1) as f64 * 1e6;
    for (i, (q, b)) in rows.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {:.2} s | {:.2} s | {:.1} µs | {:.2} s | {:.2} s | {:.2} s ({:.0} % of one core) | {:.1} µs | {} | {} | {} |\n",
            i + 1,
            q.cpu.server,
            b.cpu.server,
            per_event(q, b),
            q.cpu.ffmpeg,
            b.cpu.ffmpeg,
            b.cpu.client,
            b.cpu.client / b.run_seconds * 100.0,
            client_per_event(b),
            b.client_sleeps,
            b.blocks,
            b.deliveries
        ));
    }
    let extra: Vec<f64> = rows.iter().map(|(q, b)| per_event(q, b)).collect();
    let client: Vec<f64> = rows.iter().map(|(_, b)| b.cpu.client).collect();
    let client_extra: Vec<f64> = rows.iter().map(|(_, b)| client_per_event(b)).collect();
    let sleeps: Vec<f64> = rows.iter().map(|(_, b)| b.client_sleeps as f64).collect();
    out.push_str(&format!(
        "| median | | | {:.1} µs | | | {:.2} s | {:.1} µs | {:.0} | | |\n\n\
         The client's CPU per event is its whole CPU over the progress events it read (its connecting, parsing \
         and status events included); its sleeps are the times its thread blocked over its life (connecting \
         included), each ended by a wake-up that the server's writes (or the pause's timer) paid for.\n",
        median(&extra),
        median(&client),
        median(&client_extra),
        median(&sleeps)
    ));
    out
}

/// Where the run time with subscribers went, against the run alone: `started_at` to the
/// wrapper starting ffmpeg (the server's claim, checks and spawn), ffmpeg's own run, ffmpeg's
/// exit to `completed_at` (the server's reaping, listing and saving); and the CPU the server
/// (beyond its run alone) and the subscriber client spent while the job ran, which on a shared
/// machine is taken from ffmpeg. Subscribers on other machines would cost ffmpeg only the
/// server's share.
fn split(rows: &[(Run, Run)]) -> String {
    let mut out = String::from(
        "\nWhere the run time went (start: `started_at` to ffmpeg's start; ffmpeg: its own run; end: its exit to `completed_at`), and the CPU spent while the job ran (gate cancelled -> job seen final):\n\n\
         | round | alone: start / ffmpeg / end | with subscribers: start / ffmpeg / end | run-time gap | of it ffmpeg's own | server's extra CPU in the run | client's CPU in the run |\n|---|---|---|---|---|---|---|\n",
    );
    let gap = |(q, b): &(Run, Run)| (b.run_seconds - q.run_seconds) * 1e3;
    let ffmpeg_gap = |(q, b): &(Run, Run)| (b.ffmpeg_seconds - q.ffmpeg_seconds) * 1e3;
    let server = |(q, b): &(Run, Run)| b.cpu_run.server - q.cpu_run.server;
    for (i, row) in rows.iter().enumerate() {
        let (q, b) = row;
        out.push_str(&format!(
            "| {} | {:.0} ms / {:.3} s / {:.0} ms | {:.0} ms / {:.3} s / {:.0} ms | {:+.0} ms | {:+.0} ms | {:.3} s | {:.3} s |\n",
            i + 1,
            q.start_ms,
            q.ffmpeg_seconds,
            q.end_ms,
            b.start_ms,
            b.ffmpeg_seconds,
            b.end_ms,
            gap(row),
            ffmpeg_gap(row),
            server(row),
            b.cpu_run.client,
        ));
    }
    let of = |f: &dyn Fn(&(Run, Run)) -> f64| median(&rows.iter().map(f).collect::<Vec<_>>());
    let (gap, ffmpeg_gap) = (of(&gap), of(&ffmpeg_gap));
    let (server, client) = (of(&server), of(&|(_, b): &(Run, Run)| b.cpu_run.client));
    let start = of(&|(q, b): &(Run, Run)| b.start_ms - q.start_ms);
    let end = of(&|(q, b): &(Run, Run)| b.end_ms - q.end_ms);
    out.push_str(&format!(
        "| median | | | {gap:+.0} ms | {ffmpeg_gap:+.0} ms | {server:.3} s | {client:.3} s |\n\n\
         Median gap {gap:+.0} ms: ffmpeg's own run {ffmpeg_gap:+.0} ms, the server's start {start:+.0} ms and end {end:+.0} ms. \
         While the job ran the server spent {server:.3} CPU-s more than alone and the subscriber client {client:.3} CPU-s, \
         on the cores ffmpeg uses; if every client CPU-second were taken from ffmpeg's critical path, the client alone \
         would explain up to {:.0} ms of the gap ({:.0} %).\n",
        client * 1e3,
        if gap > 0.0 { (client * 1e3 / gap * 100.0).min(100.0) } else { 0.0 },
    ));
    out
}

/// Whether the runs with subscribers are within the noise of the runs alone: the spread of the
/// runs alone (min, median, max; half their range as a share of their median) and where the
/// median run with subscribers falls.
fn noise(quiet: &[f64], busy: &[f64]) -> String {
    let (min, max) = quiet.iter().fold((f64::INFINITY, 0.0_f64), |(lo, hi), &q| (lo.min(q), hi.max(q)));
    let (alone, with) = (median(quiet), median(busy));
    let verdict =
        if with <= max { "within the spread of the runs alone" } else { "outside the spread of the runs alone" };
    format!(
        "\nRuns alone: min {min:.2} s, median {alone:.2} s, max {max:.2} s (spread +/-{:.1} % around the median); \
         median with subscribers {with:.2} s = {:.3}x the median alone, {:+.1} % over the slowest run alone: {verdict}.\n",
        (max - min) / 2.0 / alone * 100.0,
        with / alone,
        (with / max - 1.0) * 100.0,
    )
}

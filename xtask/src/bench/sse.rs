//! `bench sse [--subscribers N=1000] [--all M=100] [--rounds R=5] [--video-seconds S=120]
//! [--stats-period P,...=0.05,0.5] [--server-bin PATH]`: N server-sent event subscribers on one running job plus M on
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
//! hands each `-progress` block to the server, and each subscriber notes when it reads the
//! `progress` event of that block (matched by frame number; the first block of each frame).
//! The subscribers are one thread of this process reading every stream over non-blocking
//! sockets with epoll ([`subscribers`]), on the same machine as the server, so their own
//! scheduling delay is part of the latency; their CPU time is reported beside the server's.
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
    std::fs::write(&wrapper, wrapper_script(&blocks))?;
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
            let quiet = run_job(&api, &server, addr, &opts, &blocks, job(n, false))
                .map_err(|e| format!("{e}\n{}", server.log_tail()))?;
            let busy = run_job(&api, &server, addr, &opts, &blocks, job(n + 1, true))
                .map_err(|e| format!("{e}\n{}", server.log_tail()))?;
            n += 2;
            eprintln!(
                "round {} (-stats_period {period}): run {:.2} s alone, {:.2} s with subscribers; final seen {}/{}; RSS {:.1} MiB before, +{:.1} MiB; p50 {:.1} ms, p99 {:.1} ms ({} receipts); CPU s server {:.2} -> {:.2}, ffmpeg {:.2} -> {:.2}, client {:.2}; {} blocks, {} deliveries",
                round + 1,
                quiet.run_seconds,
                busy.run_seconds,
                busy.saw_final,
                busy.subscribers,
                busy.rss_before_mib,
                busy.rss_growth_mib,
                busy.p50_ms,
                busy.p99_ms,
                busy.receipts,
                quiet.cpu.server,
                busy.cpu.server,
                quiet.cpu.ffmpeg,
                busy.cpu.ffmpeg,
                busy.cpu.client,
                busy.blocks,
                busy.deliveries,
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
    p50_ms: f64,
    p99_ms: f64,
    receipts: usize,
    /// Progress blocks the wrapper handed on.
    blocks: usize,
    /// Progress events read by all subscribers.
    deliveries: usize,
    cpu: Cpu,
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
        let client = subscribers::start(addr, job.clone(), streams, Arc::clone(&counters), Duration::from_secs(1200))?;
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
    // The client's time is read here while it runs, and by the thread itself at its end.
    let cpu = || Cpu {
        server: process_cpu_seconds(server.pid(), false),
        ffmpeg: process_cpu_seconds(server.pid(), true),
        client: if tid > 0 { thread_cpu_seconds(tid) } else { 0.0 },
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
    if state.status != "completed" {
        return Err(format!("job {job} {}: {:?}", state.status, state.error).into());
    }
    let run_seconds = match state.times {
        [_, Some(started), Some(completed)] => completed - started,
        _ => return Err(format!("job {job} has no start or end time").into()),
    };
    let (seen, client_cpu_after) = match client {
        Some(client) => client.join().map_err(|_| "the subscriber thread panicked")??,
        None => (Vec::new(), 0.0),
    };
    let cpu_after = Cpu { client: client_cpu_after, ..cpu() };
    let written = read_blocks(blocks);
    let mut latencies = Vec::new();
    let mut by_frame: HashMap<u64, Vec<f64>> = HashMap::new();
    let mut saw_final = 0;
    let mut deliveries = 0;
    for seen in &seen {
        saw_final += usize::from(seen.saw_final);
        deliveries += seen.events;
        for (frame, at) in &seen.progress {
            if let Some(written) = written.get(frame) {
                let ms = (at.saturating_sub(*written)) as f64 / 1e6;
                latencies.push(ms);
                by_frame.entry(*frame).or_default().push(ms);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    if subscribe {
        // Where the slowest receipts were: the blocks whose last subscriber read them latest.
        let mut worst: Vec<(u64, f64, f64, usize)> = by_frame
            .into_iter()
            .map(|(frame, ms)| (frame, median(&ms), ms.iter().copied().fold(0.0, f64::max), ms.len()))
            .collect();
        worst.sort_by(|a, b| b.2.total_cmp(&a.2));
        let mut frames: Vec<u64> = written.keys().copied().collect();
        frames.sort_unstable();
        for (frame, p50, max, n) in worst.iter().take(3) {
            let block = frames.iter().position(|f| f == frame).map_or(0, |i| i + 1);
            eprintln!(
                "  slowest block: frame {frame} (block {block} of {}): {n} receipts, median {p50:.1} ms, last {max:.1} ms",
                frames.len()
            );
        }
    }
    let pct = |p: f64| {
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
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        receipts: latencies.len(),
        blocks: written.len(),
        deliveries,
        cpu: Cpu {
            server: cpu_after.server - cpu_before.server,
            ffmpeg: cpu_after.ffmpeg - cpu_before.ffmpeg,
            client: cpu_after.client - cpu_before.client,
        },
    })
}

/// CPU seconds (user + system) spent by the server process, by ffmpeg (with its wrapper: the
/// server's reaped children) and by the subscriber thread, from the moment the gate job is
/// cancelled until the measured job ended (and every subscriber read its end).
#[derive(Clone, Copy, Default)]
struct Cpu {
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
/// (The server runs ffmpeg with an empty environment, so the log path is written into the
/// script.)
fn wrapper_script(log: &std::path::Path) -> String {
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
proc = subprocess.Popen([{ffmpeg:?}] + sys.argv[1:], stdout=subprocess.PIPE)
out = sys.stdout.buffer
frame = b"0"
with open({log:?}, "a") as log:
    for line in iter(proc.stdout.readline, b""):
        if line.startswith(b"frame="):
            frame = line[6:].strip()
        if line.startswith(b"progress="):
            log.write(frame.decode() + " " + str(time.time_ns()) + "\n")
            log.flush()
        out.write(line)
        out.flush()
sys.exit(proc.wait())
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
        "\n## bench sse: {} subscribers on one job + {} on /events?progress=true, {} rounds, {} s of video, -stats_period {}\n\nserver: {}\n{}\nload average at the end: {}\n\n",
        opts.subscribers,
        opts.all,
        rows.len(),
        opts.video_seconds,
        stats_period,
        opts.server_bin.as_deref().unwrap_or("release build of this tree"),
        machine(),
        load_average()
    );
    out.push_str("| round | run alone | run with subscribers | ratio | saw the final status | server RSS before | RSS growth | fan-out p50 | fan-out p99 |\n|---|---|---|---|---|---|---|---|---|\n");
    for (i, (q, b)) in rows.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {:.2} s | {:.2} s | {:.2} | {}/{} | {:.1} MiB | {:.1} MiB | {:.1} ms | {:.1} ms |\n",
            i + 1,
            q.run_seconds,
            b.run_seconds,
            b.run_seconds / q.run_seconds,
            b.saw_final,
            b.subscribers,
            b.rss_before_mib,
            b.rss_growth_mib,
            b.p50_ms,
            b.p99_ms
        ));
    }
    out.push_str(&format!(
        "| median | {:.2} s | {:.2} s | {:.2} | {} | | {:.1} MiB | {:.1} ms | {:.1} ms |\n",
        median(&quiet),
        median(&busy),
        median(&ratios),
        finals.join(", "),
        median(&growth),
        median(&p50),
        median(&p99)
    ));
    out.push_str(&noise(&quiet, &busy));
    out.push_str("\nCPU time from the gate's cancel to the end of the job (and of every stream), user + system:\n\n");
    out.push_str("| round | server alone | server with subscribers | server's extra per event delivered | ffmpeg alone | ffmpeg with subscribers | subscriber client | progress blocks | events delivered |\n|---|---|---|---|---|---|---|---|---|\n");
    let per_event = |q: &Run, b: &Run| (b.cpu.server - q.cpu.server) / b.deliveries.max(1) as f64 * 1e6;
    for (i, (q, b)) in rows.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {:.2} s | {:.2} s | {:.1} µs | {:.2} s | {:.2} s | {:.2} s ({:.0} % of one core) | {} | {} |\n",
            i + 1,
            q.cpu.server,
            b.cpu.server,
            per_event(q, b),
            q.cpu.ffmpeg,
            b.cpu.ffmpeg,
            b.cpu.client,
            b.cpu.client / b.run_seconds * 100.0,
            b.blocks,
            b.deliveries
        ));
    }
    let extra: Vec<f64> = rows.iter().map(|(q, b)| per_event(q, b)).collect();
    let client: Vec<f64> = rows.iter().map(|(_, b)| b.cpu.client).collect();
    out.push_str(&format!("| median | | | {:.1} µs | | | {:.2} s | | |\n", median(&extra), median(&client)));
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

//! `bench sse [--subscribers N=1000] [--all M=100] [--rounds R=3] [--video-seconds S=12]`:
//! N server-sent event subscribers on one running job plus M on `/events?progress=true`,
//! against the same job with no subscriber, rounds interleaved.
//!
//! Measured per round: whether every subscriber saw the job's final status; the server's
//! resident memory growth (its RSS sampled every 50 ms while the job runs with its
//! subscribers, minus its RSS before they connected); the job's run time (`started_at` to
//! `completed_at`) with and without subscribers; and the progress fan-out latency: ffmpeg runs
//! behind a small wrapper (`--ffmpeg-bin`) that notes the wall-clock time at which it hands
//! each `-progress` block to the server, and each subscriber notes when it reads the `progress`
//! event of that block (matched by frame number; the first block of each frame). Subscribers
//! are plain threads on blocking sockets (HTTP/1.0, so the stream is the raw event bytes), on
//! the same machine as the server, so their own scheduling delay is part of the latency.
//!
//! Each job waits in the queue behind a "gate" job (an hour of lavfi into the null muxer) until
//! every subscriber is connected; the gate is then cancelled and the measured job starts.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::client::Client;
use super::server::{Server, WorkerConfig, release_binary};
use super::{Args, load_average, machine, median, print};
use crate::Result;

struct Options {
    subscribers: usize,
    all: usize,
    rounds: usize,
    video_seconds: u32,
    build: bool,
}

pub(super) fn main(args: &[&str]) -> Result {
    let mut a = Args::new(args);
    let opts = Options {
        subscribers: a.value("--subscribers", 1000)?,
        all: a.value("--all", 100)?,
        rounds: a.value("--rounds", 3)?,
        video_seconds: a.value("--video-seconds", 12)?,
        build: !a.switch("--no-build"),
    };
    a.finish()?;
    eprintln!("bench sse: {}\nload average (1, 5, 15 min) at the start: {}", machine(), load_average());
    let bin = release_binary(opts.build)?;
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
    let mut rows = Vec::new();
    for round in 0..opts.rounds {
        let quiet = run_job(&api, &server, addr, &opts, &blocks, round * 2, false)
            .map_err(|e| format!("{e}\n{}", server.log_tail()))?;
        let busy = run_job(&api, &server, addr, &opts, &blocks, round * 2 + 1, true)
            .map_err(|e| format!("{e}\n{}", server.log_tail()))?;
        eprintln!(
            "round {}: run {:.2} s alone, {:.2} s with subscribers; final seen {}/{}; RSS +{:.1} MiB; p50 {:.1} ms, p99 {:.1} ms ({} receipts)",
            round + 1,
            quiet.run_seconds,
            busy.run_seconds,
            busy.saw_final,
            busy.subscribers,
            busy.rss_growth_mib,
            busy.p50_ms,
            busy.p99_ms,
            busy.receipts
        );
        rows.push((quiet, busy));
    }
    drop(server);
    print(&report(&opts, &rows))
}

/// What one job run measured.
struct Run {
    run_seconds: f64,
    subscribers: usize,
    saw_final: usize,
    rss_growth_mib: f64,
    p50_ms: f64,
    p99_ms: f64,
    receipts: usize,
}

fn run_job(
    api: &Client,
    server: &Server,
    addr: SocketAddr,
    opts: &Options,
    blocks: &std::path::Path,
    n: usize,
    subscribe: bool,
) -> Result<Run> {
    let _ = std::fs::remove_file(blocks);
    let gate = api.submit("-re -f lavfi -i testsrc=duration=3600:size=32x32:rate=1 -f null /dev/null")?;
    let command = format!(
        "-f lavfi -i testsrc=duration={}:size=320x240:rate=25 -c:v libx264 -preset veryfast -stats_period 0.05 out/sse-{n}.mp4",
        opts.video_seconds
    );
    let job = api.submit(&command)?;
    wait_until(api, &gate, |s| s == "running")?;
    let before = server.memory()?.rss_kib;
    let connected = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    if subscribe {
        let paths = std::iter::repeat_n(format!("/jobs/{job}/events"), opts.subscribers)
            .chain(std::iter::repeat_n("/events?progress=true".to_owned(), opts.all));
        for (i, path) in paths.enumerate() {
            let (connected, failed, job) = (Arc::clone(&connected), Arc::clone(&failed), job.clone());
            let per_job = i < opts.subscribers;
            threads.push(std::thread::Builder::new().stack_size(128 * 1024).spawn(move || {
                subscriber(addr, &path, &job, per_job, &connected, &failed).map_err(|e| e.to_string())
            })?);
        }
        let start = Instant::now();
        while connected.load(Ordering::SeqCst) < threads.len() {
            if failed.load(Ordering::SeqCst) > 0 {
                let errors: Vec<String> = threads
                    .into_iter()
                    .filter(|t| t.is_finished())
                    .filter_map(|t| t.join().ok().and_then(|r| r.err()))
                    .take(5)
                    .collect();
                return Err(format!(
                    "{} subscribers could not open their stream: {errors:?}",
                    failed.load(Ordering::SeqCst)
                )
                .into());
            }
            if start.elapsed() > Duration::from_secs(120) {
                return Err(format!(
                    "only {} of {} subscribers connected",
                    connected.load(Ordering::SeqCst),
                    threads.len()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
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
    let written = read_blocks(blocks);
    let mut latencies = Vec::new();
    let mut saw_final = 0;
    for thread in threads {
        let seen = thread.join().map_err(|_| "a subscriber thread panicked")??;
        saw_final += usize::from(seen.saw_final);
        for (frame, at) in seen.progress {
            if let Some(written) = written.get(&frame) {
                latencies.push((at - written) as f64 / 1e6);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
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
        rss_growth_mib: peak.saturating_sub(before) as f64 / 1024.0,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        receipts: latencies.len(),
    })
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

/// What one subscriber saw: whether the job's final status arrived, and when (ns since the
/// Unix epoch) it read the first progress event of each frame.
struct Seen {
    saw_final: bool,
    progress: Vec<(u64, u128)>,
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// Opens `path` and reads the response head: the stream, positioned at the body.
fn open(addr: SocketAddr, path: &str) -> Result<BufReader<TcpStream>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if !line.contains(" 200 ") {
        return Err(format!("{path}: {line:?}").into());
    }
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    Ok(reader)
}

/// Reads one stream until the job's final status (or the end of the stream). Opening it is
/// tried up to 5 times (a thousand connections at once on a loaded machine may be reset
/// before the server reads them); a subscriber that cannot open is counted in `failed`.
fn subscriber(
    addr: SocketAddr,
    path: &str,
    job: &str,
    per_job: bool,
    connected: &AtomicUsize,
    failed: &AtomicUsize,
) -> Result<Seen> {
    let mut tries = 0;
    let mut reader = loop {
        tries += 1;
        match open(addr, path) {
            Ok(reader) => break reader,
            Err(e) if tries >= 5 => {
                failed.fetch_add(1, Ordering::SeqCst);
                return Err(format!("{path}: {e} (after {tries} tries)").into());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let mut line = String::new();
    connected.fetch_add(1, Ordering::SeqCst);
    let mut seen = Seen { saw_final: false, progress: Vec::new() };
    let mut frames = std::collections::HashSet::new();
    let mut event = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(seen);
        }
        let at = now_ns();
        if let Some(name) = line.strip_prefix("event: ") {
            event = name.trim().to_owned();
        } else if let Some(data) = line.strip_prefix("data: ") {
            if !data.contains(job) {
                continue;
            }
            if event == "progress" {
                if let Some(frame) = number_after(data, "\"frame\":")
                    && frames.insert(frame)
                {
                    seen.progress.push((frame, at));
                }
            } else if event == "status"
                && ["completed", "failed", "cancelled"].iter().any(|s| data.contains(&format!("\"status\":\"{s}\"")))
            {
                seen.saw_final = true;
                if !per_job {
                    return Ok(seen);
                }
            }
        }
    }
}

fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
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
/// block's last line on. (The server runs ffmpeg with an empty environment, so the log path is
/// written into the script.)
fn wrapper_script(log: &std::path::Path) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let ffmpeg = std::env::split_paths(&path)
        .map(|d| d.join("ffmpeg"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| "/usr/bin/ffmpeg".into());
    format!(
        r#"#!/usr/bin/python3
import subprocess, sys, time
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

fn report(opts: &Options, rows: &[(Run, Run)]) -> String {
    let quiet: Vec<f64> = rows.iter().map(|(q, _)| q.run_seconds).collect();
    let busy: Vec<f64> = rows.iter().map(|(_, b)| b.run_seconds).collect();
    let ratios: Vec<f64> = rows.iter().map(|(q, b)| b.run_seconds / q.run_seconds).collect();
    let growth: Vec<f64> = rows.iter().map(|(_, b)| b.rss_growth_mib).collect();
    let p50: Vec<f64> = rows.iter().map(|(_, b)| b.p50_ms).collect();
    let p99: Vec<f64> = rows.iter().map(|(_, b)| b.p99_ms).collect();
    let finals: Vec<String> = rows.iter().map(|(_, b)| format!("{}/{}", b.saw_final, b.subscribers)).collect();
    let mut out = format!(
        "\n## bench sse: {} subscribers on one job + {} on /events?progress=true, {} rounds\n\n{}\nload average at the end: {}\n\n",
        opts.subscribers,
        opts.all,
        rows.len(),
        machine(),
        load_average()
    );
    out.push_str("| round | run alone | run with subscribers | ratio | saw the final status | RSS growth | fan-out p50 | fan-out p99 |\n|---|---|---|---|---|---|---|---|\n");
    for (i, (q, b)) in rows.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {:.2} s | {:.2} s | {:.2} | {}/{} | {:.1} MiB | {:.1} ms | {:.1} ms |\n",
            i + 1,
            q.run_seconds,
            b.run_seconds,
            b.run_seconds / q.run_seconds,
            b.saw_final,
            b.subscribers,
            b.rss_growth_mib,
            b.p50_ms,
            b.p99_ms
        ));
    }
    out.push_str(&format!(
        "| median | {:.2} s | {:.2} s | {:.2} | {} | {:.1} MiB | {:.1} ms | {:.1} ms |\n",
        median(&quiet),
        median(&busy),
        median(&ratios),
        finals.join(", "),
        median(&growth),
        median(&p50),
        median(&p99)
    ));
    out
}

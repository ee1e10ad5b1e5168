//! `bench overhead`: N tiny transcodes submitted to the running server, from the first POST until
//! every job is seen `completed`, versus the same N ffmpeg commands run directly with the same
//! concurrency. Rounds alternate which side goes first; the table shows every round and the
//! medians.
//!
//! Completion is detected by polling the jobs one after another with `GET /jobs/{id}` every
//! `--poll-ms` (5 ms): one small request at a time, so the client costs the server almost
//! nothing, and the end of a round is seen at most one poll interval late.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::client::Client;
use super::server::{Server, WorkerConfig, release_binary};
use super::{Args, load_average, machine, median, print, secs};
use crate::Result;

/// The ffmpeg arguments of transcode `i`, writing into folder `side` of the data directory.
fn job_args(side: &str, i: usize) -> Vec<String> {
    let out = format!("{side}/out_{i}.mp4");
    ["-i", "in.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", &out].map(str::to_owned).to_vec()
}

/// Settings of one run.
struct Options {
    jobs: usize,
    concurrency: usize,
    rounds: usize,
    poll: Duration,
    database_url: Option<String>,
    build: bool,
}

impl Options {
    fn parse(args: &[&str]) -> Result<Self> {
        let mut a = Args::new(args);
        let concurrency = a.value("--concurrency", 1usize)?;
        let rounds = a.value("--rounds", 5usize)?;
        let poll = Duration::from_millis(a.value("--poll-ms", 5u64)?);
        let database_url = a.value("--database-url", String::new())?;
        let database_url = (!database_url.is_empty()).then_some(database_url);
        let build = !a.switch("--no-build");
        let jobs = a.positional("N", 40usize)?;
        a.finish()?;
        if !(1..=10_000).contains(&jobs) || !(1..=64).contains(&concurrency) || !(1..=100).contains(&rounds) {
            return Err("N must be 1..=10000, --concurrency 1..=64, --rounds 1..=100".into());
        }
        Ok(Self { jobs, concurrency, rounds, poll, database_url, build })
    }

    /// The longest one side of one round may take before the bench gives up.
    fn deadline(&self) -> Duration {
        Duration::from_secs(60) + Duration::from_secs(10) * u32::try_from(self.jobs).unwrap_or(u32::MAX)
    }
}

/// Runs the bench.
pub(super) fn main(args: &[&str]) -> Result {
    let opts = Options::parse(args)?;
    let load_start = load_average();
    let bin = release_binary(opts.build)?;
    let dir = tempfile::Builder::new().prefix("ffmpeg-worker-bench-").tempdir()?;
    let data = dir.path().join("data");
    for side in ["server", "direct"] {
        std::fs::create_dir_all(data.join(side))?;
    }
    make_input(&data)?;
    let default_url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let database_url = opts.database_url.as_deref().unwrap_or(&default_url);
    let log = dir.path().join("server.log");
    let config = WorkerConfig {
        bin: &bin,
        data: &data,
        database_url,
        concurrency: opts.concurrency,
        rust_log: "info",
        log: &log,
    };
    let server = Server::ffmpeg_worker(&config)?;
    let client = Client::new(server.base());
    eprintln!("server at {} (pid {}), data in {}", server.base(), server.pid(), data.display());

    eprintln!("warm-up: one job through the server, one run directly");
    through_server(&client, &[job_args("server", 0).join(" ")], &opts)
        .map_err(|e| format!("{e}\n{}", server.log_tail()))?;
    directly(&data, &[job_args("direct", 0)], &opts)?;

    let server_commands: Vec<String> = (1..=opts.jobs).map(|i| job_args("server", i).join(" ")).collect();
    let direct_commands: Vec<Vec<String>> = (1..=opts.jobs).map(|i| job_args("direct", i)).collect();
    let mut rows = Vec::new();
    for round in 1..=opts.rounds {
        let server_first = round % 2 == 1;
        let mut server_time = None;
        let mut direct_time = None;
        for side_is_server in [server_first, !server_first] {
            if side_is_server {
                let t = through_server(&client, &server_commands, &opts)
                    .map_err(|e| format!("round {round}: {e}\n{}", server.log_tail()))?;
                server_time = Some(t);
            } else {
                direct_time = Some(directly(&data, &direct_commands, &opts)?);
            }
        }
        let (Some(s), Some(d)) = (server_time, direct_time) else { unreachable!("both sides ran") };
        eprintln!("round {round}: server {} (submit {}), direct {}", secs(s.total), secs(s.submit), secs(d));
        rows.push(Row { server_first, server: s, direct: d });
    }
    drop(server);
    print(&report(&opts, &load_start, &rows))
}

/// One round's figures.
struct Row {
    server_first: bool,
    server: ServerTime,
    direct: Duration,
}

/// The server side of a round.
#[derive(Clone, Copy)]
struct ServerTime {
    /// From the first POST until every job was seen completed.
    total: Duration,
    /// From the first POST until the last POST answered.
    submit: Duration,
}

/// Generates `in.mp4`: 1 s of 160x120 testsrc at 25 fps and a 440 Hz sine, H.264 + AAC.
fn make_input(data: &Path) -> Result {
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-y", "-loglevel", "error"])
        .args(["-f", "lavfi", "-i", "testsrc=duration=1:size=160x120:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=1"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "in.mp4"])
        .current_dir(data)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run ffmpeg ({e}); install ffmpeg >= 5 (Debian: apt-get install ffmpeg)"))?;
    if status.success() { Ok(()) } else { Err(format!("generating in.mp4 failed: {status}").into()) }
}

/// Submits every command, then polls the jobs in order until each is completed.
fn through_server(client: &Client, commands: &[String], opts: &Options) -> Result<ServerTime> {
    let deadline = opts.deadline();
    let start = Instant::now();
    let ids = commands.iter().map(|c| client.submit(c)).collect::<Result<Vec<_>>>()?;
    let submit = start.elapsed();
    for id in &ids {
        loop {
            let job = client.job(id)?;
            if job.is_final() {
                if job.status != "completed" {
                    return Err(format!("job {id} ended {}: {}", job.status, job.error.unwrap_or_default()).into());
                }
                break;
            }
            if start.elapsed() > deadline {
                return Err(format!("job {id} still {} after {deadline:?}", job.status).into());
            }
            std::thread::sleep(opts.poll);
        }
    }
    Ok(ServerTime { total: start.elapsed(), submit })
}

/// Runs `ffmpeg -nostdin -y <args>` for every argument list, `opts.concurrency` at a time, in
/// the data directory, stdout and stderr to /dev/null.
fn directly(data: &Path, commands: &[Vec<String>], opts: &Options) -> Result<Duration> {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let run_some = || -> std::result::Result<(), String> {
        loop {
            let Some(args) = commands.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return Ok(());
            };
            let status = Command::new("ffmpeg")
                .args(["-nostdin", "-y"])
                .args(args)
                .current_dir(data)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
            if !status.success() {
                return Err(format!("`ffmpeg -nostdin -y {}` failed: {status}", args.join(" ")));
            }
        }
    };
    let results: Vec<std::result::Result<(), String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..opts.concurrency).map(|_| s.spawn(run_some)).collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err("a runner thread panicked".to_owned()))).collect()
    });
    results.into_iter().collect::<std::result::Result<(), String>>()?;
    Ok(start.elapsed())
}

/// The results table.
fn report(opts: &Options, load_start: &str, rows: &[Row]) -> String {
    let n = opts.jobs as f64;
    let server: Vec<f64> = rows.iter().map(|r| r.server.total.as_secs_f64()).collect();
    let direct: Vec<f64> = rows.iter().map(|r| r.direct.as_secs_f64()).collect();
    let ratios: Vec<f64> = rows.iter().map(|r| r.server.total.as_secs_f64() / r.direct.as_secs_f64()).collect();
    let (ms, md) = (median(&server), median(&direct));
    let ratio = ms / md;
    let mut out = String::new();
    let _ = writeln!(out, "\nbench overhead: {}", machine());
    let _ = writeln!(out, "load average (1, 5, 15 min) at the start: {}; at the end: {}", load_start, load_average());
    let _ = writeln!(
        out,
        "{} tiny transcodes (1 s 160x120 testsrc + sine -> libx264 ultrafast + aac), concurrency {}, {} rounds, \
         completion polled every {} ms",
        opts.jobs,
        opts.concurrency,
        opts.rounds,
        opts.poll.as_millis()
    );
    let _ = writeln!(out, "\n| round | first  |   server | (of it: submitting) |   direct | server/direct |");
    let _ = writeln!(out, "|------:|--------|---------:|--------------------:|---------:|--------------:|");
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {:>5} | {:<6} | {:>8} | {:>19} | {:>8} | {:>13.3} |",
            i + 1,
            if r.server_first { "server" } else { "direct" },
            secs(r.server.total),
            secs(r.server.submit),
            secs(r.direct),
            ratios[i]
        );
    }
    let _ = writeln!(
        out,
        "\nmedian: server {ms:.3} s ({:.1} ms/job), direct {md:.3} s ({:.1} ms/job)",
        ms * 1000.0 / n,
        md * 1000.0 / n
    );
    let _ = writeln!(out, "overhead per job: {:.2} ms", (ms - md) * 1000.0 / n);
    let _ = writeln!(
        out,
        "ratio server/direct: {ratio:.3} (median of the rounds' ratios {:.3}); target <= 1.05 at N=40: {}",
        median(&ratios),
        if ratio <= 1.05 { "met" } else { "MISSED" }
    );
    out
}

//! `bench overhead`: N tiny transcodes submitted to the running server, from the first POST until
//! every job is seen `completed`, versus the same N ffmpeg commands run directly with the same
//! concurrency. Rounds alternate which side goes first; the table shows every round and the
//! medians. `--clip small` (default: 1 s of 160x120, about 250 ms of ffmpeg on the development
//! machine) or `--clip tiny` (0.5 s of 128x96, about 60 ms: the server's fixed per-job cost
//! weighs four times more).
//!
//! `--nodes K` (cluster mode): K servers on one PostgreSQL database (`--database-url`, else a
//! fresh database on a throw-away server started by `pg-harness`) and one data directory, each
//! with `--concurrency` slots; jobs are submitted to the first, and the direct side runs K times
//! `--concurrency` processes at once.
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

/// The input every job transcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clip {
    /// 1 s of 160x120 at 25 fps + sine.
    Small,
    /// 0.5 s of 128x96 at 25 fps + sine.
    Tiny,
}

impl Clip {
    /// `(seconds, size)` for lavfi.
    fn source(self) -> (&'static str, &'static str) {
        match self {
            Clip::Small => ("1", "160x120"),
            Clip::Tiny => ("0.5", "128x96"),
        }
    }

    /// The ratio server/direct the bench aims at with this clip.
    fn target(self) -> f64 {
        match self {
            Clip::Small => 1.05,
            Clip::Tiny => 1.02,
        }
    }
}

impl std::str::FromStr for Clip {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "small" => Ok(Clip::Small),
            "tiny" => Ok(Clip::Tiny),
            _ => Err(format!("unknown clip `{s}`: small or tiny")),
        }
    }
}

/// Settings of one run.
struct Options {
    clip: Clip,
    jobs: usize,
    concurrency: usize,
    rounds: usize,
    poll: Duration,
    database_url: Option<String>,
    build: bool,
    nodes: usize,
}

impl Options {
    fn parse(args: &[&str]) -> Result<Self> {
        let mut a = Args::new(args);
        let clip = a.value("--clip", Clip::Small)?;
        let concurrency = a.value("--concurrency", 1usize)?;
        let rounds = a.value("--rounds", 5usize)?;
        let poll = Duration::from_millis(a.value("--poll-ms", 5u64)?);
        let database_url = a.value("--database-url", String::new())?;
        let database_url = (!database_url.is_empty()).then_some(database_url);
        let build = !a.switch("--no-build");
        let nodes = a.value("--nodes", 1usize)?;
        let jobs = a.positional("N", 40usize)?;
        a.finish()?;
        if !(1..=10_000).contains(&jobs)
            || !(1..=64).contains(&concurrency)
            || !(1..=100).contains(&rounds)
            || !(1..=16).contains(&nodes)
        {
            return Err("N must be 1..=10000, --concurrency 1..=64, --rounds 1..=100, --nodes 1..=16".into());
        }
        Ok(Self { clip, jobs, concurrency, rounds, poll, database_url, build, nodes })
    }

    /// Processes at once on the direct side: as many as the server side's slots.
    fn parallelism(&self) -> usize {
        self.concurrency * self.nodes
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
    make_input(&data, opts.clip)?;
    let default_url = if opts.nodes > 1 {
        pg_harness::shared().fresh_database()
    } else {
        format!("sqlite://{}", dir.path().join("jobs.db").display())
    };
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
    // More nodes of the cluster: the same database and data directory, their own logs.
    let mut others = Vec::new();
    for n in 1..opts.nodes {
        let log = dir.path().join(format!("server-{n}.log"));
        others.push(Server::ffmpeg_worker(&WorkerConfig { log: &log, ..config })?);
    }

    eprintln!("warm-up: one job through the server, one run directly");
    through_server(&client, &[job_args("server", 0).join(" ")], &opts)
        .map_err(|e| format!("{e}\n{}", server.log_tail()))?;
    directly(&data, &[job_args("direct", 0)], &opts)?;

    let server_commands: Vec<String> = (1..=opts.jobs).map(|i| job_args("server", i).join(" ")).collect();
    let direct_commands: Vec<Vec<String>> = (1..=opts.jobs).map(|i| job_args("direct", i)).collect();
    let mut rows = Vec::new();
    for round in 1..=opts.rounds {
        let server_first = round % 2 == 1;
        let run_server = || {
            through_server(&client, &server_commands, &opts)
                .map_err(|e| format!("round {round}: {e}\n{}", server.log_tail()))
        };
        let (server_time, direct) = if server_first {
            let s = run_server()?;
            (s, directly(&data, &direct_commands, &opts)?)
        } else {
            let d = directly(&data, &direct_commands, &opts)?;
            (run_server()?, d)
        };
        eprintln!(
            "round {round}: server {} (submit {}), direct {}",
            secs(server_time.total),
            secs(server_time.submit),
            secs(direct.total)
        );
        rows.push(Row { server_first, server: server_time, direct });
    }
    drop(server);
    drop(others);
    print(&report(&opts, &load_start, &rows))
}

/// One round's figures.
struct Row {
    server_first: bool,
    server: ServerTime,
    direct: DirectTime,
}

/// The server side of a round.
struct ServerTime {
    /// From the first POST until every job was seen completed.
    total: Duration,
    /// From the first POST until the last POST answered.
    submit: Duration,
    /// Mean of each job's `completed_at - started_at`, seconds.
    mean_run: f64,
    /// Mean time a job waited to start after the one before it completed (`started_at` minus
    /// the previous `completed_at`), seconds; only meaningful with one worker slot.
    mean_gap: f64,
    /// How long after the last `completed_at` the client saw it, seconds (same clock).
    seen_after: f64,
}

/// The direct side of a round.
struct DirectTime {
    /// From the first spawn until the last ffmpeg exited.
    total: Duration,
    /// Mean wall time of one ffmpeg process, seconds.
    mean_run: f64,
}

/// Generates `in.mp4`: the clip's testsrc at 25 fps and a 440 Hz sine, H.264 + AAC.
fn make_input(data: &Path, clip: Clip) -> Result {
    let (seconds, size) = clip.source();
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-y", "-loglevel", "error"])
        .args(["-f", "lavfi", "-i", &format!("testsrc=duration={seconds}:size={size}:rate=25")])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:duration={seconds}")])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "in.mp4"])
        .current_dir(data)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run ffmpeg ({e}); install ffmpeg >= 5 (Debian: apt-get install ffmpeg)"))?;
    if status.success() { Ok(()) } else { Err(format!("generating in.mp4 failed: {status}").into()) }
}

/// Submits every command, then polls the jobs in order until each is completed; the timing
/// stops when the last one is seen completed. The breakdown comes from the jobs' own timestamps.
fn through_server(client: &Client, commands: &[String], opts: &Options) -> Result<ServerTime> {
    let deadline = opts.deadline();
    let start = Instant::now();
    let ids = commands.iter().map(|c| client.submit(c)).collect::<Result<Vec<_>>>()?;
    let submit = start.elapsed();
    let mut finals = Vec::with_capacity(ids.len());
    for id in &ids {
        loop {
            let job = client.job(id)?;
            if job.is_final() {
                if job.status != "completed" {
                    return Err(format!("job {id} ended {}: {}", job.status, job.error.unwrap_or_default()).into());
                }
                finals.push(job.times);
                break;
            }
            if start.elapsed() > deadline {
                return Err(format!("job {id} still {} after {deadline:?}", job.status).into());
            }
            std::thread::sleep(opts.poll);
        }
    }
    let total = start.elapsed();
    let seen = now_unix();
    let times: Vec<[f64; 3]> = finals
        .iter()
        .map(|[c, s, e]| Some([(*c)?, (*s)?, (*e)?]))
        .collect::<Option<_>>()
        .ok_or("a completed job lacks created_at, started_at or completed_at")?;
    let n = times.len() as f64;
    let mean_run = times.iter().map(|[_, s, e]| e - s).sum::<f64>() / n;
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1][1] - w[0][2]).collect();
    let mean_gap = if gaps.is_empty() { 0.0 } else { gaps.iter().sum::<f64>() / gaps.len() as f64 };
    let last_completed = times.iter().map(|t| t[2]).fold(f64::MIN, f64::max);
    Ok(ServerTime { total, submit, mean_run, mean_gap, seen_after: seen - last_completed })
}

/// Now, in seconds since the Unix epoch (the clock the server's timestamps use).
fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Runs `ffmpeg -nostdin -y <args>` for every argument list, `opts.parallelism()` at a time, in
/// the data directory, stdout and stderr to /dev/null.
fn directly(data: &Path, commands: &[Vec<String>], opts: &Options) -> Result<DirectTime> {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    // Each runner returns the summed wall time of the processes it ran.
    let run_some = || -> std::result::Result<f64, String> {
        let mut busy = 0.0;
        loop {
            let Some(args) = commands.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return Ok(busy);
            };
            let began = Instant::now();
            let status = Command::new("ffmpeg")
                .args(["-nostdin", "-y"])
                .args(args)
                .current_dir(data)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
            busy += began.elapsed().as_secs_f64();
            if !status.success() {
                return Err(format!("`ffmpeg -nostdin -y {}` failed: {status}", args.join(" ")));
            }
        }
    };
    let results: Vec<std::result::Result<f64, String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..opts.parallelism()).map(|_| s.spawn(run_some)).collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err("a runner thread panicked".to_owned()))).collect()
    });
    let total = start.elapsed();
    let busy = results.into_iter().sum::<std::result::Result<f64, String>>()?;
    Ok(DirectTime { total, mean_run: busy / commands.len() as f64 })
}

/// The results table.
fn report(opts: &Options, load_start: &str, rows: &[Row]) -> String {
    let n = opts.jobs as f64;
    let server: Vec<f64> = rows.iter().map(|r| r.server.total.as_secs_f64()).collect();
    let direct: Vec<f64> = rows.iter().map(|r| r.direct.total.as_secs_f64()).collect();
    let ratios: Vec<f64> = server.iter().zip(&direct).map(|(s, d)| s / d).collect();
    let ms_of = |f: &dyn Fn(&Row) -> f64| median(&rows.iter().map(f).collect::<Vec<_>>()) * 1000.0;
    let (ms, md) = (median(&server), median(&direct));
    let ratio = ms / md;
    let mut out = String::new();
    let _ = writeln!(out, "\nbench overhead: {}", machine());
    let _ = writeln!(out, "load average (1, 5, 15 min) at the start: {}; at the end: {}", load_start, load_average());
    let _ = writeln!(
        out,
        "{} tiny transcodes ({} s {} testsrc + sine -> libx264 ultrafast + aac), {} node(s) of concurrency {}, \
         {} rounds, completion polled per job every {} ms",
        opts.jobs,
        opts.clip.source().0,
        opts.clip.source().1,
        opts.nodes,
        opts.concurrency,
        opts.rounds,
        opts.poll.as_millis()
    );
    let _ = writeln!(out, "\n| round | first  |   server | of it submitting |   direct | server/direct |");
    let _ = writeln!(out, "|------:|--------|---------:|-----------------:|---------:|--------------:|");
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {:>5} | {:<6} | {:>8} | {:>16} | {:>8} | {:>13.3} |",
            i + 1,
            if r.server_first { "server" } else { "direct" },
            secs(r.server.total),
            secs(r.server.submit),
            secs(r.direct.total),
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
        "ratio server/direct: {ratio:.3} (median of the rounds' ratios {:.3}); target <= {:.2}: {}",
        median(&ratios),
        opts.clip.target(),
        if ratio <= opts.clip.target() { "met" } else { "MISSED" }
    );
    let gap = if opts.concurrency == 1 { format!("{:.2} ms", ms_of(&|r| r.server.mean_gap)) } else { "n/a".to_owned() };
    let _ = writeln!(
        out,
        "where the time goes (medians of the rounds' means): one job's started_at -> completed_at {:.1} ms vs one \
         direct ffmpeg process {:.1} ms; next job started {gap} after the previous completed; the client saw the \
         last completion {:.1} ms after its completed_at",
        ms_of(&|r| r.server.mean_run),
        ms_of(&|r| r.direct.mean_run),
        ms_of(&|r| r.server.seen_after)
    );
    out
}

//! `bench overhead`: tiny transcodes submitted to the running server, from the first POST until
//! the server announces the last one `completed`, versus the same ffmpeg commands run directly
//! with the same concurrency. `--clip small` (default: 1 s of 160x120, about 250 ms of ffmpeg on
//! the development machine) or `--clip tiny` (0.5 s of 128x96, about 60 ms: the server's fixed
//! per-job cost weighs four times more).
//!
//! **Pairs, finely interleaved.** Each round's N jobs go in batches of B (`--batch`, 8): a batch
//! through the server, then the same B commands directly, or the other way round, the order
//! alternating from one pair to the next. Both sides of a pair run within a second or so of each
//! other, so a machine whose load changes (other builds, other benches) weighs on both alike, and
//! each pair gives one ratio server/direct.
//!
//! **The verdict comes from an interval.** The estimate is the median of the pairs' ratios; its
//! 95 % confidence interval is distribution-free (order statistics of the binomial(n, 1/2):
//! nothing is assumed of how noise spreads, and an outlier pair moves it by one rank at most).
//! The target is "met" only when the whole interval lies at or below it, "missed" when the whole
//! interval lies above it, and "not shown" otherwise.
//!
//! **Completion is pushed, not polled.** One `GET /events?status=completed,failed,cancelled`
//! stream per server, read by a thread of its own, notes when each job's final status arrives:
//! the server's side of a batch ends when the last of its jobs is announced, after the store
//! committed it. Polling would have cost the server a request every few milliseconds while
//! ffmpeg ran (work the direct side does not have) and made the end up to one poll late.
//!
//! `--nodes K` (cluster mode): K servers on one PostgreSQL database (`--database-url`, else a
//! fresh database on a throw-away server started by `pg-harness`) and one data directory, each
//! with `--concurrency` slots; jobs are submitted to the first, every node's stream is read, and
//! the direct side runs K times `--concurrency` processes at once.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::client::{Client, JobState};
use super::server::{Server, WorkerConfig, release_binary};
use super::{Args, Interval, load_average, machine, median, median_interval, print, secs};
use crate::Result;

/// Confidence level of the interval the verdict is read from.
const LEVEL: f64 = 0.95;

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
    batch: usize,
    concurrency: usize,
    rounds: usize,
    database_url: Option<String>,
    build: bool,
    server_bin: Option<String>,
    nodes: usize,
}

impl Options {
    fn parse(args: &[&str]) -> Result<Self> {
        let mut a = Args::new(args);
        let clip = a.value("--clip", Clip::Small)?;
        let concurrency = a.value("--concurrency", 1usize)?;
        let rounds = a.value("--rounds", 8usize)?;
        let batch = a.value("--batch", 8usize)?;
        let database_url = a.value("--database-url", String::new())?;
        let database_url = (!database_url.is_empty()).then_some(database_url);
        let build = !a.switch("--no-build");
        let server_bin = Some(a.value("--server-bin", String::new())?).filter(|path| !path.is_empty());
        let nodes = a.value("--nodes", 1usize)?;
        let jobs = a.positional("N", 40usize)?;
        a.finish()?;
        if !(1..=10_000).contains(&jobs)
            || !(1..=jobs).contains(&batch)
            || !(1..=64).contains(&concurrency)
            || !(1..=100).contains(&rounds)
            || !(1..=16).contains(&nodes)
        {
            return Err(
                "N must be 1..=10000, --batch 1..=N, --concurrency 1..=64, --rounds 1..=100, --nodes 1..=16".into()
            );
        }
        Ok(Self { clip, jobs, batch, concurrency, rounds, database_url, build, server_bin, nodes })
    }

    /// Processes at once on the direct side: as many as the server side's slots.
    fn parallelism(&self) -> usize {
        self.concurrency * self.nodes
    }

    /// The longest one side of one batch may take before the bench gives up.
    fn deadline(&self) -> Duration {
        Duration::from_secs(60) + Duration::from_secs(10) * u32::try_from(self.batch).unwrap_or(u32::MAX)
    }
}

/// Runs the bench.
pub(super) fn main(args: &[&str]) -> Result {
    let opts = Options::parse(args)?;
    let load_start = load_average();
    // Another build of the server (`--server-bin`), e.g. the same bench against two versions.
    let bin = match &opts.server_bin {
        Some(path) => std::path::PathBuf::from(path),
        None => release_binary(opts.build)?,
    };
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
        concurrency: opts.concurrency,
        rust_log: "info",
        ..WorkerConfig::new(&bin, &data, database_url, &log)
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
    let bases: Vec<&str> = std::iter::once(&server).chain(&others).map(Server::base).collect();
    let mut finals = Finals::subscribe(&bases)?;
    let with_log =
        |e: Box<dyn std::error::Error>| -> Box<dyn std::error::Error> { format!("{e}\n{}", server.log_tail()).into() };

    eprintln!("warm-up: one batch through the server, one run directly");
    let warm_up: Vec<usize> = (1..=opts.batch).collect();
    through_server(&client, &mut finals, &warm_up, &opts).map_err(with_log)?;
    directly(&data, &warm_up, &opts)?;

    let batches: Vec<Vec<usize>> = (1..=opts.jobs).collect::<Vec<_>>().chunks(opts.batch).map(<[_]>::to_vec).collect();
    let mut pairs = Vec::new();
    for round in 1..=opts.rounds {
        for batch in &batches {
            // The side that goes first alternates from pair to pair, across rounds too.
            let server_first = pairs.len() % 2 == 0;
            let mut run_server = || through_server(&client, &mut finals, batch, &opts).map_err(with_log);
            let (server_side, direct) = if server_first {
                let s = run_server()?;
                (s, directly(&data, batch, &opts)?)
            } else {
                let d = directly(&data, batch, &opts)?;
                (run_server()?, d)
            };
            pairs.push(Pair { round, server_first, jobs: batch.len(), server: server_side, direct });
        }
        let this_round: Vec<&Pair> = pairs.iter().filter(|p| p.round == round).collect();
        let (s, d) = totals(&this_round);
        eprintln!("round {round}: server {s:.3} s, direct {d:.3} s, {} pairs", this_round.len());
    }
    drop(finals);
    drop(server);
    drop(others);
    print(&report(&opts, &load_start, &pairs))
}

/// One batch through the server and the same commands run directly.
struct Pair {
    round: usize,
    server_first: bool,
    jobs: usize,
    server: ServerTime,
    direct: DirectTime,
}

impl Pair {
    fn ratio(&self) -> f64 {
        self.server.total.as_secs_f64() / self.direct.total.as_secs_f64()
    }

    /// Milliseconds per job the server side took more than the direct side.
    fn overhead_ms(&self) -> f64 {
        (self.server.total.as_secs_f64() - self.direct.total.as_secs_f64()) * 1000.0 / self.jobs as f64
    }
}

/// The summed seconds of the server and the direct sides of `pairs`.
fn totals(pairs: &[&Pair]) -> (f64, f64) {
    let server = pairs.iter().map(|p| p.server.total.as_secs_f64()).sum();
    let direct = pairs.iter().map(|p| p.direct.total.as_secs_f64()).sum();
    (server, direct)
}

/// The server side of a pair.
struct ServerTime {
    /// From the first POST until the stream announced the last job's final status.
    total: Duration,
    /// From the first POST until the last POST answered.
    submit: Duration,
    /// Mean of each job's `completed_at - started_at`, seconds.
    mean_run: f64,
    /// Mean time a job waited to start after the one before it completed (`started_at` minus
    /// the previous `completed_at`), seconds; `None` with one job, and only meaningful with one
    /// worker slot.
    mean_gap: Option<f64>,
    /// How long after the last `completed_at` its announcement reached the client, seconds
    /// (same clock).
    announced_after: f64,
}

/// The direct side of a pair.
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

/// A job's final status as a server's event stream announced it.
struct Final {
    job: JobState,
    /// When the announcement was read.
    at: Instant,
    /// The same moment in seconds since the Unix epoch (the clock of the job's timestamps).
    at_unix: f64,
}

/// The final statuses the servers announce: one `/events` stream per server, each read by a
/// thread of its own that notes when every announcement arrives.
struct Finals {
    rx: mpsc::Receiver<(String, Final)>,
    seen: HashMap<String, Final>,
}

impl Finals {
    /// Subscribes to the final statuses of every job on each of `bases`; returns once every
    /// stream is open (the server answered its headers: from then on it publishes to it).
    fn subscribe(bases: &[&str]) -> Result<Self> {
        let (tx, rx) = mpsc::channel();
        // No overall timeout: the stream lasts the whole bench (the server sends a comment line
        // every 15 s while nothing happens).
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        for base in bases {
            let mut resp = agent.get(format!("{base}/events?status=completed,failed,cancelled")).call()?;
            if resp.status() != 200 {
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                return Err(format!("GET {base}/events answered {}: {text}", resp.status()).into());
            }
            let reader = std::io::BufReader::new(resp.into_body().into_reader());
            let tx = tx.clone();
            // Ends when the server closes the stream (it is stopped) or the receiver is gone.
            std::thread::spawn(move || read_finals(reader, &tx));
        }
        Ok(Self { rx, seen: HashMap::new() })
    }

    /// Waits until every job of `ids` was announced final (before `deadline`); their
    /// announcements, in the order of `ids`.
    fn wait(&mut self, ids: &[String], deadline: Instant) -> Result<Vec<Final>> {
        while let Some(missing) = ids.iter().find(|id| !self.seen.contains_key(*id)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                // With several nodes, a job may be announced by more than one: the first counts.
                Ok((id, fin)) => {
                    self.seen.entry(id).or_insert(fin);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(format!("job {missing} not final in time").into()),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("every event stream ended (did the server stop?)".into());
                }
            }
        }
        Ok(ids.iter().filter_map(|id| self.seen.remove(id)).collect())
    }
}

/// Reads `event: status` announcements from one server-sent event stream and sends each job's
/// id and final status, with the moment it was read, to `tx`.
fn read_finals(reader: impl std::io::BufRead, tx: &mpsc::Sender<(String, Final)>) {
    let mut event = String::new();
    for line in reader.lines() {
        let Ok(line) = line else { return };
        if let Some(name) = line.strip_prefix("event:") {
            name.trim().clone_into(&mut event);
        } else if let Some(data) = line.strip_prefix("data:")
            && event == "status"
        {
            let (at, at_unix) = (Instant::now(), now_unix());
            let Ok(value) = serde_json::from_str::<serde_json::Value>(data.trim()) else { continue };
            let Some(id) = value["id"].as_str().map(str::to_owned) else { continue };
            let Ok(job) = JobState::from_json(&value) else { continue };
            if tx.send((id, Final { job, at, at_unix })).is_err() {
                return;
            }
        } else if line.is_empty() {
            event.clear();
        }
    }
}

/// Submits the commands of `batch` (one after another on one kept-alive connection), then
/// waits for the last of them to be announced final; the timing stops at that announcement.
/// The breakdown comes from the jobs' own timestamps.
fn through_server(client: &Client, finals: &mut Finals, batch: &[usize], opts: &Options) -> Result<ServerTime> {
    let start = Instant::now();
    let ids = batch.iter().map(|&i| client.submit(&job_args("server", i).join(" "))).collect::<Result<Vec<_>>>()?;
    let submit = start.elapsed();
    let ended = finals.wait(&ids, start + opts.deadline())?;
    // (started_at, completed_at) of each job.
    let mut times: Vec<[f64; 2]> = Vec::with_capacity(ended.len());
    for (id, fin) in ids.iter().zip(&ended) {
        if fin.job.status != "completed" {
            return Err(
                format!("job {id} ended {}: {}", fin.job.status, fin.job.error.clone().unwrap_or_default()).into()
            );
        }
        match fin.job.times {
            [_, Some(started), Some(completed)] => times.push([started, completed]),
            _ => return Err(format!("job {id} completed without started_at or completed_at").into()),
        }
    }
    let last = ended.iter().max_by_key(|f| f.at).ok_or("an empty batch")?;
    let total = last.at.duration_since(start);
    let n = times.len() as f64;
    let mean_run = times.iter().map(|[s, e]| e - s).sum::<f64>() / n;
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1][0] - w[0][1]).collect();
    let mean_gap = (!gaps.is_empty()).then(|| gaps.iter().sum::<f64>() / gaps.len() as f64);
    let last_completed = times.iter().map(|t| t[1]).fold(f64::MIN, f64::max);
    Ok(ServerTime { total, submit, mean_run, mean_gap, announced_after: last.at_unix - last_completed })
}

/// Now, in seconds since the Unix epoch (the clock the server's timestamps use).
fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Runs `ffmpeg -nostdin -y <args>` for the commands of `batch`, `opts.parallelism()` at a
/// time, in the data directory, stdout and stderr to /dev/null.
fn directly(data: &Path, batch: &[usize], opts: &Options) -> Result<DirectTime> {
    let commands: Vec<Vec<String>> = batch.iter().map(|&i| job_args("direct", i)).collect();
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
        let runners = opts.parallelism().min(commands.len());
        let workers: Vec<_> = (0..runners).map(|_| s.spawn(run_some)).collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err("a runner thread panicked".to_owned()))).collect()
    });
    let total = start.elapsed();
    let busy = results.into_iter().sum::<std::result::Result<f64, String>>()?;
    Ok(DirectTime { total, mean_run: busy / commands.len() as f64 })
}

/// What the interval says of the target.
fn verdict(interval: Option<Interval>, target: f64) -> String {
    match interval {
        None => "not shown: too few pairs for an interval (6 at least; raise --rounds or lower --batch)".to_owned(),
        Some(i) if i.high <= target => format!("met (the whole interval is at or below {target:.2})"),
        Some(i) if i.low > target => format!("MISSED (the whole interval is above {target:.2})"),
        Some(i) => format!(
            "not shown: the interval [{:.3}, {:.3}] holds {target:.2}; run more --rounds, or on a quieter machine",
            i.low, i.high
        ),
    }
}

/// The results: one line per round, the pairs' ratios with their interval and the verdict, the
/// overhead per job, and where the server's time goes.
fn report(opts: &Options, load_start: &str, pairs: &[Pair]) -> String {
    let ratios: Vec<f64> = pairs.iter().map(Pair::ratio).collect();
    let overheads: Vec<f64> = pairs.iter().map(Pair::overhead_ms).collect();
    let median_of = |f: &dyn Fn(&Pair) -> f64| median(&pairs.iter().map(f).collect::<Vec<_>>());
    let mut out = String::new();
    let _ = writeln!(out, "\nbench overhead: {}", machine());
    let _ = writeln!(out, "load average (1, 5, 15 min) at the start: {}; at the end: {}", load_start, load_average());
    let _ = writeln!(
        out,
        "{} transcodes a round ({} s {} testsrc + sine -> libx264 ultrafast + aac), {} rounds, in pairs of batches of \
         {} (server, then direct, or the other way round, alternating); {} node(s) of concurrency {}; completion \
         announced by the server's /events stream",
        opts.jobs,
        opts.clip.source().0,
        opts.clip.source().1,
        opts.rounds,
        opts.batch,
        opts.nodes,
        opts.concurrency,
    );
    let _ =
        writeln!(out, "\n| round | pairs |   server | of it submitting |   direct | server/direct | median of pairs |");
    let _ =
        writeln!(out, "|------:|------:|---------:|-----------------:|---------:|--------------:|----------------:|");
    for round in 1..=opts.rounds {
        let these: Vec<&Pair> = pairs.iter().filter(|p| p.round == round).collect();
        let (server, direct) = totals(&these);
        let submit: f64 = these.iter().map(|p| p.server.submit.as_secs_f64()).sum();
        let round_ratios: Vec<f64> = these.iter().map(|p| p.ratio()).collect();
        let _ = writeln!(
            out,
            "| {round:>5} | {:>5} | {:>8} | {:>16} | {:>8} | {:>13.3} | {:>15.3} |",
            these.len(),
            secs(Duration::from_secs_f64(server)),
            secs(Duration::from_secs_f64(submit)),
            secs(Duration::from_secs_f64(direct)),
            server / direct,
            median(&round_ratios),
        );
    }
    let all: Vec<&Pair> = pairs.iter().collect();
    let (server, direct) = totals(&all);
    let n = pairs.len();
    let interval = median_interval(&ratios, LEVEL);
    // The interval, distribution-free (see the module docs), in `unit`.
    let show = |i: Option<Interval>, digits: usize, unit: &str| {
        i.map_or_else(
            || "none (too few pairs)".to_owned(),
            |i| format!("[{:.digits$}, {:.digits$}]{unit}", i.low, i.high),
        )
    };
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let _ = writeln!(
        out,
        "\n{n} pairs; ratio server/direct of each pair: median **{:.3}**, {:.0} % interval {}, spread {:.3}-{:.3}",
        median(&ratios),
        LEVEL * 100.0,
        show(interval, 3, ""),
        sorted.first().copied().unwrap_or_default(),
        sorted.last().copied().unwrap_or_default(),
    );
    let _ = writeln!(out, "ratio of the totals: server {server:.3} s / direct {direct:.3} s = {:.3}", server / direct);
    let _ = writeln!(
        out,
        "overhead per job (server - direct, per pair): median {:.2} ms, {:.0} % interval {}",
        median(&overheads),
        LEVEL * 100.0,
        show(median_interval(&overheads, LEVEL), 2, " ms"),
    );
    let first = |server_first: bool| {
        let these: Vec<f64> = pairs.iter().filter(|p| p.server_first == server_first).map(Pair::ratio).collect();
        median(&these)
    };
    let _ = writeln!(
        out,
        "order: median ratio {:.3} in the pairs the server went first, {:.3} in those it went second",
        first(true),
        first(false)
    );
    let _ = writeln!(out, "target <= {:.2}: {}", opts.clip.target(), verdict(interval, opts.clip.target()));
    let gaps: Vec<f64> = pairs.iter().filter_map(|p| p.server.mean_gap).collect();
    let gap = if opts.concurrency == 1 && opts.nodes == 1 && !gaps.is_empty() {
        format!("{:.2} ms", median(&gaps) * 1000.0)
    } else {
        "n/a".to_owned()
    };
    let _ = writeln!(
        out,
        "where the time goes (medians of the pairs' means): one job's started_at -> completed_at {:.1} ms vs one \
         direct ffmpeg process {:.1} ms; next job started {gap} after the previous completed; the last job's \
         completion was announced {:.2} ms after its completed_at; submitting took {:.2} ms a job",
        median_of(&|p| p.server.mean_run) * 1000.0,
        median_of(&|p| p.direct.mean_run) * 1000.0,
        median_of(&|p| p.server.announced_after) * 1000.0,
        median_of(&|p| p.server.submit.as_secs_f64() / p.jobs as f64) * 1000.0,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_follows_the_whole_interval() {
        let i = |low, high| Some(Interval { low, high });
        assert!(verdict(i(1.001, 1.019), 1.02).starts_with("met"));
        assert!(verdict(i(1.001, 1.02), 1.02).starts_with("met"));
        assert!(verdict(i(1.021, 1.05), 1.02).starts_with("MISSED"));
        assert!(verdict(i(1.01, 1.03), 1.02).starts_with("not shown: the interval"));
        assert!(verdict(None, 1.02).starts_with("not shown: too few pairs"));
    }

    #[test]
    fn options_batch_within_n() -> Result {
        let o = Options::parse(&["40", "--clip", "tiny"])?;
        assert_eq!((o.jobs, o.batch, o.rounds, o.clip), (40, 8, 8, Clip::Tiny));
        assert!(Options::parse(&["4", "--batch", "5"]).is_err());
        assert!(Options::parse(&["--batch", "0"]).is_err());
        assert_eq!(Options::parse(&["--batch=1"])?.batch, 1);
        Ok(())
    }

    #[test]
    fn finals_are_read_from_status_events_only() {
        let stream = "event: status\nid: 3\ndata: {\"id\":\"job_1\",\"status\":\"completed\",\"created_at\":\
                      \"2026-11-30T10:00:00Z\",\"started_at\":\"2026-11-30T10:00:01Z\",\"completed_at\":\
                      \"2026-11-30T10:00:02.5Z\"}\n\n: keep-alive\n\nevent: skipped\ndata: {\"id\":\"job_9\"}\n\n\
                      event: status\ndata: {\"id\":\"job_2\",\"status\":\"failed\",\"error\":\"boom\"}\n\n";
        let (tx, rx) = mpsc::channel();
        read_finals(std::io::Cursor::new(stream), &tx);
        drop(tx);
        let got: Vec<(String, Final)> = rx.iter().collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.as_str(), got[0].1.job.status.as_str()), ("job_1", "completed"));
        let [_, s, e] = got[0].1.job.times;
        assert!((e.unwrap_or_default() - s.unwrap_or_default() - 1.5).abs() < 1e-6);
        assert_eq!((got[1].0.as_str(), got[1].1.job.error.as_deref()), ("job_2", Some("boom")));
    }
}

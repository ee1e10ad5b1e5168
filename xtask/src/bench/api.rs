//! `bench api`: requests per second of `POST /jobs` and `GET /jobs/{id}` measured with wrk, and
//! resident memory idle and after J stored jobs, for `ffmpeg-worker` on its durable SQLite store
//! and for the original Python design (in-memory) in the same run.
//!
//! Each server goes through the same steps: start, wait 1 s, read RSS (idle); submit one job
//! (the one the GET figure reads); POST for S seconds; POST more until J jobs are stored
//! (`xtask/bench/fill.lua` stops wrk at the count); wait 1 s, read RSS (after J jobs); GET the
//! one job for S seconds. ffmpeg-worker runs with `--concurrency 0` (API-only: it queues the
//! jobs and runs none) and `RUST_LOG=warn`. The original has no such switch: by default its
//! worker is parked on its first job by ffprobe/ffmpeg stand-ins put first on its `PATH`, so
//! that it too runs no job (`--original-worker parked`); with `--original-worker run` it runs
//! every job it reaches with the real ffmpeg, and the command names a missing input so each
//! fails fast.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::client::Client;
use super::server::{Memory, Server, WorkerConfig, release_binary};
use super::{Args, load_average, machine, print};
use crate::Result;

/// The job every POST submits (the same body as `xtask/bench/*.lua`).
const COMMAND: &str = "-i missing.mp4 -c:v libx264 -preset ultrafast out.mp4";
/// Longest the fill step may run.
const FILL_LIMIT: Duration = Duration::from_secs(600);
/// The Python packages of the original design, as `../shared/reference/README.md` pins them.
const ORIGINAL_PACKAGES: [&str; 3] = ["fastapi==0.115.0", "uvicorn[standard]==0.32.0", "pydantic==2.9.0"];

/// Settings of one run.
struct Options {
    seconds: u64,
    connections: u32,
    jobs: u64,
    original: bool,
    database_url: Option<String>,
    build: bool,
    original_runs_jobs: bool,
}

impl Options {
    fn parse(args: &[&str]) -> Result<Self> {
        let mut a = Args::new(args);
        let seconds = a.value("--seconds", 10u64)?;
        let connections = a.value("--connections", 64u32)?;
        let jobs = a.value("--jobs", 100_000u64)?;
        let database_url = a.value("--database-url", String::new())?;
        let original = !a.switch("--no-original");
        let build = !a.switch("--no-build");
        let original_runs_jobs = match a.value("--original-worker", String::from("parked"))?.as_str() {
            "parked" => false,
            "run" => true,
            other => return Err(format!("--original-worker: `{other}` is not `parked` or `run`").into()),
        };
        a.finish()?;
        if !(1..=600).contains(&seconds) || !(1..=1024).contains(&connections) || !(1..=10_000_000).contains(&jobs) {
            return Err("--seconds must be 1..=600, --connections 1..=1024, --jobs 1..=10000000".into());
        }
        let database_url = (!database_url.is_empty()).then_some(database_url);
        Ok(Self { seconds, connections, jobs, original, database_url, build, original_runs_jobs })
    }
}

/// Runs the bench.
pub(super) fn main(args: &[&str]) -> Result {
    let opts = Options::parse(args)?;
    let load_start = load_average();
    check_wrk()?;
    let scripts = crate::root().join("xtask").join("bench");
    let bin = release_binary(opts.build)?;
    let original = if opts.original { Some(Original::prepare()?) } else { None };
    let dir = tempfile::Builder::new().prefix("ffmpeg-worker-bench-").tempdir()?;

    let data = dir.path().join("data");
    let default_url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let database_url = opts.database_url.as_deref().unwrap_or(&default_url);
    let log = dir.path().join("ffmpeg-worker.log");
    // warn for everything, plus the start-up lines that carry the listening address.
    let config = WorkerConfig::new(&bin, &data, database_url, &log);
    let server = Server::ffmpeg_worker(&config)?;
    eprintln!("ffmpeg-worker at {} (pid {}), store {database_url}", server.base(), server.pid());
    let ours = measure(&server, &opts, &scripts).map_err(|e| format!("{e}\n{}", server.log_tail()))?;
    drop(server);

    let theirs = match &original {
        Some(o) => {
            let data = dir.path().join("original-data");
            std::fs::create_dir_all(&data)?;
            let stubs = if opts.original_runs_jobs { None } else { Some(park_stubs(dir.path())?) };
            let log = dir.path().join("original.log");
            let server = Server::original(&o.venv, &o.app_dir, &data, stubs.as_deref(), &log)?;
            eprintln!("original at {} (pid {})", server.base(), server.pid());
            let figures = measure(&server, &opts, &scripts).map_err(|e| format!("{e}\n{}", server.log_tail()))?;
            drop(server);
            Some(figures)
        }
        None => None,
    };
    print(&report(&opts, &load_start, database_url, &ours, theirs.as_ref()))
}

/// Fails with the install hint when wrk is missing.
fn check_wrk() -> Result {
    match Command::new("wrk").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS)".into())
        }
        Err(e) => Err(format!("cannot run wrk: {e}").into()),
    }
}

/// Writes `ffprobe` and `ffmpeg` stand-ins into `dir/parked-bin` and returns that folder. Put first
/// on the original's `PATH`, they park its worker on its first job, so that, like ffmpeg-worker
/// with `--concurrency 0`, it runs no job while it is measured: the stand-in waits until the
/// process that started it is gone, then exits.
fn park_stubs(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = dir.join("parked-bin");
    std::fs::create_dir_all(&bin)?;
    let script = "#!/bin/sh\n# cargo xtask bench api: parks the original's worker until its server is gone.\n\
                  while kill -0 \"$PPID\" 2>/dev/null; do sleep 0.2; done\nexit 1\n";
    for name in ["ffprobe", "ffmpeg"] {
        let path = bin.join(name);
        std::fs::write(&path, script)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(bin)
}

/// The original Python design, ready to start.
struct Original {
    venv: PathBuf,
    app_dir: PathBuf,
}

impl Original {
    /// Finds `reference/original-python` (`../shared/reference` beside the workspace, else
    /// `$FFMPEG_WORKER_REFERENCE`) and creates its venv (`$FFMPEG_WORKER_ORIGINAL_VENV`, default
    /// `/tmp/orig`) unless it already has uvicorn.
    fn prepare() -> Result<Self> {
        let mut candidates = vec![crate::root().join("..").join("shared").join("reference")];
        if let Some(dir) = std::env::var_os("FFMPEG_WORKER_REFERENCE") {
            candidates.push(PathBuf::from(dir));
        }
        let app_dir = candidates
            .iter()
            .map(|c| c.join("original-python"))
            .find(|d| d.join("app").join("main.py").is_file())
            .ok_or(
                "the original design is not at ../shared/reference/original-python: set FFMPEG_WORKER_REFERENCE \
                    to the reference directory, or pass --no-original",
            )?;
        let venv =
            std::env::var_os("FFMPEG_WORKER_ORIGINAL_VENV").map_or_else(|| PathBuf::from("/tmp/orig"), PathBuf::from);
        if !venv.join("bin").join("uvicorn").is_file() {
            eprintln!("creating the original's venv in {}", venv.display());
            let venv_str = venv.to_str().ok_or("the venv path is not UTF-8")?;
            crate::run("python3", &["-m", "venv", venv_str])?;
            let pip = venv.join("bin").join("pip");
            let pip = pip.to_str().ok_or("the venv path is not UTF-8")?;
            crate::run(pip, &[&["install", "--quiet"][..], &ORIGINAL_PACKAGES[..]].concat())?;
        }
        Ok(Self { venv, app_dir })
    }
}

/// What one wrk run reported.
#[derive(Debug, Default, Clone, Copy)]
struct Wrk {
    /// Responses received.
    requests: u64,
    /// Responses with a status other than 2xx or 3xx.
    non_2xx: u64,
    /// Connect, read, write and timeout errors together.
    socket_errors: u64,
    /// Seconds the run took.
    seconds: f64,
    /// `Requests/sec`.
    rps: f64,
    /// Median latency, milliseconds.
    p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    p99_ms: f64,
}

impl Wrk {
    /// Responses that were 2xx (for POST /jobs: 201, a stored job).
    fn ok(&self) -> u64 {
        self.requests.saturating_sub(self.non_2xx)
    }
}

/// Runs `wrk -t1 -cC -dD --latency [-s script] URL [-- script_args]`; its stdout.
fn run_wrk(
    script: Option<&Path>,
    url: &str,
    duration: Duration,
    connections: u32,
    script_args: &[&str],
) -> Result<String> {
    let mut cmd = Command::new("wrk");
    cmd.args(["--threads", "1", "--connections", &connections.to_string()]);
    cmd.args(["--duration", &format!("{}s", duration.as_secs()), "--timeout", "5s", "--latency"]);
    if let Some(script) = script {
        cmd.arg("--script").arg(script);
    }
    cmd.arg(url);
    if !script_args.is_empty() {
        cmd.arg("--").args(script_args);
    }
    let out = cmd.stdin(Stdio::null()).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("wrk failed ({}): {text}{}", out.status, String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(text)
}

/// Runs wrk for `duration` and parses its summary.
fn wrk(script: Option<&Path>, url: &str, duration: Duration, connections: u32) -> Result<Wrk> {
    let text = run_wrk(script, url, duration, connections, &[])?;
    parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's output:\n{text}").into())
}

/// POSTs with `fill.lua` until `count` jobs were created (or [`FILL_LIMIT`] passed); the number
/// of 201 answers.
fn fill(script: &Path, url: &str, count: u64, connections: u32) -> Result<u64> {
    let text = run_wrk(Some(script), url, FILL_LIMIT, connections, &[&count.to_string()])?;
    let created = text.lines().find_map(|l| l.strip_prefix("fill: created ")?.split_whitespace().next()?.parse().ok());
    match created {
        Some(n) => Ok(n),
        // The time limit ended wrk before the count: its summary says how many were stored.
        None => parse_wrk(&text).map(|w| w.ok()).ok_or_else(|| format!("cannot read wrk's output:\n{text}").into()),
    }
}

/// Reads wrk 4's summary.
fn parse_wrk(text: &str) -> Option<Wrk> {
    let mut w = Wrk::default();
    let mut seen_requests = false;
    for line in text.lines().map(str::trim) {
        if let Some((n, rest)) = line.split_once(" requests in ") {
            w.requests = n.trim().parse().ok()?;
            w.seconds = parse_time_ms(rest.split(',').next()?)? / 1000.0;
            seen_requests = true;
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            w.non_2xx = n.trim().parse().ok()?;
        } else if let Some(errors) = line.strip_prefix("Socket errors:") {
            w.socket_errors = errors.split(',').filter_map(|e| e.split_whitespace().last()?.parse::<u64>().ok()).sum();
        } else if let Some(n) = line.strip_prefix("Requests/sec:") {
            w.rps = n.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("50%") {
            w.p50_ms = parse_time_ms(v)?;
        } else if let Some(v) = line.strip_prefix("99%") {
            w.p99_ms = parse_time_ms(v)?;
        }
    }
    seen_requests.then_some(w)
}

/// A wrk time (`850.00us`, `1.23ms`, `10.00s`, `1.50m`) in milliseconds.
fn parse_time_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(number * scale)
}

/// One server's figures.
struct Figures {
    post: Wrk,
    get: Wrk,
    idle: Memory,
    after_jobs: Memory,
    end: Memory,
    stored: u64,
    insert_time: Duration,
}

/// Runs the steps described in the module doc against `server`.
fn measure(server: &Server, opts: &Options, scripts: &Path) -> Result<Figures> {
    let seconds = Duration::from_secs(opts.seconds);
    std::thread::sleep(Duration::from_secs(1));
    let idle = server.memory()?;
    let client = Client::new(server.base());
    let id = client.submit(COMMAND)?;
    let jobs_url = format!("{}/jobs", server.base());

    eprintln!("  POST /jobs for {} s ...", opts.seconds);
    let post = wrk(Some(&scripts.join("post.lua")), &jobs_url, seconds, opts.connections)?;
    eprintln!("  {:.0} req/s", post.rps);
    let mut stored = 1 + post.ok();
    let fill_start = Instant::now();
    if stored < opts.jobs {
        let remaining = opts.jobs - stored;
        eprintln!("  storing {remaining} more jobs ...");
        stored += fill(&scripts.join("fill.lua"), &jobs_url, remaining, opts.connections)?;
    }
    let insert_time = seconds + fill_start.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let after_jobs = server.memory()?;

    eprintln!("  GET /jobs/{id} for {} s ...", opts.seconds);
    let get = wrk(None, &format!("{jobs_url}/{id}"), seconds, opts.connections)?;
    eprintln!("  {:.0} req/s", get.rps);
    let end = server.memory()?;
    Ok(Figures { post, get, idle, after_jobs, end, stored, insert_time })
}

/// Decimal megabytes from KiB.
fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// The results table.
fn report(opts: &Options, load_start: &str, database_url: &str, ours: &Figures, theirs: Option<&Figures>) -> String {
    let store = if database_url.starts_with("sqlite:") { "SQLite" } else { database_url };
    let mut out = String::new();
    let _ = writeln!(out, "\nbench api: {}", machine());
    let _ = writeln!(out, "load average (1, 5, 15 min) at the start: {}; at the end: {}", load_start, load_average());
    let _ = writeln!(
        out,
        "wrk: 1 thread, {} connections, {} s per figure, loopback; ffmpeg-worker on {store} with --concurrency 0 \
         and RUST_LOG=warn; original: uvicorn --log-level warning, in-memory, {}",
        opts.connections,
        opts.seconds,
        if !opts.original {
            "not measured (--no-original)"
        } else if opts.original_runs_jobs {
            "its worker running every job it reaches (missing input: each fails fast)"
        } else {
            "its worker parked on its first job by ffprobe/ffmpeg stand-ins (runs no job, like --concurrency 0)"
        }
    );
    let column = |f: Option<&Figures>, cell: &dyn Fn(&Figures) -> String| f.map_or_else(|| "-".to_owned(), cell);
    let ratio = |a: f64, b: Option<f64>| b.map_or_else(|| "-".to_owned(), |b| format!("{:.2}x", a / b));
    let rate = |w: &Wrk| {
        let flawed = w.non_2xx + w.socket_errors;
        let flaw = if flawed > 0 { format!(", {flawed} answers not 2xx or lost") } else { String::new() };
        format!("{:.0} /s (p50 {:.2} ms, p99 {:.2} ms{flaw})", w.rps, w.p50_ms, w.p99_ms)
    };
    let clean = |w: &Wrk| w.non_2xx == 0 && w.socket_errors == 0;
    let target = |ours: &Wrk, theirs: Option<&Wrk>, min: f64| match theirs {
        None => "needs the original".to_owned(),
        Some(t) if !clean(ours) || !clean(t) => "not valid: some answers were not 2xx".to_owned(),
        Some(t) => verdict(ours.rps / t.rps >= min).to_owned(),
    };

    let _ = writeln!(out, "\n| figure | ffmpeg-worker ({store}) | original (Python, in-memory) | ratio | target |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| POST /jobs | {} | {} | {} | >= 2x: {} |",
        rate(&ours.post),
        column(theirs, &|f| rate(&f.post)),
        ratio(ours.post.rps, theirs.map(|t| t.post.rps)),
        target(&ours.post, theirs.map(|t| &t.post), 2.0)
    );
    let _ = writeln!(
        out,
        "| GET /jobs/{{id}} | {} | {} | {} | >= 5x: {} |",
        rate(&ours.get),
        column(theirs, &|f| rate(&f.get)),
        ratio(ours.get.rps, theirs.map(|t| t.get.rps)),
        target(&ours.get, theirs.map(|t| &t.get), 5.0)
    );
    let _ = writeln!(
        out,
        "| RSS idle | {:.1} MB | {} | | <= 15 MB: {} |",
        mb(ours.idle.rss_kib),
        column(theirs, &|f| format!("{:.1} MB", mb(f.idle.rss_kib))),
        verdict(mb(ours.idle.rss_kib) <= 15.0)
    );
    let _ = writeln!(
        out,
        "| RSS after jobs stored | {:.1} MB ({} jobs) | {} | | <= 60 MB at 100k: {} |",
        mb(ours.after_jobs.rss_kib),
        ours.stored,
        column(theirs, &|f| format!("{:.1} MB ({} jobs)", mb(f.after_jobs.rss_kib), f.stored)),
        if ours.stored >= 100_000 { verdict(mb(ours.after_jobs.rss_kib) <= 60.0) } else { "fewer than 100k jobs" }
    );
    let _ = writeln!(
        out,
        "| RSS after the GET run (peak) | {:.1} MB ({:.1} MB) | {} | | |",
        mb(ours.end.rss_kib),
        mb(ours.end.peak_kib),
        column(theirs, &|f| format!("{:.1} MB ({:.1} MB)", mb(f.end.rss_kib), mb(f.end.peak_kib)))
    );
    let insert = |f: &Figures| {
        format!("{:.1} s ({:.0} jobs/s)", f.insert_time.as_secs_f64(), f.stored as f64 / f.insert_time.as_secs_f64())
    };
    let _ = writeln!(out, "| time to store the jobs | {} | {} | | |", insert(ours), column(theirs, &|f| insert(f)));
    let errors = |f: &Figures| {
        format!("POST {}/{}, GET {}/{}", f.post.non_2xx, f.post.socket_errors, f.get.non_2xx, f.get.socket_errors)
    };
    let _ = writeln!(out, "| non-2xx / socket errors | {} | {} | | 0 |", errors(ours), column(theirs, &|f| errors(f)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "Running 10s test @ http://127.0.0.1:8000/jobs
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.12ms    1.02ms  20.00ms   90.00%
    Req/Sec    12.50k     1.00k   14.00k    80.00%
  Latency Distribution
     50%  850.00us
     75%    5.50ms
     90%    6.00ms
     99%    1.20s
  125000 requests in 10.00s, 50.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 12
Requests/sec:  12499.50
Transfer/sec:      5.00MB
";

    #[test]
    fn reads_wrk_summary() -> Result {
        let w = parse_wrk(WRK_OUTPUT).ok_or("no parse")?;
        assert_eq!((w.requests, w.non_2xx, w.socket_errors, w.ok()), (125_000, 12, 5, 124_988));
        assert!((w.seconds - 10.0).abs() < 1e-9);
        assert!((w.rps - 12_499.5).abs() < 1e-9);
        assert!((w.p50_ms - 0.85).abs() < 1e-9);
        assert!((w.p99_ms - 1200.0).abs() < 1e-9);
        Ok(())
    }

    #[test]
    fn rejects_output_without_a_summary() {
        assert!(parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n").is_none());
    }

    #[test]
    fn reads_wrk_times() {
        for (text, ms) in [("1.50m", 90_000.0), ("2.00s", 2000.0), ("3.25ms", 3.25), ("500.00us", 0.5)] {
            assert_eq!(parse_time_ms(text), Some(ms), "{text}");
        }
        assert_eq!(parse_time_ms("12"), None);
    }
}

//! The queue of a cluster, measured: `cargo xtask bench cluster` runs this (see
//! docs/benchmarks.md). It starts its own PostgreSQL server (`pg-harness`) and runs worker
//! nodes as child processes of itself (`cluster_bench worker ...`), each a real [`Jobs`] worker
//! pool on the store, with a runner that starts no ffmpeg:
//!
//! - **capacity**: N queued jobs, then P worker processes of S slots each with a runner that
//!   returns at once (the job then ends `failed`, nothing encoded): claim -> record run -> finish throughput (jobs/s) of PostgreSQL for each
//!   P, and of SQLite (one process, S slots) beside it;
//! - **submit -> claim** on an idle cluster of 4 worker processes (started half a second
//!   apart): `started_at - created_at`
//!   of jobs submitted one at a time (both stamped by this machine's clock);
//! - **dead-node requeue**: a worker holding a running job is killed (SIGKILL); the time until
//!   the job is back in the queue, against the lease;
//! - **cancel across nodes**: a job runs on a worker process (its runner reports progress every
//!   0.5 s, as ffmpeg does); the time from this process's cancel to that runner being told;
//! - **writes per running job**: rows written (counted exactly by a trigger on every table)
//!   and transaction ids PostgreSQL assigned (one per writing transaction or statement, reads
//!   take none) while jobs run on one worker node, per job and second.
//!
//! Every worker process is in the node registry, as a server's worker node is (heartbeats).
//!
//! The PostgreSQL server has PostgreSQL's default durability settings (`fsync`,
//! `synchronous_commit`, `full_page_writes` on: a commit is acknowledged once it is on disk),
//! as a user's server has; `--test-settings` gives it the test harness's instead (all three
//! off), for comparison only.
//!
//! Usage: `cluster_bench [--jobs N=3000] [--processes 1,2,4,8] [--slots S=4] [--rounds R=3]
//! [--samples K=40] [--lease L=3] [--window W=20] [--test-settings] [--capacity-only]`
//! (`--capacity-only`: the capacity table, and nothing after it).

#![allow(clippy::print_stdout, clippy::print_stderr, missing_docs)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ffmpeg_core::sandbox::Sandbox;
use jobs::location::StoreLocation;
use jobs::postgres::PgSettings;
use jobs::{JobId, JobStatus, JobStore, Jobs, JobsConfig, Progress, RunError, RunReport, RunSpec, Runner, Shutdown};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A runner that starts nothing: `Noop` returns success at once; `Hang` reports progress every
/// 0.5 s until cancelled, and prints `cancelled <unix µs>` when it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bench {
    Noop,
    Hang,
}

#[async_trait]
impl Runner for Bench {
    async fn run(
        &self,
        _spec: RunSpec<'_>,
        progress: &watch::Sender<Option<Progress>>,
        cancel: &CancellationToken,
    ) -> RunReport {
        let report = |result| RunReport { result, log_tail: String::new(), outputs: Vec::new() };
        if *self == Bench::Noop {
            return report(Ok(()));
        }
        let mut frame = 0;
        loop {
            tokio::select! {
                () = cancel.cancelled() => {
                    println!("cancelled {}", unix_micros());
                    return report(Err(RunError::Cancelled));
                }
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    frame += 12;
                    let _ = progress.send(Some(Progress { frame: Some(frame), ..Progress::default() }));
                }
            }
        }
    }
}

fn unix_micros() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()
}

fn settings(node: &str, lease: Duration) -> PgSettings {
    PgSettings { node_id: node.to_owned(), lease, ..PgSettings::default() }
}

/// A node's service on the store at `url`, with `slots` workers running `runner`; with
/// `registry`, in the node registry as a server's node is (a heartbeat every third of the
/// lease, and soon after the jobs it runs change).
async fn jobs_on(
    url: &str,
    node: &str,
    lease: Duration,
    data: &Path,
    runner: Bench,
    slots: usize,
    registry: Option<jobs::nodes::NodeSettings>,
) -> Result<Arc<Jobs>, Error> {
    let store = StoreLocation::parse(url)?.open_with(settings(node, lease)).await?;
    let registered = registry.is_some();
    let config = JobsConfig { concurrency: slots, node: registry, ..JobsConfig::default() };
    let jobs = Jobs::new(store, Arc::new(runner), Sandbox::new(data)?, config);
    if registered {
        jobs.register_node().await?;
    }
    Ok(jobs)
}

/// A worker node's service ([`jobs_on`]), in the node registry.
async fn worker_on(
    url: &str,
    node: &str,
    lease: Duration,
    data: &Path,
    runner: Bench,
    slots: usize,
) -> Result<Arc<Jobs>, Error> {
    let registry = jobs::nodes::NodeSettings {
        registration: jobs::nodes::NodeRegistration {
            id: node.to_owned(),
            role: jobs::nodes::NodeRole::Worker,
            labels: Vec::new(),
            host: jobs::nodes::host_name(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ffmpeg_version: None,
            capabilities: None,
            slots: u32::try_from(slots)?,
            started_at: time::OffsetDateTime::now_utc(),
            process: jobs::nodes::this_process(),
        },
        lost_after: lease,
        retention: Duration::from_secs(3600),
    };
    jobs_on(url, node, lease, data, runner, slots, Some(registry)).await
}

/// `worker URL DATA SLOTS noop|hang NODE LEASE_S`: prints `ready`, starts its workers on a
/// `go` line on stdin, stops when stdin closes.
async fn worker(args: &[String]) -> Result<(), Error> {
    let [url, data, slots, runner, node, lease] = args else { return Err("worker: bad arguments".into()) };
    let runner = if runner == "hang" { Bench::Hang } else { Bench::Noop };
    let lease = Duration::from_secs(lease.parse()?);
    let jobs = worker_on(url, node, lease, Path::new(data), runner, slots.parse()?).await?;
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    println!("ready");
    while let Some(line) = lines.recv().await {
        if line == "go" {
            break;
        }
    }
    let shutdown = Shutdown::default();
    let _workers = jobs.spawn_workers(&shutdown);
    let (draining, stop) = (CancellationToken::new(), CancellationToken::new());
    let life = tokio::spawn({
        let (jobs, draining, stop) = (Arc::clone(&jobs), draining.clone(), stop.clone());
        async move { jobs.run_node(draining, stop).await }
    });
    while lines.recv().await.is_some() {}
    draining.cancel();
    shutdown.stop_claiming.cancel();
    shutdown.abort_running.cancel();
    stop.cancel();
    let _ = life.await;
    Ok(())
}

/// A worker process of this program.
struct Node {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Node {
    fn start(url: &str, data: &Path, slots: usize, runner: &str, node: &str, lease: u64) -> Result<Node, Error> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("worker")
            .args([url, &data.display().to_string(), &slots.to_string(), runner, node, &lease.to_string()])
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Ok(Node { child, stdin, lines })
    }

    fn expect(&self, prefix: &str) -> Result<String, Error> {
        loop {
            let line = self.lines.recv_timeout(Duration::from_secs(60)).map_err(|_| format!("no `{prefix}` line"))?;
            if line.starts_with(prefix) {
                return Ok(line);
            }
        }
    }

    fn go(&mut self) -> Result<(), Error> {
        writeln!(self.stdin.as_mut().ok_or("no stdin")?, "go")?;
        Ok(())
    }

    fn stop(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bench's PostgreSQL server (see the module docs), started in `main`.
static SERVER: std::sync::OnceLock<pg_harness::PgServer> = std::sync::OnceLock::new();

fn server() -> &'static pg_harness::PgServer {
    SERVER.get().unwrap_or_else(|| unreachable!("started in main"))
}

async fn fresh_postgres() -> String {
    tokio::task::spawn_blocking(|| server().fresh_database()).await.unwrap_or_default()
}

/// Submits `n` distinct, non-conflicting jobs through `jobs` (64 at a time).
async fn fill(jobs: &Arc<Jobs>, n: usize) -> Result<Vec<JobId>, Error> {
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let mut set = tokio::task::JoinSet::new();
        for &i in chunk {
            let jobs = Arc::clone(jobs);
            set.spawn(async move {
                let command = format!("-f lavfi -i testsrc=duration=1 -c:v mpeg4 out/{i}.mp4");
                jobs.submit(&command, jobs::SubmitOptions::default()).await.map(|j| j.id)
            });
        }
        while let Some(id) = set.join_next().await {
            ids.push(id??);
        }
    }
    Ok(ids)
}

/// Finished jobs. A no-op run ends `failed` ("nothing encoded": ffmpeg's exit 0 without an
/// output), through the same `finish` transition as a completed one.
async fn finished(store: &Arc<dyn JobStore>) -> Result<u64, Error> {
    Ok(store.counts().await?.iter().filter(|(s, _)| s.is_finished()).map(|(_, n)| n).sum())
}

/// Linux's clock ticks per second in `/proc/PID/stat` (`USER_HZ`, 100 on every architecture
/// Rust supports there).
const CLOCK_TICKS: f64 = 100.0;

/// From `/proc/PID/stat`: the parent's pid, the process's own CPU seconds (user + system, all
/// its threads), and those of its children it waited for.
fn proc_stat(pid: u32) -> Option<(u32, f64, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (in parentheses, may hold spaces): state, ppid, ... utime (12th),
    // stime, cutime, cstime.
    let fields: Vec<&str> = text.get(text.rfind(')')? + 2..)?.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).map(|t| t / CLOCK_TICKS);
    Some((fields.get(1)?.parse().ok()?, ticks(11)? + ticks(12)?, ticks(13)? + ticks(14)?))
}

/// CPU seconds used so far by process `pid` and every child it waited for.
fn cpu_of(pid: u32) -> f64 {
    proc_stat(pid).map_or(0.0, |(_, own, reaped)| own + reaped)
}

/// CPU seconds used so far by the PostgreSQL server whose main process is `postmaster`: its
/// own, its live children's (the backends, the background processes) and those of the
/// children that ended (the postmaster waits for each).
fn server_cpu(postmaster: u32) -> f64 {
    let children: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .filter(|(ppid, ..)| *ppid == postmaster)
        .map(|(_, own, reaped)| own + reaped)
        .sum();
    cpu_of(postmaster) + children
}

/// CPU seconds of the three parties of a capacity run: the database server (PostgreSQL; 0 for
/// SQLite, which runs inside the worker process), the worker processes, and this process (the
/// filler's store and the polling for the end).
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    server: f64,
    workers: f64,
    bench: f64,
}

impl Cpu {
    fn now(postmaster: Option<u32>, workers: &[Node]) -> Cpu {
        Cpu {
            server: postmaster.map_or(0.0, server_cpu),
            workers: workers.iter().map(|n| cpu_of(n.child.id())).sum(),
            bench: cpu_of(std::process::id()),
        }
    }

    fn since(self, start: Cpu) -> Cpu {
        Cpu {
            server: self.server - start.server,
            workers: self.workers - start.workers,
            bench: self.bench - start.bench,
        }
    }
}

/// One capacity run's figures.
#[derive(Debug, Clone, Default)]
struct Run {
    jobs_per_second: f64,
    /// CPU seconds during the run (from the workers' start to the last job finished).
    cpu: Cpu,
    /// PostgreSQL's statements during the run, most called first, when `pg_stat_statements`
    /// is loaded (`PG_HARNESS_OPTIONS`).
    statements: Option<Vec<Statement>>,
    /// PostgreSQL's commits and WAL during the run (PostgreSQL only).
    commits: Option<Commits>,
}

/// One statement's figures from `pg_stat_statements`.
#[derive(Debug, Clone)]
struct Statement {
    /// Calls per job (or per job and second).
    calls: f64,
    /// Mean execution time, µs.
    mean_us: f64,
    /// Mean planning time, µs (0 unless `pg_stat_statements.track_planning` is on).
    plan_us: f64,
    /// Plans per call (0 unless `pg_stat_statements.track_planning` is on): 1 when every call
    /// was planned (custom plans), near 0 once a generic plan is reused.
    plans: f64,
    /// Rows returned or changed per call.
    rows: f64,
    /// The statement, whitespace collapsed.
    query: String,
}

/// Commits and WAL of PostgreSQL over a run: `pg_stat_database` of the bench's database
/// (`xact_commit`, `xact_rollback`; a backend reports them when its transaction ends, at most
/// once a second while it stays busy, and when it disconnects: read after the workers left)
/// and `pg_stat_wal` of the whole server (records, bytes, `XLogWrite` writes and the WAL
/// `fsync`s, `wal_sync`: the flushes of durable commits, several commits sharing one when
/// they come together).
#[derive(Debug, Clone, Copy, Default)]
struct Commits {
    commits: i64,
    rollbacks: i64,
    wal_records: i64,
    wal_bytes: f64,
    wal_writes: i64,
    wal_syncs: i64,
}

impl Commits {
    async fn now(pool: &sqlx::PgPool) -> Result<Commits, Error> {
        let (commits, rollbacks): (i64, i64) = sqlx::query_as(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(pool)
        .await?;
        let (wal_records, wal_bytes, wal_writes, wal_syncs): (i64, f64, i64, i64) =
            sqlx::query_as("SELECT wal_records, wal_bytes::float8, wal_write, wal_sync FROM pg_stat_wal")
                .fetch_one(pool)
                .await?;
        Ok(Commits { commits, rollbacks, wal_records, wal_bytes, wal_writes, wal_syncs })
    }

    fn since(self, before: Commits) -> Commits {
        Commits {
            commits: self.commits - before.commits,
            rollbacks: self.rollbacks - before.rollbacks,
            wal_records: self.wal_records - before.wal_records,
            wal_bytes: self.wal_bytes - before.wal_bytes,
            wal_writes: self.wal_writes - before.wal_writes,
            wal_syncs: self.wal_syncs - before.wal_syncs,
        }
    }
}

/// Resets `pg_stat_statements` of the database at `url`; false when it is not loaded.
async fn reset_statements(url: &str) -> bool {
    let Ok(pool) = sqlx::PgPool::connect(url).await else { return false };
    let created = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await.is_ok();
    created && sqlx::query("SELECT pg_stat_statements_reset()").execute(&pool).await.is_ok()
}

/// The statements of the database at `url` since the reset, per job of `n` (the bench's own
/// polling for the end left out).
async fn statements(url: &str, n: usize) -> Result<Vec<Statement>, Error> {
    let pool = sqlx::PgPool::connect(url).await?;
    let rows: Vec<(i64, f64, f64, i64, i64, String)> = sqlx::query_as(
        "SELECT calls, mean_exec_time * 1000, COALESCE(total_plan_time / NULLIF(plans, 0), 0) * 1000, plans, rows, \
           regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND query NOT LIKE 'SELECT status, COUNT(*)%' AND query NOT LIKE '%pg_stat_statements%' \
           AND query NOT LIKE 'SELECT EXISTS (SELECT 1 FROM jobs WHERE status IN%' \
           AND query NOT LIKE '%pg_stat_database%' AND query NOT LIKE '%pg_stat_wal%' \
         ORDER BY calls DESC",
    )
    .fetch_all(&pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(calls, mean_us, plan_us, plans, rows, query)| Statement {
            calls: calls as f64 / n as f64,
            mean_us,
            plan_us,
            plans: plans as f64 / calls.max(1) as f64,
            rows: rows as f64 / calls.max(1) as f64,
            query,
        })
        .collect())
}

/// Counts every row inserted, updated or deleted in the bench's database from now on, per
/// table, in `bench_rows` (unlogged; its own writes are not counted): exact, where the
/// cumulative statistics lag by up to a second at each end of a window.
const COUNT_ROWS: &str = "CREATE UNLOGGED TABLE bench_rows (tbl TEXT PRIMARY KEY, n BIGINT NOT NULL); \
    CREATE FUNCTION bench_count() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
      INSERT INTO bench_rows VALUES (TG_TABLE_NAME, 1) ON CONFLICT (tbl) DO UPDATE SET n = bench_rows.n + 1; \
      RETURN NULL; END $$; \
    DO $$ DECLARE t TEXT; BEGIN \
      FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'bench_rows' LOOP \
        EXECUTE format('CREATE TRIGGER bench_count AFTER INSERT OR UPDATE OR DELETE ON %I \
          FOR EACH ROW EXECUTE FUNCTION bench_count()', t); \
      END LOOP; END $$;";

/// One capacity run: jobs per second of `processes` workers of `slots` slots on `url`.
async fn capacity(url: &str, data: &Path, n: usize, processes: usize, slots: usize) -> Result<Run, Error> {
    let filler = jobs_on(url, "filler", Duration::from_secs(30), data, Bench::Noop, 0, None).await?;
    fill(&filler, n).await?;
    let mut nodes = Vec::new();
    for p in 0..processes {
        nodes.push(Node::start(url, data, slots, "noop", &format!("node-{p}"), 30)?);
    }
    for node in &nodes {
        node.expect("ready")?;
    }
    let postgres = url.starts_with("postgres");
    let postmaster = if postgres { server().pid() } else { None };
    let counting = postgres && reset_statements(url).await;
    // PostgreSQL: the end is polled with a statement that reads one index entry while jobs
    // remain (the first queued or running one), not with `counts()`, whose scan of every job
    // cost the server ~1 ms a call with 3,000 jobs, 100 calls a second: a quarter of a
    // millisecond of the server's CPU per job at 400 jobs/s, counted as the queue's (before
    // session 24).
    let admin = if postgres { Some(sqlx::PgPool::connect(url).await?) } else { None };
    let commits = match &admin {
        Some(pool) => Some(Commits::now(pool).await?),
        None => None,
    };
    let cpu = Cpu::now(postmaster, &nodes);
    let started = Instant::now();
    for node in &mut nodes {
        node.go()?;
    }
    let store = filler.store();
    loop {
        let done = match &admin {
            Some(pool) => {
                !sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM jobs WHERE status IN ('queued', 'running'))",
                )
                .fetch_one(pool)
                .await?
            }
            None => finished(store).await? >= n as u64,
        };
        if done {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err("capacity run did not finish in 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let cpu = Cpu::now(postmaster, &nodes).since(cpu);
    for node in nodes {
        node.stop();
    }
    if postgres && finished(store).await? != n as u64 {
        return Err("capacity run: not every job finished".into());
    }
    let commits = match (&admin, commits) {
        // The workers' backends report their counts when they disconnect: wait for that.
        (Some(pool), Some(before)) => Some(settled_commits(pool).await?.since(before)),
        _ => None,
    };
    let statements = if counting { Some(statements(url, n).await?) } else { None };
    Ok(Run { jobs_per_second: n as f64 / elapsed.as_secs_f64(), cpu, statements, commits })
}

/// [`Commits::now`] once the worker processes' backends have gone (they report their counts
/// when they disconnect): none of their backends left (`ffmpeg-worker node-*`), or 5 s.
async fn settled_commits(pool: &sqlx::PgPool) -> Result<Commits, Error> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
               AND application_name LIKE 'ffmpeg-worker node-%'",
        )
        .fetch_one(pool)
        .await?;
        if left == 0 || Instant::now() > deadline {
            return Commits::now(pool).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Prints one row of the capacity table: the median run by jobs/s, and every run's rate.
fn capacity_row(store: &str, processes: usize, runs: &mut [Run], n: usize) -> Option<Run> {
    runs.sort_by(|a, b| a.jobs_per_second.total_cmp(&b.jobs_per_second));
    let shown: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.jobs_per_second)).collect();
    let mid = runs.get(runs.len() / 2)?.clone();
    let ms = |s: f64| s * 1e3 / n as f64;
    let (c, total) = (mid.cpu, mid.cpu.server + mid.cpu.workers + mid.cpu.bench);
    println!(
        "| {store} | {processes} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
        mid.jobs_per_second,
        shown.join(", "),
        ms(c.server),
        ms(c.workers),
        ms(c.bench),
        ms(total)
    );
    Some(mid)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

async fn wait_status(
    store: &Arc<dyn JobStore>,
    id: &JobId,
    want: impl Fn(&jobs::Job) -> bool,
) -> Result<jobs::Job, Error> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = store.get(id).await?.ok_or("job vanished")?;
        if want(&job) {
            return Ok(job);
        }
        if Instant::now() > deadline {
            return Err(format!("job {id} stuck: {job:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Reads the flag `name` (`default` when absent).
fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, Error> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).ok_or_else(|| format!("{name}: bad value").into()),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        return worker(&args[1..]).await;
    }
    let n: usize = flag(&args, "--jobs", 3000)?;
    let processes: Vec<usize> =
        flag(&args, "--processes", "1,2,4,8".to_owned())?.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let slots: usize = flag(&args, "--slots", 4)?;
    let rounds: usize = flag(&args, "--rounds", 3)?;
    let samples: usize = flag(&args, "--samples", 40)?;
    let lease: u64 = flag(&args, "--lease", 3)?;
    let window: u64 = flag(&args, "--window", 20)?;
    let test_settings = args.iter().any(|a| a == "--test-settings");
    let capacity_only = args.iter().any(|a| a == "--capacity-only");
    let started = tokio::task::spawn_blocking(move || {
        if test_settings { pg_harness::PgServer::start() } else { pg_harness::PgServer::start_durable() }
    })
    .await??;
    let _ = SERVER.set(started);
    let settings = {
        let pool = sqlx::PgPool::connect(&fresh_postgres().await).await?;
        let mut shown = Vec::new();
        for name in ["fsync", "synchronous_commit", "full_page_writes", "shared_buffers"] {
            let value: String = sqlx::query_scalar("SELECT current_setting($1)").bind(name).fetch_one(&pool).await?;
            shown.push(format!("{name}={value}"));
        }
        shown.join(", ")
    };
    println!("PostgreSQL server settings: {settings}\n");
    let data_dir = tempfile::tempdir()?;
    let data = data_dir.path().to_owned();

    // Capacity.
    println!(
        "## Queue capacity: claim -> record run -> finish, no-op runner, {n} jobs per run, {slots} slots per process\n"
    );
    println!("CPU: milliseconds per finished job of the median run (by jobs/s), from /proc: the PostgreSQL");
    println!("server (all its processes), the worker processes, and this bench process (queueing, polling).\n");
    println!(
        "| store | worker processes | jobs/s (median of {rounds}) | runs | CPU ms/job: server | workers | bench | total |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut counted = Vec::new();
    for &p in &processes {
        let mut runs = Vec::new();
        for _ in 0..rounds {
            runs.push(capacity(&fresh_postgres().await, &data, n, p, slots).await?);
        }
        if let Some(run) = capacity_row("PostgreSQL", p, &mut runs, n) {
            counted.push((p, run));
        }
    }
    let mut runs = Vec::new();
    for _ in 0..rounds {
        let db = tempfile::tempdir()?;
        let url = format!("sqlite://{}", db.path().join("jobs.db").display());
        runs.push(capacity(&url, &data, n, 1, slots).await?);
    }
    capacity_row("SQLite (one process)", 1, &mut runs, n);
    if !counted.is_empty() {
        println!("\n### PostgreSQL commits and WAL per finished job (median run)\n");
        println!("pg_stat_database of the bench's database (commits, rollbacks) and pg_stat_wal of the server (WAL");
        println!("records, bytes, writes, and flushes to disk: `wal_sync`, what durable commits wait for).\n");
        println!("| worker processes | commits | rollbacks | WAL records | WAL bytes | WAL writes | WAL flushes |");
        println!("|---|---|---|---|---|---|---|");
        for (p, run) in &counted {
            if let Some(c) = run.commits {
                let per = |v: f64| v / n as f64;
                println!(
                    "| {p} | {:.2} | {:.2} | {:.1} | {:.0} | {:.2} | {:.2} |",
                    per(c.commits as f64),
                    per(c.rollbacks as f64),
                    per(c.wal_records as f64),
                    per(c.wal_bytes),
                    per(c.wal_writes as f64),
                    per(c.wal_syncs as f64)
                );
            }
        }
    }
    for (p, run) in counted {
        let Some(statements) = run.statements else { continue };
        println!("\n### PostgreSQL statements per job, {p} worker processes (pg_stat_statements, median run)\n");
        println!("Mean µs: execution per call; plan µs: planning per plan, and plans per call (with");
        println!("`pg_stat_statements.track_planning=on`); ms per job: their total over the run per finished");
        println!("job; rows: returned or changed per call.\n");
        println!("| calls per job | mean µs | plan µs | plans per call | ms per job | rows per call | statement |");
        println!("|---|---|---|---|---|---|---|");
        let total: f64 = statements.iter().map(|s| s.calls).sum();
        let time: f64 = statements.iter().map(|s| s.calls * (s.mean_us + s.plans * s.plan_us) / 1e3).sum();
        for s in statements.iter().filter(|s| s.calls >= 0.01) {
            let query: String = s.query.chars().take(110).collect();
            println!(
                "| {:.2} | {:.0} | {:.0} | {:.2} | {:.3} | {:.1} | `{}` |",
                s.calls,
                s.mean_us,
                s.plan_us,
                s.plans,
                s.calls * (s.mean_us + s.plans * s.plan_us) / 1e3,
                s.rows,
                query.replace('|', "\\|")
            );
        }
        println!("| {total:.2} | | | | {time:.3} | | all statements |");
    }

    if capacity_only {
        return Ok(());
    }

    // Submit -> claim on an idle cluster of 4 worker processes.
    let url = fresh_postgres().await;
    let submitter = jobs_on(&url, "submitter", Duration::from_secs(30), &data, Bench::Noop, 0, None).await?;
    let mut nodes = Vec::new();
    for p in 0..4 {
        nodes.push(Node::start(&url, &data, 1, "noop", &format!("idle-{p}"), 30)?);
    }
    // Started half a second apart: nodes that poll the queue do so out of step, as nodes
    // started at different times would (started together, they would poll together).
    for node in &mut nodes {
        node.expect("ready")?;
        node.go()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut latencies = Vec::new();
    for i in 0..samples {
        let job = submitter
            .submit(&format!("-f lavfi -i testsrc=duration=1 out/l{i}.mp4"), jobs::SubmitOptions::default())
            .await?;
        let started = wait_status(submitter.store(), &job.id, |j| j.started_at.is_some()).await?;
        let at = started.started_at.ok_or("no started_at")?;
        latencies.push((at - job.created_at).as_seconds_f64() * 1e3);
        // Not in step with the workers' polling.
        tokio::time::sleep(Duration::from_millis(50 + (i as u64 * 37) % 200)).await;
    }
    for node in nodes {
        node.stop();
    }
    println!(
        "\n## Submit -> claim on an idle cluster (4 worker processes, 1 slot each), {samples} jobs one at a time\n"
    );
    println!("| p50 | p95 | max |");
    println!("|---|---|---|");
    println!(
        "| {:.1} ms | {:.1} ms | {:.1} ms |",
        percentile(&mut latencies, 50.0),
        percentile(&mut latencies, 95.0),
        percentile(&mut latencies, 100.0)
    );

    // Dead-node requeue and cancel across nodes.
    let url = fresh_postgres().await;
    let watcher = jobs_on(&url, "watcher", Duration::from_secs(lease), &data, Bench::Noop, 0, None).await?;
    let mut requeues = Vec::new();
    let mut cancels = Vec::new();
    for round in 0..rounds {
        let mut node = Node::start(&url, &data, 1, "hang", &format!("doomed-{round}"), lease)?;
        node.expect("ready")?;
        node.go()?;
        let job = watcher
            .submit(&format!("-f lavfi -i testsrc=duration=1 out/d{round}.mp4"), jobs::SubmitOptions::default())
            .await?;
        wait_status(watcher.store(), &job.id, |j| j.status == JobStatus::Running).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        node.kill();
        let killed = Instant::now();
        wait_status(watcher.store(), &job.id, |j| j.status != JobStatus::Running).await?;
        requeues.push(killed.elapsed().as_secs_f64());
        watcher.cancel(&job.id).await?;

        let mut node = Node::start(&url, &data, 1, "hang", &format!("runner-{round}"), lease)?;
        node.expect("ready")?;
        node.go()?;
        let job = watcher
            .submit(&format!("-f lavfi -i testsrc=duration=1 out/c{round}.mp4"), jobs::SubmitOptions::default())
            .await?;
        wait_status(watcher.store(), &job.id, |j| j.status == JobStatus::Running).await?;
        tokio::time::sleep(Duration::from_millis(1300 + 250 * round as u64)).await;
        let asked = unix_micros();
        let store = Arc::clone(watcher.store());
        store.cancel(&job.id).await?;
        let seen: u128 = node.expect("cancelled")?.trim_start_matches("cancelled ").parse()?;
        cancels.push((seen.saturating_sub(asked)) as f64 / 1e3);
        wait_status(watcher.store(), &job.id, |j| j.status == JobStatus::Cancelled).await?;
        node.stop();
    }
    println!(
        "\n## A dead node's job back in the queue (lease {lease} s; SIGKILL of the worker process), {rounds} rounds\n"
    );
    let shown: Vec<String> = requeues.iter().map(|r| format!("{r:.2} s")).collect();
    println!("| median | lease + | runs |");
    println!("|---|---|---|");
    let m = median(&mut requeues);
    println!("| {m:.2} s | {:.2} s | {} |", m - lease as f64, shown.join(", "));
    println!("\n## Cancel on one node -> the runner on another node told, {rounds} rounds\n");
    let shown: Vec<String> = cancels.iter().map(|r| format!("{r:.0} ms")).collect();
    println!("| median | max | runs |");
    println!("|---|---|---|");
    println!("| {:.0} ms | {:.0} ms | {} |", median(&mut cancels), percentile(&mut cancels, 100.0), shown.join(", "));

    // Database writes per running job.
    let url = fresh_postgres().await;
    let admin = sqlx::PgPool::connect(&url).await?;
    let submitter = jobs_on(&url, "writes", Duration::from_secs(30), &data, Bench::Noop, 0, None).await?;
    sqlx::raw_sql(COUNT_ROWS).execute(&admin).await?;
    let running = 4;
    let mut node = Node::start(&url, &data, running, "hang", "busy", 30)?;
    node.expect("ready")?;
    node.go()?;
    let mut ids = Vec::new();
    for i in 0..running {
        ids.push(
            submitter
                .submit(&format!("-f lavfi -i testsrc=duration=1 out/w{i}.mp4"), jobs::SubmitOptions::default())
                .await?
                .id,
        );
    }
    for id in &ids {
        wait_status(submitter.store(), id, |j| j.status == JobStatus::Running).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Writing transactions: each takes a transaction id (reads take none). Row writes: the
    // cumulative statistics, which each server process flushes about once a second while busy.
    let xid = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT txid_current()").fetch_one(&pool).await
    };
    let rows = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0)::BIGINT FROM pg_stat_user_tables \
             WHERE relname <> 'bench_rows'",
        )
        .fetch_one(&pool)
        .await
    };
    let counted = |pool: sqlx::PgPool| async move {
        sqlx::query_as::<_, (String, i64)>("SELECT tbl, n FROM bench_rows ORDER BY tbl").fetch_all(&pool).await
    };
    let counting = reset_statements(&url).await;
    let (before, rows_before) = (xid(admin.clone()).await?, rows(admin.clone()).await?);
    let counted_before = counted(admin.clone()).await?;
    tokio::time::sleep(Duration::from_secs(window)).await;
    let counted_after = counted(admin.clone()).await?;
    let (after, rows_after) = (xid(admin.clone()).await?, rows(admin.clone()).await?);
    node.stop();
    let statements = if counting { Some(statements(&url, running * window as usize).await?) } else { None };
    // Rows changed by statements (exact, unlike the cumulative statistics): every write of
    // either node during the window.
    let written: Option<i64> = if counting {
        let pool = sqlx::PgPool::connect(&url).await?;
        Some(
            sqlx::query_scalar(
                "SELECT COALESCE(SUM(rows), 0)::BIGINT FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   AND query ~* '\\m(insert|update|delete)\\M'",
            )
            .fetch_one(&pool)
            .await?,
        )
    } else {
        None
    };
    // Our own two `txid_current()` calls each took an id.
    let writes = (after - before - 1) as f64;
    let row_writes = (rows_after - rows_before) as f64;
    let per = |n: f64| n / (running as f64 * window as f64);
    let by_table: Vec<(String, i64)> = counted_after
        .iter()
        .map(|(table, n)| {
            let was = counted_before.iter().find(|(t, _)| t == table).map_or(0, |(_, n)| *n);
            (table.clone(), n - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let exact: i64 = by_table.iter().map(|(_, n)| n).sum();
    let shown: Vec<String> = by_table.iter().map(|(table, n)| format!("{table} {n}")).collect();
    println!(
        "\n## Database writes while {running} jobs run on one worker node (in the node registry) for {window} s (lease 30 s)\n"
    );
    println!(
        "**Rows written: {exact}, {:.3} per running job per second** (counted exactly by a trigger on every table; by table: {}).\n",
        per(exact as f64),
        if shown.is_empty() { "none".to_owned() } else { shown.join(", ") }
    );
    println!(
        "| writing transactions | per job per second | rows written (statistics, up to 1 s late at each end) | per job per second |"
    );
    println!("|---|---|---|---|");
    println!("| {writes:.0} | {:.2} | {row_writes:.0} | {:.2} |", per(writes), per(row_writes));
    if let Some(written) = written {
        println!(
            "\nRows reported by writing statements meanwhile (pg_stat_statements; a statement that writes in a CTE counts the rows it returns): {written}, {:.2} per job per second.",
            per(written as f64)
        );
    }
    if let Some(statements) = statements {
        println!("\nStatements meanwhile (pg_stat_statements; both nodes: the bench's and the worker's):\n");
        println!("| calls per job per second | statement |");
        println!("|---|---|");
        for s in
            statements.iter().filter(|s| !s.query.contains("txid_current") && !s.query.contains("pg_stat_user_tables"))
        {
            let query: String = s.query.chars().take(110).collect();
            println!("| {:.3} | `{}` |", s.calls, query.replace('|', "\\|"));
        }
    }
    Ok(())
}

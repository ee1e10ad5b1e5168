//! `cargo xtask bench ...`: benchmarks that start the real server and measure it against a peer
//! in the same run, on loopback, every loop bounded in count and time. `docs/benchmarks.md` says
//! how to read and reproduce them.
//!
//! - `overhead [N] [--clip small|tiny] [--batch B] [--concurrency C] [--rounds R] [--nodes K]`: R rounds of N tiny
//!   transcodes through the server (or a cluster of K nodes on PostgreSQL) versus the same ffmpeg commands run
//!   directly with as many at once, in pairs of batches of B alternating which side goes first; the verdict from
//!   the pairs' ratios' confidence interval ([`overhead`]).
//! - `api [--seconds S] [--connections C] [--jobs J]`: `POST /jobs` and `GET /jobs/{id}` requests
//!   per second with wrk, and resident memory idle and after J stored jobs, for this server and
//!   the original Python design ([`api`]).
//! - `store [--jobs N] [--concurrency C] [--rounds R]`: inserts per second into the SQLite store
//!   with group commit against one statement per insert (the `jobs` crate's
//!   `insert_throughput` example, built in release mode and run here).
//! - `webhooks [--events N] [--backoff D]`: N webhook events to a local receiver that fails a
//!   third of first attempts, with a `kill -9` of the server half-way ([`webhooks`]).
//! - `sse [--subscribers N] [--all M] [--rounds R] [--video-seconds S] [--stats-period P]`: N
//!   server-sent event subscribers on one running job plus M on `/events`, read by one epoll
//!   thread: final status seen, RSS growth, run time against no subscribers, CPU time of the
//!   server, ffmpeg and the client, progress fan-out latency ([`sse`]).
//! - `cluster [--jobs N] [--processes 1,2,4,8] [--slots S] [--rounds R] [--samples K] [--lease L]
//!   [--window W] [--test-settings] [--capacity-only]`: the queue of a PostgreSQL cluster with worker processes whose runner starts
//!   no ffmpeg: capacity (claim -> finish jobs/s) per number of processes and SQLite beside it,
//!   submit -> claim on an idle cluster, dead-node requeue, cancel across nodes, database writes
//!   per running job (the `jobs` crate's `cluster_bench` example, built in release mode).
//! - `files [--size-mib N] [--rounds R] [--data-dir DIR]`: download and upload of an N MiB file
//!   against raw loopback TCP copies, and the server's RSS growth ([`files`]).

use std::str::FromStr;
use std::time::Duration;

use crate::Result;

mod api;
mod client;
mod files;
mod overhead;
mod server;
mod sse;
mod subscribers;
mod webhooks;

const USAGE: &str = "usage: cargo xtask bench overhead [N=40] [--clip small|tiny] [--batch B=8] [--concurrency C=1] [--rounds R=8] [--database-url URL] [--nodes K=1] [--server-bin PATH] [--no-build]\n       \
                     cargo xtask bench api [--seconds S=10] [--connections C=64] [--jobs J=100000] [--no-original] [--original-worker parked|run] [--database-url URL] [--no-build]\n       \
                     cargo xtask bench store [--jobs N=20000] [--concurrency C=64] [--rounds R=5]\n       \
                     cargo xtask bench webhooks [--events N=10000] [--backoff D=1s] [--no-build]\n       \
                     cargo xtask bench sse [--subscribers N=1000] [--all M=100] [--rounds R=5] [--video-seconds S=120] [--stats-period P,...=0.05,0.5] [--client-nice N=0] [--client-idle] [--client-pause-ms MS=1] [--ffmpeg-nice N=0] [--server-bin PATH] [--no-build]\n       \
                     cargo xtask bench cluster [--jobs N=3000] [--processes 1,2,4,8] [--slots S=4] [--rounds R=3] [--samples K=40] [--lease L=3] [--window W=20] [--test-settings] [--capacity-only]\n       \
                     cargo xtask bench files [--size-mib N=1024] [--rounds R=5] [--data-dir DIR] [--no-build]";

/// Dispatches `bench <name> [args]`.
pub(crate) fn main(args: &[&str]) -> Result {
    match args {
        ["overhead", rest @ ..] => overhead::main(rest),
        ["api", rest @ ..] => api::main(rest),
        ["store", rest @ ..] => store(rest),
        ["webhooks", rest @ ..] => webhooks::main(rest),
        ["sse", rest @ ..] => sse::main(rest),
        ["cluster", rest @ ..] => example("cluster", "cluster_bench", rest),
        ["files", rest @ ..] => files::main(rest),
        _ => Err(USAGE.into()),
    }
}

/// `bench store`: builds the `jobs` crate's `insert_throughput` example and runs it with `args`.
fn store(args: &[&str]) -> Result {
    example("store", "insert_throughput", args)
}

/// Builds the `jobs` crate's example `name` in release mode and runs it with `args`.
fn example(bench: &str, name: &str, args: &[&str]) -> Result {
    let mut cargo = vec!["run", "--release", "--quiet", "--package", "jobs", "--example", name, "--"];
    cargo.extend_from_slice(args);
    eprintln!("bench {bench}: {}\nload average (1, 5, 15 min) at the start: {}", machine(), load_average());
    crate::run("cargo", &cargo)
}

/// Command-line arguments of one bench: `--name value` flags, `--name` switches and positionals.
struct Args<'a> {
    rest: Vec<&'a str>,
}

impl<'a> Args<'a> {
    fn new(args: &[&'a str]) -> Self {
        Self { rest: args.to_vec() }
    }

    /// Removes `--name value` (or `--name=value`) and parses the value; `default` when absent.
    fn value<T: FromStr>(&mut self, name: &str, default: T) -> Result<T> {
        let prefixed = format!("{name}=");
        let Some(pos) = self.rest.iter().position(|a| *a == name || a.starts_with(&prefixed)) else {
            return Ok(default);
        };
        let arg = self.rest.remove(pos);
        let raw = match arg.strip_prefix(&prefixed) {
            Some(v) => v,
            None if pos < self.rest.len() => self.rest.remove(pos),
            None => return Err(format!("{name} needs a value\n{USAGE}").into()),
        };
        raw.parse().map_err(|_| format!("{name}: `{raw}` is not a valid value\n{USAGE}").into())
    }

    /// Removes the switch `--name`; whether it was there.
    fn switch(&mut self, name: &str) -> bool {
        let found = self.rest.iter().position(|a| *a == name);
        found.map(|pos| self.rest.remove(pos)).is_some()
    }

    /// Removes and parses the next positional argument; `default` when there is none.
    fn positional<T: FromStr>(&mut self, what: &str, default: T) -> Result<T> {
        let Some(pos) = self.rest.iter().position(|a| !a.starts_with("--")) else {
            return Ok(default);
        };
        let raw = self.rest.remove(pos);
        raw.parse().map_err(|_| format!("{what}: `{raw}` is not a valid value\n{USAGE}").into())
    }

    /// Fails on anything left over.
    fn finish(self) -> Result {
        match self.rest.first() {
            None => Ok(()),
            Some(a) => Err(format!("unexpected argument `{a}`\n{USAGE}").into()),
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Interval {
    low: f64,
    high: f64,
}

/// The distribution-free confidence interval of the median of `values`, at `level` (0.95) or
/// more: the k-th smallest and the k-th largest value, with k the largest rank for which the
/// binomial(n, 1/2) distribution puts at most `1 - level` in its two tails below k (each value
/// is above the median with probability 1/2, whatever the distribution). Nothing is assumed of
/// the distribution, and one outlier moves the bounds by one rank at most. `None` when there
/// are too few values for any interval at that level (fewer than 6 at 0.95).
fn median_interval(values: &[f64], level: f64) -> Option<Interval> {
    let n = values.len();
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    // P(X <= j) for X ~ binomial(n, 1/2), term by term: ln C(n, j) + n ln(1/2).
    let ln_half_n = n as f64 * 0.5_f64.ln();
    let (mut ln_choose, mut below, mut k) = (0.0_f64, 0.0_f64, 0);
    for j in 0..n {
        below += (ln_choose + ln_half_n).exp();
        if 2.0 * below > 1.0 - level {
            break;
        }
        // The interval [x_(j+1), x_(n-j)] misses the median with probability 2 P(X <= j).
        k = j + 1;
        ln_choose += ((n - j) as f64).ln() - ((j + 1) as f64).ln();
    }
    (k > 0).then(|| Interval { low: sorted[k - 1], high: sorted[n - k] })
}

/// Seconds with millisecond precision, for tables.
fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// One line describing the machine: cores, CPU model, kernel, ffmpeg version.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // The version line is read by ffmpeg-core, the one place that parses it.
    let ffmpeg = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let outputs = ffmpeg_core::capabilities::CapabilityOutputs { version: &text, ..Default::default() };
            ffmpeg_core::capabilities::Capabilities::from_outputs(outputs).version().map(|v| format!("ffmpeg {v}"))
        })
        .unwrap_or_else(|| "ffmpeg not found".to_owned());
    format!("{cores} cores ({model}), Linux {}, {ffmpeg}", kernel.trim())
}

/// The 1, 5 and 15 minute load averages, from `/proc/loadavg` (other work on the machine skews
/// every figure).
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Writes `text` to stdout (the results; progress goes to stderr).
fn print(text: &str) -> Result {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_parse_flags_switches_and_positionals() -> Result {
        let mut a = Args::new(&["40", "--concurrency", "2", "--rounds=3", "--no-original"]);
        assert_eq!(a.value("--concurrency", 1usize)?, 2);
        assert_eq!(a.value("--rounds", 5usize)?, 3);
        assert_eq!(a.value("--batch", 8u64)?, 8);
        assert!(a.switch("--no-original"));
        assert_eq!(a.positional("N", 10usize)?, 40);
        a.finish()
    }

    #[test]
    fn args_reject_leftovers_and_bad_values() {
        let mut a = Args::new(&["--seconds", "x"]);
        assert!(a.value("--seconds", 10u64).is_err());
        assert!(Args::new(&["--what"]).finish().is_err());
    }

    #[test]
    fn median_interval_takes_the_binomial_ranks() {
        // n = 40: the 14th and 27th of the sorted values (a table's 95 % ranks; 96.2 % coverage).
        let values: Vec<f64> = (1..=40).rev().map(f64::from).collect();
        assert_eq!(median_interval(&values, 0.95), Some(Interval { low: 14.0, high: 27.0 }));
        // n = 6: the extremes (coverage 1 - 2/64); n = 5 has no 95 % interval (1 - 2/32 < 0.95).
        let six = [6.0, 1.0, 5.0, 2.0, 4.0, 3.0];
        assert_eq!(median_interval(&six, 0.95), Some(Interval { low: 1.0, high: 6.0 }));
        assert_eq!(median_interval(&six[..5], 0.95), None);
        assert_eq!(median_interval(&[], 0.95), None);
        // n = 100: ranks 40 and 61.
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(median_interval(&hundred, 0.95), Some(Interval { low: 40.0, high: 61.0 }));
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < 1e-9);
        assert!((median(&[4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < 1e-9);
        assert!(median(&[]).abs() < 1e-9);
    }
}

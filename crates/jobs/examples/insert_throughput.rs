//! Inserts per second into a [`SqliteStore`] file with group commit (the default, up to 256
//! inserts per statement) against one statement per insert (`max_insert_batch(1)`), side by
//! side in one run: `cargo xtask bench store` runs this (see docs/benchmarks.md).
//!
//! Each of `--concurrency` tasks inserts jobs one after another, as that many HTTP clients
//! submitting at once would; every round opens a fresh database for each variant, in
//! alternating order, so both see the same machine load.
//!
//! Usage: `insert_throughput [--jobs N=20000] [--concurrency C=64] [--rounds R=5]`.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs::{JobStore, SqliteOptions, SqliteStore, SubmitOptions};

/// One measured run: inserts per second, and the median and 99th percentile of one insert's
/// latency.
struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| -> Result<usize, String> {
        match args.iter().position(|a| a == name) {
            None => Ok(default),
            Some(i) => {
                args.get(i + 1).and_then(|v| v.parse().ok()).ok_or_else(|| format!("{name} needs a whole number"))
            }
        }
    };
    let jobs = flag("--jobs", 20_000)?;
    let concurrency = flag("--concurrency", 64)?.max(1);
    let rounds = flag("--rounds", 5)?.max(1);

    let variants = [
        ("group commit (256)", SqliteOptions::default()),
        ("one statement per insert", SqliteOptions::default().max_insert_batch(1)),
    ];
    let mut results: Vec<Vec<Run>> = variants.iter().map(|_| Vec::new()).collect();
    println!("{jobs} inserts per run, {concurrency} concurrent submitters, {rounds} rounds\n");
    println!("| round | variant | inserts/s | p50 insert | p99 insert |");
    println!("|---|---|---|---|---|");
    for round in 0..rounds {
        // Alternate which variant runs first.
        let order: Vec<usize> = if round % 2 == 0 { vec![0, 1] } else { vec![1, 0] };
        for v in order {
            let (name, options) = variants[v];
            let run = measure(options, jobs, concurrency).await?;
            println!(
                "| {} | {name} | {:.0} | {:.3} ms | {:.3} ms |",
                round + 1,
                run.per_second,
                run.p50.as_secs_f64() * 1e3,
                run.p99.as_secs_f64() * 1e3
            );
            results[v].push(run);
        }
    }
    let median_rate = |runs: &[Run]| median(runs.iter().map(|r| r.per_second).collect());
    let batched = median_rate(&results[0]);
    let single = median_rate(&results[1]);
    let round_ratios = median(results[0].iter().zip(&results[1]).map(|(b, s)| b.per_second / s.per_second).collect());
    println!("\nmedian inserts/s: group commit {batched:.0}, one statement per insert {single:.0}");
    println!("ratio of medians {:.2}x, median of per-round ratios {round_ratios:.2}x", batched / single);
    Ok(())
}

/// Opens a fresh database with `options` and inserts `jobs` jobs from `concurrency` tasks.
async fn measure(options: SqliteOptions, jobs: usize, concurrency: usize) -> Result<Run, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open_path_with(&dir.path().join("jobs.db"), options).await?);
    let per_task = jobs.div_ceil(concurrency);
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let command = format!("-i in/{t}-{i}.mp4 -c:v libx264 -preset veryfast out/{t}-{i}.mp4");
                    let began = Instant::now();
                    store.insert(command, SubmitOptions::default()).await?;
                    latencies.push(began.elapsed());
                }
                Ok::<_, jobs::StoreError>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(per_task * concurrency);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = start.elapsed();
    store.close().await;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok(Run { per_second: latencies.len() as f64 / elapsed.as_secs_f64(), p50: at(0.5), p99: at(0.99) })
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

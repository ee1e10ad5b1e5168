//! `bench webhooks [--events N=10000] [--backoff D=1s] [--no-build]`: N job events delivered to a
//! local receiver that answers 500 to a third of first attempts, with a `kill -9` of the server
//! half-way through and a restart on the same database.
//!
//! The server runs no job (`--concurrency 0`); each event is a `job.cancelled`, written by the
//! cancel of a queued job in the cancel's own transaction (the outbox), so the bench measures
//! the outbox and the dispatcher, not ffmpeg. The receiver (threads on a std `TcpListener`,
//! HTTP/1.1 keep-alive) logs every request with its `webhook-id` and the time it answered.
//! Checked at the end, from the receiver's log and each job's `GET /jobs/{id}/webhooks`:
//! every event delivered (a 2xx answered and `delivered` recorded), none sent again after the
//! attempt that got its recorded 2xx, and none lost across the kill.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::server::{Server, WorkerConfig};
use super::{Args, load_average, machine, print, secs};
use crate::Result;

/// A fixed secret: the bench checks delivery, not signatures (the tests do).
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD2y7cN1OBvg0=";

/// One request the receiver answered.
#[derive(Debug, Clone)]
struct Hit {
    id: String,
    /// When it was answered, unix microseconds.
    at_us: i64,
    status: u16,
}

fn unix_us(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Whether this id's first attempt is answered 500: a third of the ids, by their last hex digits.
fn fails_first(id: &str) -> bool {
    let tail = &id[id.len().saturating_sub(8)..];
    u32::from_str_radix(tail, 16).is_ok_and(|n| n % 3 == 0)
}

fn serve_connection(stream: TcpStream, hits: &Mutex<Vec<Hit>>, seen: &Mutex<HashMap<String, u32>>) -> Result {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let (mut length, mut id) = (0usize, String::new());
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse()?,
                    "webhook-id" => id = value.trim().to_owned(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let first = {
            let mut seen = seen.lock().map_err(|_| "poisoned")?;
            let n = seen.entry(id.clone()).or_insert(0);
            *n += 1;
            *n == 1
        };
        let status = if first && fails_first(&id) { 500 } else { 200 };
        let reason = if status == 200 { "OK" } else { "Internal Server Error" };
        writer.write_all(format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\n\r\n").as_bytes())?;
        writer.flush()?;
        hits.lock().map_err(|_| "poisoned")?.push(Hit { id, at_us: unix_us(SystemTime::now()), status });
    }
}

/// The receiver: its URL and its log.
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    fn start() -> Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let log = Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(std::result::Result::ok) {
                let (log, seen) = (Arc::clone(&log), Arc::clone(&seen));
                std::thread::spawn(move || {
                    let _ = serve_connection(stream, &log, &seen);
                });
            }
        });
        Ok(Receiver { url, hits })
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Distinct ids answered 2xx.
    fn delivered(&self) -> usize {
        let hits = self.hits();
        hits.iter().filter(|h| h.status == 200).map(|h| h.id.as_str()).collect::<std::collections::HashSet<_>>().len()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Submits a job with the receiver as its webhook (only `job.cancelled`) and cancels it.
fn submit_and_cancel(agent: &ureq::Agent, base: &str, url: &str) -> Result<String> {
    let body = serde_json::json!({"command": "-i in.mp4 out.mp4", "webhook_url": url,
                                  "webhook_events": ["job.cancelled"]})
    .to_string();
    let mut resp = agent.post(format!("{base}/jobs")).header("content-type", "application/json").send(body.as_str())?;
    let text = resp.body_mut().read_to_string()?;
    if resp.status() != 201 {
        return Err(format!("POST /jobs answered {}: {text}", resp.status()).into());
    }
    let job: serde_json::Value = serde_json::from_str(&text)?;
    let id = job["id"].as_str().ok_or("no id")?.to_owned();
    let mut resp = agent.post(format!("{base}/jobs/{id}/cancel")).send_empty()?;
    let text = resp.body_mut().read_to_string()?;
    if resp.status() != 200 {
        return Err(format!("cancel answered {}: {text}", resp.status()).into());
    }
    Ok(id)
}

/// A delivery as recorded by the server.
struct Recorded {
    id: String,
    state: String,
    /// (sent at, unix µs; status code) of every recorded attempt.
    attempts: Vec<(i64, Option<u64>)>,
}

fn recorded(agent: &ureq::Agent, base: &str, job: &str) -> Result<Vec<Recorded>> {
    let mut resp = agent.get(format!("{base}/jobs/{job}/webhooks")).call()?;
    let text = resp.body_mut().read_to_string()?;
    let list: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    list.iter()
        .map(|d| {
            let attempts = d["attempts"]
                .as_array()
                .ok_or("no attempts")?
                .iter()
                .map(|a| {
                    let at = a["at"].as_str().and_then(super::client::unix_seconds).unwrap_or(0.0);
                    ((at * 1e6) as i64, a["status_code"].as_u64())
                })
                .collect();
            Ok(Recorded {
                id: d["id"].as_str().ok_or("no id")?.to_owned(),
                state: d["state"].as_str().ok_or("no state")?.to_owned(),
                attempts,
            })
        })
        .collect()
}

pub(super) fn main(args: &[&str]) -> Result {
    let mut args = Args::new(args);
    let events: usize = args.value("--events", 10_000)?;
    let backoff: String = args.value("--backoff", "1s".to_owned())?;
    let build = !args.switch("--no-build");
    args.finish()?;
    eprintln!("bench webhooks: {}\nload average (1, 5, 15 min) at the start: {}", machine(), load_average());
    let bin = super::server::release_binary(build)?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let database_url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let log = dir.path().join("server.log");
    let config = WorkerConfig::new(&bin, &data, &database_url, &log);
    let extra = [
        "--webhook-secret",
        SECRET,
        "--webhook-allow-private",
        "--webhook-backoff",
        &backoff,
        "--webhook-timeout",
        "5s",
    ];
    let receiver = Receiver::start()?;
    let agent = agent();

    let start = Instant::now();
    let mut server = Server::ffmpeg_worker_with(&config, &extra)?;
    let mut jobs = Vec::with_capacity(events);
    let kill_at = events / 2;
    let mut killed = None;
    for n in 0..events {
        if n == kill_at {
            let before = receiver.delivered();
            server.kill_9()?;
            let restart = Instant::now();
            server = Server::ffmpeg_worker_with(&config, &extra)?;
            killed = Some((before, restart.elapsed()));
            eprintln!("kill -9 after {n} events ({before} delivered); restarted in {}", secs(restart.elapsed()));
        }
        jobs.push(
            submit_and_cancel(&agent, server.base(), &receiver.url)
                .map_err(|e| format!("{e}\n{}", server.log_tail()))?,
        );
    }
    let submitted = start.elapsed();
    eprintln!("{events} events written in {}; waiting for delivery", secs(submitted));
    let deadline = Instant::now() + Duration::from_secs(900);
    while receiver.delivered() < events {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {events} delivered after 15 min\n{}",
                receiver.delivered(),
                server.log_tail()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let all_delivered = start.elapsed();
    // Recorded as delivered (the answer may still be on its way into the store).
    let mut records: Vec<Recorded> = Vec::new();
    let settle = Instant::now() + Duration::from_secs(120);
    for job in &jobs {
        loop {
            let r = recorded(&agent, server.base(), job)?;
            if r.len() == 1 && r[0].state != "pending" || Instant::now() > settle {
                records.extend(r);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Nothing more may arrive: wait past a few backoffs and polls.
    let hits_then = receiver.hits().len();
    std::thread::sleep(Duration::from_secs(5));
    let hits = receiver.hits();
    let late = hits.len() - hits_then;

    let mut by_id: HashMap<&str, Vec<&Hit>> = HashMap::new();
    for h in &hits {
        by_id.entry(h.id.as_str()).or_default().push(h);
    }
    let (mut not_delivered, mut resent_after_recorded, mut resent_unrecorded) = (0usize, 0usize, 0usize);
    let mut max_attempts = 0;
    for r in &records {
        max_attempts = max_attempts.max(r.attempts.len());
        let ok = r.attempts.iter().rev().find(|(_, code)| *code == Some(200));
        let (Some((sent_at, _)), "delivered") = (ok, r.state.as_str()) else {
            not_delivered += 1;
            continue;
        };
        let received = by_id.get(r.id.as_str()).cloned().unwrap_or_default();
        // The request that got the recorded 2xx: the first 2xx the receiver answered after it was sent.
        let recorded_hit = received.iter().position(|h| h.status == 200 && h.at_us >= *sent_at - 1_000);
        match recorded_hit {
            Some(i) => {
                resent_after_recorded += received.len() - i - 1;
                resent_unrecorded += received[..i].iter().filter(|h| h.status == 200).count();
            }
            None => not_delivered += 1,
        }
    }
    let lost = events - records.iter().filter(|r| r.state == "delivered").count();
    let failed_first = hits.iter().filter(|h| h.status == 500).count();
    let (killed_delivered, restart) = killed.unwrap_or((0, Duration::ZERO));
    print(&format!(
        "\n| measure | value |\n|---|---|\n\
         | events (job.cancelled, one per job) | {events} |\n\
         | requests received | {} |\n\
         | answered 500 (first attempts) | {failed_first} ({:.1} % of events) |\n\
         | kill -9 at event | {kill_at} ({killed_delivered} delivered by then; restart {}) |\n\
         | all written (submit + cancel, sequential) | {} |\n\
         | all delivered | {} ({:.0} events/s overall) |\n\
         | deliveries recorded `delivered` | {} |\n\
         | not delivered / lost | {not_delivered} / {lost} |\n\
         | sent again after their recorded 2xx | {resent_after_recorded} |\n\
         | 2xx answered but unrecorded at the kill, sent again (at least once) | {resent_unrecorded} |\n\
         | requests after everything was delivered (5 s) | {late} |\n\
         | most attempts of one delivery | {max_attempts} |\n",
        hits.len(),
        100.0 * failed_first as f64 / events as f64,
        secs(restart),
        secs(submitted),
        secs(all_delivered),
        events as f64 / all_delivered.as_secs_f64(),
        records.iter().filter(|r| r.state == "delivered").count(),
    ))?;
    drop(server);
    if lost > 0 || not_delivered > 0 || resent_after_recorded > 0 || late > 0 {
        return Err("webhook delivery broke a promise (see the table)".into());
    }
    Ok(())
}

//! `submit` sends an `Idempotency-Key` and sends the submission again with it when the answer
//! is lost: through a proxy that closes the connection once the server answered the first
//! `POST /jobs` (the job is stored, the client never hears of it), the client retries and gets
//! that job, and the server holds one job.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::cli::{Run, is_job_id, run_with};
use crate::support::{Options, Server};

/// A request the proxy passed on: its request line and its `Idempotency-Key`.
type Seen = (String, Option<String>);

/// A proxy in front of a server, one request per connection: it forwards each request and
/// hands back the answer, except for the first `POST /jobs`, whose connection it closes once
/// the server has answered (so the job is stored, and the client gets no answer).
struct LosingProxy {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl LosingProxy {
    fn start(server: &Server) -> LosingProxy {
        let upstream = server.base.strip_prefix("http://").unwrap().to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        // Lives as long as the test process (blocked in `accept` once the test is done).
        std::thread::spawn(move || {
            let mut lost = false;
            for client in listener.incoming() {
                let Ok(mut client) = client else { continue };
                let Some((head, body)) = read_request(&mut client) else { continue };
                let line = head.lines().next().unwrap_or_default().to_owned();
                let key = head.lines().find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("idempotency-key").then(|| value.trim().to_owned())
                });
                record.lock().unwrap().push((line.clone(), key));
                let answer = forward(&upstream, &head, &body);
                if !lost && line.starts_with("POST /jobs ") {
                    lost = true;
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let _ = client.write_all(&answer);
                let _ = client.shutdown(Shutdown::Both);
            }
        });
        LosingProxy { base, seen }
    }

    /// The `POST /jobs` requests it passed on, with their keys.
    fn posts(&self) -> Vec<Option<String>> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|(line, _)| line.starts_with("POST /jobs ")).map(|(_, key)| key.clone()).collect()
    }
}

/// Reads one request: its head (request line and headers, without the blank line) and its body
/// (by `Content-Length`).
fn read_request(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    client.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = client.read(&mut buf).ok().filter(|n| *n > 0)?;
        bytes.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, value)| value.trim().parse::<usize>().unwrap());
    let mut body = bytes[end + 4..].to_vec();
    while body.len() < length {
        let n = client.read(&mut buf).ok().filter(|n| *n > 0)?;
        body.extend_from_slice(&buf[..n]);
    }
    Some((head, body))
}

/// Sends the request to `upstream` on a connection of its own (`Connection: close`) and
/// returns the whole answer.
fn forward(upstream: &str, head: &str, body: &[u8]) -> Vec<u8> {
    let mut server = TcpStream::connect(upstream).unwrap();
    let mut request: String = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    request.push_str("Connection: close\r\n\r\n");
    server.write_all(request.as_bytes()).unwrap();
    server.write_all(body).unwrap();
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).unwrap();
    answer
}

/// The jobs the server holds (`list --json`, straight to the server).
fn jobs_of(server: &Server) -> Vec<Value> {
    let run = run_with(&[], &["list", "--json", "--url", &server.base]);
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str::<Value>(&run.stdout).unwrap().as_array().unwrap().clone()
}

fn submit_through(proxy: &LosingProxy, extra: &[&str]) -> Run {
    let mut args = vec!["submit", "--url", &proxy.base];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "-i", "in.mp4", "out.mp4"]);
    run_with(&[], &args)
}

#[test]
fn a_submission_whose_answer_was_lost_is_sent_again_with_its_key_and_makes_one_job() {
    let server = Server::start_with(Options { concurrency: 0, ..Options::default() });
    let proxy = LosingProxy::start(&server);
    let run = submit_through(&proxy, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let id = run.stdout.trim();
    assert!(is_job_id(id), "{run:?}");
    assert_eq!(run.stderr.matches("sending it again in").count(), 1, "{run:?}");
    assert!(run.stderr.contains("the server already had this submission (Idempotency-Key "), "{run:?}");

    // Two submissions reached the server, with one fresh random key.
    let posts = proxy.posts();
    assert_eq!(posts.len(), 2, "{posts:?}");
    let key = posts[0].clone().expect("the first submission has a key");
    assert!(key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    assert_eq!(posts[1].as_deref(), Some(key.as_str()), "the retry reuses the key");
    // One job: the one the client printed, with that key.
    let jobs = jobs_of(&server);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!((jobs[0]["id"].as_str(), jobs[0]["idempotency_key"].as_str()), (Some(id), Some(key.as_str())));

    // A fresh submission gets a fresh key (and a new job).
    let again = run_with(&[], &["submit", "--url", &server.base, "--", "-i", "in.mp4", "out.mp4"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_ne!(again.stdout.trim(), id);
    assert_eq!(jobs_of(&server).len(), 2);
}

#[test]
fn without_retries_a_lost_answer_fails_though_the_job_was_stored() {
    let server = Server::start_with(Options { concurrency: 0, ..Options::default() });
    let proxy = LosingProxy::start(&server);
    let run = submit_through(&proxy, &["--retries", "0"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.is_empty() && run.stderr.contains("cannot reach the server"), "{run:?}");
    assert_eq!(proxy.posts().len(), 1);
    // The job exists: what a client without a key could not know.
    assert_eq!(jobs_of(&server).len(), 1);
}

#[test]
fn a_script_chooses_its_key_and_running_it_again_gives_the_same_job() {
    let server = Server::start_with(Options { concurrency: 0, ..Options::default() });
    let submit = |key: &str, output: &str| {
        run_with(&[], &["submit", "--idempotency-key", key, "--url", &server.base, "--", "-i", "in.mp4", output])
    };
    let first = submit("render-a-42", "out.mp4");
    assert_eq!(first.code, 0, "{first:?}");
    assert!(!first.stderr.contains("already had"), "{first:?}");
    let again = submit("render-a-42", "out.mp4");
    assert_eq!((again.code, again.stdout.trim()), (0, first.stdout.trim()), "{again:?}");
    assert!(again.stderr.contains("already had this submission (Idempotency-Key render-a-42)"), "{again:?}");
    let jobs = jobs_of(&server);
    assert_eq!((jobs.len(), jobs[0]["idempotency_key"].as_str()), (1, Some("render-a-42")));

    // The key with another command: refused, naming the job; no retry.
    let other = submit("render-a-42", "other.mp4");
    assert_eq!(other.code, 2, "{other:?}");
    assert!(other.stderr.contains(first.stdout.trim()) && other.stderr.contains("422"), "{other:?}");
    assert!(!other.stderr.contains("sending it again"), "{other:?}");
    // Not a key: refused by the server, naming the header.
    let bad = submit("two words", "out.mp4");
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("Idempotency-Key header"), "{bad:?}");
    assert_eq!(jobs_of(&server).len(), 1);
}

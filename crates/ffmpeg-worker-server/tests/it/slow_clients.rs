//! Slow, idle and half-open clients against real sockets: the connection loop in-process on
//! 127.0.0.1:0 (`connections::serve`), and the real binary with a lowered open-file limit.

use std::time::{Duration, Instant};

use ffmpeg_worker_server::connections::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{ConnectionLoop, Db, Server, Store};

async fn start(limits: ConnectionLimits) -> ConnectionLoop {
    ConnectionLoop::start(limits, ffmpeg_worker_server::AppSettings::default()).await
}

/// Reads until the server closes the connection (or `deadline` passes: a failure).
async fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(deadline, stream.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {deadline:?}; got {:?}",
        String::from_utf8_lossy(&got)
    );
    String::from_utf8_lossy(&got).into_owned()
}

/// Sends one request on a fresh connection and returns the whole answer (`Connection: close`).
async fn request(addr: std::net::SocketAddr, head: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    read_until_closed(&mut stream, Duration::from_secs(30)).await
}

const HEALTH: &str = "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

fn short(limits: ConnectionLimits) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_millis(500),
        body_idle_timeout: Duration::from_millis(500),
        ..limits
    }
}

#[tokio::test]
async fn half_sent_headers_and_idle_keep_alive_connections_are_closed() {
    let server = start(short(ConnectionLimits::default())).await;
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n").await.unwrap();
    read_until_closed(&mut half, Duration::from_secs(30)).await;

    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut idle, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "the request was answered, then the idle connection closed: {answer}");
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_cut_but_a_slow_steady_one_passes() {
    let server = start(short(ConnectionLimits::default())).await;
    let mut liar = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    liar.write_all(format!("{head}{{\"command\":").as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut liar, Duration::from_secs(30)).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "cut with a client error or closed: {answer}");
    if !answer.is_empty() {
        assert!(answer.contains("application/problem+json"), "{answer}");
    }

    // Ten chunks, each well within the idle timeout, that together take longer than it.
    let body = format!("{{\"command\": \"-i in.mp4 out.mp4\", \"metadata\": {{\"k\": \"{}\"}}}}", "v".repeat(900));
    let limits = ConnectionLimits { body_idle_timeout: Duration::from_secs(2), ..ConnectionLimits::default() };
    let server = start(limits).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    for chunk in body.as_bytes().chunks(body.len().div_ceil(10)) {
        slow.write_all(chunk).await.unwrap();
        // Pacing the upload (not synchronisation): each pause is far below the idle timeout.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let answer = read_until_closed(&mut slow, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "a steady upload passes: {answer}");
    assert!(started.elapsed() > Duration::from_secs(2), "the upload took longer than the idle timeout");
}

#[tokio::test]
async fn past_the_connection_limit_new_connections_get_a_503_problem() {
    let limits = ConnectionLimits {
        max_connections: 4,
        header_read_timeout: Duration::from_secs(120),
        ..ConnectionLimits::default()
    };
    let server = start(limits).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let answer = request(server.addr, HEALTH).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("/problems/overloaded"), "{answer}");
    // A connection that goes away frees its place.
    idle.pop();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = request(server.addr, HEALTH).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "no place freed: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The real binary with 256 open files at most, 400 idle connections: /health still answers
/// (the idle ones time out, the limit keeps accept away from EMFILE), and the server lives on.
#[tokio::test]
async fn many_idle_connections_under_a_low_file_limit_do_not_stop_health() {
    let wrapper = ["prlimit", "--nofile=256:256", "--"];
    if std::process::Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("SKIPPED: prlimit (util-linux) is not installed");
        return;
    }
    let extra = ["--max-connections", "150", "--header-read-timeout", "2s"];
    let server = Server::start_wrapped(&wrapper, tempfile::tempdir().unwrap(), Db::new(Store::Sqlite), &extra);
    let addr: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let mut idle = Vec::new();
    for _ in 0..400 {
        if let Ok(s) = TcpStream::connect(addr).await {
            idle.push(s);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = tokio::time::timeout(Duration::from_secs(10), request(addr, HEALTH)).await;
        if let Ok(answer) = &answer
            && answer.starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(Instant::now() < deadline, "/health never answered 200 while idle connections were open: {answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(idle);
    let answer = request(addr, HEALTH).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn probes_are_never_rate_limited() {
    let settings = ffmpeg_worker_server::AppSettings {
        rate_limit: Some(ffmpeg_worker_server::RateLimit::per_second(1).unwrap()),
        ..Default::default()
    };
    let server = ConnectionLoop::start(ConnectionLimits::default(), settings).await;
    let mut limited = 0;
    for _ in 0..20 {
        let answer = request(server.addr, HEALTH).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let answer = request(server.addr, "GET /jobs HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        if answer.starts_with("HTTP/1.1 429") {
            assert!(answer.contains("/problems/rate-limited"), "{answer}");
            limited += 1;
        }
    }
    assert!(limited > 0, "the API itself is rate-limited");
}

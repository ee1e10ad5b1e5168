//! Event streams over real sockets, as their writer sends them once it has taken the
//! connection over from hyper (`fanout`): the connection loop in-process on 127.0.0.1:0
//! (`connections::serve`), read by hand so that the framing is checked byte for byte (HTTP/1.1
//! chunks, an HTTP/1.0 body up to the close), and a subscriber that stops reading.

use std::time::Duration;

use ffmpeg_worker_server::connections::ConnectionLimits;
use jobs::{Job, Jobs, Progress, SubmitOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::ConnectionLoop;

async fn start() -> ConnectionLoop {
    ConnectionLoop::start(ConnectionLimits::default(), ffmpeg_worker_server::AppSettings::default()).await
}

async fn queued_job(jobs: &Jobs) -> Job {
    jobs.submit("-i a.mp4 b.mp4", SubmitOptions::default()).await.unwrap()
}

fn progress(frame: u64) -> Progress {
    Progress { frame: Some(frame), ..Progress::default() }
}

/// A client connection read by hand; every read is bounded by 60 s.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        Client { stream: TcpStream::connect(addr).await.unwrap(), buf: Vec::new() }
    }

    async fn send(&mut self, head: &str) {
        self.stream.write_all(head.as_bytes()).await.unwrap();
    }

    /// Reads more bytes; `false` at the end of the connection.
    async fn fill(&mut self) -> bool {
        self.buf.reserve(65536);
        let n = tokio::time::timeout(Duration::from_secs(60), self.stream.read_buf(&mut self.buf))
            .await
            .expect("nothing came within 60 s")
            .unwrap();
        n > 0
    }

    /// Everything up to and including `end`.
    async fn until(&mut self, end: &str) -> String {
        loop {
            if let Some(at) = self.buf.windows(end.len()).position(|w| w == end.as_bytes()) {
                let taken: Vec<u8> = self.buf.drain(..at + end.len()).collect();
                return String::from_utf8(taken).unwrap();
            }
            assert!(
                self.fill().await,
                "the connection ended before {end:?}; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// The next chunk of a chunked body (empty: the last chunk), checked to be well formed.
    async fn chunk(&mut self) -> String {
        let size = self.until("\r\n").await;
        let size = usize::from_str_radix(size.trim_end(), 16).unwrap();
        while self.buf.len() < size + 2 {
            assert!(self.fill().await, "the connection ended inside a chunk");
        }
        let data: Vec<u8> = self.buf.drain(..size).collect();
        assert_eq!(self.buf.drain(..2).collect::<Vec<u8>>(), b"\r\n", "a chunk ends with CRLF");
        String::from_utf8(data).unwrap()
    }

    /// Everything until the server closes the connection.
    async fn rest(&mut self) -> String {
        while self.fill().await {}
        String::from_utf8(std::mem::take(&mut self.buf)).unwrap()
    }
}

fn field<'a>(event: &'a str, name: &str) -> &'a str {
    event.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_else(|| panic!("no {name} in {event:?}"))
}

#[tokio::test]
async fn over_http_1_1_each_event_is_one_chunk_the_last_chunk_ends_the_stream_and_the_connection_goes_on() {
    let server = start().await;
    let job = queued_job(&server.jobs).await;
    let mut client = Client::connect(server.addr).await;
    client.send(&format!("GET /jobs/{}/events HTTP/1.1\r\nHost: t\r\n\r\n", job.id)).await;
    let head = client.until("\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for header in ["content-type: text/event-stream", "transfer-encoding: chunked", "x-request-id: "] {
        assert!(head.contains(header), "{header} missing from {head}");
    }
    let first = client.chunk().await;
    assert_eq!(field(&first, "event: "), "status");
    assert!(field(&first, "data: ").contains("\"status\":\"queued\""), "{first}");

    let mut publisher = server.jobs.events().publisher(&job);
    for frame in 1..=3 {
        publisher.publish(progress(frame));
        let event = client.chunk().await;
        assert_eq!(field(&event, "event: "), "progress");
        assert_eq!(field(&event, "id: "), format!("{}.{frame}", job.event_seq));
        assert!(field(&event, "data: ").contains(&format!("\"frame\":{frame}")), "{event}");
    }
    drop(publisher);
    server.jobs.cancel(&job.id).await.unwrap();
    let last = client.chunk().await;
    assert!(field(&last, "data: ").contains("\"status\":\"cancelled\""), "{last}");
    assert_eq!(client.chunk().await, "", "the last chunk follows the final status");

    // The connection is hyper's again: it answers the next request.
    client
        .send(&format!(
            "GET /jobs/{}/events HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {}\r\n\r\n",
            job.id,
            field(&last, "id: ")
        ))
        .await;
    let head = client.until("\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 204 No Content\r\n"), "{head}");
    client.send("GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
    let health = client.rest().await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
}

#[tokio::test]
async fn over_http_1_0_the_events_are_the_body_and_the_close_ends_it_and_idle_streams_get_a_comment() {
    let server = start().await;
    let job = queued_job(&server.jobs).await;
    let mut all = Client::connect(server.addr).await;
    all.send("GET /events?progress=true HTTP/1.0\r\n\r\n").await;
    let mut one = Client::connect(server.addr).await;
    one.send(&format!("GET /jobs/{}/events HTTP/1.0\r\n\r\n", job.id)).await;
    for client in [&mut all, &mut one] {
        let head = client.until("\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
        assert!(!head.contains("transfer-encoding"), "{head}");
    }
    assert!(one.until("\n\n").await.contains("event: status"));
    // Nothing happens for 15 s: a comment keeps each stream open.
    assert_eq!(one.until("\n\n").await, ": keep-alive\n\n");
    assert_eq!(all.until("\n\n").await, ": keep-alive\n\n");

    let mut publisher = server.jobs.events().publisher(&job);
    publisher.publish(progress(7));
    for client in [&mut all, &mut one] {
        let event = client.until("\n\n").await;
        assert_eq!(field(&event, "id: "), format!("{}.1", job.event_seq), "{event}");
    }
    drop(publisher);
    server.jobs.cancel(&job.id).await.unwrap();
    let rest = one.rest().await;
    assert!(rest.starts_with("id: ") && rest.contains("\"status\":\"cancelled\""), "{rest}");
    assert!(rest.ends_with("\n\n"), "the body ends after the final event: {rest:?}");
    // The every-job stream goes on until the server closes the streams.
    assert!(all.until("\n\n").await.contains("\"status\":\"cancelled\""));
    server.state.close_streams();
    assert_eq!(all.rest().await, "", "closing the streams ends them");
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_gets_the_latest_state_when_it_reads_again_and_others_go_on() {
    let server = start().await;
    let job = queued_job(&server.jobs).await;
    // A small receive buffer, so that the server's writes to it soon find it full.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = Client { stream: socket.connect(server.addr).await.unwrap(), buf: Vec::new() };
    slow.send(&format!("GET /jobs/{}/events HTTP/1.1\r\nHost: t\r\n\r\n", job.id)).await;
    slow.until("\r\n\r\n").await;
    assert!(slow.chunk().await.contains("event: status"));
    let mut fast = Client::connect(server.addr).await;
    fast.send(&format!("GET /jobs/{}/events HTTP/1.1\r\nHost: t\r\n\r\n", job.id)).await;
    fast.until("\r\n\r\n").await;
    assert!(fast.chunk().await.contains("event: status"));

    // Far more than the socket buffers and the job's channel hold; the fast one reads all.
    let mut publisher = server.jobs.events().publisher(&job);
    let published = 20_000u64;
    for frame in 1..=published {
        publisher.publish(progress(frame));
        if frame % 1000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut seen = 0;
    while seen < published {
        let event = fast.chunk().await;
        let id = field(&event, "id: ").to_owned();
        seen = id.split_once('.').unwrap().1.parse().unwrap();
    }

    // The slow one reads now: what its socket held, then the latest state: no backlog.
    let mut frames = Vec::new();
    while frames.last() != Some(&published) {
        let event = slow.chunk().await;
        assert_eq!(field(&event, "event: "), "progress", "{event}");
        frames.push(field(&event, "id: ").split_once('.').unwrap().1.parse::<u64>().unwrap());
    }
    assert!((frames.len() as u64) < published, "no backlog: all {published} progress events came one by one");
    assert!(frames.windows(2).all(|w| w[0] < w[1]), "in order, none twice");

    drop(publisher);
    server.jobs.cancel(&job.id).await.unwrap();
    for client in [&mut fast, &mut slow] {
        assert!(client.chunk().await.contains("\"status\":\"cancelled\""));
        assert_eq!(client.chunk().await, "");
    }
}

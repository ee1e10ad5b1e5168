//! The HTTP connection loop: accepts TCP connections and serves each with hyper (HTTP/1.1),
//! under limits that keep slow, idle or half-open clients from starving the server. Every
//! timer is hyper's or tower-http's own:
//!
//! - **header read timeout** (hyper `header_read_timeout`): a request's head must arrive whole
//!   within it. It also bounds how long a kept-alive connection may sit idle waiting for its
//!   next request (hyper starts the same timer as soon as it waits for a head).
//! - **body idle timeout** (tower-http `RequestBodyTimeoutLayer`): the longest pause between two
//!   chunks of a request body, not a limit on the whole body, so a multi-GB upload at a steady
//!   pace passes while a `Content-Length` longer than the bytes sent is cut.
//! - **connection limit**: at most `max_connections` connections are served at once. Past it, a
//!   new connection is answered `503` problem+json (`/problems/overloaded`) and closed; at most
//!   [`refusal_slots`] such answers are pending at a time, beyond that a connection is closed at
//!   once. Set it above the number of long-lived streams the server must hold, and below the
//!   process's open-file limit ([`raise_file_limit`]).
//! - **accept errors** (`EMFILE`, `ENFILE`, `ENOBUFS`, ...) back off, doubling from 10 ms to
//!   1 s, instead of spinning; errors of one aborted connection are skipped.
//! - **event streams**: the first bytes of every connection are peeked (`MSG_PEEK`: they stay for
//!   hyper) within the header read timeout (the one timer of this module's own; hyper's header
//!   timer starts after them). A connection whose first request line asks for an event stream
//!   is served over a socket its stream's writer can take over once the response head is sent
//!   (`fanout`: one task writes each event to every stream of a job), and, with
//!   [`StreamThreads`] ([`serve_on`], optional), by threads below the server's priority.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::IntoResponse;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::error::ApiError;
use crate::fanout::SharedSocket;

/// A connection's socket as hyper reads and writes it: a stream connection's is shared with
/// its writer ([`SharedSocket`]).
enum Io {
    Plain(tokio::net::TcpStream),
    Shared(SharedSocket),
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Io::Shared(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Io::Shared(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Io::Shared(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(io) => io.is_write_vectored(),
            Io::Shared(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_flush(cx),
            Io::Shared(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Io::Shared(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// Limits of the connection loop (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest time for a request head to arrive, and longest idle time of a kept-alive
    /// connection between requests.
    pub header_read_timeout: Duration,
    /// Longest pause between two chunks of a request body.
    pub body_idle_timeout: Duration,
    /// Most connections served at once (at least 1).
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

/// How many over-the-limit connections may wait for their 503 answer at once: a sixteenth of
/// `max_connections`, between 1 and 256 (each is bounded by the header read timeout).
pub fn refusal_slots(max_connections: usize) -> usize {
    (max_connections / 16).clamp(1, 256)
}

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Raises the soft open-file limit (`RLIMIT_NOFILE`) to the hard one, and warns when
/// `max_connections` (plus the refusal slots and a reserve of 256 descriptors for the
/// database, ffmpeg's pipes and the listener) does not fit in it: past the file limit, accept
/// fails (`EMFILE`) and backs off instead of answering 503.
pub fn raise_file_limit(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() { hard } else { soft };
    let needed = (max_connections + refusal_slots(max_connections) + 256) as u64;
    if needed > soft {
        tracing::warn!(
            open_file_limit = soft,
            max_connections,
            "the open-file limit is below what --max-connections needs ({needed}); raise it (ulimit -n, \
             LimitNOFILE=) or lower --max-connections"
        );
    }
}

/// Accept errors that concern one connection only (the peer gave up): skip, no back-off.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted)
}

/// Threads of their own for event-stream connections ([`serve_on`]): a runtime whose worker
/// threads run at a lower CPU priority (a higher nice value) than the rest of the server and
/// the ffmpeg processes it starts, so that sending one progress event to a thousand
/// subscribers takes the cores only when the jobs leave them (on a machine with idle cores,
/// at once). Dropping it shuts its runtime down without waiting.
#[derive(Debug)]
pub struct StreamThreads {
    runtime: Option<tokio::runtime::Runtime>,
}

impl StreamThreads {
    /// `threads` worker threads (at least 1), `nice` nice levels below the priority of the
    /// thread that starts them (their nice value that much higher, at most 19).
    ///
    /// # Errors
    /// The runtime's threads cannot be started.
    pub fn start(threads: usize, nice: i32) -> std::io::Result<StreamThreads> {
        let own = rustix::process::getpriority_process(None).unwrap_or(0);
        let nice = (own + nice.max(0)).min(19);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("streams")
            .on_thread_start(move || {
                // On Linux a priority is a thread's own: this lowers these threads only. A
                // failure leaves the thread at the server's priority (nothing else changes).
                if nice != own
                    && let Err(e) = rustix::process::setpriority_process(None, nice)
                {
                    tracing::warn!(error = %e, nice, "could not lower the stream threads' priority");
                }
            })
            .enable_all()
            .build()?;
        Ok(StreamThreads { runtime: Some(runtime) })
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.runtime.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for StreamThreads {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Whether the first bytes of a connection are a request for an event stream (`GET /events`
/// or `GET /jobs/{id}/events`, with or without a query).
fn is_stream_request(head: &[u8]) -> bool {
    let Some(rest) = head.strip_prefix(b"GET ") else { return false };
    let end = rest.iter().position(|&b| b == b' ' || b == b'?').unwrap_or(rest.len());
    // A target cut off by the end of what arrived so far is not known to be a stream's.
    if end == rest.len() {
        return false;
    }
    std::str::from_utf8(&rest[..end]).is_ok_and(crate::streams::is_stream_path)
}

/// Serves `router` on `listener` under `limits` until `stop` fires, then stops accepting and
/// waits for open connections to finish their requests (callers bound that wait). Handlers see
/// the peer address as `ConnectInfo<SocketAddr>` (the rate limiter needs it).
pub async fn serve(listener: TcpListener, router: Router, limits: ConnectionLimits, stop: CancellationToken) {
    serve_on(listener, router, limits, None, stop).await;
}

/// [`serve`], with the connections whose first request asks for an event stream served on
/// `streams`' threads. Either way the first bytes of every connection are looked at
/// (`MSG_PEEK`, they stay for hyper to read) once they arrive, within the header read timeout
/// (a connection that sends nothing in it is closed, as hyper would), and a stream's
/// connection is served so that its writer can take it over (see the module docs).
pub async fn serve_on(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    streams: Option<Arc<StreamThreads>>,
    stop: CancellationToken,
) {
    let max = limits.max_connections.max(1);
    let open = Arc::new(Semaphore::new(max));
    let refusing = Arc::new(Semaphore::new(refusal_slots(max)));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let mut refuse_http = http.clone();
    refuse_http.keep_alive(false);
    let graceful = GracefulShutdown::new();
    let mut backoff = MIN_BACKOFF;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = MIN_BACKOFF;
                accepted
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "accepting a connection failed; backing off");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if let Ok(permit) = Arc::clone(&open).try_acquire_owned() {
            let body_idle = limits.body_idle_timeout;
            let router = router.clone();
            let watcher = graceful.watcher();
            let http = http.clone();
            // A connection whose first request asks for a stream can be taken over by the
            // stream's writer once the response head is sent (`fanout`).
            let serve = move |stream: tokio::net::TcpStream, stream_request: bool| async move {
                let (io, handoff) = if stream_request {
                    let socket = SharedSocket::new(stream);
                    let handoff = socket.handle();
                    (Io::Shared(socket), Some(handoff))
                } else {
                    (Io::Plain(stream), None)
                };
                let service = ServiceBuilder::new()
                    .layer(RequestBodyTimeoutLayer::new(body_idle))
                    .map_request(move |mut request: Request<_>| {
                        request.extensions_mut().insert(ConnectInfo(peer));
                        if let Some(handoff) = &handoff {
                            request.extensions_mut().insert(handoff.clone());
                        }
                        request
                    })
                    .service(router);
                let connection =
                    watcher.watch(http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service)));
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                drop(permit);
            };
            let wait = limits.header_read_timeout;
            let stop = stop.clone();
            let streams = streams.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 128];
                // Nothing arrived yet when the server stops: closed, as hyper closes an idle
                // connection (the graceful shutdown waits for this task's watcher).
                let peeked = tokio::select! {
                    peeked = tokio::time::timeout(wait, stream.peek(&mut head)) => peeked,
                    () = stop.cancelled() => return,
                };
                let Ok(Ok(n)) = peeked else { return };
                if !is_stream_request(&head[..n]) {
                    return serve(stream, false).await;
                }
                let Some(streams) = streams else { return serve(stream, true).await };
                let Some(handle) = streams.handle() else { return };
                // Registered again with the stream threads' reactor; the permit goes along.
                let Ok(stream) = stream.into_std() else { return };
                handle.spawn(async move {
                    if let Ok(stream) = tokio::net::TcpStream::from_std(stream) {
                        serve(stream, true).await;
                    }
                });
            });
        } else if let Ok(permit) = Arc::clone(&refusing).try_acquire_owned() {
            let io = TokioIo::new(stream);
            tracing::warn!(%peer, max_connections = max, "connection limit reached: answering 503");
            let service = hyper::service::service_fn(move |_request| async move {
                Ok::<_, Infallible>(ApiError::Overloaded { max_connections: max }.into_response())
            });
            let connection = graceful.watch(refuse_http.serve_connection(io, service));
            tokio::spawn(async move {
                let _ = connection.await;
                drop(permit);
            });
        } else {
            tracing::warn!(%peer, max_connections = max, "connection limit reached: closing the connection");
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[test]
    fn a_stream_request_is_told_by_its_first_line() {
        for head in [
            &b"GET /events HTTP/1.1\r\n"[..],
            b"GET /events?progress=true&access_token=x HTTP/1.1\r\n",
            b"GET /jobs/0123/events HTTP/1.0\r\nHost: a\r\n\r\n",
            b"GET /jobs/0123/events?access_token=t HTTP/1.1",
        ] {
            assert!(is_stream_request(head), "{}", String::from_utf8_lossy(head));
        }
        for head in [
            &b"GET /jobs/0123 HTTP/1.1\r\n"[..],
            b"GET /jobs/0123/events/x HTTP/1.1\r\n",
            b"POST /events HTTP/1.1\r\n",
            b"GET /eventsx HTTP/1.1\r\n",
            b"GET /jobs HTTP/1.1\r\n",
            // Cut off before the target ends: not known yet.
            b"GET /even",
            b"GET /events",
            b"",
            b"\x16\x03\x01\x02\x00",
        ] {
            assert!(!is_stream_request(head), "{}", String::from_utf8_lossy(head));
        }
    }

    /// The nice value of the thread that answers, and its name.
    async fn whoami() -> String {
        let nice = rustix::process::getpriority_process(None).unwrap();
        format!("{} {nice}", std::thread::current().name().unwrap_or("-"))
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: t\r\n\r\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn stream_requests_are_served_by_the_stream_threads_at_their_priority_and_others_are_not() {
        let own = rustix::process::getpriority_process(None).unwrap();
        let nice = (own + 5).min(19);
        let streams = Arc::new(StreamThreads::start(1, 5).unwrap());
        let router = Router::new()
            .route("/events", axum::routing::get(whoami))
            .route("/jobs/{id}/events", axum::routing::get(whoami))
            .route("/jobs/{id}", axum::routing::get(whoami));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve_on(listener, router, ConnectionLimits::default(), Some(streams), stop.clone()));
        assert_eq!(get(addr, "/events?progress=true").await, format!("streams {nice}"));
        assert_eq!(get(addr, "/jobs/a/events").await, format!("streams {nice}"));
        let other = get(addr, "/jobs/a").await;
        assert!(!other.starts_with("streams"), "{other}");
        assert!(other.ends_with(&format!(" {own}")), "{other}");
        stop.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_that_sent_nothing_does_not_hold_up_the_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let streams = Arc::new(StreamThreads::start(1, 0).unwrap());
        let limits = ConnectionLimits { header_read_timeout: Duration::from_secs(600), ..ConnectionLimits::default() };
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve_on(listener, Router::new(), limits, Some(streams), stop.clone()));
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Connections are accepted in order: once a later one is answered, the silent one is
        // waiting for its first bytes.
        assert!(get(addr, "/nothing").await.is_empty());
        stop.cancel();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(60), silent.read_to_end(&mut rest)).await;
        assert!(matches!(closed, Ok(Ok(0))), "the silent connection was not closed at shutdown: {closed:?}");
        tokio::time::timeout(Duration::from_secs(60), server).await.unwrap().unwrap();
    }
}

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

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::IntoResponse;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::error::ApiError;

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

/// Serves `router` on `listener` under `limits` until `stop` fires, then stops accepting and
/// waits for open connections to finish their requests (callers bound that wait). Handlers see
/// the peer address as `ConnectInfo<SocketAddr>` (the rate limiter needs it).
pub async fn serve(listener: TcpListener, router: Router, limits: ConnectionLimits, stop: CancellationToken) {
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
        let io = TokioIo::new(stream);
        if let Ok(permit) = Arc::clone(&open).try_acquire_owned() {
            let service = ServiceBuilder::new()
                .layer(RequestBodyTimeoutLayer::new(limits.body_idle_timeout))
                .map_request(move |mut request: Request<_>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                })
                .service(router.clone());
            let connection = graceful.watch(http.serve_connection(io, TowerToHyperService::new(service)));
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                drop(permit);
            });
        } else if let Ok(permit) = Arc::clone(&refusing).try_acquire_owned() {
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

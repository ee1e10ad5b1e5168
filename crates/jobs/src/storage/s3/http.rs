//! The bucket client's HTTP layer: how long a request may wait for the bucket.
//!
//! `object_store`'s own client bounds a request as a whole (30 s by default, the answer's body
//! included), which is at once too long for a bucket that stopped answering (every files API
//! request then waits for it before its 503) and too short for a large download that keeps
//! streaming. This layer bounds each request instead by what a live bucket always does:
//!
//! - it accepts a connection within the connect timeout ([`S3Timeouts::connect`]);
//! - it starts answering (the answer's headers) within the request timeout
//!   ([`S3Timeouts::request`]), plus the time to send the request's body at
//!   [`UPLOAD_MIN_BYTES_PER_SECOND`] (an 8 MiB part gets 32 s more);
//! - a server-side copy (`x-amz-copy-source`) or the completion of a multipart upload, which
//!   copy or assemble a whole object (up to 5 GiB) before some servers answer, gets the copy
//!   timeout instead ([`S3Timeouts::copy`]);
//! - while an answer's body is read, it never pauses longer than the request timeout; a body
//!   that keeps coming may take any time (a multi-GB download to a slow client).
//!
//! TLS: an `https://` endpoint is trusted by the built-in web roots (Mozilla's, `webpki-roots`)
//! plus the certificates of `AWS_CA_BUNDLE` ([`S3Config::ca_bundle`](super::S3Config)), for a
//! server with a private CA. A certificate that none of them vouches for fails the request at
//! once (no retry) with [`Untrusted`], naming the endpoint; an `https://` endpoint is never
//! reached over plain http.
//!
//! A request past its bound fails as a timeout, which `object_store` retries only while its
//! retry budget lasts (the request timeout): a dead bucket is an error within about the
//! request timeout, and a refused connection or a 5xx answer is retried a few times quickly.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpResponseBody, HttpService,
};
use object_store::{ClientConfigKey, ClientOptions};

/// Bytes a second a request's body is given time for, on top of the request timeout.
pub const UPLOAD_MIN_BYTES_PER_SECOND: u64 = 256 * 1024;

/// How long the bucket client waits (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Timeouts {
    /// Longest wait for a connection (TCP and TLS).
    pub connect: Duration,
    /// Longest wait for the bucket to start answering a request (plus the time to send its
    /// body), and longest pause while an answer's body is read.
    pub request: Duration,
    /// Longest wait for the answer to a server-side copy or to the completion of a multipart
    /// upload.
    pub copy: Duration,
}

impl Default for S3Timeouts {
    /// 5 s to connect, 10 s to start answering, 10 minutes for a copy.
    fn default() -> Self {
        S3Timeouts { connect: Duration::from_secs(5), request: Duration::from_secs(10), copy: Duration::from_secs(600) }
    }
}

/// Builds the bucket's HTTP client: `reqwest` with the connect timeout, wrapped in
/// [`Bounded`].
#[derive(Debug)]
pub(super) struct Connector {
    pub(super) timeouts: S3Timeouts,
    /// Certificates trusted besides the built-in roots (`AWS_CA_BUNDLE`).
    pub(super) roots: Vec<reqwest::Certificate>,
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        // `object_store` asks for plain http for the instance's credentials endpoint (IMDS),
        // and passes the bucket's own `allow_http` otherwise.
        let allow_http = options.get_config_value(&ClientConfigKey::AllowHttp).as_deref() == Some("true");
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("ffmpeg-worker/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.timeouts.connect)
            .https_only(!allow_http);
        for root in &self.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        let client = builder.build().map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
        Ok(HttpClient::new(Bounded { client, timeouts: self.timeouts }))
    }
}

/// The certificates of a PEM file (`AWS_CA_BUNDLE`), to trust besides the built-in roots.
///
/// # Errors
/// A sentence naming the file: unreadable, or holding no PEM certificate.
pub(super) fn read_ca_bundle(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("AWS_CA_BUNDLE `{shown}` cannot be read: {e}"))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("AWS_CA_BUNDLE `{shown}` is not a PEM certificate bundle: {e}"))?;
    if roots.is_empty() {
        return Err(format!("AWS_CA_BUNDLE `{shown}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"));
    }
    Ok(roots)
}

/// A server whose TLS certificate the client does not trust (or that does not speak TLS).
#[derive(Debug, thiserror::Error)]
#[error(
    "the bucket's endpoint {endpoint} failed the TLS handshake: {reason}; if it uses a private CA, \
     set AWS_CA_BUNDLE to that CA's PEM file"
)]
struct Untrusted {
    /// `https://host:port`.
    endpoint: String,
    /// The TLS library's words (`invalid peer certificate: UnknownIssuer`, ...).
    reason: String,
}

/// `error` as [`Untrusted`] when a TLS handshake with `endpoint` (`https://host:port`; `None`
/// for plain http) failed: not worth retrying, and the reason must reach the user whole
/// (`object_store` keeps only the outer error's words). Any other error as it was.
fn tls_failure(error: HttpError, endpoint: Option<String>) -> HttpError {
    let Some(endpoint) = endpoint else { return error };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut reason = None;
    while let Some(e) = source {
        let text = e.to_string();
        // rustls's errors: `invalid peer certificate: ...`, `received corrupt message ...`,
        // `peer is incompatible: ...`, `received fatal alert: ...`.
        if text.contains("certificate") || text.contains("corrupt message") || text.contains("fatal alert") {
            reason = Some(text);
        }
        source = e.source();
    }
    match reason {
        Some(reason) => HttpError::new(HttpErrorKind::Unknown, Untrusted { endpoint, reason }),
        None => error,
    }
}

/// A bucket endpoint's host name that the resolver says does not exist (NXDOMAIN: glibc's
/// "Name or service not known" or "No address associated with hostname", musl's "Name does not
/// resolve"), as opposed to a resolver that did not answer ("Temporary failure in name
/// resolution": waiting may fix that).
#[derive(Debug, thiserror::Error)]
#[error("the bucket's endpoint host `{host}` does not resolve ({reason}); check the host name in AWS_ENDPOINT_URL")]
struct UnknownHost {
    /// The host as the URL names it.
    host: String,
    /// The resolver's words.
    reason: String,
}

/// The texts getaddrinfo gives (through std's "failed to lookup address information: ...")
/// for a name that does not exist.
const NO_SUCH_NAME: [&str; 3] =
    ["Name or service not known", "No address associated with hostname", "Name does not resolve"];

/// `error` as [`UnknownHost`] when resolving `host` found no such name; as it was otherwise.
fn dns_failure(error: HttpError, host: &str) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut reason = None;
    while let Some(e) = source {
        let text = e.to_string();
        if let Some(found) = NO_SUCH_NAME.iter().find(|words| text.contains(*words)) {
            reason = Some((*found).to_owned());
        }
        source = e.source();
    }
    match reason {
        Some(reason) => HttpError::new(HttpErrorKind::Connect, UnknownHost { host: host.to_owned(), reason }),
        None => error,
    }
}

/// Whether `error`, or one it was caused by, is [`UnknownHost`]: the endpoint's host name does
/// not exist. The server's start stops on it (a typo never fixes itself); a running node
/// counts it as any failure to reach the bucket (a name that resolved before may again).
pub(crate) fn is_unknown_host(error: &(dyn std::error::Error + 'static)) -> bool {
    caused_by::<UnknownHost>(error)
}

/// Whether `error`, or one it was caused by, is a failed TLS handshake with the bucket's
/// endpoint ([`Untrusted`]): a certificate nothing trusted vouches for, or a server that does
/// not speak TLS. Looks inside `io::Error`s too (their `source` skips the error they wrap).
pub(crate) fn is_untrusted(error: &(dyn std::error::Error + 'static)) -> bool {
    caused_by::<Untrusted>(error)
}

/// Whether `error`, or one it was caused by, is an `E`. Looks inside `io::Error`s too (their
/// `source` skips the error they wrap).
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<E>() {
            return true;
        }
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref)
            && caused_by::<E>(inner)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// A request that the bucket did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error("the bucket did not answer within {} s", .0.as_secs_f64())]
struct NoAnswer(Duration);

/// An answer's body that paused too long.
#[derive(Debug, thiserror::Error)]
#[error("the bucket sent nothing more of its answer for {} s", .0.as_secs_f64())]
struct Stalled(Duration);

/// `reqwest` with the bounds of the [module docs](self).
#[derive(Debug)]
struct Bounded {
    client: reqwest::Client,
    timeouts: S3Timeouts,
}

impl Bounded {
    /// How long `request` may wait for its answer's headers.
    fn limit(&self, request: &HttpRequest) -> Duration {
        let server_side = request.headers().contains_key("x-amz-copy-source")
            || (request.method().as_str() == "POST" && request.uri().query().is_some_and(|q| q.contains("uploadId=")));
        if server_side {
            return self.timeouts.copy.max(self.timeouts.request);
        }
        let body = request.body().content_length() as u64;
        self.timeouts.request + Duration::from_secs(body / UPLOAD_MIN_BYTES_PER_SECOND)
    }
}

#[async_trait]
impl HttpService for Bounded {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let limit = self.limit(&request);
        let uri = request.uri();
        let endpoint = (uri.scheme_str() == Some("https"))
            .then(|| format!("https://{}", uri.authority().map_or("", |a| a.as_str())));
        let host = uri.host().unwrap_or_default().to_owned();
        let response = tokio::time::timeout(limit, self.client.call(request))
            .await
            .map_err(|_| HttpError::new(HttpErrorKind::Timeout, NoAnswer(limit)))?
            .map_err(|e| dns_failure(tls_failure(e, endpoint), &host))?;
        let (parts, body) = response.into_parts();
        let body = HttpResponseBody::new(NoStall { inner: body, limit: self.timeouts.request, timer: None });
        Ok(HttpResponse::from_parts(parts, body))
    }
}

/// An answer's body that fails with [`Stalled`] when nothing arrives for `limit` while it is
/// read (the timer runs only while the reader waits: a slow reader is no stall).
struct NoStall {
    inner: HttpResponseBody,
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl fmt::Debug for NoStall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoStall").field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl Body for NoStall {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let limit = this.limit;
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.timer = None;
                        Poll::Ready(Some(Err(HttpError::new(HttpErrorKind::Timeout, Stalled(limit)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

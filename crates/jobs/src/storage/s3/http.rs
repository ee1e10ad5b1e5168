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
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        // `object_store` asks for plain http for the instance's credentials endpoint (IMDS),
        // and passes the bucket's own `allow_http` otherwise.
        let allow_http = options.get_config_value(&ClientConfigKey::AllowHttp).as_deref() == Some("true");
        let client = reqwest::Client::builder()
            .user_agent(concat!("ffmpeg-worker/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.timeouts.connect)
            .https_only(!allow_http)
            .build()
            .map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
        Ok(HttpClient::new(Bounded { client, timeouts: self.timeouts }))
    }
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
        let response = tokio::time::timeout(limit, self.client.call(request))
            .await
            .map_err(|_| HttpError::new(HttpErrorKind::Timeout, NoAnswer(limit)))??;
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

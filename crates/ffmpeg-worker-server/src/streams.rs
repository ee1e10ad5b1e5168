//! Server-sent event streams (`text/event-stream`, per the HTML Living Standard's
//! "Server-sent events" section): one job's events, and every job's. Glue over
//! [`jobs::events`]: the streams' content and order are decided there.
//!
//! An event goes to every stream that follows it as the same bytes: the first stream to send
//! it encodes it ([`encode`], kept with the event by [`jobs::events::Published::encoded`]), the others
//! reuse that buffer, so a thousand subscribers cost one JSON serialization per event.
//!
//! A stream served by the connection loop (`connections`) is written by its source's writer
//! once its response head is sent ([`crate::fanout`]: one task per job writes each event to
//! every stream of the job); one answered otherwise (the router called directly) is a body
//! stream ([`feed`]). Both send the same bytes, with the same keep-alive comments and end.

use std::convert::Infallible;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use jobs::JobId;
use jobs::events::{AllFilter, AllItem, Event, EventId, Published, Resume};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, AppQuery, JobIdPath};
use crate::fanout::{HandOffBody, HandOffSocket, Source};
use crate::routes::JobIdParam;
use crate::wire::{Problem, job_response, progress_event};

/// How often an idle stream gets a comment line, so that proxies do not close it.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The query parameter that carries an API token on the stream endpoints (a browser's
/// `EventSource` cannot send an `Authorization` header).
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

/// Whether `path` is one of the stream endpoints (where [`ACCESS_TOKEN_PARAM`] is accepted).
pub fn is_stream_path(path: &str) -> bool {
    path == "/events"
        || path
            .strip_prefix("/jobs/")
            .is_some_and(|rest| rest.ends_with("/events") && !rest[..rest.len() - 7].contains('/'))
}

/// The query parameter of the stream endpoints that carries an API token; also the query of
/// `GET /jobs/{id}/events`, which takes no other parameter (any other name: 422).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Read by the authentication middleware; deserialized only to refuse other names.
pub(crate) struct AccessTokenParam {
    /// An API token, for clients that cannot send `Authorization: Bearer` (a browser's
    /// `EventSource`); only on the stream endpoints, and never logged. Needed only when the
    /// server has API tokens.
    access_token: Option<String>,
}

/// The `Last-Event-ID` header: set by an `EventSource` when it reconnects.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Read from the headers; this type only describes it.
pub(crate) struct LastEventIdHeader {
    /// The id of the last event received (`N` or `N.K`). The stream resumes with the job's
    /// current status and latest progress; when it is the job's final event, 204.
    #[param(rename = "Last-Event-ID")]
    last_event_id: Option<String>,
}

/// One event of a `text/event-stream` body, as a client's parser reads it (the HTML Living
/// Standard's fields); only describes the stream in the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct StreamEvent {
    /// `N` for a status event, `N.K` for a progress event (absent for `skipped`).
    id: Option<String>,
    /// `status`, `progress` or (on `/events`) `skipped`.
    event: Option<String>,
    /// The event's JSON (`JobResponse`, `ProgressEvent` or `{"skipped": N}`, N null when
    /// unknown), as text.
    data: String,
}

/// Stream a job's events
///
/// A `text/event-stream` (server-sent events). Event `status` (data: the job, as `GET
/// /jobs/{id}` answers it) first with the job's current status and then on every status
/// change; event `progress` (data: `ProgressEvent`) on every progress report of ffmpeg while
/// it runs. The stream ends after the final status (`completed`, `failed`, `cancelled`); a job
/// already finished answers its final `status` event and ends. Every event has an `id` (`N`
/// for a status, `N.K` for progress) that stays valid across server restarts: a reconnect with
/// `Last-Event-ID` gets the current status and the latest progress again, then what follows;
/// when `Last-Event-ID` is the job's final event, the answer is 204 (an `EventSource` stops
/// reconnecting). A comment line every 15 s keeps idle connections open. A client that reads
/// too slowly skips to the latest state. Example: `curl -N http://HOST/jobs/ID/events`.
#[utoipa::path(
    get, path = "/jobs/{id}/events", tag = "events",
    params(JobIdParam, LastEventIdHeader, AccessTokenParam),
    responses(
        (status = 200, description = "The event stream. `event: status` (data: `JobResponse`), \
`event: progress` (data: `ProgressEvent`), each with an `id:`", body = StreamEvent, content_type = "text/event-stream"),
        (status = 204, description = "`Last-Event-ID` names the job's final event: nothing follows"),
        (status = 422, description = "A query parameter other than `access_token`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn job_events(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
    // Only to refuse a parameter name this endpoint does not know (422).
    AppQuery(_token): AppQuery<AccessTokenParam>,
    headers: HeaderMap,
    version: Version,
    socket: Option<Extension<HandOffSocket>>,
) -> Result<Response, ApiError> {
    // A value that is not one of our ids (another server's, garbage) is a first connection.
    let last_seen =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<EventId>().ok());
    let jobs = Arc::clone(&state.jobs);
    let key = id.clone();
    match state.on_main(async move { jobs.events_of(&id, last_seen).await }).await? {
        Resume::Finished => Ok(StatusCode::NO_CONTENT.into_response()),
        Resume::Events(events) => match socket {
            Some(Extension(socket)) => Ok(handed_off(&state, socket, Some(key), Source::Job(events), version)),
            None => {
                let stream = futures_util::stream::unfold(events, |mut events| async move {
                    let event = events.next_published().await?;
                    Some((job_event_bytes(&event), events))
                });
                Ok(sse(&state, stream))
            }
        },
    }
}

/// The bytes of a job's event on a stream (encoded once for every stream).
pub(crate) fn job_event_bytes(event: &Published) -> Bytes {
    event.encoded(encode)
}

/// The bytes of an item of the every-job stream.
pub(crate) fn all_item_bytes(item: AllItem<Published>) -> Bytes {
    match item {
        AllItem::Event(event) => job_event_bytes(&event),
        AllItem::Skipped(n) => Bytes::from(format!("event: skipped\ndata: {{\"skipped\":{n}}}\n\n")),
        AllItem::Missed => Bytes::from_static(b"event: skipped\ndata: {\"skipped\":null}\n\n"),
    }
}

/// Query parameters of `GET /events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllEventsParams {
    /// Only status events of jobs entering one of these statuses: a comma-separated list of
    /// queued, running, completed, failed, cancelled. Default: every status.
    #[param(
        example = "completed,failed",
        pattern = "^(queued|running|completed|failed|cancelled)(,(queued|running|completed|failed|cancelled))*$"
    )]
    status: Option<String>,
    /// Whether `progress` events are sent too (default false).
    progress: Option<bool>,
    /// Read by the authentication middleware ([`AccessTokenParam`] documents it); named here
    /// only so that `deny_unknown_fields` lets it through.
    #[param(ignore)]
    #[serde(rename = "access_token")]
    _access_token: Option<serde::de::IgnoredAny>,
}

/// Stream every job's events
///
/// A `text/event-stream` of every job's status changes from now on (event `status`, data: the
/// job, whose `id` names it) and, with `progress=true`, their progress (event `progress`, data:
/// `ProgressEvent`, whose `job_id` names it). Event ids are per job (as in
/// `/jobs/{id}/events`); this stream does not resume: after a reconnect, read `GET /jobs` to
/// catch up. A client that reads too slowly gets an event `skipped` (data: `{"skipped": N}`,
/// the number of events it missed) followed by the latest state of the jobs running on this
/// server. In cluster mode, a node that lost touch with the database for a while sends
/// `skipped` with data `{"skipped": null}` (an unknown number of other nodes' events). A
/// comment line every 15 s keeps idle connections open. Example: `curl -N
/// 'http://HOST/events?status=completed,failed'`.
#[utoipa::path(
    get, path = "/events", tag = "events",
    params(AllEventsParams, AccessTokenParam),
    responses(
        (status = 200, description = "The event stream. `event: status` (data: `JobResponse`), \
`event: progress` (data: `ProgressEvent`), `event: skipped` (data: `{\"skipped\": N}`)", body = StreamEvent, content_type = "text/event-stream"),
        (status = 422, description = "Invalid status or progress, or an unknown parameter name", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn all_events(
    State(state): State<AppState>,
    AppQuery(params): AppQuery<AllEventsParams>,
    version: Version,
    socket: Option<Extension<HandOffSocket>>,
) -> Result<Response, ApiError> {
    let statuses = crate::routes::parse_statuses(params.status.as_deref())?;
    let events = state.jobs.all_events(AllFilter { statuses, progress: params.progress.unwrap_or(false) });
    if let Some(Extension(socket)) = socket {
        return Ok(handed_off(&state, socket, None, Source::All(events), version));
    }
    let stream = futures_util::stream::unfold(events, |mut events| async move {
        let item = events.next_published().await?;
        Some((all_item_bytes(item), events))
    });
    Ok(sse(&state, stream))
}

/// The comment line an idle stream gets every [`KEEP_ALIVE`].
pub(crate) const KEEP_ALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

/// The response of a stream whose events its writer sends ([`crate::fanout`]): `key` names
/// the writer (the job, or `None` for every job's).
fn handed_off(
    state: &AppState,
    socket: HandOffSocket,
    key: Option<JobId>,
    source: Source,
    version: Version,
) -> Response {
    // hyper frames a body of unknown length in chunks for HTTP/1.1, and sends it until the
    // connection closes for HTTP/1.0.
    let chunked = version != Version::HTTP_10;
    let body = HandOffBody::new(socket, state.stream_writers(), key, source, chunked);
    with_stream_headers(Body::new(body).into_response())
}

/// The response: `events` (each item one whole event's bytes) as `text/event-stream`
/// ([`feed`]).
fn sse(state: &AppState, events: impl Stream<Item = Bytes> + Send + 'static) -> Response {
    with_stream_headers(Body::from_stream(feed(events, state.streams_closing())).into_response())
}

/// A stream's headers; `X-Accel-Buffering: no` asks nginx-like proxies not to buffer it.
fn with_stream_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The body of a stream: `events`, with a comment line after every [`KEEP_ALIVE`] without an
/// event, ended when `events` ends or once `closing` fires (the server shuts down; the events
/// already published, such as the requeue of a job the shutdown stopped, still go out).
fn feed(
    events: impl Stream<Item = Bytes> + Send + 'static,
    closing: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    struct Feed<S> {
        events: std::pin::Pin<Box<S>>,
        idle: std::pin::Pin<Box<tokio::time::Sleep>>,
        closing: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    }
    let feed = Feed {
        events: Box::pin(events),
        idle: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
        // Made once per stream, not once per event: every stream waits on the same token.
        closing: Box::pin(closing.cancelled_owned()),
    };
    futures_util::stream::unfold(feed, |mut feed| async move {
        let bytes = tokio::select! {
            // The stream first: what is ready when the server closes streams still goes out.
            biased;
            event = feed.events.next() => event?,
            () = feed.closing.as_mut() => return None,
            () = feed.idle.as_mut() => Bytes::from_static(KEEP_ALIVE_COMMENT),
        };
        feed.idle.as_mut().reset(tokio::time::Instant::now() + KEEP_ALIVE);
        Some((Ok::<_, Infallible>(bytes), feed))
    })
}

/// The `text/event-stream` form of a bus event: its `id:` and `event:` lines, one `data:`
/// line (JSON holds no raw line break) and the blank line that ends the event.
fn encode(event: &Event) -> Bytes {
    let mut out = Vec::with_capacity(512);
    let (name, written) = match event {
        Event::Status(job) => {
            let _ = write!(out, "id: {}\nevent: status\ndata: ", event.id());
            ("status", serde_json::to_writer(&mut out, &job_response(job.as_ref().clone())))
        }
        Event::Progress(p) => {
            let _ = write!(out, "id: {}\nevent: progress\ndata: ", event.id());
            ("progress", serde_json::to_writer(&mut out, &progress_event(&p.job, &p.progress)))
        }
    };
    match written {
        Ok(()) => {
            out.extend_from_slice(b"\n\n");
            Bytes::from(out)
        }
        // Serializing these plain structs cannot fail; if it ever did, the client sees a comment.
        Err(e) => Bytes::from(format!(": {name} event {} not serializable: {e}\n\n", event.id())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
mod tests {
    use super::*;

    fn next_now(
        body: &mut std::pin::Pin<Box<impl Stream<Item = Result<Bytes, Infallible>>>>,
    ) -> std::task::Poll<Option<Bytes>> {
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        body.as_mut().poll_next(&mut cx).map(|item| item.map(|Ok(bytes)| bytes))
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_gets_a_comment_every_15_s_and_events_pass_unchanged() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let closing = tokio_util::sync::CancellationToken::new();
        let mut body = Box::pin(feed(tokio_stream_of(rx), closing.clone()));
        assert!(next_now(&mut body).is_pending());
        tokio::time::advance(KEEP_ALIVE - Duration::from_millis(1)).await;
        assert!(next_now(&mut body).is_pending(), "no comment before 15 s of silence");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(body.next().await.map(|b| b.unwrap()), Some(Bytes::from_static(b": keep-alive\n\n")));
        tokio::time::advance(Duration::from_secs(10)).await;
        tx.send(Bytes::from_static(b"event: status\ndata: {}\n\n")).unwrap();
        assert_eq!(body.next().await.map(|b| b.unwrap()), Some(Bytes::from_static(b"event: status\ndata: {}\n\n")));
        // The event restarted the 15 s.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(next_now(&mut body).is_pending());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(body.next().await.map(|b| b.unwrap()), Some(Bytes::from_static(KEEP_ALIVE_COMMENT)));
        // Ready events still go out when the server closes streams; then the body ends.
        tx.send(Bytes::from_static(b"last")).unwrap();
        closing.cancel();
        assert_eq!(body.next().await.map(|b| b.unwrap()), Some(Bytes::from_static(b"last")));
        assert!(body.next().await.is_none());
    }

    fn tokio_stream_of(mut rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>) -> impl Stream<Item = Bytes> + Send {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// The lines of one encoded event, checked to end with the blank line.
    fn lines_of(bytes: &Bytes) -> Vec<String> {
        let text = std::str::from_utf8(bytes).unwrap();
        let body = text.strip_suffix("\n\n").unwrap_or_else(|| panic!("no blank line at the end: {text:?}"));
        body.split('\n').map(str::to_owned).collect()
    }

    #[test]
    fn an_event_is_its_id_its_name_and_one_data_line_of_the_wire_json() {
        let mut job = jobs::Job::new_queued(
            "-i 'a b.mp4'\n-f mp4 c.mp4".to_owned(),
            jobs::SubmitOptions::default(),
            1,
            time::OffsetDateTime::UNIX_EPOCH,
        );
        job.event_seq = 3;
        job.error = Some("two\nlines".to_owned());
        let status = Event::Status(std::sync::Arc::new(job.clone()));
        let lines = lines_of(&encode(&status));
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!((lines[0].as_str(), lines[1].as_str()), ("id: 3", "event: status"));
        let data: serde_json::Value = serde_json::from_str(lines[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data, serde_json::to_value(job_response(job.clone())).unwrap());

        let progress = jobs::Progress { frame: Some(25), percent: Some(12.5), ..jobs::Progress::default() };
        let event = Event::Progress(jobs::events::ProgressEvent {
            job: job.id.clone(),
            id: EventId { status: 3, progress: 7 },
            progress: std::sync::Arc::new(progress.clone()),
        });
        let lines = lines_of(&encode(&event));
        assert_eq!((lines.len(), lines[0].as_str(), lines[1].as_str()), (3, "id: 3.7", "event: progress"));
        let data: serde_json::Value = serde_json::from_str(lines[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data, serde_json::to_value(progress_event(&job.id, &progress)).unwrap());
    }
}

//! Server-sent event streams (`text/event-stream`, per the HTML Living Standard's
//! "Server-sent events" section): one job's events, and every job's. Glue over
//! [`jobs::events`]: the streams' content and order are decided there.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt as _};
use jobs::JobStatus;
use jobs::events::{AllFilter, AllItem, Event, EventId, Resume};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, AppQuery, JobIdPath};
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

/// The query parameter of the stream endpoints that carries an API token.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the authentication middleware; this type only describes it.
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
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn job_events(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // A value that is not one of our ids (another server's, garbage) is a first connection.
    let last_seen =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<EventId>().ok());
    match state.jobs.events_of(&id, last_seen).await? {
        Resume::Finished => Ok(StatusCode::NO_CONTENT.into_response()),
        Resume::Events(events) => {
            let stream = futures_util::stream::unfold(events, |mut events| async move {
                let event = events.next().await?;
                Some((sse_event(&event), events))
            });
            Ok(sse(&state, stream))
        }
    }
}

/// Query parameters of `GET /events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AllEventsParams {
    /// Only status events of jobs entering one of these statuses: a comma-separated list of
    /// queued, running, completed, failed, cancelled. Default: every status.
    #[param(example = "completed,failed")]
    status: Option<String>,
    /// Whether `progress` events are sent too (default false).
    progress: Option<bool>,
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
        (status = 422, description = "Invalid status or progress", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn all_events(
    State(state): State<AppState>,
    AppQuery(params): AppQuery<AllEventsParams>,
) -> Result<Response, ApiError> {
    let invalid = |detail: String| ApiError::InvalidRequest { status: StatusCode::UNPROCESSABLE_ENTITY, detail };
    let statuses = match params.status.as_deref() {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|s| s.trim().parse::<JobStatus>().map_err(|e| invalid(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let events = state.jobs.all_events(AllFilter { statuses, progress: params.progress.unwrap_or(false) });
    let stream = futures_util::stream::unfold(events, |mut events| async move {
        let item = events.next().await?;
        let event = match item {
            AllItem::Event(event) => sse_event(&event),
            AllItem::Skipped(n) => SseEvent::default().event("skipped").data(format!("{{\"skipped\":{n}}}")),
            AllItem::Missed => SseEvent::default().event("skipped").data("{\"skipped\":null}"),
        };
        Some((event, events))
    });
    Ok(sse(&state, stream))
}

/// The response: `stream` as `text/event-stream` with keep-alive comments, ended when the
/// server shuts down (after the events already published, such as the requeue of a job the
/// shutdown stopped); `X-Accel-Buffering: no` asks nginx-like proxies not to buffer it.
fn sse(state: &AppState, stream: impl Stream<Item = SseEvent> + Send + 'static) -> Response {
    let closing = state.streams_closing();
    let stream = futures_util::stream::unfold(Box::pin(stream), move |mut stream| {
        let closing = closing.clone();
        async move {
            // The stream first: what is ready when the server closes streams still goes out.
            tokio::select! {
                biased;
                event = stream.next() => event.map(|event| (Ok::<_, Infallible>(event), stream)),
                () = closing.cancelled() => None,
            }
        }
    });
    let mut response =
        Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")).into_response();
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The wire form of a bus event.
fn sse_event(event: &Event) -> SseEvent {
    let sse = SseEvent::default().id(event.id().to_string());
    let sse = match event {
        Event::Status(job) => sse.event("status").json_data(job_response(job.as_ref().clone())),
        Event::Progress(p) => sse.event("progress").json_data(progress_event(&p.job, &p.progress)),
    };
    // Serializing these plain structs cannot fail; if it ever did, the client sees a comment.
    sse.unwrap_or_else(|e| SseEvent::default().comment(format!("event not serializable: {e}")))
}

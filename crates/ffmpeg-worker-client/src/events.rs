//! A job's server-sent events (`GET /jobs/{id}/events`): [`Client::events`] opens the stream,
//! [`JobEvents::next`] reads it, parsed by `eventsource-stream`.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Eventsource as _;
use ffmpeg_worker_api::{JobResponse, ProgressEvent};
use futures_util::{Stream, StreamExt as _};
use reqwest::{Method, StatusCode, header};

use crate::{Client, ClientError};

/// How long a stream may stay silent before it counts as cut: the server sends a comment
/// every 15 s, so three missed ones.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// The longest a stream is read (the client's request timeout does not apply to it); past
/// this it counts as cut.
pub const STREAM_MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// One event of a job's stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum JobEvent {
    /// `event: status`: the job after a status change (the first event: its current status).
    Status(Box<JobResponse>),
    /// `event: progress`: a progress report of the running job.
    Progress(ProgressEvent),
}

/// Why the byte stream stopped early.
#[derive(Debug)]
enum Cut {
    Read(reqwest::Error),
    Idle,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cut::Read(e) => write!(f, "{e}"),
            Cut::Idle => write!(f, "nothing received for {STREAM_IDLE_TIMEOUT:?}"),
        }
    }
}

type Events =
    Pin<Box<dyn Stream<Item = Result<eventsource_stream::Event, eventsource_stream::EventStreamError<Cut>>> + Send>>;

/// An open event stream of one job ([`Client::events`]).
pub struct JobEvents {
    events: Events,
    last_event_id: Option<String>,
}

impl std::fmt::Debug for JobEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobEvents").field("last_event_id", &self.last_event_id).finish_non_exhaustive()
    }
}

impl JobEvents {
    /// The next event; `None` when the stream ended (after the job's final status) or was cut
    /// (connection lost, [`STREAM_IDLE_TIMEOUT`] of silence, an event that is not the JSON
    /// this client expects). Reconnect with [`JobEvents::last_event_id`], or poll.
    pub async fn next(&mut self) -> Option<JobEvent> {
        loop {
            let event = self.events.next().await?.ok()?;
            if !event.id.is_empty() {
                self.last_event_id = Some(event.id.clone());
            }
            return match event.event.as_str() {
                "status" => serde_json::from_str(&event.data).ok().map(|job| JobEvent::Status(Box::new(job))),
                "progress" => serde_json::from_str(&event.data).ok().map(JobEvent::Progress),
                // Event types of later servers.
                _ => continue,
            };
        }
    }

    /// The id of the last event read, for a reconnect ([`Client::events`]).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }
}

impl Client {
    /// Opens job `id`'s event stream (`GET /jobs/{id}/events`), resuming after `last_event_id`
    /// when given. `None` when the server answers 204: `last_event_id` was the job's final
    /// event.
    ///
    /// # Errors
    /// An unknown id is [`ClientError::Problem`] with status 404; an unreachable server
    /// [`ClientError::Unreachable`].
    pub async fn events(&self, id: &str, last_event_id: Option<&str>) -> Result<Option<JobEvents>, ClientError> {
        let url = self.endpoint(&["jobs", id, "events"]);
        let mut request = self
            .request(Method::GET, &url)
            .header(header::ACCEPT, "text/event-stream, application/problem+json;q=0.9")
            .timeout(STREAM_MAX_DURATION);
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = self.execute(&url, request).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = futures_util::stream::unfold(Some(response.bytes_stream()), |state| async move {
            let mut bytes = state?;
            match tokio::time::timeout(STREAM_IDLE_TIMEOUT, bytes.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(bytes))),
                Ok(Some(Err(e))) => Some((Err(Cut::Read(e)), None)),
                Ok(None) => None,
                Err(_) => Some((Err(Cut::Idle), None)),
            }
        });
        Ok(Some(JobEvents { events: Box::pin(bytes.eventsource()), last_event_id: last_event_id.map(str::to_owned) }))
    }
}

//! What the server pushes: the data of a `progress` server-sent event, and webhooks (the
//! payload of every call, the deliveries and their attempts).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{JobResponse, ProgressResponse};

/// The data of a `progress` server-sent event (`GET /jobs/{id}/events`, `GET /events`): the
/// progress JSON of [`ProgressResponse`], plus the id of the job it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressEvent {
    /// The job reporting progress.
    #[schema(example = "job_3f9a0c1d2e4b5a69")]
    pub job_id: String,
    /// The progress snapshot (its fields appear at the top level).
    #[serde(flatten)]
    pub progress: ProgressResponse,
}

/// What happened to a job, as a webhook's `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum WebhookEventWire {
    /// A worker started the job.
    #[serde(rename = "job.started")]
    Started,
    /// The job completed.
    #[serde(rename = "job.completed")]
    Completed,
    /// The job failed.
    #[serde(rename = "job.failed")]
    Failed,
    /// The job was cancelled.
    #[serde(rename = "job.cancelled")]
    Cancelled,
    /// The running job reported progress (only when listed; at most once a second).
    #[serde(rename = "job.progress")]
    Progress,
}

/// Where a webhook delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStateWire {
    /// Not delivered yet; retried at `next_attempt_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed (the server's `WEBHOOK_MAX_ATTEMPTS`).
    Failed,
    /// The receiver answered `410 Gone`: no more attempts.
    Gone,
}

/// One attempt to deliver a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookAttemptResponse {
    /// When the request was sent (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// The receiver's HTTP status; null when no answer came.
    #[schema(example = 500)]
    pub status_code: Option<u16>,
    /// Why no answer came (timeout, network error, refused address); null otherwise.
    #[schema(example = json!(null))]
    pub error: Option<String>,
}

/// One webhook delivery: one event of a job for one URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDeliveryResponse {
    /// The `webhook-id` header: `msg_` + 32 hex digits, the same on every attempt.
    #[schema(example = "msg_6c1f0e9d4b2a4f7e8d3c2b1a09f8e7d6")]
    pub id: String,
    /// Where it goes: the job's `webhook_url`; null for the server's own `WEBHOOK_URL`
    /// (not disclosed).
    #[schema(example = "https://example.com/hooks/ffmpeg")]
    pub url: Option<String>,
    /// The event.
    #[serde(rename = "type")]
    pub type_: WebhookEventWire,
    /// When the event happened (RFC 3339, UTC): the payload's `timestamp`.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Where the delivery is.
    pub state: DeliveryStateWire,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<WebhookAttemptResponse>,
    /// When the next attempt is due (RFC 3339, UTC); null once delivered, failed or gone.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// The body of every webhook call (`POST` to the URL, `Content-Type: application/json`),
/// signed per the Standard Webhooks specification: `webhook-signature: v1,<base64 HMAC-SHA256
/// of "{webhook-id}.{webhook-timestamp}.{body}">` with the server's `WEBHOOK_SECRET`. The body
/// is the same on every attempt; dedupe on `webhook-id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookPayload {
    /// The event.
    #[serde(rename = "type")]
    pub type_: WebhookEventWire,
    /// When the event happened (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: OffsetDateTime,
    /// The job as the event left it, as `GET /jobs/{id}` shows it.
    pub data: JobResponse,
}

//! Webhooks: who is told about a job's events, the durable outbox of deliveries, and the rules
//! deliveries follow (the retry schedule here, which addresses may be called in [`address`]).
//!
//! A job carries its [`WebhookSubscription`]s (its own `webhook_url`, and the server's
//! `WEBHOOK_URL`, fixed when it is submitted). Every store transition that changes a job's
//! status writes, in the same transaction, one [`Delivery`] per subscription that wants the
//! event ([`outbox`]): so an acknowledged transition never loses its deliveries, whatever
//! happens to the process afterwards. The server's dispatcher claims due deliveries
//! ([`JobStore::claim_deliveries`](crate::JobStore::claim_deliveries)), sends them, and
//! records each attempt ([`JobStore::record_delivery_attempt`](crate::JobStore::record_delivery_attempt))
//! with the [`NextStep`] that [`RetryPolicy::next_step`] decides. Delivery is at least once:
//! a receiver dedupes on [`DeliveryId`] (the `webhook-id` header, the same on every attempt).
//!
//! | transition | event |
//! |---|---|
//! | `claim_next` (queued -> running) | `job.started` |
//! | `finish` (running -> completed, failed, cancelled) | `job.completed`, `job.failed`, `job.cancelled` |
//! | `cancel` of a queued job | `job.cancelled` |
//! | `recover` of a job out of attempts (running -> failed) | `job.failed` |
//! | `update_progress` | `job.progress`, only when listed, at most one per [`PROGRESS_INTERVAL`] per job and URL |

pub mod address;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{Job, JobId, JobStatus};

/// Shortest time between two `job.progress` deliveries of one job to one URL.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Longest delay between two attempts of a delivery, whatever the backoff setting.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 3600);

/// What happened to a job, as a webhook's `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WebhookEvent {
    /// A worker started the job (`queued -> running`).
    #[serde(rename = "job.started")]
    Started,
    /// The job completed.
    #[serde(rename = "job.completed")]
    Completed,
    /// The job failed (ffmpeg failed, timed out, or the job was interrupted too often).
    #[serde(rename = "job.failed")]
    Failed,
    /// The job was cancelled.
    #[serde(rename = "job.cancelled")]
    Cancelled,
    /// The running job reported progress (only when a subscription lists it; at most one per
    /// [`PROGRESS_INTERVAL`]).
    #[serde(rename = "job.progress")]
    Progress,
}

/// The text is not a webhook event name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a webhook event (expected job.started, job.completed, job.failed, job.cancelled or job.progress)"
)]
pub struct InvalidWebhookEvent(pub String);

impl WebhookEvent {
    /// Every event.
    pub const ALL: [WebhookEvent; 5] = [
        WebhookEvent::Started,
        WebhookEvent::Completed,
        WebhookEvent::Failed,
        WebhookEvent::Cancelled,
        WebhookEvent::Progress,
    ];
    /// The events a subscription gets when it names none: every status change, no progress.
    pub const DEFAULT: [WebhookEvent; 4] =
        [WebhookEvent::Started, WebhookEvent::Completed, WebhookEvent::Failed, WebhookEvent::Cancelled];

    /// The name: `job.started`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Started => "job.started",
            WebhookEvent::Completed => "job.completed",
            WebhookEvent::Failed => "job.failed",
            WebhookEvent::Cancelled => "job.cancelled",
            WebhookEvent::Progress => "job.progress",
        }
    }

    /// The event of a transition into `status` (`None` for `queued`: no event).
    pub fn of_status(status: JobStatus) -> Option<WebhookEvent> {
        match status {
            JobStatus::Queued => None,
            JobStatus::Running => Some(WebhookEvent::Started),
            JobStatus::Completed => Some(WebhookEvent::Completed),
            JobStatus::Failed => Some(WebhookEvent::Failed),
            JobStatus::Cancelled => Some(WebhookEvent::Cancelled),
        }
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebhookEvent {
    type Err = InvalidWebhookEvent;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WebhookEvent::ALL.into_iter().find(|e| e.as_str() == s).ok_or_else(|| InvalidWebhookEvent(s.to_owned()))
    }
}

/// Who asked for a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionSource {
    /// The job's own `webhook_url`: checked against [`address`] rules at submit and at delivery.
    Job,
    /// The server's `WEBHOOK_URL`, set by its operator: trusted, not checked against them.
    Server,
}

/// One URL told about some of a job's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSubscription {
    /// An `http` or `https` URL.
    pub url: String,
    /// The events sent to it (never empty).
    pub events: Vec<WebhookEvent>,
    /// Who asked for it.
    pub source: SubscriptionSource,
}

impl WebhookSubscription {
    /// A job's own subscription from its request fields: `url` with `events` (the
    /// [`WebhookEvent::DEFAULT`] four when `None`; duplicates dropped). `None` without a URL.
    ///
    /// # Errors
    /// [`WebhookError::EventsWithoutUrl`], [`WebhookError::NoEvents`].
    pub fn for_job(
        url: Option<String>,
        events: Option<Vec<WebhookEvent>>,
    ) -> Result<Option<WebhookSubscription>, WebhookError> {
        let Some(url) = url else {
            return if events.is_some() { Err(WebhookError::EventsWithoutUrl) } else { Ok(None) };
        };
        let mut events = events.unwrap_or_else(|| WebhookEvent::DEFAULT.to_vec());
        if events.is_empty() {
            return Err(WebhookError::NoEvents);
        }
        events.sort_unstable();
        events.dedup();
        Ok(Some(WebhookSubscription { url, events, source: SubscriptionSource::Job }))
    }

    /// Whether `event` is sent to this subscription.
    pub fn wants(&self, event: WebhookEvent) -> bool {
        self.events.contains(&event)
    }
}

/// Why a job's webhook request is refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The server has no secret to sign with, so it sends no webhooks.
    #[error("this server sends no webhooks: it has no WEBHOOK_SECRET to sign them with (its operator can set one)")]
    NotConfigured,
    /// `webhook_events` without `webhook_url`.
    #[error("webhook_events needs a webhook_url")]
    EventsWithoutUrl,
    /// `webhook_events` is an empty list.
    #[error("webhook_events is empty; name at least one event, or leave it out for the default four")]
    NoEvents,
    /// The URL is refused.
    #[error(transparent)]
    Url(#[from] address::WebhookUrlError),
}

/// Webhook settings of the job service ([`crate::JobsConfig::webhooks`]); present only when the
/// server can sign deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The server's `WEBHOOK_URL`: told about every job's status changes (the
    /// [`WebhookEvent::DEFAULT`] events) for jobs submitted while it is set. Trusted: not held
    /// to the [`address`] rules.
    pub server_url: Option<String>,
    /// Whether jobs' own URLs may name loopback, private and link-local addresses
    /// (`WEBHOOK_ALLOW_PRIVATE`: on-premise receivers, tests).
    pub allow_private: bool,
}

impl WebhookConfig {
    /// The subscriptions a job submitted with `requested` carries: its own (checked: an
    /// `http(s)` URL whose addresses the [`address`] rules allow; stored as parsed, so the
    /// delivery calls exactly the URL that was checked), then the server's. `config` `None`:
    /// the server sends no webhooks, and a job asking for one is refused.
    ///
    /// # Errors
    /// [`WebhookError::NotConfigured`], [`WebhookError::Url`].
    pub async fn subscriptions(
        config: Option<&WebhookConfig>,
        requested: Vec<WebhookSubscription>,
    ) -> Result<Vec<WebhookSubscription>, WebhookError> {
        let own: Vec<WebhookSubscription> =
            requested.into_iter().filter(|s| s.source == SubscriptionSource::Job).collect();
        let Some(config) = config else {
            return if own.is_empty() { Ok(Vec::new()) } else { Err(WebhookError::NotConfigured) };
        };
        let mut subscriptions = Vec::with_capacity(own.len() + 1);
        for mut subscription in own {
            let url = address::parse(&subscription.url)?;
            address::check(&url, config.allow_private).await?;
            subscription.url = url.to_string();
            subscriptions.push(subscription);
        }
        if let Some(url) = &config.server_url {
            subscriptions.push(WebhookSubscription {
                url: url.clone(),
                events: WebhookEvent::DEFAULT.to_vec(),
                source: SubscriptionSource::Server,
            });
        }
        Ok(subscriptions)
    }
}

/// A delivery's id: `msg_` + 32 lowercase hex digits, sent as `webhook-id`, the same on every
/// attempt, so a receiver can drop a repeat.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeliveryId(String);

impl DeliveryId {
    /// A fresh random id.
    pub fn generate() -> DeliveryId {
        let mut bytes = [0u8; 16];
        if getrandom::fill(&mut bytes).is_err() {
            // No entropy source at all: a clock-and-counter id is still unique in this process.
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
            bytes[..8].copy_from_slice(&nanos.to_le_bytes());
            bytes[8..].copy_from_slice(&n.to_le_bytes());
        }
        let mut s = String::with_capacity(36);
        s.push_str("msg_");
        for b in bytes {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
        }
        DeliveryId(s)
    }

    /// An id as stored (not checked: stores only hold ids made by [`DeliveryId::generate`]).
    pub fn from_stored(s: String) -> DeliveryId {
        DeliveryId(s)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not delivered yet; the next attempt is due at `next_attempt_at`.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Every attempt failed ([`RetryPolicy::max_attempts`]).
    Failed,
    /// The receiver answered `410 Gone`: no more attempts.
    Gone,
}

/// The text is not a delivery state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a delivery state")]
pub struct InvalidDeliveryState(pub String);

impl DeliveryState {
    /// Every state.
    pub const ALL: [DeliveryState; 4] =
        [DeliveryState::Pending, DeliveryState::Delivered, DeliveryState::Failed, DeliveryState::Gone];

    /// The lowercase name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Gone => "gone",
        }
    }
}

impl FromStr for DeliveryState {
    type Err = InvalidDeliveryState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeliveryState::ALL.into_iter().find(|e| e.as_str() == s).ok_or_else(|| InvalidDeliveryState(s.to_owned()))
    }
}

/// One attempt to deliver: when, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// When the request was sent (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The receiver's HTTP status; `None` when no answer came (timeout, network error, refused
    /// address).
    pub status_code: Option<u16>,
    /// Why the attempt failed, when no answer came; `None` otherwise.
    pub error: Option<String>,
}

impl DeliveryAttempt {
    /// What an attempt at `at` got.
    pub fn new(at: OffsetDateTime, result: &AttemptResult) -> DeliveryAttempt {
        match result {
            AttemptResult::Status(code) => DeliveryAttempt { at, status_code: Some(*code), error: None },
            AttemptResult::Error(e) | AttemptResult::Refused(e) => {
                DeliveryAttempt { at, status_code: None, error: Some(e.clone()) }
            }
        }
    }
}

/// One event of one job for one URL: a row of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Its id (`webhook-id`).
    pub id: DeliveryId,
    /// The job.
    pub job_id: JobId,
    /// Where it goes.
    pub url: String,
    /// Who asked for it (decides whether the address rules apply).
    pub source: SubscriptionSource,
    /// What happened.
    pub event: WebhookEvent,
    /// When it happened (UTC): the payload's `timestamp`.
    pub created_at: OffsetDateTime,
    /// The job as the transition left it: the payload's `data`, the same on every attempt.
    pub job: Job,
    /// Where the delivery is.
    pub state: DeliveryState,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
    /// When the next attempt is due (UTC); `None` once the delivery is final.
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// The deliveries a transition writes: one per subscription of `job` (as the transition left
/// it) that wants `event`, due at once. Every store writes exactly these, in the transaction
/// of the transition.
pub fn outbox(job: &Job, event: WebhookEvent, at: OffsetDateTime) -> Vec<Delivery> {
    job.webhooks
        .iter()
        .filter(|s| s.wants(event))
        .map(|s| Delivery {
            id: DeliveryId::generate(),
            job_id: job.id.clone(),
            url: s.url.clone(),
            source: s.source,
            event,
            created_at: at,
            job: job.clone(),
            state: DeliveryState::Pending,
            attempts: Vec::new(),
            next_attempt_at: Some(at),
        })
        .collect()
}

/// Whether a `job.progress` delivery to `url` at `now` is due, given when the last one for
/// the same job and URL was made (`None`: never).
pub fn progress_due(last: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    last.is_none_or(|last| now - last >= PROGRESS_INTERVAL)
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The receiver answered with this HTTP status.
    Status(u16),
    /// No answer: timeout or network error; a short reason.
    Error(String),
    /// Not sent: the address rules refuse the URL's host ([`address`]); the reason. Final:
    /// the delivery fails at once, since every later attempt would be refused too.
    Refused(String),
}

/// What a delivery does after an attempt ([`RetryPolicy::next_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Done: the receiver answered 2xx.
    Delivered,
    /// Done: the receiver answered `410 Gone`.
    Gone,
    /// Done: the last allowed attempt failed, or the address rules refused the URL.
    Failed,
    /// Try again at this time (UTC).
    RetryAt(OffsetDateTime),
}

impl NextStep {
    /// The state a delivery is in after this step.
    pub fn state(self) -> DeliveryState {
        match self {
            NextStep::Delivered => DeliveryState::Delivered,
            NextStep::Gone => DeliveryState::Gone,
            NextStep::Failed => DeliveryState::Failed,
            NextStep::RetryAt(_) => DeliveryState::Pending,
        }
    }

    /// When the next attempt is due; `None` when the delivery is done.
    pub fn next_attempt_at(self) -> Option<OffsetDateTime> {
        match self {
            NextStep::RetryAt(at) => Some(at),
            _ => None,
        }
    }
}

/// When failed deliveries are tried again: exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failed attempt; each later wait doubles (each is then
    /// stretched by a random 0-25 %, so receivers that failed together are not retried in step),
    /// up to [`MAX_RETRY_DELAY`].
    pub first_delay: Duration,
    /// Attempts in all, at least 1; after the last one fails the delivery is
    /// [`DeliveryState::Failed`].
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { first_delay: Duration::from_secs(5), max_attempts: 10 }
    }
}

impl RetryPolicy {
    /// The delivery's next step after its `attempts_made`-th attempt (1 for the first) got
    /// `result` at `now`: delivered on 2xx, gone on 410, failed when the address was refused
    /// or it was the last attempt, otherwise retried after [`RetryPolicy::delay`].
    pub fn next_step(&self, attempts_made: u32, result: &AttemptResult, now: OffsetDateTime) -> NextStep {
        match result {
            AttemptResult::Status(code) if (200..300).contains(code) => NextStep::Delivered,
            AttemptResult::Status(410) => NextStep::Gone,
            AttemptResult::Refused(_) => NextStep::Failed,
            _ if attempts_made >= self.max_attempts => NextStep::Failed,
            _ => NextStep::RetryAt(now + self.delay(attempts_made, jitter())),
        }
    }

    /// The wait after the `attempts_made`-th failed attempt: `first_delay * 2^(attempts_made - 1)`,
    /// stretched by `1 + jitter / 4` (`jitter` in 0..1), at most [`MAX_RETRY_DELAY`].
    pub fn delay(&self, attempts_made: u32, jitter: f64) -> Duration {
        let doublings = attempts_made.saturating_sub(1).min(40);
        let base = self.first_delay.saturating_mul(1u32 << doublings.min(31)).min(MAX_RETRY_DELAY);
        base.mul_f64(1.0 + jitter.clamp(0.0, 1.0) / 4.0).min(MAX_RETRY_DELAY)
    }
}

/// A random number in 0..1.
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX)
}

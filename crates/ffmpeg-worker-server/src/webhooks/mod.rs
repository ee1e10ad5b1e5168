//! The webhook dispatcher: sends the deliveries that store transitions wrote into the outbox
//! (see `jobs::webhook`), signed, with retries, and records every attempt.
//!
//! One task polls the store for due deliveries ([`JobStore::claim_deliveries`], which leases
//! them so no other claimer takes them meanwhile) and hands them to a queue per URL. At most
//! [`WebhookSettings::concurrency`] requests are in flight in all, and at most
//! [`WebhookSettings::per_url`] to one URL; a URL that has its share in flight and as many
//! again waiting is left out of the next claims. So a receiver that hangs holds at most its
//! own share of the slots, each for at most the request timeout, and deliveries to every other
//! URL go on. After each attempt [`RetryPolicy::next_step`] decides (delivered on 2xx, gone on
//! 410, failed at once when the address rules refuse the URL, retried with backoff otherwise,
//! failed after the last attempt) and the store records it.
//!
//! Delivery is at least once: a process killed mid-request leaves the delivery leased, and it
//! is sent again when the lease ends ([`WebhookSettings::lease`]); receivers dedupe on
//! `webhook-id`. A delivery recorded as delivered is never sent again.

mod send;
pub mod sign;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs::JobStore;
use jobs::webhook::{Delivery, DeliveryAttempt, DeliveryId, NextStep, RetryPolicy};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use send::{AttemptKind, Sender};
pub use sign::{Secret, SecretError};

/// Counter of delivery attempts, labelled `result` ([`AttemptKind`]: success, gone,
/// http_error, timeout, refused, network).
pub const METRIC_ATTEMPTS: &str = "ffmpeg_worker_webhook_attempts_total";
/// Counter of deliveries that reached a final state, labelled `outcome` (delivered, failed,
/// gone).
pub const METRIC_DELIVERIES: &str = "ffmpeg_worker_webhook_deliveries_total";

/// The dispatcher's settings.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The signing key.
    pub secret: Secret,
    /// Backoff and attempt limit.
    pub retry: RetryPolicy,
    /// Longest wait for a receiver's answer (connection included).
    pub timeout: Duration,
    /// Most requests in flight at once.
    pub concurrency: usize,
    /// Whether jobs' own URLs may reach private addresses (the address rules are off).
    pub allow_private: bool,
}

impl WebhookSettings {
    /// Most requests in flight to one URL: a quarter of [`WebhookSettings::concurrency`]
    /// (at least 1), so one hanging receiver cannot hold every slot.
    pub fn per_url(&self) -> usize {
        (self.concurrency / 4).max(1)
    }

    /// How long a claim holds a delivery: long enough to wait behind two full rounds of its
    /// URL's requests and make its own, plus a margin.
    pub fn lease(&self) -> Duration {
        self.timeout * 3 + Duration::from_secs(10)
    }

    /// How often the store is polled for due deliveries when nothing wakes the dispatcher:
    /// half the first backoff, between 50 ms and 1 s.
    fn poll_interval(&self) -> Duration {
        (self.retry.first_delay / 2).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// Deliveries held by this process.
#[derive(Debug, Default)]
struct Held {
    /// Per URL: requests in flight, and claimed deliveries waiting for a slot.
    urls: HashMap<String, UrlQueue>,
    /// Every held delivery (in flight or waiting): a delivery claimed again after its lease
    /// ran out while still held here is not sent twice by this process.
    ids: HashSet<DeliveryId>,
    /// Requests in flight, all URLs.
    active: usize,
}

#[derive(Debug, Default)]
struct UrlQueue {
    active: usize,
    waiting: VecDeque<Delivery>,
}

/// The dispatcher (see the [module docs](self)).
pub struct Dispatcher {
    store: Arc<dyn JobStore>,
    settings: WebhookSettings,
    sender: Sender,
    held: Mutex<Held>,
    /// Woken when a slot frees up or new deliveries may be due.
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher over `store`. `wake` may be notified whenever deliveries may have been
    /// written (it also polls).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(
        store: Arc<dyn JobStore>,
        settings: WebhookSettings,
        wake: Arc<Notify>,
    ) -> Result<Arc<Dispatcher>, reqwest::Error> {
        let sender = Sender::new(settings.timeout, settings.allow_private)?;
        for kind in AttemptKind::ALL {
            metrics::counter!(METRIC_ATTEMPTS, "result" => kind.as_str()).absolute(0);
        }
        for outcome in ["delivered", "failed", "gone"] {
            metrics::counter!(METRIC_DELIVERIES, "outcome" => outcome).absolute(0);
        }
        Ok(Arc::new(Dispatcher { store, settings, sender, held: Mutex::new(Held::default()), wake }))
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims and sends due deliveries until `stop` fires. Requests in flight then are dropped
    /// with the runtime; their deliveries are sent again after their lease.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let cap = self.settings.concurrency.max(1);
        let per_url = self.settings.per_url();
        loop {
            if stop.is_cancelled() {
                return;
            }
            let (room, skip) = {
                let held = self.held();
                let room = (cap * 2).saturating_sub(held.ids.len()).min(256);
                let skip: Vec<String> = held
                    .urls
                    .iter()
                    .filter(|(_, q)| q.active + q.waiting.len() >= per_url * 2)
                    .map(|(url, _)| url.clone())
                    .collect();
                (room, skip)
            };
            let mut full = false;
            if room > 0 {
                let now = OffsetDateTime::now_utc();
                match self.store.claim_deliveries(now, self.settings.lease(), room as u32, &skip).await {
                    Ok(batch) => {
                        full = batch.len() == room;
                        self.hold(batch);
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed; retrying"),
                }
            }
            self.pump();
            if full {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.poll_interval()) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Queues claimed deliveries behind their URL (skipping any this process already holds).
    fn hold(&self, batch: Vec<Delivery>) {
        let mut held = self.held();
        for delivery in batch {
            if held.ids.insert(delivery.id.clone()) {
                held.urls.entry(delivery.url.clone()).or_default().waiting.push_back(delivery);
            }
        }
    }

    /// Starts waiting deliveries while slots are free (in all, and per URL).
    fn pump(self: &Arc<Self>) {
        let cap = self.settings.concurrency.max(1);
        let per_url = self.settings.per_url();
        let mut held = self.held();
        let mut start = Vec::new();
        let mut active = held.active;
        for queue in held.urls.values_mut() {
            while active < cap && queue.active < per_url {
                let Some(delivery) = queue.waiting.pop_front() else { break };
                queue.active += 1;
                active += 1;
                start.push(delivery);
            }
        }
        held.active = active;
        held.urls.retain(|_, q| q.active > 0 || !q.waiting.is_empty());
        drop(held);
        for delivery in start {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                let (id, url) = (delivery.id.clone(), delivery.url.clone());
                this.deliver(delivery).await;
                {
                    let mut held = this.held();
                    held.ids.remove(&id);
                    held.active = held.active.saturating_sub(1);
                    if let Some(queue) = held.urls.get_mut(&url) {
                        queue.active = queue.active.saturating_sub(1);
                    }
                }
                this.pump();
                this.wake.notify_one();
            });
        }
    }

    /// One attempt, and its record.
    async fn deliver(&self, delivery: Delivery) {
        let at = OffsetDateTime::now_utc();
        let body = crate::wire::webhook_body(&delivery);
        let (result, kind) = self.sender.send(&delivery, body, &self.settings.secret).await;
        metrics::counter!(METRIC_ATTEMPTS, "result" => kind.as_str()).increment(1);
        let attempts = u32::try_from(delivery.attempts.len()).unwrap_or(u32::MAX).saturating_add(1);
        let next = self.settings.retry.next_step(attempts, &result, OffsetDateTime::now_utc());
        let attempt = DeliveryAttempt::new(at, &result);
        tracing::debug!(
            delivery = %delivery.id, job = %delivery.job_id, event = %delivery.event, attempt = attempts,
            result = ?result, "webhook attempt"
        );
        // The store may be briefly unable to write: a few tries, then the lease runs out and
        // the delivery is sent again (at least once).
        let mut wait = Duration::from_millis(100);
        for _ in 0..5 {
            match self.store.record_delivery_attempt(&delivery.id, &attempt, next).await {
                Ok(true) => {
                    let outcome = match next {
                        NextStep::Delivered => Some("delivered"),
                        NextStep::Gone => Some("gone"),
                        NextStep::Failed => Some("failed"),
                        NextStep::RetryAt(_) => None,
                    };
                    if let Some(outcome) = outcome {
                        metrics::counter!(METRIC_DELIVERIES, "outcome" => outcome).increment(1);
                        if outcome != "delivered" {
                            tracing::warn!(delivery = %delivery.id, job = %delivery.job_id, outcome, "webhook delivery stopped");
                        }
                    }
                    return;
                }
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(delivery = %delivery.id, error = %e, "recording a webhook attempt failed");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
}

//! Webhooks in the `jobs` crate: the outbox every store writes with its transitions (a
//! conformance suite over every store), claiming and recording deliveries, the retry
//! schedule, and the address rules against server-side request forgery.

use std::sync::Arc;
use std::time::Duration;

use jobs::store::CancelOutcome;
use jobs::webhook::address::{self, WebhookUrlError};
use jobs::webhook::{
    AttemptResult, Delivery, DeliveryAttempt, DeliveryState, NextStep, RetryPolicy, SubscriptionSource, WebhookConfig,
    WebhookError, WebhookEvent, WebhookSubscription,
};
use jobs::{JobStatus, JobStore, Outcome, Progress, SqliteStore, SubmitOptions};
use time::OffsetDateTime;

use crate::fixture::{Store, conformance};

conformance!(
    no_subscription_no_delivery,
    every_status_change_writes_its_deliveries,
    progress_only_when_listed_and_at_most_once_a_second,
    cancel_of_a_queued_job_writes_cancelled,
    recover_out_of_attempts_writes_failed,
    claimed_deliveries_are_leased,
    claims_leave_out_skipped_urls,
    attempts_are_recorded_until_final,
    purge_keeps_pending_deliveries,
);

fn subscription(url: &str, events: &[WebhookEvent]) -> WebhookSubscription {
    WebhookSubscription { url: url.to_owned(), events: events.to_vec(), source: SubscriptionSource::Job }
}

fn server(url: &str) -> WebhookSubscription {
    WebhookSubscription {
        url: url.to_owned(),
        events: WebhookEvent::DEFAULT.to_vec(),
        source: SubscriptionSource::Server,
    }
}

async fn submit_with(store: &Store, webhooks: Vec<WebhookSubscription>) -> jobs::Job {
    store.insert("-i a.mp4 b.mp4".to_owned(), SubmitOptions { webhooks, ..SubmitOptions::default() }).await.unwrap()
}

fn events(deliveries: &[Delivery]) -> Vec<(String, WebhookEvent)> {
    deliveries.iter().map(|d| (d.url.clone(), d.event)).collect()
}

async fn no_subscription_no_delivery(store: &Store) {
    let job = submit_with(store, Vec::new()).await;
    store.claim_next(&[]).await.unwrap().unwrap();
    store.update_progress(&job.id, &Progress::default()).await.unwrap();
    store.finish(&job.id, Outcome::Completed { output_files: Vec::new(), outputs: Vec::new() }, "").await.unwrap();
    assert!(store.deliveries(&job.id).await.unwrap().is_empty());
    let far = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    assert!(store.claim_deliveries(far, Duration::from_secs(10), 100, &[]).await.unwrap().is_empty());
}

/// started and completed (and failed, cancelled through finish), one delivery per subscribed
/// URL, each with the job as the transition left it.
async fn every_status_change_writes_its_deliveries(store: &Store) {
    let own = subscription("http://a.example/hook", &WebhookEvent::DEFAULT);
    let only_completed = subscription("http://b.example/hook", &[WebhookEvent::Completed]);
    let job = submit_with(store, vec![own, only_completed, server("http://ops.example/all")]).await;
    assert_eq!(job.webhooks.len(), 3);
    assert!(store.deliveries(&job.id).await.unwrap().is_empty(), "queued writes nothing");
    let claimed = store.claim_next(&[]).await.unwrap().unwrap();
    store
        .finish(&job.id, Outcome::Completed { output_files: vec!["b.mp4".to_owned()], outputs: Vec::new() }, "log")
        .await
        .unwrap();
    let deliveries = store.deliveries(&job.id).await.unwrap();
    assert_eq!(
        events(&deliveries),
        vec![
            ("http://a.example/hook".to_owned(), WebhookEvent::Started),
            ("http://ops.example/all".to_owned(), WebhookEvent::Started),
            ("http://a.example/hook".to_owned(), WebhookEvent::Completed),
            ("http://b.example/hook".to_owned(), WebhookEvent::Completed),
            ("http://ops.example/all".to_owned(), WebhookEvent::Completed),
        ]
    );
    let started = &deliveries[0];
    assert_eq!(started.job.status, JobStatus::Running);
    assert_eq!(started.job.started_at, claimed.started_at);
    assert_eq!(Some(started.created_at), claimed.started_at);
    let completed = &deliveries[2];
    assert_eq!(completed.job.status, JobStatus::Completed);
    assert_eq!(completed.job.output_files, vec!["b.mp4".to_owned()]);
    assert_eq!(deliveries[4].source, SubscriptionSource::Server);
    for d in &deliveries {
        assert_eq!(d.state, DeliveryState::Pending);
        assert!(d.attempts.is_empty());
        assert_eq!(d.next_attempt_at, Some(d.created_at));
        assert!(d.id.as_str().starts_with("msg_"));
    }
    let ids: std::collections::HashSet<_> = deliveries.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids.len(), deliveries.len(), "ids are distinct");

    for (outcome, event) in [
        (Outcome::Failed { error: "boom".to_owned() }, WebhookEvent::Failed),
        (Outcome::Cancelled, WebhookEvent::Cancelled),
    ] {
        let job = submit_with(store, vec![subscription("http://a.example/x", &WebhookEvent::DEFAULT)]).await;
        store.claim_next(&[]).await.unwrap().unwrap();
        store.finish(&job.id, outcome, "").await.unwrap();
        let deliveries = store.deliveries(&job.id).await.unwrap();
        assert_eq!(deliveries.iter().map(|d| d.event).collect::<Vec<_>>(), vec![WebhookEvent::Started, event]);
    }
}

async fn progress_only_when_listed_and_at_most_once_a_second(store: &Store) {
    let with = subscription("http://a.example/p", &[WebhookEvent::Progress, WebhookEvent::Completed]);
    let without = subscription("http://b.example/p", &WebhookEvent::DEFAULT);
    let job = submit_with(store, vec![with, without]).await;
    store.claim_next(&[]).await.unwrap().unwrap();
    let progress = Progress { frame: Some(5), ..Progress::default() };
    store.update_progress(&job.id, &progress).await.unwrap();
    // Within the same second: throttled.
    store.update_progress(&job.id, &Progress { frame: Some(6), ..Progress::default() }).await.unwrap();
    let deliveries = store.deliveries(&job.id).await.unwrap();
    let progress_rows: Vec<_> = deliveries.iter().filter(|d| d.event == WebhookEvent::Progress).collect();
    assert_eq!(progress_rows.len(), 1, "{:?}", events(&deliveries));
    assert_eq!(progress_rows[0].url, "http://a.example/p");
    assert_eq!(progress_rows[0].job.progress.as_ref().and_then(|p| p.frame), Some(5));
    // A second later, the next one is written (polled with a deadline: no sleep as sync).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        store.update_progress(&job.id, &Progress { frame: Some(7), ..Progress::default() }).await.unwrap();
        let n = store.deliveries(&job.id).await.unwrap().iter().filter(|d| d.event == WebhookEvent::Progress).count();
        if n == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no second progress delivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let progress: Vec<_> = store
        .deliveries(&job.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.event == WebhookEvent::Progress)
        .map(|d| d.created_at)
        .collect();
    assert!(progress[1] - progress[0] >= Duration::from_secs(1));
}

async fn cancel_of_a_queued_job_writes_cancelled(store: &Store) {
    let queued = submit_with(store, vec![subscription("http://a.example/c", &WebhookEvent::DEFAULT)]).await;
    let Ok(CancelOutcome::Cancelled(_)) = store.cancel(&queued.id).await else { panic!("cancel of a queued job") };
    let deliveries = store.deliveries(&queued.id).await.unwrap();
    assert_eq!(deliveries.iter().map(|d| d.event).collect::<Vec<_>>(), vec![WebhookEvent::Cancelled]);
    assert_eq!(deliveries[0].job.status, JobStatus::Cancelled);

    // A running job's cancel is only a request: its finish writes the event, once.
    let running = submit_with(store, vec![subscription("http://a.example/c", &WebhookEvent::DEFAULT)]).await;
    store.claim_next(&[]).await.unwrap().unwrap();
    let Ok(CancelOutcome::Requested(_)) = store.cancel(&running.id).await else { panic!("cancel of a running job") };
    assert_eq!(store.deliveries(&running.id).await.unwrap().len(), 1, "only job.started");
    store.finish(&running.id, Outcome::Cancelled, "").await.unwrap();
    let events: Vec<_> = store.deliveries(&running.id).await.unwrap().iter().map(|d| d.event).collect();
    assert_eq!(events, vec![WebhookEvent::Started, WebhookEvent::Cancelled]);
}

async fn recover_out_of_attempts_writes_failed(store: &Store) {
    let job = submit_with(store, vec![subscription("http://a.example/r", &WebhookEvent::DEFAULT)]).await;
    store.claim_next(&[]).await.unwrap().unwrap();
    let recovery = store.recover(1).await.unwrap();
    assert_eq!(recovery.failed, vec![job.id.clone()]);
    let deliveries = store.deliveries(&job.id).await.unwrap();
    assert_eq!(
        deliveries.iter().map(|d| d.event).collect::<Vec<_>>(),
        vec![WebhookEvent::Started, WebhookEvent::Failed]
    );
    assert_eq!(deliveries[1].job.error.as_deref(), Some("interrupted"));

    // Re-queued (attempts left): no event.
    let again = submit_with(store, vec![subscription("http://a.example/r", &WebhookEvent::DEFAULT)]).await;
    store.claim_next(&[]).await.unwrap().unwrap();
    assert_eq!(store.recover(5).await.unwrap().requeued, vec![again.id.clone()]);
    assert_eq!(store.deliveries(&again.id).await.unwrap().len(), 1);
}

async fn claimed_deliveries_are_leased(store: &Store) {
    let job = submit_with(store, vec![subscription("http://a.example/l", &WebhookEvent::DEFAULT)]).await;
    store.claim_next(&[]).await.unwrap().unwrap();
    store.finish(&job.id, Outcome::Completed { output_files: Vec::new(), outputs: Vec::new() }, "").await.unwrap();
    let now = OffsetDateTime::now_utc() + Duration::from_secs(1);
    let lease = Duration::from_secs(30);
    let first = store.claim_deliveries(now, lease, 1, &[]).await.unwrap();
    assert_eq!(first.iter().map(|d| d.event).collect::<Vec<_>>(), vec![WebhookEvent::Started], "oldest first");
    let second = store.claim_deliveries(now, lease, 10, &[]).await.unwrap();
    assert_eq!(second.iter().map(|d| d.event).collect::<Vec<_>>(), vec![WebhookEvent::Completed]);
    assert!(store.claim_deliveries(now, lease, 10, &[]).await.unwrap().is_empty(), "both are leased");
    // The claimer died: after the lease, both are due again.
    let later = now + lease + Duration::from_secs(1);
    let again = store.claim_deliveries(later, lease, 10, &[]).await.unwrap();
    let mut ids: Vec<_> = again.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    let mut expected: Vec<_> = first.iter().chain(&second).map(|d| d.id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected);
}

/// A claimer that has enough of one receiver's deliveries in hand skips that URL and gets
/// the others' (so one hanging receiver does not hold up the rest).
async fn claims_leave_out_skipped_urls(store: &Store) {
    let busy = "http://busy.example/h".to_owned();
    for _ in 0..3 {
        let job = submit_with(store, vec![subscription(&busy, &WebhookEvent::DEFAULT)]).await;
        store.claim_next(&[]).await.unwrap().unwrap();
        store.finish(&job.id, Outcome::Cancelled, "").await.unwrap();
    }
    let other = submit_with(store, vec![subscription("http://idle.example/h", &WebhookEvent::DEFAULT)]).await;
    store.claim_next(&[]).await.unwrap().unwrap();
    let now = OffsetDateTime::now_utc() + Duration::from_secs(1);
    let lease = Duration::from_secs(30);
    let claimed = store.claim_deliveries(now, lease, 1, std::slice::from_ref(&busy)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job_id, other.id);
    assert!(store.claim_deliveries(now, lease, 10, std::slice::from_ref(&busy)).await.unwrap().is_empty());
    assert_eq!(store.claim_deliveries(now, lease, 100, &[]).await.unwrap().len(), 6);
}

async fn attempts_are_recorded_until_final(store: &Store) {
    let job = submit_with(store, vec![subscription("http://a.example/a", &WebhookEvent::DEFAULT)]).await;
    store.claim_next(&[]).await.unwrap().unwrap();
    let now = OffsetDateTime::now_utc() + Duration::from_secs(1);
    let lease = Duration::from_secs(30);
    let delivery = store.claim_deliveries(now, lease, 10, &[]).await.unwrap().remove(0);
    let failed = DeliveryAttempt::new(now, &AttemptResult::Status(500));
    let retry_at = now + Duration::from_secs(5);
    assert!(store.record_delivery_attempt(&delivery.id, &failed, NextStep::RetryAt(retry_at)).await.unwrap());
    assert!(store.claim_deliveries(retry_at - Duration::from_secs(1), lease, 10, &[]).await.unwrap().is_empty());
    let retried = store.claim_deliveries(retry_at, lease, 10, &[]).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, vec![failed.clone()]);
    let timeout = DeliveryAttempt::new(retry_at, &AttemptResult::Error("timed out".to_owned()));
    assert!(store.record_delivery_attempt(&delivery.id, &timeout, NextStep::RetryAt(retry_at)).await.unwrap());
    let ok = DeliveryAttempt::new(retry_at, &AttemptResult::Status(204));
    assert!(store.record_delivery_attempt(&delivery.id, &ok, NextStep::Delivered).await.unwrap());
    // Final: never claimed again, and a late attempt record changes nothing.
    let far = now + Duration::from_secs(86_400);
    assert!(store.claim_deliveries(far, lease, 10, &[]).await.unwrap().is_empty());
    assert!(!store.record_delivery_attempt(&delivery.id, &failed, NextStep::Failed).await.unwrap());
    let stored = store.deliveries(&job.id).await.unwrap().remove(0);
    assert_eq!(stored.state, DeliveryState::Delivered);
    assert_eq!(stored.next_attempt_at, None);
    assert_eq!(stored.attempts, vec![failed, timeout, ok]);
    assert_eq!(stored.attempts[1].status_code, None);
    assert_eq!(stored.attempts[1].error.as_deref(), Some("timed out"));
}

async fn purge_keeps_pending_deliveries(store: &Store) {
    let job = submit_with(store, vec![subscription("http://a.example/g", &WebhookEvent::DEFAULT)]).await;
    store.claim_next(&[]).await.unwrap().unwrap();
    store.finish(&job.id, Outcome::Completed { output_files: Vec::new(), outputs: Vec::new() }, "").await.unwrap();
    let now = OffsetDateTime::now_utc() + Duration::from_secs(1);
    let started = store.claim_deliveries(now, Duration::from_secs(30), 1, &[]).await.unwrap().remove(0);
    let gone = DeliveryAttempt::new(now, &AttemptResult::Status(410));
    store.record_delivery_attempt(&started.id, &gone, NextStep::Gone).await.unwrap();
    store.delete(&job.id).await.unwrap();
    // Deleting the job keeps its deliveries: the completed one is still sent.
    let due = store.claim_deliveries(now + Duration::from_secs(60), Duration::from_secs(30), 10, &[]).await.unwrap();
    assert_eq!(due.iter().map(|d| d.event).collect::<Vec<_>>(), vec![WebhookEvent::Completed]);
    store.purge_finished_before(now + Duration::from_secs(3600)).await.unwrap();
    let pending =
        store.claim_deliveries(now + Duration::from_secs(600), Duration::from_secs(30), 10, &[]).await.unwrap();
    assert_eq!(pending.len(), 1, "a pending delivery survives the purge");
    assert_eq!(store.deliveries(&job.id).await.unwrap().len(), 1, "the gone one was purged");
}

/// The outbox is written with the transition: after the process is gone (the store closed
/// without a word), every delivery of every acknowledged transition is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_outbox_survives_reopening() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    let job = store
        .insert(
            "x".to_owned(),
            SubmitOptions {
                webhooks: vec![subscription("http://a.example/s", &WebhookEvent::ALL)],
                ..SubmitOptions::default()
            },
        )
        .await
        .unwrap();
    store.claim_next(&[]).await.unwrap().unwrap();
    store.finish(&job.id, Outcome::Failed { error: "x".to_owned() }, "").await.unwrap();
    let before = store.deliveries(&job.id).await.unwrap();
    drop(store);
    let reopened = SqliteStore::open(&url).await.unwrap();
    assert_eq!(reopened.deliveries(&job.id).await.unwrap(), before);
    assert_eq!(reopened.get(&job.id).await.unwrap().unwrap().webhooks, job.webhooks);
}

// ------------------------------------------------------------------------------------------
// Retry schedule.

#[test]
fn retry_policy_doubles_with_jitter_and_stops() {
    let policy = RetryPolicy { first_delay: Duration::from_secs(5), max_attempts: 4 };
    assert_eq!(policy.delay(1, 0.0), Duration::from_secs(5));
    assert_eq!(policy.delay(2, 0.0), Duration::from_secs(10));
    assert_eq!(policy.delay(3, 0.0), Duration::from_secs(20));
    assert_eq!(policy.delay(3, 1.0), Duration::from_secs(25));
    assert_eq!(policy.delay(200, 0.5), jobs::webhook::MAX_RETRY_DELAY);
    let now = OffsetDateTime::now_utc();
    assert_eq!(policy.next_step(1, &AttemptResult::Status(200), now), NextStep::Delivered);
    assert_eq!(policy.next_step(1, &AttemptResult::Status(299), now), NextStep::Delivered);
    assert_eq!(policy.next_step(1, &AttemptResult::Status(410), now), NextStep::Gone);
    assert_eq!(policy.next_step(4, &AttemptResult::Status(410), now), NextStep::Gone);
    for result in [AttemptResult::Status(500), AttemptResult::Status(301), AttemptResult::Error("x".to_owned())] {
        let NextStep::RetryAt(at) = policy.next_step(1, &result, now) else { panic!("{result:?} retried") };
        assert!(at - now >= Duration::from_secs(5) && at - now <= Duration::from_millis(6250), "{result:?}");
        assert_eq!(policy.next_step(4, &result, now), NextStep::Failed);
    }
    // A refused address would be refused again: the first refusal ends the delivery.
    assert_eq!(policy.next_step(1, &AttemptResult::Refused("refused: loopback".to_owned()), now), NextStep::Failed);
    let refused = DeliveryAttempt::new(now, &AttemptResult::Refused("refused: loopback".to_owned()));
    assert_eq!((refused.status_code, refused.error.as_deref()), (None, Some("refused: loopback")));
}

// ------------------------------------------------------------------------------------------
// Addresses (SSRF).

#[track_caller]
fn check_refused(url: &str, range: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let parsed = address::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    match rt.block_on(address::check(&parsed, false)) {
        Err(WebhookUrlError::Forbidden { range: got, .. }) => assert_eq!(got, range, "{url}"),
        other => panic!("{url}: expected refusal as {range}, got {other:?}"),
    }
    // The operator's switch lets it through.
    assert!(rt.block_on(address::check(&parsed, true)).is_ok(), "{url} with allow_private");
}

#[test]
fn every_spelling_of_a_private_address_is_refused() {
    for (url, range) in [
        ("http://127.0.0.1/", "a loopback"),
        ("http://127.1/", "a loopback"),
        ("http://2130706433/", "a loopback"),
        ("http://0x7f000001/", "a loopback"),
        ("http://0x7f.0.0.1/", "a loopback"),
        ("http://0177.0.0.1/", "a loopback"),
        ("http://017700000001/", "a loopback"),
        ("http://[::1]/", "a loopback"),
        ("http://[::ffff:127.0.0.1]/", "a loopback"),
        ("http://[::ffff:7f00:1]/", "a loopback"),
        ("http://[::127.0.0.1]/", "a loopback"),
        ("http://[64:ff9b::127.0.0.1]/", "a loopback"),
        ("http://[2002:7f00:1::]/", "a loopback"),
        ("http://localhost/", "a loopback"),
        ("http://localhost./", "a loopback"),
        ("http://LOCALHOST:8080/x", "a loopback"),
        ("http://0.0.0.0/", "an unspecified (\"this network\")"),
        ("http://0/", "an unspecified (\"this network\")"),
        ("http://[::]/", "an unspecified"),
        ("http://10.1.2.3/", "a private"),
        ("http://172.16.0.1/", "a private"),
        ("http://172.31.255.255/", "a private"),
        ("http://192.168.1.1/", "a private"),
        ("http://0xc0a80101/", "a private"),
        ("http://[::ffff:10.0.0.1]/", "a private"),
        ("http://[fd00:ec2::254]/", "a private (unique local)"),
        ("http://169.254.169.254/latest/meta-data/", "a metadata"),
        ("http://0xa9fea9fe/", "a metadata"),
        ("http://2852039166/", "a metadata"),
        ("http://[::ffff:169.254.169.254]/", "a metadata"),
        ("http://169.254.1.1/", "a link-local"),
        ("http://[fe80::1]/", "a link-local"),
        ("http://100.100.100.200/", "a shared (carrier-grade NAT)"),
        ("http://224.0.0.1/", "a multicast"),
        ("http://255.255.255.255/", "a reserved or broadcast"),
    ] {
        check_refused(url, range);
    }
}

#[test]
fn public_addresses_pass() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for url in ["http://93.184.215.14/", "https://8.8.8.8:8443/hook", "http://[2606:4700::1111]/", "http://172.32.0.1/"]
    {
        let parsed = address::parse(url).unwrap();
        let addrs = rt.block_on(address::check(&parsed, false)).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(addrs.len(), 1, "{url}");
    }
}

#[test]
fn only_http_urls_with_a_host() {
    for url in ["ftp://example.com/", "file:///etc/passwd", "gopher://x/", "javascript:alert(1)", "unix:/run/x.sock"] {
        assert!(matches!(address::parse(url), Err(WebhookUrlError::Scheme { .. })), "{url}");
    }
    assert!(matches!(address::parse("not a url"), Err(WebhookUrlError::Parse { .. })));
    assert!(matches!(address::parse("http://"), Err(WebhookUrlError::Parse { .. })));
    let long = format!("http://example.com/{}", "a".repeat(address::MAX_URL_BYTES));
    assert!(matches!(address::parse(&long), Err(WebhookUrlError::TooLong(_))));
}

#[tokio::test]
async fn subscriptions_need_a_secret_and_a_checked_url() {
    let own = || vec![subscription("http://127.0.0.1:9/x", &WebhookEvent::DEFAULT)];
    assert!(matches!(WebhookConfig::subscriptions(None, own()).await, Err(WebhookError::NotConfigured)));
    assert_eq!(WebhookConfig::subscriptions(None, Vec::new()).await.unwrap(), Vec::new());
    let strict = WebhookConfig { server_url: Some("http://127.0.0.1:1/ops".to_owned()), allow_private: false };
    assert!(matches!(
        WebhookConfig::subscriptions(Some(&strict), own()).await,
        Err(WebhookError::Url(WebhookUrlError::Forbidden { .. }))
    ));
    // The server's own URL is the operator's: trusted, and added to every job.
    let subs = WebhookConfig::subscriptions(Some(&strict), Vec::new()).await.unwrap();
    assert_eq!(subs, vec![server("http://127.0.0.1:1/ops")]);
    let open = WebhookConfig { allow_private: true, ..strict };
    let spelled = vec![subscription("http://0x7f.1:9/x", &WebhookEvent::DEFAULT)];
    let subs = WebhookConfig::subscriptions(Some(&open), spelled).await.unwrap();
    assert_eq!(subs[0].url, "http://127.0.0.1:9/x", "stored as parsed");
    assert_eq!(subs.len(), 2);
    assert!(matches!(WebhookSubscription::for_job(None, Some(vec![])), Err(WebhookError::EventsWithoutUrl)));
    assert!(matches!(
        WebhookSubscription::for_job(Some("http://x/".into()), Some(vec![])),
        Err(WebhookError::NoEvents)
    ));
    let s = WebhookSubscription::for_job(
        Some("http://x/".into()),
        Some(vec![WebhookEvent::Progress, WebhookEvent::Started, WebhookEvent::Progress]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(s.events, vec![WebhookEvent::Started, WebhookEvent::Progress]);
}

#[allow(dead_code)]
fn _assert_store_object_safe(_: Arc<dyn JobStore>) {}

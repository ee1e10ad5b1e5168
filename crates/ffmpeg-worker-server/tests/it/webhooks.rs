//! Webhooks end to end: the real binary, a real HTTP receiver on 127.0.0.1 (axum, in the
//! test), signatures checked with an independent HMAC (the `hmac` and `sha2` crates here, not
//! the server's signing code), retries, 410 Gone, a hanging receiver, the address rules at
//! submit, and the outbox across a `kill -9`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};

use crate::support::{Db, Server, Store, client, on_each_store, wait_finished};

/// 32 random-looking bytes, as `whsec_` + base64.
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD2y7cN1OBvg0=";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct ReceiverState {
    log: Mutex<Vec<Received>>,
    /// `/fail` answers 503 while this is set.
    failing: AtomicBool,
    /// `/hang` requests open now.
    hanging: Mutex<usize>,
}

/// A webhook receiver on 127.0.0.1 whose paths answer differently: `/ok` 204, `/flaky` 500 to
/// the first request of each `webhook-id` then 200, `/gone` 410, `/fail` 503 while `failing`
/// is set (then 200), `/hang` never.
struct Receiver {
    base: String,
    state: Arc<ReceiverState>,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let received = Received {
        path: path.clone(),
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: body.to_vec(),
    };
    let seen_before = state.log.lock().unwrap().iter().any(|r| r.id == received.id);
    state.log.lock().unwrap().push(received);
    match path.as_str() {
        "ok" => StatusCode::NO_CONTENT,
        "flaky" if !seen_before => StatusCode::INTERNAL_SERVER_ERROR,
        "flaky" => StatusCode::OK,
        "gone" => StatusCode::GONE,
        "fail" if state.failing.load(Ordering::SeqCst) => StatusCode::SERVICE_UNAVAILABLE,
        "fail" => StatusCode::OK,
        "hang" => {
            *state.hanging.lock().unwrap() += 1;
            std::future::pending::<()>().await;
            StatusCode::OK
        }
        _ => StatusCode::NOT_FOUND,
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new().route("/{*path}", axum::routing::post(receive)).with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { base, state }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    fn received(&self) -> Vec<Received> {
        self.state.log.lock().unwrap().clone()
    }

    /// Waits (deadline 60 s) until `done` holds for what was received; returns it.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{what}: got {received:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Verifies a Standard Webhooks signature independently of the server's code: the receiver
/// example of docs/api.md, verbatim (so the documented example is tested too).
fn verify(secret: &str, r: &Received) -> bool {
    verify_doc(secret, &r.id, &r.timestamp, &r.signature, &r.body)
}

// --- docs/api.md, "Verifying a signature", Rust ---
fn verify_doc(secret: &str, id: &str, timestamp: &str, signature: &str, body: &[u8]) -> bool {
    let Some(key) = secret.strip_prefix("whsec_").and_then(|k| STANDARD.decode(k).ok()) else { return false };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    if !timestamp.parse::<i64>().is_ok_and(|ts| (ts - now).abs() <= 300) {
        return false;
    }
    signature.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|sig| {
        let (Ok(sig), Ok(mut mac)) = (STANDARD.decode(sig), Hmac::<sha2::Sha256>::new_from_slice(&key)) else {
            return false;
        };
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&sig).is_ok() // constant-time comparison
    })
}
// --- end of the example ---

/// The arguments that turn webhooks on: the secret, private addresses allowed (the receiver
/// is on 127.0.0.1), a short backoff.
const WEBHOOKS_ON: [&str; 5] = ["--webhook-secret", SECRET, "--webhook-allow-private", "--webhook-backoff", "200ms"];

/// The server with webhooks on ([`WEBHOOKS_ON`]) and a short timeout, and `extra`.
fn server(store: Store, extra: &[&str]) -> Server {
    let mut args = WEBHOOKS_ON.to_vec();
    args.extend_from_slice(&["--webhook-timeout", "20s"]);
    args.extend_from_slice(extra);
    Server::start_on(store, &args)
}

async fn submit_hooked(http: &reqwest::Client, server: &Server, body: Value) -> Value {
    let resp = http.post(server.url("/jobs")).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    let job: Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{job}");
    job
}

async fn deliveries(http: &reqwest::Client, server: &Server, id: &str) -> Vec<Value> {
    let resp = http.get(server.url(&format!("/jobs/{id}/webhooks"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Polls the job's deliveries until none is pending.
async fn wait_settled(http: &reqwest::Client, server: &Server, id: &str, expected: usize) -> Vec<Value> {
    wait_settled_within(http, server, id, expected, Duration::from_secs(60)).await
}

/// [`wait_settled`], for at most `limit`.
async fn wait_settled_within(
    http: &reqwest::Client,
    server: &Server,
    id: &str,
    expected: usize,
    limit: Duration,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let list = deliveries(http, server, id).await;
        if list.len() == expected && list.iter().all(|d| d["state"] != "pending") {
            return list;
        }
        assert!(start.elapsed() < limit, "deliveries not settled in {limit:?}: {list:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn signed_retried_until_2xx_with_the_same_id_and_body_and_listed(store: Store) {
    let receiver = Receiver::start().await;
    let server = server(store, &[]);
    let http = client();
    let job = submit_hooked(
        &http,
        &server,
        json!({"command": "-i missing.mp4 out.mp4", "webhook_url": receiver.url("flaky"),
               "metadata": {"k": "v"}}),
    )
    .await;
    let id = job["id"].as_str().unwrap();
    assert_eq!(job["webhook_url"], receiver.url("flaky"));
    assert_eq!(job["webhook_events"], json!(["job.started", "job.completed", "job.failed", "job.cancelled"]));
    let done = wait_finished(&http, &server, id, Duration::from_secs(60)).await.pop().unwrap();
    assert_eq!(done["status"], "failed");

    // Each of the two events: a 500 first, then the same request again, answered 200.
    let received = receiver.wait_for("4 requests", |r| r.len() >= 4).await;
    let mut by_id: HashMap<String, Vec<Received>> = HashMap::new();
    for r in &received {
        by_id.entry(r.id.clone()).or_default().push(r.clone());
    }
    assert_eq!(by_id.len(), 2, "{received:#?}");
    for (msg_id, attempts) in &by_id {
        assert!(msg_id.starts_with("msg_"), "{msg_id}");
        assert_eq!(attempts.len(), 2, "{msg_id}: {attempts:#?}");
        assert_eq!(attempts[0].body, attempts[1].body, "the same body on every attempt");
        for a in attempts {
            assert!(verify(SECRET, a), "signature of {msg_id} does not verify: {a:?}");
            let ts: i64 = a.timestamp.parse().unwrap();
            assert!((ts - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 300, "timestamp {ts}");
        }
        // A signature made with another key does not verify (the check can fail).
        assert!(!verify("whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=", &attempts[0]));
    }
    let bodies: Vec<Value> = by_id.values().map(|a| a[0].json()).collect();
    let types: HashSet<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, HashSet::from(["job.started", "job.failed"]));
    let failed = bodies.iter().find(|b| b["type"] == "job.failed").unwrap();
    assert_eq!(failed["data"], done, "data is the job as GET /jobs/{{id}} shows it");
    assert_eq!(failed["timestamp"], done["completed_at"]);
    let started = bodies.iter().find(|b| b["type"] == "job.started").unwrap();
    assert_eq!(started["data"]["status"], "running");
    assert_eq!(started["data"]["metadata"], json!({"k": "v"}));

    let list = wait_settled(&http, &server, id, 2).await;
    for d in &list {
        assert_eq!(d["state"], "delivered", "{d}");
        assert_eq!(d["url"], receiver.url("flaky"));
        let codes: Vec<&Value> = d["attempts"].as_array().unwrap().iter().map(|a| &a["status_code"]).collect();
        assert_eq!(codes, [&json!(500), &json!(200)], "{d}");
        assert!(d["next_attempt_at"].is_null());
        assert!(by_id.contains_key(d["id"].as_str().unwrap()));
    }
    assert_eq!(list[0]["type"], "job.started");
    assert_eq!(list[1]["type"], "job.failed");
    // Delivered is final: nothing more arrives.
    assert_eq!(receiver.received().len(), 4);

    let metrics = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = |prefix: &str| metrics.lines().find(|l| l.starts_with(prefix)).unwrap_or_default().to_owned();
    assert!(line("ffmpeg_worker_webhook_deliveries_total{outcome=\"delivered\"}").ends_with(" 2"), "{metrics}");
    assert!(line("ffmpeg_worker_webhook_attempts_total{result=\"http_error\"}").ends_with(" 2"), "{metrics}");
    assert!(line("ffmpeg_worker_webhook_attempts_total{result=\"success\"}").ends_with(" 2"), "{metrics}");
}
on_each_store!(signed_retried_until_2xx_with_the_same_id_and_body_and_listed);

async fn gone_stops_retries_and_a_hanging_receiver_delays_no_other(store: Store) {
    let receiver = Receiver::start().await;
    // 4 slots, at most 1 per URL.
    let server = server(store, &["--webhook-concurrency", "4", "--webhook-max-attempts", "3"]);
    let http = client();
    let hung = submit_hooked(
        &http,
        &server,
        json!({"command": "-i missing.mp4 out.mp4", "webhook_url": receiver.url("hang")}),
    )
    .await;
    wait_finished(&http, &server, hung["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    receiver.wait_for("the hanging receiver holds a request", |_| *receiver.state.hanging.lock().unwrap() >= 1).await;

    let gone = submit_hooked(
        &http,
        &server,
        json!({"command": "-i missing.mp4 out.mp4", "webhook_url": receiver.url("gone"),
               "webhook_events": ["job.failed"]}),
    )
    .await;
    let id = gone["id"].as_str().unwrap();
    let list = wait_settled(&http, &server, id, 1).await;
    assert_eq!(list[0]["state"], "gone", "{list:#?}");
    assert_eq!(list[0]["type"], "job.failed");
    assert_eq!(list[0]["attempts"].as_array().unwrap().len(), 1, "410 stops at once");
    // ... while the hanging receiver still holds its request (within its 20 s timeout).
    assert!(*receiver.state.hanging.lock().unwrap() >= 1);
    assert!(receiver.received().iter().filter(|r| r.path == "gone").count() == 1);
    let hung_list = deliveries(&http, &server, hung["id"].as_str().unwrap()).await;
    assert!(hung_list.iter().all(|d| d["state"] == "pending"), "{hung_list:#?}");
}
on_each_store!(gone_stops_retries_and_a_hanging_receiver_delays_no_other);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_need_a_secret_and_a_public_http_url() {
    let http = client();
    // No secret: a job asking for a webhook is refused, not accepted unsigned.
    let plain = Server::start(&[]);
    let resp = http
        .post(plain.url("/jobs"))
        .json(&json!({"command": "-i a.mp4 b.mp4", "webhook_url": "https://example.com/h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/invalid-webhook");
    assert!(problem["detail"].as_str().unwrap().contains("WEBHOOK_SECRET"), "{problem}");

    // With a secret but private addresses not allowed: every spelling of one is refused.
    let strict = Server::start(&["--webhook-secret", SECRET]);
    for (url, expected) in [
        ("http://127.0.0.1:9/h", "loopback"),
        ("http://2130706433/h", "loopback"),
        ("http://0x7f.1/h", "loopback"),
        ("http://[::ffff:127.0.0.1]/h", "loopback"),
        ("http://localhost./h", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://10.0.0.1/h", "private"),
        ("ftp://example.com/h", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("not a url", "not a valid URL"),
    ] {
        let resp = http
            .post(strict.url("/jobs"))
            .json(&json!({"command": "-i a.mp4 b.mp4", "webhook_url": url}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(status, 422, "{url}: {problem}");
        assert_eq!(problem["type"], "/problems/invalid-webhook", "{url}");
        assert!(problem["detail"].as_str().unwrap().contains(expected), "{url}: {problem}");
    }
    for body in [
        json!({"command": "-i a.mp4 b.mp4", "webhook_events": ["job.completed"]}),
        json!({"command": "-i a.mp4 b.mp4", "webhook_url": "https://example.com/h", "webhook_events": []}),
    ] {
        let resp = http.post(strict.url("/jobs")).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 422, "{body}");
    }
    let resp = http
        .post(strict.url("/jobs"))
        .json(&json!({"command": "-i a.mp4 b.mp4", "webhook_url": "https://example.com/h",
                      "webhook_events": ["job.exploded"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422, "unknown event");
    let jobs: Value = http.get(strict.url("/jobs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jobs, json!([]), "nothing refused was queued");

    // WEBHOOK_URL without a secret stops start-up with a clear message.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ffmpeg-worker"))
        .args(["--port", "0", "--database-url", "memory:"])
        .arg("--data-path")
        .arg(dir.path())
        .env("WEBHOOK_URL", "https://example.com/all")
        .env_remove("WEBHOOK_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WEBHOOK_URL is set but WEBHOOK_SECRET is not"), "{stderr}");
}

/// The outbox is durable: events of a job whose deliveries all failed so far are still sent
/// after a `kill -9` and a restart, with the ids they had.
async fn outbox_survives_kill_9(store: Store) {
    /// The killed server's `WEBHOOK_TIMEOUT`: a delivery it held when killed is sent again once
    /// the claim's lease (three timeouts and 10 s: `WebhookSettings::lease`) has run out.
    const TIMEOUT_SECONDS: u64 = 5;
    let lease = Duration::from_secs(TIMEOUT_SECONDS * 3 + 10);
    let receiver = Receiver::start().await;
    receiver.state.failing.store(true, Ordering::SeqCst);
    let (timeout, url) = (format!("{TIMEOUT_SECONDS}s"), receiver.url("fail"));
    let mut args = WEBHOOKS_ON.to_vec();
    args.extend_from_slice(&["--webhook-timeout", &timeout, "--webhook-url", &url]);
    let server = Server::start_on(store, &args);
    let http = client();
    let job = submit_hooked(&http, &server, json!({"command": "-i missing.mp4 out.mp4"})).await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(job["webhook_url"].is_null(), "the server's WEBHOOK_URL is not the job's own");
    wait_finished(&http, &server, &id, Duration::from_secs(60)).await;
    // Both events were tried (and refused) at least once.
    receiver.wait_for("attempts of both events", |r| r.iter().map(|r| &r.id).collect::<HashSet<_>>().len() == 2).await;
    let before = deliveries(&http, &server, &id).await;
    assert_eq!(before.len(), 2);
    assert!(before.iter().all(|d| d["url"].is_null()), "the server's URL is not disclosed");
    let (data, db) = server.kill();

    receiver.state.failing.store(false, Ordering::SeqCst);
    let restarted = Server::start_in(data, db, &WEBHOOKS_ON);
    // The held deliveries wait for the killed server's lease; then a few tries at most (the
    // receiver now answers at once).
    let after = wait_settled_within(&http, &restarted, &id, 2, lease + Duration::from_secs(60)).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a["id"], b["id"]);
        assert_eq!(a["state"], "delivered", "{a}");
        let last = a["attempts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["status_code"], 200);
    }
    let ok: Vec<Received> = receiver.received().into_iter().filter(|r| r.path == "fail").collect();
    for d in &after {
        let id = d["id"].as_str().unwrap();
        let sent: Vec<&Received> = ok.iter().filter(|r| r.id == id).collect();
        assert!(sent.len() >= 2, "{id} was tried before and after the restart");
        assert!(sent.iter().all(|r| r.body == sent[0].body && verify(SECRET, r)));
    }
}
on_each_store!(outbox_survives_kill_9);

/// The address rules hold at delivery too, on the connection itself: a delivery (written
/// straight into the store, as if its name had resolved to a public address at submit) to a
/// name that resolves to loopback is refused by the resolver the request uses, and the
/// receiver listening there gets nothing. A refusal is final: the delivery fails at its first
/// attempt, with the reason, however many attempts are allowed; and every attempt is counted
/// (the metrics recorder exists before the dispatcher's first attempt).
async fn a_name_resolving_to_a_private_address_is_refused_at_delivery(kind: Store) {
    use jobs::webhook::{SubscriptionSource, WebhookEvent, WebhookSubscription};
    use jobs::{Outcome, SubmitOptions};

    let receiver = Receiver::start().await;
    let port = receiver.base.rsplit(':').next().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    let db = tokio::task::block_in_place(|| Db::new(kind));
    let (sqlite, pg) = match &db {
        Db::Sqlite(_) => (Some(jobs::SqliteStore::open(&db.url()).await.unwrap()), None),
        Db::Postgres { url, .. } => {
            (None, Some(jobs::postgres::PgStore::open(url, jobs::postgres::PgSettings::default()).await.unwrap()))
        }
    };
    let store: &dyn jobs::JobStore = match (&sqlite, &pg) {
        (Some(s), _) => s,
        (_, Some(p)) => p,
        _ => unreachable!(),
    };
    let mut ids = Vec::new();
    for host in ["localhost", "localhost.", "127.0.0.1", "[::ffff:127.0.0.1]"] {
        let webhooks = vec![WebhookSubscription {
            url: format!("http://{host}:{port}/ok"),
            events: vec![WebhookEvent::Completed],
            source: SubscriptionSource::Job,
        }];
        let job =
            store.insert("-i a.mp4 b.mp4".to_owned(), SubmitOptions { webhooks, ..Default::default() }).await.unwrap();
        store.claim_next(&[]).await.unwrap().unwrap();
        store.finish(&job.id, Outcome::Completed { output_files: Vec::new(), outputs: Vec::new() }, "").await.unwrap();
        ids.push(job.id.to_string());
    }
    if let Some(s) = &sqlite {
        s.close().await;
    }
    if let Some(p) = &pg {
        p.close().await;
    }

    let server = Server::start_in(
        data,
        db,
        &["--webhook-secret", SECRET, "--webhook-backoff", "100ms", "--webhook-max-attempts", "2"],
    );
    let http = client();
    for id in &ids {
        let list = wait_settled(&http, &server, id, 1).await;
        assert_eq!(list[0]["state"], "failed", "{list:#?}");
        let attempts = list[0]["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "a refused address is not retried: {list:#?}");
        assert!(attempts[0]["status_code"].is_null(), "{list:#?}");
        let error = attempts[0]["error"].as_str().unwrap();
        assert!(error.starts_with("refused: ") && error.contains("loopback"), "{error}");
    }
    assert!(receiver.received().is_empty(), "nothing reached the receiver: {:?}", receiver.received());
    // Attempts are counted before they are sent, so before they are recorded: exactly one per
    // delivery. An outcome is counted once recorded: it may trail the record briefly.
    let metrics = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let expected = format!("ffmpeg_worker_webhook_attempts_total{{result=\"refused\"}} {}", ids.len());
    assert!(metrics.contains(&expected), "{expected} missing from {metrics}");
    let failed = format!("ffmpeg_worker_webhook_deliveries_total{{outcome=\"failed\"}} {}", ids.len());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if metrics.contains(&failed) {
            break;
        }
        assert!(Instant::now() < deadline, "{failed} missing from {metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
on_each_store!(a_name_resolving_to_a_private_address_is_refused_at_delivery);

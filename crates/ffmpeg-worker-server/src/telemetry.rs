//! Prometheus metrics: the recorder, the HTTP middleware that counts requests by route and
//! status, and the gauges written from the store at each scrape ([`job_gauges`]).
//!
//! Metric names follow Prometheus conventions (`_total` counters, `_seconds` histograms):
//!
//! | name | type | labels |
//! |---|---|---|
//! | `ffmpeg_worker_jobs_submitted_total` | counter | |
//! | `ffmpeg_worker_jobs_finished_total` | counter | `status` |
//! | `ffmpeg_worker_job_run_seconds` | histogram | `status` |
//! | `ffmpeg_worker_jobs` | gauge | `status` (every job in the store) |
//! | `ffmpeg_worker_queue_depth` | gauge | |
//! | `ffmpeg_worker_running_jobs` | gauge | (this process) |
//! | `http_requests_total` | counter | `method`, `route`, `status` |
//! | `http_request_duration_seconds` | histogram | `method`, `route` |
//! | `ffmpeg_worker_webhook_deliveries_total` | counter | `outcome` (delivered, failed, gone) |
//! | `ffmpeg_worker_webhook_attempts_total` | counter | `result` (success, gone, http_error, timeout, refused, network) |
//!
//! HTTP labels take values from closed sets only, so `/metrics` stays the same size whatever
//! clients send: `method` is one of the standard methods or `other`, `route` is a route
//! template (`/jobs/{id}`) or `unmatched`, `status` is a class (`2xx` ... `5xx`). Requests
//! refused by authentication are counted like any other; those refused by the rate limiter
//! (outside the router) are not.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use jobs::JobStatus;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use. `None` when another recorder
/// was installed first (metrics are then not rendered).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(jobs::service::METRIC_RUN_SECONDS.to_owned()),
                    &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("http_request_duration_seconds".to_owned()),
                        &[0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(jobs::staging::METRIC_SECONDS.to_owned()),
                        &[0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0],
                    )
                });
            let recorder = builder.ok()?.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// The `method` label: a standard method's name, or `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// The `status` label: the status class.
fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Counts every request by method, route template (`unmatched` outside the routes) and
/// status class, and times it. Every label comes from a closed set (see the module docs).
pub(crate) async fn track_http(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
    // The template (`/jobs/{id}`), never the path: ids and made-up paths do not add series. A
    // wildcard (`{*path}`) is named as the OpenAPI document names it (`{path}`).
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().replace("{*", "{"));
    let response = next.run(request).await;
    let status = status_label(response.status());
    metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

/// The store-derived gauges of one scrape in the Prometheus text format: `counts` (every job
/// in this server's store, by status) and `running_here` (the jobs this process runs). They are
/// written into each response rather than set in the process-wide recorder: a value set there
/// could be overwritten by another server's scrape before this one rendered it (servers in one
/// process: the tests), and the store's counts are read for every scrape anyway.
pub(crate) fn job_gauges(counts: &jobs::store::StatusCounts, running_here: usize) -> String {
    use std::fmt::Write as _;
    let count = |status: JobStatus| counts.get(&status).copied().unwrap_or(0);
    let mut text = String::from("# TYPE ffmpeg_worker_jobs gauge\n");
    for status in JobStatus::ALL {
        let _ = writeln!(text, "ffmpeg_worker_jobs{{status=\"{}\"}} {}", status.as_str(), count(status));
    }
    let _ = write!(
        text,
        "\n# TYPE ffmpeg_worker_queue_depth gauge\nffmpeg_worker_queue_depth {}\n\n\
         # TYPE ffmpeg_worker_running_jobs gauge\nffmpeg_worker_running_jobs {running_here}\n\n",
        count(JobStatus::Queued)
    );
    text
}

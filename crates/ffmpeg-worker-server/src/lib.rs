//! `ffmpeg-worker-server`: the HTTP face of ffmpeg-worker. Glue only: routing, extractors,
//! wire types, configuration and start-up; job rules live in the `jobs` crate.
//!
//! [`app`] builds the router; the `ffmpeg-worker` binary (`main.rs`) parses configuration,
//! opens the store, starts the workers and serves it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use jobs::Jobs;
use jobs::files::Files;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

pub mod auth;
pub mod config;
pub mod connections;
pub mod error;
mod fanout;
mod files;
mod idempotency;
mod probe;
mod routes;
pub mod serve;
pub mod streams;
pub mod telemetry;
pub mod webhooks;
pub mod wire;
mod workers;

/// Settings the HTTP layer needs, besides the job service.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// The ffmpeg version start-up found (`ffmpeg version 5.1.9-0+deb12u1`), reported by
    /// `GET /ready`; `None`: no ffmpeg was checked, and `/ready` answers 503.
    pub ffmpeg_version: Option<String>,
    /// Accepted bearer tokens; empty: no authentication.
    pub api_tokens: Vec<String>,
    /// Largest request body in bytes (larger: 413), except file uploads.
    pub max_body_bytes: usize,
    /// Largest file `PUT /files/{path}` accepts, in bytes (larger: 413).
    pub max_upload_bytes: u64,
    /// Per-client-IP rate limit; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// What this node does: a `worker` node serves only `/health`, `/ready` and `/metrics`
    /// (everything else is 404).
    pub role: jobs::nodes::NodeRole,
    /// The job store's database file (SQLite), whose file system `GET /ready` names when the
    /// store's disk is full; `None`: not a file (PostgreSQL, memory).
    pub database_file: Option<std::path::PathBuf>,
}

impl Default for AppSettings {
    fn default() -> Self {
        AppSettings {
            ffmpeg_version: None,
            api_tokens: Vec::new(),
            max_body_bytes: 64 * 1024,
            max_upload_bytes: jobs::files::DEFAULT_MAX_UPLOAD_BYTES,
            rate_limit: None,
            role: jobs::nodes::NodeRole::All,
            database_file: None,
        }
    }
}

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The job service.
    pub jobs: Arc<Jobs>,
    /// The files service (the data directory, checked against the jobs' footprints).
    pub files: Arc<Files>,
    /// HTTP settings.
    pub settings: Arc<AppSettings>,
    accepting: Arc<AtomicBool>,
    streams: tokio_util::sync::CancellationToken,
    /// The writers of the streams whose connections they took over ([`fanout`]).
    writers: Arc<fanout::Groups>,
    /// The runtime the state was made on (the server's own threads), when there is one.
    main: Option<tokio::runtime::Handle>,
}

impl AppState {
    /// State over `jobs` with default settings (no authentication), accepting submissions.
    pub fn new(jobs: Arc<Jobs>) -> AppState {
        AppState::with_settings(jobs, AppSettings::default())
    }

    /// State over `jobs` with `settings`.
    pub fn with_settings(jobs: Arc<Jobs>, settings: AppSettings) -> AppState {
        let storage = Arc::clone(jobs.storage());
        let sandbox = Arc::new(jobs.sandbox().clone());
        let files = Arc::new(Files::new(storage, Arc::clone(jobs.store()), sandbox, settings.max_upload_bytes));
        let streams = tokio_util::sync::CancellationToken::new();
        AppState {
            jobs,
            files,
            settings: Arc::new(settings),
            accepting: Arc::new(AtomicBool::new(true)),
            writers: Arc::new(fanout::Groups::new(streams.clone())),
            streams,
            main: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Runs `work` on the runtime this state was made on (the server's own threads, at its
    /// priority). A stream's handler runs on the stream threads
    /// ([`connections::StreamThreads`]); what it opens while reading the store (a pooled
    /// connection, its socket or its thread) must not be tied to them.
    pub(crate) async fn on_main<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> T {
        let Some(main) = &self.main else { return work.await };
        match main.spawn(work).await {
            Ok(value) => value,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: the runtime is shutting down (the server stops).
            Err(e) => panic!("the server's runtime stopped while a stream opened: {e}"),
        }
    }

    /// Ends every open event stream (at shutdown, once the workers stopped: so the streams
    /// carry the last status changes, and the server need not wait for streams that never
    /// end on their own).
    pub fn close_streams(&self) {
        self.streams.cancel();
    }

    /// Cancelled when [`AppState::close_streams`] was called.
    pub fn streams_closing(&self) -> tokio_util::sync::CancellationToken {
        self.streams.clone()
    }

    /// The writers of the streams ([`fanout`]).
    pub(crate) fn stream_writers(&self) -> &Arc<fanout::Groups> {
        &self.writers
    }

    /// Whether new jobs are accepted (false once shutdown began).
    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    /// Stops accepting new jobs: `POST /jobs` answers 503 from now on.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Relaxed);
    }
}

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "Required on every endpoint except /health, /docs and /openapi.json when the server is \
             started with API tokens (--api-token / API_TOKENS). The event streams (/events, \
             /jobs/{id}/events) also accept the token as the `access_token` query parameter."
                .to_owned(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ffmpeg-worker",
        description = "Run ffmpeg jobs over HTTP. Send an ffmpeg command line (without the word `ffmpeg`); \
paths are relative to the server's data directory. The service checks the command against ffmpeg's \
grammar and a sandbox, queues it durably, runs it, and reports live progress. Errors are RFC 9457 \
`application/problem+json` documents with a stable `type`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    components(schemas(ffmpeg_worker_api::ProgressEvent)),
    modifiers(&BearerScheme),
    components(schemas(wire::WebhookPayload)),
    security(("bearer" = [])),
    tags(
        (name = "jobs", description = "Submit, inspect and manage ffmpeg jobs"),
        (name = "events", description = "Server-sent event streams of job status and progress"),
        (name = "files", description = "Upload, download, list and delete files in the data directory"),
        (name = "operations", description = "Liveness, readiness and metrics"),
    )
)]
struct ApiDoc;

/// The probes (`/health`, `/ready`): never rate-limited, so an orchestrator's probes cannot be
/// refused for the traffic of others behind the same address.
fn probes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).routes(routes!(routes::health)).routes(routes!(routes::ready))
}

/// Every other endpoint of the API.
fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::metrics))
        .routes(routes!(routes::create_job, routes::list_jobs))
        .routes(routes!(routes::get_job, routes::delete_job))
        .routes(routes!(routes::cancel_job))
        .routes(routes!(routes::job_log))
        .routes(routes!(routes::job_webhooks))
        .routes(routes!(streams::job_events))
        .routes(routes!(streams::all_events))
        .merge(files::router())
        .merge(probe::router())
        .merge(workers::router())
}

/// The OpenAPI 3.1 document of the API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = probes().merge(router()).into_openapi();
    add_common_responses(&mut doc);
    doc
}

/// Documents the answers that middleware and extractors give on every operation they guard:
/// 401 (authentication, all but `/health`), 429 (rate limit, all but the probes), 400 (an
/// `{id}` segment that is not valid percent-encoded UTF-8) and 503 (the store, all but
/// `/health`), where a handler does not document them itself.
fn add_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let problem = |description: &str| {
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
        ResponseBuilder::new().description(description).content("application/problem+json", content).build()
    };
    for (path, item) in &mut doc.paths.paths {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            if path.contains("{id}") || path.contains("{path}") {
                responses
                    .entry("400".to_owned())
                    .or_insert_with(|| problem("The id segment is not valid percent-encoded UTF-8").into());
            }
            if path != "/health" {
                responses.entry("401".to_owned()).or_insert_with(|| {
                    problem("A bearer token is required (the server has API tokens) and is missing or not valid").into()
                });
            }
            if path != "/health" && path != "/ready" {
                responses.entry("429".to_owned()).or_insert_with(|| {
                    problem("Too many requests from this address (the server has a rate limit); see Retry-After").into()
                });
            }
            // Any query parameter of an endpoint that takes none is refused (`NoQuery`).
            let takes_query = operation
                .parameters
                .iter()
                .flatten()
                .any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Query);
            if !takes_query {
                const NO_QUERY: &str = "a query parameter (this endpoint takes none)";
                match responses.entry("422".to_owned()) {
                    std::collections::btree_map::Entry::Vacant(vacant) => {
                        vacant.insert(problem("A query parameter (this endpoint takes none)").into());
                    }
                    std::collections::btree_map::Entry::Occupied(mut documented) => {
                        if let utoipa::openapi::RefOr::T(response) = documented.get_mut()
                            && !response.description.contains(NO_QUERY)
                        {
                            response.description = format!("{}, or {NO_QUERY}", response.description);
                        }
                    }
                }
            }
            if path != "/health" {
                responses.entry("503".to_owned()).or_insert_with(|| {
                    problem("The job store is unavailable or cannot write now; see Retry-After").into()
                });
            }
        }
    }
}

/// [`openapi`] as pretty-printed JSON, as committed in `docs/openapi.json`.
pub fn openapi_json() -> String {
    openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The application router: the API, `/openapi.json` and Swagger UI at `/docs`, with request
/// ids (`x-request-id`, generated when absent, echoed in the response and in every log line of
/// the request), request tracing, HTTP metrics, body-size limit, optional bearer-token
/// authentication and optional per-IP rate limiting.
pub fn app(state: AppState) -> Router {
    let _ = telemetry::handle();
    let worker = state.settings.role == jobs::nodes::NodeRole::Worker;
    // A worker node answers its probes and metrics only: the API is the API nodes'.
    let (api_router, _) =
        if worker { OpenApiRouter::new().routes(routes!(routes::metrics)) } else { router() }.split_for_parts();
    let (probe_router, _) = probes().split_for_parts();
    let settings = Arc::clone(&state.settings);
    let max_body_bytes = settings.max_body_bytes;
    let max_upload_bytes = settings.max_upload_bytes;
    let auth = axum::middleware::from_fn_with_state(state.clone(), auth::require_token);
    // Layers apply to the routes present when `layer` is called: the rate limiter wraps the API
    // and the docs (outside authentication, so a flood of bad tokens is limited too); the
    // probes, merged afterwards, are never rate-limited.
    let documented = if worker {
        api_router
    } else {
        let docs = Router::from(SwaggerUi::new("/docs").url("/openapi.json", openapi()))
            .layer(axum::middleware::from_fn(docs_not_found));
        api_router.merge(docs)
    };
    let mut limited = documented.layer(auth.clone());
    if let Some(limit) = &settings.rate_limit {
        limited = (limit.apply)(limited);
    }
    let router = limited
        .merge(probe_router.layer(auth))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        // Enforced by the body extractors, so an oversized body is a 413 problem+json.
        .layer(axum::extract::DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(axum::middleware::from_fn(move |req: Request<Body>, next: Next| {
            refuse_declared_oversize(max_body_bytes, max_upload_bytes, req, next)
        }))
        // `layer`, not `route_layer`: the fallbacks (unknown paths) are counted too, as `unmatched`.
        .layer(axum::middleware::from_fn(telemetry::track_http))
        .with_state(state);
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    let uri = auth::redacted_uri(req.uri());
                    tracing::info_span!("request", method = %req.method(), uri = %uri, request_id = %id)
                })
                .on_failure(|class: ServerErrorsFailureClass, latency, _span: &tracing::Span| {
                    log_failure(&class, latency);
                }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(CatchPanicLayer::custom(error::panicked))
}

/// Logs a request that failed: a `503 Service Unavailable` at `warn` (not ready, shutting
/// down, a store or storage outage: the service's own answers while something it depends on is
/// away, whose cause is logged where it is found; a readiness probe every few seconds during an
/// outage must not raise an `error` each time: tester finding L17), any other server error or
/// a response that failed at `error`, as tower-http's default does.
fn log_failure(class: &ServerErrorsFailureClass, latency: std::time::Duration) {
    let latency_ms = latency.as_millis();
    match class {
        &ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::warn!(classification = %class, latency_ms, "response failed");
        }
        _ => tracing::error!(classification = %class, latency_ms, "response failed"),
    }
}

/// Swagger UI answers a file it does not have (`GET /docs/nope`) with an empty 404: that is
/// the problem+json 404 of an unknown path, as everywhere else.
async fn docs_not_found(req: Request<Body>, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    if response.status() == StatusCode::NOT_FOUND && !response.headers().contains_key(header::CONTENT_TYPE) {
        return error::ApiError::UnknownRoute(path).into_response();
    }
    response
}

/// Answers 413 at once when a request declares (`Content-Length`) a body over `max` bytes
/// (`max_upload` for a file upload, `PUT /files/...`), before reading any of it: the body
/// extractors would otherwise wait for bytes that will be refused anyway, holding the
/// connection until the body idle timeout.
async fn refuse_declared_oversize(max: usize, max_upload: u64, req: Request<Body>, next: Next) -> Response {
    if req.method() == axum::http::Method::PUT && req.uri().path().starts_with("/files/") {
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(bytes) = declared
            && bytes > max_upload
        {
            return error::ApiError::Files(jobs::files::FilesError::Storage(jobs::storage::StorageError::TooLarge {
                max_bytes: max_upload,
            }))
            .into_response();
        }
        return next.run(req).await;
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(bytes) = declared
        && bytes > max as u64
    {
        let detail = format!("the request body is {bytes} bytes; at most {max} are accepted");
        return error::ApiError::InvalidRequest { status: StatusCode::PAYLOAD_TOO_LARGE, detail }.into_response();
    }
    next.run(req).await
}

/// A per-client-IP rate limit (token bucket: `per_second` requests per second, bursts of twice
/// that; over it: 429 problem+json with `Retry-After`), checked when it is built, so a server
/// never starts with a limit it cannot apply. Needs the peer address
/// (`into_make_service_with_connect_info`), which `serve` provides.
#[derive(Clone)]
pub struct RateLimit {
    per_second: u32,
    /// Adds the limiter (built and checked once) to a router.
    apply: Arc<dyn Fn(Router<AppState>) -> Router<AppState> + Send + Sync>,
}

/// Why a rate limit cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit {per_second}/s: must be 1 to 1,000,000,000 requests per second (0 in the setting turns it off)")]
pub struct InvalidRateLimit {
    /// The refused value.
    pub per_second: u32,
}

impl RateLimit {
    /// `per_second` requests per second per client IP, bursts of twice that.
    ///
    /// # Errors
    /// [`InvalidRateLimit`] for 0 or more than 10^9 (the interval between two requests would
    /// be below the limiter's 1 ns resolution).
    pub fn per_second(per_second: u32) -> Result<RateLimit, InvalidRateLimit> {
        let config = (per_second > 0)
            .then(|| {
                tower_governor::governor::GovernorConfigBuilder::default()
                    .period(Duration::from_secs(1) / per_second)
                    .burst_size(per_second.saturating_mul(2))
                    .finish()
            })
            .flatten()
            .ok_or(InvalidRateLimit { per_second })?;
        let layer = tower_governor::GovernorLayer::new(config).error_handler(|e| error::rate_limited(&e));
        Ok(RateLimit { per_second, apply: Arc::new(move |router: Router<AppState>| router.layer(layer.clone())) })
    }

    /// Requests per second per client IP.
    pub fn requests_per_second(&self) -> u32 {
        self.per_second
    }
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").field("per_second", &self.per_second).finish_non_exhaustive()
    }
}

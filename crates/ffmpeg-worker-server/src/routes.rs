//! HTTP handlers. Each is glue: extract, call [`jobs::Jobs`], convert to wire types.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use jobs::idempotency::{Idempotency, Submitted};
use jobs::model::DEFAULT_PAGE_SIZE;
use jobs::storage::StorageError;
use jobs::webhook::WebhookSubscription;
use jobs::{CommandInput, JobStatus, ListQuery, SubmitOptions};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, AppJson, AppQuery, JobIdPath, NoQuery};
use crate::wire::{
    CreateJobRequest, HealthResponse, JobResponse, Problem, ReadyResponse, WebhookDeliveryResponse, delivery_response,
    job_response,
};
use crate::{AppState, idempotency};

/// Liveness check
///
/// Answers `{"status":"ok"}` while the process serves requests.
#[utoipa::path(get, path = "/health", tag = "operations", security(()), responses((status = 200, body = HealthResponse)))]
pub(crate) async fn health(_: NoQuery) -> AppJson<HealthResponse> {
    AppJson(HealthResponse { status: "ok".to_owned() })
}

/// Readiness check
///
/// 200 when the server accepts jobs, the job store answers and can write, the file storage
/// answers (a bucket: one cheap request, its result kept 5 s, no answer within 3 s counting as
/// down), and ffmpeg was found at start-up (reporting the version start-up read; ffmpeg is not
/// run again); 503 problem+json naming what is wrong otherwise (also while shutting down, and
/// while the store's writes fail: on a full disk, `not-ready` naming the disk and its free
/// space, while reads are served and changes answer 507).
#[utoipa::path(
    get, path = "/ready", tag = "operations",
    responses(
        (status = 200, body = ReadyResponse),
        (status = 503, description = "Not ready", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn ready(State(state): State<AppState>, _: NoQuery) -> Result<AppJson<ReadyResponse>, ApiError> {
    if !state.accepting() {
        return Err(ApiError::ShuttingDown);
    }
    if let Err(e) = state.jobs.ping().await {
        if !e.is_disk_full() {
            return Err(e.into());
        }
        let disk = match state.settings.database_file.clone() {
            Some(file) => {
                tokio::task::spawn_blocking(move || jobs::disk_space::DiskSpace::of(&file)).await.ok().flatten()
            }
            None => None,
        };
        tracing::warn!(error = %e, "readiness: the job store's disk is full");
        return Err(ApiError::NotReady(format!(
            "the job store cannot write: the disk holding its database is full{}; jobs and files are read as \
             usual, and changes answer 507 until space is freed",
            disk.map(|d| format!(" ({d})")).unwrap_or_default()
        )));
    }
    if let Err(e) = state.jobs.storage_ready().await {
        tracing::warn!(error = %e, storage = ?state.jobs.storage(), "readiness: the file storage does not answer");
        let storage = state.jobs.storage().display_name();
        return Err(ApiError::NotReady(match e.0.as_ref() {
            StorageError::NoBucket { bucket, .. } => {
                format!("the file storage's bucket `{bucket}` does not exist: `{storage}`")
            }
            _ => format!("the file storage does not answer: `{storage}` (the server log has the details)"),
        }));
    }
    let Some(ffmpeg) = state.settings.ffmpeg_version.clone() else {
        return Err(ApiError::NotReady("no ffmpeg was checked at start-up".to_owned()));
    };
    Ok(AppJson(ReadyResponse { status: "ready".to_owned(), ffmpeg }))
}

/// Prometheus metrics
///
/// Metrics in the Prometheus text exposition format: jobs submitted and finished by status,
/// queue depth, running jobs, job run-time histogram, HTTP requests by route and status.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"))
)]
pub(crate) async fn metrics(State(state): State<AppState>, _: NoQuery) -> Result<impl IntoResponse, ApiError> {
    let counts = state.jobs.counts().await?;
    let mut body = crate::telemetry::handle().map(|h| h.render()).unwrap_or_default();
    body.push_str(&crate::telemetry::job_gauges(&counts, state.jobs.running_here()));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body))
}

/// Submit a job
///
/// Takes the command as one `command` line or as an `args` list (exactly one of them), checks
/// it against ffmpeg's grammar and the data-directory sandbox, then queues it.
/// A command that does not parse or names a path outside the data directory is refused with
/// 422 and never queued. Answers 201 with the job and its URL in `Location`.
///
/// With an `Idempotency-Key` header, a submission can be sent again safely (after a timeout or
/// a lost connection): the first one with a key creates the job; a repeat with the same key
/// and the same body (compared as JSON read, not as bytes) answers 200 with that job as it is
/// now and `Idempotent-Replayed: true`, queueing nothing; the same key with another body is
/// refused with 422 `idempotency-key-reused` naming the job (`job_id`). Two first submissions
/// with one key at the same time make one job. A key lasts as long as its job's record.
#[utoipa::path(
    post, path = "/jobs", tag = "jobs",
    params(IdempotencyKeyParam),
    request_body = CreateJobRequest,
    responses(
        (status = 201, description = "Queued", body = JobResponse,
         headers(("Location" = String, description = "URL of the new job"))),
        (status = 200, description = "A repeat: the `Idempotency-Key` names the job an earlier submission with the same body created; that job as it is now (nothing was queued)", body = JobResponse,
         headers(("Location" = String, description = "URL of the job"),
                 ("Idempotent-Replayed" = String, description = "`true`: the answer is the earlier submission's job"))),
        (status = 400, description = "The body is not valid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the server's limit (MAX_BODY_BYTES)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "With the files in a bucket: a file the job would write is where the bucket holds a directory, or below a file (`file-conflict`, naming the argument)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The command or a field is invalid (also: both or neither of `command` and `args`), the `Idempotency-Key` header is not a key (`invalid-request`), the key was used for a job with a different body (`idempotency-key-reused`, `job_id` names it), or a query parameter (this endpoint takes none)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Shutting down, the job store cannot write now, or (`storage-unavailable`, with `Retry-After`) with the files in a bucket, the bucket does not answer or does not exist, so the command's files cannot be checked; nothing was queued", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The disk holding the job store's database is full: nothing was changed; retry once space is freed (`insufficient-storage`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_job(
    State(state): State<AppState>,
    _: NoQuery,
    headers: HeaderMap,
    AppJson(req): AppJson<CreateJobRequest>,
) -> Result<impl IntoResponse, ApiError> {
    if !state.accepting() {
        return Err(ApiError::ShuttingDown);
    }
    let idempotency =
        idempotency::key(&headers)?.map(|key| Idempotency { key, fingerprint: idempotency::fingerprint(&req) });
    let command = CommandInput::from_fields(req.command, req.args)?.into_line();
    let events = req.webhook_events.map(|events| events.into_iter().map(crate::wire::event_domain).collect());
    let webhooks = WebhookSubscription::for_job(req.webhook_url, events)?;
    let options = SubmitOptions {
        priority: req.priority,
        timeout_seconds: req.timeout_seconds,
        metadata: req.metadata,
        webhooks: webhooks.into_iter().collect(),
        requires: req.requires,
        idempotency,
        ..SubmitOptions::default()
    };
    let Submitted { job, replayed } = state.jobs.submit_idempotent(&command, options).await?;
    let location = HeaderValue::try_from(format!("/jobs/{}", job.id)).ok();
    let mut headers = HeaderMap::new();
    if let Some(l) = location {
        headers.insert(header::LOCATION, l);
    }
    let status = if replayed {
        headers.insert(idempotency::IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, headers, AppJson(job_response(job))))
}

/// The `Idempotency-Key` request header of `POST /jobs`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Read by `idempotency::key`; this type only describes it.
pub(crate) struct IdempotencyKeyParam {
    /// A key of your choosing for this submission (a random UUID, say): 1 to 255 visible
    /// ASCII characters (the draft's quoted form `"..."` counts without its quotes). Send the
    /// same key and body again after a timeout or a lost answer: you get the job the first
    /// submission created, not a second one. Kept as long as the job's record.
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$")]
    idempotency_key: Option<String>,
}

/// The `{id}` path parameter of the job routes.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read by the `JobIdPath` extractor; this type only describes it.
pub(crate) struct JobIdParam {
    /// Job id: `job_` + 16 lowercase hex digits. Anything else names no job (404).
    #[param(pattern = "^job_[0-9a-f]{16}$")]
    id: String,
}

/// Query parameters of `GET /jobs`.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Only jobs with one of these statuses: a comma-separated list of queued, running,
    /// completed, failed, cancelled (as `GET /events` takes it); `status` may also be repeated
    /// (`status=queued&status=running`). Default: every status.
    #[param(value_type = Option<String>, example = "queued,running", pattern = "^(queued|running|completed|failed|cancelled)(,(queued|running|completed|failed|cancelled))*$")]
    status: Vec<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Cursor from a previous page's `Link: <...>; rel="next"` header (1 to 18 digits).
    #[param(pattern = "^[0-9]{1,18}$")]
    cursor: Option<String>,
}

/// The parameter names `GET /jobs` knows.
const LIST_PARAMS: &[&str] = &["status", "limit", "cursor"];

/// Read by hand rather than derived: a derived struct refuses a repeated `status` ("duplicate
/// field"), and repeating it is how many clients send a list. `limit` and `cursor` once each;
/// any other name is refused (serde's "unknown field" error, naming the known ones), as the
/// other query structs refuse it with `deny_unknown_fields`: a misspelt filter must not list
/// every job.
impl<'de> Deserialize<'de> for ListParams {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut params = ListParams::default();
        for (name, value) in Vec::<(String, String)>::deserialize(deserializer)? {
            match name.as_str() {
                "status" => params.status.push(value),
                "limit" if params.limit.is_some() => return Err(D::Error::duplicate_field("limit")),
                "limit" => {
                    params.limit = Some(value.parse().map_err(|e| D::Error::custom(format!("limit: `{value}`: {e}")))?);
                }
                "cursor" if params.cursor.is_some() => return Err(D::Error::duplicate_field("cursor")),
                "cursor" => params.cursor = Some(value),
                other => return Err(D::Error::unknown_field(other, LIST_PARAMS)),
            }
        }
        Ok(params)
    }
}

/// The statuses of a `status` parameter: each value a comma-separated list (empty: every
/// status). A value that is not a status (an empty one included) is an error naming it.
pub(crate) fn parse_statuses<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<JobStatus>, ApiError> {
    let mut statuses = Vec::new();
    for value in values {
        for s in value.split(',') {
            let status = s.trim().parse::<JobStatus>().map_err(|e| ApiError::InvalidRequest {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                detail: e.to_string(),
            })?;
            if !statuses.contains(&status) {
                statuses.push(status);
            }
        }
    }
    Ok(statuses)
}

/// A cursor as `GET /jobs` hands it out in `Link`: the last job's sequence number, 1 to 18
/// digits (the pattern the OpenAPI document states).
fn parse_cursor(c: &str) -> Option<i64> {
    if c.is_empty() || c.len() > 18 || !c.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    c.parse().ok()
}

/// List jobs
///
/// A JSON array of jobs in submission order (oldest first), optionally filtered by status.
/// When more jobs follow, the `Link` header holds the next page's URL (`rel="next"`).
#[utoipa::path(
    get, path = "/jobs", tag = "jobs",
    params(ListParams),
    responses(
        (status = 200, description = "Jobs, oldest first", body = [JobResponse],
         headers(("Link" = String, description = "`<URL>; rel=\"next\"` when there is a next page"))),
        (status = 422, description = "Invalid status, limit or cursor, or an unknown parameter name", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_jobs(
    State(state): State<AppState>,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<impl IntoResponse, ApiError> {
    let invalid = |detail: String| ApiError::InvalidRequest { status: StatusCode::UNPROCESSABLE_ENTITY, detail };
    // An empty `status=` or `cursor=` is refused like any other value outside the schema.
    let statuses = parse_statuses(params.status.iter().map(String::as_str))?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    let after_seq = match params.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            parse_cursor(c)
                .ok_or_else(|| invalid(format!("cursor `{c}` is not valid (1 to 18 digits, from a `Link` header)")))?,
        ),
    };
    let page = state.jobs.list(&ListQuery { statuses: statuses.clone(), after_seq, limit }).await?;
    let next = page.next_after_seq.map(|last_seq| {
        let mut next = format!("/jobs?limit={limit}&cursor={last_seq}");
        if !statuses.is_empty() {
            let list: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
            next.push_str(&format!("&status={}", list.join(",")));
        }
        next
    });
    let body: Vec<JobResponse> = page.jobs.into_iter().map(job_response).collect();
    Ok((next_page(next), AppJson(body)))
}

/// The headers of a page of a list: `Link: <URL>; rel="next"` when `next` (the next page's
/// URL, its values percent-encoded) follows.
pub(crate) fn next_page(next: Option<String>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(Ok(link)) = next.map(|url| HeaderValue::try_from(format!("<{url}>; rel=\"next\""))) {
        headers.insert(header::LINK, link);
    }
    headers
}

/// Get a job
///
/// The job's status, live progress while it runs, and its outputs or error once finished.
#[utoipa::path(
    get, path = "/jobs/{id}", tag = "jobs",
    params(JobIdParam),
    responses(
        (status = 200, body = JobResponse),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_job(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
    _: NoQuery,
) -> Result<AppJson<JobResponse>, ApiError> {
    Ok(AppJson(job_response(state.jobs.get(&id).await?)))
}

/// Cancel a job
///
/// A queued job is cancelled at once. A running job's ffmpeg is stopped (SIGTERM, then
/// SIGKILL after a grace period), its partial outputs are removed, and the answer comes once
/// it is cancelled. A finished job cannot be cancelled (409).
#[utoipa::path(
    post, path = "/jobs/{id}/cancel", tag = "jobs",
    params(JobIdParam),
    responses(
        (status = 200, description = "Cancelled (or cancellation under way on another node)", body = JobResponse),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job already finished", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The disk holding the job store's database is full: nothing was changed; retry once space is freed (`insufficient-storage`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn cancel_job(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
    _: NoQuery,
) -> Result<AppJson<JobResponse>, ApiError> {
    Ok(AppJson(job_response(state.jobs.cancel(&id).await?)))
}

/// Delete a finished job's record
///
/// Removes the record of a completed, failed or cancelled job (its output files stay).
/// Queued or running jobs cannot be deleted (409): cancel them first.
#[utoipa::path(
    delete, path = "/jobs/{id}", tag = "jobs",
    params(JobIdParam),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is queued or running", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The disk holding the job store's database is full: nothing was changed; retry once space is freed (`insufficient-storage`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_job(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
    _: NoQuery,
) -> Result<StatusCode, ApiError> {
    state.jobs.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Get a job's log
///
/// The tail of ffmpeg's stderr (at most 64 KiB) as plain text; empty until the job finishes.
#[utoipa::path(
    get, path = "/jobs/{id}/log", tag = "jobs",
    params(JobIdParam),
    responses(
        (status = 200, description = "The log", body = String, content_type = "text/plain"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn job_log(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
    _: NoQuery,
) -> Result<impl IntoResponse, ApiError> {
    let log = state.jobs.log(&id).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], log))
}

/// List a job's webhook deliveries
///
/// Every webhook delivery of the job (one per event and URL), in the order they were written,
/// with every attempt: when, the receiver's status code or why no answer came, and when the
/// next attempt is due. Each delivery's body is a `WebhookPayload`. The server's own
/// `WEBHOOK_URL` deliveries are listed with `url` null.
#[utoipa::path(
    get, path = "/jobs/{id}/webhooks", tag = "jobs",
    params(JobIdParam),
    responses(
        (status = 200, description = "The deliveries, oldest first", body = [WebhookDeliveryResponse]),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn job_webhooks(
    State(state): State<AppState>,
    JobIdPath(id): JobIdPath,
    _: NoQuery,
) -> Result<AppJson<Vec<WebhookDeliveryResponse>>, ApiError> {
    let deliveries = state.jobs.webhooks(&id).await?;
    Ok(AppJson(deliveries.into_iter().map(delivery_response).collect()))
}

/// Answers unknown routes with a 404 problem+json (axum's default is an empty body).
pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::UnknownRoute(uri.path().to_owned())
}

/// Answers a known path asked with a method it does not serve: 405 problem+json (axum adds
/// the `Allow` header; its default is an empty body).
pub(crate) async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed { method, path: uri.path().to_owned() }
}

//! The server's one error type: every failure a client can get, rendered as RFC 9457
//! `application/problem+json` with a stable `type` by one builder ([`ApiError::into_response`]).
//! Handlers, extractors (JSON body, query, path), the authentication and rate-limit
//! middleware, the method-not-allowed and not-found fallbacks and the panic guard all answer
//! through it. Internal details are logged, never sent.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ffmpeg_core::command::CommandError;
use ffmpeg_core::sandbox::SandboxError;
use jobs::files::FilesError;
use jobs::storage::StorageError;
use jobs::{InvalidRequest, JobId, JobStatus, ListError, StoreError, SubmitError};

use crate::wire::Problem;

/// What went wrong while handling a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: the command does not parse.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// 422: the security policy refuses the command (a path outside the data directory, a
    /// protocol, a forbidden option, format or filter); the problem names the rule.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// 422: an option, codec, format or filter the installed ffmpeg does not know.
    #[error(transparent)]
    UnknownName(#[from] ffmpeg_core::capabilities::UnknownName),
    /// 422: a field outside the service's limits (metadata, `timeout_seconds`, page size).
    #[error(transparent)]
    Limits(#[from] InvalidRequest),
    /// 422: the job's webhook is refused: the server has no `WEBHOOK_SECRET`, the URL is not
    /// `http(s)`, or its host is (or resolves to) an address the rules refuse.
    #[error(transparent)]
    Webhook(#[from] jobs::webhook::WebhookError),
    /// 422: the service refused the submission for another reason (e.g. an argument list the
    /// OS would refuse); the detail says which.
    #[error(transparent)]
    Refused(SubmitError),
    /// 409: with the files in a bucket, a file the job would write is where the bucket holds
    /// a directory, or below a file (`file-conflict`, as the files API answers an upload
    /// there); the problem names the argument.
    #[error(transparent)]
    OutputConflict(SubmitError),
    /// The rejection's own status (400 malformed JSON, 413 too large, 415 not JSON, 422 wrong
    /// shape): the JSON body is not acceptable.
    #[error("{}", .0.body_text())]
    Json(#[source] JsonRejection),
    /// 422: the query string does not deserialize.
    #[error("{}", .0.body_text())]
    Query(#[source] QueryRejection),
    /// 400: a path segment is not valid percent-encoded UTF-8.
    #[error("{}", .0.body_text())]
    Path(#[source] PathRejection),
    /// 422: a query parameter has a value outside its schema (status, cursor).
    #[error("{detail}")]
    InvalidRequest {
        /// Status to answer with.
        status: StatusCode,
        /// What was wrong.
        detail: String,
    },
    /// 503 (`storage-unavailable`, with `Retry-After`): with the files in a bucket, a
    /// submission while the bucket is known not to answer, or does not exist (the files API's
    /// answer then); nothing was queued.
    #[error(transparent)]
    StorageUnavailable(SubmitError),
    /// 422 (`idempotency-key-reused`): the `Idempotency-Key` of a submission names a job
    /// submitted with a different body; the problem names the job (`job_id`).
    #[error(transparent)]
    IdempotencyKeyReused(SubmitError),
    /// 404: no such endpoint.
    #[error("no such endpoint: {0}")]
    UnknownRoute(String),
    /// 405 (with `Allow`): the endpoint exists but not with this method.
    #[error("{path} does not answer {method}")]
    MethodNotAllowed {
        /// The method asked for.
        method: Method,
        /// The path.
        path: String,
    },
    /// 401 (with `WWW-Authenticate: Bearer`): a token is required and missing or not valid.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 429 (with `Retry-After`): this client address sent too many requests.
    #[error("too many requests from this address; retry in {retry_after_seconds} s")]
    RateLimited {
        /// Seconds until a request will be accepted again.
        retry_after_seconds: u64,
    },
    /// 404: no job with this id.
    #[error("job {0} not found")]
    NotFound(String),
    /// 409: the job's status does not allow the action.
    #[error("job {id} is {status}: cannot {action}")]
    Conflict {
        /// The job.
        id: String,
        /// Its status.
        status: JobStatus,
        /// What was attempted.
        action: &'static str,
    },
    /// 503: the server is shutting down and accepts no new jobs.
    #[error("the server is shutting down and accepts no new jobs; retry on another instance or after restart")]
    ShuttingDown,
    /// 503: the server holds its maximum number of connections (`--max-connections`).
    #[error("the server holds its maximum of {max_connections} connections; retry later")]
    Overloaded {
        /// The limit.
        max_connections: usize,
    },
    /// 503: a dependency (ffmpeg) is not usable; the detail says which.
    #[error("not ready: {0}")]
    NotReady(String),
    /// 503: the job store failed. Details are logged, not sent.
    #[error("the job store is unavailable")]
    Store(#[source] StoreError),
    /// 507 (`insufficient-storage`, as the files API answers an upload that does not fit): the
    /// disk holding the job store's database is full, so the change was not recorded; reads
    /// still answer. Details are logged, not sent.
    #[error("{DISK_FULL}")]
    DiskFull(#[source] StoreError),
    /// The files API refused or failed: 422 bad path, 404 no such file, 409 a directory or a
    /// file in use by a job, 412 exists (`If-None-Match: *`), 413 too large, 507 disk full,
    /// 400 upload aborted, 503 storage or store failure.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// 404: `GET /probe/{path}` names no file.
    #[error("{0}")]
    FileNotFound(String),
    /// 422: ffprobe cannot read the file as media; the detail carries its reason.
    #[error("{0}")]
    NotMedia(String),
    /// 503: ffprobe could not be run or did not finish in time. Details are logged too.
    #[error("{0}")]
    ProbeUnavailable(String),
    /// 500: a bug (a handler panicked, a middleware failed). Details are logged, not sent.
    #[error("internal error (the server log has the details)")]
    Internal,
}

/// The detail of a change refused because the job store's disk is full.
const DISK_FULL: &str =
    "the disk is full: the job store cannot record this change, and nothing was changed; retry once space is freed";

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ApiError::NotFound(id.to_string()),
            StoreError::Conflict { id, status, action } => ApiError::Conflict { id: id.to_string(), status, action },
            e @ StoreError::DiskFull(_) => ApiError::DiskFull(e),
            other => ApiError::Store(other),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Command(e) => ApiError::Command(e),
            SubmitError::Sandbox(e) => ApiError::Sandbox(e),
            SubmitError::UnknownName(e) => ApiError::UnknownName(e),
            SubmitError::Invalid(e) => ApiError::Limits(e),
            SubmitError::Store(e) => e.into(),
            SubmitError::Webhook(e) => ApiError::Webhook(e),
            e @ (SubmitError::ExecLimit(_) | SubmitError::NameTooLong(_)) => ApiError::Refused(e),
            e @ SubmitError::OutputConflict { .. } => ApiError::OutputConflict(e),
            e @ SubmitError::IdempotencyKeyReused { .. } => ApiError::IdempotencyKeyReused(e),
            e @ SubmitError::StorageUnavailable(_) => ApiError::StorageUnavailable(e),
        }
    }
}

impl From<jobs::media::MediaProbeError> for ApiError {
    fn from(e: jobs::media::MediaProbeError) -> Self {
        use jobs::media::MediaProbeError;
        match e {
            MediaProbeError::Sandbox(e) => ApiError::Sandbox(e),
            e @ MediaProbeError::NotFound(_) => ApiError::FileNotFound(e.to_string()),
            e @ MediaProbeError::NotMedia { .. } => ApiError::NotMedia(e.to_string()),
            e @ MediaProbeError::Unavailable(_) => ApiError::ProbeUnavailable(e.to_string()),
            // The storage's failure to give the file: the files API's answer for the same read
            // (503 `storage-unavailable` naming the bucket, `Retry-After` from a known outage;
            // tester finding L9: it was `probe-unavailable`, as if ffprobe had failed).
            MediaProbeError::Storage(e) => ApiError::Files(FilesError::Storage(e)),
        }
    }
}

impl From<ListError> for ApiError {
    fn from(e: ListError) -> Self {
        match e {
            ListError::Invalid(e) => ApiError::Limits(e),
            ListError::Store(e) => e.into(),
        }
    }
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Command(_) => (StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-command", "Invalid command"),
            ApiError::Sandbox(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "/problems/policy-violation", "Refused by the security policy")
            }
            ApiError::UnknownName(_) => (StatusCode::UNPROCESSABLE_ENTITY, "/problems/unknown-name", "Unknown name"),
            ApiError::Webhook(_) => (StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-webhook", "Invalid webhook"),
            ApiError::IdempotencyKeyReused(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "/problems/idempotency-key-reused", "Idempotency key reused")
            }
            ApiError::InvalidRequest { status, .. } => (*status, "/problems/invalid-request", "Invalid request"),
            ApiError::Limits(_) | ApiError::Refused(_) | ApiError::Query(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-request", "Invalid request")
            }
            ApiError::Json(r) => (r.status(), "/problems/invalid-request", "Invalid request"),
            ApiError::Path(r) => (r.status(), "/problems/invalid-request", "Invalid request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "/problems/job-not-found", "Job not found"),
            ApiError::UnknownRoute(_) => (StatusCode::NOT_FOUND, "/problems/not-found", "Not found"),
            ApiError::FileNotFound(_) => (StatusCode::NOT_FOUND, "/problems/file-not-found", "File not found"),
            ApiError::NotMedia(_) => (StatusCode::UNPROCESSABLE_ENTITY, "/problems/not-media", "Not a media file"),
            ApiError::ProbeUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "/problems/probe-unavailable", "ffprobe unavailable")
            }
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "/problems/method-not-allowed", "Method not allowed")
            }
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "/problems/unauthorized", "Unauthorized"),
            ApiError::RateLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "/problems/rate-limited", "Too many requests")
            }
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, "/problems/job-state-conflict", "Job state conflict"),
            ApiError::OutputConflict(_) => (StatusCode::CONFLICT, "/problems/file-conflict", "Not a file"),
            ApiError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "/problems/shutting-down", "Shutting down"),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "/problems/not-ready", "Not ready"),
            ApiError::Overloaded { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "/problems/overloaded", "Too many connections")
            }
            ApiError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "/problems/store-unavailable", "Store unavailable"),
            ApiError::StorageUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable", "Storage unavailable")
            }
            ApiError::DiskFull(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "/problems/insufficient-storage", "Insufficient storage")
            }
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "/problems/internal", "Internal error"),
            ApiError::Files(e) => files_parts(e),
        }
    }
}

/// Status, type and title of a files API error.
fn files_parts(e: &FilesError) -> (StatusCode, &'static str, &'static str) {
    match e {
        FilesError::Storage(e) => match e {
            StorageError::InvalidPath { .. } | StorageError::Reserved(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-path", "Invalid file path")
            }
            StorageError::NotFound(_) | StorageError::DanglingLink { .. } => {
                (StatusCode::NOT_FOUND, "/problems/file-not-found", "File not found")
            }
            StorageError::IsADirectory(_) | StorageError::NotADirectory { .. } => {
                (StatusCode::CONFLICT, "/problems/file-conflict", "Not a file")
            }
            StorageError::Exists(_) => (StatusCode::PRECONDITION_FAILED, "/problems/file-exists", "File exists"),
            StorageError::PreconditionFailed { .. } => {
                (StatusCode::PRECONDITION_FAILED, "/problems/precondition-failed", "Precondition failed")
            }
            StorageError::TooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "/problems/file-too-large", "File too large")
            }
            StorageError::InsufficientStorage { .. } => {
                (StatusCode::INSUFFICIENT_STORAGE, "/problems/insufficient-storage", "Insufficient storage")
            }
            StorageError::Aborted { .. } => (StatusCode::BAD_REQUEST, "/problems/upload-aborted", "Upload aborted"),
            StorageError::Io { .. }
            | StorageError::Unavailable { .. }
            | StorageError::Unreachable { .. }
            | StorageError::NoBucket { .. }
            | StorageError::Denied { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "/problems/storage-unavailable", "Storage unavailable")
            }
        },
        FilesError::InUse { .. } => (StatusCode::CONFLICT, "/problems/file-in-use", "File in use"),
        FilesError::Raced { .. } => (StatusCode::CONFLICT, "/problems/file-conflict", "Not a file"),
        FilesError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-request", "Invalid request"),
        FilesError::Store(e) if e.is_disk_full() => {
            (StatusCode::INSUFFICIENT_STORAGE, "/problems/insufficient-storage", "Insufficient storage")
        }
        FilesError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "/problems/store-unavailable", "Store unavailable"),
    }
}

impl IntoResponse for ApiError {
    /// The one problem+json builder: body, `Content-Type: application/problem+json`, and the
    /// headers some statuses need (`Retry-After` on 429/503, `WWW-Authenticate` on 401).
    fn into_response(self) -> Response {
        let (status, type_, title) = self.parts();
        if let ApiError::Store(e) = &self {
            tracing::error!(error = %e, "job store failed");
        }
        if status == StatusCode::SERVICE_UNAVAILABLE
            && let ApiError::Files(e) = &self
        {
            tracing::error!(error = %e, "files API: storage or store failed");
        }
        if let ApiError::DiskFull(e) = &self {
            tracing::warn!(error = %e, "the job store's disk is full: a change was refused");
        } else if status == StatusCode::INSUFFICIENT_STORAGE {
            tracing::warn!(error = %self, "files API: storage full");
        }
        if let ApiError::ProbeUnavailable(e) = &self {
            tracing::error!(error = %e, "ffprobe failed");
        }
        let argument = match &self {
            ApiError::Command(e) => e.argument(),
            ApiError::Sandbox(e) => e.argument(),
            ApiError::UnknownName(e) => Some((e.position, e.argument.as_str())),
            ApiError::Refused(SubmitError::NameTooLong(e)) => Some((e.position, e.argument.as_str())),
            ApiError::OutputConflict(SubmitError::OutputConflict { position, argument, .. }) => {
                Some((*position, argument.as_str()))
            }
            _ => None,
        };
        // Internal details of storage and store failures are logged, not sent.
        let detail = match &self {
            ApiError::Files(FilesError::Store(e)) if e.is_disk_full() => DISK_FULL.to_owned(),
            ApiError::Files(FilesError::Store(_)) => "the job store is unavailable".to_owned(),
            ApiError::Files(FilesError::Storage(
                StorageError::Io { path, .. }
                | StorageError::Unavailable { path, .. }
                | StorageError::Denied { path, .. },
            )) => {
                format!("the storage failed on `{path}` (the server log has the details)")
            }
            // An empty directory (or a bucket's folder marker) blocks a file of its name for
            // ever unless the client knows how to remove it (tester finding H5).
            ApiError::Files(FilesError::Storage(StorageError::IsADirectory(path))) => {
                let url = path.trim_end_matches('/');
                format!(
                    "`{path}` is a directory (`DELETE /files/{url}?recursive=true` removes it and everything under it)"
                )
            }
            _ => self.to_string(),
        };
        let problem = Problem {
            type_: type_.to_owned(),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            argument_position: argument.map(|(p, _)| p),
            argument: argument.map(|(_, a)| a.to_owned()),
            rule: match &self {
                ApiError::Sandbox(e) => Some(e.rule().as_str().to_owned()),
                ApiError::Files(FilesError::Storage(StorageError::InvalidPath { rule, .. })) => {
                    Some((*rule).to_owned())
                }
                ApiError::Files(FilesError::Storage(StorageError::Reserved(_))) => Some("reserved-path".to_owned()),
                // The rule the files API names for a path the storage cannot hold.
                ApiError::Refused(SubmitError::NameTooLong(_)) => Some("name-too-long".to_owned()),
                _ => None,
            },
            job_id: match &self {
                ApiError::IdempotencyKeyReused(SubmitError::IdempotencyKeyReused { job, .. }) => Some(job.to_string()),
                _ => None,
            },
        };
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        match &self {
            ApiError::RateLimited { retry_after_seconds } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"ffmpeg-worker\""));
            }
            // A storage known unreachable: when its next check will have ended.
            ApiError::Files(FilesError::Storage(StorageError::Unreachable { outage, .. }))
            | ApiError::StorageUnavailable(SubmitError::StorageUnavailable(StorageError::Unreachable {
                outage, ..
            })) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(outage.retry_after.as_secs().max(1)));
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // axum answers 400 for malformed JSON, 415 for a missing content type, 422 for JSON of
        // the wrong shape (unknown or missing fields); keep those statuses, in our body.
        ApiError::Json(r)
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        // A path segment that is not valid percent-encoded UTF-8 (`/jobs/%FF`): 400.
        ApiError::Path(r)
    }
}

/// A job id from the path (`/jobs/{id}`, `/jobs/{id}/...`), parsed in the extractor: text that
/// is not a job id cannot name a job (404 problem); a segment that does not decode is a 400
/// problem.
#[derive(Debug)]
pub struct JobIdPath(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state).await?;
        JobId::parse(&id).map(JobIdPath).map_err(|_| ApiError::NotFound(id))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::Query(r)
    }
}

/// `Json` whose rejections are problem+json [`ApiError`]s, and which takes a JSON object only:
/// serde's derived `Deserialize` of a struct also takes an array of its fields in declaration
/// order (`["-i in.mp4 out.mp4", null, 5]`), a form no client means and the schema does not
/// show, so a body whose first value is an array is a 422 naming what was expected.
#[derive(Debug)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let headers = parts.clone();
        // `Bytes` applies the body limit, as `Json` does.
        let bytes = axum::body::Bytes::from_request(axum::extract::Request::from_parts(parts, body), state)
            .await
            .map_err(JsonRejection::from)?;
        if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::InvalidRequest {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                detail: "the request body must be a JSON object (`{\"command\": ...}`), not an array".to_owned(),
            });
        }
        let req = axum::extract::Request::from_parts(headers, axum::body::Body::from(bytes));
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(AppJson(value))
    }
}

/// `Path` whose rejections are problem+json [`ApiError`]s (400 for a segment that is not
/// valid percent-encoded UTF-8).
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

/// `Query` whose rejections are problem+json [`ApiError`]s.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

/// The query of an endpoint that takes none: any parameter is refused with 422 naming it
/// (tester finding K5: `POST /jobs?dryrun=1` queued the job, `PUT /files/x?overwrite=false`
/// replaced the file), as the endpoints with a query refuse a name they do not know. An empty
/// query (`?`) passes.
#[derive(Debug)]
pub struct NoQuery;

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let AppQuery(params) = AppQuery::<Vec<(String, String)>>::from_request_parts(parts, state).await?;
        let Some((name, _)) = params.first() else { return Ok(NoQuery) };
        // The route as documented (`/files/{path}`, not axum's `/files/{*path}`).
        let path = match parts.extensions.get::<axum::extract::MatchedPath>() {
            Some(matched) => matched.as_str().replace("{*", "{"),
            None => parts.uri.path().to_owned(),
        };
        let hint = match name.as_str() {
            "access_token" => " (`access_token` is taken by the event streams only; send `Authorization: Bearer`)",
            _ => "",
        };
        Err(ApiError::InvalidRequest {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: format!(
                "unknown query parameter `{name}`: {} {path} takes no query parameters{hint}",
                parts.method
            ),
        })
    }
}

impl<T: serde::Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The answer to a request refused by the rate limiter: 429 problem+json with `Retry-After`
/// (or 500 when the limiter cannot tell who the client is, which `serve` rules out).
pub(crate) fn rate_limited(e: &tower_governor::GovernorError) -> Response {
    match e {
        tower_governor::GovernorError::TooManyRequests { wait_time, .. } => {
            ApiError::RateLimited { retry_after_seconds: (*wait_time).max(1) }.into_response()
        }
        other => {
            tracing::error!(error = %other, "rate limiter failed");
            ApiError::Internal.into_response()
        }
    }
}

/// The answer to a request whose handler panicked (tower-http `CatchPanicLayer`): 500 problem.
pub(crate) fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::Internal.into_response()
}

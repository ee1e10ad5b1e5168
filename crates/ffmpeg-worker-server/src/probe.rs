//! `GET /probe/{path}`: what ffprobe says about a media file of the data directory. Glue over
//! [`jobs::Jobs::probe_media`].
//!
//! The path is a wildcard (`/probe/{*path}` in axum; `/probe/{path}` in the OpenAPI document,
//! where `/` may be sent percent-encoded as `%2F`, which decodes to the same path).

use axum::extract::State;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::error::{ApiError, AppJson, AppPath, NoQuery};
use crate::wire::{MediaInfoResponse, Problem, media_info_response};

/// The route, and its OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ProbeApi::openapi()).route("/probe/{*path}", get(probe_media))
}

#[derive(OpenApi)]
#[openapi(paths(probe_media))]
struct ProbeApi;

/// Describe a media file
///
/// What ffprobe (`-show_format -show_streams`) says about a file of the data directory: its
/// container, duration, bit rate and size, and per stream its type, codec, profile, picture
/// size, frame rate, pixel format, sample rate, channels, language and duration. ffprobe runs
/// under the rules jobs run under (sandboxed path, `file:` URL, protocol and format
/// whitelists, empty environment, time limit); answers are cached while the file's size and
/// modification time stay the same.
#[utoipa::path(
    get, path = "/probe/{path}", tag = "files",
    params(("path" = String, Path, description = "The file, relative to the data directory (`/` may be sent as `%2F`)")),
    responses(
        (status = 200, body = MediaInfoResponse),
        (status = 400, description = "The path is not valid percent-encoded UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such file", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The path is refused by the sandbox (escapes the data directory, ...), or the file is not media ffprobe can read (the detail has its reason)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "ffprobe could not be run or did not finish in time (`probe-unavailable`), or with the files in a bucket, the bucket does not answer or does not exist (`storage-unavailable`, with `Retry-After`, as the files API answers)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn probe_media(
    State(state): State<AppState>,
    AppPath(path): AppPath<String>,
    _: NoQuery,
) -> Result<AppJson<MediaInfoResponse>, ApiError> {
    let info = state.jobs.probe_media(&path).await?;
    Ok(AppJson(media_info_response(&info)))
}

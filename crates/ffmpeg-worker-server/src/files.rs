//! The files API's handlers: `PUT`, `GET`, `HEAD`, `DELETE /files/{path}` and `GET /files`.
//! Glue over [`jobs::files::Files`], plus HTTP's own parts: ranges, conditional requests and
//! the headers that keep an uploaded HTML or SVG file from running on this origin (Swagger
//! UI's).
//!
//! The path is a wildcard (`/files/{*path}` in axum; `/files/{path}` in the OpenAPI
//! document, where `/` is sent percent-encoded as `%2F`, which decodes to the same path).

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use jobs::model::DEFAULT_PAGE_SIZE;
use jobs::storage::{ByteStream, FileMeta, Preconditions, TagCondition};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::error::{ApiError, AppJson, AppPath, AppQuery, NoQuery};
use crate::wire::{FileEntry, FileResponse, Problem};

/// The routes, and their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(FilesApi::openapi())
        .route("/files", get(list_files))
        .route("/files/{*path}", put(put_file).get(get_file).head(head_file).delete(delete_file))
}

#[derive(OpenApi)]
#[openapi(paths(put_file, get_file, head_file, delete_file, list_files), components(schemas(FileBody)))]
struct FilesApi;

/// The file's bytes, sent as they are.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // Only describes the body in the OpenAPI document.
pub(crate) struct FileBody(Vec<u8>);

/// Characters percent-encoded in a path segment of a URL we hand out (`/` kept).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// Characters percent-encoded in a query value.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// Content types served inline (a player may show them); everything else is an attachment in
/// a sandbox, so an uploaded HTML, SVG or XML file cannot run script on this origin.
fn is_inline_media(content_type: &str) -> bool {
    let (kind, subtype) = content_type.split_once('/').unwrap_or((content_type, ""));
    match kind {
        "video" | "audio" => true,
        "image" => {
            matches!(subtype, "png" | "jpeg" | "gif" | "webp" | "avif" | "bmp" | "x-icon" | "tiff" | "jxl" | "heic")
        }
        // WebVTT is never rendered as a document; a DASH manifest (`application/dash+xml`) is
        // XML, which a browser would render with any script in it: an attachment (players
        // fetch it all the same).
        _ => matches!(
            content_type,
            "application/vnd.apple.mpegurl" | "application/x-mpegurl" | "text/plain" | "text/vtt"
        ),
    }
}

fn http_date(time: SystemTime) -> HeaderValue {
    HeaderValue::try_from(httpdate::fmt_http_date(time)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn offset(time: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(time)
}

/// `If-None-Match` matches `etag` (weak comparison; `*` matches any file).
fn none_match(headers: &HeaderMap, etag: &str) -> Option<bool> {
    let value = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    Some(value.split(',').any(|tag| tag.trim() == "*" || strip(tag) == strip(etag)))
}

/// Whether the request's conditions say "not modified" (304): `If-None-Match` first, else
/// `If-Modified-Since` (at one-second resolution, as `Last-Modified` has).
fn not_modified(headers: &HeaderMap, meta: &FileMeta) -> bool {
    if let Some(matched) = none_match(headers, &meta.etag) {
        return matched;
    }
    let Some(since) =
        headers.get(header::IF_MODIFIED_SINCE).and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
    else {
        return false;
    };
    let modified = httpdate::parse_http_date(&httpdate::fmt_http_date(meta.modified)).unwrap_or(meta.modified);
    modified <= since
}

/// The values of header `name`, all its lines joined with `,` (a list header may be sent in
/// several lines); `None` when absent or not text.
fn header_list(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The request's preconditions on the file (RFC 9110 §13.1): `If-Match`, `If-None-Match`,
/// `If-Unmodified-Since` (a value that is not an HTTP date is ignored, §13.1.4).
fn preconditions(headers: &HeaderMap) -> Preconditions {
    Preconditions {
        if_match: header_list(headers, header::IF_MATCH).map(|v| TagCondition::parse(&v)),
        if_none_match: header_list(headers, header::IF_NONE_MATCH).map(|v| TagCondition::parse(&v)),
        if_unmodified_since: headers
            .get(header::IF_UNMODIFIED_SINCE)
            .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok()),
    }
}

/// The most ranges one request may ask for: a `Range` header with more is ignored and the
/// whole file sent (as nginx's `max_ranges` does), so that many tiny parts cannot make an
/// answer far larger than the file.
const MAX_RANGES: usize = 16;

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// No (usable) range: the whole file.
    Whole,
    /// One satisfiable range, `start..end`.
    Part(u64, u64),
    /// Several satisfiable ranges, `start..end`, ascending, none overlapping or touching: a
    /// `multipart/byteranges` answer.
    Parts(Vec<(u64, u64)>),
    /// Nothing of the file can satisfy it: 416.
    Unsatisfiable,
}

/// One range-spec of a `bytes=` header against a file of `size` bytes: `Ok(Some)` satisfiable,
/// `Ok(None)` unsatisfiable, `Err` malformed.
fn one_range(spec: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let (first, last) = spec.trim().split_once('-').ok_or(())?;
    let number = |s: &str| -> Result<u64, ()> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        s.parse::<u64>().map_err(|_| ())
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix)? {
            0 => Ok(None),
            _ if size == 0 => Ok(None),
            n => Ok(Some((size.saturating_sub(n), size))),
        },
        (start, end) => {
            let start = number(start)?;
            let end = if end.is_empty() {
                size
            } else {
                match number(end)? {
                    end if end >= start => end.saturating_add(1).min(size),
                    _ => return Err(()),
                }
            };
            Ok((start < size).then_some((start, end)))
        }
    }
}

/// Parses a `bytes=` range header (RFC 9110 §14.1.2). A missing or malformed header, one with
/// more than [`MAX_RANGES`] ranges, or an `If-Range` that no longer matches, is served whole
/// (a server may ignore `Range`). Unsatisfiable ranges beside satisfiable ones are dropped;
/// overlapping or touching ranges are coalesced and the parts sent in ascending order (§15.3.7.2
/// allows both).
fn range_ask(headers: &HeaderMap, meta: &FileMeta) -> RangeAsk {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return RangeAsk::Whole };
    // `If-Range`: the range only applies to the same version of the file.
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        let same = if if_range.trim().starts_with('"') {
            if_range.trim() == meta.etag
        } else {
            httpdate::parse_http_date(if_range).is_ok_and(|date| date == meta.modified)
                || if_range.trim() == httpdate::fmt_http_date(meta.modified)
        };
        if !same {
            return RangeAsk::Whole;
        }
    }
    let Some(specs) = value.trim().strip_prefix("bytes=") else { return RangeAsk::Whole };
    // Empty elements of the list are allowed (`#` rule, RFC 9110 §5.6.1).
    let specs: Vec<&str> = specs.split(',').filter(|s| !s.trim().is_empty()).collect();
    if specs.is_empty() || specs.len() > MAX_RANGES {
        return RangeAsk::Whole;
    }
    let mut ranges = Vec::new();
    for spec in specs {
        match one_range(spec, meta.size) {
            Ok(Some(range)) => ranges.push(range),
            Ok(None) => {}
            Err(()) => return RangeAsk::Whole,
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    match merged.as_slice() {
        [] => RangeAsk::Unsatisfiable,
        [(start, end)] => RangeAsk::Part(*start, *end),
        _ => RangeAsk::Parts(merged),
    }
}

/// A `multipart/byteranges` body (RFC 9110 §14.6) of `parts` of `file`: each part's headers
/// (`Content-Type` of the file, `Content-Range`), then its bytes, read one part after the
/// other. Returns the content type (with the boundary), the exact length, and the body.
fn multipart(
    file: Box<dyn jobs::storage::StoredFile>,
    parts: &[(u64, u64)],
    boundary: &str,
) -> (String, u64, ByteStream) {
    let meta = file.meta().clone();
    let content_type = jobs::files::content_type(&meta.path);
    let heads: Vec<(Bytes, (u64, u64))> = parts
        .iter()
        .map(|&(start, end)| {
            let head = format!(
                "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {start}-{}/{}\r\n\r\n",
                end - 1,
                meta.size
            );
            (Bytes::from(head), (start, end))
        })
        .collect();
    let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
    let length =
        heads.iter().map(|(head, (start, end))| head.len() as u64 + (end - start)).sum::<u64>() + tail.len() as u64;
    // Each part's read starts only once the one before it has been sent.
    let body = futures_util::stream::iter(heads)
        .map(move |(head, (start, end))| {
            let bytes: ByteStream = match file.try_clone() {
                Ok(handle) => handle.read(start..end),
                Err(e) => Box::pin(futures_util::stream::once(async move { Err(e) })),
            };
            futures_util::stream::once(async move { Ok(head) }).chain(bytes)
        })
        .flatten()
        .chain(futures_util::stream::once(async move { Ok(tail) }));
    (format!("multipart/byteranges; boundary={boundary}"), length, Box::pin(body))
}

/// Headers every answer about a file carries.
fn file_headers(meta: &FileMeta) -> HeaderMap {
    let content_type = jobs::files::content_type(&meta.path);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::try_from(meta.etag.as_str()) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(header::LAST_MODIFIED, http_date(meta.modified));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !is_inline_media(&content_type) {
        let name = meta.path.rsplit('/').next().unwrap_or(&meta.path);
        let ascii: String =
            name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' { c } else { '_' }).collect();
        let encoded = utf8_percent_encode(name, NON_ALPHANUMERIC);
        if let Ok(v) = HeaderValue::try_from(format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    }
    if let Ok(v) = HeaderValue::try_from(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers
}

/// The `{path}` parameter of the file routes (documentation only).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct FilePathParam {
    /// Path relative to the data directory (`in/clip.mp4`; `/` may be sent as `%2F`). No
    /// `..` above the data directory, no absolute path, no NUL, names of at most 255 bytes.
    path: String,
}

/// The conditional headers of `GET` and `HEAD /files/{path}` (documentation only).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct ConditionalReadParams {
    /// Only if the file has one of these entity tags (`*`: any file); else 412.
    #[param(rename = "If-Match")]
    if_match: Option<String>,
    /// HTTP date: only if the file was not modified since (ignored beside `If-Match`); else 412.
    #[param(rename = "If-Unmodified-Since")]
    if_unmodified_since: Option<String>,
    /// 304 when the file has one of these entity tags (`*`: any file).
    #[param(rename = "If-None-Match")]
    if_none_match: Option<String>,
    /// HTTP date: 304 when the file was not modified since (ignored beside `If-None-Match`).
    #[param(rename = "If-Modified-Since")]
    if_modified_since: Option<String>,
}

/// Query parameters of `DELETE /files/{path}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteParams {
    /// Delete a directory and everything under it (default false: a directory is refused).
    recursive: Option<bool>,
}

/// Query parameters of `GET /files`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListFilesParams {
    /// Only files whose path starts with this text (a plain string prefix: `in/` lists the
    /// directory `in` recursively, `in/a` also matches `in/ab.mp4`). Default: every file.
    prefix: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Cursor from a previous page's `Link: <...>; rel="next"` header (the last path listed).
    cursor: Option<String>,
}

/// Upload a file
///
/// Stores the request body (`application/octet-stream`, any size up to the server's
/// MAX_UPLOAD_BYTES) at the path, creating parent directories. The body is streamed to a
/// temporary file beside the target, synced and renamed over it: readers and jobs see the old
/// file or the new one, never a part. A failed or interrupted upload leaves nothing.
/// `If-None-Match: *` refuses to replace an existing file (412). A file a queued or running
/// job reads or writes cannot be replaced (409).
#[utoipa::path(
    put, path = "/files/{path}", tag = "files",
    params(FilePathParam,
        ("If-None-Match" = Option<String>, Header, description = "`*`: only create, never replace (412 if the file exists); entity tags: replace only a file with none of them"),
        ("If-Match" = Option<String>, Header, description = "Replace only the file with one of these entity tags (`*`: any existing file); else 412. The check and the write are one step"),
        ("If-Unmodified-Since" = Option<String>, Header, description = "HTTP date: replace only a file not modified since (ignored beside If-Match)")),
    request_body(content = Option<FileBody>, content_type = "application/octet-stream", description = "The file's content (none: an empty file)"),
    responses(
        (status = 201, description = "Created", body = FileResponse,
         headers(("Location" = String, description = "URL of the file"))),
        (status = 200, description = "Replaced", body = FileResponse),
        (status = 400, description = "The upload did not complete (the client stopped sending), or the path is not valid percent-encoded UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The path is a directory, a parent is a file, or a queued or running job uses the file", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-None-Match: *` and the file exists, or `If-Match`, `If-None-Match` or `If-Unmodified-Since` does not hold (nothing was stored)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than MAX_UPLOAD_BYTES", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The path is not acceptable (escapes, absolute, NUL, too long, reserved)", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "No space left; nothing was stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn put_file(
    State(state): State<AppState>,
    AppPath(path): AppPath<String>,
    _: NoQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut preconditions = preconditions(&headers);
    // `If-None-Match: *` is a create-only put, which the storage makes atomic on its own.
    let create_only = preconditions.if_none_match == Some(TagCondition::Any);
    if create_only {
        preconditions.if_none_match = None;
    }
    let stream: ByteStream = Box::pin(body.into_data_stream().map_err(std::io::Error::other));
    let stored = state.files.put_if(&path, stream, create_only, &preconditions).await?;
    let meta = &stored.outcome.meta;
    let response = FileResponse {
        path: meta.path.clone(),
        size_bytes: meta.size,
        sha256: stored.outcome.sha256.clone(),
        modified_at: offset(meta.modified),
        content_type: stored.content_type.clone(),
    };
    let mut out = HeaderMap::new();
    if let Ok(v) = HeaderValue::try_from(meta.etag.as_str()) {
        out.insert(header::ETAG, v);
    }
    let status = if stored.outcome.created {
        if let Ok(v) = HeaderValue::try_from(format!("/files/{}", utf8_percent_encode(&meta.path, PATH_SEGMENT))) {
            out.insert(header::LOCATION, v);
        }
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, out, AppJson(response)).into_response())
}

/// Download a file
///
/// Streams the file, with `Content-Type` from its extension, `Content-Length`, `ETag`,
/// `Last-Modified` and `Accept-Ranges: bytes`. A `Range` (`bytes=0-1023`, `bytes=-500`) gets
/// 206 with that part; several (`bytes=0-99,200-299`, at most 16; overlapping ones merged)
/// get 206 `multipart/byteranges`, parts in ascending order; `If-None-Match` /
/// `If-Modified-Since` get 304 when unchanged.
/// Types outside a media allowlist (video, audio, common images, HLS playlists, plain text)
/// come as an attachment with `Content-Security-Policy: sandbox`, and every answer carries
/// `X-Content-Type-Options: nosniff`.
#[utoipa::path(
    get, path = "/files/{path}", tag = "files",
    params(FilePathParam, ConditionalReadParams),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = FileBody),
        (status = 206, description = "The requested range (`Content-Range`), or several as `multipart/byteranges`", content_type = "application/octet-stream", body = FileBody),
        (status = 304, description = "Not modified"),
        (status = 400, description = "The path is not valid percent-encoded UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such file", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The path is a directory", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` or `If-Unmodified-Since` does not hold", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range is beyond the end of the file", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The path is not acceptable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_file(
    State(state): State<AppState>,
    method: Method,
    AppPath(path): AppPath<String>,
    _: NoQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&state, &path, &headers, method == Method::HEAD).await
}

/// File metadata
///
/// The headers `GET` would answer (size, type, `ETag`, `Last-Modified`), without the body.
#[utoipa::path(
    head, path = "/files/{path}", tag = "files",
    params(FilePathParam, ConditionalReadParams),
    responses(
        (status = 200, description = "The file exists"),
        (status = 304, description = "Not modified"),
        (status = 412, description = "`If-Match` or `If-Unmodified-Since` does not hold"),
        (status = 400, description = "The path is not valid percent-encoded UTF-8"),
        (status = 404, description = "No such file"),
        (status = 409, description = "The path is a directory"),
        (status = 422, description = "The path is not acceptable"),
    )
)]
pub(crate) async fn head_file(
    State(state): State<AppState>,
    AppPath(path): AppPath<String>,
    _: NoQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&state, &path, &headers, true).await
}

async fn serve(state: &AppState, path: &str, headers: &HeaderMap, head: bool) -> Result<Response, ApiError> {
    let file = state.files.open(path).await?;
    let meta = file.meta().clone();
    // `If-Match` and `If-Unmodified-Since` first (412), then `If-None-Match` and
    // `If-Modified-Since` (304): RFC 9110 §13.2.2.
    let changed = Preconditions { if_none_match: None, ..preconditions(headers) };
    changed.check_for(path, Some(&meta)).map_err(|e| ApiError::Files(e.into()))?;
    let mut out = file_headers(&meta);
    if not_modified(headers, &meta) {
        out.remove(header::CONTENT_TYPE);
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    let (status, start, end) = match range_ask(headers, &meta) {
        RangeAsk::Whole => (StatusCode::OK, 0, meta.size),
        RangeAsk::Parts(parts) => {
            let mut random = [0u8; 12];
            getrandom::fill(&mut random).map_err(|e| {
                tracing::error!(error = %e, "no random bytes for a multipart boundary");
                ApiError::Internal
            })?;
            let boundary: String = random.iter().map(|b| format!("{b:02x}")).collect();
            let (content_type, length, body) = multipart(file, &parts, &boundary);
            if let Ok(v) = HeaderValue::try_from(content_type) {
                out.insert(header::CONTENT_TYPE, v);
            }
            let body = if head { Body::empty() } else { Body::from_stream(body) };
            let mut response = (StatusCode::PARTIAL_CONTENT, out, body).into_response();
            response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            return Ok(response);
        }
        RangeAsk::Part(start, end) => {
            if let Ok(v) = HeaderValue::try_from(format!("bytes {start}-{}/{}", end - 1, meta.size)) {
                out.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, start, end)
        }
        RangeAsk::Unsatisfiable => {
            let detail = format!("the range is beyond the end of the file ({} bytes)", meta.size);
            let mut response =
                ApiError::InvalidRequest { status: StatusCode::RANGE_NOT_SATISFIABLE, detail }.into_response();
            if let Ok(v) = HeaderValue::try_from(format!("bytes */{}", meta.size)) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(response);
        }
    };
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    let body = if head { Body::empty() } else { Body::from_stream(file.read(start..end)) };
    let mut response = (status, out, body).into_response();
    // `Body::empty()` would otherwise make hyper answer `Content-Length: 0` to a HEAD.
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    Ok(response)
}

/// Delete a file
///
/// Deletes the file, or with `recursive=true` a directory and everything under it. A file
/// that a queued or running job reads or writes cannot be deleted (409), nor a directory
/// holding one.
#[utoipa::path(
    delete, path = "/files/{path}", tag = "files",
    params(FilePathParam, DeleteParams,
        ("If-Match" = Option<String>, Header, description = "Delete only the file with one of these entity tags (`*`: any file); else 412"),
        ("If-None-Match" = Option<String>, Header, description = "Delete only a file with none of these entity tags; else 412"),
        ("If-Unmodified-Since" = Option<String>, Header, description = "HTTP date: delete only a file not modified since (ignored beside If-Match)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The path is not valid percent-encoded UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such file", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A directory without `recursive=true`, or in use by a queued or running job", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match`, `If-None-Match` or `If-Unmodified-Since` does not hold (nothing was deleted)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The path is not acceptable (or is the data directory, or holds a reserved file), or an unknown query parameter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_file(
    State(state): State<AppState>,
    AppPath(path): AppPath<String>,
    AppQuery(params): AppQuery<DeleteParams>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state.files.delete_if(&path, params.recursive.unwrap_or(false), &preconditions(&headers)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List files
///
/// Every file whose path starts with `prefix` (recursive; directories are not entries), in
/// path order (byte order). When more files follow, the `Link` header holds the next page's
/// URL (`rel="next"`).
#[utoipa::path(
    get, path = "/files", tag = "files",
    params(ListFilesParams),
    responses(
        (status = 200, description = "Files in path order", body = [FileEntry],
         headers(("Link" = String, description = "`<URL>; rel=\"next\"` when there is a next page"))),
        (status = 422, description = "Invalid limit or cursor, a prefix that is not acceptable (absolute, escaping, NUL), or an unknown parameter name", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_files(
    State(state): State<AppState>,
    AppQuery(params): AppQuery<ListFilesParams>,
) -> Result<impl IntoResponse, ApiError> {
    let prefix = params.prefix.unwrap_or_default();
    let limit = params.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    // An empty `cursor=` is refused, as `GET /jobs` refuses it.
    if params.cursor.as_deref() == Some("") {
        let detail = "cursor `` is not valid (a path, from a `Link` header)".to_owned();
        return Err(ApiError::InvalidRequest { status: StatusCode::UNPROCESSABLE_ENTITY, detail });
    }
    let page = state.files.list(&prefix, params.cursor.as_deref(), limit).await?;
    let next = page.next_after.as_deref().map(|after| {
        let mut next = format!("/files?limit={limit}&cursor={}", utf8_percent_encode(after, QUERY_VALUE));
        if !prefix.is_empty() {
            next.push_str(&format!("&prefix={}", utf8_percent_encode(&prefix, QUERY_VALUE)));
        }
        next
    });
    let body: Vec<FileEntry> = page
        .files
        .into_iter()
        .map(|f| FileEntry { path: f.path, size_bytes: f.size, modified_at: offset(f.modified) })
        .collect();
    Ok((crate::routes::next_page(next), AppJson(body)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn meta(size: u64) -> FileMeta {
        FileMeta { path: "a.mp4".to_owned(), size, modified: SystemTime::UNIX_EPOCH, etag: "\"e\"".to_owned() }
    }

    fn ask(range: &str, size: u64) -> RangeAsk {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::try_from(range).unwrap());
        range_ask(&headers, &meta(size))
    }

    #[test]
    fn ranges() {
        assert_eq!(ask("bytes=0-9", 100), RangeAsk::Part(0, 10));
        assert_eq!(ask("bytes=90-", 100), RangeAsk::Part(90, 100));
        assert_eq!(ask("bytes=90-500", 100), RangeAsk::Part(90, 100));
        assert_eq!(ask("bytes=-10", 100), RangeAsk::Part(90, 100));
        assert_eq!(ask("bytes=-1000", 100), RangeAsk::Part(0, 100));
        assert_eq!(ask("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(ask("bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(ask("bytes=0-", 0), RangeAsk::Unsatisfiable);
        assert_eq!(ask("bytes=5-2", 100), RangeAsk::Whole);
        assert_eq!(ask("items=0-1", 100), RangeAsk::Whole);
        assert_eq!(ask("bytes=x-1", 100), RangeAsk::Whole);
    }

    #[test]
    fn several_ranges() {
        assert_eq!(ask("bytes=0-1,5-6", 100), RangeAsk::Parts(vec![(0, 2), (5, 7)]));
        // Ascending, overlapping and touching ones coalesced, unsatisfiable ones dropped.
        assert_eq!(ask("bytes=50-59, 0-9,-5", 100), RangeAsk::Parts(vec![(0, 10), (50, 60), (95, 100)]));
        assert_eq!(ask("bytes=0-9,5-19,20-29,60-", 100), RangeAsk::Parts(vec![(0, 30), (60, 100)]));
        assert_eq!(ask("bytes=0-9,200-300", 100), RangeAsk::Part(0, 10));
        assert_eq!(ask("bytes=0-9,,20-29", 100), RangeAsk::Parts(vec![(0, 10), (20, 30)]));
        assert_eq!(ask("bytes=200-,300-400", 100), RangeAsk::Unsatisfiable);
        // One malformed spec, or too many: the whole file.
        assert_eq!(ask("bytes=0-9,x-1", 100), RangeAsk::Whole);
        let many: Vec<String> = (0..=MAX_RANGES).map(|n| format!("{}-{}", n * 2, n * 2)).collect();
        assert_eq!(ask(&format!("bytes={}", many.join(",")), 100), RangeAsk::Whole);
    }

    #[test]
    fn inline_media_only() {
        for inline in
            ["video/mp4", "audio/mpeg", "image/png", "application/vnd.apple.mpegurl", "text/plain", "text/vtt"]
        {
            assert!(is_inline_media(inline), "{inline}");
        }
        for attachment in [
            "text/html",
            "image/svg+xml",
            "application/xml",
            "application/octet-stream",
            "text/xml",
            "application/dash+xml",
        ] {
            assert!(!is_inline_media(attachment), "{attachment}");
        }
    }
}

//! The one sender of signed S3 requests ([`Raw::send`]): every request of this backend that
//! `object_store` does not make itself, signed with its SigV4 signer ([`AwsAuthorizer`]) and sent
//! through the same bounded HTTP client (`http.rs`, TLS included). A key is its exact text, as
//! the bucket holds it (`a//b`, a control character: keys of other tools that no
//! `object_store` path can name), and every request has one retry, timeout and error policy:
//!
//! - **Retries.** No answer, or an answer worth retrying (408, 429, 5xx, or a 200 whose body is
//!   an S3 `InternalError`/`SlowDown`), is sent again a few times ([`RETRIES`]) while the
//!   request timeout lasts, as `object_store` retries its own requests.
//! - **Timeouts.** Those of `http.rs`: a bucket that does not answer fails a request within
//!   about the request timeout.
//! - **Errors** ([`RawError`], which callers turn into a [`StorageError`]): a condition that
//!   did not hold (412, or 409 `ConditionalRequestConflict`), no such key or upload (404), a
//!   condition or request the server does not implement (501), and otherwise a storage error:
//!   [`StorageError::NoBucket`] (404 `NoSuchBucket`: the bucket was deleted),
//!   [`StorageError::Denied`] (401, 403), [`StorageError::Unavailable`] (no answer, 408, 429,
//!   5xx), [`StorageError::Io`] (any other answer), each naming the path the caller shows.
//!   A 2xx answer whose body is an S3 `<Error>` (which `CompleteMultipartUpload` and
//!   `UploadPartCopy` may send after a 200) is an error too.
//! - **Keys a URL cannot carry.** A key with a `.` or `..` name is refused without a request:
//!   the HTTP client would resolve it (`a/../b` is `b`) and reach another key.
//!
//! Its requests:
//!
//! - `ListObjectsV2` and `DeleteObjects`/`DeleteObject` of any key (`keys.rs`);
//! - `UploadPartCopy` of a byte range (`x-amz-copy-source-range`), pinned to the source's entity
//!   tag (`x-amz-copy-source-if-match`): copies of objects over [`COPY_MAX_BYTES`] in parts;
//! - `CompleteMultipartUpload` on a condition (`If-None-Match: *` or `If-Match: TAG`): the
//!   bucket checks the object at the key and puts the new one in one step;
//! - `DeleteObject` on a condition (`If-Match: TAG`);
//! - `ListMultipartUploads` of a key prefix and `AbortMultipartUpload` of any key: the
//!   multipart uploads a stopped upload left open (`multipart.rs`).
//!
//! AWS S3 honours these conditions (conditional writes since 2024, conditional deletes since
//! 2025). A server that does not know a condition either refuses it with 501
//! ([`RawError::NotImplemented`], the caller then falls back to its check one request
//! before) or ignores it: moto 5 ignores `If-Match` on `CompleteMultipartUpload`, and honours
//! the others.
//!
//! [`COPY_MAX_BYTES`]: super::COPY_MAX_BYTES

use std::fmt;
use std::io;
use std::ops::Range;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::client::{HttpClient, HttpRequest, HttpRequestBody};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::Deserialize;

use crate::storage::StorageError;

/// What a query value may hold unencoded: RFC 3986's unreserved characters (what SigV4's
/// canonical query string leaves as is).
pub(super) const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// What a key in a URL path may hold unencoded: the unreserved characters and `/` (what
/// `object_store` leaves unencoded, `STRICT_PATH_ENCODE_SET`; the signature is computed over
/// the same).
const KEY_ENCODE: &AsciiSet = &QUERY_ENCODE.remove(b'/');

/// Times a request that failed in a way worth retrying is sent again (as `object_store`'s
/// client of this bucket does), while the request timeout lasts.
const RETRIES: usize = 3;
/// The pause before the first retry; each next one doubles it.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// A condition on the object at a write's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WriteIf {
    /// No condition: replace whatever is there.
    Any,
    /// No object there (`If-None-Match: *`).
    Absent,
    /// The object there has this entity tag (`If-Match`, the tag as the bucket gave it).
    Is(String),
}

/// The object a multipart copy copies from.
#[derive(Debug, Clone, Copy)]
pub(super) struct CopySource<'a> {
    /// Its key's exact text.
    pub(super) key: &'a str,
    /// Its entity tag when the copy began: a part copy fails (412) once the object changed.
    pub(super) tag: Option<&'a str>,
}

/// Why a request of [`Raw::send`] failed.
#[derive(Debug)]
pub(super) enum RawError {
    /// 412 (or 409 `ConditionalRequestConflict`, a concurrent write): the condition did not
    /// hold.
    Precondition,
    /// 404: no such object (or upload).
    NotFound,
    /// 501: the server does not implement the request or its condition.
    NotImplemented(String),
    /// Anything else, as a storage error on the path in messages:
    /// [`StorageError::NoBucket`], [`StorageError::Denied`], [`StorageError::Unavailable`]
    /// (worth retrying: [`StorageError::is_transient`]) or [`StorageError::Io`].
    Storage(StorageError),
}

impl RawError {
    /// As a storage error on `shown` (a precondition that failed or a missing object as the
    /// caller names them elsewhere).
    pub(super) fn into_storage(self, shown: &str) -> StorageError {
        match self {
            RawError::Precondition => StorageError::PreconditionFailed {
                path: shown.to_owned(),
                reason: "the file changed while the request was checked",
            },
            RawError::NotFound => StorageError::NotFound(shown.to_owned()),
            RawError::NotImplemented(text) => {
                StorageError::Io { path: shown.to_owned(), source: io::Error::other(text) }
            }
            RawError::Storage(e) => e,
        }
    }

    fn is_transient(&self) -> bool {
        matches!(self, RawError::Storage(e) if e.is_transient())
    }
}

/// The signed-request sender of one bucket ([module docs](self)). Cheap to clone.
#[derive(Clone)]
pub(super) struct Raw {
    client: HttpClient,
    credentials: AwsCredentialProvider,
    /// `https://endpoint/BUCKET` (path style) or `https://BUCKET.endpoint`, as `object_store`
    /// addresses it.
    bucket_url: String,
    bucket: String,
    region: String,
    /// How long failures are retried (the request timeout).
    retry_for: Duration,
}

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Raw").field("bucket_url", &self.bucket_url).finish_non_exhaustive()
    }
}

/// `InitiateMultipartUploadResult`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Initiated {
    upload_id: String,
}

/// `CopyPartResult`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CopiedPart {
    e_tag: String,
}

/// An S3 error answer's `<Error><Code>...</Code><Message>...</Message></Error>`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ErrorAnswer {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Text escaped for an XML element's content.
pub(super) fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Whether `body`'s root element is an S3 `<Error>` (an XML declaration and white space may
/// come first). A `DeleteResult` holds `<Error>` elements, but not as its root.
fn is_error_document(body: &[u8]) -> bool {
    let mut rest = body.trim_ascii_start();
    if rest.starts_with(b"<?xml") {
        let Some(end) = rest.windows(2).position(|w| w == b"?>") else { return false };
        rest = rest[end + 2..].trim_ascii_start();
    }
    rest.starts_with(b"<Error>") || rest.starts_with(b"<Error ")
}

/// Whether a key's text holds a `.` or `..` name, which a URL cannot carry unchanged.
pub(super) fn has_dot_name(key: &str) -> bool {
    key.split('/').any(|name| matches!(name, "." | ".."))
}

/// `text` as a listing with `EncodingType` `url` gives it (`encoded`), decoded; `None` when
/// it is not UTF-8 once decoded.
pub(super) fn decoded(text: String, encoded: bool) -> Option<String> {
    match encoded {
        true => percent_decode_str(&text).decode_utf8().ok().map(std::borrow::Cow::into_owned),
        false => Some(text),
    }
}

/// What [`Raw::send`] sends, but the body (sent again on a retry).
#[derive(Clone, Copy)]
struct Request<'a> {
    method: &'a str,
    key: Option<&'a str>,
    query: &'a str,
    headers: &'a [(&'a str, String)],
    shown: &'a str,
}

/// One page of `ListMultipartUploads` ([`Raw::list_uploads`]).
pub(super) struct UploadsPage {
    /// The uploads, in key order.
    pub(super) uploads: Vec<ListedUpload>,
    /// Where the next page starts (key marker, upload id marker); `None` on the last page.
    pub(super) next: Option<(String, String)>,
}

/// One open multipart upload as the bucket lists it.
pub(super) struct ListedUpload {
    /// Its key's exact text (whole, the prefix included).
    pub(super) key: String,
    /// Its id.
    pub(super) id: String,
    /// When it was started, if the answer says so readably.
    pub(super) initiated: Option<SystemTime>,
}

/// `ListMultipartUploadsResult`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedUploads {
    #[serde(default)]
    upload: Vec<ListedEntry>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
    #[serde(default)]
    encoding_type: Option<String>,
}

/// `Upload` of a `ListMultipartUploadsResult`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedEntry {
    key: String,
    upload_id: String,
    #[serde(default)]
    initiated: Option<String>,
}

impl Raw {
    /// A sender to `bucket` through `client`, signing with `credentials` for `region`;
    /// `endpoint` and `virtual_hosted` as given to `object_store` (its addressing rules);
    /// failures worth it retried for `retry_for` (the request timeout).
    pub(super) fn new(
        client: HttpClient,
        credentials: AwsCredentialProvider,
        endpoint: Option<&str>,
        virtual_hosted: bool,
        bucket: &str,
        region: &str,
        retry_for: Duration,
    ) -> Raw {
        let bucket_url = match (endpoint, virtual_hosted) {
            (Some(endpoint), true) => endpoint.trim_end_matches('/').to_owned(),
            (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        Raw { client, credentials, bucket_url, bucket: bucket.to_owned(), region: region.to_owned(), retry_for }
    }

    /// The bucket's name.
    pub(super) fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Sends `method` on `key` (a whole key's exact text; `None`: the bucket itself) with
    /// `query` (encoded, may be empty), `headers` and `body`, signed; retried while worth it
    /// within the request timeout (see the [module docs](self)). `shown` names what the
    /// request is about in errors. The answer's body.
    ///
    /// # Errors
    /// [`RawError`], as the [module docs](self) say.
    pub(super) async fn send(
        &self,
        method: &str,
        key: Option<&str>,
        query: &str,
        headers: &[(&str, String)],
        body: Bytes,
        shown: &str,
    ) -> Result<Bytes, RawError> {
        let request = Request { method, key, query, headers, shown };
        self.send_tries(&request, body).await.0.map(|(_, body)| body)
    }

    /// [`Raw::send`] of `request`: the answer's headers and body, and how many times the request
    /// was sent (more than once: an earlier try's answer was lost or refused, and the server
    /// may have acted on it).
    async fn send_tries(
        &self,
        request: &Request<'_>,
        body: Bytes,
    ) -> (Result<(http::HeaderMap, Bytes), RawError>, usize) {
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        for tries in 1..=RETRIES {
            match self.send_once(request, body.clone()).await {
                Err(e) if e.is_transient() && started.elapsed() + pause < self.retry_for => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                answer => return (answer, tries),
            }
        }
        (self.send_once(request, body).await, RETRIES + 1)
    }

    async fn send_once(&self, request: &Request<'_>, body: Bytes) -> Result<(http::HeaderMap, Bytes), RawError> {
        let Request { method, key, query, headers, shown } = *request;
        let storage = |e: StorageError| RawError::Storage(e);
        let io = |source: io::Error| storage(StorageError::Io { path: shown.to_owned(), source });
        let unavailable = |source: io::Error| storage(StorageError::Unavailable { path: shown.to_owned(), source });
        let mut url = self.bucket_url.clone();
        if let Some(key) = key {
            if has_dot_name(key) {
                return Err(io(io::Error::other(format!(
                    "the key `{}` has a `.` or `..` name: no request can name it safely (the URL would \
                     be resolved to another key); remove it with another tool",
                    key.escape_debug()
                ))));
            }
            url.push('/');
            url.extend(utf8_percent_encode(key, KEY_ENCODE));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let mut builder = http::Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let mut request: HttpRequest =
            builder.body(HttpRequestBody::from(body)).map_err(|e| io(io::Error::other(e)))?;
        let credential = self.credentials.get_credential().await.map_err(|e| match e {
            e @ (object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }) => {
                storage(StorageError::Denied { path: shown.to_owned(), source: io::Error::other(e) })
            }
            e => unavailable(io::Error::other(e)),
        })?;
        AwsAuthorizer::new(&credential, "s3", &self.region).authorize(&mut request, None);
        let response = self.client.execute(request).await.map_err(|e| unavailable(io::Error::other(e)))?;
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let body = body.bytes().await.map_err(|e| unavailable(io::Error::other(e)))?;
        if (200..300).contains(&status) && !is_error_document(&body) {
            return Ok((parts.headers, body));
        }
        let text = String::from_utf8_lossy(&body);
        let error: ErrorAnswer = quick_xml::de::from_str(&text).unwrap_or_default();
        let words = match (error.code.is_empty(), error.message.is_empty()) {
            (true, _) => text.chars().take(300).collect::<String>(),
            (false, true) => error.code.clone(),
            (false, false) => format!("{}: {}", error.code, error.message),
        };
        let words = format!("{method} {url}: the bucket answered {status}: {words}");
        let source = io::Error::other(words.clone());
        Err(match (status, error.code.as_str()) {
            (_, "NoSuchBucket") => {
                storage(StorageError::NoBucket { path: shown.to_owned(), bucket: self.bucket.clone(), source })
            }
            (412, _) | (_, "PreconditionFailed" | "ConditionalRequestConflict") => RawError::Precondition,
            (404, _) => RawError::NotFound,
            (501, _) | (_, "NotImplemented") => RawError::NotImplemented(words),
            (401 | 403, _) | (_, "AccessDenied") => storage(StorageError::Denied { path: shown.to_owned(), source }),
            (408 | 429 | 500..=599, _) | (_, "InternalError" | "SlowDown" | "ServiceUnavailable") => {
                unavailable(source)
            }
            _ => io(source),
        })
    }

    /// `CreateMultipartUpload` of `key`: the upload's id.
    pub(super) async fn create_upload(&self, key: &str, shown: &str) -> Result<String, RawError> {
        let body = self.send("POST", Some(key), "uploads=", &[], Bytes::new(), shown).await?;
        let initiated: Initiated = quick_xml::de::from_str(&String::from_utf8_lossy(&body)).map_err(|e| {
            let source = io::Error::other(format!("the bucket's answer to CreateMultipartUpload: {e}"));
            RawError::Storage(StorageError::Io { path: shown.to_owned(), source })
        })?;
        Ok(initiated.upload_id)
    }

    /// `UploadPartCopy`: part `number` (from 1) of `upload` at `key` is `range` of `source`
    /// (the whole object when `None`). The part's entity tag.
    pub(super) async fn copy_part(
        &self,
        key: &str,
        upload: &str,
        number: usize,
        source: &CopySource<'_>,
        range: Option<Range<u64>>,
        shown: &str,
    ) -> Result<String, RawError> {
        let query = format!("partNumber={number}&uploadId={}", utf8_percent_encode(upload, NON_ALPHANUMERIC));
        let copy_source = format!("{}/{}", self.bucket, utf8_percent_encode(source.key, KEY_ENCODE));
        let mut headers = vec![("x-amz-copy-source", copy_source)];
        if let Some(range) = range {
            headers.push(("x-amz-copy-source-range", format!("bytes={}-{}", range.start, range.end - 1)));
        }
        if let Some(tag) = source.tag {
            headers.push(("x-amz-copy-source-if-match", tag.to_owned()));
        }
        let body = self.send("PUT", Some(key), &query, &headers, Bytes::new(), shown).await?;
        let part: CopiedPart = quick_xml::de::from_str(&String::from_utf8_lossy(&body)).map_err(|e| {
            let source = io::Error::other(format!("the bucket's answer to UploadPartCopy: {e}"));
            RawError::Storage(StorageError::Io { path: shown.to_owned(), source })
        })?;
        Ok(part.e_tag)
    }

    /// `CompleteMultipartUpload` of `upload` at `key` from `parts` (their entity tags, in
    /// order), on the condition `condition`.
    pub(super) async fn complete(
        &self,
        key: &str,
        upload: &str,
        parts: &[String],
        condition: &WriteIf,
        shown: &str,
    ) -> Result<(), RawError> {
        let query = format!("uploadId={}", utf8_percent_encode(upload, NON_ALPHANUMERIC));
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (i, tag) in parts.iter().enumerate() {
            xml.push_str(&format!("<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>", i + 1, xml_text(tag)));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let headers: Vec<(&str, String)> = match condition {
            WriteIf::Any => Vec::new(),
            WriteIf::Absent => vec![("if-none-match", "*".to_owned())],
            WriteIf::Is(tag) => vec![("if-match", tag.clone())],
        };
        let request = Request { method: "POST", key: Some(key), query: &query, headers: &headers, shown };
        let (answer, tries) = self.send_tries(&request, Bytes::from(xml)).await;
        match answer {
            // A try whose answer was lost may have completed the upload: the next one then finds
            // no such upload (404 `NoSuchUpload`) or, create-only, the object it made (412). The
            // object at the key with the entity tag these parts make is that completion.
            Err(RawError::NotFound | RawError::Precondition) if tries > 1 => match self.entity_tag(key, shown).await {
                Ok(Some(tag)) if tag.trim_matches('"') == multipart_tag(parts).trim_matches('"') => {
                    tracing::debug!(key, "a retried completion found the upload completed by an earlier try");
                    Ok(())
                }
                _ => answer.map(drop),
            },
            answer => answer.map(drop),
        }
    }

    /// The entity tag of the object at `key` (`HEAD`); `None` when there is none.
    async fn entity_tag(&self, key: &str, shown: &str) -> Result<Option<String>, RawError> {
        let request = Request { method: "HEAD", key: Some(key), query: "", headers: &[], shown };
        match self.send_tries(&request, Bytes::new()).await.0 {
            Ok((headers, _)) => {
                Ok(headers.get(http::header::ETAG).and_then(|tag| tag.to_str().ok()).map(str::to_owned))
            }
            Err(RawError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `AbortMultipartUpload` of `upload` at `key` (its exact text); an upload already gone is
    /// no error.
    pub(super) async fn abort(&self, key: &str, upload: &str, shown: &str) -> Result<(), RawError> {
        let query = format!("uploadId={}", utf8_percent_encode(upload, NON_ALPHANUMERIC));
        match self.send("DELETE", Some(key), &query, &[], Bytes::new(), shown).await {
            Ok(_) | Err(RawError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `DeleteObject` of `key` if its entity tag is `tag` (`If-Match`).
    pub(super) async fn delete_if_tag(&self, key: &str, tag: &str, shown: &str) -> Result<(), RawError> {
        self.send("DELETE", Some(key), "", &[("if-match", tag.to_owned())], Bytes::new(), shown).await.map(drop)
    }

    /// `ListMultipartUploads` of the keys that start with `prefix`, after `after` (the previous
    /// page's markers). Keys are asked for URL-encoded (`encoding-type=url`), so any key
    /// reads back exactly; one that is not UTF-8 once decoded is left out.
    pub(super) async fn list_uploads(
        &self,
        prefix: &str,
        after: Option<&(String, String)>,
        shown: &str,
    ) -> Result<UploadsPage, RawError> {
        let encode = |value: &str| utf8_percent_encode(value, QUERY_ENCODE).to_string();
        let mut query = String::from("encoding-type=url&");
        if let Some((key, _)) = after {
            query.push_str(&format!("key-marker={}&", encode(key)));
        }
        query.push_str(&format!("prefix={}", encode(prefix)));
        if let Some((_, id)) = after {
            query.push_str(&format!("&upload-id-marker={}", encode(id)));
        }
        query.push_str("&uploads=");
        let body = self.send("GET", None, &query, &[], Bytes::new(), shown).await?;
        let listed: ListedUploads = quick_xml::de::from_str(&String::from_utf8_lossy(&body)).map_err(|e| {
            let source = io::Error::other(format!("the bucket's answer to ListMultipartUploads: {e}"));
            RawError::Storage(StorageError::Io { path: shown.to_owned(), source })
        })?;
        let encoded = listed.encoding_type.as_deref() == Some("url");
        let uploads = listed
            .upload
            .into_iter()
            .filter_map(|entry| {
                Some(ListedUpload {
                    initiated: entry.initiated.as_deref().and_then(|text| {
                        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                            .ok()
                            .map(Into::into)
                    }),
                    key: decoded(entry.key, encoded)?,
                    id: entry.upload_id,
                })
            })
            .collect();
        let next = match (listed.is_truncated, listed.next_key_marker, listed.next_upload_id_marker) {
            (true, Some(key), Some(id)) => Some((decoded(key, encoded).unwrap_or_default(), id)),
            _ => None,
        };
        Ok(UploadsPage { uploads, next })
    }
}

/// The entity tag S3 gives an object completed from parts whose entity tags are `parts` (in
/// order, quoted hex MD5s): the MD5 of their digests one after the other, a `-`, and how many
/// there are (`"3858f62230ac3c915f300c664312c11f-2"`). What AWS S3 and moto compute; a server
/// computing another tells no completion this way (a retried completion's error then stands).
fn multipart_tag(parts: &[String]) -> String {
    use md5::Digest as _;
    let mut md5 = md5::Md5::new();
    for part in parts {
        md5.update(hex::decode(part.trim_matches('"')).unwrap_or_default());
    }
    format!("\"{}-{}\"", hex::encode(md5.finalize()), parts.len())
}

#[cfg(test)]
mod tests {
    use super::{has_dot_name, is_error_document};

    #[test]
    fn an_error_document_is_one_whose_root_is_error() {
        assert!(is_error_document(b"<Error><Code>InternalError</Code></Error>"));
        assert!(is_error_document(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n  <Error><Code>X</Code></Error>"));
        // `DeleteObjects` names the keys it could not delete in `<Error>` elements.
        assert!(!is_error_document(b"<?xml version=\"1.0\"?><DeleteResult><Error><Key>a</Key></Error></DeleteResult>"));
        assert!(!is_error_document(
            b"<ListBucketResult><Contents><Key>&lt;Error&gt;</Key></Contents></ListBucketResult>"
        ));
        assert!(!is_error_document(b""));
    }

    #[test]
    fn a_dot_name_is_a_whole_name() {
        for key in ["a/../b", "./a", "a/.", ".."] {
            assert!(has_dot_name(key), "{key:?}");
        }
        for key in ["a//b", "a/.b", "a/..b/c", "a\u{1}b"] {
            assert!(!has_dot_name(key), "{key:?}");
        }
    }
}

//! The S3 requests `object_store` cannot make, signed with its own SigV4 signer
//! ([`AwsAuthorizer`]) and sent through the same bounded HTTP client (`http.rs`, TLS included):
//!
//! - `UploadPartCopy` of a byte range (`x-amz-copy-source-range`), pinned to the source's entity
//!   tag (`x-amz-copy-source-if-match`): copies of objects over [`COPY_MAX_BYTES`] in parts;
//! - `CompleteMultipartUpload` on a condition (`If-None-Match: *` or `If-Match: TAG`): the
//!   bucket checks the object at the key and puts the new one in one step;
//! - `DeleteObject` on a condition (`If-Match: TAG`).
//! - `ListMultipartUploads` of a key prefix (and `AbortMultipartUpload`): the multipart uploads
//!   a stopped upload left open (`multipart.rs`).
//!
//! AWS S3 honours these conditions (conditional writes since 2024, conditional deletes since
//! 2025). A server that does not know a condition either refuses it with 501
//! ([`RawError::NotImplemented`], the caller then falls back to its check one request
//! before) or ignores it: moto 5 ignores `If-Match` on `CompleteMultipartUpload`, and honours
//! the others.
//!
//! These requests are not retried here: a failure is the caller's answer (503 for a bucket
//! that does not answer, a job retried by its attempts).
//!
//! [`COPY_MAX_BYTES`]: super::COPY_MAX_BYTES

use std::fmt;
use std::io;
use std::ops::Range;
use std::time::SystemTime;

use bytes::Bytes;
use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::client::{HttpClient, HttpRequest, HttpRequestBody};
use object_store::path::Path as Key;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use crate::storage::StorageError;

/// What `object_store` percent-encodes in a key in a URL (`STRICT_PATH_ENCODE_SET`): every
/// byte but RFC 3986's unreserved characters and `/`; the signature is computed over the same.
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// What a query parameter's value may keep unencoded: RFC 3986's unreserved characters.
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

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
    /// Its key.
    pub(super) key: &'a Key,
    /// Its entity tag when the copy began: a part copy fails (412) once the object changed.
    pub(super) tag: Option<&'a str>,
}

/// Why a request of this module failed.
#[derive(Debug)]
pub(super) enum RawError {
    /// 412 (or 409 `ConditionalRequestConflict`, a concurrent write): the condition did not
    /// hold.
    Precondition,
    /// 404: no such object (or upload).
    NotFound,
    /// 501: the server does not implement the request or its condition.
    NotImplemented(String),
    /// Anything else, as a storage error on the path in messages.
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
}

/// The signed-request client of one bucket. Cheap to clone.
#[derive(Clone)]
pub(super) struct Raw {
    client: HttpClient,
    credentials: AwsCredentialProvider,
    /// `https://endpoint/BUCKET` (path style) or `https://BUCKET.endpoint`, as `object_store`
    /// addresses it.
    bucket_url: String,
    bucket: String,
    region: String,
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

/// Text of an XML element's content, escaped.
fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
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
    /// Its key (whole, the prefix included).
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
    /// A client of `bucket` through `client`, signing with `credentials` for `region`;
    /// `endpoint` and `virtual_hosted` as given to `object_store` (its addressing rules).
    pub(super) fn new(
        client: HttpClient,
        credentials: AwsCredentialProvider,
        endpoint: Option<&str>,
        virtual_hosted: bool,
        bucket: &str,
        region: &str,
    ) -> Raw {
        let bucket_url = match (endpoint, virtual_hosted) {
            (Some(endpoint), true) => endpoint.trim_end_matches('/').to_owned(),
            (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        Raw { client, credentials, bucket_url, bucket: bucket.to_owned(), region: region.to_owned() }
    }

    /// Sends `method` on `key` with `query` (already encoded, may be empty), `headers` and
    /// `body`, signed. The answer's status and body; a 2xx answer whose body is an S3
    /// `<Error>` (which `CompleteMultipartUpload` and `UploadPartCopy` may send after a 200) is
    /// an error.
    async fn send(
        &self,
        method: &str,
        key: &Key,
        query: &str,
        headers: &[(&str, String)],
        body: Bytes,
        shown: &str,
    ) -> Result<Bytes, RawError> {
        let transient =
            |source: io::Error| RawError::Storage(StorageError::Unavailable { path: shown.to_owned(), source });
        let mut url = format!("{}/{}", self.bucket_url, utf8_percent_encode(key.as_ref(), KEY_ENCODE));
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let mut builder = http::Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let mut request: HttpRequest = builder
            .body(HttpRequestBody::from(body))
            .map_err(|e| RawError::Storage(StorageError::Io { path: shown.to_owned(), source: io::Error::other(e) }))?;
        let credential = self.credentials.get_credential().await.map_err(|e| match e {
            e @ (object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }) => {
                RawError::Storage(StorageError::Denied { path: shown.to_owned(), source: io::Error::other(e) })
            }
            e => transient(io::Error::other(e)),
        })?;
        AwsAuthorizer::new(&credential, "s3", &self.region).authorize(&mut request, None);
        let response = self.client.execute(request).await.map_err(|e| transient(io::Error::other(e)))?;
        let status = response.status().as_u16();
        let body = response.into_body().bytes().await.map_err(|e| transient(io::Error::other(e)))?;
        let answer = || {
            let text = String::from_utf8_lossy(&body);
            let error: ErrorAnswer = quick_xml::de::from_str(&text).unwrap_or_default();
            let words = match (error.code.is_empty(), error.message.is_empty()) {
                (true, _) => text.chars().take(300).collect::<String>(),
                (false, true) => error.code.clone(),
                (false, false) => format!("{}: {}", error.code, error.message),
            };
            (error.code, format!("{method} {url}: the bucket answered {status}: {words}"))
        };
        if (200..300).contains(&status) {
            if body.starts_with(b"<?xml") || body.starts_with(b"<Error") {
                let text = String::from_utf8_lossy(&body);
                if text.contains("<Error>") {
                    let (code, words) = answer();
                    return Err(match code.as_str() {
                        "PreconditionFailed" | "ConditionalRequestConflict" => RawError::Precondition,
                        "InternalError" | "SlowDown" | "ServiceUnavailable" => transient(io::Error::other(words)),
                        _ => RawError::Storage(StorageError::Io {
                            path: shown.to_owned(),
                            source: io::Error::other(words),
                        }),
                    });
                }
            }
            return Ok(body);
        }
        let (code, words) = answer();
        let source = io::Error::other(words.clone());
        Err(match (status, code.as_str()) {
            (412, _) | (409, "ConditionalRequestConflict") => RawError::Precondition,
            (404, _) => RawError::NotFound,
            (501, _) | (_, "NotImplemented") => RawError::NotImplemented(words),
            (401 | 403, _) => RawError::Storage(StorageError::Denied { path: shown.to_owned(), source }),
            (408 | 429, _) | (500..=599, _) => transient(source),
            _ => RawError::Storage(StorageError::Io { path: shown.to_owned(), source }),
        })
    }

    /// `CreateMultipartUpload` of `key`: the upload's id.
    pub(super) async fn create_upload(&self, key: &Key, shown: &str) -> Result<String, RawError> {
        let body = self.send("POST", key, "uploads=", &[], Bytes::new(), shown).await?;
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
        key: &Key,
        upload: &str,
        number: usize,
        source: &CopySource<'_>,
        range: Option<Range<u64>>,
        shown: &str,
    ) -> Result<String, RawError> {
        let query = format!("partNumber={number}&uploadId={}", utf8_percent_encode(upload, NON_ALPHANUMERIC));
        let copy_source = format!("{}/{}", self.bucket, utf8_percent_encode(source.key.as_ref(), KEY_ENCODE));
        let mut headers = vec![("x-amz-copy-source", copy_source)];
        if let Some(range) = range {
            headers.push(("x-amz-copy-source-range", format!("bytes={}-{}", range.start, range.end - 1)));
        }
        if let Some(tag) = source.tag {
            headers.push(("x-amz-copy-source-if-match", tag.to_owned()));
        }
        let body = self.send("PUT", key, &query, &headers, Bytes::new(), shown).await?;
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
        key: &Key,
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
        self.send("POST", key, &query, &headers, Bytes::from(xml), shown).await.map(drop)
    }

    /// `AbortMultipartUpload` of `upload` at `key`; an upload already gone is no error.
    pub(super) async fn abort(&self, key: &Key, upload: &str, shown: &str) -> Result<(), RawError> {
        let query = format!("uploadId={}", utf8_percent_encode(upload, NON_ALPHANUMERIC));
        match self.send("DELETE", key, &query, &[], Bytes::new(), shown).await {
            Ok(_) | Err(RawError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `DeleteObject` of `key` if its entity tag is `tag` (`If-Match`).
    pub(super) async fn delete_if_tag(&self, key: &Key, tag: &str, shown: &str) -> Result<(), RawError> {
        self.send("DELETE", key, "", &[("if-match", tag.to_owned())], Bytes::new(), shown).await.map(drop)
    }

    /// `ListMultipartUploads` of the keys that start with `prefix`, after `after` (the previous
    /// page's markers).
    pub(super) async fn list_uploads(
        &self,
        prefix: &str,
        after: Option<&(String, String)>,
        shown: &str,
    ) -> Result<UploadsPage, RawError> {
        let encode = |value: &str| utf8_percent_encode(value, QUERY_ENCODE).to_string();
        let mut query = match after {
            Some((key, _)) => format!("key-marker={}&", encode(key)),
            None => String::new(),
        };
        query.push_str(&format!("prefix={}", encode(prefix)));
        if let Some((_, id)) = after {
            query.push_str(&format!("&upload-id-marker={}", encode(id)));
        }
        query.push_str("&uploads=");
        let body = self.send("GET", &Key::default(), &query, &[], Bytes::new(), shown).await?;
        let listed: ListedUploads = quick_xml::de::from_str(&String::from_utf8_lossy(&body)).map_err(|e| {
            let source = io::Error::other(format!("the bucket's answer to ListMultipartUploads: {e}"));
            RawError::Storage(StorageError::Io { path: shown.to_owned(), source })
        })?;
        let uploads = listed
            .upload
            .into_iter()
            .map(|entry| ListedUpload {
                initiated: entry.initiated.as_deref().and_then(|text| {
                    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                        .ok()
                        .map(Into::into)
                }),
                key: entry.key,
                id: entry.upload_id,
            })
            .collect();
        let next = match (listed.is_truncated, listed.next_key_marker, listed.next_upload_id_marker) {
            (true, Some(key), Some(id)) => Some((key, id)),
            _ => None,
        };
        Ok(UploadsPage { uploads, next })
    }
}

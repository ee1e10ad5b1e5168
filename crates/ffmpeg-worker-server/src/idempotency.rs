//! The `Idempotency-Key` request header of `POST /jobs` (IETF draft
//! draft-ietf-httpapi-idempotency-key-header; Stripe's API): reading the key, and the
//! fingerprint of a submission that a repeat is compared by. The rules are the `jobs` crate's
//! ([`jobs::idempotency`]); this module is the HTTP side of them.

use axum::http::{HeaderMap, HeaderName, StatusCode};
use ffmpeg_worker_api::CreateJobRequest;
use jobs::idempotency::IdempotencyKey;
use sha2::{Digest as _, Sha256};

use crate::error::ApiError;

/// The request header carrying the client's key.
pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The response header of a repeat: `Idempotent-Replayed: true` when the answer is the job an
/// earlier submission with the same key created (status 200), absent on a new job (201), as
/// Stripe's API answers.
pub(crate) const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The request's idempotency key, if it has one: the `Idempotency-Key` header's value, 1 to 255
/// visible ASCII characters. The draft's form, a Structured Fields string (`"abc"`, with `\"`
/// and `\\` escapes), counts as the key inside the quotes, so `"abc"` and `abc` are one key.
///
/// # Errors
/// 422 ([`ApiError::InvalidRequest`]) naming the header: more than one such header, or a value
/// that is not a key (empty, too long, a space, a control or non-ASCII character).
pub(crate) fn key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let refused = |why: String| ApiError::InvalidRequest {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        detail: format!("the Idempotency-Key header: {why}"),
    };
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(refused("give it once (one key per request)".to_owned()));
    }
    // Bytes that are not visible ASCII are named by the key's own check, at their place.
    let text = String::from_utf8_lossy(value.as_bytes());
    let key = unquote(&text).unwrap_or_else(|| text.into_owned());
    IdempotencyKey::parse(&key).map(Some).map_err(|e| refused(e.to_string()))
}

/// The content of a Structured Fields string (RFC 8941 §3.3.3: `"..."` with `\"` and `\\`
/// escapes), or `None` when `text` is not one.
fn unquote(text: &str) -> Option<String> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('"' | '\\')) => out.push(escaped),
                _ => return None,
            },
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// The fingerprint a repeat of `request` must match: `sha256:` and the hex SHA-256 of the
/// request as the server read it, written back as JSON in one canonical form (fields in their
/// declared order, `metadata` keys sorted, fields at their default left out, no spaces). So
/// the same submission matches whatever its spacing, key order, escapes or spelled-out
/// defaults (`"priority": 0`); a different command, argument list, option or webhook does not.
pub(crate) fn fingerprint(request: &CreateJobRequest) -> String {
    // Serializing a struct of strings, numbers, lists and maps cannot fail.
    let canonical = serde_json::to_vec(request).unwrap_or_default();
    let digest = Sha256::digest(&canonical);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest {
        use std::fmt::Write as _;
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn read(values: &[&[u8]]) -> Result<Option<String>, String> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(IDEMPOTENCY_KEY, HeaderValue::from_bytes(value).expect("a header value"));
        }
        key(&headers).map(|k| k.map(String::from)).map_err(|e| e.to_string())
    }

    #[test]
    fn keys_are_read_plain_or_quoted_and_refused_naming_the_header() {
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(read(&[b"abc-123"]), Ok(Some("abc-123".to_owned())));
        assert_eq!(read(&[b"\"abc-123\""]), Ok(Some("abc-123".to_owned())));
        assert_eq!(read(&[br#""a\"b\\c""#]), Ok(Some(r#"a"b\c"#.to_owned())));
        // Not a Structured Fields string: the text as it is.
        assert_eq!(read(&[b"\"abc"]), Ok(Some("\"abc".to_owned())));
        assert_eq!(read(&[br#""a\x""#]), Ok(Some(r#""a\x""#.to_owned())));
        for (values, expected) in [
            (&[&b""[..]][..], "the Idempotency-Key header: the idempotency key is empty"),
            (&[&b"\"\""[..]][..], "the Idempotency-Key header: the idempotency key is empty"),
            (&[&b"a b"[..]][..], "the Idempotency-Key header: character 2 of the idempotency key"),
            (&[&b"cl\xc3\xa9"[..]][..], "the Idempotency-Key header: character 3 of the idempotency key"),
            (&[&b"a"[..], &b"b"[..]][..], "the Idempotency-Key header: give it once"),
        ] {
            let error = read(values).expect_err("refused");
            assert!(error.starts_with(expected), "{values:?}: {error}");
        }
        let long = "k".repeat(256);
        assert!(read(&[long.as_bytes()]).expect_err("too long").contains("256 bytes long"));
        assert_eq!(read(&["k".repeat(255).as_bytes()]), Ok(Some("k".repeat(255))));
    }

    #[test]
    fn the_fingerprint_is_of_the_request_as_read_not_of_its_spelling() {
        let of = |body: &str| fingerprint(&serde_json::from_str::<CreateJobRequest>(body).expect("a request"));
        let plain = of(r#"{"command": "-i a.mp4 b.mp4"}"#);
        assert!(plain.starts_with("sha256:") && plain.len() == 7 + 64, "{plain}");
        for same in [
            r#"{"command":"-i a.mp4 b.mp4"}"#,
            r#"  {"priority": 0, "command": "-i a.mp4 b.mp4", "metadata": {}}"#,
            r#"{"command": "-i a.mp4 b\u002emp4", "requires": []}"#,
        ] {
            assert_eq!(of(same), plain, "{same}");
        }
        for different in [
            r#"{"command": "-i a.mp4 c.mp4"}"#,
            r#"{"args": ["-i", "a.mp4", "b.mp4"]}"#,
            r#"{"command": "-i a.mp4 b.mp4", "priority": 1}"#,
            r#"{"command": "-i a.mp4 b.mp4", "metadata": {"k": "v"}}"#,
        ] {
            assert_ne!(of(different), plain, "{different}");
        }
        // Metadata keys in any order: one request.
        assert_eq!(
            of(r#"{"command": "x", "metadata": {"a": "1", "b": "2"}}"#),
            of(r#"{"metadata": {"b": "2", "a": "1"}, "command": "x"}"#)
        );
    }
}

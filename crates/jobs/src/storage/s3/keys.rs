//! Keys as the bucket holds them, whoever put them there (tester findings H3-H5).
//!
//! Another tool may put any key in the bucket: `dir//a.txt` (a script joining paths with a
//! trailing `/`), `dir/./a`, `dir/../a`, a control character, a folder marker `dir/` (the S3
//! console's "Create folder", rclone, Cyberduck). `object_store` parses every key of a listing
//! as its `Path` and fails the whole page on the first it refuses, so one such key made every
//! listing above it, `/ready` and start-up fail. Every listing of this backend therefore goes
//! through [`S3Storage::list_keys`] (or [`S3Storage::list_directory`], one level), our own
//! `ListObjectsV2` (with `encoding-type=url`, so any key reads back exactly) sent by the one
//! signed-request sender (`raw.rs`), and each caller decides per key with [`S3Storage::entry`]:
//!
//! - a key the files API can name ([`Entry::File`]) is a file;
//! - a folder marker ([`Entry::Marker`]) is a directory, never a file: not listed, yet its
//!   directory exists (a `PUT` of its name is 409 as onto a disk's empty directory) and a
//!   recursive `DELETE` of that directory removes it;
//! - the server's own names ([`Entry::Reserved`]: `.ffmpeg-worker-upload-*`, the temporary
//!   area, the staging area) are never listed, as on a disk;
//! - any other key ([`Entry::Foreign`]) is skipped with a warning in the log (once per key,
//!   at most [`WARNINGS_PER_MINUTE`] a minute), never an error.
//!
//! A recursive `DELETE` removes every key below its directory, foreign ones included, by
//! their exact text ([`S3Storage::delete_keys`]): in the body of a `DeleteObjects` request,
//! never in a URL, where an HTTP client would resolve `a/../b` to `b` and delete another key.

use std::collections::HashSet;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use md5::Digest as _;
use percent_encoding::utf8_percent_encode;
use serde::Deserialize;

use super::raw::{QUERY_ENCODE, RawError, decoded, has_dot_name, xml_text};
use super::{NAME_MAX, S3Storage};
use crate::storage::{StorageError, UPLOAD_TEMP_PREFIX};

/// Keys per `ListObjectsV2` page (S3's maximum) and per `DeleteObjects` request (S3's limit).
pub(super) const KEYS_PER_REQUEST: usize = 1000;
/// Warnings about skipped keys logged per minute at most; the others are counted.
pub(super) const WARNINGS_PER_MINUTE: u32 = 20;

/// What one key of the bucket is to the files API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entry<'k> {
    /// Not below the storage's prefix (beside it, or the prefix's own folder marker).
    Outside,
    /// A file: its path (relative to the prefix, in normal form).
    File(&'k str),
    /// A folder marker (a key ending in `/`): the directory it names.
    Marker(&'k str),
    /// The server's own name: never listed.
    Reserved,
    /// A key the files API cannot name (its path relative to the prefix, and why).
    Foreign(&'k str, &'static str),
}

/// Why the names of `path` (`/`-separated) cannot be a file's path; `None`: they can.
pub(super) fn unnameable(path: &str) -> Option<&'static str> {
    for name in path.split('/') {
        match name {
            "" => return Some("an empty name (`//`, or a leading `/`)"),
            "." | ".." => return Some("a `.` or `..` name"),
            _ if name.chars().any(|c| c.is_ascii_control()) => return Some("a control character"),
            _ if name.len() > NAME_MAX => return Some("a name longer than 255 bytes"),
            _ => {}
        }
    }
    None
}

impl S3Storage {
    /// What the key `key` (its whole text) is to the files API.
    pub(super) fn entry<'k>(&self, key: &'k str) -> Entry<'k> {
        let Some(relative) = self.relative(key) else { return Entry::Outside };
        if relative.split('/').any(|name| name.starts_with(UPLOAD_TEMP_PREFIX)) || self.reserved(relative) {
            return Entry::Reserved;
        }
        let (path, marker) = match relative.strip_suffix('/') {
            Some("") => return Entry::Outside,
            Some(dir) => (dir, true),
            None if relative.is_empty() => return Entry::Outside,
            None => (relative, false),
        };
        if let Some(why) = unnameable(path) {
            return Entry::Foreign(relative, why);
        }
        if marker { Entry::Marker(path) } else { Entry::File(path) }
    }

    /// The text of the prefix of every key below the directory `normal` (`prefix/normal/`;
    /// for the root, `prefix/`, or nothing when the files fill the whole bucket).
    pub(super) fn dir_prefix(&self, normal: &str) -> String {
        let dir = self.key_text(normal);
        if dir.is_empty() { dir } else { format!("{dir}/") }
    }

    /// How errors name `path`: itself, or for the root (an empty path: a listing of every file,
    /// of the temporary area, of every open upload) the storage's URL, `s3://bucket/prefix`, so
    /// that no message names an empty path ("unavailable for ``").
    pub(super) fn shown<'s>(&'s self, path: &'s str) -> &'s str {
        if path.is_empty() { &self.url } else { path }
    }

    /// Lists the keys starting with `prefix` (whole key texts), after `start_after` (a whole
    /// key) if given, [`KEYS_PER_REQUEST`] a page; `shown` names what is listed in errors
    /// ([`S3Storage::shown`]).
    pub(super) fn list_keys<'s>(&'s self, prefix: String, start_after: Option<String>, shown: &'s str) -> KeyPages<'s> {
        let shown = self.shown(shown);
        KeyPages {
            storage: self,
            prefix,
            start_after,
            token: None,
            done: false,
            max_keys: KEYS_PER_REQUEST,
            by_directory: false,
            shown,
        }
    }

    /// Lists what is in the directory whose keys start with `prefix` (a whole key text ending
    /// in `/`, or empty for the bucket's root), as [`S3Storage::list_keys`] does, but one level
    /// only: the keys directly in it, and each subdirectory once (`delimiter=/`, S3's
    /// `CommonPrefixes`: the text of every key below it up to its `/`, whatever it holds).
    pub(super) fn list_directory<'s>(
        &'s self,
        prefix: String,
        start_after: Option<String>,
        shown: &'s str,
    ) -> KeyPages<'s> {
        KeyPages { by_directory: true, ..self.list_keys(prefix, start_after, shown) }
    }

    /// Whether any key starts with `prefix` (one `ListObjectsV2` of one key).
    pub(super) async fn any_key(&self, prefix: String, shown: &str) -> Result<bool, StorageError> {
        let mut pages = self.list_keys(prefix, None, shown);
        pages.max_keys = 1;
        Ok(pages.next_page().await?.is_some_and(|page| !page.is_empty()))
    }

    /// Deletes `keys` (whole key texts) by their exact text; a key already gone is no error.
    /// `DeleteObjects` requests of [`KEYS_PER_REQUEST`] keys, the keys in the XML body; a key
    /// with a control character XML cannot carry is deleted with its own `DELETE`, its name
    /// percent-encoded in the URL, unless a `.` or `..` name in it would be resolved there:
    /// such a key is left, named in the error.
    ///
    /// # Errors
    /// What the bucket answered (the first key it did not delete, and why).
    pub(super) async fn delete_keys(&self, keys: &[String], shown: &str) -> Result<(), StorageError> {
        let (in_xml, alone): (Vec<&String>, Vec<&String>) = keys.iter().partition(|key| xml_can_carry(key));
        for batch in in_xml.chunks(KEYS_PER_REQUEST) {
            self.delete_batch(batch, shown).await?;
        }
        for key in alone {
            if has_dot_name(key) {
                let problem = format!(
                    "the key `{}` holds a control character and a `.` or `..` name: no request can name \
                     it safely; remove it with another tool",
                    key.escape_debug()
                );
                return Err(StorageError::Io { path: shown.to_owned(), source: io::Error::other(problem) });
            }
            match self.raw.send("DELETE", Some(key), "", &[], Bytes::new(), shown).await {
                Ok(_) | Err(RawError::NotFound) => {}
                Err(e) => return Err(e.into_storage(shown)),
            }
        }
        Ok(())
    }

    /// `DeleteObjects` of `keys` (at most [`KEYS_PER_REQUEST`], each one XML can carry).
    async fn delete_batch(&self, keys: &[&String], shown: &str) -> Result<(), StorageError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut xml = String::from(r#"<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>"#);
        for key in keys {
            xml.push_str(&format!("<Object><Key>{}</Key></Object>", xml_text(key)));
        }
        xml.push_str("</Delete>");
        // S3 requires a checksum of the body (MinIO insists on Content-MD5).
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(xml.as_bytes()));
        let headers = [("content-md5", md5), ("content-type", "application/xml".to_owned())];
        let body = self
            .raw
            .send("POST", None, "delete=", &headers, Bytes::from(xml), shown)
            .await
            .map_err(|e| e.into_storage(shown))?;
        let answer: DeleteAnswer = quick_xml::de::from_str(&String::from_utf8_lossy(&body)).unwrap_or_default();
        match answer.error.into_iter().find(|e| e.code != "NoSuchKey") {
            None => Ok(()),
            Some(e) => {
                let problem =
                    format!("the bucket did not delete `{}`: {}: {}", e.key.escape_debug(), e.code, e.message);
                let source = io::Error::other(problem);
                Err(match e.code.as_str() {
                    "AccessDenied" => StorageError::Denied { path: shown.to_owned(), source },
                    "InternalError" | "SlowDown" | "ServiceUnavailable" => {
                        StorageError::Unavailable { path: shown.to_owned(), source }
                    }
                    _ => StorageError::Io { path: shown.to_owned(), source },
                })
            }
        }
    }
}

/// Whether `text` reaches the bucket unchanged in an XML body: no control character (XML 1.0
/// cannot carry most of them even as a character reference, and a parser turns a carriage
/// return into a line feed).
fn xml_can_carry(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// One key of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listed {
    /// The whole key, exactly as the bucket holds it.
    pub(super) key: String,
    /// Size in bytes.
    pub(super) size: u64,
    /// Last modification.
    pub(super) modified: SystemTime,
    /// The entity tag as the bucket sent it.
    pub(super) e_tag: Option<String>,
}

/// One page of a listing ([`KeyPages::next_listing`]).
#[derive(Debug, Default)]
pub(super) struct Page {
    /// The keys, in the bucket's (byte) order.
    pub(super) keys: Vec<Listed>,
    /// Of a listing by directory ([`S3Storage::list_directory`]): the subdirectories, each as
    /// the text every key below it starts with (`prefix/dir/`), in byte order.
    pub(super) dirs: Vec<String>,
}

/// The pages of a listing ([`S3Storage::list_keys`], [`S3Storage::list_directory`]).
pub(super) struct KeyPages<'s> {
    storage: &'s S3Storage,
    prefix: String,
    start_after: Option<String>,
    token: Option<String>,
    done: bool,
    max_keys: usize,
    /// `delimiter=/`: one level.
    by_directory: bool,
    shown: &'s str,
}

impl KeyPages<'_> {
    /// The next page of keys, in the bucket's (byte) order; `None` after the last one.
    ///
    /// # Errors
    /// What the bucket answered ([`StorageError::Unavailable`] for a bucket that does not
    /// answer, [`StorageError::NoBucket`] for one that does not exist, ...).
    pub(super) async fn next_page(&mut self) -> Result<Option<Vec<Listed>>, StorageError> {
        Ok(self.next_listing().await?.map(|page| page.keys))
    }

    /// The next page, keys and (of a listing by directory) subdirectories; `None` after the
    /// last one. A key (or subdirectory) that is not UTF-8 once decoded is left out, with a
    /// warning.
    ///
    /// # Errors
    /// As [`KeyPages::next_page`].
    pub(super) async fn next_listing(&mut self) -> Result<Option<Page>, StorageError> {
        if self.done {
            return Ok(None);
        }
        let mut query = format!("list-type=2&encoding-type=url&max-keys={}", self.max_keys);
        let mut push = |name: &str, value: &str| {
            query.push_str(&format!("&{name}={}", utf8_percent_encode(value, QUERY_ENCODE)));
        };
        if self.by_directory {
            push("delimiter", "/");
        }
        if !self.prefix.is_empty() {
            push("prefix", &self.prefix);
        }
        match (&self.token, &self.start_after) {
            (Some(token), _) => push("continuation-token", token),
            (None, Some(after)) => push("start-after", after),
            (None, None) => {}
        }
        let raw = &self.storage.raw;
        let body = raw
            .send("GET", None, &query, &[], Bytes::new(), self.shown)
            .await
            .map_err(|e| e.into_storage(self.shown))?;
        let answer: ListAnswer = quick_xml::de::from_str(&String::from_utf8_lossy(&body)).map_err(|e| {
            let problem = format!("the bucket's answer to ListObjectsV2 is not one: {e}");
            StorageError::Io { path: self.shown.to_owned(), source: io::Error::other(problem) }
        })?;
        let encoded = answer.encoding_type.as_deref() == Some("url");
        let mut keys = Vec::with_capacity(answer.contents.len());
        for content in answer.contents {
            let Some(key) = decoded(content.key.clone(), encoded) else {
                warn_skipped(&content.key, "a name that is not UTF-8");
                continue;
            };
            let modified =
                time::OffsetDateTime::parse(&content.last_modified, &time::format_description::well_known::Rfc3339)
                    .map_or(SystemTime::UNIX_EPOCH, SystemTime::from);
            keys.push(Listed { key, size: content.size, modified, e_tag: content.e_tag });
        }
        let mut dirs = Vec::with_capacity(answer.common_prefixes.len());
        for common in answer.common_prefixes {
            match decoded(common.prefix.clone(), encoded) {
                Some(dir) => dirs.push(dir),
                None => warn_skipped(&common.prefix, "a name that is not UTF-8"),
            }
        }
        match answer.next_continuation_token.filter(|token| answer.is_truncated && !token.is_empty()) {
            Some(token) => self.token = Some(token),
            None => self.done = true,
        }
        Ok(Some(Page { keys, dirs }))
    }
}

/// `ListBucketResult` of `ListObjectsV2`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListAnswer {
    #[serde(default)]
    contents: Vec<ListContent>,
    #[serde(default)]
    common_prefixes: Vec<CommonPrefix>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_continuation_token: Option<String>,
    #[serde(default)]
    encoding_type: Option<String>,
}

/// One `Contents` of a `ListBucketResult`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListContent {
    key: String,
    size: u64,
    last_modified: String,
    #[serde(rename = "ETag", default)]
    e_tag: Option<String>,
}

/// One `CommonPrefixes` of a `ListBucketResult` listed with a delimiter.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CommonPrefix {
    prefix: String,
}

/// `DeleteResult` of `DeleteObjects`: the keys it could not delete.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DeleteAnswer {
    #[serde(default)]
    error: Vec<DeleteError>,
}

/// One `Error` of a `DeleteResult`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteError {
    #[serde(default)]
    key: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Keys already warned about, and the warnings of the current minute.
struct Skipped {
    warned: HashSet<String>,
    minute: Instant,
    in_minute: u32,
    unlogged: u64,
}

/// Distinct skipped keys remembered (past it the memory starts again).
const REMEMBERED: usize = 10_000;

/// Logs that the key `key` was skipped because of `why`: once per key, at most
/// [`WARNINGS_PER_MINUTE`] a minute (the next warning counts the ones left out).
pub(super) fn warn_skipped(key: &str, why: &str) {
    static SKIPPED: Mutex<Option<Skipped>> = Mutex::new(None);
    let mut guard = SKIPPED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let skipped = guard.get_or_insert_with(|| Skipped {
        warned: HashSet::new(),
        minute: Instant::now(),
        in_minute: 0,
        unlogged: 0,
    });
    if skipped.warned.contains(key) {
        return;
    }
    if skipped.warned.len() >= REMEMBERED {
        skipped.warned.clear();
    }
    skipped.warned.insert(key.to_owned());
    if skipped.minute.elapsed() >= Duration::from_secs(60) {
        skipped.minute = Instant::now();
        skipped.in_minute = 0;
    }
    if skipped.in_minute >= WARNINGS_PER_MINUTE {
        skipped.unlogged += 1;
        return;
    }
    skipped.in_minute += 1;
    let unlogged = std::mem::take(&mut skipped.unlogged);
    drop(guard);
    tracing::warn!(
        key = %key.escape_debug(),
        unlogged_before = unlogged,
        "a key in the bucket has {why}: no file path names it, so listings leave it out \
         (another tool put it there; a recursive DELETE of a directory above it removes it)"
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{Entry, unnameable, xml_can_carry};
    use crate::storage::{S3Config, S3Storage};

    #[test]
    fn every_key_is_a_file_a_marker_reserved_foreign_or_outside() {
        let storage = S3Storage::new(&S3Config::from_url("s3://bucket/media/files").unwrap()).unwrap();
        for (key, entry) in [
            ("media/files/in/a.mp4", Entry::File("in/a.mp4")),
            ("media/files/a b#?%41.mp4", Entry::File("a b#?%41.mp4")),
            ("media/files/dir/", Entry::Marker("dir")),
            ("media/files/dir/sub/", Entry::Marker("dir/sub")),
            ("media/files/", Entry::Outside),
            ("media/files", Entry::Outside),
            ("media/files2/a.mp4", Entry::Outside),
            ("other/a.mp4", Entry::Outside),
            ("media/files/f/.ffmpeg-worker-upload-x", Entry::Reserved),
            ("media/files/.ffmpeg-worker-upload-temp/publish/j/a.mp4", Entry::Reserved),
            ("media/files/.ffmpeg-worker-upload-temp/publish//a.mp4", Entry::Reserved),
            ("media/files/.ffmpeg-worker-staging/j/a.mp4", Entry::Reserved),
            ("media/files/weird//dbl.txt", Entry::Foreign("weird//dbl.txt", "an empty name (`//`, or a leading `/`)")),
            ("media/files//lead.txt", Entry::Foreign("/lead.txt", "an empty name (`//`, or a leading `/`)")),
            ("media/files/a/../b", Entry::Foreign("a/../b", "a `.` or `..` name")),
            ("media/files/a//", Entry::Foreign("a//", "an empty name (`//`, or a leading `/`)")),
            ("media/files/f/c\u{1}.txt", Entry::Foreign("f/c\u{1}.txt", "a control character")),
        ] {
            assert_eq!(storage.entry(key), entry, "{key:?}");
        }
    }

    #[test]
    fn names_a_path_cannot_hold_are_told() {
        for path in ["a//b", "/a", "a/./b", "a/../b", "..", "a/b\u{1}c", "a/\u{7f}"] {
            assert!(unnameable(path).is_some(), "{path:?}");
        }
        let long = "n".repeat(256);
        assert!(unnameable(&format!("a/{long}")).is_some());
        for path in ["a/b", "a/.b", "a/..b", "a b/c#?*~%41", "a/b\\c", "é/ü"] {
            assert_eq!(unnameable(path), None, "{path:?}");
        }
    }

    #[test]
    fn xml_carries_every_key_but_control_characters() {
        assert!(xml_can_carry("a/../b&<c>//é"));
        for key in ["a\u{1}b", "a\rb", "a\nb", "a\u{7f}", "a\u{85}"] {
            assert!(!xml_can_carry(key), "{key:?}");
        }
    }
}

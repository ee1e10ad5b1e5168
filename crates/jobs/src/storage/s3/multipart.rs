//! Multipart uploads left open in the bucket
//! ([`Storage::open_uploads`](crate::storage::Storage::open_uploads),
//! [`Storage::abort_upload`](crate::storage::Storage::abort_upload)): `ListMultipartUploads`
//! and `AbortMultipartUpload`, which `object_store` does not offer, through the signed-request
//! sender (`raw.rs`). A job stopped mid-upload, or a crash, leaves its upload open: invisible,
//! and billed until aborted (tester finding G11).
//!
//! Uploads are listed and aborted by their key's exact text, so an upload another tool left
//! under a key that no path names (`a//b`, a control character) is aborted as any other (an
//! `object_store` path would have named another key). One whose key has a `.` or `..` name,
//! which no request can name safely, is left out with a warning.

use std::time::SystemTime;

use super::S3Storage;
use super::keys::warn_skipped;
use super::raw::has_dot_name;
use crate::storage::{OpenUpload, StorageError};

impl S3Storage {
    /// [`Storage::open_uploads`](crate::storage::Storage::open_uploads): every page of
    /// `ListMultipartUploads` under the key prefix of `prefix`.
    pub(super) async fn list_open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StorageError> {
        let key_prefix = self.key_text(prefix);
        // `key_text` of `a` is `prefix/a`; of the root, `prefix` alone, which would match
        // `prefix2/...` too.
        let key_prefix = match prefix.is_empty() && !key_prefix.is_empty() {
            true => format!("{key_prefix}/"),
            false => key_prefix,
        };
        let mut found = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let page = self
                .raw
                .list_uploads(&key_prefix, markers.as_ref(), self.shown(prefix))
                .await
                .map_err(|e| e.into_storage(self.shown(prefix)))?;
            for upload in page.uploads {
                let Some(path) = self.relative(&upload.key) else { continue };
                if has_dot_name(&upload.key) {
                    // No request names it safely: its upload is left to a lifecycle rule.
                    warn_skipped(&upload.key, "a `.` or `..` name (its open multipart upload is left)");
                    continue;
                }
                found.push(OpenUpload {
                    path: path.to_owned(),
                    id: upload.id,
                    initiated: upload.initiated.unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
            match page.next {
                Some(next) => markers = Some(next),
                None => return Ok(found),
            }
        }
    }

    /// [`Storage::abort_upload`](crate::storage::Storage::abort_upload): by the key's exact
    /// text (`upload.path` below the prefix, as listed).
    pub(super) async fn abort_open_upload(&self, upload: &OpenUpload) -> Result<(), StorageError> {
        let key = self.key_text(&upload.path);
        self.raw.abort(&key, &upload.id, &upload.path).await.map_err(|e| e.into_storage(&upload.path))
    }
}

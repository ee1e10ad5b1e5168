//! The bucket's temporary area ([`TEMP_AREA`]): names no files API request, listing or job
//! sees, where runs' outputs wait to be published, backups wait to be put back or deleted, and
//! create-only uploads of many parts are completed before their copy into place.

use std::io;

use object_store::path::Path as Key;
use object_store::{ObjectStoreExt as _, PutPayload};

use super::keys::warn_skipped;
use super::read::meta_of;
use super::write::Pending;
use super::{NAME_MAX, S3Storage};
use crate::storage::{ByteStream, FileMeta, StorageError, TEMP_AREA};

/// Directory of the temporary area ([`TEMP_AREA`]) holding create-only uploads of many parts
/// until they are copied into place.
pub(super) const UPLOADS_TEMP: &str = "uploads";

/// 8 random bytes in hex: a temporary name nobody else uses.
pub(super) fn random_name() -> Result<String, StorageError> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random)
        .map_err(|e| StorageError::Io { path: TEMP_AREA.to_owned(), source: io::Error::other(e.to_string()) })?;
    Ok(hex::encode(random))
}

impl S3Storage {
    /// The key of `temp`, a name in the temporary area ([`TEMP_AREA`]).
    pub(super) fn temp_key(&self, temp: &str) -> Key {
        self.key(&format!("{TEMP_AREA}/{temp}"))
    }

    /// Refuses a temporary name that is not a relative `/`-separated path of plain names.
    pub(super) fn check_temp(temp: &str) -> Result<(), StorageError> {
        let bad = temp.is_empty()
            || temp.split('/').any(|name| name.is_empty() || name == "." || name == ".." || name.len() > NAME_MAX)
            || temp.chars().any(|c| c.is_control());
        if bad {
            return Err(StorageError::InvalidPath {
                path: temp.to_owned(),
                problem: "not a temporary name".to_owned(),
                rule: "temp-name",
            });
        }
        Ok(())
    }

    /// [`Storage::put_temp`](crate::storage::Storage::put_temp).
    pub(super) async fn temp_put(&self, temp: &str, body: ByteStream) -> Result<u64, StorageError> {
        S3Storage::check_temp(temp)?;
        let key = self.temp_key(temp);
        let received = self.receive(&key, temp, body, u64::MAX).await?;
        match received.pending {
            Pending::Single(body) => {
                self.store.put(&key, PutPayload::from(body)).await.map_err(|e| self.store_error(temp, e))?;
            }
            Pending::Multipart(upload) => {
                upload.finish().await.map_err(|e| self.store_error(temp, e))?;
            }
        }
        Ok(received.size)
    }

    /// [`Storage::publish_temp`](crate::storage::Storage::publish_temp).
    pub(super) async fn temp_publish(&self, temp: &str, path: &str, create_only: bool) -> Result<(), StorageError> {
        S3Storage::check_temp(temp)?;
        let normal = self.normal_async(path, false).await?;
        let temp_key = self.temp_key(temp);
        self.copy_key(&temp_key, &self.key(&normal), &normal, create_only).await?;
        self.delete_key(&temp_key, temp).await
    }

    /// [`Storage::copy_to_temp`](crate::storage::Storage::copy_to_temp).
    pub(super) async fn temp_copy_from(&self, path: &str, temp: &str) -> Result<(), StorageError> {
        S3Storage::check_temp(temp)?;
        let normal = self.normal_async(path, false).await?;
        self.copy_key(&self.key(&normal), &self.temp_key(temp), &normal, false).await
    }

    /// [`Storage::list_temps`](crate::storage::Storage::list_temps).
    pub(super) async fn temp_list(&self, prefix: &str) -> Result<Vec<FileMeta>, StorageError> {
        let area = self.dir_prefix(TEMP_AREA);
        // Listing under the prefix's directory, then by plain string prefix.
        let dir = match prefix.rsplit_once('/') {
            Some((dir, _)) if !dir.is_empty() => {
                S3Storage::check_temp(dir)?;
                format!("{area}{dir}/")
            }
            _ => area.clone(),
        };
        let mut pages = self.list_keys(dir, None, prefix);
        let mut found = Vec::new();
        while let Some(page) = pages.next_page().await? {
            for listed in page {
                let Some(name) = listed.key.strip_prefix(area.as_str()) else { continue };
                if !name.starts_with(prefix) {
                    continue;
                }
                // A key of another tool in the area: not a name of ours, skipped.
                if S3Storage::check_temp(name).is_err() {
                    warn_skipped(&listed.key, "a name that is not a temporary name");
                    continue;
                }
                found.push(meta_of(name.to_owned(), listed.size, listed.modified, listed.e_tag.as_deref()));
            }
        }
        Ok(found)
    }

    /// [`Storage::delete_temp`](crate::storage::Storage::delete_temp).
    pub(super) async fn temp_delete(&self, temp: &str) -> Result<(), StorageError> {
        S3Storage::check_temp(temp)?;
        self.delete_key(&self.temp_key(temp), temp).await
    }
}

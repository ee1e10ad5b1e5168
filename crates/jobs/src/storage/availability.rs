//! Whether the storage answers, as `GET /ready` reports it ([`Availability`]): one cheap
//! request ([`Storage::ping`]) at most every [`READY_CACHE`], bounded by [`READY_TIMEOUT`], so
//! that probes neither load the bucket nor wait long for a dead one.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Storage, StorageError};

/// How long a check's result stands before the next probe checks again.
pub const READY_CACHE: Duration = Duration::from_secs(5);
/// Longest a check waits for the storage's answer; no answer by then counts as unavailable.
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// The storage did not answer its last check.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the file storage is unavailable: {0}")]
pub struct StorageUnavailable(#[source] pub Arc<StorageError>);

/// The storage's availability, checked at most every [`READY_CACHE`]. Cheap to share.
#[derive(Debug)]
pub struct Availability {
    storage: Arc<dyn Storage>,
    /// When the storage was last checked, and what that found.
    last: tokio::sync::Mutex<Option<(Instant, Result<(), StorageUnavailable>)>>,
}

impl Availability {
    /// Availability of `storage`, not checked yet.
    pub fn new(storage: Arc<dyn Storage>) -> Availability {
        Availability { storage, last: tokio::sync::Mutex::new(None) }
    }

    /// The result of the last check if it is at most [`READY_CACHE`] old, else of a new one
    /// (callers meanwhile wait for it rather than send their own).
    ///
    /// # Errors
    /// [`StorageUnavailable`] with what the storage said, or that it did not answer within
    /// [`READY_TIMEOUT`].
    pub async fn check(&self) -> Result<(), StorageUnavailable> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < READY_CACHE
        {
            return result.clone();
        }
        let result = match tokio::time::timeout(READY_TIMEOUT, self.storage.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StorageUnavailable(Arc::new(e))),
            Err(_) => Err(StorageUnavailable(Arc::new(StorageError::Unavailable {
                path: String::new(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {} s", READY_TIMEOUT.as_secs()),
                ),
            }))),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

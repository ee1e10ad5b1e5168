//! [`Guarded`]: a storage whose calls fail at once while it is known unreachable
//! ([`Availability`]), for the files API and `GET /probe` (tester finding G6: each call used to
//! wait the request timeout for a bucket `/ready` already knew was down). Every call's outcome
//! tells the [`Availability`] whether the storage answers.

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    Availability, ByteStream, FileMeta, ListPage, NameLimits, OpenUpload, Preconditions, PutOptions, StagedPut,
    Storage, StorageError, StoredFile,
};

/// `inner` behind its [`Availability`] (see the [module docs](self)). Every method of
/// [`Storage`] is forwarded, the ones that make no request (`check_path`, `name_limits`,
/// `display_name`, `has_temp_area`) and the check itself (`ping`) unguarded.
#[derive(Debug)]
pub struct Guarded {
    inner: Arc<dyn Storage>,
    availability: Arc<Availability>,
}

impl Guarded {
    /// `inner`, guarded by `availability` (which checks `inner`).
    pub fn new(inner: Arc<dyn Storage>, availability: Arc<Availability>) -> Guarded {
        Guarded { inner, availability }
    }

    /// The call `call` about `path`, unless the storage is known unreachable; its outcome
    /// recorded.
    async fn guard<T>(
        &self,
        path: &str,
        call: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        self.availability.gate(path)?;
        let result = call.await;
        self.availability.observe(&result);
        result
    }
}

#[async_trait]
impl Storage for Guarded {
    fn name_limits(&self) -> NameLimits {
        self.inner.name_limits()
    }

    fn display_name(&self) -> String {
        self.inner.display_name()
    }

    async fn check_path(&self, path: &str) -> Result<String, StorageError> {
        self.inner.check_path(path).await
    }

    async fn put(&self, path: &str, body: ByteStream, options: PutOptions) -> Result<Box<dyn StagedPut>, StorageError> {
        self.guard(path, self.inner.put(path, body, options)).await
    }

    async fn open(&self, path: &str) -> Result<Box<dyn StoredFile>, StorageError> {
        self.guard(path, self.inner.open(path)).await
    }

    async fn head(&self, path: &str) -> Result<FileMeta, StorageError> {
        self.guard(path, self.inner.head(path)).await
    }

    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, StorageError> {
        self.guard(prefix, self.inner.list(prefix, after, limit)).await
    }

    async fn is_directory(&self, path: &str) -> Result<bool, StorageError> {
        self.guard(path, self.inner.is_directory(path)).await
    }

    async fn delete(&self, path: &str, recursive: bool) -> Result<(), StorageError> {
        self.guard(path, self.inner.delete(path, recursive)).await
    }

    async fn check_writable_paths(&self, files: &[String], dirs: &[String]) -> Result<(), StorageError> {
        let path = files.first().or(dirs.first()).map_or("", String::as_str);
        self.guard(path, self.inner.check_writable_paths(files, dirs)).await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.inner.ping().await
    }

    async fn delete_if(&self, path: &str, recursive: bool, preconditions: &Preconditions) -> Result<(), StorageError> {
        self.guard(path, self.inner.delete_if(path, recursive, preconditions)).await
    }

    fn has_temp_area(&self) -> bool {
        self.inner.has_temp_area()
    }

    async fn put_temp(&self, temp: &str, body: ByteStream) -> Result<u64, StorageError> {
        self.guard(temp, self.inner.put_temp(temp, body)).await
    }

    async fn publish_temp(&self, temp: &str, path: &str, create_only: bool) -> Result<(), StorageError> {
        self.guard(path, self.inner.publish_temp(temp, path, create_only)).await
    }

    async fn copy_to_temp(&self, path: &str, temp: &str) -> Result<(), StorageError> {
        self.guard(path, self.inner.copy_to_temp(path, temp)).await
    }

    async fn list_temps(&self, prefix: &str) -> Result<Vec<FileMeta>, StorageError> {
        self.guard(prefix, self.inner.list_temps(prefix)).await
    }

    async fn delete_temp(&self, temp: &str) -> Result<(), StorageError> {
        self.guard(temp, self.inner.delete_temp(temp)).await
    }

    async fn open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StorageError> {
        self.guard(prefix, self.inner.open_uploads(prefix)).await
    }

    async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StorageError> {
        self.guard(&upload.path, self.inner.abort_upload(upload)).await
    }
}

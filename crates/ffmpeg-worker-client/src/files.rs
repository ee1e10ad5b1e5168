//! The files API: upload (`PUT /files/{path}`), download (`GET`), list (`GET /files`) and
//! delete. Transfers stream: a file is never held whole in memory, on either side.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ffmpeg_worker_api::{FileEntry, FileResponse};
use futures_util::StreamExt as _;
use reqwest::Method;
use reqwest::header::{self, HeaderValue};
use tokio::io::AsyncWriteExt as _;
use url::Url;

use crate::client::decode;
use crate::list::next_link;
use crate::{Client, ClientError};

/// Longest a whole upload or download may take (the client's usual answer timeout would cut
/// large transfers short).
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// One page of [`Client::list_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesPage {
    /// Files in path order.
    pub files: Vec<FileEntry>,
    /// The next page's URL, when more files follow.
    pub next: Option<Url>,
}

fn local(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Local { path: path.to_path_buf(), source }
}

impl Client {
    /// `/files/` + the remote path as one percent-encoded segment (`/` as `%2F`, which the
    /// server decodes back): a name may hold `#`, `?` or `%`, and `..` reaches the server,
    /// which refuses it, instead of being resolved away inside the URL (`rm ../x` must not
    /// delete `x`).
    fn file_url(&self, remote: &str) -> Url {
        let segment = if remote == "." || remote == ".." { format!("./{remote}") } else { remote.to_owned() };
        self.endpoint(&["files", &segment])
    }

    /// Uploads the local file `path` to `remote` (`PUT /files/{remote}`), streaming it;
    /// `on_progress` gets the bytes sent so far. `create_only`: refuse to replace a file
    /// (`If-None-Match: *`, 412 when one exists).
    ///
    /// # Errors
    /// [`ClientError::Local`] when the file cannot be read (a directory, or a read that fails
    /// while it is sent); [`ClientError::Problem`] for the server's refusals (422 bad path, 409
    /// in use or a directory, 412, 413, 507).
    pub async fn upload(
        &self,
        path: &Path,
        remote: &str,
        create_only: bool,
        mut on_progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<FileResponse, ClientError> {
        let file = tokio::fs::File::open(path).await.map_err(local(path))?;
        let metadata = file.metadata().await.map_err(local(path))?;
        // Opening a directory succeeds; reading it fails once the request is under way.
        if metadata.is_dir() {
            return Err(local(path)(std::io::Error::from(std::io::ErrorKind::IsADirectory)));
        }
        let size = metadata.len();
        let mut sent = 0u64;
        // A read that fails while the body is sent ends the request, which then reads as the
        // server's failure: the read's own error is kept to be reported instead.
        let read_failed: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
        let failed = Arc::clone(&read_failed);
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |chunk| match chunk {
            Ok(chunk) => {
                sent += chunk.len() as u64;
                on_progress(sent);
                Ok(chunk)
            }
            Err(e) => {
                let told = std::io::Error::new(e.kind(), e.to_string());
                *failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                Err(told)
            }
        });
        let url = self.file_url(remote);
        let mut request = self
            .request(Method::PUT, &url)
            .timeout(TRANSFER_TIMEOUT)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(stream));
        if create_only {
            request = request.header(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        }
        let response = self.execute(&url, request).await;
        if let Some(source) = read_failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            return Err(ClientError::Local { path: path.to_path_buf(), source });
        }
        decode(url, response?).await
    }

    /// Downloads `remote` (`GET /files/{remote}`) into the local file `path`, streaming it:
    /// written to `PATH.part` and renamed at the end, so `path` is never a partial file.
    /// `on_start` gets the size (when the server said it), `on_progress` the bytes received.
    /// Returns the bytes written.
    ///
    /// # Errors
    /// [`ClientError::Problem`] (404 no such file, 409 a directory, 422 a bad path);
    /// [`ClientError::Local`] when `path` cannot be written (the `.part` file is removed);
    /// [`ClientError::Unreachable`] when the transfer breaks off.
    pub async fn download(
        &self,
        remote: &str,
        path: &Path,
        on_start: impl FnOnce(Option<u64>),
        mut on_progress: impl FnMut(u64),
    ) -> Result<u64, ClientError> {
        let url = self.file_url(remote);
        let request = self.request(Method::GET, &url).timeout(TRANSFER_TIMEOUT);
        let response = self.execute(&url, request).await?;
        on_start(response.content_length());
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let result = async {
            let mut file = tokio::fs::File::create(&part).await.map_err(local(&part))?;
            let mut received = 0u64;
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|source| ClientError::Unreachable { url: url.clone(), source })?;
                file.write_all(&chunk).await.map_err(local(&part))?;
                received += chunk.len() as u64;
                on_progress(received);
            }
            file.flush().await.map_err(local(&part))?;
            file.sync_all().await.map_err(local(&part))?;
            tokio::fs::rename(&part, path).await.map_err(local(path))?;
            Ok(received)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        result
    }

    /// The first page of files whose path starts with `prefix` (`GET /files`), `limit` per page
    /// (the server's default when `None`).
    ///
    /// # Errors
    /// [`ClientError::Problem`]: 422 for a limit outside 1..=1000 or a bad prefix.
    pub async fn list_files(&self, prefix: &str, limit: Option<u32>) -> Result<FilesPage, ClientError> {
        let mut url = self.endpoint(&["files"]);
        {
            let mut pairs = url.query_pairs_mut();
            if !prefix.is_empty() {
                pairs.append_pair("prefix", prefix);
            }
            if let Some(limit) = limit {
                pairs.append_pair("limit", &limit.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.files_page(url).await
    }

    /// The page at `next` (from a [`FilesPage`]).
    ///
    /// # Errors
    /// As [`Client::list_files`].
    pub async fn next_files_page(&self, next: &Url) -> Result<FilesPage, ClientError> {
        self.files_page(next.clone()).await
    }

    /// Every file whose path starts with `prefix`, following the pages.
    ///
    /// # Errors
    /// As [`Client::list_files`].
    pub async fn list_all_files(&self, prefix: &str) -> Result<Vec<FileEntry>, ClientError> {
        let mut page = self.list_files(prefix, Some(1000)).await?;
        let mut files = std::mem::take(&mut page.files);
        let mut seen = Vec::new();
        while let Some(next) = page.next.take().filter(|n| !seen.contains(n)) {
            seen.push(next.clone());
            page = self.next_files_page(&next).await?;
            files.append(&mut page.files);
        }
        Ok(files)
    }

    async fn files_page(&self, url: Url) -> Result<FilesPage, ClientError> {
        let response = self.send(Method::GET, &url, None).await?;
        let next = next_link(response.headers()).and_then(|target| response.url().join(&target).ok());
        let files = decode(url, response).await?;
        Ok(FilesPage { files, next })
    }

    /// Deletes `remote` (`DELETE /files/{remote}`); `recursive` for a directory.
    ///
    /// # Errors
    /// [`ClientError::Problem`]: 404, 409 (a directory without `recursive`, or in use by a
    /// queued or running job), 422.
    pub async fn delete_file(&self, remote: &str, recursive: bool) -> Result<(), ClientError> {
        let mut url = self.file_url(remote);
        if recursive {
            url.query_pairs_mut().append_pair("recursive", "true");
        }
        self.send(Method::DELETE, &url, None).await?;
        Ok(())
    }
}

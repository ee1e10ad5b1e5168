//! The bucket client's timeouts against a bucket that answers slowly or not at all: a small
//! HTTP server on 127.0.0.1 speaking just enough S3 (`HEAD` and ranged `GET` of one object),
//! sending its answer's body in chunks with pauses.

use std::time::Duration;

use futures_util::StreamExt as _;
use jobs::storage::{S3Config, S3Storage, S3Timeouts, Storage, StorageError};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Bytes per chunk of the slow bucket's bodies.
const CHUNK: usize = 1024;

/// A bucket whose one object has `chunks` chunks of [`CHUNK`] bytes; a `GET` sends them
/// `pause` apart, and stops sending (keeping the connection open) after `stall_after` of them.
/// Returns its endpoint; it serves until the test ends.
async fn slow_bucket(chunks: usize, pause: Duration, stall_after: Option<usize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let size = chunks * CHUNK;
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let common = format!(
                    "Content-Length: {size}\r\nETag: \"v1\"\r\nLast-Modified: Mon, 30 Nov 2026 00:00:00 GMT\r\n\
                     Connection: close\r\n"
                );
                if head.starts_with(b"HEAD ") {
                    let _ = socket.write_all(format!("HTTP/1.1 200 OK\r\n{common}\r\n").as_bytes()).await;
                    return;
                }
                let answer = format!(
                    "HTTP/1.1 206 Partial Content\r\n{common}Content-Range: bytes 0-{}/{size}\r\n\r\n",
                    size - 1
                );
                if socket.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                for n in 0..chunks {
                    if stall_after == Some(n) {
                        // Silent, the connection open: a stalled answer.
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(pause).await;
                    if socket.write_all(&[7u8; CHUNK]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    endpoint
}

/// A client of the bucket at `endpoint` with request timeout `request`.
fn client(endpoint: String, request: Duration) -> S3Storage {
    let config = S3Config {
        endpoint: Some(endpoint),
        access_key_id: Some("key".to_owned()),
        secret_access_key: Some("secret".to_owned()),
        allow_http: true,
        timeouts: S3Timeouts { request, ..S3Timeouts::default() },
        ..S3Config::from_url("s3://slow").unwrap()
    };
    S3Storage::new(&config).unwrap()
}

/// Reads the whole object `a.bin`.
async fn read_all(storage: &S3Storage) -> Result<Vec<u8>, std::io::Error> {
    let file = storage.open("a.bin").await.map_err(std::io::Error::other)?;
    let size = file.meta().size;
    let mut stream = file.read(0..size);
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    Ok(bytes)
}

/// The request timeout bounds the wait for an answer and each pause in it, not the whole
/// transfer: a download that keeps coming may take longer (a large file to a slow client), one
/// that stops fails within about the timeout instead of hanging.
#[tokio::test]
async fn a_download_that_keeps_coming_outlasts_the_request_timeout_and_one_that_stalls_fails() {
    // 2 s to answer or to send more; 10 chunks 300 ms apart: 3 s of body.
    let request = Duration::from_secs(2);
    let flowing = client(slow_bucket(10, Duration::from_millis(300), None).await, request);
    let bytes = read_all(&flowing).await.expect("a body that keeps coming is read whole");
    assert_eq!(bytes.len(), 10 * CHUNK);

    let stalled = client(slow_bucket(10, Duration::from_millis(100), Some(3)).await, request);
    let read = tokio::time::timeout(Duration::from_secs(60), read_all(&stalled)).await.expect("no hang");
    let error = read.expect_err("a stalled body is an error").to_string();
    assert!(error.contains("sent nothing more"), "{error}");
}

/// A bucket that accepts connections but never answers (a stopped process): requests fail as
/// unavailable (503 at the API, a retry for a job) after about the request timeout.
#[tokio::test]
async fn a_bucket_that_never_answers_is_unavailable_after_the_request_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let storage = client(format!("http://{}", silent.local_addr().unwrap()), Duration::from_secs(1));
    let calls = async {
        let head = storage.head("a.bin").await;
        assert!(matches!(head, Err(StorageError::Unavailable { .. })), "{head:?}");
        let ping = storage.ping().await;
        assert!(matches!(ping, Err(StorageError::Unavailable { .. })), "{ping:?}");
    };
    // The old client waited 30 s for each.
    tokio::time::timeout(Duration::from_secs(25), calls).await.expect("failed within seconds");
}

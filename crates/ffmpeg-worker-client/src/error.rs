//! [`ClientError`]: why a request did not give the expected answer.

use std::time::Duration;

use ffmpeg_worker_api::Problem;
use url::Url;

/// Why a request to the server did not give the expected answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The base URL is not an `http://` or `https://` URL that paths can be appended to.
    #[error("`{url}` is not an http:// or https:// server URL")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it does not parse, when it does not.
        #[source]
        source: Option<url::ParseError>,
    },
    /// The HTTP client could not be set up (e.g. no TLS backend).
    #[error("cannot set up the HTTP client")]
    Setup(#[source] reqwest::Error),
    /// The server could not be reached, or the connection broke: connection refused, name not
    /// resolved, TLS failure, or no answer within the request timeout. The source says which.
    #[error("cannot reach the server at {url}")]
    Unreachable {
        /// The URL of the request.
        url: Url,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status. The problem is the server's RFC 9457 body;
    /// when the body is not a problem document (a proxy's error page, say), a problem of type
    /// `about:blank` with the status's reason as title and the body's text as detail.
    #[error("{} ({} {})", problem.detail, problem.status, problem.title)]
    Problem {
        /// The problem document.
        problem: Box<Problem>,
        /// The `Retry-After` delay, when the server sent one in seconds (429, 503).
        retry_after: Option<Duration>,
    },
    /// A local file could not be read or written (uploads, downloads).
    #[error("local file `{}`", path.display())]
    Local {
        /// The local file.
        path: std::path::PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The server's answer is not the JSON this client expects.
    #[error("unexpected answer from {url}")]
    InvalidResponse {
        /// The URL of the request.
        url: Url,
        /// Why it does not decode.
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The HTTP status of an error answer ([`ClientError::Problem`]), else `None`.
    pub fn status(&self) -> Option<u16> {
        self.problem().map(|p| p.status)
    }

    /// The server's problem document, for an error answer.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ClientError::Problem { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// Whether retrying later may succeed: the server is unreachable, rate-limits (429) or is
    /// temporarily unavailable (502, 503, 504).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Problem { problem, .. } => matches!(problem.status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// How long the server asked the client to wait before retrying (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Problem { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

//! [`Client`]: one method per endpoint of the HTTP API, over reqwest.

use std::fmt;
use std::time::Duration;

use ffmpeg_worker_api::{
    CreateJobRequest, HealthResponse, JobResponse, MediaInfoResponse, Problem, ReadyResponse, WorkerResponse,
};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use crate::ClientError;

/// Longest wait for a TCP/TLS connection, unless [`Client::with_http`] sets up another.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for an answer. Cancelling a running job answers once ffmpeg has stopped, which
/// may take the runner's grace period.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A client of one ffmpeg-worker server. Cheap to clone (the connection pool is shared).
///
/// Every method sends one request (except [`Client::list_all`] and the `wait` methods, which
/// send several) and fails with [`ClientError::Problem`] when the server answers with an error.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the server at `base_url` (`http://` or `https://`; request paths are appended
    /// to its path, so a reverse-proxy prefix such as `https://host/ffmpeg/` works), sending
    /// `token`, when given and not blank, as `Authorization: Bearer`. Connections time out after
    /// [`DEFAULT_CONNECT_TIMEOUT`], answers after [`DEFAULT_REQUEST_TIMEOUT`].
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for anything but an http(s) URL with a host;
    /// [`ClientError::Setup`] when the HTTP client cannot be built.
    pub fn new(base_url: &str, token: Option<&str>) -> Result<Client, ClientError> {
        let base = parse_base_url(base_url)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("ffmpeg-worker-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
            .timeout(DEFAULT_REQUEST_TIMEOUT)
            .build()
            .map_err(ClientError::Setup)?;
        Ok(Client::with_http(http, base, token))
    }

    /// A client over an HTTP client you configured yourself (proxy, TLS roots, timeouts), for a
    /// base URL you parsed ([`parse_base_url`] checks one as [`Client::new`] does).
    pub fn with_http(http: reqwest::Client, base: Url, token: Option<&str>) -> Client {
        let token = token.map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
        Client { http, base, token }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Submits a job (`POST /jobs`); the answer is the queued job.
    ///
    /// # Errors
    /// A refused command is [`ClientError::Problem`] with status 422 whose problem names the
    /// argument and, for the security policy, the rule: "argument 2 `../x.mp4`: path escapes
    /// the data directory" (`rule`: `path-escapes`).
    pub async fn submit(&self, request: &CreateJobRequest) -> Result<JobResponse, ClientError> {
        self.json(Method::POST, self.endpoint(&["jobs"]), Some(request)).await
    }

    /// A job (`GET /jobs/{id}`): its status, live progress, and outputs or error once finished.
    ///
    /// # Errors
    /// An unknown id is [`ClientError::Problem`] with status 404.
    pub async fn get(&self, id: &str) -> Result<JobResponse, ClientError> {
        self.json(Method::GET, self.endpoint(&["jobs", id]), None).await
    }

    /// Cancels a queued or running job (`POST /jobs/{id}/cancel`); answers once it is cancelled
    /// (a running ffmpeg is stopped first).
    ///
    /// # Errors
    /// A finished job is [`ClientError::Problem`] with status 409, an unknown one 404.
    pub async fn cancel(&self, id: &str) -> Result<JobResponse, ClientError> {
        self.json(Method::POST, self.endpoint(&["jobs", id, "cancel"]), None).await
    }

    /// Deletes a finished job's record (`DELETE /jobs/{id}`); its output files stay.
    ///
    /// # Errors
    /// A queued or running job is [`ClientError::Problem`] with status 409, an unknown one 404.
    pub async fn delete(&self, id: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &self.endpoint(&["jobs", id]), None).await.map(drop)
    }

    /// A job's log (`GET /jobs/{id}/log`): the tail of ffmpeg's stderr as text, empty until the
    /// job finishes.
    ///
    /// # Errors
    /// An unknown id is [`ClientError::Problem`] with status 404.
    pub async fn log(&self, id: &str) -> Result<String, ClientError> {
        let url = self.endpoint(&["jobs", id, "log"]);
        let response = self.send(Method::GET, &url, None).await?;
        response.text().await.map_err(|source| ClientError::Unreachable { url, source })
    }

    /// What ffprobe says about a media file of the server's data directory
    /// (`GET /probe/{path}`): container, duration, bit rate, size, and each stream.
    ///
    /// `path` is relative to the data directory (`in/clip.mp4`); it is sent as one
    /// percent-encoded segment, so `..`, `?` or `#` in it reach the server as written.
    ///
    /// # Errors
    /// [`ClientError::Problem`]: 404 for no such file; 422 for a path the server's sandbox
    /// refuses (escapes the data directory, ...) or a file that is not media (the detail has
    /// ffprobe's reason); 503 when the server cannot run ffprobe.
    pub async fn probe(&self, path: &str) -> Result<MediaInfoResponse, ClientError> {
        self.json(Method::GET, self.endpoint(&["probe", path]), None).await
    }

    /// Liveness (`GET /health`).
    ///
    /// # Errors
    /// [`ClientError::Unreachable`] when the server does not answer.
    pub async fn health(&self) -> Result<HealthResponse, ClientError> {
        self.json(Method::GET, self.endpoint(&["health"]), None).await
    }

    /// The nodes sharing the server's job store (`GET /workers`), by id.
    ///
    /// # Errors
    /// [`ClientError::Unreachable`] when the server does not answer; [`ClientError::Problem`]
    /// for an error answer (401 without a valid token, 404 from a worker node).
    pub async fn workers(&self) -> Result<Vec<WorkerResponse>, ClientError> {
        self.json(Method::GET, self.endpoint(&["workers"]), None).await
    }

    /// Readiness (`GET /ready`): the store answers and ffmpeg runs.
    ///
    /// # Errors
    /// [`ClientError::Problem`] with status 503 naming what is not ready.
    pub async fn ready(&self) -> Result<ReadyResponse, ClientError> {
        self.json(Method::GET, self.endpoint(&["ready"]), None).await
    }

    /// `base` + `/segment/segment...`, each segment percent-encoded (so an id cannot add path
    /// segments or a query), without the base URL's query and fragment.
    pub(crate) fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        // `parse_base_url` refused URLs that cannot be a base, so there are segments to extend.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends a request; a non-2xx answer becomes [`ClientError::Problem`].
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<&CreateJobRequest>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self
            .request(method, url)
            .header(header::ACCEPT, "application/json, application/problem+json;q=0.9, text/plain;q=0.5");
        if let Some(body) = body {
            request = request.json(body);
        }
        self.execute(url, request).await
    }

    /// A request to `url`, with the token when there is one.
    pub(crate) fn request(&self, method: Method, url: &Url) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url.clone());
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request` (to `url`); a non-2xx answer becomes [`ClientError::Problem`].
    pub(crate) async fn execute(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let response = request.send().await.map_err(|source| ClientError::Unreachable { url: url.clone(), source })?;
        if response.status().is_success() { Ok(response) } else { Err(problem(response).await) }
    }

    /// Sends a request and decodes the JSON answer.
    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&CreateJobRequest>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, &url, body).await?;
        decode(url, response).await
    }
}

/// Reads a JSON answer's body and decodes it.
pub(crate) async fn decode<T: DeserializeOwned>(url: Url, response: reqwest::Response) -> Result<T, ClientError> {
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(source) => return Err(ClientError::Unreachable { url, source }),
    };
    serde_json::from_slice(&body).map_err(|source| ClientError::InvalidResponse { url, source })
}

/// Checks a server URL as [`Client::new`] does: `http` or `https`, with a host, able to hold
/// paths.
///
/// # Errors
/// [`ClientError::InvalidUrl`] otherwise (`localhost:8000`, `ftp://host/`, `mailto:x`).
pub fn parse_base_url(s: &str) -> Result<Url, ClientError> {
    let url = Url::parse(s).map_err(|e| ClientError::InvalidUrl { url: s.to_owned(), source: Some(e) })?;
    match url.scheme() {
        "http" | "https" if !url.cannot_be_a_base() && url.host().is_some() => Ok(url),
        _ => Err(ClientError::InvalidUrl { url: s.to_owned(), source: None }),
    }
}

/// Reads an error answer: the problem document, or a problem made from the status and the body.
async fn problem(response: reqwest::Response) -> ClientError {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    ClientError::Problem { problem: Box::new(problem_from_body(status, &body)), retry_after }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the server).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn problem_from_body(status: StatusCode, body: &str) -> Problem {
    if let Ok(problem) = serde_json::from_str::<Problem>(body) {
        return problem;
    }
    let reason = status.canonical_reason().unwrap_or("Error").to_owned();
    // Another server's JSON error (`{"detail": "..."}`, FastAPI's shape): keep its detail.
    let json = serde_json::from_str::<serde_json::Value>(body).ok();
    let field = |name: &str| match json.as_ref().and_then(|j| j.get(name)) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    let title = field("title").unwrap_or_else(|| reason.clone());
    let detail = field("detail").unwrap_or_else(|| {
        let text: String = body.trim().chars().take(500).collect();
        if text.is_empty() { reason } else { text }
    });
    Problem {
        type_: "about:blank".to_owned(),
        title,
        status: status.as_u16(),
        detail,
        argument_position: None,
        argument: None,
        rule: None,
        job_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert!(parse_base_url("http://127.0.0.1:8000").is_ok());
        assert!(parse_base_url("https://media.example.com/ffmpeg/").is_ok());
        for bad in ["127.0.0.1:8000", "ftp://host/", "mailto:a@b", "localhost", "http://"] {
            let err = parse_base_url(bad).expect_err(bad);
            assert!(matches!(&err, ClientError::InvalidUrl { url, .. } if url == bad), "{err:?}");
        }
    }

    #[test]
    fn tokens_are_trimmed_and_blank_ones_dropped() {
        let base = parse_base_url("http://h/").expect("url");
        let token = |t| Client::with_http(reqwest::Client::new(), base.clone(), t).token;
        assert_eq!(token(Some(" s3cret\n")), Some("s3cret".to_owned()));
        assert_eq!(token(Some("  ")), None);
        assert_eq!(token(None), None);
    }

    #[test]
    fn endpoints_keep_a_path_prefix_and_encode_ids() {
        for (base, expected) in [
            ("http://h:8000", "http://h:8000/jobs/job_1/cancel"),
            ("http://h:8000/", "http://h:8000/jobs/job_1/cancel"),
            ("https://h/ffmpeg", "https://h/ffmpeg/jobs/job_1/cancel"),
            ("https://h/ffmpeg/?x=1#f", "https://h/ffmpeg/jobs/job_1/cancel"),
        ] {
            let client = Client::new(base, None).expect("client");
            assert_eq!(client.endpoint(&["jobs", "job_1", "cancel"]).as_str(), expected);
        }
        let client = Client::new("http://h/", None).expect("client");
        assert_eq!(client.endpoint(&["jobs", "../x?y"]).as_str(), "http://h/jobs/..%2Fx%3Fy");
    }

    #[test]
    fn error_answers_become_problems() {
        let check = |status: u16, body: &str, expected: (&str, &str, &str)| {
            let problem = problem_from_body(StatusCode::from_u16(status).expect("status"), body);
            assert_eq!((problem.type_.as_str(), problem.title.as_str(), problem.detail.as_str()), expected, "{body}");
            assert_eq!(problem.status, status);
            problem
        };
        let policy = check(
            422,
            r#"{"type":"/problems/policy-violation","title":"Refused by the security policy","status":422,
                "detail":"argument 2 `../x.mp4`: path escapes the data directory",
                "argument_position":2,"argument":"../x.mp4","rule":"path-escapes"}"#,
            (
                "/problems/policy-violation",
                "Refused by the security policy",
                "argument 2 `../x.mp4`: path escapes the data directory",
            ),
        );
        assert_eq!(
            (policy.argument_position, policy.argument.as_deref(), policy.rule.as_deref()),
            (Some(2), Some("../x.mp4"), Some("path-escapes"))
        );
        check(404, r#"{"detail":"Job not found"}"#, ("about:blank", "Not Found", "Job not found"));
        check(
            422,
            r#"{"detail":[{"loc":["body"]}]}"#,
            ("about:blank", "Unprocessable Entity", r#"[{"loc":["body"]}]"#),
        );
        check(502, "Bad gateway from nginx\n", ("about:blank", "Bad Gateway", "Bad gateway from nginx"));
        check(500, "", ("about:blank", "Internal Server Error", "Internal Server Error"));
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static(" 3 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), None);
    }
}

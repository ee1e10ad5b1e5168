//! The command-line client: `ffmpeg-worker submit | status | list | cancel | logs | wait`,
//! talking to a server over its HTTP API (reqwest), with a live progress display (indicatif).
//!
//! [`Client`] is a small typed client of the HTTP API, usable on its own. [`Command`] holds the
//! clap subcommands and [`run`] executes one and returns the process exit status:
//!
//! - 0: success; for `submit --wait` and `wait`, the job completed;
//! - 1 ([`EXIT_JOB_UNSUCCESSFUL`]): the awaited job failed or was cancelled (its error is
//!   printed to stderr);
//! - 2 ([`EXIT_ERROR`]): usage error, unreachable server, or an error answer from the server
//!   (its problem `detail` is printed to stderr);
//! - 130: interrupted (Ctrl-C) while waiting; the job itself carries on.
//!
//! Waiting polls `GET /jobs/{id}` every 250 ms: the server has no streaming endpoint.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::wire::JobStatusWire;

/// The server URL used when neither `--url` nor `FFMPEG_WORKER_URL` is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8000";
/// Exit status when an awaited job failed or was cancelled.
pub const EXIT_JOB_UNSUCCESSFUL: u8 = 1;
/// Exit status for usage errors, an unreachable server, or an error answer from the server.
pub const EXIT_ERROR: u8 = 2;
/// Exit status when waiting was interrupted with Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Time between two `GET /jobs/{id}` while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long waiting tolerates an unreachable or overloaded server (e.g. during a restart)
/// before giving up.
const TRANSIENT_BUDGET: Duration = Duration::from_secs(30);
/// Longest wait for a TCP/TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for an answer. Cancelling a running job answers once ffmpeg has stopped,
/// which may take the runner's grace period.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// While running, a plain progress line is printed at least this often.
const LINE_HEARTBEAT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The HTTP client
// ---------------------------------------------------------------------------------------------

/// Why a request to the server did not give the expected answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached: connection refused, name not resolved, TLS failure,
    /// or no answer in time.
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable {
        /// The URL of the request.
        url: String,
        /// The underlying cause.
        reason: String,
    },
    /// The server answered with an error status. `detail` is the RFC 9457 problem's `detail`
    /// (or the body, when the answer is not a problem document).
    #[error("{detail} ({status} {title})")]
    Problem {
        /// The HTTP status code.
        status: u16,
        /// The problem's title, or the status's reason phrase.
        title: String,
        /// What exactly was wrong.
        detail: String,
        /// The `Retry-After` delay, when the server sent one (in seconds).
        retry_after: Option<Duration>,
    },
    /// The server's answer is not what this client understands.
    #[error("unexpected answer from {url}: {reason}")]
    InvalidResponse {
        /// The URL of the request.
        url: String,
        /// What could not be understood.
        reason: String,
    },
    /// No request URL can be built on the base URL (e.g. `mailto:x`).
    #[error("`{url}` cannot be used as the server URL")]
    InvalidUrl {
        /// The base URL.
        url: String,
    },
    /// The HTTP client could not be set up (e.g. no TLS backend).
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

impl ClientError {
    /// Whether retrying later may succeed: the server is unreachable, rate-limits (429) or is
    /// temporarily unavailable (502, 503, 504).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Problem { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Problem { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A decoded answer together with its body exactly as the server sent it (for `--json`).
#[derive(Debug, Clone)]
pub struct Fetched<T> {
    /// The decoded value.
    pub value: T,
    /// The response body, verbatim.
    pub raw: String,
}

/// A job as the server reports it (`GET /jobs/{id}`), reduced to what the client shows.
///
/// Fields added after the original design default when absent, so the client also reads
/// servers that send only `id`, `status`, `command`, `progress`, `output_files` and `error`.
#[derive(Debug, Clone, Deserialize)]
pub struct Job {
    /// `job_` followed by 16 hex digits.
    pub id: String,
    /// Where the job is in its life.
    pub status: JobStatusWire,
    /// The command as submitted.
    #[serde(default)]
    pub command: String,
    /// Submission time (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
    /// Start of the latest run (RFC 3339).
    #[serde(default)]
    pub started_at: Option<String>,
    /// When the job reached its final status (RFC 3339).
    #[serde(default)]
    pub completed_at: Option<String>,
    /// Latest progress, if ffmpeg reported any.
    #[serde(default)]
    pub progress: Option<JobProgress>,
    /// Files the command produced, relative to the server's data directory.
    #[serde(default)]
    pub output_files: Vec<String>,
    /// Why the job failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Scheduling priority.
    #[serde(default)]
    pub priority: i32,
    /// Wall-clock limit in seconds, if one was asked for.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Labels, as submitted.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// How many times a worker has started the job.
    #[serde(default)]
    pub attempts: u32,
}

/// A job's live progress (the `progress` object of a job).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobProgress {
    /// Frames written so far.
    #[serde(default)]
    pub frame: Option<u64>,
    /// Frames encoded per second.
    #[serde(default)]
    pub fps: Option<f64>,
    /// Output time reached, `HH:MM:SS.cc`.
    #[serde(default)]
    pub time: Option<String>,
    /// Average output bitrate so far, e.g. `1250.5kbits/s`.
    #[serde(default)]
    pub bitrate: Option<String>,
    /// Percent complete, 0 to 100; `None` when the output duration is unknown.
    #[serde(default)]
    pub percent: Option<f64>,
    /// Encoding speed as a multiple of real time.
    #[serde(default)]
    pub speed: Option<f64>,
    /// Estimated seconds until completion.
    #[serde(default)]
    pub eta_seconds: Option<f64>,
}

impl Job {
    /// Whether the job reached a final status (completed, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        !matches!(self.status, JobStatusWire::Queued | JobStatusWire::Running)
    }
}

/// A job submission (`POST /jobs`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SubmitRequest {
    /// The ffmpeg command line without the word `ffmpeg`.
    pub command: String,
    /// Scheduling priority: higher runs first. Not sent when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// Wall-clock limit in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Labels echoed back with the job. Not sent when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// One page of `GET /jobs`.
#[derive(Debug)]
pub struct Page {
    /// The jobs of the page, oldest first.
    pub jobs: Vec<Job>,
    /// Each job's JSON exactly as sent, in the same order.
    pub raw: Vec<Box<RawValue>>,
    /// The next page (`Link: <...>; rel="next"`), resolved against the request URL.
    pub next: Option<Url>,
}

/// The body of an RFC 9457 problem; `detail` alone is also what FastAPI-style servers send.
#[derive(Debug, Deserialize)]
struct ProblemBody {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

/// A typed client of the ffmpeg-worker HTTP API.
///
/// ```no_run
/// # async fn demo() -> Result<(), ffmpeg_worker_server::client::ClientError> {
/// use ffmpeg_worker_server::client::{Client, SubmitRequest};
/// let client = Client::new("http://127.0.0.1:8000".parse().expect("a URL"), None)?;
/// let job = client
///     .submit(&SubmitRequest { command: "-i in.mp4 out.webm".to_owned(), ..Default::default() })
///     .await?;
/// let now = client.job(&job.value.id).await?;
/// println!("{:?}", now.value.status);
/// # Ok(())
/// # }
/// ```
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
            .finish()
    }
}

impl Client {
    /// A client of the server at `base` (paths are appended to it, so a reverse-proxy prefix
    /// such as `https://host/ffmpeg/` works), sending `token` as `Authorization: Bearer`.
    ///
    /// # Errors
    /// [`ClientError::Setup`] when the HTTP client cannot be built.
    pub fn new(base: Url, token: Option<String>) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ffmpeg-worker/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Setup(innermost(&e)))?;
        let token = token.filter(|t| !t.trim().is_empty());
        Ok(Client { http, base, token })
    }

    /// `base` + `/segment/segment...`, each segment percent-encoded.
    fn endpoint(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| ClientError::InvalidUrl { url: self.base.to_string() })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<&SubmitRequest>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self
            .http
            .request(method, url.clone())
            .header(header::ACCEPT, "application/json, application/problem+json;q=0.9, text/plain;q=0.5");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.trim());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| transport_error(url, &e))?;
        if response.status().is_success() { Ok(response) } else { Err(problem(response).await) }
    }

    async fn fetch<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: &Url,
        body: Option<&SubmitRequest>,
    ) -> Result<Fetched<T>, ClientError> {
        let response = self.call(method, url, body).await?;
        let raw = response.text().await.map_err(|e| transport_error(url, &e))?;
        let value = serde_json::from_str(&raw)
            .map_err(|e| ClientError::InvalidResponse { url: url.to_string(), reason: e.to_string() })?;
        Ok(Fetched { value, raw })
    }

    /// Submits a job (`POST /jobs`).
    ///
    /// # Errors
    /// A refused command is [`ClientError::Problem`] with status 422 and the server's detail,
    /// e.g. "argument 2 `../x.mp4`: path escapes the data directory".
    pub async fn submit(&self, request: &SubmitRequest) -> Result<Fetched<Job>, ClientError> {
        self.fetch(Method::POST, &self.endpoint(&["jobs"])?, Some(request)).await
    }

    /// Gets a job (`GET /jobs/{id}`).
    ///
    /// # Errors
    /// An unknown id is [`ClientError::Problem`] with status 404.
    pub async fn job(&self, id: &str) -> Result<Fetched<Job>, ClientError> {
        self.fetch(Method::GET, &self.endpoint(&["jobs", id])?, None).await
    }

    /// Cancels a job (`POST /jobs/{id}/cancel`); answers once it is cancelled.
    ///
    /// # Errors
    /// A finished job is [`ClientError::Problem`] with status 409.
    pub async fn cancel(&self, id: &str) -> Result<Fetched<Job>, ClientError> {
        self.fetch(Method::POST, &self.endpoint(&["jobs", id, "cancel"])?, None).await
    }

    /// A job's log (`GET /jobs/{id}/log`): the tail of ffmpeg's stderr, as text.
    ///
    /// # Errors
    /// An unknown id is [`ClientError::Problem`] with status 404.
    pub async fn log(&self, id: &str) -> Result<String, ClientError> {
        let url = self.endpoint(&["jobs", id, "log"])?;
        let response = self.call(Method::GET, &url, None).await?;
        response.text().await.map_err(|e| transport_error(&url, &e))
    }

    /// The URL of the first page of `GET /jobs`, filtered by `status`, `limit` jobs a page.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] when the base URL cannot hold paths.
    pub fn list_url(&self, status: Option<&str>, limit: Option<u32>) -> Result<Url, ClientError> {
        let mut url = self.endpoint(&["jobs"])?;
        if status.is_some() || limit.is_some() {
            let mut query = url.query_pairs_mut();
            if let Some(status) = status {
                query.append_pair("status", status);
            }
            if let Some(limit) = limit {
                query.append_pair("limit", &limit.to_string());
            }
        }
        Ok(url)
    }

    /// One page of `GET /jobs` at `url` (from [`Client::list_url`] or a previous [`Page::next`]).
    ///
    /// # Errors
    /// An invalid filter is [`ClientError::Problem`] with status 422.
    pub async fn list_page(&self, url: &Url) -> Result<Page, ClientError> {
        let response = self.call(Method::GET, url, None).await?;
        let next = next_link(response.headers()).and_then(|target| response.url().join(&target).ok());
        let body = response.text().await.map_err(|e| transport_error(url, &e))?;
        let invalid =
            |e: serde_json::Error| ClientError::InvalidResponse { url: url.to_string(), reason: e.to_string() };
        let raw: Vec<Box<RawValue>> = serde_json::from_str(&body).map_err(invalid)?;
        let jobs =
            raw.iter().map(|r| serde_json::from_str(r.get())).collect::<Result<Vec<Job>, _>>().map_err(invalid)?;
        Ok(Page { jobs, raw, next })
    }
}

/// The innermost cause of an error: for a refused connection "Connection refused (os error
/// 111)" rather than reqwest's "error sending request for url (...)".
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

fn transport_error(url: &Url, e: &reqwest::Error) -> ClientError {
    let reason = if e.is_timeout() { "no answer in time".to_owned() } else { innermost(e) };
    if e.is_decode() || e.is_body() {
        ClientError::InvalidResponse { url: url.to_string(), reason }
    } else {
        ClientError::Unreachable { url: url.to_string(), reason }
    }
}

/// Reads an error answer: a problem document's `title` and `detail`, or else the body text.
async fn problem(response: reqwest::Response) -> ClientError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response.text().await.unwrap_or_default();
    problem_from_body(status, &body, retry_after)
}

fn problem_from_body(status: StatusCode, body: &str, retry_after: Option<Duration>) -> ClientError {
    let reason = status.canonical_reason().unwrap_or("error").to_owned();
    let parsed = serde_json::from_str::<ProblemBody>(body).ok();
    let title = parsed.as_ref().and_then(|p| p.title.clone()).unwrap_or_else(|| reason.clone());
    let detail = match parsed.and_then(|p| p.detail) {
        Some(serde_json::Value::String(s)) => s,
        // FastAPI sends validation errors as a list of objects.
        Some(other) => other.to_string(),
        None => {
            let text: String = body.trim().chars().take(500).collect();
            if text.is_empty() { reason } else { text }
        }
    };
    ClientError::Problem { status: status.as_u16(), title, detail, retry_after }
}

/// The target of the `rel="next"` link of a `Link` header (RFC 8288), unresolved.
fn next_link(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::LINK).iter().filter_map(|v| v.to_str().ok()).find_map(parse_next_link).map(str::to_owned)
}

fn parse_next_link(value: &str) -> Option<&str> {
    value.split(',').find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        let is_next = params.split(';').any(|param| {
            let Some((name, rel)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && rel.trim().trim_matches('"').split_whitespace().any(|r| r.eq_ignore_ascii_case("next"))
        });
        is_next.then_some(target)
    })
}

// ---------------------------------------------------------------------------------------------
// The subcommands
// ---------------------------------------------------------------------------------------------

/// Where the server is and how to authenticate.
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Server")]
pub struct Connection {
    /// Base URL of the ffmpeg-worker server (http or https).
    #[arg(long, env = "FFMPEG_WORKER_URL", default_value = DEFAULT_URL, value_parser = parse_base_url)]
    pub url: Url,

    /// API token, sent as `Authorization: Bearer <token>`.
    #[arg(long, env = "FFMPEG_WORKER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.url.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn parse_base_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if !url.cannot_be_a_base() && url.host().is_some() => Ok(url),
        _ => Err(format!("`{s}` is not an http:// or https:// URL")),
    }
}

/// `KEY=VALUE`, split at the first `=`.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// The client subcommands of `ffmpeg-worker`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Submit a job: `submit [--wait] -- -i in.mp4 out.webm`
    Submit(SubmitArgs),
    /// Show a job: status, progress, outputs or error
    Status(JobArgs),
    /// List jobs, oldest first
    List(ListArgs),
    /// Cancel a queued or running job
    Cancel(JobArgs),
    /// Print a job's log (the tail of ffmpeg's stderr)
    Logs(LogsArgs),
    /// Wait for a job to finish, showing its progress; exit 0 if it completed, 1 if not
    Wait(JobArgs),
}

/// Arguments of `submit`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Paths are relative to the server's data directory.

Examples:
  ffmpeg-worker submit --wait -- -i input.mp4 -c:v libvpx-vp9 -crf 32 out/clip.webm
  ffmpeg-worker submit '-i input.mp4 -vf fps=1 thumbs/t%03d.png'
  id=$(ffmpeg-worker submit --priority 5 --metadata asset=a-42 -- -i in.mov out.mp4)")]
pub struct SubmitArgs {
    /// Wait for the job to finish, showing its progress; exit 0 if it completed, 1 if it
    /// failed or was cancelled.
    #[arg(long)]
    pub wait: bool,

    /// Scheduling priority: higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,

    /// Wall-clock limit for this job, in seconds (capped by the server's limit).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,

    /// A label echoed back with the job (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub metadata: Vec<(String, String)>,

    /// Print the server's JSON instead of text (with --wait: the finished job).
    #[arg(long)]
    pub json: bool,

    /// The ffmpeg command line without the word `ffmpeg`: the words after `--` (joined with
    /// shell quoting), or a single quoted string.
    #[arg(
        value_name = "FFMPEG_ARGS",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub connection: Connection,
}

impl SubmitArgs {
    /// The command line to send: one word is taken as the whole command line; several are
    /// joined with POSIX shell quoting, so the server splits them back into the same words.
    pub fn command_line(&self) -> String {
        match self.command.as_slice() {
            [one] => one.clone(),
            words => shell_words::join(words),
        }
    }
}

/// Arguments of the subcommands that take a job id.
#[derive(Debug, clap::Args)]
pub struct JobArgs {
    /// The job id (`job_` + 16 hex digits).
    pub id: String,

    /// Print the server's JSON instead of text.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub connection: Connection,
}

/// Arguments of `logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The job id (`job_` + 16 hex digits).
    pub id: String,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub connection: Connection,
}

/// A job status, as a `list --status` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFilter {
    /// Waiting for a worker.
    Queued,
    /// ffmpeg is running.
    Running,
    /// ffmpeg exited successfully.
    Completed,
    /// ffmpeg failed or timed out.
    Failed,
    /// Cancelled by a client.
    Cancelled,
}

impl StatusFilter {
    fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Queued => "queued",
            StatusFilter::Running => "running",
            StatusFilter::Completed => "completed",
            StatusFilter::Failed => "failed",
            StatusFilter::Cancelled => "cancelled",
        }
    }
}

/// Arguments of `list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only jobs with this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,

    /// Jobs per page, 1 to 1000 (server default: 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,

    /// Fetch every page (follow `Link: rel="next"`), not only the first.
    #[arg(long)]
    pub all: bool,

    /// Print the jobs as one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub connection: Connection,
}

/// How a subcommand ended, when it did not fail itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    JobUnsuccessful,
    Interrupted,
}

#[derive(Debug)]
enum CliError {
    Client(ClientError),
    Io(io::Error),
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError::Client(e)
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Io(e)
    }
}

/// Runs one client subcommand and returns the process exit status (see the module docs).
pub async fn run(command: Command) -> ExitCode {
    match execute(command).await {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::JobUnsuccessful) => ExitCode::from(EXIT_JOB_UNSUCCESSFUL),
        Ok(Outcome::Interrupted) => ExitCode::from(EXIT_INTERRUPTED),
        // `ffmpeg-worker list | head`: the reader is gone, nothing to report.
        Err(CliError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn report(e: &CliError) {
    let hint = match e {
        CliError::Client(ClientError::Unreachable { .. }) => {
            Some("is the server running? Point the client at it with --url or FFMPEG_WORKER_URL")
        }
        CliError::Client(ClientError::Problem { status: 401, .. }) => {
            Some("pass the server's API token with --token or FFMPEG_WORKER_TOKEN")
        }
        _ => None,
    };
    let message = match e {
        CliError::Client(e) => e.to_string(),
        CliError::Io(e) => format!("cannot write the output: {e}"),
    };
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "ffmpeg-worker: {message}");
    if let Some(hint) = hint {
        let _ = writeln!(stderr, "  hint: {hint}");
    }
}

async fn execute(command: Command) -> Result<Outcome, CliError> {
    match command {
        Command::Submit(args) => submit(args).await,
        Command::Status(args) => {
            let job = connect(&args.connection)?.job(&args.id).await?;
            if args.json {
                print_raw(&job.raw)?;
            } else {
                print_job(&job.value)?;
            }
            Ok(Outcome::Success)
        }
        Command::List(args) => list(args).await,
        Command::Cancel(args) => {
            let job = connect(&args.connection)?.cancel(&args.id).await?;
            if args.json {
                print_raw(&job.raw)?;
            } else {
                out(format_args!("{} {}", job.value.id, status_name(job.value.status)))?;
            }
            Ok(Outcome::Success)
        }
        Command::Logs(args) => {
            let log = connect(&args.connection)?.log(&args.id).await?;
            if log.is_empty() {
                let _ = writeln!(io::stderr(), "job {} has no log yet: it is kept once the job finishes", args.id);
            } else {
                let mut stdout = io::stdout().lock();
                stdout.write_all(log.as_bytes())?;
                if !log.ends_with('\n') {
                    stdout.write_all(b"\n")?;
                }
                stdout.flush()?;
            }
            Ok(Outcome::Success)
        }
        Command::Wait(args) => {
            let client = connect(&args.connection)?;
            let first = client.job(&args.id).await?;
            follow(&client, first, args.json).await
        }
    }
}

fn connect(connection: &Connection) -> Result<Client, ClientError> {
    Client::new(connection.url.clone(), connection.token.clone())
}

async fn submit(args: SubmitArgs) -> Result<Outcome, CliError> {
    let client = connect(&args.connection)?;
    let request = SubmitRequest {
        command: args.command_line(),
        priority: args.priority,
        timeout_seconds: args.timeout,
        metadata: args.metadata.iter().cloned().collect(),
    };
    let job = client.submit(&request).await?;
    if args.wait {
        return follow(&client, job, args.json).await;
    }
    if args.json {
        print_raw(&job.raw)?;
    } else {
        // The id alone, so that `id=$(ffmpeg-worker submit -- ...)` works.
        out(&job.value.id)?;
    }
    Ok(Outcome::Success)
}

async fn list(args: ListArgs) -> Result<Outcome, CliError> {
    let client = connect(&args.connection)?;
    let mut url = client.list_url(args.status.map(StatusFilter::as_str), args.limit)?;
    let mut visited = vec![url.clone()];
    let (mut jobs, mut raw) = (Vec::new(), Vec::new());
    let more = loop {
        let page = client.list_page(&url).await?;
        jobs.extend(page.jobs);
        raw.extend(page.raw);
        match page.next {
            Some(next) if args.all && !visited.contains(&next) => {
                visited.push(next.clone());
                url = next;
            }
            Some(_) if !args.all => break true,
            _ => break false,
        }
    };
    if args.json {
        let json = serde_json::to_string(&raw)
            .map_err(|e| ClientError::InvalidResponse { url: url.to_string(), reason: e.to_string() })?;
        print_raw(&json)?;
    } else {
        print_table(&jobs)?;
        if more {
            let _ = writeln!(io::stderr(), "more jobs follow: add --all to list them all");
        }
    }
    Ok(Outcome::Success)
}

/// Follows a job until it finishes, then reports how it ended.
async fn follow(client: &Client, first: Fetched<Job>, json: bool) -> Result<Outcome, CliError> {
    let mut reporter = Reporter::new(if json { Stream::Stderr } else { Stream::Stdout }, &first.value.id);
    let watched = watch(client, first, &mut reporter).await;
    reporter.finish();
    let Some(job) = watched? else {
        return Ok(Outcome::Interrupted);
    };
    if json {
        print_raw(&job.raw)?;
    }
    let job = job.value;
    match job.status {
        JobStatusWire::Completed => {
            if !json {
                out(format_args!("{} completed", job.id))?;
                for file in &job.output_files {
                    out(file)?;
                }
            }
            Ok(Outcome::Success)
        }
        status => {
            let mut stderr = io::stderr().lock();
            match job.error.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
                Some(error) => writeln!(stderr, "{} {}:\n{error}", job.id, status_name(status))?,
                None => writeln!(stderr, "{} {}", job.id, status_name(status))?,
            }
            Ok(Outcome::JobUnsuccessful)
        }
    }
}

/// Polls the job until it is finished (`Some`) or the user presses Ctrl-C (`None`).
/// An unreachable or overloaded server is retried for [`TRANSIENT_BUDGET`].
async fn watch(
    client: &Client,
    first: Fetched<Job>,
    reporter: &mut Reporter,
) -> Result<Option<Fetched<Job>>, CliError> {
    let id = first.value.id.clone();
    let mut current = first;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        reporter.update(&current.value)?;
        if current.value.is_finished() {
            return Ok(Some(current));
        }
        let mut delay = POLL_INTERVAL;
        let mut failing_since: Option<Instant> = None;
        current = loop {
            tokio::select! {
                _ = &mut interrupt => {
                    reporter.finish();
                    let _ = writeln!(
                        io::stderr(),
                        "stopped waiting; {id} carries on (follow it: `ffmpeg-worker wait {id}`, \
                         stop it: `ffmpeg-worker cancel {id}`)"
                    );
                    return Ok(None);
                }
                () = tokio::time::sleep(delay) => {}
            }
            match client.job(&id).await {
                Ok(job) => break job,
                Err(e) if e.is_transient() => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= TRANSIENT_BUDGET {
                        return Err(e.into());
                    }
                    reporter.note(&id, &format!("{e}; retrying"))?;
                    delay = e.retry_after().unwrap_or(POLL_INTERVAL * 4).clamp(POLL_INTERVAL, Duration::from_secs(5));
                }
                Err(e) => return Err(e.into()),
            }
        };
    }
}

// ---------------------------------------------------------------------------------------------
// Progress display
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn is_terminal(self) -> bool {
        let tty = match self {
            Stream::Stdout => io::stdout().is_terminal(),
            Stream::Stderr => io::stderr().is_terminal(),
        };
        tty && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
    }

    fn line(self, text: &str) -> io::Result<()> {
        match self {
            Stream::Stdout => writeln!(io::stdout().lock(), "{text}"),
            Stream::Stderr => writeln!(io::stderr().lock(), "{text}"),
        }
    }
}

/// Live progress of a job: an indicatif bar on a terminal, plain lines otherwise.
enum Reporter {
    Bar(BarReporter),
    Lines(LineReporter),
}

impl Reporter {
    fn new(stream: Stream, id: &str) -> Reporter {
        if stream.is_terminal() {
            let target = match stream {
                Stream::Stdout => ProgressDrawTarget::stdout(),
                Stream::Stderr => ProgressDrawTarget::stderr(),
            };
            let bar =
                ProgressBar::with_draw_target(None, target).with_style(bar_style(false)).with_prefix(id.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            Reporter::Bar(BarReporter { bar, determinate: false })
        } else {
            Reporter::Lines(LineReporter { stream, last: None, failing: false })
        }
    }

    fn update(&mut self, job: &Job) -> io::Result<()> {
        match self {
            Reporter::Bar(bar) => {
                bar.update(job);
                Ok(())
            }
            Reporter::Lines(lines) => lines.update(job, Instant::now()),
        }
    }

    /// A passing condition (e.g. the server is unreachable and polling retries).
    fn note(&mut self, id: &str, text: &str) -> io::Result<()> {
        match self {
            Reporter::Bar(bar) => {
                bar.bar.set_message(text.to_owned());
                Ok(())
            }
            Reporter::Lines(lines) if !lines.failing => {
                lines.failing = true;
                lines.stream.line(&format!("{id} {text}"))
            }
            Reporter::Lines(_) => Ok(()),
        }
    }

    fn finish(&mut self) {
        if let Reporter::Bar(bar) = self {
            bar.bar.finish_and_clear();
        }
    }
}

struct BarReporter {
    bar: ProgressBar,
    /// Whether a bar (percent known) is shown rather than a spinner.
    determinate: bool,
}

/// Bar positions per percent (the bar counts tenths of a percent).
const BAR_SCALE: f64 = 10.0;

impl BarReporter {
    fn update(&mut self, job: &Job) {
        if job.is_finished() {
            // The bar is cleared and `follow` prints how the job ended.
            return;
        }
        let percent = running_percent(job);
        let want_bar = percent.is_some();
        if self.determinate != want_bar {
            self.determinate = want_bar;
            if want_bar {
                self.bar.set_length(100 * BAR_SCALE as u64);
            } else {
                self.bar.unset_length();
            }
            self.bar.set_style(bar_style(want_bar));
        }
        if let Some(p) = percent {
            self.bar.set_position((p.clamp(0.0, 100.0) * BAR_SCALE).round() as u64);
        }
        // The bar itself says "running": show only the measures next to it.
        self.bar.set_message(if want_bar { measures(job).join(" ") } else { details(job) });
    }
}

/// A spinner (`bar` false: the percent is unknown) or a bar, after the job id.
fn bar_style(bar: bool) -> ProgressStyle {
    let template =
        if bar { "{spinner:.cyan} {prefix} [{bar:24.cyan/blue}] {msg}" } else { "{spinner:.cyan} {prefix} {msg}" };
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()).progress_chars("=> ")
}

/// What the last plain line showed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Printed {
    status: JobStatusWire,
    /// Tenths reached (0 to 10) when the percent was known.
    decile: Option<u32>,
    at: Instant,
}

struct LineReporter {
    stream: Stream,
    last: Option<Printed>,
    /// Whether a "retrying" note was printed since the last successful poll.
    failing: bool,
}

impl LineReporter {
    fn update(&mut self, job: &Job, now: Instant) -> io::Result<()> {
        self.failing = false;
        if job.is_finished() {
            // The final line comes from `follow`.
            return Ok(());
        }
        let decile = running_percent(job).map(decile);
        if line_due(self.last.as_ref(), job.status, decile, now) {
            self.last = Some(Printed { status: job.status, decile, at: now });
            self.stream.line(&progress_line(job))?;
        }
        Ok(())
    }
}

fn decile(percent: f64) -> u32 {
    (percent.clamp(0.0, 100.0) / 10.0).floor() as u32
}

/// Whether a plain progress line is due: on every status change, when the percent reaches a
/// new tenth, and at least every [`LINE_HEARTBEAT`] while running.
fn line_due(last: Option<&Printed>, status: JobStatusWire, decile: Option<u32>, now: Instant) -> bool {
    let Some(last) = last else { return true };
    if last.status != status {
        return true;
    }
    if status != JobStatusWire::Running {
        return false;
    }
    let new_tenth = match (decile, last.decile) {
        (Some(d), Some(l)) => d > l,
        (Some(_), None) => true,
        (None, _) => false,
    };
    new_tenth || now.duration_since(last.at) >= LINE_HEARTBEAT
}

fn running_percent(job: &Job) -> Option<f64> {
    if job.status == JobStatusWire::Running {
        job.progress.as_ref().and_then(|p| p.percent).filter(|p| p.is_finite())
    } else {
        None
    }
}

/// What a running job's progress says: `42.0% speed 2.1x eta 12s`, or, when the percent is
/// unknown, the output time reached: `00:00:05.03 speed 2.1x`. Empty when not running.
fn measures(job: &Job) -> Vec<String> {
    let mut parts = Vec::new();
    let Some(p) = job.progress.as_ref().filter(|_| job.status == JobStatusWire::Running) else {
        return parts;
    };
    match running_percent(job) {
        Some(percent) => parts.push(format!("{percent:.1}%")),
        None => parts.extend(p.time.clone()),
    }
    if let Some(speed) = p.speed.filter(|s| s.is_finite()) {
        parts.push(format!("speed {speed:.1}x"));
    }
    if let Some(eta) = p.eta_seconds.filter(|e| e.is_finite() && *e >= 0.0) {
        parts.push(format!("eta {}", human_duration(eta)));
    }
    parts
}

/// `running 42.0% speed 2.1x eta 12s`, `running 00:00:05.03 speed 2.1x`, or `queued`.
fn details(job: &Job) -> String {
    let mut parts = vec![status_name(job.status).to_owned()];
    parts.extend(measures(job));
    parts.join(" ")
}

/// `job_x running 42.0% speed 2.1x eta 12s`.
fn progress_line(job: &Job) -> String {
    format!("{} {}", job.id, details(job))
}

/// `12s`, `3m05s`, `1h02m`, rounded up to whole seconds.
fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).ceil() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

fn status_name(status: JobStatusWire) -> &'static str {
    match status {
        JobStatusWire::Queued => "queued",
        JobStatusWire::Running => "running",
        JobStatusWire::Completed => "completed",
        JobStatusWire::Failed => "failed",
        JobStatusWire::Cancelled => "cancelled",
    }
}

// ---------------------------------------------------------------------------------------------
// Text output
// ---------------------------------------------------------------------------------------------

fn out(text: impl fmt::Display) -> io::Result<()> {
    writeln!(io::stdout().lock(), "{text}")
}

fn print_raw(raw: &str) -> io::Result<()> {
    out(raw.trim_end())
}

/// The progress summary of `status`: `42.0% frame 151 fps 75.0 time ... speed 2.5x eta 2s`.
fn progress_summary(p: &JobProgress) -> String {
    let mut parts = Vec::new();
    if let Some(percent) = p.percent {
        parts.push(format!("{percent:.1}%"));
    }
    if let Some(frame) = p.frame {
        parts.push(format!("frame {frame}"));
    }
    if let Some(fps) = p.fps {
        parts.push(format!("fps {fps:.1}"));
    }
    if let Some(time) = &p.time {
        parts.push(format!("time {time}"));
    }
    if let Some(bitrate) = &p.bitrate {
        parts.push(format!("bitrate {bitrate}"));
    }
    if let Some(speed) = p.speed {
        parts.push(format!("speed {speed:.1}x"));
    }
    if let Some(eta) = p.eta_seconds {
        parts.push(format!("eta {}", human_duration(eta)));
    }
    parts.join(" ")
}

fn job_fields(job: &Job) -> Vec<(&'static str, String)> {
    let mut fields =
        vec![("id", job.id.clone()), ("status", status_name(job.status).to_owned()), ("command", job.command.clone())];
    if job.priority != 0 {
        fields.push(("priority", job.priority.to_string()));
    }
    if let Some(t) = job.timeout_seconds {
        fields.push(("timeout", format!("{t}s")));
    }
    for (name, value) in [("created", &job.created_at), ("started", &job.started_at), ("finished", &job.completed_at)] {
        if let Some(v) = value {
            fields.push((name, whole_seconds(v)));
        }
    }
    if job.attempts > 1 {
        fields.push(("attempts", job.attempts.to_string()));
    }
    if let Some(p) = &job.progress {
        fields.push(("progress", progress_summary(p)));
    }
    if !job.output_files.is_empty() {
        fields.push(("outputs", job.output_files.join("\n")));
    }
    if !job.metadata.is_empty() {
        let labels: Vec<String> = job.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
        fields.push(("metadata", labels.join("\n")));
    }
    if let Some(e) = &job.error {
        fields.push(("error", e.trim_end().to_owned()));
    }
    fields
}

/// `name      value`, continuation lines of a value indented under it.
fn format_fields(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(n, _)| n.len()).max().unwrap_or(0) + 2;
    let mut text = String::new();
    for (name, value) in fields {
        let mut lines = value.lines();
        text.push_str(&format!("{name:<width$}{}\n", lines.next().unwrap_or_default()));
        for line in lines {
            text.push_str(&format!("{:width$}{line}\n", ""));
        }
    }
    text
}

fn print_job(job: &Job) -> io::Result<()> {
    write!(io::stdout().lock(), "{}", format_fields(&job_fields(job)))
}

/// An RFC 3339 time in UTC without its fraction: `2024-05-01T10:00:00Z` (unchanged when it
/// does not parse).
fn whole_seconds(rfc3339: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| rfc3339.to_owned())
}

fn format_table(jobs: &[Job]) -> String {
    let mut text = format!("{:<20}  {:<9}  {:>8}  {:<20}  {}\n", "ID", "STATUS", "PROGRESS", "CREATED", "COMMAND");
    for job in jobs {
        let progress = match (job.status, job.progress.as_ref().and_then(|p| p.percent)) {
            (JobStatusWire::Running, Some(p)) => format!("{p:.1}%"),
            (JobStatusWire::Running, None) => "?".to_owned(),
            _ => String::new(),
        };
        let created = job.created_at.as_deref().map(whole_seconds).unwrap_or_default();
        text.push_str(&format!(
            "{:<20}  {:<9}  {:>8}  {:<20}  {}\n",
            job.id,
            status_name(job.status),
            progress,
            created,
            job.command
        ));
    }
    text
}

fn print_table(jobs: &[Job]) -> io::Result<()> {
    if jobs.is_empty() {
        return out("no jobs");
    }
    write!(io::stdout().lock(), "{}", format_table(jobs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: JobStatusWire, progress: Option<JobProgress>) -> Job {
        Job {
            id: "job_0123456789abcdef".to_owned(),
            status,
            command: "-i in.mp4 out.mp4".to_owned(),
            created_at: None,
            started_at: None,
            completed_at: None,
            progress,
            output_files: Vec::new(),
            error: None,
            priority: 0,
            timeout_seconds: None,
            metadata: BTreeMap::new(),
            attempts: 0,
        }
    }

    fn progress(percent: Option<f64>, speed: Option<f64>, eta: Option<f64>) -> JobProgress {
        JobProgress { time: Some("00:00:05.03".to_owned()), percent, speed, eta_seconds: eta, ..Default::default() }
    }

    #[test]
    fn progress_lines() {
        use JobStatusWire::*;
        for (status, p, expected) in [
            (Queued, None, "job_0123456789abcdef queued"),
            (Running, None, "job_0123456789abcdef running"),
            (
                Running,
                Some(progress(Some(42.0), Some(2.13), Some(11.2))),
                "job_0123456789abcdef running 42.0% speed 2.1x eta 12s",
            ),
            (Running, Some(progress(None, Some(2.1), None)), "job_0123456789abcdef running 00:00:05.03 speed 2.1x"),
            (Running, Some(progress(Some(0.0), None, None)), "job_0123456789abcdef running 0.0%"),
            (
                Running,
                Some(progress(Some(99.95), Some(1.0), Some(0.0))),
                "job_0123456789abcdef running 100.0% speed 1.0x eta 0s",
            ),
            (
                Running,
                Some(progress(Some(f64::NAN), None, Some(f64::INFINITY))),
                "job_0123456789abcdef running 00:00:05.03",
            ),
        ] {
            assert_eq!(progress_line(&job(status, p)), expected);
        }
    }

    #[test]
    fn durations() {
        for (seconds, expected) in [
            (0.0, "0s"),
            (0.2, "1s"),
            (12.0, "12s"),
            (59.5, "1m00s"),
            (60.0, "1m00s"),
            (185.0, "3m05s"),
            (3720.0, "1h02m"),
            (-3.0, "0s"),
        ] {
            assert_eq!(human_duration(seconds), expected, "{seconds}");
        }
    }

    #[test]
    fn plain_lines_on_status_change_new_tenth_or_heartbeat() {
        use JobStatusWire::*;
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let running = |decile| Printed { status: Running, decile, at: t0 };
        let queued = Printed { status: Queued, decile: None, at: t0 };
        for (last, status, decile, now, due) in [
            (None, Queued, None, at(0), true),
            (Some(queued), Queued, None, at(60), false),
            (Some(queued), Running, None, at(0), true),
            (Some(running(Some(4))), Running, Some(4), at(1), false),
            (Some(running(Some(4))), Running, Some(5), at(1), true),
            (Some(running(Some(4))), Running, Some(4), at(10), true),
            (Some(running(None)), Running, None, at(9), false),
            (Some(running(None)), Running, None, at(10), true),
            (Some(running(None)), Running, Some(0), at(1), true),
            (Some(running(Some(9))), Running, None, at(1), false),
        ] {
            assert_eq!(
                line_due(last.as_ref(), status, decile, now),
                due,
                "{last:?} -> {status:?} {decile:?} at {now:?}"
            );
        }
        assert_eq!([decile(0.0), decile(9.99), decile(10.0), decile(100.0), decile(250.0)], [0, 0, 1, 10, 10]);
    }

    #[test]
    fn command_line_joins_words_with_shell_quoting() {
        let args = |words: &[&str]| SubmitArgs {
            wait: false,
            priority: 0,
            timeout: None,
            metadata: Vec::new(),
            json: false,
            command: words.iter().map(|w| (*w).to_owned()).collect(),
            connection: Connection { url: Url::parse(DEFAULT_URL).expect("url"), token: None },
        };
        for (words, expected) in [
            (&["-i in.mp4 out.webm"][..], "-i in.mp4 out.webm"),
            (&["-i", "in.mp4", "out.webm"][..], "-i in.mp4 out.webm"),
            (
                &["-i", "my clip.mp4", "-vf", "scale=640:-2", "out dir/o.webm"][..],
                "-i 'my clip.mp4' -vf 'scale=640:-2' 'out dir/o.webm'",
            ),
            (&["-i", "it's.mp4", "o.mp4"][..], "-i 'it'\\''s.mp4' o.mp4"),
        ] {
            let line = args(words).command_line();
            assert_eq!(line, expected);
            if words.len() > 1 {
                assert_eq!(shell_words::split(&line).expect("splits"), words, "round trip");
            }
        }
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".to_owned(), "b=c".to_owned())));
        assert_eq!(parse_key_value("a="), Ok(("a".to_owned(), String::new())));
        assert!(parse_key_value("a").is_err());
        assert!(parse_key_value("=b").is_err());
    }

    #[test]
    fn base_urls() {
        assert!(parse_base_url("http://127.0.0.1:8000").is_ok());
        assert!(parse_base_url("https://media.example.com/ffmpeg/").is_ok());
        for bad in ["127.0.0.1:8000", "ftp://host/", "mailto:a@b", "localhost"] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_keep_a_path_prefix_and_encode_ids() {
        for (base, expected) in [
            ("http://h:8000", "http://h:8000/jobs/job_1/cancel"),
            ("http://h:8000/", "http://h:8000/jobs/job_1/cancel"),
            ("https://h/ffmpeg", "https://h/ffmpeg/jobs/job_1/cancel"),
            ("https://h/ffmpeg/?x=1#f", "https://h/ffmpeg/jobs/job_1/cancel"),
        ] {
            let client = Client::new(Url::parse(base).expect("url"), None).expect("client");
            assert_eq!(client.endpoint(&["jobs", "job_1", "cancel"]).expect("url").as_str(), expected);
        }
        let client = Client::new(Url::parse("http://h/").expect("url"), None).expect("client");
        assert_eq!(client.endpoint(&["jobs", "../x?y"]).expect("url").as_str(), "http://h/jobs/..%2Fx%3Fy");
        assert_eq!(client.list_url(None, None).expect("url").as_str(), "http://h/jobs");
        assert_eq!(
            client.list_url(Some("queued"), Some(5)).expect("url").as_str(),
            "http://h/jobs?status=queued&limit=5"
        );
    }

    #[test]
    fn next_links() {
        for (header, expected) in [
            ("</jobs?limit=2&cursor=5>; rel=\"next\"", Some("/jobs?limit=2&cursor=5")),
            ("</jobs?cursor=5>; rel=next", Some("/jobs?cursor=5")),
            ("</a>; rel=\"prev\", </b>; rel=\"next last\"", Some("/b")),
            ("</a>; rel=\"prev\"", None),
            ("garbage", None),
            ("", None),
        ] {
            assert_eq!(parse_next_link(header), expected, "{header}");
        }
    }

    #[test]
    fn problems_read_detail_or_body() {
        let check = |status: u16, body: &str, title: &str, detail: &str| {
            let status = StatusCode::from_u16(status).expect("status");
            match problem_from_body(status, body, None) {
                ClientError::Problem { title: t, detail: d, .. } => {
                    assert_eq!((t.as_str(), d.as_str()), (title, detail));
                }
                other => panic!("{other:?}"),
            }
        };
        check(
            422,
            r#"{"type":"/problems/policy-violation","title":"Refused by the security policy","status":422,"detail":"argument 2 `../x.mp4`: path escapes the data directory"}"#,
            "Refused by the security policy",
            "argument 2 `../x.mp4`: path escapes the data directory",
        );
        check(404, r#"{"detail":"Job not found"}"#, "Not Found", "Job not found");
        check(502, "Bad gateway from nginx\n", "Bad Gateway", "Bad gateway from nginx");
        check(500, "", "Internal Server Error", "Internal Server Error");
    }

    #[test]
    fn times_are_shown_to_the_second_in_utc() {
        for (given, shown) in [
            ("2026-11-29T12:03:53.462646466Z", "2026-11-29T12:03:53Z"),
            ("2026-11-29T13:03:53+01:00", "2026-11-29T12:03:53Z"),
            ("yesterday", "yesterday"),
        ] {
            assert_eq!(whole_seconds(given), shown);
        }
    }

    #[test]
    fn status_and_table_text() {
        let mut j = job(JobStatusWire::Failed, Some(progress(Some(12.5), None, None)));
        j.error = Some("missing.mp4: No such file or directory\nsecond line\n".to_owned());
        j.metadata.insert("asset".to_owned(), "a-42".to_owned());
        let text = format_fields(&job_fields(&j));
        assert_eq!(
            text,
            "id        job_0123456789abcdef\n\
             status    failed\n\
             command   -i in.mp4 out.mp4\n\
             progress  12.5% time 00:00:05.03\n\
             metadata  asset=a-42\n\
             error     missing.mp4: No such file or directory\n\
             \x20         second line\n"
        );
        let table = format_table(&[job(JobStatusWire::Running, Some(progress(Some(42.0), None, None)))]);
        assert!(
            table.lines().nth(1).is_some_and(|l| l.starts_with("job_0123456789abcdef  running       42.0%")),
            "{table}"
        );
    }
}

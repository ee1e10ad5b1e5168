//! Configuration: every setting is a command-line flag and an environment variable (clap
//! `long, env`), with defaults that run on a laptop. Parsed once in `main`, passed explicitly.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Settings of `ffmpeg-worker serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Data directory: every input and output path is relative to it, and no job can reach outside it.
    /// Created if missing.
    #[arg(long, env = "DATA_PATH", default_value = "./data")]
    pub data_path: PathBuf,

    /// Address to listen on. Use 0.0.0.0 to accept connections from other machines.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// TCP port to listen on; 0 picks a free port (logged at start-up).
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,

    /// Longest a job may run, in seconds (0: no limit). A job's own `timeout_seconds` is capped by it.
    /// With the files in a bucket it covers one attempt's downloads, ffmpeg and uploads together.
    #[arg(long, env = "FFMPEG_TIMEOUT", default_value_t = 3600)]
    pub ffmpeg_timeout: u64,

    /// The ffmpeg binary: a path, or a name looked up on PATH.
    #[arg(long, env = "FFMPEG_BIN", default_value = "ffmpeg")]
    pub ffmpeg_bin: PathBuf,

    /// The ffprobe binary (for `GET /probe/{path}`): a path, or a name looked up on PATH.
    #[arg(long, env = "FFPROBE_BIN", default_value = "ffprobe")]
    pub ffprobe_bin: PathBuf,

    /// Jobs run at once by this process (an ffmpeg that reported the end of its work and is
    /// only exiting no longer holds its slot). 0 runs none: an API-only node that queues jobs
    /// for other nodes sharing its database.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub concurrency: u16,

    /// Where jobs are stored: `sqlite://PATH` (created if missing, kept outside the data directory),
    /// `postgres://USER:PASSWORD@HOST/DB` (cluster mode: nodes sharing one database), or `memory:`
    /// (nothing survives a restart).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://ffmpeg-worker.db")]
    pub database_url: String,

    /// Starts a job may have: a job interrupted by a crash (or by a lost worker node), or whose
    /// files could not be moved because the storage bucket was unavailable, is re-queued until
    /// it has been started this many times, then it fails ("interrupted", "worker lost", or the
    /// storage's error). An attempt that met a bucket a check then found not answering (an
    /// outage) is not counted: the job waits for the bucket.
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,

    /// Cluster mode (a `postgres://` DATABASE_URL): this node's id, stamped on the jobs it runs;
    /// unique in the cluster. A node restarted with the same id recovers its own leftovers at
    /// start-up; a process started with the id of a live node refuses to start (it watches the
    /// id's heartbeat for at most LEASE_SECONDS). Default: the host name and a random suffix.
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,

    /// Cluster mode: seconds a node's claim on a running job holds without renewal (renewed every
    /// third of it). A node that could not renew for this long stops its jobs' ffmpeg itself, and
    /// any node re-queues the jobs of a lease that expired.
    #[arg(long, env = "LEASE_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease_seconds: u64,

    /// PostgreSQL: how long a database call waits for a connection, connecting included. With
    /// the database down or unreachable, API calls answer 503 `store-unavailable` (and `/ready`
    /// 503) after this long. A call ends within three times this in all: cut off by a network
    /// partition, it answers the same 503 then. At start-up a node waits at least 10 s for the
    /// database.
    #[arg(long, env = "DATABASE_TIMEOUT", default_value = "2s", value_parser = parse_database_timeout)]
    pub database_timeout: Duration,

    /// What this node does: `all` (serves the API and runs jobs), `api` (serves the API, runs
    /// no job: WORKER_CONCURRENCY is ignored) or `worker` (runs jobs; its HTTP listener serves
    /// only /health, /ready and /metrics). Several nodes share jobs through a `postgres://`
    /// DATABASE_URL (or one SQLite file on one machine).
    #[arg(long, env = "NODE_ROLE", default_value = "all")]
    pub role: jobs::nodes::NodeRole,

    /// This node's labels, comma-separated (e.g. `gpu,nvenc`): it claims only jobs whose
    /// `requires` are all among them (a job without `requires` runs anywhere). Each 1 to 64 of
    /// a-z, 0-9, `-`, `_`, `.`; at most 16.
    #[arg(long, env = "NODE_LABELS", default_value = "", value_parser = parse_node_labels)]
    pub node_labels: NodeLabels,

    /// How long a lost node (no heartbeat for LEASE_SECONDS) stays listed by `GET /workers`
    /// before it is removed from the registry.
    #[arg(long, env = "NODE_RETENTION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub node_retention: Duration,

    /// Delete finished job records older than this (e.g. `7d`, `12h`). Off by default.
    #[arg(long, env = "RETENTION", value_parser = humantime::parse_duration)]
    pub retention: Option<Duration>,

    /// On SIGTERM/SIGINT, how long running jobs may continue before they are stopped and re-queued.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Largest file one ffmpeg process may write, in bytes (RLIMIT_FSIZE); a job whose output
    /// grows past it fails. Unlimited by default.
    #[arg(long, env = "MAX_OUTPUT_BYTES")]
    pub max_output_bytes: Option<u64>,

    /// CPU time one ffmpeg process may use, in seconds summed over its threads (RLIMIT_CPU).
    /// Unlimited by default.
    #[arg(long, env = "CPU_LIMIT_SECONDS")]
    pub cpu_limit_seconds: Option<u64>,

    /// Virtual memory one ffmpeg process may reserve, in bytes (RLIMIT_AS): address space, not
    /// resident memory. ffmpeg's libraries alone take about 270 MB, and every thread it starts
    /// reserves its stack (8 MiB by default, the server's own `ulimit -s`), so allow about
    /// threads x 8 MiB beyond what the frames need (a 720p x264 encode with 6 threads needs
    /// about 450 MB). ffmpeg then runs with `MALLOC_ARENA_MAX=1`, so that its threads do not
    /// reserve 64 MiB malloc arenas each. A job past it fails, saying the limit was probably
    /// reached. Unlimited by default.
    #[arg(long, env = "MEMORY_LIMIT_BYTES")]
    pub memory_limit_bytes: Option<u64>,

    /// Where each ffmpeg run gets a private working directory (removed afterwards); side files
    /// ffmpeg writes by default names land there. Default: the system temporary directory.
    #[arg(long, env = "SCRATCH_DIR")]
    pub scratch_dir: Option<PathBuf>,

    /// Options to allow although the default security policy forbids them (e.g. `init_hw_device`
    /// on a machine with a GPU). Comma-separated in the environment. See docs/security.md.
    #[arg(long = "allow-option", env = "ALLOW_OPTIONS", value_delimiter = ',')]
    pub allow_options: Vec<String>,

    /// Options to forbid besides the default policy's.
    #[arg(long = "forbid-option", env = "FORBID_OPTIONS", value_delimiter = ',')]
    pub forbid_options: Vec<String>,

    /// Filters to allow although the default policy forbids them.
    #[arg(long = "allow-filter", env = "ALLOW_FILTERS", value_delimiter = ',')]
    pub allow_filters: Vec<String>,

    /// Filters to forbid besides the default policy's (e.g. `subtitles`, whose file is opened by
    /// content-sniffing demuxers; see docs/security.md).
    #[arg(long = "forbid-filter", env = "FORBID_FILTERS", value_delimiter = ',')]
    pub forbid_filters: Vec<String>,

    /// Input formats (demuxers) to forbid besides the default policy's.
    #[arg(long = "forbid-input-format", env = "FORBID_INPUT_FORMATS", value_delimiter = ',')]
    pub forbid_input_formats: Vec<String>,

    /// API token clients must send as `Authorization: Bearer <token>` (repeat the flag, or give
    /// several comma-separated in API_TOKENS). Without any token the API is open.
    #[arg(long = "api-token", env = "API_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub api_tokens: Vec<String>,

    /// A file with one API token per line (blank lines and `#` comments ignored), added to --api-token.
    #[arg(long, env = "API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_body_bytes: u32,

    /// Largest file accepted by `PUT /files/{path}`, in bytes (default 20 GiB); larger uploads
    /// get 413 and leave nothing behind. Independent of MAX_BODY_BYTES.
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value_t = jobs::files::DEFAULT_MAX_UPLOAD_BYTES)]
    pub max_upload_bytes: u64,

    /// Requests per second allowed per client IP address (bursts of twice that), at most
    /// 1000000000; 0: no limit.
    #[arg(long, env = "RATE_LIMIT", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000_000))]
    pub rate_limit: u32,

    /// Longest time a client may take to send a request's headers; also how long an idle
    /// kept-alive connection stays open waiting for its next request. A client that sends half
    /// its headers is disconnected after it.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Longest pause between two chunks of a request body (not a limit on the whole upload: a
    /// large body sent at a steady pace passes). A body shorter than its `Content-Length` is
    /// cut after it.
    #[arg(long, env = "BODY_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_idle_timeout: Duration,

    /// Most connections served at once; past it a new connection is answered 503 and closed.
    /// Keep it above the number of long-lived streams clients hold and below the open-file
    /// limit (raised to its hard maximum at start-up; a warning says when it does not fit).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// How many nice levels (0-19) below the server's own priority the threads that send
    /// server-sent event streams (`GET /events`, `GET /jobs/{id}/events`) run: below the jobs'
    /// ffmpeg (which keeps the server's), so that sending each progress event to many
    /// subscribers takes CPU when the jobs leave it. 0: the streams are sent by the server's
    /// other threads, at its own priority: the default, since lowered threads wait for a core
    /// (the events' latency grows) while ffmpeg keeps every core busy; see docs/benchmarks.md.
    #[arg(long, env = "STREAM_NICE", default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub stream_nice: i32,

    /// URL told about every job's status changes (`job.started`, `job.completed`, `job.failed`,
    /// `job.cancelled`), for jobs submitted while it is set. Trusted: not held to the address
    /// rules of jobs' own URLs. Needs WEBHOOK_SECRET (start-up stops without it).
    #[arg(long, env = "WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// Key every webhook is signed with (Standard Webhooks): `whsec_` followed by base64 of at
    /// least 24 random bytes (`whsec_$(openssl rand -base64 32)`). Without it no webhook is sent:
    /// a job with a `webhook_url` is refused (422) and WEBHOOK_URL stops start-up.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Wait before a failed webhook delivery is tried again; each further wait doubles (and is
    /// stretched by up to 25 % at random).
    #[arg(long, env = "WEBHOOK_BACKOFF", default_value = "5s", value_parser = humantime::parse_duration)]
    pub webhook_backoff: Duration,

    /// Attempts per webhook delivery, the first included; after the last one fails the delivery
    /// is `failed`. A receiver answering 410 Gone gets no further attempts.
    #[arg(long, env = "WEBHOOK_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub webhook_max_attempts: u32,

    /// Longest wait for a webhook receiver's answer, connecting included; then the attempt
    /// counts as failed.
    #[arg(long, env = "WEBHOOK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub webhook_timeout: Duration,

    /// Most webhook requests in flight at once; at most a quarter of them to one URL, so a
    /// receiver that hangs never holds up the others.
    #[arg(long, env = "WEBHOOK_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub webhook_concurrency: u16,

    /// Let jobs' webhook URLs reach loopback, private, link-local and metadata addresses
    /// (on-premise receivers). Off: such URLs are refused at submit (422) and at delivery.
    #[arg(long, env = "WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,

    /// Where the files API keeps files: unset, the data directory (ffmpeg works on it in place);
    /// `s3://BUCKET[/PREFIX]`, an S3-compatible bucket: the files API reads and writes it, and a
    /// worker downloads each job's inputs into a scratch directory under the data directory, runs
    /// ffmpeg there and uploads the outputs after success. See docs/deployment.md.
    #[arg(long, env = "STORAGE_URL")]
    pub storage_url: Option<String>,

    /// S3 storage: the service's URL for MinIO, Ceph, R2, Garage and other S3-compatible servers
    /// (e.g. `http://127.0.0.1:9000`). Unset: AWS S3 in AWS_REGION.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,

    /// S3 storage: the bucket's region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub aws_region: String,

    /// S3 storage: access key id. Unset (with no secret): the instance's or container's
    /// credentials, as the AWS SDKs find them.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub aws_access_key_id: Option<String>,

    /// S3 storage: secret access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub aws_secret_access_key: Option<String>,

    /// S3 storage: session token of temporary credentials.
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    pub aws_session_token: Option<String>,

    /// S3 storage: allow a plain `http://` endpoint (a server on the same host or network).
    #[arg(long, env = "AWS_ALLOW_HTTP")]
    pub aws_allow_http: bool,

    /// S3 storage: a PEM file of CA certificates to trust for an `https://` endpoint besides
    /// the built-in web roots (a server with a private CA). A certificate neither vouches for
    /// stops the start, naming the endpoint.
    #[arg(long, env = "AWS_CA_BUNDLE")]
    pub aws_ca_bundle: Option<PathBuf>,

    /// S3 storage: address the bucket as `BUCKET.endpoint` (virtual-hosted style) instead of
    /// `endpoint/BUCKET` (path style, what MinIO, Ceph and Garage expect by default).
    #[arg(long, env = "AWS_VIRTUAL_HOSTED_STYLE_REQUEST")]
    pub aws_virtual_hosted_style_request: bool,

    /// S3 storage: how often the bucket's temporary area is swept of what runs that are over
    /// left there (a crash, a lost node, a failed clean-up: outputs not published, backups),
    /// and `DATA_PATH/.ffmpeg-worker-staging/` of the stages no live process uses (left by a
    /// process killed mid-job), besides at start-up; runs still active keep theirs. 0: at
    /// start-up only.
    #[arg(long, env = "TEMP_SWEEP_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub temp_sweep_interval: Duration,

    /// S3 storage: longest wait for a connection to the bucket (TCP and TLS).
    #[arg(long, env = "S3_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub s3_connect_timeout: Duration,

    /// S3 storage: longest wait for the bucket to start answering a request (plus 1 s per
    /// 256 KiB of the request's body), and longest pause while an answer is read; a download
    /// that keeps coming may take any time. A bucket that stops answering makes requests fail
    /// (503 `storage-unavailable`) after about this long.
    #[arg(long, env = "S3_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub s3_request_timeout: Duration,

    /// S3 storage: longest wait for the answer to a server-side copy or to the completion of a
    /// multipart upload, which some servers answer only once the whole object (up to 5 GiB) is
    /// copied or assembled.
    #[arg(long, env = "S3_COPY_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub s3_copy_timeout: Duration,

    /// Log format on stderr.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
}

/// A node's labels (`NODE_LABELS`), checked and sorted ([`jobs::nodes::parse_labels`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLabels(pub Vec<String>);

fn parse_node_labels(list: &str) -> Result<NodeLabels, jobs::nodes::InvalidLabel> {
    jobs::nodes::parse_labels(list).map(NodeLabels)
}

/// A `DATABASE_TIMEOUT`: a duration from 100 ms to 10 minutes.
fn parse_database_timeout(text: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if (Duration::from_millis(100)..=Duration::from_secs(600)).contains(&timeout) {
        Ok(timeout)
    } else {
        Err(format!("{text} is out of range: from 100ms to 10m"))
    }
}

impl ServeConfig {
    /// The S3 settings when `storage_url` names a bucket; `None` for the data directory.
    ///
    /// # Errors
    /// A `storage_url` that is not `s3://BUCKET[/PREFIX]`.
    pub fn s3(&self) -> Result<Option<jobs::storage::S3Config>, jobs::storage::S3ConfigError> {
        let Some(url) = self.storage_url.as_deref().map(str::trim).filter(|url| !url.is_empty()) else {
            return Ok(None);
        };
        let mut s3 = jobs::storage::S3Config::from_url(url)?;
        // White space around a value (an `.env` file's `KEY= value`) is not part of it.
        s3.endpoint = self.aws_endpoint_url.as_deref().map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned);
        s3.region.clone_from(&self.aws_region);
        s3.access_key_id = self.aws_access_key_id.clone().filter(|k| !k.is_empty());
        s3.secret_access_key = self.aws_secret_access_key.clone().filter(|k| !k.is_empty());
        s3.session_token = self.aws_session_token.clone().filter(|k| !k.is_empty());
        s3.allow_http = self.aws_allow_http;
        s3.virtual_hosted_style = self.aws_virtual_hosted_style_request;
        s3.ca_bundle = self.aws_ca_bundle.clone().filter(|p| !p.as_os_str().is_empty());
        for (name, value) in [
            ("S3_CONNECT_TIMEOUT", self.s3_connect_timeout),
            ("S3_REQUEST_TIMEOUT", self.s3_request_timeout),
            ("S3_COPY_TIMEOUT", self.s3_copy_timeout),
        ] {
            if value.is_zero() {
                let problem = format!("{name} must be longer than 0 s");
                return Err(jobs::storage::S3ConfigError { url: url.to_owned(), problem });
            }
        }
        s3.timeouts = jobs::storage::S3Timeouts {
            connect: self.s3_connect_timeout,
            request: self.s3_request_timeout,
            copy: self.s3_copy_timeout,
        };
        Ok(Some(s3))
    }

    /// The limits of the connection loop.
    pub fn connection_limits(&self) -> crate::connections::ConnectionLimits {
        crate::connections::ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            body_idle_timeout: self.body_idle_timeout,
            max_connections: self.max_connections as usize,
        }
    }

    /// How often the bucket's temporary area is swept after start-up; `None` when
    /// `temp_sweep_interval` is 0.
    pub fn temp_sweep_interval(&self) -> Option<Duration> {
        (!self.temp_sweep_interval.is_zero()).then_some(self.temp_sweep_interval)
    }

    /// The server-wide job time limit, `None` when `ffmpeg_timeout` is 0.
    pub fn max_timeout(&self) -> Option<Duration> {
        (self.ffmpeg_timeout > 0).then(|| Duration::from_secs(self.ffmpeg_timeout))
    }
}

impl ServeConfig {
    /// Every configured API token: `--api-token`/`API_TOKENS` plus the lines of `--api-tokens-file`.
    ///
    /// # Errors
    /// The tokens file cannot be read.
    pub fn tokens(&self) -> std::io::Result<Vec<String>> {
        let mut tokens: Vec<String> =
            self.api_tokens.iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
        if let Some(path) = &self.api_tokens_file {
            let text = std::fs::read_to_string(path)?;
            tokens.extend(
                text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned),
            );
        }
        Ok(tokens)
    }
}

/// `docs/configuration.md`: every `serve` flag with its environment variable, default and help,
/// generated from the clap definitions so the document cannot drift from the binary.
pub fn markdown() -> String {
    use clap::Args as _;
    let cmd = ServeConfig::augment_args(clap::Command::new("serve"));
    let mut out = String::from(
        "# Configuration\n\n\
         Generated from the code by `cargo xtask docs`; do not edit by hand.\n\n\
         Every setting of `ffmpeg-worker serve` (the default command) is a command-line flag and an\n\
         environment variable; the flag wins when both are given. Durations take units\n\
         (`30s`, `5m`, `7d`).\n\n\
         | flag | environment | default | meaning |\n|---|---|---|---|\n",
    );
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let env = arg.get_env().map(|e| format!("`{}`", e.to_string_lossy())).unwrap_or_default();
        let default =
            arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect::<Vec<_>>().join(", ");
        let default = if default.is_empty() { "—".to_owned() } else { format!("`{default}`") };
        let help = arg.get_long_help().or_else(|| arg.get_help()).map(ToString::to_string).unwrap_or_default();
        let help = help.replace('\n', " ").replace('|', "\\|");
        out.push_str(&format!("| `--{long}` | {env} | {default} | {help} |\n"));
    }
    let names: Vec<String> =
        ffmpeg_worker_api::CLIENT_SUBCOMMANDS.iter().map(|sub| format!("`{}`", sub.name)).collect();
    out.push_str(&format!(
        "\n## Client settings\n\n\
         The client subcommands ({};\n\
         run by the `ffmpeg-worker-client` program beside the server binary) read `--url` /\n\
         `FFMPEG_WORKER_URL` (default `http://127.0.0.1:8000`) and `--token` /\n\
         `FFMPEG_WORKER_TOKEN`. The server's `RUST_LOG` sets the log filter (default `info`).\n",
        names.join(", ")
    ));
    out
}

impl ServeConfig {
    /// The security policy: the default one, adjusted by the allow/forbid settings.
    pub fn policy(&self) -> ffmpeg_core::policy::Policy {
        let mut policy = ffmpeg_core::policy::Policy::default();
        let names = |v: &[String]| {
            v.iter().map(|n| n.trim().trim_start_matches('-').to_owned()).filter(|n| !n.is_empty()).collect::<Vec<_>>()
        };
        for name in names(&self.allow_options) {
            policy = policy.allow_option(&name);
        }
        for name in names(&self.forbid_options) {
            policy = policy.forbid_option(&name, "forbidden by this server's operator");
        }
        for name in names(&self.allow_filters) {
            policy = policy.allow_filter(&name);
        }
        for name in names(&self.forbid_filters) {
            policy = policy.forbid_filter(&name, "forbidden by this server's operator");
        }
        for name in names(&self.forbid_input_formats) {
            policy = policy.forbid_input_format(&name, "forbidden by this server's operator");
        }
        policy
    }
}

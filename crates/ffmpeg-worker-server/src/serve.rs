//! Start-up and shutdown of the server: data directory, ffmpeg check, store, recovery,
//! workers, listener, and graceful shutdown on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ffmpeg_core::sandbox::Sandbox;
use jobs::location::StoreLocation;
use jobs::nodes::NodeRole;
use jobs::runner::ResourceLimits;
use jobs::{FfmpegConfig, FfmpegRunner, JobStore, Jobs, JobsConfig, Shutdown};

use crate::config::ServeConfig;
use crate::{AppSettings, AppState, RateLimit, app};

/// Why the server could not start. Each message says what to fix; each variant keeps the
/// error that caused it as its `source`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory cannot be created.
    #[error("data directory {}: {source}", path.display())]
    DataDir {
        /// The configured path.
        path: std::path::PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// `STORAGE_URL` is malformed, or its bucket cannot be used: it does not exist, refuses the
    /// credentials, or fails the TLS handshake (one that does not answer does not stop the
    /// start).
    #[error("storage {url}: {problem}")]
    Storage {
        /// The configured URL.
        url: String,
        /// What failed.
        problem: String,
    },
    /// The data directory cannot be used as the sandbox's root (not a directory, not UTF-8, ...).
    #[error("data directory: {0}")]
    Sandbox(#[source] ffmpeg_core::sandbox::SandboxError),
    /// ffmpeg is missing, does not run, is too old, or its capabilities cannot be read.
    #[error("{source}; install ffmpeg >= 5 (Debian: apt-get install ffmpeg) or set FFMPEG_BIN")]
    Ffmpeg {
        /// What the start-up probe found.
        #[source]
        source: jobs::probe::ProbeError,
    },
    /// The database cannot be opened or migrated.
    #[error("database {url}: {source}")]
    OpenDatabase {
        /// The configured URL.
        url: String,
        /// What failed.
        #[source]
        source: jobs::sqlite::OpenError,
    },
    /// Recovering the jobs a previous process left running failed.
    #[error("database {url}: recovering interrupted jobs failed: {source}")]
    Database {
        /// The configured URL.
        url: String,
        /// What failed.
        #[source]
        source: jobs::StoreError,
    },
    /// The database URL names no store this server has.
    #[error("database {url}: unsupported scheme; use sqlite://PATH or memory:")]
    UnsupportedDatabase {
        /// The configured URL.
        url: String,
    },
    /// The API tokens file cannot be read.
    #[error("API tokens file {}: {source}", path.display())]
    TokensFile {
        /// The configured path.
        path: std::path::PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// `WEBHOOK_URL` is set without `WEBHOOK_SECRET`.
    #[error(
        "WEBHOOK_URL is set but WEBHOOK_SECRET is not: webhooks are always signed; set \
         WEBHOOK_SECRET=whsec_<base64 of 24+ random bytes> (e.g. whsec_$(openssl rand -base64 32)) or unset WEBHOOK_URL"
    )]
    WebhookWithoutSecret,
    /// `WEBHOOK_SECRET` is not usable.
    #[error("WEBHOOK_SECRET {0}")]
    WebhookSecret(#[source] crate::webhooks::SecretError),
    /// `WEBHOOK_URL` is not an http(s) URL.
    #[error("WEBHOOK_URL: {0}")]
    WebhookUrl(#[source] jobs::webhook::address::WebhookUrlError),
    /// The webhook HTTP client cannot be built.
    #[error("webhook HTTP client: {0}")]
    WebhookClient(#[source] reqwest::Error),
    /// The rate limit is unusable.
    #[error("configuration: {0}")]
    RateLimit(#[from] crate::InvalidRateLimit),
    /// `NODE_ROLE=worker` with `WORKER_CONCURRENCY=0`: a worker node that could run nothing.
    #[error("NODE_ROLE=worker needs WORKER_CONCURRENCY of at least 1 (a worker node with no slot runs nothing)")]
    WorkerWithoutSlots,
    /// Registering this node in the store's node registry failed.
    #[error("database {url}: registering this node failed: {source}")]
    Register {
        /// The configured URL.
        url: String,
        /// What failed.
        #[source]
        source: jobs::StoreError,
    },
    /// The task of start-up's writes ended abnormally (it panicked).
    #[error("start-up failed: {0}")]
    StartTask(#[source] tokio::task::JoinError),
    /// Another live process uses this node id (`NODE_ID`).
    #[error("{0}")]
    NodeIdInUse(#[source] jobs::nodes::RegisterError),
    /// While running, this node found its id taken over by another start (it could not reach
    /// the database for a whole lease meanwhile); it stopped.
    #[error(
        "node id `{id}` was taken over by another process while this one could not reach the database; \
         this one stopped (its jobs were recovered there)"
    )]
    Superseded {
        /// The node id.
        id: String,
    },
    /// The listener cannot bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// Opens the store named by `url` ([`StoreLocation::parse`]: `sqlite://PATH`, `memory:`, ...).
///
/// # Errors
/// [`StartError::UnsupportedDatabase`] for an unknown scheme, [`StartError::OpenDatabase`] for
/// a database that cannot be opened.
pub async fn open_store(url: &str) -> Result<Arc<dyn JobStore>, StartError> {
    open_store_with(url, jobs::postgres::PgSettings::default()).await
}

/// [`open_store`], with `cluster` for a PostgreSQL store (node id, lease, attempt limit).
///
/// # Errors
/// As [`open_store`].
pub async fn open_store_with(url: &str, cluster: jobs::postgres::PgSettings) -> Result<Arc<dyn JobStore>, StartError> {
    let location = StoreLocation::parse(url).map_err(|source| match source {
        jobs::sqlite::OpenError::InvalidUrl { .. } if !url.starts_with("sqlite:") => {
            StartError::UnsupportedDatabase { url: url.to_owned() }
        }
        source => StartError::OpenDatabase { url: url.to_owned(), source },
    })?;
    location.open_with(cluster).await.map_err(|source| StartError::OpenDatabase { url: url.to_owned(), source })
}

/// The database file `url` names, absolute, for the sandbox to put off limits.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let location = StoreLocation::parse(url).ok()?;
    // Relative to the working directory (as SQLite opens it), not to the data directory.
    std::path::absolute(location.database_file()?).ok()
}

/// Deletes finished job records older than `retention`, at start and then every
/// `retention / 10` (between 1 minute and 1 hour), until `stop` fires.
async fn purge_old_jobs(store: Arc<dyn JobStore>, retention: Duration, stop: tokio_util::sync::CancellationToken) {
    let every = (retention / 10).clamp(Duration::from_secs(60), Duration::from_secs(3600));
    loop {
        // A retention longer than the calendar reaches back keeps everything.
        let Some(cutoff) =
            time::Duration::try_from(retention).ok().and_then(|r| time::OffsetDateTime::now_utc().checked_sub(r))
        else {
            return;
        };
        match store.purge_finished_before(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "retention: deleted old finished jobs"),
            Err(e) => tracing::warn!(error = %e, "retention: purge failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// The webhook settings: `None` without a secret (no webhook is sent; `WEBHOOK_URL` is then
/// an error).
///
/// # Errors
/// [`StartError::WebhookWithoutSecret`], [`StartError::WebhookSecret`],
/// [`StartError::WebhookUrl`].
pub fn webhook_settings(
    config: &ServeConfig,
) -> Result<Option<(jobs::webhook::WebhookConfig, crate::webhooks::WebhookSettings)>, StartError> {
    let server_url = config.webhook_url.as_deref().map(str::trim).filter(|u| !u.is_empty());
    let secret = config.webhook_secret.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let Some(secret) = secret else {
        return if server_url.is_some() { Err(StartError::WebhookWithoutSecret) } else { Ok(None) };
    };
    let secret = crate::webhooks::Secret::parse(secret).map_err(StartError::WebhookSecret)?;
    let server_url = server_url
        .map(|u| jobs::webhook::address::parse(u).map(|u| u.to_string()))
        .transpose()
        .map_err(StartError::WebhookUrl)?;
    let jobs = jobs::webhook::WebhookConfig { server_url, allow_private: config.webhook_allow_private };
    let settings = crate::webhooks::WebhookSettings {
        secret,
        retry: jobs::webhook::RetryPolicy {
            first_delay: config.webhook_backoff,
            max_attempts: config.webhook_max_attempts,
        },
        timeout: config.webhook_timeout,
        concurrency: usize::from(config.webhook_concurrency),
        allow_private: config.webhook_allow_private,
    };
    Ok(Some((jobs, settings)))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Runs the server until SIGTERM/SIGINT, then shuts down gracefully: new submissions get 503,
/// workers stop claiming, running jobs get `shutdown_grace` to finish and are then stopped and
/// re-queued.
///
/// # Errors
/// [`StartError`] when start-up fails.
pub async fn run(config: ServeConfig) -> Result<(), StartError> {
    // The metrics recorder first: what the background tasks started below count (webhook
    // attempts, jobs recovered) before the router is built would otherwise be lost.
    let _ = crate::telemetry::handle();
    std::fs::create_dir_all(&config.data_path)
        .map_err(|source| StartError::DataDir { path: config.data_path.clone(), source })?;
    let mut sandbox = Sandbox::new(&config.data_path).map_err(StartError::Sandbox)?.with_policy(config.policy());
    if let Some(db) = sqlite_file(&config.database_url) {
        // The database may sit inside the data directory if the operator put it there: no job
        // may read or overwrite it, its write-ahead log or its shared-memory file.
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            sandbox.deny(std::path::PathBuf::from(name));
        }
    }
    // The local storage's temporary upload names, in any directory: the start-up sweep removes
    // them, so a job's input or output must never be one (tester J2).
    sandbox.deny_names_starting_with(jobs::storage::UPLOAD_TEMP_PREFIX);
    // The bucket's check at start, when it did not answer (the node starts degraded).
    let mut storage_down = None;
    let remote_storage = match config.s3() {
        Ok(None) => None,
        Ok(Some(s3)) => {
            let url = s3.url();
            let storage_error = |problem: String| StartError::Storage { url: url.clone(), problem };
            let storage = jobs::storage::S3Storage::new(&s3).map_err(|e| storage_error(e.problem))?;
            // A bucket that does not answer now may later (tester finding I3: a node restarted
            // during an outage used to exit, the jobs API gone with it): the node starts,
            // degraded, as a running node rides an outage out. What waiting cannot fix (no
            // such bucket, credentials refused, an untrusted certificate) stops the start.
            match storage.check().await {
                Ok(()) => {}
                Err(e) if e.may_pass() => {
                    tracing::warn!(storage = %url, error = %e,
                                   "the bucket does not answer; starting anyway: /ready answers 503 and jobs that \
                                    need the bucket wait in the queue until it answers");
                    storage_down = Some(e);
                }
                Err(e) => return Err(storage_error(e.to_string())),
            }
            // Jobs' files are staged in the data directory; no job may name the staging area.
            sandbox.deny(sandbox.root().join(jobs::staging::STAGING_DIR));
            tracing::info!(storage = %url, "files live in the bucket; jobs' files are staged in the data directory");
            Some(Arc::new(storage) as Arc<dyn jobs::storage::Storage>)
        }
        Err(e) => {
            return Err(StartError::Storage {
                url: config.storage_url.clone().unwrap_or_default(),
                problem: e.problem,
            });
        }
    };
    let tokens = config.tokens().map_err(|source| StartError::TokensFile {
        path: config.api_tokens_file.clone().unwrap_or_default(),
        source,
    })?;
    let rate_limit = match config.rate_limit {
        0 => None,
        n => Some(RateLimit::per_second(n)?),
    };
    let webhooks = webhook_settings(&config)?;
    // Once: the version and names are cached for submissions and for `/ready`.
    let capabilities =
        jobs::probe::probe_capabilities(&config.ffmpeg_bin).await.map_err(|source| StartError::Ffmpeg { source })?;
    let version = format!("ffmpeg version {}", capabilities.version().unwrap_or("unknown"));
    let program = jobs::runner::program_path(&config.ffmpeg_bin);
    tracing::info!(ffmpeg = %version, path = %program.display(), data = %sandbox.root().display(), "starting");

    let role = config.role;
    if role == NodeRole::Worker && config.concurrency == 0 {
        return Err(StartError::WorkerWithoutSlots);
    }
    // An API node runs no job, so it has no slot and no leftovers of its own.
    let slots = if role.runs_jobs() { config.concurrency } else { 0 };
    let node_id = config.node_id.clone().unwrap_or_else(jobs::postgres::default_node_id);
    let cluster = jobs::postgres::PgSettings {
        node_id: node_id.clone(),
        lease: Duration::from_secs(config.lease_seconds),
        max_attempts: config.max_attempts,
        acquire_timeout: config.database_timeout,
        ..jobs::postgres::PgSettings::default()
    };
    let store = open_store_with(&config.database_url, cluster).await?;
    let scratch_root = config.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
    let (data, scratch) = (sandbox.root().to_owned(), scratch_root.clone());
    // An API node runs no ffmpeg: one found under the data directory is a worker's on this
    // machine, not a leftover of its own.
    let orphans = if role.runs_jobs() {
        tokio::task::spawn_blocking(move || jobs::orphans::stop_orphans(&data, &scratch)).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    for orphan in orphans {
        tracing::warn!(pid = orphan.pid, command = %orphan.command_line, "stopped an ffmpeg left running by a previous crash");
    }
    // Temporary upload files a crash left (live uploads of other nodes sharing the data
    // directory hold a lock on theirs): in the background, the data directory may be large.
    let uploads = jobs::storage::LocalStorage::new(std::sync::Arc::new(sandbox.clone()));
    tokio::task::spawn_blocking(move || {
        for path in uploads.remove_stale_uploads() {
            tracing::warn!(path, "removed a temporary upload file left by a previous crash");
        }
    });

    let mut ffmpeg = FfmpegConfig::new(&config.ffmpeg_bin, sandbox.root());
    ffmpeg.limits = ResourceLimits {
        max_file_bytes: config.max_output_bytes,
        cpu_seconds: config.cpu_limit_seconds,
        address_space_bytes: config.memory_limit_bytes,
    };
    ffmpeg.scratch_root = scratch_root;
    let runner = FfmpegRunner::new(ffmpeg);
    let capabilities = Arc::new(capabilities);
    let node = jobs::nodes::NodeSettings {
        registration: jobs::nodes::NodeRegistration {
            id: node_id,
            role,
            labels: config.node_labels.0.clone(),
            host: jobs::nodes::host_name(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ffmpeg_version: capabilities.version().map(str::to_owned),
            capabilities: Some(Arc::clone(&capabilities)),
            slots: u32::from(slots),
            started_at: time::OffsetDateTime::now_utc(),
            process: jobs::nodes::this_process(),
        },
        lost_after: Duration::from_secs(config.lease_seconds),
        retention: config.node_retention,
    };
    let jobs_config = JobsConfig {
        concurrency: usize::from(slots),
        max_timeout: config.max_timeout(),
        capabilities: Some(capabilities),
        node: Some(node),
        webhooks: webhooks.as_ref().map(|(jobs, _)| jobs.clone()),
        media_probe: jobs::media::MediaProbeConfig {
            binary: config.ffprobe_bin.clone(),
            ..jobs::media::MediaProbeConfig::default()
        },
        remote_storage,
        max_attempts: config.max_attempts,
        ..JobsConfig::default()
    };
    let jobs = Jobs::new(store, Arc::new(runner), sandbox, jobs_config);
    if let Some(e) = storage_down {
        jobs.storage_down_at_start(e);
    }
    // Registered first, heartbeats at once, then recovery, then the workers. On a full disk
    // these writes wait for space in the background while the node serves reads (tester
    // finding K1); any other failure stops the start.
    let draining = tokio_util::sync::CancellationToken::new();
    let stop_node = tokio_util::sync::CancellationToken::new();
    let stop_waiting = tokio_util::sync::CancellationToken::new();
    let waiting_for_space = Arc::new(tokio::sync::Notify::new());
    let mut start_writes = tokio::spawn(start_writes(
        Arc::clone(&jobs),
        StartWrites {
            url: config.database_url.clone(),
            recover: role.runs_jobs().then_some(config.max_attempts),
            draining: draining.clone(),
            stop_node: stop_node.clone(),
            stop_waiting: stop_waiting.clone(),
            waiting_for_space: Arc::clone(&waiting_for_space),
        },
    ));
    let mut node_task = None;
    let mut recovered = false;
    let mut writes_pending = tokio::select! {
        started = &mut start_writes => {
            let started = started.map_err(StartError::StartTask)??;
            (node_task, recovered) = (started.node_task, started.recovered);
            false
        }
        () = waiting_for_space.notified() => true,
    };
    // What runs and uploads that are over (a crash, a lost node) left in the bucket's
    // temporary area: in the background (the area may be large), now and then periodically.
    let stop_sweeps = tokio_util::sync::CancellationToken::new();
    {
        let (jobs, every, stop) = (Arc::clone(&jobs), config.temp_sweep_interval(), stop_sweeps.clone());
        tokio::spawn(async move { jobs.sweep_temp_area_every(every, stop).await });
    }
    // The stages no live run uses (what a crash of this node or of another sharing the data
    // directory left): now, in the background, and as often as the temporary area.
    {
        let (jobs, every, stop) = (Arc::clone(&jobs), config.temp_sweep_interval(), stop_sweeps.clone());
        tokio::spawn(async move { jobs.sweep_stages_every(every, stop).await });
    }
    let shutdown = Shutdown::default();
    let stop_webhooks = tokio_util::sync::CancellationToken::new();
    if let Some((_, settings)) = webhooks {
        let wake = Arc::new(tokio::sync::Notify::new());
        let dispatcher = crate::webhooks::Dispatcher::new(Arc::clone(jobs.store()), settings, Arc::clone(&wake))
            .map_err(StartError::WebhookClient)?;
        tokio::spawn(dispatcher.run(stop_webhooks.clone()));
        // A status change committed deliveries (its outbox): wake the dispatcher at once rather
        // than at its next poll.
        let mut events = jobs.events().subscribe_all();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(published) if matches!(published.event(), jobs::events::Event::Status(_)) => {
                        wake.notify_one();
                    }
                    Err(RecvError::Lagged(_)) => wake.notify_one(),
                    Ok(_) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }
    // Workers only once interrupted jobs were recovered: a claim before it would be taken
    // for a leftover and put back in the queue.
    let mut workers = if recovered || (!writes_pending && !role.runs_jobs()) {
        jobs.spawn_workers(&shutdown)
    } else {
        tokio::task::JoinSet::new()
    };
    if let Some(retention) = config.retention {
        tokio::spawn(purge_old_jobs(Arc::clone(jobs.store()), retention, shutdown.stop_claiming.clone()));
    }
    let settings = AppSettings {
        ffmpeg_version: Some(version),
        api_tokens: tokens,
        max_body_bytes: config.max_body_bytes as usize,
        max_upload_bytes: config.max_upload_bytes,
        rate_limit,
        role,
        database_file: sqlite_file(&config.database_url),
    };
    let state = AppState::with_settings(Arc::clone(&jobs), settings);

    let addr = SocketAddr::new(config.host, config.port);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
    tracing::info!(
        address = %format!("http://{local}"), docs = %format!("http://{local}/docs"), role = %role,
        labels = %config.node_labels.0.join(","), "listening"
    );

    let limits = config.connection_limits();
    crate::connections::raise_file_limit(limits.max_connections);
    let stop_http = tokio_util::sync::CancellationToken::new();
    // Streams on threads of their own, below the jobs' priority (`STREAM_NICE`).
    let streams = match config.stream_nice {
        0 => None,
        nice => {
            let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
            match crate::connections::StreamThreads::start(threads, nice) {
                Ok(streams) => Some(Arc::new(streams)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the stream threads: streams are sent by the others");
                    None
                }
            }
        }
    };
    let server = tokio::spawn(crate::connections::serve_on(
        listener,
        app(state.clone()),
        limits,
        streams.clone(),
        stop_http.clone(),
    ));

    // Until SIGTERM/SIGINT, or until another start takes this node id over (this process was
    // cut off for a lease and its jobs were recovered there): then it stops the same way. A
    // start waiting for space finishes meanwhile, or finds a reason to stop.
    let mut node_ended = false;
    let mut stopped_by: Option<StartError> = None;
    let superseded = loop {
        let node_life = async {
            match node_task.as_mut() {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown_signal() => break false,
            life = node_life => {
                node_ended = true;
                if let Ok(jobs::nodes::NodeLife::Superseded) = life {
                    break true;
                }
                tracing::error!(?life, "this node's registry task ended: the registry shows it lost");
                shutdown_signal().await;
                break false;
            }
            started = &mut start_writes, if writes_pending => {
                writes_pending = false;
                match started.map_err(StartError::StartTask).and_then(|s| s) {
                    Ok(started) => {
                        node_task = started.node_task;
                        if started.recovered || !role.runs_jobs() {
                            workers = jobs.spawn_workers(&shutdown);
                        }
                        tracing::info!("the disk has room again: this node registered and runs jobs");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "stopping: the start that waited for space failed");
                        stopped_by = Some(e);
                        break false;
                    }
                }
            }
        }
    };
    // A start still waiting for space gives up; what it began (the heartbeat task) ends below.
    stop_waiting.cancel();
    if writes_pending && let Ok(Ok(started)) = start_writes.await {
        node_task = started.node_task;
    }
    tracing::info!(grace = ?config.shutdown_grace, "shutting down: no new jobs; waiting for running jobs");
    state.stop_accepting();
    // The registry shows this node draining (a heartbeat goes out at once) until it stops.
    draining.cancel();
    shutdown.stop_claiming.cancel();
    let drained =
        tokio::time::timeout(config.shutdown_grace, async { while workers.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("grace period over: stopping running jobs and putting them back in the queue");
        shutdown.abort_running.cancel();
        while workers.join_next().await.is_some() {}
    }
    // Every job ended here or went back to the queue: this node leaves the registry.
    stop_node.cancel();
    if !node_ended && let Some(task) = node_task {
        let _ = task.await;
    }
    state.close_streams();
    stop_http.cancel();
    // Deliveries still in flight are sent again after the next start (at least once).
    stop_webhooks.cancel();
    stop_sweeps.cancel();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP server task failed"),
        Err(_) => tracing::warn!("HTTP connections did not close in time"),
        Ok(Ok(())) => {}
    }
    drop(streams);
    tracing::info!("stopped");
    if superseded {
        return Err(StartError::Superseded { id: node_id_of(&jobs) });
    }
    stopped_by.map_or(Ok(()), Err)
}

/// What [`start_writes`] needs besides the service.
struct StartWrites {
    /// `DATABASE_URL`, for errors.
    url: String,
    /// Recover interrupted jobs, with this attempt limit (nodes that run jobs).
    recover: Option<u32>,
    /// This node's registry task: draining, then stop.
    draining: tokio_util::sync::CancellationToken,
    stop_node: tokio_util::sync::CancellationToken,
    /// Stop waiting for space (shutdown).
    stop_waiting: tokio_util::sync::CancellationToken,
    /// Notified once when a write found the disk full and the start waits for space.
    waiting_for_space: Arc<tokio::sync::Notify>,
}

/// What [`start_writes`] did.
struct StartedWrites {
    /// This node's registry task (heartbeats), once registered; `None` when stopped before.
    node_task: Option<tokio::task::JoinHandle<jobs::nodes::NodeLife>>,
    /// Interrupted jobs were recovered (a node that runs jobs may start its workers).
    recovered: bool,
}

/// How often a start waiting for space tries its write again.
const SPACE_RETRY: Duration = Duration::from_secs(1);

/// Start-up's writes, in order: this node's registration and its heartbeat task at once, then
/// (nodes that run jobs) the recovery of jobs a previous process left running. A write that
/// finds the store's disk full ([`jobs::StoreError::DiskFull`]) notifies `waiting_for_space`
/// once (the caller then serves reads meanwhile) and is tried again every [`SPACE_RETRY`]
/// until it succeeds or `stop_waiting` fires.
///
/// # Errors
/// [`StartError::NodeIdInUse`], [`StartError::Register`], [`StartError::Database`]: any
/// other failure.
async fn start_writes(jobs: Arc<Jobs>, writes: StartWrites) -> Result<StartedWrites, StartError> {
    let mut said = false;
    let mut wait = async |e: &jobs::StoreError| {
        if !said {
            said = true;
            tracing::warn!(
                error = %e,
                "the disk holding the job store is full: this node serves reads, answers changes with 507 and \
                 /ready with 503, and registers, recovers interrupted jobs and starts its workers once space is freed"
            );
            writes.waiting_for_space.notify_one();
        }
        writes.stop_waiting.run_until_cancelled(tokio::time::sleep(SPACE_RETRY)).await.is_some()
    };
    loop {
        match jobs.register_node().await {
            Ok(()) => break,
            Err(jobs::nodes::RegisterError::Store(e)) if e.is_disk_full() => {
                if !wait(&e).await {
                    return Ok(StartedWrites { node_task: None, recovered: false });
                }
            }
            Err(e @ jobs::nodes::RegisterError::InUse { .. }) => return Err(StartError::NodeIdInUse(e)),
            Err(jobs::nodes::RegisterError::Store(source)) => {
                return Err(StartError::Register { url: writes.url, source });
            }
        }
    }
    let node_task = {
        let (jobs, draining, stop) = (Arc::clone(&jobs), writes.draining.clone(), writes.stop_node.clone());
        Some(tokio::spawn(async move { jobs.run_node(draining, stop).await }))
    };
    // An API node has no leftovers; on a store without node ids (SQLite) recovering would take
    // the jobs of a worker node sharing it.
    let Some(max_attempts) = writes.recover else { return Ok(StartedWrites { node_task, recovered: false }) };
    loop {
        match jobs.recover(max_attempts).await {
            Ok(recovery) => {
                if !recovery.requeued.is_empty() || !recovery.failed.is_empty() || !recovery.cancelled.is_empty() {
                    tracing::warn!(
                        requeued = recovery.requeued.len(),
                        failed = recovery.failed.len(),
                        cancelled = recovery.cancelled.len(),
                        "recovered jobs interrupted by a previous run"
                    );
                }
                return Ok(StartedWrites { node_task, recovered: true });
            }
            Err(e) if e.is_disk_full() => {
                if !wait(&e).await {
                    return Ok(StartedWrites { node_task, recovered: false });
                }
            }
            Err(source) => return Err(StartError::Database { url: writes.url, source }),
        }
    }
}

/// This node's id in the registry.
fn node_id_of(jobs: &Jobs) -> String {
    jobs.directory().map(|d| d.settings().registration.id.clone()).unwrap_or_default()
}

//! Test support: the real server (its library: router, job service, ffmpeg runner, workers) on
//! 127.0.0.1:0 in a thread of its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ffmpeg_core::sandbox::Sandbox;
use ffmpeg_worker_server::{AppSettings, AppState, app};
use jobs::{FfmpegConfig, FfmpegRunner, Jobs, JobsConfig, MemoryStore, Shutdown};

/// How the test server is set up.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Worker slots; 0 leaves every job queued.
    pub concurrency: usize,
    /// Accepted API tokens; empty: no authentication.
    pub tokens: Vec<String>,
}

/// A running server with its own data directory (an in-memory store); stopped on drop, its
/// running jobs stopped first.
pub struct Server {
    pub base: String,
    pub data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// One worker slot, no authentication.
    pub fn start() -> Server {
        Server::start_with(Options { concurrency: 1, ..Options::default() })
    }

    pub fn start_with(options: Options) -> Server {
        let data = tempfile::tempdir().unwrap();
        let root = data.path().to_owned();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(serve(root, options, addr_tx, stopped));
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(30)).expect("the test server starts");
        Server { base: format!("http://{addr}"), data, stop: Some(stop), thread: Some(thread) }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.data.path().join(name)
    }
}

async fn serve(
    root: PathBuf,
    options: Options,
    addr: std::sync::mpsc::Sender<SocketAddr>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let sandbox = Sandbox::new(&root).unwrap();
    let runner = FfmpegRunner::new(FfmpegConfig::new("ffmpeg", &root));
    // A registry of its own (this one node), as the real server has.
    let node = jobs::nodes::NodeSettings {
        registration: jobs::nodes::NodeRegistration {
            id: "client-test".to_owned(),
            role: jobs::nodes::NodeRole::All,
            labels: Vec::new(),
            host: "localhost".to_owned(),
            version: "test".to_owned(),
            ffmpeg_version: None,
            capabilities: None,
            slots: u32::try_from(options.concurrency).unwrap(),
            started_at: time::OffsetDateTime::now_utc(),
            process: None,
        },
        lost_after: Duration::from_secs(3600),
        retention: Duration::from_secs(3600),
    };
    let config = JobsConfig { concurrency: options.concurrency, node: Some(node), ..JobsConfig::default() };
    let jobs = Jobs::new(Arc::new(MemoryStore::new()), Arc::new(runner), sandbox, config);
    jobs.register_node().await.unwrap();
    let shutdown = Shutdown::default();
    let mut workers = jobs.spawn_workers(&shutdown);
    let settings = AppSettings { api_tokens: options.tokens, ..AppSettings::default() };
    let router = app(AppState::with_settings(jobs, settings));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    addr.send(listener.local_addr().unwrap()).unwrap();
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let http = axum::serve(listener, service).with_graceful_shutdown(async {
        let _ = stopped.await;
    });
    let _ = http.await;
    shutdown.stop_claiming.cancel();
    shutdown.abort_running.cancel();
    while workers.join_next().await.is_some() {}
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

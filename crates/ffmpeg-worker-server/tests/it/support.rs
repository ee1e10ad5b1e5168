//! Test support: media generation with ffmpeg's lavfi sources, and the real binary on port 0
//! on either store ([`Db`]: a SQLite file, or a fresh database on the test process's own
//! PostgreSQL server from `pg-harness`). [`on_each_store!`] runs one test body on both.
//! [`ConnectionLoop`]: the connection loop in-process over an app on the memory store.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::media::{ffprobe_duration, make_clip};

/// Which store a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

/// The database of a test server; it outlives the server ([`Server::kill`] hands it back) so
/// that a restart finds the same jobs.
#[derive(Debug)]
pub enum Db {
    /// `jobs.db` in its own temporary directory.
    Sqlite(tempfile::TempDir),
    /// A fresh database on this test process's PostgreSQL server, and the node id the server
    /// runs as: a restart with the same id recovers its own leftovers at once (another id would
    /// wait for their leases to expire).
    Postgres { url: String, node_id: String },
}

impl Db {
    /// A new, empty database of `store`'s kind.
    pub fn new(store: Store) -> Db {
        match store {
            Store::Sqlite => Db::Sqlite(tempfile::tempdir().unwrap()),
            Store::Postgres => Db::postgres(),
        }
    }

    /// A fresh PostgreSQL database (starts the test process's server on first use).
    pub fn postgres() -> Db {
        static NODES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NODES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Db::Postgres { url: pg_harness::shared().fresh_database(), node_id: format!("test-node-{n}") }
    }

    /// The `DATABASE_URL`.
    pub fn url(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!("sqlite://{}", dir.path().join("jobs.db").display()),
            Db::Postgres { url, .. } => url.clone(),
        }
    }

    /// The same PostgreSQL database for another node, `node_id` (several nodes on one
    /// database: cluster mode).
    pub fn node(&self, node_id: &str) -> Db {
        match self {
            Db::Postgres { url, .. } => Db::Postgres { url: url.clone(), node_id: node_id.to_owned() },
            Db::Sqlite(_) => panic!("cluster nodes share a PostgreSQL database"),
        }
    }

    /// The server's arguments naming this database (and for PostgreSQL, the node id).
    fn args(&self) -> Vec<String> {
        let mut args = vec!["--database-url".to_owned(), self.url()];
        if let Db::Postgres { node_id, .. } = self {
            args.extend(["--node-id".to_owned(), node_id.clone()]);
        }
        args
    }
}

/// Runs the async test body `NAME(store: Store)` once on each store, as the two tests
/// `NAME::sqlite` and `NAME::postgres` (a module beside the function of the same name):
///
/// ```ignore
/// /// Doc of the test.
/// async fn jobs_complete(store: Store) {
///     let server = Server::start_on(store, &[]);
/// }
/// on_each_store!(jobs_complete);
/// ```
macro_rules! on_each_store {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Store::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::support::Store::Postgres).await
            }
        }
    };
}
pub(crate) use on_each_store;

/// A server's data directory: its own temporary directory, or one that several nodes of a
/// cluster share (owned by the test).
#[derive(Debug)]
pub enum DataDir {
    Own(tempfile::TempDir),
    Shared(std::path::PathBuf),
}

impl DataDir {
    pub fn path(&self) -> &Path {
        match self {
            DataDir::Own(dir) => dir.path(),
            DataDir::Shared(path) => path,
        }
    }
}

impl From<tempfile::TempDir> for DataDir {
    fn from(dir: tempfile::TempDir) -> DataDir {
        DataDir::Own(dir)
    }
}

/// A running `ffmpeg-worker` on a free port with its own data directory; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub data: DataDir,
    pub db: Db,
    /// Every line the server wrote to stderr so far.
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the binary with `extra` arguments on a fresh data dir and SQLite database.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_on(Store::Sqlite, extra)
    }

    /// Starts the binary with `extra` arguments on a fresh data dir and a fresh database of
    /// `store`'s kind. Blocks while the PostgreSQL server starts, on first use (so a PostgreSQL
    /// test runs on the multi-threaded runtime, as [`on_each_store!`] does).
    pub fn start_on(store: Store, extra: &[&str]) -> Server {
        let db = match store {
            Store::Sqlite => Db::new(store),
            Store::Postgres => tokio::task::block_in_place(|| Db::new(store)),
        };
        Server::start_in(tempfile::tempdir().unwrap(), db, extra)
    }

    /// Starts the binary on an existing data directory and database (e.g. to restart).
    pub fn start_in(data: impl Into<DataDir>, db: Db, extra: &[&str]) -> Server {
        Server::start_wrapped(&[], data, db, extra)
    }

    /// Starts the binary through `wrapper` (e.g. `["prlimit", "--nofile=256:256", "--"]`).
    pub fn start_wrapped(wrapper: &[&str], data: impl Into<DataDir>, db: Db, extra: &[&str]) -> Server {
        Server::spawn(wrapper, data.into(), db, extra, "info")
    }

    /// Starts the binary with the log filter `rust_log` (e.g. `debug`).
    pub fn start_logging(extra: &[&str], rust_log: &str) -> Server {
        Server::spawn(&[], tempfile::tempdir().unwrap().into(), Db::new(Store::Sqlite), extra, rust_log)
    }

    /// Starts another node on this server's data directory and database, as node `node_id`
    /// (cluster mode, or several processes on one SQLite file). This server keeps owning both:
    /// the new one's `db` is an unused placeholder.
    pub fn join(&self, node_id: &str, extra: &[&str]) -> Server {
        let db = vec!["--database-url".to_owned(), self.db.url(), "--node-id".to_owned(), node_id.to_owned()];
        let (child, base, stderr) = Server::launch(&[], self.data.path(), &db, extra, "info");
        let data = DataDir::Shared(self.data.path().to_owned());
        Server { child, base, data, db: Db::Sqlite(tempfile::tempdir().unwrap()), stderr }
    }

    fn spawn(wrapper: &[&str], data: DataDir, db: Db, extra: &[&str], rust_log: &str) -> Server {
        let (child, base, stderr) = Server::launch(wrapper, data.path(), &db.args(), extra, rust_log);
        Server { child, base, data, db, stderr }
    }

    /// Starts the binary on `data` with the database arguments `db`; returns it, its base URL
    /// and its stderr lines.
    fn launch(
        wrapper: &[&str],
        data: &Path,
        db: &[String],
        extra: &[&str],
        rust_log: &str,
    ) -> (Child, String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let binary = env!("CARGO_BIN_EXE_ffmpeg-worker");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .args(["--port", "0", "--host", "127.0.0.1"])
            .arg("--data-path")
            .arg(data)
            .args(db)
            .args(extra)
            .env("RUST_LOG", rust_log)
            .env("LOG_FORMAT", "pretty")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(i) = line.find("http://127.0.0.1:") {
                    let addr: String = line[i..].chars().take_while(|c| !c.is_whitespace() && *c != '"').collect();
                    let _ = tx.send(addr);
                    sent = true;
                }
                keep.lock().unwrap().push(line);
            }
        });
        let base = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("server did not report its address; stderr: {:?}", lines.lock().unwrap())
        });
        (child, base, lines)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server (SIGKILL) and hands back its data directory and database.
    pub fn kill(mut self) -> (DataDir, Db) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data = std::mem::replace(&mut self.data, DataDir::Shared(std::path::PathBuf::new()));
        let db = std::mem::replace(&mut self.db, Db::Sqlite(tempfile::tempdir().unwrap()));
        (data, db)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

pub async fn submit(client: &reqwest::Client, server: &Server, command: &str) -> (u16, Value) {
    let resp = client.post(server.url("/jobs")).json(&serde_json::json!({ "command": command })).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Polls `GET /jobs/{id}` until the job is finished or `deadline` passes; returns every
/// snapshot seen (the last one final).
pub async fn wait_finished(client: &reqwest::Client, server: &Server, id: &str, deadline: Duration) -> Vec<Value> {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let job: Value = client.get(server.url(&format!("/jobs/{id}"))).send().await.unwrap().json().await.unwrap();
        let done = matches!(job["status"].as_str(), Some("completed" | "failed" | "cancelled"));
        seen.push(job);
        if done {
            return seen;
        }
        assert!(start.elapsed() < deadline, "job {id} not finished after {deadline:?}: {:?}", seen.last());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// What a [`DbProxy`] does with the traffic between the nodes and the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Forwards every byte both ways.
    Up,
    /// The database is down: its port refuses connections, and open connections are closed.
    Down,
    /// A network partition: connections stay open and new ones are accepted, but no byte
    /// passes either way until the link is up again.
    Cut,
}

/// A TCP proxy between the nodes under test and the test PostgreSQL server, on its own port
/// on 127.0.0.1, to take the database away from them ([`Link`]) and give it back. Its tasks
/// run on the test's runtime and end with it.
pub struct DbProxy {
    port: u16,
    link: tokio::sync::watch::Sender<Link>,
}

impl DbProxy {
    /// A proxy in front of the database of `url` (a `postgres://` URL with a host and port).
    pub async fn start(url: &str) -> DbProxy {
        let upstream = url.split('@').nth(1).and_then(|rest| rest.split('/').next()).unwrap().to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (link, _) = tokio::sync::watch::channel(Link::Up);
        tokio::spawn(Self::accept(listener, port, upstream, link.subscribe()));
        DbProxy { port, link }
    }

    /// `url` with the proxy in place of the database's address.
    pub fn url(&self, url: &str) -> String {
        let (user, rest) = url.split_once('@').unwrap();
        let (_, path) = rest.split_once('/').unwrap();
        format!("{user}@127.0.0.1:{}/{path}", self.port)
    }

    /// Sets the link.
    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }

    async fn accept(
        listener: tokio::net::TcpListener,
        port: u16,
        upstream: String,
        mut link: tokio::sync::watch::Receiver<Link>,
    ) {
        let mut listener = Some(listener);
        loop {
            let now = *link.borrow_and_update();
            if now == Link::Down {
                // Closed: connecting is refused.
                listener = None;
            } else if listener.is_none() {
                // Up again on the same port (the nodes' URL names it).
                match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(l) => listener = Some(l),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
            let Some(open) = listener.as_ref() else {
                if link.changed().await.is_err() {
                    return;
                }
                continue;
            };
            tokio::select! {
                accepted = open.accept() => {
                    let Ok((client, _)) = accepted else { continue };
                    let (upstream, link) = (upstream.clone(), link.clone());
                    tokio::spawn(async move {
                        if let Ok(server) = tokio::net::TcpStream::connect(&upstream).await {
                            Self::pipe(client, server, link).await;
                        }
                    });
                }
                changed = link.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Forwards between `a` and `b` while the link is up, holds while it is cut, and closes
    /// both when it goes down.
    async fn pipe(
        mut a: tokio::net::TcpStream,
        mut b: tokio::net::TcpStream,
        mut link: tokio::sync::watch::Receiver<Link>,
    ) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (mut a_read, mut a_write) = a.split();
        let (mut b_read, mut b_write) = b.split();
        let (mut from_a, mut from_b) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
        loop {
            let now = *link.borrow_and_update();
            match now {
                Link::Down => return,
                Link::Cut => {
                    if link.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                Link::Up => {}
            }
            tokio::select! {
                read = a_read.read(&mut from_a) => match read {
                    Ok(n) if n > 0 => if b_write.write_all(&from_a[..n]).await.is_err() { return },
                    _ => return,
                },
                read = b_read.read(&mut from_b) => match read {
                    Ok(n) if n > 0 => if a_write.write_all(&from_b[..n]).await.is_err() { return },
                    _ => return,
                },
                changed = link.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// The connection loop (`connections::serve`) in-process on 127.0.0.1:0 over a fresh app on
/// the memory store whose jobs never run (no workers: a test publishes their progress and ends
/// them itself). Stops when dropped.
pub struct ConnectionLoop {
    pub addr: std::net::SocketAddr,
    pub jobs: std::sync::Arc<jobs::Jobs>,
    pub state: ffmpeg_worker_server::AppState,
    stop: tokio_util::sync::CancellationToken,
    _data: tempfile::TempDir,
}

impl ConnectionLoop {
    /// Started with `limits` and `settings`.
    pub async fn start(
        limits: ffmpeg_worker_server::connections::ConnectionLimits,
        settings: ffmpeg_worker_server::AppSettings,
    ) -> ConnectionLoop {
        use std::sync::Arc;
        let data = tempfile::tempdir().unwrap();
        let sandbox = ffmpeg_core::sandbox::Sandbox::new(data.path()).unwrap();
        let runner = jobs::FfmpegRunner::new(jobs::FfmpegConfig::new("ffmpeg", data.path()));
        let jobs =
            jobs::Jobs::new(Arc::new(jobs::MemoryStore::new()), Arc::new(runner), sandbox, jobs::JobsConfig::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let state = ffmpeg_worker_server::AppState::with_settings(Arc::clone(&jobs), settings);
        let router = ffmpeg_worker_server::app(state.clone());
        tokio::spawn(ffmpeg_worker_server::connections::serve(listener, router, limits, stop.clone()));
        ConnectionLoop { addr, jobs, state, stop, _data: data }
    }
}

impl Drop for ConnectionLoop {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

//! Test support: media generation with ffmpeg's lavfi sources, and the real binary on port 0.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::media::{ffprobe_duration, make_clip};

/// A running `ffmpeg-worker` on a free port with its own data directory; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub data: tempfile::TempDir,
    pub db_dir: tempfile::TempDir,
    /// Every line the server wrote to stderr so far.
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the binary with `extra` arguments on a fresh data dir and SQLite database.
    pub fn start(extra: &[&str]) -> Server {
        let data = tempfile::tempdir().unwrap();
        let db_dir = tempfile::tempdir().unwrap();
        Server::start_in(data, db_dir, extra)
    }

    /// Starts the binary on existing directories (e.g. to restart on the same database).
    pub fn start_in(data: tempfile::TempDir, db_dir: tempfile::TempDir, extra: &[&str]) -> Server {
        Server::start_wrapped(&[], data, db_dir, extra)
    }

    /// Starts the binary through `wrapper` (e.g. `["prlimit", "--nofile=256:256", "--"]`).
    pub fn start_wrapped(
        wrapper: &[&str],
        data: tempfile::TempDir,
        db_dir: tempfile::TempDir,
        extra: &[&str],
    ) -> Server {
        Server::spawn(wrapper, data, db_dir, extra, "info")
    }

    /// Starts the binary with the log filter `rust_log` (e.g. `debug`).
    pub fn start_logging(extra: &[&str], rust_log: &str) -> Server {
        Server::spawn(&[], tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), extra, rust_log)
    }

    fn spawn(
        wrapper: &[&str],
        data: tempfile::TempDir,
        db_dir: tempfile::TempDir,
        extra: &[&str],
        rust_log: &str,
    ) -> Server {
        let db = format!("sqlite://{}", db_dir.path().join("jobs.db").display());
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
            .arg(data.path())
            .args(["--database-url", &db])
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
        Server { child, base, data, db_dir, stderr: lines }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server (SIGKILL) and hands back its directories.
    pub fn kill(mut self) -> (tempfile::TempDir, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data = std::mem::replace(&mut self.data, tempfile::tempdir().unwrap());
        let db = std::mem::replace(&mut self.db_dir, tempfile::tempdir().unwrap());
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

//! `cargo xtask ci`'s API fuzzing: runs schemathesis (PyPI) against `/openapi.json` of the real
//! binary, so the OpenAPI document keeps describing what the server does (statuses, content
//! types, schemas, refused inputs). Bounded: a fixed number of examples per operation,
//! deterministic generation, a timeout per request; about half a minute. Skipped, with a
//! message, when schemathesis is not installed (`.ci/run` installs it).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{Result, root, run};

/// Examples per operation and phase.
const MAX_EXAMPLES: &str = "30";
/// Seconds one request may take.
const REQUEST_TIMEOUT: &str = "5";
/// The token the server under test requires (the document says every operation but
/// `/health` needs one, so the run must send it).
const TOKEN: &str = "schemathesis-token";

/// The server under test; killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn main() -> Result {
    if Command::new("schemathesis").arg("--version").output().is_err() {
        eprintln!("SKIPPED: schemathesis not installed (pip install schemathesis): the API was not fuzzed");
        return Ok(());
    }
    run("cargo", &["build", "--locked", "--package", "ffmpeg-worker-server", "--bin", "ffmpeg-worker"])?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), Into::into);
    let data = tempfile::tempdir()?;
    // API only (no worker runs the generated commands), nothing kept after the run.
    let mut child = Command::new(target.join("debug").join("ffmpeg-worker"))
        .args(["--host", "127.0.0.1", "--port", "0", "--concurrency", "0", "--database-url", "memory:"])
        .args(["--api-token", TOKEN, "--log-format", "pretty", "--data-path"])
        .arg(data.path())
        .env("RUST_LOG", "warn,ffmpeg_worker_server::serve=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(std::result::Result::ok) {
            if let Some(at) = line.find("http://127.0.0.1:") {
                let url: String = line[at..].chars().take_while(|c| !c.is_whitespace() && *c != '"').collect();
                let _ = tx.send(url);
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(60)).map_err(|_| "the server did not report its address")?;
    let spec = format!("{base}/openapi.json");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let result = run(
        "schemathesis",
        &[
            "run",
            &spec,
            "--header",
            &auth,
            "--checks",
            "all",
            // A schema cannot say which strings are valid ffmpeg command lines: a schema-valid
            // `command` is often refused (422, documented), which this check would count.
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            MAX_EXAMPLES,
            "--request-timeout",
            REQUEST_TIMEOUT,
            "--generation-deterministic",
            "--no-color",
        ],
    );
    drop(server);
    result
}

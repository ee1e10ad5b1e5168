//! The harness starts a real server, hands out databases, and stops the server when the test
//! process dies, even by SIGKILL.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `psql` answers to `sql` on `url`.
fn psql(url: &str, sql: &str) -> String {
    let psql = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(Result::ok)
        .map(|e| e.path().join("bin/psql"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "psql".into());
    let out = Command::new(psql).args(["-XAtq", url, "-c", sql]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn databases_are_fresh_and_separate() {
    let a = pg_harness::shared().fresh_database();
    let b = pg_harness::shared().fresh_database();
    assert_ne!(a, b);
    psql(&a, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    assert_eq!(psql(&a, "SELECT count(*) FROM t"), "1");
    assert_eq!(psql(&b, "SELECT count(*) FROM pg_tables WHERE tablename = 't'"), "0");
    assert_eq!(psql(&a, "SHOW server_version_num").len(), 6);
}

/// Not a test of its own: run by `server_stops_when_its_process_is_killed` in a child process.
#[test]
fn child_starts_a_server_and_waits() {
    if std::env::var_os("PG_HARNESS_CHILD").is_none() {
        return;
    }
    let server = pg_harness::shared();
    println!("\nPG_HARNESS_SERVER {} {}", server.port(), server.root().display());
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn server_stops_when_its_process_is_killed() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_starts_a_server_and_waits", "--nocapture", "--test-threads=1"])
        .env("PG_HARNESS_CHILD", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.find_map(|l| Some(l.ok()?.split_once("PG_HARNESS_SERVER ")?.1.to_owned()));
    let line = line.expect("the child printed its server");
    let (port, root) = line.trim().split_once(' ').unwrap();
    let addr = format!("127.0.0.1:{port}");
    assert!(std::net::TcpStream::connect(&addr).is_ok(), "the child's server accepts connections");
    assert!(std::path::Path::new(root).exists());

    child.kill().unwrap(); // SIGKILL: no destructor, no exit handler runs
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::path::Path::new(root).exists() || std::net::TcpStream::connect(&addr).is_ok() {
        assert!(Instant::now() < deadline, "the server outlived its test process (port {port}, {root})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

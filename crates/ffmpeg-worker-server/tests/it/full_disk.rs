//! The real binary on a full disk (tester finding K1): a small tmpfs that the test mounts (as
//! root, as in CI) holds the data directory and the SQLite database, and is filled. The node
//! starts, serves reads, answers changes 507 and `/ready` 503 naming the disk, and once space
//! is freed it registers, recovers and runs jobs with no restart; a node that must write its
//! database to start exits with one line naming the disk. Skipped, with a message on stderr,
//! where mounting is refused.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{DataDir, Db, Server, client, submit, wait_finished};
use crate::tmpfs::Tmpfs;

/// Writes `path` until the file system is full.
fn fill(path: &Path) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 16 * 1024];
    while file.write(&chunk).is_ok_and(|n| n > 0) {}
    while file.write(&chunk[..512]).is_ok_and(|n| n > 0) {}
}

async fn poll_until(what: &str, mut pred: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pred().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(http: &reqwest::Client, server: &Server, path: &str) -> (u16, Value) {
    let resp = http.get(server.url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_full_disk_serves_reads_refuses_changes_and_recovers_once_space_is_freed() {
    let name = "a_node_on_a_full_disk_serves_reads_refuses_changes_and_recovers_once_space_is_freed";
    let Some(fs) = Tmpfs::mount("16m", name) else { return };
    let data = fs.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let db_dir = tempfile::tempdir_in(fs.path()).unwrap();
    let db_file = db_dir.path().join("jobs.db");
    let http = client();
    const SRC: &str = "-f lavfi -i testsrc=size=64x48:rate=5";

    // A node finishes one job and dies (SIGKILL) while it runs another.
    let server = Server::start_in(DataDir::Shared(data), Db::Sqlite(db_dir), &[]);
    let (status, done) = submit(&http, &server, &format!("{SRC} -t 1 done.mp4")).await;
    assert_eq!(status, 201, "{done}");
    let done_id = done["id"].as_str().unwrap().to_owned();
    let done = wait_finished(&http, &server, &done_id, Duration::from_secs(60)).await.pop().unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    let (_, running) = submit(&http, &server, &format!("-re {SRC} -t 20 running.mp4")).await;
    let running_id = running["id"].as_str().unwrap().to_owned();
    poll_until("the job to run", async || {
        get(&http, &server, &format!("/jobs/{running_id}")).await.1["status"] == "running"
    })
    .await;
    let put = http.put(server.url("/files/kept.txt")).body("kept").send().await.unwrap();
    assert_eq!(put.status(), 201);
    let (data_dir, db) = server.kill();
    // The worst case: the database closed cleanly since (its `-wal` and `-shm` files gone), so
    // SQLite must create its shared-memory file to read it.
    let store = jobs::SqliteStore::open_path(&db_file).await.unwrap();
    store.close().await;
    drop(store);
    assert!(!db_file.with_extension("db-shm").exists());

    fill(&fs.path().join("filler"));
    let server = Server::start_in(data_dir, db, &["--max-attempts", "1"]);
    assert_eq!(get(&http, &server, "/health").await.0, 200);
    let (status, ready) = get(&http, &server, "/ready").await;
    assert_eq!(status, 503, "{ready}");
    let detail = ready["detail"].as_str().unwrap();
    let mount = format!("the file system mounted at `{}`", fs.path().canonicalize().unwrap().display());
    assert!(detail.contains("the disk holding its database is full") && detail.contains(&mount), "{ready}");
    // Reads answer.
    let (status, list) = get(&http, &server, "/jobs").await;
    assert_eq!(status, 200, "{list}");
    let listed: Vec<&str> = list.as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [done_id.as_str(), running_id.as_str()], "oldest first: {list}");
    assert_eq!(get(&http, &server, &format!("/jobs/{done_id}")).await.1["status"], "completed");
    let file = http.get(server.url("/files/kept.txt")).send().await.unwrap();
    assert_eq!((file.status().as_u16(), file.text().await.unwrap()), (200, "kept".to_owned()));
    assert_eq!(get(&http, &server, "/files").await.0, 200);
    // Changes are 507, nothing changed.
    let refused = [
        http.post(server.url("/jobs")).json(&serde_json::json!({"command": format!("{SRC} -t 1 new.mp4")})),
        http.delete(server.url(&format!("/jobs/{done_id}"))),
        http.put(server.url("/files/new.txt")).body(vec![7u8; 64 * 1024]),
    ];
    for request in refused {
        let resp = request.send().await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 507, "{body}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["type"], "/problems/insufficient-storage", "{body}");
    }
    assert_eq!(get(&http, &server, "/jobs").await.1, list, "nothing changed");

    // Space again: with no restart, the node becomes ready, recovers the interrupted job (one
    // attempt allowed: it fails) and runs new ones.
    std::fs::remove_file(fs.path().join("filler")).unwrap();
    poll_until("/ready to answer 200", async || get(&http, &server, "/ready").await.0 == 200).await;
    let interrupted = wait_finished(&http, &server, &running_id, Duration::from_secs(60)).await.pop().unwrap();
    assert_eq!((&interrupted["status"], &interrupted["error"]), (&"failed".into(), &"interrupted".into()));
    let (status, new) = submit(&http, &server, &format!("{SRC} -t 1 new.mp4")).await;
    assert_eq!(status, 201, "{new}");
    let new = wait_finished(&http, &server, new["id"].as_str().unwrap(), Duration::from_secs(60)).await.pop().unwrap();
    assert_eq!(new["status"], "completed", "{new}");
    assert_eq!(get(&http, &server, &format!("/jobs/{done_id}")).await.1, done, "the finished job is as it was");
    let stderr = server.stderr.lock().unwrap().join("\n");
    assert!(stderr.contains("the disk holding the job store is full"), "{stderr}");
}

/// A node that must write its database to start (here a new one: the whole schema to create)
/// on a full disk exits 2 with one line naming the disk and its free space, not SQLite's
/// error chain.
#[test]
fn a_node_that_must_write_its_database_to_start_on_a_full_disk_names_the_disk() {
    let name = "a_node_that_must_write_its_database_to_start_on_a_full_disk_names_the_disk";
    let Some(fs) = Tmpfs::mount("1m", name) else { return };
    let data = tempfile::tempdir().unwrap();
    fill(&fs.path().join("filler"));
    let db = fs.path().join("jobs.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ffmpeg-worker"))
        .args(["--port", "0", "--data-path"])
        .arg(data.path())
        .args(["--database-url", &format!("sqlite://{}", db.display())])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    let mount = format!("the file system mounted at `{}`", fs.path().canonicalize().unwrap().display());
    assert!(last.starts_with("ffmpeg-worker: database sqlite://"), "{stderr}");
    assert!(
        last.contains("the disk holding it is full") && last.contains(&mount) && last.contains(" free)"),
        "{stderr}"
    );
    assert!(!stderr.contains("code: 13") && !stderr.contains("panicked"), "{stderr}");
}

//! The real binary on an S3-compatible bucket (moto's server in its own process, `s3-harness`):
//! an input uploaded through `PUT /files`, a job run on it, its output fetched through
//! `GET /files`, then probed, listed and deleted, as a client on another host would.

use std::time::Duration;

use crate::support::{Db, Server, Store, client, ffprobe_duration, make_clip, submit, wait_finished};
use jobs::staging::STAGING_DIR;

/// The binary with its files in a fresh bucket under `prefix`.
fn s3_server(bucket: &str, prefix: &str) -> Server {
    s3_server_with(bucket, prefix, &[])
}

/// [`s3_server`] with `extra` arguments.
pub(crate) fn s3_server_with(bucket: &str, prefix: &str, extra: &[&str]) -> Server {
    s3_server_at(s3_harness::shared().endpoint(), bucket, prefix, extra)
}

/// [`s3_server_with`] reaching the bucket through `endpoint` (a [`s3_harness::Proxy`]'s).
pub(crate) fn s3_server_at(endpoint: &str, bucket: &str, prefix: &str, extra: &[&str]) -> Server {
    let mut args = s3_args(endpoint, bucket, prefix);
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The arguments that put a server's files in `bucket` under `prefix`, on the S3 server at
/// `endpoint`.
fn s3_args(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    [
        "--storage-url",
        &format!("s3://{bucket}/{prefix}"),
        "--aws-endpoint-url",
        endpoint,
        "--aws-allow-http",
        "--aws-access-key-id",
        s3_harness::ACCESS_KEY_ID,
        "--aws-secret-access-key",
        s3_harness::SECRET_ACCESS_KEY,
        "--aws-region",
        s3_harness::REGION,
    ]
    .map(str::to_owned)
    .to_vec()
}

#[tokio::test]
async fn upload_submit_run_download_on_a_bucket() {
    let bucket = s3_harness::shared().bucket();
    let server = s3_server(&bucket, "media");
    let client = client();
    let local = tempfile::tempdir().unwrap();
    let clip = make_clip(local.path(), "clip.mp4", 2);
    let bytes = std::fs::read(&clip).unwrap();

    let r = client.put(server.url("/files/in/clip.mp4")).body(bytes.clone()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    // ffprobe reads it from the bucket (through a private stage).
    let probe: serde_json::Value =
        client.get(server.url("/probe/in/clip.mp4")).send().await.unwrap().json().await.unwrap();
    assert!((probe["duration_seconds"].as_f64().unwrap() - 2.0).abs() < 0.2, "{probe}");
    assert_eq!(probe["streams"][0]["codec"], "h264", "{probe}");
    let r = client.get(server.url("/probe/in/missing.mp4")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = client.get(server.url("/probe/..%2Fx.mp4")).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let (status, job) = submit(
        &client,
        &server,
        "-i in/clip.mp4 -vf scale=80:60 -c:v libx264 -preset ultrafast -c:a copy out/small.mp4",
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap();
    let seen = wait_finished(&client, &server, id, Duration::from_secs(120)).await;
    let done = seen.last().unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output_files"], serde_json::json!(["out/small.mp4"]));
    assert!(done["progress"].get("phase").is_none(), "no phase once done: {done}");

    // The output, fetched through the API, is the video ffmpeg made.
    let r = client.get(server.url("/files/out/small.mp4")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    let out = local.path().join("small.mp4");
    std::fs::write(&out, r.bytes().await.unwrap()).unwrap();
    assert!((ffprobe_duration(&out) - 2.0).abs() < 0.2, "{}", ffprobe_duration(&out));
    let size = std::fs::metadata(&out).unwrap().len();
    assert_eq!(done["outputs"][0]["size_bytes"], size);
    // A range, as a player seeking in it.
    let r = client.get(server.url("/files/out/small.mp4")).header("range", "bytes=0-99").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().len(), 100);

    // It is in the bucket under the prefix, beside the input; the data directory holds no media.
    let keys = s3_harness::shared().keys(&bucket);
    assert_eq!(keys, ["media/in/clip.mp4", "media/out/small.mp4"]);
    assert!(!server.data.path().join("out").exists() && !server.data.path().join("in").exists());
    let listed: serde_json::Value =
        client.get(server.url("/files?prefix=out/")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed[0]["path"], "out/small.mp4");

    // Staging shows in /metrics.
    let metrics = client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let downloaded = metrics
        .lines()
        .find(|l| l.starts_with("ffmpeg_worker_staging_bytes_total{direction=\"download\"}"))
        .unwrap_or_else(|| panic!("no download bytes in {metrics}"));
    assert!(downloaded.ends_with(&format!(" {}", bytes.len())), "{downloaded}");
    assert!(metrics.contains("ffmpeg_worker_staging_bytes_total{direction=\"upload\"}"), "{metrics}");

    let r = client.delete(server.url("/files/out/small.mp4")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(s3_harness::shared().keys(&bucket), ["media/in/clip.mp4"]);
}

/// Tester finding L12: a worker killed mid-job (`kill -9`) on a cluster with the files in a
/// bucket, each node with its own data directory, whose job another node then ran to the end,
/// removes that run's stage (its inputs and outputs) when it starts again with its node id:
/// the store no longer shows the job as its own, but no live process holds the stage's lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_removes_its_stage_at_restart_once_another_node_ran_the_job() {
    let bucket = s3_harness::shared().bucket();
    let mut args = s3_args(s3_harness::shared().endpoint(), &bucket, "media");
    args.extend(["--lease-seconds", "3"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let db = tokio::task::block_in_place(Db::postgres);
    let client = client();
    let w1 = Server::start_in(tempfile::tempdir().unwrap(), db.node("w1"), &args);
    let stages = w1.data.path().join(STAGING_DIR);
    let (status, job) =
        submit(&client, &w1, "-re -f lavfi -i testsrc=duration=4:size=64x48:rate=10 -c:v rawvideo -f nut out/big.nut")
            .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    // Killed while ffmpeg writes into the stage.
    let stage = stages.join(format!("{id}-1"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !stage.join("out/big.nut").exists() {
        assert!(std::time::Instant::now() < deadline, "the run did not start writing into {}", stage.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (w1_data, _) = w1.kill();

    // Another node, with its own data directory, runs the job again once w1's lease expired.
    let w2 = Server::start_in(tempfile::tempdir().unwrap(), db.node("w2"), &args);
    let seen = wait_finished(&client, &w2, &id, Duration::from_secs(120)).await;
    let done = seen.last().unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    assert!(stage.join("in").exists() || stage.join("out/big.nut").exists(), "w1's stage is still there");

    // w1 starts again: the stage goes, though the job is w2's now.
    let w1 = Server::start_in(w1_data, db.node("w1"), &args);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stages.read_dir().unwrap().next().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stage stayed: {:?}; log: {:?}",
            stages.read_dir().unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>(),
            w1.stderr.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The line is logged once the removal is done, so it may come a moment after the stage went.
    while !w1.stderr.lock().unwrap().iter().any(|l| l.contains("removed staging directories")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no 'removed staging directories' line: {:?}",
            w1.stderr.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The completed job's output is in the bucket, whole.
    let r = client.get(w1.url(&format!("/jobs/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(s3_harness::shared().keys(&bucket).contains(&"media/out/big.nut".to_owned()));
}

/// Tester finding I3: a node (re)started while its bucket does not answer (moto behind a
/// proxy that holds every request, as a stopped server does) starts anyway, degraded, as a
/// running node rides an outage out: the jobs API answers, `/ready` is 503 naming the bucket,
/// a files call is 503 at once, and so is a submission (tester finding L8: it was queued
/// after its checks' time; a job queued before an outage waits instead, K11, `staging.rs`);
/// once the bucket answers, `/ready` is 200 and a job is queued and completes, on its first
/// attempt.
#[tokio::test]
async fn a_bucket_that_does_not_answer_at_start_leaves_the_node_serving_degraded() {
    let s3 = s3_harness::shared();
    let bucket = s3.bucket();
    let proxy = s3_harness::Proxy::start(s3.port());
    proxy.set(s3_harness::ProxyMode::Silent);
    // `localhost`: the test finds the server's address as the first `http://127.0.0.1:` it logs.
    let endpoint = proxy.endpoint().replace("127.0.0.1", "localhost");
    let url = format!("s3://{bucket}/media");
    let extra = ["--s3-request-timeout", "1s", "--s3-connect-timeout", "1s", "--max-attempts", "5"];
    let server = s3_server_at(&endpoint, &bucket, "media", &extra);
    let client = client();
    let r = client.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap_or_default().contains(&format!("does not answer: `{url}`")), "{body}");
    let r = client.get(server.url("/files/in/a.mp4")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(client.get(server.url("/jobs")).send().await.unwrap().status(), 200);
    let command = "-f lavfi -i testsrc=s=64x48:r=25 -t 0.2 out/degraded.mp4";
    let (status, body) = submit(&client, &server, command).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "/problems/storage-unavailable", "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("not queued") && detail.contains(&format!("`{url}` has not answered since")), "{body}");
    let listed: serde_json::Value = client.get(server.url("/jobs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");

    // The bucket answers again: the node is ready, a job is queued and runs to its end.
    proxy.set(s3_harness::ProxyMode::Pass);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while client.get(server.url("/ready")).send().await.unwrap().status() != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, job) = submit(&client, &server, command).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap();
    let seen = wait_finished(&client, &server, id, Duration::from_secs(120)).await;
    let done = seen.last().unwrap();
    assert_eq!((&done["status"], &done["attempts"]), (&"completed".into(), &1.into()), "{done}");
    assert!(s3.object(&bucket, "media/out/degraded.mp4").is_some());
}

/// What waiting cannot fix still stops the start, with the reason: a bucket that does not
/// exist, and a `STORAGE_URL` that is not an S3 one (an untrusted certificate: below).
#[tokio::test]
async fn a_missing_bucket_or_a_bad_storage_url_stops_the_start_with_the_reason() {
    let data = tempfile::tempdir().unwrap();
    let s3 = s3_harness::shared();
    let never = format!("{}-never-made", s3.bucket());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ffmpeg-worker"))
        .args(["--port", "0", "--database-url", "memory:", "--storage-url", &format!("s3://{never}/x")])
        .arg("--data-path")
        .arg(data.path())
        .args(["--aws-endpoint-url", s3.endpoint(), "--aws-allow-http", "--aws-region", s3_harness::REGION])
        .args(["--aws-access-key-id", s3_harness::ACCESS_KEY_ID])
        .args(["--aws-secret-access-key", s3_harness::SECRET_ACCESS_KEY])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("s3://{never}/x")) && stderr.contains("does not exist"), "{stderr}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ffmpeg-worker"))
        .args(["--port", "0", "--database-url", "memory:", "--storage-url", "gs://bucket"])
        .arg("--data-path")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("only s3://BUCKET[/PREFIX] is supported"));
}

/// At start, an endpoint whose host name does not exist (a typo in `AWS_ENDPOINT_URL`; `.invalid`
/// never resolves, RFC 6761) stops the start naming the host and the setting, where it used to
/// start degraded as if the bucket were down; a port that refuses connections (a bucket's
/// server restarting looks the same) still starts degraded, `/ready` 503.
#[tokio::test]
async fn an_endpoint_host_that_does_not_exist_stops_the_start_a_refused_port_does_not() {
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ffmpeg-worker"))
        .args(["--port", "0", "--database-url", "memory:", "--storage-url", "s3://b/x"])
        .arg("--data-path")
        .arg(data.path())
        .args(["--aws-endpoint-url", "http://no-such-host.invalid:9000", "--aws-allow-http"])
        .args(["--aws-access-key-id", "k", "--aws-secret-access-key", "s", "--s3-request-timeout", "1s"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!output.status.success(), "the start must fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the bucket's endpoint host `no-such-host.invalid` does not resolve")
            && stderr.contains("check the host name in AWS_ENDPOINT_URL"),
        "{stderr}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("http://localhost:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let extra = ["--s3-request-timeout", "1s", "--s3-connect-timeout", "1s"];
    let server = s3_server_at(&refused, &s3_harness::shared().bucket(), "media", &extra);
    let r = client().get(server.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap_or_default().contains("does not answer"), "{body}");
}

/// The binary's environment for the https test server's bucket `bucket`, as a user writes it:
/// `AWS_ENDPOINT_URL=https://...` and, with `ca`, `AWS_CA_BUNDLE` naming a PEM file.
fn tls_env(bucket: &str, ca: Option<&std::path::Path>) -> Vec<String> {
    let s3 = s3_harness::shared_tls();
    let mut env = vec![
        "env".to_owned(),
        format!("STORAGE_URL=s3://{bucket}/media"),
        format!("AWS_ENDPOINT_URL={}", s3.endpoint()),
        format!("AWS_ACCESS_KEY_ID={}", s3_harness::ACCESS_KEY_ID),
        format!("AWS_SECRET_ACCESS_KEY={}", s3_harness::SECRET_ACCESS_KEY),
        format!("AWS_REGION={}", s3_harness::REGION),
    ];
    if let Some(ca) = ca {
        env.push(format!("AWS_CA_BUNDLE={}", ca.display()));
    }
    env
}

/// A bucket behind https whose certificate a private CA signed: with `AWS_CA_BUNDLE` naming
/// that CA, every kind of request goes through (one-part and multipart uploads, a create-only
/// upload's server-side copy, ranged reads, listing, deleting, `/ready`).
#[tokio::test]
async fn a_bucket_over_https_with_a_private_ca_from_aws_ca_bundle() {
    let s3 = s3_harness::shared_tls();
    assert!(s3.endpoint().starts_with("https://127.0.0.1:"), "{}", s3.endpoint());
    let bucket = s3.bucket();
    let env = tls_env(&bucket, Some(&s3.ca_file()));
    let env: Vec<&str> = env.iter().map(String::as_str).collect();
    let server = Server::start_wrapped(&env, tempfile::tempdir().unwrap(), Db::new(Store::Sqlite), &[]);
    let client = client();

    let r = client.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let small = b"over tls".to_vec();
    let r = client.put(server.url("/files/a/small.txt")).body(small.clone()).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // Over one part (8 MiB), create-only: a multipart upload copied into place on condition.
    let large: Vec<u8> = (0..9 * 1024 * 1024 + 17).map(|i: u32| (i % 251) as u8).collect();
    let r = client
        .put(server.url("/files/a/large.bin"))
        .header("if-none-match", "*")
        .body(large.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = client.get(server.url("/files/a/small.txt")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), small.as_slice());
    let r = client.get(server.url("/files/a/large.bin")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().as_ref() == large.as_slice(), "the large file reads back whole");
    let r = client.get(server.url("/files/a/large.bin")).header("range", "bytes=100-199").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &large[100..200]);
    let listed: serde_json::Value =
        client.get(server.url("/files?prefix=a/")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    for path in ["a/small.txt", "a/large.bin"] {
        let r = client.delete(server.url(&format!("/files/{path}"))).send().await.unwrap();
        assert_eq!(r.status(), 204);
    }
    let listed: serde_json::Value =
        client.get(server.url("/files?prefix=a/")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed, serde_json::json!([]));
}

/// A bucket whose certificate nothing the server trusts vouches for (no CA bundle: only the web
/// roots; or a CA bundle of an unrelated CA) stops the start with a reason naming the https
/// endpoint and the certificate, at once (no retries), never falling back to plain http; a CA
/// bundle that cannot be read or holds no certificate stops it naming the file, and an
/// `http://` endpoint without `AWS_ALLOW_HTTP` stops it saying so.
#[test]
fn an_untrusted_certificate_or_a_bad_ca_bundle_stops_the_start_naming_it() {
    let s3 = s3_harness::shared_tls();
    let bucket = s3.bucket();
    let data = tempfile::tempdir().unwrap();
    let start = |ca: Option<&std::path::Path>| {
        let env = tls_env(&bucket, ca);
        let output = std::process::Command::new(&env[0])
            .args(&env[1..])
            .arg(env!("CARGO_BIN_EXE_ffmpeg-worker"))
            .args(["--port", "0", "--database-url", "memory:"])
            .arg("--data-path")
            .arg(data.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(!output.status.success(), "the start must fail");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let plain = s3.endpoint().replace("https://", "http://");
    for ca in [None, Some(s3.other_ca_file())] {
        let stderr = start(ca.as_deref());
        assert!(
            stderr.contains(&format!("the bucket's endpoint {} failed the TLS handshake", s3.endpoint())),
            "{stderr}"
        );
        assert!(stderr.contains("certificate"), "{stderr}");
        assert!(stderr.contains("AWS_CA_BUNDLE"), "{stderr}");
        // Not retried (object_store's error counts its retries when there were any), never
        // tried over plain http.
        assert!(!stderr.contains(" retries, max_retries") && !stderr.contains(&plain), "{stderr}");
    }
    // The same server named by an http:// URL without AWS_ALLOW_HTTP: refused, saying why.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ffmpeg-worker"))
        .args(["--port", "0", "--database-url", "memory:", "--storage-url", &format!("s3://{bucket}/media")])
        .arg("--data-path")
        .arg(data.path())
        .args(["--aws-endpoint-url", &plain, "--aws-access-key-id", "k", "--aws-secret-access-key", "s"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("AWS_ENDPOINT_URL `{plain}` is plain http: set AWS_ALLOW_HTTP=true")), "{stderr}");
    let missing = data.path().join("missing.pem");
    let stderr = start(Some(&missing));
    assert!(stderr.contains(&format!("AWS_CA_BUNDLE `{}` cannot be read", missing.display())), "{stderr}");
    let empty = data.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let stderr = start(Some(&empty));
    assert!(stderr.contains(&format!("AWS_CA_BUNDLE `{}` holds no PEM certificate", empty.display())), "{stderr}");
}

/// A bucket holding keys that no file path names, put there by other tools (tester H3: the
/// binary refused to start, `/ready` and listings were 503): it starts, is ready, and lists the
/// files around them; a folder marker is no file either (H5).
#[tokio::test]
async fn a_bucket_holding_keys_of_other_tools_starts_is_ready_and_lists_around_them() {
    let s3 = s3_harness::shared();
    let bucket = s3.bucket();
    s3.put_object(&bucket, "media/in/a.txt", b"a");
    for key in
        ["media//lead.txt", "media/weird//dbl.txt", "media/weird/../esc.txt", "media/f/ctl\u{1}.txt", "media/emptydir/"]
    {
        s3.put_object(&bucket, key, b"");
    }
    let server = s3_server(&bucket, "media");
    let client = client();
    let r = client.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    for uri in ["/files", "/files?prefix=in", "/files?prefix=weird/"] {
        let r = client.get(server.url(uri)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{uri}");
        let listed: serde_json::Value = r.json().await.unwrap();
        let paths: Vec<&str> = listed.as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        let want: &[&str] = if uri.ends_with("weird/") { &[] } else { &["in/a.txt"] };
        assert_eq!(paths, want, "{uri}");
    }
}

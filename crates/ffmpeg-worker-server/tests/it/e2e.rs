//! The real binary, end to end: real ffmpeg jobs through HTTP.

use std::time::Duration;

use crate::support::{
    Server, Store, client, ffprobe_duration, files_under, make_clip, on_each_store, submit, wait_finished,
};

async fn transcode_runs_end_to_end_with_progress_and_outputs(store: Store) {
    let server = Server::start_on(store, &[]);
    make_clip(server.data.path(), "input.mp4", 2);
    let http = client();
    let (status, job) =
        submit(&http, &server, "-i input.mp4 -c:v libx264 -preset ultrafast -c:a aac out/result.mp4").await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap();
    let seen = wait_finished(&http, &server, id, Duration::from_secs(60)).await;
    let done = seen.last().unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output_files"], serde_json::json!(["out/result.mp4"]));
    assert!(done["error"].is_null());
    assert!(done["started_at"].is_string() && done["completed_at"].is_string());
    let out = server.data.path().join("out/result.mp4");
    let duration = ffprobe_duration(&out);
    assert!((duration - 2.0).abs() < 0.2, "output lasts {duration} s");
    let progress = &done["progress"];
    assert_eq!(progress["percent"], 100.0, "{progress}");
    assert_eq!(progress["frame"], 50, "2 s at 25 fps: {progress}");
    assert_eq!(progress["time"].as_str().unwrap().len(), "00:00:02.00".len());
    assert!(progress["bitrate"].as_str().unwrap().ends_with("kbits/s"), "{progress}");

    // What is known of the output, from ffmpeg's own listing (no ffprobe per job).
    let outputs = done["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "{done}");
    let described = &outputs[0];
    assert_eq!(described["path"], "out/result.mp4");
    assert_eq!(described["size_bytes"], std::fs::metadata(&out).unwrap().len());
    assert_eq!(described["format"], "mp4");
    assert!((described["duration_seconds"].as_f64().unwrap() - 2.0).abs() < 0.2, "{described}");
    let streams = described["streams"].as_array().unwrap();
    assert_eq!(
        [
            &streams[0]["type"],
            &streams[0]["codec"],
            &streams[0]["width"],
            &streams[0]["height"],
            &streams[0]["frame_rate"]
        ],
        [
            &serde_json::json!("video"),
            &serde_json::json!("h264"),
            &serde_json::json!(160),
            &serde_json::json!(120),
            &serde_json::json!(25.0)
        ]
    );
    assert_eq!(
        [&streams[1]["type"], &streams[1]["codec"], &streams[1]["sample_rate"]],
        [&serde_json::json!("audio"), &serde_json::json!("aac"), &serde_json::json!(44100)]
    );

    // The same file through the real ffprobe.
    let probe: serde_json::Value =
        http.get(server.url("/probe/out/result.mp4")).send().await.unwrap().json().await.unwrap();
    assert_eq!(probe["container"], "mov,mp4,m4a,3gp,3g2,mj2", "{probe}");
    assert_eq!(probe["streams"][0]["width"], 160, "{probe}");
    // One stream description: a written file's streams carry the probed file's fields, and
    // what both ffmpeg's listing and ffprobe tell reads the same.
    let probed = probe["streams"].as_array().unwrap();
    let keys = |s: &serde_json::Value| s.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&streams[1]), keys(&probed[1]), "{described}\n{probe}");
    for key in ["type", "codec", "profile", "sample_rate", "channels", "channel_layout", "language"] {
        assert_eq!(streams[1][key], probed[1][key], "audio {key}: {described}\n{probe}");
    }
    for key in ["type", "codec", "width", "height", "pixel_format"] {
        assert_eq!(streams[0][key], probed[0][key], "video {key}: {described}\n{probe}");
    }
    assert_eq!(streams[1]["profile"], "LC", "{described}");

    let log = http.get(server.url(&format!("/jobs/{id}/log"))).send().await.unwrap();
    assert_eq!(log.status(), 200);
    let log = log.text().await.unwrap();
    assert!(log.contains("Duration: 00:00:02"), "the job log holds ffmpeg's stderr: {log}");
}
on_each_store!(transcode_runs_end_to_end_with_progress_and_outputs);

async fn missing_input_fails_with_a_short_useful_error(store: Store) {
    let server = Server::start_on(store, &[]);
    let http = client();
    let (status, job) = submit(&http, &server, "-i missing.mp4 out.mp4").await;
    assert_eq!(status, 201, "inputs need not exist at submit time: {job}");
    let seen = wait_finished(&http, &server, job["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    let done = seen.last().unwrap();
    assert_eq!(done["status"], "failed");
    let error = done["error"].as_str().unwrap();
    assert!(error.contains("missing.mp4") && error.contains("No such file or directory"), "{error}");
    assert!(error.lines().count() <= 5, "short: {error}");
    assert!(!error.contains(&server.data.path().display().to_string()), "no server paths leak: {error}");
    assert!(!error.contains("configuration:"), "not the banner: {error}");
}
on_each_store!(missing_input_fails_with_a_short_useful_error);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_escape_is_422_and_nothing_is_written() {
    let server = Server::start(&[]);
    let outside = tempfile::tempdir().unwrap();
    let http = client();
    make_clip(server.data.path(), "input.mp4", 1);
    let before = files_under(server.data.path());
    let target = outside.path().join("stolen.mp4");
    for command in [
        format!("-i input.mp4 {}", target.display()),
        "-i input.mp4 ../../stolen.mp4".to_owned(),
        "-i input.mp4 -f mp4 file:stolen.mp4".to_owned(),
    ] {
        let (status, problem) = submit(&http, &server, &command).await;
        assert_eq!(status, 422, "{command}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains("argument"), "{problem}");
    }
    let list: serde_json::Value = http.get(server.url("/jobs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list, serde_json::json!([]));
    assert!(!target.exists());
    assert_eq!(files_under(server.data.path()), before);
    assert!(files_under(outside.path()).is_empty());
}

async fn pattern_and_null_outputs(store: Store) {
    let server = Server::start_on(store, &[]);
    make_clip(server.data.path(), "input.mp4", 2);
    let http = client();
    let (_, thumbs) = submit(&http, &server, "-i input.mp4 -vf fps=2 thumbs/t%03d.png").await;
    let (_, null) = submit(&http, &server, "-i input.mp4 -af ebur128 -f null -").await;
    let thumbs = wait_finished(&http, &server, thumbs["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    let thumbs = thumbs.last().unwrap();
    assert_eq!(thumbs["status"], "completed", "{thumbs}");
    let files: Vec<&str> = thumbs["output_files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(files, ["thumbs/t001.png", "thumbs/t002.png", "thumbs/t003.png", "thumbs/t004.png"]);
    let null = wait_finished(&http, &server, null["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    let null = null.last().unwrap();
    assert_eq!(null["status"], "completed", "{null}");
    assert_eq!(null["output_files"], serde_json::json!([]));
}
on_each_store!(pattern_and_null_outputs);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_the_installed_ffmpeg_does_not_know_are_422_with_a_hint() {
    let server = Server::start(&[]);
    let http = client();
    for (command, name, hint) in [
        ("-i in.mp4 -crff 23 out.mp4", "crff", Some("-crf")),
        ("-i in.mp4 -c:v libx265x out.mp4", "libx265x", Some("libx265")),
        ("-i in.mp4 -vf scal=320:-2 out.mp4", "scal", Some("scale")),
        ("-i in.mp4 -f mp5 out.mp4", "mp5", Some("mp4")),
        ("-i in.mp4 -qwertyuiop 1 out.mp4", "qwertyuiop", None),
    ] {
        let (status, problem) = submit(&http, &server, command).await;
        assert_eq!(status, 422, "{command}: {problem}");
        assert_eq!(problem["type"], "/problems/unknown-name", "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(name), "{detail}");
        match hint {
            Some(h) => assert!(detail.contains(&format!("did you mean `{h}`")), "{detail}"),
            None => assert!(!detail.contains("did you mean"), "{detail}"),
        }
    }
    let list: serde_json::Value = http.get(server.url("/jobs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list, serde_json::json!([]), "none was queued");
}

/// The tutorial's two-pass encode as two jobs submitted back to back to a server with two
/// worker slots: pass 1 writes the default log (`ffmpeg2pass-0.log`, x264's `.mbtree`) in the
/// data directory, pass 2 (given a higher priority, so that only the conflict rule holds it
/// back) waits for pass 1 to finish and reads it.
async fn two_pass_encode_as_two_jobs_with_two_workers(store: Store) {
    let server = Server::start_on(store, &["--concurrency", "2"]);
    make_clip(server.data.path(), "in.mp4", 2);
    let http = client();
    let post = |body: serde_json::Value| {
        let request = http.post(server.url("/jobs")).json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 201);
            response.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
        }
    };
    let pass1 = post(serde_json::json!({
        "command": "-i in.mp4 -c:v libx264 -b:v 200k -pass 1 -an -f null /dev/null"
    }))
    .await;
    let pass2 = post(serde_json::json!({
        "command": "-i in.mp4 -c:v libx264 -b:v 200k -pass 2 -c:a aac out/2pass.mp4",
        "priority": 10
    }))
    .await;
    let first = wait_finished(&http, &server, &pass1, Duration::from_secs(90)).await.pop().unwrap();
    let second = wait_finished(&http, &server, &pass2, Duration::from_secs(90)).await.pop().unwrap();
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(second["status"], "completed", "{second}");
    let files = first["output_files"].as_array().unwrap();
    assert!(files.contains(&serde_json::json!("ffmpeg2pass-0.log")), "{first}");
    assert!(files.contains(&serde_json::json!("ffmpeg2pass-0.log.mbtree")), "{first}");
    assert_eq!(second["output_files"], serde_json::json!(["out/2pass.mp4"]));
    let time = |job: &serde_json::Value, field: &str| {
        time::OffsetDateTime::parse(job[field].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    assert!(time(&second, "started_at") >= time(&first, "completed_at"), "pass 2 waited: {first} {second}");
    assert!(server.data.path().join("ffmpeg2pass-0.log").is_file());
    let duration = ffprobe_duration(&server.data.path().join("out/2pass.mp4"));
    assert!((duration - 2.0).abs() < 0.2, "output lasts {duration} s");
}
on_each_store!(two_pass_encode_as_two_jobs_with_two_workers);

/// Two-pass encoding spelled in the encoder libraries' own settings (issue 8 point 2), as two
/// jobs each, submitted back to back to a server with two worker slots (pass 2 at a higher
/// priority): x264's `stats=` in a directory that does not exist yet (created, as for
/// `-passlogfile`), and x265's default `x265_2pass.log` (+ `.cutree`) in the data directory,
/// where plain ffmpeg leaves it. Each pass 1 lists its statistics; each pass 2 waits for its
/// pass 1 and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoder_settings_two_pass_as_two_jobs_with_two_workers() {
    let server = Server::start(&["--concurrency", "2"]);
    make_clip(server.data.path(), "in.mp4", 1);
    let http = client();
    let post = |command: String, priority: i32| {
        let request =
            http.post(server.url("/jobs")).json(&serde_json::json!({"command": command, "priority": priority}));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let body = response.json::<serde_json::Value>().await.unwrap();
            assert_eq!(status, 201, "{command}: {body}");
            body["id"].as_str().unwrap().to_owned()
        }
    };
    let cases = [
        (
            "-c:v libx264 -x264-params pass={N}:stats=st/x264.log",
            "out/x264.mp4",
            vec!["st/x264.log", "st/x264.log.mbtree"],
        ),
        ("-c:v libx265 -x265-params pass={N}", "out/x265.mp4", vec!["x265_2pass.log", "x265_2pass.log.cutree"]),
    ];
    let mut ids = Vec::new();
    for (options, output, _) in &cases {
        let pass = |n: &str| options.replace("{N}", n);
        let first = post(format!("-i in.mp4 -b:v 100k {} -an -f null -", pass("1")), 0).await;
        let second = post(format!("-i in.mp4 -b:v 100k {} -an {output}", pass("2")), 10).await;
        ids.push((first, second));
    }
    let time = |job: &serde_json::Value, field: &str| {
        time::OffsetDateTime::parse(job[field].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    for ((first, second), (options, output, stats)) in ids.iter().zip(&cases) {
        let first = wait_finished(&http, &server, first, Duration::from_secs(90)).await.pop().unwrap();
        let second = wait_finished(&http, &server, second, Duration::from_secs(90)).await.pop().unwrap();
        assert_eq!(first["status"], "completed", "{options}: {first}");
        assert_eq!(second["status"], "completed", "{options}: {second}");
        assert_eq!(first["output_files"], serde_json::json!(stats), "{options}");
        assert_eq!(second["output_files"], serde_json::json!([output]), "{options}");
        assert!(time(&second, "started_at") >= time(&first, "completed_at"), "pass 2 waited: {first} {second}");
        assert!(ffprobe_duration(&server.data.path().join(output)) > 0.5, "{options}");
    }
}

/// The files API against the real binary: upload a clip made elsewhere, run a job on it,
/// download the output whole and in ranges; a client that vanishes mid-upload leaves nothing.
async fn files_api_upload_run_download_end_to_end(store: Store) {
    use std::io::Write as _;
    let server = Server::start_on(store, &[]);
    let elsewhere = tempfile::tempdir().unwrap();
    let clip = make_clip(elsewhere.path(), "clip.mp4", 2);
    let content = std::fs::read(&clip).unwrap();
    let http = client();

    let put = http.put(server.url("/files/in/clip.mp4")).body(content.clone()).send().await.unwrap();
    assert_eq!(put.status(), 201);
    let stored: serde_json::Value = put.json().await.unwrap();
    assert_eq!(stored["size_bytes"], content.len());
    assert_eq!(std::fs::read(server.data.path().join("in/clip.mp4")).unwrap(), content);

    let (status, job) =
        submit(&http, &server, "-i in/clip.mp4 -c:v libx264 -preset ultrafast -c:a aac out/clip.mkv").await;
    assert_eq!(status, 201, "{job}");
    let seen = wait_finished(&http, &server, job["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(seen.last().unwrap()["status"], "completed", "{:?}", seen.last());

    let listed: serde_json::Value =
        http.get(server.url("/files?prefix=out/")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed[0]["path"], "out/clip.mkv", "{listed}");
    let out = http.get(server.url("/files/out/clip.mkv")).send().await.unwrap();
    assert_eq!(out.status(), 200);
    assert_eq!(out.headers()["content-type"], "video/x-matroska");
    let bytes = out.bytes().await.unwrap();
    let on_disk = std::fs::read(server.data.path().join("out/clip.mkv")).unwrap();
    assert_eq!(bytes.as_ref(), on_disk.as_slice());
    let downloaded = elsewhere.path().join("downloaded.mkv");
    std::fs::write(&downloaded, &bytes).unwrap();
    assert!((ffprobe_duration(&downloaded) - 2.0).abs() < 0.2);

    let len = on_disk.len();
    for (range, expected) in [
        ("bytes=0-99".to_owned(), &on_disk[..100]),
        (format!("bytes={}-", len - 10), &on_disk[len - 10..]),
        ("bytes=-1".to_owned(), &on_disk[len - 1..]),
    ] {
        let part = http.get(server.url("/files/out/clip.mkv")).header("range", &range).send().await.unwrap();
        assert_eq!(part.status(), 206, "{range}");
        assert_eq!(part.bytes().await.unwrap().as_ref(), expected, "{range}");
    }

    // A client that announces 1 MB, sends 100 KB and disconnects.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut socket = std::net::TcpStream::connect(&addr).unwrap();
    write!(socket, "PUT /files/in/half.mp4 HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n").unwrap();
    socket.write_all(&vec![0u8; 100_000]).unwrap();
    drop(socket);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<String> =
            files_under(&server.data.path().join("in")).into_iter().filter(|f| f != "clip.mp4").collect();
        if left.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "an aborted upload left {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http.delete(server.url("/files/out?recursive=true")).send().await.unwrap().status(), 204);
    assert!(!server.data.path().join("out").exists());
}
on_each_store!(files_api_upload_run_download_end_to_end);

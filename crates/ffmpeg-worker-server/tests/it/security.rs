//! The security policy through the real binary: hostile commands never start ffmpeg and never
//! touch anything outside the data directory; ordinary real-world commands still run.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::{Server, Store, client, files_under, make_clip, on_each_store, submit, wait_finished};

/// An ffmpeg stand-in that records each invocation, then runs the real ffmpeg.
fn counting_ffmpeg(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let log = dir.join("invocations");
    let real = which_ffmpeg();
    let wrapper = dir.join("ffmpeg");
    std::fs::write(&wrapper, format!("#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n", log.display(), real)).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (wrapper, log)
}

fn which_ffmpeg() -> String {
    let out = std::process::Command::new("sh").args(["-c", "command -v ffmpeg"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn invocations(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log).map(|s| s.lines().count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_commands_are_refused_before_ffmpeg_starts_and_touch_nothing_outside() {
    let bin_dir = tempfile::tempdir().unwrap();
    let (wrapper, log) = counting_ffmpeg(bin_dir.path());
    let server = Server::start(&["--ffmpeg-bin", wrapper.to_str().unwrap()]);
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "TOP-SECRET-CONTENT\n").unwrap();
    make_clip(server.data.path(), "in.mp4", 1);
    std::fs::write(server.data.path().join("playlist.m3u8"), format!("#EXTM3U\n#EXTINF:1,\n{}\n", secret.display()))
        .unwrap();
    let before_data = files_under(server.data.path());
    let started = invocations(&log);
    assert!(started >= 1, "start-up ran the wrapper (version check, capabilities)");

    let s = secret.display().to_string();
    let o = outside.path().display().to_string();
    let hostile = [
        format!("-i {s} out.mp4"),
        format!("-i in.mp4 {o}/stolen.mp4"),
        "-i ../../../etc/passwd out.mp4".to_owned(),
        "-i in.mp4 -f mp4 ../escape.mp4".to_owned(),
        format!("-i in.mp4 -vf subtitles={s} out.mp4"),
        format!("-i in.mp4 -vf \"drawtext=textfile={s}\" out.mp4"),
        format!("-f lavfi -i movie={s} out.mp4"),
        "-i http://127.0.0.1:9/x.mp4 out.mp4".to_owned(),
        "-i in.mp4 -f tee \"[f=mp4]a.mp4|[f=mp4]b.mp4\"".to_owned(),
        format!("-i in.mp4 -hls_segment_filename {o}/seg%03d.ts -f hls index.m3u8"),
        format!("-i in.mp4 -passlogfile {o}/log -pass 1 -f null -"),
        "-i in.mp4 -master_pl_name ../../master.m3u8 -f hls hls/index.m3u8".to_owned(),
        format!("-i in.mp4 -attach {s} -metadata:s:t mimetype=text/plain out.mkv"),
        "-i in.mp4 -dump_attachment:t:0 x.ttf out.mp4".to_owned(),
        format!("-filter_complex_script {s} -i in.mp4 out.mp4"),
        "-i in.mp4 -vf zmq out.mp4".to_owned(),
        "-i in.mp4 -af ladspa=file=cmt:plugin=delay out.mp4".to_owned(),
        "-report -i in.mp4 out.mp4".to_owned(),
        format!("-i in.mp4 -vstats_file {o}/v.log out.mp4"),
        "-protocol_whitelist file,http -i playlist.m3u8 out.mp4".to_owned(),
        "-safe 0 -f concat -i list.txt out.mp4".to_owned(),
        "-i in.mp4 out.mp4 -i in.mp4 in.mp4".to_owned(),
        "-i pipe:0 out.mp4".to_owned(),
        "-i in.mp4 -f mp4 pipe:1".to_owned(),
        // The temporary upload names, which the start-up sweep removes (tester J2).
        "-i in.mp4 keep/.ffmpeg-worker-upload-x.mp4".to_owned(),
        "-i .ffmpeg-worker-upload-y.mp4 out.mp4".to_owned(),
        "-i in.mp4 -c copy -f segment -segment_time 1 .ffmpeg-worker-upload-dir/p%02d.mp4".to_owned(),
    ];
    let http = client();
    for command in &hostile {
        let (status, problem) = submit(&http, &server, command).await;
        assert_eq!(status, 422, "{command}: {problem}");
        let text = problem.to_string();
        assert!(!text.contains("TOP-SECRET"), "{command}: {text}");
        assert!(problem["argument_position"].is_u64() || problem["type"] == "/problems/invalid-command", "{problem}");
    }
    assert_eq!(invocations(&log), started, "ffmpeg never started for a refused command");
    let list: serde_json::Value = http.get(server.url("/jobs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list, serde_json::json!([]), "nothing was queued");
    assert_eq!(files_under(outside.path()), ["secret.txt"], "nothing was written outside");
    assert_eq!(files_under(server.data.path()), before_data, "nothing was written inside either");

    // The planted playlist names a file outside: even as an allowed input, ffmpeg may not open it.
    let (status, job) = submit(&http, &server, "-i playlist.m3u8 -c copy out.ts").await;
    if status == 201 {
        let done = wait_finished(&http, &server, job["id"].as_str().unwrap(), Duration::from_secs(30)).await;
        let last = done.last().unwrap();
        assert_eq!(last["status"], "failed", "{last}");
        assert!(!last.to_string().contains("TOP-SECRET"));
    } else {
        assert_eq!(status, 422, "{job}");
    }
}

async fn ordinary_commands_still_run(store: Store) {
    let server = Server::start_on(store, &["--concurrency", "2"]);
    let data = server.data.path();
    make_clip(data, "in.mp4", 2);
    make_clip(data, "logo.mp4", 1);
    std::fs::write(data.join("subs.srt"), "1\n00:00:00,000 --> 00:00:01,500\nHello\n").unwrap();
    let commands = [
        "-i in.mp4 -vf scale=80:-2 -c:a copy scaled.mp4",
        "-i in.mp4 -vf crop=80:60:0:0 -an cropped.mp4",
        "-i in.mp4 -i logo.mp4 -filter_complex \"[1:v]scale=40:-2[l];[0:v][l]overlay=W-w-4:4[v]\" -map [v] -map 0:a -shortest overlay.mp4",
        "-i in.mp4 -c:v libx264 -preset ultrafast -f hls -hls_time 1 -hls_segment_filename hls/seg_%03d.ts hls/index.m3u8",
        "-i in.mp4 -vf fps=1 thumbs/t%03d.png",
        "-i in.mp4 -vn -c:a aac audio/a.m4a",
        "-i in.mp4 -vf subtitles=subs.srt -c:a copy burned.mp4",
        "-i in.mp4 -c:v libx264 -preset ultrafast -b:v 200k -pass 1 -passlogfile logs/two -an -f null -",
        "-i in.mp4 -af loudnorm=print_format=json -f null -",
        "-f lavfi -i testsrc=duration=1:size=160x120:rate=25 -f lavfi -i sine=duration=1 -shortest -c:v libx264 -preset ultrafast generated.mp4",
        "-i in.mp4 -c copy -f segment -segment_time 1 -segment_list parts/list.csv parts/p%02d.mp4",
    ];
    let http = client();
    let mut ids = Vec::new();
    for command in commands {
        let (status, job) = submit(&http, &server, command).await;
        assert_eq!(status, 201, "{command}: {job}");
        ids.push((command, job["id"].as_str().unwrap().to_owned()));
    }
    for (command, id) in &ids {
        let done = wait_finished(&http, &server, id, Duration::from_secs(120)).await;
        let last = done.last().unwrap();
        assert_eq!(last["status"], "completed", "{command}: {last}");
        assert!(
            !last["output_files"].as_array().unwrap().is_empty() || command.contains("-f null"),
            "{command}: {last}"
        );
    }
    let hls = files_under(&data.join("hls"));
    assert!(hls.contains(&"index.m3u8".to_owned()) && hls.iter().any(|f| f.starts_with("seg_")), "{hls:?}");
    assert!(files_under(&data.join("logs")).iter().any(|f| f.starts_with("two")), "two-pass log in the data dir");
    let two_pass = wait_finished(&http, &server, &ids[7].1, Duration::from_secs(1)).await;
    let listed: Vec<&str> =
        two_pass.last().unwrap()["output_files"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(listed.iter().any(|f| f.starts_with("logs/two")), "the pass log is listed: {listed:?}");
    let segments = wait_finished(&http, &server, &ids[10].1, Duration::from_secs(1)).await;
    let listed = segments.last().unwrap()["output_files"].to_string();
    assert!(listed.contains("parts/list.csv") && listed.contains("parts/p00.mp4"), "{listed}");
}
on_each_store!(ordinary_commands_still_run);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_can_forbid_a_filter() {
    let server = Server::start(&["--forbid-filter", "subtitles"]);
    let http = client();
    let (status, problem) = submit(&http, &server, "-i in.mp4 -vf subtitles=subs.srt out.mp4").await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["rule"], "forbidden-filter");
    let (status, _) = submit(&http, &server, "-i in.mp4 -vf scale=80:-2 out.mp4").await;
    assert_eq!(status, 201);
}

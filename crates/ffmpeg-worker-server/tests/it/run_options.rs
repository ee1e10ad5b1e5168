//! The real binary with commands that set the runner's own options (`-n`, `-loglevel`), and
//! the progress a running job reports.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Server, Store, client, make_clip, on_each_store, submit, wait_finished};

/// Every snapshot of a running job: percent below 100, ETA never 0; and the percents seen
/// never go down.
fn check_running(seen: &[Value]) -> Vec<f64> {
    let running: Vec<&Value> = seen.iter().filter(|j| j["status"] == "running").collect();
    let percents: Vec<f64> = running.iter().filter_map(|j| j["progress"]["percent"].as_f64()).collect();
    for job in &running {
        let progress = &job["progress"];
        assert!(progress["percent"].as_f64().is_none_or(|p| p < 100.0), "{progress}");
        assert!(progress["eta_seconds"].as_f64().is_none_or(|e| e > 0.0), "{progress}");
    }
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    percents
}

async fn no_overwrite_fails_with_ffmpegs_reason_and_keeps_the_file(store: Store) {
    let server = Server::start_on(store, &[]);
    make_clip(server.data.path(), "in.mp4", 1);
    std::fs::create_dir(server.data.path().join("out")).unwrap();
    std::fs::write(server.data.path().join("out/x.mp4"), "not the job's").unwrap();
    let http = client();
    let (status, job) = submit(&http, &server, "-n -i in.mp4 -c copy out/x.mp4").await;
    assert_eq!(status, 201, "{job}");
    let seen = wait_finished(&http, &server, job["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    let done = seen.last().unwrap();
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"], "File 'out/x.mp4' already exists. Exiting.", "{done}");
    assert_eq!(std::fs::read_to_string(server.data.path().join("out/x.mp4")).unwrap(), "not the job's");
    let (_, job) = submit(&http, &server, "-n -i in.mp4 -c copy out/y.mp4").await;
    let seen = wait_finished(&http, &server, job["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(seen.last().unwrap()["status"], "completed", "{:?}", seen.last());
}
on_each_store!(no_overwrite_fails_with_ffmpegs_reason_and_keeps_the_file);

/// `-n` with an existing HLS playlist or DASH manifest: the job fails with ffmpeg's message
/// before ffmpeg runs and the file is left alone (ffmpeg 5.1 does not check `-n` for these
/// muxers, which open their files themselves: the playlist was replaced, tester finding L7).
/// Without the file, the same command completes.
async fn no_overwrite_keeps_an_existing_playlist_or_manifest(store: Store) {
    let server = Server::start_on(store, &[]);
    let data = server.data.path();
    make_clip(data, "in.mp4", 1);
    for dir in ["nn", "dd"] {
        std::fs::create_dir(data.join(dir)).unwrap();
    }
    std::fs::write(data.join("nn/p.m3u8"), "#EXTM3U\n# the client's\n").unwrap();
    std::fs::write(data.join("dd/m.mpd"), "<MPD/>").unwrap();
    let http = client();
    for (command, named) in [
        ("-n -i in.mp4 -t 1 -f hls -hls_time 0.5 nn/p.m3u8", "nn/p.m3u8"),
        ("-n -i in.mp4 -t 1 -f dash dd/m.mpd", "dd/m.mpd"),
    ] {
        let (status, job) = submit(&http, &server, command).await;
        assert_eq!(status, 201, "{job}");
        let seen = wait_finished(&http, &server, job["id"].as_str().unwrap(), Duration::from_secs(60)).await;
        let done = seen.last().unwrap();
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(done["error"], format!("File '{named}' already exists. Exiting."), "{done}");
    }
    assert_eq!(std::fs::read_to_string(data.join("nn/p.m3u8")).unwrap(), "#EXTM3U\n# the client's\n");
    assert_eq!(std::fs::read_to_string(data.join("dd/m.mpd")).unwrap(), "<MPD/>");
    let names = |dir: &str| {
        let mut names: Vec<String> =
            std::fs::read_dir(data.join(dir)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };
    assert_eq!((names("nn"), names("dd")), (vec!["p.m3u8".to_owned()], vec!["m.mpd".to_owned()]));
    let (_, job) = submit(&http, &server, "-n -i in.mp4 -t 1 -f hls -hls_time 0.5 nn/q.m3u8").await;
    let seen = wait_finished(&http, &server, job["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(seen.last().unwrap()["status"], "completed", "{:?}", seen.last());
}
on_each_store!(no_overwrite_keeps_an_existing_playlist_or_manifest);

/// `-loglevel error` on a job paced in real time (`-re`): percent grows while it runs, the
/// log keeps only errors.
async fn a_quiet_job_still_reports_percent(store: Store) {
    let server = Server::start_on(store, &[]);
    make_clip(server.data.path(), "in.mp4", 3);
    let http = client();
    let (status, job) =
        submit(&http, &server, "-loglevel repeat+level+error -re -i in.mp4 -c:v libx264 -preset ultrafast out/q.mp4")
            .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap();
    let seen = wait_finished(&http, &server, id, Duration::from_secs(60)).await;
    let done = seen.last().unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"]["percent"], 100.0);
    let percents = check_running(&seen);
    assert!(percents.iter().any(|p| (5.0..95.0).contains(p)), "percent while running: {percents:?}");
    let log = http.get(server.url(&format!("/jobs/{id}/log"))).send().await.unwrap().text().await.unwrap();
    assert!(!log.contains("Duration:") && !log.contains("[info]"), "the client asked for errors only: {log}");
}
on_each_store!(a_quiet_job_still_reports_percent);

/// Filters and inputs that change the timeline, on jobs paced in real time: percent follows
/// the output (it neither stalls at a fraction nor jumps to 100 early, nor stays unknown for a
/// concat list without `duration` lines), and never shows 100 while running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_follows_filters_that_change_the_timeline() {
    let server = Server::start(&[]);
    make_clip(server.data.path(), "a.mp4", 3);
    make_clip(server.data.path(), "b.mp4", 2);
    // A concat list without `duration` lines: ffmpeg's banner says `Duration: N/A`.
    std::fs::write(server.data.path().join("list.txt"), "ffconcat version 1.0\nfile a.mp4\nfile 'b.mp4'\n").unwrap();
    let http = client();
    for (command, length) in [
        // The concat demuxer: 3 s + 2 s, learned by probing the listed files.
        ("-re -f concat -i list.txt -an -c:v libx264 -preset ultrafast out/list.mp4", 5.0),
        // 3 s of input read in real time, 0.6 s of output.
        ("-re -i a.mp4 -vf setpts=PTS/5 -an -c:v libx264 -preset ultrafast out/fast.mp4", 0.6),
        // 5 s of output from two inputs: the second half must not show 100 %.
        (
            "-re -i a.mp4 -re -i b.mp4 -filter_complex [0:v][1:v]concat=n=2:v=1:a=0[v] -map [v] -c:v libx264 \
             -preset ultrafast out/concat.mp4",
            5.0,
        ),
    ] {
        let (status, job) = submit(&http, &server, command).await;
        assert_eq!(status, 201, "{job}");
        let seen = wait_finished(&http, &server, job["id"].as_str().unwrap(), Duration::from_secs(90)).await;
        let done = seen.last().unwrap();
        assert_eq!(done["status"], "completed", "{command}: {done}");
        check_running(&seen);
        // Every percent shown while running is the output time over the real output length.
        let mut checked = 0;
        for job in seen.iter().filter(|j| j["status"] == "running") {
            let progress = &job["progress"];
            let (Some(percent), Some(time)) = (progress["percent"].as_f64(), progress["out_time_seconds"].as_f64())
            else {
                continue;
            };
            let want = (time / length * 100.0).min(99.9);
            assert!((percent - want).abs() < 1.0, "{command}: {percent} % at {time} s of {length} s");
            checked += 1;
        }
        assert!(checked > 0, "{command}: no running snapshot with percent: {seen:?}");
    }
}

//! The command line (`ffmpeg-worker submit | status | list | cancel | delete | logs | wait`):
//! the real `ffmpeg-worker-client` binary as a client of the real server (in-process, see
//! `support`). Stdout is a pipe here, so progress comes as plain lines.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::media::{ffprobe_duration, make_clip};
use crate::support::{Options, Server};

/// How a client run ended.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Longest any client run may take before the test fails (a real 2 s transcode takes far less).
const DEADLINE: Duration = Duration::from_secs(120);

/// Runs `ffmpeg-worker-client ARGS` with `env` (and no inherited client settings), killing it at
/// [`DEADLINE`].
pub(crate) fn run_with(env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ffmpeg-worker-client"));
    command
        .args(args)
        .env_remove("FFMPEG_WORKER_URL")
        .env_remove("FFMPEG_WORKER_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("the client starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let status = exit_status(&mut child, &args.join(" "));
    let run = Run {
        code: status.code().expect("exited, not killed by a signal"),
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    };
    eprintln!("$ ffmpeg-worker {}\n{run:#?}", args.join(" "));
    run
}

/// Waits for the client to exit; kills it and fails the test after [`DEADLINE`].
fn exit_status(child: &mut Child, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`ffmpeg-worker {what}` did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the client against `server` (its URL in `FFMPEG_WORKER_URL`).
fn cli(server: &Server, args: &[&str]) -> Run {
    run_with(&[("FFMPEG_WORKER_URL", &server.base)], args)
}

pub(crate) fn is_job_id(s: &str) -> bool {
    s.len() == 20 && s.starts_with("job_") && s[4..].chars().all(|c| c.is_ascii_hexdigit())
}

/// Submits `args` (no `--wait`) and returns the id the client printed.
fn submit(server: &Server, args: &[&str]) -> String {
    let mut all = vec!["submit"];
    all.extend_from_slice(args);
    let run = cli(server, &all);
    assert_eq!(run.code, 0, "{run:?}");
    let id = run.stdout.trim().to_owned();
    assert!(is_job_id(&id), "submit prints the id alone: {run:?}");
    id
}

fn json_of(run: &Run) -> Value {
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"))
}

#[test]
fn submit_wait_runs_a_real_transcode_and_prints_plain_progress_and_outputs() {
    let server = Server::start();
    make_clip(server.data.path(), "input.mp4", 2);
    let run = cli(
        &server,
        &[
            "submit",
            "--wait",
            "--priority",
            "3",
            "--timeout",
            "120",
            "--metadata",
            "asset=a-42",
            "--",
            "-i",
            "input.mp4",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "out/my clip.mp4",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains(['\r', '\x1b']), "no terminal control codes in a pipe: {run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    let id = lines[0].split(' ').next().unwrap();
    assert!(is_job_id(id), "{run:?}");
    assert_eq!(lines[0], format!("{id} queued"), "the first line is the submitted job");
    let n = lines.len();
    assert!(n >= 3, "{run:?}");
    assert_eq!(lines[n - 2..], [format!("{id} completed").as_str(), "out/my clip.mp4"]);
    for line in &lines[..n - 2] {
        assert!(line.starts_with(&format!("{id} queued")) || line.starts_with(&format!("{id} running")), "{line}");
        if let Some(rest) = line.strip_prefix(&format!("{id} running ")) {
            // `job_x running 42.0% speed 2.1x eta 12s`
            let percent = rest.split(' ').next().unwrap();
            assert!(percent.ends_with('%') && percent.trim_end_matches('%').parse::<f64>().is_ok(), "{line}");
        }
    }
    let out = server.data.path().join("out/my clip.mp4");
    let duration = ffprobe_duration(&out);
    assert!((duration - 2.0).abs() < 0.2, "output lasts {duration} s");

    let job = json_of(&cli(&server, &["status", "--json", id]));
    assert_eq!(job["status"], "completed");
    assert_eq!(
        job["command"], "-i input.mp4 -c:v libx264 -preset ultrafast -c:a aac 'out/my clip.mp4'",
        "the words are joined with shell quoting"
    );
    assert_eq!(job["output_files"], json!(["out/my clip.mp4"]));
    assert_eq!((&job["priority"], &job["timeout_seconds"]), (&json!(3), &json!(120)));
    assert_eq!(job["metadata"], json!({"asset": "a-42"}));
}

/// `--require` is sent as the job's `requires`; `status` says what the job requires and why it
/// waits (no node here has the label).
#[test]
fn submit_require_sends_labels_and_status_says_why_the_job_waits() {
    let server = Server::start();
    let id = submit(&server, &["--require", "gpu", "--require", "nvenc", "--", "-i", "in.mp4", "out.mp4"]);
    let job = json_of(&cli(&server, &["status", "--json", &id]));
    assert_eq!(job["requires"], json!(["gpu", "nvenc"]));
    assert_eq!(job["waiting_reason"], "no live node has labels [gpu, nvenc]");
    let run = cli(&server, &["status", &id]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("requires  gpu, nvenc\n"), "{run:?}");
    assert!(run.stdout.contains("waiting   no live node has labels [gpu, nvenc]\n"), "{run:?}");
    let run = cli(&server, &["submit", "--require", "GPU", "--", "-i", "in.mp4", "out.mp4"]);
    assert_eq!(run.code, 2, "an invalid label is the caller's mistake: {run:?}");
    assert!(run.stderr.contains("label `GPU` is not valid"), "{run:?}");
}

/// The first line `submit --wait` and `wait` print for a job no node can take says why it waits,
/// as `status` does (tester finding F24: they printed only `queued` and waited silently).
#[test]
fn waiting_on_a_job_no_node_can_take_says_why() {
    use std::io::{BufRead, BufReader};

    let server = Server::start();
    let first_line = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ffmpeg-worker-client"))
            .arg(args[0])
            .args(["--url", &server.base])
            .args(&args[1..])
            .env_remove("FFMPEG_WORKER_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        // It would wait for ever: the test is done with it.
        let _ = child.kill();
        let _ = child.wait();
        first
    };
    let first = first_line(&["submit", "--require", "gpu", "--wait", "--", "-i", "in.mp4", "out.mp4"]);
    let (id, rest) = first.split_once(' ').unwrap();
    assert!(is_job_id(id), "{first}");
    assert_eq!(rest, "queued (waiting: no live node has labels [gpu])\n");
    assert_eq!(first_line(&["wait", id]), first);
}

#[test]
fn status_logs_list_and_cancel_of_a_finished_job() {
    let server = Server::start();
    make_clip(server.data.path(), "input.mp4", 1);
    // One quoted string is the whole command line.
    let id = submit(&server, &["-i input.mp4 -c:v libx264 -preset ultrafast out.mp4"]);
    let waited = cli(&server, &["wait", &id]);
    assert_eq!(waited.code, 0, "{waited:?}");
    assert!(waited.stdout.ends_with(&format!("{id} completed\nout.mp4\n")), "{waited:?}");

    let status = cli(&server, &["status", &id]);
    assert_eq!(status.code, 0, "{status:?}");
    let field = |name: &str| {
        status
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with(' ')).map(str::trim))
            .unwrap_or_else(|| panic!("no `{name}` line: {status:?}"))
            .to_owned()
    };
    assert_eq!(field("id"), id);
    assert_eq!(field("status"), "completed");
    assert_eq!(field("command"), "-i input.mp4 -c:v libx264 -preset ultrafast out.mp4");
    assert_eq!(field("outputs"), "out.mp4");
    assert!(field("progress").starts_with("100.0% frame 25 "), "{status:?}");

    let logs = cli(&server, &["logs", &id]);
    assert_eq!(logs.code, 0, "{logs:?}");
    assert!(logs.stdout.contains("Duration: 00:00:01"), "the log is ffmpeg's stderr: {logs:?}");

    let list = json_of(&cli(&server, &["list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "completed");
    let table = cli(&server, &["list"]);
    assert_eq!(table.code, 0, "{table:?}");
    let rows: Vec<&str> = table.stdout.lines().collect();
    assert!(rows[0].starts_with("ID ") && rows[0].contains("STATUS"), "{table:?}");
    assert!(rows[1].starts_with(&format!("{id}  completed")), "{table:?}");

    let cancel = cli(&server, &["cancel", &id]);
    assert_eq!(cancel.code, 2, "{cancel:?}");
    assert!(cancel.stdout.is_empty(), "{cancel:?}");
    assert!(cancel.stderr.contains(&format!("job {id} is completed: cannot cancel")), "{cancel:?}");
    assert!(cancel.stderr.contains("409"), "{cancel:?}");

    let delete = cli(&server, &["delete", &id]);
    assert_eq!((delete.code, delete.stdout.as_str()), (0, format!("{id} deleted\n").as_str()), "{delete:?}");
    let gone = cli(&server, &["status", &id]);
    assert_eq!(gone.code, 2, "{gone:?}");
    assert!(gone.stderr.contains("404"), "{gone:?}");
    assert!(server.path("out.mp4").is_file(), "deleting the record keeps the outputs");
}

#[test]
fn a_failing_job_exits_1_and_prints_ffmpegs_error() {
    let server = Server::start();
    let run = cli(&server, &["submit", "--wait", "--", "-i", "missing.mp4", "out.mp4"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("failed"), "{run:?}");
    assert!(run.stderr.contains("missing.mp4: No such file or directory"), "{run:?}");
    assert!(!run.stdout.contains("completed"), "{run:?}");

    // --json: the finished job on stdout, still exit 1 with the error on stderr.
    let run = cli(&server, &["submit", "--wait", "--json", "--", "-i", "missing.mp4", "out.mp4"]);
    assert_eq!(run.code, 1, "{run:?}");
    let job: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(job["status"], "failed");
    assert!(job["error"].as_str().unwrap().contains("No such file or directory"), "{job}");
    assert!(run.stderr.contains("missing.mp4: No such file or directory"), "{run:?}");
}

#[test]
fn a_refused_command_exits_2_with_the_problem_detail_and_queues_nothing() {
    let server = Server::start();
    for args in [&["submit", "--", "-i", "../x.mp4", "out.mp4"][..], &["submit", "--wait", "-i ../x.mp4 out.mp4"]] {
        let run = cli(&server, args);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
        assert!(run.stderr.contains("argument 2 `../x.mp4`: path escapes the data directory"), "{run:?}");
        assert!(run.stderr.contains("422"), "{run:?}");
    }
    assert_eq!(json_of(&cli(&server, &["list", "--json"])), json!([]));
}

#[test]
fn a_queued_job_is_cancelled_and_waiting_on_it_exits_1() {
    // No worker slot: jobs stay queued.
    let server = Server::start_with(Options::default());
    let id = submit(&server, &["--", "-i", "input.mp4", "out.mp4"]);
    let status = json_of(&cli(&server, &["status", "--json", &id]));
    assert_eq!(status["status"], "queued");
    let delete = cli(&server, &["delete", &id]);
    assert_eq!(delete.code, 2, "a queued job's record cannot be deleted: {delete:?}");
    assert!(delete.stderr.contains("409"), "{delete:?}");

    let cancel = cli(&server, &["cancel", &id]);
    assert_eq!(cancel.code, 0, "{cancel:?}");
    assert_eq!(cancel.stdout, format!("{id} cancelled\n"));

    let wait = cli(&server, &["wait", &id]);
    assert_eq!(wait.code, 1, "{wait:?}");
    assert!(wait.stderr.contains(&format!("{id} cancelled")), "{wait:?}");

    let again = cli(&server, &["cancel", "--json", &id]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("cannot cancel"), "{again:?}");

    let unknown = cli(&server, &["status", "job_0000000000000000"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.stderr.contains("job job_0000000000000000 not found"), "{unknown:?}");
    let logs = cli(&server, &["logs", "job_0000000000000000"]);
    assert_eq!(logs.code, 2, "{logs:?}");
}

#[test]
fn list_filters_pages_and_follows_next_links_with_all() {
    let server = Server::start_with(Options::default());
    let ids: Vec<String> =
        (0..5).map(|i| submit(&server, &["--", "-i", "input.mp4", &format!("out{i}.mp4")])).collect();
    let listed_ids = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect()
    };

    let first_page = json_of(&cli(&server, &["list", "--json", "--limit", "2"]));
    assert_eq!(listed_ids(&first_page), ids[..2]);
    let all = json_of(&cli(&server, &["list", "--json", "--limit", "2", "--all"]));
    assert_eq!(listed_ids(&all), ids, "every page, oldest first");
    assert!(all.as_array().unwrap().iter().all(|j| j["status"] == "queued" && j["command"].is_string()));
    let queued = json_of(&cli(&server, &["list", "--json", "--status", "queued", "--limit", "3", "--all"]));
    assert_eq!(listed_ids(&queued), ids);
    assert_eq!(json_of(&cli(&server, &["list", "--json", "--status", "completed"])), json!([]));

    let table = cli(&server, &["list", "--limit", "2"]);
    assert_eq!(table.code, 0, "{table:?}");
    assert_eq!(table.stdout.lines().count(), 3, "header and two rows: {table:?}");
    assert!(table.stderr.contains("--all"), "says more jobs follow: {table:?}");
    let empty = cli(&server, &["list", "--status", "failed"]);
    assert_eq!((empty.code, empty.stdout.as_str()), (0, "no jobs\n"));

    // Several statuses: a comma list, or --status again (tester finding H11).
    let cancel = cli(&server, &["cancel", &ids[1]]);
    assert_eq!(cancel.code, 0, "{cancel:?}");
    let cancelled = json_of(&cli(&server, &["list", "--json", "--status", "cancelled,failed"]));
    assert_eq!(listed_ids(&cancelled), [ids[1].clone()]);
    let both = json_of(&cli(
        &server,
        &["list", "--json", "--status", "cancelled", "--status", "queued", "--limit", "2", "--all"],
    ));
    assert_eq!(listed_ids(&both), ids, "every page of both statuses, oldest first");
    let wrong = cli(&server, &["list", "--status", "cancelled,done"]);
    assert_eq!(wrong.code, 2, "{wrong:?}");
    assert!(wrong.stderr.contains("'done'") && wrong.stderr.contains("possible values"), "{wrong:?}");
}

#[test]
fn an_unreachable_server_exits_2_with_a_clear_message() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        &["status", "job_0123456789abcdef", "--url", &url][..],
        &["submit", "--wait", "--url", &url, "--", "-i", "a.mp4", "b.mp4"],
    ] {
        let run = run_with(&[], args);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains(&format!("cannot reach the server at {url}/")), "{run:?}");
        assert!(run.stderr.contains("FFMPEG_WORKER_URL"), "says how to point at the server: {run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
    // A submission is sent again (with its key) when no answer came: 4 times by default.
    let run = run_with(&[], &["submit", "--url", &url, "--", "-i", "a.mp4", "b.mp4"]);
    assert_eq!((run.code, run.stderr.matches("sending it again").count()), (2, 4), "{run:?}");
    let run = run_with(&[], &["submit", "--retries", "0", "--url", &url, "--", "-i", "a.mp4", "b.mp4"]);
    assert_eq!((run.code, run.stderr.matches("sending it again").count()), (2, 0), "{run:?}");
}

#[test]
fn the_token_is_sent_as_a_bearer_token() {
    let server = Server::start_with(Options { concurrency: 0, tokens: vec!["s3cret".to_owned()] });
    let url = server.base.as_str();
    let without = run_with(&[], &["list", "--url", url]);
    assert_eq!(without.code, 2, "{without:?}");
    assert!(without.stderr.contains("401") && without.stderr.contains("FFMPEG_WORKER_TOKEN"), "{without:?}");
    let wrong = run_with(&[], &["list", "--url", url, "--token", "nope"]);
    assert_eq!(wrong.code, 2, "{wrong:?}");
    let flag = run_with(&[], &["list", "--json", "--url", url, "--token", "s3cret"]);
    assert_eq!(json_of(&flag), json!([]));
    let env = run_with(&[("FFMPEG_WORKER_URL", url), ("FFMPEG_WORKER_TOKEN", "s3cret")], &["list", "--json"]);
    assert_eq!(json_of(&env), json!([]));
}

#[test]
fn usage_errors_exit_2_before_any_request() {
    for args in [
        &["submit"][..],
        &["submit", "--metadata", "no-equals-sign", "--", "-i", "a.mp4", "b.mp4"],
        &["submit", "--timeout", "0", "--", "-i", "a.mp4", "b.mp4"],
        &["list", "--limit", "0"],
        &["list", "--status", "sleeping"],
        &["status"],
        &["status", "job_0123456789abcdef", "--url", "localhost:8000"],
    ] {
        let run = run_with(&[], args);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains("error:"), "{run:?}");
        assert!(!run.stderr.contains("cannot reach"), "refused before connecting: {run:?}");
    }
}

#[test]
fn waiting_stops_when_its_reader_goes_away_and_the_job_carries_on() {
    use std::io::{BufRead, BufReader};

    let server = Server::start();
    make_clip(server.data.path(), "long.mp4", 30);
    // `-re` reads the input at its own rate: the job runs for 30 s whatever the machine's speed.
    let id = submit(&server, &["--", "-re", "-i", "long.mp4", "-c", "copy", "out.mp4"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ffmpeg-worker-client"))
        .args(["wait", &id, "--url", &server.base])
        .env_remove("FFMPEG_WORKER_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `ffmpeg-worker wait ID | head -1`: read one line, then close the pipe.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with(&format!("{id} ")), "{first}");
    let status = exit_status(&mut child, &format!("wait {id}"));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "a closed pipe is not an error to report: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let job = json_of(&cli(&server, &["status", "--json", &id]));
    assert_eq!(job["status"], "running", "the client stopped before the job ended: {job}");
    assert_eq!(cli(&server, &["cancel", &id]).code, 0);
}

/// `--webhook-url` and `--webhook-event` reach the server: one without a signing key refuses
/// the job (never accepts it unsigned), naming the setting; an unknown event is a usage error.
#[test]
fn submit_sends_the_webhook_flags() {
    let server = Server::start();
    let run = cli(
        &server,
        &[
            "submit",
            "--webhook-url",
            "https://example.com/h",
            "--webhook-event",
            "job.completed",
            "--",
            "-i",
            "a.mp4",
            "b.mp4",
        ],
    );
    assert_eq!(run.code, 2, "a refused request: {run:?}");
    assert!(run.stderr.contains("WEBHOOK_SECRET") && run.stderr.contains("422"), "{run:?}");
    let run = cli(&server, &["submit", "--webhook-url", "https://example.com/h", "--webhook-event", "done", "x"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("is not a webhook event"), "{run:?}");
}

/// `put`, `ls`, `get`, `rm` against the real server: a clip goes up (streamed), is listed,
/// comes back byte for byte, and is deleted; refusals exit 2 with the server's detail.
#[test]
fn put_ls_get_rm_round_trip_a_file() {
    let server = Server::start();
    let local = tempfile::tempdir().unwrap();
    let clip = make_clip(local.path(), "clip.mp4", 1);
    let content = std::fs::read(&clip).unwrap();
    let clip_arg = clip.to_str().unwrap();

    let put = json_of(&cli(&server, &["put", "--json", clip_arg, "in/clip #1.mp4"]));
    assert_eq!(put["path"], "in/clip #1.mp4");
    assert_eq!(put["size_bytes"], content.len());
    assert_eq!(std::fs::read(server.path("in/clip #1.mp4")).unwrap(), content);
    // Default remote name: the local file's name.
    assert_eq!(cli(&server, &["put", clip_arg]).code, 0);
    assert!(server.path("clip.mp4").is_file());
    let refused = cli(&server, &["put", "--no-clobber", clip_arg]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("exists"), "{refused:?}");

    let listed = json_of(&cli(&server, &["ls", "--json", "in/"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["path"], "in/clip #1.mp4");
    let table = cli(&server, &["ls"]);
    assert!(table.stdout.contains("in/clip #1.mp4") && table.stdout.contains("clip.mp4"), "{table:?}");

    let into = local.path().join("down");
    std::fs::create_dir(&into).unwrap();
    let get = cli(&server, &["get", "in/clip #1.mp4", into.to_str().unwrap()]);
    assert_eq!(get.code, 0, "{get:?}");
    assert_eq!(std::fs::read(into.join("clip #1.mp4")).unwrap(), content);
    assert!((ffprobe_duration(&into.join("clip #1.mp4")) - 1.0).abs() < 0.2);
    // A directory that does not exist yet: named with a trailing `/`, or as the file's parent.
    let new_dir = format!("{}/", local.path().join("new/dir").display());
    assert_eq!(cli(&server, &["get", "in/clip #1.mp4", &new_dir]).code, 0);
    assert_eq!(std::fs::read(local.path().join("new/dir/clip #1.mp4")).unwrap(), content);
    let named = local.path().join("other/copy.mp4");
    assert_eq!(cli(&server, &["get", "in/clip #1.mp4", named.to_str().unwrap()]).code, 0);
    assert_eq!(std::fs::read(&named).unwrap(), content);
    let missing = cli(&server, &["get", "nothing.mp4", into.to_str().unwrap()]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(!into.join("nothing.mp4").exists() && !into.join("nothing.mp4.part").exists());

    let escape = cli(&server, &["rm", "../x"]);
    assert_eq!(escape.code, 2);
    assert!(escape.stderr.contains("escapes the data directory"), "{escape:?}");
    assert_eq!(cli(&server, &["rm", "in"]).code, 2, "a directory needs --recursive");
    assert_eq!(cli(&server, &["rm", "-r", "in"]).code, 0);
    assert_eq!(cli(&server, &["rm", "clip.mp4"]).code, 0);
    assert_eq!(json_of(&cli(&server, &["ls", "--json"])), json!([]));
}

/// A local directory given to `put` or `submit --upload` is the caller's mistake, said as such
/// (tester finding G13: "cannot reach the server ... is the server running?"), and nothing is
/// submitted; a remote path ending in `/` is a directory the file goes in under its own name,
/// as for `get`.
#[test]
fn uploading_a_directory_is_refused_locally_and_a_trailing_slash_names_a_directory() {
    let server = Server::start_with(Options::default());
    let local = tempfile::tempdir().unwrap();
    let dir = local.path().to_str().unwrap();
    for args in
        [&["put", dir, "cli/dir"][..], &["submit", "--upload", &format!("{dir}=in/x"), "--", "-i", "in/x", "o.mp4"]]
    {
        let run = cli(&server, args);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains(&format!("local file `{dir}`: is a directory")), "{run:?}");
        assert!(!run.stderr.contains("server"), "{run:?}");
    }
    assert_eq!(json_of(&cli(&server, &["list", "--json"])), json!([]), "nothing submitted");

    let clip = local.path().join("a.mp4");
    std::fs::write(&clip, b"not really a clip").unwrap();
    let put = json_of(&cli(&server, &["put", "--json", clip.to_str().unwrap(), "cli/"]));
    assert_eq!(put["path"], "cli/a.mp4");
    assert_eq!(std::fs::read(server.path("cli/a.mp4")).unwrap(), b"not really a clip");
    let spec = format!("{}=in/", clip.display());
    let submitted = cli(&server, &["submit", "--upload", &spec, "--", "-i", "in/a.mp4", "o.mp4"]);
    assert_eq!(submitted.code, 0, "{submitted:?}");
    assert!(server.path("in/a.mp4").is_file(), "{submitted:?}");
}

/// `submit -- WORDS` sends the words as the job's `args`, each one argument, as the shell split
/// them (spaces, quotes, backslashes untouched); one quoted string is a command line.
#[test]
fn submit_sends_the_words_after_dashes_as_the_argument_list() {
    let server = Server::start_with(Options::default());
    let words = ["-i", "my clip.mp4", "-metadata", r#"title=it's "a\b" $HOME"#, r"out/C:\x.mp4"];
    let mut args = vec!["--"];
    args.extend(words);
    let id = submit(&server, &args);
    let job = json_of(&cli(&server, &["status", "--json", &id]));
    assert_eq!(job["args"], serde_json::json!(words), "{job}");
    let id = submit(&server, &[r#"-i "my clip.mp4" out.mp4"#]);
    let job = json_of(&cli(&server, &["status", "--json", &id]));
    assert_eq!(job["args"], serde_json::json!(["-i", "my clip.mp4", "out.mp4"]), "{job}");
    assert_eq!(job["command"], r#"-i "my clip.mp4" out.mp4"#, "{job}");
}

#[test]
fn probe_describes_a_file_as_text_and_json_and_reports_problems() {
    let server = Server::start();
    std::fs::create_dir(server.data.path().join("in dir")).unwrap();
    make_clip(&server.data.path().join("in dir"), "clip #1.mp4", 1);
    let text = cli(&server, &["probe", "in dir/clip #1.mp4"]);
    assert_eq!(text.code, 0, "{text:?}");
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert!(lines[0].starts_with("in dir/clip #1.mp4: mov,mp4,m4a,3gp,3g2,mj2 (QuickTime / MOV), 1.0"), "{text:?}");
    assert!(lines[1].starts_with("  #0 video: h264 (") && lines[1].contains(", 160x120, 25 fps, yuv420p"), "{text:?}");
    assert!(lines[2].starts_with("  #1 audio: aac (LC), 44100 Hz, mono, 1 channel"), "{text:?}");

    let json = json_of(&cli(&server, &["probe", "--json", "in dir/clip #1.mp4"]));
    assert_eq!(json["path"], "in dir/clip #1.mp4");
    assert_eq!((&json["streams"][0]["width"], &json["streams"][1]["sample_rate"]), (&json!(160), &json!(44100)));

    for (path, detail) in
        [("missing.mp4", "no file `missing.mp4`"), ("../secret.mp4", "path escapes the data directory")]
    {
        let run = cli(&server, &["probe", path]);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains(detail), "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
}

/// `submit --upload LOCAL[=REMOTE] --wait --download DIR` against the real server: the inputs go
/// up first, the job runs on them, and its outputs (nested paths, several files) come back
/// into DIR under their paths, byte for byte.
#[test]
fn submit_uploads_its_inputs_then_downloads_its_outputs() {
    let server = Server::start();
    let local = tempfile::tempdir().unwrap();
    let clip = make_clip(local.path(), "my clip.mp4", 1);
    let logo = local.path().join("logo.txt");
    std::fs::write(&logo, "a side file, uploaded under its own name").unwrap();
    let results = local.path().join("results");
    let run = cli(
        &server,
        &[
            "submit",
            "--upload",
            &format!("{}=in/clip.mp4", clip.display()),
            "--upload",
            logo.to_str().unwrap(),
            "--wait",
            "--download",
            results.to_str().unwrap(),
            "--",
            "-i",
            "in/clip.mp4",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "out/clip.mp4",
            "-map",
            "0:v",
            "-vf",
            "fps=2",
            "out/thumbs/t%02d.png",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(std::fs::read(server.path("in/clip.mp4")).unwrap(), std::fs::read(&clip).unwrap());
    assert!(server.path("logo.txt").is_file(), "LOCAL alone is stored under its file name");
    assert!(run.stderr.contains("-> in/clip.mp4"), "{run:?}");

    let job_files: Vec<String> = run.stdout.lines().filter(|l| l.starts_with("out/")).map(str::to_owned).collect();
    assert!(job_files.len() >= 3, "the video and at least two thumbnails: {run:?}");
    for file in &job_files {
        let got = std::fs::read(results.join(file)).unwrap_or_else(|e| panic!("{file} downloaded: {e}"));
        assert_eq!(got, std::fs::read(server.path(file)).unwrap(), "{file} byte for byte");
        assert!(run.stderr.contains(&format!("{file} -> ")), "{run:?}");
    }
    assert!((ffprobe_duration(&results.join("out/clip.mp4")) - 1.0).abs() < 0.2);
    let mut left: Vec<_> = walk(&results);
    left.sort();
    let mut expected = job_files.clone();
    expected.sort();
    assert_eq!(left, expected, "exactly the outputs, no .part file");
}

/// A failed upload submits nothing; a failed job downloads nothing; `--download` needs `--wait`.
#[test]
fn submit_upload_and_download_failures() {
    let server = Server::start();
    let local = tempfile::tempdir().unwrap();
    let results = local.path().join("results");
    let missing = local.path().join("missing.mp4");
    let run = cli(&server, &["submit", "--upload", missing.to_str().unwrap(), "--", "-i", "missing.mp4", "o.mp4"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("missing.mp4"), "{run:?}");
    let clip = make_clip(local.path(), "c.mp4", 1);
    let reserved = format!("{}=../c.mp4", clip.display());
    let run = cli(&server, &["submit", "--upload", &reserved, "--", "-i", "c.mp4", "o.mp4"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("escapes the data directory"), "{run:?}");
    assert_eq!(json_of(&cli(&server, &["list", "--json"])), json!([]), "nothing was submitted");

    // The input goes up, but the job fails (no such stream): nothing comes down.
    let run = cli(
        &server,
        &[
            "submit",
            "--upload",
            clip.to_str().unwrap(),
            "--wait",
            "--download",
            results.to_str().unwrap(),
            "--",
            "-i",
            "c.mp4",
            "-map",
            "0:s",
            "out/x.mp4",
        ],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!results.exists(), "nothing downloaded for a failed job");

    let run = cli(&server, &["submit", "--download", results.to_str().unwrap(), "--", "-i", "c.mp4", "o.mp4"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--wait"), "{run:?}");
}

/// Every file below `dir`, relative, `/`-separated.
fn walk(dir: &std::path::Path) -> Vec<String> {
    fn go(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                go(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    go(dir, dir, &mut out);
    out
}

//! What the operating system would refuse when starting ffmpeg is refused at submit: the
//! measure agrees with the kernel, and `Jobs::submit` answers with the limit, queueing nothing.

use std::path::Path;
use std::sync::Arc;

use ffmpeg_core::sandbox::Sandbox;
use jobs::exec_limits::{ExecLimitError, ExecLimits};
use jobs::store::{JobStore, ListQuery};
use jobs::{FfmpegConfig, FfmpegRunner, Jobs, JobsConfig, MemoryStore, SubmitError, SubmitOptions};

/// Arguments that make `execve(program, args, [])` need exactly `bytes` bytes.
fn args_needing(program: &Path, bytes: usize) -> Vec<String> {
    let pointer = std::mem::size_of::<usize>();
    let mut left = bytes - ExecLimits::needed_bytes(program, &[]);
    let mut args = Vec::new();
    // Each argument costs its length, a NUL byte and a pointer; the last one takes the rest.
    while left > 100_000 + 1 + pointer + 1 + pointer {
        args.push("a".repeat(100_000));
        left -= 100_000 + 1 + pointer;
    }
    args.push("b".repeat(left - 1 - pointer));
    assert_eq!(ExecLimits::needed_bytes(program, &args), bytes);
    args
}

#[test]
fn the_measure_agrees_with_the_kernel_at_the_limit() {
    let program = Path::new("/bin/true");
    let limits = ExecLimits::of_this_process();
    let start =
        |args: &[String]| std::process::Command::new(program).args(args).env_clear().status().map(|s| s.success());

    let at_limit = args_needing(program, limits.total_bytes);
    assert_eq!(limits.check_args(program, &at_limit, Path::new("/data")), Ok(()));
    assert!(start(&at_limit).unwrap(), "the kernel starts what the measure accepts");

    let past = args_needing(program, limits.total_bytes + 1);
    assert!(matches!(
        limits.check_args(program, &past, Path::new("/data")),
        Err(ExecLimitError::CommandTooLong { .. })
    ));
    let refused = start(&past).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(7), "E2BIG from the kernel too: {refused}");

    let longest = vec!["c".repeat(limits.argument_bytes - 1)];
    assert!(start(&longest).unwrap());
    let too_long = vec!["c".repeat(limits.argument_bytes)];
    assert_eq!(start(&too_long).unwrap_err().raw_os_error(), Some(7));
    assert!(matches!(
        limits.check_args(program, &too_long, Path::new("/data")),
        Err(ExecLimitError::ArgumentTooLong { bytes, .. }) if bytes == limits.argument_bytes
    ));
}

#[test]
fn the_total_follows_the_stack_limit() {
    assert_eq!(ExecLimits::with_stack_limit(Some(8 << 20)).total_bytes, 2 << 20);
    assert_eq!(ExecLimits::with_stack_limit(None).total_bytes, 6 << 20);
    assert_eq!(ExecLimits::with_stack_limit(Some(64 << 20)).total_bytes, 6 << 20);
    assert_eq!(ExecLimits::with_stack_limit(Some(64 << 10)).total_bytes, 128 << 10);
}

struct Fixture {
    _dir: tempfile::TempDir,
    jobs: Arc<Jobs>,
    store: Arc<dyn JobStore>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let runner = FfmpegRunner::new(FfmpegConfig::new("ffmpeg", sandbox.root()));
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let jobs = Jobs::new(Arc::clone(&store), Arc::new(runner), sandbox, JobsConfig::default());
    Fixture { _dir: dir, jobs, store }
}

async fn refused(f: &Fixture, command: &str) -> ExecLimitError {
    match f.jobs.submit(command, SubmitOptions::default()).await {
        Err(SubmitError::ExecLimit(e)) => {
            assert!(f.store.list(&ListQuery::default()).await.unwrap().is_empty(), "nothing is queued");
            e
        }
        other => panic!("expected an exec-limit refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn thousands_of_inputs_are_refused_at_submit_with_the_sizes() {
    let f = fixture();
    let many = format!("{} -filter_complex concat=n=5000 out.mp4", "-i in.mp4 ".repeat(5000));
    let e = refused(&f, &many).await;
    let ExecLimitError::CommandTooLong { bytes, limit, inputs, per_input } = &e else { panic!("{e:?}") };
    assert_eq!((*limit, *inputs), (ExecLimits::of_this_process().total_bytes, 5000));
    assert!(*bytes > *limit && *per_input > 100, "{e:?}");
    let message = e.to_string();
    assert!(message.contains(&bytes.to_string()) && message.contains("5000 inputs"), "{message}");

    // A few inputs are fine.
    f.jobs.submit(&format!("{} out.mp4", "-i in.mp4 ".repeat(20)), SubmitOptions::default()).await.unwrap();
}

#[tokio::test]
async fn a_file_name_past_name_max_is_refused_and_one_at_it_is_accepted() {
    let f = fixture();
    let long = format!("{}.mp4", "n".repeat(296));
    let e = refused(&f, &format!("-i in.mp4 {long}")).await;
    assert_eq!(e, ExecLimitError::NameTooLong { path: long.clone(), bytes: 300, limit: 255 });
    assert!(e.to_string().contains(&long), "{e}");

    let fits = format!("{}.mp4", "n".repeat(251));
    f.jobs.submit(&format!("-i in.mp4 {fits}"), SubmitOptions::default()).await.unwrap();
    // ... and the file system agrees.
    std::fs::write(f.jobs.sandbox().root().join(&fits), b"").unwrap();
    let past = f.jobs.sandbox().root().join(format!("{}.mp4", "n".repeat(252)));
    assert_eq!(std::fs::write(past, b"").unwrap_err().raw_os_error(), Some(36), "ENAMETOOLONG");
}

#[tokio::test]
async fn a_pass_log_prefix_counts_what_ffmpeg_appends() {
    let f = fixture();
    let prefix = "p".repeat(250);
    let e = refused(&f, &format!("-i in.mp4 -passlogfile {prefix} -pass 1 -f null -")).await;
    assert!(matches!(e, ExecLimitError::NameTooLong { bytes, .. } if bytes > 255), "{e:?}");
}

#[tokio::test]
async fn a_path_past_path_max_is_refused() {
    let f = fixture();
    let dir = "d".repeat(200);
    let nested = vec![dir.as_str(); 21].join("/");
    // Directories that do not exist yet: the runner creates an output's directories.
    let e = refused(&f, &format!("-i in.mp4 {nested}/out.mp4")).await;
    assert!(matches!(&e, ExecLimitError::PathTooLong { bytes, limit: 4095, .. } if *bytes > 4095), "{e:?}");
}

#[tokio::test]
async fn one_argument_past_max_arg_strlen_is_refused() {
    let f = fixture();
    let title = "t".repeat(140_000);
    let e = refused(&f, &format!("-i in.mp4 -metadata title={title} out.mp4")).await;
    assert!(e.to_string().contains("starting `title=ttt"), "{e}");
}

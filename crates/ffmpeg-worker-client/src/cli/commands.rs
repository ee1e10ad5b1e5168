//! What each subcommand does, and how it ends: the exit status (see the binary's docs) and
//! the message on stderr.

use std::io::{self, Write as _};
use std::process::ExitCode;

use ffmpeg_worker_client::api::{CreateJobRequest, JobResponse, JobStatusWire};
use ffmpeg_worker_client::{
    Client, ClientError, ListQuery, Submission, SubmitRetry, WaitEvent, WaitOptions, new_idempotency_key,
};

use crate::args::{Command, Connection, ListArgs, SubmitArgs, Submitted, upload_spec};
use crate::progress::{Reporter, Stream};
use crate::shown;
use crate::table::{job_text, jobs_table, media_text};

/// Exit status when an awaited job failed or was cancelled.
const EXIT_JOB_UNSUCCESSFUL: u8 = 1;
/// Exit status for usage errors (clap's own), an unreachable server, or an error answer.
const EXIT_ERROR: u8 = 2;
/// Exit status when waiting was interrupted with Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

/// How a subcommand ended, when it did not fail itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    JobUnsuccessful,
    Interrupted,
}

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot write the output")]
    Io(#[from] io::Error),
    /// An argument that cannot be used (`--upload` without a local file name).
    #[error("{0}")]
    Usage(String),
}

/// Runs one subcommand and returns the process exit status.
pub(crate) async fn run(command: Command) -> ExitCode {
    match execute(command).await {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::JobUnsuccessful) => ExitCode::from(EXIT_JOB_UNSUCCESSFUL),
        Ok(Outcome::Interrupted) => ExitCode::from(EXIT_INTERRUPTED),
        // `ffmpeg-worker list | head`: the reader is gone, nothing to report.
        Err(CliError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// `ffmpeg-worker: <error>: <innermost cause>` and, where one helps, a hint.
fn report(e: &CliError) {
    let hint = match e {
        CliError::Client(ClientError::Unreachable { .. }) => {
            Some("is the server running? Point the client at it with --url or FFMPEG_WORKER_URL")
        }
        CliError::Client(e) if e.status() == Some(401) => {
            Some("pass the server's API token with --token or FFMPEG_WORKER_TOKEN")
        }
        _ => None,
    };
    let message = error_chain(e);
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "ffmpeg-worker: {}", shown::text(&message));
    if let Some(hint) = hint {
        let _ = writeln!(stderr, "  hint: {hint}");
    }
}

/// `error` and its innermost cause, which says what really failed ("Connection refused (os
/// error 111)"), not reqwest's "error sending request for url (...)".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut cause = error.source();
    let mut innermost = None;
    while let Some(c) = cause {
        innermost = Some(c);
        cause = c.source();
    }
    match innermost {
        Some(innermost) => format!("{error}: {innermost}"),
        None => error.to_string(),
    }
}

fn connect(connection: &Connection) -> Result<Client, ClientError> {
    Client::new(connection.url.as_str(), connection.token.as_deref())
}

/// Writes `text` and a line break (unless it ends with one) on stdout, control characters
/// but line breaks and tabs escaped ([`shown::text`]; names are escaped whole by the caller).
fn out(text: &str) -> io::Result<()> {
    let text = shown::text(text);
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()
}

fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let json = serde_json::to_string(value).map_err(io::Error::other)?;
    Ok(out(&json)?)
}

async fn execute(command: Command) -> Result<Outcome, CliError> {
    match command {
        Command::Submit(args) => submit(args).await,
        Command::Status(args) => {
            let job = connect(&args.connection)?.get(&args.id).await?;
            if args.json {
                print_json(&job)?;
            } else {
                out(&job_text(&job))?;
            }
            Ok(Outcome::Success)
        }
        Command::List(args) => list(args).await,
        Command::Cancel(args) => {
            let job = connect(&args.connection)?.cancel(&args.id).await?;
            if args.json {
                print_json(&job)?;
            } else {
                out(&format!("{} {}", job.id, job.status))?;
            }
            Ok(Outcome::Success)
        }
        Command::Delete(args) => {
            connect(&args.connection)?.delete(&args.id).await?;
            out(&format!("{} deleted", args.id))?;
            Ok(Outcome::Success)
        }
        Command::Logs(args) => {
            let log = connect(&args.connection)?.log(&args.id).await?;
            if log.is_empty() {
                let _ = writeln!(
                    io::stderr(),
                    "job {} has no log yet: it is kept once the job finishes",
                    shown::name(&args.id)
                );
            } else {
                out(&log)?;
            }
            Ok(Outcome::Success)
        }
        Command::Wait(args) => Ok(follow(&connect(&args.connection)?, &args.id, None, args.json).await?.0),
        Command::Put(args) => put(args).await,
        Command::Get(args) => get(args).await,
        Command::Ls(args) => {
            let files = connect(&args.connection)?.list_all_files(&args.prefix).await?;
            if args.json {
                print_json(&files)?;
            } else {
                for file in &files {
                    out(&format!(
                        "{:>12}  {}  {}",
                        file.size_bytes,
                        crate::table::whole_seconds(file.modified_at),
                        shown::name(&file.path)
                    ))?;
                }
            }
            Ok(Outcome::Success)
        }
        Command::Rm(args) => {
            connect(&args.connection)?.delete_file(&args.remote, args.recursive).await?;
            Ok(Outcome::Success)
        }
        Command::Probe(args) => {
            let media = connect(&args.connection)?.probe(&args.path).await?;
            if args.json {
                print_json(&media)?;
            } else {
                out(&media_text(&media))?;
            }
            Ok(Outcome::Success)
        }
    }
}

/// Files at least this large get a progress bar (on a terminal).
const BAR_FROM_BYTES: u64 = 8 * 1024 * 1024;

/// A byte-count progress bar on stderr, shown only on a terminal and for large files.
fn transfer_bar(size: Option<u64>) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    let show = io::stderr().is_terminal() && size.is_none_or(|s| s >= BAR_FROM_BYTES);
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match size {
        Some(size) => indicatif::ProgressBar::new(size),
        None => indicatif::ProgressBar::no_length(),
    };
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

async fn put(args: crate::args::PutArgs) -> Result<Outcome, CliError> {
    let client = connect(&args.connection)?;
    let name = args.local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // A trailing `/` names a directory, as for `get`: the file goes in it under its own name.
    let remote = match &args.remote {
        Some(remote) if remote.ends_with('/') => format!("{remote}{name}"),
        Some(remote) => remote.clone(),
        None => name,
    };
    let stored = upload(&client, &args.local, &remote, args.no_clobber).await?;
    if args.json {
        print_json(&stored)?;
    } else {
        out(&format!("{} {} bytes sha256 {}", shown::name(&stored.path), stored.size_bytes, stored.sha256))?;
    }
    Ok(Outcome::Success)
}

async fn get(args: crate::args::GetArgs) -> Result<Outcome, CliError> {
    let client = connect(&args.connection)?;
    let name = args.remote.rsplit('/').next().unwrap_or(&args.remote).to_owned();
    // A trailing `/` names a directory, as an existing directory does: the file goes in it
    // under its own name. Missing directories are created, as `submit --download` does.
    let local = match args.local {
        Some(local) if local.is_dir() || local.as_os_str().as_encoded_bytes().ends_with(b"/") => local.join(&name),
        Some(local) => local,
        None => std::path::PathBuf::from(&name),
    };
    create_parent(&local).await?;
    download(&client, &args.remote, &local).await?;
    Ok(Outcome::Success)
}

/// Downloads `remote` into `local` with a progress bar (large files, on a terminal), then says
/// so on stderr.
async fn download(client: &Client, remote: &str, local: &std::path::Path) -> Result<(), CliError> {
    let bar = std::cell::RefCell::new(None::<indicatif::ProgressBar>);
    let written = client
        .download(
            remote,
            local,
            |size| *bar.borrow_mut() = Some(transfer_bar(size)),
            |received| {
                if let Some(bar) = bar.borrow().as_ref() {
                    bar.set_position(received);
                }
            },
        )
        .await;
    if let Some(bar) = bar.borrow().as_ref() {
        bar.finish_and_clear();
    }
    let written = written?;
    let _ = writeln!(
        io::stderr(),
        "{} -> {} ({written} bytes)",
        shown::name(remote),
        shown::name(&local.display().to_string())
    );
    Ok(())
}

/// Uploads `local` to `remote` with a progress bar (large files, on a terminal), then says so
/// on stderr.
async fn upload(
    client: &Client,
    local: &std::path::Path,
    remote: &str,
    create_only: bool,
) -> Result<ffmpeg_worker_client::api::FileResponse, CliError> {
    let size = std::fs::metadata(local).map(|m| m.len()).ok();
    let bar = transfer_bar(size);
    let progress = bar.clone();
    let stored = client.upload(local, remote, create_only, move |sent| progress.set_position(sent)).await;
    bar.finish_and_clear();
    Ok(stored?)
}

/// Where output `remote` (a path relative to the data directory, as the server listed it)
/// goes under `dir`: refused unless every component is a plain name, so that no answer can
/// make the client write outside `dir`.
fn download_target(dir: &std::path::Path, remote: &str) -> Result<std::path::PathBuf, CliError> {
    use std::path::Component;
    let relative = std::path::Path::new(remote);
    let plain = !remote.is_empty() && relative.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        let remote = shown::name(remote);
        return Err(CliError::Usage(format!("the server listed the output `{remote}`, which is not a relative path")));
    }
    Ok(dir.join(relative))
}

/// Creates the directories `local` is to be written in.
async fn create_parent(local: &std::path::Path) -> Result<(), ClientError> {
    match local.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => tokio::fs::create_dir_all(parent)
            .await
            .map_err(|source| ClientError::Local { path: parent.to_owned(), source }),
        None => Ok(()),
    }
}

/// `--download DIR`: every output file of the completed `job` into `dir`, keeping its path.
async fn download_outputs(client: &Client, job: &JobResponse, dir: &std::path::Path) -> Result<(), CliError> {
    if job.output_files.is_empty() {
        let _ = writeln!(io::stderr(), "{} wrote no files: nothing to download", job.id);
        return Ok(());
    }
    for remote in &job.output_files {
        let local = download_target(dir, remote)?;
        create_parent(&local).await?;
        download(client, remote, &local).await?;
    }
    Ok(())
}

async fn submit(args: SubmitArgs) -> Result<Outcome, CliError> {
    let client = connect(&args.connection)?;
    // Every upload first: nothing is submitted unless all went up.
    let uploads =
        args.uploads.iter().map(|spec| upload_spec(spec).map_err(CliError::Usage)).collect::<Result<Vec<_>, _>>()?;
    for (local, remote) in &uploads {
        let stored = upload(&client, local, remote, false).await?;
        let (local, remote) = (local.display().to_string(), &stored.path);
        let _ =
            writeln!(io::stderr(), "{} -> {} ({} bytes)", shown::name(&local), shown::name(remote), stored.size_bytes);
    }
    let (command, argv) = match args.submitted() {
        Submitted::Line(line) => (Some(line), None),
        Submitted::Args(argv) => (None, Some(argv)),
    };
    let request = CreateJobRequest {
        command,
        args: argv,
        priority: args.priority,
        timeout_seconds: args.timeout,
        metadata: args.metadata.iter().cloned().collect(),
        webhook_url: args.webhook_url.clone(),
        webhook_events: (!args.webhook_events.is_empty()).then(|| args.webhook_events.clone()),
        requires: args.requires.clone(),
    };
    let key = args.idempotency_key.clone().unwrap_or_else(new_idempotency_key);
    let retry = SubmitRetry { retries: args.retries, ..SubmitRetry::default() };
    let notice = |error: &ClientError, wait: std::time::Duration| {
        let _ = writeln!(
            io::stderr(),
            "submit: {}; sending it again in {:.1} s with the same Idempotency-Key",
            error_chain(error),
            wait.as_secs_f64()
        );
    };
    let Submission { job, replayed } = client.submit_retrying(&request, &key, &retry, notice).await?;
    if replayed {
        let _ = writeln!(
            io::stderr(),
            "submit: the server already had this submission (Idempotency-Key {key}): job {}",
            job.id
        );
    }
    if args.wait {
        let id = job.id.clone();
        let (outcome, finished) = follow(&client, &id, Some(job), args.json).await?;
        if let (Outcome::Success, Some(job), Some(dir)) = (outcome, &finished, &args.download) {
            download_outputs(&client, job, dir).await?;
        }
        return Ok(outcome);
    }
    if args.json {
        print_json(&job)?;
    } else {
        // The id alone, so that `id=$(ffmpeg-worker submit -- ...)` works.
        out(&job.id)?;
    }
    Ok(Outcome::Success)
}

async fn list(args: ListArgs) -> Result<Outcome, CliError> {
    let client = connect(&args.connection)?;
    let query = ListQuery { statuses: args.statuses(), limit: args.limit };
    let (jobs, more) = if args.all {
        (client.list_all(&query).await?, false)
    } else {
        let page = client.list(&query).await?;
        (page.jobs, page.next.is_some())
    };
    if args.json {
        print_json(&jobs)?;
    } else {
        out(&jobs_table(&jobs))?;
        if more {
            let _ = writeln!(io::stderr(), "more jobs follow: add --all to list them all");
        }
    }
    Ok(Outcome::Success)
}

/// Follows a job until it finishes (showing its progress; `submitted` is the first snapshot
/// when the job was just submitted), then reports how it ended. Ctrl-C stops waiting.
async fn follow(
    client: &Client,
    id: &str,
    submitted: Option<JobResponse>,
    json: bool,
) -> Result<(Outcome, Option<JobResponse>), CliError> {
    let mut reporter = Reporter::new(if json { Stream::Stderr } else { Stream::Stdout }, id);
    if let Some(job) = &submitted {
        reporter.update(job)?;
    }
    let options = WaitOptions::default();
    let mut write_error = None;
    // A failed write (`ffmpeg-worker wait ID | head -3`) stops waiting at once.
    let write_failed = tokio::sync::Notify::new();
    let ended = {
        let on_event = |event: WaitEvent<'_>| {
            let written = match event {
                WaitEvent::Job(job) => reporter.update(job),
                WaitEvent::Retrying { error, .. } => reporter.note(id, &format!("{error}; retrying")),
                _ => Ok(()),
            };
            if let Err(e) = written {
                write_error.get_or_insert(e);
                write_failed.notify_one();
            }
        };
        tokio::select! {
            waited = client.wait_with(id, &options, on_event) => Some(waited),
            () = write_failed.notified() => None,
            _ = tokio::signal::ctrl_c() => None,
        }
    };
    reporter.finish();
    if let Some(e) = write_error {
        return Err(e.into());
    }
    let Some(waited) = ended else {
        let _ = writeln!(
            io::stderr(),
            "stopped waiting; {id} carries on (follow it: `ffmpeg-worker wait {id}`, stop it: `ffmpeg-worker cancel {id}`)"
        );
        return Ok((Outcome::Interrupted, None));
    };
    let job = waited?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    if json {
        print_json(&job)?;
    }
    if job.status == JobStatusWire::Completed {
        if !json {
            out(&format!("{} completed", job.id))?;
            for file in &job.output_files {
                out(&shown::name(file))?;
            }
        }
        return Ok((Outcome::Success, Some(job)));
    }
    let mut stderr = io::stderr().lock();
    match job.error.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        Some(error) => writeln!(stderr, "{} {}:\n{}", job.id, job.status, shown::text(error))?,
        None => writeln!(stderr, "{} {}", job.id, job.status)?,
    }
    Ok((Outcome::JobUnsuccessful, Some(job)))
}

//! The command-line arguments (clap): subcommands, their options, the server connection
//! (`--url` / `FFMPEG_WORKER_URL`, `--token` / `FFMPEG_WORKER_TOKEN`).

use std::fmt;

use ffmpeg_worker_client::Url;
use ffmpeg_worker_client::api::{JobStatusWire, WebhookEventWire};

/// The server URL used when neither `--url` nor `FFMPEG_WORKER_URL` is given.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:8000";

/// Talk to an ffmpeg-worker server: submit jobs, follow their progress, list, cancel.
#[derive(Debug, clap::Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Where the server is and how to authenticate.
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Server")]
pub(crate) struct Connection {
    /// Base URL of the ffmpeg-worker server (http or https).
    #[arg(long, env = "FFMPEG_WORKER_URL", default_value = DEFAULT_URL, value_parser = parse_base_url)]
    pub(crate) url: Url,

    /// API token, sent as `Authorization: Bearer <token>`.
    #[arg(long, env = "FFMPEG_WORKER_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.url.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn parse_base_url(s: &str) -> Result<Url, String> {
    ffmpeg_worker_client::parse_base_url(s).map_err(|e| e.to_string())
}

/// `KEY=VALUE`, split at the first `=`.
/// `job.started`, ... as the API names the events.
pub(crate) fn parse_webhook_event(s: &str) -> Result<WebhookEventWire, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        format!("`{s}` is not a webhook event (job.started, job.completed, job.failed, job.cancelled, job.progress)")
    })
}

pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Submit a job: `submit [--wait] -- -i in.mp4 out.webm`
    Submit(SubmitArgs),
    /// Show a job: status, progress, outputs or error
    Status(JobArgs),
    /// List jobs, oldest first
    List(ListArgs),
    /// Cancel a queued or running job
    Cancel(JobArgs),
    /// Delete a finished job's record (its output files stay)
    Delete(LogsArgs),
    /// Print a job's log (the tail of ffmpeg's stderr)
    Logs(LogsArgs),
    /// Wait for a job to finish, showing its progress; exit 0 if it completed, 1 if not
    Wait(JobArgs),
    /// Upload a local file to the server's data directory (REMOTE defaults to its file name).
    Put(PutArgs),
    /// Download a file from the server's data directory (LOCAL defaults to its file name).
    Get(GetArgs),
    /// List files whose path starts with PREFIX (recursive; all files without PREFIX).
    Ls(LsArgs),
    /// Delete a file (a directory with --recursive).
    Rm(RmArgs),
    /// Describe a media file of the server's data directory (ffprobe on the server)
    Probe(ProbeArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct PutArgs {
    /// The local file.
    pub(crate) local: std::path::PathBuf,
    /// Path in the data directory (default: the local file's name; ending in `/`: a
    /// directory, the file goes in it under its own name).
    pub(crate) remote: Option<String>,
    /// Refuse to replace an existing file.
    #[arg(long)]
    pub(crate) no_clobber: bool,
    /// Print the stored file's JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

#[derive(Debug, clap::Args)]
pub(crate) struct GetArgs {
    /// Path in the data directory.
    pub(crate) remote: String,
    /// Where to write it (default: the remote file's name, in the current directory; a
    /// directory: that name inside it).
    pub(crate) local: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

#[derive(Debug, clap::Args)]
pub(crate) struct LsArgs {
    /// Plain string prefix of the paths (`out/` lists the directory `out`).
    #[arg(default_value = "")]
    pub(crate) prefix: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RmArgs {
    /// Path in the data directory.
    pub(crate) remote: String,
    /// Delete a directory and everything under it.
    #[arg(long, short)]
    pub(crate) recursive: bool,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// Arguments of `probe`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ffmpeg-worker probe input.mp4
  ffmpeg-worker probe --json 'out/my clip.mkv' | jq '.streams[0].width'")]
pub(crate) struct ProbeArgs {
    /// The file, relative to the server's data directory.
    pub(crate) path: String,

    /// Print the description as JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,

    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// Arguments of `submit`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Paths are relative to the server's data directory.

Examples:
  ffmpeg-worker submit --wait -- -i input.mp4 -c:v libvpx-vp9 -crf 32 out/clip.webm
  ffmpeg-worker submit '-i input.mp4 -vf fps=1 thumbs/t%03d.png'
  id=$(ffmpeg-worker submit --priority 5 --metadata asset=a-42 -- -i in.mov out.mp4)
  ffmpeg-worker submit --idempotency-key render-$ASSET -- -i in.mov out.mp4   # safe to run again
  ffmpeg-worker submit --upload ~/clip.mov=in/clip.mov --wait --download ./results \\
      -- -i in/clip.mov -c:v libx264 out/clip.mp4      # ./results/out/clip.mp4")]
pub(crate) struct SubmitArgs {
    /// Wait for the job to finish, showing its progress; exit 0 if it completed, 1 if it
    /// failed or was cancelled.
    #[arg(long)]
    pub(crate) wait: bool,

    /// Scheduling priority: higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) priority: i32,

    /// Wall-clock limit for this job, in seconds (capped by the server's limit).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) timeout: Option<u64>,

    /// A label echoed back with the job (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) metadata: Vec<(String, String)>,

    /// URL the server calls (signed POST) on the job's events; the server needs a WEBHOOK_SECRET.
    #[arg(long, value_name = "URL")]
    pub(crate) webhook_url: Option<String>,

    /// An event sent to --webhook-url (repeatable): job.started, job.completed, job.failed,
    /// job.cancelled, job.progress. Default: all but job.progress.
    #[arg(long = "webhook-event", value_name = "EVENT", value_parser = parse_webhook_event, requires = "webhook_url")]
    pub(crate) webhook_events: Vec<WebhookEventWire>,

    /// A label a node must have to run the job (repeatable; e.g. `--require gpu`): only nodes
    /// whose NODE_LABELS include every one take it.
    #[arg(long = "require", value_name = "LABEL")]
    pub(crate) requires: Vec<String>,

    /// Print the job as JSON instead of text (with --wait: the finished job).
    #[arg(long)]
    pub(crate) json: bool,

    /// The submission's Idempotency-Key (1 to 255 visible ASCII characters). Default: a fresh
    /// random key. A submission whose answer was lost is sent again with the same key (see
    /// --retries), and the server answers with the job it already queued instead of a second
    /// one; a script that runs `submit` again after a failure can pass its own key (the same
    /// request with the same key gives the same job).
    #[arg(long, value_name = "KEY")]
    pub(crate) idempotency_key: Option<String>,

    /// How many times the submission is sent again, with the same Idempotency-Key, when no
    /// answer came (connection refused or lost, timeout) or the server failed (5xx, 429),
    /// after about 0.5 s, 1 s, 2 s, 4 s, ... (at most 10 s apart). 0: never.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub(crate) retries: u32,

    /// Upload a local file first (repeatable): LOCAL, stored under its file name, or
    /// LOCAL=REMOTE, stored at REMOTE in the data directory (split at the first `=`, unless
    /// the whole text names a local file; a REMOTE ending in `/` is a directory, the file goes
    /// in it under its own name). Nothing is submitted if an upload fails.
    #[arg(long = "upload", value_name = "LOCAL[=REMOTE]")]
    pub(crate) uploads: Vec<String>,

    /// With --wait: once the job completed, download its output files into DIR, keeping their
    /// paths (`out/clip.mp4` becomes DIR/out/clip.mp4). Nothing is downloaded for a job that
    /// failed or was cancelled.
    #[arg(long, value_name = "DIR", requires = "wait")]
    pub(crate) download: Option<std::path::PathBuf>,

    /// The ffmpeg arguments without the word `ffmpeg`: the words after `--` (sent as the
    /// job's `args`, each word one argument, as your shell split them), or a single quoted
    /// string (sent as the job's `command` line, split by the server with POSIX shell rules).
    #[arg(value_name = "FFMPEG_ARGS", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) command: Vec<String>,

    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// What `submit` sends: a `command` line or an `args` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Submitted {
    /// One word: the whole command line.
    Line(String),
    /// Several words: the argument list, each word one argument.
    Args(Vec<String>),
}

/// `--upload LOCAL[=REMOTE]` as (local file, remote path): the whole text when it names a local
/// file, else split at the first `=`; the remote path defaults to the local file's name.
pub(crate) fn upload_spec(spec: &str) -> Result<(std::path::PathBuf, String), String> {
    let name_of = |local: &std::path::Path| {
        local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("--upload `{spec}`: `{}` is not a file name", local.display()))
    };
    let whole = std::path::PathBuf::from(spec);
    if whole.is_file() {
        let remote = name_of(&whole)?;
        return Ok((whole, remote));
    }
    match spec.split_once('=') {
        Some(("", _)) => Err(format!("--upload `{spec}`: no local file before `=`")),
        Some((local, "")) => {
            let local = std::path::PathBuf::from(local);
            let remote = name_of(&local)?;
            Ok((local, remote))
        }
        // A trailing `/` names a directory: the file goes in it under its own name.
        Some((local, remote)) if remote.ends_with('/') => {
            let local = std::path::PathBuf::from(local);
            let name = name_of(&local)?;
            Ok((local, format!("{remote}{name}")))
        }
        Some((local, remote)) => Ok((std::path::PathBuf::from(local), remote.to_owned())),
        None => {
            let remote = name_of(&whole)?;
            Ok((whole, remote))
        }
    }
}

impl SubmitArgs {
    /// What to send: one word is taken as the whole command line (`command`); several are
    /// sent as they are, as the argument list (`args`), so no quoting can change them.
    pub(crate) fn submitted(&self) -> Submitted {
        match self.command.as_slice() {
            [one] => Submitted::Line(one.clone()),
            words => Submitted::Args(words.to_vec()),
        }
    }
}

/// Arguments of the subcommands that take a job id and can print JSON.
#[derive(Debug, clap::Args)]
pub(crate) struct JobArgs {
    /// The job id (`job_` + 16 hex digits).
    pub(crate) id: String,

    /// Print the job as JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,

    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// Arguments of `logs` and `delete`: a job id.
#[derive(Debug, clap::Args)]
pub(crate) struct LogsArgs {
    /// The job id (`job_` + 16 hex digits).
    pub(crate) id: String,

    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// Arguments of `list`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Only jobs with one of these statuses: a comma-separated list (`--status
    /// completed,failed`), or `--status` given again.
    #[arg(long, value_name = "STATUS[,STATUS...]", value_delimiter = ',', value_parser = status_parser())]
    pub(crate) status: Vec<JobStatusWire>,

    /// Jobs per page, 1 to 1000 (server default: 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) limit: Option<u32>,

    /// Fetch every page (follow `Link: rel="next"`), not only the first.
    #[arg(long)]
    pub(crate) all: bool,

    /// Print the jobs as one JSON array instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    #[command(flatten)]
    pub(crate) connection: Connection,
}

impl ListArgs {
    /// The statuses asked for, each once, in the order first given (empty: every status).
    pub(crate) fn statuses(&self) -> Vec<JobStatusWire> {
        let mut statuses = Vec::with_capacity(self.status.len());
        for status in &self.status {
            if !statuses.contains(status) {
                statuses.push(*status);
            }
        }
        statuses
    }
}

/// The five statuses as possible values (listed in `--help`), parsed into the wire type.
fn status_parser() -> impl clap::builder::TypedValueParser<Value = JobStatusWire> {
    use clap::builder::{PossibleValuesParser, TypedValueParser as _};
    PossibleValuesParser::new(JobStatusWire::ALL.map(JobStatusWire::as_str)).try_map(|s| s.parse::<JobStatusWire>())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn one_word_is_a_command_line_several_are_an_argument_list() {
        let words = |w: &[&str]| Submitted::Args(w.iter().map(|s| (*s).to_owned()).collect());
        for (given, expected) in [
            (&["-i in.mp4 out.webm"][..], Submitted::Line("-i in.mp4 out.webm".to_owned())),
            (&["-i", "in.mp4", "out.webm"][..], words(&["-i", "in.mp4", "out.webm"])),
            (
                &["-i", "my clip.mp4", "-vf", "scale=640:-2", "out dir/o.webm"][..],
                words(&["-i", "my clip.mp4", "-vf", "scale=640:-2", "out dir/o.webm"]),
            ),
            (&["-i", r"C:\it's.mp4", "o.mp4"][..], words(&["-i", r"C:\it's.mp4", "o.mp4"])),
        ] {
            let mut argv = vec!["ffmpeg-worker", "submit", "--url", DEFAULT_URL, "--"];
            argv.extend_from_slice(given);
            let Command::Submit(args) = Cli::try_parse_from(argv).expect("parses").command else {
                panic!("not submit");
            };
            assert_eq!(args.submitted(), expected);
        }
    }

    #[test]
    fn upload_specs() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let odd = dir.path().join("a=b.mp4");
        std::fs::write(&odd, b"x").expect("written");
        let local = |s: &str| std::path::PathBuf::from(s);
        assert_eq!(upload_spec("clips/in.mp4"), Ok((local("clips/in.mp4"), "in.mp4".to_owned())));
        assert_eq!(upload_spec("clips/in.mp4=in/x.mp4"), Ok((local("clips/in.mp4"), "in/x.mp4".to_owned())));
        assert_eq!(upload_spec("in.mp4=in/q=23.mp4"), Ok((local("in.mp4"), "in/q=23.mp4".to_owned())));
        assert_eq!(upload_spec("clips/in.mp4="), Ok((local("clips/in.mp4"), "in.mp4".to_owned())));
        assert_eq!(upload_spec("clips/in.mp4=in/"), Ok((local("clips/in.mp4"), "in/in.mp4".to_owned())));
        // A local file whose name holds `=` is taken whole.
        let odd_text = odd.to_str().expect("UTF-8");
        assert_eq!(upload_spec(odd_text), Ok((odd.clone(), "a=b.mp4".to_owned())));
        assert!(upload_spec("=in/x.mp4").is_err());
        assert!(upload_spec("..").is_err());
        let parsed = Cli::try_parse_from(["ffmpeg-worker", "submit", "--download", "d", "--", "-i", "a", "b"]);
        assert!(parsed.is_err(), "--download needs --wait");
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".to_owned(), "b=c".to_owned())));
        assert_eq!(parse_key_value("a="), Ok(("a".to_owned(), String::new())));
        assert!(parse_key_value("a").is_err());
        assert!(parse_key_value("=b").is_err());
        assert_eq!(parse_webhook_event("job.progress"), Ok(WebhookEventWire::Progress));
        assert!(parse_webhook_event("progress").is_err());
    }

    fn list_statuses(args: &[&str]) -> Result<Vec<JobStatusWire>, clap::Error> {
        let mut argv = vec!["ffmpeg-worker", "list", "--url", DEFAULT_URL];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Command::List(list) => Ok(list.statuses()),
            other => panic!("not list: {other:?}"),
        }
    }

    #[test]
    fn list_status_takes_the_five_statuses() {
        for status in JobStatusWire::ALL {
            assert_eq!(list_statuses(&["--status", status.as_str()]).expect("parses"), vec![status]);
        }
        assert_eq!(list_statuses(&[]).expect("parses"), vec![], "no --status: every status");
        let err = list_statuses(&["--status", "sleeping"]).expect_err("refused");
        assert!(err.to_string().contains("queued, running, completed, failed, cancelled"), "{err}");
    }

    #[test]
    fn list_status_takes_a_comma_list_and_repeats() {
        use JobStatusWire::{Cancelled, Completed, Failed, Queued};
        for (args, expected) in [
            (&["--status", "completed,failed"][..], vec![Completed, Failed]),
            (&["--status", "completed", "--status", "failed"], vec![Completed, Failed]),
            (&["--status=queued,cancelled", "--status", "failed"], vec![Queued, Cancelled, Failed]),
            (&["--status", "failed,completed,failed", "--status", "completed"], vec![Failed, Completed]),
        ] {
            assert_eq!(list_statuses(args).expect("parses"), expected, "{args:?}");
        }
        // A wrong word anywhere in the list is named.
        let err = list_statuses(&["--status", "completed,done"]).expect_err("refused");
        assert!(err.to_string().contains("'done'"), "{err}");
        assert!(list_statuses(&["--status", "completed,"]).is_err(), "an empty item is refused");
    }

    #[test]
    fn the_definitions_are_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}

#[cfg(test)]
mod subcommand_tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// `ffmpeg-worker` hands exactly these subcommands on to this program and lists them with
    /// this help ([`ffmpeg_worker_api::CLIENT_SUBCOMMANDS`]): a subcommand added here and not
    /// there would be "unrecognized" through `ffmpeg-worker`.
    #[test]
    fn the_subcommands_are_the_ones_the_server_binary_hands_on() {
        let command = Cli::command();
        let ours: Vec<(String, String)> = command
            .get_subcommands()
            .map(|sub| (sub.get_name().to_owned(), sub.get_about().map(ToString::to_string).unwrap_or_default()))
            .collect();
        let shared: Vec<(String, String)> = ffmpeg_worker_api::CLIENT_SUBCOMMANDS
            .iter()
            .map(|sub| (sub.name.to_owned(), sub.about.to_owned()))
            .collect();
        assert_eq!(ours, shared);
    }
}

//! The `ffmpeg-worker` binary: `serve` (the default) runs the HTTP server and workers.
//!
//! The client subcommands ([`ffmpeg_worker_api::CLIENT_SUBCOMMANDS`]: `submit`, `status`, `list`,
//! `cancel`, `delete`, `logs`, `wait`, `put`, `get`, `ls`, `rm`, `probe`) belong to the
//! `ffmpeg-worker-client` program (crate `ffmpeg-worker-client`), which this binary runs
//! in its place (exec: same arguments, terminal, exit status), the way git and cargo run their
//! external subcommands. It is looked for beside this binary first, then on `PATH`. So users
//! keep one command, and the server does not link an HTTP client nor the client a server.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use ffmpeg_worker_api::{CLIENT_SUBCOMMANDS, ClientSubcommand};
use ffmpeg_worker_server::config::{LogFormat, ServeConfig};
use tracing_subscriber::EnvFilter;

/// The program that implements the client subcommands.
const CLIENT_PROGRAM: &str = "ffmpeg-worker-client";
/// Exit status when the client program cannot be run (as for its own usage errors).
const EXIT_NO_CLIENT: u8 = 2;

/// Run ffmpeg jobs over HTTP.
#[derive(Debug, Parser)]
#[command(name = "ffmpeg-worker", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    serve: ServeConfig,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the HTTP server and the workers (the default when no subcommand is given).
    Serve(Box<ServeConfig>),
    /// Print the OpenAPI 3.1 document (JSON) and exit.
    #[command(hide = true)]
    Openapi,
    /// Print docs/configuration.md (every setting, generated from these definitions) and exit.
    #[command(hide = true)]
    ConfigDoc,
}

/// A client subcommand as `--help` lists it. `main` hands the raw arguments on before clap
/// parses them (clap would drop a `--`, which the client needs), so its arguments are a stub.
fn client_stub(sub: &ClientSubcommand) -> clap::Command {
    let args = clap::Arg::new("args")
        .help("Arguments of the client subcommand (see `ffmpeg-worker <subcommand> --help`).")
        .num_args(0..)
        .trailing_var_arg(true)
        .allow_hyphen_values(true);
    clap::Command::new(sub.name).about(sub.about).disable_help_flag(true).arg(args)
}

/// Whether `name` is one of the client subcommands ([`CLIENT_SUBCOMMANDS`]).
fn is_client_subcommand(name: &str) -> bool {
    CLIENT_SUBCOMMANDS.iter().any(|sub| sub.name == name)
}

/// `ffmpeg-worker-client` beside `exe`, else the first one on `PATH`.
fn find_client(exe: Option<&Path>) -> Option<PathBuf> {
    let beside = exe.and_then(Path::parent).map(|dir| dir.join(CLIENT_PROGRAM));
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join(CLIENT_PROGRAM)).collect::<Vec<_>>())
        .unwrap_or_default();
    beside.into_iter().chain(on_path).find(|candidate| candidate.is_file())
}

/// Replaces this process with `ffmpeg-worker-client <subcommand> <args>`; returns only when that
/// cannot be done, with the reason on stderr.
fn run_client(subcommand: &str, args: &[OsString]) -> ExitCode {
    let exe = std::env::current_exe().ok();
    let Some(client) = find_client(exe.as_deref()) else {
        let here = exe.as_deref().and_then(Path::parent).map(|d| d.display().to_string()).unwrap_or_default();
        eprintln!(
            "ffmpeg-worker: `{subcommand}` is a client command, run by the `{CLIENT_PROGRAM}` program, which is \
             neither in {here} nor on PATH.\n  hint: install it beside ffmpeg-worker (from a source checkout, \
             `cargo build --release` builds both into target/release)"
        );
        return ExitCode::from(EXIT_NO_CLIENT);
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        // argv[0] `ffmpeg-worker`: the client's usage lines then read `ffmpeg-worker submit ...`.
        let error = std::process::Command::new(&client).arg0("ffmpeg-worker").arg(subcommand).args(args).exec();
        eprintln!("ffmpeg-worker: cannot run {}: {error}", client.display());
        ExitCode::from(EXIT_NO_CLIENT)
    }
    #[cfg(not(unix))]
    {
        match std::process::Command::new(&client).arg(subcommand).args(args).status() {
            Ok(status) => status.code().and_then(|c| u8::try_from(c).ok()).map_or(ExitCode::FAILURE, ExitCode::from),
            Err(error) => {
                eprintln!("ffmpeg-worker: cannot run {}: {error}", client.display());
                ExitCode::from(EXIT_NO_CLIENT)
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn print(text: &str) -> ExitCode {
    use std::io::Write as _;
    match write!(std::io::stdout(), "{text}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let arg = |i: usize| argv.get(i).and_then(|a| a.to_str()).filter(|a| is_client_subcommand(a));
    if let Some(subcommand) = arg(1) {
        // Verbatim, before any runtime or thread exists: exec replaces the whole process.
        return run_client(subcommand, &argv[2..]);
    }
    if let (Some("help"), Some(subcommand)) = (argv.get(1).and_then(|a| a.to_str()), arg(2)) {
        return run_client(subcommand, &[OsString::from("--help")]);
    }
    let command = CLIENT_SUBCOMMANDS.iter().fold(Cli::command(), |command, sub| command.subcommand(client_stub(sub)));
    // A client subcommand after server options is refused here (they conflict).
    let matches = command.get_matches_from(argv);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let config = match cli.command.unwrap_or_else(|| Cmd::Serve(Box::new(cli.serve))) {
        Cmd::Serve(config) => config,
        Cmd::Openapi => return print(&format!("{}\n", ffmpeg_worker_server::openapi_json())),
        Cmd::ConfigDoc => return print(&ffmpeg_worker_server::config::markdown()),
    };
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ffmpeg-worker: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(ffmpeg_worker_server::serve::run(*config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Plain text on stderr whatever the log format: this is what an operator reads first.
            eprintln!("ffmpeg-worker: {e}");
            ExitCode::from(2)
        }
    }
}

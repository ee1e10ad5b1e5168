//! The `ffmpeg-worker` binary: `serve` (the default) runs the HTTP server and workers;
//! `submit`, `status`, `list`, `cancel`, `logs` and `wait` are the command-line client
//! ([`ffmpeg_worker_server::client`]).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ffmpeg_worker_server::client;
use ffmpeg_worker_server::config::{LogFormat, ServeConfig};
use tracing_subscriber::EnvFilter;

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
    #[command(flatten)]
    Client(client::Command),
    /// Print the OpenAPI 3.1 document (JSON) and exit.
    #[command(hide = true)]
    Openapi,
    /// Print docs/configuration.md (every setting, generated from these definitions) and exit.
    #[command(hide = true)]
    ConfigDoc,
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.command.unwrap_or_else(|| Cmd::Serve(Box::new(cli.serve))) {
        Cmd::Serve(config) => config,
        Cmd::Openapi => return print(&format!("{}\n", ffmpeg_worker_server::openapi_json())),
        Cmd::ConfigDoc => return print(&ffmpeg_worker_server::config::markdown()),
        Cmd::Client(command) => return client::run(command).await,
    };
    init_logging(config.log_format);
    match ffmpeg_worker_server::serve::run(*config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Plain text on stderr whatever the log format: this is what an operator reads first.
            eprintln!("ffmpeg-worker: {e}");
            ExitCode::from(2)
        }
    }
}

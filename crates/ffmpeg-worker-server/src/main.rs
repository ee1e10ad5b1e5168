//! The `ffmpeg-worker` binary: `serve` (the default) runs the HTTP server and workers.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    Serve(ServeConfig),
    /// Print the OpenAPI 3.1 document (JSON) and exit.
    #[command(hide = true)]
    Openapi,
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

fn print_openapi() -> ExitCode {
    use std::io::Write as _;
    let json = ffmpeg_worker_server::openapi_json();
    match writeln!(std::io::stdout(), "{json}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.command.unwrap_or(Cmd::Serve(cli.serve)) {
        Cmd::Serve(config) => config,
        Cmd::Openapi => return print_openapi(),
    };
    init_logging(config.log_format);
    match ffmpeg_worker_server::serve::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ffmpeg-worker: {e}");
            ExitCode::from(2)
        }
    }
}

//! `ffmpeg-worker-client`: the command line of ffmpeg-worker's HTTP API. Users run it as
//! `ffmpeg-worker submit | status | list | cancel | delete | logs | wait` (the server binary
//! hands these subcommands to this program, found beside it), or directly.
//!
//! Exit status:
//! - 0: success; for `submit --wait` and `wait`, the job completed;
//! - 1: the awaited job failed or was cancelled (its error is printed to stderr);
//! - 2: usage error, unreachable server, or an error answer from the server (its problem's
//!   `detail` is printed to stderr);
//! - 130: interrupted (Ctrl-C) while waiting; the job itself carries on.
//!
//! Modules: `args` (clap definitions), `commands` (what each subcommand does, exit status),
//! `progress` (live progress: a bar on a terminal, plain lines otherwise), `table` (job
//! listings and the fields of one job as text), `shown` (control characters escaped in what
//! the server sent).

use std::process::ExitCode;

use clap::Parser as _;

mod args;
mod commands;
mod progress;
mod shown;
mod table;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = args::Cli::parse();
    commands::run(cli.command).await
}

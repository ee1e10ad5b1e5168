//! Project automation: `cargo xtask <task>`.
//!
//! - `ci`: what CI runs: rustfmt check, clippy with `-D warnings`, the test suite, OpenAPI and
//!   configuration-doc drift checks.
//! - `openapi`: regenerate `docs/openapi.json` from the code.
//! - `bench overhead|api`: benchmarks (see `docs/benchmarks.md`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Runs a command in the workspace root, failing when it fails.
fn run(program: &str, args: &[&str]) -> Result {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program).args(args).current_dir(root()).status()?;
    if status.success() { Ok(()) } else { Err(format!("`{program} {}` failed: {status}", args.join(" ")).into()) }
}

/// Runs a command and returns its stdout.
fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).current_dir(root()).output()?;
    if !out.status.success() {
        return Err(format!("`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The OpenAPI document as the server binary prints it.
fn generated_openapi() -> Result<String> {
    output("cargo", &["run", "--quiet", "--package", "ffmpeg-worker-server", "--bin", "ffmpeg-worker", "--", "openapi"])
}

fn openapi(check: bool) -> Result {
    let path = root().join("docs/openapi.json");
    let generated = generated_openapi()?;
    if check {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            return Err("docs/openapi.json is out of date: run `cargo xtask openapi` and commit it".into());
        }
        eprintln!("docs/openapi.json is up to date");
    } else {
        std::fs::write(&path, generated)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn ci() -> Result {
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    run("cargo", &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])?;
    run("cargo", &["test", "--workspace", "--locked"])?;
    openapi(true)?;
    Ok(())
}

fn usage() -> Result {
    Err("usage: cargo xtask <ci | openapi [--check] | bench overhead [N] | bench api>".into())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["ci"] => ci(),
        ["openapi"] => openapi(false),
        ["openapi", "--check"] => openapi(true),
        ["bench", rest @ ..] => bench::main(rest),
        _ => usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

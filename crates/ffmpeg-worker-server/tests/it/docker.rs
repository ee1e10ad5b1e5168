//! No Docker engine runs on the build machines, so check statically that the Dockerfile's
//! runtime stage, docker-compose.yml, the README and the binary's configuration agree.

use std::collections::BTreeMap;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Environment variables the binary reads (from the clap definitions).
fn known_env() -> Vec<String> {
    use clap::Args as _;
    let cmd = ffmpeg_worker_server::config::ServeConfig::augment_args(clap::Command::new("serve"));
    cmd.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect()
}

/// The lines of the last stage, with `\` continuations joined.
fn runtime_stage(dockerfile: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    let stages: Vec<&str> = joined.split("\nFROM ").collect();
    stages
        .last()
        .unwrap()
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn env_of(stage: &[String]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for line in stage.iter().filter(|l| l.starts_with("ENV ")) {
        for pair in line["ENV ".len()..].split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap();
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    env
}

#[test]
fn dockerfile_runtime_stage_is_configured_only_through_known_env() {
    let stage = runtime_stage(&read("Dockerfile"));
    let env = env_of(&stage);
    let known = known_env();
    for name in env.keys() {
        assert!(known.contains(name), "Dockerfile sets {name}, which the binary does not read");
    }
    let port = &env["PORT"];
    assert!(stage.iter().any(|l| l == &format!("EXPOSE {port}")), "EXPOSE matches PORT={port}");
    let health = stage.iter().find(|l| l.starts_with("HEALTHCHECK")).expect("a HEALTHCHECK");
    assert!(health.contains(&format!("127.0.0.1:{port}/health")), "{health}");
    let volume = stage.iter().find(|l| l.starts_with("VOLUME")).expect("volumes");
    assert!(volume.contains(&format!("\"{}\"", env["DATA_PATH"])), "the data dir is a volume: {volume}");
    let db = env["DATABASE_URL"].strip_prefix("sqlite://").unwrap();
    let db_dir = std::path::Path::new(db).parent().unwrap().display().to_string();
    assert!(volume.contains(&format!("\"{db_dir}\"")), "the database dir is a volume: {volume}");
    assert!(!db.starts_with(&env["DATA_PATH"]), "the database lives outside the data dir");
    assert_eq!(env["HOST"], "0.0.0.0", "reachable from outside the container");
    let user = stage.iter().find(|l| l.starts_with("USER ")).expect("a USER");
    assert!(!user.contains("root") && user != "USER 0", "non-root: {user}");
}

#[test]
fn the_image_ships_the_client_beside_the_server() {
    let dockerfile = read("Dockerfile").replace("\\\n", " ");
    let build = dockerfile.lines().find(|l| l.starts_with("RUN cargo build")).expect("a cargo build");
    assert!(build.contains("ffmpeg-worker-server") && build.contains("ffmpeg-worker-client"), "{build}");
    let stage = runtime_stage(&dockerfile);
    let entrypoint = stage.iter().find(|l| l.starts_with("ENTRYPOINT")).expect("an ENTRYPOINT");
    let server = entrypoint.split('"').nth(1).expect("exec form");
    let dir = std::path::Path::new(server).parent().unwrap().display().to_string();
    let copy = stage.iter().find(|l| l.starts_with("COPY --from=builder")).expect("binaries copied");
    let words: Vec<&str> = copy.split_whitespace().collect();
    let (sources, dest) = (&words[2..words.len() - 1], words[words.len() - 1]);
    assert!(dest == format!("{dir}/") || dest == dir, "binaries go to the ENTRYPOINT's directory: {copy}");
    for binary in ["ffmpeg-worker", "ffmpeg-worker-client"] {
        assert!(sources.iter().any(|s| s.ends_with(&format!("/release/{binary}"))), "{binary} is copied: {copy}");
    }
    assert_eq!(server, format!("{dir}/ffmpeg-worker"));
}

#[test]
fn compose_and_readme_agree_with_the_binary() {
    let known = known_env();
    let compose = read("docker-compose.yml");
    let cluster = read("docker-compose.cluster.yml");
    assert!(cluster.contains("DATABASE_URL: postgres://"), "the cluster runs on PostgreSQL");
    check_compose_env("docker-compose.yml", &compose, &known);
    check_compose_env("docker-compose.cluster.yml", &cluster, &known);
    let env = env_of(&runtime_stage(&read("Dockerfile")));
    assert!(compose.contains(&format!(":{}\"", env["PORT"])), "compose publishes the container port");
    assert!(cluster.contains(&format!(":{}\"", env["PORT"])), "the cluster's API node publishes the container port");
    let readme = read("README.md");
    for name in ["DATA_PATH", "HOST", "PORT", "FFMPEG_TIMEOUT", "FFMPEG_BIN", "DATABASE_URL"] {
        assert!(known.contains(&name.to_owned()), "{name} is read by the binary");
        assert!(readme.contains(name), "README documents {name}");
    }
    assert!(readme.contains("http://127.0.0.1:8000"), "README's default address matches PORT's default");
}

/// Every variable set in an `environment:` map of the compose file `name` is one the binary reads.
fn check_compose_env(name: &str, compose: &str, known: &[String]) {
    let mut in_env = false;
    for line in compose.lines() {
        let t = line.trim();
        if t == "environment:" {
            in_env = true;
            continue;
        }
        if in_env {
            if !line.starts_with("      ") {
                in_env = false;
                continue;
            }
            let t = t.trim_start_matches("# ");
            if let Some((var, _)) = t.split_once(':') {
                assert!(known.contains(&var.to_owned()), "{name} sets unknown {var}");
            }
        }
    }
}

#[test]
fn configuration_doc_matches_the_code() {
    let committed = read("docs/configuration.md");
    assert!(
        committed == ffmpeg_worker_server::config::markdown(),
        "docs/configuration.md is out of date: run `cargo xtask docs` and commit it"
    );
}

//! The committed `docs/openapi.json` matches what the code generates.

#[test]
fn committed_openapi_matches_the_code() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json"))
        .expect("docs/openapi.json exists");
    let generated = format!("{}\n", ffmpeg_worker_server::openapi_json());
    assert!(committed == generated, "docs/openapi.json is out of date: run `cargo xtask openapi` and commit it");
}

#[test]
fn spec_is_openapi_3_1_and_lists_the_endpoints() {
    let spec: serde_json::Value = serde_json::from_str(&ffmpeg_worker_server::openapi_json()).unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = spec["paths"].as_object().unwrap();
    for p in ["/health", "/jobs", "/jobs/{id}", "/jobs/{id}/cancel", "/jobs/{id}/log"] {
        assert!(paths.contains_key(p), "{p} missing from the spec");
    }
    let schema = &spec["components"]["schemas"]["JobResponse"]["properties"];
    for field in
        ["id", "status", "command", "created_at", "started_at", "completed_at", "progress", "output_files", "error"]
    {
        assert!(schema.get(field).is_some(), "JobResponse.{field} missing");
    }
}

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

/// The limits the document states are the ones the service checks.
#[test]
fn the_spec_states_the_limits_the_service_checks() {
    use jobs::model::{MAX_METADATA_ENTRIES, MAX_METADATA_KEY_CHARS, MAX_METADATA_VALUE_CHARS, MAX_PAGE_SIZE};
    assert_eq!(ffmpeg_worker_api::MAX_METADATA_ENTRIES, MAX_METADATA_ENTRIES);
    assert_eq!(ffmpeg_worker_api::MAX_METADATA_KEY_CHARS, MAX_METADATA_KEY_CHARS);
    assert_eq!(ffmpeg_worker_api::MAX_METADATA_VALUE_CHARS, MAX_METADATA_VALUE_CHARS);
    let spec: serde_json::Value = serde_json::from_str(&ffmpeg_worker_server::openapi_json()).unwrap();
    let request = &spec["components"]["schemas"]["CreateJobRequest"]["properties"];
    let metadata = &request["metadata"];
    assert_eq!(metadata["maxProperties"], MAX_METADATA_ENTRIES);
    assert_eq!(metadata["propertyNames"]["minLength"], 1);
    assert_eq!(metadata["propertyNames"]["maxLength"], MAX_METADATA_KEY_CHARS);
    assert_eq!(metadata["additionalProperties"]["maxLength"], MAX_METADATA_VALUE_CHARS);
    assert_eq!(request["timeout_seconds"]["format"], "int64");
    assert_eq!(request["timeout_seconds"]["minimum"], 1);
    let list = &spec["paths"]["/jobs"]["get"]["parameters"];
    let param = |name: &str| list.as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
    assert_eq!(param("limit")["schema"]["maximum"], MAX_PAGE_SIZE);
    assert_eq!(param("cursor")["schema"]["pattern"], "^[0-9]{1,18}$");
}

/// Every status the server answers is documented where it can be answered.
#[test]
fn the_spec_documents_the_statuses_middleware_and_extractors_answer() {
    let spec: serde_json::Value = serde_json::from_str(&ffmpeg_worker_server::openapi_json()).unwrap();
    let responses = |path: &str, method: &str| spec["paths"][path][method]["responses"].as_object().unwrap().clone();
    for status in ["400", "401", "413", "415", "422", "429", "503"] {
        assert!(responses("/jobs", "post").contains_key(status), "POST /jobs {status}");
    }
    for (path, method) in [("/jobs/{id}", "get"), ("/jobs/{id}", "delete"), ("/jobs/{id}/cancel", "post")] {
        for status in ["400", "401", "404", "429"] {
            assert!(responses(path, method).contains_key(status), "{method} {path} {status}");
        }
    }
    assert!(!responses("/health", "get").contains_key("401"), "/health is open");
    assert!(!responses("/ready", "get").contains_key("429"), "probes are not rate-limited");
}

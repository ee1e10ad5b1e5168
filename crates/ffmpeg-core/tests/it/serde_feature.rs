//! The `serde` feature: the public data types serialize as documented (`cargo xtask ci` runs
//! the tests with `--all-features`).
#![cfg(feature = "serde")]

use ffmpeg_core::command::Command;
use ffmpeg_core::policy::RuleId;
use ffmpeg_core::progress::ProgressParser;
use ffmpeg_core::sandbox::Sandbox;
use serde_json::json;

#[test]
fn progress_updates_serialize_with_their_field_names() {
    let update = ProgressParser::new().feed(b"frame=5\nspeed=1.5x\nq=1\nprogress=end\n").remove(0);
    let value = serde_json::to_value(&update).unwrap();
    assert_eq!(value["frame"], json!(5));
    assert_eq!(value["speed"], json!(1.5));
    assert_eq!(value["state"], json!("end"));
    assert_eq!(value["fps"], json!(null));
    assert_eq!(value["other"], json!([["q", "1"]]));
}

#[test]
fn rule_ids_serialize_as_their_stable_strings() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(tmp.path()).unwrap();
    let refused = sandbox.resolve_command(&Command::parse("-i ../x.mp4 out.mp4").unwrap()).unwrap_err();
    assert_eq!(serde_json::to_value(refused.rule()).unwrap(), json!("path-escapes"));
    for rule in RuleId::ALL {
        assert_eq!(serde_json::to_value(rule).unwrap(), json!(rule.as_str()));
    }
}

#[test]
fn commands_serialize() {
    let command = Command::parse("-y -i in.mp4 -c:v libx264 out.mp4").unwrap();
    let value = serde_json::to_value(&command).unwrap();
    assert!(value.is_object(), "{value}");
    assert_eq!(value.to_string().matches("libx264").count(), 1, "{value}");
}

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

/// A job's outputs are stored as JSON: what an older version wrote (a stream without
/// `profile` and `duration_seconds`, its kind as a string) still reads, and a description
/// reads back as written.
#[test]
fn output_listings_and_stream_descriptions_read_back() {
    use ffmpeg_core::output_banner::{OutputBanner, scan};
    use ffmpeg_core::stream::{StreamInfo, StreamKind};

    let stored = json!({"index": 0, "format": "mp4", "url": "out.mp4", "streams": [
        {"index": 1, "kind": "audio", "codec": "aac", "language": "eng", "width": null, "height": null,
         "frame_rate": null, "pixel_format": null, "sample_rate": 48000, "channels": 2,
         "channel_layout": "stereo", "bit_rate": 128000}]});
    let banner: OutputBanner = serde_json::from_value(stored).unwrap();
    let audio = &banner.streams[0];
    assert_eq!((audio.index, audio.kind, audio.codec.as_deref()), (1, StreamKind::Audio, Some("aac")));
    assert_eq!((audio.sample_rate, audio.channels, audio.bit_rate), (Some(48_000), Some(2), Some(128_000)));
    assert_eq!((audio.profile.as_deref(), audio.duration_seconds), (None, None));

    let listed = scan(include_str!("../data/outputs_two_outputs.txt"));
    let value = serde_json::to_value(&listed).unwrap();
    assert_eq!(value[0]["streams"][0]["kind"], json!("video"), "{value}");
    assert_eq!(value[0]["streams"][0]["profile"], json!("High 4:4:4 Predictive"), "{value}");
    assert_eq!(serde_json::from_value::<Vec<OutputBanner>>(value).unwrap(), listed);
    assert_eq!(
        serde_json::from_value::<StreamInfo>(json!({"index": 3})).unwrap(),
        StreamInfo::new(3, StreamKind::Unknown)
    );
    assert!(serde_json::from_value::<StreamInfo>(json!({"index": 0, "kind": "Video"})).is_err());
}

//! Integration tests of the client: the typed client (`client`) and the command line (`cli`)
//! against the real server, run in-process on 127.0.0.1:0 (`support`).
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod cli;
mod client;
/// Test media (lavfi clips, ffprobe durations): the server tests' own helpers, one definition.
#[path = "../../../ffmpeg-worker-server/tests/it/media.rs"]
mod media;
mod retry;
mod support;

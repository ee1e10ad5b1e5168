//! Integration tests of `ffmpeg-core`, in one test binary (one link, one process per run).
#![allow(clippy::unwrap_used)]

mod capabilities;
mod command;
mod duration;
mod filtergraph;
mod footprint;
mod log;
mod output_banner;
mod policy;
mod progress;
mod sandbox;
mod serde_feature;

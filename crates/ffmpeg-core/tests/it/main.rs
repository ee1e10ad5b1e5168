//! Integration tests of `ffmpeg-core`, in one test binary (one link, one process per run).
#![allow(clippy::unwrap_used)]

mod command;
mod duration;
mod progress;
mod sandbox;

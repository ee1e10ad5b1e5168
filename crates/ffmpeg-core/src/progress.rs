//! Incremental parser for `ffmpeg -progress pipe:1 -nostats` output. PENDING (helper).

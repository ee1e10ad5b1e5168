//! Staging: with the files in a bucket ([`crate::JobsConfig::remote_storage`]), a worker
//! downloads a job's inputs into a scratch directory under the data directory, runs ffmpeg
//! there, and uploads the outputs after success.

/// The directory under the data directory that holds the jobs' staging directories; no job
/// may name it.
pub const STAGING_DIR: &str = ".ffmpeg-worker-staging";

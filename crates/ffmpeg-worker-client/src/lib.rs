//! A typed async client of the ffmpeg-worker HTTP API, for Rust programs that hand ffmpeg jobs
//! to a worker, and the `ffmpeg-worker-client` command line built on it (feature `cli`, on by
//! default; what `ffmpeg-worker submit ...` runs).
//!
//! The request and response types are the server's own ([`ffmpeg_worker_api`], re-exported as
//! [`api`]): one definition, so client and server cannot disagree on a field. Every error answer
//! of the server is an RFC 9457 problem; [`ClientError::Problem`] carries it whole (its stable
//! `type`, `detail`, and for a refused command the argument and the policy rule).
//!
//! ```no_run
//! use ffmpeg_worker_client::{Client, api::CreateJobRequest};
//!
//! # async fn demo() -> Result<(), ffmpeg_worker_client::ClientError> {
//! let client = Client::new("http://127.0.0.1:8000", None)?;
//! let job = client
//!     .submit(&CreateJobRequest::command("-i in.mp4 out.webm"))
//!     .await?;
//! let done = client.wait(&job.id).await?;
//! println!("{} {}: {:?}", done.id, done.status, done.output_files);
//! # Ok(())
//! # }
//! ```
//!
//! Without the command line (no clap, no indicatif):
//! `ffmpeg-worker-client = { git = "...", default-features = false }`.

/// The workspace README's Rust example, compiled as a doctest (not run: it needs a server), so
/// the README cannot drift from this crate's API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct WorkspaceReadme;

mod client;
mod error;
mod events;
mod files;
mod list;
mod submit;
mod wait;

pub use client::{Client, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, parse_base_url};
pub use error::ClientError;
pub use events::{JobEvent, JobEvents, STREAM_IDLE_TIMEOUT, STREAM_MAX_DURATION};
pub use ffmpeg_worker_api as api;
pub use files::{FilesPage, TRANSFER_TIMEOUT};
pub use list::{ListQuery, NextPage, Page};
pub use submit::{Submission, SubmitRetry, new_idempotency_key};
pub use url::Url;
pub use wait::{WAITING_RECHECK, WaitEvent, WaitOptions};

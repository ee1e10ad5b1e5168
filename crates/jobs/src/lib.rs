//! `jobs`: ffmpeg-worker's job model, the store that owns every state transition, the runner
//! that executes ffmpeg, and the worker pool.
//!
//! This crate knows nothing of HTTP or JSON wire formats.
//!
//! - [`model`]: [`JobId`], [`JobStatus`], [`Job`], [`Progress`].
//! - [`store`]: the [`JobStore`] trait (records and queue in one), [`MemoryStore`].
//! - [`sqlite`]: [`SqliteStore`], the durable store in an SQLite file.
//! - [`postgres`]: [`PgStore`](postgres::PgStore), the store shared by the nodes of a cluster.
//! - [`nodes`]: the node registry (roles, labels, heartbeats) and routing by labels.
//! - [`location`]: which store a `DATABASE_URL` names, and opening it.
//! - [`runner`]: the [`Runner`] trait and [`FfmpegRunner`].
//! - [`service`]: [`Jobs`], the service front ends call, and its worker pool.
//! - [`events`]: the in-process event bus (status changes, live progress) and event ids.
//! - [`cluster`]: the signals the nodes of a cluster send each other through a shared store.
//! - [`concat_lists`]: concat lists' entries, checked (and staged) right before a run.
//! - [`disk_space`]: how full the file system holding a path is, for messages about a full disk.
//! - [`outputs`]: which files a command produced.
//! - [`output_meta`]: what is known of each produced file (format, streams, size, duration).
//! - [`exec_limits`]: what the operating system refuses when it starts ffmpeg.
//! - [`webhook`]: webhook subscriptions, the outbox of deliveries, retry and address rules.
//! - [`storage`]: the [`Storage`](storage::Storage) trait the files API stores files in, and its
//!   local backend (the data directory, through the sandbox).
//! - [`files`]: [`Files`](files::Files), the files API's rules (files in use by jobs, limits).
//! - [`probe`]: what the configured ffmpeg knows (its option, codec, format and filter names).
//! - [`media`]: describing a media file of the data directory with ffprobe (cached).
//!
//! # Which calls block
//!
//! Async code must not call these on a runtime thread (use `tokio::task::spawn_blocking`):
//! [`Jobs::check`] (canonicalises paths; [`Jobs::check_async`] and [`Jobs::submit`] run it on
//! the blocking pool), [`Runner::check_startable`], [`orphans::find_orphans`] and
//! [`orphans::stop_orphans`] (read `/proc`), [`orphans::ScratchDir::create`], and the
//! file-system functions of [`outputs`] (directory scans, deletions) and of [`disk_space`]
//! (`statvfs`). Everything `async` here
//! does its blocking work off the runtime threads or through tokio's own I/O.

pub mod cluster;
pub mod concat_lists;
pub mod disk_space;
pub mod encoded;
pub mod events;
pub mod exec_limits;
pub mod files;
pub mod globs;
pub mod idempotency;
pub mod location;
pub mod locked_dir;
pub mod media;
pub mod model;
pub mod nodes;
pub mod orphans;
pub mod output_meta;
pub mod outputs;
pub mod postgres;
pub mod probe;
pub mod publish;
pub mod runner;
pub mod service;
pub mod sqlite;
pub mod staging;
pub mod storage;
pub mod store;
pub mod webhook;

pub use model::{CommandInput, InvalidRequest, Job, JobId, JobStatus, Progress, SubmitOptions};
pub use runner::{FfmpegConfig, FfmpegRunner, RunError, RunReport, RunSpec, Runner};
pub use service::{Jobs, JobsConfig, ListError, Page, Shutdown, SubmitError};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use store::{JobStore, ListQuery, MemoryStore, Outcome, StoreError};

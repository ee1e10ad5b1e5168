//! The job model: identifiers, statuses, progress snapshots and the job record.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ffmpeg_core::footprint::Footprint;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::idempotency::Idempotency;
use crate::webhook::{SubscriptionSource, WebhookSubscription};

/// A job identifier: `job_` followed by 16 lowercase hexadecimal digits (64 random bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

/// The text given to [`JobId::parse`] is not `job_` + 16 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a job id (expected `job_` followed by 16 lowercase hex digits)")]
pub struct InvalidJobId(pub String);

impl JobId {
    /// A fresh random id.
    pub fn generate() -> JobId {
        let mut bytes = [0u8; 8];
        // getrandom fails only when the OS has no entropy source at all; fall back to the clock
        // and a process-wide counter (still unique within this process) rather than panicking.
        if getrandom::fill(&mut bytes).is_err() {
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
            bytes = (nanos.rotate_left(17) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes();
        }
        let mut s = String::with_capacity(20);
        s.push_str("job_");
        for b in bytes {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
        }
        JobId(s)
    }

    /// Parses `job_` + 16 lowercase hex digits.
    ///
    /// # Errors
    /// [`InvalidJobId`] for anything else.
    pub fn parse(s: &str) -> Result<JobId, InvalidJobId> {
        let ok = s.len() == 20
            && s.starts_with("job_")
            && s[4..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok { Ok(JobId(s.to_owned())) } else { Err(InvalidJobId(s.to_owned())) }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for JobId {
    type Error = InvalidJobId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        JobId::parse(&s)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

/// Where a job is in its life: `queued -> running -> completed | failed | cancelled`
/// (a queued job can also be cancelled directly; a running job can go back to queued when
/// the server shuts down or restarts after a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for a worker slot.
    Queued,
    /// ffmpeg is running.
    Running,
    /// ffmpeg exited with status 0.
    Completed,
    /// ffmpeg failed, timed out, or the job was interrupted too often.
    Failed,
    /// Cancelled by a client.
    Cancelled,
}

/// The text is not one of `queued`, `running`, `completed`, `failed`, `cancelled`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a job status (expected queued, running, completed, failed or cancelled)")]
pub struct InvalidJobStatus(pub String);

impl JobStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [JobStatus; 5] =
        [JobStatus::Queued, JobStatus::Running, JobStatus::Completed, JobStatus::Failed, JobStatus::Cancelled];

    /// The lowercase name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// `completed`, `failed` or `cancelled`: no further transition happens.
    pub fn is_finished(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = InvalidJobStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| InvalidJobStatus(s.to_owned()))
    }
}

/// A snapshot of a running job's progress, built from ffmpeg's `-progress` blocks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Frames written so far (video outputs; `None` for audio-only).
    pub frame: Option<u64>,
    /// Frames encoded per second (wall clock).
    pub fps: Option<f64>,
    /// Output timestamp reached, in microseconds (never negative).
    pub out_time_us: Option<i64>,
    /// Average output bitrate so far, in kbit/s.
    pub bitrate_kbits_per_s: Option<f64>,
    /// Bytes written so far.
    pub total_size_bytes: Option<u64>,
    /// Encoding speed as a multiple of real time (`2.0` = twice real time).
    pub speed: Option<f64>,
    /// Percent complete, 0..=100; `None` when the expected output duration is unknown.
    pub percent: Option<f64>,
    /// Estimated seconds until completion; `None` when percent or speed is unknown.
    pub eta_seconds: Option<f64>,
    /// Frames duplicated to keep the output frame rate.
    pub dup_frames: Option<u64>,
    /// Frames dropped to keep the output frame rate.
    pub drop_frames: Option<u64>,
    /// Which step of a staged job is under way (files in a bucket: [`Phase`]); `None` when
    /// ffmpeg works on the data directory in place, and, as shown ([`Job::shown_progress`]),
    /// once the job is no longer running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
}

/// The steps of a job whose files are in a bucket ([`crate::staging`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Its inputs are being copied from the storage into the worker's staging directory.
    Downloading,
    /// ffmpeg runs.
    Running,
    /// Its outputs are being copied into the storage.
    Uploading,
}

/// Options given when a job is submitted, besides its command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitOptions {
    /// Higher runs first; equal priorities run in submission order. Default 0.
    pub priority: i32,
    /// Wall-clock limit for this job in seconds; capped by the server's limit.
    pub timeout_seconds: Option<u64>,
    /// Caller's own labels, echoed back.
    pub metadata: BTreeMap<String, String>,
    /// What the command may read and write. [`Jobs::submit`](crate::Jobs::submit) sets it from
    /// the resolved command (whatever the caller gave); the store keeps it so that claiming
    /// never starts a job whose files a running job may write, or that may write what a
    /// running job reads or writes. The store trusts it: the default (empty) footprint
    /// conflicts with nothing. (Jobs stored before footprints existed have none, and run alone.)
    pub footprint: Footprint,
    /// Who is told about the job's events ([`crate::webhook`]). [`Jobs::submit`](crate::Jobs::submit)
    /// checks the job's own subscriptions and adds the server's.
    pub webhooks: Vec<WebhookSubscription>,
    /// Labels a node must have to run the job ([`crate::nodes`]); empty: any node. Checked and
    /// sorted by [`SubmitOptions::check`].
    pub requires: Vec<String>,
    /// The client's idempotency key and the request's fingerprint
    /// ([`crate::idempotency`]); `None`: every submission makes a new job.
    pub idempotency: Option<Idempotency>,
}

/// Most metadata entries a job may carry.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Longest metadata key, in characters (Unicode scalar values, as JSON Schema's `maxLength`
/// counts them). Keys are never empty.
pub const MAX_METADATA_KEY_CHARS: usize = 64;
/// Longest metadata value, in characters.
pub const MAX_METADATA_VALUE_CHARS: usize = 1024;
/// Largest `timeout_seconds`: stores keep it as a signed 64-bit integer.
pub const MAX_TIMEOUT_SECONDS: u64 = i64::MAX as u64;
/// Page size of a listing when the caller names none.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page size of a listing.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A request field outside the limits every front end is held to (checked by
/// [`crate::Jobs`], so HTTP, the CLI and Rust callers all get the same rules).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// More than [`MAX_METADATA_ENTRIES`] metadata entries.
    #[error("metadata has {0} entries; at most {MAX_METADATA_ENTRIES} are allowed")]
    TooManyMetadataEntries(usize),
    /// A metadata key that is empty or longer than [`MAX_METADATA_KEY_CHARS`].
    #[error("metadata key `{0}` must be 1 to {MAX_METADATA_KEY_CHARS} characters")]
    MetadataKey(String),
    /// A metadata value longer than [`MAX_METADATA_VALUE_CHARS`]; holds its key.
    #[error("metadata value of `{0}` is longer than {MAX_METADATA_VALUE_CHARS} characters")]
    MetadataValue(String),
    /// `timeout_seconds` outside 1..=[`MAX_TIMEOUT_SECONDS`].
    #[error("timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}, not {0}")]
    Timeout(u64),
    /// A page size outside 1..=[`MAX_PAGE_SIZE`].
    #[error("limit must be between 1 and {MAX_PAGE_SIZE}, not {0}")]
    PageSize(u32),
    /// Both or neither of a submission's `command` and `args` given.
    #[error("give exactly one of `command` (a command line) and `args` (an argument list), not {0}")]
    CommandOrArgs(&'static str),
    /// A `requires` label that is not valid, or too many.
    #[error("requires: {0}")]
    Requires(#[from] crate::nodes::InvalidLabel),
}

/// A submitted command: a command line split with POSIX shell rules, or an argument list taken
/// as it is. Either way the job stores one line ([`CommandInput::into_line`]), from which
/// [`Job::args`] gives the arguments back exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandInput {
    /// A command line (POSIX shell quoting, no expansion).
    Line(String),
    /// An argument list, one element per argument (no quoting rules).
    Args(Vec<String>),
}

impl CommandInput {
    /// The command of a submission that has a `command` and an `args` field.
    ///
    /// # Errors
    /// [`InvalidRequest::CommandOrArgs`] unless exactly one is given.
    pub fn from_fields(command: Option<String>, args: Option<Vec<String>>) -> Result<CommandInput, InvalidRequest> {
        match (command, args) {
            (Some(line), None) => Ok(CommandInput::Line(line)),
            (None, Some(args)) => Ok(CommandInput::Args(args)),
            (Some(_), Some(_)) => Err(InvalidRequest::CommandOrArgs("both")),
            (None, None) => Err(InvalidRequest::CommandOrArgs("neither")),
        }
    }

    /// The command as one line: a line as given; arguments joined with POSIX shell quoting
    /// (`shell_words::join`), which splitting gives back exactly (a NUL byte stays, and is
    /// refused when the command is parsed).
    pub fn into_line(self) -> String {
        match self {
            CommandInput::Line(line) => line,
            CommandInput::Args(args) => shell_words::join(args),
        }
    }
}

impl SubmitOptions {
    /// Checks the options against the limits above, and sorts `requires` (without duplicates).
    ///
    /// # Errors
    /// The first [`InvalidRequest`] found.
    pub fn check(&mut self) -> Result<(), InvalidRequest> {
        self.requires = crate::nodes::normalize_labels(std::mem::take(&mut self.requires))?;
        if self.metadata.len() > MAX_METADATA_ENTRIES {
            return Err(InvalidRequest::TooManyMetadataEntries(self.metadata.len()));
        }
        for (k, v) in &self.metadata {
            if k.is_empty() || k.chars().count() > MAX_METADATA_KEY_CHARS {
                return Err(InvalidRequest::MetadataKey(k.clone()));
            }
            if v.chars().count() > MAX_METADATA_VALUE_CHARS {
                return Err(InvalidRequest::MetadataValue(k.clone()));
            }
        }
        match self.timeout_seconds {
            Some(t) if t == 0 || t > MAX_TIMEOUT_SECONDS => Err(InvalidRequest::Timeout(t)),
            _ => Ok(()),
        }
    }
}

/// One file a completed job wrote, described from ffmpeg's own `Output #N` listing (see
/// [`ffmpeg_core::output_banner`]), its final progress and the file system; no ffprobe runs.
/// What cannot be known that way is `None` (or no streams).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    /// The file, relative to the data directory.
    pub path: String,
    /// Its size in bytes after the run.
    pub size_bytes: u64,
    /// Output duration in seconds (ffmpeg's final `out_time`): only for the file of a
    /// command's only output, else `None` (`out_time` is the furthest of all outputs).
    pub duration_seconds: Option<f64>,
    /// The muxer that wrote it (`mp4`, `hls`, `image2`, ...); `None` for files the listing
    /// does not name, such as HLS segments.
    pub format: Option<String>,
    /// The output's streams as ffmpeg listed them (which part of the listing gives which
    /// field: [`ffmpeg_core::stream::StreamInfo`]); empty when unknown.
    pub streams: Vec<ffmpeg_core::stream::StreamInfo>,
}

/// A job as stored: what was asked, where it is, and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique id.
    pub id: JobId,
    /// Current status.
    pub status: JobStatus,
    /// The command line as submitted (without the word `ffmpeg`).
    pub command: String,
    /// When the job was submitted (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its latest run started (UTC).
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// When it reached a final status (UTC).
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    /// Latest progress; `None` until ffmpeg reports any.
    pub progress: Option<Progress>,
    /// Files the command produced, relative to the data directory (after success).
    pub output_files: Vec<String>,
    /// What is known of each produced file (after success): one entry per file of
    /// `output_files`, in the same order. Empty for jobs that completed before this was kept.
    #[serde(default)]
    pub outputs: Vec<OutputFile>,
    /// Why the job failed, in a few lines; `None` unless failed.
    pub error: Option<String>,
    /// Scheduling priority: higher runs first.
    pub priority: i32,
    /// Effective wall-clock limit in seconds, if one was asked for.
    pub timeout_seconds: Option<u64>,
    /// Caller's own labels.
    pub metadata: BTreeMap<String, String>,
    /// How many times a worker has started this job (more than 1 after crash recovery).
    pub attempts: u32,
    /// Monotonic submission sequence number: FIFO order and paging cursor.
    pub seq: i64,
    /// Who is told about the job's events (its own `webhook_url`, the server's `WEBHOOK_URL`).
    #[serde(default)]
    pub webhooks: Vec<WebhookSubscription>,
    /// The job's event sequence: the id of its latest status event. 1 when queued, and one
    /// more with every status change (claim, finish, cancel of a queued job, requeue,
    /// recovery), in the same store write as the change, so it survives restarts and never
    /// goes back. Progress does not change it (see [`crate::events`] for progress event ids).
    pub event_seq: u64,
    /// Labels a node must have to run the job (sorted); empty: any node.
    #[serde(default)]
    pub requires: Vec<String>,
    /// When a job that went back in the queue after an attempt failed for a reason that may
    /// pass (the storage unavailable, [`JobStore::retry`](crate::JobStore::retry)) may start
    /// again (UTC, by the store's clock: the database's for PostgreSQL); no claim takes it
    /// before. Kept after that (a past time changes nothing); [`Job::retry_wait`] is the wait
    /// still ahead. `None`: never retried so.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub retry_at: Option<OffsetDateTime>,
    /// Why the job went back in the queue at its latest [`JobStore::retry`](crate::JobStore::retry),
    /// e.g. "attempt 1 of 3 failed: ..."; `None` when it never did. Not an error: the job's
    /// `error` stays `None` unless it fails.
    #[serde(default)]
    pub retry_reason: Option<String>,
    /// Why a queued job cannot start now: it waits for its [`Job::retry_at`]
    /// ([`Job::retry_wait`]), or no live node may take it (e.g. "no live node has labels
    /// [gpu]"). Not stored: [`Jobs`](crate::Jobs) fills it in when it reads a job; stores
    /// leave it `None`.
    #[serde(default)]
    pub waiting_reason: Option<String>,
    /// The idempotency key it was submitted with, and its request's fingerprint
    /// ([`crate::idempotency`]); `None`: submitted without one. Kept as long as the job's
    /// record.
    #[serde(default)]
    pub idempotency: Option<Idempotency>,
}

impl Job {
    /// The job's latest progress as it is shown (the API, events, webhooks):
    /// [`Progress::phase`] only while the job is running. The store keeps the last snapshot
    /// as it was written, phase included, and a job that ended (or went back to the queue)
    /// during a step is no longer in it (tester finding F7).
    pub fn shown_progress(&self) -> Option<Progress> {
        let mut progress = self.progress.clone()?;
        if self.status != JobStatus::Running {
            progress.phase = None;
        }
        Some(progress)
    }

    /// [`Job::retry_at`] while the job is queued and that time is after `now`: no claim may
    /// take it before then. `None` otherwise.
    pub fn retry_pending(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.retry_at.filter(|at| self.status == JobStatus::Queued && *at > now)
    }

    /// Why queued job `self` waits at `now` for its [`Job::retry_at`]: its
    /// [`Job::retry_reason`] and the time of the next attempt (to the second, UTC), e.g.
    /// "attempt 1 of 2 failed: ...; next attempt at 20:31:07Z"; `None` when it is not queued
    /// or that time has come.
    pub fn retry_wait(&self, now: OffsetDateTime) -> Option<String> {
        let at = self.retry_pending(now)?;
        let reason = self.retry_reason.as_deref().unwrap_or("an attempt failed for a reason that may pass");
        let utc = time::UtcOffset::UTC;
        let at = at.to_offset(utc);
        // Rounded up to the second: the time shown is never before the attempt may start.
        let shown = match at.nanosecond() {
            0 => at,
            _ => at.replace_nanosecond(0).unwrap_or(at) + time::Duration::SECOND,
        };
        let day = if shown.date() == now.to_offset(utc).date() { String::new() } else { format!("{} ", shown.date()) };
        let (h, m, s) = shown.to_hms();
        Some(format!("{reason}; next attempt at {day}{h:02}:{m:02}:{s:02}Z"))
    }

    /// The command as an argument list: [`Job::command`] split with POSIX shell rules (as it
    /// was parsed at submit; the arguments themselves for a job submitted as a list). A stored
    /// command that does not split (none that was accepted) is one argument.
    pub fn args(&self) -> Vec<String> {
        shell_words::split(&self.command).unwrap_or_else(|_| vec![self.command.clone()])
    }

    /// The job's own webhook subscription (its `webhook_url`), if any.
    pub fn own_webhook(&self) -> Option<&WebhookSubscription> {
        self.webhooks.iter().find(|s| s.source == SubscriptionSource::Job)
    }

    /// A new `queued` job with sequence number `seq`, submitted at `created_at`: what every
    /// store's `insert` records.
    pub fn new_queued(command: String, options: SubmitOptions, seq: i64, created_at: OffsetDateTime) -> Job {
        Job {
            id: JobId::generate(),
            status: JobStatus::Queued,
            command,
            created_at,
            started_at: None,
            completed_at: None,
            progress: None,
            output_files: Vec::new(),
            outputs: Vec::new(),
            error: None,
            priority: options.priority,
            timeout_seconds: options.timeout_seconds,
            metadata: options.metadata,
            attempts: 0,
            seq,
            webhooks: options.webhooks,
            event_seq: 1,
            requires: options.requires,
            retry_at: None,
            retry_reason: None,
            waiting_reason: None,
            idempotency: options.idempotency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exactly_one_of_command_and_args() {
        let line = || Some("-i a.mp4 b.mp4".to_owned());
        let args = || Some(vec!["-i".to_owned()]);
        assert_eq!(CommandInput::from_fields(line(), None), Ok(CommandInput::Line("-i a.mp4 b.mp4".to_owned())));
        assert_eq!(CommandInput::from_fields(None, args()), Ok(CommandInput::Args(vec!["-i".to_owned()])));
        assert_eq!(CommandInput::from_fields(line(), args()), Err(InvalidRequest::CommandOrArgs("both")));
        assert_eq!(CommandInput::from_fields(None, None), Err(InvalidRequest::CommandOrArgs("neither")));
    }

    #[test]
    fn a_retry_wait_names_the_reason_and_the_next_attempt_rounded_up() {
        use time::macros::datetime;
        let now = datetime!(2026-11-30 20:31:05.2 UTC);
        let mut job = Job::new_queued("x".to_owned(), SubmitOptions::default(), 1, now);
        assert_eq!((job.retry_pending(now), job.retry_wait(now)), (None, None), "never retried");
        job.retry_at = Some(datetime!(2026-11-30 20:31:06.4 UTC));
        job.retry_reason = Some("the storage `s3://b` is unavailable (attempt 1 of 2 failed: x)".to_owned());
        assert_eq!(job.retry_pending(now), job.retry_at);
        assert_eq!(
            job.retry_wait(now).as_deref(),
            Some("the storage `s3://b` is unavailable (attempt 1 of 2 failed: x); next attempt at 20:31:07Z")
        );
        // Shown in UTC (the same day as now there); on another day, with the date.
        job.retry_at = Some(datetime!(2026-12-01 01:00:00 +02:00));
        assert_eq!(
            job.retry_wait(now).as_deref(),
            Some("the storage `s3://b` is unavailable (attempt 1 of 2 failed: x); next attempt at 23:00:00Z")
        );
        job.retry_at = Some(datetime!(2026-12-01 00:00:00 UTC));
        assert_eq!(
            job.retry_wait(now).as_deref(),
            Some(
                "the storage `s3://b` is unavailable (attempt 1 of 2 failed: x); next attempt at 2026-12-01 00:00:00Z"
            )
        );
        // Its time has come, or the job is no longer queued: no wait.
        assert_eq!(job.retry_wait(datetime!(2026-12-01 00:00:00 UTC)), None);
        job.status = JobStatus::Running;
        assert_eq!((job.retry_pending(now), job.retry_wait(now)), (None, None));
    }

    proptest! {
        /// An argument list stored as one line comes back exactly, whatever it holds.
        #[test]
        fn an_argument_list_survives_the_stored_line(args in prop::collection::vec(any::<String>(), 0..6)) {
            let job = Job::new_queued(
                CommandInput::Args(args.clone()).into_line(),
                SubmitOptions::default(),
                1,
                OffsetDateTime::UNIX_EPOCH,
            );
            prop_assert_eq!(job.args(), args);
        }
    }
}

//! The service's API, what front ends (HTTP, CLI, a Rust caller) call: submit and check a
//! command, list and read jobs, cancel, delete, a job's log and webhooks, counts, readiness,
//! event streams, and probing a media file.

use std::sync::Arc;

use ffmpeg_core::capabilities::{Capabilities, UnknownName};
use ffmpeg_core::command::{Command, CommandError};
use ffmpeg_core::footprint::Footprint;
use ffmpeg_core::sandbox::{ResolvedCommand, Sandbox, SandboxError};

use super::places::{check_places_in_bucket, check_places_in_place, first_place};
use super::{Jobs, METRIC_FINISHED, METRIC_SUBMITTED, blocking};
use crate::concat_lists::{self, ConcatListError};
use crate::events::{AllEvents, AllFilter, EventId, JobEvents, Resume};
use crate::exec_limits::ExecLimitError;
use crate::idempotency::{Idempotency, IdempotencyKey, Submitted};
use crate::media::{MediaInfo, MediaProbeError};
use crate::model::{InvalidRequest, Job, JobId, MAX_PAGE_SIZE, SubmitOptions};
use crate::runner::Runner;
use crate::staging::{Stage, StagingError};
use crate::storage::{
    NameLimits, PROBE_INTERVAL, READY_TIMEOUT, Storage, StorageError, WrittenNameTooLong, check_written, in_the_way,
};
use crate::store::{CancelOutcome, ListQuery, StatusCounts, StoreError};
use crate::webhook::{Delivery, WebhookConfig, WebhookError};

/// How long a submission waits for its checks in a bucket (its concat lists read,
/// [`concat_lists::entries`], and its places checked) before it goes on without what was not
/// read by then (after a check that the bucket answers at all: `Jobs::check_in_bucket`).
const LISTS_AT_SUBMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// An option is outside the service's limits (metadata, timeout).
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The command line does not parse.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A path escapes the data directory or names a protocol.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// An option, codec, format or filter the installed ffmpeg does not know.
    #[error(transparent)]
    UnknownName(#[from] UnknownName),
    /// The operating system would refuse to start ffmpeg with this command: its arguments
    /// together, one argument, a file name or a path is too long.
    #[error(transparent)]
    ExecLimit(#[from] ExecLimitError),
    /// A name the job would write (an output, a segment its muxer numbers, a pass log) is
    /// longer than the storage holds ([`crate::storage::NameLimits`]: a bucket's 1024-byte
    /// keys, a disk's `NAME_MAX` and `PATH_MAX`).
    #[error(transparent)]
    NameTooLong(#[from] WrittenNameTooLong),
    /// The job's webhook is refused (no secret to sign with, a URL the rules refuse, ...).
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    /// A file the job would write is where the storage holds a directory, or below a file
    /// (a bucket holds both `a` and `a/x`, a disk cannot: jobs obey the disk's rule, as the
    /// files API does). `problem` is [`StorageError::IsADirectory`] or
    /// [`StorageError::NotADirectory`].
    #[error(
        "argument {position} `{argument}`: {}; a job cannot write a file where the storage holds a directory, \
         nor below a file",
        in_the_way(.problem)
    )]
    OutputConflict {
        /// 1-based position of the argument that makes ffmpeg write there (an output URL, or an
        /// option naming a file).
        position: usize,
        /// The argument as written.
        argument: String,
        /// What is in the way.
        problem: Box<StorageError>,
    },
    /// With the files in a bucket: the bucket is known not to answer (a check found it so,
    /// [`StorageError::Unreachable`], naming since when) or does not exist
    /// ([`StorageError::NoBucket`]), so where the command reads and writes could not be
    /// checked; nothing was queued. A submission that finds the bucket silent makes that
    /// known to the whole service first ([`Jobs::submit`]'s checks).
    #[error("the job was not queued: its files cannot be checked in the storage: {0}")]
    StorageUnavailable(#[source] StorageError),
    /// The submission's idempotency key already belongs to job `job`, which was submitted
    /// with a different request ([`crate::idempotency`]): nothing was queued.
    #[error(
        "the idempotency key `{key}` was already used for job {job} with a different request; a new submission \
         needs a new key (the same request with this key answers that job)"
    )]
    IdempotencyKeyReused {
        /// The key.
        key: IdempotencyKey,
        /// The job the key belongs to.
        job: JobId,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a listing was refused.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The page size is outside the service's limits.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One page of [`Jobs::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The jobs, in submission order.
    pub jobs: Vec<Job>,
    /// When more jobs follow: the `after_seq` of the next page's [`ListQuery`].
    pub next_after_seq: Option<i64>,
}

impl Jobs {
    /// Describes the media file at `path` (relative to the data directory) with ffprobe, run
    /// under the rules ffmpeg runs under; answers from the cache while the file's size and
    /// modification time are unchanged. See [`crate::media`].
    ///
    /// # Errors
    /// [`MediaProbeError`]: the sandbox refuses the path, no such file, not media (with
    /// ffprobe's reason), ffprobe unavailable.
    ///
    /// With the files in a bucket, ffprobe reads a copy downloaded into a private stage (the
    /// whole file: containers such as mp4 may keep their index at the end).
    pub async fn probe_media(&self, path: &str) -> Result<Arc<MediaInfo>, MediaProbeError> {
        // Before any download: a name the policy refuses to open is refused as a job's `-i`.
        self.sandbox.check_input_by_name(path, 1)?;
        if self.config.remote_storage.is_none() {
            check_probed_lists(&self.sandbox, path, None).await?;
            return self.media.probe(&self.sandbox, path).await;
        }
        // The bucket behind its availability: a bucket known unreachable fails at once.
        let remote = &self.storage;
        let sandbox = Arc::clone(&self.sandbox);
        let stage = blocking(move || Stage::for_probe(&sandbox))
            .await
            .map_err(|e| MediaProbeError::Unavailable(e.to_string()))?;
        // A path the storage refuses is left to the sandbox's answer, with its rule.
        if let Ok(normal) = remote.check_path(path).await {
            match stage.download_file(remote.as_ref(), &normal).await {
                Ok(_) => {}
                Err(StagingError::Download(StorageError::NotFound(_))) => {
                    return Err(MediaProbeError::NotFound(path.to_owned()));
                }
                // A directory in the bucket is one in the stage too, so that the sandbox
                // answers as it does on a disk (`not-a-file`, tester finding F25).
                Err(StagingError::Download(StorageError::IsADirectory(_))) => {
                    let dir = stage.root().join(&normal);
                    tokio::fs::create_dir_all(&dir)
                        .await
                        .map_err(|e| MediaProbeError::Unavailable(format!("preparing the probe failed: {e}")))?;
                }
                // The storage's own failure, answered as the files API answers it.
                Err(StagingError::Download(e)) => return Err(MediaProbeError::Storage(e)),
                Err(e) => return Err(MediaProbeError::Unavailable(e.to_string())),
            }
        }
        let sandbox = Arc::new(stage.sandbox().clone());
        check_probed_lists(&sandbox, path, Some((&stage, remote.as_ref()))).await?;
        self.media.probe(&sandbox, path).await
    }

    /// The events of job `id` for a client that last saw `last_seen` (a reconnect's
    /// `Last-Event-ID`; `None` for a first connection): [`Resume::Finished`] when that was the
    /// job's final status event, else the current status, the latest progress (when running)
    /// and every newer event until the final status.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or the store failed.
    pub async fn events_of(&self, id: &JobId, last_seen: Option<EventId>) -> Result<Resume, StoreError> {
        // Subscribed before the read: a change committed after the read reaches the stream.
        let subscription = self.events.subscribe(id);
        let job = self.get(id).await?;
        if job.status.is_finished() && last_seen.is_some_and(|last| last.status >= job.event_seq) {
            return Ok(Resume::Finished);
        }
        Ok(Resume::Events(JobEvents::start(subscription, job)))
    }

    /// Every job's events from now on, filtered by `filter`.
    pub fn all_events(&self, filter: AllFilter) -> AllEvents {
        AllEvents::new(&self.events, filter)
    }

    /// Parses `command`, resolves its paths under the policy, checks its names against the
    /// installed ffmpeg and that the operating system can start it ([`Runner::check_startable`]),
    /// as a submission would, without queueing it.
    ///
    /// Blocks: resolving paths canonicalises them (file-system calls). From async code use
    /// [`Jobs::check_async`].
    ///
    /// # Errors
    /// [`SubmitError::Command`], [`SubmitError::Sandbox`], [`SubmitError::UnknownName`],
    /// [`SubmitError::ExecLimit`], [`SubmitError::NameTooLong`], or (files in the data
    /// directory) [`SubmitError::OutputConflict`].
    pub fn check(&self, command: &str) -> Result<ResolvedCommand, SubmitError> {
        let limits = self.storage.name_limits();
        let in_place = self.config.remote_storage.is_none();
        check_command(
            &self.sandbox,
            self.config.capabilities.as_deref(),
            self.runner.as_ref(),
            &limits,
            in_place,
            command,
        )
    }

    /// [`Jobs::check`] on tokio's blocking thread pool, so the file-system calls do not hold up
    /// an async worker thread.
    ///
    /// # Errors
    /// As [`Jobs::check`].
    pub async fn check_async(&self, command: &str) -> Result<ResolvedCommand, SubmitError> {
        self.check_for(command, &[]).await
    }

    /// [`Jobs::check_async`] for a job that requires `requires`: with a node registry, the
    /// names are checked against what the ffmpeg of the live nodes that could take it know
    /// ([`NodeDirectory::capabilities_for`]), not only this node's.
    ///
    /// # Errors
    /// As [`Jobs::check`], and [`SubmitError::Store`] when the registry cannot be read.
    pub async fn check_for(&self, command: &str, requires: &[String]) -> Result<ResolvedCommand, SubmitError> {
        self.check_then(command, requires, |_, _| ()).await.map(|(resolved, ())| resolved)
    }

    /// [`Jobs::check_for`], then `more(sandbox, resolved)` in the same trip to a blocking
    /// thread (one trip for everything a submission does on the file system).
    async fn check_then<T: Send + 'static>(
        &self,
        command: &str,
        requires: &[String],
        more: impl FnOnce(&Sandbox, &ResolvedCommand) -> T + Send + 'static,
    ) -> Result<(ResolvedCommand, T), SubmitError> {
        let sandbox = Arc::clone(&self.sandbox);
        let capabilities = match &self.directory {
            Some(directory) => directory.capabilities_for(requires).await?,
            None => self.config.capabilities.clone(),
        };
        let runner = Arc::clone(&self.runner);
        let limits = self.storage.name_limits();
        let in_place = self.config.remote_storage.is_none();
        let command = command.to_owned();
        blocking(move || {
            let resolved =
                check_command(&sandbox, capabilities.as_deref(), runner.as_ref(), &limits, in_place, &command)?;
            let more = more(&sandbox, &resolved);
            Ok((resolved, more))
        })
        .await
    }

    /// Checks `options` ([`SubmitOptions::check`]) and `command` ([`Jobs::check_async`]: off
    /// the async threads), and queues it.
    /// `options.timeout_seconds` is capped by the server's limit.
    ///
    /// With [`SubmitOptions::idempotency`], a repeat answers the job of the first submission
    /// instead of queueing another; see [`Jobs::submit_idempotent`], which also tells which it
    /// was.
    ///
    /// # Errors
    /// [`SubmitError`]: the options or the command are refused (nothing is queued) or the
    /// store failed.
    pub async fn submit(&self, command: &str, options: SubmitOptions) -> Result<Job, SubmitError> {
        self.submit_idempotent(command, options).await.map(|submitted| submitted.job)
    }

    /// [`Jobs::submit`], telling a new job from a repeat ([`crate::idempotency`]): when
    /// [`SubmitOptions::idempotency`]'s key already names a job submitted with the same
    /// fingerprint, that job as it is now, [`Submitted::replayed`], without checking or
    /// queueing anything (also when two submissions with one key race: the store's unique key
    /// decides, the other gets the winner's job).
    ///
    /// # Errors
    /// As [`Jobs::submit`]; [`SubmitError::IdempotencyKeyReused`] when the key names a job
    /// submitted with another fingerprint.
    pub async fn submit_idempotent(&self, command: &str, mut options: SubmitOptions) -> Result<Submitted, SubmitError> {
        options.check()?;
        if let Some(idempotency) = &options.idempotency
            && let Some(job) = self.store.get_by_idempotency_key(&idempotency.key).await?
        {
            return self.replay(job, idempotency).await;
        }
        // What its concat lists name is read too: no upload may change it under the job. On a
        // disk, in the check's trip to a blocking thread.
        let in_place = self.config.remote_storage.is_none();
        let (resolved, listed) = self
            .check_then(command, &options.requires, move |sandbox, resolved| {
                let mut listed = Vec::new();
                if in_place {
                    concat_lists::entries_in_place(sandbox, resolved, &mut listed);
                }
                listed
            })
            .await?;
        let mut footprint = Footprint::of(&resolved);
        footprint.add_read_files(listed);
        if !in_place {
            // In place, `check_command` gave the data directory's answer (the same).
            self.check_in_bucket(&resolved, &mut footprint).await?;
        }
        options.footprint = footprint;
        let requested = std::mem::take(&mut options.webhooks);
        options.webhooks = WebhookConfig::subscriptions(self.config.webhooks.as_ref(), requested).await?;
        if let (Some(t), Some(max)) = (options.timeout_seconds, self.config.max_timeout) {
            options.timeout_seconds = Some(t.min(max.as_secs()));
        }
        let idempotency = options.idempotency.clone();
        let mut job = match self.store.insert(command.to_owned(), options).await {
            Ok(job) => job,
            // Another submission with the key committed first.
            Err(StoreError::IdempotencyKeyTaken(taken)) => match &idempotency {
                Some(idempotency) => return self.replay(*taken, idempotency).await,
                None => return Err(StoreError::IdempotencyKeyTaken(taken).into()),
            },
            Err(e) => return Err(e.into()),
        };
        self.status_changed(&mut job).await;
        metrics::counter!(METRIC_SUBMITTED).increment(1);
        Ok(Submitted { job, replayed: false })
    }

    /// With the files in a bucket, a submission's checks there: what its concat lists name
    /// (added to `footprint`) and what lies where it reads and writes
    /// ([`check_places_in_bucket`]), both bounded by [`LISTS_AT_SUBMIT`] (a bucket that
    /// answers slowly holds up no submission: what was read by then counts, the run checks
    /// again).
    ///
    /// A bucket that does not answer gets no job queued (tester finding L8: each submission
    /// waited for the checks' time, then queued the job, and the outage stayed unknown):
    /// - while it is known not to ([`Availability`](crate::storage::Availability)), the
    ///   submission is refused at once;
    /// - beside the checks, whether it answers at all is asked as `/ready` asks it
    ///   ([`Availability::check`](crate::storage::Availability::check): answered from what
    ///   the last 5 s of calls saw, else one request within
    ///   [`READY_TIMEOUT`]), and asked again
    ///   ([`Availability::confirm`](crate::storage::Availability::confirm)) if the checks still
    ///   wait [`READY_TIMEOUT`] and a second before their own time ends; a failed check refuses the
    ///   submission then (a silent bucket costs the first submission that finds it at most
    ///   [`LISTS_AT_SUBMIT`], the next ones nothing);
    /// - a check that got no answer (or ran out of time) is confirmed as a worker confirms a
    ///   failed transfer ([`Availability::confirm`](crate::storage::Availability::confirm)):
    ///   a bucket found not answering is then known so to the whole service (`/ready`, the
    ///   files API, the workers, the next submissions) and the submission is refused; one
    ///   found answering lets it through, as before.
    ///
    /// # Errors
    /// [`SubmitError::StorageUnavailable`] ([`StorageError::Unreachable`] or
    /// [`StorageError::NoBucket`]), and as [`check_places_in_bucket`].
    async fn check_in_bucket(&self, resolved: &ResolvedCommand, footprint: &mut Footprint) -> Result<(), SubmitError> {
        let named = first_place(resolved);
        let refused = || self.availability.gate(&named).map_err(SubmitError::StorageUnavailable);
        refused()?;
        let storage = self.storage.as_ref();
        let mut listed = Vec::new();
        let outcome = {
            let checks = async {
                let lists = concat_lists::entries(&self.sandbox, resolved, storage, &mut listed);
                let places = check_places_in_bucket(&self.sandbox, storage, resolved);
                tokio::join!(
                    tokio::time::timeout(LISTS_AT_SUBMIT, lists),
                    tokio::time::timeout(LISTS_AT_SUBMIT, places)
                )
            };
            // Ends only once the bucket is known down: asked as `/ready` asks, and again if the
            // checks still wait when a check then would end a second before their time does
            // (so that it is made by then: measured, a check started to end with their time
            // lost the race to it, and a second check followed: 8 s in all).
            let watch = async {
                if self.availability.check().await.is_ok() {
                    tokio::time::sleep(LISTS_AT_SUBMIT.saturating_sub(READY_TIMEOUT + PROBE_INTERVAL)).await;
                    self.availability.confirm().await;
                    if !self.availability.is_down() {
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                biased;
                done = checks => Some(done),
                () = watch => None,
            }
        };
        // Past the time, what was read so far counts.
        footprint.add_read_files(listed);
        let Some((lists, places)) = outcome else { return refused() };
        let no_answer = match (lists, places) {
            (_, Ok(Err(refusal))) => return Err(refusal),
            (Ok(Ok(())), Ok(Ok(None))) => None,
            (Ok(Err(e)), _) | (_, Ok(Ok(Some(e)))) => Some(e.to_string()),
            (Err(_), _) | (_, Err(_)) => Some(format!("no answer within {} s", LISTS_AT_SUBMIT.as_secs())),
        };
        if let Some(why) = no_answer {
            self.availability.confirm().await;
            refused()?;
            tracing::warn!(error = %why, "the storage did not answer a submission's checks, yet answers its own check; \
                           the run checks again");
        }
        Ok(())
    }

    /// The answer to a submission with `idempotency` whose key is `job`'s: that job (as
    /// [`Jobs::get`] shows it) for the same fingerprint, else
    /// [`SubmitError::IdempotencyKeyReused`].
    async fn replay(&self, mut job: Job, idempotency: &Idempotency) -> Result<Submitted, SubmitError> {
        if job.idempotency.as_ref().is_none_or(|stored| stored.fingerprint != idempotency.fingerprint) {
            return Err(SubmitError::IdempotencyKeyReused { key: idempotency.key.clone(), job: job.id });
        }
        self.explain(std::slice::from_mut(&mut job)).await;
        Ok(Submitted { job, replayed: true })
    }

    /// Cancels a job. A queued job is cancelled at once. A running job's process group is
    /// stopped and this waits (up to the configured `cancel_wait`) until it is recorded as
    /// cancelled. A job running on another node of a cluster is stopped by that node, which
    /// hears of the cancel at once ([`crate::cluster`]), and this waits the same way for its
    /// final status; another process sharing an SQLite file stops it at its next progress
    /// report.
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; [`StoreError::Conflict`] for a finished job.
    pub async fn cancel(&self, id: &JobId) -> Result<Job, StoreError> {
        // Taken before the cancel is written, so that another node's final status reaches it.
        let elsewhere = self.cluster.then(|| self.events.subscribe(id));
        match self.store.cancel(id).await? {
            CancelOutcome::Cancelled(mut job) => {
                self.status_changed(&mut job).await;
                metrics::counter!(METRIC_FINISHED, "status" => job.status.as_str()).increment(1);
                Ok(job)
            }
            CancelOutcome::Requested(job) => {
                let local = self.lock_running().get(id).cloned();
                if let Some(running) = local {
                    running.cancel.cancel();
                    let _ = tokio::time::timeout(self.config.cancel_wait, running.done.cancelled()).await;
                } else if let Some(subscription) = elsewhere {
                    let mut events = JobEvents::start(subscription, job.clone());
                    let finished = async { while events.next().await.is_some_and(|event| !event.is_final()) {} };
                    let _ = tokio::time::timeout(self.config.cancel_wait, finished).await;
                }
                let mut job = self.store.get(id).await?.unwrap_or(job);
                self.explain(std::slice::from_mut(&mut job)).await;
                Ok(job)
            }
        }
    }

    /// The job `id`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or the store failed.
    pub async fn get(&self, id: &JobId) -> Result<Job, StoreError> {
        let mut job = self.store.get(id).await?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
        self.explain(std::slice::from_mut(&mut job)).await;
        Ok(job)
    }

    /// One page of jobs in submission order. `query.limit` is the page size,
    /// 1..=[`MAX_PAGE_SIZE`]; [`Page::next_after_seq`] says where the next page starts.
    ///
    /// # Errors
    /// [`ListError::Invalid`] for a page size out of range, or the store failed.
    pub async fn list(&self, query: &ListQuery) -> Result<Page, ListError> {
        let limit = query.limit;
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(InvalidRequest::PageSize(limit).into());
        }
        // One more than asked tells whether a next page exists, so the last page has none.
        let mut jobs = self.store.list(&ListQuery { limit: limit + 1, ..query.clone() }).await?;
        let mut next_after_seq = None;
        if jobs.len() > limit as usize {
            jobs.truncate(limit as usize);
            next_after_seq = jobs.last().map(|j| j.seq);
        }
        self.explain(&mut jobs).await;
        Ok(Page { jobs, next_after_seq })
    }

    /// The tail of a job's ffmpeg log (empty until it finishes).
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or the store failed.
    pub async fn log(&self, id: &JobId) -> Result<String, StoreError> {
        self.store.log(id).await?.ok_or_else(|| StoreError::NotFound(id.clone()))
    }

    /// Deletes a finished job's record (its files stay).
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; [`StoreError::Conflict`] for a queued or running job.
    pub async fn delete(&self, id: &JobId) -> Result<(), StoreError> {
        self.store.delete(id).await
    }

    /// The webhook deliveries of job `id`, in the order they were written.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or the store failed.
    pub async fn webhooks(&self, id: &JobId) -> Result<Vec<Delivery>, StoreError> {
        self.get(id).await?;
        self.store.deliveries(id).await
    }

    /// How many jobs the store holds in each status.
    ///
    /// # Errors
    /// The store failed.
    pub async fn counts(&self) -> Result<StatusCounts, StoreError> {
        self.store.counts().await
    }

    /// Whether the store answers and can record changes now (readiness).
    ///
    /// # Errors
    /// The store failed, or cannot write ([`StoreError::DiskFull`]: its disk is full;
    /// [`StoreError::Unavailable`]: read-only, I/O errors).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await?;
        self.store.check_writable().await
    }
}

/// ffprobe opens what a concat list names by itself (a file that begins with
/// `ffconcat version 1.0` is probed as one): the entries of the list at `path` (and of the
/// lists it names) are checked by `sandbox` as a job's are ([`concat_lists::check`]) before
/// ffprobe runs, and with `staging` (a bucket) downloaded into the stage first. A path the
/// sandbox refuses is left to the probe's own answer.
async fn check_probed_lists(
    sandbox: &Arc<Sandbox>,
    path: &str,
    staging: Option<(&Stage, &dyn Storage)>,
) -> Result<(), MediaProbeError> {
    let resolved = {
        let (sandbox, path) = (Arc::clone(sandbox), path.to_owned());
        blocking(move || {
            let command = Command::from_args(["-i", path.as_str(), "-f", "null", "-"]).ok()?;
            sandbox.resolve_command(&command).ok()
        })
        .await
    };
    let Some(resolved) = resolved else { return Ok(()) };
    match concat_lists::check(sandbox, &resolved, staging).await {
        Ok(_) => Ok(()),
        Err(ConcatListError::Refused(e)) => Err(MediaProbeError::Sandbox(e)),
        Err(
            e @ (ConcatListError::TooLarge { .. } | ConcatListError::NotText { .. } | ConcatListError::TooMany { .. }),
        ) => Err(MediaProbeError::NotMedia { path: path.to_owned(), reason: e.to_string() }),
        Err(ConcatListError::Staging(StagingError::Download(e))) => Err(MediaProbeError::Storage(e)),
        Err(e) => Err(MediaProbeError::Unavailable(e.to_string())),
    }
}

/// [`Jobs::check`]: the policy first (a hostile command gets the policy's reason; `in_place`,
/// the files in the data directory the sandbox resolves in: then where its outputs go too,
/// [`check_places_in_place`]), then the installed ffmpeg's names, then what the operating
/// system would refuse, then the names the job may write against what the storage holds
/// (`limits`).
fn check_command(
    sandbox: &Sandbox,
    capabilities: Option<&Capabilities>,
    runner: &dyn Runner,
    limits: &NameLimits,
    in_place: bool,
    command: &str,
) -> Result<ResolvedCommand, SubmitError> {
    let parsed = Command::parse(command)?;
    // In place, the data directory the sandbox looks at is the storage: where the outputs go
    // too ([`WrittenPlaces`]: an output onto a directory or below a file is
    // [`SubmitError::OutputConflict`], as on a bucket).
    let resolved =
        if in_place { check_places_in_place(sandbox, &parsed)? } else { sandbox.resolve_command(&parsed)? };
    if let Some(capabilities) = capabilities {
        capabilities.check(resolved.command())?;
    }
    runner.check_startable(&resolved)?;
    check_written(&resolved, limits)?;
    Ok(resolved)
}

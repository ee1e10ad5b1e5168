//! Waiting for a job to finish: [`Client::wait`] follows the job's event stream
//! (`GET /jobs/{id}/events`) and, when the stream is cut or unavailable (an older server, a
//! proxy that drops it), polls `GET /jobs/{id}`, riding out a server restart. While the job is
//! queued, why it waits (`waiting_reason`) is read again every [`WAITING_RECHECK`]: it can
//! change without a status change (a node that could take the job comes or goes), which the
//! stream does not carry.

use std::time::{Duration, Instant};

use ffmpeg_worker_api::{JobResponse, JobStatusWire};

use crate::{Client, ClientError, JobEvent};

/// While a job followed on its event stream is queued, how often its `waiting_reason` is read
/// again (`GET /jobs/{id}`); a change is reported as a new snapshot.
pub const WAITING_RECHECK: Duration = Duration::from_secs(5);

/// How [`Client::wait_with`] polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    /// Time between two polls.
    pub poll_interval: Duration,
    /// How long an unreachable or overloaded server (transient errors, see
    /// [`ClientError::is_transient`]) is retried before waiting fails, counted from the first
    /// failure since the last good answer.
    pub transient_budget: Duration,
    /// Whether to follow the job's event stream first (polling only once it is cut).
    pub stream: bool,
}

impl Default for WaitOptions {
    /// Follows the event stream; then polls every 250 ms; tolerates 30 s of transient errors
    /// (a server restart).
    fn default() -> Self {
        WaitOptions {
            poll_interval: Duration::from_millis(250),
            transient_budget: Duration::from_secs(30),
            stream: true,
        }
    }
}

/// What [`Client::wait_with`] reports while it waits.
#[derive(Debug)]
#[non_exhaustive]
pub enum WaitEvent<'a> {
    /// A snapshot of the job: the first one, then one per status change and progress report
    /// of the stream (the last status with the new progress) and per change of a queued job's
    /// `waiting_reason`, or one per poll.
    Job(&'a JobResponse),
    /// A poll failed with a transient error; polling goes on after `retry_in`.
    Retrying {
        /// The failure.
        error: &'a ClientError,
        /// The delay before the next poll (the server's `Retry-After`, when it sent one).
        retry_in: Duration,
    },
}

impl Client {
    /// Waits until the job is finished (completed, failed or cancelled) and returns it,
    /// following its event stream, then polling, with the default [`WaitOptions`]. A job that fails is not an error: look at its `status`
    /// and `error`.
    ///
    /// Dropping the future stops waiting; the job itself carries on.
    ///
    /// # Errors
    /// An unknown id is [`ClientError::Problem`] with status 404; a server unreachable for
    /// longer than the transient budget is the last [`ClientError::Unreachable`].
    pub async fn wait(&self, id: &str) -> Result<JobResponse, ClientError> {
        self.wait_with(id, &WaitOptions::default(), |_| {}).await
    }

    /// [`Client::wait`] with your own settings, calling `on_event` with every snapshot of the
    /// job (to show progress) and every transient failure. Any failure of the stream (cut,
    /// refused, not offered) falls back to polling, which reports the error if there is one.
    ///
    /// # Errors
    /// As [`Client::wait`].
    pub async fn wait_with(
        &self,
        id: &str,
        options: &WaitOptions,
        mut on_event: impl FnMut(WaitEvent<'_>),
    ) -> Result<JobResponse, ClientError> {
        if options.stream
            && let Some(job) = self.follow_stream(id, &mut on_event).await
        {
            return Ok(job);
        }
        let mut failing_since: Option<Instant> = None;
        loop {
            match self.get(id).await {
                Ok(job) => {
                    failing_since = None;
                    on_event(WaitEvent::Job(&job));
                    if job.status.is_finished() {
                        return Ok(job);
                    }
                    tokio::time::sleep(options.poll_interval).await;
                }
                Err(error) if error.is_transient() => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= options.transient_budget {
                        return Err(error);
                    }
                    let retry_in = error
                        .retry_after()
                        .unwrap_or(options.poll_interval * 4)
                        .clamp(options.poll_interval, Duration::from_secs(5).max(options.poll_interval));
                    on_event(WaitEvent::Retrying { error: &error, retry_in });
                    tokio::time::sleep(retry_in).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

impl Client {
    /// Follows the job's event stream, reporting snapshots; the final job, or `None` when the
    /// stream failed or was cut before the job finished.
    async fn follow_stream(&self, id: &str, on_event: &mut impl FnMut(WaitEvent<'_>)) -> Option<JobResponse> {
        let mut events = self.events(id, None).await.ok()??;
        let mut job: Option<JobResponse> = None;
        loop {
            let queued = job.as_ref().is_some_and(|j| j.status == JobStatusWire::Queued);
            let event = if queued {
                // Reading the next event is cancel-safe: a timeout loses nothing.
                match tokio::time::timeout(WAITING_RECHECK, events.next()).await {
                    Ok(event) => event,
                    Err(_) => {
                        // Only the reason is taken: the stream carries the status changes.
                        if let Ok(now) = self.get(id).await
                            && now.status == JobStatusWire::Queued
                            && let Some(job) = job.as_mut().filter(|j| j.waiting_reason != now.waiting_reason)
                        {
                            job.waiting_reason = now.waiting_reason;
                            on_event(WaitEvent::Job(job));
                        }
                        continue;
                    }
                }
            } else {
                events.next().await
            };
            match event? {
                JobEvent::Status(status) => {
                    on_event(WaitEvent::Job(&status));
                    if status.status.is_finished() {
                        return Some(*status);
                    }
                    job = Some(*status);
                }
                JobEvent::Progress(progress) => {
                    if let Some(job) = job.as_mut() {
                        job.progress = Some(progress.progress);
                        on_event(WaitEvent::Job(job));
                    }
                }
            }
        }
    }
}

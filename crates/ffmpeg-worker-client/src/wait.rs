//! Waiting for a job to finish: [`Client::wait`] polls `GET /jobs/{id}` (the server has no
//! streaming endpoint yet) and rides out a server restart.

use std::time::{Duration, Instant};

use ffmpeg_worker_api::JobResponse;

use crate::{Client, ClientError};

/// How [`Client::wait_with`] polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    /// Time between two polls.
    pub poll_interval: Duration,
    /// How long an unreachable or overloaded server (transient errors, see
    /// [`ClientError::is_transient`]) is retried before waiting fails, counted from the first
    /// failure since the last good answer.
    pub transient_budget: Duration,
}

impl Default for WaitOptions {
    /// Polls every 250 ms; tolerates 30 s of transient errors (a server restart).
    fn default() -> Self {
        WaitOptions { poll_interval: Duration::from_millis(250), transient_budget: Duration::from_secs(30) }
    }
}

/// What [`Client::wait_with`] reports while it waits.
#[derive(Debug)]
#[non_exhaustive]
pub enum WaitEvent<'a> {
    /// A snapshot of the job (the first one, and one per poll).
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
    /// Waits until the job is finished (completed, failed or cancelled) and returns it, polling
    /// with the default [`WaitOptions`]. A job that fails is not an error: look at its `status`
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

    /// [`Client::wait`] with your own polling settings, calling `on_event` with every snapshot
    /// of the job (to show progress) and every transient failure.
    ///
    /// # Errors
    /// As [`Client::wait`].
    pub async fn wait_with(
        &self,
        id: &str,
        options: &WaitOptions,
        mut on_event: impl FnMut(WaitEvent<'_>),
    ) -> Result<JobResponse, ClientError> {
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

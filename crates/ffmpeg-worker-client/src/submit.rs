//! Submitting safely again: [`Client::submit_with_key`] sends an `Idempotency-Key` with the
//! submission, and [`Client::submit_retrying`] sends it again with the same key when no
//! answer came (the connection failed or broke, the request timed out) or the server failed
//! (5xx, 429), so a job is neither lost nor queued twice: the server answers a repeat with the
//! job the first submission created (200, `Idempotent-Replayed: true`; see docs/api.md).

use std::time::Duration;

use ffmpeg_worker_api::{CreateJobRequest, JobResponse};
use reqwest::Method;

use crate::client::decode;
use crate::{Client, ClientError};

/// The request header carrying the key.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// The response header of a repeat.
const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// A fresh idempotency key: 32 lowercase hex digits (128 bits from the operating system's
/// random source, as a random UUID has 122), so two submissions never share one by chance.
pub fn new_idempotency_key() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source at all (no OS would run this without one): the clock and the
        // process id still make a key no other submission of this machine has.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        bytes = (nanos ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a submission with an idempotency key answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// The new job, or (a repeat) the job an earlier submission with the key created, as it is
    /// now.
    pub job: JobResponse,
    /// `true` when the server answered with an earlier submission's job (the key was known).
    pub replayed: bool,
}

/// How [`Client::submit_retrying`] tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitRetry {
    /// How many times a submission is sent again after the first (0: never).
    pub retries: u32,
    /// The wait before the first retry; each further wait doubles, up to `max_delay`, and
    /// each is drawn between 75 % and 100 % of that (jitter, so that clients that failed
    /// together do not retry together). A server's longer `Retry-After` (429, 503) is waited
    /// instead, up to `max_delay`.
    pub first_delay: Duration,
    /// The longest wait between two tries.
    pub max_delay: Duration,
}

impl Default for SubmitRetry {
    /// 4 retries, after about 0.5 s, 1 s, 2 s and 4 s (at most 10 s each).
    fn default() -> Self {
        SubmitRetry { retries: 4, first_delay: Duration::from_millis(500), max_delay: Duration::from_secs(10) }
    }
}

impl SubmitRetry {
    /// The wait before retry `n` (1-based) after `error`.
    fn delay(&self, n: u32, error: &ClientError) -> Duration {
        let doubled = self.first_delay.saturating_mul(1 << (n - 1).min(16)).min(self.max_delay);
        let mut byte = [0u8; 1];
        let jitter = if getrandom::fill(&mut byte).is_ok() { f64::from(byte[0]) / 255.0 } else { 0.5 };
        let drawn = doubled.mul_f64(0.75 + 0.25 * jitter);
        error.retry_after().map_or(drawn, |asked| asked.min(self.max_delay).max(drawn))
    }
}

/// Whether a submission that failed with `error` may have another try: no answer came (the
/// server may or may not have stored the job), or the server failed or was busy.
fn worth_retrying(error: &ClientError) -> bool {
    match error {
        ClientError::Unreachable { .. } => true,
        ClientError::Problem { problem, .. } => problem.status >= 500 || problem.status == 429,
        _ => false,
    }
}

impl Client {
    /// Submits a job (`POST /jobs`) with idempotency key `key` (1 to 255 visible ASCII
    /// characters; [`new_idempotency_key`] makes one): sending the same request with the same
    /// key again gives the job the first one created ([`Submission::replayed`]) instead of a
    /// second job.
    ///
    /// # Errors
    /// As [`Client::submit`]; also [`ClientError::Problem`] with status 422 and type
    /// `/problems/idempotency-key-reused` when `key` was used for a different request (its
    /// `job_id` names that job), or `invalid-request` when `key` is not a key.
    pub async fn submit_with_key(&self, request: &CreateJobRequest, key: &str) -> Result<Submission, ClientError> {
        let url = self.endpoint(&["jobs"]);
        let builder = self
            .request(Method::POST, &url)
            .header(reqwest::header::ACCEPT, "application/json, application/problem+json;q=0.9")
            .header(IDEMPOTENCY_KEY, key)
            .json(request);
        let response = self.execute(&url, builder).await?;
        let replayed = response.headers().get(IDEMPOTENT_REPLAYED).is_some_and(|v| v.as_bytes() == b"true");
        let job = decode(url, response).await?;
        Ok(Submission { job, replayed })
    }

    /// [`Client::submit_with_key`], sent again with the same key when no answer came (the
    /// connection was refused, broke or timed out: [`ClientError::Unreachable`]) or the
    /// server failed (5xx) or was busy (429), up to `retry.retries` times, waiting as `retry`
    /// says; `on_retry(error, wait)` is told before each wait. A submission that reached the
    /// server before its answer was lost is answered by the retry with that same job.
    ///
    /// # Errors
    /// The last try's error, or at once an error no retry can mend (a refused command, a bad
    /// token, `idempotency-key-reused`).
    pub async fn submit_retrying(
        &self,
        request: &CreateJobRequest,
        key: &str,
        retry: &SubmitRetry,
        mut on_retry: impl FnMut(&ClientError, Duration),
    ) -> Result<Submission, ClientError> {
        let mut tried = 0;
        loop {
            match self.submit_with_key(request, key).await {
                Err(error) if tried < retry.retries && worth_retrying(&error) => {
                    tried += 1;
                    let wait = retry.delay(tried, &error);
                    on_retry(&error, wait);
                    tokio::time::sleep(wait).await;
                }
                answer => return answer,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_keys_are_32_hex_digits_and_differ() {
        let a = new_idempotency_key();
        let b = new_idempotency_key();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{a}");
        assert_ne!(a, b);
    }

    fn problem(status: u16, retry_after: Option<Duration>) -> ClientError {
        let problem = ffmpeg_worker_api::Problem {
            type_: "about:blank".to_owned(),
            title: "x".to_owned(),
            status,
            detail: "x".to_owned(),
            argument_position: None,
            argument: None,
            rule: None,
            job_id: None,
        };
        ClientError::Problem { problem: Box::new(problem), retry_after }
    }

    #[test]
    fn server_failures_are_retried_refusals_are_not() {
        for status in [500, 502, 503, 504, 429] {
            assert!(worth_retrying(&problem(status, None)), "{status}");
        }
        for status in [400, 401, 404, 409, 413, 422] {
            assert!(!worth_retrying(&problem(status, None)), "{status}");
        }
    }

    #[test]
    fn waits_double_with_jitter_up_to_the_cap_and_honour_retry_after() {
        let retry =
            SubmitRetry { retries: 9, first_delay: Duration::from_millis(400), max_delay: Duration::from_secs(2) };
        let error = problem(500, None);
        for (n, full) in [(1, 400), (2, 800), (3, 1600), (4, 2000), (9, 2000)] {
            let wait = retry.delay(n, &error);
            let full = Duration::from_millis(full);
            assert!(wait <= full && wait >= full.mul_f64(0.75), "retry {n}: {wait:?} for {full:?}");
        }
        // A longer Retry-After is waited, up to the cap; a shorter one does not shorten the wait.
        assert_eq!(retry.delay(1, &problem(503, Some(Duration::from_secs(1)))), Duration::from_secs(1));
        assert_eq!(retry.delay(1, &problem(503, Some(Duration::from_secs(60)))), Duration::from_secs(2));
        assert!(retry.delay(3, &problem(503, Some(Duration::from_millis(1)))) >= Duration::from_millis(1200));
    }
}

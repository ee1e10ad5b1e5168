//! [`Due`]: when the soonest queued job that waits for its `retry_at` may start, as this
//! process's claims saw it, so that idle workers look at the queue again then
//! ([`JobStore::wait_for_work`](super::JobStore::wait_for_work)) rather than at their next
//! poll.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The soonest end of a wait a claim saw (a queued job held back by its
/// [`Job::retry_at`](crate::Job::retry_at)). A hint, never state: a wake-up it causes only
/// makes a worker claim again, which checks the store; a job that stopped waiting meanwhile
/// (cancelled, claimed elsewhere) costs one needless look.
#[derive(Debug, Default)]
pub(crate) struct Due(Mutex<Option<Instant>>);

impl Due {
    /// A claim saw a job that may start in `wait` (from now): keeps the sooner of it and the
    /// end already noted (an end that passed is replaced).
    pub(crate) fn note(&self, wait: Duration) {
        let now = Instant::now();
        let at = now + wait;
        let mut due = self.lock();
        if due.is_none_or(|noted| noted <= now || at < noted) {
            *due = Some(at);
        }
    }

    /// `timeout`, shortened to end when the noted wait does (an end that passed is
    /// forgotten: the claim that followed it saw what waits now).
    pub(crate) fn cap(&self, timeout: Duration) -> Duration {
        let now = Instant::now();
        let mut due = self.lock();
        match *due {
            Some(at) if at > now => timeout.min(at - now),
            Some(_) => {
                *due = None;
                timeout
            }
            None => timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_at_the_soonest_noted_end_and_a_passed_one_is_forgotten() {
        let due = Due::default();
        let long = Duration::from_secs(60);
        assert_eq!(due.cap(long), long, "nothing noted");
        due.note(Duration::from_secs(5));
        due.note(Duration::from_secs(9));
        assert_eq!(due.cap(long), Duration::from_secs(5), "the sooner end is kept");
        assert_eq!(due.cap(Duration::from_secs(2)), Duration::from_secs(2), "a shorter timeout stays");
        due.note(Duration::from_secs(3));
        assert_eq!(due.cap(long), Duration::from_secs(3));
        tokio::time::advance(Duration::from_secs(4)).await;
        // It passed: a later end replaces it, and without one the timeout is whole.
        assert_eq!(due.cap(long), long);
        due.note(Duration::from_secs(7));
        assert_eq!(due.cap(long), Duration::from_secs(7));
    }
}

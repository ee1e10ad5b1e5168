//! Whether the storage answers ([`Availability`]), one state shared by `GET /ready` and every
//! files API call ([`Guarded`](super::Guarded)):
//!
//! - a check is one cheap request ([`Storage::ping`]) bounded by [`READY_TIMEOUT`];
//! - `/ready` checks at most every [`READY_CACHE`] while the storage answers;
//! - a call that fails as if the storage were unreachable ([`StorageError::is_transient`])
//!   starts a check in the background: one failure of a live bucket (a 500 answer) changes
//!   nothing, a dead bucket is known unreachable once the check fails too;
//! - a bucket that answers that it does not exist ([`StorageError::NoBucket`], deleted while
//!   the server runs) counts as down too, and is named as such: calls fail at once with
//!   [`StorageError::NoBucket`], not as a silent storage;
//! - while the storage is known unreachable, files calls fail at once
//!   ([`StorageError::Unreachable`], naming the storage and since when) instead of each waiting
//!   the request timeout, and a check runs in the background at most every
//!   [`PROBE_INTERVAL`]; the first one that gets an answer (or any call that does) ends that;
//! - a worker's staging reports its own failures ([`Availability::confirm`]: a fresh check
//!   after a failure that may pass), so a bucket that stops answering while only workers use it
//!   is known down to `/ready` and the files API too; and while it is known down, workers claim
//!   no job and wait for it to answer again ([`Availability::answers_again`]), their jobs not
//!   charged an attempt (tester finding K11).

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use super::{Outage, Storage, StorageError};

/// How long a check's result that the storage answers stands before `/ready` checks again.
pub const READY_CACHE: Duration = Duration::from_secs(5);
/// Longest a check waits for the storage's answer; no answer by then counts as unavailable.
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);
/// While the storage is known unreachable, the shortest time between two checks (in the
/// background, started by the calls refused meanwhile).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The storage did not answer its last check.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the file storage is unavailable: {0}")]
pub struct StorageUnavailable(#[source] pub Arc<StorageError>);

/// An outage as the checks saw it.
#[derive(Debug, Clone)]
struct Down {
    /// When, as calls refused meanwhile say it.
    outage: Arc<Outage>,
    /// What the latest check found.
    error: Arc<StorageError>,
}

#[derive(Debug, Default)]
struct State {
    /// Set while the storage is known unreachable.
    down: Option<Down>,
    /// A check is under way.
    probing: bool,
    /// When the last check ended.
    last_check: Option<Instant>,
    /// When a check or a call last found the storage answering.
    last_answer: Option<Instant>,
}

/// The storage's availability (see the [module docs](self)). Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Availability {
    storage: Arc<dyn Storage>,
    /// How messages name the storage (`s3://bucket/prefix`).
    name: String,
    state: Mutex<State>,
    /// Notified when a known outage ends.
    answers: Notify,
}

impl Availability {
    /// Availability of `storage` (named `name` in messages), not checked yet.
    pub fn new(storage: Arc<dyn Storage>, name: impl Into<String>) -> Arc<Availability> {
        Arc::new(Availability {
            storage,
            name: name.into(),
            state: Mutex::new(State::default()),
            answers: Notify::new(),
        })
    }

    /// How messages name the storage.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// For `GET /ready`: `Ok` when a check found the storage answering within the last
    /// [`READY_CACHE`]; the outage at once while one is known and was checked within the last
    /// [`PROBE_INTERVAL`]; else the result of a new check.
    ///
    /// # Errors
    /// [`StorageUnavailable`] with what the storage said, or that it did not answer within
    /// [`READY_TIMEOUT`].
    pub async fn check(&self) -> Result<(), StorageUnavailable> {
        {
            let state = self.state();
            let recent = |at: Option<Instant>, within: Duration| at.is_some_and(|at| at.elapsed() < within);
            match &state.down {
                Some(down) if recent(state.last_check, PROBE_INTERVAL) => {
                    return Err(StorageUnavailable(Arc::clone(&down.error)));
                }
                None if recent(state.last_answer, READY_CACHE) => return Ok(()),
                _ => {}
            }
        }
        self.probe().await.map_err(StorageUnavailable)
    }

    /// One check, its result recorded.
    async fn probe(&self) -> Result<(), Arc<StorageError>> {
        let result = match tokio::time::timeout(READY_TIMEOUT, self.storage.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Arc::new(e)),
            // Named by the storage's name: the check is of the whole storage (an empty path read
            // "unavailable for ``" in the warning below, tester).
            Err(_) => Err(Arc::new(StorageError::Unavailable {
                path: self.name.clone(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {} s", READY_TIMEOUT.as_secs()),
                ),
            })),
        };
        let mut state = self.state();
        state.probing = false;
        state.last_check = Some(Instant::now());
        match &result {
            Ok(()) => self.mark_answering(&mut state),
            Err(error) => self.mark_down(&mut state, Arc::clone(error)),
        }
        result
    }

    /// Records that a check or a call found the storage answering; the end of a known outage
    /// wakes [`Availability::answers_again`]'s waiters.
    fn mark_answering(&self, state: &mut State) {
        if state.down.take().is_some() {
            tracing::info!(storage = %self.name, "the file storage answers again");
            self.answers.notify_waiters();
        }
        state.last_answer = Some(Instant::now());
    }

    /// Records a check that found the storage not answering (`error`).
    fn mark_down(&self, state: &mut State, error: Arc<StorageError>) {
        let now = SystemTime::now();
        let since = state.down.as_ref().map_or(now, |down| down.outage.since);
        if state.down.is_none() {
            tracing::warn!(storage = %self.name, error = %error,
                           "the file storage does not answer; files calls fail at once until it does");
        }
        let outage =
            Outage { storage: self.name.clone(), since, checked: now, retry_after: PROBE_INTERVAL + READY_TIMEOUT };
        state.down = Some(Down { outage: Arc::new(outage), error });
    }

    /// Records that a check made elsewhere (the server's start) found the storage not
    /// answering (`error`): until a check finds it answering, files calls fail at once and
    /// `/ready` says so, as after a failed check of its own.
    pub fn record_down(&self, error: StorageError) {
        let mut state = self.state();
        state.last_check = Some(Instant::now());
        self.mark_down(&mut state, Arc::new(error));
    }

    /// Whether the storage is known not to answer now (its latest check failed).
    pub fn is_down(&self) -> bool {
        self.state().down.is_some()
    }

    /// The outage known now that waiting may end (the latest check failed with no answer or
    /// a 5xx, [`StorageError::is_transient`]), if any; not a bucket that answered that it does
    /// not exist ([`StorageError::NoBucket`]: jobs fail at once naming it, they do not wait).
    pub fn outage(&self) -> Option<Arc<Outage>> {
        let state = self.state();
        let down = state.down.as_ref().filter(|down| down.error.is_transient())?;
        Some(Arc::clone(&down.outage))
    }

    /// Starts a check in the background unless one is under way (or, with `spaced`, one ended
    /// within the last [`PROBE_INTERVAL`]).
    fn probe_later(self: &Arc<Self>, spaced: bool) {
        {
            let mut state = self.state();
            let too_soon = spaced && state.last_check.is_some_and(|at| at.elapsed() < PROBE_INTERVAL);
            if state.probing || too_soon {
                return;
            }
            let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
            state.probing = true;
            let this = Arc::clone(self);
            runtime.spawn(async move {
                // Recorded by `probe`, whichever way it ends.
                let _ = this.probe().await;
            });
        }
    }

    /// Before a call that would send `path`'s request: [`StorageError::Unreachable`] at once
    /// while the storage is known unreachable (and a new check in the background if the last
    /// one is at least [`PROBE_INTERVAL`] old). An empty `path` (the root) is named by the
    /// storage's name ([`Availability::name`]).
    ///
    /// # Errors
    /// [`StorageError::Unreachable`].
    pub fn gate(self: &Arc<Self>, path: &str) -> Result<(), StorageError> {
        let down = self.state().down.clone();
        let Some(down) = down else { return Ok(()) };
        self.probe_later(true);
        // The root (a listing of every file, `GET /files`) is named by the storage's name, as
        // the bucket's own errors name it: never an empty name (tester finding L9: "asked
        // about ``").
        let path = if path.is_empty() { self.name.as_str() } else { path };
        // A bucket that answered it does not exist is named as such, not as silent.
        if let StorageError::NoBucket { bucket, source, .. } = down.error.as_ref() {
            let source =
                io::Error::other(format!("{source} (last checked {})", super::utc_seconds(&down.outage.checked)));
            return Err(StorageError::NoBucket { path: path.to_owned(), bucket: bucket.clone(), source });
        }
        Err(StorageError::Unreachable { path: path.to_owned(), outage: down.outage })
    }

    /// After a call: an answer (success, or a refusal the storage made) ends a known outage; a
    /// failure that looks like no answer starts a check in the background.
    pub fn observe<T>(self: &Arc<Self>, result: &Result<T, StorageError>) {
        match result {
            Err(StorageError::Unreachable { .. }) => {}
            // No answer, or no bucket: a check confirms it (a bucket deleted is then known down,
            // and `/ready` and every call say so).
            Err(e) if e.is_no_answer() => self.probe_later(false),
            _ => self.mark_answering(&mut self.state()),
        }
    }

    /// After a failure that may pass of a call made outside the files API (a worker's staging,
    /// which does not go through [`Guarded`](super::Guarded)): whether the storage is down,
    /// as a check finds it now (one [`Storage::ping`], at most [`READY_TIMEOUT`]; a known
    /// outage checked within the last [`PROBE_INTERVAL`] stands, but not an answer then, which
    /// may be older than the failure). Recorded as any check: a
    /// bucket that stops answering while only workers use it is known down to `/ready` and
    /// the files API too. `false`: it answers (the failure was the call's own), or it answered
    /// that the bucket does not exist.
    pub async fn confirm(&self) -> bool {
        {
            let state = self.state();
            if let Some(down) = &state.down
                && state.last_check.is_some_and(|at| at.elapsed() < PROBE_INTERVAL)
            {
                return down.error.is_transient();
            }
        }
        self.probe().await.is_err_and(|e| e.is_transient())
    }

    /// Returns once the storage is not known down ([`Availability::outage`]: a bucket that does
    /// not exist is not waited for) (at once when it is not), or when `stop`
    /// fires. Meanwhile a check runs at most every [`PROBE_INTERVAL`] (one for all waiters).
    /// Workers call it before each claim: while the storage is known down, no job is taken
    /// that would only wait on it.
    pub async fn answers_again(self: &Arc<Self>, stop: &tokio_util::sync::CancellationToken) {
        loop {
            let answered = self.answers.notified();
            tokio::pin!(answered);
            // Registered before the state is read: an end of the outage in between is seen.
            answered.as_mut().enable();
            if self.outage().is_none() || stop.is_cancelled() {
                return;
            }
            self.probe_later(true);
            tokio::select! {
                () = answered => {}
                () = tokio::time::sleep(PROBE_INTERVAL) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

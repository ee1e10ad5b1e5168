//! [`PgStore`]: the [`JobStore`](crate::JobStore) on PostgreSQL, for many nodes sharing one
//! database (cluster mode). `DATABASE_URL=postgres://...` selects it
//! ([`StoreLocation`](crate::location::StoreLocation)).
//!
//! Schema (`crates/jobs/migrations-postgres/`, mirroring the SQLite migrations number for
//! number): the same `jobs`, `job_logs`, `job_runs` tables; see `0001_create_jobs.sql` for the
//! column types. Migrations run at open under sqlx's PostgreSQL advisory lock, so nodes starting
//! together migrate once and wait for each other.
//!
//! Every transition is one conditional statement, or one transaction; a statement that returns
//! `Ok` has committed (PostgreSQL reports the commit of an autocommit statement with its result).
//! When a transaction's `COMMIT` is lost with the connection, its outcome is unknown to the
//! caller, as with any client/server database: the store reports an error, and the
//! transitions being conditional, a retry is refused or finds the change made.
//!
//! **Claims.** Claims run side by side, in two steps on one connection. First one round trip
//! reads the running jobs and the first queued jobs in claim order (priority, then submission)
//! in one snapshot (`sql::CLAIM_VIEW`, a function of migration 0010: one prepared statement);
//! the shared [transition plan](crate::store::plan) picks the jobs that may start (labels, and
//! footprints: no conflict with a running job or an earlier-submitted queued one). Then one
//! statement claims the first of them that no other transaction holds (another claim, a
//! cancel in progress): `SELECT ... FOR UPDATE SKIP LOCKED LIMIT n`, then `UPDATE`; in one
//! transaction with its `job.started` deliveries when one of them has webhook subscriptions.
//! A node's workers claim in rounds, one round at a time: the worker that finds none under way
//! leads one for itself and every worker that asked meanwhile (up to 16), one read and one
//! claim statement for all of them (`transitions.rs`, `claim_next`). The rule needs new jobs to become
//! visible in submission order: an insert holds a stripe of the queue's advisory lock
//! exclusively from before it takes its `seq` until it commits, and the read holds every stripe
//! shared while the server runs it (`sql.rs`, `INSERT` and `CLAIM_VIEW`): claims never wait for
//! each other, and an insert waits at most for a read in progress on the server. The claim
//! stamps the node id (`worker_id`) and a lease (`lease_expires_at`, by the database's clock).
//!
//! **Rounds.** The ends of a node's runs are sent in rounds ([`rounds`]): those that come while
//! one round's commit waits for the disk go out together in the next, one statement (one
//! commit) for all of them, each fenced as below. Ends that come while one of the node's claim
//! rounds reads the queue ride with that claim instead: its claim statement ends them too
//! (`sql::CLAIM_CARRYING_ENDS`), one commit for the outcomes and the next jobs. The claim was
//! chosen from a view in which those jobs still run, so a job they held back waits for the
//! next claim, as it would have.
//! A commit that notifies holds PostgreSQL's notification lock until it is on disk, so with
//! durable commits the whole cluster's ends would be written one `fsync` at a time: their
//! statements write their announcements to an outbox instead, sent by the node right after the
//! commit, or by any node's reaper round when it did not ([`announce`], migration 0015).
//!
//! **Leases and fencing.** A progress write renews its job's lease in the same statement; a
//! background task renews, in one statement per node, the leases of the other jobs this store
//! claimed and still runs, those no write renewed for a third of the lease (so a job that
//! reports progress costs one write per progress save, and no more). A write about a running
//! job (`record_run`, `update_progress`, `finish`, `requeue`) succeeds only while this node holds
//! it: same node id, same attempt, lease not expired; otherwise it is refused
//! ([`StoreError::Conflict`]) and changes nothing. [`JobStore::recover`](crate::JobStore::recover)
//! and [`JobStore::interrupted_runs`](crate::JobStore::interrupted_runs) touch only this node's
//! own leftovers (matched by node id).

mod announce;
mod conn;
pub mod notify;
mod rounds;
mod sql;
mod transitions;

pub use announce::SWEEP_AGE;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::model::{JobId, JobStatus};
use crate::sqlite::OpenError;
use crate::sqlite::rows::JobRow;
use crate::sqlite::write::WriteHealth;
use crate::store::StoreError;

/// The migrations in `crates/jobs/migrations-postgres/`, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");

/// Default lease: how long a claim holds without renewal.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default size of the connection pool of one store.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;
/// A pooled connection idle for this long is checked (pinged) before it is used again; a
/// broken one is replaced (e.g. after the database restarted).
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);
/// A store call (taking its connection included) ends within this many times
/// [`PgSettings::acquire_timeout`]: the connection within the timeout itself, the statements
/// with room for a loaded machine ([`conn`]).
const CALL_DEADLINE_FACTOR: u32 = 3;
/// Default of [`PgSettings::acquire_timeout`].
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`PgStore::open`] waits for the database to accept a first connection (it may
/// still be starting beside this node), at least [`PgSettings::acquire_timeout`].
const OPEN_PATIENCE: Duration = Duration::from_secs(10);

/// Settings of a [`PgStore`]: who this node is, and its leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// This node's id, stamped on every job it claims (`NODE_ID`). Unique in the cluster.
    pub node_id: String,
    /// How long a claim holds unless renewed (`LEASE_SECONDS`); renewed every third of it.
    pub lease: Duration,
    /// Connections of the store's pool (at least 2), besides the one that listens for the
    /// other nodes. The store's calls hold all but one of them at most, taking turns first
    /// come first served; the last one stays for its background tasks (lease renewals).
    pub max_connections: u32,
    /// Starts a job may have (`MAX_ATTEMPTS`): the reaper fails a job whose node was lost
    /// with error "worker lost" once it has been started this many times.
    pub max_attempts: u32,
    /// How long a call waits for a connection of the pool, connecting included
    /// (`DATABASE_TIMEOUT`): with the database down or unreachable, a call fails
    /// [`StoreError::Unavailable`] (an API call: 503 `store-unavailable`) after this long. A
    /// call ends within three times this in all, its statements included: with the database
    /// cut off by a network partition (connections open, nothing passing) it fails the same
    /// way after that long.
    pub acquire_timeout: Duration,
}

impl Default for PgSettings {
    /// A fresh node id ([`default_node_id`]), [`DEFAULT_LEASE`], [`DEFAULT_MAX_CONNECTIONS`],
    /// two attempts, [`DEFAULT_ACQUIRE_TIMEOUT`].
    fn default() -> Self {
        PgSettings {
            node_id: default_node_id(),
            lease: DEFAULT_LEASE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_attempts: 2,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        }
    }
}

/// The host name and a random suffix, e.g. `encoder-3-5f2a9c`: unique per process start, so
/// that a restarted node never takes its previous run's claims for its own unless given the
/// same `NODE_ID`.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    let mut bytes = [0u8; 3];
    let _ = getrandom::fill(&mut bytes);
    format!("{host}-{:02x}{:02x}{:02x}", bytes[0], bytes[1], bytes[2])
}

/// A [`JobStore`](crate::JobStore) in a PostgreSQL database, shared by the nodes of a cluster
/// (see the [module docs](self)).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use jobs::postgres::{PgSettings, PgStore};
/// use jobs::{JobStore, SubmitOptions};
///
/// let store = PgStore::open("postgres://ffmpeg@db/ffmpeg_worker", PgSettings::default()).await?;
/// let job = store.insert("-i in.mp4 out.webm".to_owned(), SubmitOptions::default()).await?;
/// assert_eq!(store.get(&job.id).await?, Some(job));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PgStore {
    pool: PgPool,
    /// The connections of the store's calls, each call within `DATABASE_TIMEOUT` ([`conn`]).
    db: conn::Connections,
    settings: PgSettings,
    /// Jobs this store claimed and still runs, with the attempt: the fencing token of every
    /// write about them, and the leases the renewal task renews.
    held: Arc<Mutex<HashMap<JobId, Held>>>,
    notify: Arc<Notify>,
    /// When the soonest job a claim passed over for its `retry_at` may start (a retry on
    /// another node wakes this one's workers through [`notify`]; their claim reads the wait).
    due: crate::store::Due,
    /// What this store's claims remember of the jobs they read (`store/memo.rs`).
    memo: crate::store::ClaimMemo,
    /// `LISTEN/NOTIFY` with the other nodes ([`notify`]).
    cluster: Arc<notify::Cluster>,
    health: WriteHealth,
    /// The claim rounds of this node's workers ([`JobStore::claim_next`](crate::JobStore::claim_next)).
    claims: Mutex<Claims>,
    /// The rounds that save the ends of this node's runs ([`rounds`]).
    endings: rounds::Rounds<rounds::Ending>,
    /// Stops the background tasks when the store is dropped.
    stop: CancellationToken,
    /// Test-only faults (feature `fault-points`).
    #[cfg(feature = "fault-points")]
    faults: announce::Faults,
}

/// The claims of this node's workers: whether a round is under way, and the workers waiting for
/// the next one (their labels, and where their turn goes).
#[derive(Debug, Default)]
struct Claims {
    serving: bool,
    waiting: std::collections::VecDeque<(Vec<String>, tokio::sync::oneshot::Sender<transitions::Turn>)>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://` or `postgresql://`, with libpq's parameters, e.g.
    /// `?sslmode=disable` or `?host=/run/postgresql`), waiting up to 10 s (at least
    /// [`PgSettings::acquire_timeout`]) for a database that refuses connections or is still
    /// starting, applies the migrations this build has (under an advisory lock), and starts
    /// renewing this node's leases.
    ///
    /// # Errors
    /// [`OpenError::Postgres`]: the URL does not parse or the database cannot be reached;
    /// [`OpenError::PostgresMigrate`]: migrating failed, or the database has a migration
    /// unknown to this build (written by a newer ffmpeg-worker).
    pub async fn open(url: &str, settings: PgSettings) -> Result<PgStore, OpenError> {
        let target = redact(url);
        let err = |source| OpenError::Postgres { target: target.clone(), source };
        let options: PgConnectOptions = url.parse().map_err(err)?;
        // `pg_stat_activity` shows which node a connection serves.
        let application = format!("ffmpeg-worker {}", settings.node_id);
        let options = options.disable_statement_logging().application_name(&application);
        let node = settings.node_id.clone();
        let pool = PgPoolOptions::new()
            // One more for the connection that listens for the other nodes' notifications.
            .max_connections(settings.max_connections.max(2) + 1)
            .acquire_timeout(settings.acquire_timeout)
            // A connection is checked (one round trip) before use only when it sat idle: one
            // used a moment ago is alive, and a check per use would be a third of a job's round
            // trips under load (claim, run record, outcome).
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= CHECK_IDLE_AFTER {
                        sqlx::Connection::ping(connection).await?;
                    }
                    Ok(true)
                })
            })
            // The trigger of migration 0008 names the node that made a change from this.
            .after_connect(move |connection, _| {
                let node = node.clone();
                Box::pin(async move {
                    sqlx::query("SELECT set_config($1, $2, false)")
                        .bind(notify::NODE_SETTING)
                        .bind(node)
                        .execute(connection)
                        .await
                        .map(drop)
                })
            })
            .connect_lazy_with(options);
        first_connection(&pool, settings.acquire_timeout.max(OPEN_PATIENCE)).await.map_err(err)?;
        MIGRATOR.run(&pool).await.map_err(|source| OpenError::PostgresMigrate { target: target.clone(), source })?;
        let held: Arc<Mutex<HashMap<JobId, Held>>> = Arc::default();
        let notify = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let cluster = notify::start(&pool, &settings.node_id, Arc::clone(&notify), Arc::clone(&held), stop.clone())
            .await
            .map_err(err)?;
        let health = WriteHealth::default();
        // Besides the listener's: the calls hold all the pool's connections but one at most,
        // so the background tasks (renewals and the reaper, notifications) always find one;
        // half of them may wait as spares between calls.
        let connections = usize::try_from(settings.max_connections.max(2)).unwrap_or(2);
        let limits = conn::Limits {
            calls: connections - 1,
            keep: connections / 2,
            wait: settings.acquire_timeout,
            deadline: settings.acquire_timeout * CALL_DEADLINE_FACTOR,
        };
        let db = conn::Connections::new(pool.clone(), limits);
        let store = PgStore {
            pool,
            db,
            settings,
            held,
            notify,
            due: Default::default(),
            memo: Default::default(),
            cluster,
            health,
            claims: Mutex::default(),
            endings: rounds::Rounds::default(),
            stop,
            #[cfg(feature = "fault-points")]
            faults: announce::Faults::default(),
        };
        let round = (store.settings.lease / 3).min(REAP_INTERVAL);
        tokio::spawn(watch_own_clock(store.settings.lease, round, Arc::clone(&store.held), store.stop.clone()));
        tokio::spawn(maintain(
            store.pool.clone(),
            store.settings.clone(),
            Arc::clone(&store.held),
            Arc::clone(&store.notify),
            Arc::clone(&store.cluster),
            store.stop.clone(),
        ));
        Ok(store)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    /// Closes the pool and stops the background tasks. Later calls fail.
    pub async fn close(&self) {
        self.stop.cancel();
        self.db.close();
        self.pool.close().await;
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Held>> {
        lock(&self.held)
    }

    fn lock_claims(&self) -> std::sync::MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The attempt this store claimed `id` for, and whether the job may have webhook
    /// subscriptions, if it holds it.
    fn claim_of(&self, id: &JobId) -> Option<(i64, bool)> {
        self.lock_held().get(id).map(|h| (i64::from(h.attempt), h.hooked))
    }

    /// Records a claim made by this store, whose statement was sent at `sent` (its lease runs
    /// from a later instant by the database's clock); `hooked`: the job may have webhook
    /// subscriptions (its `finish` then writes deliveries, in a transaction).
    fn hold(&self, id: &JobId, attempt: u32, hooked: bool, sent: Instant) {
        let held = Held { attempt, hooked, lost: CancellationToken::new(), renewed: sent };
        self.lock_held().insert(id.clone(), held);
    }

    /// Notes that a write sent at `sent` renewed the lease of held job `id` (a progress write).
    fn renewed(&self, id: &JobId, sent: Instant) {
        if let Some(held) = self.lock_held().get_mut(id) {
            held.renewed = held.renewed.max(sent);
        }
    }

    /// Forgets a claim this store gave up (finished, re-queued, recovered).
    fn release(&self, id: &JobId) {
        self.lock_held().remove(id);
    }

    /// [`JobStore::lease_lost`](crate::JobStore::lease_lost): the token of a claim held here.
    pub(super) fn lost_token(&self, id: &JobId) -> Option<CancellationToken> {
        self.lock_held().get(id).map(|h| h.lost.clone())
    }
}

/// Waits for `pool`'s first connection for at most `patience`: a database that refuses
/// connections or cannot be reached is tried again (each try bounded by the pool's acquire
/// timeout) until then; any other error (authentication, unknown database) is returned at once.
async fn first_connection(pool: &PgPool, patience: Duration) -> Result<(), sqlx::Error> {
    let deadline = Instant::now() + patience;
    loop {
        match pool.acquire().await {
            Ok(_) => return Ok(()),
            Err(e @ (sqlx::Error::PoolTimedOut | sqlx::Error::Io(_))) => {
                if Instant::now() >= deadline {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `url` without its password, for error messages and logs.
fn redact(url: &str) -> String {
    match url.parse::<PgConnectOptions>() {
        Ok(_) => match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &url[scheme + 3..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                    None => url.to_owned(),
                }
            }
            _ => url.to_owned(),
        },
        Err(_) => "(an invalid PostgreSQL URL)".to_owned(),
    }
}

/// SQLSTATE classes that mean "cannot write now, try later": 08 connection exception,
/// 53 insufficient resources (disk full, out of memory, too many connections), 57 operator
/// intervention (shutting down, cannot connect now), 40 transaction rollback (serialization
/// failure, deadlock), 25006 read-only transaction (a standby), 55P03 lock not available.
fn is_transient_state(code: &str) -> bool {
    ["08", "53", "57", "40"].iter().any(|class| code.starts_with(class)) || code == "25006" || code == "55P03"
}

/// Sorts an sqlx error: [`StoreError::DiskFull`] for SQLSTATE 53100 (`disk_full`: the
/// database server's disk), [`StoreError::Unavailable`] when the database cannot write now
/// otherwise (unreachable, shutting down, out of memory, read-only), otherwise
/// [`StoreError::Database`].
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    let code = match &e {
        sqlx::Error::Database(d) => d.code(),
        _ => None,
    };
    let transient = match &e {
        sqlx::Error::Database(_) => code.as_deref().is_some_and(is_transient_state),
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        _ => false,
    };
    if code.as_deref() == Some("53100") {
        StoreError::DiskFull(Box::new(e))
    } else if transient {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Database(Box::new(e))
    }
}

/// A claim this store holds: the attempt (the fencing token of every write about the job),
/// whether the job may have webhook subscriptions (a job's never change), the token cancelled
/// when the claim is lost, and when the latest write that renewed its lease (the claim, a
/// progress write, a renewal) was sent, by this node's clock.
#[derive(Debug)]
struct Held {
    attempt: u32,
    hooked: bool,
    lost: CancellationToken,
    renewed: Instant,
}

fn lock(held: &Mutex<HashMap<JobId, Held>>) -> std::sync::MutexGuard<'_, HashMap<JobId, Held>> {
    held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn wake(notify: &Notify) {
    notify.notify_waiters();
    notify.notify_one();
}

/// One reaper round, in one transaction: the jobs of expired leases, with the webhook
/// deliveries of those that failed or were cancelled.
async fn reap(pool: &PgPool, settings: &PgSettings) -> Result<Vec<crate::Job>, StoreError> {
    let (at, now) = crate::sqlite::rows::now();
    let mut tx = pool.begin().await.map_err(db)?;
    let rows: Vec<JobRow> = sqlx::query_as(sql::REAP)
        .bind(i64::from(settings.max_attempts))
        .bind(now)
        .bind(settings.lease.as_secs_f64())
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    let jobs = crate::sqlite::rows::jobs(rows)?;
    for job in jobs.iter().filter(|j| j.status.is_finished()) {
        let mut planned = transitions::PgTx::new(&mut tx, settings);
        crate::store::plan::write_status_outbox(&mut planned, job, job.completed_at.unwrap_or(at)).await?;
    }
    tx.commit().await.map_err(db)?;
    Ok(jobs)
}

/// Longest interval between two reaper rounds.
const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// The store's background task, until `stop`:
/// - every round, renews in one statement the leases of the jobs in `held` that no write will
///   have renewed for a third of the lease by the next round (a progress write renews its job's lease, so a job that
///   reports progress needs no renewal of its own); a job whose lease could not be renewed
///   (expired, taken back) is lost: its token is cancelled and it leaves `held`, so every later
///   write about it is refused;
/// - every second (at most a third of the lease), reaps the expired leases of any node
///   ([`sql::REAP`]), waking local workers when jobs went back to the queue, and signals each
///   reaped job's new status to this node's service (the other nodes hear of it by
///   notification), so that every status change reaches every node's streams;
/// - every round, announces the ends of runs whose node did not announce them after their
///   commit ([`announce::sweep`]: it died or lost its connection in between).
///
/// Each statement is bounded by the lease: a connection cut off without a reset (a network
/// partition) would otherwise hold the loop for as long as TCP retransmits. Jobs whose lease
/// no write renewed for a whole lease are stopped by [`watch_own_clock`], which needs no
/// database.
async fn maintain(
    pool: PgPool,
    settings: PgSettings,
    held: Arc<Mutex<HashMap<JobId, Held>>>,
    notify: Arc<Notify>,
    cluster: Arc<notify::Cluster>,
    stop: CancellationToken,
) {
    let renew_every = settings.lease / 3;
    let round = renew_every.min(REAP_INTERVAL);
    let mut tick = tokio::time::interval(round);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lose = |ids: &mut dyn Iterator<Item = JobId>, why: &str| {
        let mut held = lock(&held);
        for id in ids {
            if let Some(h) = held.remove(&id) {
                h.lost.cancel();
                tracing::warn!(job = %id, "{why}");
            }
        }
    };
    while stop.run_until_cancelled(tick.tick()).await.is_some() {
        let sent = Instant::now();
        // Due: a third of the lease old by the next round.
        let (ids, attempts): (Vec<String>, Vec<i64>) = lock(&held)
            .iter()
            .filter(|(_, h)| sent.saturating_duration_since(h.renewed) + round >= renew_every)
            .map(|(id, h)| (id.as_str().to_owned(), i64::from(h.attempt)))
            .unzip();
        if !ids.is_empty() {
            let renew = sqlx::query_scalar(sql::RENEW)
                .bind(&settings.node_id)
                .bind(settings.lease.as_secs_f64())
                .bind(&ids)
                .bind(&attempts)
                .fetch_all(&pool);
            let renewed: Result<Vec<String>, String> = match tokio::time::timeout(settings.lease, renew).await {
                Ok(renewed) => renewed.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within the lease ({:?})", settings.lease)),
            };
            match renewed {
                Ok(renewed) => {
                    // The database set the new expiry after `sent`: measured from `sent`, this
                    // node's idea of its lease never outlasts the database's.
                    let mut held_now = lock(&held);
                    for id in &renewed {
                        if let Some(h) = JobId::parse(id).ok().and_then(|id| held_now.get_mut(&id)) {
                            h.renewed = h.renewed.max(sent);
                        }
                    }
                    drop(held_now);
                    let mut gone = ids.iter().filter(|id| !renewed.contains(id)).filter_map(|id| JobId::parse(id).ok());
                    lose(&mut gone, "lost the lease of a running job (expired or taken back)");
                }
                Err(e) => tracing::warn!(error = %e, jobs = ids.len(), "renewing leases failed; retrying"),
            }
        }
        let reaped = tokio::time::timeout(settings.lease, reap(&pool, &settings))
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("no answer within the lease".into())));
        match reaped {
            Ok(jobs) if !jobs.is_empty() => {
                for job in &jobs {
                    tracing::warn!(job = %job.id, status = %job.status, "reaped a job whose node's lease expired");
                    cluster.changed_here(job);
                }
                if jobs.iter().any(|j| j.status == JobStatus::Queued) {
                    wake(&notify);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reaping expired leases failed; retrying"),
        }
        let swept = tokio::time::timeout(settings.lease, announce::sweep(&pool))
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("no answer within the lease".into())));
        match swept {
            Ok(0) => {}
            Ok(n) => tracing::warn!(ends = n, "announced ends of runs that their node left unannounced"),
            Err(e) => tracing::warn!(error = %e, "announcing the ends left unannounced failed; retrying"),
        }
    }
}

/// Stops this node's jobs whose lease no write renewed for a whole lease by this node's own
/// clock (the database unreachable: the node may be cut off while other nodes take its jobs
/// over once the database sees the lease expire), until `stop`: their tokens are cancelled
/// (their ffmpeg is stopped) and they leave `held`. Checked every `round` (at most a second),
/// with a margin of one round, so the node stops a job before the database could see its
/// lease expire; a task of its own, so that no statement waiting on a dead connection can
/// hold it up.
async fn watch_own_clock(
    lease: Duration,
    round: Duration,
    held: Arc<Mutex<HashMap<JobId, Held>>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(round);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while stop.run_until_cancelled(tick.tick()).await.is_some() {
        let mut held = lock(&held);
        let expired: Vec<JobId> =
            held.iter().filter(|(_, h)| h.renewed.elapsed() + round >= lease).map(|(id, _)| id.clone()).collect();
        for id in expired {
            if let Some(h) = held.remove(&id) {
                h.lost.cancel();
                tracing::warn!(job = %id, "no lease renewed for a whole lease by this node's clock: stopping the job");
            }
        }
    }
}

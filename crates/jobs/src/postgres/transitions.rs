//! [`PgStore`]'s dialect of the SQL stores' one [`JobStore`](crate::JobStore) implementation
//! ([`SqlStore`]): running a statement on the pool, and the transitions of its own (each one
//! conditional statement, or one transaction running the shared
//! [transition plan](crate::store::plan)), from the statements in [`sql`](super::sql).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Arguments as _;
use sqlx::PgConnection;
use sqlx::postgres::PgArguments;

use super::announce::{Unannounced, release_after};
use super::rounds::{Boarding, EndValues, Ending, Riders};
use super::sql::*;
use super::{PgSettings, PgStore, db};
use crate::model::{Job, JobId, Progress, SubmitOptions};
use crate::sqlite::rows::{self, JobRow, corrupt, json, micros_floor, now};
use crate::sqlite::write::WriteHealth;
use crate::store::plan::{self, ClaimSteps, ClaimView, FinishRow, NewRow, Queued, SqlTx};
use crate::store::sql::{Access, Arg, SqlRow, SqlStore, Statements};
use crate::store::{Attempt, CancelOutcome, JobStore, LostRun, Outcome, Recovery, RunRecord, StoreError, WORKER_LOST};
use crate::webhook::{Delivery, SubscriptionSource};

/// Runs `$body` (an expression using `$conn`, a [`Conn`](super::conn::Conn) of `$store`, and
/// ending in a `Result<_, StoreError>`) within the store's deadline, and gives the connection
/// back with the result; `$body` must not return early (a `?` at its top would close a healthy
/// connection): errors go through its result.
macro_rules! on_conn {
    ($store:expr, |$conn:ident| $body:expr) => {
        $store.db.call(async {
            let mut $conn = $store.db.get().await?;
            let result = $body;
            $conn.release(&result);
            result
        })
    };
}

/// Ages beyond this (ten years) count as this: PostgreSQL's intervals have bounds.
const MAX_AGE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// PostgreSQL's TEXT cannot hold NUL: an error message keeps every other character, a NUL
/// becomes U+FFFD (the log, BYTEA, keeps it).
pub(super) fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') { s.replace('\0', "\u{fffd}").into() } else { s.into() }
}

/// [`FINISH`] with the outcome bound as `$1`-`$8`: the job, its final status, completion time (microseconds), output files, error and
/// outputs, fenced by this node's id and the `attempt` it holds.
fn bind_finish<'q>(
    id: &'q JobId,
    row: &'q FinishRow,
    completed: i64,
    settings: &'q PgSettings,
    attempt: Option<i64>,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, JobRow, PgArguments> {
    sqlx::query_as(FINISH)
        .bind(id.as_str())
        .bind(row.status.as_str())
        .bind(completed)
        .bind(&row.output_files)
        .bind(row.error.as_deref().map(text))
        .bind(&settings.node_id)
        .bind(attempt)
        .bind(&row.outputs)
}

/// One open transaction of this node, for the transition plan: the writes about a running job
/// are fenced by the node id and, where set, the attempt this node holds the job for.
pub(super) struct PgTx<'a> {
    conn: &'a mut PgConnection,
    settings: &'a PgSettings,
    attempt: Option<i64>,
    /// Its claims leave their jobs' start unannounced ([`CLAIM_CHOSEN`]).
    quiet_start: bool,
}

impl<'a> PgTx<'a> {
    /// The transaction `conn` of the node with `settings`, holding no particular job.
    pub(super) fn new(conn: &'a mut PgConnection, settings: &'a PgSettings) -> PgTx<'a> {
        PgTx { conn, settings, attempt: None, quiet_start: false }
    }

    /// The same, for writes about the running job this node holds for `attempt`.
    fn holding(conn: &'a mut PgConnection, settings: &'a PgSettings, attempt: i64) -> PgTx<'a> {
        PgTx { conn, settings, attempt: Some(attempt), quiet_start: false }
    }
}

/// A claim's two steps on one connection of this node: the read of the queue in one round trip
/// and its own implicit transaction, holding the queue lock shared only while the server runs
/// it ([`CLAIM_VIEW`]); then the claim of a chosen job: one statement, which carries the ends
/// of this node's runs waiting meanwhile ([`CLAIM_CARRYING_ENDS`]), or a transaction with its
/// webhook deliveries.
struct PgClaim<'a, 'b> {
    conn: &'a mut PgConnection,
    settings: &'a PgSettings,
    /// No other node listens for the jobs' start ([`CLAIM_CHOSEN`]).
    quiet_start: bool,
    /// The ends of this node's runs that may ride with the claim.
    ends: &'a mut Boarding<'b, Ending>,
    /// The ends that rode with the claim, to announce once it committed
    /// ([`PgStore::announce_ends`]).
    ended: Unannounced,
}

#[async_trait]
impl ClaimSteps for PgClaim<'_, '_> {
    /// Queued jobs read first while looking for one that may start: twice the most a round
    /// claims, so that rounds of other nodes taking the first ones leave choices (the read
    /// costs the server in proportion).
    const CLAIM_PAGE: usize = 32;
    /// Claims running side by side read the same view; each takes the first of the choices
    /// no other one holds (`SKIP LOCKED`).
    const CLAIM_CHOICES: usize = 16;

    /// The waits are by the database's clock (`now` is this node's).
    async fn view(&mut self, limit: usize, _now: i64) -> Result<ClaimView, StoreError> {
        let rows: Vec<(i32, i32, i64, Option<String>, String, bool, Option<i64>)> = sqlx::query_as(CLAIM_VIEW)
            .bind(i32::try_from(limit).unwrap_or(i32::MAX))
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db)?;
        let mut view = ClaimView::default();
        for (kind, priority, seq, footprint, requires, hooked, wait) in rows {
            view.add(i64::from(kind), Queued { priority: i64::from(priority), seq, footprint, requires, hooked, wait });
        }
        Ok(view)
    }

    /// Without webhook subscriptions among the chosen jobs there are no deliveries to write
    /// with the claim: its one statement, for up to `want` jobs, is sent on its own (one round
    /// trip, atomic). Else one job is claimed, in one transaction with its deliveries.
    async fn claim(&mut self, seqs: &[i64], hooked: bool, want: usize, started: i64) -> Result<Vec<Job>, StoreError> {
        if !hooked {
            let args = ClaimArgs { seqs, started, want, quiet_start: self.quiet_start, settings: self.settings };
            let ends = self.ends.take();
            if !ends.is_empty() {
                match claim_carrying(&mut *self.conn, &args, ends).await {
                    Ok((claimed, ended)) => {
                        self.ended.add(ended);
                        return Ok(claimed);
                    }
                    // Not an error of the database's state: the claim alone, and the ends
                    // again on their own (dropped: they try again).
                    Err(StoreError::Database(e)) => {
                        tracing::warn!(error = %e, "a claim carrying ends of runs failed; claiming alone");
                    }
                    Err(e) => return Err(e),
                }
            }
            return claim_chosen(&mut *self.conn, &args).await;
        }
        let mut tx = sqlx::Connection::begin(&mut *self.conn).await.map_err(db)?;
        let mut planned = PgTx { quiet_start: self.quiet_start, ..PgTx::new(&mut tx, self.settings) };
        let claimed = plan::claim_chosen(&mut planned, seqs, started).await;
        Ok(end(tx, claimed).await?.into_iter().collect())
    }
}

/// PostgreSQL's statements for the transition plan.
#[async_trait]
impl SqlTx for PgTx<'_> {
    async fn claim_first(&mut self, seqs: &[i64], started: i64) -> Result<Option<Job>, StoreError> {
        let args = ClaimArgs { seqs, started, want: 1, quiet_start: self.quiet_start, settings: self.settings };
        Ok(claim_chosen(&mut *self.conn, &args).await?.into_iter().next())
    }

    async fn set_progress(&mut self, id: &JobId, progress: &str) -> Result<Option<(bool, String)>, StoreError> {
        sqlx::query_as(UPDATE_PROGRESS)
            .bind(id.as_str())
            .bind(progress)
            .bind(&self.settings.node_id)
            .bind(self.attempt)
            .bind(self.settings.lease.as_secs_f64())
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db)
    }

    async fn finish_row(&mut self, id: &JobId, row: &FinishRow, completed: i64) -> Result<Option<Job>, StoreError> {
        let rows: Vec<JobRow> = bind_finish(id, row, completed, self.settings, self.attempt)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db)?;
        rows.into_iter().next().map(Job::try_from).transpose()
    }

    async fn set_log(&mut self, seq: i64, log: &str) -> Result<(), StoreError> {
        sqlx::query(SET_LOG).bind(seq).bind(log.as_bytes()).execute(&mut *self.conn).await.map_err(db).map(drop)
    }

    async fn cancel_row(&mut self, id: &JobId, completed: i64) -> Result<Option<Job>, StoreError> {
        let row: Option<JobRow> = sqlx::query_as(CANCEL)
            .bind(id.as_str())
            .bind(completed)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db)?;
        row.map(Job::try_from).transpose()
    }

    async fn recover_fail(&mut self, max_attempts: u32, completed: i64) -> Result<Vec<Job>, StoreError> {
        let rows: Vec<JobRow> = sqlx::query_as(RECOVER_FAIL)
            .bind(i64::from(max_attempts))
            .bind(completed)
            .bind(&self.settings.node_id)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(db)?;
        rows::jobs(rows)
    }

    async fn recover_requeue(&mut self) -> Result<Vec<(i64, String)>, StoreError> {
        sqlx::query_as(RECOVER_REQUEUE).bind(&self.settings.node_id).fetch_all(&mut *self.conn).await.map_err(db)
    }

    async fn job(&mut self, id: &JobId) -> Result<Option<Job>, StoreError> {
        let row: Option<JobRow> =
            sqlx::query_as(GET).bind(id.as_str()).fetch_optional(&mut *self.conn).await.map_err(db)?;
        row.map(Job::try_from).transpose()
    }

    async fn last_progress_deliveries(&mut self, id: &JobId) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        sqlx::query_as(LAST_PROGRESS_DELIVERIES).bind(id.as_str()).fetch_all(&mut *self.conn).await.map_err(db)
    }

    async fn insert_deliveries(&mut self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        for d in deliveries {
            let source = match d.source {
                SubscriptionSource::Job => "job",
                SubscriptionSource::Server => "server",
            };
            sqlx::query(INSERT_DELIVERY)
                .bind(d.id.as_str())
                .bind(d.job_id.as_str())
                .bind(&d.url)
                .bind(source)
                .bind(d.event.as_str())
                .bind(micros_floor(d.created_at))
                .bind(json(&d.job)?)
                .execute(&mut *self.conn)
                .await
                .map_err(db)?;
        }
        Ok(())
    }
}

/// What a claim statement ([`CLAIM_CHOSEN`], [`CLAIM_CARRYING_ENDS`]) binds, in the order of
/// `claim!()` (postgres/sql.rs): at most `want` of the queued jobs `seqs` (the first in claim
/// order that no other transaction holds), for the node with `settings` (its id is bound apart:
/// the two statements number it differently), under its lease, at `started`; their start
/// unannounced when `quiet_start`.
struct ClaimArgs<'a> {
    seqs: &'a [i64],
    started: i64,
    want: usize,
    quiet_start: bool,
    settings: &'a PgSettings,
}

impl ClaimArgs<'_> {
    /// `query` with the claim's parameters bound next (seqs, started_at, lease, how many,
    /// quiet start).
    fn bind<'q, R>(
        &'q self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, R, PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, R, PgArguments> {
        query
            .bind(self.seqs)
            .bind(self.started)
            .bind(self.settings.lease.as_secs_f64())
            .bind(i64::try_from(self.want).unwrap_or(i64::MAX))
            .bind(if self.quiet_start { "on" } else { "off" })
    }
}

/// `jobs` in claim order (priority first, then submission).
fn in_claim_order(mut jobs: Vec<Job>) -> Vec<Job> {
    jobs.sort_by_key(|job| (std::cmp::Reverse(job.priority), job.seq));
    jobs
}

/// The claim `args` on `conn` ([`CLAIM_CHOSEN`]): the jobs claimed, in claim order.
async fn claim_chosen(conn: &mut PgConnection, args: &ClaimArgs<'_>) -> Result<Vec<Job>, StoreError> {
    let rows: Vec<JobRow> =
        args.bind(sqlx::query_as(CLAIM_CHOSEN)).bind(&args.settings.node_id).fetch_all(conn).await.map_err(db)?;
    Ok(in_claim_order(rows::jobs(rows)?))
}

/// A job as [`CLAIM_CARRYING_ENDS`] returns it: ended (one of the ends carried) or claimed.
#[derive(sqlx::FromRow)]
struct CarriedRow {
    ended: bool,
    #[sqlx(flatten)]
    job: JobRow,
}

/// [`claim_chosen`] in one statement with `ends`, the ends of this node's runs that waited
/// ([`CLAIM_CARRYING_ENDS`]): the claimed jobs in claim order, once each end was told how it
/// went, and the ends made, to announce. On an error the ends are dropped unanswered (they
/// try again).
async fn claim_carrying(
    conn: &mut PgConnection,
    args: &ClaimArgs<'_>,
    ends: Riders<Ending>,
) -> Result<(Vec<Job>, Unannounced), StoreError> {
    let writes = ends.writes();
    let values = EndValues::of(&writes);
    let rows: Vec<CarriedRow> = args
        .bind(values.bind(sqlx::query_as(CLAIM_CARRYING_ENDS), &args.settings.node_id))
        .fetch_all(conn)
        .await
        .map_err(db)?;
    drop(writes);
    let (mut claimed, mut ended) = (Vec::new(), Vec::new());
    for row in rows {
        let job = Job::try_from(row.job)?;
        if row.ended { ended.push(job) } else { claimed.push(job) }
    }
    let told = Unannounced::of(&ended);
    ends.made(ended);
    Ok((in_claim_order(claimed), told))
}

/// Most jobs one claim round claims (for as many workers of the node).
const CLAIM_BATCH: usize = 16;

/// What the turn of a worker waiting for a claim round brings ([`PgStore::claim_next`]).
#[derive(Debug, Clone)]
pub(super) enum Turn {
    /// The round claimed this job for it (`None`: none may start now).
    Claimed(Option<Box<Job>>),
    /// It leads the next round.
    Lead,
    /// The round failed or claimed too few: ask again.
    Again,
}

/// The lead of a claim round: dropped, it passes to the first worker still waiting, or the
/// node has no round under way.
struct Leading<'a> {
    store: &'a PgStore,
}

impl Leading<'_> {
    /// Takes from the queue of waiting workers at most `n` of those that asked with `labels`.
    fn take_waiting(&self, labels: &[String], n: usize) -> Vec<tokio::sync::oneshot::Sender<Turn>> {
        let mut claims = self.store.lock_claims();
        let mut taken = Vec::new();
        let mut kept = std::collections::VecDeque::new();
        while let Some((asked, turn)) = claims.waiting.pop_front() {
            if taken.len() < n && asked == labels {
                taken.push(turn);
            } else {
                kept.push_back((asked, turn));
            }
        }
        claims.waiting = kept;
        taken
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut claims = self.store.lock_claims();
        while let Some((_, next)) = claims.waiting.pop_front() {
            if next.send(Turn::Lead).is_ok() {
                return;
            }
        }
        claims.serving = false;
    }
}

impl PgStore {
    /// One claim round: up to `want` jobs for workers with `labels`, held by this node.
    async fn claim_round(&self, labels: &[String], want: usize) -> Result<Vec<Job>, StoreError> {
        let sent = std::time::Instant::now();
        let (_, started) = now();
        let quiet_start = !self.cluster.starts_watched_elsewhere();
        // The ends of this node's runs that come while the claim is read may ride with it.
        let mut ends = self.endings.board();
        let result = self
            .db
            .call(async {
                let mut conn = self.db.get().await?;
                let mut claim = PgClaim {
                    conn: &mut conn,
                    settings: &self.settings,
                    quiet_start,
                    ends: &mut ends,
                    ended: Unannounced::default(),
                };
                let result = plan::claim(&mut claim, started, labels, want, &self.due, &self.memo).await;
                let ended = claim.ended;
                let told = self.announce_ends(&mut conn, &ended).await;
                release_after(conn, &result, &told);
                result
            })
            .await;
        drop(ends);
        self.health.record(&result);
        let claimed = result?;
        for job in &claimed {
            self.hold(&job.id, job.attempts, !job.webhooks.is_empty(), sent);
        }
        Ok(claimed)
    }
}

/// Ends transaction `tx` as the work done in it says: commits when it changed something
/// (`Ok(Some)`), rolls back when refused (`Ok(None)`); on an error it is rolled back when
/// dropped.
async fn end<T>(
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
    done: Result<Option<T>, StoreError>,
) -> Result<Option<T>, StoreError> {
    match done? {
        Some(value) => {
            tx.commit().await.map_err(db)?;
            Ok(Some(value))
        }
        None => {
            tx.rollback().await.map_err(db)?;
            Ok(None)
        }
    }
}

impl PgStore {
    /// `args` as PostgreSQL binds them.
    fn arguments(&self, args: &[Arg<'_>]) -> Result<PgArguments, StoreError> {
        let mut bound = PgArguments::default();
        for arg in args {
            match *arg {
                Arg::Int(value) => bound.add(value),
                Arg::OptInt(value) => bound.add(value),
                Arg::Text(value) => bound.add(value),
                Arg::OptText(value) => bound.add(value),
                Arg::Bool(value) => bound.add(value),
                Arg::Texts(values) => bound.add(values),
                Arg::Age(age) => bound.add(age.min(MAX_AGE).as_secs_f64()),
                Arg::Now => Ok(()),
                Arg::Node => bound.add(self.settings.node_id.as_str()),
            }
            .map_err(StoreError::Database)?;
        }
        Ok(bound)
    }

    /// The attempt this store holds `id` for, or the refusal of `action`.
    async fn held_attempt(&self, id: &JobId, action: &'static str) -> Result<i64, StoreError> {
        Ok(self.held_claim(id, action).await?.0)
    }

    /// The attempt this store holds `id` for and whether the job may have webhook
    /// subscriptions, or the refusal of `action`.
    async fn held_claim(&self, id: &JobId, action: &'static str) -> Result<(i64, bool), StoreError> {
        match self.claim_of(id) {
            Some(claim) => Ok(claim),
            None => Err(self.refusal(id, action).await),
        }
    }
}

/// PostgreSQL's dialect of the [shared implementation](crate::store::sql): one pool, the
/// claim lock, and transitions fenced by node id and attempt ([`PgTx`]).
#[async_trait]
impl SqlStore for PgStore {
    const SQL: Statements = STATEMENTS;

    fn health(&self) -> &WriteHealth {
        &self.health
    }

    fn notify(&self) -> &tokio::sync::Notify {
        &self.notify
    }

    fn due(&self) -> &crate::store::Due {
        &self.due
    }

    fn memo(&self) -> &crate::store::ClaimMemo {
        &self.memo
    }

    async fn run(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let args = self.arguments(args)?;
        on_conn!(self, |conn| {
            sqlx::query_with(sql, args).execute(&mut *conn).await.map_err(db).map(|done| done.rows_affected())
        })
        .await
    }

    /// One pool: every access is the same.
    async fn rows<R: SqlRow>(
        &self,
        _access: Access,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Vec<R>, StoreError> {
        let args = self.arguments(args)?;
        on_conn!(self, |conn| sqlx::query_as_with(sql, args).fetch_all(&mut *conn).await.map_err(db)).await
    }

    async fn insert(&self, command: String, options: SubmitOptions) -> Result<Job, StoreError> {
        let row = NewRow::of(command, options)?;
        let requires = json(&row.job.requires)?;
        let idempotency = row.job.idempotency.as_ref();
        let result = on_conn!(self, |conn| {
            sqlx::query_scalar::<_, i64>(INSERT)
                .bind(row.job.id.as_str())
                .bind(row.job.command.as_str())
                .bind(row.job.priority)
                .bind(row.timeout())
                .bind(&row.metadata)
                .bind(micros_floor(row.job.created_at))
                .bind(&row.footprint)
                .bind(&row.webhooks)
                .bind(&requires)
                .bind(idempotency.map(|i| i.key.as_str()))
                .bind(idempotency.map(|i| i.fingerprint.as_str()))
                .fetch_all(&mut *conn)
                .await
                .map_err(db)
        })
        .await;
        self.health.record(&result);
        let Some(seq) = result?.into_iter().next() else {
            // No row: the key is taken, by a job committed before this statement ended.
            let no_row = || StoreError::Database("the insert returned no row for this job".into());
            let key = idempotency.map(|i| &i.key).ok_or_else(no_row)?;
            let taken = JobStore::get_by_idempotency_key(self, key).await?.ok_or_else(no_row)?;
            return Err(StoreError::IdempotencyKeyTaken(Box::new(taken)));
        };
        let job = Job { seq, ..row.job };
        self.wake();
        Ok(job)
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        let row: Option<JobRow> =
            on_conn!(self, |conn| sqlx::query_as(GET).bind(id.as_str()).fetch_optional(&mut *conn).await.map_err(db))
                .await?;
        row.map(Job::try_from).transpose()
    }

    /// The claims of this node's workers are served in rounds, one at a time: the worker that
    /// finds no round under way leads one, for itself and for every worker (with the same
    /// labels) that asked meanwhile, with one read of the queue and one statement that claims a
    /// job for each ([`plan::claim`]); then it hands the lead to the next worker waiting. Under
    /// load, this reads the queue once for several jobs, and keeps this node's claims from
    /// racing each other for the same rows.
    async fn claim_next(&self, labels: &[String]) -> Result<Option<Job>, StoreError> {
        loop {
            let waiting = {
                let mut claims = self.lock_claims();
                if claims.serving {
                    let (turn, waiting) = tokio::sync::oneshot::channel();
                    claims.waiting.push_back((labels.to_vec(), turn));
                    Some(waiting)
                } else {
                    claims.serving = true;
                    None
                }
            };
            if let Some(waiting) = waiting {
                match waiting.await {
                    Ok(Turn::Claimed(job)) => return Ok(job.map(|job| *job)),
                    Ok(Turn::Lead) => {}
                    // The round failed, or ended (its leader's future dropped) before this
                    // worker's turn: ask again.
                    Ok(Turn::Again) | Err(_) => continue,
                }
            }
            // This worker leads a round; dropping `lead` (at the end, or if this future is
            // dropped) hands the lead on.
            let lead = Leading { store: self };
            let others = lead.take_waiting(labels, CLAIM_BATCH - 1);
            let claimed = self.claim_round(labels, 1 + others.len()).await;
            let mut jobs = match claimed {
                Ok(jobs) => jobs.into_iter(),
                Err(e) => {
                    for other in others {
                        let _ = other.send(Turn::Again);
                    }
                    return Err(e);
                }
            };
            let mine = jobs.next();
            // The round claimed fewer jobs than it was asked for: none may start for the others
            // now, or other nodes took them meanwhile (then the next round may find more).
            let short = if mine.is_some() { Turn::Again } else { Turn::Claimed(None) };
            let mut orphans = Vec::new();
            for other in others {
                let turn = match jobs.next() {
                    Some(job) => Turn::Claimed(Some(Box::new(job))),
                    None => short.clone(),
                };
                // A worker that stopped waiting: a job claimed for it goes back to the queue.
                if let Err(Turn::Claimed(Some(job))) = other.send(turn) {
                    orphans.push(job.id);
                }
            }
            drop(lead);
            for id in orphans {
                if let Err(e) = SqlStore::requeue(self, &id).await {
                    tracing::warn!(job = %id, error = %e, "putting back a job claimed for a worker that stopped waiting failed");
                }
            }
            return Ok(mine);
        }
    }

    async fn claim_lost_run(&self) -> Result<Option<LostRun>, StoreError> {
        let sent = std::time::Instant::now();
        let result = on_conn!(self, |conn| {
            sqlx::query_as::<_, (String, i64, bool, String)>(TAKE_OVER_LOST)
                .bind(i64::from(self.settings.max_attempts))
                .bind(&self.settings.node_id)
                .bind(self.settings.lease.as_secs_f64())
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)
        })
        .await;
        self.health.record(&result);
        let Some((id, attempts, cancel, run)) = result? else { return Ok(None) };
        let id = JobId::parse(&id).map_err(|e| corrupt("id", e))?;
        let attempt = u32::try_from(attempts).map_err(|e| corrupt("attempts", e))?;
        let run = serde_json::from_str::<RunRecord>(&run).map_err(|e| corrupt("run", e))?;
        // Held from now on: renewed, and the fencing token of the `finish` that ends it (which
        // writes the deliveries of the job's webhooks, if it has any: not read here).
        self.hold(&id, attempt, true, sent);
        let outcome = if cancel { Outcome::Cancelled } else { Outcome::Failed { error: WORKER_LOST.to_owned() } };
        Ok(Some(LostRun { id, run, outcome }))
    }

    fn set_watched(&self, watched: &crate::cluster::Watched) {
        self.cluster.set_watched(watched);
    }

    async fn update_progress(&self, id: &JobId, progress: &Progress) -> Result<bool, StoreError> {
        let attempt = self.held_attempt(id, "update progress").await?;
        let progress = json(progress)?;
        let sent = std::time::Instant::now();
        let result = on_conn!(self, |conn| {
            async {
                let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db)?;
                let updated =
                    plan::update_progress(&mut PgTx::holding(&mut tx, &self.settings, attempt), id, &progress).await;
                end(tx, updated).await
            }
            .await
        })
        .await;
        let cancel = self.settle(id, "update progress", result).await?;
        // The write renewed the lease too.
        self.renewed(id, sent);
        Ok(cancel)
    }

    async fn finish(&self, id: &JobId, outcome: Outcome, log: &str) -> Result<Job, StoreError> {
        SqlStore::finish_with_progress(self, id, None, outcome, log).await
    }

    /// One write: without webhook subscriptions, the progress, the outcome and the log in one
    /// statement, sent in a round with the other ends of this node's runs ([`super::rounds`]);
    /// with them, one transaction that writes their deliveries too. A refusal refuses both.
    async fn finish_with_progress(
        &self,
        id: &JobId,
        progress: Option<&Progress>,
        outcome: Outcome,
        log: &str,
    ) -> Result<Job, StoreError> {
        let (attempt, hooked) = self.held_claim(id, "finish").await?;
        let (_, completed) = now();
        let row = FinishRow::of(outcome)?;
        let progress = progress.map(json).transpose()?;
        let result = if hooked {
            on_conn!(self, |conn| {
                async {
                    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db)?;
                    let mut planned = PgTx::holding(&mut tx, &self.settings, attempt);
                    let finished =
                        plan::finish_with_progress(&mut planned, id, progress.as_deref(), &row, completed, log).await;
                    end(tx, finished).await
                }
                .await
            })
            .await
        } else {
            let ending = Ending { id: id.clone(), attempt, row, completed, log: log.to_owned(), progress };
            self.endings.send(self, ending).await
        };
        let job = self.settle(id, "finish", result).await?;
        self.release(id);
        // A job this one's footprint held back may start now.
        self.wake();
        Ok(job)
    }

    async fn log(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        let log: Option<Option<Vec<u8>>> = on_conn!(self, |conn| sqlx::query_scalar(LOG)
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db))
        .await?;
        log.map(|log| String::from_utf8(log.unwrap_or_default()).map_err(|e| corrupt("log", e))).transpose()
    }

    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome, StoreError> {
        let (_, completed) = now();
        let result = on_conn!(self, |conn| {
            async {
                let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db)?;
                let cancelled = plan::cancel(&mut PgTx::new(&mut tx, &self.settings), id, completed).await;
                end(tx, cancelled).await
            }
            .await
        })
        .await;
        self.settle(id, "cancel", result).await
    }

    async fn requeue(&self, id: &JobId) -> Result<(), StoreError> {
        let attempt = self.held_attempt(id, "requeue").await?;
        let args = [Arg::Text(id.as_str()), Arg::Text(&self.settings.node_id), Arg::Int(attempt)];
        self.transition(id, "requeue", REQUEUE, &args).await?;
        self.release(id);
        self.wake();
        Ok(())
    }

    async fn retry(&self, id: &JobId, reason: &str, wait: Duration, counted: Attempt) -> Result<(), StoreError> {
        let attempt = self.held_attempt(id, "retry").await?;
        let wait = i64::try_from(wait.min(MAX_AGE).as_micros()).unwrap_or(i64::MAX);
        let reason = text(reason);
        let args = [
            Arg::Text(id.as_str()),
            Arg::Text(&self.settings.node_id),
            Arg::Int(attempt),
            Arg::Text(&reason),
            Arg::Int(wait),
            Arg::Bool(counted == Attempt::Counted),
        ];
        self.transition(id, "retry", RETRY, &args).await?;
        self.release(id);
        self.wake();
        Ok(())
    }

    async fn recover(&self, max_attempts: u32) -> Result<Recovery, StoreError> {
        let (_, completed) = now();
        let result = on_conn!(self, |conn| {
            async {
                let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db)?;
                let recovered =
                    plan::recover(&mut PgTx::new(&mut tx, &self.settings), max_attempts, completed).await.map(Some);
                end(tx, recovered).await
            }
            .await
        })
        .await;
        self.health.record(&result);
        let recovery = result?.unwrap_or_default();
        for id in recovery.requeued.iter().chain(&recovery.failed).chain(&recovery.cancelled) {
            self.release(id);
        }
        if !recovery.requeued.is_empty() {
            self.wake();
        }
        Ok(recovery)
    }

    fn cluster_signals(&self) -> Option<tokio::sync::broadcast::Receiver<crate::cluster::ClusterSignal>> {
        Some(self.cluster.subscribe())
    }

    fn announce_progress(&self, event: &crate::events::ProgressEvent) {
        self.cluster.announce(event);
    }

    fn lease_lost(&self, id: &JobId) -> Option<tokio_util::sync::CancellationToken> {
        self.lost_token(id)
    }
}

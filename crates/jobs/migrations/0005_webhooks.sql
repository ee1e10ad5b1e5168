-- ffmpeg-worker job store, schema 5: webhook subscriptions and the outbox of deliveries
-- (see crates/jobs/src/webhook/mod.rs).

-- Who is told about the job's events: JSON array of jobs::webhook::WebhookSubscription
-- (url, events, source), fixed at submission.
ALTER TABLE jobs ADD COLUMN webhooks TEXT NOT NULL DEFAULT '[]';

-- The outbox: one row per event per subscribed URL, written in the transaction of the status
-- change that causes it, and updated by each delivery attempt. Not tied to the job row: a job
-- deleted right after it finished still has its last events delivered; finished deliveries
-- are purged with the finished jobs of their time (retention).
CREATE TABLE webhook_deliveries (
    -- Write order.
    n               INTEGER PRIMARY KEY AUTOINCREMENT,
    -- `msg_` + 32 hex: the webhook-id header, the same on every attempt.
    id              TEXT    NOT NULL UNIQUE,
    job_id          TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    source          TEXT    NOT NULL CHECK (source IN ('job', 'server')),
    event           TEXT    NOT NULL,
    -- When the event happened (unix microseconds): the payload's timestamp.
    created_at      INTEGER NOT NULL,
    -- The job as the transition left it (JSON of jobs::Job): the payload's data.
    job             TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed', 'gone')),
    -- When the next attempt is due (unix microseconds); NULL once final.
    next_attempt_at INTEGER,
    -- JSON array of jobs::webhook::DeliveryAttempt.
    attempts        TEXT    NOT NULL DEFAULT '[]'
);

-- The dispatcher's queue: pending deliveries by due time.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
-- A job's deliveries (GET /jobs/{id}/webhooks, progress throttling).
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id, n);

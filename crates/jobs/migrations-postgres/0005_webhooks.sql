-- ffmpeg-worker job store on PostgreSQL, schema 5: mirrors migrations/0005_webhooks.sql
-- (SQLite): webhook subscriptions and the outbox of deliveries (crates/jobs/src/webhook/mod.rs).

ALTER TABLE jobs ADD COLUMN webhooks TEXT NOT NULL DEFAULT '[]';

CREATE TABLE webhook_deliveries (
    n               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT   NOT NULL UNIQUE,
    job_id          TEXT   NOT NULL,
    url             TEXT   NOT NULL,
    source          TEXT   NOT NULL CHECK (source IN ('job', 'server')),
    event           TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    job             TEXT   NOT NULL,
    state           TEXT   NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed', 'gone')),
    next_attempt_at BIGINT,
    attempts        TEXT   NOT NULL DEFAULT '[]'
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id, n);

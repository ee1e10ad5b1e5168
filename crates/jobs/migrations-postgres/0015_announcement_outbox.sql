-- ffmpeg-worker job store on PostgreSQL, schema 15: the ends of a node's runs are announced
-- from an outbox, right after their commit, instead of by the notify trigger inside it.
--
-- A transaction that notifies takes PostgreSQL's notification lock (one for the whole
-- database) before its commit record is written and holds it until the commit is on disk
-- (`PreCommit_Notify`: notifications are queued in commit order). With durable commits every
-- notifying commit therefore waits for the disk one at a time, cluster-wide, while commits
-- that notify nothing share their flushes (group commit). A node sends the ends of its runs in
-- rounds (crates/jobs/src/postgres/rounds.rs), one statement per round: with 4 worker
-- processes, their rounds queued behind each other's `fsync`, so the ends of the whole cluster
-- were written at most one round per `fsync` (`bench cluster`, docs/benchmarks.md, session 22).
--
-- Now the statements that end runs (crates/jobs/src/postgres/sql.rs, FINISH_BATCH and
-- CLAIM_CARRYING_ENDS) set `ffmpeg_worker.quiet_end` to `on` for their own transaction; the
-- trigger then does not notify the final statuses they write but writes each notification's
-- payload as a row of `announcements`, in the same transaction: the end and its announcement
-- are committed together, or neither is. Once the commit is acknowledged the node deletes
-- those rows and notifies their payloads in one statement of its own (ANNOUNCE_ENDS), which
-- commits without waiting for the disk (`synchronous_commit` off for it alone: were it lost in
-- a crash, the rows would be announced again, never lost), so it holds the lock for a moment.
-- A node that died or lost its connection between the two leaves its rows behind: every
-- node's reaper round (crates/jobs/src/postgres/mod.rs, `maintain`) announces and deletes the
-- rows older than a few seconds (SWEEP_ANNOUNCEMENTS, `FOR UPDATE SKIP LOCKED`: two nodes never
-- send the same row). A row is sent once unless a crash loses the delete after its notification
-- went out; a repeated end is harmless (the listeners go by the job's event number).
-- Listeners hear an end only once it is on disk, as before. Every other statement, and every
-- node of an older version, is announced by the trigger as before (tester finding K10: the
-- reverted schema 14 of session 22 notified after the commit with nothing kept, and a node
-- dying in between left the end unannounced for good).
-- SQLite has no counterpart (no notifications) and no migration 15.

CREATE TABLE announcements (
    job TEXT NOT NULL,
    seq BIGINT NOT NULL,
    payload TEXT NOT NULL,
    made_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job, seq)
);
CREATE INDEX announcements_made_at ON announcements (made_at);

CREATE OR REPLACE FUNCTION ffmpeg_worker_notify_job() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    _ text;
    payload text;
BEGIN
    IF TG_OP = 'INSERT' OR (NEW.event_seq <> OLD.event_seq
            AND (NEW.status <> 'running' OR current_setting('ffmpeg_worker.quiet_start', true) IS DISTINCT FROM 'on')) THEN
        payload := json_build_object('k', 'status',
            'node', current_setting('ffmpeg_worker.node', true),
            'job', NEW.id, 'seq', NEW.event_seq, 'status', NEW.status)::text;
        IF TG_OP = 'UPDATE' AND NEW.status NOT IN ('queued', 'running')
                AND current_setting('ffmpeg_worker.quiet_end', true) = 'on' THEN
            INSERT INTO announcements (job, seq, payload) VALUES (NEW.id, NEW.event_seq, payload)
                ON CONFLICT (job, seq) DO NOTHING;
        ELSE
            _ := pg_notify('ffmpeg_worker', payload)::text;
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.cancel_requested AND NOT OLD.cancel_requested THEN
        _ := pg_notify('ffmpeg_worker', json_build_object('k', 'cancel',
            'node', current_setting('ffmpeg_worker.node', true), 'job', NEW.id)::text)::text;
    END IF;
    RETURN NULL;
END
$$;

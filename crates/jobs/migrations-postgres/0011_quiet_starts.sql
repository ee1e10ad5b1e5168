-- ffmpeg-worker job store on PostgreSQL, schema 11: a claim announces its jobs' start only when
-- some other node listens for it, and the notify trigger and the claim's read of the queue
-- call their functions as plain expressions.
--
-- The trigger of 0008 notified every status change. A start (status `running`) matters to
-- other nodes only for the event streams that watch the job (a queued or ended job also wakes
-- their idle workers, so those are always announced). A node knows what the others' streams
-- watch (their pings, crates/jobs/src/postgres/notify.rs); when none watches anything, its
-- claim statement sets `ffmpeg_worker.quiet_start` to `on` for its own transaction
-- (crates/jobs/src/postgres/sql.rs, CLAIM_CHOSEN), and the trigger leaves the start
-- unannounced: one notification a job (its end) instead of two. Every other statement, and a
-- claim made while someone watches, is announced as before.
--
-- `PERFORM f(...)` runs a query through the executor (set up and torn down at every call);
-- `_ := f(...)::text` is a plain expression, which PL/pgSQL evaluates without it. The
-- functions called return nothing (void, as text: ''). The behaviour is unchanged.
-- SQLite has no counterpart (no notifications); its migration 0011 changes nothing.

CREATE OR REPLACE FUNCTION ffmpeg_worker_notify_job() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    _ text;
BEGIN
    IF TG_OP = 'INSERT' OR (NEW.event_seq <> OLD.event_seq
            AND (NEW.status <> 'running' OR current_setting('ffmpeg_worker.quiet_start', true) IS DISTINCT FROM 'on')) THEN
        _ := pg_notify('ffmpeg_worker', json_build_object('k', 'status',
            'node', current_setting('ffmpeg_worker.node', true),
            'job', NEW.id, 'seq', NEW.event_seq, 'status', NEW.status)::text)::text;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.cancel_requested AND NOT OLD.cancel_requested THEN
        _ := pg_notify('ffmpeg_worker', json_build_object('k', 'cancel',
            'node', current_setting('ffmpeg_worker.node', true), 'job', NEW.id)::text)::text;
    END IF;
    RETURN NULL;
END
$$;

-- As in 0010; the stripes of the queue lock are taken one expression each, in order.
CREATE OR REPLACE FUNCTION ffmpeg_worker_claim_view(page_limit integer)
RETURNS TABLE (kind integer, priority integer, seq bigint, footprint text, requires text, hooked boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    _ text;
BEGIN
    FOR stripe IN 0..7 LOOP
        _ := pg_advisory_xact_lock_shared(1717988720, stripe)::text;
    END LOOP;
    RETURN QUERY
    WITH page AS (SELECT j.priority, j.seq, j.footprint, j.requires, j.webhooks FROM jobs j
                  WHERE j.status = 'queued' ORDER BY j.priority DESC, j.seq LIMIT page_limit),
         last AS (SELECT p.priority, p.seq FROM page p ORDER BY p.priority, p.seq DESC LIMIT 1),
         top AS (SELECT max(p.seq) AS seq FROM page p)
    SELECT 0, j.priority, j.seq, j.footprint, j.requires, j.webhooks <> '[]' FROM jobs j WHERE j.status = 'running'
    UNION ALL SELECT 1, p.priority, p.seq, p.footprint, p.requires, p.webhooks <> '[]' FROM page p
    UNION ALL SELECT 2, j.priority, j.seq, j.footprint, j.requires, j.webhooks <> '[]'
      FROM jobs j, last, top WHERE j.status = 'queued' AND j.seq < top.seq
      AND (j.priority < last.priority OR (j.priority = last.priority AND j.seq > last.seq));
END
$$;

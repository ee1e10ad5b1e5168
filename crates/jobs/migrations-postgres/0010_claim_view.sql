-- ffmpeg-worker job store on PostgreSQL, schema 10: the claim's read of the queue as a function,
-- so that a node sends it as one prepared statement (planned once per connection) instead of
-- two statements parsed and planned at every claim (crates/jobs/src/postgres/sql.rs,
-- CLAIM_VIEW; the rule it serves is in crates/jobs/src/store/plan.rs).
--
-- First it takes every stripe of the queue's advisory lock (key 1717988720, stripes 0-7) shared,
-- in order: an insert holds its stripe exclusively from before it takes its seq until it
-- commits, so once the locks are held no insert is half done. Then, in a snapshot taken after
-- that (the function is VOLATILE: each of its statements takes a fresh snapshot under READ
-- COMMITTED), it returns kind 0, the running jobs; kind 1, the first page_limit queued jobs in
-- claim order; kind 2, the queued jobs after them in claim order that were submitted before one
-- of them. Each with its priority, seq, footprint, required labels, and whether it has webhook
-- subscriptions (its claim then writes deliveries in the same transaction). The locks are held
-- until the calling statement's transaction ends: the end of the statement, when it is sent on
-- its own.
-- SQLite has no counterpart (one writer orders its inserts); its migration 0010 changes nothing.

-- The queued jobs by submission order: the view's third part (queued jobs submitted before the
-- last of the page) reads only queued jobs, however many finished jobs the table holds.
CREATE INDEX jobs_queued_seq ON jobs (seq) WHERE status = 'queued';

CREATE FUNCTION ffmpeg_worker_claim_view(page_limit integer)
RETURNS TABLE (kind integer, priority integer, seq bigint, footprint text, requires text, hooked boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1717988720, s) FROM generate_series(0, 7) AS s ORDER BY s;
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

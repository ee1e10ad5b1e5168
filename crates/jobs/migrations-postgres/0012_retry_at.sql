-- ffmpeg-worker job store on PostgreSQL, schema 12: a job put back in the queue after an attempt
-- failed for a reason that may pass (the storage unavailable) waits until `retry_at` (unix
-- microseconds, by the database's clock) before a claim may take it again, and keeps why in
-- `retry_reason` (crates/jobs/src/store.rs, `JobStore::retry`).
--
-- The claim's read of the queue (0010, 0011) returns one more column, `wait`: for a queued job
-- whose `retry_at` is still ahead by the database's clock, the microseconds until then, else
-- NULL. A claim passes over a waiting job (it still holds back the later jobs its footprint
-- conflicts with), and the node's idle workers wake up when the soonest wait ends
-- (crates/jobs/src/store/plan.rs, `may_start`; crates/jobs/src/store/due.rs). A function's
-- result columns cannot change in place: it is dropped and created again, otherwise as in 0011.
-- Mirrors migrations/0012_retry_at.sql.

ALTER TABLE jobs ADD COLUMN retry_at BIGINT, ADD COLUMN retry_reason TEXT;

DROP FUNCTION ffmpeg_worker_claim_view(integer);

CREATE FUNCTION ffmpeg_worker_claim_view(page_limit integer)
RETURNS TABLE (kind integer, priority integer, seq bigint, footprint text, requires text, hooked boolean, wait bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    _ text;
    now_us bigint;
BEGIN
    FOR stripe IN 0..7 LOOP
        _ := pg_advisory_xact_lock_shared(1717988720, stripe)::text;
    END LOOP;
    now_us := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    RETURN QUERY
    WITH page AS (SELECT j.priority, j.seq, j.footprint, j.requires, j.webhooks, j.retry_at FROM jobs j
                  WHERE j.status = 'queued' ORDER BY j.priority DESC, j.seq LIMIT page_limit),
         last AS (SELECT p.priority, p.seq FROM page p ORDER BY p.priority, p.seq DESC LIMIT 1),
         top AS (SELECT max(p.seq) AS seq FROM page p)
    SELECT 0, j.priority, j.seq, j.footprint, j.requires, j.webhooks <> '[]', NULL::bigint
      FROM jobs j WHERE j.status = 'running'
    UNION ALL SELECT 1, p.priority, p.seq, p.footprint, p.requires, p.webhooks <> '[]',
      CASE WHEN p.retry_at > now_us THEN p.retry_at - now_us END FROM page p
    UNION ALL SELECT 2, j.priority, j.seq, j.footprint, j.requires, j.webhooks <> '[]', NULL::bigint
      FROM jobs j, last, top WHERE j.status = 'queued' AND j.seq < top.seq
      AND (j.priority < last.priority OR (j.priority = last.priority AND j.seq > last.seq));
END
$$;

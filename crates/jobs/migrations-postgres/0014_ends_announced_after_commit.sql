-- ffmpeg-worker job store on PostgreSQL, schema 14: the ends of a node's runs are announced by
-- the node right after their commit, instead of by the notify trigger inside it.
--
-- A transaction that notifies takes PostgreSQL's notification lock (one for the whole
-- database) before its commit record is written and holds it until the commit is on disk
-- (`PreCommit_Notify`: notifications are queued in commit order). With durable commits every
-- notifying commit therefore waits for the disk one at a time, cluster-wide, while commits
-- that notify nothing share their flushes (group commit). A node sends the ends of its runs in
-- rounds (crates/jobs/src/postgres/rounds.rs), one statement per round: with 4 worker
-- processes, their rounds queued behind each other's `fsync` (4.5 ms each here), so the ends of
-- the whole cluster were written at most one round per `fsync` (`bench cluster`: most backends
-- waiting on `Lock:object`, docs/benchmarks.md).
--
-- Now the statements that end runs (crates/jobs/src/postgres/sql.rs, FINISH_BATCH and
-- CLAIM_CARRYING_ENDS) set `ffmpeg_worker.quiet_end` to `on` for their own transaction; the
-- trigger then leaves the final statuses it writes unannounced, and once the commit is
-- acknowledged the node notifies the same payloads itself, in a statement of its own that
-- writes nothing durable (`synchronous_commit` off for it alone: it holds the lock for
-- microseconds). Listeners hear an end only once it is on disk, as before; a node that dies
-- between the commit and its notification leaves that end unannounced (the other nodes' idle
-- workers still look at the queue every `idle_wait`). Every other statement, and every node
-- of an older version, is announced by the trigger as before.
-- SQLite has no counterpart (no notifications); its migration 0014 changes nothing.

CREATE OR REPLACE FUNCTION ffmpeg_worker_notify_job() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    _ text;
BEGIN
    IF TG_OP = 'INSERT' OR (NEW.event_seq <> OLD.event_seq
            AND (NEW.status <> 'running' OR current_setting('ffmpeg_worker.quiet_start', true) IS DISTINCT FROM 'on')
            AND (NEW.status IN ('queued', 'running')
                 OR current_setting('ffmpeg_worker.quiet_end', true) IS DISTINCT FROM 'on')) THEN
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

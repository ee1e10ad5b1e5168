-- ffmpeg-worker job store on PostgreSQL, schema 8: the nodes of a cluster tell each other of
-- job changes with NOTIFY on channel `ffmpeg_worker` (crates/jobs/src/postgres/notify.rs).
-- A trigger sends them, so every transition that changes a job's status (it adds one to
-- event_seq, see 0004) or asks for a cancel is announced, whichever statement made it, and
-- only once it commits (PostgreSQL delivers a transaction's notifications at its commit, in
-- commit order). Payloads are small JSON objects naming the job (never its data) and the node
-- whose session made the change (the setting `ffmpeg_worker.node`, which every connection of
-- a node sets; NULL for other sessions, e.g. an operator's psql):
--   {"k": "status", "node": NODE, "job": ID, "seq": EVENT_SEQ, "status": STATUS}
--   {"k": "cancel", "node": NODE, "job": ID}   (a cancel asked while the job runs)
-- The nodes send live progress on the same channel themselves ({"k": "progress", ...}).
-- SQLite has no counterpart (one node); its migration 0008 changes nothing.

CREATE FUNCTION ffmpeg_worker_notify_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.event_seq <> OLD.event_seq THEN
        PERFORM pg_notify('ffmpeg_worker', json_build_object('k', 'status',
            'node', current_setting('ffmpeg_worker.node', true),
            'job', NEW.id, 'seq', NEW.event_seq, 'status', NEW.status)::text);
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.cancel_requested AND NOT OLD.cancel_requested THEN
        PERFORM pg_notify('ffmpeg_worker', json_build_object('k', 'cancel',
            'node', current_setting('ffmpeg_worker.node', true), 'job', NEW.id)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF event_seq, cancel_requested ON jobs
    FOR EACH ROW EXECUTE FUNCTION ffmpeg_worker_notify_job();

-- ffmpeg-worker job store on PostgreSQL, schema 7: mirrors migrations/0007_nodes.sql (SQLite):
-- routing by labels and the node registry (see crates/jobs/src/nodes.rs).

-- Labels a node must have to claim the job: a JSON array of strings, sorted ('[]': any node).
ALTER TABLE jobs ADD COLUMN requires TEXT NOT NULL DEFAULT '[]';

-- Every node using this database. Heartbeats are TIMESTAMPTZ written and compared by the
-- database's own clock only (as leases are), so that nodes whose clocks differ agree on which
-- node is lost; started_at is BIGINT unix microseconds, by the node's clock.
CREATE TABLE nodes (
    id             TEXT    PRIMARY KEY,
    role           TEXT    NOT NULL CHECK (role IN ('all', 'api', 'worker')),
    labels         TEXT    NOT NULL DEFAULT '[]',
    host           TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    ffmpeg_version TEXT,
    capabilities   TEXT,
    slots          BIGINT  NOT NULL,
    running_jobs   TEXT    NOT NULL DEFAULT '[]',
    draining       BOOLEAN NOT NULL DEFAULT FALSE,
    started_at     BIGINT  NOT NULL,
    heartbeat_at   TIMESTAMPTZ NOT NULL
);

-- ffmpeg-worker job store, schema 7: routing by labels and the node registry
-- (see crates/jobs/src/nodes.rs).

-- Labels a node must have to claim the job: a JSON array of strings, sorted ('[]': any node).
ALTER TABLE jobs ADD COLUMN requires TEXT NOT NULL DEFAULT '[]';

-- Every node (process) using this store: what it published when it started, and its latest
-- heartbeat. Times are INTEGER unix microseconds (UTC), by the writing node's clock.
CREATE TABLE nodes (
    id             TEXT    PRIMARY KEY,
    role           TEXT    NOT NULL CHECK (role IN ('all', 'api', 'worker')),
    -- JSON array of strings, sorted.
    labels         TEXT    NOT NULL DEFAULT '[]',
    host           TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    ffmpeg_version TEXT,
    -- JSON of ffmpeg_core::capabilities::Capabilities (NULL: unknown); read only by submit
    -- checks, never with the node list.
    capabilities   TEXT,
    slots          INTEGER NOT NULL,
    -- JSON array of the job ids it ran at its latest heartbeat.
    running_jobs   TEXT    NOT NULL DEFAULT '[]',
    draining       INTEGER NOT NULL DEFAULT 0 CHECK (draining IN (0, 1)),
    started_at     INTEGER NOT NULL,
    heartbeat_at   INTEGER NOT NULL
);

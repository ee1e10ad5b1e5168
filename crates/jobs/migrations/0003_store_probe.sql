-- ffmpeg-worker job store, schema 3: a one-row table the SQLite store writes to find out
-- whether it can write (readiness, after writes failed: disk full, read-only file).
-- Its content means nothing else.
CREATE TABLE store_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    written_at INTEGER NOT NULL
);

-- ffmpeg-worker job store on PostgreSQL, schema 3: mirrors migrations/0003 (SQLite): a
-- one-row table the store writes to find out whether it can write (readiness).
CREATE TABLE store_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    written_at BIGINT  NOT NULL
);

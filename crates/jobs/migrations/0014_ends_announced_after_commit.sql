-- ffmpeg-worker job store, schema 14: mirrors migrations-postgres/0014_ends_announced_after_commit.sql,
-- which changes the notification trigger of PostgreSQL. SQLite has no notifications: nothing
-- to change.
SELECT 1;

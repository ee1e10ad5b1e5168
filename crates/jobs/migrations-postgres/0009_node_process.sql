-- ffmpeg-worker job store on PostgreSQL, schema 9: mirrors migrations/0009_node_process.sql
-- (SQLite): which process registered a node id (`nodes.process`: "BOOT_ID PID_NAMESPACE PID",
-- NULL when unknown), so that a node starting with an id in the registry can tell a crashed
-- earlier start on its own machine from another live process using the same id.
ALTER TABLE nodes ADD COLUMN process TEXT;

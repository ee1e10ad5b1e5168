-- ffmpeg-worker job store, schema 9: which process registered a node id (`nodes.process`:
-- "BOOT_ID PID_NAMESPACE PID", NULL when unknown), so that a node starting with an id in the
-- registry can tell a crashed earlier start on its own machine (that process is gone: its
-- start is replaced at once) from another live process using the same id (refused).
ALTER TABLE nodes ADD COLUMN process TEXT;

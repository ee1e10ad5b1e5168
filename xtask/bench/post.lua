-- wrk script for `cargo xtask bench api`: POST /jobs with a JSON body.
-- The command's input does not exist: ffmpeg-worker (started with --concurrency 0) only queues
-- the job; the original Python design's worker runs it, and it fails fast.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"command": "-i missing.mp4 -c:v libx264 -preset ultrafast out.mp4"}'

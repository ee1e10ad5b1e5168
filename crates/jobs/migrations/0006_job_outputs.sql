-- ffmpeg-worker job store, schema 6: what is known of each file a completed job wrote.

-- JSON array of jobs::model::OutputFile (path, size_bytes, duration_seconds, format, streams),
-- one per entry of output_files, from ffmpeg's `Output #N` listing, its final progress and the
-- file system. '[]' for other jobs and for jobs completed before this column existed.
ALTER TABLE jobs ADD COLUMN outputs TEXT NOT NULL DEFAULT '[]';

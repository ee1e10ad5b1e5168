//! Staging with the files in a bucket: a real S3-compatible server in its own process (moto's,
//! `s3-harness`), the real ffmpeg on lavfi-generated media. The bucket is checked with raw S3
//! requests, the stage directory on disk.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ffmpeg_core::sandbox::Sandbox;
use jobs::events::{Event, Published};
use jobs::model::Phase;
use jobs::storage::{
    ByteStream, FileMeta, ListPage, PutOptions, S3Config, S3Storage, StagedPut, Storage, StorageError, StoredFile,
};
use jobs::store::JobStore;
use jobs::{
    FfmpegConfig, FfmpegRunner, Job, JobId, JobStatus, Jobs, JobsConfig, MemoryStore, Runner, Shutdown, SubmitOptions,
};

const PREFIX: &str = "media";

fn s3_storage(bucket: &str) -> S3Storage {
    let server = s3_harness::shared();
    let config = S3Config {
        endpoint: Some(server.endpoint().to_owned()),
        access_key_id: Some(s3_harness::ACCESS_KEY_ID.to_owned()),
        secret_access_key: Some(s3_harness::SECRET_ACCESS_KEY.to_owned()),
        region: s3_harness::REGION.to_owned(),
        allow_http: true,
        ..S3Config::from_url(&format!("s3://{bucket}/{PREFIX}")).unwrap()
    };
    S3Storage::new(&config).unwrap()
}

struct Fixture {
    data: tempfile::TempDir,
    bucket: String,
    jobs: Arc<Jobs>,
    store: Arc<dyn JobStore>,
    shutdown: Shutdown,
    _workers: tokio::task::JoinSet<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.stop_claiming.cancel();
        self.shutdown.abort_running.cancel();
    }
}

fn fixture_with(wrap: impl FnOnce(S3Storage) -> Arc<dyn Storage>) -> Fixture {
    let bucket = s3_harness::shared().bucket();
    let data = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(data.path()).unwrap();
    sandbox.deny(jobs::staging::STAGING_DIR);
    let runner: Arc<dyn Runner> = Arc::new(FfmpegRunner::new(FfmpegConfig::new("ffmpeg", data.path())));
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let config = JobsConfig {
        idle_wait: Duration::from_millis(100),
        remote_storage: Some(wrap(s3_storage(&bucket))),
        ..JobsConfig::default()
    };
    let jobs = Jobs::new(Arc::clone(&store), runner, sandbox, config);
    let shutdown = Shutdown::default();
    let workers = jobs.spawn_workers(&shutdown);
    Fixture { data, bucket, jobs, store, shutdown, _workers: workers }
}

fn fixture() -> Fixture {
    fixture_with(|s3| Arc::new(s3))
}

impl Fixture {
    /// Keys in the bucket, without the prefix.
    fn keys(&self) -> Vec<String> {
        let prefix = format!("{PREFIX}/");
        s3_harness::shared()
            .keys(&self.bucket)
            .into_iter()
            .map(|k| k.strip_prefix(&prefix).unwrap_or(&k).to_owned())
            .collect()
    }

    /// Uploads the local file `local` as `path`, through the storage.
    async fn upload(&self, local: &Path, path: &str) {
        let file = tokio::fs::File::open(local).await.unwrap();
        let body: ByteStream = Box::pin(tokio_util::io::ReaderStream::new(file));
        let staged =
            self.jobs.storage().put(path, body, PutOptions { create_only: false, max_bytes: u64::MAX }).await.unwrap();
        staged.commit().await.unwrap();
    }

    async fn submit(&self, command: &str) -> Job {
        self.jobs.submit(command, SubmitOptions::default()).await.unwrap()
    }

    async fn finished(&self, id: &JobId) -> Job {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let job = self.store.get(id).await.unwrap().unwrap();
            if job.status.is_finished() {
                return job;
            }
            assert!(Instant::now() < deadline, "not finished: {job:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What is left in the data directory's staging area.
    fn stages(&self) -> Vec<String> {
        match std::fs::read_dir(self.data.path().join(jobs::staging::STAGING_DIR)) {
            Ok(entries) => entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Waits (with a deadline) until no stage is left: a stage is removed when its run ends.
    async fn no_stages_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.stages().is_empty() {
            assert!(Instant::now() < deadline, "stages left: {:?}", self.stages());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One second of 160x120 testsrc (H.264) with a sine (AAC), made by ffmpeg's lavfi sources.
fn make_clip(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("clip.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=2:size=160x120:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=duration=2:sample_rate=44100", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

/// Every phase a job's progress events carried, in order, without repeats.
fn phases(events: &mut tokio::sync::broadcast::Receiver<Published>, id: &JobId) -> Vec<Phase> {
    let mut seen: Vec<Phase> = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::Progress(p) = event.event()
            && p.job == *id
            && let Some(phase) = p.progress.phase
            && seen.last() != Some(&phase)
        {
            seen.push(phase);
        }
    }
    seen
}

#[tokio::test]
async fn a_staged_job_downloads_its_inputs_runs_on_local_files_and_uploads_its_outputs() {
    let fx = fixture();
    let local = tempfile::tempdir().unwrap();
    fx.upload(&make_clip(local.path()), "in/clip.mp4").await;
    let mut events = fx.jobs.events().subscribe_all();
    let job = fx.submit("-i in/clip.mp4 -map 0 -c copy out/copy.mkv").await;
    let done = fx.finished(&job.id).await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert_eq!(done.output_files, ["out/copy.mkv"]);
    assert_eq!(done.outputs.len(), 1);
    assert_eq!(done.outputs[0].path, "out/copy.mkv");
    assert!(done.outputs[0].size_bytes > 1000);
    // The stored progress is ffmpeg's last, without a phase once done.
    let progress = done.progress.expect("progress");
    assert!(progress.frame.unwrap_or(0) > 0 && progress.phase.is_none(), "{progress:?}");
    assert_eq!(phases(&mut events, &job.id), [Phase::Downloading, Phase::Running, Phase::Uploading]);
    // The output is in the bucket, whole; the input was not uploaded again; nothing else.
    assert_eq!(fx.keys(), ["in/clip.mp4", "out/copy.mkv"]);
    let stored = s3_harness::shared().object(&fx.bucket, &format!("{PREFIX}/out/copy.mkv")).unwrap();
    assert_eq!(stored.len() as u64, done.outputs[0].size_bytes);
    // ffmpeg never wrote into the data directory itself, and the stage is gone.
    fx.no_stages_left().await;
    assert!(!fx.data.path().join("out").exists() && !fx.data.path().join("in").exists());
}

/// Files ffmpeg derives from the names it was given are the run's outputs too: HLS segments
/// beside their playlist, and two-pass logs, which the second pass (another job) reads back.
#[tokio::test]
async fn hls_segments_and_pass_logs_are_uploaded_and_staged_for_the_next_pass() {
    let fx = fixture();
    let local = tempfile::tempdir().unwrap();
    fx.upload(&make_clip(local.path()), "in/clip.mp4").await;
    let hls = fx.submit("-i in/clip.mp4 -c copy -f hls -hls_time 1 -hls_list_size 0 hls/index.m3u8").await;
    let pass1 = fx
        .submit("-i in/clip.mp4 -an -c:v libx264 -preset ultrafast -b:v 100k -pass 1 -passlogfile logs/two -f null -")
        .await;
    for id in [&hls.id, &pass1.id] {
        let done = fx.finished(id).await;
        assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    }
    let keys = fx.keys();
    assert!(keys.contains(&"hls/index.m3u8".to_owned()) && keys.contains(&"hls/index0.ts".to_owned()), "{keys:?}");
    assert!(keys.contains(&"logs/two-0.log".to_owned()), "{keys:?}");
    // The playlist names only segments that are in the bucket.
    let playlist = s3_harness::shared().object(&fx.bucket, &format!("{PREFIX}/hls/index.m3u8")).unwrap();
    let playlist = String::from_utf8(playlist).unwrap();
    for segment in playlist.lines().filter(|l| l.ends_with(".ts")) {
        assert!(keys.contains(&format!("hls/{segment}")), "{segment} missing: {keys:?}");
    }
    // Pass 2 reads pass 1's log (without it libx264 fails: it cannot open the stats file).
    let pass2 = fx
        .submit("-i in/clip.mp4 -an -c:v libx264 -preset ultrafast -b:v 100k -pass 2 -passlogfile logs/two out/two.mp4")
        .await;
    let done = fx.finished(&pass2.id).await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert!(fx.keys().contains(&"out/two.mp4".to_owned()));
    fx.no_stages_left().await;
}

#[tokio::test]
async fn a_failed_job_uploads_nothing_and_names_files_as_the_client_does() {
    let fx = fixture();
    let job = fx.submit("-i in/missing.mp4 -c copy out/x.mkv").await;
    let done = fx.finished(&job.id).await;
    assert_eq!(done.status, JobStatus::Failed);
    let error = done.error.unwrap();
    assert!(error.contains("in/missing.mp4") && error.contains("No such file"), "{error}");
    assert!(
        !error.contains(jobs::staging::STAGING_DIR) && !error.contains(&fx.data.path().display().to_string()),
        "{error}"
    );
    let log = fx.jobs.log(&job.id).await.unwrap();
    assert!(!log.contains(jobs::staging::STAGING_DIR), "{log}");
    // ffmpeg failing with one output begun (H.264 cannot go into WAV): nothing reaches the
    // bucket.
    let local = tempfile::tempdir().unwrap();
    fx.upload(&make_clip(local.path()), "in/clip.mp4").await;
    let job = fx.submit("-i in/clip.mp4 -c copy out/ok.mkv -map 0:v -c:v copy out/bad.wav").await;
    let done = fx.finished(&job.id).await;
    assert_eq!(done.status, JobStatus::Failed, "{done:?}");
    assert_eq!(fx.keys(), ["in/clip.mp4"]);
    fx.no_stages_left().await;
}

/// The bucket with one fault: every call goes to `inner` but the one `fault` breaks.
#[derive(Debug)]
struct Faulty {
    inner: S3Storage,
    fault: Fault,
}

#[derive(Debug)]
enum Fault {
    /// Every put of a path ending in this suffix is refused (after reading the body): an
    /// upload failing half-way through a job's outputs.
    RefusePuts(&'static str),
    /// Reads never start: a download that hangs.
    HangingReads,
}

#[async_trait]
impl Storage for Faulty {
    async fn check_path(&self, path: &str) -> Result<String, StorageError> {
        self.inner.check_path(path).await
    }
    async fn put(&self, path: &str, body: ByteStream, options: PutOptions) -> Result<Box<dyn StagedPut>, StorageError> {
        match self.fault {
            Fault::RefusePuts(suffix) if path.ends_with(suffix) => {
                Err(StorageError::Io { path: path.to_owned(), source: std::io::Error::other("the bucket refused it") })
            }
            _ => self.inner.put(path, body, options).await,
        }
    }
    async fn open(&self, path: &str) -> Result<Box<dyn StoredFile>, StorageError> {
        match self.fault {
            Fault::HangingReads => std::future::pending().await,
            _ => self.inner.open(path).await,
        }
    }
    async fn head(&self, path: &str) -> Result<FileMeta, StorageError> {
        self.inner.head(path).await
    }
    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, StorageError> {
        self.inner.list(prefix, after, limit).await
    }
    async fn is_directory(&self, path: &str) -> Result<bool, StorageError> {
        self.inner.is_directory(path).await
    }
    async fn delete(&self, path: &str, recursive: bool) -> Result<(), StorageError> {
        self.inner.delete(path, recursive).await
    }
}

#[tokio::test]
async fn an_upload_failing_half_way_leaves_none_of_the_jobs_outputs() {
    // Playlists go last: the segments are uploaded, then the playlist is refused.
    let fx = fixture_with(|inner| Arc::new(Faulty { inner, fault: Fault::RefusePuts(".m3u8") }));
    let local = tempfile::tempdir().unwrap();
    fx.upload(&make_clip(local.path()), "in/clip.mp4").await;
    let job = fx.submit("-i in/clip.mp4 -c copy -f hls -hls_time 1 hls/index.m3u8").await;
    let done = fx.finished(&job.id).await;
    assert_eq!(done.status, JobStatus::Failed);
    let error = done.error.unwrap();
    assert!(
        error.contains("uploading") && error.contains("hls/index.m3u8") && error.contains("none were kept"),
        "{error}"
    );
    assert_eq!(fx.keys(), ["in/clip.mp4"], "the segments uploaded before the failure were deleted");
    fx.no_stages_left().await;
}

#[tokio::test]
async fn a_job_cancelled_while_downloading_is_cancelled_and_its_stage_removed() {
    let fx = fixture_with(|inner| Arc::new(Faulty { inner, fault: Fault::HangingReads }));
    let job = fx.submit("-i in/clip.mp4 -c copy out/x.mkv").await;
    // The record shows the phase while it downloads.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = fx.store.get(&job.id).await.unwrap().unwrap();
        if job.progress.as_ref().and_then(|p| p.phase) == Some(Phase::Downloading) {
            break;
        }
        assert!(Instant::now() < deadline, "never downloading: {job:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fx.stages().len(), 1);
    fx.jobs.cancel(&job.id).await.unwrap();
    let done = fx.finished(&job.id).await;
    assert_eq!(done.status, JobStatus::Cancelled, "{done:?}");
    fx.no_stages_left().await;
    assert!(fx.keys().is_empty());
}

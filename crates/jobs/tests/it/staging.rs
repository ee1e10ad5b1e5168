//! Staging with the files in a bucket: a real S3-compatible server in its own process (moto's,
//! `s3-harness`), the real ffmpeg on lavfi-generated media. The bucket is checked with raw S3
//! requests, the stage directory on disk.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ffmpeg_core::sandbox::Sandbox;
use jobs::events::{Event, Published};
use jobs::model::Phase;
use jobs::storage::{ByteStream, PutOptions, S3Config, S3Storage, StagedPut, Storage, StorageError, StoredFile};
use jobs::store::JobStore;
use jobs::{
    FfmpegConfig, FfmpegRunner, Job, JobId, JobStatus, Jobs, JobsConfig, MemoryStore, Runner, Shutdown, SubmitError,
    SubmitOptions,
};

use crate::fixture::{Intercept, Intercepted};

const PREFIX: &str = "media";

/// A client of `bucket` on the server at `endpoint` (the test server, or a proxy to it).
fn s3_storage_at(bucket: &str, endpoint: &str) -> S3Storage {
    S3Storage::new(&s3_config_at(bucket, endpoint)).unwrap()
}

/// The settings of [`s3_storage_at`].
fn s3_config_at(bucket: &str, endpoint: &str) -> S3Config {
    S3Config {
        endpoint: Some(endpoint.to_owned()),
        access_key_id: Some(s3_harness::ACCESS_KEY_ID.to_owned()),
        secret_access_key: Some(s3_harness::SECRET_ACCESS_KEY.to_owned()),
        region: s3_harness::REGION.to_owned(),
        allow_http: true,
        ..S3Config::from_url(&format!("s3://{bucket}/{PREFIX}")).unwrap()
    }
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
    fixture_at(s3_harness::shared().endpoint(), wrap)
}

/// A fixture whose bucket client talks to `endpoint` (a [`s3_harness::Proxy`]).
fn fixture_at(endpoint: &str, wrap: impl FnOnce(S3Storage) -> Arc<dyn Storage>) -> Fixture {
    fixture_full(endpoint, wrap, 1)
}

/// A fixture running `concurrency` jobs at once.
fn fixture_concurrent(concurrency: usize) -> Fixture {
    fixture_full(s3_harness::shared().endpoint(), |s3| Arc::new(s3), concurrency)
}

fn fixture_full(endpoint: &str, wrap: impl FnOnce(S3Storage) -> Arc<dyn Storage>, concurrency: usize) -> Fixture {
    fixture_over(|bucket| wrap(s3_storage_at(bucket, endpoint)), concurrency)
}

/// A fixture running `concurrency` jobs at once, its storage made by `storage` for a new
/// bucket (named).
fn fixture_over(storage: impl FnOnce(&str) -> Arc<dyn Storage>, concurrency: usize) -> Fixture {
    let bucket = s3_harness::shared().bucket();
    let data = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(data.path()).unwrap();
    sandbox.deny(jobs::staging::STAGING_DIR);
    let runner: Arc<dyn Runner> = Arc::new(FfmpegRunner::new(FfmpegConfig::new("ffmpeg", data.path())));
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let config = JobsConfig {
        concurrency,
        idle_wait: Duration::from_millis(100),
        remote_storage: Some(storage(&bucket)),
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

    /// Every key in the bucket under the prefix (the temporary area's included).
    fn raw_keys(&self) -> Vec<String> {
        let mut keys = self.keys();
        keys.sort();
        keys
    }

    /// The bytes of the object at `path`.
    fn object(&self, path: &str) -> Vec<u8> {
        s3_harness::shared().object(&self.bucket, &format!("{PREFIX}/{path}")).unwrap_or_else(|| panic!("no {path}"))
    }

    /// Puts `bytes` at `path`, through the storage.
    async fn put_bytes(&self, path: &str, bytes: &[u8]) {
        let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::copy_from_slice(bytes))]));
        let staged = self
            .jobs
            .storage()
            .put(path, body, PutOptions { create_only: false, max_bytes: u64::MAX, conditional: false })
            .await
            .unwrap();
        staged.commit().await.unwrap();
    }

    /// Uploads the local file `local` as `path`, through the storage.
    async fn upload(&self, local: &Path, path: &str) {
        let file = tokio::fs::File::open(local).await.unwrap();
        let body: ByteStream = Box::pin(tokio_util::io::ReaderStream::new(file));
        let staged = self
            .jobs
            .storage()
            .put(path, body, PutOptions { create_only: false, max_bytes: u64::MAX, conditional: false })
            .await
            .unwrap();
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

/// A pass-log prefix that names a directory in the bucket (tester finding L13): ffmpeg writes
/// `PREFIX-N.log` beside it, which is uploaded as such (the directory's files untouched, none
/// staged), and read back by the second pass. Pass 1 run again rewrites its logs, staged in as
/// its reads: they are its outputs again, uploaded and listed (they were neither, so the
/// bucket kept the first run's logs).
#[tokio::test]
async fn pass_logs_beside_a_directory_of_their_prefix_are_uploaded_and_read_back() {
    let fx = fixture();
    let local = tempfile::tempdir().unwrap();
    fx.upload(&make_clip(local.path()), "in/clip.mp4").await;
    fx.put_bytes("logs/two/notes.txt", b"a file below the prefix").await;
    let pass1 = "-i in/clip.mp4 -an -c:v libx264 -preset ultrafast -b:v 100k -pass 1 -passlogfile logs/two -f null -";
    // `-preset ultrafast` turns x264's macroblock tree off: no `.mbtree`.
    let logs = ["logs/two-0.log"];
    for run in ["first", "again"] {
        let job = fx.submit(pass1).await;
        let done = fx.finished(&job.id).await;
        assert_eq!(done.status, JobStatus::Completed, "{run}: {:?}", done.error);
        assert_eq!(done.output_files, logs, "{run}");
        assert_eq!(fx.raw_keys(), ["in/clip.mp4", "logs/two-0.log", "logs/two/notes.txt"], "{run}");
    }
    let pass2 = fx
        .submit("-i in/clip.mp4 -an -c:v libx264 -preset ultrafast -b:v 100k -pass 2 -passlogfile logs/two o.mp4")
        .await;
    let done = fx.finished(&pass2.id).await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert_eq!(done.output_files, ["o.mp4"]);
    assert_eq!(fx.object("logs/two/notes.txt"), b"a file below the prefix");
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

/// Which storage call a [`Faulty`] storage fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Opening an input to download it.
    Open,
    /// Uploading an output to its temporary name.
    PutTemp,
    /// Putting an uploaded output in place.
    Publish,
}

/// How a [`Faulty`] storage fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The call goes to a bucket endpoint where nothing listens: the real client's error (a
    /// refused connection, after its quick retries), which may pass.
    Unreachable,
    /// The bucket refuses the request for good.
    Refused,
    /// The call never ends (a read that never starts).
    Hang,
}

/// What makes the test bucket's storage fail at `step` for paths ending in `suffix`, the first
/// `times` times.
#[derive(Debug)]
struct Faulty {
    dead: S3Storage,
    step: Step,
    suffix: &'static str,
    fault: Fault,
    times: AtomicUsize,
}

fn faulty(step: Step, suffix: &'static str, fault: Fault, times: usize) -> impl FnOnce(S3Storage) -> Arc<dyn Storage> {
    move |inner| {
        let faulty = Faulty { dead: dead_storage(), step, suffix, fault, times: AtomicUsize::new(times) };
        Intercepted::wrap(Arc::new(inner), faulty)
    }
}

/// A client of a bucket at an address where nothing listens.
fn dead_storage() -> S3Storage {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = S3Config {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        access_key_id: Some(s3_harness::ACCESS_KEY_ID.to_owned()),
        secret_access_key: Some(s3_harness::SECRET_ACCESS_KEY.to_owned()),
        region: s3_harness::REGION.to_owned(),
        allow_http: true,
        ..S3Config::from_url(&format!("s3://dead/{PREFIX}")).unwrap()
    };
    S3Storage::new(&config).unwrap()
}

impl Faulty {
    /// The storage this call goes to while failures are left for `step` on `path`: the dead
    /// one, a refusal, or no answer ever; else `inner`.
    async fn target<'a>(
        &'a self,
        inner: &'a dyn Storage,
        step: Step,
        path: &str,
    ) -> Result<&'a dyn Storage, StorageError> {
        let fails = step == self.step
            && path.ends_with(self.suffix)
            && self.times.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        match (fails, self.fault) {
            (false, _) => Ok(inner),
            (true, Fault::Unreachable) => Ok(&self.dead),
            (true, Fault::Refused) => {
                Err(StorageError::Io { path: path.to_owned(), source: std::io::Error::other("the bucket refused it") })
            }
            (true, Fault::Hang) => std::future::pending().await,
        }
    }
}

#[async_trait]
impl Intercept for Faulty {
    async fn open(&self, inner: &dyn Storage, path: &str) -> Result<Box<dyn StoredFile>, StorageError> {
        self.target(inner, Step::Open, path).await?.open(path).await
    }
    async fn put_temp(&self, inner: &dyn Storage, temp: &str, body: ByteStream) -> Result<u64, StorageError> {
        self.target(inner, Step::PutTemp, temp).await?.put_temp(temp, body).await
    }
    async fn publish_temp(
        &self,
        inner: &dyn Storage,
        temp: &str,
        path: &str,
        create_only: bool,
    ) -> Result<(), StorageError> {
        self.target(inner, Step::Publish, path).await?.publish_temp(temp, path, create_only).await
    }
}

/// An HLS job whose set replaces one in the bucket (its playlist and first segment), run with
/// a refusal at `step` for the playlist (the last file it uploads and publishes), which fails
/// once and changes nothing in the bucket; its error.
async fn hls_job_over_an_older_set(step: Step) -> String {
    let fx = fixture_with(faulty(step, ".m3u8", Fault::Refused, usize::MAX));
    let local = tempfile::tempdir().unwrap();
    fx.upload(&make_clip(local.path()), "in/clip.mp4").await;
    let (playlist, segment) = (b"#EXTM3U\nold playlist\n".to_vec(), b"old segment bytes".to_vec());
    fx.put_bytes("hls/index.m3u8", &playlist).await;
    fx.put_bytes("hls/index0.ts", &segment).await;
    let job = fx.submit("-i in/clip.mp4 -c copy -f hls -hls_time 1 hls/index.m3u8").await;
    let done = fx.finished(&job.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Failed, 1), "a refusal is not retried: {done:?}");
    let error = done.error.unwrap();
    // The older set is whole and alone; the run's temporary names are gone.
    assert_eq!(fx.raw_keys(), ["hls/index.m3u8", "hls/index0.ts", "in/clip.mp4"]);
    assert_eq!(fx.object("hls/index0.ts"), segment, "the file the job would have replaced is intact");
    assert_eq!(fx.object("hls/index.m3u8"), playlist);
    fx.no_stages_left().await;
    error
}

#[tokio::test]
async fn a_failed_upload_changes_nothing_in_the_bucket_not_even_a_file_it_would_replace() {
    // The segments upload, then the playlist (last) is refused for good.
    let error = hls_job_over_an_older_set(Step::PutTemp).await;
    assert!(
        error.contains("uploading")
            && error.contains("hls/index.m3u8")
            && error.contains("no file in the storage was changed"),
        "{error}"
    );
}

#[tokio::test]
async fn a_publish_failing_part_way_is_undone_and_puts_back_what_it_replaced() {
    // Every output is uploaded; putting the playlist (last) in place is refused, after the
    // segments were: index0.ts had replaced the older one, and is put back; the new segments
    // are gone.
    let error = hls_job_over_an_older_set(Step::Publish).await;
    assert!(
        error.contains("in place failed, and what was done was undone") && error.contains("hls/index.m3u8"),
        "{error}"
    );
}

/// A bucket that does not answer (a real client error: refused connections) is retried per
/// the attempts a job has: the job goes back to `queued`, why and until when in its
/// `waiting_reason`, with no error; a job whose every attempt fails says so.
#[tokio::test]
async fn an_unreachable_bucket_is_retried_up_to_max_attempts() {
    // Upload: the first attempt's output cannot reach the bucket, the second one can.
    let fx = fixture_with(faulty(Step::PutTemp, "out/copy.mkv", Fault::Unreachable, 1));
    let local = tempfile::tempdir().unwrap();
    fx.upload(&make_clip(local.path()), "in/clip.mp4").await;
    let mut events = fx.jobs.events().subscribe_all();
    let job = fx.submit("-i in/clip.mp4 -map 0 -c copy out/copy.mkv").await;
    let done = fx.finished(&job.id).await;
    assert_eq!((done.status, done.attempts, done.error.as_deref()), (JobStatus::Completed, 2, None), "{done:?}");
    assert_eq!(fx.raw_keys(), ["in/clip.mp4", "out/copy.mkv"]);
    // It went back in the queue once, saying why and until when, with no error.
    let mut requeued = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::Status(job) = event.event()
            && job.status == JobStatus::Queued
            && job.attempts == 1
        {
            assert_eq!(job.error, None, "{job:?}");
            assert!(job.retry_at.is_some(), "{job:?}");
            requeued.push(job.waiting_reason.clone().unwrap_or_default());
        }
    }
    assert!(
        requeued.len() == 1
            && requeued[0].contains(&format!("the storage `s3://{}/{PREFIX}` is unavailable", fx.bucket))
            && requeued[0].contains("attempt 1 of 2 failed")
            && requeued[0].contains("unavailable for `out/copy.mkv`")
            && requeued[0].contains("; next attempt at "),
        "{requeued:?}"
    );

    // Download: every attempt fails; the job fails after the second, naming the reason.
    let fx = fixture_with(faulty(Step::Open, "clip.mp4", Fault::Unreachable, usize::MAX));
    fx.upload(&make_clip(local.path()), "in/clip.mp4").await;
    let job = fx.submit("-i in/clip.mp4 -map 0 -c copy out/copy.mkv").await;
    let done = fx.finished(&job.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Failed, 2), "{done:?}");
    let error = done.error.unwrap();
    assert!(error.contains("downloading") && error.contains("attempt 2 of 2"), "{error}");
    assert_eq!(fx.raw_keys(), ["in/clip.mp4"]);
    fx.no_stages_left().await;
}

/// Records the files read whole from a storage (what staging downloads), by path; a read of a
/// part (a submission looking for a concat list's header) is not a download.
#[derive(Debug, Default)]
struct CountDownloads(Arc<std::sync::Mutex<Vec<String>>>);

#[async_trait]
impl Intercept for CountDownloads {
    async fn open(&self, inner: &dyn Storage, path: &str) -> Result<Box<dyn StoredFile>, StorageError> {
        let file = inner.open(path).await?;
        Ok(Box::new(Counted { file, path: path.to_owned(), downloads: Arc::clone(&self.0) }))
    }
}

/// A file opened through [`CountDownloads`].
#[derive(Debug)]
struct Counted {
    file: Box<dyn StoredFile>,
    path: String,
    downloads: Arc<std::sync::Mutex<Vec<String>>>,
}

impl StoredFile for Counted {
    fn meta(&self) -> &jobs::storage::FileMeta {
        self.file.meta()
    }
    fn read(self: Box<Self>, range: std::ops::Range<u64>) -> ByteStream {
        if range == (0..self.file.meta().size) {
            self.downloads.lock().unwrap().push(self.path.clone());
        }
        self.file.read(range)
    }
    fn try_clone(&self) -> std::io::Result<Box<dyn StoredFile>> {
        self.file.try_clone()
    }
}

/// `-n`: an output that exists only in the bucket makes the job fail as ffmpeg does in a
/// data directory, and is never replaced; a new output is published. The refused jobs download
/// nothing: the check comes before staging (tester finding L7, S3 side: every input was
/// downloaded first).
#[tokio::test]
async fn no_overwrite_sees_outputs_that_exist_only_in_the_bucket() {
    let opened = Arc::new(std::sync::Mutex::new(Vec::new()));
    let counting = CountDownloads(Arc::clone(&opened));
    let fx = fixture_with(move |s3| Intercepted::wrap(Arc::new(s3), counting));
    let downloaded = || std::mem::take(&mut *opened.lock().unwrap());
    let local = tempfile::tempdir().unwrap();
    fx.upload(&make_clip(local.path()), "in/clip.mp4").await;
    fx.put_bytes("out/old.mkv", b"older output").await;
    let job = fx.submit("-n -i in/clip.mp4 -map 0 -c copy out/old.mkv").await;
    let done = fx.finished(&job.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Failed, 1), "{done:?}");
    assert_eq!(done.error.as_deref(), Some("File 'out/old.mkv' already exists. Exiting."), "{done:?}");
    assert_eq!(fx.object("out/old.mkv"), b"older output");
    assert_eq!(downloaded(), Vec::<String>::new(), "a job refused by `-n` downloads nothing");
    // An HLS playlist and a DASH manifest (muxers that open their files themselves, which
    // ffmpeg 5.1's `-n` does not check): the same failure before ffmpeg runs, not a refusal
    // at publish after the whole encode (tester finding L7); no segment reaches the bucket.
    fx.put_bytes("nn/p.m3u8", b"#EXTM3U\n").await;
    fx.put_bytes("dd/m.mpd", b"<MPD/>").await;
    for (command, named) in [
        ("-n -i in/clip.mp4 -t 1 -f hls -hls_time 0.5 nn/p.m3u8", "nn/p.m3u8"),
        ("-n -i in/clip.mp4 -t 1 -f dash dd/m.mpd", "dd/m.mpd"),
    ] {
        let job = fx.submit(command).await;
        let done = fx.finished(&job.id).await;
        assert_eq!((done.status, done.attempts), (JobStatus::Failed, 1), "{done:?}");
        assert_eq!(done.error, Some(format!("File '{named}' already exists. Exiting.")), "{done:?}");
        let log = fx.jobs.log(&job.id).await.unwrap();
        assert!(!log.contains("Output #0"), "ffmpeg did not run: {log}");
        assert_eq!(downloaded(), Vec::<String>::new(), "{command}: nothing downloaded");
    }
    assert_eq!(fx.object("nn/p.m3u8"), b"#EXTM3U\n");
    assert_eq!(fx.object("dd/m.mpd"), b"<MPD/>");
    assert_eq!(fx.raw_keys(), ["dd/m.mpd", "in/clip.mp4", "nn/p.m3u8", "out/old.mkv"]);
    let job = fx.submit("-n -i in/clip.mp4 -map 0 -c copy out/new.mkv").await;
    let done = fx.finished(&job.id).await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    assert_eq!(downloaded(), ["in/clip.mp4"], "a job that runs downloads its input");
    assert_eq!(fx.raw_keys(), ["dd/m.mpd", "in/clip.mp4", "nn/p.m3u8", "out/new.mkv", "out/old.mkv"]);
    fx.no_stages_left().await;
}

/// The temporary area: names of runs that are over are swept, a running attempt's are kept,
/// a crashed part-way publish of a job queued again is undone from its backups, and no
/// listing or files API path reaches the area.
#[tokio::test]
async fn the_sweep_undoes_and_removes_what_runs_that_are_over_left_only() {
    let fx = fixture_with(|s3| Arc::new(s3));
    // No worker takes these: the store's states are set by hand.
    fx.shutdown.stop_claiming.cancel();
    let storage = fx.jobs.storage();
    let insert = |command: &str| fx.store.insert(command.to_owned(), SubmitOptions::default());
    let running = insert("-i a.mp4 b.mp4").await.unwrap();
    let finished = insert("-i c.mp4 d.mp4").await.unwrap();
    let requeued = insert("-i e.mp4 f.mp4").await.unwrap();
    for _ in 0..3 {
        fx.store.claim_next(&[]).await.unwrap().unwrap();
    }
    fx.store.finish(&finished.id, jobs::store::Outcome::Failed { error: "x".to_owned() }, "").await.unwrap();
    // `requeued`'s run crashed after putting f.mp4 in place (its backup holds the older one);
    // recovery put the job back in the queue.
    fx.store.recover(5).await.unwrap();
    assert_eq!(fx.store.claim_next(&[]).await.unwrap().unwrap().id, running.id);
    let body = |bytes: &'static [u8]| -> ByteStream {
        Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(bytes))]))
    };
    fx.put_bytes("f.mp4", b"the crashed run's output").await;
    // `running` runs attempt 2 now: attempt 1's names are over, attempt 2's are live.
    let live = format!("publish/{}-2-aaaa/out/b.mp4", running.id);
    let earlier = format!("publish/{}-1-bbbb/out/b.mp4", running.id);
    let over = format!("publish/{}-1-cccc/out/d.mp4", finished.id);
    let backup = format!("publish/{}-1-dddd/old/f.mp4", requeued.id);
    let output = format!("publish/{}-1-dddd/out/g.mp4", requeued.id);
    let fresh_upload = "uploads/0123456789abcdef";
    for temp in [live.as_str(), &earlier, &over, &output, fresh_upload] {
        storage.put_temp(temp, body(b"partial")).await.unwrap();
    }
    storage.put_temp(&backup, body(b"the older f.mp4")).await.unwrap();
    // `finished` failed after its run put h.mp4 in place (a lost node's job ended by the
    // reaper): the user's older h.mp4 goes back too.
    fx.put_bytes("h.mp4", b"the failed run's output").await;
    let failed_backup = format!("publish/{}-1-cccc/old/h.mp4", finished.id);
    storage.put_temp(&failed_backup, body(b"the older h.mp4")).await.unwrap();
    // Hidden from listings and from the files API.
    let listed: Vec<String> = storage.list("", None, 100).await.unwrap().files.into_iter().map(|f| f.path).collect();
    assert_eq!(listed, ["f.mp4", "h.mp4"]);
    let reserved = storage.head(&format!("{}/{over}", jobs::storage::TEMP_AREA)).await;
    assert!(matches!(reserved, Err(StorageError::InvalidPath { .. })), "{reserved:?}");

    let sweep = fx.jobs.sweep_temp_area().await.unwrap();
    assert_eq!(sweep, jobs::service::TempSweep { restored: 2, outputs: 3, uploads: 0, multipart: 0 });
    let left: Vec<String> = storage.list_temps("").await.unwrap().into_iter().map(|f| f.path).collect();
    assert_eq!(left, [live.clone(), fresh_upload.to_owned()]);
    assert_eq!(fx.object("f.mp4"), b"the older f.mp4");
    assert_eq!(fx.object("h.mp4"), b"the older h.mp4");
}

#[tokio::test]
async fn a_job_cancelled_while_downloading_is_cancelled_and_its_stage_removed() {
    let fx = fixture_with(faulty(Step::Open, "", Fault::Hang, usize::MAX));
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

/// A cancel while the outputs upload stops the upload: the job ends cancelled, the file an
/// output would have replaced keeps its content, and no temporary name is left (tester F15: the
/// job used to complete and replace it).
#[tokio::test]
async fn a_job_cancelled_while_uploading_is_cancelled_and_replaces_nothing() {
    let fx = fixture_with(faulty(Step::PutTemp, ".mkv", Fault::Hang, usize::MAX));
    let local = tempfile::tempdir().unwrap();
    fx.upload(&make_clip(local.path()), "in/clip.mp4").await;
    fx.put_bytes("out/x.mkv", b"the user's file").await;
    let job = fx.submit("-i in/clip.mp4 -c copy out/x.mkv").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = fx.store.get(&job.id).await.unwrap().unwrap();
        if job.progress.as_ref().and_then(|p| p.phase) == Some(Phase::Uploading) {
            break;
        }
        assert!(Instant::now() < deadline, "never uploading: {job:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fx.jobs.cancel(&job.id).await.unwrap();
    let done = fx.finished(&job.id).await;
    assert_eq!(done.status, JobStatus::Cancelled, "{done:?}");
    assert_eq!(fx.object("out/x.mkv"), b"the user's file");
    let temps = fx.jobs.storage().list_temps("").await.unwrap();
    assert!(temps.is_empty(), "{temps:?}");
    fx.no_stages_left().await;
}

/// Waits (with a deadline) until job `id` uploads its outputs: its ffmpeg has exited.
async fn until_uploading(fx: &Fixture, id: &JobId) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = fx.store.get(id).await.unwrap().unwrap();
        if job.progress.as_ref().and_then(|p| p.phase) == Some(Phase::Uploading) {
            return;
        }
        assert!(Instant::now() < deadline, "never uploading: {job:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// With the files in a bucket, a job's ffmpeg reporting its end (`progress=end`) frees neither
/// its slot nor its reservation: both are held until its outputs are uploaded and published.
/// (1) Two slots, the first job's upload held: a later job that conflicts with nothing runs to
/// its end in the other slot (so claims passed after the first job's ffmpeg ended), while the
/// job reading the first one's output stays queued; it starts only after the first job ended.
/// (2) One slot: nothing else starts while a job uploads.
#[tokio::test]
async fn a_staged_job_holds_its_slot_and_reservation_until_its_outputs_are_uploaded() {
    // (1) The reservation.
    let fx = fixture_full(s3_harness::shared().endpoint(), faulty(Step::PutTemp, ".mkv", Fault::Hang, usize::MAX), 2);
    let local = tempfile::tempdir().unwrap();
    fx.upload(&make_clip(local.path()), "in/clip.mp4").await;
    let first = fx.submit("-i in/clip.mp4 -c copy out/first.mkv").await;
    until_uploading(&fx, &first.id).await;
    let reader = fx.submit("-i out/first.mkv -c copy out/reader.mp4").await;
    let other = fx.submit("-i in/clip.mp4 -c copy out/other.mp4").await;
    let other = fx.finished(&other.id).await;
    assert_eq!(other.status, JobStatus::Completed, "{other:?}");
    let waiting = fx.store.get(&reader.id).await.unwrap().unwrap();
    assert_eq!(waiting.status, JobStatus::Queued, "the reader started while its input was uploading: {waiting:?}");
    fx.jobs.cancel(&first.id).await.unwrap();
    let first = fx.finished(&first.id).await;
    let reader = fx.finished(&reader.id).await;
    assert_eq!(first.status, JobStatus::Cancelled, "{first:?}");
    assert!(reader.started_at >= first.completed_at, "{reader:?} {first:?}");
    drop(fx);

    // (2) The slot: a bounded look (a slot freed at the end block would start the other job
    // within milliseconds of its submission).
    let fx = fixture_full(s3_harness::shared().endpoint(), faulty(Step::PutTemp, ".mkv", Fault::Hang, usize::MAX), 1);
    fx.upload(&local.path().join("clip.mp4"), "in/clip.mp4").await;
    let first = fx.submit("-i in/clip.mp4 -c copy out/first.mkv").await;
    until_uploading(&fx, &first.id).await;
    let other = fx.submit("-i in/clip.mp4 -c copy out/other.mp4").await;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let job = fx.store.get(&other.id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Queued, "another job started while the only slot's job uploads: {job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fx.jobs.cancel(&first.id).await.unwrap();
    let first = fx.finished(&first.id).await;
    let other = fx.finished(&other.id).await;
    assert_eq!(other.status, JobStatus::Completed, "{other:?}");
    assert!(other.started_at >= first.completed_at, "{other:?} {first:?}");
}

/// The length in seconds of the media file at `path`, by ffprobe.
fn duration_of(path: &Path) -> f64 {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A concat list's entries are downloaded too, relative to the list's directory, and so are
/// those of a list it names (recognised by its `ffconcat` header, as ffmpeg does); an entry
/// that leaves the data directory fails the job before ffmpeg starts, naming it and the rule,
/// and nothing reaches the bucket.
#[tokio::test]
async fn concat_lists_entries_are_staged_and_checked_like_on_a_disk() {
    let fx = fixture();
    let local = tempfile::tempdir().unwrap();
    let clip = make_clip(local.path());
    for path in ["lists/parts/a.mp4", "lists/parts/b.mp4", "lists/more/c.mp4", "other/unused.mp4"] {
        fx.upload(&clip, path).await;
    }
    let write = |name: &str, text: &str| {
        let path = local.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    fx.upload(&write("all.txt", "file parts/a.mp4\nfile 'parts/b.mp4'\nfile more/inner.ffconcat\n"), "lists/all.txt")
        .await;
    fx.upload(&write("inner.ffconcat", "ffconcat version 1.0\nfile c.mp4\nfile c.mp4\n"), "lists/more/inner.ffconcat")
        .await;
    let job = fx.submit("-f concat -i lists/all.txt -c copy out/joined.mp4").await;
    let done = fx.finished(&job.id).await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    // Four 2 s clips: a, b, and c twice through the nested list.
    let joined = local.path().join("joined.mp4");
    std::fs::write(&joined, s3_harness::shared().object(&fx.bucket, &format!("{PREFIX}/out/joined.mp4")).unwrap())
        .unwrap();
    let seconds = duration_of(&joined);
    assert!((seconds - 8.0).abs() < 0.3, "joined {seconds} s");
    assert!(fx.keys().contains(&"out/joined.mp4".to_owned()));
    fx.no_stages_left().await;

    // An entry that climbs out of the data directory: refused with its rule, as on a disk.
    fx.upload(&write("bad.txt", "file parts/a.mp4\nfile ../../secret.mp4\n"), "lists/bad.txt").await;
    let job = fx.submit("-f concat -i lists/bad.txt -c copy out/bad.mp4").await;
    let done = fx.finished(&job.id).await;
    assert_eq!(done.status, JobStatus::Failed);
    let error = done.error.unwrap();
    assert!(
        error.contains("entry `../../secret.mp4` of concat list `lists/bad.txt`: path escapes the data directory"),
        "{error}"
    );
    assert!(!error.contains(jobs::staging::STAGING_DIR), "{error}");
    assert!(!fx.keys().iter().any(|k| k.starts_with("out/bad")), "{:?}", fx.keys());
    // A missing entry is ffmpeg's to report, by name, as on a disk.
    fx.upload(&write("gap.txt", "file parts/a.mp4\nfile parts/missing.mp4\n"), "lists/gap.txt").await;
    let job = fx.submit("-f concat -i lists/gap.txt -c copy out/gap.mp4").await;
    fx.finished(&job.id).await;
    let log = fx.jobs.log(&job.id).await.unwrap();
    assert!(log.contains("Impossible to open 'lists/parts/missing.mp4'"), "{log}");
    fx.no_stages_left().await;
}

/// The job's time limit covers its whole attempt on a bucket (tester F22: a 4 s job spent 20 s
/// uploading and completed): a download or an upload that does not end fails the job when the
/// limit runs out, naming the step, and a stopped upload changed nothing in the bucket.
#[tokio::test]
async fn the_time_limit_covers_downloading_and_uploading_and_names_the_step() {
    let limited = |seconds| SubmitOptions { timeout_seconds: Some(seconds), ..SubmitOptions::default() };
    let local = tempfile::tempdir().unwrap();
    let clip = make_clip(local.path());

    // The input's download never ends.
    let fx = fixture_with(faulty(Step::Open, "clip.mp4", Fault::Hang, usize::MAX));
    fx.upload(&clip, "in/clip.mp4").await;
    let job = fx.jobs.submit("-i in/clip.mp4 -map 0 -c copy out/x.mkv", limited(2)).await.unwrap();
    let done = fx.finished(&job.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Failed, 1), "{done:?}");
    let error = done.error.unwrap();
    assert!(error.contains("timed out after 2 s while downloading its inputs"), "{error}");
    assert_eq!(fx.raw_keys(), ["in/clip.mp4"]);
    fx.no_stages_left().await;

    // The output's upload never ends; the file it would replace stays whole.
    let fx = fixture_with(faulty(Step::PutTemp, ".mkv", Fault::Hang, usize::MAX));
    fx.upload(&clip, "in/clip.mp4").await;
    fx.put_bytes("out/x.mkv", b"the user's file").await;
    let job = fx.jobs.submit("-i in/clip.mp4 -map 0 -c copy out/x.mkv", limited(5)).await.unwrap();
    let done = fx.finished(&job.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Failed, 1), "{done:?}");
    let error = done.error.unwrap();
    assert!(
        error.contains("timed out after 5 s while uploading its outputs; no file in the storage was changed"),
        "{error}"
    );
    assert_eq!(fx.object("out/x.mkv"), b"the user's file");
    let temps = fx.jobs.storage().list_temps("").await.unwrap();
    assert!(temps.is_empty(), "{temps:?}");
    fx.no_stages_left().await;
}

/// `-hls_flags append_list` on a bucket (tester F23): ffmpeg reads the playlist it appends to,
/// so the existing one is staged in first; two runs end with one playlist naming every segment
/// of both, in the bucket, the second run's numbers following the first's.
#[tokio::test]
async fn an_hls_playlist_appended_to_keeps_its_entries_and_its_segment_numbers() {
    let fx = fixture();
    let local = tempfile::tempdir().unwrap();
    fx.upload(&make_clip(local.path()), "in/clip.mp4").await;
    for (run, flags) in [(1, "append_list"), (2, "+append_list")] {
        let command = format!(
            "-i in/clip.mp4 -c copy -f hls -hls_time 1 -hls_list_size 0 -hls_flags {flags} \
             -hls_segment_filename app/s_{run}_%03d.ts app/p.m3u8"
        );
        let done = fx.finished(&fx.submit(&command).await.id).await;
        assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    }
    let playlist = String::from_utf8(fx.object("app/p.m3u8")).unwrap();
    let segments: Vec<&str> = playlist.lines().filter(|l| l.ends_with(".ts")).collect();
    let number = |segment: &str| segment[4..7].parse::<u32>().unwrap();
    assert!(segments.first().is_some_and(|s| s.starts_with("s_1_000")), "{playlist}");
    let second: Vec<&&str> = segments.iter().filter(|s| s.starts_with("s_2_")).collect();
    assert!(!second.is_empty(), "the second run's segments are listed: {playlist}");
    let first_max = segments.iter().filter(|s| s.starts_with("s_1_")).map(|s| number(s)).max().unwrap();
    assert!(second.iter().all(|s| number(s) > first_max), "numbers continue: {playlist}");
    assert!(playlist.contains("#EXT-X-DISCONTINUITY"), "{playlist}");
    let keys = fx.keys();
    for segment in &segments {
        assert!(keys.contains(&format!("app/{segment}")), "{segment} missing: {keys:?}");
    }
    fx.no_stages_left().await;
}

/// The temporary area is swept while the node runs, not only at its start: a finished run's
/// names go at the next sweep, a running attempt's stay.
#[tokio::test]
async fn the_temporary_area_is_swept_periodically_sparing_runs_still_active() {
    let fx = fixture();
    fx.shutdown.stop_claiming.cancel();
    let storage = Arc::clone(fx.jobs.storage());
    let insert = |command: &str| fx.store.insert(command.to_owned(), SubmitOptions::default());
    let over = insert("-i c.mp4 d.mp4").await.unwrap();
    let running = insert("-i a.mp4 b.mp4").await.unwrap();
    for _ in 0..2 {
        fx.store.claim_next(&[]).await.unwrap().unwrap();
    }
    fx.store.finish(&over.id, jobs::store::Outcome::Failed { error: "x".to_owned() }, "").await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let sweeper = {
        let (jobs, stop) = (Arc::clone(&fx.jobs), stop.clone());
        tokio::spawn(async move { jobs.sweep_temp_area_every(Some(Duration::from_millis(200)), stop).await })
    };
    // Left after the sweeper started: only a later sweep finds them.
    let live = format!("publish/{}-1-aaaa/out/b.mp4", running.id);
    let ended = format!("publish/{}-1-bbbb/out/d.mp4", over.id);
    for temp in [&live, &ended] {
        let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"partial"))]));
        storage.put_temp(temp, body).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<String> = storage.list_temps("").await.unwrap().into_iter().map(|f| f.path).collect();
        if left == [live.clone()] {
            break;
        }
        assert!(Instant::now() < deadline, "not swept: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    sweeper.await.unwrap();
}

/// A bucket holds `a` and `a/x` side by side where a disk holds one of them (tester G14): a
/// job's output where the bucket has a directory, or below a file, is refused at submit,
/// naming the argument (every kind of written name: a named output, an HLS playlist and its
/// segments' directory, a `%d` sequence's directory, a pass log's prefix), and refused at
/// upload for the names only the run knows (a segment, a numbered image that the bucket
/// holds as a directory): the job fails naming the path, and nothing of its set is published.
#[tokio::test]
async fn outputs_where_the_bucket_has_a_directory_or_below_a_file_are_refused() {
    let fx = fixture();
    let local = tempfile::tempdir().unwrap();
    fx.upload(&make_clip(local.path()), "in/clip.mp4").await;
    fx.put_bytes("dirc/d/inner.txt", b"inner").await;
    fx.put_bytes("filec/f", b"a file").await;
    let refused = [
        ("-i in/clip.mp4 -t 1 -f mp4 dirc/d", 7, "dirc/d", "`dirc/d` is a directory"),
        (
            "-i in/clip.mp4 -t 1 filec/f/x.mp4",
            5,
            "filec/f/x.mp4",
            "`filec/f` is a file in the storage, not a directory",
        ),
        ("-i in/clip.mp4 -c copy -f hls filec/f/hls/p.m3u8", 7, "filec/f/hls/p.m3u8", "`filec/f` is a file"),
        ("-i in/clip.mp4 -frames:v 3 filec/f/img%03d.png", 5, "filec/f/img%03d.png", "`filec/f` is a file"),
        (
            "-i in/clip.mp4 -an -c:v libx264 -pass 1 -passlogfile filec/f/two -f null -",
            8,
            "-passlogfile filec/f/two",
            "`filec/f` is a file",
        ),
        (
            "-i in/clip.mp4 -c copy -f hls -hls_segment_filename filec/f/s%d.ts hls/p.m3u8",
            7,
            "-hls_segment_filename filec/f/s%d.ts",
            "`filec/f` is a file",
        ),
    ];
    for (command, position, argument, problem) in refused {
        let error = fx.jobs.submit(command, SubmitOptions::default()).await.unwrap_err();
        let message = error.to_string();
        match error {
            jobs::SubmitError::OutputConflict { position: p, argument: a, .. } => {
                assert_eq!((p, a.as_str()), (position, argument), "{command}: {message}");
            }
            other => panic!("{command}: {other:?}"),
        }
        assert!(message.contains(problem) && message.contains("cannot write a file where"), "{command}: {message}");
    }
    // Nothing was queued, nothing changed.
    assert!(fx.store.list(&jobs::store::ListQuery::default()).await.unwrap().is_empty());
    let before = fx.raw_keys();
    assert_eq!(before, ["dirc/d/inner.txt", "filec/f", "in/clip.mp4"]);

    // Names only the run knows: the bucket holds `hls/p1.ts` and `seq/img2.png` as
    // directories. Submit cannot see them; the upload refuses the whole set.
    fx.put_bytes("hls/p1.ts/inner.txt", b"inner").await;
    fx.put_bytes("seq/img2.png/inner.txt", b"inner").await;
    let before = fx.raw_keys();
    for (command, path) in [
        (
            "-i in/clip.mp4 -an -c:v libx264 -preset ultrafast -g 10 -f hls -hls_time 0.5 -hls_list_size 0 hls/p.m3u8",
            "hls/p1.ts",
        ),
        ("-i in/clip.mp4 -frames:v 3 seq/img%d.png", "seq/img2.png"),
    ] {
        let job = fx.submit(command).await;
        let done = fx.finished(&job.id).await;
        assert_eq!((done.status, done.attempts), (JobStatus::Failed, 1), "{command}: {done:?}");
        assert!(done.output_files.is_empty(), "{done:?}");
        let error = done.error.unwrap();
        assert!(
            error.contains(&format!("`{path}` is a directory")) && error.contains("no file in the storage was changed"),
            "{command}: {error}"
        );
        assert_eq!(fx.raw_keys(), before, "{command}: nothing of the set was published");
        let temps = fx.jobs.storage().list_temps("").await.unwrap();
        assert!(temps.is_empty(), "{temps:?}");
    }
    fx.no_stages_left().await;
}

/// Multipart uploads the bucket still holds open, under the fixture's prefix.
impl Fixture {
    fn open_uploads(&self) -> Vec<String> {
        s3_harness::shared().unfinished_uploads(&self.bucket)
    }

    /// Waits (with a deadline) until the bucket holds no open multipart upload.
    async fn no_open_uploads(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.open_uploads().is_empty() {
            assert!(Instant::now() < deadline, "uploads left open: {:?}", self.open_uploads());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (with a deadline) until the job `id`'s output upload is under way, its parts held
    /// by the proxy: the bucket holds its multipart upload open.
    async fn uploading(&self, id: &JobId) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let job = self.store.get(id).await.unwrap().unwrap();
            let uploading = job.progress.as_ref().and_then(|p| p.phase) == Some(Phase::Uploading);
            if uploading && !self.open_uploads().is_empty() {
                return;
            }
            assert!(!job.status.is_finished(), "ended before its upload was held: {job:?}");
            assert!(Instant::now() < deadline, "never held uploading: {job:?} {:?}", self.open_uploads());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An output of 11.5 MB (more than one part: a multipart upload).
const BIG_OUTPUT: &str = "-f lavfi -i testsrc=s=320x240:r=25 -t 2 -c:v rawvideo -pix_fmt rgb24 big/c1.avi";

/// A job cancelled, or out of time, while its outputs upload (tester G11: each left its
/// multipart upload open in the bucket, billed and invisible) leaves none: the upload's parts
/// are held by a proxy (`UploadPart` never answered), so the job is stopped mid-upload
/// deterministically.
#[tokio::test]
async fn a_job_stopped_mid_upload_leaves_no_multipart_upload_open() {
    let proxy = s3_harness::Proxy::start(s3_harness::shared().port());
    let fx = fixture_at(&proxy.endpoint(), |s3| Arc::new(s3));
    fx.put_bytes("big/c1.avi", b"the user's file").await;
    proxy.set(s3_harness::ProxyMode::HoldParts);

    // Cancelled.
    let started = Instant::now();
    let job = fx.submit(BIG_OUTPUT).await;
    fx.uploading(&job.id).await;
    // How long ffmpeg and the first part took here: the time limit below must not run out
    // before the upload is held, on a loaded machine either (it once did at load 16-18).
    let to_upload = started.elapsed();
    fx.jobs.cancel(&job.id).await.unwrap();
    let done = fx.finished(&job.id).await;
    assert_eq!(done.status, JobStatus::Cancelled, "{done:?}");
    fx.no_open_uploads().await;

    // Out of time: 8 s, or four times what the first job took to reach its upload.
    let limit = to_upload.as_secs().saturating_add(1).saturating_mul(4).max(8);
    let options = SubmitOptions { timeout_seconds: Some(limit), ..SubmitOptions::default() };
    let job = fx.jobs.submit(BIG_OUTPUT, options).await.unwrap();
    fx.uploading(&job.id).await;
    let done = fx.finished(&job.id).await;
    assert_eq!(done.status, JobStatus::Failed, "{done:?}");
    let error = done.error.unwrap();
    assert!(error.contains(&format!("timed out after {limit} s while uploading its outputs")), "{error}");
    fx.no_open_uploads().await;

    proxy.set(s3_harness::ProxyMode::Pass);
    assert_eq!(fx.object("big/c1.avi"), b"the user's file");
    assert!(fx.jobs.storage().list_temps("").await.unwrap().is_empty());
    fx.no_stages_left().await;
}

/// The node's shutdown (`abort_running`, fired when `SHUTDOWN_GRACE` is over) stops a job whose
/// outputs are uploading: the upload is undone (no object, no multipart upload left open, the
/// file it would have replaced untouched) and the job goes back to the queue with its attempt
/// given back, as a job stopped while ffmpeg runs (tester finding L11: the upload was not
/// given the shutdown's token, so a draining node waited for the whole upload). The upload's
/// parts are held by the proxy and the bucket client waits an hour for an answer: the workers
/// stop only if the shutdown stops the upload.
#[tokio::test]
async fn a_shutdown_stops_an_upload_and_puts_the_job_back() {
    let proxy = s3_harness::Proxy::start(s3_harness::shared().port());
    let endpoint = proxy.endpoint();
    let mut fx = fixture_over(
        |bucket| {
            let timeouts = jobs::storage::S3Timeouts { request: Duration::from_secs(3600), ..Default::default() };
            Arc::new(S3Storage::new(&S3Config { timeouts, ..s3_config_at(bucket, &endpoint) }).unwrap())
        },
        1,
    );
    fx.put_bytes("big/c1.avi", b"the user's file").await;
    proxy.set(s3_harness::ProxyMode::HoldParts);
    let job = fx.submit(BIG_OUTPUT).await;
    fx.uploading(&job.id).await;

    fx.shutdown.stop_claiming.cancel();
    fx.shutdown.abort_running.cancel();
    // A deadline for the test only (a held part would take the hour).
    let stopped =
        tokio::time::timeout(Duration::from_secs(60), async { while fx._workers.join_next().await.is_some() {} }).await;
    assert!(stopped.is_ok(), "the workers did not stop while the upload was held");
    let job = fx.store.get(&job.id).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Queued, 0), "{job:?}");
    assert_eq!(job.error, None, "{job:?}");
    fx.no_open_uploads().await;

    proxy.set(s3_harness::ProxyMode::Pass);
    assert_eq!(fx.object("big/c1.avi"), b"the user's file");
    assert!(fx.jobs.storage().list_temps("").await.unwrap().is_empty());
    fx.no_stages_left().await;
}

/// Job `id` once it is finished, polled every 20 ms; panics after two minutes.
async fn finished(jobs: &Jobs, id: &JobId) -> Job {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = jobs.get(id).await.unwrap();
        if now.status.is_finished() {
            return now;
        }
        assert!(Instant::now() < deadline, "never finished: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `jobs`' workers with the bucket behind `proxy` silent (connections accepted, never
/// answered) until job `id` is finished, then lets the bucket answer again and stops claiming.
async fn finished_with_the_bucket_silent(proxy: &s3_harness::Proxy, jobs: &Arc<Jobs>, id: &JobId) -> Job {
    proxy.set(s3_harness::ProxyMode::Silent);
    let shutdown = Shutdown::default();
    let _workers = jobs.spawn_workers(&shutdown);
    let done = finished(jobs, id).await;
    proxy.set(s3_harness::ProxyMode::Pass);
    shutdown.stop_claiming.cancel();
    done
}

/// A service (no workers yet) over a bucket reached through `proxy`, with short request
/// timeouts (a held request fails in about a second, not ten), `max_attempts` and a first
/// retry wait of `retry_delay`; `in/clip.mp4` uploaded. With its data directory (to keep).
async fn proxied_jobs(
    proxy: &s3_harness::Proxy,
    max_attempts: u32,
    retry_delay: Duration,
) -> (Arc<Jobs>, String, tempfile::TempDir) {
    proxied_jobs_with(proxy, max_attempts, retry_delay, |s3| Arc::new(s3)).await
}

/// [`proxied_jobs`], its storage `wrap`ped.
async fn proxied_jobs_with(
    proxy: &s3_harness::Proxy,
    max_attempts: u32,
    retry_delay: Duration,
    wrap: impl FnOnce(S3Storage) -> Arc<dyn Storage>,
) -> (Arc<Jobs>, String, tempfile::TempDir) {
    let bucket = s3_harness::shared().bucket();
    let data = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(data.path()).unwrap();
    sandbox.deny(jobs::staging::STAGING_DIR);
    let runner: Arc<dyn Runner> = Arc::new(FfmpegRunner::new(FfmpegConfig::new("ffmpeg", data.path())));
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let timeouts = jobs::storage::S3Timeouts {
        connect: Duration::from_secs(1),
        request: Duration::from_secs(1),
        copy: Duration::from_secs(5),
    };
    let s3 = S3Storage::new(&S3Config { timeouts, ..s3_config_at(&bucket, &proxy.endpoint()) }).unwrap();
    let config = JobsConfig {
        idle_wait: Duration::from_secs(3600),
        remote_storage: Some(wrap(s3)),
        max_attempts,
        retry_delay,
        ..JobsConfig::default()
    };
    let jobs = Jobs::new(store, runner, sandbox, config);
    let local = tempfile::tempdir().unwrap();
    let clip = make_clip(local.path());
    let body: ByteStream = Box::pin(tokio_util::io::ReaderStream::new(tokio::fs::File::open(&clip).await.unwrap()));
    let options = PutOptions { create_only: false, max_bytes: u64::MAX, conditional: false };
    jobs.storage().put("in/clip.mp4", body, options).await.unwrap().commit().await.unwrap();
    (jobs, bucket, data)
}

/// Polls job `id` (with a deadline) until it is queued again by a retry (it has a retry
/// reason) with `attempts` attempts counted (0: an attempt that waited on the storage is not)
/// and no job runs here (its worker's slot is free).
async fn back_in_the_queue(jobs: &Jobs, id: &JobId, attempts: u32) -> Job {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = jobs.get(id).await.unwrap();
        let retried = now.retry_reason.is_some();
        if now.status == JobStatus::Queued && retried && now.attempts == attempts && jobs.running_here() == 0 {
            return now;
        }
        assert!(!now.status.is_finished(), "{now:?}");
        assert!(Instant::now() < deadline, "never back in the queue after attempt {attempts}: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// H9: the bucket stops answering while a job stages its inputs. The job goes back to
/// `queued` at once, with no error, a `retry_at` and a `waiting_reason` naming the bucket and
/// since when it has not answered; the worker's slot is free meanwhile (before, the worker
/// slept in it, the job `running` with an error). The attempt is not counted (K11: a check
/// confirmed the outage, which `/ready` then reports though no files call was made). Once the
/// bucket answers again, the job completes, on its first counted attempt. A real moto behind
/// a proxy that holds every request (a stopped server: connections accepted, never answered).
#[tokio::test]
async fn a_bucket_failing_mid_staging_puts_the_job_back_in_the_queue_and_frees_the_slot() {
    let proxy = s3_harness::Proxy::start(s3_harness::shared().port());
    // Long enough to see the job wait; a worker with nothing to do still takes it then.
    let (jobs, bucket, _data) = proxied_jobs(&proxy, 4, Duration::from_secs(4)).await;
    let job = jobs.submit("-i in/clip.mp4 -map 0 -c copy out/h9.mkv", SubmitOptions::default()).await.unwrap();
    let mut events = jobs.events().subscribe_all();

    // The bucket stops; then a worker claims the job and starts downloading its input.
    proxy.set(s3_harness::ProxyMode::Silent);
    let shutdown = Shutdown::default();
    let _workers = jobs.spawn_workers(&shutdown);
    let waiting = back_in_the_queue(&jobs, &job.id, 0).await;
    // The worker's failure made the outage known to `/ready` and the files API.
    assert!(jobs.storage_ready().await.is_err(), "the outage is not known");
    proxy.set(s3_harness::ProxyMode::Pass);
    assert_eq!(waiting.error, None, "{waiting:?}");
    assert!(waiting.retry_at.is_some_and(|at| at > waiting.created_at), "{waiting:?}");
    let reason = waiting.waiting_reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with(&format!("the storage `s3://{bucket}/{PREFIX}` has not answered since "))
            && reason.contains("this attempt not counted (downloading the job's inputs")
            && reason.contains("; next attempt at "),
        "{reason}"
    );

    let done = finished(&jobs, &job.id).await;
    assert_eq!(
        (done.status, done.error.as_deref(), done.waiting_reason.as_deref(), done.attempts),
        (JobStatus::Completed, None, None, 1)
    );
    assert!(s3_harness::shared().object(&bucket, &format!("{PREFIX}/out/h9.mkv")).is_some());
    // The stream saw it go back to `queued` (then run again), saying why.
    let mut statuses = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::Status(job) = event.event() {
            statuses.push((job.status, job.waiting_reason.is_some(), job.error.is_some()));
        }
    }
    let first = statuses.iter().position(|s| s.0 == JobStatus::Queued).expect("no queued event");
    assert_eq!(statuses[first], (JobStatus::Queued, true, false), "{statuses:?}");
    assert_eq!(statuses[..first], [(JobStatus::Running, false, false)], "{statuses:?}");
    assert_eq!(statuses.last(), Some(&(JobStatus::Completed, false, false)), "{statuses:?}");
    shutdown.stop_claiming.cancel();
}

/// Tester finding K11: an outage longer than the attempts' waits (2 attempts, 10 ms) fails no
/// job. With the bucket silent, the job's first attempt (its download) goes back to the queue
/// not counted, and the workers claim nothing while the outage is known: its checks go on
/// (counted on the wire), not one more request names the input, the job stays queued, its
/// `waiting_reason` says the storage has not answered since when. Once the bucket answers, the
/// job completes on its first counted attempt.
#[tokio::test]
async fn an_outage_longer_than_the_attempts_waits_fails_no_job() {
    let proxy = s3_harness::Proxy::start(s3_harness::shared().port());
    let (jobs, bucket, _data) = proxied_jobs(&proxy, 2, Duration::from_millis(10)).await;
    let job = jobs.submit("-i in/clip.mp4 -map 0 -c copy out/k11.mkv", SubmitOptions::default()).await.unwrap();
    let (input, requests) = (proxy.counter("clip.mp4"), proxy.counter(" HTTP/1.1\r\n"));
    proxy.set(s3_harness::ProxyMode::Silent);
    let shutdown = Shutdown::default();
    let _workers = jobs.spawn_workers(&shutdown);
    back_in_the_queue(&jobs, &job.id, 0).await;
    let input_requests = input.get();
    assert!(input_requests >= 1, "the first attempt never asked for its input");
    // Checks of the storage go on meanwhile (one a second at most); wait for a few of them.
    let checks_before = requests.get() - input_requests;
    let deadline = Instant::now() + Duration::from_secs(60);
    while requests.get() - input.get() < checks_before + 3 {
        assert!(Instant::now() < deadline, "the storage was not checked again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waiting = jobs.get(&job.id).await.unwrap();
    assert_eq!((waiting.status, waiting.attempts, input.get()), (JobStatus::Queued, 0, input_requests), "{waiting:?}");
    let reason = waiting.waiting_reason.unwrap_or_default();
    assert!(
        reason.starts_with(&format!("the storage `s3://{bucket}/{PREFIX}` has not answered since "))
            && reason.contains("jobs start once it answers"),
        "{reason}"
    );

    proxy.set(s3_harness::ProxyMode::Pass);
    let done = finished(&jobs, &job.id).await;
    shutdown.stop_claiming.cancel();
    assert_eq!((done.status, done.attempts, done.error.as_deref()), (JobStatus::Completed, 1, None), "{done:?}");
    assert!(s3_harness::shared().object(&bucket, &format!("{PREFIX}/out/k11.mkv")).is_some());
}

/// Tester finding I2: a job that reads and writes no file sends the bucket no request at all,
/// not even at its end (every S3 job used to list its run's temporary names and its open
/// multipart uploads: two billed requests, and two request timeouts in the worker's slot while
/// the bucket did not answer). Run with the bucket silent: it completes on its first attempt,
/// and the proxy saw no request.
#[tokio::test]
async fn a_job_with_no_files_sends_no_request_and_completes_while_the_bucket_is_down() {
    let proxy = s3_harness::Proxy::start(s3_harness::shared().port());
    let (jobs, _bucket, _data) = proxied_jobs(&proxy, 2, Duration::from_secs(600)).await;
    let job = jobs.submit("-f lavfi -i testsrc=s=64x48:r=25 -t 0.2 -f null -", SubmitOptions::default()).await.unwrap();
    let requests = proxy.counter(" HTTP/1.1\r\n");
    let done = finished_with_the_bucket_silent(&proxy, &jobs, &job.id).await;
    assert_eq!((done.status, done.attempts, done.error.as_deref()), (JobStatus::Completed, 1, None), "{done:?}");
    assert_eq!(requests.get(), 0, "requests to the bucket");
}

/// Tester finding I2, an outage while a job uploads: its attempt goes back to the queue after
/// the upload's own request failed, without listing its temporary names or its multipart
/// uploads (two more request timeouts in the worker's slot); what it may have left is undone
/// by its next attempt (which lists them, as its run record says the attempt wrote there),
/// and the job completes once the bucket answers, nothing left in the temporary area.
#[tokio::test]
async fn an_upload_in_an_outage_frees_the_slot_without_clean_up_listings() {
    let proxy = s3_harness::Proxy::start(s3_harness::shared().port());
    // Long enough to see the job wait.
    let (jobs, _bucket, _data) = proxied_jobs(&proxy, 4, Duration::from_secs(4)).await;
    let job =
        jobs.submit("-f lavfi -i testsrc=s=64x48:r=25 -t 0.2 out/i2.mp4", SubmitOptions::default()).await.unwrap();
    // Listings of keys (not the checks of the storage, which ask for one key: `max-keys=1`).
    let (listings, upload_listings) = (proxy.counter("max-keys=1000"), proxy.counter("&uploads="));
    proxy.set(s3_harness::ProxyMode::Silent);
    let shutdown = Shutdown::default();
    let _workers = jobs.spawn_workers(&shutdown);
    let waiting = back_in_the_queue(&jobs, &job.id, 0).await;
    proxy.set(s3_harness::ProxyMode::Pass);
    let reason = waiting.waiting_reason.unwrap_or_default();
    assert!(reason.contains("uploading the job's outputs") && reason.contains("out/i2.mp4"), "{reason}");
    assert_eq!((listings.get(), upload_listings.get()), (0, 0), "listings while the bucket was down");

    // The outage's attempt was not counted (K11): the next one is the first counted.
    let done = finished(&jobs, &job.id).await;
    shutdown.stop_claiming.cancel();
    assert_eq!((done.status, done.attempts, done.error.as_deref()), (JobStatus::Completed, 1, None), "{done:?}");
    // Attempt 2 undid what attempt 1 may have left: it listed the area's open uploads.
    assert!(upload_listings.get() >= 1, "the next attempt did not undo the earlier one");
    assert!(jobs.storage().list_temps("").await.unwrap().is_empty());
    assert!(jobs.storage().head("out/i2.mp4").await.is_ok());
}

/// A bucket this node comes to know does not answer while a job's ffmpeg runs is not waited
/// for before uploading: the job's attempt goes back to the queue at once after its ffmpeg
/// ran, not counted (K11), with a `retry_at` and a reason saying the storage has not answered
/// since when, and not one request naming its output reaches the bucket (each used to wait a
/// request timeout in the worker's slot). Once the bucket answers again, a worker claims the
/// job again and it completes. (`-re`: ffmpeg runs for 3 s of wall time, the outage is made
/// known at once once the job runs.)
#[tokio::test]
async fn a_known_outage_sends_the_job_back_before_its_upload_sends_a_request() {
    let proxy = s3_harness::Proxy::start(s3_harness::shared().port());
    let (jobs, _bucket, _data) = proxied_jobs(&proxy, 5, Duration::from_secs(2)).await;
    let job =
        jobs.submit("-re -f lavfi -i testsrc=s=64x48:r=25 -t 3 out/known.mp4", SubmitOptions::default()).await.unwrap();
    let named = proxy.counter("known.mp4");
    let shutdown = Shutdown::default();
    let _workers = jobs.spawn_workers(&shutdown);
    let deadline = Instant::now() + Duration::from_secs(60);
    while jobs.get(&job.id).await.unwrap().status != JobStatus::Running {
        assert!(Instant::now() < deadline, "the job never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The node learns of the outage (as a failed check of `/ready` or a files call does).
    proxy.set(s3_harness::ProxyMode::Silent);
    let silent = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer");
    jobs.storage_down_at_start(StorageError::Unavailable { path: String::new(), source: silent });
    let waiting = back_in_the_queue(&jobs, &job.id, 0).await;
    assert_eq!(named.get(), 0, "requests naming the output while the outage was known");
    assert!(waiting.retry_at.is_some() && waiting.error.is_none(), "{waiting:?}");
    let reason = waiting.waiting_reason.unwrap_or_default();
    assert!(
        reason.contains("uploading the job's outputs")
            && reason.contains("has not answered since")
            && reason.contains("this attempt not counted"),
        "{reason}"
    );

    proxy.set(s3_harness::ProxyMode::Pass);
    let done = finished(&jobs, &job.id).await;
    shutdown.stop_claiming.cancel();
    assert_eq!((done.status, done.error.as_deref(), done.attempts), (JobStatus::Completed, None, 1), "{done:?}");
    assert!(jobs.storage().head("out/known.mp4").await.is_ok());
}

/// Its checks find the bucket answering (they go to the bucket itself, not through the
/// proxy): a bucket that answers checks but fails requests, whose failures are counted.
#[derive(Debug)]
struct ChecksAnswer(S3Storage);

#[async_trait]
impl Intercept for ChecksAnswer {
    async fn ping(&self, _inner: &dyn Storage) -> Result<(), StorageError> {
        self.0.ping().await
    }
}

/// Tester finding I2: an attempt that may have left names in the temporary area (its upload
/// failed while the bucket did not answer its requests) is undone by the next one first; when
/// that fails too and no attempt is left, the job's error says what the earlier attempt failed
/// on as well (the upload), not only the undo. The bucket's checks answer meanwhile (else
/// attempts are not counted, K11).
#[tokio::test]
async fn a_failed_undo_on_the_last_attempt_names_the_failure_before_it() {
    let proxy = s3_harness::Proxy::start(s3_harness::shared().port());
    let direct =
        S3Storage::new(&s3_config_at(&s3_harness::shared().bucket(), s3_harness::shared().endpoint())).unwrap();
    let answering = |s3: S3Storage| Intercepted::wrap(Arc::new(s3), ChecksAnswer(direct));
    let (jobs, _bucket, _data) = proxied_jobs_with(&proxy, 2, Duration::from_millis(10), answering).await;
    let job =
        jobs.submit("-f lavfi -i testsrc=s=64x48:r=25 -t 0.2 out/undo.mp4", SubmitOptions::default()).await.unwrap();
    let done = finished_with_the_bucket_silent(&proxy, &jobs, &job.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Failed, 2), "{done:?}");
    let error = done.error.unwrap_or_default();
    assert!(
        error.starts_with("undoing what an earlier attempt of the job left in the storage failed")
            && error.contains("(attempt 2 of 2, none left; before it, the storage `s3://")
            && error.contains("(attempt 1 of 2 failed: uploading the job's outputs")
            && error.contains("out/undo.mp4"),
        "{error}"
    );
}

/// The temporary area's sweep aborts the multipart uploads left open (a crash, a stop whose
/// abort failed): a run's unless its job runs that attempt, any other once it is stale.
#[tokio::test]
async fn the_sweep_aborts_the_open_uploads_of_runs_that_are_over_and_stale_ones() {
    let fx = fixture();
    fx.shutdown.stop_claiming.cancel();
    let insert = |command: &str| fx.store.insert(command.to_owned(), SubmitOptions::default());
    let over = insert("-i c.mp4 d.mp4").await.unwrap();
    let running = insert("-i a.mp4 b.mp4").await.unwrap();
    for _ in 0..2 {
        fx.store.claim_next(&[]).await.unwrap().unwrap();
    }
    fx.store.finish(&over.id, jobs::store::Outcome::Failed { error: "x".to_owned() }, "").await.unwrap();
    let area = format!("{PREFIX}/{}", jobs::storage::TEMP_AREA);
    let live = format!("{area}/publish/{}-1-aaaa/out/b.mp4", running.id);
    let earlier = format!("{area}/publish/{}-0-bbbb/out/b.mp4", running.id);
    let ended = format!("{area}/publish/{}-1-cccc/out/d.mp4", over.id);
    // An upload no run owns (the files API's): aborted once stale, and moto reports every
    // upload as started in 2010 (the age rule's other side is a unit test of the sweep's).
    let unowned = format!("{PREFIX}/out/big.mkv");
    // Another tool's, under a key no path names: aborted by its exact key (it used to be
    // named as `out/big.mkv` and left open); one with a `..` name, which no request can name
    // safely, is left.
    let foreign = format!("{PREFIX}/out//big.mkv");
    let dotted = format!("{PREFIX}/out/../odd.mkv");
    for key in [&live, &earlier, &ended, &unowned, &foreign, &dotted] {
        s3_harness::shared().start_upload(&fx.bucket, key);
    }
    let sweep = fx.jobs.sweep_temp_area().await.unwrap();
    assert_eq!(sweep.multipart, 4, "{sweep:?}");
    let (mut left, mut expected) = (fx.open_uploads(), vec![live, dotted]);
    left.sort();
    expected.sort();
    assert_eq!(left, expected);
}

/// The publish check lists each output directory once (tester H7: listings per output file, a
/// 1000-image job 35 % slower on moto): a job writing 80 images sends a few `ListObjectsV2`
/// requests, as one writing 10 does, counted on the wire by a proxy.
#[tokio::test]
async fn the_publish_check_lists_each_directory_once_not_each_file() {
    let proxy = s3_harness::Proxy::start(s3_harness::shared().port());
    let fx = fixture_at(&proxy.endpoint(), |s3| Arc::new(s3));
    let mut lists = Vec::new();
    for (dir, frames) in [("few", 10), ("many", 80)] {
        let counter = proxy.counter("list-type=2");
        let job = fx.submit(&format!("-f lavfi -i testsrc=s=32x24:r=25 -frames:v {frames} {dir}/i%03d.png")).await;
        let done = fx.finished(&job.id).await;
        assert_eq!(done.status, JobStatus::Completed, "{done:?}");
        assert_eq!(done.output_files.len(), frames, "{done:?}");
        lists.push(counter.get());
    }
    // One listing for the check, one of the run's temporary names, one of a sweep that may
    // run meanwhile...: a few, whatever the number of images (one per image made 80 and more).
    assert!(lists.iter().all(|&n| n <= 6), "listings for 10 images, for 80: {lists:?}");
}

/// A bucket deleted while the server runs (tester H8: a job failed "no file `o.mp4`"): a job
/// queued before that stages an input, and one that only writes, both fail at once naming
/// the bucket; a submission after it is refused naming it (tester L8: it was queued).
#[tokio::test]
async fn a_job_on_a_deleted_bucket_fails_naming_the_bucket() {
    let proxy = s3_harness::Proxy::start(s3_harness::shared().port());
    let (jobs, bucket, _data) = proxied_jobs(&proxy, 2, Duration::from_millis(10)).await;
    let commands = [
        ("-f lavfi -i testsrc=s=64x48:r=25 -t 0.2 o.mp4", "uploading the job's outputs"),
        ("-i in/clip.mp4 -c copy o2.mp4", "downloading the job's inputs"),
    ];
    let mut queued = Vec::new();
    for (command, _) in commands {
        queued.push(jobs.submit(command, SubmitOptions::default()).await.unwrap());
    }
    s3_harness::shared().delete_bucket(&bucket);
    let named = format!("bucket `{bucket}` does not exist");
    let shutdown = Shutdown::default();
    let _workers = jobs.spawn_workers(&shutdown);
    for (job, (command, step)) in queued.iter().zip(commands) {
        let done = finished(&jobs, &job.id).await;
        assert_eq!((done.status, done.attempts), (JobStatus::Failed, 1), "{command}: {done:?}");
        let error = done.error.unwrap();
        assert!(error.contains(&named) && error.contains(step), "{command}: {error}");
        assert!(!error.contains("no file `"), "{command}: {error}");
    }
    for (command, _) in commands {
        let refused = jobs.submit(command, SubmitOptions::default()).await.unwrap_err();
        assert!(matches!(refused, SubmitError::StorageUnavailable(_)), "{command}: {refused:?}");
        assert!(refused.to_string().contains(&named), "{command}: {refused}");
    }
    shutdown.stop_claiming.cancel();
    s3_harness::shared().create_bucket(&bucket);
}

/// Tester H6 on a bucket: two jobs, one writing the file `race/a` and one writing
/// `race/a/x.mp4`, both queued before either starts (the first held behind a job writing its
/// other output, until that one is cancelled), two workers free: their footprints conflict,
/// so they run one after the other, and the later one's publish check refuses it, naming its
/// argument as a submission would. The bucket holds one of the two, never both.
#[tokio::test]
async fn jobs_writing_a_file_and_below_it_run_one_after_the_other_and_the_later_fails() {
    let fx = fixture_concurrent(2);
    let local = tempfile::tempdir().unwrap();
    fx.upload(&make_clip(local.path()), "in/clip.mp4").await;
    let blocker = fx.submit("-re -f lavfi -i testsrc=size=64x48:rate=5 -t 600 hold.mp4").await;
    let file = fx.submit("-i in/clip.mp4 -t 1 -c copy -f mp4 race/a -c copy hold.mp4").await;
    let below = fx.submit("-i in/clip.mp4 -t 1 -c copy race/a/x.mp4").await;
    fx.jobs.cancel(&blocker.id).await.unwrap();
    assert_eq!(fx.finished(&blocker.id).await.status, JobStatus::Cancelled);
    let (file, below) = (fx.finished(&file.id).await, fx.finished(&below.id).await);
    assert_eq!(file.status, JobStatus::Completed, "{file:?}");
    assert_eq!((below.status, below.attempts), (JobStatus::Failed, 1), "{below:?}");
    assert!(below.started_at >= file.completed_at, "one after the other: {file:?} {below:?}");
    let error = below.error.unwrap();
    assert!(
        error.contains(
            "argument 7 `race/a/x.mp4`: `race/a` is a file in the storage, not a directory; a job cannot write a \
             file where the storage holds a directory, nor below a file"
        ),
        "{error}"
    );
    assert_eq!(fx.raw_keys(), ["hold.mp4", "in/clip.mp4", "race/a"]);
    fx.no_stages_left().await;
}

/// An upload racing a job's publish on a bucket (tester H6): the job puts `race/a` in place
/// after the upload of `race/a/x` was last checked and before it became visible. The upload
/// checks its place again once visible, finds the file above it and deletes its own file: the
/// bucket never keeps both.
#[tokio::test]
async fn an_upload_racing_a_publish_above_it_takes_its_file_back() {
    let fx = fixture();
    let storage = Arc::clone(fx.jobs.storage());
    let publish: crate::files::Hook = {
        let storage = Arc::clone(&storage);
        Box::new(move || {
            Box::pin(async move {
                let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"job"))]));
                let options = PutOptions { create_only: false, max_bytes: u64::MAX, conditional: false };
                storage.put("race/a", body, options).await.unwrap().commit().await.unwrap();
            })
        })
    };
    let hooked = crate::files::HookAtCommit::wrap(storage, publish);
    let sandbox = Arc::new(Sandbox::new(fx.data.path()).unwrap());
    let files = jobs::files::Files::new(hooked, Arc::clone(&fx.store), sandbox, 1 << 20);
    let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"upload"))]));
    match files.put("race/a/x", body, false).await {
        Err(e @ jobs::files::FilesError::Raced { .. }) => {
            let message = e.to_string();
            assert!(message.starts_with("`race/a/x` was not kept: `race/a` is a file in the storage"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fx.raw_keys(), ["race/a"]);
    assert_eq!(fx.object("race/a"), b"job");
}

/// Uploads that wait for each other once their bodies are stored (both past the bucket's check
/// of their place, neither committed).
#[derive(Debug)]
struct MeetAtPut(tokio::sync::Barrier);

#[async_trait]
impl Intercept for MeetAtPut {
    async fn put(
        &self,
        inner: &dyn Storage,
        path: &str,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<Box<dyn StagedPut>, StorageError> {
        let staged = inner.put(path, body, options).await;
        self.0.wait().await;
        staged
    }
}

/// Two uploads through one process, `pr/a` and `pr/a/x.bin`, both past the bucket's check of
/// their place before either is committed (tester I4: both were deleted again by their
/// re-checks, in 7 rounds of 12): they commit one after the other, and exactly one is kept,
/// the other refused as raced, whichever order they take.
#[tokio::test]
async fn of_two_conflicting_uploads_through_one_process_exactly_one_is_kept() {
    let fx = fixture();
    for round in 0..4 {
        let storage = Intercepted::wrap(Arc::clone(fx.jobs.storage()), MeetAtPut(tokio::sync::Barrier::new(2)));
        let sandbox = Arc::new(Sandbox::new(fx.data.path()).unwrap());
        let files = jobs::files::Files::new(storage, Arc::clone(&fx.store), sandbox, 1 << 20);
        let (a, b) = (format!("pr{round}/a"), format!("pr{round}/a/x.bin"));
        let put = |path: String| {
            let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from(path.clone()))]));
            let files = &files;
            async move { files.put(&path, body, false).await }
        };
        let (ra, rb) = tokio::join!(put(a.clone()), put(b.clone()));
        let kept: Vec<&String> =
            [(&a, &ra), (&b, &rb)].into_iter().filter(|(_, r)| r.is_ok()).map(|(p, _)| p).collect();
        assert_eq!(kept.len(), 1, "round {round}: {ra:?} {rb:?}");
        let refused = if ra.is_ok() { rb } else { ra };
        assert!(matches!(refused, Err(jobs::files::FilesError::Raced { .. })), "round {round}: {refused:?}");
        let keys: Vec<String> = fx.raw_keys().into_iter().filter(|k| k.starts_with(&format!("pr{round}/"))).collect();
        assert_eq!(keys, [kept[0].clone()], "round {round}");
    }
}

//! Property: jobs writing into one directory at once, with other writers' files already there.
//! Whatever the mix of commands (outputs, `%d` patterns, HLS playlists, pass logs), the worker
//! pool never runs two jobs whose footprints conflict, a completed job lists only files it
//! wrote itself (all of those it named), a failed job leaves none of the files it named, and
//! no other writer's file is ever touched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ffmpeg_core::footprint::{Claim, Footprint, Names};
use ffmpeg_core::pattern;
use ffmpeg_core::sandbox::Sandbox;
use jobs::store::JobStore;
use jobs::{
    JobId, JobStatus, Jobs, JobsConfig, MemoryStore, Progress, RunError, RunReport, RunSpec, Runner, Shutdown,
    SqliteStore, SubmitOptions,
};
use proptest::prelude::*;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Commands, all writing into `d/`.
const COMMANDS: &[&str] = &[
    "-i in.mp4 d/a.mp4",
    "-i in.mp4 -c copy d/a.mp4",
    "-i in.mp4 d/b.mp4",
    "-i d/a.mp4 d/c.mp4",
    "-i in.mp4 d/t%02d.png",
    "-i in.mp4 -f hls d/h.m3u8",
    "-i in.mp4 d/h1.ts",
    "-i in.mp4 -pass 1 -passlogfile d/x -f null -",
    "-i in.mp4 -pass 2 -passlogfile d/x d/y.mp4",
    "-i in.mp4 -f segment d/s%03d.ts",
];

/// Other writers' files, there before any job: names that share prefixes with the jobs' files
/// or match their patterns, none of them a file a job names.
const FOREIGN: &[&str] = &["d/x2.mp4", "d/x-5.log", "d/t99.png", "d/hz.ts", "d/s.ts", "d/notes.txt", "d/a.mp4.bak"];

/// Writes what ffmpeg could write for a command (one name of each write set), checks that no
/// conflicting job runs at the same time, and fails the runs of jobs whose id ends in 0-7.
struct Writer {
    root: PathBuf,
    active: Mutex<Vec<Footprint>>,
    conflict_seen: AtomicBool,
    wrote: Mutex<HashMap<JobId, Vec<(PathBuf, Claim)>>>,
}

#[async_trait]
impl Runner for Writer {
    async fn run(
        &self,
        spec: RunSpec<'_>,
        progress: &watch::Sender<Option<Progress>>,
        _: &CancellationToken,
    ) -> RunReport {
        let footprint = Footprint::of(spec.command);
        {
            let mut active = self.active.lock().unwrap();
            if active.iter().any(|other| other.conflicts_with(&footprint)) {
                self.conflict_seen.store(true, Ordering::SeqCst);
            }
            active.push(footprint.clone());
        }
        let mut wrote = Vec::new();
        for set in footprint.writes() {
            let name = match set.names() {
                Names::Exact(name) => name.clone(),
                Names::Pattern(p) if !p.ends_with(".tmp") => pattern::example(p),
                _ => continue,
            };
            let path = set.dir().join(name);
            std::fs::write(self.root.join(&path), spec.job.as_str()).unwrap();
            wrote.push((path, set.claim()));
        }
        self.wrote.lock().unwrap().insert(spec.job.clone(), wrote);
        progress.send_replace(Some(Progress::default()));
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.active.lock().unwrap().retain(|f| f != &footprint);
        let fail = spec.job.as_str().ends_with(['0', '1', '2', '3', '4', '5', '6', '7']);
        let result = if fail {
            Err(RunError::Exit { code: Some(1), signal: None, message: "scripted".to_owned() })
        } else {
            Ok(())
        };
        RunReport { result, log_tail: String::new(), outputs: Vec::new() }
    }
}

fn check(commands: &[usize], sqlite: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(dir.path()).unwrap();
        let root = sandbox.root().to_owned();
        std::fs::create_dir_all(root.join("d")).unwrap();
        for foreign in FOREIGN {
            std::fs::write(root.join(foreign), "foreign").unwrap();
        }
        let store: Arc<dyn JobStore> =
            if sqlite { Arc::new(SqliteStore::open_in_memory().await.unwrap()) } else { Arc::new(MemoryStore::new()) };
        let writer = Arc::new(Writer {
            root: root.clone(),
            active: Mutex::new(Vec::new()),
            conflict_seen: AtomicBool::new(false),
            wrote: Mutex::new(HashMap::new()),
        });
        let config = JobsConfig { concurrency: 3, idle_wait: Duration::from_millis(20), ..JobsConfig::default() };
        let jobs = Jobs::new(Arc::clone(&store), Arc::clone(&writer) as Arc<dyn Runner>, sandbox, config);
        let mut ids = Vec::new();
        for &i in commands {
            ids.push(jobs.submit(COMMANDS[i], SubmitOptions::default()).await.unwrap().id);
        }
        let shutdown = Shutdown::default();
        let _workers = jobs.spawn_workers(&shutdown);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut finished = Vec::new();
        for id in &ids {
            loop {
                let job = store.get(id).await.unwrap().unwrap();
                if job.status.is_finished() {
                    finished.push(job);
                    break;
                }
                assert!(Instant::now() < deadline, "{job:?} never finished");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        shutdown.stop_claiming.cancel();

        assert!(!writer.conflict_seen.load(Ordering::SeqCst), "two conflicting jobs ran at once");
        for foreign in FOREIGN {
            assert_eq!(std::fs::read_to_string(root.join(foreign)).unwrap(), "foreign", "{foreign} untouched");
        }
        let wrote = writer.wrote.lock().unwrap();
        for job in &finished {
            let own = &wrote[&job.id];
            let named = || own.iter().filter(|(_, claim)| *claim == Claim::Named).map(|(p, _)| p);
            match job.status {
                JobStatus::Completed => {
                    for listed in &job.output_files {
                        assert!(
                            own.iter().any(|(p, _)| Path::new(listed) == p),
                            "{} lists {listed}: not its own",
                            job.command
                        );
                    }
                    for path in named() {
                        let listed = job.output_files.iter().any(|l| Path::new(l) == path);
                        assert!(listed, "{} does not list {}", job.command, path.display());
                    }
                }
                JobStatus::Failed => {
                    for path in named() {
                        // Gone, or written again by a later job.
                        let left = std::fs::read_to_string(root.join(path)).ok();
                        assert_ne!(left.as_deref(), Some(job.id.as_str()), "{} left {}", job.command, path.display());
                    }
                }
                other => panic!("{other:?}"),
            }
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_jobs_in_one_directory_touch_only_their_own_files(
        commands in prop::collection::vec(0..COMMANDS.len(), 2..10),
        sqlite in any::<bool>(),
    ) {
        check(&commands, sqlite);
    }
}

//! The node registry as the job service uses it: submit-time name checks against the ffmpeg
//! of the nodes that could take a job, `waiting_reason`, routing by labels, and a node's
//! heartbeats (running jobs, draining, removal). Store-level behaviour is in the conformance
//! suite (`store.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ffmpeg_core::capabilities::{Capabilities, CapabilityOutputs, NameKind};
use ffmpeg_core::sandbox::Sandbox;
use jobs::events::{AllFilter, AllItem, Event, Resume};
use jobs::nodes::{Heartbeat, Node, NodeRegistration, NodeRole, NodeSettings, NodeState};
use jobs::store::JobStore;
use jobs::{
    Job, JobId, JobStatus, Jobs, JobsConfig, MemoryStore, Progress, RunError, RunReport, RunSpec, Runner, Shutdown,
    SubmitError, SubmitOptions,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A runner that holds every run until `release` fires (or the run is stopped).
#[derive(Default)]
struct HeldRunner {
    release: CancellationToken,
}

#[async_trait]
impl Runner for HeldRunner {
    async fn run(&self, _: RunSpec<'_>, _: &watch::Sender<Option<Progress>>, cancel: &CancellationToken) -> RunReport {
        let result = tokio::select! {
            () = self.release.cancelled() => Ok(()),
            () = cancel.cancelled() => Err(RunError::Cancelled),
        };
        RunReport { result, log_tail: String::new(), outputs: Vec::new() }
    }
}

/// Capabilities whose encoders are `names` (other kinds unchecked).
fn encoders(names: &[&str]) -> Arc<Capabilities> {
    let list: String = names.iter().map(|n| format!(" V....D {n} an encoder\n")).collect();
    Arc::new(Capabilities::from_outputs(CapabilityOutputs { encoders: &list, ..CapabilityOutputs::default() }))
}

/// The lease of the test nodes: after it without a heartbeat, a node is lost.
const LOST_AFTER: Duration = Duration::from_secs(30);

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn registration(id: &str, role: NodeRole, labels: Vec<String>, capabilities: Arc<Capabilities>) -> NodeRegistration {
    NodeRegistration {
        id: id.to_owned(),
        role,
        labels,
        host: "test".to_owned(),
        version: "0".to_owned(),
        ffmpeg_version: capabilities.version().map(str::to_owned),
        capabilities: Some(capabilities),
        slots: if role.runs_jobs() { 1 } else { 0 },
        started_at: time::OffsetDateTime::now_utc(),
        process: None,
    }
}

struct Node1 {
    _dir: tempfile::TempDir,
    jobs: Arc<Jobs>,
    store: Arc<dyn JobStore>,
    runner: Arc<HeldRunner>,
}

/// A job service that is node `me` in a registry on a fresh memory store.
fn node(me: NodeRegistration, concurrency: usize) -> Node1 {
    node_on(me, concurrency, Arc::new(MemoryStore::new()))
}

/// A job service that is node `me` in a registry on `store`.
fn node_on(me: NodeRegistration, concurrency: usize, store: Arc<dyn JobStore>) -> Node1 {
    let dir = tempfile::tempdir().unwrap();
    let runner = Arc::new(HeldRunner::default());
    let config = JobsConfig {
        concurrency,
        idle_wait: Duration::from_millis(100),
        capabilities: me.capabilities.clone(),
        node: Some(NodeSettings { registration: me, lost_after: LOST_AFTER, retention: Duration::MAX }),
        ..JobsConfig::default()
    };
    let sandbox = Sandbox::new(dir.path()).unwrap();
    let jobs = Jobs::new(Arc::clone(&store), Arc::clone(&runner) as Arc<dyn Runner>, sandbox, config);
    Node1 { _dir: dir, jobs, store, runner }
}

fn requiring(names: &[&str]) -> SubmitOptions {
    SubmitOptions { requires: labels(names), ..SubmitOptions::default() }
}

#[track_caller]
fn assert_unknown_encoder(result: Result<Job, SubmitError>, name: &str) {
    match result {
        Err(SubmitError::UnknownName(e)) => assert_eq!((e.kind, e.name.as_str()), (NameKind::Encoder, name)),
        other => panic!("expected unknown encoder {name}, got {other:?}"),
    }
}

/// Polls `f` until it gives `Some`, for at most 10 s.
async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = f().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An API node (whose own ffmpeg has only libx264) checks a job's encoder against the ffmpeg
/// of the worker nodes that could take it: `h264_nvenc` is valid for a job requiring `gpu`
/// when the gpu node has it, refused for a job any node may take (the cpu node lacks it), and
/// a job no live node can take is not checked by name but says why it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_checks_names_against_the_ffmpeg_of_the_nodes_that_could_take_the_job() {
    let api = node(registration("api-1", NodeRole::Api, Vec::new(), encoders(&["libx264"])), 0);
    api.jobs.register_node().await.unwrap();
    let gpu = registration("gpu-1", NodeRole::Worker, labels(&["gpu"]), encoders(&["libx264", "h264_nvenc"]));
    assert!(api.store.register_node(&gpu, LOST_AFTER, None).await.unwrap());
    let cpu = registration("cpu-1", NodeRole::Worker, Vec::new(), encoders(&["libx264", "libx265"]));
    assert!(api.store.register_node(&cpu, LOST_AFTER, None).await.unwrap());

    let nvenc = "-i a.mp4 -c:v h264_nvenc b.mp4";
    let job = api.jobs.submit(nvenc, requiring(&["gpu"])).await.unwrap();
    assert_eq!((job.status, job.requires.clone(), job.waiting_reason), (JobStatus::Queued, labels(&["gpu"]), None));
    assert_unknown_encoder(api.jobs.submit(nvenc, SubmitOptions::default()).await, "h264_nvenc");
    assert_unknown_encoder(api.jobs.submit("-i a.mp4 -c:v libx265 b.mp4", requiring(&["gpu"])).await, "libx265");
    api.jobs.submit("-i a.mp4 -c:v libx265 b.mp4", SubmitOptions::default()).await.unwrap_err();
    api.jobs.submit("-i a.mp4 -c:v libx264 b.mp4", SubmitOptions::default()).await.unwrap();

    let waiting = api.jobs.submit("-i a.mp4 -c:v no_such_encoder b.mp4", requiring(&["arm", "gpu"])).await.unwrap();
    assert_eq!(waiting.waiting_reason.as_deref(), Some("no live node has labels [arm, gpu]"));
    let read = api.jobs.get(&waiting.id).await.unwrap();
    assert_eq!(read.waiting_reason.as_deref(), Some("no live node has labels [arm, gpu]"));
    assert_eq!(api.store.get(&waiting.id).await.unwrap().unwrap().waiting_reason, None, "not stored");
    let page = api.jobs.list(&jobs::ListQuery { statuses: Vec::new(), after_seq: None, limit: 10 }).await.unwrap();
    let reasons: Vec<Option<&str>> = page.jobs.iter().map(|j| j.waiting_reason.as_deref()).collect();
    // The libx264 job writes `b.mp4` too: it waits for the gpu job. So does the last one, but
    // that no live node may take it comes first.
    let blocked = format!("waits for {} (submitted earlier; it writes `b.mp4`)", job.id);
    assert_eq!(reasons, [None, Some(blocked.as_str()), Some("no live node has labels [arm, gpu]")]);

    // A draining gpu node takes no new job: the gpu job now says why it waits.
    let beat = Heartbeat { draining: true, running_jobs: Vec::new() };
    api.store.heartbeat_node(&gpu, &beat).await.unwrap();
    let reason =
        eventually("the reason of the gpu job", async || api.jobs.get(&job.id).await.unwrap().waiting_reason).await;
    assert_eq!(reason, "no live node has labels [gpu]");
    // Without any live node that may take it, a job that requires nothing is checked against
    // this node's own ffmpeg.
    api.store.remove_node(&cpu).await.unwrap();
    eventually("cpu-1 gone from the view", async || {
        let refused = api.jobs.submit("-i a.mp4 -c:v libx265 b.mp4", SubmitOptions::default()).await.is_err();
        let job = api.jobs.submit("-i a.mp4 b.mp4", SubmitOptions::default()).await.unwrap();
        (refused && job.waiting_reason.as_deref() == Some("no live worker node")).then_some(())
    })
    .await;
}

/// Every representation of a waiting job says why it waits: the status event on the event
/// bus (what `/events` and a job's own stream send) carries the `waiting_reason` that `get`
/// answers, and none for a job a live node may take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_events_of_a_waiting_job_carry_its_waiting_reason() {
    let api = node(registration("api-1", NodeRole::Api, Vec::new(), encoders(&["libx264"])), 0);
    api.jobs.register_node().await.unwrap();
    let cpu = registration("cpu-1", NodeRole::Worker, Vec::new(), encoders(&["libx264"]));
    assert!(api.store.register_node(&cpu, LOST_AFTER, None).await.unwrap());
    let mut all = api.jobs.all_events(AllFilter::default());
    let mut next_status = async || match tokio::time::timeout(Duration::from_secs(10), all.next()).await {
        Ok(Some(AllItem::Event(Event::Status(job)))) => job,
        other => panic!("expected a status event, got {other:?}"),
    };

    let waiting = api.jobs.submit("-i a.mp4 b.mp4", requiring(&["gpu"])).await.unwrap();
    let reason = Some("no live node has labels [gpu]");
    assert_eq!(waiting.waiting_reason.as_deref(), reason);
    let published = next_status().await;
    assert_eq!((&published.id, published.waiting_reason.as_deref()), (&waiting.id, reason));
    let Ok(Resume::Events(mut stream)) = api.jobs.events_of(&waiting.id, None).await else {
        panic!("a waiting job has a stream")
    };
    match stream.next().await {
        Some(Event::Status(job)) => assert_eq!(job.waiting_reason.as_deref(), reason),
        other => panic!("expected its status, got {other:?}"),
    }

    let plain = api.jobs.submit("-i a.mp4 c.mp4", SubmitOptions::default()).await.unwrap();
    let published = next_status().await;
    assert_eq!((&published.id, published.waiting_reason.as_deref()), (&plain.id, None));
}

/// J3 (tester): a job held back by an earlier conflicting job says which, while this node's
/// slot is free, on an SQLite store (`JobStore::held_back`), in `get` and `list`; the earlier job, which no live node may take, says that. Once that job is
/// cancelled, the reader runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_back_by_an_earlier_conflicting_one_says_which() {
    let store: Arc<dyn JobStore> = Arc::new(jobs::SqliteStore::open_in_memory().await.unwrap());
    let n = node_on(registration("cpu-1", NodeRole::All, Vec::new(), encoders(&[])), 1, store);
    n.jobs.register_node().await.unwrap();
    let shutdown = Shutdown::default();
    let mut workers = n.jobs.spawn_workers(&shutdown);

    let blocker = n.jobs.submit("-i in/a.mp4 -t 1 ord1/g.mp4", requiring(&["nolabel"])).await.unwrap();
    let options = SubmitOptions { priority: 30, ..SubmitOptions::default() };
    let reader = n.jobs.submit("-i ord1/g.mp4 -c copy ord1/g2.mp4", options).await.unwrap();
    let expected = format!("waits for {} (submitted earlier; it writes `ord1/g.mp4`)", blocker.id);
    let reason = eventually("the reader's waiting reason", async || {
        n.jobs.get(&reader.id).await.unwrap().waiting_reason.filter(|r| r.starts_with("waits for"))
    })
    .await;
    assert_eq!(reason, expected);
    let page = n.jobs.list(&jobs::ListQuery { statuses: Vec::new(), after_seq: None, limit: 10 }).await.unwrap();
    let reasons: Vec<Option<&str>> = page.jobs.iter().map(|j| j.waiting_reason.as_deref()).collect();
    assert_eq!(reasons, [Some("no live node has labels [nolabel]"), Some(expected.as_str())]);

    n.jobs.cancel(&blocker.id).await.unwrap();
    eventually("the reader running", async || {
        (n.store.get(&reader.id).await.unwrap().unwrap().status == JobStatus::Running).then_some(())
    })
    .await;
    n.runner.release.cancel();
    shutdown.stop_claiming.cancel();
    while workers.join_next().await.is_some() {}
}

/// K9 (tester): every node says why a queued job waits, and the same, whatever its role and
/// whatever its own workers have looked at: an API node (which claims nothing) and the worker
/// node, each over its own store on one database, from the answer to the submit on (`get`,
/// `list`). A job held back by the running job whose output it reads names it; a job that only
/// waits for a slot says that the worker's one slot is busy (from its heartbeat on the API
/// node, from its own count on the worker); a job no live node may take says so. Once the run
/// ends, the waiting jobs run one by one.
async fn every_node_explains_a_waiting_job_alike(api_store: Arc<dyn JobStore>, worker_store: Arc<dyn JobStore>) {
    let worker = node_on(registration("w-1", NodeRole::Worker, Vec::new(), encoders(&[])), 1, worker_store);
    worker.jobs.register_node().await.unwrap();
    let (draining, stop) = (CancellationToken::new(), CancellationToken::new());
    let heartbeats = {
        let (jobs, draining, stop) = (Arc::clone(&worker.jobs), draining.clone(), stop.clone());
        tokio::spawn(async move { jobs.run_node(draining, stop).await })
    };
    let shutdown = Shutdown::default();
    let mut workers = worker.jobs.spawn_workers(&shutdown);
    let api = node_on(registration("api-1", NodeRole::Api, Vec::new(), encoders(&[])), 0, api_store);
    api.jobs.register_node().await.unwrap();

    let writer = api.jobs.submit("-i in/a.mp4 -t 1 x/a.mp4", SubmitOptions::default()).await.unwrap();
    // (The API node's view of the registry, as its answers read it: at most a second old.)
    eventually("the writer running, in the worker's heartbeat", async || {
        let nodes = api.jobs.directory().unwrap().live().await.unwrap();
        nodes.iter().any(|n| n.id == "w-1" && n.running_jobs == [writer.id.clone()]).then_some(())
    })
    .await;
    let reader = api.jobs.submit("-i x/a.mp4 -c copy y/b.mp4", SubmitOptions::default()).await.unwrap();
    let plain = api.jobs.submit("-i in/a.mp4 -t 1 z/c.mp4", SubmitOptions::default()).await.unwrap();
    let gpu = api.jobs.submit("-i in/a.mp4 -t 1 g/d.mp4", requiring(&["gpu"])).await.unwrap();
    let held = format!("waits for {} (running; it writes `x/a.mp4`)", writer.id);
    let busy = "the one slot of the live node that can take it is busy";
    let expected = [Some(held.as_str()), Some(busy), Some("no live node has labels [gpu]")];
    let submitted = [&reader, &plain, &gpu].map(|j| j.waiting_reason.as_deref());
    assert_eq!(submitted, expected, "the answers to the submits");
    for (name, n) in [("api", &api), ("worker", &worker)] {
        let mut read = Vec::new();
        for job in [&reader, &plain, &gpu] {
            read.push(n.jobs.get(&job.id).await.unwrap().waiting_reason);
        }
        assert_eq!(read.iter().map(Option::as_deref).collect::<Vec<_>>(), expected, "get on the {name} node");
        let page = n.jobs.list(&jobs::ListQuery { statuses: Vec::new(), after_seq: None, limit: 10 }).await.unwrap();
        let listed: Vec<Option<&str>> = page.jobs.iter().map(|j| j.waiting_reason.as_deref()).collect();
        assert_eq!(listed, [None, expected[0], expected[1], expected[2]], "list on the {name} node");
    }

    worker.runner.release.cancel();
    for job in [&writer, &reader, &plain] {
        eventually("the job ended", async || {
            worker.store.get(&job.id).await.unwrap().unwrap().status.is_finished().then_some(())
        })
        .await;
    }
    shutdown.stop_claiming.cancel();
    while workers.join_next().await.is_some() {}
    stop.cancel();
    heartbeats.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_explains_a_waiting_job_alike_on_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let api: Arc<dyn JobStore> = Arc::new(jobs::SqliteStore::open_path(&path).await.unwrap());
    let worker: Arc<dyn JobStore> = Arc::new(jobs::SqliteStore::open_path(&path).await.unwrap());
    every_node_explains_a_waiting_job_alike(api, worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_explains_a_waiting_job_alike_on_postgres() {
    use jobs::postgres::{PgSettings, PgStore};
    let url = tokio::task::spawn_blocking(|| pg_harness::shared().fresh_database()).await.unwrap();
    let open = async |node: &str| {
        let settings = PgSettings { node_id: node.to_owned(), ..PgSettings::default() };
        Arc::new(PgStore::open(&url, settings).await.unwrap()) as Arc<dyn JobStore>
    };
    every_node_explains_a_waiting_job_alike(open("api-1").await, open("w-1").await).await;
}

/// A node claims only the jobs its labels cover, publishes the jobs it runs with its
/// heartbeats, shows as draining once told, and leaves the registry when it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_only_what_its_labels_cover_and_publishes_its_running_jobs() {
    let me = registration("gpu-1", NodeRole::All, labels(&["gpu"]), encoders(&[]));
    let n = node(me, 2);
    n.jobs.register_node().await.unwrap();
    let (draining, stop) = (CancellationToken::new(), CancellationToken::new());
    let heartbeats = {
        let (jobs, draining, stop) = (Arc::clone(&n.jobs), draining.clone(), stop.clone());
        tokio::spawn(async move { jobs.run_node(draining, stop).await })
    };
    let shutdown = Shutdown::default();
    let mut workers = n.jobs.spawn_workers(&shutdown);

    let nvenc = n.jobs.submit("-i a.mp4 n.mp4", requiring(&["gpu", "nvenc"])).await.unwrap();
    assert_eq!(nvenc.waiting_reason.as_deref(), Some("no live node has labels [gpu, nvenc]"));
    let gpu = n.jobs.submit("-i a.mp4 g.mp4", requiring(&["gpu"])).await.unwrap();
    let plain = n.jobs.submit("-i a.mp4 p.mp4", SubmitOptions::default()).await.unwrap();
    let me = |nodes: Vec<Node>| nodes.into_iter().find(|n| n.id == "gpu-1").unwrap();
    let mut running: Vec<JobId> = eventually("both jobs running and published", async || {
        let node = me(n.jobs.nodes().await.unwrap());
        (node.running_jobs.len() == 2).then_some(node.running_jobs)
    })
    .await;
    running.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut expected = vec![gpu.id.clone(), plain.id.clone()];
    expected.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(running, expected);
    n.runner.release.cancel();
    for id in [&gpu.id, &plain.id] {
        // (Failed: the runner wrote no file, so nothing was encoded.)
        eventually("the job finished", async || {
            n.store.get(id).await.unwrap().unwrap().status.is_finished().then_some(())
        })
        .await;
    }
    eventually("no running job published", async || {
        me(n.jobs.nodes().await.unwrap()).running_jobs.is_empty().then_some(())
    })
    .await;
    let queued = n.jobs.get(&nvenc.id).await.unwrap();
    assert_eq!(
        (queued.status, queued.waiting_reason.as_deref()),
        (JobStatus::Queued, Some("no live node has labels [gpu, nvenc]"))
    );

    draining.cancel();
    shutdown.stop_claiming.cancel();
    eventually("draining", async || (me(n.jobs.nodes().await.unwrap()).state == NodeState::Draining).then_some(()))
        .await;
    while workers.join_next().await.is_some() {}
    stop.cancel();
    heartbeats.await.unwrap();
    assert!(n.jobs.nodes().await.unwrap().is_empty(), "a node that stopped leaves the registry");
}

/// A node id belongs to one live process ([`NodeDirectory::register`], tester F18): a start
/// whose id a live node beats with is refused (`InUse`, naming the other's host) once it sees
/// that heartbeat move, and changes nothing; a start whose earlier process is known to be gone
/// (it ran on this machine and its pid is free: a crash, then a restart) replaces it at once;
/// an earlier start that went silent is replaced once it is lost (after the lease); a start
/// that was replaced while it still beats finds itself superseded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_id_in_use_by_a_live_start_is_refused_and_a_gone_one_replaced() {
    use jobs::nodes::{NodeDirectory, NodeLife, RegisterError};
    let this_machine = jobs::nodes::this_process().unwrap().rsplit_once(' ').unwrap().0.to_owned();
    let start = |store: &Arc<dyn JobStore>, lease: Duration, host: &str, process: Option<String>| {
        let registration = NodeRegistration {
            host: host.to_owned(),
            process,
            started_at: time::OffsetDateTime::now_utc(),
            ..registration("w2", NodeRole::Worker, Vec::new(), encoders(&[]))
        };
        let settings = NodeSettings { registration, lost_after: lease, retention: Duration::MAX };
        Arc::new(NodeDirectory::new(Arc::clone(store), settings))
    };
    let hosts = async |store: &Arc<dyn JobStore>| {
        store.nodes(Duration::from_secs(3600)).await.unwrap().into_iter().map(|n| n.host).collect::<Vec<_>>()
    };

    // A live start (its process unknown: say, on another machine) beats every second.
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let lease = Duration::from_secs(3);
    let first = start(&store, lease, "a", None);
    first.register().await.unwrap();
    let stop = CancellationToken::new();
    let life = {
        let (first, stop) = (Arc::clone(&first), stop.clone());
        tokio::spawn(async move { first.run(Vec::new, CancellationToken::new(), stop).await })
    };
    // A second start is refused once it saw the first's heartbeat move (had it waited for the
    // first to be lost, it would have registered).
    match start(&store, lease, "b", None).register().await {
        Err(RegisterError::InUse { id, host, .. }) => assert_eq!((id.as_str(), host.as_str()), ("w2", "a")),
        other => panic!("expected the id in use, got {other:?}"),
    }
    assert_eq!(hosts(&store).await, ["a"]);
    // Replaced after all (as a start that knew it gone would): the first, beating on, finds
    // itself superseded and leaves the id alone.
    let replacing = start(&store, lease, "c", None);
    let replacing = &replacing.settings().registration;
    assert!(store.register_node(replacing, lease, Some(first.settings().registration.started_at)).await.unwrap());
    let ended = tokio::time::timeout(lease * 4, life).await.expect("the first start's heartbeats end").unwrap();
    assert_eq!(ended, NodeLife::Superseded);
    assert_eq!(hosts(&store).await, ["c"]);
    // That start is silent (no heartbeat task): the next one waits for it to be lost.
    let started = Instant::now();
    start(&store, lease, "d", None).register().await.unwrap();
    assert!(started.elapsed() >= lease / 2, "waited for the silent start to be lost: {:?}", started.elapsed());
    assert_eq!(hosts(&store).await, ["d"]);
    stop.cancel();

    // A start of this machine whose process is gone (a free pid: it crashed) is replaced at
    // once, long before its hour-long lease ends.
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let hour = Duration::from_secs(3600);
    start(&store, hour, "e", Some(format!("{this_machine} 4294967295"))).register().await.unwrap();
    // (Its process: this test's parent, alive.)
    let parent = std::os::unix::process::parent_id();
    let restart = start(&store, hour, "f", Some(format!("{this_machine} {parent}")));
    tokio::time::timeout(Duration::from_secs(30), restart.register()).await.expect("registered at once").unwrap();
    assert_eq!(hosts(&store).await, ["f"]);
    // Its process is alive: a start after it waits (for its heartbeat to move, or the lease).
    let waiting = tokio::time::timeout(Duration::from_secs(2), start(&store, hour, "g", None).register()).await;
    assert!(waiting.is_err(), "a live process's start is not replaced: {waiting:?}");
}

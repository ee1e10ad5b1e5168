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
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let runner = Arc::new(HeldRunner::default());
    let config = JobsConfig {
        concurrency,
        idle_wait: Duration::from_millis(100),
        capabilities: me.capabilities.clone(),
        node: Some(NodeSettings { registration: me, lost_after: Duration::from_secs(30), retention: Duration::MAX }),
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
    api.store.register_node(&gpu).await.unwrap();
    let cpu = registration("cpu-1", NodeRole::Worker, Vec::new(), encoders(&["libx264", "libx265"]));
    api.store.register_node(&cpu).await.unwrap();

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
    let page = api.jobs.list(&jobs::ListQuery { status: None, after_seq: None, limit: 10 }).await.unwrap();
    let reasons: Vec<Option<&str>> = page.jobs.iter().map(|j| j.waiting_reason.as_deref()).collect();
    assert_eq!(reasons, [None, None, Some("no live node has labels [arm, gpu]")]);

    // A draining gpu node takes no new job: the gpu job now says why it waits.
    let beat = Heartbeat { draining: true, running_jobs: Vec::new() };
    api.store.heartbeat_node("gpu-1", &beat).await.unwrap();
    let reason =
        eventually("the reason of the gpu job", async || api.jobs.get(&job.id).await.unwrap().waiting_reason).await;
    assert_eq!(reason, "no live node has labels [gpu]");
    // Without any live node that may take it, a job that requires nothing is checked against
    // this node's own ffmpeg.
    api.store.remove_node("cpu-1").await.unwrap();
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
    api.store.register_node(&cpu).await.unwrap();
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

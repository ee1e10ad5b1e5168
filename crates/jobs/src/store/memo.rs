//! [`ClaimMemo`]: what the claims of one SQL store remember between passes about the jobs
//! they read, so that a queue whose head cannot start (jobs that read what a running job
//! writes, jobs requiring labels this node lacks, jobs waiting for their `retry_at`) costs a
//! claim little more than reading it, not a comparison of every queued job with every earlier
//! one on every pass.
//!
//! Per job (by `seq`) it keeps what never changes once the job is stored: its footprint,
//! decoded once, and its required labels. For a job a pass found held back by a conflict, it
//! keeps the job that held it back (the *blocker*: a running job, or an earlier-submitted
//! queued one, whose footprint conflicts with its own). The next pass passes over that job
//! as long as its blocker still holds it back in the snapshot that pass reads (still running,
//! or still queued or running and submitted earlier): the same answer the full check gives,
//! found in one look-up. Only a job whose blocker ended (or was put back in the queue behind
//! it) is checked again, and a new job once. The memo is a cache, never state: every answer
//! it gives is re-checked against the pass's own snapshot, so it holds across processes and
//! nodes sharing the database just as the full check does.
//!
//! It also keeps the footprints [`JobStore::held_back`](super::JobStore::held_back) reads of
//! jobs the claims have not seen (all of them on a node that runs no jobs), each decoded once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ffmpeg_core::footprint::Footprint;

use super::StoreError;
use super::plan::decode_footprint;
use crate::sqlite::rows::labels as labels_of;

/// Most footprints kept for [`JobStore::held_back`](super::JobStore::held_back) beside the
/// claims' own ([`Memo::keep_read`]).
const MAX_READ: usize = 4096;

/// The claims' memo of one store ([module docs](self)).
#[derive(Debug, Default)]
pub(crate) struct ClaimMemo(Mutex<Memo>);

impl ClaimMemo {
    /// The memo, for one pass (claims of one store take it in turn; a pass holds it only
    /// while it plans, never across a statement).
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many full checks of a job against the running and earlier queued jobs the claims
    /// made so far (each compares one job's footprint with up to every other active job's).
    #[cfg(test)]
    pub(crate) fn checks(&self) -> u64 {
        self.lock().checks
    }
}

/// The memo's contents.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    jobs: HashMap<i64, Known>,
    /// How many queued jobs, in claim order, the latest pass read to find a job that may
    /// start (or the whole queue): where the next pass starts reading.
    pub(crate) page: usize,
    /// Full checks made ([`ClaimMemo::checks`]).
    pub(crate) checks: u64,
    /// The footprints [`JobStore::held_back`](super::JobStore::held_back) read of jobs the
    /// claims did not know (on a node that runs no jobs: every job), by seq; at most
    /// [`MAX_READ`].
    read: HashMap<i64, Option<Arc<Footprint>>>,
}

/// What the memo knows of one job.
#[derive(Debug)]
pub(crate) struct Known {
    /// Its footprint (`None`: unknown, it may touch any file).
    pub(crate) footprint: Option<Arc<Footprint>>,
    /// The labels it requires (`None`: not read yet, it was seen running only).
    pub(crate) requires: Option<Vec<String>>,
    /// The job that held it back at its latest check, if one did.
    pub(crate) blocker: Option<i64>,
}

impl Memo {
    /// Learns job `seq` from its stored footprint (JSON) and, for a queued job, its required
    /// labels (a JSON array); what is known already is not decoded again.
    pub(crate) fn learn(
        &mut self,
        seq: i64,
        footprint: Option<&str>,
        requires: Option<&str>,
    ) -> Result<(), StoreError> {
        let known = match self.jobs.entry(seq) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(vacant) => {
                let footprint = footprint.map(decode_footprint).transpose()?.map(Arc::new);
                vacant.insert(Known { footprint, requires: None, blocker: None })
            }
        };
        if known.requires.is_none()
            && let Some(requires) = requires
        {
            known.requires = Some(labels_of(requires, "requires")?);
        }
        Ok(())
    }

    /// Job `seq`, once learnt.
    pub(crate) fn get(&self, seq: i64) -> Option<&Known> {
        self.jobs.get(&seq)
    }

    /// The footprint of job `seq` (`Some(None)`: unknown, it may touch any file), if the claims
    /// or [`JobStore::held_back`](super::JobStore::held_back) read it already.
    pub(crate) fn footprint(&self, seq: i64) -> Option<Option<Arc<Footprint>>> {
        self.jobs.get(&seq).map(|k| k.footprint.clone()).or_else(|| self.read.get(&seq).cloned())
    }

    /// Keeps the footprints `held_back` read (by seq) beside what it knew; past
    /// [`MAX_READ`] of them, only these.
    pub(crate) fn keep_read(&mut self, read: Vec<(i64, Option<Arc<Footprint>>)>) {
        if self.read.len() + read.len() > MAX_READ {
            self.read.clear();
        }
        self.read.extend(read);
    }

    /// Records what held job `seq` back at its check just made (`None`: nothing).
    pub(crate) fn set_blocker(&mut self, seq: i64, blocker: Option<i64>) {
        if let Some(known) = self.jobs.get_mut(&seq) {
            known.blocker = blocker;
        }
    }

    /// Forgets the jobs not among `active` (the `count` queued and running jobs a pass read),
    /// once it knows more jobs than that pass read the whole queue (`complete`), or more than
    /// twice as many; the memo stays in proportion to the active jobs.
    pub(crate) fn prune(&mut self, complete: bool, count: usize, active: impl Iterator<Item = i64>) {
        if self.jobs.len() <= count || (!complete && self.jobs.len() <= 2 * count + 1024) {
            return;
        }
        let active: std::collections::HashSet<i64> = active.collect();
        self.jobs.retain(|seq, _| active.contains(seq));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ffmpeg_core::command::Command;
    use ffmpeg_core::sandbox::Sandbox;

    use super::Footprint;

    use crate::model::{JobId, SubmitOptions};
    use crate::store::{JobStore, Outcome};
    use crate::{MemoryStore, SqliteStore};

    fn options(command: &str, requires: &[&str]) -> SubmitOptions {
        let dir = tempfile::TempDir::new().unwrap();
        let sandbox = Sandbox::new(dir.path()).unwrap();
        let footprint = Footprint::of(&sandbox.resolve_command(&Command::parse(command).unwrap()).unwrap());
        SubmitOptions { footprint, requires: requires.iter().map(|l| (*l).to_owned()).collect(), ..Default::default() }
    }

    async fn insert(store: &dyn JobStore, command: &str, requires: &[&str]) -> JobId {
        store.insert(command.to_owned(), options(command, requires)).await.unwrap().id
    }

    /// The command of the job claimed (ids differ between stores).
    async fn claim(store: &dyn JobStore) -> Option<String> {
        store.claim_next(&[]).await.unwrap().map(|j| j.command)
    }

    /// I5: a free slot and a backlog that cannot start (jobs reading what a running job
    /// writes, jobs requiring a label this node lacks, jobs held back by an earlier queued
    /// one): each job is compared with the others once, not again on every later claim; a
    /// claim after a new job compares only that job; once the writer ends, the next claim
    /// takes the first reader after a few comparisons. The same jobs are claimed as by the
    /// memory store (which keeps no memo), the reference.
    #[tokio::test]
    async fn a_blocked_backlog_is_compared_once_not_on_every_claim() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let reference = MemoryStore::new();
        let stores: [&dyn JobStore; 2] = [&store, &reference];
        let checks = || store.memo.checks();
        for s in stores {
            insert(s, "-f lavfi -i testsrc -t 9 w/big.mp4", &[]).await;
            assert_eq!(claim(s).await.as_deref(), Some("-f lavfi -i testsrc -t 9 w/big.mp4"));
            // Queued behind a gpu job writing `g.mp4` (this node lacks the label), its readers.
            insert(s, "-f lavfi -i testsrc g.mp4", &["gpu"]).await;
            for i in 0..40 {
                insert(s, &format!("-i w/big.mp4 -t 1 r/o{i}.mp4"), &[]).await;
                insert(s, &format!("-i g.mp4 -t 1 g/o{i}.mp4"), &[]).await;
                insert(s, &format!("-i in.mp4 -t 1 l/o{i}.mp4"), &["gpu"]).await;
            }
        }
        let start = checks();
        assert_eq!(claim(&store).await, None);
        assert_eq!(claim(&reference).await, None);
        let first = checks();
        assert_eq!(first - start, 80, "each reader compared once (the gpu jobs are passed over by their labels)");
        for _ in 0..5 {
            assert_eq!(claim(&store).await, None);
        }
        assert_eq!(checks(), first, "nothing changed: no job compared again");

        for s in stores {
            insert(s, "-i w/big.mp4 -t 1 r/late.mp4", &[]).await;
            assert_eq!(claim(s).await, None);
        }
        assert_eq!(checks(), first + 1, "a new job: only it is compared");

        // The writer ends: its 41 readers may start; the first one is claimed at once.
        for s in stores {
            let writer =
                s.list(&crate::store::ListQuery { limit: 1, ..Default::default() }).await.unwrap()[0].id.clone();
            s.finish(&writer, Outcome::Completed { output_files: vec![], outputs: vec![] }, "").await.unwrap();
        }
        let before = checks();
        let (taken, expected) = (claim(&store).await, claim(&reference).await);
        assert!(taken.is_some());
        assert_eq!(taken, expected, "the same job as the reference");
        assert!(checks() - before <= 2, "{} comparisons to find the first reader", checks() - before);
        // The others follow one by one, each claim comparing a job or two, in the same order.
        for _ in 0..40 {
            let before = checks();
            let (taken, expected) = (claim(&store).await, claim(&reference).await);
            assert_eq!(taken, expected);
            assert!(checks() - before <= 2, "{} comparisons for one claim", checks() - before);
        }
        assert_eq!(claim(&store).await, None, "the readers of g.mp4 wait for the gpu job, the rest need gpu");
        assert_eq!(claim(&reference).await, None);
    }
}

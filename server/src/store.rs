//! The durable side of the queue: jobs, their chunks and accepted results.
//!
//! Leases are deliberately *not* part of the store: they are transient and
//! live in the [`Coordinator`](crate::coordinator::Coordinator). After a
//! restart every chunk without an accepted result is simply queued again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crowdfactor_protocol::{ChunkId, WorkerKind};
use serde::Serialize;

/// Identifies a job.
pub type JobId = u64;

/// What the store knows about a job.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    /// The job's id.
    pub id: JobId,
    /// How many numbers the job has.
    pub total: u64,
    /// How many of them have an accepted result.
    pub done: u64,
    /// Numbers per chunk.
    pub chunk_size: u32,
    /// How many chunks the job was cut into.
    pub chunks: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When the last result was accepted, if the job is done.
    pub finished_ms: Option<u64>,
    /// Numbers factored by each kind of worker.
    pub by_kind: ByKind,
    /// Higher runs first; equal priorities run oldest first.
    pub priority: i32,
    /// Cancelled jobs keep their results but get no more work.
    pub cancelled: bool,
}

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The numbers, in order.
    pub numbers: Vec<u128>,
    /// Numbers per chunk.
    pub chunk_size: u32,
    /// Scheduling priority (higher first).
    pub priority: i32,
}

/// Per-kind counters.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ByKind {
    /// Numbers factored by native workers.
    pub native: u64,
    /// Numbers factored by browser workers.
    pub browser: u64,
}

impl ByKind {
    fn add(&mut self, kind: WorkerKind, count: u64) {
        match kind {
            WorkerKind::Native => self.native += count,
            WorkerKind::Browser => self.browser += count,
        }
    }
}

/// A chunk that still needs a result.
#[derive(Debug, Clone)]
pub struct ChunkWork {
    /// The chunk's id.
    pub id: ChunkId,
    /// Its job.
    pub job: JobId,
    /// Its job's priority.
    pub priority: i32,
    /// The numbers to factor.
    pub numbers: Arc<[u128]>,
}

/// Outcome of [`Store::complete_chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The results were stored; `job_done` tells whether that finished the job.
    Accepted {
        /// Whether the job now has every result.
        job_done: bool,
    },
    /// The chunk already had results (or no longer exists); nothing changed.
    Duplicate,
}

/// Errors of a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The number of results does not match the chunk.
    #[error("chunk {chunk} has {expected} numbers but {got} results were given")]
    ResultCount {
        /// The chunk.
        chunk: ChunkId,
        /// Numbers in the chunk.
        expected: usize,
        /// Results given.
        got: usize,
    },
    /// The backend failed (I/O, database).
    #[error("store backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Storage for jobs, chunks and accepted results. Implementations must be
/// safe to call from many tasks; calls are short and synchronous.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new job cut into chunks of `chunk_size` numbers and returns
    /// it with its chunks (all of them need work).
    fn create_job(&self, job: NewJob) -> Result<(JobInfo, Vec<ChunkWork>), StoreError>;

    /// Marks a job cancelled: its open chunks get no more work and late
    /// results for them are ignored. Returns the job, `None` if unknown.
    fn cancel_job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError>;

    /// Changes a job's priority. Returns the job, `None` if unknown.
    fn set_priority(&self, id: JobId, priority: i32) -> Result<Option<JobInfo>, StoreError>;

    /// Every chunk without results of jobs not cancelled, in job and chunk
    /// order (used at start-up).
    fn incomplete_chunks(&self) -> Result<Vec<ChunkWork>, StoreError>;

    /// Records verified results for a chunk: one factor list per number, in order.
    fn complete_chunk(
        &self,
        chunk: ChunkId,
        factors: Vec<Vec<u128>>,
        kind: WorkerKind,
    ) -> Result<Completion, StoreError>;

    /// One job.
    fn job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError>;

    /// All jobs, oldest first.
    fn jobs(&self) -> Result<Vec<JobInfo>, StoreError>;

    /// Calls `f(n, factors)` for every number of the job in order, with
    /// `None` for numbers without a result yet. Returns false for an unknown job.
    fn visit_results(
        &self,
        id: JobId,
        f: &mut dyn FnMut(u128, Option<&[u128]>),
    ) -> Result<bool, StoreError>;
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// In-memory store: everything is lost when the process exits.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_job: JobId,
    next_chunk: ChunkId,
    jobs: BTreeMap<JobId, MemJob>,
    chunk_index: HashMap<ChunkId, (JobId, usize)>,
}

#[derive(Debug)]
struct MemJob {
    info: JobInfo,
    numbers: Vec<u128>,
    factors: Vec<Option<Vec<u128>>>,
    chunks: Vec<MemChunk>,
}

#[derive(Debug)]
struct MemChunk {
    id: ChunkId,
    start: usize,
    numbers: Arc<[u128]>,
    done: bool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave Inner half-updated in a
        // way later calls would misread, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn create_job(&self, new: NewJob) -> Result<(JobInfo, Vec<ChunkWork>), StoreError> {
        let NewJob {
            numbers,
            chunk_size,
            priority,
        } = new;
        let mut inner = self.lock();
        inner.next_job += 1;
        let id = inner.next_job;
        let size = chunk_size.max(1) as usize;
        let mut chunks = Vec::with_capacity(numbers.len().div_ceil(size));
        let mut work = Vec::with_capacity(chunks.capacity());
        for (i, slice) in numbers.chunks(size).enumerate() {
            inner.next_chunk += 1;
            let chunk_id = inner.next_chunk;
            let nums: Arc<[u128]> = slice.into();
            inner.chunk_index.insert(chunk_id, (id, i));
            chunks.push(MemChunk {
                id: chunk_id,
                start: i * size,
                numbers: nums.clone(),
                done: false,
            });
            work.push(ChunkWork {
                id: chunk_id,
                job: id,
                priority,
                numbers: nums,
            });
        }
        let info = JobInfo {
            id,
            total: numbers.len() as u64,
            done: 0,
            chunk_size,
            chunks: chunks.len() as u64,
            created_ms: now_ms(),
            finished_ms: None,
            by_kind: ByKind::default(),
            priority,
            cancelled: false,
        };
        let factors = vec![None; numbers.len()];
        inner.jobs.insert(
            id,
            MemJob {
                info: info.clone(),
                numbers,
                factors,
                chunks,
            },
        );
        Ok((info, work))
    }

    fn incomplete_chunks(&self) -> Result<Vec<ChunkWork>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .jobs
            .values()
            .filter(|job| !job.info.cancelled)
            .flat_map(|job| {
                job.chunks.iter().filter(|c| !c.done).map(|c| ChunkWork {
                    id: c.id,
                    job: job.info.id,
                    priority: job.info.priority,
                    numbers: c.numbers.clone(),
                })
            })
            .collect())
    }

    fn complete_chunk(
        &self,
        chunk: ChunkId,
        factors: Vec<Vec<u128>>,
        kind: WorkerKind,
    ) -> Result<Completion, StoreError> {
        let mut inner = self.lock();
        let Some(&(job_id, idx)) = inner.chunk_index.get(&chunk) else {
            return Ok(Completion::Duplicate);
        };
        let Some(job) = inner.jobs.get_mut(&job_id) else {
            return Ok(Completion::Duplicate);
        };
        let c = &mut job.chunks[idx];
        if c.done || job.info.cancelled {
            return Ok(Completion::Duplicate);
        }
        if factors.len() != c.numbers.len() {
            return Err(StoreError::ResultCount {
                chunk,
                expected: c.numbers.len(),
                got: factors.len(),
            });
        }
        c.done = true;
        let (start, count) = (c.start, factors.len());
        for (slot, f) in job.factors[start..start + count].iter_mut().zip(factors) {
            *slot = Some(f);
        }
        job.info.done += count as u64;
        job.info.by_kind.add(kind, count as u64);
        let job_done = job.info.done == job.info.total;
        if job_done {
            job.info.finished_ms = Some(now_ms());
        }
        Ok(Completion::Accepted { job_done })
    }

    fn cancel_job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError> {
        let mut inner = self.lock();
        Ok(inner.jobs.get_mut(&id).map(|j| {
            j.info.cancelled = true;
            j.info.clone()
        }))
    }

    fn set_priority(&self, id: JobId, priority: i32) -> Result<Option<JobInfo>, StoreError> {
        let mut inner = self.lock();
        Ok(inner.jobs.get_mut(&id).map(|j| {
            j.info.priority = priority;
            j.info.clone()
        }))
    }

    fn job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError> {
        Ok(self.lock().jobs.get(&id).map(|j| j.info.clone()))
    }

    fn jobs(&self) -> Result<Vec<JobInfo>, StoreError> {
        Ok(self.lock().jobs.values().map(|j| j.info.clone()).collect())
    }

    fn visit_results(
        &self,
        id: JobId,
        f: &mut dyn FnMut(u128, Option<&[u128]>),
    ) -> Result<bool, StoreError> {
        let inner = self.lock();
        let Some(job) = inner.jobs.get(&id) else {
            return Ok(false);
        };
        for (n, fs) in job.numbers.iter().zip(&job.factors) {
            f(*n, fs.as_deref());
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_complete_once_and_job_finishes() {
        let store = MemoryStore::new();
        let (info, chunks) = store
            .create_job(NewJob {
                numbers: vec![4, 6, 9, 10, 15],
                chunk_size: 2,
                priority: 0,
            })
            .expect("create");
        assert_eq!((info.total, info.chunks), (5, 3));
        assert_eq!(chunks[2].numbers.as_ref(), &[15]);
        assert_eq!(store.incomplete_chunks().expect("list").len(), 3);
        let done = store
            .complete_chunk(
                chunks[0].id,
                vec![vec![2, 2], vec![2, 3]],
                WorkerKind::Native,
            )
            .expect("complete");
        assert_eq!(done, Completion::Accepted { job_done: false });
        let again = store
            .complete_chunk(
                chunks[0].id,
                vec![vec![2, 2], vec![2, 3]],
                WorkerKind::Native,
            )
            .expect("complete");
        assert_eq!(again, Completion::Duplicate);
        assert!(store
            .complete_chunk(chunks[1].id, vec![vec![3, 3]], WorkerKind::Native)
            .is_err());
        store
            .complete_chunk(
                chunks[1].id,
                vec![vec![3, 3], vec![2, 5]],
                WorkerKind::Browser,
            )
            .expect("complete");
        let last = store
            .complete_chunk(chunks[2].id, vec![vec![3, 5]], WorkerKind::Native)
            .expect("complete");
        assert_eq!(last, Completion::Accepted { job_done: true });
        let info = store.job(info.id).expect("job").expect("exists");
        assert_eq!((info.done, info.by_kind.browser), (5, 2));
        let mut seen = vec![];
        store
            .visit_results(info.id, &mut |n, f| seen.push((n, f.map(|f| f.to_vec()))))
            .expect("visit");
        assert_eq!(seen[4], (15, Some(vec![3, 5])));
    }
}

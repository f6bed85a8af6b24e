//! The durable side of the queue: jobs, their numbers and accepted results.
//!
//! A job is stored whole (its numbers, in order, or a range's three
//! parameters); results are stored per
//! accepted *span* (a run of consecutive numbers of one job that a worker
//! factored as one chunk). How a job is cut into chunks is not stored: the
//! [`Coordinator`](crate::coordinator::Coordinator) cuts chunks when it leases
//! them, sized for the worker that takes them. After a restart every number
//! without an accepted result is simply queued again.
//!
//! Leases are deliberately *not* part of the store either: they are transient.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};
use std::ops::Range;
#[cfg(any(test, feature = "test-support"))]
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crowdfactor_protocol::{ChunkNumbers, FactorLists, NumberRange, WorkerKind};
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
    /// Most numbers per chunk, if the job set a cap (chunks are otherwise
    /// sized per worker).
    pub chunk_cap: Option<u32>,
    /// Chunks accepted so far.
    pub chunks: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When the job ended: its last result was accepted, or it was
    /// cancelled (`None` while it is open).
    pub finished_ms: Option<u64>,
    /// Numbers factored by each kind of worker.
    pub by_kind: ByKind,
    /// Higher runs first; equal priorities run oldest first.
    pub priority: i32,
    /// Cancelled jobs keep their results but get no more work.
    pub cancelled: bool,
    /// The name its owner gave it, if any.
    pub name: Option<String>,
}

impl JobInfo {
    /// Whether the job still wants work: neither done nor cancelled.
    pub fn is_open(&self) -> bool {
        self.done < self.total && !self.cancelled
    }
}

/// A job's numbers, in order.
///
/// A range is kept as its parameters and its numbers are computed when a
/// chunk is cut, so a range job of ten million numbers costs no memory or
/// disk per number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Numbers {
    /// Numbers given one by one.
    List(List),
    /// `start, start + step, …`: `count` numbers, the last below 2^128.
    Range {
        /// The first number.
        start: u128,
        /// The difference between neighbours (at least 1).
        step: u128,
        /// How many numbers (at least 1).
        count: u64,
    },
}

impl Numbers {
    /// The range `start, start + step, …` of `count` numbers if it is one a
    /// job may have: start, step and count at least 1, and the last number
    /// below 2^128.
    pub fn range(start: u128, step: u128, count: u64) -> Option<Numbers> {
        u128::from(count.checked_sub(1)?)
            .checked_mul(step)?
            .checked_add(start)?;
        (start > 0 && step > 0).then_some(Numbers::Range { start, step, count })
    }

    /// How many numbers.
    pub fn len(&self) -> u64 {
        match self {
            Numbers::List(l) => l.len() as u64,
            Numbers::Range { count, .. } => *count,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the numbers take in memory: a list's, 0 for a range.
    pub fn held_bytes(&self) -> u64 {
        match self {
            Numbers::List(l) => l.held_bytes(),
            Numbers::Range { .. } => 0,
        }
    }

    /// The numbers at indices `start..start + len` (which must lie within
    /// the job): a slice of a range job stays a range, and so does a slice
    /// of a list that rises by one step (workers sieve such a chunk and the
    /// coordinator checks its results with a sieve, 10–20 times faster than
    /// number by number around 10^12: a list that is in step but for a few
    /// numbers, which stays a list, loses that only around them).
    pub fn span(&self, start: u64, len: u64) -> ChunkNumbers {
        match self {
            Numbers::List(l) => {
                let numbers: Vec<u128> = l.span(start, len).collect();
                progression(numbers.iter().copied())
                    .map_or_else(|| numbers.into(), |run| run.span(0, len))
            }
            &Numbers::Range { start: s, step, .. } => {
                let first = s + u128::from(start) * step;
                // Only a span longer than the protocol's range limit (a
                // `--max-chunk-size` beyond it) is listed instead.
                NumberRange::new(first, step, len).map_or_else(
                    |_| {
                        ChunkNumbers::List((0..u128::from(len)).map(|i| first + i * step).collect())
                    },
                    ChunkNumbers::Range,
                )
            }
        }
    }

    /// All the numbers, in order.
    pub fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        let (list, range) = match self {
            Numbers::List(l) => (Some(l.span(0, l.len() as u64)), None),
            &Numbers::Range { start, step, count } => (
                None,
                Some((0..count).map(move |i| start + u128::from(i) * step)),
            ),
        };
        list.into_iter()
            .flatten()
            .chain(range.into_iter().flatten())
    }

    /// The largest number (0 for none).
    pub fn largest(&self) -> u128 {
        match self {
            Numbers::List(l) => l.span(0, l.len() as u64).max().unwrap_or(0),
            Numbers::Range { start, step, count } => {
                start + u128::from(count.saturating_sub(1)) * step
            }
        }
    }
}

impl FromIterator<u128> for Numbers {
    fn from_iter<I: IntoIterator<Item = u128>>(iter: I) -> Self {
        let mut list = ListBuilder::default();
        iter.into_iter().for_each(|n| list.push(n));
        Numbers::List(list.finish())
    }
}

impl From<Vec<u128>> for Numbers {
    fn from(v: Vec<u128>) -> Self {
        v.into_iter().collect()
    }
}

/// A list job's numbers, held for as long as the job is open: 8 bytes
/// each while all of them are below 2^64 (the usual list), 16 otherwise.
/// Built only through [`ListBuilder`], so equal lists are stored alike.
/// Boxed behind the `Arc`: an `Arc<[u64]>` is made by copying the numbers
/// over, which held a 10,000,000-number list twice (80 MB more) as it was
/// created or loaded at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum List {
    /// Every number below 2^64.
    Narrow(Arc<Box<[u64]>>),
    /// At least one number of 2^64 or more.
    Wide(Arc<Box<[u128]>>),
}

impl List {
    /// How many numbers.
    pub fn len(&self) -> usize {
        match self {
            List::Narrow(l) => l.len(),
            List::Wide(l) => l.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the numbers take.
    pub fn held_bytes(&self) -> u64 {
        match self {
            List::Narrow(l) => 8 * l.len() as u64,
            List::Wide(l) => 16 * l.len() as u64,
        }
    }

    /// The numbers at indices `start..start + len` (within the list).
    pub fn span(&self, start: u64, len: u64) -> impl Iterator<Item = u128> + '_ {
        let at = start as usize..(start + len) as usize;
        let (narrow, wide) = match self {
            List::Narrow(l) => (Some(l[at].iter().map(|&n| u128::from(n))), None),
            List::Wide(l) => (None, Some(l[at].iter().copied())),
        };
        narrow
            .into_iter()
            .flatten()
            .chain(wide.into_iter().flatten())
    }
}

/// Collects a [`List`] number by number, narrow until a number needs 128
/// bits: a request of ten million 13-digit numbers peaks at half the
/// memory it would take as `u128`s.
#[derive(Debug, Default)]
pub struct ListBuilder {
    narrow: Vec<u64>,
    /// Empty until a number of 2^64 or more comes; then every number.
    wide: Vec<u128>,
}

impl ListBuilder {
    /// Room for `n` numbers below 2^64.
    pub fn with_capacity(n: usize) -> Self {
        ListBuilder {
            narrow: Vec::with_capacity(n),
            wide: Vec::new(),
        }
    }

    /// Appends `n`.
    pub fn push(&mut self, n: u128) {
        match u64::try_from(n) {
            Ok(small) if self.wide.is_empty() => self.narrow.push(small),
            _ => {
                if self.wide.is_empty() {
                    let narrow = std::mem::take(&mut self.narrow);
                    self.wide = narrow.into_iter().map(u128::from).collect();
                }
                self.wide.push(n);
            }
        }
    }

    /// How many numbers so far.
    pub fn len(&self) -> usize {
        self.narrow.len() + self.wide.len()
    }

    /// Whether there are none yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The numbers as a job keeps them: a range when they are one (two or
    /// more, rising by the same step, as `seq` writes them), else the list.
    /// A range takes no memory or disk per number, its chunks go out as
    /// ranges that workers sieve, and the coordinator checks them by
    /// sieving: 3·10^6 consecutive numbers from 10^12 sent as a list, one
    /// native worker on two cores, took 4.1 s as a list (4.3 s of worker and
    /// 1.3 s of server CPU), 0.62–0.65 s as the range (0.33 and 0.45 s).
    pub fn into_numbers(self) -> Numbers {
        let progression = if self.wide.is_empty() {
            progression(self.narrow.iter().map(|&n| u128::from(n)))
        } else {
            progression(self.wide.iter().copied())
        };
        progression.unwrap_or_else(|| Numbers::List(self.finish()))
    }

    /// The list.
    pub fn finish(self) -> List {
        if self.wide.is_empty() {
            List::Narrow(Arc::new(self.narrow.into_boxed_slice()))
        } else {
            List::Wide(Arc::new(self.wide.into_boxed_slice()))
        }
    }
}

/// `numbers` as a range, if they are two or more rising by one step.
fn progression(numbers: impl Iterator<Item = u128>) -> Option<Numbers> {
    let (start, step, count) = crowdfactor_factor::as_progression(numbers)?;
    Numbers::range(start, step, u64::try_from(count).ok()?)
}

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The numbers, in order.
    pub numbers: Numbers,
    /// Most numbers per chunk (`None`: sized per worker only).
    pub chunk_cap: Option<u32>,
    /// Scheduling priority (higher first).
    pub priority: i32,
    /// A name for people (at most [`NAME_CHARS`] characters, no control
    /// characters: the API checks).
    pub name: Option<String>,
}

/// Most characters of a job's name.
pub const NAME_CHARS: usize = 100;

/// A job that still needs results, as loaded at start-up.
#[derive(Debug, Clone)]
pub struct OpenJob {
    /// The job.
    pub info: JobInfo,
    /// All its numbers, in order.
    pub numbers: Numbers,
    /// Accepted spans as `(start, len)`, ascending and disjoint.
    pub done: Vec<(u64, u64)>,
}

/// A run of consecutive numbers of one job: what one chunk covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The job.
    pub job: JobId,
    /// Index of the first number in the job.
    pub start: u64,
    /// How many numbers.
    pub len: u64,
}

impl Span {
    /// One past the last index.
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
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

/// Outcome of [`Store::complete_span`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The results were stored; `job_done` tells whether that finished the job.
    Accepted {
        /// Whether the job now has every result.
        job_done: bool,
    },
    /// Some of these numbers already have results, or the job is cancelled
    /// or unknown; nothing changed.
    Duplicate,
}

/// Errors of a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The number of results does not match the span, or the span lies
    /// outside its job.
    #[error("span {start}+{len} of job {job} does not fit: {why}")]
    BadSpan {
        /// The job.
        job: JobId,
        /// First index.
        start: u64,
        /// Length.
        len: u64,
        /// What does not fit.
        why: String,
    },
    /// Another coordinator has the database open.
    #[error(
        "it is in use by another crowdfactor-server{}; a database serves one coordinator at a time",
        holder.map(|pid| format!(" (process {pid})")).unwrap_or_default()
    )]
    InUse {
        /// That coordinator's process id, when known.
        holder: Option<u32>,
    },
    /// The backend could not write for want of room (a full disk): nothing
    /// of the write was stored.
    #[error("store is full: {0}")]
    Full(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend failed (I/O, database).
    #[error("store backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Receives the outcome of [`Store::complete_span_then`].
pub type Done = Box<dyn FnOnce(Result<Completion, StoreError>) + Send>;

/// Storage for jobs and accepted results. Implementations must be safe to
/// call from many tasks; calls are short and synchronous.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Called once at a graceful stop, when nothing more will be written:
    /// leaves the durable state complete where an operator would copy it
    /// (for SQLite, the database file alone, without its log). Writes after
    /// it fail.
    fn close(&self) {}

    /// Stores a new job; returns it and its numbers.
    fn create_job(&self, job: NewJob) -> Result<(JobInfo, Numbers), StoreError>;

    /// Marks a job cancelled: it gets no more work and late results for it
    /// are ignored. Returns the job, `None` if unknown.
    fn cancel_job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError>;

    /// Changes a job's priority. Returns the job, `None` if unknown.
    fn set_priority(&self, id: JobId, priority: i32) -> Result<Option<JobInfo>, StoreError>;

    /// Deletes a job with its numbers and results: no reader finds it again,
    /// results for it are ignored like a cancelled job's, and its id is
    /// never given to another job. Returns the job as it was, `None` if
    /// unknown.
    fn delete_job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError>;

    /// Every job that is neither done nor cancelled, oldest first, with its
    /// numbers and accepted spans (used at start-up).
    fn open_jobs(&self) -> Result<Vec<OpenJob>, StoreError>;

    /// Records verified results for a span: one factor list per number, in
    /// order. A span overlapping accepted results is a [`Completion::Duplicate`].
    fn complete_span(
        &self,
        span: Span,
        factors: FactorLists,
        kind: WorkerKind,
    ) -> Result<Completion, StoreError>;

    /// Like [`Store::complete_span`], but hands the outcome to `done`
    /// (possibly on another thread, once durable) instead of blocking the
    /// caller. The default calls `complete_span` and then `done`.
    fn complete_span_then(&self, span: Span, factors: FactorLists, kind: WorkerKind, done: Done) {
        done(self.complete_span(span, factors, kind));
    }

    /// One job.
    fn job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError>;

    /// At most `limit` jobs with an id above `after`, oldest first: a page
    /// of [`Store::jobs`]. A listing read page by page never holds, nor
    /// reads, every job kept at once.
    fn jobs_after(&self, after: JobId, limit: usize) -> Result<Vec<JobInfo>, StoreError>;

    /// All jobs, oldest first (ids start at 1).
    fn jobs(&self) -> Result<Vec<JobInfo>, StoreError> {
        self.jobs_after(0, usize::MAX)
    }

    /// The jobs that ended (done or cancelled) at a time in `during`
    /// (milliseconds since the Unix epoch), oldest first: those `/metrics`
    /// shows, and those past their retention.
    fn ended_during(&self, during: Range<u64>) -> Result<Vec<JobInfo>, StoreError> {
        let mut jobs = self.jobs()?;
        jobs.retain(|j| ended_in(j, &during));
        Ok(jobs)
    }

    /// The open jobs ([`JobInfo::is_open`]) as [`Store::open_jobs`] finds
    /// them, oldest first, without their numbers: what every volunteer's
    /// page polls (`GET /api/status`), so a store that keeps thousands of
    /// finished jobs should not read them all for it.
    fn active_jobs(&self) -> Result<Vec<JobInfo>, StoreError> {
        let mut jobs = self.jobs()?;
        jobs.retain(JobInfo::is_open);
        Ok(jobs)
    }

    /// The latest `limit` jobs that are not open (done or cancelled),
    /// oldest first, and how many such jobs there are in all: what the
    /// dashboard shows of them every second.
    fn latest_finished(&self, limit: usize) -> Result<(Vec<JobInfo>, u64), StoreError> {
        let mut jobs = self.jobs()?;
        jobs.retain(|j| !j.is_open());
        let all = jobs.len();
        Ok((jobs.split_off(all.saturating_sub(limit)), all as u64))
    }

    /// Calls `f(n, factors)` for every number of the job in order, with
    /// `None` for numbers without a result yet. Returns false for an unknown job.
    fn visit_results(
        &self,
        id: JobId,
        f: &mut dyn FnMut(u128, Option<&[u128]>),
    ) -> Result<bool, StoreError>;
}

/// Whether `job` ended (done or cancelled) at a time in `during`: what
/// [`Store::ended_during`] selects.
fn ended_in(job: &JobInfo, during: &Range<u64>) -> bool {
    !job.is_open() && job.finished_ms.is_some_and(|t| during.contains(&t))
}

/// Appends the factor a list stored without its largest one leaves out
/// (protocol 5 results are kept so: see
/// [`FactorLists::largest_left_out`]): `n` over the product of `list`, if
/// above 1. False if that product does not divide `n`, which a verified
/// result never has (a damaged store).
pub(crate) fn restore_largest(n: u128, list: &mut Vec<u128>) -> bool {
    match crowdfactor_factor::largest_left_out(n, list) {
        Ok(largest) => {
            list.extend(largest);
            true
        }
        Err(_) => false,
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Checks that `factors` fits `span` of a job with `total` numbers.
pub(crate) fn check_span(span: Span, total: u64, results: usize) -> Result<(), StoreError> {
    let why = if span.len == 0 {
        "empty span".to_owned()
    } else if span.end() > total {
        format!("the job has {total} numbers")
    } else if results as u64 != span.len {
        format!("{results} results were given")
    } else {
        return Ok(());
    };
    Err(StoreError::BadSpan {
        job: span.job,
        start: span.start,
        len: span.len,
        why,
    })
}

/// In-memory store: everything is lost when the process exits.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_job: JobId,
    jobs: BTreeMap<JobId, MemJob>,
}

#[derive(Debug)]
struct MemJob {
    info: JobInfo,
    numbers: Numbers,
    /// Accepted spans by their first index, with one factor list per
    /// number: nothing is kept for numbers without a result (a queued
    /// 10^7-number range costs no memory until its results come in).
    /// (Shared, so a results stream reads them without holding the lock.)
    spans: BTreeMap<u64, Arc<FactorLists>>,
}

impl MemJob {
    /// Whether any number of `[start, end)` already has a result. Accepted
    /// spans are disjoint, so only the last one starting before `end` can
    /// reach into it (the SQLite store asks the same one question).
    fn overlaps(&self, start: u64, end: u64) -> bool {
        let last = self.spans.range(..end).next_back();
        last.is_some_and(|(s, f)| s + f.len() as u64 > start)
    }
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
    fn create_job(&self, new: NewJob) -> Result<(JobInfo, Numbers), StoreError> {
        let mut inner = self.lock();
        inner.next_job += 1;
        let id = inner.next_job;
        let numbers = new.numbers;
        let info = JobInfo {
            id,
            total: numbers.len(),
            done: 0,
            chunk_cap: new.chunk_cap,
            chunks: 0,
            created_ms: now_ms(),
            finished_ms: None,
            by_kind: ByKind::default(),
            priority: new.priority,
            cancelled: false,
            name: new.name,
        };
        inner.jobs.insert(
            id,
            MemJob {
                info: info.clone(),
                spans: BTreeMap::new(),
                numbers: numbers.clone(),
            },
        );
        Ok((info, numbers))
    }

    fn open_jobs(&self) -> Result<Vec<OpenJob>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .jobs
            .values()
            .filter(|j| !j.info.cancelled && j.info.done < j.info.total)
            .map(|j| {
                let mut done: Vec<(u64, u64)> = vec![];
                for (&start, f) in &j.spans {
                    let len = f.len() as u64;
                    match done.last_mut() {
                        Some((s, l)) if *s + *l == start => *l += len,
                        _ => done.push((start, len)),
                    }
                }
                OpenJob {
                    info: j.info.clone(),
                    numbers: j.numbers.clone(),
                    done,
                }
            })
            .collect())
    }

    fn complete_span(
        &self,
        span: Span,
        factors: FactorLists,
        kind: WorkerKind,
    ) -> Result<Completion, StoreError> {
        let mut inner = self.lock();
        let Some(job) = inner.jobs.get_mut(&span.job) else {
            return Ok(Completion::Duplicate);
        };
        check_span(span, job.info.total, factors.len())?;
        if job.info.cancelled || job.overlaps(span.start, span.end()) {
            return Ok(Completion::Duplicate);
        }
        job.spans
            .insert(span.start, Arc::new(factors.without_source()));
        job.info.done += span.len;
        job.info.chunks += 1;
        job.info.by_kind.add(kind, span.len);
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
            j.info.finished_ms.get_or_insert_with(now_ms);
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

    fn delete_job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError> {
        // `next_job` only grows: the id is not given again.
        Ok(self.lock().jobs.remove(&id).map(|j| j.info))
    }

    fn job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError> {
        Ok(self.lock().jobs.get(&id).map(|j| j.info.clone()))
    }

    fn active_jobs(&self) -> Result<Vec<JobInfo>, StoreError> {
        let st = self.lock();
        let open = st.jobs.values().filter(|j| j.info.is_open());
        Ok(open.map(|j| j.info.clone()).collect())
    }

    fn jobs_after(&self, after: JobId, limit: usize) -> Result<Vec<JobInfo>, StoreError> {
        let st = self.lock();
        let page = st.jobs.range((Excluded(after), Unbounded)).take(limit);
        Ok(page.map(|(_, j)| j.info.clone()).collect())
    }

    fn ended_during(&self, during: Range<u64>) -> Result<Vec<JobInfo>, StoreError> {
        let st = self.lock();
        let ended = st.jobs.values().filter(|j| ended_in(&j.info, &during));
        Ok(ended.map(|j| j.info.clone()).collect())
    }

    /// Clones only the jobs it gives (the default clones every job).
    fn latest_finished(&self, limit: usize) -> Result<(Vec<JobInfo>, u64), StoreError> {
        let st = self.lock();
        let mut finished = st.jobs.values().rev().filter(|j| !j.info.is_open());
        let mut latest: Vec<JobInfo> = finished
            .by_ref()
            .take(limit)
            .map(|j| j.info.clone())
            .collect();
        let all = latest.len() + finished.count();
        latest.reverse();
        Ok((latest, all as u64))
    }

    fn visit_results(
        &self,
        id: JobId,
        f: &mut dyn FnMut(u128, Option<&[u128]>),
    ) -> Result<bool, StoreError> {
        // `f` may block (a results stream waiting for a slow reader): take
        // what it reads and let go of the lock, which every accepted result
        // needs.
        let (numbers, spans) = {
            let inner = self.lock();
            let Some(job) = inner.jobs.get(&id) else {
                return Ok(false);
            };
            let spans: Vec<(u64, Arc<FactorLists>)> =
                job.spans.iter().map(|(&s, f)| (s, Arc::clone(f))).collect();
            (job.numbers.clone(), spans)
        };
        let mut spans = spans.iter().peekable();
        let mut whole = Vec::new();
        for (at, n) in (0u64..).zip(numbers.iter()) {
            while spans
                .peek()
                .is_some_and(|(s, fs)| s + fs.len() as u64 <= at)
            {
                spans.next();
            }
            let found = spans
                .peek()
                .filter(|(s, _)| *s <= at)
                .and_then(|(s, fs)| Some((fs.get((at - s) as usize)?, fs.largest_left_out())));
            match found {
                Some((list, true)) => {
                    whole.clear();
                    whole.extend_from_slice(list);
                    if !restore_largest(n, &mut whole) {
                        return Err(StoreError::BadSpan {
                            job: id,
                            start: at,
                            len: 1,
                            why: "the stored factors do not divide the number".into(),
                        });
                    }
                    f(n, Some(&whole));
                }
                Some((list, false)) => f(n, Some(list)),
                None => f(n, None),
            }
        }
        Ok(true)
    }
}

/// A [`MemoryStore`] whose disk fills, for tests of what the coordinator
/// does then: while it is full, and for the first results it is told to
/// refuse, creating a job or recording a result fails with
/// [`StoreError::Full`] and stores nothing of it.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug, Default)]
pub struct FullDisk {
    inner: MemoryStore,
    full: AtomicBool,
    /// Results still to refuse (then recorded as usual).
    refusals: AtomicU32,
}

#[cfg(any(test, feature = "test-support"))]
impl FullDisk {
    /// A store that refuses its first `results` results, and only those.
    pub fn refusing(results: u32) -> Self {
        FullDisk {
            refusals: results.into(),
            ..FullDisk::default()
        }
    }

    /// Fills the disk (`true`) or frees it.
    pub fn set_full(&self, full: bool) {
        self.full.store(full, SeqCst);
    }

    /// The refusals [`FullDisk::refusing`] asked for that are still to come.
    pub fn refusals_left(&self) -> u32 {
        self.refusals.load(SeqCst)
    }

    fn full() -> StoreError {
        StoreError::Full("database or disk is full".into())
    }

    fn is_full(&self) -> Result<(), StoreError> {
        if self.full.load(SeqCst) {
            return Err(FullDisk::full());
        }
        Ok(())
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Store for FullDisk {
    fn create_job(&self, job: NewJob) -> Result<(JobInfo, Numbers), StoreError> {
        self.is_full()?;
        self.inner.create_job(job)
    }

    fn cancel_job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError> {
        self.inner.cancel_job(id)
    }

    fn set_priority(&self, id: JobId, priority: i32) -> Result<Option<JobInfo>, StoreError> {
        self.inner.set_priority(id, priority)
    }

    fn delete_job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError> {
        self.inner.delete_job(id)
    }

    fn open_jobs(&self) -> Result<Vec<OpenJob>, StoreError> {
        self.inner.open_jobs()
    }

    fn complete_span(
        &self,
        span: Span,
        factors: FactorLists,
        kind: WorkerKind,
    ) -> Result<Completion, StoreError> {
        self.is_full()?;
        let refused = self
            .refusals
            .fetch_update(SeqCst, SeqCst, |left| left.checked_sub(1))
            .is_ok();
        if refused {
            return Err(FullDisk::full());
        }
        self.inner.complete_span(span, factors, kind)
    }

    fn job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError> {
        self.inner.job(id)
    }

    fn active_jobs(&self) -> Result<Vec<JobInfo>, StoreError> {
        self.inner.active_jobs()
    }

    fn jobs_after(&self, after: JobId, limit: usize) -> Result<Vec<JobInfo>, StoreError> {
        self.inner.jobs_after(after, limit)
    }

    fn ended_during(&self, during: Range<u64>) -> Result<Vec<JobInfo>, StoreError> {
        self.inner.ended_during(during)
    }

    fn latest_finished(&self, limit: usize) -> Result<(Vec<JobInfo>, u64), StoreError> {
        self.inner.latest_finished(limit)
    }

    fn visit_results(
        &self,
        id: JobId,
        f: &mut dyn FnMut(u128, Option<&[u128]>),
    ) -> Result<bool, StoreError> {
        self.inner.visit_results(id, f)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A list's slices that rise by one step go out as ranges (workers
    /// sieve them); the rest, and single numbers, as lists.
    #[test]
    fn a_list_sends_its_runs_in_step_as_ranges() {
        let mut list: Vec<u128> = (0..100).map(|i| 999_999_999_999 + 2 * i).collect();
        list.push(7);
        let numbers = Numbers::from(list.clone());
        assert!(matches!(numbers, Numbers::List(_)));
        let ChunkNumbers::Range(run) = numbers.span(10, 90) else {
            panic!("a run in step is listed");
        };
        let first = 999_999_999_999 + 20;
        assert_eq!((run.start(), run.step(), run.count()), (first, 2, 90));
        for (start, len) in [(50, 51), (99, 1), (100, 1)] {
            let span = numbers.span(start, len);
            assert!(matches!(span, ChunkNumbers::List(_)), "{span:?}");
            assert_eq!(
                span.iter().collect::<Vec<_>>(),
                list[start as usize..][..len as usize]
            );
        }
    }

    #[test]
    fn a_list_is_narrow_until_a_number_needs_128_bits() {
        let small: Vec<u128> = vec![1, 12, u128::from(u64::MAX), 5];
        let mut mixed = small.clone();
        mixed.insert(2, 1 << 64);
        mixed.push(u128::MAX);
        let narrow = Numbers::from(small.clone());
        let wide: Numbers = mixed.iter().copied().collect();
        assert!(matches!(&narrow, Numbers::List(List::Narrow(_))));
        assert!(matches!(&wide, Numbers::List(List::Wide(_))));
        for (numbers, want) in [(narrow, small), (wide, mixed)] {
            assert_eq!(numbers.len(), want.len() as u64);
            assert_eq!(numbers.iter().collect::<Vec<_>>(), want);
            assert_eq!(Some(numbers.largest()), want.iter().copied().max());
            for start in 0..want.len() {
                for end in start..=want.len() {
                    let span = numbers.span(start as u64, (end - start) as u64);
                    assert_eq!(span.iter().collect::<Vec<_>>(), want[start..end]);
                }
            }
        }
    }

    #[test]
    fn a_range_reads_like_its_list() {
        for (start, step, count) in [
            (1, 1, 1),
            (999_999_999_999, 2, 1000),
            (u128::MAX - 40, 10, 5),
        ] {
            let range = Numbers::Range { start, step, count };
            let list: Numbers = (0..count).map(|i| start + u128::from(i) * step).collect();
            assert_eq!(range.len(), list.len());
            assert_eq!(
                range.iter().collect::<Vec<_>>(),
                list.iter().collect::<Vec<_>>()
            );
            assert_eq!(range.largest(), list.largest());
            for (at, len) in [(0, count), (count - 1, 1), (count / 2, count - count / 2)] {
                let (r, l) = (range.span(at, len), list.span(at, len));
                assert!(matches!(r, ChunkNumbers::Range(_)), "{r:?}");
                assert_eq!(r.iter().collect::<Vec<_>>(), l.iter().collect::<Vec<_>>());
            }
        }
    }

    /// Exercises any store the same way: spans complete once, overlaps and
    /// misfits are refused, the job finishes, results come back in order.
    pub(crate) fn spans_complete_once(store: &dyn Store) -> JobId {
        let (info, numbers) = store
            .create_job(NewJob {
                name: None,
                numbers: vec![4, 6, 9, 10, 15].into(),
                chunk_cap: Some(2),
                priority: 0,
            })
            .expect("create");
        assert_eq!((info.total, info.chunk_cap), (5, Some(2)));
        assert_eq!(numbers.iter().collect::<Vec<_>>(), [4, 6, 9, 10, 15]);
        let span = |start, len| Span {
            job: info.id,
            start,
            len,
        };
        let ok = store
            .complete_span(
                span(0, 2),
                vec![vec![2, 2], vec![2, 3]].into(),
                WorkerKind::Native,
            )
            .expect("complete");
        assert_eq!(ok, Completion::Accepted { job_done: false });
        for overlapping in [span(0, 2), span(1, 1), span(1, 2)] {
            let factors = vec![vec![3]; overlapping.len as usize];
            assert_eq!(
                store
                    .complete_span(overlapping, factors.into(), WorkerKind::Native)
                    .expect("dup"),
                Completion::Duplicate
            );
        }
        assert!(store
            .complete_span(span(2, 2), vec![vec![3, 3]].into(), WorkerKind::Native)
            .is_err());
        assert!(store
            .complete_span(
                span(4, 2),
                vec![vec![3, 5], vec![1]].into(),
                WorkerKind::Native
            )
            .is_err());
        let open = store.open_jobs().expect("open");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].done, vec![(0, 2)]);
        store
            .complete_span(span(4, 1), vec![vec![3, 5]].into(), WorkerKind::Native)
            .expect("complete");
        let last = store
            .complete_span(
                span(2, 2),
                vec![vec![3, 3], vec![2, 5]].into(),
                WorkerKind::Browser,
            )
            .expect("complete");
        assert_eq!(last, Completion::Accepted { job_done: true });
        let info = store.job(info.id).expect("job").expect("exists");
        assert_eq!((info.done, info.chunks, info.by_kind.browser), (5, 3, 2));
        assert!(info.finished_ms.is_some());
        assert!(store.open_jobs().expect("open").is_empty());
        let mut seen = vec![];
        store
            .visit_results(info.id, &mut |n, f| seen.push((n, f.map(<[u128]>::to_vec))))
            .expect("visit");
        assert_eq!(seen[3], (10, Some(vec![2, 5])));
        assert_eq!(seen[4], (15, Some(vec![3, 5])));
        info.id
    }

    /// Spans accepted out of order and with gaps: overlaps from either side
    /// are refused, the done spans cover exactly what was accepted, and
    /// numbers without a result read as missing, in order.
    pub(crate) fn gaps_read_as_missing(store: &dyn Store) {
        let (info, _) = store
            .create_job(NewJob {
                name: None,
                numbers: Numbers::Range {
                    start: 100,
                    step: 3,
                    count: 12,
                },
                chunk_cap: None,
                priority: 0,
            })
            .expect("create");
        let nth = |i: u64| 100 + 3 * u128::from(i);
        let complete = |start: u64, len: u64| {
            // Some spans as protocol 5 sends them (each largest factor left
            // out), the others whole: both read back whole.
            let factors = factor_lists((start..start + len).map(nth), start % 4 == 2);
            let span = Span {
                job: info.id,
                start,
                len,
            };
            store
                .complete_span(span, factors, WorkerKind::Native)
                .expect("complete")
        };
        for (start, len) in [(6, 2), (2, 2), (4, 2), (10, 1)] {
            assert_eq!(
                complete(start, len),
                Completion::Accepted { job_done: false }
            );
        }
        for (start, len) in [(0, 3), (1, 11), (7, 3), (9, 2), (5, 1)] {
            assert_eq!(complete(start, len), Completion::Duplicate, "{start}+{len}");
        }
        let open = store.open_jobs().expect("open");
        let covered: Vec<u64> = open[0].done.iter().flat_map(|&(s, l)| s..s + l).collect();
        assert_eq!(covered, [2, 3, 4, 5, 6, 7, 10]);
        let mut seen = vec![];
        store
            .visit_results(info.id, &mut |n, f| seen.push((n, f.map(<[u128]>::to_vec))))
            .expect("visit");
        let want: Vec<_> = (0..12)
            .map(|i| {
                let done = (2..8).contains(&i) || i == 10;
                (nth(i), done.then(|| crowdfactor_factor::factor(nth(i))))
            })
            .collect();
        assert_eq!(seen, want);
    }

    /// The factor lists of `numbers`, each without its largest factor if
    /// `left_out` (as protocol 5 workers send them).
    fn factor_lists(numbers: impl Iterator<Item = u128>, left_out: bool) -> FactorLists {
        let mut lists: FactorLists = numbers
            .map(|n| {
                let mut l = crowdfactor_factor::factor(n);
                if left_out {
                    l.pop();
                }
                l
            })
            .collect();
        lists.set_largest_left_out(left_out);
        lists
    }

    /// Lists stored without their largest factors read back whole, for
    /// numbers of every size (1, primes, prime powers, past 2^64).
    pub(crate) fn left_out_factors_read_whole(store: &dyn Store) {
        let numbers: Vec<u128> = vec![
            1,
            12,
            97,
            1 << 70,
            (1 << 64) + 1,
            (1 << 127) - 1,
            2 * ((1 << 127) - 1),
            999_999_999_999,
        ];
        let (info, _) = store
            .create_job(NewJob {
                name: None,
                numbers: Numbers::from(numbers.clone()),
                chunk_cap: None,
                priority: 0,
            })
            .expect("create");
        for (start, len, left_out) in [(0, 5, true), (5, 1, false), (6, 2, true)] {
            let factors = factor_lists(numbers[start..start + len].iter().copied(), left_out);
            let span = Span {
                job: info.id,
                start: start as u64,
                len: len as u64,
            };
            let done = store.complete_span(span, factors, WorkerKind::Browser);
            assert!(matches!(done, Ok(Completion::Accepted { .. })), "{done:?}");
        }
        let mut seen = vec![];
        store
            .visit_results(info.id, &mut |n, f| seen.push((n, f.map(<[u128]>::to_vec))))
            .expect("visit");
        let want: Vec<_> = numbers
            .iter()
            .map(|&n| (n, Some(crowdfactor_factor::factor(n))))
            .collect();
        assert_eq!(seen, want);
    }

    /// A reader that stops in the middle of a job's results (a results
    /// stream waiting for a slow client) holds up no writer.
    pub(crate) fn a_stalled_reader_blocks_no_writer(store: &dyn Store) {
        let new = |count| NewJob {
            name: None,
            numbers: Numbers::Range {
                start: 2,
                step: 1,
                count,
            },
            chunk_cap: None,
            priority: 0,
        };
        let read = store.create_job(new(2)).expect("create").0.id;
        let write = store.create_job(new(1)).expect("create").0.id;
        let span = |job, start| Span { job, start, len: 1 };
        let done = store.complete_span(span(read, 0), vec![vec![2]].into(), WorkerKind::Native);
        assert!(matches!(done, Ok(Completion::Accepted { .. })));
        let (inside, reader_inside) = std::sync::mpsc::channel();
        let (go_on, reader_may_go_on) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut seen = 0;
                store
                    .visit_results(read, &mut |_, _| {
                        seen += 1;
                        if seen == 1 {
                            let _ = inside.send(());
                            let _ = reader_may_go_on.recv();
                        }
                    })
                    .expect("visit");
            });
            reader_inside.recv().expect("the reader starts");
            let (wrote, written) = std::sync::mpsc::channel();
            s.spawn(move || {
                let _ = wrote.send(store.complete_span(
                    span(write, 0),
                    vec![vec![2]].into(),
                    WorkerKind::Native,
                ));
            });
            let outcome = written.recv_timeout(std::time::Duration::from_secs(10));
            let _ = go_on.send(());
            assert!(
                matches!(outcome, Ok(Ok(Completion::Accepted { job_done: true }))),
                "a result waited for a stalled reader: {outcome:?}"
            );
        });
    }

    /// A deleted job: unknown to every reader, its late results ignored, its
    /// id not given again, the other jobs untouched.
    pub(crate) fn deleted_jobs_are_gone(store: &dyn Store) {
        let job = |numbers: Vec<u128>| {
            store
                .create_job(NewJob {
                    name: None,
                    numbers: numbers.into(),
                    chunk_cap: None,
                    priority: 0,
                })
                .expect("create")
                .0
                .id
        };
        let (kept, open, done) = (job(vec![4, 6]), job(vec![9, 10]), job(vec![15]));
        let span = |job, start, len| Span { job, start, len };
        for (id, factors) in [(kept, vec![2, 2]), (open, vec![3, 3])] {
            let outcome =
                store.complete_span(span(id, 0, 1), vec![factors].into(), WorkerKind::Native);
            assert_eq!(
                outcome.expect("complete"),
                Completion::Accepted { job_done: false }
            );
        }
        let finished = store.complete_span(
            span(done, 0, 1),
            vec![vec![3, 5]].into(),
            WorkerKind::Native,
        );
        assert_eq!(
            finished.expect("complete"),
            Completion::Accepted { job_done: true }
        );
        for id in [open, done] {
            let was = store.delete_job(id).expect("delete").expect("known");
            assert_eq!(was.id, id);
            assert!(
                store.delete_job(id).expect("delete").is_none(),
                "deleted twice"
            );
            assert!(store.job(id).expect("job").is_none());
            assert!(!store.visit_results(id, &mut |_, _| {}).expect("visit"));
            assert!(store.cancel_job(id).expect("cancel").is_none());
            assert!(store.set_priority(id, 3).expect("priority").is_none());
        }
        let late = store.complete_span(
            span(open, 1, 1),
            vec![vec![2, 5]].into(),
            WorkerKind::Native,
        );
        assert_eq!(late.expect("late"), Completion::Duplicate);
        let ids: Vec<JobId> = store.jobs().expect("jobs").iter().map(|j| j.id).collect();
        assert_eq!(ids, [kept]);
        let open_ids: Vec<JobId> = store
            .open_jobs()
            .expect("open")
            .iter()
            .map(|j| j.info.id)
            .collect();
        assert_eq!(open_ids, [kept]);
        assert!(job(vec![21]) > done, "a deleted job's id is given again");
        let mut seen = vec![];
        store
            .visit_results(kept, &mut |n, f| seen.push((n, f.map(<[u128]>::to_vec))))
            .expect("visit");
        assert_eq!(seen, [(4, Some(vec![2, 2])), (6, None)]);
    }

    /// The open jobs, and the latest finished ones (done or cancelled, not
    /// deleted) with how many there are: what the status and the dashboard
    /// read.
    pub(crate) fn open_and_finished_jobs_are_told_apart(store: &dyn Store) {
        let job = |n: u128| {
            store
                .create_job(NewJob {
                    name: None,
                    numbers: vec![n, n + 1].into(),
                    chunk_cap: None,
                    priority: 0,
                })
                .expect("create")
                .0
                .id
        };
        let finish = |id, n: u128| {
            let lists = vec![
                crowdfactor_factor::factor(n),
                crowdfactor_factor::factor(n + 1),
            ];
            let span = Span {
                job: id,
                start: 0,
                len: 2,
            };
            let done = store.complete_span(span, lists.into(), WorkerKind::Native);
            assert_eq!(
                done.expect("complete"),
                Completion::Accepted { job_done: true }
            );
        };
        let ids: Vec<JobId> = (0..6).map(|i| job(10 + 2 * i)).collect();
        finish(ids[1], 12);
        store.cancel_job(ids[2]).expect("cancel").expect("known");
        finish(ids[4], 18);
        finish(ids[5], 20);
        store.delete_job(ids[5]).expect("delete").expect("known");
        let active: Vec<JobId> = store
            .active_jobs()
            .expect("active")
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(active, [ids[0], ids[3]]);
        for (limit, shown) in [
            (0, &[][..]),
            (2, &[ids[2], ids[4]][..]),
            (10, &[ids[1], ids[2], ids[4]][..]),
        ] {
            let (latest, all) = store.latest_finished(limit).expect("finished");
            let latest: Vec<JobId> = latest.iter().map(|j| j.id).collect();
            assert_eq!((&latest[..], all), (shown, 3), "limit {limit}");
        }
        let ids_of = |jobs: Vec<JobInfo>| jobs.iter().map(|j| j.id).collect::<Vec<JobId>>();
        for (after, limit, page) in [
            (0, 3, &ids[..3]),
            (ids[1], 2, &ids[2..4]),
            (ids[3], 10, &ids[4..5]),
            (ids[4], 10, &[]),
            (0, 0, &[]),
        ] {
            let got = ids_of(store.jobs_after(after, limit).expect("page"));
            assert_eq!(got, page, "after {after}, limit {limit}");
        }
        let ended = store.ended_during(0..u64::MAX).expect("ended");
        let times: Vec<u64> = ended
            .iter()
            .map(|j| j.finished_ms.expect("ended"))
            .collect();
        assert_eq!(ids_of(ended), [ids[1], ids[2], ids[4]]);
        let cancelled_at = times[1];
        let then = ids_of(
            store
                .ended_during(cancelled_at..cancelled_at + 1)
                .expect("ended"),
        );
        assert!(then.contains(&ids[2]), "{then:?}");
        let first = *times.iter().min().expect("three");
        let last = *times.iter().max().expect("three");
        assert!(store.ended_during(0..first).expect("ended").is_empty());
        assert!(store
            .ended_during(last + 1..u64::MAX)
            .expect("ended")
            .is_empty());
    }

    #[test]
    fn memory_store_tells_open_and_finished_jobs_apart() {
        open_and_finished_jobs_are_told_apart(&MemoryStore::new());
    }

    #[test]
    fn memory_store_deletes_jobs_for_good() {
        deleted_jobs_are_gone(&MemoryStore::new());
    }

    #[test]
    fn memory_store_lets_writers_pass_a_stalled_reader() {
        a_stalled_reader_blocks_no_writer(&MemoryStore::new());
    }

    #[test]
    fn memory_store_completes_spans_once() {
        spans_complete_once(&MemoryStore::new());
    }

    #[test]
    fn memory_store_reads_left_out_factors_whole() {
        left_out_factors_read_whole(&MemoryStore::new());
    }

    #[test]
    fn memory_store_reads_gaps_as_missing() {
        gaps_read_as_missing(&MemoryStore::new());
    }
}

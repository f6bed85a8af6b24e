//! The live side of the queue: which chunks wait, which are leased to which
//! connection, and when a lease lapses.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crowdfactor_protocol::{
    Assignment, ChunkId, ChunkNumbers, FactorLists, ServerMessage, WorkerKind,
};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::sync::{mpsc, watch};

use crate::store::{Completion, JobId, JobInfo, NewJob, Numbers, Span, Store, StoreError};

/// Identifies one WebSocket connection.
pub type ConnId = u64;

/// Timing knobs for leases.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// Time allowed between `assign` and `ack`.
    pub ack_timeout: Duration,
    /// Silence after which a worker's leases lapse.
    pub lease_timeout: Duration,
    /// Longest a chunk may stay leased (even with heartbeats) while the
    /// worker's speed is unknown; once it is known, the deadline is ten times
    /// the chunk's expected time at that speed (but at least `lease_timeout`).
    pub max_lease: Duration,
}

/// How chunks are sized. A chunk is cut when it is leased, for the worker
/// that takes it: long enough to take about `target` on one of its threads
/// at its measured speed for that job, never longer than `max` numbers, the
/// job's own cap, or what fits one result message.
#[derive(Debug, Clone, Copy)]
pub struct ChunkSizing {
    /// Wanted time per chunk on one worker thread.
    pub target: Duration,
    /// Work in a worker's first chunk of a job, while its speed is unknown:
    /// sized by `first_chunk_len` from the job's largest number.
    pub first: Duration,
    /// Most numbers per chunk.
    pub max: u32,
    /// Largest message a worker may send; bounds a chunk's result.
    pub max_message_bytes: usize,
}

impl Default for ChunkSizing {
    fn default() -> Self {
        ChunkSizing {
            target: Duration::from_secs(2),
            first: Duration::from_millis(100),
            max: 100_000,
            max_message_bytes: crowdfactor_protocol::DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// An upper bound on the bytes of one number's factor list in a `result`
/// message: the factors' digits add up to at most digits(n) + Ω(n), plus
/// Ω(n) − 1 spaces and one `;`, and Ω(n) ≤ bits(n).
fn result_bytes_bound(n: u128) -> usize {
    let digits = n.checked_ilog10().unwrap_or(0) as usize + 1;
    let bits = 128 - n.leading_zeros() as usize;
    1 + digits + 2 * bits
}

/// A chunk: a span of a job and its numbers.
#[derive(Debug, Clone)]
pub struct ChunkWork {
    /// The chunk's id.
    pub id: ChunkId,
    /// What it covers.
    pub span: Span,
    /// The numbers to factor.
    pub numbers: Arc<ChunkNumbers>,
    /// Their estimated work (see [`cost`]).
    cost: f64,
}

impl ChunkWork {
    /// The `assign` message that hands this chunk to a worker.
    fn assignment(&self) -> Assignment {
        Assignment {
            chunk_id: self.id,
            job_id: self.span.job.to_string(),
            numbers: ChunkNumbers::clone(&self.numbers),
        }
    }
}

/// The coordinator: store plus in-memory queue and leases.
#[derive(Debug)]
pub struct Coordinator {
    store: Arc<dyn Store>,
    state: Mutex<State>,
    sizing: ChunkSizing,
    /// Bumped whenever work appears or the amount in flight changes; every
    /// connection task watches it to pull new chunks or to report `idle`.
    changes: watch::Sender<u64>,
    timing: LeaseTiming,
    /// Most bytes the numbers of open list jobs may take together
    /// ([`Coordinator::create_job`] refuses a job that would pass it).
    max_list_bytes: u64,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Where the verifying sieves of recent range chunks left off.
    pub(crate) sieves: crate::ws::SieveCache,
}

/// Why a job was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateJobError {
    /// Its list would take the memory held by open list jobs past the limit.
    #[error(
        "open list jobs hold {held} bytes of numbers; this job's {need} would pass the limit of {limit}"
    )]
    Full {
        /// Bytes held by open list jobs (and jobs being created).
        held: u64,
        /// Bytes this job's list takes.
        need: u64,
        /// The limit.
        limit: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Room for a new job's list, counted in [`State::list_bytes`] while the
/// job is stored (so that jobs created at the same time cannot pass the
/// limit together) and given back when dropped: also when storing fails
/// or panics.
struct ListRoom<'a> {
    coord: &'a Coordinator,
    bytes: u64,
}

impl<'a> ListRoom<'a> {
    fn reserve(coord: &'a Coordinator, bytes: u64) -> Result<Self, CreateJobError> {
        let mut st = coord.lock();
        let limit = coord.max_list_bytes;
        if st.list_bytes.saturating_add(bytes) > limit {
            let held = st.list_bytes;
            tracing::warn!(
                held,
                need = bytes,
                limit,
                "job refused: open lists would take more memory than --max-list-memory"
            );
            return Err(CreateJobError::Full {
                held,
                need: bytes,
                limit,
            });
        }
        st.list_bytes += bytes;
        Ok(ListRoom { coord, bytes })
    }

    /// Gives the room back under a lock the caller holds.
    fn release(mut self, st: &mut State) {
        st.list_bytes -= std::mem::take(&mut self.bytes);
    }
}

impl Drop for ListRoom<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.coord.lock().list_bytes -= self.bytes;
        }
    }
}

/// Monotonic counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Chunks handed to workers.
    pub leased: AtomicU64,
    /// Assignments acknowledged by workers.
    pub acked: AtomicU64,
    /// Chunks whose results were accepted.
    pub completed: AtomicU64,
    /// Chunks put back in the queue (disconnect, expiry, release, rejection).
    pub requeued: AtomicU64,
    /// Results rejected by verification.
    pub rejected: AtomicU64,
    /// Numbers with accepted results.
    pub numbers: AtomicU64,
    /// Store writes and their total duration in microseconds.
    pub store_writes: AtomicU64,
    /// Sum of store write durations, µs.
    pub store_write_us: AtomicU64,
    /// Longest store write, µs.
    pub store_write_max_us: AtomicU64,
    /// Workers dropped because a write to them waited the write timeout.
    pub slow_readers: AtomicU64,
    /// Results the store failed to record (disk full, I/O error).
    pub store_failures: AtomicU64,
    /// Messages that changed nothing read late, past a worker's allowance
    /// of them (see `ws::Throttle`).
    pub throttled: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    next_conn: ConnId,
    next_chunk: ChunkId,
    /// Jobs with numbers still to factor.
    jobs: FxHashMap<JobId, JobQueue>,
    /// Bytes the lists of `jobs` take, plus those of jobs being created.
    list_bytes: u64,
    /// Jobs with numbers waiting for a worker, highest priority then oldest first.
    ready: BTreeSet<(Reverse<i32>, JobId)>,
    /// Every chunk cut and not yet accepted.
    open: FxHashMap<ChunkId, OpenChunk>,
    conns: FxHashMap<ConnId, Conn>,
    /// Compute threads of all connections (at least one each).
    threads: u64,
    started_jobs: FxHashSet<JobId>,
    /// Jobs with chunks currently leased.
    leased_per_job: FxHashMap<JobId, usize>,
    /// Chunks put back in the queue so far.
    requeued: u64,
    /// Addresses refused for a while (too many wrong results).
    bans: AddressTimers,
    /// Addresses a lease lapsed from: their new connections start on
    /// probation for a while, so reconnecting does not give a hoarder its
    /// full slots back.
    lapsed: AddressTimers,
    /// Set while leasing is paused after the store failed to record a result.
    store_pause: StorePause,
}

/// While the store cannot record results (disk full, I/O errors), leasing
/// stops for a while: workers would otherwise factor the same chunks again
/// and again, each result lost, as fast as they can. The pause doubles with
/// each failure, from [`STORE_PAUSE_FIRST`] to [`STORE_PAUSE_MAX`], and ends
/// with the first result recorded.
#[derive(Debug, Default)]
struct StorePause {
    /// No leases before this.
    until: Option<Instant>,
    /// The next pause's length (zero: the first).
    next: Duration,
}

const STORE_PAUSE_FIRST: Duration = Duration::from_secs(1);
const STORE_PAUSE_MAX: Duration = Duration::from_secs(30);

/// Addresses (each as [`crate::proxy::limit_key`]: an IPv6 /64 as one) and
/// until when something holds for them.
#[derive(Debug, Default)]
struct AddressTimers(HashMap<IpAddr, Instant>);

impl AddressTimers {
    /// From `now` on, `ip` is marked for `duration`.
    fn mark(&mut self, ip: IpAddr, now: Instant, duration: Duration) {
        self.0.insert(crate::proxy::limit_key(ip), now + duration);
    }

    /// Forgets the marks that ran out by `now`.
    fn forget_expired(&mut self, now: Instant) {
        self.0.retain(|_, until| *until > now);
    }

    /// How much longer `ip` is marked, if it is.
    fn remaining(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let until = self.0.get(&crate::proxy::limit_key(ip))?;
        until.checked_duration_since(now)
    }
}

/// The live queue of one job.
#[derive(Debug)]
struct JobQueue {
    priority: i32,
    numbers: Numbers,
    /// Most numbers per chunk of this job.
    max_len: u64,
    /// Numbers in a worker's first chunk of this job.
    first_len: u64,
    /// Index ranges `[start, end)` never leased yet, in order.
    fresh: VecDeque<(u64, u64)>,
    /// Chunks handed back (closed socket, expiry, rejection), leased again
    /// first. May hold ids accepted meanwhile; `lease` skips those.
    returned: VecDeque<ChunkId>,
    /// Numbers waiting: in `fresh` plus in `returned` chunks.
    queued: u64,
}

impl JobQueue {
    fn new(info: &JobInfo, numbers: Numbers, sizing: &ChunkSizing, done: &[(u64, u64)]) -> Self {
        let widest = numbers.largest().max(1);
        let fits = (sizing.max_message_bytes / result_bytes_bound(widest)).max(1) as u64;
        let max_len =
            u64::from(info.chunk_cap.unwrap_or(u32::MAX).min(sizing.max).max(1)).min(fits);
        let mut fresh = VecDeque::new();
        let mut at = 0;
        for &(start, len) in done {
            if start > at {
                fresh.push_back((at, start));
            }
            at = at.max(start + len);
        }
        if at < numbers.len() {
            fresh.push_back((at, numbers.len()));
        }
        JobQueue {
            priority: info.priority,
            queued: fresh.iter().map(|(s, e)| e - s).sum(),
            first_len: first_chunk_len(widest, sizing.first),
            numbers,
            max_len,
            fresh,
            returned: VecDeque::new(),
        }
    }
}

#[derive(Debug)]
struct OpenChunk {
    work: ChunkWork,
    lease: Option<Lease>,
    /// The workers that held it before an idle one was given a copy at a
    /// job's end ([`Coordinator::sweep`]), oldest first: all told to drop it
    /// when a result comes first from someone else. Empty (no allocation)
    /// for all but a job's last stalled chunks.
    copied_from: Vec<ConnId>,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    conn: ConnId,
    acked: bool,
    since: Instant,
    /// Work ([`cost`] units) each of the worker's threads had in hand
    /// when this lease began, unanswered chunks it works through before
    /// this one: the deadline allows for it.
    ahead: f64,
}

#[derive(Debug)]
struct Conn {
    kind: WorkerKind,
    ip: IpAddr,
    slots: u32,
    /// No slots while another tab of the same browser contributes.
    waiting: bool,
    held: FxHashSet<ChunkId>,
    /// Held chunks whose result has arrived and is being verified and
    /// stored: they no longer take one of the worker's slots (its thread is
    /// free), so its next chunk goes out without waiting for the commit.
    /// Entries whose chunk is no longer held are dropped when leasing.
    answered: FxHashSet<ChunkId>,
    /// Chunks ever leased to this connection and not yet done: a late result
    /// for one of these is still welcome.
    ever: FxHashSet<ChunkId>,
    /// Chunks leased to it by [`Coordinator::sweep`] (copies at a job's
    /// end), to be sent by its own session's next `lease`.
    copies: Vec<ChunkId>,
    last_seen: Instant,
    strikes: u32,
    /// A lease of it lapsed (no ack, past its deadline, or silence) and no
    /// result of it was accepted since: it holds one chunk at a time, so a
    /// worker that takes chunks and sits on them cannot hoard a job.
    probation: bool,
    tx: mpsc::Sender<ServerMessage>,
    name: String,
    threads: u32,
    connected: Instant,
    chunks_done: u64,
    numbers_done: u64,
    /// (when, numbers) of recent accepted results, for the live rate.
    recent: VecDeque<(Instant, u64)>,
    /// Measured speed per job, for sizing its chunks and their deadlines.
    speed: FxHashMap<JobId, Speed>,
}

/// How fast one worker factors one job's numbers, in [`cost`] units.
#[derive(Debug, Clone, Copy)]
struct Speed {
    /// Work done per second on one of its threads (smoothed).
    per_thread: f64,
    /// Largest chunk of the job it finished; the next may be at most 8×
    /// that, so one lucky fast chunk cannot earn a huge one.
    largest: f64,
}

/// At most `chars` characters of `text`: what a worker says about itself
/// may be megabytes, a dashboard cell or a log line should not.
pub fn clip(text: &str, chars: usize) -> &str {
    text.char_indices()
        .nth(chars)
        .map_or(text, |(end, _)| &text[..end])
}

/// How long new connections from an address a lease lapsed from start on
/// probation (one chunk at a time until a result of theirs is accepted).
const LAPSE_MEMORY: Duration = Duration::from_secs(600);

pub use crowdfactor_protocol::MAX_THREADS;

/// Where to end a chunk cut for a worker: see [`cut`].
#[derive(Debug, Clone, Copy)]
struct CutLimits {
    /// Most numbers.
    max: u64,
    /// Most work ([`cost`] units).
    budget: f64,
    /// Past this many numbers, stop once the work reaches `floor`.
    share: u64,
    floor: f64,
}

/// Where to end a chunk of `q` for a worker with speed `speed` (if known).
/// `threads` counts the threads of every worker taking work: near a job's end
/// no chunk takes more than half of one thread's share of what is left, so
/// the last chunks finish together — but none is cut below a hundredth of
/// the target time (20 ms by default): a round trip (verification, group
/// commit) costs milliseconds, and a tail of one-number chunks spent more
/// time waiting for them than it saved in balance.
fn chunk_limits(
    speed: Option<&Speed>,
    q: &JobQueue,
    threads: u64,
    sizing: &ChunkSizing,
) -> CutLimits {
    let share = q.queued.div_ceil(2 * threads.max(1));
    match speed {
        Some(s) => {
            let target = s.per_thread * sizing.target.as_secs_f64();
            CutLimits {
                max: q.max_len,
                budget: target.min(s.largest * 8.0),
                share,
                floor: target / 100.0,
            }
        }
        None => CutLimits {
            max: q.max_len.min(q.first_len),
            budget: f64::INFINITY,
            share,
            floor: 0.0,
        },
    }
}

/// How many of `numbers` from index `start` (at most `len`) make one chunk,
/// and their work: numbers are added while the work stays within
/// `budget`, and past `share` numbers within `floor` (at least one number).
fn cut(numbers: &Numbers, start: u64, len: u64, limits: CutLimits) -> (u64, f64) {
    let max = limits.max.min(len).max(1);
    match numbers {
        Numbers::List(list) => {
            let (mut taken, mut work) = (0, 0.0);
            for n in list.span(start, max) {
                let more = work + cost(n);
                if taken > 0
                    && (more > limits.budget || (taken >= limits.share && more > limits.floor))
                {
                    break;
                }
                (taken, work) = (taken + 1, more);
            }
            (taken, work)
        }
        &Numbers::Range {
            start: first, step, ..
        } => {
            // Neighbours are the same size: the widest stands for all.
            let each = cost(first + u128::from(start + max - 1) * step);
            let fits = |work: f64| (work / each) as u64;
            let taken = fits(limits.budget)
                .min(limits.share.max(fits(limits.floor)))
                .min(max)
                .max(1);
            (taken, taken as f64 * each)
        }
    }
}

/// The work one number stands for, in native seconds: the estimate for
/// the hardest number of its size ([`hardest_secs`]) plus a fixed cost per
/// number. Chunks are sized, and their deadlines set, by work, not by
/// count: a worker's speed measured on a list's small numbers would
/// otherwise cut a chunk of thousands of its 112-bit semiprimes (each ten
/// thousand times slower), which takes one thread minutes and misses its
/// deadline. Only the ratios between sizes matter: a worker's speed is
/// measured in these units.
fn cost(n: u128) -> f64 {
    static COSTS: std::sync::LazyLock<[f64; 129]> =
        std::sync::LazyLock::new(|| std::array::from_fn(|bits| hardest_secs(bits as u32) + 50e-9));
    COSTS[(128 - n.leading_zeros()) as usize]
}

/// How many numbers up to `widest` make a first chunk of about `first` for
/// a worker of unknown speed: one ten times slower than the native engine
/// here (a browser on a slow phone), with every number as hard as a number
/// of its size gets (a semiprime of two equal primes). A first chunk of the
/// classic job's 40-bit numbers then holds ~6,400 of them (a few ms for a
/// native worker, where 8 took five round trips of ramping up to full
/// size), and of 128-bit semiprimes one.
fn first_chunk_len(widest: u128, first: Duration) -> u64 {
    const SLOWER: f64 = 10.0;
    let len = first.as_secs_f64() / (SLOWER * hardest_secs(128 - widest.leading_zeros()));
    // At least one number; the conversion saturates.
    len.max(1.0) as u64
}

/// A generous estimate of the native engine's time for the hardest number
/// of `bits` bits (a semiprime of two equal primes), in seconds: 100 µs at
/// 64 bits (85 µs measured on the project machine), halving every 4 bits
/// below (rho and ECM cost about n^¼ there) and doubling every 5 above
/// (0.7 s at 128 bits, where 0.14 s is measured).
fn hardest_secs(bits: u32) -> f64 {
    let past_64 = f64::from(bits) - 64.0;
    100e-6 * (past_64 / if past_64 < 0.0 { 4.0 } else { 5.0 }).exp2()
}

/// The fastest a thread is taken to work through the hardest numbers, in
/// [`cost`] units per second, when a deadline is set. A speed measured on
/// numbers of one size that happened to be easy (112-bit numbers with
/// small factors: milliseconds each, against the tens of milliseconds the
/// estimate allows) is far above it; a chunk cut at that speed and holding
/// that size's semiprimes takes ten times its target, which is all a
/// deadline of ten times the expected time allows. The native engine here
/// does the hardest numbers at 1.2 (64 bits) to 5 (128 bits) units a
/// second, so twice the fastest of those still leaves machines a few times
/// faster within their deadlines; a deadline only bounds how long a slow
/// worker holds a chunk (a silent one loses it after the lease timeout).
const HARDEST_SPEED: f64 = 10.0;

/// How far back a worker's live rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(15);

impl Conn {
    /// Not heard from for longer than the lease timeout.
    fn silent(&self, now: Instant, timing: &LeaseTiming) -> bool {
        now.saturating_duration_since(self.last_seen) > timing.lease_timeout
    }

    /// Numbers per second over the recent window, if it returned any results.
    fn rate(&self, now: Instant) -> Option<f64> {
        let recent = self
            .recent
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= RATE_WINDOW);
        let (first, total) = recent.fold((None, 0u64), |(first, total), (t, n)| {
            (first.or(Some(*t)), total + n)
        });
        let span = now
            .duration_since(first?)
            .max(Duration::from_secs(1))
            .min(RATE_WINDOW);
        Some(total as f64 / span.as_secs_f64())
    }

    /// The work each thread has in hand: the chunks it holds and has not
    /// answered, shared out among its threads, once they are all busy; at
    /// most the largest of them. Workers ask for two slots a thread, so a
    /// chunk waits for one other at most; a worker asking for many more
    /// than it has threads would otherwise stretch its deadlines with
    /// every chunk it hoards.
    fn work_ahead(&self, open: &FxHashMap<ChunkId, OpenChunk>) -> f64 {
        let threads = self.threads.max(1);
        let unanswered = self.held.iter().filter(|id| !self.answered.contains(id));
        if unanswered.clone().count() < threads as usize {
            return 0.0;
        }
        let (work, largest) = unanswered
            .filter_map(|id| open.get(id))
            .map(|o| o.work.cost)
            .fold((0.0, 0.0f64), |(sum, max), c| (sum + c, max.max(c)));
        (work / f64::from(threads)).min(largest)
    }

    /// How long a chunk may stay leased to this worker: ten times what it
    /// should take at the worker's measured speed for its job, that speed
    /// taken as at most [`HARDEST_SPEED`], counting the work it had in hand
    /// when it was leased (a chunk waits for a thread; after a chunk far
    /// longer than its target, for a long time).
    fn lease_deadline(&self, work: &ChunkWork, lease: &Lease, timing: &LeaseTiming) -> Duration {
        match self.speed.get(&work.span.job) {
            Some(s) if s.per_thread > 0.0 => {
                let speed = s.per_thread.min(HARDEST_SPEED);
                let expected = (work.cost + lease.ahead) / speed;
                Duration::from_secs_f64((10.0 * expected).min(86_400.0)).max(timing.lease_timeout)
            }
            _ => timing.max_lease,
        }
    }
}

/// A connected worker as the dashboard shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerView {
    /// Connection id.
    pub id: ConnId,
    /// `native` or `browser`.
    pub kind: &'static str,
    /// Name given by the worker (`--name`), if any.
    pub name: String,
    /// Compute threads or Web Workers.
    pub threads: u32,
    /// Chunks it may hold at once (0: paused).
    pub slots: u32,
    /// A browser tab with no slots while another tab of its browser
    /// contributes (tabs take turns), rather than paused by its volunteer.
    pub waiting: bool,
    /// Chunks it holds now.
    pub holding: usize,
    /// Chunks and numbers accepted from it.
    pub chunks_done: u64,
    /// Numbers accepted from it.
    pub numbers_done: u64,
    /// Numbers per second over the last 15 s.
    pub rate: f64,
    /// Wrong results so far.
    pub strikes: u32,
    /// A lease of it lapsed and no result was accepted since: it is given
    /// one chunk at a time.
    pub probation: bool,
    /// Seconds since it connected.
    pub connected_secs: u64,
}

/// Point-in-time values for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    /// Connected native workers.
    pub native: usize,
    /// Connected browser tabs.
    pub browser: usize,
    /// Connected workers with no slots, paused by their volunteer.
    pub paused: usize,
    /// Connected browser tabs with no slots while another tab of their
    /// browser contributes.
    pub waiting: usize,
    /// Numbers waiting for a worker.
    pub queued: u64,
    /// Chunks leased right now.
    pub leased: usize,
    /// Chunks requeued since start.
    pub requeued: u64,
    /// Bytes the numbers of open list jobs take.
    pub list_bytes: u64,
    /// The most they may take.
    pub list_limit: u64,
}

/// What to do with an incoming result.
#[derive(Debug)]
pub enum ResultCheck {
    /// The chunk was never leased to this connection: ignore the result.
    NotAssigned,
    /// The chunk already has an accepted result: ignore the duplicate.
    AlreadyDone,
    /// Verify the result against these numbers.
    Verify(ChunkWork),
}

impl Coordinator {
    /// Builds a coordinator over `store`, queueing every number still open in it.
    pub fn new(
        store: Arc<dyn Store>,
        timing: LeaseTiming,
        sizing: ChunkSizing,
    ) -> Result<Self, StoreError> {
        let mut state = State::default();
        for job in store.open_jobs()? {
            let q = JobQueue::new(&job.info, job.numbers, &sizing, &job.done);
            state.add_job(job.info.id, q);
        }
        let (changes, _) = watch::channel(0);
        Ok(Coordinator {
            store,
            state: Mutex::new(state),
            sizing,
            changes,
            timing,
            max_list_bytes: u64::MAX,
            metrics: Metrics::default(),
            sieves: crate::ws::SieveCache::default(),
        })
    }

    /// Refuses new list jobs whose numbers would take the memory held by
    /// open list jobs past `bytes` (jobs already open are kept whatever
    /// their size). Unlimited by default.
    pub fn with_list_limit(mut self, bytes: u64) -> Self {
        self.max_list_bytes = bytes;
        let held = self.list_bytes();
        if held > bytes {
            tracing::warn!(
                held,
                limit = bytes,
                "the open list jobs take more memory than --max-list-memory: new lists are refused until enough of them end"
            );
        }
        self
    }

    /// Bytes the numbers of open list jobs take.
    pub fn list_bytes(&self) -> u64 {
        self.lock().list_bytes
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The store behind the coordinator.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// A receiver that changes whenever there may be new work or new idleness.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Creates a job and queues its numbers, unless its list would take the
    /// memory held by open list jobs past the limit.
    pub fn create_job(&self, job: NewJob) -> Result<JobInfo, CreateJobError> {
        let bytes = job.numbers.held_bytes();
        let reserved = match ListRoom::reserve(self, bytes) {
            // A job's last result is committed (and shown as done by the
            // API) a moment before its list is let go here: a client that
            // submits the moment its last job is done must not be refused.
            Err(CreateJobError::Full { .. }) if self.let_finished_lists_go()? => {
                ListRoom::reserve(self, bytes)?
            }
            r => r?,
        };
        // The queue is made outside the lock: it reads the whole list.
        let (info, q) = self.store.create_job(job).map(|(info, numbers)| {
            let q = JobQueue::new(&info, numbers, &self.sizing, &[]);
            (info, q)
        })?;
        let mut st = self.lock();
        // add_job counts the bytes again.
        reserved.release(&mut st);
        let max_len = q.max_len;
        st.add_job(info.id, q);
        drop(st);
        tracing::info!(
            job = info.id,
            numbers = info.total,
            max_chunk = max_len,
            priority = info.priority,
            "job created"
        );
        self.bump();
        Ok(info)
    }

    /// Lets go of the lists of jobs the store has finished (or cancelled)
    /// but whose last result is still being booked; whether there were any.
    fn let_finished_lists_go(&self) -> Result<bool, StoreError> {
        let holding: Vec<JobId> = {
            let st = self.lock();
            st.jobs
                .iter()
                .filter(|(_, q)| q.numbers.held_bytes() > 0)
                .map(|(&id, _)| id)
                .collect()
        };
        let mut finished = vec![];
        for id in holding {
            if self.store.job(id)?.is_none_or(|j| !j.is_open()) {
                finished.push(id);
            }
        }
        let mut st = self.lock();
        for &id in &finished {
            st.remove_job(id);
        }
        Ok(!finished.is_empty())
    }

    /// Cancels a job: its queued numbers are dropped and the workers holding
    /// its chunks are told to drop them. `None` for an unknown job.
    pub fn cancel_job(&self, job: JobId) -> Result<Option<JobInfo>, StoreError> {
        let Some(info) = self.store.cancel_job(job)? else {
            return Ok(None);
        };
        self.drop_work(job);
        tracing::info!(job, "job cancelled");
        self.bump();
        Ok(Some(info))
    }

    /// Deletes a job with its numbers and results (cancelling it first if it
    /// is open). Returns the job as it was, `None` for an unknown job.
    pub fn delete_job(&self, job: JobId) -> Result<Option<JobInfo>, StoreError> {
        let Some(info) = self.store.delete_job(job)? else {
            return Ok(None);
        };
        if info.is_open() {
            self.drop_work(job);
        }
        self.lock().started_jobs.remove(&job);
        tracing::info!(job, numbers = info.total, "job deleted");
        self.bump();
        Ok(Some(info))
    }

    /// Deletes every job that ended (done or cancelled) `keep` or longer
    /// ago, with its numbers and results, as [`Coordinator::delete_job`]
    /// does; open jobs are never touched. Returns how many it deleted.
    pub fn delete_finished(&self, keep: Duration) -> Result<usize, StoreError> {
        let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
        // Ended at `cutoff` or before: `keep` ago or longer.
        let Some(cutoff) = crate::store::now_ms().checked_sub(keep_ms) else {
            return Ok(0);
        };
        let expired = self.store.ended_during(0..cutoff + 1)?;
        let mut deleted = 0;
        for JobInfo { id, .. } in expired {
            // An ended job stays ended (nothing reopens one); one deleted
            // by hand since the list was read is simply not counted.
            if self.delete_job(id)?.is_some() {
                deleted += 1;
            }
        }
        if deleted > 0 {
            tracing::info!(
                jobs = deleted,
                keep_secs = keep.as_secs(),
                "finished jobs past their retention deleted"
            );
        }
        Ok(deleted)
    }

    /// Forgets a job's queued and leased chunks; workers holding some are
    /// told to drop them.
    fn drop_work(&self, job: JobId) {
        let mut notices: HashMap<ConnId, (mpsc::Sender<ServerMessage>, Vec<ChunkId>)> =
            HashMap::new();
        {
            let mut st = self.lock();
            st.remove_job(job);
            let ids: Vec<ChunkId> = st
                .open
                .iter()
                .filter(|(_, o)| o.work.span.job == job)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let Some(open) = st.open.remove(&id) else {
                    continue;
                };
                if let Some(lease) = open.lease {
                    if let Some(c) = st.conns.get_mut(&lease.conn) {
                        c.held.remove(&id);
                        c.ever.remove(&id);
                        notices
                            .entry(lease.conn)
                            .or_insert_with(|| (c.tx.clone(), vec![]))
                            .1
                            .push(id);
                    }
                }
            }
            st.leased_per_job.remove(&job);
        }
        for (_, (tx, chunk_ids)) in notices {
            // Best effort: a worker too slow to read this is dropped anyway.
            let _ = tx.try_send(ServerMessage::Cancel { chunk_ids });
        }
    }

    /// Whether any chunk of the job has been leased since start-up.
    pub fn job_started(&self, job: JobId) -> bool {
        self.lock().started_jobs.contains(&job)
    }

    /// Registers a connection after a valid `hello`.
    pub fn register(
        &self,
        kind: WorkerKind,
        slots: u32,
        ip: IpAddr,
        tx: mpsc::Sender<ServerMessage>,
    ) -> ConnId {
        let mut st = self.lock();
        st.next_conn += 1;
        st.threads += 1;
        let id = st.next_conn;
        let probation = st
            .lapsed
            .remaining(ip, Instant::now())
            .is_some_and(|left| !left.is_zero());
        st.conns.insert(
            id,
            Conn {
                kind,
                ip,
                slots,
                waiting: false,
                held: FxHashSet::default(),
                answered: FxHashSet::default(),
                ever: FxHashSet::default(),
                copies: Vec::new(),
                last_seen: Instant::now(),
                strikes: 0,
                probation,
                tx,
                name: String::new(),
                threads: 0,
                connected: Instant::now(),
                chunks_done: 0,
                numbers_done: 0,
                recent: VecDeque::new(),
                speed: FxHashMap::default(),
            },
        );
        id
    }

    /// Refuses new connections from `ip` (from its /64 for IPv6) for `duration`.
    pub fn ban(&self, ip: IpAddr, duration: Duration) {
        let key = crate::proxy::limit_key(ip);
        let now = Instant::now();
        let bans = &mut self.lock().bans;
        bans.forget_expired(now);
        bans.mark(ip, now, duration);
        tracing::warn!(%ip, refused = %key, secs = duration.as_secs(), "address refused for too many wrong results");
    }

    /// How much longer `ip` is refused, if it is.
    pub fn banned_for(&self, ip: IpAddr) -> Option<Duration> {
        self.lock().bans.remaining(ip, Instant::now())
    }

    /// Records what the worker said about itself in `hello`. Its thread
    /// count is taken up to [`MAX_THREADS`]: the sum over all workers sizes
    /// the chunks at a job's end, so one inflated claim would shrink
    /// everyone's.
    pub fn describe(&self, conn: ConnId, name: &str, threads: u32) {
        let threads = threads.min(MAX_THREADS);
        let mut st = self.lock();
        if let Some(c) = st.conns.get_mut(&conn) {
            c.name = name.to_owned();
            let old = c.threads.max(1);
            c.threads = threads;
            st.threads = st.threads - u64::from(old) + u64::from(threads.max(1));
        }
    }

    /// Gives a connected worker the name `name` (a `rename` message, as
    /// [`crowdfactor_protocol::kept_name`] keeps it); its name before, or
    /// `None` if it is gone.
    pub fn rename(&self, conn: ConnId, name: &str) -> Option<String> {
        let mut st = self.lock();
        let c = st.conns.get_mut(&conn)?;
        Some(std::mem::replace(&mut c.name, name.to_owned()))
    }

    /// Connected workers, for the dashboard.
    pub fn workers(&self) -> Vec<WorkerView> {
        let now = Instant::now();
        let st = self.lock();
        let mut out: Vec<WorkerView> = st
            .conns
            .iter()
            .map(|(id, c)| WorkerView {
                id: *id,
                kind: c.kind.as_str(),
                name: c.name.clone(),
                threads: c.threads,
                slots: c.slots,
                waiting: c.waiting,
                holding: c.held.len(),
                chunks_done: c.chunks_done,
                numbers_done: c.numbers_done,
                rate: c.rate(now).unwrap_or(0.0),
                strikes: c.strikes,
                probation: c.probation,
                connected_secs: now.duration_since(c.connected).as_secs(),
            })
            .collect();
        out.sort_by_key(|w| w.id);
        out
    }

    /// Changes a job's priority; its queued numbers move accordingly.
    pub fn set_priority(&self, job: JobId, priority: i32) -> Result<Option<JobInfo>, StoreError> {
        let info = self.store.set_priority(job, priority)?;
        {
            let mut st = self.lock();
            let st = &mut *st;
            if let Some(q) = st.jobs.get_mut(&job) {
                if st.ready.remove(&(Reverse(q.priority), job)) {
                    st.ready.insert((Reverse(priority), job));
                }
                q.priority = priority;
            }
        }
        self.bump();
        Ok(info)
    }

    /// Forgets a connection and requeues everything it held, at the front.
    pub fn unregister(&self, conn: ConnId) {
        let requeued = {
            let mut st = self.lock();
            let Some(c) = st.conns.remove(&conn) else {
                return;
            };
            st.threads -= u64::from(c.threads.max(1));
            let held: Vec<ChunkId> = c.held.into_iter().collect();
            for id in &held {
                st.drop_lease(*id);
            }
            held.len()
        };
        if requeued > 0 {
            tracing::info!(
                conn,
                requeued,
                "connection closed; its chunks are queued again"
            );
            self.bump();
        }
    }

    /// Records that the connection was heard from.
    pub fn touch(&self, conn: ConnId) {
        if let Some(c) = self.lock().conns.get_mut(&conn) {
            c.last_seen = Instant::now();
        }
    }

    /// Changes how many chunks a connection may hold (the connection's own
    /// task leases more after this; nobody else needs waking), and whether
    /// it is [`WorkerView::waiting`].
    pub fn set_slots(&self, conn: ConnId, slots: u32, waiting: bool) {
        if let Some(c) = self.lock().conns.get_mut(&conn) {
            c.slots = slots;
            c.waiting = waiting;
        }
    }

    /// Leases chunks to `conn` until its slots are full: handed-back chunks
    /// first, then new ones cut to this worker's size.
    pub fn lease(&self, conn: ConnId) -> Vec<Assignment> {
        let mut st = self.lock();
        let st = &mut *st;
        let threads = st.threads;
        let Some(c) = st.conns.get_mut(&conn) else {
            return vec![];
        };
        // Silent past the lease timeout (asleep, stopped, cut off): what it
        // were given would only lapse at the next sweep, again and again.
        // Its session leases again when it is heard from.
        if c.silent(Instant::now(), &self.timing) {
            return vec![];
        }
        if st.store_pause.until.is_some() {
            return vec![];
        }
        let mut out = vec![];
        for id in c.copies.drain(..) {
            // Still its lease (not done meanwhile, not lapsed).
            if let Some(open) = st
                .open
                .get(&id)
                .filter(|o| o.lease.is_some_and(|l| l.conn == conn))
            {
                out.push(open.work.assignment());
            }
        }
        let held = &c.held;
        c.answered.retain(|id| held.contains(id));
        let slots = if c.probation { c.slots.min(1) } else { c.slots };
        // A slot is a chunk the worker has not answered yet; answered ones
        // still count towards a bound, so a worker can never hold more than
        // twice its slots.
        while ((c.held.len() - c.answered.len()) as u32) < slots
            && (c.held.len() as u32) < slots.saturating_mul(2)
        {
            let Some(&key) = st.ready.first() else {
                break;
            };
            let job = key.1;
            let Some(q) = st.jobs.get_mut(&job) else {
                st.ready.remove(&key);
                continue;
            };
            let id = if let Some(id) = q.returned.pop_front() {
                match st.open.get(&id) {
                    Some(o) if o.lease.is_none() => {
                        q.queued -= o.work.span.len;
                        id
                    }
                    _ => continue,
                }
            } else if let Some(&(start, end)) = q.fresh.front() {
                let limits = chunk_limits(c.speed.get(&job), q, threads, &self.sizing);
                let (len, cost) = cut(&q.numbers, start, end - start, limits);
                let span = Span { job, start, len };
                if span.end() == end {
                    q.fresh.pop_front();
                } else if let Some(front) = q.fresh.front_mut() {
                    front.0 = span.end();
                }
                q.queued -= len;
                st.next_chunk += 1;
                let id = st.next_chunk;
                let numbers = Arc::new(q.numbers.span(span.start, span.len));
                st.open.insert(
                    id,
                    OpenChunk {
                        work: ChunkWork {
                            id,
                            span,
                            numbers,
                            cost,
                        },
                        lease: None,
                        copied_from: Vec::new(),
                    },
                );
                id
            } else {
                st.ready.remove(&key);
                continue;
            };
            if q.queued == 0 {
                q.returned.clear();
                st.ready.remove(&key);
            }
            let ahead = c.work_ahead(&st.open);
            let Some(open) = st.open.get_mut(&id) else {
                continue;
            };
            open.lease = Some(Lease {
                conn,
                acked: false,
                since: Instant::now(),
                ahead,
            });
            c.held.insert(id);
            c.ever.insert(id);
            self.metrics.leased.fetch_add(1, Relaxed);
            st.started_jobs.insert(job);
            *st.leased_per_job.entry(job).or_default() += 1;
            out.push(open.work.assignment());
        }
        out
    }

    /// The worker confirmed it received `chunk`.
    ///
    /// Returns whether this acknowledged a lease of `conn`'s that was not
    /// yet (anything else changes nothing).
    pub fn ack(&self, conn: ConnId, chunk: ChunkId) -> bool {
        let mut st = self.lock();
        let lease = st.open.get_mut(&chunk).and_then(|o| o.lease.as_mut());
        match lease {
            Some(lease) if lease.conn == conn && !lease.acked => {
                lease.acked = true;
                self.metrics.acked.fetch_add(1, Relaxed);
                true
            }
            _ => false,
        }
    }

    /// The worker hands chunks back unfinished.
    pub fn release(&self, conn: ConnId, chunks: &[ChunkId]) {
        let mut requeued = false;
        {
            let mut st = self.lock();
            for id in chunks {
                let held = st.conns.get_mut(&conn).is_some_and(|c| c.held.remove(id));
                if held {
                    st.drop_lease(*id);
                    requeued = true;
                }
            }
        }
        if requeued {
            self.bump();
        }
    }

    /// Decides how to treat a result for `chunk` from `conn`. A result to
    /// verify frees the worker's slot for its next chunk at once.
    pub fn check_result(&self, conn: ConnId, chunk: ChunkId) -> ResultCheck {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(c) = st.conns.get_mut(&conn) else {
            return ResultCheck::NotAssigned;
        };
        let ever = c.ever.contains(&chunk);
        match st.open.get(&chunk) {
            None if ever => ResultCheck::AlreadyDone,
            None => ResultCheck::NotAssigned,
            Some(_) if !ever => ResultCheck::NotAssigned,
            Some(open) => {
                if c.held.contains(&chunk) {
                    c.answered.insert(chunk);
                }
                ResultCheck::Verify(open.work.clone())
            }
        }
    }

    /// Stores verified results; returns `Completion::Duplicate` if another
    /// worker's result got there first. `compute` is how long the worker
    /// says the chunk took (its next chunks are sized from it). Blocks while
    /// the store commits: async callers use [`Coordinator::accept_async`].
    pub fn accept(
        &self,
        conn: ConnId,
        chunk: ChunkId,
        factors: FactorLists,
        compute: Option<Duration>,
    ) -> Result<Completion, StoreError> {
        let Some((kind, span)) = self.accept_begin(conn, chunk) else {
            return Ok(Completion::Duplicate);
        };
        let started = Instant::now();
        let outcome = self.store.complete_span(span, factors, kind);
        self.accept_finish(conn, chunk, span, outcome, compute, started)
    }

    /// Like [`Coordinator::accept`], but waits for the store's commit without
    /// holding a thread, so many results can wait for one group commit.
    pub async fn accept_async(
        &self,
        conn: ConnId,
        chunk: ChunkId,
        factors: FactorLists,
        compute: Option<Duration>,
    ) -> Result<Completion, StoreError> {
        let Some((kind, span)) = self.accept_begin(conn, chunk) else {
            return Ok(Completion::Duplicate);
        };
        let started = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.store.complete_span_then(
            span,
            factors,
            kind,
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
        );
        let outcome = rx
            .await
            .unwrap_or_else(|_| Err(StoreError::Backend("the store dropped a write".into())));
        self.accept_finish(conn, chunk, span, outcome, compute, started)
    }

    /// The chunk's span and the worker's kind, if the chunk is still open.
    fn accept_begin(&self, conn: ConnId, chunk: ChunkId) -> Option<(WorkerKind, Span)> {
        let mut st = self.lock();
        let span = st.open.get(&chunk).map(|o| o.work.span)?;
        let c = st.conns.get_mut(&conn)?;
        c.ever.remove(&chunk);
        Some((c.kind, span))
    }

    /// Books a stored result: metrics, the worker's speed, the chunk's lease.
    fn accept_finish(
        &self,
        conn: ConnId,
        chunk: ChunkId,
        span: Span,
        outcome: Result<Completion, StoreError>,
        compute: Option<Duration>,
        started: Instant,
    ) -> Result<Completion, StoreError> {
        let us = started.elapsed().as_micros() as u64;
        self.metrics.store_writes.fetch_add(1, Relaxed);
        self.metrics.store_write_us.fetch_add(us, Relaxed);
        self.metrics.store_write_max_us.fetch_max(us, Relaxed);
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                self.pause_for_store();
                return Err(e);
            }
        };
        let Completion::Accepted { job_done } = outcome else {
            return Ok(Completion::Duplicate);
        };
        self.metrics.completed.fetch_add(1, Relaxed);
        self.metrics.numbers.fetch_add(span.len, Relaxed);
        let (cancel_on, drained) = {
            let mut st = self.lock();
            let st = &mut *st;
            // The store records results again: a later failure pauses
            // leasing for the shortest time.
            st.store_pause.next = Duration::ZERO;
            let now = Instant::now();
            let open = st.open.remove(&chunk);
            let lease = open.as_ref().and_then(|o| o.lease);
            if let Some(c) = st.conns.get_mut(&conn) {
                c.probation = false;
                c.chunks_done += 1;
                c.numbers_done += span.len;
                c.recent.push_back((now, span.len));
                while c
                    .recent
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
                {
                    c.recent.pop_front();
                }
                // Without the worker's own figure, the time since the lease
                // (which includes waiting in its queue) errs on the short side.
                let took = compute
                    .filter(|d| !d.is_zero())
                    .or(lease.filter(|l| l.conn == conn).map(|l| now - l.since));
                if let (Some(took), Some(work)) = (took, open.as_ref().map(|o| o.work.cost)) {
                    let per_thread = work / took.as_secs_f64().max(1e-6);
                    let s = c.speed.entry(span.job).or_insert(Speed {
                        per_thread,
                        largest: 0.0,
                    });
                    s.per_thread = 0.5 * s.per_thread + 0.5 * per_thread;
                    s.largest = s.largest.max(work);
                }
            }
            if job_done {
                st.remove_job(span.job);
                for c in st.conns.values_mut() {
                    c.speed.remove(&span.job);
                }
            } else if open.is_some() && lease.is_none() {
                // A late result for a chunk waiting in the queue.
                if let Some(q) = st.jobs.get_mut(&span.job) {
                    q.queued -= span.len;
                    if q.queued == 0 {
                        q.returned.clear();
                        st.ready.remove(&(Reverse(q.priority), span.job));
                    }
                }
            }
            let mut others = vec![];
            if let Some(lease) = lease {
                st.unlease_accounting(span.job);
                if let Some(holder) = st.conns.get_mut(&lease.conn) {
                    holder.held.remove(&chunk);
                    if lease.conn != conn {
                        others.push(holder.tx.clone());
                    }
                }
            }
            // The workers copies were made from, perhaps still at it.
            let current = lease.map(|l| l.conn);
            for &prev in open.iter().flat_map(|o| &o.copied_from) {
                if prev == conn || Some(prev) == current {
                    continue;
                }
                if let Some(c) = st.conns.get_mut(&prev) {
                    c.ever.remove(&chunk);
                    others.push(c.tx.clone());
                }
            }
            (others, st.is_drained())
        };
        for tx in cancel_on {
            // Best effort: a full queue means a slow reader that will be dropped anyway.
            let _ = tx.try_send(ServerMessage::Cancel {
                chunk_ids: vec![chunk],
            });
        }
        if job_done {
            tracing::info!(job = span.job, "job complete");
        }
        // Other connections only need waking when there is nothing left
        // anywhere (they report idle); this one leases its next chunk itself.
        if job_done || drained {
            self.bump();
        }
        Ok(Completion::Accepted { job_done })
    }

    /// The store failed to record a result: no leases for a while (see
    /// [`StorePause`]); the sweep ends the pause.
    fn pause_for_store(&self) {
        self.metrics.store_failures.fetch_add(1, Relaxed);
        let mut st = self.lock();
        let pause = &mut st.store_pause;
        if pause.until.is_some() {
            return;
        }
        let length = pause.next.max(STORE_PAUSE_FIRST);
        pause.next = (length * 2).min(STORE_PAUSE_MAX);
        pause.until = Some(Instant::now() + length);
        tracing::warn!(
            secs = length.as_secs(),
            "the store cannot record results: leasing paused"
        );
    }

    /// A wrong result: requeue the chunk if `conn` holds it and add a strike.
    /// Returns the connection's strike count.
    pub fn reject(&self, conn: ConnId, chunk: ChunkId) -> u32 {
        let strikes = {
            let mut st = self.lock();
            let held = st
                .conns
                .get_mut(&conn)
                .is_some_and(|c| c.held.remove(&chunk));
            if held {
                st.drop_lease(chunk);
            }
            let strikes = st.conns.get_mut(&conn).map_or(0, |c| {
                c.ever.remove(&chunk);
                c.strikes += 1;
                self.metrics.rejected.fetch_add(1, Relaxed);
                c.strikes
            });
            (strikes, held)
        };
        let (strikes, requeued) = strikes;
        if requeued {
            self.bump();
        }
        strikes
    }

    /// Whether the connection has nothing to do and nothing is in flight anywhere.
    pub fn is_idle(&self, conn: ConnId) -> bool {
        let st = self.lock();
        st.is_drained() && st.conns.get(&conn).is_none_or(|c| c.held.is_empty())
    }

    /// A snapshot for `/metrics`: connected workers by kind, numbers queued,
    /// chunks leased, chunks requeued so far.
    pub fn gauges(&self) -> Gauges {
        let st = self.lock();
        let mut g = Gauges {
            queued: st.jobs.values().map(|q| q.queued).sum(),
            leased: st.leased_per_job.values().sum(),
            requeued: st.requeued,
            list_bytes: st.list_bytes,
            list_limit: self.max_list_bytes,
            ..Gauges::default()
        };
        for c in st.conns.values() {
            match c.kind {
                WorkerKind::Native => g.native += 1,
                WorkerKind::Browser => g.browser += 1,
            }
            if c.slots == 0 {
                if c.waiting {
                    g.waiting += 1;
                } else {
                    g.paused += 1;
                }
            }
        }
        g
    }

    /// The IP address of a connection (for logs and bans).
    pub fn ip(&self, conn: ConnId) -> Option<IpAddr> {
        self.lock().conns.get(&conn).map(|c| c.ip)
    }

    /// Requeues leases whose ack is overdue or whose worker has been silent too long.
    pub fn sweep(&self, now: Instant) -> usize {
        let resumed = {
            let mut st = self.lock();
            let pause = &mut st.store_pause;
            let over = pause.until.is_some_and(|until| now >= until);
            if over {
                pause.until = None;
            }
            over
        };
        if resumed {
            // Sessions lease when woken.
            self.bump();
        }
        // Only leased chunks can expire, and each connection's `held` set names
        // exactly its leases: walk those, not every open chunk, and judge each
        // connection's silence and speed once.
        let expired: Vec<(ChunkId, ConnId, &'static str)> = {
            let st = self.lock();
            let mut expired = vec![];
            for (&conn, c) in &st.conns {
                let silent = c.silent(now, &self.timing);
                for id in &c.held {
                    let Some((open, lease)) = st.open.get(id).and_then(|o| Some((o, o.lease?)))
                    else {
                        continue;
                    };
                    let held_for = now.saturating_duration_since(lease.since);
                    let why = if silent {
                        "worker silent"
                    } else if held_for > c.lease_deadline(&open.work, &lease, &self.timing) {
                        "past its deadline"
                    } else if !lease.acked && held_for > self.timing.ack_timeout {
                        "no ack"
                    } else {
                        continue;
                    };
                    expired.push((*id, conn, why));
                }
            }
            expired
        };
        if expired.is_empty() {
            self.copy_stragglers(now);
            return 0;
        }
        {
            let mut st = self.lock();
            st.lapsed.forget_expired(now);
            for (id, conn, why) in &expired {
                if let Some(c) = st.conns.get_mut(conn) {
                    c.held.remove(id);
                    if !c.probation {
                        c.probation = true;
                        tracing::info!(
                            conn,
                            "worker let a lease lapse: one chunk at a time until a result is accepted"
                        );
                    }
                    let ip = c.ip;
                    st.lapsed.mark(ip, now, LAPSE_MEMORY);
                }
                st.drop_lease(*id);
                tracing::warn!(
                    chunk = id,
                    conn,
                    reason = why,
                    "lease expired; chunk queued again"
                );
            }
        }
        self.bump();
        expired.len()
    }

    /// At the end of the work (nothing queued for any job), gives idle
    /// workers a copy of each chunk held longer than four chunk targets (8 s
    /// by default): a slow or stalled worker holding a job's last chunks
    /// would otherwise keep it open until their deadline (up to ten times
    /// their expected time, or 10 minutes while its speed is unknown).
    /// The first verified result wins and every other worker holding a
    /// copy is told to drop the chunk. Returns how many copies were given.
    fn copy_stragglers(&self, now: Instant) -> usize {
        let after = self.sizing.target.saturating_mul(4);
        let mut copied = 0;
        {
            let mut st = self.lock();
            let st = &mut *st;
            if !st.ready.is_empty() {
                return 0;
            }
            let mut late: Vec<(Instant, ChunkId, ConnId)> = st
                .open
                .iter()
                .filter_map(|(&id, o)| {
                    let l = o.lease?;
                    (now.saturating_duration_since(l.since) > after)
                        .then_some((l.since, id, l.conn))
                })
                .collect();
            if late.is_empty() {
                return 0;
            }
            late.sort_unstable();
            // Workers with a free slot (not paused, not on probation), the
            // fastest first: a copy is for finishing sooner.
            let mut ranked: Vec<(f64, ConnId, u32)> = st
                .conns
                .iter()
                .filter(|(_, c)| !c.probation && c.slots > 0 && !c.silent(now, &self.timing))
                .filter_map(|(&id, c)| {
                    let busy = c.held.iter().filter(|h| !c.answered.contains(h)).count() as u32;
                    let rate = c.rate(now).unwrap_or(0.0);
                    (busy < c.slots).then_some((rate, id, c.slots - busy))
                })
                .collect();
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut idle: Vec<(ConnId, u32)> =
                ranked.into_iter().map(|(_, id, free)| (id, free)).collect();
            for (_, id, holder) in late {
                // Its result is in and being checked: no copy needed.
                if st
                    .conns
                    .get(&holder)
                    .is_some_and(|c| c.answered.contains(&id))
                {
                    continue;
                }
                // Never back to a worker that held it before.
                let Some(pos) = idle.iter().position(|&(conn, _)| {
                    conn != holder && st.conns.get(&conn).is_some_and(|c| !c.ever.contains(&id))
                }) else {
                    continue;
                };
                let thief = idle[pos].0;
                idle[pos].1 -= 1;
                if idle[pos].1 == 0 {
                    // In order: the rest stay ranked.
                    idle.remove(pos);
                }
                // The holder keeps it in `ever`: its result is still welcome.
                if let Some(c) = st.conns.get_mut(&holder) {
                    c.held.remove(&id);
                }
                if let Some(open) = st.open.get_mut(&id) {
                    // Given to an idle worker: nothing ahead of it.
                    open.lease = Some(Lease {
                        conn: thief,
                        acked: false,
                        since: now,
                        ahead: 0.0,
                    });
                    if !open.copied_from.contains(&holder) {
                        open.copied_from.push(holder);
                    }
                }
                if let Some(c) = st.conns.get_mut(&thief) {
                    c.held.insert(id);
                    c.ever.insert(id);
                    c.copies.push(id);
                }
                self.metrics.leased.fetch_add(1, Relaxed);
                tracing::info!(
                    chunk = id,
                    from = holder,
                    to = thief,
                    "a job's last chunk held long: copy given to an idle worker"
                );
                copied += 1;
            }
        }
        if copied > 0 {
            self.bump();
        }
        copied
    }
}

impl State {
    /// Nothing queued and nothing in flight.
    fn is_drained(&self) -> bool {
        self.open.is_empty() && self.ready.is_empty()
    }

    fn add_job(&mut self, id: JobId, q: JobQueue) {
        if q.queued > 0 {
            self.ready.insert((Reverse(q.priority), id));
        }
        self.list_bytes += q.numbers.held_bytes();
        self.jobs.insert(id, q);
    }

    /// Forgets a job's queue (it is done or cancelled).
    fn remove_job(&mut self, id: JobId) {
        if let Some(q) = self.jobs.remove(&id) {
            self.ready.remove(&(Reverse(q.priority), id));
            self.list_bytes -= q.numbers.held_bytes();
        }
    }

    /// Ends the lease on an open chunk (if any) and puts it at the front of its job's queue.
    fn drop_lease(&mut self, id: ChunkId) {
        let Some(open) = self.open.get_mut(&id) else {
            return;
        };
        if open.lease.take().is_some() {
            self.requeued += 1;
            let span = open.work.span;
            self.unlease_accounting(span.job);
            if let Some(q) = self.jobs.get_mut(&span.job) {
                q.returned.push_front(id);
                q.queued += span.len;
                self.ready.insert((Reverse(q.priority), span.job));
            }
        }
    }

    fn unlease_accounting(&mut self, job: JobId) {
        if let Some(n) = self.leased_per_job.get_mut(&job) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FullDisk, MemoryStore};
    use crowdfactor_protocol::ClientMessage;
    use std::net::Ipv4Addr;

    fn timing(ack_ms: u64, lease_ms: u64) -> LeaseTiming {
        LeaseTiming {
            ack_timeout: Duration::from_millis(ack_ms),
            lease_timeout: Duration::from_millis(lease_ms),
            max_lease: Duration::from_secs(3600),
        }
    }

    fn coord(ack_ms: u64, lease_ms: u64) -> Coordinator {
        Coordinator::new(
            Arc::new(MemoryStore::new()),
            timing(ack_ms, lease_ms),
            ChunkSizing::default(),
        )
        .expect("coordinator")
    }

    fn job(numbers: Vec<u128>, chunk_cap: u32) -> NewJob {
        NewJob {
            chunk_cap: Some(chunk_cap),
            ..uncapped(numbers.into())
        }
    }

    /// A job whose chunks are sized by the workers alone.
    fn uncapped(numbers: Numbers) -> NewJob {
        NewJob {
            name: None,
            numbers,
            chunk_cap: None,
            priority: 0,
        }
    }

    /// The deadline of chunk `id`, leased to `conn`.
    fn deadline_of(c: &Coordinator, conn: ConnId, id: ChunkId) -> Duration {
        let st = c.lock();
        let open = &st.open[&id];
        let lease = open.lease.expect("leased");
        st.conns[&conn].lease_deadline(&open.work, &lease, &c.timing)
    }

    /// Every index of a job of `total` numbers covered exactly once.
    fn assert_covers(spans: &[Span], total: u64) {
        let mut seen = vec![0u32; total as usize];
        for s in spans {
            for i in s.start..s.end() {
                seen[i as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "{spans:?} cover {seen:?}");
    }

    fn span_of(c: &Coordinator, id: ChunkId) -> Span {
        c.lock().open[&id].work.span
    }

    /// A ban covers the IPv4 address however it arrives, and the whole /64
    /// of an IPv6 address; it ends after its duration.
    #[test]
    fn bans_cover_an_address_or_its_ipv6_network() {
        let c = coord(10_000, 10_000);
        let ip = |s: &str| s.parse::<IpAddr>().expect("an address");
        c.ban(ip("203.0.113.7"), Duration::from_secs(600));
        c.ban(ip("2001:db8:1:2::5"), Duration::from_secs(600));
        for banned in [
            "203.0.113.7",
            "::ffff:203.0.113.7",
            "2001:db8:1:2::5",
            "2001:db8:1:2:ffff::1",
        ] {
            assert!(c.banned_for(ip(banned)).is_some(), "{banned}");
        }
        for free in ["203.0.113.8", "2001:db8:1:3::5"] {
            assert!(c.banned_for(ip(free)).is_none(), "{free}");
        }
        c.ban(ip("198.51.100.1"), Duration::ZERO);
        assert!(c.banned_for(ip("198.51.100.1")).is_none());
    }

    /// Jobs that ended (done or cancelled) go once `keep` has passed since
    /// they ended, with their results; open ones stay however old.
    #[test]
    fn finished_jobs_are_deleted_after_their_retention() {
        let c = coord(10_000, 10_000);
        let done = c.create_job(job(vec![12, 35], 5)).expect("job");
        let cancelled = c.create_job(job(vec![77], 5)).expect("job");
        c.cancel_job(cancelled.id)
            .expect("cancel")
            .expect("known job");
        let a = conn(&c, 1);
        let mut leased = c.lease(a);
        while let Some(x) = leased.first() {
            assert_eq!(x.job_id, done.id.to_string(), "only the first job has work");
            let lists: Vec<Vec<u128>> = x.numbers.iter().map(crowdfactor_factor::factor).collect();
            c.accept(a, x.chunk_id, lists.into(), None).expect("stored");
            leased = c.lease(a);
        }
        let open = c.create_job(job(vec![91], 5)).expect("job");
        let ended = |id| c.store().job(id).expect("store").expect("job").finished_ms;
        assert!(ended(done.id).is_some() && ended(cancelled.id).is_some());
        assert_eq!(ended(open.id), None);
        let keep = Duration::from_millis(300);
        assert_eq!(c.delete_finished(keep).expect("store"), 0, "ended just now");
        std::thread::sleep(keep + Duration::from_millis(50));
        assert_eq!(c.delete_finished(keep).expect("store"), 2);
        let left: Vec<JobId> = c
            .store()
            .jobs()
            .expect("store")
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(left, vec![open.id]);
        assert_eq!(c.delete_finished(Duration::ZERO).expect("store"), 0);
        assert!(!c.lease(a).is_empty(), "the open job still has its work");
    }

    #[test]
    fn higher_priority_jobs_go_first_and_cancel_drops_chunks() {
        let c = coord(10_000, 10_000);
        let low = c.create_job(job(vec![2, 3], 1)).expect("job");
        let high = c
            .create_job(NewJob {
                priority: 5,
                ..job(vec![5, 7], 1)
            })
            .expect("job");
        let (tx, mut rx) = mpsc::channel(8);
        let a = c.register(WorkerKind::Native, 3, Ipv4Addr::LOCALHOST.into(), tx);
        let got: Vec<String> = c.lease(a).iter().map(|x| x.job_id.clone()).collect();
        assert_eq!(
            got,
            vec![high.id.to_string(), high.id.to_string(), low.id.to_string()]
        );
        c.cancel_job(low.id).expect("cancel").expect("known job");
        assert!(matches!(rx.try_recv(), Ok(ServerMessage::Cancel { .. })));
        let b = conn(&c, 5);
        assert!(
            c.lease(b).is_empty(),
            "cancelled chunks are not leased again"
        );
        assert!(c.cancel_job(999).expect("cancel").is_none());
    }

    #[test]
    fn lists_past_the_memory_limit_are_refused_until_others_end() {
        // Room for 30 narrow numbers.
        let c = coord(10_000, 10_000).with_list_limit(8 * 30);
        let first = c.create_job(job((1..=20).collect(), 5)).expect("first");
        assert_eq!(c.list_bytes(), 160);
        match c.create_job(job((1..=11).collect(), 5)) {
            Err(CreateJobError::Full { held, need, limit }) => {
                assert_eq!((held, need, limit), (160, 88, 240));
            }
            other => panic!("11 more numbers fit: {other:?}"),
        }
        assert_eq!(c.list_bytes(), 160, "a refused job holds nothing");
        let range = Numbers::range(999_999_999_999, 2, 1_000_000).expect("range");
        c.create_job(uncapped(range))
            .expect("a range takes no room");
        c.create_job(job((1..=10).collect(), 5)).expect("10 fit");
        assert_eq!(c.list_bytes(), 240);
        c.cancel_job(first.id).expect("cancel").expect("known job");
        assert_eq!(c.list_bytes(), 80, "a cancelled job's list is let go");
        // Numbers of 2^64 and more take 16 bytes each.
        assert!(c.create_job(job(vec![1 << 64; 11], 5)).is_err());
        let wide = c
            .create_job(NewJob {
                priority: 5,
                ..job(vec![1 << 64; 10], 5)
            })
            .expect("wide");
        assert_eq!(c.list_bytes(), 240);
        // Finishing a job lets its list go too.
        let a = conn(&c, 2);
        let wide_id = wide.id.to_string();
        let mut leased = c.lease(a);
        while leased.iter().any(|x| x.job_id == wide_id) {
            for x in leased.iter().filter(|x| x.job_id == wide_id) {
                let lists: Vec<Vec<u128>> =
                    x.numbers.iter().map(crowdfactor_factor::factor).collect();
                c.accept(a, x.chunk_id, lists.into(), None).expect("stored");
            }
            leased = c.lease(a);
        }
        assert!(c
            .store()
            .job(wide.id)
            .expect("store")
            .is_some_and(|j| j.done == 10));
        assert_eq!(c.list_bytes(), 80);
        assert_eq!(c.gauges().list_bytes, 80);
    }

    #[test]
    fn a_list_is_let_go_as_soon_as_the_store_has_its_job_done() {
        // Room for one job of 20 narrow numbers at a time.
        let c = coord(10_000, 10_000).with_list_limit(8 * 30);
        let numbers: Vec<u128> = (1..=20).collect();
        let first = c.create_job(job(numbers.clone(), 20)).expect("first");
        let a = conn(&c, 8);
        let mut chunks = c.lease(a);
        let x = chunks.pop().expect("chunks");
        let factor_all = |x: &Assignment| -> Vec<Vec<u128>> {
            x.numbers.iter().map(crowdfactor_factor::factor).collect()
        };
        for y in &chunks {
            c.accept(a, y.chunk_id, factor_all(y).into(), None)
                .expect("booked");
        }
        // The store commits the last result (the API now shows the job
        // done) before the coordinator has booked it.
        let lists = factor_all(&x);
        let span = Span {
            job: first.id,
            start: 20 - lists.len() as u64,
            len: lists.len() as u64,
        };
        c.store()
            .complete_span(span, lists.clone().into(), WorkerKind::Native)
            .expect("stored");
        assert!(c
            .store()
            .job(first.id)
            .expect("store")
            .is_some_and(|j| !j.is_open()));
        let second = c
            .create_job(job(numbers.clone(), 20))
            .expect("the finished job's room is free");
        assert_eq!(c.list_bytes(), 160);
        // The booking that follows changes nothing more.
        c.accept(a, x.chunk_id, lists.into(), None).expect("booked");
        assert_eq!(c.list_bytes(), 160);
        assert!(c.lease(a).iter().all(|y| y.job_id == second.id.to_string()));
        // A job still open keeps its room.
        assert!(matches!(
            c.create_job(job(numbers, 20)),
            Err(CreateJobError::Full { held: 160, .. })
        ));
        assert!(c
            .store()
            .job(second.id)
            .expect("store")
            .is_some_and(|j| j.is_open()));
    }

    #[test]
    fn a_priority_change_reorders_the_queue() {
        let c = coord(10_000, 10_000);
        let first = c.create_job(job(vec![2, 3], 1)).expect("job");
        let second = c.create_job(job(vec![5, 7], 1)).expect("job");
        let raised = c.set_priority(second.id, 5).expect("store");
        assert_eq!(raised.expect("known job").priority, 5);
        let a = conn(&c, 3);
        let got: Vec<String> = c.lease(a).iter().map(|x| x.job_id.clone()).collect();
        assert_eq!(
            got,
            vec![
                second.id.to_string(),
                second.id.to_string(),
                first.id.to_string()
            ]
        );
        assert!(c.set_priority(999, 1).expect("store").is_none());
    }

    #[test]
    fn a_range_job_is_assigned_as_ranges() {
        let c = coord(10_000, 10_000);
        let numbers = Numbers::range(999_999_999_999, 2, 25).expect("range");
        c.create_job(NewJob {
            name: None,
            numbers: numbers.clone(),
            chunk_cap: Some(10),
            priority: 0,
        })
        .expect("job");
        let a = conn(&c, 5);
        let got = c.lease(a);
        assert!(!got.is_empty());
        for x in &got {
            let ChunkNumbers::Range(r) = x.numbers else {
                panic!("a range job's chunk is listed: {x:?}");
            };
            let span = span_of(&c, x.chunk_id);
            assert_eq!(r.step(), 2);
            let expected: Vec<u128> = numbers
                .iter()
                .skip(span.start as usize)
                .take(span.len as usize)
                .collect();
            assert_eq!(x.numbers.iter().collect::<Vec<_>>(), expected);
        }
    }

    fn conn(c: &Coordinator, slots: u32) -> ConnId {
        let (tx, _rx) = mpsc::channel(8);
        c.register(WorkerKind::Native, slots, Ipv4Addr::LOCALHOST.into(), tx)
    }

    #[test]
    fn a_chunk_is_leased_to_one_worker_and_requeued_on_close() {
        let c = coord(10_000, 10_000);
        c.create_job(job((1..=10).collect(), 3)).expect("job");
        let (a, b) = (conn(&c, 2), conn(&c, 100));
        let la = c.lease(a);
        assert_eq!(la.len(), 2);
        let lb = c.lease(b);
        assert!(c.lease(b).is_empty(), "everything is leased");
        let spans: Vec<Span> = la
            .iter()
            .chain(&lb)
            .map(|x| span_of(&c, x.chunk_id))
            .collect();
        assert!(spans.iter().all(|s| s.len <= 3), "the job's cap holds");
        assert_covers(&spans, 10);
        for x in la.iter().chain(&lb) {
            let s = span_of(&c, x.chunk_id);
            assert_eq!(
                x.numbers.iter().collect::<Vec<_>>(),
                (s.start as u128 + 1..=s.end() as u128).collect::<Vec<_>>()
            );
        }
        c.unregister(a);
        let again = c.lease(b);
        let mut ids: Vec<_> = again.iter().map(|x| x.chunk_id).collect();
        ids.sort();
        let mut want: Vec<_> = la.iter().map(|x| x.chunk_id).collect();
        want.sort();
        assert_eq!(
            ids, want,
            "handed-back chunks are leased again as they were"
        );
    }

    /// A result read frees its slot before it is verified and stored, but a
    /// worker never holds more than twice its slots; a wrong result's chunk
    /// is requeued whole and the slot accounting stays right.
    #[test]
    fn a_result_frees_its_slot_before_the_commit() {
        let c = coord(10_000, 10_000);
        c.create_job(job((1..=20).collect(), 1)).expect("job");
        let a = conn(&c, 2);
        let first = c.lease(a);
        assert_eq!(first.len(), 2);
        assert!(c.lease(a).is_empty(), "both slots are taken");
        for x in &first {
            assert!(matches!(
                c.check_result(a, x.chunk_id),
                ResultCheck::Verify(_)
            ));
        }
        let second = c.lease(a);
        assert_eq!(second.len(), 2, "answered chunks free their slots");
        for x in &second {
            assert!(matches!(
                c.check_result(a, x.chunk_id),
                ResultCheck::Verify(_)
            ));
        }
        assert!(
            c.lease(a).is_empty(),
            "at most twice the slots while results wait for the store"
        );
        // The first two are stored (the second pair still waits): two more.
        for x in &first {
            let n = x.numbers.iter().next().expect("one number");
            let lists = FactorLists::from(vec![crowdfactor_factor::factor(n)]);
            let done = c.accept(a, x.chunk_id, lists, None).expect("stored");
            assert!(matches!(done, Completion::Accepted { .. }));
        }
        let third = c.lease(a);
        assert_eq!(third.len(), 2);
        // A result for a chunk this worker does not hold frees nothing.
        let b = conn(&c, 1);
        let lb = c.lease(b);
        assert!(matches!(
            c.check_result(a, lb[0].chunk_id),
            ResultCheck::NotAssigned
        ));
        assert!(c.lease(a).is_empty());
        // A rejected answer's chunk goes back to the queue, whole.
        c.reject(a, second[0].chunk_id);
        c.unregister(b);
        let d = conn(&c, 5);
        let requeued: Vec<ChunkId> = c.lease(d).iter().map(|x| x.chunk_id).collect();
        assert!(requeued.contains(&second[0].chunk_id), "{requeued:?}");
        assert!(requeued.contains(&lb[0].chunk_id), "{requeued:?}");
    }

    /// The threads a worker claims count up to a bound: one claiming four
    /// billion cannot cut everyone's chunks down to single numbers.
    #[test]
    fn an_inflated_thread_count_is_capped() {
        let c = coord(10_000, 10_000);
        c.create_job(uncapped((1..=200_000).collect()))
            .expect("job");
        let (fair, boaster) = (conn(&c, 1), conn(&c, 1));
        c.describe(fair, "", 1);
        c.describe(boaster, "", u32::MAX);
        let shown = c.workers();
        let claimed = shown.iter().find(|w| w.id == boaster).expect("listed");
        assert_eq!(claimed.threads, MAX_THREADS);
        let got = c.lease(fair);
        let len = span_of(&c, got[0].chunk_id).len;
        // A share of the job for each of 1 + 1024 threads, not of 2^32.
        assert!(len >= 200_000 / (2 * 1025), "{len}");
    }

    #[test]
    fn chunks_grow_with_measured_speed_and_shrink_at_the_end() {
        // A first chunk far below the target (this worker is thousands of
        // times slower than the engine), to see the growth cap.
        let sizing = ChunkSizing {
            first: Duration::from_micros(150),
            ..ChunkSizing::default()
        };
        let c = Coordinator::new(Arc::new(MemoryStore::new()), timing(10_000, 10_000), sizing)
            .expect("coordinator");
        let total = 200_000u64;
        // Numbers of one size: sized by work or by count, chunks are the same.
        let base = 1u128 << 40;
        let info = c
            .create_job(uncapped(
                (1..=u128::from(total)).map(|i| base + i).collect(),
            ))
            .expect("job");
        let a = conn(&c, 1);
        c.describe(a, "", 1);
        let mut spans = vec![];
        let mut lens = vec![];
        loop {
            let got = c.lease(a);
            let Some(x) = got.first() else { break };
            let span = span_of(&c, x.chunk_id);
            spans.push(span);
            lens.push(span.len);
            // This worker factors 10,000 numbers per second per thread.
            let took = Duration::from_micros(span.len * 100);
            let factors = vec![vec![]; span.len as usize];
            c.accept(a, x.chunk_id, factors.into(), Some(took))
                .expect("accept");
        }
        assert_covers(&spans, total);
        let first = first_chunk_len(base + u128::from(total), sizing.first);
        assert!((2..1000).contains(&first), "{first}");
        assert_eq!(lens[0], first, "first chunk: speed unknown");
        assert_eq!(
            lens[1],
            8 * first,
            "growth is limited to 8x the largest chunk so far"
        );
        assert!(
            lens.contains(&20_000),
            "at 10,000/s a 2 s chunk has 20,000 numbers: {lens:?}"
        );
        let last = &lens[lens.len() - 3..];
        assert!(
            last.iter().all(|&l| l < 20_000),
            "the tail is cut finer: {lens:?}"
        );
        let full = lens
            .iter()
            .position(|&l| l == 20_000)
            .expect("a full chunk");
        assert!(
            lens[full..lens.len() - 1].iter().all(|&l| l >= 200),
            "but not below a hundredth of the target (20 ms, 200 numbers) but for the last: {lens:?}"
        );
        let info = c.store().job(info.id).expect("job").expect("exists");
        assert_eq!(info.done, total);
        assert!(c.is_idle(a));
    }

    /// A list of small numbers followed by large ones: the speed measured
    /// on the small ones does not cut thousands of the large ones into one
    /// chunk (minutes on one thread, past its deadline): chunks are sized
    /// by the work their numbers stand for.
    #[test]
    fn a_list_of_mixed_sizes_is_cut_by_work_not_count() {
        let c = coord(10_000, 10_000);
        let small: Vec<u128> = (1_000..101_000).collect();
        let large: Vec<u128> = (0..500).map(|i| (1u128 << 111) + i).collect();
        let numbers: Vec<u128> = small.iter().chain(&large).copied().collect();
        let info = c.create_job(uncapped(numbers.clone().into())).expect("job");
        let a = conn(&c, 1);
        c.describe(a, "", 1);
        // This worker takes 1 µs for a small number, 20 ms for a large one.
        let secs = |n: u128| if n < 1 << 20 { 1e-6 } else { 20e-3 };
        let (mut spans, mut took, mut large_chunks) = (vec![], vec![], 0);
        loop {
            let got = c.lease(a);
            let Some(x) = got.first() else { break };
            let span = span_of(&c, x.chunk_id);
            let chunk = &numbers[span.start as usize..span.end() as usize];
            let t: f64 = chunk.iter().map(|&n| secs(n)).sum();
            large_chunks += usize::from(chunk.iter().any(|&n| n >= 1 << 20));
            spans.push(span);
            took.push(t);
            let factors = vec![vec![]; span.len as usize];
            c.accept(
                a,
                x.chunk_id,
                factors.into(),
                Some(Duration::from_secs_f64(t)),
            )
            .expect("accept");
        }
        assert_covers(&spans, numbers.len() as u64);
        // 10 s of large numbers at ~2 s a chunk.
        assert!(large_chunks >= 5, "{large_chunks} chunks: {took:?}");
        assert!(
            took.iter().all(|&t| t <= 6.0),
            "no chunk takes more than three times the target: {took:?}"
        );
        let info = c.store().job(info.id).expect("job").expect("exists");
        assert_eq!(info.done, numbers.len() as u64);
    }

    /// Numbers of one size, the easy ones first (112-bit numbers with small
    /// factors, 0.3 ms each), then that size's semiprimes (30 ms each), worked
    /// by one thread holding two chunks, as the native worker does: the
    /// speed measured on the easy ones cuts a chunk of semiprimes that takes
    /// many times its target, and the chunk leased behind it waits that
    /// long before it starts; neither lease lapses.
    #[test]
    fn a_chunk_harder_than_the_last_keeps_its_lease() {
        let c = coord(10_000, 10_000);
        let easy = 20_000;
        let numbers: Vec<u128> = (0..26_000).map(|i| (1u128 << 111) + i).collect();
        c.create_job(uncapped(numbers.clone().into())).expect("job");
        let a = conn(&c, 2);
        c.describe(a, "", 1);
        let secs = |i: u64| if i < easy { 0.3e-3 } else { 30e-3 };
        // The worker's clock: its one thread works the chunks in the order
        // they were leased.
        let (mut now, mut queue, mut longest) = (0f64, VecDeque::new(), 0f64);
        loop {
            queue.extend(c.lease(a).into_iter().map(|x| (x.chunk_id, now)));
            let Some((id, leased_at)) = queue.pop_front() else {
                break;
            };
            let span = span_of(&c, id);
            let t: f64 = (span.start..span.end()).map(secs).sum();
            now += t;
            let deadline = deadline_of(&c, a, id);
            let held = now - leased_at;
            assert!(
                held < deadline.as_secs_f64(),
                "{span:?} took {t:.1} s, held {held:.1} s, past its deadline of {deadline:?}"
            );
            longest = longest.max(t);
            let factors = vec![vec![]; span.len as usize];
            c.accept(a, id, factors.into(), Some(Duration::from_secs_f64(t)))
                .expect("accept");
        }
        // The case in point: a chunk of semiprimes cut at the easy speed.
        assert!(longest > 20.0, "longest chunk {longest:.1} s");
        let done = c.store().job(1).expect("job").expect("exists").done;
        assert_eq!(done, numbers.len() as u64);
    }

    /// A worker asking for far more chunks than it has threads (a hoarder)
    /// gets no longer deadlines for them: a chunk is taken to wait for one
    /// other at most, as with the two slots a thread workers ask for.
    #[test]
    fn hoarded_chunks_get_no_longer_deadlines() {
        let c = coord(10_000, 10_000);
        c.create_job(job((1..=100_000).collect(), 100))
            .expect("job");
        let a = conn(&c, 1);
        c.describe(a, "", 1);
        // Its speed: 100 numbers in 2 s, so each chunk's deadline is 20 s.
        loop {
            let x = c.lease(a);
            let id = x[0].chunk_id;
            let len = span_of(&c, id).len;
            c.accept(
                a,
                id,
                vec![vec![]; len as usize].into(),
                Some(Duration::from_secs(2)),
            )
            .expect("accept");
            if len == 100 {
                break;
            }
        }
        c.set_slots(a, 500, false);
        let got = c.lease(a);
        assert_eq!(got.len(), 500);
        let longest = got
            .iter()
            .map(|x| deadline_of(&c, a, x.chunk_id))
            .max()
            .unwrap_or_default();
        assert!(longest <= Duration::from_secs(41), "{longest:?}");
    }

    /// First chunks shrink as the numbers grow: thousands of the classic
    /// job's 40-bit numbers, one 128-bit number; the same work each for
    /// the hardest numbers of their size.
    #[test]
    fn first_chunks_follow_the_size_of_the_numbers() {
        let first = Duration::from_millis(100);
        let len = |n: u128| first_chunk_len(n, first);
        let seed = len(999_999_999_999 + 2_000_000);
        assert!(seed >= 1_000, "{seed}");
        assert!((10..=1_000).contains(&len(u128::from(u64::MAX))));
        assert_eq!(len(u128::MAX), 1);
        let mut previous = u64::MAX;
        for bits in 1..=128 {
            let n = u128::MAX >> (128 - bits);
            assert!(len(n) <= previous, "{bits} bits");
            previous = len(n);
            let work = len(n) as f64 * 10.0 * hardest_secs(bits);
            assert!(len(n) <= 1 || work <= 0.1, "{bits} bits: {work} s");
        }
        assert_eq!(first_chunk_len(12, Duration::ZERO), 1);
    }

    #[test]
    fn chunk_results_must_fit_one_message() {
        let c = Coordinator::new(
            Arc::new(MemoryStore::new()),
            timing(10_000, 10_000),
            ChunkSizing {
                max_message_bytes: 64 << 10,
                // First chunks far longer than a message holds.
                first: Duration::from_secs(1_000_000),
                ..ChunkSizing::default()
            },
        )
        .expect("coordinator");
        c.create_job(uncapped(vec![1 << 127; 1000].into()))
            .expect("job");
        let a = conn(&c, 1);
        let got = c.lease(a);
        let len = span_of(&c, got[0].chunk_id).len;
        assert!(
            len < 1000,
            "{len} numbers of 2^127 need more than 64 KiB of results"
        );
        assert!(len as usize * result_bytes_bound(1 << 127) <= 64 << 10);
        let text = ClientMessage::Result(crowdfactor_protocol::ChunkResult {
            chunk_id: 1,
            factors: vec![vec![2; 127]; len as usize].iter().collect(),
            compute_us: Some(u64::MAX),
        })
        .encode();
        assert!(
            text.len() <= 64 << 10,
            "the worst case fits: {} bytes",
            text.len()
        );
    }

    #[test]
    fn a_restart_queues_only_what_has_no_result() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (info, _) = store.create_job(job((1..=10).collect(), 100)).expect("job");
        store
            .complete_span(
                Span {
                    job: info.id,
                    start: 3,
                    len: 2,
                },
                vec![vec![2, 2], vec![5]].into(),
                WorkerKind::Native,
            )
            .expect("complete");
        let c = Coordinator::new(store, timing(10_000, 10_000), ChunkSizing::default())
            .expect("coordinator");
        assert_eq!(c.gauges().queued, 8);
        let a = conn(&c, 100);
        let spans: Vec<Span> = c.lease(a).iter().map(|x| span_of(&c, x.chunk_id)).collect();
        let mut all = spans.clone();
        all.push(Span {
            job: info.id,
            start: 3,
            len: 2,
        });
        assert_covers(&all, 10);
    }

    #[test]
    fn unacked_and_silent_leases_expire() {
        let c = coord(0, 60_000);
        c.create_job(job(vec![2, 3], 1)).expect("job");
        let a = conn(&c, 2);
        let leased = c.lease(a);
        c.ack(a, leased[0].chunk_id);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.sweep(Instant::now()), 1, "only the unacked lease lapses");
        let b = conn(&c, 2);
        assert_eq!(c.lease(b)[0].chunk_id, leased[1].chunk_id);
        let c2 = coord(60_000, 50);
        c2.create_job(job(vec![2], 1)).expect("job");
        let a = conn(&c2, 1);
        let leased = c2.lease(a);
        assert_eq!(leased.len(), 1);
        c2.ack(a, leased[0].chunk_id);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c2.sweep(Instant::now()), 1, "acked, but silent");
    }

    /// A worker that sat on its chunks until they lapsed gets one at a time
    /// until a result of it is accepted, then its slots again.
    #[test]
    fn a_worker_that_lets_leases_lapse_holds_one_chunk_until_a_result() {
        let c = coord(0, 60_000);
        c.create_job(job((2..40).collect(), 1)).expect("job");
        let a = conn(&c, 4);
        assert_eq!(c.lease(a).len(), 4);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.sweep(Instant::now()), 4, "none acked");
        let one = c.lease(a);
        assert_eq!(one.len(), 1, "on probation: one chunk");
        assert!(c.workers()[0].probation);
        c.ack(a, one[0].chunk_id);
        assert!(c.lease(a).is_empty(), "an ack is not a result");
        let n = span_of(&c, one[0].chunk_id).start as u128 + 2;
        let factors = vec![crowdfactor_factor::factor(n)];
        c.accept(a, one[0].chunk_id, factors.into(), None)
            .expect("accept");
        assert!(!c.workers()[0].probation);
        assert_eq!(c.lease(a).len(), 4, "its slots again");
        // A new connection from its address starts on probation, one from
        // elsewhere does not.
        let (tx, _rx) = mpsc::channel(8);
        let again = c.register(WorkerKind::Native, 4, Ipv4Addr::LOCALHOST.into(), tx);
        assert_eq!(c.lease(again).len(), 1, "reconnecting does not help");
        let (tx, _rx) = mpsc::channel(8);
        let other = c.register(
            WorkerKind::Native,
            4,
            Ipv4Addr::new(192, 0, 2, 1).into(),
            tx,
        );
        assert_eq!(c.lease(other).len(), 4);
    }

    /// A worker silent past the lease timeout (a laptop asleep) is given
    /// nothing, not the same chunk at every sweep; heard again, it is.
    #[test]
    fn a_silent_worker_is_leased_nothing_until_it_is_heard_again() {
        let c = coord(60_000, 50);
        c.create_job(job((2..40).collect(), 1)).expect("job");
        let a = conn(&c, 2);
        assert_eq!(c.lease(a).len(), 2);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.sweep(Instant::now()), 2, "silent: both requeued");
        assert!(c.lease(a).is_empty(), "still silent");
        assert_eq!(c.sweep(Instant::now()), 0, "nothing leased, nothing lapses");
        c.touch(a);
        assert_eq!(c.lease(a).len(), 1, "heard again: work (on probation)");
    }

    /// While results cannot be recorded, nothing is leased (workers would
    /// factor the same chunks over and over, each result lost); the pause
    /// doubles with each failure and resets once a result is recorded.
    #[test]
    fn leasing_pauses_while_the_store_cannot_record_results() {
        let store = Arc::new(FullDisk::default());
        let c = Coordinator::new(
            store.clone(),
            timing(60_000, 60_000),
            ChunkSizing::default(),
        )
        .expect("coordinator");
        c.create_job(job((2..40).collect(), 1)).expect("job");
        let a = conn(&c, 2);
        let answer = |id: ChunkId| -> FactorLists {
            let n = span_of(&c, id).start as u128 + 2;
            vec![crowdfactor_factor::factor(n)].into()
        };
        // A failure, handled as the session does: the chunk goes back.
        let fail = |id: ChunkId| {
            assert!(c.accept(a, id, answer(id), None).is_err());
            c.release(a, &[id]);
        };
        let held = c.lease(a);
        assert_eq!(held.len(), 2);
        store.set_full(true);
        // A job the store cannot take holds no room for its list.
        let before = c.list_bytes();
        assert!(matches!(
            c.create_job(job((2..40).collect(), 1)),
            Err(CreateJobError::Store(StoreError::Full(_)))
        ));
        assert_eq!(c.list_bytes(), before);
        let t0 = Instant::now();
        fail(held[0].chunk_id);
        assert_eq!(c.metrics.store_failures.load(Relaxed), 1);
        assert!(c.lease(a).is_empty(), "paused");
        c.sweep(t0 + Duration::from_millis(500));
        assert!(c.lease(a).is_empty(), "paused for a second");
        c.sweep(t0 + Duration::from_millis(1100));
        let retry = c.lease(a);
        assert_eq!(retry.len(), 1, "resumed: the free slot is filled");
        // Still full: twice as long.
        let t1 = Instant::now();
        fail(retry[0].chunk_id);
        c.sweep(t1 + Duration::from_millis(1100));
        assert!(c.lease(a).is_empty(), "the second pause is two seconds");
        c.sweep(t1 + Duration::from_millis(2100));
        let retry = c.lease(a);
        assert_eq!(retry.len(), 1);
        // Space again: recorded, and the next failure pauses one second.
        store.set_full(false);
        c.accept(a, retry[0].chunk_id, answer(retry[0].chunk_id), None)
            .expect("recorded");
        store.set_full(true);
        let t2 = Instant::now();
        fail(held[1].chunk_id);
        c.sweep(t2 + Duration::from_millis(1100));
        assert_eq!(c.lease(a).len(), 2, "the pause was one second again");
    }

    /// A coordinator with a 1 ms chunk target (copies after 4 ms) and a job
    /// of one-number chunks of `numbers`.
    fn endgame(numbers: Vec<u128>) -> Coordinator {
        let sizing = ChunkSizing {
            target: Duration::from_millis(1),
            ..ChunkSizing::default()
        };
        let c = Coordinator::new(Arc::new(MemoryStore::new()), timing(60_000, 60_000), sizing)
            .expect("coordinator");
        c.create_job(job(numbers, 1)).expect("job");
        c
    }

    /// With nothing left to lease, a chunk held past four chunk targets is
    /// copied to an idle worker (never back to one that held it); the first
    /// result wins and the other holder is told to drop it.
    #[test]
    fn idle_workers_get_copies_of_chunks_held_long_at_the_end() {
        let c = endgame(vec![6, 35]);
        let (tx, mut slow_rx) = mpsc::channel(8);
        let slow = c.register(WorkerKind::Native, 2, Ipv4Addr::LOCALHOST.into(), tx);
        let held = c.lease(slow);
        assert_eq!(held.len(), 2);
        for a in &held {
            c.ack(slow, a.chunk_id);
        }
        let idle = conn(&c, 1);
        assert!(c.lease(idle).is_empty(), "nothing queued");
        assert_eq!(c.copy_stragglers(Instant::now()), 0, "not held long yet");
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(c.sweep(Instant::now()), 0, "nothing lapses");
        let copy = c.lease(idle);
        assert_eq!(copy.len(), 1, "one free slot, one copy");
        assert_eq!(copy[0].chunk_id, held[0].chunk_id, "the longest held first");
        assert_eq!(
            c.copy_stragglers(Instant::now()),
            0,
            "the slow one is full, the idle one busy"
        );
        let n = copy[0].numbers.get(0).expect("a number");
        let factors = vec![crowdfactor_factor::factor(n)];
        c.accept(idle, copy[0].chunk_id, factors.into(), None)
            .expect("accept");
        match slow_rx.try_recv() {
            Ok(ServerMessage::Cancel { chunk_ids }) => assert_eq!(chunk_ids, [held[0].chunk_id]),
            other => panic!("expected a cancel, got {other:?}"),
        }
        assert!(matches!(
            c.check_result(slow, held[0].chunk_id),
            ResultCheck::NotAssigned | ResultCheck::AlreadyDone
        ));
        // The other chunk: copied to the now idle worker at the next sweep;
        // the slow worker's result comes first this time and counts.
        c.sweep(Instant::now());
        let copy = c.lease(idle);
        assert_eq!(copy[0].chunk_id, held[1].chunk_id);
        assert!(matches!(
            c.check_result(slow, held[1].chunk_id),
            ResultCheck::Verify(_)
        ));
        let factors = vec![crowdfactor_factor::factor(35)];
        assert_eq!(
            c.accept(slow, held[1].chunk_id, factors.into(), None)
                .expect("accept"),
            Completion::Accepted { job_done: true }
        );
    }

    /// A copy that stalls too is copied again; when a result comes, every
    /// worker still holding a copy is told to drop it, not only the last.
    #[test]
    fn every_worker_a_chunk_was_copied_from_is_told_to_drop_it() {
        let c = endgame(vec![35]);
        let stalled = |c: &Coordinator| {
            let (tx, rx) = mpsc::channel(8);
            (
                c.register(WorkerKind::Native, 1, Ipv4Addr::LOCALHOST.into(), tx),
                rx,
            )
        };
        let cancelled = |rx: &mut mpsc::Receiver<ServerMessage>| {
            std::iter::from_fn(|| rx.try_recv().ok())
                .any(|m| matches!(m, ServerMessage::Cancel { .. }))
        };
        let (first, mut first_rx) = stalled(&c);
        let id = c.lease(first)[0].chunk_id;
        c.ack(first, id);
        let (second, mut second_rx) = stalled(&c);
        std::thread::sleep(Duration::from_millis(10));
        c.sweep(Instant::now());
        assert_eq!(c.lease(second)[0].chunk_id, id, "copied once");
        c.ack(second, id);
        let third = conn(&c, 1);
        std::thread::sleep(Duration::from_millis(10));
        c.sweep(Instant::now());
        assert!(c.lease(first).is_empty(), "never back to a former holder");
        assert_eq!(c.lease(third)[0].chunk_id, id, "copied again");
        let factors = vec![crowdfactor_factor::factor(35)];
        assert_eq!(
            c.accept(third, id, factors.into(), None).expect("accept"),
            Completion::Accepted { job_done: true }
        );
        assert!(cancelled(&mut second_rx), "the copy it was taken from");
        assert!(cancelled(&mut first_rx), "the first holder too");
        assert!(matches!(
            c.check_result(first, id),
            ResultCheck::NotAssigned | ResultCheck::AlreadyDone
        ));
    }

    /// A copy goes to the fastest idle worker, not just any.
    #[test]
    fn copies_go_to_the_fastest_idle_worker() {
        let c = endgame(vec![6, 35]);
        // Registered before the fast one, so not first by id either.
        let (slow, fresh, fast) = (conn(&c, 1), conn(&c, 1), conn(&c, 1));
        let stuck = c.lease(slow);
        c.ack(slow, stuck[0].chunk_id);
        let done = c.lease(fast);
        let factors = vec![crowdfactor_factor::factor(35)];
        c.accept(fast, done[0].chunk_id, factors.into(), None)
            .expect("accept");
        // `fresh` is idle too, but has no results to show a speed.
        std::thread::sleep(Duration::from_millis(10));
        c.sweep(Instant::now());
        assert!(c.lease(fresh).is_empty());
        assert_eq!(c.lease(fast)[0].chunk_id, stuck[0].chunk_id);
    }

    #[test]
    fn late_results_are_accepted_once_and_strangers_ignored() {
        let c = coord(0, 60_000);
        c.create_job(job(vec![6], 1)).expect("job");
        let (a, b, stranger) = (conn(&c, 1), conn(&c, 1), conn(&c, 1));
        let id = c.lease(a)[0].chunk_id;
        std::thread::sleep(Duration::from_millis(5));
        c.sweep(Instant::now()); // a never acked: lease lapses
        assert_eq!(c.lease(b)[0].chunk_id, id);
        assert!(matches!(
            c.check_result(stranger, id),
            ResultCheck::NotAssigned
        ));
        assert!(matches!(c.check_result(a, id), ResultCheck::Verify(_)));
        assert_eq!(
            c.accept(a, id, vec![vec![2, 3]].into(), None)
                .expect("accept"),
            Completion::Accepted { job_done: true }
        );
        assert!(matches!(c.check_result(b, id), ResultCheck::AlreadyDone));
        assert!(c.is_idle(b));
    }

    /// A late result for a chunk whose lease lapsed, arriving while the
    /// chunk waits in the queue for another worker: accepted once, and the
    /// chunk leaves the queue, so the next worker gets the other numbers
    /// and never the done one, and the job still ends.
    #[test]
    fn a_late_result_for_a_queued_chunk_takes_it_out_of_the_queue() {
        let c = coord(0, 60_000);
        let numbers = vec![6, 10, 14];
        c.create_job(job(numbers.clone(), 1)).expect("job");
        let factored = |a: &Assignment| -> FactorLists {
            a.numbers
                .iter()
                .map(crowdfactor_factor::factor)
                .collect::<Vec<_>>()
                .into()
        };
        let a = conn(&c, 1);
        let late = c.lease(a).pop().expect("a chunk");
        std::thread::sleep(Duration::from_millis(5));
        c.sweep(Instant::now()); // never acked: back in the queue
        assert_eq!(c.gauges().queued, 3);
        assert!(matches!(
            c.check_result(a, late.chunk_id),
            ResultCheck::Verify(_)
        ));
        assert_eq!(
            c.accept(a, late.chunk_id, factored(&late), None)
                .expect("accept"),
            Completion::Accepted { job_done: false }
        );
        assert_eq!(c.gauges().queued, 2);
        let b = conn(&c, 10);
        let mut seen: Vec<u128> = late.numbers.iter().collect();
        let mut last = None;
        while let Some(x) = c.lease(b).pop() {
            assert_ne!(x.chunk_id, late.chunk_id, "the done chunk leased again");
            seen.extend(x.numbers.iter());
            last = Some(c.accept(b, x.chunk_id, factored(&x), None).expect("accept"));
        }
        seen.sort_unstable();
        assert_eq!(seen, numbers, "each number leased once");
        assert_eq!(last, Some(Completion::Accepted { job_done: true }));
        assert!(c.is_idle(b));
        assert_eq!(c.gauges().queued, 0);
    }
}

//! The live side of the queue: which chunks wait, which are leased to which
//! connection, and when a lease lapses.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crowdfactor_protocol::{Assignment, ChunkId, ServerMessage, WorkerKind};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::sync::{mpsc, watch};

use crate::store::{ChunkWork, Completion, JobId, JobInfo, NewJob, Store, StoreError};

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

/// The coordinator: store plus in-memory queue and leases.
#[derive(Debug)]
pub struct Coordinator {
    store: Arc<dyn Store>,
    state: Mutex<State>,
    /// Bumped whenever work appears or the amount in flight changes; every
    /// connection task watches it to pull new chunks or to report `idle`.
    changes: watch::Sender<u64>,
    timing: LeaseTiming,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
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
}

#[derive(Debug, Default)]
struct State {
    next_conn: ConnId,
    /// Chunks waiting for a worker, per job, highest priority then oldest job
    /// first. May hold stale ids (completed or already leased); `lease` skips those.
    queue: BTreeMap<(Reverse<i32>, JobId), VecDeque<ChunkId>>,
    /// Every chunk without an accepted result.
    open: HashMap<ChunkId, OpenChunk>,
    conns: HashMap<ConnId, Conn>,
    started_jobs: HashSet<JobId>,
    /// Jobs with chunks currently leased.
    leased_per_job: HashMap<JobId, usize>,
    /// Chunks put back in the queue so far.
    requeued: u64,
    /// Addresses refused until the given time (too many wrong results).
    bans: HashMap<IpAddr, Instant>,
}

#[derive(Debug)]
struct OpenChunk {
    work: ChunkWork,
    lease: Option<Lease>,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    conn: ConnId,
    acked: bool,
    since: Instant,
}

#[derive(Debug)]
struct Conn {
    kind: WorkerKind,
    ip: IpAddr,
    slots: u32,
    held: HashSet<ChunkId>,
    /// Chunks ever leased to this connection and not yet done: a late result
    /// for one of these is still welcome.
    ever: HashSet<ChunkId>,
    last_seen: Instant,
    strikes: u32,
    tx: mpsc::Sender<ServerMessage>,
    name: String,
    threads: u32,
    connected: Instant,
    chunks_done: u64,
    numbers_done: u64,
    /// (when, numbers) of recent accepted results, for the live rate.
    recent: VecDeque<(Instant, u64)>,
}

/// How far back a worker's live rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(15);

impl Conn {
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

    /// How long a chunk of `len` numbers may stay leased to this worker.
    /// `rate` is this worker's [`Conn::rate`], computed once per sweep.
    fn lease_deadline(&self, len: usize, rate: Option<f64>, timing: &LeaseTiming) -> Duration {
        match rate {
            Some(rate) if rate > 0.0 => {
                // One chunk runs on one thread: per-thread speed is rate / threads.
                let per_thread = rate / self.threads.max(1) as f64;
                Duration::from_secs_f64((10.0 * len as f64 / per_thread).min(86_400.0))
                    .max(timing.lease_timeout)
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
    /// Chunks waiting for a worker.
    pub queued: usize,
    /// Chunks leased right now.
    pub leased: usize,
    /// Chunks requeued since start.
    pub requeued: u64,
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
    /// Builds a coordinator over `store`, queueing every chunk still open in it.
    pub fn new(store: Arc<dyn Store>, timing: LeaseTiming) -> Result<Self, StoreError> {
        let mut state = State::default();
        for work in store.incomplete_chunks()? {
            state.enqueue(&work, false);
            state.open.insert(work.id, OpenChunk { work, lease: None });
        }
        let (changes, _) = watch::channel(0);
        Ok(Coordinator {
            store,
            state: Mutex::new(state),
            changes,
            timing,
            metrics: Metrics::default(),
        })
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

    /// Creates a job and queues its chunks.
    pub fn create_job(&self, job: NewJob) -> Result<JobInfo, StoreError> {
        let (info, chunks) = self.store.create_job(job)?;
        {
            let mut st = self.lock();
            for work in chunks {
                st.enqueue(&work, false);
                st.open.insert(work.id, OpenChunk { work, lease: None });
            }
        }
        tracing::info!(
            job = info.id,
            numbers = info.total,
            chunks = info.chunks,
            "job created"
        );
        self.bump();
        Ok(info)
    }

    /// Cancels a job: its queued chunks are dropped and the workers holding
    /// its other chunks are told to drop them. `None` for an unknown job.
    pub fn cancel_job(&self, job: JobId) -> Result<Option<JobInfo>, StoreError> {
        let Some(info) = self.store.cancel_job(job)? else {
            return Ok(None);
        };
        let mut notices: HashMap<ConnId, (mpsc::Sender<ServerMessage>, Vec<ChunkId>)> =
            HashMap::new();
        {
            let mut st = self.lock();
            st.queue.remove(&(Reverse(info.priority), job));
            let ids: Vec<ChunkId> = st
                .open
                .iter()
                .filter(|(_, o)| o.work.job == job)
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
        tracing::info!(job, "job cancelled");
        self.bump();
        Ok(Some(info))
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
        let id = st.next_conn;
        st.conns.insert(
            id,
            Conn {
                kind,
                ip,
                slots,
                held: HashSet::new(),
                ever: HashSet::new(),
                last_seen: Instant::now(),
                strikes: 0,
                tx,
                name: String::new(),
                threads: 0,
                connected: Instant::now(),
                chunks_done: 0,
                numbers_done: 0,
                recent: VecDeque::new(),
            },
        );
        id
    }

    /// Refuses new connections from `ip` for `duration`.
    pub fn ban(&self, ip: IpAddr, duration: Duration) {
        let mut st = self.lock();
        let now = Instant::now();
        st.bans.retain(|_, until| *until > now);
        st.bans.insert(ip, now + duration);
        tracing::warn!(%ip, secs = duration.as_secs(), "address refused for too many wrong results");
    }

    /// How much longer `ip` is refused, if it is.
    pub fn banned_for(&self, ip: IpAddr) -> Option<Duration> {
        let st = self.lock();
        let until = st.bans.get(&ip)?;
        until.checked_duration_since(Instant::now())
    }

    /// Records what the worker said about itself in `hello`.
    pub fn describe(&self, conn: ConnId, name: Option<&str>, threads: u32) {
        if let Some(c) = self.lock().conns.get_mut(&conn) {
            c.name = name.unwrap_or_default().chars().take(64).collect();
            c.threads = threads;
        }
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
                holding: c.held.len(),
                chunks_done: c.chunks_done,
                numbers_done: c.numbers_done,
                rate: c.rate(now).unwrap_or(0.0),
                strikes: c.strikes,
                connected_secs: now.duration_since(c.connected).as_secs(),
            })
            .collect();
        out.sort_by_key(|w| w.id);
        out
    }

    /// Changes a job's priority; its queued chunks move accordingly.
    pub fn set_priority(&self, job: JobId, priority: i32) -> Result<Option<JobInfo>, StoreError> {
        let Some(old) = self.store.job(job)? else {
            return Ok(None);
        };
        let info = self.store.set_priority(job, priority)?;
        {
            let mut st = self.lock();
            if let Some(q) = st.queue.remove(&(Reverse(old.priority), job)) {
                st.queue
                    .entry((Reverse(priority), job))
                    .or_default()
                    .extend(q);
            }
            for open in st.open.values_mut() {
                if open.work.job == job {
                    open.work.priority = priority;
                }
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
        }
        self.bump();
    }

    /// Records that the connection was heard from.
    pub fn touch(&self, conn: ConnId) {
        if let Some(c) = self.lock().conns.get_mut(&conn) {
            c.last_seen = Instant::now();
        }
    }

    /// Changes how many chunks a connection may hold.
    pub fn set_slots(&self, conn: ConnId, slots: u32) {
        if let Some(c) = self.lock().conns.get_mut(&conn) {
            c.slots = slots;
        }
        self.bump();
    }

    /// Leases queued chunks to `conn` until its slots are full.
    pub fn lease(&self, conn: ConnId) -> Vec<Assignment> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(c) = st.conns.get_mut(&conn) else {
            return vec![];
        };
        let mut out = vec![];
        while (c.held.len() as u32) < c.slots {
            let Some(mut next) = st.queue.first_entry() else {
                break;
            };
            let popped = next.get_mut().pop_front();
            if next.get().is_empty() {
                next.remove();
            }
            let Some(id) = popped else {
                continue;
            };
            let Some(open) = st.open.get_mut(&id) else {
                continue;
            };
            if open.lease.is_some() {
                continue;
            }
            open.lease = Some(Lease {
                conn,
                acked: false,
                since: Instant::now(),
            });
            c.held.insert(id);
            self.metrics.leased.fetch_add(1, Relaxed);
            c.ever.insert(id);
            st.started_jobs.insert(open.work.job);
            *st.leased_per_job.entry(open.work.job).or_default() += 1;
            out.push(Assignment {
                chunk_id: id,
                job_id: open.work.job.to_string(),
                numbers: open.work.numbers.to_vec(),
            });
        }
        out
    }

    /// The worker confirmed it received `chunk`.
    pub fn ack(&self, conn: ConnId, chunk: ChunkId) {
        let mut st = self.lock();
        if let Some(lease) = st.open.get_mut(&chunk).and_then(|o| o.lease.as_mut()) {
            if lease.conn == conn {
                lease.acked = true;
                self.metrics.acked.fetch_add(1, Relaxed);
            }
        }
    }

    /// The worker hands chunks back unfinished.
    pub fn release(&self, conn: ConnId, chunks: &[ChunkId]) {
        {
            let mut st = self.lock();
            for id in chunks {
                let held = st.conns.get_mut(&conn).is_some_and(|c| c.held.remove(id));
                if held {
                    st.drop_lease(*id);
                }
            }
        }
        self.bump();
    }

    /// Decides how to treat a result for `chunk` from `conn`.
    pub fn check_result(&self, conn: ConnId, chunk: ChunkId) -> ResultCheck {
        let st = self.lock();
        let ever = st.conns.get(&conn).is_some_and(|c| c.ever.contains(&chunk));
        match st.open.get(&chunk) {
            None if ever => ResultCheck::AlreadyDone,
            None => ResultCheck::NotAssigned,
            Some(_) if !ever => ResultCheck::NotAssigned,
            Some(open) => ResultCheck::Verify(open.work.clone()),
        }
    }

    /// Stores verified results; returns `Completion::Duplicate` if another
    /// worker's result got there first.
    pub fn accept(
        &self,
        conn: ConnId,
        chunk: ChunkId,
        factors: Vec<Vec<u128>>,
    ) -> Result<Completion, StoreError> {
        let kind = {
            let mut st = self.lock();
            let Some(c) = st.conns.get_mut(&conn) else {
                return Ok(Completion::Duplicate);
            };
            c.ever.remove(&chunk);
            c.kind
        };
        let numbers_in_chunk = factors.len() as u64;
        // The store call happens outside the lock; a concurrent duplicate is
        // resolved by the store, which accepts a chunk only once.
        let count = factors.len() as u64;
        let started = std::time::Instant::now();
        let outcome = self.store.complete_chunk(chunk, factors, kind);
        let us = started.elapsed().as_micros() as u64;
        self.metrics.store_writes.fetch_add(1, Relaxed);
        self.metrics.store_write_us.fetch_add(us, Relaxed);
        self.metrics.store_write_max_us.fetch_max(us, Relaxed);
        let outcome = outcome?;
        if let Completion::Accepted { .. } = outcome {
            self.metrics.completed.fetch_add(1, Relaxed);
            self.metrics.numbers.fetch_add(count, Relaxed);
            if let Some(c) = self.lock().conns.get_mut(&conn) {
                let now = Instant::now();
                c.chunks_done += 1;
                c.numbers_done += numbers_in_chunk;
                c.recent.push_back((now, numbers_in_chunk));
                while c
                    .recent
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
                {
                    c.recent.pop_front();
                }
            }
        }
        if let Completion::Accepted { job_done } = outcome {
            let cancel_on = {
                let mut st = self.lock();
                let open = st.open.remove(&chunk);
                let mut other = None;
                if let Some(OpenChunk {
                    lease: Some(lease),
                    work,
                }) = open
                {
                    st.unlease_accounting(work.job);
                    if let Some(holder) = st.conns.get_mut(&lease.conn) {
                        holder.held.remove(&chunk);
                        if lease.conn != conn {
                            other = Some(holder.tx.clone());
                        }
                    }
                }
                other
            };
            if let Some(tx) = cancel_on {
                // Best effort: a full queue means a slow reader that will be dropped anyway.
                let _ = tx.try_send(ServerMessage::Cancel {
                    chunk_ids: vec![chunk],
                });
            }
            if job_done {
                tracing::info!(chunk, "job complete");
            }
            self.bump();
        }
        Ok(outcome)
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
            st.conns.get_mut(&conn).map_or(0, |c| {
                c.ever.remove(&chunk);
                c.strikes += 1;
                self.metrics.rejected.fetch_add(1, Relaxed);
                c.strikes
            })
        };
        self.bump();
        strikes
    }

    /// Whether the connection has nothing to do and nothing is in flight anywhere.
    pub fn is_idle(&self, conn: ConnId) -> bool {
        let st = self.lock();
        st.open.is_empty() && st.conns.get(&conn).is_none_or(|c| c.held.is_empty())
    }

    /// A snapshot for `/metrics`: connected workers by kind, chunks queued
    /// and leased, chunks requeued so far.
    pub fn gauges(&self) -> Gauges {
        let st = self.lock();
        let leased: usize = st.leased_per_job.values().sum();
        let mut g = Gauges {
            queued: st.open.len() - leased,
            leased,
            requeued: st.requeued,
            ..Gauges::default()
        };
        for c in st.conns.values() {
            match c.kind {
                WorkerKind::Native => g.native += 1,
                WorkerKind::Browser => g.browser += 1,
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
        // Only leased chunks can expire, and each connection's `held` set names
        // exactly its leases: walk those, not every open chunk, and judge each
        // connection's silence and speed once.
        let expired: Vec<(ChunkId, ConnId, &'static str)> = {
            let st = self.lock();
            let mut expired = vec![];
            for (&conn, c) in &st.conns {
                let silent = now.saturating_duration_since(c.last_seen) > self.timing.lease_timeout;
                let rate = c.rate(now);
                for id in &c.held {
                    let Some((open, lease)) = st.open.get(id).and_then(|o| Some((o, o.lease?)))
                    else {
                        continue;
                    };
                    let held_for = now.saturating_duration_since(lease.since);
                    let why = if silent {
                        "worker silent"
                    } else if held_for
                        > c.lease_deadline(open.work.numbers.len(), rate, &self.timing)
                    {
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
            return 0;
        }
        {
            let mut st = self.lock();
            for (id, conn, why) in &expired {
                if let Some(c) = st.conns.get_mut(conn) {
                    c.held.remove(id);
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
}

impl State {
    /// Ends the lease on an open chunk (if any) and puts it at the front of the queue.
    fn drop_lease(&mut self, id: ChunkId) {
        let Some(open) = self.open.get_mut(&id) else {
            return;
        };
        if open.lease.take().is_some() {
            self.requeued += 1;
            let work = open.work.clone();
            self.unlease_accounting(work.job);
            self.enqueue(&work, true);
        }
    }

    /// Queues a chunk behind (or, when it comes back from a lease, in front
    /// of) the other chunks of its job.
    fn enqueue(&mut self, work: &ChunkWork, front: bool) {
        let q = self
            .queue
            .entry((Reverse(work.priority), work.job))
            .or_default();
        if front {
            q.push_front(work.id);
        } else {
            q.push_back(work.id);
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
    use crate::store::MemoryStore;
    use std::net::Ipv4Addr;

    fn coord(ack_ms: u64, lease_ms: u64) -> Coordinator {
        Coordinator::new(
            Arc::new(MemoryStore::new()),
            LeaseTiming {
                ack_timeout: Duration::from_millis(ack_ms),
                lease_timeout: Duration::from_millis(lease_ms),
                max_lease: Duration::from_secs(3600),
            },
        )
        .expect("coordinator")
    }

    fn job(numbers: Vec<u128>, chunk_size: u32) -> NewJob {
        NewJob {
            numbers,
            chunk_size,
            priority: 0,
        }
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

    fn conn(c: &Coordinator, slots: u32) -> ConnId {
        let (tx, _rx) = mpsc::channel(8);
        c.register(WorkerKind::Native, slots, Ipv4Addr::LOCALHOST.into(), tx)
    }

    #[test]
    fn a_chunk_is_leased_to_one_worker_and_requeued_on_close() {
        let c = coord(10_000, 10_000);
        c.create_job(job((1..=10).collect(), 3)).expect("job");
        let (a, b) = (conn(&c, 2), conn(&c, 10));
        let la = c.lease(a);
        assert_eq!(la.len(), 2);
        let lb = c.lease(b);
        assert_eq!(lb.len(), 2, "only 4 chunks exist");
        assert!(c.lease(b).is_empty());
        c.unregister(a);
        let again = c.lease(b);
        let mut ids: Vec<_> = again.iter().map(|x| x.chunk_id).collect();
        ids.sort();
        let mut want: Vec<_> = la.iter().map(|x| x.chunk_id).collect();
        want.sort();
        assert_eq!(ids, want);
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
        let c2 = coord(60_000, 0);
        c2.create_job(job(vec![2], 1)).expect("job");
        let a = conn(&c2, 1);
        c2.lease(a);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c2.sweep(Instant::now()), 1);
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
            c.accept(a, id, vec![vec![2, 3]]).expect("accept"),
            Completion::Accepted { job_done: true }
        );
        assert!(matches!(c.check_result(b, id), ResultCheck::AlreadyDone));
        assert!(c.is_idle(b));
    }
}

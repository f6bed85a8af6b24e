//! One task per worker connection: a reader loop that owns the protocol
//! state, and a writer task fed by a bounded channel, so a worker that stops
//! reading is dropped instead of buffered without bound.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use crowdfactor_factor::SieveResume;
use crowdfactor_protocol::{
    ChunkId, ChunkNumbers, ChunkResult, ClientMessage, ErrorCode, FactorLists, Hello,
    ServerMessage, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::coordinator::{clip, ConnId, Coordinator, ResultCheck};
use crate::listen::InputMeter;
use crate::store::Completion;
use crate::Config;

/// Most chunks one connection may hold at once, whatever it asks for.
const MAX_SLOTS: u32 = 1024;
/// Messages queued for one connection before it counts as a slow reader.
const OUTBOX: usize = 256;
/// Chunks up to this many numbers are verified on the connection's task.
const INLINE_VERIFY: usize = 64;
/// Most messages written to a socket before one flush.
const WRITE_BATCH: usize = 64;
/// How long a closing connection waits for its results to be stored.
const SETTLE_ON_CLOSE: Duration = Duration::from_secs(10);

/// Messages that change nothing — heartbeats, pings, `capacity`,
/// `release`, `rename`, a second `ack`, results for chunks the worker does
/// not hold — are read at most this many a second on a connection, after
/// a burst of [`IDLE_BURST`], a message counting once for each
/// [`IDLE_UNIT`] bytes begun. Each is decoded and takes the coordinator's
/// lock or a frame back, so a worker sending them in a loop would take a
/// core from everyone; it is read more slowly instead (its socket waits),
/// while a well-behaved worker sends a few a minute. Acks and results of
/// chunks it holds are never held back, however small its chunks.
const IDLE_RATE: f64 = 100.0;
const IDLE_BURST: f64 = 1000.0;
const IDLE_UNIT: usize = 4096;

/// A connection's allowance of messages that change nothing: a token
/// bucket that runs into debt, paid off by waiting.
struct Throttle {
    tokens: f64,
    at: Instant,
}

impl Throttle {
    fn new(now: Instant) -> Self {
        Self {
            tokens: IDLE_BURST,
            at: now,
        }
    }

    /// Takes the tokens of a message `bytes` long: how long to wait before
    /// reading on (zero while the allowance lasts).
    fn take(&mut self, now: Instant, bytes: usize) -> Duration {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * IDLE_RATE;
        let cost = bytes.div_ceil(IDLE_UNIT).max(1) as f64;
        self.tokens = (self.tokens + earned).min(IDLE_BURST) - cost;
        self.at = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / IDLE_RATE)
        }
    }
}

/// Serves one upgraded WebSocket until it closes.
pub(crate) async fn serve(
    socket: WebSocket,
    peer: SocketAddr,
    input: &InputMeter,
    coord: Arc<Coordinator>,
    config: Arc<Config>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<ServerMessage>(OUTBOX);
    let write_timeout = config.write_timeout;
    let writer_coord = Arc::clone(&coord);
    // Dropped when the writer ends, however it ends: the session's signal
    // to end too (a worker that stopped reading sends nothing to notice).
    let (writer_alive, mut writer_gone) = oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let _alive = writer_alive;
        // Whatever is queued goes out in one write and one flush. The batch
        // grows with bursts: room for 64 messages kept by every idle
        // connection from the start was 6 KiB each.
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
            let closing = batch
                .iter()
                .any(|m| matches!(m, ServerMessage::Error { .. }));
            let write = async {
                for msg in batch.drain(..) {
                    sink.feed(Message::Text(msg.encode().into())).await?;
                }
                sink.flush().await
            };
            match tokio::time::timeout(write_timeout, write).await {
                Ok(Ok(())) => {}
                // The socket failed: nothing more can be said on it.
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::warn!(%peer, "worker is not reading; dropping it");
                    writer_coord.metrics.slow_readers.fetch_add(1, Relaxed);
                    // No closing handshake: it would wait on the same full
                    // socket. The session sees this task end and closes it.
                    return;
                }
            }
            if closing {
                break;
            }
            // Let go of room a large burst took once it is over; not of
            // small batches' (a fresh batch per burst cost 10-15 % of the
            // round-trip benchmark in allocator traffic).
            if batch.capacity() > 16 && rx.is_empty() {
                batch = Vec::new();
            }
        }
        let _ = tokio::time::timeout(write_timeout, sink.close()).await;
    });

    let hello = match handshake(&mut stream, input, &config).await {
        Ok(h) => h,
        Err((code, message)) => {
            // The text may quote the worker's input: a plain string field
            // is logged escaped (a `%` one would print its line breaks).
            tracing::info!(%peer, why = message.as_str(), "handshake refused");
            let _ = tx.send(ServerMessage::Error { code, message }).await;
            drop(tx);
            let _ = writer.await;
            return;
        }
    };
    let slots = hello.slots.min(MAX_SLOTS);
    let conn = coord.register(hello.kind, slots, peer.ip(), tx.clone());
    let name = crowdfactor_protocol::kept_name(hello.name.as_deref().unwrap_or(""));
    coord.describe(conn, &name, hello.threads);
    tracing::info!(
        conn,
        %peer,
        kind = hello.kind.as_str(),
        slots,
        threads = hello.threads,
        name,
        agent = clip(&hello.agent, 200),
        "worker connected"
    );
    let welcome = ServerMessage::Welcome {
        protocol: hello.protocol,
        worker_id: conn,
        heartbeat_ms: config.heartbeat_interval.as_millis() as u64,
        lease_timeout_ms: config.lease_timeout.as_millis() as u64,
        ack_timeout_ms: config.ack_timeout.as_millis() as u64,
    };
    let mut session = Session {
        conn,
        coord: &coord,
        config: &config,
        tx: &tx,
        pending: FuturesUnordered::new(),
        protocol: hello.protocol,
        rename_logged: None,
        idle: Throttle::new(Instant::now()),
        throttled: false,
    };
    let reason = if tx.send(welcome).await.is_ok() {
        session
            .run(&mut stream, input, &mut stop, &mut writer_gone)
            .await
    } else {
        "writer closed"
    };
    // Results read before the end are still verified and stored (a task
    // cut off between the store's commit and the coordinator's booking
    // would leave its chunk open forever); then the leases go back.
    let settle = async { while session.pending.next().await.is_some() {} };
    if tokio::time::timeout(SETTLE_ON_CLOSE, settle).await.is_err() {
        // Still waiting (a store stalled): finished on their own, not dropped.
        let mut rest = std::mem::take(&mut session.pending);
        tokio::spawn(async move { while rest.next().await.is_some() {} });
    }
    coord.unregister(conn);
    tracing::info!(conn, %peer, reason, "worker disconnected");
    drop(tx);
    let _ = writer.await;
}

async fn handshake(
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    input: &InputMeter,
    config: &Config,
) -> Result<Hello, (ErrorCode, String)> {
    let first = tokio::time::timeout(config.handshake_timeout, stream.next())
        .await
        .map_err(|_| {
            (
                ErrorCode::Timeout,
                "no hello within the handshake timeout".to_owned(),
            )
        })?;
    let text = match first {
        Some(Ok(Message::Text(t))) => {
            input.message_done();
            t
        }
        _ => {
            return Err((
                ErrorCode::BadHandshake,
                "expected a hello text frame".to_owned(),
            ))
        }
    };
    match ClientMessage::decode(&text, config.max_message_bytes) {
        Ok(ClientMessage::Hello(h)) if (OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&h.protocol) => match &config.worker_token {
            Some(want) if !h.token.as_deref().is_some_and(|t| crate::auth::token_matches(t, want)) => Err((
                ErrorCode::Unauthorized,
                if h.token.is_some() {
                    "this is not the coordinator's worker token (check crowdfactor-worker --token, or the ?token= of the page URL)"
                } else {
                    "this coordinator needs a worker token (crowdfactor-worker --token, or ?token= in the page URL)"
                }
                .to_owned(),
            )),
            _ => Ok(h),
        },
        Ok(ClientMessage::Hello(h)) => Err((
            ErrorCode::BadHandshake,
            format!(
                "protocol version {} is not supported; this coordinator speaks {OLDEST_PROTOCOL_VERSION} to {PROTOCOL_VERSION}",
                h.protocol
            ),
        )),
        Ok(_) => Err((
            ErrorCode::BadHandshake,
            "the first message must be hello".to_owned(),
        )),
        Err(e) => Err((e.code(), e.to_string())),
    }
}

/// Outcome of verifying and storing one result: the verification failure, or the store's answer.
type Verdict = Result<Result<Completion, crate::store::StoreError>, Refusal>;

/// A result being verified and stored.
type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = (ChunkId, Verdict)> + Send + Sync>>;

struct Session<'a> {
    conn: ConnId,
    coord: &'a Arc<Coordinator>,
    config: &'a Config,
    tx: &'a mpsc::Sender<ServerMessage>,
    /// Results being verified and stored, polled by the connection's own
    /// task: a task spawned per result (and its wake-ups across threads)
    /// cost more than the rest of a one-number chunk's round trip.
    pending: FuturesUnordered<Pending>,
    /// The connection's protocol version: from 4 each `heartbeat` gets one
    /// back, from 5 results leave out each number's largest factor, from 6
    /// the worker may `rename` itself.
    protocol: u32,
    /// When a rename was last logged.
    rename_logged: Option<Instant>,
    /// Messages that change nothing, and whether the connection was
    /// slowed for them yet (logged the first time).
    idle: Throttle,
    throttled: bool,
}

impl Session<'_> {
    /// Runs the connection; returns why it ended.
    async fn run(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
        input: &InputMeter,
        stop: &mut watch::Receiver<bool>,
        writer_gone: &mut oneshot::Receiver<()>,
    ) -> &'static str {
        let mut changes = self.coord.subscribe();
        let mut idle_sent = false;
        let mut last_heard = Instant::now();
        // The coordinator's copy of `last_heard` (for lease expiry) is
        // refreshed at most this often: a busy worker's every message would
        // otherwise take the coordinator's lock once more.
        let touch_every = (self.config.lease_timeout / 32).min(Duration::from_secs(1));
        let mut last_touch = last_heard;
        // Heard after a silence its leases lapsed in: the coordinator leased
        // it nothing meanwhile (see `Coordinator::lease`); it may take work.
        let lease_timeout = self.config.lease_timeout;
        let woke =
            |before: Instant, now: Instant| now.saturating_duration_since(before) > lease_timeout;
        let mut heard = |coord: &Coordinator, conn: ConnId| {
            let now = Instant::now();
            if now.saturating_duration_since(last_touch) >= touch_every {
                last_touch = now;
                coord.touch(conn);
            }
            now
        };
        // Fires when the connection may have been silent for the idle
        // timeout; messages do not re-arm it (that would cost a timer update
        // per message), it re-arms itself from the last message heard. A
        // silent connection wakes once per timeout, not on a fixed tick (a
        // 500 ms tick cost 15 % of a core with ten thousand idle workers).
        let idle_check = tokio::time::sleep(self.config.idle_timeout);
        tokio::pin!(idle_check);
        // Whether something happened that may let this connection take work
        // (acks and heartbeats do not).
        let mut may_lease = true;
        loop {
            if may_lease {
                may_lease = false;
                changes.borrow_and_update();
                let assigned = self.coord.lease(self.conn);
                // A worker just given chunks is not idle: no need to ask.
                let may_be_idle = assigned.is_empty();
                if !may_be_idle {
                    idle_sent = false;
                }
                for a in assigned {
                    if self.tx.send(ServerMessage::Assign(a)).await.is_err() {
                        return "writer closed";
                    }
                }
                if may_be_idle && !idle_sent && self.coord.is_idle(self.conn) {
                    idle_sent = true;
                    if self.tx.send(ServerMessage::Idle).await.is_err() {
                        return "writer closed";
                    }
                }
            }
            tokio::select! {
                frame = stream.next() => {
                    let text = match frame {
                        None | Some(Err(_)) => return "socket closed",
                        Some(Ok(Message::Close(_))) => return "worker closed the socket",
                        Some(Ok(Message::Ping(p) | Message::Pong(p))) => {
                            let before = last_heard;
                            last_heard = heard(self.coord, self.conn);
                            may_lease |= woke(before, last_heard);
                            // Answered by the WebSocket layer: one more frame
                            // back, as a heartbeat is.
                            self.idle(p.len()).await;
                            continue;
                        }
                        Some(Ok(Message::Binary(_))) => {
                            return self.fail(ErrorCode::BadMessage, "binary frames are not part of the protocol".into()).await;
                        }
                        Some(Ok(Message::Text(t))) => t,
                    };
                    // A whole message (not a ping: those may come between
                    // the fragments of one, and must not reset its count).
                    input.message_done();
                    let before = last_heard;
                    last_heard = heard(self.coord, self.conn);
                    let woke = woke(before, last_heard);
                    let msg = match ClientMessage::decode(&text, self.config.max_message_bytes) {
                        Ok(m) => m,
                        Err(e) => return self.fail(e.code(), e.to_string()).await,
                    };
                    // A result frees a slot as soon as it is read (see `check_result`).
                    may_lease = woke || matches!(msg, ClientMessage::Capacity { .. } | ClientMessage::Release { .. } | ClientMessage::Result(_));
                    if let Err(reason) = self.handle(msg, text.len()).await {
                        return reason;
                    }
                }
                Some((chunk, outcome)) = self.pending.next(), if !self.pending.is_empty() => {
                    may_lease = true;
                    if let Err(reason) = self.settle(chunk, outcome).await {
                        return reason;
                    }
                }
                _ = changes.changed() => may_lease = true,
                // The writer gave up (a worker that does not read, or a
                // failed socket): end, so the socket closes and the leases
                // go back.
                _ = &mut *writer_gone => return "writer closed",
                () = &mut idle_check => {
                    // A timeout too long to add up means none.
                    let deadline = last_heard
                        .checked_add(self.config.idle_timeout)
                        .unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 30));
                    if Instant::now() >= deadline {
                        return self.fail(ErrorCode::Timeout, "no message within the idle timeout".into()).await;
                    }
                    idle_check.as_mut().reset(deadline.into());
                }
                _ = stop.changed() => {
                    return self.fail(ErrorCode::ShuttingDown, "the coordinator is shutting down".into()).await;
                }
            }
        }
    }

    /// Sends the worker an `error` and gives the reason the connection
    /// ends, for the `worker disconnected` log line.
    async fn fail(&self, code: ErrorCode, message: String) -> &'static str {
        tracing::info!(
            conn = self.conn,
            code = code.as_str(),
            why = message.as_str(),
            "closing connection"
        );
        let _ = self.tx.send(ServerMessage::Error { code, message }).await;
        match code {
            ErrorCode::ShuttingDown => "server shutting down",
            ErrorCode::Timeout => "idle timeout",
            ErrorCode::Banned => "banned after wrong results",
            ErrorCode::Overloaded => "server full",
            ErrorCode::Unauthorized => "wrong worker token",
            ErrorCode::BadMessage | ErrorCode::TooLarge | ErrorCode::BadHandshake => {
                "protocol error"
            }
        }
    }

    /// Counts a message that changed nothing, `bytes` long, waiting first
    /// when the connection has used up its allowance ([`IDLE_RATE`]).
    async fn idle(&mut self, bytes: usize) {
        let wait = self.idle.take(Instant::now(), bytes);
        if wait.is_zero() {
            return;
        }
        self.coord.metrics.throttled.fetch_add(1, Relaxed);
        if !std::mem::replace(&mut self.throttled, true) {
            tracing::warn!(
                conn = self.conn,
                per_second = IDLE_RATE,
                "worker sends messages that change nothing in a loop; reading them more slowly"
            );
        }
        tokio::time::sleep(wait).await;
    }

    /// Acts on one message, `bytes` long.
    async fn handle(&mut self, msg: ClientMessage, bytes: usize) -> Result<(), &'static str> {
        let useful = match &msg {
            ClientMessage::Ack { chunk_id } => self.coord.ack(self.conn, *chunk_id),
            // Told apart in `result`.
            ClientMessage::Result(_) | ClientMessage::Hello(_) => true,
            _ => false,
        };
        if !useful {
            self.idle(bytes).await;
        }
        match msg {
            ClientMessage::Hello(_) => Err(self
                .fail(ErrorCode::BadHandshake, "hello was already received".into())
                .await),
            ClientMessage::Ack { .. } => Ok(()),
            ClientMessage::Heartbeat => {
                if self.protocol >= 4 {
                    // A full queue has frames for the worker already: any
                    // of them tells it the coordinator is there, and a
                    // worker that does not read must not stall this loop.
                    let _ = self.tx.try_send(ServerMessage::Heartbeat);
                }
                Ok(())
            }
            ClientMessage::Capacity { slots, waiting } => {
                self.coord
                    .set_slots(self.conn, slots.min(MAX_SLOTS), waiting && slots == 0);
                Ok(())
            }
            // No worker holds more than twice the most slots: a longer list
            // would only hold the coordinator's lock while it is looked up.
            ClientMessage::Release { chunk_ids } if chunk_ids.len() > 2 * MAX_SLOTS as usize => {
                let message = format!(
                    "release names {} chunks; a worker holds at most {}",
                    chunk_ids.len(),
                    2 * MAX_SLOTS
                );
                Err(self.fail(ErrorCode::BadMessage, message).await)
            }
            ClientMessage::Release { chunk_ids } => {
                self.coord.release(self.conn, &chunk_ids);
                Ok(())
            }
            ClientMessage::Result(result) => self.result(result, bytes).await,
            ClientMessage::Rename { .. } if self.protocol < 6 => {
                let message = format!(
                    "rename is part of protocol 6; this connection speaks protocol {}",
                    self.protocol
                );
                Err(self.fail(ErrorCode::BadMessage, message).await)
            }
            ClientMessage::Rename { name } => {
                let name = crowdfactor_protocol::kept_name(&name);
                let was = self.coord.rename(self.conn, &name);
                // A worker renaming itself in a loop must not flood the
                // log (the list of workers shows the name it ends with).
                if was.as_ref().is_some_and(|was| *was != name)
                    && crate::log_due(&mut self.rename_logged)
                {
                    tracing::info!(conn = self.conn, was, name, "worker renamed");
                }
                Ok(())
            }
        }
    }

    async fn result(&mut self, mut result: ChunkResult, bytes: usize) -> Result<(), &'static str> {
        let chunk = result.chunk_id;
        result.factors.set_largest_left_out(self.protocol >= 5);
        let work = match self.coord.check_result(self.conn, chunk) {
            ResultCheck::NotAssigned => {
                tracing::debug!(
                    conn = self.conn,
                    chunk,
                    "ignoring result for a chunk this worker never held"
                );
                self.idle(bytes).await;
                return Ok(());
            }
            ResultCheck::AlreadyDone => {
                tracing::debug!(conn = self.conn, chunk, "ignoring duplicate result");
                self.idle(bytes).await;
                return Ok(());
            }
            ResultCheck::Verify(work) => work,
        };
        // Verifying a large chunk is CPU work (the blocking pool's) and
        // accepting waits for the store's commit: the session awaits both
        // beside its socket and keeps reading meanwhile, so one worker's
        // results share group commits.
        let coord = Arc::clone(self.coord);
        let conn = self.conn;
        let compute = result.compute_us.map(Duration::from_micros);
        let work = async move {
            // Small chunks verify in microseconds: not worth a thread hop.
            let checked = if work.numbers.len() <= INLINE_VERIFY {
                check(&work.numbers, &coord.sieves, result)
            } else {
                let coord = Arc::clone(&coord);
                tokio::task::spawn_blocking(move || check(&work.numbers, &coord.sieves, result))
                    .await
                    .unwrap_or(Err(Refusal::TaskFailed))
            };
            match checked {
                Ok(factors) => Ok(coord.accept_async(conn, chunk, factors, compute).await),
                Err(reason) => Err(reason),
            }
        };
        // A panic in it is a bug of ours: the chunk goes back, no strike.
        self.pending.push(Box::pin(async move {
            let outcome = std::panic::AssertUnwindSafe(work)
                .catch_unwind()
                .await
                .unwrap_or(Err(Refusal::TaskFailed));
            (chunk, outcome)
        }));
        Ok(())
    }

    /// Reports the outcome of a verified (or refused) result to the worker.
    async fn settle(&mut self, chunk: ChunkId, outcome: Verdict) -> Result<(), &'static str> {
        match outcome {
            // Our failure, not the worker's: the chunk goes back to the
            // queue unverified and the worker gets no strike.
            Err(Refusal::TaskFailed) => {
                tracing::error!(
                    conn = self.conn,
                    chunk,
                    "verification task failed; chunk queued again"
                );
                self.coord.release(self.conn, &[chunk]);
                Ok(())
            }
            Err(reason) => {
                let strikes = self.coord.reject(self.conn, chunk);
                tracing::warn!(conn = self.conn, chunk, strikes, %reason, "wrong result rejected; chunk queued again");
                self.send(ServerMessage::Rejected {
                    chunk_id: chunk,
                    reason: reason.to_string(),
                })
                .await?;
                if strikes >= self.config.max_strikes {
                    if let Some(ip) = self.coord.ip(self.conn) {
                        self.coord.ban(ip, self.config.ban_duration);
                    }
                    return Err(self
                        .fail(
                            ErrorCode::Banned,
                            format!("{strikes} wrong results; disconnected"),
                        )
                        .await);
                }
                Ok(())
            }
            Ok(Ok(Completion::Accepted { .. })) => {
                self.send(ServerMessage::Accepted { chunk_id: chunk }).await
            }
            Ok(Ok(Completion::Duplicate)) => Ok(()),
            Ok(Err(e)) => {
                tracing::error!(chunk, error = %e, "store failed to record a result");
                // The chunk stays open and will be leased again.
                self.coord.release(self.conn, &[chunk]);
                Ok(())
            }
        }
    }

    async fn send(&self, msg: ServerMessage) -> Result<(), &'static str> {
        self.tx.send(msg).await.map_err(|_| "writer closed")
    }
}

/// Why a worker's result was refused (sent to the worker as `rejected`).
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// Not one factor list per number of the chunk.
    #[error("expected {expected} factor lists, got {got}")]
    Count { expected: usize, got: usize },
    /// A number's list is not its prime factorization.
    #[error("{n}: {error}")]
    Wrong {
        n: u128,
        error: crowdfactor_factor::VerifyError,
    },
    /// The verifying thread panicked (a bug, not the worker's fault: no
    /// strike, but the result cannot be accepted unverified).
    #[error("verification task failed")]
    TaskFailed,
}

/// Where the verifying sieves of the last few range chunks left off: a
/// chunk of the same progression resumes the nearest (most often the one
/// just before it) and skips most of the sieve's per-prime set-up. At most
/// [`SIEVES_KEPT`] entries of up to 1.2 MB each (a u32 per prime below
/// 2^22), the oldest dropped first.
/// Found by the progression alone (next number and step), whatever job
/// it came from: where a prime's next multiple lies depends on nothing else.
#[derive(Debug, Default)]
pub(crate) struct SieveCache(std::sync::Mutex<Vec<SieveResume>>);

/// Sieves kept by [`SieveCache`]: one per worker of a range job is what
/// helps, and a job's chunks are leased in order.
const SIEVES_KEPT: usize = 4;

impl SieveCache {
    /// The sieve that left off nearest this chunk, if one of its
    /// progression did (results arrive out of order: a worker's threads
    /// finish chunks in any order, and several workers share a job).
    fn take(&self, start: u128, step: u128) -> SieveResume {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        SieveResume::take_nearest(&mut kept, start, step).unwrap_or_default()
    }

    fn keep(&self, resume: SieveResume) {
        if resume.is_empty() {
            return;
        }
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= SIEVES_KEPT {
            kept.remove(0);
        }
        kept.push(resume);
    }
}

/// Checks a worker's result against the chunk: one factor list per number,
/// each the number's verified factorization. Returns the factor lists.
fn check(
    numbers: &ChunkNumbers,
    sieves: &SieveCache,
    result: ChunkResult,
) -> Result<FactorLists, Refusal> {
    if result.factors.len() != numbers.len() {
        return Err(Refusal::Count {
            expected: numbers.len(),
            got: result.factors.len(),
        });
    }
    let lists = result.factors.iter();
    let verdict = match (numbers, result.factors.largest_left_out()) {
        // A range is verified as one progression (a sieve when that is
        // cheaper), from where the sieve of the chunk before it stopped.
        (ChunkNumbers::Range(r), left_out) => {
            let mut resume = sieves.take(r.start(), r.step());
            let verdict = crowdfactor_factor::verify_progression_resuming(
                r.start(),
                r.step(),
                lists,
                left_out,
                &mut resume,
            );
            sieves.keep(resume);
            verdict
        }
        (ChunkNumbers::List(l), left_out) => {
            let verify = if left_out {
                crowdfactor_factor::verify_without_largest
            } else {
                crowdfactor_factor::verify
            };
            l.iter()
                .zip(lists)
                .enumerate()
                .try_for_each(|(i, (&n, factors))| verify(n, factors).map_err(|e| (i, e)))
        }
    };
    verdict.map_err(|(i, error)| Refusal::Wrong {
        // The index is within the chunk: the lengths were compared above.
        n: numbers.get(i).unwrap_or_default(),
        error,
    })?;
    Ok(result.factors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_that_change_nothing_wait_their_turn_past_the_allowance() {
        let close = |d: Duration, ms: f64| (d.as_secs_f64() * 1e3 - ms).abs() < 1e-6;
        let start = Instant::now();
        let mut idle = Throttle::new(start);
        for _ in 0..IDLE_BURST as usize {
            assert_eq!(idle.take(start, 30), Duration::ZERO);
        }
        // Then one every 10 ms: each waits for its own token.
        assert!(close(idle.take(start, 30), 10.0));
        assert!(close(idle.take(start, 30), 20.0));
        let paid = start + Duration::from_millis(20);
        assert!(close(idle.take(paid, 30), 10.0));
        // A pause earns the allowance back, no more.
        let later = paid + Duration::from_secs(3600);
        for _ in 0..IDLE_BURST as usize {
            assert_eq!(idle.take(later, 30), Duration::ZERO);
        }
        assert!(close(idle.take(later, 30), 10.0));
        // A large message counts once per 4 KiB begun.
        let quiet = later + Duration::from_secs(3600);
        assert_eq!(idle.take(quiet, 4096 * 999 + 1), Duration::ZERO);
        assert!(close(idle.take(quiet, 8192), 20.0));
    }
    use crowdfactor_protocol::NumberRange;

    fn result(lists: Vec<Vec<u128>>) -> ChunkResult {
        ChunkResult {
            chunk_id: 1,
            factors: lists.into(),
            compute_us: None,
        }
    }

    /// A range chunk long enough to be checked by the sieve, and a list: the
    /// right answer passes, one composite "prime" anywhere is caught and named.
    #[test]
    fn checks_ranges_and_lists() {
        let (start, count) = (999_999_999_999u128, 20_000u64);
        let range = ChunkNumbers::Range(NumberRange::new(start, 2, count).expect("a valid range"));
        let good: Vec<Vec<u128>> = range.iter().map(crowdfactor_factor::factor).collect();
        assert!(check(&range, &SieveCache::default(), result(good.clone())).is_ok());
        let list = ChunkNumbers::List(range.iter().take(300).collect());
        assert!(check(&list, &SieveCache::default(), result(good[..300].to_vec())).is_ok());
        for i in [0, 1, 299, 12_345, count as usize - 1] {
            let mut bad = good.clone();
            let n = start + 2 * i as u128;
            // The two largest factors claimed as one prime; for a prime n, a factor 1.
            match bad[i][..] {
                [.., a, b] => {
                    let k = bad[i].len();
                    bad[i].truncate(k - 2);
                    bad[i].push(a * b);
                }
                _ => bad[i].insert(0, 1),
            }
            let why = check(&range, &SieveCache::default(), result(bad.clone()))
                .expect_err("a wrong result")
                .to_string();
            assert!(why.starts_with(&format!("{n}: ")), "{why}");
            if i < 300 {
                let why = check(&list, &SieveCache::default(), result(bad[..300].to_vec()))
                    .expect_err("a wrong result")
                    .to_string();
                assert!(why.starts_with(&format!("{n}: ")), "{why}");
            }
        }
        assert!(check(&range, &SieveCache::default(), result(good[1..].to_vec())).is_err());
    }

    /// A range job's chunks checked one after another go through the
    /// sieve each resumes from where the one before stopped (kept in the
    /// cache): right chunks pass, and a composite claimed prime in the
    /// second one is still caught, in either form of the lists.
    #[test]
    fn consecutive_range_chunks_resume_the_sieve() {
        let (start, count) = (999_999_999_999u128, 20_000u64);
        let chunk = |from: u64| {
            let range = NumberRange::new(start + 2 * u128::from(from), 2, count).expect("valid");
            let numbers = ChunkNumbers::Range(range);
            let good: Vec<Vec<u128>> = numbers.iter().map(crowdfactor_factor::factor).collect();
            (numbers, good)
        };
        for left_out in [false, true] {
            let sieves = SieveCache::default();
            let form = |lists: Vec<Vec<u128>>| {
                let mut r = result(lists);
                if left_out {
                    let mut short = FactorLists::new();
                    short.set_largest_left_out(true);
                    for l in r.factors.iter() {
                        short.push_factorization(l);
                    }
                    r.factors = short;
                }
                r
            };
            let (first, good) = chunk(0);
            assert!(check(&first, &sieves, form(good)).is_ok());
            let (second, good) = chunk(count);
            // The two largest (odd) factors of a number claimed one prime.
            let i = good
                .iter()
                .position(|l| l.len() >= 3 && l[l.len() - 2] > 2)
                .expect("such a number");
            let mut bad = good.clone();
            let (a, b) = (
                bad[i].pop().expect("3 factors"),
                bad[i].pop().expect("3 factors"),
            );
            bad[i].push(a * b);
            let n = second.get(i).expect("in the chunk");
            assert!(sieves
                .take(start + 2 * u128::from(count), 2)
                .resumes(start + 2 * u128::from(count), 2));
            assert!(check(&first, &sieves, form(chunk(0).1)).is_ok());
            let why = check(&second, &sieves, form(bad))
                .expect_err("a composite claimed prime")
                .to_string();
            assert!(why.starts_with(&format!("{n}: ")), "{why}");
            assert!(check(&first, &sieves, form(chunk(0).1)).is_ok());
            assert!(check(&second, &sieves, form(good)).is_ok());
            let next = start + 4 * u128::from(count);
            assert!(
                sieves.take(next, 2).resumes(next, 2),
                "the next chunk would resume"
            );
        }
    }

    /// Protocol 5 results (each largest factor left out): the right answer
    /// passes for a range and a list (so do whole lists); a factor dropped
    /// (the restored one is then composite) or a wrong one (it does not
    /// divide the number) is caught and the number named.
    #[test]
    fn checks_results_without_their_largest_factors() {
        let short = |lists: &[Vec<u128>]| -> ChunkResult {
            let mut r = result(
                lists
                    .iter()
                    .map(|l| l[..l.len().saturating_sub(1)].to_vec())
                    .collect(),
            );
            r.factors.set_largest_left_out(true);
            r
        };
        let (start, count) = (999_999_999_999u128, 20_000u64);
        let range = ChunkNumbers::Range(NumberRange::new(start, 2, count).expect("a valid range"));
        let list = ChunkNumbers::List(vec![1, 12, 97, (1 << 64) + 1, u128::MAX]);
        for numbers in [range, list] {
            let good: Vec<Vec<u128>> = numbers.iter().map(crowdfactor_factor::factor).collect();
            let checked = check(&numbers, &SieveCache::default(), short(&good)).expect("right");
            assert!(checked.largest_left_out());
            let i = good
                .iter()
                .position(|l| l.len() >= 3)
                .expect("a number with 3 factors");
            let n = numbers.get(i).expect("in the chunk");
            let mut wrongs = vec![good.clone(), good.clone()];
            wrongs[0][i].remove(0);
            wrongs[1][i][0] += 2;
            for bad in wrongs {
                let why = check(&numbers, &SieveCache::default(), short(&bad))
                    .expect_err("wrong")
                    .to_string();
                assert!(why.starts_with(&format!("{n}: ")), "{why}");
            }
            // Whole lists are right too: their product is the number, so
            // nothing is left to restore.
            let mut whole = result(good.clone());
            whole.factors.set_largest_left_out(true);
            assert!(check(&numbers, &SieveCache::default(), whole).is_ok());
        }
    }
}

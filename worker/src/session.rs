//! The worker's connection loop: connect, hello, factor what is assigned,
//! heartbeat, and reconnect with exponential backoff when the socket drops.

use std::collections::{HashMap, HashSet, VecDeque};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crowdfactor_protocol::{
    result_frame_lists, Assignment, ChunkId, ChunkNumbers, ClientMessage, ErrorCode, Hello,
    ResultWriter, ServerMessage, WorkerKind, DEFAULT_MAX_MESSAGE_BYTES, OLDEST_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
};

use crate::reuse;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// What the worker was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub server: String,
    pub threads: usize,
    pub name: Option<String>,
    pub exit_when_idle: bool,
    pub token: Option<String>,
    /// CPU share per compute thread, 1..=100.
    pub cpu_percent: u8,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("cannot connect: {0}")]
    Connect(#[source] tokio_tungstenite::tungstenite::Error),
    #[error("the server answered {0} instead of taking a WebSocket: is this the coordinator's address? (try its page URL, e.g. http://host:8080/)")]
    NotCoordinator(String),
    #[error("the server's answer is not HTTP: if it serves TLS, use https:// (wss://); if not, is this the coordinator's address?")]
    NotHttp,
    #[error("the server does not speak TLS at this address: is it an http:// (ws://) one?")]
    NotTls,
    #[error("nothing listens at this address (connection refused): is crowdfactor-server running there, and is --server its address and port?")]
    NobodyThere,
    #[error("the server's TLS certificate is not trusted ({0}): for a private CA, name its certificate in SSL_CERT_FILE")]
    Certificate(rustls::Error),
    #[error("connection lost: {0}")]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("the server sent an invalid message: {0}")]
    Protocol(#[from] crowdfactor_protocol::DecodeError),
    #[error("the coordinator ended the connection ({}): {message}", code.as_str())]
    Refused { code: ErrorCode, message: String },
    #[error("no welcome from the server")]
    NoWelcome,
    #[error("no answer within {} s (is this the coordinator's address?)", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout,
    #[error(
        "nothing from the server for {0:.0?}, not even an answer to a ping: the connection is dead"
    )]
    ServerSilent(Duration),
}

/// Time allowed to connect: TCP, TLS and the WebSocket upgrade. Something
/// that accepts the connection and never answers would hold the worker for
/// good (and a firewall dropping packets, for the system's two minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

enum End {
    Idle,
    Interrupted,
}

/// Why the WebSocket could not be opened, in terms of what to check.
fn connect_error(e: tokio_tungstenite::tungstenite::Error) -> SessionError {
    use tokio_tungstenite::tungstenite::error::{Error, ProtocolError};
    match e {
        // A page, a missing route: the URL names something else
        // (errors such as 503 or 403 are the coordinator's own).
        Error::Http(r) if r.status().is_success() || r.status().as_u16() == 404 => {
            SessionError::NotCoordinator(r.status().to_string())
        }
        // Some other server: an HTTP/1.0 one, or one whose answer is not
        // HTTP at all (a TLS port asked in plain text).
        Error::Protocol(ProtocolError::WrongHttpVersion) => {
            SessionError::NotCoordinator("in HTTP/1.0".into())
        }
        Error::Protocol(ProtocolError::HttparseError(_)) => SessionError::NotHttp,
        Error::Io(io) => {
            match io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                // wss:// to a plain-text port: its answer is no TLS record.
                Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => {
                    SessionError::NotTls
                }
                Some(e @ rustls::Error::InvalidCertificate(_)) => {
                    SessionError::Certificate(e.clone())
                }
                _ if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                    SessionError::NobodyThere
                }
                _ => SessionError::Connect(Error::Io(io)),
            }
        }
        e => SessionError::Connect(e),
    }
}

/// Runs until idle (with `--exit-when-idle`) or Ctrl-C.
pub async fn run(opts: Options) -> ExitCode {
    // The engine's tables are built while we connect, not on the first chunk
    // (whose time sizes the next ones).
    drop(tokio::task::spawn_blocking(crowdfactor_factor::warm_up));
    let compute = Arc::new(Semaphore::new(opts.threads));
    let mut delay = opts.min_backoff;
    let mut stats = Stats {
        progress: progress_bar(),
        ..Stats::default()
    };
    // First Ctrl-C or SIGTERM: drain (hand back what has not started,
    // finish the rest). A second one: quit at once; the server requeues
    // what we held.
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let interrupts = tokio::spawn(async move {
        stop_signal().await;
        tracing::warn!("stopping: finishing the chunks in progress and handing back the rest (Ctrl-C again quits at once)");
        let _ = drain_tx.send(true);
        stop_signal().await;
        std::process::exit(130);
    });
    // Results reach the connection of the moment through one channel, so
    // that chunks factored for a connection that ended can serve the next.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Factored>();
    let carry = Arc::new(Carry {
        state: std::sync::Mutex::new(Carried {
            // What two connections' worth of chunks can leave: a chunk
            // computing and one answered per slot.
            most: 4 * opts.threads,
            offer: PROTOCOL_VERSION,
            ..Carried::default()
        }),
        changed: tokio::sync::watch::Sender::new(0),
    });
    let code = loop {
        if *drain_rx.borrow() {
            break ExitCode::SUCCESS;
        }
        let started = Instant::now();
        let mut held = Held::default();
        carry.lock().epoch += 1;
        let outcome = session(
            &opts,
            &compute,
            &mut stats,
            drain_rx.clone(),
            (&done_tx, &mut done_rx),
            &mut held,
            &carry,
        )
        .await;
        held.carry_into(&mut carry.lock());
        let offered = std::mem::replace(&mut carry.lock().offer, PROTOCOL_VERSION);
        match outcome {
            Ok(End::Idle) => {
                tracing::info!(
                    numbers = stats.numbers,
                    chunks = stats.chunks,
                    reused = stats.reused,
                    "no work left; exiting"
                );
                return ExitCode::SUCCESS;
            }
            Ok(End::Interrupted) => {
                tracing::info!(
                    numbers = stats.numbers,
                    reused = stats.reused,
                    "interrupted; exiting"
                );
                return ExitCode::SUCCESS;
            }
            Err(SessionError::Refused {
                code: ErrorCode::BadHandshake,
                message,
            }) if offered > OLDEST_PROTOCOL_VERSION => {
                // A coordinator older than this worker: speak its version
                // (results then carry whole lists). Each new connection
                // offers the newest again, in case it was upgraded.
                carry.lock().offer = offered - 1;
                tracing::info!(server = %opts.server, refused = offered, why = message.as_str(), "the coordinator does not speak this protocol version; offering {}", offered - 1);
            }
            Err(SessionError::Refused {
                code: code @ (ErrorCode::Unauthorized | ErrorCode::BadHandshake),
                message,
            }) => {
                // Retrying cannot help: the token or this worker's protocol
                // version is wrong until someone changes it.
                tracing::error!(server = %opts.server, code = code.as_str(), why = message.as_str(), "the coordinator refused this worker; not retrying");
                break ExitCode::from(3);
            }
            Err(e) => {
                if started.elapsed() > Duration::from_secs(10) {
                    delay = opts.min_backoff;
                }
                if let SessionError::Refused {
                    code: ErrorCode::Banned,
                    ..
                } = e
                {
                    delay = opts.max_backoff;
                }
                // Jitter spreads reconnects of many workers after a server restart.
                let wait = delay.mul_f64(0.5 + fastrand::f64());
                tracing::warn!(server = %opts.server, error = e.to_string().as_str(), retry_in = ?wait, "disconnected");
                let mut drain = drain_rx.clone();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = drain.changed() => {}
                }
                delay = (delay * 2).min(opts.max_backoff);
            }
        }
    };
    interrupts.abort();
    if let Some(pb) = &stats.progress {
        pb.finish();
    }
    code
}

/// A live status line when stderr is a terminal; plain log lines otherwise.
fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let pb = indicatif::ProgressBar::new_spinner();
    let style = indicatif::ProgressStyle::with_template("{spinner} {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
    pb.set_style(style);
    pb.enable_steady_tick(Duration::from_millis(200));
    Some(pb)
}

#[derive(Debug, Default)]
struct Stats {
    /// Numbers answered, `reused` of them from results factored for an
    /// earlier connection ([`crate::reuse`]).
    numbers: u64,
    reused: u64,
    chunks: u64,
    progress: Option<indicatif::ProgressBar>,
}

/// The chunks one connection holds. When it ends, those being factored
/// are carried over ([`Held::carry_into`]); the others never start (the
/// coordinator queues them again).
#[derive(Default)]
struct Held {
    /// Assigned and not answered yet.
    inflight: HashMap<ChunkId, Arc<Assignment>>,
    /// Of those, the ones being factored for an earlier connection.
    adopted: HashSet<ChunkId>,
    /// Chunks whose computation has begun (the rest can be handed back).
    started: Arc<std::sync::Mutex<HashSet<ChunkId>>>,
    /// Results sent and neither accepted nor rejected yet, oldest first: a
    /// connection found dead may have taken them nowhere.
    sent: VecDeque<(ChunkId, Kept)>,
}

/// Most results [`Held::sent`] keeps; the coordinator answers each within
/// a commit, so only a coordinator that does not answer comes near it.
const SENT_KEPT: usize = 256;

impl Held {
    fn carry_into(self, carried: &mut Carried) {
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        for (id, assignment) in self.inflight {
            // Marking a chunk started keeps a task waiting for a thread from
            // beginning it.
            if self.adopted.contains(&id) || !started.insert(id) {
                carried.running.insert(id, (assignment, carried.epoch));
            }
        }
        for (_, kept) in self.sent {
            carried.keep(kept);
        }
    }
}

/// A chunk's `result` message, kept for its next lease.
#[derive(Debug, Clone)]
struct Kept {
    assignment: Arc<Assignment>,
    count: usize,
    text: Utf8Bytes,
    /// The compute time it reports.
    took: Duration,
    /// Whether the text leaves out each number's largest factor (protocol
    /// 5): only a connection speaking the same form may send it.
    left_out: bool,
}

/// Sends a result, keeping it until the coordinator answers for it.
async fn send_result<S>(
    sink: &mut S,
    sent: &mut VecDeque<(ChunkId, Kept)>,
    kept: Kept,
) -> Result<(), SessionError>
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let message = Message::Text(kept.text.clone());
    if sent.len() >= SENT_KEPT {
        sent.pop_front();
    }
    sent.push_back((kept.assignment.chunk_id, kept));
    sink.send(message).await?;
    Ok(())
}

/// What ended connections leave to the next one: chunks still being
/// factored for them, and results not sent or not answered (the
/// connection may have been dead for a while before it was noticed). The coordinator
/// queues a closed (or silent) connection's chunks again under the same ids
/// and hands them out first, usually to this worker as it reconnects: a
/// chunk given back to us is answered from here, not factored twice.
///
/// A coordinator restarted in the meantime does not know those chunks: it
/// cuts their numbers into new ones, which are answered from these results
/// in whole or in part ([`crate::reuse`]); a new chunk holding numbers
/// still being factored here waits for them.
#[derive(Default)]
struct Carried {
    /// Counts connections; a result says which one it was factored for.
    epoch: u64,
    /// Chunks being factored, with the connection they were carried from.
    running: HashMap<ChunkId, (Arc<Assignment>, u64)>,
    /// Oldest first, at most `most`, none older than [`CARRIED_FOR`].
    done: VecDeque<Done>,
    /// Numbers [`Done::serial`] from.
    serials: u64,
    most: usize,
    /// Whether the last connection's results left out the largest factors
    /// (its protocol version); `running` chunks are factored in that form.
    left_out: Option<bool>,
    /// The protocol version the next `hello` offers: the newest, or one
    /// below the version a coordinator just refused.
    offer: u32,
}

/// How long a result is kept for a later connection: chunks are leased
/// again within seconds of their connection's end (or its lease timeout),
/// or not to us.
const CARRIED_FOR: Duration = Duration::from_secs(600);

/// A kept result, with how many of its lists have not answered a new chunk.
struct Done {
    at: Instant,
    serial: u64,
    unused: usize,
    /// New chunks of its job in a row that no kept result answered.
    missed: u32,
    kept: Kept,
}

/// After this many chunks of its job in a row that no kept result answers,
/// the results kept for it are no longer searched (only asked for whole):
/// their numbers went to another worker, or the coordinator had stored
/// them before it went down. A restarted coordinator cuts the numbers it
/// has no result for in order, so the results kept for a job answer a run
/// of its first chunks after the reconnect (a gap of numbers no one had
/// factored takes a chunk or two, each larger than the last); and
/// matching a list number by number costs a hash lookup per number and
/// kept result.
const MISSES: u32 = 16;

/// [`Carried`], shared by the connection loop and the compute tasks.
struct Carry {
    state: std::sync::Mutex<Carried>,
    /// Changes when a chunk leaves [`Carried::running`]: a chunk waiting
    /// for its numbers looks again.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Carry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Carried> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// A kept result a new chunk may take lists from (a cheap copy: its text
/// and assignment are shared).
struct Source {
    serial: u64,
    kept: Kept,
}

impl Carried {
    /// Keeps the result of a chunk factored for an ended connection.
    fn keep(&mut self, kept: Kept) {
        let id = kept.assignment.chunk_id;
        if self
            .running
            .get(&id)
            .is_some_and(|(a, _)| Arc::ptr_eq(a, &kept.assignment))
        {
            self.running.remove(&id);
        }
        let now = Instant::now();
        self.done.retain(|d| now.duration_since(d.at) < CARRIED_FOR);
        if self.done.len() >= self.most.max(1) {
            self.done.pop_front();
        }
        self.serials += 1;
        self.done.push_back(Done {
            at: now,
            serial: self.serials,
            unused: kept.count,
            missed: 0,
            kept,
        });
    }

    /// The kept results of `a`'s job (a chunk assigned by connection
    /// `epoch`, in `left_out`'s form) that may answer some of its numbers,
    /// and the chunks still being factored that may hold others: only those
    /// carried from connections before its own, so a chunk never waits for
    /// itself (once its own connection ended), nor two chunks for each
    /// other. Cheap copies: matching them to `a` is done without the lock.
    fn candidates(
        &self,
        a: &Assignment,
        left_out: bool,
        epoch: u64,
    ) -> (Vec<Source>, Vec<Arc<Assignment>>) {
        let now = Instant::now();
        let sources = self
            .done
            .iter()
            .filter(|d| {
                d.unused > 0
                    && d.missed < MISSES
                    && d.kept.left_out == left_out
                    && d.kept.assignment.job_id == a.job_id
                    && now.duration_since(d.at) < CARRIED_FOR
            })
            .map(|d| Source {
                serial: d.serial,
                kept: d.kept.clone(),
            })
            .collect();
        let running = self
            .running
            .values()
            .filter(|(r, carried_from)| *carried_from < epoch && r.job_id == a.job_id)
            .map(|(r, _)| Arc::clone(r))
            .collect();
        (sources, running)
    }

    /// Counts the lists `spans` take from `sources` as used (a result all
    /// of whose lists were used is dropped), and whether a chunk of their
    /// job took any.
    fn took(&mut self, sources: &[Source], spans: &[reuse::Span]) {
        for (i, source) in sources.iter().enumerate() {
            let used: usize = spans
                .iter()
                .filter(|s| s.source == i)
                .map(|s| s.count)
                .sum();
            if let Some(d) = self.done.iter_mut().find(|d| d.serial == source.serial) {
                d.unused = d.unused.saturating_sub(used);
                d.missed = if spans.is_empty() { d.missed + 1 } else { 0 };
            }
        }
        self.done.retain(|d| d.unused > 0);
    }

    /// The result kept for exactly this assignment (same chunk, job and
    /// numbers: a coordinator started afresh on another database may reuse
    /// an id).
    fn take_result(&mut self, a: &Assignment, left_out: bool) -> Option<Kept> {
        let i = self
            .done
            .iter()
            .position(|d| *d.kept.assignment == *a && d.kept.left_out == left_out)?;
        self.done.remove(i).map(|d| d.kept)
    }

    /// Starts a connection whose results leave out the largest factors or
    /// not: chunks still being factored in the other form (the coordinator
    /// was up- or downgraded meanwhile) cannot answer it.
    fn connected(&mut self, left_out: bool) {
        if self.left_out.is_some_and(|l| l != left_out) {
            self.running.clear();
        }
        self.left_out = Some(left_out);
    }

    /// Whether exactly this assignment is still being factored for an ended
    /// connection; if so it is now the current connection's.
    fn take_running(&mut self, a: &Assignment) -> bool {
        let same = self
            .running
            .get(&a.chunk_id)
            .is_some_and(|(x, _)| **x == *a);
        if same {
            self.running.remove(&a.chunk_id);
        }
        same
    }
}

async fn session(
    opts: &Options,
    compute: &Arc<Semaphore>,
    stats: &mut Stats,
    mut drain: tokio::sync::watch::Receiver<bool>,
    (done_tx, done_rx): (
        &mpsc::UnboundedSender<Factored>,
        &mut mpsc::UnboundedReceiver<Factored>,
    ),
    held: &mut Held,
    carry: &Arc<Carry>,
) -> Result<End, SessionError> {
    // tungstenite zeroes its whole read buffer (128 KiB by default) as it
    // reads; a smaller one costs less per frame. Small frames go out at once.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(16 << 10);
    let connecting = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(opts.server.as_str(), Some(config), true),
    );
    let connected = tokio::select! {
        connected = connecting => connected.map_err(|_| SessionError::ConnectTimeout)?,
        // Nothing is held yet: a stop while connecting just stops.
        _ = drain.wait_for(|stop| *stop) => return Ok(End::Interrupted),
    };
    let (ws, _) = connected.map_err(connect_error)?;
    let (mut sink, mut stream) = ws.split();
    let hello = ClientMessage::Hello(Hello {
        protocol: carry.lock().offer,
        kind: WorkerKind::Native,
        // Two chunks per thread: one computing, one waiting, so no thread idles
        // during a round trip.
        slots: (opts.threads * 2) as u32,
        threads: opts.threads as u32,
        name: opts.name.clone(),
        agent: concat!("crowdfactor-worker/", env!("CARGO_PKG_VERSION")).to_owned(),
        token: opts.token.clone(),
    });
    sink.send(Message::text(hello.encode())).await?;
    let (heartbeat_ms, protocol) = match tokio::time::timeout(
        Duration::from_secs(15),
        stream.next(),
    )
    .await
    {
        Ok(Some(Ok(Message::Text(t)))) => {
            match ServerMessage::decode(&t, DEFAULT_MAX_MESSAGE_BYTES)? {
                ServerMessage::Welcome {
                    heartbeat_ms,
                    worker_id,
                    protocol,
                    ..
                } => {
                    tracing::info!(server = %opts.server, worker_id, threads = opts.threads, protocol, "connected");
                    (heartbeat_ms, protocol)
                }
                ServerMessage::Error { code, message } => {
                    return Err(SessionError::Refused { code, message })
                }
                _ => return Err(SessionError::NoWelcome),
            }
        }
        _ => return Err(SessionError::NoWelcome),
    };
    let Held {
        inflight,
        adopted,
        started,
        sent,
    } = held;
    let epoch = carry.lock().epoch;
    // From protocol 5 results leave out each number's largest factor.
    let left_out = protocol >= 5;
    carry.lock().connected(left_out);
    carry.bump();
    let mut cancelled: HashSet<ChunkId> = HashSet::new();
    let mut draining = false;
    let cpu = opts.cpu_percent.clamp(1, 100);
    let beat = Duration::from_millis(heartbeat_ms.clamp(100, 60_000));
    let mut heartbeat = tokio::time::interval(beat);
    // A server that vanished without closing the socket (its machine lost
    // power, the network between dropped) sends nothing more, and TCP takes
    // some 15 minutes to notice, the chunks in hand idle meanwhile. After
    // three heartbeats without a frame the worker pings (the server's
    // WebSocket answers by itself); after six it reconnects.
    let mut last_frame = Instant::now();
    let every = if stats.progress.is_some() { 1 } else { 10 };
    let mut report = tokio::time::interval(Duration::from_secs(every));
    let mut last_report = (Instant::now(), stats.numbers);
    loop {
        tokio::select! {
            frame = stream.next() => {
                last_frame = Instant::now();
                let text = match frame {
                    None => return Err(SessionError::Closed),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) => return Err(SessionError::Closed),
                    Some(Ok(_)) => continue,
                };
                match ServerMessage::decode(&text, DEFAULT_MAX_MESSAGE_BYTES)? {
                    ServerMessage::Assign(a) => {
                        sink.send(Message::text(ClientMessage::Ack { chunk_id: a.chunk_id }.encode())).await?;
                        if draining {
                            let release = ClientMessage::Release { chunk_ids: vec![a.chunk_id] };
                            sink.send(Message::text(release.encode())).await?;
                            continue;
                        }
                        // Leased again while we hold it (the lease lapsed while
                        // this machine slept, say): the one computation serves
                        // the new lease, whose holder wants its result.
                        if inflight.contains_key(&a.chunk_id) {
                            cancelled.remove(&a.chunk_id);
                            continue;
                        }
                        // Leased again after its result went out on this
                        // connection (the coordinator could not store it, and
                        // queued the chunk again): that result answers again.
                        let again = sent.iter().position(|(_, k)| *k.assignment == a);
                        if let Some((_, kept)) = again.and_then(|i| sent.remove(i)) {
                            tracing::info!(chunk_id = a.chunk_id, numbers = kept.count, "answered again with the result sent before");
                            send_result(&mut sink, sent, kept).await?;
                            continue;
                        }
                        let kept = carry.lock().take_result(&a, left_out);
                        if let Some(kept) = kept {
                            tracing::info!(chunk_id = a.chunk_id, numbers = kept.count, "answered with the result factored for the previous connection");
                            send_result(&mut sink, sent, kept).await?;
                            continue;
                        }
                        let a = Arc::new(a);
                        inflight.insert(a.chunk_id, Arc::clone(&a));
                        let adopt = carry.lock().take_running(&a);
                        if adopt {
                            carry.bump();
                            tracing::info!(chunk_id = a.chunk_id, "already being factored for the previous connection; its result will answer");
                            adopted.insert(a.chunk_id);
                            continue;
                        }
                        let (compute, done_tx, started, carry) = (compute.clone(), done_tx.clone(), started.clone(), Arc::clone(carry));
                        tokio::spawn(async move {
                            let Ok(mut permit) = compute.clone().acquire_owned().await else { return };
                            {
                                let mut s = started.lock().unwrap_or_else(|p| p.into_inner());
                                // Handed back while waiting for a thread: skip it.
                                if !s.insert(a.chunk_id) {
                                    return;
                                }
                            }
                            let factored = loop {
                                let mut changed = carry.changed.subscribe();
                                let (a, carry) = (Arc::clone(&a), Arc::clone(&carry));
                                let answered = tokio::task::spawn_blocking(move || answer(&a, &carry, cpu, left_out, epoch)).await;
                                match answered {
                                    Ok(Some(factored)) => break factored,
                                    Ok(None) => {
                                        // Its numbers are being factored for an ended
                                        // connection: the thread is free till they are.
                                        drop(permit);
                                        if changed.changed().await.is_err() {
                                            return;
                                        }
                                        let Ok(p) = compute.clone().acquire_owned().await else { return };
                                        permit = p;
                                    }
                                    Err(_) => return,
                                }
                            };
                            drop(permit);
                            let _ = done_tx.send(factored);
                        });
                    }
                    ServerMessage::Cancel { chunk_ids } => {
                        for id in chunk_ids {
                            if inflight.contains_key(&id) {
                                cancelled.insert(id);
                            }
                        }
                    }
                    ServerMessage::Accepted { chunk_id } => {
                        sent.retain(|(id, _)| *id != chunk_id);
                    }
                    ServerMessage::Rejected { chunk_id, reason } => {
                        sent.retain(|(id, _)| *id != chunk_id);
                        // The server's words, logged escaped (they cannot forge lines).
                        tracing::error!(chunk_id, reason = reason.as_str(), "the server rejected our result");
                    }
                    ServerMessage::Idle => {
                        if opts.exit_when_idle && inflight.is_empty() {
                            let _ = sink.send(Message::Close(None)).await;
                            return Ok(End::Idle);
                        }
                        tracing::debug!("server has no work; waiting");
                    }
                    ServerMessage::Error { code, message } => {
                        return Err(SessionError::Refused { code, message });
                    }
                    // Every frame counts as heard (above); these say nothing more.
                    ServerMessage::Welcome { .. } | ServerMessage::Heartbeat => {}
                }
            }
            Some(factored) = done_rx.recv() => {
                // Factored for an ended connection and not asked for again
                // (yet): kept for a later assignment of the same chunk.
                let Factored { chunk_id, count, reused, took, text, epoch: factored_for, assignment, left_out } = factored;
                let kept = Kept { assignment, count, text: text.into(), took, left_out };
                stats.reused += reused as u64;
                if factored_for != epoch && !adopted.remove(&chunk_id) {
                    stats.numbers += count as u64;
                    stats.chunks += 1;
                    carry.lock().keep(kept);
                    carry.bump();
                    continue;
                }
                inflight.remove(&chunk_id);
                // A later lease of the same chunk is worked afresh.
                started.lock().unwrap_or_else(|p| p.into_inner()).remove(&chunk_id);
                if cancelled.remove(&chunk_id) {
                    continue;
                }
                tracing::debug!(chunk_id, numbers = count, took_ms = took.as_millis() as u64, "chunk factored");
                stats.numbers += count as u64;
                stats.chunks += 1;
                send_result(&mut sink, sent, kept).await?;
                if draining && inflight.is_empty() {
                    let _ = sink.send(Message::Close(None)).await;
                    return Ok(End::Interrupted);
                }
            }
            _ = drain.changed(), if !draining => {
                draining = true;
                sink.send(Message::text(ClientMessage::Capacity { slots: 0, waiting: false }.encode())).await?;
                // Hand back every chunk no thread has begun; mark them so they never start.
                let unstarted: Vec<ChunkId> = {
                    let mut s = started.lock().unwrap_or_else(|p| p.into_inner());
                    inflight
                        .keys()
                        .copied()
                        .filter(|id| !adopted.contains(id) && s.insert(*id))
                        .collect()
                };
                for id in &unstarted {
                    inflight.remove(id);
                }
                if !unstarted.is_empty() {
                    sink.send(Message::text(ClientMessage::Release { chunk_ids: unstarted }.encode())).await?;
                }
                if inflight.is_empty() {
                    let _ = sink.send(Message::Close(None)).await;
                    return Ok(End::Interrupted);
                }
            }
            _ = heartbeat.tick() => {
                let quiet = last_frame.elapsed();
                if quiet > beat * 6 {
                    return Err(SessionError::ServerSilent(quiet));
                }
                if quiet > beat * 3 {
                    sink.send(Message::Ping(Default::default())).await?;
                }
                sink.send(Message::text(ClientMessage::Heartbeat.encode())).await?;
            }
            _ = report.tick() => {
                let (t0, n0) = last_report;
                let dn = stats.numbers - n0;
                let rate = dn as f64 / t0.elapsed().as_secs_f64();
                if let Some(pb) = &stats.progress {
                    pb.set_message(format!(
                        "{} numbers factored · {rate:.0}/s · {} chunks · {} in hand · {}",
                        stats.numbers, stats.chunks, inflight.len(), opts.server
                    ));
                } else if dn > 0 {
                    tracing::info!(numbers = stats.numbers, chunks = stats.chunks, rate = format!("{rate:.0}/s"), "progress");
                }
                last_report = (Instant::now(), stats.numbers);
            }
        }
    }
}

/// A chunk factored on a compute thread, its `result` message written.
#[derive(Debug)]
struct Factored {
    chunk_id: ChunkId,
    count: usize,
    /// Of those, answered from results kept from an earlier connection.
    reused: usize,
    took: Duration,
    text: String,
    /// The connection it was factored for ([`Carried::epoch`]), and what
    /// that connection assigned.
    epoch: u64,
    assignment: Arc<Assignment>,
    /// The text's form ([`Kept::left_out`]).
    left_out: bool,
}

/// Ctrl-C (SIGINT), or SIGTERM: how systemd, Docker and Kubernetes stop a
/// service, which should drain as gracefully as a Ctrl-C at a terminal; or
/// SIGHUP: the terminal the worker runs in was closed (unless started
/// with SIGHUP ignored, as by `nohup`).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let received = |kind: SignalKind| async move {
            match signal(kind) {
                Ok(mut s) => drop(s.recv().await),
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            () = received(SignalKind::terminate()) => {},
            () = async {
                if crowdfactor_process::hangup_ignored() {
                    std::future::pending().await
                } else {
                    received(SignalKind::hangup()).await
                }
            } => {},
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Answers chunk `a` for the connection `epoch`: factors its numbers but
/// those the results kept from an earlier connection hold, whose lists are
/// copied. `None` while some of its numbers are still being factored for
/// an ended connection.
fn answer(
    a: &Arc<Assignment>,
    carry: &Carry,
    cpu_percent: u8,
    left_out: bool,
    epoch: u64,
) -> Option<Factored> {
    let began = Instant::now();
    let (sources, running) = carry.lock().candidates(a, left_out, epoch);
    let spans = if sources.is_empty() && running.is_empty() {
        Vec::new()
    } else {
        let mut all: Vec<&ChunkNumbers> =
            sources.iter().map(|s| &s.kept.assignment.numbers).collect();
        all.extend(running.iter().map(|r| &r.numbers));
        let spans = reuse::plan(&a.numbers, &all);
        // Some of its numbers are still being factored for an ended
        // connection. (The caller watches `Carry::changed` from before
        // `candidates`: a chunk that ended since is not missed.)
        if spans.iter().any(|s| s.source >= sources.len()) {
            return None;
        }
        carry.lock().took(&sources, &spans);
        spans
    };
    // Written out here, on the compute thread, not by the connection's one
    // task: on a sieved range the text costs ~12 ns a number against ~45
    // for the sieve (perf, the seed job), so one writer for all threads
    // would cap a many-core worker.
    let mut out = ResultWriter::new(a.chunk_id, left_out, a.numbers.len());
    let mut throttle = Throttle::new(cpu_percent);
    let mut lists: HashMap<usize, Vec<&str>> = HashMap::new();
    let (mut next, mut reused, mut reused_took) = (0, 0, Duration::ZERO);
    for span in &spans {
        factor_span(&a.numbers, next..span.at, &mut throttle, &mut out);
        let source = &sources[span.source].kept;
        let source_lists = lists.entry(span.source).or_insert_with(|| {
            result_frame_lists(&source.text).map_or_else(Vec::new, Iterator::collect)
        });
        if source_lists.len() == source.count {
            for list in &source_lists[span.from..span.from + span.count] {
                out.push_listed(list);
            }
            reused += span.count;
            reused_took += source.took.mul_f64(span.count as f64 / source.count as f64);
        } else {
            // Not a frame this worker wrote (it cannot be): factor them.
            factor_span(
                &a.numbers,
                span.at..span.at + span.count,
                &mut throttle,
                &mut out,
            );
        }
        next = span.at + span.count;
    }
    factor_span(&a.numbers, next..a.numbers.len(), &mut throttle, &mut out);
    // The time the whole chunk took this worker: the coordinator sizes the
    // next chunks by it.
    let took = began.elapsed() + reused_took;
    let count = out.len();
    if reused > 0 {
        tracing::info!(
            chunk_id = a.chunk_id,
            numbers = count,
            reused,
            "answered with lists factored for the previous connection"
        );
    }
    Some(Factored {
        chunk_id: a.chunk_id,
        count,
        reused,
        took,
        text: out.finish(Some(took.as_micros() as u64)),
        epoch,
        assignment: Arc::clone(a),
        left_out,
    })
}

/// Keeps a compute thread below 100 % CPU: sleeps between slices so that
/// work / (work + sleep) matches `cpu_percent`.
struct Throttle {
    cpu_percent: u8,
    slice_start: Instant,
}

impl Throttle {
    fn new(cpu_percent: u8) -> Self {
        Throttle {
            cpu_percent,
            slice_start: Instant::now(),
        }
    }

    fn rest_if_due(&mut self) {
        if self.cpu_percent < 100 {
            let worked = self.slice_start.elapsed();
            if worked >= Duration::from_millis(10) {
                let idle =
                    worked.mul_f64((100 - self.cpu_percent) as f64 / self.cpu_percent as f64);
                std::thread::sleep(idle);
                self.slice_start = Instant::now();
            }
        }
    }
}

/// Factors a chunk into `out`, its `result` frame; below 100 % CPU it
/// sleeps between slices (see [`Throttle`]).
#[cfg(test)]
fn factor_chunk(numbers: &ChunkNumbers, cpu_percent: u8, mut out: ResultWriter) -> ResultWriter {
    factor_span(
        numbers,
        0..numbers.len(),
        &mut Throttle::new(cpu_percent),
        &mut out,
    );
    out
}

/// Factors the numbers of a chunk at indices `at` into `out`. A range of
/// small numbers is sieved as a whole (`factor_progression`), in slices of
/// [`RANGE_SLICE`] numbers when throttled.
fn factor_span(
    numbers: &ChunkNumbers,
    at: std::ops::Range<usize>,
    throttle: &mut Throttle,
    out: &mut ResultWriter,
) {
    let Some(first) = numbers.get(at.start).filter(|_| !at.is_empty()) else {
        return;
    };
    match numbers {
        ChunkNumbers::Range(r)
            if crowdfactor_factor::progression_is_sieved(first, r.step(), at.len()) =>
        {
            let slice = if throttle.cpu_percent < 100 {
                RANGE_SLICE
            } else {
                at.len()
            };
            let mut resume = sieves::take(first, r.step());
            let mut from = at.start;
            while let Some(first) = numbers.get(from).filter(|_| from < at.end) {
                let count = slice.min(at.end - from);
                crowdfactor_factor::factor_progression_resuming(
                    first,
                    r.step(),
                    count,
                    &mut resume,
                    |l| out.push_factorization(l),
                );
                from += count;
                throttle.rest_if_due();
            }
            sieves::give_back(resume);
        }
        _ => {
            for n in at.filter_map(|i| numbers.get(i)) {
                out.push_factorization_with(|v| crowdfactor_factor::factor_into(n, v));
                throttle.rest_if_due();
            }
        }
    }
}

/// Numbers per slice of a sieved range when the worker is throttled.
const RANGE_SLICE: usize = 65_536;

/// Where the compute threads' sieves left off in range jobs, so that a
/// thread's next chunk of the same range resumes one instead of finding
/// every sieving prime's first multiple again (a quarter of a seed-job
/// chunk's time: 36.8 → 27.8 ns a number in chunks of 44,620, 31.5 where a
/// thread gets every other chunk). One per thread at most, shared by the
/// process's threads: a chunk takes the one that left off nearest it. Only
/// a cache: a chunk factors to the same lists from any of them.
mod sieves {
    use crowdfactor_factor::SieveResume;
    use std::sync::Mutex;

    static KEPT: Mutex<Vec<SieveResume>> = Mutex::new(Vec::new());

    /// The kept sieve that left off nearest `start` in the progression of
    /// `step`, or else any (to be replaced: so at most one
    /// is kept per thread), or a new one.
    pub(super) fn take(start: u128, step: u128) -> SieveResume {
        let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        SieveResume::take_nearest(&mut kept, start, step)
            .or_else(|| kept.pop())
            .unwrap_or_default()
    }

    /// Keeps `resume` for a later chunk.
    pub(super) fn give_back(resume: SieveResume) {
        KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(resume);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crowdfactor_protocol::NumberRange;

    /// A sieved range (whole, or in slices when throttled), a range of large
    /// numbers and a list all give `factor`'s lists, in order, with or
    /// without each largest factor.
    #[test]
    fn chunks_factor_like_factor() {
        let range = |start: u128, count: u64| {
            ChunkNumbers::Range(NumberRange::new(start, 2, count).expect("a valid range"))
        };
        for (numbers, cpu) in [
            (range(999_999_999_999, 70_000), 100),
            (range(999_999_999_999, 70_000), 90),
            (range((1 << 64) + 1, 300), 100),
            (
                ChunkNumbers::List(vec![1, 12, 999_999_999_989, 1 << 100]),
                100,
            ),
        ] {
            let want: Vec<Vec<u128>> = numbers.iter().map(crowdfactor_factor::factor).collect();
            // The lists the coordinator reads from the frame.
            let factored = |left_out| {
                let out = factor_chunk(&numbers, cpu, ResultWriter::new(9, left_out, 0));
                assert_eq!(out.len(), numbers.len());
                let frame = out.finish(Some(5));
                match ClientMessage::decode(&frame, 1 << 30) {
                    Ok(ClientMessage::Result(r)) if r.chunk_id == 9 && r.compute_us == Some(5) => {
                        r.factors
                    }
                    other => panic!("not this chunk's result: {other:?}"),
                }
            };
            let got = factored(false);
            assert!(got.iter().eq(want.iter().map(|l| &l[..])), "cpu {cpu}");
            // Protocol 5: each list without its last factor.
            let got = factored(true);
            let short = want.iter().map(|l| &l[..l.len().saturating_sub(1)]);
            assert!(got.iter().eq(short), "cpu {cpu}, largest left out");
        }
    }

    /// After a reconnect a new chunk is answered from the results kept for
    /// the ended connection, in part or whole, and the frame is the one
    /// factoring it afresh gives; a chunk whose numbers are still being
    /// factored for the ended connection waits for them; kept lists answer
    /// once, and only chunks of their job in their form.
    #[test]
    fn new_chunks_take_the_lists_kept_from_an_ended_connection() {
        let range = |start: u128, count: u64| {
            ChunkNumbers::Range(NumberRange::new(start, 2, count).expect("a valid range"))
        };
        let assign = |chunk_id, job: &str, numbers| {
            Arc::new(Assignment {
                chunk_id,
                job_id: job.to_owned(),
                numbers,
            })
        };
        let carry = Carry {
            state: std::sync::Mutex::new(Carried {
                epoch: 1,
                most: 8,
                ..Carried::default()
            }),
            changed: tokio::sync::watch::Sender::new(0),
        };
        let old = [
            assign(1, "7", range(999_999_999_999, 50_000)),
            assign(
                2,
                "7",
                ChunkNumbers::List(vec![15, 1 << 100, 999_999_999_989, 77]),
            ),
        ];
        for a in &old {
            let f = answer(a, &carry, 100, true, 1).expect("nothing to wait for");
            assert_eq!(f.reused, 0);
            carry.lock().keep(Kept {
                assignment: f.assignment,
                count: f.count,
                text: f.text.into(),
                took: Duration::from_millis(40),
                left_out: true,
            });
        }
        let running = assign(3, "7", range(999_999_999_999 + 200_000, 1000));
        carry.lock().running.insert(3, (Arc::clone(&running), 1));
        carry.lock().epoch = 2;
        let fresh = |a: &Arc<Assignment>| {
            let out = factor_chunk(&a.numbers, 100, ResultWriter::new(a.chunk_id, true, 0));
            out.finish(Some(0))
        };
        let without_time = |text: &str| text.split(r#""compute_us""#).next().map(str::to_owned);
        // In the other form (a coordinator of protocol 4): factored afresh.
        let a = assign(15, "7", range(999_999_999_999 + 20_000, 100));
        assert_eq!(answer(&a, &carry, 100, false, 2).map(|f| f.reused), Some(0));
        // Straddling the end of the kept range: 30,000 lists taken.
        for (a, reused) in [
            (
                assign(10, "7", range(999_999_999_999 + 40_000, 40_000)),
                30_000,
            ),
            (
                assign(11, "7", ChunkNumbers::List(vec![8, 77, 1 << 100, 9])),
                2,
            ),
            // Kept for job 7, not job 8.
            (assign(12, "8", ChunkNumbers::List(vec![77, 15])), 0),
            // Two of its four lists still unused: the result still answers.
            (assign(13, "7", ChunkNumbers::List(vec![77, 15])), 2),
            // All four used now: it is gone.
            (assign(18, "7", ChunkNumbers::List(vec![15])), 0),
            (assign(14, "7", range(999_999_999_999, 20_000)), 20_000),
        ] {
            let f = answer(&a, &carry, 100, true, 2).expect("nothing to wait for");
            assert_eq!(
                (f.chunk_id, f.reused, f.count),
                (a.chunk_id, reused, a.numbers.len())
            );
            // (Not assert_eq: a difference would print both frames whole.)
            assert!(
                without_time(&f.text) == without_time(&fresh(&a)),
                "chunk {}",
                a.chunk_id
            );
            assert!(f.took >= Duration::from_millis(40) * reused as u32 / 50_000);
        }
        // The range's last 20,000 lists were taken by 14: it is gone too.
        let a = assign(19, "7", range(999_999_999_999, 10));
        assert_eq!(answer(&a, &carry, 100, true, 2).map(|f| f.reused), Some(0));
        // Holding a number still being factored for the ended connection.
        let a16 = assign(16, "7", range(999_999_999_999 + 200_000 - 4, 5));
        assert!(answer(&a16, &carry, 100, true, 2).is_none());
        // That chunk, carried from connection 1, does not wait for itself;
        // once its result is kept, the waiting chunk takes three lists.
        let f = answer(&running, &carry, 100, true, 1).expect("not waiting for itself");
        carry.lock().keep(Kept {
            assignment: f.assignment,
            count: f.count,
            text: f.text.into(),
            took: f.took,
            left_out: true,
        });
        assert!(carry.lock().running.is_empty());
        assert_eq!(
            answer(&a16, &carry, 100, true, 2).map(|f| f.reused),
            Some(3)
        );
        let a = assign(17, "7", range(999_999_999_999 + 200_000 + 2000, 5));
        assert_eq!(answer(&a, &carry, 100, true, 2).map(|f| f.reused), Some(0));
        // Results kept for a job of which MISSES chunks in a row took
        // nothing are searched no more (still asked for whole).
        let old = assign(20, "9", ChunkNumbers::List(vec![5, 6]));
        let f = answer(&old, &carry, 100, true, 1).expect("nothing to wait for");
        let kept = |f: Factored| Kept {
            assignment: f.assignment,
            count: f.count,
            text: f.text.into(),
            took: f.took,
            left_out: true,
        };
        carry.lock().keep(kept(f));
        let other = assign(21, "9", ChunkNumbers::List(vec![7]));
        for _ in 0..MISSES {
            assert_eq!(
                answer(&other, &carry, 100, true, 2).map(|f| f.reused),
                Some(0)
            );
        }
        let five = assign(22, "9", ChunkNumbers::List(vec![5]));
        assert_eq!(
            answer(&five, &carry, 100, true, 2).map(|f| f.reused),
            Some(0)
        );
        assert!(carry.lock().take_result(&old, true).is_some());
    }

    /// A server that answers every connection with `answer` and closes.
    async fn answering(answer: &'static [u8]) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0; 2048];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(answer).await;
            }
        });
        addr
    }

    /// What is at the address is not a coordinator: the error says what to
    /// check instead of quoting the WebSocket library.
    #[tokio::test]
    async fn a_server_that_is_no_coordinator_is_named() {
        /// What the worker says when connecting to `url` fails.
        async fn failure(url: &str) -> String {
            match tokio_tungstenite::connect_async(url).await {
                Ok(_) => panic!("{url}: connected"),
                Err(e) => connect_error(e).to_string(),
            }
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let page = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        for (scheme, answer, want) in [
            (
                "ws",
                &page[..],
                "answered 200 OK instead of taking a WebSocket",
            ),
            (
                "ws",
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                "answered 404 Not Found instead",
            ),
            (
                "ws",
                b"HTTP/1.0 200 OK\r\n\r\nhi",
                "answered in HTTP/1.0 instead",
            ),
            (
                "ws",
                b"\x15\x03\x03\x00\x02\x02\x32",
                "not HTTP: if it serves TLS, use https://",
            ),
            ("wss", &page[..], "does not speak TLS at this address"),
        ] {
            let addr = answering(answer).await;
            let url = format!("{scheme}://{addr}/ws");
            let error = failure(&url).await;
            assert!(error.contains(want), "{url}: {error}");
        }
        // A port nobody listens on.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("ws://{}/ws", closed.local_addr().expect("address"));
        drop(closed);
        let error = failure(&url).await;
        assert!(
            error.contains("nothing listens at this address (connection refused)"),
            "{url}: {error}"
        );
    }
}

//! Every TCP connection the server accepts, of any kind (the page, the API,
//! workers), is counted and watched before axum sees it:
//!
//! - at most `max_open_connections` at once, and at most
//!   `max_connections_per_ip` + [`HTTP_PER_IP`] from one address (trusted
//!   proxies excepted): more are closed as they arrive, so the process never
//!   runs out of file descriptors (which stalls accepting for everyone);
//! - a connection that sends nothing and takes nothing for one and a half
//!   times `idle_timeout` while the server waits on it is closed: a client
//!   that opens a connection and says nothing, or stops half-way through a
//!   request, does not hold a descriptor for ever (hyper has no such
//!   timeout as axum runs it).
//!
//! - WebSocket input read but not yet made into a whole message (a worker
//!   part-way through sending a result, or a client that declares a 4 MiB
//!   frame and stalls) is counted across all connections: past
//!   `max_buffered_input`, a connection with a large message in progress
//!   that reads more is closed, so partial messages cannot take the
//!   server's memory however many connections send them.
//!
//! The worker protocol keeps its own, finer limits (the WebSocket handler
//! answers over-limit workers with an error they can show).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::proxy::AddrRange;
use crate::{ConnCounter, ConnSlot, Full};

/// Connections one address may hold beyond its worker connections: the
/// page, its assets, the dashboard and API calls.
pub const HTTP_PER_IP: usize = 64;

/// Connections beside the workers for pages and API calls: the default
/// `max_open_connections` is `max_connections` plus this.
pub const HTTP_HEADROOM: usize = 1_024;

/// Connection limits for [`Guarded`].
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_total: usize,
    pub(crate) max_per_ip: usize,
    /// Addresses with no per-address limit (reverse proxies: every client
    /// behind one arrives from its address).
    pub(crate) exempt: Vec<AddrRange>,
    pub(crate) idle: Duration,
    /// WebSocket input buffered in partial messages, all connections together.
    pub(crate) max_buffered: usize,
    /// A connection with more than this of a message in progress is closed
    /// when it reads more while the total is past `max_buffered`; smaller
    /// messages (acks, heartbeats, small results) keep flowing.
    pub(crate) large_message: usize,
}

impl Limits {
    pub(crate) fn of(config: &crate::Config) -> Self {
        Limits {
            // Never below the worker limit (a configuration that raised
            // only that one).
            max_total: config.max_open_connections.max(config.max_connections),
            max_per_ip: config.max_connections_per_ip.saturating_add(HTTP_PER_IP),
            exempt: config.trusted_proxies.clone(),
            // Later than the worker protocol's own idle check, which tells
            // the worker why before it closes.
            idle: config.idle_timeout.saturating_add(config.idle_timeout / 2),
            max_buffered: config.max_buffered_input,
            large_message: config.max_message_bytes / 4,
        }
    }
}

/// What the guard has seen, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct TcpStats {
    /// The connections open now.
    pub(crate) counter: Arc<ConnCounter>,
    /// Closed as they arrived: too many from the address, too many in all.
    pub(crate) refused_per_ip: AtomicU64,
    pub(crate) refused_total: AtomicU64,
    /// Closed after the idle limit.
    pub(crate) idle_closed: AtomicU64,
    /// WebSocket input read and not yet made into whole messages, in bytes.
    pub(crate) buffered: AtomicUsize,
    /// Closed for reading a large message while `buffered` was past its limit.
    pub(crate) buffer_closed: AtomicU64,
}

/// What one WebSocket connection has read that no whole message has used
/// yet (to within the read buffer: a message's last read may carry the start
/// of the next). HTTP requests are not counted.
#[derive(Debug)]
pub(crate) struct InputMeter {
    /// Set once the connection is upgraded to a WebSocket.
    on: AtomicBool,
    pending: AtomicUsize,
    stats: Arc<TcpStats>,
}

impl InputMeter {
    /// Starts counting (the connection is a WebSocket now).
    pub(crate) fn start(&self) {
        self.on.store(true, Relaxed);
    }

    /// A whole message was read: what was buffered for it is free again.
    pub(crate) fn message_done(&self) {
        let freed = self.pending.swap(0, Relaxed);
        if freed > 0 {
            self.stats.buffered.fetch_sub(freed, Relaxed);
        }
    }

    /// Counts `n` bytes read; `false` if the connection has to go.
    fn read(&self, n: usize, limits: &Limits) -> bool {
        if n == 0 || !self.on.load(Relaxed) {
            return true;
        }
        // The total first, then this connection's share: whatever
        // `message_done` takes away was added to the total before.
        let total = self.stats.buffered.fetch_add(n, Relaxed) + n;
        let mine = self.pending.fetch_add(n, Relaxed) + n;
        total <= limits.max_buffered || mine <= limits.large_message
    }
}

impl Drop for InputMeter {
    fn drop(&mut self) {
        self.message_done();
    }
}

/// The connect info of every request: the peer's address, and the meter of
/// its connection (see [`InputMeter`]).
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    pub(crate) input: Arc<InputMeter>,
}

impl<L, F> Connected<IncomingStream<'_, axum::serve::TapIo<Guarded<L>, F>>> for Peer
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    F: FnMut(&mut GuardedIo<L::Io>) + Send + 'static,
{
    fn connect_info(stream: IncomingStream<'_, axum::serve::TapIo<Guarded<L>, F>>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            input: Arc::clone(&stream.io().input),
        }
    }
}

/// A listener whose connections are counted and closed when idle.
#[derive(Debug)]
pub(crate) struct Guarded<L> {
    inner: L,
    /// Shared with every connection it accepts.
    limits: Arc<Limits>,
    stats: Arc<TcpStats>,
    /// When a refusal was last logged (a flood logs once a second).
    last_warned: Option<std::time::Instant>,
}

impl<L> Guarded<L> {
    pub(crate) fn new(inner: L, limits: Limits, stats: Arc<TcpStats>) -> Self {
        Guarded {
            inner,
            limits: Arc::new(limits),
            stats,
            last_warned: None,
        }
    }
}

impl<L> axum::serve::Listener for Guarded<L>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    type Io = GuardedIo<L::Io>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, peer) = self.inner.accept().await;
            let ip = peer.ip();
            let per_ip = if self.limits.exempt.iter().any(|r| r.contains(ip)) {
                usize::MAX
            } else {
                self.limits.max_per_ip
            };
            match self
                .stats
                .counter
                .acquire(ip, self.limits.max_total, per_ip)
            {
                Ok(slot) => {
                    let stats = Arc::clone(&self.stats);
                    let io = GuardedIo::new(io, peer, slot, stats, Arc::clone(&self.limits));
                    return (io, peer);
                }
                Err(full) => {
                    match full {
                        Full::PerIp => &self.stats.refused_per_ip,
                        Full::Total => &self.stats.refused_total,
                    }
                    .fetch_add(1, Relaxed);
                    if crate::log_due(&mut self.last_warned) {
                        let why = match full {
                            Full::Total => "as many connections open as the server allows",
                            Full::PerIp => "too many connections from this address",
                        };
                        tracing::warn!(%peer, why, "connection closed as it arrived");
                    }
                    // Dropping `io` closes it.
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One accepted connection: holds its place in the count and ends with
/// [`io::ErrorKind::TimedOut`] when it has been idle for the limit while a
/// read or write waits on it.
#[derive(Debug)]
pub(crate) struct GuardedIo<T> {
    io: T,
    peer: SocketAddr,
    limits: Arc<Limits>,
    /// Also holds the guard's figures (`input.stats`).
    input: Arc<InputMeter>,
    /// When bytes last moved either way.
    last: Instant,
    /// Wake-ups for a read and for a write that wait (separate: the two
    /// halves of a WebSocket are polled by different tasks). Set when first
    /// needed and moved on lazily: progress only updates `last`.
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    /// Counted as closed for idleness (once, whichever half noticed).
    expired: bool,
    _slot: ConnSlot,
}

impl<T> GuardedIo<T> {
    fn new(
        io: T,
        peer: SocketAddr,
        slot: ConnSlot,
        stats: Arc<TcpStats>,
        limits: Arc<Limits>,
    ) -> Self {
        GuardedIo {
            io,
            peer,
            limits,
            input: Arc::new(InputMeter {
                on: AtomicBool::new(false),
                pending: AtomicUsize::new(0),
                stats,
            }),
            last: Instant::now(),
            read_timer: None,
            write_timer: None,
            expired: false,
            _slot: slot,
        }
    }

    /// For an operation that waits: `Pending` with a wake-up armed for when
    /// the connection would be idle too long, or the error that closes it
    /// (counted once, whichever half noticed).
    fn pending<R>(&mut self, writing: bool, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let timer = if writing {
            &mut self.write_timer
        } else {
            &mut self.read_timer
        };
        match check_idle(timer, self.last, self.limits.idle, cx) {
            Ok(()) => Poll::Pending,
            Err(e) => {
                if !self.expired {
                    self.expired = true;
                    self.input.stats.idle_closed.fetch_add(1, Relaxed);
                }
                Poll::Ready(Err(e))
            }
        }
    }

    /// The connection underneath.
    pub(crate) fn get_ref(&self) -> &T {
        &self.io
    }
}

/// Called when an operation is pending: `Err` once the connection has been
/// idle for `idle`, otherwise arms `timer` to wake the task when it would be.
fn check_idle(
    timer: &mut Option<Pin<Box<Sleep>>>,
    last: Instant,
    idle: Duration,
    cx: &mut Context<'_>,
) -> io::Result<()> {
    // A limit too long to add up means none.
    let Some(deadline) = last.checked_add(idle) else {
        return Ok(());
    };
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    loop {
        if timer.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for too long",
            ));
        }
        // Bytes moved since it was armed: wait until the new deadline.
        timer.as_mut().reset(deadline);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    this.last = Instant::now();
                }
                if this.input.read(n, &this.limits) {
                    Poll::Ready(Ok(()))
                } else {
                    this.input.stats.buffer_closed.fetch_add(1, Relaxed);
                    tracing::warn!(
                        peer = %this.peer,
                        limit = this.limits.max_buffered,
                        "connection closed: a large message in progress while partial messages hold the input limit"
                    );
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        "too much input buffered in partial messages",
                    )))
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pending(false, cx),
        }
    }
}

impl<T> GuardedIo<T> {
    /// Notes progress of a write, or checks for idleness if it waits.
    fn wrote(
        &mut self,
        polled: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(n)) if n > 0 => {
                self.last = Instant::now();
                Poll::Ready(Ok(n))
            }
            Poll::Pending => self.pending(true, cx),
            done => done,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(polled, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

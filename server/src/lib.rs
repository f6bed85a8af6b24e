//! The crowdfactor coordinator.
//!
//! [`run`] serves, on one listener:
//! - `/` and its assets: the volunteer page (embedded from `web/`),
//! - `/ws`: the worker protocol (see [`crowdfactor_protocol`]),
//! - `/api/...`: the JSON job API (see `docs/api.md`).

pub mod api;
pub mod auth;
pub mod coordinator;
mod csp;
mod listen;
mod metrics;
pub mod proxy;
pub mod sqlite;
pub mod store;
pub mod tls;
mod web;
mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use coordinator::{ChunkSizing, Coordinator, LeaseTiming};
pub use listen::{HTTP_HEADROOM, HTTP_PER_IP};
use store::{MemoryStore, Store, StoreError};

/// Coordinator settings. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Wanted time for one chunk on one worker thread; chunks are cut per
    /// worker from its measured speed (see [`coordinator::ChunkSizing`]).
    pub chunk_target: Duration,
    /// Work in a worker's first chunk of a job, while its speed is unknown
    /// (see [`coordinator::ChunkSizing`]).
    pub first_chunk: Duration,
    /// Most numbers in one chunk (and the largest `chunk_size` cap a job may set).
    pub max_chunk_size: u32,
    /// Largest job, in numbers.
    pub max_numbers_per_job: u64,
    /// Most bytes the numbers of open list jobs may take together (8 per
    /// number below 2^64, 16 otherwise; ranges take none): the coordinator
    /// holds them while a job is open, and again after a restart, so a
    /// backlog past the machine's memory would stop it from starting.
    /// Default: [`default_max_list_bytes`].
    pub max_list_bytes: u64,
    /// Largest HTTP request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest WebSocket message, in bytes.
    pub max_message_bytes: usize,
    /// Time allowed between `assign` and `ack`.
    pub ack_timeout: Duration,
    /// Worker silence after which its leases lapse.
    pub lease_timeout: Duration,
    /// Longest lease while a worker's speed is unknown (see `LeaseTiming`).
    pub max_lease: Duration,
    /// How often workers are asked to send a heartbeat.
    pub heartbeat_interval: Duration,
    /// Worker silence after which the connection is closed. Any connection
    /// (e.g. a request that stops half-way) is closed after one and a half
    /// times this with no byte moving either way.
    pub idle_timeout: Duration,
    /// Time allowed for the `hello` after the upgrade.
    pub handshake_timeout: Duration,
    /// After the stop signal, how long requests still in flight (a results
    /// download, a job upload) may take before the server stops anyway.
    /// Worker sessions and dashboard feeds end at the signal itself.
    pub shutdown_grace: Duration,
    /// Time allowed for one write to a worker before it counts as not reading.
    pub write_timeout: Duration,
    /// Wrong results before a worker is disconnected.
    pub max_strikes: u32,
    /// How long an address is refused after a worker from it was disconnected
    /// for wrong results.
    pub ban_duration: Duration,
    /// Most worker connections at once.
    pub max_connections: usize,
    /// Most worker connections at once from one IP address; TCP
    /// connections of any kind from one address (trusted proxies excepted)
    /// are capped at this plus [`HTTP_PER_IP`].
    pub max_connections_per_ip: usize,
    /// Most TCP connections at once of any kind (pages, API calls, workers);
    /// more are closed as they arrive (never fewer than `max_connections`).
    /// Each is a file descriptor: the binary lowers this to fit the
    /// process's limit.
    pub max_open_connections: usize,
    /// Most bytes of WebSocket input held in partial messages, all
    /// connections together: past this, a connection with a large message
    /// in progress (over a quarter of `max_message_bytes`) that reads more
    /// is closed.
    pub max_buffered_input: usize,
    /// Bearer token required by the job API (`None`: no authentication).
    pub api_token: Option<String>,
    /// Token workers must present in `hello` (`None`: anyone may contribute).
    pub worker_token: Option<String>,
    /// Reverse proxies (e.g. the one terminating TLS) whose
    /// `X-Forwarded-For` (or `Forwarded`) names the worker's address: per-address limits,
    /// bans and logs then see the worker, not the proxy.
    pub trusted_proxies: Vec<proxy::AddrRange>,
    /// Serve https and wss with this configuration
    /// ([`tls::CertFiles::server_config`]) instead
    /// of plain http and ws; `handshake_timeout` bounds each TLS handshake,
    /// and `max_connections_per_ip` those in progress from one address.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Jobs that ended (done or cancelled) this long ago are deleted with
    /// their numbers and results, as `DELETE /api/jobs/<id>?purge=true`
    /// does; checked every tenth of it (at least every second, at most
    /// every hour). `None`: kept until deleted by hand.
    pub keep_finished: Option<Duration>,
    /// With `tls`: send `Strict-Transport-Security` (a year), so browsers
    /// use https for this host from then on. The binary sets it with
    /// `--redirect-http`, where the deployer has made the host https-only.
    pub strict_transport: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            chunk_target: Duration::from_secs(2),
            first_chunk: Duration::from_millis(100),
            max_chunk_size: 100_000,
            max_numbers_per_job: 10_000_000,
            max_list_bytes: default_max_list_bytes(),
            max_body_bytes: 256 << 20,
            max_message_bytes: crowdfactor_protocol::DEFAULT_MAX_MESSAGE_BYTES,
            ack_timeout: Duration::from_secs(10),
            lease_timeout: Duration::from_secs(30),
            max_lease: Duration::from_secs(600),
            heartbeat_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(90),
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            write_timeout: Duration::from_secs(20),
            max_strikes: 3,
            ban_duration: Duration::from_secs(600),
            max_connections: 20_000,
            max_connections_per_ip: 256,
            keep_finished: None,
            max_open_connections: 20_000 + HTTP_HEADROOM,
            max_buffered_input: 1 << 30,
            api_token: None,
            worker_token: None,
            trusted_proxies: Vec::new(),
            tls: None,
            strict_transport: false,
        }
    }
}

/// A quarter of the memory this process may use: the machine's, or its
/// cgroup's limit where that is lower (a container); 4 GiB where neither
/// can be read.
pub fn default_max_list_bytes() -> u64 {
    // Read once: `Config::default()` is cheap to call (the fuzz targets
    // make one per input).
    static QUARTER: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *QUARTER.get_or_init(|| {
        memory_available(|path| std::fs::read_to_string(path).ok()).map_or(4 << 30, |m| m / 4)
    })
}

/// The machine's memory (Linux `/proc/meminfo`), or the cgroup's limit
/// (v2 `memory.max`, v1 `memory.limit_in_bytes`) where lower; `read`
/// reads a file.
fn memory_available(read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    let total = read("/proc/meminfo").and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib << 10)
    });
    let mut files = vec![
        "/sys/fs/cgroup/memory.max".to_owned(),
        "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_owned(),
    ];
    // The process's own cgroup, e.g. `0::/system.slice/x.service` (v2) or
    // `4:memory:/docker/abc` (v1).
    for line in read("/proc/self/cgroup").unwrap_or_default().lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        match (controllers, path) {
            (Some(""), Some(path)) if path != "/" => {
                files.push(format!("/sys/fs/cgroup{path}/memory.max"));
            }
            (Some(c), Some(path)) if path != "/" && c.split(',').any(|c| c == "memory") => {
                files.push(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"));
            }
            _ => {}
        }
    }
    // "max" (v2) or a huge figure (v1) means no limit.
    let limit = files
        .iter()
        .filter_map(|f| read(f)?.trim().parse::<u64>().ok())
        .filter(|&b| b > 0 && b < 1 << 60)
        .min();
    match (total, limit) {
        (Some(t), Some(l)) => Some(t.min(l)),
        (t, l) => t.or(l),
    }
}

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Serving failed.
    #[error("serving HTTP failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Read buffer of one worker connection.
const READ_BUFFER: usize = 8 << 10;

/// Whether a line may be logged now about something a stranger can repeat
/// at will (connections refused, CSP reports, a worker's renames): one a
/// second at most, so none of them can fill the log. `last` is when the
/// last such line was logged, and becomes now when one may be.
pub(crate) fn log_due(last: &mut Option<std::time::Instant>) -> bool {
    let now = std::time::Instant::now();
    let due = last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
    if due {
        *last = Some(now);
    }
    due
}

/// Shared state of the HTTP handlers.
#[derive(Debug)]
pub struct AppState {
    pub(crate) coord: Arc<Coordinator>,
    pub(crate) config: Arc<Config>,
    stop: watch::Receiver<bool>,
    conns: Arc<ConnCounter>,
    /// Every TCP connection (see `listen`).
    tcp: Arc<listen::TcpStats>,
    /// One permit: large job bodies are read and parsed one at a time (see
    /// `api::create_job`).
    pub(crate) large_bodies: tokio::sync::Semaphore,
    /// Numbers factored, sampled each second, for the dashboard's chart.
    pub(crate) throughput: api::Throughput,
    /// Content Security Policy violations browsers reported.
    pub(crate) csp_reports: csp::Reports,
}

/// Counts connections (open worker connections; TLS handshakes in
/// progress), in total and per IP address.
#[derive(Debug, Default)]
pub(crate) struct ConnCounter {
    counts: std::sync::Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: std::collections::HashMap<std::net::IpAddr, usize>,
}

/// Which limit of a [`ConnCounter`] a connection would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    Total,
    PerIp,
}

/// Holds one connection's place; gives it back when dropped.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    counter: Arc<ConnCounter>,
    ip: std::net::IpAddr,
}

impl ConnCounter {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections counted now.
    pub(crate) fn open(&self) -> usize {
        self.counts().total
    }

    /// Counts a connection from `ip`, unless `max_total` are open already,
    /// or `max_per_ip` from that address (from its /64 for IPv6: see
    /// [`proxy::limit_key`]).
    pub(crate) fn acquire(
        self: &Arc<Self>,
        ip: std::net::IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Result<ConnSlot, Full> {
        let ip = proxy::limit_key(ip);
        let mut counts = self.counts();
        if counts.total >= max_total {
            return Err(Full::Total);
        }
        let n = counts.per_ip.entry(ip).or_default();
        if *n >= max_per_ip {
            return Err(Full::PerIp);
        }
        *n += 1;
        counts.total += 1;
        Ok(ConnSlot {
            counter: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut counts = self.counter.counts();
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
            counts.total -= 1;
        }
    }
}

/// Serves the coordinator on `listener` with an in-memory store until
/// `shutdown` completes, then closes worker connections and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    run_with_store(listener, config, Arc::new(MemoryStore::new()), shutdown).await
}

/// Like [`run`], over the given store, which it closes ([`Store::close`])
/// once the worker sessions have ended.
pub async fn run_with_store(
    listener: TcpListener,
    config: Config,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let coord = coordinator(&config, Arc::clone(&store))?;
    // The engine's tables (the verifying sieve's primes among them) are
    // built now, not while the first result waits for its check.
    drop(tokio::task::spawn_blocking(crowdfactor_factor::warm_up));
    let (stop_tx, stop_rx) = watch::channel(false);
    let sweep_every = (config.ack_timeout.min(config.lease_timeout) / 4)
        .clamp(Duration::from_millis(20), Duration::from_secs(1));
    let sweeper = {
        let coord = coord.clone();
        every(sweep_every, stop_rx.clone(), move || {
            coord.sweep(std::time::Instant::now());
        })
    };
    let retention = config
        .keep_finished
        .map(|keep| delete_finished_every(coord.clone(), keep, stop_rx.clone()));
    if !web::has_wasm() {
        tracing::warn!("this build has no wasm factorizer (web/pkg was not built): browsers cannot contribute; run scripts/build-wasm.sh and rebuild");
    }
    let state = app_state(coord, &config, stop_rx);
    // The chart of a dashboard opened now shows the last minutes too.
    let sampler = {
        let state = Arc::clone(&state);
        every(Duration::from_secs(1), state.stop.clone(), move || {
            state.throughput.record(
                crate::store::now_ms(),
                state
                    .coord
                    .metrics
                    .numbers
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
        })
    };
    let tcp = Arc::clone(&state.tcp);
    let sessions = Arc::clone(&state.conns);
    let app = router(state, &config);
    let addr = listener.local_addr()?;
    let limits = listen::Limits::of(&config);
    let mut stopped = stop_tx.subscribe();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: closing worker connections");
        let _ = stop_tx.send(true);
    };
    // A graceful stop waits for every response, and a slow client's
    // download could hold it for hours: past the grace, stop anyway (a job
    // upload cut off creates nothing, a download cut off is seen as short).
    let grace = config.shutdown_grace;
    let overdue = async move {
        let _ = stopped.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(grace).await;
        tracing::warn!(
            secs = grace.as_secs_f64(),
            "requests still open after the shutdown grace: stopping without them"
        );
    };
    let serving = async move {
        match config.tls {
            Some(tls) => {
                tracing::info!(%addr, "crowdfactor-server listening on https://{addr}/");
                let listener = tls::TlsListener::new(
                    listener,
                    tls,
                    config.handshake_timeout,
                    config.max_connections_per_ip,
                )?;
                let listener = axum::serve::ListenerExt::tap_io(
                    listen::Guarded::new(listener, limits, tcp),
                    |conn| set_nodelay(conn.get_ref().get_ref().0),
                );
                serve(listener, app, shutdown).await
            }
            None => {
                tracing::info!(%addr, "crowdfactor-server listening on http://{addr}/");
                let listener = axum::serve::ListenerExt::tap_io(
                    listen::Guarded::new(listener, limits, tcp),
                    |conn| set_nodelay(conn.get_ref()),
                );
                serve(listener, app, shutdown).await
            }
        }
    };
    let served = tokio::select! {
        served = serving => served,
        () = overdue => Ok(()),
    };
    sweeper.abort();
    sampler.abort();
    if let Some(retention) = retention {
        retention.abort();
    }
    // Worker sessions end on the stop signal (a result being checked is
    // stored first); then the store is made whole on disk for whoever
    // copies it next. A crash needs none of this: every accepted result is
    // committed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sessions.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = tokio::task::spawn_blocking(move || store.close()).await;
    served
}

/// The coordinator `config` describes, over `store`.
fn coordinator(config: &Config, store: Arc<dyn Store>) -> Result<Arc<Coordinator>, ServerError> {
    let timing = LeaseTiming {
        ack_timeout: config.ack_timeout,
        lease_timeout: config.lease_timeout,
        max_lease: config.max_lease,
    };
    let sizing = ChunkSizing {
        target: config.chunk_target,
        first: config.first_chunk,
        max: config.max_chunk_size.max(1),
        max_message_bytes: config.max_message_bytes,
    };
    Ok(Arc::new(
        Coordinator::new(store, timing, sizing)?.with_list_limit(config.max_list_bytes),
    ))
}

/// Runs `tick` every `period` (the first at once) until `stop` changes.
fn every(
    period: Duration,
    mut stop: watch::Receiver<bool>,
    mut tick: impl FnMut() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = interval.tick() => tick(),
                _ = stop.changed() => break,
            }
        }
    })
}

/// Deletes the jobs that ended `keep` ago or longer ([`Config::keep_finished`]),
/// now and then every tenth of `keep` (1 s to 1 h), off the async threads
/// (the store's calls block).
fn delete_finished_every(
    coord: Arc<Coordinator>,
    keep: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let period = (keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.changed() => break,
            }
            let coord = coord.clone();
            match tokio::task::spawn_blocking(move || coord.delete_finished(keep)).await {
                Ok(Ok(_)) => {}
                // Either way, tried again at the next tick.
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "deleting finished jobs past their retention failed");
                }
                Err(e) => tracing::error!(error = %e, "the retention sweep panicked"),
            }
        }
    })
}

fn app_state(
    coord: Arc<Coordinator>,
    config: &Config,
    stop: watch::Receiver<bool>,
) -> Arc<AppState> {
    Arc::new(AppState {
        coord,
        config: Arc::new(config.clone()),
        stop,
        conns: Arc::default(),
        tcp: Arc::default(),
        large_bodies: tokio::sync::Semaphore::new(1),
        throughput: api::Throughput::default(),
        csp_reports: csp::Reports::default(),
    })
}

/// The routes [`run`] serves (page, API, metrics), over `store`, for
/// requests made in-process instead of over a socket: the fuzz targets
/// send arbitrary requests through them. No sweeper runs, and `/ws` needs a
/// real connection (it answers 500 here, for want of the peer's address).
#[doc(hidden)]
pub fn routes(config: &Config, store: Arc<dyn Store>) -> Result<Router, ServerError> {
    let coord = coordinator(config, store)?;
    // Only worker sessions watch for the stop, and none run here.
    let (_, stop) = watch::channel(false);
    Ok(router(app_state(coord, config, stop), config))
}

/// Without TCP_NODELAY a small message written right after another (an
/// `idle` after an `accepted`) waits for the worker's delayed ACK, 40 ms.
fn set_nodelay(tcp: &tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::warn!(error = %e, "could not set TCP_NODELAY");
    }
}

/// Serves `app` on `listener` (plain or TLS) until `shutdown` completes.
async fn serve<L>(
    listener: L,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    listen::Peer:
        for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<listen::Peer>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}

fn router(state: Arc<AppState>, config: &Config) -> Router {
    let jobs = Router::new()
        .route("/jobs", get(api::list_jobs).post(api::create_job))
        .route(
            "/jobs/{id}",
            get(api::get_job)
                .delete(api::cancel_job)
                .patch(api::patch_job),
        )
        .route("/workers", get(api::list_workers))
        .route("/events", get(api::events))
        .route("/jobs/{id}/results", get(api::job_results))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_token,
        ));
    let api = Router::new()
        .merge(jobs)
        .route("/status", get(api::status))
        // Browsers send these without the token (see `csp`).
        .route("/csp-report", axum::routing::post(csp::report))
        .method_not_allowed_fallback(api::method_not_allowed)
        .fallback(api::no_such_endpoint)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::map_response(no_store));
    let metrics = Router::new()
        .route("/metrics", get(metrics::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_token,
        ));
    let app = Router::new()
        .nest("/api", api)
        // The nest does not match "/api/" (it went to the page's fallback).
        .route("/api/", axum::routing::any(api::no_such_endpoint))
        .merge(metrics)
        .route("/ws", get(ws_upgrade))
        .route("/dashboard", get(web::dashboard))
        .fallback(web::asset)
        .with_state(state);
    if config.tls.is_some() && config.strict_transport {
        app.layer(axum::middleware::map_response(strict_transport))
    } else {
        app
    }
}

/// Browsers that saw this over https use `https://` for the host from then
/// on (a year), even when a link says `http://` ([`Config::strict_transport`]).
async fn strict_transport(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        axum::http::header::STRICT_TRANSPORT_SECURITY,
        axum::http::HeaderValue::from_static("max-age=31536000"),
    );
    resp
}

/// API answers are live figures: browsers must not reuse them (Firefox
/// otherwise serves `/api/status` from its cache).
async fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .entry(axum::http::header::CACHE_CONTROL)
        .or_insert(axum::http::HeaderValue::from_static("no-store"));
    resp
}

async fn ws_upgrade(
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    ConnectInfo(conn): ConnectInfo<listen::Peer>,
    headers: axum::http::HeaderMap,
    State(state): State<Arc<AppState>>,
) -> Response {
    // Someone who followed a worker's --server address in a browser.
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(why) => {
            let message = format!(
                "/ws is where workers connect over WebSocket ({}): to contribute from a browser, \
                 open / instead; on a headless machine run crowdfactor-worker with --server set \
                 to this server's address",
                why.body_text()
            );
            return api::error_response(why.status(), "not_websocket", message, None);
        }
    };
    let peer = proxy::client_addr(conn.addr, &headers, &state.config.trusted_proxies);
    if let Some(left) = state.coord.banned_for(peer.ip()) {
        let message = format!(
            "this address sent too many wrong results; try again in {} s",
            left.as_secs() + 1
        );
        return api::error_response(StatusCode::FORBIDDEN, "banned", message, None);
    }
    let slot = match state.conns.acquire(
        peer.ip(),
        state.config.max_connections,
        state.config.max_connections_per_ip,
    ) {
        Ok(slot) => slot,
        Err(full) => {
            let why = match full {
                Full::Total => "the coordinator has as many workers as it accepts; try again later",
                Full::PerIp => "too many connections from this address",
            };
            tracing::warn!(%peer, why, "worker connection refused");
            return api::error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                why.to_owned(),
                None,
            );
        }
    };
    let (coord, config, stop) = (
        state.coord.clone(),
        state.config.clone(),
        state.stop.clone(),
    );
    upgrade
        .max_message_size(config.max_message_bytes)
        .max_frame_size(config.max_message_bytes)
        // tungstenite's default 128 KiB read buffer per connection would put
        // 10,000 idle workers over a gigabyte; frames are read in pieces.
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| async move {
            conn.input.start();
            ws::serve(socket, peer, &conn.input, coord, config, stop).await;
            drop(slot);
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-address cap counts an IPv6 /64 as one address and an
    /// IPv4-mapped peer as its IPv4 address; slots come back when dropped.
    #[test]
    fn connections_are_counted_per_address_and_ipv6_network() {
        let counter = Arc::new(ConnCounter::default());
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("an address");
        let take = |s: &str| counter.acquire(ip(s), 10, 2);
        let a = take("2001:db8:1:2::1").expect("first");
        let _b = take("2001:db8:1:2:ffff::9").expect("second");
        assert_eq!(take("2001:db8:1:2::3").err(), Some(Full::PerIp));
        let _c = take("2001:db8:1:3::1").expect("another network");
        let _d = take("192.0.2.1").expect("IPv4");
        let _e = take("::ffff:192.0.2.1").expect("IPv4 again");
        assert_eq!(take("192.0.2.1").err(), Some(Full::PerIp));
        drop(a);
        let _f = take("2001:db8:1:2::3").expect("a slot came back");
        assert_eq!(counter.open(), 5);
        assert_eq!(
            counter.acquire(ip("198.51.100.1"), 5, 2).err(),
            Some(Full::Total)
        );
    }

    /// The machine's memory, or its cgroup's limit where lower: v2 or v1,
    /// at the root or at the process's own cgroup; "max" and v1's huge
    /// figure mean none.
    #[test]
    fn memory_is_the_machine_s_or_the_cgroup_s_limit() {
        let meminfo = "MemTotal:       24683652 kB\nMemFree: 1 kB\n";
        let machine = 24_683_652u64 << 10;
        let with = |files: &[(&str, &str)]| {
            let files: std::collections::HashMap<String, String> = files
                .iter()
                .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
                .collect();
            memory_available(|p| files.get(p).cloned())
        };
        assert_eq!(with(&[("/proc/meminfo", meminfo)]), Some(machine));
        let v1_self = [
            ("/proc/meminfo", meminfo),
            ("/proc/self/cgroup", "5:cpu:/\n4:memory:/docker/abc\n0::/\n"),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
                "2147483648\n",
            ),
        ];
        assert_eq!(with(&v1_self), Some(2 << 30));
        let v2_self = [
            ("/proc/meminfo", meminfo),
            (
                "/proc/self/cgroup",
                "0::/system.slice/crowdfactor.service\n",
            ),
            ("/sys/fs/cgroup/memory.max", "max\n"),
            (
                "/sys/fs/cgroup/system.slice/crowdfactor.service/memory.max",
                "1073741824\n",
            ),
        ];
        assert_eq!(with(&v2_self), Some(1 << 30));
        let unlimited = [
            ("/proc/meminfo", meminfo),
            ("/sys/fs/cgroup/memory.max", "max\n"),
        ];
        assert_eq!(with(&unlimited), Some(machine));
        assert_eq!(with(&[]), None);
        assert!(default_max_list_bytes() > 0);
    }
}

//! `crowdfactor-server`: the coordinator binary (all serving logic lives in
//! the library) and the job owner's client subcommands.
#![allow(clippy::print_stdout)] // the client subcommands print their answers

mod client;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use crowdfactor_process::{hangup_ignored, init_logs, keep_heap_slack, LogFormat};
use crowdfactor_server::Config;

/// crowdfactor coordinator: holds factoring jobs, cuts them into chunks and
/// pushes them to native and browser workers over WebSockets.
///
/// Open http://<listen>/ in a browser to contribute from that machine; run
/// `crowdfactor-worker --server ws://<listen>/ws` on headless ones.
///
/// Without a subcommand it serves; the subcommands talk to a running server
/// (but `compact`, which works on a stopped one's database).
///
/// Examples:
///   crowdfactor-server                                  # serve on 127.0.0.1:8080
///   crowdfactor-server --listen 0.0.0.0:8080 --db /var/lib/crowdfactor.db
///   crowdfactor-server submit --range 999999999999 1000 --step 2 --watch
///   crowdfactor-server results 1 --format csv -o factors.csv
///   crowdfactor-server compact --db /var/lib/crowdfactor.db   # server stopped
///
/// Exit codes: 0 success; 1 cannot listen, open the database or read a
/// local file; 2 bad command line; 3 the server refused the request (bad
/// input, unknown job, wrong token); 4 the server could not be reached.
#[derive(Debug, clap::Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    conn: client::Conn,
    /// Address and port to listen on: 127.0.0.1:8080 (this machine only),
    /// 0.0.0.0:8080 or :8080 (every interface), [::]:8080, localhost:8080, or
    /// a host name of this machine (port 0: any free port).
    #[arg(long, env = "CROWDFACTOR_LISTEN", default_value = "127.0.0.1:8080", value_parser = listen_address)]
    listen: SocketAddr,
    /// Seconds one chunk should take on one worker thread. Chunks are cut for
    /// each worker from its measured speed, within --max-chunk-size and the
    /// job's own chunk_size cap.
    #[arg(long, env = "CROWDFACTOR_CHUNK_SECONDS", default_value = "2", value_parser = seconds, allow_negative_numbers = true)]
    chunk_seconds: Duration,
    /// Most numbers in one chunk.
    #[arg(long, env = "CROWDFACTOR_MAX_CHUNK_SIZE", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_chunk_size: u32,
    /// Seconds a worker may stay silent before its chunks are leased again.
    #[arg(long, env = "CROWDFACTOR_LEASE_TIMEOUT", default_value = "30", value_parser = seconds, allow_negative_numbers = true)]
    lease_timeout: Duration,
    /// Seconds allowed between assigning a chunk and the worker's ack.
    #[arg(long, env = "CROWDFACTOR_ACK_TIMEOUT", default_value = "10", value_parser = seconds, allow_negative_numbers = true)]
    ack_timeout: Duration,
    /// Seconds a stop (SIGTERM, Ctrl-C) waits for requests still in flight,
    /// such as a results download, before exiting without them.
    #[arg(long, env = "CROWDFACTOR_SHUTDOWN_GRACE", default_value = "10", value_parser = seconds, allow_negative_numbers = true)]
    shutdown_grace: Duration,
    /// SQLite database holding jobs and results (created if missing; another
    /// program's database is refused and left as it was).
    #[arg(long, env = "CROWDFACTOR_DB", default_value = "crowdfactor.db")]
    db: std::path::PathBuf,
    /// Keep everything in memory instead (lost when the server stops).
    #[arg(long, env = "CROWDFACTOR_IN_MEMORY", conflicts_with = "db")]
    in_memory: bool,
    /// Bearer token for the job API. Default: generated on first start, printed
    /// once and stored next to the database as <db>.token.
    #[arg(long, env = "CROWDFACTOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Require this token from workers (`crowdfactor-worker --token`, or
    /// `?token=` in the page URL). Default: anyone may contribute.
    #[arg(long, env = "CROWDFACTOR_WORKER_TOKEN", hide_env_values = true)]
    worker_token: Option<String>,
    /// Delete jobs that ended (done or cancelled) this long ago, with their
    /// numbers and results, e.g. 30d, 12h, 90m or 45s [default: keep them
    /// until deleted by hand].
    #[arg(long, env = "CROWDFACTOR_KEEP_FINISHED", value_name = "DURATION", value_parser = duration)]
    keep_finished: Option<Duration>,
    /// Largest job, in numbers.
    #[arg(long, env = "CROWDFACTOR_MAX_NUMBERS", default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_numbers_per_job: u64,
    /// Most MiB the numbers of open list jobs may take together (8 bytes
    /// per number below 2^64, 16 above; ranges take none). A job that would
    /// pass it is refused (503) until others finish [default: a quarter of
    /// the machine's memory, or of the container's limit]
    #[arg(
        long,
        env = "CROWDFACTOR_MAX_LIST_MEMORY",
        value_name = "MIB",
        value_parser = clap::value_parser!(u64).range(1..=1 << 40)
    )]
    max_list_memory: Option<u64>,
    /// Most worker connections at once [default: 20000, or fewer if the
    /// open-file limit (`ulimit -n`, raised to its hard limit at start) is
    /// lower: each connection is a file descriptor].
    #[arg(long, env = "CROWDFACTOR_MAX_CONNECTIONS", value_parser = at_least_one)]
    max_connections: Option<usize>,
    /// Most worker connections at once from one IP address.
    #[arg(
        long,
        env = "CROWDFACTOR_MAX_CONNECTIONS_PER_IP",
        default_value_t = 256,
        value_parser = at_least_one
    )]
    max_connections_per_ip: usize,
    /// Most MiB of worker input held in partial messages, all connections
    /// together; past it, connections with a large message in progress are
    /// closed (so stalled uploads cannot exhaust memory). Fit it to the
    /// machine: one full result message is at most 4 MiB.
    #[arg(
        long,
        env = "CROWDFACTOR_MAX_BUFFERED_INPUT",
        value_name = "MIB",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u64).range(16..=1 << 30)
    )]
    max_buffered_input: u64,
    /// A reverse proxy in front of the server (e.g. terminating TLS) whose
    /// X-Forwarded-For (or Forwarded) header names the worker: per-address limits and bans
    /// then apply to the worker, not to the proxy. An address or a network
    /// (10.0.0.0/8); repeat for several, or comma-separate in the environment
    /// variable.
    #[arg(long, env = "CROWDFACTOR_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxy: Vec<crowdfactor_server::proxy::AddrRange>,
    /// Serve https and wss with this PEM certificate chain (e.g. an ACME
    /// client's fullchain.pem) instead of plain http; needs --tls-key. Read
    /// at start and again on SIGHUP (after renewing it).
    #[arg(long, env = "CROWDFACTOR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "CROWDFACTOR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Also listen for plain http here and redirect every request to https
    /// on --listen's port (e.g. 0.0.0.0:80 beside --listen 0.0.0.0:443);
    /// needs --tls-cert. The https answers then carry
    /// Strict-Transport-Security (a year).
    #[arg(
        long,
        env = "CROWDFACTOR_REDIRECT_HTTP",
        requires = "tls_cert",
        value_name = "ADDR",
        value_parser = listen_address
    )]
    redirect_http: Option<SocketAddr>,
    /// Log lines as text, or as JSON (one object per line, for log
    /// collectors). Levels from RUST_LOG (default info).
    #[arg(
        long,
        env = "CROWDFACTOR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    #[command(flatten)]
    Client(client::Command),
    /// Shrink the database (--db) to what it holds, with the server stopped.
    ///
    /// Deleting jobs frees room inside the database file; a server gives it
    /// back to the file system by itself, but a database made by an older
    /// server keeps it for new results instead. This rewrites the file
    /// without it (it needs about twice the database's size of free disk
    /// while it runs) and makes the database give room back by itself from
    /// then on. A database made before 16 KiB pages gets them (fewer writes
    /// per result).
    Compact {
        /// The database (default: --db before `compact`, CROWDFACTOR_DB,
        /// else ./crowdfactor.db).
        #[arg(long)]
        db: Option<std::path::PathBuf>,
    },
}

/// The command line. `--url` and `--api-token` go with the subcommands,
/// before or after their name; the serving flags (`--listen`, `--db`, …)
/// mean nothing to a subcommand and are refused with one (exit 2) rather
/// than ignored.
fn parse_args() -> Args {
    use clap::{CommandFactory, FromArgMatches};
    let cmd = Args::command();
    let matches = cmd.clone().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some((sub, _)) = matches.subcommand() {
        let serving = cmd
            .get_arguments()
            .map(|a| a.get_id().as_str())
            .find(|&id| {
                let theirs = match sub {
                    "compact" => id == "db",
                    _ => matches!(id, "url" | "api_token"),
                };
                !theirs && matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
            });
        if let Some(id) = serving {
            cmd.clone()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "--{} is for serving; it cannot be used with `{sub}`",
                        id.replace('_', "-")
                    ),
                )
                .exit();
        }
    }
    args
}

/// `crowdfactor-server compact`: says what it gave back; exit 1 if it could
/// not (a server has the database open, no such file).
fn compact(db: &std::path::Path) -> ExitCode {
    use crowdfactor_server::store::StoreError;
    if !db.is_file() {
        eprintln!(
            "crowdfactor-server: there is no database at {} (give its path with --db)",
            db.display()
        );
        return ExitCode::from(1);
    }
    match crowdfactor_server::sqlite::compact(db) {
        Ok(done) => {
            let mib = |b: u64| b as f64 / f64::from(1 << 20);
            let pages = if done.page_size_before == done.page_size_after {
                String::new()
            } else {
                format!(
                    "; pages of {} KiB (were {} KiB), fewer writes per result",
                    done.page_size_after >> 10,
                    done.page_size_before >> 10
                )
            };
            println!(
                "{}: {:.1} MiB → {:.1} MiB{pages}{}",
                db.display(),
                mib(done.before),
                mib(done.after),
                if done.was_shrinking {
                    ""
                } else {
                    "; from now on it gives the room of deleted jobs back by itself"
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let then = match e {
                StoreError::InUse { .. } => ": stop it first",
                _ => "",
            };
            eprintln!(
                "crowdfactor-server: cannot compact {}: {e}{then}",
                db.display()
            );
            ExitCode::from(1)
        }
    }
}

/// A command-line duration in (possibly fractional) seconds, positive: every
/// one here is a target, timeout or deadline, and zero would make leases
/// lapse at once and chunks one number long.
fn seconds(arg: &str) -> Result<Duration, SecondsError> {
    let v: f64 = arg.trim().parse().map_err(|_| SecondsError)?;
    positive_seconds(v).ok_or(SecondsError)
}

/// `secs` as a duration, if positive and finite.
fn positive_seconds(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
}

#[derive(Debug, thiserror::Error)]
#[error("expected a positive number of seconds, such as 2 or 0.5")]
struct SecondsError;

/// A positive duration as a number and a unit: `30d`, `1.5h`, `90m`, `45s`.
fn duration(arg: &str) -> Result<Duration, DurationError> {
    let arg = arg.trim();
    let unit = match arg.chars().last() {
        Some('s') => 1.0,
        Some('m') => 60.0,
        Some('h') => 3600.0,
        Some('d') => 86_400.0,
        _ => return Err(DurationError),
    };
    let v: f64 = arg[..arg.len() - 1]
        .trim()
        .parse()
        .map_err(|_| DurationError)?;
    positive_seconds(v * unit).ok_or(DurationError)
}

#[derive(Debug, thiserror::Error)]
#[error("expected a positive number and a unit (d, h, m or s), such as 30d, 12h, 90m or 45s")]
struct DurationError;

/// An address to listen on: `IP:PORT` (`[IPv6]:PORT`), `:PORT` for every
/// IPv4 interface (as Go servers read it), or `HOST:PORT` with the host name
/// resolved, its first IPv4 address preferred (`localhost` is 127.0.0.1,
/// which browsers reach as localhost too, not ::1 alone).
fn listen_address(arg: &str) -> Result<SocketAddr, String> {
    use std::net::{Ipv4Addr, ToSocketAddrs};
    let arg = arg.trim();
    if let Ok(addr) = arg.parse() {
        return Ok(addr);
    }
    const EXAMPLES: &str = "an address and a port, such as 127.0.0.1:8080 (this machine only), 0.0.0.0:8080 or :8080 (every interface), [::]:8080 or localhost:8080";
    if arg.contains('[') || arg.matches(':').count() > 1 {
        return Err(
            "expected an IPv6 address in brackets and a port, such as [::1]:8080 or [::]:8080"
                .to_owned(),
        );
    }
    let Some((host, port)) = arg.rsplit_once(':') else {
        return Err(format!("expected {EXAMPLES}"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port (0 to 65535); expected {EXAMPLES}"))?;
    if host.is_empty() {
        return Ok((Ipv4Addr::UNSPECIFIED, port).into());
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok((Ipv4Addr::LOCALHOST, port).into());
    }
    let found: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the host name {host:?} ({e}); expected {EXAMPLES}"))?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| format!("the host name {host:?} has no address; expected {EXAMPLES}"))
}

/// A connection limit: 0 would refuse every worker.
fn at_least_one(arg: &str) -> Result<usize, String> {
    match arg.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number, at least 1".to_owned()),
    }
}

fn main() -> ExitCode {
    keep_heap_slack();
    // Read before anything watches SIGHUP.
    hangup_ignored();
    serve()
}

/// Descriptors kept for everything but connections: the database, its
/// journal and lock, listeners, the runtime, logs.
const RESERVED_FDS: u64 = 64;

/// Raises the soft limit on open files to the hard one (shells and systemd
/// start services at 1,024, which would cap the server near a thousand
/// connections whatever `--max-connections` says; Go, nginx and others do
/// the same). Returns the limit in force, if known.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn raise_open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    Some(lim.rlim_cur)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn raise_open_file_limit() -> Option<u64> {
    None
}

/// Fits the connection limits to the open-file limit, keeping room for
/// pages and API calls beside the workers; warns when that lowers the
/// number of workers the operator asked for (`asked`; the default is
/// lowered quietly).
fn fit_connections_to_fd_limit(config: &mut Config, asked: bool) {
    let Some(limit) = raise_open_file_limit() else {
        return;
    };
    let room = usize::try_from(limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    config.max_open_connections = config.max_open_connections.min(room);
    let workers = room
        .saturating_sub(crowdfactor_server::HTTP_HEADROOM)
        .max(room / 2);
    if config.max_connections > workers {
        if asked {
            tracing::warn!(
                "this process may open only {limit} files: at most {workers} workers \
                 (--max-connections {}) and {room} connections in all; raise `ulimit -n` \
                 (LimitNOFILE= for a systemd service) for more",
                config.max_connections
            );
        } else {
            tracing::info!(limit, workers, "workers limited by the open-file limit");
        }
        config.max_connections = workers;
    }
}

#[tokio::main]
async fn serve() -> ExitCode {
    let mut args = parse_args();
    init_logs(args.log_format);
    match args.command.take() {
        Some(Sub::Client(cmd)) => return ExitCode::from(client::run(args.conn, cmd).await),
        Some(Sub::Compact { db }) => return compact(db.as_deref().unwrap_or(&args.db)),
        None => {}
    }
    // Checked here, not by clap, whose error would print the secret (and
    // CROWDFACTOR_TOKEN is also what the subcommands send). The ends are
    // trimmed: a token read from a file may end in a line break.
    args.token = args.token.map(|t| t.trim().to_owned());
    if let Some(at) = args.token.as_deref().and_then(unsendable_token_char) {
        eprintln!(
            "crowdfactor-server: character {at} of --token (or CROWDFACTOR_TOKEN) cannot be sent \
             in an Authorization header: use printable ASCII without spaces"
        );
        return ExitCode::from(2);
    }
    // The documented default unless given (then fitted to the open-file limit).
    let max_connections = args
        .max_connections
        .unwrap_or(Config::default().max_connections);
    let mut config = Config {
        chunk_target: args.chunk_seconds,
        max_chunk_size: args.max_chunk_size,
        lease_timeout: args.lease_timeout,
        ack_timeout: args.ack_timeout,
        shutdown_grace: args.shutdown_grace,
        max_numbers_per_job: args.max_numbers_per_job,
        max_list_bytes: args
            .max_list_memory
            .map_or_else(crowdfactor_server::default_max_list_bytes, |mib| mib << 20),
        max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
        max_buffered_input: usize::try_from(args.max_buffered_input << 20).unwrap_or(usize::MAX),
        max_open_connections: max_connections.saturating_add(crowdfactor_server::HTTP_HEADROOM),
        worker_token: args
            .worker_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        trusted_proxies: args.trusted_proxy.clone(),
        strict_transport: args.redirect_http.is_some(),
        keep_finished: args.keep_finished,
        ..Config::default()
    };
    fit_connections_to_fd_limit(&mut config, args.max_connections.is_some());
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let files = crowdfactor_server::tls::CertFiles::open(cert, key);
        match files.and_then(|f| Ok((f.server_config()?, f))) {
            Ok((tls, files)) => {
                config.tls = Some(tls);
                reload_on_sighup(files);
            }
            Err(e) => {
                eprintln!("crowdfactor-server: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "crowdfactor-server: cannot listen on {}: {e} (is another server running? try --listen 127.0.0.1:0)",
                args.listen
            );
            return ExitCode::from(1);
        }
    };
    let redirect = match args.redirect_http {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("crowdfactor-server: cannot listen on {addr} (--redirect-http): {e}");
                return ExitCode::from(1);
            }
        },
    };
    let store: std::sync::Arc<dyn crowdfactor_server::store::Store> = if args.in_memory {
        std::sync::Arc::new(crowdfactor_server::store::MemoryStore::new())
    } else {
        match crowdfactor_server::sqlite::open_store(&args.db) {
            Ok(s) => {
                tracing::info!(db = %args.db.display(), "store opened");
                s
            }
            Err(e) => {
                eprintln!(
                    "crowdfactor-server: cannot open the database {}: {e}",
                    args.db.display()
                );
                return ExitCode::from(1);
            }
        }
    };
    config.api_token = match api_token(&args) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("crowdfactor-server: cannot set up the API token: {e}");
            return ExitCode::from(1);
        }
    };
    if let (Some(redirect), Ok(https)) = (redirect, listener.local_addr()) {
        if let Ok(from) = redirect.local_addr() {
            tracing::info!(%from, "redirecting http://{from}/ to https on port {}", https.port());
        }
        let limits = config.clone();
        tokio::spawn(async move {
            if let Err(e) =
                crowdfactor_server::tls::redirect_to_https(redirect, https.port(), &limits).await
            {
                tracing::error!(error = %e, "the http-to-https redirect stopped");
            }
        });
    }
    // SIGHUP reloads the certificate of a TLS server; it stops any other,
    // unless started with SIGHUP ignored (nohup).
    let hangup_stops = config.tls.is_none() && !hangup_ignored();
    match crowdfactor_server::run_with_store(listener, config, store, shutdown_signal(hangup_stops))
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// Reads the certificate and key again on each SIGHUP (after a renewal:
/// `systemctl reload`, or an ACME client's deploy hook); a failed reload
/// keeps serving the previous certificate.
fn reload_on_sighup(files: std::sync::Arc<crowdfactor_server::tls::CertFiles>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch for SIGHUP: the TLS certificate is not reloaded");
                return;
            }
        };
        while hup.recv().await.is_some() {
            match files.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded; still serving the previous one")
                }
            }
        }
    });
    #[cfg(not(unix))]
    drop(files);
}

/// Where `--token` holds a character an `Authorization` header cannot
/// carry (printable ASCII only; browsers refuse to send other characters
/// there, and a space would split it): its position, from 1.
fn unsendable_token_char(token: &str) -> Option<usize> {
    token
        .chars()
        .position(|c| !c.is_ascii_graphic())
        .map(|i| i + 1)
}

/// The API token: --token, else the one stored next to the database (created
/// and printed once), else (in memory) a fresh one printed at every start.
fn api_token(args: &Args) -> std::io::Result<String> {
    if let Some(t) = args.token.as_ref().filter(|t| !t.is_empty()) {
        return Ok(t.clone());
    }
    if args.in_memory {
        let token = crowdfactor_server::auth::generate_token().map_err(std::io::Error::other)?;
        eprintln!("crowdfactor-server: API token for this run: {token}");
        return Ok(token);
    }
    let mut path = args.db.clone().into_os_string();
    path.push(".token");
    let path = std::path::PathBuf::from(path);
    let (token, created) = crowdfactor_server::auth::load_or_create_token(&path)?;
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(&path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{mode:o}").as_str(),
                "other users can read the API token file: `chmod 600` it (the server creates it so)"
            );
        }
    }
    if created {
        eprintln!(
            "crowdfactor-server: generated the API token {token}\n  (stored in {}; use it as `Authorization: Bearer <token>`)",
            path.display()
        );
    }
    Ok(token)
}

/// Ctrl-C, SIGTERM, or (`hangup`) SIGHUP: the terminal the server runs in
/// was closed. With TLS, SIGHUP reloads the certificate instead.
async fn shutdown_signal(hangup: bool) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::SignalKind;
        let hup = async {
            if hangup {
                signal_received(SignalKind::hangup()).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            () = signal_received(SignalKind::terminate()) => {},
            () = hup => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = hangup;
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Returns when the process gets `kind` (never, if it cannot be watched).
#[cfg(unix)]
async fn signal_received(kind: tokio::signal::unix::SignalKind) {
    match tokio::signal::unix::signal(kind) {
        Ok(mut s) => drop(s.recv().await),
        Err(_) => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_read_as_people_write_them() {
        let ok = |s: &str| listen_address(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let addr = |s: &str| -> SocketAddr { s.parse().expect("an address") };
        assert_eq!(ok("127.0.0.1:8080"), addr("127.0.0.1:8080"));
        assert_eq!(ok("[::]:443"), addr("[::]:443"));
        assert_eq!(ok(":8080"), addr("0.0.0.0:8080"));
        assert_eq!(ok("localhost:0"), addr("127.0.0.1:0"));
        assert_eq!(ok("LocalHost:9"), addr("127.0.0.1:9"));
        for (bad, says) in [
            ("8080", "expected an address and a port"),
            ("127.0.0.1", "expected an address and a port"),
            ("localhost:http", "\"http\" is not a port"),
            (":65536", "\"65536\" is not a port"),
            ("::1", "IPv6 address in brackets"),
            ("[::1]", "IPv6 address in brackets"),
            ("[::1]:x", "IPv6 address in brackets"),
        ] {
            let err = listen_address(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
            assert!(err.contains(":8080"), "{bad}: {err}");
        }
    }
}

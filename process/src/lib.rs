//! Process set-up shared by the two binaries, `crowdfactor-server` and
//! `crowdfactor-worker` (and the load bench, which runs the engine as the
//! worker does): their logs, their malloc tuning, and whether they were
//! started with SIGHUP ignored. Nothing here is part of the protocol or the
//! engine; it is what each `main` does before its real work.

use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal (unless `NO_COLOR` is
    /// set).
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// Logs to stderr in `format`, at the levels `RUST_LOG` asks (default
/// info). Call once, early in `main`.
pub fn init_logs(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr a closed pipe, the
        // terminal of a session that ended) is dropped: by default the
        // subscriber reports it with eprintln!, which panics there.
        .log_internal_errors(false);
    match format {
        // Colour codes only on a terminal: a log file or journal gets plain text.
        LogFormat::Text => logs
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .init(),
        LogFormat::Json => logs.json().flatten_event(true).with_ansi(false).init(),
    }
}

/// Keeps 16 MiB of slack at the top of each malloc heap. glibc's malloc
/// gives the free top of a thread's heap back to the kernel as soon as
/// about 128 KiB of it is free. A chunk's result is buffers of hundreds of
/// KiB to a few MiB, allocated and freed every few milliseconds, so without
/// slack every chunk took fresh zeroed pages from the kernel (page faults
/// and heap-growing `mprotect`s: 297 of those in the server on the 10^6
/// seed job, 27 with slack). The slack took that job from 0.35 to 0.32 s
/// (medians of six interleaved runs; server CPU 0.31 → 0.26 s) with server
/// and worker both doing it, and the worker's system time on it from 0.07
/// to 0.03 s. Call first thing in `main`, before any other thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn keep_heap_slack() {
    // SAFETY: mallopt only sets a malloc tuning parameter (its callers
    // call it first in `main`, before any other thread exists). A failure
    // (0) leaves the default.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, 16 << 20);
    }
}

/// Keeps 16 MiB of slack at the top of each malloc heap: glibc only, a
/// no-op elsewhere.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_heap_slack() {}

/// Whether SIGHUP was ignored when the process started, as `nohup` leaves
/// it: then a closed terminal must not stop the process (watching the
/// signal would replace the inherited disposition). Read once, on the
/// first call, which must come before anything watches SIGHUP; later calls
/// return the same answer.
pub fn hangup_ignored() -> bool {
    static IGNORED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IGNORED.get_or_init(hangup_ignored_now)
}

/// Whether SIGHUP is ignored now.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn hangup_ignored_now() -> bool {
    // SAFETY: with a null new action, sigaction only reads the current one
    // into `old`, a plain struct it fully writes on success.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn hangup_ignored_now() -> bool {
    false
}

//! `GET /metrics` in the Prometheus text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;

pub(crate) async fn metrics(
    State(state): State<Arc<AppState>>,
) -> Result<impl IntoResponse, crate::api::AppError> {
    let coord = &state.coord;
    let m = &coord.metrics;
    let g = coord.gauges();
    // Open jobs, and those done in the last ten minutes (so a scrape sees
    // them reach their total; a cancelled one never will): a series per job
    // ever run would grow without bound. Read off the async threads.
    let shared = Arc::clone(coord);
    let jobs = crate::api::blocking(move || {
        let store = shared.store();
        let recent = crate::store::now_ms().saturating_sub(10 * 60 * 1000);
        let mut jobs = store.active_jobs()?;
        let done = store.ended_during(recent..u64::MAX)?;
        jobs.extend(done.into_iter().filter(|j| !j.cancelled));
        jobs.sort_unstable_by_key(|j| j.id);
        Ok::<_, crate::store::StoreError>(jobs)
    })
    .await?;
    let mut out = String::with_capacity(2048 + jobs.len() * 160);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            // For a summary the "labels" slot carries the _sum/_count suffix.
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    metric(
        "crowdfactor_workers_connected",
        "gauge",
        "Connected workers by kind.",
        &[
            ("{kind=\"native\"}", g.native as f64),
            ("{kind=\"browser\"}", g.browser as f64),
        ],
    );
    metric(
        "crowdfactor_workers_idle",
        "gauge",
        "Connected workers asking for no chunks: paused by their volunteer, or browser tabs waiting while another tab of their browser contributes.",
        &[
            ("{reason=\"paused\"}", g.paused as f64),
            ("{reason=\"waiting\"}", g.waiting as f64),
        ],
    );
    metric(
        "crowdfactor_numbers_queued",
        "gauge",
        "Numbers waiting for a worker (chunks are cut when leased).",
        &[("", g.queued as f64)],
    );
    metric(
        "crowdfactor_list_memory_bytes",
        "gauge",
        "Memory the numbers of open list jobs take (ranges take none).",
        &[("", g.list_bytes as f64)],
    );
    metric(
        "crowdfactor_list_memory_limit_bytes",
        "gauge",
        "The most the numbers of open list jobs may take (--max-list-memory).",
        &[("", g.list_limit as f64)],
    );
    metric(
        "crowdfactor_chunks_in_flight",
        "gauge",
        "Chunks leased to workers now.",
        &[("", g.leased as f64)],
    );
    for (name, help, v) in [
        (
            "crowdfactor_chunks_leased_total",
            "Chunks handed to workers.",
            m.leased.load(Relaxed),
        ),
        (
            "crowdfactor_chunks_acked_total",
            "Assignments acknowledged by workers.",
            m.acked.load(Relaxed),
        ),
        (
            "crowdfactor_chunks_completed_total",
            "Chunks whose verified results were stored.",
            m.completed.load(Relaxed),
        ),
        (
            "crowdfactor_chunks_requeued_total",
            "Chunks put back in the queue.",
            g.requeued,
        ),
        (
            "crowdfactor_chunks_rejected_total",
            "Results that failed verification.",
            m.rejected.load(Relaxed),
        ),
        (
            "crowdfactor_messages_throttled_total",
            "Worker messages that changed nothing, read late: past a connection's allowance of 100 a second.",
            m.throttled.load(Relaxed),
        ),
        (
            "crowdfactor_numbers_factored_total",
            "Numbers with accepted results.",
            m.numbers.load(Relaxed),
        ),
        (
            "crowdfactor_workers_slow_dropped_total",
            "Workers dropped for not reading: a write to them waited the write timeout.",
            m.slow_readers.load(Relaxed),
        ),
        (
            "crowdfactor_store_failures_total",
            "Results the store failed to record (disk full, I/O error); leasing pauses after each.",
            m.store_failures.load(Relaxed),
        ),
    ] {
        metric(name, "counter", help, &[("", v as f64)]);
    }
    metric(
        "crowdfactor_csp_reports_total",
        "counter",
        "Reports from browsers that the page's Content Security Policy blocked something (logged once a second at most).",
        &[("", state.csp_reports.received.load(Relaxed) as f64)],
    );
    let tcp = &state.tcp;
    metric(
        "crowdfactor_connections_open",
        "gauge",
        "TCP connections open now, of every kind (page, API, workers).",
        &[("", tcp.counter.open() as f64)],
    );
    metric(
        "crowdfactor_connections_refused_total",
        "counter",
        "TCP connections closed as they arrived, by the limit they would have passed.",
        &[
            (
                "{limit=\"per_address\"}",
                tcp.refused_per_ip.load(Relaxed) as f64,
            ),
            ("{limit=\"total\"}", tcp.refused_total.load(Relaxed) as f64),
        ],
    );
    metric(
        "crowdfactor_connections_idle_closed_total",
        "counter",
        "TCP connections closed after moving no byte for 1.5 times the idle timeout.",
        &[("", tcp.idle_closed.load(Relaxed) as f64)],
    );
    metric(
        "crowdfactor_input_buffered_bytes",
        "gauge",
        "WebSocket input read and not yet made into whole messages, all connections.",
        &[("", tcp.buffered.load(Relaxed) as f64)],
    );
    metric(
        "crowdfactor_connections_buffer_closed_total",
        "counter",
        "Connections closed for reading more of a large message while the input buffered in partial messages was past its limit.",
        &[("", tcp.buffer_closed.load(Relaxed) as f64)],
    );
    let writes = m.store_writes.load(Relaxed);
    metric(
        "crowdfactor_store_write_seconds",
        "summary",
        "Time to durably store one chunk's results (includes waiting for the group commit).",
        &[
            ("_sum", m.store_write_us.load(Relaxed) as f64 / 1e6),
            ("_count", writes as f64),
        ],
    );
    metric(
        "crowdfactor_store_write_max_seconds",
        "gauge",
        "Longest store write since start.",
        &[("", m.store_write_max_us.load(Relaxed) as f64 / 1e6)],
    );
    let _ = writeln!(
        out,
        "# HELP crowdfactor_job_numbers Numbers per open job (or done in the last 10 minutes), total and done.\n# TYPE crowdfactor_job_numbers gauge"
    );
    for j in jobs {
        let _ = writeln!(
            out,
            "crowdfactor_job_numbers{{job=\"{}\",what=\"total\"}} {}",
            j.id, j.total
        );
        let _ = writeln!(
            out,
            "crowdfactor_job_numbers{{job=\"{}\",what=\"done\"}} {}",
            j.id, j.done
        );
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

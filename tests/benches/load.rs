//! Load benchmark of the coordinator (not a timed test; `scripts/bench-load.sh`).
//!
//! Runs the release `crowdfactor-server` as a separate process and measures,
//! over real WebSockets on loopback:
//! 1. chunk round trips per second (assign → ack → result → verified, stored,
//!    accepted) with many simulated workers that answer at once, on the SQLite
//!    store and on the memory store, and numbers per second with adaptive chunks;
//! 2. the same round trips through the classic Python manager pattern
//!    (`classic_manager.py`), measured in the same run;
//! 3. server memory per connected idle worker;
//! 4. a range job through the coordinator and one real `crowdfactor-worker`,
//!    against the engine alone on the same numbers and threads (sieving the
//!    range as the worker does, where it applies): on every
//!    core, and with one core left to the coordinator (the worker and the
//!    coordinator pinned to their cores with `taskset`, as on two machines,
//!    and also left to the kernel); three jobs submitted
//!    to a worker already connected (median), and one with the worker
//!    started after it (its start-up and connection included).
//!
//! `--quick` shrinks every workload so CI can check that it runs.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a bench binary: its report is its output

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crowdfactor_e2e::{bin, free_port, proc_stat, temp_dir};
use crowdfactor_protocol::{
    ClientMessage, Hello, ResultWriter, ServerMessage, WorkerKind, PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "bench-token";

struct Server {
    child: Child,
    port: u16,
    http: reqwest::Client,
}

impl Server {
    async fn start(extra: &[&str]) -> Server {
        Server::start_on(extra, None).await
    }

    /// [`Server::start`] on the CPUs `cpus` (a `taskset` list) when given.
    async fn start_on(extra: &[&str], cpus: Option<&str>) -> Server {
        let port = free_port();
        let child = on_cpus(&bin("crowdfactor-server"), cpus)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--token", TOKEN])
            .args(["--max-connections", "30000"])
            .args(["--max-connections-per-ip", "30000"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            port,
            http: reqwest::Client::new(),
        };
        let started = Instant::now();
        while server.get("/api/status").await.is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    async fn get(&self, path: &str) -> Option<Value> {
        serde_json::from_str(&self.get_text(path).await?).ok()
    }

    async fn get_text(&self, path: &str) -> Option<String> {
        let resp = self
            .http
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?;
        resp.text().await.ok()
    }

    /// A silent `crowdfactor-worker` process on `threads` threads for this
    /// server, with `extra` arguments, on the CPUs `cpus` when given.
    fn worker(&self, threads: usize, extra: &[&str], cpus: Option<&str>) -> Child {
        on_cpus(&bin("crowdfactor-worker"), cpus)
            .args(["--server", &format!("http://127.0.0.1:{}", self.port)])
            .args(["--threads", &threads.to_string()])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Connected native workers, from `/metrics`.
    async fn native_workers(&self) -> u64 {
        match self.get_text("/metrics").await {
            Some(text) => {
                crowdfactor_e2e::metric(&text, "crowdfactor_workers_connected{kind=\"native\"}")
            }
            None => 0,
        }
    }

    async fn submit(&self, body: Value) -> String {
        let base = format!("http://127.0.0.1:{}", self.port);
        crowdfactor_e2e::submit_job(&self.http, &base, TOKEN, &body).await
    }

    async fn wait_done(&self, id: &str, poll: Duration) -> Value {
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "job {id} not done after 10 minutes"
            );
            if let Some(job) = self.get(&format!("/api/jobs/{id}")).await {
                if job["state"] == "done" {
                    return job;
                }
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Resident memory of the server process, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// CPU time the server process used so far, in seconds.
    fn cpu_seconds(&self) -> f64 {
        process_cpu_seconds(&self.child.id().to_string())
    }

    /// Server CPU time per second of wall time over the next `period`.
    async fn cpu_share(&self, period: Duration) -> f64 {
        let before = self.cpu_seconds();
        tokio::time::sleep(period).await;
        (self.cpu_seconds() - before) / period.as_secs_f64()
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time process `pid` (or `self`) used so far, in seconds.
fn process_cpu_seconds(pid: &str) -> f64 {
    proc_stat(Path::new(&format!("/proc/{pid}/stat")))
        .unwrap()
        .cpu_seconds
}

fn hello(slots: u32) -> Message {
    Message::text(
        ClientMessage::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            kind: WorkerKind::Native,
            slots,
            threads: slots,
            name: Some("sim".into()),
            agent: "crowdfactor-load".into(),
            token: None,
        })
        .encode(),
    )
}

/// The load generator shares the cores with the server: keep its per-frame
/// cost low (tungstenite zeroes its whole read buffer as it reads).
fn client_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 << 10)
}

/// A simulated worker: factors every assignment at once (the numbers are
/// small) and answers with ack + result. Counts accepted chunks. One task
/// reads and writes (no split halves and their lock), and answers to the
/// frames that arrived together go out in one flush.
async fn sim_worker(url: String, slots: u32, accepted: Arc<AtomicU64>) {
    use futures_util::FutureExt;
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(&url, Some(client_config()), true)
            .await
            .unwrap();
    ws.send(hello(slots)).await.unwrap();
    let mut next = ws.next().await;
    while let Some(Ok(frame)) = next {
        if let Message::Text(text) = frame {
            match ServerMessage::decode(&text, 64 << 20).unwrap() {
                ServerMessage::Assign(a) => {
                    let ack = ClientMessage::Ack {
                        chunk_id: a.chunk_id,
                    };
                    // As protocol 5 workers send them: each list without
                    // its largest factor.
                    let mut result = ResultWriter::new(a.chunk_id, true, a.numbers.len());
                    for n in a.numbers.iter() {
                        result.push_factorization_with(|v| crowdfactor_factor::factor_into(n, v));
                    }
                    if ws.feed(Message::text(ack.encode())).await.is_err()
                        || ws
                            .feed(Message::text(result.finish(Some(1))))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                ServerMessage::Accepted { .. } => {
                    accepted.fetch_add(1, Relaxed);
                }
                ServerMessage::Error { .. } => return,
                _ => {}
            }
        }
        // Another frame already here: answer it in the same flush.
        next = match ws.next().now_or_never() {
            Some(frame) => frame,
            None => {
                if ws.flush().await.is_err() {
                    return;
                }
                ws.next().await
            }
        };
    }
}

struct Throughput {
    round_trips_per_s: f64,
    numbers_per_s: f64,
    /// Server CPU time per round trip, µs (the load generator shares the cores).
    server_cpu_us: f64,
    /// The load generator's own CPU time per round trip, µs.
    client_cpu_us: f64,
}

/// Runs `chunks` chunks of `chunk_size` small numbers through `workers`
/// simulated workers with `slots` each.
async fn throughput(
    server_args: &[&str],
    workers: usize,
    slots: u32,
    count: u64,
    chunk_size: Option<u64>,
    load_threads: usize,
) -> Throughput {
    let server = Server::start(server_args).await;
    let accepted = Arc::new(AtomicU64::new(0));
    // The simulated workers run on a runtime of their own. With `load_threads`
    // 1 it is single-threaded: for round trips, where the workers only relay
    // frames, one thread serving every connection in turn spends less per
    // frame than a work-stealing pool waking its threads, and what the load
    // generator spends is taken from the coordinator on a shared machine.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let load = {
        let (url, accepted) = (server.url(), accepted.clone());
        std::thread::spawn(move || {
            let rt = if load_threads == 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(load_threads);
                b
            }
            .enable_all()
            .build()
            .expect("a tokio runtime");
            rt.block_on(async move {
                let mut sims = tokio::task::JoinSet::new();
                for _ in 0..workers {
                    sims.spawn(sim_worker(url.clone(), slots, accepted.clone()));
                }
                let _ = stopped.await;
                // A simulated worker that panicked (a refused connection, a
                // frame it could not read) took its share of the load with
                // it: the figures would be of fewer workers than printed.
                let mut panicked = 0;
                while let Some(ended) = sims.try_join_next() {
                    panicked += usize::from(ended.is_err_and(|e| e.is_panic()));
                }
                panicked
            })
        })
    };
    // Let every worker connect and say hello before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut body = json!({"range": {"start": "1000", "count": count.to_string()}});
    if let Some(c) = chunk_size {
        body["chunk_size"] = json!(c);
    }
    let started = Instant::now();
    let cpu_before = server.cpu_seconds();
    let client_before = process_cpu_seconds("self");
    let id = server.submit(body).await;
    let job = server.wait_done(&id, Duration::from_millis(5)).await;
    let secs = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds() - cpu_before;
    let client_cpu = process_cpu_seconds("self") - client_before;
    let chunks = job["chunks"].as_u64().unwrap();
    assert_eq!(job["done"].as_u64(), Some(count));
    let _ = stop.send(());
    let panicked = load.join().expect("the load generator's thread");
    assert_eq!(panicked, 0, "simulated workers panicked during the run");
    Throughput {
        round_trips_per_s: chunks as f64 / secs,
        numbers_per_s: count as f64 / secs,
        server_cpu_us: cpu * 1e6 / chunks as f64,
        client_cpu_us: client_cpu * 1e6 / chunks as f64,
    }
}

fn python_manager(script: &Path, chunks: u64) -> Option<f64> {
    let out = Command::new("python3")
        .arg(script)
        .args(["--chunks", &chunks.to_string(), "--procs", "4"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("round_trips_per_s="))
        .and_then(|v| v.parse().ok())
}

/// Opens `count` idle worker connections; returns the server's memory growth
/// per connection and its CPU use while they sit silent and while they send
/// heartbeats.
async fn idle_memory(count: usize) -> Idle {
    let server = Server::start(&["--in-memory"]).await;
    let mut first = vec![];
    // One connection first, so the per-connection figure excludes start-up costs.
    first.push(open_idle(&server.url()).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss();
    let mut conns = Vec::with_capacity(count);
    for _ in 0..count {
        conns.push(open_idle(&server.url()).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = server.get("/api/status").await.unwrap();
    assert_eq!(
        status["workers"].as_u64(),
        Some(count as u64 + 1),
        "every connection is registered"
    );
    let after = server.rss();
    // What holding them costs while nothing happens (no heartbeats: these
    // connections stay silent for less than the idle timeout).
    let idle_cpu = server.cpu_share(IDLE_WATCH).await;
    // Real idle workers send a heartbeat every 5 s (the interval the server
    // asks for), spread out over time.
    let beating: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            tokio::spawn(async move {
                let (mut sink, mut stream) = ws.split();
                let offset = HEARTBEAT.mul_f64(i as f64 / count as f64);
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + offset, HEARTBEAT);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let beat = Message::text(ClientMessage::Heartbeat.encode());
                            if sink.send(beat).await.is_err() {
                                return;
                            }
                        }
                        frame = stream.next() => if !matches!(frame, Some(Ok(_))) { return },
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(HEARTBEAT).await;
    let beating_cpu = server.cpu_share(HEARTBEAT * 2).await;
    // A connection that ended (closed by the server, a failed send) stopped
    // beating: the figure would be of fewer connections than printed.
    let ended = beating.iter().filter(|t| t.is_finished()).count();
    assert_eq!(
        ended, 0,
        "connections ended while their heartbeats were measured"
    );
    for task in beating {
        task.abort();
    }
    Idle {
        per_conn: after.saturating_sub(before) as f64 / count as f64,
        rss: after,
        cpu_share: idle_cpu,
        beating_cpu_share: beating_cpu,
    }
}

/// How long the idle connections are watched for their CPU cost.
const IDLE_WATCH: Duration = Duration::from_secs(5);
/// The heartbeat interval the server asks workers for (its default).
const HEARTBEAT: Duration = Duration::from_secs(5);

struct Idle {
    /// Bytes of server RSS per idle connection.
    per_conn: f64,
    /// Server RSS with every connection open.
    rss: u64,
    /// Server CPU time per second of wall time while they sit idle.
    cpu_share: f64,
    /// The same with every connection sending heartbeats.
    beating_cpu_share: f64,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_idle(url: &str) -> Ws {
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(client_config()), true)
            .await
            .unwrap();
    ws.send(hello(1)).await.unwrap();
    // Wait for the welcome (and the idle notice) so the server has registered it.
    match ws.next().await {
        Some(Ok(Message::Text(t))) => {
            assert!(matches!(
                ServerMessage::decode(&t, 1 << 20),
                Ok(ServerMessage::Welcome { .. })
            ));
        }
        other => panic!("no welcome: {other:?}"),
    }
    ws
}

/// Numbers per block when the engine alone sieves a range.
const SIEVE_BLOCK: u64 = 65_536;

/// A command for `program`, run by `taskset` on the CPUs `cpus` when given.
fn on_cpus(program: &Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Where the worker and the coordinator of a range job run when the
/// coordinator has a core of its own: the worker's threads on the first
/// `threads` CPUs this process may use, the coordinator on the rest (as on
/// two machines). Left to the kernel instead, the two share both cores —
/// each wakes on the other's core, where the worker's sieve was warm in the
/// cache — and the job took 15–20 % longer (70 against 57 ms, the 10^6
/// seed range on one thread, 2026-12-04). `None` where `taskset` or the
/// CPU list is missing, or no CPU is left over.
fn split_cpus(threads: usize) -> Option<(String, String)> {
    let cpus = allowed_cpus()?;
    if threads == 0 || cpus.len() <= threads {
        return None;
    }
    let status = on_cpus(Path::new("true"), Some(&cpus[0].to_string()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        return None;
    }
    let list = |c: &[usize]| c.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    Some((list(&cpus[..threads]), list(&cpus[threads..])))
}

/// The CPUs this process may run on (`Cpus_allowed_list` in
/// `/proc/self/status`, such as `0-3,8`), ascending.
fn allowed_cpus() -> Option<Vec<usize>> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    let mut cpus = vec![];
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().ok()?..=b.parse::<usize>().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// The engine alone on `count` numbers from `start` step 2, shared by
/// `threads` threads in blocks: number by number, or (`sieve`) as a worker
/// factors a range chunk (`factor_progression_resuming`, which sieves
/// numbers below 2^44, each thread resuming its sieve from its block before)
/// in blocks of [`SIEVE_BLOCK`].
fn engine_alone(start: u128, count: u64, threads: usize, sieve: bool) -> f64 {
    let block: u64 = if sieve { SIEVE_BLOCK } else { 1024 };
    let next = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut sink = 0u128;
                let mut resume = crowdfactor_factor::SieveResume::default();
                loop {
                    let at = next.fetch_add(block, Relaxed);
                    if at >= count {
                        break;
                    }
                    let (first, n) = (start + 2 * u128::from(at), block.min(count - at));
                    if sieve {
                        crowdfactor_factor::factor_progression_resuming(
                            first,
                            2,
                            n as usize,
                            &mut resume,
                            |l| sink = sink.wrapping_add(l.first().copied().unwrap_or(1)),
                        );
                    } else {
                        for i in 0..u128::from(n) {
                            sink = sink.wrapping_add(crowdfactor_factor::factor(first + 2 * i)[0]);
                        }
                    }
                }
                std::hint::black_box(sink);
            });
        }
    });
    started.elapsed().as_secs_f64()
}

/// The CPUs of the worker and of the coordinator (`taskset` lists), or
/// `None` to leave them to the kernel.
type Cpus<'a> = Option<(&'a str, &'a str)>;

/// A range job through the coordinator (SQLite store) and one worker process
/// started after the job is submitted, timed from submitting to seeing it done:
/// this one includes the worker's start-up and connection.
async fn through_coordinator(start: u128, count: u64, threads: usize, cpus: Cpus<'_>) -> f64 {
    let dir = temp_dir("load-job");
    let db = dir.join("bench.db");
    let server = Server::start_on(&["--db", db.to_str().unwrap()], cpus.map(|c| c.1)).await;
    // The clock includes the worker's start-up: it exits when idle, so it
    // starts once the job exists.
    let started = Instant::now();
    let id = server
        .submit(
            json!({"range": {"start": start.to_string(), "count": count.to_string(), "step": 2}}),
        )
        .await;
    let mut worker = server.worker(threads, &["--exit-when-idle"], cpus.map(|c| c.0));
    let job = server.wait_done(&id, Duration::from_millis(5)).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(job["done"].as_u64(), Some(count));
    let _ = worker.wait();
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
    secs
}

/// [`RANGE_RUNS`] range jobs through the coordinator (SQLite store) and one
/// worker process that is connected and idle when each is submitted — a
/// job as a fleet that is already running takes it. Each is timed from just
/// before the submitting request to the end time the server records with the
/// job's last accepted result (wall clock, millisecond precision), so
/// polling for the end adds nothing.
async fn through_connected_worker(start: u128, count: u64, threads: usize, cpus: Cpus<'_>) -> Runs {
    let dir = temp_dir("load-job-connected");
    let db = dir.join("bench.db");
    let server = Server::start_on(&["--db", db.to_str().unwrap()], cpus.map(|c| c.1)).await;
    let mut worker = server.worker(threads, &[], cpus.map(|c| c.0));
    let started = Instant::now();
    while server.native_workers().await != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "worker did not connect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut runs = vec![];
    for _ in 0..RANGE_RUNS {
        let submitted = unix_ms();
        let id = server
            .submit(json!({"range": {"start": start.to_string(), "count": count.to_string(), "step": 2}}))
            .await;
        let job = server.wait_done(&id, Duration::from_millis(5)).await;
        assert_eq!(job["done"].as_u64(), Some(count));
        let finished = job["finished_ms"]
            .as_f64()
            .expect("a done job has an end time");
        runs.push((finished - submitted).max(0.0) / 1000.0);
    }
    let _ = worker.kill();
    let _ = worker.wait();
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
    Runs::sorted(runs)
}

/// Milliseconds since the Unix epoch, as the server stamps jobs.
fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs_f64()
        * 1000.0
}

fn main() {
    // As the worker does: 16 MiB of slack at the top of each malloc heap.
    // Without it the engine alone, block after block on fresh threads, took
    // fresh zeroed pages from the kernel for each block's buffers — 0.051
    // instead of 0.032 s on the 10^6 seed range on one thread — and the
    // reference the worker is held to was a slower engine than it runs.
    crowdfactor_process::keep_heap_slack();
    tokio::runtime::Runtime::new()
        .expect("a tokio runtime")
        .block_on(bench());
}

async fn bench() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--only rt|np|idle|job` runs one part (for profiling); default all.
    let only: Option<String> = std::env::args().skip_while(|a| a != "--only").nth(1);
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/classic_manager.py");
    let (rt_chunks, py_chunks, idle, job_count) = if quick {
        (2_000, 1_000, 200, 20_000)
    } else {
        (200_000, 20_000, 10_000, 1_000_000)
    };
    let build = if cfg!(debug_assertions) {
        "DEBUG build: a smoke run, figures not meaningful"
    } else {
        "release build"
    };
    println!("crowdfactor load benchmark ({threads} cores; {build}; loopback)");
    println!();

    let python = if part("rt") {
        python_manager(&script, py_chunks)
    } else {
        None
    };
    match python {
        Some(rt) => println!(
            "classic Python manager   {rt:>10.0} round trips/s  ({py_chunks} one-number chunks, 4 client processes)"
        ),
        None if part("rt") => println!("classic Python manager   not measured (python3 failed)"),
        None => {}
    }
    let dir = temp_dir("load-rt");
    let db = dir.join("rt.db");
    let stores = [
        ("SQLite store", vec!["--db", db.to_str().unwrap()]),
        ("memory store", vec!["--in-memory"]),
    ];
    for (name, args) in stores.into_iter().filter(|_| part("rt")) {
        let t = throughput(&args, 64, 4, rt_chunks, Some(1), 1).await;
        let ratio = python.map_or(String::new(), |p| {
            format!("  = {:.1}x the Python manager", t.round_trips_per_s / p)
        });
        println!(
            "crowdfactor, {name}  {:>10.0} round trips/s  ({rt_chunks} one-number chunks, 64 simulated workers x 4 slots){ratio}",
            t.round_trips_per_s
        );
        println!(
            "    server CPU {:.1} µs per round trip (= {:.0} round trips/s per core it has to itself); \
             load generator CPU {:.1} µs per round trip",
            t.server_cpu_us,
            1e6 / t.server_cpu_us,
            t.client_cpu_us
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    if part("np") {
        numbers_per_second(rt_chunks * 20, threads).await;
    }
    if part("idle") {
        idle_workers(idle).await;
    }
    if part("job") {
        range_jobs(job_count, threads).await;
    }
}

/// Numbers per second with adaptive chunks; the simulated workers factor
/// every number, on `threads` threads (one per core).
async fn numbers_per_second(count: u64, threads: usize) {
    let db = temp_dir("load-np").join("np.db");
    let t = throughput(&["--db", db.to_str().unwrap()], 8, 2, count, None, threads).await;
    println!(
        "crowdfactor, SQLite store  {:>10.0} numbers/s     ({count} small numbers, adaptive chunks, 8 simulated workers)",
        t.numbers_per_s,
    );
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
    println!();
}

async fn idle_workers(idle: usize) {
    let i = idle_memory(idle).await;
    println!(
        "idle workers: {idle} connected; server RSS {:.1} MiB; {:.1} KiB per idle worker; {:.0} MiB for 10,000; \
         server CPU while they sit idle {:.1} % of one core, {:.1} % with a heartbeat from each every 5 s",
        i.rss as f64 / (1 << 20) as f64,
        i.per_conn / 1024.0,
        i.per_conn * 10_000.0 / (1 << 20) as f64,
        i.cpu_share * 100.0,
        i.beating_cpu_share * 100.0
    );
    println!();
}

/// The range jobs, first on every core (worker and coordinator share them),
/// then with one core left to the coordinator, as when it runs on another
/// machine than the worker (engine alone and worker on the same threads):
/// the worker pinned to its cores and the coordinator to the rest
/// ([`split_cpus`]), and also left to the kernel.
async fn range_jobs(job_count: u64, cores: usize) {
    for threads in [cores, cores - 1] {
        if threads == 0 {
            continue;
        }
        let (split, setting) = if threads == cores {
            let setting = format!("{threads} threads, sharing the cores with the coordinator");
            (None, setting)
        } else {
            let split = split_cpus(threads);
            let pinned = split.as_ref().map_or(String::new(), |(worker, server)| {
                format!(" (taskset: worker on CPU {worker}, coordinator on CPU {server})")
            });
            let setting = format!("{threads} thread(s), coordinator on the remaining core{pinned}");
            (split, setting)
        };
        let cpus = split.as_ref().map(|(w, s)| (w.as_str(), s.as_str()));
        let seed = 999_999_999_999u128;
        range_job(&seed.to_string(), seed, job_count, threads, &setting, cpus).await;
        range_job(
            "2^64+1",
            (1 << 64) + 1,
            job_count / 10,
            threads,
            &setting,
            cpus,
        )
        .await;
    }
}

/// Runs of each range job, engine alone and through the coordinator: the
/// median is reported, with the least and most beside it.
const RANGE_RUNS: usize = 3;

/// One range job (`count` numbers from `start`, step 2) through the
/// coordinator and one worker on `threads` threads, against the engine
/// alone; with `cpus`, the worker and coordinator pinned there, and their
/// runs left to the kernel reported beside.
async fn range_job(
    label: &str,
    start: u128,
    count: u64,
    threads: usize,
    setting: &str,
    cpus: Cpus<'_>,
) {
    let sieved = crowdfactor_factor::progression_is_sieved(start, 2, SIEVE_BLOCK as usize);
    // The reference is the engine's fastest way through the range, the one
    // the worker takes: sieving where it applies.
    let engine = Runs::of(|| engine_alone(start, count, threads, sieved));
    let how = if sieved {
        let each = engine_alone(start, count, threads, false);
        format!("sieving the range (number by number: {each:.2} s)")
    } else {
        "number by number".to_owned()
    };
    let connected = through_connected_worker(start, count, threads, cpus).await;
    let unpinned = match cpus {
        Some(_) => {
            let free = through_connected_worker(start, count, threads, None).await;
            format!(
                "; not pinned {} s = {:.2}x",
                free.show(),
                free.median() / engine.median()
            )
        }
        None => String::new(),
    };
    let cold = through_coordinator(start, count, threads, cpus).await;
    println!(
        "range job, {count} numbers from {label} step 2, {setting}: engine alone {} s, {how}; \
         coordinator (SQLite) + one connected worker {} s = {:.2}x ({:.2}-{:.2}x){unpinned}; \
         worker started after the job was submitted {cold:.3} s = {:.2}x",
        engine.show(),
        connected.show(),
        connected.median() / engine.median(),
        connected.least() / engine.most(),
        connected.most() / engine.least(),
        cold / engine.median(),
    );
}

/// [`RANGE_RUNS`] timings in seconds, sorted.
struct Runs(Vec<f64>);

impl Runs {
    fn of(mut f: impl FnMut() -> f64) -> Runs {
        Runs::sorted((0..RANGE_RUNS).map(|_| f()).collect())
    }

    fn sorted(mut v: Vec<f64>) -> Runs {
        v.sort_by(f64::total_cmp);
        Runs(v)
    }

    fn median(&self) -> f64 {
        self.0[self.0.len() / 2]
    }

    fn least(&self) -> f64 {
        self.0[0]
    }

    fn most(&self) -> f64 {
        self.0[self.0.len() - 1]
    }

    /// "median (least-most)".
    fn show(&self) -> String {
        format!(
            "{:.3} ({:.3}-{:.3})",
            self.median(),
            self.least(),
            self.most()
        )
    }
}

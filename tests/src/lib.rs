//! Helpers for the end-to-end tests: a coordinator on port 0, worker
//! processes, the HTTP API, and GNU `factor` as the oracle.
#![allow(clippy::unwrap_used)] // test support: a failed step should fail the test loudly

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

/// A store whose disk fills (the tests that refuse results use it).
pub use crowdfactor_server::store::FullDisk;
use crowdfactor_server::store::{MemoryStore, Store};
pub use crowdfactor_server::Config;

/// Polls `probe` every 50 ms until it gives `Ok`, for at most `limit`; then
/// fails with the last `Err`, which says what was seen instead.
pub async fn eventually<T, E: std::fmt::Display>(
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let start = Instant::now();
    loop {
        match probe().await {
            Ok(it) => return it,
            Err(seen) if start.elapsed() >= limit => panic!("after {limit:?}: {seen}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A coordinator running in this process on an ephemeral port.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`, or `https://localhost:<port>` with TLS.
    base: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts `crowdfactor_server::run` on 127.0.0.1:0.
    pub async fn start(config: Config) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts the server with TLS: a fresh self-signed certificate for
    /// `localhost` (files in `dir`, as `--tls-cert`/`--tls-key` read them).
    /// Returns the server and the certificate's PEM file, which clients are
    /// told to trust.
    pub async fn start_tls(mut config: Config, dir: &Path) -> (Self, PathBuf) {
        let (cert, key) = self_signed_localhost(dir);
        let files = crowdfactor_server::tls::CertFiles::open(&cert, &key).unwrap();
        config.tls = Some(files.server_config().unwrap());
        let pem = std::fs::read_to_string(&cert).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        (Self::start_inner(addr, config, Some(&pem)).await, cert)
    }

    /// Starts the server on `addr`, retrying while the port is still being released.
    pub async fn start_on(addr: SocketAddr, config: Config) -> Self {
        Self::start_inner(addr, config, None).await
    }

    /// Starts the server on 127.0.0.1:0 with `store` in place of the
    /// in-memory one `run` uses (a test's own store, to fail on purpose).
    pub async fn start_with_store(config: Config, store: Arc<dyn Store>) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_inner_with(addr, config, None, store).await
    }

    /// Starts the server on `addr` with `store`: with the store of a server
    /// shut down, a restart of it (its leases forgotten, its jobs and
    /// results not).
    pub async fn start_on_with_store(
        addr: SocketAddr,
        config: Config,
        store: Arc<dyn Store>,
    ) -> Self {
        Self::start_inner_with(addr, config, None, store).await
    }

    async fn start_inner(addr: SocketAddr, config: Config, trusted_pem: Option<&str>) -> Self {
        Self::start_inner_with(addr, config, trusted_pem, Arc::new(MemoryStore::new())).await
    }

    async fn start_inner_with(
        addr: SocketAddr,
        config: Config,
        trusted_pem: Option<&str>,
        store: Arc<dyn Store>,
    ) -> Self {
        let listener = eventually(Duration::from_secs(10), async || {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot bind {addr}: {e}"))
        })
        .await;
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            crowdfactor_server::run_with_store(listener, config, store, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        // With TLS: the name the test certificate is for, and a client
        // trusting that certificate.
        let (base, http) = match trusted_pem {
            Some(pem) => (
                format!("https://localhost:{}", addr.port()),
                client_trusting(pem.as_bytes()),
            ),
            None => (format!("http://{addr}"), reqwest::Client::new()),
        };
        TestServer {
            addr,
            base,
            http,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("{}/", self.base)
    }

    pub fn ws_url(&self) -> String {
        format!("{}/ws", self.base.replacen("http", "ws", 1))
    }

    /// POST /api/jobs; returns (status, body).
    pub async fn post_job(&self, body: &Value) -> (u16, Value) {
        self.post_job_text(body.to_string()).await
    }

    /// POST /api/jobs with a body already serialized (a large one can be
    /// made before a clock starts); returns (status, body).
    pub async fn post_job_text(&self, body: String) -> (u16, Value) {
        let resp = self.job_request(body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// A `POST /api/jobs` of `body` (JSON text), ready to send.
    pub fn job_request(&self, body: String) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/api/jobs", self.base))
            .header("content-type", "application/json")
            .body(body)
    }

    /// Connects and sends the head of a `POST /api/jobs` whose body of `len`
    /// bytes the test then writes (or withholds) itself.
    pub async fn raw_job_upload(&self, len: usize) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let mut raw = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let head = format!(
            "POST /api/jobs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        );
        raw.write_all(head.as_bytes()).await.unwrap();
        raw
    }

    /// Submits a job that must be accepted; returns its id.
    pub async fn submit(&self, body: Value) -> String {
        let (status, v) = self.post_job(&body).await;
        assert_eq!(status, 201, "job rejected: {v}");
        v["id"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The body of `GET path` as text, with the API token if given.
    pub async fn text(&self, path: &str, token: Option<&str>) -> String {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().text().await.unwrap()
    }

    pub async fn job(&self, id: &str) -> Value {
        self.get(&format!("/api/jobs/{id}")).await.1
    }

    /// Polls until the job is done; panics after `timeout`.
    pub async fn wait_done(&self, id: &str, timeout: Duration) -> Value {
        eventually(timeout, async || {
            let job = self.job(id).await;
            if job["state"] == "done" {
                Ok(job)
            } else {
                Err(format!("job {id} not done: {job}"))
            }
        })
        .await
    }

    /// Submits `numbers` as a list job with the given chunk size; returns its id.
    pub async fn submit_numbers(&self, numbers: &[u128], chunk_size: u32) -> String {
        let list: Vec<String> = numbers.iter().map(u128::to_string).collect();
        self.submit(serde_json::json!({"numbers": list, "chunk_size": chunk_size}))
            .await
    }

    /// Polls until at least `done` numbers of the job are done; returns the job.
    pub async fn wait_progress(&self, id: &str, done: u64, timeout: Duration) -> Value {
        eventually(timeout, async || {
            let job = self.job(id).await;
            if job["done"].as_u64().unwrap() >= done {
                Ok(job)
            } else {
                Err(format!("job {id} stuck below {done}: {job}"))
            }
        })
        .await
    }

    /// `GET /api/jobs/<id>/results` as number → factor strings.
    pub async fn results(&self, id: &str) -> HashMap<String, Vec<String>> {
        let v = self.get(&format!("/api/jobs/{id}/results")).await.1;
        v["results"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(n, f)| {
                let f = f
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_owned())
                    .collect();
                (n.clone(), f)
            })
            .collect()
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// The value of metric `name` (with its labels) in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// The ids of a job list (`{"jobs": [...]}`, from `GET /api/jobs` or a
/// dashboard update), in its order.
pub fn job_ids(list: &Value) -> Vec<String> {
    list["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no job list: {list}"))
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The bytes a gzip stream unpacks to (panics if it is not one, whole).
pub fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut out).unwrap();
    out
}

/// An HTTP client that trusts the certificate(s) in `pem` (besides the
/// system's), for a test server's self-signed certificate.
pub fn client_trusting(pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap())
        .build()
        .unwrap()
}

/// Path of a workspace binary, next to this test executable's directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` (or `cargo test --workspace`) first",
        path.display()
    );
    path
}

/// A `crowdfactor-worker` process, killed when dropped.
#[derive(Debug)]
pub struct WorkerProc(pub Child);

impl WorkerProc {
    pub fn spawn(server: &TestServer, extra: &[&str]) -> Self {
        Self::spawn_at(&server.ws_url(), extra)
    }

    /// A worker given `url` as its `--server`.
    pub fn spawn_at(url: &str, extra: &[&str]) -> Self {
        let child = Command::new(bin("crowdfactor-worker"))
            .arg("--server")
            .arg(url)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        WorkerProc(child)
    }

    /// SIGKILL, like a machine losing power.
    pub fn kill9(&mut self) {
        self.0.kill().unwrap();
        let _ = self.0.wait();
    }

    /// Waits for exit; returns the status code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GNU coreutils `factor` on the given numbers: n → factors, as strings.
pub fn gnu_factor(numbers: &[u128]) -> HashMap<String, Vec<String>> {
    let mut child = Command::new("factor")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("GNU factor (coreutils) must be installed");
    let mut input = String::new();
    for n in numbers {
        input.push_str(&n.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (n, f) = line.split_once(':').unwrap();
            (
                n.to_owned(),
                f.split_whitespace().map(str::to_owned).collect(),
            )
        })
        .collect()
}

/// Asserts that the job's results are exactly GNU factor's, for every number.
pub fn assert_matches_gnu(numbers: &[u128], results: &HashMap<String, Vec<String>>) {
    let want = gnu_factor(numbers);
    for n in numbers {
        let key = n.to_string();
        let got = results
            .get(&key)
            .unwrap_or_else(|| panic!("no result for {key}"));
        assert_eq!(Some(got), want.get(&key), "factors of {key}");
    }
}

/// `count` numbers from `start` in steps of `step`.
pub fn range(start: u128, count: u128, step: u128) -> Vec<u128> {
    (0..count).map(|i| start + i * step).collect()
}

/// Semiprimes p·q of two random primes of `bits` bits each (fixed seed).
pub fn semiprimes(count: usize, bits: u32, seed: u64) -> Vec<u128> {
    numbers_of(&known_semiprimes(count, bits, seed))
}

/// [`semiprimes`] with their two factors, smaller first: for jobs that must
/// last long enough to interrupt on a fast machine, whose numbers GNU
/// `factor` would take too long to check (44-bit factors: ~1 ms each for
/// the engine, ~50 ms for GNU).
pub fn known_semiprimes(count: usize, bits: u32, seed: u64) -> Vec<(u128, [u128; 2])> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut prime = || loop {
        let c = rng.u128((1 << (bits - 1))..(1 << bits)) | 1;
        if crowdfactor_factor::is_prime(c) {
            return c;
        }
    };
    (0..count)
        .map(|_| {
            let (p, q) = (prime(), prime());
            (p * q, [p.min(q), p.max(q)])
        })
        .collect()
}

/// The numbers of [`known_semiprimes`].
pub fn numbers_of(known: &[(u128, [u128; 2])]) -> Vec<u128> {
    known.iter().map(|&(n, _)| n).collect()
}

/// Asserts that each of `known`'s numbers came back as its two factors.
pub fn assert_known_factors(known: &[(u128, [u128; 2])], results: &HashMap<String, Vec<String>>) {
    for (n, factors) in known {
        let key = n.to_string();
        let got = results
            .get(&key)
            .unwrap_or_else(|| panic!("no result for {key}"));
        let want: Vec<String> = factors.iter().map(u128::to_string).collect();
        assert_eq!(got, &want, "factors of {key}");
    }
}

/// A fresh, empty directory for one test.
/// Submits a job to the coordinator at `base` (`http://host:port`) that
/// must be accepted; returns its id.
pub async fn submit_job(http: &reqwest::Client, base: &str, token: &str, body: &Value) -> String {
    let resp = http
        .post(format!("{base}/api/jobs"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let created: Value = resp.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// Sends process `pid` `signal` (`kill`'s argument, e.g. `-TERM`), which
/// must succeed.
pub fn send_signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}

/// What a process's or a thread's `/proc/.../stat` says of it.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    /// Its process group.
    pub group: u32,
    /// The CPU time (user and system) it has used, in seconds.
    pub cpu_seconds: f64,
}

/// Reads `path` (`/proc/PID/stat`, `/proc/PID/task/TID/stat`); `None` once
/// the process or thread is gone.
pub fn proc_stat(path: &Path) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The fields after the parenthesised command name: state, ppid, pgrp,
    // ..., utime and stime the 12th and 13th, in ticks of 1/100 s (USER_HZ).
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields[i].parse::<f64>().unwrap();
    Some(ProcStat {
        group: fields[2].parse().unwrap(),
        cpu_seconds: (ticks(11) + ticks(12)) / 100.0,
    })
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crowdfactor-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh self-signed certificate for `localhost` and its key, written to
/// `dir` as `cert.pem` and `key.pem`.
pub fn self_signed_localhost(dir: &Path) -> (PathBuf, PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

/// A TCP proxy in front of the coordinator that can go silent: `freeze`
/// stops every WebSocket connection open at that moment passing bytes
/// either way, without closing it (a coordinator whose machine lost power,
/// or a laptop that changed networks, as the tab's socket sees it).
/// Connections opened later pass as usual, and so do the page's HTTP
/// requests: its Web Workers may still be loading their code. It can also
/// break off requests for one path (`refuse`).
#[derive(Debug)]
pub struct FreezingProxy {
    pub addr: std::net::SocketAddr,
    open: Arc<Mutex<Vec<Arc<Link>>>>,
    refused: Arc<Mutex<Option<&'static str>>>,
    task: tokio::task::JoinHandle<()>,
}

/// One connection through a [`FreezingProxy`].
#[derive(Debug)]
struct Link {
    /// The client's first bytes asked for the WebSocket.
    websocket: AtomicBool,
    frozen: AtomicBool,
    /// Set to close both directions at once.
    cut: tokio::sync::watch::Sender<bool>,
}

impl FreezingProxy {
    pub async fn start(to: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(Mutex::new(Vec::<Arc<Link>>::new()));
        let refused = Arc::new(Mutex::new(None));
        let (conns, refusing) = (Arc::clone(&open), Arc::clone(&refused));
        let task = tokio::spawn(async move {
            // Dropped with this task: no pump outlives the proxy.
            let mut pumps = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        let Ok(server) = tokio::net::TcpStream::connect(to).await else { continue };
                        let link = Arc::new(Link {
                            websocket: AtomicBool::new(false),
                            frozen: AtomicBool::new(false),
                            cut: tokio::sync::watch::channel(false).0,
                        });
                        conns.lock().unwrap().push(Arc::clone(&link));
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        pumps.spawn(pump(cr, sw, Arc::clone(&link), Some(Arc::clone(&refusing))));
                        pumps.spawn(pump(sr, cw, link, None));
                    }
                    Some(_) = pumps.join_next(), if !pumps.is_empty() => {}
                }
            }
        });
        FreezingProxy {
            addr,
            open,
            refused,
            task,
        }
    }

    pub fn freeze(&self) {
        for link in self.open.lock().unwrap().iter() {
            if link.websocket.load(Ordering::SeqCst) {
                link.frozen.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Closes the connection of every request for `path` from now on
    /// (`None`: no more).
    pub fn refuse(&self, path: Option<&'static str>) {
        *self.refused.lock().unwrap() = path;
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Passes bytes one way; `refused` for the direction from the client, which
/// says what the connection is for.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Arc<Link>,
    refused: Option<Arc<Mutex<Option<&'static str>>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 << 10];
    let mut cut = link.cut.subscribe();
    let mut first = true;
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = cut.wait_for(|cut| *cut) => return,
        };
        if let Some(refused) = &refused {
            let request = &buf[..n];
            if std::mem::take(&mut first) && request.starts_with(b"GET /ws") {
                link.websocket.store(true, Ordering::SeqCst);
            }
            let path = *refused.lock().unwrap();
            if path.is_some_and(|p| request.starts_with(format!("GET {p} ").as_bytes())) {
                link.cut.send_replace(true);
                return;
            }
        }
        if link.frozen.load(Ordering::SeqCst) {
            // Holds both sockets open, passing nothing, until the proxy ends.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A `crowdfactor-server` process on a port and an SQLite file, for tests
/// that kill it (`SIGKILL`, `SIGTERM`) and start it again on the same
/// database, and the HTTP calls they make to it.
pub mod server_process {
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use serde_json::Value;

    use super::{bin, eventually, submit_job};

    /// The API token the servers started here take.
    pub const TOKEN: &str = "durable-test-token";

    /// A server process, killed when dropped.
    #[derive(Debug)]
    pub struct ServerProc(pub Child);

    impl Drop for ServerProc {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The server on `port` and the database `db`, logging warnings.
    pub fn server_command(port: u16, db: &Path) -> Command {
        let mut cmd = Command::new(bin("crowdfactor-server"));
        cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--token", TOKEN])
            .arg("--db")
            .arg(db)
            .env("RUST_LOG", "warn")
            // A stop waits this long for requests in flight (default 10 s).
            .env("CROWDFACTOR_SHUTDOWN_GRACE", "2")
            .stdin(Stdio::null());
        cmd
    }

    pub fn start_server(port: u16, db: &Path) -> ServerProc {
        ServerProc(server_command(port, db).spawn().unwrap())
    }

    /// `GET path` with the token; `None` when the server does not answer
    /// with JSON.
    pub async fn api(port: u16, path: &str) -> Option<Value> {
        let resp = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// Submits a job that must be accepted; returns its id.
    pub async fn submit(port: u16, body: Value) -> String {
        let base = format!("http://127.0.0.1:{port}");
        submit_job(&reqwest::Client::new(), &base, TOKEN, &body).await
    }

    /// A job's results as number → factors (decimal strings).
    pub async fn results_of(port: u16, id: &str) -> std::collections::HashMap<String, Vec<String>> {
        let results = api(port, &format!("/api/jobs/{id}/results")).await.unwrap();
        results["results"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(n, f)| {
                let f = f.as_array().unwrap().iter();
                (
                    n.clone(),
                    f.map(|p| p.as_str().unwrap().to_owned()).collect(),
                )
            })
            .collect()
    }

    pub async fn wait_up(port: u16) {
        eventually(Duration::from_secs(20), async || {
            let status = api(port, "/api/status").await;
            status.map(drop).ok_or("server did not come up")
        })
        .await;
    }

    /// Polls job `id` until `ok` holds for it, for at most `secs`; returns it.
    pub async fn wait_job(port: u16, id: &str, secs: u64, ok: impl Fn(&Value) -> bool) -> Value {
        eventually(Duration::from_secs(secs), async || {
            let job = api(port, &format!("/api/jobs/{id}")).await.unwrap();
            if ok(&job) {
                Ok(job)
            } else {
                Err(format!("job {id}: {job}"))
            }
        })
        .await
    }
}

//! Browser end to end: headless Chromium and Firefox, driven over WebDriver,
//! open the volunteer page; its Web Workers (wasm) factor whole jobs.
#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crowdfactor_e2e::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// A WebDriver server (chromedriver, geckodriver) and what it leaves behind.
struct Driver {
    child: Child,
    /// The browser profile directory, if the test chose it.
    profile: Option<PathBuf>,
    /// Where the driver's and the browser's output goes (geckodriver's:
    /// Firefox prints its pages' uncaught errors there).
    output: Option<PathBuf>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The driver runs in a process group of its own, with the browser it
        // starts: killing the group leaves no orphaned browser behind when a
        // test ends without closing its session (a failed assertion).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for dir in [&self.profile, &self.output].into_iter().flatten() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A fresh directory for one browser session's files: one of its own, as
/// tests run side by side (and each driver removes its own when dropped).
fn session_dir(browser: &str) -> PathBuf {
    static SESSIONS: AtomicUsize = AtomicUsize::new(0);
    temp_dir(&format!(
        "{browser}-{}",
        SESSIONS.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Starts a WebDriver server on a free port and opens a session with `caps`;
/// the server's output (with the browser's) goes to `output`/log if given.
async fn session(
    driver_path: &str,
    caps: serde_json::Map<String, serde_json::Value>,
    profile: Option<PathBuf>,
    output: Option<PathBuf>,
) -> (Driver, Client) {
    let port = free_port();
    let (stdout, stderr) = match &output {
        Some(dir) => {
            let log = std::fs::File::create(dir.join("log")).unwrap();
            (Stdio::from(log.try_clone().unwrap()), Stdio::from(log))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    let driver = Driver {
        child: Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {driver_path}: {e} (run scripts/setup.sh --browser)")
            }),
        profile,
        output,
    };
    // The workspace links two rustls crypto providers (the worker's ring,
    // fantoccini's aws-lc-rs) and rustls will not pick one by itself.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = eventually(Duration::from_secs(30), async || {
        ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .map_err(|e| format!("cannot start a WebDriver session with {driver_path}: {e}"))
    })
    .await;
    (driver, client)
}

/// Headless Chromium through chromedriver (`CHROMEDRIVER`, `CHROME` override the paths).
async fn chromium() -> (Driver, Client) {
    chromium_with(&[]).await
}

/// [`chromium`] with extra command-line switches.
async fn chromium_with(extra: &[&str]) -> (Driver, Client) {
    chromium_tuned(extra, &[], json!({})).await
}

/// [`chromium_with`] `extra` switches, without `dropped`, switches
/// chromedriver adds by default (such as `disable-background-timer-throttling`),
/// and with the profile preferences `prefs` (as the settings page sets them).
async fn chromium_tuned(
    extra: &[&str],
    dropped: &[&str],
    prefs: serde_json::Value,
) -> (Driver, Client) {
    let driver_path =
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let mut caps = serde_json::Map::new();
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--window-size=1200,900",
    ];
    args.extend_from_slice(extra);
    // A profile directory of our own, removed with the driver (chromedriver
    // removes the one it makes only when the session is closed).
    let profile = session_dir("chromium");
    let profile_arg = format!("--user-data-dir={}", profile.display());
    args.push(&profile_arg);
    let mut opts = json!({ "args": args, "excludeSwitches": dropped, "prefs": prefs });
    if let Ok(bin) = std::env::var("CHROME") {
        opts["binary"] = json!(bin);
    }
    caps.insert("goog:chromeOptions".into(), opts);
    // The console (the page's and its Web Workers'), for `assert_no_console_errors`.
    caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
    session(&driver_path, caps, Some(profile), None).await
}

/// Headless Firefox (ESR) through geckodriver (`GECKODRIVER`, `FIREFOX`
/// override the paths; by default geckodriver from PATH or ~/.cargo/bin).
async fn firefox() -> (Driver, Client) {
    let driver_path = std::env::var("GECKODRIVER").unwrap_or_else(|_| {
        let cargo_bin = std::env::var("HOME").map(|h| format!("{h}/.cargo/bin/geckodriver"));
        match cargo_bin {
            Ok(p) if std::path::Path::new(&p).exists() => p,
            _ => "geckodriver".into(),
        }
    });
    let binary = std::env::var("FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".into());
    let mut caps = serde_json::Map::new();
    caps.insert(
        "moz:firefoxOptions".into(),
        json!({
            "binary": binary,
            "args": ["-headless"],
            // No network here but loopback: keep Firefox from trying.
            "prefs": {
                "app.update.enabled": false,
                "app.normandy.enabled": false,
                "browser.safebrowsing.malware.enabled": false,
                "browser.safebrowsing.phishing.enabled": false,
                "datareporting.policy.dataSubmissionEnabled": false,
                "network.captive-portal-service.enabled": false,
                "network.connectivity-service.enabled": false,
                "toolkit.telemetry.enabled": false
            }
        }),
    );
    let output = session_dir("geckodriver");
    let (driver, client) = session(&driver_path, caps, None, Some(output)).await;
    // The size Chromium's window is given (Firefox takes no such switch).
    client.set_window_size(1200, 900).await.unwrap();
    (driver, client)
}

/// The uncaught exceptions and rejections Firefox printed so far for pages
/// and Web Workers from `origin` (its own chrome code prints some too;
/// they are left out).
fn firefox_page_errors(driver: &Driver, origin: &str) -> Vec<String> {
    let dir = driver.output.as_ref().expect("a Firefox driver");
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    let prefix = format!("JavaScript error: {origin}");
    log.lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Replaces the text of an input.
async fn fill(client: &Client, css: &str, text: &str) {
    let field = client.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn select(client: &Client, css: &str, value: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
}

/// Saves a screenshot under target/test-output/ for the README.
async fn save_screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-output");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

async fn text(client: &Client, id: &str) -> String {
    client
        .find(Locator::Id(id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The server embeds `web/pkg/<file>` (built by scripts/build-wasm.sh).
async fn assert_serves_pkg(server: &TestServer, file: &str) {
    let got = reqwest::get(format!("{}pkg/{file}", server.url()))
        .await
        .unwrap();
    assert_eq!(
        got.status().as_u16(),
        200,
        "the server was built without web/pkg/{file}: run scripts/build-wasm.sh, then rebuild"
    );
}

/// Where the browser implements the wide-arithmetic proposal (Chromium with
/// its flag), the page loads the factorizer built for it, and the results
/// are still exact (every Montgomery multiply uses the wide multiplies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_with_wide_arithmetic_loads_the_wide_build() {
    let server = TestServer::start(Config::default()).await;
    assert_serves_pkg(&server, "crowdfactor_wasm_wide_bg.wasm").await;
    // One- and two-word numbers: 40-bit seeds, 64-bit numbers and 80-bit
    // semiprimes (ECM), and the range from 2^64 + 1.
    let mut numbers = range(999_999_999_999, 100, 2);
    numbers.extend(range(u128::from(u64::MAX) - 200, 50, 2));
    numbers.extend(semiprimes(10, 40, 7));
    numbers.extend(range((1 << 64) + 1, 200, 2));
    let list: Vec<String> = numbers.iter().map(u128::to_string).collect();
    let id = server.submit(json!({ "numbers": list })).await;
    let (_driver, client) = chromium_with(&["--js-flags=--wasm-wide-arithmetic"]).await;
    client.goto(&server.url()).await.unwrap();
    let job = server.wait_done(&id, Duration::from_secs(120)).await;
    assert_eq!(
        job["by_kind"]["browser"],
        numbers.len(),
        "all done by the page: {job}"
    );
    assert_matches_gnu(&numbers, &server.results(&id).await);
    assert_eq!(
        text(&client, "engine").await,
        "WebAssembly with wide arithmetic"
    );
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
}

/// The page over https from the coordinator's own TLS (`--tls-cert`): the
/// tab's Web Workers connect back over wss (the CSP's `connect-src 'self'`
/// allows it) and factor a job. Chromium is told to accept the test's
/// self-signed certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_tab_contributes_over_https_and_wss() {
    let dir = temp_dir("browser-tls");
    let (server, _ca) = TestServer::start_tls(Config::default(), &dir).await;
    let (_driver, client) = chromium_with(&["--ignore-certificate-errors"]).await;
    assert!(server.url().starts_with("https://localhost:"));
    the_page_factors_the_seed_range(&server, &client, 500).await;
    assert_eq!(text(&client, "conn").await, "connected");
    client.close().await.unwrap();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Submits `count` numbers of the seed range, opens the page, and checks
/// that the page alone factored them all, as GNU `factor` does, and that
/// its console holds no error.
async fn the_page_factors_the_seed_range(server: &TestServer, client: &Client, count: u32) {
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": count, "step": 2}}))
        .await;
    client.goto(&server.url()).await.unwrap();
    let job = server.wait_done(&id, Duration::from_secs(120)).await;
    assert_eq!(
        job["by_kind"]["browser"], count,
        "all done by the page: {job}"
    );
    let numbers = range(999_999_999_999, count.into(), 2);
    assert_matches_gnu(&numbers, &server.results(&id).await);
    assert_no_console_errors(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_tab_factors_a_whole_job_in_web_workers() {
    let server = TestServer::start(Config::default()).await;
    assert_serves_pkg(&server, "crowdfactor_wasm_bg.wasm").await;
    let (_driver, client) = chromium().await;
    the_page_factors_the_seed_range(&server, &client, 1000).await;

    // The page reports what it did: one Web Worker per core, 1000 numbers.
    let cores: u64 = client
        .execute("return navigator.hardwareConcurrency", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    assert_eq!(text(&client, "workers").await, cores.to_string());
    wait_text_where(&client, "factored", Duration::from_secs(10), |t| {
        t == "1,000"
    })
    .await;
    // Its settings are kept: no word that they are not.
    let note = client.find(Locator::Css("#storage-note")).await.unwrap();
    assert!(
        !note.is_displayed().await.unwrap(),
        "settings said not kept"
    );
    // Tabs take turns here (Web Locks on 127.0.0.1), and the page says so.
    let turns = client.find(Locator::Css("#turn-note")).await.unwrap();
    assert!(turns.is_displayed().await.unwrap(), "no word of turns");
    assert_eq!(text(&client, "conn").await, "connected");
    // Chromium ships the wide-arithmetic proposal only behind a flag: the
    // standard build runs.
    assert_eq!(text(&client, "engine").await, "WebAssembly");

    // The standard build's arithmetic for the larger word sizes (32-bit
    // digits above 2^64: three below 2^96, four above) is exact too:
    // 64-bit numbers, 80- and 96-bit semiprimes, ranges from 2^64 + 1 and
    // 2^100 + 1.
    let mut mixed = range(u128::from(u64::MAX) - 200, 50, 2);
    mixed.extend(semiprimes(10, 40, 7));
    mixed.extend(semiprimes(3, 48, 9));
    mixed.extend(range((1 << 64) + 1, 200, 2));
    mixed.extend(range((1 << 100) + 1, 20, 2));
    let list: Vec<String> = mixed.iter().map(u128::to_string).collect();
    let wide_sizes = server.submit(json!({ "numbers": list })).await;
    let job = server
        .wait_done(&wide_sizes, Duration::from_secs(120))
        .await;
    assert_eq!(job["by_kind"]["browser"], mixed.len(), "{job}");
    assert_matches_gnu(&mixed, &server.results(&wide_sizes).await);

    // Fewer workers and a 25 % duty cycle, changed live: the next job still
    // completes exactly, done by this tab.
    select(&client, "#worker-count", "1").await;
    select(&client, "#duty", "0.25").await;
    wait_text_where(&client, "workers", Duration::from_secs(10), |t| t == "1").await;
    let numbers2 = range(1_000_000_000_001, 200, 2);
    let throttled = server
        .submit(
            json!({"range": {"start": "1000000000001", "count": 200, "step": 2}, "chunk_size": 10}),
        )
        .await;
    let job = server.wait_done(&throttled, Duration::from_secs(60)).await;
    assert_eq!(job["by_kind"]["browser"], 200, "{job}");
    assert_matches_gnu(&numbers2, &server.results(&throttled).await);
    let items = client
        .find_all(Locator::Css("#worker-list li"))
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    save_screenshot(&client, "page.png").await;

    // Pause is remembered across a reload and stops work; Resume restarts it.
    click(&client, "#toggle").await;
    client.refresh().await.unwrap();
    // The page renders its state once its wasm module is loaded, which can
    // be after the reload returns.
    wait_text(&client, "toggle", "Resume").await;
    let paused_job = server
        .submit(json!({"numbers": ["1000000000001", "12", "97"]}))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        server.job(&paused_job).await["done"],
        0,
        "a paused tab takes no work"
    );
    click(&client, "#toggle").await;
    let job = server.wait_done(&paused_job, Duration::from_secs(30)).await;
    assert_eq!(job["by_kind"]["browser"], 3);
    assert_no_console_errors(&client).await;
    the_policy_blocked_nothing_and_reports_what_it_blocks(&server, None, &client).await;

    client.close().await.unwrap();
    server.shutdown().await;
}

/// After a restart of the server (leases forgotten: the chunks the tab held
/// are cut anew, with new ids and bounds) the tab answers the new chunks
/// from the lists it factored for the old ones, waiting for those still
/// being factored: it factors no number twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_restart_the_tab_factors_no_number_twice() {
    let store = std::sync::Arc::new(crowdfactor_server::store::MemoryStore::new());
    let server = TestServer::start_with_store(Config::default(), store.clone()).await;
    let (_driver, client) = chromium().await;
    // 44-bit factors: a few ms each in wasm, seconds of work for the tab.
    let known = known_semiprimes(3000, 44, 11);
    let numbers = numbers_of(&known);
    let list: Vec<String> = numbers.iter().map(u128::to_string).collect();
    let id = server.submit(json!({ "numbers": list })).await;
    client.goto(&server.url()).await.unwrap();
    let before = server
        .wait_progress(&id, 300, Duration::from_secs(120))
        .await;
    let addr = server.addr;
    server.shutdown().await;
    assert!(
        before["state"] != "done",
        "the job ended before the restart: {before}"
    );
    let server = TestServer::start_on_with_store(addr, Config::default(), store).await;
    let job = server.wait_done(&id, Duration::from_secs(180)).await;
    let results = server.results(&id).await;
    the_tab_factored_each_number_once(&client, &job, &known, &results, "3,000").await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// The same when the server process is killed with SIGKILL (no goodbye:
/// the tab's socket just drops, and results it sent in the last moment may
/// not have been stored) and started again on the same SQLite file: the tab
/// connects again by itself and still factors no number twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_9_of_the_server_the_tab_factors_no_number_twice() {
    use crowdfactor_e2e::server_process::{results_of, start_server, submit, wait_job, wait_up};
    let dir = temp_dir("browser-kill9");
    let db = dir.join("crowdfactor.db");
    let port = free_port();
    let mut server = start_server(port, &db);
    wait_up(port).await;
    let (_driver, client) = chromium().await;
    let known = known_semiprimes(3000, 44, 13);
    let numbers = numbers_of(&known);
    let list: Vec<String> = numbers.iter().map(u128::to_string).collect();
    let id = submit(port, json!({ "numbers": list })).await;
    client
        .goto(&format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let before = wait_job(port, &id, 120, |job| job["done"].as_u64().unwrap() >= 300).await;
    server.0.kill().unwrap(); // SIGKILL
    server.0.wait().unwrap();
    assert!(
        before["state"] != "done",
        "the job ended before the kill: {before}"
    );
    let _server = start_server(port, &db);
    wait_up(port).await;
    let job = wait_job(port, &id, 180, |job| job["state"] == "done").await;
    let results = results_of(port, &id).await;
    the_tab_factored_each_number_once(&client, &job, &known, &results, "3,000").await;
    client.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A result the store could not record (a full disk) is not lost: its
/// chunk is queued again, and leased again to the tab that sent it, which
/// sends that result again instead of factoring the chunk a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_store_refused_is_sent_again_not_factored_again() {
    let failures = 3;
    let store = std::sync::Arc::new(FullDisk::refusing(failures));
    // Leases that never lapse: a chunk comes back because its result was
    // refused, not because its lease ran out.
    let config = Config {
        lease_timeout: Duration::from_secs(3600),
        ..Config::default()
    };
    let server = TestServer::start_with_store(config, store.clone()).await;
    let (_driver, client) = chromium().await;
    let known = known_semiprimes(600, 30, 17);
    let numbers = numbers_of(&known);
    let list: Vec<String> = numbers.iter().map(u128::to_string).collect();
    let id = server
        .submit(json!({ "numbers": list, "chunk_size": 50 }))
        .await;
    client.goto(&server.url()).await.unwrap();
    let job = server.wait_done(&id, Duration::from_secs(120)).await;
    assert_eq!(store.refusals_left(), 0, "every refusal was met");
    let metrics = server.text("/metrics", None).await;
    assert_eq!(
        metric(&metrics, "crowdfactor_store_failures_total"),
        u64::from(failures)
    );
    let results = server.results(&id).await;
    the_tab_factored_each_number_once(&client, &job, &known, &results, "600").await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// `job` (done) was factored by the tab alone, every factor in `results`
/// right, and its Web Workers factored each number once: the page's
/// "Numbers factored" comes to `shown` (the job's size, as the page writes
/// it). The console logged no error meanwhile.
async fn the_tab_factored_each_number_once(
    client: &Client,
    job: &serde_json::Value,
    known: &[(u128, [u128; 2])],
    results: &std::collections::HashMap<String, Vec<String>>,
    shown: &str,
) {
    assert_eq!(job["by_kind"]["browser"], known.len(), "{job}");
    assert_known_factors(known, results);
    wait_text_where(client, "factored", Duration::from_secs(10), |t| t == shown).await;
    assert_no_console_errors(client).await;
}

/// The connected workers, as `GET /api/workers` lists them.
async fn workers(server: &TestServer) -> Vec<serde_json::Value> {
    let (_, list) = server.get("/api/workers").await;
    list["workers"].as_array().unwrap().clone()
}

/// Polls the connected workers until `found` picks something from the
/// list, for at most `secs` seconds (then fails saying `what`).
async fn wait_workers<T>(
    server: &TestServer,
    secs: u64,
    what: &str,
    found: impl Fn(&[serde_json::Value]) -> Option<T>,
) -> T {
    eventually(Duration::from_secs(secs), async || {
        let list = workers(server).await;
        found(&list).ok_or_else(|| format!("{what}: {list:?}"))
    })
    .await
}

/// Submits 60,000 numbers of 64 bits, a few seconds' work for a tab.
async fn a_long_job(server: &TestServer) -> (String, Vec<u128>) {
    let start = u128::from(u64::MAX / 2) + 1;
    let count: u32 = 60_000;
    let id = server
        .submit(json!({"range": {"start": start.to_string(), "count": count, "step": 2}}))
        .await;
    (id, range(start, count.into(), 2))
}

/// A job body of 10^7 numbers of 64 bits, starting where [`a_long_job`]
/// does: minutes of work for a tab (even at 100,000 numbers a second), so it
/// runs all through a test that watches the tab at work.
fn an_outlasting_job() -> serde_json::Value {
    let start = u128::from(u64::MAX / 2) + 1;
    json!({"range": {"start": start.to_string(), "count": 10_000_000, "step": 2}})
}

/// Waits for job `id` to finish and checks that browser tabs factored all
/// its `numbers`, as GNU `factor` does.
async fn the_tab_did(server: &TestServer, id: &str, numbers: &[u128]) {
    let job = server.wait_done(id, Duration::from_secs(120)).await;
    assert_eq!(job["by_kind"]["browser"], numbers.len(), "{job}");
    assert_matches_gnu(numbers, &server.results(id).await);
}

/// The id of the first worker listed, once it holds a chunk.
fn holding(list: &[serde_json::Value]) -> Option<serde_json::Value> {
    list.first()
        .filter(|w| w["holding"] != 0)
        .map(|w| w["id"].clone())
}

/// A volunteer can name the tab, from a link (`?name=`) or on the page; the
/// operator sees the name in `GET /api/workers` (and so on the dashboard),
/// a change applies at once, and the browser remembers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volunteer_names_the_tab_and_the_operator_sees_it() {
    let server = TestServer::start(Config::default()).await;
    let (_driver, client) = chromium().await;
    // Each wait gives the connection's id.
    let named = |want: &'static str| {
        move |list: &[serde_json::Value]| {
            (list.len() == 1 && list[0]["kind"] == "browser" && list[0]["name"] == want)
                .then(|| list[0]["id"].clone())
        }
    };
    // A control character in the link's name becomes a space, as the
    // coordinator would make it.
    client
        .goto(&format!("{}?name=%20lab%09%233%20", server.url()))
        .await
        .unwrap();
    let linked = wait_workers(&server, 30, "the tab named by its link", named("lab #3")).await;
    let shown = client
        .execute(
            "return document.getElementById('volunteer-name').value",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown, "lab #3");
    // Typed on the page (Enter commits it): the server is told on the same
    // connection, so the tab keeps whatever chunks it holds.
    fill(&client, "#volunteer-name", "  Ada L.\u{E007}").await;
    let renamed = wait_workers(&server, 30, "the tab under its new name", named("Ada L.")).await;
    assert_eq!(renamed, linked, "renamed on its connection, not a new one");
    // Remembered by this browser: a plain link keeps it.
    client.goto(&server.url()).await.unwrap();
    wait_text(&client, "conn", "connected").await;
    let reloaded = wait_workers(&server, 30, "the name kept after a reload", named("Ada L.")).await;
    // Cleared: no name at all.
    fill(&client, "#volunteer-name", "\u{E007}").await;
    let cleared = wait_workers(&server, 30, "the tab without a name", |list| {
        (list.len() == 1 && list[0]["name"].as_str().unwrap_or("").is_empty())
            .then(|| list[0]["id"].clone())
    })
    .await;
    assert_eq!(
        cleared, reloaded,
        "cleared on its connection, not a new one"
    );
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// Leaving the page hands its chunks back at once, although Chromium keeps
/// the page (frozen, socket open) in its back/forward cache; coming back
/// reconnects and the tab finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_the_page_hands_its_chunks_back_and_coming_back_rejoins() {
    let server = TestServer::start(Config::default()).await;
    let (_driver, client) = chromium().await;
    let (id, numbers) = a_long_job(&server).await;
    client.goto(&server.url()).await.unwrap();
    wait_workers(&server, 30, "the page took no chunk", holding).await;
    client.goto("about:blank").await.unwrap();
    // Without the page closing its socket the chunks would wait for the
    // lease timeout (30 s), the connection for the idle timeout.
    the_tab_let_go(&server, &id, "the page left but kept its connection").await;
    client.back().await.unwrap();
    the_tab_did(&server, &id, &numbers).await;
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// Waits at most 5 s for the coordinator to list no worker (else fails
/// with `what`), and checks that job `id` was still open then: the tab let
/// go of its chunks before it could have finished them.
async fn the_tab_let_go(server: &TestServer, id: &str, what: &str) {
    wait_workers(server, 5, what, |list| list.is_empty().then_some(())).await;
    assert_ne!(
        server.job(id).await["state"],
        "done",
        "let go too late to tell"
    );
}

/// A tab the browser freezes (Chromium freezes hidden tabs to save energy,
/// their Web Workers with them) hands its chunks back at once, rather than
/// holding them for the lease timeout (30 s) and the connection for the
/// idle timeout, and connects again when it resumes; the job finishes,
/// each number factored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_tab_hands_its_chunks_back_and_rejoins_when_it_resumes() {
    let server = TestServer::start(Config::default()).await;
    let (_driver, client) = chromium().await;
    let (id, numbers) = a_long_job(&server).await;
    client.goto(&server.url()).await.unwrap();
    wait_workers(&server, 30, "the page took no chunk", holding).await;
    let lifecycle = |state: &str| cdp("Page.setWebLifecycleState", json!({ "state": state }));
    client.issue_cmd(lifecycle("frozen")).await.unwrap();
    the_tab_let_go(&server, &id, "the frozen tab kept its connection").await;
    client.issue_cmd(lifecycle("active")).await.unwrap();
    the_tab_did(&server, &id, &numbers).await;
    // Chunks it was factoring when frozen, leased to it again, were
    // answered by that computation: each number factored once.
    wait_text_where(&client, "factored", Duration::from_secs(10), |t| {
        t == "60,000"
    })
    .await;
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// A coordinator that goes silent without closing the socket: the tab
/// notices its heartbeats go unanswered, connects again, and finishes the
/// job (its chunks on the dead connection are leased to it again, and
/// those its Web Workers were factoring are answered by that computation:
/// the Web Workers factored as many chunks as the job took).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_whose_server_goes_silent_connects_again() {
    let server = TestServer::start(Config {
        heartbeat_interval: Duration::from_millis(300),
        lease_timeout: Duration::from_secs(3),
        ..Config::default()
    })
    .await;
    let proxy = FreezingProxy::start(server.addr).await;
    let (_driver, client) = chromium().await;
    let (id, numbers) = a_long_job(&server).await;
    client
        .goto(&format!("http://{}/", proxy.addr))
        .await
        .unwrap();
    let first = wait_workers(&server, 30, "the page took no chunk", holding).await;
    proxy.freeze();
    // Three unanswered heartbeats (0.9 s here) and a backoff of at most
    // 0.75 s; without answers to heartbeats the tab would wait for TCP
    // (minutes). 20 s: with the other browser tests' Web Workers on both
    // cores, 10 s was once not enough.
    let second = wait_workers(&server, 20, "the tab did not connect again", |list| {
        list.iter()
            .find(|w| w["id"] != first)
            .map(|w| w["id"].clone())
    })
    .await;
    assert_ne!(
        server.job(&id).await["state"],
        "done",
        "reconnected too late to tell"
    );
    the_tab_did(&server, &id, &numbers).await;
    let chunks = server.job(&id).await["chunks"].as_u64().unwrap();
    let mut factored = 0;
    for item in client
        .find_all(Locator::Css("#worker-list li"))
        .await
        .unwrap()
    {
        // "worker 1: idle · 12 chunks done"
        let text = item.text().await.unwrap();
        let count = text
            .split(" · ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        factored += count.unwrap_or_else(|| panic!("no chunk count in {text:?}"));
    }
    assert_eq!(factored, chunks, "chunks factored by the Web Workers");
    // A live coordinator's answers keep the tab on its new connection
    // (dozens of heartbeats by now).
    let now: Vec<_> = workers(&server)
        .await
        .iter()
        .map(|w| w["id"].clone())
        .collect();
    assert!(now.contains(&second), "{second} replaced: {now:?}");
    assert_eq!(text(&client, "conn").await, "connected");
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    drop(proxy);
    server.shutdown().await;
}

/// A tab waiting out its reconnect backoff (it doubles up to 30 s while
/// the server is away) connects at once when the browser says it is back
/// on a network (the `online` event: after an outage, on another network),
/// not when the backoff ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_back_online_connects_at_once() {
    let server = TestServer::start(Config::default()).await;
    let addr = server.addr;
    let (_driver, client) = chromium().await;
    client.goto(&server.url()).await.unwrap();
    wait_text(&client, "conn", "connected").await;
    server.shutdown().await;
    // Attempts about 0.5, 1, 2, 4 and 8 s apart (each 0.5–1.5 times
    // that): once the tab says 16 s, its next attempt is at least 8 s away.
    wait_text_where(&client, "conn", Duration::from_secs(90), |t| {
        t == "reconnecting in 16.0 s"
    })
    .await;
    let waiting = Instant::now();
    let server = TestServer::start_on(addr, Config::default()).await;
    // Chromium fires `offline`, then `online`, as when a network comes back.
    for offline in [true, false] {
        let conditions = json!({
            "offline": offline,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": -1,
        });
        let cmd = cdp("Network.emulateNetworkConditions", conditions);
        client.issue_cmd(cmd).await.unwrap();
    }
    // Without the `online` event it still connects, 8–24 s on.
    wait_text_where(&client, "conn", Duration::from_secs(40), |t| {
        t == "connected"
    })
    .await;
    let took = waiting.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "connected {took:?} after the network came back: at the end of its backoff, not at once"
    );
    wait_workers(&server, 10, "the server lists no worker", |list| {
        (!list.is_empty()).then_some(())
    })
    .await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// A coordinator for [`the_tab_kept_its_leases`]: answers to heartbeats
/// every 250 ms, leases that lapse after 1.5 s of silence.
async fn a_coordinator_quick_to_lapse() -> TestServer {
    TestServer::start(Config {
        heartbeat_interval: Duration::from_millis(250),
        // Chunks of seconds once the tab's speed is known (thousands of
        // the 100-bit numbers), so that the tab has nothing to send but
        // heartbeats for longer than the lease timeout.
        lease_timeout: Duration::from_millis(1500),
        chunk_target: Duration::from_secs(4),
        ..Config::default()
    })
    .await
}

/// Submits a job of 100-bit numbers to `server` (from
/// [`a_coordinator_quick_to_lapse`]): about a millisecond each, hours of
/// work for a tab.
async fn a_job_of_slow_numbers(server: &TestServer) -> String {
    let start = (1u128 << 100) + 1;
    server
        .submit(json!({"range": {"start": start.to_string(), "count": 10_000_000, "step": 2}}))
        .await
}

/// Submits [`a_job_of_slow_numbers`] and opens the page in `client`'s tab;
/// returns the job's id once the tab is connected.
async fn the_page_takes_slow_numbers(server: &TestServer, client: &Client) -> String {
    let id = a_job_of_slow_numbers(server).await;
    client.goto(&server.url()).await.unwrap();
    wait_workers(server, 30, "the tab did not connect", |list| {
        (!list.is_empty()).then_some(())
    })
    .await;
    id
}

/// Checks, after 15 s of work on job `id` (from [`a_job_of_slow_numbers`]),
/// that the one tab kept one connection and every lease: its heartbeats
/// kept time.
async fn the_tab_kept_its_leases(server: &TestServer, id: &str) {
    // 15 s at work: without heartbeats the tab's leases lapsed three times
    // by then.
    let tab = wait_workers(server, 60, "the tab at work for 15 s", |list| {
        list.first()
            .filter(|w| w["connected_secs"].as_u64() >= Some(15))
            .cloned()
    })
    .await;
    // One connection all along (the coordinator heard the tab), and work done.
    assert_eq!(tab["id"], 1, "{tab}");
    let job = server.job(id).await;
    assert!(job["chunks"].as_u64() >= Some(3), "{job}");
    let metrics = server.text("/metrics", None).await;
    assert_eq!(
        metric(&metrics, "crowdfactor_chunks_requeued_total"),
        0,
        "leases lapsed while the tab worked"
    );
}

/// A hidden tab's own timers may fire only once a minute (Chromium's
/// intensive wake-up throttling, after five minutes hidden; here after one
/// second): past the lease timeout. Its heartbeats keep time all the same,
/// so chunks that take longer than the lease timeout stay with the tab
/// instead of lapsing and being leased again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_tab_keeps_its_leases() {
    let server = a_coordinator_quick_to_lapse().await;
    let (_driver, client) = chromium_tuned(
        &["--enable-features=IntensiveWakeUpThrottling:grace_period_seconds/1"],
        &["disable-background-timer-throttling"],
        json!({}),
    )
    .await;
    let id = the_page_takes_slow_numbers(&server, &client).await;
    // A tab opened in front (WebDriver stays with the page).
    client
        .issue_cmd(cdp("Target.createTarget", json!({ "url": "about:blank" })))
        .await
        .unwrap();
    let state = client
        .execute("return document.visibilityState", vec![])
        .await
        .unwrap();
    assert_eq!(state, "hidden");
    the_tab_kept_its_leases(&server, &id).await;
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// The same in Firefox, whose background tabs throttle their timers in ways
/// of their own: the page's tab behind another one, its heartbeats keep
/// time and it keeps its leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_firefox_tab_keeps_its_leases() {
    let server = a_coordinator_quick_to_lapse().await;
    let (driver, client) = firefox().await;
    let id = the_page_takes_slow_numbers(&server, &client).await;
    // The page notes when it is hidden; read once it is in front again.
    client
        .execute(
            "window.wasHidden = false; document.addEventListener('visibilitychange', \
             () => { if (document.hidden) window.wasHidden = true; });",
            vec![],
        )
        .await
        .unwrap();
    let page = client.window().await.unwrap();
    let front = client.new_window(true).await.unwrap().handle;
    client.switch_to_window(front).await.unwrap();
    client.goto("about:blank").await.unwrap();
    the_tab_kept_its_leases(&server, &id).await;
    client.close_window().await.unwrap();
    client.switch_to_window(page).await.unwrap();
    assert_eq!(
        client
            .execute("return window.wasHidden", vec![])
            .await
            .unwrap(),
        json!(true),
        "the page's tab was never hidden"
    );
    let errors = firefox_page_errors(&driver, &server.url());
    assert!(errors.is_empty(), "Firefox printed errors: {errors:#?}");
    client.close().await.unwrap();
    server.shutdown().await;
}

/// Where the Web Worker that clocks heartbeats cannot load, the page's own
/// timer clocks them: the tab keeps its leases all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_without_its_heartbeat_clock_keeps_its_leases() {
    let server = a_coordinator_quick_to_lapse().await;
    let proxy = FreezingProxy::start(server.addr).await;
    proxy.refuse(Some("/ticker.js"));
    let (_driver, client) = chromium().await;
    let id = a_job_of_slow_numbers(&server).await;
    client
        .goto(&format!("http://{}/", proxy.addr))
        .await
        .unwrap();
    the_tab_kept_its_leases(&server, &id).await;
    let log = console_log(&client).await;
    assert!(
        log.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("heartbeat clock unavailable"))),
        "the page did not fall back to its own timer: {log:#?}"
    );
    client.close().await.unwrap();
    drop(proxy);
    server.shutdown().await;
}

/// Web Workers whose code could not be downloaded (the coordinator went
/// away while the page loaded) are started again until they load: the tab
/// computes, instead of holding chunks it never works on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_workers_that_could_not_load_are_started_again() {
    let server = TestServer::start(Config::default()).await;
    let proxy = FreezingProxy::start(server.addr).await;
    proxy.refuse(Some("/worker.js"));
    let (_driver, client) = chromium().await;
    let numbers = range(999_999_999_999, 2000, 2);
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": 2000, "step": 2}}))
        .await;
    client
        .goto(&format!("http://{}/", proxy.addr))
        .await
        .unwrap();
    // The page connects and takes chunks, but no Web Worker can start.
    wait_workers(&server, 30, "the page took no chunk", holding).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(server.job(&id).await["done"], 0, "no Web Worker should run");
    proxy.refuse(None);
    the_tab_did(&server, &id, &numbers).await;
    client.close().await.unwrap();
    drop(proxy);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_submits_a_job_and_shows_it_reach_100_percent() {
    // Base64's characters: the live feed's `?token=` arrives percent-encoded.
    const DASH_TOKEN: &str = "dash+tok/en==";
    let server = TestServer::start(Config {
        api_token: Some(DASH_TOKEN.into()),
        worker_token: Some("tab-token".into()),
        ..Config::default()
    })
    .await;
    let (_driver, client) = chromium().await;
    client
        .goto(&format!("{}dashboard", server.url()))
        .await
        .unwrap();
    // A wrong token is refused; the right one opens the dashboard.
    fill(&client, "#token", "wrong").await;
    click(&client, "#login button").await;
    wait_text_where(&client, "login-error", Duration::from_secs(10), |t| {
        !t.is_empty()
    })
    .await;
    fill(&client, "#token", DASH_TOKEN).await;
    click(&client, "#login button").await;

    // Submit a range through the form.
    click(&client, "input[name=kind][value=range]").await;
    fill(&client, "#range-count", "300").await;
    fill(&client, "#job-name", "dash range").await;
    click(&client, "#submit button").await;
    wait_text_where(&client, "submit-result", Duration::from_secs(10), |t| {
        t.starts_with("Submitted job")
    })
    .await;
    // A priority being typed (the job waits for a worker) keeps the focus
    // through the updates, then goes to the server.
    wait_visible(&client, "#jobs input[type=number]").await;
    let priority = client
        .find(Locator::Css("#jobs input[type=number]"))
        .await
        .unwrap();
    priority.click().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let focused = client
        .execute(
            "return document.activeElement.getAttribute('aria-label')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(focused.as_str(), Some("Priority of job 1"));
    // Select all and type over it: WebDriver's clear() would take the focus
    // away, and an update landing before the typing would put the server's
    // value back in front of it ("0-3", not a number).
    priority.send_keys("\u{E009}a\u{E000}-3").await.unwrap(); // Ctrl+A, release, -3
    tokio::time::sleep(Duration::from_millis(1200)).await;
    priority.send_keys("\u{E004}").await.unwrap(); // Tab: the change event
    eventually(Duration::from_secs(10), async || {
        let job: serde_json::Value =
            serde_json::from_str(&server.text("/api/jobs/1", Some(DASH_TOKEN)).await).unwrap();
        if job["priority"] == -3 {
            Ok(())
        } else {
            Err(format!("priority not set: {job}"))
        }
    })
    .await;
    // Cleared, the field changes nothing (it had set priority 0) and shows
    // the job's priority again.
    priority
        .send_keys("\u{E009}a\u{E000}\u{E003}\u{E004}")
        .await
        .unwrap(); // Ctrl+A, Backspace, Tab
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let job: serde_json::Value =
        serde_json::from_str(&server.text("/api/jobs/1", Some(DASH_TOKEN)).await).unwrap();
    assert_eq!(
        job["priority"], -3,
        "a cleared priority field changed the job"
    );
    assert_eq!(priority.prop("value").await.unwrap().as_deref(), Some("-3"));
    let _worker = WorkerProc::spawn(
        &server,
        &[
            "--threads",
            "1",
            "--name",
            "dash-test",
            "--token",
            "tab-token",
        ],
    );
    wait_job_shown_done(&client, "1").await;
    let name = client
        .find(Locator::Css("#jobs td .name"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(name, "dash range");
    let workers = text(&client, "workers").await;
    assert!(
        workers.contains("native") && workers.contains("dash-test"),
        "{workers}"
    );
    // Its row says how many chunks it holds of those it asks for: none of
    // them, the job done.
    let list: serde_json::Value =
        serde_json::from_str(&server.text("/api/workers", Some(DASH_TOKEN)).await).unwrap();
    let slots = list["workers"][0]["slots"].as_u64().unwrap();
    assert!(slots > 0, "{list}");
    // (One worker: the table is its row.)
    let row = format!("0 of {slots}");
    wait_text_where(&client, "workers", Duration::from_secs(10), |t| {
        t.contains(&row)
    })
    .await;
    // The job's results download as the API's CSV (the file's contents
    // caught as the page hands them to the browser).
    client
        .execute(
            "window.saved = []; const make = URL.createObjectURL; \
             URL.createObjectURL = (b) => { window.saved.push(b); return make.call(URL, b); };",
            vec![],
        )
        .await
        .unwrap();
    // Found once and clicked after two updates of the table: its rows are
    // updated in place, not redrawn (a redrawn row's button is gone before
    // a click lands on it).
    let download = client
        .find(Locator::Css("#jobs button[data-download]"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    download.click().await.unwrap();
    let csv = client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             const wait = () => window.saved.length ? window.saved[0].text().then(done) : setTimeout(wait, 50); \
             wait();",
            vec![],
        )
        .await
        .unwrap();
    let want = server
        .text("/api/jobs/1/results?format=csv", Some(DASH_TOKEN))
        .await;
    assert_eq!(csv.as_str(), Some(want.as_str()));
    assert_eq!(want.lines().count(), 301, "{want}");
    // The job is done: its priority can no longer be changed.
    let disabled = client
        .execute(
            "return document.querySelector('#jobs input[type=number]').disabled",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(disabled.as_bool(), Some(true));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .unwrap();
    save_screenshot(&client, "dashboard.png").await;

    // Lists typed or read from a file: separators as spreadsheets and
    // editors write them, and an item that is no number named by the
    // server by its index and line (the page sends the list as typed).
    click(&client, "input[name=kind][value=list]").await;
    fill(&client, "#list", "12, 97\n x13").await;
    click(&client, "#submit button").await;
    wait_text_where(&client, "submit-result", Duration::from_secs(10), |t| {
        t.starts_with("Not submitted") && t.contains("numbers[2] (line 2)")
    })
    .await;
    fill(&client, "#list", "12, 97\n  1000000000001,").await;
    click(&client, "#submit button").await;
    wait_text_where(&client, "submit-result", Duration::from_secs(10), |t| {
        t == "Submitted job 2: 3 numbers."
    })
    .await;
    let dir = temp_dir("dashboard-file");
    let file = dir.join("numbers.csv");
    let listed: Vec<u128> = (0..5000).map(|i| 999_999_999_999 + 2 * i).collect();
    let decimal: Vec<String> = listed.iter().map(u128::to_string).collect();
    std::fs::write(&file, format!("\u{feff}{}\r\n", decimal.join(",\r\n"))).unwrap();
    click(&client, "input[name=kind][value=file]").await;
    client
        .find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    click(&client, "#submit button").await;
    wait_text_where(&client, "submit-result", Duration::from_secs(10), |t| {
        t == "Submitted job 3: 5,000 numbers."
    })
    .await;
    eventually(Duration::from_secs(60), async || {
        let job: serde_json::Value =
            serde_json::from_str(&server.text("/api/jobs/3", Some(DASH_TOKEN)).await).unwrap();
        if job["state"] == "done" {
            Ok(())
        } else {
            Err(format!("not done: {job}"))
        }
    })
    .await;
    let csv = server
        .text("/api/jobs/3/results?format=csv", Some(DASH_TOKEN))
        .await;
    let got: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(got, decimal, "the file's numbers, in order");
    let _ = std::fs::remove_dir_all(&dir);

    // A finished job is deleted with its results, once confirmed: its row
    // goes, the API no longer knows it, the others stay.
    let delete = "#jobs button[aria-label='Delete job 2 and its results']";
    wait_visible(&client, delete).await;
    client
        .find(Locator::Css(delete))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client.accept_alert().await.unwrap();
    eventually(Duration::from_secs(10), async || {
        let rows = client.find_all(Locator::Css(delete)).await.unwrap();
        if rows.is_empty() {
            Ok(())
        } else {
            Err("job 2's row stays")
        }
    })
    .await;
    let gone = server.text("/api/jobs/2", Some(DASH_TOKEN)).await;
    assert!(gone.contains("not_found"), "{gone}");
    let listed = server.text("/api/jobs", Some(DASH_TOKEN)).await;
    let ids = job_ids(&serde_json::from_str(&listed).unwrap());
    assert_eq!(ids, ["1", "3"]);
    assert_no_console_errors(&client).await;
    the_policy_blocked_nothing_and_reports_what_it_blocks(&server, Some(DASH_TOKEN), &client).await;

    // A volunteer page without the worker token is refused and says so
    // (not that it contributes), without reconnecting over and over; with
    // ?token= it connects (here in a new tab, the refused one left open).
    client.goto(&server.url()).await.unwrap();
    wait_text(&client, "conn", "refused").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(text(&client, "conn").await, "refused");
    let status = text(&client, "state-text").await;
    assert!(
        status.starts_with("Not contributing: the server refused this tab")
            && status.contains("worker token")
            && status.contains("?token="),
        "{status}"
    );
    let tab = client.new_window(true).await.unwrap().handle;
    client.switch_to_window(tab).await.unwrap();
    client
        .goto(&format!("{}?token=tab-token", server.url()))
        .await
        .unwrap();
    wait_text(&client, "conn", "connected").await;
    // The server stops: the tab says it is not contributing, and why.
    server.shutdown().await;
    let said = wait_text_where(&client, "state-text", Duration::from_secs(20), |t| {
        t.starts_with("Not contributing right now: the server closed the connection")
            && t.contains("shutting down")
    })
    .await;
    assert!(said.ends_with("; trying again…"), "{said}");
    // It tries again and again (the countdown shows in the Connection
    // figure); the status line, a live region, says it once.
    record_live_regions(&client).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(live_regions_said(&client).await, json!({"state-text": []}));
    let connection = text(&client, "conn").await;
    assert!(
        connection == "connecting" || connection.starts_with("reconnecting in "),
        "{connection}"
    );
    client.close().await.unwrap();
}

/// Waits until the dashboard's row of job `id` shows its progress at 100 %.
async fn wait_job_shown_done(client: &Client, id: &str) {
    eventually(Duration::from_secs(60), async || {
        let cells = client
            .find_all(Locator::Css(&format!("#jobs td[data-job='{id}'] span")))
            .await
            .unwrap();
        let mut shown = String::new();
        if let Some(c) = cells.first() {
            shown = c.text().await.unwrap();
        }
        if shown.starts_with("100 %") {
            Ok(())
        } else {
            Err(format!("dashboard shows {shown:?} for job {id}"))
        }
    })
    .await;
}

/// Waits until the element's text is `want`.
async fn wait_text(client: &Client, id: &str, want: &str) {
    wait_text_where(client, id, Duration::from_secs(20), |got| got == want).await;
}

/// Waits up to `limit` until the element's text satisfies `ok`; returns it.
async fn wait_text_where(
    client: &Client,
    id: &str,
    limit: Duration,
    ok: impl Fn(&str) -> bool,
) -> String {
    eventually(limit, async || {
        let got = text(client, id).await;
        if ok(&got) {
            Ok(got)
        } else {
            Err(format!("#{id} shows {got:?}"))
        }
    })
    .await
}

/// A WebDriver command fantoccini has no method for: `path` under the
/// session, sent with POST and `body`, or with GET when there is none.
#[derive(Debug)]
struct Extension {
    path: String,
    body: Option<serde_json::Value>,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Extension {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/{}",
            session.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        match &self.body {
            Some(body) => (http::Method::POST, Some(body.to_string())),
            None => (http::Method::GET, None),
        }
    }
}

/// A Chrome DevTools Protocol command and its parameters, sent through
/// chromedriver.
fn cdp(cmd: &str, params: serde_json::Value) -> Extension {
    Extension {
        path: "goog/cdp/execute".into(),
        body: Some(json!({ "cmd": cmd, "params": params })),
    }
}

/// Asserts that Chromium's console logged no error since the last check: a
/// Content Security Policy violation, an uncaught exception or rejection, a
/// file that failed to load, `console.error`. An API call the server
/// answered with an error status is logged too; the page shows those
/// answers (a refused token, an invalid job), so they are left out.
async fn assert_no_console_errors(client: &Client) {
    let errors = console_log(client)
        .await
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .filter(|e| {
            let message = e["message"].as_str().unwrap_or_default();
            !(e["source"] == "network" && message.contains("/api/"))
        })
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>();
    assert!(errors.is_empty(), "the console logged errors: {errors:#?}");
}

/// What Chromium's console logged since the last look (the page's and its
/// Web Workers'): entries with `level`, `source` and `message`.
async fn console_log(client: &Client) -> Vec<serde_json::Value> {
    let log = client
        .issue_cmd(Extension {
            path: "se/log".into(),
            body: Some(json!({ "type": "browser" })),
        })
        .await
        .unwrap();
    log.as_array().unwrap().clone()
}

/// Asserts that the browser reported no Content Security Policy violation
/// of the pages so far (the policy's `report-uri`: the server counts them);
/// then makes the page load an image from elsewhere, which the policy
/// blocks, and waits for that report to be counted: reports do arrive, so
/// none so far means none happened.
async fn the_policy_blocked_nothing_and_reports_what_it_blocks(
    server: &TestServer,
    token: Option<&str>,
    client: &Client,
) {
    let reports = || async {
        let text = server.text("/metrics", token).await;
        metric(&text, "crowdfactor_csp_reports_total")
    };
    assert_eq!(reports().await, 0, "the browser reported CSP violations");
    client
        .execute("new Image().src = 'http://192.0.2.1/blocked.png'", vec![])
        .await
        .unwrap();
    eventually(Duration::from_secs(10), async || match reports().await {
        0 => Err("the blocked image was not reported"),
        _ => Ok(()),
    })
    .await;
}

/// WebDriver's "Get Computed Label" for an element: its accessible name as
/// the browser computes it (geckodriver and chromedriver both answer it).
fn computed_label(element: String) -> Extension {
    Extension {
        path: format!("element/{element}/computedlabel"),
        body: None,
    }
}

/// The shown controls, images and tables whose accessible name, as the
/// browser computes it, is empty.
async fn unnamed_by_the_browser(client: &Client) -> Vec<String> {
    let css = "button, input, select, textarea, [role=progressbar], [role=img], table";
    let mut unnamed = vec![];
    for e in client.find_all(Locator::Css(css)).await.unwrap() {
        if !e.is_displayed().await.unwrap() {
            continue;
        }
        let name = client
            .issue_cmd(computed_label(e.element_id().to_string()))
            .await
            .unwrap();
        if name.as_str().is_none_or(|n| n.trim().is_empty()) {
            unnamed.push(e.html(false).await.unwrap().chars().take(80).collect());
        }
    }
    unnamed
}

/// The page's accessibility tree as Chromium computes it for screen
/// readers: the nodes it does not ignore.
async fn ax_tree(client: &Client) -> Vec<serde_json::Value> {
    let tree = client
        .issue_cmd(cdp("Accessibility.getFullAXTree", json!({})))
        .await
        .unwrap();
    let nodes = tree["nodes"].as_array().expect("an accessibility tree");
    nodes
        .iter()
        .filter(|n| n["ignored"] != true)
        .cloned()
        .collect()
}

/// An accessibility node's role, name or `value` (empty when it has none).
fn ax(node: &serde_json::Value, field: &str) -> String {
    match &node[field]["value"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Whether an accessibility node has the property `name` (such as
/// `pressed`), whatever its value.
fn ax_has(node: &serde_json::Value, name: &str) -> bool {
    node["properties"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["name"] == name))
}

/// The controls, images and tables a screen reader would announce without a name,
/// as `role: DOM node id`.
fn ax_unnamed(tree: &[serde_json::Value]) -> Vec<String> {
    const NAMED: [&str; 15] = [
        "button",
        "checkbox",
        "combobox",
        "textbox",
        "searchbox",
        "spinbutton",
        "radio",
        "link",
        "slider",
        "switch",
        "progressbar",
        "image",
        "listbox",
        "tab",
        "table",
    ];
    tree.iter()
        .filter(|n| NAMED.contains(&ax(n, "role").as_str()) && ax(n, "name").trim().is_empty())
        .map(|n| format!("{}: {}", ax(n, "role"), n["backendDOMNodeId"]))
        .collect()
}

/// The accessibility node with this role and name.
fn ax_find<'a>(tree: &'a [serde_json::Value], role: &str, name: &str) -> &'a serde_json::Value {
    tree.iter()
        .find(|n| ax(n, "role") == role && ax(n, "name") == name)
        .unwrap_or_else(|| {
            let all: Vec<_> = tree
                .iter()
                .map(|n| format!("{} {:?}", ax(n, "role"), ax(n, "name")))
                .collect();
            panic!("no {role} named {name:?} in {all:?}")
        })
}

/// Starts recording what each live region on the page (`aria-live`,
/// `role=status|alert|log`) says each time its text is written (a screen
/// reader may read the same words again when they are written again): what
/// it reads out unasked.
async fn record_live_regions(client: &Client) {
    client
        .execute(
            r#"window.liveSaid = {};
               for (const el of document.querySelectorAll(
                   '[aria-live]:not([aria-live=off]), [role=status], [role=alert], [role=log]')) {
                 const said = window.liveSaid[el.id || el.outerHTML.slice(0, 50)] = [];
                 new MutationObserver(() => said.push(el.textContent))
                   .observe(el, { childList: true, characterData: true, subtree: true });
               }"#,
            vec![],
        )
        .await
        .unwrap();
}

/// What each live region said since [`record_live_regions`], by id.
async fn live_regions_said(client: &Client) -> serde_json::Value {
    client
        .execute("return window.liveSaid", vec![])
        .await
        .unwrap()
}

/// What a screen reader gets from the pages, as Chromium's accessibility
/// tree gives it (no screen reader itself runs here): every control, image
/// and table named, the Pause button a plain button whose name says what
/// pressing does, progress values, headings; and live regions that speak
/// when the state changes, not every second while a job runs (the tab's
/// busy count, the project figures and the dashboard's clock were all read
/// out over and over). Also what other visitors ask of the pages: no
/// sliding bars with reduced motion, bars that show in forced colours
/// (contrast themes), readable text in the dark scheme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screen_readers_contrast_themes_dark_and_reduced_motion() {
    let server = TestServer::start(Config {
        api_token: Some("ax-token".into()),
        ..Config::default()
    })
    .await;
    let created = server
        .job_request(an_outlasting_job().to_string())
        .bearer_auth("ax-token")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    // A volunteer who asked for less motion gets no sliding bars.
    let (_driver, client) = chromium_with(&["--force-prefers-reduced-motion"]).await;
    client.goto(&server.url()).await.unwrap();
    wait_text(&client, "conn", "connected").await;
    wait_text_where(&client, "factored", Duration::from_secs(30), |t| t != "0").await;

    let tree = ax_tree(&client).await;
    assert_eq!(ax_unnamed(&tree), Vec::<String>::new());
    ax_find(&tree, "heading", "crowdfactor");
    let pause = ax_find(&tree, "button", "Pause");
    assert!(!ax_has(pause, "pressed"), "{pause}");
    let bar = ax_find(&tree, "progressbar", "Project progress");
    let percent: f64 = ax(bar, "value").parse().expect("a progress value");
    assert!((0.0..=100.0).contains(&percent), "{bar}");
    ax_find(&tree, "combobox", "Web Workers (CPU cores)");
    let motion = client
        .execute(
            "return getComputedStyle(document.getElementById('project-fill')).transitionDuration",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(motion, json!("0s"));
    // In forced colours (Windows' contrast themes) the browser replaces
    // backgrounds: the bars' fill keeps a system colour of its own.
    let forced = json!({"features": [{"name": "forced-colors", "value": "active"}]});
    client
        .issue_cmd(cdp("Emulation.setEmulatedMedia", forced))
        .await
        .unwrap();
    let colours = client
        .execute(
            r#"return [matchMedia('(forced-colors: active)').matches,
                       getComputedStyle(document.getElementById('project-fill')).backgroundColor,
                       getComputedStyle(document.getElementById('project-bar')).backgroundColor,
                       getComputedStyle(document.body).backgroundColor];"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(colours[0], true, "{colours}");
    assert!(
        colours[1] != colours[2] && colours[1] != colours[3],
        "the fill shows: {colours}"
    );
    // The dark scheme keeps text readable too.
    let dark = json!({"features": [{"name": "forced-colors", "value": "none"},
                                   {"name": "prefers-color-scheme", "value": "dark"}]});
    client
        .issue_cmd(cdp("Emulation.setEmulatedMedia", dark))
        .await
        .unwrap();
    let scheme = client
        .execute(
            "return matchMedia('(prefers-color-scheme: dark)').matches",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(scheme, true);
    assert_eq!(low_contrast_text(&client).await, Vec::<String>::new());
    click(&client, "#toggle").await; // the paused look: outlined
    wait_text(&client, "toggle", "Resume").await;
    assert_eq!(low_contrast_text(&client).await, Vec::<String>::new());
    client
        .issue_cmd(cdp("Emulation.setEmulatedMedia", json!({})))
        .await
        .unwrap();
    click(&client, "#toggle").await;
    wait_text(&client, "toggle", "Pause").await;

    // While the job runs (chunks finishing, figures changing every second)
    // the live regions stay quiet.
    record_live_regions(&client).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(live_regions_said(&client).await, json!({"state-text": []}));
    let status = text(&client, "state-text").await;
    assert_eq!(status, "Contributing — factoring numbers for the project.");
    // Pausing is said once, and the button's name becomes what pressing does.
    click(&client, "#toggle").await;
    wait_text(&client, "toggle", "Resume").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        live_regions_said(&client).await,
        json!({"state-text": ["Paused. Nothing is computed until you resume."]})
    );
    assert_eq!(client.title().await.unwrap(), "Paused — crowdfactor");
    let tree = ax_tree(&client).await;
    let resume = ax_find(&tree, "button", "Resume");
    assert!(!ax_has(resume, "pressed"), "{resume}");
    click(&client, "#toggle").await;
    wait_text(&client, "toggle", "Pause").await;
    assert_eq!(
        client.title().await.unwrap(),
        "crowdfactor — lend this tab's CPU to factor integers"
    );

    // The dashboard, logged in, with the job running.
    client
        .goto(&format!("{}dashboard", server.url()))
        .await
        .unwrap();
    let tree = ax_tree(&client).await;
    assert_eq!(ax_unnamed(&tree), Vec::<String>::new());
    ax_find(&tree, "textbox", "Token");
    fill(&client, "#token", "ax-token").await;
    click(&client, "#login button").await;
    wait_visible(&client, "#submit").await;
    wait_text(&client, "live", "Live.").await;
    record_live_regions(&client).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        live_regions_said(&client).await,
        json!({"live": [], "login-error": [], "submit-result": []})
    );
    let tree = ax_tree(&client).await;
    assert_eq!(ax_unnamed(&tree), Vec::<String>::new());
    ax_find(&tree, "heading", "crowdfactor dashboard");
    ax_find(
        &tree,
        "image",
        "Numbers per second over the last five minutes",
    );
    ax_find(&tree, "table", "Jobs");
    let bar = ax_find(&tree, "progressbar", &format!("Job {id} progress"));
    assert!(ax(bar, "value").parse::<f64>().is_ok(), "{bar}");
    // The progress cell is read as its text says, once (the bar's value
    // text stands for the text beside it).
    let shown = client
        .execute(
            "return document.querySelector('#jobs .progress > span').textContent",
            vec![],
        )
        .await
        .unwrap();
    let shown = shown.as_str().unwrap();
    assert!(shown.ends_with(" / 10,000,000)"), "{shown}");
    let cell = tree
        .iter()
        .find(|n| ax(n, "role") == "cell" && ax(n, "name").ends_with(" / 10,000,000)"))
        .expect("the job's progress cell");
    assert_eq!(ax(cell, "name"), shown);
    ax_find(&tree, "button", &format!("Cancel job {id}"));
    ax_find(&tree, "spinbutton", &format!("Priority of job {id}"));
    let dark = json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]});
    client
        .issue_cmd(cdp("Emulation.setEmulatedMedia", dark))
        .await
        .unwrap();
    assert_eq!(low_contrast_text(&client).await, Vec::<String>::new());
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// One tab of a browser contributes at a time (two would run twice the Web
/// Workers the volunteer chose, on the same cores): a second tab waits,
/// connected with no chunks, and says so. Settings are the browser's:
/// pausing one tab pauses the other. The all-time count of what this
/// browser factored goes on across tabs (and page loads), beside each
/// tab's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tab_contributes_at_a_time_and_the_all_time_count_goes_on() {
    let server = TestServer::start(Config::default()).await;
    server.submit(an_outlasting_job()).await;
    let (_driver, client) = chromium().await;
    client.goto(&server.url()).await.unwrap();
    wait_text(&client, "conn", "connected").await;
    wait_text_where(&client, "factored", Duration::from_secs(30), |t| t != "0").await;
    let first_tab = client.window().await.unwrap();

    let second_tab = client.new_window(true).await.unwrap().handle;
    client.switch_to_window(second_tab.clone()).await.unwrap();
    client.goto(&server.url()).await.unwrap();
    wait_text(&client, "conn", "connected").await;
    the_second_tab_waits(&server, &client).await;
    // The operator's dashboard says which one waits its turn.
    let dashboard = client.new_window(true).await.unwrap().handle;
    client.switch_to_window(dashboard).await.unwrap();
    client
        .goto(&format!("{}dashboard", server.url()))
        .await
        .unwrap();
    fill(&client, "#token", "any (this server takes none)").await;
    click(&client, "#login button").await;
    let held: Vec<String> = eventually(Duration::from_secs(10), async || {
        let cells = client
            .execute(
                "return [...document.querySelectorAll('#workers tr')].map((r) => r.cells[6].textContent)",
                vec![],
            )
            .await
            .unwrap();
        let cells: Vec<String> = serde_json::from_value(cells).unwrap();
        if cells.len() == 2 { Ok(cells) } else { Err(format!("{cells:?}")) }
    })
    .await;
    assert!(held[0].contains(" of "), "{held:?}");
    assert_eq!(
        held[1], "0 (waiting: another tab of its browser contributes)",
        "{held:?}"
    );
    client.close_window().await.unwrap();

    // The first tab pauses (each tab is paused and its last chunks
    // finished before its figures are read: they are then final), which
    // pauses the second; it closes, and the second, resumed, contributes.
    // Its all-time count is then what both factored.
    let factored = |client: Client| async move {
        click(&client, "#toggle").await;
        wait_text(&client, "toggle", "Resume").await;
        eventually(Duration::from_secs(30), async || {
            let busy = client
                .execute(
                    "return document.querySelectorAll('#worker-list li.factoring, #worker-list li.finishing').length",
                    vec![],
                )
                .await
                .unwrap();
            if busy == 0 { Ok(()) } else { Err(format!("{busy} chunks never finished")) }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await; // a render after the last count
        let v = client
            .execute(
                "return [document.getElementById('factored').textContent,
                         document.getElementById('factored-total').textContent]",
                vec![],
            )
            .await
            .unwrap();
        let n = |i: usize| -> u64 { v[i].as_str().unwrap().replace(',', "").parse().unwrap() };
        (n(0), n(1))
    };
    client.switch_to_window(first_tab).await.unwrap();
    let (by_first, _) = factored(client.clone()).await;
    assert!(by_first > 0);
    // Both paused (settings are the browser's): neither waits its turn.
    wait_workers(&server, 10, "both tabs paused, neither waiting", |list| {
        let paused = |w: &serde_json::Value| w["slots"] == 0 && w["waiting"] == false;
        (list.len() == 2 && list.iter().all(paused)).then_some(())
    })
    .await;
    let metrics = server.text("/metrics", None).await;
    assert_eq!(
        metric(&metrics, "crowdfactor_workers_idle{reason=\"paused\"}"),
        2,
        "{metrics}"
    );
    client.close_window().await.unwrap();
    client.switch_to_window(second_tab).await.unwrap();
    wait_text(&client, "toggle", "Resume").await;
    assert_eq!(
        text(&client, "state-text").await,
        "Paused. Nothing is computed until you resume."
    );
    assert_eq!(text(&client, "factored").await, "0");
    click(&client, "#toggle").await;
    the_tab_took_over(&server, 20).await;
    let (by_second, all_time) = factored(client.clone()).await;
    assert!(by_second > 0);
    // Both tabs counted at once, none of it lost.
    assert_eq!(all_time, by_first + by_second);
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// The tab `client` shows, opened while another tab of the same browser
/// contributes: it waits, says so, and holds no chunk (nor asks for one)
/// for a few seconds while the other tab holds some.
async fn the_second_tab_waits(server: &TestServer, client: &Client) {
    wait_text_where(client, "state-text", Duration::from_secs(20), |t| {
        t.starts_with("Waiting: another tab of this browser contributes")
    })
    .await;
    for _ in 0..6 {
        let list = workers(server).await;
        let holding: Vec<_> = list.iter().map(|w| w["holding"].clone()).collect();
        assert_eq!(list.len(), 2, "{list:?}");
        assert!(holding[0] != 0 && holding[1] == 0, "{list:?}");
        assert_eq!(list[1]["slots"], 0, "{list:?}");
        // The operator sees it waits its turn, not paused by its volunteer.
        assert_eq!(list[1]["waiting"], true, "{list:?}");
        assert_eq!(list[0]["waiting"], false, "{list:?}");
        let metrics = server.text("/metrics", None).await;
        let idle = |reason: &str| {
            metric(
                &metrics,
                &format!("crowdfactor_workers_idle{{reason=\"{reason}\"}}"),
            )
        };
        assert_eq!((idle("waiting"), idle("paused")), (1, 0), "{metrics}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(text(client, "factored").await, "0");
    assert_eq!(client.title().await.unwrap(), "Waiting — crowdfactor");
}

/// Where the browser has no Web Locks (a page served over plain http by
/// another machine: they need a secure context) tabs take turns through a
/// lease in localStorage: a second tab waits; it takes over when the first
/// crashes (no `pagehide`: once the lease lapses), a third waits in turn
/// and takes over when the second closes; the job finishes. Tabs in the
/// background keep time meanwhile, though their own timers fire once a
/// minute (Chromium's intensive wake-up throttling, after five minutes
/// hidden; here after one second): the hidden holder renews its lease, and
/// the hidden waiting tab notices the crashed one's lapse within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_web_locks_tabs_take_turns_through_local_storage() {
    let server = TestServer::start(Config::default()).await;
    let (_driver, client) = chromium_tuned(
        &["--enable-features=IntensiveWakeUpThrottling:grace_period_seconds/1"],
        &["disable-background-timer-throttling"],
        json!({}),
    )
    .await;
    let no_locks = || {
        cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": "delete Navigator.prototype.locks;" }),
        )
    };
    let open_tab = async |new: bool| {
        if new {
            let tab = client.new_window(true).await.unwrap().handle;
            client.switch_to_window(tab).await.unwrap();
        }
        client.issue_cmd(no_locks()).await.unwrap();
        client.goto(&server.url()).await.unwrap();
        assert_eq!(
            client
                .execute("return 'locks' in navigator", vec![])
                .await
                .unwrap(),
            json!(false)
        );
        client.window().await.unwrap()
    };
    let first = open_tab(false).await;
    let (id, known) = a_job_that_outlasts_the_turns(&server, &client).await;
    let second = open_tab(true).await;
    the_second_tab_waits(&server, &client).await;
    // A blank tab in front, both hidden long enough to be throttled; then
    // the first tab's renderer crashes: its socket closes, its lease stays
    // until it lapses.
    client.switch_to_window(first).await.unwrap();
    client
        .issue_cmd(cdp("Target.createTarget", json!({ "url": "about:blank" })))
        .await
        .unwrap();
    assert_eq!(
        client
            .execute("return document.visibilityState", vec![])
            .await
            .unwrap(),
        "hidden"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = client.issue_cmd(cdp("Page.crash", json!({}))).await;
    // The second tab, hidden, takes over.
    the_tab_took_over(&server, 20).await;
    client.switch_to_window(second.clone()).await.unwrap();
    let third = open_tab(true).await;
    the_second_tab_waits(&server, &client).await;
    client.switch_to_window(second).await.unwrap();
    client.close_window().await.unwrap();
    client.switch_to_window(third).await.unwrap();
    // At once: the closing tab gave the lease back (a lapse takes 5 s).
    the_tab_took_over_and_finishes(&server, &client, 3, &id, &known).await;
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// With the page open and connected in `client`'s tab, slows this browser
/// to one Web Worker at 25 % (settings are the browser's: every tab takes
/// them), then submits some thousands of semiprimes of two 44-bit primes
/// (a few milliseconds each) in small chunks, and waits until the tab holds
/// some: at that speed the job lasts through what a test does with tabs
/// meanwhile, also on a fast machine.
async fn a_job_that_outlasts_the_turns(
    server: &TestServer,
    client: &Client,
) -> (String, Vec<(u128, [u128; 2])>) {
    wait_text(client, "conn", "connected").await;
    select(client, "#worker-count", "1").await;
    select(client, "#duty", "0.25").await;
    let known = known_semiprimes(6000, 44, 7);
    let id = server.submit_numbers(&numbers_of(&known), 50).await;
    wait_workers(server, 30, "the page took no chunk", holding).await;
    (id, known)
}

/// Waits at most `secs` seconds for one tab left, holding chunks.
async fn the_tab_took_over(server: &TestServer, secs: u64) {
    let list = wait_workers(server, secs, "the waiting tab took over", |list| {
        (list.len() == 1 && list[0]["holding"] != 0).then_some(list.to_vec())
    })
    .await;
    assert_eq!(list[0]["waiting"], false, "{list:?}");
}

/// [`the_tab_took_over`]; then, at full speed again, the tab (`client`
/// shows it) finishes the job of [`a_job_that_outlasts_the_turns`], every
/// number factored once, by tabs.
async fn the_tab_took_over_and_finishes(
    server: &TestServer,
    client: &Client,
    secs: u64,
    id: &str,
    known: &[(u128, [u128; 2])],
) {
    the_tab_took_over(server, secs).await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    select(client, "#worker-count", &cores.to_string()).await;
    select(client, "#duty", "1").await;
    let job = server.wait_done(id, Duration::from_secs(120)).await;
    assert_eq!(job["by_kind"]["browser"], known.len(), "{job}");
    assert_known_factors(known, &server.results(id).await);
}

/// A tab waiting for another tab of the same browser takes over when that
/// one closes, at once, and finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_tab_takes_over_when_the_contributing_one_closes() {
    let server = TestServer::start(Config::default()).await;
    let (_driver, client) = chromium().await;
    a_second_tab_waits_then_takes_over(&server, &client).await;
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// The same in Firefox (its Web Locks, its background tabs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_tabs_take_turns() {
    let server = TestServer::start(Config::default()).await;
    let (driver, client) = firefox().await;
    a_second_tab_waits_then_takes_over(&server, &client).await;
    assert_eq!(
        client
            .execute("return 'locks' in navigator", vec![])
            .await
            .unwrap(),
        json!(true)
    );
    let errors = firefox_page_errors(&driver, &server.url());
    assert!(errors.is_empty(), "Firefox printed errors: {errors:#?}");
    client.close().await.unwrap();
    server.shutdown().await;
}

/// With the page open in `client`'s tab, a second tab of the browser waits
/// for it; when the first closes, the second takes over at once and
/// finishes the job.
async fn a_second_tab_waits_then_takes_over(server: &TestServer, client: &Client) {
    client.goto(&server.url()).await.unwrap();
    let (id, known) = a_job_that_outlasts_the_turns(server, client).await;
    let first_tab = client.window().await.unwrap();
    let second_tab = client.new_window(true).await.unwrap().handle;
    client.switch_to_window(second_tab.clone()).await.unwrap();
    client.goto(&server.url()).await.unwrap();
    the_second_tab_waits(server, client).await;
    client.switch_to_window(first_tab).await.unwrap();
    client.close_window().await.unwrap();
    client.switch_to_window(second_tab).await.unwrap();
    the_tab_took_over_and_finishes(server, client, 5, &id, &known).await;
}

/// A tab handed many small chunks a second stores its all-time count and
/// redraws a few times a second, not once a chunk: an IndexedDB
/// transaction and a render per chunk grew the tab's renderer by hundreds
/// of megabytes in minutes and held it to a quarter of its speed. Counted
/// in the page (its IndexedDB transactions, the DOM changes it makes)
/// while the server counts the chunks it got back; the DOM must not grow
/// with the chunks either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_busy_with_small_chunks_stores_and_redraws_a_few_times_a_second() {
    let server = TestServer::start(Config::default()).await;
    let mut job = an_outlasting_job();
    job["chunk_size"] = json!(100);
    let id = server.submit(job).await;
    let (_driver, client) = chromium().await;
    client.goto(&server.url()).await.unwrap();
    wait_text(&client, "conn", "connected").await;
    wait_text_where(&client, "factored", Duration::from_secs(30), |t| t != "0").await;

    let dom_nodes = |client: Client| async move {
        client
            .issue_cmd(cdp("HeapProfiler.collectGarbage", json!({})))
            .await
            .unwrap();
        let counters = client
            .issue_cmd(cdp("Memory.getDOMCounters", json!({})))
            .await
            .unwrap();
        counters["nodes"].as_u64().unwrap()
    };
    let nodes_before = dom_nodes(client.clone()).await;
    client
        .execute(
            r#"window.seen = { transactions: 0, redraws: 0 };
               const open = IDBDatabase.prototype.transaction;
               IDBDatabase.prototype.transaction = function (...args) {
                 window.seen.transactions += 1;
                 return open.apply(this, args);
               };
               new MutationObserver(() => { window.seen.redraws += 1; }).observe(document.body,
                 { childList: true, characterData: true, attributes: true, subtree: true });"#,
            vec![],
        )
        .await
        .unwrap();
    let done_before = server.job(&id).await["done"].as_u64().unwrap();
    let watched = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let seen = client.execute("return window.seen", vec![]).await.unwrap();
    let secs = watched.elapsed().as_secs_f64();
    let chunks = (server.job(&id).await["done"].as_u64().unwrap() - done_before) / 100;
    let nodes_after = dom_nodes(client.clone()).await;

    // Without many chunks a second this would show nothing.
    assert!(
        chunks as f64 > 30.0 * secs,
        "{chunks} chunks in {secs:.1} s"
    );
    let transactions = seen["transactions"].as_f64().unwrap();
    let redraws = seen["redraws"].as_f64().unwrap();
    // A save a second; a render at most every tenth of a second, plus the
    // once-a-second render and the project figures every two seconds.
    assert!(
        transactions <= secs + 2.0,
        "{transactions} IndexedDB transactions for {chunks} chunks in {secs:.1} s"
    );
    assert!(
        redraws <= 15.0 * secs + 10.0,
        "{redraws} redraws for {chunks} chunks in {secs:.1} s"
    );
    assert!(
        nodes_after <= nodes_before + 50,
        "DOM nodes {nodes_before} → {nodes_after} after {chunks} chunks"
    );
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// Chunks that take a Web Worker a fraction of a millisecond (an owner's
/// small `chunk_size`) are queued several to a Web Worker, which starts the
/// next as soon as it posts a result instead of waiting for the result's
/// way to the server and the next chunk's way back: the tab asks for more
/// than two chunks a Web Worker. Pausing hands back at once those not
/// started; after Resume the tab finishes the job, each number factored
/// once (its count of numbers factored is the job's size) and right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_queues_quick_chunks_in_its_web_workers_and_hands_them_back_on_pause() {
    // Leases that never lapse: a chunk the tab lost would hold the job up
    // for an hour, not be leased again in 30 s.
    let server = TestServer::start(Config {
        lease_timeout: Duration::from_secs(3600),
        ..Config::default()
    })
    .await;
    let (_driver, client) = chromium().await;
    client.goto(&server.url()).await.unwrap();
    let threads = wait_workers(&server, 30, "no tab connected", |list| {
        list.first().map(|w| w["threads"].as_u64().unwrap())
    })
    .await;
    // At 25 % a Web Worker sleeps a few ms every few chunks, its queue
    // waiting: so chunks are queued in it when the pause comes, also where
    // the tests beside this one leave the coordinator slow to send them.
    select(&client, "#duty", "0.25").await;
    let count: u32 = 60_000;
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": count, "step": 2}, "chunk_size": 10}))
        .await;
    wait_workers(
        &server,
        30,
        "the tab asked for no more than two chunks a Web Worker",
        |list| {
            list.first()
                .filter(|w| w["slots"].as_u64().unwrap() > 2 * threads)
                .map(|_| ())
        },
    )
    .await;
    // Pause at a moment a Web Worker has a chunk queued behind the one it
    // runs (the chunks it was given since now, less those it answered,
    // tracked beside the page), in the same task as that check; then count
    // what the page tells its Web Workers.
    let paused = client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               const given = new Map();
               const post = Worker.prototype.postMessage;
               Worker.prototype.postMessage = function (msg, ...rest) {
                 if (window.told && msg && msg.type in window.told) window.told[msg.type] += 1;
                 if (msg && msg.type === 'chunk') {
                   if (!given.has(this)) {
                     const ids = new Set();
                     given.set(this, ids);
                     this.addEventListener('message', (e) => ids.delete(e.data && e.data.id));
                   }
                   given.get(this).add(msg.id);
                 }
                 return post.call(this, msg, ...rest);
               };
               const since = performance.now();
               const check = () => {
                 if ([...given.values()].some((ids) => ids.size >= 2)) {
                   window.told = { chunk: 0, cancel: 0 };
                   document.getElementById('toggle').click();
                   done(true);
                 } else if (performance.now() - since > 20000) {
                   done(false);
                 } else {
                   setTimeout(check, 0);
                 }
               };
               check();"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        paused.as_bool(),
        Some(true),
        "no Web Worker had a chunk queued in 20 s"
    );
    // The chunks running finish in a moment; those queued come back.
    wait_workers(&server, 5, "the paused tab kept its chunks", |list| {
        list.first()
            .filter(|w| w["slots"] == 0 && w["holding"] == 0)
            .map(|_| ())
    })
    .await;
    let done = server.job(&id).await["done"].clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let job = server.job(&id).await;
    assert_eq!(job["done"], done, "the paused tab went on: {job}");
    assert_ne!(job["state"], "done", "paused too late to tell: {job}");
    let told = client.execute("return window.told", vec![]).await.unwrap();
    assert_eq!(
        told["chunk"], 0,
        "chunks given to Web Workers after the pause: {told}"
    );
    assert!(
        told["cancel"].as_u64().unwrap() > 0,
        "the chunks queued in the Web Workers were left to run: {told}"
    );
    select(&client, "#duty", "1").await;
    click(&client, "#toggle").await;
    // (A few seconds' work; its chunks handed back are leased to it again.)
    server.wait_done(&id, Duration::from_secs(60)).await;
    the_tab_did(&server, &id, &range(999_999_999_999, count.into(), 2)).await;
    wait_text_where(&client, "factored", Duration::from_secs(10), |t| {
        t == "60,000"
    })
    .await;
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// The CPU limit holds for chunks of a few milliseconds too, queued several
/// to a Web Worker (each one slice, and no wait for the next): at 25 % the
/// tab's Web Worker thread works about a quarter of the time, as its CPU
/// time in /proc says. (Each chunk's sleep was its own before: a chunk too
/// short to owe 4 ms slept nothing, and with such chunks queued in it the
/// Web Worker worked 82 % of the time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_keeps_to_its_cpu_limit_with_quick_chunks() {
    let server = TestServer::start(Config::default()).await;
    let (driver, client) = chromium().await;
    client.goto(&server.url()).await.unwrap();
    wait_text(&client, "conn", "connected").await;
    select(&client, "#worker-count", "1").await;
    select(&client, "#duty", "0.25").await;
    wait_text_where(&client, "workers", Duration::from_secs(10), |t| t == "1").await;
    // Chunks of ~1.5 ms, far more than the test watches.
    server
        .submit(json!({"range": {"start": "999999999999", "count": 10_000_000, "step": 2}, "chunk_size": 500}))
        .await;
    wait_text_where(&client, "factored", Duration::from_secs(30), |t| t != "0").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cpu, watched) = (web_worker_cpu(&driver), Instant::now());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let share = (web_worker_cpu(&driver) - cpu) / watched.elapsed().as_secs_f64();
    assert!(
        share > 0.05,
        "the Web Worker worked {share:.2} of the time: not found, or not working"
    );
    assert!(
        share < 0.32,
        "at 25 % the Web Worker worked {share:.2} of the time"
    );
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// The CPU time (s) so far of the Web Worker threads of the browser that
/// `driver` started (the processes of its process group), from /proc.
fn web_worker_cpu(driver: &Driver) -> f64 {
    let group = driver.child.id();
    let mut seconds = 0.0;
    for process in std::fs::read_dir("/proc").unwrap().flatten() {
        if proc_stat(&process.path().join("stat")).is_none_or(|p| p.group != group) {
            continue;
        }
        let Ok(threads) = std::fs::read_dir(process.path().join("task")) else {
            continue;
        };
        for thread in threads.flatten() {
            let comm = std::fs::read_to_string(thread.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("DedicatedWorker") {
                continue;
            }
            if let Some(t) = proc_stat(&thread.path().join("stat")) {
                seconds += t.cpu_seconds;
            }
        }
    }
    seconds
}

/// A browser set to block cookies and site data refuses the pages
/// localStorage and sessionStorage (using them throws) and IndexedDB: the
/// page still contributes, with its default settings, says that settings
/// last only while the tab is open, and applies a change of them; the
/// dashboard still logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_blocks_site_data_still_contributes() {
    // No API token here: any the dashboard sends is taken.
    let server = TestServer::start(Config::default()).await;
    let blocked = json!({ "profile": { "default_content_setting_values": { "cookies": 2 } } });
    let (_driver, client) = chromium_tuned(&[], &[], blocked).await;
    client.goto(&server.url()).await.unwrap();
    let refused = client
        .execute(
            "try { localStorage.length; return false; } catch (e) { return true; }",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        refused,
        json!(true),
        "Chromium let the page use localStorage"
    );
    let note = client.find(Locator::Css("#storage-note")).await.unwrap();
    assert!(
        note.is_displayed().await.unwrap(),
        "no word that settings are not kept"
    );
    // A setting changed applies (one Web Worker), though it is not kept.
    select(&client, "#worker-count", "1").await;
    wait_text(&client, "workers", "1").await;
    the_page_factors_the_seed_range(&server, &client, 300).await;
    // Chromium refuses it Web Locks too: the tab contributes without
    // taking turns, and says nothing of them.
    let turns = client.find(Locator::Css("#turn-note")).await.unwrap();
    assert!(!turns.is_displayed().await.unwrap(), "turns said taken");
    client
        .goto(&format!("{}dashboard", server.url()))
        .await
        .unwrap();
    fill(&client, "#token", "any").await;
    click(&client, "#login button").await;
    let app = client.find(Locator::Id("app")).await.unwrap();
    eventually(Duration::from_secs(10), async || {
        match app.is_displayed().await.unwrap() {
            true => Ok(()),
            false => Err("the dashboard did not open"),
        }
    })
    .await;
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// With JavaScript off, the page does not claim to be starting: it says
/// that it computes nothing and why, and hides the controls and figures
/// that would do nothing; the dashboard points to the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_say_so_when_javascript_is_off() {
    let server = TestServer::start(Config::default()).await;
    let (_driver, client) = chromium_with(&["--blink-settings=scriptEnabled=false"]).await;
    let shown = |css: &'static str| {
        let client = client.clone();
        async move {
            let found = client.find(Locator::Css(css)).await.unwrap();
            found.is_displayed().await.unwrap()
        }
    };
    client.goto(&server.url()).await.unwrap();
    let note = client.find(Locator::Css("noscript p")).await.unwrap();
    assert!(note.is_displayed().await.unwrap());
    let said = note.text().await.unwrap();
    assert!(
        said.starts_with("JavaScript is off in this browser, so this tab computes nothing."),
        "{said}"
    );
    for inert in ["#toggle", "#state-text", "#worker-count", "#factored"] {
        assert!(!shown(inert).await, "{inert} is shown without JavaScript");
    }
    assert!(shown("h1").await);
    assert!(shown(".about").await, "what runs here stays");

    client
        .goto(&format!("{}dashboard", server.url()))
        .await
        .unwrap();
    let said = client
        .find(Locator::Css("noscript p"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(said.contains("crowdfactor-server jobs"), "{said}");
    for inert in ["#login", "#live"] {
        assert!(!shown(inert).await, "{inert} is shown without JavaScript");
    }
    client.close().await.unwrap();
    server.shutdown().await;
}

/// With WebAssembly off (Safari's Lockdown Mode, a browser policy; here V8
/// without its compilers, `--jitless`, which leaves `WebAssembly`
/// undefined), the page says that it computes nothing and
/// why, hides the controls and figures that would do nothing, takes no
/// chunk, and logs no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_says_so_when_webassembly_is_off() {
    let server = TestServer::start(Config::default()).await;
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": 100, "step": 2}}))
        .await;
    let (_driver, client) = chromium_with(&["--js-flags=--jitless"]).await;
    client.goto(&server.url()).await.unwrap();
    let wasm = client
        .execute("return typeof WebAssembly", vec![])
        .await
        .unwrap();
    assert_eq!(wasm, json!("undefined"), "WebAssembly is on");
    let note = client.find(Locator::Id("no-wasm")).await.unwrap();
    let said = eventually(Duration::from_secs(10), async || {
        match note.is_displayed().await.unwrap() {
            true => Ok(note.text().await.unwrap()),
            false => Err("no word that WebAssembly is off"),
        }
    })
    .await;
    assert!(
        said.starts_with("WebAssembly is off in this browser, so this tab computes nothing."),
        "{said}"
    );
    for inert in ["#toggle", "#state-text", "#worker-count", "#factored"] {
        let found = client.find(Locator::Css(inert)).await.unwrap();
        assert!(
            !found.is_displayed().await.unwrap(),
            "{inert} is shown without WebAssembly"
        );
    }
    // No socket (it would take chunks it cannot factor).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(workers(&server).await.is_empty(), "the page connected");
    assert_eq!(server.job(&id).await["done"], 0);
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// Every form control on the page has an accessible name (a label, an
/// aria-label or its own text); returns the ids of those that do not.
async fn unlabelled_controls(client: &Client) -> Vec<String> {
    let v = client
        .execute(
            r#"return [...document.querySelectorAll('input, select, button, textarea')]
                .filter(e => e.type !== 'hidden')
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                             && !e.getAttribute('aria-labelledby') && !e.textContent.trim())
                .map(e => e.id || e.name || e.outerHTML.slice(0, 60));"#,
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// Text whose contrast with its background is below WCAG AA (4.5:1, or 3:1
/// for large text); returns a description of each offender.
async fn low_contrast_text(client: &Client) -> Vec<String> {
    let v = client
        .execute(
            r#"const lum = (c) => {
                 const [r, g, b] = c.match(/[\d.]+/g).slice(0, 3).map(Number).map((v) => {
                   v /= 255;
                   return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
                 });
                 return 0.2126 * r + 0.7152 * g + 0.0722 * b;
               };
               const background = (el) => {
                 for (; el; el = el.parentElement) {
                   const c = getComputedStyle(el).backgroundColor;
                   const m = c.match(/[\d.]+/g);
                   if (m && (m.length < 4 || Number(m[3]) > 0)) return c;
                 }
                 return 'rgb(255, 255, 255)';
               };
               const bad = [];
               for (const el of document.querySelectorAll('body *')) {
                 const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
                 const st = getComputedStyle(el);
                 if (!own || st.display === 'none' || st.visibility === 'hidden' || !el.getClientRects().length) continue;
                 const a = lum(st.color), b = lum(background(el));
                 const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
                 const size = parseFloat(st.fontSize), bold = Number(st.fontWeight) >= 700;
                 const need = size >= 24 || (size >= 18.66 && bold) ? 3 : 4.5;
                 if (ratio < need) bad.push(`${el.tagName}#${el.id}: ${ratio.toFixed(2)} < ${need}: ${el.textContent.trim().slice(0, 40)}`);
               }
               return bad;"#,
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// Waits until the element is displayed.
async fn wait_visible(client: &Client, css: &str) {
    eventually(Duration::from_secs(10), async || {
        if let Ok(e) = client.find(Locator::Css(css)).await {
            if e.is_displayed().await.unwrap_or(false) {
                return Ok(());
            }
        }
        Err(format!("{css} never shown"))
    })
    .await;
}

/// Presses Tab until the element with `id` has the focus; panics if it is
/// not reachable within 20 presses.
async fn tab_to(client: &Client, id: &str) {
    for _ in 0..20 {
        let focused = client
            .execute(
                "return document.activeElement && document.activeElement.id",
                vec![],
            )
            .await
            .unwrap();
        if focused == json!(id) {
            return;
        }
        client
            .active_element()
            .await
            .unwrap()
            .send_keys("\u{E004}")
            .await
            .unwrap();
    }
    panic!("#{id} cannot be reached with the Tab key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_tab_factors_a_job_and_works_from_the_keyboard() {
    let server = TestServer::start(Config::default()).await;
    let numbers = range(999_999_999_999, 300, 2);
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": 300, "step": 2}}))
        .await;
    let (driver, client) = firefox().await;
    client.goto(&server.url()).await.unwrap();
    let agent: String = client
        .execute("return navigator.userAgent", vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    assert!(agent.contains("Firefox"), "{agent}");
    let job = server.wait_done(&id, Duration::from_secs(120)).await;
    assert_eq!(
        job["by_kind"]["browser"], 300,
        "all done by the Firefox tab: {job}"
    );
    assert_matches_gnu(&numbers, &server.results(&id).await);
    wait_text(&client, "factored", "300").await;
    assert_eq!(text(&client, "conn").await, "connected");
    // The project figures are live, not a cached first answer.
    wait_text(
        &client,
        "project",
        "No active jobs right now; 1 worker connection. This tab waits for work.",
    )
    .await;
    assert_eq!(unlabelled_controls(&client).await, Vec::<String>::new());
    // Firefox's own accessible names (what its screen readers are given).
    assert_eq!(unnamed_by_the_browser(&client).await, Vec::<String>::new());

    // Keyboard only: Tab to Pause and press Space; the tab stops taking work.
    client
        .execute(
            "document.activeElement && document.activeElement.blur()",
            vec![],
        )
        .await
        .unwrap();
    tab_to(&client, "toggle").await;
    client
        .active_element()
        .await
        .unwrap()
        .send_keys(" ")
        .await
        .unwrap();
    wait_text(&client, "toggle", "Resume").await;
    let paused = server
        .submit(json!({"numbers": ["12", "1000000000001"]}))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        server.job(&paused).await["done"],
        0,
        "a paused tab takes no work"
    );
    // Enter works too, and the worker-count select is reachable and usable.
    client
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    let job = server.wait_done(&paused, Duration::from_secs(30)).await;
    assert_eq!(job["by_kind"]["browser"], 2);
    tab_to(&client, "worker-count").await;
    select(&client, "#worker-count", "1").await;
    wait_text(&client, "workers", "1").await;
    let last = server
        .submit(json!({"range": {"start": "1000000000001", "count": 50, "step": 2}}))
        .await;
    let job = server.wait_done(&last, Duration::from_secs(60)).await;
    assert_eq!(job["by_kind"]["browser"], 50);
    save_screenshot(&client, "page-firefox.png").await;

    // The dashboard in Firefox: log in, submit a range through the form,
    // watch a native worker take it to 100 %.
    client
        .goto(&format!("{}dashboard", server.url()))
        .await
        .unwrap();
    fill(&client, "#token", "firefox-token").await;
    click(&client, "#login button").await;
    click(&client, "input[name=kind][value=range]").await;
    fill(&client, "#range-count", "200").await;
    click(&client, "#submit button").await;
    let submitted = wait_text_where(&client, "submit-result", Duration::from_secs(10), |t| {
        t.starts_with("Submitted job")
    })
    .await;
    let dashboard_job = submitted
        .trim_start_matches("Submitted job ")
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .to_owned();
    let _worker = WorkerProc::spawn(&server, &["--threads", "1"]);
    wait_job_shown_done(&client, &dashboard_job).await;
    let job = server.job(&dashboard_job).await;
    assert_eq!(
        (&job["state"], &job["by_kind"]["native"]),
        (&json!("done"), &json!(200)),
        "{job}"
    );
    let errors = firefox_page_errors(&driver, &server.url());
    assert!(errors.is_empty(), "Firefox printed errors: {errors:#?}");
    the_policy_blocked_nothing_and_reports_what_it_blocks(&server, None, &client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_fits_a_phone_screen_and_has_labels_and_contrast() {
    let server = TestServer::start(Config {
        api_token: Some("phone-token".into()),
        ..Config::default()
    })
    .await;
    let (_driver, client) = chromium().await;
    client.set_window_size(390, 844).await.unwrap();
    client.goto(&server.url()).await.unwrap();
    wait_text(&client, "conn", "connected").await;
    let layout = client
        .execute(
            r#"const t = document.getElementById('toggle').getBoundingClientRect();
               return {overflow: document.documentElement.scrollWidth - window.innerWidth,
                       toggle_left: t.left, toggle_right: t.right, width: window.innerWidth,
                       toggle_height: t.height};"#,
            vec![],
        )
        .await
        .unwrap();
    assert!(
        layout["overflow"].as_f64().unwrap() <= 0.0,
        "no sideways scrolling: {layout}"
    );
    assert!(
        layout["toggle_left"].as_f64().unwrap() >= 0.0
            && layout["toggle_right"].as_f64().unwrap() <= layout["width"].as_f64().unwrap(),
        "Pause is on screen: {layout}"
    );
    assert!(
        layout["toggle_height"].as_f64().unwrap() >= 40.0,
        "Pause is a big enough touch target: {layout}"
    );
    assert_eq!(unlabelled_controls(&client).await, Vec::<String>::new());
    assert_eq!(low_contrast_text(&client).await, Vec::<String>::new());
    save_screenshot(&client, "page-phone.png").await;
    client
        .goto(&format!("{}dashboard", server.url()))
        .await
        .unwrap();
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_f64().unwrap() <= 0.0,
        "dashboard login fits: {overflow}"
    );
    assert_eq!(unlabelled_controls(&client).await, Vec::<String>::new());
    assert_eq!(low_contrast_text(&client).await, Vec::<String>::new());
    // Logged in, at desktop width: forms, tables and chart labels.
    client.set_window_size(1200, 900).await.unwrap();
    fill(&client, "#token", "phone-token").await;
    click(&client, "#login button").await;
    wait_visible(&client, "#submit").await;
    assert_eq!(unlabelled_controls(&client).await, Vec::<String>::new());
    assert_eq!(low_contrast_text(&client).await, Vec::<String>::new());
    assert_no_console_errors(&client).await;
    client.close().await.unwrap();
    server.shutdown().await;
}

/// What a browser is sent for the page's largest file, the wasm factorizer:
/// gzipped when it asks for that (a third of the size), the same bytes
/// plain otherwise, and `304` with no body when it revalidates its copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasm_is_sent_gzipped_and_revalidated() {
    let server = TestServer::start(Config::default()).await;
    let url = format!("{}pkg/crowdfactor_wasm_bg.wasm", server.url());
    let http = reqwest::Client::new();
    let plain = http.get(&url).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(
        plain.headers().get("strict-transport-security").is_none(),
        "HSTS over plain HTTP"
    );
    let etag = plain.headers()["etag"].to_str().unwrap().to_owned();
    let plain = plain.bytes().await.unwrap();
    assert_eq!(&plain[..4], b"\0asm");
    let gz = http
        .get(&url)
        .header("accept-encoding", "gzip, deflate, br, zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.status(), 200);
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    assert_eq!(gz.headers()["content-type"], "application/wasm");
    assert_eq!(gz.headers()["etag"].to_str().unwrap(), etag);
    let gz = gz.bytes().await.unwrap();
    assert!(
        gz.len() * 2 < plain.len(),
        "{} of {} bytes",
        gz.len(),
        plain.len()
    );
    assert!(
        gunzip(&gz) == plain,
        "the gzipped body unpacks to the plain one"
    );
    let again = http
        .get(&url)
        .header("if-none-match", &etag)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());
    server.shutdown().await;
}

/// Every file the pages link (scripts, styles, the icon) is served with its
/// type: a browser asks for `/favicon.ico` (a 404 in its console) unless
/// the page names an icon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_the_pages_link_is_served() {
    let server = TestServer::start(Config::default()).await;
    let http = reqwest::Client::new();
    for page in ["", "dashboard"] {
        let html = http
            .get(format!("{}{page}", server.url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains(r#"rel="icon""#), "{page}: no icon");
        let links: Vec<&str> = html
            .split(['"', '\''])
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0].ends_with("href=") || w[0].ends_with("src="))
            .map(|w| w[1])
            .collect();
        assert!(links.len() >= 3, "{page}: {links:?}");
        for link in links {
            let resp = http
                .get(format!("{}{link}", server.url()))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{page}: {link}");
            let kind = resp.headers()["content-type"].to_str().unwrap().to_owned();
            let want = match link.rsplit('.').next() {
                Some("js") => "text/javascript",
                Some("css") => "text/css",
                Some("svg") => "image/svg+xml",
                other => panic!("{page}: unexpected link {link} ({other:?})"),
            };
            assert!(kind.starts_with(want), "{link}: {kind}");
        }
    }
    server.shutdown().await;
}

//! Browser end to end: headless Chromium, driven over WebDriver, opens the
//! volunteer page; its Web Workers (wasm) factor a whole job.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crowdfactor_e2e::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn chromium() -> (Driver, Client) {
    let driver_path =
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let port = free_port();
    let driver = Driver(
        Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {driver_path}: {e} (run scripts/setup.sh --browser)")
            }),
    );
    let mut caps = serde_json::Map::new();
    let mut opts = json!({
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync", "--window-size=1200,900"
        ]
    });
    if let Ok(bin) = std::env::var("CHROME") {
        opts["binary"] = json!(bin);
    }
    caps.insert("goog:chromeOptions".into(), opts);
    let start = Instant::now();
    let client = loop {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) if start.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a WebDriver session: {e}"),
        }
    };
    (driver, client)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_tab_factors_a_whole_job_in_web_workers() {
    let server = TestServer::start(Config::default()).await;
    let wasm = reqwest::get(format!("{}pkg/crowdfactor_wasm_bg.wasm", server.url()))
        .await
        .unwrap();
    assert_eq!(
        wasm.status().as_u16(),
        200,
        "the server was built without web/pkg: run scripts/build-wasm.sh, then rebuild"
    );
    let numbers = range(999_999_999_999, 1000, 2);
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": 1000, "step": 2}}))
        .await;

    let (_driver, client) = chromium().await;
    client.goto(&server.url()).await.unwrap();
    let job = server.wait_done(&id, Duration::from_secs(120)).await;
    assert_eq!(
        job["by_kind"]["browser"], 1000,
        "all done by the page: {job}"
    );
    assert_matches_gnu(&numbers, &server.results(&id).await);

    // The page reports what it did: one Web Worker per core, 1000 numbers.
    let cores: u64 = client
        .execute("return navigator.hardwareConcurrency", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    assert_eq!(text(&client, "workers").await, cores.to_string());
    let start = Instant::now();
    while text(&client, "factored").await != "1,000" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "page shows {}",
            text(&client, "factored").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(text(&client, "conn").await, "connected");

    // Fewer workers and a 25 % duty cycle, changed live: the next job still
    // completes exactly, done by this tab.
    select(&client, "#worker-count", "1").await;
    select(&client, "#duty", "0.25").await;
    let start = Instant::now();
    while text(&client, "workers").await != "1" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "worker count not applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    assert_eq!(text(&client, "toggle").await, "Resume");
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

    client.close().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_submits_a_job_and_shows_it_reach_100_percent() {
    let server = TestServer::start(Config {
        api_token: Some("dash-token".into()),
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
    let start = Instant::now();
    while text(&client, "login-error").await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "wrong token not refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fill(&client, "#token", "dash-token").await;
    click(&client, "#login button").await;

    // Submit a range through the form.
    click(&client, "input[name=kind][value=range]").await;
    fill(&client, "#range-count", "300").await;
    click(&client, "#submit button").await;
    let start = Instant::now();
    while !text(&client, "submit-result")
        .await
        .starts_with("Submitted job")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "submit failed: {}",
            text(&client, "submit-result").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _worker = WorkerProc::spawn(&server, &["--threads", "1", "--name", "dash-test"]);
    let start = Instant::now();
    loop {
        let cells = client
            .find_all(Locator::Css("#jobs td[data-job] span"))
            .await
            .unwrap();
        let mut shown = String::new();
        if let Some(c) = cells.first() {
            shown = c.text().await.unwrap();
        }
        if shown.starts_with("100 %") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "dashboard shows {shown:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let workers = client
        .find(Locator::Id("workers"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        workers.contains("native") && workers.contains("dash-test"),
        "{workers}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .unwrap();
    save_screenshot(&client, "dashboard.png").await;
    client.close().await.unwrap();
    server.shutdown().await;
}

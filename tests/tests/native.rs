//! Native end to end: a real coordinator, real `crowdfactor-worker`
//! processes over real sockets, results checked against GNU `factor`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crowdfactor_e2e::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_job_two_workers_matches_gnu_factor() {
    let server = TestServer::start(Config::default()).await;
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": 1000, "step": 2}}))
        .await;
    let job = server.job(&id).await;
    assert_eq!(
        (
            job["state"].as_str(),
            job["total"].as_u64(),
            job["chunks"].as_u64()
        ),
        (Some("queued"), Some(1000), Some(0)),
        "chunks are cut when leased; none is accepted yet"
    );

    let mut w1 = WorkerProc::spawn(&server, &["--threads", "1", "--exit-when-idle"]);
    let mut w2 = WorkerProc::spawn(&server, &["--threads", "1", "--exit-when-idle"]);
    let job = server.wait_done(&id, Duration::from_secs(120)).await;
    assert_eq!(job["done"], 1000);
    assert_eq!(
        job["by_kind"]["native"], 1000,
        "each number counted once: {job}"
    );

    let numbers = range(999_999_999_999, 1000, 2);
    assert_matches_gnu(&numbers, &server.results(&id).await);
    assert_eq!(
        w1.wait(Duration::from_secs(30)),
        Some(0),
        "--exit-when-idle exits 0"
    );
    assert_eq!(w2.wait(Duration::from_secs(30)), Some(0));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_survives_a_worker_killed_mid_job() {
    let server = TestServer::start(Config::default()).await;
    // Semiprimes of two 44-bit primes take ECM ~1 ms each, so the job
    // (~2 s of CPU) lasts long enough to kill a worker in the middle of it,
    // also on a fast machine (31-bit ones, ~0.1 s in all, once finished
    // between two looks at the job).
    let known = known_semiprimes(1500, 44, 42);
    let numbers = numbers_of(&known);
    let id = server.submit_numbers(&numbers, 5).await;

    let mut victim = WorkerProc::spawn(&server, &["--threads", "1"]);
    let _survivor = WorkerProc::spawn(&server, &["--threads", "1"]);
    // Wait until the job is under way, then pull the plug on one worker.
    let job = server
        .wait_progress(&id, 100, Duration::from_secs(60))
        .await;
    assert!(
        job["done"].as_u64().unwrap() < numbers.len() as u64,
        "job finished before the kill: {job}"
    );
    victim.kill9();

    let job = server.wait_done(&id, Duration::from_secs(300)).await;
    assert_eq!(job["done"], numbers.len());
    assert_eq!(
        job["by_kind"]["native"],
        numbers.len(),
        "no result accepted twice: {job}"
    );
    assert_known_factors(&known, &server.results(&id).await);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_jobs_are_rejected_and_nothing_is_queued() {
    let server = TestServer::start(Config::default()).await;
    for (body, item) in [
        (json!({"numbers": ["12", "abc"]}), "numbers[1]"),
        (
            json!({"numbers": ["340282366920938463463374607431768211456"]}),
            "numbers[0]",
        ),
        (json!({"numbers": [1, 0]}), "numbers[1]"),
        (json!({"numbers": [5, -7]}), "numbers[1]"),
        (
            json!({"range": {"start": "340282366920938463463374607431768211000", "count": 1000}}),
            "range",
        ),
    ] {
        let (status, v) = server.post_job(&body).await;
        assert_eq!(status, 400, "{body} -> {v}");
        assert_eq!(v["error"]["item"], item, "{body} -> {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(item));
    }
    let (status, v) = server.post_job(&json!({"numbers": []})).await;
    assert_eq!(status, 400, "{v}");
    // The query string holds a JSON job's priority, chunk_size or name as
    // it does a plain-text job's: not ignored, each given in one place.
    let with_query = async |body: serde_json::Value, query: &[(&str, &str)]| {
        let resp = server
            .job_request(body.to_string())
            .query(query)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<serde_json::Value>().await.unwrap())
    };
    for (body, query, item) in [
        (
            json!({"numbers": ["12"], "priority": 1}),
            ("priority", "7"),
            "priority",
        ),
        (json!({"numbers": ["12"]}), ("prio", "7"), "prio"),
        (json!({"numbers": ["12"]}), ("priority", "high"), "priority"),
        (
            json!({"numbers": ["12"], "name": "a"}),
            ("name", "b"),
            "name",
        ),
    ] {
        let (status, v) = with_query(body.clone(), &[query]).await;
        assert_eq!(status, 400, "{body} ?{query:?} -> {v}");
        assert_eq!(v["error"]["item"], item, "{body} ?{query:?} -> {v}");
    }
    assert_eq!(
        server.get("/api/jobs").await.1["jobs"],
        json!([]),
        "nothing was queued"
    );
    assert_eq!(server.get("/api/jobs/99").await.0, 404);
    let (status, v) = with_query(
        json!({"range": {"start": "10", "count": 5}, "chunk_size": 2}),
        &[("priority", "7"), ("name", "from the query")],
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        (&v["priority"], &v["name"], &v["chunk_size"]),
        (&json!(7), &json!("from the query"), &json!(2)),
        "{v}"
    );
    server.shutdown().await;
}

/// A job over the body limit gets `413` naming the limits, and nothing is
/// queued; the owner CLI streams a file as it reads it (chunked, never
/// whole in memory), so a list of any length goes through or is refused
/// the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_job_is_refused_with_the_limits_and_files_stream() {
    let server = TestServer::start(Config {
        max_body_bytes: 1 << 20,
        max_numbers_per_job: 200_000,
        ..Config::default()
    })
    .await;
    let big: Vec<String> = (0..100_000u64)
        .map(|i| (1_000_000_000_001 + i).to_string())
        .collect();
    let (status, v) = server.post_job(&json!({ "numbers": big })).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "too_large", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("1 MiB") && message.contains("200000 numbers"),
        "{message}"
    );

    let dir = temp_dir("streamed-file");
    // `submit --file` against `url`, with `token` or none.
    let submit_file = |url: String, token: Option<&str>, file: &std::path::Path| {
        let mut cmd = std::process::Command::new(bin("crowdfactor-server"));
        cmd.args(["submit", "--file"])
            .arg(file)
            .env("CROWDFACTOR_URL", url);
        match token {
            Some(t) => cmd.env("CROWDFACTOR_TOKEN", t),
            None => cmd.env_remove("CROWDFACTOR_TOKEN"),
        };
        cmd.output().unwrap()
    };
    let too_big = dir.join("too-big.txt");
    std::fs::write(&too_big, big.join("\n")).unwrap();
    let refused = submit_file(server.url(), None, &too_big);
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("413"),
        "{refused:?}"
    );
    assert_eq!(server.get("/api/jobs").await.1["jobs"], json!([]));

    // Just under the limit, cut by commas and blanks across the reader's
    // blocks: every number arrives.
    let fits: Vec<u128> = (0..60_000u128).map(|i| 999_999_999_999 + 2 * i).collect();
    let text: Vec<String> = fits
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n}{}", if i % 3 == 0 { ",\t" } else { "\r\n" }))
        .collect();
    let list = dir.join("list.csv");
    std::fs::write(&list, format!("\u{feff}{}", text.concat())).unwrap();
    let ok = submit_file(server.url(), None, &list);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let id = String::from_utf8_lossy(&ok.stdout).trim().to_owned();
    assert_eq!(server.job(&id).await["total"], 60_000);
    let mut worker = WorkerProc::spawn(&server, &["--exit-when-idle"]);
    server.wait_done(&id, Duration::from_secs(120)).await;
    assert_matches_gnu(&fits, &server.results(&id).await);
    assert_eq!(worker.wait(Duration::from_secs(30)), Some(0));

    // A wrong token is reported as such, not as the broken pipe of an
    // upload the server refused at once.
    let guarded = TestServer::start(Config {
        api_token: Some("s3cret".into()),
        ..Config::default()
    })
    .await;
    let long = dir.join("long.txt");
    let numbers: Vec<String> = (0..500_000u64)
        .map(|i| (1_000_000_000_001 + i).to_string())
        .collect();
    std::fs::write(&long, numbers.join("\n")).unwrap();
    let wrong = submit_file(guarded.url(), Some("guess"), &long);
    assert_eq!(wrong.status.code(), Some(3), "{wrong:?}");
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("401"),
        "{wrong:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    guarded.shutdown().await;
    server.shutdown().await;
}

/// A large upload that stalls holds its turn only until the server closes
/// the connection for want of progress (1.5 × the idle timeout): the next
/// large body then goes through.
/// Open list jobs hold their numbers in the server's memory (8 bytes
/// each below 2^64): past `--max-list-memory` a new list is refused with
/// `503 queue_full` and nothing queued, a list that could never fit gets
/// `413`, ranges always go, and a job that is cancelled or finishes makes
/// room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_lists_are_held_within_the_memory_limit() {
    let server = TestServer::start(Config {
        max_list_bytes: 8 * 1000,
        ..Config::default()
    })
    .await;
    // Falling: numbers rising by one step would be kept as a range.
    let list = |from: u128, count: u128| {
        let numbers: Vec<String> = (from..from + count).rev().map(|n| n.to_string()).collect();
        json!({ "numbers": numbers })
    };
    let first = server.submit(list(1_000, 600)).await;
    let (status, v) = server.post_job(&list(5_000, 600)).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "queue_full", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("4800 bytes") && message.contains("8000 bytes"),
        "{message}"
    );
    let (status, v) = server.post_job(&list(5_000, 1_001)).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "too_large", "{v}");
    let jobs = server.get("/api/jobs").await.1;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1, "{jobs}");
    let range = server
        .submit(json!({"range": {"start": "999999999999", "count": 1000000, "step": 2}}))
        .await;
    // So do lists whose numbers rise by one step: they are kept as ranges.
    let in_step: Vec<String> = (7_000..8_001).map(|n| n.to_string()).collect();
    let stepped = server.submit(json!({ "numbers": in_step })).await;

    let http = reqwest::Client::new();
    let cancel = format!("{}api/jobs/{first}", server.url());
    assert_eq!(http.delete(&cancel).send().await.unwrap().status(), 200);
    let second = server.submit(list(5_000, 600)).await;
    let metrics = server.text("/metrics", None).await;
    assert!(
        metrics.contains("crowdfactor_list_memory_bytes 4800")
            && metrics.contains("crowdfactor_list_memory_limit_bytes 8000"),
        "{metrics}"
    );
    // The list goes before the (later, larger) range once it has priority.
    let patch = format!("{}api/jobs/{range}", server.url());
    let resp = http
        .patch(&patch)
        .body(r#"{"priority": -1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _worker = WorkerProc::spawn(&server, &[]);
    server.wait_done(&second, Duration::from_secs(60)).await;
    assert_matches_gnu(
        &(5_000..5_600).collect::<Vec<_>>(),
        &server.results(&second).await,
    );
    server.wait_done(&stepped, Duration::from_secs(60)).await;
    assert_matches_gnu(
        &(7_000..8_001).collect::<Vec<_>>(),
        &server.results(&stepped).await,
    );
    // Finished: its room is free again (once the coordinator has taken in
    // the commit that finished it), for a list of the whole limit.
    eventually(Duration::from_secs(10), async || {
        let metrics = server.text("/metrics", None).await;
        if metrics.contains("crowdfactor_list_memory_bytes 0\n") {
            Ok(())
        } else {
            Err(format!("room not freed: {metrics}"))
        }
    })
    .await;
    server.submit(list(10_000, 1_000)).await;
    server.shutdown().await;
}

/// A large JSON job (no declared length, or over a sixteenth of the body
/// limit) is parsed as it arrives, in whatever pieces it comes: the answer
/// is the one the whole body gets, and over the limit it is `413` even
/// when the parser stopped at an error near the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_json_job_is_read_as_it_arrives() {
    let server = TestServer::start(Config {
        max_body_bytes: 1 << 20,
        ..Config::default()
    })
    .await;
    // `text` in pieces of `size` bytes, of no declared length.
    let send = |text: String, size: usize| {
        let pieces: Vec<Result<Vec<u8>, std::io::Error>> = text
            .as_bytes()
            .chunks(size)
            .map(|c| Ok(c.to_vec()))
            .collect();
        let request = server
            .job_request(String::new())
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                pieces,
            )));
        async move {
            let resp = request.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let numbers: Vec<String> = (0..20_000u64)
        .map(|i| (1_000_000_000_001 + 2 * i).to_string())
        .collect();
    let mut json = json!({ "name": "in pieces", "numbers": numbers }).to_string();
    for size in [7, 1000, 70_000] {
        let (status, job) = send(json.clone(), size).await;
        assert_eq!(status, 201, "{job}");
        assert_eq!(job["total"], 20_000, "{job}");
        assert_eq!(job["name"], "in pieces", "{job}");
    }
    // The same bad item, whole and in pieces.
    json = json.replacen("1000000000003", "10000x0000003", 1);
    let (status, whole) = server.post_job_text(json.clone()).await;
    assert_eq!(status, 400, "{whole}");
    assert_eq!(whole["error"]["item"], "numbers[1]", "{whole}");
    assert_eq!(send(json, 13).await, (400, whole));
    // Not JSON from the second byte: refused as whole...
    let broken = format!("{{,{}", " ".repeat(500_000));
    let (status, whole) = server.post_job_text(broken.clone()).await;
    assert_eq!(status, 400, "{whole}");
    assert_eq!(whole["error"]["code"], "bad_json", "{whole}");
    assert_eq!(send(broken.clone(), 4096).await, (400, whole));
    // ...but over the limit it is too large, however early it went wrong.
    let (status, v) = send(broken.repeat(3), 4096).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (413, &json!("too_large")),
        "{v}"
    );
    let jobs = server.get("/api/jobs").await.1;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(3), "{jobs}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_large_upload_gives_up_its_turn() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(Config {
        max_body_bytes: 1 << 20,
        idle_timeout: Duration::from_secs(2),
        ..Config::default()
    })
    .await;
    let numbers: Vec<String> = (1_000_000..1_010_000u64).map(|n| n.to_string()).collect();
    let body = json!({ "numbers": numbers }).to_string();
    let mut raw = server.raw_job_upload(body.len()).await;
    raw.write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (status, job) = tokio::time::timeout(Duration::from_secs(30), server.post_job_text(body))
        .await
        .expect("the stalled upload's turn ends");
    assert_eq!(status, 201, "{job}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it waited for the stalled one: {:?}",
        started.elapsed()
    );
    // The stalled connection was closed; nothing of it was queued.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await;
    let jobs = server.get("/api/jobs").await.1;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "{jobs}");
    server.shutdown().await;
}

/// Large job bodies are read and parsed one at a time (each takes its list's
/// memory while parsed): a second waits while the first is still
/// arriving, small jobs pass meanwhile, and both large ones are then queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_job_bodies_take_turns_and_small_ones_pass() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Large: over 1/16 of the 1 MiB limit.
    let server = TestServer::start(Config {
        max_body_bytes: 1 << 20,
        ..Config::default()
    })
    .await;
    let list = |from: u64| {
        let numbers: Vec<String> = (from..from + 10_000).map(|n| n.to_string()).collect();
        json!({ "numbers": numbers }).to_string()
    };
    let (first, second) = (list(1_000_000), list(2_000_000));
    assert!(first.len() > 64 << 10);
    // The first: headers and all but its last byte, then a pause.
    let mut raw = server.raw_job_upload(first.len()).await;
    raw.write_all(&first.as_bytes()[..first.len() - 1])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let request = server.job_request(second);
    let waiting = tokio::spawn(async move { request.send().await.unwrap().status().as_u16() });
    let (status, small) = server.post_job(&json!({ "numbers": ["12"] })).await;
    assert_eq!(status, 201, "{small}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "the second large body waits its turn"
    );
    let jobs = server.get("/api/jobs").await.1;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "{jobs}");

    raw.write_all(&first.as_bytes()[first.len() - 1..])
        .await
        .unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(waiting.await.unwrap(), 201);
    let jobs = server.get("/api/jobs").await.1;
    let mut ids: Vec<u64> = job_ids(&jobs)
        .iter()
        .map(|id| id.parse().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids.len(), 3, "{jobs}");
    for id in &ids[1..] {
        let job = server.job(&id.to_string()).await;
        assert_eq!(job["total"], 10_000, "{job}");
    }
    server.shutdown().await;
}

/// A large list is parsed off the async threads, as JSON and as plain text
/// (parsed as it arrives): here the server shares one thread with a task
/// that ticks every 5 ms, which must keep ticking while the job is read,
/// parsed and stored.
#[tokio::test(flavor = "current_thread")]
async fn parsing_a_large_job_holds_up_nothing_else() {
    let server = TestServer::start(Config::default()).await;
    // Falling, so that they stay a list (numbers rising by one step are
    // kept as a range).
    let numbers: Vec<String> = (0..1_000_000u64)
        .rev()
        .map(|i| (1_000_000_000_000 + i).to_string())
        .collect();
    // Written before the clock starts: the client shares the thread too.
    let json = json!({ "numbers": numbers }).to_string();
    let text = numbers.join("\n");
    drop(numbers);
    let json = server.job_request(json);
    let text = reqwest::Client::new()
        .post(format!("{}api/jobs", server.url()))
        .header("content-type", "text/plain")
        .body(text);
    for request in [json, text] {
        ticking_while(request).await;
    }
    server.shutdown().await;
}

/// Sends `request`, a job of a million numbers, while a task ticks every
/// 5 ms on the same thread: the ticks must go on.
async fn ticking_while(request: reqwest::RequestBuilder) {
    use std::sync::{Arc, Mutex};
    let longest_gap = Arc::new(Mutex::new(Duration::ZERO));
    let ticker = tokio::spawn({
        let longest_gap = longest_gap.clone();
        async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let gap = last.elapsed();
                last = Instant::now();
                let mut longest = longest_gap.lock().unwrap();
                *longest = (*longest).max(gap);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    let job: serde_json::Value = resp.json().await.unwrap();
    let took = started.elapsed();
    ticker.abort();
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["total"], 1_000_000, "{job}");
    let longest = *longest_gap.lock().unwrap();
    assert!(
        longest * 4 < took,
        "the ticker stood still for {longest:?} of the {took:?} the job took"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_reconnects_after_the_server_restarts_on_the_same_port() {
    let server = TestServer::start(Config::default()).await;
    let addr = server.addr;
    let _worker = WorkerProc::spawn(&server, &["--threads", "1"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A new coordinator on the same address: the worker finds it by itself.
    let server = TestServer::start_on(addr, Config::default()).await;
    let id = server
        .submit(json!({"numbers": ["1000000000001", "12"]}))
        .await;
    let job = server.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(job["by_kind"]["native"], 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_worker_tokens_are_enforced() {
    let server = TestServer::start(Config {
        api_token: Some("s3cret".into()),
        worker_token: Some("w0rker".into()),
        ..Config::default()
    })
    .await;
    let http = reqwest::Client::new();
    let jobs = format!("http://{}/api/jobs", server.addr);
    for (auth, why) in [
        (None, "no token was given"),
        (Some("Bearer wrong"), "not this server's API token"),
        (Some("s3cret"), "not one `Bearer <token>`"),
        (Some("Bearer s3cre"), "not this server's API token"),
    ] {
        let mut req = http.post(&jobs).json(&json!({"numbers": ["12"]}));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{auth:?}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let body: serde_json::Value = resp.json().await.unwrap();
        let said = body["error"]["message"].as_str().unwrap_or_default();
        assert!(said.contains(why), "{auth:?}: {said}");
        let resp = http.get(&jobs).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
    }
    // The right token beside a wrong one is refused too.
    let resp = http
        .post(&jobs)
        .header("authorization", "Bearer s3cret")
        .header("authorization", "Bearer wrong")
        .json(&json!({"numbers": ["12"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401, "two Authorization headers");
    let list = http
        .get(&jobs)
        .header("authorization", "bearer s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(
        list.status().as_u16(),
        200,
        "the scheme is case-insensitive"
    );
    assert_eq!(
        list.json::<serde_json::Value>().await.unwrap(),
        json!({"jobs": []}),
        "nothing was queued"
    );
    let resp = http
        .post(&jobs)
        .bearer_auth("s3cret")
        .json(&json!({"numbers": ["12", "1000000000001"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let id = resp.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A worker without the worker token contributes nothing and exits with
    // status 3 (retrying cannot help); with the token, the job completes.
    let mut anonymous = WorkerProc::spawn(&server, &["--threads", "1"]);
    let mut wrong = WorkerProc::spawn(&server, &["--threads", "1", "--token", "w0rke"]);
    // The page's URL for this coordinator carries the worker token; a
    // volunteer may give the worker that URL.
    let page = |token: &str| format!("http://{}/?token={token}", server.addr);
    let mut wrong_in_url = WorkerProc::spawn_at(&page("w0rke"), &["--threads", "1"]);
    assert_eq!(anonymous.wait(Duration::from_secs(20)), Some(3));
    assert_eq!(wrong.wait(Duration::from_secs(20)), Some(3));
    assert_eq!(wrong_in_url.wait(Duration::from_secs(20)), Some(3));
    let get = |path: &str| {
        let req = http
            .get(format!("http://{}/api/{path}", server.addr))
            .bearer_auth("s3cret");
        async move {
            let resp = req.send().await.unwrap();
            resp.json::<serde_json::Value>().await.unwrap()
        }
    };
    let status = format!("jobs/{id}");
    let job = get(&status).await;
    assert_eq!(job["done"], 0, "a worker without the token was given work");
    // What the coordinator tells each: a token is needed, or this one is wrong.
    for (token, says) in [
        (None, "needs a worker token"),
        (Some("w0rke"), "not the coordinator's worker token"),
    ] {
        use futures_util::{SinkExt, StreamExt};
        let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .unwrap();
        let mut hello =
            json!({"type": "hello", "protocol": 4, "kind": "native", "slots": 1, "threads": 1});
        if let Some(t) = token {
            hello["token"] = json!(t);
        }
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            hello.to_string(),
        ))
        .await
        .unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        let reply: serde_json::Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
        assert_eq!(reply["type"], "error", "{reply}");
        assert!(
            reply["message"].as_str().unwrap_or_default().contains(says),
            "{token:?}: {reply}"
        );
    }
    let _member = WorkerProc::spawn_at(&page("w0rker"), &["--threads", "1"]);
    // --token wins over a token in the URL.
    let _member_too =
        WorkerProc::spawn_at(&page("stale"), &["--threads", "1", "--token", "w0rker"]);
    eventually(Duration::from_secs(30), async || {
        let workers = get("workers").await;
        if workers["workers"].as_array().unwrap().len() == 2 {
            Ok(())
        } else {
            Err(format!("not both members: {workers}"))
        }
    })
    .await;
    eventually(Duration::from_secs(30), async || {
        let job = get(&status).await;
        if job["state"] == "done" {
            Ok(())
        } else {
            Err(format!("not done: {job}"))
        }
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_job_and_results_stream_as_ndjson_and_csv() {
    let server = TestServer::start(Config::default()).await;
    let http = reqwest::Client::new();
    // A long job: cancelled while running; the worker moves on to the next job.
    let slow_id = server.submit_numbers(&semiprimes(3000, 44, 11), 2).await;
    let _w = WorkerProc::spawn(&server, &["--threads", "1"]);
    server
        .wait_progress(&slow_id, 1, Duration::from_secs(30))
        .await;
    let url = format!("http://{}/api/jobs/{slow_id}", server.addr);
    let resp = http.delete(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["state"],
        "cancelled"
    );
    let again = http.delete(&url).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 200, "cancelling twice");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.job(&slow_id).await;
    assert_eq!(after["state"], "cancelled");
    assert!(after["done"].as_u64().unwrap() < 3000, "{after}");

    let numbers = range(999_999_999_999, 500, 2);
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": 500, "step": 2}, "priority": 5}))
        .await;
    server.wait_done(&id, Duration::from_secs(60)).await;
    // The public status counts open jobs only: neither the cancelled one
    // (some of its numbers never done) nor the done one.
    let (code, status) = server.get("/api/status").await;
    assert_eq!(code, 200);
    assert_eq!(
        (&status["jobs_active"], &status["numbers_total"]),
        (&json!(0), &json!(0)),
        "{status}"
    );
    // The list of jobs by state, and a page of it.
    let third = server.submit(json!({"numbers": ["12"]})).await;
    let listed = |query: &'static str| {
        let http = http.clone();
        let base = format!("http://{}/api/jobs", server.addr);
        async move {
            let resp = http.get(format!("{base}{query}")).send().await.unwrap();
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap();
            let jobs: Vec<(String, String)> = body["jobs"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|j| {
                            (
                                j["id"].as_str().unwrap().to_owned(),
                                j["state"].as_str().unwrap().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (status, jobs, body)
        }
    };
    // A fresh server numbers its jobs from 1.
    assert_eq!([&slow_id[..], &id, &third], ["1", "2", "3"]);
    let ids = |jobs: Vec<(String, String)>| jobs.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(ids(listed("?state=cancelled").await.1), ["1"]);
    let done = listed("?state=done").await.1;
    assert!(done.iter().all(|(_, s)| s == "done"), "{done:?}");
    assert_eq!(done.first().map(|(id, _)| id), Some(&id));
    let open = listed("?state=open").await.1;
    assert!(open
        .iter()
        .all(|(j, s)| *j == third && (s == "queued" || s == "running")));
    let both = ids(listed("?state=cancelled,done").await.1);
    assert_eq!(both[..2], [slow_id.clone(), id.clone()]);
    assert_eq!(ids(listed("?limit=1").await.1), ["1"]);
    assert_eq!(ids(listed("?after=1&limit=1").await.1), ["2"]);
    assert_eq!(ids(listed("?after=2").await.1), ["3"]);
    // A page with a state is filled from as many of the store's pages as it
    // takes: the next cancelled job is 530 jobs on (one too long to end
    // before it is cancelled).
    for _ in 0..529 {
        server.submit(json!({"numbers": ["12"]})).await;
    }
    let long = json!({"range": {"start": "1000000000000000000000000000001", "count": 1_000_000, "step": "2"}});
    let last = server.submit(long).await;
    let resp = http
        .delete(format!("http://{}/api/jobs/{last}", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cancelled = ids(listed("?state=cancelled&limit=2").await.1);
    assert_eq!(cancelled[..], [slow_id.clone(), last.clone()]);
    assert_eq!(ids(listed("?state=cancelled&after=1").await.1), [&*last]);
    assert_eq!(ids(listed("?limit=0").await.1), Vec::<String>::new());
    // The whole history, streamed from three of the store's pages, in order.
    let every: Vec<String> = (1..=533).map(|i: u32| i.to_string()).collect();
    assert_eq!(ids(listed("").await.1), every);
    assert_eq!(ids(listed("?after=255&limit=300").await.1), every[255..]);
    assert_eq!(ids(listed("?after=10&limit=300").await.1), every[10..310]);
    // The owner CLI lists them page by page (500 at a time), each once.
    let cli_lists = |args: &[&str]| {
        let out = std::process::Command::new(bin("crowdfactor-server"))
            .args(args)
            .env("CROWDFACTOR_URL", server.url())
            .env_remove("CROWDFACTOR_TOKEN")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let first = |l: &str| l.split_whitespace().next().unwrap().to_owned();
        text.lines().map(first).collect::<Vec<String>>()
    };
    assert_eq!(cli_lists(&["jobs"]), ids(listed("").await.1));
    assert_eq!(cli_lists(&["jobs"]).len(), 533);
    assert_eq!(
        cli_lists(&["jobs", "--state", "cancelled"]),
        [slow_id.clone(), last.clone()]
    );
    for bad in ["?state=finished", "?limit=-1", "?after=x", "?sort=id"] {
        let (status, _, body) = listed(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}: {body}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.job(&slow_id).await["done"],
        after["done"],
        "no work on a cancelled job"
    );
    let done_url = format!("http://{}/api/jobs/{id}", server.addr);
    assert_eq!(
        http.delete(&done_url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        409
    );
    // PATCH takes JSON whatever the Content-Type (curl -d sends a form's);
    // a finished job's priority is not changed (it orders nothing).
    let cancelled_url = format!("http://{}/api/jobs/{slow_id}", server.addr);
    for (url, job, body, status) in [
        (&done_url, &id, r#"{"priority": -7}"#, 409),
        (&done_url, &id, r#"{"priority": 1001}"#, 400),
        (&done_url, &id, r#"{"priority": "high"}"#, 400),
        (&cancelled_url, &slow_id, r#"{"priority": -7}"#, 409),
    ] {
        let before = server.job(job).await["priority"].clone();
        let resp = http
            .patch(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let said: serde_json::Value = resp.json().await.unwrap();
        if status == 409 {
            let message = said["error"]["message"].as_str().unwrap();
            assert!(message.contains("no longer matters"), "{said}");
        }
        assert_eq!(server.job(job).await["priority"], before, "{body}");
    }
    for path in [format!("/api/job/{id}"), "/api/".into(), "/api".into()] {
        let typo = http
            .get(format!("http://{}{path}", server.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(typo.status().as_u16(), 404, "{path}");
        let body: serde_json::Value = typo.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    let slash = http
        .get(format!("http://{}/api/jobs/{id}/", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(slash.status().as_u16(), 404);
    let body: serde_json::Value = slash.json().await.unwrap();
    let said = body["error"]["message"].as_str().unwrap_or_default();
    assert!(said.contains(&format!("try \"/api/jobs/{id}\"")), "{body}");
    // A method an endpoint does not take: JSON too, and `Allow` says which.
    let put = http.put(&done_url).body("{}").send().await.unwrap();
    assert_eq!(put.status().as_u16(), 405);
    assert_eq!(put.headers()["allow"], "GET,HEAD,DELETE,PATCH");
    let body: serde_json::Value = put.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    let missing = format!("http://{}/api/jobs/12345", server.addr);
    assert_eq!(
        http.delete(&missing)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );

    // Streamed formats carry the same results as the JSON object.
    let base = format!("/api/jobs/{id}/results");
    let ndjson = server.text(&format!("{base}?format=ndjson"), None).await;
    let mut from_ndjson = std::collections::HashMap::new();
    for line in ndjson.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let f = v["factors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect();
        from_ndjson.insert(v["n"].as_str().unwrap().to_owned(), f);
    }
    assert_eq!(from_ndjson.len(), 500);
    assert_matches_gnu(&numbers, &from_ndjson);
    let csv = server.text(&format!("{base}?format=csv"), None).await;
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("n,factors"));
    let from_csv = lines
        .map(|l| {
            let (n, f) = l.split_once(',').unwrap();
            (
                n.to_owned(),
                f.split(' ')
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )
        })
        .collect();
    assert_matches_gnu(&numbers, &from_csv);
    // Gzipped for a client that accepts it: the same text, smaller.
    for format in ["csv", "ndjson", "json"] {
        let url = format!("http://{}{base}?format={format}", server.addr);
        let plain = server.text(&format!("{base}?format={format}"), None).await;
        let resp = http
            .get(&url)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-encoding"], "gzip");
        let gz = resp.bytes().await.unwrap();
        assert_eq!(String::from_utf8(gunzip(&gz)).unwrap(), plain, "{format}");
        assert!(
            gz.len() * 2 < plain.len(),
            "{format}: {} of {}",
            gz.len(),
            plain.len()
        );
    }
    assert_eq!(server.get(&format!("{base}?format=xml")).await.0, 400);
    // A misspelt parameter is named, not ignored (it gave JSON).
    let (status, body) = server.get(&format!("{base}?fromat=csv")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["item"], "fromat", "{body}");
    // The token may come in the query (as the dashboard's feed sends it).
    assert_eq!(
        server.get(&format!("{base}?token=x&format=csv")).await.0,
        200
    );
    // No other endpoint takes a parameter it would ignore: a job's results
    // asked of the job itself, a priority in a PATCH's query string.
    for path in [
        format!("/api/jobs/{id}?format=csv"),
        "/api/workers?all=1".to_owned(),
    ] {
        let (status, body) = server.get(&path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"]["item"].is_string(), "{path}: {body}");
    }
    assert_eq!(server.get(&format!("/api/jobs/{id}?token=x")).await.0, 200);
    let patched = http
        .patch(format!("{}api/jobs/{id}?priority=5", server.url()))
        .body(r#"{"priority": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status().as_u16(), 400);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_connection_limits() {
    let server = TestServer::start(Config {
        max_connections_per_ip: 2,
        ..Config::default()
    })
    .await;
    let id = server
        .submit(json!({"numbers": ["12", "1000000000001", "97"], "chunk_size": 1}))
        .await;
    // A cancelled job has no series (only open jobs and those finished
    // in the last minutes have).
    let gone = server.submit(json!({"numbers": ["15"]})).await;
    reqwest::Client::new()
        .delete(format!("http://{}/api/jobs/{gone}", server.addr))
        .send()
        .await
        .unwrap();
    let _w = WorkerProc::spawn(&server, &["--threads", "1"]);
    server.wait_done(&id, Duration::from_secs(30)).await;
    let text = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "crowdfactor_workers_connected{kind=\"native\"} 1",
        "crowdfactor_chunks_completed_total 3",
        "crowdfactor_numbers_factored_total 3",
        "crowdfactor_chunks_rejected_total 0",
        &format!("crowdfactor_job_numbers{{job=\"{id}\",what=\"done\"}} 3"),
        "# TYPE crowdfactor_chunks_leased_total counter",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(!text.contains(&format!("job=\"{gone}\"")), "{text}");
    // The worker holds one connection; one more is allowed, the next refused.
    let url = server.ws_url();
    let second = tokio_tungstenite::connect_async(&url).await;
    assert!(second.is_ok());
    let third = tokio_tungstenite::connect_async(&url).await;
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503)
        }
        other => panic!("third connection from one IP was not refused: {other:?}"),
    }
    drop(second);
    server.shutdown().await;
}

/// Behind a trusted reverse proxy the per-address limit counts the workers'
/// addresses from `X-Forwarded-For`; from anyone else the header is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_limits_see_through_a_trusted_proxy_only() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    async fn connect(server: &TestServer, forwarded_for: &str) -> Result<impl Sized, u16> {
        let mut request = server.ws_url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("x-forwarded-for", forwarded_for.parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("{e}"),
        }
    }
    let limits = Config {
        max_connections_per_ip: 1,
        ..Config::default()
    };
    let behind = TestServer::start(Config {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..limits.clone()
    })
    .await;
    let a = connect(&behind, "203.0.113.7").await.expect("first worker");
    // A client-supplied entry on the left does not change who it is.
    assert_eq!(
        connect(&behind, "198.51.100.1, 203.0.113.7").await.err(),
        Some(503),
        "a second connection from 203.0.113.7"
    );
    let b = connect(&behind, "203.0.113.8")
        .await
        .expect("another worker");
    drop((a, b));
    behind.shutdown().await;

    let direct = TestServer::start(limits).await;
    let a = connect(&direct, "203.0.113.7").await.expect("first worker");
    assert_eq!(
        connect(&direct, "203.0.113.8").await.err(),
        Some(503),
        "an untrusted peer's X-Forwarded-For is ignored"
    );
    drop(a);
    direct.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_hands_back_work_and_exits_zero() {
    a_stop_signal_hands_back_work("-INT").await;
}

/// SIGTERM (systemd, Docker, Kubernetes) drains like Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_back_work_and_exits_zero() {
    a_stop_signal_hands_back_work("-TERM").await;
}

/// SIGHUP (the terminal the worker runs in was closed) drains like Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_hands_back_work_and_exits_zero() {
    a_stop_signal_hands_back_work("-HUP").await;
}

/// Started with SIGHUP ignored (`nohup`), the worker keeps it so: the
/// terminal it was started from can close under it, and it goes on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_with_nohup_outlives_sighup() {
    let server = TestServer::start(Config::default()).await;
    let child = std::process::Command::new("nohup")
        .arg(bin("crowdfactor-worker"))
        .args(["--server", &server.ws_url(), "--threads", "1"])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut worker = WorkerProc(child);
    // Connected (it takes and finishes a first job) before the signal.
    let numbers = range(999_999_999_999, 50, 2);
    let first = server.submit_numbers(&numbers, 10).await;
    server.wait_done(&first, Duration::from_secs(30)).await;
    send_signal(worker.0.id(), "-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(worker.0.try_wait().unwrap(), None, "SIGHUP stopped it");
    let second = server.submit_numbers(&numbers, 10).await;
    server.wait_done(&second, Duration::from_secs(30)).await;
    assert_matches_gnu(&numbers, &server.results(&second).await);
    send_signal(worker.0.id(), "-TERM");
    assert_eq!(worker.wait(Duration::from_secs(20)), Some(0));
    server.shutdown().await;
}

/// The coordinator named without `--server`, as the host:port a volunteer
/// is told: the worker connects there (not to CROWDFACTOR_SERVER, which
/// names a port where nothing listens) and does the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_takes_the_coordinator_without_the_option() {
    let server = TestServer::start(Config::default()).await;
    let numbers = range(999_999_999_999, 50, 2);
    let id = server.submit_numbers(&numbers, 10).await;
    let mut worker = WorkerProc(
        std::process::Command::new(bin("crowdfactor-worker"))
            .args([
                &server.addr.to_string(),
                "--threads",
                "1",
                "--exit-when-idle",
            ])
            .env("CROWDFACTOR_SERVER", "127.0.0.1:1")
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    server.wait_done(&id, Duration::from_secs(30)).await;
    assert_matches_gnu(&numbers, &server.results(&id).await);
    assert_eq!(worker.wait(Duration::from_secs(20)), Some(0));
    server.shutdown().await;
}

async fn a_stop_signal_hands_back_work(signal: &str) {
    let server = TestServer::start(Config::default()).await;
    // ~1 ms each (see job_survives_a_worker_killed_mid_job): work left
    // when the signal comes.
    let known = known_semiprimes(1200, 44, 5);
    let numbers = numbers_of(&known);
    let id = server.submit_numbers(&numbers, 4).await;
    let mut first = WorkerProc::spawn(&server, &["--threads", "2"]);
    server.wait_progress(&id, 40, Duration::from_secs(30)).await;
    send_signal(first.0.id(), signal);
    assert_eq!(
        first.wait(Duration::from_secs(20)),
        Some(0),
        "{signal} exits 0 after finishing or handing back"
    );
    let done_at_exit = server.job(&id).await["done"].as_u64().unwrap();
    assert!(
        done_at_exit < numbers.len() as u64,
        "job finished before {signal} took effect"
    );
    let _second = WorkerProc::spawn(&server, &["--threads", "2"]);
    let job = server.wait_done(&id, Duration::from_secs(120)).await;
    assert_eq!(
        job["by_kind"]["native"],
        numbers.len(),
        "nothing lost or counted twice: {job}"
    );
    assert_known_factors(&known, &server.results(&id).await);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_are_sized_to_the_worker() {
    // Fast numbers: at a few µs each, a 2 s chunk would hold far more than the
    // 43 numbers the classic manager hands out; the coordinator must find that
    // out from the worker's reported times and cut big chunks (within the
    // message-size bound), then cut the tail finer.
    let server = TestServer::start(Config {
        chunk_target: Duration::from_millis(500),
        ..Config::default()
    })
    .await;
    let count = 200_000u128;
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": count.to_string(), "step": 2}}))
        .await;
    let mut worker = WorkerProc::spawn(&server, &["--threads", "2", "--exit-when-idle"]);
    let job = server.wait_done(&id, Duration::from_secs(120)).await;
    assert_eq!(job["by_kind"]["native"], 200_000, "{job}");
    let chunks = job["chunks"].as_u64().unwrap();
    assert!(
        chunks < 200,
        "200,000 fast numbers came back in {chunks} chunks: chunk sizes did not adapt"
    );
    assert!(
        chunks >= 8,
        "the ramp-up and the tail use several chunks: {chunks}"
    );
    assert_eq!(worker.wait(Duration::from_secs(30)), Some(0));
    assert_matches_gnu(
        &range(999_999_999_999, count, 2),
        &server.results(&id).await,
    );
    server.shutdown().await;
}

/// The coordinator, scripted by hand, for what a real one does only in a
/// race: it leases a chunk again to the worker that holds it or has just
/// sent its result (the lease lapsed meanwhile, e.g. the machine slept).
mod scripted_coordinator {
    use super::*;
    use crowdfactor_protocol::{Assignment, ClientMessage, ServerMessage, PROTOCOL_VERSION};
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

    async fn send(ws: &mut Ws, msg: ServerMessage) {
        ws.send(Message::text(msg.encode())).await.unwrap();
    }

    fn assign(chunk_id: u64) -> ServerMessage {
        assign_numbers(chunk_id, vec![999_999_999_999, 1_000_000_000_001])
    }

    fn assign_numbers(chunk_id: u64, numbers: Vec<u128>) -> ServerMessage {
        ServerMessage::Assign(Assignment {
            chunk_id,
            job_id: "1".into(),
            numbers: numbers.into(),
        })
    }

    /// The worker's next message other than an ack or a heartbeat; `None`
    /// once it closes.
    async fn next(ws: &mut Ws) -> Option<ClientMessage> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let frame = tokio::time::timeout_at(deadline, ws.next())
                .await
                .expect("nothing from the worker but acks and heartbeats")?;
            match frame {
                Ok(Message::Text(t)) => match ClientMessage::decode(&t, 1 << 24).unwrap() {
                    ClientMessage::Ack { .. } | ClientMessage::Heartbeat => continue,
                    other => return Some(other),
                },
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Accepts the worker's connection, reads its `hello` and welcomes it.
    async fn welcome(listener: &tokio::net::TcpListener, heartbeat_ms: u64) -> Ws {
        welcome_speaking(listener, heartbeat_ms, PROTOCOL_VERSION).await
    }

    /// [`welcome`] in protocol version `protocol`.
    async fn welcome_speaking(
        listener: &tokio::net::TcpListener,
        heartbeat_ms: u64,
        protocol: u32,
    ) -> Ws {
        let (mut ws, _) = hello_offering(listener).await;
        send_welcome(&mut ws, heartbeat_ms, protocol).await;
        ws
    }

    /// Welcomes the worker whose `hello` was read, in protocol `protocol`.
    async fn send_welcome(ws: &mut Ws, heartbeat_ms: u64, protocol: u32) {
        send(
            ws,
            ServerMessage::Welcome {
                protocol,
                worker_id: 1,
                heartbeat_ms,
                lease_timeout_ms: 30_000,
                ack_timeout_ms: 10_000,
            },
        )
        .await;
    }

    fn result_of(msg: Option<ClientMessage>) -> u64 {
        match msg {
            Some(ClientMessage::Result(r)) => r.chunk_id,
            other => panic!("expected a result, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chunk_leased_again_is_factored_again_and_the_worker_still_exits_when_idle() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let mut worker = WorkerProc::spawn_at(&url, &["--threads", "1", "--exit-when-idle"]);
        let mut ws = welcome(&listener, 5000).await;
        // Chunk 7, its result, then chunk 7 again: a new lease, a new result.
        send(&mut ws, assign(7)).await;
        assert_eq!(result_of(next(&mut ws).await), 7);
        send(&mut ws, assign(7)).await;
        assert_eq!(
            result_of(next(&mut ws).await),
            7,
            "the second lease is worked"
        );
        // Chunk 8 leased twice while the worker holds it: factored once.
        // It takes about half a second (400 semiprimes of two 40-bit
        // primes), so the second lease arrives while it is held; a chunk
        // done before its second lease arrived would rightly be worked
        // again, as chunk 7 was.
        let slow = semiprimes(400, 40, 8);
        send(&mut ws, assign_numbers(8, slow.clone())).await;
        send(&mut ws, assign_numbers(8, slow)).await;
        assert_eq!(result_of(next(&mut ws).await), 8);
        // Nothing held: `idle` lets it exit (before, the chunk leased again
        // after its result sat in the worker's books forever: no exit when
        // idle, and a stop signal waited on it).
        send(&mut ws, ServerMessage::Idle).await;
        assert!(next(&mut ws).await.is_none(), "one result for chunk 8");
        assert_eq!(worker.wait(Duration::from_secs(20)), Some(0));
    }

    /// Something that accepts the connection and never answers (a wrong
    /// port, a hung proxy): the worker gives up after 15 s and tries again,
    /// and a stop signal while it connects ends it at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_that_never_answers_is_given_up_on_and_a_stop_ends_the_wait() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut worker = WorkerProc(
            std::process::Command::new(bin("crowdfactor-worker"))
                .args(["--server", &addr, "--threads", "1"])
                .env("RUST_LOG", "warn")
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // Held open, never answered.
        let (_first, _) = listener.accept().await.unwrap();
        let (_second, _) = tokio::time::timeout(Duration::from_secs(40), listener.accept())
            .await
            .expect("the worker gave up on the silent server and connected again")
            .unwrap();
        assert_eq!(worker.0.try_wait().unwrap(), None, "still trying");
        send_signal(worker.0.id(), "-TERM");
        assert_eq!(
            worker.wait(Duration::from_secs(5)),
            Some(0),
            "a stop while connecting exits at once"
        );
        let mut log = String::new();
        std::io::Read::read_to_string(&mut worker.0.stderr.take().unwrap(), &mut log).unwrap();
        assert!(log.contains("no answer within 15 s"), "{log}");
    }

    /// A server gone silent without closing the socket (its machine lost
    /// power): after three heartbeats without a frame the worker pings,
    /// after six it connects again, instead of waiting for TCP to give up
    /// (some 15 minutes) with its chunks in hand.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_gone_silent_is_left_for_a_new_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let _worker = WorkerProc::spawn_at(&url, &["--threads", "1"]);
        let mut ws = welcome(&listener, 200).await;
        send(&mut ws, assign_numbers(3, semiprimes(2, 40, 3))).await;
        // From here on this "server" reads nothing (so answers no ping).
        let went_silent = Instant::now();
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
            .await
            .expect("the worker left the silent server")
            .unwrap();
        assert!(went_silent.elapsed() >= Duration::from_millis(1000));
        drop(ws);
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        assert!(matches!(next(&mut ws).await, Some(ClientMessage::Hello(_))));
    }

    /// Waits for the worker's `ack` of `chunk`.
    async fn acked(ws: &mut Ws, chunk: u64) {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(20), ws.next())
                .await
                .expect("no ack")
                .expect("the worker closed")
                .unwrap();
            if let Message::Text(t) = frame {
                if let ClientMessage::Ack { chunk_id } = ClientMessage::decode(&t, 1 << 20).unwrap()
                {
                    if chunk_id == chunk {
                        return;
                    }
                }
            }
        }
    }

    /// The result for `chunk`, checked against the engine: each list
    /// without its largest factor, as protocol 5 (the welcome's) has it.
    async fn checked_result(ws: &mut Ws, chunk: u64, numbers: &[u128]) {
        checked_result_in(ws, chunk, numbers, true).await;
    }

    /// [`checked_result`] with each list without its largest factor
    /// (`left_out`, protocol 5) or whole (protocols 3 and 4).
    async fn checked_result_in(ws: &mut Ws, chunk: u64, numbers: &[u128], left_out: bool) {
        match next(ws).await {
            Some(ClientMessage::Result(r)) => {
                assert_eq!(r.chunk_id, chunk);
                let want: Vec<Vec<u128>> = numbers
                    .iter()
                    .map(|&n| crowdfactor_factor::factor(n))
                    .collect();
                let keep = |l: &Vec<u128>| l.len() - usize::from(left_out && !l.is_empty());
                assert!(
                    r.factors.iter().eq(want.iter().map(|l| &l[..keep(l)])),
                    "chunk {chunk}: the factors of its own numbers (largest left out: {left_out})"
                );
            }
            other => panic!("expected the result of chunk {chunk}, got {other:?}"),
        }
    }

    /// The connection ends while the worker factors a chunk, and the chunk
    /// is leased to it again on its next one (a coordinator queues a closed
    /// connection's chunks again under their ids, first in line): the
    /// computation begun for the old connection answers it, whether it is
    /// still running or done by then, or sent and not answered (the old
    /// connection may have been dead when it went). The same id with other
    /// numbers (a coordinator started afresh on another database) is
    /// factored anew, and so is a chunk whose result was accepted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chunk_leased_again_after_a_reconnect_is_answered_by_its_first_computation() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let mut worker = WorkerProc(
            std::process::Command::new(bin("crowdfactor-worker"))
                .args(["--server", &url, "--threads", "1", "--exit-when-idle"])
                .env("RUST_LOG", "info")
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // Seconds of work (3,000 semiprimes of two 40-bit primes): still
        // running when the worker is back.
        let long = semiprimes(3_000, 40, 11);
        let mut ws = welcome(&listener, 5000).await;
        send(&mut ws, assign_numbers(5, long.clone())).await;
        acked(&mut ws, 5).await;
        // Begun (a chunk whose computation had not begun when its
        // connection ended is not kept: it is factored anew if it comes back).
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(ws);
        let mut ws = welcome(&listener, 5000).await;
        send(&mut ws, assign_numbers(5, long.clone())).await;
        checked_result(&mut ws, 5, &long).await;
        // About a second of work, done before it is leased again.
        let short = semiprimes(700, 40, 12);
        send(&mut ws, assign_numbers(6, short.clone())).await;
        acked(&mut ws, 6).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(ws);
        let mut ws = welcome(&listener, 5000).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        send(&mut ws, assign_numbers(6, short.clone())).await;
        checked_result(&mut ws, 6, &short).await;
        send(&mut ws, ServerMessage::Accepted { chunk_id: 6 }).await;
        // A result sent and never answered: the connection may have been
        // dead already (it is found so only heartbeats later).
        let tiny = semiprimes(20, 40, 13);
        send(&mut ws, assign_numbers(9, tiny.clone())).await;
        checked_result(&mut ws, 9, &tiny).await;
        // Chunk 7 again, but with other numbers.
        send(&mut ws, assign_numbers(7, long.clone())).await;
        acked(&mut ws, 7).await;
        drop(ws);
        let mut ws = welcome(&listener, 5000).await;
        let other = vec![12, 35, 999_999_999_999];
        send(&mut ws, assign_numbers(7, other.clone())).await;
        checked_result(&mut ws, 7, &other).await;
        send(&mut ws, assign_numbers(9, tiny.clone())).await;
        checked_result(&mut ws, 9, &tiny).await;
        // Accepted: not kept, factored again if leased again.
        send(&mut ws, assign_numbers(6, short.clone())).await;
        checked_result(&mut ws, 6, &short).await;
        send(&mut ws, ServerMessage::Idle).await;
        assert_eq!(worker.wait(Duration::from_secs(20)), Some(0));
        let mut log = String::new();
        std::io::Read::read_to_string(&mut worker.0.stderr.take().unwrap(), &mut log).unwrap();
        let running = log
            .matches("already being factored for the previous connection")
            .count();
        let done = log
            .matches("answered with the result factored for the previous connection")
            .count();
        // Chunk 5 still running, chunks 6 and 9 done (on a loaded machine
        // chunk 6 may still be running too): each answered by its first
        // computation; chunk 6, once accepted, factored anew.
        assert_eq!(running + done, 3, "{log}");
    }

    /// The coordinator changes protocol versions between two connections
    /// (downgraded from 5 to 4, then upgraded again): a result written for
    /// the other version (without or with each largest factor) would be
    /// misread, so a chunk leased again is factored again and answered in
    /// the new connection's form, whether its first computation was done
    /// or still running.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_result_written_for_another_protocol_version_is_not_reused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let mut worker = WorkerProc::spawn_at(&url, &["--threads", "1", "--exit-when-idle"]);
        // Done and sent on a protocol 5 connection, never answered.
        let tiny = semiprimes(20, 40, 13);
        let mut ws = welcome_speaking(&listener, 5000, 5).await;
        send(&mut ws, assign_numbers(9, tiny.clone())).await;
        checked_result_in(&mut ws, 9, &tiny, true).await;
        drop(ws);
        let mut ws = welcome_speaking(&listener, 5000, 4).await;
        send(&mut ws, assign_numbers(9, tiny.clone())).await;
        checked_result_in(&mut ws, 9, &tiny, false).await;
        // Still being factored (seconds of work) when protocol 5 is back.
        let long = semiprimes(3_000, 40, 11);
        send(&mut ws, assign_numbers(5, long.clone())).await;
        acked(&mut ws, 5).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(ws);
        let mut ws = welcome_speaking(&listener, 5000, 5).await;
        send(&mut ws, assign_numbers(5, long.clone())).await;
        checked_result_in(&mut ws, 5, &long, true).await;
        send(&mut ws, ServerMessage::Idle).await;
        assert_eq!(worker.wait(Duration::from_secs(30)), Some(0));
    }

    /// Accepts the worker's connection and reads its `hello`: the protocol
    /// version it offers.
    async fn hello_offering(listener: &tokio::net::TcpListener) -> (Ws, u32) {
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
            .await
            .expect("the worker connects within 20 s")
            .unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        match next(&mut ws).await {
            Some(ClientMessage::Hello(h)) => (ws, h.protocol),
            other => panic!("expected a hello, got {other:?}"),
        }
    }

    /// Refuses a hello offering `offered` as a coordinator speaking
    /// `oldest` to `newest` does (the words of the coordinators that spoke
    /// 3 to 4, and of this one), and closes.
    async fn refuse_version(mut ws: Ws, offered: u32, (oldest, newest): (u32, u32)) {
        let message = format!(
            "protocol version {offered} is not supported; this coordinator speaks {oldest} to {newest}"
        );
        send(
            &mut ws,
            ServerMessage::Error {
                code: crowdfactor_protocol::ErrorCode::BadHandshake,
                message,
            },
        )
        .await;
        ws.close(None).await.ok();
    }

    /// A worker newer than its coordinator: refused at `hello` for its
    /// version, it offers the next lower one at once, down to the oldest
    /// it speaks, and works in the version accepted (whole lists below
    /// protocol 5). The next connection offers the newest again (the
    /// coordinator may have been upgraded meanwhile). A coordinator that
    /// speaks none of its versions makes it give up (exit 3).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_speaks_the_version_of_an_older_coordinator() {
        use crowdfactor_protocol::OLDEST_PROTOCOL_VERSION;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let mut worker = WorkerProc::spawn_at(&url, &["--threads", "1", "--exit-when-idle"]);
        // A coordinator of protocols 3 to 4: each newer version refused.
        let refused = tokio::time::Instant::now();
        for version in (5..=PROTOCOL_VERSION).rev() {
            let (ws, offered) = hello_offering(&listener).await;
            assert_eq!(offered, version);
            refuse_version(ws, offered, (3, 4)).await;
        }
        let (mut ws, offered) = hello_offering(&listener).await;
        assert_eq!(offered, 4);
        assert!(
            refused.elapsed() < Duration::from_secs(1),
            "each lower version is offered at once, not after a back-off"
        );
        send_welcome(&mut ws, 5000, offered).await;
        let numbers = vec![1, 12, 97, 999_999_999_999, u128::MAX];
        send(&mut ws, assign_numbers(3, numbers.clone())).await;
        checked_result_in(&mut ws, 3, &numbers, false).await;
        send(&mut ws, ServerMessage::Accepted { chunk_id: 3 }).await;
        // Upgraded while the worker was away.
        drop(ws);
        let mut ws = welcome(&listener, 5000).await;
        send(&mut ws, assign_numbers(4, numbers.clone())).await;
        checked_result_in(&mut ws, 4, &numbers, true).await;
        send(&mut ws, ServerMessage::Idle).await;
        assert_eq!(worker.wait(Duration::from_secs(20)), Some(0));

        // A coordinator of protocols 1 to 2: every version refused.
        let mut worker = WorkerProc::spawn_at(&url, &["--threads", "1"]);
        for version in (OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).rev() {
            let (ws, offered) = hello_offering(&listener).await;
            assert_eq!(offered, version);
            refuse_version(ws, offered, (1, 2)).await;
        }
        assert_eq!(
            worker.wait(Duration::from_secs(20)),
            Some(3),
            "refused in every version it speaks: the worker gives up"
        );
    }
}

/// A live server answers the worker's heartbeats (and pings): a worker
/// with nothing to do stays on its one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_keeps_its_connection_to_a_quiet_server() {
    let server = TestServer::start(Config {
        heartbeat_interval: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let _worker = WorkerProc::spawn(&server, &["--threads", "1"]);
    let ids = || async {
        let (_, list) = server.get("/api/workers").await;
        let list = list["workers"].as_array().unwrap().clone();
        list.iter()
            .map(|w| w["id"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    let first = eventually(Duration::from_secs(20), async || {
        let now = ids().await;
        if now.is_empty() {
            Err("no worker")
        } else {
            Ok(now)
        }
    })
    .await;
    // Twelve heartbeats: it would have left after six without an answer.
    tokio::time::sleep(Duration::from_millis(2400)).await;
    assert_eq!(ids().await, first, "the same one connection");
    // And it still works.
    let id = server.submit(json!({"numbers": ["999999999999"]})).await;
    server.wait_done(&id, Duration::from_secs(20)).await;
    server.shutdown().await;
}

/// The dashboard's feed carries every open job and the latest 50 finished
/// ones, and says how many older ones it left out: a server that has run
/// thousands of jobs does not send them all every second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_feed_sends_open_jobs_and_the_latest_finished() {
    let server = TestServer::start(Config::default()).await;
    let http = reqwest::Client::new();
    let open = server.submit(json!({"numbers": ["12"]})).await;
    // Submitted and cancelled all at once (group commit: a few store
    // writes instead of a hundred).
    let submits = (0..53).map(|n| server.submit(json!({"numbers": [(100 + n).to_string()]})));
    let mut cancelled = futures_util::future::join_all(submits).await;
    cancelled.sort_by_key(|id| id.parse::<u64>().unwrap());
    let cancels = cancelled.iter().map(|id| {
        http.delete(format!("http://{}/api/jobs/{id}", server.addr))
            .send()
    });
    for resp in futures_util::future::join_all(cancels).await {
        assert_eq!(resp.unwrap().status().as_u16(), 200);
    }
    let update = &dashboard_feed(&server, 1).await[0];
    let mut want = vec![open.as_str()];
    want.extend(cancelled[3..].iter().map(String::as_str));
    assert_eq!(job_ids(update), want);
    assert_eq!(update["jobs_hidden"], 3);
    server.shutdown().await;
}

/// The first `count` updates of the dashboard's feed (`/api/events`).
async fn dashboard_feed(server: &TestServer, count: usize) -> Vec<serde_json::Value> {
    let mut feed = reqwest::Client::new()
        .get(format!("http://{}/api/events", server.addr))
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while text.matches("\n\n").count() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(10), feed.chunk())
            .await
            .expect("an update within 10 s")
            .unwrap()
            .expect("the feed stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text.split("\n\n")
        .take(count)
        .map(|event| serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

/// A dashboard opened after the work was done still charts it: the feed's
/// first update carries the server's samples of the last minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_feed_starts_with_the_last_minutes() {
    let server = TestServer::start(Config::default()).await;
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": 20000, "step": 2}}))
        .await;
    let _worker = WorkerProc::spawn(&server, &["--threads", "1"]);
    server.wait_done(&id, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let updates = dashboard_feed(&server, 2).await;
    let samples: Vec<(u64, u64)> = serde_json::from_value(updates[0]["history"].clone()).unwrap();
    assert!(samples.len() >= 2, "{samples:?}");
    assert!(
        samples
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{samples:?}"
    );
    // From before the job (the server's start) to after its end.
    assert_eq!(samples[0].1, 0, "{samples:?}");
    assert_eq!(samples.last().unwrap().1, 20000, "{samples:?}");
    assert_eq!(updates[0]["numbers_factored"], 20000);
    assert!(updates[0]["time_ms"].as_u64().unwrap() >= samples.last().unwrap().0);
    // Later updates do not repeat it.
    assert!(updates[1].get("history").is_none(), "{}", updates[1]);
    server.shutdown().await;
}

/// A job sent as plain text (a file of numbers, one per line, as `curl
/// --data-binary @numbers.txt` sends it), options in the query string:
/// factored like any list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_text_job_is_factored() {
    let server = TestServer::start(Config::default()).await;
    let mut numbers = semiprimes(40, 31, 5);
    numbers.extend([1, 2, 999_999_999_999, u128::MAX, (1 << 64) + 1]);
    let body: String = numbers.iter().map(|n| format!("{n}\r\n")).collect();
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/api/jobs?priority=9&chunk_size=7",
            server.addr
        ))
        .header("content-type", "text/plain; charset=utf-8")
        .body(format!("\u{feff}{body}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let job: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (
            job["total"].as_u64(),
            job["priority"].as_i64(),
            job["chunk_size"].as_u64()
        ),
        (Some(numbers.len() as u64), Some(9), Some(7))
    );
    let id = job["id"].as_str().unwrap().to_owned();
    let mut worker = WorkerProc::spawn(&server, &["--threads", "2", "--exit-when-idle"]);
    server.wait_done(&id, Duration::from_secs(120)).await;
    assert_matches_gnu(&numbers, &server.results(&id).await);
    assert_eq!(worker.wait(Duration::from_secs(30)), Some(0));
    // A bad number is named, and nothing is queued.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/jobs", server.addr))
        .header("content-type", "text/plain")
        .body("12\n1x\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["item"], "numbers[1]", "{body}");
    // JSON labelled text/plain (as fetch() labels a string body) is JSON.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/jobs", server.addr))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(r#" {"numbers": ["12"], "priority": 3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    // A file inside a form (curl -F), or numbers labelled as a form (curl
    // --data-binary without -H): refused, saying how to send them.
    let jobs_before = server.get("/api/jobs").await.1["jobs"]
        .as_array()
        .unwrap()
        .len();
    for (content_type, status, code) in [
        (
            "multipart/form-data; boundary=x",
            415,
            "unsupported_media_type",
        ),
        ("application/x-www-form-urlencoded", 400, "bad_json"),
    ] {
        let resp = reqwest::Client::new()
            .post(format!("http://{}/api/jobs", server.addr))
            .header("content-type", content_type)
            .body("12\n15\n")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{content_type}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("Content-Type: text/plain"), "{body}");
    }
    let jobs_after = server.get("/api/jobs").await.1["jobs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(jobs_after, jobs_before);
    server.shutdown().await;
}

/// A job's name, given in JSON or in a plain-text job's query string,
/// comes back in the job and the job list; a bad one queues nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_keep_their_names() {
    let server = TestServer::start(Config::default()).await;
    let id = server
        .submit(json!({"numbers": ["12"], "name": " nightly run · août "}))
        .await;
    assert_eq!(server.job(&id).await["name"], "nightly run · août");
    let (status, text_job) = {
        let resp = reqwest::Client::new()
            .post(format!("http://{}/api/jobs", server.addr))
            .query(&[("name", "from a file")])
            .header("content-type", "text/plain")
            .body("97\n1000000000001\n")
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 201, "{text_job}");
    assert_eq!(text_job["name"], "from a file");
    let unnamed = server.submit(json!({"numbers": ["15"]})).await;
    assert!(server.job(&unnamed).await.get("name").is_none());
    for bad in [json!("two\nlines"), json!("x".repeat(101)), json!(5)] {
        let (status, body) = server
            .post_job(&json!({"numbers": ["12"], "name": bad}))
            .await;
        assert_eq!(status, 400, "{body}");
    }
    let (_, listed) = server.get("/api/jobs").await;
    let names: Vec<&serde_json::Value> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["name"])
        .collect();
    assert_eq!(
        names,
        [
            &json!("nightly run · août"),
            &json!("from a file"),
            &serde_json::Value::Null
        ]
    );
}

//! The server process is killed with SIGKILL mid-job and restarted on the
//! same SQLite file: nothing accepted is lost, the worker reconnects by
//! itself, and the job completes with exact results, none counted twice.
//! And a store that cannot record results for a while (a full disk) costs
//! time, not a result.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crowdfactor_e2e::server_process::*;
use crowdfactor_e2e::*;
use serde_json::{json, Value};

/// Sends the server `signal` (`kill`'s argument) and waits for it to exit;
/// returns its exit code (`None`: killed by a signal).
async fn signal_and_wait(server: &mut ServerProc, signal: &str) -> Option<i32> {
    send_signal(server.0.id(), signal);
    eventually(Duration::from_secs(15), async || {
        let exited = server.0.try_wait().unwrap();
        exited
            .map(|s| s.code())
            .ok_or_else(|| format!("server ignored {signal}"))
    })
    .await
}

/// Job `id` as a server started on a copy of the database file `db` alone
/// (made in `dir`) sees it.
async fn job_in_a_copy(db: &std::path::Path, dir: &std::path::Path, id: &str) -> Value {
    let copy = dir.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(db, copy.join("crowdfactor.db")).unwrap();
    let port = free_port();
    let _restored = start_server(port, &copy.join("crowdfactor.db"));
    wait_up(port).await;
    api(port, &format!("/api/jobs/{id}")).await.unwrap()
}

/// Polls the size of the database file `db` until `ok` holds for it, for at
/// most 20 s; returns it.
async fn wait_file_size(db: &std::path::Path, ok: impl Fn(u64) -> bool) -> u64 {
    eventually(Duration::from_secs(20), async || {
        let size = std::fs::metadata(db).unwrap().len();
        if ok(size) {
            Ok(size)
        } else {
            Err(format!("{} is {size} bytes", db.display()))
        }
    })
    .await
}

/// A worker with two threads that exits once there is no work, logging
/// its lifecycle as JSON to `log` (read by [`worker_totals`]).
fn logging_worker(url: &str, log: &std::path::Path) -> WorkerProc {
    WorkerProc(
        Command::new(bin("crowdfactor-worker"))
            .args(["--server", url, "--threads", "2", "--exit-when-idle"])
            .env("RUST_LOG", "info")
            .env("CROWDFACTOR_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// The last line of a worker's JSON log: how many numbers it answered, and
/// how many of those from lists factored for an earlier connection.
fn worker_totals(log: &std::path::Path) -> (u64, u64) {
    let text = std::fs::read_to_string(log).unwrap();
    let last = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "no work left; exiting")
        .unwrap_or_else(|| panic!("no end in the worker's log:\n{text}"));
    (
        last["numbers"].as_u64().unwrap(),
        last["reused"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_server_mid_job_loses_nothing() {
    // Chunks of four numbers, cut again alike after the restart; and chunks
    // sized by the coordinator, which starts small again after it.
    for (count, chunk_size) in [(1200, Some(4)), (4000, None)] {
        kill_9_mid_job(count, chunk_size).await;
    }
}

/// The server killed with SIGKILL while a worker factors a job of `count`
/// semiprimes, and restarted: nothing accepted is lost, no result is
/// counted twice, and the worker factors no number twice: the chunks it
/// held, cut anew by the restarted server, are answered from the results
/// it had factored for them.
async fn kill_9_mid_job(count: usize, chunk_size: Option<u32>) {
    let dir = temp_dir("durable");
    let db = dir.join("crowdfactor.db");
    let port = free_port();

    let mut server = start_server(port, &db);
    wait_up(port).await;
    // 44-bit factors, ~1 ms each: work left when the server is killed, also
    // on a fast machine.
    let known = known_semiprimes(count, 44, 7);
    let numbers = numbers_of(&known);
    let list: Vec<String> = numbers.iter().map(u128::to_string).collect();
    let mut body = json!({ "numbers": list });
    if let Some(size) = chunk_size {
        body["chunk_size"] = size.into();
    }
    let id = submit(port, body).await;

    let log = dir.join("worker.log");
    let mut worker = logging_worker(&format!("ws://127.0.0.1:{port}/ws"), &log);
    let job = wait_job(port, &id, 60, |job| job["done"].as_u64().unwrap() >= 200).await;
    let before = job["done"].as_u64().unwrap();
    server.0.kill().unwrap(); // SIGKILL
    server.0.wait().unwrap();
    assert!(
        before < numbers.len() as u64,
        "job finished before the kill"
    );

    let _server = start_server(port, &db);
    wait_up(port).await;
    let job = api(port, &format!("/api/jobs/{id}")).await.unwrap();
    assert!(
        job["done"].as_u64().unwrap() >= before,
        "accepted results lost: {before} -> {job}"
    );

    let job = wait_job(port, &id, 300, |job| job["state"] == "done").await;
    assert_eq!(job["done"], numbers.len());
    assert_eq!(
        job["by_kind"]["native"],
        numbers.len(),
        "a result was accepted twice: {job}"
    );
    let results = results_of(port, &id).await;
    assert_known_factors(&known, &results);
    assert_eq!(
        worker.wait(Duration::from_secs(30)),
        Some(0),
        "the worker did not end"
    );
    let (answered, reused) = worker_totals(&log);
    assert_eq!(
        answered - reused,
        numbers.len() as u64,
        "numbers factored by the worker ({answered} answered, {reused} of them from kept lists), chunk size {chunk_size:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully_and_workers_wait_for_the_next_server() {
    let dir = temp_dir("term");
    let db = dir.join("crowdfactor.db");
    let port = free_port();
    let mut server = start_server(port, &db);
    wait_up(port).await;
    let worker_server = format!("ws://127.0.0.1:{port}/ws");
    let mut worker = WorkerProc::spawn_at(&worker_server, &["--threads", "1"]);
    let id = submit(
        port,
        json!({"range": {"start": "999999999999", "count": 2_000_000, "step": 2}}),
    )
    .await;
    wait_job(port, &id, 30, |job| job["done"] != 0).await;
    // An open dashboard (its event feed never ends by itself) does not
    // hold up the stop.
    let dashboard = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(dashboard.status(), 200);
    // Nor does a job upload stalled half-way (nor a download that stopped
    // reading): only until the shutdown grace, not until the idle timeout.
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stalled,
        format!(
            "POST /api/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"numbers\": [12, "
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let code = signal_and_wait(&mut server, "-TERM").await;
    assert_eq!(code, Some(0), "graceful shutdown exits 0");
    drop(dashboard);
    drop(stalled);
    assert_eq!(
        worker.0.try_wait().unwrap(),
        None,
        "the worker keeps trying to reconnect"
    );
    // Stopped, the database file alone is the whole state (docs/deploy.md:
    // a backup may copy just it), results accepted up to the stop included.
    let job = job_in_a_copy(&db, &dir, &id).await;
    assert_eq!(job["total"], 2_000_000, "{job}");
    assert_ne!(job["done"], 0, "{job}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A second coordinator on a database in use exits at once (code 1), naming
/// the first one's process, instead of leasing the same chunks twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_database_is_refused() {
    let dir = temp_dir("db-in-use");
    let db = dir.join("crowdfactor.db");
    let port = free_port();
    let first = start_server(port, &db);
    wait_up(port).await;
    let second = Command::new(bin("crowdfactor-server"))
        .args(["--listen", "127.0.0.1:0", "--token", TOKEN, "--db"])
        .arg(&db)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "in use by another crowdfactor-server (process {})",
            first.0.id()
        )),
        "{stderr}"
    );
    // The first one serves on.
    assert!(api(port, "/api/status").await.is_some());
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP (the terminal the server runs in was closed) stops a server
/// without TLS as gracefully as SIGTERM: exit 0, the database file alone
/// holding everything.
/// (With TLS it reloads the certificate: tls.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_stops_a_plain_http_server_gracefully() {
    let dir = temp_dir("hup");
    let db = dir.join("crowdfactor.db");
    let port = free_port();
    let mut server = start_server(port, &db);
    wait_up(port).await;
    let id = submit(port, json!({"numbers": ["12", "1000000000001"]})).await;
    let code = signal_and_wait(&mut server, "-HUP").await;
    assert_eq!(code, Some(0), "a graceful stop exits 0");
    // The database file alone holds everything (as after SIGTERM).
    let job = job_in_a_copy(&db, &dir, &id).await;
    assert_eq!(job["total"], 2, "{job}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Started with SIGHUP ignored (`nohup`), the server keeps it so: the
/// terminal it was started from can close under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_with_nohup_outlives_sighup() {
    let dir = temp_dir("nohup");
    let port = free_port();
    let server = Command::new("nohup")
        .arg(bin("crowdfactor-server"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--token", TOKEN])
        .arg("--db")
        .arg(dir.join("crowdfactor.db"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = ServerProc(server);
    wait_up(port).await;
    send_signal(server.0.id(), "-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.0.try_wait().unwrap(), None, "SIGHUP stopped it");
    let id = submit(port, json!({"numbers": ["12"]})).await;
    assert_eq!(
        api(port, &format!("/api/jobs/{id}")).await.unwrap()["total"],
        1
    );
    assert_eq!(signal_and_wait(&mut server, "-TERM").await, Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server and a worker whose stderr is gone (a closed pipe, as after
/// `| head`, or the terminal of a session that ended) go on working: a log
/// line that cannot be written is dropped, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_stops_neither_server_nor_worker() {
    let dir = temp_dir("closed-stderr");
    let port = free_port();
    // Each log line is at least one write: info-level logs every lifecycle
    // event.
    let mut server = server_command(port, &dir.join("crowdfactor.db"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(server.stderr.take());
    let _server = ServerProc(server);
    wait_up(port).await;
    let numbers = range(999_999_999_999, 300, 2);
    let list: Vec<String> = numbers.iter().map(u128::to_string).collect();
    let id = submit(port, json!({ "numbers": list, "chunk_size": 10 })).await;
    let mut worker = Command::new(bin("crowdfactor-worker"))
        .args(["--server", &format!("ws://127.0.0.1:{port}/ws")])
        .args(["--threads", "1", "--exit-when-idle"])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(worker.stderr.take());
    let mut worker = WorkerProc(worker);
    assert_eq!(worker.wait(Duration::from_secs(60)), Some(0), "the worker");
    let job = api(port, &format!("/api/jobs/{id}")).await.unwrap();
    assert_eq!(job["state"], "done", "{job}");
    let results = results_of(port, &id).await;
    assert_matches_gnu(&numbers, &results);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `DELETE /api/jobs/<id>?purge=true`: a done job and a running one are
/// deleted with their results, for good (a restart does not bring them
/// back, their ids are not given again), the other jobs are untouched, and
/// the database file gives the room back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_job_is_gone_for_good_and_its_room_freed() {
    let dir = temp_dir("delete");
    let db = dir.join("crowdfactor.db");
    let port = free_port();
    let mut server = start_server(port, &db);
    wait_up(port).await;
    let http = reqwest::Client::new();
    let delete = |id: &str, query: &str| {
        http.delete(format!("http://127.0.0.1:{port}/api/jobs/{id}{query}"))
            .bearer_auth(TOKEN)
            .send()
    };
    let big = submit(
        port,
        json!({"range": {"start": "999999999999", "count": 600000, "step": 2}}),
    )
    .await;
    let worker_server = format!("ws://127.0.0.1:{port}/ws");
    let mut worker = WorkerProc::spawn_at(&worker_server, &["--threads", "1"]);
    wait_job(port, &big, 60, |job| job["state"] == "done").await;
    // The big job's rows (~2.3 MB packed) reach the database file once the
    // server is idle.
    let size_before = wait_file_size(&db, |size| size > 1 << 20).await;
    let kept_numbers = semiprimes(50, 20, 3);
    let kept_list: Vec<String> = kept_numbers.iter().map(u128::to_string).collect();
    let kept = submit(port, json!({"numbers": kept_list})).await;
    let running = submit(
        port,
        json!({"numbers": semiprimes(3000, 44, 5).iter().map(u128::to_string).collect::<Vec<_>>(), "chunk_size": 2}),
    )
    .await;
    wait_job(port, &running, 30, |job| job["done"] != 0).await;

    let refused = delete(&big, "?purge=maybe").await.unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let plain = delete(&big, "").await.unwrap();
    assert_eq!(plain.status().as_u16(), 409, "a done job is not cancelled");
    for id in [&big, &running] {
        let resp = delete(id, "?purge=true").await.unwrap();
        assert_eq!(resp.status().as_u16(), 204, "deleting job {id}");
        let again = delete(id, "?purge=true").await.unwrap();
        assert_eq!(again.status().as_u16(), 404, "deleting job {id} again");
    }
    let gone = |port: u16, id: String| async move {
        for path in [format!("/api/jobs/{id}"), format!("/api/jobs/{id}/results")] {
            let body = api(port, &path).await.unwrap();
            assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
        }
    };
    gone(port, big.clone()).await;
    gone(port, running.clone()).await;
    // The worker drops the deleted job's chunks and factors the other one.
    wait_job(port, &kept, 60, |job| job["state"] == "done").await;
    worker.kill9();
    // The freed pages go back to the file system once the server is idle.
    wait_file_size(&db, |size| size < size_before / 2).await;

    server.0.kill().unwrap(); // SIGKILL
    server.0.wait().unwrap();
    let _server = start_server(port, &db);
    wait_up(port).await;
    gone(port, big.clone()).await;
    gone(port, running.clone()).await;
    let listed = api(port, "/api/jobs").await.unwrap();
    assert_eq!(job_ids(&listed), [kept.as_str()]);
    assert_matches_gnu(&kept_numbers, &results_of(port, &kept).await);
    let next = submit(port, json!({"numbers": ["12"]})).await;
    assert_eq!(
        next.parse::<u64>().unwrap(),
        running.parse::<u64>().unwrap() + 1,
        "a deleted job's id is not given again"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `crowdfactor-server compact` refuses a database a server has open, and
/// on a stopped server's database keeps every job and result (a server
/// started on it again serves them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_waits_for_the_server_to_stop_and_keeps_everything() {
    let dir = temp_dir("compact");
    let db = dir.join("crowdfactor.db");
    let port = free_port();
    let mut server = start_server(port, &db);
    wait_up(port).await;
    let numbers = semiprimes(300, 30, 11);
    let list: Vec<String> = numbers.iter().map(u128::to_string).collect();
    let id = submit(port, json!({ "numbers": list })).await;
    let worker_server = format!("ws://127.0.0.1:{port}/ws");
    let mut worker = WorkerProc::spawn_at(&worker_server, &["--threads", "1"]);
    wait_job(port, &id, 60, |job| job["state"] == "done").await;
    worker.kill9();

    let compact = || {
        Command::new(bin("crowdfactor-server"))
            .args(["compact", "--db"])
            .arg(&db)
            .output()
            .unwrap()
    };
    let refused = compact();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains("in use by another crowdfactor-server"),
        "{said}"
    );
    assert!(said.ends_with("stop it first\n"), "{said}");

    assert_eq!(signal_and_wait(&mut server, "-TERM").await, Some(0));
    let done = compact();
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(said.starts_with(&format!("{}: ", db.display())), "{said}");
    assert!(said.contains(" MiB → "), "{said}");

    let _server = start_server(port, &db);
    wait_up(port).await;
    assert_eq!(
        api(port, &format!("/api/jobs/{id}")).await.unwrap()["state"],
        "done"
    );
    assert_matches_gnu(&numbers, &results_of(port, &id).await);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Results the store cannot record (a full disk) are lost to nobody: each
/// chunk whose result was refused is queued again at once, and once the
/// store records again the job completes with every result right and none
/// counted twice. The worker is not blamed, and answers the chunk leased
/// again with the result it sent, not by factoring it again. (That leasing
/// pauses meanwhile is the coordinator's unit test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_the_store_cannot_record_are_sent_again_once_it_can() {
    let failures = 3;
    let store = Arc::new(FullDisk::refusing(failures));
    // Leases that never lapse: a refused chunk has to be leased again
    // because its result was refused, not because its lease ran out.
    let config = Config {
        lease_timeout: Duration::from_secs(3600),
        ..Config::default()
    };
    let server = TestServer::start_with_store(config, store.clone()).await;
    let numbers = range(999_999_999_999, 30_000, 2);
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": 30_000, "step": 2}, "chunk_size": 2_000}))
        .await;
    let dir = temp_dir("store-full");
    let log = dir.join("worker.log");
    let mut worker = logging_worker(&server.ws_url(), &log);
    let job = server.wait_done(&id, Duration::from_secs(120)).await;
    assert_eq!(worker.wait(Duration::from_secs(30)), Some(0));
    // A refused chunk is leased again to the worker that sent its result,
    // which sends that result again instead of factoring the chunk again.
    let (factored, reused) = worker_totals(&log);
    assert_eq!(
        (factored, reused),
        (30_000, 0),
        "numbers the worker factored"
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(store.refusals_left(), 0, "every refusal was met");
    assert_eq!(job["done"], 30_000, "{job}");
    assert_matches_gnu(&numbers, &server.results(&id).await);
    let metrics = server.text("/metrics", None).await;
    assert_eq!(
        metric(&metrics, "crowdfactor_store_failures_total"),
        u64::from(failures)
    );
    assert!(metric(&metrics, "crowdfactor_chunks_requeued_total") >= u64::from(failures));
    assert_eq!(metric(&metrics, "crowdfactor_chunks_rejected_total"), 0);
    // Each number accepted once: the refused results were not counted.
    assert_eq!(
        metric(&metrics, "crowdfactor_numbers_factored_total"),
        30_000
    );
    server.shutdown().await;
}

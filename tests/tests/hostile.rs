//! Workers that lie, babble or vanish: the coordinator rejects what is
//! wrong, requeues the chunk, and the job still completes exactly.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crowdfactor_e2e::*;
use crowdfactor_protocol::{
    ChunkResult, ClientMessage, ErrorCode, FactorLists, Hello, ServerMessage, WorkerKind,
    OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A native worker's `hello` with one thread.
fn hello(slots: u32, name: &str, agent: &str) -> Message {
    hello_speaking(PROTOCOL_VERSION, slots, name, agent)
}

/// [`hello`] in protocol version `protocol`.
fn hello_speaking(protocol: u32, slots: u32, name: &str, agent: &str) -> Message {
    let hello = ClientMessage::Hello(Hello {
        protocol,
        kind: WorkerKind::Native,
        slots,
        threads: 1,
        name: Some(name.into()),
        agent: agent.into(),
        token: None,
    });
    Message::text(hello.encode())
}

/// A scripted worker speaking the protocol by hand.
async fn connect(server: &TestServer, slots: u32) -> Ws {
    let mut ws = open_with(server, hello(slots, "scripted", "test")).await;
    assert!(matches!(
        recv(&mut ws).await,
        Some(ServerMessage::Welcome { .. })
    ));
    ws
}

/// A connection that has sent `hello`; its answer is left to read.
async fn open_with(server: &TestServer, hello: Message) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    ws.send(hello).await.unwrap();
    ws
}

async fn recv(ws: &mut Ws) -> Option<ServerMessage> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .ok()??;
        match frame {
            Ok(Message::Text(t)) => return Some(ServerMessage::decode(&t, 1 << 24).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// The right answer to an assignment.
fn true_result(a: &crowdfactor_protocol::Assignment) -> ClientMessage {
    ClientMessage::Result(ChunkResult {
        chunk_id: a.chunk_id,
        factors: a.numbers.iter().map(crowdfactor_factor::factor).collect(),
        compute_us: None,
    })
}

/// Acknowledges an assignment.
async fn ack(ws: &mut Ws, a: &crowdfactor_protocol::Assignment) {
    let ack = ClientMessage::Ack {
        chunk_id: a.chunk_id,
    };
    ws.send(Message::text(ack.encode())).await.unwrap();
}

/// Heartbeats from `ws` every 100 ms on a task of its own, so it never
/// counts as silent; returns that task and what `ws` is sent.
fn heartbeating(
    ws: Ws,
) -> (
    tokio::task::JoinHandle<()>,
    futures_util::stream::SplitStream<Ws>,
) {
    let (mut sink, stream) = ws.split();
    let beats = tokio::spawn(async move {
        loop {
            let beat = Message::text(ClientMessage::Heartbeat.encode());
            if sink.send(beat).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (beats, stream)
}

async fn next_assign(ws: &mut Ws) -> crowdfactor_protocol::Assignment {
    loop {
        match recv(ws).await {
            Some(ServerMessage::Assign(a)) => return a,
            Some(_) => continue,
            None => panic!("socket closed before an assignment"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_results_are_rejected_requeued_and_the_liar_disconnected() {
    let server = TestServer::start(Config {
        ban_duration: Duration::from_secs(2),
        ..Config::default()
    })
    .await;
    let numbers = range(999_999_999_999, 200, 2);
    let id = server
        .submit(
            json!({"range": {"start": "999999999999", "count": 200, "step": 2}, "chunk_size": 10}),
        )
        .await;

    let mut liar = connect(&server, 1).await;
    let mut strikes = 0;
    let mut lies = vec![
        // product right, a factor not prime
        |n: u128| vec![1, n],
        // product wrong
        |n: u128| vec![n + 2],
        // right primes, wrong order
        |n: u128| {
            let mut f = crowdfactor_factor::factor(n);
            f.reverse();
            f
        },
    ];
    loop {
        let a = next_assign(&mut liar).await;
        ack(&mut liar, &a).await;
        let lie = lies.remove(0);
        let factors: FactorLists = a.numbers.iter().map(lie).collect();
        let msg = ClientMessage::Result(ChunkResult {
            chunk_id: a.chunk_id,
            factors,
            compute_us: None,
        });
        liar.send(Message::text(msg.encode())).await.unwrap();
        // Rejected, and after max_strikes (3) an error and a close.
        let mut rejected = false;
        loop {
            match recv(&mut liar).await {
                Some(ServerMessage::Rejected { chunk_id, .. }) if chunk_id == a.chunk_id => {
                    rejected = true
                }
                Some(ServerMessage::Error {
                    code: ErrorCode::Banned,
                    ..
                }) => {}
                Some(ServerMessage::Assign(_)) | Some(ServerMessage::Idle) if !rejected => continue,
                Some(_) if rejected => break,
                None => break,
                Some(_) => continue,
            }
            if rejected {
                break;
            }
        }
        assert!(
            rejected,
            "wrong result for chunk {} was not rejected",
            a.chunk_id
        );
        strikes += 1;
        if strikes == 3 {
            // The socket closes after the third strike.
            let mut closed = false;
            for _ in 0..50 {
                match recv(&mut liar).await {
                    None => {
                        closed = true;
                        break;
                    }
                    Some(ServerMessage::Error { code, .. }) => assert_eq!(code, ErrorCode::Banned),
                    Some(_) => {}
                }
            }
            assert!(closed, "liar still connected after 3 strikes");
            break;
        }
    }
    assert_eq!(
        server.job(&id).await["done"],
        0,
        "no wrong result was accepted"
    );
    // The liar's address is refused for a while (here 2 s), then welcome again.
    match tokio_tungstenite::connect_async(server.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 403)
        }
        other => panic!("a banned address was let back in: {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;

    let _honest = WorkerProc::spawn(&server, &["--threads", "1"]);
    let job = server.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(job["by_kind"]["native"], 200);
    assert_matches_gnu(&numbers, &server.results(&id).await);
    server.shutdown().await;
}

/// Heartbeats are answered (a worker can tell a coordinator gone silent
/// from one with nothing to say); a worker of the oldest protocol still
/// spoken gets none (it would not understand them) and still works; other
/// versions are refused, saying which are spoken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_answered_and_an_older_worker_is_still_served() {
    let server = TestServer::start(Config::default()).await;
    let beat = || Message::text(ClientMessage::Heartbeat.encode());
    let mut current = connect(&server, 1).await;
    for _ in 0..3 {
        current.send(beat()).await.unwrap();
        loop {
            match recv(&mut current).await {
                Some(ServerMessage::Heartbeat) => break,
                Some(ServerMessage::Idle) => continue,
                other => panic!("heartbeat not answered: {other:?}"),
            }
        }
    }

    let mut old = open_with(
        &server,
        hello_speaking(OLDEST_PROTOCOL_VERSION, 1, "old", "test"),
    )
    .await;
    match recv(&mut old).await {
        Some(ServerMessage::Welcome { protocol, .. }) => {
            assert_eq!(protocol, OLDEST_PROTOCOL_VERSION)
        }
        other => panic!("no welcome for the oldest protocol: {other:?}"),
    }
    for _ in 0..3 {
        old.send(beat()).await.unwrap();
    }
    // The current worker's answer arrives; the old one's would have by then.
    current.send(beat()).await.unwrap();
    while !matches!(recv(&mut current).await, Some(ServerMessage::Heartbeat)) {}
    let numbers = range(999_999_999_999, 10, 2);
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": 10, "step": 2}}))
        .await;
    drop(current);
    loop {
        match recv(&mut old).await {
            Some(ServerMessage::Assign(a)) => {
                ack(&mut old, &a).await;
                old.send(Message::text(true_result(&a).encode()))
                    .await
                    .unwrap();
            }
            // `idle` follows the last `accepted` too.
            Some(ServerMessage::Accepted { .. } | ServerMessage::Idle)
                if server.job(&id).await["state"] == "done" =>
            {
                break
            }
            Some(ServerMessage::Heartbeat) => panic!("a protocol 3 worker was sent a heartbeat"),
            Some(_) => continue,
            None => panic!("closed before the job was done"),
        }
    }
    assert_matches_gnu(&numbers, &server.results(&id).await);

    for version in [OLDEST_PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1] {
        let mut ws = open_with(&server, hello_speaking(version, 1, "odd", "test")).await;
        match recv(&mut ws).await {
            Some(ServerMessage::Error {
                code: ErrorCode::BadHandshake,
                message,
            }) => assert_eq!(
                message,
                format!(
                    "protocol version {version} is not supported; this coordinator speaks \
                     {OLDEST_PROTOCOL_VERSION} to {PROTOCOL_VERSION}"
                )
            ),
            other => panic!("protocol {version} was not refused: {other:?}"),
        }
    }
    server.shutdown().await;
}

/// `rename` (protocol 6) changes the name the operator sees on the same
/// connection, cleaned and clipped as `hello`'s is; a worker speaking an
/// older protocol that sends it gets a protocol error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_renames_itself_on_its_connection() {
    let server = TestServer::start(Config::default()).await;
    let mut ws = connect(&server, 1).await;
    // The server reads a connection's messages in order: once a heartbeat
    // is answered, the rename before it is done.
    async fn rename(ws: &mut Ws, name: &str) {
        let frame = ClientMessage::Rename { name: name.into() }.encode();
        ws.send(Message::text(frame)).await.unwrap();
        ws.send(Message::text(ClientMessage::Heartbeat.encode()))
            .await
            .unwrap();
        loop {
            match recv(ws).await {
                Some(ServerMessage::Heartbeat) => break,
                Some(ServerMessage::Idle) => continue,
                other => panic!("no answer after the rename: {other:?}"),
            }
        }
    }
    let listed = async || {
        let (_, list) = server.get("/api/workers").await;
        let list = list["workers"].as_array().unwrap().clone();
        assert_eq!(list.len(), 1, "{list:?}");
        (list[0]["id"].clone(), list[0]["name"].clone())
    };
    let (id, name) = listed().await;
    assert_eq!(name, "scripted");
    rename(&mut ws, " lab\t#3\n").await;
    assert_eq!(listed().await, (id.clone(), json!("lab #3")));
    let long = "é".repeat(100);
    rename(&mut ws, &long).await;
    assert_eq!(listed().await, (id.clone(), json!("é".repeat(64))));
    rename(&mut ws, "").await;
    assert_eq!(listed().await, (id, json!("")));
    drop(ws);

    let mut old = open_with(&server, hello_speaking(5, 1, "old", "test")).await;
    assert!(matches!(
        recv(&mut old).await,
        Some(ServerMessage::Welcome { protocol: 5, .. })
    ));
    let frame = ClientMessage::Rename { name: "new".into() }.encode();
    old.send(Message::text(frame)).await.unwrap();
    loop {
        match recv(&mut old).await {
            Some(ServerMessage::Error {
                code: ErrorCode::BadMessage,
                message,
            }) => {
                assert_eq!(
                    message,
                    "rename is part of protocol 6; this connection speaks protocol 5"
                );
                break;
            }
            Some(ServerMessage::Idle) => continue,
            other => panic!("a protocol 5 rename was not refused: {other:?}"),
        }
    }
    assert!(recv(&mut old).await.is_none(), "closed after the error");
    server.shutdown().await;
}

/// The subtlest lie, in a chunk long enough that the coordinator checks it
/// with a sieve instead of one primality test per number: every product
/// right, but one number's two largest primes reported as one composite
/// "prime". Caught, named, the chunk requeued; the job ends exactly right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_claimed_prime_in_a_long_range_chunk_is_caught() {
    let server = TestServer::start(Config::default()).await;
    let count = 60_000;
    let numbers = range(999_999_999_999, count, 2);
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": count, "step": 2}}))
        .await;
    let mut worker = connect(&server, 1).await;
    // (chunk, number) of the lie until it is rejected; whether it was told.
    let mut lie: Option<(u64, u128)> = None;
    let mut told = false;
    loop {
        let a = match recv(&mut worker).await {
            Some(ServerMessage::Assign(a)) => a,
            Some(ServerMessage::Idle) => break,
            Some(ServerMessage::Rejected { chunk_id, reason }) => {
                let (lie_chunk, n) = lie.take().expect("rejected without a lie");
                assert_eq!(chunk_id, lie_chunk);
                assert!(reason.starts_with(&format!("{n}: ")), "{reason}");
                assert!(reason.ends_with("is not prime"), "{reason}");
                continue;
            }
            Some(_) => continue,
            None => panic!("closed before the job was done"),
        };
        ack(&mut worker, &a).await;
        let mut factors: Vec<Vec<u128>> =
            a.numbers.iter().map(crowdfactor_factor::factor).collect();
        // Chunks grow 8, 64, 512, … as this worker reports being fast; lie
        // once, in the middle of the first long one.
        if factors.len() >= 20_000 && !told {
            let i = (factors.len() / 2..)
                .find(|&k| factors[k].len() >= 2)
                .unwrap();
            let (b, c) = (factors[i].pop().unwrap(), factors[i].pop().unwrap());
            factors[i].push(b * c);
            lie = Some((a.chunk_id, a.numbers.iter().nth(i).unwrap()));
            told = true;
        }
        let msg = ClientMessage::Result(ChunkResult {
            chunk_id: a.chunk_id,
            factors: factors.into(),
            compute_us: Some(1),
        });
        worker.send(Message::text(msg.encode())).await.unwrap();
    }
    assert!(told, "no chunk was long enough to lie in");
    assert_eq!(lie, None, "the lie was not rejected");
    let job = server.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(job["done"].as_u64(), Some(count as u64));
    assert_matches_gnu(&numbers, &server.results(&id).await);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_a_protocol_error_and_harms_nobody() {
    let server = TestServer::start(Config::default()).await;
    let id = server
        .submit(json!({"numbers": ["1000000000001", "1000000000003"], "chunk_size": 1}))
        .await;
    // A release naming more chunks than any worker can hold, too.
    let ids: Vec<u64> = (1..=5000).collect();
    let hoard = ClientMessage::Release { chunk_ids: ids }.encode();
    let garbage = [
        "not json",
        r#"{"type":"hullo"}"#,
        r#"{"type":"result","chunk_id":1,"factors":"-1"}"#,
        r#"{"type":"result","chunk_id":1,"factors":"2  3"}"#,
        r#"{"type":"result","chunk_id":1,"results":[{"n":"6","factors":["2","3"]}]}"#,
        r#"{"type":"ack"}"#,
        &hoard,
    ];
    for g in garbage {
        let mut ws = connect(&server, 0).await;
        ws.send(Message::text(g)).await.unwrap();
        let mut got_error = false;
        while let Some(msg) = recv(&mut ws).await {
            if let ServerMessage::Error { code, .. } = msg {
                assert_eq!(code, ErrorCode::BadMessage, "{g}");
                got_error = true;
            }
        }
        assert!(got_error, "no protocol error for {g}");
    }
    // No hello at all, and a binary frame.
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    ws.send(Message::text(ClientMessage::Heartbeat.encode()))
        .await
        .unwrap();
    assert!(matches!(
        recv(&mut ws).await,
        Some(ServerMessage::Error {
            code: ErrorCode::BadHandshake,
            ..
        })
    ));
    let mut ws = connect(&server, 0).await;
    ws.send(Message::binary(vec![0u8, 1, 2])).await.unwrap();
    assert!(matches!(
        recv(&mut ws).await,
        Some(ServerMessage::Error {
            code: ErrorCode::BadMessage,
            ..
        })
    ));

    // Plain HTTP to the WebSocket address (a browser following a worker's
    // --server): a JSON error that says where to go instead.
    let plain = reqwest::get(format!("{}ws", server.url())).await.unwrap();
    assert_eq!(plain.status(), reqwest::StatusCode::BAD_REQUEST);
    let body: serde_json::Value = plain.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_websocket", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("open / instead"), "{message}");

    // A result for a chunk this connection never held is ignored.
    let mut stranger = connect(&server, 0).await;
    let fake = ClientMessage::Result(ChunkResult {
        chunk_id: 1,
        factors: [[73, 137, 99990001]].iter().collect(),
        compute_us: None,
    });
    stranger.send(Message::text(fake.encode())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.job(&id).await["done"],
        0,
        "result from a stranger was accepted"
    );

    let _w = WorkerProc::spawn(&server, &["--threads", "1"]);
    let job = server.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(job["by_kind"]["native"], 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_sent_just_before_garbage_still_counts() {
    let server = TestServer::start(Config::default()).await;
    let numbers = range(1_000_000_000_001, 20, 2);
    let id = server
        .submit(
            json!({"range": {"start": "1000000000001", "count": 20, "step": 2}, "chunk_size": 20}),
        )
        .await;
    let mut ws = connect(&server, 1).await;
    let a = next_assign(&mut ws).await;
    let result = true_result(&a);
    // Sent back to back: the result is still being verified and stored
    // when the garbage ends the connection.
    let ack = ClientMessage::Ack {
        chunk_id: a.chunk_id,
    };
    ws.feed(Message::text(ack.encode())).await.unwrap();
    ws.feed(Message::text(result.encode())).await.unwrap();
    ws.send(Message::text("not json")).await.unwrap();
    let mut got_error = false;
    while let Some(msg) = recv(&mut ws).await {
        if let ServerMessage::Error { code, .. } = msg {
            assert_eq!(code, ErrorCode::BadMessage);
            got_error = true;
        }
    }
    assert!(got_error, "no protocol error for the garbage");
    // Nobody else held that chunk: it is done only if that result was kept.
    server
        .wait_progress(&id, a.numbers.len() as u64, Duration::from_secs(10))
        .await;
    let _w = WorkerProc::spawn(&server, &["--threads", "1"]);
    server.wait_done(&id, Duration::from_secs(60)).await;
    assert_matches_gnu(&numbers, &server.results(&id).await);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_of_a_worker_that_never_acks_or_goes_silent_are_reassigned() {
    let config = Config {
        ack_timeout: Duration::from_millis(300),
        lease_timeout: Duration::from_millis(800),
        ..Config::default()
    };
    let server = TestServer::start(config).await;
    let id = server
        .submit(json!({"numbers": ["12", "15"], "chunk_size": 1}))
        .await;
    // One never acks; one acks and then says nothing at all.
    let mut mute = connect(&server, 1).await;
    let a = next_assign(&mut mute).await;
    let mut silent = connect(&server, 1).await;
    let b = next_assign(&mut silent).await;
    ack(&mut silent, &b).await;
    assert_ne!(a.chunk_id, b.chunk_id);

    let _w = WorkerProc::spawn(&server, &["--threads", "1"]);
    let job = server.wait_done(&id, Duration::from_secs(30)).await;
    assert_eq!(job["done"], 2);

    // The silent worker's late result, after its chunk was done elsewhere, is ignored.
    let late = true_result(&b);
    let _ = silent.send(Message::text(late.encode())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.job(&id).await["by_kind"]["native"],
        2,
        "late duplicate not counted"
    );
    drop((mute, silent));
    server.shutdown().await;
}

/// A worker that takes many chunks and never acknowledges one cannot hoard
/// a job: once its leases lapse it is given one chunk at a time, and an
/// honest worker finishes the job exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_hoards_chunks_without_acks_gets_one_at_a_time() {
    let ack_timeout = Duration::from_millis(300);
    let server = TestServer::start(Config {
        ack_timeout,
        ..Config::default()
    })
    .await;
    let numbers: Vec<u128> = (1_000..1_060).collect();
    let listed: Vec<String> = numbers.iter().map(u128::to_string).collect();
    let id = server
        .submit(json!({ "numbers": listed, "chunk_size": 1 }))
        .await;
    let mut hoarder = connect(&server, 16).await;
    let mut taken = 0;
    while taken < 16 {
        next_assign(&mut hoarder).await;
        taken += 1;
    }
    // It reads what it is sent and acks nothing.
    let reading = tokio::spawn(async move { while recv(&mut hoarder).await.is_some() {} });
    tokio::time::sleep(ack_timeout * 4).await;
    let hoarder_view = || async {
        let (_, workers) = server.get("/api/workers").await;
        let list = workers["workers"].as_array().unwrap().clone();
        list.into_iter().find(|w| w["name"] == "scripted").unwrap()
    };
    assert_eq!(hoarder_view().await["probation"], true);
    let _honest = WorkerProc::spawn(&server, &["--threads", "1"]);
    eventually(Duration::from_secs(60), async || {
        let me = hoarder_view().await;
        assert!(me["holding"].as_u64().unwrap() <= 1, "{me}");
        let job = server.job(&id).await;
        if job["state"] == "done" {
            Ok(())
        } else {
            Err(format!("job not done: {job}"))
        }
    })
    .await;
    assert_eq!(server.results(&id).await, gnu_factor(&numbers));
    reading.abort();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_heartbeats_but_never_finishes_loses_the_chunk_at_its_deadline() {
    let server = TestServer::start(Config {
        max_lease: Duration::from_millis(800),
        ..Config::default()
    })
    .await;
    let id = server.submit(json!({"numbers": ["1000000000001"]})).await;
    let mut hoarder = connect(&server, 1).await;
    let a = next_assign(&mut hoarder).await;
    ack(&mut hoarder, &a).await;
    // Heartbeats keep it from counting as silent; only the deadline can help.
    let (beats, mut stream) = heartbeating(hoarder);
    let drain = tokio::spawn(async move { while stream.next().await.is_some() {} });
    let _honest = WorkerProc::spawn(&server, &["--threads", "1"]);
    let job = server.wait_done(&id, Duration::from_secs(30)).await;
    assert_eq!(job["by_kind"]["native"], 1);
    beats.abort();
    drain.abort();
    server.shutdown().await;
}

/// A job's last chunk held by a worker that acks, heartbeats and never
/// answers does not wait for its deadline (10 minutes while the worker's
/// speed is unknown): an idle worker is given a copy after four chunk
/// targets, finishes it, and the holder is told to drop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_chunk_sat_on_is_copied_to_an_idle_worker() {
    let target = Duration::from_millis(250);
    let server = TestServer::start(Config {
        chunk_target: target,
        ..Config::default()
    })
    .await;
    let id = server.submit(json!({"numbers": ["1000000000001"]})).await;
    let mut sitter = connect(&server, 1).await;
    let a = next_assign(&mut sitter).await;
    ack(&mut sitter, &a).await;
    let started = std::time::Instant::now();
    let (beats, mut stream) = heartbeating(sitter);
    let _honest = WorkerProc::spawn(&server, &["--threads", "1"]);
    let job = server.wait_done(&id, Duration::from_secs(60)).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "done after {:?}",
        started.elapsed()
    );
    assert_eq!(job["chunks"], 1);
    assert_eq!(server.results(&id).await, gnu_factor(&[1_000_000_000_001]));
    // The sitter hears that its chunk is done elsewhere.
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(frame)) = stream.next().await {
            if let Message::Text(t) = frame {
                if let Ok(ServerMessage::Cancel { chunk_ids }) = ServerMessage::decode(&t, 1 << 20)
                {
                    return chunk_ids;
                }
            }
        }
        vec![]
    })
    .await;
    assert_eq!(told.ok(), Some(vec![a.chunk_id]));
    beats.abort();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_at_the_idle_timeout_and_talkers_kept() {
    let idle = Duration::from_millis(700);
    let server = TestServer::start(Config {
        idle_timeout: idle,
        ..Config::default()
    })
    .await;
    // Its hello is the last the silent connection says.
    let opened = std::time::Instant::now();
    let mut silent = connect(&server, 1).await;
    let mut talker = connect(&server, 1).await;
    // The talker speaks every 200 ms for three idle timeouts.
    let talk = tokio::spawn(async move {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let beat = Message::text(ClientMessage::Heartbeat.encode());
            if talker.send(beat).await.is_err() {
                return None;
            }
        }
        Some(talker)
    });
    loop {
        match recv(&mut silent).await {
            Some(ServerMessage::Error { code, .. }) => {
                assert_eq!(code, ErrorCode::Timeout);
                break;
            }
            Some(_) => continue,
            None => panic!("closed without a timeout error"),
        }
    }
    let waited = opened.elapsed();
    assert!(
        waited >= idle && waited < idle * 4,
        "closed after {waited:?} for an idle timeout of {idle:?}"
    );
    assert!(recv(&mut silent).await.is_none(), "the socket is closed");
    let mut talker = talk.await.unwrap().expect("the talker was cut off");
    assert!(opened.elapsed() > idle * 2);
    // Still served: a job submitted now reaches it.
    let id = server.submit(json!({"numbers": ["91"]})).await;
    let a = next_assign(&mut talker).await;
    ack(&mut talker, &a).await;
    talker
        .send(Message::text(true_result(&a).encode()))
        .await
        .unwrap();
    server.wait_done(&id, Duration::from_secs(20)).await;
    server.shutdown().await;
}

/// Plain TCP from one address, before any HTTP or WebSocket: connections
/// past its share are closed as they arrive, ones that stop half-way
/// through a request are closed at the idle timeout, and other addresses
/// are served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_excess_connections_from_one_address_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let idle = Duration::from_millis(700);
    let per_ip = 2;
    let server = TestServer::start(Config {
        idle_timeout: idle,
        max_connections_per_ip: per_ip,
        ..Config::default()
    })
    .await;
    let allowed = per_ip + crowdfactor_server::HTTP_PER_IP;
    // Linux routes all of 127/8 to loopback: another address for the flood.
    let open_from_other_address = || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut tcp = socket.connect(server.addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        tcp
    };
    // Whether the server has closed it (end of stream or reset), without
    // waiting: called after the server has had time to act.
    let is_closed = |tcp: &tokio::net::TcpStream| {
        let mut buf = [0u8; 256];
        match tcp.try_read(&mut buf) {
            Ok(0) => true,
            Ok(_) => panic!("a stalled request was answered"),
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    };
    let opened = std::time::Instant::now();
    let mut stalled = vec![];
    for _ in 0..allowed + 10 {
        stalled.push(open_from_other_address().await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(opened.elapsed() < idle, "checked before the idle timeout");
    let kept: Vec<_> = stalled.into_iter().filter(|tcp| !is_closed(tcp)).collect();
    assert_eq!(
        kept.len(),
        allowed,
        "connections left open from one address"
    );
    // Another address is served meanwhile.
    assert_eq!(server.get("/api/status").await.0, 200);
    let metrics = server.text("/metrics", None).await;
    let refused = "crowdfactor_connections_refused_total{limit=\"per_address\"}";
    assert_eq!(metric(&metrics, refused), 10);
    assert!(metric(&metrics, "crowdfactor_connections_open") > allowed as u64);
    tokio::time::sleep(idle * 3).await;
    assert!(
        kept.iter().all(is_closed),
        "a stalled request outlived the idle timeout"
    );
    let metrics = server.text("/metrics", None).await;
    let idle_closed = metric(&metrics, "crowdfactor_connections_idle_closed_total");
    assert!(idle_closed >= allowed as u64, "{idle_closed}");
    // Their places are free again: a whole request from that address is answered.
    let mut tcp = open_from_other_address().await;
    tcp.write_all(b"Connection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    server.shutdown().await;
}

/// Partial messages cannot take the server's memory: connections that
/// declare a large frame and stall part-way are held within the input
/// limit (the ones past it are closed), and small messages keep flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_messages_are_held_within_the_input_limit() {
    use tokio::io::AsyncWriteExt;
    const MIB: usize = 1 << 20;
    let limit = 5 * MIB + MIB / 2;
    let server = TestServer::start(Config {
        max_buffered_input: limit,
        ..Config::default()
    })
    .await;
    // Writes raw frames (`len` payload bytes announced, `sent` of them sent)
    // to a connection, then lets the server read them.
    async fn send_raw(ws: &mut Ws, pieces: &[(u8, usize, usize)]) {
        for &(first, len, sent) in pieces {
            let mut frame = vec![first];
            if len <= 125 {
                frame.push(0x80 | len as u8);
            } else {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
            frame.extend_from_slice(&[0; 4]); // mask key 0: the payload as sent
            frame.resize(frame.len() + sent, b' ');
            let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_mut() else {
                unreachable!("plain ws")
            };
            // A closed connection may refuse the rest; that is the point.
            let _ = tcp.write_all(&frame).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    async fn is_closed(ws: &mut Ws) -> bool {
        loop {
            match tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_) | Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
    let mut kept = vec![];
    let mut closed = 0;
    // Each declares a 3 MiB text frame (under the 4 MiB message limit) and
    // sends 2 MiB of it: the first two fit, the next two cross the limit
    // with more than a quarter of the message limit in progress.
    for _ in 0..4 {
        // No slots: the job below goes to the real worker only.
        let mut ws = connect(&server, 0).await;
        send_raw(&mut ws, &[(0x81, 3 * MIB, 2 * MIB)]).await;
        if is_closed(&mut ws).await {
            closed += 1;
        } else {
            kept.push(ws);
        }
    }
    assert_eq!(
        (kept.len(), closed),
        (2, 2),
        "stalled large messages left open"
    );
    // A message in fragments with pings between them is still one message:
    // the pings do not reset its count.
    let mut ws = connect(&server, 0).await;
    let piece = 3 * MIB / 4;
    let ping = (0x89, 0, 0);
    send_raw(
        &mut ws,
        &[
            (0x01, piece, piece),
            ping,
            (0x00, piece, piece),
            ping,
            (0x00, piece, piece),
            ping,
            (0x00, piece, piece),
        ],
    )
    .await;
    assert!(
        is_closed(&mut ws).await,
        "a fragmented message outgrew the limit"
    );
    let metrics = server.text("/metrics", None).await;
    assert_eq!(
        metric(&metrics, "crowdfactor_connections_buffer_closed_total"),
        3
    );
    let buffered = metric(&metrics, "crowdfactor_input_buffered_bytes");
    assert!(
        (4 * MIB as u64..=limit as u64).contains(&buffered),
        "{buffered} bytes buffered"
    );
    // Workers with small messages are served meanwhile.
    let id = server
        .submit(json!({"numbers": ["1000000000001", "12", "999999999989"]}))
        .await;
    let _worker = WorkerProc::spawn(&server, &["--threads", "1"]);
    server.wait_done(&id, Duration::from_secs(30)).await;
    assert_matches_gnu(
        &[1_000_000_000_001, 12, 999_999_999_989],
        &server.results(&id).await,
    );
    // Closing the stalled ones gives their input back.
    drop(kept);
    eventually(Duration::from_secs(10), async || {
        let metrics = server.text("/metrics", None).await;
        match metric(&metrics, "crowdfactor_input_buffered_bytes") {
            0 => Ok(()),
            _ => Err(format!("input still buffered: {metrics}")),
        }
    })
    .await;
    server.shutdown().await;
}

/// A worker that stops reading is dropped once a write to it has waited
/// the write timeout: its connection is closed (not kept open with what was
/// queued for it), it no longer counts as connected, and its chunks go to
/// another worker; the job completes exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_stops_reading_is_dropped_and_its_chunks_go_elsewhere() {
    let write_timeout = Duration::from_secs(1);
    let server = TestServer::start(Config {
        write_timeout,
        // Its chunks must come back because it was dropped, not unacked.
        ack_timeout: Duration::from_secs(120),
        ..Config::default()
    })
    .await;
    // Small numbers: first chunks of tens of thousands, hundreds of KiB each
    // (falling, or the list would be kept as a range and sent as one).
    let numbers: Vec<u128> = (1_000_000..2_000_000).rev().collect();
    let listed: Vec<String> = numbers.iter().map(u128::to_string).collect();
    let id = server.submit(json!({ "numbers": listed })).await;
    // A receive buffer of a few KiB, so what it does not read backs up at
    // the server's end at once.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let (mut reader, _) = tokio_tungstenite::client_async(server.ws_url(), tcp)
        .await
        .unwrap();
    reader.send(hello(16, "not reading", "test")).await.unwrap();
    let connected = || async {
        let text = server.text("/metrics", None).await;
        metric(&text, "crowdfactor_workers_connected{kind=\"native\"}")
    };
    eventually(Duration::from_secs(10), async || match connected().await {
        0 => Err("never connected"),
        _ => Ok(()),
    })
    .await;
    // It reads nothing from here on.
    eventually(write_timeout * 10, async || match connected().await {
        0 => Ok(()),
        _ => Err("a worker that does not read is still connected"),
    })
    .await;
    // Its socket was closed: reading what got through ends, it does not hang.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = reader.next().await {}
    })
    .await;
    assert!(drained.is_ok(), "the dropped worker's socket is still open");
    let text = server.text("/metrics", None).await;
    assert_eq!(metric(&text, "crowdfactor_workers_slow_dropped_total"), 1);
    // Nothing was lost with it.
    let mut worker = WorkerProc::spawn(&server, &["--threads", "2", "--exit-when-idle"]);
    server.wait_done(&id, Duration::from_secs(120)).await;
    assert_eq!(worker.wait(Duration::from_secs(30)), Some(0));
    assert_eq!(server.results(&id).await, gnu_factor(&numbers));
    server.shutdown().await;
}

/// What a worker says cannot forge log lines: its agent, its name and the
/// text of its malformed messages are logged with line breaks escaped, so
/// every event stays one line; and they are quoted clipped, so a worker's
/// megabytes do not become the log's (or the error reply's). A worker
/// renaming itself in a loop gets a line a second at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cannot_forge_log_lines_or_flood_the_log() {
    let dir = temp_dir("log-forging");
    let log_path = dir.join("server.log");
    let port = free_port();
    // Killed when the test ends, also when an assertion fails.
    let mut server = WorkerProc(
        std::process::Command::new(bin("crowdfactor-server"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--token", "t"])
            .arg("--db")
            .arg(dir.join("db"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (mut ws, _) = eventually(Duration::from_secs(20), async || {
        tokio_tungstenite::connect_async(&url).await
    })
    .await;
    let forged = hello(1, "box\nFORGED name line", "agent\nFORGED agent line");
    ws.send(forged).await.unwrap();
    assert!(matches!(
        recv(&mut ws).await,
        Some(ServerMessage::Welcome { .. })
    ));
    let bad = r#"{"type":"nonsense\nFORGED error line"}"#;
    ws.send(Message::text(bad)).await.unwrap();
    while recv(&mut ws).await.is_some() {}
    let huge = "x".repeat(1 << 20);
    let (mut big, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    big.send(hello(1, &huge, &huge)).await.unwrap();
    assert!(matches!(
        recv(&mut big).await,
        Some(ServerMessage::Welcome { .. })
    ));
    big.send(Message::text(format!(r#"{{"type":"{huge}"}}"#)))
        .await
        .unwrap();
    loop {
        match recv(&mut big).await {
            Some(ServerMessage::Error { message, .. }) => {
                assert!(message.len() < 1000, "{} bytes", message.len());
                break;
            }
            Some(_) => continue,
            None => panic!("closed without a protocol error"),
        }
    }
    while recv(&mut big).await.is_some() {}
    // Renames in a loop, with the same trick: a line a second at most.
    let renaming = std::time::Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(hello(1, "renamer", "test")).await.unwrap();
    assert!(matches!(
        recv(&mut ws).await,
        Some(ServerMessage::Welcome { .. })
    ));
    for i in 0..500 {
        let name = format!("box {i}\nFORGED rename line");
        ws.send(Message::text(ClientMessage::Rename { name }.encode()))
            .await
            .unwrap();
    }
    ws.send(Message::text(ClientMessage::Heartbeat.encode()))
        .await
        .unwrap();
    while !matches!(recv(&mut ws).await, Some(ServerMessage::Heartbeat)) {}
    let renaming_secs = renaming.elapsed().as_secs();
    drop(ws);
    // A hello that is refused, with the same trick.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::text(r#"{"type":"hello\nFORGED handshake line"}"#))
        .await
        .unwrap();
    while recv(&mut ws).await.is_some() {}
    // Content Security Policy reports: anyone can send them (browsers send
    // no token), with the same tricks and many at a time: counted each,
    // logged once a second at most, one line each.
    let http = reqwest::Client::new();
    let reports_url = format!("http://127.0.0.1:{port}/api/csp-report");
    let report = json!({"csp-report": {
        "document-uri": format!("http://127.0.0.1:{port}/\nFORGED report line"),
        "effective-directive": "script-src-elem",
        "blocked-uri": "x".repeat(12_000),
    }});
    let sent = std::time::Instant::now();
    for _ in 0..50 {
        let resp = http.post(&reports_url).json(&report).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 204);
    }
    let secs = sent.elapsed().as_secs();
    let resp = http
        .post(&reports_url)
        .body("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_report", "{body}");
    // Over 16 KiB, in pieces of no declared length.
    let pieces =
        futures_util::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let resp = http
        .post(&reports_url)
        .body(reqwest::Body::wrap_stream(pieces))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let metrics = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .bearer_auth("t")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&metrics, "crowdfactor_csp_reports_total"), 50);
    // SIGTERM: a graceful stop flushes the log.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status();
    let _ = server.0.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("worker connected"), "{log}");
    assert!(log.contains("closing connection"), "{log}");
    assert!(log.contains("handshake refused"), "{log}");
    let reported = log.matches("Content Security Policy blocked").count() as u64;
    assert!(
        (1..=secs + 2).contains(&reported),
        "{reported} lines for 50 CSP reports"
    );
    let renamed = log.matches("worker renamed").count() as u64;
    assert!(
        (1..=renaming_secs + 2).contains(&renamed),
        "{renamed} lines for 500 renames"
    );
    for line in log.lines() {
        assert!(!line.starts_with("FORGED"), "a forged line:\n{log}");
        assert!(line.len() < 1000, "a line of {} bytes", line.len());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A worker that sends messages that change nothing (here `capacity` and
/// pings) in a loop is read at 100 a second once past its allowance of
/// 1,000: it costs the coordinator
/// next to nothing, it is not cut off, and a real worker's job runs
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_change_nothing_are_read_slowly() {
    let server = TestServer::start(Config::default()).await;
    let mut ws = connect(&server, 0).await;
    let started = std::time::Instant::now();
    // 200 past the allowance, then a rename that tells when all are read.
    let capacity = ClientMessage::Capacity {
        slots: 0,
        waiting: false,
    }
    .encode();
    for _ in 0..600 {
        ws.feed(Message::text(capacity.clone())).await.unwrap();
        ws.feed(Message::Ping(vec![1; 8].into())).await.unwrap();
    }
    let rename = ClientMessage::Rename {
        name: "read-all".into(),
    };
    ws.send(Message::text(rename.encode())).await.unwrap();
    let _w = WorkerProc::spawn(&server, &["--threads", "1"]);
    let id = server
        .submit(json!({"numbers": ["12", "1000000000001", "97"], "chunk_size": 1}))
        .await;
    server.wait_done(&id, Duration::from_secs(30)).await;
    eventually(Duration::from_secs(30), async || {
        let (_, list) = server.get("/api/workers").await;
        let workers = list["workers"].as_array().unwrap();
        match workers.iter().any(|w| w["name"] == "read-all") {
            true => Ok(()),
            false => Err(format!("not renamed yet: {list}")),
        }
    })
    .await;
    // 201 messages past the allowance at 100 a second.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1_900), "read in {took:?}");
    let metrics = server.text("/metrics", None).await;
    let throttled: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("crowdfactor_messages_throttled_total "))
        .expect("the counter")
        .parse()
        .unwrap();
    assert!((190..=201).contains(&throttled), "{throttled} read late");
    // Still connected, and answered.
    ws.send(Message::text(ClientMessage::Heartbeat.encode()))
        .await
        .unwrap();
    loop {
        match recv(&mut ws).await {
            Some(ServerMessage::Heartbeat) => break,
            Some(ServerMessage::Idle) => continue,
            other => panic!("no answer after the flood: {other:?}"),
        }
    }
    server.shutdown().await;
}

//! A worker connection doing anything a stranger can do — any hello, acks,
//! right and wrong results for chunks it holds or not, releases, renames, raw text
//! and binary frames, pings, a close at any point — against a real
//! coordinator on loopback: it never accepts a wrong result, and after every
//! connection it still welcomes a well-behaved worker (a panic anywhere in
//! the server aborts the fuzzer).
#![no_main]

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crowdfactor_protocol::{
    ChunkResult, ClientMessage, FactorLists, Hello, ServerMessage, WorkerKind,
    OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use crowdfactor_server::{run_with_store, store::MemoryStore, Config};
use futures_util::{FutureExt, SinkExt, StreamExt};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[derive(Arbitrary, Debug)]
enum Pick {
    /// One of the chunks assigned on this connection so far.
    Held(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum Answer {
    /// Each list without its largest factor, as protocol 5 workers send them.
    Right,
    /// Each list whole (which protocol 5 reads the same).
    RightWhole,
    /// The first number's list replaced by the number itself.
    NumberAsPrime,
    /// One list too few.
    Short,
    /// Lists as a worker might garble them.
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Hello {
        slots: u8,
        threads: u8,
        browser: bool,
        version: u8,
    },
    Ack(Pick),
    Result {
        chunk: Pick,
        answer: Answer,
        compute_us: Option<u64>,
    },
    Heartbeat,
    Capacity(u8, bool),
    Release(Vec<Pick>),
    Rename(String),
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    /// Reads what the server sends until it is quiet for a moment.
    Wait,
    Close,
}

const TOKEN: &str = "fuzz-token";

struct World {
    rt: tokio::runtime::Runtime,
    port: u16,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let config = Config {
            api_token: Some(TOKEN.into()),
            // Wrong results are the point here: no bans to lock the fuzzer out.
            ban_duration: Duration::from_millis(1),
            handshake_timeout: Duration::from_secs(2),
            ..Config::default()
        };
        rt.spawn(async move {
            let never = std::future::pending::<()>();
            run_with_store(listener, config, Arc::new(MemoryStore::new()), never)
                .await
                .expect("server");
        });
        // A job that does not run out: the most numbers a job may have, in
        // chunks of at most 50 (so right answers are quick to compute).
        let body = r#"{"range":{"start":"1000000000000","count":10000000,"step":1},"chunk_size":50}"#;
        let request = format!(
            "POST /api/jobs HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = rt.block_on(async {
            let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            tcp.write_all(request.as_bytes()).await.expect("write");
            let mut answer = String::new();
            tcp.read_to_string(&mut answer).await.expect("read");
            answer
        });
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
        World { rt, port }
    })
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the connection has seen and sent.
#[derive(Default)]
struct Seen {
    /// Chunks assigned, with their numbers.
    held: Vec<(u64, Vec<u128>)>,
    /// Chunks a right result was sent for.
    right_sent: HashSet<u64>,
    /// The protocol of the first hello (the one the coordinator answers).
    protocol: Option<u32>,
}

impl Seen {
    /// Whether results leave out each largest factor (protocol 5).
    fn left_out(&self) -> bool {
        self.protocol.is_some_and(|p| p >= 5)
    }
}

impl Seen {
    fn pick(&self, p: &Pick) -> u64 {
        match *p {
            Pick::Held(i) if !self.held.is_empty() => self.held[usize::from(i) % self.held.len()].0,
            Pick::Held(i) => u64::from(i),
            Pick::Any(id) => id,
        }
    }

    fn read(&mut self, msg: Message) {
        let Message::Text(text) = msg else { return };
        match ServerMessage::decode(&text, usize::MAX) {
            Ok(ServerMessage::Assign(a)) => {
                self.held.push((a.chunk_id, a.numbers.iter().collect()))
            }
            Ok(ServerMessage::Accepted { chunk_id }) => assert!(
                self.right_sent.contains(&chunk_id),
                "chunk {chunk_id} accepted, but only wrong results were sent for it"
            ),
            _ => {}
        }
    }

    /// Reads until the server has been quiet for a few milliseconds.
    async fn settle(&mut self, ws: &mut Ws) -> bool {
        loop {
            match tokio::time::timeout(Duration::from_millis(5), ws.next()).await {
                Ok(Some(Ok(msg))) => self.read(msg),
                Ok(_) => return false,
                Err(_) => return true,
            }
        }
    }

    /// Reads what has already arrived.
    fn drain(&mut self, ws: &mut Ws) -> bool {
        while let Some(next) = ws.next().now_or_never() {
            match next {
                Some(Ok(msg)) => self.read(msg),
                _ => return false,
            }
        }
        true
    }
}

/// A protocol 5 list made whole: `listed` and n over their product (if
/// above 1), or `None` if that product does not divide n.
fn restored(n: u128, listed: &[u128]) -> Option<Vec<u128>> {
    let product = listed.iter().try_fold(1u128, |p, &f| p.checked_mul(f))?;
    if product == 0 || !n.is_multiple_of(product) {
        return None;
    }
    let mut whole = listed.to_vec();
    if n / product > 1 {
        whole.push(n / product);
    }
    Some(whole)
}

fn hello(slots: u32, threads: u32, kind: WorkerKind, protocol: u32) -> Message {
    Message::text(
        ClientMessage::Hello(Hello {
            protocol,
            kind,
            slots,
            threads,
            name: Some("fuzz".into()),
            agent: "fuzz".into(),
            token: None,
        })
        .encode(),
    )
}

fn frame(op: &Op, seen: &mut Seen) -> Option<Message> {
    let text = |m: ClientMessage| Some(Message::text(m.encode()));
    match op {
        Op::Hello {
            slots,
            threads,
            browser,
            version,
        } => {
            let kind = if *browser {
                WorkerKind::Browser
            } else {
                WorkerKind::Native
            };
            let protocol = match version % 3 {
                0 => PROTOCOL_VERSION,
                1 => OLDEST_PROTOCOL_VERSION,
                _ => PROTOCOL_VERSION + 1,
            };
            seen.protocol.get_or_insert(protocol);
            Some(hello(
                u32::from(*slots),
                u32::from(*threads),
                kind,
                protocol,
            ))
        }
        Op::Ack(p) => text(ClientMessage::Ack {
            chunk_id: seen.pick(p),
        }),
        Op::Result {
            chunk,
            answer,
            compute_us,
        } => {
            let chunk_id = seen.pick(chunk);
            let numbers = seen
                .held
                .iter()
                .find(|(id, _)| *id == chunk_id)
                .map(|(_, n)| n.clone())
                .unwrap_or_default();
            let mut lists: Vec<Vec<u128>> = numbers
                .iter()
                .map(|&n| crowdfactor_factor::factor(n))
                .collect();
            let right = match answer {
                Answer::Right => {
                    if seen.left_out() {
                        for l in &mut lists {
                            l.pop();
                        }
                    }
                    !lists.is_empty()
                }
                Answer::RightWhole => !lists.is_empty(),
                Answer::NumberAsPrime => {
                    if let (Some(l), Some(&n)) = (lists.first_mut(), numbers.first()) {
                        *l = vec![n];
                    }
                    numbers
                        .first()
                        .is_some_and(|&n| crowdfactor_factor::is_prime(n))
                }
                Answer::Short => {
                    lists.pop();
                    false
                }
                Answer::Text(t) => {
                    // Text that reads as the right lists counts as right
                    // (from protocol 5, each with its largest factor
                    // restored if left out).
                    let left_out = seen.left_out();
                    let reads_right = !lists.is_empty()
                        && FactorLists::parse(t, b';').is_ok_and(|got| {
                            got.len() == lists.len()
                                && got.iter().zip(&numbers).zip(&lists).all(|((g, &n), want)| {
                                    if left_out {
                                        restored(n, g).as_ref() == Some(want)
                                    } else {
                                        g == &want[..]
                                    }
                                })
                        });
                    if reads_right {
                        seen.right_sent.insert(chunk_id);
                    }
                    let json =
                        serde_json::json!({"type": "result", "chunk_id": chunk_id, "factors": t});
                    return Some(Message::text(json.to_string()));
                }
            };
            if right {
                seen.right_sent.insert(chunk_id);
            }
            text(ClientMessage::Result(ChunkResult {
                chunk_id,
                factors: lists.iter().collect::<FactorLists>(),
                compute_us: *compute_us,
            }))
        }
        Op::Heartbeat => text(ClientMessage::Heartbeat),
        Op::Capacity(s, waiting) => text(ClientMessage::Capacity {
            slots: u32::from(*s),
            waiting: *waiting,
        }),
        Op::Release(ps) => text(ClientMessage::Release {
            chunk_ids: ps.iter().map(|p| seen.pick(p)).collect(),
        }),
        Op::Rename(name) => text(ClientMessage::Rename { name: name.clone() }),
        Op::Text(t) => Some(Message::text(t.clone())),
        Op::Binary(b) => Some(Message::binary(b.clone())),
        Op::Ping(b) => Some(Message::Ping(b.clone().into())),
        Op::Wait | Op::Close => None,
    }
}

async fn connect(port: u16) -> Ws {
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("the server accepts a connection within 5 s")
    .expect("WebSocket upgrade");
    ws
}

fuzz_target!(|ops: Vec<Op>| {
    let w = world();
    w.rt.block_on(async {
        let mut ws = connect(w.port).await;
        let mut seen = Seen::default();
        for op in ops.iter().take(64) {
            if matches!(op, Op::Close) {
                let _ = ws.close(None).await;
                break;
            }
            if let Some(msg) = frame(op, &mut seen) {
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
            // After a hello (or on request) wait for the answer and the
            // first chunks, so later operations can name them.
            if matches!(op, Op::Hello { .. } | Op::Wait) {
                if !seen.settle(&mut ws).await {
                    break;
                }
            } else if !seen.drain(&mut ws) {
                break;
            }
        }
        // What is still on its way, until the server closes or goes quiet.
        seen.settle(&mut ws).await;
        drop(ws);
        // The server still takes a well-behaved worker.
        let mut ws = connect(w.port).await;
        ws.send(hello(1, 1, WorkerKind::Native, PROTOCOL_VERSION))
            .await
            .expect("send hello");
        let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer to hello within 5 s");
        let Some(Ok(Message::Text(text))) = first else {
            panic!("no answer to hello: {first:?}");
        };
        assert!(
            matches!(
                ServerMessage::decode(&text, usize::MAX),
                Ok(ServerMessage::Welcome { .. })
            ),
            "{text}"
        );
        let _ = ws.close(None).await;
    });
});

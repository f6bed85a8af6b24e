//! Wire types of the crowdfactor worker protocol.
//!
//! Workers (the native CLI and browser tabs) talk to the coordinator over one
//! WebSocket at `/ws`. Every frame is a **JSON text frame** holding one message,
//! an object tagged by its `"type"` field. Integers that may exceed 2^53
//! (the numbers to factor and their factors) travel as **decimal strings**;
//! counters and ids are plain JSON numbers below 2^53.
//!
//! # Conversation
//!
//! ```text
//! worker                                   coordinator
//!   | -- hello {protocol, kind, slots} -------> |
//!   | <------------- welcome {worker_id, ...} -- |
//!   | <------------- assign {chunk_id, numbers}  |   up to `slots` chunks at once
//!   | -- ack {chunk_id} -----------------------> |   within `ack_timeout_ms`
//!   | -- heartbeat ----------------------------> |   every `heartbeat_ms`
//!   | -- result {chunk_id, results} -----------> |
//!   | <------------- accepted {chunk_id} -------- |   or rejected {chunk_id, reason}
//!   | <------------- idle ----------------------- |   nothing queued and nothing in flight
//! ```
//!
//! The first message on a connection must be `hello` with
//! `protocol` equal to [`PROTOCOL_VERSION`]; anything else gets an `error`
//! message and the socket is closed.
//!
//! # Worker → coordinator ([`ClientMessage`])
//!
//! | type | example |
//! |---|---|
//! | `hello` | `{"type":"hello","protocol":1,"kind":"native","slots":4,"threads":2,"name":"box-1","agent":"crowdfactor-worker/0.1.0"}` (plus `"token"` when the coordinator requires a worker token) |
//! | `ack` | `{"type":"ack","chunk_id":17}` |
//! | `result` | `{"type":"result","chunk_id":17,"results":[{"n":"12","factors":["2","2","3"]},{"n":"1","factors":[]}],"compute_us":41}` (`compute_us` optional) |
//! | `heartbeat` | `{"type":"heartbeat"}` |
//! | `capacity` | `{"type":"capacity","slots":0}` (0 pauses: nothing new is assigned) |
//! | `release` | `{"type":"release","chunk_ids":[17,18]}` (hand chunks back unfinished) |
//!
//! `slots` is how many chunks the worker wants to hold at once (native workers
//! ask for two per compute thread so a thread never waits for a round trip).
//! A `result` lists every number of the chunk, in the order of the `assign`,
//! each with its prime factors ascending and with multiplicity (`1` has none).
//!
//! # Coordinator → worker ([`ServerMessage`])
//!
//! | type | example |
//! |---|---|
//! | `welcome` | `{"type":"welcome","protocol":1,"worker_id":3,"heartbeat_ms":5000,"lease_timeout_ms":30000,"ack_timeout_ms":10000}` |
//! | `assign` | `{"type":"assign","chunk_id":17,"job_id":"2","numbers":["999999999999","1000000000001"]}` |
//! | `accepted` | `{"type":"accepted","chunk_id":17}` |
//! | `rejected` | `{"type":"rejected","chunk_id":17,"reason":"999999999999: product of factors is 999999999997"}` |
//! | `cancel` | `{"type":"cancel","chunk_ids":[18]}` (drop these; their results are no longer wanted) |
//! | `idle` | `{"type":"idle"}` |
//! | `error` | `{"type":"error","code":"bad_message","message":"unknown message type `hullo`"}` (the socket closes after it) |
//!
//! # Leases
//!
//! A chunk is leased to one worker at a time. It goes back to the queue when
//! the socket closes, when its `ack` does not arrive within `ack_timeout_ms`,
//! or when the worker sends nothing (not even a heartbeat) for
//! `lease_timeout_ms`. A late result from a worker that once held the chunk
//! is still accepted if the chunk is not done yet; a second result for a
//! finished chunk is ignored. Every result is verified (the factors multiply
//! to `n` and each is prime) before it is accepted.

use serde::{Deserialize, Serialize};

/// Version sent in `hello` and `welcome`; bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Default upper bound on one message, in bytes (both directions).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Identifies a chunk for the lifetime of the coordinator's store (< 2^53).
pub type ChunkId = u64;

/// A message from a worker to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message on every connection.
    Hello(Hello),
    /// The worker has received `assign` for this chunk.
    Ack {
        /// The acknowledged chunk.
        chunk_id: ChunkId,
    },
    /// The factorizations of a whole chunk.
    Result(ChunkResult),
    /// Keeps leases alive while a chunk is being factored.
    Heartbeat,
    /// Changes how many chunks the worker holds at once; 0 pauses it.
    Capacity {
        /// New number of slots.
        slots: u32,
    },
    /// Hands chunks back unfinished (pause, shutdown); they are requeued at once.
    Release {
        /// The chunks handed back.
        chunk_ids: Vec<ChunkId>,
    },
}

/// The kind of worker, reported in `hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerKind {
    /// The `crowdfactor-worker` command-line program.
    Native,
    /// A browser tab running the wasm factorizer in Web Workers.
    Browser,
}

impl WorkerKind {
    /// The name used on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerKind::Native => "native",
            WorkerKind::Browser => "browser",
        }
    }
}

/// Body of the `hello` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Must equal [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// What kind of worker this is.
    pub kind: WorkerKind,
    /// How many chunks the worker wants to hold at once.
    pub slots: u32,
    /// Compute threads (or Web Workers) behind this connection.
    pub threads: u32,
    /// Optional human-readable name shown to operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Software and version, e.g. `crowdfactor-worker/0.1.0`.
    #[serde(default)]
    pub agent: String,
    /// The worker token, when the coordinator requires one (`--worker-token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Body of the `result` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkResult {
    /// The chunk these results belong to.
    pub chunk_id: ChunkId,
    /// One entry per number of the chunk, in assignment order.
    pub results: Vec<Factored>,
    /// Wall-clock microseconds the worker spent on the chunk (optional). The
    /// coordinator sizes this worker's next chunks from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_us: Option<u64>,
}

/// One number and its prime factors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Factored {
    /// The number that was factored.
    #[serde(with = "dec")]
    pub n: u128,
    /// Its prime factors, ascending, with multiplicity.
    #[serde(with = "dec_vec")]
    pub factors: Vec<u128>,
}

/// A message from the coordinator to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    /// Answer to `hello`.
    Welcome {
        /// Protocol version spoken by the coordinator.
        protocol: u32,
        /// This connection's id (for logs).
        worker_id: u64,
        /// How often the worker should send `heartbeat`.
        heartbeat_ms: u64,
        /// Silence after which the worker's leases are requeued.
        lease_timeout_ms: u64,
        /// Time allowed between `assign` and `ack`.
        ack_timeout_ms: u64,
    },
    /// A chunk to factor.
    Assign(Assignment),
    /// The result for this chunk was verified and stored.
    Accepted {
        /// The chunk.
        chunk_id: ChunkId,
    },
    /// The result for this chunk was wrong; the chunk went back to the queue.
    Rejected {
        /// The chunk.
        chunk_id: ChunkId,
        /// What was wrong.
        reason: String,
    },
    /// Drop these chunks: their job was cancelled or they were reassigned.
    Cancel {
        /// The chunks.
        chunk_ids: Vec<ChunkId>,
    },
    /// Nothing is queued and nothing is in flight anywhere.
    Idle,
    /// A protocol error; the coordinator closes the socket after sending it.
    Error {
        /// Machine-readable error class.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
}

/// Body of the `assign` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// The chunk's id, echoed in `ack` and `result`.
    pub chunk_id: ChunkId,
    /// The job the chunk belongs to.
    pub job_id: String,
    /// The numbers to factor, each 1 ≤ n < 2^128.
    #[serde(with = "dec_vec")]
    pub numbers: Vec<u128>,
}

/// Classes of protocol error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not a valid message (bad JSON, unknown type or field).
    BadMessage,
    /// The frame was larger than the coordinator accepts.
    TooLarge,
    /// `hello` missing, repeated, or with an unsupported protocol version.
    BadHandshake,
    /// Too many wrong results; the worker is refused for a while.
    Banned,
    /// The worker was silent for too long.
    Timeout,
    /// The coordinator is shutting down.
    ShuttingDown,
    /// Connection limits reached.
    Overloaded,
    /// A worker token is required and was missing or wrong.
    Unauthorized,
}

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame exceeds the size limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the frame.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON, or not one of the messages above.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl DecodeError {
    /// The protocol error code to report for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::TooLarge,
            DecodeError::Malformed(_) => ErrorCode::BadMessage,
        }
    }
}

fn decode<T: for<'de> Deserialize<'de>>(text: &str, limit: usize) -> Result<T, DecodeError> {
    if text.len() > limit {
        return Err(DecodeError::TooLarge {
            size: text.len(),
            limit,
        });
    }
    Ok(serde_json::from_str(text)?)
}

fn encode<T: Serialize>(msg: &T) -> String {
    // Serializing these plain structs cannot fail: no maps with non-string keys,
    // no failing custom serializers.
    serde_json::to_string(msg).unwrap_or_else(|e| unreachable!("protocol message serializes: {e}"))
}

/// serde buffers a whole internally tagged message before it looks at the
/// tag; for the two large, frequent messages (`result`, `assign`) that is
/// most of the decoding cost. When the tag comes first, as every encoder here
/// writes it, they are decoded straight into these mirrors instead.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultFrame {
    #[serde(rename = "type")]
    _tag: ResultTag,
    chunk_id: ChunkId,
    results: Vec<Factored>,
    #[serde(default)]
    compute_us: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ResultTag {
    Result,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignFrame {
    #[serde(rename = "type")]
    _tag: AssignTag,
    chunk_id: ChunkId,
    job_id: String,
    #[serde(with = "dec_vec")]
    numbers: Vec<u128>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum AssignTag {
    Assign,
}

impl ClientMessage {
    /// Decodes one text frame, refusing frames over `limit` bytes.
    pub fn decode(text: &str, limit: usize) -> Result<Self, DecodeError> {
        if text.starts_with(r#"{"type":"result","#) && text.len() <= limit {
            let f: ResultFrame = serde_json::from_str(text)?;
            return Ok(ClientMessage::Result(ChunkResult {
                chunk_id: f.chunk_id,
                results: f.results,
                compute_us: f.compute_us,
            }));
        }
        decode(text, limit)
    }

    /// Encodes the message as one text frame.
    pub fn encode(&self) -> String {
        encode(self)
    }
}

impl ServerMessage {
    /// Decodes one text frame, refusing frames over `limit` bytes.
    pub fn decode(text: &str, limit: usize) -> Result<Self, DecodeError> {
        if text.starts_with(r#"{"type":"assign","#) && text.len() <= limit {
            let f: AssignFrame = serde_json::from_str(text)?;
            return Ok(ServerMessage::Assign(Assignment {
                chunk_id: f.chunk_id,
                job_id: f.job_id,
                numbers: f.numbers,
            }));
        }
        decode(text, limit)
    }

    /// Encodes the message as one text frame.
    pub fn encode(&self) -> String {
        encode(self)
    }
}

/// Why a decimal number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Empty string.
    #[error("empty string is not a number")]
    Empty,
    /// Something other than the digits 0-9.
    #[error("{0:?} is not a decimal integer")]
    NotDecimal(String),
    /// 2^128 or more.
    #[error("{0} is too large: numbers must be below 2^128")]
    TooLarge(String),
}

/// Parses a plain decimal string (digits only, no sign or spaces) into a `u128`.
pub fn parse_u128(s: &str) -> Result<u128, NumberError> {
    if s.is_empty() {
        return Err(NumberError::Empty);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NumberError::NotDecimal(s.to_owned()));
    }
    s.parse::<u128>()
        .map_err(|_| NumberError::TooLarge(s.to_owned()))
}

/// Serde helpers: a `u128` as a decimal string (plain JSON integers are accepted too).
pub mod dec {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    /// Serializes as a decimal string.
    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// Deserializes from a decimal string or a non-negative JSON integer.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        d.deserialize_any(DecVisitor)
    }

    pub(crate) struct DecVisitor;

    impl Visitor<'_> for DecVisitor {
        type Value = u128;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a decimal string for an integer 0 <= n < 2^128")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u128, E> {
            crate::parse_u128(v).map_err(E::custom)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u128, E> {
            Ok(v.into())
        }

        fn visit_u128<E: de::Error>(self, v: u128) -> Result<u128, E> {
            Ok(v)
        }
    }
}

/// Serde helpers: a `Vec<u128>` as a list of decimal strings.
pub mod dec_vec {
    use serde::de::{SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserializer, Serializer};
    use std::fmt;

    /// Serializes as a list of decimal strings.
    pub fn serialize<S: Serializer>(v: &[u128], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for n in v {
            seq.serialize_element(&Dec(*n))?;
        }
        seq.end()
    }

    /// Deserializes a list of decimal strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u128>, D::Error> {
        d.deserialize_seq(SeqVisitor)
    }

    struct Dec(u128);

    impl serde::Serialize for Dec {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::dec::serialize(&self.0, s)
        }
    }

    struct Elem(u128);

    impl<'de> serde::Deserialize<'de> for Elem {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(super::dec::DecVisitor).map(Elem)
        }
    }

    struct SeqVisitor;

    impl<'de> Visitor<'de> for SeqVisitor {
        type Value = Vec<u128>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of decimal strings")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u128>, A::Error> {
            // Cap the preallocation: the length hint comes from the peer.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(Elem(n)) = seq.next_element()? {
                out.push(n);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_client(msg: ClientMessage) {
        let text = msg.encode();
        let back = ClientMessage::decode(&text, DEFAULT_MAX_MESSAGE_BYTES).expect("decodes");
        assert_eq!(back, msg, "{text}");
    }

    fn round_trip_server(msg: ServerMessage) {
        let text = msg.encode();
        let back = ServerMessage::decode(&text, DEFAULT_MAX_MESSAGE_BYTES).expect("decodes");
        assert_eq!(back, msg, "{text}");
    }

    #[test]
    fn client_messages_round_trip() {
        round_trip_client(ClientMessage::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            kind: WorkerKind::Browser,
            slots: 8,
            threads: 4,
            name: Some("tab".into()),
            agent: "test".into(),
            token: Some("secret".into()),
        }));
        round_trip_client(ClientMessage::Ack { chunk_id: 7 });
        round_trip_client(ClientMessage::Heartbeat);
        round_trip_client(ClientMessage::Capacity { slots: 0 });
        round_trip_client(ClientMessage::Release {
            chunk_ids: vec![1, 2, 3],
        });
        round_trip_client(ClientMessage::Result(ChunkResult {
            chunk_id: 9,
            results: vec![
                Factored {
                    n: u128::MAX,
                    factors: vec![3, 5, 17, 257, 641, 65537, 274177, 6700417, 67280421310721],
                },
                Factored {
                    n: 1,
                    factors: vec![],
                },
            ],
            compute_us: None,
        }));
    }

    #[test]
    fn server_messages_round_trip() {
        round_trip_server(ServerMessage::Welcome {
            protocol: 1,
            worker_id: 3,
            heartbeat_ms: 5000,
            lease_timeout_ms: 30000,
            ack_timeout_ms: 10000,
        });
        round_trip_server(ServerMessage::Assign(Assignment {
            chunk_id: 1,
            job_id: "4".into(),
            numbers: vec![999_999_999_999, u128::MAX],
        }));
        round_trip_server(ServerMessage::Accepted { chunk_id: 1 });
        round_trip_server(ServerMessage::Rejected {
            chunk_id: 1,
            reason: "x".into(),
        });
        round_trip_server(ServerMessage::Cancel { chunk_ids: vec![5] });
        round_trip_server(ServerMessage::Idle);
        round_trip_server(ServerMessage::Error {
            code: ErrorCode::BadMessage,
            message: "nope".into(),
        });
    }

    #[test]
    fn wire_format_matches_the_documented_examples() {
        let assign = ServerMessage::Assign(Assignment {
            chunk_id: 17,
            job_id: "2".into(),
            numbers: vec![999_999_999_999, 1_000_000_000_001],
        });
        assert_eq!(
            assign.encode(),
            r#"{"type":"assign","chunk_id":17,"job_id":"2","numbers":["999999999999","1000000000001"]}"#
        );
        let result = ClientMessage::decode(
            r#"{"type":"result","chunk_id":17,"results":[{"n":"12","factors":["2","2","3"]},{"n":"1","factors":[]}],"compute_us":41}"#,
            1 << 20,
        )
        .expect("documented example decodes");
        assert_eq!(
            result,
            ClientMessage::Result(ChunkResult {
                chunk_id: 17,
                results: vec![
                    Factored {
                        n: 12,
                        factors: vec![2, 2, 3]
                    },
                    Factored {
                        n: 1,
                        factors: vec![]
                    },
                ],
                compute_us: Some(41),
            })
        );
        assert_eq!(ClientMessage::Heartbeat.encode(), r#"{"type":"heartbeat"}"#);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        for bad in [
            "",
            "null",
            "[]",
            "{}",
            r#"{"type":"hullo"}"#,
            r#"{"type":"ack"}"#,
            r#"{"type":"ack","chunk_id":-1}"#,
            r#"{"type":"ack","chunk_id":1,"extra":2}"#,
            r#"{"type":"result","chunk_id":1,"results":[{"n":"-3","factors":[]}]}"#,
            r#"{"type":"result","chunk_id":1,"results":[{"n":"340282366920938463463374607431768211456","factors":[]}]}"#,
            r#"{"type":"result","chunk_id":1,"results":[{"n":"12","factors":["2","2",3.5]}]}"#,
            "\u{0}\u{1}garbage",
        ] {
            let err = ClientMessage::decode(bad, 1 << 20).expect_err(bad);
            assert_eq!(err.code(), ErrorCode::BadMessage, "{bad}: {err}");
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_parsing() {
        let err = ClientMessage::decode(&"x".repeat(100), 99).expect_err("too large");
        assert_eq!(err.code(), ErrorCode::TooLarge);
    }

    #[test]
    fn plain_json_integers_are_accepted_for_numbers() {
        let msg = ClientMessage::decode(
            r#"{"type":"result","chunk_id":1,"results":[{"n":12,"factors":[2,2,3]}]}"#,
            1 << 20,
        )
        .expect("integers decode");
        let ClientMessage::Result(r) = msg else {
            panic!("not a result")
        };
        assert_eq!(r.results[0].factors, vec![2, 2, 3]);
    }

    #[test]
    fn parse_u128_bounds() {
        assert_eq!(parse_u128("0"), Ok(0));
        assert_eq!(
            parse_u128("340282366920938463463374607431768211455"),
            Ok(u128::MAX)
        );
        assert!(matches!(
            parse_u128("340282366920938463463374607431768211456"),
            Err(NumberError::TooLarge(_))
        ));
        assert!(matches!(parse_u128("+1"), Err(NumberError::NotDecimal(_))));
        assert!(matches!(parse_u128(" 1"), Err(NumberError::NotDecimal(_))));
        assert_eq!(parse_u128(""), Err(NumberError::Empty));
    }
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    #[test]
    fn tag_first_and_tag_elsewhere_decode_alike() {
        let first = r#"{"type":"result","chunk_id":3,"results":[{"n":"12","factors":["2","2","3"]}],"compute_us":9}"#;
        let later = r#"{"chunk_id":3,"results":[{"n":"12","factors":["2","2","3"]}],"type":"result","compute_us":9}"#;
        assert_eq!(
            ClientMessage::decode(first, 1 << 10).expect("fast path"),
            ClientMessage::decode(later, 1 << 10).expect("general path")
        );
        let bad = r#"{"type":"result","chunk_id":3,"results":[],"extra":1}"#;
        assert!(
            ClientMessage::decode(bad, 1 << 10).is_err(),
            "unknown fields are refused on the fast path too"
        );
        assert!(matches!(
            ClientMessage::decode(first, 10),
            Err(DecodeError::TooLarge { .. })
        ));
        let assign = r#"{"type":"assign","chunk_id":1,"job_id":"2","numbers":["5","6"]}"#;
        let moved = r#"{"chunk_id":1,"job_id":"2","numbers":["5","6"],"type":"assign"}"#;
        assert_eq!(
            ServerMessage::decode(assign, 1 << 10).expect("fast path"),
            ServerMessage::decode(moved, 1 << 10).expect("general path")
        );
    }
}

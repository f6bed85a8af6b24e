//! Wire types of the crowdfactor worker protocol.
//!
//! Workers (the native CLI and browser tabs) talk to the coordinator over one
//! WebSocket at `/ws`. Every frame is a **JSON text frame** holding one message,
//! an object tagged by its `"type"` field. Integers that may exceed 2^53
//! (the numbers to factor and their factors) travel as **decimal strings**;
//! counters and ids are plain JSON numbers below 2^53.
//!
//! Any valid JSON object is accepted (whitespace, field order, numbers as
//! JSON integers where they fit); nothing else is a message. The encoders here write the compact form of the
//! examples below, tag first; `result` and `assign` frames in exactly that
//! form are read by a hand-written scanner (they carry most of the bytes), and
//! anything else by serde — both give the same answer (tested, and fuzzed).
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
//!   | <------------- heartbeat ------------------ |   answers each one
//!   | -- result {chunk_id, results} -----------> |
//!   | <------------- accepted {chunk_id} -------- |   or rejected {chunk_id, reason}
//!   | <------------- idle ----------------------- |   nothing queued and nothing in flight
//! ```
//!
//! The first message on a connection must be `hello` with
//! `protocol` from [`OLDEST_PROTOCOL_VERSION`] to [`PROTOCOL_VERSION`];
//! anything else gets an `error` message and the socket is closed. The
//! coordinator speaks the worker's version: `welcome` repeats it, and
//! protocol 3 workers get no answers to their heartbeats. A worker refused
//! at `hello` with `bad_handshake` (a coordinator older than it) may offer
//! a lower version on a new connection: the native worker steps down one
//! version at a time to [`OLDEST_PROTOCOL_VERSION`] and gives up below.
//!
//! The coordinator answers every `heartbeat` with one (unless frames are
//! already waiting to be written to that worker), so a worker can tell a
//! coordinator that is gone without closing the socket (its machine lost
//! power, the network between dropped: TCP takes some 15 minutes to give
//! up) from one with nothing to say: the page reconnects after three
//! heartbeats without any frame from the coordinator. Either side may also
//! send WebSocket pings; the other's WebSocket layer answers them. The
//! native worker pings after three heartbeat intervals without a frame from
//! the coordinator and connects again after six.
//!
//! # Worker → coordinator ([`ClientMessage`])
//!
//! | type | example |
//! |---|---|
//! | `hello` | `{"type":"hello","protocol":6,"kind":"native","slots":4,"threads":2,"name":"box-1","agent":"crowdfactor-worker/0.1.0"}` (plus `"token"` when the coordinator requires a worker token) |
//! | `ack` | `{"type":"ack","chunk_id":17}` |
//! | `result` | `{"type":"result","chunk_id":17,"factors":"2 2;;","compute_us":41}` (`compute_us` optional) |
//! | `heartbeat` | `{"type":"heartbeat"}` |
//! | `capacity` | `{"type":"capacity","slots":0}` (0 pauses: nothing new is assigned; a browser tab adds `"waiting":true` while another tab of its browser contributes instead, so the dashboard can say so) |
//! | `release` | `{"type":"release","chunk_ids":[17,18]}` (hand chunks back unfinished; at most 2048 ids, what a worker can hold) |
//! | `rename` | `{"type":"rename","name":"lab-3"}` (from protocol 6: the name `hello` gave, changed for the rest of the connection; `""` for none) |
//!
//! `slots` is how many chunks the worker wants to hold at once (native workers
//! ask for two per compute thread so a thread never waits for a round trip).
//! A chunk stops taking a slot when its `result` arrives: its next chunk is
//! assigned before the coordinator has verified and stored that result, so
//! a worker holds at most twice `slots` chunks (those beyond `slots` are
//! answered, waiting for `accepted` or `rejected`). The coordinator takes
//! `slots` and `threads` up to 1024 each (`threads` sizes the chunks at a
//! job's end, shared out among all workers' threads).
//! A `result`'s `factors` holds one list per number of the chunk, in the
//! order of the `assign`, each the number's prime factors ascending and with
//! multiplicity in decimal, separated by single spaces, **except the largest
//! one** (protocol 5): the coordinator knows the number and restores its
//! largest factor as the number divided by the product of the list (none
//! when that is 1). So a prime and `1` both have an empty list (and a list
//! with every factor reads the same: nothing is left to restore). The lists
//! are separated by `;`. The example, `"2 2;;"`, answers the chunk 12, 1, 5
//! (12 = 2·2·3, 1, 5). Leaving the largest factor out makes results less
//! than half the size (on a range from 10^12 it is most of each list's digits)
//! and costs the coordinator one division per number; it still checks every
//! factor, the restored one included. Workers speaking protocol 3 or 4 send
//! every factor (`"2 2 3;;5"`). See [`FactorLists`].
//!
//! # Coordinator → worker ([`ServerMessage`])
//!
//! | type | example |
//! |---|---|
//! | `welcome` | `{"type":"welcome","protocol":6,"worker_id":3,"heartbeat_ms":5000,"lease_timeout_ms":30000,"ack_timeout_ms":10000}` |
//! | `assign` | `{"type":"assign","chunk_id":17,"job_id":"2","numbers":["999999999999","1000000000001"]}`, or for a slice of a range job `"numbers":{"start":"999999999999","step":"2","count":50000}` (see [`ChunkNumbers`]) |
//! | `accepted` | `{"type":"accepted","chunk_id":17}` |
//! | `rejected` | `{"type":"rejected","chunk_id":17,"reason":"999999999999: the product of the factors is 5, which does not divide 999999999999"}` |
//! | `cancel` | `{"type":"cancel","chunk_ids":[18]}` (drop these; their results are no longer wanted) |
//! | `idle` | `{"type":"idle"}` |
//! | `heartbeat` | `{"type":"heartbeat"}` (the answer to one; from protocol 4) |
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
//!
//! A chunk goes back to the queue under the same id, with the same numbers,
//! and is leased again before any new chunk: so the `assign` a worker gets
//! for it is the one it had, word for word. A result the coordinator could
//! verify but not store (a full disk) gets no answer, neither `accepted` nor
//! `rejected`, and its chunk is queued again too. A worker that still has a
//! result for an `assign` equal to one it answered (the first connection
//! ended, or the result got no answer) may send that result again rather
//! than factor the chunk again: both workers here do. (A restarted
//! coordinator has forgotten its leases: it cuts the numbers it has no
//! result for into new chunks, with new ids; both workers here answer those
//! from their kept results list by list.)

use serde::{Deserialize, Serialize};

mod chunk_numbers;
mod factor_lists;
pub use chunk_numbers::{ChunkNumbers, NumberRange, RangeError, MAX_RANGE_COUNT};
pub use factor_lists::{pack_list_text, unpack_list_text, FactorLists, FactorListsError};

/// Version sent in `hello` and `welcome`; bumped on any incompatible change
/// (2: `result` carries one `factors` text instead of an object per number;
/// 3: `assign` may give its numbers as a range; 4: the coordinator answers
/// `heartbeat`; 5: `result` lists leave out each number's largest factor;
/// 6: a worker may send `rename`).
pub const PROTOCOL_VERSION: u32 = 6;

/// The oldest version a coordinator still speaks (to workers installed
/// before it was upgraded).
pub const OLDEST_PROTOCOL_VERSION: u32 = 3;

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
        /// With 0 slots: paused not by choice but while another tab of the
        /// same browser contributes (browser tabs take turns). Left out
        /// when false.
        #[serde(default, skip_serializing_if = "is_false")]
        waiting: bool,
    },
    /// Hands chunks back unfinished (pause, shutdown); they are requeued at once.
    Release {
        /// The chunks handed back.
        chunk_ids: Vec<ChunkId>,
    },
    /// Changes the name `hello` gave (protocol 6 and later), without a new
    /// connection: a volunteer who renames a tab keeps its chunks. Kept as
    /// [`kept_name`] keeps `hello`'s; empty for no name.
    Rename {
        /// The new name.
        name: String,
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
    /// The worker's protocol version, [`PROTOCOL_VERSION`] (the coordinator
    /// also speaks older ones down to [`OLDEST_PROTOCOL_VERSION`]).
    pub protocol: u32,
    /// What kind of worker this is.
    pub kind: WorkerKind,
    /// How many chunks the worker wants to hold at once.
    pub slots: u32,
    /// Compute threads (or Web Workers) behind this connection; the
    /// coordinator counts at most [`MAX_THREADS`].
    pub threads: u32,
    /// Optional human-readable name shown to operators. Coordinators keep
    /// its first [`MAX_NAME_CHARS`] characters, with control characters
    /// made spaces. From protocol 6, `rename` changes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Software and version, e.g. `crowdfactor-worker/0.1.0`.
    #[serde(default)]
    pub agent: String,
    /// The worker token, when the coordinator requires one (`--worker-token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Most compute threads the coordinator counts for one worker (more than any
/// machine a volunteer brings); workers refuse to be started with more.
pub const MAX_THREADS: u32 = 1024;

/// Most characters of a worker's `hello` name a coordinator keeps (a
/// dashboard cell, a log field); workers refuse to be given a longer one.
pub const MAX_NAME_CHARS: usize = 64;

/// The name a coordinator keeps of a `hello`'s `name` (what its dashboard
/// shows and its log says): the first [`MAX_NAME_CHARS`] characters, each
/// control character (a tab, a terminal escape) made a space, trimmed. The
/// volunteer page cleans a name typed into it with this too.
pub fn kept_name(name: &str) -> String {
    name.chars()
        .take(MAX_NAME_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Body of the `result` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkResult {
    /// The chunk these results belong to.
    pub chunk_id: ChunkId,
    /// One factor list per number of the chunk, in assignment order.
    pub factors: FactorLists,
    /// Wall-clock microseconds the worker spent on the chunk (optional). The
    /// coordinator sizes this worker's next chunks from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_us: Option<u64>,
}

/// A message from the coordinator to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    /// Answer to `hello`.
    Welcome {
        /// Protocol version spoken on this connection: the worker's.
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
    /// Answers the worker's `heartbeat` (protocol 4 and later): the
    /// coordinator still hears this connection.
    Heartbeat,
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
    /// The numbers to factor, each 1 ≤ n < 2^128: listed, or a range.
    pub numbers: ChunkNumbers,
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

impl ErrorCode {
    /// The name used on the wire (`"shutting_down"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BadHandshake => "bad_handshake",
            ErrorCode::Banned => "banned",
            ErrorCode::Timeout => "timeout",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unauthorized => "unauthorized",
        }
    }
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
    /// Not JSON, or not one of the messages above. The text is serde's,
    /// clipped: it quotes the input (an unknown `type`, a bad string), and
    /// the peer's input must not make every log line or error reply as
    /// large as a message may be.
    #[error("malformed message: {}", clip_quoted(&.0.to_string()))]
    Malformed(#[from] serde_json::Error),
}

/// `text` if it is short; otherwise its start and end (the end of serde's
/// messages says where in the input it failed) around an ellipsis: for
/// error messages that quote a peer's input.
pub fn clip_quoted(text: &str) -> std::borrow::Cow<'_, str> {
    const HEAD: usize = 160;
    const TAIL: usize = 60;
    if text.len() <= HEAD + TAIL + 3 {
        return text.into();
    }
    let head = (0..=HEAD)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let tail = (text.len() - TAIL..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    format!("{}…{}", &text[..head], &text[tail..]).into()
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
    // serde would also read a tagged message from a list, tag first
    // (`["ack",17]`): not a form of the protocol.
    if !text
        .trim_start_matches([' ', '\t', '\r', '\n'])
        .starts_with('{')
    {
        return Err(DecodeError::Malformed(serde::de::Error::custom(
            "a message is a JSON object with a \"type\"",
        )));
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
    factors: FactorLists,
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
    numbers: ChunkNumbers,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum AssignTag {
    Assign,
}

/// Writes a `result` frame exactly as serde would, without its per-string
/// escape scan and formatter plumbing (a worker sends one per chunk, with
/// every factor of every number in it).
fn encode_result(r: &ChunkResult) -> String {
    let mut out = String::with_capacity(64 + r.factors.len() * 24);
    out.push_str(&result_head(r.chunk_id));
    // Digits, spaces and `;` need no JSON escapes.
    r.factors.write_text(&mut out, ';');
    out.push_str(&result_tail(r.compute_us));
    out
}

/// A `result` frame up to its `factors` text.
fn result_head(chunk_id: ChunkId) -> String {
    format!(r#"{{"type":"result","chunk_id":{chunk_id},"factors":""#)
}

/// The `factors` text of a `result` frame in the form [`ResultWriter`]
/// and [`ClientMessage::encode`] write, cut into its lists (one per number
/// of the chunk, in order); `None` for any other text.
pub fn result_frame_lists(frame: &str) -> Option<impl Iterator<Item = &str> + '_> {
    let rest = frame.strip_prefix(r#"{"type":"result","chunk_id":"#)?;
    let (_, rest) = rest.split_once(r#","factors":""#)?;
    let (factors, _) = rest.split_once('"')?;
    // An empty text is one empty list (a chunk of one prime, or of 1).
    Some(factors.split(';'))
}

/// A `result` frame after its `factors` text.
fn result_tail(compute_us: Option<u64>) -> String {
    match compute_us {
        Some(us) => format!(r#"","compute_us":{us}}}"#),
        None => r#""}"#.to_owned(),
    }
}

/// A `result` frame written as its chunk is factored: each number's list
/// goes into the frame's text as it is found, in the form
/// [`ClientMessage::encode`] gives a [`ChunkResult`] (and its decoder
/// reads). What a worker uses: no list of 128-bit factors kept, walked and
/// copied again at the end (on the classic job that was an eighth of its
/// time).
#[derive(Debug)]
pub struct ResultWriter {
    frame: Vec<u8>,
    lists: usize,
    largest_left_out: bool,
    /// For [`ResultWriter::push_factorization_with`].
    scratch: Vec<u128>,
}

impl ResultWriter {
    /// Starts the result of chunk `chunk_id`, with room for about
    /// `numbers` lists; each without its largest factor if
    /// `largest_left_out` (protocol 5, see
    /// [`FactorLists::largest_left_out`]).
    pub fn new(chunk_id: ChunkId, largest_left_out: bool, numbers: usize) -> Self {
        let mut frame = Vec::with_capacity(64 + numbers.saturating_mul(24));
        frame.extend_from_slice(result_head(chunk_id).as_bytes());
        ResultWriter {
            frame,
            lists: 0,
            largest_left_out,
            scratch: Vec::new(),
        }
    }

    /// Appends the next number's whole factorization (ascending, with
    /// multiplicity), in the result's form.
    pub fn push_factorization(&mut self, factors: &[u128]) {
        if self.lists > 0 {
            self.frame.push(b';');
        }
        let list = factor_lists::listed(factors, self.largest_left_out);
        push_decimal_bytes(&mut self.frame, list, &mut DecimalBuf::new());
        self.lists += 1;
    }

    /// Appends the next number's list as text already in the result's
    /// form (decimal factors separated by single spaces, the largest left
    /// out or not as this writer's): one taken from an earlier result
    /// frame of the same form by [`result_frame_lists`].
    pub fn push_listed(&mut self, list: &str) {
        debug_assert!(list.bytes().all(|b| b.is_ascii_digit() || b == b' '));
        if self.lists > 0 {
            self.frame.push(b';');
        }
        self.frame.extend_from_slice(list.as_bytes());
        self.lists += 1;
    }

    /// [`ResultWriter::push_factorization`] of the factorization `fill`
    /// appends to the (empty) vector it is given.
    pub fn push_factorization_with(&mut self, fill: impl FnOnce(&mut Vec<u128>)) {
        let mut factors = std::mem::take(&mut self.scratch);
        factors.clear();
        fill(&mut factors);
        self.push_factorization(&factors);
        self.scratch = factors;
    }

    /// Lists written so far.
    pub fn len(&self) -> usize {
        self.lists
    }

    /// Whether no list is written yet.
    pub fn is_empty(&self) -> bool {
        self.lists == 0
    }

    /// The frame, with `compute_us` (see [`ChunkResult::compute_us`]).
    pub fn finish(mut self, compute_us: Option<u64>) -> String {
        self.frame
            .extend_from_slice(result_tail(compute_us).as_bytes());
        String::from_utf8(self.frame).expect("a result frame is ASCII")
    }
}

/// Reads the canonical form of a frame (see [`decode_result_canonical`]);
/// every method gives `None` where serde should decide instead.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn eat(&mut self, lit: &str) -> Option<()> {
        self.0 = self.0.strip_prefix(lit.as_bytes())?;
        Some(())
    }
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }
    /// A JSON integer as serde_json reads it into a u64: no sign, no
    /// leading zero.
    fn int(&mut self) -> Option<u64> {
        let len = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        let (digits, rest) = self.0.split_at(len);
        if len == 0 || (len > 1 && digits[0] == b'0') {
            return None;
        }
        let v = digits.iter().try_fold(0u64, |acc, &b| {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })?;
        self.0 = rest;
        Some(v)
    }
    /// A quoted decimal string, as [`parse_u128`] reads it.
    fn dec(&mut self) -> Option<u128> {
        self.eat("\"")?;
        let len = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        let (digits, rest) = self.0.split_at(len);
        if digits.is_empty() {
            return None;
        }
        let v = digits_value(digits)?;
        self.0 = rest;
        self.eat("\"")?;
        Some(v)
    }
    /// A quoted string without escapes or control characters.
    fn plain_str(&mut self) -> Option<String> {
        self.eat("\"")?;
        let len = self
            .0
            .iter()
            .take_while(|&&b| b >= 0x20 && b != b'"' && b != b'\\')
            .count();
        let (body, rest) = self.0.split_at(len);
        // Cut at ASCII bytes of valid UTF-8: still valid.
        let v = std::str::from_utf8(body).ok()?.to_owned();
        self.0 = rest;
        self.eat("\"")?;
        Some(v)
    }
    /// `[` items read by `item`, separated by `,` `]`.
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.eat("[")?;
        let mut out = Vec::new();
        if self.peek()? != b']' {
            loop {
                out.push(item(self)?);
                if self.peek()? != b',' {
                    break;
                }
                self.eat(",")?;
            }
        }
        self.eat("]")?;
        Some(out)
    }
    /// `[` quoted decimals `]`.
    fn dec_list(&mut self) -> Option<Vec<u128>> {
        self.list(Self::dec)
    }
}

/// Reads a `result` frame in exactly the form [`encode_result`] writes (no
/// whitespace, fields in order, numbers as plain digit strings). Anything
/// else gives `None` and goes through serde, which also words the errors.
fn decode_result_canonical(text: &str) -> Option<ChunkResult> {
    let mut c = Cursor(text.as_bytes());
    c.eat(r#"{"type":"result","chunk_id":"#)?;
    let chunk_id = c.int()?;
    c.eat(r#","factors":""#)?;
    // The text ends at the first quote (a vectorised search: it is most of
    // the frame); a backslash (an escape) is left to serde, as are malformed
    // lists (serde's error names the problem).
    let len = memchr::memchr2(b'"', b'\\', c.0)?;
    let at = text.len() - c.0.len();
    // Cut at an ASCII byte, so on a character boundary: no UTF-8 check.
    let factors = FactorLists::parse(text.get(at..at + len)?, b';').ok()?;
    c.0 = &c.0[len..];
    c.eat("\"")?;
    let compute_us = if c.peek()? == b',' {
        c.eat(r#","compute_us":"#)?;
        Some(c.int()?)
    } else {
        None
    };
    c.eat("}")?;
    c.0.is_empty().then_some(ChunkResult {
        chunk_id,
        factors,
        compute_us,
    })
}

/// Writes an `assign` frame exactly as serde would (see [`encode_result`]).
fn encode_assign(a: &Assignment) -> Option<String> {
    // Job ids are the coordinator's decimal ids; anything needing escapes
    // goes through serde.
    if !a.job_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let mut out = String::with_capacity(64 + a.numbers.len() * 16);
    let mut buf = DecimalBuf::new();
    out.push_str(r#"{"type":"assign","chunk_id":"#);
    out.push_str(buf.format(a.chunk_id));
    out.push_str(r#","job_id":""#);
    out.push_str(&a.job_id);
    out.push_str(r#"","numbers":"#);
    match &a.numbers {
        ChunkNumbers::List(l) => push_dec_list(&mut out, l, &mut buf),
        ChunkNumbers::Range(r) => {
            out.push_str(r#"{"start":""#);
            out.push_str(format_u128(r.start(), &mut buf));
            out.push_str(r#"","step":""#);
            out.push_str(format_u128(r.step(), &mut buf));
            out.push_str(r#"","count":"#);
            out.push_str(buf.format(r.count()));
            out.push('}');
        }
    }
    out.push('}');
    Some(out)
}

/// Reads an `assign` frame in exactly the form [`encode_assign`] writes.
fn decode_assign_canonical(text: &str) -> Option<Assignment> {
    let mut c = Cursor(text.as_bytes());
    c.eat(r#"{"type":"assign","chunk_id":"#)?;
    let chunk_id = c.int()?;
    c.eat(r#","job_id":"#)?;
    let job_id = c.plain_str()?;
    c.eat(r#","numbers":"#)?;
    let numbers = if c.peek()? == b'{' {
        c.eat(r#"{"start":"#)?;
        let start = c.dec()?;
        c.eat(r#","step":"#)?;
        let step = c.dec()?;
        c.eat(r#","count":"#)?;
        let count = c.int()?;
        c.eat("}")?;
        // An invalid range: serde words the error.
        NumberRange::new(start, step, count).ok()?.into()
    } else {
        ChunkNumbers::List(c.dec_list()?)
    };
    c.eat("}")?;
    c.0.is_empty().then_some(Assignment {
        chunk_id,
        job_id,
        numbers,
    })
}

// For `skip_serializing_if`, which passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(b: &bool) -> bool {
    !*b
}

impl ClientMessage {
    /// Decodes one text frame, refusing frames over `limit` bytes.
    pub fn decode(text: &str, limit: usize) -> Result<Self, DecodeError> {
        if text.starts_with(r#"{"type":"result","#) && text.len() <= limit {
            if let Some(r) = decode_result_canonical(text) {
                return Ok(ClientMessage::Result(r));
            }
            let f: ResultFrame = serde_json::from_str(text)?;
            return Ok(ClientMessage::Result(ChunkResult {
                chunk_id: f.chunk_id,
                factors: f.factors,
                compute_us: f.compute_us,
            }));
        }
        decode(text, limit)
    }

    /// Encodes the message as one text frame.
    pub fn encode(&self) -> String {
        match self {
            ClientMessage::Result(r) => encode_result(r),
            other => encode(other),
        }
    }
}

impl ServerMessage {
    /// Decodes one text frame, refusing frames over `limit` bytes.
    pub fn decode(text: &str, limit: usize) -> Result<Self, DecodeError> {
        if text.starts_with(r#"{"type":"assign","#) && text.len() <= limit {
            if let Some(a) = decode_assign_canonical(text) {
                return Ok(ServerMessage::Assign(a));
            }
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
        match self {
            ServerMessage::Assign(a) => encode_assign(a).unwrap_or_else(|| encode(self)),
            other => encode(other),
        }
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
    digits_value(s.as_bytes()).ok_or_else(|| NumberError::TooLarge(s.to_owned()))
}

/// The value of a string of ASCII digits, `None` from 2^128 on.
fn digits_value(digits: &[u8]) -> Option<u128> {
    // Up to 19 digits fit a u64, whose arithmetic is several times cheaper
    // than u128's; the server parses every factor of every result.
    if digits.len() <= 19 {
        let v = digits
            .iter()
            .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
        return Some(v.into());
    }
    digits.iter().try_fold(0u128, |acc, b| {
        acc.checked_mul(10)?.checked_add(u128::from(b - b'0'))
    })
}

/// Appends `["n","n",…]` (decimal strings) as serde writes a listed
/// [`ChunkNumbers`].
fn push_dec_list(out: &mut String, numbers: &[u128], buf: &mut DecimalBuf) {
    out.push('[');
    for (i, &n) in numbers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(format_u128(n, buf));
        out.push('"');
    }
    out.push(']');
}

/// Appends `numbers` in decimal separated by single spaces: one factor list
/// of a `result`, and how the SQLite store keeps a list job's numbers.
pub fn push_decimals(out: &mut String, numbers: &[u128], buf: &mut DecimalBuf) {
    push_ascii(out, |bytes| push_decimal_bytes(bytes, numbers, buf));
}

/// [`push_decimals`] into bytes.
pub(crate) fn push_decimal_bytes(out: &mut Vec<u8>, numbers: &[u128], buf: &mut DecimalBuf) {
    for (i, &n) in numbers.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        push_decimal(out, n, buf);
    }
}

/// Appends to `out` the ASCII that `write` puts in a byte buffer (checked
/// as UTF-8 alone, not with all of `out` again: appending to a long string
/// stays linear).
pub(crate) fn push_ascii(out: &mut String, write: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = Vec::new();
    write(&mut bytes);
    out.push_str(std::str::from_utf8(&bytes).expect("ASCII is UTF-8"));
}

/// Appends `n` in decimal. Below 10^16 (every factor of a 64-bit number but
/// its largest, and most of those) eight digits at a time, computed side by
/// side in one word and stored at once: a worker formats every factor it
/// finds, and a digit-pair table (`itoa`) with a copy of each number's few
/// bytes (a `memcpy` call) took over a quarter of its time on the classic
/// job (writing a chunk's lists: 25.5 → 20 ns per number). Below 10^4 (about
/// nine in ten of the factors listed there) the four digits come from a
/// table instead ([`four_digits`]): a chunk of 44,620 lists from 10^12,
/// sieved and written, 42.9–43.6 → 40.4–40.8 ns per number (pinned,
/// alternating; the writing alone 9.4 → 6.9).
#[inline]
fn push_decimal(out: &mut Vec<u8>, n: u128, buf: &mut DecimalBuf) {
    const E8: u64 = 100_000_000;
    match u64::try_from(n) {
        Ok(n) if n < E8 => push_below_e8(out, n as u32),
        Ok(n) if n < E8 * E8 => {
            push_eight(out, (n / E8) as u32, false);
            push_eight(out, (n % E8) as u32, true);
        }
        _ => out.extend_from_slice(format_u128(n, buf).as_bytes()),
    }
}

/// Appends `n` < 10^8 in decimal, from its first nonzero digit.
#[inline(always)]
fn push_below_e8(out: &mut Vec<u8>, n: u32) {
    if n < 10_000 {
        // Most factors: four digits from a table, the leading zeros (the
        // lowest bytes) shifted out.
        let len = 1 + usize::from(n >= 10) + usize::from(n >= 100) + usize::from(n >= 1_000);
        out.extend_from_slice(&(four_digits()[n as usize] >> (8 * (4 - len))).to_le_bytes());
        out.truncate(out.len() + len - 4);
    } else {
        push_eight(out, n, false);
    }
}

/// n < 10^4 as four ASCII digits (leading zeros included), the first in the
/// lowest byte: made at first use rather than stored in the binary, where
/// it would add 40 KB to the WebAssembly volunteers download (22 KB
/// gzipped).
fn four_digits() -> &'static [u32; 10_000] {
    static TABLE: std::sync::OnceLock<Box<[u32; 10_000]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0u32; 10_000]);
        for (n, d) in (0u32..).zip(t.iter_mut()) {
            *d = 0x3030_3030
                | (n / 1000)
                | (n / 100 % 10) << 8
                | (n / 10 % 10) << 16
                | (n % 10) << 24;
        }
        t
    })
}

/// Appends `n` < 10^8 in decimal: all eight digits with `full` (leading
/// zeros included), else from its first nonzero digit (one digit for 0).
#[inline(always)]
fn push_eight(out: &mut Vec<u8>, n: u32, full: bool) {
    let d = eight_digits(n);
    // The first digit is the lowest byte: leading zeros are trailing zero bytes.
    let skip = if full {
        0
    } else {
        (d.trailing_zeros() / 8).min(7) as usize
    };
    let ascii = (d | 0x3030_3030_3030_3030) >> (8 * skip);
    // Eight bytes stored at once; the ones past the digits cut off again.
    out.extend_from_slice(&ascii.to_le_bytes());
    out.truncate(out.len() - skip);
}

/// The eight decimal digits of `n` < 10^8 as bytes of value 0–9, the most
/// significant in the lowest byte (so little-endian bytes read in order).
/// Each step splits every lane of the word in two at once: 4 + 4 digits in
/// 32-bit lanes, 2 + 2 in 16-bit lanes, 1 + 1 in bytes, dividing by 100 and
/// by 10 as multiplications by 10486/2^20 and 103/2^10 (exact for lanes
/// below 10^4 and 100: the error stays under one part in a hundred of the
/// smallest gap to the next multiple).
#[inline(always)]
fn eight_digits(n: u32) -> u64 {
    debug_assert!(n < 100_000_000);
    let n = u64::from(n);
    let x = (n / 10_000) | (n % 10_000) << 32;
    let hundreds = ((x * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let x = hundreds | (x - hundreds * 100) << 16;
    let tens = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
    tens | (x - tens * 10) << 8
}

/// Scratch space for [`format_u128`].
pub type DecimalBuf = itoa::Buffer;

/// Formats `n` in decimal into `buf`: much cheaper than `Display` for
/// `u128`, which the hot paths (results out, results stored) format by the
/// million.
pub fn format_u128(n: u128, buf: &mut DecimalBuf) -> &str {
    // Values below 2^64 take itoa's faster u64 path.
    match u64::try_from(n) {
        Ok(small) => buf.format(small),
        Err(_) => buf.format(n),
    }
}

/// Serde helpers: a `u128` as a decimal string (plain JSON integers are accepted too).
pub mod dec {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    /// Serializes as a decimal string.
    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(crate::format_u128(*v, &mut crate::DecimalBuf::new()))
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
        round_trip_client(ClientMessage::Capacity {
            slots: 0,
            waiting: false,
        });
        round_trip_client(ClientMessage::Capacity {
            slots: 0,
            waiting: true,
        });
        assert_eq!(
            ClientMessage::Capacity {
                slots: 3,
                waiting: false
            }
            .encode(),
            r#"{"type":"capacity","slots":3}"#
        );
        round_trip_client(ClientMessage::Release {
            chunk_ids: vec![1, 2, 3],
        });
        round_trip_client(ClientMessage::Rename {
            name: "lab-3 \u{e9}".into(),
        });
        round_trip_client(ClientMessage::Result(ChunkResult {
            chunk_id: 9,
            factors: [
                vec![3, 5, 17, 257, 641, 65537, 274177, 6700417, 67280421310721],
                vec![],
            ]
            .iter()
            .collect(),
            compute_us: None,
        }));
    }

    #[test]
    fn server_messages_round_trip() {
        round_trip_server(ServerMessage::Welcome {
            protocol: PROTOCOL_VERSION,
            worker_id: 3,
            heartbeat_ms: 5000,
            lease_timeout_ms: 30000,
            ack_timeout_ms: 10000,
        });
        round_trip_server(ServerMessage::Assign(Assignment {
            chunk_id: 1,
            job_id: "4".into(),
            numbers: vec![999_999_999_999, u128::MAX].into(),
        }));
        round_trip_server(ServerMessage::Assign(Assignment {
            chunk_id: 2,
            job_id: "4".into(),
            numbers: NumberRange::new(u128::MAX - 4, 2, 3).expect("valid").into(),
        }));
        round_trip_server(ServerMessage::Accepted { chunk_id: 1 });
        round_trip_server(ServerMessage::Rejected {
            chunk_id: 1,
            reason: "x".into(),
        });
        round_trip_server(ServerMessage::Cancel { chunk_ids: vec![5] });
        round_trip_server(ServerMessage::Idle);
        round_trip_server(ServerMessage::Heartbeat);
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
            numbers: vec![999_999_999_999, 1_000_000_000_001].into(),
        });
        assert_eq!(
            assign.encode(),
            r#"{"type":"assign","chunk_id":17,"job_id":"2","numbers":["999999999999","1000000000001"]}"#
        );
        let range = ServerMessage::Assign(Assignment {
            chunk_id: 17,
            job_id: "2".into(),
            numbers: NumberRange::new(999_999_999_999, 2, 50_000)
                .expect("valid")
                .into(),
        });
        assert_eq!(
            range.encode(),
            r#"{"type":"assign","chunk_id":17,"job_id":"2","numbers":{"start":"999999999999","step":"2","count":50000}}"#
        );
        let example = r#"{"type":"result","chunk_id":17,"factors":"2 2 3;;5","compute_us":41}"#;
        let result = ClientMessage::decode(example, 1 << 20).expect("documented example decodes");
        assert_eq!(
            result,
            ClientMessage::Result(ChunkResult {
                chunk_id: 17,
                factors: [vec![2, 2, 3], vec![], vec![5]].iter().collect(),
                compute_us: Some(41),
            })
        );
        assert_eq!(result.encode(), example);
        assert_eq!(ClientMessage::Heartbeat.encode(), r#"{"type":"heartbeat"}"#);
        assert_eq!(ServerMessage::Heartbeat.encode(), r#"{"type":"heartbeat"}"#);
        let rename = r#"{"type":"rename","name":"lab-3"}"#;
        assert_eq!(
            ClientMessage::decode(rename, 1 << 20).expect("documented example decodes"),
            ClientMessage::Rename {
                name: "lab-3".into()
            }
        );
    }

    /// Every example in the message tables above decodes as the message
    /// its row names, and `hello` and `welcome` show the current version
    /// (they had stayed at 5 when protocol 6 came).
    #[test]
    fn every_documented_example_decodes() {
        let doc = include_str!("lib.rs");
        let mut server = false;
        let mut seen = 0;
        for line in doc.lines().take_while(|l| l.starts_with("//!")) {
            server |= line.starts_with("//! # Coordinator → worker");
            let Some(row) = line.strip_prefix("//! | `") else {
                continue;
            };
            let Some((ty, mut rest)) = row.split_once('`') else {
                continue;
            };
            // Each example runs from "`{" to the first "}`" that closes
            // valid JSON (a message may quote a name in backticks).
            while let Some(start) = rest.find("`{") {
                let from = &rest[start + 1..];
                let json = from
                    .match_indices("}`")
                    .map(|(end, _)| &from[..=end])
                    .find(|j| serde_json::from_str::<serde_json::Value>(j).is_ok())
                    .unwrap_or_else(|| panic!("no JSON example closes in {line}"));
                rest = &from[json.len()..];
                let decoded = if server {
                    ServerMessage::decode(json, 1 << 20)
                        .map(|m| serde_json::to_value(&m).expect("encodes"))
                } else {
                    ClientMessage::decode(json, 1 << 20)
                        .map(|m| serde_json::to_value(&m).expect("encodes"))
                };
                let value = decoded.unwrap_or_else(|e| panic!("{json}: {e}"));
                assert_eq!(value["type"], ty, "{json}");
                if ty == "hello" || ty == "welcome" {
                    assert_eq!(value["protocol"], PROTOCOL_VERSION, "{json}");
                }
                seen += 1;
            }
        }
        // 7 worker messages and 8 coordinator messages (the range form of
        // `assign` is a fragment, checked in the test above).
        assert_eq!(seen, 15);
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
            r#"{"type":"rename"}"#,
            r#"{"type":"rename","name":7}"#,
            r#"{"type":"result","chunk_id":1,"factors":"-3"}"#,
            r#"{"type":"result","chunk_id":1,"factors":"340282366920938463463374607431768211456"}"#,
            r#"{"type":"result","chunk_id":1,"factors":"2 2 3.5"}"#,
            r#"{"type":"result","chunk_id":1,"factors":["2","2","3"]}"#,
            r#"{"type":"result","chunk_id":1,"results":[{"n":"12","factors":["2","2","3"]}]}"#,
            "\u{0}\u{1}garbage",
            // Lists serde would read as tagged messages.
            r#"["ack",17]"#,
            r#" ["heartbeat"]"#,
            r#"["hello",4,"native",2,2]"#,
            r#"["result",3,"2 2"]"#,
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
        let msg = ServerMessage::decode(
            r#"{"type":"assign","chunk_id":1,"job_id":"2","numbers":[12,13]}"#,
            1 << 20,
        )
        .expect("integers decode");
        let ServerMessage::Assign(a) = msg else {
            panic!("not an assignment")
        };
        assert_eq!(a.numbers, vec![12, 13].into());
    }

    #[test]
    fn ranges_decode_only_when_valid() {
        let at = |numbers: &str| {
            let text =
                format!(r#"{{"type":"assign","chunk_id":1,"job_id":"7","numbers":{numbers}}}"#);
            match ServerMessage::decode(&text, 1 << 10) {
                Ok(ServerMessage::Assign(a)) => Ok(a.numbers.iter().take(3).collect::<Vec<_>>()),
                Ok(other) => panic!("{other:?}"),
                Err(e) => Err(e.to_string()),
            }
        };
        let max = u128::MAX.to_string();
        assert_eq!(
            at(r#"{"start":"3","step":"2","count":4}"#),
            Ok(vec![3, 5, 7])
        );
        assert_eq!(at(r#"{"count":2,"step":2,"start":3}"#), Ok(vec![3, 5]));
        assert_eq!(
            at(&format!(r#"{{"start":"{max}","step":"1","count":1}}"#)),
            Ok(vec![u128::MAX])
        );
        for (bad, why) in [
            (
                r#"{"start":"0","step":"2","count":4}"#.to_string(),
                "at least 1",
            ),
            (r#"{"start":"3","step":"0","count":4}"#.into(), "at least 1"),
            (r#"{"start":"3","step":"2","count":0}"#.into(), "at least 1"),
            (
                format!(
                    r#"{{"start":"3","step":"2","count":{}}}"#,
                    MAX_RANGE_COUNT + 1
                ),
                "exceeds",
            ),
            (
                format!(r#"{{"start":"{max}","step":"1","count":2}}"#),
                "2^128",
            ),
            (
                r#"{"start":"3","step":"2"}"#.into(),
                "missing field `count`",
            ),
            (
                r#"{"start":"3","step":"2","count":4,"x":1}"#.into(),
                "unknown variant `x`",
            ),
            (
                r#"{"start":"3","start":"3","step":"2","count":4}"#.into(),
                "duplicate",
            ),
        ] {
            let err = at(&bad).expect_err(&bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    /// Every number below 10^6 and around every power of ten and of two,
    /// written after text that is not ASCII, reads as `Display` writes it.
    #[test]
    fn decimals_are_written_as_display_writes_them() {
        let mut cases: Vec<u128> = (0..1_000_000).collect();
        for k in 0..39 {
            let p = 10u128.pow(k);
            cases.extend([p - 1, p, p + 1]);
        }
        for k in 0..128 {
            cases.extend([(1u128 << k) - 1, 1 << k, (1 << k) + 1]);
        }
        cases.push(u128::MAX);
        for numbers in cases.chunks(7) {
            let mut out = String::from("é;");
            push_decimals(&mut out, numbers, &mut DecimalBuf::new());
            let each: Vec<String> = numbers.iter().map(u128::to_string).collect();
            assert_eq!(out, format!("é;{}", each.join(" ")));
        }
        let mut out = String::new();
        push_decimals(&mut out, &[], &mut DecimalBuf::new());
        assert_eq!(out, "");
        // Each half of eight digits (its own lane) over all its values.
        for k in 0..10_000 {
            for n in [k * 10_000, k * 10_000 + 9_999, k * 10_001] {
                let digits = eight_digits(n).to_le_bytes().map(|d| d + b'0');
                assert_eq!(digits, *format!("{n:08}").as_bytes(), "{n}");
            }
        }
    }

    /// A result written list by list is the frame `encode` gives the same
    /// lists, in both forms, and decodes to them.
    #[test]
    fn results_written_as_factored_encode_alike() {
        let numbers: [&[u128]; 6] = [
            &[2, 2, 3],
            &[],
            &[7],
            &[3, 5, 99_999_989, 10_000_000_019],
            &[18_446_744_073_709_551_557, u128::MAX / 3],
            &[1_000_000_007, 1_000_000_007],
        ];
        for left_out in [false, true] {
            for compute_us in [None, Some(1234)] {
                let mut w = ResultWriter::new(77, left_out, 2);
                assert!(w.is_empty());
                let mut lists = FactorLists::new();
                lists.set_largest_left_out(left_out);
                for (i, f) in numbers.iter().enumerate() {
                    if i % 2 == 0 {
                        w.push_factorization(f);
                    } else {
                        w.push_factorization_with(|v| v.extend_from_slice(f));
                    }
                    lists.push_factorization(f);
                }
                assert_eq!(w.len(), numbers.len());
                let frame = w.finish(compute_us);
                let result = ChunkResult {
                    chunk_id: 77,
                    factors: lists,
                    compute_us,
                };
                assert_eq!(frame, ClientMessage::Result(result.clone()).encode());
                // Its lists, read back and written again, make the same frame.
                let mut again = ResultWriter::new(77, left_out, 0);
                for list in result_frame_lists(&frame).expect("a result frame") {
                    again.push_listed(list);
                }
                assert_eq!(again.finish(compute_us), frame);
                let ClientMessage::Result(mut back) =
                    ClientMessage::decode(&frame, DEFAULT_MAX_MESSAGE_BYTES).expect("decodes")
                else {
                    panic!("not a result: {frame}");
                };
                back.factors.set_largest_left_out(left_out);
                assert_eq!(back, result);
            }
        }
        let empty = ResultWriter::new(1, true, 0).finish(None);
        assert_eq!(empty, r#"{"type":"result","chunk_id":1,"factors":""}"#);
        let one: Vec<&str> = result_frame_lists(&empty)
            .expect("a result frame")
            .collect();
        assert_eq!(one, [""]);
        for other in [
            r#"{"type":"ack","chunk_id":1}"#,
            "",
            r#"{"type":"result","chunk_id":1}"#,
        ] {
            assert!(result_frame_lists(other).is_none(), "{other}");
        }
    }

    #[test]
    fn format_u128_matches_display() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u128;
        let mut cases = vec![
            0,
            1,
            9,
            10,
            u64::MAX as u128,
            u64::MAX as u128 + 1,
            u128::MAX,
        ];
        for k in 0..39 {
            let p = 10u128.pow(k);
            cases.extend([p - 1, p, p + 1]);
        }
        for _ in 0..10_000 {
            rng = rng
                .wrapping_mul(0x2545_f491_4f6c_dd1d_0000_0001_u128 | 1)
                .wrapping_add(7);
            cases.push(rng >> (rng % 128) as u32);
        }
        for n in cases {
            assert_eq!(format_u128(n, &mut DecimalBuf::new()), n.to_string());
            assert_eq!(parse_u128(&n.to_string()), Ok(n));
        }
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
        let first = r#"{"type":"result","chunk_id":3,"factors":"2 2 3","compute_us":9}"#;
        let later = r#"{"chunk_id":3,"factors":"2 2 3","type":"result","compute_us":9}"#;
        assert_eq!(
            ClientMessage::decode(first, 1 << 10).expect("fast path"),
            ClientMessage::decode(later, 1 << 10).expect("general path")
        );
        let bad = r#"{"type":"result","chunk_id":3,"factors":"","extra":1}"#;
        assert!(
            ClientMessage::decode(bad, 1 << 10).is_err(),
            "unknown fields are refused on the fast path too"
        );
        assert!(matches!(
            ClientMessage::decode(first, 10),
            Err(DecodeError::TooLarge { .. })
        ));
        let assign = r#"{"type":"assign","chunk_id":1,"job_id":"2","numbers":["5","6"]}"#;
        assert!(decode_result_canonical(first).is_some());
        let moved = r#"{"chunk_id":1,"job_id":"2","numbers":["5","6"],"type":"assign"}"#;
        assert_eq!(
            ServerMessage::decode(assign, 1 << 10).expect("fast path"),
            ServerMessage::decode(moved, 1 << 10).expect("general path")
        );
    }

    #[test]
    fn decode_errors_quote_little_of_the_input() {
        let huge = format!(r#"{{"type":"{}é"}}"#, "k".repeat(100_000));
        let err = ClientMessage::decode(&huge, 1 << 20).expect_err("unknown type");
        let text = err.to_string();
        assert!(text.len() < 300, "{} bytes", text.len());
        assert!(text.contains("unknown variant `kkk"), "{text}");
        assert!(text.contains("at line 1 column"), "where it failed: {text}");
        let short = ClientMessage::decode(r#"{"type":"nope"}"#, 1 << 10).expect_err("unknown");
        assert!(
            short.to_string().contains("unknown variant `nope`"),
            "{short}"
        );
    }

    /// A volunteer's name reaches the dashboard and the log clipped, with
    /// no terminal escape or line break of theirs in it.
    #[test]
    fn names_are_clipped_and_cleaned() {
        assert_eq!(kept_name("  lab-pc \n"), "lab-pc");
        assert_eq!(kept_name("a\tb\u{1b}[31mred"), "a b [31mred");
        let long = "é".repeat(300);
        assert_eq!(kept_name(&long), "é".repeat(MAX_NAME_CHARS));
        assert_eq!(kept_name("\r\n"), "");
        // Clipped before it is trimmed, as coordinators always did.
        assert_eq!(kept_name(&format!("{}x", " ".repeat(MAX_NAME_CHARS))), "");
    }

    /// Each error code's name is its wire name.
    #[test]
    fn error_code_names_are_the_wire_names() {
        let names = "bad_message too_large bad_handshake banned timeout shutting_down overloaded unauthorized";
        for name in names.split(' ') {
            let code: ErrorCode = serde_json::from_str(&format!("\"{name}\"")).expect(name);
            assert_eq!(code.as_str(), name);
        }
    }

    /// The hand-written `result` and `assign` encoders write what serde
    /// writes, and the canonical readers agree with serde on it and on every
    /// variant.
    #[test]
    fn hand_written_codecs_match_serde() {
        let mut x = 0x1234_5678_9abc_def1_u128;
        let mut next = || {
            x = x
                .wrapping_mul(0x2545_f491_4f6c_dd1d_7a3b_91c5_0000_0001)
                .wrapping_add(11);
            x >> (x % 128) as u32
        };
        for len in 1..40 {
            let factors = (0..len)
                .map(|i| (0..(i % 4)).map(|_| next()).collect::<Vec<_>>())
                .collect();
            let compute_us = (len % 3 != 0).then_some(len as u64 * 1000);
            let msg = ClientMessage::Result(ChunkResult {
                chunk_id: next() as u64,
                factors,
                compute_us,
            });
            let text = msg.encode();
            assert_eq!(text, serde_json::to_string(&msg).expect("serializes"));
            let ClientMessage::Result(r) = &msg else {
                unreachable!()
            };
            assert_eq!(decode_result_canonical(&text).as_ref(), Some(r));
        }
        for len in 0..30 {
            let msg = ServerMessage::Assign(Assignment {
                chunk_id: next() as u64,
                job_id: (next() as u64).to_string(),
                numbers: if len % 3 == 2 {
                    // A range of len numbers from a random start.
                    let step = next() >> (next() % 128);
                    let start = next() >> (next() % 128);
                    NumberRange::new(start.max(1), step.max(1), len)
                        .map_or_else(|_| vec![start].into(), Into::into)
                } else {
                    (0..len).map(|_| next()).collect::<Vec<_>>().into()
                },
            });
            let text = msg.encode();
            assert_eq!(text, serde_json::to_string(&msg).expect("serializes"));
            let ServerMessage::Assign(a) = &msg else {
                unreachable!()
            };
            assert_eq!(decode_assign_canonical(&text).as_ref(), Some(a));
        }
        let odd_job = ServerMessage::Assign(Assignment {
            chunk_id: 1,
            job_id: "a\"b\\c é".into(),
            numbers: vec![5].into(),
        });
        let text = odd_job.encode();
        assert_eq!(text, serde_json::to_string(&odd_job).expect("serializes"));
        assert_eq!(ServerMessage::decode(&text, 1 << 10).ok(), Some(odd_job));
        for text in [
            r#"{"type":"assign","chunk_id":1,"job_id":"7","numbers":[]}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"é7","numbers":["3"]}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"\u0037","numbers":["3"]}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":7,"numbers":["3"]}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"7","numbers":[3]}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"7","numbers":["3"],"x":1}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"7","numbers":{"start":"3","step":"2","count":4}}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"7","numbers":{"step":"2","start":"3","count":4}}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"7","numbers":{"start":"3","step":"2","count":4,"x":1}}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"7","numbers":{"start":"3","step":"2"}}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"7","numbers":{"start":"3","step":"2","step":"2","count":4}}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"7","numbers":{"start":"0","step":"2","count":4}}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"7","numbers":{"start":"3","step":"0","count":4}}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"7","numbers":{"start":"3","step":"2","count":0}}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"7","numbers":{"start":"3","step":"2","count":4194305}}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"7","numbers":{"start":"340282366920938463463374607431768211455","step":"1","count":2}}"#,
            r#"{"type":"assign","chunk_id":1,"job_id":"7","numbers":{"start":3,"step":2,"count":4}}"#,
        ] {
            let fast = decode_assign_canonical(text).map(ServerMessage::Assign);
            let serde = serde_json::from_str::<ServerMessage>(text).ok();
            if fast.is_some() {
                assert_eq!(fast, serde, "{text}");
            }
            assert_eq!(ServerMessage::decode(text, 1 << 10).ok(), serde, "{text}");
        }
        let serde_says = |t: &str| serde_json::from_str::<ClientMessage>(t).ok();
        for text in [
            r#"{"type":"result","chunk_id":3,"factors":""}"#,
            r#"{"type":"result","chunk_id":03,"factors":""}"#,
            r#"{"type":"result","chunk_id":-3,"factors":""}"#,
            r#"{"type":"result","chunk_id":18446744073709551616,"factors":""}"#,
            r#"{"type":"result","chunk_id":3,"factors":"2 3;7"}"#,
            r#"{"type":"result","chunk_id":3,"factors":"\u0032 3;7"}"#,
            r#"{"type":"result","chunk_id":3,"factors":"2 3\n7"}"#,
            r#"{"type":"result","chunk_id":3,"factors":2}"#,
            r#"{"type":"result","chunk_id":3,"factors":"2 3","compute_us":0}"#,
            r#"{"type":"result","chunk_id":3,"factors":"2 3 "}"#,
            r#"{"type":"result","chunk_id":3,"factors":"2  3"}"#,
            r#"{"type":"result","chunk_id":3, "factors":"2 3"}"#,
            r#"{"type":"result","chunk_id":3,"factors":"2 3"} "#,
            r#"{"type":"result","chunk_id":3,"factors":"2 3"}x"#,
            r#"{"type":"result","chunk_id":3,"factors":"2 3","factors":"5"}"#,
            r#"{"type":"result","chunk_id":3,"factors":"340282366920938463463374607431768211456"}"#,
            r#"{"type":"result","chunk_id":3,"factors":"000000000000000000000000000000000000000000012"}"#,
        ] {
            let fast = decode_result_canonical(text).map(ClientMessage::Result);
            if let Some(f) = &fast {
                assert_eq!(Some(f), serde_says(text).as_ref(), "{text}");
            }
            assert_eq!(
                ClientMessage::decode(text, 1 << 10).ok(),
                serde_says(text),
                "{text}"
            );
        }
    }
}

//! The browser side of crowdfactor, compiled to WebAssembly with wasm-pack.
//!
//! Each Web Worker of the volunteer page (`web/worker.js`) instantiates this
//! module and calls [`factor_chunk`] with the coordinator's `assign` frame;
//! the page's main thread (`web/app.js`) uses the message builders so that
//! every frame it sends is produced by the same protocol crate as the native
//! worker's.

use crowdfactor_protocol::{
    ChunkNumbers, ClientMessage, Hello, ResultWriter, ServerMessage, WorkerKind, PROTOCOL_VERSION,
};
use wasm_bindgen::prelude::*;

/// Largest frame accepted from the coordinator.
const MAX_FRAME: usize = crowdfactor_protocol::DEFAULT_MAX_MESSAGE_BYTES;

/// Why a call from JavaScript failed.
#[derive(Debug)]
pub enum Error {
    /// The frame was not a valid protocol message.
    Decode(crowdfactor_protocol::DecodeError),
    /// The frame was valid but not an `assign`.
    NotAssign,
    /// A number given as text was invalid.
    Number(crowdfactor_protocol::NumberError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Decode(e) => write!(f, "{e}"),
            Error::NotAssign => f.write_str("expected an assign message"),
            Error::Number(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

/// Factors every number of an `assign` frame and returns the `result` frame.
pub fn factor_assignment(assign_json: &str) -> Result<String, Error> {
    let ServerMessage::Assign(a) =
        ServerMessage::decode(assign_json, MAX_FRAME).map_err(Error::Decode)?
    else {
        return Err(Error::NotAssign);
    };
    let mut out = ResultWriter::new(a.chunk_id, true, a.numbers.len());
    factor_span(&a.numbers, 0, a.numbers.len(), &mut out);
    Ok(out.finish(None))
}

thread_local! {
    /// Where this Web Worker's sieve left off in a range job
    /// ([`crowdfactor_factor::factor_progression_resuming`]).
    static SIEVE: std::cell::RefCell<crowdfactor_factor::SieveResume> =
        std::cell::RefCell::default();
}

/// Appends the factorizations of numbers `from..to` of a chunk to `out`
/// (made for protocol 5: each without its largest factor); a range is
/// handed to `factor_progression_resuming` (which sieves small numbers).
fn factor_span(numbers: &ChunkNumbers, from: usize, to: usize, out: &mut ResultWriter) {
    match (numbers, numbers.get(from)) {
        (ChunkNumbers::Range(r), Some(first)) if from < to => {
            // This Web Worker's next chunk or slice of the same range
            // resumes the sieve where this one leaves off.
            SIEVE.with_borrow_mut(|resume| {
                crowdfactor_factor::factor_progression_resuming(
                    first,
                    r.step(),
                    to - from,
                    resume,
                    |l| out.push_factorization(l),
                );
            });
        }
        _ => {
            for n in (from..to).filter_map(|i| numbers.get(i)) {
                out.push_factorization_with(|v| crowdfactor_factor::factor_into(n, v));
            }
        }
    }
}

/// A chunk being factored a slice at a time, so a Web Worker can pause
/// between slices (CPU duty cycle) and answer messages in between.
#[wasm_bindgen]
#[derive(Debug)]
pub struct ChunkJob {
    numbers: ChunkNumbers,
    /// The index spans to factor, in order: the whole chunk, or the runs
    /// the page gave.
    spans: Vec<std::ops::Range<usize>>,
    /// The span being factored, and the next index in it.
    span: usize,
    at: usize,
    /// The spans' numbers, counted once.
    total: usize,
    results: ResultWriter,
}

#[wasm_bindgen]
impl ChunkJob {
    /// Starts on the chunk of an `assign` frame: all of its numbers, or only
    /// those of `runs`, pairs of (index, count) in ascending order (the page
    /// answers the others with lists kept from an earlier connection). A
    /// range's runs are sieved as ranges.
    #[wasm_bindgen(constructor)]
    pub fn new(assign_json: &str, runs: Option<Vec<u32>>) -> Result<ChunkJob, JsError> {
        let ServerMessage::Assign(a) = ServerMessage::decode(assign_json, MAX_FRAME)
            .map_err(|e| JsError::new(&Error::Decode(e).to_string()))?
        else {
            return Err(JsError::new(&Error::NotAssign.to_string()));
        };
        let len = a.numbers.len();
        let spans = match runs {
            None => std::iter::once(0..len).collect(),
            Some(runs) => spans_of(&runs, len).ok_or_else(|| {
                JsError::new(&format!(
                    "runs must be (index, count) pairs in ascending order within the chunk's {len} numbers"
                ))
            })?,
        };
        let total = spans.iter().map(|s| s.len()).sum();
        Ok(ChunkJob {
            results: ResultWriter::new(a.chunk_id, true, total),
            total,
            at: spans.first().map_or(0, |s| s.start),
            numbers: a.numbers,
            spans,
            span: 0,
        })
    }

    /// Factors up to `count` more numbers; returns true when all are done.
    pub fn step(&mut self, count: u32) -> bool {
        let mut left = count.max(1) as usize;
        loop {
            let Some(end) = self.spans.get(self.span).map(|s| s.end) else {
                return true;
            };
            if self.at >= end {
                self.span += 1;
                self.at = self.spans.get(self.span).map_or(end, |s| s.start);
                continue;
            }
            if left == 0 {
                return false;
            }
            let to = (self.at + left).min(end);
            factor_span(&self.numbers, self.at, to, &mut self.results);
            left -= to - self.at;
            self.at = to;
        }
    }

    /// Numbers to factor: the chunk's, or its runs'.
    pub fn total(&self) -> u32 {
        self.total as u32
    }

    /// The `result` frame (call once `step` returned true), with the
    /// factorizations in the order of the numbers factored. `elapsed_ms` is
    /// the wall time the chunk took, pauses for the duty cycle included: the
    /// coordinator sizes the next chunks from it.
    pub fn finish(self, elapsed_ms: f64) -> String {
        self.results
            .finish(Some((elapsed_ms.max(0.0) * 1000.0) as u64))
    }
}

/// `runs`, pairs of (index, count), as index spans: `None` unless each
/// count is at least 1 and the spans ascend within `len` numbers.
fn spans_of(runs: &[u32], len: usize) -> Option<Vec<std::ops::Range<usize>>> {
    if !runs.len().is_multiple_of(2) {
        return None;
    }
    let mut spans: Vec<std::ops::Range<usize>> = Vec::with_capacity(runs.len() / 2);
    for pair in runs.chunks_exact(2) {
        let (at, count) = (pair[0] as usize, pair[1] as usize);
        let after = spans.last().map_or(0, |s| s.end);
        if count == 0 || at < after || at + count > len {
            return None;
        }
        spans.push(at..at + count);
    }
    Some(spans)
}

/// JS: factors the chunk in an `assign` frame; returns the `result` frame to send.
#[wasm_bindgen]
pub fn factor_chunk(assign_json: &str) -> Result<String, JsError> {
    factor_assignment(assign_json).map_err(|e| JsError::new(&e.to_string()))
}

/// JS: builds the factorizer's tables and runs each method once (~45 ms, the
/// browser compiling the code on first call included); each Web Worker calls
/// it on start, so its first chunk is not slowed by it.
#[wasm_bindgen]
pub fn warm_up() {
    crowdfactor_factor::warm_up();
}

/// JS: the prime factors of a decimal number, space-separated (`"12"` → `"2 2 3"`).
#[wasm_bindgen]
pub fn factor_decimal(n: &str) -> Result<String, JsError> {
    let n = crowdfactor_protocol::parse_u128(n)
        .map_err(|e| JsError::new(&Error::Number(e).to_string()))?;
    let f: Vec<String> = crowdfactor_factor::factor(n)
        .iter()
        .map(u128::to_string)
        .collect();
    Ok(f.join(" "))
}

/// JS (benchmarks): factors whitespace-separated decimal numbers and returns
/// how many prime factors they have in total, so timing excludes JS overhead.
#[wasm_bindgen]
pub fn factor_all(numbers: &str) -> Result<u32, JsError> {
    let mut total = 0u32;
    let mut buf = Vec::with_capacity(128);
    for tok in numbers.split_ascii_whitespace() {
        let n = crowdfactor_protocol::parse_u128(tok).map_err(|e| JsError::new(&e.to_string()))?;
        buf.clear();
        crowdfactor_factor::factor_into(n, &mut buf);
        total += buf.len() as u32;
    }
    Ok(total)
}

/// JS: the `hello` frame for a browser tab with `threads` Web Workers;
/// `token` is the worker token from the page URL, if any, and `name` the
/// one the volunteer gave the tab, if any.
#[wasm_bindgen]
pub fn hello_message(
    slots: u32,
    threads: u32,
    agent: &str,
    token: Option<String>,
    name: Option<String>,
) -> String {
    ClientMessage::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        kind: WorkerKind::Browser,
        slots,
        threads,
        name: name.filter(|n| !n.is_empty()),
        agent: agent.to_owned(),
        token,
    })
    .encode()
}

/// JS: a name typed or linked by a volunteer, as the coordinator keeps it
/// ([`crowdfactor_protocol::kept_name`]): the page shows and sends that.
#[wasm_bindgen]
pub fn kept_name(name: &str) -> String {
    crowdfactor_protocol::kept_name(name)
}

/// JS: the `rename` frame: the tab's new name, `""` for none (a name the
/// page has cleaned with [`kept_name`]).
#[wasm_bindgen]
pub fn rename_message(name: &str) -> String {
    ClientMessage::Rename {
        name: name.to_owned(),
    }
    .encode()
}

/// JS: the `ack` frame for a chunk.
#[wasm_bindgen]
pub fn ack_message(chunk_id: f64) -> String {
    ClientMessage::Ack {
        chunk_id: chunk_id as u64,
    }
    .encode()
}

/// JS: the `heartbeat` frame.
#[wasm_bindgen]
pub fn heartbeat_message() -> String {
    ClientMessage::Heartbeat.encode()
}

/// JS: the `capacity` frame (0 pauses; `waiting`: while another tab of
/// this browser contributes).
#[wasm_bindgen]
pub fn capacity_message(slots: u32, waiting: bool) -> String {
    ClientMessage::Capacity { slots, waiting }.encode()
}

/// JS: the `release` frame handing chunks back.
#[wasm_bindgen]
pub fn release_message(chunk_ids: &[f64]) -> String {
    ClientMessage::Release {
        chunk_ids: chunk_ids.iter().map(|&id| id as u64).collect(),
    }
    .encode()
}

/// JS: the protocol version this module speaks.
#[wasm_bindgen]
pub fn protocol_version() -> u32 {
    PROTOCOL_VERSION
}

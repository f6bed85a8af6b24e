//! The JSON API under `/api`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::coordinator::CreateJobError;
use crate::store::{ByKind, JobId, JobInfo, ListBuilder, NewJob, Numbers, StoreError};
use crate::AppState;

mod json;
mod text;
use json::BodyText;
use text::TextList;

/// An API error, rendered as `{"error": {"code", "message", ...}}`.
#[derive(Debug)]
pub enum AppError {
    /// The request is malformed; `item` names the offending field or element.
    BadRequest {
        /// Machine-readable class.
        code: &'static str,
        /// What is wrong and how to fix it.
        message: String,
        /// The offending item, e.g. `numbers[3]`.
        item: Option<String>,
    },
    /// No such job.
    NotFound(String),
    /// The request conflicts with the job's state.
    Conflict(String),
    /// The endpoint exists but does not take this method.
    MethodNotAllowed(String),
    /// The body could not be read (the connection failed, bad chunked encoding).
    Body(String),
    /// A job's body is over the server's limit; says the limit.
    TooLarge(String),
    /// The server holds as many numbers of open list jobs as it may: a
    /// new list waits until others finish (or is cancelled).
    QueueFull(String),
    /// A body of a kind the endpoint does not read.
    UnsupportedMediaType(String),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::Store(e)
    }
}

impl From<CreateJobError> for AppError {
    fn from(e: CreateJobError) -> Self {
        match e {
            CreateJobError::Store(e) => AppError::Store(e),
            CreateJobError::Full { held, need, limit } => {
                let size = |b: u64| match b {
                    0..10_240 => format!("{b} bytes"),
                    10_240..1_048_576 => format!("{} KiB", b.div_ceil(1 << 10)),
                    _ => {
                        let mib = format!("{:.1}", b as f64 / f64::from(1 << 20));
                        format!("{} MiB", mib.trim_end_matches(".0"))
                    }
                };
                if need > limit {
                    // Never fits: not worth trying again.
                    AppError::TooLarge(format!(
                        "this list takes {} of the server's memory while it is open, more than the {} it may hold for all open lists (--max-list-memory): split it into smaller jobs, or submit a range (numbers rising by one step are kept as one)",
                        size(need),
                        size(limit)
                    ))
                } else {
                    AppError::QueueFull(format!(
                        "the server holds {} of numbers for open list jobs and may hold {} (--max-list-memory); this list takes {}: submit it again once jobs have finished (or cancel some), or submit a range, which takes no room (numbers rising by one step are kept as one)",
                        size(held),
                        size(limit),
                        size(need)
                    ))
                }
            }
        }
    }
}

/// A `400`. The message may quote the request (a bad number, serde's
/// text): it is clipped, so a megabyte of bad input is not echoed whole.
fn bad(code: &'static str, item: Option<String>, message: impl Into<String>) -> AppError {
    let message = message.into();
    AppError::BadRequest {
        code,
        message: crowdfactor_protocol::clip_quoted(&message).into_owned(),
        item,
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<&'a str>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, message, item) = match &self {
            AppError::BadRequest {
                code,
                message,
                item,
            } => (
                StatusCode::BAD_REQUEST,
                *code,
                message.clone(),
                item.as_deref(),
            ),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone(), None),
            AppError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone(), None),
            AppError::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m.clone(),
                None,
            ),
            AppError::MethodNotAllowed(m) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                m.clone(),
                None,
            ),
            AppError::Body(m) => (
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("the request's body could not be read: {m}"),
                None,
            ),
            AppError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", m.clone(), None),
            AppError::QueueFull(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_full",
                m.clone(),
                None,
            ),
            AppError::Store(e @ StoreError::Full(_)) => {
                tracing::error!(error = %e, "store error");
                (
                    StatusCode::INSUFFICIENT_STORAGE,
                    "store_full",
                    "the server's disk is full: nothing was changed; try again once its operator has made room"
                        .to_owned(),
                    None,
                )
            }
            AppError::Store(e) => {
                tracing::error!(error = %e, "store error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store",
                    "the job store failed; see the server log".to_owned(),
                    None,
                )
            }
        };
        error_response(status, code, message, item)
    }
}

/// `status` with the API's error body, `{"error": {"code", "message"[,
/// "item"]}}`: for [`AppError`], and for answers outside the API's
/// handlers (the token check, the WebSocket upgrade).
pub(crate) fn error_response(
    status: StatusCode,
    code: &str,
    message: String,
    item: Option<&str>,
) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message,
            item,
        },
    };
    (status, Json(body)).into_response()
}

/// A job as the API shows it.
#[derive(Debug, Serialize)]
pub struct JobView {
    id: String,
    state: &'static str,
    total: u64,
    done: u64,
    chunk_size: Option<u32>,
    chunks: u64,
    created_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_ms: Option<u64>,
    by_kind: ByKind,
    priority: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

pub(crate) fn view(state: &AppState, info: JobInfo) -> JobView {
    let st = if info.done == info.total {
        "done"
    } else if info.cancelled {
        "cancelled"
    } else if info.done > 0 || state.coord.job_started(info.id) {
        "running"
    } else {
        "queued"
    };
    JobView {
        id: info.id.to_string(),
        state: st,
        total: info.total,
        done: info.done,
        chunk_size: info.chunk_cap,
        chunks: info.chunks,
        created_ms: info.created_ms,
        finished_ms: info.finished_ms,
        by_kind: info.by_kind,
        priority: info.priority,
        name: info.name,
    }
}

/// Its fields are owned: a large body is read as it arrives, never whole.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRequest {
    numbers: Option<Listed>,
    /// Read as [`RangeRequest`] once it is known to be an object (serde
    /// would read a struct from a list too: `["1", 5]`).
    range: Option<Box<RawValue>>,
    chunk_size: Option<Box<RawValue>>,
    priority: Option<Box<RawValue>>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeRequest<'a> {
    #[serde(borrow)]
    start: &'a RawValue,
    #[serde(borrow)]
    count: &'a RawValue,
    #[serde(borrow)]
    step: Option<&'a RawValue>,
}

/// A job's `numbers`, each parsed as it is read: a list is never held as
/// a list of JSON values first (16 bytes each: a 256 MiB body of `1,1,…`
/// took 2.4 GB before its count was refused), and past the limit per job
/// numbers are only counted.
struct Listed {
    numbers: ListBuilder,
    count: u64,
    /// The first item that is no number (or 0), with its error.
    bad: Option<AppError>,
}

thread_local! {
    /// Most numbers a [`Listed`] keeps: the limit per job of the request
    /// being parsed on this thread (set by [`parse_job`]).
    static KEEP: std::cell::Cell<u64> = const { std::cell::Cell::new(u64::MAX) };
}

impl<'de> Deserialize<'de> for Listed {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Listed;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of numbers")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Listed, A::Error> {
                let keep = KEEP.with(|k| k.get());
                let mut list = Listed {
                    numbers: ListBuilder::default(),
                    count: 0,
                    bad: None,
                };
                while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
                    let i = list.count;
                    list.count += 1;
                    if list.bad.is_some() || i >= keep {
                        continue;
                    }
                    match parse_number_at(&raw, || format!("numbers[{i}]")) {
                        Ok(0) => list.bad = Some(zero_in_list(format!("numbers[{i}]"))),
                        Ok(n) => list.numbers.push(n),
                        Err(e) => list.bad = Some(e),
                    }
                }
                Ok(list)
            }
        }
        de.deserialize_seq(Visit)
    }
}

/// Parses one JSON value (string of digits or plain integer) as a u128.
fn parse_number(raw: &RawValue, item: &str) -> Result<u128, AppError> {
    parse_number_at(raw, || item.to_owned())
}

/// [`parse_number`], naming the item only when it is wrong.
fn parse_number_at(raw: &RawValue, item: impl Fn() -> String) -> Result<u128, AppError> {
    let text = raw.get();
    // The usual case, digits (quoted or not): no copy, no name.
    let plain = match text.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"').filter(|t| !t.contains('\\')),
        None => Some(text),
    };
    if let Some(plain) = plain {
        if let Ok(n) = crowdfactor_protocol::parse_u128(plain) {
            return Ok(n);
        }
    }
    let item = item();
    let item = item.as_str();
    let digits: String = if text.starts_with('"') {
        serde_json::from_str(text).map_err(|_| {
            bad(
                "invalid_number",
                Some(item.into()),
                format!("{item}: invalid JSON string"),
            )
        })?
    } else {
        text.to_owned()
    };
    parse_digits(&digits, || item.to_owned())
}

/// The error for a 0 in a job's list, at `item`.
fn zero_in_list(item: String) -> AppError {
    let message = format!("{item}: 0 has no factorization; numbers must be at least 1");
    bad("invalid_number", Some(item), message)
}

/// A number written in decimal, or `400 invalid_number` naming the item
/// (made only then).
fn parse_digits(digits: &str, item: impl FnOnce() -> String) -> Result<u128, AppError> {
    crowdfactor_protocol::parse_u128(digits).map_err(|e| {
        let item = item();
        // Only a well-formed negative number is called one: "-0" is zero
        // and "-5x" is not a number at all.
        let negative = digits
            .strip_prefix('-')
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
        let hint = if let Some(magnitude) = negative {
            if magnitude.bytes().all(|b| b == b'0') {
                format!(
                    "{item}: {digits} is 0, which has no factorization; numbers must be at least 1"
                )
            } else {
                format!("{item}: {digits} is negative; numbers must be at least 1")
            }
        } else {
            format!("{item}: {e}")
        };
        bad("invalid_number", Some(item), hint)
    })
}

/// A list item's error, its message naming the item's `line` as well:
/// `numbers[2] (line 3): …`.
fn on_line(e: AppError, line: usize) -> AppError {
    match e {
        AppError::BadRequest {
            code,
            message,
            item: Some(item),
        } => {
            let message = match message.strip_prefix(item.as_str()) {
                Some(rest) => format!("{item} (line {line}){rest}"),
                None => format!("{message} (line {line})"),
            };
            AppError::BadRequest {
                code,
                message,
                item: Some(item),
            }
        }
        other => other,
    }
}

/// A job's `priority`, `chunk_size` and `name` given in the query string
/// (`None`: not given there; a blank name is `Some(None)`).
#[derive(Debug, Default)]
struct JobOptions {
    priority: Option<i32>,
    chunk_cap: Option<u32>,
    name: Option<Option<String>>,
}

impl JobOptions {
    /// Reads and checks them; any other parameter but `token` is refused.
    fn parse(query: Option<&str>, limits: &crate::Config) -> Result<Self, AppError> {
        let mut options = JobOptions::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "name" => options.name = Some(check_name(Some(value.into_owned()))?),
                "priority" => options.priority = Some(check_priority(&value)?),
                "chunk_size" => {
                    options.chunk_cap = Some(check_chunk_size(value.parse().unwrap_or(0), limits)?);
                }
                "token" => {}
                _ => {
                    return Err(unknown_parameter(
                        &key,
                        "a job takes priority, chunk_size and name",
                    ))
                }
            }
        }
        Ok(options)
    }

    /// A JSON job's fields with these added: each given in one place only.
    fn add_to(self, mut job: Parsed) -> Result<Parsed, AppError> {
        let twice = |field: &str| {
            bad(
                "bad_request",
                Some(field.to_owned()),
                format!("{field} is given both in the body and in the query string: give it once"),
            )
        };
        if let Some(p) = self.priority {
            if job.priority.replace(p).is_some() {
                return Err(twice("priority"));
            }
        }
        if let Some(c) = self.chunk_cap {
            if job.chunk_cap.replace(c).is_some() {
                return Err(twice("chunk_size"));
            }
        }
        if let Some(n) = self.name {
            if job.name.replace(n).is_some() {
                return Err(twice("name"));
            }
        }
        Ok(job)
    }
}

/// Reads `T` from a JSON object (the body, or the field `field` of it), or
/// answers `400 bad_json` saying what is wrong and what was `expected`.
/// Only from an object: serde reads a struct from a JSON list of its
/// fields too (`[["12"], null, null, null]` was a job).
fn from_object<'a, T: Deserialize<'a>>(
    json: &'a [u8],
    field: Option<&str>,
    expected: &str,
) -> Result<T, AppError> {
    let first = json.iter().copied().find(|&b| !json_space(b));
    object_or(first, field, expected, || serde_json::from_slice(json))
}

/// Whitespace between JSON tokens.
fn json_space(b: u8) -> bool {
    b" \t\r\n".contains(&b)
}

/// [`from_object`] for a JSON text whose `first` byte but whitespace is
/// known, read by `read`.
fn object_or<T>(
    first: Option<u8>,
    field: Option<&str>,
    expected: &str,
    read: impl FnOnce() -> serde_json::Result<T>,
) -> Result<T, AppError> {
    let what = field.unwrap_or("the body");
    let why = match first {
        Some(b'{') => match read() {
            Ok(value) => return Ok(value),
            Err(e) if field.is_some() => format!("{what}: {e}"),
            Err(e) => e.to_string(),
        },
        None => format!("{what} is empty"),
        Some(_) => format!("{what} is not a JSON object"),
    };
    Err(bad(
        "bad_json",
        field.map(str::to_owned),
        format!("{why}; {expected}"),
    ))
}

/// Parses a plain-text job (`Content-Type: text/plain`, no query string)
/// that arrives in `pieces`, or names the bad item and its line.
pub fn parse_text_job<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
    limits: &crate::Config,
) -> Result<NewJob, AppError> {
    parse_text(pieces, JobOptions::default(), limits)
}

/// [`parse_text_job`] with the `options` of a query string.
fn parse_text<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
    options: JobOptions,
    limits: &crate::Config,
) -> Result<NewJob, AppError> {
    let mut list = TextList::new(0, limits.max_numbers_per_job);
    pieces.into_iter().for_each(|piece| list.feed(piece));
    list.finish(options).map(Parsed::finish)
}

/// Parses a JSON job request that arrives in `pieces`, or names the bad
/// item.
pub fn parse_job<B: AsRef<[u8]>>(
    pieces: impl IntoIterator<Item = B>,
    limits: &crate::Config,
) -> Result<NewJob, AppError> {
    parse_unfinished(BodyText::new(pieces), false, limits).map(Parsed::finish)
}

/// A valid job request whose list is not yet in its final form: the body
/// it came from can go before the list is copied into place.
struct Parsed {
    numbers: Result<Numbers, ListBuilder>,
    chunk_cap: Option<u32>,
    /// `None`: not given (0).
    priority: Option<i32>,
    /// `None`: not given; `Some(None)`: given blank.
    name: Option<Option<String>>,
}

impl Parsed {
    fn finish(self) -> NewJob {
        NewJob {
            numbers: self.numbers.unwrap_or_else(ListBuilder::into_numbers),
            chunk_cap: self.chunk_cap,
            priority: self.priority.unwrap_or(0),
            name: self.name.flatten(),
        }
    }
}

/// [`parse_job`] up to [`Parsed::finish`]; a body that starts with digits
/// is told how to send plain text if it was `labelled` as something else.
fn parse_unfinished<B: AsRef<[u8]>, I: Iterator<Item = B>>(
    mut body: BodyText<I>,
    labelled: bool,
    limits: &crate::Config,
) -> Result<Parsed, AppError> {
    const EXPECTED: &str = r#"expected {"numbers": ["12", ...]} or {"range": {"start": "12", "count": 100, "step": 2}}"#;
    if labelled
        && body
            .first(|b| b.is_ascii_whitespace())
            .is_some_and(|b| b.is_ascii_digit())
    {
        // Numbers labelled as something else (curl --data-binary sends a
        // form's type).
        return Err(bad(
            "bad_json",
            None,
            format!(
                "the body is not a JSON object; to send numbers as plain text, say \
                 Content-Type: text/plain ({PLAIN_TEXT_CURL})"
            ),
        ));
    }
    let first = body.first(json_space);
    KEEP.with(|k| k.set(limits.max_numbers_per_job));
    // Buffered: serde_json reads a byte at a time.
    let read = || serde_json::from_reader(std::io::BufReader::with_capacity(1 << 16, body));
    let req = object_or::<JobRequest>(first, None, EXPECTED, read);
    KEEP.with(|k| k.set(u64::MAX));
    let req = req?;
    let range = match req.range.as_deref() {
        Some(raw) if raw.get() != "null" => Some(from_object::<RangeRequest>(
            raw.get().as_bytes(),
            Some("range"),
            EXPECTED,
        )?),
        _ => None,
    };
    let chunk_cap = match req.chunk_size.as_deref() {
        None => None,
        Some(raw) => Some(check_chunk_size(parse_number(raw, "chunk_size")?, limits)?),
    };
    let numbers = match (req.numbers, range) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "bad_request",
                None,
                "give either \"numbers\" or \"range\", not both",
            ))
        }
        (None, None) => {
            return Err(bad(
                "bad_request",
                None,
                "give \"numbers\" (a list) or \"range\"",
            ))
        }
        (Some(list), None) => {
            if list.count == 0 {
                return Err(bad("empty_job", Some("numbers".into()), "numbers is empty"));
            }
            if list.count > limits.max_numbers_per_job {
                return Err(bad(
                    "too_many_numbers",
                    Some("numbers".into()),
                    format!(
                        "{} numbers; the limit per job is {}",
                        list.count, limits.max_numbers_per_job
                    ),
                ));
            }
            if let Some(e) = list.bad {
                return Err(e);
            }
            Err(list.numbers)
        }
        (None, Some(range)) => {
            let start = parse_number(range.start, "range.start")?;
            let count = parse_number(range.count, "range.count")?;
            let step = match range.step {
                Some(raw) => parse_number(raw, "range.step")?,
                None => 1,
            };
            if start == 0 {
                return Err(bad(
                    "invalid_number",
                    Some("range.start".into()),
                    "range.start must be at least 1",
                ));
            }
            if count == 0 {
                return Err(bad(
                    "empty_job",
                    Some("range.count".into()),
                    "range.count is 0: the range is empty",
                ));
            }
            if count > limits.max_numbers_per_job as u128 {
                return Err(bad(
                    "too_many_numbers",
                    Some("range.count".into()),
                    format!(
                        "range.count must be between 1 and {}",
                        limits.max_numbers_per_job
                    ),
                ));
            }
            if step == 0 {
                return Err(bad(
                    "invalid_number",
                    Some("range.step".into()),
                    "range.step must be at least 1",
                ));
            }
            // count is at most max_numbers_per_job (a u64) here.
            Ok(Numbers::range(start, step, count as u64).ok_or_else(|| {
                bad(
                    "invalid_number",
                    Some("range".into()),
                    "the range's last number start + (count-1)*step is 2^128 or more",
                )
            })?)
        }
    };
    let priority = match req.priority.as_deref() {
        Some(raw) if raw.get() != "null" => Some(priority_of(raw)?),
        _ => None,
    };
    let name = match req.name {
        Some(name) => Some(check_name(Some(name))?),
        None => None,
    };
    Ok(Parsed {
        numbers,
        chunk_cap,
        priority,
        name,
    })
}

/// Bodies larger than this share of the body limit (16 MiB of the default
/// 256 MiB, about a million numbers), or of no declared length, wait for
/// one another: each is parsed as it arrives and takes its list's memory
/// while parsed (10,000,000 13-digit numbers: 80 MB, at a peak of about
/// 110 MB of the server's memory), and three at once took that three times
/// over. Smaller ones are read whole and never wait.
const LARGE_BODY_SHARE: usize = 16;

/// Bodies up to this size are parsed on the async thread (well under a
/// millisecond); larger ones on a blocking thread.
const PARSE_INLINE: usize = 64 << 10;

/// How to send a file of numbers, for error messages.
const PLAIN_TEXT_CURL: &str = "curl -H 'Content-Type: text/plain' --data-binary @numbers.txt …";

pub(crate) async fn create_job(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Result<Response, AppError> {
    let declared = declared_length(request.headers());
    let media = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|media| media.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let text = matches!(media.as_str(), "text/plain" | "text/csv");
    if media == "multipart/form-data" {
        // curl -F, an HTML form's file field: the file is inside the form.
        return Err(AppError::UnsupportedMediaType(format!(
            "a form upload (multipart/form-data) is not read: send the file itself as the body \
             with Content-Type: text/plain ({PLAIN_TEXT_CURL}), or JSON"
        )));
    }
    // Checked before the body is read: a bad one is refused at once.
    let options = JobOptions::parse(request.uri().query(), &state.config)?;
    let limit = state.config.max_body_bytes;
    // Over the limit: refused below at once, without a turn.
    let large = declared.is_none_or(|len| len > limit / LARGE_BODY_SHARE && len <= limit);
    // The semaphore is never closed; a permit is held until the job is stored.
    let _turn = if large {
        state.large_bodies.acquire().await.ok()
    } else {
        None
    };
    // Room for the whole list up front only with a turn: a declared length
    // is the client's word, and only one such buffer exists at a time.
    let room = if large { declared.unwrap_or(0) } else { 0 };
    let too_large = || {
        AppError::TooLarge(format!(
            "the job is over the {} MiB a request may hold; split it into several jobs (at most {} numbers each), or submit a range",
            limit >> 20,
            state.config.max_numbers_per_job
        ))
    };
    let mut pieces = body_within(request.into_body(), declared, limit, &too_large).await?;
    // A JSON body: the piece its `{` came in, if it was sent as text, and
    // the bytes before that piece.
    let body = if text {
        // Read as it arrives: a large list is never held as text too (its
        // room a number for about every 16 bytes of the declared body).
        let list = TextList::new(room / 16, state.config.max_numbers_per_job);
        match read_text(&mut pieces, list, limit, &too_large).await? {
            TextBody::List {
                mut list,
                rest,
                read,
            } => {
                let finish = move || {
                    rest.iter().for_each(|piece| list.feed(piece));
                    list.finish(options).map(Parsed::finish)
                };
                let job = if read <= PARSE_INLINE {
                    finish()?
                } else {
                    blocking(finish).await?
                };
                return store_job(&state, job).await;
            }
            TextBody::Json { head, skipped } => (Some(head), skipped),
        }
    } else {
        (None, 0)
    };
    if large {
        let head = body.0.into_iter().collect();
        let job = parse_streamed(
            &state, pieces, head, body.1, !text, options, limit, &too_large,
        );
        return store_job(&state, job.await?).await;
    }
    let body = match body {
        (Some(head), skipped) => {
            read_rest(&mut pieces, head.to_vec(), limit - skipped, &too_large).await?
        }
        (None, _) => read_rest(&mut pieces, Vec::new(), limit, &too_large).await?,
    };
    let inline = body.len() <= PARSE_INLINE;
    let parser = state.clone();
    let parse = move || {
        let parsed = parse_unfinished(BodyText::new([&body[..]]), !text, &parser.config);
        drop(body);
        options.add_to(parsed?).map(Parsed::finish)
    };
    // Parsing takes a millisecond for every 100 KB or so: not on an async
    // thread, where it would hold up the WebSocket sessions queued there.
    let job = if inline {
        parse()?
    } else {
        blocking(parse).await?
    };
    store_job(&state, job).await
}

/// How many pieces of a body [`parse_streamed`] lets wait for the parser.
const STREAMED_PIECES: usize = 16;

/// Parses a JSON body as it arrives (`head`: the pieces read, `read` bytes
/// in all with any whitespace before them), on a blocking thread, so that
/// it costs its list's memory but not its text's: a large one, which
/// holds a turn (one such thread at a time). The answer is the one the
/// whole body would get: over `limit`, `too_large()` whatever it holds.
#[allow(clippy::too_many_arguments)]
async fn parse_streamed(
    state: &Arc<AppState>,
    mut pieces: axum::body::BodyDataStream,
    head: Vec<Bytes>,
    mut read: usize,
    labelled: bool,
    options: JobOptions,
    limit: usize,
    too_large: &impl Fn() -> AppError,
) -> Result<NewJob, AppError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(STREAMED_PIECES);
    let parser = state.clone();
    let parse = blocking(move || {
        let body = head
            .into_iter()
            .chain(std::iter::from_fn(|| rx.blocking_recv()));
        let parsed = parse_unfinished(BodyText::new(body), labelled, &parser.config);
        options.add_to(parsed?).map(Parsed::finish)
    });
    let mut feed = Some(tx);
    let whole = loop {
        match next_piece(&mut pieces, read, limit, too_large).await {
            Ok(Some(piece)) => {
                read += piece.len();
                if let Some(tx) = &feed {
                    if tx.send(piece).await.is_err() {
                        // The parser stopped at an error: the rest is only
                        // read, for the limit.
                        feed = None;
                    }
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // The parser reads to the end of what was sent, then stops.
    drop(feed);
    let job = parse.await;
    whole?;
    job
}

/// Queues a parsed job: `201 Created`, its `Location` and the job.
async fn store_job(state: &Arc<AppState>, job: NewJob) -> Result<Response, AppError> {
    let coord = state.coord.clone();
    let info = blocking(move || coord.create_job(job)).await?;
    let location = format!("/api/jobs/{}", info.id);
    let mut resp = (StatusCode::CREATED, Json(view(state, info))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// A plain-text body of numbers is parsed in batches of about this many
/// bytes, each on a blocking thread once the body is past [`PARSE_INLINE`].
const PARSE_BATCH: usize = 1 << 20;

/// A `text/plain` body, read.
enum TextBody {
    /// Numbers, `read` bytes of them: all fed to `list` but the `rest`.
    List {
        list: TextList,
        rest: Vec<Bytes>,
        read: usize,
    },
    /// JSON (what fetch() labels a string body): the piece its `{` came
    /// in, after `skipped` bytes of whitespace.
    Json { head: Bytes, skipped: usize },
}

/// Feeds a plain-text body to `list` as it arrives, at most `limit` bytes,
/// a batch at a time ([`PARSE_BATCH`]) but the last; or stops where it
/// turns out to be JSON (its first byte but whitespace is `{`).
async fn read_text(
    pieces: &mut axum::body::BodyDataStream,
    mut list: TextList,
    limit: usize,
    too_large: &impl Fn() -> AppError,
) -> Result<TextBody, AppError> {
    let mut read = 0;
    let mut started = false;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0;
    while let Some(piece) = next_piece(pieces, read, limit, too_large).await? {
        if !started {
            // Whitespace before the first item is fed for its lines.
            if let Some(first) = piece.iter().find(|b| !b.is_ascii_whitespace()) {
                if *first == b'{' {
                    return Ok(TextBody::Json {
                        head: piece,
                        skipped: read,
                    });
                }
                started = true;
            }
        }
        read += piece.len();
        batched += piece.len();
        batch.push(piece);
        if batched >= PARSE_BATCH {
            let full = std::mem::take(&mut batch);
            batched = 0;
            list = blocking(move || {
                full.iter().for_each(|piece| list.feed(piece));
                Ok::<_, AppError>(list)
            })
            .await?;
        }
    }
    Ok(TextBody::List {
        list,
        rest: batch,
        read,
    })
}

/// The body's length as the request's `Content-Length` gives it.
pub(crate) fn declared_length(headers: &axum::http::HeaderMap) -> Option<usize> {
    let value = headers.get(header::CONTENT_LENGTH)?;
    value.to_str().ok()?.parse().ok()
}

/// Reads a body of at most `limit` bytes (the `Content-Length` it
/// `declared`, if any, is checked first) into one buffer with `room` bytes
/// reserved (gathering the pieces and then joining them, as `Bytes` does,
/// held a full-size job twice); a longer one fails with `too_large()`,
/// once what the client still sends is drained.
pub(crate) async fn read_body(
    body: axum::body::Body,
    declared: Option<usize>,
    room: usize,
    limit: usize,
    too_large: impl Fn() -> AppError,
) -> Result<Vec<u8>, AppError> {
    let mut pieces = body_within(body, declared, limit, &too_large).await?;
    read_rest(&mut pieces, Vec::with_capacity(room), limit, &too_large).await
}

/// The body's pieces, unless the length it `declared` is over `limit`:
/// then `too_large()`, once what the client sends is drained.
async fn body_within(
    body: axum::body::Body,
    declared: Option<usize>,
    limit: usize,
    too_large: &impl Fn() -> AppError,
) -> Result<axum::body::BodyDataStream, AppError> {
    let mut pieces = body.into_data_stream();
    if declared.is_some_and(|len| len > limit) {
        drain(&mut pieces).await;
        return Err(too_large());
    }
    Ok(pieces)
}

/// Reads the rest of a body onto `buf`, which it and the rest may fill to
/// `limit` bytes; see [`read_body`].
async fn read_rest(
    pieces: &mut axum::body::BodyDataStream,
    mut buf: Vec<u8>,
    limit: usize,
    too_large: &impl Fn() -> AppError,
) -> Result<Vec<u8>, AppError> {
    while let Some(piece) = next_piece(pieces, buf.len(), limit, too_large).await? {
        buf.extend_from_slice(&piece);
    }
    Ok(buf)
}

/// The body's next piece, if any, after the `read` bytes before it; one
/// that takes the body past `limit` bytes gets `too_large()`, once what the
/// client still sends is drained.
async fn next_piece(
    pieces: &mut axum::body::BodyDataStream,
    read: usize,
    limit: usize,
    too_large: &impl Fn() -> AppError,
) -> Result<Option<Bytes>, AppError> {
    use futures_util::StreamExt;
    let Some(piece) = pieces.next().await else {
        return Ok(None);
    };
    let piece = piece.map_err(|e| AppError::Body(e.to_string()))?;
    if piece.len() > limit.saturating_sub(read) {
        drain(pieces).await;
        return Err(too_large());
    }
    Ok(Some(piece))
}

/// Most of a refused body read (and dropped) before the answer, and for
/// how long.
const DRAIN_BYTES: usize = 64 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and drops the rest of a refused body, within [`DRAIN_BYTES`] and
/// [`DRAIN_TIME`]. Answering at once and closing while the client still
/// sends makes the kernel reset the connection, and the client then sees
/// "broken pipe" instead of the `413` that says why.
async fn drain(pieces: &mut axum::body::BodyDataStream) {
    use futures_util::StreamExt;
    let mut left = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(piece)) = pieces.next().await {
            match left.checked_sub(piece.len()) {
                Some(rest) => left = rest,
                None => break,
            }
        }
    })
    .await;
}

/// The job states `?state=` can select.
const JOB_STATES: [&str; 4] = ["queued", "running", "done", "cancelled"];

/// The states of an open job (`?state=open`).
const OPEN_STATES: [&str; 2] = ["queued", "running"];

/// `GET /api/jobs[?state=…][&after=<id>][&limit=<n>]`: all jobs, oldest
/// first; `state` keeps those in the given states (comma-separated; `open`
/// is queued and running), `after` those with a larger id (the last id of
/// the previous page), `limit` at most that many. Streamed (gzipped when
/// the client takes it), as results are.
pub(crate) async fn list_jobs(
    State(state): State<Arc<AppState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, AppError> {
    let mut states: Option<Vec<&'static str>> = None;
    let (mut after, mut limit) = (None::<u64>, None::<usize>);
    for (key, value) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        let item = Some(key.to_string());
        match &*key {
            "state" => {
                let mut wanted = vec![];
                for name in value.split(',') {
                    match name {
                        "open" => wanted.extend(OPEN_STATES),
                        _ => match JOB_STATES.iter().find(|s| **s == name) {
                            Some(s) => wanted.push(*s),
                            None => {
                                return Err(bad(
                                    "bad_request",
                                    item,
                                    format!(
                                        "state {:?} is none of queued, running, done, cancelled or open",
                                        crowdfactor_protocol::clip_quoted(name)
                                    ),
                                ))
                            }
                        },
                    }
                }
                states.get_or_insert_with(Vec::new).extend(wanted);
            }
            "after" => {
                after = Some(value.parse().map_err(|_| {
                    bad(
                        "bad_request",
                        item,
                        "after must be a job id (a whole number)",
                    )
                })?);
            }
            "limit" => {
                limit = Some(
                    value
                        .parse()
                        .map_err(|_| bad("bad_request", item, "limit must be a whole number"))?,
                );
            }
            // `token` is the API token for clients that cannot set headers.
            "token" => {}
            _ => {
                return Err(unknown_parameter(
                    &key,
                    "this endpoint takes state, after and limit",
                ))
            }
        }
    }
    // A long history is a long read: off the async threads, and page by
    // page, so `limit` (as a client paging with `after` sets it) reads about
    // that many jobs, not every one kept; and streamed, so a history of a
    // million jobs is never one document in memory. Open jobs only
    // (`state=open`, as `crowdfactor-server jobs --state open` asks) come
    // from the store's index of them.
    let open_only = states
        .as_ref()
        .is_some_and(|s| s.iter().all(|s| OPEN_STATES.contains(s)));
    let (after, limit) = (after.unwrap_or(0), limit.unwrap_or(usize::MAX));
    let gzip = crate::web::accepts_gzip(&headers);
    // Whether the first page could be read: until then a failure is an
    // error answer, not a cut-off body.
    let (started_tx, started) = tokio::sync::oneshot::channel::<Result<(), StoreError>>();
    let answer = streamed("application/json", gzip, move |mut pieces| {
        let store = state.coord.store();
        let keep = |j: JobInfo| {
            let v = view(&state, j);
            states
                .as_ref()
                .is_none_or(|s| s.contains(&v.state))
                .then_some(v)
        };
        let mut started_tx = Some(started_tx);
        let mut out = String::with_capacity(STREAM_PIECE + 1024);
        out.push_str("{\"jobs\":[");
        let (mut listed, mut from) = (0usize, after);
        while listed < limit && pieces.open {
            let want = (limit - listed).clamp(64, JOBS_PAGE);
            let page = if open_only {
                store
                    .active_jobs()
                    .map(|open| open.into_iter().filter(|j| j.id > from).collect())
            } else {
                store.jobs_after(from, want)
            };
            let page: Vec<JobInfo> = match page {
                Ok(page) => page,
                Err(e) => {
                    match started_tx.take() {
                        Some(t) => {
                            let _ = t.send(Err(e));
                        }
                        None => {
                            tracing::error!(error = %e, "reading the job list failed");
                            pieces.fail(std::io::Error::other(e.to_string()));
                        }
                    }
                    return;
                }
            };
            if let Some(t) = started_tx.take() {
                if t.send(Ok(())).is_err() {
                    return;
                }
            }
            let ended = open_only || page.len() < want;
            let Some(last) = page.last() else { break };
            from = last.id;
            for job in page.into_iter().filter_map(keep).take(limit - listed) {
                // A `JobView` is strings and numbers: this does not fail.
                let json = match serde_json::to_string(&job) {
                    Ok(json) => json,
                    Err(e) => {
                        tracing::error!(error = %e, "writing the job list failed");
                        pieces.fail(std::io::Error::other(e));
                        return;
                    }
                };
                if listed > 0 {
                    out.push(',');
                }
                out.push_str(&json);
                listed += 1;
                if out.len() >= STREAM_PIECE {
                    pieces.send(&mut out);
                }
            }
            if ended {
                break;
            }
        }
        if let Some(t) = started_tx.take() {
            let _ = t.send(Ok(()));
        }
        out.push_str("]}");
        pieces.send(&mut out);
        pieces.finish();
    });
    match started.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => {
            return Err(AppError::Store(StoreError::Backend(
                "the job list's reader stopped".into(),
            )))
        }
    }
    Ok(answer)
}

/// Jobs read from the store at a time for `GET /api/jobs`: about a
/// streamed piece's worth.
const JOBS_PAGE: usize = 256;

/// A job's chunk size cap runs from 1 to `--max-chunk-size`.
fn check_chunk_size(v: u128, limits: &crate::Config) -> Result<u32, AppError> {
    match u32::try_from(v) {
        Ok(v) if v >= 1 && v <= limits.max_chunk_size => Ok(v),
        _ => Err(bad(
            "invalid_chunk_size",
            Some("chunk_size".into()),
            format!("chunk_size must be between 1 and {}", limits.max_chunk_size),
        )),
    }
}

/// Refuses any query parameter but `token` (the API token, which every
/// protected endpoint takes there too), saying what the endpoint `takes`.
fn no_parameters(query: Option<&str>, takes: &str) -> Result<(), AppError> {
    match form_urlencoded::parse(query.unwrap_or("").as_bytes()).find(|(key, _)| key != "token") {
        Some((key, _)) => Err(unknown_parameter(&key, takes)),
        None => Ok(()),
    }
}

/// The value of `name`, the one query parameter an endpoint takes, as
/// `choices` map it (`None`: not given; given twice, the last counts): a
/// value not among them is `400 bad_request` saying `must`, and any other
/// parameter but `token` is refused.
fn one_parameter<T: Copy>(
    query: Option<&str>,
    name: &str,
    choices: &[(&str, T)],
    must: &str,
) -> Result<Option<T>, AppError> {
    let mut chosen = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key == "token" {
            continue;
        }
        if key != name {
            let takes = format!("this endpoint takes {name}");
            return Err(unknown_parameter(&key, &takes));
        }
        let found = choices.iter().find(|(v, _)| *v == value).map(|&(_, t)| t);
        chosen = Some(found.ok_or_else(|| bad("bad_request", Some(name.to_owned()), must))?);
    }
    Ok(chosen)
}

/// A query parameter an endpoint does not take.
fn unknown_parameter(key: &str, takes: &str) -> AppError {
    bad(
        "bad_request",
        Some(key.to_owned()),
        format!(
            "unknown parameter {:?}: {takes}",
            crowdfactor_protocol::clip_quoted(key)
        ),
    )
}

/// Priorities run from -1000 to 1000.
/// A job's name: trimmed (empty is none), at most
/// [`NAME_CHARS`](crate::store::NAME_CHARS) characters, no control
/// characters (it is shown on the dashboard and in terminals).
fn check_name(name: Option<String>) -> Result<Option<String>, AppError> {
    let Some(name) = name else { return Ok(None) };
    let name = name.trim();
    let invalid = |why: String| bad("invalid_name", Some("name".into()), why);
    let chars = name.chars().count();
    if chars > crate::store::NAME_CHARS {
        return Err(invalid(format!(
            "name is {chars} characters long; at most {} are kept",
            crate::store::NAME_CHARS
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            "name holds a control character (a line break, a tab…)".into(),
        ));
    }
    Ok(Some(name.to_owned()).filter(|n| !n.is_empty()))
}

/// A priority given in a query string: a whole number from -1000 to 1000.
fn check_priority(text: &str) -> Result<i32, AppError> {
    match text.parse::<i64>() {
        Ok(p) if (-1000..=1000).contains(&p) => Ok(p as i32),
        _ => Err(bad(
            "invalid_priority",
            Some("priority".into()),
            "priority must be a whole number between -1000 and 1000",
        )),
    }
}

/// A priority given in JSON: a number, or a string holding one, as
/// [`check_priority`] takes it (serde would say "expected i32" about
/// `1e9` or `"5"`, as malformed JSON).
fn priority_of(raw: &RawValue) -> Result<i32, AppError> {
    let text = raw.get();
    match serde_json::from_str::<String>(text) {
        Ok(quoted) => check_priority(&quoted),
        Err(_) => check_priority(text),
    }
}

/// Runs store work (which may wait for a commit), or a large job's parsing,
/// off the async threads.
pub(crate) fn blocking<T: Send + 'static, E: Into<AppError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> impl std::future::Future<Output = Result<T, AppError>> {
    // Started now, not when first awaited.
    let task = tokio::task::spawn_blocking(f);
    async move {
        task.await
            .map_err(|e| AppError::Store(StoreError::Backend(Box::new(e))))?
            .map_err(Into::into)
    }
}

/// The job named in a URL, or a 404 naming it.
fn load_job(state: &AppState, raw: &str) -> Result<(JobId, JobInfo), AppError> {
    let missing = || AppError::NotFound(format!("no job with id {raw:?}"));
    let id: JobId = raw.parse().map_err(|_| missing())?;
    let info = state.coord.store().job(id)?.ok_or_else(missing)?;
    Ok((id, info))
}

pub(crate) async fn get_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Json<JobView>, AppError> {
    no_parameters(
        query.as_deref(),
        "this endpoint takes none (a job's results: /api/jobs/<id>/results?format=…)",
    )?;
    let (_, info) = load_job(&state, &id)?;
    Ok(Json(view(&state, info)))
}

/// `DELETE /api/jobs/<id>` cancels the job; with `?purge=true` it deletes
/// it, with its numbers and results, whatever its state (`204`).
pub(crate) async fn cancel_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, AppError> {
    let purge = one_parameter(
        query.as_deref(),
        "purge",
        &[("true", true), ("1", true), ("false", false), ("0", false)],
        "purge must be true or false",
    )?
    .unwrap_or(false);
    let (jid, info) = load_job(&state, &id)?;
    if purge {
        let coord = state.coord.clone();
        blocking(move || coord.delete_job(jid))
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no job with id {id:?}")))?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if info.done == info.total {
        return Err(AppError::Conflict(format!(
            "job {id} is already done (to delete it with its results: DELETE with ?purge=true, or crowdfactor-server delete {id})"
        )));
    }
    if info.cancelled {
        // Cancelling again changes nothing (and logs nothing).
        return Ok(Json(view(&state, info)).into_response());
    }
    let coord = state.coord.clone();
    let info = blocking(move || coord.cancel_job(jid))
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no job with id {id:?}")))?;
    Ok(Json(view(&state, info)).into_response())
}

/// `?format=` of the results endpoint.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// One JSON object: `{"id", ..., "results": {"<n>": ["<p>", ...]}}`.
    #[default]
    Json,
    /// One `{"n": "...", "factors": [...]}` object per line.
    Ndjson,
    /// `n,factors` with factors space-separated.
    Csv,
}

/// Bytes buffered before a piece of the response is handed to the socket.
const STREAM_PIECE: usize = 64 << 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobPatch<'a> {
    #[serde(borrow)]
    priority: &'a RawValue,
}

/// `PATCH /api/jobs/<id>` with `{"priority": n}`.
pub(crate) async fn patch_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    body: axum::body::Bytes,
) -> Result<Json<JobView>, AppError> {
    no_parameters(
        query.as_deref(),
        r#"this endpoint takes none (the priority goes in the body: {"priority": 5})"#,
    )?;
    // Like POST /api/jobs: JSON whatever the Content-Type says (curl -d
    // sends a form type).
    let patch: JobPatch = from_object(&body, None, r#"expected {"priority": 5}"#)?;
    let priority = priority_of(patch.priority)?;
    let (jid, info) = load_job(&state, &id)?;
    // A finished job's priority orders nothing: say so rather than store a
    // number that no longer means anything.
    if info.cancelled {
        return Err(AppError::Conflict(format!(
            "job {jid} is cancelled: its priority no longer matters"
        )));
    }
    if info.done == info.total {
        return Err(AppError::Conflict(format!(
            "job {jid} is already done: its priority no longer matters"
        )));
    }
    let coord = state.coord.clone();
    let info = blocking(move || coord.set_priority(jid, priority))
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no job with id {id:?}")))?;
    Ok(Json(view(&state, info)))
}

/// A method an endpoint under `/api` does not take: a JSON `405` like the
/// API's other errors (axum still names the methods it takes in `Allow`).
pub(crate) async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::extract::OriginalUri,
) -> AppError {
    let path = crowdfactor_protocol::clip_quoted(uri.path()).into_owned();
    AppError::MethodNotAllowed(format!(
        "{method} is not a method of {path:?} (see docs/api.md)"
    ))
}

/// Any other path under `/api`: a JSON `404` like the API's others.
pub(crate) async fn no_such_endpoint(uri: axum::extract::OriginalUri) -> AppError {
    let full = uri.path();
    let path = crowdfactor_protocol::clip_quoted(full).into_owned();
    // Only where the path without its slash is an endpoint.
    let is_endpoint = |p: &str| {
        let parts: Vec<&str> = p.split('/').collect();
        matches!(
            parts[..],
            [
                "",
                "api",
                "jobs" | "workers" | "events" | "status" | "csp-report"
            ] | ["", "api", "jobs", _]
                | ["", "api", "jobs", _, "results"]
        ) && parts[1..].iter().all(|part| !part.is_empty())
    };
    match full.strip_suffix('/').filter(|p| is_endpoint(p)) {
        Some(trimmed) => AppError::NotFound(format!(
            "no API endpoint {path:?}: API paths have no trailing slash (try {:?}; see docs/api.md)",
            crowdfactor_protocol::clip_quoted(trimmed)
        )),
        None => AppError::NotFound(format!("no API endpoint {path:?} (see docs/api.md)")),
    }
}

#[derive(Serialize)]
pub(crate) struct WorkerList {
    workers: Vec<crate::coordinator::WorkerView>,
}

/// `GET /api/workers`: connected workers with their live rates.
pub(crate) async fn list_workers(
    State(state): State<Arc<AppState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Json<WorkerList>, AppError> {
    no_parameters(query.as_deref(), "this endpoint takes none")?;
    Ok(Json(WorkerList {
        workers: state.coord.workers(),
    }))
}

/// The total of numbers factored, sampled once a second over the last
/// [`Throughput::KEPT_MS`], so that a dashboard opened now charts the last
/// minutes at once.
#[derive(Debug, Default)]
pub(crate) struct Throughput {
    /// (time in ms since the epoch, numbers factored since the server
    /// started), oldest first.
    samples: std::sync::Mutex<std::collections::VecDeque<(u64, u64)>>,
}

impl Throughput {
    const KEPT_MS: u64 = 5 * 60 * 1000;

    pub(crate) fn record(&self, time_ms: u64, factored: u64) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.push_back((time_ms, factored));
        while samples
            .front()
            .is_some_and(|&(t, _)| time_ms.saturating_sub(t) > Self::KEPT_MS)
        {
            samples.pop_front();
        }
    }

    fn samples(&self) -> Vec<(u64, u64)> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.iter().copied().collect()
    }
}

/// `GET /api/events`: a server-sent event every second with jobs, workers
/// and the total of numbers factored, for the dashboard; the first also
/// carries the last minutes' samples of that total (`history`).
pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
) -> axum::response::sse::Sse<
    impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    let tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let stream = futures_util::stream::unfold(
        (Arc::clone(&state), tick, true),
        |(state, mut tick, first)| async move {
            tick.tick().await;
            let snapshot = {
                let st = state.clone();
                tokio::task::spawn_blocking(move || snapshot(&st, first))
                    .await
                    .ok()
                    .flatten()
            };
            let event =
                axum::response::sse::Event::default().data(snapshot.unwrap_or_else(|| "{}".into()));
            Some((Ok(event), (state, tick, false)))
        },
    );
    // The feed ends with the server: a graceful stop waits for every
    // response to finish, and an open dashboard's would never.
    let mut stop = state.stop.clone();
    let stopping = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let stream = futures_util::StreamExt::take_until(stream, stopping);
    axum::response::sse::Sse::new(stream).keep_alive(axum::response::sse::KeepAlive::default())
}

/// Finished (done or cancelled) jobs in each dashboard update, the latest.
const FINISHED_JOBS_SHOWN: usize = 50;

fn snapshot(state: &AppState, with_history: bool) -> Option<String> {
    // Every open job, and the latest finished ones: a server that has run
    // thousands of jobs would otherwise send (and read) them all every second.
    let store = state.coord.store();
    let read = store.active_jobs().and_then(|open| {
        let (finished, all) = store.latest_finished(FINISHED_JOBS_SHOWN)?;
        Ok((open, finished, all))
    });
    let (open, finished, all_finished) = match read {
        Ok(read) => read,
        Err(e) => {
            tracing::error!(error = %e, "reading jobs for the dashboard failed");
            return None;
        }
    };
    let jobs_hidden = all_finished.saturating_sub(finished.len() as u64);
    let mut jobs: Vec<JobInfo> = finished.into_iter().chain(open).collect();
    // Oldest first, open and finished together; a job that ended between
    // the two reads is in both, and shown as it ended.
    jobs.sort_by_key(|j| j.id);
    jobs.dedup_by_key(|j| j.id);
    let jobs: Vec<JobView> = jobs.into_iter().map(|j| view(state, j)).collect();
    let g = state.coord.gauges();
    let mut body = serde_json::json!({
        "time_ms": crate::store::now_ms(),
        "numbers_factored": state.coord.metrics.numbers.load(std::sync::atomic::Ordering::Relaxed),
        "queued_numbers": g.queued,
        "leased_chunks": g.leased,
        "workers": state.coord.workers(),
        "jobs": jobs,
        "jobs_hidden": jobs_hidden,
    });
    if with_history {
        body["history"] = serde_json::json!(state.throughput.samples());
    }
    Some(body.to_string())
}

pub(crate) async fn job_results(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, AppError> {
    // A misspelt `format` is refused: it would otherwise give JSON without a word.
    let format = one_parameter(
        query.as_deref(),
        "format",
        &[
            ("json", Format::Json),
            ("ndjson", Format::Ndjson),
            ("csv", Format::Csv),
        ],
        "format must be json, ndjson or csv",
    )?
    .unwrap_or_default();
    let (jid, info) = load_job(&state, &id)?;
    let view = view(&state, info);
    let gzip = crate::web::accepts_gzip(&headers);
    let content_type = match format {
        Format::Json => "application/json",
        Format::Ndjson => "application/x-ndjson",
        Format::Csv => "text/csv; charset=utf-8",
    };
    // The answer is produced piece by piece on a blocking thread and streamed,
    // so a job of millions of numbers never sits in memory as one document.
    Ok(streamed(content_type, gzip, move |mut pieces| {
        let mut out = String::with_capacity(STREAM_PIECE + 256);
        write_head(&mut out, format, &view);
        let mut first = true;
        let visited = state.coord.store().visit_results(jid, &mut |n, factors| {
            let Some(factors) = factors else { return };
            if pieces.open {
                write_row(&mut out, format, n, factors, first);
                first = false;
                if out.len() >= STREAM_PIECE {
                    pieces.send(&mut out);
                }
            }
        });
        match visited {
            Ok(_) => {
                if format == Format::Json {
                    out.push_str("}}");
                }
                pieces.send(&mut out);
                pieces.finish();
            }
            Err(e) => {
                tracing::error!(error = %e, "reading results failed");
                pieces.fail(std::io::Error::other(e.to_string()));
            }
        }
    }))
}

/// An answer whose body `write` sends through [`Pieces`] (gzipped if
/// `gzip`), on a blocking thread, while the answer is on its way.
fn streamed(
    content_type: &'static str,
    gzip: bool,
    write: impl FnOnce(Pieces) + Send + 'static,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || write(Pieces::new(tx, gzip)));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::VARY, "accept-encoding"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response();
    if gzip {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

/// The pieces of a streamed answer on their way to the client, gzipped
/// (fastest level: a few times smaller for a fraction of the cost of
/// writing them) when it accepts that.
struct Pieces {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    /// False once the client has gone away.
    open: bool,
}

impl Pieces {
    fn new(tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>, gzip: bool) -> Self {
        Pieces {
            tx,
            gzip: gzip
                .then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())),
            open: true,
        }
    }

    /// Sends `text` (emptied).
    fn send(&mut self, text: &mut String) {
        let bytes = match &mut self.gzip {
            Some(z) => {
                use std::io::Write as _;
                // Into memory: cannot fail.
                let _ = z.write_all(text.as_bytes());
                text.clear();
                std::mem::take(z.get_mut())
            }
            None => std::mem::take(text).into_bytes(),
        };
        self.put(Ok(bytes));
    }

    fn put(&mut self, piece: Result<Vec<u8>, std::io::Error>) {
        if !self.open || piece.as_ref().is_ok_and(Vec::is_empty) {
            return;
        }
        if self.tx.blocking_send(piece.map(Bytes::from)).is_err() {
            self.open = false;
        }
    }

    /// Ends the stream (the gzip trailer).
    fn finish(mut self) {
        if let Some(z) = self.gzip.take() {
            let rest = z.finish();
            self.put(rest);
        }
    }

    /// Ends the stream with an error (the client sees a cut-off body).
    fn fail(mut self, e: std::io::Error) {
        self.put(Err(e));
    }
}

fn write_head(out: &mut String, format: Format, view: &JobView) {
    use std::fmt::Write as _;
    match format {
        Format::Json => {
            let _ = write!(
                out,
                "{{\"id\":\"{}\",\"state\":\"{}\",\"total\":{},\"done\":{},\"results\":{{",
                view.id, view.state, view.total, view.done
            );
        }
        Format::Ndjson => {}
        Format::Csv => out.push_str("n,factors\n"),
    }
}

/// Numbers and factors are plain digits, so rows are written directly.
fn write_row(out: &mut String, format: Format, n: u128, factors: &[u128], first: bool) {
    use std::fmt::Write as _;
    let list = |out: &mut String, sep: &str, quote: &str| {
        for (i, f) in factors.iter().enumerate() {
            let _ = write!(out, "{}{quote}{f}{quote}", if i > 0 { sep } else { "" });
        }
    };
    match format {
        Format::Json => {
            let _ = write!(out, "{}\"{n}\":[", if first { "" } else { "," });
            list(out, ",", "\"");
            out.push(']');
        }
        Format::Ndjson => {
            let _ = write!(out, "{{\"n\":\"{n}\",\"factors\":[");
            list(out, ",", "\"");
            out.push_str("]}\n");
        }
        Format::Csv => {
            let _ = write!(out, "{n},");
            list(out, " ", "");
            out.push('\n');
        }
    }
}

#[derive(Serialize)]
pub(crate) struct Status {
    queued_numbers: u64,
    leased_chunks: usize,
    workers: usize,
    jobs_active: usize,
    numbers_total: u64,
    numbers_done: u64,
    version: &'static str,
}

pub(crate) async fn status(State(state): State<Arc<AppState>>) -> Result<Json<Status>, AppError> {
    let g = state.coord.gauges();
    let active = state.coord.store().active_jobs()?;
    Ok(Json(Status {
        jobs_active: active.len(),
        numbers_total: active.iter().map(|j| j.total).sum(),
        numbers_done: active.iter().map(|j| j.done).sum(),
        queued_numbers: g.queued,
        leased_chunks: g.leased,
        workers: g.native + g.browser,
        version: env!("CARGO_PKG_VERSION"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain-text job with its query string, as `create_job` reads it.
    fn text_job(
        body: &[u8],
        query: Option<&str>,
        limits: &crate::Config,
    ) -> Result<NewJob, AppError> {
        parse_text([body], JobOptions::parse(query, limits)?, limits)
    }

    fn parse(body: &str) -> Result<(Vec<u128>, Option<u32>), String> {
        let job = parse_job([body.as_bytes()], &crate::Config::default());
        job.map(|j| (j.numbers.iter().collect(), j.chunk_cap))
            .map_err(|e| match e {
                AppError::BadRequest { message, item, .. } => format!("{item:?}: {message}"),
                other => format!("{other:?}"),
            })
    }

    /// A store without room answers `507` (nothing changed; try later),
    /// any other store failure `500`.
    #[test]
    fn a_full_store_is_told_apart_from_a_failed_one() {
        let full = AppError::Store(StoreError::Full("database or disk is full".into()));
        assert_eq!(
            full.into_response().status(),
            StatusCode::INSUFFICIENT_STORAGE
        );
        let failed = AppError::Store(StoreError::Backend("disk I/O error".into()));
        assert_eq!(
            failed.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    /// Past the limit numbers are only counted (a huge list is not held
    /// to be refused); within it the first bad item is named.
    #[test]
    fn long_lists_are_counted_and_the_first_bad_item_named() {
        let limits = crate::Config {
            max_numbers_per_job: 3,
            ..crate::Config::default()
        };
        let over = parse_job([br#"{"numbers": [1, 2, 3, "x", -1, 0]}"#], &limits);
        assert!(
            matches!(&over, Err(AppError::BadRequest { code: "too_many_numbers", message, .. }) if message.starts_with("6 numbers;")),
            "{over:?}"
        );
        let bad = parse_job([br#"{"numbers": ["7", "-2", 0]}"#], &limits);
        assert!(
            matches!(&bad, Err(AppError::BadRequest { item: Some(item), message, .. }) if item == "numbers[1]" && message.contains("negative")),
            "{bad:?}"
        );
        assert_eq!(
            parse(r#"{"numbers": ["12", 0]}"#),
            Err(r#"Some("numbers[1]"): numbers[1]: 0 has no factorization; numbers must be at least 1"#.into())
        );
        assert_eq!(
            parse(r#"{"numbers": ["\u0031\u0032", 13]}"#),
            Ok((vec![12, 13], None)),
            "escaped digits are digits"
        );
    }

    /// The dashboard's history: a sample a second, the last 5 minutes kept.
    #[test]
    fn throughput_keeps_the_last_five_minutes() {
        let t = Throughput::default();
        for second in 0..=400 {
            t.record(1_000_000 + second * 1000, second * 10);
        }
        let kept = t.samples();
        assert_eq!(kept.len(), 301);
        assert_eq!(kept[0], (1_000_000 + 100_000, 1000));
        assert_eq!(kept.last(), Some(&(1_000_000 + 400_000, 4000)));
    }

    /// A job as plain text: numbers separated by whitespace or commas (a
    /// byte-order mark and CRLF as editors write them), options from the query.
    #[test]
    fn plain_text_jobs_are_lists() {
        let limits = crate::Config {
            max_numbers_per_job: 4,
            ..crate::Config::default()
        };
        let text = |body: &[u8], query: Option<&str>| text_job(body, query, &limits);
        let job = text(
            b"\xef\xbb\xbf12\r\n1000000000001, 97\n\n340282366920938463463374607431768211455\n",
            Some("priority=-5&chunk_size=2&token=t"),
        )
        .expect("job");
        assert!(matches!(job.numbers, Numbers::List(_)));
        assert_eq!(
            job.numbers.iter().collect::<Vec<u128>>(),
            [12, 1000000000001, 97, u128::MAX]
        );
        assert_eq!((job.priority, job.chunk_cap), (-5, Some(2)));
        let refused = |body: &[u8], query: Option<&str>| match text(body, query) {
            Err(AppError::BadRequest {
                code,
                item,
                message,
            }) => (code, item, message),
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(b" \n ", None).0, "empty_job");
        let (code, item, message) = refused(b"1 2 3 4 5 6", None);
        assert_eq!(
            (code, item.as_deref()),
            ("too_many_numbers", Some("numbers"))
        );
        assert!(message.starts_with("6 numbers;"), "{message}");
        let (code, item, _) = refused(b"12 0", None);
        assert_eq!(
            (code, item.as_deref()),
            ("invalid_number", Some("numbers[1]"))
        );
        let (code, item, _) = refused(b"12;13", None);
        assert_eq!(
            (code, item.as_deref()),
            ("invalid_number", Some("numbers[0]"))
        );
        assert!(refused(b"-3", None).2.contains("negative"));
        let minus_zero = refused(b"-0", None).2;
        assert!(
            minus_zero.contains("is 0") && !minus_zero.contains("negative"),
            "{minus_zero}"
        );
        let not_a_number = refused(b"-5x", None).2;
        assert!(!not_a_number.contains("negative"), "{not_a_number}");
        assert_eq!(refused(b"12", Some("priority=1001")).0, "invalid_priority");
        assert_eq!(refused(b"12", Some("priority=high")).0, "invalid_priority");
        assert_eq!(refused(b"12", Some("chunk_size=0")).0, "invalid_chunk_size");
        assert_eq!(refused(b"12", Some("range=1")).1.as_deref(), Some("range"));
        assert_eq!(refused(b"\xff12", None).0, "bad_request");
        // A file's reader is told the line as well as the item.
        let (_, item, message) = refused(b"\xef\xbb\xbf12\r\n15\r\n\r\n97 abc\n17\n", None);
        assert_eq!(item.as_deref(), Some("numbers[3]"));
        assert_eq!(
            message,
            r#"numbers[3] (line 4): "abc" is not a decimal integer"#
        );
        let (_, _, message) = refused(b"12, 0", None);
        assert!(
            message.starts_with("numbers[1] (line 1): 0 has no factorization"),
            "{message}"
        );
        let (_, _, message) = refused(b"7\n8\n-9\n", None);
        assert!(
            message.starts_with("numbers[2] (line 3): -9 is negative"),
            "{message}"
        );
        let (code, _, message) = refused(b"1\n2\n3\xff\n", None);
        assert_eq!(code, "bad_request");
        assert!(message.contains("UTF-8 text: line 3:"), "{message}");
    }

    /// A list that rises by one step is kept as that range (as `seq`
    /// writes numbers, also as text); any other list stays a list.
    #[test]
    fn lists_in_step_become_ranges() {
        let job =
            |body: &str| parse_job([body.as_bytes()], &crate::Config::default()).expect("job");
        let seq = job(r#"{"numbers": ["999999999999", 1000000000001, "1000000000003"]}"#);
        assert_eq!(
            seq.numbers,
            Numbers::range(999_999_999_999, 2, 3).expect("range")
        );
        let text = text_job(b"7\n8\n9\n10\n", None, &crate::Config::default()).expect("job");
        assert_eq!(text.numbers, Numbers::range(7, 1, 4).expect("range"));
        let wide = u128::MAX - 20;
        let job_wide = job(&format!(
            r#"{{"numbers": ["{wide}", "{}", "{}"]}}"#,
            wide + 10,
            wide + 20
        ));
        assert_eq!(
            job_wide.numbers,
            Numbers::range(wide, 10, 3).expect("range")
        );
        // Narrow numbers, then one of 2^64 or more, in step.
        let across = job(
            r#"{"numbers": ["18446744073709551614", "18446744073709551615", "18446744073709551616"]}"#,
        );
        assert_eq!(
            across.numbers,
            Numbers::range((1 << 64) - 2, 1, 3).expect("range")
        );
        for list in [
            r#"[12]"#,
            r#"[12, 12]"#,
            r#"[15, 12]"#,
            r#"[12, 14, 16, 19]"#,
            r#"[12, 14, 16, 18, 19]"#,
            r#"[10, 20, "340282366920938463463374607431768211455"]"#,
        ] {
            let listed = job(&format!(r#"{{"numbers": {list}}}"#));
            assert!(
                matches!(listed.numbers, Numbers::List(_)),
                "{list}: {:?}",
                listed.numbers
            );
            let want: Vec<u128> = serde_json::from_str::<Vec<serde_json::Value>>(list)
                .expect("json")
                .iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => s.parse().expect("number"),
                    other => other.to_string().parse().expect("number"),
                })
                .collect();
            assert_eq!(listed.numbers.iter().collect::<Vec<u128>>(), want, "{list}");
        }
    }

    #[test]
    fn accepts_strings_integers_and_ranges() {
        assert_eq!(
            parse(r#"{"numbers": ["999999999999", 1000000000001]}"#),
            Ok((vec![999999999999, 1000000000001], None))
        );
        assert_eq!(
            parse(r#"{"range": {"start": "10", "count": 3, "step": 2}, "chunk_size": 2}"#),
            Ok((vec![10, 12, 14], Some(2)))
        );
        assert_eq!(
            parse(r#"{"numbers": [340282366920938463463374607431768211455]}"#),
            Ok((vec![u128::MAX], None))
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 1000, ..Default::default() })]

        /// Arbitrary bodies never panic the parser; they parse or give a 400.
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_job([&body], &crate::Config::default());
        }

        /// Lists of valid numbers, as strings or integers, parse to exactly those numbers.
        #[test]
        fn valid_lists_parse_exactly(numbers in proptest::collection::vec(1u128.., 1..50), as_ints in proptest::prelude::any::<bool>()) {
            let items: Vec<String> = numbers
                .iter()
                .map(|n| if as_ints { n.to_string() } else { format!("\"{n}\"") })
                .collect();
            let body = format!("{{\"numbers\": [{}]}}", items.join(","));
            let job = parse_job([body.as_bytes()], &crate::Config::default()).map_err(|e| format!("{e:?}")).expect("a valid list parses");
            proptest::prop_assert_eq!(&job.numbers.iter().collect::<Vec<u128>>(), &numbers);
            // Kept as a range exactly when they rise by one step.
            let in_step = numbers.len() >= 2
                && numbers[1] > numbers[0]
                && numbers.windows(2).all(|w| w[1].checked_sub(w[0]) == Some(numbers[1] - numbers[0]));
            proptest::prop_assert_eq!(matches!(job.numbers, Numbers::Range { .. }), in_step);
        }

        /// Ranges parse to start + i*step, or are refused when they pass 2^128.
        #[test]
        fn ranges_parse_or_refuse(start in 1u128.., count in 1u64..200, step in 1u128..(1 << 100)) {
            let body = format!("{{\"range\": {{\"start\": \"{start}\", \"count\": {count}, \"step\": \"{step}\"}}}}");
            let last = (count as u128 - 1).checked_mul(step).and_then(|s| start.checked_add(s));
            match parse_job([body.as_bytes()], &crate::Config::default()) {
                Ok(job) => {
                    proptest::prop_assert_eq!(job.numbers.len(), count);
                    proptest::prop_assert_eq!(job.numbers.iter().last(), last);
                }
                Err(_) => proptest::prop_assert!(last.is_none()),
            }
        }
    }

    #[test]
    fn names_the_bad_item() {
        for (body, item) in [
            (r#"{"numbers": ["12", "abc"]}"#, "numbers[1]"),
            (r#"{"numbers": ["12", "0"]}"#, "numbers[1]"),
            (r#"{"numbers": [5, -3]}"#, "numbers[1]"),
            (r#"{"numbers": [5, 1.5]}"#, "numbers[1]"),
            (
                r#"{"numbers": ["340282366920938463463374607431768211456"]}"#,
                "numbers[0]",
            ),
            (
                r#"{"range": {"start": "340282366920938463463374607431768211455", "count": 2}}"#,
                "range",
            ),
            (r#"{"range": {"start": "0", "count": 2}}"#, "range.start"),
            (r#"{"numbers": ["1"], "chunk_size": 0}"#, "chunk_size"),
            (r#"{"range": {"start": "5", "count": 0}}"#, "range.count"),
            (
                r#"{"range": {"start": "5", "count": 10000001}}"#,
                "range.count",
            ),
            (
                r#"{"range": {"start": "5", "count": 2, "step": 0}}"#,
                "range.step",
            ),
        ] {
            let err = parse(body).expect_err(body);
            assert!(
                err.starts_with(&format!("Some({item:?})")),
                "{body} -> {err}"
            );
        }
        assert!(parse(r#"{"numbers": []}"#).is_err());
        assert!(parse(r#"{"nums": ["1"]}"#).is_err());
        assert!(parse("not json").is_err());
    }

    /// A job's name is trimmed (blank is none) and refused when too long or
    /// holding a control character; plain-text jobs take it from the query.
    #[test]
    fn job_names_are_checked() {
        let limits = crate::Config::default();
        let name = |body: &str| parse_job([body.as_bytes()], &limits).map(|j| j.name);
        assert_eq!(
            name(r#"{"numbers": ["12"], "name": "  batch 7 · août "}"#).expect("accepted"),
            Some("batch 7 · août".into())
        );
        assert_eq!(
            name(r#"{"numbers": ["12"], "name": " "}"#).expect("accepted"),
            None
        );
        assert_eq!(name(r#"{"numbers": ["12"]}"#).expect("accepted"), None);
        let longest = "é".repeat(crate::store::NAME_CHARS);
        let body = format!(r#"{{"numbers": ["12"], "name": "{longest}"}}"#);
        assert_eq!(name(&body).expect("accepted"), Some(longest.clone()));
        for (body, code) in [
            (
                format!(r#"{{"numbers": ["12"], "name": "{longest}x"}}"#),
                "invalid_name",
            ),
            (
                r#"{"numbers": ["12"], "name": "a\nb"}"#.into(),
                "invalid_name",
            ),
            (
                r#"{"numbers": ["12"], "name": "a\u001bb"}"#.into(),
                "invalid_name",
            ),
            (r#"{"numbers": ["12"], "name": 7}"#.into(), "bad_json"),
        ] {
            match name(&body) {
                Err(AppError::BadRequest { code: c, .. }) => assert_eq!(c, code, "{body}"),
                other => panic!("{body} -> {other:?}"),
            }
        }
        let text =
            text_job(b"12 13", Some("name=from%20curl&priority=2"), &limits).expect("accepted");
        assert_eq!(
            (text.name.as_deref(), text.priority),
            (Some("from curl"), 2)
        );
        assert!(text_job(b"12", Some("name=a%0Ab"), &limits).is_err());
    }

    /// A job is a JSON object, and so is its range: serde would also read
    /// them from lists of their fields.
    #[test]
    fn only_objects_are_jobs_and_ranges() {
        for (body, says) in [
            (
                r#"[["12"], null, null, null]"#,
                "the body is not a JSON object",
            ),
            (r#"  ["12"]"#, "the body is not a JSON object"),
            ("12", "the body is not a JSON object"),
            ("", "the body is empty"),
            (" \n", "the body is empty"),
            (r#"{"range": ["1", 5, 2]}"#, "range is not a JSON object"),
            (r#"{"range": 5}"#, "range is not a JSON object"),
            (
                r#"{"range": {"start": "1", "count": 5, "stop": 9}}"#,
                "range: unknown field `stop`",
            ),
            (
                r#"{"range": {"start": "1"}}"#,
                "range: missing field `count`",
            ),
        ] {
            let Err(AppError::BadRequest { code, message, .. }) =
                parse_job([body.as_bytes()], &crate::Config::default())
            else {
                panic!("{body} was not refused as a bad request");
            };
            assert_eq!(code, "bad_json", "{body}");
            assert!(message.contains(says), "{body} -> {message}");
            assert!(!message.contains("Request"), "{message}");
        }
        for body in [
            "\t\r\n {\"numbers\": [\"12\"]}",
            r#"{"numbers": ["12"], "range": null}"#,
            r#"{"range": {"start": "12", "count": 3}, "numbers": null}"#,
            r#"{"range": { "count": 3, "step": "2", "start": 7 }}"#,
        ] {
            parse(body).expect(body);
        }
        assert!(from_object::<JobPatch>(b"[5]", None, "").is_err());
        let patch = from_object::<JobPatch>(br#" {"priority": 5}"#, None, "").expect("an object");
        assert_eq!(priority_of(patch.priority).ok(), Some(5));
    }

    /// A priority is a whole number from -1000 to 1000, as a JSON number or
    /// a string; anything else is `invalid_priority`, not a JSON error.
    #[test]
    fn priorities_are_checked() {
        let limits = crate::Config::default();
        let priority = |p: &str| {
            let body = format!(r#"{{"range": {{"start": "5", "count": 3}}, "priority": {p}}}"#);
            parse_job([body.as_bytes()], &limits).map(|j| j.priority)
        };
        for (p, want) in [("-1000", -1000), ("\"7\"", 7), ("1000", 1000), ("null", 0)] {
            assert_eq!(priority(p).ok(), Some(want), "{p}");
        }
        for p in [
            "1001",
            "99999999999",
            "1.5",
            "\"high\"",
            "true",
            "[1]",
            "{}",
            "\"\"",
        ] {
            let Err(AppError::BadRequest { code, item, .. }) = priority(p) else {
                panic!("{p} accepted");
            };
            assert_eq!(
                (code, item.as_deref()),
                ("invalid_priority", Some("priority")),
                "{p}"
            );
        }
    }

    #[test]
    fn errors_quote_little_of_a_huge_body() {
        let junk = "a".repeat(1 << 20);
        for body in [
            format!(r#"{{"numbers": ["12", "{junk}"]}}"#),
            format!(r#"{{"numbers": ["12"], "{junk}": 1}}"#),
        ] {
            let err = parse(&body).expect_err("refused");
            assert!(err.len() < 1000, "{} bytes", err.len());
            assert!(err.contains("aaa"), "{err}");
        }
    }
}

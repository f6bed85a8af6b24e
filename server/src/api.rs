//! The JSON API under `/api`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::store::{ByKind, JobId, JobInfo, StoreError};
use crate::AppState;

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
    /// The body could not be read (too large, not UTF-8, ...).
    Body(BytesRejection),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::Store(e)
    }
}

fn bad(code: &'static str, item: Option<String>, message: impl Into<String>) -> AppError {
    AppError::BadRequest {
        code,
        message: message.into(),
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
            AppError::Body(rej) => {
                let status = rej.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "too_large"
                } else {
                    "bad_body"
                };
                (status, code, rej.body_text(), None)
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
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                item,
            },
        };
        (status, Json(body)).into_response()
    }
}

/// A job as the API shows it.
#[derive(Debug, Serialize)]
pub struct JobView {
    id: String,
    state: &'static str,
    total: u64,
    done: u64,
    chunk_size: u32,
    chunks: u64,
    created_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_ms: Option<u64>,
    by_kind: ByKind,
}

pub(crate) fn view(state: &AppState, info: JobInfo) -> JobView {
    let st = if info.done == info.total {
        "done"
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
        chunk_size: info.chunk_size,
        chunks: info.chunks,
        created_ms: info.created_ms,
        finished_ms: info.finished_ms,
        by_kind: info.by_kind,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRequest<'a> {
    #[serde(borrow)]
    numbers: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    range: Option<RangeRequest<'a>>,
    chunk_size: Option<&'a RawValue>,
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

/// Parses one JSON value (string of digits or plain integer) as a u128.
fn parse_number(raw: &RawValue, item: &str) -> Result<u128, AppError> {
    let text = raw.get();
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
    crowdfactor_protocol::parse_u128(&digits).map_err(|e| {
        let hint = if digits.starts_with('-') {
            format!("{item}: {digits} is negative; numbers must be at least 1")
        } else {
            format!("{item}: {e}")
        };
        bad("invalid_number", Some(item.into()), hint)
    })
}

/// Parses a job request into its numbers and chunk size, or names the bad item.
pub(crate) fn parse_job(body: &[u8], limits: &crate::Config) -> Result<(Vec<u128>, u32), AppError> {
    let req: JobRequest = serde_json::from_slice(body).map_err(|e| {
        bad(
            "bad_json",
            None,
            format!(
                "{e}; expected {{\"numbers\": [\"12\", ...]}} or {{\"range\": {{\"start\": \"12\", \"count\": 100, \"step\": 2}}}}"
            ),
        )
    })?;
    let chunk_size = match req.chunk_size {
        None => limits.chunk_size,
        Some(raw) => {
            let v = parse_number(raw, "chunk_size")?;
            if v == 0 || v > limits.max_chunk_size as u128 {
                return Err(bad(
                    "invalid_chunk_size",
                    Some("chunk_size".into()),
                    format!("chunk_size must be between 1 and {}", limits.max_chunk_size),
                ));
            }
            v as u32
        }
    };
    let numbers = match (req.numbers, req.range) {
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
            if list.is_empty() {
                return Err(bad("empty_job", Some("numbers".into()), "numbers is empty"));
            }
            if list.len() as u64 > limits.max_numbers_per_job {
                return Err(bad(
                    "too_many_numbers",
                    Some("numbers".into()),
                    format!(
                        "{} numbers; the limit per job is {}",
                        list.len(),
                        limits.max_numbers_per_job
                    ),
                ));
            }
            let mut out = Vec::with_capacity(list.len());
            for (i, raw) in list.iter().enumerate() {
                let item = format!("numbers[{i}]");
                let n = parse_number(raw, &item)?;
                if n == 0 {
                    return Err(bad(
                        "invalid_number",
                        Some(item.clone()),
                        format!("{item}: 0 has no factorization; numbers must be at least 1"),
                    ));
                }
                out.push(n);
            }
            out
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
            if count == 0 || count > limits.max_numbers_per_job as u128 {
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
            (count - 1)
                .checked_mul(step)
                .and_then(|span| start.checked_add(span))
                .ok_or_else(|| {
                    bad(
                        "invalid_number",
                        Some("range".into()),
                        "the range's last number start + (count-1)*step is 2^128 or more",
                    )
                })?;
            (0..count).map(|i| start + i * step).collect()
        }
    };
    Ok((numbers, chunk_size))
}

pub(crate) async fn create_job(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body.map_err(AppError::Body)?;
    let (numbers, chunk_size) = parse_job(&body, &state.config)?;
    let coord = state.coord.clone();
    let info = tokio::task::spawn_blocking(move || coord.create_job(numbers, chunk_size))
        .await
        .map_err(|e| AppError::Store(StoreError::Backend(Box::new(e))))??;
    let location = format!("/api/jobs/{}", info.id);
    let mut resp = (StatusCode::CREATED, Json(view(&state, info))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

#[derive(Serialize)]
pub(crate) struct JobList {
    jobs: Vec<JobView>,
}

pub(crate) async fn list_jobs(
    State(state): State<Arc<AppState>>,
) -> Result<Json<JobList>, AppError> {
    let jobs = state.coord.store().jobs()?;
    Ok(Json(JobList {
        jobs: jobs.into_iter().map(|j| view(&state, j)).collect(),
    }))
}

fn job_id(raw: &str) -> Result<JobId, AppError> {
    raw.parse()
        .map_err(|_| AppError::NotFound(format!("no job with id {raw:?}")))
}

pub(crate) async fn get_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, AppError> {
    let info = state
        .coord
        .store()
        .job(job_id(&id)?)?
        .ok_or_else(|| AppError::NotFound(format!("no job with id {id:?}")))?;
    Ok(Json(view(&state, info)))
}

pub(crate) async fn job_results(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let jid = job_id(&id)?;
    let info = state
        .coord
        .store()
        .job(jid)?
        .ok_or_else(|| AppError::NotFound(format!("no job with id {id:?}")))?;
    let view = view(&state, info);
    let body = tokio::task::spawn_blocking(move || results_json(&state, jid, &view))
        .await
        .map_err(|e| AppError::Store(StoreError::Backend(Box::new(e))))??;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Numbers and factors are plain digits, so the JSON is written directly.
fn results_json(state: &AppState, jid: JobId, view: &JobView) -> Result<String, AppError> {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(64 + view.done as usize * 32);
    let _ = write!(
        out,
        "{{\"id\":\"{}\",\"state\":\"{}\",\"total\":{},\"done\":{},\"results\":{{",
        view.id, view.state, view.total, view.done
    );
    let mut first = true;
    state.coord.store().visit_results(jid, &mut |n, factors| {
        let Some(factors) = factors else { return };
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "\"{n}\":[");
        for (i, f) in factors.iter().enumerate() {
            let _ = write!(out, "{}\"{f}\"", if i > 0 { "," } else { "" });
        }
        out.push(']');
    })?;
    out.push_str("}}");
    Ok(out)
}

#[derive(Serialize)]
pub(crate) struct Status {
    queued_chunks: usize,
    leased_chunks: usize,
    version: &'static str,
}

pub(crate) async fn status(State(state): State<Arc<AppState>>) -> Json<Status> {
    let (queued_chunks, leased_chunks) = state.coord.counts();
    Json(Status {
        queued_chunks,
        leased_chunks,
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<(Vec<u128>, u32), String> {
        parse_job(body.as_bytes(), &crate::Config::default()).map_err(|e| match e {
            AppError::BadRequest { message, item, .. } => format!("{item:?}: {message}"),
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn accepts_strings_integers_and_ranges() {
        assert_eq!(
            parse(r#"{"numbers": ["999999999999", 1000000000001]}"#),
            Ok((vec![999999999999, 1000000000001], 43))
        );
        assert_eq!(
            parse(r#"{"range": {"start": "10", "count": 3, "step": 2}, "chunk_size": 2}"#),
            Ok((vec![10, 12, 14], 2))
        );
        assert_eq!(
            parse(r#"{"numbers": [340282366920938463463374607431768211455]}"#),
            Ok((vec![u128::MAX], 43))
        );
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
}

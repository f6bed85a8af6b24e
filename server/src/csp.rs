//! Reports of Content Security Policy violations, which browsers send to
//! `POST /api/csp-report` (the policy's `report-uri`): a blocked script or
//! worker is a tab that contributes nothing while looking fine to its
//! visitor, so the operator sees each report counted in `/metrics` and
//! logged (at most one line a second: anyone can send reports).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::api::AppError;
use crate::AppState;

/// The largest report read: browsers send well under 2 KiB.
const MAX_REPORT_BYTES: usize = 16 * 1024;

/// Reports received, and when one was last logged.
#[derive(Debug, Default)]
pub(crate) struct Reports {
    pub(crate) received: AtomicU64,
    last_logged: Mutex<Option<Instant>>,
}

/// The body of a `report-uri` report (`application/csp-report`), as
/// Chromium and Firefox send it; the fields read here, all optional.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "csp-report")]
    report: Report,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
struct Report {
    document_uri: String,
    effective_directive: String,
    violated_directive: String,
    blocked_uri: String,
    source_file: String,
    line_number: u64,
}

/// `POST /api/csp-report`: counts the report and logs it; `204`. A body that
/// is no report gets `400`, one over 16 KiB `413`; neither is counted.
pub(crate) async fn report(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<StatusCode, AppError> {
    let declared = crate::api::declared_length(request.headers());
    let too_large =
        || AppError::TooLarge(format!("a CSP report is at most {MAX_REPORT_BYTES} bytes"));
    let body = crate::api::read_body(
        request.into_body(),
        declared,
        0,
        MAX_REPORT_BYTES,
        too_large,
    )
    .await?;
    let Envelope { report } = serde_json::from_slice(&body).map_err(|e| AppError::BadRequest {
        code: "bad_report",
        message: format!(
            "not a CSP report (a JSON object with a \"csp-report\" object): {}",
            crowdfactor_protocol::clip_quoted(&e.to_string())
        ),
        item: None,
    })?;
    let reports = &state.csp_reports;
    reports.received.fetch_add(1, Relaxed);
    let mut last = reports
        .last_logged
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if crate::log_due(&mut last) {
        let directive = if report.effective_directive.is_empty() {
            &report.violated_directive
        } else {
            &report.effective_directive
        };
        // Quoted (`?`): the fields are the sender's words, which must not
        // make lines of their own in the log.
        let clip = |s: &str| crowdfactor_protocol::clip_quoted(s).into_owned();
        tracing::warn!(
            directive = ?clip(directive),
            blocked = ?clip(&report.blocked_uri),
            page = ?clip(&report.document_uri),
            source = ?clip(&report.source_file),
            line = report.line_number,
            total = reports.received.load(Relaxed),
            "a browser reports that the Content Security Policy blocked part of a page"
        );
    }
    Ok(StatusCode::NO_CONTENT)
}

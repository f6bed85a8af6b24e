//! Any request to the coordinator's HTTP routes (API, metrics, page), made
//! in-process: never a panic, never a 5xx, never a success on a protected
//! route without the token, and every answer's body reads to its end.
#![no_main]

use std::cell::RefCell;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use crowdfactor_server::{routes, store::MemoryStore, Config};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";
/// Requests before the state starts afresh (jobs pile up otherwise).
const RUNS_PER_STATE: u32 = 2000;

struct Harness {
    rt: tokio::runtime::Runtime,
    app: Router,
    runs: u32,
}

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

/// Fresh routes over an empty store, with job 1 in it to read and change.
fn fresh(rt: &tokio::runtime::Runtime) -> Router {
    let config = Config {
        api_token: Some(TOKEN.into()),
        ..Config::default()
    };
    let app = routes(&config, Arc::new(MemoryStore::new())).expect("routes");
    let req = Request::post("/api/jobs")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"numbers":["12","999999999999","35"],"chunk_size":1}"#,
        ))
        .expect("request");
    let resp = rt.block_on(app.clone().oneshot(req)).expect("infallible");
    assert_eq!(resp.status(), StatusCode::CREATED);
    app
}

/// Percent-encodes all but unreserved characters (and `keep`).
fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fuzz_target!(|req: (u8, u8, &str, &str, u8, u8, &[u8])| {
    let (method, path, segment, query, auth, kind, body) = req;
    let methods = [
        Method::GET,
        Method::POST,
        Method::DELETE,
        Method::PATCH,
        Method::PUT,
        Method::HEAD,
        Method::OPTIONS,
    ];
    let method = methods[usize::from(method) % methods.len()].clone();
    let seg = encode(segment, b"");
    let mut uri = match path % 13 {
        0 => "/api/jobs".to_owned(),
        1 => format!("/api/jobs/{seg}"),
        2 => format!("/api/jobs/{seg}/results"),
        3 => "/api/jobs/1".to_owned(),
        4 => "/api/jobs/1/results".to_owned(),
        5 => "/api/workers".to_owned(),
        6 => "/api/status".to_owned(),
        7 => "/metrics".to_owned(),
        8 => "/dashboard".to_owned(),
        9 => format!("/{seg}"),
        10 => format!("/api/{seg}"),
        11 => "/api/csp-report".to_owned(),
        _ => "/api/events".to_owned(),
    };
    // `/ws` needs a real connection (see `routes`).
    if uri == "/ws" {
        return;
    }
    if !query.is_empty() {
        uri = format!("{uri}?{}", encode(query, b"=&"));
    }
    let protected = ["/api/jobs", "/api/workers", "/api/events", "/metrics"]
        .iter()
        .any(|p| uri.starts_with(p));
    let mut builder = Request::builder().method(method).uri(&uri);
    let good_token = matches!(auth % 5, 1 | 2);
    let authorization = match auth % 5 {
        0 => None,
        1 => Some(format!("Bearer {TOKEN}")),
        2 => Some(format!("bEARER   {TOKEN}")),
        3 => Some(format!("Bearer {TOKEN}x")),
        _ => Some(segment.to_owned()),
    };
    if let Some(v) = authorization.and_then(|v| HeaderValue::from_str(&v).ok()) {
        builder = builder.header(header::AUTHORIZATION, v);
    }
    let ctype = [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
    ];
    if let Some(c) = ctype.get(usize::from(kind % 4)) {
        builder = builder.header(header::CONTENT_TYPE, *c);
    }
    if kind & 4 != 0 {
        builder = builder.header(header::ACCEPT_ENCODING, "gzip");
    }
    let Ok(request) = builder.body(Body::from(body.to_vec())) else {
        return;
    };
    HARNESS.with(|h| {
        let mut h = h.borrow_mut();
        let h = h.get_or_insert_with(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let app = fresh(&rt);
            Harness { rt, app, runs: 0 }
        });
        h.runs += 1;
        if h.runs > RUNS_PER_STATE {
            h.app = fresh(&h.rt);
            h.runs = 0;
        }
        let resp =
            h.rt.block_on(h.app.clone().oneshot(request))
                .expect("infallible");
        let status = resp.status();
        assert!(!status.is_server_error(), "{status} for {uri}");
        if protected && !good_token {
            assert!(!status.is_success(), "{status} without the token for {uri}");
        }
        let streaming = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if !streaming {
            h.rt.block_on(axum::body::to_bytes(resp.into_body(), 64 << 20))
                .expect("the body reads to its end");
        }
    });
});

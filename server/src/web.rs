//! The volunteer page and its assets, embedded at build time from `web/`.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Allows only what the page uses: its own scripts, module workers and
/// WebAssembly compilation, and the WebSocket back to this origin; browsers
/// report what it blocks to [`crate::csp`].
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; \
connect-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'; \
frame-ancestors 'none'; form-action 'self'; report-uri /api/csp-report";

fn mime(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// One embedded file.
#[derive(Debug)]
pub(crate) struct Asset {
    path: &'static str,
    body: &'static [u8],
    /// The body gzipped at build time, where that makes it smaller.
    gzip: Option<&'static [u8]>,
    /// A hash of the body as a weak tag (`W/"…"`: the gzip and plain bodies
    /// are the same file and share it): browsers revalidate (`no-cache`)
    /// and get `304` while the binary is the same.
    etag: &'static str,
}

/// Whether the wasm factorizer was built into this binary.
pub(crate) fn has_wasm() -> bool {
    ASSETS.iter().any(|a| a.path.ends_with(".wasm"))
}

/// The operator dashboard (its API calls need the token; the page asks for it).
pub(crate) async fn dashboard(headers: HeaderMap) -> Response {
    serve("dashboard.html", &headers)
}

/// Serves an embedded file, `index.html` for `/`.
pub(crate) async fn asset(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    serve(if path.is_empty() { "index.html" } else { path }, &headers)
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let gzip = asset.gzip.filter(|_| accepts_gzip(request));
    let mut resp = if etag_matches(request, asset.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if let Some(z) = gzip {
        let mut resp = z.into_response();
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        resp
    } else {
        asset.body.into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime(path)));
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    if asset.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Whether `If-None-Match` names `etag` (or is `*`), compared weakly as
/// RFC 9110 has it for this header.
fn etag_matches(request: &HeaderMap, etag: &str) -> bool {
    let etag = etag.trim_start_matches("W/");
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// Whether `Accept-Encoding` allows gzip (`gzip` or `*`, not with `q=0`).
pub(crate) fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        for (value, gzip) in [
            ("gzip", true),
            ("gzip, deflate, br, zstd", true),
            ("br;q=1.0, GZIP;q=0.5", true),
            ("*", true),
            ("gzip;q=0", false),
            ("gzip; q=0.0", false),
            ("identity", false),
            ("br", false),
            ("", false),
        ] {
            let h = headers(&[(header::ACCEPT_ENCODING, value)]);
            assert_eq!(accepts_gzip(&h), gzip, "{value:?}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        let tag = "W/\"0123456789abcdef\"";
        for (value, hit) in [
            ("\"0123456789abcdef\"", true),
            ("W/\"0123456789abcdef\"", true),
            ("\"x\", \"0123456789abcdef\"", true),
            ("*", true),
            ("\"0123456789abcdee\"", false),
            ("0123456789abcdef", false),
        ] {
            let h = headers(&[(header::IF_NONE_MATCH, value)]);
            assert_eq!(etag_matches(&h, tag), hit, "{value:?}");
        }
    }

    /// Every gzip copy unpacks to its file, and tags differ between files.
    #[test]
    fn embedded_assets_have_tags_and_true_gzip_copies() {
        use std::io::Read;
        assert!(ASSETS.iter().any(|a| a.path == "index.html"));
        let mut tags: Vec<_> = ASSETS.iter().map(|a| a.etag).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len());
        for a in ASSETS {
            assert!(
                a.etag.starts_with("W/\"") && a.etag.ends_with('"'),
                "{}",
                a.etag
            );
            if let Some(z) = a.gzip {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(z)
                    .read_to_end(&mut plain)
                    .expect("valid gzip");
                assert_eq!(plain, a.body, "{}", a.path);
                assert!(z.len() < a.body.len());
            }
        }
    }
}

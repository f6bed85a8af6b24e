//! Bearer tokens: one for the job API (operators), optionally one for workers.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// A fresh random token: 32 hex digits from the OS's CSPRNG.
pub fn generate_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads the token stored at `path`, or creates it (mode 0600).
/// Returns the token and whether it was just created.
pub fn load_or_create_token(path: &Path) -> std::io::Result<(String, bool)> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let token = text.trim().to_owned();
        if !token.is_empty() {
            return Ok((token, false));
        }
    }
    let token = generate_token().map_err(std::io::Error::other)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    writeln!(f, "{token}")?;
    f.sync_all()?;
    Ok((token, true))
}

/// Compares without an early exit, so timing does not reveal a prefix.
pub(crate) fn token_matches(given: &str, want: &str) -> bool {
    let (a, b) = (given.as_bytes(), want.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` value (the scheme's
/// name is case-insensitive, RFC 9110 §11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The `token` of a query string, percent-decoded: the dashboard sends it
/// through `encodeURIComponent`, and a token of base64 (`+`, `/`, `=`)
/// arrives escaped.
fn query_token(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
}

/// Middleware for the job API: `Authorization: Bearer <token>` or 401.
pub(crate) async fn require_api_token(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(want) = state.config.api_token.as_deref() else {
        return next.run(req).await;
    };
    // EventSource cannot set headers, so `?token=` is accepted as well.
    let from_query = query_token(req.uri().query());
    // More than one `Authorization` header is refused, whatever they say:
    // which one a proxy in front would have checked is anyone's guess.
    let mut headers = req.headers().get_all(header::AUTHORIZATION).iter();
    let given = match (headers.next(), headers.next()) {
        (Some(v), None) => v.to_str().ok().and_then(bearer).map(str::to_owned),
        (Some(_), Some(_)) => None,
        (None, _) => from_query,
    };
    let why = match given.as_deref() {
        Some(t) if token_matches(t, want) => return next.run(req).await,
        Some(_) => "the token given is not this server's API token",
        None if req.headers().contains_key(header::AUTHORIZATION) => {
            "the Authorization header is not one `Bearer <token>`"
        }
        None => "no token was given",
    };
    let mut resp = crate::api::error_response(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!("{why}: this API needs `Authorization: Bearer <token>`; the token was printed when the server first started and is stored next to its database (--token sets it)"),
        None,
    );
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_persisted() {
        let a = generate_token().expect("token");
        assert_eq!(a.len(), 32);
        assert_ne!(a, generate_token().expect("token"));
        let path = std::env::temp_dir().join(format!("crowdfactor-token-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let (t1, created) = load_or_create_token(&path).expect("create");
        assert!(created);
        let (t2, created) = load_or_create_token(&path).expect("load");
        assert!(!created);
        assert_eq!(t1, t2);
        let _ = std::fs::remove_file(&path);
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("ab", "abc"));
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("BEARER abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn query_tokens_are_percent_decoded() {
        assert_eq!(
            query_token(Some("token=a%2Bb%2Fc%3D%3D")).as_deref(),
            Some("a+b/c==")
        );
        assert_eq!(query_token(Some("x=1&token=t")).as_deref(), Some("t"));
        assert_eq!(query_token(Some("tokens=t")), None);
        assert_eq!(query_token(None), None);
    }
}

//! Bearer-token authentication. When tokens are configured, every endpoint except `/health`,
//! `/docs` and `/openapi.json` requires `Authorization: Bearer <token>`; the event streams
//! (`/events`, `/jobs/{id}/events`) also accept the token as the query parameter
//! `access_token` (a browser's `EventSource` cannot send headers), which is never logged
//! ([`redacted_uri`]). Tokens are compared in constant time. Failures are 401 problem+json
//! with `WWW-Authenticate: Bearer`.

use axum::extract::{Request, State};
use axum::http::{Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

/// Paths reachable without a token.
fn is_public(path: &str) -> bool {
    path == "/health" || path == "/openapi.json" || path == "/docs" || path.starts_with("/docs/")
}

/// Does `presented` match one of `tokens`? Every token is compared, in constant time per token.
pub fn token_matches(tokens: &[String], presented: &str) -> bool {
    let mut ok = subtle::Choice::from(0);
    for t in tokens {
        ok |= t.as_bytes().ct_eq(presented.as_bytes());
    }
    bool::from(ok)
}

/// Middleware: lets the request through when no tokens are configured, when the path is
/// public, or when it carries a valid bearer token.
pub(crate) async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let tokens = &state.settings.api_tokens;
    if tokens.is_empty() || is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let header = request.headers().get(header::AUTHORIZATION);
    let from_header = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::to_owned);
    let from_query = || {
        if header.is_some() || !crate::streams::is_stream_path(request.uri().path()) {
            return None;
        }
        access_token(request.uri())
    };
    let presented = from_header.or_else(from_query);
    match presented.as_deref() {
        None => ApiError::Unauthorized("this server requires `Authorization: Bearer <token>`").into_response(),
        Some(t) if token_matches(tokens, t.trim()) => next.run(request).await,
        Some(_) => ApiError::Unauthorized("the bearer token is not valid").into_response(),
    }
}

/// The `access_token` query parameter of `uri`, percent-decoded.
fn access_token(uri: &Uri) -> Option<String> {
    let query = uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == crate::streams::ACCESS_TOKEN_PARAM)
        .map(|(_, value)| value.into_owned())
}

/// `uri` for logs: the value of every `access_token` query parameter replaced by `REDACTED`
/// (the rest of the query as sent).
pub fn redacted_uri(uri: &Uri) -> String {
    let Some(query) = uri.query() else { return uri.to_string() };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            let decoded: String = form_urlencoded::parse(name.as_bytes()).map(|(n, _)| n.into_owned()).collect();
            if decoded == crate::streams::ACCESS_TOKEN_PARAM { format!("{name}=REDACTED") } else { pair.to_owned() }
        })
        .collect();
    format!("{}?{}", uri.path(), redacted.join("&"))
}

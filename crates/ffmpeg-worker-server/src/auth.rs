//! Bearer-token authentication. When tokens are configured, every endpoint except `/health`,
//! `/docs` and `/openapi.json` requires `Authorization: Bearer <token>`; tokens are compared in
//! constant time. Failures are 401 problem+json with `WWW-Authenticate: Bearer`.

use axum::extract::{Request, State};
use axum::http::header;
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
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    match presented {
        None => ApiError::Unauthorized("this server requires `Authorization: Bearer <token>`").into_response(),
        Some(t) if token_matches(tokens, t.trim()) => next.run(request).await,
        Some(_) => ApiError::Unauthorized("the bearer token is not valid").into_response(),
    }
}

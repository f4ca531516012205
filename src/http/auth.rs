//! Bearer tokens for the routes that can require one (admin, evaluate, metrics).

use crate::config::Secret;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Constant-time comparison: the time taken says nothing about how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request carries `Authorization: Bearer <token>`. A configured token is never
/// empty (`config` refuses one), so a missing header never matches.
pub fn bearer_matches(headers: &HeaderMap, token: &Secret) -> bool {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    !given.is_empty() && same(given.as_bytes(), token.expose().as_bytes())
}

pub fn unauthorized(message: &str) -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, Json(json!({ "error": message }))).into_response();
    r.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
    r
}

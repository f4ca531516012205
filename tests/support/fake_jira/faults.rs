//! What every REST request goes through before its route: the API version, sign-in (which
//! also says who is calling), the pause gate and injected failures.

use super::{FakeJira, BOT_ACCOUNT, TOKEN};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// A canned failure for the next request.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

impl FakeJira {
    /// Common to every route: API version, auth, the pause gate, injected faults. Returns the
    /// account the credentials belong to.
    pub(super) async fn enter(&self, v: &str, headers: &HeaderMap) -> Result<String, Response> {
        if v != "2" && v != "3" {
            return Err((StatusCode::NOT_FOUND, Json(json!({"errorMessages": ["No such API version"]}))).into_response());
        }
        let Some(account) = self.signed_in(headers) else {
            return Err(super::rest::error(StatusCode::UNAUTHORIZED, "Unauthorized"));
        };
        let mut rx = self.paused.subscribe();
        if *rx.borrow() {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _ = rx.wait_for(|p| !p).await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        let mut w = self.world.lock().unwrap();
        w.requests += 1;
        if let Some(f) = w.faults.pop_front() {
            let mut resp = (StatusCode::from_u16(f.status).unwrap(), Json(f.body)).into_response();
            for (k, v) in f.headers {
                resp.headers_mut().insert(k, v.parse().unwrap());
            }
            return Err(resp);
        }
        Ok(account)
    }

    /// Data Center: `Bearer <token>`; Cloud: `Basic base64(email:token)`. Either is accepted on
    /// both versions, as long as the token is known: rollgate's token is the bot account,
    /// tokens from `token_for` are the people they were made for.
    fn signed_in(&self, headers: &HeaderMap) -> Option<String> {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let token = match auth.strip_prefix("Bearer ") {
            Some(t) => t.to_string(),
            None => {
                let decoded = base64_decode(auth.strip_prefix("Basic ")?.trim()).and_then(|d| String::from_utf8(d).ok())?;
                decoded.split_once(':')?.1.to_string()
            }
        };
        if token == TOKEN {
            return Some(BOT_ACCOUNT.to_string());
        }
        self.world.lock().unwrap().tokens.get(&token).cloned()
    }
}

/// Just enough base64 (standard or URL alphabet, padding optional) to read a Basic header.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

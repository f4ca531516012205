//! Faults: canned answers for the next requests (`fail_next`), a pause and a stall gate, and
//! seeded random faults on every route (`chaos`), decided either before a write is applied
//! (the write is lost) or after it (the write is applied, its answer lost), with connection
//! resets that are real TCP resets (listener.rs), not 5xx answers.

use super::listener::Conn;
use super::FakeGithub;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

type Shared = FakeGithub;

/// A canned failure for the next matching request.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

impl FakeGithub {
    /// The next requests fail with these answers, in order.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        self.world.lock().unwrap().faults.extend(faults);
    }

    /// Holds every request until `resume`.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.paused.send_replace(false);
        self.stall_comments.send_replace(false);
    }

    /// The next issue created is stored, but rollgate gets a 502 instead of its number.
    pub fn lose_answer_to_next_issue_created(&self) {
        self.world.lock().unwrap().lose_next_created = true;
    }

    /// From now on a new comment is stored but its answer held until `resume`.
    pub fn stall_after_creating_comments(&self) {
        self.stall_comments.send_replace(true);
    }

    pub(super) async fn hold(&self, gate: &watch::Sender<bool>) {
        let mut rx = gate.subscribe();
        if *rx.borrow() {
            self.waiting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = rx.wait_for(|p| !p).await;
            self.waiting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Requests currently held by `pause`.
    pub fn held(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Common to every route: auth, the pause gate, injected faults.
    pub(super) async fn enter(&self, headers: &axum::http::HeaderMap) -> Result<(), Response> {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !auth.ends_with(super::TOKEN) {
            return Err((StatusCode::UNAUTHORIZED, Json(json!({"message": "Bad credentials"}))).into_response());
        }
        self.hold(&self.paused).await;
        let mut w = self.world.lock().unwrap();
        w.requests += 1;
        if let Some(f) = w.faults.pop_front() {
            let mut resp = (StatusCode::from_u16(f.status).unwrap(), Json(f.body)).into_response();
            for (k, v) in f.headers {
                resp.headers_mut().insert(k, v.parse().unwrap());
            }
            return Err(resp);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// 500, 502, 503 before anything is applied.
    Status500,
    Status502,
    Status503,
    /// 429 with `Retry-After: 1`.
    TooManyRequests,
    /// 403 "You have exceeded a secondary rate limit" with `Retry-After: 1`.
    SecondaryLimit,
    /// No answer for `Chaos::stall` (longer than the client waits), then a 504; nothing applied.
    Stall,
    /// The connection is reset; nothing applied.
    Reset,
    /// The write is applied, then the answer is a 502 / a reset / a stall. A read gets the same
    /// failure without the "applied" part.
    ApplyThen502,
    ApplyThenReset,
    ApplyThenStall,
}

impl FaultKind {
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Status500,
        FaultKind::Status502,
        FaultKind::Status503,
        FaultKind::TooManyRequests,
        FaultKind::SecondaryLimit,
        FaultKind::Stall,
        FaultKind::Reset,
        FaultKind::ApplyThen502,
        FaultKind::ApplyThenReset,
        FaultKind::ApplyThenStall,
    ];
}

/// A fault mix: each request fails with `kind` with probability `p` (the sum at most 1).
/// The draw for a request depends only on the seed, its method and path, and how many times
/// that method and path were asked before: the same run gives the same faults whatever the
/// interleaving across issues.
#[derive(Debug, Clone)]
pub struct Chaos {
    pub seed: u64,
    pub faults: Vec<(FaultKind, f64)>,
    pub stall: Duration,
}

impl Chaos {
    /// `rate` of the requests fail, shared by `kinds` in the given proportions.
    pub fn mix(seed: u64, rate: f64, kinds: &[(FaultKind, f64)], stall: Duration) -> Chaos {
        let total: f64 = kinds.iter().map(|(_, w)| w).sum();
        Chaos { seed, faults: kinds.iter().map(|(k, w)| (*k, rate * w / total)).collect(), stall }
    }

    /// Every request fails with `kind`.
    pub fn always(kind: FaultKind) -> Chaos {
        Chaos { seed: 0, faults: vec![(kind, 1.0)], stall: Duration::from_secs(30) }
    }
}

#[derive(Default)]
pub(super) struct ChaosState {
    chaos: Option<Chaos>,
    /// How often each "METHOD path" was asked, for the draws.
    asked: BTreeMap<String, u64>,
    injected: BTreeMap<FaultKind, u64>,
    /// Every request that reached the fake, faulted or not.
    requests: u64,
}

/// splitmix64: a good enough 64-bit mix for reproducible draws.
pub(super) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl FakeGithub {
    /// From now on requests fail at random as `chaos` says.
    pub fn chaos(&self, chaos: Chaos) {
        self.chaos.lock().unwrap().chaos = Some(chaos);
    }

    /// No more random faults (the tracker heals).
    pub fn calm(&self) {
        self.chaos.lock().unwrap().chaos = None;
    }

    /// The faults injected so far, by kind.
    pub fn injected(&self) -> BTreeMap<FaultKind, u64> {
        self.chaos.lock().unwrap().injected.clone()
    }

    /// Every request that reached the fake, including those answered with a fault.
    pub fn requests_seen(&self) -> u64 {
        self.chaos.lock().unwrap().requests
    }

    fn draw(&self, method: &str, path: &str, write: bool) -> Option<(FaultKind, Duration)> {
        let mut s = self.chaos.lock().unwrap();
        s.requests += 1;
        let chaos = s.chaos.clone()?;
        let what = format!("{method} {path}");
        let n = {
            let n = s.asked.entry(what.clone()).or_default();
            *n += 1;
            *n
        };
        let h = what.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        let r = (mix64(chaos.seed ^ mix64(h ^ mix64(n))) >> 11) as f64 / (1u64 << 53) as f64;
        let mut acc = 0.0;
        let kind = chaos.faults.iter().find(|(_, p)| {
            acc += p;
            r < acc
        })?.0;
        // A read has nothing to apply: the same failure, before.
        let kind = match kind {
            FaultKind::ApplyThen502 if !write => FaultKind::Status502,
            FaultKind::ApplyThenReset if !write => FaultKind::Reset,
            FaultKind::ApplyThenStall if !write => FaultKind::Stall,
            k => k,
        };
        *s.injected.entry(kind).or_default() += 1;
        Some((kind, chaos.stall))
    }
}

pub(super) async fn chaos_layer(State(f): State<Shared>, req: Request, next: Next) -> Response {
    let conn = req.extensions().get::<ConnectInfo<Conn>>().map(|c| c.0.clone());
    let write = req.method() != axum::http::Method::GET;
    let Some((kind, stall)) = f.draw(req.method().as_str(), req.uri().path(), write) else {
        return next.run(req).await;
    };
    let status = |code: u16, msg: &str| (StatusCode::from_u16(code).unwrap(), Json(json!({ "message": msg }))).into_response();
    let reset = || {
        conn.as_ref().expect("served with connect info").reset();
        // Never sent: the connection is reset when hyper writes it.
        status(500, "reset")
    };
    let limited = |code: u16, msg: &str| {
        let mut r = status(code, msg);
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
        r
    };
    match kind {
        FaultKind::Status500 => status(500, "Internal Server Error"),
        FaultKind::Status502 => status(502, "Bad Gateway"),
        FaultKind::Status503 => status(503, "Service Unavailable"),
        FaultKind::TooManyRequests => limited(429, "slow down"),
        FaultKind::SecondaryLimit => {
            limited(403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")
        }
        FaultKind::Stall => {
            tokio::time::sleep(stall).await;
            status(504, "Gateway Timeout")
        }
        FaultKind::Reset => reset(),
        FaultKind::ApplyThen502 => {
            let _applied = next.run(req).await;
            status(502, "Bad Gateway")
        }
        FaultKind::ApplyThenReset => {
            let _applied = next.run(req).await;
            reset()
        }
        FaultKind::ApplyThenStall => {
            let applied = next.run(req).await;
            tokio::time::sleep(stall).await;
            applied
        }
    }
}


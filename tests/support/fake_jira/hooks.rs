//! The webhook deliveries the fake sends back, as a Jira admin webhook does: a background task
//! POSTs them in the order the changes happened, signed (`X-Hub-Signature: sha256=<hex HMAC>`)
//! when a secret is set, each under its own `X-Atlassian-Webhook-Identifier`.
//!
//! Failures are retried as Jira Cloud documents: on 408, 409, 425, 429, any 5xx, a refused
//! connection or a timeout, up to 5 retries under the same identifier with
//! `X-Atlassian-Webhook-Retry: <n>`; other answers (400, 401, 404, ...) are never resent. Jira
//! waits 5 to 15 minutes between retries; the fake waits `retry_delay` (short) and keeps sending
//! later deliveries meanwhile, so a retry arrives after them, as it would.
//!
//! Knobs: hold and release in any order, seeded random delays (later deliveries overtake
//! earlier ones), one extra resend of every successful delivery (what a lost acknowledgement
//! causes), and which of a comment's two deliveries goes first.

use super::world::World;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// One delivery waiting to be sent.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub identifier: String,
    pub event: String,
    pub kind: Option<String>,
    pub issue: String,
    pub who: String,
    pub body: Vec<u8>,
}

impl Outgoing {
    pub(super) fn new(v: &Value, issue: &str, who: &str, body: Vec<u8>) -> Outgoing {
        Outgoing {
            identifier: String::new(),
            event: v["webhookEvent"].as_str().unwrap_or_default().to_string(),
            kind: v["issue_event_type_name"].as_str().map(String::from),
            issue: issue.to_string(),
            who: who.to_string(),
            body,
        }
    }
}

/// One attempt to send a delivery, and what rollgate answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub identifier: String,
    pub webhook_event: String,
    pub issue_event_type_name: Option<String>,
    pub issue: String,
    /// The account whose change caused it.
    pub who: String,
    /// 0 for the first attempt; the `X-Atlassian-Webhook-Retry` value otherwise.
    pub retry: u32,
    /// The answer's status; None when there was none (refused, reset, timed out).
    pub status: Option<u16>,
    pub error: Option<String>,
    pub body: Value,
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = self.issue_event_type_name.as_deref().map(|k| format!(" ({k})")).unwrap_or_default();
        let status = self.status.map_or_else(|| format!("no answer: {}", self.error.as_deref().unwrap_or("")), |s| s.to_string());
        let retry = if self.retry > 0 { format!(" retry {}", self.retry) } else { String::new() };
        write!(f, "{} {}{kind} {} by {}{retry} -> {status}", self.identifier, self.webhook_event, self.issue, self.who)?;
        // What changed, so a loop reads as one: `[Rollout Type: 3 Demoed -> 2 Notified]`.
        for item in self.body["changelog"]["items"].as_array().into_iter().flatten() {
            let side = |k: &str| item[k].as_str().unwrap_or("-").to_string();
            write!(f, " [{}: {} -> {}]", side("field"), side("fromString"), side("toString"))?;
        }
        if let Some(body) = self.body["comment"]["body"].as_str() {
            let line: String = body.chars().take(60).map(|c| if c == '\n' { '⏎' } else { c }).collect();
            write!(f, " {{{line}}}")?;
        }
        Ok(())
    }
}

/// How `release_deliveries` orders what was held.
#[derive(Debug, Clone)]
pub enum Release {
    AsHappened,
    Reversed,
    /// Positions in the held list, e.g. [2, 0, 1]; positions left out are dropped.
    Order(Vec<usize>),
}

#[derive(Clone)]
struct Target {
    url: String,
    secret: Option<String>,
}

pub(super) struct Hooks {
    target: Option<Target>,
    queue: VecDeque<Outgoing>,
    /// Some while deliveries are held.
    held: Option<Vec<Outgoing>>,
    in_flight: usize,
    waiting_retry: usize,
    /// Seeded splitmix64 state and the largest delay.
    delay: Option<(u64, Duration)>,
    resend_once: bool,
    issue_event_first: bool,
    pub(super) retry_delay: Duration,
    pub(super) max_retries: u32,
    pub(super) timeout: Duration,
    log: Vec<Delivery>,
    next_identifier: u64,
    wake: Arc<Notify>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            target: None,
            queue: VecDeque::new(),
            held: None,
            in_flight: 0,
            waiting_retry: 0,
            delay: None,
            resend_once: false,
            issue_event_first: false,
            retry_delay: Duration::from_millis(100),
            max_retries: 5,
            timeout: Duration::from_secs(10),
            log: Vec::new(),
            next_identifier: 0,
            wake: Arc::new(Notify::new()),
        }
    }
}

impl Hooks {
    pub(super) fn enabled(&self) -> bool {
        self.target.is_some()
    }

    pub(super) fn target(&mut self, url: String, secret: Option<String>) {
        self.target = Some(Target { url, secret });
    }

    pub(super) fn issue_event_first(&self) -> bool {
        self.issue_event_first
    }

    pub(super) fn set_issue_event_first(&mut self, first: bool) {
        self.issue_event_first = first;
    }

    pub(super) fn push(&mut self, out: Vec<Outgoing>) {
        for mut o in out {
            self.next_identifier += 1;
            o.identifier = format!("fake-jira-{}", self.next_identifier);
            match self.held.as_mut() {
                Some(held) => held.push(o),
                None => self.queue.push_back(o),
            }
        }
        self.wake.notify_one();
    }

    pub(super) fn hold(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    pub(super) fn release(&mut self, order: Release) {
        let mut held = self.held.take().unwrap_or_default();
        match order {
            Release::AsHappened => {}
            Release::Reversed => held.reverse(),
            Release::Order(positions) => held = positions.iter().filter_map(|p| held.get(*p).cloned()).collect(),
        }
        self.queue.extend(held);
        self.wake.notify_one();
    }

    pub(super) fn delay(&mut self, seed: u64, max: Duration) {
        self.delay = Some((seed, max));
    }

    pub(super) fn resend_once(&mut self) {
        self.resend_once = true;
    }

    /// Deliveries not yet answered for good: queued, held, being sent or waiting to be retried.
    pub(super) fn busy(&self) -> usize {
        self.queue.len() + self.held.as_ref().map_or(0, Vec::len) + self.in_flight + self.waiting_retry
    }

    pub(super) fn held_count(&self) -> usize {
        self.held.as_ref().map_or(0, Vec::len)
    }

    pub(super) fn log(&self) -> &[Delivery] {
        &self.log
    }

    fn next_delay(&mut self) -> Option<Duration> {
        let (state, max) = self.delay.as_mut()?;
        // splitmix64: small, seeded, good enough to shuffle arrival times.
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let ms = max.as_millis().max(1) as u64;
        Some(Duration::from_millis(z % (ms + 1)))
    }
}

type Shared = Arc<Mutex<World>>;

/// The background sender: one delivery at a time, in order (or each after its own random
/// delay when delays are on).
pub(super) async fn run(world: Shared) {
    let http = reqwest::Client::new();
    let wake = world.lock().unwrap().hooks.wake.clone();
    loop {
        let next = {
            let mut w = world.lock().unwrap();
            let h = &mut w.hooks;
            h.queue.pop_front().map(|o| {
                h.in_flight += 1;
                (o, h.next_delay())
            })
        };
        match next {
            None => wake.notified().await,
            Some((o, None)) => send(world.clone(), http.clone(), o).await,
            Some((o, Some(d))) => {
                let (world, http) = (world.clone(), http.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    send(world, http, o).await
                });
            }
        }
    }
}

/// The first attempt (and the extra resend when asked for); a failure is retried by a task of
/// its own, so later deliveries do not wait for it.
async fn send(world: Shared, http: reqwest::Client, o: Outgoing) {
    let status = attempt(&world, &http, &o, 0).await;
    let resend = world.lock().unwrap().hooks.resend_once;
    if ok(status) && resend {
        attempt(&world, &http, &o, 1).await;
    } else if retryable(status) {
        world.lock().unwrap().hooks.waiting_retry += 1;
        let world2 = world.clone();
        tokio::spawn(async move { retry(world2, http, o).await });
    }
    world.lock().unwrap().hooks.in_flight -= 1;
}

async fn retry(world: Shared, http: reqwest::Client, o: Outgoing) {
    let (delay, max) = {
        let w = world.lock().unwrap();
        (w.hooks.retry_delay, w.hooks.max_retries)
    };
    for n in 1..=max {
        tokio::time::sleep(delay).await;
        if !retryable(attempt(&world, &http, &o, n).await) {
            break;
        }
    }
    world.lock().unwrap().hooks.waiting_retry -= 1;
}

fn ok(status: Option<u16>) -> bool {
    status.is_some_and(|s| (200..300).contains(&s))
}

/// Jira Cloud retries 408, 409, 425, 429, 5xx and failed or timed-out connections.
fn retryable(status: Option<u16>) -> bool {
    match status {
        None => true,
        Some(s) => matches!(s, 408 | 409 | 425 | 429 | 500..=599),
    }
}

pub(super) fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn attempt(world: &Shared, http: &reqwest::Client, o: &Outgoing, retry: u32) -> Option<u16> {
    let (target, timeout) = {
        let w = world.lock().unwrap();
        (w.hooks.target.clone().expect("deliveries have a target"), w.hooks.timeout)
    };
    let mut req = http
        .post(&target.url)
        .timeout(timeout)
        .header("content-type", "application/json; charset=utf-8")
        .header("user-agent", "Atlassian Webhook HTTP Client")
        .header("x-atlassian-webhook-identifier", &o.identifier)
        .header("x-atlassian-webhook-flow", "Primary")
        .body(o.body.clone());
    if retry > 0 {
        req = req.header("x-atlassian-webhook-retry", retry.to_string());
    }
    if let Some(secret) = &target.secret {
        req = req.header("x-hub-signature", sign(secret, &o.body));
    }
    let (status, error) = match req.send().await {
        Ok(resp) => (Some(resp.status().as_u16()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let record = Delivery {
        identifier: o.identifier.clone(),
        webhook_event: o.event.clone(),
        issue_event_type_name: o.kind.clone(),
        issue: o.issue.clone(),
        who: o.who.clone(),
        retry,
        status,
        error,
        body: serde_json::from_slice(&o.body).unwrap_or(Value::Null),
    };
    world.lock().unwrap().hooks.log.push(record);
    status
}

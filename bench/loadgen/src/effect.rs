//! Delivery-to-effect: the fake GitHub and the sender in one process, one clock. Delivery i
//! is about a fresh issue number, so the last call the fake gets for that issue is the end of
//! rollgate's work on delivery i. Once no call has arrived for `idle`, the latency of each
//! delivery is (last tracker call for its issue − the time it was due to be sent).

use crate::body::{Signed, Template};
use crate::client::Target;
use crate::fake_github::Fake;
use crate::load::{self, OnAnswer, Scheduled, Window};
use crate::stats::{self, Latencies};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub struct Options {
    pub target: Target,
    pub template: Template,
    pub fake: Rc<Fake>,
    pub rate: f64,
    pub duration: Duration,
    pub connections: usize,
    pub first_issue: u64,
    pub idle: Duration,
    pub max_wait: Duration,
}

/// Per delivery index: when it was due, and the status of its acknowledgement (None: no answer).
type Sent = (Instant, Option<u16>);

pub async fn run(o: Options) -> Value {
    let template = Rc::new(o.template);
    let first = o.first_issue;
    let body_for: Rc<dyn Fn(u64) -> Signed> = Rc::new(move |i| template.signed(first + i));
    let sent: Rc<RefCell<Vec<Sent>>> = Rc::default();
    let on_answer: OnAnswer = {
        let sent = sent.clone();
        Rc::new(move |s: &Scheduled, status: Option<u16>| {
            let mut v = sent.borrow_mut();
            let i = s.index as usize;
            if v.len() <= i {
                v.resize(i + 1, (s.due, None));
            }
            v[i] = (s.due, status);
        })
    };
    let cpu0 = stats::cpu_time();
    let wall0 = Instant::now();
    let window = Window::new(Duration::ZERO, o.duration);
    let mut rec = load::open(Rc::new(o.target), body_for, o.rate, o.connections, window, Some(on_answer)).await;
    let sending_done = Instant::now();

    // Wait for rollgate to go quiet: `idle` without a call, or `max_wait` at most.
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        let quiet_since = o.fake.last_call().unwrap_or(sending_done).max(sending_done);
        if now - quiet_since >= o.idle || now - sending_done >= o.max_wait {
            break;
        }
    }
    let gave_up = o.fake.last_call().is_some_and(|t| Instant::now() - t < o.idle);
    let cpu = stats::cpu_time() - cpu0;
    let wall = wall0.elapsed();

    let sent = sent.borrow();
    let mut effect = Latencies::with_capacity(sent.len());
    let (mut acked, mut no_call) = (0u64, 0u64);
    for (i, (due, status)) in sent.iter().enumerate() {
        if *status != Some(202) {
            continue;
        }
        acked += 1;
        match o.fake.issue_last_call(first + i as u64) {
            Some(t) => effect.push(t.saturating_duration_since(*due)),
            None => no_call += 1,
        }
    }
    let achieved = rec.sent as f64 / o.duration.as_secs_f64();
    json!({
        "kind": "effect",
        "rate_target": o.rate,
        "rate_achieved": stats::round3(achieved),
        "duration_s": o.duration.as_secs_f64(),
        "first_issue": first,
        "sent": rec.sent,
        "acked": acked,
        "ack_ms": rec.latencies.summary(),
        "outcomes": rec.outcomes.to_json(),
        "errors": rec.outcomes.errors(),
        "effect_ms": effect.summary(),
        "with_effect": effect.len(),
        "without_tracker_call": no_call,
        "tracker_calls": o.fake.calls(),
        "tracker_calls_per_delivery": stats::round3(o.fake.calls() as f64 / acked.max(1) as f64),
        "still_busy_at_max_wait": gave_up,
        "fake": o.fake.routes_json(),
        // The fake GitHub runs in this process, so its CPU is counted here too.
        "loadgen_cpu_pct": stats::cpu_percent(cpu, wall),
    })
}

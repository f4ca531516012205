//! `ingest`: N pre-signed bodies (one per issue number), sent closed-loop (`--max`) or
//! open-loop (`--rate`), and the generator's own CPU over exactly the measured window.

use crate::body::{Signed, Template};
use crate::client::Target;
use crate::load::{self, Window};
use crate::stats;
use serde_json::{json, Value};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub enum Mode {
    Max { connections: usize },
    Rate { rate: f64, connections: usize },
}

pub struct Options {
    pub target: Target,
    pub template: Template,
    pub issues: u64,
    pub first_issue: u64,
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
}

pub async fn run(o: Options) -> Value {
    let bodies: Vec<Signed> = (0..o.issues.max(1)).map(|i| o.template.signed(o.first_issue + i)).collect();
    let body_bytes = bodies[0].body.len();
    let window = Window::new(o.warmup, o.duration);
    let (from, end) = (window.measure_from, window.end);

    // CPU samples taken on the same thread exactly at the window's edges.
    let cpu_at = |t: Instant| {
        let cell = Rc::new(Cell::new(None));
        let c = cell.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep_until(t.into()).await;
            c.set(Some((stats::cpu_time(), Instant::now())));
        });
        cell
    };
    let (cpu_from, cpu_end) = (cpu_at(from), cpu_at(end));

    let target = Rc::new(o.target);
    let (mode, mut rec) = match o.mode {
        Mode::Max { connections } => {
            let expected = 20_000 * o.duration.as_secs() as usize;
            ("max", load::closed(target, Rc::new(bodies), connections, window, expected).await)
        }
        Mode::Rate { rate, connections } => {
            let bodies = Rc::new(bodies);
            let body_for: Rc<dyn Fn(u64) -> Signed> = Rc::new(move |i| bodies[(i % bodies.len() as u64) as usize].clone());
            ("rate", load::open(target, body_for, rate, connections, window, None).await)
        }
    };
    // The last answers can come back before the timer wheel's next tick fires the end sample.
    while cpu_end.get().is_none() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let cpu_pct = match (cpu_from.get(), cpu_end.get()) {
        (Some((c0, t0)), Some((c1, t1))) => stats::cpu_percent(c1 - c0, t1 - t0),
        _ => f64::NAN,
    };
    let secs = o.duration.as_secs_f64();
    let mut out = json!({
        "kind": "ingest",
        "mode": mode,
        "duration_s": secs,
        "warmup_s": o.warmup.as_secs_f64(),
        "issues": o.issues,
        "body_bytes": body_bytes,
        "sent": rec.sent,
        "accepted": rec.outcomes.accepted(),
        "throughput_per_s": stats::round3(rec.outcomes.accepted() as f64 / secs),
        "ack_ms": rec.latencies.summary(),
        "outcomes": rec.outcomes.to_json(),
        "errors": rec.outcomes.errors(),
        "loadgen_cpu_pct": cpu_pct,
    });
    match o.mode {
        Mode::Max { connections } => out["connections"] = json!(connections),
        Mode::Rate { rate, connections } => {
            out["rate_target"] = json!(rate);
            out["max_connections"] = json!(connections);
            out["rate_achieved"] = json!(stats::round3(rec.sent as f64 / secs));
            out["send_lag_ms"] = rec.send_lag.summary();
            out["unanswered"] = json!(rec.unanswered);
        }
    }
    out
}

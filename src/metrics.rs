//! Prometheus metrics: counters bumped where things happen, gauges read from the store at
//! scrape time. A small hand-written registry: rollgate needs a dozen series, not a framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

/// Labelled counters: name -> label set -> value.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// Labelled gauges set where the state lives (the tracker guard): name -> label set -> value.
    gauges: Mutex<BTreeMap<(&'static str, String), f64>>,
    /// Evaluation latency: counts per bucket upper bound (seconds), then sum and count.
    eval_buckets: [AtomicU64; BUCKETS.len()],
    eval_sum_us: AtomicU64,
    eval_count: AtomicU64,
}

fn label_set(labels: &[(&str, &str)]) -> String {
    labels.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))).collect::<Vec<_>>().join(",")
}

const BUCKETS: [f64; 9] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25];

/// The process's metrics (like Prometheus's default registry).
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

const HELP: &[(&str, &str, &str)] = &[
    ("rollgate_deliveries_total", "counter", "Webhook deliveries by tracker and outcome (queued, duplicate, ignored, ping, unauthorized, unparseable, too_large, too_slow, busy, broken, store_error, store_timeout)."),
    ("rollgate_http_connections", "gauge", "HTTP connections open now."),
    ("rollgate_http_connections_waited_total", "counter", "Times the connection cap was reached and new connections waited in the backlog."),
    ("rollgate_http_closed_total", "counter", "HTTP connections closed by a limit, by reason (header_timeout, idle_timeout)."),
    ("rollgate_http_refused_total", "counter", "Requests refused before their body was read, by reason (too_large)."),
    ("rollgate_events_total", "counter", "Events processed by result (done, retry, dead)."),
    ("rollgate_effects_total", "counter", "Effects on trackers by kind and result."),
    ("rollgate_tracker_calls_total", "counter", "Tracker API calls by tracker and outcome (ok, not_found, rejected, rate_limited_or_5xx, transient)."),
    ("rollgate_policy_reloads_total", "counter", "Policy reloads by result (reloaded, unchanged, refused)."),
    ("rollgate_timers_fired_total", "counter", "Timers fired by the sweep."),
    ("rollgate_inbox_commits_total", "counter", "Inbox commits (group commits: one per batch of accepted deliveries)."),
    ("rollgate_circuit_state", "gauge", "Circuit breaker per tracker: 0 closed, 1 open, 2 half-open."),
    ("rollgate_circuit_opened_total", "counter", "Times a tracker's circuit opened."),
    ("rollgate_api_budget_remaining", "gauge", "Write tokens left per tracker and owner."),
    ("rollgate_replicas", "gauge", "Replicas alive on this store, between which the write budget is divided."),
    ("rollgate_api_budget_waits_total", "counter", "Writes that waited for the budget, or were rescheduled, by priority."),
    ("rollgate_tracker_rate_limit_remaining", "gauge", "Requests the tracker says are left in its rate-limit window (X-RateLimit-Remaining), from its latest answer."),
    ("rollgate_api_reads_total", "counter", "Tracker reads (not limited by the budget)."),
    ("rollgate_flap_breaker_trips_total", "counter", "Labels the flap breaker stopped rollgate from changing again."),
];

impl Metrics {
    pub fn inc(&self, name: &'static str, labels: &[(&str, &str)]) {
        self.add(name, labels, 1);
    }

    pub fn add(&self, name: &'static str, labels: &[(&str, &str)], n: u64) {
        *self.counters.lock().expect("metrics").entry((name, label_set(labels))).or_default() += n;
    }

    pub fn set_gauge(&self, name: &'static str, labels: &[(&str, &str)], value: f64) {
        self.gauges.lock().expect("metrics").insert((name, label_set(labels)), value);
    }

    pub fn observe_eval(&self, micros: u64) {
        let secs = micros as f64 / 1e6;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.eval_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.eval_sum_us.fetch_add(micros, Ordering::Relaxed);
        self.eval_count.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters and the histogram in Prometheus text format; `gauges` come from the caller.
    pub fn render(&self, gauges: &[(&str, &str, String, f64)]) -> String {
        let mut out = String::new();
        let counters = self.counters.lock().expect("metrics").clone();
        let set_gauges = self.gauges.lock().expect("metrics").clone();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((n, labels), v) in &counters {
                if n == name {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
            for ((n, labels), v) in &set_gauges {
                if n == name {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
        }
        let _ = writeln!(out, "# HELP rollgate_evaluation_seconds Time to run the policy rules on one event.\n# TYPE rollgate_evaluation_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "rollgate_evaluation_seconds_bucket{{le=\"{b}\"}} {}", self.eval_buckets[i].load(Ordering::Relaxed));
        }
        let count = self.eval_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "rollgate_evaluation_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "rollgate_evaluation_seconds_sum {}", self.eval_sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "rollgate_evaluation_seconds_count {count}");
        for (name, help, labels, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {value}");
        }
        out
    }
}

//! What a run measured: latencies in microseconds, answers by status, and the generator's own
//! CPU time (getrusage), so a reader can tell whether the tool or the server was the limit.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Latency samples in microseconds; a run keeps at most a few hundred thousand, so a sorted
/// vector gives exact percentiles for 4 bytes a sample.
#[derive(Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn with_capacity(n: usize) -> Self {
        Latencies(Vec::with_capacity(n))
    }

    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// p50, p90, p99, p99.9 and max in milliseconds (null when there are no samples).
    pub fn summary(&mut self) -> Value {
        self.0.sort_unstable();
        let ms = |q: f64| -> Value {
            if self.0.is_empty() {
                return Value::Null;
            }
            let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
            json!(round3(self.0[rank - 1] as f64 / 1000.0))
        };
        json!({ "p50": ms(0.50), "p90": ms(0.90), "p99": ms(0.99), "p999": ms(0.999), "max": ms(1.0) })
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Answers by outcome: `202 queued`, `202 duplicate`, other statuses, transport errors.
#[derive(Default)]
pub struct Outcomes {
    pub queued: u64,
    pub duplicate: u64,
    /// 202 `ignored`: rollgate did not take the event (wrong fixture for a benchmark).
    pub ignored: u64,
    /// Other HTTP statuses, by code.
    pub other: BTreeMap<u16, u64>,
    /// Connection refused/reset, or no answer before the run's deadline.
    pub transport: u64,
}

impl Outcomes {
    pub fn accepted(&self) -> u64 {
        self.queued + self.duplicate
    }

    pub fn errors(&self) -> u64 {
        self.other.values().sum::<u64>() + self.transport + self.ignored
    }

    pub fn record(&mut self, status: u16, body: &[u8]) {
        if status == 202 {
            // rollgate answers {"status":"queued"|"duplicate"|"ignored",...}; only these are cheap to tell apart.
            if contains(body, b"\"duplicate\"") {
                self.duplicate += 1;
            } else if contains(body, b"\"ignored\"") {
                self.ignored += 1;
            } else {
                self.queued += 1;
            }
        } else {
            *self.other.entry(status).or_default() += 1;
        }
    }

    pub fn to_json(&self) -> Value {
        let other: Map<String, Value> = self.other.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        json!({ "queued": self.queued, "duplicate": self.duplicate, "ignored": self.ignored, "other_status": other, "transport_errors": self.transport })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// User + system CPU time of this process so far.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The generator's CPU over a window, as a share of one core (100 = one core busy).
pub fn cpu_percent(cpu: Duration, wall: Duration) -> f64 {
    (cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9) * 1000.0).round() / 10.0
}

/// `--label k=v` pairs echoed into the summary so a driver can join lines later.
pub fn labels(pairs: &[String]) -> Map<String, Value> {
    pairs
        .iter()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut l = Latencies::default();
        for us in 1..=1000u64 {
            l.push(Duration::from_micros(us * 10));
        }
        let s = l.summary();
        assert_eq!(s["p50"], 5.0);
        assert_eq!(s["p99"], 9.9);
        assert_eq!(s["max"], 10.0);
    }

    #[test]
    fn duplicates_are_told_from_queued() {
        let mut o = Outcomes::default();
        o.record(202, br#"{"status":"queued","delivery":"a"}"#);
        o.record(202, br#"{"status":"duplicate","delivery":"a"}"#);
        o.record(401, b"{}");
        assert_eq!((o.queued, o.duplicate, o.errors()), (1, 1, 1));
    }
}

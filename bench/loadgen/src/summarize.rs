//! `summarize RESULTS.jsonl`: the raw lines of a bench/ingest.sh run (one per measurement and
//! repetition from the generator, one per repetition from the driver with the server's RSS and
//! CPU) as a Markdown table: the median of the repetitions, every repetition, the target.

use serde_json::{Map, Value};

/// (test label or `*` for every test, metric, JSON pointer into {"load": .., "server": ..}, scale, target)
const METRICS: &[(&str, &str, &str, f64, &str)] = &[
    ("max", "accepted deliveries/s (closed loop)", "/load/throughput_per_s", 1.0, "≥ 12,000 on SQLite"),
    ("max", "ack p50 ms (closed loop, informative)", "/load/ack_ms/p50", 1.0, ""),
    ("max", "errors (non-202 or transport)", "/load/errors", 1.0, "0"),
    ("max", "generator CPU, % of one core", "/load/loadgen_cpu_pct", 1.0, ""),
    ("max", "server CPU, % of one core (2 = 200)", "/server/cpu_pct", 1.0, ""),
    ("max", "server RSS at idle, MB", "/server/rss_idle_kb", 1.0 / 1024.0, ""),
    ("max", "server RSS max under load, MB", "/server/rss_max_kb", 1.0 / 1024.0, "< 50"),
    ("max", "events still in the inbox after the run", "/server/inbox_pending_after", 1.0, ""),
    ("rate", "deliveries/s sent on schedule", "/load/rate_achieved", 1.0, ""),
    ("rate", "202s per scheduled second (answers up to 10 s late count)", "/load/throughput_per_s", 1.0, "= the rate"),
    ("rate", "ack p50 ms", "/load/ack_ms/p50", 1.0, ""),
    ("rate", "ack p99 ms", "/load/ack_ms/p99", 1.0, "< 10 at 2,000/s"),
    ("rate", "ack max ms", "/load/ack_ms/max", 1.0, ""),
    ("rate", "generator lag p99 ms (its own lateness)", "/load/send_lag_ms/p99", 1.0, ""),
    ("rate", "errors (incl. unanswered 10 s after the end)", "/load/errors", 1.0, "0"),
    ("rate", "generator CPU, % of one core", "/load/loadgen_cpu_pct", 1.0, ""),
    ("rate", "server CPU, % of one core", "/server/cpu_pct", 1.0, ""),
    ("rate", "server RSS max under load, MB", "/server/rss_max_kb", 1.0 / 1024.0, "< 50"),
    ("effect", "delivery-to-last-call p50 ms", "/load/effect_ms/p50", 1.0, ""),
    ("effect", "delivery-to-last-call p99 ms", "/load/effect_ms/p99", 1.0, "< 50 at 200/s"),
    ("effect", "delivery-to-last-call max ms", "/load/effect_ms/max", 1.0, ""),
    ("effect", "deliveries without a tracker call", "/load/without_tracker_call", 1.0, "0"),
    ("effect", "tracker calls per delivery", "/load/tracker_calls_per_delivery", 1.0, ""),
    ("effect", "ack p99 ms", "/load/ack_ms/p99", 1.0, ""),
    ("effect", "errors", "/load/errors", 1.0, "0"),
    ("effect", "server RSS at idle, MB", "/server/rss_idle_kb", 1.0 / 1024.0, ""),
    ("effect", "server RSS max under load, MB", "/server/rss_max_kb", 1.0 / 1024.0, "< 50"),
    ("*", "machine load average (1 min) before the run", "/server/loadavg_before", 1.0, ""),
];

fn label(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// (store, test) in order of first appearance -> runs in order -> {"load": .., "server": ..}.
type Group = ((String, String), Vec<(String, Map<String, Value>)>);

pub fn table(text: &str) -> Result<String, String> {
    let mut groups: Vec<Group> = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let key = (label(&v, "store"), label(&v, "test"));
        let run = label(&v, "run");
        let part = if v["kind"] == "server" { "server" } else { "load" };
        let g = match groups.iter().position(|(k, _)| *k == key) {
            Some(i) => &mut groups[i].1,
            None => {
                groups.push((key, Vec::new()));
                &mut groups.last_mut().expect("just pushed").1
            }
        };
        let r = match g.iter().position(|(r, _)| *r == run) {
            Some(i) => &mut g[i].1,
            None => {
                g.push((run, Map::new()));
                &mut g.last_mut().expect("just pushed").1
            }
        };
        r.insert(part.to_string(), v);
    }
    let mut out = String::from("| store | measurement | metric | median | runs | target |\n|---|---|---|---:|---|---|\n");
    for ((store, test), runs) in &groups {
        let what = runs.iter().find_map(|(_, r)| r.get("load")).map(describe).unwrap_or_else(|| test.clone());
        let kind = test.split(|c: char| c.is_ascii_digit()).next().unwrap_or(test);
        for (_, metric, pointer, scale, target) in METRICS.iter().filter(|m| m.0 == kind || m.0 == "*") {
            let values: Vec<Option<f64>> = runs
                .iter()
                .map(|(_, r)| Value::Object(r.clone()).pointer(pointer).and_then(Value::as_f64).map(|x| x * scale))
                .collect();
            if values.iter().all(Option::is_none) {
                continue;
            }
            let shown: Vec<String> = values.iter().map(|v| v.map(fmt).unwrap_or_else(|| "–".into())).collect();
            let target = if store == "sink" { "" } else { target };
            out.push_str(&format!("| {store} | {what} | {metric} | {} | {} | {target} |\n", median(&values).map(fmt).unwrap_or_else(|| "–".into()), shown.join(" / ")));
        }
    }
    Ok(out)
}

fn describe(load: &Value) -> String {
    let n = |k: &str| load[k].as_f64().map(fmt).unwrap_or_else(|| "?".into());
    match (load["kind"].as_str(), load["mode"].as_str()) {
        (Some("ingest"), Some("max")) => format!("max, {} conns, {} s", n("connections"), n("duration_s")),
        (Some("ingest"), Some("rate")) => format!("{}/s open loop, {} s", n("rate_target"), n("duration_s")),
        (Some("effect"), _) => format!("effect at {}/s, {} s", n("rate_target"), n("duration_s")),
        _ => "?".into(),
    }
}

fn median(values: &[Option<f64>]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().flatten().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 })
}

fn fmt(x: f64) -> String {
    if x.abs() >= 1000.0 {
        let s = format!("{:.0}", x);
        let (sign, digits) = s.split_at(if s.starts_with('-') { 1 } else { 0 });
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{sign}{grouped}")
    } else if x.abs() >= 100.0 {
        format!("{:.0}", x)
    } else {
        // Two decimals at most, no trailing zeros: 28, 27.3, 0.95.
        format!("{:.2}", x).trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_three_runs_with_server_figures() {
        let text = [
            r#"{"kind":"ingest","mode":"max","connections":32,"duration_s":20,"throughput_per_s":9000,"errors":0,"store":"sqlite","test":"max","run":"1"}"#,
            r#"{"kind":"server","rss_idle_kb":20480,"rss_max_kb":40960,"store":"sqlite","test":"max","run":"1"}"#,
            r#"{"kind":"ingest","mode":"max","connections":32,"duration_s":20,"throughput_per_s":12500,"errors":0,"store":"sqlite","test":"max","run":"2"}"#,
            r#"{"kind":"ingest","mode":"max","connections":32,"duration_s":20,"throughput_per_s":11000,"errors":2,"store":"sqlite","test":"max","run":"3"}"#,
        ]
        .join("\n");
        let t = table(&text).unwrap();
        assert!(t.contains("| sqlite | max, 32 conns, 20 s | accepted deliveries/s (closed loop) | 11,000 | 9,000 / 12,500 / 11,000 |"), "{t}");
        assert!(t.contains("| server RSS max under load, MB | 40 | 40 / – / – |"), "{t}");
    }
}

//! The report as Markdown: a table of the month, a Mermaid chart per metric (GitHub renders
//! them), and the items behind every miss, linked.

use super::{MetricValue, Month};
use crate::model::IssueKey;
use std::collections::BTreeMap;
use std::fmt::Write;

fn number(v: f64, unit: &str) -> String {
    match unit {
        "%" => format!("{v:.1}%"),
        "days" => format!("{v:.1} days"),
        _ => format!("{v:.0}"),
    }
}

/// `urls` links an issue key to its page (issues without one are shown as keys).
pub fn markdown(month: Month, releases: usize, metrics: &[MetricValue], urls: &BTreeMap<IssueKey, String>, zone: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Rollout metrics — {month}\n");
    let _ = writeln!(out, "{releases} release(s) in {month} ({zone}). Targets from the playbook (SOP §11); trend over the last {} months.\n", metrics.first().map_or(0, |m| m.trend.len()));
    let _ = writeln!(out, "| | Metric | Target | {month} | |\n|---|---|---|---|---|");
    for m in metrics {
        let value = m.trend.last().and_then(|(_, v)| *v).map(|v| number(v, m.unit)).unwrap_or_else(|| "no releases".into());
        let mark = match m.pass {
            Some(true) => "✅ pass",
            Some(false) => "❌ miss",
            None => "—",
        };
        let _ = writeln!(out, "| {} | {} | {} | {} | {} |", m.id, m.name, m.target, value, mark);
    }
    let _ = writeln!(out, "\n### Trend\n");
    for m in metrics {
        let months: Vec<String> = m.trend.iter().map(|(mo, _)| format!("\"{mo}\"")).collect();
        let values: Vec<String> = m.trend.iter().map(|(_, v)| format!("{:.1}", v.unwrap_or(0.0))).collect();
        let max = m.trend.iter().filter_map(|(_, v)| *v).fold(0.0f64, f64::max);
        let top = if m.unit == "%" { 100.0 } else { (max * 1.25).max(1.0).ceil() };
        let _ = writeln!(
            out,
            "```mermaid\nxychart-beta\n    title \"{} — {}\"\n    x-axis [{}]\n    y-axis \"{}\" 0 --> {top}\n    line [{}]\n```\n",
            m.id,
            m.name.replace('"', "'"),
            months.join(", "),
            if m.unit.is_empty() { "count" } else { m.unit },
            values.join(", ")
        );
    }
    let missed: Vec<&MetricValue> = metrics.iter().filter(|m| !m.misses.is_empty()).collect();
    if !missed.is_empty() {
        let _ = writeln!(out, "### Items behind the misses\n");
        for m in missed {
            let _ = writeln!(out, "**{} — {}**\n", m.id, m.name);
            for (k, why) in &m.misses {
                let link = urls.get(k).map(|u| format!("[{}]({u})", k.short())).unwrap_or_else(|| k.short());
                let _ = writeln!(out, "- {link}: {why}");
            }
            let _ = writeln!(out);
        }
    }
    out
}

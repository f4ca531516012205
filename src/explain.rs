//! `rollgate explain`: what rollgate decided on one issue, and why, from the audit trail.

use crate::model::IssueKey;
use crate::store::prelude::*;
use std::fmt::Write;

pub async fn explain(store: &dyn Store, key: &IssueKey) -> anyhow::Result<String> {
    let audit = store.audit(key).await?;
    let history = store.history(key).await?;
    let mut out = String::new();
    if audit.is_empty() && history.is_empty() {
        writeln!(out, "{}: rollgate has processed no event for this issue.", key.short())?;
        return Ok(out);
    }
    writeln!(out, "{} — {} event(s) processed", key.short(), audit.len())?;
    for a in &audit {
        writeln!(
            out,
            "\n{}  {}  delivery {}  policy {}{}\n  timings: eval {} µs, apply {} ms, total {} ms (attempt {})",
            a.processed_at.format("%Y-%m-%d %H:%M:%S UTC"),
            a.kind,
            a.delivery,
            a.policy_version,
            if a.dry_run { "  [dry run]" } else { "" },
            a.eval_us,
            a.apply_ms,
            a.total_ms,
            a.attempt
        )?;
        let why = a.decision.get("why").and_then(|w| w.as_array()).cloned().unwrap_or_default();
        if why.is_empty() {
            writeln!(out, "  why: no rule asked for a change")?;
        }
        for w in why {
            writeln!(out, "  why: {}", w.as_str().unwrap_or_default())?;
        }
        let effects = a.effects.as_array().cloned().unwrap_or_default();
        if effects.is_empty() {
            writeln!(out, "  effects: none (the issue already matched)")?;
        }
        for e in effects {
            let what = match e.get("kind").and_then(|k| k.as_str()) {
                Some("add_labels") => format!("add labels {}", e["labels"]),
                Some("remove_label") => format!("remove label {}", e["label"]),
                Some("upsert_comment") => format!("comment {}", e["tag"]),
                _ => e.to_string(),
            };
            writeln!(out, "  effect: {what} — {}", e.get("result").and_then(|r| r.as_str()).unwrap_or("?"))?;
        }
    }
    if !history.is_empty() {
        writeln!(out, "\nhistory:")?;
        for h in history {
            // A refused change never took effect: shown, and said so.
            let refused = h.refused.as_deref().map(|r| format!("  REFUSED ({r}), put back")).unwrap_or_default();
            let by = if h.actor.is_empty() { "?".to_string() } else { h.actor.clone() };
            writeln!(
                out,
                "  {}  {:<24} {} -> {}  by {} ({}){refused}",
                h.at.format("%Y-%m-%d %H:%M:%S"),
                h.field,
                h.from.as_deref().unwrap_or("-"),
                h.to.as_deref().unwrap_or("-"),
                by,
                h.source.as_str()
            )?;
        }
    }
    Ok(out)
}

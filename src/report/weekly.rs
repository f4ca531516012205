//! The weekly issues: R19 the decisions log (every decision of the week, who, when, what, and
//! the items that missed Friday) and R20 the Tuesday sync agenda (planning, build, rollout).
//! Built from the recorded history, with the tracker's times, in the configured zone.

use crate::clock::Calendar;
use crate::model::IssueKey;
use crate::policy::people_text::inline;
use crate::store::prelude::*;
use crate::model::HistoryEntry;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Monday of the week of `d`.
pub fn monday(d: NaiveDate) -> NaiveDate {
    d - Duration::days(d.weekday().num_days_from_monday() as i64)
}

pub fn iso_week(d: NaiveDate) -> String {
    let w = d.iso_week();
    format!("{}-W{:02}", w.year(), w.week())
}

struct Data {
    by_issue: BTreeMap<IssueKey, Vec<HistoryEntry>>,
    pages: BTreeMap<IssueKey, (String, String)>,
}

async fn load(store: &dyn Store, fields: &[&str], since: DateTime<Utc>) -> anyhow::Result<Data> {
    let mut by_issue: BTreeMap<IssueKey, Vec<HistoryEntry>> = BTreeMap::new();
    for (k, h) in store.history_of(fields, since).await? {
        by_issue.entry(k).or_default().push(h);
    }
    for h in by_issue.values_mut() {
        h.sort_by_key(|e| e.at);
    }
    let pages = store.issues().await?.into_iter().map(|s| (s.key.clone(), (s.title, s.url))).collect();
    Ok(Data { by_issue, pages })
}

impl Data {
    /// The item's key (a link to it) and its title, which a person wrote: neutralised like
    /// every person's text in a bot comment (one line, no Markdown or HTML, no mention).
    fn link(&self, k: &IssueKey) -> String {
        match self.pages.get(k) {
            Some((title, url)) if !url.is_empty() => format!("[{}]({url}) {}", k.short(), inline(title)),
            Some((title, _)) => format!("{} {}", k.short(), inline(title)),
            None => k.short(),
        }
    }
    fn latest<'a>(&'a self, k: &IssueKey, field: &str, until: DateTime<Utc>) -> Option<&'a str> {
        self.by_issue.get(k)?.iter().rev().find(|e| e.field == field && e.at <= until).and_then(|e| e.to.as_deref())
    }
    fn changed_in<'a>(&'a self, field: &'a str, value: Option<&'a str>, from: DateTime<Utc>, to: DateTime<Utc>) -> impl Iterator<Item = (&'a IssueKey, &'a HistoryEntry)> + 'a {
        self.by_issue.iter().flat_map(move |(k, h)| {
            h.iter().filter(move |e| e.field == field && e.at >= from && e.at < to && e.to.is_some() && value.is_none_or(|v| e.to.as_deref() == Some(v))).map(move |e| (k, e))
        })
    }
}

/// R19: the decisions log of the week containing `day`.
pub async fn decisions_log(store: &dyn Store, cal: &Calendar, day: NaiveDate) -> anyhow::Result<(String, String)> {
    let mon = monday(day);
    let (from, to) = (cal.at_local(mon, NaiveTime::MIN), cal.at_local(mon + Duration::days(7), NaiveTime::MIN));
    let fields = ["decision", "decision.*", "flags.decision-overdue"];
    let d = load(store, &fields, from - Duration::days(1)).await?;
    let week = iso_week(mon);
    let mut out = String::new();
    let _ = writeln!(out, "## Decisions log — {week}\n\n{} to {} ({}). Every decision recorded this week (rule R19).\n", mon, mon + Duration::days(6), cal.tz.name());
    let _ = writeln!(out, "| Item | Decision | By | When | Details |\n|---|---|---|---|---|");
    let mut rows = 0;
    for (k, e) in d.changed_in("decision", None, from, to) {
        let soon = e.at + Duration::seconds(1);
        // The values are command arguments a person typed (a reason, a trigger).
        let detail = |f: &str| d.latest(k, f, soon).map(|v| format!("{}: {}", f.trim_start_matches("decision."), inline(v))).unwrap_or_default();
        let details: Vec<String> = match e.to.as_deref() {
            Some("accept") => vec![detail("decision.sprint"), detail("decision.dev-release")],
            Some("decline") => vec![detail("decision.reason")],
            Some("park") => vec![detail("decision.revisit"), detail("decision.trigger")],
            _ => vec![],
        };
        let by = d.latest(k, "decision.by", soon).unwrap_or(&e.actor);
        let when = e.at.with_timezone(&cal.tz).format("%a %d %b %H:%M");
        let details: Vec<String> = details.into_iter().filter(|s| !s.is_empty()).collect();
        let _ = writeln!(out, "| {} | {} | @{by} | {when} | {} |", d.link(k), e.to.as_deref().unwrap_or(""), details.join(", "));
        rows += 1;
    }
    if rows == 0 {
        let _ = writeln!(out, "| — | no decision yet this week | | | |");
    }
    let overdue: Vec<String> = d.changed_in("flags.decision-overdue", Some("on"), from, to).map(|(k, _)| format!("- {}", d.link(k))).collect();
    if !overdue.is_empty() {
        let _ = writeln!(out, "\n### No decision by Friday end of day\n\n{}", overdue.join("\n"));
    }
    Ok((format!("Decisions log — {week}"), out))
}

/// R20: the agenda of the Tuesday sync of the week containing `day`.
pub async fn tuesday_agenda(store: &dyn Store, cal: &Calendar, day: NaiveDate) -> anyhow::Result<(String, String)> {
    let tue = monday(day) + Duration::days(1);
    let now = cal.at_local(tue, NaiveTime::from_hms_opt(9, 0, 0).expect("09:00"));
    let last = now - Duration::days(7);
    let fields = ["status", "rollout", "decision", "decision.*", "flags.escalated", "stabilisation.until"];
    let d = load(store, &fields, now - Duration::days(400)).await?;
    let list = |items: Vec<String>| if items.is_empty() { "- none".to_string() } else { items.join("\n") };
    let current = |k: &IssueKey| d.latest(k, "status", now).unwrap_or("");
    let keys: Vec<&IssueKey> = d.by_issue.keys().collect();
    let week = iso_week(tue);
    let mut out = String::new();
    let _ = writeln!(out, "## Tuesday sync — {week} ({tue})\n\nPM ↔ PMO agenda by phase (SOP §8, rule R20), as of {} {}.\n", now.with_timezone(&cal.tz).format("%a %d %b %H:%M"), cal.tz.name());

    let new: Vec<String> = d.changed_in("status", Some("planning"), last, now).map(|(k, _)| format!("- {}", d.link(k))).collect();
    let escalated: Vec<String> = d.changed_in("flags.escalated", Some("on"), last, now).map(|(k, _)| format!("- {}", d.link(k))).collect();
    let decided: Vec<String> = d.changed_in("decision", None, last, now).map(|(k, e)| format!("- {} — {}", d.link(k), e.to.as_deref().unwrap_or(""))).collect();
    let _ = writeln!(out, "### 1. Planning\n\n**New since last Tuesday**\n{}\n\n**Escalated**\n{}\n\n**Decided or parked**\n{}\n", list(new), list(escalated), list(decided));

    let target = |k: &IssueKey| d.latest(k, "decision.dev-release", now).and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok());
    let in_dev: Vec<String> = keys.iter().filter(|k| current(k) == "in-dev").map(|k| format!("- {}", d.link(k))).collect();
    let early = ["planning", "decided", "in-dev"];
    let slipping: Vec<String> = keys
        .iter()
        .filter(|k| early.contains(&current(k)) && target(k).is_some_and(|t| t < tue))
        .map(|k| format!("- {} — target dev release {} passed", d.link(k), target(k).map(|t| t.to_string()).unwrap_or_default()))
        .collect();
    let finishing: Vec<String> = keys
        .iter()
        .filter(|k| early.contains(&current(k)) && target(k).is_some_and(|t| t >= tue && t < tue + Duration::days(7)))
        .map(|k| format!("- {} — target dev release {}", d.link(k), target(k).map(|t| t.to_string()).unwrap_or_default()))
        .collect();
    let _ = writeln!(out, "### 2. Dev build\n\n**In dev**\n{}\n\n**Slipping past the target dev release**\n{}\n\n**Finishing this week**\n{}\n", list(in_dev), list(slipping), list(finishing));

    let released_today: Vec<String> = d
        .changed_in("status", Some("dev-released"), cal.at_local(tue, NaiveTime::MIN), cal.at_local(tue + Duration::days(1), NaiveTime::MIN))
        .map(|(k, _)| format!("- {} — rollout type {}; comms plan: see its checklist", d.link(k), d.latest(k, "rollout", now + Duration::days(1)).unwrap_or("not set")))
        .collect();
    let rolling: Vec<String> = keys.iter().filter(|k| current(k) == "in-rollout").map(|k| format!("- {}", d.link(k))).collect();
    let stabilising: Vec<String> = keys
        .iter()
        .filter(|k| d.latest(k, "stabilisation.until", now + Duration::days(7)).and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()).is_some_and(|u| u >= tue))
        .map(|k| format!("- {}", d.link(k)))
        .collect();
    let _ = writeln!(out, "### 3. Rollout\n\n**Dev-released this Tuesday**\n{}\n\n**In rollout**\n{}\n\n**In stabilisation**\n{}", list(released_today), list(rolling), list(stabilising));
    Ok((format!("Tuesday sync — {week}"), out))
}

//! The monthly metrics report (M1–M9): computed from the recorded history, with names and
//! targets from `policies/metrics.toml`, rendered as Markdown with Mermaid trend charts.

mod render;
pub mod weekly;

pub use render::markdown;

use crate::clock::Calendar;
use crate::model::IssueKey;
use crate::store::prelude::*;
use crate::model::HistoryEntry;
use anyhow::Context;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Months shown in the trend, the report's own included.
pub const TREND_MONTHS: usize = 6;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub struct MetricsFile {
    pub m1: Share,
    pub m2: Share,
    pub m3: Share,
    pub m4: Duration_,
    pub m5: Duration_,
    pub m6: Duration_,
    pub m7: Duration_,
    pub m8: Escalations,
    pub m9: Share,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Share {
    pub name: String,
    pub target: f64,
    #[serde(default)]
    pub record: Option<String>,
    #[serde(default)]
    pub late_record: Option<String>,
    #[serde(default)]
    pub flag: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Duration_ {
    pub name: String,
    pub rollout: String,
    #[serde(default)]
    pub min_days: Option<f64>,
    pub max_days: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Escalations {
    pub name: String,
    pub flag: String,
    pub window_days: i64,
}

impl MetricsFile {
    pub fn load(policies: &Path) -> anyhow::Result<Self> {
        let path = policies.join("metrics.toml");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{} is not a metrics file", path.display()))
    }
}

/// A calendar month, `2026-11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month(pub i32, pub u32);

impl std::str::FromStr for Month {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Month> {
        let d = NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").map_err(|_| anyhow::anyhow!("{s:?} is not a month like 2026-11"))?;
        Ok(Month(d.year(), d.month()))
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:02}", self.0, self.1)
    }
}

impl Month {
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.0, self.1, 1).expect("a valid month")
    }
    pub fn prev(self) -> Month {
        if self.1 == 1 { Month(self.0 - 1, 12) } else { Month(self.0, self.1 - 1) }
    }
    pub fn next(self) -> Month {
        if self.1 == 12 { Month(self.0 + 1, 1) } else { Month(self.0, self.1 + 1) }
    }
    pub fn of(d: NaiveDate) -> Month {
        Month(d.year(), d.month())
    }
}

/// One release: an item reaching `released`, with what the metrics need to know of it.
#[derive(Debug, Clone)]
pub struct Release {
    pub issue: IssueKey,
    pub at: DateTime<Utc>,
    pub rollout: Option<String>,
    pub business_days: Option<i64>,
    pub late_type: bool,
    pub artifacts_complete: bool,
    pub piloted: bool,
    pub escalations: usize,
    pub rolled_back: bool,
}

/// The computed metrics of one month.
#[derive(Debug, Clone)]
pub struct MonthFigures {
    pub month: Month,
    pub releases: Vec<Release>,
}

/// The percentage of `items` that `hit` counts; None without items.
fn share(items: &[&Release], hit: impl Fn(&Release) -> bool) -> Option<f64> {
    (!items.is_empty()).then(|| 100.0 * items.iter().filter(|r| hit(r)).count() as f64 / items.len() as f64)
}

/// A metric's value this month, whether it met its target, and the items behind a miss.
#[derive(Debug, Clone)]
pub struct MetricValue {
    pub id: &'static str,
    pub name: String,
    pub target: String,
    pub unit: &'static str,
    /// Per month of the trend, oldest first; None where no release counts.
    pub trend: Vec<(Month, Option<f64>)>,
    pub pass: Option<bool>,
    pub misses: Vec<(IssueKey, String)>,
}

impl MonthFigures {
    fn all(&self) -> Vec<&Release> {
        self.releases.iter().collect()
    }
    fn typed(&self, pred: impl Fn(u32) -> bool) -> Vec<&Release> {
        self.releases.iter().filter(|r| r.rollout.as_deref().and_then(|t| t.parse().ok()).is_some_and(&pred)).collect()
    }
}

/// M1–M9 for `month`, with the months before it for the trend.
pub fn metrics(cfg: &MetricsFile, months: &[MonthFigures]) -> Vec<MetricValue> {
    let this = months.last().expect("at least the report's month");
    let mut out = Vec::new();
    // A share metric: the percentage of `pick`'s releases that `hit` counts, to stay at or
    // above the target (M1-M3) or below it (`below`, M9). A miss lists the releases on the
    // wrong side: not hit for "at least", hit for "below".
    let mut shares = |id: &'static str, m: &Share, pick: &dyn Fn(&MonthFigures) -> Vec<&Release>, hit: &dyn Fn(&Release) -> bool, below: bool, why: &str| {
        let trend: Vec<_> = months.iter().map(|f| (f.month, share(&pick(f), hit))).collect();
        let pass = trend.last().and_then(|(_, v)| *v).map(|v| if below { v < m.target } else { v >= m.target });
        let misses = if pass == Some(false) {
            pick(this).into_iter().filter(|r| hit(r) == below).map(|r| (r.issue.clone(), why.to_string())).collect()
        } else {
            Vec::new()
        };
        let target = if below { format!("< {}%", m.target) } else { format!("≥ {}%", m.target) };
        out.push(MetricValue { id, name: m.name.clone(), target, unit: "%", trend, pass, misses });
    };
    shares("M1", &cfg.m1, &|f| f.all(), &|r| !r.late_type, false, "rollout type assigned after planning");
    shares("M2", &cfg.m2, &|f| f.typed(|t| t >= 3), &|r| r.artifacts_complete, false, "released without every required artifact");
    shares("M3", &cfg.m3, &|f| f.typed(|t| t == 4), &|r| r.piloted, false, "no pilot retro recorded");
    shares("M9", &cfg.m9, &|f| f.all(), &|r| r.rolled_back, true, "rolled back");
    for (id, m) in [("M4", &cfg.m4), ("M5", &cfg.m5), ("M6", &cfg.m6), ("M7", &cfg.m7)] {
        let days = |f: &MonthFigures| -> Vec<(IssueKey, i64)> {
            f.releases.iter().filter(|r| r.rollout.as_deref() == Some(&m.rollout)).filter_map(|r| r.business_days.map(|d| (r.issue.clone(), d))).collect()
        };
        let avg = |v: &[(IssueKey, i64)]| (!v.is_empty()).then(|| v.iter().map(|(_, d)| *d as f64).sum::<f64>() / v.len() as f64);
        let trend: Vec<_> = months.iter().map(|f| (f.month, avg(&days(f)))).collect();
        let now = days(this);
        let value = avg(&now);
        let ok = |d: f64| d <= m.max_days && m.min_days.is_none_or(|min| d >= min);
        let pass = value.map(ok);
        let misses = if pass == Some(false) {
            now.iter().filter(|(_, d)| !ok(*d as f64)).map(|(k, d)| (k.clone(), format!("{d} business days"))).collect()
        } else {
            Vec::new()
        };
        let target = match m.min_days {
            Some(min) => format!("{min}–{} days", m.max_days),
            None => format!("≤ {} days", m.max_days),
        };
        out.push(MetricValue { id, name: m.name.clone(), target, unit: "days", trend, pass, misses });
    }
    // M8: escalations in the window after release, trending down against the months before.
    let trend: Vec<_> = months.iter().map(|f| (f.month, Some(f.releases.iter().map(|r| r.escalations).sum::<usize>() as f64))).collect();
    let now = trend.last().and_then(|(_, v)| *v).unwrap_or(0.0);
    let before: Vec<f64> = trend[..trend.len() - 1].iter().filter_map(|(_, v)| *v).collect();
    let baseline = (!before.is_empty()).then(|| before.iter().sum::<f64>() / before.len() as f64);
    let pass = Some(match baseline {
        Some(b) => now <= b && (now < b || now == 0.0),
        None => now == 0.0,
    });
    let misses = if pass == Some(false) {
        this.releases.iter().filter(|r| r.escalations > 0).map(|r| (r.issue.clone(), format!("{} escalation(s)", r.escalations))).collect()
    } else {
        Vec::new()
    };
    let target = match baseline {
        Some(b) => format!("trending down (< {b:.1}, the average before)"),
        None => "trending down".into(),
    };
    out.push(MetricValue { id: "M8", name: cfg.m8.name.clone(), target, unit: "", trend, pass, misses });
    out.sort_by_key(|m| m.id);
    out
}

/// Reads the history and builds each month's releases, from `months` months before `month`.
pub async fn figures(store: &dyn Store, calendar: &Calendar, cfg: &MetricsFile, month: Month) -> anyhow::Result<Vec<MonthFigures>> {
    let mut first = month;
    for _ in 1..TREND_MONTHS {
        first = first.prev();
    }
    let start = calendar.at_local(first.first_day(), NaiveTime::MIN);
    let end = calendar.at_local(month.next().first_day(), NaiveTime::MIN);
    // Dev releases and records can precede the first release counted by weeks.
    let since = start - Duration::days(120);
    let late = cfg.m1.late_record.clone().unwrap_or_else(|| "rollout.assigned-late".into());
    let artifacts = cfg.m2.record.clone().unwrap_or_else(|| "release.artifacts".into());
    let pilot = cfg.m3.record.clone().unwrap_or_else(|| "pilot.retro".into());
    let rollback = cfg.m9.flag.clone().unwrap_or_else(|| "flags.rolled-back".into());
    let fields = ["rollout", "release.rollout", late.as_str(), artifacts.as_str(), pilot.as_str(), cfg.m8.flag.as_str(), rollback.as_str()];
    let rows = store.metric_rows(&fields, &["dev-released", "released"], since).await?;
    let mut by_issue: std::collections::HashMap<String, Vec<HistoryEntry>> = std::collections::HashMap::new();
    for r in rows {
        let at = DateTime::from_timestamp_millis(r.at_ms).unwrap_or_default();
        let entry = HistoryEntry { at, field: r.field, from: None, to: r.to, actor: String::new(), source: crate::model::Source::Tracker, refused: None };
        by_issue.entry(r.issue).or_default().push(entry);
    }
    let mut out: Vec<MonthFigures> = Vec::new();
    let mut m = first;
    loop {
        out.push(MonthFigures { month: m, releases: Vec::new() });
        if m == month {
            break;
        }
        m = m.next();
    }
    for (issue, mut h) in by_issue {
        if !h.iter().any(|e| e.field == "status" && e.to.as_deref() == Some("released") && e.at >= start && e.at < end) {
            continue;
        }
        let issue: IssueKey = issue.parse()?;
        h.sort_by_key(|e| e.at);
        for (i, e) in h.iter().enumerate() {
            if e.field != "status" || e.to.as_deref() != Some("released") || e.at < start || e.at >= end {
                continue;
            }
            // Records written with the release (same instant) belong to it.
            let upto = h.partition_point(|x| x.at <= e.at).max(i + 1);
            let before = &h[..upto];
            let latest = |field: &str| before.iter().rev().find(|x| x.field == field).and_then(|x| x.to.clone());
            let rollout = latest("release.rollout").filter(|r| !r.is_empty()).or_else(|| latest("rollout"));
            let dev = before.iter().rev().find(|x| x.field == "status" && x.to.as_deref() == Some("dev-released"));
            let window_end = e.at + Duration::days(cfg.m8.window_days);
            let release = Release {
                issue: issue.clone(),
                at: e.at,
                rollout,
                business_days: dev.map(|d| calendar.business_days_between(calendar.local_date(d.at), calendar.local_date(e.at))),
                late_type: before.iter().any(|x| x.field == late),
                artifacts_complete: latest(&artifacts).as_deref() == Some("complete"),
                piloted: before.iter().any(|x| x.field == pilot && x.to.as_deref() == Some("go")),
                escalations: h.iter().filter(|x| x.field == cfg.m8.flag && x.to.is_some() && x.at >= e.at && x.at <= window_end).count(),
                rolled_back: h.iter().any(|x| x.field == rollback && x.to.is_some() && x.at <= window_end),
            };
            let local = Month::of(calendar.local_date(e.at));
            if let Some(f) = out.iter_mut().find(|f| f.month == local) {
                f.releases.push(release);
            }
        }
    }
    Ok(out)
}

/// The title and Markdown body of `month`'s report.
pub async fn monthly(store: &dyn Store, calendar: &Calendar, policies: &Path, month: Month) -> anyhow::Result<(String, String)> {
    let cfg = MetricsFile::load(policies)?;
    let months = figures(store, calendar, &cfg, month).await?;
    let values = metrics(&cfg, &months);
    let mut urls = BTreeMap::new();
    for v in &values {
        for (k, _) in &v.misses {
            if let Some(state) = store.issue_state(k).await? {
                urls.insert(k.clone(), state.snapshot.url);
            }
        }
    }
    let releases = months.last().map_or(0, |m| m.releases.len());
    Ok((format!("Rollout metrics — {month}"), markdown(month, releases, &values, &urls, calendar.tz.name())))
}

/// The label every issue rollgate files carries.
const REPORT_LABEL: &str = "rollgate-report";

/// Files a report as a new issue in the reports target (`owner/repo` or a Jira project),
/// unless an issue with this title is there already: a run whose create reached the tracker
/// but whose answer was lost failed, and its retry must not file a second issue; that one is
/// brought up to date instead. True with the key when the issue is new.
pub async fn post(trackers: &crate::process::Trackers, target: &str, title: &str, body: &str) -> anyhow::Result<(IssueKey, bool)> {
    let (tracker, kind) = if target.contains('/') { (trackers.github.as_ref(), "GitHub") } else { (trackers.jira.as_ref(), "Jira") };
    let tracker = tracker.ok_or_else(|| anyhow::anyhow!("no {kind} credentials to file the report in {target}"))?;
    if let Some(key) = tracker.find_issue(target, title, REPORT_LABEL).await? {
        tracing::info!(issue = %key.short(), %title, "the report issue was filed by an earlier attempt");
        tracker.update_issue_body(&key, body).await?;
        return Ok((key, false));
    }
    Ok((tracker.create_issue(target, title, body, &[REPORT_LABEL.to_string()]).await?, true))
}

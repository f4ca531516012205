//! The playbook's clocks through the real service, with a clock the test moves: timers fire
//! when due, once each, and act through the same policy -> plan -> effects path as events.

mod support;

use chrono::{DateTime, Utc};
use rollgate::clock::FixedClock;
use rollgate::schedule::sweep;
use serde_json::json;
use std::sync::Arc;
use support::{issue_event, Harness, REPO};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Moves the clock and runs the sweep as `serve` would; returns how many timers fired.
async fn at(h: &Harness, clock: &FixedClock, when: &str) -> usize {
    clock.set(t(when));
    let fired = sweep::fire_due(h.app.store.as_ref(), t(when)).await.unwrap();
    h.settle().await;
    fired
}

fn adds(h: &Harness, label: &str) -> usize {
    h.github.writes().iter().filter(|w| w.starts_with("ADD") && w.contains(label)).count()
}

#[tokio::test]
async fn a_type_3_item_not_released_by_the_next_tuesday_is_at_risk_then_breached_once_each() {
    let clock = Arc::new(FixedClock::new(t("2026-11-24T10:00:00Z")));
    let h = Harness::start_clocked(|_| {}, clock.clone()).await;
    let labels = ["type/enhancement", "lane/A", "rollout/3-demoed", "decision/accept", "status/in-dev"];
    h.github.seed(REPO, 30, &labels);
    let mut p = issue_event("issues.opened.json", 30, &labels, None);
    p["issue"]["updated_at"] = json!("2026-11-24T09:00:00Z");
    h.deliver("issues", "c-1", &p).await;
    h.settle().await;
    // Tuesday: dev released, with GitHub's label picker (two deliveries, one change).
    h.github.person("priya").swap_label(REPO, 30, "status/in-dev", "status/dev-released", support::fake_github::SwapOrder::RemoveFirst);
    h.settle().await;
    assert!(!h.github.labels(REPO, 30).contains(&"sla/at-risk".to_string()));

    // Friday: the release note and training material reminders, nothing about the SLA yet.
    at(&h, &clock, "2026-11-27T12:00:00Z").await;
    assert!(!h.github.labels(REPO, 30).contains(&"sla/at-risk".to_string()));
    let comments = h.github.issue(REPO, 30).comments;
    assert!(comments.iter().any(|c| c.body.contains("**Overdue:** Release note")), "R17 reminder");
    // Monday: 75% of the 5-day budget: at risk.
    at(&h, &clock, "2026-11-30T00:05:00Z").await;
    assert!(h.github.labels(REPO, 30).contains(&"sla/at-risk".to_string()));
    // Tuesday is the last day of the budget; Wednesday it is breached.
    at(&h, &clock, "2026-12-01T23:00:00Z").await;
    assert!(!h.github.labels(REPO, 30).contains(&"sla/breached".to_string()));
    at(&h, &clock, "2026-12-02T00:05:00Z").await;
    let labels = h.github.labels(REPO, 30);
    assert!(labels.contains(&"sla/breached".to_string()) && !labels.contains(&"sla/at-risk".to_string()), "{labels:?}");
    // Later sweeps repeat nothing.
    assert_eq!(at(&h, &clock, "2026-12-03T10:00:00Z").await, 0);
    assert_eq!(at(&h, &clock, "2026-12-10T10:00:00Z").await, 0);
    assert_eq!(adds(&h, "sla/at-risk"), 1);
    assert_eq!(adds(&h, "sla/breached"), 1);
    let comments = h.github.issue(REPO, 30).comments;
    assert_eq!(comments.iter().filter(|c| c.body.contains("SLA breached")).count(), 1);
    assert_eq!(comments.iter().filter(|c| c.body.contains("**Overdue:** Release note")).count(), 1, "one reminder, not one per sweep");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn an_undecided_item_is_due_thursday_and_overdue_after_friday_end_of_day_in_the_zone() {
    let clock = Arc::new(FixedClock::new(t("2026-11-24T05:00:00Z")));
    let h = Harness::start_clocked(|s| s.timezone = chrono_tz::Asia::Kolkata, clock.clone()).await;
    h.github.seed(REPO, 31, &["type/bug", "scope/single-client"]);
    let mut p = issue_event("issues.opened.json", 31, &["type/bug", "scope/single-client"], None);
    p["issue"]["updated_at"] = json!("2026-11-24T05:00:00Z");
    h.deliver("issues", "d-1", &p).await;
    h.settle().await;
    // Thursday 09:00 in Kolkata is 03:30 UTC.
    at(&h, &clock, "2026-11-26T03:29:00Z").await;
    assert!(!h.github.labels(REPO, 31).contains(&"decision/due".to_string()));
    at(&h, &clock, "2026-11-26T03:31:00Z").await;
    assert!(h.github.labels(REPO, 31).contains(&"decision/due".to_string()));
    // Friday 17:00 in Kolkata is 11:30 UTC.
    at(&h, &clock, "2026-11-27T11:29:00Z").await;
    assert!(!h.github.labels(REPO, 31).contains(&"decision/overdue".to_string()));
    at(&h, &clock, "2026-11-27T11:31:00Z").await;
    let labels = h.github.labels(REPO, 31);
    assert!(labels.contains(&"decision/overdue".to_string()) && !labels.contains(&"decision/due".to_string()), "{labels:?}");
    assert_eq!(h.github.issue(REPO, 31).comments.iter().filter(|c| c.body.contains("Decision overdue")).count(), 1);
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_restart_neither_skips_nor_repeats_a_timer() {
    let clock = Arc::new(FixedClock::new(t("2026-11-24T05:00:00Z")));
    let h = Harness::start_clocked(|_| {}, clock.clone()).await;
    h.github.seed(REPO, 32, &["type/bug"]);
    let mut p = issue_event("issues.opened.json", 32, &["type/bug"], None);
    p["issue"]["updated_at"] = json!("2026-11-24T05:00:00Z");
    h.deliver("issues", "r-1", &p).await;
    h.settle().await;
    let store = h.app.store.clone();
    // Two sweeps at once (two replicas, or a sweep and a restart): one firing.
    let now = t("2026-11-26T09:05:00Z");
    clock.set(now);
    let (a, b) = tokio::join!(sweep::fire_due(store.as_ref(), now), sweep::fire_due(store.as_ref(), now));
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    h.settle().await;
    assert_eq!(adds(&h, "decision/due"), 1);
}

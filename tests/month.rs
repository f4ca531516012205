//! A month reports the same live and by backfill. A small November goes through the real
//! service and the closed-loop fake GitHub, with tracker times set by the injected clock: a bug
//! whose rollout type the PM changes with `/rollout` once it is in development, an enhancement
//! whose early close is refused and reverted, their checklists ticked by the QA lead and the PM
//! as edits of rollgate's checklist comment, and a bug still in planning whose rollout type a
//! developer changes and rollgate puts back. The month's figures
//! (M1–M9 and the release list) come from the live store; then the same repository is
//! backfilled from the fake — its timeline and its comments' edit histories — into a fresh
//! store, and the figures must be the same, and the ones counted by hand below.

mod support;

use chrono::{DateTime, Utc};
use rollgate::clock::FixedClock;
use rollgate::model::IssueKey;
use rollgate::report::{figures, metrics, MetricsFile, Month, MonthFigures};
use rollgate::store::prelude::*;
use rollgate::tracker::github::GithubTracker;
use std::sync::Arc;
use support::fake_github::{FakeComment, SwapOrder, BOT_LOGIN, TOKEN};
use support::{Harness, REPO};

const PM: &str = "priya";
const QA: &str = "quinn";
const DEV: &str = "dev1";

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

struct Month_<'h> {
    h: &'h Harness,
    clock: &'h FixedClock,
}

impl Month_<'_> {
    /// The tracker's clock (and rollgate's) moves to `at`.
    fn at(&self, at: &str) {
        self.clock.set(t(at));
    }

    fn labels(&self, n: u64) -> Vec<String> {
        self.h.github.labels(REPO, n)
    }

    fn status(&self, n: u64) -> String {
        let s: Vec<String> = self.labels(n).into_iter().filter(|l| l.starts_with("status/")).collect();
        assert_eq!(s.len(), 1, "#{n}: exactly one status label: {s:?}");
        s[0].clone()
    }

    fn bot_comment(&self, n: u64, tag: &str) -> FakeComment {
        let marker = format!("<!-- rollgate:{tag} -->");
        let all: Vec<_> = self.h.github.issue(REPO, n).comments.into_iter().filter(|c| c.body.starts_with(&marker)).collect();
        assert_eq!(all.len(), 1, "#{n}: one {tag} comment, never two");
        all.into_iter().next().unwrap()
    }

    /// A person moves the status with GitHub's label picker (two deliveries, the removal first).
    async fn move_to(&self, n: u64, to: &str, who: &str) {
        let from = self.status(n);
        self.h.github.person(who).swap_label(REPO, n, &from, to, SwapOrder::RemoveFirst);
        self.h.quiet().await;
    }

    async fn comment(&self, n: u64, body: &str, who: &str) {
        self.h.github.person(who).comment(REPO, n, body);
        self.h.quiet().await;
    }

    async fn close(&self, n: u64, who: &str) {
        self.h.github.person(who).close(REPO, n, "completed");
        self.h.quiet().await;
    }

    /// `who` ticks these boxes of rollgate's checklist in one edit of its comment, as clicking
    /// them before saving does.
    async fn tick(&self, n: u64, boxes: &[&str], who: &str) {
        let c = self.bot_comment(n, "checklist");
        let mut body = c.body.clone();
        for b in boxes {
            let line = body.lines().find(|l| l.contains(&format!("<!-- box:{b} -->"))).unwrap_or_else(|| panic!("#{n}: no box {b} in\n{}", c.body)).to_string();
            assert!(line.contains("- [ ]"), "#{n}: box {b} is not open: {line}");
            body = body.replace(&line, &line.replacen("- [ ]", "- [x]", 1));
        }
        self.h.github.person(who).edit_comment(c.id, &body);
        self.h.quiet().await;
    }

    /// The boxes of rollgate's checklist still open.
    fn open_boxes(&self, n: u64) -> Vec<String> {
        let body = self.bot_comment(n, "checklist").body;
        body.lines()
            .filter(|l| l.contains("- [ ]"))
            .filter_map(|l| l.split("<!-- box:").nth(1).and_then(|r| r.split(" -->").next()).map(String::from))
            .collect()
    }
}

/// What a user reads in the month's report: each metric's value per month of the trend,
/// whether it passed, and the items behind a miss.
type Shown = Vec<(String, Vec<(String, Option<f64>)>, Option<bool>, Vec<(String, String)>)>;

fn shown(cfg: &MetricsFile, months: &[MonthFigures]) -> Shown {
    metrics(cfg, months)
        .into_iter()
        .map(|m| {
            let trend = m.trend.iter().map(|(mo, v)| (mo.to_string(), *v)).collect();
            let misses = m.misses.iter().map(|(k, why)| (k.short(), why.clone())).collect();
            (m.id.to_string(), trend, m.pass, misses)
        })
        .collect()
}

/// The month's releases: issue, when, rollout type, business days from dev release, rollout
/// type assigned late, full artifact set, piloted, escalations, rolled back.
type Releases = Vec<(String, String, Option<String>, Option<i64>, bool, bool, bool, usize, bool)>;

fn releases(months: &[MonthFigures]) -> Releases {
    let mut out: Releases = months
        .last()
        .unwrap()
        .releases
        .iter()
        .map(|r| (r.issue.short(), r.at.to_rfc3339(), r.rollout.clone(), r.business_days, r.late_type, r.artifacts_complete, r.piloted, r.escalations, r.rolled_back))
        .collect();
    out.sort();
    out
}

async fn november(store: &dyn Store, settings: &rollgate::config::Settings, cfg: &MetricsFile) -> (Shown, Releases) {
    let months = figures(store, &settings.calendar().unwrap(), cfg, "2026-11".parse::<Month>().unwrap()).await.unwrap();
    (shown(cfg, &months), releases(&months))
}

/// An issue's history as `explain` tells it, sorted: when, field, from, to, who, how, refused.
async fn changes(store: &dyn Store, n: u64) -> Vec<(String, String, Option<String>, Option<String>, String, String, Option<String>)> {
    let mut out: Vec<_> = store
        .history(&IssueKey::github(REPO, n))
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.at.to_rfc3339(), e.field, e.from, e.to, e.actor, format!("{:?}", e.source), e.refused))
        .collect();
    out.sort();
    out
}

fn adjust(s: &mut rollgate::config::Settings) {
    s.roles.pm = vec![PM.into()];
    s.roles.qa_lead = vec![QA.into()];
}

#[tokio::test]
async fn a_month_reports_the_same_live_and_by_backfill() {
    let clock = Arc::new(FixedClock::new(t("2026-11-02T09:00:00Z")));
    let h = Harness::start_clocked(adjust, clock.clone()).await;
    let m = Month_ { h: &h, clock: &clock };

    // Mon 2 Nov: a single-client bug (type 1) and a cross-client enhancement (type 3) are filed.
    m.at("2026-11-02T09:00:00Z");
    let bug = h.github.person("someone").open_issue(REPO, "Invoice totals off by one", "", &["type/bug", "scope/single-client"]);
    h.quiet().await;
    m.at("2026-11-02T09:30:00Z");
    let feat = h.github.person("someone").open_issue(REPO, "Dispatch board filters", "", &["type/enhancement", "scope/cross-client"]);
    h.quiet().await;
    assert!(m.labels(bug).contains(&"rollout/1-direct".into()) && m.labels(feat).contains(&"rollout/3-demoed".into()));
    assert_eq!((m.status(bug), m.status(feat)), ("status/planning".into(), "status/planning".into()));

    // In the order it happened: the bug is decided, built, its type raised to 2 once in
    // development (assigned late, M1); the enhancement is decided and built alongside.
    m.at("2026-11-02T10:00:00Z");
    m.comment(bug, "/decide accept sprint=2026-W45 dev-release=2026-11-04", PM).await;
    assert_eq!(m.status(bug), "status/decided");
    m.at("2026-11-03T09:00:00Z");
    m.move_to(bug, "status/in-dev", DEV).await;
    m.at("2026-11-03T10:00:00Z");
    m.comment(feat, "/decide accept sprint=2026-W46 dev-release=2026-11-09", PM).await;
    assert_eq!(m.status(feat), "status/decided");
    m.at("2026-11-03T15:00:00Z");
    m.comment(bug, "/rollout 2", PM).await;
    assert!(m.labels(bug).contains(&"rollout/2-notified".into()), "{:?}", m.labels(bug));
    m.at("2026-11-04T09:00:00Z");
    m.move_to(bug, "status/dev-released", DEV).await;
    let boxes = m.open_boxes(bug);
    assert!(!boxes.is_empty(), "a type-2 checklist");
    m.at("2026-11-04T11:00:00Z");
    m.move_to(feat, "status/in-dev", DEV).await;
    m.at("2026-11-04T14:00:00Z");
    m.move_to(bug, "status/rollout-confirmed", PM).await;
    m.at("2026-11-05T09:00:00Z");
    m.move_to(bug, "status/in-rollout", PM).await;
    // The QA lead ticks every box in rollgate's checklist comment.
    m.at("2026-11-05T10:00:00Z");
    let refs: Vec<&str> = boxes.iter().map(String::as_str).collect();
    m.tick(bug, &refs, QA).await;
    assert!(m.open_boxes(bug).is_empty(), "{}", m.bot_comment(bug, "checklist").body);
    // Fri 6: the bug is released.
    m.at("2026-11-06T11:00:00Z");
    m.close(bug, PM).await;
    assert_eq!(m.status(bug), "status/released");
    assert!(!h.github.issue(REPO, bug).open);

    // Mon 9: the enhancement is dev released.
    m.at("2026-11-09T09:00:00Z");
    m.move_to(feat, "status/dev-released", DEV).await;
    let boxes = m.open_boxes(feat);
    assert!(boxes.contains(&"release-note".to_string()) && boxes.contains(&"internal-demo".to_string()), "{boxes:?}");
    // Tue 10: the PM closes it too early: refused, reopened, the status put back.
    m.at("2026-11-10T09:00:00Z");
    m.close(feat, PM).await;
    assert!(h.github.issue(REPO, feat).open, "the early close is reverted");
    assert_eq!(m.status(feat), "status/dev-released");
    assert!(m.bot_comment(feat, "blocked").body.contains("skips `rollout-confirmed`"));
    m.at("2026-11-10T11:00:00Z");
    m.move_to(feat, "status/rollout-confirmed", PM).await;
    m.at("2026-11-10T12:00:00Z");
    m.move_to(feat, "status/in-rollout", PM).await;
    // The QA lead ticks two boxes on Wednesday, the PM the rest on Thursday.
    m.at("2026-11-11T10:00:00Z");
    m.tick(feat, &["release-note", "training-material"], QA).await;
    m.at("2026-11-12T16:00:00Z");
    let rest = m.open_boxes(feat);
    let refs: Vec<&str> = rest.iter().map(String::as_str).collect();
    m.tick(feat, &refs, PM).await;
    assert!(m.open_boxes(feat).is_empty());
    // Fri 13: released.
    m.at("2026-11-13T15:00:00Z");
    m.close(feat, PM).await;
    assert_eq!(m.status(feat), "status/released");
    assert!(!h.github.issue(REPO, feat).open, "the close stands");

    // Mon 16: a bug filed late in the month, still in planning at its end.
    m.at("2026-11-16T09:00:00Z");
    let late = h.github.person("someone").open_issue(REPO, "Typo on the login page", "", &["type/bug", "scope/single-client"]);
    h.quiet().await;
    assert_eq!(m.status(late), "status/planning");
    // Tue 17: a developer changes its rollout type: not theirs to change, put back.
    m.at("2026-11-17T09:00:00Z");
    h.github.person(DEV).swap_label(REPO, late, "rollout/1-direct", "rollout/4-piloted", SwapOrder::RemoveFirst);
    h.quiet().await;
    assert!(m.labels(late).contains(&"rollout/1-direct".into()) && !m.labels(late).contains(&"rollout/4-piloted".into()), "{:?}", m.labels(late));
    assert!(m.bot_comment(late, "role-refused").body.contains("@dev1"));

    // The fake's timeline and edit histories hold what happened, by whom and when.
    let checklist = m.bot_comment(feat, "checklist");
    let editors: Vec<&str> = checklist.edits.iter().map(|e| e.editor.as_str()).collect();
    assert!(editors.contains(&QA) && editors.contains(&PM) && editors.contains(&BOT_LOGIN), "{editors:?}");
    let closes: Vec<(String, String)> = h
        .github
        .issue(REPO, feat)
        .events
        .iter()
        .filter(|e| e["event"] == "closed" || e["event"] == "reopened")
        .map(|e| (format!("{} {}", e["event"].as_str().unwrap(), e["created_at"].as_str().unwrap()), e["actor"]["login"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        closes,
        [
            ("closed 2026-11-10T09:00:00Z".to_string(), PM.to_string()),
            ("reopened 2026-11-10T09:00:00Z".into(), BOT_LOGIN.into()),
            ("closed 2026-11-13T15:00:00Z".into(), PM.into()),
        ]
    );

    // The month as the live service recorded it.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = support::settings(dir.path(), &h.github);
    adjust(&mut settings);
    let cfg = MetricsFile::load(&support::policies_dir()).unwrap();
    let live = november(h.app.store.as_ref(), &settings, &cfg).await;

    // Counted by hand. The bug: type 2 (raised late, at in-dev), dev released Wed 4, released
    // Fri 6: 2 business days. The enhancement: type 3, dev released Mon 9, released Fri 13: 4
    // business days, every artifact ticked. M1: 1 of 2 typed at planning (50%, target 90: the
    // bug is the miss); M2: 1 of 1 type 3+ with every artifact (100%); M3, M4, M7: no release
    // of their type; M5: 2 days; M6: 4 days; M8: no escalation; M9: nothing rolled back (0%).
    let key = |n: u64| IssueKey::github(REPO, n).short();
    let expected_releases: Releases = {
        let mut r = vec![
            (key(bug), "2026-11-06T11:00:00+00:00".to_string(), Some("2".to_string()), Some(2), true, true, false, 0, false),
            (key(feat), "2026-11-13T15:00:00+00:00".to_string(), Some("3".to_string()), Some(4), false, true, false, 0, false),
        ];
        r.sort();
        r
    };
    assert_eq!(live.1, expected_releases);
    let now = |id: &str| live.0.iter().find(|m| m.0 == id).map(|m| (m.1.last().unwrap().1, m.2)).unwrap();
    assert_eq!(now("M1"), (Some(50.0), Some(false)));
    assert_eq!(live.0.iter().find(|m| m.0 == "M1").unwrap().3, [(key(bug), "rollout type assigned after planning".to_string())]);
    assert_eq!(now("M2"), (Some(100.0), Some(true)));
    assert_eq!(now("M3"), (None, None));
    assert_eq!(now("M4"), (None, None));
    assert_eq!(now("M5"), (Some(2.0), Some(true)));
    assert_eq!(now("M6"), (Some(4.0), Some(true)));
    assert_eq!(now("M7"), (None, None));
    assert_eq!(now("M8"), (Some(0.0), Some(true)));
    assert_eq!(now("M9"), (Some(0.0), Some(true)));
    // The months before November had nothing.
    for m in &live.0 {
        for (month, v) in &m.1[..m.1.len() - 1] {
            assert!(v.is_none() || *v == Some(0.0), "{} {month}: {v:?}", m.0);
        }
    }

    // The same repository, backfilled from the tracker into a fresh store.
    let fresh = rollgate::store::open(&format!("sqlite://{}", dir.path().join("backfilled.db").display())).await.unwrap();
    let set = rollgate::policy::PolicySet::load(&support::policies_dir()).unwrap();
    let config = rollgate::app::policy_config(&settings).unwrap();
    let roles = rollgate::roles::RoleResolver::new(&settings.roles, None);
    let me = rollgate::decide::facts::Me::new(Some(BOT_LOGIN.to_string()));
    let judge = rollgate::backfill::Judge { set: &set, config: &config, roles: &roles, me: &me };
    let tracker = GithubTracker::new(&h.github.url, &rollgate::config::Secret::new(TOKEN), Default::default()).unwrap();
    let first = rollgate::backfill::github(fresh.as_ref(), &judge, &tracker, REPO, true).await.unwrap();
    assert_eq!((first.issues, first.skipped), (3, 0));
    assert!(first.rows > 0);
    let backfilled = november(fresh.as_ref(), &settings, &cfg).await;
    assert_eq!(backfilled.1, live.1, "the release list");
    assert_eq!(backfilled.0, live.0, "M1–M9");
    // Behind the figures, each issue's history is the live one: the same changes by the same
    // people at the same times (the ticks the QA lead's and the PM's, not rollgate's), the
    // same records, the early close and the developer's rollout change refused; only the order
    // within one second may differ.
    for n in [bug, feat, late] {
        let (live_h, back_h) = (changes(h.app.store.as_ref(), n).await, changes(fresh.as_ref(), n).await);
        assert_eq!(back_h, live_h, "#{n}'s history");
    }
    let refused: Vec<(String, Option<String>, Option<String>, String)> =
        changes(fresh.as_ref(), late).await.into_iter().filter(|c| c.6.is_some()).map(|c| (c.1, c.2, c.3, c.4)).collect();
    assert_eq!(refused, [("rollout".to_string(), Some("1".to_string()), Some("4".to_string()), DEV.to_string())]);
    let ticks: Vec<(String, String)> =
        changes(fresh.as_ref(), feat).await.into_iter().filter(|c| c.1.starts_with("artifact.")).map(|c| (c.0, c.4)).collect();
    assert_eq!(
        ticks,
        [
            ("2026-11-11T10:00:00+00:00".to_string(), QA.to_string()),
            ("2026-11-11T10:00:00+00:00".into(), QA.into()),
            ("2026-11-12T16:00:00+00:00".into(), PM.into()),
            ("2026-11-12T16:00:00+00:00".into(), PM.into()),
            ("2026-11-12T16:00:00+00:00".into(), PM.into()),
        ]
    );

    // Again: nothing imported twice, the figures unchanged.
    let rows = fresh.history(&IssueKey::github(REPO, feat)).await.unwrap().len();
    let again = rollgate::backfill::github(fresh.as_ref(), &judge, &tracker, REPO, true).await.unwrap();
    assert_eq!((again.issues, again.skipped, again.rows), (0, 3, 0));
    assert_eq!(fresh.history(&IssueKey::github(REPO, feat)).await.unwrap().len(), rows);
    assert_eq!(november(fresh.as_ref(), &settings, &cfg).await, live);
    h.app.stop().await.unwrap();
}

//! Periodic jobs: the monthly metrics issue, the weekly decisions log and the Tuesday agenda,
//! each filed once per period and edited in place while its week runs.

mod support;

use chrono::{DateTime, Utc};
use rollgate::schedule::jobs::Jobs;
use rollgate::clock::FixedClock;
use rollgate::config::Secret;
use rollgate::process::Trackers;
use rollgate::tracker::github::GithubTracker;
use rollgate::tracker::RetryPolicy;
use serde_json::json;
use std::sync::Arc;
use support::{issue_event, Harness, REPO};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// The periodic jobs of the harness's service, filing in the fake GitHub's repository.
fn jobs(h: &Harness) -> Jobs {
    let github = GithubTracker::new(&h.github.url, &Secret::new(support::fake_github::TOKEN), RetryPolicy::default()).unwrap();
    Jobs {
        store: h.app.store.clone(),
        calendar: Arc::new(Default::default()),
        policies: support::policies_dir(),
        target: Some(REPO.into()),
        trackers: Trackers { github: Some(Arc::new(github)), jira: None },
        last_refresh: Default::default(),
    }
}

#[tokio::test]
async fn monthly_and_weekly_issues_are_filed_once_and_kept_up_to_date() {
    let clock = Arc::new(FixedClock::new(t("2026-11-23T10:00:00Z")));
    let h = Harness::start_clocked(|s| s.roles.pm = vec!["priya".into()], clock.clone()).await;
    let jobs = jobs(&h);
    let run = |now: &str| {
        *jobs.last_refresh.lock().unwrap() = None;
        jobs.run_due(t(now))
    };
    let filed = |title: &str| (1..=20u64).filter(|n| h.github.issue_opt(REPO, *n).is_some_and(|i| i.title.starts_with(title))).count();

    // Monday: two new items; the PM accepts one.
    for n in [1u64, 2] {
        h.github.seed(REPO, n, &["type/enhancement"]);
        let mut p = issue_event("issues.opened.json", n, &["type/enhancement"], None);
        p["issue"]["updated_at"] = json!("2026-11-23T09:00:00Z");
        h.deliver("issues", &format!("o-{n}"), &p).await;
    }
    // A title that tries to ping a team and start a line of its own in the weekly issues.
    h.github.person("mallory").edit_title(REPO, 2, "Exports </details> for @octo-org/everyone\n- [x] done");
    let mut c = issue_event("issue_comment.created.json", 1, &["type/enhancement"], None);
    c["comment"]["body"] = json!("/decide accept sprint=2026-W49 dev-release=2026-12-01");
    c["comment"]["user"] = json!({"login": "priya", "type": "User"});
    c["comment"]["created_at"] = json!("2026-11-23T09:30:00Z");
    c["comment"]["updated_at"] = json!("2026-11-23T09:30:00Z");
    c["sender"] = json!({"login": "priya", "type": "User"});
    h.deliver("issue_comment", "c-1", &c).await;
    h.settle().await;

    let done = run("2026-11-23T10:00:00Z").await.unwrap();
    assert!(done.iter().any(|d| d.starts_with("filed the 2026-10 metrics report")), "{done:?}");
    assert!(done.iter().any(|d| d.starts_with("filed Decisions log — 2026-W48")), "{done:?}");
    assert_eq!(filed("Tuesday sync"), 0, "the agenda waits for Tuesday morning");
    let log = (1..=20u64).find_map(|n| h.github.issue_opt(REPO, n).filter(|i| i.title.starts_with("Decisions log"))).unwrap();
    assert!(log.body.contains("| accept | @priya |") && log.body.contains("sprint: 2026-W49"), "{}", log.body);

    // Tuesday: the PM parks the other item; the log is edited in place, the agenda appears.
    let mut c = issue_event("issue_comment.created.json", 2, &["type/enhancement"], None);
    c["comment"]["body"] = json!("/decide park revisit=2027-01-11 trigger=\"after the migration\"");
    c["comment"]["user"] = json!({"login": "priya", "type": "User"});
    c["comment"]["created_at"] = json!("2026-11-24T08:00:00Z");
    c["comment"]["updated_at"] = json!("2026-11-24T08:00:00Z");
    c["sender"] = json!({"login": "priya", "type": "User"});
    h.deliver("issue_comment", "c-2", &c).await;
    h.settle().await;
    let done = run("2026-11-24T09:30:00Z").await.unwrap();
    assert!(done.iter().any(|d| d == "updated Decisions log — 2026-W48"), "{done:?}");
    assert!(done.iter().any(|d| d.starts_with("filed Tuesday sync — 2026-W48")), "{done:?}");
    let agenda = (1..=20u64).find_map(|n| h.github.issue_opt(REPO, n).filter(|i| i.title.starts_with("Tuesday sync"))).unwrap();
    assert!(agenda.body.contains("### 1. Planning") && agenda.body.contains("### 3. Rollout"), "{}", agenda.body);
    assert!(agenda.body.contains("Codertocat/Hello-World#1") && agenda.body.contains("— accept"), "{}", agenda.body);

    // Later sweeps file nothing again; one issue per purpose and period.
    let done = run("2026-11-24T10:00:00Z").await.unwrap();
    assert!(done.is_empty(), "{done:?}");
    assert_eq!((filed("Rollout metrics — 2026-10"), filed("Decisions log — 2026-W48"), filed("Tuesday sync — 2026-W48")), (1, 1, 1));
    let log = (1..=20u64).find_map(|n| h.github.issue_opt(REPO, n).filter(|i| i.title.starts_with("Decisions log"))).unwrap();
    assert!(log.body.contains("| park |") && log.body.contains("trigger: after the migration"), "{}", log.body);
    // The person's title is shown on its line, defused: no team pinged, no tag, no new line.
    for body in [&log.body, &agenda.body] {
        assert!(body.contains("Exports &lt;/details&gt; for @\u{200D}octo-org/everyone "), "{body}");
        assert!(!body.contains("@octo-org") && !body.contains("</details>") && !body.contains("\n- [x]"), "{body}");
    }
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn after_downtime_the_missed_reports_and_decisions_logs_are_filed_once() {
    let clock = Arc::new(FixedClock::new(t("2026-11-23T10:00:00Z")));
    let h = Harness::start_clocked(|_| {}, clock).await;
    let store = h.app.store.clone();
    // The service last ran in early November: August's report and week 45's log were filed.
    let then = t("2026-11-02T10:00:00Z");
    assert!(store.claim_job("metrics-report", "2026-08", then).await.unwrap());
    store.finish_job("metrics-report", "2026-08", Ok("github:x/y#1"), then).await.unwrap();
    assert!(store.claim_job("decisions-log", "2026-W45", then).await.unwrap());
    store.finish_job("decisions-log", "2026-W45", Ok("github:x/y#2 0"), then).await.unwrap();
    let jobs = jobs(&h);
    let done = jobs.run_due(t("2026-11-23T10:00:00Z")).await.unwrap();
    let filed: Vec<&String> = done.iter().filter(|d| d.starts_with("filed")).collect();
    for want in ["filed the 2026-09 metrics report", "filed the 2026-10 metrics report", "filed Decisions log — 2026-W46", "filed Decisions log — 2026-W47", "filed Decisions log — 2026-W48"] {
        assert!(filed.iter().any(|d| d.starts_with(want)), "{want}: {done:?}");
    }
    assert_eq!(filed.len(), 5, "{done:?}");
    *jobs.last_refresh.lock().unwrap() = None;
    let again = jobs.run_due(t("2026-11-23T10:05:00Z")).await.unwrap();
    assert!(again.iter().all(|d| !d.starts_with("filed")), "{again:?}");
    h.app.stop().await.unwrap();
}

/// GitHub creates the report issue but the answer is lost (a 502 after the write): the run
/// fails, and the next one finds the issue by its title instead of filing a second one.
#[tokio::test]
async fn a_report_whose_answer_was_lost_is_found_not_filed_twice() {
    let clock = Arc::new(FixedClock::new(t("2026-11-23T10:00:00Z")));
    let h = Harness::start_clocked(|_| {}, clock).await;
    let jobs = jobs(&h);
    let reports = || (1..=20u64).filter(|n| h.github.issue_opt(REPO, *n).is_some_and(|i| i.title == "Rollout metrics — 2026-10")).count();

    h.github.lose_answer_to_next_issue_created();
    let err = jobs.run_due(t("2026-11-23T10:00:00Z")).await.expect_err("the answer was lost");
    assert!(format!("{err:#}").contains("2026-10 metrics report"), "{err:#}");
    assert_eq!(reports(), 1, "GitHub holds the issue; the POST was not repeated in place");

    *jobs.last_refresh.lock().unwrap() = None;
    let done = jobs.run_due(t("2026-11-23T10:05:00Z")).await.unwrap();
    assert!(done.iter().any(|d| d == "filed the 2026-10 metrics report as Codertocat/Hello-World#1"), "{done:?}");
    assert_eq!(reports(), 1, "found by its title, not filed again");
    assert_eq!(h.app.store.job_result("metrics-report", "2026-10").await.unwrap().as_deref(), Some("github:Codertocat/Hello-World#1"));
    h.app.stop().await.unwrap();
}

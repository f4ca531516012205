//! Backfill: existing issues and their label history imported, so clocks and the first report
//! are right from day one; an interrupted backfill resumes and never imports twice.

mod support;

use rollgate::config::Secret;
use rollgate::policy::PolicySet;
use rollgate::report::{figures, MetricsFile};
use rollgate::tracker::github::GithubTracker;
use rollgate::tracker::RetryPolicy;
use support::fake_github::{FakeGithub, TOKEN};
use support::REPO;

#[tokio::test]
async fn history_is_rebuilt_from_label_events_and_a_rerun_resumes() {
    let github = FakeGithub::start().await;
    // Issue 1 went through the whole flow in November.
    let now = ["type/enhancement", "lane/A", "rollout/3-demoed", "decision/accept", "status/released"];
    github.seed(REPO, 1, &now);
    let steps = [
        ("labeled", "type/enhancement", "2026-11-02T09:00:00Z"),
        ("labeled", "status/planning", "2026-11-02T09:00:00Z"),
        ("labeled", "rollout/3-demoed", "2026-11-03T09:00:00Z"),
        ("labeled", "lane/A", "2026-11-03T09:00:00Z"),
        ("labeled", "decision/accept", "2026-11-04T09:00:00Z"),
        ("unlabeled", "status/planning", "2026-11-04T09:00:00Z"),
        ("labeled", "status/decided", "2026-11-04T09:00:00Z"),
        ("unlabeled", "status/decided", "2026-11-05T09:00:00Z"),
        ("labeled", "status/in-dev", "2026-11-05T09:00:00Z"),
        ("unlabeled", "status/in-dev", "2026-11-09T09:00:00Z"),
        ("labeled", "status/dev-released", "2026-11-09T09:00:00Z"),
        ("unlabeled", "status/dev-released", "2026-11-16T09:00:00Z"),
        ("labeled", "status/released", "2026-11-16T09:00:00Z"),
    ];
    for (kind, label, at) in steps {
        github.add_event(REPO, 1, kind, Some(label), at, "priya");
    }
    github.add_event(REPO, 1, "closed", None, "2026-11-16T09:00:00Z", "priya");
    github.seed(REPO, 2, &["type/bug"]);

    let dir = tempfile::tempdir().unwrap();
    let store = rollgate::store::open(&format!("sqlite://{}", dir.path().join("b.db").display())).await.unwrap();
    let set = PolicySet::load(&support::policies_dir()).unwrap();
    let tracker = GithubTracker::new(&github.url, &Secret::new(TOKEN), RetryPolicy::default()).unwrap();

    // The first run stops at issue 2 (GitHub refuses its events): issue 1 is in, 2 is not.
    github.refuse_events(2);
    assert!(support::with_judge(&set, support::fake_github::BOT_LOGIN, async |j| rollgate::backfill::github(store.as_ref(), j, &tracker, REPO, true).await).await.is_err(), "the refused read stops the backfill");
    github.allow_events();
    let key: rollgate::model::IssueKey = format!("{REPO}#1").parse().unwrap();
    let history = store.history(&key).await.unwrap();
    let at = |field: &str, to: &str| history.iter().find(|h| h.field == field && h.to.as_deref() == Some(to)).map(|h| h.at.to_rfc3339());
    assert_eq!(at("status", "dev-released").as_deref(), Some("2026-11-09T09:00:00+00:00"));
    assert_eq!(at("status", "released").as_deref(), Some("2026-11-16T09:00:00+00:00"));
    assert_eq!(at("decision", "accept").as_deref(), Some("2026-11-04T09:00:00+00:00"));
    assert_eq!(at("state", "closed").as_deref(), Some("2026-11-16T09:00:00+00:00"));
    assert!(store.issue_state(&format!("{REPO}#2").parse().unwrap()).await.unwrap().is_none());

    // Resumed: only issue 2 is imported now.
    let p = support::with_judge(&set, support::fake_github::BOT_LOGIN, async |j| rollgate::backfill::github(store.as_ref(), j, &tracker, REPO, true).await).await.unwrap();
    assert_eq!((p.issues, p.skipped), (1, 1));
    // Again: nothing imported twice.
    let rows = store.history(&key).await.unwrap().len();
    let p = support::with_judge(&set, support::fake_github::BOT_LOGIN, async |j| rollgate::backfill::github(store.as_ref(), j, &tracker, REPO, true).await).await.unwrap();
    assert_eq!((p.issues, p.skipped), (0, 2));
    assert_eq!(store.history(&key).await.unwrap().len(), rows);

    // The first report already counts the release: Mon 9 to Mon 16 November is 5 business days.
    let cfg = MetricsFile::load(&support::policies_dir()).unwrap();
    let months = figures(store.as_ref(), &Default::default(), &cfg, "2026-11".parse().unwrap()).await.unwrap();
    let nov = months.last().unwrap();
    assert_eq!(nov.releases.len(), 1);
    assert_eq!((nov.releases[0].rollout.as_deref(), nov.releases[0].business_days), (Some("3"), Some(5)));
}

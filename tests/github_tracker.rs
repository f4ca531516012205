//! The GitHub tracker's calls that the event path does not use yet, against the fake GitHub.

mod support;

use rollgate::config::Secret;
use rollgate::model::IssueKey;
use rollgate::tracker::github::GithubTracker;
use rollgate::tracker::{RetryPolicy, Tracker, TrackerError};
use support::fake_github::{FakeGithub, TOKEN};
use support::REPO;

fn tracker(github: &FakeGithub, token: &str) -> GithubTracker {
    GithubTracker::new(&github.url, &Secret::new(token), RetryPolicy::default()).unwrap()
}

#[tokio::test]
async fn reads_closes_reopens_creates_and_pages_through_comments() {
    let github = FakeGithub::start().await;
    github.seed(REPO, 3, &["type/bug", "lane/B"]);
    let t = tracker(&github, TOKEN);
    let key = IssueKey::github(REPO, 3);

    let issue = t.get_issue(&key).await.unwrap();
    assert_eq!(issue.labels, vec!["type/bug", "lane/B"]);
    assert!(issue.open);

    t.set_open(&key, false, Some("completed")).await.unwrap();
    assert!(!github.issue(REPO, 3).open);
    assert_eq!(github.issue(REPO, 3).state_reason.as_deref(), Some("completed"));
    t.set_open(&key, true, None).await.unwrap();
    assert!(github.issue(REPO, 3).open);

    for i in 0..130 {
        t.create_comment(&key, &format!("comment {i}")).await.unwrap();
    }
    let comments = t.list_comments(&key).await.unwrap();
    assert_eq!(comments.len(), 130, "both pages read");
    assert_eq!(comments[129].body, "comment 129");

    t.remove_label(&key, "lane/B").await.unwrap();
    t.remove_label(&key, "lane/B").await.expect("removing a missing label succeeds");
    assert_eq!(github.labels(REPO, 3), vec!["type/bug"]);

    let created = t.create_issue(REPO, "Rollout metrics — 2026-11", "body", &["report".into()]).await.unwrap();
    assert_eq!(created, IssueKey::github(REPO, 4));
    assert_eq!(github.issue(REPO, 4).title, "Rollout metrics — 2026-11");

    assert!(matches!(t.get_issue(&IssueKey::github(REPO, 99)).await, Err(TrackerError::NotFound)));
}

#[tokio::test]
async fn bad_credentials_are_a_refusal_not_a_retry() {
    let github = FakeGithub::start().await;
    github.seed(REPO, 1, &[]);
    let err = tracker(&github, "wrong").add_labels(&IssueKey::github(REPO, 1), &["x".into()]).await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test]
async fn roles_come_from_logins_and_team_slugs() {
    use rollgate::config::Roles;
    use rollgate::roles::RoleResolver;
    use std::sync::Arc;
    let github = FakeGithub::start().await;
    github.add_team_member("acme/pms", "tara");
    let roles = Roles { pm: vec!["priya".into(), "@acme/pms".into()], qa_lead: vec!["Quinn".into()] };
    let resolver = RoleResolver::new(&roles, Some(Arc::new(tracker(&github, TOKEN))));
    assert_eq!(resolver.roles_of("priya").await, vec!["pm"]);
    assert_eq!(resolver.roles_of("tara").await, vec!["pm"], "a member of @acme/pms");
    assert_eq!(resolver.roles_of("quinn").await, vec!["qa_lead"], "logins match without case");
    assert!(resolver.roles_of("dev1").await.is_empty());
    // The answer is remembered: a burst of events asks GitHub once per person.
    let asked = github.requests();
    resolver.roles_of("tara").await;
    resolver.roles_of("dev1").await;
    assert_eq!(github.requests(), asked);
}

#[tokio::test]
async fn setup_creates_the_playbooks_labels_and_puts_drift_right() {
    let github = FakeGithub::start().await;
    let set = rollgate::policy::PolicySet::load(&support::policies_dir()).unwrap();
    let specs = set.vocabulary.label_specs();
    assert!(specs.iter().any(|(n, c, d)| n == "lane/B" && c == "0e8a16" && d == "Playbook lane: B"));
    assert!(specs.iter().any(|(n, _, d)| n == "needs/demo" && d == "Playbook flag: needs-demo"));
    let t = tracker(&github, TOKEN);
    let (created, updated, same) = t.sync_labels(REPO, &specs).await.unwrap();
    assert_eq!((created, updated, same), (specs.len(), 0, 0));
    assert_eq!(github.repo_labels(REPO).len(), specs.len());
    // Someone recolours a label; setup puts it back, through the percent-encoded name.
    github.recolor_label(REPO, "rollout/3-demoed", "000000");
    assert_eq!(t.sync_labels(REPO, &specs).await.unwrap(), (0, 1, specs.len() - 1));
    assert_eq!(github.repo_labels(REPO)["rollout/3-demoed"].0, "fbca04");
    assert_eq!(t.sync_labels(REPO, &specs).await.unwrap(), (0, 0, specs.len()));
}

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

/// Backfill's read of an issue's comments: every revision, oldest first, each by whoever made
/// it, through GraphQL; rollgate's own comments under its REST login.
#[tokio::test]
async fn past_comments_gives_every_revision_of_every_comment_oldest_first_with_its_editor() {
    let github = FakeGithub::start().await;
    github.set_time("2026-11-02T09:00:00Z");
    github.seed(REPO, 5, &["type/bug"]);
    let t = tracker(&github, TOKEN);
    let key = IssueKey::github(REPO, 5);
    let checklist = t.create_comment(&key, "- [ ] a <!-- box:a -->\n- [ ] b <!-- box:b -->").await.unwrap();
    github.advance(60);
    let said = github.person("someone").comment(REPO, 5, "/explain");
    github.advance(3600);
    github.person("quinn").tick(checklist.0, "a");
    github.advance(1);
    t.update_comment(&key, checklist, "- [x] a <!-- box:a -->\n- [ ] b <!-- box:b -->\nnext: b").await.unwrap();
    github.advance(3600);
    github.person("priya").tick(checklist.0, "b");

    let past = t.past_comments(&key).await.unwrap();
    assert_eq!(past.iter().map(|c| (c.id, c.author.as_str())).collect::<Vec<_>>(), [(checklist.0, "rollgate[bot]"), (said, "someone")], "REST ids, REST logins");
    let revs: Vec<(String, &str, &str)> = past[0].revisions.iter().map(|r| (r.at.to_rfc3339(), r.editor.as_str(), r.body.as_str())).collect();
    assert_eq!(
        revs,
        [
            ("2026-11-02T09:00:00+00:00".to_string(), "rollgate[bot]", "- [ ] a <!-- box:a -->\n- [ ] b <!-- box:b -->"),
            ("2026-11-02T10:01:00+00:00".into(), "quinn", "- [x] a <!-- box:a -->\n- [ ] b <!-- box:b -->"),
            ("2026-11-02T10:01:01+00:00".into(), "rollgate[bot]", "- [x] a <!-- box:a -->\n- [ ] b <!-- box:b -->\nnext: b"),
            ("2026-11-02T11:01:01+00:00".into(), "priya", "- [x] a <!-- box:a -->\n- [x] b <!-- box:b -->\nnext: b"),
        ]
    );
    assert_eq!(past[1].revisions.len(), 1, "never edited: its creation alone");
    assert_eq!((past[1].revisions[0].editor.as_str(), past[1].revisions[0].body.as_str()), ("someone", "/explain"));

    // A revision deleted from the history is skipped: the next edit shows both changes.
    github.delete_revision(checklist.0, 2);
    let past = t.past_comments(&key).await.unwrap();
    let editors: Vec<&str> = past[0].revisions.iter().map(|r| r.editor.as_str()).collect();
    assert_eq!(editors, ["rollgate[bot]", "quinn", "priya"]);

    // An issue GitHub does not know: GraphQL answers 200 with errors, a failure here.
    assert!(matches!(t.past_comments(&IssueKey::github(REPO, 77)).await, Err(TrackerError::NotFound)));

    // A server without GraphQL: each comment as REST shows it today, one revision at creation.
    github.without_graphql();
    let past = t.past_comments(&key).await.unwrap();
    let seen: Vec<(u64, usize, &str, &str)> = past.iter().map(|c| (c.id, c.revisions.len(), c.revisions[0].editor.as_str(), c.revisions[0].body.as_str())).collect();
    assert_eq!(seen, [(checklist.0, 1, "rollgate[bot]", "- [x] a <!-- box:a -->\n- [x] b <!-- box:b -->\nnext: b"), (said, 1, "someone", "/explain")]);
    assert!(matches!(t.past_comments(&IssueKey::github(REPO, 77)).await, Err(TrackerError::NotFound)));
}

#[tokio::test]
async fn past_comments_pages_through_comments_and_through_a_long_edit_history() {
    let github = FakeGithub::start().await;
    github.seed(REPO, 6, &[]);
    let t = tracker(&github, TOKEN);
    let key = IssueKey::github(REPO, 6);
    for i in 0..130 {
        github.person("someone").comment(REPO, 6, &format!("comment {i}"));
    }
    let first = github.issue(REPO, 6).comments[0].id;
    for i in 0..230 {
        github.person(if i % 2 == 0 { "quinn" } else { "priya" }).edit_comment(first, &format!("edit {i}"));
    }
    let past = t.past_comments(&key).await.unwrap();
    assert_eq!(past.len(), 130, "both pages of comments");
    assert_eq!(past[129].revisions[0].body, "comment 129");
    let revs = &past[0].revisions;
    assert_eq!(revs.len(), 231, "the creation and all 230 edits, over three pages of history");
    assert_eq!((revs[0].editor.as_str(), revs[0].body.as_str()), ("someone", "comment 0"));
    assert_eq!((revs[1].editor.as_str(), revs[1].body.as_str()), ("quinn", "edit 0"));
    assert_eq!((revs[230].editor.as_str(), revs[230].body.as_str()), ("priya", "edit 229"));
}

/// As a GitHub App: GraphQL is called with the installation's token, and the App's bot, which
/// GraphQL names without `[bot]`, gets its REST login back (rollgate knows its own comments).
#[tokio::test]
async fn past_comments_as_an_app_reads_with_the_installation_token_and_knows_the_apps_bot() {
    use support::fake_github::{app_private_key, APP_BOT_LOGIN, APP_ID};
    let github = FakeGithub::start().await;
    github.install_app(11, "Codertocat");
    github.seed(REPO, 8, &[]);
    let key = rollgate::config::AppKey { pem: Secret::new(app_private_key()), from: "ROLLGATE_GITHUB_APP_PRIVATE_KEY".into() };
    let t = GithubTracker::with_app(&github.url, APP_ID, &key, RetryPolicy::default()).unwrap();
    let issue = IssueKey::github(REPO, 8);
    let id = t.create_comment(&issue, "- [ ] a <!-- box:a -->").await.unwrap();
    github.person("quinn").tick(id.0, "a");
    let past = t.past_comments(&issue).await.unwrap();
    assert_eq!(past[0].author, APP_BOT_LOGIN);
    let editors: Vec<&str> = past[0].revisions.iter().map(|r| r.editor.as_str()).collect();
    assert_eq!(editors, [APP_BOT_LOGIN, "quinn"]);
}

//! An operator's policy that loops, recurses or allocates without bound must not take the
//! service down: the limits stop the evaluation, the event is marked failed with a message that
//! says which limit, and every other issue keeps being served.

mod support;

use serde_json::json;
use support::{copy_dir, issue_event, policies_dir, Harness, REPO};

const RULE: &str = r#"
// A broken rule: issue 13 loops forever, 14 recurses without end, 15 builds a huge string.
fn deep(n) { deep(n + 1) }

fn decide(issue, event, ctx) {
    let n = issue.number;
    if n == 13 { loop { } }
    if n == 14 { deep(0); }
    if n == 15 { let s = "x"; loop { s += s; } }
}
"#;

#[tokio::test]
async fn a_runaway_policy_fails_its_event_with_a_clear_message_and_the_service_keeps_serving() {
    let pack = tempfile::tempdir().unwrap();
    copy_dir(&policies_dir(), pack.path());
    std::fs::write(pack.path().join("rules/99-runaway.rhai"), RULE).unwrap();
    let h = Harness::start_with(|s| {
        s.policies = pack.path().to_path_buf();
        // One attempt: the dead letter shows the message at once.
        s.queue.max_attempts = 1;
    })
    .await;
    for n in [12, 13, 14, 15, 16] {
        h.github.seed(REPO, n, &["type/bug"]);
        let mut p = issue_event("issues.labeled.json", n, &["type/bug"], Some("type/bug"));
        p["issue"]["updated_at"] = json!("2027-06-01T10:00:00Z");
        let (status, _) = h.deliver("issues", &format!("d-{n}"), &p).await;
        assert_eq!(status, 202);
    }
    h.settle().await;

    let dead = h.app.store.dead_letters().await.unwrap();
    let why = |n: u64| {
        dead.iter()
            .find(|d| d.issue_key.ends_with(&format!("#{n}")))
            .map(|d| d.last_error.clone())
            .unwrap_or_else(|| panic!("issue {n} should have failed; dead letters: {dead:#?}"))
    };
    assert_eq!(dead.len(), 3, "only the three runaway issues fail: {dead:#?}");
    let (looping, recursing, allocating) = (why(13), why(14), why(15));
    // Each message names the rule file and the limit that stopped it (Rhai's own words).
    for (message, limit) in [(&looping, "Too many operations"), (&recursing, "Stack overflow"), (&allocating, "too large")] {
        assert!(message.contains("99-runaway") && message.contains(limit), "want {limit:?}: {message}");
    }

    // The neighbours were decided as usual (R1 puts a bug in lane B).
    for n in [12, 16] {
        assert!(h.github.labels(REPO, n).contains(&"lane/B".to_string()), "issue {n}: {:?}", h.github.labels(REPO, n));
    }
    let health = h.http.get(format!("{}/healthz", h.url())).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// A comment a rule fails on holds its issue only for the rule's own few attempts, and the
/// person gets a short answer instead of silence; the issue's next event is then decided.
#[tokio::test]
async fn a_comment_the_rules_fail_on_gets_a_short_answer_and_does_not_hold_the_issue() {
    let pack = tempfile::tempdir().unwrap();
    copy_dir(&policies_dir(), pack.path());
    let rule = r#"
fn decide(issue, event, ctx) {
    if event.comment != () && event.comment.body.contains("/boom") { loop { } }
}
"#;
    std::fs::write(pack.path().join("rules/99-boom.rhai"), rule).unwrap();
    // The default attempts (8): a policy failure still stops after its own 3.
    let h = Harness::start_with(|s| s.policies = pack.path().to_path_buf()).await;
    let n = h.github.person("someone").open_issue(REPO, "Login fails", "", &["type/bug", "scope/single-client"]);
    h.quiet().await;
    let comment = h.github.person("sam").comment(REPO, n, "Please look.\n/boom");
    h.github.person("priya").add_labels(REPO, n, &["needs/demo"]);
    h.quiet_within(std::time::Duration::from_secs(120)).await;
    let dead = h.app.store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0].attempts, 3, "a rule failure is tried three times, not eight");
    let answer = h.github.issue(REPO, n).comments.into_iter().find(|c| c.body.starts_with(&format!("<!-- rollgate:reply-{comment} -->"))).expect("an answer");
    assert!(answer.body.contains("@sam") && answer.body.contains("99-boom") && answer.body.contains("nothing was changed"), "{}", answer.body);
    assert!(answer.body.len() < 600, "short: {}", answer.body);
    // The label added after the comment was decided (needs/demo on a lane-B bug promotes it).
    assert!(h.github.labels(REPO, n).contains(&"lane/A".to_string()), "{:?}", h.github.labels(REPO, n));
}

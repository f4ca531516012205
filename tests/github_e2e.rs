//! GitHub end to end: signed real payloads into the real router, the real policy files, and a
//! fake GitHub whose final state is what we check.

mod support;

use support::fake_github::Fault;
use support::{issue_event, Harness, REPO, SECRET};
use serde_json::json;

fn sorted(labels: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_single_client_bug_gets_lane_b_and_direct_rollout() {
    let h = Harness::start().await;
    h.github.seed(REPO, 1, &["type/bug", "scope/single-client"]);
    let payload = issue_event("issues.opened.json", 1, &["type/bug", "scope/single-client"], None);
    let (status, body) = h.deliver("issues", "d-open-1", &payload).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")));
    h.settle().await;
    assert_eq!(
        h.github.labels(REPO, 1),
        sorted(&["type/bug", "scope/single-client", "lane/B", "rollout/1-direct", "status/planning"])
    );
    // All label additions in one call.
    assert_eq!(h.github.writes().len(), 1, "{:?}", h.github.writes());
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_redelivery_and_the_bots_own_echo_change_nothing() {
    let h = Harness::start().await;
    // A person files an enhancement: `opened`, then `labeled` for the label it was filed with.
    let n = h.github.person("someone").open_issue(REPO, "Export to CSV", "", &["type/enhancement"]);
    h.quiet().await;
    assert_eq!(h.github.labels(REPO, n), sorted(&["type/enhancement", "lane/A", "rollout/3-demoed", "status/planning"]));
    // One write; its three `labeled` echoes (sender rollgate) and the creation's own `labeled`
    // change nothing.
    assert_eq!(h.github.writes().len(), 1, "{:?}", h.github.writes());
    let from_rollgate = h.github.deliveries().iter().filter(|d| d.sender == support::fake_github::BOT_LOGIN).count();
    assert_eq!(from_rollgate, 3, "one labeled echo per label added");
    let after_first = h.github.writes();

    // GitHub's "Redeliver" sends the same X-GitHub-Delivery: acknowledged, not processed again.
    let first = h.github.deliveries()[0].id.clone();
    h.github.redeliver(&first);
    h.quiet().await;
    let redelivered = h.github.deliveries().into_iter().rfind(|d| d.id == first).unwrap();
    assert_eq!((redelivered.redelivery, redelivered.status), (true, Some(202)), "{redelivered:?}");
    assert_eq!(h.github.writes(), after_first, "a redelivery or an echo must not write");
    let distinct: std::collections::BTreeSet<String> = h.github.deliveries().into_iter().map(|d| d.id).collect();
    let stats = h.app.store.inbox_stats().await.unwrap();
    assert_eq!((stats.done as usize, stats.pending, stats.dead), (distinct.len(), 0, 0), "every delivery once, the redelivery not again");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_signatures_bad_bodies_and_foreign_events_are_refused_or_ignored() {
    let h = Harness::start().await;
    h.github.seed(REPO, 3, &["type/bug"]);
    let payload = issue_event("issues.opened.json", 3, &["type/bug"], None);
    let body = serde_json::to_vec(&payload).unwrap();
    let url = h.url();
    // At start rollgate asked GitHub who it is (GET /user); nothing after that.
    let asked_at_start = h.github.requests();

    let wrong = rollgate::ingest::signature::sign("not-the-secret", &body);
    let (status, _) = support::send(&h.http, &url, "issues", "d-bad", body.clone(), Some(&wrong)).await;
    assert_eq!(status, 401);
    let (status, _) = support::send(&h.http, &url, "issues", "d-bad", body.clone(), None).await;
    assert_eq!(status, 401);
    // A signature over other bytes than those sent (tampered body).
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let sig = rollgate::ingest::signature::sign(SECRET, &body);
    let (status, _) = support::send(&h.http, &url, "issues", "d-bad", tampered, Some(&sig)).await;
    assert_eq!(status, 401);

    let garbage = b"{\"action\": \"opened\", \"issue\": 12".to_vec();
    let sig = rollgate::ingest::signature::sign(SECRET, &garbage);
    let (status, answer) = support::send(&h.http, &url, "issues", "d-garbage", garbage, Some(&sig)).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("unreadable payload"), "{answer}");

    let (status, answer) = h.deliver("ping", "d-ping", &support::fixture("ping.json")).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("pong")));
    let (status, answer) = h.deliver("push", "d-push", &json!({"ref": "refs/heads/main"})).await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("ignored")));

    let huge = vec![b' '; 25 * 1024 * 1024 + 1];
    let sig = rollgate::ingest::signature::sign(SECRET, &huge);
    let (status, _) = support::send(&h.http, &url, "issues", "d-huge", huge, Some(&sig)).await;
    assert_eq!(status, 413);

    h.settle().await;
    let stats = h.app.store.inbox_stats().await.unwrap();
    assert_eq!((stats.done, stats.pending, stats.dead), (0, 0, 0), "nothing refused may be stored");
    assert_eq!(h.github.requests(), asked_at_start, "nothing refused may reach the tracker");
    assert_eq!(h.github.labels(REPO, 3), vec!["type/bug"]);
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_lane_b_item_raised_to_type_3_moves_to_lane_a_with_one_comment() {
    let h = Harness::start().await;
    let before = ["type/bug", "lane/B", "rollout/1-direct", "status/planning", "rollout/3-demoed"];
    h.github.seed(REPO, 4, &before);
    let mut p = issue_event("issues.labeled.json", 4, &before, Some("rollout/3-demoed"));
    p["sender"] = json!({"login": "priya-pm", "type": "User"});
    assert_eq!(h.deliver("issues", "d-4a", &p).await.0, 202);
    h.settle().await;
    assert_eq!(h.github.labels(REPO, 4), sorted(&["type/bug", "lane/A", "rollout/3-demoed", "status/planning"]));
    let comments = h.github.issue(REPO, 4).comments;
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.starts_with("<!-- rollgate:lane-promotion -->"), "{}", comments[0].body);
    assert!(comments[0].body.contains("R5") && comments[0].body.contains("@priya-pm"), "{}", comments[0].body);

    // Later events on the same issue do not post the comment again.
    let writes = h.github.writes().len();
    let mut edited = issue_event("issues.edited.json", 4, &["type/bug", "lane/A", "rollout/3-demoed", "status/planning"], None);
    edited["issue"]["updated_at"] = json!("2026-11-21T10:00:00Z");
    assert_eq!(h.deliver("issues", "d-4b", &edited).await.0, 202);
    h.settle().await;
    assert_eq!(h.github.issue(REPO, 4).comments.len(), 1);
    assert_eq!(h.github.writes().len(), writes);
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn an_unlabeled_delivery_still_listing_the_label_is_read_as_removed() {
    let h = Harness::start().await;
    h.github.seed(REPO, 5, &["type/bug", "lane/B", "rollout/1-direct", "status/planning"]);
    let opened = issue_event("issues.opened.json", 5, &["type/bug", "lane/B", "rollout/1-direct", "status/planning"], None);
    h.deliver("issues", "d-5a", &opened).await;
    h.settle().await;
    // Someone removes lane/B; the real unlabeled payload still lists it in issue.labels.
    h.github.seed(REPO, 5, &["type/bug", "rollout/1-direct", "status/planning"]);
    let mut p = issue_event("issues.unlabeled.json", 5, &["type/bug", "lane/B", "rollout/1-direct", "status/planning"], Some("lane/B"));
    p["issue"]["updated_at"] = json!("2026-11-21T10:00:00Z");
    h.deliver("issues", "d-5b", &p).await;
    h.settle().await;
    // Lane was blank after the removal, so R1 put the bug back in lane B.
    assert!(h.github.labels(REPO, 5).contains(&"lane/B".to_string()));
    assert!(h.github.writes().iter().any(|w| w.starts_with("ADD") && w.contains("lane/B")), "{:?}", h.github.writes());
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn tracker_errors_are_retried_honouring_retry_after_and_applied_once() {
    let h = Harness::start().await;
    h.github.seed(REPO, 6, &["type/major-feature"]);
    h.github.fail_next([
        Fault { status: 502, headers: vec![], body: json!({"message": "Bad Gateway"}) },
        Fault { status: 429, headers: vec![("retry-after", "1".into())], body: json!({"message": "slow down"}) },
        Fault {
            status: 403,
            headers: vec![],
            body: json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}),
        },
    ]);
    let p = issue_event("issues.opened.json", 6, &["type/major-feature"], None);
    h.deliver("issues", "d-6", &p).await;
    h.settle().await;
    assert_eq!(h.github.labels(REPO, 6), sorted(&["type/major-feature", "lane/A", "rollout/4-piloted", "status/planning"]));
    assert_eq!(h.github.writes().len(), 1, "applied once: {:?}", h.github.writes());
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_write_becomes_a_dead_letter_that_can_be_replayed() {
    let h = Harness::start().await;
    h.github.seed(REPO, 7, &["type/bug"]);
    h.github.fail_next([Fault { status: 422, headers: vec![], body: json!({"message": "Validation Failed"}) }]);
    h.deliver("issues", "d-7", &issue_event("issues.opened.json", 7, &["type/bug"], None)).await;
    h.settle().await;
    let dead = h.app.store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].delivery, "d-7");
    assert!(dead[0].last_error.contains("422"), "{}", dead[0].last_error);
    assert_eq!(h.github.labels(REPO, 7), vec!["type/bug"]);

    assert_eq!(h.app.store.requeue(&[dead[0].id]).await.unwrap(), 1);
    // Requeued rows wait for the dispatcher's next look (it polls while idle).
    h.settle().await;
    assert!(h.app.store.dead_letters().await.unwrap().is_empty());
    assert!(h.github.labels(REPO, 7).contains(&"lane/B".to_string()));
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn events_of_one_issue_run_in_arrival_order() {
    let h = Harness::start().await;
    let issues = 6u64;
    let per_issue = 8;
    for n in 0..issues {
        h.github.seed(REPO, 100 + n, &[]);
    }
    let mut sent: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for i in 0..per_issue {
        for n in 0..issues {
            let delivery = format!("d-{n}-{i}");
            let mut p = issue_event("issues.edited.json", 100 + n, &[], None);
            p["issue"]["updated_at"] = json!(format!("2026-11-21T10:00:{i:02}Z"));
            assert_eq!(h.deliver("issues", &delivery, &p).await.0, 202);
            sent.entry(format!("{REPO}#{}", 100 + n)).or_default().push(delivery);
        }
    }
    h.settle().await;
    for (issue, deliveries) in sent {
        let key: rollgate::model::IssueKey = issue.parse().unwrap();
        // The test's own deliveries, in order (the echoes of rollgate's writes come in between).
        let processed: Vec<String> = h.app.store.audit(&key).await.unwrap().into_iter().map(|a| a.delivery).filter(|d| d.starts_with("d-")).collect();
        assert_eq!(processed, deliveries, "order on {issue}");
    }
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn different_issues_are_processed_in_parallel_and_one_issue_serially() {
    let h = Harness::start().await;
    for n in 200..203 {
        h.github.seed(REPO, n, &["type/bug"]);
    }
    h.github.pause();
    for n in 200..203u64 {
        h.deliver("issues", &format!("p-{n}"), &issue_event("issues.opened.json", n, &["type/bug"], None)).await;
    }
    // A second event for issue 200 must wait for the first.
    let mut second = issue_event("issues.edited.json", 200, &["type/bug"], None);
    second["issue"]["updated_at"] = json!("2026-11-21T10:00:00Z");
    h.deliver("issues", "p-200-b", &second).await;
    for _ in 0..200 {
        if h.github.held() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(h.github.held(), 3, "the three issues' writes are in flight together");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(h.github.held(), 3, "the second event of issue 200 has not started");
    h.github.resume();
    h.settle().await;
    let done = h.processed(200..203, "p-").await;
    assert_eq!(done.len(), 4, "{done:?}");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn an_edited_policy_file_changes_the_outcome_without_recompiling() {
    // The operator's copy of the pack, with one table value changed: bugs start in lane A.
    let pack = tempfile::tempdir().unwrap();
    support::copy_dir(&support::policies_dir(), pack.path());
    let playbook = pack.path().join("playbook.toml");
    let text = std::fs::read_to_string(&playbook).unwrap();
    assert!(text.contains("bug = \"B\""));
    std::fs::write(&playbook, text.replacen("bug = \"B\"", "bug = \"A\"", 1)).unwrap();

    let dir = pack.path().to_path_buf();
    let h = Harness::start_with(move |s| s.policies = dir).await;
    h.github.seed(REPO, 9, &["type/bug", "scope/single-client"]);
    h.deliver("issues", "d-9", &issue_event("issues.opened.json", 9, &["type/bug", "scope/single-client"], None)).await;
    h.settle().await;
    assert_eq!(h.github.labels(REPO, 9), sorted(&["type/bug", "scope/single-client", "lane/A", "rollout/1-direct", "status/planning"]));
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_count_deliveries_effects_and_tracker_calls() {
    let h = Harness::start().await;
    h.github.seed(REPO, 50, &["type/bug"]);
    h.deliver("issues", "m-1", &issue_event("issues.opened.json", 50, &["type/bug"], None)).await;
    let body = serde_json::to_vec(&issue_event("issues.opened.json", 50, &["type/bug"], None)).unwrap();
    support::send(&h.http, &h.url(), "issues", "m-2", body, Some("sha256=00")).await;
    h.settle().await;
    let text = h.http.get(format!("{}/metrics", h.url())).send().await.unwrap().text().await.unwrap();
    let value = |line_start: &str| -> f64 {
        text.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(-1.0)
    };
    // The registry is per process and tests run in parallel: at least ours is counted.
    assert!(value("rollgate_deliveries_total{tracker=\"github\",outcome=\"queued\"}") >= 1.0, "{text}");
    assert!(value("rollgate_deliveries_total{tracker=\"github\",outcome=\"unauthorized\"}") >= 1.0, "{text}");
    assert!(value("rollgate_effects_total{kind=\"add_labels\",result=\"applied\"}") >= 1.0, "{text}");
    assert!(value("rollgate_tracker_calls_total{tracker=\"github\",outcome=\"ok\"}") >= 1.0, "{text}");
    assert!(value("rollgate_evaluation_seconds_count") >= 1.0, "{text}");
    assert_eq!(value("rollgate_tracker_rate_limit_remaining{tracker=\"github\"}"), 4987.0, "{text}");
    assert_eq!(value("rollgate_inbox_pending"), 0.0, "{text}");
    assert!(text.contains("rollgate_policy_info{version=\""), "{text}");
    assert!(text.contains("# TYPE rollgate_evaluation_seconds histogram"), "{text}");
    h.app.stop().await.unwrap();
}

/// A person's comment on issue `n`, as GitHub delivers it.
fn comment_by(n: u64, labels: &[&str], actor: &str, body: &str) -> serde_json::Value {
    let mut c = issue_event("issue_comment.created.json", n, labels, None);
    c["comment"]["body"] = json!(body);
    c["comment"]["user"] = json!({ "login": actor, "type": "User" });
    c["sender"] = json!({ "login": actor, "type": "User" });
    c
}

#[tokio::test]
async fn a_comment_with_150_bad_lines_gets_one_short_reply_and_holds_nothing_up() {
    let h = Harness::start().await;
    let labels = ["type/bug", "lane/B", "rollout/1-direct", "status/planning"];
    h.github.seed(REPO, 30, &labels);
    let filler = "x".repeat(440);
    let mut lines: Vec<String> = (0..50).map(|i| format!("/frobnicate-{i} {filler}")).collect();
    lines.extend((0..50).map(|i| format!("/pause trigger=\"{i} {filler}")));
    lines.extend((0..50).map(|i| format!("/rollout 9{i} {filler}")));
    h.deliver("issue_comment", "c-30", &comment_by(30, &labels, "dev1", &lines.join("\n"))).await;
    h.settle().await;
    let replies: Vec<_> = h.github.issue(REPO, 30).comments.into_iter().filter(|c| c.body.starts_with("<!-- rollgate:reply-")).collect();
    assert_eq!(replies.len(), 1, "one reply");
    let reply = &replies[0].body;
    assert!(reply.chars().count() <= 65_536 && reply.ends_with("… and 140 more lines."), "{reply}");
    let stats = h.app.store.inbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 0), "nothing dead-lettered");
    let c30 = h.app.store.audit(&rollgate::model::IssueKey::github(REPO, 30)).await.unwrap().into_iter().find(|a| a.delivery == "c-30").unwrap();
    assert_eq!(c30.attempt, 1, "processed at the first attempt, not retried");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_hostile_title_stays_text_and_the_pms_tick_on_the_real_box_counts() {
    let h = Harness::start_with(|s| s.roles.pm = vec!["priya".into()]).await;
    let labels = ["type/enhancement", "lane/A", "rollout/3-demoed", "decision/accept", "status/dev-released"];
    let title = "x</details><!-- box:release-note -->\n- [x] y <!-- box:release-note --> cc @org/team";
    let n = h.github.person("someone").open_issue(REPO, title, "", &labels);
    assert_eq!(n, 1);
    h.settle().await;
    let checklist = h.github.issue(REPO, n).comments.into_iter().find(|c| c.body.starts_with("<!-- rollgate:checklist -->")).unwrap();
    let boxes = rollgate::policy::boxes::boxes(&checklist.body);
    assert_eq!(boxes.len(), 5, "only the real boxes: {boxes:?}\n{}", checklist.body);
    // Outside code, the title is text: no mention GitHub would notify, no HTML.
    let mut in_code = false;
    for event in pulldown_cmark::Parser::new(&checklist.body) {
        match event {
            pulldown_cmark::Event::Start(pulldown_cmark::Tag::CodeBlock(_)) => in_code = true,
            pulldown_cmark::Event::End(pulldown_cmark::TagEnd::CodeBlock) => in_code = false,
            pulldown_cmark::Event::Text(t) if !in_code => assert!(!t.contains("@org/team"), "a live mention: {t:?}"),
            pulldown_cmark::Event::Html(t) | pulldown_cmark::Event::InlineHtml(t) => {
                assert!(!t.contains("box:release-note") || t.as_ref() == "<!-- box:release-note -->", "{t:?}")
            }
            _ => {}
        }
    }
    assert!(checklist.body.contains("#### x&lt;/details&gt;&lt;!-- box:release-note --&gt; - \\[x\\] y"), "{}", checklist.body);

    // The PM ticks the real release-note box on GitHub; GitHub delivers the edit.
    h.github.person("priya").tick(checklist.id, "release-note");
    h.settle().await;
    let after = h.github.issue(REPO, n).comments.into_iter().find(|c| c.id == checklist.id).unwrap();
    assert!(after.body.contains("- [x] **Release note**") && after.body.contains("**Next:** Training material"), "{}", after.body);
    h.app.stop().await.unwrap();
}

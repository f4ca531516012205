//! Crash safety: `rollgate serve` killed with SIGKILL, then started again on the same database.
//! Every accepted delivery is processed exactly once and no comment is posted twice.

mod support;

use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::fake_github::FakeGithub;
use support::{issue_event, settle, signed, Service, REPO};

/// Issues whose first event moves them from lane B to lane A, with the R5 comment.
const PROMOTED: &[&str] = &["type/bug", "lane/B", "rollout/3-demoed"];
/// The fixtures' own dates are in 2019, which would make the decision clock (R18) long
/// overdue and fire during the test; these tests are about crashes, not clocks.
const NOT_DUE: &str = "2027-06-01T10:00:00Z";
const PROMOTED_AFTER: &[&str] = &["type/bug", "lane/A", "rollout/3-demoed", "status/planning"];

fn sorted(labels: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

async fn audited(store: &dyn rollgate::store::Store, issues: impl Iterator<Item = u64>) -> Vec<String> {
    let mut all = Vec::new();
    for n in issues {
        let key = rollgate::model::IssueKey::github(REPO, n);
        all.extend(store.audit(&key).await.unwrap().into_iter().map(|a| a.delivery));
    }
    all
}

#[tokio::test]
async fn events_left_in_the_inbox_by_a_killed_process_are_finished_by_the_next() {
    let github = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    for n in 1..=5 {
        github.seed(REPO, n, PROMOTED);
    }
    // GitHub creates each R5 comment but the answer never reaches the first process: the
    // worst moment to crash, since only the tracker knows the comment exists.
    github.stall_after_creating_comments();
    let first = Service::spawn(dir.path(), &github).await;
    let http = reqwest::Client::new();
    let mut sent = Vec::new();
    for round in 0..4 {
        for n in 1..=5u64 {
            let mut p = issue_event("issues.opened.json", n, PROMOTED, None);
            if round > 0 {
                p = issue_event("issues.edited.json", n, PROMOTED, None);
            }
            p["issue"]["updated_at"] = json!(NOT_DUE);
            let id = format!("d-{n}-{round}");
            let (body, sig) = signed(&p);
            let (status, _) = support::send(&http, &first.url, "issues", &id, body, Some(&sig)).await;
            assert_eq!(status, 202);
            sent.push(id);
        }
    }
    for _ in 0..200 {
        if github.held() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(github.held(), 5, "one comment per issue created and unanswered");
    for n in 1..=5 {
        assert_eq!(github.issue(REPO, n).comments.len(), 1);
    }
    first.kill9();
    github.resume();

    let second = Service::spawn(dir.path(), &github).await;
    let store = rollgate::store::open(&format!("sqlite://{}", dir.path().join("rollgate.db").display())).await.unwrap();
    settle(store.as_ref()).await;
    let mut processed = audited(store.as_ref(), 1..=5).await;
    processed.sort();
    sent.sort();
    assert_eq!(processed, sent, "every accepted delivery processed exactly once");
    for n in 1..=5 {
        assert_eq!(github.labels(REPO, n), sorted(PROMOTED_AFTER), "issue {n}");
        assert_eq!(github.issue(REPO, n).comments.len(), 1, "issue {n} has one R5 comment");
    }
    drop(second);
}

#[tokio::test]
async fn a_burst_interrupted_by_kill_9_loses_nothing_and_repeats_nothing() {
    let github = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let issues = 40u64;
    let per_issue = 25u64;
    for n in 1..=issues {
        github.seed(REPO, n, PROMOTED);
    }
    let first = Service::spawn(dir.path(), &github).await;
    let url = first.url.clone();
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // 8 senders, each owning 5 issues, so every issue's deliveries go out in order.
    let mut senders = Vec::new();
    for s in 0..8u64 {
        let (url, accepted, count, stop) = (url.clone(), accepted.clone(), count.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for round in 0..per_issue {
                for n in (1..=issues).filter(|n| n % 8 == s) {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let fixture = if round == 0 { "issues.opened.json" } else { "issues.edited.json" };
                    let mut p = issue_event(fixture, n, PROMOTED, None);
                    p["issue"]["title"] = json!(format!("round {round}"));
                    p["issue"]["updated_at"] = json!(NOT_DUE);
                    let id = format!("b-{n}-{round}");
                    let (body, sig) = signed(&p);
                    let sent = http
                        .post(format!("{url}/webhooks/github"))
                        .header("x-github-event", "issues")
                        .header("x-github-delivery", &id)
                        .header("x-hub-signature-256", sig)
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 202 => {
                            accepted.lock().unwrap().push(id);
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => return, // the service is gone: this sender stops, as GitHub would fail the delivery
                    }
                }
            }
        }));
    }
    let total = (issues * per_issue) as usize;
    while count.load(Ordering::SeqCst) < total / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill9();
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }
    let accepted: BTreeSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    assert!(accepted.len() >= total / 3 && accepted.len() < total, "killed mid-burst: {} accepted", accepted.len());

    let _second = Service::spawn(dir.path(), &github).await;
    let store = rollgate::store::open(&format!("sqlite://{}", dir.path().join("rollgate.db").display())).await.unwrap();
    settle(store.as_ref()).await;
    let processed = audited(store.as_ref(), 1..=issues).await;
    let unique: BTreeSet<String> = processed.iter().cloned().collect();
    assert_eq!(unique.len(), processed.len(), "no delivery processed twice");
    let missing: Vec<_> = accepted.difference(&unique).collect();
    assert!(missing.is_empty(), "accepted but never processed: {missing:?}");
    let stats = store.inbox_stats().await.unwrap();
    assert_eq!(stats.dead, 0);
    for n in 1..=issues {
        let issue = github.issue(REPO, n);
        if accepted.contains(&format!("b-{n}-0")) {
            let mut labels = issue.labels.clone();
            labels.sort();
            assert_eq!(labels, sorted(PROMOTED_AFTER), "issue {n}");
            assert_eq!(issue.comments.len(), 1, "issue {n}: one R5 comment, never two");
        }
    }
}

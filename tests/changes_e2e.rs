//! Changes as GitHub states them, through the closed loop: label swaps in either order, late
//! deliveries with older snapshots, rollgate's own echoes, refused changes kept out of the
//! history, a comment acted on once, a marker in someone else's comment, and every documented
//! `issues` action accepted. Each test waits until the system is quiet, then checks what GitHub
//! holds, what rollgate recorded, and how many writes it took.

mod support;

use rollgate::model::IssueKey;
use rollgate::model::{HistoryEntry, Source};
use serde_json::json;
use support::fake_github::{Order, SwapOrder, BOT_LOGIN};
use support::{fixture, Harness, REPO};

const PM: &str = "priya";
const DEV: &str = "dev1";

async fn harness() -> Harness {
    Harness::start_with(|s| {
        s.roles.pm = vec![PM.into()];
        s.roles.qa_lead = vec!["quinn".into()];
    })
    .await
}

fn sorted(labels: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

async fn history(h: &Harness, n: u64) -> Vec<HistoryEntry> {
    h.app.store.history(&IssueKey::github(REPO, n)).await.unwrap()
}

fn of<'a>(history: &'a [HistoryEntry], field: &str) -> Vec<&'a HistoryEntry> {
    history.iter().filter(|h| h.field == field).collect()
}

/// A single-client bug, filed by someone: lane B, rollout 1, planning.
async fn bug(h: &Harness) -> u64 {
    let n = h.github.person("someone").open_issue(REPO, "Login fails", "", &["type/bug", "scope/single-client"]);
    h.quiet().await;
    assert_eq!(h.github.labels(REPO, n), sorted(&["type/bug", "scope/single-client", "lane/B", "rollout/1-direct", "status/planning"]));
    n
}

#[tokio::test]
async fn a_lane_swap_is_one_change_in_either_order() {
    for order in [SwapOrder::RemoveFirst, SwapOrder::AddFirst] {
        let h = harness().await;
        let n = bug(&h).await;
        let writes = h.github.writes_on(REPO, n);
        h.github.person(PM).swap_label(REPO, n, "lane/B", "lane/A", order);
        h.quiet().await;
        // Never both lanes, never the default lane given back to a lane-less bug.
        assert_eq!(h.github.labels(REPO, n), sorted(&["type/bug", "scope/single-client", "lane/A", "rollout/1-direct", "status/planning"]), "{order:?}");
        assert_eq!(h.github.writes_on(REPO, n), writes, "{order:?}: the PM's swap needs nothing from rollgate: {:?}", h.github.writes());
        let lanes: Vec<(Option<String>, Option<String>, String)> =
            of(&history(&h, n).await, "lane").into_iter().map(|e| (e.from.clone(), e.to.clone(), e.actor.clone())).collect();
        assert_eq!(lanes, [(None, Some("B".into()), "rollgate".to_string()), (Some("B".into()), Some("A".into()), PM.into())], "{order:?}");
        let comments = h.github.issue(REPO, n).comments;
        assert!(comments.is_empty(), "{order:?}: no comment about a lane-less issue or two lanes: {comments:?}");
        h.app.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_swap_by_someone_outside_the_role_is_judged_once_and_put_back_once() {
    for order in [SwapOrder::RemoveFirst, SwapOrder::AddFirst] {
        let h = harness().await;
        let n = bug(&h).await;
        h.github.person(DEV).swap_label(REPO, n, "lane/B", "lane/A", order);
        h.quiet().await;
        assert!(h.github.labels(REPO, n).contains(&"lane/B".to_string()) && !h.github.labels(REPO, n).contains(&"lane/A".to_string()), "{order:?}");
        let comments = h.github.issue(REPO, n).comments;
        assert_eq!(comments.len(), 1, "{order:?}: one comment: {comments:?}");
        assert!(comments[0].body.contains("lane B → A"), "{order:?}: it names the change the developer made: {}", comments[0].body);
        let lanes = history(&h, n).await;
        let refused: Vec<&HistoryEntry> = of(&lanes, "lane").into_iter().filter(|e| e.refused.is_some()).collect();
        assert_eq!(refused.len(), 1, "{order:?}: {lanes:?}");
        assert!(refused[0].refused.as_deref().unwrap().contains("R8"), "{refused:?}");
        // Putting B back is not a transition: the lane never stopped being B.
        assert_eq!(of(&lanes, "lane").iter().filter(|e| e.refused.is_none()).count(), 1, "{order:?}: {lanes:?}");
        h.app.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_status_swap_is_judged_once_in_either_order() {
    for order in [SwapOrder::RemoveFirst, SwapOrder::AddFirst] {
        let h = harness().await;
        let n = bug(&h).await;
        h.github.person(PM).comment(REPO, n, "/decide accept sprint=2026-W48 dev-release=2026-11-24");
        h.quiet().await;
        assert!(h.github.labels(REPO, n).contains(&"status/decided".to_string()));
        h.github.person(DEV).swap_label(REPO, n, "status/decided", "status/in-dev", order);
        h.quiet().await;
        let statuses: Vec<String> = h.github.labels(REPO, n).into_iter().filter(|l| l.starts_with("status/")).collect();
        assert_eq!(statuses, ["status/in-dev"], "{order:?}");
        let blocked = h.github.issue(REPO, n).comments.into_iter().filter(|c| c.body.contains("rollgate:blocked")).count();
        assert_eq!(blocked, 0, "{order:?}: no spurious Blocked comment");
        let moves: Vec<(Option<String>, Option<String>)> =
            of(&history(&h, n).await, "status").into_iter().map(|e| (e.from.clone(), e.to.clone())).collect();
        assert_eq!(moves.last().unwrap(), &(Some("decided".into()), Some("in-dev".into())), "{order:?}: {moves:?}");
        assert!(!moves.iter().any(|(_, to)| to.is_none()), "{order:?}: never a status-less moment: {moves:?}");
        h.app.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_late_delivery_with_an_older_snapshot_changes_nothing() {
    let h = harness().await;
    // The title is edited right after the issue is filed, and that delivery comes late: it
    // carries the issue as it was before rollgate labelled it.
    h.github.hold_deliveries();
    let n = h.github.person("pm-alice").open_issue(REPO, "Login fails", "", &["type/bug", "scope/single-client"]);
    h.github.person("pm-alice").edit_title(REPO, n, "Login fails on Safari");
    let late = h.github.held_deliveries().into_iter().rfind(|d| d.action == "edited").unwrap().seq;
    h.github.release_deliveries(Order::custom(move |held| held.retain(|d| d.seq != late)));
    h.quiet().await;
    let labelled = h.github.labels(REPO, n);
    let writes = h.github.writes_on(REPO, n);
    let before = history(&h, n).await;
    h.github.hold_deliveries();
    h.github.release_deliveries(Order::AsMade);
    let held_back = h.github.deliveries().into_iter().find(|d| d.seq == late).unwrap();
    assert_eq!(held_back.payload["issue"]["labels"].as_array().unwrap().len(), 2, "its snapshot predates rollgate's labels");
    h.github.redeliver(&held_back.id);
    h.quiet().await;
    assert_eq!(h.github.labels(REPO, n), labelled);
    assert_eq!(h.github.writes_on(REPO, n), writes, "no write for a title edit");
    let after = history(&h, n).await;
    assert_eq!(after.len(), before.len(), "nothing recorded: no field changed: {:?}", &after[before.len()..]);
    assert!(!after.iter().any(|e| e.actor == "pm-alice" && e.to.is_none()), "no field recorded as removed by the editor");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_release_is_recorded_as_refused_and_never_counted() {
    let h = harness().await;
    let n = h.github.person("someone").open_issue(REPO, "Export", "", &["type/enhancement", "scope/cross-client"]);
    h.quiet().await;
    let pm = h.github.person(PM);
    pm.comment(REPO, n, "/decide accept sprint=2026-W48 dev-release=2026-11-24");
    h.quiet().await;
    for (from, to) in [("status/decided", "status/in-dev"), ("status/in-dev", "status/dev-released"), ("status/dev-released", "status/rollout-confirmed"), ("status/rollout-confirmed", "status/in-rollout")] {
        pm.swap_label(REPO, n, from, to, SwapOrder::AddFirst);
        h.quiet().await;
    }
    // Closed as completed with artifacts missing: R11 refuses, the issue is reopened.
    pm.close(REPO, n, "completed");
    h.quiet().await;
    assert!(h.github.issue(REPO, n).open, "reopened");
    assert!(h.github.labels(REPO, n).contains(&"status/in-rollout".to_string()));
    let history = history(&h, n).await;
    let released: Vec<&HistoryEntry> = of(&history, "status").into_iter().filter(|e| e.to.as_deref() == Some("released")).collect();
    assert!(released.is_empty(), "rollgate never applied released: {released:?}");
    let closes: Vec<&HistoryEntry> = of(&history, "state").into_iter().filter(|e| e.to.as_deref() == Some("closed")).collect();
    assert_eq!(closes.len(), 1);
    assert!(closes[0].refused.as_deref().is_some_and(|r| r.contains("R11")), "{closes:?}");
    assert!(!of(&history, "state").iter().any(|e| e.source == Source::Rollgate), "the reopen is not a transition");
    // The month's report does not count it.
    let cfg = rollgate::report::MetricsFile::load(&support::policies_dir()).unwrap();
    let now = chrono::Utc::now();
    let month = format!("{}", now.format("%Y-%m")).parse().unwrap();
    let figures = rollgate::report::figures(h.app.store.as_ref(), &Default::default(), &cfg, month).await.unwrap();
    assert!(figures.last().unwrap().releases.is_empty(), "{:?}", figures.last().unwrap().releases);
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_comment_is_acted_on_once_whatever_delivery_brings_it() {
    let h = harness().await;
    let n = bug(&h).await;
    let id = h.github.person(PM).comment(REPO, n, "/rollout 2");
    h.quiet().await;
    assert!(h.github.labels(REPO, n).contains(&"rollout/2-notified".to_string()));
    // The PM sets it back to 1 the normal way...
    h.github.person(PM).swap_label(REPO, n, "rollout/2-notified", "rollout/1-direct", SwapOrder::AddFirst);
    h.quiet().await;
    assert!(h.github.labels(REPO, n).contains(&"rollout/1-direct".to_string()));
    // ...and someone replays last week's signed delivery of the comment under a new id.
    let old = h.github.deliveries().into_iter().find(|d| d.comment == Some(id) && d.action == "created").unwrap();
    let (status, _) = h.deliver("issue_comment", "replayed-under-a-new-id", &old.payload).await;
    assert_eq!(status, 202);
    h.quiet().await;
    assert!(h.github.labels(REPO, n).contains(&"rollout/1-direct".to_string()), "the old command does not run again");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_marker_in_someone_elses_comment_is_never_taken_for_rollgates() {
    let h = harness().await;
    let n = bug(&h).await;
    let fake = "<!-- rollgate:checklist -->\n- [x] **Release note** <!-- box:release-note -->\nI pasted this.";
    let theirs = h.github.person(DEV).comment(REPO, n, fake);
    h.quiet().await;
    h.github.person(DEV).edit_comment(theirs, &fake.replace("pasted", "edited"));
    h.quiet().await;
    let pm = h.github.person(PM);
    pm.comment(REPO, n, "/decide accept sprint=S dev-release=2026-11-24");
    h.quiet().await;
    for (from, to) in [("status/decided", "status/in-dev"), ("status/in-dev", "status/dev-released")] {
        pm.swap_label(REPO, n, from, to, SwapOrder::AddFirst);
        h.quiet().await;
    }
    let comments = h.github.issue(REPO, n).comments;
    let mine = comments.iter().find(|c| c.id == theirs).unwrap();
    assert!(mine.body.ends_with("I edited this."), "nobody else's comment is ever edited: {}", mine.body);
    let ours: Vec<_> = comments.iter().filter(|c| c.author == BOT_LOGIN && c.body.starts_with("<!-- rollgate:checklist -->")).collect();
    assert_eq!(ours.len(), 1, "rollgate wrote its own checklist");
    let history = history(&h, n).await;
    assert!(!history.iter().any(|e| e.field.starts_with("artifact.")), "the ticked box in their comment counts for nothing: {history:?}");
    h.app.stop().await.unwrap();
}

/// Every `issues` action GitHub documents, and fields its schema lets be null or absent:
/// accepted (202), processed or ignored, never 400.
#[tokio::test]
async fn every_documented_issues_payload_is_accepted() {
    let h = harness().await;
    let n = bug(&h).await;
    let base = {
        let mut p = fixture("issues.edited.json");
        p["issue"]["number"] = json!(n);
        p["issue"]["labels"] = json!([]);
        p
    };
    let actions = [
        "assigned", "closed", "deleted", "demilestoned", "edited", "labeled", "locked", "milestoned", "opened", "pinned", "reopened",
        "transferred", "typed", "unassigned", "unlabeled", "unlocked", "unpinned", "untyped", "field_added", "field_removed",
    ];
    for (i, action) in actions.iter().enumerate() {
        let mut p = base.clone();
        p["action"] = json!(action);
        if *action == "pinned" || *action == "typed" {
            // Fields the schema allows to be missing or null on these.
            p["issue"].as_object_mut().unwrap().remove("state");
            p["issue"]["user"] = json!(null);
        }
        let (status, body) = h.deliver("issues", &format!("documented-{i}"), &p).await;
        assert_eq!(status, 202, "{action}: {body}");
    }
    let mut p = fixture("issue_comment.created.json");
    p["issue"]["number"] = json!(n);
    p["comment"]["user"] = json!(null);
    let (status, body) = h.deliver("issue_comment", "ghost-comment", &p).await;
    assert_eq!(status, 202, "a comment by a deleted account: {body}");
    for action in ["deleted", "pinned", "unpinned"] {
        let mut p = fixture("issue_comment.created.json");
        p["action"] = json!(action);
        let (status, body) = h.deliver("issue_comment", &format!("comment-{action}"), &p).await;
        assert_eq!(status, 202, "issue_comment.{action}: {body}");
    }
    h.quiet().await;
    assert_eq!(h.app.store.inbox_stats().await.unwrap().dead, 0);
    h.app.stop().await.unwrap();
}

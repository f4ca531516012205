//! Tracker faults against a fault-injecting fake GitHub: 5xx, 429 and secondary rate limits
//! with Retry-After, stalls past the client's timeout, reset connections, each before a write
//! is applied or after it. Whatever happens, the tracker ends up as a fault-free run leaves it,
//! with one comment per purpose; a failing tracker is not hammered; interactive writes go
//! before background ones; a label rollgate keeps flipping is stopped and reported.

mod support;

use rollgate::config::Secret;
use rollgate::model::IssueKey;
use rollgate::tracker::github::GithubTracker;
use rollgate::tracker::guard::{with_priority, Guarded, Priority};
use rollgate::tracker::{RetryPolicy, Tracker, TrackerError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use support::fake_github::{Chaos, FakeGithub, FaultKind, TOKEN};
use support::{issue_event, Harness, REPO};

/// The circuit gauge and the flap counter live in the process's one metrics registry, and the
/// breaker tests need the CPU to keep their timing: these tests run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until nothing is pending in the inbox (longer than `support::settle` allows: a tracker
/// that fails, or a circuit cooling down, takes its time).
async fn drain(h: &Harness, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let stats = h.app.store.inbox_stats().await.unwrap();
        if stats.pending == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let stuck = h.app.store.retrying(5).await.unwrap();
            panic!("inbox did not drain in {within:?}: {stats:?}; retrying: {stuck:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(h: &Harness) -> String {
    h.http.get(format!("{}/metrics", h.url())).send().await.unwrap().text().await.unwrap()
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' ')).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The marker a bot comment starts with (`<!-- rollgate:TAG -->`).
fn marker(body: &str) -> String {
    body.lines().next().unwrap_or("").to_string()
}

/// What a run leaves on the fake for one issue: sorted labels, and comments by marker.
fn outcome(fake: &FakeGithub, n: u64) -> (Vec<String>, Vec<(String, String)>) {
    let mut comments: Vec<(String, String)> = fake.issue(REPO, n).comments.into_iter().map(|c| (marker(&c.body), c.body)).collect();
    comments.sort();
    (fake.labels(REPO, n), comments)
}

/// Dates the deliveries two days ahead: clocks (R16, R18) run from the tracker's times, and
/// with the fixtures' 2019 dates the sweep would fire overdue timers whenever a run lasts past
/// its 30 s tick, making the outcome depend on how long the run took.
fn future(p: &mut Value, hours: i64) {
    let t = (chrono::Utc::now() + chrono::Duration::days(2) + chrono::Duration::hours(hours)).format("%Y-%m-%dT%H:00:00Z").to_string();
    p["issue"]["created_at"] = json!(t);
    p["issue"]["updated_at"] = json!(t);
}

const ISSUES: u64 = 50;
const FIRST: u64 = 300;

/// The deliveries of the 50 issues, in three rounds; a round is sent when the previous one is
/// processed, as people would act on what the bot did. What people change on the tracker
/// (a label added) is put on the fake before its delivery is sent.
async fn run_rounds(h: &Harness, within: Duration) {
    let kinds = [("type/bug", true), ("type/enhancement", false), ("type/major-feature", false)];
    for i in 0..ISSUES {
        let n = FIRST + i;
        h.github.seed(REPO, n, &[kinds[i as usize % 3].0]);
    }
    // Round 1: opened.
    for i in 0..ISSUES {
        let n = FIRST + i;
        let mut p = issue_event("issues.opened.json", n, &[kinds[i as usize % 3].0], None);
        future(&mut p, 0);
        assert_eq!(h.deliver("issues", &format!("open-{n}"), &p).await.0, 202);
    }
    drain(h, within).await;
    // Round 2: on bugs the PM adds rollout/3-demoed (lane promotion, one comment); on the
    // others someone writes a command rollgate does not know (one reply comment).
    for i in 0..ISSUES {
        let n = FIRST + i;
        let mut labels = h.github.labels(REPO, n);
        let (delivery, event, mut p) = if kinds[i as usize % 3].1 {
            labels.push("rollout/3-demoed".into());
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            h.github.set_labels(REPO, n, &refs);
            ("label", "issues", issue_event("issues.labeled.json", n, &refs, Some("rollout/3-demoed")))
        } else {
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            let mut p = issue_event("issue_comment.created.json", n, &refs, None);
            p["comment"]["id"] = json!(700_000 + n);
            p["comment"]["body"] = json!("Looks good.\n/frobnicate now");
            p["comment"]["user"] = json!({ "login": "sam", "type": "User" });
            ("comment", "issue_comment", p)
        };
        p["sender"] = json!({ "login": "priya-pm", "type": "User" });
        future(&mut p, 1);
        assert_eq!(h.deliver(event, &format!("{delivery}-{n}"), &p).await.0, 202);
    }
    drain(h, within).await;
    // Round 3: an edit (the planner finds nothing to do, or puts right what is missing).
    for i in 0..ISSUES {
        let n = FIRST + i;
        let labels = h.github.labels(REPO, n);
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let mut p = issue_event("issues.edited.json", n, &refs, None);
        future(&mut p, 2);
        assert_eq!(h.deliver("issues", &format!("edit-{n}"), &p).await.0, 202);
    }
    drain(h, within).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_thirty_percent_faults_of_every_kind_the_tracker_ends_as_a_fault_free_run_leaves_it() {
    let _serial = SERIAL.lock().await;
    // The reference: the same deliveries against a fake that never fails.
    let clean = Harness::start().await;
    run_rounds(&clean, Duration::from_secs(30)).await;
    let expected: BTreeMap<u64, _> = (FIRST..FIRST + ISSUES).map(|n| (n, outcome(&clean.github, n))).collect();
    assert_eq!(clean.app.store.inbox_stats().await.unwrap().dead, 0);
    clean.app.stop().await.unwrap();
    // Sanity: the rounds do make labels and comments for the faults to disturb.
    assert!(expected.values().all(|(labels, _)| labels.iter().any(|l| l.starts_with("lane/"))));
    assert_eq!(expected.values().filter(|(_, c)| c.len() == 1).count(), ISSUES as usize, "{expected:#?}");

    let h = Harness::start().await;
    // Stalls cost the client its whole read timeout (20 s): rarer than the other kinds.
    let mut kinds: Vec<(FaultKind, f64)> = FaultKind::ALL.iter().map(|k| (*k, 1.0)).collect();
    for (k, w) in kinds.iter_mut() {
        match k {
            FaultKind::Stall => *w = 0.1,
            // Only writes can be applied first (reads turn it into a plain stall): weigh it up.
            FaultKind::ApplyThenStall => *w = 0.4,
            _ => {}
        }
    }
    h.github.chaos(Chaos::mix(7, 0.30, &kinds, Duration::from_secs(21)));
    run_rounds(&h, Duration::from_secs(120)).await;

    let injected = h.github.injected();
    eprintln!("faults injected: {injected:?}, requests: {}", h.github.requests_seen());
    for k in FaultKind::ALL {
        assert!(injected.get(&k).copied().unwrap_or(0) > 0, "{k:?} was never injected: {injected:?}");
    }
    for n in FIRST..FIRST + ISSUES {
        let (labels, comments) = outcome(&h.github, n);
        assert_eq!((&labels, &comments), (&expected[&n].0, &expected[&n].1), "issue #{n} differs from the fault-free run");
        let mut markers: Vec<&String> = comments.iter().map(|(m, _)| m).collect();
        markers.dedup();
        assert_eq!(markers.len(), comments.len(), "one comment per marker on #{n}: {comments:#?}");
    }
    let stats = h.app.store.inbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 0), "no dead letters: {:#?}", h.app.store.dead_letters().await.unwrap());
    // Each of the rounds' deliveries processed once (the echoes of rollgate's writes besides).
    for prefix in ["open-", "label-", "comment-", "edit-"] {
        let done = h.processed(FIRST..FIRST + ISSUES, prefix).await;
        let want = match prefix { "label-" => ISSUES.div_ceil(3), "comment-" => ISSUES - ISSUES.div_ceil(3), _ => ISSUES };
        assert_eq!(done.len() as u64, want, "{prefix}: {done:?}");
    }
    h.app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tracker_opens_the_circuit_and_everything_is_applied_once_it_heals() {
    let _serial = SERIAL.lock().await;
    let h = Harness::start().await;
    let events = 12u64;
    for n in 0..events {
        h.github.seed(REPO, 400 + n, &["type/bug"]);
    }
    h.github.chaos(Chaos::always(FaultKind::Status503));
    for n in 0..events {
        let mut p = issue_event("issues.opened.json", 400 + n, &["type/bug"], None);
        future(&mut p, 0);
        assert_eq!(h.deliver("issues", &format!("down-{n}"), &p).await.0, 202);
    }
    let mut open = false;
    for _ in 0..300 {
        if metric(&metrics(&h).await, "rollgate_circuit_state{tracker=\"github\"}") == Some(1.0) {
            open = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(open, "the circuit opened: {}", metrics(&h).await);
    // While open, events come round again and fail fast without reaching GitHub.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = h.github.requests_seen();
    let done = h.app.store.inbox_stats().await.unwrap();
    assert!(done.done == 0 && done.dead == 0, "nothing applied, so nothing came back either: {done:?}");
    // Without the breaker every event would be tried up to 8 times, 4 calls each.
    assert!(seen <= 60, "{seen} requests reached a tracker that answers 503 to everything");
    let text = metrics(&h).await;
    assert!(metric(&text, "rollgate_circuit_opened_total{tracker=\"github\"}").unwrap_or(0.0) >= 1.0, "{text}");

    h.github.calm();
    // The cool-down (30 s) passes, one probe goes through, then the rest.
    drain(&h, Duration::from_secs(60)).await;
    for n in 0..events {
        assert!(h.github.labels(REPO, 400 + n).contains(&"lane/B".to_string()), "#{} was applied", 400 + n);
    }
    let stats = h.app.store.inbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 0));
    assert_eq!(h.processed(400..400 + events, "down-").await.len() as u64, events, "each once");
    assert_eq!(metric(&metrics(&h).await, "rollgate_circuit_state{tracker=\"github\"}"), Some(0.0));
    // Each label change made once.
    assert_eq!(h.github.writes().iter().filter(|w| w.starts_with("ADD")).count(), events as usize, "{:?}", h.github.writes());
    h.app.stop().await.unwrap();
}

fn direct(fake: &FakeGithub, read_timeout: Duration) -> GithubTracker {
    let retry = RetryPolicy { attempts: 4, base: Duration::from_millis(20), max_wait_in_place: Duration::from_secs(30) };
    GithubTracker::with_read_timeout(&fake.url, &Secret::new(TOKEN), retry, read_timeout).unwrap()
}

#[tokio::test]
async fn interactive_writes_land_before_queued_background_writes_when_the_budget_is_short() {
    let fake = FakeGithub::start().await;
    for n in 1..=20 {
        fake.seed(REPO, n, &[]);
    }
    // 600 writes a minute (one every 100 ms), a bucket of 4 of which 1 is kept for people.
    let g = std::sync::Arc::new(Guarded::with_budget(direct(&fake, Duration::from_secs(5)), "github-budget-test", 600, 4));
    let mut tasks = Vec::new();
    for n in 1..=12u64 {
        let g = g.clone();
        // What a sweep, a timer or a report does.
        tasks.push(tokio::spawn(with_priority(Priority::Background, async move {
            g.add_labels(&IssueKey::github(REPO, n), &[format!("bg-{n}")]).await
        })));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    for n in 13..=18u64 {
        let g = g.clone();
        tasks.push(tokio::spawn(async move { g.add_labels(&IssueKey::github(REPO, n), &[format!("fg-{n}")]).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let writes = fake.writes();
    let first_fg = writes.iter().position(|w| w.contains("fg-")).unwrap();
    let last_fg = writes.iter().rposition(|w| w.contains("fg-")).unwrap();
    assert_eq!(last_fg - first_fg, 5, "no background write between the interactive ones: {writes:#?}");
    assert!(writes[last_fg + 1..].iter().filter(|w| w.contains("bg-")).count() >= 5, "background writes waited: {writes:#?}");
    assert_eq!(writes.len(), 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_rollgate_keeps_putting_back_is_stopped_after_four_changes_and_reported() {
    let _serial = SERIAL.lock().await;
    let h = Harness::start().await;
    let n = 70;
    h.github.seed(REPO, n, &["type/bug"]);
    h.deliver("issues", "flap-0", &issue_event("issues.opened.json", n, &["type/bug"], None)).await;
    drain(&h, Duration::from_secs(20)).await;
    assert!(h.github.labels(REPO, n).contains(&"lane/B".to_string()));
    let trips_before = metric(&metrics(&h).await, "rollgate_flap_breaker_trips_total{tracker=\"github\"}").unwrap_or(0.0);

    // Someone keeps taking lane/B off; the rules (R1) keep putting it back.
    for round in 1..=5 {
        let before = h.github.labels(REPO, n);
        let without: Vec<&str> = before.iter().map(String::as_str).filter(|l| *l != "lane/B").collect();
        h.github.set_labels(REPO, n, &without);
        let mut p = issue_event("issues.unlabeled.json", n, &without, Some("lane/B"));
        p["sender"] = json!({ "login": "sam", "type": "User" });
        p["issue"]["updated_at"] = json!(format!("2026-11-21T10:0{round}:00Z"));
        h.deliver("issues", &format!("flap-{round}"), &p).await;
        drain(&h, Duration::from_secs(20)).await;
        let has = h.github.labels(REPO, n).contains(&"lane/B".to_string());
        // The opening added it once; three more puts it back make four changes.
        assert_eq!(has, round <= 3, "round {round}: {:?}", h.github.labels(REPO, n));
    }
    let adds = h.github.writes().iter().filter(|w| w.starts_with("ADD") && w.contains("lane/B")).count();
    assert_eq!(adds, 4, "{:?}", h.github.writes());

    let key: IssueKey = format!("{REPO}#{n}").parse().unwrap();
    let audit = h.app.store.audit(&key).await.unwrap();
    let results = |delivery: &str| -> Vec<Value> {
        let a = audit.iter().find(|a| a.delivery == delivery).unwrap();
        a.effects.as_array().unwrap().iter().map(|e| e["result"].clone()).collect()
    };
    assert_eq!(results("flap-3"), vec![json!("applied")]);
    assert_eq!(results("flap-4"), vec![json!("flap-stopped")], "{audit:#?}");
    assert_eq!(results("flap-5"), vec![json!("flap-stopped")]);
    // rollgate's view of the issue is what GitHub holds: the label held back is not in it.
    let view = h.app.store.issue_state(&key).await.unwrap().unwrap().snapshot.labels;
    assert!(!view.contains(&"lane/B".to_string()), "the stored view follows the tracker: {view:?}");
    assert_eq!(view.iter().collect::<std::collections::BTreeSet<_>>(), h.github.labels(REPO, n).iter().collect());
    let trips = metric(&metrics(&h).await, "rollgate_flap_breaker_trips_total{tracker=\"github\"}").unwrap_or(0.0);
    assert_eq!(trips - trips_before, 1.0, "one trip, counted once");
    let stats = h.app.store.inbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 0));
    assert_eq!(h.processed([n], "flap-").await, (0..=5).map(|r| format!("flap-{r}")).collect::<Vec<_>>());
    h.app.stop().await.unwrap();
}

/// The io::ErrorKind at the bottom of an error chain.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

#[tokio::test]
async fn a_reset_fault_is_a_real_connection_reset_and_apply_then_reset_applies_the_write() {
    let fake = FakeGithub::start().await;
    fake.seed(REPO, 1, &[]);
    let http = reqwest::Client::new();
    let url = format!("{}/repos/{REPO}/issues/1/labels", fake.url);
    let post = || http.post(&url).bearer_auth(TOKEN).json(&json!({ "labels": ["x"] })).send();

    fake.chaos(Chaos::always(FaultKind::Reset));
    let err = post().await.expect_err("no answer");
    assert_eq!(io_kind(&err), Some(std::io::ErrorKind::ConnectionReset), "{err:?}");
    assert!(fake.labels(REPO, 1).is_empty(), "reset before the write: nothing applied");

    fake.chaos(Chaos::always(FaultKind::ApplyThenReset));
    let err = post().await.expect_err("no answer");
    assert_eq!(io_kind(&err), Some(std::io::ErrorKind::ConnectionReset), "{err:?}");
    assert_eq!(fake.labels(REPO, 1), vec!["x"], "applied, then the answer was lost");

    fake.calm();
    assert_eq!(post().await.unwrap().status(), 200, "the next connection works");
}

#[tokio::test]
async fn a_stalled_answer_times_out_and_a_comment_whose_answer_was_lost_is_not_posted_twice() {
    let fake = FakeGithub::start().await;
    fake.seed(REPO, 1, &[]);
    let g = Guarded::new(direct(&fake, Duration::from_millis(300)), "github-timeout-test", 0);
    let key = IssueKey::github(REPO, 1);

    // Stalled before the write: every attempt times out, nothing is applied. The stall is far
    // longer than any machine's slowness, so "gave up before the answer" is told apart from
    // "waited for it" without a tight bound.
    fake.chaos(Chaos { stall: Duration::from_secs(120), ..Chaos::always(FaultKind::Stall) });
    let started = std::time::Instant::now();
    match g.add_labels(&key, &["a".into()]).await {
        Err(TrackerError::Transient(e)) => assert!(e.contains("POST"), "{e}"),
        other => panic!("expected a transient error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(60), "the client gave up after its read timeout, not after the stall: {:?}", started.elapsed());
    assert!(fake.labels(REPO, 1).is_empty());

    // Applied, then the answer stalls: the write is there even though the call failed.
    fake.chaos(Chaos { stall: Duration::from_secs(2), ..Chaos::always(FaultKind::ApplyThenStall) });
    assert!(matches!(g.add_labels(&key, &["b".into()]).await, Err(TrackerError::Transient(_))));
    assert_eq!(fake.labels(REPO, 1), vec!["b"]);

    // A comment is posted once, answer lost: not repeated in place (it would be posted twice);
    // the event's retry finds it by its marker.
    assert!(matches!(g.create_comment(&key, "<!-- rollgate:t -->\nhello").await, Err(TrackerError::Transient(_))));
    assert_eq!(fake.issue(REPO, 1).comments.len(), 1);

    fake.calm();
    g.add_labels(&key, &["c".into()]).await.unwrap();
    assert_eq!(fake.labels(REPO, 1), vec!["b", "c"]);
}

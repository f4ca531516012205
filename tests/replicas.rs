//! Two `rollgate serve` replicas on one PostgreSQL database under a burst of signed deliveries;
//! one is killed with SIGKILL mid-burst and started again, while the fake GitHub fails one
//! request in ten on purpose (5xx, rate limits, resets, writes applied and their answer lost).
//! Every accepted delivery must be processed exactly once, in per-issue order, and the tracker
//! must end up holding exactly what a single process gives for the same deliveries without
//! faults.

mod support;

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::fake_github::{Chaos, FakeGithub, FaultKind};
use support::{issue_event, signed, Harness, Service, REPO};

const ISSUES: u64 = 100;
const EVENTS_PER_ISSUE: usize = 30;
/// Far enough ahead that no playbook clock fires during the test (the fixtures are from 2019).
const NOT_DUE: &str = "2027-06-01T10:00:00Z";

/// What people do on issue `n`, one delivery each: the issue is opened, typed, scoped, a flag
/// is toggled, and people keep writing comments with a command rollgate does not know (each gets
/// its own reply: a write per comment that never fights anyone over a label, so the per-process
/// flap breaker plays no part in the outcome).
fn script(n: u64) -> Vec<(String, &'static str, Value)> {
    let mut labels: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    let steps: [(&str, &str); 6] = [
        ("labeled", "type/enhancement"),
        ("labeled", "scope/single-client"),
        ("labeled", "needs/demo"),
        ("unlabeled", "needs/demo"),
        ("comment", "Has anyone tried this?\n/frobnicate now"),
        ("comment", "/frobnicate again"),
    ];
    for j in 0..EVENTS_PER_ISSUE {
        let (event, mut p) = if j == 0 {
            ("issues", issue_event("issues.opened.json", n, &[], None))
        } else {
            let (action, what) = steps[(j - 1) % steps.len()];
            match action {
                "comment" => {
                    let mut p = issue_event("issue_comment.created.json", n, &labels, None);
                    p["comment"]["id"] = json!(800_000 + n * 100 + j as u64);
                    p["comment"]["body"] = json!(what);
                    p["comment"]["user"] = json!({ "login": "sam", "type": "User" });
                    ("issue_comment", p)
                }
                _ => {
                    if action == "labeled" {
                        labels.push(what);
                    } else {
                        labels.retain(|l| *l != what);
                    }
                    let fixture = if action == "labeled" { "issues.labeled.json" } else { "issues.unlabeled.json" };
                    ("issues", issue_event(fixture, n, &labels, Some(what)))
                }
            }
        };
        // A minute apart by the tracker's clock, as a person's separate changes are.
        let at = (chrono::DateTime::parse_from_rfc3339(NOT_DUE).unwrap() + chrono::Duration::minutes(j as i64)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        p["issue"]["updated_at"] = json!(at);
        p["issue"]["created_at"] = json!(NOT_DUE);
        if event == "issue_comment" {
            p["comment"]["created_at"] = json!(at);
            p["comment"]["updated_at"] = json!(at);
        }
        out.push((format!("d-{n}-{j:02}"), event, p));
    }
    out
}

/// What the tracker holds, per issue: labels, and how many comments carry each marker.
fn holdings(github: &FakeGithub) -> BTreeMap<u64, (BTreeSet<String>, BTreeMap<String, usize>)> {
    (1..=ISSUES)
        .map(|n| {
            let issue = github.issue(REPO, n);
            let mut markers = BTreeMap::new();
            for c in &issue.comments {
                if let Some(rest) = c.body.strip_prefix("<!-- rollgate:") {
                    let tag = rest.split(" -->").next().unwrap_or_default().to_string();
                    *markers.entry(tag).or_insert(0) += 1;
                }
            }
            (n, (issue.labels.iter().cloned().collect(), markers))
        })
        .collect()
}

fn seed(github: &FakeGithub) {
    for n in 1..=ISSUES {
        github.seed(REPO, n, &[]);
    }
}

/// The reference: one in-process service on SQLite, no faults, the same deliveries.
async fn reference() -> BTreeMap<u64, (BTreeSet<String>, BTreeMap<String, usize>)> {
    // Open loop, as the replicas below: the script's changes are never made on the fake.
    let h = Harness::start_open_loop_with(|s| s.database_url = format!("sqlite://{}", std::env::temp_dir().join(format!("rollgate-ref-{}.db", std::process::id())).display())).await;
    seed(&h.github);
    let mut tasks = Vec::new();
    for n in 1..=ISSUES {
        let (http, url) = (h.http.clone(), h.url());
        tasks.push(tokio::spawn(async move {
            for (id, event, p) in script(n) {
                let (body, sig) = signed(&p);
                let (status, _) = send_as(&http, &url, event, &id, body, &sig).await;
                assert_eq!(status, 202);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    support::settle_within(h.app.store.as_ref(), Duration::from_secs(180)).await;
    let held = holdings(&h.github);
    let _ = std::fs::remove_file(std::env::temp_dir().join(format!("rollgate-ref-{}.db", std::process::id())));
    held
}

/// Sends one delivery to `primary`, or, when it does not answer (killed), to `fallback`, as
/// GitHub redelivers an unacknowledged delivery. Returns the answer's status word.
async fn send_as(http: &reqwest::Client, url: &str, event: &str, id: &str, body: Vec<u8>, sig: &str) -> (u16, Value) {
    let r = http
        .post(format!("{url}/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", id)
        .header("x-hub-signature-256", sig)
        .body(body)
        .send()
        .await
        .expect("rollgate answers");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn deliver(http: &reqwest::Client, urls: &[String], first: usize, event: &str, id: &str, p: &Value) -> String {
    let (body, sig) = signed(p);
    for attempt in 0..200 {
        let url = &urls[(first + attempt) % urls.len()];
        let sent = http
            .post(format!("{url}/webhooks/github"))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", &sig)
            .body(body.clone())
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(r) = sent {
            if r.status() == 202 {
                let v: Value = r.json().await.unwrap();
                return v["status"].as_str().unwrap().to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("delivery {id} was never accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_killed_mid_burst_process_every_delivery_exactly_once() {
    let expected = reference().await;

    let github = FakeGithub::start().await;
    seed(&github);
    // Every fault kind but the stalls (each costs the client its 20 s read timeout; the tracker
    // fault tests cover them), seeded so a failure reproduces.
    let kinds: Vec<(FaultKind, f64)> =
        FaultKind::ALL.iter().filter(|k| !matches!(k, FaultKind::Stall | FaultKind::ApplyThenStall)).map(|k| (*k, 1.0)).collect();
    github.chaos(Chaos::mix(11, 0.10, &kinds, Duration::from_secs(21)));
    let db = support::fresh_postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let env: &[(&str, &str)] = &[("ROLLGATE_LEASE_SECS", "3"), ("ROLLGATE_WORKERS", "8")];
    let a = Service::spawn_on(dir.path(), &github, &db, env).await;
    let b = Service::spawn_on(dir.path(), &github, &db, env).await;
    let urls = Arc::new(std::sync::Mutex::new(vec![a.url.clone(), b.url.clone()]));
    let b_url = b.url.clone();

    let http = reqwest::Client::new();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for n in 1..=ISSUES {
        let (http, urls, sent) = (http.clone(), urls.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for (j, (id, event, p)) in script(n).into_iter().enumerate() {
                let targets = urls.lock().unwrap().clone();
                // Like a load balancer: deliveries alternate between the replicas.
                answers.push(deliver(&http, &targets, (n as usize + j) % 2, event, &id, &p).await);
                sent.fetch_add(1, Ordering::Relaxed);
            }
            answers
        }));
    }
    // Kill replica A with SIGKILL once a third of the burst is in, mid-processing.
    let total = ISSUES as usize * EVENTS_PER_ISSUE;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while sent.load(Ordering::Relaxed) < total / 3 {
        assert!(tokio::time::Instant::now() < deadline, "the burst stalled at {} deliveries", sent.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.kill9();
    let killed_at = sent.load(Ordering::Relaxed);
    *urls.lock().unwrap() = vec![b_url.clone()];
    // Start it again a little later, on the same database, while the burst goes on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a2 = Service::spawn_on(dir.path(), &github, &db, env).await;
    *urls.lock().unwrap() = vec![a2.url.clone(), b_url.clone()];

    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        for s in t.await.unwrap() {
            *statuses.entry(s).or_default() += 1;
        }
    }
    assert_eq!(statuses.values().sum::<usize>(), total, "every delivery was acknowledged: {statuses:?}");

    let store = rollgate::store::open(&db).await.unwrap();
    // Waits as long as the replicas make progress: on a loaded 2-core machine draining can take
    // minutes (one run saw 573 of 3000 done after 180 s while other builds ran), so what fails
    // the test is a stall — nothing done for two minutes — not a slow drain.
    let (mut last_done, mut last_progress) = (0, tokio::time::Instant::now());
    loop {
        let stats = store.inbox_stats().await.unwrap();
        if stats.pending == 0 {
            assert_eq!(stats.dead, 0, "no dead letters: {:?}", store.dead_letters().await.unwrap());
            assert_eq!(stats.done as usize, total, "every accepted delivery is in the inbox once, done");
            break;
        }
        if stats.done > last_done {
            (last_done, last_progress) = (stats.done, tokio::time::Instant::now());
        }
        assert!(last_progress.elapsed() < Duration::from_secs(120), "the replicas stopped draining the inbox: {stats:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Processed exactly once each, and in arrival order per issue.
    for n in 1..=ISSUES {
        let audit = store.audit(&rollgate::model::IssueKey::github(REPO, n)).await.unwrap();
        let order: Vec<String> = audit.iter().map(|a| a.delivery.clone()).collect();
        let want: Vec<String> = (0..EVENTS_PER_ISSUE).map(|j| format!("d-{n}-{j:02}")).collect();
        assert_eq!(order, want, "issue {n}: each delivery processed once, in order");
    }

    // The tracker holds exactly what the fault-free single process produced: same labels, and
    // one comment per purpose (no effect applied twice), although it failed on purpose.
    let injected = github.injected();
    for (k, _) in &kinds {
        assert!(injected.get(k).copied().unwrap_or(0) > 0, "{k:?} was never injected: {injected:?}");
    }
    let held = holdings(&github);
    for n in 1..=ISSUES {
        assert_eq!(held[&n], expected[&n], "issue {n}: the tracker holds what a fault-free run gives");
        assert!(held[&n].1.values().all(|c| *c == 1), "issue {n}: one comment per purpose: {:?}", held[&n].1);
    }
    eprintln!(
        "replicas: {total} deliveries ({statuses:?}), replica A killed after {killed_at} sent, {} tracker writes, faults injected: {injected:?}",
        github.writes().len()
    );
    drop(a2);
}

//! Hot reload against the running service: edits take effect within a second; a broken folder
//! never replaces the running set.

mod support;

use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{issue_event, Harness, REPO};

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

async fn readyz(h: &Harness) -> Value {
    h.http.get(format!("{}/readyz", h.url())).send().await.unwrap().json().await.unwrap()
}

/// Waits for `/readyz` to satisfy `pred`, with a deadline generous enough for a loaded machine
/// (how fast a reload is, is not a test's business).
async fn until(h: &Harness, pred: impl Fn(&Value) -> bool) {
    let start = Instant::now();
    loop {
        let r = readyz(h).await;
        if pred(&r) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "readyz never changed: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn lane_of_new_bug(h: &Harness, n: u64) -> Vec<String> {
    h.github.seed(REPO, n, &["type/bug", "scope/single-client"]);
    h.deliver("issues", &format!("reload-{n}"), &issue_event("issues.opened.json", n, &["type/bug", "scope/single-client"], None)).await;
    h.settle().await;
    h.github.labels(REPO, n).into_iter().filter(|l| l.starts_with("lane/")).collect()
}

#[tokio::test]
async fn a_saved_policy_applies_within_a_second_and_a_broken_one_never_does() {
    let pack = tempfile::tempdir().unwrap();
    support::copy_dir(&support::policies_dir(), pack.path());
    let dir = pack.path().to_path_buf();
    let h = Harness::start_with(move |s| {
        s.policies = dir;
        s.admin_token = Some(rollgate::config::Secret::new("admin-secret"));
    })
    .await;
    assert_eq!(lane_of_new_bug(&h, 1).await, vec!["lane/B"]);
    let v1 = readyz(&h).await["policy_version"].as_str().unwrap().to_string();

    // A deliberate change, with its fixture updated in the same save: bugs start in lane A.
    edit(&pack.path().join("playbook.toml"), "bug = \"B\"", "bug = \"A\"");
    edit(&pack.path().join("tests/r01-bug-goes-to-lane-b.toml"), "\"lane/B\"", "\"lane/A\"");
    edit(&pack.path().join("tests/r04-confused-client-risk-bumps-the-default.toml"), "\"lane/B\"", "\"lane/A\"");
    until(&h, |r| r["policy_version"] != v1.as_str()).await;
    assert_eq!(lane_of_new_bug(&h, 2).await, vec!["lane/A"]);
    let v2 = readyz(&h).await["policy_version"].as_str().unwrap().to_string();

    // A syntax error: refused, shown with file and line, and the last good set keeps serving.
    edit(&pack.path().join("rules/40-lanes.rhai"), "let set = #{};", "let set = #{;");
    until(&h, |r| r["policy_reload_error"].as_str().is_some_and(|e| e.contains("40-lanes.rhai:"))).await;
    assert_eq!(readyz(&h).await["policy_version"], v2.as_str());
    assert_eq!(readyz(&h).await["status"], "ready");
    assert_eq!(lane_of_new_bug(&h, 3).await, vec!["lane/A"]);

    // Fixed again, but now a table change that its fixtures contradict: refused as well.
    edit(&pack.path().join("rules/40-lanes.rhai"), "let set = #{;", "let set = #{};");
    edit(&pack.path().join("playbook.toml"), "incident-p0 = \"C\"", "incident-p0 = \"B\"");
    until(&h, |r| r["policy_reload_error"].as_str().is_some_and(|e| e.contains("FAIL r01-incident-goes-to-lane-c.toml"))).await;
    assert_eq!(readyz(&h).await["policy_version"], v2.as_str());

    // POST /admin/reload answers with the same verdict, behind the admin token.
    let url = format!("{}/admin/reload", h.url());
    assert_eq!(h.http.post(&url).send().await.unwrap().status(), 401);
    assert_eq!(h.http.post(&url).bearer_auth("wrong").send().await.unwrap().status(), 401);
    let refused = h.http.post(&url).bearer_auth("admin-secret").send().await.unwrap();
    assert_eq!(refused.status(), 422);
    edit(&pack.path().join("playbook.toml"), "incident-p0 = \"B\"", "incident-p0 = \"C\"");
    let ok = h.http.post(&url).bearer_auth("admin-secret").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    until(&h, |r| r["policy_reload_error"].is_null()).await;
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn admin_routes_are_off_without_a_token() {
    let h = Harness::start().await;
    let r = h.http.post(format!("{}/admin/reload", h.url())).bearer_auth("anything").send().await.unwrap();
    assert_eq!(r.status(), 404);
    h.app.stop().await.unwrap();
}

/// Fixtures run on their own calendar, not the deployment's: under a non-UTC
/// ROLLGATE_TIMEZONE (and a work week and holidays of its own) a good change is accepted,
/// while the service itself keeps deciding in its zone.
#[tokio::test]
async fn a_reload_under_a_non_utc_zone_is_accepted() {
    let pack = tempfile::tempdir().unwrap();
    support::copy_dir(&support::policies_dir(), pack.path());
    let dir = pack.path().to_path_buf();
    let h = Harness::start_with(move |s| {
        s.policies = dir;
        s.timezone = chrono_tz::America::Los_Angeles;
        s.workweek = ["Sun", "Mon", "Tue", "Wed", "Thu"].map(String::from).to_vec();
        s.holidays = vec!["2026-11-26".into()];
        s.admin_token = Some(rollgate::config::Secret::new("admin-secret"));
    })
    .await;
    assert_eq!(lane_of_new_bug(&h, 1).await, vec!["lane/B"]);
    let v1 = readyz(&h).await["policy_version"].as_str().unwrap().to_string();

    edit(&pack.path().join("playbook.toml"), "bug = \"B\"", "bug = \"A\"");
    edit(&pack.path().join("tests/r01-bug-goes-to-lane-b.toml"), "\"lane/B\"", "\"lane/A\"");
    edit(&pack.path().join("tests/r04-confused-client-risk-bumps-the-default.toml"), "\"lane/B\"", "\"lane/A\"");
    // Whichever comes first, the file watcher or this request, the new set is accepted.
    let r = h.http.post(format!("{}/admin/reload", h.url())).bearer_auth("admin-secret").send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let r = readyz(&h).await;
    assert!(r["policy_reload_error"].is_null(), "{r}");
    assert_ne!(r["policy_version"], v1.as_str(), "{r}");
    assert_eq!(lane_of_new_bug(&h, 2).await, vec!["lane/A"]);
    h.app.stop().await.unwrap();
}

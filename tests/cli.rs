//! The command line an operator uses next to a running service: migrate, explain, replay,
//! sweep, doctor.

mod support;

use serde_json::json;
use std::process::Command;
use support::fake_github::Fault;
use support::{issue_event, Harness, REPO};

fn rollgate(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("ROLLGATE_DATABASE_URL", format!("sqlite://{}", dir.join("rollgate.db").display()))
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn migrate_creates_the_database_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = rollgate(dir.path(), &["migrate"]);
    assert!(ok, "{err}");
    assert!(out.contains("up to date"), "{out}");
    assert!(dir.path().join("rollgate.db").exists());
    assert!(rollgate(dir.path(), &["migrate"]).0);
}

#[tokio::test]
async fn explain_shows_why_and_replay_lists_and_requeues_dead_letters() {
    let h = Harness::start().await;
    let dir = h.dir.path().to_path_buf();
    h.github.seed(REPO, 21, &["type/bug", "scope/single-client"]);
    h.deliver("issues", "d-21", &issue_event("issues.opened.json", 21, &["type/bug", "scope/single-client"], None)).await;
    h.settle().await;

    let (ok, out, err) = rollgate(&dir, &["explain", "Codertocat/Hello-World#21"]);
    assert!(ok, "{err}");
    assert!(out.contains("delivery d-21"), "{out}");
    assert!(out.contains("R1: bug goes to lane B"), "{out}");
    assert!(out.contains("R2: bug, single-client defaults to rollout type 1"), "{out}");
    assert!(out.contains("add labels") && out.contains("applied"), "{out}");
    assert!(out.contains("lane") && out.contains("-> B  by rollgate"), "{out}");

    let (ok, _, err) = rollgate(&dir, &["explain", "not a key"]);
    assert!(!ok);
    assert!(err.contains("owner/repo#12"), "{err}");

    h.github.seed(REPO, 22, &["type/bug"]);
    h.github.fail_next([Fault { status: 422, headers: vec![], body: json!({"message": "Validation Failed"}) }]);
    h.deliver("issues", "d-22", &issue_event("issues.opened.json", 22, &["type/bug"], None)).await;
    h.settle().await;
    let (ok, out, _) = rollgate(&dir, &["replay"]);
    assert!(ok);
    assert!(out.contains("d-22") && out.contains("422"), "{out}");
    let (ok, out, _) = rollgate(&dir, &["replay", "--all"]);
    assert!(ok);
    assert!(out.starts_with("1 dead letter"), "{out}");
    h.settle().await;
    assert!(h.github.labels(REPO, 22).contains(&"lane/B".to_string()));
    let (_, out, _) = rollgate(&dir, &["replay"]);
    assert!(out.contains("no dead letters"), "{out}");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn sweep_at_a_time_previews_then_fires_the_due_timers_once() {
    let h = Harness::start().await;
    let dir = h.dir.path().to_path_buf();
    h.github.seed(REPO, 40, &["type/bug", "scope/single-client"]);
    // Opened on a Tuesday in 2027: its decision clock is far from due in real time.
    let mut p = issue_event("issues.opened.json", 40, &["type/bug", "scope/single-client"], None);
    p["issue"]["updated_at"] = json!("2027-01-05T10:00:00Z");
    h.deliver("issues", "s-40", &p).await;
    h.settle().await;

    // Asynchronously: the fake GitHub answers on this test's runtime while the command runs.
    let sweep = |args: &[&str]| {
        let mut all = vec!["sweep".to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"));
        cmd.args(&all)
            .current_dir(&dir)
            .env_clear()
            .env("ROLLGATE_DATABASE_URL", format!("sqlite://{}", dir.join("rollgate.db").display()))
            .env("ROLLGATE_POLICIES", support::policies_dir())
            .env("ROLLGATE_GITHUB_API_URL", &h.github.url)
            .env("ROLLGATE_GITHUB_TOKEN", support::fake_github::TOKEN);
        async move {
            let out = cmd.output().await.unwrap();
            (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
        }
    };
    let (ok, out, err) = sweep(&["--at", "2027-01-08T18:00:00Z", "--dry-run"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("2 timer(s) due") && out.contains("decision-due") && out.contains("decision-overdue"), "{out}");
    assert!(out.contains("would:") && out.contains("decision/overdue"), "{out}");
    assert!(!h.github.labels(REPO, 40).contains(&"decision/due".to_string()), "a dry run changes nothing");

    let (ok, out, err) = sweep(&["--at", "2027-01-08T18:00:00Z"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("2 timer(s) fired"), "{out}");
    assert!(h.github.labels(REPO, 40).contains(&"decision/overdue".to_string()));
    let (_, out, _) = sweep(&["--at", "2027-01-08T18:00:00Z"]).await;
    assert!(out.starts_with("0 timer(s) fired"), "{out}");
    let (ok, _, err) = sweep(&["--at", "next friday"]).await;
    assert!(!ok && err.contains("RFC 3339"), "{err}");
    h.app.stop().await.unwrap();
}

/// `rollgate sweep --at` runs the clock as `serve` does: after the timers, the periodic jobs due
/// at that time. Friday evening files the week's decisions log (and last month's report and
/// the Tuesday agenda, also due), once: a second sweep at the same time files nothing again.
#[tokio::test]
async fn sweep_at_friday_evening_files_the_decisions_log_once() {
    let h = Harness::start_with(|s| s.roles.pm = vec!["priya".into()]).await;
    let dir = h.dir.path().to_path_buf();
    h.github.seed(REPO, 60, &["type/enhancement"]);
    let mut p = issue_event("issues.opened.json", 60, &["type/enhancement"], None);
    p["issue"]["updated_at"] = json!("2027-01-05T10:00:00Z");
    h.deliver("issues", "j-60", &p).await;
    let mut c = issue_event("issue_comment.created.json", 60, &["type/enhancement"], None);
    c["comment"]["body"] = json!("/decide accept sprint=2027-W02 dev-release=2027-01-12");
    c["comment"]["user"] = json!({"login": "priya", "type": "User"});
    c["comment"]["created_at"] = json!("2027-01-06T09:30:00Z");
    c["comment"]["updated_at"] = json!("2027-01-06T09:30:00Z");
    c["sender"] = json!({"login": "priya", "type": "User"});
    h.deliver("issue_comment", "j-60-c", &c).await;
    h.settle().await;

    let sweep = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"));
        cmd.arg("sweep")
            .args(args)
            .current_dir(&dir)
            .env_clear()
            .env("ROLLGATE_DATABASE_URL", format!("sqlite://{}", dir.join("rollgate.db").display()))
            .env("ROLLGATE_POLICIES", support::policies_dir())
            .env("ROLLGATE_GITHUB_API_URL", &h.github.url)
            .env("ROLLGATE_GITHUB_TOKEN", support::fake_github::TOKEN)
            .env("ROLLGATE_ROLES_PM", "priya")
            .env("ROLLGATE_REPORTS_TARGET", REPO);
        async move {
            let out = cmd.output().await.unwrap();
            (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
        }
    };
    let titled = |title: &str| (1..=80u64).filter_map(|n| h.github.issue_opt(REPO, n)).filter(|i| i.title == title).collect::<Vec<_>>();
    let friday_evening = "2027-01-08T18:00:00Z";

    let (ok, out, err) = sweep(&["--at", friday_evening, "--dry-run"]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&format!("would file Decisions log — 2027-W01 in {REPO}")), "{out}");
    assert!(out.contains("would file the 2026-12 metrics report") && out.contains("would file Tuesday sync — 2027-W01"), "{out}");
    assert!(titled("Decisions log — 2027-W01").is_empty(), "a dry run files nothing");

    let (ok, out, err) = sweep(&["--at", friday_evening]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("filed Decisions log — 2027-W01 as Codertocat/Hello-World#"), "{out}");
    assert!(out.contains("filed the 2026-12 metrics report as") && out.contains("filed Tuesday sync — 2027-W01 as"), "{out}");
    let log = titled("Decisions log — 2027-W01");
    assert_eq!(log.len(), 1);
    assert!(log[0].body.contains("| accept | @priya |") && log[0].body.contains("sprint: 2027-W02"), "{}", log[0].body);

    let (ok, out, err) = sweep(&["--at", friday_evening]).await;
    assert!(ok, "{out}{err}");
    assert!(!out.contains("filed"), "nothing is filed twice: {out}");
    assert_eq!(titled("Decisions log — 2027-W01").len(), 1);
    assert_eq!(titled("Rollout metrics — 2026-12").len(), 1);
    let (_, out, _) = sweep(&["--at", friday_evening, "--dry-run"]).await;
    assert!(!out.contains("would file") && !out.contains("would update"), "{out}");

    // --no-jobs: the timers only; the next week's log waits for `serve` (or a sweep with jobs).
    let (ok, out, err) = sweep(&["--at", "2027-01-15T18:00:00Z", "--no-jobs"]).await;
    assert!(ok, "{err}");
    assert!(!out.contains("periodic jobs"), "{out}");
    assert!(titled("Decisions log — 2027-W02").is_empty());
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn doctor_says_what_works_and_what_to_fix() {
    let github = support::fake_github::FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let run = |token: &str, policies: std::path::PathBuf| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"));
        cmd.arg("doctor")
            .current_dir(dir.path())
            .env_clear()
            .env("ROLLGATE_DATABASE_URL", format!("sqlite://{}", dir.path().join("d.db").display()))
            .env("ROLLGATE_POLICIES", policies)
            .env("ROLLGATE_GITHUB_API_URL", &github.url)
            .env("ROLLGATE_GITHUB_TOKEN", token)
            .env("ROLLGATE_GITHUB_WEBHOOK_SECRET", "s");
        async move {
            let out = cmd.output().await.unwrap();
            (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
        }
    };
    let (ok, out) = run(support::fake_github::TOKEN, support::policies_dir()).await;
    assert!(ok, "{out}");
    assert!(out.contains("ok    database: reachable and migrated"), "{out}");
    assert!(out.contains("ok    github: ") && out.contains("the token acts as rollgate[bot]"), "{out}");
    assert!(out.contains(" fixtures pass") && !out.contains("see `rollgate test`"), "{out}");
    assert!(out.contains("warn  roles: no role configured: rollgate runs OPEN"), "{out}");
    assert!(out.trim_end().ends_with("rollgate can serve."), "{out}");

    // Only the PM role: the QA lead role the pack names (ticks, /promote, /artifact) has nobody.
    let (ok, out) = {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"));
        cmd.arg("doctor")
            .current_dir(dir.path())
            .env_clear()
            .env("ROLLGATE_DATABASE_URL", format!("sqlite://{}", dir.path().join("d.db").display()))
            .env("ROLLGATE_POLICIES", support::policies_dir())
            .env("ROLLGATE_GITHUB_API_URL", &github.url)
            .env("ROLLGATE_GITHUB_TOKEN", support::fake_github::TOKEN)
            .env("ROLLGATE_GITHUB_WEBHOOK_SECRET", "s")
            .env("ROLLGATE_ROLES_PM", "priya");
        let out = cmd.output().await.unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    assert!(!ok, "{out}");
    let line = out.lines().find(|l| l.starts_with("FAIL  roles:")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("qa_lead") && line.contains("tick_roles") && line.contains("/promote"), "{line}");

    let broken = tempfile::tempdir().unwrap();
    support::copy_dir(&support::policies_dir(), broken.path());
    std::fs::write(broken.path().join("rules/40-lanes.rhai"), "fn decide(issue, event, ctx) { let x = ; }").unwrap();
    let (ok, out) = run("wrong-token", broken.path().to_path_buf()).await;
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL  github: ") && out.contains("401"), "{out}");
    assert!(out.contains("FAIL  policies: ") && out.contains("40-lanes.rhai:1:"), "{out}");
    assert!(out.trim_end().ends_with("fix the FAIL lines above."), "{out}");
}

/// `ROLLGATE_LOG_FORMAT=json`: every log line is one JSON object a log shipper can read, and the
/// start line still shows secrets only as set/unset.
#[tokio::test]
async fn json_logs_are_one_object_per_line_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("ROLLGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("ROLLGATE_DATABASE_URL", format!("sqlite://{}", dir.path().join("rollgate.db").display()))
        .env("ROLLGATE_POLICIES", support::policies_dir())
        .env("ROLLGATE_GITHUB_WEBHOOK_SECRET", "very-secret-value")
        .env("ROLLGATE_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await {
            ready = r.status() == 200;
            if ready {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(ready, "rollgate did not become ready");
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("very-secret-value"), "a secret reached the log:\n{text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{text}");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string() && v["fields"].is_object(), "{line}");
    }
}

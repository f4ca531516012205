//! GitHub App authentication end to end: signed App deliveries into the real service, which
//! authenticates to a fake GitHub with JWTs and per-installation tokens.

mod support;

use rollgate::config::{AppKey, Secret, Settings};
use serde_json::{json, Value};
use std::time::Duration;
use support::fake_github::{app_key_path, app_private_key, FakeGithub, APP_BOT_LOGIN, APP_ID};
use support::{issue_event, Harness, REPO};

fn as_app(s: &mut Settings) {
    s.github.token = None;
    s.github.app_id = Some(APP_ID);
    s.github.app_key = Some(AppKey { pem: Secret::new(app_private_key()), from: "ROLLGATE_GITHUB_APP_PRIVATE_KEY".into() });
}

/// The service as a GitHub App, on a clock held at the fixtures' time: on a real clock the
/// playbook's timers for these 2023 issues would fire mid-test and add labels of their own.
async fn start() -> Harness {
    let clock = std::sync::Arc::new(rollgate::clock::FixedClock::new("2023-07-13T09:40:00Z".parse().unwrap()));
    Harness::start_clocked(as_app, clock).await
}

/// A real App delivery (it carries `installation`), moved to `repo` and issue `number`, from
/// `installation` or, with `None`, without one (as for a timer or a job).
fn app_event(fixture: &str, repo: &str, number: u64, labels: &[&str], changed: Option<&str>, installation: Option<u64>) -> Value {
    let mut p = issue_event(fixture, number, labels, changed);
    assert!(p.get("installation").is_some(), "{fixture} is an App delivery");
    p["repository"]["full_name"] = json!(repo);
    match installation {
        Some(id) => p["installation"]["id"] = json!(id),
        None => drop(p.as_object_mut().unwrap().remove("installation")),
    }
    p
}

fn opened(repo: &str, number: u64, installation: Option<u64>) -> Value {
    app_event("issues.opened.github-app.json", repo, number, &["type/bug", "scope/single-client"], None, installation)
}

fn sorted(labels: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

const LANE_B: [&str; 5] = ["type/bug", "scope/single-client", "lane/B", "rollout/1-direct", "status/planning"];

#[tokio::test]
async fn an_app_delivery_is_applied_with_its_installations_token_and_comments_as_the_apps_bot() {
    let h = start().await;
    h.github.install_app(11, "Codertocat");
    let before = ["type/bug", "lane/B", "rollout/1-direct", "status/planning", "rollout/3-demoed"];
    h.github.seed(REPO, 4, &before);
    let mut p = app_event("issues.labeled.github-app.json", REPO, 4, &before, Some("rollout/3-demoed"), Some(11));
    p["sender"] = json!({"login": "priya-pm", "type": "User"});
    assert_eq!(h.deliver("issues", "d-app-4", &p).await.0, 202);
    h.settle().await;

    assert_eq!(h.github.labels(REPO, 4), sorted(&["type/bug", "lane/A", "rollout/3-demoed", "status/planning"]));
    let comments = h.github.issue(REPO, 4).comments;
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].body.starts_with("<!-- rollgate:lane-promotion -->"), "{}", comments[0].body);
    assert_eq!(comments[0].author, APP_BOT_LOGIN);
    assert_eq!(h.github.tokens_minted(11), 1, "one token serves every call of the event");
    assert_eq!(h.github.installation_lookups(), 0, "the delivery named its installation");
    assert!(h.app.store.dead_letters().await.unwrap().is_empty());
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn each_installation_gets_its_own_token_and_an_unnamed_one_is_looked_up_once() {
    let h = start().await;
    h.github.install_app(11, "Codertocat");
    h.github.install_app(22, "octo-org");
    h.github.install_app(33, "acme");
    let repos = [(REPO, 1, Some(11)), ("octo-org/widgets", 2, Some(22)), ("acme/tools", 3, None), ("acme/tools", 4, None)];
    for (repo, n, _) in repos {
        h.github.seed(repo, n, &["type/bug", "scope/single-client"]);
    }
    for (repo, n, installation) in repos {
        assert_eq!(h.deliver("issues", &format!("d-{n}"), &opened(repo, n, installation)).await.0, 202);
        // One at a time, so the two acme events cannot both miss the cache.
        h.settle().await;
    }
    let dead = h.app.store.dead_letters().await.unwrap();
    for (repo, n, _) in repos {
        assert_eq!(h.github.labels(repo, n), sorted(&LANE_B), "{repo}#{n}; dead letters: {dead:#?}");
    }
    // The fake refuses a token on another account's repository (403), so each write above was
    // made with the token of the installation that covers it.
    assert_eq!([11, 22, 33].map(|i| h.github.tokens_minted(i)), [1, 1, 1]);
    assert_eq!(h.github.installation_lookups(), 1, "acme was looked up once, then remembered");
    assert!(h.app.store.dead_letters().await.unwrap().is_empty());
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn workers_waiting_for_a_token_share_one_request() {
    let h = start().await;
    h.github.install_app(11, "Codertocat");
    h.github.slow_token_minting(Duration::from_millis(300));
    for n in 1..=6 {
        h.github.seed(REPO, n, &["type/bug", "scope/single-client"]);
    }
    for n in 1..=6 {
        assert_eq!(h.deliver("issues", &format!("d-burst-{n}"), &opened(REPO, n, Some(11))).await.0, 202);
    }
    h.settle().await;
    for n in 1..=6 {
        assert_eq!(h.github.labels(REPO, n), sorted(&LANE_B), "#{n}");
    }
    assert_eq!(h.github.tokens_minted(11), 1);
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn an_expired_token_is_replaced_before_use() {
    let h = start().await;
    h.github.install_app(11, "Codertocat");
    h.github.app_token_lifetime(Duration::from_secs(2));
    h.github.seed(REPO, 1, &["type/bug", "scope/single-client"]);
    h.github.seed(REPO, 2, &["type/bug", "scope/single-client"]);
    h.deliver("issues", "d-exp-1", &opened(REPO, 1, Some(11))).await;
    h.settle().await;
    assert_eq!(h.github.tokens_minted(11), 1);

    tokio::time::sleep(Duration::from_millis(2500)).await;
    h.deliver("issues", "d-exp-2", &opened(REPO, 2, Some(11))).await;
    h.settle().await;
    assert_eq!(h.github.labels(REPO, 2), sorted(&LANE_B));
    assert_eq!(h.github.tokens_minted(11), 2, "a new token for the second event");
    assert_eq!(h.github.refused_tokens(), 0, "the expired token was never sent");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_token_is_dropped_and_the_call_made_once_more() {
    let h = start().await;
    h.github.install_app(11, "Codertocat");
    h.github.seed(REPO, 1, &["type/bug", "scope/single-client"]);
    h.github.seed(REPO, 2, &["type/bug", "scope/single-client"]);
    h.deliver("issues", "d-rev-1", &opened(REPO, 1, Some(11))).await;
    h.settle().await;
    // GitHub stops accepting the cached token (revoked, or its clock is ahead of ours).
    h.github.expire_app_tokens();
    h.deliver("issues", "d-rev-2", &opened(REPO, 2, Some(11))).await;
    h.settle().await;
    assert_eq!(h.github.labels(REPO, 2), sorted(&LANE_B));
    assert_eq!(h.github.refused_tokens(), 1);
    assert_eq!(h.github.tokens_minted(11), 2);
    let stats = h.app.store.inbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 0));
    assert_eq!(h.processed([1, 2], "d-rev-").await, ["d-rev-1", "d-rev-2"]);
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_key_that_is_not_a_pem_stops_the_start_and_names_its_setting() {
    let github = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = support::settings(dir.path(), &github);
    as_app(&mut s);
    s.github.app_key = Some(AppKey { pem: Secret::new("ssh-rsa AAAAB3NzaC1yc2E"), from: "ROLLGATE_GITHUB_APP_PRIVATE_KEY".into() });
    let err = match rollgate::app::start(s).await {
        Ok(_) => panic!("rollgate started with a key that is not a PEM"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.starts_with("ROLLGATE_GITHUB_APP_PRIVATE_KEY: not a GitHub App private key"), "{err}");
    assert!(err.contains("BEGIN RSA PRIVATE KEY"), "{err}");
    assert!(!err.contains("AAAAB3NzaC1yc2E"), "the key text is never shown: {err}");
}

/// `rollgate` with the App's settings, the key from a file.
async fn cli(github: &FakeGithub, dir: &std::path::Path, key: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("ROLLGATE_DATABASE_URL", format!("sqlite://{}", dir.join("d.db").display()))
        .env("ROLLGATE_POLICIES", support::policies_dir())
        .env("ROLLGATE_GITHUB_API_URL", &github.url)
        .env("ROLLGATE_GITHUB_APP_ID", APP_ID.to_string())
        .env("ROLLGATE_GITHUB_APP_PRIVATE_KEY_FILE", app_key_path(key))
        .env("ROLLGATE_GITHUB_WEBHOOK_SECRET", "s")
        .env("ROLLGATE_REPORTS_TARGET", "octo-org/reports")
        .env("ROLLGATE_ROLES_PM", "@Codertocat/pms")
        // Every role the shipped pack names has someone, so the roles check passes.
        .env("ROLLGATE_ROLES_QA_LEAD", "@Codertocat/qa")
        .output()
        .await
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn doctor_checks_the_app_and_where_it_is_installed_and_setup_finds_the_installation() {
    let github = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    github.install_app(11, "Codertocat");

    let (ok, out) = cli(&github, dir.path(), "test-app.private-key.pem", &["doctor"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("github_app_id=4242 github_app_key=set"), "{out}");
    assert!(out.contains("ok    github: ") && out.contains("the App acts as rollgate-test[bot]"), "{out}");
    assert!(out.contains("ok    github app: installed on Codertocat"), "{out}");
    assert!(out.contains("ok    github app: Codertocat reachable through installation 11"), "{out}");
    assert!(out.contains("FAIL  github app: octo-org/reports: ") && out.contains("not installed on octo-org/reports"), "{out}");
    assert!(!out.contains("BEGIN RSA PRIVATE KEY"), "{out}");

    github.install_app(22, "octo-org");
    let (ok, out) = cli(&github, dir.path(), "test-app.private-key.pem", &["doctor"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("ok    github app: octo-org/reports reachable through installation 22"), "{out}");

    // A key GitHub does not know for this App: every JWT is refused.
    let (ok, out) = cli(&github, dir.path(), "other-app.private-key.pem", &["doctor"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL  github: tracker refused: GET /app: 401"), "{out}");
    assert!(out.contains("check ROLLGATE_GITHUB_APP_ID (4242) and the private key from ROLLGATE_GITHUB_APP_PRIVATE_KEY_FILE"), "{out}");

    // No delivery names an installation here: setup asks GitHub which one covers the repository.
    let (ok, out) = cli(&github, dir.path(), "test-app.private-key.pem", &["setup", "github", "--repo", "octo-org/widgets"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("octo-org/widgets: ") && out.contains("label(s) created"), "{out}");
    assert!(github.repo_labels("octo-org/widgets").contains_key("lane/A"), "{out}");
    assert_eq!(github.tokens_minted(22), 2, "one for the doctor run that reached it, one for setup");
}

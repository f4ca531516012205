//! Who may talk to rollgate's HTTP edge: Jira deliveries must be signed unless the operator
//! opted in to unsigned ones, the evaluate API judges only the actor a token-holder names,
//! `/metrics` can require a token, and a repository name GitHub could not have is refused at
//! ingest before it comes near an API path.

mod support;

use rollgate::config::Secret;
use rollgate::ingest::signature::sign;
use serde_json::{json, Value};
use support::{issue_event, Harness, REPO};

fn jira_fixture() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jira/webhook.jira_issue_created.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Posts a Jira delivery, signed with `secret` when given; status and answer.
async fn jira(h: &Harness, id: &str, signature: Option<String>) -> (u16, Value) {
    let body = serde_json::to_vec(&jira_fixture()).unwrap();
    let mut req = h
        .http
        .post(format!("{}/webhooks/jira", h.url()))
        .header("content-type", "application/json")
        .header("x-atlassian-webhook-identifier", id)
        .body(body);
    if let Some(sig) = signature {
        req = req.header("x-hub-signature", sig);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn jira_signature(secret: &str) -> String {
    sign(secret, &serde_json::to_vec(&jira_fixture()).unwrap())
}

#[tokio::test]
async fn jira_deliveries_without_a_configured_secret_are_refused() {
    let h = Harness::start().await;
    let (status, answer) = jira(&h, "j-unsigned", None).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"], "no Jira webhook secret is configured");
    // A signature proves nothing when there is no secret to check it against.
    let (status, _) = jira(&h, "j-signed", Some(jira_signature("anything"))).await;
    assert_eq!(status, 401);
    h.settle().await;
    assert_eq!(h.app.store.inbox_stats().await.unwrap().done, 0, "nothing refused is stored");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn github_deliveries_without_a_configured_secret_are_refused_too() {
    let h = Harness::start_with(|s| s.github.webhook_secrets = Vec::new()).await;
    let (status, answer) = h.deliver("issues", "d-nosecret", &issue_event("issues.opened.json", 1, &[], None)).await;
    assert_eq!((status, answer["error"].as_str()), (401, Some("no GitHub webhook secret is configured")));
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn jira_secrets_rotate_like_githubs_and_a_missing_or_wrong_signature_is_refused() {
    let h = Harness::start_with(|s| s.jira.webhook_secrets = vec![Secret::new("old-jira"), Secret::new("new-jira")]).await;
    let (status, answer) = jira(&h, "j-none", None).await;
    assert_eq!((status, answer["error"].as_str()), (401, Some("missing or wrong X-Hub-Signature")));
    let (status, _) = jira(&h, "j-wrong", Some(jira_signature("guessed"))).await;
    assert_eq!(status, 401);
    let (status, answer) = jira(&h, "j-old", Some(jira_signature("old-jira"))).await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("queued")), "{answer}");
    let (status, answer) = jira(&h, "j-new", Some(jira_signature("new-jira"))).await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("queued")), "{answer}");
    h.settle().await;
    assert_eq!(h.app.store.inbox_stats().await.unwrap().done, 2, "only the two signed deliveries are stored");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn unsigned_jira_deliveries_are_taken_only_after_an_explicit_opt_in() {
    let h = Harness::start_with(|s| s.jira.allow_unsigned_webhooks = true).await;
    let (status, answer) = jira(&h, "j-open", None).await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("queued")), "{answer}");
    h.settle().await;
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn doctor_fails_while_unsigned_jira_webhooks_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .arg("doctor")
        .current_dir(dir.path())
        .env_clear()
        .env("ROLLGATE_DATABASE_URL", format!("sqlite://{}", dir.path().join("d.db").display()))
        .env("ROLLGATE_POLICIES", support::policies_dir())
        .env("ROLLGATE_JIRA_ALLOW_UNSIGNED_WEBHOOKS", "true")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAIL  jira webhook: ROLLGATE_JIRA_ALLOW_UNSIGNED_WEBHOOKS is on"), "{text}");
    assert!(text.contains("warn  evaluate api: no ROLLGATE_EVALUATE_TOKEN"), "{text}");
}

/// An issue rollgate has seen, and the evaluate URL.
async fn seen_issue(h: &Harness) -> String {
    h.github.seed(REPO, 7, &[]);
    assert_eq!(h.deliver("issues", "d-7", &issue_event("issues.opened.json", 7, &[], None)).await.0, 202);
    h.settle().await;
    format!("{}/api/v1/evaluate", h.url())
}

#[tokio::test]
async fn without_its_token_evaluate_judges_every_caller_as_an_anonymous_person() {
    let h = Harness::start_with(|s| s.roles.pm = vec!["priya-pm".into()]).await;
    let url = seen_issue(&h).await;
    let ask = json!({ "issue": format!("{REPO}#7"), "to_status": "released", "actor": "priya-pm" });
    let answer: Value = h.http.post(&url).json(&ask).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["actor_trusted"], false, "{answer}");
    assert_eq!(answer["actor"], "(anonymous)", "naming the PM proves nothing: {answer}");
    assert_eq!(answer["allow"], false, "{answer}");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn with_its_token_evaluate_needs_it_and_judges_the_actor_named() {
    let h = Harness::start_with(|s| {
        s.roles.pm = vec!["priya-pm".into()];
        s.evaluate_token = Some(Secret::new("validator-token"));
    })
    .await;
    let url = seen_issue(&h).await;
    let ask = json!({ "issue": format!("{REPO}#7"), "to_status": "released", "actor": "priya-pm" });
    for auth in [None, Some("Bearer wrong"), Some("validator-token"), Some("Bearer ")] {
        let mut req = h.http.post(&url).json(&ask);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        assert_eq!(req.send().await.unwrap().status(), 401, "{auth:?}");
    }
    let answer: Value =
        h.http.post(&url).bearer_auth("validator-token").json(&ask).send().await.unwrap().json().await.unwrap();
    assert_eq!((answer["actor_trusted"].as_bool(), answer["actor"].as_str()), (Some(true), Some("priya-pm")), "{answer}");
    assert_eq!(answer["allow"], false, "{answer}");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_are_open_unless_their_token_is_set() {
    let h = Harness::start().await;
    assert_eq!(h.http.get(format!("{}/metrics", h.url())).send().await.unwrap().status(), 200);
    h.app.stop().await.unwrap();

    let h = Harness::start_with(|s| s.metrics_token = Some(Secret::new("scraper"))).await;
    let metrics = format!("{}/metrics", h.url());
    assert_eq!(h.http.get(&metrics).send().await.unwrap().status(), 401);
    assert_eq!(h.http.get(&metrics).bearer_auth("not-it").send().await.unwrap().status(), 401);
    let r = h.http.get(&metrics).bearer_auth("scraper").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("rollgate_deliveries_total"));
    // Liveness and readiness stay open: probes carry no token.
    assert_eq!(h.http.get(format!("{}/healthz", h.url())).send().await.unwrap().status(), 200);
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_repository_name_github_could_not_have_is_refused_at_ingest() {
    let h = Harness::start().await;
    // At start rollgate asked GitHub who it is (GET /user); nothing after that.
    let asked_at_start = h.github.requests();
    for (i, name) in ["../..", "octo/..", "ôctо/repo", "octo/re po"].into_iter().enumerate() {
        let mut p = issue_event("issues.opened.json", 9, &[], None);
        p["repository"]["full_name"] = json!(name);
        let (status, answer) = h.deliver("issues", &format!("d-name-{i}"), &p).await;
        assert_eq!(status, 400, "{name}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("repository.full_name"), "{name}: {answer}");
    }
    h.settle().await;
    assert_eq!(h.app.store.inbox_stats().await.unwrap().done, 0, "nothing refused is stored");
    assert_eq!(h.github.requests(), asked_at_start, "no such name reaches GitHub");
    h.app.stop().await.unwrap();
}

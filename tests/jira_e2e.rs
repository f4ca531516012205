//! Jira end to end: real Jira webhook payloads, adapted to the mapped fields and signed, into
//! the real router; a fake Jira (REST v3 Cloud, and v2 Data Center) whose final state is checked.

mod support;

use rollgate::config::{Secret, Settings};
use rollgate::ingest::signature::sign;
use serde_json::{json, Value};
use support::fake_github::FakeGithub;
use support::fake_jira::{FakeJira, BOT_ACCOUNT, EMAIL, TOKEN};

const SECRET: &str = "jira-secret";
const PM: &str = "acc-priya";
const LANE: &str = "customfield_10101";
const ROLLOUT: &str = "customfield_10102";
const SCOPE: &str = "customfield_10103";
const DECISION: &str = "customfield_10104";
const CLIENTS: &str = "customfield_10105";

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jira").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

struct J {
    jira: FakeJira,
    app: rollgate::app::Running,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    n: u64,
}

async fn start(cloud: bool) -> J {
    let jira = FakeJira::start().await;
    for (id, name) in [(LANE, "Lane"), (ROLLOUT, "Rollout Type"), (SCOPE, "Client Scope"), (DECISION, "Decision"), (CLIENTS, "Affected Clients")] {
        jira.add_field(id, name);
    }
    let github = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s: Settings = support::settings(dir.path(), &github);
    s.jira.base_url = Some(jira.url.clone());
    s.jira.api_token = Some(Secret::new(TOKEN));
    s.jira.email = cloud.then(|| EMAIL.to_string());
    s.jira.webhook_secrets = vec![Secret::new(SECRET)];
    s.roles.pm = vec![PM.into()];
    let app = rollgate::app::start(s).await.expect("rollgate starts and reaches Jira");
    J { jira, app, http: reqwest::Client::new(), _dir: dir, n: 0 }
}

impl J {
    /// A real webhook payload, adapted to the issue as the fake Jira now holds it.
    fn payload(&mut self, name: &str, key: &str, actor: &str) -> Value {
        self.n += 1;
        let i = self.jira.issue(key);
        let mut p = fixture(name);
        p["timestamp"] = json!(1_795_000_000_000u64 + self.n * 1000);
        p["issue"]["key"] = json!(key);
        p["issue"]["self"] = json!(format!("{}/rest/api/2/issue/{}", self.jira.url, i.id));
        let f = &mut p["issue"]["fields"];
        f["summary"] = json!(i.summary);
        f["issuetype"]["name"] = json!(i.issuetype);
        if name.starts_with("webhook.comment") {
            // Jira's comment events carry a thin issue: no status, no labels.
            if let Some(o) = f.as_object_mut() {
                o.remove("status");
                o.remove("labels");
            }
        } else {
            f["status"] = json!({ "name": i.status });
            f["labels"] = json!(i.labels);
            f["updated"] = json!(format!("2026-11-24T10:{:02}:{:02}.000+0000", self.n / 60, self.n % 60));
            for (id, v) in &i.fields {
                f[id.as_str()] = v.clone();
            }
        }
        if p.get("user").is_some() {
            p["user"] = json!({ "accountId": actor, "displayName": actor });
        }
        p
    }

    async fn send(&self, p: &Value, id: &str, signature: Option<String>) -> (u16, Value) {
        let body = serde_json::to_vec(p).unwrap();
        let mut req = self
            .http
            .post(format!("http://{}/webhooks/jira", self.app.addr))
            .header("content-type", "application/json")
            .header("x-atlassian-webhook-identifier", id)
            .body(body.clone());
        if let Some(sig) = signature.or_else(|| Some(sign(SECRET, &body))) {
            req = req.header("x-hub-signature", sig);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn deliver(&mut self, name: &str, key: &str, actor: &str) {
        let p = self.payload(name, key, actor);
        let (status, _) = self.send(&p, &format!("jira-{}", self.n), None).await;
        assert_eq!(status, 202);
        support::settle(self.app.store.as_ref()).await;
    }

    async fn comment(&mut self, key: &str, body: &str, actor: &str) {
        let id = self.jira.add_comment(key, actor, json!(body));
        let mut p = self.payload("webhook.comment_created.json", key, actor);
        p["comment"]["id"] = json!(id);
        p["comment"]["body"] = json!(body);
        p["comment"]["author"] = json!({ "accountId": actor });
        p["comment"]["updateAuthor"] = json!({ "accountId": actor });
        let (status, _) = self.send(&p, &format!("jira-{}", self.n), None).await;
        assert_eq!(status, 202);
        support::settle(self.app.store.as_ref()).await;
    }

    fn tagged(&self, key: &str, tag: &str) -> Vec<support::fake_jira::FakeJiraComment> {
        self.jira
            .comments(key)
            .into_iter()
            .filter(|c| c.properties.iter().any(|(k, v)| k == "rollgate" && v["tag"] == tag))
            .collect()
    }
}

#[tokio::test]
async fn a_new_jira_bug_gets_its_lane_and_rollout_type_in_custom_fields() {
    let mut j = start(true).await;
    j.jira.seed("PROJ-1", "Bug", "Planning", &[]);
    j.jira.set_field("PROJ-1", SCOPE, json!({ "value": "Single client" }));
    j.deliver("webhook.jira_issue_created.json", "PROJ-1", "acc-reporter").await;
    assert_eq!(j.jira.field("PROJ-1", LANE), Some(json!({ "value": "B" })));
    assert_eq!(j.jira.field("PROJ-1", ROLLOUT), Some(json!({ "value": "1 Direct" })));
    assert_eq!(j.jira.status("PROJ-1"), "Planning", "already planning: no transition");
    let writes = j.jira.writes();
    // The echo of rollgate's own change changes nothing.
    j.deliver("webhook.jira_issue_updated.labels.json", "PROJ-1", BOT_ACCOUNT).await;
    assert_eq!(j.jira.writes(), writes);
    j.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_forbidden_transition_is_moved_back_with_an_adf_comment() {
    let mut j = start(true).await;
    j.jira.seed("PROJ-2", "Story", "Planning", &[]);
    j.deliver("webhook.jira_issue_created.json", "PROJ-2", "acc-reporter").await;
    assert_eq!(j.jira.field("PROJ-2", ROLLOUT), Some(json!({ "value": "3 Demoed" })));
    // Someone drags the card straight to Released.
    j.jira.set_status("PROJ-2", "Released");
    j.deliver("webhook.jira_issue_updated.status-change.json", "PROJ-2", "acc-dev").await;
    assert_eq!(j.jira.status("PROJ-2"), "Planning", "moved back by a transition");
    let blocked = j.tagged("PROJ-2", "blocked");
    assert_eq!(blocked.len(), 1);
    let body = &blocked[0].body;
    assert_eq!(body["type"], "doc", "Cloud gets ADF");
    let text = rollgate::tracker::jira::markup::plain_text(body);
    assert!(text.contains("skips") && text.contains("decided"), "{text}");
    assert!(!text.contains("<!--"), "no HTML marker in Jira: {text}");
    j.app.stop().await.unwrap();
}

#[tokio::test]
async fn commands_in_jira_comments_and_the_checklist_on_data_center() {
    let mut j = start(false).await;
    j.jira.seed("PROJ-3", "Bug", "Planning", &[]);
    j.jira.set_field("PROJ-3", CLIENTS, json!("Adani Cement"));
    j.deliver("webhook.jira_issue_created.json", "PROJ-3", "acc-reporter").await;
    assert_eq!(j.jira.field("PROJ-3", LANE), Some(json!({ "value": "B" })));
    // A PM raises it to type 3: R5 moves it to lane A with one comment.
    j.comment("PROJ-3", "Needs a demo for the clients.\n/rollout 3", PM).await;
    assert_eq!(j.jira.field("PROJ-3", ROLLOUT), Some(json!({ "value": "3 Demoed" })));
    assert_eq!(j.jira.field("PROJ-3", LANE), Some(json!({ "value": "A" })));
    let promo = j.tagged("PROJ-3", "lane-promotion");
    assert_eq!(promo.len(), 1);
    assert!(promo[0].body.is_string(), "Data Center gets wiki markup");
    // Someone else may not: refused with a reply, nothing changes.
    j.comment("PROJ-3", "/rollout 1", "acc-dev").await;
    assert_eq!(j.jira.field("PROJ-3", ROLLOUT), Some(json!({ "value": "3 Demoed" })));
    assert!(j.jira.comments("PROJ-3").iter().any(|c| c.body.as_str().unwrap_or("").contains("only the PM role")));
    // Through the flow to dev-released: the checklist appears, once.
    j.comment("PROJ-3", "/decide accept sprint=2026-W48 dev-release=2026-11-24", PM).await;
    assert_eq!(j.jira.status("PROJ-3"), "Decided");
    for status in ["In Development", "Dev Released"] {
        j.jira.set_status("PROJ-3", status);
        j.deliver("webhook.jira_issue_updated.status-change.json", "PROJ-3", PM).await;
        assert_eq!(j.jira.status("PROJ-3"), status);
    }
    let checklist = j.tagged("PROJ-3", "checklist");
    assert_eq!(checklist.len(), 1);
    let wiki = checklist[0].body.as_str().unwrap();
    assert!(wiki.contains("Release note") && wiki.contains("Adani Cement"), "{wiki}");
    j.comment("PROJ-3", "/artifact done release-note", PM).await;
    assert_eq!(j.tagged("PROJ-3", "checklist").len(), 1, "edited in place");
    j.app.stop().await.unwrap();
}

#[tokio::test]
async fn jira_deliveries_are_signed_deduplicated_and_validated() {
    let mut j = start(true).await;
    j.jira.seed("PROJ-4", "Bug", "Planning", &[]);
    let p = j.payload("webhook.jira_issue_created.json", "PROJ-4", "acc-reporter");
    assert_eq!(j.send(&p, "d-1", Some("sha256=00".into())).await.0, 401);
    assert_eq!(j.send(&p, "d-1", Some(sign("other", b"x"))).await.0, 401);
    let (status, body) = j.send(&p, "d-1", None).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("queued")));
    // Jira retries with the same identifier.
    let (status, body) = j.send(&p, "d-1", None).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("duplicate")));
    let garbage = json!({ "webhookEvent": "jira:issue_created" });
    assert_eq!(j.send(&garbage, "d-2", None).await.0, 400);
    let other = json!({ "webhookEvent": "sprint_started", "issue": { "key": "PROJ-4" } });
    assert_eq!(j.send(&other, "d-3", None).await.1["status"], "ignored");
    // Deleted: recorded, nothing applied.
    let mut deleted = p.clone();
    deleted["webhookEvent"] = json!("jira:issue_deleted");
    assert_eq!(j.send(&deleted, "d-4", None).await.0, 202);
    support::settle(j.app.store.as_ref()).await;
    let history = j.app.store.history(&"PROJ-4".parse().unwrap()).await.unwrap();
    assert!(history.iter().any(|h| h.field == "state" && h.to.as_deref() == Some("deleted")));
    j.app.stop().await.unwrap();
}

#[tokio::test]
async fn evaluate_answers_allow_or_deny_with_the_reason() {
    let mut j = start(true).await;
    j.jira.seed("PROJ-5", "Story", "Planning", &[]);
    j.deliver("webhook.jira_issue_created.json", "PROJ-5", "acc-reporter").await;
    let url = format!("http://{}/api/v1/evaluate", j.app.addr);
    let ask = |body: Value| j.http.post(&url).json(&body).send();
    let deny: Value = ask(json!({ "issue": "PROJ-5", "to_status": "Released" })).await.unwrap().json().await.unwrap();
    assert_eq!(deny["allow"], false);
    assert!(deny["reasons"][0].as_str().unwrap().contains("R9"), "{deny}");
    let deny: Value = ask(json!({ "issue": "PROJ-5", "to_status": "decided" })).await.unwrap().json().await.unwrap();
    assert_eq!(deny["allow"], false, "no decision recorded yet: {deny}");
    // Inline: an issue rollgate has never seen, with its fields.
    let allow: Value = ask(json!({
        "issue": { "key": "PROJ-99", "fields": { "type": "enhancement", "status": "planning", "decision": "accept", "rollout": "3", "lane": "A" } },
        "to_status": "Decided"
    }))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(allow["allow"], true, "{allow}");
    assert_eq!(ask(json!({ "issue": "PROJ-404", "to_status": "released" })).await.unwrap().status(), 404);
    assert_eq!(ask(json!({ "issue": "PROJ-5", "to_status": "shipped" })).await.unwrap().status(), 400);
    j.app.stop().await.unwrap();
}

#[tokio::test]
async fn jira_faults_are_retried_and_a_workflow_without_a_way_back_is_a_dead_letter() {
    use support::fake_jira::Fault;
    let mut j = start(true).await;
    j.jira.seed("PROJ-6", "Bug", "Planning", &[]);
    j.jira.fail_next([
        Fault { status: 503, headers: vec![], body: json!({ "errorMessages": ["down"] }) },
        Fault { status: 429, headers: vec![("retry-after", "1".into())], body: json!({ "errorMessages": ["slow down"] }) },
    ]);
    j.deliver("webhook.jira_issue_created.json", "PROJ-6", "acc-reporter").await;
    assert_eq!(j.jira.field("PROJ-6", LANE), Some(json!({ "value": "B" })), "applied after the retries");
    assert_eq!(j.jira.writes().iter().filter(|w| w.starts_with("PUT issue")).count(), 1, "{:?}", j.jira.writes());

    // The workflow has no transition from Released back to Planning: the revert cannot be
    // done, and the event says why instead of failing silently.
    j.jira.forbid_transition("Released", "Planning");
    j.jira.set_status("PROJ-6", "Released");
    let p = j.payload("webhook.jira_issue_updated.status-change.json", "PROJ-6", "acc-dev");
    assert_eq!(j.send(&p, "no-way-back", None).await.0, 202);
    support::settle(j.app.store.as_ref()).await;
    let dead = j.app.store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].last_error.contains("no transition to \"Planning\""), "{}", dead[0].last_error);
    j.app.stop().await.unwrap();
}

#[tokio::test]
async fn the_changelog_lets_rollgate_judge_the_first_change_it_sees() {
    let mut j = start(true).await;
    // rollgate was installed after PROJ-7 was created: its first delivery is this move.
    j.jira.seed("PROJ-7", "Story", "Released", &[]);
    let mut p = j.payload("webhook.jira_issue_updated.status-change.json", "PROJ-7", "acc-dev");
    p["changelog"]["items"][0]["fromString"] = json!("Planning");
    p["changelog"]["items"][0]["toString"] = json!("Released");
    assert_eq!(j.send(&p, "first-sight", None).await.0, 202);
    support::settle(j.app.store.as_ref()).await;
    assert_eq!(j.jira.status("PROJ-7"), "Planning", "judged as Planning -> Released and moved back");
    assert_eq!(j.tagged("PROJ-7", "blocked").len(), 1);
    j.app.stop().await.unwrap();
}

#[tokio::test]
async fn backfill_rebuilds_a_jira_projects_history_from_the_changelog() {
    let j = start(true).await;
    j.jira.seed("PROJ-8", "Story", "Released", &[]);
    j.jira.set_field("PROJ-8", ROLLOUT, json!({ "value": "3 Demoed" }));
    j.jira.add_history("PROJ-8", "2026-11-02T09:00:00.000+0000", "acc-priya", &[("Rollout Type", Some(ROLLOUT), None, Some("3 Demoed"))]);
    let steps = [("Planning", "Decided", "03"), ("Decided", "In Development", "04"), ("In Development", "Dev Released", "09"), ("Dev Released", "Rollout Confirmed", "10"), ("Rollout Confirmed", "In Rollout", "11"), ("In Rollout", "Released", "16")];
    for (from, to, day) in steps {
        j.jira.add_history("PROJ-8", &format!("2026-11-{day}T09:00:00.000+0000"), "acc-priya", &[("status", None, Some(from), Some(to))]);
    }
    let set = rollgate::policy::PolicySet::load(&support::policies_dir(), Default::default()).unwrap();
    let mut settings = Settings::default();
    settings.jira.base_url = Some(j.jira.url.clone());
    settings.jira.api_token = Some(Secret::new(TOKEN));
    settings.jira.email = Some(EMAIL.into());
    let tracker = rollgate::tracker::jira::JiraTracker::connect(&settings.jira, rollgate::tracker::RetryPolicy::default()).await.unwrap();
    let store = j.app.store.clone();
    let p = rollgate::backfill::jira(store.as_ref(), &set, &tracker, "PROJ", true).await.unwrap();
    assert_eq!(p.issues, 1);
    let history = store.history(&"PROJ-8".parse().unwrap()).await.unwrap();
    let when = |to: &str| history.iter().find(|h| h.field == "status" && h.to.as_deref() == Some(to)).map(|h| h.at.to_rfc3339());
    assert!(when("planning").is_some(), "undoing every change finds the item created in planning: {history:?}");
    assert_eq!(when("dev-released").as_deref(), Some("2026-11-09T09:00:00+00:00"));
    assert_eq!(when("released").as_deref(), Some("2026-11-16T09:00:00+00:00"));
    assert!(history.iter().any(|h| h.field == "rollout" && h.to.as_deref() == Some("3")));
    let again = rollgate::backfill::jira(store.as_ref(), &set, &tracker, "PROJ", true).await.unwrap();
    assert_eq!((again.issues, again.skipped), (0, 1));
    let cfg = rollgate::report::MetricsFile::load(&support::policies_dir()).unwrap();
    let months = rollgate::report::figures(store.as_ref(), &Default::default(), &cfg, "2026-11".parse().unwrap()).await.unwrap();
    let nov = months.last().unwrap();
    assert_eq!((nov.releases.len(), nov.releases[0].business_days), (1, Some(5)));
    j.app.stop().await.unwrap();
}

//! Checks the fake Jira's webhooks: a small receiver verifies every delivery's signature with
//! rollgate's own check, parses every body with rollgate's Jira parser (never a 400) and
//! records what came, in order. When a Jira loop test fails, this says whether the deliveries
//! were Jira's.

mod support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use reqwest::Client;
use rollgate::config::{JiraMapping, Secret};
use rollgate::ingest::jira::JiraFields;
use rollgate::ingest::Parsed;
use rollgate::model::DeliveryId;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::fake_jira::{adf, FakeJira, Release, BOT_ACCOUNT, TOKEN};

const SECRET: &str = "hook-secret";
const LANE: &str = "customfield_10101";
const ROLLOUT: &str = "customfield_10102";

/// One delivery as the receiver saw it. `parsed` is what rollgate's parser made of it: every
/// delivery must parse (an error is a 400 in production).
#[derive(Debug, Clone)]
struct Got {
    headers: HeaderMap,
    json: Value,
    /// rollgate's reading: event kind and actor, or why it refused.
    parsed: Result<(String, String), String>,
}

impl Got {
    fn id(&self) -> &str {
        self.headers["x-atlassian-webhook-identifier"].to_str().unwrap()
    }
    fn event(&self) -> (&str, Option<&str>) {
        (self.json["webhookEvent"].as_str().unwrap(), self.json["issue_event_type_name"].as_str())
    }
}

#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    /// Statuses to answer with, in order; 202 once they run out.
    answers: Arc<Mutex<VecDeque<u16>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers.get("x-hub-signature").and_then(|v| v.to_str().ok());
    assert!(rollgate::ingest::signature::verify(&[Secret::new(SECRET)], &body, signature), "bad signature");
    let fields = JiraFields::resolve(JiraMapping::default(), &[(LANE.into(), "Lane".into()), (ROLLOUT.into(), "Rollout Type".into())], Some(BOT_ACCOUNT.into())).0;
    let id = headers["x-atlassian-webhook-identifier"].to_str().unwrap().to_string();
    let parsed = match rollgate::ingest::jira::parse(&body, DeliveryId(id), chrono::Utc::now(), &fields) {
        Ok(Parsed::Event(e)) => Ok((e.kind.to_string(), e.actor.login.clone())),
        // Acknowledged and dropped (202): rollgate does nothing with, say, comment_deleted.
        Ok(Parsed::Ignored(kind)) => Ok((format!("ignored {kind}"), String::new())),
        Ok(other) => Err(format!("not a Jira event: {other:?}")),
        Err(e) => Err(e.to_string()),
    };
    let json = serde_json::from_slice(&body).unwrap();
    r.got.lock().unwrap().push(Got { headers, json, parsed });
    let status = r.answers.lock().unwrap().pop_front().unwrap_or(202);
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver { url: format!("http://{}/webhooks/jira", listener.local_addr().unwrap()), got: Arc::default(), answers: Arc::default() };
        let app = Router::new().route("/webhooks/jira", post(receive)).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    /// Waits (generous deadline) until `n` deliveries came; returns all so far.
    async fn wait_for(&self, n: usize) -> Vec<Got> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                for g in &got {
                    assert!(g.parsed.is_ok(), "rollgate could not read {:?}: {:?}", g.event(), g.parsed);
                }
                return got;
            }
            assert!(tokio::time::Instant::now() < deadline, "{} of {n} deliveries came: {got:#?}", got.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

/// A fake with two select fields, one issue and the loop on.
async fn looped() -> (FakeJira, Receiver) {
    let jira = FakeJira::start().await;
    jira.add_field(LANE, "Lane");
    jira.add_field(ROLLOUT, "Rollout Type");
    jira.seed("PROJ-1", "Story", "Planning", &["old"]);
    jira.set_field("PROJ-1", LANE, json!({ "value": "B" }));
    jira.set_field("PROJ-1", ROLLOUT, json!({ "value": "3 Demoed" }));
    let rx = Receiver::start().await;
    jira.deliver_to(&rx.url, Some(SECRET));
    (jira, rx)
}

fn rest(jira: &FakeJira, method: reqwest::Method, v: &str, path: &str) -> reqwest::RequestBuilder {
    Client::new().request(method, format!("{}/rest/api/{v}{path}", jira.url)).header("authorization", format!("Bearer {TOKEN}"))
}

fn items(g: &Got) -> Vec<Value> {
    g.json["changelog"]["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_field_put_sends_one_issue_updated_with_the_changed_items_only() {
    let (jira, rx) = looped().await;
    let before = jira.issue("PROJ-1").updated;
    let body = json!({
        "fields": { LANE: { "value": "A" }, ROLLOUT: { "value": "3 Demoed" }, "summary": "issue PROJ-1" },
        "update": { "labels": [{ "add": "lane-a" }, { "add": "old" }] },
    });
    assert_eq!(rest(&jira, reqwest::Method::PUT, "3", "/issue/PROJ-1").json(&body).send().await.unwrap().status(), 204);
    let got = rx.wait_for(1).await;
    let g = &got[0];
    assert_eq!(g.event(), ("jira:issue_updated", Some("issue_updated")));
    assert_eq!(g.parsed, Ok(("issues.edited".to_string(), BOT_ACCOUNT.to_string())), "rollgate's own change, by its account");
    assert_eq!(g.json["user"]["accountId"], BOT_ACCOUNT);
    let lane_a = g.json["issue"]["fields"][LANE]["id"].clone();
    let lane_b = items(g)[1]["from"].clone();
    assert_eq!(
        items(g),
        [
            json!({ "field": "labels", "fieldtype": "jira", "fieldId": "labels", "from": null, "fromString": "old", "to": null, "toString": "lane-a old" }),
            json!({ "field": "Lane", "fieldtype": "custom", "fieldId": LANE, "from": lane_b, "fromString": "B", "to": lane_a, "toString": "A" }),
        ],
        "the unchanged rollout and summary are not there"
    );
    let id = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok());
    assert!(id(&lane_a).is_some() && id(&lane_b).is_some() && lane_a != lane_b, "select options are named by id: {lane_b} -> {lane_a}");
    let issue = &g.json["issue"];
    assert_eq!((issue["key"].as_str(), issue["fields"]["status"]["name"].as_str()), (Some("PROJ-1"), Some("Planning")));
    assert_eq!(issue["fields"][LANE]["value"], "A");
    assert_eq!(issue["fields"]["updated"], jira.issue("PROJ-1").updated);
    assert_ne!(jira.issue("PROJ-1").updated, before);
    let ts = g.json["timestamp"].as_i64().unwrap();
    assert!((ts - chrono::Utc::now().timestamp_millis()).abs() < 600_000, "timestamp in ms, on the world clock: {ts}");
    // Headers as Jira sends them.
    assert_eq!(g.headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(g.headers["user-agent"], "Atlassian Webhook HTTP Client");
    assert!(g.headers.get("x-atlassian-webhook-retry").is_none(), "no retry header on a first attempt");

    // A PUT that changes nothing: 204, no changelog, `updated` stays, nothing is sent. The next
    // real change is the next delivery.
    let updated = jira.issue("PROJ-1").updated;
    let same = json!({ "fields": { LANE: { "value": "A" } }, "update": { "labels": [{ "add": "old" }] } });
    assert_eq!(rest(&jira, reqwest::Method::PUT, "2", "/issue/PROJ-1").json(&same).send().await.unwrap().status(), 204);
    assert_eq!(jira.issue("PROJ-1").updated, updated);
    let rm = json!({ "update": { "labels": [{ "remove": "old" }] } });
    assert_eq!(rest(&jira, reqwest::Method::PUT, "2", "/issue/PROJ-1").json(&rm).send().await.unwrap().status(), 204);
    let got = rx.wait_for(2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(items(&got[1])[0]["toString"], "lane-a");
    assert_ne!(got[0].id(), got[1].id(), "one identifier per delivery");
    assert_eq!(jira.writes_on("PROJ-1"), 3, "every PUT counts as a write, the no-op one too");
}

#[tokio::test]
async fn a_transition_sends_a_status_item() {
    let (jira, rx) = looped().await;
    let r = rest(&jira, reqwest::Method::POST, "2", "/issue/PROJ-1/transitions").json(&json!({ "transition": { "id": "2" } }));
    assert_eq!(r.send().await.unwrap().status(), 204);
    let g = &rx.wait_for(1).await[0];
    assert_eq!(g.event(), ("jira:issue_updated", Some("issue_generic")));
    assert_eq!(
        items(g),
        [json!({ "field": "status", "fieldtype": "jira", "fieldId": "status", "from": "10001", "fromString": "Planning", "to": "10002", "toString": "Decided" })]
    );
    assert_eq!(g.json["issue"]["fields"]["status"]["name"], "Decided");
    assert_eq!(g.json["issue"]["fields"]["status"]["statusCategory"]["key"], "indeterminate");
    let history = rest(&jira, reqwest::Method::GET, "3", "/issue/PROJ-1/changelog").send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(history["values"][0]["items"][0]["toString"], "Decided", "the change is in the issue's changelog too");
}

#[tokio::test]
async fn a_comment_sends_both_deliveries_and_the_comment_event_has_the_thin_issue() {
    let (jira, rx) = looped().await;
    let r = rest(&jira, reqwest::Method::POST, "2", "/issue/PROJ-1/comment").json(&json!({ "body": "h3. Plan\n* step" }));
    assert_eq!(r.send().await.unwrap().status(), 201);
    let got = rx.wait_for(2).await;
    assert_eq!(got[0].event(), ("comment_created", None), "comment_created first by default");
    assert_eq!(got[1].event(), ("jira:issue_updated", Some("issue_commented")));
    assert_eq!(got[0].parsed.as_ref().unwrap().0, "issue_comment.created");

    // The thin issue has exactly the fields the real comment_created delivery has.
    let fixture: Value = serde_json::from_str(include_str!("fixtures/jira/webhook.comment_created.json")).unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&got[0].json), keys(&fixture));
    assert_eq!(keys(&got[0].json["issue"]), keys(&fixture["issue"]));
    assert_eq!(keys(&got[0].json["issue"]["fields"]), keys(&fixture["issue"]["fields"]));
    assert_eq!(keys(&got[0].json["comment"]), keys(&fixture["comment"]));
    assert_eq!(got[0].json["issue"]["fields"]["status"]["name"], "Planning");
    // The issue event carries the whole issue and the comment, and no changelog.
    let full = &got[1].json;
    assert_eq!(full["issue"]["fields"]["labels"], json!(["old"]));
    assert_eq!(full["issue"]["fields"][LANE]["value"], "B");
    assert!(full.get("changelog").is_none(), "{full}");
    for g in &got {
        let c = &g.json["comment"];
        assert_eq!((c["body"].as_str(), c["author"]["accountId"].as_str()), (Some("h3. Plan\n* step"), Some(BOT_ACCOUNT)), "wiki comes back as written");
        assert!(rollgate::ingest::jira::jira_time(c["created"].as_str().unwrap()).is_some());
    }

    // A person edits it: comment_updated + issue_comment_edited, the editor in updateAuthor.
    jira.issue_event_first(true);
    let id = got[0].json["comment"]["id"].as_str().unwrap().to_string();
    jira.person("acc-priya").edit_comment(&id, "h3. Plan\n* step, done");
    let got = rx.wait_for(4).await;
    assert_eq!(got[2].event(), ("jira:issue_updated", Some("issue_comment_edited")), "the other order when asked");
    assert_eq!(got[3].event(), ("comment_updated", None));
    let c = &got[3].json["comment"];
    assert_eq!((c["author"]["accountId"].as_str(), c["updateAuthor"]["accountId"].as_str()), (Some(BOT_ACCOUNT), Some("acc-priya")));
    assert_eq!(got[2].json["user"]["accountId"], "acc-priya");
    assert!(c["updated"].as_str().unwrap() > c["created"].as_str().unwrap());

    // Deleted: comment_deleted + issue_comment_deleted.
    jira.person("acc-priya").delete_comment(&id);
    let got = rx.wait_for(6).await;
    assert_eq!([got[4].event(), got[5].event()], [("jira:issue_updated", Some("issue_comment_deleted")), ("comment_deleted", None)]);
    assert!(jira.comments("PROJ-1").is_empty());
}

const CHECKLIST: &str = "### Rollout checklist — type 3 (Demoed)

Dev released **2026-11-24** · status `dev-released`

- [ ] **Release note** — PM · 1 page <!-- box:release-note -->
- [x] **Training material** — PM + CS <!-- box:training-material -->

<details><summary>Template: Sales kit</summary>

1. point one
2. point two

</details>
";

#[tokio::test]
async fn an_adf_comment_comes_back_as_wiki_text_and_a_tick_is_an_edit() {
    let (jira, rx) = looped().await;
    let body = rollgate::tracker::jira::markup::to_adf(CHECKLIST);
    let r = rest(&jira, reqwest::Method::POST, "3", "/issue/PROJ-1/comment").json(&json!({ "body": body }));
    let made: Value = r.send().await.unwrap().json().await.unwrap();
    assert_eq!(made["body"]["type"], "doc", "the REST answer is ADF, as written");
    let got = rx.wait_for(2).await;
    for g in &got {
        let wiki = g.json["comment"]["body"].as_str().expect("webhook bodies are wiki text, never ADF");
        for want in [
            "h3. Rollout checklist — type 3 (Demoed)\n\nDev released *2026-11-24* · status {{dev-released}}\n\n",
            "* *Release note*",
            "* -*Training material*-",
            "*Template: Sales kit*\n\n# point one\n# point two",
        ] {
            assert!(wiki.contains(want), "{want:?} missing from:\n{wiki}");
        }
        assert!(!wiki.contains("[x]") && !wiki.contains("\"type\""), "{wiki}");
    }
    // The v2 API shows the same wiki text; v3 the ADF.
    let v2: Value = rest(&jira, reqwest::Method::GET, "2", "/issue/PROJ-1/comment").send().await.unwrap().json().await.unwrap();
    assert_eq!(v2["comments"][0]["body"], got[0].json["comment"]["body"]);

    // A person ticks "Release note" in Jira's editor: the task item's state flips.
    let id = made["id"].as_str().unwrap();
    jira.person("acc-priya").tick(id, "Release note");
    let got = rx.wait_for(4).await;
    assert_eq!(got[2].event(), ("comment_updated", None));
    assert!(got[2].json["comment"]["body"].as_str().unwrap().contains("* -*Release note*-"), "{}", got[2].json["comment"]["body"]);
    let stored = &jira.comments("PROJ-1")[0].body;
    assert!(stored.to_string().matches("\"DONE\"").count() == 2, "{stored}");
    assert_eq!(got[2].parsed.as_ref().unwrap(), &("issue_comment.edited".to_string(), "acc-priya".to_string()));
}

#[tokio::test]
async fn a_tick_on_data_center_is_an_edit_of_the_brackets() {
    let (jira, rx) = looped().await;
    let wiki = rollgate::tracker::jira::markup::to_wiki(CHECKLIST);
    assert!(wiki.contains("* \\[ ] *Release note*"), "{wiki}");
    let r = rest(&jira, reqwest::Method::POST, "2", "/issue/PROJ-1/comment").json(&json!({ "body": wiki }));
    let id = r.send().await.unwrap().json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let priya = jira.person("acc-priya");
    priya.tick(&id, "Release note");
    priya.untick(&id, "Training material");
    let got = rx.wait_for(6).await;
    assert_eq!((got[2].event(), got[4].event()), (("comment_updated", None), ("comment_updated", None)));
    let after = got[4].json["comment"]["body"].as_str().unwrap();
    assert!(after.contains("* \\[x] *Release note*") && after.contains("* \\[ ] *Training material*"), "{after}");
    assert_eq!(after.replace("\\[x] *Release", "\\[ ] *Release").replace("\\[ ] *Training", "\\[x] *Training"), wiki, "only the brackets changed");
}

#[tokio::test]
async fn failed_deliveries_are_retried_under_the_same_identifier() {
    let (jira, rx) = looped().await;
    rx.answers.lock().unwrap().extend([503, 429, 202, 400]);
    jira.person("acc-dev").add_label("PROJ-1", "x");
    let got = rx.wait_for(3).await;
    assert_eq!(got[0].id(), got[2].id());
    let retries: Vec<Option<&str>> = got.iter().map(|g| g.headers.get("x-atlassian-webhook-retry").map(|v| v.to_str().unwrap())).collect();
    assert_eq!(retries, [None, Some("1"), Some("2")]);
    // A 400 is never resent: the next change's delivery is the next one to come.
    jira.person("acc-dev").add_label("PROJ-1", "y");
    jira.person("acc-dev").add_label("PROJ-1", "z");
    let got = rx.wait_for(5).await;
    assert_ne!(got[3].id(), got[4].id());
    jira.wait_deliveries_sent().await;
    let log: Vec<Option<u16>> = jira.deliveries().iter().map(|d| d.status).collect();
    assert_eq!(log, [Some(503), Some(429), Some(202), Some(400), Some(202)]);

    // Nobody listening: the connection is refused, and retried.
    let (jira, _) = looped().await;
    jira.deliver_to("http://127.0.0.1:9/webhooks/jira", Some(SECRET));
    jira.set_retry_delay(Duration::from_millis(10));
    jira.person("acc-dev").add_label("PROJ-1", "x");
    jira.wait_deliveries_sent().await;
    let tries = jira.deliveries();
    assert_eq!(tries.len(), 6, "the first attempt and 5 retries: {tries:#?}");
    assert!(tries.iter().all(|d| d.status.is_none() && d.identifier == tries[0].identifier));
}

#[tokio::test]
async fn every_delivery_can_be_sent_twice_under_one_identifier() {
    let (jira, rx) = looped().await;
    jira.retry_every_delivery_once();
    jira.person("acc-dev").transition("PROJ-1", "Decided");
    let got = rx.wait_for(2).await;
    assert_eq!(got[0].id(), got[1].id());
    assert_eq!(got[1].headers["x-atlassian-webhook-retry"], "1");
    assert_eq!(got[0].json, got[1].json, "the same body");
}

#[tokio::test]
async fn held_deliveries_are_released_in_the_order_asked() {
    let (jira, rx) = looped().await;
    jira.hold_deliveries();
    let priya = jira.person("acc-priya");
    priya.set_field("PROJ-1", ROLLOUT, json!({ "value": "2 Notified" }));
    priya.transition("PROJ-1", "Decided");
    priya.comment("PROJ-1", adf("Looks good.\n/rollout 2"));
    assert_eq!((jira.deliveries_held(), jira.deliveries_pending()), (4, 4));
    jira.release_deliveries(Release::Reversed);
    let got = rx.wait_for(4).await;
    let events: Vec<(&str, Option<&str>)> = got.iter().map(Got::event).collect();
    assert_eq!(
        events,
        [
            ("jira:issue_updated", Some("issue_commented")),
            ("comment_created", None),
            ("jira:issue_updated", Some("issue_generic")),
            ("jira:issue_updated", Some("issue_updated")),
        ]
    );
    assert_eq!(got[1].json["comment"]["body"], "Looks good.\n\n/rollout 2", "an ADF comment from Cloud, as wiki");
    // Each snapshot is the issue as it was at its change: the rollout edit, released last,
    // still shows Planning.
    assert_eq!(got[3].json["issue"]["fields"]["status"]["name"], "Planning");
    assert_eq!(got[2].json["issue"]["fields"]["status"]["name"], "Decided");
}

#[tokio::test]
async fn seeded_delays_let_later_deliveries_overtake_earlier_ones() {
    let (jira, rx) = looped().await;
    // Seed 1 draws 2777, 1125, 1819 and 239 ms for the four deliveries below.
    jira.delay_deliveries(1, Duration::from_secs(3));
    let dev = jira.person("acc-dev");
    for label in ["a", "b", "c", "d"] {
        dev.add_label("PROJ-1", label);
    }
    let got = rx.wait_for(4).await;
    let added: Vec<String> = got.iter().map(|g| items(g)[0]["toString"].as_str().unwrap().to_string()).collect();
    assert_eq!(added.last().map(String::as_str), Some("a old"), "the first change, delayed longest, comes last: {added:?}");
    assert_eq!(added[0], "a b c d old", "the last change, delayed least, comes first: {added:?}");
}

#[tokio::test]
async fn people_cause_the_deliveries_their_changes_cause() {
    let (jira, rx) = looped().await;
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-24T09:30:00Z").unwrap().to_utc();
    jira.set_time(t);
    let priya = jira.person("acc-priya");
    let key = priya.create_issue_with(json!({
        "project": { "key": "PROJ" }, "issuetype": { "name": "Bug" }, "summary": "Login fails",
        "labels": ["needs-demo"], LANE: { "value": "A" },
    }));
    assert_eq!(key, "PROJ-2");
    let g = &rx.wait_for(1).await[0];
    assert_eq!(g.event(), ("jira:issue_created", Some("issue_created")));
    assert_eq!(g.parsed, Ok(("issues.opened".to_string(), "acc-priya".to_string())));
    assert_eq!(g.json["timestamp"], t.timestamp_millis(), "the world clock");
    assert_eq!(g.json["issue"]["fields"]["created"], "2026-11-24T09:30:00.000+0000");
    assert_eq!(g.json["issue"]["fields"]["reporter"]["accountId"], "acc-priya");
    let fields: Vec<String> = items(g).iter().map(|i| i["field"].as_str().unwrap().to_string()).collect();
    assert_eq!(fields, ["labels", "Lane", "reporter", "Status", "summary"]);

    jira.advance(chrono::Duration::hours(2));
    priya.remove_label(&key, "needs-demo");
    priya.set_field(&key, LANE, Value::Null);
    let got = rx.wait_for(3).await;
    assert_eq!(got[1].json["timestamp"], (t + chrono::Duration::hours(2)).timestamp_millis());
    assert_eq!(items(&got[1])[0], json!({ "field": "labels", "fieldtype": "jira", "fieldId": "labels", "from": null, "fromString": "needs-demo", "to": null, "toString": null }));
    assert_eq!((items(&got[2])[0]["fromString"].as_str(), items(&got[2])[0]["to"].as_str()), (Some("A"), None), "a cleared select");
    assert!(got[2].json["issue"]["fields"][LANE].is_null());
    assert_eq!(got[2].json["timestamp"].as_i64(), Some((t + chrono::Duration::hours(2)).timestamp_millis() + 1), "every change moves the clock");
    // Set-up helpers stay silent.
    jira.seed("PROJ-9", "Bug", "Planning", &[]);
    jira.set_status("PROJ-9", "Released");
    jira.add_comment("PROJ-9", "acc-dev", json!("hello"));
    priya.add_label(&key, "last");
    let got = rx.wait_for(4).await;
    assert_eq!(got[3].json["issue"]["key"], key.as_str(), "nothing came for PROJ-9");
    assert_eq!(rx.count(), 4);
}

/// The ADF → wiki rendering against expectations from Atlassian's own converter tests
/// (editor-wikimarkup-transformer: encoder/task.ts, expand.ts, table snapshots).
#[test]
fn adf_renders_as_atlassians_converter_renders_it() {
    use support::fake_jira::wiki::render;
    let item = |state: &str, text: &str| json!({ "type": "taskItem", "attrs": { "localId": text, "state": state }, "content": [{ "type": "text", "text": text }] });
    let list = |content: Vec<Value>| json!({ "type": "taskList", "attrs": { "localId": "l" }, "content": content });
    let doc = |content: Vec<Value>| json!({ "type": "doc", "version": 1, "content": content });
    let tasks = doc(vec![list(vec![
        item("DONE", "Level 1 done"),
        list(vec![item("TODO", "Level 2 open"), item("DONE", "Level 2 done"), list(vec![item("DONE", "Level 3 done"), item("TODO", "Level 3 open")])]),
        item("TODO", "Level 1 open"),
    ])]);
    assert_eq!(render(&tasks), "* -Level 1 done-\n** Level 2 open\n** -Level 2 done-\n*** -Level 3 done-\n*** Level 3 open\n* Level 1 open");

    let p = |text: &str| json!({ "type": "paragraph", "content": [{ "type": "text", "text": text }] });
    let expand = |kind: &str, title: &str, content: Vec<Value>| json!({ "type": kind, "attrs": { "title": title }, "content": content });
    assert_eq!(render(&doc(vec![expand("expand", "Title", vec![p("helloooooo")])])), "*Title*\n\nhelloooooo");
    let nested = render(&doc(vec![expand("expand", "Title", vec![p("helloooooo"), expand("nestedExpand", "Inner", vec![p("Joni Rules!")])])]));
    assert!(nested.starts_with("*Title*\n\nhelloooooo\n{adf:display=block}\n{") && nested.ends_with("}\n{adf}"), "{nested}");

    let cell = |kind: &str, text: &str| json!({ "type": kind, "attrs": {}, "content": [p(text)] });
    let row = |cells: Vec<Value>| json!({ "type": "tableRow", "content": cells });
    let table = json!({ "type": "table", "attrs": { "isNumberColumnEnabled": false, "layout": "default" }, "content": [
        row(vec![cell("tableHeader", "Header 0"), cell("tableHeader", "Header Row 1")]),
        row(vec![cell("tableHeader", "Header Column 1"), cell("tableCell", "")]),
    ]});
    assert_eq!(render(&doc(vec![table])), "||Header 0||Header Row 1||\n||Header Column 1| |");

    // Marks, and text the wiki would otherwise read as markup.
    let text = |t: &str, marks: Value| json!({ "type": "text", "text": t, "marks": marks });
    let para = json!({ "type": "paragraph", "content": [
        text("bold ", json!([{ "type": "strong" }])), text("site", json!([{ "type": "link", "attrs": { "href": "https://e.com" } }])),
        { "type": "hardBreak" }, { "type": "text", "text": "see {code} and !img.png! for [~bob]" },
    ]});
    assert_eq!(render(&doc(vec![para])), "*bold* [site|https://e.com]\nsee \\{code} and \\!img.png\\! for \\[~bob]");
}

//! Checks the fake GitHub's closed loop on its own: a small receiver stands where rollgate's
//! webhook would, verifies every delivery's signature with rollgate's own check and parses it
//! with rollgate's own parser (none may be refused), and the sequences GitHub sends are
//! asserted: one `labeled` per label added, `opened` then `labeled` per label, swaps in both
//! orders, comment edits by POST and PATCH, bot and person senders, held and reordered
//! deliveries, redeliveries, and snapshots taken at the moment of each change. When a
//! closed-loop test fails, this says whether the fake or rollgate is wrong.

mod support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use reqwest::Method;
use rollgate::config::Secret;
use rollgate::ingest::Parsed;
use rollgate::model::{DeliveryId, Event};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::fake_github::{app_private_key, FakeGithub, Order, SwapOrder, APP_BOT_LOGIN, APP_ID, BOT_LOGIN, TOKEN};
use support::{Harness, REPO, SECRET};

/// One delivery as the receiver got it.
#[derive(Clone)]
struct Got {
    headers: HeaderMap,
    body: Bytes,
    payload: Value,
    /// rollgate's reading of it; `None` for a kind rollgate ignores (its reason in `ignored`).
    event: Option<Event>,
    ignored: Option<String>,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// `issues.labeled lane/B`, `issue_comment.edited`: what a sequence assertion reads.
    fn what(&self) -> String {
        let kind = format!("{}.{}", self.header("x-github-event"), self.payload["action"].as_str().unwrap_or(""));
        match self.payload["label"]["name"].as_str() {
            Some(l) => format!("{kind} {l}"),
            None => kind,
        }
    }

    fn labels(&self) -> Vec<String> {
        self.payload["issue"]["labels"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap().to_string()).collect()
    }

    fn sender(&self) -> (String, String) {
        (self.payload["sender"]["login"].as_str().unwrap().into(), self.payload["sender"]["type"].as_str().unwrap().into())
    }

    fn event(&self) -> &Event {
        self.event.as_ref().unwrap_or_else(|| panic!("rollgate ignored {}: {:?}", self.what(), self.ignored))
    }
}

/// Where rollgate's webhook would be: checks and records every delivery. A bad signature is
/// answered 401 and an unreadable body 400, as rollgate does; the tests then see it in the
/// fake's record of answers.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
}

async fn receive(State(got): State<Arc<Mutex<Vec<Got>>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok());
    if !rollgate::ingest::signature::verify(&[Secret::new(SECRET)], &body, sig) {
        return StatusCode::UNAUTHORIZED;
    }
    let event = headers.get("x-github-event").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let id = headers.get("x-github-delivery").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (event, ignored) = match rollgate::ingest::github::parse(&event, DeliveryId(id), &body, chrono::Utc::now()) {
        Ok(Parsed::Event(e)) => (Some(*e), None),
        Ok(Parsed::Ignored(why)) => (None, Some(why)),
        Ok(Parsed::Ping) => (None, Some("ping".into())),
        Err(_) => return StatusCode::BAD_REQUEST,
    };
    let payload = serde_json::from_slice(&body).unwrap();
    got.lock().unwrap().push(Got { headers, body, payload, event, ignored });
    StatusCode::ACCEPTED
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhooks/github", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let app = axum::Router::new().route("/webhooks/github", post(receive)).with_state(got.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, got }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

/// A fake GitHub delivering to a fresh receiver.
async fn world() -> (FakeGithub, Receiver) {
    let fake = FakeGithub::start().await;
    let rx = Receiver::start().await;
    fake.deliver_to(&rx.url, SECRET);
    (fake, rx)
}

/// Waits until the fake has sent everything it is not holding; every answer must be a 202.
async fn sent(fake: &FakeGithub, rx: &Receiver) -> Vec<Got> {
    fake.deliveries_sent(Duration::from_secs(30)).await;
    // Held, or left out of a release: not sent, nothing to check.
    for d in fake.deliveries().into_iter().filter(|d| d.status.is_some() || d.error.is_some()) {
        assert_eq!(d.status, Some(202), "{}.{} {:?} was not accepted: {:?}", d.event, d.action, d.label, d.error);
    }
    rx.got()
}

fn whats(got: &[Got]) -> Vec<String> {
    got.iter().map(Got::what).collect()
}

/// Calls the fake's REST API with `auth` (rollgate's token unless told otherwise).
async fn call(fake: &FakeGithub, auth: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(method, format!("{}{path}", fake.url)).header("authorization", auth);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn api(fake: &FakeGithub, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    call(fake, &format!("token {TOKEN}"), method, path, body).await
}

fn issue_path(n: u64) -> String {
    format!("/repos/{REPO}/issues/{n}")
}

#[tokio::test]
async fn labels_added_with_rollgates_token_come_back_one_labeled_delivery_each_signed_as_github_signs() {
    let (fake, rx) = world().await;
    fake.seed(REPO, 1, &["type/bug"]);
    let (status, _) = api(&fake, Method::POST, &format!("{}/labels", issue_path(1)), Some(json!({"labels": ["lane/B", "type/bug", "status/planning"]}))).await;
    assert_eq!(status, 200);
    let got = sent(&fake, &rx).await;
    // type/bug was already there: no delivery for it.
    assert_eq!(whats(&got), ["issues.labeled lane/B", "issues.labeled status/planning"]);
    for g in &got {
        assert_eq!(g.sender(), (BOT_LOGIN.to_string(), "Bot".to_string()));
        let e = g.event();
        assert!(e.actor.is_bot && e.actor.login == BOT_LOGIN);
        assert_eq!(e.kind, "issues.labeled");
        assert_eq!(e.label.as_deref(), g.payload["label"]["name"].as_str());
        // One request, one change: both deliveries carry its result, as full label objects.
        assert_eq!(g.labels(), ["type/bug", "lane/B", "status/planning"]);
        assert!(g.payload["label"]["color"].is_string() && g.payload["issue"]["labels"][0]["id"].is_u64(), "{}", g.payload);
        assert_eq!(g.payload["repository"]["full_name"], REPO);
        assert!(g.payload.get("installation").is_none(), "a repository webhook names no installation");
        // Headers as GitHub sends them.
        assert_eq!(g.header("content-type"), "application/json");
        assert!(g.header("user-agent").starts_with("GitHub-Hookshot/"), "{}", g.header("user-agent"));
        assert_eq!(g.header("x-github-event"), "issues");
        let id = g.header("x-github-delivery");
        assert!(id.len() == 36 && [8, 13, 18, 23].iter().all(|i| id.as_bytes()[*i] == b'-'), "a GUID: {id}");
        assert!(g.header("x-github-hook-id").parse::<u64>().is_ok());
        assert_eq!(g.header("x-github-hook-installation-target-type"), "repository");
        assert_eq!(g.header("x-github-hook-installation-target-id"), g.payload["repository"]["id"].to_string());
        assert_eq!(g.header("x-hub-signature-256"), support::fake_github::signature(SECRET, &g.body));
    }
    assert_ne!(got[0].header("x-github-delivery"), got[1].header("x-github-delivery"));
    let record = fake.deliveries();
    assert_eq!((record[0].label.as_deref(), record[0].sender.as_str()), (Some("lane/B"), BOT_LOGIN));
}

#[tokio::test]
async fn an_issue_created_with_labels_sends_opened_then_one_labeled_per_label_each_with_every_label() {
    let (fake, rx) = world().await;
    let (status, issue) =
        api(&fake, Method::POST, &format!("/repos/{REPO}/issues"), Some(json!({"title": "Rollout metrics", "body": "b", "labels": ["report", "rollgate"]}))).await;
    assert_eq!(status, 201);
    let n = issue["number"].as_u64().unwrap();
    let got = sent(&fake, &rx).await;
    assert_eq!(whats(&got), ["issues.opened", "issues.labeled report", "issues.labeled rollgate"]);
    for g in &got {
        assert_eq!(g.labels(), ["report", "rollgate"], "{}", g.what());
        assert_eq!(g.event().issue.key.number(), n);
        assert_eq!(g.event().issue.title, "Rollout metrics");
    }
    assert_eq!(got[0].payload["issue"]["user"]["login"], BOT_LOGIN);
}

#[tokio::test]
async fn replacing_labels_sends_unlabeled_for_each_removed_and_labeled_for_each_added() {
    let (fake, rx) = world().await;
    fake.seed(REPO, 1, &["a", "b", "lane/B"]);
    assert_eq!(api(&fake, Method::PUT, &format!("{}/labels", issue_path(1)), Some(json!({"labels": ["b", "lane/B", "c"]}))).await.0, 200);
    assert_eq!(api(&fake, Method::PATCH, &issue_path(1), Some(json!({"labels": ["c", "lane/B", "d"]}))).await.0, 200);
    // The name is percent-encoded in the path, as rollgate sends it.
    assert_eq!(api(&fake, Method::DELETE, &format!("{}/labels/lane%2FB", issue_path(1)), None).await.0, 200);
    let (status, answer) = api(&fake, Method::DELETE, &format!("{}/labels/lane%2FB", issue_path(1)), None).await;
    assert_eq!((status, answer["message"].as_str()), (404, Some("Label does not exist")));
    let got = sent(&fake, &rx).await;
    assert_eq!(
        whats(&got),
        ["issues.unlabeled a", "issues.labeled c", "issues.unlabeled b", "issues.labeled d", "issues.unlabeled lane/B"],
        "a missing label sends nothing"
    );
    assert_eq!(got[4].labels(), ["c", "d"]);
    assert_eq!(got[4].event().label.as_deref(), Some("lane/B"));

    // As real deliveries sometimes do: the removed label still listed in the snapshot.
    fake.unlabeled_snapshots_keep_the_label(true);
    fake.person("sam").remove_label(REPO, 1, "c");
    let late = sent(&fake, &rx).await;
    assert_eq!((late[5].what().as_str(), late[5].labels()), ("issues.unlabeled c", vec!["d".to_string(), "c".to_string()]));
    assert_eq!(fake.labels(REPO, 1), ["d"], "the label is gone all the same");
}

#[tokio::test]
async fn closing_reopening_and_editing_state_what_changed_at_the_worlds_time() {
    let (fake, rx) = world().await;
    fake.set_time("2026-11-02T09:00:00Z");
    fake.seed(REPO, 1, &["type/bug"]);
    fake.advance(30);
    api(&fake, Method::PATCH, &issue_path(1), Some(json!({"state": "closed", "state_reason": "not_planned"}))).await;
    fake.advance(60);
    api(&fake, Method::PATCH, &issue_path(1), Some(json!({"state": "open"}))).await;
    // Asking for the state it already has changes nothing and sends nothing.
    api(&fake, Method::PATCH, &issue_path(1), Some(json!({"state": "open"}))).await;
    fake.advance(1);
    api(&fake, Method::PATCH, &issue_path(1), Some(json!({"title": "Crash on start"}))).await;
    api(&fake, Method::PATCH, &issue_path(1), Some(json!({"body": "It crashes."}))).await;
    let got = sent(&fake, &rx).await;
    assert_eq!(whats(&got), ["issues.closed", "issues.reopened", "issues.edited", "issues.edited"]);

    let closed = &got[0].payload["issue"];
    assert_eq!((closed["state"].as_str(), closed["state_reason"].as_str()), (Some("closed"), Some("not_planned")));
    assert_eq!((closed["closed_at"].as_str(), closed["updated_at"].as_str()), (Some("2026-11-02T09:00:30Z"), Some("2026-11-02T09:00:30Z")));
    assert_eq!(closed["created_at"], "2026-11-02T09:00:00Z");
    assert_eq!(got[0].event().occurred_at.to_rfc3339(), "2026-11-02T09:00:30+00:00", "a close happened at closed_at");
    let reopened = &got[1].payload["issue"];
    assert_eq!((reopened["state"].as_str(), reopened["state_reason"].as_str()), (Some("open"), Some("reopened")));
    assert_eq!(reopened["updated_at"], "2026-11-02T09:01:30Z");
    assert_eq!(got[2].payload["changes"], json!({"title": {"from": "issue 1"}}));
    assert_eq!(got[2].payload["issue"]["title"], "Crash on start");
    assert_eq!(got[3].payload["changes"], json!({"body": {"from": ""}}));
    assert_eq!(got[3].event().issue.body, "It crashes.");
    assert_eq!(got[3].payload["issue"]["updated_at"], "2026-11-02T09:01:31Z");
}

#[tokio::test]
async fn comments_are_created_edited_by_post_and_by_patch_and_deleted() {
    let (fake, rx) = world().await;
    fake.seed(REPO, 1, &[]);
    let (status, c) = api(&fake, Method::POST, &format!("{}/comments", issue_path(1)), Some(json!({"body": "first"}))).await;
    assert_eq!(status, 201);
    let id = c["id"].as_u64().unwrap();
    let path = format!("/repos/{REPO}/issues/comments/{id}");
    // octocrab edits with POST; GitHub accepts it as PATCH.
    assert_eq!(api(&fake, Method::POST, &path, Some(json!({"body": "second"}))).await.0, 200);
    assert_eq!(api(&fake, Method::PATCH, &path, Some(json!({"body": "third"}))).await.0, 200);
    // The same text again is no change: GitHub sends nothing.
    assert_eq!(api(&fake, Method::PATCH, &path, Some(json!({"body": "third"}))).await.0, 200);
    assert_eq!(api(&fake, Method::DELETE, &path, None).await.0, 204);
    let got = sent(&fake, &rx).await;
    assert_eq!(whats(&got), ["issue_comment.created", "issue_comment.edited", "issue_comment.edited", "issue_comment.deleted"]);

    let created = &got[0];
    assert_eq!(created.payload["comment"]["id"], id);
    assert_eq!(created.payload["comment"]["user"]["type"], "Bot");
    assert!(created.payload["comment"]["created_at"].is_string() && created.payload["comment"]["updated_at"].is_string());
    assert_eq!(created.payload["issue"]["comments"], 1);
    let comment = created.event().comment.as_ref().unwrap();
    assert_eq!((comment.id.0, comment.body.as_str(), comment.previous_body.as_deref()), (id, "first", None));
    for (g, (from, to)) in got[1..3].iter().zip([("first", "second"), ("second", "third")]) {
        assert_eq!(g.payload["changes"], json!({"body": {"from": from}}));
        let c = g.event().comment.as_ref().unwrap();
        assert_eq!((c.body.as_str(), c.previous_body.as_deref()), (to, Some(from)));
    }
    // rollgate ignores a deleted comment: acknowledged, not refused.
    assert!(got[3].ignored.as_deref().is_some_and(|w| w.contains("deleted")), "{:?}", got[3].ignored);
    assert_eq!((got[3].payload["comment"]["body"].as_str(), got[3].payload["issue"]["comments"].as_u64()), (Some("third"), Some(0)));
}

#[tokio::test]
async fn a_person_acts_as_a_user_and_rollgate_as_a_bot() {
    let (fake, rx) = world().await;
    let alice = fake.person("pm-alice");
    let n = alice.open_issue(REPO, "Crash", "It crashes.", &["type/bug"]);
    let id = alice.comment(REPO, n, "/rollout 3");
    api(&fake, Method::POST, &format!("{}/comments", issue_path(n)), Some(json!({"body": "<!-- rollgate:reply -->\nOK"}))).await;
    let got = sent(&fake, &rx).await;
    assert_eq!(whats(&got), ["issues.opened", "issues.labeled type/bug", "issue_comment.created", "issue_comment.created"]);
    let user = ("pm-alice".to_string(), "User".to_string());
    assert_eq!([got[0].sender(), got[1].sender(), got[2].sender()], [user.clone(), user.clone(), user]);
    assert!(!got[2].event().actor.is_bot);
    assert_eq!(got[0].payload["issue"]["user"]["login"], "pm-alice");
    assert_eq!(got[2].payload["comment"]["id"], id);
    assert_eq!(got[2].payload["comment"]["user"]["type"], "User");
    assert_eq!(got[3].sender(), (BOT_LOGIN.to_string(), "Bot".to_string()));
    assert!(got[3].event().actor.is_bot && got[3].event().comment.as_ref().unwrap().author.is_bot);
    assert_eq!(got[3].payload["issue"]["comments"], 2);
}

#[tokio::test]
async fn a_swap_is_two_deliveries_in_the_order_chosen_each_with_the_issue_after_its_own_half() {
    let (fake, rx) = world().await;
    fake.seed(REPO, 1, &["type/bug", "lane/B"]);
    let pm = fake.person("pm-alice");
    pm.swap_label(REPO, 1, "lane/B", "lane/A", SwapOrder::RemoveFirst);
    pm.swap_label(REPO, 1, "lane/A", "lane/C", SwapOrder::AddFirst);
    let got = sent(&fake, &rx).await;
    assert_eq!(whats(&got), ["issues.unlabeled lane/B", "issues.labeled lane/A", "issues.labeled lane/C", "issues.unlabeled lane/A"]);
    // Removed first: for a moment the issue has no lane at all, and that is what GitHub says.
    assert_eq!(got[0].labels(), ["type/bug"]);
    assert_eq!(got[1].labels(), ["type/bug", "lane/A"]);
    // Added first: for a moment it has two lanes.
    assert_eq!(got[2].labels(), ["type/bug", "lane/A", "lane/C"]);
    assert_eq!(got[3].labels(), ["type/bug", "lane/C"]);
    assert_eq!(fake.labels(REPO, 1), ["lane/C", "type/bug"]);
}

#[tokio::test]
async fn each_delivery_carries_the_issue_as_it_was_at_its_change_so_a_late_one_is_older() {
    let (fake, rx) = world().await;
    fake.seed(REPO, 1, &[]);
    fake.hold_deliveries();
    // Two quick changes by rollgate's token, in two requests.
    api(&fake, Method::POST, &format!("{}/labels", issue_path(1)), Some(json!({"labels": ["a"]}))).await;
    api(&fake, Method::POST, &format!("{}/labels", issue_path(1)), Some(json!({"labels": ["b"]}))).await;
    assert!(sent(&fake, &rx).await.is_empty(), "held deliveries are not sent");
    let held = fake.held_deliveries();
    assert_eq!(held.iter().map(|d| d.label.clone().unwrap()).collect::<Vec<_>>(), ["a", "b"]);
    fake.release_deliveries(Order::Reversed);
    let got = sent(&fake, &rx).await;
    assert_eq!(whats(&got), ["issues.labeled b", "issues.labeled a"]);
    // The one that arrives last describes the issue before the other change.
    assert_eq!(got[0].labels(), ["a", "b"]);
    assert_eq!(got[1].labels(), ["a"]);
}

#[tokio::test]
async fn held_deliveries_go_out_in_any_order_asked_and_one_left_out_is_lost() {
    let (fake, rx) = world().await;
    fake.seed(REPO, 1, &[]);
    let pm = fake.person("pm-alice");
    fake.hold_deliveries();
    for l in ["a", "b", "c"] {
        pm.add_labels(REPO, 1, &[l]);
    }
    fake.release_deliveries(Order::custom(|v| {
        v.rotate_left(1);
        v.pop();
    }));
    let got = sent(&fake, &rx).await;
    assert_eq!(whats(&got), ["issues.labeled b", "issues.labeled c"]);
    // Holding is over: the next change goes straight out.
    pm.add_labels(REPO, 1, &["d"]);
    assert_eq!(whats(&sent(&fake, &rx).await)[2..], ["issues.labeled d"]);
    assert_eq!(fake.deliveries().iter().filter(|d| d.status.is_none()).count(), 1, "the one left out was never sent");
}

#[tokio::test]
async fn a_redelivery_sends_the_same_body_under_the_same_delivery_id() {
    let (fake, rx) = world().await;
    fake.seed(REPO, 1, &[]);
    fake.person("sam").add_labels(REPO, 1, &["needs/demo"]);
    let first = sent(&fake, &rx).await;
    assert_eq!(first.len(), 1);
    let id = fake.deliveries()[0].id.clone();
    fake.advance(3600);
    fake.redeliver(&id);
    let got = sent(&fake, &rx).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].header("x-github-delivery"), id);
    assert_eq!(got[1].body, got[0].body, "byte for byte, the old snapshot included");
    let record = fake.deliveries();
    assert_eq!((record[1].id.as_str(), record[1].redelivery, record[1].status), (id.as_str(), true, Some(202)));
}

#[tokio::test]
async fn seeded_delays_are_reproducible_and_let_a_later_delivery_overtake_an_earlier_one() {
    let max = Duration::from_secs(3);
    let run = move || async move {
        let (fake, rx) = world().await;
        fake.seed(REPO, 1, &[]);
        fake.delay_deliveries(7, max);
        let pm = fake.person("pm-alice");
        for i in 0..6 {
            pm.add_labels(REPO, 1, &[&format!("l{i}")]);
        }
        let got = sent(&fake, &rx).await;
        (fake.deliveries(), got)
    };
    let (made, got) = run().await;
    let delays: Vec<Duration> = made.iter().map(|d| d.delay.expect("a delay was drawn")).collect();
    let (again, _) = run().await;
    assert_eq!(delays, again.iter().map(|d| d.delay.unwrap()).collect::<Vec<_>>(), "the same seed draws the same delays");
    assert!(delays.iter().all(|d| *d <= max));
    assert_eq!(got.len(), 6);
    // A pair far enough apart that the machine's load cannot undo the overtaking.
    let (early, late) = (0..6)
        .flat_map(|i| (i + 1..6).map(move |j| (i, j)))
        .find(|(i, j)| delays[*i] >= delays[*j] + Duration::from_millis(1500))
        .expect("seed 7 draws a pair 1.5 s apart");
    let pos = |label: &str| got.iter().position(|g| g.payload["label"]["name"] == label).unwrap();
    assert!(pos(&format!("l{late}")) < pos(&format!("l{early}")), "l{late} overtook l{early}: {:?} / {delays:?}", whats(&got));
}

#[tokio::test]
async fn ticking_a_box_edits_one_line_of_the_bots_checklist() {
    let (fake, rx) = world().await;
    fake.seed(REPO, 1, &[]);
    let checklist = "<!-- rollgate:checklist -->\n- [ ] **Release note** <!-- box:release-note -->\n- [ ] **Sales kit** <!-- box:sales-kit -->";
    let (_, c) = api(&fake, Method::POST, &format!("{}/comments", issue_path(1)), Some(json!({"body": checklist}))).await;
    let id = c["id"].as_u64().unwrap();
    let pm = fake.person("pm-alice");
    pm.tick(id, "sales-kit");
    pm.untick(id, "sales-kit");
    let got = sent(&fake, &rx).await;
    assert_eq!(whats(&got), ["issue_comment.created", "issue_comment.edited", "issue_comment.edited"]);
    let ticked = got[1].event().comment.clone().unwrap();
    assert_eq!(ticked.previous_body.as_deref(), Some(checklist));
    assert_eq!(ticked.body, checklist.replace("- [ ] **Sales kit**", "- [x] **Sales kit**"));
    assert_eq!(rollgate::policy::boxes::box_changes(checklist, &ticked.body), (vec!["sales-kit".to_string()], vec![]));
    assert_eq!(got[1].sender(), ("pm-alice".to_string(), "User".to_string()));
    assert_eq!(got[1].payload["comment"]["user"]["login"], BOT_LOGIN, "the comment stays the bot's");
    let unticked = got[2].event().comment.clone().unwrap();
    assert_eq!(unticked.body, checklist);
    assert_eq!(rollgate::policy::boxes::box_changes(&ticked.body, &unticked.body), (vec![], vec!["sales-kit".to_string()]));
}

#[tokio::test]
async fn set_up_helpers_send_nothing_and_writes_are_counted_per_issue() {
    let (fake, rx) = world().await;
    fake.seed(REPO, 1, &["a"]);
    fake.seed(REPO, 2, &[]);
    fake.set_labels(REPO, 1, &["a", "b"]);
    fake.close(REPO, 2, "completed");
    let (_, c) = api(&fake, Method::POST, &format!("{}/comments", issue_path(1)), Some(json!({"body": "x"}))).await;
    fake.edit_comment(c["id"].as_u64().unwrap(), "y");
    api(&fake, Method::PATCH, &format!("/repos/{REPO}/issues/comments/{}", c["id"]), Some(json!({"body": "z"}))).await;
    api(&fake, Method::POST, &format!("{}/labels", issue_path(2)), Some(json!({"labels": ["c"]}))).await;
    let got = sent(&fake, &rx).await;
    assert_eq!(whats(&got), ["issue_comment.created", "issue_comment.edited", "issues.labeled c"]);
    assert_eq!(got[1].payload["changes"]["body"]["from"], "y", "the silent edit is what the next one changed");
    assert_eq!((fake.writes_on(REPO, 1), fake.writes_on(REPO, 2), fake.writes_on(REPO, 3)), (2, 1, 0));
}

/// A JWT for the fake App, as rollgate makes one (RS256 over the PKCS#1 test key).
fn app_jwt() -> String {
    use base64::Engine;
    let pem = app_private_key();
    let b64: String = pem.split("-----BEGIN RSA PRIVATE KEY-----").nth(1).and_then(|b| b.split("-----END").next()).unwrap().split_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iat": now - 60, "exp": now + 500, "iss": APP_ID});
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &jsonwebtoken::EncodingKey::from_rsa_der(&der)).unwrap()
}

#[tokio::test]
async fn with_the_app_installed_deliveries_name_the_installation_and_its_token_acts_as_the_apps_bot() {
    let (fake, rx) = world().await;
    fake.install_app(11, "Codertocat");
    fake.seed(REPO, 1, &[]);
    let jwt = app_jwt();
    let (status, token) = call(&fake, &format!("Bearer {jwt}"), Method::POST, "/app/installations/11/access_tokens", None).await;
    assert_eq!(status, 201);
    let token = format!("token {}", token["token"].as_str().unwrap());
    assert_eq!(call(&fake, &token, Method::POST, &format!("{}/labels", issue_path(1)), Some(json!({"labels": ["lane/B"]}))).await.0, 200);
    fake.person("pm-alice").comment(REPO, 1, "hello");
    let got = sent(&fake, &rx).await;
    assert_eq!(whats(&got), ["issues.labeled lane/B", "issue_comment.created"]);
    assert_eq!(got[0].sender(), (APP_BOT_LOGIN.to_string(), "Bot".to_string()));
    assert_eq!(got[1].sender().0, "pm-alice");
    for g in &got {
        assert_eq!(g.payload["installation"]["id"], 11);
        assert_eq!(g.event().installation, Some(11));
        assert_eq!(g.header("x-github-hook-installation-target-type"), "integration");
        assert_eq!(g.header("x-github-hook-installation-target-id"), APP_ID.to_string());
    }
}

#[tokio::test]
async fn before_deliver_to_nothing_is_sent_and_a_receiver_that_is_down_is_recorded_not_retried() {
    let fake = FakeGithub::start().await;
    fake.seed(REPO, 1, &[]);
    fake.person("sam").add_labels(REPO, 1, &["a"]);
    assert!(fake.deliveries().is_empty(), "no webhook configured yet");
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    fake.deliver_to(&format!("http://{closed}/webhooks/github"), SECRET);
    fake.person("sam").add_labels(REPO, 1, &["b"]);
    fake.deliveries_sent(Duration::from_secs(30)).await;
    let d = fake.deliveries();
    assert_eq!(d.len(), 1, "GitHub does not retry by itself");
    assert!(d[0].status.is_none() && d[0].error.is_some(), "{d:?}");
}

#[tokio::test]
async fn rollgate_labels_a_persons_new_bug_through_the_loop_and_goes_quiet() {
    let h = Harness::start_closed_loop().await;
    let n = h.github.person("pm-alice").open_issue(REPO, "Crash at one client", "", &["type/bug", "scope/single-client"]);
    h.quiet().await;
    assert_eq!(h.github.labels(REPO, n), ["lane/B", "rollout/1-direct", "scope/single-client", "status/planning", "type/bug"]);
    let deliveries = h.github.deliveries();
    assert!(deliveries.iter().all(|d| d.status == Some(202)), "{deliveries:#?}");
    // The person's three, then rollgate's echo of each label it added.
    let by_bot = deliveries.iter().filter(|d| d.sender == BOT_LOGIN).count();
    assert_eq!((deliveries.len() - by_bot, by_bot), (3, 3), "{deliveries:#?}");
    // Nothing was ever taken off. (One write would do; today rollgate repeats it for each of
    // the person's later deliveries, whose snapshots predate it: issue 12.)
    assert!(h.github.writes().iter().all(|w| w.starts_with(&format!("ADD {REPO}#{n} "))), "{:?}", h.github.writes());
    h.app.stop().await.unwrap();
}

#[tokio::test]
#[should_panic(expected = "not quiet after")]
async fn quiet_gives_up_on_a_system_that_never_stops_and_shows_what_it_was_doing() {
    let h = Harness::start_closed_loop().await;
    // rollgate's write hangs on a paused GitHub: the inbox never drains.
    h.github.pause();
    let n = h.github.person("pm-alice").open_issue(REPO, "Crash", "", &["type/bug"]);
    assert_eq!(n, 1);
    h.quiet_within(Duration::from_secs(3)).await;
}

/// `POST /graphql` with rollgate's token.
async fn graphql(fake: &FakeGithub, query: &str, variables: Value) -> (u16, Value) {
    api(fake, Method::POST, "/graphql", Some(json!({ "query": query, "variables": variables }))).await
}

const COMMENTS: &str = "query($owner: String!, $name: String!, $number: Int!, $after: String) { repository(owner: $owner, name: $name) { issue(number: $number) { comments(first: 100, after: $after) { pageInfo { hasNextPage endCursor } nodes { id fullDatabaseId author { __typename login } createdAt body userContentEdits(first: 100) { pageInfo { hasNextPage endCursor } nodes { editedAt editor { __typename login } diff deletedAt } } } } } } }";

#[tokio::test]
async fn the_timeline_lists_every_label_close_and_reopen_made_through_the_fake_by_whoever_made_it() {
    // No deliveries configured: the timeline is the world's, not the hooks'.
    let fake = FakeGithub::start().await;
    fake.set_time("2026-11-02T09:00:00Z");
    let n = fake.person("someone").open_issue(REPO, "Crash", "", &["type/bug"]);
    fake.advance(60);
    api(&fake, Method::POST, &format!("{}/labels", issue_path(n)), Some(json!({"labels": ["lane/B"]}))).await;
    fake.advance(60);
    fake.person("priya").swap_label(REPO, n, "lane/B", "lane/A", SwapOrder::RemoveFirst);
    fake.advance(60);
    fake.person("priya").close(REPO, n, "not_planned");
    fake.advance(1);
    api(&fake, Method::PATCH, &issue_path(n), Some(json!({"state": "open"}))).await;
    // Comments and edits are no issue events.
    fake.person("priya").comment(REPO, n, "hello");

    let (status, events) = api(&fake, Method::GET, &format!("{}/events?per_page=100", issue_path(n)), None).await;
    assert_eq!(status, 200);
    let seen: Vec<String> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let what = e["label"]["name"].as_str().or(e["state_reason"].as_str()).unwrap_or("-");
            format!("{} {what} {}({}) {}", e["event"].as_str().unwrap(), e["actor"]["login"].as_str().unwrap(), e["actor"]["type"].as_str().unwrap(), e["created_at"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        seen,
        [
            "labeled type/bug someone(User) 2026-11-02T09:00:00Z",
            "labeled lane/B rollgate[bot](Bot) 2026-11-02T09:01:00Z",
            "unlabeled lane/B priya(User) 2026-11-02T09:02:00Z",
            "labeled lane/A priya(User) 2026-11-02T09:02:00Z",
            "closed not_planned priya(User) 2026-11-02T09:03:00Z",
            "reopened - rollgate[bot](Bot) 2026-11-02T09:03:01Z",
        ]
    );
    let labeled = &events[0];
    assert_eq!(labeled["label"], json!({"name": "type/bug", "color": "ededed"}), "label {{name, color}} as GitHub lists it");
    let ids: Vec<u64> = events.as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    // The set-up helper still adds entries of its own.
    fake.add_event(REPO, n, "labeled", Some("status/planning"), "2026-10-01T00:00:00Z", "old-timer");
    let (_, events) = api(&fake, Method::GET, &format!("{}/events?per_page=100", issue_path(n)), None).await;
    assert_eq!(events.as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn graphql_gives_each_comments_edit_history_newest_first_with_the_original_text_once_edited() {
    let fake = FakeGithub::start().await;
    fake.set_time("2026-11-02T09:00:00Z");
    fake.seed(REPO, 1, &["type/bug"]);
    let (_, c) = api(&fake, Method::POST, &format!("{}/comments", issue_path(1)), Some(json!({"body": "- [ ] a"}))).await;
    let bot_comment = c["id"].as_u64().unwrap();
    fake.person("someone").comment(REPO, 1, "just words");
    fake.advance(3600);
    fake.person("quinn").edit_comment(bot_comment, "- [x] a");
    fake.advance(1);
    api(&fake, Method::PATCH, &format!("/repos/{REPO}/issues/comments/{bot_comment}"), Some(json!({"body": "- [x] a\nall done"}))).await;
    // The same text again is no revision.
    fake.person("quinn").edit_comment(bot_comment, "- [x] a\nall done");

    let vars = json!({"owner": "Codertocat", "name": "Hello-World", "number": 1, "after": null});
    let (status, answer) = graphql(&fake, COMMENTS, vars.clone()).await;
    assert_eq!(status, 200);
    assert!(answer.get("errors").is_none(), "{answer}");
    let page = &answer["data"]["repository"]["issue"]["comments"];
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
    let nodes = page["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    let bot = &nodes[0];
    assert_eq!(bot["fullDatabaseId"], json!(bot_comment.to_string()), "a BigInt, as a string");
    assert_eq!(bot["author"], json!({"__typename": "Bot", "login": "rollgate"}), "no [bot] in GraphQL");
    assert_eq!((bot["createdAt"].as_str(), bot["body"].as_str()), (Some("2026-11-02T09:00:00Z"), Some("- [x] a\nall done")));
    let edits: Vec<(String, String, String)> = bot["userContentEdits"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["editedAt"].as_str().unwrap().into(), e["editor"]["login"].as_str().unwrap().into(), e["diff"].as_str().unwrap().into()))
        .collect();
    let row = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        edits,
        [
            row("2026-11-02T10:00:01Z", "rollgate", "- [x] a\nall done"),
            row("2026-11-02T10:00:00Z", "quinn", "- [x] a"),
            row("2026-11-02T09:00:00Z", "rollgate", "- [ ] a"),
        ],
        "newest first, the original text last"
    );
    assert_eq!(nodes[1]["userContentEdits"]["nodes"], json!([]), "never edited: no history");
    assert_eq!(nodes[1]["author"], json!({"__typename": "User", "login": "someone"}));

    // A deleted revision keeps its place, without its text.
    fake.delete_revision(bot_comment, 1);
    let (_, answer) = graphql(&fake, COMMENTS, vars).await;
    let middle = &answer["data"]["repository"]["issue"]["comments"]["nodes"][0]["userContentEdits"]["nodes"][1];
    assert!(middle["diff"].is_null() && middle["deletedAt"].is_string(), "{middle}");

    // Errors come back as GitHub sends them: HTTP 200 with an `errors` array.
    let (status, answer) = graphql(&fake, "query { viewer { login } }", json!({})).await;
    assert_eq!(status, 200);
    assert!(answer["errors"][0]["message"].is_string(), "{answer}");
    let (status, answer) = graphql(&fake, COMMENTS, json!({"owner": "Codertocat", "name": "Hello-World", "number": 99, "after": null})).await;
    assert_eq!(status, 200);
    assert_eq!(answer["errors"][0]["type"], "NOT_FOUND");
    assert!(answer["data"]["repository"]["issue"].is_null());
    // Credentials are checked as on every route.
    let (status, _) = call(&fake, "token wrong", Method::POST, "/graphql", Some(json!({"query": COMMENTS, "variables": {}}))).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn graphql_pages_comments_and_one_comments_edits_by_cursor() {
    let fake = FakeGithub::start().await;
    fake.seed(REPO, 1, &[]);
    let mut ids = Vec::new();
    for i in 0..150 {
        ids.push(fake.person("someone").comment(REPO, 1, &format!("comment {i}")));
    }
    for i in 0..120 {
        fake.person("quinn").edit_comment(ids[0], &format!("edit {i}"));
    }
    let vars = |after: Value| json!({"owner": "Codertocat", "name": "Hello-World", "number": 1, "after": after});
    let (_, first) = graphql(&fake, COMMENTS, vars(Value::Null)).await;
    let page = &first["data"]["repository"]["issue"]["comments"];
    assert_eq!((page["nodes"].as_array().unwrap().len(), &page["pageInfo"]["hasNextPage"]), (100, &json!(true)));
    let (_, second) = graphql(&fake, COMMENTS, vars(page["pageInfo"]["endCursor"].clone())).await;
    let page2 = &second["data"]["repository"]["issue"]["comments"];
    assert_eq!((page2["nodes"].as_array().unwrap().len(), &page2["pageInfo"]["hasNextPage"]), (50, &json!(false)));
    assert_eq!(page2["nodes"][0]["body"], "comment 100");

    // 121 revisions (the original and 120 edits): a hundred here, the rest by the node id.
    let edited = &page["nodes"][0];
    let edits = &edited["userContentEdits"];
    assert_eq!((edits["nodes"].as_array().unwrap().len(), &edits["pageInfo"]["hasNextPage"]), (100, &json!(true)));
    assert_eq!(edits["nodes"][0]["diff"], "edit 119");
    let rest = "query($id: ID!, $after: String) { node(id: $id) { ... on IssueComment { userContentEdits(first: 100, after: $after) { pageInfo { hasNextPage endCursor } nodes { editedAt editor { __typename login } diff deletedAt } } } } }";
    let (_, more) = graphql(&fake, rest, json!({"id": edited["id"], "after": edits["pageInfo"]["endCursor"]})).await;
    let more = &more["data"]["node"]["userContentEdits"];
    assert_eq!((more["nodes"].as_array().unwrap().len(), &more["pageInfo"]["hasNextPage"]), (21, &json!(false)));
    assert_eq!(more["nodes"][20]["diff"], "comment 0", "the original text is the oldest entry");
}

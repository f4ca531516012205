//! A fake Jira over real HTTP that behaves as a closed loop: a REST API (v2 Data Center with
//! wiki bodies, v3 Cloud with ADF) over issues, a workflow, custom fields and comments kept in
//! memory, and — once `deliver_to` is called — the signed webhook deliveries real Jira sends
//! back for every change, rollgate's own included, in the real shapes and orders.
//!
//! - `world.rs`: the state and the changes that move it (one path for REST and people);
//! - `rest.rs`: the routes; `faults.rs`: sign-in, pause and injected failures;
//! - `payloads.rs`: Jira's webhook shapes, from the real fixtures; `wiki.rs`: ADF → wiki;
//! - `hooks.rs`: sending, ordering, delays, retries; `people.rs`: test people acting.
//!
//! Set-up helpers here (`seed`, `set_field`, `set_status`, `add_comment`, `edit_comment`, ...)
//! change the state silently, as a database fixture would: nothing is sent for them.

mod faults;
mod hooks;
mod payloads;
mod people;
mod rest;
mod search;
pub mod wiki;
mod world;

// Each test binary uses its own part of the fake.
#[allow(unused_imports)]
pub use {
    faults::Fault,
    hooks::{Delivery, Release},
    people::{adf, Person},
    world::{jira_time, FakeJiraComment, FakeJiraIssue, Write},
};

use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use world::World;

pub const TOKEN: &str = "jira-token";
pub const EMAIL: &str = "bot@example.com";
/// `Basic` credentials for Cloud: base64("bot@example.com:jira-token").
pub const BASIC: &str = "Ym90QGV4YW1wbGUuY29tOmppcmEtdG9rZW4=";
pub const BOT_ACCOUNT: &str = "bot-account";
pub const BOT_NAME: &str = "rollgate bot";

pub const DEFAULT_WORKFLOW: [&str; 7] =
    ["Planning", "Decided", "In Development", "Dev Released", "Rollout Confirmed", "In Rollout", "Released"];

#[derive(Clone)]
pub struct FakeJira {
    pub url: String,
    world: Arc<Mutex<World>>,
    paused: watch::Sender<bool>,
    waiting: Arc<AtomicUsize>,
    sender: Arc<std::sync::Once>,
}

impl FakeJira {
    pub async fn start() -> FakeJira {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let world = World {
            base: url.clone(),
            statuses: DEFAULT_WORKFLOW.iter().map(|s| s.to_string()).collect(),
            next_id: 10000,
            next_comment: 10000,
            ..Default::default()
        };
        let fake = FakeJira {
            url,
            world: Arc::new(Mutex::new(world)),
            paused: watch::channel(false).0,
            waiting: Arc::default(),
            sender: Arc::new(std::sync::Once::new()),
        };
        let app = rest::router(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    // ------------------------------------------------------------------ silent set-up

    /// Puts an issue on the fake tracker, as the webhook payload will describe it. A re-seed
    /// replaces type, status and labels but keeps id, comments and custom fields.
    pub fn seed(&self, key: &str, issuetype: &str, status: &str, labels: &[&str]) {
        let mut w = self.world.lock().unwrap();
        w.assert_status(status);
        let (_, now) = w.now();
        if !w.issues.contains_key(key) {
            w.next_id += 1;
            let issue = FakeJiraIssue {
                id: w.next_id,
                key: key.into(),
                summary: format!("issue {key}"),
                reporter: "reporter".into(),
                created: now.clone(),
                ..Default::default()
            };
            w.issues.insert(key.into(), issue);
        }
        let i = w.issues.get_mut(key).unwrap();
        i.issuetype = issuetype.into();
        i.status = status.into();
        i.labels = labels.iter().map(|s| s.to_string()).collect();
        i.updated = now;
    }

    /// Sets a custom field (null clears it). Not checked against `add_field`.
    pub fn set_field(&self, key: &str, id: &str, value: Value) {
        let mut w = self.world.lock().unwrap();
        let (_, now) = w.now();
        w.remember_options(id, &value);
        let i = w.issues.get_mut(key).expect("issue on the fake");
        if value.is_null() {
            i.fields.remove(id);
        } else {
            i.fields.insert(id.into(), value);
        }
        i.updated = now;
    }

    /// Adds a comment; returns its id.
    pub fn add_comment(&self, key: &str, author: &str, body: Value) -> String {
        let mut w = self.world.lock().unwrap();
        w.next_comment += 1;
        let (_, now) = w.now();
        let id = w.next_comment.to_string();
        let c = FakeJiraComment {
            id: id.clone(),
            body,
            author: author.into(),
            update_author: author.into(),
            properties: vec![],
            created: now.clone(),
            updated: now.clone(),
        };
        let i = w.issues.get_mut(key).expect("issue on the fake");
        i.updated = now;
        i.comments.push(c);
        id
    }

    /// Replaces a comment's body; properties and editor are kept.
    pub fn edit_comment(&self, id: &str, body: Value) {
        let mut w = self.world.lock().unwrap();
        let (_, now) = w.now();
        let c = w.issues.values_mut().flat_map(|i| i.comments.iter_mut()).find(|c| c.id == id).expect("comment on the fake");
        c.body = body;
        c.updated = now;
    }

    /// Moves the issue to a status; no transition rule applies.
    pub fn set_status(&self, key: &str, status: &str) {
        let mut w = self.world.lock().unwrap();
        w.assert_status(status);
        let (_, now) = w.now();
        let i = w.issues.get_mut(key).expect("issue on the fake");
        i.status = status.into();
        i.updated = now;
    }

    /// Registers a custom field, so it shows in GET field and may be written.
    pub fn add_field(&self, id: &str, name: &str) {
        self.world.lock().unwrap().custom_fields.insert(id.into(), name.into());
    }

    /// Replaces the workflow's statuses (every status still reaches every other).
    pub fn set_workflow(&self, statuses: &[&str]) {
        self.world.lock().unwrap().statuses = statuses.iter().map(|s| s.to_string()).collect();
    }

    /// Removes one edge of the workflow, e.g. so there is no way back.
    pub fn forbid_transition(&self, from: &str, to: &str) {
        self.world.lock().unwrap().forbidden.insert((from.into(), to.into()));
    }

    /// Adds a changelog entry: `items` are (field, fieldId, fromString, toString).
    pub fn add_history(&self, key: &str, created: &str, author: &str, items: &[(&str, Option<&str>, Option<&str>, Option<&str>)]) {
        let items: Vec<Value> = items
            .iter()
            .map(|(field, id, from, to)| json!({ "field": field, "fieldId": id, "fromString": from, "toString": to }))
            .collect();
        let entry = json!({ "id": "1", "created": created, "author": { "accountId": author }, "items": items });
        self.world.lock().unwrap().changelogs.entry(key.to_string()).or_default().push(entry);
    }

    /// A token that signs in as `account` (Bearer, or Basic with any e-mail), for tests that
    /// act as a person over REST.
    pub fn token_for(&self, account: &str) -> String {
        let token = format!("token-{account}");
        self.world.lock().unwrap().tokens.insert(token.clone(), account.into());
        token
    }

    // ------------------------------------------------------------------ reading

    pub fn issue(&self, key: &str) -> FakeJiraIssue {
        self.world.lock().unwrap().issues.get(key).cloned().expect("issue on the fake")
    }

    pub fn field(&self, key: &str, id: &str) -> Option<Value> {
        self.issue(key).fields.get(id).cloned()
    }

    pub fn status(&self, key: &str) -> String {
        self.issue(key).status
    }

    /// The issue's labels, sorted.
    pub fn labels(&self, key: &str) -> Vec<String> {
        let mut l = self.issue(key).labels;
        l.sort();
        l
    }

    pub fn comments(&self, key: &str) -> Vec<FakeJiraComment> {
        self.issue(key).comments
    }

    /// A comment's body as Jira's v2 API and webhooks show it (wiki text).
    pub fn comment_wiki(&self, id: &str) -> String {
        let w = self.world.lock().unwrap();
        let c = w.issues.values().flat_map(|i| &i.comments).find(|c| c.id == id).expect("comment on the fake");
        payloads::wiki_text(&c.body).as_str().unwrap_or_default().to_string()
    }

    /// One line per write request that got past auth and faults, in arrival order.
    pub fn writes(&self) -> Vec<String> {
        self.world.lock().unwrap().writes.clone()
    }

    /// Write requests that named this issue (by key or id), refused ones included.
    pub fn writes_on(&self, key: &str) -> usize {
        self.world.lock().unwrap().writes_per_issue.get(key).copied().unwrap_or(0)
    }

    /// Requests that got past auth (including those answered with an injected fault).
    pub fn requests(&self) -> u64 {
        self.world.lock().unwrap().requests
    }

    /// The writes with who made them and the body they sent.
    pub fn write_log(&self) -> Vec<Write> {
        self.world.lock().unwrap().write_log.clone()
    }

    pub(super) fn write(&self, who: &str, issue: Option<&str>, what: String, body: &Value) {
        let mut w = self.world.lock().unwrap();
        let line = if who == BOT_ACCOUNT { what.clone() } else { format!("{what} (as {who})") };
        w.writes.push(line);
        w.write_log.push(Write { who: who.into(), issue: issue.map(String::from), what, body: body.clone() });
        if let Some(k) = issue.and_then(|i| w.key_of(i)) {
            *w.writes_per_issue.entry(k).or_default() += 1;
        }
    }

    fn count_write(&self, key: &str) {
        *self.world.lock().unwrap().writes_per_issue.entry(key.to_string()).or_default() += 1;
    }

    // ------------------------------------------------------------------ faults

    /// The next requests fail with these answers, in order.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        self.world.lock().unwrap().faults.extend(faults);
    }

    /// Holds every request until `resume`.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// Requests currently held by `pause`.
    pub fn held(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    // ------------------------------------------------------------------ time

    /// Freezes the world clock at `t` (each change still moves it a millisecond).
    pub fn set_time(&self, t: chrono::DateTime<chrono::Utc>) {
        self.world.lock().unwrap().clock.set(t);
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.world.lock().unwrap().clock.advance(by);
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.world.lock().unwrap().clock.peek()
    }

    // ------------------------------------------------------------------ webhooks

    /// Switches the loop on: from now on every change made through the REST API or by a
    /// person is delivered to `url` (rollgate's /webhooks/jira), signed with `secret`.
    pub fn deliver_to(&self, url: impl Into<String>, secret: Option<&str>) {
        self.world.lock().unwrap().hooks.target(url.into(), secret.map(String::from));
        let world = self.world.clone();
        self.sender.call_once(|| drop(tokio::spawn(hooks::run(world))));
    }

    /// New deliveries wait until `release_deliveries`.
    pub fn hold_deliveries(&self) {
        self.world.lock().unwrap().hooks.hold();
    }

    /// Sends what was held, in this order, and stops holding.
    pub fn release_deliveries(&self, order: Release) {
        self.world.lock().unwrap().hooks.release(order);
    }

    /// Each delivery waits a random time up to `max` (seeded), so later ones overtake.
    pub fn delay_deliveries(&self, seed: u64, max: Duration) {
        self.world.lock().unwrap().hooks.delay(seed, max);
    }

    /// Every successful delivery is sent once more under the same identifier, as Jira does
    /// when it did not see the acknowledgement.
    pub fn retry_every_delivery_once(&self) {
        self.world.lock().unwrap().hooks.resend_once();
    }

    /// A comment's `jira:issue_updated` goes before its `comment_*` delivery (default: after).
    pub fn issue_event_first(&self, first: bool) {
        self.world.lock().unwrap().hooks.set_issue_event_first(first);
    }

    /// Time between retries of a failed delivery (Jira: 5 to 15 minutes; default here 100 ms).
    pub fn set_retry_delay(&self, d: Duration) {
        self.world.lock().unwrap().hooks.retry_delay = d;
    }

    /// How long a delivery waits for its answer before it counts as failed (default 10 s).
    pub fn set_delivery_timeout(&self, d: Duration) {
        self.world.lock().unwrap().hooks.timeout = d;
    }

    /// Every attempt so far, in the order the answers came.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.world.lock().unwrap().hooks.log().to_vec()
    }

    /// Deliveries queued, held, being sent or waiting for a retry.
    pub fn deliveries_pending(&self) -> usize {
        self.world.lock().unwrap().hooks.busy()
    }

    pub fn deliveries_held(&self) -> usize {
        self.world.lock().unwrap().hooks.held_count()
    }

    /// Waits until nothing is pending (generous deadline); panics with what is still there.
    pub async fn wait_deliveries_sent(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.deliveries_pending() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "deliveries still pending: {}", self.deliveries_pending());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A test person, who acts through the fake (and so causes the deliveries Jira sends).
    pub fn person(&self, account: &str) -> Person {
        Person::new(self.clone(), account)
    }
}

//! A fake GitHub over real HTTP, closed-loop: issues, labels and comments in memory, the REST
//! routes rollgate calls, and — once `deliver_to` names rollgate's webhook — the signed
//! deliveries GitHub sends back for every change, rollgate's own included, in GitHub's shapes
//! and orders. Test people (`person`) act through it too. Tests assert on what it holds.
//!
//! By concern: world.rs (what it holds, and every change, the issue timeline and comment edit
//! histories included), rest.rs (the routes), graphql.rs (`POST /graphql` for backfill's
//! comment histories), payloads.rs (GitHub's JSON, from the real fixtures), hooks.rs (deliveries and their timing),
//! people.rs (test people), faults.rs and listener.rs (failures), app.rs (GitHub App auth),
//! native.rs and graphql_projects.rs (issue types and Projects v2: what is faithful and what is
//! simplified is at the top of native.rs).
//! Set-up helpers here (`seed`, `set_labels`, `close`, ...) change the world silently.

mod app;
mod faults;
mod graphql;
mod hooks;
mod graphql_projects;
mod listener;
mod native;
mod payloads;
mod people;
mod rest;
mod world;

// Each test binary uses its own part of the fake.
#[allow(unused_imports)]
pub use app::{app_key_path, app_private_key, APP_BOT_LOGIN, APP_ID, APP_SLUG};
#[allow(unused_imports)]
pub use faults::{Chaos, Fault, FaultKind};
#[allow(unused_imports)]
pub use hooks::{signature, Delivery, Order};
#[allow(unused_imports)]
pub use people::{Person, SwapOrder};
#[allow(unused_imports)]
pub use native::{FieldDef, IssueType, NativeCall, ProjectRef};
#[allow(unused_imports)]
pub use world::{FakeComment, FakeEdit, FakeIssue};

use axum::response::Response;
use faults::{mix64, ChaosState};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use world::{Key, TimeSource, World};

pub const TOKEN: &str = "test-token";
pub const BOT_LOGIN: &str = "rollgate[bot]";
/// What every answer says is left of the rate limit (`X-RateLimit-Remaining`).
pub const RATE_LIMIT_REMAINING: u16 = 4987;

#[derive(Clone)]
pub struct FakeGithub {
    pub url: String,
    world: Arc<Mutex<World>>,
    paused: watch::Sender<bool>,
    /// Comments are created, then the answer is held: the tracker has the comment, the
    /// caller does not know it yet (what a crash at the wrong moment looks like).
    stall_comments: watch::Sender<bool>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// Random faults (faults.rs).
    chaos: Arc<Mutex<ChaosState>>,
    /// The GitHub App side (app.rs).
    app: Arc<Mutex<app::FakeApp>>,
    /// Deliveries sent back (hooks.rs). Lock order: world, then app, then hooks.
    hooks: Arc<hooks::Hooks>,
}

impl FakeGithub {
    pub async fn start() -> FakeGithub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let fake = FakeGithub {
            url: format!("http://{addr}"),
            world: Arc::default(),
            paused: watch::channel(false).0,
            stall_comments: watch::channel(false).0,
            waiting: Arc::default(),
            chaos: Arc::default(),
            app: Arc::default(),
            hooks: Arc::default(),
        };
        let routes = rest::routes()
            .merge(app::app_routes())
            .layer(axum::middleware::from_fn_with_state(fake.clone(), app::installation_token_auth))
            .with_state(fake.clone())
            // Like GitHub, every answer says how much of the hour's budget is left.
            .layer(axum::middleware::map_response(|mut r: Response| async {
                r.headers_mut().insert("x-ratelimit-remaining", RATE_LIMIT_REMAINING.into());
                r
            }))
            .layer(axum::middleware::from_fn_with_state(fake.clone(), faults::chaos_layer));
        let listener = listener::ResettableListener(listener);
        tokio::spawn(async move {
            axum::serve(listener, routes.into_make_service_with_connect_info::<listener::Conn>()).await.unwrap()
        });
        fake
    }

    /// Puts an issue on the fake tracker, as the webhook payload will describe it (silently).
    pub fn seed(&self, repo: &str, number: u64, labels: &[&str]) {
        let mut w = self.world.lock().unwrap();
        let now = w.clock.now();
        let open = w.issues.get(&(repo.to_string(), number)).is_none_or(|i| i.open);
        w.issues.insert(
            (repo.to_string(), number),
            FakeIssue {
                title: format!("issue {number}"),
                labels: labels.iter().map(|s| s.to_string()).collect(),
                open,
                author: "someone".into(),
                created_at: now,
                updated_at: now,
                ..Default::default()
            },
        );
    }

    /// Replaces an issue's comments (a re-seed keeps them).
    pub fn set_comments(&self, repo: &str, number: u64, comments: Vec<FakeComment>) {
        if let Some(i) = self.world.lock().unwrap().issues.get_mut(&(repo.to_string(), number)) {
            i.comments = comments;
        }
    }

    /// Changes a comment's text silently (a person acting through the fake uses
    /// `person(..).edit_comment`, which sends the delivery).
    pub fn edit_comment(&self, id: u64, body: &str) {
        for i in self.world.lock().unwrap().issues.values_mut() {
            if let Some(c) = i.comments.iter_mut().find(|c| c.id == id) {
                c.body = body.to_string();
            }
        }
    }

    /// Deletes revision `nth` (0 = the original text) from comment `id`'s edit history, as
    /// "Delete revision from history" in GitHub's edit menu does: its text is gone, the entry
    /// stays with `deletedAt`.
    pub fn delete_revision(&self, id: u64, nth: usize) {
        let mut w = self.world.lock().unwrap();
        let now = w.clock.now();
        for i in w.issues.values_mut() {
            if let Some(c) = i.comments.iter_mut().find(|c| c.id == id) {
                let e = c.edits.get_mut(nth).expect("a revision to delete");
                e.body = None;
                e.deleted_at = Some(now);
            }
        }
    }

    /// Closes the issue silently (see `person(..).close` for the closed-loop way).
    pub fn close(&self, repo: &str, number: u64, reason: &str) {
        if let Some(i) = self.world.lock().unwrap().issues.get_mut(&(repo.to_string(), number)) {
            i.open = false;
            i.state_reason = Some(reason.to_string());
        }
    }

    /// Replaces an issue's labels silently, keeping its comments (unlike `seed`).
    pub fn set_labels(&self, repo: &str, number: u64, labels: &[&str]) {
        if let Some(i) = self.world.lock().unwrap().issues.get_mut(&(repo.to_string(), number)) {
            i.labels = labels.iter().map(|s| s.to_string()).collect();
        }
    }

    pub fn issue_opt(&self, repo: &str, number: u64) -> Option<FakeIssue> {
        self.world.lock().unwrap().issues.get(&(repo.to_string(), number)).cloned()
    }

    pub fn issue(&self, repo: &str, number: u64) -> FakeIssue {
        self.issue_opt(repo, number).expect("issue on the fake")
    }

    /// The issue's labels, sorted.
    pub fn labels(&self, repo: &str, number: u64) -> Vec<String> {
        let mut l = self.issue(repo, number).labels;
        l.sort();
        l
    }

    pub fn add_team_member(&self, org_team: &str, login: &str) {
        self.world.lock().unwrap().teams.push((org_team.to_string(), login.to_string()));
    }

    /// GET .../issues/{number}/events answers 422 until `allow_events`.
    pub fn refuse_events(&self, number: u64) {
        self.world.lock().unwrap().refuse_events.push(number);
    }

    pub fn allow_events(&self) {
        self.world.lock().unwrap().refuse_events.clear();
    }

    /// From now on there is no GraphQL endpoint (404), as on a server that serves only REST.
    pub fn without_graphql(&self) {
        self.world.lock().unwrap().no_graphql = true;
    }

    /// Adds a timeline event (`labeled`, `unlabeled`, `closed`, `reopened`) for set-up; changes
    /// made through the fake add theirs by themselves.
    pub fn add_event(&self, repo: &str, number: u64, event: &str, label: Option<&str>, at: &str, actor: &str) {
        let mut w = self.world.lock().unwrap();
        let i = w.issues.get_mut(&(repo.to_string(), number)).expect("seeded issue");
        let mut e = json!({ "event": event, "created_at": at, "actor": { "login": actor, "type": "User" } });
        if let Some(l) = label {
            e["label"] = json!({ "name": l });
        }
        i.events.push(e);
    }

    /// The repository's labels: name -> (colour, description).
    pub fn repo_labels(&self, repo: &str) -> BTreeMap<String, (String, String)> {
        self.world.lock().unwrap().repo_labels.get(repo).cloned().unwrap_or_default()
    }

    /// A person recolours a label in the web UI (silently: `label` deliveries are not sent).
    pub fn recolor_label(&self, repo: &str, name: &str, color: &str) {
        if let Some(l) = self.world.lock().unwrap().repo_labels.get_mut(repo).and_then(|m| m.get_mut(name)) {
            l.0 = color.to_string();
        }
    }

    /// Every write made through the REST API, in order.
    pub fn writes(&self) -> Vec<String> {
        self.world.lock().unwrap().writes.clone()
    }

    pub fn write_count(&self) -> usize {
        self.world.lock().unwrap().writes.len()
    }

    /// Writes made through the REST API on one issue (a comment edit counts for its issue).
    pub fn writes_on(&self, repo: &str, number: u64) -> usize {
        self.world.lock().unwrap().writes_per_issue.get(&(repo.to_string(), number)).copied().unwrap_or(0)
    }

    pub fn requests(&self) -> u64 {
        self.world.lock().unwrap().requests
    }

    /// The world's clock stops at `at` (RFC 3339); `advance` moves it.
    pub fn set_time(&self, at: &str) {
        let at = chrono::DateTime::parse_from_rfc3339(at).expect("an RFC 3339 time").to_utc();
        let mut w = self.world.lock().unwrap();
        w.clock.source = TimeSource::Pinned(at);
        w.clock.offset = chrono::Duration::zero();
    }

    /// The world's clock follows rollgate's (a harness on a `FixedClock`).
    pub fn follow_clock(&self, clock: Arc<dyn rollgate::clock::Clock>) {
        let mut w = self.world.lock().unwrap();
        w.clock.source = TimeSource::Follow(clock);
        w.clock.offset = chrono::Duration::zero();
    }

    pub fn advance(&self, secs: i64) {
        self.world.lock().unwrap().clock.advance(chrono::Duration::seconds(secs));
    }

    /// The world's now, as GitHub would stamp a change (whole seconds).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.world.lock().unwrap().clock.now()
    }

    fn write(&self, key: &Key, what: String) {
        let mut w = self.world.lock().unwrap();
        w.writes.push(what);
        *w.writes_per_issue.entry(key.clone()).or_default() += 1;
    }

    /// A write tied to no issue (a repository label, or an issue not made yet).
    fn write_untied(&self, what: String) {
        self.world.lock().unwrap().writes.push(what);
    }
}

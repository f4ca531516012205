//! Shared test harness: the real service on a free port, a fake GitHub behind it, and signed
//! deliveries built from the real payloads in tests/fixtures.
#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod fake_github;
pub mod fake_jira;
pub mod jira_loop;

use fake_github::FakeGithub;
use rollgate::app::Running;
use rollgate::config::{Secret, Settings};
use rollgate::ingest::signature::sign;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

pub const SECRET: &str = "test-secret";
pub const REPO: &str = "Codertocat/Hello-World";

pub fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A real payload, adapted: the issue's number, its labels, and (for labeled/unlabeled) the
/// label that changed. Everything else stays as GitHub sent it.
pub fn issue_event(fixture_name: &str, number: u64, labels: &[&str], changed: Option<&str>) -> Value {
    let mut p = fixture(fixture_name);
    p["issue"]["number"] = json!(number);
    p["issue"]["labels"] = json!(labels.iter().map(|l| json!({ "name": l })).collect::<Vec<_>>());
    if let Some(l) = changed {
        p["label"] = json!({ "name": l });
    }
    p
}

/// The payload GitHub sends back after the bot changed labels: sender is the bot.
pub fn echo_from_bot(mut p: Value) -> Value {
    p["sender"] = json!({ "login": fake_github::BOT_LOGIN, "type": "Bot" });
    p
}

/// The PostgreSQL server tests use: the machine's own (trust auth). Tests that need it fail
/// when it is down; they never skip.
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

/// A new, empty database on the test PostgreSQL server; its URL.
pub async fn fresh_postgres() -> String {
    use sqlx::Connection;
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("rollgate_t{}_{}_{nanos}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let mut admin = sqlx::PgConnection::connect(&format!("{POSTGRES}/test"))
        .await
        .unwrap_or_else(|e| panic!("the test PostgreSQL at {POSTGRES}/test is not reachable ({e}); `.ci/run` starts it"));
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
    format!("{POSTGRES}/{name}")
}

/// The database a harness uses: SQLite in the test's folder, or a fresh PostgreSQL database
/// when ROLLGATE_TEST_DATABASE=postgres (the whole e2e suite runs on either store).
pub async fn test_database(dir: &std::path::Path) -> String {
    match std::env::var("ROLLGATE_TEST_DATABASE").as_deref() {
        Ok("postgres") => fresh_postgres().await,
        _ => format!("sqlite://{}", dir.join("rollgate.db").display()),
    }
}

pub fn settings(dir: &std::path::Path, github: &FakeGithub) -> Settings {
    let mut s = Settings::default();
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.database_url = format!("sqlite://{}", dir.join("rollgate.db").display());
    s.policies = policies_dir();
    s.github.api_url = github.url.clone();
    s.github.token = Some(Secret::new(fake_github::TOKEN));
    s.github.webhook_secrets = vec![Secret::new(SECRET)];
    s.github.writes_per_minute = 0;
    s
}

/// Whether `start`, `start_with` and `start_clocked` close the loop: yes, as GitHub does
/// (ROLLGATE_TEST_CLOSED_LOOP=0 opens it, to tell a loop problem from anything else).
fn closed_loop_by_default() -> bool {
    std::env::var("ROLLGATE_TEST_CLOSED_LOOP").map_or(true, |v| v != "0")
}

pub struct Harness {
    pub github: FakeGithub,
    pub app: Running,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The fake GitHub sends its webhooks back to the service.
    pub closed_loop: bool,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Settings)) -> Harness {
        Self::start_clocked(adjust, std::sync::Arc::new(rollgate::clock::SystemClock)).await
    }

    /// The service on a clock the test moves (`FixedClock::set`); the fake GitHub's clock
    /// follows it.
    pub async fn start_clocked(adjust: impl FnOnce(&mut Settings), clock: std::sync::Arc<dyn rollgate::clock::Clock>) -> Harness {
        Self::launch(adjust, clock, closed_loop_by_default()).await
    }

    /// A harness whose fake GitHub sends every change back to the service as GitHub does,
    /// rollgate's own changes included (see `fake_github::FakeGithub::deliver_to`).
    /// A harness whose fake GitHub sends nothing back: for tests that deliver hand-made payloads
    /// of changes they never make on the fake, where echoes of rollgate's writes would mix a
    /// second, inconsistent story into theirs.
    pub async fn start_open_loop_with(adjust: impl FnOnce(&mut Settings)) -> Harness {
        Self::launch(adjust, std::sync::Arc::new(rollgate::clock::SystemClock), false).await
    }

    pub async fn start_closed_loop() -> Harness {
        Self::start_closed_loop_with(|_| {}).await
    }

    pub async fn start_closed_loop_with(adjust: impl FnOnce(&mut Settings)) -> Harness {
        Self::start_closed_loop_clocked(adjust, std::sync::Arc::new(rollgate::clock::SystemClock)).await
    }

    pub async fn start_closed_loop_clocked(adjust: impl FnOnce(&mut Settings), clock: std::sync::Arc<dyn rollgate::clock::Clock>) -> Harness {
        Self::launch(adjust, clock, true).await
    }

    async fn launch(adjust: impl FnOnce(&mut Settings), clock: std::sync::Arc<dyn rollgate::clock::Clock>, closed_loop: bool) -> Harness {
        let github = FakeGithub::start().await;
        github.follow_clock(clock.clone());
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path(), &github);
        s.database_url = test_database(dir.path()).await;
        adjust(&mut s);
        let app = rollgate::app::start_with_clock(s, clock).await.expect("rollgate starts");
        if closed_loop {
            github.deliver_to(&format!("http://{}/webhooks/github", app.addr), SECRET);
        }
        Harness { github, app, http: reqwest::Client::new(), dir, closed_loop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.app.addr)
    }

    /// Sends a delivery signed with the configured secret; returns status and JSON answer.
    pub async fn deliver(&self, event: &str, delivery: &str, payload: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(payload).unwrap();
        let sig = sign(SECRET, &body);
        send(&self.http, &self.url(), event, delivery, body, Some(&sig)).await
    }

    /// The deliveries processed for these issues (audit order) whose id starts with `prefix`: a
    /// test's own deliveries, told from the echoes of rollgate's writes the loop sends back.
    pub async fn processed(&self, numbers: impl IntoIterator<Item = u64>, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        for n in numbers {
            let key = rollgate::model::IssueKey::github(REPO, n);
            out.extend(self.app.store.audit(&key).await.unwrap().into_iter().map(|a| a.delivery).filter(|d| d.starts_with(prefix)));
        }
        out
    }

    /// Waits until the inbox holds nothing pending and, closed-loop, until the system is
    /// quiet (`quiet`).
    pub async fn settle(&self) {
        if self.closed_loop {
            self.quiet().await
        } else {
            settle(self.app.store.as_ref()).await
        }
    }

    /// Waits until the system has stopped talking: the fake has no delivery waiting or in
    /// flight (held ones aside) and the inbox nothing pending, for a whole round in which no
    /// delivery was made and no write happened. A loop never gets there: after `QUIET_LIMIT`
    /// this panics with the last writes and deliveries.
    pub async fn quiet(&self) {
        self.quiet_within(QUIET_LIMIT).await
    }

    pub async fn quiet_within(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut last: Option<(usize, usize)> = None;
        loop {
            let counts = (self.github.delivery_count(), self.github.write_count());
            let idle = self.github.deliveries_pending() == 0 && self.app.store.inbox_stats().await.unwrap().pending == 0;
            // Checked again after the inbox: a delivery answered in between was stored first.
            let idle = idle && self.github.deliveries_pending() == 0;
            if idle && last == Some(counts) {
                return;
            }
            last = idle.then_some(counts);
            if tokio::time::Instant::now() >= deadline {
                self.panic_not_quiet(limit).await;
            }
            tokio::time::sleep(Duration::from_millis(if idle { 100 } else { 20 })).await;
        }
    }

    async fn panic_not_quiet(&self, limit: Duration) -> ! {
        let writes = self.github.writes();
        let deliveries = self.github.deliveries();
        let tail = |n: usize| n.saturating_sub(30);
        let writes: Vec<&String> = writes[tail(writes.len())..].iter().collect();
        let deliveries: Vec<String> = deliveries[tail(deliveries.len())..]
            .iter()
            .map(|d| {
                let what = d.label.clone().or(d.comment.map(|c| format!("comment {c}"))).unwrap_or_default();
                format!("{} {}#{} {}.{} {what} by {} -> {:?}{}", d.id, d.repo, d.number, d.event, d.action, d.sender, d.status, d.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default())
            })
            .collect();
        let stats = self.app.store.inbox_stats().await.unwrap();
        panic!(
            "not quiet after {limit:?}: {} deliveries pending, inbox {stats:?}\nlast writes: {writes:#?}\nlast deliveries: {deliveries:#?}",
            self.github.deliveries_pending()
        );
    }
}

/// How long `quiet` waits: generous, a debug build on a busy 2-core machine is slow, and a
/// loop never goes quiet however long it is given.
pub const QUIET_LIMIT: Duration = Duration::from_secs(60);

pub async fn send(
    http: &reqwest::Client,
    base: &str,
    event: &str,
    delivery: &str,
    body: Vec<u8>,
    signature: Option<&str>,
) -> (u16, Value) {
    let mut req = http
        .post(format!("{base}/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .body(body);
    if let Some(sig) = signature {
        req = req.header("x-hub-signature-256", sig);
    }
    let resp = req.send().await.expect("rollgate answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub async fn settle(store: &dyn rollgate::store::Store) {
    settle_within(store, Duration::from_secs(20)).await
}

/// `settle` for a big burst: a debug build on a busy 2-core machine needs the time.
pub async fn settle_within(store: &dyn rollgate::store::Store, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let stats = store.inbox_stats().await.unwrap();
        if stats.pending == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let stuck = store.retrying(5).await.unwrap();
            panic!("inbox did not drain: {stats:?}; retrying: {stuck:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `rollgate serve` as a separate process, so it can be killed with SIGKILL mid-work.
pub struct Service {
    pub child: std::process::Child,
    pub url: String,
}

impl Service {
    pub async fn spawn(dir: &std::path::Path, github: &FakeGithub) -> Service {
        let db = format!("sqlite://{}", dir.join("rollgate.db").display());
        Self::spawn_on(dir, github, &db, &[]).await
    }

    /// A replica on database `db` (PostgreSQL for several), with extra settings.
    pub async fn spawn_on(dir: &std::path::Path, github: &FakeGithub, db: &str, extra: &[(&str, &str)]) -> Service {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
            .arg("serve")
            .current_dir(dir)
            .env_clear()
            .env("ROLLGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("ROLLGATE_DATABASE_URL", db)
            .envs(extra.iter().copied())
            .env("ROLLGATE_POLICIES", policies_dir())
            .env("ROLLGATE_GITHUB_API_URL", &github.url)
            .env("ROLLGATE_GITHUB_TOKEN", fake_github::TOKEN)
            .env("ROLLGATE_GITHUB_WEBHOOK_SECRET", SECRET)
            // Bursts in tests are not throttled (the in-process harness does the same).
            .env("ROLLGATE_GITHUB_WRITES_PER_MINUTE", "0")
            .env("ROLLGATE_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the rollgate binary starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{url}/readyz")).send().await {
                if r.status() == 200 {
                    return Service { child, url };
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("rollgate did not become ready on {url}");
    }

    /// SIGKILL: no shutdown hook runs.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signed(payload: &Value) -> (Vec<u8>, String) {
    let body = serde_json::to_vec(payload).unwrap();
    let sig = sign(SECRET, &body);
    (body, sig)
}

/// Runs `f` with what backfill needs to judge the past: the shipped policies, no roles, and
/// rollgate's login on the tracker (`me`).
pub async fn with_judge<T>(set: &rollgate::policy::PolicySet, me: &str, f: impl AsyncFnOnce(&rollgate::backfill::Judge<'_>) -> T) -> T {
    let config = rollgate::policy::PolicyConfig::default();
    let roles = rollgate::roles::RoleResolver::new(&Default::default(), None);
    let me = rollgate::decide::facts::Me::new(Some(me.to_string()));
    f(&rollgate::backfill::Judge { set, config: &config, roles: &roles, me: &me }).await
}

/// Copies a folder tree (a policy pack an operator will edit).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        let t = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&t).unwrap();
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

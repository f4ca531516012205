//! Waiting for the Jira loop to go quiet: the fake Jira sends rollgate a delivery for every
//! change (rollgate's own included), rollgate may answer with writes, which cause deliveries
//! again. The system is quiet when the fake has nothing queued, held, in flight or waiting for a
//! retry, rollgate's inbox has nothing pending, and a further round brings no new delivery and
//! no new write. A loop never gets there: on the deadline the panic shows the last writes and
//! deliveries, where a loop shows itself.

use super::fake_github::FakeGithub;
use super::fake_jira::{FakeJira, EMAIL, TOKEN};
use rollgate::app::Running;
use rollgate::config::Secret;
use rollgate::store::prelude::*;
use std::time::Duration;

pub const SECRET: &str = "jira-secret";
pub const PM: &str = "acc-priya";
pub const LANE: &str = "customfield_10101";
pub const ROLLOUT: &str = "customfield_10102";
pub const SCOPE: &str = "customfield_10103";
pub const DECISION: &str = "customfield_10104";
pub const CLIENTS: &str = "customfield_10105";

/// rollgate in process against this fake Jira: Cloud (REST v3, Basic auth) or Data Center
/// (v2, Bearer), the playbook's custom fields registered on the fake, PM role for `PM`. The
/// loop stays off until `loop_on`.
pub async fn rollgate_on(jira: &FakeJira, cloud: bool) -> (Running, tempfile::TempDir) {
    for (id, name) in [(LANE, "Lane"), (ROLLOUT, "Rollout Type"), (SCOPE, "Client Scope"), (DECISION, "Decision"), (CLIENTS, "Affected Clients")] {
        jira.add_field(id, name);
    }
    let github = FakeGithub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = super::settings(dir.path(), &github);
    s.jira.base_url = Some(jira.url.clone());
    s.jira.api_token = Some(Secret::new(TOKEN));
    s.jira.email = cloud.then(|| EMAIL.to_string());
    s.jira.webhook_secrets = vec![Secret::new(SECRET)];
    s.roles.pm = vec![PM.into()];
    let app = rollgate::app::start(s).await.expect("rollgate starts and reaches Jira");
    (app, dir)
}

/// Closes the loop: the fake delivers every change to this rollgate, signed.
pub fn loop_on(jira: &FakeJira, app: &Running) {
    jira.deliver_to(format!("http://{}/webhooks/jira", app.addr), Some(SECRET));
}

/// Generous: a debug build on a busy 2-core machine, and a few retries of deliveries.
pub const QUIET_DEADLINE: Duration = Duration::from_secs(60);

pub async fn wait_quiet(jira: &FakeJira, store: &dyn Store) {
    wait_quiet_within(jira, store, QUIET_DEADLINE).await
}

pub async fn wait_quiet_within(jira: &FakeJira, store: &dyn Store, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last_round: Option<(usize, usize)> = None;
    loop {
        if jira.deliveries_held() > 0 {
            panic!("{} deliveries are held: release them before waiting for quiet", jira.deliveries_held());
        }
        let pending = store.inbox_stats().await.unwrap().pending;
        let counts = (jira.deliveries().len(), jira.writes().len());
        if jira.deliveries_pending() == 0 && pending == 0 {
            if last_round == Some(counts) {
                return;
            }
            last_round = Some(counts);
        } else {
            last_round = None;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("the Jira loop did not go quiet in {limit:?}: {pending} pending in the inbox, {} deliveries pending\n{}", jira.deliveries_pending(), recent(jira));
        }
        // A round: long enough for a woken worker to pick up what just arrived.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last 30 writes and deliveries, for a failure message.
pub fn recent(jira: &FakeJira) -> String {
    let writes = jira.write_log();
    let deliveries = jira.deliveries();
    let tail = |n: usize| n.saturating_sub(30);
    let mut out = format!("last writes ({} in all):\n", writes.len());
    for w in &writes[tail(writes.len())..] {
        out.push_str(&format!("  {w}\n"));
    }
    out.push_str(&format!("last deliveries ({} in all):\n", deliveries.len()));
    for d in &deliveries[tail(deliveries.len())..] {
        out.push_str(&format!("  {d}\n"));
    }
    out
}

//! Jira end to end with the loop closed: people act in the fake Jira, the fake sends rollgate
//! the deliveries Jira sends (rollgate's own changes come back too), and each test waits until
//! the system is quiet before it checks what Jira holds and how many writes it took.

mod support;

use serde_json::json;
use support::fake_jira::{FakeJira, FakeJiraComment, Release, BOT_ACCOUNT};
use support::jira_loop::{loop_on, rollgate_on, wait_quiet, LANE, ROLLOUT, SCOPE};

struct L {
    jira: FakeJira,
    app: rollgate::app::Running,
    _dir: tempfile::TempDir,
}

async fn start(cloud: bool) -> L {
    let jira = FakeJira::start().await;
    let (app, dir) = rollgate_on(&jira, cloud).await;
    loop_on(&jira, &app);
    L { jira, app, _dir: dir }
}

impl L {
    async fn quiet(&self) {
        wait_quiet(&self.jira, self.app.store.as_ref()).await
    }

    fn value(&self, key: &str, field: &str) -> Option<String> {
        self.jira.field(key, field).and_then(|v| v["value"].as_str().map(String::from))
    }

    fn tagged(&self, key: &str, tag: &str) -> Vec<FakeJiraComment> {
        let ours = |c: &FakeJiraComment| c.properties.iter().any(|(k, v)| k == "rollgate" && v["tag"] == tag);
        self.jira.comments(key).into_iter().filter(ours).collect()
    }

    /// Deliveries that reached rollgate for this issue, resends and retries left out.
    fn delivered(&self, key: &str) -> usize {
        self.jira.deliveries().iter().filter(|d| d.issue == key && d.retry == 0).count()
    }
}

fn new_bug(l: &L) -> String {
    let fields = json!({ "project": { "key": "PROJ" }, "issuetype": { "name": "Bug" }, "summary": "Login fails", SCOPE: { "value": "Single client" } });
    l.jira.person("acc-reporter").create_issue_with(fields)
}

#[tokio::test]
async fn a_bug_filed_in_jira_gets_its_fields_once_and_the_echo_changes_nothing() {
    for cloud in [true, false] {
        let l = start(cloud).await;
        let key = new_bug(&l);
        l.quiet().await;
        assert_eq!((l.value(&key, LANE).as_deref(), l.value(&key, ROLLOUT).as_deref()), (Some("B"), Some("1 Direct")));
        assert_eq!(l.jira.writes_on(&key), 1, "one PUT for both fields; its echo is a no-op: {:?}", l.jira.writes());
        let who: Vec<String> = l.jira.deliveries().iter().map(|d| d.who.clone()).collect();
        assert_eq!(who, ["acc-reporter", BOT_ACCOUNT], "the creation, then the echo of rollgate's own edit");
        l.app.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_card_dragged_past_the_gates_is_moved_back_once() {
    let l = start(true).await;
    let fields = json!({ "project": { "key": "PROJ" }, "issuetype": { "name": "Story" }, "summary": "Dark mode" });
    let key = l.jira.person("acc-reporter").create_issue_with(fields);
    l.quiet().await;
    let before = l.jira.writes_on(&key);
    l.jira.person("acc-dev").transition(&key, "Released");
    l.quiet().await;
    assert_eq!(l.jira.status(&key), "Planning", "moved back");
    assert_eq!(l.tagged(&key, "blocked").len(), 1, "one comment saying why");
    let back = l.jira.writes().iter().filter(|w| w.starts_with(&format!("POST transition {key}"))).count();
    assert_eq!(back, 1, "{:?}", l.jira.writes());
    assert!(l.jira.writes_on(&key) - before <= 3, "bounded: {:?}", l.jira.writes());
    l.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_delivery_jira_sends_twice_is_handled_once() {
    let l = start(true).await;
    l.jira.retry_every_delivery_once();
    let key = new_bug(&l);
    l.quiet().await;
    assert_eq!(l.value(&key, LANE).as_deref(), Some("B"));
    assert_eq!(l.jira.writes_on(&key), 1, "{:?}", l.jira.writes());
    let resent = l.jira.deliveries().iter().filter(|d| d.retry == 1).count();
    assert_eq!(resent, 2, "the creation and the echo, each sent twice");
    assert_eq!(l.delivered(&key), 2);
    l.app.stop().await.unwrap();
}

/// The PM changes two fields; Jira sends the two deliveries in the order given.
async fn two_edits(order: Release) -> (L, String) {
    let l = start(true).await;
    let key = new_bug(&l);
    l.quiet().await;
    l.jira.hold_deliveries();
    let pm = l.jira.person(support::jira_loop::PM);
    pm.set_field(&key, ROLLOUT, json!({ "value": "2 Notified" }));
    pm.set_field(&key, SCOPE, json!({ "value": "Cross-client" }));
    l.jira.release_deliveries(order);
    l.quiet().await;
    (l, key)
}

#[tokio::test]
async fn deliveries_that_arrive_in_reverse_order_end_in_the_same_state() {
    for order in [Release::AsHappened, Release::Reversed] {
        let (l, key) = two_edits(order.clone()).await;
        let state = (l.value(&key, ROLLOUT), l.value(&key, LANE), l.value(&key, SCOPE), l.jira.comments(&key).len());
        assert_eq!(state, (Some("2 Notified".into()), Some("B".into()), Some("Cross-client".into()), 0), "{order:?}\n{}", support::jira_loop::recent(&l.jira));
        assert_eq!(l.jira.writes_on(&key), 1, "only the first PUT, at creation");
        l.app.stop().await.unwrap();
    }
}

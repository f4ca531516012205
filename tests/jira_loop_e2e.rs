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
    let blocked = l.tagged(&key, "blocked");
    assert_eq!(blocked.len(), 1, "one comment saying why");
    assert_eq!(blocked[0].body["type"], "doc", "Cloud gets ADF");
    let text = rollgate::tracker::jira::markup::plain_text(&blocked[0].body);
    assert!(text.contains("skips") && text.contains("decided"), "{text}");
    assert!(!text.contains("<!--"), "no HTML marker in Jira: {text}");
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
        // In order, the PM's changes need nothing from rollgate. Reversed, when the scope change
        // is judged before the PM's rollout delivery has arrived (it is not yet waiting in the
        // inbox to go first), the bug's default rollout for cross-client is the 2 the PM set:
        // rollgate writes it (a PUT Jira takes as no change) before the PM's delivery comes.
        let most = if matches!(order, Release::AsHappened) { 1 } else { 2 };
        assert!(l.jira.writes_on(&key) <= most, "{order:?}: {:?}", l.jira.write_log());
        l.app.stop().await.unwrap();
    }
}

/// Writes of one kind on an issue, from the fake's log.
fn writes_of(l: &L, key: &str, what: &str) -> usize {
    l.jira.writes().iter().filter(|w| w.starts_with(what) && w.contains(key)).count()
}

/// A PM raises a bug to type 3 with a command on Data Center, a developer tries to lower it,
/// the item goes through the flow to dev release, and the checklist is kept with ticks and
/// commands. With the loop closed every comment comes back twice (comment_created with a thin
/// issue, and issue_commented), every checklist edit comes back as wiki text: none of it may
/// reset a field or make rollgate rewrite its own comment.
#[tokio::test]
async fn commands_ticks_and_the_checklist_go_quiet_on_data_center_and_cloud() {
    for cloud in [false, true] {
        let l = start(cloud).await;
        let fields = json!({ "project": { "key": "PROJ" }, "issuetype": { "name": "Bug" }, "summary": "Login fails",
                             support::jira_loop::CLIENTS: "Adani Cement" });
        let key = l.jira.person("acc-reporter").create_issue_with(fields);
        l.quiet().await;
        assert_eq!(l.value(&key, LANE).as_deref(), Some("B"));
        let pm = l.jira.person(support::jira_loop::PM);
        let say = |who: &support::fake_jira::Person, text: &str| {
            if cloud { who.comment(&key, support::fake_jira::adf(text)) } else { who.comment(&key, text) }
        };

        // R5: the PM's `/rollout 3` moves the bug to lane A with one comment; the echoes of that
        // comment (thin issue) never reset the rollout to the bug's default.
        say(&pm, "Needs a demo for the clients.\n/rollout 3");
        l.quiet().await;
        assert_eq!((l.value(&key, ROLLOUT).as_deref(), l.value(&key, LANE).as_deref()), (Some("3 Demoed"), Some("A")), "{}", support::jira_loop::recent(&l.jira));
        assert_eq!(l.tagged(&key, "lane-promotion").len(), 1);

        // R8: someone else may not: a reply, nothing changes, and they are not told their
        // "change" was reverted (they changed no field).
        say(&l.jira.person("acc-dev"), "/rollout 1");
        l.quiet().await;
        assert_eq!(l.value(&key, ROLLOUT).as_deref(), Some("3 Demoed"));
        assert!(l.tagged(&key, "role-refused").is_empty(), "a command is not a field change");
        let texts: Vec<String> = l.jira.comments(&key).iter().map(|c| rollgate::tracker::jira::markup::plain_text(&c.body)).collect();
        assert!(texts.iter().any(|t| t.contains("only the PM role")), "{texts:?}");

        // Through the flow to dev release: the checklist appears once.
        say(&pm, "/decide accept sprint=2026-W48 dev-release=2026-11-24");
        l.quiet().await;
        assert_eq!(l.jira.status(&key), "Decided");
        for status in ["In Development", "Dev Released"] {
            pm.transition(&key, status);
            l.quiet().await;
            assert_eq!(l.jira.status(&key), status, "{}", support::jira_loop::recent(&l.jira));
        }
        let checklist = l.tagged(&key, "checklist");
        assert_eq!(checklist.len(), 1);
        let text = rollgate::tracker::jira::markup::plain_text(&checklist[0].body);
        assert!(text.contains("Release note") && text.contains("Adani Cement"), "{text}");
        let edits_before = writes_of(&l, &checklist[0].id, "PUT comment");

        // A command ticks the release note: the checklist is edited in place, once.
        say(&pm, "/artifact done release-note");
        l.quiet().await;
        assert_eq!(l.tagged(&key, "checklist").len(), 1, "edited in place");
        assert_eq!(writes_of(&l, &checklist[0].id, "PUT comment") - edits_before, 1, "one edit, its echo followed by nothing");

        // The PM ticks the internal demo in Jira's editor: recorded, no rewrite needed (the
        // comment already says what rollgate would write), no loop.
        let id = checklist[0].id.clone();
        let edits_before = writes_of(&l, &id, "PUT comment");
        pm.tick(&id, "Internal demo");
        l.quiet().await;
        let history = l.app.store.history(&key.parse().unwrap()).await.unwrap();
        assert!(history.iter().any(|h| h.field == "artifact.internal-demo" && h.to.as_deref() == Some("done")), "the tick counts: {history:?}");
        assert!(writes_of(&l, &id, "PUT comment") - edits_before <= 1, "at most one re-render: {}", support::jira_loop::recent(&l.jira));

        // A developer (no role) ticks the client release note: undone, and said why.
        let edits_before = writes_of(&l, &id, "PUT comment");
        l.jira.person("acc-dev").tick(&id, "Client comms email");
        l.quiet().await;
        let history = l.app.store.history(&key.parse().unwrap()).await.unwrap();
        assert!(!history.iter().any(|h| h.field == "artifact.client-comms-email"), "{history:?}");
        let wiki = l.jira.comment_wiki(&id);
        assert!(!wiki.contains("-Client release note") && !wiki.contains("\\[x] *Client release note"), "the box is unticked again: {wiki}");
        assert!(writes_of(&l, &id, "PUT comment") - edits_before <= 2, "bounded: {}", support::jira_loop::recent(&l.jira));
        l.app.stop().await.unwrap();
    }
}

/// The PM sets the rollout and moves the card to Decided without a decision: only the status
/// move is refused (R18); the PM's rollout stays, and the refused move is recorded as refused.
#[tokio::test]
async fn a_refused_move_is_reverted_alone_and_kept_out_of_the_history() {
    let l = start(true).await;
    let key = new_bug(&l);
    l.quiet().await;
    let pm = l.jira.person(support::jira_loop::PM);
    pm.set_field(&key, ROLLOUT, json!({ "value": "2 Notified" }));
    pm.transition(&key, "Decided");
    l.quiet().await;
    assert_eq!(l.jira.status(&key), "Planning", "{}", support::jira_loop::recent(&l.jira));
    assert_eq!(l.value(&key, ROLLOUT).as_deref(), Some("2 Notified"), "the PM's rollout stays");
    let history = l.app.store.history(&key.parse().unwrap()).await.unwrap();
    let moved: Vec<_> = history.iter().filter(|h| h.field == "status").collect();
    assert!(moved.iter().any(|h| h.to.as_deref() == Some("decided") && h.refused.as_deref().is_some_and(|r| r.contains("R18"))), "{moved:?}");
    assert!(!moved.iter().any(|h| h.to.as_deref() == Some("planning") && h.actor == "rollgate"), "putting it back is not a transition: {moved:?}");
    l.app.stop().await.unwrap();
}

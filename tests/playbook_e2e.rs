//! The SOP's worked examples (VT-001, VT-011, VT-014) as a team would live them: each human
//! action is made on the fake GitHub and then delivered as the signed webhook GitHub sends.

mod support;

use serde_json::{json, Value};
use support::fake_github::FakeGithub;
use support::{fixture, Harness, REPO};

const PM: &str = "priya";
const QA: &str = "quinn";

/// One issue, driven through the real service.
struct Story<'h> {
    h: &'h Harness,
    n: u64,
    tick: u32,
    body: String,
}

impl<'h> Story<'h> {
    async fn open(h: &'h Harness, n: u64, labels: &[&str], body: &str) -> Story<'h> {
        h.github.seed(REPO, n, labels);
        let mut s = Story { h, n, tick: 0, body: body.to_string() };
        let p = s.payload("issues.opened.json", "someone");
        s.send("issues", p).await;
        s
    }

    fn gh(&self) -> &FakeGithub {
        &self.h.github
    }

    /// A real payload for this issue as it now stands on the fake GitHub.
    fn payload(&mut self, name: &str, actor: &str) -> Value {
        self.tick += 1;
        let issue = self.gh().issue(REPO, self.n);
        let mut p = fixture(name);
        p["issue"]["number"] = json!(self.n);
        p["issue"]["labels"] = json!(issue.labels.iter().map(|l| json!({ "name": l })).collect::<Vec<_>>());
        p["issue"]["state"] = json!(if issue.open { "open" } else { "closed" });
        p["issue"]["state_reason"] = json!(issue.state_reason);
        p["issue"]["body"] = json!(self.body);
        p["repository"]["full_name"] = json!(REPO);
        p["issue"]["updated_at"] = json!(format!("2026-11-24T10:{:02}:{:02}Z", self.tick / 60, self.tick % 60));
        p["sender"] = json!({ "login": actor, "type": "User" });
        p
    }

    async fn send(&mut self, event: &str, p: Value) {
        let id = format!("{}-{}", self.n, self.tick);
        let (status, _) = self.h.deliver(event, &id, &p).await;
        assert_eq!(status, 202);
        self.h.settle().await;
    }

    async fn add_label(&mut self, label: &str, actor: &str) {
        let mut labels = self.gh().issue(REPO, self.n).labels;
        labels.push(label.to_string());
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        self.reseed(&refs);
        let mut p = self.payload("issues.labeled.json", actor);
        p["label"] = json!({ "name": label });
        self.send("issues", p).await;
    }

    fn reseed(&self, labels: &[&str]) {
        let keep = self.gh().issue(REPO, self.n);
        self.gh().seed(REPO, self.n, labels);
        self.gh().set_comments(REPO, self.n, keep.comments);
    }

    async fn comment(&mut self, body: &str, actor: &str) {
        let mut p = self.payload("issue_comment.created.json", actor);
        p["comment"]["id"] = json!(500_000 + self.tick);
        p["comment"]["body"] = json!(body);
        p["comment"]["user"] = json!({ "login": actor, "type": "User" });
        self.send("issue_comment", p).await;
    }

    /// Ticks boxes (by id) in the bot comment `tag`, as a person clicking them would.
    async fn tick(&mut self, tag: &str, boxes: &[&str], actor: &str) {
        let c = self.bot_comment(tag);
        let mut body = c.body.clone();
        for b in boxes {
            let line = body.lines().find(|l| l.contains(&format!("<!-- box:{b} -->"))).unwrap_or_else(|| panic!("no box {b} in {tag}")).to_string();
            body = body.replace(&line, &line.replacen("- [ ]", "- [x]", 1));
        }
        self.gh().edit_comment(c.id, &body);
        let mut p = self.payload("issue_comment.edited.json", actor);
        p["comment"]["id"] = json!(c.id);
        p["comment"]["body"] = json!(body);
        p["comment"]["user"] = json!({ "login": support::fake_github::BOT_LOGIN, "type": "Bot" });
        p["changes"] = json!({ "body": { "from": c.body } });
        self.send("issue_comment", p).await;
    }

    async fn close(&mut self, actor: &str) {
        self.gh().close(REPO, self.n, "completed");
        let p = self.payload("issues.closed.json", actor);
        self.send("issues", p).await;
    }

    fn labels(&self) -> Vec<String> {
        self.gh().labels(REPO, self.n)
    }

    fn status(&self) -> String {
        let s: Vec<String> = self.labels().into_iter().filter(|l| l.starts_with("status/")).collect();
        assert_eq!(s.len(), 1, "exactly one status label: {s:?}");
        s[0].clone()
    }

    fn bot_comment(&self, tag: &str) -> support::fake_github::FakeComment {
        let marker = format!("<!-- rollgate:{tag} -->");
        let all: Vec<_> = self.gh().issue(REPO, self.n).comments.into_iter().filter(|c| c.body.starts_with(&marker)).collect();
        assert_eq!(all.len(), 1, "one {tag} comment, never two");
        all.into_iter().next().unwrap()
    }

    fn has_comment(&self, tag: &str) -> bool {
        let marker = format!("<!-- rollgate:{tag} -->");
        self.gh().issue(REPO, self.n).comments.iter().any(|c| c.body.starts_with(&marker))
    }
}

async fn harness() -> Harness {
    Harness::start_with(|s| {
        s.roles.pm = vec![PM.into()];
        s.roles.qa_lead = vec![QA.into()];
    })
    .await
}

#[tokio::test]
async fn vt_011_demoed_rollout_is_blocked_until_its_artifacts_are_done() {
    let h = harness().await;
    let mut s = Story::open(&h, 11, &["type/enhancement", "scope/cross-client", "revenue-relevant"], "### Affected clients\n\nAdani Cement, Adani Hazira").await;
    assert!(s.labels().contains(&"rollout/3-demoed".into()) && s.labels().contains(&"lane/A".into()));
    assert_eq!(s.status(), "status/planning");

    s.comment("/decide accept sprint=2026-W48 dev-release=2026-11-24", PM).await;
    assert_eq!(s.status(), "status/decided");
    assert!(s.labels().contains(&"decision/accept".into()));
    s.add_label("status/in-dev", "dev1").await;
    assert_eq!(s.status(), "status/in-dev");
    s.add_label("status/dev-released", "dev1").await;
    let checklist = s.bot_comment("checklist").body;
    assert!(checklist.contains("- [ ] **Sales kit**"), "revenue-relevant adds the sales kit:\n{checklist}");
    assert!(checklist.contains("Hi Adani Cement,") && checklist.contains("Hi Adani Hazira,"), "templates carry the clients:\n{checklist}");

    // Skipping straight to released: refused, reopened, status restored, one comment.
    s.close(PM).await;
    assert!(s.gh().issue(REPO, 11).open, "a refused close is reopened");
    assert_eq!(s.status(), "status/dev-released");
    assert!(s.bot_comment("blocked").body.contains("skips `rollout-confirmed`"));

    s.add_label("status/rollout-confirmed", PM).await;
    s.add_label("status/in-rollout", PM).await;
    assert_eq!(s.status(), "status/in-rollout");
    s.close(PM).await;
    assert!(s.gh().issue(REPO, 11).open);
    let blocked = s.bot_comment("blocked").body;
    assert!(blocked.contains("R11") && blocked.contains("Training material") && blocked.contains("Sales kit"), "{blocked}");

    // The PM ticks every box; the checklist follows and says what is next.
    s.tick("checklist", &["release-note", "training-material", "internal-demo", "sales-kit", "client-comms-email"], PM).await;
    let checklist = s.bot_comment("checklist").body;
    assert!(checklist.contains("- [x] **Sales kit**") && checklist.contains("move the item to `released`"), "{checklist}");
    s.close(PM).await;
    assert!(!s.gh().issue(REPO, 11).open, "released: the close stands");
    assert_eq!(s.status(), "status/released");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn vt_014_piloted_rollout_goes_wave_by_wave() {
    let h = harness().await;
    let mut s = Story::open(&h, 14, &["type/major-feature", "scope/cross-client", "track/stability"], "").await;
    assert!(s.labels().contains(&"rollout/4-piloted".into()));
    s.comment("/decide accept sprint=2026-W48 dev-release=2026-11-24", PM).await;
    for st in ["status/in-dev", "status/dev-released", "status/rollout-confirmed"] {
        s.add_label(st, PM).await;
    }
    assert!(s.has_comment("waves"));
    // No pilot prerequisites yet: in-rollout is refused.
    s.add_label("status/in-rollout", PM).await;
    assert_eq!(s.status(), "status/rollout-confirmed");
    assert!(s.bot_comment("blocked").body.contains("R14"));

    s.comment("/pilot client \"Adani Karaikal\"", PM).await;
    s.tick("checklist", &["rollback-plan", "pilot-client-agreement"], QA).await;
    s.add_label("status/in-rollout", PM).await;
    assert_eq!(s.status(), "status/in-rollout");
    assert!(s.bot_comment("waves").body.contains("pilot client Adani Karaikal"));

    s.comment("/wave start 1", PM).await;
    s.comment("/wave start 2", PM).await;
    let reply = s.gh().issue(REPO, 14).comments.into_iter().filter(|c| c.body.contains("wave 1's exit criteria are not ticked")).count();
    assert_eq!(reply, 1, "wave 2 refused with a reply");
    s.tick("waves", &["wave-1-exit"], PM).await;
    s.comment("/wave start 2", PM).await;
    assert!(s.bot_comment("waves").body.contains("| 2 ▶ |"));

    s.comment("/pause trigger=\"GPS drift at Karaikal\"", PM).await;
    assert!(s.labels().contains(&"rollout/paused".into()));
    s.comment("/resume", PM).await;
    assert!(!s.labels().contains(&"rollout/paused".into()));

    s.comment("/artifact done internal-demo\n/artifact done release-note\n/artifact done training-material\n/artifact done demo-video\n/artifact done sales-kit\n/artifact done daily-check-in-notes\n/artifact done pilot-retro\n/artifact done phased-rollout-schedule", PM).await;
    s.close(PM).await;
    assert!(s.bot_comment("blocked").body.contains("pilot retro records GO"), "no GO yet");
    s.comment("/pilot retro go", PM).await;
    s.close(PM).await;
    assert_eq!(s.status(), "status/released");
    assert!(!s.gh().issue(REPO, 14).open);
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn vt_001_incident_hotfix_goes_straight_to_released() {
    let h = harness().await;
    let mut s = Story::open(&h, 1, &["type/incident-p0"], "").await;
    assert!(s.labels().contains(&"lane/C".into()) && s.labels().contains(&"rollout/1-direct".into()));
    s.comment("/decide accept sprint=hotfix dev-release=2026-11-24", PM).await;
    s.add_label("status/in-dev", "dev1").await;
    s.add_label("status/dev-released", "dev1").await;
    let checklist = s.bot_comment("checklist").body;
    assert!(!checklist.contains("Client notification"), "no client affected, no client notification:\n{checklist}");
    s.comment("/artifact done internal-release-note\n/artifact done cs-notification", PM).await;
    s.add_label("status/released", PM).await;
    assert_eq!(s.status(), "status/released", "type 1 may skip to released");

    // Anyone may ask why: the reply lists the recent decisions and their reasons.
    s.comment("/explain", "someone").await;
    let explained = s.gh().issue(REPO, 1).comments.into_iter().find(|c| c.body.contains("Why rollgate did what it did")).expect("an /explain reply");
    assert!(explained.body.contains("R1: incident-p0 goes to lane C"), "{}", explained.body);
    assert!(explained.body.contains("R9: dev-released → released"), "{}", explained.body);
    // Real line breaks, not the two characters `\n` (Rhai's backtick strings keep escapes as written).
    assert!(explained.body.contains("\n- ") && !explained.body.contains("\\n"), "{}", explained.body);
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_type_change_outside_the_pm_role_is_reverted_on_the_tracker() {
    let h = harness().await;
    let mut s = Story::open(&h, 8, &["type/bug", "scope/cross-client"], "").await;
    assert!(s.labels().contains(&"rollout/2-notified".into()));
    s.add_label("rollout/4-piloted", "dev1").await;
    assert!(s.labels().contains(&"rollout/2-notified".into()));
    assert!(!s.labels().contains(&"rollout/4-piloted".into()));
    assert!(s.bot_comment("role-refused").body.contains("@dev1"));
    assert!(s.bot_comment("role-refused").body.contains("was reverted.\n\nA QA lead"), "{}", s.bot_comment("role-refused").body);
    // A tick by someone without a role is undone on the tracker.
    s.comment("/decide accept sprint=S dev-release=2026-11-24", PM).await;
    s.add_label("status/in-dev", PM).await;
    s.add_label("status/dev-released", PM).await;
    s.tick("checklist", &["internal-release-note"], "dev1").await;
    assert!(s.bot_comment("checklist").body.contains("- [ ] **Internal release note**"), "the tick was undone");
    assert!(s.has_comment("tick-refused"));
    h.app.stop().await.unwrap();
}

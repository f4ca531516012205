//! The SOP's worked examples (VT-001, VT-011, VT-014) as a team would live them: each person
//! acts on the fake GitHub, which sends rollgate the signed deliveries GitHub sends (rollgate's
//! own changes come back too), and each step waits until the system is quiet.

mod support;

use support::fake_github::FakeGithub;
use support::{Harness, REPO};

const PM: &str = "priya";
const QA: &str = "quinn";

/// One issue, driven through the real service by people acting on the fake GitHub.
struct Story<'h> {
    h: &'h Harness,
    n: u64,
}

impl<'h> Story<'h> {
    async fn open(h: &'h Harness, labels: &[&str], body: &str) -> Story<'h> {
        let n = h.github.person("someone").open_issue(REPO, "A playbook item", body, labels);
        h.quiet().await;
        Story { h, n }
    }

    fn gh(&self) -> &FakeGithub {
        &self.h.github
    }

    /// A person sets a label with GitHub's label picker: a status or rollout label replaces the
    /// one there (two deliveries, the removal first), anything else is added.
    async fn add_label(&mut self, label: &str, actor: &str) {
        let prefix = label.split('/').next().unwrap_or("");
        let old = self.labels().into_iter().find(|l| (prefix == "status" || prefix == "rollout") && l.starts_with(&format!("{prefix}/")) && l != label);
        match old {
            Some(old) => self.gh().person(actor).swap_label(REPO, self.n, &old, label, support::fake_github::SwapOrder::RemoveFirst),
            None => self.gh().person(actor).add_labels(REPO, self.n, &[label]),
        }
        self.h.quiet().await;
    }

    async fn comment(&mut self, body: &str, actor: &str) {
        self.gh().person(actor).comment(REPO, self.n, body);
        self.h.quiet().await;
    }

    /// Ticks boxes (by id) in the bot comment `tag` in one edit, as a person clicking them
    /// before saving would.
    async fn tick(&mut self, tag: &str, boxes: &[&str], actor: &str) {
        let c = self.bot_comment(tag);
        let mut body = c.body.clone();
        for b in boxes {
            let line = body.lines().find(|l| l.contains(&format!("<!-- box:{b} -->"))).unwrap_or_else(|| panic!("no box {b} in {tag}")).to_string();
            body = body.replace(&line, &line.replacen("- [ ]", "- [x]", 1));
        }
        self.gh().person(actor).edit_comment(c.id, &body);
        self.h.quiet().await;
    }

    async fn close(&mut self, actor: &str) {
        self.gh().person(actor).close(REPO, self.n, "completed");
        self.h.quiet().await;
    }

    fn open_now(&self) -> bool {
        self.gh().issue(REPO, self.n).open
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
    let mut s = Story::open(&h, &["type/enhancement", "scope/cross-client", "revenue-relevant"], "### Affected clients\n\nAdani Cement, Adani Hazira").await;
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
    assert!(s.open_now(), "a refused close is reopened");
    assert_eq!(s.status(), "status/dev-released");
    assert!(s.bot_comment("blocked").body.contains("skips `rollout-confirmed`"));

    s.add_label("status/rollout-confirmed", PM).await;
    s.add_label("status/in-rollout", PM).await;
    assert_eq!(s.status(), "status/in-rollout");
    s.close(PM).await;
    assert!(s.open_now());
    let blocked = s.bot_comment("blocked").body;
    assert!(blocked.contains("R11") && blocked.contains("Training material") && blocked.contains("Sales kit"), "{blocked}");

    // The PM ticks every box; the checklist follows and says what is next.
    s.tick("checklist", &["release-note", "training-material", "internal-demo", "sales-kit", "client-comms-email"], PM).await;
    let checklist = s.bot_comment("checklist").body;
    assert!(checklist.contains("- [x] **Sales kit**") && checklist.contains("move the item to `released`"), "{checklist}");
    s.close(PM).await;
    assert!(!s.open_now(), "released: the close stands");
    assert_eq!(s.status(), "status/released");
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn vt_014_piloted_rollout_goes_wave_by_wave() {
    let h = harness().await;
    let mut s = Story::open(&h, &["type/major-feature", "scope/cross-client", "track/stability"], "").await;
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
    let reply = s.gh().issue(REPO, s.n).comments.into_iter().filter(|c| c.body.contains("wave 1's exit criteria are not ticked")).count();
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
    assert!(!s.open_now());
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn vt_001_incident_hotfix_goes_straight_to_released() {
    let h = harness().await;
    let mut s = Story::open(&h, &["type/incident-p0"], "").await;
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
    let explained = s.gh().issue(REPO, s.n).comments.into_iter().find(|c| c.body.contains("Why rollgate did what it did")).expect("an /explain reply");
    assert!(explained.body.contains("R1: incident-p0 goes to lane C"), "{}", explained.body);
    assert!(explained.body.contains("R9: dev-released → released"), "{}", explained.body);
    // Real line breaks, not the two characters `\n` (Rhai's backtick strings keep escapes as written).
    assert!(explained.body.contains("\n- ") && !explained.body.contains("\\n"), "{}", explained.body);
    h.app.stop().await.unwrap();
}

#[tokio::test]
async fn a_type_change_outside_the_pm_role_is_reverted_on_the_tracker() {
    let h = harness().await;
    let mut s = Story::open(&h, &["type/bug", "scope/cross-client"], "").await;
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

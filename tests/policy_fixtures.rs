//! The shipped policy pack against its own fixtures (policies/tests), as `rollgate test` runs
//! them; and the tools on broken folders.

mod support;

use rollgate::policy::PolicySet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn pack() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

#[test]
fn every_shipped_fixture_passes() {
    let set = PolicySet::load(&pack()).unwrap();
    let outcomes = rollgate::policy::fixtures::run_dir(&set, &pack()).unwrap();
    let (report, ok) = rollgate::policy::fixtures::report(&outcomes);
    assert!(ok, "{report}");
    // Every playbook rule R1-R15 has at least one fixture.
    for n in 1..=15 {
        let prefix = format!("r{n:02}-");
        assert!(
            outcomes.iter().any(|o| o.file.file_name().unwrap().to_string_lossy().starts_with(&prefix)),
            "no fixture for R{n}"
        );
    }
}

#[test]
fn every_fixture_decides_the_same_on_jira_as_on_github() {
    use rollgate::policy::fixtures::{decide, As, Fixture};
    let set = PolicySet::load(&pack()).unwrap();
    let mut compared = 0;
    for entry in std::fs::read_dir(pack().join("tests")).unwrap() {
        let path = entry.unwrap().path();
        let f: Fixture = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // Open and closed are GitHub's: on Jira the status says it (a close is a transition).
        if f.event.kind.starts_with("issues.closed") || f.event.kind.starts_with("issues.reopened") {
            continue;
        }
        let (g, _, _) = decide(&set, &f, As::Github).unwrap();
        let (j, _, _) = decide(&set, &f, As::Jira).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        assert_eq!(g.fields, j.fields, "{name}: fields");
        assert_eq!(g.flags, j.flags, "{name}: flags");
        assert_eq!(g.blocks, j.blocks, "{name}: blocks");
        assert_eq!(g.records, j.records, "{name}: records");
        assert_eq!(g.comments.keys().collect::<Vec<_>>(), j.comments.keys().collect::<Vec<_>>(), "{name}: comments");
        assert_eq!(g.why, j.why, "{name}: why");
        compared += 1;
    }
    assert!(compared >= 40, "only {compared} fixtures compared");
}

fn rollgate(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rollgate")).args(args).env_clear().output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn copy_pack() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    support::copy_dir(&pack(), dir.path());
    dir
}

#[test]
fn check_reports_the_pack_and_points_at_a_syntax_error() {
    let (ok, out) = rollgate(&["check", pack().to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains(": ok — policy version") && out.contains("15-commands"), "{out}");

    let broken = copy_pack();
    let rule = broken.path().join("rules/40-lanes.rhai");
    let text = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(&rule, text.replacen("let set = #{};", "let set = #{;", 1)).unwrap();
    let (ok, out) = rollgate(&["check", broken.path().to_str().unwrap()]);
    assert!(!ok);
    let line = text.lines().position(|l| l.contains("let set = #{};")).unwrap() + 1;
    assert!(out.contains(&format!("40-lanes.rhai:{line}:")), "{out}");
    assert!(out.contains("let set = #{;"), "the source line is shown: {out}");
}

#[test]
fn test_fails_with_a_readable_diff_when_a_rule_changes() {
    let changed = copy_pack();
    let playbook = changed.path().join("playbook.toml");
    let text = std::fs::read_to_string(&playbook).unwrap();
    std::fs::write(&playbook, text.replacen("bug = \"B\"", "bug = \"C\"", 1)).unwrap();
    let (ok, out) = rollgate(&["test", changed.path().to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL r01-bug-goes-to-lane-b.toml"), "{out}");
    assert!(out.contains("missing [\"lane/B\"], unexpected [\"lane/C\"]"), "{out}");
    assert!(out.lines().last().unwrap().ends_with("failed") && !out.contains(" 0 failed"), "{out}");
}

#[test]
fn simulate_prints_the_decision_for_a_real_payload_without_a_tracker() {
    let dir = tempfile::tempdir().unwrap();
    let mut payload: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github/issues.opened.json")).unwrap(),
    )
    .unwrap();
    payload["issue"]["labels"] = serde_json::json!([{ "name": "type/bug" }, { "name": "scope/single-client" }]);
    let file = dir.path().join("opened.json");
    std::fs::write(&file, serde_json::to_vec(&payload).unwrap()).unwrap();
    let (ok, out) = rollgate(&["simulate", "--event", file.to_str().unwrap(), "--policies", pack().to_str().unwrap()]);
    assert!(ok, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["decision"]["fields"]["lane"], "B");
    assert_eq!(json["effects"][0]["kind"], "add_labels");
    assert_eq!(json["effects"][0]["labels"], serde_json::json!(["lane/B", "rollout/1-direct", "status/planning"]));
}

/// Fixtures run on their own calendar (UTC unless they declare a zone), never the
/// deployment's: `rollgate test` and `rollgate doctor` give the same verdict whatever
/// ROLLGATE_TIMEZONE, work week and holidays the service runs with.
#[test]
fn the_deployments_calendar_never_changes_a_fixture_result() {
    let db = tempfile::tempdir().unwrap();
    for zone in ["Asia/Kolkata", "America/Los_Angeles"] {
        let run = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_rollgate"))
                .args(args)
                .env_clear()
                .env("ROLLGATE_TIMEZONE", zone)
                .env("ROLLGATE_WORKWEEK", "Sun,Mon,Tue,Wed,Thu")
                .env("ROLLGATE_HOLIDAYS", "2026-11-25,2026-12-01")
                .env("ROLLGATE_POLICIES", pack())
                .env("ROLLGATE_DATABASE_URL", format!("sqlite://{}", db.path().join("d.db").display()))
                .output()
                .unwrap();
            (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
        };
        let (ok, out) = run(&["test", pack().to_str().unwrap()]);
        assert!(ok, "{zone}: {out}");
        assert!(out.lines().last().unwrap().ends_with(" 0 failed"), "{zone}: {out}");
        let (ok, out) = run(&["doctor"]);
        assert!(ok, "{zone}: {out}");
        let policies = out.lines().find(|l| l.contains("policies:")).unwrap_or_default();
        assert!(policies.starts_with("ok") && policies.contains(" fixtures pass") && !policies.contains("see `rollgate test`"), "{zone}: {out}");
    }
}

/// A fixture that declares its zone (or its holidays) is judged on that calendar, whatever
/// the deployment's; a zone that is no IANA name fails the fixture and says why.
#[test]
fn a_fixture_runs_on_the_calendar_it_declares() {
    use rollgate::policy::fixtures::run_file;
    let dir = copy_pack();
    let set = PolicySet::load(dir.path()).unwrap();
    let zoned = dir.path().join("tests/r18-the-decision-week-is-the-teams-week.toml");
    assert!(run_file(&set, &zoned).failures.is_empty(), "{:?}", run_file(&set, &zoned).failures);
    // The same event in UTC is still Friday of the week before: the fixture's times are wrong there.
    let text = std::fs::read_to_string(&zoned).unwrap();
    std::fs::write(&zoned, text.replace("timezone = \"Asia/Kolkata\"", "timezone = \"UTC\"")).unwrap();
    let failures = run_file(&set, &zoned).failures.join("\n");
    assert!(failures.contains("decision-due = 2026-12-03T03:30:00Z, got Some(Some(2026-11-26T09:00:00Z))"), "{failures}");
    std::fs::write(&zoned, text.replace("timezone = \"Asia/Kolkata\"", "timezone = \"Asia/Calcutta-ish\"")).unwrap();
    let failures = run_file(&set, &zoned).failures.join("\n");
    assert!(failures.contains("timezone \"Asia/Calcutta-ish\" is not an IANA zone name"), "{failures}");
    // Where fixtures first wrote it, [config] timezone means the same.
    std::fs::write(&zoned, text.replace("timezone = \"Asia/Kolkata\"", "").replace("[issue]", "[config]\ntimezone = \"Asia/Kolkata\"\n[issue]")).unwrap();
    assert!(run_file(&set, &zoned).failures.is_empty(), "{:?}", run_file(&set, &zoned).failures);

    let holiday = dir.path().join("tests/r16-sla-timers-skip-the-teams-holidays.toml");
    assert!(run_file(&set, &holiday).failures.is_empty(), "{:?}", run_file(&set, &holiday).failures);
    let text = std::fs::read_to_string(&holiday).unwrap();
    std::fs::write(&holiday, text.replace("holidays = [\"2026-11-26\"]", "holidays = []")).unwrap();
    let failures = run_file(&set, &holiday).failures.join("\n");
    assert!(failures.contains("artifact-release-note = 2026-11-27T09:00:00Z, got Some(Some(2026-11-26T09:00:00Z))"), "{failures}");
}

/// The comment bodies a fixture's decision plans on `on`, by tag.
fn planned_comments(f: &rollgate::policy::fixtures::Fixture, on: rollgate::policy::fixtures::As) -> std::collections::BTreeMap<String, String> {
    use rollgate::plan::Effect;
    let set = PolicySet::load(&pack()).unwrap();
    let (_, effects, _) = rollgate::policy::fixtures::decide(&set, f, on).unwrap();
    effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::UpsertComment { tag, body, .. } => Some((tag, body)),
            _ => None,
        })
        .collect()
}

fn fixture(name: &str) -> rollgate::policy::fixtures::Fixture {
    toml::from_str(&std::fs::read_to_string(pack().join("tests").join(name)).unwrap()).unwrap()
}

#[test]
fn a_hostile_title_adds_no_box_and_the_pms_tick_on_the_real_box_counts() {
    use rollgate::policy::boxes::boxes;
    use rollgate::policy::fixtures::As;
    let mut f = fixture("people-text-a-hostile-title-and-client-names-stay-text.toml");
    let checklist = planned_comments(&f, As::Github).remove("checklist").unwrap();
    let found: Vec<(String, bool)> = boxes(&checklist).into_iter().collect();
    let unticked = |ids: &[&str]| ids.iter().map(|id| (id.to_string(), false)).collect::<Vec<_>>();
    // Exactly the type-3 artifacts' boxes (no sales kit: the item is not revenue-relevant).
    let want = unticked(&["client-comms-email", "client-demo", "internal-demo", "release-note", "training-material"]);
    assert_eq!(found, want, "{checklist}");

    // The PM ticks the real release-note box: it is recorded as done.
    let ticked = checklist.replacen("- [ ] **Release note**", "- [x] **Release note**", 1);
    assert_ne!(ticked, checklist);
    f.config.pm = vec!["priya".into()];
    f.before = Some(rollgate::policy::fixtures::FixtureState { labels: f.issue.labels.clone(), open: true });
    f.history = vec![toml::from_str("at = \"2026-11-24T10:00:00Z\"\nfield = \"status\"\nto = \"dev-released\"").unwrap()];
    f.event = toml::from_str("kind = \"issue_comment.edited\"\nactor = \"priya\"").unwrap();
    f.event.previous_comment = Some(checklist.clone());
    f.event.comment = Some(ticked);
    f.bot_comments.insert("checklist".into(), checklist.split_once('\n').unwrap().1.to_string());
    let set = PolicySet::load(&pack()).unwrap();
    let (decision, _, _) = rollgate::policy::fixtures::decide(&set, &f, As::Github).unwrap();
    assert!(decision.records.contains(&("artifact.release-note".into(), "done".into())), "{:?}", decision.why);
}

#[test]
fn a_comment_with_150_bad_lines_gets_one_reply_within_the_trackers_limit() {
    use rollgate::policy::fixtures::As;
    use rollgate::tracker::CommentLimit;
    // 50 unknown commands, 50 unreadable lines and 50 refused commands, each line long: listed
    // in full, the reply would be over GitHub's limit.
    let filler = "x".repeat(440);
    let mut lines = Vec::new();
    lines.extend((0..50).map(|i| format!("/frobnicate-{i} {filler}")));
    lines.extend((0..50).map(|i| format!("/pause trigger=\"{i} {filler}")));
    lines.extend((0..50).map(|i| format!("/rollout 9{i} {filler}")));
    let comment = toml::Value::String(lines.join("\n")).to_string();
    let f: rollgate::policy::fixtures::Fixture = toml::from_str(&format!(
        "name = \"150 bad lines\"\nnow = \"2026-11-24T10:00:00Z\"\n[issue]\nlabels = [\"type/bug\"]\n[event]\nkind = \"issue_comment.created\"\ncomment = {comment}\n[expect]\n"
    ))
    .unwrap();
    for on in [As::Github, As::Jira] {
        let comments = planned_comments(&f, on);
        assert_eq!(comments.keys().collect::<Vec<_>>(), ["reply-7"], "{on:?}");
        let reply = &comments["reply-7"];
        let limit = CommentLimit::of(if on == As::Github { rollgate::model::TrackerKind::Github } else { rollgate::model::TrackerKind::Jira });
        assert!(limit.size(reply) <= limit.max(), "{on:?}: {} over {}", limit.size(reply), limit.max());
        assert_eq!(reply.lines().filter(|l| l.starts_with('❓') || l.starts_with('❌')).count(), 10, "{reply}");
        assert!(reply.ends_with("… and 140 more lines."), "{reply}");
    }
}

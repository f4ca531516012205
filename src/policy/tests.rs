//! The sandbox and the loader, on policy folders written for each test.

use super::*;
use crate::model::{Actor, DeliveryId, IssueKey};

fn folder(rules: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vocabulary.toml"),
        "[github.fields.lane]\nA = \"lane/A\"\nB = \"lane/B\"\n[github.flags]\nhot = \"hot\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    for (name, body) in rules {
        std::fs::write(dir.path().join("rules").join(name), body).unwrap();
    }
    dir
}

fn event() -> Event {
    let now = Utc::now();
    Event {
        delivery: DeliveryId("d".into()),
        kind: "issues.opened".into(),
        issue: IssueSnapshot {
            key: IssueKey::github("o/r", 1),
            title: "t".into(),
            body: String::new(),
            url: String::new(),
            open: true,
            state_reason: None,
            author: "a".into(),
            labels: vec![],
            assignees: vec![],
            created_at: now,
            updated_at: now,
            closed_at: None,
            native: None,
            partial: false,
        },
        actor: Actor { login: "a".into(), is_bot: false },
        label: None,
        comment: None,
        occurred_at: now,
        received_at: now,
    installation: None,
    changes: Vec::new(),
    taken_in_by: None,
    }
}

fn run(set: &PolicySet) -> Result<Decision, EvalError> {
    run_with(set, &PolicyConfig::default())
}

fn run_with(set: &PolicySet, config: &PolicyConfig) -> Result<Decision, EvalError> {
    let e = event();
    let n = Normalized::default();
    let facts = EventFacts::default();
    set.evaluate(&Input {
        issue: &e.issue,
        normalized: &n,
        event: &e,
        facts: &facts,
        before: None,
        first_seen: true,
        history: &[],
        recent: &[],
        config,
        now: Utc::now(),
    })
}

#[test]
fn rules_run_in_order_and_see_what_earlier_rules_decided() {
    let dir = folder(&[
        ("10-a.rhai", "fn decide(issue, event, ctx) { #{ set: #{ lane: \"B\" }, why: \"first\" } }"),
        ("20-b.rhai", "fn decide(issue, event, ctx) { if issue.fields.lane == \"B\" { #{ flags: #{ hot: true }, why: \"saw B\" } } }"),
    ]);
    let d = run(&PolicySet::load(dir.path()).unwrap()).unwrap();
    assert_eq!(d.fields["lane"], Some("B".into()));
    assert_eq!(d.flags["hot"], true);
    assert_eq!(d.why, vec!["10-a: first", "20-b: saw B"]);
}

#[test]
fn an_endless_loop_deep_recursion_and_huge_allocations_are_stopped() {
    let cases = [
        ("loop", "fn decide(issue, event, ctx) { loop { } }", "operations"),
        ("recurse", "fn f(n) { f(n + 1) }\nfn decide(issue, event, ctx) { f(0) }", "stack overflow"),
        ("string", "fn decide(issue, event, ctx) { let s = \"x\"; loop { s += s; } }", "string"),
        ("array", "fn decide(issue, event, ctx) { let a = []; loop { a.push(1); } }", "array"),
        ("map", "fn decide(issue, event, ctx) { let m = #{}; for i in 0..20000 { m[i.to_string()] = 0; } #{ why: m } }", "map"),
    ];
    for (name, body, needle) in cases {
        let dir = folder(&[("10-x.rhai", body)]);
        let err = run(&PolicySet::load(dir.path()).unwrap()).expect_err(name);
        assert_eq!(err.rule, "10-x");
        assert!(err.message.to_lowercase().contains(needle), "{name}: {}", err.message);
    }
}

#[test]
fn policies_cannot_import_files_or_eval() {
    let dir = folder(&[("10-x.rhai", "fn decide(issue, event, ctx) { eval(\"1\") }")]);
    assert!(PolicySet::load(dir.path()).is_err());
    let dir = folder(&[("10-x.rhai", "import \"/etc/passwd\" as p;\nfn decide(issue, event, ctx) { }")]);
    let err = PolicySet::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("10-x.rhai"), "{err}");
}

#[test]
fn compile_errors_name_file_line_and_column_with_the_source_line() {
    let dir = folder(&[("10-x.rhai", "fn decide(issue, event, ctx) {\n    let x = ;\n}\n")]);
    let err = PolicySet::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("10-x.rhai:2:"), "{err}");
    assert!(err.contains("let x = ;"), "{err}");
}

#[test]
fn a_rule_without_the_hook_or_returning_nonsense_is_refused() {
    let dir = folder(&[("10-x.rhai", "fn other(a) { }")]);
    assert!(PolicySet::load(dir.path()).unwrap_err().to_string().contains("fn decide"));
    let dir = folder(&[("10-x.rhai", "fn decide(issue, event, ctx) { #{ sets: #{} } }")]);
    assert!(run(&PolicySet::load(dir.path()).unwrap()).unwrap_err().message.contains("unknown key `sets`"));
    let dir = folder(&[("10-x.rhai", "fn decide(issue, event, ctx) { #{ set: #{ lane: \"Z\" } } }")]);
    assert!(run(&PolicySet::load(dir.path()).unwrap()).unwrap_err().message.contains("not a value of lane"));
}

#[test]
fn the_version_changes_with_any_policy_file() {
    let dir = folder(&[("10-a.rhai", "fn decide(issue, event, ctx) { }")]);
    let v1 = PolicySet::load(dir.path()).unwrap().version.clone();
    assert_eq!(PolicySet::load(dir.path()).unwrap().version, v1);
    std::fs::write(dir.path().join("rules/10-a.rhai"), "fn decide(issue, event, ctx) { () }").unwrap();
    assert_ne!(PolicySet::load(dir.path()).unwrap().version, v1);
}

#[test]
fn the_shipped_pack_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    if let Err(e) = PolicySet::load(&dir) {
        panic!("{e}");
    }
}

/// One compiled set, two calendars: the date functions and `ctx.config.timezone` follow the
/// calendar each evaluation brings, which is how fixtures run on their own while the service
/// runs on the deployment's.
#[test]
fn date_functions_use_the_calendar_of_each_evaluation() {
    let dir = folder(&[(
        "10-x.rhai",
        "fn decide(issue, event, ctx) { #{ why: [local_date(\"2026-11-23T20:00:00Z\"), at_time(\"2026-11-24\", \"09:00\"), ctx.config.timezone] } }",
    )]);
    let set = PolicySet::load(dir.path()).unwrap();
    let kolkata = PolicyConfig { calendar: std::sync::Arc::new(Calendar::new(chrono_tz::Asia::Kolkata, &[], &[]).unwrap()), ..Default::default() };
    assert_eq!(run(&set).unwrap().why, ["10-x: 2026-11-23", "10-x: 2026-11-24T09:00:00+00:00", "10-x: UTC"]);
    assert_eq!(run_with(&set, &kolkata).unwrap().why, ["10-x: 2026-11-24", "10-x: 2026-11-24T03:30:00+00:00", "10-x: Asia/Kolkata"]);
    assert_eq!(run(&set).unwrap().why[0], "10-x: 2026-11-23", "no calendar stays behind in the set");

    // Outside an evaluation there is no calendar: a top-level date call refuses the folder.
    let dir = folder(&[("10-x.rhai", "let today = local_date(\"2026-11-23T20:00:00Z\");\nfn decide(issue, event, ctx) { }")]);
    let err = PolicySet::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("dates are known inside `decide` only"), "{err}");
}

#[test]
fn templates_escape_every_value_and_rules_can_neutralise_text_themselves() {
    let hostile = "x</details>\n- [x] y <!-- box:a --> @org/team `z`";
    let template = "{# a template #}\n#### {{ title }}\n- [ ] real {{ none_given }}<!-- box:{{ id }} -->\n```text\nHi {{ title|fenced }}\n```\n{{ title|code }} {{ built|safe }} {{ names|join(\", \") }} {{ missing or \"`<blank>`\"|safe }}";
    let rule = "fn decide(issue, event, ctx) {\n\
        let body = render(\"t\", #{ title: issue.title, id: \"real\", built: \"**bold**\", names: [\"@a\", \"<b>\"], none_given: () });\n\
        #{ comments: #{ t: body, r: inline(issue.title) + \" \" + code_span(issue.title) + \" \" + one_line(issue.title) + \"|\" + inline(()) + \"|\" } }\n\
    }";
    let dir = folder(&[("10-x.rhai", rule)]);
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(dir.path().join("templates/t.md"), template).unwrap();
    let set = PolicySet::load(dir.path()).unwrap();
    let mut e = event();
    e.issue.title = hostile.into();
    let n = Normalized::default();
    let facts = EventFacts::default();
    let input = Input {
        issue: &e.issue,
        normalized: &n,
        event: &e,
        facts: &facts,
        before: None,
        first_seen: true,
        history: &[],
        recent: &[],
        config: &PolicyConfig::default(),
        now: Utc::now(),
    };
    let d = set.evaluate(&input).unwrap();
    let inline = "x&lt;/details&gt; - \\[x\\] y &lt;!-- box:a --&gt; @\u{200D}org/team \\`z\\`";
    let t = &d.comments["t"];
    assert!(t.starts_with(&format!("#### {inline}\n- [ ] real None<!-- box:real -->\n")), "{t}");
    assert!(t.contains("\nHi x</details> - [x] y <!-- box:a --> @org/team `z`\n"), "{t}");
    assert!(t.contains("`` x</details> - [x] y <!-- box:a --> @org/team `z` `` **bold** @\u{200D}a, &lt;b&gt; `<blank>`"), "{t}");
    assert_eq!(crate::policy::boxes::boxes(t).into_keys().collect::<Vec<_>>(), ["real"]);
    let r = &d.comments["r"];
    assert!(r.starts_with(inline) && r.ends_with(" x</details> - [x] y <!-- box:a --> @org/team `z`||"), "{r}");
}

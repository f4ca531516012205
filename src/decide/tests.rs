//! `decide` on the shipped pack and real GitHub payloads: no store, no tracker, no clock.

use super::*;
use crate::ingest::{github, Parsed};
use crate::model::DeliveryId;
use crate::policy::PolicyRoles;
use serde_json::{json, Value};
use std::path::Path;

const ME: &str = "rollgate[bot]";

fn pack() -> rhai::Shared<PolicySet> {
    PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
}

fn config() -> PolicyConfig {
    PolicyConfig { roles: PolicyRoles { pm: vec!["priya".into()], qa_lead: vec![] }, calendar: Default::default() }
}

/// A fixture payload of tests/fixtures/github with the issue's labels, the event's label and
/// the sender put in.
fn event(file: &str, labels: &[&str], label: Option<&str>, sender: &str) -> Event {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github").join(file);
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["issue"]["labels"] = labels.iter().map(|l| json!({ "name": l })).collect();
    if let Some(l) = label {
        v["label"] = json!({ "name": l });
    }
    v["sender"]["login"] = json!(sender);
    let body = serde_json::to_vec(&v).unwrap();
    match github::parse("issues", DeliveryId("test".into()), &body, chrono::Utc::now()).unwrap() {
        Parsed::Event(e) => *e,
        _ => panic!("{file} is not an issue event"),
    }
}

fn stored(event: &Event, labels: &[&str]) -> IssueSnapshot {
    IssueSnapshot { labels: labels.iter().map(|l| l.to_string()).collect(), ..event.issue.clone() }
}

fn run(set: &PolicySet, event: &Event, stored: Option<&IssueSnapshot>) -> Outcome {
    let config = config();
    let me = Me::new(Some(ME.into()));
    decide(
        set,
        Inputs {
            event,
            changes: &event.stated(),
            stored,
            bot_comments: &BTreeMap::new(),
            history: Vec::new(),
            roles: config.roles.of_login(&event.actor.login),
            recent: &[],
            comment_acted: false,
            config: &config,
            me: &me,
            now: event.occurred_at,
        },
    )
    .unwrap()
}

fn added(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .flat_map(|e| match e {
            Effect::AddLabels { labels } => labels.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn removed(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::RemoveLabel { label } => Some(label.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_bug_gets_its_default_lane_rollout_and_status() {
    let set = pack();
    let e = event("issues.opened.json", &["type/bug", "scope/single-client"], None, "dev1");
    let o = run(&set, &e, None);
    let mut want = added(&o.effects);
    want.sort();
    assert_eq!(want, ["lane/B", "rollout/1-direct", "status/planning"], "{:?}", o.decision.why);
    assert!(removed(&o.effects).is_empty());
    assert!(o.refused.is_empty());
    assert_eq!(o.decision.fields.get("lane"), Some(&Some("B".to_string())));
    // The event's own changes, as the person made them; nothing refused.
    assert!(o.history.iter().any(|h| h.field == "type" && h.to.as_deref() == Some("bug") && h.actor == "dev1" && h.source == Source::Tracker));
    assert!(o.history.iter().all(|h| h.refused.is_none()));
    // Planned on the issue as the event left it, which the view still is.
    assert_eq!(o.view.labels, ["type/bug", "scope/single-client"]);
    assert_eq!(o.planned.labels, o.view.labels);
}

#[test]
fn a_refused_change_is_put_back_and_marked_refused() {
    let set = pack();
    let before = ["type/bug", "lane/B", "rollout/2-notified", "status/planning"];
    let mut after = before.to_vec();
    after.push("rollout/4-piloted");
    let e = event("issues.labeled.json", &after, Some("rollout/4-piloted"), "dev1");
    let s = stored(&e, &before);
    let mut o = run(&set, &e, Some(&s));
    assert!(o.refused.contains("rollout"), "{:?}", o.decision.why);
    let change = o.history.iter().find(|h| h.field == "rollout").expect("the rollout change is in the history");
    assert_eq!((change.from.as_deref(), change.to.as_deref()), (Some("2"), Some("4")));
    assert!(change.refused.as_deref().is_some_and(|r| r.contains("R8")), "{change:?}");
    // The view carries both labels until the tracker is told: the new one goes.
    assert!(o.view.has_label("rollout/2-notified") && o.view.has_label("rollout/4-piloted"));
    assert!(added(&o.effects).is_empty(), "{:?}", o.effects);
    assert_eq!(removed(&o.effects), ["rollout/4-piloted"]);
    assert!(o.effects.iter().any(|e| matches!(e, Effect::UpsertComment { tag, .. } if tag == "role-refused")));

    // The tracker already holds the old value again (someone put it back since): the revert,
    // planned against that read, changes no label.
    let fresh = stored(&e, &before);
    replan_refused(&mut o, &fresh, &set.vocabulary, &BTreeMap::new());
    assert!(added(&o.effects).is_empty() && removed(&o.effects).is_empty(), "{:?}", o.effects);
    assert!(o.effects.iter().any(|e| matches!(e, Effect::UpsertComment { tag, .. } if tag == "role-refused")));
}

#[test]
fn the_echo_of_rollgates_own_change_plans_nothing() {
    let set = pack();
    let now = ["type/bug", "scope/single-client", "lane/B", "rollout/1-direct", "status/planning"];
    // The store already follows what rollgate applied; the labeled delivery comes back.
    let e = event("issues.labeled.json", &now, Some("lane/B"), ME);
    let s = stored(&e, &now);
    let o = run(&set, &e, Some(&s));
    assert!(o.effects.is_empty(), "{:?}", o.effects);
    assert!(o.refused.is_empty());
    assert!(o.history.iter().all(|h| h.source == Source::Rollgate), "{:?}", o.history);
}

#[test]
fn a_comment_revision_acted_on_asks_for_nothing_again() {
    let set = pack();
    let e = event("issues.opened.json", &["type/bug", "scope/single-client"], None, "dev1");
    let me = Me::new(Some(ME.into()));
    assert!(!wants_recent(&set, &e, &BTreeMap::new(), &me, false), "no comment, no /explain");
    assert_eq!(comment_revision(&e, &me), None);
}

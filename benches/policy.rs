//! One event through the whole shipped policy pack: reading the event against the stored issue,
//! every rule, and the plan: `decide`, as the worker calls it between its store reads and its writes.
//! `cargo bench --bench policy`; the figures are in BENCHMARKS.md.

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use rollgate::model::{Actor, DeliveryId, Event, IssueKey, IssueSnapshot};
use rollgate::policy::{PolicyConfig, PolicyRoles, PolicySet};
use rollgate::model::StatedChange;
use rollgate::decide::facts::Me;
use rollgate::decide::{decide, Inputs};
use rollgate::model::{HistoryEntry, Source};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn snapshot(labels: &[&str]) -> IssueSnapshot {
    IssueSnapshot {
        key: IssueKey::github("octo/app", 42),
        title: "Real-time alerts on WhatsApp".into(),
        body: "### Affected clients\n\nAdani Cement, Adani Hazira\n".into(),
        url: "https://github.com/octo/app/issues/42".into(),
        open: true,
        state_reason: None,
        author: "reporter".into(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
        assignees: vec![],
        created_at: at("2026-11-17T09:00:00Z"),
        updated_at: at("2026-11-24T10:00:00Z"),
        closed_at: None,
        native: None,
        partial: false,
    }
}

/// A realistic history: an item planned, decided and built over a week.
fn history() -> Vec<HistoryEntry> {
    let mut h = Vec::new();
    for (i, (field, to)) in [
        ("type", "bug"),
        ("scope", "cross-client"),
        ("status", "planning"),
        ("lane", "B"),
        ("rollout", "2"),
        ("rollout.set-by", "default"),
        ("decision", "accept"),
        ("decision.sprint", "2026-W48"),
        ("status", "decided"),
        ("status", "in-dev"),
    ]
    .iter()
    .enumerate()
    {
        h.push(HistoryEntry {
            at: at("2026-11-17T09:00:00Z") + chrono::Duration::hours(i as i64 * 6),
            field: field.to_string(),
            from: None,
            to: Some(to.to_string()),
            actor: "priya".into(),
            source: Source::Tracker,
            refused: None,
        });
    }
    h
}

fn run(c: &mut Criterion, name: &str, set: &PolicySet, before: &[&str], after: &[&str], label: &str) {
    let config = PolicyConfig { roles: PolicyRoles { pm: vec!["priya".into()], qa_lead: vec!["quinn".into()] }, calendar: Default::default() };
    let stored = snapshot(before);
    let event = Event {
        delivery: DeliveryId("bench".into()),
        kind: "issues.labeled".into(),
        issue: snapshot(after),
        actor: Actor { login: "quinn".into(), is_bot: false },
        label: Some(label.into()),
        comment: None,
        occurred_at: at("2026-11-24T10:00:00Z"),
        received_at: at("2026-11-24T10:00:01Z"),
        installation: None,
        changes: Vec::new(),
        taken_in_by: None,
    };
    // What the tracker states: the labels that went, then the ones that came (the event's last).
    let mut changes: Vec<StatedChange> =
        before.iter().filter(|l| !after.contains(l)).map(|l| StatedChange::LabelRemoved { label: l.to_string() }).collect();
    let mut added: Vec<&&str> = after.iter().filter(|l| !before.contains(l)).collect();
    added.sort_by_key(|l| **l == label);
    changes.extend(added.into_iter().map(|l| StatedChange::LabelAdded { label: l.to_string() }));
    let me = Me::new(Some("rollgate[bot]".into()));
    let stored_history = history();
    let bot_comments = BTreeMap::new();
    let now = at("2026-11-24T10:00:02Z");
    c.bench_function(name, |b| {
        b.iter(|| {
            let outcome = decide(
                set,
                Inputs {
                    event: black_box(&event),
                    changes: &changes,
                    stored: Some(&stored),
                    bot_comments: &bot_comments,
                    history: stored_history.clone(),
                    roles: vec!["qa_lead".into()],
                    recent: &[],
                    comment_acted: false,
                    config: &config,
                    me: &me,
                    now,
                },
            )
            .unwrap();
            black_box(outcome.effects)
        })
    });
}

fn bench(c: &mut Criterion) {
    let set = PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
    // A QA lead flags a lane-B bug as needing a demo: R6 promotes it, R5 comments.
    let base = ["type/bug", "scope/cross-client", "lane/B", "rollout/2-notified", "status/in-dev", "decision/accept"];
    let mut flagged = base.to_vec();
    flagged.push("needs/demo");
    run(c, "labeled event, promotion (R5/R6)", &set, &base, &flagged, "needs/demo");
    // Dev release of a type-3 item: the checklist with three pre-filled templates is rendered.
    let t3 = ["type/enhancement", "scope/cross-client", "lane/A", "rollout/3-demoed", "status/in-dev", "decision/accept"];
    let mut released = t3.to_vec();
    released.retain(|l| *l != "status/in-dev");
    released.push("status/dev-released");
    run(c, "dev-released event, checklist and templates (R12/R13)", &set, &t3, &released, "status/dev-released");
}

criterion_group!(benches, bench);
criterion_main!(benches);

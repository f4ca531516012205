//! The monthly report against a history whose numbers were worked out by hand.

use chrono::{DateTime, Utc};
use rollgate::clock::Calendar;
use rollgate::model::{IssueKey, IssueSnapshot};
use rollgate::report::{figures, metrics, MetricsFile, Month};
use rollgate::model::{HistoryEntry, Source};
use std::path::Path;

fn at(s: &str) -> DateTime<Utc> {
    format!("{s}T10:00:00Z").parse().unwrap()
}

fn h(day: &str, field: &str, to: &str) -> HistoryEntry {
    HistoryEntry { at: at(day), field: field.into(), from: None, to: Some(to.into()), actor: "pm".into(), source: Source::Tracker, refused: None }
}

fn snapshot(n: u64) -> IssueSnapshot {
    IssueSnapshot {
        key: IssueKey::github("octo/app", n),
        title: format!("item {n}"),
        body: String::new(),
        url: format!("https://github.com/octo/app/issues/{n}"),
        open: false,
        state_reason: None,
        author: "a".into(),
        labels: vec![],
        assignees: vec![],
        created_at: at("2026-10-01"),
        updated_at: at("2026-11-30"),
        closed_at: None,
        native: None,
        partial: false,
    }
}

/// A release as the rules record it: type, dev release, release, what it shipped with.
fn release(rollout: &str, dev: &str, released: &str, artifacts: &str) -> Vec<HistoryEntry> {
    vec![
        h(dev, "rollout", rollout),
        h(dev, "status", "dev-released"),
        h(released, "status", "released"),
        h(released, "release.artifacts", artifacts),
        h(released, "release.rollout", rollout),
    ]
}

#[tokio::test]
async fn the_report_equals_a_hand_computation() {
    let dir = tempfile::tempdir().unwrap();
    let store = rollgate::store::open(&format!("sqlite://{}", dir.path().join("r.db").display())).await.unwrap();
    // A: type 1, Mon 2 Nov -> Tue 3 Nov: 1 business day.
    store.import(&snapshot(1), &release("1", "2026-11-02", "2026-11-03", "complete"), None).await.unwrap();
    // B: type 3, Tue 3 -> Tue 10 Nov: 5 days; its type was assigned late (M1 miss).
    let mut b = release("3", "2026-11-03", "2026-11-10", "complete");
    b.push(h("2026-11-03", "rollout.assigned-late", "in-dev"));
    store.import(&snapshot(2), &b, None).await.unwrap();
    // C: type 3, Mon 16 -> Mon 30 Nov: 10 days, shipped without its sales kit.
    store.import(&snapshot(3), &release("3", "2026-11-16", "2026-11-30", "missing: sales-kit"), None).await.unwrap();
    // D: type 4, Mon 2 -> Fri 20 Nov: 14 days, piloted; an escalation 2 days after release and
    // a rollback 5 days after (both inside the 7-day window).
    let mut d = release("4", "2026-11-02", "2026-11-20", "complete");
    d.push(h("2026-11-12", "pilot.retro", "go"));
    d.push(h("2026-11-22", "flags.escalated", "on"));
    d.push(h("2026-11-25", "flags.rolled-back", "on"));
    store.import(&snapshot(4), &d, None).await.unwrap();
    // E: type 2 in October: only in the trend.
    store.import(&snapshot(5), &release("2", "2026-10-28", "2026-10-30", "complete"), None).await.unwrap();

    let cfg = MetricsFile::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
    let cal = Calendar::default();
    let months = figures(store.as_ref(), &cal, &cfg, "2026-11".parse::<Month>().unwrap()).await.unwrap();
    assert_eq!(months.len(), 6);
    assert_eq!(months.last().unwrap().releases.len(), 4);
    let m = metrics(&cfg, &months);
    let get = |id: &str| m.iter().find(|x| x.id == id).unwrap();
    let now = |id: &str| get(id).trend.last().unwrap().1;
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 0.05);

    // By hand: M1 3 of 4 on time = 75% (miss, target 90%): B.
    assert!(close(now("M1"), 75.0), "{:?}", now("M1"));
    assert_eq!((get("M1").pass, get("M1").misses.iter().map(|(k, _)| k.number()).collect::<Vec<_>>()), (Some(false), vec![2]));
    // M2: type 3+ are B, C, D; complete B and D: 66.7% (miss): C.
    assert!(close(now("M2"), 66.7));
    assert_eq!(get("M2").misses.iter().map(|(k, _)| k.number()).collect::<Vec<_>>(), vec![3]);
    // M3: D piloted: 100% (pass).
    assert!(close(now("M3"), 100.0) && get("M3").pass == Some(true));
    // M4: A took 1 day (pass). M5: no type-2 release in November. M6: (5 + 10) / 2 = 7.5 (miss: C).
    assert!(close(now("M4"), 1.0) && get("M4").pass == Some(true));
    assert_eq!((now("M5"), get("M5").pass), (None, None));
    assert!(close(now("M6"), 7.5) && get("M6").pass == Some(false));
    assert_eq!(get("M6").misses.iter().map(|(k, _)| k.number()).collect::<Vec<_>>(), vec![3]);
    // M7: D took 14 days, within 1-3 weeks (pass).
    assert!(close(now("M7"), 14.0) && get("M7").pass == Some(true));
    // M8: 1 escalation against 0 in the months before (miss). M9: 1 of 4 rolled back = 25% (miss).
    assert!(close(now("M8"), 1.0) && get("M8").pass == Some(false));
    assert!(close(now("M9"), 25.0) && get("M9").pass == Some(false));
    // October's type-2 release (2 days) is in M5's trend.
    assert!(close(get("M5").trend[4].1, 2.0), "{:?}", get("M5").trend);

    let (title, body) = rollgate::report::monthly(store.as_ref(), &cal, &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"), "2026-11".parse().unwrap()).await.unwrap();
    assert_eq!(title, "Rollout metrics — 2026-11");
    assert!(body.contains("| M1 | Releases with the rollout type assigned at planning | ≥ 90% | 75.0% | ❌ miss |"), "{body}");
    assert!(body.contains("```mermaid\nxychart-beta"), "{body}");
    assert!(body.contains("[octo/app#3](https://github.com/octo/app/issues/3): released without every required artifact"), "{body}");
}

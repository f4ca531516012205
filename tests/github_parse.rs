//! Every GitHub fixture through the parser: what rollgate keeps of a real delivery.

use chrono::{TimeZone, Utc};
use rollgate::ingest::{github, Parsed};
use rollgate::model::DeliveryId;

fn parse(name: &str) -> Parsed {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github").join(name);
    let body = std::fs::read(path).unwrap();
    let event = name.split('.').next().unwrap();
    let received = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
    github::parse(event, DeliveryId("delivery-1".into()), &body, received).unwrap()
}

#[test]
fn issue_and_comment_deliveries_become_events() {
    for name in [
        "issues.opened.json",
        "issues.opened.github-app.json",
        "issues.edited.json",
        "issues.edited.title-and-body.json",
        "issues.labeled.json",
        "issues.labeled.github-app.json",
        "issues.unlabeled.json",
        "issues.closed.json",
        "issues.reopened.json",
        "issues.assigned.json",
        "issue_comment.created.json",
        "issue_comment.created.with-installation.json",
        "issue_comment.edited.json",
    ] {
        let Parsed::Event(event) = parse(name) else { panic!("{name} should be an event") };
        insta::assert_json_snapshot!(name, event);
    }
}

#[test]
fn the_changed_label_and_the_trackers_time_are_kept() {
    let Parsed::Event(unlabeled) = parse("issues.unlabeled.json") else { panic!() };
    // The real payload still lists the removed label; the event names it as the change.
    assert_eq!(unlabeled.label.as_deref(), Some("bug"));
    assert!(unlabeled.issue.labels.contains(&"bug".to_string()));
    let Parsed::Event(closed) = parse("issues.closed.json") else { panic!() };
    assert_eq!(Some(closed.occurred_at), closed.issue.closed_at);
    assert_eq!(closed.issue.state_reason.as_deref(), Some("completed"));
    let Parsed::Event(edited) = parse("issue_comment.edited.json") else { panic!() };
    assert!(edited.comment.unwrap().previous_body.is_some());
    let Parsed::Event(app) = parse("issues.labeled.github-app.json") else { panic!() };
    assert!(app.installation.is_some());
}

#[test]
fn ping_and_unhandled_deliveries_are_not_events() {
    assert!(matches!(parse("ping.json"), Parsed::Ping));
    // A comment on a pull request: the issues API carries it, the playbook does not govern it.
    for name in ["projects_v2_item.created.json", "projects_v2_item.edited.json", "issue_comment.edited.github-app.json"] {
        assert!(matches!(parse(name), Parsed::Ignored(_)), "{name}");
    }
}

#[test]
fn broken_bodies_are_refused_with_a_short_reason() {
    let received = Utc::now();
    for body in [&b"not json"[..], b"{}", b"{\"action\":\"opened\"}", b"{\"action\":\"opened\",\"issue\":{\"number\":\"x\"}}"] {
        let err = github::parse("issues", DeliveryId("d".into()), body, received).unwrap_err();
        assert!(err.0.starts_with("unreadable payload"), "{err}");
        assert!(err.0.len() < 260, "{err}");
    }
}

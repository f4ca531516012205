//! Jira webhook bodies, as `POST /webhooks/jira` hands them to the parser.
//!
//! The mapping is the default one with its custom fields resolved to the ids the integration
//! tests use (tests/jira_e2e.rs), so the custom-field, affected-clients and changelog paths
//! run too; with an empty field list they would never be reached.
//!
//! Beyond "no panic": a refusal's reason is short (it is sent back and logged), and an event
//! survives the inbox (its JSON and its issue key read back, as the worker reads them).
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use rollgate::config::JiraMapping;
use rollgate::ingest::jira::{parse, JiraFields};
use rollgate::ingest::Parsed;
use rollgate::model::{DeliveryId, Event, IssueKey};
use std::sync::OnceLock;

const MAX_REASON_CHARS: usize = 240;

fn fields() -> &'static JiraFields {
    static FIELDS: OnceLock<JiraFields> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let list: Vec<(String, String)> = [
            ("customfield_10101", "Lane"),
            ("customfield_10102", "Rollout Type"),
            ("customfield_10103", "Client Scope"),
            ("customfield_10104", "Decision"),
            ("customfield_10105", "Affected Clients"),
        ]
        .iter()
        .map(|(id, name)| (id.to_string(), name.to_string()))
        .collect();
        let (fields, missing) = JiraFields::resolve(JiraMapping::default(), &list, Some("bot-account".into()));
        assert!(missing.is_empty(), "unresolved: {missing:?}");
        fields
    })
}

fn received_at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_000_000, 0).expect("a valid time")
}

fuzz_target!(|data: &[u8]| {
    match parse(data, DeliveryId("d-fuzz".into()), received_at(), fields()) {
        Ok(Parsed::Event(e)) => {
            let key = &e.issue.key;
            assert_eq!(key.to_string().parse::<IssueKey>().as_ref(), Ok(key), "issue key does not read back");
            let stored = serde_json::to_string(&e).expect("an event serializes");
            let read: Event = serde_json::from_str(&stored).expect("the stored event reads back");
            assert_eq!(read, *e);
        }
        Ok(Parsed::Ping) => panic!("Jira has no ping"),
        Ok(Parsed::Ignored(_)) => {}
        Err(e) => assert!(e.0.chars().count() <= MAX_REASON_CHARS, "reason too long: {} chars", e.0.chars().count()),
    }
});

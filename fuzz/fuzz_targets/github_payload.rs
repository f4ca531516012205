//! GitHub webhook bodies, as `POST /webhooks/github` hands them to the parser once the
//! signature matched. The first byte picks the `X-GitHub-Event` header (or the REST reader
//! `issue_from_rest`); the rest is the body.
//!
//! Beyond "no panic", it checks what the webhook relies on:
//! - a refusal's reason is short (it is sent back and logged, and must not carry the payload);
//! - an event is one of the kinds asked for, and survives the inbox: the stored JSON reads back
//!   to the same event (the worker reads every pending row through `IssueKey`'s parser, so a
//!   key that does not read back would stall the queue).
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use rollgate::ingest::github::{issue_from_rest, parse};
use rollgate::ingest::Parsed;
use rollgate::model::{DeliveryId, Event, IssueKey};

/// The events rollgate handles, the one it answers (ping) and a few it ignores. `None` is
/// the REST reader.
const EVENTS: &[Option<&str>] = &[
    Some("issues"),
    Some("issue_comment"),
    Some("ping"),
    Some("push"),
    Some("pull_request"),
    Some("projects_v2_item"),
    None,
];

/// "unreadable payload: " plus at most 200 characters of serde's message.
const MAX_REASON_CHARS: usize = 240;

fn received_at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_000_000, 0).expect("a valid time")
}

fn survives_the_inbox(event: &Event) {
    let key = &event.issue.key;
    assert_eq!(key.to_string().parse::<IssueKey>().as_ref(), Ok(key), "issue key does not read back");
    let stored = serde_json::to_string(event).expect("an event serializes");
    let read: Event = serde_json::from_str(&stored).expect("the stored event reads back");
    assert_eq!(&read, event);
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    match EVENTS[pick as usize % EVENTS.len()] {
        Some(event) => match parse(event, DeliveryId("d-fuzz".into()), body, received_at()) {
            Ok(Parsed::Event(e)) => {
                assert!(event == "issues" || event == "issue_comment", "{event} became an event");
                assert!(e.kind.as_str().starts_with(&format!("{event}.")), "kind {} for {event}", e.kind);
                assert_eq!(e.delivery.as_str(), "d-fuzz");
                assert_eq!(e.received_at, received_at());
                survives_the_inbox(&e);
            }
            Ok(Parsed::Ping) => assert_eq!(event, "ping"),
            Ok(Parsed::Ignored(_)) => {}
            Err(e) => assert!(e.0.chars().count() <= MAX_REASON_CHARS, "reason too long: {} chars", e.0.chars().count()),
        },
        None => {
            let Ok(text) = std::str::from_utf8(body) else { return };
            match issue_from_rest("octo-org/octo-repo", text) {
                Ok(snapshot) => {
                    let key = &snapshot.key;
                    assert_eq!(key.to_string().parse::<IssueKey>().as_ref(), Ok(key));
                }
                Err(e) => assert!(e.0.chars().count() <= MAX_REASON_CHARS),
            }
        }
    }
});

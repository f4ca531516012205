//! The HTTP edge per tracker: check the signature, turn the payload into our `Event`.

pub mod github;
pub mod jira;
pub mod signature;

/// What a delivery turned out to be, before anything is stored.
#[derive(Debug)]
pub enum Parsed {
    /// An event rollgate processes.
    Event(Box<crate::model::Event>),
    /// GitHub's ping: answered 200, nothing stored.
    Ping,
    /// A well-formed delivery of a kind rollgate does not handle: acknowledged, not stored.
    Ignored(String),
}

/// A body we could not read. The message is short and safe to send back: it names the
/// problem, never echoes the payload.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// At most `max` characters of `text`: what a reply or a log line may quote of a payload.
pub(crate) fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// `text` quoted with its control characters escaped (`"TES-41\u{7f}…"`), clipped to `max`
/// characters afterwards: escaping first would let each control character grow to six
/// characters past the clip (found by the `jira_payload` fuzz target: a 388-character reason).
pub(crate) fn quoted(text: &str, max: usize) -> String {
    let escaped = format!("{text:?}");
    if escaped.chars().count() <= max {
        return escaped;
    }
    format!("{}…\"", clip(&escaped, max.saturating_sub(2)))
}

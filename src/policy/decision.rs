//! What the rules want the issue to look like. Built up rule by rule; the planner turns it into
//! effects by diffing it against the issue as it is.

use super::vocabulary::Vocabulary;
use rhai::{Dynamic, Map};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Decision {
    /// Desired field values; `None` clears the field.
    pub fields: BTreeMap<String, Option<String>>,
    /// Desired flags: on or off.
    pub flags: BTreeMap<String, bool>,
    /// Bot comments by purpose tag: the body each should have.
    pub comments: BTreeMap<String, String>,
    /// Facts to keep in the history (field, value).
    pub records: Vec<(String, String)>,
    /// Desired open (true) or closed (false) state; `None` leaves it.
    pub open: Option<bool>,
    /// Changes the rules refused (reverted), with the reason: what `/api/v1/evaluate` and the
    /// fixtures call a block.
    pub blocks: Vec<String>,
    /// Which fields (and `state`, for open/closed) a blocking rule set back, with its first
    /// block: the change a person made there is recorded as refused, not as a transition.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub refusals: BTreeMap<String, String>,
    /// Timers to set (purpose -> when) or cancel (None): the rules are woken with a
    /// `timer.<purpose>` event at that time.
    pub timers: BTreeMap<String, Option<chrono::DateTime<chrono::Utc>>>,
    /// Why, rule by rule: what `/explain` and `rollgate explain` show.
    pub why: Vec<String>,
}

/// One rule's answer, read from the map its `decide` returned.
#[derive(Debug, Default)]
pub struct RuleOutput {
    pub fields: Vec<(String, Option<String>)>,
    pub flags: Vec<(String, bool)>,
    pub comments: Vec<(String, String)>,
    pub records: Vec<(String, String)>,
    pub open: Option<bool>,
    pub blocks: Vec<String>,
    pub timers: Vec<(String, Option<chrono::DateTime<chrono::Utc>>)>,
    pub why: Vec<String>,
}

const KEYS: &str = "set, flags, comments, record, open, block, timers, why";

/// Reads a rule's return value. Anything unexpected is an error naming the key, so a typo in a
/// policy fails its fixtures instead of being silently ignored.
pub fn read_output(value: Dynamic, vocab: &Vocabulary) -> Result<RuleOutput, String> {
    let mut out = RuleOutput::default();
    if value.is_unit() {
        return Ok(out);
    }
    let map = value
        .try_cast::<Map>()
        .ok_or_else(|| format!("decide must return a map ({KEYS}) or nothing"))?;
    for (key, v) in map {
        match key.as_str() {
            "set" => {
                for (field, value) in as_map(v, "set")? {
                    if !vocab.is_field(&field) {
                        return Err(format!("set.{field}: no such field in vocabulary.toml"));
                    }
                    let value = if value.is_unit() {
                        None
                    } else {
                        let s = value.to_string();
                        if vocab.field_label(&field, &s).is_none() {
                            return Err(format!("set.{field} = {s:?}: not a value of {field}"));
                        }
                        Some(s)
                    };
                    out.fields.push((field.to_string(), value));
                }
            }
            "flags" => {
                for (flag, on) in as_map(v, "flags")? {
                    if !vocab.is_flag(&flag) {
                        return Err(format!("flags.{flag}: no such flag in vocabulary.toml"));
                    }
                    let on = on.as_bool().map_err(|_| format!("flags.{flag} must be true or false"))?;
                    out.flags.push((flag.to_string(), on));
                }
            }
            "comments" => {
                for (tag, body) in as_map(v, "comments")? {
                    if tag.is_empty()
                        || tag.len() > 64
                        || !tag.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    {
                        return Err(format!("comments.{tag}: a tag is 1-64 of a-z, 0-9 and -"));
                    }
                    let body = body
                        .into_immutable_string()
                        .map_err(|_| format!("comments.{tag} must be a string"))?;
                    // No length check: the planner clips a comment to its tracker's limit
                    // (plan::clip), and the sandbox bounds a string's size.
                    out.comments.push((tag.to_string(), body.to_string()));
                }
            }
            "record" => {
                for (field, value) in as_map(v, "record")? {
                    out.records.push((field.to_string(), value.to_string()));
                }
            }
            "open" => {
                out.open = Some(v.as_bool().map_err(|_| "`open` must be true or false".to_string())?);
            }
            "block" => out.blocks.extend(strings(v)),
            "timers" => {
                for (purpose, at) in as_map(v, "timers")? {
                    if purpose.is_empty() || purpose.len() > 64 || purpose.contains('*') {
                        return Err(format!("timers.{purpose}: a purpose is 1-64 characters"));
                    }
                    let at = if at.is_unit() {
                        None
                    } else {
                        let text = at.to_string();
                        let t = chrono::DateTime::parse_from_rfc3339(&text)
                            .map_err(|_| format!("timers.{purpose} = {text:?}: not an RFC 3339 time (use at_time(date, \"HH:MM\"))"))?;
                        Some(t.with_timezone(&chrono::Utc))
                    };
                    out.timers.push((purpose.to_string(), at));
                }
            }
            "why" => out.why.extend(strings(v)),
            other => return Err(format!("unknown key `{other}` in the returned map (expected {KEYS})")),
        }
    }
    Ok(out)
}

/// A string, or an array of them (anything else is shown as text).
fn strings(v: Dynamic) -> Vec<String> {
    if v.is_array() {
        v.into_array().unwrap_or_default().into_iter().map(|i| i.to_string()).collect()
    } else if v.is_unit() {
        Vec::new()
    } else {
        vec![v.to_string()]
    }
}

fn as_map(v: Dynamic, name: &str) -> Result<Map, String> {
    v.try_cast::<Map>().ok_or_else(|| format!("`{name}` must be a map"))
}

//! What the rules want the issue to look like. Built up rule by rule; the planner turns it into
//! effects by diffing it against the issue as it is.

use super::vocabulary::Vocabulary;
use rhai::{Dynamic, Map};
use serde::Serialize;
use std::collections::BTreeMap;

/// GitHub refuses comments over 65,536 characters; keep room for the marker.
pub const MAX_COMMENT_CHARS: usize = 65_000;

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
    /// Why, rule by rule: what `/explain` and `rollgate explain` show.
    pub why: Vec<String>,
}

impl Decision {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.flags.is_empty() && self.comments.is_empty() && self.records.is_empty()
    }
}

/// One rule's answer, read from the map its `decide` returned.
#[derive(Debug, Default)]
pub struct RuleOutput {
    pub fields: Vec<(String, Option<String>)>,
    pub flags: Vec<(String, bool)>,
    pub comments: Vec<(String, String)>,
    pub records: Vec<(String, String)>,
    pub why: Vec<String>,
}

const KEYS: &str = "set, flags, comments, record, why";

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
                    if body.chars().count() > MAX_COMMENT_CHARS {
                        return Err(format!("comments.{tag} is longer than {MAX_COMMENT_CHARS} characters"));
                    }
                    out.comments.push((tag.to_string(), body.to_string()));
                }
            }
            "record" => {
                for (field, value) in as_map(v, "record")? {
                    out.records.push((field.to_string(), value.to_string()));
                }
            }
            "why" => {
                if v.is_array() {
                    for item in v.into_array().unwrap_or_default() {
                        out.why.push(item.to_string());
                    }
                } else if !v.is_unit() {
                    out.why.push(v.to_string());
                }
            }
            other => return Err(format!("unknown key `{other}` in the returned map (expected {KEYS})")),
        }
    }
    Ok(out)
}

fn as_map(v: Dynamic, name: &str) -> Result<Map, String> {
    v.try_cast::<Map>().ok_or_else(|| format!("`{name}` must be a map"))
}

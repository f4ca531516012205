//! Decision -> effects: only the difference between what the rules want and what the issue
//! holds. A redelivery, or the echo of the bot's own change, plans nothing.

pub mod clip;

use crate::model::{CommentId, IssueSnapshot};
use crate::policy::decision::Decision;
use crate::policy::vocabulary::{Normalized, Vocabulary};
use crate::model::BotComment;
use crate::tracker::CommentLimit;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One change to make on the tracker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// All additions in one call.
    AddLabels { labels: Vec<String> },
    RemoveLabel { label: String },
    /// Create or edit the bot's comment for `tag`. `known` is the comment id the store holds;
    /// without one the applier looks for the marker on the tracker before creating, so a crash
    /// between creating and recording never yields a second comment.
    UpsertComment { tag: String, body: String, known: Option<CommentId> },
    /// Reopen (a refused close) or close the issue.
    SetOpen { open: bool },
}

/// The hidden marker that finds a bot comment again: `<!-- rollgate:checklist -->`.
pub fn marker(tag: &str) -> String {
    format!("<!-- rollgate:{tag} -->")
}

/// The full text of a bot comment: marker first, then the rule's body.
pub fn comment_text(tag: &str, body: &str) -> String {
    format!("{}\n{}", marker(tag), body.trim_end())
}

pub fn body_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

pub fn plan(
    issue: &IssueSnapshot,
    normalized: &Normalized,
    decision: &Decision,
    vocab: &Vocabulary,
    bot_comments: &BTreeMap<String, BotComment>,
) -> Vec<Effect> {
    let has = |label: &str| issue.has_label(label);
    let mut add: Vec<String> = Vec::new();
    let mut remove: Vec<String> = Vec::new();

    // Desired single values: what the rules set, plus the chosen value of any field carrying
    // several labels, so a field never keeps two values.
    let mut desired: BTreeMap<&str, Option<&str>> = normalized
        .conflicting
        .iter()
        .map(|f| (f.as_str(), normalized.fields.get(f).map(String::as_str)))
        .collect();
    for (field, value) in &decision.fields {
        desired.insert(field, value.as_deref());
    }
    for (field, value) in desired {
        let keep = value.and_then(|v| vocab.field_label(field, v));
        for label in vocab.field_labels(field) {
            if Some(label) == keep {
                if !has(label) {
                    add.push(label.to_string());
                }
            } else if has(label) {
                remove.push(label.to_string());
            }
        }
    }
    for (flag, on) in &decision.flags {
        if let Some(label) = vocab.flag_label(flag) {
            match (on, has(label)) {
                (true, false) => add.push(label.to_string()),
                (false, true) => remove.push(label.to_string()),
                _ => {}
            }
        }
    }

    let mut effects = Vec::new();
    if let Some(open) = decision.open {
        if open != issue.open {
            effects.push(Effect::SetOpen { open });
        }
    }
    if !add.is_empty() {
        effects.push(Effect::AddLabels { labels: add });
    }
    effects.extend(remove.into_iter().map(|label| Effect::RemoveLabel { label }));
    // Clipped here, before hashing: the store keeps what the tracker will hold (see `clip`).
    let limit = CommentLimit::of(issue.key.tracker());
    for (tag, body) in &decision.comments {
        let text = clip::fit(comment_text(tag, body), limit);
        let known = bot_comments.get(tag);
        if known.is_some_and(|c| c.body_hash == body_hash(&text)) {
            continue;
        }
        effects.push(Effect::UpsertComment { tag: tag.clone(), body: text, known: known.map(|c| c.id) });
    }
    effects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IssueKey;
    use chrono::Utc;

    fn vocab() -> Vocabulary {
        Vocabulary::parse(
            "[github.fields.lane]\nA = \"lane/A\"\nB = \"lane/B\"\n[github.flags]\nat-risk = \"sla/at-risk\"\n",
        )
        .unwrap()
    }

    fn issue(labels: &[&str]) -> IssueSnapshot {
        IssueSnapshot {
            key: IssueKey::github("o/r", 1),
            title: "t".into(),
            body: String::new(),
            url: String::new(),
            open: true,
            state_reason: None,
            author: "a".into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            assignees: vec![],
            created_at: Utc::now(),
            updated_at: Utc::now(),
            closed_at: None,
            native: None,
            partial: false,
        }
    }

    #[test]
    fn only_the_difference_is_planned() {
        let v = vocab();
        let mut d = Decision::default();
        d.fields.insert("lane".into(), Some("B".into()));
        d.flags.insert("at-risk".into(), true);
        let i = issue(&["lane/A", "other"]);
        let effects = plan(&i, &v.normalize(&i.labels, None), &d, &v, &BTreeMap::new());
        assert_eq!(
            effects,
            vec![
                Effect::AddLabels { labels: vec!["lane/B".into(), "sla/at-risk".into()] },
                Effect::RemoveLabel { label: "lane/A".into() },
            ]
        );
        let done = issue(&["lane/B", "sla/at-risk", "other"]);
        assert!(plan(&done, &v.normalize(&done.labels, None), &d, &v, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn two_values_of_one_field_are_reduced_to_one_even_without_a_rule() {
        let v = vocab();
        let i = issue(&["lane/A", "lane/B"]);
        let effects = plan(&i, &v.normalize(&i.labels, Some("lane/B")), &Decision::default(), &v, &BTreeMap::new());
        assert_eq!(effects, vec![Effect::RemoveLabel { label: "lane/A".into() }]);
    }

    #[test]
    fn a_comment_over_the_trackers_limit_is_planned_clipped_and_not_edited_again() {
        let v = vocab();
        let i = issue(&[]);
        let mut d = Decision::default();
        d.comments.insert("reply-7".into(), format!("@dev\n\n{}", "❓ `/x`: unknown command.\n".repeat(5_000)));
        let effects = plan(&i, &Normalized::default(), &d, &v, &BTreeMap::new());
        let [Effect::UpsertComment { body, .. }] = &effects[..] else { panic!("{effects:?}") };
        assert!(body.chars().count() <= crate::tracker::GITHUB_COMMENT_CHARS && body.contains("… clipped: "));
        let mut known = BTreeMap::new();
        known.insert("reply-7".into(), BotComment { id: CommentId(7), body_hash: body_hash(body), body: body.clone() });
        assert!(plan(&i, &Normalized::default(), &d, &v, &known).is_empty());
    }

    #[test]
    fn an_unchanged_comment_is_not_edited_and_a_changed_one_is_edited_in_place() {
        let v = vocab();
        let i = issue(&[]);
        let mut d = Decision::default();
        d.comments.insert("checklist".into(), "- [ ] release note".into());
        let text = comment_text("checklist", "- [ ] release note");
        let mut known = BTreeMap::new();
        known.insert("checklist".into(), BotComment { id: CommentId(7), body_hash: body_hash(&text), body: text.clone() });
        assert!(plan(&i, &Normalized::default(), &d, &v, &known).is_empty());
        d.comments.insert("checklist".into(), "- [x] release note".into());
        let effects = plan(&i, &Normalized::default(), &d, &v, &known);
        assert!(matches!(&effects[..], [Effect::UpsertComment { known: Some(CommentId(7)), body, .. }]
            if body.starts_with("<!-- rollgate:checklist -->\n")));
    }
}

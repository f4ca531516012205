//! Effects onto the tracker, one call each, and what they did.

use super::{Failure, Processor};
use crate::decide::facts::Me;
use crate::decide::Outcome;
use crate::model::{CommentId, IssueSnapshot};
use crate::plan::{body_hash, marker, Effect};
use crate::policy::vocabulary::Vocabulary;
use crate::model::{BotComment, LedgerKey, Purpose};
use crate::tracker::{FieldUpdate, Tracker, TrackerError};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// What became of one effect, as the audit and the `rollgate_effects_total` metric say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EffectResult {
    /// The tracker took the call.
    Applied,
    /// An earlier attempt of the same event applied it (the effect ledger): not called again.
    AppliedEarlier,
    /// No tracker: nothing was called.
    DryRun,
    /// The bot comment already read as planned: no edit.
    Unchanged,
    /// The flap breaker held back at least one of its labels.
    FlapStopped,
}

impl EffectResult {
    pub fn as_str(self) -> &'static str {
        match self {
            EffectResult::Applied => "applied",
            EffectResult::AppliedEarlier => "applied-earlier",
            EffectResult::DryRun => "dry-run",
            EffectResult::Unchanged => "unchanged",
            EffectResult::FlapStopped => "flap-stopped",
        }
    }
}

/// One effect as the audit keeps it.
#[derive(Debug, Serialize)]
pub(super) struct AppliedEffect {
    #[serde(flatten)]
    effect: Effect,
    result: EffectResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment_id: Option<CommentId>,
}

/// What applying an outcome's effects left on the tracker.
pub(super) struct Applied {
    pub effects: Vec<AppliedEffect>,
    /// The issue's labels (Jira's fields expressed as labels) and open state now.
    pub labels: Vec<String>,
    pub open: bool,
    /// The bot comments written, by tag.
    pub comments: Vec<(String, BotComment)>,
    pub ms: u64,
}

impl Processor {
    /// Applies the outcome's effects (none without a tracker: a dry run), each once across
    /// attempts of the same event (the effect ledger).
    pub(super) async fn apply_effects(
        &self,
        inbox_id: i64,
        tracker: Option<&Arc<dyn Tracker>>,
        me: &Me,
        outcome: &mut Outcome,
        vocab: &Vocabulary,
    ) -> Result<Applied, Failure> {
        let started = Instant::now();
        let effects = std::mem::take(&mut outcome.effects);
        let mut labels = std::mem::take(&mut outcome.planned.labels);
        let key = &outcome.view.key;
        let mut open = outcome.planned.open;
        let mut comments = Vec::new();
        let mut applied = Vec::with_capacity(effects.len());
        // What an earlier attempt of this very event applied before it crashed or failed: a
        // retry skips those calls (the effect ledger), so no effect is applied twice.
        // (Most events plan nothing, e.g. the echo of rollgate's own change: no read then.)
        let ledger = match tracker {
            Some(_) if !effects.is_empty() => self.store.ledger(inbox_id).await?,
            _ => Default::default(),
        };
        if let Some(t) = tracker.filter(|t| t.holds_fields()) {
            // Jira: every label effect becomes one field update (and a transition for status).
            let update = field_update(&effects, vocab);
            let entry = LedgerKey { purpose: Purpose::Fields, content_hash: body_hash(&format!("{update:?}")) };
            if !update.is_empty() && !ledger.contains_key(&entry) {
                t.update_fields(key, &update).await?;
                self.store.ledger_add(inbox_id, &entry, None, self.clock.now()).await?;
            }
        }
        for effect in effects {
            let Some(tracker) = tracker else {
                applied.push(AppliedEffect { effect, result: EffectResult::DryRun, comment_id: None });
                continue;
            };
            let entry = ledger_key(&effect);
            let (result, comment_id, held_back) = match ledger.get(&entry) {
                Some(done) => (EffectResult::AppliedEarlier, done.as_deref().and_then(|id| id.parse().ok()).map(CommentId), Vec::new()),
                None => {
                    let done = apply(tracker.as_ref(), &outcome.view, &effect, me).await?;
                    let id = done.comment_id.map(|c| c.0.to_string());
                    self.store.ledger_add(inbox_id, &entry, id.as_deref(), self.clock.now()).await?;
                    (done.result, done.comment_id, done.held_back)
                }
            };
            // The stored view follows what the tracker now holds: a label the flap breaker held
            // back was not changed there.
            match &effect {
                Effect::AddLabels { labels: added } => {
                    for l in added {
                        if !labels.contains(l) && !held_back.contains(l) {
                            labels.push(l.clone());
                        }
                    }
                }
                Effect::RemoveLabel { label } if held_back.contains(label) => {}
                Effect::RemoveLabel { label } => labels.retain(|l| l != label),
                Effect::SetOpen { open: o } => open = *o,
                Effect::UpsertComment { tag, body, .. } => {
                    let c = BotComment {
                        id: comment_id.expect("an upsert yields a comment id"),
                        body_hash: body_hash(body),
                        body: body.clone(),
                    };
                    comments.push((tag.clone(), c));
                }
            }
            let kind = match &effect {
                Effect::AddLabels { .. } => "add_labels",
                Effect::RemoveLabel { .. } => "remove_label",
                Effect::UpsertComment { .. } => "comment",
                Effect::SetOpen { .. } => "set_open",
            };
            crate::metrics::METRICS.inc("rollgate_effects_total", &[("kind", kind), ("result", result.as_str())]);
            applied.push(AppliedEffect { effect, result, comment_id });
        }
        Ok(Applied { effects: applied, labels, open, comments, ms: started.elapsed().as_millis() as u64 })
    }
}

/// The label effects of a plan as one field update, for a tracker that holds fields natively.
pub fn field_update(effects: &[Effect], vocab: &Vocabulary) -> FieldUpdate {
    let mut u = FieldUpdate::default();
    let mut set_fields = std::collections::BTreeMap::new();
    for e in effects {
        let (labels, on): (Vec<&String>, bool) = match e {
            Effect::AddLabels { labels } => (labels.iter().collect(), true),
            Effect::RemoveLabel { label } => (vec![label], false),
            _ => continue,
        };
        for label in labels {
            if let Some((field, value)) = vocab.field_of(label) {
                if on {
                    set_fields.insert(field.to_string(), Some(value.to_string()));
                } else {
                    // Removing the old value of a field that gets a new one is the same change.
                    set_fields.entry(field.to_string()).or_insert(None);
                }
            } else if let Some(flag) = vocab.flag_of(label) {
                u.flags.push((flag.to_string(), on));
            } else {
                u.labels.push((label.clone(), on));
            }
        }
    }
    u.set = set_fields.into_iter().collect();
    u
}

/// The effect ledger's key for an effect: its purpose and a hash of its content.
pub fn ledger_key(effect: &Effect) -> LedgerKey {
    let purpose = match effect {
        Effect::AddLabels { .. } => Purpose::AddLabels,
        Effect::RemoveLabel { .. } => Purpose::RemoveLabel,
        Effect::SetOpen { .. } => Purpose::SetOpen,
        Effect::UpsertComment { tag, .. } => Purpose::Comment(tag.clone()),
    };
    let content = serde_json::to_string(effect).unwrap_or_default();
    LedgerKey { purpose, content_hash: crate::plan::body_hash(&content) }
}

/// What one effect did on the tracker.
pub struct Done {
    pub result: EffectResult,
    /// The comment an upsert wrote or found.
    pub comment_id: Option<CommentId>,
    /// Labels the flap breaker held back: the tracker was not changed for them.
    pub held_back: Vec<String>,
}

impl Done {
    fn new(result: EffectResult, comment_id: Option<CommentId>) -> Done {
        Done { result, comment_id, held_back: Vec::new() }
    }
}

/// A label call, "flap-stopped" when the tracker guard held (one of) its labels back because
/// rollgate kept flipping it. The issue's `updated_at` tells one decision from the next, so a
/// retried event is not counted as another flip.
async fn label_change(issue: &IssueSnapshot, call: impl std::future::Future<Output = Result<(), TrackerError>>) -> Result<Done, TrackerError> {
    let (result, stopped) = crate::tracker::guard::watching_flaps(issue.updated_at.timestamp_millis(), call).await;
    result.map(|()| Done { result: if stopped.is_empty() { EffectResult::Applied } else { EffectResult::FlapStopped }, comment_id: None, held_back: stopped })
}

/// Applies one effect: what happened, the comment's id for comments, and what was held back.
pub async fn apply(tracker: &dyn Tracker, issue: &IssueSnapshot, effect: &Effect, me: &Me) -> Result<Done, TrackerError> {
    let key = &issue.key;
    match effect {
        // Applied as one field update before (`field_update`).
        Effect::AddLabels { .. } | Effect::RemoveLabel { .. } if tracker.holds_fields() => Ok(Done::new(EffectResult::Applied, None)),
        Effect::AddLabels { labels } => label_change(issue, tracker.add_labels(key, labels)).await,
        Effect::RemoveLabel { label } => label_change(issue, tracker.remove_label(key, label)).await,
        Effect::SetOpen { open } => tracker.set_open(key, *open, None).await.map(|_| Done::new(EffectResult::Applied, None)),
        Effect::UpsertComment { tag, body, known } => {
            if let Some(id) = known {
                match tracker.update_comment(key, *id, body).await {
                    Ok(()) => return Ok(Done::new(EffectResult::Applied, Some(*id))),
                    // Someone deleted the bot's comment: post it again below.
                    Err(TrackerError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
            // The store knows no comment for this purpose: look for the marker first, so a
            // crash after creating one, or a new database, never leads to a second comment.
            // Only among rollgate's own comments: anyone can paste a marker into theirs.
            let wanted = marker(tag);
            let existing =
                tracker.list_comments(key).await?.into_iter().find(|c| me.is(&c.author) && c.body.starts_with(&wanted));
            match existing {
                Some(c) if c.body == *body => Ok(Done::new(EffectResult::Unchanged, Some(c.id))),
                Some(c) => tracker.update_comment(key, c.id, body).await.map(|_| Done::new(EffectResult::Applied, Some(c.id))),
                None => tracker.create_comment(key, body).await.map(|id| Done::new(EffectResult::Applied, Some(id))),
            }
        }
    }
}

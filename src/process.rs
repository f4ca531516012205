//! One event, start to finish: the issue view, the rules, the plan, the tracker, the record.
//! Data flows one way; the only writes to the tracker are the planned effects.

use crate::clock::Clock;
use crate::model::{CommentId, Event, IssueSnapshot};
use crate::plan::{self, body_hash, marker, Effect};
use crate::policy::vocabulary::Normalized;
use crate::policy::{Input, PolicyConfig, PolicyHandle};
use crate::store::{AuditRecord, BotComment, Completion, HistoryEntry, InboxItem, Source, Store};
use crate::tracker::{Tracker, TrackerError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// The actor name rollgate's own changes are recorded under.
pub const BOT: &str = "rollgate";

pub struct Processor {
    pub store: Arc<dyn Store>,
    pub policies: PolicyHandle,
    /// `None` in dry run: decide and record, apply nothing.
    pub tracker: Option<Arc<dyn Tracker>>,
    pub config: PolicyConfig,
    pub clock: Arc<dyn Clock>,
}

/// Why an event did not finish, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{error}")]
    Retry { error: String, not_before: Option<DateTime<Utc>> },
    #[error("{0}")]
    Permanent(String),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Retry { error: format!("{e:#}"), not_before: None }
    }
}

impl From<TrackerError> for Failure {
    fn from(e: TrackerError) -> Self {
        if e.is_permanent() {
            Failure::Permanent(e.to_string())
        } else {
            Failure::Retry { not_before: e.retry_at(), error: e.to_string() }
        }
    }
}

#[derive(Debug, Serialize)]
struct Applied {
    #[serde(flatten)]
    effect: Effect,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment_id: Option<CommentId>,
}

impl Processor {
    pub async fn process(&self, item: &InboxItem) -> Result<(), Failure> {
        let policies = self.policies.current();
        let event = &item.event;
        let span = tracing::info_span!(
            "event",
            tracker = %event.tracker(),
            issue = %event.issue.key.short(),
            delivery = %event.delivery,
            policy = %policies.version,
            kind = %event.kind,
        );
        async {
            let started = Instant::now();
            let result = self.run(item, &policies).await;
            match &result {
                Ok(()) => tracing::info!(ms = started.elapsed().as_millis() as u64, "processed"),
                Err(e) => tracing::warn!(attempt = item.attempts + 1, error = %e, "failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn run(&self, item: &InboxItem, policies: &crate::policy::PolicySet) -> Result<(), Failure> {
        let started = Instant::now();
        let event = &item.event;
        let key = &event.issue.key;
        let vocab = &policies.vocabulary;

        let state = self.store.issue_state(key).await?;
        let (stored, mut bot_comments) = match state {
            Some(s) => (Some(s.snapshot), s.bot_comments),
            None => (None, Default::default()),
        };
        let mut view = merge(stored.as_ref(), event);
        let before = stored.as_ref().map(|s| vocab.normalize(&s.labels, None));
        let normalized = vocab.normalize(&view.labels, event.label.as_deref());

        let mut new_history = changes(before.as_ref(), stored.as_ref(), &normalized, &view, &event.actor.login, event.occurred_at, Source::Tracker);
        let mut history = self.store.history(key).await?;
        history.extend(new_history.iter().cloned());

        let eval_started = Instant::now();
        let decision = policies
            .evaluate(&Input {
                issue: &view,
                normalized: &normalized,
                event,
                history: &history,
                config: &self.config,
                now: self.clock.now(),
            })
            // A failing rule is retried: an operator may fix the policy before the attempts run out.
            .map_err(|e| Failure::Retry { error: e.to_string(), not_before: None })?;
        let eval_us = eval_started.elapsed().as_micros() as u64;

        let effects = plan::plan(&view, &normalized, &decision, vocab, &bot_comments);
        let apply_started = Instant::now();
        let mut applied = Vec::with_capacity(effects.len());
        let mut comment_updates = Vec::new();
        for effect in effects {
            let Some(tracker) = &self.tracker else {
                applied.push(Applied { effect, result: "dry-run", comment_id: None });
                continue;
            };
            let (result, comment_id) = apply(tracker.as_ref(), &view, &effect).await?;
            match &effect {
                Effect::AddLabels { labels } => {
                    for l in labels {
                        if !view.has_label(l) {
                            view.labels.push(l.clone());
                        }
                    }
                }
                Effect::RemoveLabel { label } => view.labels.retain(|l| l != label),
                Effect::UpsertComment { tag, body, .. } => {
                    let c = BotComment { id: comment_id.expect("an upsert yields a comment id"), body_hash: body_hash(body) };
                    bot_comments.insert(tag.clone(), c.clone());
                    comment_updates.push((tag.clone(), c));
                }
            }
            applied.push(Applied { effect, result, comment_id });
        }
        let apply_ms = apply_started.elapsed().as_millis() as u64;

        let after = vocab.normalize(&view.labels, None);
        let now = self.clock.now();
        new_history.extend(changes(Some(&normalized), None, &after, &view, BOT, now, Source::Rollgate));
        new_history.extend(decision.records.iter().map(|(field, value)| HistoryEntry {
            at: event.occurred_at,
            field: field.clone(),
            from: None,
            to: Some(value.clone()),
            actor: event.actor.login.clone(),
            source: Source::Policy,
        }));

        let audit = AuditRecord {
            delivery: event.delivery.to_string(),
            issue_key: key.to_string(),
            kind: event.kind.clone(),
            policy_version: policies.version.to_string(),
            decision: serde_json::to_value(&decision).map_err(anyhow::Error::from)?,
            effects: serde_json::to_value(&applied).map_err(anyhow::Error::from)?,
            dry_run: self.tracker.is_none(),
            attempt: item.attempts + 1,
            eval_us,
            apply_ms,
            total_ms: started.elapsed().as_millis() as u64,
            processed_at: now,
        };
        self.store
            .complete(Completion { inbox_id: item.id, snapshot: view, bot_comments: comment_updates, history: new_history, audit })
            .await?;
        Ok(())
    }
}

/// The issue as it stands after this event. A delivery's snapshot can be older than one we
/// already hold (two quick changes, delivered out of order); then the stored view is kept and
/// only the change the event itself names is applied.
fn merge(stored: Option<&IssueSnapshot>, event: &Event) -> IssueSnapshot {
    let mut view = match stored {
        Some(s) if s.updated_at > event.issue.updated_at => s.clone(),
        _ => event.issue.clone(),
    };
    match (event.kind.as_str(), &event.label) {
        // A real `unlabeled` delivery can still list the removed label in `issue.labels`.
        ("issues.unlabeled", Some(label)) => view.labels.retain(|l| l != label),
        ("issues.labeled", Some(label)) if !view.has_label(label) => view.labels.push(label.clone()),
        ("issues.closed", _) => {
            view.open = false;
            view.closed_at = event.issue.closed_at;
            view.state_reason = event.issue.state_reason.clone();
        }
        ("issues.reopened", _) => view.open = true,
        _ => {}
    }
    view
}

/// Field, flag and state changes between two readings of an issue, as history entries.
/// Without a `before` (first sighting) every present field is recorded as set.
fn changes(
    before: Option<&Normalized>,
    before_view: Option<&IssueSnapshot>,
    after: &Normalized,
    view: &IssueSnapshot,
    actor: &str,
    at: DateTime<Utc>,
    source: Source,
) -> Vec<HistoryEntry> {
    let empty = Normalized::default();
    let b = before.unwrap_or(&empty);
    let entry = |field: String, from: Option<String>, to: Option<String>| HistoryEntry {
        at,
        field,
        from,
        to,
        actor: actor.to_string(),
        source,
    };
    let mut out = Vec::new();
    let fields: std::collections::BTreeSet<&String> = b.fields.keys().chain(after.fields.keys()).collect();
    for f in fields {
        let (from, to) = (b.fields.get(f), after.fields.get(f));
        if from != to {
            out.push(entry(f.clone(), from.cloned(), to.cloned()));
        }
    }
    for flag in after.flags.symmetric_difference(&b.flags) {
        let on = after.flags.contains(flag);
        out.push(entry(format!("flags.{flag}"), (!on).then(|| "on".into()), on.then(|| "on".into())));
    }
    if let Some(prev) = before_view {
        if prev.open != view.open {
            let s = |open: bool| Some(if open { "open" } else { "closed" }.to_string());
            out.push(entry("state".into(), s(prev.open), s(view.open)));
        }
    }
    out
}

/// Applies one effect. Returns what happened and, for comments, the comment's id.
async fn apply(tracker: &dyn Tracker, issue: &IssueSnapshot, effect: &Effect) -> Result<(&'static str, Option<CommentId>), TrackerError> {
    let key = &issue.key;
    match effect {
        Effect::AddLabels { labels } => tracker.add_labels(key, labels).await.map(|_| ("applied", None)),
        Effect::RemoveLabel { label } => tracker.remove_label(key, label).await.map(|_| ("applied", None)),
        Effect::UpsertComment { tag, body, known } => {
            if let Some(id) = known {
                match tracker.update_comment(key, *id, body).await {
                    Ok(()) => return Ok(("applied", Some(*id))),
                    // Someone deleted the bot's comment: post it again below.
                    Err(TrackerError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
            // The store knows no comment for this purpose: look for the marker first, so a
            // crash after creating one, or a new database, never leads to a second comment.
            let wanted = marker(tag);
            let existing = tracker.list_comments(key).await?.into_iter().find(|c| c.body.starts_with(&wanted));
            match existing {
                Some(c) if c.body == *body => Ok(("unchanged", Some(c.id))),
                Some(c) => tracker.update_comment(key, c.id, body).await.map(|_| ("applied", Some(c.id))),
                None => tracker.create_comment(key, body).await.map(|id| ("applied", Some(id))),
            }
        }
    }
}

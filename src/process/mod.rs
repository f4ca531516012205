//! One event, start to finish: the issue view, the rules, the plan, the tracker, the record.
//! Data flows one way; the only writes to the tracker are the planned effects.

mod apply;
pub mod facts;

use crate::clock::Clock;
use crate::model::{CommentId, Event, IssueSnapshot};
use crate::policy::decision::Decision;
use crate::policy::vocabulary::Normalized;
use crate::policy::{EvalError, EventFacts};
use std::collections::BTreeMap;
use crate::plan::{self, body_hash, Effect};
use crate::policy::{Before, Input, PolicyConfig, PolicyHandle, PolicySet, RecentDecision};
use crate::roles::RoleResolver;
use crate::store::{AuditRecord, BotComment, Completion, HistoryEntry, InboxItem, Source, Store};
use crate::tracker::guard::{with_priority, Priority};
use crate::tracker::{Tracker, TrackerError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// The actor name rollgate's own changes are recorded under.
pub const BOT: &str = "rollgate";
/// Decisions `/explain` shows.
const RECENT_FOR_EXPLAIN: usize = 10;

#[derive(Default, Clone)]
pub struct Trackers {
    pub github: Option<Arc<dyn Tracker>>,
    pub jira: Option<Arc<dyn Tracker>>,
}

impl Trackers {
    pub fn for_issue(&self, key: &crate::model::IssueKey) -> Option<&Arc<dyn Tracker>> {
        match key.tracker() {
            crate::model::TrackerKind::Github => self.github.as_ref(),
            crate::model::TrackerKind::Jira => self.jira.as_ref(),
        }
    }
}

pub struct Processor {
    pub store: Arc<dyn Store>,
    pub policies: PolicyHandle,
    /// The trackers changes can be applied to; an issue whose tracker is missing here is
    /// processed in dry run: decided and recorded, nothing applied.
    pub trackers: Trackers,
    pub roles: RoleResolver,
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

/// An event read against the stored issue, ready for the rules: the pure half of processing,
/// shared by the worker, `rollgate test` and `rollgate simulate`.
pub struct Prepared<'e> {
    pub event: &'e Event,
    pub view: IssueSnapshot,
    pub normalized: Normalized,
    pub before: Option<(Normalized, bool)>,
    /// Field changes the event made, as history entries (the tracker's time and actor).
    pub tracker_changes: Vec<HistoryEntry>,
    pub facts: EventFacts,
    /// A bot comment someone edited, as the tracker now holds it.
    pub followed: Option<(String, BotComment)>,
}

impl<'e> Prepared<'e> {
    pub fn new(
        policies: &PolicySet,
        event: &'e Event,
        stored: Option<&IssueSnapshot>,
        bot_comments: &BTreeMap<String, BotComment>,
    ) -> Self {
        let vocab = &policies.vocabulary;
        let mut view = facts::merge(stored, event);
        if let Some(native) = &view.native {
            view.labels = vocab.express(native, &view.labels);
        }
        let before = match (stored, &event.previous) {
            (Some(s), _) => {
                let labels = s.native.as_ref().map(|n| vocab.express(n, &s.labels)).unwrap_or_else(|| s.labels.clone());
                Some((vocab.normalize(&labels, None), s.open))
            }
            // Never stored, but the delivery tells what changed (Jira's changelog).
            (None, Some(previous)) => Some((vocab.normalize(&vocab.express(previous, &view.labels), None), view.open)),
            (None, None) => None,
        };
        let normalized = vocab.normalize(&view.labels, event.label.as_deref());
        let before_ref = before.as_ref().map(|(n, open)| (n, *open));
        let tracker_changes =
            facts::changes(before_ref, &normalized, view.open, &event.actor.login, event.occurred_at, Source::Tracker);
        let (facts, followed) = facts::gather(event, &tracker_changes, &policies.commands, bot_comments);
        Prepared { event, view, normalized, before, tracker_changes, facts, followed }
    }

    /// Runs the rules. `history` is the issue's recorded history including this event's changes.
    pub fn evaluate(
        &self,
        policies: &PolicySet,
        history: &[HistoryEntry],
        recent: &[RecentDecision],
        config: &PolicyConfig,
        now: DateTime<Utc>,
    ) -> Result<Decision, EvalError> {
        policies.evaluate(&Input {
            issue: &self.view,
            normalized: &self.normalized,
            event: self.event,
            facts: &self.facts,
            before: self.before.as_ref().map(|(n, open)| Before { normalized: n, open: *open }),
            history,
            recent,
            config,
            now,
        })
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
            // Timer events come from the sweep: they yield the API budget to people's events.
            let priority = if event.kind.starts_with("timer.") { Priority::Background } else { Priority::Interactive };
            let result = with_priority(priority, self.run(item, &policies)).await;
            match &result {
                Ok(()) => tracing::info!(ms = started.elapsed().as_millis() as u64, "processed"),
                Err(e) => tracing::warn!(attempt = item.attempts + 1, error = %e, "failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn run(&self, item: &InboxItem, policies: &PolicySet) -> Result<(), Failure> {
        let started = Instant::now();
        let event = &item.event;
        let key = &event.issue.key;
        let vocab = &policies.vocabulary;

        let tracker = self.trackers.for_issue(key).cloned();
        if let (Some(t), Some(installation)) = (&tracker, event.installation) {
            t.note_installation(key.project(), installation);
        }
        let state = self.store.issue_state(key).await?;
        let (mut stored, mut bot_comments) = match state {
            Some(s) => (Some(s.snapshot), s.bot_comments),
            None => (None, Default::default()),
        };
        if event.kind == "issues.deleted" {
            return self.record_deleted(item, policies, stored).await;
        }
        if stored.is_none() && event.issue.partial {
            // The delivery does not carry the issue (a Jira comment) and we have never seen
            // it: the one read the payload cannot answer.
            if let Some(t) = &tracker {
                stored = Some(t.get_issue(key).await?);
            }
        }
        let mut prepared = Prepared::new(policies, event, stored.as_ref(), &bot_comments);
        let mut comment_updates = Vec::new();
        if let Some((tag, comment)) = prepared.followed.take() {
            // Someone edited a bot comment: the store follows, so the planner sees the
            // difference from what the rules want and puts it right.
            bot_comments.insert(tag.clone(), comment.clone());
            comment_updates.push((tag, comment));
        }
        prepared.facts.roles = self.roles.roles_of(&event.actor.login).await;
        let recent = if prepared.facts.commands.iter().any(|c| c.name == "explain") {
            self.recent_decisions(key).await?
        } else {
            Vec::new()
        };
        let mut history = self.store.history(key).await?;
        history.extend(prepared.tracker_changes.iter().cloned());

        let eval_started = Instant::now();
        let decision = prepared
            .evaluate(policies, &history, &recent, &self.config, self.clock.now())
            // A failing rule is retried: an operator may fix the policy before the attempts run out.
            .map_err(|e| Failure::Retry { error: e.to_string(), not_before: None })?;
        let eval_us = eval_started.elapsed().as_micros() as u64;
        crate::metrics::METRICS.observe_eval(eval_us);
        let Prepared { mut view, normalized, tracker_changes: mut new_history, .. } = prepared;

        // A revert is destructive: plan it against the issue as the tracker holds it now, not
        // against a snapshot that may be older than a change made since.
        let mut planned_on = normalized.clone();
        if let (false, Some(tracker)) = (decision.blocks.is_empty(), &tracker) {
            let fresh = tracker.get_issue(key).await?;
            view.labels = match &fresh.native {
                Some(n) => vocab.express(n, &fresh.labels),
                None => fresh.labels,
            };
            view.open = fresh.open;
            planned_on = vocab.normalize(&view.labels, None);
        }
        let effects = plan::plan(&view, &planned_on, &decision, vocab, &bot_comments);
        let view_before_effects = (planned_on, view.open);

        let apply_started = Instant::now();
        let mut applied = Vec::with_capacity(effects.len());
        // What an earlier attempt of this very event applied before it crashed or failed: a
        // retry skips those calls (the effect ledger), so no effect is applied twice.
        // (Most events plan nothing, e.g. the echo of rollgate's own change: no read then.)
        let ledger = match &tracker {
            Some(_) if !effects.is_empty() => self.store.ledger(item.id).await?,
            _ => Default::default(),
        };
        if let Some(t) = tracker.as_ref().filter(|t| t.holds_fields()) {
            // Jira: every label effect becomes one field update (and a transition for status).
            let update = apply::field_update(&effects, vocab);
            let content = body_hash(&format!("{update:?}"));
            if !update.is_empty() && !ledger.contains_key(&("fields".to_string(), content.clone())) {
                t.update_fields(key, &update).await?;
                self.store.ledger_add(item.id, "fields", &content, None, self.clock.now()).await?;
            }
        }
        for effect in effects {
            let Some(tracker) = &tracker else {
                applied.push(Applied { effect, result: "dry-run", comment_id: None });
                continue;
            };
            let (purpose, content) = apply::ledger_key(&effect);
            let (result, comment_id, held_back) = match ledger.get(&(purpose.clone(), content.clone())) {
                Some(done) => ("applied-earlier", done.as_deref().and_then(|id| id.parse().ok()).map(CommentId), Vec::new()),
                None => {
                    let done = apply::apply(tracker.as_ref(), &view, &effect).await?;
                    let id = done.comment_id.map(|c| c.0.to_string());
                    self.store.ledger_add(item.id, &purpose, &content, id.as_deref(), self.clock.now()).await?;
                    (done.result, done.comment_id, done.held_back)
                }
            };
            // The stored view follows what the tracker now holds: a label the flap breaker held
            // back was not changed there.
            match &effect {
                Effect::AddLabels { labels } => {
                    for l in labels {
                        if !view.has_label(l) && !held_back.contains(l) {
                            view.labels.push(l.clone());
                        }
                    }
                }
                Effect::RemoveLabel { label } if held_back.contains(label) => {}
                Effect::RemoveLabel { label } => view.labels.retain(|l| l != label),
                Effect::SetOpen { open } => view.open = *open,
                Effect::UpsertComment { tag, body, .. } => {
                    let c = BotComment {
                        id: comment_id.expect("an upsert yields a comment id"),
                        body_hash: body_hash(body),
                        body: body.clone(),
                    };
                    bot_comments.insert(tag.clone(), c.clone());
                    comment_updates.push((tag.clone(), c));
                }
            }
            let kind = match &effect {
                Effect::AddLabels { .. } => "add_labels",
                Effect::RemoveLabel { .. } => "remove_label",
                Effect::UpsertComment { .. } => "comment",
                Effect::SetOpen { .. } => "set_open",
            };
            crate::metrics::METRICS.inc("rollgate_effects_total", &[("kind", kind), ("result", result)]);
            applied.push(Applied { effect, result, comment_id });
        }
        let apply_ms = apply_started.elapsed().as_millis() as u64;

        let after = vocab.normalize(&view.labels, None);
        if view.native.is_some() {
            view.native = Some(after.to_native());
        }
        let now = self.clock.now();
        let (ref n, open) = view_before_effects;
        // The bot's changes answer this event: they carry its (the tracker's) time, so clocks
        // and metrics come out the same whether the event is processed live or late.
        new_history.extend(facts::changes(Some((n, open)), &after, view.open, BOT, event.occurred_at, Source::Rollgate));
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
            dry_run: tracker.is_none(),
            attempt: item.attempts + 1,
            eval_us,
            apply_ms,
            total_ms: started.elapsed().as_millis() as u64,
            processed_at: now,
        };
        self.store
            .complete(Completion {
                inbox_id: item.id,
                snapshot: view,
                bot_comments: comment_updates,
                history: new_history,
                timers: decision.timers.iter().map(|(p, at)| (p.clone(), *at)).collect(),
                audit,
            })
            .await?;
        Ok(())
    }

    /// The tracker deleted the issue: record it; there is nothing left to decide or apply.
    async fn record_deleted(&self, item: &InboxItem, policies: &PolicySet, stored: Option<IssueSnapshot>) -> Result<(), Failure> {
        let event = &item.event;
        let now = self.clock.now();
        let history = vec![HistoryEntry {
            at: event.occurred_at,
            field: "state".into(),
            from: Some("open".into()),
            to: Some("deleted".into()),
            actor: event.actor.login.clone(),
            source: Source::Tracker,
        }];
        let audit = AuditRecord {
            delivery: event.delivery.to_string(),
            issue_key: event.issue.key.to_string(),
            kind: event.kind.clone(),
            policy_version: policies.version.to_string(),
            decision: serde_json::json!({ "why": ["the issue was deleted on the tracker"] }),
            effects: serde_json::json!([]),
            dry_run: false,
            attempt: item.attempts + 1,
            eval_us: 0,
            apply_ms: 0,
            total_ms: 0,
            processed_at: now,
        };
        let snapshot = stored.unwrap_or_else(|| event.issue.clone());
        // "*" cancels every timer of the issue: nothing is left to wake it for.
        let timers = vec![("*".to_string(), None)];
        self.store.complete(Completion { inbox_id: item.id, snapshot, bot_comments: Vec::new(), history, timers, audit }).await?;
        Ok(())
    }

    async fn recent_decisions(&self, key: &crate::model::IssueKey) -> anyhow::Result<Vec<RecentDecision>> {
        let audit = self.store.audit(key).await?;
        Ok(audit
            .into_iter()
            .rev()
            .take(RECENT_FOR_EXPLAIN)
            .map(|a| RecentDecision {
                at: a.processed_at,
                kind: a.kind,
                why: a.decision["why"]
                    .as_array()
                    .map(|w| w.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                    .unwrap_or_default(),
            })
            .collect())
    }
}

//! One event, start to finish: the issue view, the rules, the plan, the tracker, the record.
//! Data flows one way; the only writes to the tracker are the planned effects.

mod apply;
pub mod facts;
mod swap;
pub mod view;

use crate::clock::Clock;
use crate::model::{CommentId, Event, IssueSnapshot, StatedChange};
use crate::policy::decision::Decision;
use crate::policy::vocabulary::Normalized;
use crate::policy::{EvalError, EventFacts};
use facts::Me;
use std::collections::{BTreeMap, BTreeSet};
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
/// How many of an issue's waiting deliveries are looked through for one that happened earlier.
const REORDER_LOOK_AHEAD: usize = 20;

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
    /// A policy rule failed. Rules are pure, so the same event fails the same way until an
    /// operator fixes the policy: it is tried a few times (a reload may come), never long enough
    /// to hold its issue's later events back.
    #[error("{0}")]
    Policy(String),
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
/// shared by the worker, `rollgate test`, `rollgate simulate` and `/api/v1/evaluate`.
pub struct Prepared<'e> {
    pub event: &'e Event,
    /// The issue after the event's stated changes (tracker terms).
    pub view: IssueSnapshot,
    pub normalized: Normalized,
    /// The issue before them; `None` when the event is the issue's creation.
    pub before: Option<(Normalized, bool)>,
    /// rollgate had no view of the issue before this event.
    pub first_seen: bool,
    /// The label the event added: it wins when a field carries two values.
    pub fresh: Option<String>,
    /// What the event changed, as history entries with the tracker's time and actor (rollgate's
    /// own changes under its name), after what a first sighting found already there.
    pub tracker_changes: Vec<HistoryEntry>,
    pub facts: EventFacts,
    /// A bot comment someone edited, as the tracker now holds it.
    pub followed: Option<(String, BotComment)>,
}

impl<'e> Prepared<'e> {
    /// `changes` are what the event states (with the other half of a swap taken in).
    pub fn new(
        policies: &PolicySet,
        event: &'e Event,
        changes: &[StatedChange],
        stored: Option<&IssueSnapshot>,
        bot_comments: &BTreeMap<String, BotComment>,
        me: &Me,
    ) -> Self {
        let vocab = &policies.vocabulary;
        let moved = view::advance(stored, event, changes, vocab);
        let normalized = view::normalize(&moved.after, vocab, moved.fresh.as_deref());
        let before = moved.before.as_ref().map(|b| (view::normalize(b, vocab, None), b.open));
        let mut tracker_changes = Vec::new();
        if let (true, Some((seen, _))) = (moved.first_seen, &before) {
            // What the issue held when rollgate first saw it: nobody's change, at no known time.
            tracker_changes.extend(facts::changes(None, seen, true, "", event.occurred_at, Source::Snapshot));
        }
        let (actor, source) = if me.caused(event) { (BOT, Source::Rollgate) } else { (event.actor.login.as_str(), Source::Tracker) };
        let before_ref = before.as_ref().map(|(n, open)| (n, *open));
        tracker_changes.extend(facts::changes(before_ref, &normalized, moved.after.open, actor, event.occurred_at, source));
        let (facts, followed) = facts::gather(event, &tracker_changes, &policies.commands, bot_comments, me);
        let first_seen = moved.first_seen;
        Prepared { event, view: moved.after, normalized, before, first_seen, fresh: moved.fresh, tracker_changes, facts, followed }
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
            first_seen: self.first_seen,
            history,
            recent,
            config,
            now,
        })
    }
}

/// A decision as the audit keeps it: with who caused the event, and whether that was rollgate.
fn audited(decision: &Decision, event: &Event, by_rollgate: bool) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(decision)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("actor".into(), event.actor.login.clone().into());
        o.insert("by_rollgate".into(), by_rollgate.into());
    }
    Ok(v)
}

/// Marks the changes a person made that the decision refused (a blocking rule set the field
/// back to what it was): they never took effect. Returns the fields refused.
pub fn mark_refused(changes: &mut [HistoryEntry], decision: &Decision) -> BTreeSet<String> {
    let mut refused = BTreeSet::new();
    for h in changes.iter_mut().filter(|h| h.source == Source::Tracker) {
        let Some(block) = decision.refusals.get(&h.field) else { continue };
        let restored = if h.field == "state" {
            decision.open.map(|open| Some(if open { "open" } else { "closed" }.to_string()))
        } else {
            decision.fields.get(&h.field).cloned()
        };
        if restored.as_ref() == Some(&h.from) {
            h.refused = Some(block.clone());
            refused.insert(h.field.clone());
        }
    }
    refused
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

    /// Who rollgate is on the issue's tracker (unknown without one: a dry run writes nothing
    /// that could come back).
    async fn me(&self, tracker: Option<&Arc<dyn Tracker>>) -> Result<Me, Failure> {
        match tracker {
            Some(t) => Ok(Me::new(Some(t.identity().await?))),
            None => Ok(Me::default()),
        }
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
        let me = self.me(tracker.as_ref()).await?;
        // rollgate's own issues (the monthly report, the decisions log, the agenda) are not
        // playbook items: their deliveries (its own writes coming back) change nothing.
        if me.is(&event.issue.author) {
            return self.record_own_issue(item, policies).await;
        }
        // Deliveries of one issue can arrive out of the tracker's order (one was late): when the
        // issue's next deliveries hold one that happened before this one, it goes first, so
        // each change is judged against what came before it, by whoever made it.
        if let Some(earlier) = self.earlier_pending(item, &me).await? {
            if self.store.reorder(item.id, earlier).await? {
                tracing::debug!("a delivery of an earlier change is waiting: it goes first");
                return Ok(());
            }
        }
        let state = self.store.issue_state(key).await?;
        let (stored, mut bot_comments) = match state {
            Some(s) => (Some(s.snapshot), s.bot_comments),
            None => (None, Default::default()),
        };
        if event.kind == "issues.deleted" {
            return self.record_deleted(item, policies, stored).await;
        }
        // The delivery does not carry the issue (a Jira comment) and rollgate has never seen it:
        // the one read the payload cannot answer. The issue read stands in for the thin snapshot.
        let read_in;
        let event = match (&stored, &tracker) {
            (None, Some(t)) if event.issue.partial => {
                let read = t.get_issue(key).await?;
                if me.is(&read.author) {
                    return self.record_own_issue(item, policies).await;
                }
                read_in = Event { issue: read, ..event.clone() };
                &read_in
            }
            _ => event,
        };
        let swap::Settled { changes, absorbed } = swap::settle(self.store.as_ref(), item, stored.as_ref(), vocab, &me, self.clock.now()).await?;
        let mut prepared = Prepared::new(policies, event, &changes, stored.as_ref(), &bot_comments, &me);
        // A comment revision is acted on once, whatever delivery brings it (Jira sends each
        // comment twice; a replayed delivery has a new id).
        let mut revisions = Vec::new();
        if let (Some(c), false) = (&event.comment, me.caused(event)) {
            if let Some(revision) = c.revised_at.map(|t| t.timestamp_millis()) {
                if self.store.comment_acted(key, c.id, revision).await? {
                    prepared.facts.forget_comment();
                    prepared.followed = None;
                } else {
                    revisions.push((c.id, revision));
                }
            }
        }
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
        // Rules see what took effect: a refused change never happened.
        let mut history: Vec<HistoryEntry> = self.store.history(key).await?.into_iter().filter(HistoryEntry::effective).collect();
        history.extend(prepared.tracker_changes.iter().cloned());

        let eval_started = Instant::now();
        let decision = prepared
            .evaluate(policies, &history, &recent, &self.config, self.clock.now())
            // A failing rule is retried: an operator may fix the policy before the attempts run out.
            .map_err(|e| Failure::Policy(e.to_string()))?;
        let eval_us = eval_started.elapsed().as_micros() as u64;
        crate::metrics::METRICS.observe_eval(eval_us);
        let Prepared { mut view, tracker_changes: mut new_history, fresh, .. } = prepared;
        let refused = mark_refused(&mut new_history, &decision);

        // The planner works on labels (Jira's fields expressed as labels). A revert is
        // destructive: the refused fields are planned against the issue as the tracker holds
        // it now, not against a snapshot that may be older than a change made since. Only
        // those fields: anything else newer on the tracker arrives with its own delivery.
        let mut labels = view::labels(&view, vocab);
        let mut open = view.open;
        if let (false, Some(t)) = (refused.is_empty(), &tracker) {
            let fresh = t.get_issue(key).await?;
            let fresh_labels = view::labels(&fresh, vocab);
            let of_refused = |l: &String| vocab.field_of(l).is_some_and(|(f, _)| refused.contains(f));
            labels.retain(|l| !of_refused(l));
            labels.extend(fresh_labels.into_iter().filter(|l| of_refused(l)));
            if refused.contains("state") {
                open = fresh.open;
            }
        }
        let planned_on = vocab.normalize(&labels, fresh.as_deref());
        let plan_view = IssueSnapshot { labels: labels.clone(), open, ..view.clone() };
        let effects = plan::plan(&plan_view, &planned_on, &decision, vocab, &bot_comments);

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
                    let done = apply::apply(tracker.as_ref(), &plan_view, &effect, &me).await?;
                    let id = done.comment_id.map(|c| c.0.to_string());
                    self.store.ledger_add(item.id, &purpose, &content, id.as_deref(), self.clock.now()).await?;
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

        let after = vocab.normalize(&labels, None);
        match view.native.as_mut() {
            Some(native) => {
                *native = after.to_native();
                view.labels = labels.iter().filter(|l| vocab.field_of(l).is_none() && vocab.flag_of(l).is_none()).cloned().collect();
            }
            None => view.labels = labels,
        }
        view.open = open;
        let now = self.clock.now();
        // The bot's changes answer this event: they carry its (the tracker's) time, so clocks
        // and metrics come out the same whether the event is processed live or late. The revert
        // of a refused change is not one: the refused change never took effect.
        new_history.extend(
            facts::changes(Some((&planned_on, plan_view.open)), &after, view.open, BOT, event.occurred_at, Source::Rollgate)
                .into_iter()
                .filter(|h| !refused.contains(&h.field)),
        );
        new_history.extend(decision.records.iter().map(|(field, value)| HistoryEntry {
            at: event.occurred_at,
            field: field.clone(),
            from: None,
            to: Some(value.clone()),
            actor: event.actor.login.clone(),
            source: Source::Policy,
            refused: None,
        }));

        let audit = AuditRecord {
            delivery: event.delivery.to_string(),
            issue_key: key.to_string(),
            kind: event.kind.clone(),
            policy_version: policies.version.to_string(),
            decision: audited(&decision, event, me.caused(event))?,
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
                issue: key.clone(),
                snapshot: Some(view),
                bot_comments: comment_updates,
                history: new_history,
                timers: decision.timers.iter().map(|(p, at)| (p.clone(), *at)).collect(),
                audit,
                absorbed,
                revisions,
            })
            .await?;
        Ok(())
    }

    /// The issue's next pending delivery that happened, by the tracker's clock, before this one
    /// (the earliest of them). Timers run at their due time, and rollgate's own writes coming
    /// back never go ahead of anything: they always follow what caused them.
    async fn earlier_pending(&self, item: &InboxItem, me: &Me) -> anyhow::Result<Option<i64>> {
        let event = &item.event;
        if event.kind.starts_with("timer.") {
            return Ok(None);
        }
        let later = self.store.pending_after(&event.issue.key, item.id, REORDER_LOOK_AHEAD).await?;
        Ok(later
            .into_iter()
            .filter(|(_, e)| !me.caused(e) && e.occurred_at < event.occurred_at)
            .min_by_key(|(id, e)| (e.occurred_at, *id))
            .map(|(id, _)| id))
    }

    /// A person's comment the rules could not act on gets a short answer instead of silence:
    /// which rule failed, that nothing was changed, and where an operator sees it. Best effort:
    /// a failure here is logged, the event is a dead letter either way.
    pub async fn answer_failure(&self, item: &InboxItem, error: &str) {
        let event = &item.event;
        let (Some(comment), Some(tracker)) = (&event.comment, self.trackers.for_issue(&event.issue.key)) else { return };
        let Ok(me) = self.me(Some(tracker)).await else { return };
        if me.caused(event) || comment.author.is_bot {
            return;
        }
        let rule = error.split(':').next().unwrap_or("a rule").trim_start_matches("policy rule ");
        let body = format!(
            "@{}: rollgate could not act on this comment: the policy rule `{}` failed, so nothing was changed. \
             An operator can see the error with `rollgate replay` (dead letters) and retry it once the rule is fixed.",
            event.actor.login,
            crate::ingest::clip(rule, 64).replace('`', "'"),
        );
        let tag = format!("reply-{}", comment.id);
        let effect = Effect::UpsertComment { body: plan::comment_text(&tag, &body), tag, known: None };
        if let Err(e) = apply::apply(tracker.as_ref(), &event.issue, &effect, &me).await {
            tracing::warn!(error = %e, "could not answer a comment the rules failed on");
        }
    }

    /// Acknowledges an event on one of rollgate's own issues: audited, nothing else.
    async fn record_own_issue(&self, item: &InboxItem, policies: &PolicySet) -> Result<(), Failure> {
        let event = &item.event;
        let audit = AuditRecord {
            delivery: event.delivery.to_string(),
            issue_key: event.issue.key.to_string(),
            kind: event.kind.clone(),
            policy_version: policies.version.to_string(),
            decision: serde_json::json!({ "why": ["one of rollgate's own issues (a report): not a playbook item"] }),
            effects: serde_json::json!([]),
            dry_run: false,
            attempt: item.attempts + 1,
            eval_us: 0,
            apply_ms: 0,
            total_ms: 0,
            processed_at: self.clock.now(),
        };
        let c = Completion {
            inbox_id: item.id,
            issue: event.issue.key.clone(),
            snapshot: None,
            bot_comments: Vec::new(),
            history: Vec::new(),
            timers: Vec::new(),
            audit,
            absorbed: Vec::new(),
            revisions: Vec::new(),
        };
        self.store.complete(c).await?;
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
            refused: None,
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
        let c = Completion {
            inbox_id: item.id,
            issue: event.issue.key.clone(),
            snapshot: Some(snapshot),
            bot_comments: Vec::new(),
            history,
            timers,
            audit,
            absorbed: Vec::new(),
            revisions: Vec::new(),
        };
        self.store.complete(c).await?;
        Ok(())
    }

    async fn recent_decisions(&self, key: &crate::model::IssueKey) -> anyhow::Result<Vec<RecentDecision>> {
        let audit = self.store.audit(key).await?;
        Ok(audit
            .into_iter()
            .rev()
            // rollgate's own writes coming back decide nothing new: not worth a line in /explain.
            .filter(|a| a.decision["by_rollgate"] != true)
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

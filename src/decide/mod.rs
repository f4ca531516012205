//! The pure middle of processing: one event read against what the store holds, judged by the
//! rules, and the difference planned. No store, no tracker, no clock, no metrics: everything is
//! read before, and applied and recorded after, by the caller. The worker, `rollgate test`,
//! `simulate`, `sweep --dry-run`, `/api/v1/evaluate` and backfill all decide through here, so
//! each of them shows what the worker does.

pub mod facts;
pub mod view;

#[cfg(test)]
mod tests;

use crate::model::{CommentId, Event, IssueSnapshot, StatedChange};
use crate::plan::{self, Effect};
use crate::policy::decision::Decision;
use crate::policy::vocabulary::{Normalized, Vocabulary};
use crate::policy::{Before, EvalError, Input, PolicyConfig, PolicySet, RecentDecision};
use crate::model::{BotComment, HistoryEntry, Source};
use chrono::{DateTime, Utc};
use facts::Me;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// The actor name rollgate's own changes are recorded under.
pub const BOT: &str = "rollgate";

/// What one event is decided on: everything read beforehand.
pub struct Inputs<'a> {
    pub event: &'a Event,
    /// What the event states, with the other half of a swap taken in.
    pub changes: &'a [StatedChange],
    /// The issue as the store holds it; `None` when rollgate never saw it.
    pub stored: Option<&'a IssueSnapshot>,
    /// The bot's comments as the store holds them, by tag.
    pub bot_comments: &'a BTreeMap<String, BotComment>,
    /// The issue's effective history before this event (refused changes left out). Taken by
    /// value: this event's changes are appended to it for the rules, with no copy.
    pub history: Vec<HistoryEntry>,
    /// The roles of the event's actor.
    pub roles: Vec<String>,
    /// Earlier decisions on the issue, for `/explain` (see `wants_recent`).
    pub recent: &'a [RecentDecision],
    /// The comment's revision was acted on already (Jira sends each comment twice; a replayed
    /// delivery has a new id): what it asks for is not asked again.
    pub comment_acted: bool,
    pub config: &'a PolicyConfig,
    /// Who rollgate is, to tell its own changes from people's.
    pub me: &'a Me,
    pub now: DateTime<Utc>,
}

/// The labels (Jira's fields expressed as labels) and open state the effects were planned on.
#[derive(Debug, Clone)]
pub struct Planned {
    pub labels: Vec<String>,
    pub open: bool,
    pub normalized: Normalized,
    /// The label the event added: it wins when a field carries two values.
    pub fresh: Option<String>,
}

/// What an event comes to.
#[derive(Debug)]
pub struct Outcome {
    pub decision: Decision,
    /// The changes to make on the tracker, planned on `planned`.
    pub effects: Vec<Effect>,
    /// The issue after the event's stated changes, in tracker terms; the next state the store
    /// keeps once the effects that took hold are folded in (`fold_applied`).
    pub view: IssueSnapshot,
    pub planned: Planned,
    /// The event's changes as history entries, with the tracker's time and actor, those the
    /// rules refused marked so (`mark_refused`).
    pub history: Vec<HistoryEntry>,
    /// A bot comment someone edited, as the tracker now holds it: the store follows it (and
    /// `effects` were planned against it).
    pub followed: Option<(String, BotComment)>,
    /// The fields whose change the rules refused (and `effects` put back).
    pub refused: BTreeSet<String>,
}

/// The rules failed on an event: what was read of it before they ran, for a caller that keeps
/// the event's changes anyway (backfill).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Undecided {
    pub error: EvalError,
    pub view: IssueSnapshot,
    pub history: Vec<HistoryEntry>,
    pub followed: Option<(String, BotComment)>,
}

/// Decides one event: the issue moved by the event's stated changes, the rules run on it, the
/// refused changes marked, the difference planned.
pub fn decide(policies: &PolicySet, input: Inputs<'_>) -> Result<Outcome, Box<Undecided>> {
    let Inputs { event, changes, stored, bot_comments, mut history, roles, recent, comment_acted, config, me, now } = input;
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
    let (mut event_facts, mut followed) = facts::gather(event, &tracker_changes, &policies.commands, bot_comments, me);
    if comment_acted {
        event_facts.forget_comment();
        followed = None;
    }
    event_facts.roles = roles;
    // Rules see what took effect: a refused change never happened.
    history.extend(tracker_changes.iter().cloned());
    let view = moved.after;
    let evaluated = policies.evaluate(&Input {
        issue: &view,
        normalized: &normalized,
        event,
        facts: &event_facts,
        before: before.as_ref().map(|(n, open)| Before { normalized: n, open: *open }),
        first_seen: moved.first_seen,
        history: &history,
        recent,
        config,
        now,
    });
    let decision = match evaluated {
        Ok(d) => d,
        Err(error) => return Err(Box::new(Undecided { error, view, history: tracker_changes, followed })),
    };
    let refused = mark_refused(&mut tracker_changes, &decision);
    let planned = Planned { labels: view::labels(&view, vocab), open: view.open, normalized, fresh: moved.fresh };
    let mut outcome = Outcome { decision, effects: Vec::new(), view, planned, history: tracker_changes, followed, refused };
    outcome.effects = plan_on(&mut outcome, vocab, bot_comments);
    Ok(outcome)
}

/// A revert is destructive: the refused fields are planned again against the issue as the
/// tracker holds it now (`fresh`, read by the caller), not against a view that may be older
/// than a change made since. Only those fields: anything else newer on the tracker arrives
/// with its own delivery. Call it when `outcome.refused` is not empty and a tracker can be read.
pub fn replan_refused(outcome: &mut Outcome, fresh: &IssueSnapshot, vocab: &Vocabulary, bot_comments: &BTreeMap<String, BotComment>) {
    let refused = &outcome.refused;
    let of_refused = |l: &String| vocab.field_of(l).is_some_and(|(f, _)| refused.contains(f));
    let planned = &mut outcome.planned;
    planned.labels.retain(|l| !of_refused(l));
    planned.labels.extend(view::labels(fresh, vocab).into_iter().filter(|l| of_refused(l)));
    if refused.contains("state") {
        planned.open = fresh.open;
    }
    planned.normalized = vocab.normalize(&planned.labels, planned.fresh.as_deref());
    outcome.effects = plan_on(outcome, vocab, bot_comments);
}

/// Plans the decision on `outcome.planned`, against the bot comments as the store will hold
/// them (with the one someone edited followed).
fn plan_on(outcome: &mut Outcome, vocab: &Vocabulary, bot_comments: &BTreeMap<String, BotComment>) -> Vec<Effect> {
    let comments = match &outcome.followed {
        // Someone edited a bot comment (rare): the planner sees the difference from what the
        // rules want and puts it right.
        Some((tag, c)) => {
            let mut m = bot_comments.clone();
            m.insert(tag.clone(), c.clone());
            Cow::Owned(m)
        }
        None => Cow::Borrowed(bot_comments),
    };
    // The planner reads labels and the open state off a snapshot: the view lends its own for
    // the call rather than being copied.
    let view = &mut outcome.view;
    let planned = &mut outcome.planned;
    std::mem::swap(&mut view.labels, &mut planned.labels);
    let open = std::mem::replace(&mut view.open, planned.open);
    let effects = plan::plan(view, &planned.normalized, &outcome.decision, vocab, &comments);
    std::mem::swap(&mut view.labels, &mut planned.labels);
    view.open = open;
    effects
}

impl Outcome {
    /// Folds into `view` what the effects that took hold left on the tracker: `labels` and
    /// `open` (tracker labels, Jira's fields expressed as labels). `view` is then the issue's
    /// next state; returns those labels normalized.
    pub fn fold_applied(&mut self, labels: Vec<String>, open: bool, vocab: &Vocabulary) -> Normalized {
        let after = vocab.normalize(&labels, None);
        let view = &mut self.view;
        match view.native.as_mut() {
            Some(native) => {
                *native = after.to_native();
                view.labels = labels.into_iter().filter(|l| vocab.field_of(l).is_none() && vocab.flag_of(l).is_none()).collect();
            }
            None => view.labels = labels,
        }
        view.open = open;
        after
    }

    /// The history the event leaves: its own changes, then rollgate's changes that answer it,
    /// then the rules' records. rollgate's changes carry the event's (the tracker's) time, so
    /// clocks and metrics come out the same whether the event is processed live or late. The
    /// revert of a refused change is not one: the refused change never took effect.
    /// `after`: what `fold_applied` returned.
    pub fn history_after(&mut self, after: &Normalized, event: &Event) -> Vec<HistoryEntry> {
        let mut out = std::mem::take(&mut self.history);
        out.extend(
            facts::changes(Some((&self.planned.normalized, self.planned.open)), after, self.view.open, BOT, event.occurred_at, Source::Rollgate)
                .into_iter()
                .filter(|h| !self.refused.contains(&h.field)),
        );
        out.extend(self.decision.records.iter().map(|(field, value)| HistoryEntry::record(event.occurred_at, field, value, &event.actor.login)));
        out
    }
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

/// The comment revision an event brings, for the store's "acted once" check: a person's comment
/// with a known revision time (rollgate's own comments are never acted on).
pub fn comment_revision(event: &Event, me: &Me) -> Option<(CommentId, i64)> {
    let c = event.comment.as_ref().filter(|_| !me.caused(event))?;
    c.revised_at.map(|t| (c.id, t.timestamp_millis()))
}

/// Whether the event asks for `/explain`, so the caller reads the recent decisions beforehand
/// (only then: most events need none).
pub fn wants_recent(policies: &PolicySet, event: &Event, bot_comments: &BTreeMap<String, BotComment>, me: &Me, comment_acted: bool) -> bool {
    let Some(c) = event.comment.as_ref().filter(|_| !comment_acted) else { return false };
    // Most comments never name it: only those are read for commands here, ahead of `decide`
    // reading them again (command names are case-insensitive).
    let names_it = c.body.match_indices('/').any(|(i, _)| c.body.get(i + 1..i + 8).is_some_and(|w| w.eq_ignore_ascii_case("explain")));
    if !names_it {
        return false;
    }
    let (f, _) = facts::gather(event, &[], &policies.commands, bot_comments, me);
    f.commands.iter().any(|c| c.name == "explain")
}

//! One event, start to finish: load what it is decided on, decide (the pure step in
//! `crate::decide`), apply the effects, record. Data flows one way; the only writes to the
//! tracker are the planned effects.

mod apply;
mod record;
mod swap;

use crate::clock::Clock;
use crate::decide::{self, facts::Me, Inputs};
use crate::model::{CommentId, Event, IssueSnapshot, StatedChange};
use crate::plan::{self, Effect};
use crate::policy::{PolicyConfig, PolicyHandle, PolicySet, RecentDecision};
use crate::roles::RoleResolver;
use crate::store::InboxItem;
use crate::store::prelude::*;
use crate::model::{BotComment, HistoryEntry};
use crate::tracker::guard::{with_priority, Priority};
use crate::tracker::{Tracker, TrackerError};
use chrono::{DateTime, Utc};
use record::Done;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

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

/// What the store (and, for a thin delivery, the tracker) held for an event.
struct Loaded {
    /// The event with the issue as read from the tracker, when the delivery was too thin.
    read_in: Option<Event>,
    stored: Option<IssueSnapshot>,
    bot_comments: BTreeMap<String, BotComment>,
    /// What the event states, with the other half of a swap taken in (`swap::settle`).
    changes: Vec<StatedChange>,
    absorbed: Vec<(i64, Event)>,
    /// The comment revision this event acts on (none when acted on already).
    revisions: Vec<(CommentId, i64)>,
    comment_acted: bool,
    roles: Vec<String>,
    recent: Vec<RecentDecision>,
    history: Vec<HistoryEntry>,
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
            let priority = if event.kind.is_timer() { Priority::Background } else { Priority::Interactive };
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

    /// One event: load what it is decided on, decide, apply the effects, record.
    async fn run(&self, item: &InboxItem, policies: &PolicySet) -> Result<(), Failure> {
        let started = Instant::now();
        let key = &item.event.issue.key;
        let tracker = self.trackers.for_issue(key).cloned();
        if let (Some(t), Some(installation)) = (&tracker, item.event.installation) {
            t.note_installation(key.project(), installation);
        }
        let me = self.me(tracker.as_ref()).await?;
        // rollgate's own issues (the monthly report, the decisions log, the agenda) are not
        // playbook items: their deliveries (its own writes coming back) change nothing.
        if me.is(&item.event.issue.author) {
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
        let Some(loaded) = self.load(item, policies, tracker.as_ref(), &me).await? else { return Ok(()) };
        let Loaded { read_in, stored, bot_comments, changes, absorbed, revisions, comment_acted, roles, recent, history } = loaded;
        let event = read_in.as_ref().unwrap_or(&item.event);

        let eval_started = Instant::now();
        let decided = decide::decide(
            policies,
            Inputs {
                event,
                changes: &changes,
                stored: stored.as_ref(),
                bot_comments: &bot_comments,
                history,
                roles,
                recent: &recent,
                comment_acted,
                config: &self.config,
                me: &me,
                now: self.clock.now(),
            },
        );
        // A failing rule is retried: an operator may fix the policy before the attempts run out.
        let mut outcome = decided.map_err(|e| Failure::Policy(e.error.to_string()))?;
        let eval_us = eval_started.elapsed().as_micros() as u64;
        crate::metrics::METRICS.observe_eval(eval_us);
        if let (false, Some(t)) = (outcome.refused.is_empty(), &tracker) {
            let fresh = t.get_issue(key).await?;
            decide::replan_refused(&mut outcome, &fresh, &policies.vocabulary, &bot_comments);
        }

        let applied = self.apply_effects(item.id, tracker.as_ref(), &me, &mut outcome, &policies.vocabulary).await?;
        let done = Done { outcome, applied, eval_us, dry_run: tracker.is_none(), started, absorbed, revisions };
        self.record(item, event, policies, &me, done).await
    }

    /// What an event is decided on, read from the store (and, for a thin delivery of an issue
    /// never seen, from the tracker). `None` when the event was recorded here already: the
    /// issue was deleted, or the read showed one of rollgate's own issues.
    async fn load(&self, item: &InboxItem, policies: &PolicySet, tracker: Option<&Arc<dyn Tracker>>, me: &Me) -> Result<Option<Loaded>, Failure> {
        let event = &item.event;
        let key = &event.issue.key;
        let (stored, bot_comments) = match self.store.issue_state(key).await? {
            Some(s) => (Some(s.snapshot), s.bot_comments),
            None => (None, Default::default()),
        };
        if event.kind.is_issue_deleted() {
            self.record_deleted(item, policies, stored).await?;
            return Ok(None);
        }
        // The delivery does not carry the issue (a Jira comment) and rollgate has never seen it:
        // the one read the payload cannot answer. The issue read stands in for the thin snapshot.
        let read_in = match (&stored, tracker) {
            (None, Some(t)) if event.issue.partial => {
                let read = t.get_issue(key).await?;
                if me.is(&read.author) {
                    self.record_own_issue(item, policies).await?;
                    return Ok(None);
                }
                Some(Event { issue: read, ..event.clone() })
            }
            _ => None,
        };
        let event = read_in.as_ref().unwrap_or(event);
        let swap::Settled { changes, absorbed } =
            swap::settle(self.store.as_ref(), item, stored.as_ref(), &policies.vocabulary, me, self.clock.now()).await?;
        // A comment revision is acted on once, whatever delivery brings it (Jira sends each
        // comment twice; a replayed delivery has a new id).
        let mut comment_acted = false;
        let mut revisions = Vec::new();
        if let Some((id, revision)) = decide::comment_revision(event, me) {
            if self.store.comment_acted(key, id, revision).await? {
                comment_acted = true;
            } else {
                revisions.push((id, revision));
            }
        }
        let roles = self.roles.roles_of(&event.actor.login).await;
        let recent = if decide::wants_recent(policies, event, &bot_comments, me, comment_acted) {
            self.recent_decisions(key).await?
        } else {
            Vec::new()
        };
        // Rules see what took effect: a refused change never happened.
        let history = self.store.history(key).await?.into_iter().filter(HistoryEntry::effective).collect();
        Ok(Some(Loaded { read_in, stored, bot_comments, changes, absorbed, revisions, comment_acted, roles, recent, history }))
    }

    /// The issue's next pending delivery that happened, by the tracker's clock, before this one
    /// (the earliest of them). Timers run at their due time, and rollgate's own writes coming
    /// back never go ahead of anything: they always follow what caused them.
    async fn earlier_pending(&self, item: &InboxItem, me: &Me) -> anyhow::Result<Option<i64>> {
        let event = &item.event;
        if event.kind.is_timer() {
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

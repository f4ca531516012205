//! The last step of an event: what it came to, stored in one transaction (the issue's next
//! view, the bot's comments, history, timers, the audit, the inbox row done).

use super::apply::Applied;
use super::{Failure, Processor};
use crate::decide::facts::Me;
use crate::decide::Outcome;
use crate::model::{CommentId, Event, IssueSnapshot};
use crate::policy::decision::Decision;
use crate::policy::PolicySet;
use crate::store::{Completion, InboxItem};
use crate::model::{AuditRecord, HistoryEntry, Source};
use std::time::Instant;

/// What the decide and apply steps came to, for the record.
pub(super) struct Done {
    pub outcome: Outcome,
    pub applied: Applied,
    pub eval_us: u64,
    pub dry_run: bool,
    pub started: Instant,
    /// Later deliveries whose change this event took in (`swap::settle`).
    pub absorbed: Vec<(i64, Event)>,
    /// The comment revision this event acted on.
    pub revisions: Vec<(CommentId, i64)>,
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

impl Processor {
    /// Records a decided event; the store's view follows what the tracker now holds.
    pub(super) async fn record(&self, item: &InboxItem, event: &Event, policies: &PolicySet, me: &Me, done: Done) -> Result<(), Failure> {
        let Done { mut outcome, applied, eval_us, dry_run, started, absorbed, revisions } = done;
        let after = outcome.fold_applied(applied.labels, applied.open, &policies.vocabulary);
        let history = outcome.history_after(&after, event);
        let key = &item.event.issue.key;
        let audit = AuditRecord {
            delivery: event.delivery.to_string(),
            issue_key: key.to_string(),
            kind: event.kind.to_string(),
            policy_version: policies.version.to_string(),
            decision: audited(&outcome.decision, event, me.caused(event))?,
            effects: serde_json::to_value(&applied.effects).map_err(anyhow::Error::from)?,
            dry_run,
            attempt: item.attempts + 1,
            eval_us,
            apply_ms: applied.ms,
            total_ms: started.elapsed().as_millis() as u64,
            processed_at: self.clock.now(),
        };
        // Someone's edit of a bot comment first, then what the effects wrote.
        let bot_comments = outcome.followed.take().into_iter().chain(applied.comments).collect();
        self.store
            .complete(Completion {
                inbox_id: item.id,
                issue: key.clone(),
                timers: outcome.decision.timers.iter().map(|(p, at)| (p.clone(), *at)).collect(),
                snapshot: Some(outcome.view),
                bot_comments,
                history,
                audit,
                absorbed,
                revisions,
            })
            .await?;
        Ok(())
    }

    /// The audit of an event the rules were not asked about, saying why.
    fn nothing_decided(&self, item: &InboxItem, policies: &PolicySet, why: &str) -> AuditRecord {
        let event = &item.event;
        AuditRecord {
            delivery: event.delivery.to_string(),
            issue_key: event.issue.key.to_string(),
            kind: event.kind.to_string(),
            policy_version: policies.version.to_string(),
            decision: serde_json::json!({ "why": [why] }),
            effects: serde_json::json!([]),
            dry_run: false,
            attempt: item.attempts + 1,
            eval_us: 0,
            apply_ms: 0,
            total_ms: 0,
            processed_at: self.clock.now(),
        }
    }

    /// Acknowledges an event on one of rollgate's own issues: audited, nothing else.
    pub(super) async fn record_own_issue(&self, item: &InboxItem, policies: &PolicySet) -> Result<(), Failure> {
        let event = &item.event;
        let audit = self.nothing_decided(item, policies, "one of rollgate's own issues (a report): not a playbook item");
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
    pub(super) async fn record_deleted(&self, item: &InboxItem, policies: &PolicySet, stored: Option<IssueSnapshot>) -> Result<(), Failure> {
        let event = &item.event;
        let history = vec![HistoryEntry {
            at: event.occurred_at,
            field: "state".into(),
            from: Some("open".into()),
            to: Some("deleted".into()),
            actor: event.actor.login.clone(),
            source: Source::Tracker,
            refused: None,
        }];
        let audit = self.nothing_decided(item, policies, "the issue was deleted on the tracker");
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
}

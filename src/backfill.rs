//! `rollgate backfill`: existing issues and their past imported, so clocks and the first monthly
//! report are right from day one. The past is replayed as the changes the tracker states
//! (GitHub's issue events and every revision of every comment, Jira's changelog and comments),
//! one event at a time through the same steps as live processing, with nothing applied: removed
//! is removed, a comment's command runs as it did, a box ticked in an edit counts for whoever
//! edited, and rollgate's own changes in the timeline are rollgate's. Each issue is
//! imported in one transaction together with its "done" mark: an interrupted backfill resumes
//! where it stopped, and never imports an issue twice.

use crate::model::{Actor, CommentId, CommentRef, DeliveryId, Event, IssueSnapshot, StatedChange};
use crate::policy::vocabulary::Vocabulary;
use crate::policy::{PolicyConfig, PolicySet};
use crate::decide::facts::Me;
use crate::decide::{decide, view, Inputs};
use crate::roles::RoleResolver;
use crate::store::prelude::*;
use crate::model::{BotComment, HistoryEntry, Source};
use crate::tracker::github::{GithubTracker, PastEvent};
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::io::Write;

/// How soon after a person's change rollgate's putting it back counts as refusing it.
const REVERT_WINDOW: Duration = Duration::minutes(10);

/// What backfill needs to judge the past as the service would have.
pub struct Judge<'a> {
    pub set: &'a PolicySet,
    pub config: &'a PolicyConfig,
    pub roles: &'a RoleResolver,
    pub me: &'a Me,
}

/// The value `field` takes after `c` on a view that had `labels` (None: the change says nothing
/// about the field).
fn moves_to(c: &StatedChange, field: &str, vocab: &Vocabulary) -> Option<Option<String>> {
    match c {
        StatedChange::LabelAdded { label } => vocab.field_of(label).filter(|(f, _)| *f == field).map(|(_, v)| Some(v.to_string())),
        StatedChange::FieldSet { field: f, to, .. } if f == field => Some(to.clone()),
        StatedChange::Closed { .. } if field == "state" => Some(Some("closed".into())),
        StatedChange::Reopened if field == "state" => Some(Some("open".into())),
        _ => None,
    }
}

fn touches(c: &StatedChange, field: &str, vocab: &Vocabulary) -> bool {
    match c {
        StatedChange::LabelRemoved { label } => vocab.field_of(label).is_some_and(|(f, _)| f == field),
        other => moves_to(other, field, vocab).is_some(),
    }
}

/// Whether rollgate put `field` back to `from` right after event `i` (the timeline's record of a
/// refusal), before anyone else touched it.
fn reverted(events: &[Event], i: usize, field: &str, from: &Option<String>, judge: &Judge<'_>) -> bool {
    let vocab = &judge.set.vocabulary;
    let start = events[i].occurred_at;
    for e in &events[i + 1..] {
        if e.occurred_at - start > REVERT_WINDOW {
            return false;
        }
        let changes = e.stated();
        if !changes.iter().any(|c| touches(c, field, vocab)) {
            continue;
        }
        if !judge.me.caused(e) {
            return false;
        }
        if changes.iter().any(|c| moves_to(c, field, vocab).as_ref() == Some(from)) {
            return true;
        }
    }
    false
}

/// The history an issue's past amounts to: `events` in the tracker's order, replayed from the
/// issue as it was created (`created`; None when its creation is one of the events).
pub async fn replay(judge: &Judge<'_>, created: Option<IssueSnapshot>, events: &[Event]) -> Vec<HistoryEntry> {
    let set = judge.set;
    let mut stored = created;
    let mut bot_comments: BTreeMap<String, BotComment> = BTreeMap::new();
    let mut history: Vec<HistoryEntry> = Vec::new();
    if let Some(s) = &stored {
        let n = view::normalize(s, &set.vocabulary, None);
        history.extend(crate::decide::facts::changes(None, &n, s.open, &s.author, s.created_at, Source::Tracker));
    }
    // Fields whose refused value is still on the tracker until rollgate's revert comes by.
    let mut refused_until: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (i, event) in events.iter().enumerate() {
        let changes = event.stated();
        let seen: Vec<HistoryEntry> = history.iter().filter(|h| h.effective()).cloned().collect();
        let decided = decide(
            set,
            Inputs {
                event,
                changes: &changes,
                stored: stored.as_ref(),
                bot_comments: &bot_comments,
                history: seen,
                roles: judge.roles.roles_of(&event.actor.login).await,
                recent: &[],
                comment_acted: false,
                config: judge.config,
                me: judge.me,
                now: event.occurred_at,
            },
        );
        // The rules of today say why (the refused changes are marked); the timeline says
        // whether it was refused.
        let (decision, mut entries, next, followed) = match decided {
            Ok(o) => (Some(o.decision), o.history, o.view, o.followed),
            Err(e) => {
                tracing::warn!(issue = %event.issue.key.short(), kind = %event.kind, error = %e.error, "backfill: a rule failed on a past event; its changes are kept as stated");
                (None, e.history, e.view, e.followed)
            }
        };
        for h in entries.iter_mut().filter(|h| h.source == Source::Tracker) {
            let was = reverted(events, i, &h.field, &h.from, judge);
            if was {
                h.refused.get_or_insert_with(|| "reverted by rollgate".into());
                refused_until.insert(h.field.clone(), h.from.clone());
            } else {
                h.refused = None;
            }
        }
        // rollgate's putting a refused change back is not a transition either.
        entries.retain(|h| {
            let Some(from) = refused_until.get(&h.field) else { return true };
            if h.source != Source::Rollgate {
                return true;
            }
            if &h.to == from {
                refused_until.remove(&h.field);
            }
            false
        });
        if let Some(d) = &decision {
            // rollgate's change coming back through the timeline was written, with its records,
            // by the event that caused it (live, that change was applied there and its echo
            // changed nothing): a record it repeats at the same instant is that one again.
            let echo = judge.me.caused(event);
            let repeated = |field: &str, value: &str| {
                echo && history.iter().chain(entries.iter()).any(|h| h.source == Source::Policy && h.at == event.occurred_at && h.field == field && h.to.as_deref() == Some(value))
            };
            let records: Vec<HistoryEntry> = d
                .records
                .iter()
                .filter(|(field, value)| !repeated(field, value))
                .map(|(field, value)| HistoryEntry::record(event.occurred_at, field, value, &event.actor.login))
                .collect();
            entries.extend(records);
        }
        if let Some((tag, c)) = followed {
            bot_comments.insert(tag, c);
        }
        if let Some(c) = event.comment.as_ref().filter(|c| judge.me.is(&c.author.login)) {
            if let Some(tag) = crate::policy::boxes::marker_tag(&c.body) {
                let text = c.body.clone();
                bot_comments.insert(tag.to_string(), BotComment { id: c.id, body_hash: crate::plan::body_hash(&text), body: text });
            }
        }
        history.extend(entries);
        stored = Some(next);
    }
    history
}

pub struct Progress {
    pub issues: usize,
    pub skipped: usize,
    pub rows: usize,
}

impl Progress {
    fn show(&self, what: &str, quiet: bool) {
        if !quiet {
            eprint!("\rbackfill {what}: {} imported, {} already done, {} history rows", self.issues, self.skipped, self.rows);
            let _ = std::io::stderr().flush();
        }
    }
}

/// An event of the past as the tracker would have delivered it.
fn past_event(issue: &IssueSnapshot, kind: &str, actor: &str, at: DateTime<Utc>, changes: Vec<StatedChange>, comment: Option<CommentRef>) -> Event {
    let mut snapshot = issue.clone();
    // The snapshot of then is unknown: it must never stand for the issue (only the changes do).
    snapshot.partial = true;
    snapshot.updated_at = at;
    Event {
        delivery: DeliveryId(format!("backfill:{}:{kind}:{}", issue.key, at.timestamp_millis())),
        kind: kind.into(),
        issue: snapshot,
        actor: Actor { login: actor.to_string(), is_bot: false },
        label: None,
        comment,
        occurred_at: at,
        received_at: at,
        installation: None,
        changes,
        taken_in_by: None,
    }
}

/// Label events this close to the issue's creation, by its author, are part of it: GitHub
/// lists a `labeled` per label an issue was opened with (live, `opened` carries them).
const CREATION: Duration = Duration::seconds(2);

fn at_creation(issue: &IssueSnapshot, e: &PastEvent) -> bool {
    e.kind == "labeled" && e.actor == issue.author && e.at - issue.created_at <= CREATION && e.at >= issue.created_at
}

/// The issue as it was created: today's labels with every later label event undone, open.
fn github_creation(issue: &IssueSnapshot, events: &[PastEvent]) -> IssueSnapshot {
    let mut created = issue.clone();
    created.open = true;
    created.state_reason = None;
    created.closed_at = None;
    created.updated_at = issue.created_at;
    created.partial = false;
    for e in events.iter().rev().filter(|e| !at_creation(issue, e)) {
        match (e.kind.as_str(), &e.label) {
            ("labeled", Some(l)) => created.labels.retain(|x| x != l),
            ("unlabeled", Some(l)) if !created.has_label(l) => created.labels.push(l.clone()),
            _ => {}
        }
    }
    // A label added at creation and removed later is back on the issue as created.
    for e in events.iter().filter(|e| at_creation(issue, e)) {
        if let Some(l) = e.label.as_ref().filter(|l| !created.has_label(l)) {
            created.labels.push(l.clone());
        }
    }
    created
}

/// GitHub's timeline of one issue as events, oldest first: its creation (`issues.opened`, by
/// its author, with the labels it was opened with), then label and state changes and every
/// revision of every comment. At the same second (GitHub's resolution) a person's change
/// goes before rollgate's, which only ever answers one; and the two halves of a label swap
/// (one field's label removed and another added by the same actor at the same second) are one
/// change, as live processing takes them.
pub fn github_events(issue: &IssueSnapshot, past: &[PastEvent], comments: &[crate::tracker::github::PastComment], judge: &Judge<'_>) -> Vec<Event> {
    let mut out = Vec::new();
    for e in past.iter().filter(|e| !at_creation(issue, e)) {
        let changes = match (e.kind.as_str(), &e.label) {
            ("labeled", Some(l)) => vec![StatedChange::LabelAdded { label: l.clone() }],
            ("unlabeled", Some(l)) => vec![StatedChange::LabelRemoved { label: l.clone() }],
            ("closed", _) => vec![StatedChange::Closed { reason: e.state_reason.clone() }],
            ("reopened", _) => vec![StatedChange::Reopened],
            _ => continue,
        };
        out.push(past_event(issue, &format!("issues.{}", e.kind), &e.actor, e.at, changes, None));
    }
    for c in comments {
        let mut previous: Option<String> = None;
        for (n, rev) in c.revisions.iter().enumerate() {
            let kind = if n == 0 { "issue_comment.created" } else { "issue_comment.edited" };
            let comment = CommentRef {
                id: CommentId(c.id),
                body: rev.body.clone(),
                author: Actor { login: c.author.clone(), is_bot: false },
                previous_body: previous.clone(),
                revised_at: Some(rev.at),
            };
            out.push(past_event(issue, kind, &rev.editor, rev.at, Vec::new(), Some(comment)));
            previous = Some(rev.body.clone());
        }
    }
    // Stable: at the same second, people first, then GitHub's own order (labels, then
    // comments, each comment's revisions in order).
    out.sort_by_key(|e| (e.occurred_at, judge.me.caused(e)));
    let mut out = join_swaps(out, &judge.set.vocabulary);
    let mut opened = past_event(issue, "issues.opened", &issue.author, issue.created_at, vec![StatedChange::Created], None);
    opened.issue = github_creation(issue, past);
    opened.delivery = DeliveryId(format!("backfill:{}:issues.opened", issue.key));
    out.insert(0, opened);
    // Each a delivery of its own (a command's record names the delivery that ran it).
    for (i, e) in out.iter_mut().enumerate().skip(1) {
        e.delivery = DeliveryId(format!("{}:{i}", e.delivery.0));
    }
    out
}

/// The field a label event moves, and whether it adds.
fn label_move(e: &Event, vocab: &Vocabulary) -> Option<(String, bool)> {
    match e.changes.as_slice() {
        [StatedChange::LabelAdded { label }] => vocab.field_of(label).map(|(f, _)| (f.to_string(), true)),
        [StatedChange::LabelRemoved { label }] => vocab.field_of(label).map(|(f, _)| (f.to_string(), false)),
        _ => None,
    }
}

/// The halves of label swaps joined: a removal and an addition on one field, by one actor, at
/// one instant, become one event (the removal's place, both changes, the removal first).
fn join_swaps(events: Vec<Event>, vocab: &Vocabulary) -> Vec<Event> {
    let mut slots: Vec<Option<Event>> = events.into_iter().map(Some).collect();
    for i in 0..slots.len() {
        let Some((field, false)) = slots[i].as_ref().and_then(|e| label_move(e, vocab)) else { continue };
        let (at, actor) = {
            let e = slots[i].as_ref().expect("present");
            (e.occurred_at, e.actor.login.clone())
        };
        let partner = (0..slots.len()).find(|&j| {
            j != i
                && slots[j].as_ref().is_some_and(|o| {
                    o.occurred_at == at && o.actor.login == actor && label_move(o, vocab).as_ref() == Some(&(field.clone(), true))
                })
        });
        if let Some(j) = partner {
            let added = slots[j].take().expect("present");
            let e = slots[i].as_mut().expect("present");
            e.changes.extend(added.changes);
            e.kind = "issues.labeled".into();
        }
    }
    slots.into_iter().flatten().collect()
}

pub async fn github(store: &dyn Store, judge: &Judge<'_>, tracker: &GithubTracker, repo: &str, quiet: bool) -> anyhow::Result<Progress> {
    let job = format!("backfill:github:{repo}");
    let mut p = Progress { issues: 0, skipped: 0, rows: 0 };
    let mut page = 1;
    while let Some(batch) = tracker.list_issues(repo, page).await? {
        for issue in batch {
            let period = format!("#{}", issue.key.number());
            if store.job_result(&job, &period).await?.is_some() {
                p.skipped += 1;
                continue;
            }
            let past = tracker.issue_events(&issue.key).await?;
            let comments = tracker.past_comments(&issue.key).await?;
            let events = github_events(&issue, &past, &comments, judge);
            let history = replay(judge, None, &events).await;
            store.import(&issue, &history, Some((&job, &period))).await?;
            p.issues += 1;
            p.rows += history.len();
            p.show(repo, quiet);
        }
        page += 1;
    }
    if !quiet {
        eprintln!();
    }
    Ok(p)
}

/// `rollgate backfill --jira PROJECT`: the same, from each issue's changelog and comments. The
/// issue as created is today's fields with every changelog entry undone, newest first. Jira
/// keeps no comment edit history: each comment is replayed once, as created, with today's text
/// (`JiraTracker::past_comments`), so a tick made by editing a comment counts for no one.
pub async fn jira(store: &dyn Store, judge: &Judge<'_>, tracker: &crate::tracker::jira::JiraTracker, project: &str, quiet: bool) -> anyhow::Result<Progress> {
    let job = format!("backfill:jira:{project}");
    let fields = tracker.fields();
    let mut p = Progress { issues: 0, skipped: 0, rows: 0 };
    let mut page = crate::tracker::jira::SearchPage::default();
    while let Some(batch) = tracker.list_issues(project, &mut page).await? {
        for issue in batch {
            let period = issue.key.short();
            if store.job_result(&job, &period).await?.is_some() {
                p.skipped += 1;
                continue;
            }
            let log = tracker.changelog(&issue.key).await?;
            let mut events = Vec::new();
            for change in &log {
                let at = crate::ingest::jira::jira_time(&change.created).unwrap_or(issue.created_at);
                let actor = change.author.as_ref().and_then(|a| a["accountId"].as_str().or(a["name"].as_str())).unwrap_or("").to_string();
                let changes = crate::ingest::jira::stated_changes(&change.log, &fields);
                if !changes.is_empty() {
                    events.push(past_event(&issue, "issues.edited", &actor, at, changes, None));
                }
            }
            let mut created = issue.clone();
            for e in events.iter().rev() {
                for c in e.changes.iter().rev() {
                    view::undo(&mut created, c, &judge.set.vocabulary);
                }
            }
            created.updated_at = issue.created_at;
            for c in tracker.past_comments(&issue.key).await? {
                let comment = CommentRef {
                    id: CommentId(c.id),
                    body: c.body,
                    author: Actor { login: c.author.clone(), is_bot: false },
                    previous_body: None,
                    revised_at: Some(c.created),
                };
                events.push(past_event(&issue, "issue_comment.created", &c.author, c.created, Vec::new(), Some(comment)));
            }
            events.sort_by_key(|e| e.occurred_at);
            let history = replay(judge, Some(created), &events).await;
            store.import(&issue, &history, Some((&job, &period))).await?;
            p.issues += 1;
            p.rows += history.len();
            p.show(project, quiet);
        }
    }
    if !quiet {
        eprintln!();
    }
    Ok(p)
}

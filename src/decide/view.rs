//! The stored view of an issue, moved forward by what the tracker states. The playbook's fields
//! move only by stated changes (and by rollgate's own effects); a delivery's snapshot is trusted
//! only for what no change names (title, body, assignees), only when it is newer than the view
//! and only when it is whole. So a late delivery carrying an older snapshot, or a Jira comment
//! event carrying a thin one, never blanks or rewinds a field.

use crate::model::{Event, IssueSnapshot, NativeFields, StatedChange};
use crate::policy::vocabulary::{Normalized, Vocabulary};
use chrono::Duration;

/// Label events this close to the issue's creation are part of it: GitHub sends `opened` and
/// then a `labeled` per label the issue was created with, in any order.
const CREATION: Duration = Duration::seconds(2);

/// An event's changes applied to the issue.
#[derive(Debug, Clone)]
pub struct Advanced {
    /// The issue before the event; `None` when the event is its creation (nothing was before).
    pub before: Option<IssueSnapshot>,
    pub after: IssueSnapshot,
    /// rollgate had no view of the issue: what `before` holds was read off the snapshot, not
    /// watched, so who set it and when is unknown.
    pub first_seen: bool,
    /// The label the event added: it wins when a field carries two values (a swap half done).
    pub fresh: Option<String>,
}

/// Whether `event` creates the issue, given what the store holds.
pub fn is_creation(stored: Option<&IssueSnapshot>, event: &Event, changes: &[StatedChange]) -> bool {
    if changes.contains(&StatedChange::Created) {
        return true;
    }
    let label_change = changes.iter().any(|c| matches!(c, StatedChange::LabelAdded { .. } | StatedChange::LabelRemoved { .. }));
    stored.is_none() && label_change && event.occurred_at - event.issue.created_at <= CREATION
}

/// Moves the view forward by `changes`. `stored` is the view the store holds (None: never seen).
pub fn advance(stored: Option<&IssueSnapshot>, event: &Event, changes: &[StatedChange], vocab: &Vocabulary) -> Advanced {
    let fresh = changes.iter().rev().find_map(|c| match c {
        StatedChange::LabelAdded { label } if vocab.field_of(label).is_some() => Some(label.clone()),
        _ => None,
    });
    let creation = is_creation(stored, event, changes);
    let before = match stored {
        Some(s) => Some(refreshed(s, &event.issue)),
        None if creation => None,
        // Never seen: the snapshot is all there is; the changes it already shows are undone.
        None => {
            let mut b = event.issue.clone();
            b.partial = false;
            for c in changes.iter().rev() {
                undo(&mut b, c, vocab);
            }
            Some(b)
        }
    };
    let mut after = match &before {
        Some(b) => b.clone(),
        None => {
            let mut a = event.issue.clone();
            a.partial = false;
            a
        }
    };
    for c in changes {
        apply(&mut after, c, event, vocab);
    }
    Advanced { before, after, first_seen: stored.is_none(), fresh }
}

/// The stored view with what a whole, newer snapshot says of things no stated change covers.
fn refreshed(stored: &IssueSnapshot, snapshot: &IssueSnapshot) -> IssueSnapshot {
    let mut v = stored.clone();
    if snapshot.partial || snapshot.updated_at < stored.updated_at {
        return v;
    }
    v.title = snapshot.title.clone();
    v.body = snapshot.body.clone();
    v.url = snapshot.url.clone();
    v.author = snapshot.author.clone();
    v.assignees = snapshot.assignees.clone();
    v.created_at = snapshot.created_at;
    v.updated_at = snapshot.updated_at;
    v
}

/// The labels a view stands for in the vocabulary (Jira's native fields expressed as labels).
pub fn labels(view: &IssueSnapshot, vocab: &Vocabulary) -> Vec<String> {
    match &view.native {
        Some(n) => vocab.express(n, &view.labels),
        None => view.labels.clone(),
    }
}

pub fn normalize(view: &IssueSnapshot, vocab: &Vocabulary, fresh: Option<&str>) -> Normalized {
    vocab.normalize(&labels(view, vocab), fresh)
}

fn add_label(v: &mut IssueSnapshot, label: &str) {
    if !v.has_label(label) {
        v.labels.push(label.to_string());
    }
}

fn native(v: &mut IssueSnapshot) -> Option<&mut NativeFields> {
    v.native.as_mut()
}

/// Sets a playbook field, wherever the view holds it.
fn set_field(v: &mut IssueSnapshot, field: &str, to: Option<&str>, vocab: &Vocabulary) {
    if let Some(n) = native(v) {
        match to {
            Some(t) => n.fields.insert(field.to_string(), t.to_string()),
            None => n.fields.remove(field),
        };
        return;
    }
    let keep = to.and_then(|t| vocab.field_label(field, t)).map(String::from);
    v.labels.retain(|l| vocab.field_of(l).is_none_or(|(f, _)| f != field) || Some(l) == keep.as_ref());
    if let Some(k) = keep {
        add_label(v, &k);
    }
}

fn set_flag(v: &mut IssueSnapshot, flag: &str, on: bool, vocab: &Vocabulary) {
    if let Some(n) = native(v) {
        if on {
            n.flags.insert(flag.to_string());
        } else {
            n.flags.remove(flag);
        }
        return;
    }
    if let Some(label) = vocab.flag_label(flag) {
        if on {
            add_label(v, label);
        } else {
            v.labels.retain(|l| l != label);
        }
    }
}

/// A label change on a view. Where fields are held natively (Jira), a vocabulary label stands
/// for its field's value or its flag.
fn set_label(v: &mut IssueSnapshot, label: &str, on: bool, vocab: &Vocabulary) {
    if let Some(n) = v.native.as_mut() {
        if let Some(flag) = vocab.flag_of(label) {
            return set_flag(v, flag, on, vocab);
        }
        if let Some((field, value)) = vocab.field_of(label) {
            if on {
                n.fields.insert(field.to_string(), value.to_string());
            } else if n.fields.get(field).is_some_and(|now| now == value) {
                n.fields.remove(field);
            }
            return;
        }
    }
    if on {
        add_label(v, label);
    } else {
        v.labels.retain(|l| l != label);
    }
}

pub fn apply(v: &mut IssueSnapshot, c: &StatedChange, event: &Event, vocab: &Vocabulary) {
    match c {
        StatedChange::Created => {}
        StatedChange::LabelAdded { label } => set_label(v, label, true, vocab),
        StatedChange::LabelRemoved { label } => set_label(v, label, false, vocab),
        StatedChange::FieldSet { field, to, .. } => set_field(v, field, to.as_deref(), vocab),
        StatedChange::FlagSet { flag, on } => set_flag(v, flag, *on, vocab),
        StatedChange::Closed { reason } => {
            v.open = false;
            v.state_reason = reason.clone();
            v.closed_at = event.issue.closed_at.or(Some(event.occurred_at));
        }
        StatedChange::Reopened => {
            v.open = true;
            v.state_reason = Some("reopened".into());
            v.closed_at = None;
        }
    }
}

/// Takes a change back out of a snapshot that already shows it.
pub fn undo(v: &mut IssueSnapshot, c: &StatedChange, vocab: &Vocabulary) {
    match c {
        StatedChange::Created => {}
        StatedChange::LabelAdded { label } => set_label(v, label, false, vocab),
        StatedChange::LabelRemoved { label } => set_label(v, label, true, vocab),
        StatedChange::FieldSet { field, from, .. } => set_field(v, field, from.as_deref(), vocab),
        StatedChange::FlagSet { flag, on } => set_flag(v, flag, !on, vocab),
        StatedChange::Closed { .. } => {
            v.open = true;
            v.closed_at = None;
        }
        StatedChange::Reopened => v.open = false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Actor, DeliveryId, IssueKey};
    use chrono::{DateTime, Utc};

    fn vocab() -> Vocabulary {
        Vocabulary::parse("[github.fields.lane]\nA = \"lane/A\"\nB = \"lane/B\"\n[github.flags]\nhot = \"hot\"\n").unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn snapshot(labels: &[&str], updated: &str) -> IssueSnapshot {
        IssueSnapshot {
            key: IssueKey::github("o/r", 1),
            title: format!("title at {updated}"),
            body: String::new(),
            url: String::new(),
            open: true,
            state_reason: None,
            author: "a".into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            assignees: vec![],
            created_at: at("2026-11-02T09:00:00Z"),
            updated_at: at(updated),
            closed_at: None,
            native: None,
            partial: false,
        }
    }

    fn event(snapshot: IssueSnapshot, changes: Vec<StatedChange>) -> Event {
        Event {
            delivery: DeliveryId("d".into()),
            kind: "issues.labeled".into(),
            occurred_at: snapshot.updated_at,
            received_at: snapshot.updated_at,
            issue: snapshot,
            actor: Actor { login: "pm".into(), is_bot: false },
            label: None,
            comment: None,
            installation: None,
            changes,
            taken_in_by: None,
        }
    }

    #[test]
    fn an_older_snapshot_never_rewinds_the_view_and_only_the_stated_change_moves_it() {
        let v = vocab();
        let stored = snapshot(&["lane/B", "hot"], "2026-11-02T10:00:00Z");
        // A late delivery: its snapshot is from before rollgate labelled the issue.
        let late = event(snapshot(&["x"], "2026-11-02T09:30:00Z"), vec![StatedChange::LabelAdded { label: "x".into() }]);
        let a = advance(Some(&stored), &late, &late.changes, &v);
        assert_eq!(a.after.labels, vec!["lane/B", "hot", "x"]);
        assert_eq!(a.after.title, stored.title, "an older snapshot does not refresh the title either");
        assert!(!a.first_seen);
    }

    #[test]
    fn a_newer_whole_snapshot_refreshes_what_no_change_names_but_never_the_labels() {
        let v = vocab();
        let stored = snapshot(&["lane/B"], "2026-11-02T10:00:00Z");
        let newer = event(snapshot(&[], "2026-11-02T11:00:00Z"), vec![]);
        let a = advance(Some(&stored), &newer, &[], &v);
        assert_eq!(a.after.labels, vec!["lane/B"]);
        assert_eq!(a.after.title, "title at 2026-11-02T11:00:00Z");
    }

    #[test]
    fn a_first_sighting_undoes_the_stated_change_to_find_the_issue_before_it() {
        let v = vocab();
        let e = event(snapshot(&["lane/A", "hot"], "2026-11-05T10:00:00Z"), vec![StatedChange::LabelAdded { label: "lane/A".into() }]);
        let a = advance(None, &e, &e.changes, &v);
        assert_eq!(a.before.unwrap().labels, vec!["hot"]);
        assert_eq!(a.after.labels, vec!["hot", "lane/A"]);
        assert!(a.first_seen);
        assert_eq!(a.fresh.as_deref(), Some("lane/A"));
    }

    #[test]
    fn labels_given_at_creation_are_the_creation_whichever_delivery_comes_first() {
        let v = vocab();
        let e = event(snapshot(&["lane/A"], "2026-11-02T09:00:01Z"), vec![StatedChange::LabelAdded { label: "lane/A".into() }]);
        assert!(is_creation(None, &e, &e.changes));
        let a = advance(None, &e, &e.changes, &v);
        assert!(a.before.is_none());
        let later = event(snapshot(&["lane/A"], "2026-11-03T09:00:00Z"), e.changes.clone());
        assert!(!is_creation(None, &later, &later.changes));
    }

    #[test]
    fn jira_fields_move_natively_and_mapped_labels_are_flags() {
        let v = vocab();
        let mut stored = snapshot(&["other"], "2026-11-02T10:00:00Z");
        stored.native = Some(NativeFields { fields: [("lane".to_string(), "B".to_string())].into(), flags: Default::default() });
        let changes = vec![
            StatedChange::FieldSet { field: "lane".into(), from: Some("B".into()), to: Some("A".into()) },
            StatedChange::LabelAdded { label: "hot".into() },
        ];
        let e = event(snapshot(&[], "2026-11-02T11:00:00Z"), changes.clone());
        let a = advance(Some(&stored), &e, &changes, &v);
        assert_eq!(normalize(&a.after, &v, None).fields["lane"], "A");
        assert!(a.after.native.as_ref().unwrap().flags.contains("hot"));
        assert_eq!(a.after.labels, vec!["other"]);
    }
}

//! A swap is one change. Replacing the value of a single-valued field by label (`lane/B` →
//! `lane/A`) reaches rollgate as two deliveries, `unlabeled` and `labeled`, in either order, each
//! carrying the issue as it was when it was sent. Judged one at a time, the first half shows a
//! state nobody meant: a lane-less bug (which the rules would give its default lane back) or two
//! lanes at once. So before an event that leaves a single-valued field empty, or gives it a
//! second value, is judged, its other half is looked for among the issue's next deliveries and
//! taken in: the event is judged as the swap old → new, and the other delivery, rewritten to
//! state nothing (`taken_in_by`), still runs in its turn, so order and the audit are kept.
//!
//! The other half must be by the same person, within `WINDOW` by the tracker's clock, with only
//! that person's label changes of other fields (a label picker sends one delivery per label it
//! changed) and rollgate's own echoes in between: anything else (a comment, someone else, the
//! same field) ends the search, so a later, separate change is never mistaken for it.
//!
//! Why the inbox and not a read of the tracker: the inbox says who made the other half and when,
//! so a later change by someone else is never mistaken for it; GitHub sends both halves at the
//! same moment, so the other half is almost always there already or a few milliseconds away. A
//! half whose other half is not there yet waits for it (its worker holds the issue, checking the
//! inbox again every `RECHECK`), at most `WINDOW`, and only while it is fresh; the issue's later
//! events wait behind it, which keeps per-issue order. Judged alone, an emptying removal would be judged empty, and an added second value
//! would have rollgate remove the old label the person is removing too (or, refused, put it
//! back and then judge the removal again). Past the window it is judged alone: a removal as the
//! field emptied, an addition as old → new (the planner removes the old value).

use crate::decide::facts::Me;
use crate::decide::view;
use crate::model::{Event, IssueSnapshot, StatedChange};
use crate::policy::vocabulary::Vocabulary;
use crate::store::InboxItem;
use crate::store::prelude::*;
use chrono::{DateTime, Duration, Utc};

/// How far apart (tracker time, and after arrival) the two halves of a swap may be.
pub const WINDOW: Duration = Duration::seconds(3);
/// How often a waiting half looks for its other half again.
const RECHECK: std::time::Duration = std::time::Duration::from_millis(100);
/// How many of the issue's later deliveries are looked through.
const LOOK_AHEAD: usize = 20;

/// The changes to judge an event with; `absorbed` are the inbox rows taken in, rewritten.
#[derive(Debug, PartialEq)]
pub struct Settled {
    pub changes: Vec<StatedChange>,
    pub absorbed: Vec<(i64, Event)>,
}

/// The other half a change needs to be a whole swap.
enum Want {
    /// A value for `field`, whose only value this event removes.
    Value { field: String },
    /// The removal of `label`, the old value this event's addition would sit beside.
    Removal { label: String },
}

fn wants(labels: &[String], changes: &[StatedChange], vocab: &Vocabulary) -> Vec<Want> {
    let field_of = |l: &str| vocab.field_of(l).map(|(f, _)| f.to_string());
    let added_to = |field: &str| {
        changes.iter().any(|c| matches!(c, StatedChange::LabelAdded { label } if field_of(label).as_deref() == Some(field)))
    };
    let removed = |label: &str| changes.iter().any(|c| matches!(c, StatedChange::LabelRemoved { label: l } if l == label));
    let mut out = Vec::new();
    for c in changes {
        match c {
            StatedChange::LabelRemoved { label } => {
                let Some(field) = field_of(label) else { continue };
                let others = labels.iter().any(|l| l != label && field_of(l).as_deref() == Some(field.as_str()));
                if labels.contains(label) && !others && !added_to(&field) {
                    out.push(Want::Value { field });
                }
            }
            StatedChange::LabelAdded { label } => {
                let Some(field) = field_of(label) else { continue };
                if labels.contains(label) {
                    continue;
                }
                for old in labels.iter().filter(|l| *l != label && field_of(l).as_deref() == Some(field.as_str())) {
                    if !removed(old) {
                        out.push(Want::Removal { label: old.clone() });
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The other half of `event`'s swap among the issue's next deliveries `later`: its row and change.
fn other_half(event: &Event, later: &[(i64, Event)], want: &Want, taken: &[(i64, Event)], vocab: &Vocabulary, me: &Me) -> Option<(i64, StatedChange)> {
    let field_of = |l: &str| vocab.field_of(l).map(|(f, _)| f.to_string());
    let wanted_field = match want {
        Want::Value { field } => field.clone(),
        Want::Removal { label } => field_of(label)?,
    };
    for (id, e) in later {
        // rollgate's own writes coming back may fall between the halves: they change nothing.
        if taken.iter().any(|(t, _)| t == id) || me.caused(e) {
            continue;
        }
        let same_person = e.actor.login.eq_ignore_ascii_case(&event.actor.login);
        if !same_person || (e.occurred_at - event.occurred_at).abs() > WINDOW {
            return None;
        }
        let [c] = <[StatedChange; 1]>::try_from(e.stated()).ok()?;
        let label = match &c {
            StatedChange::LabelAdded { label } | StatedChange::LabelRemoved { label } => label.clone(),
            _ => return None,
        };
        if field_of(&label).as_deref() != Some(wanted_field.as_str()) {
            continue; // Another label of the same picker change.
        }
        let fits = match (want, &c) {
            (Want::Value { .. }, StatedChange::LabelAdded { .. }) => true,
            (Want::Removal { label: old }, StatedChange::LabelRemoved { label }) => label == old,
            _ => false,
        };
        return fits.then_some((*id, c));
    }
    None
}

/// The changes to judge `item` with: its own, and the other half of its swap when there is one.
/// Waits for a half that has not arrived yet, as long as the event is fresh (arrived less than
/// `WINDOW` ago by rollgate's clock) and for at most `WINDOW` of real time: how long a delivery
/// takes to travel is the network's time, whatever clock the rules run on.
pub async fn settle(
    store: &dyn Store,
    item: &InboxItem,
    stored: Option<&IssueSnapshot>,
    vocab: &Vocabulary,
    me: &Me,
    now: DateTime<Utc>,
) -> anyhow::Result<Settled> {
    let event = &item.event;
    let mut changes = event.stated();
    // rollgate's own changes come back as no-ops; a first sighting has no value to swap out.
    let Some(stored) = stored.filter(|_| !me.caused(event)) else {
        return Ok(Settled { changes, absorbed: Vec::new() });
    };
    let wanted = wants(&view::labels(stored, vocab), &changes, vocab);
    if wanted.is_empty() {
        return Ok(Settled { changes, absorbed: Vec::new() });
    }
    let fresh = now < event.received_at + WINDOW;
    let waiting_since = tokio::time::Instant::now();
    let mut later = store.pending_after(&event.issue.key, item.id, LOOK_AHEAD).await?;
    let mut absorbed: Vec<(i64, Event)> = Vec::new();
    for want in wanted {
        loop {
            if let Some((id, c)) = other_half(event, &later, &want, &absorbed, vocab, me) {
                let mut taken = later.iter().find(|(i, _)| *i == id).map(|(_, e)| e.clone()).expect("found among them");
                taken.taken_in_by = Some(event.delivery.clone());
                absorbed.push((id, taken));
                changes.push(c);
                break;
            }
            if !fresh || waiting_since.elapsed() >= WINDOW.to_std().expect("a positive window") {
                break;
            }
            tokio::time::sleep(RECHECK).await;
            later = store.pending_after(&event.issue.key, item.id, LOOK_AHEAD).await?;
        }
    }
    Ok(Settled { changes, absorbed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vocabulary {
        Vocabulary::parse("[github.fields.lane]\nA = \"lane/A\"\nB = \"lane/B\"\n[github.flags]\nhot = \"hot\"\n").unwrap()
    }

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_a_removal_that_empties_a_field_or_an_addition_beside_a_value_wants_another_half() {
        let v = vocab();
        let removed = |l: &str| vec![StatedChange::LabelRemoved { label: l.into() }];
        let added = |l: &str| vec![StatedChange::LabelAdded { label: l.into() }];
        assert!(matches!(&wants(&labels(&["lane/B"]), &removed("lane/B"), &v)[..], [Want::Value { field }] if field == "lane"));
        assert!(wants(&labels(&["lane/B", "lane/A"]), &removed("lane/B"), &v).is_empty(), "a value is left");
        assert!(wants(&labels(&["hot"]), &removed("hot"), &v).is_empty(), "a flag is not single-valued");
        assert!(wants(&labels(&["lane/B"]), &removed("lane/A"), &v).is_empty(), "not on the issue: nothing to swap");
        assert!(matches!(&wants(&labels(&["lane/B"]), &added("lane/A"), &v)[..], [Want::Removal { label }] if label == "lane/B"));
        assert!(wants(&labels(&[]), &added("lane/A"), &v).is_empty());
        let both = vec![StatedChange::LabelRemoved { label: "lane/B".into() }, StatedChange::LabelAdded { label: "lane/A".into() }];
        assert!(wants(&labels(&["lane/B"]), &both, &v).is_empty(), "already whole");
    }
}

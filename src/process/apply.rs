//! Effects onto the tracker, one call each, and what they did.

use crate::model::{CommentId, IssueSnapshot};
use crate::plan::{marker, Effect};
use crate::tracker::{Tracker, TrackerError};

/// Applies one effect. Returns what happened and, for comments, the comment's id.
pub async fn apply(
    tracker: &dyn Tracker,
    issue: &IssueSnapshot,
    effect: &Effect,
) -> Result<(&'static str, Option<CommentId>), TrackerError> {
    let key = &issue.key;
    match effect {
        Effect::AddLabels { labels } => tracker.add_labels(key, labels).await.map(|_| ("applied", None)),
        Effect::RemoveLabel { label } => tracker.remove_label(key, label).await.map(|_| ("applied", None)),
        Effect::SetOpen { open } => tracker.set_open(key, *open, None).await.map(|_| ("applied", None)),
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

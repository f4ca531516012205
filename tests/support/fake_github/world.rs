//! What the fake GitHub holds (issues, labels, comments, the clock) and the changes made to it.
//! Every change goes through one of the `World` methods below, whoever makes it (a REST call,
//! rollgate's included, or a test person), and returns what GitHub states about it: the list
//! of `Stated` changes that become webhook deliveries (hooks.rs). Set-up helpers (`seed` and
//! friends in mod.rs) write the fields directly and state nothing.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::faults::Fault;

pub type Key = (String, u64);

#[derive(Debug, Clone, Default)]
pub struct FakeIssue {
    pub title: String,
    pub body: String,
    /// The issue's timeline, as GET .../events returns it (backfill reads it): every label,
    /// close and reopen made through `World` is appended (`record`), and `add_event` adds
    /// set-up entries.
    pub events: Vec<Value>,
    pub labels: Vec<String>,
    pub open: bool,
    pub state_reason: Option<String>,
    pub comments: Vec<FakeComment>,
    /// Who opened it (`issue.user`).
    pub author: String,
    pub created_at: DateTime<Utc>,
    /// Moves to the world's now on every change (GitHub: one-second resolution).
    pub updated_at: DateTime<Utc>,
    /// Set by a close; GitHub keeps the last one on a reopened issue (see issues.reopened.json).
    pub closed_at: Option<DateTime<Utc>>,
    /// The organisation issue type it has (`type` in its JSON), native.rs.
    pub issue_type: Option<super::native::IssueType>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeComment {
    pub id: u64,
    pub body: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Its edit history, oldest first, as GraphQL's `userContentEdits` holds it (served newest
    /// first): empty while never edited; the first edit adds the original text (by its author,
    /// at its creation) and the new text.
    pub edits: Vec<FakeEdit>,
}

/// One revision of a comment in its edit history.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeEdit {
    pub at: DateTime<Utc>,
    pub editor: String,
    /// The whole text of this revision (what GitHub's `diff` holds in practice); `None` once
    /// the revision was deleted from the history.
    pub body: Option<String>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl FakeComment {
    /// A comment for set-up helpers (`set_comments`), dated at the epoch like a seeded issue
    /// that never changed.
    pub fn new(id: u64, body: &str, author: &str) -> FakeComment {
        FakeComment { id, body: body.into(), author: author.into(), created_at: DateTime::UNIX_EPOCH, updated_at: DateTime::UNIX_EPOCH, edits: Vec::new() }
    }
}

/// Who made a change: the `sender` of its deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub login: String,
    pub bot: bool,
}

impl Actor {
    pub fn person(login: &str) -> Actor {
        Actor { login: login.to_string(), bot: false }
    }

    pub fn bot(login: &str) -> Actor {
        Actor { login: login.to_string(), bot: true }
    }
}

/// One change as GitHub states it in a delivery (`issues.<action>` or `issue_comment.<action>`).
#[derive(Debug, Clone)]
pub enum Stated {
    Opened,
    Labeled(String),
    Unlabeled(String),
    Closed,
    Reopened,
    Edited { title_from: Option<String>, body_from: Option<String> },
    CommentCreated(u64),
    CommentEdited { id: u64, from: String },
    /// The comment as it was: it is gone from the issue by the time the payload is built.
    CommentDeleted(FakeComment),
    /// `issues.typed`: the issue got this type (set, or changed from another one).
    Typed(super::native::IssueType),
    /// `issues.untyped`: the issue's type was cleared; this is the one it had.
    Untyped(super::native::IssueType),
}

/// What a refused change lacked (the REST layer maps it to GitHub's answer).
#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    Issue,
    Comment,
    /// DELETE of a label the issue does not carry: 404 "Label does not exist".
    Label,
    /// A `type` the issue's organisation does not have (or has disabled): 422.
    IssueType(String),
}

/// The world's time. GitHub's timestamps have one-second resolution, so `now` is truncated.
#[derive(Clone, Default)]
pub enum TimeSource {
    /// Real UTC now, plus what `advance` added.
    #[default]
    Real,
    Pinned(DateTime<Utc>),
    /// The clock rollgate runs on (a harness on a `FixedClock`), plus what `advance` added.
    Follow(Arc<dyn rollgate::clock::Clock>),
}

#[derive(Default)]
pub struct Clock {
    pub source: TimeSource,
    pub offset: Duration,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        let base = match &self.source {
            TimeSource::Real => Utc::now(),
            TimeSource::Pinned(t) => *t,
            TimeSource::Follow(c) => c.now(),
        };
        (base + self.offset).duration_trunc(Duration::seconds(1)).expect("a representable time")
    }

    pub fn advance(&mut self, by: Duration) {
        match &mut self.source {
            TimeSource::Pinned(t) => *t += by,
            _ => self.offset += by,
        }
    }
}

#[derive(Default)]
pub struct World {
    pub issues: BTreeMap<Key, FakeIssue>,
    pub next_comment: u64,
    pub writes: Vec<String>,
    /// Writes made through the REST API, per issue (a comment edit counts for its issue).
    pub writes_per_issue: BTreeMap<Key, usize>,
    pub requests: u64,
    /// (org/team, login) pairs that are active members.
    pub teams: Vec<(String, String)>,
    /// Repository labels: repo -> name -> (colour, description).
    pub repo_labels: BTreeMap<String, BTreeMap<String, (String, String)>>,
    /// Issues whose events GitHub refuses (a backfill interrupted at a known point).
    pub refuse_events: Vec<u64>,
    /// `POST /graphql` answers 404, as a server that serves only REST does.
    pub no_graphql: bool,
    pub faults: VecDeque<Fault>,
    /// The next issue created is stored, and its answer replaced by a 502.
    pub lose_next_created: bool,
    pub clock: Clock,
    /// The last timeline event's id (GET .../events `id`).
    pub next_event: u64,
    /// Issue types and Projects v2 (native.rs).
    pub native: super::native::Native,
}

impl World {
    pub fn issue_mut(&mut self, key: &Key) -> Result<&mut FakeIssue, Missing> {
        self.issues.get_mut(key).ok_or(Missing::Issue)
    }

    /// The issue holding comment `id`.
    pub fn comment_home(&self, id: u64) -> Option<Key> {
        self.issues.iter().find(|(_, i)| i.comments.iter().any(|c| c.id == id)).map(|(k, _)| k.clone())
    }

    /// Appends to the issue's timeline the events GitHub's GET .../issues/N/events lists for
    /// `stated` (labels, closes, reopens; comments and edits are not issue events), made by
    /// `actor` at the world's now. Every change made through `World` comes by here (hooks.rs,
    /// `emit`), whoever made it and whether or not deliveries are sent.
    pub fn record(&mut self, key: &Key, actor: &Actor, stated: &[Stated]) {
        let now = self.clock.now();
        for s in stated {
            self.next_event += 1;
            let id = 9_000_000_000 + self.next_event;
            if let Some(e) = super::payloads::issue_event(self, key, s, actor, now, id) {
                if let Some(i) = self.issues.get_mut(key) {
                    i.events.push(e);
                }
            }
        }
    }

    fn touch(&mut self, key: &Key) {
        let now = self.clock.now();
        if let Some(i) = self.issues.get_mut(key) {
            i.updated_at = now;
        }
    }

    /// Adds the labels the issue lacks, in the order given; one `labeled` each.
    pub fn add_labels(&mut self, key: &Key, names: &[String]) -> Result<Vec<Stated>, Missing> {
        let i = self.issue_mut(key)?;
        let mut out = Vec::new();
        for n in names {
            if !i.labels.contains(n) {
                i.labels.push(n.clone());
                out.push(Stated::Labeled(n.clone()));
            }
        }
        if !out.is_empty() {
            self.touch(key);
        }
        Ok(out)
    }

    pub fn remove_label(&mut self, key: &Key, name: &str) -> Result<Vec<Stated>, Missing> {
        let i = self.issue_mut(key)?;
        let before = i.labels.len();
        i.labels.retain(|l| l != name);
        if i.labels.len() == before {
            return Err(Missing::Label);
        }
        self.touch(key);
        Ok(vec![Stated::Unlabeled(name.to_string())])
    }

    /// Replaces the label set: `unlabeled` for each removed, then `labeled` for each added.
    pub fn set_labels(&mut self, key: &Key, names: &[String]) -> Result<Vec<Stated>, Missing> {
        let i = self.issue_mut(key)?;
        let mut wanted: Vec<String> = Vec::new();
        for n in names {
            if !wanted.contains(n) {
                wanted.push(n.clone());
            }
        }
        let mut out: Vec<Stated> = i.labels.iter().filter(|l| !wanted.contains(l)).map(|l| Stated::Unlabeled(l.clone())).collect();
        out.extend(wanted.iter().filter(|l| !i.labels.contains(l)).map(|l| Stated::Labeled(l.clone())));
        i.labels = wanted;
        if !out.is_empty() {
            self.touch(key);
        }
        Ok(out)
    }

    /// Opens or closes. Closing an open issue states `closed` (reason `completed` unless given),
    /// reopening a closed one `reopened`; asking for the state it already has states nothing
    /// (a reason alone on a closed issue is updated silently).
    pub fn set_state(&mut self, key: &Key, open: bool, reason: Option<&str>) -> Result<Vec<Stated>, Missing> {
        let now = self.clock.now();
        let i = self.issue_mut(key)?;
        let stated = match (i.open, open) {
            (true, false) => {
                i.open = false;
                i.state_reason = Some(reason.unwrap_or("completed").to_string());
                i.closed_at = Some(now);
                Stated::Closed
            }
            (false, true) => {
                i.open = true;
                i.state_reason = Some(reason.unwrap_or("reopened").to_string());
                Stated::Reopened
            }
            (false, false) => {
                if let Some(r) = reason {
                    i.state_reason = Some(r.to_string());
                }
                return Ok(vec![]);
            }
            (true, true) => return Ok(vec![]),
        };
        self.touch(key);
        Ok(vec![stated])
    }

    /// Title and/or body: one `edited` naming what changed and what it was.
    pub fn edit(&mut self, key: &Key, title: Option<&str>, body: Option<&str>) -> Result<Vec<Stated>, Missing> {
        let i = self.issue_mut(key)?;
        let title_from = title.filter(|t| *t != i.title).map(|t| std::mem::replace(&mut i.title, t.to_string()));
        let body_from = body.filter(|b| *b != i.body).map(|b| std::mem::replace(&mut i.body, b.to_string()));
        if title_from.is_none() && body_from.is_none() {
            return Ok(vec![]);
        }
        self.touch(key);
        Ok(vec![Stated::Edited { title_from, body_from }])
    }

    /// A new issue numbered after the repository's highest: `opened`, then one `labeled` per
    /// label (GitHub sends both for an issue created with labels).
    pub fn create_issue(&mut self, repo: &str, title: &str, body: &str, labels: &[String], author: &str) -> (u64, Vec<Stated>) {
        let n = self.issues.keys().filter(|(r, _)| r == repo).map(|(_, n)| *n).max().unwrap_or(0) + 1;
        let now = self.clock.now();
        let mut unique: Vec<String> = Vec::new();
        for l in labels {
            if !unique.contains(l) {
                unique.push(l.clone());
            }
        }
        let mut stated = vec![Stated::Opened];
        stated.extend(unique.iter().map(|l| Stated::Labeled(l.clone())));
        self.issues.insert(
            (repo.to_string(), n),
            FakeIssue {
                title: title.into(),
                body: body.into(),
                labels: unique,
                open: true,
                author: author.into(),
                created_at: now,
                updated_at: now,
                ..Default::default()
            },
        );
        (n, stated)
    }

    pub fn create_comment(&mut self, key: &Key, body: &str, author: &str) -> Result<(FakeComment, Vec<Stated>), Missing> {
        self.issue_mut(key)?;
        let now = self.clock.now();
        self.next_comment += 1;
        let c = FakeComment { id: 1000 + self.next_comment, body: body.into(), author: author.into(), created_at: now, updated_at: now, edits: Vec::new() };
        self.issue_mut(key)?.comments.push(c.clone());
        self.touch(key);
        Ok((c.clone(), vec![Stated::CommentCreated(c.id)]))
    }

    /// `editor` edits comment `id`; an edit to the same text states nothing (GitHub sends no
    /// delivery and keeps no revision). The edit history gains the original text on the first
    /// edit, then the new text.
    pub fn edit_comment(&mut self, id: u64, body: &str, editor: &str) -> Result<(Key, FakeComment, Vec<Stated>), Missing> {
        let key = self.comment_home(id).ok_or(Missing::Comment)?;
        let now = self.clock.now();
        let c = self.issue_mut(&key)?.comments.iter_mut().find(|c| c.id == id).ok_or(Missing::Comment)?;
        if c.body == body {
            return Ok((key, c.clone(), vec![]));
        }
        let from = std::mem::replace(&mut c.body, body.to_string());
        if c.edits.is_empty() {
            c.edits.push(FakeEdit { at: c.created_at, editor: c.author.clone(), body: Some(from.clone()), deleted_at: None });
        }
        c.edits.push(FakeEdit { at: now, editor: editor.to_string(), body: Some(body.to_string()), deleted_at: None });
        c.updated_at = now;
        let c = c.clone();
        self.touch(&key);
        Ok((key, c, vec![Stated::CommentEdited { id, from }]))
    }

    pub fn delete_comment(&mut self, id: u64) -> Result<(Key, Vec<Stated>), Missing> {
        let key = self.comment_home(id).ok_or(Missing::Comment)?;
        let i = self.issue_mut(&key)?;
        let at = i.comments.iter().position(|c| c.id == id).ok_or(Missing::Comment)?;
        let gone = i.comments.remove(at);
        self.touch(&key);
        Ok((key, vec![Stated::CommentDeleted(gone)]))
    }
}

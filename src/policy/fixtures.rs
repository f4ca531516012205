//! `rollgate test`: policy fixtures. Each `policies/tests/*.toml` gives an issue, an event, the
//! history and `now`; the runner evaluates the pack and plans the effects exactly as the
//! worker would (no tracker, no database) and compares labels, comments, blocks, records and
//! the open state with what the fixture expects.
//!
//! A fixture runs on its own calendar: UTC, Monday to Friday and no holidays unless it
//! declares `timezone` or `[calendar]`. The deployment's zone, work week and holidays never
//! apply, so a pack's fixtures give the same verdict on every deployment (`rollgate test`,
//! `doctor` and the reload gate all run them), and a fixture's expected times are read in the
//! zone written next to them.

use super::{PolicyConfig, PolicyRoles, PolicySet};
use crate::clock::Calendar;
use crate::decide::facts::Me;
use crate::decide::Inputs;
use crate::model::{Actor, BotComment, CommentId, CommentRef, DeliveryId, Event, HistoryEntry, IssueKey, IssueSnapshot, Source, StatedChange};
use crate::plan::{self, Effect};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub name: String,
    pub now: DateTime<Utc>,
    /// The IANA zone the fixture's dates live in; UTC when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The fixture's work week and holidays; Monday to Friday without holidays when absent.
    #[serde(default)]
    pub calendar: FixtureCalendar,
    pub issue: FixtureIssue,
    /// The issue before the event; absent means rollgate sees the issue for the first time.
    pub before: Option<FixtureState>,
    pub event: FixtureEvent,
    #[serde(default)]
    pub history: Vec<FixtureHistory>,
    #[serde(default)]
    pub config: FixtureConfig,
    /// Bot comments already on the issue (tag -> body), e.g. the checklist a box is ticked in.
    #[serde(default)]
    pub bot_comments: BTreeMap<String, String>,
    pub expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureIssue {
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default = "yes")]
    pub open: bool,
    #[serde(default)]
    pub state_reason: Option<String>,
    #[serde(default = "default_title")]
    pub title: String,
    #[serde(default)]
    pub body: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureState {
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default = "yes")]
    pub open: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureEvent {
    pub kind: String,
    #[serde(default = "default_actor")]
    pub actor: String,
    #[serde(default)]
    pub bot: bool,
    /// The label added or removed (labeled / unlabeled).
    pub label: Option<String>,
    /// A comment's body (issue_comment.*); for a bot comment, start it with its marker.
    pub comment: Option<String>,
    /// The body before an edit (issue_comment.edited).
    pub previous_comment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureHistory {
    pub at: DateTime<Utc>,
    pub field: String,
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(default = "default_actor")]
    pub actor: String,
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureCalendar {
    /// Day names, as `[calendar] workweek` in rollgate.toml.
    #[serde(default)]
    pub workweek: Vec<String>,
    /// `YYYY-MM-DD` dates.
    #[serde(default)]
    pub holidays: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureConfig {
    #[serde(default)]
    pub pm: Vec<String>,
    #[serde(default)]
    pub qa_lead: Vec<String>,
    /// The same as the top-level `timezone` (where fixtures first wrote it).
    #[serde(default)]
    pub timezone: Option<String>,
    /// The actor's roles as the configuration would resolve them (team membership included).
    #[serde(default)]
    pub actor_roles: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The exact label set afterwards.
    pub labels: Option<Vec<String>>,
    /// Labels that must be present / absent afterwards.
    #[serde(default)]
    pub has: Vec<String>,
    #[serde(default)]
    pub lacks: Vec<String>,
    /// The exact set of comment tags written or edited.
    pub comments: Option<Vec<String>>,
    /// Text each named comment must contain.
    #[serde(default)]
    pub comment_contains: BTreeMap<String, Vec<String>>,
    /// Each entry must appear in one block; `[]` means nothing may be blocked.
    pub blocks: Option<Vec<String>>,
    /// Records that must be made (field = value).
    #[serde(default)]
    pub records: BTreeMap<String, String>,
    /// The open state afterwards.
    pub open: Option<bool>,
    /// Timers the decision sets (purpose = RFC 3339 time) or cancels (purpose = "cancel").
    #[serde(default)]
    pub timers: BTreeMap<String, String>,
}

impl Fixture {
    /// The calendar this fixture runs on, built from the fixture alone.
    pub fn calendar(&self) -> Result<Calendar, String> {
        let zone = match (&self.timezone, &self.config.timezone) {
            (Some(a), Some(b)) if a != b => return Err(format!("timezone {a:?} and [config] timezone {b:?} disagree: keep one")),
            (Some(zone), _) | (None, Some(zone)) => zone.as_str(),
            (None, None) => "UTC",
        };
        let tz: chrono_tz::Tz = zone.parse().map_err(|_| format!("timezone {zone:?} is not an IANA zone name such as Asia/Kolkata"))?;
        Calendar::new(tz, &self.calendar.workweek, &self.calendar.holidays).map_err(|e| format!("[calendar]: {e:#}"))
    }
}

fn yes() -> bool {
    true
}
fn default_title() -> String {
    "Fixture issue".into()
}
fn default_actor() -> String {
    "someone".into()
}

pub struct Outcome {
    pub file: PathBuf,
    pub name: String,
    /// Empty when the fixture passed.
    pub failures: Vec<String>,
}

/// Every `*.toml` under `dir/tests`, run against `policies`.
pub fn run_dir(policies: &PolicySet, dir: &Path) -> anyhow::Result<Vec<Outcome>> {
    let tests = dir.join("tests");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&tests) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    files.sort();
    Ok(files.into_iter().map(|f| run_file(policies, &f)).collect())
}

pub fn run_file(policies: &PolicySet, file: &Path) -> Outcome {
    let fail = |name: String, msg: String| Outcome { file: file.to_path_buf(), name, failures: vec![msg] };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(String::new(), format!("cannot read: {e}")),
    };
    let fixture: Fixture = match toml::from_str(&text) {
        Ok(f) => f,
        Err(e) => return fail(String::new(), format!("not a fixture: {e}")),
    };
    let failures = match run(policies, &fixture) {
        Ok(f) => f,
        Err(e) => vec![e],
    };
    Outcome { file: file.to_path_buf(), name: fixture.name, failures }
}

/// Which tracker a fixture's issue lives on. On Jira its labels are carried as native fields
/// (the vocabulary tells which), as the Jira adapter would read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum As {
    Github,
    Jira,
}

fn snapshot(labels: &[String], open: bool, f: &Fixture, on: As, vocab: &crate::policy::vocabulary::Vocabulary) -> IssueSnapshot {
    let (key, labels, native) = match on {
        As::Github => (IssueKey::github("fixture/repo", 1), labels.to_vec(), None),
        As::Jira => {
            let mut native = crate::model::NativeFields::default();
            let mut other = Vec::new();
            for l in labels {
                if let Some((field, value)) = vocab.field_of(l) {
                    native.fields.insert(field.to_string(), value.to_string());
                } else if let Some(flag) = vocab.flag_of(l) {
                    native.flags.insert(flag.to_string());
                } else {
                    other.push(l.clone());
                }
            }
            (IssueKey::jira("PROJ", 1), other, Some(native))
        }
    };
    IssueSnapshot {
        key,
        title: f.issue.title.clone(),
        body: f.issue.body.clone(),
        url: "https://github.com/fixture/repo/issues/1".into(),
        open,
        state_reason: f.issue.state_reason.clone(),
        author: "someone".into(),
        labels,
        assignees: vec![],
        created_at: f.now,
        updated_at: f.now,
        closed_at: (!open).then_some(f.now),
        native,
        partial: false,
    }
}

/// rollgate's login in fixtures: a comment that starts with a marker is the bot's own.
const FIXTURE_BOT: &str = "rollgate[bot]";

/// The changes a fixture states. With a `before`, the labels and open state that differ from
/// the issue's are the change (the fixture's author says what changed; the event's own label
/// last, so it wins a field that briefly holds two values); without one, what the event says.
fn stated(f: &Fixture, event: &Event) -> Vec<StatedChange> {
    let Some(before) = &f.before else { return event.stated() };
    let mut out: Vec<StatedChange> = Vec::new();
    for l in before.labels.iter().filter(|l| !f.issue.labels.contains(l)) {
        out.push(StatedChange::LabelRemoved { label: l.clone() });
    }
    let mut added: Vec<&String> = f.issue.labels.iter().filter(|l| !before.labels.contains(l)).collect();
    added.sort_by_key(|l| Some(*l) == f.event.label.as_ref());
    out.extend(added.into_iter().map(|l| StatedChange::LabelAdded { label: l.clone() }));
    match (before.open, f.issue.open) {
        (true, false) => out.push(StatedChange::Closed { reason: f.issue.state_reason.clone() }),
        (false, true) => out.push(StatedChange::Reopened),
        _ => {}
    }
    out
}

/// Evaluates a fixture on one tracker: the decision and the planned effects.
pub fn decide(policies: &PolicySet, f: &Fixture, on: As) -> Result<(crate::policy::decision::Decision, Vec<Effect>, IssueSnapshot), String> {
    let vocab = &policies.vocabulary;
    let actor = Actor { login: f.event.actor.clone(), is_bot: f.event.bot };
    let event = Event {
        delivery: DeliveryId("fixture".into()),
        kind: f.event.kind.as_str().into(),
        issue: snapshot(&f.issue.labels, f.issue.open, f, on, vocab),
        actor: actor.clone(),
        label: f.event.label.clone(),
        comment: f.event.comment.as_ref().map(|body| CommentRef {
            id: CommentId(7),
            body: body.clone(),
            author: if body.starts_with("<!-- rollgate:") { Actor { login: FIXTURE_BOT.into(), is_bot: true } } else { actor.clone() },
            previous_body: f.event.previous_comment.clone(),
            revised_at: Some(f.now),
        }),
        occurred_at: f.now,
        received_at: f.now,
        installation: None,
        changes: Vec::new(),
        taken_in_by: None,
    };
    let changes = stated(f, &event);
    let stored = f.before.as_ref().map(|b| snapshot(&b.labels, b.open, f, on, vocab));
    let bot_comments: BTreeMap<String, BotComment> = f
        .bot_comments
        .iter()
        .map(|(tag, body)| {
            let text = plan::comment_text(tag, body);
            (tag.clone(), BotComment { id: CommentId(9), body_hash: plan::body_hash(&text), body: text })
        })
        .collect();
    let me = Me::new(Some(FIXTURE_BOT.into()));
    let config = PolicyConfig {
        roles: PolicyRoles { pm: f.config.pm.clone(), qa_lead: f.config.qa_lead.clone() },
        calendar: Arc::new(f.calendar()?),
    };
    let roles = f.config.actor_roles.clone().unwrap_or_else(|| config.roles.of_login(&f.event.actor));
    let history: Vec<HistoryEntry> = f
        .history
        .iter()
        .map(|h| HistoryEntry {
            at: h.at,
            field: h.field.clone(),
            from: h.from.clone(),
            to: h.to.clone(),
            actor: h.actor.clone(),
            source: match h.source.as_deref() {
                Some("rollgate") => Source::Rollgate,
                Some("policy") => Source::Policy,
                _ => Source::Tracker,
            },
            refused: None,
        })
        .collect();
    let outcome = crate::decide::decide(
        policies,
        Inputs {
            event: &event,
            changes: &changes,
            stored: stored.as_ref(),
            bot_comments: &bot_comments,
            history,
            roles,
            recent: &[],
            comment_acted: false,
            config: &config,
            me: &me,
            now: f.now,
        },
    )
    .map_err(|e| e.error.to_string())?;
    Ok((outcome.decision, outcome.effects, outcome.view))
}

/// Runs one fixture (on GitHub); returns what differs from its expectations.
pub fn run(policies: &PolicySet, f: &Fixture) -> Result<Vec<String>, String> {
    let (decision, effects, view) = decide(policies, f, As::Github)?;

    let mut labels: BTreeSet<String> = view.labels.iter().cloned().collect();
    let mut open = view.open;
    let mut comments: BTreeMap<String, String> = BTreeMap::new();
    for e in &effects {
        match e {
            Effect::AddLabels { labels: l } => labels.extend(l.iter().cloned()),
            Effect::RemoveLabel { label } => {
                labels.remove(label);
            }
            Effect::SetOpen { open: o } => open = *o,
            Effect::UpsertComment { tag, body, .. } => {
                comments.insert(tag.clone(), body.clone());
            }
        }
    }

    let mut failures = Vec::new();
    let x = &f.expect;
    if let Some(want) = &x.labels {
        let want: BTreeSet<String> = want.iter().cloned().collect();
        if want != labels {
            failures.push(set_diff("labels", &want, &labels));
        }
    }
    for l in &x.has {
        if !labels.contains(l) {
            failures.push(format!("labels: expected {l} among {labels:?}"));
        }
    }
    for l in &x.lacks {
        if labels.contains(l) {
            failures.push(format!("labels: expected no {l}, got {labels:?}"));
        }
    }
    if let Some(want) = &x.comments {
        let want: BTreeSet<String> = want.iter().cloned().collect();
        let got: BTreeSet<String> = comments.keys().cloned().collect();
        if want != got {
            failures.push(set_diff("comments", &want, &got));
        }
    }
    for (tag, needles) in &x.comment_contains {
        match comments.get(tag) {
            None => failures.push(format!("comment {tag}: not written (written: {:?})", comments.keys().collect::<Vec<_>>())),
            Some(body) => {
                for n in needles {
                    if !body.contains(n.as_str()) {
                        failures.push(format!("comment {tag}: does not contain {n:?}\n      --- comment ---\n{}", indent(body)));
                    }
                }
            }
        }
    }
    if let Some(want) = &x.blocks {
        if want.is_empty() && !decision.blocks.is_empty() {
            failures.push(format!("blocks: expected none, got {:?}", decision.blocks));
        }
        for w in want {
            if !decision.blocks.iter().any(|b| b.contains(w.as_str())) {
                failures.push(format!("blocks: expected one mentioning {w:?}, got {:?}", decision.blocks));
            }
        }
    }
    for (field, value) in &x.records {
        let got: Vec<&String> = decision.records.iter().filter(|(f, _)| f == field).map(|(_, v)| v).collect();
        if !got.contains(&value) {
            failures.push(format!("records: expected {field} = {value:?}, got {got:?}"));
        }
    }
    for (purpose, want) in &x.timers {
        let got = decision.timers.get(purpose);
        let ok = match (want.as_str(), got) {
            ("cancel", Some(None)) => true,
            (w, Some(Some(at))) => DateTime::parse_from_rfc3339(w).is_ok_and(|w| w == *at),
            _ => false,
        };
        if !ok {
            failures.push(format!("timers: expected {purpose} = {want}, got {got:?}"));
        }
    }
    if let Some(want) = x.open {
        if want != open {
            failures.push(format!("open: expected {want}, got {open}"));
        }
    }
    if !failures.is_empty() {
        let mut why = String::from("why:");
        for w in &decision.why {
            let _ = write!(why, "\n      {w}");
        }
        failures.push(why);
    }
    Ok(failures)
}

fn set_diff(what: &str, want: &BTreeSet<String>, got: &BTreeSet<String>) -> String {
    let missing: Vec<_> = want.difference(got).collect();
    let extra: Vec<_> = got.difference(want).collect();
    format!("{what}: expected {want:?}\n      got      {got:?}\n      missing {missing:?}, unexpected {extra:?}")
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      | {l}")).collect::<Vec<_>>().join("\n")
}

/// The fixtures' results as `rollgate test` prints them (PASS/FAIL per fixture, then the
/// counts), and whether all passed; a refused reload quotes the same text.
pub fn report(outcomes: &[Outcome]) -> (String, bool) {
    let mut out = String::new();
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    for o in outcomes {
        let file = o.file.file_name().unwrap_or_default().to_string_lossy();
        if o.failures.is_empty() {
            let _ = writeln!(out, "PASS {file}: {}", o.name);
        } else {
            let _ = writeln!(out, "FAIL {file}: {}", o.name);
            for f in &o.failures {
                let _ = writeln!(out, "    {f}");
            }
        }
    }
    let _ = writeln!(out, "{} passed, {} failed", outcomes.len() - failed, failed);
    (out, failed == 0)
}

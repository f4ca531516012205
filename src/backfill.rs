//! `rollgate backfill --github owner/repo`: imports existing issues and their label history,
//! so clocks and the first monthly report are right from day one. Each issue is imported in one
//! transaction together with its "done" mark: an interrupted backfill resumes where it stopped,
//! and never imports an issue twice.

use crate::model::IssueSnapshot;
use crate::policy::PolicySet;
use crate::process::facts::changes;
use crate::store::{HistoryEntry, Source, Store};
use crate::tracker::github::{GithubTracker, PastEvent};
use std::io::Write;

/// The history an issue's past events amount to, through the vocabulary: what the store would
/// hold had rollgate watched it from the start.
pub fn replay(set: &PolicySet, issue: &IssueSnapshot, events: &[PastEvent]) -> Vec<HistoryEntry> {
    let vocab = &set.vocabulary;
    let mut labels: Vec<String> = Vec::new();
    let mut open = true;
    let mut before = vocab.normalize(&labels, None);
    let mut out = Vec::new();
    for e in events {
        let was_open = open;
        match (e.kind.as_str(), &e.label) {
            ("labeled", Some(l)) if !labels.contains(l) => labels.push(l.clone()),
            ("unlabeled", Some(l)) => labels.retain(|x| x != l),
            ("closed", _) => open = false,
            ("reopened", _) => open = true,
            _ => continue,
        }
        let after = vocab.normalize(&labels, e.label.as_deref());
        out.extend(changes(Some((&before, was_open)), &after, open, &e.actor, e.at, Source::Tracker));
        before = after;
    }
    // Labels set at creation, or events GitHub no longer returns: what the issue holds now.
    let now = vocab.normalize(&issue.labels, None);
    out.extend(changes(Some((&before, open)), &now, issue.open, &issue.author, issue.updated_at, Source::Tracker));
    out
}

pub struct Progress {
    pub issues: usize,
    pub skipped: usize,
    pub rows: usize,
}

pub async fn github(store: &dyn Store, set: &PolicySet, tracker: &GithubTracker, repo: &str, quiet: bool) -> anyhow::Result<Progress> {
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
            let events = tracker.issue_events(&issue.key).await?;
            let history = replay(set, &issue, &events);
            store.import(&issue, &history, Some((&job, &period))).await?;
            p.issues += 1;
            p.rows += history.len();
            if !quiet {
                eprint!("\rbackfill {repo}: {} imported, {} already done, {} history rows", p.issues, p.skipped, p.rows);
                let _ = std::io::stderr().flush();
            }
        }
        page += 1;
    }
    if !quiet {
        eprintln!();
    }
    Ok(p)
}

/// `rollgate backfill --jira PROJECT`: the same, from each issue's changelog. The changelog
/// is walked from the newest change back, undoing each (as a webhook's changelog is read), and
/// the changes are recorded in order with Jira's times and authors.
pub async fn jira(store: &dyn Store, set: &PolicySet, tracker: &crate::tracker::jira::JiraTracker, project: &str, quiet: bool) -> anyhow::Result<Progress> {
    let job = format!("backfill:jira:{project}");
    let fields = tracker.fields();
    let vocab = &set.vocabulary;
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
            let mut after = issue.native.clone().unwrap_or_default();
            let mut steps = Vec::new();
            for change in log.iter().rev() {
                let before = crate::ingest::jira::before_change(&after, &change.log, &fields);
                let at = crate::ingest::jira::jira_time(&change.created).unwrap_or(issue.created_at);
                let actor = change.author.as_ref().and_then(|a| a["accountId"].as_str().or(a["name"].as_str())).unwrap_or("").to_string();
                let n = |x: &crate::model::NativeFields| vocab.normalize(&vocab.express(x, &[]), None);
                steps.push(changes(Some((&n(&before), true)), &n(&after), true, &actor, at, Source::Tracker));
                after = before;
            }
            // What the issue held when it was created.
            let empty = vocab.normalize(&[], None);
            let mut history = changes(Some((&empty, true)), &vocab.normalize(&vocab.express(&after, &[]), None), true, &issue.author, issue.created_at, Source::Tracker);
            history.extend(steps.into_iter().rev().flatten());
            store.import(&issue, &history, Some((&job, &period))).await?;
            p.issues += 1;
            p.rows += history.len();
            if !quiet {
                eprint!("\rbackfill {project}: {} imported, {} already done, {} history rows", p.issues, p.skipped, p.rows);
                let _ = std::io::stderr().flush();
            }
        }
    }
    if !quiet {
        eprintln!();
    }
    Ok(p)
}

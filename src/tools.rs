//! The operator's policy tools behind `rollgate check`, `test` and `simulate`: they load a
//! folder exactly as `serve` does and never touch a tracker.

use crate::clock::Calendar;
use crate::ingest::{github, Parsed};
use crate::model::DeliveryId;
use crate::plan;
use crate::policy::fixtures::{self, Outcome};
use crate::policy::{PolicyConfig, PolicyRoles, PolicySet};
use crate::process::Prepared;
use crate::store::Store;
use anyhow::{bail, Context};
use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;

/// Compiles and lints a folder; returns the summary line, or the errors as file:line:column.
pub fn check(dir: &Path, calendar: Arc<Calendar>) -> anyhow::Result<String> {
    let set = PolicySet::load(dir, calendar).map_err(|e| anyhow::anyhow!("{e}"))?;
    let fixtures = std::fs::read_dir(dir.join("tests"))
        .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "toml")).count())
        .unwrap_or(0);
    let mut out = format!(
        "{}: ok — policy version {}, {} rules ({}), {} commands, {} fixtures",
        dir.display(),
        set.version,
        set.rule_names().len(),
        set.rule_names().join(", "),
        set.commands.len(),
        fixtures
    );
    if fixtures == 0 {
        out.push_str("\nwarning: no fixtures in tests/: `rollgate test` has nothing to run");
    }
    Ok(out)
}

/// Runs every fixture; returns the report and whether all passed.
pub fn test(dir: &Path, calendar: Arc<Calendar>) -> anyhow::Result<(String, bool)> {
    let set = PolicySet::load(dir, calendar).map_err(|e| anyhow::anyhow!("{e}"))?;
    let outcomes = fixtures::run_dir(&set, dir)?;
    Ok(report(&outcomes))
}

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

/// The decision and the effects a real payload would get, as JSON. Reads the issue's stored
/// state and history when a store is given; applies nothing.
pub async fn simulate(
    set: &PolicySet,
    payload: &Path,
    event_type: Option<&str>,
    store: Option<&dyn Store>,
    config: &PolicyConfig,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<String> {
    let body = std::fs::read(payload).with_context(|| format!("reading {}", payload.display()))?;
    let kind = match event_type {
        Some(k) => k.to_string(),
        None => guess_event(&body)?,
    };
    let event = match github::parse(&kind, DeliveryId("simulated".into()), &body, now)? {
        Parsed::Event(e) => *e,
        Parsed::Ping => bail!("a ping carries no issue: nothing to decide"),
        Parsed::Ignored(what) => bail!("rollgate ignores {what} deliveries: nothing to decide"),
    };
    let (stored, bot_comments, mut history) = match store {
        Some(s) => match s.issue_state(&event.issue.key).await? {
            Some(state) => (Some(state.snapshot), state.bot_comments, s.history(&event.issue.key).await?),
            None => (None, Default::default(), Vec::new()),
        },
        None => (None, Default::default(), Vec::new()),
    };
    let mut prepared = Prepared::new(set, &event, stored.as_ref(), &bot_comments);
    prepared.facts.roles = roles_from_config(&config.roles, &event.actor.login);
    history.extend(prepared.tracker_changes.iter().cloned());
    let decision = prepared.evaluate(set, &history, &[], config, now).map_err(|e| anyhow::anyhow!("{e}"))?;
    let effects = plan::plan(&prepared.view, &prepared.normalized, &decision, &set.vocabulary, &bot_comments);
    let out = serde_json::json!({
        "issue": event.issue.key.short(),
        "event": event.kind,
        "policy_version": set.version.as_str(),
        "decision": decision,
        "effects": effects,
    });
    Ok(serde_json::to_string_pretty(&out)?)
}

/// Roles by login only: simulate asks no tracker about team membership.
fn roles_from_config(roles: &PolicyRoles, login: &str) -> Vec<String> {
    let mut out = Vec::new();
    if roles.pm.iter().any(|m| m.eq_ignore_ascii_case(login)) {
        out.push("pm".into());
    }
    if roles.qa_lead.iter().any(|m| m.eq_ignore_ascii_case(login)) {
        out.push("qa_lead".into());
    }
    out
}

/// The X-GitHub-Event a payload was sent with, from its shape.
fn guess_event(body: &[u8]) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_slice(body).context("the payload is not JSON")?;
    Ok(if v.get("zen").is_some() {
        "ping"
    } else if v.get("comment").is_some() && v.get("issue").is_some() {
        "issue_comment"
    } else if v.get("issue").is_some() {
        "issues"
    } else {
        bail!("cannot tell the event type of this payload: pass --type issues|issue_comment")
    }
    .to_string())
}

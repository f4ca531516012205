//! The operator's policy tools behind `rollgate check`, `test` and `simulate`: they load a
//! folder exactly as `serve` does and never touch a tracker.

use crate::ingest::{github, Parsed};
use crate::model::DeliveryId;
use crate::policy::fixtures;
use crate::policy::{PolicyConfig, PolicySet};
use crate::decide::facts::Me;
use crate::decide::{decide, Inputs};
use crate::store::prelude::*;
use anyhow::{bail, Context};
use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;

/// Compiles and lints a folder; returns the summary line, or the errors as file:line:column.
pub fn check(dir: &Path) -> anyhow::Result<String> {
    let set = PolicySet::load(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
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

/// Runs every fixture, each on its own calendar; returns the report and whether all passed.
pub fn test(dir: &Path) -> anyhow::Result<(String, bool)> {
    let set = PolicySet::load(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let outcomes = fixtures::run_dir(&set, dir)?;
    Ok(fixtures::report(&outcomes))
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
    let (stored, bot_comments, history) = match store {
        Some(s) => match s.issue_state(&event.issue.key).await? {
            Some(state) => (
                Some(state.snapshot),
                state.bot_comments,
                s.history(&event.issue.key).await?.into_iter().filter(crate::model::HistoryEntry::effective).collect(),
            ),
            None => (None, Default::default(), Vec::new()),
        },
        None => (None, Default::default(), Vec::new()),
    };
    // Offline, rollgate's own login is not known: its echoes are judged like anyone's here.
    let outcome = decide(
        set,
        Inputs {
            event: &event,
            changes: &event.stated(),
            stored: stored.as_ref(),
            bot_comments: &bot_comments,
            history,
            roles: config.roles.of_login(&event.actor.login),
            recent: &[],
            comment_acted: false,
            config,
            me: &Me::default(),
            now,
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (decision, effects) = (outcome.decision, outcome.effects);
    let out = serde_json::json!({
        "issue": event.issue.key.short(),
        "event": event.kind,
        "policy_version": set.version.as_str(),
        "decision": decision,
        "effects": effects,
    });
    Ok(serde_json::to_string_pretty(&out)?)
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

/// `rollgate sweep --at TIME`: what the clock does at TIME, by hand, as `serve` does every
/// 30 s. Fires the timers due by then and processes them (and anything else waiting) with
/// policies seeing TIME as `now`; then, with `jobs`, runs the periodic jobs due at TIME (the
/// monthly metrics report, the week's decisions log, the Tuesday agenda), each once per
/// period as `serve` would. Timers go first, so the issues filed see what they changed. With
/// `dry_run`, only shows what the due timers and jobs would do and changes nothing. Returns
/// the report and whether every job succeeded.
pub async fn sweep(settings: &crate::config::Settings, at: chrono::DateTime<chrono::Utc>, dry_run: bool, jobs: bool) -> anyhow::Result<(String, bool)> {
    use crate::clock::FixedClock;
    use crate::schedule::sweep;
    let store = crate::store::open(&settings.database_url).await?;
    let set = PolicySet::load(&settings.policies).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = crate::app::policy_config(settings)?;
    // A dry run reads the store only: no tracker is reached.
    let trackers = if dry_run { Default::default() } else { crate::app::build_trackers(settings).await?.0 };
    let periodic = jobs.then(|| crate::schedule::jobs::Jobs {
        store: store.clone(),
        calendar: config.calendar.clone(),
        policies: settings.policies.clone(),
        target: settings.reports_target.clone(),
        trackers: trackers.clone(),
        last_refresh: Default::default(),
    });
    let mut out = String::new();
    if dry_run {
        let due = store.due_timers(at, 10_000).await?;
        let _ = writeln!(out, "{} timer(s) due by {at} (dry run: nothing fired, nothing applied)", due.len());
        for t in &due {
            let Some(state) = store.issue_state(&t.issue_key).await? else { continue };
            let event = sweep::timer_event(t, state.snapshot.clone(), at);
            let history = store.history(&t.issue_key).await?.into_iter().filter(crate::model::HistoryEntry::effective).collect();
            let outcome = decide(
                &set,
                Inputs {
                    event: &event,
                    changes: &[],
                    stored: Some(&state.snapshot),
                    bot_comments: &state.bot_comments,
                    history,
                    roles: Vec::new(),
                    recent: &[],
                    comment_acted: false,
                    config: &config,
                    me: &Me::default(),
                    now: at,
                },
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (decision, effects) = (outcome.decision, outcome.effects);
            let _ = writeln!(out, "\n{}  {}  due {}", t.issue_key.short(), t.purpose, t.due_at);
            for w in &decision.why {
                let _ = writeln!(out, "  why: {w}");
            }
            for e in &effects {
                let _ = writeln!(out, "  would: {}", serde_json::to_string(e)?);
            }
        }
        if let Some(periodic) = &periodic {
            jobs_heading(&mut out, settings);
            for line in periodic.preview(at).await? {
                let _ = writeln!(out, "  {line}");
            }
        }
        return Ok((out, true));
    }
    let clock = Arc::new(FixedClock::new(at));
    let fired = sweep::fire_due(store.as_ref(), at).await?;
    let queue = crate::queue::Queue {
        store: store.clone(),
        processor: Arc::new(crate::process::Processor {
            store: store.clone(),
            policies: crate::policy::PolicyHandle::new(set),
            roles: crate::roles::RoleResolver::new(&settings.roles, trackers.github.clone()),
            trackers,
            config,
            clock: clock.clone(),
        }),
        clock,
        wake: Default::default(),
        ingest: Default::default(),
        workers: 1,
        max_attempts: settings.queue.max_attempts,
        lease: std::time::Duration::from_secs(settings.queue.lease_secs),
    };
    let processed = queue.drain(at).await?;
    let stuck = store.retrying(20).await?;
    let _ = writeln!(out, "{fired} timer(s) fired at {at}; {processed} event(s) processed");
    for s in stuck {
        let _ = writeln!(out, "  waiting for a retry: {} {} ({}): {}", s.issue_key, s.kind, s.delivery, s.last_error);
    }
    let mut ok = true;
    if let Some(periodic) = &periodic {
        jobs_heading(&mut out, settings);
        match periodic.run_due(at).await {
            Ok(done) => {
                for line in done {
                    let _ = writeln!(out, "  {line}");
                }
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(out, "  failed: {e:#} (what was filed stays filed; the next sweep tries the rest again)");
            }
        }
    }
    Ok((out, ok))
}

fn jobs_heading(out: &mut String, settings: &crate::config::Settings) {
    match &settings.reports_target {
        Some(target) => {
            let _ = writeln!(out, "periodic jobs (reports, decisions log, agenda in {target}):");
        }
        None => {
            let _ = writeln!(out, "periodic jobs: none, ROLLGATE_REPORTS_TARGET is not set");
        }
    }
}

//! `rollgate doctor`: checks what a running service needs and says what to fix.

use crate::config::Settings;
use crate::policy::{fixtures, PolicySet};
use crate::tracker::github::GithubTracker;
use crate::tracker::jira::JiraTracker;
use crate::tracker::{RetryPolicy, TrackerError};
use std::fmt::Write;
use std::sync::Arc;

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    text: String,
    worst: Level,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, detail: impl AsRef<str>) {
        let mark = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        let _ = writeln!(self.text, "{mark}  {what}: {}", detail.as_ref());
        self.worst = self.worst.max(level);
    }
}

/// Runs every check; returns the report and whether nothing failed.
/// Roles: none configured at all runs open (said, not failed: a team may start that way); once
/// any is, every role the policies name must have somebody, or what it guards nobody may do.
fn roles(r: &mut Report, settings: &Settings) {
    let named = crate::roles::named_in_policies(&settings.policies);
    let members = |role: &str| if role == "pm" { &settings.roles.pm } else { &settings.roles.qa_lead };
    let setting = |role: &str| if role == "pm" { "ROLLGATE_ROLES_PM" } else { "ROLLGATE_ROLES_QA_LEAD" };
    if settings.roles.pm.is_empty() && settings.roles.qa_lead.is_empty() {
        return r.line(
            Level::Warn,
            "roles",
            "no role configured: rollgate runs OPEN, anyone may do what the playbook reserves for PMs and QA leads (set ROLLGATE_ROLES_PM and ROLLGATE_ROLES_QA_LEAD)",
        );
    }
    let mut empty = false;
    for (role, places) in &named {
        if members(role).is_empty() {
            empty = true;
            let mut places = places.clone();
            places.dedup();
            r.line(Level::Fail, "roles", format!("nobody has the {role} role ({}), yet the policies name it in {}: nobody may do what it guards", setting(role), places.join(", ")));
        }
    }
    if !empty {
        r.line(Level::Ok, "roles", format!("{} PM, {} QA lead entries; every role the policies name has somebody", settings.roles.pm.len(), settings.roles.qa_lead.len()));
    }
}

pub async fn doctor(settings: &Settings) -> (String, bool) {
    let mut r = Report { text: String::new(), worst: Level::Ok };
    r.line(Level::Ok, "configuration", settings.describe());
    // A short retry: the doctor should answer quickly about an unreachable tracker.
    let retry = RetryPolicy { attempts: 1, ..RetryPolicy::default() };

    match crate::store::open(&settings.database_url).await {
        Ok(store) => match store.inbox_stats().await {
            Ok(s) => r.line(Level::Ok, "database", format!("reachable and migrated; {} pending, {} dead letters", s.pending, s.dead)),
            Err(e) => r.line(Level::Fail, "database", format!("{e:#}")),
        },
        Err(e) => r.line(Level::Fail, "database", format!("{e:#} — check ROLLGATE_DATABASE_URL and that its directory is writable")),
    }

    match settings.calendar().map(Arc::new) {
        Err(e) => r.line(Level::Fail, "calendar", format!("{e:#}")),
        // Fixtures run on their own calendars: the deployment's zone never fails them.
        Ok(_) => match PolicySet::load(&settings.policies) {
            Err(e) => r.line(Level::Fail, "policies", format!("{e} — fix it, then `rollgate check {}`", settings.policies.display())),
            Ok(set) => match fixtures::run_dir(&set, &settings.policies) {
                Ok(outcomes) => {
                    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
                    let level = if failed > 0 { Level::Fail } else { Level::Ok };
                    r.line(level, "policies", format!("version {}, {} rules, {} of {} fixtures pass{}", set.version, set.rule_names().len(), outcomes.len() - failed, outcomes.len(), if failed > 0 { " — see `rollgate test`" } else { "" }));
                }
                Err(e) => r.line(Level::Fail, "policies", format!("reading fixtures: {e:#}")),
            },
        },
    }

    let gh = &settings.github;
    match GithubTracker::from_settings(gh, retry.clone()) {
        Ok(None) => r.line(Level::Warn, "github", "no ROLLGATE_GITHUB_TOKEN or GitHub App: GitHub events are decided and recorded, nothing is applied"),
        Err(e) => r.line(Level::Fail, "github", format!("{e:#}")),
        Ok(Some(t)) if t.is_app() => github_app(&mut r, settings, &t).await,
        Ok(Some(t)) => match t.whoami().await {
            Ok(login) => r.line(Level::Ok, "github", format!("{} answers; the token acts as {login}", gh.api_url)),
            Err(e) => r.line(Level::Fail, "github", format!("{e} — check ROLLGATE_GITHUB_API_URL and ROLLGATE_GITHUB_TOKEN")),
        },
    }
    if gh.webhook_secrets.is_empty() {
        r.line(Level::Warn, "github webhook", "no ROLLGATE_GITHUB_WEBHOOK_SECRET: every GitHub delivery is refused with 401");
    } else {
        r.line(Level::Ok, "github webhook", format!("{} secret(s) accepted", gh.webhook_secrets.len()));
    }

    if settings.jira.base_url.is_some() {
        if settings.jira.api_token.is_none() {
            r.line(Level::Warn, "jira", "ROLLGATE_JIRA_BASE_URL without ROLLGATE_JIRA_API_TOKEN: Jira events are recorded, nothing is applied");
        } else {
            match JiraTracker::connect(&settings.jira, retry).await {
                Ok(t) => {
                    let f = t.fields();
                    let unmapped: Vec<&String> = f.mapping.fields.keys().filter(|k| !f.ids.contains_key(*k)).collect();
                    if unmapped.is_empty() {
                        r.line(Level::Ok, "jira", format!("REST v{} answers; every mapped custom field found", settings.jira.api_version()));
                    } else {
                        r.line(Level::Warn, "jira", format!("REST v{} answers; no custom field for {unmapped:?} — see deploy/jira/README.md", settings.jira.api_version()));
                    }
                }
                Err(e) => r.line(Level::Fail, "jira", format!("{e:#} — check ROLLGATE_JIRA_BASE_URL, _EMAIL and _API_TOKEN")),
            }
        }
    }
    jira_webhook(&mut r, settings);
    endpoints(&mut r, settings);

    roles(&mut r, settings);
    match &settings.reports_target {
        Some(t) => r.line(Level::Ok, "reports", format!("filed in {t}")),
        None => r.line(Level::Warn, "reports", "no ROLLGATE_REPORTS_TARGET: the monthly report, decisions log and agenda are not filed"),
    }
    let ok = r.worst < Level::Fail;
    let _ = writeln!(r.text, "{}", if ok { "rollgate can serve." } else { "fix the FAIL lines above." });
    (r.text, ok)
}

/// Whether Jira deliveries are signed. Unsigned ones are accepted only on the operator's explicit
/// opt-in, which fails the doctor: it lets anyone who reaches the URL act as any Jira user.
fn jira_webhook(r: &mut Report, settings: &Settings) {
    let j = &settings.jira;
    if j.allow_unsigned_webhooks {
        r.line(
            Level::Fail,
            "jira webhook",
            "ROLLGATE_JIRA_ALLOW_UNSIGNED_WEBHOOKS is on: unsigned Jira deliveries are accepted, so anyone who can reach /webhooks/jira acts as any Jira user — \
             set the webhook's Secret in Jira and ROLLGATE_JIRA_WEBHOOK_SECRET (deploy/jira/README.md), then turn it off",
        );
    } else if !j.webhook_secrets.is_empty() {
        r.line(Level::Ok, "jira webhook", format!("{} secret(s) accepted; unsigned deliveries refused", j.webhook_secrets.len()));
    } else if j.base_url.is_some() {
        r.line(Level::Warn, "jira webhook", "no ROLLGATE_JIRA_WEBHOOK_SECRET: every Jira delivery is refused with 401 (deploy/jira/README.md, \"The webhook\")");
    }
}

/// The bearer tokens of the evaluate and metrics endpoints, and the edge's limits.
fn endpoints(r: &mut Report, settings: &Settings) {
    match &settings.evaluate_token {
        Some(_) => r.line(Level::Ok, "evaluate api", "ROLLGATE_EVALUATE_TOKEN set: callers present it and may name the actor judged"),
        None => r.line(
            Level::Warn,
            "evaluate api",
            "no ROLLGATE_EVALUATE_TOKEN: POST /api/v1/evaluate answers anyone and judges every request as an anonymous person with no roles (a Jira validator cannot pass the acting user)",
        ),
    }
    match &settings.metrics_token {
        Some(_) => r.line(Level::Ok, "metrics", "ROLLGATE_METRICS_TOKEN set: GET /metrics needs it"),
        None => r.line(Level::Ok, "metrics", "GET /metrics is open (set ROLLGATE_METRICS_TOKEN to require a bearer token)"),
    }
    let h = &settings.http;
    r.line(
        Level::Ok,
        "http limits",
        format!(
            "header {} s, body {} s, idle {} s, {} connections, {} bytes of unsigned bodies at once, store answers within {} ms",
            h.header_timeout.as_secs(),
            h.body_timeout.as_secs(),
            h.idle_timeout.as_secs(),
            h.max_connections,
            h.max_unsigned_bytes,
            h.store_timeout.as_millis()
        ),
    );
}

/// The App: its JWT accepted, where it is installed, and an installation token for every
/// repository and organisation the configuration names (the reports target, team roles).
/// Repositories that send deliveries name their installation themselves.
async fn github_app(r: &mut Report, settings: &Settings, t: &GithubTracker) {
    let gh = &settings.github;
    let login = match t.whoami().await {
        Ok(login) => login,
        // A refusal says which App settings to check; anything else is more likely the URL.
        Err(e @ TrackerError::Rejected(_)) => return r.line(Level::Fail, "github", e.to_string()),
        Err(e) => return r.line(Level::Fail, "github", format!("{e} — check ROLLGATE_GITHUB_API_URL")),
    };
    r.line(Level::Ok, "github", format!("{} answers; the App acts as {login}", gh.api_url));
    let slug = login.trim_end_matches("[bot]");
    let install = format!("install it from https://github.com/apps/{slug}/installations/new (GitHub Enterprise: /github-apps/{slug})");
    match t.installed_on().await {
        Ok(accounts) if accounts.is_empty() => r.line(Level::Warn, "github app", format!("installed nowhere yet: {install}")),
        Ok(accounts) => r.line(Level::Ok, "github app", format!("installed on {}", accounts.join(", "))),
        Err(e) => r.line(Level::Fail, "github app", format!("listing installations: {e}")),
    }
    let mut places: Vec<String> = settings.reports_target.iter().filter(|t| t.contains('/')).cloned().collect();
    for m in settings.roles.pm.iter().chain(&settings.roles.qa_lead) {
        if let Some((org, _)) = m.strip_prefix('@').and_then(|t| t.split_once('/')) {
            if !places.iter().any(|p| p.eq_ignore_ascii_case(org)) {
                places.push(org.to_string());
            }
        }
    }
    for place in places {
        match t.reach(&place).await {
            Ok(id) => r.line(Level::Ok, "github app", format!("{place} reachable through installation {id}")),
            Err(e) => r.line(Level::Fail, "github app", format!("{place}: {e}")),
        }
    }
}

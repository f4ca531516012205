//! Wiring: settings in, a running service out. Used by `rollgate serve` and by the tests,
//! which run the very same service on a free port.

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::http::{router, AppState};
use crate::policy::reload::Reloader;
use crate::policy::{PolicyConfig, PolicyHandle, PolicyRoles, PolicySet};
use crate::process::Processor;
use crate::queue::Queue;
use crate::roles::RoleResolver;
use crate::store;
use crate::store::prelude::*;
use crate::ingest::jira::JiraFields;
use crate::process::Trackers;
use crate::tracker::github::GithubTracker;
use crate::tracker::guard::Guarded;
use crate::tracker::jira::JiraTracker;
use crate::tracker::{RetryPolicy, Tracker};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub struct Running {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    queue: JoinHandle<()>,
}

impl Running {
    /// Stops taking deliveries, lets the events in flight finish, and returns.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.server.await.context("HTTP server task")?.context("HTTP server")?;
        self.queue.await.context("queue task")?;
        Ok(())
    }
}

/// The trackers this configuration can write to, and how Jira's fields are read.
pub async fn build_trackers(settings: &Settings) -> anyhow::Result<(Trackers, JiraFields)> {
    let mut trackers = Trackers::default();
    if !settings.dry_run {
        if let Some(github) = GithubTracker::from_settings(&settings.github, RetryPolicy::default())? {
            let is_app = github.is_app();
            let github = Arc::new(Guarded::new(github, "github", settings.github.writes_per_minute));
            if is_app {
                // Not a reason to refuse to start (GitHub may be down; deliveries still queue),
                // but a wrong App id or key should be said now, not on the first delivery.
                let check = github.clone();
                tokio::spawn(async move {
                    match check.inner().whoami().await {
                        Ok(login) => tracing::info!(%login, "GitHub App credentials accepted"),
                        Err(e) => tracing::error!(error = %e, "GitHub App credentials not accepted; `rollgate doctor` says more"),
                    }
                });
            }
            trackers.github = Some(github as Arc<dyn Tracker>);
        }
    }
    let mut jira_fields = JiraFields::resolve(settings.jira.mapping.clone(), &[], None).0;
    if settings.jira_writes() && !settings.dry_run {
        let jira = JiraTracker::connect(&settings.jira, RetryPolicy::default()).await.context("connecting to Jira")?;
        jira_fields = (*jira.fields()).clone();
        // Jira's limits are not GitHub's: its budget stays lifted (0); breakers still apply.
        trackers.jira = Some(Arc::new(Guarded::new(jira, "jira", 0)));
    } else {
        let by_name: Vec<&String> = settings.jira.mapping.fields.values().filter(|n| !n.starts_with("customfield_")).collect();
        if settings.jira.base_url.is_some() && !by_name.is_empty() {
            tracing::warn!(fields = ?by_name, "without Jira credentials these custom field names cannot be resolved: map them by id (customfield_...) to read them");
        }
    }
    Ok((trackers, jira_fields))
}

/// What policies see of the configuration (`ctx.config`), with the deployment's calendar.
pub fn policy_config(settings: &Settings) -> anyhow::Result<PolicyConfig> {
    Ok(PolicyConfig {
        roles: PolicyRoles { pm: settings.roles.pm.clone(), qa_lead: settings.roles.qa_lead.clone() },
        calendar: Arc::new(settings.calendar()?),
    })
}

pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    start_with_clock(settings, Arc::new(SystemClock)).await
}

pub async fn start_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let calendar = Arc::new(settings.calendar()?);
    let policies = PolicySet::load(&settings.policies)
        .with_context(|| format!("loading policies from {}", settings.policies.display()))?;
    tracing::info!(version = %policies.version, rules = ?policies.rule_names(), "policy set loaded");
    let policies = PolicyHandle::new(policies);
    let store = store::open(&settings.database_url).await?;
    // A SQLite file has one serving process: leases left in it belong to one that died.
    let released = store.release_all_leases().await?;
    if released > 0 {
        tracing::info!(released, "took back the events a previous run was processing when it stopped");
    }
    let reloader = Reloader::new(settings.policies.clone(), policies.clone());

    let dry_run = settings.effective_dry_run();
    let (trackers, jira_fields) = build_trackers(&settings).await?;
    if dry_run {
        let why = if settings.dry_run { "ROLLGATE_DRY_RUN is on" } else { "no tracker credentials are set" };
        tracing::warn!("DRY RUN ({why}): decisions are recorded, nothing is applied to any tracker");
    } else {
        for (name, missing) in [("GitHub", trackers.github.is_none()), ("Jira", trackers.jira.is_none())] {
            if missing {
                tracing::info!("no {name} credentials: {name} events are decided and recorded (dry run), nothing is applied there");
            }
        }
    }
    // Who rollgate is on each tracker tells its own echoes from people's changes: ask now, so no
    // event waits on it. A tracker that does not answer yet is asked again by the first event.
    for (name, tracker) in [("GitHub", &trackers.github), ("Jira", &trackers.jira)] {
        if let Some(t) = tracker {
            match tokio::time::timeout(std::time::Duration::from_secs(5), t.identity()).await {
                Ok(Ok(login)) => tracing::info!(tracker = name, %login, "rollgate's own changes come back under this login"),
                Ok(Err(e)) => tracing::warn!(tracker = name, error = %e, "could not ask who rollgate is yet; the first event asks again"),
                Err(_) => tracing::warn!(tracker = name, "no answer yet to who rollgate is; the first event asks again"),
            }
        }
    }
    if settings.roles.pm.is_empty() && settings.roles.qa_lead.is_empty() {
        tracing::warn!("no roles configured (ROLLGATE_ROLES_PM, ROLLGATE_ROLES_QA_LEAD): rollgate runs OPEN, anyone may do what the playbook reserves for PMs and QA leads");
    } else {
        for (role, members) in [("PM", &settings.roles.pm), ("QA lead", &settings.roles.qa_lead)] {
            if members.is_empty() {
                tracing::warn!(role, "this role has nobody in it: what only it may do, nobody may do");
            }
        }
    }
    if settings.github.webhook_secrets.is_empty() {
        tracing::warn!("no GitHub webhook secret (ROLLGATE_GITHUB_WEBHOOK_SECRET): every GitHub delivery will be refused with 401");
    }
    if settings.jira.allow_unsigned_webhooks {
        tracing::warn!(
            "UNSIGNED JIRA WEBHOOKS ACCEPTED (ROLLGATE_JIRA_ALLOW_UNSIGNED_WEBHOOKS): anyone who can reach /webhooks/jira can act as any Jira user, \
             the PM included; set ROLLGATE_JIRA_WEBHOOK_SECRET and the webhook's Secret in Jira instead (deploy/jira/README.md)"
        );
    } else if settings.jira.webhook_secrets.is_empty() && settings.jira.base_url.is_some() {
        tracing::warn!("no Jira webhook secret (ROLLGATE_JIRA_WEBHOOK_SECRET): every Jira delivery will be refused with 401");
    }
    if settings.evaluate_token.is_none() {
        tracing::info!("no ROLLGATE_EVALUATE_TOKEN: POST /api/v1/evaluate answers anyone, judging every request as an anonymous person with no roles");
    }

    let wake = Arc::new(Notify::new());
    let ingest = Arc::new(crate::queue::IngestLoad::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let processor = Arc::new(Processor {
        store: store.clone(),
        policies: policies.clone(),
        roles: RoleResolver::new(&settings.roles, trackers.github.clone()),
        trackers: trackers.clone(),
        config: policy_config(&settings)?,
        clock: clock.clone(),
    });
    let queue = Queue {
        store: store.clone(),
        processor,
        clock: clock.clone(),
        wake: wake.clone(),
        ingest: ingest.clone(),
        workers: settings.queue.workers,
        max_attempts: settings.queue.max_attempts,
        lease: std::time::Duration::from_secs(settings.queue.lease_secs),
    };
    let queue = tokio::spawn(queue.run(shutdown_rx.clone()));
    tokio::spawn(reloader.clone().watch(shutdown_rx.clone()));
    let jobs = Arc::new(crate::schedule::jobs::Jobs {
        store: store.clone(),
        calendar: calendar.clone(),
        policies: settings.policies.clone(),
        target: settings.reports_target.clone(),
        trackers: trackers.clone(),
        last_refresh: Default::default(),
    });
    tokio::spawn(crate::schedule::sweep::run(store.clone(), clock.clone(), wake.clone(), jobs, shutdown_rx.clone()));
    spawn_sighup_reload(reloader.clone(), shutdown_rx.clone());
    tokio::spawn(share_budgets(store.clone(), clock.clone(), trackers.clone(), shutdown_rx.clone()));

    let state = AppState {
        inbox: crate::store::Batcher::spawn(store.clone(), ingest),
        store: store.clone(),
        policies,
        clock,
        wake,
        github_secrets: Arc::new(settings.github.webhook_secrets.clone()),
        jira_secrets: Arc::new(settings.jira.webhook_secrets.clone()),
        jira_unsigned: settings.jira.allow_unsigned_webhooks,
        jira_fields: Arc::new(jira_fields),
        admin_token: settings.admin_token.clone(),
        evaluate_token: settings.evaluate_token.clone(),
        metrics_token: settings.metrics_token.clone(),
        intake: Arc::new(crate::http::intake::Intake::new(settings.http.max_unsigned_bytes, settings.http.body_timeout)),
        store_timeout: settings.http.store_timeout,
        policy_config: policy_config(&settings)?,
        reloader,
        dry_run,
    };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let limits = crate::http::server::Limits::from_settings(&settings.http);
    let server = tokio::spawn(crate::http::server::serve(listener, router(state), limits, shutdown_rx));
    tracing::info!(%addr, "rollgate is serving");
    Ok(Running { addr, store, shutdown, server, queue })
}

/// SIGHUP reloads the policy folder, as a file change or POST /admin/reload does.
/// Replicas on one PostgreSQL database say they are alive every `HEARTBEAT_EVERY`, and each
/// takes its part of the tracker's write budget, so two replicas together stay within what
/// one would spend. A replica that stops counts until `REPLICA_TTL` has passed.
async fn share_budgets(store: Arc<dyn Store>, clock: Arc<dyn crate::clock::Clock>, trackers: Trackers, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(crate::store::HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match store.heartbeat(clock.now()).await {
            Ok(replicas) => {
                crate::metrics::METRICS.set_gauge("rollgate_replicas", &[], replicas as f64);
                for tracker in [&trackers.github, &trackers.jira].into_iter().flatten() {
                    tracker.share_budget(replicas);
                }
            }
            // The last share stays in force; the next beat tries again.
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "the replica heartbeat failed"),
        }
    }
}

fn spawn_sighup_reload(reloader: Arc<Reloader>, mut shutdown: watch::Receiver<bool>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /admin/reload");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => { let _ = reloader.reload("SIGHUP").await; }
                _ = shutdown.changed() => return,
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (reloader, shutdown);
}

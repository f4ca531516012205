//! The axum router: webhooks in, health out. Handlers only verify, parse and store; processing
//! happens in the queue, so acknowledgement never waits for a tracker.

mod admin;
mod api;
mod auth;
pub mod intake;
pub mod server;
mod webhook;

use crate::clock::Clock;
use crate::config::Secret;
use crate::policy::reload::Reloader;
use crate::policy::PolicyHandle;
use crate::store::prelude::*;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::Notify;

/// GitHub caps deliveries at 25 MB; anything larger is refused with 413 before it is read whole.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Where deliveries are committed (group commit into `store`).
    pub inbox: crate::store::Batcher,
    pub policies: PolicyHandle,
    pub clock: Arc<dyn Clock>,
    pub wake: Arc<Notify>,
    pub github_secrets: Arc<Vec<Secret>>,
    /// Empty: Jira deliveries are refused, unless `jira_unsigned` (the operator's explicit
    /// opt-in) accepts them without a signature.
    pub jira_secrets: Arc<Vec<Secret>>,
    pub jira_unsigned: bool,
    pub jira_fields: Arc<crate::ingest::jira::JiraFields>,
    pub admin_token: Option<Secret>,
    pub evaluate_token: Option<Secret>,
    pub metrics_token: Option<Secret>,
    /// Limits for bodies read before anyone vouched for them.
    pub intake: Arc<intake::Intake>,
    /// How long a delivery or `/readyz` waits for the store.
    pub store_timeout: std::time::Duration,
    pub policy_config: crate::policy::PolicyConfig,
    pub reloader: Arc<Reloader>,
    pub dry_run: bool,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/github", post(webhook::github))
        .route("/webhooks/jira", post(webhook::jira))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(admin::reload))
        .route("/api/v1/evaluate", post(api::evaluate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_oversized))
        .with_state(state)
}

/// A declared `Content-Length` over the limit is answered 413 at once, on every route, and
/// the connection closed: the body is never read (it used to be read whole first).
async fn refuse_oversized(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if intake::declared_length(req.headers()).is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        crate::metrics::METRICS.inc("rollgate_http_refused_total", &[("reason", "too_large")]);
        return intake::Refusal::TooLarge.into_response();
    }
    next.run(req).await
}

/// GET /metrics: Prometheus text. Counters from the process; inbox gauges from the store.
/// Open unless `ROLLGATE_METRICS_TOKEN` is set; then only with that bearer token.
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        if !auth::bearer_matches(&headers, token) {
            return auth::unauthorized("missing or wrong metrics token (ROLLGATE_METRICS_TOKEN)");
        }
    }
    let policy = state.policies.current();
    let mut gauges = vec![("rollgate_policy_info", "The running policy set (value 1).", format!("{{version=\"{}\"}}", policy.version), 1.0)];
    let reload_error = if state.reloader.status().error.is_some() { 1.0 } else { 0.0 };
    gauges.push(("rollgate_policy_reload_failing", "1 while the newest policy files are refused.", String::new(), reload_error));
    match state.store.inbox_stats().await {
        Ok(s) => {
            let age = s.oldest_pending.map(|t| (state.clock.now() - t).num_milliseconds().max(0) as f64 / 1000.0).unwrap_or(0.0);
            gauges.push(("rollgate_inbox_pending", "Events waiting in the inbox.", String::new(), s.pending as f64));
            gauges.push(("rollgate_inbox_oldest_age_seconds", "Age of the oldest waiting event.", String::new(), age));
            gauges.push(("rollgate_dead_letters", "Events that gave up (rollgate replay).", String::new(), s.dead as f64));
        }
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "metrics: the store did not answer"),
    }
    let free = state.intake.available() as f64;
    gauges.push(("rollgate_http_unsigned_bytes_free", "Bytes of the unsigned-body budget free now.", String::new(), free));
    let body = crate::metrics::METRICS.render(&gauges);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Ready when the store answers and a policy set is loaded. A refused reload does not make the
/// service unready (the previous set serves); it is shown so operators see it.
async fn readyz(State(state): State<AppState>) -> Response {
    let policy = state.policies.current();
    let reload = state.reloader.status();
    // Bounded: an unreachable database must not hold the probe (and a connection) for the
    // pool's whole acquire timeout.
    let ping = match tokio::time::timeout(state.store_timeout, state.store.ping()).await {
        Ok(answer) => answer,
        Err(_) => Err(anyhow::anyhow!("the store did not answer within {} ms", state.store_timeout.as_millis())),
    };
    match ping {
        Ok(()) => Json(json!({
            "status": "ready",
            "store": "ok",
            "policy_version": policy.version.as_str(),
            "rules": policy.rule_names(),
            "policy_reload_error": reload.error,
            "policy_reloads": reload.reloads,
            "dry_run": state.dry_run,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "store": format!("{e:#}"), "policy_version": policy.version.as_str() })),
        )
            .into_response(),
    }
}

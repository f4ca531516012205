//! POST /webhooks/github and /webhooks/jira. The signature is checked in an extractor, before
//! the body is parsed; a delivery is stored before it is acknowledged.

use super::AppState;
use crate::ingest::{github, jira, signature, Parsed};
use crate::metrics::METRICS;
use crate::model::Event;
use crate::model::DeliveryId;
use crate::store::Inserted;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> Response {
    reply(status, json!({ "error": reason.into() }))
}

/// A GitHub delivery whose `X-Hub-Signature-256` matched one of the configured secrets.
pub struct SignedGithub {
    event: String,
    delivery: DeliveryId,
    body: Bytes,
}

impl FromRequest<AppState> for SignedGithub {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        // Read under the intake limits (size, time, the unsigned-bytes budget): nothing has
        // vouched for this body yet.
        let (parts, body, held) = state.intake.read(req).await.map_err(|r| rejected("github", r.outcome(), r.into_response()))?;
        let headers: HeaderMap = parts.headers;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        if state.github_secrets.is_empty() {
            METRICS.inc("rollgate_deliveries_total", &[("tracker", "github"), ("outcome", "unauthorized")]);
            return Err(refuse(StatusCode::UNAUTHORIZED, "no GitHub webhook secret is configured"));
        }
        if !signature::verify(&state.github_secrets, &body, header("x-hub-signature-256").as_deref()) {
            // The caller chose this header: log no more of it than a real delivery id needs.
            let delivery = crate::ingest::clip(&header("x-github-delivery").unwrap_or_default(), 64);
            tracing::warn!(%delivery, "GitHub delivery with a missing or wrong signature");
            METRICS.inc("rollgate_deliveries_total", &[("tracker", "github"), ("outcome", "unauthorized")]);
            return Err(refuse(StatusCode::UNAUTHORIZED, "missing or wrong X-Hub-Signature-256"));
        }
        // Signed: the body no longer counts against the budget for unsigned bodies.
        drop(held);
        let event = header("x-github-event").ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "missing X-GitHub-Event"))?;
        let delivery = header("x-github-delivery")
            .filter(|d| !d.is_empty() && d.len() <= 128)
            .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "missing X-GitHub-Delivery"))?;
        Ok(SignedGithub { event, delivery: DeliveryId(delivery), body })
    }
}

pub async fn github(axum::extract::State(state): axum::extract::State<AppState>, d: SignedGithub) -> Response {
    let received_at = state.clock.now();
    let parsed = match github::parse(&d.event, d.delivery.clone(), &d.body, received_at) {
        Ok(p) => p,
        Err(e) => {
            METRICS.inc("rollgate_deliveries_total", &[("tracker", "github"), ("outcome", "unparseable")]);
            tracing::info!(delivery = %d.delivery, event = %d.event, reason = %e, "unparseable GitHub delivery");
            return refuse(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    answer(&state, parsed, &d.delivery, "github").await
}

/// Counts a delivery refused before it was read.
fn rejected(tracker: &str, outcome: &str, r: Response) -> Response {
    METRICS.inc("rollgate_deliveries_total", &[("tracker", tracker), ("outcome", outcome)]);
    r
}

/// Stores an event (or says why not) and answers: the same rules for every tracker.
async fn answer(state: &AppState, parsed: Parsed, delivery: &DeliveryId, tracker: &str) -> Response {
    let outcome = match &parsed {
        Parsed::Ping => "ping",
        Parsed::Ignored(_) => "ignored",
        Parsed::Event(_) => "",
    };
    if !outcome.is_empty() {
        METRICS.inc("rollgate_deliveries_total", &[("tracker", tracker), ("outcome", outcome)]);
    }
    match parsed {
        Parsed::Ping => reply(StatusCode::OK, json!({ "status": "pong" })),
        Parsed::Ignored(kind) => {
            tracing::debug!(delivery = %delivery, kind, "ignored delivery");
            reply(StatusCode::ACCEPTED, json!({ "status": "ignored", "event": kind }))
        }
        Parsed::Event(event) => enqueue(state, *event).await,
    }
}

/// The longest a delivery waits for a store that answers but commits slowly (a busy disk's
/// fsync): under GitHub's 10 s, after which it counts the delivery as failed anyway.
const SLOW_STORE_LIMIT: std::time::Duration = std::time::Duration::from_secs(8);

/// Waits for `commit`, telling an unreachable store from a slow one. Half the store timeout for
/// the commit; then, if it has not answered, half for a ping (which needs no write): a store
/// that does not answer the ping is down, and the delivery gets 503 within the store timeout
/// instead of the pool's 10 s acquire timeout; one that does is only slow, and the commit is
/// awaited up to `SLOW_STORE_LIMIT`, so a busy disk does not turn into refusals.
///
/// `None`: refused. An event given up on may still sit in the group commit's queue and be
/// committed once the database answers. That is safe: the tracker's redelivery carries the same
/// delivery id, which the inbox dedupes on, so the event is processed once whichever lands first.
async fn store_bounded<T>(state: &AppState, commit: impl std::future::Future<Output = T>) -> Option<T> {
    let started = tokio::time::Instant::now();
    let half = (state.store_timeout / 2).max(std::time::Duration::from_millis(1));
    let mut commit = std::pin::pin!(commit);
    if let Ok(answer) = tokio::time::timeout(half, &mut commit).await {
        return Some(answer);
    }
    let alive = tokio::select! {
        answer = &mut commit => return Some(answer),
        ping = tokio::time::timeout(half, state.store.ping()) => matches!(ping, Ok(Ok(()))),
    };
    if !alive {
        return None;
    }
    tokio::time::timeout(SLOW_STORE_LIMIT.saturating_sub(started.elapsed()), commit).await.ok()
}

async fn enqueue(state: &AppState, event: Event) -> Response {
    let (tracker, delivery, issue, kind) = (event.tracker(), event.delivery.clone(), event.issue.key.short(), event.kind.clone());
    let Some(stored) = store_bounded(state, state.inbox.enqueue(event)).await else {
        tracing::error!(%delivery, timeout_ms = state.store_timeout.as_millis() as u64, "the store did not answer: delivery refused");
        METRICS.inc("rollgate_deliveries_total", &[("tracker", tracker.as_str()), ("outcome", "store_timeout")]);
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "could not store the delivery in time; redeliver it");
    };
    match stored {
        Ok(inserted) => {
            let status = match inserted {
                Inserted::Queued => {
                    state.wake.notify_one();
                    "queued"
                }
                Inserted::Duplicate => "duplicate",
            };
            METRICS.inc("rollgate_deliveries_total", &[("tracker", tracker.as_str()), ("outcome", status)]);
            tracing::info!(%tracker, %delivery, %issue, %kind, status, "delivery");
            reply(StatusCode::ACCEPTED, json!({ "status": status, "delivery": delivery }))
        }
        Err(e) => {
            // Not stored, so not acknowledged: the tracker shows the failure and can redeliver.
            tracing::error!(%delivery, error = %format!("{e:#}"), "could not store a delivery");
            METRICS.inc("rollgate_deliveries_total", &[("tracker", tracker.as_str()), ("outcome", "store_error")]);
            refuse(StatusCode::SERVICE_UNAVAILABLE, "could not store the delivery; redeliver it")
        }
    }
}

/// A Jira delivery whose `X-Hub-Signature` (admin webhooks, Cloud and Data Center) matched one
/// of the configured secrets; or, only when the operator opted in to unsigned Jira webhooks,
/// any delivery. Jira retries under the same X-Atlassian-Webhook-Identifier.
pub struct SignedJira {
    delivery: DeliveryId,
    body: Bytes,
}

impl FromRequest<AppState> for SignedJira {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body, held) = state.intake.read(req).await.map_err(|r| rejected("jira", r.outcome(), r.into_response()))?;
        let headers: HeaderMap = parts.headers;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        if state.jira_secrets.is_empty() {
            if !state.jira_unsigned {
                METRICS.inc("rollgate_deliveries_total", &[("tracker", "jira"), ("outcome", "unauthorized")]);
                return Err(refuse(StatusCode::UNAUTHORIZED, "no Jira webhook secret is configured"));
            }
            // ROLLGATE_JIRA_ALLOW_UNSIGNED_WEBHOOKS: the operator vouches for the network instead.
        } else if !signature::verify(&state.jira_secrets, &body, header("x-hub-signature").as_deref()) {
            let delivery = crate::ingest::clip(&header("x-atlassian-webhook-identifier").unwrap_or_default(), 64);
            tracing::warn!(%delivery, "Jira delivery with a missing or wrong signature");
            METRICS.inc("rollgate_deliveries_total", &[("tracker", "jira"), ("outcome", "unauthorized")]);
            return Err(refuse(StatusCode::UNAUTHORIZED, "missing or wrong X-Hub-Signature"));
        }
        drop(held);
        // Data Center may send no identifier: the body's hash dedupes an identical retry.
        let delivery = header("x-atlassian-webhook-identifier")
            .filter(|d| !d.is_empty() && d.len() <= 128)
            .unwrap_or_else(|| format!("sha256-{}", &crate::plan::body_hash(&String::from_utf8_lossy(&body))));
        Ok(SignedJira { delivery: DeliveryId(delivery), body })
    }
}

pub async fn jira(axum::extract::State(state): axum::extract::State<AppState>, d: SignedJira) -> Response {
    let received_at = state.clock.now();
    match jira::parse(&d.body, d.delivery.clone(), received_at, &state.jira_fields) {
        Ok(parsed) => answer(&state, parsed, &d.delivery, "jira").await,
        Err(e) => {
            METRICS.inc("rollgate_deliveries_total", &[("tracker", "jira"), ("outcome", "unparseable")]);
            tracing::info!(delivery = %d.delivery, reason = %e, "unparseable Jira delivery");
            refuse(StatusCode::BAD_REQUEST, e.to_string())
        }
    }
}

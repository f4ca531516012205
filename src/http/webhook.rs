//! POST /webhooks/github. The signature is checked in an extractor, before the body is parsed;
//! a delivery is stored before it is acknowledged.

use super::AppState;
use crate::ingest::{github, signature, Parsed};
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
        let headers: HeaderMap = req.headers().clone();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        // Bytes enforces DefaultBodyLimit: an oversized body is a 413 here.
        let body = Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        if state.github_secrets.is_empty() {
            return Err(refuse(StatusCode::UNAUTHORIZED, "no GitHub webhook secret is configured"));
        }
        if !signature::verify(&state.github_secrets, &body, header("x-hub-signature-256").as_deref()) {
            tracing::warn!(delivery = header("x-github-delivery").unwrap_or_default(), "GitHub delivery with a missing or wrong signature");
            return Err(refuse(StatusCode::UNAUTHORIZED, "missing or wrong X-Hub-Signature-256"));
        }
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
            tracing::info!(delivery = %d.delivery, event = %d.event, reason = %e, "unparseable GitHub delivery");
            return refuse(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    match parsed {
        Parsed::Ping => reply(StatusCode::OK, json!({ "status": "pong" })),
        Parsed::Ignored(kind) => {
            tracing::debug!(delivery = %d.delivery, kind, "ignored GitHub delivery");
            reply(StatusCode::ACCEPTED, json!({ "status": "ignored", "event": kind }))
        }
        Parsed::Event(event) => match state.store.enqueue(&event).await {
            Ok(inserted) => {
                let status = match inserted {
                    Inserted::Queued => {
                        state.wake.notify_one();
                        "queued"
                    }
                    Inserted::Duplicate => "duplicate",
                };
                tracing::info!(delivery = %event.delivery, issue = %event.issue.key.short(), kind = %event.kind, status, "GitHub delivery");
                reply(StatusCode::ACCEPTED, json!({ "status": status, "delivery": event.delivery }))
            }
            Err(e) => {
                // Not stored, so not acknowledged: GitHub shows the failure and it can be redelivered.
                tracing::error!(delivery = %event.delivery, error = %format!("{e:#}"), "could not store a delivery");
                refuse(StatusCode::SERVICE_UNAVAILABLE, "could not store the delivery; redeliver it")
            }
        },
    }
}

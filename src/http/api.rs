//! POST /api/v1/evaluate: would this status change be allowed? A synchronous, dry evaluation
//! for a Jira workflow validator (ScriptRunner, a Forge app, an Automation web request): the
//! same rules as the worker, nothing stored, nothing applied.
//!
//! Trust: with `ROLLGATE_EVALUATE_TOKEN` set, a caller must present it and may name the actor
//! being judged (a validator passes the acting user). Without it anyone may ask, but every
//! request is judged as an anonymous person with no roles, whatever `actor` the body names,
//! and the answer says so (`"actor_trusted": false`): naming the PM proves nothing.

use super::AppState;
use crate::model::{Actor, DeliveryId, Event, IssueKey, IssueSnapshot, NativeFields, StatedChange};
use crate::decide::facts::Me;
use crate::decide::{decide, Inputs};
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// `PROJ-12` / `owner/repo#12` (rollgate's stored view is used), or the issue itself.
    issue: IssueRef,
    /// The target status: a playbook value (`released`) or a Jira status name (`Released`).
    to_status: String,
    /// Who asks (Jira account id or GitHub login), for role rules.
    #[serde(default)]
    actor: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IssueRef {
    Key(String),
    Inline {
        key: String,
        #[serde(default)]
        fields: BTreeMap<String, String>,
        #[serde(default)]
        flags: Vec<String>,
    },
}

fn bad(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

/// Who an untrusted request is judged as: no GitHub login or Jira account id can be written
/// with parentheses, so no role list can name it.
pub const ANONYMOUS: &str = "(anonymous)";

pub async fn evaluate(State(state): State<AppState>, request: Request) -> Response {
    let trusted = match &state.evaluate_token {
        Some(token) if !super::auth::bearer_matches(request.headers(), token) => {
            return super::auth::unauthorized("missing or wrong evaluate token (ROLLGATE_EVALUATE_TOKEN)")
        }
        Some(_) => true,
        None => false,
    };
    // The body under the same limits as a webhook's; then axum's JSON reading as before
    // (415 without a JSON content type, 400 bad syntax, 422 unknown or missing fields).
    let (parts, bytes, held) = match state.intake.read(request).await {
        Ok(read) => read,
        Err(refusal) => return refusal.into_response(),
    };
    let req = match Json::<EvaluateRequest>::from_request(Request::from_parts(parts, Body::from(bytes)), &state).await {
        Ok(Json(req)) => req,
        Err(rejection) => return rejection.into_response(),
    };
    drop(held);
    let policies = state.policies.current();
    let vocab = &policies.vocabulary;
    let key_text = match &req.issue {
        IssueRef::Key(k) | IssueRef::Inline { key: k, .. } => k.clone(),
    };
    let key: IssueKey = match key_text.parse() {
        Ok(k) => k,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let to = state
        .jira_fields
        .mapping
        .statuses
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&req.to_status))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| req.to_status.to_ascii_lowercase());
    if vocab.field_label("status", &to).is_none() {
        return bad(StatusCode::BAD_REQUEST, format!("{:?} is not a playbook status or a mapped Jira status", req.to_status));
    }
    let now = state.clock.now();
    let stored = match state.store.issue_state(&key).await {
        Ok(s) => s,
        Err(e) => return bad(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e:#}")),
    };
    let (current, bot_comments) = match (&req.issue, stored) {
        (IssueRef::Inline { fields, flags, .. }, _) => {
            let native = NativeFields { fields: fields.clone(), flags: flags.iter().cloned().collect() };
            (inline_snapshot(&key, native, now), Default::default())
        }
        (IssueRef::Key(_), Some(s)) => (s.snapshot, s.bot_comments),
        (IssueRef::Key(_), None) => {
            return bad(StatusCode::NOT_FOUND, format!("rollgate has not seen {}; send the issue's fields inline", key.short()))
        }
    };
    // The proposed change, stated as the tracker would state it.
    let mut proposed = current.clone();
    proposed.updated_at = current.updated_at + chrono::Duration::milliseconds(1);
    let from = crate::decide::view::normalize(&current, vocab, None).fields.get("status").cloned();
    let changes = vec![StatedChange::FieldSet { field: "status".into(), from, to: Some(to.clone()) }];
    let actor = match (trusted, &req.actor) {
        (true, Some(actor)) => actor.clone(),
        (true, None) => "validator".into(),
        (false, _) => ANONYMOUS.into(),
    };
    let event = Event {
        delivery: DeliveryId(format!("evaluate-{}", now.timestamp_millis())),
        kind: "issues.edited".into(),
        issue: proposed,
        actor: Actor { login: actor.clone(), is_bot: false },
        label: None,
        comment: None,
        occurred_at: now,
        received_at: now,
        installation: None,
        changes: changes.clone(),
        taken_in_by: None,
    };
    let history = match state.store.history(&key).await {
        Ok(h) => h.into_iter().filter(crate::model::HistoryEntry::effective).collect::<Vec<_>>(),
        Err(e) => return bad(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e:#}")),
    };
    let decided = decide(
        &policies,
        Inputs {
            event: &event,
            changes: &changes,
            stored: Some(&current),
            bot_comments: &bot_comments,
            history,
            roles: if trusted { state.policy_config.roles.of_login(&actor) } else { Vec::new() },
            recent: &[],
            comment_acted: false,
            config: &state.policy_config,
            me: &Me::default(),
            now,
        },
    );
    match decided.map(|o| o.decision) {
        Ok(d) => Json(json!({
            "allow": d.blocks.is_empty(),
            "reasons": d.blocks,
            "why": d.why,
            "issue": key.short(),
            "to_status": to,
            "actor": actor,
            "actor_trusted": trusted,
            "policy_version": policies.version.as_str(),
        }))
        .into_response(),
        Err(e) => bad(StatusCode::INTERNAL_SERVER_ERROR, e.error.to_string()),
    }
}

fn inline_snapshot(key: &IssueKey, native: NativeFields, now: chrono::DateTime<chrono::Utc>) -> IssueSnapshot {
    IssueSnapshot {
        key: key.clone(),
        title: String::new(),
        body: String::new(),
        url: String::new(),
        open: true,
        state_reason: None,
        author: String::new(),
        labels: Vec::new(),
        assignees: Vec::new(),
        created_at: now,
        updated_at: now,
        closed_at: None,
        native: Some(native),
        partial: false,
    }
}

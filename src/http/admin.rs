//! Admin routes, behind `Authorization: Bearer <ROLLGATE_ADMIN_TOKEN>`. Without a configured
//! token they are off.

use super::AppState;
use crate::policy::reload::Reloaded;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

fn authorized(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = &state.admin_token else {
        return Err((StatusCode::NOT_FOUND, Json(json!({ "error": "admin routes are off: set ROLLGATE_ADMIN_TOKEN" }))).into_response());
    };
    if !super::auth::bearer_matches(headers, token) {
        return Err(super::auth::unauthorized("missing or wrong admin token"));
    }
    Ok(())
}

/// POST /admin/reload: 200 with the version serving, or 422 with why the folder was refused.
pub async fn reload(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return r;
    }
    match state.reloader.reload("POST /admin/reload").await {
        Ok(Reloaded::Replaced { from, to }) => Json(json!({ "status": "reloaded", "from": from, "policy_version": to })).into_response(),
        Ok(Reloaded::Unchanged(v)) => Json(json!({ "status": "unchanged", "policy_version": v })).into_response(),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "status": "refused", "error": e, "policy_version": state.policies.current().version.as_str() })),
        )
            .into_response(),
    }
}

//! The GitHub App side: App JWTs, installations and installation tokens. The middleware at the
//! end checks an installation token (expired or revoked: 401; another account's repository:
//! 403), then hands the request on as if it carried `TOKEN`, naming the App's bot in
//! `x-fake-actor`, so writes are made, and their deliveries sent, by `<slug>[bot]`; and a
//! delivery for an account the App is installed on carries its `installation`.

use super::rest::not_found;
use super::{FakeGithub, BOT_LOGIN, TOKEN};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::BTreeMap;

type Shared = FakeGithub;

pub const APP_ID: u64 = 4242;
pub const APP_SLUG: &str = "rollgate-test";
pub const APP_BOT_LOGIN: &str = "rollgate-test[bot]";
const ACTOR_HEADER: &str = "x-fake-actor";
/// The account an installation token is scoped to, for the checks that cannot be made on the
/// path (GraphQL: graphql_projects.rs).
const ACCOUNT_HEADER: &str = "x-fake-installation-account";

/// The test-only key pair the fake App was registered with (tests/fixtures/github-app).
pub fn app_key_path(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-app").join(name)
}

pub fn app_private_key() -> String {
    std::fs::read_to_string(app_key_path("test-app.private-key.pem")).unwrap()
}

pub(super) struct FakeApp {
    /// Installation id -> account login.
    installations: BTreeMap<u64, String>,
    /// Minted token -> (installation, expiry).
    tokens: BTreeMap<String, (u64, chrono::DateTime<chrono::Utc>)>,
    /// The installation of every token minted, in order.
    minted: Vec<u64>,
    lifetime: chrono::Duration,
    mint_delay: std::time::Duration,
    /// Installation lookups answered (GET .../installation).
    lookups: u64,
    /// Requests refused for an expired or revoked token.
    refused: u64,
}

impl Default for FakeApp {
    fn default() -> Self {
        FakeApp {
            installations: BTreeMap::new(),
            tokens: BTreeMap::new(),
            minted: Vec::new(),
            lifetime: chrono::Duration::hours(1),
            mint_delay: std::time::Duration::ZERO,
            lookups: 0,
            refused: 0,
        }
    }
}

impl FakeGithub {
    /// Installs the App on `account` (a user or an organisation) as installation `id`.
    pub fn install_app(&self, id: u64, account: &str) {
        self.app.lock().unwrap().installations.insert(id, account.to_string());
    }

    /// Tokens minted from now on live this long (GitHub: an hour).
    pub fn app_token_lifetime(&self, lifetime: std::time::Duration) {
        self.app.lock().unwrap().lifetime = chrono::Duration::from_std(lifetime).unwrap();
    }

    /// Minting a token takes this long, so concurrent callers overlap.
    pub fn slow_token_minting(&self, delay: std::time::Duration) {
        self.app.lock().unwrap().mint_delay = delay;
    }

    /// Every token minted so far expires now (revoked, or a clock that jumped).
    pub fn expire_app_tokens(&self) {
        let past = chrono::Utc::now() - chrono::Duration::seconds(1);
        for t in self.app.lock().unwrap().tokens.values_mut() {
            t.1 = past;
        }
    }

    /// How many tokens were minted for `installation`.
    pub fn tokens_minted(&self, installation: u64) -> usize {
        self.app.lock().unwrap().minted.iter().filter(|i| **i == installation).count()
    }

    pub fn installation_lookups(&self) -> u64 {
        self.app.lock().unwrap().lookups
    }

    /// Requests refused with 401 for an expired or revoked installation token.
    pub fn refused_tokens(&self) -> u64 {
        self.app.lock().unwrap().refused
    }

    /// The installation whose webhook delivers for `repo`: the App's, when it is installed on
    /// the repository's account.
    pub(super) fn installation_for(&self, repo: &str) -> Option<u64> {
        let owner = repo.split('/').next()?;
        self.app.lock().unwrap().installations.iter().find(|(_, acc)| acc.eq_ignore_ascii_case(owner)).map(|(id, _)| *id)
    }
}

pub(super) fn app_routes() -> Router<Shared> {
    Router::new()
        .route("/app", get(get_app))
        .route("/app/installations", get(list_installations))
        .route("/app/installations/{id}/access_tokens", post(mint_token))
        .route("/repos/{o}/{r}/installation", get(repo_installation))
        .route("/orgs/{org}/installation", get(org_installation))
}

/// Who a write is made by: the App's bot with an installation token, else the token's user.
/// The account the caller's installation token is scoped to; `None` for rollgate's token.
pub(super) fn installation_account(h: &HeaderMap) -> Option<String> {
    h.get(ACCOUNT_HEADER).and_then(|v| v.to_str().ok()).map(String::from)
}

pub(super) fn acting_login(h: &HeaderMap) -> String {
    h.get(ACTOR_HEADER).and_then(|v| v.to_str().ok()).unwrap_or(BOT_LOGIN).to_string()
}

fn bearer(h: &HeaderMap) -> &str {
    let auth = h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("token ")).unwrap_or("")
}

fn unauthorized(message: &str) -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({ "message": message }))).into_response()
}

/// Checks the App JWT as GitHub does: RS256 signed by the App's key, `iss` the App id, not
/// expired, and expiring no more than 10 minutes ahead.
fn verify_jwt(h: &HeaderMap) -> Result<(), Response> {
    use base64::Engine;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let pem = std::fs::read_to_string(app_key_path("test-app.public-key.pem")).unwrap();
    let body = pem.split("-----BEGIN RSA PUBLIC KEY-----").nth(1).and_then(|b| b.split("-----END").next()).unwrap();
    let der = base64::engine::general_purpose::STANDARD.decode(body.chars().filter(|c| !c.is_whitespace()).collect::<String>()).unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.leeway = 0;
    v.validate_aud = false;
    // jsonwebtoken only knows a string `iss`; GitHub takes the App id as a number too (what
    // rollgate sends), so `iss` and `iat` are checked below.
    v.set_required_spec_claims(&["exp"]);
    let claims = jsonwebtoken::decode::<Value>(bearer(h), &DecodingKey::from_rsa_der(&der), &v)
        .map_err(|_| unauthorized("A JSON web token could not be decoded"))?
        .claims;
    let now = chrono::Utc::now().timestamp();
    let iss = claims["iss"].as_u64().or_else(|| claims["iss"].as_str().and_then(|s| s.parse().ok()));
    if iss != Some(APP_ID) {
        return Err(unauthorized("'Issuer' claim ('iss') must be an Integer"));
    }
    if claims["exp"].as_i64().unwrap_or(0) > now + 600 {
        return Err(unauthorized("'Expiration time' claim ('exp') is too far in the future"));
    }
    if claims["iat"].as_i64().unwrap_or(i64::MAX) > now {
        return Err(unauthorized("'Issued at' claim ('iat') must be an Integer representing a time in the past"));
    }
    Ok(())
}

macro_rules! jwt {
    ($headers:expr) => {
        if let Err(r) = verify_jwt(&$headers) {
            return r;
        }
    };
}

async fn get_app(h: HeaderMap) -> Response {
    jwt!(h);
    Json(json!({ "id": APP_ID, "slug": APP_SLUG, "name": "rollgate test" })).into_response()
}

async fn list_installations(State(f): State<Shared>, h: HeaderMap) -> Response {
    jwt!(h);
    let a = f.app.lock().unwrap();
    let items: Vec<Value> =
        a.installations.iter().map(|(id, account)| json!({ "id": id, "account": { "login": account } })).collect();
    Json(items).into_response()
}

async fn mint_token(State(f): State<Shared>, h: HeaderMap, Path(id): Path<u64>) -> Response {
    jwt!(h);
    let delay = f.app.lock().unwrap().mint_delay;
    tokio::time::sleep(delay).await;
    let mut a = f.app.lock().unwrap();
    if !a.installations.contains_key(&id) {
        return not_found();
    }
    a.minted.push(id);
    let token = format!("ghs_{id}_{}", a.minted.len());
    let expires_at = chrono::Utc::now() + a.lifetime;
    a.tokens.insert(token.clone(), (id, expires_at));
    let expires = expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    (StatusCode::CREATED, Json(json!({ "token": token, "expires_at": expires, "permissions": { "issues": "write" } }))).into_response()
}

fn installation_of(f: &Shared, account: &str) -> Response {
    let mut a = f.app.lock().unwrap();
    a.lookups += 1;
    match a.installations.iter().find(|(_, acc)| acc.eq_ignore_ascii_case(account)) {
        Some((id, acc)) => Json(json!({ "id": id, "account": { "login": acc }, "app_id": APP_ID })).into_response(),
        None => not_found(),
    }
}

async fn repo_installation(State(f): State<Shared>, h: HeaderMap, Path((o, _r)): Path<(String, String)>) -> Response {
    jwt!(h);
    installation_of(&f, &o)
}

async fn org_installation(State(f): State<Shared>, h: HeaderMap, Path(org): Path<String>) -> Response {
    jwt!(h);
    installation_of(&f, &org)
}

/// Installation tokens on the ordinary routes (the `/app` routes want the JWT instead).
pub(super) async fn installation_token_auth(
    State(f): State<Shared>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    req.headers_mut().remove(ACTOR_HEADER);
    req.headers_mut().remove(ACCOUNT_HEADER);
    let token = bearer(req.headers()).to_string();
    if !token.starts_with("ghs_") {
        return next.run(req).await;
    }
    let account = {
        let mut a = f.app.lock().unwrap();
        let Some((installation, expires_at)) = a.tokens.get(&token).copied() else {
            return unauthorized("Bad credentials");
        };
        if expires_at <= chrono::Utc::now() {
            a.refused += 1;
            return unauthorized("Bad credentials");
        }
        let account = a.installations.get(&installation).cloned().unwrap_or_default();
        let path: Vec<&str> = req.uri().path().split('/').collect();
        let owner = match path.get(1) {
            Some(&"repos") | Some(&"orgs") => path.get(2).copied(),
            _ => None,
        };
        if owner.is_some_and(|o| !o.eq_ignore_ascii_case(&account)) {
            return (StatusCode::FORBIDDEN, Json(json!({ "message": "Resource not accessible by integration" }))).into_response();
        }
        account
    };
    let h = req.headers_mut();
    if let Ok(v) = account.parse() {
        h.insert(ACCOUNT_HEADER, v);
    }
    h.insert("authorization", format!("token {TOKEN}").parse().unwrap());
    h.insert(ACTOR_HEADER, APP_BOT_LOGIN.parse().unwrap());
    next.run(req).await
}

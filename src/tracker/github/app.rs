//! GitHub App authentication. The App proves itself with a short JWT signed by its private key,
//! trades it for an installation token (one installation per account the App is installed on),
//! and makes every other call with that token. Tokens live an hour; they are cached per
//! installation and refreshed a few minutes before they expire.
//!
//! octocrab has App support, but its installation client refreshes only 30 s before expiry and
//! lets every concurrent caller with an expired token fetch its own; with eight workers waking on
//! a burst of deliveries that is eight token requests. So the cache is ours, and octocrab stays
//! the HTTP client.

use crate::config::{AppKey, Secret};
use anyhow::{bail, Context};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// How long before `expires_at` a token is replaced. GitHub's tokens live an hour; a token that
/// lives less than twice this (a test server's) is replaced half way through its life instead.
const REFRESH_BEFORE: Duration = Duration::minutes(5);

/// GitHub refuses a JWT that expires more than 10 minutes ahead. Issued a minute in the past
/// and valid for nine, it survives a minute of clock drift either way.
const JWT_BACKDATE: i64 = 60;
const JWT_LIFETIME: i64 = 9 * 60;

/// The App's identity: its id and the key its JWTs are signed with.
pub struct AppCredentials {
    pub id: u64,
    key: EncodingKey,
    /// The setting the key came from, for errors that say what to fix.
    pub key_from: String,
}

#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: u64,
}

impl AppCredentials {
    /// Reads and tries the key now: a bad key is an error at start that names its setting,
    /// not a failure on the first delivery.
    pub fn new(id: u64, key: &AppKey) -> anyhow::Result<Self> {
        let der = pkcs1_der(key.pem.expose()).with_context(|| format!("{}: not a GitHub App private key", key.from))?;
        let app = AppCredentials { id, key: EncodingKey::from_rsa_der(&der), key_from: key.from.clone() };
        app.jwt(Utc::now()).with_context(|| format!("{}: not a usable RSA private key", key.from))?;
        Ok(app)
    }

    /// A JWT that authenticates as the App itself (GET /app, installation tokens).
    pub fn jwt(&self, now: DateTime<Utc>) -> anyhow::Result<Secret> {
        let now = now.timestamp();
        let claims = Claims { iat: now - JWT_BACKDATE, exp: now + JWT_LIFETIME, iss: self.id };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key).context("signing the App JWT")?;
        Ok(Secret::new(jwt))
    }
}

/// The DER body of a PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`), the form GitHub hands out. Text
/// around the armour is ignored, as RFC 7468 allows.
fn pkcs1_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN RSA PRIVATE KEY-----";
    const END: &str = "-----END RSA PRIVATE KEY-----";
    let Some(start) = pem.find(BEGIN) else {
        if pem.contains("-----BEGIN PRIVATE KEY-----") {
            bail!("the key is PKCS#8 (BEGIN PRIVATE KEY); use the .pem GitHub generated, or convert it with `openssl rsa -in key.pem -traditional -out app.pem`");
        }
        bail!("no `{BEGIN}` line: expected the .pem file GitHub generated for the App");
    };
    let body = &pem[start + BEGIN.len()..];
    let Some(end) = body.find(END) else { bail!("no `{END}` line: the PEM is cut short") };
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).context("the PEM body is not base64")
}

/// An installation token and when to stop using it.
#[derive(Clone)]
pub struct InstallationToken {
    pub token: Secret,
    pub expires_at: DateTime<Utc>,
}

struct Cached {
    token: Secret,
    refresh_at: DateTime<Utc>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Installation tokens by installation id, and which installation covers which account.
#[derive(Default)]
pub struct Installations {
    /// Account login (lower case) -> installation id, learnt from deliveries or asked of GitHub.
    by_account: Mutex<HashMap<String, u64>>,
    /// One slot per installation. Its async lock is held while a token is fetched, so callers
    /// that arrive meanwhile wait for that token instead of asking for their own.
    tokens: Mutex<HashMap<u64, Slot>>,
}

impl Installations {
    pub fn known(&self, account: &str) -> Option<u64> {
        self.by_account.lock().expect("installations").get(&account.to_ascii_lowercase()).copied()
    }

    pub fn learn(&self, account: &str, installation: u64) {
        let previous = self.by_account.lock().expect("installations").insert(account.to_ascii_lowercase(), installation);
        if previous.is_some_and(|p| p != installation) {
            tracing::info!(account, installation, "the GitHub App was installed again on this account: using the new installation");
        }
    }

    /// The installation is gone (the App was uninstalled): the next call about its accounts
    /// asks GitHub again, which finds a reinstallation.
    pub fn forget(&self, installation: u64) {
        self.by_account.lock().expect("installations").retain(|_, id| *id != installation);
        self.tokens.lock().expect("installation tokens").remove(&installation);
    }

    fn slot(&self, installation: u64) -> Slot {
        self.tokens.lock().expect("installation tokens").entry(installation).or_default().clone()
    }

    /// The installation's token: the cached one while it is fresh, else one from `fetch`.
    pub async fn token<E, F, Fut>(&self, installation: u64, now: impl Fn() -> DateTime<Utc>, fetch: F) -> Result<Secret, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<InstallationToken, E>>,
    {
        let slot = self.slot(installation);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let fetched_at = now();
        let fresh = fetch().await?;
        let margin = REFRESH_BEFORE.min((fresh.expires_at - fetched_at) / 2).max(Duration::zero());
        *cached = Some(Cached { token: fresh.token.clone(), refresh_at: fresh.expires_at - margin });
        Ok(fresh.token)
    }

    /// GitHub refused `token`: drop it, unless another caller has already replaced it.
    pub async fn invalidate(&self, installation: u64, token: &Secret) {
        let slot = self.slot(installation);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == *token) {
            *cached = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const TEST_KEY: &str = include_str!("../../../tests/fixtures/github-app/test-app.private-key.pem");

    fn key(pem: &str) -> AppKey {
        AppKey { pem: Secret::new(pem), from: "ROLLGATE_GITHUB_APP_PRIVATE_KEY".into() }
    }

    #[test]
    fn a_jwt_is_rs256_backdated_a_minute_and_valid_under_ten() {
        let app = AppCredentials::new(42, &key(TEST_KEY)).unwrap();
        let now = Utc::now();
        let jwt = app.jwt(now).unwrap();
        let parts: Vec<&str> = jwt.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |p: &str| -> serde_json::Value {
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
        };
        assert_eq!(decode(parts[0])["alg"], "RS256");
        let claims = decode(parts[1]);
        assert_eq!(claims["iss"], 42);
        assert_eq!(claims["iat"], now.timestamp() - 60);
        let exp = claims["exp"].as_i64().unwrap();
        assert!(exp > now.timestamp() && exp <= now.timestamp() + 600, "{claims}");
    }

    #[test]
    fn a_bad_key_is_refused_naming_its_setting() {
        for (pem, says) in [
            ("not a key", "no `-----BEGIN RSA PRIVATE KEY-----` line"),
            ("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n", "PKCS#8"),
            ("-----BEGIN RSA PRIVATE KEY-----\n!!!!\n-----END RSA PRIVATE KEY-----\n", "not base64"),
            ("-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END RSA PRIVATE KEY-----\n", "not a usable RSA private key"),
        ] {
            let err = format!("{:#}", AppCredentials::new(1, &key(pem)).err().expect(pem));
            assert!(err.starts_with("ROLLGATE_GITHUB_APP_PRIVATE_KEY: "), "{err}");
            assert!(err.contains(says), "{err}");
        }
    }

    fn token(name: &str, expires_at: DateTime<Utc>) -> InstallationToken {
        InstallationToken { token: Secret::new(name), expires_at }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(Installations::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut calls = Vec::new();
        for _ in 0..8 {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            calls.push(tokio::spawn(async move {
                cache
                    .token(7, Utc::now, || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Ok::<_, ()>(token("t1", Utc::now() + Duration::hours(1)))
                    })
                    .await
            }));
        }
        for c in calls {
            assert_eq!(c.await.unwrap().unwrap().expose(), "t1");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_token_is_replaced_before_it_expires_and_when_refused() {
        let cache = Installations::default();
        let t0 = Utc::now();
        let at = |m: i64| move || t0 + Duration::minutes(m);
        let fetch = |name: &'static str| move || async move { Ok::<_, ()>(token(name, t0 + Duration::hours(1))) };
        assert_eq!(cache.token(1, at(0), fetch("a")).await.unwrap().expose(), "a");
        assert_eq!(cache.token(1, at(54), fetch("b")).await.unwrap().expose(), "a", "still five minutes left");
        assert_eq!(cache.token(1, at(56), fetch("b")).await.unwrap().expose(), "b", "inside the last five minutes");
        assert_eq!(cache.token(2, at(56), fetch("c")).await.unwrap().expose(), "c", "another installation, another token");

        // A stale refusal does not drop the token that replaced the refused one.
        cache.invalidate(1, &Secret::new("a")).await;
        assert_eq!(cache.token(1, at(0), fetch("d")).await.unwrap().expose(), "b");
        cache.invalidate(1, &Secret::new("b")).await;
        assert_eq!(cache.token(1, at(0), fetch("d")).await.unwrap().expose(), "d");

        // A short-lived token is replaced half way through its life.
        let short = || async move { Ok::<_, ()>(token("short", t0 + Duration::seconds(2))) };
        let cache = Installations::default();
        cache.token(1, || t0, short).await.unwrap();
        let later = t0 + Duration::milliseconds(1100);
        assert_eq!(cache.token(1, || later, fetch("e")).await.unwrap().expose(), "e");
    }

    #[test]
    fn accounts_are_matched_without_case() {
        let i = Installations::default();
        i.learn("Codertocat", 1);
        assert_eq!(i.known("codertocat"), Some(1));
        i.learn("codertocat", 2);
        assert_eq!(i.known("CODERTOCAT"), Some(2));
        assert_eq!(i.known("octo-org"), None);
        i.learn("octo-org", 3);
        i.forget(2);
        assert_eq!((i.known("codertocat"), i.known("octo-org")), (None, Some(3)));
    }
}

//! One `Settings`: `rollgate.toml` first, then `ROLLGATE_*` variables, which win.
//! Secrets live in `Secret`, whose Debug and Display never show the value.

mod env;
mod file;
mod http;
mod jira;
#[cfg(test)]
mod tests;

pub use http::HttpSettings;
pub use jira::JiraMapping;

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A value that must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub policies: PathBuf,
    pub timezone: chrono_tz::Tz,
    /// Asked for explicitly; see `effective_dry_run` for the rule that also counts credentials.
    pub dry_run: bool,
    pub admin_token: Option<Secret>,
    /// Bearer token `POST /api/v1/evaluate` requires; without it the endpoint answers anyone
    /// but judges every request as an anonymous person with no roles.
    pub evaluate_token: Option<Secret>,
    /// Bearer token `GET /metrics` requires; without it the metrics are open.
    pub metrics_token: Option<Secret>,
    pub github: GithubSettings,
    pub jira: JiraSettings,
    pub roles: Roles,
    pub queue: QueueSettings,
    /// Working days (`Mon`...), empty for Monday to Friday.
    pub workweek: Vec<String>,
    /// `YYYY-MM-DD` dates that are not business days.
    pub holidays: Vec<String>,
    /// Where reports are filed: `owner/repo` (GitHub) or a Jira project key.
    pub reports_target: Option<String>,
    /// How long and how much the HTTP edge waits for and holds from its callers.
    pub http: HttpSettings,
}

#[derive(Debug, Clone)]
pub struct GithubSettings {
    pub api_url: String,
    pub token: Option<Secret>,
    /// A GitHub App instead of a token: its id and private key. `validate` allows one or the
    /// other, never both, so which credentials rollgate writes with is never a guess.
    pub app_id: Option<u64>,
    pub app_key: Option<AppKey>,
    /// Several secrets are accepted at once so a secret can be rotated without downtime.
    pub webhook_secrets: Vec<Secret>,
    pub writes_per_minute: u32,
}

/// A GitHub App's private key (PEM text) and the setting it came from, which errors about it
/// name.
#[derive(Debug, Clone)]
pub struct AppKey {
    pub pem: Secret,
    pub from: String,
}

/// How rollgate authenticates to GitHub.
#[derive(Debug, Clone, Copy)]
pub enum GithubAuth<'a> {
    Token(&'a Secret),
    App { id: u64, key: &'a AppKey },
}

impl GithubSettings {
    /// The configured credentials, if any (`Settings::load` has refused a half or double set).
    pub fn auth(&self) -> Option<GithubAuth<'_>> {
        match (&self.token, self.app_id, &self.app_key) {
            (Some(token), _, _) => Some(GithubAuth::Token(token)),
            (None, Some(id), Some(key)) => Some(GithubAuth::App { id, key }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct JiraSettings {
    pub base_url: Option<String>,
    pub email: Option<String>,
    pub api_token: Option<Secret>,
    /// HMAC secrets of the admin webhook (`X-Hub-Signature`); several, so one can be rotated.
    pub webhook_secrets: Vec<Secret>,
    /// Accept Jira deliveries that carry no signature at all. Only for a Jira that cannot sign
    /// (no Secret field on its WebHooks page) behind a network boundary: anyone who reaches
    /// `/webhooks/jira` can then act as any Jira user.
    pub allow_unsigned_webhooks: bool,
    pub mapping: JiraMapping,
}

impl JiraSettings {
    /// Cloud (email + API token) speaks REST v3 and ADF; Data Center (a PAT alone) REST v2.
    pub fn api_version(&self) -> u8 {
        if self.email.is_some() { 3 } else { 2 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    pub pm: Vec<String>,
    pub qa_lead: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Issues processed at once. Events of one issue never run concurrently whatever this is.
    pub workers: usize,
    /// Attempts before an event becomes a dead letter.
    pub max_attempts: u32,
    /// How long a worker holds an event it claimed before another worker (or replica) may take
    /// it over; renewed while the event is in progress, so only a crash lets it run out.
    pub lease_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            database_url: "sqlite://rollgate.db".into(),
            policies: PathBuf::from("policies"),
            timezone: chrono_tz::UTC,
            dry_run: false,
            admin_token: None,
            evaluate_token: None,
            metrics_token: None,
            github: GithubSettings {
                api_url: "https://api.github.com".into(),
                token: None,
                app_id: None,
                app_key: None,
                webhook_secrets: Vec::new(),
                writes_per_minute: 60,
            },
            jira: JiraSettings::default(),
            roles: Roles::default(),
            queue: QueueSettings { workers: 8, max_attempts: 8, lease_secs: 30 },
            workweek: Vec::new(),
            holidays: Vec::new(),
            reports_target: None,
            http: HttpSettings::default(),
        }
    }
}

impl Settings {
    /// The business-day calendar every policy date uses.
    pub fn calendar(&self) -> anyhow::Result<crate::clock::Calendar> {
        crate::clock::Calendar::new(self.timezone, &self.workweek, &self.holidays)
    }

    /// Dry run when asked, and whenever there is no tracker credential to apply anything with.
    pub fn effective_dry_run(&self) -> bool {
        self.dry_run || (self.github.auth().is_none() && !self.jira_writes())
    }

    /// Whether Jira changes can be applied (a base URL and a token).
    pub fn jira_writes(&self) -> bool {
        self.jira.base_url.is_some() && self.jira.api_token.is_some()
    }

    /// Reads `path` when given (it must exist), else `./rollgate.toml` when present, then the
    /// process environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let env: BTreeMap<String, String> =
            std::env::vars().filter(|(k, _)| k.starts_with("ROLLGATE_")).collect();
        Self::load_from(path, &env)
    }

    pub fn load_from(path: Option<&Path>, env: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let mut s = Settings::default();
        let file = match path {
            Some(p) => Some((p.to_path_buf(), true)),
            None => Some((PathBuf::from("rollgate.toml"), false)),
        };
        if let Some((p, required)) = file {
            match std::fs::read_to_string(&p) {
                Ok(text) => {
                    let f: file::FileSettings = toml::from_str(&text)
                        .with_context(|| format!("reading configuration file {}", p.display()))?;
                    s.apply_file(f)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
            }
        }
        s.apply_env(env)?;
        s.validate_github_auth()?;
        Ok(s)
    }

    /// Checked once everything is read: the App id may come from the file and its key from
    /// the environment.
    fn validate_github_auth(&self) -> anyhow::Result<()> {
        let g = &self.github;
        match (&g.token, g.app_id, &g.app_key) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => bail!(
                "both ROLLGATE_GITHUB_TOKEN and a GitHub App (ROLLGATE_GITHUB_APP_ID, ROLLGATE_GITHUB_APP_PRIVATE_KEY) are set: \
                 keep one of them, rollgate will not guess which to write with"
            ),
            (None, Some(_), None) => bail!(
                "ROLLGATE_GITHUB_APP_ID is set without the App's private key: set ROLLGATE_GITHUB_APP_PRIVATE_KEY_FILE \
                 (or [github] private_key_file) or ROLLGATE_GITHUB_APP_PRIVATE_KEY"
            ),
            (None, None, Some(key)) => bail!("{} is set without ROLLGATE_GITHUB_APP_ID ([github] app_id)", key.from),
            _ => Ok(()),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.queue.workers == 0 {
            bail!("queue workers must be at least 1");
        }
        if self.queue.max_attempts == 0 {
            bail!("queue max_attempts must be at least 1");
        }
        if self.queue.lease_secs < 3 {
            bail!("queue lease_secs must be at least 3 (leases are renewed every third of it)");
        }
        self.calendar()?;
        if let Some(url) = &self.jira.base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("Jira base URL {url:?} must start with http:// or https://");
            }
        }
        if !(self.github.api_url.starts_with("http://") || self.github.api_url.starts_with("https://")) {
            bail!("GitHub API URL {:?} must start with http:// or https://", self.github.api_url);
        }
        if let Some(target) = self.reports_target.as_deref().filter(|t| t.contains('/')) {
            if !crate::model::is_github_repo(target) {
                bail!("reports target {target:?} is not a GitHub repository name (owner/name) or a Jira project key");
            }
        }
        if self.jira.allow_unsigned_webhooks && !self.jira.webhook_secrets.is_empty() {
            bail!(
                "ROLLGATE_JIRA_WEBHOOK_SECRET and ROLLGATE_JIRA_ALLOW_UNSIGNED_WEBHOOKS ([jira] allow_unsigned_webhooks) are both set: \
                 with a secret every Jira delivery must be signed, so remove allow_unsigned_webhooks"
            );
        }
        self.http.validate()
    }

    /// What `serve` prints at start: every setting, secrets as set/unset only.
    pub fn describe(&self) -> String {
        let set = |s: &Option<Secret>| if s.is_some() { "set" } else { "unset" };
        format!(
            "listen={} database={} policies={} timezone={} dry_run={} admin_token={} evaluate_token={} metrics_token={} \
             github_api={} github_token={} github_app_id={} github_app_key={} github_webhook_secrets={} github_writes_per_minute={} \
             jira_base_url={} jira_webhook_secrets={} jira_unsigned_webhooks={} roles_pm={} roles_qa_lead={} workers={} max_attempts={} lease_secs={} {}",
            self.listen,
            redact_url(&self.database_url),
            self.policies.display(),
            self.timezone,
            self.effective_dry_run(),
            set(&self.admin_token),
            set(&self.evaluate_token),
            set(&self.metrics_token),
            self.github.api_url,
            set(&self.github.token),
            self.github.app_id.map_or_else(|| "unset".to_string(), |id| id.to_string()),
            if self.github.app_key.is_some() { "set" } else { "unset" },
            self.github.webhook_secrets.len(),
            self.github.writes_per_minute,
            self.jira.base_url.as_deref().unwrap_or("unset"),
            self.jira.webhook_secrets.len(),
            if self.jira.allow_unsigned_webhooks { "ACCEPTED" } else { "refused" },
            self.roles.pm.len(),
            self.roles.qa_lead.len(),
            self.queue.workers,
            self.queue.max_attempts,
            self.queue.lease_secs,
            self.http.describe(),
        )
    }
}

/// Reads a private key file now, so a wrong path fails at start and names the setting.
fn read_key_file(path: &Path, setting: &str) -> anyhow::Result<AppKey> {
    let pem = std::fs::read_to_string(path).with_context(|| format!("{setting}: reading {}", path.display()))?;
    Ok(AppKey { pem: Secret::new(pem), from: format!("{setting} ({})", path.display()) })
}

/// Hides a password in `postgres://user:password@host/db`.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn split_list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// A secret or token from `setting`. An empty one is refused rather than taken: an empty admin
/// token would match a request without the header, an empty webhook secret would verify
/// deliveries signed with the empty key.
fn secret(setting: &str, value: String) -> anyhow::Result<Secret> {
    if value.trim().is_empty() {
        bail!("{setting} is empty: an empty secret or token would let anyone through; remove the key to leave it unset, or give it a value");
    }
    Ok(Secret(value))
}

/// A comma-separated list of secrets (`old,new` while rotating). Every entry must have a value:
/// `a,,b` is refused, naming the setting, for the same reason as an empty secret.
fn secret_list(setting: &str, value: &str) -> anyhow::Result<Vec<Secret>> {
    value
        .split(',')
        .map(|s| {
            let s = s.trim();
            if s.is_empty() {
                // The value itself is never quoted: it holds the other secrets.
                bail!("{setting} has an empty entry (two commas in a row, or a comma at either end): every secret in the list needs a value, an empty one would verify deliveries signed with the empty key");
            }
            Ok(Secret::new(s))
        })
        .collect()
}

fn parse_bool(name: &str, v: &str) -> anyhow::Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("{name}={v:?}: expected true or false"),
    }
}

fn parse_tz(v: &str) -> anyhow::Result<chrono_tz::Tz> {
    v.parse()
        .map_err(|_| anyhow::anyhow!("time zone {v:?} is not an IANA zone name such as Europe/Paris"))
}


//! One `Settings`: `rollgate.toml` first, then `ROLLGATE_*` variables, which win.
//! Secrets live in `Secret`, whose Debug and Display never show the value.

mod jira;

pub use jira::JiraMapping;

use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A value that must never reach a log line.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
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
    pub webhook_secret: Option<Secret>,
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
                    let f: FileSettings = toml::from_str(&text)
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

    fn apply_file(&mut self, f: FileSettings) -> anyhow::Result<()> {
        if let Some(v) = f.listen {
            self.listen = v.parse().with_context(|| format!("listen = {v:?} is not an address"))?;
        }
        if let Some(v) = f.database_url {
            self.database_url = v;
        }
        if let Some(v) = f.policies {
            self.policies = v;
        }
        if let Some(v) = f.timezone {
            self.timezone = parse_tz(&v)?;
        }
        if let Some(v) = f.dry_run {
            self.dry_run = v;
        }
        if let Some(v) = f.admin_token {
            self.admin_token = Some(v);
        }
        if let Some(g) = f.github {
            if let Some(v) = g.api_url {
                self.github.api_url = v;
            }
            if let Some(v) = g.token {
                self.github.token = Some(v);
            }
            if let Some(v) = g.app_id {
                self.github.app_id = Some(v);
            }
            if let Some(path) = g.private_key_file {
                self.github.app_key = Some(read_key_file(&path, "[github] private_key_file")?);
            }
            if let Some(v) = g.webhook_secret {
                self.github.webhook_secrets = v.into_secrets();
            }
            if let Some(v) = g.writes_per_minute {
                self.github.writes_per_minute = v;
            }
        }
        if let Some(j) = f.jira {
            self.jira.base_url = j.base_url.or(self.jira.base_url.take());
            self.jira.email = j.email.or(self.jira.email.take());
            self.jira.api_token = j.api_token.or(self.jira.api_token.take());
            self.jira.webhook_secret = j.webhook_secret.or(self.jira.webhook_secret.take());
            if let Some(m) = j.mapping {
                self.jira.mapping = m;
            }
        }
        if let Some(r) = f.roles {
            self.roles.pm = r.pm.unwrap_or_default();
            self.roles.qa_lead = r.qa_lead.unwrap_or_default();
        }
        if let Some(r) = f.reports {
            self.reports_target = r.target.or(self.reports_target.take());
        }
        if let Some(c) = f.calendar {
            if let Some(v) = c.workweek {
                self.workweek = v;
            }
            if let Some(v) = c.holidays {
                self.holidays = v;
            }
        }
        if let Some(q) = f.queue {
            if let Some(v) = q.workers {
                self.queue.workers = v;
            }
            if let Some(v) = q.max_attempts {
                self.queue.max_attempts = v;
            }
            if let Some(v) = q.lease_secs {
                self.queue.lease_secs = v;
            }
        }
        self.validate()
    }

    fn apply_env(&mut self, env: &BTreeMap<String, String>) -> anyhow::Result<()> {
        let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        if let Some(v) = get("ROLLGATE_LISTEN") {
            self.listen =
                v.parse().with_context(|| format!("ROLLGATE_LISTEN={v:?} is not an address"))?;
        }
        if let Some(v) = get("ROLLGATE_DATABASE_URL") {
            self.database_url = v.into();
        }
        if let Some(v) = get("ROLLGATE_POLICIES") {
            self.policies = v.into();
        }
        if let Some(v) = get("ROLLGATE_TIMEZONE") {
            self.timezone = parse_tz(v)?;
        }
        if let Some(v) = get("ROLLGATE_DRY_RUN") {
            self.dry_run = parse_bool("ROLLGATE_DRY_RUN", v)?;
        }
        if let Some(v) = get("ROLLGATE_ADMIN_TOKEN") {
            self.admin_token = Some(Secret::new(v));
        }
        if let Some(v) = get("ROLLGATE_GITHUB_API_URL") {
            self.github.api_url = v.into();
        }
        if let Some(v) = get("ROLLGATE_GITHUB_TOKEN") {
            self.github.token = Some(Secret::new(v));
        }
        if let Some(v) = get("ROLLGATE_GITHUB_APP_ID") {
            self.github.app_id = Some(v.parse().with_context(|| {
                format!("ROLLGATE_GITHUB_APP_ID={v:?} is not a number (the App ID on the App's settings page)")
            })?);
        }
        match (get("ROLLGATE_GITHUB_APP_PRIVATE_KEY"), get("ROLLGATE_GITHUB_APP_PRIVATE_KEY_FILE")) {
            (Some(_), Some(_)) => bail!("set ROLLGATE_GITHUB_APP_PRIVATE_KEY or ROLLGATE_GITHUB_APP_PRIVATE_KEY_FILE, not both"),
            (Some(pem), None) => {
                // An environment file holds one line: accept the PEM with its newlines written `\n`.
                let pem = if pem.contains('\n') { pem.to_string() } else { pem.replace("\\n", "\n") };
                self.github.app_key = Some(AppKey { pem: Secret::new(pem), from: "ROLLGATE_GITHUB_APP_PRIVATE_KEY".into() });
            }
            (None, Some(path)) => {
                self.github.app_key = Some(read_key_file(Path::new(path), "ROLLGATE_GITHUB_APP_PRIVATE_KEY_FILE")?);
            }
            (None, None) => {}
        }
        if let Some(v) = get("ROLLGATE_GITHUB_WEBHOOK_SECRET") {
            self.github.webhook_secrets = split_list(v).map(Secret::new).collect();
        }
        if let Some(v) = get("ROLLGATE_GITHUB_WRITES_PER_MINUTE") {
            self.github.writes_per_minute = v.parse().with_context(|| {
                format!("ROLLGATE_GITHUB_WRITES_PER_MINUTE={v:?} is not a whole number")
            })?;
        }
        if let Some(v) = get("ROLLGATE_JIRA_BASE_URL") {
            self.jira.base_url = Some(v.into());
        }
        if let Some(v) = get("ROLLGATE_JIRA_EMAIL") {
            self.jira.email = Some(v.into());
        }
        if let Some(v) = get("ROLLGATE_JIRA_API_TOKEN") {
            self.jira.api_token = Some(Secret::new(v));
        }
        if let Some(v) = get("ROLLGATE_JIRA_WEBHOOK_SECRET") {
            self.jira.webhook_secret = Some(Secret::new(v));
        }
        if let Some(v) = get("ROLLGATE_ROLES_PM") {
            self.roles.pm = split_list(v).map(String::from).collect();
        }
        if let Some(v) = get("ROLLGATE_ROLES_QA_LEAD") {
            self.roles.qa_lead = split_list(v).map(String::from).collect();
        }
        if let Some(v) = get("ROLLGATE_REPORTS_TARGET") {
            self.reports_target = Some(v.into());
        }
        if let Some(v) = get("ROLLGATE_HOLIDAYS") {
            self.holidays = split_list(v).map(String::from).collect();
        }
        if let Some(v) = get("ROLLGATE_WORKWEEK") {
            self.workweek = split_list(v).map(String::from).collect();
        }
        if let Some(v) = get("ROLLGATE_WORKERS") {
            self.queue.workers =
                v.parse().with_context(|| format!("ROLLGATE_WORKERS={v:?} is not a number"))?;
        }
        if let Some(v) = get("ROLLGATE_MAX_ATTEMPTS") {
            self.queue.max_attempts = v
                .parse()
                .with_context(|| format!("ROLLGATE_MAX_ATTEMPTS={v:?} is not a number"))?;
        }
        if let Some(v) = get("ROLLGATE_LEASE_SECS") {
            self.queue.lease_secs =
                v.parse().with_context(|| format!("ROLLGATE_LEASE_SECS={v:?} is not a number of seconds"))?;
        }
        self.validate()
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
        Ok(())
    }

    /// What `serve` prints at start: every setting, secrets as set/unset only.
    pub fn describe(&self) -> String {
        let set = |s: &Option<Secret>| if s.is_some() { "set" } else { "unset" };
        format!(
            "listen={} database={} policies={} timezone={} dry_run={} admin_token={} \
             github_api={} github_token={} github_app_id={} github_app_key={} github_webhook_secrets={} github_writes_per_minute={} \
             jira_base_url={} roles_pm={} roles_qa_lead={} workers={} max_attempts={} lease_secs={}",
            self.listen,
            redact_url(&self.database_url),
            self.policies.display(),
            self.timezone,
            self.effective_dry_run(),
            set(&self.admin_token),
            self.github.api_url,
            set(&self.github.token),
            self.github.app_id.map_or_else(|| "unset".to_string(), |id| id.to_string()),
            if self.github.app_key.is_some() { "set" } else { "unset" },
            self.github.webhook_secrets.len(),
            self.github.writes_per_minute,
            self.jira.base_url.as_deref().unwrap_or("unset"),
            self.roles.pm.len(),
            self.roles.qa_lead.len(),
            self.queue.workers,
            self.queue.max_attempts,
            self.queue.lease_secs,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    database_url: Option<String>,
    policies: Option<PathBuf>,
    timezone: Option<String>,
    dry_run: Option<bool>,
    admin_token: Option<Secret>,
    github: Option<FileGithub>,
    jira: Option<FileJira>,
    roles: Option<FileRoles>,
    queue: Option<FileQueue>,
    calendar: Option<FileCalendar>,
    reports: Option<FileReports>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReports {
    target: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCalendar {
    workweek: Option<Vec<String>>,
    holidays: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGithub {
    api_url: Option<String>,
    token: Option<Secret>,
    app_id: Option<u64>,
    private_key_file: Option<PathBuf>,
    webhook_secret: Option<OneOrMany>,
    writes_per_minute: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_secrets(self) -> Vec<Secret> {
        match self {
            OneOrMany::One(s) => split_list(&s).map(Secret::new).collect(),
            OneOrMany::Many(v) => v.into_iter().map(Secret).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJira {
    base_url: Option<String>,
    email: Option<String>,
    api_token: Option<Secret>,
    webhook_secret: Option<Secret>,
    mapping: Option<JiraMapping>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoles {
    pm: Option<Vec<String>>,
    qa_lead: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileQueue {
    workers: Option<usize>,
    max_attempts: Option<u32>,
    lease_secs: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn env_wins_over_file_and_secrets_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rollgate.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\ntimezone = \"Asia/Kolkata\"\n[github]\nwebhook_secret = [\"a\", \"b\"]\ntoken = \"tok-file\"\n[roles]\npm = [\"alice\", \"@acme/pms\"]\n",
        )
        .unwrap();
        let s = Settings::load_from(
            Some(&file),
            &env(&[("ROLLGATE_LISTEN", "127.0.0.1:9001"), ("ROLLGATE_GITHUB_TOKEN", "tok-env")]),
        )
        .unwrap();
        assert_eq!(s.listen.port(), 9001);
        assert_eq!(s.timezone, chrono_tz::Asia::Kolkata);
        assert_eq!(s.github.webhook_secrets.len(), 2);
        assert_eq!(s.github.token.as_ref().unwrap().expose(), "tok-env");
        assert_eq!(s.roles.pm, vec!["alice", "@acme/pms"]);
        let shown = format!("{s:?} {}", s.describe());
        assert!(!shown.contains("tok-env") && !shown.contains("tok-file"), "{shown}");
        assert!(!s.effective_dry_run());
    }

    #[test]
    fn no_token_means_dry_run_and_bad_values_are_named() {
        let s = Settings::load_from(None, &env(&[])).unwrap();
        assert!(s.effective_dry_run());
        let err = Settings::load_from(None, &env(&[("ROLLGATE_TIMEZONE", "Mars/Base")])).unwrap_err();
        assert!(err.to_string().contains("Mars/Base"), "{err}");
        let err = Settings::load_from(None, &env(&[("ROLLGATE_DRY_RUN", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("ROLLGATE_DRY_RUN"), "{err}");
    }

    #[test]
    fn a_github_app_is_read_from_file_and_env_and_never_printed_or_mixed_with_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("app.pem");
        std::fs::write(&key, "-----BEGIN RSA PRIVATE KEY-----\nsecret-key-text\n-----END RSA PRIVATE KEY-----\n").unwrap();
        let file = dir.path().join("rollgate.toml");
        std::fs::write(&file, format!("[github]\napp_id = 12345\nprivate_key_file = {:?}\n", key.display().to_string())).unwrap();
        let s = Settings::load_from(Some(&file), &env(&[])).unwrap();
        match s.github.auth() {
            Some(GithubAuth::App { id, key }) => {
                assert_eq!(id, 12345);
                assert!(key.pem.expose().contains("secret-key-text"));
                assert!(key.from.starts_with("[github] private_key_file"), "{}", key.from);
            }
            other => panic!("expected the App, got {other:?}"),
        }
        assert!(!s.effective_dry_run(), "an App is a GitHub credential");
        let shown = format!("{s:?} {}", s.describe());
        assert!(!shown.contains("secret-key-text"), "{shown}");
        assert!(shown.contains("github_app_id=12345 github_app_key=set"), "{shown}");

        // The variable wins over the file, and one line with `\n` escapes is a PEM.
        let s = Settings::load_from(
            Some(&file),
            &env(&[("ROLLGATE_GITHUB_APP_PRIVATE_KEY", "-----BEGIN RSA PRIVATE KEY-----\\nfrom-env\\n-----END RSA PRIVATE KEY-----")]),
        )
        .unwrap();
        let key = s.github.app_key.unwrap();
        assert_eq!(key.from, "ROLLGATE_GITHUB_APP_PRIVATE_KEY");
        assert!(key.pem.expose().contains("\nfrom-env\n"), "{:?}", key.pem.expose().len());

        let err = Settings::load_from(Some(&file), &env(&[("ROLLGATE_GITHUB_TOKEN", "t")])).unwrap_err();
        assert!(err.to_string().contains("both ROLLGATE_GITHUB_TOKEN and a GitHub App"), "{err}");
        let err = Settings::load_from(None, &env(&[("ROLLGATE_GITHUB_APP_ID", "7")])).unwrap_err();
        assert!(err.to_string().contains("without the App's private key"), "{err}");
        let err = Settings::load_from(None, &env(&[("ROLLGATE_GITHUB_APP_ID", "my-app")])).unwrap_err();
        assert!(err.to_string().contains("ROLLGATE_GITHUB_APP_ID=\"my-app\" is not a number"), "{err}");
        let missing = dir.path().join("nope.pem");
        let err = Settings::load_from(None, &env(&[("ROLLGATE_GITHUB_APP_ID", "7"), ("ROLLGATE_GITHUB_APP_PRIVATE_KEY_FILE", missing.to_str().unwrap())]))
            .unwrap_err();
        assert!(format!("{err:#}").contains("ROLLGATE_GITHUB_APP_PRIVATE_KEY_FILE: reading"), "{err:#}");
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(redact_url("postgres://bob:pw@db/x"), "postgres://bob:***@db/x");
        assert_eq!(redact_url("sqlite://rollgate.db"), "sqlite://rollgate.db");
    }
}

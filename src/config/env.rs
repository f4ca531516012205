//! `ROLLGATE_*` variables, laid over the file. A variable set to nothing (or only blanks) counts
//! as unset, as deploy/rollgate.env.example promises: an environment file lists every key, and
//! the ones left empty must keep their default. An empty *entry* in a list (`a,,b`) is refused.

use super::{parse_bool, parse_tz, read_key_file, secret_list, split_list, AppKey, Secret, Settings};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

/// A whole number from `name`, or an error that names the variable and what it expects.
fn number<T: FromStr>(name: &str, v: &str, what: &str) -> anyhow::Result<T> {
    v.parse().map_err(|_| anyhow::anyhow!("{name}={v:?} is not {what}"))
}

impl Settings {
    pub(super) fn apply_env(&mut self, env: &BTreeMap<String, String>) -> anyhow::Result<()> {
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
        if let Some(v) = get("ROLLGATE_EVALUATE_TOKEN") {
            self.evaluate_token = Some(Secret::new(v));
        }
        if let Some(v) = get("ROLLGATE_METRICS_TOKEN") {
            self.metrics_token = Some(Secret::new(v));
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
            self.github.webhook_secrets = secret_list("ROLLGATE_GITHUB_WEBHOOK_SECRET", v)?;
        }
        if let Some(v) = get("ROLLGATE_GITHUB_WRITES_PER_MINUTE") {
            self.github.writes_per_minute = number("ROLLGATE_GITHUB_WRITES_PER_MINUTE", v, "a whole number")?;
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
            self.jira.webhook_secrets = secret_list("ROLLGATE_JIRA_WEBHOOK_SECRET", v)?;
        }
        if let Some(v) = get("ROLLGATE_JIRA_ALLOW_UNSIGNED_WEBHOOKS") {
            self.jira.allow_unsigned_webhooks = parse_bool("ROLLGATE_JIRA_ALLOW_UNSIGNED_WEBHOOKS", v)?;
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
            self.queue.workers = number("ROLLGATE_WORKERS", v, "a number")?;
        }
        if let Some(v) = get("ROLLGATE_MAX_ATTEMPTS") {
            self.queue.max_attempts = number("ROLLGATE_MAX_ATTEMPTS", v, "a number")?;
        }
        if let Some(v) = get("ROLLGATE_LEASE_SECS") {
            self.queue.lease_secs = number("ROLLGATE_LEASE_SECS", v, "a number of seconds")?;
        }
        let secs = |name: &str, v: &str| number::<u64>(name, v, "a whole number of seconds").map(std::time::Duration::from_secs);
        if let Some(v) = get("ROLLGATE_HTTP_HEADER_TIMEOUT_SECS") {
            self.http.header_timeout = secs("ROLLGATE_HTTP_HEADER_TIMEOUT_SECS", v)?;
        }
        if let Some(v) = get("ROLLGATE_HTTP_BODY_TIMEOUT_SECS") {
            self.http.body_timeout = secs("ROLLGATE_HTTP_BODY_TIMEOUT_SECS", v)?;
        }
        if let Some(v) = get("ROLLGATE_HTTP_IDLE_TIMEOUT_SECS") {
            self.http.idle_timeout = secs("ROLLGATE_HTTP_IDLE_TIMEOUT_SECS", v)?;
        }
        if let Some(v) = get("ROLLGATE_HTTP_MAX_CONNECTIONS") {
            self.http.max_connections = number("ROLLGATE_HTTP_MAX_CONNECTIONS", v, "a number")?;
        }
        if let Some(v) = get("ROLLGATE_HTTP_MAX_UNSIGNED_BYTES") {
            self.http.max_unsigned_bytes = number("ROLLGATE_HTTP_MAX_UNSIGNED_BYTES", v, "a number of bytes")?;
        }
        if let Some(v) = get("ROLLGATE_HTTP_STORE_TIMEOUT_MS") {
            self.http.store_timeout =
                std::time::Duration::from_millis(number("ROLLGATE_HTTP_STORE_TIMEOUT_MS", v, "a number of milliseconds")?);
        }
        self.validate()
    }
}

//! `rollgate.toml`: its shape, and how it is laid over the defaults. Every key is optional;
//! `deny_unknown_fields` turns a misspelt key into an error naming it instead of a silent default.

use super::{read_key_file, secret, secret_list, JiraMapping, Secret, Settings};
use anyhow::Context;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSettings {
    listen: Option<String>,
    database_url: Option<String>,
    policies: Option<PathBuf>,
    timezone: Option<String>,
    dry_run: Option<bool>,
    admin_token: Option<String>,
    evaluate_token: Option<String>,
    metrics_token: Option<String>,
    github: Option<FileGithub>,
    jira: Option<FileJira>,
    roles: Option<FileRoles>,
    queue: Option<FileQueue>,
    calendar: Option<FileCalendar>,
    reports: Option<FileReports>,
    http: Option<FileHttp>,
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
    token: Option<String>,
    app_id: Option<u64>,
    private_key_file: Option<PathBuf>,
    webhook_secret: Option<OneOrMany>,
    writes_per_minute: Option<u32>,
}

/// A secret list written as one comma-separated string or as an array.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_secrets(self, setting: &str) -> anyhow::Result<Vec<Secret>> {
        match self {
            OneOrMany::One(s) => secret_list(setting, &s),
            OneOrMany::Many(v) => v.into_iter().map(|s| secret(setting, s)).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJira {
    base_url: Option<String>,
    email: Option<String>,
    api_token: Option<String>,
    webhook_secret: Option<OneOrMany>,
    allow_unsigned_webhooks: Option<bool>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    header_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    max_unsigned_bytes: Option<usize>,
    store_timeout_ms: Option<u64>,
}

impl Settings {
    pub(super) fn apply_file(&mut self, f: FileSettings) -> anyhow::Result<()> {
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
            self.timezone = super::parse_tz(&v)?;
        }
        if let Some(v) = f.dry_run {
            self.dry_run = v;
        }
        if let Some(v) = f.admin_token {
            self.admin_token = Some(secret("admin_token", v)?);
        }
        if let Some(v) = f.evaluate_token {
            self.evaluate_token = Some(secret("evaluate_token", v)?);
        }
        if let Some(v) = f.metrics_token {
            self.metrics_token = Some(secret("metrics_token", v)?);
        }
        if let Some(g) = f.github {
            if let Some(v) = g.api_url {
                self.github.api_url = v;
            }
            if let Some(v) = g.token {
                self.github.token = Some(secret("[github] token", v)?);
            }
            if let Some(v) = g.app_id {
                self.github.app_id = Some(v);
            }
            if let Some(path) = g.private_key_file {
                self.github.app_key = Some(read_key_file(&path, "[github] private_key_file")?);
            }
            if let Some(v) = g.webhook_secret {
                self.github.webhook_secrets = v.into_secrets("[github] webhook_secret")?;
            }
            if let Some(v) = g.writes_per_minute {
                self.github.writes_per_minute = v;
            }
        }
        if let Some(j) = f.jira {
            self.jira.base_url = j.base_url.or(self.jira.base_url.take());
            self.jira.email = j.email.or(self.jira.email.take());
            if let Some(v) = j.api_token {
                self.jira.api_token = Some(secret("[jira] api_token", v)?);
            }
            if let Some(v) = j.webhook_secret {
                self.jira.webhook_secrets = v.into_secrets("[jira] webhook_secret")?;
            }
            if let Some(v) = j.allow_unsigned_webhooks {
                self.jira.allow_unsigned_webhooks = v;
            }
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
        if let Some(h) = f.http {
            let secs = std::time::Duration::from_secs;
            if let Some(v) = h.header_timeout_secs {
                self.http.header_timeout = secs(v);
            }
            if let Some(v) = h.body_timeout_secs {
                self.http.body_timeout = secs(v);
            }
            if let Some(v) = h.idle_timeout_secs {
                self.http.idle_timeout = secs(v);
            }
            if let Some(v) = h.max_connections {
                self.http.max_connections = v;
            }
            if let Some(v) = h.max_unsigned_bytes {
                self.http.max_unsigned_bytes = v;
            }
            if let Some(v) = h.store_timeout_ms {
                self.http.store_timeout = std::time::Duration::from_millis(v);
            }
        }
        self.validate()
    }
}

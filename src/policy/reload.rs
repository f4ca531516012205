//! Hot reload. A saved policy file takes effect within a second; so do SIGHUP and
//! POST /admin/reload. A folder that does not compile, or whose fixtures fail, never replaces
//! the running set: the error is logged and shown in /readyz and the old set keeps serving.
//! Events in flight keep the set they started with (they hold its `Arc`).

use super::{fixtures, PolicyHandle, PolicySet};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    /// Why the newest files are not serving, if they are not.
    pub error: Option<String>,
    pub last_attempt: Option<DateTime<Utc>>,
    pub reloads: u64,
}

pub struct Reloader {
    dir: PathBuf,
    handle: PolicyHandle,
    status: Mutex<ReloadStatus>,
    /// One reload at a time, whoever asks.
    running: tokio::sync::Mutex<()>,
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    Replaced { from: String, to: String },
    Unchanged(String),
}

impl Reloader {
    pub fn new(dir: PathBuf, handle: PolicyHandle) -> Arc<Self> {
        Arc::new(Reloader { dir, handle, status: Mutex::default(), running: tokio::sync::Mutex::new(()) })
    }

    pub fn status(&self) -> ReloadStatus {
        self.status.lock().expect("reload status").clone()
    }

    /// Loads the folder, runs its fixtures (each on its own calendar, never the deployment's),
    /// and swaps it in only if both succeed.
    pub async fn reload(&self, why: &str) -> Result<Reloaded, String> {
        let _one = self.running.lock().await;
        let dir = self.dir.clone();
        let loaded = tokio::task::spawn_blocking(move || candidate(&dir))
            .await
            .map_err(|e| format!("reload task failed: {e}"))
            .and_then(|r| r);
        let mut status = self.status.lock().expect("reload status");
        status.last_attempt = Some(Utc::now());
        match loaded {
            Ok(set) => {
                status.error = None;
                let current = self.handle.current();
                if set.version == current.version {
                    crate::metrics::METRICS.inc("rollgate_policy_reloads_total", &[("result", "unchanged")]);
                    return Ok(Reloaded::Unchanged(current.version.to_string()));
                }
                crate::metrics::METRICS.inc("rollgate_policy_reloads_total", &[("result", "reloaded")]);
                let (from, to) = (current.version.to_string(), set.version.to_string());
                self.handle.replace(set);
                status.reloads += 1;
                tracing::info!(from = %from, to = %to, trigger = why, "policy set reloaded");
                Ok(Reloaded::Replaced { from, to })
            }
            Err(e) => {
                tracing::error!(trigger = why, error = %e, "policy reload refused; the running set keeps serving");
                crate::metrics::METRICS.inc("rollgate_policy_reloads_total", &[("result", "refused")]);
                status.error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Polls the folder and reloads when it changed and then stayed still for one poll, so a
    /// save that writes several files is read once, whole.
    pub async fn watch(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut seen = fingerprint(&self.dir);
        let mut pending: Option<u64> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => return,
            }
            let now = fingerprint(&self.dir);
            if now != seen {
                seen = now;
                pending = Some(now);
                continue;
            }
            if pending.take().is_some() {
                let _ = self.reload("file change").await;
            }
        }
    }
}

fn candidate(dir: &Path) -> Result<Arc<PolicySet>, String> {
    let set = PolicySet::load(dir).map_err(|e| e.to_string())?;
    let outcomes = fixtures::run_dir(&set, dir).map_err(|e| format!("reading fixtures: {e}"))?;
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.failures.is_empty()).collect();
    if !failed.is_empty() {
        let (report, _) = crate::policy::fixtures::report(&outcomes);
        let fails: Vec<&str> = report.lines().filter(|l| !l.starts_with("PASS")).collect();
        return Err(format!("{} fixture(s) fail:\n{}", failed.len(), fails.join("\n")));
    }
    Ok(set)
}

/// Paths, sizes and modification times of every file under `dir`.
fn fingerprint(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    fn walk(dir: &Path, h: &mut std::collections::hash_map::DefaultHasher) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            p.hash(h);
            if p.is_dir() {
                walk(&p, h);
            } else if let Ok(m) = p.metadata() {
                m.len().hash(h);
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH).hash(h);
            }
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    walk(dir, &mut h);
    h.finish()
}

//! Who holds which role: logins and `@org/team` slugs from the configuration. Team membership
//! is asked of the tracker and remembered for a while, so a burst of events costs one call.

use crate::config::Roles;
use crate::tracker::Tracker;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TEAM_CACHE: Duration = Duration::from_secs(600);

/// The roles the configuration can fill, by the name policies use.
pub const ROLES: [&str; 2] = ["pm", "qa_lead"];

/// Where a policy folder names each role: `playbook.toml` (`[checklist] tick_roles`, a command's
/// `role`) and rule files (a quoted `"pm"` / `"qa_lead"`). What `doctor` checks against the
/// configuration: a role named here with nobody in it means nobody may do what it guards.
pub fn named_in_policies(dir: &std::path::Path) -> std::collections::BTreeMap<&'static str, Vec<String>> {
    let mut out: std::collections::BTreeMap<&'static str, Vec<String>> = std::collections::BTreeMap::new();
    let mut note = |role: &str, place: String| {
        if let Some(r) = ROLES.iter().find(|r| **r == role) {
            out.entry(*r).or_default().push(place);
        }
    };
    let names = |v: &toml::Value| -> Vec<String> {
        match v {
            toml::Value::String(s) => vec![s.clone()],
            toml::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
            _ => Vec::new(),
        }
    };
    if let Some(table) = std::fs::read_to_string(dir.join("playbook.toml")).ok().and_then(|t| t.parse::<toml::Table>().ok()) {
        for role in table.get("checklist").and_then(|c| c.get("tick_roles")).map(names).unwrap_or_default() {
            note(&role, "playbook.toml [checklist] tick_roles".into());
        }
        for (name, spec) in table.get("commands").and_then(|c| c.as_table()).into_iter().flatten() {
            for role in spec.get("role").map(names).unwrap_or_default() {
                note(&role, format!("playbook.toml /{name}"));
            }
        }
    }
    let mut rules: Vec<_> = std::fs::read_dir(dir.join("rules")).into_iter().flatten().flatten().map(|e| e.path()).collect();
    rules.sort();
    for path in rules {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for role in ROLES {
            if text.contains(&format!("\"{role}\"")) {
                note(role, format!("rules/{}", path.file_name().unwrap_or_default().to_string_lossy()));
            }
        }
    }
    out
}

pub struct RoleResolver {
    roles: Vec<(&'static str, Vec<String>)>,
    tracker: Option<Arc<dyn Tracker>>,
    cache: Mutex<HashMap<(String, String), (bool, Instant)>>,
}

impl RoleResolver {
    pub fn new(roles: &Roles, tracker: Option<Arc<dyn Tracker>>) -> Self {
        RoleResolver {
            roles: vec![("pm", roles.pm.clone()), ("qa_lead", roles.qa_lead.clone())],
            tracker,
            cache: Mutex::default(),
        }
    }

    /// The roles `login` holds. A team lookup that fails counts as "not a member" and is
    /// logged: refusing a change is recoverable, granting a role wrongly is not.
    pub async fn roles_of(&self, login: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (role, members) in &self.roles {
            for m in members {
                let holds = match m.strip_prefix('@').and_then(|t| t.split_once('/')) {
                    Some((org, team)) => self.in_team(org, team, login).await,
                    None => m.eq_ignore_ascii_case(login),
                };
                if holds {
                    out.push(role.to_string());
                    break;
                }
            }
        }
        out
    }

    async fn in_team(&self, org: &str, team: &str, login: &str) -> bool {
        let key = (format!("{org}/{team}"), login.to_ascii_lowercase());
        if let Some((member, at)) = self.cache.lock().expect("role cache").get(&key) {
            if at.elapsed() < TEAM_CACHE {
                return *member;
            }
        }
        let Some(tracker) = &self.tracker else {
            tracing::warn!(team = %key.0, "team roles need tracker credentials; treating as not a member");
            return false;
        };
        match tracker.is_team_member(org, team, login).await {
            Ok(member) => {
                self.cache.lock().expect("role cache").insert(key, (member, Instant::now()));
                member
            }
            Err(e) => {
                tracing::warn!(team = %key.0, error = %e, "team membership lookup failed; treating as not a member");
                false
            }
        }
    }
}

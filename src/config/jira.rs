//! How Jira's native issue maps to the playbook's normalized fields. The default matches the
//! setup in deploy/jira/README.md; every name can be changed in `[jira.mapping]`.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JiraMapping {
    /// Jira issue type name -> `type` value.
    pub issue_types: BTreeMap<String, String>,
    /// Jira status name -> `status` value. Moving to a status is done with a transition.
    pub statuses: BTreeMap<String, String>,
    /// Normalized field -> the Jira custom field holding it (id `customfield_10020` or name).
    pub fields: BTreeMap<String, String>,
    /// Per normalized field: Jira option value -> normalized value (when they differ).
    pub values: BTreeMap<String, BTreeMap<String, String>>,
    /// Flag -> the Jira label that carries it.
    pub flags: BTreeMap<String, String>,
    /// The custom field listing affected clients (a text or multi-select field).
    pub clients_field: Option<String>,
    /// Issue type for issues rollgate files (reports).
    pub report_issue_type: String,
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Default for JiraMapping {
    fn default() -> Self {
        JiraMapping {
            issue_types: map(&[
                ("Bug", "bug"),
                ("Small Change", "small-change"),
                ("Story", "enhancement"),
                ("Enhancement", "enhancement"),
                ("Epic", "major-feature"),
                ("Major Feature", "major-feature"),
                ("Incident", "incident-p0"),
            ]),
            statuses: map(&[
                ("Planning", "planning"),
                ("Decided", "decided"),
                ("In Development", "in-dev"),
                ("Dev Released", "dev-released"),
                ("Rollout Confirmed", "rollout-confirmed"),
                ("In Rollout", "in-rollout"),
                ("Released", "released"),
            ]),
            fields: map(&[("lane", "Lane"), ("rollout", "Rollout Type"), ("scope", "Client Scope"), ("decision", "Decision")]),
            values: [
                ("rollout".to_string(), map(&[("1 Direct", "1"), ("2 Notified", "2"), ("3 Demoed", "3"), ("4 Piloted", "4")])),
                ("scope".to_string(), map(&[("Single client", "single-client"), ("Cross-client", "cross-client")])),
                ("decision".to_string(), map(&[("Accept", "accept"), ("Decline", "decline"), ("Park", "park")])),
            ]
            .into_iter()
            .collect(),
            flags: [
                "needs-demo",
                "needs-client-comms",
                "needs-product-judgment",
                "risk-breaking",
                "risk-field-dependent",
                "revenue-relevant",
                "confused-client-risk",
                "slow-rollback",
                "shared-blast-radius",
                "stability-track",
                "sla-at-risk",
                "sla-breached",
                "decision-due",
                "decision-overdue",
                "rolled-back",
                "escalated",
                "paused",
            ]
            .iter()
            .map(|f| (f.to_string(), format!("rollgate-{f}")))
            .collect(),
            clients_field: Some("Affected Clients".into()),
            report_issue_type: "Task".into(),
        }
    }
}

impl JiraMapping {
    /// Normalized value for a Jira option value of `field` (unchanged when no translation).
    pub fn to_value(&self, field: &str, jira: &str) -> String {
        self.values.get(field).and_then(|m| m.get(jira)).cloned().unwrap_or_else(|| jira.to_string())
    }

    /// The Jira option value for a normalized value of `field`.
    pub fn to_jira(&self, field: &str, value: &str) -> String {
        self.values
            .get(field)
            .and_then(|m| m.iter().find(|(_, v)| *v == value).map(|(k, _)| k.clone()))
            .unwrap_or_else(|| value.to_string())
    }

    pub fn status_name(&self, status: &str) -> Option<&str> {
        self.statuses.iter().find(|(_, v)| *v == status).map(|(k, _)| k.as_str())
    }
}

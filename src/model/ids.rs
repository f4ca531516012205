//! Newtypes for identifiers, so a delivery id can never be passed where an issue key is meant.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackerKind {
    Github,
    Jira,
}

impl TrackerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackerKind::Github => "github",
            TrackerKind::Jira => "jira",
        }
    }
}

impl fmt::Display for TrackerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one issue across trackers: `github:owner/repo#12` or `jira:PROJ-12`.
/// The text form is what the store keys on and what `rollgate explain` accepts (without the
/// tracker prefix when it is unambiguous).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IssueKey {
    tracker: TrackerKind,
    /// `owner/repo` on GitHub, the project key on Jira.
    project: String,
    /// The issue number on GitHub, the numeric part of the key on Jira.
    number: u64,
}

impl IssueKey {
    pub fn github(repo: impl Into<String>, number: u64) -> Self {
        IssueKey { tracker: TrackerKind::Github, project: repo.into(), number }
    }

    /// `PROJ-12`.
    pub fn jira(project: impl Into<String>, number: u64) -> Self {
        IssueKey { tracker: TrackerKind::Jira, project: project.into(), number }
    }

    pub fn tracker(&self) -> TrackerKind {
        self.tracker
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn number(&self) -> u64 {
        self.number
    }

    /// `owner/repo#12` or `PROJ-12`: how people write it.
    pub fn short(&self) -> String {
        match self.tracker {
            TrackerKind::Github => format!("{}#{}", self.project, self.number),
            TrackerKind::Jira => format!("{}-{}", self.project, self.number),
        }
    }
}

impl fmt::Display for IssueKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.tracker, self.short())
    }
}

/// Whether `full_name` is a repository name GitHub could have given: `owner/repo`, the owner
/// of ASCII letters, digits and `-` (and `_`, which the logins of GitHub Enterprise Managed
/// Users carry: `mona_acme`), 1 to 39 characters; the repository of letters, digits, `.`, `_`
/// and `-`, 1 to 100 characters, and neither `.` nor `..`. Anything else never came from
/// GitHub, and must not reach an API path: `../..` would climb out of `/repos/`.
pub fn is_github_repo(full_name: &str) -> bool {
    let Some((owner, repo)) = full_name.split_once('/') else { return false };
    let owner_ok = (1..=39).contains(&owner.len()) && owner.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let repo_ok = (1..=100).contains(&repo.len())
        && repo.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && repo != "."
        && repo != "..";
    owner_ok && repo_ok
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an issue key: write owner/repo#12 (GitHub) or PROJ-12 (Jira)")]
pub struct BadIssueKey(String);

impl FromStr for IssueKey {
    type Err = BadIssueKey;

    /// Accepts `github:owner/repo#12`, `owner/repo#12`, `jira:PROJ-12` and `PROJ-12`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadIssueKey(s.to_string());
        let (tracker, rest) = match s.split_once(':') {
            Some(("github", rest)) => (Some(TrackerKind::Github), rest),
            Some(("jira", rest)) => (Some(TrackerKind::Jira), rest),
            Some(_) => return Err(bad()),
            None => (None, s),
        };
        if let Some((repo, number)) = rest.rsplit_once('#') {
            if tracker == Some(TrackerKind::Jira) || !is_github_repo(repo) {
                return Err(bad());
            }
            let number = number.parse().map_err(|_| bad())?;
            return Ok(IssueKey::github(repo, number));
        }
        if tracker == Some(TrackerKind::Github) {
            return Err(bad());
        }
        let (project, number) = rest.rsplit_once('-').ok_or_else(bad)?;
        if project.is_empty() || !project.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad());
        }
        let number = number.parse().map_err(|_| bad())?;
        Ok(IssueKey { tracker: TrackerKind::Jira, project: project.to_string(), number })
    }
}

impl TryFrom<String> for IssueKey {
    type Error = BadIssueKey;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<IssueKey> for String {
    fn from(k: IssueKey) -> String {
        k.to_string()
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// The tracker's delivery id (`X-GitHub-Delivery`, `X-Atlassian-Webhook-Identifier`).
    DeliveryId
);
string_id!(
    /// A short hash of every file in the policy folder: which rules made a decision.
    PolicyVersion
);

/// A comment id on the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommentId(pub u64);

impl fmt::Display for CommentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_keys_round_trip_and_reject_garbage() {
        let k: IssueKey = "octo/hello#12".parse().unwrap();
        assert_eq!(k.to_string(), "github:octo/hello#12");
        assert_eq!(k.to_string().parse::<IssueKey>().unwrap(), k);
        let j: IssueKey = "PROJ-7".parse().unwrap();
        assert_eq!(j.to_string(), "jira:PROJ-7");
        for bad in ["", "octo#1", "octo/hello#x", "/x#1", "jira:a/b#1", "github:PROJ-1", "nope:x#1"] {
            assert!(bad.parse::<IssueKey>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn only_names_github_could_give_are_github_repositories() {
        for good in ["octo/hello", "Octo-Cat/Hello.World", "a/b", "mona_acme/x", "o/.github", "o/..x", "o/a_b-c.d", &format!("{}/{}", "a".repeat(39), "r".repeat(100))] {
            assert!(is_github_repo(good), "{good} should be accepted");
            let key: IssueKey = format!("{good}#3").parse().unwrap();
            assert_eq!(key.to_string().parse::<IssueKey>().unwrap(), key, "{good} reads back");
        }
        for bad in [
            "../..", "o/..", "o/.", "./x", "../x", "octo", "octo/hello/x", "/hello", "octo/", "oct o/x", "octo/hé", "ôcto/x",
            "octo/x%2F..", "octo/x?y", "octo/x#y", "o.o/x", &format!("{}/r", "a".repeat(40)), &format!("o/{}", "r".repeat(101)),
        ] {
            assert!(!is_github_repo(bad), "{bad} should be refused");
            assert!(format!("github:{bad}#1").parse::<IssueKey>().is_err(), "{bad} is no issue key");
        }
    }
}

/// What happened, as `<tracker event>.<action>`: `issues.labeled`, `issue_comment.edited`,
/// `timer.sla` (a durable timer of rollgate's own). The policies see this spelling as
/// `ctx.kind`; the questions the code asks of it are answered here, not by string matching at
/// each place.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventKind(String);

impl EventKind {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A timer of rollgate's own came due (`timer.<purpose>`), no person acted.
    pub fn is_timer(&self) -> bool {
        self.0.starts_with("timer.")
    }

    /// Something was edited (`issues.edited`, `issue_comment.edited`).
    pub fn is_edit(&self) -> bool {
        self.0.ends_with(".edited")
    }

    /// The tracker deleted the issue.
    pub fn is_issue_deleted(&self) -> bool {
        self.0 == "issues.deleted"
    }
}

impl From<&str> for EventKind {
    fn from(s: &str) -> Self {
        EventKind(s.to_string())
    }
}

impl From<String> for EventKind {
    fn from(s: String) -> Self {
        EventKind(s)
    }
}

impl PartialEq<str> for EventKind {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for EventKind {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

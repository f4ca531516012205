//! JQL search on both Jiras. Jira Cloud removed `GET /rest/api/3/search` (Atlassian's
//! CHANGE-2046; it now answers 410 Gone): Cloud searches with `GET /rest/api/3/search/jql`,
//! paged by an opaque `nextPageToken` until `isLast`, and returns only each issue's id unless
//! `fields` names what else to return. Data Center keeps `GET /rest/api/2/search`, paged by
//! `startAt` up to `total`. Either may return fewer issues than `maxResults` asked for (Cloud
//! does when many fields are requested), so only the token or the total says when the last
//! page was read, never the size of a page.

use super::{parse, JiraTracker};
use crate::tracker::TrackerResult;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Where the next page of a search starts; `SearchPage::default()` is the first.
#[derive(Debug, Clone, Default)]
pub struct SearchPage(Next);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Next {
    #[default]
    First,
    /// Data Center: the index of the next issue.
    Offset(usize),
    /// Cloud: the token the previous page gave.
    Token(String),
    Done,
}

/// A JQL string literal: backslash and double quote escaped.
pub(crate) fn jql_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// Cloud's page (`SearchAndReconcileResults`).
#[derive(Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct TokenPage<T> {
    #[serde(default = "Vec::new")]
    issues: Vec<T>,
    #[serde(rename = "nextPageToken", default)]
    next_page_token: Option<String>,
    #[serde(rename = "isLast", default)]
    is_last: Option<bool>,
}

/// Data Center's page.
#[derive(Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct OffsetPage<T> {
    #[serde(default)]
    total: usize,
    #[serde(default = "Vec::new")]
    issues: Vec<T>,
}

impl JiraTracker {
    /// One page of the issues `jql` finds, each with `fields` (comma-separated, e.g.
    /// `summary` or `*navigable`); `None` once the last page was read.
    pub(crate) async fn search<T: DeserializeOwned>(&self, jql: &str, fields: &str, max: usize, page: &mut SearchPage) -> TrackerResult<Option<Vec<T>>> {
        let query = format!("jql={}&fields={}&maxResults={max}", encode(jql), encode(fields));
        match std::mem::replace(&mut page.0, Next::Done) {
            Next::Done => Ok(None),
            next if self.version >= 3 => {
                let path = match next {
                    Next::Token(token) => format!("/search/jql?{query}&nextPageToken={}", encode(&token)),
                    _ => format!("/search/jql?{query}"),
                };
                let found: TokenPage<T> = parse("search", &self.call(Method::GET, &path, None).await?)?;
                if let (Some(token), false) = (found.next_page_token, found.is_last == Some(true)) {
                    page.0 = Next::Token(token);
                }
                Ok(Some(found.issues))
            }
            next => {
                let start = match next {
                    Next::Offset(n) => n,
                    _ => 0,
                };
                let path = format!("/search?{query}&startAt={start}");
                let found: OffsetPage<T> = parse("search", &self.call(Method::GET, &path, None).await?)?;
                let after = start + found.issues.len();
                if !found.issues.is_empty() && after < found.total {
                    page.0 = Next::Offset(after);
                }
                Ok(Some(found.issues))
            }
        }
    }
}

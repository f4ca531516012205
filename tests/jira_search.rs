//! Jira search, which backfill and the report lookup depend on, against a fake Jira that
//! answers as each deployment does: Cloud pages `/rest/api/3/search/jql` by `nextPageToken`
//! (the old `/rest/api/3/search` answers 410 Gone), Data Center pages `/rest/api/2/search` by
//! `startAt`. Every case reads more than one page.

mod support;

use rollgate::config::{JiraSettings, Secret};
use rollgate::process::Trackers;
use rollgate::tracker::jira::JiraTracker;
use rollgate::tracker::{RetryPolicy, Tracker};
use std::sync::Arc;
use support::fake_jira::{FakeJira, EMAIL, TOKEN};

async fn connect(jira: &FakeJira, cloud: bool) -> JiraTracker {
    let settings = JiraSettings {
        base_url: Some(jira.url.clone()),
        api_token: Some(Secret::new(TOKEN)),
        email: cloud.then(|| EMAIL.to_string()),
        ..Default::default()
    };
    JiraTracker::connect(&settings, RetryPolicy::default()).await.unwrap()
}

/// 60 issues are more than a page on either Jira (Data Center pages by 50; Cloud returns at
/// most 40 when every field is asked for). Backfill imports each once, and no other project's.
#[tokio::test]
async fn backfill_reads_every_page_of_a_project_on_cloud_and_data_center() {
    for cloud in [true, false] {
        let jira = FakeJira::start().await;
        for n in 1..=60 {
            jira.seed(&format!("PROJ-{n}"), "Story", "Planning", &[]);
        }
        jira.seed("OTHER-1", "Story", "Planning", &[]);
        let dir = tempfile::tempdir().unwrap();
        let store = rollgate::store::open(&format!("sqlite://{}", dir.path().join("b.db").display())).await.unwrap();
        let set = rollgate::policy::PolicySet::load(&support::policies_dir()).unwrap();
        let tracker = connect(&jira, cloud).await;

        let p = support::with_judge(&set, support::fake_jira::BOT_ACCOUNT, async |jg| rollgate::backfill::jira(store.as_ref(), jg, &tracker, "PROJ", true).await).await.unwrap();
        assert_eq!((p.issues, p.skipped), (60, 0), "cloud: {cloud}");
        for n in 1..=60 {
            let key = format!("PROJ-{n}").parse().unwrap();
            assert!(store.issue_state(&key).await.unwrap().is_some(), "cloud: {cloud}: PROJ-{n} not imported");
        }
        assert!(store.issue_state(&"OTHER-1".parse().unwrap()).await.unwrap().is_none());
        let again = support::with_judge(&set, support::fake_jira::BOT_ACCOUNT, async |jg| rollgate::backfill::jira(store.as_ref(), jg, &tracker, "PROJ", true).await).await.unwrap();
        assert_eq!((again.issues, again.skipped), (0, 60), "cloud: {cloud}");
    }
}

/// A report whose create reached Jira but whose answer was lost is found by its title, even
/// when more than a page (100) of newer report issues sit before it: it is updated, not filed
/// again.
#[tokio::test]
async fn the_report_issue_is_found_beyond_the_first_page_on_cloud_and_data_center() {
    for cloud in [true, false] {
        let jira = FakeJira::start().await;
        let tracker = connect(&jira, cloud).await;
        let label = ["rollgate-report".to_string()];
        let title = "Rollout metrics — 2026-10";
        let first = tracker.create_issue("PROJ", title, "the first body", &label).await.unwrap();
        for n in 0..120 {
            tracker.create_issue("PROJ", &format!("Decisions log — W{n}"), "x", &label).await.unwrap();
        }
        for n in 0..5 {
            tracker.create_issue("PROJ", title, "an issue of the same title without the label", &[format!("other-{n}")]).await.unwrap();
        }
        let filed = jira.writes().len();
        let trackers = Trackers { github: None, jira: Some(Arc::new(tracker)) };

        let (key, new) = rollgate::report::post(&trackers, "PROJ", title, "the report, brought up to date").await.unwrap();
        assert_eq!((key.short(), new), (first.short(), false), "cloud: {cloud}");
        let issue = jira.issue(&first.short());
        assert!(issue.description.unwrap().to_string().contains("brought up to date"), "cloud: {cloud}");
        let writes = jira.writes();
        assert_eq!(writes[filed..].iter().filter(|w| w.starts_with("POST issue")).count(), 0, "cloud: {cloud}: {:?}", &writes[filed..]);
    }
}

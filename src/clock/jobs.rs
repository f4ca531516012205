//! Periodic jobs, once per period whatever restarts or replicas happen (the store's `jobs`
//! row is claimed first): the monthly metrics issue on the 1st, the week's decisions log from
//! Monday and the Tuesday agenda from Tuesday morning. A weekly issue is created once and then
//! edited in place while its week runs.

use super::Calendar;
use crate::plan::body_hash;
use crate::process::Trackers;
use crate::report::{self, weekly, Month};
use crate::store::Store;
use crate::tracker::guard::{with_priority, Priority};
use chrono::{DateTime, Datelike, Utc, Weekday};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Weekly issues are rebuilt at most this often (they read a week of history).
const REFRESH: Duration = Duration::from_secs(600);
/// After downtime, missed monthly reports and weekly decisions logs are filed late, this many
/// periods back at most.
const CATCH_UP: usize = 12;

pub struct Jobs {
    pub store: Arc<dyn Store>,
    pub calendar: Arc<Calendar>,
    pub policies: PathBuf,
    /// `owner/repo` or a Jira project: where the issues go. No target, no jobs.
    pub target: Option<String>,
    pub trackers: Trackers,
    pub last_refresh: Mutex<Option<Instant>>,
}

impl Jobs {
    /// Runs what is due at `now`; returns what it filed or updated. Reports are background
    /// work for the write budget: people's events go first.
    pub async fn run_due(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
        with_priority(Priority::Background, self.run_due_now(now)).await
    }

    async fn run_due_now(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
        let Some(target) = self.target.clone() else { return Ok(Vec::new()) };
        let mut done = Vec::new();
        let today = self.calendar.local_date(now);
        let last_month = Month::of(today).prev();
        // Every month since the last report filed (after downtime), else just last month.
        let mut months = vec![last_month];
        if let Some(last) = self.store.last_period("metrics-report").await?.and_then(|p| p.parse::<Month>().ok()) {
            months.clear();
            let mut m = last.next();
            while m <= last_month && months.len() < CATCH_UP {
                months.push(m);
                m = m.next();
            }
        }
        for month in months {
            done.extend(self.monthly(&target, month, now).await?);
        }
        {
            let mut last = self.last_refresh.lock().expect("refresh time");
            if last.is_some_and(|t| t.elapsed() < REFRESH) {
                return Ok(done);
            }
            *last = Some(Instant::now());
        }
        // Decisions logs of weeks missed during downtime, then this week's (kept up to date).
        let this_monday = weekly::monday(today);
        if let Some(last) = self.store.last_period("decisions-log").await? {
            let mut monday = this_monday - chrono::Duration::weeks(CATCH_UP as i64);
            while monday < this_monday {
                let week = weekly::iso_week(monday);
                if week > last {
                    let (title, body) = weekly::decisions_log(self.store.as_ref(), &self.calendar, monday).await?;
                    done.extend(self.keep_weekly("decisions-log", &week, &target, &title, &body, now).await?);
                }
                monday += chrono::Duration::weeks(1);
            }
        }
        let week = weekly::iso_week(today);
        let (title, body) = weekly::decisions_log(self.store.as_ref(), &self.calendar, today).await?;
        done.extend(self.keep_weekly("decisions-log", &week, &target, &title, &body, now).await?);
        let tuesday_morning = self.calendar.at_local(weekly::monday(today) + chrono::Duration::days(1), chrono::NaiveTime::from_hms_opt(9, 0, 0).expect("09:00"));
        if today.weekday() != Weekday::Mon && now >= tuesday_morning {
            let (title, body) = weekly::tuesday_agenda(self.store.as_ref(), &self.calendar, today).await?;
            done.extend(self.keep_weekly("tuesday-agenda", &week, &target, &title, &body, now).await?);
        }
        Ok(done)
    }

    /// Files `month`'s metrics issue unless it was filed.
    async fn monthly(&self, target: &str, month: Month, now: DateTime<Utc>) -> anyhow::Result<Option<String>> {
        let period = month.to_string();
        if !self.store.claim_job("metrics-report", &period, now).await? {
            return Ok(None);
        }
        {
            let filed = async {
                let (title, body) = report::monthly(self.store.as_ref(), &self.calendar, &self.policies, month).await?;
                report::post(&self.trackers, target, &title, &body).await.map(|(key, _)| key)
            }
            .await;
            match filed {
                Ok(key) => {
                    self.store.finish_job("metrics-report", &period, Ok(&key.to_string()), now).await?;
                    Ok(Some(format!("filed the {month} metrics report as {}", key.short())))
                }
                Err(e) => {
                    self.store.finish_job("metrics-report", &period, Err(&format!("{e:#}")), now).await?;
                    Err(e.context(format!("the {month} metrics report")))
                }
            }
        }
    }

    /// Files the week's issue once, then edits it when its text changes.
    async fn keep_weekly(&self, job: &str, week: &str, target: &str, title: &str, body: &str, now: DateTime<Utc>) -> anyhow::Result<Option<String>> {
        let hash = body_hash(body);
        if self.store.claim_job(job, week, now).await? {
            return match report::post(&self.trackers, target, title, body).await {
                Ok((key, _)) => {
                    self.store.finish_job(job, week, Ok(&format!("{key} {hash}")), now).await?;
                    Ok(Some(format!("filed {title} as {}", key.short())))
                }
                Err(e) => {
                    self.store.finish_job(job, week, Err(&format!("{e:#}")), now).await?;
                    Err(e)
                }
            };
        }
        let Some(result) = self.store.job_result(job, week).await? else { return Ok(None) };
        let Some((key, old)) = result.split_once(' ') else { return Ok(None) };
        if old == hash {
            return Ok(None);
        }
        let key: crate::model::IssueKey = key.parse()?;
        let tracker = self.trackers.for_issue(&key).ok_or_else(|| anyhow::anyhow!("no credentials for {}", key.short()))?;
        tracker.update_issue_body(&key, body).await?;
        self.store.finish_job(job, week, Ok(&format!("{key} {hash}")), now).await?;
        Ok(Some(format!("updated {title}")))
    }
}

//! Periodic jobs, once per period whatever restarts or replicas happen (the store's `jobs`
//! row is claimed first): the monthly metrics issue on the 1st, the week's decisions log from
//! Monday and the Tuesday agenda from Tuesday morning. A weekly issue is created once and then
//! edited in place while its week runs.

use crate::clock::Calendar;
use crate::plan::body_hash;
use crate::process::Trackers;
use crate::report::{self, weekly, Month};
use crate::store::prelude::*;
use crate::tracker::guard::{with_priority, Priority};
use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
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

/// A weekly issue, filed once per ISO week and edited in place while its week runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weekly {
    DecisionsLog,
    TuesdayAgenda,
}

impl Weekly {
    fn job(self) -> &'static str {
        match self {
            Weekly::DecisionsLog => "decisions-log",
            Weekly::TuesdayAgenda => "tuesday-agenda",
        }
    }
}

/// What is due at a time, oldest first: what `run_due` works on and `preview` describes.
struct Due {
    /// Every month since the last report filed (after downtime), else just last month.
    months: Vec<Month>,
    /// Weekly issues, each with a day of its week: decisions logs of weeks missed during
    /// downtime, then this week's log, then this week's agenda from Tuesday morning.
    weeks: Vec<(Weekly, NaiveDate)>,
}

impl Jobs {
    /// Runs what is due at `now`; returns what it filed or updated. Reports are background
    /// work for the write budget: people's events go first.
    pub async fn run_due(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
        with_priority(Priority::Background, self.run_due_now(now)).await
    }

    /// What `run_due` would file or update at `now`, changing nothing (`rollgate sweep
    /// --dry-run`). A weekly issue whose text would not change is left out.
    pub async fn preview(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
        let Some(target) = self.target.as_deref() else { return Ok(Vec::new()) };
        let due = self.due(now).await?;
        let mut out = Vec::new();
        for month in due.months {
            if self.store.job_result("metrics-report", &month.to_string()).await?.is_none() {
                out.push(format!("would file the {month} metrics report in {target}"));
            }
        }
        for (weekly, day) in due.weeks {
            let (title, body) = self.weekly_text(weekly, day).await?;
            match self.store.job_result(weekly.job(), &weekly::iso_week(day)).await? {
                None => out.push(format!("would file {title} in {target}")),
                Some(filed) => match filed.split_once(' ') {
                    Some((key, hash)) if hash != body_hash(&body) => out.push(format!("would update {title} ({key})")),
                    _ => {}
                },
            }
        }
        Ok(out)
    }

    async fn due(&self, now: DateTime<Utc>) -> anyhow::Result<Due> {
        let today = self.calendar.local_date(now);
        let last_month = Month::of(today).prev();
        let mut months = vec![last_month];
        if let Some(last) = self.store.last_period("metrics-report").await?.and_then(|p| p.parse::<Month>().ok()) {
            months.clear();
            let mut m = last.next();
            while m <= last_month && months.len() < CATCH_UP {
                months.push(m);
                m = m.next();
            }
        }
        let this_monday = weekly::monday(today);
        let mut weeks = Vec::new();
        if let Some(last) = self.store.last_period("decisions-log").await? {
            let mut monday = this_monday - chrono::Duration::weeks(CATCH_UP as i64);
            while monday < this_monday {
                if weekly::iso_week(monday) > last {
                    weeks.push((Weekly::DecisionsLog, monday));
                }
                monday += chrono::Duration::weeks(1);
            }
        }
        weeks.push((Weekly::DecisionsLog, today));
        let tuesday_morning = self.calendar.at_local(this_monday + chrono::Duration::days(1), chrono::NaiveTime::from_hms_opt(9, 0, 0).expect("09:00"));
        if today.weekday() != Weekday::Mon && now >= tuesday_morning {
            weeks.push((Weekly::TuesdayAgenda, today));
        }
        Ok(Due { months, weeks })
    }

    async fn weekly_text(&self, weekly: Weekly, day: NaiveDate) -> anyhow::Result<(String, String)> {
        match weekly {
            Weekly::DecisionsLog => weekly::decisions_log(self.store.as_ref(), &self.calendar, day).await,
            Weekly::TuesdayAgenda => weekly::tuesday_agenda(self.store.as_ref(), &self.calendar, day).await,
        }
    }

    async fn run_due_now(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
        let Some(target) = self.target.clone() else { return Ok(Vec::new()) };
        let due = self.due(now).await?;
        let mut done = Vec::new();
        for month in due.months {
            done.extend(self.monthly(&target, month, now).await?);
        }
        {
            let mut last = self.last_refresh.lock().expect("refresh time");
            if last.is_some_and(|t| t.elapsed() < REFRESH) {
                return Ok(done);
            }
            *last = Some(Instant::now());
        }
        for (weekly, day) in due.weeks {
            let (title, body) = self.weekly_text(weekly, day).await?;
            done.extend(self.keep_weekly(weekly.job(), &weekly::iso_week(day), &target, &title, &body, now).await?);
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

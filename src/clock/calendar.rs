//! Business days in the configured zone: a work week and a holiday list. Policies compute
//! every due date and deadline with it (through host functions), so "the day after dev
//! release" means the next working day in the team's time zone.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use chrono_tz::Tz;
use std::collections::BTreeSet;

#[derive(Debug, Clone)]
pub struct Calendar {
    pub tz: Tz,
    workweek: [bool; 7],
    holidays: BTreeSet<NaiveDate>,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar::new(chrono_tz::UTC, &[], &[]).expect("the default calendar is valid")
    }
}

fn weekday(name: &str) -> Option<Weekday> {
    name.get(..3)?.parse().ok()
}

impl Calendar {
    /// `workweek` names days (`Mon`, `Tuesday`, ...); empty means Monday to Friday.
    /// `holidays` are `YYYY-MM-DD` dates.
    pub fn new(tz: Tz, workweek: &[String], holidays: &[String]) -> anyhow::Result<Self> {
        let mut days = [false; 7];
        if workweek.is_empty() {
            days[..5].fill(true);
        }
        for d in workweek {
            let w = weekday(d).ok_or_else(|| anyhow::anyhow!("work week day {d:?} is not a weekday name"))?;
            days[w.num_days_from_monday() as usize] = true;
        }
        if !days.contains(&true) {
            anyhow::bail!("the work week has no working day");
        }
        let holidays = holidays
            .iter()
            .map(|h| parse_date(h).ok_or_else(|| anyhow::anyhow!("holiday {h:?} is not a YYYY-MM-DD date")))
            .collect::<anyhow::Result<_>>()?;
        Ok(Calendar { tz, workweek: days, holidays })
    }

    pub fn is_business_day(&self, d: NaiveDate) -> bool {
        self.workweek[d.weekday().num_days_from_monday() as usize] && !self.holidays.contains(&d)
    }

    /// The calendar date of an instant in the configured zone.
    pub fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }

    /// The instant a local wall-clock time happens on a date (the earlier one in a DST fold,
    /// the next valid one in a gap).
    pub fn at_local(&self, d: NaiveDate, t: chrono::NaiveTime) -> DateTime<Utc> {
        use chrono::TimeZone;
        let naive = d.and_time(t);
        match self.tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(x) | chrono::LocalResult::Ambiguous(x, _) => x.with_timezone(&Utc),
            chrono::LocalResult::None => self.at_local(d, t + Duration::hours(1)),
        }
    }

    /// `n` business days after `d` (n = 0: `d` itself if it is a business day, else the next one).
    pub fn add_business_days(&self, d: NaiveDate, n: i64) -> NaiveDate {
        let mut day = d;
        while !self.is_business_day(day) {
            day += Duration::days(1);
        }
        let mut left = n.max(0);
        while left > 0 {
            day += Duration::days(1);
            if self.is_business_day(day) {
                left -= 1;
            }
        }
        day
    }

    /// Business days after `from` up to and including `to` (0 when `to` is not after `from`).
    pub fn business_days_between(&self, from: NaiveDate, to: NaiveDate) -> i64 {
        let mut n = 0;
        let mut day = from;
        // Bounded: ten years of days at most, whatever a policy asks.
        let end = to.min(from + Duration::days(3660));
        while day < end {
            day += Duration::days(1);
            if self.is_business_day(day) {
                n += 1;
            }
        }
        n
    }
}

pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn business_days_skip_weekends_and_holidays() {
        let cal = Calendar::new(chrono_tz::Asia::Kolkata, &[], &["2026-11-27".into()]).unwrap();
        // Tue 2026-11-24 + 1 = Wed; + 3 = Fri 27th is a holiday, so Mon 30th.
        assert_eq!(cal.add_business_days(d("2026-11-24"), 1), d("2026-11-25"));
        assert_eq!(cal.add_business_days(d("2026-11-24"), 3), d("2026-11-30"));
        // Saturday + 0 is the next business day.
        assert_eq!(cal.add_business_days(d("2026-11-28"), 0), d("2026-11-30"));
        assert_eq!(cal.business_days_between(d("2026-11-24"), d("2026-12-01")), 4);
        assert_eq!(cal.business_days_between(d("2026-12-01"), d("2026-11-24")), 0);
        // 20:00 UTC on Monday is already Tuesday in Kolkata.
        let t = DateTime::parse_from_rfc3339("2026-11-23T20:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(cal.local_date(t), d("2026-11-24"));
    }

    #[test]
    fn a_custom_work_week_and_bad_input_are_handled() {
        let cal = Calendar::new(chrono_tz::UTC, &["Sun".into(), "Mon".into(), "Tue".into(), "Wed".into(), "Thu".into()], &[]).unwrap();
        assert!(cal.is_business_day(d("2026-11-22"))); // a Sunday
        assert!(!cal.is_business_day(d("2026-11-27"))); // a Friday
        assert!(Calendar::new(chrono_tz::UTC, &["Funday".into()], &[]).is_err());
        assert!(Calendar::new(chrono_tz::UTC, &[], &["27/11/2026".into()]).is_err());
    }
}
